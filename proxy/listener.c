#include "proxy/listener.h"

#include "proxy/front.h"
#include "proxy/log.h"
#include "proxy/net.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 32

static struct {
    ev_io     io;        /* readable listening socket */
    ev_timer  pause;     /* re-enables accepting after fd exhaustion */
    int       fd;        /* listening socket */
    int       spare_fd;  /* reserved fd, given up to refuse a client when out of fds */
} L = { .fd = -1, .spare_fd = -1 };

static void reserve_spare(void)
{
    if (L.spare_fd < 0)
        L.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of fds: take the oldest pending connection with the spare fd and close
 * it, so the kernel queue does not keep the listener readable forever. */
static void shed_one(struct ev_loop *loop)
{
    if (L.spare_fd >= 0) {
        close(L.spare_fd);
        L.spare_fd = -1;
        int fd = accept(L.fd, NULL, NULL);
        if (fd >= 0)
            close(fd);
        reserve_spare();
    }
    /* and stop accepting for a moment */
    ev_io_stop(loop, &L.io);
    ev_timer_start(loop, &L.pause);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)w; (void)revents;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(L.fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("out of file descriptors (%s): refusing a client, pausing accepts for 100 ms",
                         strerror(errno));
                shed_one(loop);
            }
            return;   /* EAGAIN: queue empty */
        }
        front_accept(loop, fd, &peer, plen);
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w; (void)revents;
    reserve_spare();
    ev_io_start(loop, &L.io);
}

int tcp_listener_start(struct ev_loop *loop, const struct sockaddr_storage *addr, socklen_t len)
{
    L.fd = net_tcp_listen(addr, len);
    if (L.fd == -1)
        return -1;
    reserve_spare();
    ev_io_init(&L.io, accept_cb, L.fd, EV_READ);
    ev_timer_init(&L.pause, resume_cb, 0.1, 0);
    ev_io_start(loop, &L.io);
    return 0;
}

void tcp_listener_stop(struct ev_loop *loop)
{
    if (L.fd < 0)
        return;
    ev_io_stop(loop, &L.io);
    ev_timer_stop(loop, &L.pause);
    close(L.fd);
    L.fd = -1;
    if (L.spare_fd >= 0)
        close(L.spare_fd);
    L.spare_fd = -1;
}
