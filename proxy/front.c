#include "proxy/front.h"

#include "protocol/detect.h"
#include "protocol/iperf3_ctrl.h"
#include "proxy/iperf2.h"
#include "proxy/iperf3.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/transparent.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct front {
    struct front *next, *prev;          /* pending fronts, in accept order */
    struct service *svc;                /* the service that accepted it */
    int       fd;                       /* the client connection */
    ev_io     io;                       /* readable */
    ev_timer  timer;                    /* handshake timeout */
    uint8_t   buf[DETECT_MAX_BYTES];    /* first bytes received */
    size_t    got;                      /* bytes in buf */
    struct sockaddr_storage peer;       /* client address */
    socklen_t peerlen;
    struct sockaddr_storage dst;        /* --transparent: the server the client addressed */
    struct front_arrival arr;           /* accept order and times, handed on with it */
};

static void front_free(struct front *f, bool close_fd)
{
    struct front_queue *q = &f->svc->fronts;
    if (f->prev)
        f->prev->next = f->next;
    else
        q->head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        q->tail = f->prev;
    ev_io_stop(f->svc->loop, &f->io);
    ev_timer_stop(f->svc->loop, &f->timer);
    if (close_fd)
        close(f->fd);
    q->pending--;
    free(f);
}

static void hexdump(const uint8_t *b, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 2 < outsz; i++)
        o += (size_t)snprintf(out + o, outsz - o, "%02x", b[i]);
    out[o] = '\0';
}

/* Closes a client that is not speaking a protocol this shim serves. */
static void front_reject(struct front *f, const char *what)
{
    char who[ADDR_STR_MAX], hex[2 * 16 + 1];
    hexdump(f->buf, f->got < 16 ? f->got : 16, hex, sizeof(hex));
    log_warn("closing client %s: %s (first bytes %s)",
             net_addr_str((struct sockaddr *)&f->peer, who, sizeof(who)), what, hex);
    front_free(f, true);
}

static bool all_printable(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] > 0x7e)
            return false;
    return true;
}

/* Reads up to want bytes into f->buf; the kernel's receive time of the first
 * bytes (SO_TIMESTAMPNS, set on the listener) is kept in f->arr.  Returns
 * what read(2) would. */
static ssize_t read_first(struct front *f, size_t want)
{
    struct iovec iov = { .iov_base = f->buf + f->got, .iov_len = want };
    union { struct cmsghdr h; uint8_t b[CMSG_SPACE(sizeof(struct timespec))]; } cb;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cb,
                        .msg_controllen = sizeof(cb) };
    ssize_t n = recvmsg(f->fd, &m, 0);
    if (n <= 0 || f->got > 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            f->arr.first_rx_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        }
    return n;
}

/* Reads what f's client sent; hands the connection on once recognised. */
static void front_try(struct front *f)
{
    const struct service_config *cfg = &f->svc->cfg;
    char who[ADDR_STR_MAX];
    /* while it may be an iperf3 cookie, read no further than the cookie: what
     * follows belongs to the session */
    size_t want = (f->got < I3_COOKIE_SIZE && all_printable(f->buf, f->got))
                      ? I3_COOKIE_SIZE - f->got : sizeof(f->buf) - f->got;
    ssize_t n = read_first(f, want);

    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        log_debug("client %s went away before identifying itself (%s)",
                  net_addr_str((struct sockaddr *)&f->peer, who, sizeof(who)),
                  n == 0 ? "closed" : strerror(errno));
        front_free(f, true);
        return;
    }
    f->got += (size_t)n;
    enum detect_verdict v = detect_tcp(f->buf, f->got);
    if (v == DETECT_NEED_MORE)
        return;
    if ((v == DETECT_IPERF3 && cfg->protocol == PROTO_IPERF2) ||
        (v == DETECT_IPERF2 && cfg->protocol == PROTO_IPERF3)) {
        front_reject(f, v == DETECT_IPERF3 ? "iperf3 client, but --protocol iperf2"
                                                 : "iperf2 client, but --protocol iperf3");
        return;
    }
    if (v == DETECT_UNKNOWN) {
        front_reject(f, cfg->protocol == PROTO_IPERF3 ? "not an iperf3 cookie"
                              : cfg->protocol == PROTO_IPERF2 ? "not an iperf2 test header"
                              : "neither an iperf3 cookie nor an iperf2 test header");
        return;
    }
    int fd = f->fd;
    struct front_arrival arr = f->arr;
    struct sockaddr_storage peer = f->peer, dst = f->dst;
    bool transparent = f->svc->cfg.transparent;
    uint8_t first[DETECT_MAX_BYTES];
    size_t got = f->got;
    memcpy(first, f->buf, got);
    struct service *svc = f->svc;
    front_free(f, false);
    if (v == DETECT_IPERF3)
        i3_accept(svc, fd, &peer, transparent ? &dst : NULL, first, &arr);   /* the cookie */
    else
        i2_accept(svc, fd, &peer, transparent ? &dst : NULL, first, got);
}

#define ORDER_WINDOW 256   /* older pending connections looked at per event */

/* A pending connection is readable.  Older pending connections of the same
 * client host are tried first, so connections whose first bytes are there
 * together are handed on in accept order (libev would run them last in,
 * first out): the upstream connections, and with them the server's stream
 * numbers, then follow the client's connection order.  The look back is
 * bounded, so a flood of silent connections costs no more than that. */
static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct front *f = w->data, *start = f, *g, *next;
    int steps = 0;
    for (g = f->prev; g != NULL && steps < ORDER_WINDOW; g = g->prev, steps++)
        if (net_same_host(&g->peer, &f->peer))
            start = g;
    for (g = start; g != NULL; g = next) {
        next = g->next;
        bool last = g == f;
        if (last || net_same_host(&g->peer, &f->peer))
            front_try(g);   /* may free g */
        if (last)
            break;
    }
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct front *f = w->data;
    char who[ADDR_STR_MAX];
    struct front_queue *q = &f->svc->fronts;
    if (log_rate_ok(&q->silent_log, ev_now(f->svc->loop), 1.0)) {   /* a flood: counted */
        log_warn("closing client %s: no iperf cookie or header within %.1f s (%zu bytes "
                 "received; %" PRIu64 " more such clients not logged)",
                 net_addr_str((struct sockaddr *)&f->peer, who, sizeof(who)),
                 f->svc->cfg.handshake_timeout, f->got, q->silent_log.suppressed);
        q->silent_log.suppressed = 0;
    }
    front_free(f, true);
}

void front_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
                  socklen_t peerlen)
{
    struct front_queue *q = &svc->fronts;
    if (!service_admits(svc, peer, "TCP client")) {
        close(fd);
        return;
    }
    struct sockaddr_storage dst = { 0 };
    if (svc->cfg.transparent) {
        socklen_t dlen = sizeof(dst);
        char who[ADDR_STR_MAX];
        if (transparent_orig_dst(fd, &dst, &dlen) == -1) {
            log_warn("closing client %s: its destination is unknown: %s",
                     net_addr_str((const struct sockaddr *)peer, who, sizeof(who)),
                     strerror(errno));
            net_close_reset(fd);
            return;
        }
        if (!transparent_admits(svc, peer, &dst, "TCP client")) {
            net_close_reset(fd);   /* at once, as a server that is not there */
            return;
        }
    }
    struct front *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        log_error("out of memory: refusing a client");
        close(fd);
        return;
    }
    f->dst = dst;
    f->svc = svc;
    f->fd = fd;
    f->peer = *peer;
    f->peerlen = peerlen;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);   /* the clock of SO_TIMESTAMPNS */
    f->arr = (struct front_arrival){ .seq = ++q->accepted,
                                     .accepted_us = (int64_t)now.tv_sec * 1000000 +
                                                    now.tv_nsec / 1000 };
    ev_io_init(&f->io, read_cb, fd, EV_READ);
    f->io.data = f;
    ev_timer_init(&f->timer, timeout_cb, svc->cfg.handshake_timeout, 0);
    f->timer.data = f;
    ev_io_start(svc->loop, &f->io);
    ev_timer_start(svc->loop, &f->timer);
    q->pending++;
    f->prev = q->tail;
    if (q->tail)
        q->tail->next = f;
    else
        q->head = f;
    q->tail = f;
    /* the first bytes are usually there already: read them now, in accept order */
    read_cb(svc->loop, &f->io, EV_READ);
}

void front_close_all(struct service *svc)
{
    while (svc->fronts.head != NULL)
        front_free(svc->fronts.head, true);
}
