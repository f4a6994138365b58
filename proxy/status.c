#include "proxy/status.h"

#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/stats.h"
#include "proxy/udp.h"
#include "proxy/version.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>


static const char *addr(const struct sockaddr_storage *ss, char *buf)
{
    return net_addr_str((const struct sockaddr *)ss, buf, ADDR_STR_MAX);
}

/* ------------------------------------------------------------------ JSON */

static cJSON *test_json(const struct test_info *t)
{
    char a[ADDR_STR_MAX];
    cJSON *o = cJSON_CreateObject();
    if (t->id[0])
        cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "protocol", t->protocol);
    cJSON_AddStringToObject(o, "transport", t->transport);
    cJSON_AddStringToObject(o, "mode", t->mode);
    cJSON_AddStringToObject(o, "client", addr(&t->client, a));
    cJSON_AddStringToObject(o, "server", addr(&t->server, a));
    cJSON_AddNumberToObject(o, "started", (double)t->started);
    cJSON_AddNumberToObject(o, "seconds", t->seconds);
    cJSON_AddNumberToObject(o, "bytes_client_to_server", (double)t->bytes[0]);
    cJSON_AddNumberToObject(o, "bytes_server_to_client", (double)t->bytes[1]);
    cJSON_AddNumberToObject(o, "roles_repaired", t->repaired);
    cJSON_AddBoolToObject(o, "ok", t->ok);
    cJSON_AddStringToObject(o, "outcome", t->outcome);
    return o;
}

static void add_test(void *arg, const struct test_info *t)
{
    cJSON_AddItemToArray(arg, test_json(t));
}

/* A pool's members and queue. */
static cJSON *pool_json(const struct pool *p)
{
    char a[ADDR_STR_MAX];
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "members");
    for (int i = 0; i < p->n; i++) {
        const struct pool_member *m = &p->m[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(list, e);
        cJSON_AddStringToObject(e, "address", addr(&m->addr, a));
        cJSON_AddStringToObject(e, "health", member_health_str(m->health));
        cJSON_AddNumberToObject(e, "tests", m->tests);
        cJSON_AddNumberToObject(e, "load", m->load);
        cJSON_AddNumberToObject(e, "served", (double)m->served);
        cJSON_AddNumberToObject(e, "refusals", (double)m->refusals);
    }
    cJSON_AddNumberToObject(o, "queued", p->queued);
    cJSON_AddNumberToObject(o, "waited", (double)p->waited);
    cJSON_AddNumberToObject(o, "wait_seconds_total", p->wait_sum);
    cJSON_AddNumberToObject(o, "wait_seconds_max", p->wait_max);
    cJSON_AddNumberToObject(o, "queue_timeouts", (double)p->queue_timeouts);
    cJSON_AddNumberToObject(o, "queue_full", (double)p->queue_full);
    return o;
}

int status_json(FILE *f, const struct service *services)
{
    char a[ADDR_STR_MAX];
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "services");
    cJSON_AddStringToObject(root, "version", shim_version);
    cJSON_AddNumberToObject(root, "time", (double)time(NULL));
    for (const struct service *s = services; s; s = s->next) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(list, o);
        cJSON_AddStringToObject(o, "name", s->cfg.name);
        cJSON_AddStringToObject(o, "listen", addr(&s->cfg.listen_addr, a));
        char u[POOL_LIST_STR_MAX];
        cJSON_AddStringToObject(o, "upstream", pool_list_str(&s->cfg.upstream, u, sizeof(u)));
        cJSON_AddStringToObject(o, "upstream_iperf2",
                                pool_list_str(&s->cfg.upstream2, u, sizeof(u)));
        cJSON_AddItemToObject(o, "pool", pool_json(&s->pool3));
        cJSON_AddItemToObject(o, "pool_iperf2", pool_json(&s->pool2));
        cJSON_AddStringToObject(o, "state", s->state == SERVICE_RUNNING ? "running" : "draining");
        cJSON_AddNumberToObject(o, "udp_flows", udp_live_flows(s));
        const struct udp_counters *c = udp_counters(s);
        cJSON_AddNumberToObject(o, "icmp_absorbed", c ? (double)c->icmp_absorbed : 0);
        cJSON_AddNumberToObject(o, "roles_repaired", (double)s->stats.roles_repaired);
        cJSON *run = cJSON_AddArrayToObject(o, "running");
        i3_running(s, add_test, run);
        i2_running(s, add_test, run);
        cJSON *rec = cJSON_AddArrayToObject(o, "recent");
        const struct test_info *t;
        for (unsigned i = 0; (t = stats_recent(&s->stats, i)) != NULL; i++)
            cJSON_AddItemToArray(rec, test_json(t));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (text == NULL)
        return -1;
    fputs(text, f);
    fputc('\n', f);
    free(text);
    return 0;
}

/* ------------------------------------------------------------------ HTML */

static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void test_row(void *arg, const struct test_info *t)
{
    FILE *f = arg;
    char a[ADDR_STR_MAX];
    fprintf(f, "<tr class=\"%s\"><td>", t->ok ? "ok" : "bad");
    esc(f, t->id[0] ? t->id : "-");
    fprintf(f, "</td><td>%s %s %s</td><td>", t->protocol, t->transport, t->mode);
    esc(f, addr(&t->client, a));
    fputs("</td><td>", f);
    esc(f, addr(&t->server, a));
    fprintf(f, "</td><td>%.1f s</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%d</td><td>",
            t->seconds, t->bytes[0], t->bytes[1], t->repaired);
    esc(f, t->outcome);
    fputs("</td></tr>\n", f);
}

static const char table_head[] =
    "<table><tr><th>test</th><th>protocol</th><th>client</th><th>server</th><th>elapsed</th>"
    "<th>bytes client&rarr;server</th><th>bytes server&rarr;client</th>"
    "<th>roles re-paired</th><th>state / outcome</th></tr>\n";

void status_html(FILE *f, const struct service *services)
{
    char a[ADDR_STR_MAX];
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
          "<meta http-equiv=\"refresh\" content=\"2\"><title>iperf-shim status</title>"
          "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
          "margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
          "tr.bad td{background:#fdd}h2{margin-bottom:.2em}.dim{color:#666}</style>"
          "</head><body>\n", f);
    fprintf(f, "<h1>iperf-shim %s</h1>\n", shim_version);
    for (const struct service *s = services; s; s = s->next) {
        const struct udp_counters *c = udp_counters(s);
        fputs("<h2 class=\"service\">", f);
        esc(f, s->cfg.name);
        fputs("</h2>\n<p class=\"dim\">listen ", f);
        esc(f, addr(&s->cfg.listen_addr, a));
        char u[POOL_LIST_STR_MAX];
        int up, down, busy;
        pool_counts(&s->pool3, &up, &down, &busy);
        fputs(", iperf3 server(s) ", f);
        esc(f, pool_list_str(&s->cfg.upstream, u, sizeof(u)));
        fprintf(f, " (%d up, %d down, %d running a test; %d waiting)", up, down, busy,
                s->pool3.queued);
        fputs(", iperf2 server(s) ", f);
        esc(f, pool_list_str(&s->cfg.upstream2, u, sizeof(u)));
        fprintf(f, "; %s; UDP flows %d; ICMP errors absorbed %" PRIu64 "; roles re-paired %"
                PRIu64 "</p>\n", s->state == SERVICE_RUNNING ? "taking tests" : "draining",
                udp_live_flows(s), c ? c->icmp_absorbed : 0, s->stats.roles_repaired);
        fprintf(f, "<h3>running (%d)</h3>\n%s", s->ntests + s->nsessions, table_head);
        i3_running(s, test_row, f);
        i2_running(s, test_row, f);
        fprintf(f, "</table>\n<h3>recently ended</h3>\n%s", table_head);
        const struct test_info *t;
        for (unsigned i = 0; (t = stats_recent(&s->stats, i)) != NULL; i++)
            test_row(f, t);
        fputs("</table>\n", f);
    }
    fputs("</body></html>\n", f);
}
