/* Moving datagrams of UDP flows: batched sends toward the server and the
 * client (replies leave from the address the client sent to), a bounded
 * queue per flow and direction for what a socket would not take, and ICMP
 * errors that surface on the shim's sockets, counted and absorbed. */
#include "proxy/udp_flow.h"

#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct udp_batch udp_batch;
#define B (&udp_batch)

void udp_sockbufs(int fd)
{
    int sz = SOCKBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

void udp_local_from_cmsg(const struct udp_state *u, struct msghdr *mh,
                            struct sockaddr_storage *local)
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
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && u->family == AF_INET) {
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

void udp_dgq_clear(struct dgq *q)
{
    while (q->head)
        dgq_pop(q);
}

/* Sends one datagram to the client from the address it sent to.  Returns
 * 0 sent, 1 would block, -1 dropped for good. */
static int send_to_client(struct udp_flow *f, const uint8_t *data, size_t len)
{
    struct udp_state *u = f->u;
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
        if (sendmsg(f->cfd >= 0 ? f->cfd : u->fd, &mh, MSG_DONTWAIT) >= 0) {
            f->dgrams[1]++;
            f->bytes[1] += len;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return 1;
        if (errno != ECONNREFUSED && errno != EINTR)
            return -1;
        /* an earlier ICMP error surfaced here: absorbed, try again */
        u->ctr.icmp_absorbed++;
    }
    return -1;
}

static void flow_wait_listener(struct udp_flow *f)
{
    struct udp_state *u = f->u;
    if (f->cfd >= 0) {   /* its own socket: its own watcher */
        if (!ev_is_active(&f->cwr))
            ev_io_start(u->loop, &f->cwr);
        return;
    }
    if (!f->waiting) {
        f->waiting = true;
        f->wnext = u->waiting;
        u->waiting = f;
    }
    if (!ev_is_active(&u->wr))
        ev_io_start(u->loop, &u->wr);
}

/* Length of the run of datagrams msgs[i..i+k) that one UDP_SEGMENT send can
 * carry: all as long as the first, the last possibly shorter, at most
 * GSO_SEGS of them and GSO_BYTES in all.  0 when fewer than 2 qualify. */
static int gso_run(int i, int n)
{
    size_t seg = B->msgs[i].msg_len, total = 0;
    int k = 0;
    if (seg == 0)
        return 0;
    while (i + k < n && k < GSO_SEGS && total + B->msgs[i + k].msg_len <= GSO_BYTES) {
        size_t len = B->msgs[i + k].msg_len;
        if (len > seg)
            break;
        total += len;
        k++;
        if (len < seg)
            break;   /* a shorter one ends the run */
    }
    return k >= 2 ? k : 0;
}

/* Sends outs[at..at+k), a run gso_run() accepted, as one UDP_SEGMENT send:
 * the kernel cuts it into the same k datagrams, byte for byte, and the stack
 * below the socket runs once per run instead of once per datagram.  Their
 * iovecs are consecutive (outs[i] points at the i-th of them).  Returns
 * sendmsg's result. */
static ssize_t send_gso(int fd, int at, int k)
{
    const struct msghdr *h = &B->outs[at].msg_hdr;
    union { struct cmsghdr align; uint8_t b[128]; } cb;
    size_t clen = h->msg_controllen;
    if (clen > 0)
        memcpy(cb.b, h->msg_control, clen);
    struct msghdr mh = {
        .msg_name = h->msg_name, .msg_namelen = h->msg_namelen,
        .msg_iov = h->msg_iov, .msg_iovlen = (size_t)k,
        .msg_control = cb.b, .msg_controllen = clen + CMSG_SPACE(sizeof(uint16_t)),
    };
    struct cmsghdr *c = (struct cmsghdr *)(cb.b + clen);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)h->msg_iov[0].iov_len;
    memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    return sendmsg(fd, &mh, MSG_DONTWAIT);
}

/* Sends outs[0..n) on fd, a batch of flow f in direction dir (0: to the
 * server, 1: to the client), whose lengths are msgs[first..first+n).
 * Runs of equal-sized datagrams leave as UDP_SEGMENT sends (unless the flow's
 * socket refused one: then as before), the rest in sendmmsg batches.
 * Returns how many datagrams were taken or dropped for good; the rest
 * would block.  An ICMP error that surfaces here is absorbed. */
static int send_batch(struct udp_flow *f, int dir, int fd, int first, int n)
{
    struct udp_state *u = f->u;
    int sent = 0, absorbed = 0;
    while (sent < n) {
        int k = 0, span = n - sent, r;
        if (u->cfg->udp_gso && !f->gso_off[dir]) {
            /* a run here, or the datagrams up to the next run go in one sendmmsg */
            for (span = 0; sent + span < n; span++)
                if ((k = gso_run(first + sent + span, first + n)) > 0)
                    break;
        }
        if (span == 0) {
            ssize_t w = send_gso(fd, sent, k);
            if (w >= 0) {
                for (int i = sent; i < sent + k; i++)
                    f->bytes[dir] += B->msgs[first + i].msg_len;
                f->dgrams[dir] += (uint64_t)k;
                sent += k;
                continue;
            }
            if (errno == EINVAL || errno == EIO || errno == EMSGSIZE || errno == EOPNOTSUPP ||
                errno == ENOPROTOOPT) {
                /* this path cannot segment (no checksum offload, datagrams
                 * larger than the MTU, ...): one datagram per send from now on */
                f->gso_off[dir] = true;
                log_debug("UDP flow: segmentation offload refused (%s): datagrams are sent "
                          "one by one", strerror(errno));
                continue;
            }
            r = -1;
        } else {
            r = sendmmsg(fd, B->outs + sent, (unsigned)span, MSG_DONTWAIT);
        }
        if (r > 0) {
            for (int i = sent; i < sent + r; i++)
                f->bytes[dir] += B->msgs[first + i].msg_len;
            f->dgrams[dir] += (uint64_t)r;
            sent += r;
            continue;
        }
        if (r == -1 && errno == ECONNREFUSED && absorbed++ < 2) {
            /* an earlier ICMP error surfaced here: absorbed, go on */
            f->icmp++;
            u->ctr.icmp_absorbed++;
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

/* Sends B->bufs[0..n) (lengths in B->msgs[]) to the client in one sendmmsg; what
 * the socket does not take is queued. */
void udp_send_batch_to_client(struct udp_flow *f, int n)
{
    struct udp_state *u = f->u;
    union { struct cmsghdr align; uint8_t b[64]; } cb;
    size_t clen = f->cfd >= 0 ? 0 : pktinfo_cmsg(&f->local, cb.b, sizeof(cb.b));
    int sent = 0;

    if (f->q[1].count == 0) {
        for (int i = 0; i < n; i++) {
            B->iovs[i].iov_len = B->msgs[i].msg_len;
            B->outs[i].msg_hdr = (struct msghdr){
                .msg_name = f->cfd >= 0 ? NULL : &f->client,
                .msg_namelen = f->cfd >= 0 ? 0 : f->clen,
                .msg_iov = &B->iovs[i], .msg_iovlen = 1,
                .msg_control = clen ? cb.b : NULL, .msg_controllen = clen,
            };
        }
        sent = send_batch(f, 1, f->cfd >= 0 ? f->cfd : u->fd, 0, n);
    }
    for (int i = sent; i < n; i++)
        udp_deliver(f, 1, B->bufs[i], B->msgs[i].msg_len);
}

void udp_listener_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct udp_state *u = w->data;
    struct udp_flow **pp = &u->waiting;
    while (*pp) {
        struct udp_flow *f = *pp;
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

void udp_client_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct udp_flow *f = w->data;
    while (f->q[1].head) {
        if (send_to_client(f, f->q[1].head->data, f->q[1].head->len) == 1)
            return;
        dgq_pop(&f->q[1]);
    }
    ev_io_stop(loop, w);
}

/* Sends one datagram upstream.  Returns 0 sent, 1 would block, -1 dropped. */
static int send_to_server(struct udp_flow *f, const uint8_t *data, size_t len)
{
    struct udp_state *u = f->u;
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
        u->ctr.icmp_absorbed++;
        log_debug("ICMP error absorbed on the upstream socket of a UDP flow");
    }
    return -1;
}

void udp_deliver(struct udp_flow *f, int dir, const uint8_t *data, size_t len)
{
    struct udp_state *u = f->u;
    if (f->q[dir].count == 0) {
        int r = dir == 0 ? send_to_server(f, data, len) : send_to_client(f, data, len);
        if (r <= 0)
            return;
    }
    if (!dgq_push(&f->q[dir], data, len)) {
        f->drops++;
        u->ctr.queue_drops++;
        return;
    }
    if (dir == 1)
        flow_wait_listener(f);
    else if (!ev_is_active(&f->uwr))
        ev_io_start(u->loop, &f->uwr);
}

void udp_upstream_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct udp_flow *f = w->data;
    while (f->q[0].head) {
        if (send_to_server(f, f->q[0].head->data, f->q[0].head->len) == 1)
            return;
        dgq_pop(&f->q[0]);
    }
    ev_io_stop(loop, w);
}

/* Sends B->bufs[start..start+n) to the server in one sendmmsg; what the socket
 * does not take is queued. */
void udp_send_batch_to_server(struct udp_flow *f, int start, int n)
{
    int sent = 0;
    if (f == NULL || n == 0)
        return;
    if (f->q[0].count == 0) {
        for (int i = 0; i < n; i++) {
            B->iovs[start + i].iov_len = B->msgs[start + i].msg_len;
            B->outs[i].msg_hdr = (struct msghdr){ .msg_iov = &B->iovs[start + i], .msg_iovlen = 1 };
        }
        sent = send_batch(f, 0, f->ufd, start, n);
    }
    for (int i = sent; i < n; i++)
        udp_deliver(f, 0, B->bufs[start + i], B->msgs[start + i].msg_len);
}
