#include "proxy/iperf3_test.h"

#include "compat/tcp_info.h"


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
    else if (t->end.cause != END_NONE)
        end_reason_str(&t->end, &t->server, outcome, sizeof(outcome));
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
    bool failed = t->denied || t->failure != NULL || t->server_gone != NULL ||
                  t->end.cause != END_NONE || (t->server_error && !t->err_after_results);
    log_msg(failed ? LOG_WARN : LOG_INFO,
            "test %s: client %s, server %s, mode %s, streams %d%s, roles %s, %s, %s%s%s%s, "
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
    i->ok = !t->denied && !(t->server_error && !t->err_after_results) && t->failure == NULL &&
            t->server_gone == NULL && t->end.cause == END_NONE;
    if (t->state != TEST_CLOSED)
        snprintf(i->outcome, sizeof(i->outcome), "%s", t->state == TEST_RUNNING ? "running"
                 : t->state == TEST_ENDING ? "ending" : "starting");
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

/* The lowest RTT the kernel measured on the test's control connection
 * toward `side`, in microseconds, or -1 (no control connection, or not
 * known).  It has exchanged messages both ways: the path's RTT. */
long ctrl_min_rtt_us(const struct test *t, int side)
{
    return t->ctrl && t->ctrl->fd[side] >= 0 ? tcp_min_rtt_us(t->ctrl->fd[side]) : -1;
}

/* Frees the test once nothing of it is alive. */
void test_maybe_free(struct test *t)
{
    if (t->busy > 0 || t->state != TEST_CLOSED || t->live_legs > 0 ||
        t->live_relays > 0)
        return;
    ctrl_stop_trying(t);
    test_release_member(t);
    assert(t->ctrl == NULL && t->cfd < 0);
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
    ev_timer_stop(t->loop, &t->limit_timer);
    ev_timer_stop(t->loop, &t->fence_timer);
    free(t->res[FLOW_C2S].buf);
    free(t->res[FLOW_S2C].buf);
    i3_ctrl_free(&t->parser);
    t->svc->ntests--;
    free(t);
}


/* Ends a test the shim cannot carry on: everything of it is reset. */
void test_fail(struct test *t, const char *why)
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
        t->state = TEST_CLOSED;
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
void server_left(struct test *t, const char *how)
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


#define DURATION_GRACE 5.0   /* s: a running test may exceed --max-duration by this much */

/* --max-duration: a refused test is closed (its SERVER_ERROR was sent to the
 * client: a FIN follows it), or a test runs past the limit plus a grace (a
 * -n or -k test, whose length the parameters do not bound). */
static void limit_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    if (t->refused) {
        t->failure = "refused: the client asked for more than --max-duration";
        t->busy++;
        if (t->ctrl)
            relay_abort(t->ctrl, false);
        t->busy--;
        test_maybe_free(t);
        return;
    }
    test_fail(t, "the test ran past --max-duration");
}


/* The client asked for -t above --max-duration (from the inspect hook of its
 * parameters): it gets what an iperf3 3.20+ server with --server-max-duration
 * answers, SERVER_ERROR 37, for servers of any version; the parameters are
 * held back, so the server never starts the test, and the test is closed
 * from the loop (closing from inside the hook would reset the client's
 * connection before it reads the error). */
static void refuse_duration(struct test *t)
{
    char who[ADDR_STR_MAX];
    const uint8_t msg[9] = { (uint8_t)I3_SERVER_ERROR, 0, 0, 0, I3_ERR_MAX_DURATION, 0, 0, 0, 0 };
    relay_hold(t->ctrl, FLOW_C2S, 0, 0);
    if (send(t->ctrl->fd[SIDE_CLIENT], msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
        log_debug("test %s: the refusal did not reach the client: %s", t->id, strerror(errno));
    log_warn("test %s: client %s asks for -t %" PRId64 " s, above --max-duration %g s: refused "
             "(SERVER_ERROR %d, as from iperf3 3.20's --server-max-duration)", t->id,
             addr_s(&t->client, who), t->params.time, t->svc->cfg.max_duration,
             I3_ERR_MAX_DURATION);
    t->refused = true;
    ev_timer_stop(t->loop, &t->params_timer);
    ev_timer_set(&t->limit_timer, 0, 0);
    ev_timer_start(t->loop, &t->limit_timer);
}


static void params_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    /* --handshake-timeout bounds it; old servers would stall everything meanwhile */
    test_fail(t, "the client sent no test parameters in time (the server blocks waiting)");
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
        if (u != t && creating_streams(u) && net_same_host(&u->client, &t->client))
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
            net_same_host(&u->client, &t->client) && (next == NULL || u->t0 < next->t0))
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
        if (t->state < TEST_RUNNING)
            t->state = TEST_RUNNING;
        t->running_at = ev_now(t->loop);
        if (t->svc->cfg.max_duration > 0) {   /* -n/-k tests are bounded at run time */
            ev_timer_set(&t->limit_timer, t->svc->cfg.max_duration + DURATION_GRACE, 0);
            ev_timer_start(t->loop, &t->limit_timer);
        }
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
                    if (cfg->max_duration > 0 && t->params.time > cfg->max_duration)
                        refuse_duration(t);
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
                    t->state = TEST_ENDING;
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
    end_reason_from_relay(&t->end, r, how);
    t->state = TEST_CLOSED;
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
    if (t->waiter.since > 0)   /* how long it waited, for its line */
        t->queued_for = ev_now(t->loop) - t->waiter.since;
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
    t->state = TEST_CLOSED;
    test_maybe_free(t);
}

static void ctrl_try(struct test *t);
static void ctrl_ask(struct test *t, int i);
static void ctrl_connect(struct test *t);
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
        if (t->last_err != 0)   /* the test's line says how: connect to X: refused */
            end_reason_set(&t->end, END_CONNECT_FAILED, t->last_err, NULL);
        ctrl_give_up(t, t->last_err != 0 ? NULL : "no server could take it", false);
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
    if (t->direct) {   /* the server the client addressed, asked once, as directly */
        if (t->tried == 0) {
            t->tried = 1;
            ctrl_connect(t);
        } else {
            if (t->last_err != 0)   /* the test's line says how: connect to X: refused */
                end_reason_set(&t->end, END_CONNECT_FAILED, t->last_err, NULL);
            ctrl_give_up(t, t->last_err != 0 ? NULL : "the server did not answer the cookie",
                         false);
        }
        return;
    }
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
    ctrl_connect(t);
}

/* Connects to t->server for the control connection (from the client's
 * address with --transparent-source). */
static void ctrl_connect(struct test *t)
{
    struct tcp_opts o = { .source = i3_upstream_source(t), .mark = t->svc->cfg.transparent_mark };
    t->phase = CTRL_CONNECTING;
    if (connector_start(&t->ctrl_conn, t->loop, &t->server, t->server_len, &o,
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
    t->state = TEST_SETUP;
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
    if (t->last_denied && !t->direct) {
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
        t->last_err = err;
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
        n += t->state != TEST_CLOSED && net_same_host(&t->client, peer);
    return n;
}


static void test_new(struct service *svc, int fd, const struct sockaddr_storage *peer,
                     const struct sockaddr_storage *dst, const uint8_t cookie[I3_COOKIE_SIZE])
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
    if (dst != NULL) {
        t->direct = true;
        t->server = *dst;
        t->server_len = dst->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                  : sizeof(struct sockaddr_in6);
    }
    t->cfd = fd;
    t->ufd = -1;
    t->waiter.wake = waiter_wake;
    ev_init(&t->role_timer, role_timeout_cb);
    t->role_timer.data = t;
    ev_init(&t->params_timer, params_timeout_cb);
    t->params_timer.data = t;
    ev_init(&t->limit_timer, limit_timeout_cb);
    t->limit_timer.data = t;
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
    t->state = TEST_CONNECTING;
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
               const struct sockaddr_storage *dst, const uint8_t cookie[I3_COOKIE_SIZE],
               const struct front_arrival *arr)
{
    for (struct test *t = svc->tests; t; t = t->next) {
        if (t->state != TEST_CLOSED && t->failure == NULL && t->ctrl != NULL &&
            memcmp(t->cookie, cookie, I3_COOKIE_SIZE) == 0) {
            data_new(t, fd, peer, arr);
            return;
        }
    }
    if (!service_open(svc)) {
        refuse_draining(fd, peer);
        return;
    }
    test_new(svc, fd, peer, dst, cookie);
}

int i3_udp_server(const struct service *svc, const struct sockaddr_storage *client,
                  struct sockaddr_storage *server, socklen_t *len)
{
    const struct test *creating = NULL, *running = NULL;
    int ncreating = 0;
    for (const struct test *t = svc->tests; t; t = t->next) {
        if (t->phase != CTRL_RELAYING || !udp_test(t) || t->streams_held ||
            !net_same_host(&t->client, client))
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
