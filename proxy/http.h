/*
 * The operator's HTTP endpoint (--metrics ADDR:PORT): /metrics in the
 * Prometheus text format (proxy/prom.h), / and /status.json, the live view
 * (proxy/status.h).  It runs on the shim's own event
 * loop: libmicrohttpd (a maintained Debian library, docs/metrics.md) in its
 * external-select mode, its epoll fd watched by libev.
 */
#ifndef IPERF_SHIM_PROXY_HTTP_H
#define IPERF_SHIM_PROXY_HTTP_H

#include <ev.h>
#include <sys/socket.h>

struct service;

/* Serves on addr; *services is read at every request (the process's list).
 * Returns 0, or -1 with errno. */
int  http_start(struct ev_loop *loop, const struct sockaddr_storage *addr, socklen_t len,
                struct service *const *services);
void http_stop(void);

#endif
