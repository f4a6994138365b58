#include "proxy/iperf3.h"

#include "compat/iperf3_compat.h"

#include "proxy/connect.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/relay.h"
#include "proxy/service.h"
#include "protocol/iperf3_results.h"

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
                                              see data_leg_rcvbuf */
#define ACK_POLL    0.001                  /* s: a new upstream data connection is checked for
                                              its cookie's ACK this often */

enum role { ROLE_UNKNOWN = 0, ROLE_SENDER, ROLE_RECEIVER };

/* Where a test's control connection is.  A server of the pool is asked
 * first (connect, cookie, its first byte); ACCESS_DENIED or a failure
 * moves on to the next free one; with none free the client waits:
 *
 *   CONNECTING ──connected, cookie sent──> ASKING ──PARAM_EXCHANGE──> RELAYING ──> DONE
 *       ^   └──failed──┐          └──ACCESS_DENIED / no answer──┐
 *       └──────────────┴──── next free server <─────────────────┘
 *                             none free: QUEUED ──woken──> (next free server)
 *                                           └──timeout / full / client left──> DONE
 */
enum ctrl_phase {
    CTRL_CONNECTING = 0,  /* connecting to a pool member */
    CTRL_ASKING,          /* cookie sent, waiting for the member's first byte */
    CTRL_QUEUED,          /* every member busy: waiting in the pool's queue */
    CTRL_RELAYING,        /* the control relay runs */
    CTRL_DONE,            /* control connection finished (ctrl_done) */
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

struct test;
static void upstream_open_next(struct test *t);

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
    enum role         role;       /* learned from traffic in --bidir */
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
    enum ctrl_phase   phase;              /* see the diagram above */
    int               ufd;                /* CTRL_ASKING: the member's connection, else -1 */
    ev_io             ask_io;             /* CTRL_ASKING: the member's first byte */
    ev_timer          wait_timer;         /* CTRL_ASKING: answer bound; QUEUED: --queue-timeout */
    ev_io             client_io;          /* CTRL_QUEUED: notices the client leaving */
    struct pool_waiter waiter;            /* CTRL_QUEUED: place in the queue (since: 0 never) */
    uint64_t          tried;              /* members asked since the last queuing (bit i) */
    bool              forced;             /* no queue: sent to a busy member, its answer stands */
    bool              last_denied;        /* the last member asked answered ACCESS_DENIED */
    bool              streams_held;       /* UDP: the server's CREATE_STREAMS is held back
                                             while another UDP test of the host creates its
                                             streams (they carry no cookie) */
    bool              member_held;        /* counted in its member's tests (pool3) */
    double            queued_for;         /* s: time spent in the queue before a member took it */
    struct relay     *ctrl;               /* control relay, NULL before/after */
    bool              ctrl_done;          /* control connection finished */
    enum relay_end    ctrl_end;           /* how it finished */
    struct i3_ctrl    parser;             /* control channel observer */
    struct i3_params  params;             /* from the client's parameters */
    bool              have_params;        /* params valid */
    int8_t            server_state;       /* last state byte from the server */
    bool              running;            /* TEST_RUNNING seen */
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
    uint64_t          cl_seq[I3_MAX_LEGS];      /* client leg k: accept order (front) */
    uint32_t          cl_rtt[I3_MAX_LEGS];      /* client leg k: handshake RTT, us (0: unknown) */
    uint32_t          cl_retrans[I3_MAX_LEGS];  /* client leg k: SYN-ACKs retransmitted */
    uint64_t          pair_bytes[I3_MAX_LEGS][2]; /* relay i: data bytes per flow, once ended */
    uint64_t          pair_s2c_end[I3_MAX_LEGS];  /* relay i: server->client bytes the client had
                                                     acknowledged at its TEST_END */
    bool              s2c_snapped;        /* pair_s2c_end was taken */
    int               nrelays;            /* relays created */
    int               live_relays;        /* relays still running */
    ev_timer          role_timer;         /* --role-timeout after TEST_RUNNING */
    ev_timer          params_timer;       /* --handshake-timeout for the client's parameters */
    int               busy;               /* > 0 while iterating: defer freeing */
    bool              in_inspect;         /* inside the control relay's inspect hook */
    const char       *failure;            /* why the shim closed the test, NULL if it did not */
    const char       *server_gone;        /* how the server left before the end of the test
                                             (logged), NULL if it did not */
    bool              client_quit;        /* the client ended first (CLIENT_TERMINATE, FIN) */
    bool              client_ended;       /* the client sent TEST_END: streams may close */
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
    bool              res_by_order;       /* entries mapped by the client's accept order */
    char              res_note[256];      /* what became of the per-stream results, for the
                                             test line ("" if nothing was tried) */
};

static char *addr_s(const struct sockaddr_storage *ss, char *buf)
{
    return net_addr_str((const struct sockaddr *)ss, buf, ADDR_STR_MAX);
}

static bool hold_mode(const struct test *t)
{
    return t->have_params && t->params.bidir && t->params.proto == I3_PROTO_TCP && !t->paired;
}

/* ---------------------------------------------------------------- lifetime */

static const char *roles_text(const struct test *t, char *buf, size_t n)
{
    if (!t->have_params || !t->params.bidir)
        snprintf(buf, n, "n/a");
    else if (!t->paired)
        snprintf(buf, n, "never paired");
    else if (t->fallback)
        snprintf(buf, n, "paired in arrival order (roles not learned)");
    else if (t->repaired > 0)
        snprintf(buf, n, "re-paired %d of %d", t->repaired, 2 * t->params.parallel);
    else
        snprintf(buf, n, "as accepted");
    return buf;
}

/* The fence's part of the test line (", end-of-test fence: ..."), or "". */
static const char *fence_text(const struct test *t, char *buf, size_t n)
{
    if (t->fence == FENCE_DONE || t->fence == FENCE_HOLDING)
        snprintf(buf, n, ", end-of-test fence: %" PRIu64 " bytes flushed in %.1f ms",
                 t->fence_flushed, t->fence_ms);
    else if (t->fence == FENCE_TIMED_OUT)
        snprintf(buf, n, ", end-of-test fence timed out after %.1f ms: %" PRIu64 " bytes flushed, "
                 "%" PRIu64 " not acknowledged by the server", t->fence_ms, t->fence_flushed,
                 t->fence_left);
    else
        buf[0] = '\0';
    return buf;
}

static void test_log_end(struct test *t)
{
    char c[ADDR_STR_MAX], s[ADDR_STR_MAX], roles[64], outcome[192];
    const char *what = t->server_error ? i3_error_text(t->err_code) : NULL;
    if (t->denied)
        snprintf(outcome, sizeof(outcome), "server refused the test (ACCESS_DENIED: busy)%s%s",
                 t->failure ? ": " : "", t->failure ? t->failure : "");
    else if (t->server_error && t->err_after_results)   /* 3.21+ cleanup_server */
        snprintf(outcome, sizeof(outcome), "test completed; server sent SERVER_ERROR %" PRId32
                 " (%s, errno %" PRId32 ") after the results", t->err_code,
                 what ? what : "unknown code", t->err_errno);
    else if (t->server_error && t->err_code == I3_ERR_RECVPARAMS && t->params_len > I3_PARAMS_CAP_318)
        snprintf(outcome, sizeof(outcome), "server error %" PRId32 " (errno %" PRId32 "): %s "
                 "(%" PRIu32 " bytes of them; iperf3 3.18+ servers accept %u)", t->err_code,
                 t->err_errno, what, t->params_len, I3_PARAMS_CAP_318);
    else if (t->server_error)
        snprintf(outcome, sizeof(outcome), "server error %" PRId32 " (errno %" PRId32 "): %s",
                 t->err_code, t->err_errno, what ? what : "unknown code");
    else if (t->failure)
        snprintf(outcome, sizeof(outcome), "closed by the shim: %s", t->failure);
    else if (t->server_gone)
        snprintf(outcome, sizeof(outcome), "the server %s", t->server_gone);
    else
        snprintf(outcome, sizeof(outcome), "control %s", relay_end_str(t->ctrl_end));
    char bytes[96];
    if (t->have_params && t->params.proto == I3_PROTO_UDP)
        snprintf(bytes, sizeof(bytes),
                 "data over UDP (counted on each stream's \"iperf3 UDP stream\" line)");
    else
        snprintf(bytes, sizeof(bytes), "bytes client->server %" PRIu64 ", server->client %"
                 PRIu64, t->bytes[0], t->bytes[1]);
    char fence[128];
    log_info("test %s: client %s, server %s, mode %s, streams %d%s, roles %s, %s, %s%s%s%s, "
             "queued %.1f s", t->id, addr_s(&t->client, c),
             t->server_len ? addr_s(&t->server, s) : "none",
             t->have_params ? i3_params_mode(&t->params) : "unknown",
             t->have_params ? t->params.parallel : t->nlegs[SIDE_CLIENT],
             t->have_params && t->params.bidir ? " each way" : "",
             roles_text(t, roles, sizeof(roles)), bytes, outcome,
             fence_text(t, fence, sizeof(fence)), t->res_note[0] ? ", results: " : "",
             t->res_note, t->queued_for);
}

/* The test as the status page and the stats see it. */
static void test_info(const struct test *t, struct test_info *i)
{
    static const char *const proto[] = { "tcp", "udp", "sctp" };
    memset(i, 0, sizeof(*i));
    memcpy(i->id, t->id, sizeof(t->id));
    i->protocol = "iperf3";
    i->transport = t->have_params && (unsigned)t->params.proto <= I3_PROTO_SCTP
                       ? proto[t->params.proto] : "tcp";
    i->mode = !t->have_params ? "unknown" : t->params.bidir ? "bidir"
              : t->params.reverse ? "reverse" : "normal";
    i->client = t->client;
    i->server = t->server;
    i->started = t->started;
    i->seconds = ev_now(t->loop) - t->t0;
    i->bytes[0] = t->bytes[0];
    i->bytes[1] = t->bytes[1];
    for (int k = 0; k < t->nrelays; k++) {   /* data relays still running */
        if (t->relays[k]) {
            i->bytes[0] += t->relays[k]->f[FLOW_C2S].bytes;
            i->bytes[1] += t->relays[k]->f[FLOW_S2C].bytes;
        }
    }
    i->repaired = t->repaired;
    i->ok = !t->denied && !t->server_error && t->failure == NULL;
    if (!t->ctrl_done)
        snprintf(i->outcome, sizeof(i->outcome), "%s", t->running ? "running" : "starting");
    else if (t->denied)
        snprintf(i->outcome, sizeof(i->outcome), "server busy (ACCESS_DENIED)");
    else if (t->server_error)
        snprintf(i->outcome, sizeof(i->outcome), "server error %d", (int)t->err_code);
    else if (t->failure)
        snprintf(i->outcome, sizeof(i->outcome), "%s", t->failure);
    else
        snprintf(i->outcome, sizeof(i->outcome), "control %s", relay_end_str(t->ctrl_end));
}

void i3_running(const struct service *svc, test_info_fn fn, void *arg)
{
    struct test_info i;
    for (const struct test *t = svc->tests; t; t = t->next) {
        test_info(t, &i);
        fn(arg, &i);
    }
}

/* Stops whatever the pre-relay phases run: the connect, the wait for the
 * member's answer (its connection closed), the queue. */
static void ctrl_stop_trying(struct test *t)
{
    connector_cancel(&t->ctrl_conn);
    ev_io_stop(t->loop, &t->ask_io);
    ev_io_stop(t->loop, &t->client_io);
    ev_timer_stop(t->loop, &t->wait_timer);
    pool_dequeue(&t->svc->pool3, &t->waiter);
    if (t->ufd >= 0) {
        close(t->ufd);
        t->ufd = -1;
    }
}

/* The member is free again as far as this test is concerned. */
static void test_release_member(struct test *t)
{
    if (t->member_held) {
        t->member_held = false;
        pool_release_iperf3(&t->svc->pool3, &t->server);
    }
}

static bool pre_relay(const struct test *t)
{
    return t->phase == CTRL_CONNECTING || t->phase == CTRL_ASKING || t->phase == CTRL_QUEUED;
}

/* Frees the test once nothing of it is alive. */
static void test_maybe_free(struct test *t)
{
    if (t->busy > 0 || !t->ctrl_done || t->live_legs > 0 || t->live_relays > 0)
        return;
    ctrl_stop_trying(t);
    test_release_member(t);
    test_log_end(t);
    struct test_info info;
    test_info(t, &info);
    stats_test_ended(&t->svc->stats, &info);
    for (struct test **pp = &t->svc->tests; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    ev_timer_stop(t->loop, &t->role_timer);
    ev_timer_stop(t->loop, &t->params_timer);
    ev_timer_stop(t->loop, &t->fence_timer);
    free(t->res[FLOW_C2S].buf);
    free(t->res[FLOW_S2C].buf);
    i3_ctrl_free(&t->parser);
    t->svc->ntests--;
    free(t);
}

static void leg_free(struct leg *l, bool close_fd, bool reset)
{
    struct test *t = l->t;
    ev_io_stop(t->loop, &l->io);
    ev_timer_stop(t->loop, &l->ack_timer);
    connector_cancel(&l->conn);
    if (close_fd && l->fd >= 0) {
        if (reset)
            net_close_reset(l->fd);
        else
            close(l->fd);
    }
    t->legs[l->side][l->index] = NULL;
    t->live_legs--;
    free(l->hold);
    free(l);
}

/* Ends a test the shim cannot carry on: everything of it is reset. */
static void test_fail(struct test *t, const char *why)
{
    if (t->failure == NULL) {
        t->failure = why;
        log_warn("test %s: %s: closing the test", t->id, why);
    }
    t->busy++;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < t->nlegs[s]; i++)
            if (t->legs[s][i])
                leg_free(t->legs[s][i], true, true);
    for (int i = 0; i < t->nrelays; i++)
        if (t->relays[i])
            relay_abort(t->relays[i], true);
    if (t->ctrl && !t->in_inspect)   /* from inside, ctrl_inspect ends it */
        relay_abort(t->ctrl, true);
    if (pre_relay(t)) {
        ctrl_stop_trying(t);
        net_close_reset(t->cfd);
        t->cfd = -1;
        t->phase = CTRL_DONE;
        t->ctrl_done = true;
    }
    t->busy--;
    test_maybe_free(t);
}

/* The server ended the control connection, or reset a data connection
 * before the client's TEST_END (how: what it did).  Before DISPLAY_RESULTS,
 * and without a refusal or an error it announced, that is a server that died
 * or gave up during the test: logged once, with the test, the server and the
 * last state.  The relays pass the close on to the client at once, as a FIN
 * or a reset, whichever the server sent. */
static void server_left(struct test *t, const char *how)
{
    char s[ADDR_STR_MAX];
    if (t->server_gone != NULL || t->denied || t->server_error || t->client_quit ||
        t->server_state == I3_DISPLAY_RESULTS)
        return;
    t->server_gone = how;
    log_warn("test %s: server %s %s (last state from the server: %s)", t->id,
             addr_s(&t->server, s), how,
             t->server_state == 0 ? "none" : i3_state_name(t->server_state));
}

/* ------------------------------------------------------------ data relays */

static void data_done(void *arg, struct relay *r, enum relay_end how)
{
    struct test *t = arg;
    t->bytes[FLOW_C2S] += r->f[FLOW_C2S].bytes;
    t->bytes[FLOW_S2C] += r->f[FLOW_S2C].bytes;
    /* the server closes its streams only after the client's TEST_END */
    if (r->err_side == SIDE_SERVER && !t->client_ended &&
        (how == RELAY_END_RESET || how == RELAY_END_ERROR || r->reset_absorbed))
        server_left(t, "reset a data connection during the test");
    for (int i = 0; i < t->nrelays; i++) {
        if (t->relays[i] == r) {
            t->relays[i] = NULL;
            t->pair_bytes[i][FLOW_C2S] = r->f[FLOW_C2S].bytes;
            t->pair_bytes[i][FLOW_S2C] = r->f[FLOW_S2C].bytes;
        }
    }
    log_debug("test %s: data stream ended (%s), %" PRIu64 " bytes client->server, %" PRIu64
              " server->client", t->id, relay_end_str(how), r->f[FLOW_C2S].bytes,
              r->f[FLOW_S2C].bytes);
    relay_free(r);
    t->live_relays--;
    test_maybe_free(t);
}

/* Relays a client leg to a server leg, delivering held bytes first.  Both
 * legs are consumed. */
static void start_pair(struct test *t, struct leg *cl, struct leg *sl)
{
    struct relay_opts o = {
        .splice = t->svc->cfg.use_splice, .idle = t->svc->cfg.idle_timeout, .activity = &t->act,
        .done = data_done, .arg = t,
    };
    if (t->nrelays >= I3_MAX_LEGS) {
        test_fail(t, "too many data connections");
        return;
    }
    struct relay *r = relay_new(t->loop, cl->fd, sl->fd, &o);
    if (r == NULL || relay_preload(r, FLOW_C2S, cl->hold, cl->held) == -1 ||
        relay_preload(r, FLOW_S2C, sl->hold, sl->held) == -1) {
        if (r) {
            r->fd[0] = r->fd[1] = -1;   /* the legs still own their fds */
            relay_free(r);
        }
        test_fail(t, "out of memory starting a data relay");
        return;
    }
    t->pair_leg[t->nrelays][SIDE_CLIENT] = cl->index;
    t->pair_leg[t->nrelays][SIDE_SERVER] = sl->index;
    t->relays[t->nrelays++] = r;
    t->live_relays++;
    leg_free(cl, false, false);
    leg_free(sl, false, false);
    t->busy++;
    relay_start(r);
    t->busy--;
}

static const char *role_name(enum role r)
{
    return r == ROLE_SENDER ? "sender" : r == ROLE_RECEIVER ? "receiver" : "unknown";
}

/* Pairs every remaining ready leg in arrival order (no roles needed). */
static void pair_by_order(struct test *t)
{
    t->busy++;
    for (int i = 0; i < t->nlegs[SIDE_CLIENT] && i < t->nlegs[SIDE_SERVER]; i++) {
        struct leg *cl = t->legs[SIDE_CLIENT][i], *sl = t->legs[SIDE_SERVER][i];
        if (cl && sl && sl->ready)
            start_pair(t, cl, sl);
    }
    t->busy--;
}

/* --bidir: pairs client senders with server receivers and client receivers
 * with server senders, each group in arrival order. */
static void pair_by_role(struct test *t)
{
    struct leg *by[2][3][I3_MAX_PARALLEL];   /* [side][role][k] */
    int n[2][3] = { { 0 } };
    char who[ADDR_STR_MAX];

    int want = 2 * t->params.parallel;   /* try_pair() checked these all exist */
    /* connections beyond the 2P the client announced stay held until the test ends */
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < want; i++) {
            struct leg *l = t->legs[s][i];
            by[s][l->role][n[s][l->role]++] = l;
        }
    enum role met[I3_MAX_LEGS];   /* role of the server leg opened for client leg i */
    for (int i = 0; i < want; i++)
        met[i] = t->legs[SIDE_SERVER][i]->role;
    t->paired = true;
    t->busy++;
    for (int k = 0; k < t->params.parallel; k++) {
        struct leg *pairs[2][2] = {
            { by[SIDE_CLIENT][ROLE_SENDER][k], by[SIDE_SERVER][ROLE_RECEIVER][k] },
            { by[SIDE_CLIENT][ROLE_RECEIVER][k], by[SIDE_SERVER][ROLE_SENDER][k] },
        };
        for (int p = 0; p < 2; p++) {
            struct leg *cl = pairs[p][0], *sl = pairs[p][1];
            if (cl->index != sl->index) {
                t->repaired++;
                log_info("bidir roles fixed: client %s %s -> server %s (test %s: in arrival "
                         "order it would have met a server %s)", role_name(cl->role),
                         addr_s(&cl->peer, who), role_name(sl->role), t->id,
                         role_name(met[cl->index]));
            }
            start_pair(t, cl, sl);
        }
    }
    t->busy--;
}

/* Decides roles when enough is known; pairs when both sides are decided. */
static void try_pair(struct test *t)
{
    if (!hold_mode(t) || !t->running)
        return;
    int P = t->params.parallel, want = 2 * P, senders[2] = { 0, 0 };
    for (int s = 0; s < 2; s++) {
        if (t->nlegs[s] < want)
            return;
        for (int i = 0; i < want; i++) {
            struct leg *l = t->legs[s][i];
            if (l == NULL || !l->ready)
                return;
            senders[s] += l->role == ROLE_SENDER;
        }
    }
    if (senders[0] > P || senders[1] > P) {
        log_warn("test %s: more senders than --bidir -P %d allows (client %d, server %d): "
                 "pairing in arrival order", t->id, P, senders[0], senders[1]);
        t->paired = t->fallback = true;
        pair_by_order(t);
        return;
    }
    if (senders[0] < P || senders[1] < P)
        return;   /* wait for more senders to speak */
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < want; i++)
            if (t->legs[s][i]->role == ROLE_UNKNOWN)
                t->legs[s][i]->role = ROLE_RECEIVER;
    ev_timer_stop(t->loop, &t->role_timer);
    pair_by_role(t);
}

static void params_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    /* --handshake-timeout bounds it; old servers would stall everything meanwhile */
    test_fail(t, "the client sent no test parameters in time (the server blocks waiting)");
}

static void role_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    if (!hold_mode(t))
        return;
    int senders[2] = { 0, 0 };
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < t->nlegs[s]; i++)
            if (t->legs[s][i] && t->legs[s][i]->role == ROLE_SENDER)
                senders[s]++;
    log_warn("test %s: bidir roles not learned within %.1f s (senders seen: client %d, server %d "
             "of %d): pairing in arrival order", t->id, t->svc->cfg.role_timeout, senders[0], senders[1],
             t->params.parallel);
    t->paired = t->fallback = true;
    t->busy++;
    pair_by_order(t);
    t->busy--;
    test_maybe_free(t);
}

/* Reads a held leg: the first byte makes it a sender. */
static void leg_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct leg *l = w->data;
    struct test *t = l->t;

    if (l->hold == NULL && (l->hold = malloc(HOLD_MAX)) == NULL) {
        test_fail(t, "out of memory holding a data connection");
        return;
    }
    ssize_t n = read(l->fd, l->hold + l->held, HOLD_MAX - l->held);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == -1) {
        char who[ADDR_STR_MAX];
        log_warn("test %s: %s data connection %s failed while roles were learned: %s", t->id,
                 l->side == SIDE_CLIENT ? "client" : "server", addr_s(&l->peer, who),
                 strerror(errno));
        test_fail(t, "a data connection failed before the test ran");
        return;
    }
    if (n == 0) {
        l->eof = true;
        ev_io_stop(loop, w);
    } else {
        l->held += (size_t)n;
        if (l->role == ROLE_UNKNOWN) {
            l->role = ROLE_SENDER;
            log_debug("test %s: %s stream #%d is a sender", t->id,
                      l->side == SIDE_CLIENT ? "client" : "server", l->index + 1);
        }
        if (l->held == HOLD_MAX)
            ev_io_stop(loop, w);   /* backpressure until it is relayed */
    }
    t->busy++;
    try_pair(t);
    t->busy--;
    test_maybe_free(t);
}

static void leg_hold(struct leg *l)
{
    ev_io_init(&l->io, leg_read_cb, l->fd, EV_READ);
    l->io.data = l;
    ev_io_start(l->t->loop, &l->io);
}

static struct tcp_opts test_tcp_opts(const struct test *t)
{
    struct tcp_opts o = { 0, 0, 0, 0 };
    if (t->have_params) {
        o.mptcp = t->params.mptcp && t->params.proto == I3_PROTO_TCP;
        o.bufsize = t->params.window > 0 && t->params.window < INT32_MAX ? (int)t->params.window : 0;
        o.mss = t->params.mss > 0 && t->params.mss < 65536 ? (int)t->params.mss : 0;
        o.nodelay = t->params.nodelay;
    }
    return o;
}

/* --mptcp (3.19+): says which protocol the first server leg got.  The client
 * legs are TCP: the client's MPTCP connect to the shim's TCP listener falls
 * back to TCP. */
static void log_mptcp(const struct test *t, int fd)
{
    int proto = 0;
    socklen_t len = sizeof(proto);
    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len);
    if (proto == IPPROTO_MPTCP)
        log_info("test %s: client asked for MPTCP: relayed as MPTCP toward the server, as TCP "
                 "on the client side (the shim's listener is TCP)", t->id);
    else
        log_warn("test %s: client asked for MPTCP, but this kernel opens no MPTCP socket "
                 "(sysctl net.mptcp.enabled?): the test runs over TCP on both sides", t->id);
}

/* The server has the connection of server leg sl in its accept queue (it
 * acknowledged the cookie): the leg is ready, and the next one may be opened. */
static void server_leg_accepted(struct leg *sl)
{
    struct test *t = sl->t;
    struct leg *cl = t->legs[SIDE_CLIENT][sl->index];

    ev_timer_stop(t->loop, &sl->ack_timer);
    t->open_wait += ev_now(t->loop) - sl->opened;
    t->opening = false;
    sl->ready = true;
    if (t->have_params && sl->index + 1 == i3_params_stream_count(&t->params))
        log_debug("test %s: %d upstream data connections accepted in order, connect and cookie "
                  "ACK %.1f ms in all", t->id, sl->index + 1, t->open_wait * 1e3);
    if (hold_mode(t)) {
        leg_hold(sl);
        try_pair(t);
    } else if (cl != NULL) {
        start_pair(t, cl, sl);   /* consumes sl */
    }
    if (t->failure == NULL)
        upstream_open_next(t);
}

static void ack_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct leg *sl = w->data;
    struct test *t = sl->t;
    long left = net_unacked(sl->fd);

    t->busy++;
    if (left == 0) {
        server_leg_accepted(sl);
    } else if (left == -1 || ev_now(loop) - sl->opened >= t->svc->cfg.connect_timeout) {
        char s[ADDR_STR_MAX];
        log_warn("test %s: data connection #%d to server %s: %s", t->id, sl->index + 1,
                 addr_s(&t->server, s), left == -1 ? strerror(errno) :
                 "the server did not acknowledge the cookie within --connect-timeout");
        test_fail(t, "a data connection to the server failed");
    }
    t->busy--;
    test_maybe_free(t);
}

/* The cookie of server leg sl is sent: the leg becomes ready once the server
 * acknowledged it.  An ACK of data means the server's side of the handshake
 * is complete, so the connection is in its accept queue, which is FIFO; the
 * next leg is opened only then, so the server accepts (and numbers) the data
 * connections in the order the shim opened them, whatever packets are lost. */
static void server_leg_wait_ack(struct leg *sl)
{
    if (net_unacked(sl->fd) == 0) {
        server_leg_accepted(sl);
        return;
    }
    ev_timer_set(&sl->ack_timer, ACK_POLL, ACK_POLL);
    ev_timer_start(sl->t->loop, &sl->ack_timer);
}

/* Caps the receive buffer of a data connection (either leg) unless the
 * client asked for a window (-w, applied as asked).  Autotuned, each socket
 * that the shim reads from grows to tcp_rmem's maximum (32 MiB here) whenever
 * the shim lags: bytes the sender has counted and nobody has received yet.
 * At the end of a test they are what the fence has to flush (the server
 * sending on meanwhile, in --bidir), and server->client bytes the client will
 * never count.  Measured on loopback (docs/notes.md): with 512 KiB, --bidir
 * -P 8 server->client went from 13.5 points below direct to within 2, -R -P 4
 * from 3.7 to 0.5, the fence from 880 to 140 ms, at no cost in throughput. */
static void data_leg_rcvbuf(const struct test *t, int fd)
{
    int v = DATA_RCVBUF;
    if (t->have_params && t->params.window > 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

static void server_leg_connected(void *arg, int fd, int err)
{
    struct leg *sl = arg;
    struct test *t = sl->t;

    if (fd < 0) {
        char s[ADDR_STR_MAX];
        log_warn("test %s: data connection #%d to server %s failed: %s", t->id, sl->index + 1,
                 addr_s(&t->server, s), strerror(err));
        test_fail(t, "a data connection to the server failed");
        return;
    }
    sl->fd = fd;
    data_leg_rcvbuf(t, fd);
    socklen_t len = sizeof(sl->peer);
    getsockname(fd, (struct sockaddr *)&sl->peer, &len);
    /* forward the cookie at once: old servers block their main loop on it */
    ssize_t n = send(fd, t->cookie, I3_COOKIE_SIZE, MSG_NOSIGNAL);
    if (n != I3_COOKIE_SIZE) {
        log_warn("test %s: could not send the cookie of data connection #%d: %s", t->id,
                 sl->index + 1, n == -1 ? strerror(errno) : "short write");
        test_fail(t, "a data connection to the server failed");
        return;
    }
    if (sl->index == 0 && t->have_params && t->params.mptcp)
        log_mptcp(t, fd);
    t->busy++;
    server_leg_wait_ack(sl);
    t->busy--;
    test_maybe_free(t);
}

/* A client data connection of test t. */
static void data_new(struct test *t, int fd, const struct sockaddr_storage *peer,
                     uint64_t accept_seq)
{
    char who[ADDR_STR_MAX];
    if (t->nlegs[SIDE_CLIENT] >= I3_MAX_LEGS) {
        log_warn("test %s: refusing data connection from %s: more than %d streams", t->id,
                 addr_s(peer, who), I3_MAX_LEGS);
        close(fd);
        return;
    }
    struct leg *cl = calloc(1, sizeof(*cl)), *sl = calloc(1, sizeof(*sl));
    if (cl == NULL || sl == NULL) {
        free(cl);
        free(sl);
        close(fd);
        test_fail(t, "out of memory accepting a data connection");
        return;
    }
    int idx = t->nlegs[SIDE_CLIENT]++;
    t->nlegs[SIDE_SERVER]++;
    *cl = (struct leg){ .t = t, .side = SIDE_CLIENT, .index = idx, .fd = fd, .ready = true,
                        .peer = *peer };
    *sl = (struct leg){ .t = t, .side = SIDE_SERVER, .index = idx, .fd = -1 };
    ev_init(&sl->ack_timer, ack_timer_cb);
    sl->ack_timer.data = sl;
    t->legs[SIDE_CLIENT][idx] = cl;
    t->legs[SIDE_SERVER][idx] = sl;
    t->live_legs += 2;
    /* the handshake's RTT sample (SYN-ACK to the ACK that completed it): the
     * shim has sent nothing on it yet, so it is still the only one */
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
    t->cl_seq[idx] = accept_seq;
    t->cl_rtt[idx] = ti.tcpi_rtt;
    t->cl_retrans[idx] = ti.tcpi_total_retrans;

    struct tcp_opts o = test_tcp_opts(t);
    tcp_opts_apply(fd, &(struct tcp_opts){ .bufsize = o.bufsize, .nodelay = o.nodelay });
    data_leg_rcvbuf(t, fd);
    log_debug("test %s: data connection #%d from %s", t->id, idx + 1, addr_s(peer, who));
    if (hold_mode(t))
        leg_hold(cl);
    t->busy++;
    upstream_open_next(t);
    t->busy--;
    test_maybe_free(t);
}

/* Opens the next upstream data connection, unless one is still on its way
 * (see server_leg_wait_ack): the server must accept them in this order. */
static void upstream_open_next(struct test *t)
{
    if (t->opening || t->next_open >= t->nlegs[SIDE_SERVER])
        return;
    struct leg *sl = t->legs[SIDE_SERVER][t->next_open++];
    if (sl == NULL)
        return;
    struct tcp_opts o = test_tcp_opts(t);
    t->opening = true;
    sl->opened = ev_now(t->loop);
    if (connector_start(&sl->conn, t->loop, &t->server, t->server_len, &o,
                        t->svc->cfg.connect_timeout, server_leg_connected, sl) == -1) {
        log_warn("test %s: cannot open a data connection to the server: %s", t->id,
                 strerror(errno));
        test_fail(t, "no socket for a data connection");
    }
}

/* ------------------------------------------------------ end-of-test fence */

/* Client->server data bytes delivered to the server so far, all relays. */
static uint64_t data_c2s_delivered(const struct test *t)
{
    uint64_t n = t->bytes[FLOW_C2S];   /* relays that have finished */
    for (int i = 0; i < t->nrelays; i++)
        if (t->relays[i])
            n += t->relays[i]->f[FLOW_C2S].bytes;
    return n;
}

/* Client->server data bytes the server has not acknowledged yet: readable
 * from the client, in the shim, or unacknowledged upstream. */
static uint64_t data_c2s_unacked(const struct test *t)
{
    uint64_t n = 0;
    for (int i = 0; i < t->nrelays; i++)
        if (t->relays[i])
            n += relay_unacked(t->relays[i], FLOW_C2S);
    return n;
}

/* Ends the fence: the held state byte goes on to the server. */
static void fence_end(struct test *t, enum fence_state how, uint64_t left)
{
    ev_timer_stop(t->loop, &t->fence_timer);
    t->fence = how;
    t->fence_ms = (ev_now(t->loop) - t->fence_start) * 1e3;
    t->fence_flushed = data_c2s_delivered(t) - t->fence_base;
    t->fence_left = left;
    if (how == FENCE_TIMED_OUT)
        log_warn("test %s: end-of-test fence timed out after %.1f ms: %s passed on with %" PRIu64
                 " data bytes not acknowledged by the server (they are not counted as received)",
                 t->id, t->fence_ms, i3_state_name(t->fence_msg), left);
    else
        log_debug("test %s: end-of-test fence: %" PRIu64 " bytes flushed in %.1f ms, %s passed on",
                  t->id, t->fence_flushed, t->fence_ms, i3_state_name(t->fence_msg));
    if (t->ctrl)
        relay_release(t->ctrl, FLOW_C2S);
    for (int i = 0; i < t->nrelays; i++)
        if (t->relays[i])
            relay_release(t->relays[i], FLOW_S2C);
}

/* How long the server needs to read what the fence flushed into it: an ACK
 * only means the bytes are in its receive queue, and it stops reading at
 * TEST_END.  The flushed bytes at the test's own client->server rate (what
 * the server kept up with), with half again as margin.  Not with --bidir:
 * there the server sends on while the fence holds, and every millisecond of
 * it is server->client bytes the client never counts (measured: the wait
 * cost 1.3 points of --bidir -P 8 server->client and gained nothing
 * client->server; docs/notes.md). */
static double fence_read_time(const struct test *t)
{
    uint64_t flushed = data_c2s_delivered(t) - t->fence_base;
    double ran = t->fence_start - t->running_at;
    if (t->params.bidir || flushed == 0 || t->running_at <= 0 || ran <= 0 ||
        t->fence_base == 0)
        return 0;
    return 1.5 * (double)flushed / ((double)t->fence_base / ran);
}

static void fence_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct test *t = w->data;
    ev_tstamp now = ev_now(loop);
    uint64_t left = data_c2s_unacked(t);
    if (left > 0)
        t->fence_acked = 0;   /* more came (from the client's send queue) */
    else if (t->fence_acked == 0)
        t->fence_acked = now;
    if (left == 0 && now - t->fence_acked >= fence_read_time(t))
        fence_end(t, FENCE_DONE, 0);
    else if (now - t->fence_start >= t->svc->cfg.fence_timeout)
        fence_end(t, FENCE_TIMED_OUT, left);
}

/* The client's state byte `st`, at offset `at` of the control chunk being
 * inspected, ends the data phase.  The server stops counting at it, so it is
 * held until every data byte the client sent before it has been read,
 * delivered, and acknowledged by the server (no byte left in the client
 * socket, the relay, or the upstream send queue), at most --fence-timeout.
 * TCP tests only: UDP has nothing to flush. */
static void fence_begin(struct test *t, size_t at, int8_t st)
{
    if (t->fence != FENCE_NONE || t->svc->cfg.fence_timeout <= 0 || !t->have_params ||
        t->params.proto != I3_PROTO_TCP || t->ctrl == NULL)
        return;
    t->fence_msg = st;
    t->fence_start = ev_now(t->loop);
    t->fence_base = data_c2s_delivered(t);
    if (data_c2s_unacked(t) == 0) {   /* nothing in flight: no need to hold */
        t->fence = FENCE_DONE;
        return;
    }
    if (relay_hold(t->ctrl, FLOW_C2S, at, 0) == -1) {
        log_warn("test %s: cannot hold %s for the end-of-test fence", t->id, i3_state_name(st));
        return;
    }
    t->fence = FENCE_HOLDING;
    /* The client counts no byte it reads after its TEST_END, the server every
     * byte it writes until it sees TEST_END: stop taking the server's data
     * meanwhile, so that it stops writing into buffers nobody will count. */
    for (int i = 0; i < t->nrelays; i++)
        if (t->relays[i])
            relay_hold(t->relays[i], FLOW_S2C, 0, 0);
    ev_timer_set(&t->fence_timer, FENCE_POLL, FENCE_POLL);
    ev_timer_start(t->loop, &t->fence_timer);
}

/* --------------------------------------------------- per-stream results */

/* iperf3 matches each stream's peer numbers by stream id, and ids follow
 * creation order on the client and accept order on the server.  The shim
 * makes the server's accept order its own opening order (upstream_open_next),
 * but the client's connections may reach the shim in another order than the
 * client created them (a lost ACK), and --bidir pairs are re-matched by role:
 * then client stream c and server stream s of the same id did not exchange a
 * byte.  During EXCHANGE_RESULTS the shim holds each results JSON, learns
 * from the client's which connection each client stream was (by byte counts:
 * protocol/iperf3_results.h), and renumbers the entries so that each side
 * reads the numbers of the stream it really exchanged data with.  When the
 * pairing is not certain, the JSON goes on as it was (logged). */

#define RES_HOLD_CAP(c) ((size_t)(c).results_max + 4 + 65536)  /* bytes held at most */

/* Bytes relay i delivered on flow d (so far, or in all once it ended). */
static uint64_t pair_bytes_now(const struct test *t, int i, int d)
{
    const struct relay *r = t->relays[i];
    return r ? r->f[d].bytes : t->pair_bytes[i][d];
}

/* The client sent TEST_END: it counted no byte it read after that.  Notes,
 * per data relay, the server->client bytes the client had acknowledged
 * (delivered minus still unacknowledged): the best bound the shim has on what
 * a receiving client stream counted. */
static void results_snapshot(struct test *t)
{
    if (t->s2c_snapped)
        return;
    t->s2c_snapped = true;
    for (int i = 0; i < t->nrelays; i++) {
        const struct relay *r = t->relays[i];
        uint64_t d = pair_bytes_now(t, i, FLOW_S2C);
        long q = r && r->fd[SIDE_CLIENT] >= 0 ? net_unacked(r->fd[SIDE_CLIENT]) : 0;
        t->pair_s2c_end[i] = q > 0 && (uint64_t)q < d ? d - (uint64_t)q : d;
    }
}

/* Sorts idx[0..n-1] by vals[idx[k]], equal values in index order. */
static void sort_by_bytes(int *idx, const uint64_t *vals, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (vals[idx[j - 1]] > vals[idx[j]] ||
                                  (vals[idx[j - 1]] == vals[idx[j]] && idx[j - 1] > idx[j])); j--) {
            int x = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = x;
        }
}

/* Exact pairing: when the entries' counts and the connections' counts are the
 * same numbers (a sending client's count is exactly what the shim read), the
 * k-th smallest entry goes with the k-th smallest connection.  Entries with
 * equal counts then go with connections of that same count, in list order:
 * which of them goes where changes no number anyone reads.  Returns 0 with
 * m[] set, or -1 if the counts differ anywhere. */
static int match_exact(const uint64_t *eb, const uint64_t *cb, int n, int *m)
{
    int ei[I3_RESULTS_MAX_STREAMS], ci[I3_RESULTS_MAX_STREAMS];
    for (int k = 0; k < n; k++)
        ei[k] = ci[k] = k;
    sort_by_bytes(ei, eb, n);
    sort_by_bytes(ci, cb, n);
    for (int k = 0; k < n; k++)
        if (eb[ei[k]] != cb[ci[k]])
            return -1;
    for (int k = 0; k < n; k++)
        m[ei[k]] = ci[k];
    return 0;
}

/* Pairs the entries of one role (sending or receiving client streams) with
 * the relays that carried that direction: exactly when the counts are the
 * same numbers, else by protocol/iperf3_results.h's rule.  ent_idx/conn_idx
 * list them; on success map[ent_idx[k]] is set.  Returns 0, or -1 with
 * *why. */
static int results_match_group(const struct test *t, const struct i3_rstream *ent,
                               const int *ent_idx, const int *conn_idx, int n, bool senders,
                               int *map, char *why, size_t whylen)
{
    uint64_t eb[I3_RESULTS_MAX_STREAMS], cb[I3_RESULTS_MAX_STREAMS];
    int m[I3_RESULTS_MAX_STREAMS];
    if (n == 0)
        return 0;
    for (int k = 0; k < n; k++) {
        int c = conn_idx[k];
        eb[k] = ent[ent_idx[k]].bytes;
        /* a sending client counted what it wrote: after the fence, what the shim
         * read and delivered; a receiving one what it read before its TEST_END */
        cb[k] = senders ? pair_bytes_now(t, c, FLOW_C2S)
                        : t->s2c_snapped ? t->pair_s2c_end[c] : pair_bytes_now(t, c, FLOW_S2C);
    }
    if (match_exact(eb, cb, n, m) == -1 && i3_match_by_bytes(eb, cb, n, m, why, whylen) == -1)
        return -1;
    for (int k = 0; k < n; k++)
        map[ent_idx[k]] = conn_idx[m[k]];
    return 0;
}

/* Holds direction d of the control relay from its next byte: the results
 * JSON that comes next is collected.  From the other direction's inspect hook
 * only (that direction owes nothing meanwhile). */
static void results_hold(struct test *t, int d)
{
    if (t->ctrl == NULL || t->res[d].state != RES_IDLE)
        return;
    if (relay_hold(t->ctrl, d, 0, RES_HOLD_CAP(t->svc->cfg)) == -1) {
        snprintf(t->res_note, sizeof(t->res_note), "left as they were (control busy)");
        return;
    }
    t->res[d].state = RES_COLLECT;
}

/* Passes the held block of direction d on unchanged, saying why in the test
 * line and a log line. */
static void results_leave(struct test *t, int d, const char *why)
{
    t->res[d].state = RES_DONE;
    if (t->ctrl)
        relay_release(t->ctrl, d);
    snprintf(t->res_note, sizeof(t->res_note), "%s JSON left as it was (%s)",
             d == FLOW_C2S ? "client's" : "server's", why);
    log_info("test %s: per-stream results: %s JSON passed on as it was: %s", t->id,
             d == FLOW_C2S ? "client's" : "server's", why);
}

/* Appends bytes of the held block of direction d.  Returns 0, or -1 if out
 * of memory (the block then goes on unchanged). */
static int results_collect(struct test *t, int d, const uint8_t *buf, size_t len)
{
    struct res_block *b = &t->res[d];
    if (b->len + len > b->cap) {
        size_t want = b->cap ? b->cap : 4096;
        while (want < b->len + len)
            want *= 2;
        uint8_t *nb = realloc(b->buf, want);
        if (nb == NULL)
            return -1;
        b->buf = nb;
        b->cap = want;
    }
    memcpy(b->buf + b->len, buf, len);
    b->len += len;
    return 0;
}

/* Renumbers the held block of direction d (ids from[k] -> to[k]) and lets it
 * go.  Returns 0, or -1 with *why (the caller leaves it as it was). */
static int results_replace(struct test *t, int d, const int64_t *from, const int64_t *to,
                           int n, char *why, size_t whylen)
{
    struct res_block *b = &t->res[d];
    char *out = NULL;
    size_t outlen = 0;
    if (i3_results_rewrite_ids((const char *)b->buf + 4, b->len - 4, from, to, n, &out, &outlen,
                               why, whylen) == -1)
        return -1;
    uint8_t *framed = malloc(outlen + 4);
    if (framed == NULL || outlen > UINT32_MAX) {
        free(out);
        free(framed);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    framed[0] = (uint8_t)(outlen >> 24);
    framed[1] = (uint8_t)(outlen >> 16);
    framed[2] = (uint8_t)(outlen >> 8);
    framed[3] = (uint8_t)outlen;
    memcpy(framed + 4, out, outlen);
    free(out);
    int rc = relay_release_replace(t->ctrl, d, b->len, framed, outlen + 4);
    free(framed);
    if (rc == -1) {
        snprintf(why, whylen, "the control relay could not replace it");
        return -1;
    }
    b->state = RES_DONE;
    return 0;
}

/* The client's connections in the order it created them, when that is
 * certain: order[k] = client leg of the client's k-th stream.  The client
 * creates its streams one after another (connect, cookie, next connect), and
 * the ACK completing stream k's handshake leaves before stream k+1's SYN, so
 * the kernel completes the handshakes, and the shim accepts them, in creation
 * order, whenever no handshake was held up: overtaking takes at least two
 * round trips more than the path needs, which a lost ACK and cookie (a
 * retransmission timeout, >= 200 ms) shows in the handshake's RTT sample.  A
 * lost cookie alone delays only the cookie (data_new), not the accept.
 * Returns 0 with order[] set, or -1 when some handshake may have been
 * overtaken (RTT unknown, SYN-ACK retransmitted, or RTT >= 2 x the test's
 * smallest + 1 ms). */
static int client_creation_order(const struct test *t, int n, int *order)
{
    uint32_t min = UINT32_MAX;
    for (int k = 0; k < n; k++)
        if (t->cl_rtt[k] < min)
            min = t->cl_rtt[k];
    for (int k = 0; k < n; k++) {
        if (t->cl_rtt[k] == 0 || t->cl_retrans[k] > 0 ||
            (uint64_t)t->cl_rtt[k] >= 2 * (uint64_t)min + 1000)
            return -1;
        order[k] = k;
    }
    for (int i = 1; i < n; i++)   /* by accept order */
        for (int j = i; j > 0 && t->cl_seq[order[j - 1]] > t->cl_seq[order[j]]; j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    return 0;
}

/* Maps stream entries to relays by the client's creation order (see
 * client_creation_order): entry i is the client's i-th stream.  Sending
 * streams are checked against the bytes (exact after the fence).  Returns 0
 * with map[] set, or -1 (order not certain, or the bytes disagree). */
static int results_map_by_order(const struct test *t, const struct i3_rstream *ent, int n,
                                int *map)
{
    int order[I3_RESULTS_MAX_STREAMS], relay_of[I3_MAX_LEGS];
    if (client_creation_order(t, n, order) == -1)
        return -1;
    for (int k = 0; k < n; k++)
        relay_of[k] = -1;
    for (int i = 0; i < n; i++)
        relay_of[t->pair_leg[i][SIDE_CLIENT]] = i;
    for (int i = 0; i < n; i++) {
        int cl = order[i];
        if (cl >= n || relay_of[cl] < 0)
            return -1;
        map[i] = relay_of[cl];
        bool sends = t->params.bidir ? i < t->params.parallel : !t->params.reverse;
        uint64_t up = pair_bytes_now(t, map[i], FLOW_C2S);
        if (sends && (up != ent[i].bytes || pair_bytes_now(t, map[i], FLOW_S2C) != 0))
            return -1;
        if (!sends && up != 0)
            return -1;
    }
    return 0;
}

/* Maps stream entries to relays by byte counts, sending and receiving
 * streams apart (see results_match_group).  Returns 0 with map[] set, or -1
 * with *why. */
static int results_map_by_bytes(const struct test *t, const struct i3_rstream *ent, int n,
                                int *map, char *why, size_t whylen)
{
    int eg[2][I3_RESULTS_MAX_STREAMS], cg[2][I3_RESULTS_MAX_STREAMS];   /* [sender?][k] */
    int ne[2] = { 0, 0 }, nc[2] = { 0, 0 };

    for (int i = 0; i < n; i++) {
        /* the client lists its streams in creation order: with --bidir P
         * senders then P receivers, with -R receivers only */
        bool sends = t->params.bidir ? i < t->params.parallel : !t->params.reverse;
        eg[sends][ne[sends]++] = i;
        uint64_t up = pair_bytes_now(t, i, FLOW_C2S), down = pair_bytes_now(t, i, FLOW_S2C);
        if ((up > 0) == (down > 0)) {
            snprintf(why, whylen, "data connection %d moved %s", i + 1,
                     up > 0 ? "data both ways" : "no data");
            return -1;
        }
        cg[up > 0][nc[up > 0]++] = i;
    }
    for (int g = 0; g < 2; g++) {
        if (ne[g] != nc[g]) {
            snprintf(why, whylen, "%d %s streams, %d connections carried data that way", ne[g],
                     g ? "sending" : "receiving", nc[g]);
            return -1;
        }
        if (results_match_group(t, ent, eg[g], cg[g], ne[g], g == 1, map, why, whylen) == -1)
            return -1;
    }
    return 0;
}

/* The client's results JSON is complete: map each of its stream entries to
 * the server stream it met.  Returns the number of ids that change (0: none),
 * or -1 with *why. */
static int results_map(struct test *t, char *why, size_t whylen)
{
    struct res_block *b = &t->res[FLOW_C2S];
    struct i3_rstream ent[I3_RESULTS_MAX_STREAMS];
    int map[I3_RESULTS_MAX_STREAMS], n;

    n = i3_results_streams((const char *)b->buf + 4, b->len - 4, ent, I3_RESULTS_MAX_STREAMS,
                           why, whylen);
    if (n == -1)
        return -1;
    if (n != t->nrelays || n == 0) {
        snprintf(why, whylen, "%d stream entries, %d data connections relayed", n, t->nrelays);
        return -1;
    }
    bool seen[I3_RESULTS_MAX_STREAMS] = { false };
    for (int i = 0; i < n; i++) {
        int sl = t->pair_leg[i][SIDE_SERVER];
        if (sl < 0 || sl >= n || seen[sl]) {
            snprintf(why, whylen, "server connections not numbered 1..%d", n);
            return -1;
        }
        seen[sl] = true;
        if (t->pair_leg[i][SIDE_CLIENT] < 0 || t->pair_leg[i][SIDE_CLIENT] >= n) {
            snprintf(why, whylen, "client connections not numbered 1..%d", n);
            return -1;
        }
    }
    t->res_by_order = results_map_by_order(t, ent, n, map) == 0;
    if (!t->res_by_order && results_map_by_bytes(t, ent, n, map, why, whylen) == -1)
        return -1;
    /* Both ends number streams alike (1, 3, 4, ... in creation or accept
     * order): the server's k-th stream has the id of the client's k-th entry. */
    int moved = 0;
    for (int i = 0; i < n; i++) {
        t->res_cid[i] = ent[i].id;
        t->res_sid[i] = ent[t->pair_leg[map[i]][SIDE_SERVER]].id;
        moved += t->res_cid[i] != t->res_sid[i];
    }
    t->res_n = n;
    return moved;
}

/* The held results block of direction d is complete. */
static void results_finish(struct test *t, int d)
{
    char why[160];
    if (t->res[d].len < 4) {
        results_leave(t, d, "no JSON");
        return;
    }
    if (d == FLOW_C2S) {
        int moved = results_map(t, why, sizeof(why));
        if (moved == -1) {
            results_leave(t, d, why);
            return;
        }
        if (moved == 0) {
            t->res[d].state = RES_DONE;
            relay_release(t->ctrl, d);
            snprintf(t->res_note, sizeof(t->res_note), "%d streams matched by %s, ids as "
                     "they were", t->res_n, t->res_by_order ? "accept order" : "bytes");
            return;
        }
        if (results_replace(t, d, t->res_cid, t->res_sid, t->res_n, why, sizeof(why)) == -1) {
            results_leave(t, d, why);
            return;
        }
        snprintf(t->res_note, sizeof(t->res_note), "%d of %d stream ids renumbered (matched by "
                 "%s; client's JSON)", moved, t->res_n, t->res_by_order ? "accept order" : "bytes");
        log_info("test %s: per-stream results: %d of %d client streams met another server "
                 "stream than their id says: ids renumbered both ways", t->id, moved, t->res_n);
        results_hold(t, FLOW_S2C);   /* the server's results come next: the inverse */
        return;
    }
    if (results_replace(t, d, t->res_sid, t->res_cid, t->res_n, why, sizeof(why)) == -1) {
        results_leave(t, d, why);
        return;
    }
    size_t l = strlen(t->res_note);
    snprintf(t->res_note + l, sizeof(t->res_note) - l, " and back (server's)");
}

/* Called by ctrl_inspect for every event on direction d while a results
 * block is held there; buf[0..end) is the chunk up to the event.  Returns
 * nothing; the block is collected, finished, or left as it was. */
static void results_on_event(struct test *t, int d, const struct i3_event *ev,
                             const uint8_t *buf, size_t end)
{
    enum i3_json_kind want = d == FLOW_C2S ? I3_JSON_CLIENT_RESULTS : I3_JSON_SERVER_RESULTS;
    if (ev->kind == I3_EV_NONE) {
        if (results_collect(t, d, buf, end) == -1)
            results_leave(t, d, "out of memory");
        return;
    }
    if (ev->kind == I3_EV_JSON && ev->json_kind == want) {
        if (results_collect(t, d, buf, end) == -1)
            results_leave(t, d, "out of memory");
        else
            results_finish(t, d);
        return;
    }
    results_leave(t, d, "another message came instead of the results");
}

/* ---------------------------------------------------------------- control */

static bool udp_test(const struct test *t)
{
    return t->have_params && t->params.proto == I3_PROTO_UDP;
}

/* Is t a UDP test whose client may be creating streams now? */
static bool creating_streams(const struct test *t)
{
    return t->phase == CTRL_RELAYING && udp_test(t) && t->server_state == I3_CREATE_STREAMS &&
           !t->streams_held;
}

/* Another UDP test of t's host creating streams, or NULL. */
static struct test *other_creating(const struct test *t)
{
    for (struct test *u = t->svc->tests; u; u = u->next)
        if (u != t && creating_streams(u) && pool_addr_same(&u->client, &t->client, false))
            return u;
    return NULL;
}

/* t's host has no UDP test creating streams any more: the oldest test of
 * that host held back gets its CREATE_STREAMS now. */
static void streams_done(struct test *t)
{
    struct test *next = NULL;
    for (struct test *u = t->svc->tests; u; u = u->next)
        if (u != t && u->streams_held && u->ctrl != NULL &&
            pool_addr_same(&u->client, &t->client, false) && (next == NULL || u->t0 < next->t0))
            next = u;
    if (next == NULL)
        return;
    log_info("test %s: test %s of the same host has its UDP streams: CREATE_STREAMS goes on",
             next->id, t->id);
    next->streams_held = false;
    relay_release(next->ctrl, FLOW_S2C);
}

/* A state byte from the server; at: its offset in the chunk the control
 * relay is inspecting (SIZE_MAX: not inspecting, it cannot be held). */
static void on_server_state(struct test *t, int8_t st, size_t at)
{
    bool was_creating = creating_streams(t);
    t->server_state = st;
    switch (st) {
    case I3_CREATE_STREAMS: {
        struct test *u = udp_test(t) ? other_creating(t) : NULL;
        char who[ADDR_STR_MAX];
        if (u != NULL && t->ctrl != NULL && at != SIZE_MAX &&
            relay_hold(t->ctrl, FLOW_S2C, at, 0) == 0) {
            log_info("test %s: holding the server's CREATE_STREAMS until test %s of the same "
                     "host %s has created its UDP streams", t->id, u->id,
                     addr_s(&t->client, who));
            t->streams_held = true;
        } else if (u != NULL) {
            log_warn("test %s: cannot hold the server's CREATE_STREAMS: its UDP streams and "
                     "those of test %s (same host %s) may be mixed up", t->id, u->id,
                     addr_s(&t->client, who));
        }
        break;
    }
    case I3_TEST_RUNNING:
        t->running = true;
        t->running_at = ev_now(t->loop);
        if (hold_mode(t)) {
            ev_timer_set(&t->role_timer, t->svc->cfg.role_timeout, 0);
            ev_timer_start(t->loop, &t->role_timer);
            try_pair(t);
        }
        break;
    case I3_ACCESS_DENIED:
        t->denied = true;
        break;
    case I3_EXCHANGE_RESULTS:
        /* the client's results JSON comes next (TCP: UDP streams are their own
         * flows, numbered as the client created them) */
        if (t->have_params && t->params.proto == I3_PROTO_TCP && t->nrelays > 0)
            results_hold(t, FLOW_C2S);
        break;
    case I3_PARAM_EXCHANGE:
        /* servers up to 3.14 wait for the parameters on their main thread with
         * no timeout: a silent client would stall every test on the server */
        ev_timer_set(&t->params_timer, t->svc->cfg.handshake_timeout, 0);
        ev_timer_start(t->loop, &t->params_timer);
        break;
    default:
        break;
    }
    if (was_creating && !creating_streams(t))
        streams_done(t);
}

/* Returns how the configured server reads flag parameters (lenient when no
 * --upstream-iperf3-version was given). */
static enum i3_flag_rule server_flag_rule(const struct service_config *cfg)
{
    if (cfg->upstream3_major == 0)
        return I3_FLAGS_LENIENT;
    return i3_server_params_typed(cfg->upstream3_major, cfg->upstream3_minor) ? I3_FLAGS_TYPED
                                                                            : I3_FLAGS_PRESENCE;
}

/* Observes control bytes before they are forwarded.  Returns -1 to close. */
static int ctrl_inspect(void *arg, int from, const uint8_t *buf, size_t len)
{
    struct test *t = arg;
    enum i3_dir dir = from == SIDE_CLIENT ? I3_C2S : I3_S2C;
    size_t off = 0;
    int rc = 0;

    if (len == 0) {   /* end of this direction: a message cut short is reported */
        struct i3_event ev;
        i3_ctrl_eof(&t->parser, dir, &ev);
        if (ev.kind == I3_EV_SERVER_ERROR) {
            t->server_error = true;
            t->err_code = ev.err_code;
            t->err_errno = ev.err_errno;
        } else if (ev.kind == I3_EV_ERROR) {
            log_debug("test %s: %s", t->id, ev.reason);
        }
        if (from == SIDE_SERVER)
            server_left(t, "closed the control connection during the test");
        else
            t->client_quit = true;
        return 0;
    }
    t->busy++;
    t->in_inspect = true;
    while (off < len && rc == 0 && t->failure == NULL) {
        struct i3_event ev;
        size_t start = off;
        size_t n = i3_ctrl_feed(&t->parser, dir, buf + off, len - off, &ev);
        off += n;
        if (t->res[from].state == RES_COLLECT)
            results_on_event(t, from, &ev, buf + start, n);
        switch (ev.kind) {
        case I3_EV_ERROR: {
            char who[ADDR_STR_MAX];
            log_warn("test %s: closing control connection of %s: %s", t->id,
                     addr_s(&t->client, who), ev.reason);
            t->failure = "control protocol violation";
            rc = -1;
            break;
        }
        case I3_EV_JSON:
            if (ev.json_kind == I3_JSON_SERVER_RESULTS)
                t->results_seen = true;
            if (ev.json_kind == I3_JSON_PARAMS) {
                const struct service_config *cfg = &t->svc->cfg;
                const char *why = NULL;
                t->params_len = ev.json_len;
                uint32_t cap = cfg->upstream3_major == 0 ? 0 :
                               i3_server_params_cap(cfg->upstream3_major, cfg->upstream3_minor);
                if (cap != 0 && ev.json_len > cap)
                    log_warn("test %s: the client's parameters are %" PRIu32 " bytes: the "
                             "server (iperf3 %d.%d) accepts %" PRIu32 " and will refuse the "
                             "test", t->id, ev.json_len, cfg->upstream3_major,
                             cfg->upstream3_minor, cap);
                ev_timer_stop(t->loop, &t->params_timer);
                if (i3_params_parse_as(ev.json, ev.json_len, server_flag_rule(cfg), &t->params,
                                       &why) == 0) {
                    char who[ADDR_STR_MAX];
                    t->have_params = true;
                    log_debug("test %s: client %s (iperf3 %s) asks for %s, %d stream(s)", t->id,
                              addr_s(&t->client, who), t->params.client_version[0] ?
                              t->params.client_version : "before 3.1",
                              i3_params_mode(&t->params), t->params.parallel);
                    if (t->params.misread_flag[0] != '\0')
                        log_warn("test %s: parameter \"%s\" is not simply true: read as the "
                                 "server (iperf3 %d.%d) reads it, the test may not be what "
                                 "the client meant", t->id, t->params.misread_flag,
                                 cfg->upstream3_major, cfg->upstream3_minor);
                } else {
                    log_warn("test %s: cannot read the test parameters (%s): relaying "
                             "without role repair", t->id, why);
                }
            }
            break;
        case I3_EV_STATE:
            if (dir == I3_S2C)
                on_server_state(t, ev.state, off - 1);   /* off is past the state byte */
            else if (ev.state == I3_TEST_END || ev.state == I3_CLIENT_TERMINATE) {
                if (ev.state == I3_CLIENT_TERMINATE)
                    t->client_quit = true;
                else
                    t->client_ended = true;
                results_snapshot(t);
                fence_begin(t, off - 1, ev.state);   /* off is past the state byte */
            }
            break;
        case I3_EV_SERVER_ERROR:
            t->server_error = true;
            t->err_code = ev.err_code;
            t->err_errno = ev.err_errno;
            t->err_after_results = t->results_seen;
            break;
        default:
            break;
        }
        if (n == 0)
            break;
    }
    t->in_inspect = false;
    t->busy--;
    return t->failure != NULL ? -1 : rc;
}

static void ctrl_done(void *arg, struct relay *r, enum relay_end how)
{
    struct test *t = arg;
    if (r->err_side == SIDE_SERVER && (how == RELAY_END_RESET || how == RELAY_END_ERROR ||
                                       r->reset_absorbed))
        server_left(t, r->err == ECONNRESET ? "reset the control connection during the test"
                                            : "failed the control connection during the test");
    t->ctrl_end = how;
    t->ctrl_bytes[0] = r->f[0].bytes;
    t->ctrl_bytes[1] = r->f[1].bytes;
    bool was_creating = creating_streams(t);
    t->ctrl = NULL;
    t->ctrl_done = true;
    t->phase = CTRL_DONE;
    t->streams_held = false;
    relay_free(r);
    if (was_creating)
        streams_done(t);
    test_release_member(t);   /* the member takes its next test now */
    /* the test is over: whatever data connection is left goes with it */
    t->busy++;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < t->nlegs[s]; i++)
            if (t->legs[s][i])
                leg_free(t->legs[s][i], true, false);
    for (int i = 0; i < t->nrelays; i++)
        if (t->relays[i])
            relay_abort(t->relays[i], false);
    t->busy--;
    test_maybe_free(t);
}

/* Tells a client what a busy server tells it, ACCESS_DENIED ("the server is
 * busy running a test"), and closes its connection. */
static void tell_busy(int fd, const struct sockaddr_storage *peer)
{
    char who[ADDR_STR_MAX];
    int8_t denied = I3_ACCESS_DENIED;
    if (send(fd, &denied, 1, MSG_NOSIGNAL) != 1)
        log_debug("could not tell %s it is refused: %s", addr_s(peer, who), strerror(errno));
    close(fd);
}

/* Ends a test before its control relay: the client gets ACCESS_DENIED when
 * busy is true (no server free), else a reset.  t may be freed. */
static void ctrl_give_up(struct test *t, const char *failure, bool busy)
{
    ctrl_stop_trying(t);
    test_release_member(t);
    if (busy)
        tell_busy(t->cfd, &t->client);
    else
        net_close_reset(t->cfd);
    t->cfd = -1;
    t->denied = busy;
    t->failure = failure;
    t->phase = CTRL_DONE;
    t->ctrl_done = true;
    test_maybe_free(t);
}

static void ctrl_try(struct test *t);
static void ctrl_ask(struct test *t, int i);
static void ctrl_connected(void *arg, int ufd, int err);

/* Seconds t has been waiting in the queue (0 if it never queued). */
static double queued_seconds(const struct test *t)
{
    return t->waiter.since > 0 ? ev_now(t->loop) - t->waiter.since : 0;
}

/* QUEUED: the pool woke t because a member may be free. */
static void waiter_wake(struct pool_waiter *w)
{
    struct test *t = (struct test *)((char *)w - offsetof(struct test, waiter));
    ev_io_stop(t->loop, &t->client_io);
    ev_timer_stop(t->loop, &t->wait_timer);
    ctrl_try(t);
}

/* QUEUED: the client's control connection became readable: it left (EOF or
 * error), or sent bytes early (kept for the relay; no longer watched). */
static void client_wait_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct test *t = w->data;
    uint8_t b;
    ssize_t n = recv(t->cfd, &b, 1, MSG_PEEK);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == 1) {
        ev_io_stop(loop, w);
        return;
    }
    char who[ADDR_STR_MAX];
    log_info("test %s: client %s left after waiting %.1f s for a free server", t->id,
             addr_s(&t->client, who), queued_seconds(t));
    ctrl_give_up(t, "the client left while waiting for a free server", false);
}

/* No member is free for t: it waits in the queue, or is refused. */
static void ctrl_wait(struct test *t)
{
    struct pool *p = &t->svc->pool3;
    const struct service_config *cfg = &t->svc->cfg;
    char who[ADDR_STR_MAX];

    if (!pool_any_busy(p)) {   /* nothing to wait for: they failed, as directly */
        log_warn("test %s: no server could take client %s (unreachable or failed)", t->id,
                 addr_s(&t->client, who));
        ctrl_give_up(t, "server unreachable", false);
        return;
    }
    if (!service_open(t->svc)) {
        log_info("test %s: every server busy and the shim is draining: client %s refused",
                 t->id, addr_s(&t->client, who));
        ctrl_give_up(t, "every server busy while the shim drains", true);
        return;
    }
    if (cfg->queue_max == 0) {   /* no queue: as directly, a server's own answer */
        int i = t->forced ? -1 : pool_pick_any(p, t->tried);
        if (i >= 0) {
            t->forced = true;
            ctrl_ask(t, i);
        } else if (t->last_denied) {
            ctrl_give_up(t, "every server busy, no queue (--queue-max 0)", true);
        } else {
            log_warn("test %s: no server could take client %s", t->id,
                     addr_s(&t->client, who));
            ctrl_give_up(t, "server unreachable", false);
        }
        return;
    }
    if (t->waiter.since == 0) {   /* first time */
        if (p->queued >= cfg->queue_max) {
            p->queue_full++;
            log_info("test %s: every server busy and %d client(s) already waiting "
                     "(--queue-max %d): client %s told busy", t->id, p->queued, cfg->queue_max,
                     addr_s(&t->client, who));
            ctrl_give_up(t, "every server busy, queue full (--queue-max)", true);
            return;
        }
        t->waiter.since = ev_now(t->loop);
        log_info("test %s: every server busy: client %s waits its turn (%d ahead)", t->id,
                 addr_s(&t->client, who), p->queued);
    }
    double left = t->waiter.since + cfg->queue_timeout - ev_now(t->loop);
    if (left <= 0) {
        p->queue_timeouts++;
        log_info("test %s: no server free within %.0f s (--queue-timeout): client %s told busy",
                 t->id, cfg->queue_timeout, addr_s(&t->client, who));
        ctrl_give_up(t, "no server free within --queue-timeout", true);
        return;
    }
    t->phase = CTRL_QUEUED;
    t->tried = 0;
    ev_timer_set(&t->wait_timer, left, 0);
    ev_timer_start(t->loop, &t->wait_timer);
    ev_io_init(&t->client_io, client_wait_cb, t->cfd, EV_READ);
    t->client_io.data = t;
    ev_io_start(t->loop, &t->client_io);
    pool_enqueue(p, &t->waiter);
}

/* Offers t to the next free member not asked yet, or queues it. */
static void ctrl_try(struct test *t)
{
    struct pool *p = &t->svc->pool3;
    int i = pool_pick_iperf3(p, t->tried);
    if (i < 0)
        ctrl_wait(t);
    else
        ctrl_ask(t, i);
}

/* Connects to member i (already counted in its tests) to offer it t. */
static void ctrl_ask(struct test *t, int i)
{
    struct pool *p = &t->svc->pool3;
    t->member_held = true;
    t->last_denied = false;
    t->tried |= UINT64_C(1) << i;
    t->server = p->m[i].addr;
    t->server_len = p->m[i].len;
    t->phase = CTRL_CONNECTING;
    if (connector_start(&t->ctrl_conn, t->loop, &t->server, t->server_len, NULL,
                        t->svc->cfg.connect_timeout, ctrl_connected, t) == -1) {
        log_warn("test %s: no socket for the server connection: %s", t->id, strerror(errno));
        ctrl_give_up(t, "no socket", false);
    }
}

/* The member asked could not take t (log already written): the next one. */
static void ctrl_next(struct test *t)
{
    ev_io_stop(t->loop, &t->ask_io);
    ev_timer_stop(t->loop, &t->wait_timer);
    if (t->ufd >= 0) {
        close(t->ufd);
        t->ufd = -1;
    }
    test_release_member(t);
    ctrl_try(t);
}

/* The member answered `first` (not ACCESS_DENIED): the control relay starts
 * with that byte, seen by the parser, on its way to the client. */
static void ctrl_start_relay(struct test *t, uint8_t first)
{
    int ufd = t->ufd;
    ev_io_stop(t->loop, &t->ask_io);
    ev_timer_stop(t->loop, &t->wait_timer);
    t->ufd = -1;
    if (t->waiter.since > 0) {
        t->queued_for = queued_seconds(t);
        pool_count_wait(&t->svc->pool3, t->queued_for);
    }
    int k = pool_find(&t->svc->pool3, &t->server);
    if (k >= 0)
        t->svc->pool3.m[k].served++;
    char c[ADDR_STR_MAX], s[ADDR_STR_MAX];
    log_debug("test %s: client %s runs on server %s (queued %.1f s)", t->id,
              addr_s(&t->client, c), addr_s(&t->server, s), t->queued_for);
    struct relay_opts o = {
        .splice = false, .idle = t->svc->cfg.idle_timeout, .activity = &t->act,
        .inspect = ctrl_inspect, .done = ctrl_done, .arg = t,
    };
    t->ctrl = relay_new(t->loop, t->cfd, ufd, &o);
    if (t->ctrl == NULL || relay_preload(t->ctrl, FLOW_S2C, &first, 1) == -1) {
        if (t->ctrl) {
            t->ctrl->fd[0] = t->ctrl->fd[1] = -1;
            relay_free(t->ctrl);
            t->ctrl = NULL;
        }
        close(ufd);
        ctrl_give_up(t, "out of memory", false);
        return;
    }
    t->cfd = -1;
    t->phase = CTRL_RELAYING;
    struct i3_event ev;
    i3_ctrl_feed(&t->parser, I3_S2C, &first, 1, &ev);
    if (ev.kind == I3_EV_STATE)
        on_server_state(t, ev.state, SIZE_MAX);
    relay_start(t->ctrl);   /* may end (and free t) at once */
}

/* CTRL_ASKING: the member's first byte, or its closing without one. */
static void ask_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    char s[ADDR_STR_MAX];
    uint8_t b;
    ssize_t n = recv(t->ufd, &b, 1, 0);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    int k = pool_find(&t->svc->pool3, &t->server);
    t->last_denied = n == 1 && (int8_t)b == I3_ACCESS_DENIED;
    if (t->last_denied) {
        log_debug("test %s: server %s is busy (ACCESS_DENIED): asking the next one", t->id,
                  addr_s(&t->server, s));
        if (k >= 0)
            pool_member_refused(&t->svc->pool3, k);
        ctrl_next(t);
        return;
    }
    if (n == 1) {
        ctrl_start_relay(t, b);
        return;
    }
    /* a 3.12 server that re-creates its listener resets what waits in its
     * backlog: not a sick server, but this test cannot stay there */
    log_info("test %s: server %s closed the control connection without a word (%s): asking "
             "the next one", t->id, addr_s(&t->server, s), n == 0 ? "EOF" : strerror(errno));
    ctrl_next(t);
}

/* CTRL_ASKING: the member never answered; CTRL_QUEUED: --queue-timeout. */
static void wait_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    if (t->phase == CTRL_QUEUED) {
        pool_dequeue(&t->svc->pool3, &t->waiter);
        ev_io_stop(t->loop, &t->client_io);
        ctrl_wait(t);   /* past the deadline: refused */
        return;
    }
    char s[ADDR_STR_MAX];
    log_warn("test %s: server %s accepted but sent nothing within %.1f s: asking the next one",
             t->id, addr_s(&t->server, s), t->svc->cfg.connect_timeout);
    int k = pool_find(&t->svc->pool3, &t->server);
    if (k >= 0)
        pool_member_failed(&t->svc->pool3, k, true, "accepted but never answered the cookie");
    ctrl_next(t);
}

static void ctrl_connected(void *arg, int ufd, int err)
{
    struct test *t = arg;
    struct pool *p = &t->svc->pool3;
    char c[ADDR_STR_MAX], s[ADDR_STR_MAX];
    int k = pool_find(p, &t->server);

    if (ufd < 0) {
        /* the pool logs the member going down, once */
        log_debug("test %s: cannot reach server %s for client %s: %s", t->id,
                 addr_s(&t->server, s), addr_s(&t->client, c), strerror(err));
        if (k >= 0 && err == ECONNREFUSED && pool_member_settling(p, k))
            pool_member_refused(p, k);   /* between two tests: busy, not down */
        else if (k >= 0 && err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
            pool_member_failed(p, k, false, strerror(err));
        ctrl_next(t);
        return;
    }
    if (k >= 0)
        pool_member_ok(p, k);
    /* iperf3 sets TCP_NODELAY on its control sockets: each state byte must go
     * out at once.  With Nagle a message would wait for the delayed ACK of the
     * one before (~40 ms): in -R UDP tests the server's first datagrams then
     * arrive before the client knows the test runs, and count as lost. */
    struct tcp_opts nodelay = { .nodelay = 1 };
    tcp_opts_apply(t->cfd, &nodelay);
    tcp_opts_apply(ufd, &nodelay);
    t->ufd = ufd;
    /* the cookie at once: servers up to 3.14 block their main loop on it */
    ssize_t n = send(ufd, t->cookie, I3_COOKIE_SIZE, MSG_NOSIGNAL);
    if (n != I3_COOKIE_SIZE) {
        log_warn("test %s: could not send the cookie to server %s: %s", t->id,
                 addr_s(&t->server, s), n == -1 ? strerror(errno) : "short write");
        if (k >= 0)
            pool_member_failed(p, k, true, "the cookie could not be sent");
        ctrl_next(t);
        return;
    }
    t->phase = CTRL_ASKING;
    ev_io_init(&t->ask_io, ask_read_cb, ufd, EV_READ);
    t->ask_io.data = t;
    ev_io_start(t->loop, &t->ask_io);
    ev_timer_set(&t->wait_timer, t->svc->cfg.connect_timeout, 0);
    ev_timer_start(t->loop, &t->wait_timer);
}

/* Live tests (control connection not finished) from the host of peer. */
static int tests_of_host(const struct service *svc, const struct sockaddr_storage *peer)
{
    int n = 0;
    for (const struct test *t = svc->tests; t; t = t->next)
        n += !t->ctrl_done && pool_addr_same(&t->client, peer, false);
    return n;
}

static void test_new(struct service *svc, int fd, const struct sockaddr_storage *peer,
                     const uint8_t cookie[I3_COOKIE_SIZE])
{
    char who[ADDR_STR_MAX];
    int limit = svc->cfg.max_tests_per_client;
    if (limit > 0 && tests_of_host(svc, peer) >= limit) {
        log_info("refusing iperf3 client %s: it already runs %d test(s) "
                 "(--max-tests-per-client %d): told busy", addr_s(peer, who), limit, limit);
        tell_busy(fd, peer);
        return;
    }
    struct test *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        log_error("out of memory: refusing an iperf3 client");
        close(fd);
        return;
    }
    t->svc = svc;
    t->loop = svc->loop;
    t->started = time(NULL);
    t->t0 = ev_now(svc->loop);
    memcpy(t->cookie, cookie, I3_COOKIE_SIZE);
    for (int i = 0; i < 8; i++)
        t->id[i] = (cookie[i] >= 0x21 && cookie[i] <= 0x7e) ? (char)cookie[i] : '?';
    t->client = *peer;
    t->cfd = fd;
    t->ufd = -1;
    t->waiter.wake = waiter_wake;
    ev_init(&t->role_timer, role_timeout_cb);
    t->role_timer.data = t;
    ev_init(&t->params_timer, params_timeout_cb);
    t->params_timer.data = t;
    ev_init(&t->wait_timer, wait_timeout_cb);
    t->wait_timer.data = t;
    ev_init(&t->ask_io, ask_read_cb);
    ev_init(&t->client_io, client_wait_cb);
    ev_init(&t->fence_timer, fence_timer_cb);
    t->fence_timer.data = t;
    i3_ctrl_init(&t->parser, t->svc->cfg.params_max, t->svc->cfg.results_max);
    struct i3_event ev;
    i3_ctrl_feed(&t->parser, I3_C2S, cookie, I3_COOKIE_SIZE, &ev);   /* the cookie */
    t->next = svc->tests;
    svc->tests = t;
    svc->ntests++;

    log_debug("test %s: control connection from %s", t->id, addr_s(peer, who));
    ctrl_try(t);
}

/* A new test while the service drains: the client gets what a busy server
 * answers, ACCESS_DENIED ("the server is busy running a test"), and the
 * connection is closed. */
static void refuse_draining(int fd, const struct sockaddr_storage *peer)
{
    char who[ADDR_STR_MAX];
    log_info("refusing iperf3 client %s: the shim is shutting down (draining)",
             addr_s(peer, who));
    tell_busy(fd, peer);
}

void i3_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
               const uint8_t cookie[I3_COOKIE_SIZE], uint64_t accept_seq)
{
    for (struct test *t = svc->tests; t; t = t->next) {
        if (!t->ctrl_done && t->failure == NULL && t->ctrl != NULL &&
            memcmp(t->cookie, cookie, I3_COOKIE_SIZE) == 0) {
            data_new(t, fd, peer, accept_seq);
            return;
        }
    }
    if (!service_open(svc)) {
        refuse_draining(fd, peer);
        return;
    }
    test_new(svc, fd, peer, cookie);
}

int i3_udp_server(const struct service *svc, const struct sockaddr_storage *client,
                  struct sockaddr_storage *server, socklen_t *len)
{
    const struct test *creating = NULL, *running = NULL;
    int ncreating = 0;
    for (const struct test *t = svc->tests; t; t = t->next) {
        if (t->phase != CTRL_RELAYING || !udp_test(t) || t->streams_held ||
            !pool_addr_same(&t->client, client, false))
            continue;
        if (t->server_state == I3_CREATE_STREAMS) {
            ncreating++;
            if (creating == NULL || t->t0 < creating->t0)
                creating = t;
        } else if (running == NULL || t->t0 > running->t0) {
            running = t;
        }
    }
    const struct test *t = creating ? creating : running;
    if (t == NULL)
        return -1;
    if (ncreating > 1) {
        char who[ADDR_STR_MAX];
        log_warn("host %s creates UDP streams for %d iperf3 tests at once: new stream given to "
                 "test %s (the oldest)", addr_s(client, who), ncreating, t->id);
    }
    *server = t->server;
    *len = t->server_len;
    return 0;
}

void i3_close_all(struct service *svc)
{
    while (svc->tests) {
        struct test *t = svc->tests;
        test_fail(t, "the shim is shutting down");
        if (svc->tests == t)   /* still alive (deferred): unlink by force */
            break;
    }
}
