#include "proxy/iperf3_test.h"


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
        snprintf(outcome, sizeof(outcome), "server refused the test (ACCESS_DENIED: busy)");
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
            "test %s: client %s, server %s, mode %s, streams %d%s, roles %s, %s, %s%s%s%s",
            t->id, addr_s(&t->client, c), addr_s(&t->server, s),
            t->have_params ? i3_params_mode(&t->params) : "unknown",
            t->have_params ? t->params.parallel : t->nlegs[SIDE_CLIENT],
            t->have_params && t->params.bidir ? " each way" : "",
            roles_text(t, roles, sizeof(roles)), bytes, outcome,
            fence_text(t, fence, sizeof(fence)), t->res_note[0] ? ", results: " : "",
            t->res_note);
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


/* Frees the test once nothing of it is alive. */
void test_maybe_free(struct test *t)
{
    if (t->busy > 0 || t->state != TEST_CLOSED || t->live_legs > 0 ||
        t->live_relays > 0)
        return;
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
    if (t->state == TEST_CONNECTING) {
        connector_cancel(&t->ctrl_conn);
        net_close_reset(t->cfd);
        t->cfd = -1;
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

static void on_server_state(struct test *t, int8_t st)
{
    t->server_state = st;
    switch (st) {
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
                on_server_state(t, ev.state);
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
    t->ctrl = NULL;
    end_reason_from_relay(&t->end, r, how);
    t->state = TEST_CLOSED;
    relay_free(r);
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


static void ctrl_connected(void *arg, int ufd, int err)
{
    struct test *t = arg;

    if (ufd < 0) {
        end_reason_set(&t->end, END_CONNECT_FAILED, err, NULL);
        net_close_reset(t->cfd);
        t->cfd = -1;
        t->state = TEST_CLOSED;
        test_maybe_free(t);
        return;
    }
    /* iperf3 sets TCP_NODELAY on its control sockets: each state byte must go
     * out at once.  With Nagle a message would wait for the delayed ACK of the
     * one before (~40 ms): in -R UDP tests the server's first datagrams then
     * arrive before the client knows the test runs, and count as lost. */
    struct tcp_opts nodelay = { .nodelay = 1 };
    tcp_opts_apply(t->cfd, &nodelay);
    tcp_opts_apply(ufd, &nodelay);
    struct relay_opts o = {
        .splice = false, .idle = t->svc->cfg.idle_timeout, .activity = &t->act,
        .inspect = ctrl_inspect, .done = ctrl_done, .arg = t,
    };
    t->ctrl = relay_new(t->loop, t->cfd, ufd, &o);
    if (t->ctrl == NULL || relay_preload(t->ctrl, FLOW_C2S, t->cookie, I3_COOKIE_SIZE) == -1) {
        if (t->ctrl) {
            t->ctrl->fd[0] = t->ctrl->fd[1] = -1;
            relay_free(t->ctrl);
            t->ctrl = NULL;
        }
        close(ufd);
        net_close_reset(t->cfd);
        t->cfd = -1;
        end_reason_set(&t->end, END_RESOURCES, ENOMEM, "control relay");
        t->state = TEST_CLOSED;
        test_maybe_free(t);
        return;
    }
    t->cfd = -1;
    t->state = TEST_SETUP;
    relay_start(t->ctrl);   /* may end (and free t) at once */
}


static void test_new(struct service *svc, int fd, const struct sockaddr_storage *peer,
                     const uint8_t cookie[I3_COOKIE_SIZE])
{
    struct test *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        log_error("out of memory: refusing an iperf3 client");
        close(fd);
        return;
    }
    t->svc = svc;
    t->loop = svc->loop;
    t->server = svc->cfg.upstream_addr;
    t->server_len = svc->cfg.upstream_len;
    t->started = time(NULL);
    t->t0 = ev_now(svc->loop);
    memcpy(t->cookie, cookie, I3_COOKIE_SIZE);
    for (int i = 0; i < 8; i++)
        t->id[i] = (cookie[i] >= 0x21 && cookie[i] <= 0x7e) ? (char)cookie[i] : '?';
    t->client = *peer;
    t->cfd = fd;
    ev_init(&t->role_timer, role_timeout_cb);
    t->role_timer.data = t;
    ev_init(&t->params_timer, params_timeout_cb);
    t->params_timer.data = t;
    ev_init(&t->limit_timer, limit_timeout_cb);
    t->limit_timer.data = t;
    ev_init(&t->fence_timer, fence_timer_cb);
    t->fence_timer.data = t;
    i3_ctrl_init(&t->parser, t->svc->cfg.params_max, t->svc->cfg.results_max);
    struct i3_event ev;
    i3_ctrl_feed(&t->parser, I3_C2S, cookie, I3_COOKIE_SIZE, &ev);   /* the cookie */
    t->next = svc->tests;
    svc->tests = t;
    svc->ntests++;

    char who[ADDR_STR_MAX];
    log_debug("test %s: control connection from %s", t->id, addr_s(peer, who));
    t->state = TEST_CONNECTING;
    if (connector_start(&t->ctrl_conn, t->loop, &t->server, t->server_len, NULL,
                        t->svc->cfg.connect_timeout, ctrl_connected, t) == -1) {
        end_reason_set(&t->end, END_RESOURCES, errno, "no socket for the server connection");
        close(fd);
        t->cfd = -1;
        t->state = TEST_CLOSED;
        test_maybe_free(t);
    }
}


/* A new test while the service drains: the client gets what a busy server
 * answers, ACCESS_DENIED ("the server is busy running a test"), and the
 * connection is closed. */
static void refuse_draining(int fd, const struct sockaddr_storage *peer)
{
    char who[ADDR_STR_MAX];
    int8_t denied = I3_ACCESS_DENIED;
    log_info("refusing iperf3 client %s: the shim is shutting down (draining)",
             addr_s(peer, who));
    if (send(fd, &denied, 1, MSG_NOSIGNAL) != 1)
        log_debug("could not tell %s: %s", who, strerror(errno));
    close(fd);
}


void i3_accept(struct service *svc, int fd, const struct sockaddr_storage *peer,
               const uint8_t cookie[I3_COOKIE_SIZE], uint64_t accept_seq)
{
    for (struct test *t = svc->tests; t; t = t->next) {
        if (t->state != TEST_CLOSED && t->failure == NULL && t->ctrl != NULL &&
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


void i3_close_all(struct service *svc)
{
    while (svc->tests) {
        struct test *t = svc->tests;
        test_fail(t, "the shim is shutting down");
        if (svc->tests == t)   /* still alive (deferred): unlink by force */
            break;
    }
}
