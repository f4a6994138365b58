#include "proxy/udp.h"

#include "protocol/detect.h"
#include "protocol/iperf2.h"
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/udp_back.h"

#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH        32                  /* datagrams per recvmmsg/sendmmsg */
#define DGRAM_MAX    65536               /* largest datagram (IPv4 65507, IPv6 65527) */
#define HASH_BUCKETS 4096
#define SOCKBUF      (4 * 1024 * 1024)   /* listener and upstream socket buffers */
#define QUEUE_BYTES  (4u * 1024u * 1024u)/* per-flow, per-direction queue bound */

/* A datagram waiting for its socket to become writable. */
struct qdgram {
    struct qdgram *next;
    size_t         len;
    uint8_t        data[];
};

/* Bounded FIFO of datagrams. */
struct dgq {
    struct qdgram *head, *tail;
    size_t         bytes;    /* sum of queued lengths */
    unsigned       count;    /* datagrams queued */
};

enum flow_proto { FLOW_IPERF3 = 0, FLOW_IPERF2 };

struct flow {
    struct flow     *hnext;           /* hash chain */
    struct flow     *wnext;           /* list of flows waiting for the listener to drain */
    bool             waiting;         /* on that list */
    struct sockaddr_storage client;   /* the client's address */
    socklen_t        clen;
    struct sockaddr_storage local;    /* the address the client sent to (reply source) */
    int              ufd;             /* upstream socket, connected to the server */
    int              cfd;             /* --udp-connected: socket on the listen address and
                                         port, connected to the client; else -1 */
    ev_io            crd;             /* cfd readable */
    ev_io            cwr;             /* cfd writable while datagrams wait for it */
    ev_io            urd;             /* upstream readable */
    ev_io            uwr;             /* upstream writable while up-queue is not empty */
    ev_timer         linger;          /* expiry: quiet both ways for cfg.udp_linger */
    ev_tstamp        last[2];         /* last datagram from the client [0], server [1] */
    enum flow_proto  proto;           /* what the first datagram was */
    struct i2_udp_client i2;          /* iperf2: the first datagram's layout and test header */
    struct udp_back *back;            /* iperf2 -d/-r: the connect-back relay, else NULL */
    struct dgq       q[2];            /* [0] toward server, [1] toward client */
    uint8_t         *report;          /* iperf2: first Server Report from the server */
    size_t           report_len;
    bool             fin_seen;        /* iperf2: the client's final datagram arrived */
    bool             detached;        /* a new test took over the client's address: this
                                         flow only lingers, absorbing the server's late
                                         datagrams; it is on U.detached, not in the hash */
    uint64_t         dgrams[2];       /* datagrams delivered client->server, server->client */
    uint64_t         bytes[2];        /* bytes delivered, same order */
    uint64_t         drops;           /* queue overflows */
    uint32_t         fins;            /* final datagrams received from the client */
    uint32_t         fins_answered;   /* of those, answered from the kept report */
    uint32_t         icmp;            /* ICMP errors absorbed on this flow's socket */
    uint32_t         late_reports;    /* iperf2: server datagrams after the report, absorbed */
};

static struct {
    struct ev_loop *loop;
    int             fd;          /* the listening socket */
    int             family;      /* its address family */
    ev_io           rd, wr;      /* readable; writable while flows wait */
    struct flow    *hash[HASH_BUCKETS];
    struct flow    *waiting;     /* flows with datagrams queued toward clients */
    struct flow    *detached;    /* flows replaced by a new test from the same address */
    int             nflows;
    struct udp_counters ctr;
    ev_tstamp       last_full_log; /* rate limit for "table full" */
    ev_tstamp       last_junk_log; /* rate limit for "cannot place a datagram" */
} U = { .fd = -1 };

/* Batch buffers, shared by every read (single-threaded). */
static uint8_t        bufs[BATCH][DGRAM_MAX];
static struct iovec   iovs[BATCH];
static struct mmsghdr msgs[BATCH];
static struct sockaddr_storage names[BATCH];
static union { struct cmsghdr align; uint8_t b[128]; } cbufs[BATCH];
static struct mmsghdr outs[BATCH];   /* sendmmsg batch */

const struct udp_counters *udp_counters(void)
{
    return &U.ctr;
}

int udp_live_flows(void)
{
    return U.nflows;
}

/* ------------------------------------------------------------ addresses */

static bool sa_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static unsigned sa_hash(const struct sockaddr_storage *a)
{
    const uint8_t *p;
    size_t n;
    uint32_t h = 2166136261u;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)a;
        p = (const uint8_t *)&s->sin_addr;
        n = sizeof(s->sin_addr);
        h = (h ^ s->sin_port) * 16777619u;
    } else {
        const struct sockaddr_in6 *s = (const void *)a;
        p = (const uint8_t *)&s->sin6_addr;
        n = sizeof(s->sin6_addr);
        h = (h ^ s->sin6_port) * 16777619u;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % HASH_BUCKETS;
}

/* Local (destination) address of a received datagram from its pktinfo. */
static void local_from_cmsg(struct msghdr *mh, struct sockaddr_storage *local)
{
    memset(local, 0, sizeof(*local));
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)local;
            s6->sin6_family = AF_INET6;
            s6->sin6_addr = pi.ipi6_addr;
            return;
        }
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && U.family == AF_INET) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            struct sockaddr_in *s4 = (struct sockaddr_in *)local;
            s4->sin_family = AF_INET;
            s4->sin_addr = pi.ipi_addr;
            return;
        }
    }
}

/* Fills a control buffer that makes a reply leave from `local`.  Returns its
 * length (0 when the local address is unknown: the kernel chooses). */
static size_t pktinfo_cmsg(const struct sockaddr_storage *local, void *buf, size_t bufsz)
{
    struct msghdr mh = { .msg_control = buf, .msg_controllen = bufsz };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (local->ss_family == AF_INET6) {
        struct in6_pktinfo pi = { .ipi6_addr = ((const struct sockaddr_in6 *)local)->sin6_addr };
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    if (local->ss_family == AF_INET) {
        struct in_pktinfo pi = { .ipi_spec_dst = ((const struct sockaddr_in *)local)->sin_addr };
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    return 0;
}

/* ---------------------------------------------------------------- queues */

static bool dgq_push(struct dgq *q, const uint8_t *data, size_t len)
{
    if (q->bytes + len > QUEUE_BYTES)
        return false;
    struct qdgram *d = malloc(sizeof(*d) + len);
    if (d == NULL)
        return false;
    d->next = NULL;
    d->len = len;
    memcpy(d->data, data, len);
    if (q->tail)
        q->tail->next = d;
    else
        q->head = d;
    q->tail = d;
    q->bytes += len;
    q->count++;
    return true;
}

static void dgq_pop(struct dgq *q)
{
    struct qdgram *d = q->head;
    q->head = d->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->bytes -= d->len;
    q->count--;
    free(d);
}

static void dgq_clear(struct dgq *q)
{
    while (q->head)
        dgq_pop(q);
}

/* ------------------------------------------------------------ flow life */

static const char *client_s(const struct flow *f, char *buf)
{
    return net_addr_str((const struct sockaddr *)&f->client, buf, ADDR_STR_MAX);
}

static void flow_log_end(const struct flow *f)
{
    char c[ADDR_STR_MAX];
    if (f->proto == FLOW_IPERF2) {
        char back[96] = "";
        if (f->back != NULL) {
            uint64_t to_c, to_s;
            udp_back_counts(f->back, &to_c, &to_s);
            snprintf(back, sizeof(back), "; connect-back: %" PRIu64 " datagrams to client, %"
                     PRIu64 " to server", to_c, to_s);
        }
        log_info("iperf2 UDP flow %s ended (%s): %" PRIu64 " datagrams (%" PRIu64 " bytes) to "
                 "server, %" PRIu64 " to client; final datagrams %" PRIu32 " (%" PRIu32
                 " answered by the shim), Server Report %s (%" PRIu32 " later copies absorbed); "
                 "ICMP errors absorbed %" PRIu32 "; queue drops %" PRIu64 "%s",
                 client_s(f, c), i2_mode_name(f->i2.hdr.mode), f->dgrams[0], f->bytes[0],
                 f->dgrams[1], f->fins, f->fins_answered,
                 f->report ? "relayed" : (f->fin_seen ? "never came" : "not due"),
                 f->late_reports, f->icmp, f->drops, back);
    } else {
        log_info("iperf3 UDP stream %s ended: %" PRIu64 " datagrams (%" PRIu64 " bytes) to "
                 "server, %" PRIu64 " (%" PRIu64 " bytes) to client; ICMP errors absorbed %"
                 PRIu32 "; queue drops %" PRIu64, client_s(f, c), f->dgrams[0], f->bytes[0],
                 f->dgrams[1], f->bytes[1], f->icmp, f->drops);
    }
}

static void flow_free(struct flow *f)
{
    unsigned h = sa_hash(&f->client);
    for (struct flow **pp = f->detached ? &U.detached : &U.hash[h]; *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            break;
        }
    }
    if (f->waiting) {
        for (struct flow **pp = &U.waiting; *pp; pp = &(*pp)->wnext) {
            if (*pp == f) {
                *pp = f->wnext;
                break;
            }
        }
    }
    flow_log_end(f);
    ev_io_stop(U.loop, &f->urd);
    ev_io_stop(U.loop, &f->uwr);
    ev_timer_stop(U.loop, &f->linger);
    close(f->ufd);
    if (f->cfd >= 0) {
        ev_io_stop(U.loop, &f->crd);
        ev_io_stop(U.loop, &f->cwr);
        close(f->cfd);
    }
    udp_back_close(f->back);
    dgq_clear(&f->q[0]);
    dgq_clear(&f->q[1]);
    free(f->report);
    free(f);
    U.nflows--;
}

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct flow *f = w->data;
    ev_tstamp last = f->last[0] > f->last[1] ? f->last[0] : f->last[1];
    ev_tstamp left = last + cfg.udp_linger - ev_now(loop);
    if (left > 0 || f->q[0].count > 0 || f->q[1].count > 0) {
        w->repeat = left > 0.05 ? left : 0.05;
        ev_timer_again(loop, w);
        return;
    }
    flow_free(f);
}

/* ---------------------------------------------------------- to the client */

/* Sends one datagram to the client from the address it sent to.  Returns
 * 0 sent, 1 would block, -1 dropped for good. */
static int send_to_client(struct flow *f, const uint8_t *data, size_t len)
{
    union { struct cmsghdr align; uint8_t b[64]; } cb;
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    struct msghdr mh = {
        .msg_name = &f->client, .msg_namelen = f->clen, .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = cb.b,
    };
    mh.msg_controllen = pktinfo_cmsg(&f->local, cb.b, sizeof(cb.b));
    if (mh.msg_controllen == 0)
        mh.msg_control = NULL;
    if (f->cfd >= 0) {   /* connected: no address, no pktinfo */
        mh.msg_name = NULL;
        mh.msg_namelen = 0;
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
    }
    for (int tries = 0; tries < 2; tries++) {
        if (sendmsg(f->cfd >= 0 ? f->cfd : U.fd, &mh, MSG_DONTWAIT) >= 0) {
            f->dgrams[1]++;
            f->bytes[1] += len;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return 1;
        if (errno != ECONNREFUSED && errno != EINTR)
            return -1;
        /* an earlier ICMP error surfaced here: absorbed, try again */
        U.ctr.icmp_absorbed++;
    }
    return -1;
}

static void flow_wait_listener(struct flow *f)
{
    if (f->cfd >= 0) {   /* its own socket: its own watcher */
        if (!ev_is_active(&f->cwr))
            ev_io_start(U.loop, &f->cwr);
        return;
    }
    if (!f->waiting) {
        f->waiting = true;
        f->wnext = U.waiting;
        U.waiting = f;
    }
    if (!ev_is_active(&U.wr))
        ev_io_start(U.loop, &U.wr);
}


/* Sends outs[0..n) on fd, a batch of flow f in direction dir (0: to the
 * server, 1: to the client), whose lengths are msgs[first..first+n).
 * Returns how many datagrams were taken or dropped for good; the rest
 * would block.  An ICMP error that surfaces here is absorbed. */
static void deliver(struct flow *f, int dir, const uint8_t *data, size_t len);

static int send_batch(struct flow *f, int dir, int fd, int first, int n)
{
    int sent = 0, absorbed = 0;
    while (sent < n) {
        int r = sendmmsg(fd, outs + sent, (unsigned)(n - sent), MSG_DONTWAIT);
        if (r > 0) {
            for (int i = sent; i < sent + r; i++)
                f->bytes[dir] += msgs[first + i].msg_len;
            f->dgrams[dir] += (uint64_t)r;
            sent += r;
            continue;
        }
        if (r == -1 && errno == ECONNREFUSED && absorbed++ < 2) {
            /* an earlier ICMP error surfaced here: absorbed, go on */
            f->icmp++;
            U.ctr.icmp_absorbed++;
            log_debug("ICMP error absorbed on a UDP flow's socket");
            continue;
        }
        if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            break;
        sent++;   /* this datagram cannot be sent: drop it, go on */
        f->drops++;
    }
    return sent;
}

/* Sends bufs[0..n) (lengths in msgs[]) to the client in one sendmmsg; what
 * the socket does not take is queued. */
static void send_batch_to_client(struct flow *f, int n)
{
    union { struct cmsghdr align; uint8_t b[64]; } cb;
    size_t clen = f->cfd >= 0 ? 0 : pktinfo_cmsg(&f->local, cb.b, sizeof(cb.b));
    int sent = 0;

    if (f->q[1].count == 0) {
        for (int i = 0; i < n; i++) {
            iovs[i].iov_len = msgs[i].msg_len;
            outs[i].msg_hdr = (struct msghdr){
                .msg_name = f->cfd >= 0 ? NULL : &f->client,
                .msg_namelen = f->cfd >= 0 ? 0 : f->clen,
                .msg_iov = &iovs[i], .msg_iovlen = 1,
                .msg_control = clen ? cb.b : NULL, .msg_controllen = clen,
            };
        }
        sent = send_batch(f, 1, f->cfd >= 0 ? f->cfd : U.fd, 0, n);
    }
    for (int i = sent; i < n; i++)
        deliver(f, 1, bufs[i], msgs[i].msg_len);
}

static void listener_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct flow **pp = &U.waiting;
    while (*pp) {
        struct flow *f = *pp;
        while (f->q[1].head) {
            int r = send_to_client(f, f->q[1].head->data, f->q[1].head->len);
            if (r == 1)
                return;   /* still full: stay armed */
            dgq_pop(&f->q[1]);
        }
        f->waiting = false;
        *pp = f->wnext;
    }
    ev_io_stop(loop, w);
}

static void flow_connect_client(struct flow *f);

static void client_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct flow *f = w->data;
    while (f->q[1].head) {
        if (send_to_client(f, f->q[1].head->data, f->q[1].head->len) == 1)
            return;
        dgq_pop(&f->q[1]);
    }
    ev_io_stop(loop, w);
}

/* ------------------------------------------------------------ to the server */

/* Sends one datagram upstream.  Returns 0 sent, 1 would block, -1 dropped. */
static int send_to_server(struct flow *f, const uint8_t *data, size_t len)
{
    for (int tries = 0; tries < 2; tries++) {
        if (send(f->ufd, data, len, MSG_DONTWAIT) >= 0) {
            f->dgrams[0]++;
            f->bytes[0] += len;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return 1;
        if (errno != ECONNREFUSED && errno != EINTR)
            return -1;
        /* the server's port was unreachable earlier (ICMP): absorbed */
        f->icmp++;
        U.ctr.icmp_absorbed++;
        log_debug("ICMP error absorbed on the upstream socket of a UDP flow");
    }
    return -1;
}

/* Sends one datagram of flow f in direction dir (0: to the server, 1: to
 * the client), or queues it behind those already waiting; a full queue drops
 * it (counted). */
static void deliver(struct flow *f, int dir, const uint8_t *data, size_t len)
{
    if (f->q[dir].count == 0) {
        int r = dir == 0 ? send_to_server(f, data, len) : send_to_client(f, data, len);
        if (r <= 0)
            return;
    }
    if (!dgq_push(&f->q[dir], data, len)) {
        f->drops++;
        U.ctr.queue_drops++;
        return;
    }
    if (dir == 1)
        flow_wait_listener(f);
    else if (!ev_is_active(&f->uwr))
        ev_io_start(U.loop, &f->uwr);
}

static void upstream_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct flow *f = w->data;
    while (f->q[0].head) {
        if (send_to_server(f, f->q[0].head->data, f->q[0].head->len) == 1)
            return;
        dgq_pop(&f->q[0]);
    }
    ev_io_stop(loop, w);
}

/* iperf2 -d/-r: the server must connect back to the shim, not to the port the
 * client asked for.  Datagrams that carry the test header (2.1.8: all of
 * them) get the connect-back socket's port. */
static void rewrite_back_port(struct flow *f, uint8_t *d, size_t len)
{
    size_t off = f->i2.layout;   /* the test header follows the datagram header */
    if (len < off + 12)
        return;
    uint8_t *h = d + off;
    uint32_t port = ((uint32_t)h[8] << 24) | ((uint32_t)h[9] << 16) | ((uint32_t)h[10] << 8) | h[11];
    uint32_t flags = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
    if (port == f->i2.hdr.port && flags == f->i2.hdr.flags)
        i2_hdr_set_port(h, len - off, udp_back_port(f->back));
}

/* A datagram from the client.  Returns true if it goes to the server (the
 * caller sends it, batched), false if it was answered here. */
static bool from_client(struct flow *f, uint8_t *data, size_t len)
{
    f->last[0] = ev_now(U.loop);
    if (f->back != NULL)
        rewrite_back_port(f, data, len);
    struct i2_udp_dgram dg;
    if (f->proto == FLOW_IPERF2 &&
        i2_udp_dgram_parse(data, len, f->i2.layout, &dg) == I2_OK && dg.fin) {
        f->fins++;
        f->fin_seen = true;
        if (f->report != NULL) {
            /* answered from the report already relayed: nothing goes upstream */
            f->fins_answered++;
            U.ctr.fins_answered++;
            deliver(f, 1, f->report, f->report_len);
            return false;
        }
    }
    return true;
}

/* Sends bufs[start..start+n) to the server in one sendmmsg; what the socket
 * does not take is queued. */
static void send_batch_to_server(struct flow *f, int start, int n)
{
    int sent = 0;
    if (f == NULL || n == 0)
        return;
    if (f->q[0].count == 0) {
        for (int i = 0; i < n; i++) {
            iovs[start + i].iov_len = msgs[start + i].msg_len;
            outs[i].msg_hdr = (struct msghdr){ .msg_iov = &iovs[start + i], .msg_iovlen = 1 };
        }
        sent = send_batch(f, 0, f->ufd, start, n);
    }
    for (int i = sent; i < n; i++)
        deliver(f, 0, bufs[start + i], msgs[start + i].msg_len);
}

/* Datagrams from the server. */
static void upstream_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct flow *f = w->data;
    for (int i = 0; i < BATCH; i++) {
        iovs[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = DGRAM_MAX };
        msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iovs[i], .msg_iovlen = 1 };
    }
    int n = recvmmsg(f->ufd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n == -1) {
        if (errno == ECONNREFUSED) {
            /* ICMP port-unreachable from the server side: absorbed */
            f->icmp++;
            U.ctr.icmp_absorbed++;
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
    if (f->proto == FLOW_IPERF2 && f->report != NULL && f->i2.hdr.mode == I2_MODE_NORMAL) {
        /* The client has its report (repeats of its final datagram are answered
         * from it): the server's further copies would only travel toward a
         * port that is closing.  A normal test sends nothing else. */
        f->late_reports += (uint32_t)n;
        return;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *d = bufs[i];
        size_t len = msgs[i].msg_len;
        struct i2_udp_report rep;
        if (f->proto == FLOW_IPERF2 && f->fin_seen && f->report == NULL &&
            i2_udp_report_parse(d, len, &rep) == I2_OK && (f->report = malloc(len)) != NULL) {
            memcpy(f->report, d, len);
            f->report_len = len;
            /* relay this one, and nothing of the server's after it in this batch */
            if (f->i2.hdr.mode == I2_MODE_NORMAL) {
                f->late_reports += (uint32_t)(n - i - 1);
                n = i + 1;
            }
        }
    }
    send_batch_to_client(f, n);
}

/* ------------------------------------------------------------ new flows */

static struct flow *flow_lookup(const struct sockaddr_storage *client)
{
    for (struct flow *f = U.hash[sa_hash(client)]; f; f = f->hnext)
        if (sa_equal(&f->client, client))
            return f;
    return NULL;
}

/* iperf2 -u -d/-r: opens the connect-back relay on the address the server
 * sees.  Without it the test still runs one way, and the log says why. */
static void flow_open_back(struct flow *f)
{
    char c[ADDR_STR_MAX];
    struct sockaddr_storage up_local, client = f->client;
    socklen_t len = sizeof(up_local);
    net_set_port(&client, f->i2.hdr.port);
    if (getsockname(f->ufd, (struct sockaddr *)&up_local, &len) == -1 ||
        (f->back = udp_back_open(U.loop, &up_local, &f->local, &client, &f->last[1])) == NULL) {
        log_warn("iperf2 UDP %s test from %s: cannot open a connect-back port: %s",
                 i2_mode_name(f->i2.hdr.mode), client_s(f, c), strerror(errno));
        return;
    }
    log_debug("iperf2 UDP %s test from %s: server told to connect back to shim port %u "
              "(client asked for %u)", i2_mode_name(f->i2.hdr.mode), client_s(f, c),
              udp_back_port(f->back), f->i2.hdr.port);
}

/* A datagram that belongs to no flow and starts none: counted, and logged
 * at most every 5 s with its sender and first bytes (never dropped without a
 * word: a client the shim cannot recognise would otherwise just see loss). */
static void junk_drop(const struct sockaddr_storage *from, const uint8_t *d, size_t len,
                      const char *why)
{
    U.ctr.junk++;
    if (ev_now(U.loop) - U.last_junk_log < 5)
        return;
    U.last_junk_log = ev_now(U.loop);
    char who[ADDR_STR_MAX], hex[2 * 24 + 1];
    size_t n = len < 24 ? len : 24;
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    hex[2 * n] = '\0';
    log_warn("UDP datagram from %s dropped: %s (%zu bytes, first %s); %" PRIu64
             " such datagrams so far", net_addr_str((const struct sockaddr *)from, who,
                                                   sizeof(who)), why, len, hex, U.ctr.junk);
}

static struct flow *flow_new(const struct sockaddr_storage *client, socklen_t clen,
                             const struct sockaddr_storage *local, enum flow_proto proto,
                             const uint8_t *first, size_t first_len)
{
    char c[ADDR_STR_MAX];
    if (U.nflows >= cfg.max_flows) {
        U.ctr.refused_flows++;
        if (ev_now(U.loop) - U.last_full_log > 5) {
            U.last_full_log = ev_now(U.loop);
            log_warn("UDP flow table full (%d flows): dropping datagrams of new client %s "
                     "(%" PRIu64 " so far)", cfg.max_flows,
                     net_addr_str((const struct sockaddr *)client, c, sizeof(c)),
                     U.ctr.refused_flows);
        }
        return NULL;
    }
    const struct sockaddr_storage *up = proto == FLOW_IPERF2 ? &cfg.upstream2_addr
                                                             : &cfg.upstream_addr;
    socklen_t uplen = proto == FLOW_IPERF2 ? cfg.upstream2_len : cfg.upstream_len;
    int fd = socket(up->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        log_warn("no socket for a UDP flow: %s", strerror(errno));
        return NULL;
    }
    int sz = SOCKBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (connect(fd, (const struct sockaddr *)up, uplen) == -1) {
        log_warn("cannot open a UDP flow to the server: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    struct flow *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        close(fd);
        return NULL;
    }
    f->client = *client;
    f->clen = clen;
    f->local = *local;
    f->ufd = fd;
    f->cfd = -1;
    f->proto = proto;
    if (proto == FLOW_IPERF2) {
        i2_udp_client_parse(first, first_len, &f->i2);   /* detect_udp() accepted it */
        if (f->i2.hdr.connect_back)
            flow_open_back(f);
    }
    f->last[0] = f->last[1] = ev_now(U.loop);
    ev_io_init(&f->urd, upstream_readable_cb, fd, EV_READ);
    ev_io_init(&f->uwr, upstream_writable_cb, fd, EV_WRITE);
    f->urd.data = f->uwr.data = f;
    ev_init(&f->linger, linger_cb);
    f->linger.repeat = cfg.udp_linger;
    f->linger.data = f;
    ev_io_start(U.loop, &f->urd);
    ev_timer_again(U.loop, &f->linger);
    unsigned h = sa_hash(client);
    f->hnext = U.hash[h];
    U.hash[h] = f;
    U.nflows++;
    U.ctr.flows++;
    if (cfg.udp_connected)
        flow_connect_client(f);
    log_debug("new %s UDP flow from %s", proto == FLOW_IPERF2 ? "iperf2" : "iperf3",
              net_addr_str((const struct sockaddr *)client, c, sizeof(c)));
    return f;
}

/* Does this datagram start a new test on the address of an existing flow?
 * Clients reuse source ports, sometimes while the old flow still lingers.
 * iperf3: a second stream request (the client never repeats one); iperf2: a
 * datagram that is not a final one after the final ones began. */
static bool flow_restarts(const struct flow *f, const uint8_t *d, size_t len)
{
    if (f->proto == FLOW_IPERF3)
        return f->dgrams[0] > 0 && detect_udp(d, len) == DETECT_IPERF3;
    struct i2_udp_dgram dg;
    return f->fin_seen && i2_udp_dgram_parse(d, len, f->i2.layout, &dg) == I2_OK && !dg.fin;
}

/* Takes a flow out of the lookup: it lingers on, absorbing what the server
 * still sends for the old test, while a new flow serves the new one. */
static void flow_detach(struct flow *f)
{
    char c[ADDR_STR_MAX];
    unsigned h = sa_hash(&f->client);
    for (struct flow **pp = &U.hash[h]; *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            break;
        }
    }
    f->detached = true;
    f->hnext = U.detached;
    U.detached = f;
    dgq_clear(&f->q[1]);   /* nothing more goes to the old test's client */
    log_debug("UDP client %s started a new test while its last flow lingered: "
              "a new flow serves it", client_s(f, c));
}

/* Client datagrams are readable on fd: the listener, or a flow's connected
 * socket (--udp-connected).  Each goes to its flow by lookup, either way. */
static void client_readable(int fd)
{
    for (int i = 0; i < BATCH; i++) {
        iovs[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = DGRAM_MAX };
        msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &names[i], .msg_namelen = sizeof(names[i]),
            .msg_iov = &iovs[i], .msg_iovlen = 1,
            .msg_control = cbufs[i].b, .msg_controllen = sizeof(cbufs[i].b),
        };
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n == -1) {
        if (errno == ECONNREFUSED)   /* from the client side: absorbed */
            U.ctr.icmp_absorbed++;
        return;
    }
    struct flow *run = NULL;   /* flow of the pending run of datagrams bound upstream */
    int run_start = 0, run_len = 0;
    for (int i = 0; i < n; i++) {
        struct msghdr *mh = &msgs[i].msg_hdr;
        uint8_t *d = bufs[i];
        size_t len = msgs[i].msg_len;
        if (mh->msg_flags & MSG_TRUNC) {
            junk_drop(&names[i], d, len, "longer than the shim's datagram buffer");
            continue;
        }
        struct flow *f = flow_lookup(&names[i]);
        if (f != NULL && flow_restarts(f, d, len)) {
            if (run == f) {   /* what is batched for the old flow goes out first */
                send_batch_to_server(run, run_start, run_len);
                run = NULL;
                run_len = 0;
            }
            flow_detach(f);
            f = NULL;
        }
        if (f == NULL) {
            struct sockaddr_storage local;
            enum flow_proto proto;
            switch (detect_udp(d, len)) {
            case DETECT_IPERF3: proto = FLOW_IPERF3; break;
            case DETECT_IPERF2: proto = FLOW_IPERF2; break;
            default:
                junk_drop(&names[i], d, len, "no flow from that address, and neither an iperf3 "
                          "stream request nor an iperf2 client test header");
                continue;
            }
            if ((proto == FLOW_IPERF3 && cfg.protocol == PROTO_IPERF2) ||
                (proto == FLOW_IPERF2 && cfg.protocol == PROTO_IPERF3)) {
                U.ctr.wrong_protocol++;   /* --protocol excludes it: no state */
                log_debug("UDP datagram of an %s client dropped: --protocol %s",
                          proto == FLOW_IPERF3 ? "iperf3" : "iperf2",
                          cfg.protocol == PROTO_IPERF2 ? "iperf2" : "iperf3");
                continue;
            }
            local_from_cmsg(mh, &local);
            f = flow_new(&names[i], mh->msg_namelen, &local, proto, d, len);
            if (f == NULL)
                continue;
        }
        if (!from_client(f, d, len))
            continue;   /* handled here (answered from a kept report) */
        if (run != f || run_start + run_len != i) {
            send_batch_to_server(run, run_start, run_len);
            run = f;
            run_start = i;
            run_len = 0;
        }
        run_len++;
    }
    send_batch_to_server(run, run_start, run_len);
}

static void listener_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)w; (void)revents;
    client_readable(U.fd);
}

static void connected_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    client_readable(((struct flow *)w->data)->cfd);
}

/* --udp-connected: a socket on the address and port the client sent to,
 * connected to the client, takes the flow's datagrams away from the listener
 * (the kernel prefers the connected socket).  Datagrams that reach the
 * listener before the connect are dispatched by lookup as before. */
static void flow_connect_client(struct flow *f)
{
    int one = 1;
    struct sockaddr_storage at = f->local;
    socklen_t alen = net_set_port(&at, (uint16_t)net_port((struct sockaddr *)&cfg.listen_addr));
    if (at.ss_family == 0)
        return;   /* local address unknown: stay on the listener */
    int fd = socket(U.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&at, alen) == -1 ||
        connect(fd, (struct sockaddr *)&f->client, f->clen) == -1) {
        log_debug("UDP flow stays on the listener: %s", strerror(errno));
        close(fd);
        return;
    }
    f->cfd = fd;
    ev_io_init(&f->crd, connected_readable_cb, fd, EV_READ);
    ev_io_init(&f->cwr, client_writable_cb, fd, EV_WRITE);
    f->crd.data = f->cwr.data = f;
    ev_io_start(U.loop, &f->crd);
}

/* ------------------------------------------------------------ set-up */

int udp_start(struct ev_loop *loop, const struct sockaddr_storage *addr, socklen_t len)
{
    int one = 1, zero = 0, sz = SOCKBUF;
    int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    } else {
        setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *)addr, len) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    U.loop = loop;
    U.fd = fd;
    U.family = addr->ss_family;
    ev_io_init(&U.rd, listener_readable_cb, fd, EV_READ);
    ev_io_init(&U.wr, listener_writable_cb, fd, EV_WRITE);
    ev_io_start(loop, &U.rd);
    return 0;
}

void udp_stop(struct ev_loop *loop)
{
    if (U.fd < 0)
        return;
    for (int h = 0; h < HASH_BUCKETS; h++)
        while (U.hash[h])
            flow_free(U.hash[h]);
    while (U.detached)
        flow_free(U.detached);
    ev_io_stop(loop, &U.rd);
    ev_io_stop(loop, &U.wr);
    close(U.fd);
    U.fd = -1;
}
