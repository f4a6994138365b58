#include "proxy/prom.h"

#include "proxy/service.h"
#include "proxy/udp.h"
#include "proxy/version.h"

#include <dirent.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>


/* A label value, escaped as the text format requires. */
static void label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{service="..."<extra>} value */
static void sample(FILE *f, const char *name, const struct service *svc, const char *extra,
                   uint64_t v)
{
    fprintf(f, "%s{service=\"", name);
    label(f, svc->cfg.name);
    fprintf(f, "\"%s} %" PRIu64 "\n", extra, v);
}

static int open_fds(void)
{
    int n = -2;   /* . and .. */
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 1;   /* the directory's own fd */
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

void prom_render(FILE *f, const struct service *services)
{
    static time_t started;
    const struct service *s;
    char extra[160];

    if (started == 0)
        started = time(NULL);
    head(f, "iperf_shim_build_info", "gauge", "Version of the running shim.");
    fprintf(f, "iperf_shim_build_info{version=\"%s\"} 1\n", shim_version);
    head(f, "iperf_shim_open_fds", "gauge", "File descriptors the shim has open.");
    fprintf(f, "iperf_shim_open_fds %d\n", open_fds());
    head(f, "iperf_shim_resident_memory_bytes", "gauge", "Resident memory of the shim.");
    fprintf(f, "iperf_shim_resident_memory_bytes %ld\n", rss_bytes());

    head(f, "iperf_shim_service_draining", "gauge",
         "1 while a service takes no new tests (shutdown or removed by a reload).");
    for (s = services; s; s = s->next)
        sample(f, "iperf_shim_service_draining", s, "", s->state == SERVICE_DRAINING);

    head(f, "iperf_shim_tests_total", "counter",
         "Tests that ended, by protocol, transport, mode and outcome (an iperf2 UDP stream "
         "counts as a test).");
    for (s = services; s; s = s->next) {
        for (int i = 0; i < s->stats.nkinds; i++) {
            const struct stats_kind *k = &s->stats.kinds[i];
            snprintf(extra, sizeof(extra),
                     ",protocol=\"%s\",transport=\"%s\",mode=\"%s\",outcome=\"%s\"", k->protocol,
                     k->transport, k->mode, k->ok ? "ok" : "failed");
            sample(f, "iperf_shim_tests_total", s, extra, k->count);
        }
    }
    head(f, "iperf_shim_tests_running", "gauge", "Tests in progress, by protocol.");
    for (s = services; s; s = s->next) {
        sample(f, "iperf_shim_tests_running", s, ",protocol=\"iperf3\"", (uint64_t)s->ntests);
        sample(f, "iperf_shim_tests_running", s, ",protocol=\"iperf2\"", (uint64_t)s->nsessions);
    }
    head(f, "iperf_shim_connections_unidentified", "gauge",
         "TCP connections accepted whose first bytes are still awaited.");
    for (s = services; s; s = s->next)
        sample(f, "iperf_shim_connections_unidentified", s, "", (uint64_t)s->fronts.pending);
    head(f, "iperf_shim_bidir_roles_repaired_total", "counter",
         "iperf3 --bidir data connections paired by their real role instead of accept order.");
    for (s = services; s; s = s->next)
        sample(f, "iperf_shim_bidir_roles_repaired_total", s, "", s->stats.roles_repaired);
    head(f, "iperf_shim_relayed_bytes_total", "counter",
         "Test data delivered, by transport and direction (TCP counted when a test ends).");
    static const char *const dir[2] = { "client_to_server", "server_to_client" };
    for (s = services; s; s = s->next) {
        for (int d = 0; d < 2; d++) {
            snprintf(extra, sizeof(extra), ",transport=\"tcp\",direction=\"%s\"", dir[d]);
            sample(f, "iperf_shim_relayed_bytes_total", s, extra, s->stats.tcp_bytes[d]);
            snprintf(extra, sizeof(extra), ",transport=\"udp\",direction=\"%s\"", dir[d]);
            sample(f, "iperf_shim_relayed_bytes_total", s, extra, s->stats.udp_bytes[d]);
        }
    }

    head(f, "iperf_shim_pool_members", "gauge",
         "Servers of the pool by protocol and state: up, down (down or suspect), busy (an "
         "iperf3 test of the shim on it).");
    for (s = services; s; s = s->next) {
        const struct pool *pools[2] = { &s->pool3, &s->pool2 };
        for (int k = 0; k < 2; k++) {
            int n[3];
            pool_counts(pools[k], &n[0], &n[1], &n[2]);
            static const char *const state[3] = { "up", "down", "busy" };
            for (int j = 0; j < (k == 0 ? 3 : 2); j++) {
                snprintf(extra, sizeof(extra), ",protocol=\"%s\",state=\"%s\"",
                         pools[k]->what, state[j]);
                sample(f, "iperf_shim_pool_members", s, extra, (uint64_t)n[j]);
            }
        }
    }
    head(f, "iperf_shim_queue_length", "gauge", "iperf3 tests waiting for a free server.");
    for (s = services; s; s = s->next)
        sample(f, "iperf_shim_queue_length", s, "", (uint64_t)s->pool3.queued);
    head(f, "iperf_shim_queue_waited_total", "counter",
         "iperf3 tests that waited in the queue and then got a server.");
    for (s = services; s; s = s->next)
        sample(f, "iperf_shim_queue_waited_total", s, "", s->pool3.waited);
    head(f, "iperf_shim_queue_wait_seconds_total", "counter",
         "Total time those tests waited.");
    for (s = services; s; s = s->next) {
        fputs("iperf_shim_queue_wait_seconds_total{service=\"", f);
        label(f, s->cfg.name);
        fprintf(f, "\"} %.3f\n", s->pool3.wait_sum);
    }
    head(f, "iperf_shim_queue_refused_total", "counter",
         "iperf3 tests refused (ACCESS_DENIED) because no server freed up, by reason: "
         "timeout (--queue-timeout), full (--queue-max).");
    for (s = services; s; s = s->next) {
        sample(f, "iperf_shim_queue_refused_total", s, ",reason=\"timeout\"",
               s->pool3.queue_timeouts);
        sample(f, "iperf_shim_queue_refused_total", s, ",reason=\"full\"", s->pool3.queue_full);
    }

    head(f, "iperf_shim_udp_flows", "gauge", "UDP flows open (each has its own upstream port).");
    for (s = services; s; s = s->next)
        sample(f, "iperf_shim_udp_flows", s, "", (uint64_t)udp_live_flows(s));
    head(f, "iperf_shim_udp_flows_total", "counter", "UDP flows created.");
    for (s = services; s; s = s->next) {
        const struct udp_counters *c = udp_counters(s);
        sample(f, "iperf_shim_udp_flows_total", s, "", c ? c->flows : 0);
    }
    head(f, "iperf_shim_udp_icmp_errors_absorbed_total", "counter",
         "ICMP errors that reached the shim's UDP sockets and were absorbed (iperf2 #391).");
    for (s = services; s; s = s->next) {
        const struct udp_counters *c = udp_counters(s);
        sample(f, "iperf_shim_udp_icmp_errors_absorbed_total", s, "", c ? c->icmp_absorbed : 0);
    }
    head(f, "iperf_shim_udp_server_reports_answered_total", "counter",
         "iperf2 final datagrams answered by the shim from the Server Report already relayed.");
    for (s = services; s; s = s->next) {
        const struct udp_counters *c = udp_counters(s);
        sample(f, "iperf_shim_udp_server_reports_answered_total", s, "",
               c ? c->fins_answered : 0);
    }
    head(f, "iperf_shim_udp_datagrams_dropped_total", "counter",
         "Client datagrams dropped, by reason.");
    for (s = services; s; s = s->next) {
        const struct udp_counters *c = udp_counters(s);
        struct udp_counters z = { 0 };
        if (c == NULL)
            c = &z;
        sample(f, "iperf_shim_udp_datagrams_dropped_total", s, ",reason=\"not_iperf\"", c->junk);
        sample(f, "iperf_shim_udp_datagrams_dropped_total", s, ",reason=\"protocol_excluded\"",
               c->wrong_protocol);
        sample(f, "iperf_shim_udp_datagrams_dropped_total", s, ",reason=\"no_new_flow\"",
               c->refused_flows);
        sample(f, "iperf_shim_udp_datagrams_dropped_total", s, ",reason=\"queue_full\"",
               c->queue_drops);
        sample(f, "iperf_shim_udp_datagrams_dropped_total", s, ",reason=\"server_not_allowed\"",
               c->refused_servers);
    }
}
