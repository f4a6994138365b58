/*
 * UDP relay internals, shared by the files of the UDP side (not part of the
 * proxy's interface, which is proxy/udp.h):
 *
 *   udp.c         the listener: reads client datagrams, dispatches them to
 *                 flows, creates flows, reads the server's datagrams
 *   udp_flow.c    the flow table: lookup by client address, detach, linger,
 *                 free (with the flow's log line)
 *   udp_io.c      batched sends toward either side, per-flow queues for
 *                 datagrams a socket would not take, ICMP absorption
 *   udp_iperf2.c  iperf2 specifics: the client's final datagrams, the
 *                 Server Report, the -d/-r connect-back port
 *   udp_transparent.c  --transparent: the original destination of a
 *                 datagram, the sockets of a flow that speak as the server
 *                 (and, with --transparent-source, as the client)
 */
#ifndef IPERF_SHIM_PROXY_UDP_FLOW_H
#define IPERF_SHIM_PROXY_UDP_FLOW_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "protocol/iperf2.h"
#include "proxy/log.h"
#include "proxy/udp.h"

#define BATCH        32                  /* datagrams per recvmmsg/sendmmsg */
#define DGRAM_MAX    65536               /* largest datagram (IPv4 65507, IPv6 65527) */
#define HASH_BUCKETS 4096                /* flow table buckets */
#define SOCKBUF      (4 * 1024 * 1024)   /* listener and upstream socket buffers */
#define QUEUE_BYTES  (4u * 1024u * 1024u)/* per-flow, per-direction queue bound */
#define GSO_SEGS     64                  /* datagrams per UDP_SEGMENT send (kernel: 64 or more) */
#define GSO_BYTES    63000               /* bytes per UDP_SEGMENT send (one IP packet's worth) */

struct service;
struct service_config;
struct udp_back;

/* A datagram waiting for its socket to become writable. */
struct qdgram {
    struct qdgram *next;     /* next in its queue */
    size_t         len;      /* bytes in data */
    uint8_t        data[];   /* the datagram */
};

/* Bounded FIFO of datagrams. */
struct dgq {
    struct qdgram *head, *tail;
    size_t         bytes;    /* sum of queued lengths */
    unsigned       count;    /* datagrams queued */
};

/* What a flow's first datagram was. */
enum udp_proto { UDP_IPERF3 = 0, UDP_IPERF2 };

struct udp_flow {
    struct udp_state *u;              /* owner: the service's UDP state */
    struct udp_flow *hnext;           /* hash chain */
    struct udp_flow *wnext;           /* list of flows waiting for the listener to drain */
    bool             waiting;         /* on that list */
    struct sockaddr_storage client;   /* the client's address */
    socklen_t        clen;            /* its length */
    struct sockaddr_storage local;    /* the address the client sent to (reply source) */
    struct sockaddr_storage dest;     /* --transparent: the original destination (the
                                         server the client addressed, with its port), in
                                         the listener's family; part of the flow's key.
                                         Family 0 otherwise */
    int              ufd;             /* upstream socket, connected to the server */
    struct sockaddr_storage server;   /* that server: a pool member */
    bool             member_held;     /* iperf2: counted in the member's load */
    int              cfd;             /* --udp-connected: socket on the listen address and
                                         port, connected to the client; --transparent:
                                         bound to dest (IP_TRANSPARENT), connected to the
                                         client, so replies come from the server's address
                                         and port; else -1 */
    ev_io            crd;             /* cfd readable */
    ev_io            cwr;             /* cfd writable while datagrams wait for it */
    ev_io            urd;             /* upstream readable */
    ev_io            uwr;             /* upstream writable while up-queue is not empty */
    ev_timer         linger;          /* expiry: quiet both ways for u->cfg->udp_linger */
    ev_tstamp        last[2];         /* last datagram from the client [0], server [1] */
    ev_tstamp        created;         /* ev_now() when the first datagram came */
    time_t           started;         /* wall clock, same moment */
    enum udp_proto   proto;           /* what the first datagram was */
    struct i2_udp_client i2;          /* iperf2: the first datagram's layout and test header */
    struct udp_back *back;            /* iperf2 -d/-r: the connect-back relay, else NULL */
    struct dgq       q[2];            /* [0] toward server, [1] toward client */
    uint8_t         *report;          /* iperf2: first Server Report from the server */
    size_t           report_len;      /* its length */
    bool             fin_seen;        /* iperf2: the client's final datagram arrived */
    bool             detached;        /* a new test took over the client's address: this
                                         flow only lingers, absorbing the server's late
                                         datagrams; it is on u->detached, not in the hash */
    uint64_t         dgrams[2];       /* datagrams delivered client->server, server->client */
    uint64_t         bytes[2];        /* bytes delivered, same order */
    uint64_t         drops;           /* queue overflows */
    bool             gso_off[2];      /* a UDP_SEGMENT send was refused this way: one by one */
    uint32_t         fins;            /* final datagrams received from the client */
    uint32_t         fins_answered;   /* of those, answered from the kept report */
    uint32_t         icmp;            /* ICMP errors absorbed on this flow's socket */
    uint32_t         late_reports;    /* iperf2: server datagrams after the report, absorbed */
};

/* A service's UDP side: its listener and its flows. */
struct udp_state {
    struct service *svc;         /* owner */
    const struct service_config *cfg; /* svc->cfg */
    struct ev_loop *loop;        /* svc->loop */
    int             fd;          /* the listening socket */
    int             family;      /* its address family */
    ev_io           rd, wr;      /* readable; writable while flows wait */
    struct udp_flow *hash[HASH_BUCKETS]; /* live flows by client address */
    struct udp_flow *waiting;    /* flows with datagrams queued toward clients */
    struct udp_flow *detached;   /* flows replaced by a new test from the same address */
    int             nflows;      /* flows alive, detached ones included */
    struct udp_counters ctr;     /* what the operator sees at exit */
    ev_tstamp       last_full_log; /* rate limit for "table full" */
    struct log_rate junk_log;    /* rate limit for "datagram dropped" */
    struct log_rate nosock_log;  /* rate limit for "no socket for a UDP flow" */
};

/* One batch of datagrams: buffers shared by every read and send of the
 * process (single-threaded; a batch is consumed before the next read). */
struct udp_batch {
    uint8_t                 bufs[BATCH][DGRAM_MAX];
    struct iovec            iovs[BATCH];
    struct mmsghdr          msgs[BATCH];    /* received datagrams; msg_len = length */
    struct sockaddr_storage names[BATCH];   /* their sources */
    union { struct cmsghdr align; uint8_t b[128]; } cbufs[BATCH];   /* their pktinfo */
    struct mmsghdr          outs[BATCH];    /* a sendmmsg batch */
};
extern struct udp_batch udp_batch;

/* ---- udp_flow.c: the flow table */

/* The live (not detached) flow of a client address and destination, or
 * NULL.  dest has family 0 outside --transparent (the client alone is the key). */
struct udp_flow *udp_flow_lookup(const struct udp_state *u,
                                 const struct sockaddr_storage *client,
                                 const struct sockaddr_storage *dest);
/* Adds a new flow to u's table and starts its linger timer. */
void udp_flow_insert(struct udp_state *u, struct udp_flow *f);
/* Takes a flow out of the lookup: it lingers on, absorbing what the server
 * still sends for the old test, while a new flow serves the new one. */
void udp_flow_detach(struct udp_flow *f);
/* Logs the flow's line, closes its sockets and frees it. */
void udp_flow_free(struct udp_flow *f);
/* "1.2.3.4:5" of the flow's client, in buf (ADDR_STR_MAX). */
const char *udp_flow_client_str(const struct udp_flow *f, char *buf);

/* ---- udp_io.c: moving datagrams */

/* Gives a UDP socket of the shim SOCKBUF bytes of receive and send buffer:
 * beyond net.core.rmem_max/wmem_max where the process may (CAP_NET_ADMIN),
 * else as much as they allow. */
void udp_sockbufs(int fd);
/* The address a received datagram was sent to, from its pktinfo (family 0 if unknown). */
void udp_local_from_cmsg(const struct udp_state *u, struct msghdr *mh,
                         struct sockaddr_storage *local);
/* Sends one datagram of f toward dir (0: the server, 1: the client), or
 * queues it behind those already waiting; a full queue drops it (counted). */
void udp_deliver(struct udp_flow *f, int dir, const uint8_t *data, size_t len);
/* Sends udp_batch.bufs[0..n) (lengths in msgs[]) to f's client in one
 * sendmmsg; what the socket does not take is queued. */
void udp_send_batch_to_client(struct udp_flow *f, int n);
/* Sends udp_batch.bufs[start..start+n) to f's server likewise (f may be NULL: no-op). */
void udp_send_batch_to_server(struct udp_flow *f, int start, int n);
/* Writable callbacks: the listener (flows waiting to reach their clients),
 * a flow's connected client socket, a flow's upstream socket. */
void udp_listener_writable_cb(struct ev_loop *loop, ev_io *w, int revents);
void udp_client_writable_cb(struct ev_loop *loop, ev_io *w, int revents);
void udp_upstream_writable_cb(struct ev_loop *loop, ev_io *w, int revents);
/* Drops every datagram of a queue. */
void udp_dgq_clear(struct dgq *q);

/* ---- udp_transparent.c: --transparent (the original destination as upstream) */

/* Asks the kernel for each datagram's original destination on a UDP socket
 * (IP_RECVORIGDSTADDR, and IPV6_RECVORIGDSTADDR on IPv6).  Returns 0 or -1. */
int  udp_tp_want_origdst(int fd, int family);
/* The original destination of a received datagram (address and port), in
 * family (an IPv4 one v4-mapped for an IPv6 socket).  Returns 0, or -1 if
 * the datagram carried none. */
int  udp_tp_dest_from_cmsg(struct msghdr *mh, int family, struct sockaddr_storage *dest);
/* f's upstream socket toward f->dest, connected; with --transparent-source
 * bound to f's client address first; marked with --transparent-mark.  Sets
 * f->server.  Returns the socket, or -1 with errno. */
int  udp_tp_upstream_socket(struct udp_flow *f);
/* f's client-facing socket: bound to f->dest, connected to f->client, with
 * IP_TRANSPARENT, marked with --transparent-mark.  Returns the socket, or -1
 * with errno. */
int  udp_tp_client_socket(const struct udp_flow *f);

/* ---- udp_iperf2.c: iperf2 UDP tests */

/* A datagram from an iperf2 client (rewritten in place for -d/-r).  Returns
 * true if it goes on to the server, false if it was answered here (a repeat
 * of the final datagram, answered from the report already relayed). */
bool udp_i2_from_client(struct udp_flow *f, uint8_t *data, size_t len);
/* n datagrams from the server are in udp_batch: keeps the first Server
 * Report, absorbs what must not travel toward a closing client port.
 * Returns how many of the n go on to the client. */
int  udp_i2_from_server(struct udp_flow *f, int n);
/* Does this datagram start a new iperf2 test on the address of flow f
 * (a datagram that is not a final one after the final ones began)? */
bool udp_i2_restarts(const struct udp_flow *f, const uint8_t *d, size_t len);
/* -u -d/-r: opens the connect-back port on the address the server sees.
 * Without it the test still runs one way, and the log says why. */
void udp_i2_open_back(struct udp_flow *f);

#endif
