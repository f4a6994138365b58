/* The end-of-test fence: the client's TEST_END waits on the control relay
 * until the server has acknowledged every data byte the client sent before
 * it (docs/accuracy.md). */
#include "proxy/iperf3_test.h"


/* The fence's part of the test line (", end-of-test fence: ..."), or "". */
const char *fence_text(const struct test *t, char *buf, size_t n)
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


void fence_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
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
void fence_begin(struct test *t, size_t at, int8_t st)
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
