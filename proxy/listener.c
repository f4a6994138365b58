#include "proxy/listener.h"

#include "proxy/front.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 32

static void reserve_spare(struct tcp_listener *l)
{
    if (l->spare_fd < 0)
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of fds: take the oldest pending connection with the spare fd and close
 * it, so the kernel queue does not keep the listener readable forever. */
static void shed_one(struct tcp_listener *l)
{
    struct ev_loop *loop = l->svc->loop;
    if (l->spare_fd >= 0) {
        close(l->spare_fd);
        l->spare_fd = -1;
        int fd = accept(l->fd, NULL, NULL);
        if (fd >= 0)
            close(fd);
        reserve_spare(l);
    }
    /* and stop accepting for a moment */
    ev_io_stop(loop, &l->io);
    ev_timer_start(loop, &l->pause);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct tcp_listener *l = w->data;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("out of file descriptors (%s): refusing a client, pausing accepts for 100 ms",
                         strerror(errno));
                shed_one(l);
            }
            return;   /* EAGAIN: queue empty */
        }
        front_accept(l->svc, fd, &peer, plen);
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tcp_listener *l = w->data;
    reserve_spare(l);
    ev_io_start(loop, &l->io);
}

int tcp_listener_start(struct tcp_listener *l, struct service *svc)
{
    l->svc = svc;
    l->spare_fd = -1;
    l->fd = net_tcp_listen(&svc->cfg.listen_addr, svc->cfg.listen_len);
    if (l->fd == -1)
        return -1;
    reserve_spare(l);
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    l->io.data = l;
    ev_timer_init(&l->pause, resume_cb, 0.1, 0);
    l->pause.data = l;
    ev_io_start(svc->loop, &l->io);
    return 0;
}

void tcp_listener_stop(struct tcp_listener *l)
{
    if (l->svc == NULL || l->fd < 0)
        return;
    struct ev_loop *loop = l->svc->loop;
    ev_io_stop(loop, &l->io);
    ev_timer_stop(loop, &l->pause);
    close(l->fd);
    l->fd = -1;
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    l->spare_fd = -1;
}
