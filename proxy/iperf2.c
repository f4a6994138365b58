#include "proxy/iperf2.h"

#include "compat/iperf2_compat.h"

#include "protocol/iperf2.h"
#include "proxy/connect.h"
#include "proxy/end_reason.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/relay.h"
#include "proxy/service.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define I2_MAX_BACK 128   /* connect-back connections accepted per session */
#define I2_ACCEPT_PAUSE 0.1  /* s: connect-back accepting stops this long after an error */
#define I2_WARN_EVERY   1.0  /* s: at most one connect-back warning this often per session */
#define I2_END_MARGIN   1.0  /* s: a reset this close to the planned end of a -t test ends it */

struct sess;

/* Where the client's own connection is.  Connect-backs and their listener
 * live beside it: a session is freed once it is SESS_ENDED and they are
 * gone too. */
enum sess_state {
    SESS_CONNECTING = 0,  /* upstream connect in progress; cfd is the client */
    SESS_RELAYING,        /* main relays the client's connection */
    SESS_ENDED,           /* the client's connection is finished (main NULL, cfd -1) */
};

/* One connect-back connection: the server's, relayed to the client. */
struct back {
    struct sess      *s;          /* owning session */
    int               sfd;        /* the server's connection (accepted) */
    struct connector  conn;       /* connecting to the client */
    struct relay     *relay;      /* once connected */
    int               slot;       /* index in s->backs */
};

struct sess {
    struct sess      *next;          /* the service's list of live sessions */
    struct service   *svc;           /* the service that took it */
    struct ev_loop   *loop;
    struct sockaddr_storage client;  /* the client's address */
    struct sockaddr_storage server;  /* the server it was relayed to (kept across reloads) */
    time_t            started;       /* wall clock at accept */
    ev_tstamp         t0;            /* ev_now() at accept */
    socklen_t         server_len;    /* its length */
    enum sess_state   state;         /* the client's connection */
    int               cfd;           /* client connection while SESS_CONNECTING, else -1 */
    uint8_t          *first;         /* bytes read by the front (header first) */
    size_t            nfirst;
    struct i2_test_hdr hdr;          /* the parsed test header */
    struct connector  conn;          /* upstream connect */
    struct relay     *main;          /* the client's connection, relayed */
    enum relay_end    main_end;      /* how */
    bool              reset_absorbed;/* a side reset after finishing: closed with FIN */
    int               lfd;           /* connect-back listener, -1 if none */
    ev_io             lio;           /* its accept watcher */
    ev_timer          ltimer;        /* closes the listener when no connect-back comes */
    uint16_t          back_port;     /* port the server is told (the listener's) */
    ev_timer          lpause;        /* resumes accepting after an accept error */
    ev_tstamp         last_warn;     /* when a connect-back warning was last logged */
    unsigned          strangers;     /* connect-backs refused: not from the server */
    unsigned          accept_errs;   /* failed accepts on the connect-back port */
    ev_tstamp         relay_t0;      /* ev_now() when the main relay started */
    struct back      *backs[I2_MAX_BACK]; /* connect-back connections, NULL once done */
    int               nbacks;        /* accepted so far */
    int               live_backs;    /* still alive */
    uint64_t          bytes[2];      /* main connection: client->server, server->client */
    uint64_t          back_bytes[2]; /* connect-backs: server->client, client->server */
    struct end_reason end;           /* why it ended, if not normally */
    bool              member_held;   /* counted in the load of its pool member */
    bool              direct;        /* --transparent: server is what the client addressed */
    int               tries;         /* servers tried (a failed connect tries the next) */
    int               busy;          /* > 0 while in a callback chain: defer freeing */
};

static char *addr_s(const struct sockaddr_storage *ss, char *buf)
{
    return net_addr_str((const struct sockaddr *)ss, buf, ADDR_STR_MAX);
}

/* --transparent-source: the session's connections toward the server carry
 * the client's address and those toward the client (connect-backs) the
 * server's, as if the shim were not there. */
static bool source_transparent(const struct sess *s)
{
    return s->direct && s->svc->cfg.transparent_source;
}

static void listener_close(struct sess *s)
{
    if (s->lfd < 0)
        return;
    ev_io_stop(s->loop, &s->lio);
    ev_timer_stop(s->loop, &s->ltimer);
    ev_timer_stop(s->loop, &s->lpause);
    close(s->lfd);
    s->lfd = -1;
}

/* How the session ended (or where it is), in words.  Returns buf. */
static char *sess_outcome(const struct sess *s, char *buf, size_t n)
{
    if (s->end.cause != END_NONE)
        end_reason_str(&s->end, &s->server, buf, n);
    else if (s->state == SESS_CONNECTING)
        snprintf(buf, n, "connecting to the server");
    else if (s->state == SESS_RELAYING)
        snprintf(buf, n, "running");
    else if (s->reset_absorbed)
        snprintf(buf, n, "a side reset after finishing: the other got a FIN");
    else
        snprintf(buf, n, "%s", relay_end_str(s->main_end));
    return buf;
}

/* The session as the status page and the stats see it. */
static void sess_info(const struct sess *s, struct test_info *t)
{
    memset(t, 0, sizeof(*t));
    t->protocol = "iperf2";
    t->transport = "tcp";
    t->mode = i2_mode_name(s->hdr.mode);
    t->client = s->client;
    t->server = s->server;
    t->started = s->started;
    t->seconds = ev_now(s->loop) - s->t0;
    t->bytes[0] = s->bytes[0] + s->back_bytes[1];
    t->bytes[1] = s->bytes[1] + s->back_bytes[0];
    if (s->main != NULL) {   /* running: what its relay moved so far */
        t->bytes[0] += s->main->f[FLOW_C2S].bytes;
        t->bytes[1] += s->main->f[FLOW_S2C].bytes;
    }
    t->ok = s->end.cause == END_NONE;
    sess_outcome(s, t->outcome, sizeof(t->outcome));
}

void i2_running(const struct service *svc, test_info_fn fn, void *arg)
{
    struct test_info t;
    for (const struct sess *s = svc->sessions; s; s = s->next) {
        sess_info(s, &t);
        fn(arg, &t);
    }
}

static void sess_log_end(struct sess *s)
{
    char c[ADDR_STR_MAX], u[ADDR_STR_MAX], back[160] = "", outcome[160];
    if (s->hdr.connect_back)
        snprintf(back, sizeof(back), ", connect-back via shim port %u to client port %u: %d "
                 "connection(s), bytes server->client %" PRIu64 ", client->server %" PRIu64,
                 s->back_port, s->hdr.port, s->nbacks, s->back_bytes[0], s->back_bytes[1]);
    sess_outcome(s, outcome, sizeof(outcome));
    log_msg(s->end.cause != END_NONE ? LOG_WARN : LOG_INFO,
            "iperf2 test: client %s, server %s, mode %s, bytes client->server %" PRIu64
            ", server->client %" PRIu64 "%s, %s", addr_s(&s->client, c),
            addr_s(&s->server, u), i2_mode_name(s->hdr.mode), s->bytes[0],
            s->bytes[1], back, outcome);
}

static void sess_maybe_free(struct sess *s)
{
    if (s->busy > 0 || s->state != SESS_ENDED || s->live_backs > 0 || s->lfd >= 0)
        return;
    assert(s->main == NULL && s->cfd < 0);
    sess_log_end(s);
    struct test_info t;
    sess_info(s, &t);
    stats_test_ended(&s->svc->stats, &t);
    for (struct sess **pp = &s->svc->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    s->svc->nsessions--;
    if (s->member_held)
        pool_release_iperf2(&s->svc->pool2, &s->server);
    free(s->first);
    free(s);
}

/* ------------------------------------------------------- connect-backs */

static void back_free(struct back *b)
{
    struct sess *s = b->s;
    connector_cancel(&b->conn);
    if (b->relay == NULL && b->sfd >= 0)
        close(b->sfd);
    s->backs[b->slot] = NULL;
    s->live_backs--;
    free(b);
}

static void back_done(void *arg, struct relay *r, enum relay_end how)
{
    struct back *b = arg;
    struct sess *s = b->s;
    s->back_bytes[0] += r->f[FLOW_C2S].bytes;
    s->back_bytes[1] += r->f[FLOW_S2C].bytes;
    log_debug("iperf2 connect-back ended (%s)", relay_end_str(how));
    relay_free(r);
    b->relay = NULL;
    b->sfd = -1;
    back_free(b);
    sess_maybe_free(s);
}

static void back_connected(void *arg, int fd, int err)
{
    struct back *b = arg;
    struct sess *s = b->s;
    char c[ADDR_STR_MAX];

    if (fd < 0) {
        struct sockaddr_storage to = s->client;
        net_set_port(&to, s->hdr.port);
        log_warn("iperf2 connect-back to client %s: %s; closing the server's connection",
                 addr_s(&to, c), strerror(err));
        net_close_reset(b->sfd);
        b->sfd = -1;
        back_free(b);
        sess_maybe_free(s);
        return;
    }
    struct relay_opts o = {
        .splice = s->svc->cfg.use_splice, .idle = s->svc->cfg.idle_timeout, .done = back_done, .arg = b,
    };
    /* the server plays the client on this connection: it is the relay's client side */
    b->relay = relay_new(s->loop, b->sfd, fd, &o);
    if (b->relay == NULL) {
        close(fd);
        back_free(b);
        sess_maybe_free(s);
        return;
    }
    s->busy++;
    relay_start(b->relay);
    s->busy--;
    sess_maybe_free(s);
}

/* Returns true, and notes the time, when a connect-back warning may be
 * logged now (at most one per I2_WARN_EVERY and session). */
static bool warn_now(struct sess *s)
{
    ev_tstamp now = ev_now(s->loop);
    if (s->last_warn > 0 && now - s->last_warn < I2_WARN_EVERY)
        return false;
    s->last_warn = now;
    return true;
}

static void back_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct sess *s = w->data;
    if (s->lfd >= 0)
        ev_io_start(loop, &s->lio);
}

static void back_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct sess *s = w->data;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    char who[ADDR_STR_MAX], to_s[ADDR_STR_MAX], srv[ADDR_STR_MAX];

    int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return;
        /* out of fds or memory above all: the connection stays queued and the
         * socket readable; stop watching it for a moment instead of spinning */
        s->accept_errs++;
        if (warn_now(s))
            log_warn("iperf2 connect-back port %u (client %s): accept failed: %s; retrying "
                     "every %.0f ms (%u failures)", s->back_port, addr_s(&s->client, who),
                     strerror(errno), I2_ACCEPT_PAUSE * 1000, s->accept_errs);
        ev_io_stop(loop, &s->lio);
        ev_timer_set(&s->lpause, I2_ACCEPT_PAUSE, 0.);
        ev_timer_start(loop, &s->lpause);
        return;
    }
    if (!net_same_host(&peer, &s->server)) {
        s->strangers++;
        if (warn_now(s))
            log_warn("iperf2 connect-back port %u (client %s): refusing %s: not the server "
                     "%s (%u refused)", s->back_port, addr_s(&s->client, to_s),
                     addr_s(&peer, who), addr_s(&s->server, srv), s->strangers);
        close(fd);
        return;
    }
    if (s->nbacks >= I2_MAX_BACK) {
        log_warn("iperf2 connect-back: refusing %s: more than %d connections", addr_s(&peer, who),
                 I2_MAX_BACK);
        close(fd);
        return;
    }
    struct back *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        close(fd);
        return;
    }
    b->s = s;
    b->sfd = fd;
    b->slot = s->nbacks++;
    s->backs[b->slot] = b;
    s->live_backs++;
    struct sockaddr_storage to = s->client;
    socklen_t tolen = net_set_port(&to, s->hdr.port);
    log_debug("iperf2 connect-back from server %s, relaying to client %s", addr_s(&peer, who),
              addr_s(&to, to_s));
    struct tcp_opts o = { .source = source_transparent(s) ? &s->server : NULL,
                          .mark = s->svc->cfg.transparent_mark };
    if (connector_start(&b->conn, s->loop, &to, tolen, &o, s->svc->cfg.connect_timeout,
                        back_connected, b) == -1) {
        log_warn("iperf2 connect-back to client %s: no socket: %s; closing the server's "
                 "connection", addr_s(&to, to_s), strerror(errno));
        back_free(b);
        return;
    }
    /* the listener stays open for more connect-backs until the session ends */
}

static void listener_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct sess *s = w->data;
    if (s->state != SESS_ENDED) {   /* still running: check again later */
        ev_timer_again(loop, w);
        return;
    }
    if (s->nbacks == 0)
        log_warn("iperf2 %s test: the server never connected back within %.0f s",
                 i2_mode_name(s->hdr.mode), s->svc->cfg.handshake_timeout);
    listener_close(s);
    sess_maybe_free(s);
}

/* Opens the connect-back listener on the address the server sees (the local
 * address of the upstream connection: with --transparent-source the
 * client's, taken with IP_TRANSPARENT) and rewrites mPort to its port.
 * Returns 0, or -1 with errno. */
static int listener_open(struct sess *s, int ufd)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    if (getsockname(ufd, (struct sockaddr *)&local, &len) == -1)
        return -1;
    socklen_t slen = sizeof(s->server);
    if (getpeername(ufd, (struct sockaddr *)&s->server, &slen) == -1)
        return -1;
    net_set_port(&local, 0);
    s->lfd = net_tcp_listen(&local, len, source_transparent(s));   /* the client's address */
    if (s->lfd == -1)
        return -1;
    len = sizeof(local);
    if (getsockname(s->lfd, (struct sockaddr *)&local, &len) == -1)
        return -1;
    s->back_port = (uint16_t)net_port((struct sockaddr *)&local);
    if (i2_hdr_set_port(s->first, s->nfirst, s->back_port) == -1) {
        errno = EINVAL;
        return -1;
    }
    ev_io_init(&s->lio, back_accept_cb, s->lfd, EV_READ);
    s->lio.data = s;
    ev_io_start(s->loop, &s->lio);
    ev_init(&s->lpause, back_resume_cb);
    s->lpause.data = s;
    /* after the client's connection ends, wait this long for a late connect-back (-r) */
    ev_init(&s->ltimer, listener_timeout_cb);
    s->ltimer.repeat = s->svc->cfg.handshake_timeout;
    s->ltimer.data = s;
    ev_timer_again(s->loop, &s->ltimer);
    return 0;
}

/* ------------------------------------------------------- closing */

/* The one way a session is closed by the shim: records why (the first cause
 * wins), closes the client's connection (reset, unless the shim is exiting),
 * the connect-backs and their listener, and frees the session when nothing
 * of it is left. */
static void sess_close(struct sess *s, enum end_cause cause, int err, const char *detail)
{
    bool reset = cause != END_SHUTDOWN;
    end_reason_set(&s->end, cause, err, detail);
    s->busy++;
    switch (s->state) {
    case SESS_CONNECTING:
        connector_cancel(&s->conn);
        if (reset)
            net_close_reset(s->cfd);
        else
            close(s->cfd);
        s->cfd = -1;
        s->state = SESS_ENDED;
        break;
    case SESS_RELAYING:
        relay_abort(s->main, reset);   /* main_done() ends the state */
        break;
    case SESS_ENDED:
        break;
    }
    for (int i = 0; i < s->nbacks; i++) {
        if (s->backs[i] && s->backs[i]->relay)
            relay_abort(s->backs[i]->relay, reset);
        else if (s->backs[i])
            back_free(s->backs[i]);
    }
    listener_close(s);
    s->busy--;
    sess_maybe_free(s);
}

/* ------------------------------------------------------- main connection */

/* A side of the main connection reset while it was receiving.  Returns true
 * (absorbed: the other side gets everything and a FIN) when the test header
 * says the transfer toward it was complete: -n bytes all delivered, or -t
 * within I2_END_MARGIN of its end.  Earlier, the peer died or gave up in the
 * middle of the test (a killed server): the reset is passed on, so that the
 * other side stops at once instead of sending into the void until its -t
 * ends.  Without a header length (2.0.10-2.0.13 plain mode), absorbed. */
static bool main_reset_ok(void *arg, const struct relay *r, int side)
{
    const struct sess *s = arg;
    if (!s->hdr.v1_valid)
        return true;
    const struct flow *toward = &r->f[side == SIDE_SERVER ? FLOW_C2S : FLOW_S2C];
    if (s->hdr.amount >= 0)
        return toward->bytes >= (uint64_t)s->hdr.amount;
    double planned = -(double)s->hdr.amount / 100.0;
    return ev_now(s->loop) - s->relay_t0 >= planned - I2_END_MARGIN;
}

static void main_done(void *arg, struct relay *r, enum relay_end how)
{
    struct sess *s = arg;
    s->bytes[0] = r->f[FLOW_C2S].bytes;
    s->bytes[1] = r->f[FLOW_S2C].bytes;
    s->main_end = how;
    s->reset_absorbed = r->reset_absorbed;
    end_reason_from_relay(&s->end, r, how);
    s->state = SESS_ENDED;
    s->main = NULL;
    relay_free(r);
    if (s->lfd >= 0)
        ev_timer_again(s->loop, &s->ltimer);   /* grace period for a late connect-back */
    sess_maybe_free(s);
}

static void main_connected(void *arg, int ufd, int err);

/* Connects to the least-loaded server of the pool.  Returns 0, or -1 with
 * the session closed (every server down, or no socket). */
static int sess_connect(struct sess *s)
{
    struct pool *p = &s->svc->pool2;
    if (s->direct) {   /* the server the client addressed */
        struct tcp_opts o = { .source = source_transparent(s) ? &s->client : NULL,
                              .mark = s->svc->cfg.transparent_mark };
        s->tries++;
        if (connector_start(&s->conn, s->loop, &s->server, s->server_len, &o,
                            s->svc->cfg.connect_timeout, main_connected, s) == -1) {
            sess_close(s, END_RESOURCES, errno, "no socket for the server connection");
            return -1;
        }
        return 0;
    }
    if (s->member_held) {
        pool_release_iperf2(p, &s->server);
        s->member_held = false;
    }
    int i = pool_pick_iperf2(p);
    if (i < 0) {
        sess_close(s, END_CONNECT_FAILED, EHOSTUNREACH, "every iperf2 server is down");
        return -1;
    }
    s->member_held = true;
    s->tries++;
    s->server = p->m[i].addr;
    s->server_len = p->m[i].len;
    if (connector_start(&s->conn, s->loop, &s->server, s->server_len,
                        NULL, s->svc->cfg.connect_timeout, main_connected, s) == -1) {
        sess_close(s, END_RESOURCES, errno, "no socket for the server connection");
        return -1;
    }
    return 0;
}

static void main_connected(void *arg, int ufd, int err)
{
    struct sess *s = arg;
    char c[ADDR_STR_MAX], u[ADDR_STR_MAX];
    struct pool *p = &s->svc->pool2;
    int i = pool_find(p, &s->server);

    if (ufd < 0) {
        if (i >= 0 && err != EMFILE && err != ENFILE && err != ENOBUFS)
            pool_member_failed(p, i, false, strerror(err));
        if (!s->direct && s->tries < p->n) {   /* another server may take it */
            log_info("iperf2 test from %s: server %s failed (%s), trying another",
                     addr_s(&s->client, c), addr_s(&s->server, u), strerror(err));
            sess_connect(s);
            return;
        }
        sess_close(s, END_CONNECT_FAILED, err, NULL);
        return;
    }
    if (i >= 0)
        pool_member_ok(p, i);
    if (s->hdr.connect_back && listener_open(s, ufd) == -1) {
        close(ufd);
        sess_close(s, END_RESOURCES, errno, "cannot open a connect-back port");
        return;
    }
    struct relay_opts o = {
        .splice = s->svc->cfg.use_splice, .idle = s->svc->cfg.idle_timeout, .done = main_done,
        .reset_ok = main_reset_ok, .arg = s,
    };
    struct relay *r = relay_new(s->loop, s->cfd, ufd, &o);
    if (r == NULL || relay_preload(r, FLOW_C2S, s->first, s->nfirst) == -1) {
        if (r) {
            r->fd[0] = r->fd[1] = -1;   /* the session still owns both fds */
            relay_free(r);
        }
        close(ufd);
        sess_close(s, END_RESOURCES, ENOMEM, "relay");
        return;
    }
    s->main = r;
    s->state = SESS_RELAYING;
    s->cfd = -1;
    if (s->hdr.connect_back)
        log_debug("iperf2 %s test from %s: server told to connect back to shim port %u "
                  "(client asked for %u)", i2_mode_name(s->hdr.mode), addr_s(&s->client, c),
                  s->back_port, s->hdr.port);
    s->relay_t0 = ev_now(s->loop);
    s->busy++;
    relay_start(r);
    s->busy--;
    sess_maybe_free(s);
}

void i2_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
               const struct sockaddr_storage *dst, const uint8_t *first, size_t n)
{
    char c[ADDR_STR_MAX];
    if (!service_open(svc)) {
        log_info("refusing iperf2 client %s: the shim is shutting down (draining)",
                 addr_s(peer, c));
        close(fd);
        return;
    }
    if (svc->cfg.max_tests_per_client > 0) {
        int mine = 0;
        for (const struct sess *o = svc->sessions; o; o = o->next)
            mine += net_same_host(&o->client, peer);
        if (mine >= svc->cfg.max_tests_per_client) {
            log_info("refusing iperf2 client %s: it already runs %d test(s) "
                     "(--max-tests-per-client %d)", addr_s(peer, c), mine,
                     svc->cfg.max_tests_per_client);
            close(fd);
            return;
        }
    }
    struct sess *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->first = malloc(n)) == NULL) {
        free(s);
        log_error("out of memory: refusing an iperf2 client");
        close(fd);
        return;
    }
    memcpy(s->first, first, n);
    s->nfirst = n;
    if (i2_tcp_hdr_parse(first, n, &s->hdr) != I2_OK) {   /* the front checked it */
        log_warn("closing client %s: iperf2 test header no longer parses", addr_s(peer, c));
        free(s->first);
        free(s);
        close(fd);
        return;
    }
    s->svc = svc;
    s->loop = svc->loop;
    s->started = time(NULL);
    s->t0 = ev_now(svc->loop);
    s->client = *peer;
    if (dst != NULL) {
        s->direct = true;
        s->server = *dst;
        s->server_len = dst->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                  : sizeof(struct sockaddr_in6);
    }
    s->cfd = fd;
    s->lfd = -1;
    s->next = svc->sessions;
    svc->sessions = s;
    svc->nsessions++;
    char ver[I2_VERSION_STR_MAX] = "2.0.x";   /* no version in its header */
    if (s->hdr.extended)
        i2_version_str(s->hdr.version_u, s->hdr.version_l, ver, sizeof(ver));
    log_debug("iperf2 %s test from %s (iperf %s)", i2_mode_name(s->hdr.mode), addr_s(peer, c),
              ver);
    s->state = SESS_CONNECTING;
    sess_connect(s);
}

void i2_close_all(struct service *svc)
{
    while (svc->sessions) {
        struct sess *s = svc->sessions;
        sess_close(s, END_SHUTDOWN, 0, NULL);
        if (svc->sessions == s)   /* still alive (deferred): should not happen */
            break;
    }
}
