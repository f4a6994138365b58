#include "proxy/front.h"

#include "protocol/detect.h"
#include "proxy/config.h"
#include "proxy/iperf3.h"
#include "proxy/log.h"
#include "proxy/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct front {
    int       fd;                       /* the client connection */
    ev_io     io;                       /* readable */
    ev_timer  timer;                    /* handshake timeout */
    uint8_t   buf[DETECT_MAX_BYTES];    /* first bytes received */
    size_t    got;                      /* bytes in buf */
    struct sockaddr_storage peer;       /* client address */
    socklen_t peerlen;
};

static int pending;

int front_pending(void)
{
    return pending;
}

static void front_free(struct ev_loop *loop, struct front *f, bool close_fd)
{
    ev_io_stop(loop, &f->io);
    ev_timer_stop(loop, &f->timer);
    if (close_fd)
        close(f->fd);
    pending--;
    free(f);
}

static void hexdump(const uint8_t *b, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < outsz; i++)
        o += (size_t)snprintf(out + o, outsz - o, "%02x", b[i]);
    out[o] = '\0';
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct front *f = w->data;
    char who[ADDR_STR_MAX];
    ssize_t n = read(f->fd, f->buf + f->got, sizeof(f->buf) - f->got);

    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        log_debug("client %s went away before identifying itself (%s)",
                  net_addr_str((struct sockaddr *)&f->peer, who, sizeof(who)),
                  n == 0 ? "closed" : strerror(errno));
        front_free(loop, f, true);
        return;
    }
    f->got += (size_t)n;
    switch (detect_tcp(f->buf, f->got)) {
    case DETECT_NEED_MORE:
        return;
    case DETECT_IPERF3: {
        int fd = f->fd;
        struct sockaddr_storage peer = f->peer;
        uint8_t cookie[DETECT_MAX_BYTES];
        memcpy(cookie, f->buf, sizeof(cookie));
        front_free(loop, f, false);
        i3_accept(loop, fd, &peer, cookie);
        return;
    }
    case DETECT_UNKNOWN: {
        char hex[2 * 16 + 1];
        hexdump(f->buf, f->got < 16 ? f->got : 16, hex, sizeof(hex));
        log_warn("closing client %s: not an iperf3 cookie (first bytes %s)",
                 net_addr_str((struct sockaddr *)&f->peer, who, sizeof(who)), hex);
        front_free(loop, f, true);
        return;
    }
    }
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct front *f = w->data;
    char who[ADDR_STR_MAX];
    log_warn("closing client %s: no iperf cookie or header within %.1f s (%zu bytes received)",
             net_addr_str((struct sockaddr *)&f->peer, who, sizeof(who)),
             cfg.handshake_timeout, f->got);
    front_free(loop, f, true);
}

void front_accept(struct ev_loop *loop, int fd, const struct sockaddr_storage *peer,
                  socklen_t peerlen)
{
    struct front *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        log_error("out of memory: refusing a client");
        close(fd);
        return;
    }
    f->fd = fd;
    f->peer = *peer;
    f->peerlen = peerlen;
    ev_io_init(&f->io, read_cb, fd, EV_READ);
    f->io.data = f;
    ev_timer_init(&f->timer, timeout_cb, cfg.handshake_timeout, 0);
    f->timer.data = f;
    ev_io_start(loop, &f->io);
    ev_timer_start(loop, &f->timer);
    pending++;
}
