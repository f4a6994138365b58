/*
 * Transparent mode (--transparent, docs/transparent.md), the TCP side: where
 * an intercepted connection was going, whether the shim may serve that
 * destination, and the upstream socket that carries the client's address
 * (--transparent-source).
 *
 * The gateway's rules hand the shim connections addressed to other hosts:
 * with TPROXY the accepted socket's own address is the original destination
 * (getsockname); with REDIRECT or DNAT it is the shim's address and the
 * destination is in conntrack (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST).
 */
#ifndef IPERF_SHIM_PROXY_TRANSPARENT_H
#define IPERF_SHIM_PROXY_TRANSPARENT_H

#include <stdbool.h>
#include <sys/socket.h>

struct service;

/* The destination the client addressed on accepted connection fd: the
 * conntrack original destination when NAT changed it (REDIRECT, DNAT), else
 * the socket's own address (TPROXY).  Returns 0, or -1 with errno. */
int  transparent_orig_dst(int fd, struct sockaddr_storage *dst, socklen_t *len);

/* True when svc may relay client's connection (or flow) to dst: dst is in
 * --allow-server (empty: any), and dst is not the shim's own listener (a
 * client that addressed the shim itself would make it connect to itself).
 * Else counts it and logs, at most once a second, "refusing <what> <client>
 * to <dst>: <why>". */
bool transparent_admits(struct service *svc, const struct sockaddr_storage *client,
                        const struct sockaddr_storage *dst, const char *what);

/* Prepares an upstream socket fd (not yet connected) for --transparent-source:
 * IP_TRANSPARENT, then bound to source's address with port 0, so that the
 * server sees the client's address.  Returns 0, or -1 with errno. */
int  transparent_bind_source(int fd, const struct sockaddr_storage *source);

#endif
