/* A service's TCP listener: accepts client connections and hands each to the
 * front (protocol detection).  Survives fd exhaustion without spinning. */
#ifndef IPERF_SHIM_PROXY_LISTENER_H
#define IPERF_SHIM_PROXY_LISTENER_H

#include <ev.h>
#include <sys/socket.h>

struct service;

struct tcp_listener {
    struct service *svc;       /* owner */
    ev_io           io;        /* readable listening socket */
    ev_timer        pause;     /* re-enables accepting after fd exhaustion */
    int             fd;        /* listening socket, -1 when closed */
    int             spare_fd;  /* reserved fd, given up to refuse a client when out of fds */
};

/* Listens on svc->cfg.listen_addr.  Returns 0, or -1 with errno (bind/listen failed). */
int  tcp_listener_start(struct tcp_listener *l, struct service *svc);
void tcp_listener_stop(struct tcp_listener *l);

#endif
