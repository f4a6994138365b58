/* A service's TCP listener: accepts client connections and hands each to the
 * front (protocol detection).  Survives fd exhaustion without spinning. */
#ifndef IPERF_SHIM_PROXY_LISTENER_H
#define IPERF_SHIM_PROXY_LISTENER_H

#include <ev.h>
#include <sys/socket.h>

struct service;

/* Accepting, or paused after a resource error (out of fds or memory). */
enum accept_state { ACCEPT_ON = 0, ACCEPT_PAUSED };

struct tcp_listener {
    struct service   *svc;         /* owner */
    ev_io             io;          /* readable listening socket */
    ev_timer          pause;       /* re-enables accepting after fd exhaustion */
    ev_timer          report;      /* logs the refusals counted since the last line */
    int               fd;          /* listening socket, -1 when closed */
    int               spare_fd;    /* reserved fd, given up to refuse a client when out of fds */
    enum accept_state state;       /* accepting or paused */
    unsigned          refused;     /* clients refused since the last log line */
    unsigned long     refused_all; /* clients refused since the resource error began */
    int               err;         /* errno of the last resource error */
};

/* Listens on svc->cfg.listen_addr.  Returns 0, or -1 with errno (bind/listen failed). */
int  tcp_listener_start(struct tcp_listener *l, struct service *svc);
void tcp_listener_stop(struct tcp_listener *l);

#endif
