/* Socket helpers: address parsing and formatting, non-blocking set-up.
 * Functions return 0 or a socket on success and -1 with errno set on failure;
 * callers decide what to log. */
#ifndef IPERF_SHIM_PROXY_NET_H
#define IPERF_SHIM_PROXY_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_STR_MAX 64   /* "[ffff:...:ffff]:65535" fits */

/* Parses "1.2.3.4:5201", "[2001:db8::1]:5201", "host:5201" (resolved now) or
 * ":5201"/"*:5201" (dual-stack wildcard).  Returns 0, or -1 with *why set. */
int  net_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                        const char **why);

/* Formats an address as "1.2.3.4:5201" or "[2001:db8::1]:5201"; v4-mapped v6
 * addresses are shown as v4.  Returns buf. */
char *net_addr_str(const struct sockaddr *sa, char *buf, size_t bufsz);

/* A listening TCP socket, non-blocking; a v6 wildcard is dual-stack.  With
 * transparent, it takes connections addressed to any host that the
 * firewall's TPROXY rules send to it (needs CAP_NET_ADMIN: EPERM). */
int  net_tcp_listen(const struct sockaddr_storage *ss, socklen_t len, bool transparent);

/* IP_TRANSPARENT (IPV6_TRANSPARENT and IP_TRANSPARENT for IPv6 sockets):
 * the socket may bind to, and take traffic for, addresses that are not
 * local.  Returns 0, or -1 with errno (EPERM without CAP_NET_ADMIN). */
int  net_set_transparent(int fd, int family);

/* Returns the pending error of a socket (SO_ERROR), 0 if none. */
int  net_sock_error(int fd);

/* Sets O_NONBLOCK and FD_CLOEXEC. */
int  net_nonblock(int fd);

/* Bytes waiting to be read on a socket (FIONREAD).  Returns them, or -1. */
long net_readable(int fd);

/* Bytes in a TCP socket's send queue that the peer has not acknowledged yet,
 * sent or not (SIOCOUTQ).  Returns them, or -1. */
long net_unacked(int fd);

/* Closes a TCP socket with RST instead of FIN (SO_LINGER 0). */
void net_close_reset(int fd);

/* True when a and b are the same host address (ports ignored); an IPv4
 * address and its v4-mapped IPv6 form are the same host. */
bool net_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* True when a and b are the same IPv4 or IPv6 address and port (the same
 * socket address: a UDP flow's client, a pool member). */
bool net_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* The family an address really is: AF_INET for IPv4 and for v4-mapped
 * IPv6, AF_INET6 for other IPv6. */
int  net_addr_family(const struct sockaddr_storage *a);

/* a in the form a socket of family takes: IPv4 as v4-mapped IPv6 for
 * AF_INET6, a v4-mapped IPv6 address as plain IPv4 for AF_INET.  Returns
 * its length in *out, or 0 if it cannot be written in that family. */
socklen_t net_addr_in_family(const struct sockaddr_storage *a, int family,
                             struct sockaddr_storage *out);

/* SO_MARK (a firewall mark on everything the socket sends); mark 0 leaves
 * the socket alone.  Returns 0, or -1 with errno. */
int  net_set_mark(int fd, uint32_t mark);

/* Port of an address, host order. */
int  net_port(const struct sockaddr *sa);

/* Sets the port of an IPv4 or IPv6 address; returns the address's length. */
socklen_t net_set_port(struct sockaddr_storage *ss, uint16_t port);

#endif
