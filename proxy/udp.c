/* The UDP listener of a service: client datagrams in (recvmmsg batches,
 * with the address each was sent to), dispatched to flows by client address;
 * new flows for datagrams that look like iperf; the server's datagrams back
 * (see proxy/udp.h for the whole UDP side, proxy/udp_flow.h for its files). */
#include "proxy/udp.h"

#include "protocol/detect.h"
#include "protocol/iperf2.h"
#include "proxy/iperf3.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/transparent.h"
#include "proxy/udp_back.h"
#include "proxy/udp_flow.h"

#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define B (&udp_batch)

const struct udp_counters *udp_counters(const struct service *svc)
{
    const struct udp_state *u = svc->udp;
    if (u == NULL)
        return NULL;
    return &u->ctr;
}

int udp_live_flows(const struct service *svc)
{
    const struct udp_state *u = svc->udp;
    if (u == NULL)
        return 0;
    return u->nflows;
}

/* A datagram that belongs to no flow and starts none: counted, and logged
 * (at most 5 lines a second) with its sender and first bytes: never dropped
 * without a word, a client the shim cannot recognise would just see loss. */
static void junk_drop(struct udp_state *u, const struct sockaddr_storage *from,
                      const uint8_t *d, size_t len, const char *why)
{
    u->ctr.junk++;
    if (!log_rate_ok(&u->junk_log, ev_now(u->loop), 1.0))
        return;
    char who[ADDR_STR_MAX], hex[2 * 24 + 1];
    size_t n = len < 24 ? len : 24;
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    hex[2 * n] = '\0';
    log_warn("UDP datagram from %s dropped: %s (%zu bytes, first %s); %" PRIu64
             " such datagrams so far, %" PRIu64 " not logged",
             net_addr_str((const struct sockaddr *)from, who, sizeof(who)), why, len, hex,
             u->ctr.junk, u->junk_log.suppressed);
    u->junk_log.suppressed = 0;
}

/* Datagrams from the server. */
static void upstream_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct udp_flow *f = w->data;
    struct udp_state *u = f->u;
    for (int i = 0; i < BATCH; i++) {
        B->iovs[i] = (struct iovec){ .iov_base = B->bufs[i], .iov_len = DGRAM_MAX };
        B->msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &B->iovs[i], .msg_iovlen = 1 };
    }
    int n = recvmmsg(f->ufd, B->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n == -1) {
        if (errno == ECONNREFUSED) {
            /* ICMP port-unreachable from the server side: absorbed */
            f->icmp++;
            u->ctr.icmp_absorbed++;
            log_debug("ICMP error absorbed on the upstream socket of a UDP flow");
        }
        return;
    }
    f->last[1] = ev_now(loop);
    if (f->detached) {
        /* its client's address now belongs to a newer test: keep the server's
         * late datagrams away from it, and keep this port open (no ICMP) */
        f->late_reports += (uint32_t)n;
        return;
    }
    if (f->proto == UDP_IPERF2)
        n = udp_i2_from_server(f, n);
    udp_send_batch_to_client(f, n);
}

static void flow_connect_client(struct udp_flow *f);
static void connected_readable_cb(struct ev_loop *loop, ev_io *w, int revents);

/* A zeroed flow of u for client (no sockets yet), or NULL. */
static struct udp_flow *flow_alloc(struct udp_state *u, const struct sockaddr_storage *client,
                                   socklen_t clen, enum udp_proto proto)
{
    struct udp_flow *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->u = u;
    f->client = *client;
    f->clen = clen;
    f->ufd = -1;
    f->cfd = -1;
    f->proto = proto;
    return f;
}

/* f has its upstream socket ufd (connected to f->server): reads the first
 * datagram's test header, opens an iperf2 connect-back port when the test
 * needs one, and puts f in the table. */
static void flow_start(struct udp_flow *f, int ufd, const uint8_t *first, size_t first_len)
{
    struct udp_state *u = f->u;
    char c[ADDR_STR_MAX], s[ADDR_STR_MAX];
    f->ufd = ufd;
    if (f->proto == UDP_IPERF2) {
        i2_udp_client_parse(first, first_len, &f->i2);   /* detect_udp() accepted it */
        /* with --transparent-source the server reaches the client itself
         * (its return path is the gateway): no connect-back port */
        if (f->i2.hdr.connect_back && !u->cfg->transparent_source)
            udp_i2_open_back(f);
    }
    f->last[0] = f->last[1] = f->created = ev_now(u->loop);
    f->started = time(NULL);
    ev_io_init(&f->urd, upstream_readable_cb, ufd, EV_READ);
    ev_io_init(&f->uwr, udp_upstream_writable_cb, ufd, EV_WRITE);
    f->urd.data = f->uwr.data = f;
    ev_io_start(u->loop, &f->urd);
    udp_flow_insert(u, f);
    if (f->dest.ss_family != 0)
        log_debug("new %s UDP flow from %s to %s", f->proto == UDP_IPERF2 ? "iperf2" : "iperf3",
                  net_addr_str((const struct sockaddr *)&f->client, c, sizeof(c)),
                  net_addr_str((const struct sockaddr *)&f->server, s, sizeof(s)));
    else
        log_debug("new %s UDP flow from %s", f->proto == UDP_IPERF2 ? "iperf2" : "iperf3",
                  net_addr_str((const struct sockaddr *)&f->client, c, sizeof(c)));
}

/* Out of sockets (EMFILE, ENFILE, ENOBUFS): counted in the log, rate-limited. */
static void no_socket(struct udp_state *u, const struct sockaddr_storage *client)
{
    char c[ADDR_STR_MAX];
    if (log_rate_ok(&u->nosock_log, ev_now(u->loop), 1.0)) {
        log_warn("no socket for a UDP flow of %s: %s (%" PRIu64 " more not logged)",
                 net_addr_str((const struct sockaddr *)client, c, sizeof(c)),
                 strerror(errno), u->nosock_log.suppressed);
        u->nosock_log.suppressed = 0;
    }
}

/* --transparent: a new flow toward dest, the server the client addressed
 * (no pool).  Its client-facing socket speaks as that server; without one
 * the flow cannot answer as the server would, so it is not created.
 * Returns NULL when a socket cannot be had (logged, rate-limited). */
static struct udp_flow *flow_new_transparent(struct udp_state *u,
                                             const struct sockaddr_storage *client,
                                             socklen_t clen, const struct sockaddr_storage *dest,
                                             enum udp_proto proto, const uint8_t *first,
                                             size_t first_len)
{
    char c[ADDR_STR_MAX], d[ADDR_STR_MAX];
    struct udp_flow *f = flow_alloc(u, client, clen, proto);
    if (f == NULL)
        return NULL;
    f->dest = *dest;
    f->local = *dest;   /* what the client sent to */
    int ufd = udp_tp_upstream_socket(f);
    if (ufd == -1 || (f->cfd = udp_tp_client_socket(f)) == -1) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            no_socket(u, client);
        else if (log_rate_ok(&u->nosock_log, ev_now(u->loop), 1.0))
            log_warn("UDP flow from %s to %s not relayed: cannot open its %s socket: %s",
                     net_addr_str((const struct sockaddr *)client, c, sizeof(c)),
                     net_addr_str((const struct sockaddr *)dest, d, sizeof(d)),
                     ufd == -1 ? "upstream" : "client-facing", strerror(errno));
        if (ufd != -1)
            close(ufd);
        free(f);
        return NULL;
    }
    ev_io_init(&f->crd, connected_readable_cb, f->cfd, EV_READ);
    ev_io_init(&f->cwr, udp_client_writable_cb, f->cfd, EV_WRITE);
    f->crd.data = f->cwr.data = f;
    ev_io_start(u->loop, &f->crd);
    flow_start(f, ufd, first, first_len);
    return f;
}

/* A new flow for a client whose first datagram (first, first_len) was
 * recognised as proto: its own upstream socket, connected to the server.
 * Returns NULL (logged, counted) when the table is full or out of fds. */
static struct udp_flow *flow_new(struct udp_state *u, const struct sockaddr_storage *client,
                                 socklen_t clen, const struct sockaddr_storage *local,
                                 const struct sockaddr_storage *dest,
                                 enum udp_proto proto, const uint8_t *first, size_t first_len)
{
    char c[ADDR_STR_MAX];
    if (u->nflows >= u->cfg->max_flows) {
        u->ctr.refused_flows++;
        if (ev_now(u->loop) - u->last_full_log > 5) {
            u->last_full_log = ev_now(u->loop);
            log_warn("UDP flow table full (%d flows): dropping datagrams of new client %s "
                     "(%" PRIu64 " so far)", u->cfg->max_flows,
                     net_addr_str((const struct sockaddr *)client, c, sizeof(c)),
                     u->ctr.refused_flows);
        }
        return NULL;
    }
    struct sockaddr_storage server;   /* the pool member this flow goes to */
    socklen_t uplen;
    int member = -1;                  /* iperf2: the member whose load it adds to */
    if (dest->ss_family != 0)
        return flow_new_transparent(u, client, clen, dest, proto, first, first_len);
    if (proto == UDP_IPERF2) {
        member = pool_pick_iperf2(&u->svc->pool2);
        server = u->svc->pool2.m[member].addr;   /* a pool is never empty */
        uplen = u->svc->pool2.m[member].len;
    } else if (i3_udp_server(u->svc, client, &server, &uplen) == -1) {
        server = u->svc->pool3.m[0].addr;   /* no UDP test of that host: the first server */
        uplen = u->svc->pool3.m[0].len;
        log_debug("iperf3 UDP stream from %s belongs to no UDP test of its host: sent to "
                  "the first server", net_addr_str((const struct sockaddr *)client, c,
                                                    sizeof(c)));
    }
    const struct sockaddr_storage *up = &server;
    int fd = socket(up->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct udp_flow *f = NULL;
    if (fd == -1) {
        no_socket(u, client);
        goto fail;
    }
    udp_sockbufs(fd);
    if (connect(fd, (const struct sockaddr *)up, uplen) == -1) {
        log_warn("cannot open a UDP flow to the server: %s", strerror(errno));
        goto fail;
    }
    if ((f = flow_alloc(u, client, clen, proto)) == NULL)
        goto fail;
    f->server = server;
    f->member_held = member >= 0;
    f->local = *local;
    flow_start(f, fd, first, first_len);
    if (u->cfg->udp_connected)
        flow_connect_client(f);
    return f;
fail:
    if (fd != -1)
        close(fd);
    if (member >= 0)
        pool_release_iperf2(&u->svc->pool2, &server);
    return NULL;
}

/* Does this datagram start a new test on the address of an existing flow?
 * Clients reuse source ports, sometimes while the old flow still lingers.
 * iperf3: a second stream request (the client never repeats one); iperf2: a
 * datagram that is not a final one after the final ones began. */
static bool flow_restarts(const struct udp_flow *f, const uint8_t *d, size_t len)
{
    if (f->proto == UDP_IPERF3)
        return f->dgrams[0] > 0 && detect_udp(d, len) == DETECT_IPERF3;
    return udp_i2_restarts(f, d, len);
}

/* Client datagrams are readable on fd: the listener (own NULL), or the
 * connected client socket of flow own (--udp-connected, --transparent).  Each
 * goes to its flow by lookup, either way. */
static void client_readable(struct udp_state *u, int fd, struct udp_flow *own)
{
    for (int i = 0; i < BATCH; i++) {
        B->iovs[i] = (struct iovec){ .iov_base = B->bufs[i], .iov_len = DGRAM_MAX };
        B->msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &B->names[i], .msg_namelen = sizeof(B->names[i]),
            .msg_iov = &B->iovs[i], .msg_iovlen = 1,
            .msg_control = B->cbufs[i].b, .msg_controllen = sizeof(B->cbufs[i].b),
        };
    }
    int n = recvmmsg(fd, B->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n == -1) {
        if (errno == ECONNREFUSED) {   /* from the client side: absorbed */
            u->ctr.icmp_absorbed++;
            if (own != NULL)
                own->icmp++;
            log_debug("ICMP error absorbed on the client side of a UDP flow");
        }
        return;
    }
    struct udp_flow *run = NULL;   /* flow of the pending run of datagrams bound upstream */
    int run_start = 0, run_len = 0;
    for (int i = 0; i < n; i++) {
        struct msghdr *mh = &B->msgs[i].msg_hdr;
        uint8_t *d = B->bufs[i];
        size_t len = B->msgs[i].msg_len;
        if (mh->msg_flags & MSG_TRUNC) {
            junk_drop(u, &B->names[i], d, len, "longer than the shim's datagram buffer");
            continue;
        }
        struct sockaddr_storage dest;   /* --transparent: the server it was sent to */
        memset(&dest, 0, sizeof(dest));
        if (u->cfg->transparent && udp_tp_dest_from_cmsg(mh, u->family, &dest) == -1) {
            junk_drop(u, &B->names[i], d, len, "no original destination (not sent here "
                      "by a TPROXY rule?)");
            continue;
        }
        struct udp_flow *f = udp_flow_lookup(u, &B->names[i], &dest);
        if (f != NULL && flow_restarts(f, d, len)) {
            if (run == f) {   /* what is batched for the old flow goes out first */
                udp_send_batch_to_server(run, run_start, run_len);
                run = NULL;
                run_len = 0;
            }
            udp_flow_detach(f);
            f = NULL;
        }
        if (f == NULL) {
            struct sockaddr_storage local;
            enum udp_proto proto;
            switch (detect_udp(d, len)) {
            case DETECT_IPERF3: proto = UDP_IPERF3; break;
            case DETECT_IPERF2: proto = UDP_IPERF2; break;
            default:
                junk_drop(u, &B->names[i], d, len, "no flow from that address, and neither an "
                          "iperf3 stream request nor an iperf2 client test header");
                continue;
            }
            if ((proto == UDP_IPERF3 && u->cfg->protocol == PROTO_IPERF2) ||
                (proto == UDP_IPERF2 && u->cfg->protocol == PROTO_IPERF3)) {
                u->ctr.wrong_protocol++;   /* --protocol excludes it: no state */
                log_debug("UDP datagram of an %s client dropped: --protocol %s",
                          proto == UDP_IPERF3 ? "iperf3" : "iperf2",
                          u->cfg->protocol == PROTO_IPERF2 ? "iperf2" : "iperf3");
                continue;
            }
            if (!service_open(u->svc)) {
                u->ctr.refused_flows++;   /* draining: a new client gets no state */
                continue;
            }
            if (!service_admits(u->svc, &B->names[i], "UDP client"))
                continue;                 /* not allowed: no state either */
            if (dest.ss_family != 0 &&
                !transparent_admits(u->svc, &B->names[i], &dest, "UDP datagram from")) {
                u->ctr.refused_servers++;   /* a server not served: no state */
                continue;
            }
            udp_local_from_cmsg(u, mh, &local);
            f = flow_new(u, &B->names[i], mh->msg_namelen, &local, &dest, proto, d, len);
            if (f == NULL)
                continue;
        }
        f->last[0] = ev_now(u->loop);
        if (f->proto == UDP_IPERF2 && !udp_i2_from_client(f, d, len))
            continue;   /* handled here (answered from a kept report) */
        if (run != f || run_start + run_len != i) {
            udp_send_batch_to_server(run, run_start, run_len);
            run = f;
            run_start = i;
            run_len = 0;
        }
        run_len++;
    }
    udp_send_batch_to_server(run, run_start, run_len);
}

static void listener_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct udp_state *u = w->data;
    client_readable(u, u->fd, NULL);
}

static void connected_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct udp_flow *f = w->data;
    client_readable(f->u, f->cfd, f);
}

/* --udp-connected: a socket on the address and port the client sent to,
 * connected to the client, takes the flow's datagrams away from the listener
 * (the kernel prefers the connected socket).  Datagrams that reach the
 * listener before the connect are dispatched by lookup as before. */
static void flow_connect_client(struct udp_flow *f)
{
    struct udp_state *u = f->u;
    int one = 1;
    struct sockaddr_storage at = f->local;
    socklen_t alen = net_set_port(&at, (uint16_t)net_port((struct sockaddr *)&u->cfg->listen_addr));
    if (at.ss_family == 0)
        return;   /* local address unknown: stay on the listener */
    int fd = socket(u->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    udp_sockbufs(fd);   /* the flow's client datagrams land here, not on the listener */
    if (bind(fd, (struct sockaddr *)&at, alen) == -1 ||
        connect(fd, (struct sockaddr *)&f->client, f->clen) == -1) {
        log_debug("UDP flow stays on the listener: %s", strerror(errno));
        close(fd);
        return;
    }
    f->cfd = fd;
    ev_io_init(&f->crd, connected_readable_cb, fd, EV_READ);
    ev_io_init(&f->cwr, udp_client_writable_cb, fd, EV_WRITE);
    f->crd.data = f->cwr.data = f;
    ev_io_start(u->loop, &f->crd);
}

/* ------------------------------------------------------------ set-up */

int udp_start(struct service *svc)
{
    const struct sockaddr_storage *addr = &svc->cfg.listen_addr;
    int one = 1, zero = 0;
    int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (svc->cfg.transparent && net_set_transparent(fd, addr->ss_family) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    udp_sockbufs(fd);
    if (svc->cfg.transparent && udp_tp_want_origdst(fd, addr->ss_family) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    } else {
        setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    }
    struct udp_state *u = calloc(1, sizeof(*u));
    if (u == NULL || bind(fd, (const struct sockaddr *)addr, svc->cfg.listen_len) == -1) {
        int e = u == NULL ? ENOMEM : errno;
        free(u);
        close(fd);
        errno = e;
        return -1;
    }
    u->svc = svc;
    u->cfg = &svc->cfg;
    u->loop = svc->loop;
    u->fd = fd;
    u->family = addr->ss_family;
    ev_io_init(&u->rd, listener_readable_cb, fd, EV_READ);
    ev_io_init(&u->wr, udp_listener_writable_cb, fd, EV_WRITE);
    u->rd.data = u->wr.data = u;
    ev_io_start(u->loop, &u->rd);
    svc->udp = u;
    return 0;
}

void udp_stop(struct service *svc)
{
    struct udp_state *u = svc->udp;
    struct ev_loop *loop = svc->loop;
    if (u == NULL)
        return;
    for (int h = 0; h < HASH_BUCKETS; h++)
        while (u->hash[h])
            udp_flow_free(u->hash[h]);
    while (u->detached)
        udp_flow_free(u->detached);
    ev_io_stop(loop, &u->rd);
    ev_io_stop(loop, &u->wr);
    close(u->fd);
    free(u);
    svc->udp = NULL;
}
