#include "proxy/listener.h"

#include "proxy/front.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 32    /* accepts (or refusals) per readiness event */
#define PAUSE_S           0.1   /* accepting stops this long after running out of fds */
#define REPORT_S          1.0   /* at most one "refused" log line this often */

static void reserve_spare(struct tcp_listener *l)
{
    if (l->spare_fd < 0)
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Why accepting stopped, in an operator's words. */
static const char *resource_name(int err)
{
    if (err == EMFILE || err == ENFILE)
        return "out of file descriptors";
    if (err == ENOBUFS || err == ENOMEM)
        return "out of socket memory";
    return "accept failed";
}

/* True for accept errors that concern only the connection being accepted
 * (accept(2): pass on network errors as EAGAIN); the next one may work. */
static bool per_connection_error(int err)
{
    return err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM ||
           err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET ||
           err == EHOSTUNREACH || err == EOPNOTSUPP || err == ENETUNREACH || err == ETIMEDOUT;
}

/* Out of fds: takes pending connections one at a time with the spare fd and
 * closes them (the clients see their connection closed at once instead of
 * waiting in the kernel queue), at most ACCEPTS_PER_EVENT.  Returns how many
 * clients were refused. */
static unsigned shed_pending(struct tcp_listener *l)
{
    unsigned n = 0;
    while (n < ACCEPTS_PER_EVENT && l->spare_fd >= 0) {
        close(l->spare_fd);
        l->spare_fd = -1;
        int fd = accept(l->fd, NULL, NULL);
        if (fd >= 0) {
            close(fd);
            n++;
        }
        reserve_spare(l);
        if (fd == -1 && errno != EINTR && errno != ECONNABORTED)
            break;   /* queue empty (or still failing): nothing more to refuse */
    }
    return n;
}

/* Stops accepting for PAUSE_S.  The timer is set afresh each time: a libev
 * timer restarted after it fired would otherwise keep its expired time and
 * fire at once, and the listener would spin. */
static void pause_accepting(struct tcp_listener *l)
{
    struct ev_loop *loop = l->svc->loop;
    ev_io_stop(loop, &l->io);
    ev_timer_stop(loop, &l->pause);
    ev_timer_set(&l->pause, PAUSE_S, 0.);
    ev_timer_start(loop, &l->pause);
    l->state = ACCEPT_PAUSED;
}

/* accept failed for want of a resource (or for a reason that would not go
 * away by retrying at once): refuses what waits, pauses, and logs at most one
 * line per REPORT_S (the first at once, then a count per second). */
static void on_accept_error(struct tcp_listener *l, int err)
{
    struct ev_loop *loop = l->svc->loop;
    unsigned n = shed_pending(l);
    l->refused += n;
    l->refused_all += n;
    l->err = err;
    pause_accepting(l);
    if (!ev_is_active(&l->report)) {
        log_warn("service %s: %s (%s): refused %u client(s), accepting paused",
                 l->svc->cfg.name, resource_name(err), strerror(err), l->refused);
        l->refused = 0;
        ev_timer_set(&l->report, REPORT_S, REPORT_S);
        ev_timer_start(loop, &l->report);
    }
}

/* Once a second while resource errors go on: how many clients were refused. */
static void report_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tcp_listener *l = w->data;
    if (l->refused > 0 || l->state == ACCEPT_PAUSED) {
        log_warn("service %s: %s: refused %u client(s) in the last second, accepting paused",
                 l->svc->cfg.name, resource_name(l->err), l->refused);
        l->refused = 0;
        return;   /* repeats */
    }
    log_info("service %s: accepting clients again: no resource error for %.0f s (%lu "
             "client(s) refused in all)", l->svc->cfg.name, REPORT_S, l->refused_all);
    l->refused_all = 0;
    ev_timer_stop(loop, w);
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
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;   /* queue empty */
            if (per_connection_error(errno))
                continue;
            on_accept_error(l, errno);   /* out of fds or memory: refuse and pause */
            return;
        }
        front_accept(l->svc, fd, &peer, plen);
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tcp_listener *l = w->data;
    reserve_spare(l);
    l->state = ACCEPT_ON;
    ev_io_start(loop, &l->io);
}

int tcp_listener_start(struct tcp_listener *l, struct service *svc)
{
    struct ev_loop *loop = svc->loop;
    l->svc = svc;
    l->spare_fd = -1;
    l->fd = net_tcp_listen(&svc->cfg.listen_addr, svc->cfg.listen_len, svc->cfg.transparent);
    if (l->fd == -1)
        return -1;
    /* accepted sockets inherit it: the front learns when each client's first
     * bytes arrived (iperf3 data connections are ordered by it) */
    int one = 1;
    if (setsockopt(l->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) == -1)
        log_debug("service %s: SO_TIMESTAMPNS: %s", svc->cfg.name, strerror(errno));
    reserve_spare(l);
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    ev_timer_init(&l->pause, resume_cb, PAUSE_S, 0);
    ev_timer_init(&l->report, report_cb, REPORT_S, REPORT_S);
    l->io.data = l->pause.data = l->report.data = l;
    l->state = ACCEPT_ON;
    ev_io_start(loop, &l->io);
    return 0;
}

void tcp_listener_stop(struct tcp_listener *l)
{
    if (l->svc == NULL || l->fd < 0)
        return;
    struct ev_loop *loop = l->svc->loop;
    ev_io_stop(loop, &l->io);
    ev_timer_stop(loop, &l->pause);
    ev_timer_stop(loop, &l->report);
    close(l->fd);
    l->fd = -1;
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    l->spare_fd = -1;
}
