#include "proxy/listener.h"

#include "proxy/front.h"
#include "proxy/log.h"
#include "proxy/net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 32    /* accepts (or refusals) per readiness event */
#define PAUSE_S           0.1   /* accepting stops this long after running out of fds */
#define REPORT_S          1.0   /* at most one "refused" log line this often */

/* Accepting, or paused after a resource error (out of fds or memory). */
enum accept_state { ACCEPT_ON = 0, ACCEPT_PAUSED };

static struct {
    ev_io             io;          /* readable listening socket */
    ev_timer          pause;       /* re-enables accepting after fd exhaustion */
    ev_timer          report;      /* logs the refusals counted since the last line */
    int               fd;          /* listening socket */
    int               spare_fd;    /* reserved fd, given up to refuse a client when out of fds */
    enum accept_state state;       /* accepting or paused */
    unsigned          refused;     /* clients refused since the last log line */
    unsigned long     refused_all; /* clients refused since the resource error began */
    int               err;         /* errno of the last resource error */
} L = { .fd = -1, .spare_fd = -1 };

static void reserve_spare(void)
{
    if (L.spare_fd < 0)
        L.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
static unsigned shed_pending(void)
{
    unsigned n = 0;
    while (n < ACCEPTS_PER_EVENT && L.spare_fd >= 0) {
        close(L.spare_fd);
        L.spare_fd = -1;
        int fd = accept(L.fd, NULL, NULL);
        if (fd >= 0) {
            close(fd);
            n++;
        }
        reserve_spare();
        if (fd == -1 && errno != EINTR && errno != ECONNABORTED)
            break;   /* queue empty (or still failing): nothing more to refuse */
    }
    return n;
}

/* Stops accepting for PAUSE_S.  The timer is set afresh each time: a libev
 * timer restarted after it fired would otherwise keep its expired time and
 * fire at once, and the listener would spin. */
static void pause_accepting(struct ev_loop *loop)
{
    ev_io_stop(loop, &L.io);
    ev_timer_stop(loop, &L.pause);
    ev_timer_set(&L.pause, PAUSE_S, 0.);
    ev_timer_start(loop, &L.pause);
    L.state = ACCEPT_PAUSED;
}

/* accept failed for want of a resource (or for a reason that would not go
 * away by retrying at once): refuses what waits, pauses, and logs at most one
 * line per REPORT_S (the first at once, then a count per second). */
static void on_accept_error(struct ev_loop *loop, int err)
{
    unsigned n = shed_pending();
    L.refused += n;
    L.refused_all += n;
    L.err = err;
    pause_accepting(loop);
    if (!ev_is_active(&L.report)) {
        log_warn("%s (%s): refused %u client(s), accepting paused", resource_name(err),
                 strerror(err), L.refused);
        L.refused = 0;
        ev_timer_set(&L.report, REPORT_S, REPORT_S);
        ev_timer_start(loop, &L.report);
    }
}

/* Once a second while resource errors go on: how many clients were refused. */
static void report_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    if (L.refused > 0 || L.state == ACCEPT_PAUSED) {
        log_warn("%s: refused %u client(s) in the last second, accepting paused",
                 resource_name(L.err), L.refused);
        L.refused = 0;
        return;   /* repeats */
    }
    log_info("accepting clients again: no resource error for %.0f s (%lu client(s) refused "
             "in all)", REPORT_S, L.refused_all);
    L.refused_all = 0;
    ev_timer_stop(loop, w);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)w; (void)revents;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(L.fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;   /* queue empty */
            if (per_connection_error(errno))
                continue;
            on_accept_error(loop, errno);   /* out of fds or memory: refuse and pause */
            return;
        }
        front_accept(loop, fd, &peer, plen);
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w; (void)revents;
    reserve_spare();
    L.state = ACCEPT_ON;
    ev_io_start(loop, &L.io);
}

int tcp_listener_start(struct ev_loop *loop, const struct sockaddr_storage *addr, socklen_t len)
{
    L.fd = net_tcp_listen(addr, len);
    if (L.fd == -1)
        return -1;
    reserve_spare();
    ev_io_init(&L.io, accept_cb, L.fd, EV_READ);
    ev_timer_init(&L.pause, resume_cb, PAUSE_S, 0);
    ev_timer_init(&L.report, report_cb, REPORT_S, REPORT_S);
    L.state = ACCEPT_ON;
    ev_io_start(loop, &L.io);
    return 0;
}

void tcp_listener_stop(struct ev_loop *loop)
{
    if (L.fd < 0)
        return;
    ev_io_stop(loop, &L.io);
    ev_timer_stop(loop, &L.pause);
    ev_timer_stop(loop, &L.report);
    close(L.fd);
    L.fd = -1;
    if (L.spare_fd >= 0)
        close(L.spare_fd);
    L.spare_fd = -1;
}
