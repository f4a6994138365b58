/*
 * UDP connect-back of an iperf2 dual test (-u -d) or tradeoff (-u -r).
 *
 * The server sends its own test to the address it saw (the shim's upstream
 * socket) at the port in the client's test header.  The UDP relay rewrites
 * that port to the port of a socket opened here on the same address; what
 * the server sends there is relayed to the client's address at the original
 * port, from the address the client used to reach the shim, one
 * client-facing socket per server source, and the client's answers (its
 * Server Reports) go back the same way.
 */
#ifndef IPERF_SHIM_PROXY_UDP_BACK_H
#define IPERF_SHIM_PROXY_UDP_BACK_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct udp_back;

/* Opens the server-facing socket on server_side (port ignored: ephemeral).
 * server is the upstream server's address: datagrams from any other host are
 * dropped, counted and logged (rate-limited).  client is the client's address
 * with the port it asked for; client_side is the address the client sent to.
 * *activity is set to ev_now() on every datagram from the server, so the
 * owning flow lingers while the connect-back runs.  With transparent
 * (--transparent), client_side is the server's own address, not one of this
 * host: the client-facing sockets bind to it with IP_TRANSPARENT, so the
 * connect-back reaches the client from the server's address, as directly.
 * mark (--transparent-mark, 0: none) is set on every socket opened here.
 * Returns NULL with errno on failure. */
struct udp_back *udp_back_open(struct ev_loop *loop, const struct sockaddr_storage *server,
                               const struct sockaddr_storage *server_side,
                               const struct sockaddr_storage *client_side,
                               const struct sockaddr_storage *client, bool transparent,
                               uint32_t mark, ev_tstamp *activity);

/* Port the server must be told (host order). */
uint16_t udp_back_port(const struct udp_back *b);

/* Datagrams relayed server->client and client->server, for the flow's log line. */
void udp_back_counts(const struct udp_back *b, uint64_t *to_client, uint64_t *to_server);

void udp_back_close(struct udp_back *b);

#endif
