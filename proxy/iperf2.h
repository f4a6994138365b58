/*
 * iperf2 TCP sessions: one per client connection.
 *
 * The connection starts with a test header (protocol/iperf2.h).  It is
 * relayed unchanged to the server, except in a dual test (-d) or tradeoff
 * (-r): there the server connects back to the address it saw, which is the
 * shim, on the port in the header (mPort).  In a gateway deployment the
 * server may have no route to the client at all, so the shim rewrites mPort
 * to a port it listens on (on the address the server sees), takes the
 * server's connect-back there and relays it to the client's address at the
 * original port.  --reverse and --full-duplex use the same connection and
 * need nothing but the relay.
 */
#ifndef IPERF_SHIM_PROXY_IPERF2_H
#define IPERF_SHIM_PROXY_IPERF2_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct service;

/* Takes ownership of a client connection whose first n bytes (a complete
 * iperf2 test header, maybe followed by data) were read already; refused
 * (closed) while svc drains.  dst: with --transparent, the server the
 * client addressed (instead of the pool); NULL otherwise. */
void i2_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
               const struct sockaddr_storage *dst, const uint8_t *first, size_t n);

/* Closes every session of svc at once (shutdown). */
void i2_close_all(struct service *svc);

#endif
