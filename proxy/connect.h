/* Non-blocking outgoing TCP connect with a timeout, reported by callback. */
#ifndef IPERF_SHIM_PROXY_CONNECT_H
#define IPERF_SHIM_PROXY_CONNECT_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

/* Socket options applied before connect (0 / false: leave the default). */
struct tcp_opts {
    int  bufsize;    /* SO_SNDBUF and SO_RCVBUF, bytes */
    int  mss;        /* TCP_MAXSEG */
    int  nodelay;    /* TCP_NODELAY */
    int  mptcp;      /* connect with IPPROTO_MPTCP; plain TCP where the kernel has none */
    const struct sockaddr_storage *source;  /* connect from this (non-local) address, port
                                               the kernel's: --transparent-source; NULL: no */
    uint32_t mark;   /* SO_MARK (--transparent-mark), 0: none */
};

/* Called once: fd >= 0 connected (now the caller's), or fd == -1 and err the
 * errno (ETIMEDOUT for the timeout). */
typedef void (*connect_fn)(void *arg, int fd, int err);

struct connector {
    struct ev_loop *loop;
    ev_io       w;       /* writability = connect finished */
    ev_timer    timer;   /* connect timeout */
    int         fd;      /* socket being connected, -1 when idle */
    int         err;     /* errno of an immediate refusal, reported from the loop */
    connect_fn  cb;      /* result callback */
    void       *arg;     /* callback argument */
};

/* Starts connecting; the result always arrives through cb, never from inside
 * this call.  Returns 0, or -1 with errno if no socket could be created. */
int  connector_start(struct connector *c, struct ev_loop *loop,
                     const struct sockaddr_storage *to, socklen_t tolen,
                     const struct tcp_opts *opts, double timeout, connect_fn cb, void *arg);

/* Cancels a connect in progress (closes its socket); no callback follows. */
void connector_cancel(struct connector *c);

/* Applies tcp_opts to a socket (also used on accepted sockets). */
void tcp_opts_apply(int fd, const struct tcp_opts *opts);

#endif
