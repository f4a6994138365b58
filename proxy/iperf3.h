/*
 * iperf3 sessions: one per test, made of the control connection and its data
 * connections.
 *
 * Control: relayed unchanged in copy mode; every byte is observed by the
 * pure parser in protocol/iperf3_ctrl.c to learn the parameters (mode,
 * stream count) and the server's state.
 * Before that, the test is offered to a free server of the service's pool
 * (proxy/pool.h): connect, cookie, the server's first byte; ACCESS_DENIED
 * moves on to the next free server, and with none free the client waits in
 * the pool's queue (--queue-timeout, --queue-max).  Every data connection
 * and UDP stream of the test then goes to the server that took it; the
 * server's CREATE_STREAMS of a UDP test is held back while another UDP test
 * of the same host creates its streams (they carry no cookie).
 *
 * Data: for each client data connection an upstream connection is opened and
 * the cookie forwarded at once (the server only takes data connections while
 * it is in CREATE_STREAMS, and servers up to 3.14 block on a stalled cookie),
 * one at a time: the next is opened once the server acknowledged the
 * previous cookie, so the server accepts them in the shim's order.  Outside
 * --bidir every stream has the same role, so each client connection is
 * relayed to the upstream connection opened for it.
 *
 * End of test (docs/accuracy.md): the client's TEST_END is held until the
 * server has acknowledged (and had time to read) every data byte the client
 * sent before it; the results JSON of both ends are held during
 * EXCHANGE_RESULTS and their stream ids renumbered so that each stream's
 * peer numbers are those of the stream it really exchanged data with.
 *
 * --bidir: the server gives its first P accepted connections the receiver
 * role and the next P the sender role (esnet/iperf #2029), so whenever the
 * accept order differs from the client's connect order on either leg, a
 * client sender would meet a server sender.  The session therefore holds
 * every data connection on both legs (reading at most a bounded amount,
 * losing nothing) until the test runs: then senders write and receivers
 * never do.  Once P senders are seen on a leg, the rest are its receivers;
 * when both legs are known, every client sender is paired with a server
 * receiver and every client receiver with a server sender, the held bytes
 * are delivered first and the pairs are relayed.  If the roles are not
 * learned within --role-timeout, the pairs fall back to arrival order, with
 * a warning.
 */
#ifndef IPERF_SHIM_PROXY_IPERF3_H
#define IPERF_SHIM_PROXY_IPERF3_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "protocol/iperf3_ctrl.h"

struct service;
struct front_arrival;

/* Takes ownership of a client connection whose first bytes were a complete
 * iperf3 cookie: a new control connection (refused while svc drains), or a
 * data connection of a test in progress.  arr->seq numbers connections in
 * the order they were accepted (the kernel's order of completed handshakes),
 * which may differ from the order their cookies arrived in; arr's times
 * help order data connections as the client created them.  dst: with
 * --transparent, the server the client addressed (a new test goes there,
 * not to the pool); NULL otherwise. */
void i3_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
               const struct sockaddr_storage *dst, const uint8_t cookie[I3_COOKIE_SIZE],
               const struct front_arrival *arr);

/* The server a new iperf3 UDP stream from client goes to: that of the test
 * of the same host whose server is creating streams (CREATE_STREAMS sent,
 * TEST_START not yet); failing that, of its latest UDP test still running.
 * Returns 0 with *server and *len set, or -1 if the host has no UDP test. */
int  i3_udp_server(const struct service *svc, const struct sockaddr_storage *client,
                   struct sockaddr_storage *server, socklen_t *len);

/* Closes every test of svc at once (shutdown). */
void i3_close_all(struct service *svc);

#endif
