/*
 * UDP relay: iperf3 UDP streams and iperf2 UDP tests through the shim, and
 * the fix for iperf2 ticket #391 (a Windows server killed by an ICMP
 * port-unreachable).
 *
 * One wildcard listening socket on the listen port takes every client
 * datagram (recvmmsg batches) and learns the address the client sent to
 * (IP_PKTINFO / IPV6_RECVPKTINFO), so replies leave from that address.
 * Datagrams are dispatched to flows by (client address, local address).
 * A flow is created only for a first datagram that looks like iperf (an
 * iperf3 stream request or an iperf2 datagram); junk is counted, logged (at
 * most every 5 s) and dropped.
 *
 * Each flow has its own upstream socket on a fresh ephemeral port,
 * connected to the server.  The flow lives until it has been quiet both
 * ways for --udp-linger seconds, so whatever the server still sends after
 * the client left (late Server Reports) lands on an open shim socket: the
 * server never receives an ICMP port-unreachable because a client went
 * away.  ICMP errors that reach the shim's own sockets are counted and
 * absorbed, never fatal and never passed on.
 *
 * iperf2: the client repeats its final datagram (negative sequence number)
 * until a Server Report comes back.  The first report the server sends is
 * kept; later repeats of the final datagram are answered from it instead of
 * being forwarded, so fewer reports travel toward a closing port.
 */
#ifndef IPERF_SHIM_PROXY_UDP_H
#define IPERF_SHIM_PROXY_UDP_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

struct udp_counters {
    uint64_t junk;            /* datagrams dropped: not iperf, no flow */
    uint64_t wrong_protocol;  /* first datagrams dropped: excluded by --protocol */
    uint64_t refused_flows;   /* first datagrams dropped: flow table full, or draining */
    uint64_t icmp_absorbed;   /* ICMP errors (ECONNREFUSED) seen on shim sockets */
    uint64_t queue_drops;     /* datagrams dropped: a per-flow queue was full */
    uint64_t fins_answered;   /* iperf2 final datagrams answered from a kept report */
    uint64_t refused_servers; /* first datagrams dropped (--transparent): destination not
                                 in --allow-server, or the shim's own listener */
    uint64_t flows;           /* flows created */
};

struct service;

/* Opens svc's UDP listener on its listen address (svc->udp).  Returns 0, or
 * -1 with errno.  While svc drains, datagrams of new clients create no flow
 * (counted as refused_flows); existing flows go on until they linger out. */
int  udp_start(struct service *svc);

/* Closes every flow of svc at once, and the listener. */
void udp_stop(struct service *svc);

/* svc's UDP counters, NULL before udp_start(). */
const struct udp_counters *udp_counters(const struct service *svc);
int  udp_live_flows(const struct service *svc);

#endif
