/*
 * iperf3 tests, internals shared by their files (the proxy's interface is
 * proxy/iperf3.h):
 *
 *   iperf3.c        a test's lifetime and its control connection: accept,
 *                   parameters, server states, limits, the test's line
 *   iperf3_data.c   data connections: upstream connections in order, roles
 *                   learned from the traffic, --bidir pairing, data relays
 *   iperf3_fence.c  the end-of-test fence on the client's TEST_END
 *   iperf3_ids.c    per-stream results: stream ids renumbered both ways
 */
#ifndef IPERF_SHIM_PROXY_IPERF3_TEST_H
#define IPERF_SHIM_PROXY_IPERF3_TEST_H

#include "compat/iperf3_compat.h"
#include "protocol/iperf3_params.h"
#include "protocol/iperf3_roles.h"
#include "protocol/stream_order.h"
#include "protocol/iperf3_results.h"
#include "proxy/connect.h"
#include "proxy/end_reason.h"
#include "proxy/front.h"
#include "proxy/iperf3.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/pool.h"
#include "proxy/relay.h"
#include "proxy/service.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262   /* linux/in.h, Linux 5.6+ */
#endif

#define I3_MAX_LEGS (2 * I3_MAX_PARALLEL)  /* data connections per side and test */
#define HOLD_MAX    (64u * 1024u)          /* bytes held per connection while roles are learned */

#define FENCE_POLL  0.001                  /* s: end-of-test fence checks the data this often */
#define DATA_RCVBUF (512 * 1024)           /* SO_RCVBUF of data legs (the kernel doubles it):
                                              see data_leg_buffers */
#define DATA_NOTSENT_BUDGET (8 * 1024 * 1024) /* unsent bytes per direction of a test,
                                              shared by its streams: data_leg_buffers */
#define DATA_NOTSENT_MIN (1024 * 1024)     /* TCP_NOTSENT_LOWAT of a data leg at least */
#define DATA_RATE_BOUND 10e9               /* bit/s: a path is capped only if DATA_RCVBUF
                                              carries this much over its RTT */
#define ACK_POLL    0.001                  /* s: a new upstream data connection is checked for
                                              its cookie's ACK this often */

/* How long the path toward one side is, judged once per test and side from
 * the lowest RTT measured (see side_path_long in iperf3_data.c). */
enum path_len {
    PATH_UNJUDGED = 0,  /* no data connection on that side yet */
    PATH_SHORT,         /* DATA_RCVBUF carries DATA_RATE_BOUND (or RTT unknown) */
    PATH_LONG,          /* a WAN, a VPN: no receive cap, data toward it copied */
};

/* End-of-test fence: the client's TEST_END (or CLIENT_TERMINATE) is held on
 * the control relay until the server has acknowledged every data byte the
 * client sent before it (see fence_begin). */
enum fence_state {
    FENCE_NONE = 0,     /* not started (no TEST_END yet, UDP, or --fence-timeout 0) */
    FENCE_HOLDING,      /* TEST_END held, data being flushed */
    FENCE_DONE,         /* everything acknowledged; TEST_END passed on */
    FENCE_TIMED_OUT,    /* --fence-timeout hit; TEST_END passed on anyway */
};

/* Where a test's control connection is.  A server of the pool is asked
 * first (connect, cookie, its first byte); ACCESS_DENIED or a failure
 * moves on to the next free one; with none free the client waits:
 *
 *   CONNECTING ──connected, cookie sent──> ASKING ──PARAM_EXCHANGE──> RELAYING ──> DONE
 *       ^   └──failed──┐          └──ACCESS_DENIED / no answer──┐
 *       └──────────────┴──── next free server <─────────────────┘
 *                             none free: QUEUED ──woken──> (next free server)
 *                                           └──timeout / full / client left──> DONE
 * (While it is before RELAYING, the test is TEST_CONNECTING.)
 */
enum ctrl_phase {
    CTRL_CONNECTING = 0,  /* connecting to a pool member */
    CTRL_ASKING,          /* cookie sent, waiting for the member's first byte */
    CTRL_QUEUED,          /* every member busy: waiting in the pool's queue */
    CTRL_RELAYING,        /* the control relay runs */
    CTRL_DONE,            /* control connection finished */
};

/* Where a test is.  Data connections and their relays live beside the
 * control connection: a test is freed once it is TEST_CLOSED and they are
 * gone too (test_maybe_free). */
enum test_state {
    TEST_CONNECTING = 0,  /* upstream control connect in progress; cfd is the client */
    TEST_SETUP,           /* control relayed: parameters, stream creation */
    TEST_RUNNING,         /* the server said TEST_RUNNING */
    TEST_ENDING,          /* the client sent TEST_END: fence, results exchange */
    TEST_CLOSED,          /* the control connection is finished (ctrl NULL, cfd -1) */
};


/* A results JSON block held on one direction of the control relay while it
 * is read, to renumber its stream entries (see results_finish). */
enum res_state {
    RES_IDLE = 0,   /* not held */
    RES_COLLECT,    /* held: the block's bytes are being collected */
    RES_DONE,       /* passed on (rewritten or as it was) */
};

struct res_block {
    enum res_state state;   /* see enum res_state */
    uint8_t       *buf;     /* the block as read: 4-byte length, then the JSON */
    size_t         len;     /* bytes in buf */
    size_t         cap;     /* allocated size of buf */
};

/* One data connection on one side, before it is paired and relayed. */
struct leg {
    struct test      *t;          /* owning test */
    int               side;       /* SIDE_CLIENT or SIDE_SERVER */
    int               index;      /* arrival order on its side (client) / opening order (server) */
    int               fd;         /* socket, -1 while the upstream connect is in progress */
    enum i3_role         role;       /* learned from traffic in --bidir */
    bool              ready;      /* client: accepted; server: connected and cookie sent */
    bool              eof;        /* the peer closed while the connection was held */
    ev_io             io;         /* reads while held */
    struct connector  conn;       /* server legs: connect in progress */
    ev_timer          ack_timer;  /* server legs: waits for the server's ACK of the cookie */
    ev_tstamp         opened;     /* server legs: when the connect started */
    uint8_t          *hold;       /* bytes read while held (HOLD_MAX), NULL if none */
    size_t            held;       /* bytes in hold */
    struct sockaddr_storage peer; /* client: the client's address; server: our local address */
};

/* One iperf3 test. */
struct test {
    struct test      *next;               /* the service's list of live tests */
    struct service   *svc;                /* the service that took it */
    struct ev_loop   *loop;
    uint8_t           cookie[I3_COOKIE_SIZE];
    char              id[9];              /* first cookie characters, for logs */
    struct sockaddr_storage client;       /* client address of the control connection */
    struct sockaddr_storage server;       /* the server it is relayed to (kept across reloads) */
    socklen_t         server_len;         /* its length */
    int               cfd;                /* client control fd until its relay exists */
    struct connector  ctrl_conn;          /* upstream control connect */
    enum ctrl_phase   phase;              /* see enum ctrl_phase */
    int               ufd;                /* CTRL_ASKING: the member's connection, else -1 */
    ev_io             ask_io;             /* CTRL_ASKING: the member's first byte */
    ev_timer          wait_timer;         /* CTRL_ASKING: answer bound; QUEUED: --queue-timeout */
    ev_io             client_io;          /* CTRL_QUEUED: notices the client leaving */
    struct pool_waiter waiter;            /* CTRL_QUEUED: place in the queue (since: 0 never) */
    uint64_t          tried;              /* members asked since the last queuing (bit i) */
    int               last_err;           /* errno of the last failed connect to a member */
    bool              forced;             /* no queue: sent to a busy member, its answer stands */
    bool              direct;             /* --transparent: server is what the client addressed,
                                             not a pool member; asked once, its answer stands */
    bool              last_denied;        /* the last member asked answered ACCESS_DENIED */
    bool              streams_held;       /* UDP: the server's CREATE_STREAMS is held back
                                             while another UDP test of the host creates its
                                             streams (they carry no cookie) */
    bool              member_held;        /* counted in its member's tests (pool3) */
    double            queued_for;         /* s: time spent in the queue before a member took it */
    enum test_state   state;              /* see enum test_state */
    struct relay     *ctrl;               /* control relay, NULL before/after */
    enum relay_end    ctrl_end;           /* how it finished */
    struct i3_ctrl    parser;             /* control channel observer */
    struct i3_params  params;             /* from the client's parameters */
    bool              have_params;        /* params valid */
    int8_t            server_state;       /* last state byte from the server */
    bool              denied;             /* ACCESS_DENIED seen */
    bool              server_error;       /* SERVER_ERROR seen */
    int32_t           err_code, err_errno;/* its codes */
    bool              results_seen;       /* the server's results JSON went by */
    uint32_t          params_len;         /* length of the client's parameters JSON */
    bool              err_after_results;  /* SERVER_ERROR came after those results */
    bool              paired;             /* --bidir: roles decided, pairs relayed */
    bool              fallback;           /* --bidir: pairs made in arrival order */
    int               repaired;           /* pairs whose roles had to be re-matched */
    struct leg       *legs[2][I3_MAX_LEGS]; /* held data connections, NULL once relayed */
    int               nlegs[2];           /* connections seen per side */
    int               live_legs;          /* legs allocated */
    int               next_open;          /* next server leg to connect (one at a time) */
    bool              opening;            /* a server leg is connecting or awaiting its ACK */
    double            open_wait;          /* s: connect + cookie ACK, summed over server legs */
    struct relay     *relays[I3_MAX_LEGS];/* data relays, NULL once finished */
    int               pair_leg[I3_MAX_LEGS][2]; /* relay i: index of its client and server leg */
    struct so_conn    cl_seen[I3_MAX_LEGS];     /* client leg k: accept order, port, handshake
                                                   RTT, accept and cookie times */
    uint64_t          pair_bytes[I3_MAX_LEGS][2]; /* relay i: data bytes per flow, once ended */
    uint64_t          pair_s2c_end[I3_MAX_LEGS];  /* relay i: server->client bytes the client had
                                                     acknowledged at its TEST_END */
    bool              s2c_snapped;        /* pair_s2c_end was taken */
    enum path_len     path[2];            /* per side: its path, once judged */
    int               nrelays;            /* relays created */
    int               live_relays;        /* relays still running */
    ev_timer          role_timer;         /* --role-timeout after TEST_RUNNING */
    ev_timer          params_timer;       /* --handshake-timeout for the client's parameters */
    ev_timer          limit_timer;        /* --max-duration: ends a refused test, or one that
                                             runs past the limit */
    bool              refused;            /* refused for --max-duration (SERVER_ERROR 37 sent) */
    int               busy;               /* > 0 while iterating: defer freeing */
    bool              in_inspect;         /* inside the control relay's inspect hook */
    const char       *failure;            /* why the shim closed the test, NULL if it did not */
    struct end_reason end;                /* socket-level cause of its end, if any */
    const char       *server_gone;        /* how the server left before the end of the test
                                             (logged), NULL if it did not */
    bool              client_quit;        /* the client ended first (CLIENT_TERMINATE, FIN) */
    uint64_t          bytes[2];           /* data bytes delivered c2s, s2c */
    uint64_t          ctrl_bytes[2];      /* control bytes delivered c2s, s2c */
    struct activity   act;                /* shared by all relays of the test */
    time_t            started;            /* wall clock at the control connection */
    ev_tstamp         t0;                 /* ev_now() then */
    enum fence_state  fence;              /* end-of-test fence on the client's TEST_END */
    int8_t            fence_msg;          /* the state byte it holds */
    ev_timer          fence_timer;        /* polls the data relays while it holds */
    ev_tstamp         fence_start;        /* ev_now() when it began */
    ev_tstamp         fence_acked;        /* when the server had acknowledged everything
                                             (0: not yet) */
    ev_tstamp         running_at;         /* ev_now() at TEST_RUNNING */
    double            fence_ms;           /* how long the state byte was held */
    uint64_t          fence_base;         /* client->server data bytes delivered when it began */
    uint64_t          fence_flushed;      /* client->server data bytes delivered while it held */
    uint64_t          fence_left;         /* bytes still unacknowledged when it timed out */
    struct res_block  res[2];             /* results JSON held: [FLOW_C2S] client's, [FLOW_S2C]
                                             server's */
    int               res_n;              /* stream entries in the id mapping */
    int64_t           res_cid[I3_RESULTS_MAX_STREAMS]; /* client's stream id of entry k */
    int64_t           res_sid[I3_RESULTS_MAX_STREAMS]; /* server's id of the stream it met */
    bool              res_by_order;       /* entries mapped by the client's creation order */
    enum so_source    res_how;            /* how that order was known, when res_by_order */
    char              res_order_why[192]; /* why it was not, else "" */
    char              res_note[512];      /* what became of the per-stream results, for the
                                             test line ("" if nothing was tried) */
};

static inline char *addr_s(const struct sockaddr_storage *ss, char *buf)
{
    return net_addr_str((const struct sockaddr *)ss, buf, ADDR_STR_MAX);
}

/* Where t's upstream connections come from: the client's address with
 * --transparent-source, else NULL (the kernel's choice). */
static inline const struct sockaddr_storage *i3_upstream_source(const struct test *t)
{
    return t->direct && t->svc->cfg.transparent_source ? &t->client : NULL;
}

/* --bidir TCP before pairing: data connections are held until roles are known. */
static inline bool hold_mode(const struct test *t)
{
    return t->have_params && t->params.bidir && t->params.proto == I3_PROTO_TCP && !t->paired;
}

/* ---- iperf3.c: test lifetime and control */
void server_left(struct test *t, const char *how);
void test_fail(struct test *t, const char *why);
void test_maybe_free(struct test *t);
long ctrl_min_rtt_us(const struct test *t, int side);

/* ---- iperf3_data.c: data connections, upstream order, roles and pairing */
void data_new(struct test *t, int fd, const struct sockaddr_storage *peer,
              const struct front_arrival *arr);
void leg_free(struct leg *l, bool close_fd, bool reset);
void role_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);
void try_pair(struct test *t);
void upstream_open_next(struct test *t);

/* ---- iperf3_fence.c: the end-of-test fence */
void fence_begin(struct test *t, size_t at, int8_t st);
const char *fence_text(const struct test *t, char *buf, size_t n);
void fence_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- iperf3_ids.c: per-stream results renumbered */
void results_hold(struct test *t, int d);
void results_on_event(struct test *t, int d, const struct i3_event *ev,
                             const uint8_t *buf, size_t end);
void results_snapshot(struct test *t);

#endif
