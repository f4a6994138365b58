/* The front of every accepted TCP connection: waits (bounded) for the first
 * bytes, recognises the protocol and hands the connection to its session
 * module.  Silent, garbage-sending or resetting peers are closed here with a
 * log line. */
#ifndef IPERF_SHIM_PROXY_FRONT_H
#define IPERF_SHIM_PROXY_FRONT_H

#include <ev.h>
#include <sys/socket.h>

/* Takes ownership of fd, a just-accepted non-blocking client connection. */
void front_accept(struct ev_loop *loop, int fd, const struct sockaddr_storage *peer,
                  socklen_t peerlen);

/* Number of connections still being recognised (for tests and stats). */
int  front_pending(void);

/* Closes every connection still being recognised (shutdown). */
void front_close_all(struct ev_loop *loop);

#endif
