/* iperf3 data connections: one upstream connection per client data
 * connection, opened one at a time in order; roles learned from the traffic
 * and --bidir pairs made by role; the data relays. */
#include "proxy/iperf3_test.h"

#include "compat/tcp_info.h"


void leg_free(struct leg *l, bool close_fd, bool reset)
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


/* ------------------------------------------------------------ data relays */

static void data_done(void *arg, struct relay *r, enum relay_end how)
{
    struct test *t = arg;
    t->bytes[FLOW_C2S] += r->f[FLOW_C2S].bytes;
    t->bytes[FLOW_S2C] += r->f[FLOW_S2C].bytes;
    /* the server closes its streams only after the client's TEST_END */
    if (r->err_side == SIDE_SERVER && t->state < TEST_ENDING &&
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


/* The lowest RTT measured toward `side`'s peer, in microseconds, or -1: the
 * lower of the data connection's own and the test's control connection's on
 * that side (the control connection has exchanged messages both ways, while a
 * data connection's only sample may be a handshake held up by a lost packet). */
static long path_min_rtt_us(const struct test *t, int fd, int side)
{
    long rtt = tcp_min_rtt_us(fd);
    long c = ctrl_min_rtt_us(t, side);
    if (c >= 0 && (rtt < 0 || c < rtt))
        rtt = c;
    return rtt;
}


/* Is the path toward `side` longer than a DATA_RCVBUF window can carry at
 * DATA_RATE_BOUND (lowest RTT over about 0.4 ms: a WAN, a VPN)?  Judged once
 * per test and side, at its first data connection `fd`, so that the receive
 * cap and the copy mode of every connection on that side agree.  An RTT the
 * kernel does not tell is short: the shim behaves as it did before it looked. */
static bool side_path_long(struct test *t, int fd, int side)
{
    if (t->path[side] == PATH_UNJUDGED) {
        long rtt = path_min_rtt_us(t, fd, side);
        bool lng = rtt >= 0 && (double)rtt * 1e-6 * DATA_RATE_BOUND / 8 > (double)DATA_RCVBUF;
        t->path[side] = lng ? PATH_LONG : PATH_SHORT;
        if (lng)
            log_debug("test %s: %s path RTT %.3f ms: its data connections' receive buffers "
                      "are left to the kernel, data toward it is copied", t->id,
                      side == SIDE_CLIENT ? "client" : "server", (double)rtt / 1000);
    }
    return t->path[side] == PATH_LONG;
}


/* Relays a client leg to a server leg, delivering held bytes first.  Both
 * legs are consumed.  A flow toward a long path copies instead of splicing:
 * spliced, its send queue holds the pages the other leg received, and with
 * the queue a long path needs the kernel's send-buffer limit was reached
 * sooner (-R over 50 ms: 0.87 to 0.90 of direct spliced, 1.00 copied;
 * docs/notes.md). */
static void start_pair(struct test *t, struct leg *cl, struct leg *sl)
{
    struct relay_opts o = {
        .splice = t->svc->cfg.use_splice, .kind = RELAY_BULK, .idle = t->svc->cfg.idle_timeout,
        .activity = &t->act, .done = data_done, .arg = t,
    };
    o.copy[FLOW_S2C] = side_path_long(t, cl->fd, SIDE_CLIENT);
    o.copy[FLOW_C2S] = side_path_long(t, sl->fd, SIDE_SERVER);
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


static const char *role_name(enum i3_role r)
{
    return r == I3_ROLE_SENDER ? "sender" : r == I3_ROLE_RECEIVER ? "receiver" : "unknown";
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
static void pair_by_role(struct test *t, const int pairs[][2], const enum i3_role *met)
{
    char who[ADDR_STR_MAX];
    t->paired = true;
    t->busy++;
    /* legs are looked up again for every pair: a failed start frees them all */
    for (int j = 0; j < 2 * t->params.parallel && t->failure == NULL; j++) {
        struct leg *cl = t->legs[SIDE_CLIENT][pairs[j][0]], *sl = t->legs[SIDE_SERVER][pairs[j][1]];
        if (cl == NULL || sl == NULL)
            break;
        if (cl->index != sl->index) {
            t->repaired++;
            log_info("bidir roles fixed: client %s %s -> server %s (test %s: in arrival "
                     "order it would have met a server %s)", role_name(cl->role),
                     addr_s(&cl->peer, who), role_name(sl->role), t->id,
                     role_name(met[cl->index]));
        }
        start_pair(t, cl, sl);
    }
    t->busy--;
}


/* Decides roles when enough is known; pairs when both sides are decided. */
void try_pair(struct test *t)
{
    if (!hold_mode(t) || t->state < TEST_RUNNING)
        return;
    int P = t->params.parallel, want = 2 * P, pairs[I3_MAX_LEGS][2];
    enum i3_role roles[2][I3_MAX_LEGS];
    for (int s = 0; s < 2; s++) {
        if (t->nlegs[s] < want)
            return;
        for (int i = 0; i < want; i++) {
            struct leg *l = t->legs[s][i];
            if (l == NULL || !l->ready)
                return;
            roles[s][i] = l->role;
        }
    }
    switch (i3_pair_by_role(roles[SIDE_CLIENT], roles[SIDE_SERVER], P, pairs)) {
    case I3_PAIR_WAIT:
        return;   /* wait for more senders to speak */
    case I3_PAIR_BY_ORDER:
        log_warn("test %s: more senders than --bidir -P %d allows: pairing in arrival order",
                 t->id, P);
        t->paired = t->fallback = true;
        pair_by_order(t);
        return;
    case I3_PAIR_BY_ROLE:
        break;
    }
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < want; i++)
            if (t->legs[s][i]->role == I3_ROLE_UNKNOWN)
                t->legs[s][i]->role = roles[s][i] = I3_ROLE_RECEIVER;
    ev_timer_stop(t->loop, &t->role_timer);
    pair_by_role(t, pairs, roles[SIDE_SERVER]);
}


void role_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct test *t = w->data;
    if (!hold_mode(t))
        return;
    int senders[2] = { 0, 0 };
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < t->nlegs[s]; i++)
            if (t->legs[s][i] && t->legs[s][i]->role == I3_ROLE_SENDER)
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
        if (l->role == I3_ROLE_UNKNOWN) {
            l->role = I3_ROLE_SENDER;
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
    struct tcp_opts o = { .source = i3_upstream_source(t), .mark = t->svc->cfg.transparent_mark };
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


/* The buffers of a data connection (either leg): every byte in them at the
 * end of a test is one the sender has counted and nobody has received yet.
 * At the end of a test they are what the fence has to flush (the server
 * sending on meanwhile, in --bidir), and server->client bytes the client will
 * never count.
 *
 * Receive side: capped unless the client asked for a window (-w, applied as
 * asked).  Autotuned, each socket that the shim reads from grows to
 * tcp_rmem's maximum (32 MiB here) whenever the shim lags.  Measured on
 * loopback (docs/notes.md): with 512 KiB, --bidir -P 8 server->client went
 * from 13.5 points below direct to within 2, -R -P 4 from 3.7 to 0.5, the
 * fence from 880 to 140 ms, at no cost in throughput.
 * The cap is a window, and a window limits a stream to window / RTT: only a
 * path short enough for it to carry DATA_RATE_BOUND is capped (lowest RTT up
 * to about 0.4 ms: loopback, a LAN).  A longer one (a WAN, a VPN) keeps the
 * kernel's autotuning, as the server has directly: capped, a 50 ms path
 * measured 99 Mbit/s client to server through the shim against 507 directly
 * (t_wan_window.sh).
 *
 * Send side: a bounded unsent queue (TCP_NOTSENT_LOWAT: the kernel takes
 * more from the relay only below it).  When the receiver is the slowest of
 * the three processes, the shim's send queue otherwise fills to tcp_wmem's
 * maximum (4 MiB per connection) with bytes its peer's window does not take:
 * 31 MB of the 72 the client of a --bidir -P 8 never counted (shim on its
 * own CPU); with 1 MiB 7 to 8 MB, 49 to 54 MB never counted, and the fence
 * took 21 ms instead of 30 (docs/notes.md).  Unsent bytes do not limit what
 * is in flight, so a long path is not slowed.  But the queue must outlast
 * the loop's wake-up interval (--batch-interval, 0.5 ms: 1.6 MB at one
 * stream's 26 Gbit/s): 1 MiB cost one stream a fifth of its throughput,
 * and 128 KiB cost --bidir -P 8 four fifths.  So DATA_NOTSENT_BUDGET per
 * direction is shared by the test's streams, at least DATA_NOTSENT_MIN
 * each: 8 streams get 1 MiB each, one stream 8 MiB (more than tcp_wmem's
 * 4 MiB lets it queue: no bound). */
static int data_notsent_lowat(const struct test *t)
{
    int p = t->have_params && t->params.parallel > 1 ? t->params.parallel : 1;
    int v = DATA_NOTSENT_BUDGET / p;
    return v < DATA_NOTSENT_MIN ? DATA_NOTSENT_MIN : v;
}


static void data_leg_buffers(struct test *t, int fd, int side)
{
#ifdef TCP_NOTSENT_LOWAT
    int lowat = data_notsent_lowat(t);
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
#endif
    int v = DATA_RCVBUF;
    if (t->have_params && t->params.window > 0)
        return;
    if (side_path_long(t, fd, side))
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
    data_leg_buffers(t, fd, SIDE_SERVER);
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
void data_new(struct test *t, int fd, const struct sockaddr_storage *peer,
              const struct front_arrival *arr)
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
    t->cl_seen[idx] = (struct so_conn){ .accept_seq = arr->seq, .port = (uint16_t)net_port((const struct sockaddr *)peer),
                                        .rtt_us = ti.tcpi_rtt,
                                        .synack_retrans = ti.tcpi_total_retrans > 0,
                                        .accept_us = arr->accepted_us,
                                        .rx_us = arr->first_rx_us };

    struct tcp_opts o = test_tcp_opts(t);
    tcp_opts_apply(fd, &(struct tcp_opts){ .bufsize = o.bufsize, .nodelay = o.nodelay });
    data_leg_buffers(t, fd, SIDE_CLIENT);
    log_debug("test %s: data connection #%d from %s: accept #%" PRIu64 ", handshake RTT %u us%s, "
              "cookie %.3f ms after the accept", t->id, idx + 1, addr_s(peer, who), arr->seq,
              ti.tcpi_rtt, ti.tcpi_total_retrans ? " (SYN-ACK retransmitted)" : "",
              arr->first_rx_us ? (double)(arr->first_rx_us - arr->accepted_us) / 1000 : 0.0);
    if (hold_mode(t))
        leg_hold(cl);
    t->busy++;
    upstream_open_next(t);
    t->busy--;
    test_maybe_free(t);
}


/* Opens the next upstream data connection, unless one is still on its way
 * (see server_leg_wait_ack): the server must accept them in this order. */
void upstream_open_next(struct test *t)
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
