#include "proxy/connect.h"

#include "proxy/net.h"
#include "proxy/transparent.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262   /* linux/in.h, Linux 5.6+ */
#endif

void tcp_opts_apply(int fd, const struct tcp_opts *o)
{
    if (o == NULL)
        return;
    if (o->bufsize > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->bufsize, sizeof(o->bufsize));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->bufsize, sizeof(o->bufsize));
    }
    if (o->mss > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &o->mss, sizeof(o->mss));
    if (o->nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

static void connector_finish(struct connector *c, int fd, int err)
{
    ev_io_stop(c->loop, &c->w);
    ev_timer_stop(c->loop, &c->timer);
    c->fd = -1;
    c->cb(c->arg, fd, err);
}

static void connected_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct connector *c = w->data;
    int fd = c->fd;
    int err = net_sock_error(fd);
    if (err != 0) {
        close(fd);
        connector_finish(c, -1, err);
        return;
    }
    connector_finish(c, fd, 0);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct connector *c = w->data;
    close(c->fd);
    connector_finish(c, -1, ETIMEDOUT);
}

static void refused_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct connector *c = w->data;
    connector_finish(c, -1, c->err);
}

int connector_start(struct connector *c, struct ev_loop *loop,
                    const struct sockaddr_storage *to, socklen_t tolen,
                    const struct tcp_opts *opts, double timeout, connect_fn cb, void *arg)
{
    int fd = -1;
    if (opts != NULL && opts->mptcp)   /* EPROTONOSUPPORT, EINVAL, ENOPROTOOPT: no MPTCP */
        fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_MPTCP);
    if (fd == -1)
        fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    tcp_opts_apply(fd, opts);
    c->loop = loop;
    c->fd = fd;
    c->err = 0;
    c->cb = cb;
    c->arg = arg;
    ev_io_init(&c->w, connected_cb, fd, EV_WRITE);
    c->w.data = c;
    ev_timer_init(&c->timer, timeout_cb, timeout, 0);
    c->timer.data = c;
    bool bound = (opts == NULL || net_set_mark(fd, opts->mark) == 0) &&
                 (opts == NULL || opts->source == NULL ||
                  transparent_bind_source(fd, opts->source) == 0);
    if (!bound || (connect(fd, (const struct sockaddr *)to, tolen) == -1 && errno != EINPROGRESS)) {
        /* an immediate refusal is reported through the loop too: one path for callers */
        c->err = errno;
        close(fd);
        c->fd = -1;
        ev_set_cb(&c->timer, refused_cb);
        ev_timer_set(&c->timer, 0, 0);
        ev_timer_start(loop, &c->timer);
        return 0;
    }
    ev_io_start(loop, &c->w);
    ev_timer_start(loop, &c->timer);
    return 0;
}

void connector_cancel(struct connector *c)
{
    if (c->loop == NULL)
        return;
    ev_io_stop(c->loop, &c->w);
    ev_timer_stop(c->loop, &c->timer);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}
