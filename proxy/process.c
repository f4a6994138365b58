#include "proxy/process.h"

#include "proxy/http.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/version.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_INTERVAL 0.25   /* s: how often a drain looks for what is left */

static struct {
    struct ev_loop  *loop;
    struct service  *services;       /* running and retiring services */
    double           drain_timeout;  /* s */
    bool             draining;       /* a first SIGTERM/SIGINT came */
    ev_tstamp        drain_deadline; /* ev_now() when the drain gives up */
    ev_timer         check;          /* looks for drained services while any drain */
    ev_signal        sigint, sigterm, sighup;
    config_reload_fn reload;         /* NULL: SIGHUP has nothing to read */
    void            *reload_arg;
    struct sockaddr_storage metrics_addr; /* where /metrics is served */
    socklen_t        metrics_len;         /* 0: not served */
} P;

static int live_total(void)
{
    int n = 0;
    for (struct service *svc = P.services; svc; svc = svc->next)
        n += service_live(svc);
    return n;
}

static const char *listen_str(const struct service *svc, char *buf)
{
    return net_addr_str((const struct sockaddr *)&svc->cfg.listen_addr, buf, ADDR_STR_MAX);
}

/* Starts a service of cfg and adds it to the list.  Returns 0, or -1 (logged). */
static int add_service(const struct service_config *cfg)
{
    char l[ADDR_STR_MAX], u[POOL_LIST_STR_MAX], u2[POOL_LIST_STR_MAX];
    const char *what;
    struct service *svc = malloc(sizeof(*svc));
    if (svc == NULL) {
        log_error("service %s: out of memory", cfg->name);
        return -1;
    }
    service_init(svc, P.loop, cfg);
    if (service_start(svc, &what) == -1) {
        log_error("service %s: cannot listen on %s (%s): %s%s", cfg->name, listen_str(svc, l),
                  what, strerror(errno), cfg->transparent && errno == EPERM ?
                  " (--transparent needs CAP_NET_ADMIN or CAP_NET_RAW: run as root or grant one)" : "");
        free(svc);
        return -1;
    }
    svc->next = P.services;
    P.services = svc;
    if (cfg->transparent)
        log_info("service %s: listening on %s (TCP and UDP), transparent: relaying each test "
                 "to the server its client addressed%s%s", cfg->name, listen_str(svc, l),
                 cfg->transparent_source ? ", from the client's address" : "",
                 cfg->use_splice ? "" : " (splice off)");
    else
        log_info("service %s: listening on %s (TCP and UDP), relaying iperf3 to %s, iperf2 to "
                 "%s%s", cfg->name, listen_str(svc, l),
                 pool_list_str(&cfg->upstream, u, sizeof(u)),
                 pool_list_str(&cfg->upstream2, u2, sizeof(u2)),
                 cfg->use_splice ? "" : " (splice off)");
    return 0;
}

static void remove_service(struct service *svc)
{
    for (struct service **pp = &P.services; *pp; pp = &(*pp)->next) {
        if (*pp == svc) {
            *pp = svc->next;
            break;
        }
    }
    service_stop(svc);
    free(svc);
}

/* Closes everything that is left and leaves the loop. */
static void process_exit(void)
{
    http_stop();
    ev_timer_stop(P.loop, &P.check);
    ev_signal_stop(P.loop, &P.sigint);
    ev_signal_stop(P.loop, &P.sigterm);
    ev_signal_stop(P.loop, &P.sighup);
    while (P.services)
        remove_service(P.services);
    ev_break(P.loop, EVBREAK_ALL);
}

static void check_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct service *next;
    for (struct service *svc = P.services; svc; svc = next) {
        next = svc->next;
        if (svc->retiring && service_live(svc) == 0) {
            log_info("service %s: removed by a reload, drained and closed", svc->cfg.name);
            remove_service(svc);
        }
    }
    if (P.draining) {
        int left = live_total();
        if (left == 0) {
            log_info("drained: every test and UDP flow has ended; exiting");
            process_exit();
        } else if (ev_now(loop) >= P.drain_deadline) {
            log_warn("drain timeout (%.0f s): closing %d test(s), session(s) and UDP flow(s) "
                     "still open", P.drain_timeout, left);
            process_exit();
        }
        return;
    }
    bool retiring = false;
    for (struct service *svc = P.services; svc; svc = svc->next)
        retiring = retiring || svc->retiring;
    if (!retiring)
        ev_timer_stop(loop, w);
}

static void check_start(void)
{
    if (!ev_is_active(&P.check)) {
        ev_timer_set(&P.check, CHECK_INTERVAL, CHECK_INTERVAL);
        ev_timer_start(P.loop, &P.check);
    }
}

/* First signal: stop taking new tests and exit once the running ones have
 * ended.  A second signal exits at once. */
static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    int left = live_total();
    if (P.draining) {
        log_warn("signal %d again: exiting now, closing %d test(s), session(s) and UDP "
                 "flow(s)", w->signum, left);
        process_exit();
        return;
    }
    P.draining = true;
    for (struct service *svc = P.services; svc; svc = svc->next)
        service_drain(svc);
    if (left == 0) {
        log_info("signal %d: nothing running; exiting", w->signum);
        process_exit();
        return;
    }
    log_info("signal %d: draining: %d test(s), session(s) and UDP flow(s) still open; new "
             "tests are refused; exiting when they end, at most in %.0f s (a second signal "
             "exits at once)", w->signum, left, P.drain_timeout);
    P.drain_deadline = ev_now(loop) + P.drain_timeout;
    check_start();
}

static struct service *find_by_listen(const struct service_config *c)
{
    for (struct service *svc = P.services; svc; svc = svc->next)
        if (!svc->retiring && svc->cfg.listen_len == c->listen_len &&
            memcmp(&svc->cfg.listen_addr, &c->listen_addr, c->listen_len) == 0)
            return svc;
    return NULL;
}

static void on_reload_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop; (void)w; (void)revents;
    static struct shim_config next;   /* large: not on the stack */
    char err[512];
    if (P.draining) {
        log_warn("SIGHUP while draining: ignored");
        return;
    }
    if (P.reload == NULL) {
        log_warn("SIGHUP: no configuration file to reload (started from the command line)");
        return;
    }
    if (P.reload(P.reload_arg, &next, err, sizeof(err)) == -1) {
        log_error("reload refused: %s; the running configuration stays", err);
        return;
    }
    log_threshold = next.log_level;
    log_setup(next.log_format, next.log_syslog);
    P.drain_timeout = next.drain_timeout;
    if (next.metrics_len != P.metrics_len ||
        memcmp(&next.metrics_addr, &P.metrics_addr, next.metrics_len) != 0)
        log_warn("reload: the metrics address changes only with a restart");
    bool keep[SHIM_MAX_SERVICES] = { false };
    int added = 0, removed = 0, changed = 0;
    for (int i = 0; i < next.nservices; i++) {
        struct service *svc = find_by_listen(&next.services[i]);
        if (svc == NULL)
            continue;
        keep[i] = true;
        svc->mark = true;
        if (svc->cfg.transparent != next.services[i].transparent) {
            /* its sockets were opened for the one mode or the other (IP_TRANSPARENT) */
            log_warn("reload: service %s: --transparent is switched %s only by a restart; "
                     "the service keeps its settings", svc->cfg.name,
                     next.services[i].transparent ? "on" : "off");
            continue;
        }
        if (memcmp(&svc->cfg, &next.services[i], sizeof(svc->cfg)) != 0) {
            svc->cfg = next.services[i];
            service_reconfigured(svc);
            changed++;
            log_info("service %s: new settings, for the tests that start from now on",
                     svc->cfg.name);
        }
    }
    for (struct service *svc = P.services; svc; svc = svc->next) {
        if (!svc->mark && !svc->retiring) {
            svc->retiring = true;
            service_drain(svc);
            removed++;
            log_info("service %s: removed by the reload: no new tests; %d test(s), session(s) "
                     "and UDP flow(s) finish first", svc->cfg.name, service_live(svc));
        }
        svc->mark = false;
    }
    for (int i = 0; i < next.nservices; i++)
        if (!keep[i] && add_service(&next.services[i]) == 0)
            added++;
    log_info("reloaded: %d service(s) added, %d removed (draining), %d with new settings",
             added, removed, changed);
    if (removed > 0)
        check_start();
}

int process_run(struct ev_loop *loop, const struct shim_config *cfg, config_reload_fn reload,
                void *reload_arg)
{
    P.loop = loop;
    P.drain_timeout = cfg->drain_timeout;
    P.reload = reload;
    P.reload_arg = reload_arg;
    log_threshold = cfg->log_level;
    log_setup(cfg->log_format, cfg->log_syslog);
    for (int i = 0; i < cfg->nservices; i++) {
        if (add_service(&cfg->services[i]) == -1) {
            while (P.services)
                remove_service(P.services);
            return 1;
        }
    }
    P.metrics_addr = cfg->metrics_addr;
    P.metrics_len = cfg->metrics_len;
    if (P.metrics_len > 0) {
        char m[ADDR_STR_MAX];
        net_addr_str((const struct sockaddr *)&P.metrics_addr, m, sizeof(m));
        if (http_start(loop, &P.metrics_addr, P.metrics_len, &P.services) == -1) {
            log_error("cannot serve metrics on %s: %s", m, strerror(errno));
            while (P.services)
                remove_service(P.services);
            return 1;
        }
        log_info("metrics at http://%s/metrics", m);
    }
    ev_init(&P.check, check_cb);
    ev_signal_init(&P.sigint, on_stop_signal, SIGINT);
    ev_signal_init(&P.sigterm, on_stop_signal, SIGTERM);
    ev_signal_init(&P.sighup, on_reload_signal, SIGHUP);
    ev_signal_start(loop, &P.sigint);
    ev_signal_start(loop, &P.sigterm);
    ev_signal_start(loop, &P.sighup);
    log_info("iperf-shim %s ready: %d service(s)", shim_version, cfg->nservices);
    ev_run(loop, 0);
    return 0;
}
