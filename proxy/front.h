/* The front of every accepted TCP connection: waits (bounded) for the first
 * bytes, recognises the protocol and hands the connection to its session
 * module.  Silent, garbage-sending or resetting peers are closed here with a
 * log line. */
#ifndef IPERF_SHIM_PROXY_FRONT_H
#define IPERF_SHIM_PROXY_FRONT_H

#include <ev.h>

#include "proxy/log.h"

#include <stdint.h>
#include <sys/socket.h>

struct service;
struct front;

/* How a connection arrived, handed on with it: iperf3 orders data
 * connections by it (protocol/stream_order.h). */
struct front_arrival {
    uint64_t seq;           /* accept order (1, 2, ...) on the service */
    int64_t  accepted_us;   /* CLOCK_REALTIME at accept, us */
    int64_t  first_rx_us;   /* kernel receive time of the first bytes, us (0: none) */
};

/* A service's connections still being recognised, in accept order. */
struct front_queue {
    struct front *head, *tail;   /* oldest first */
    int           pending;       /* how many */
    uint64_t      accepted;      /* connections accepted so far (their accept order) */
    struct log_rate silent_log;  /* "no cookie or header in time": at most 5 lines a second */
};

/* Takes ownership of fd, a just-accepted non-blocking client connection of svc. */
void front_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
                  socklen_t peerlen);

/* Closes every connection of svc still being recognised (shutdown). */
void front_close_all(struct service *svc);

#endif
