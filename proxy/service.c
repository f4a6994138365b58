#include "proxy/service.h"

#include "protocol/iperf3_ctrl.h"
#include "proxy/iperf2.h"
#include "proxy/iperf3.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/udp.h"

#include <inttypes.h>
#include <string.h>

void service_config_defaults(struct service_config *c)
{
    memset(c, 0, sizeof(*c));
    c->protocol          = PROTO_AUTO;
    c->connect_timeout   = 5.0;
    c->handshake_timeout = 10.0;
    c->idle_timeout      = 300.0;
    c->role_timeout      = 5.0;
    c->fence_timeout     = 2.0;
    c->params_max        = I3_PARAMS_MAX_DEFAULT;
    c->results_max       = I3_RESULTS_MAX_DEFAULT;
    c->udp_linger        = 10.0;
    c->max_flows         = 4096;
    c->use_splice        = true;
    c->udp_gso           = true;
    c->queue_timeout     = 60.0;
    c->queue_max         = 256;
}

void service_init(struct service *svc, struct ev_loop *loop, const struct service_config *cfg)
{
    memset(svc, 0, sizeof(*svc));
    svc->loop = loop;
    svc->cfg = *cfg;
    svc->state = SERVICE_RUNNING;
    svc->listener.fd = -1;
    svc->listener.spare_fd = -1;
    pool_init(&svc->pool3, loop, "iperf3", svc->cfg.name, &svc->cfg.upstream);
    pool_init(&svc->pool2, loop, "iperf2", svc->cfg.name, &svc->cfg.upstream2);
}

void service_reconfigured(struct service *svc)
{
    pool_configure(&svc->pool3, &svc->cfg.upstream);
    pool_configure(&svc->pool2, &svc->cfg.upstream2);
}

int service_start(struct service *svc, const char **what)
{
    if (tcp_listener_start(&svc->listener, svc) == -1) {
        *what = "TCP";
        return -1;
    }
    if (udp_start(svc) == -1) {
        *what = "UDP";
        tcp_listener_stop(&svc->listener);
        return -1;
    }
    return 0;
}

bool service_admits(struct service *svc, const struct sockaddr_storage *client,
                    const char *what)
{
    char who[ADDR_STR_MAX];
    if (acl_allows(&svc->cfg.allow, client))
        return true;
    svc->acl_refused++;
    if (log_rate_ok(&svc->acl_log, ev_now(svc->loop), 1.0)) {
        log_warn("service %s: refusing %s %s: not in the allowed networks (%" PRIu64
                 " refused in all, %" PRIu64 " not logged)", svc->cfg.name, what,
                 net_addr_str((const struct sockaddr *)client, who, sizeof(who)),
                 svc->acl_refused, svc->acl_log.suppressed);
        svc->acl_log.suppressed = 0;
    }
    return false;
}

void service_drain(struct service *svc)
{
    svc->state = SERVICE_DRAINING;
}

int service_live(const struct service *svc)
{
    return svc->fronts.pending + svc->ntests + svc->nsessions + udp_live_flows(svc);
}

/* One line with what the service's UDP side absorbed, for the operator. */
static void log_udp_counters(const struct service *svc)
{
    const struct udp_counters *c = udp_counters(svc);
    char l[ADDR_STR_MAX];
    if (c == NULL || c->flows == 0)
        return;
    log_info("UDP on %s: %" PRIu64 " flows, %" PRIu64 " ICMP errors absorbed, %" PRIu64
             " final datagrams answered by the shim, %" PRIu64 " junk datagrams, %" PRIu64
             " refused (table full or draining), %" PRIu64 " excluded by --protocol, %" PRIu64
             " queue drops, %" PRIu64 " for servers not served (--allow-server, the shim itself)",
             net_addr_str((const struct sockaddr *)&svc->cfg.listen_addr, l, sizeof(l)),
             c->flows, c->icmp_absorbed, c->fins_answered, c->junk, c->refused_flows,
             c->wrong_protocol, c->queue_drops, c->refused_servers);
}

void service_stop(struct service *svc)
{
    tcp_listener_stop(&svc->listener);
    front_close_all(svc);
    i3_close_all(svc);
    i2_close_all(svc);
    log_udp_counters(svc);
    udp_stop(svc);
    pool_stop(&svc->pool3);
    pool_stop(&svc->pool2);
}
