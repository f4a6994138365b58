#include "proxy/udp_back.h"

#include "proxy/log.h"
#include "proxy/net.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACK_LEGS    16       /* server sources (connect-back streams) per flow */
#define BACK_DGRAM   65536    /* largest datagram */
#define BACK_READS   64       /* datagrams read per readiness event */
#define WARN_EVERY   1.0      /* s: at most one stranger warning this often per flow */

struct udp_back;

/* One connect-back stream: a server source and its client-facing socket. */
struct back_leg {
    struct udp_back        *b;       /* owner */
    struct sockaddr_storage server;  /* the server's source address */
    socklen_t               slen;
    int                     cfd;     /* connected to the client's asked-for port */
    ev_io                   io;      /* the client's answers */
};

struct udp_back {
    struct ev_loop         *loop;
    int                     rfd;          /* server-facing socket, unconnected */
    ev_io                   rio;          /* its readability */
    uint16_t                port;         /* its port */
    struct sockaddr_storage client;       /* client address, asked-for port */
    socklen_t               clen;
    struct sockaddr_storage client_side;  /* address the client reached the shim on */
    bool                    transparent;  /* client_side is the server's: IP_TRANSPARENT */
    uint32_t                mark;         /* SO_MARK of its sockets (0: none) */
    struct sockaddr_storage server;       /* the upstream server: only its datagrams count */
    struct back_leg         legs[BACK_LEGS];
    int                     nlegs;
    ev_tstamp              *activity;     /* owner's last-activity clock */
    uint64_t                to_client;    /* datagrams relayed to the client */
    uint64_t                to_server;    /* datagrams relayed to the server */
    uint64_t                strangers;    /* datagrams dropped: not from the server */
    ev_tstamp               last_warn;    /* when a stranger was last logged */
};

static uint8_t buf[BACK_DGRAM];

uint16_t udp_back_port(const struct udp_back *b)
{
    return b->port;
}

void udp_back_counts(const struct udp_back *b, uint64_t *to_client, uint64_t *to_server)
{
    *to_client = b->to_client;
    *to_server = b->to_server;
}

/* The client answered on a leg: back to that leg's server source. */
static void client_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct back_leg *l = w->data;
    struct udp_back *b = l->b;
    for (int i = 0; i < BACK_READS; i++) {
        ssize_t n = recv(l->cfd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ECONNREFUSED)   /* ICMP from the client side: absorbed */
                continue;
            return;
        }
        *b->activity = ev_now(loop);
        if (sendto(b->rfd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&l->server,
                   l->slen) >= 0)
            b->to_server++;
    }
}

static struct back_leg *leg_for(struct udp_back *b, const struct sockaddr_storage *src,
                                socklen_t slen)
{
    char s[ADDR_STR_MAX], c[ADDR_STR_MAX];
    for (int i = 0; i < b->nlegs; i++)
        if (net_same_addr(&b->legs[i].server, src))
            return &b->legs[i];
    if (b->nlegs == BACK_LEGS)
        return NULL;
    int fd = socket(b->client.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return NULL;
    struct sockaddr_storage from = b->client_side;
    socklen_t flen = net_set_port(&from, 0);
    if ((b->transparent && net_set_transparent(fd, b->client.ss_family) == -1) ||
        net_set_mark(fd, b->mark) == -1 ||
        (from.ss_family == b->client.ss_family &&
         bind(fd, (struct sockaddr *)&from, flen) == -1) ||
        connect(fd, (struct sockaddr *)&b->client, b->clen) == -1) {
        log_warn("iperf2 UDP connect-back: cannot open a socket toward client %s: %s",
                 net_addr_str((struct sockaddr *)&b->client, c, sizeof(c)), strerror(errno));
        close(fd);
        return NULL;
    }
    struct back_leg *l = &b->legs[b->nlegs++];
    l->b = b;
    l->server = *src;
    l->slen = slen;
    l->cfd = fd;
    ev_io_init(&l->io, client_readable_cb, fd, EV_READ);
    l->io.data = l;
    ev_io_start(b->loop, &l->io);
    log_debug("iperf2 UDP connect-back from server %s relayed to client %s",
              net_addr_str((struct sockaddr *)src, s, sizeof(s)),
              net_addr_str((struct sockaddr *)&b->client, c, sizeof(c)));
    return l;
}

/* A datagram on the connect-back port from someone other than the server:
 * dropped and counted, with at most one warning per WARN_EVERY. */
static void stranger(struct udp_back *b, const struct sockaddr_storage *src)
{
    char f[ADDR_STR_MAX], sv[ADDR_STR_MAX];
    b->strangers++;
    ev_tstamp now = ev_now(b->loop);
    if (b->last_warn > 0 && now - b->last_warn < WARN_EVERY)
        return;
    b->last_warn = now;
    log_warn("iperf2 UDP connect-back port %u: dropping datagrams from %s: not the server %s "
             "(%" PRIu64 " dropped)", b->port, net_addr_str((const struct sockaddr *)src, f,
             sizeof(f)), net_addr_str((const struct sockaddr *)&b->server, sv, sizeof(sv)),
             b->strangers);
}

/* The server sent on the connect-back port: on to the client. */
static void server_readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct udp_back *b = w->data;
    for (int i = 0; i < BACK_READS; i++) {
        struct sockaddr_storage src;
        socklen_t slen = sizeof(src);
        ssize_t n = recvfrom(b->rfd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&src,
                             &slen);
        if (n < 0) {
            if (errno == ECONNREFUSED)
                continue;
            return;
        }
        if (!net_same_host(&src, &b->server)) {
            stranger(b, &src);
            continue;
        }
        *b->activity = ev_now(loop);
        struct back_leg *l = leg_for(b, &src, slen);
        if (l != NULL && send(l->cfd, buf, (size_t)n, MSG_DONTWAIT) >= 0)
            b->to_client++;
    }
}

struct udp_back *udp_back_open(struct ev_loop *loop, const struct sockaddr_storage *server,
                               const struct sockaddr_storage *server_side,
                               const struct sockaddr_storage *client_side,
                               const struct sockaddr_storage *client, bool transparent,
                               uint32_t mark, ev_tstamp *activity)
{
    struct udp_back *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    struct sockaddr_storage at = *server_side;
    socklen_t alen = net_set_port(&at, 0);
    b->rfd = socket(at.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b->rfd == -1 ||
        net_set_mark(b->rfd, mark) == -1 ||
        bind(b->rfd, (struct sockaddr *)&at, alen) == -1 ||
        getsockname(b->rfd, (struct sockaddr *)&at, &alen) == -1) {
        int e = errno;
        if (b->rfd >= 0)
            close(b->rfd);
        free(b);
        errno = e;
        return NULL;
    }
    b->loop = loop;
    b->port = (uint16_t)net_port((struct sockaddr *)&at);
    b->client = *client;
    b->clen = client->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                           : sizeof(struct sockaddr_in6);
    b->client_side = *client_side;
    b->transparent = transparent;
    b->mark = mark;
    b->server = *server;
    b->activity = activity;
    ev_io_init(&b->rio, server_readable_cb, b->rfd, EV_READ);
    b->rio.data = b;
    ev_io_start(loop, &b->rio);
    return b;
}

void udp_back_close(struct udp_back *b)
{
    char sv[ADDR_STR_MAX];
    if (b == NULL)
        return;
    if (b->strangers > 0)
        log_warn("iperf2 UDP connect-back port %u closed: %" PRIu64 " datagram(s) from "
                 "others than the server %s were dropped", b->port, b->strangers,
                 net_addr_str((const struct sockaddr *)&b->server, sv, sizeof(sv)));
    for (int i = 0; i < b->nlegs; i++) {
        ev_io_stop(b->loop, &b->legs[i].io);
        close(b->legs[i].cfd);
    }
    ev_io_stop(b->loop, &b->rio);
    close(b->rfd);
    free(b);
}
