#include "proxy/transparent.h"

#include "proxy/acl.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80          /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80     /* linux/netfilter_ipv6/ip6_tables.h */
#endif

/* The conntrack original destination of fd, in the form of its own address
 * `self` (IPv4, IPv6, or v4-mapped IPv6 on a dual-stack socket).  Returns 0,
 * or -1 (no conntrack entry: no NAT on this connection). */
static int conntrack_dst(int fd, const struct sockaddr_storage *self,
                         struct sockaddr_storage *dst, socklen_t *len)
{
    struct sockaddr_storage got;
    bool v4 = net_addr_family(self) == AF_INET;
    socklen_t l = v4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    memset(&got, 0, sizeof(got));
    if (v4) {
        if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &got, &l) == -1 || got.ss_family != AF_INET)
            return -1;
    } else if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &got, &l) == -1 ||
               got.ss_family != AF_INET6) {
        return -1;
    }
    *len = net_addr_in_family(&got, self->ss_family, dst);
    return *len > 0 ? 0 : -1;
}

int transparent_orig_dst(int fd, struct sockaddr_storage *dst, socklen_t *len)
{
    struct sockaddr_storage self;
    socklen_t slen = sizeof(self);
    if (getsockname(fd, (struct sockaddr *)&self, &slen) == -1)
        return -1;
    if (conntrack_dst(fd, &self, dst, len) == 0)   /* REDIRECT / DNAT */
        return 0;
    *dst = self;                                     /* TPROXY (or no rule at all) */
    *len = slen;
    return 0;
}

/* True when a is an address of this host: a socket can be bound to it
 * without IP_TRANSPARENT. */
static bool is_local(const struct sockaddr_storage *a)
{
    struct sockaddr_storage b = *a;
    socklen_t len = net_set_port(&b, 0);
    int fd = socket(b.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return false;
    bool local = bind(fd, (struct sockaddr *)&b, len) == 0;
    close(fd);
    return local;
}

/* The shim's own listener: its port, and an address of this host that the
 * listener takes (its own, or any when it listens on a wildcard). */
static bool is_own_listener(const struct service *svc, const struct sockaddr_storage *dst)
{
    const struct sockaddr_storage *l = &svc->cfg.listen_addr;
    if (net_port((const struct sockaddr *)dst) != net_port((const struct sockaddr *)l))
        return false;
    if (net_same_host(dst, l))
        return true;
    bool wildcard = (l->ss_family == AF_INET &&
                     ((const struct sockaddr_in *)l)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
                    (l->ss_family == AF_INET6 &&
                     IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)l)->sin6_addr));
    return wildcard && is_local(dst);
}

bool transparent_admits(struct service *svc, const struct sockaddr_storage *client,
                        const struct sockaddr_storage *dst, const char *what)
{
    const char *why = NULL;
    if (!acl_allows(&svc->cfg.allow_server, dst))
        why = "server not in --allow-server";
    else if (is_own_listener(svc, dst))
        why = "that is the shim's own listener (it would connect to itself)";
    if (why == NULL)
        return true;
    svc->server_refused++;
    if (log_rate_ok(&svc->server_log, ev_now(svc->loop), 1.0)) {
        char c[ADDR_STR_MAX], d[ADDR_STR_MAX];
        log_warn("service %s: refusing %s %s to %s: %s (%" PRIu64 " refused in all, %" PRIu64
                 " not logged)", svc->cfg.name, what,
                 net_addr_str((const struct sockaddr *)client, c, sizeof(c)),
                 net_addr_str((const struct sockaddr *)dst, d, sizeof(d)), why,
                 svc->server_refused, svc->server_log.suppressed);
        svc->server_log.suppressed = 0;
    }
    return false;
}

int transparent_bind_source(int fd, const struct sockaddr_storage *source)
{
    struct sockaddr_storage b = *source;
    socklen_t len = net_set_port(&b, 0);
    int one = 1;
    if (net_set_transparent(fd, b.ss_family) == -1)
        return -1;
    /* the port is the kernel's choice: many upstream connections share the address */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    return bind(fd, (struct sockaddr *)&b, len);
}
