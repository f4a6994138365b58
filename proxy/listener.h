/* The TCP listener: accepts client connections and hands each to the front
 * (protocol detection).  Survives fd exhaustion without spinning. */
#ifndef IPERF_SHIM_PROXY_LISTENER_H
#define IPERF_SHIM_PROXY_LISTENER_H

#include <ev.h>
#include <sys/socket.h>

/* Returns 0, or -1 with errno (bind/listen failed). */
int  tcp_listener_start(struct ev_loop *loop, const struct sockaddr_storage *addr, socklen_t len);
void tcp_listener_stop(struct ev_loop *loop);

#endif
