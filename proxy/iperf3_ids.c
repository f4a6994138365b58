/* Per-stream results: the results JSON of both ends are held during
 * EXCHANGE_RESULTS and their stream ids renumbered, so that each stream's
 * line shows the numbers of the stream it really exchanged data with
 * (protocol/iperf3_results.h does the JSON). */
#include "proxy/iperf3_test.h"


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
void results_snapshot(struct test *t)
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
void results_hold(struct test *t, int d)
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
 * certain (protocol/stream_order.h: accept order when no handshake was held
 * up, else the source ports' order confirmed pair by pair by accept order or
 * the SYN-ACK times, or a sequential allocator's): order[k] = client leg of
 * the client's k-th stream.  The control connection's lowest RTT is the
 * path's, against which a handshake was held up.  Returns 0 with order[] and
 * *how set, or -1 with *why. */
static int client_creation_order(const struct test *t, int n, int *order, enum so_source *how,
                                 char *why, size_t whylen)
{
    long rtt = ctrl_min_rtt_us(t, SIDE_CLIENT);
    struct so_ctrl ctrl = { .port = (uint16_t)net_port((const struct sockaddr *)&t->client),
                            .min_rtt_us = rtt > 0 && rtt < UINT32_MAX ? (uint32_t)rtt : 0 };
    return so_creation_order(t->cl_seen, n, &ctrl, order, how, why, whylen);
}


/* Maps stream entries to relays by the client's creation order (see
 * client_creation_order): entry i is the client's i-th stream.  Sending
 * streams are checked against the bytes (exact after the fence), receiving
 * ones against what the shim wrote to them (an upper bound).  Returns 0
 * with map[] set, or -1 (order not certain, or the bytes disagree). */
static int results_map_by_order(struct test *t, const struct i3_rstream *ent, int n,
                                int *map)
{
    int order[I3_RESULTS_MAX_STREAMS], relay_of[I3_MAX_LEGS];
    if (client_creation_order(t, n, order, &t->res_how, t->res_order_why,
                              sizeof(t->res_order_why)) == -1)
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
        /* a receiving client cannot have read more than the shim wrote to
         * it: an order that says otherwise is wrong (seen once in 24 runs
         * of t_iperf3_reorder, -R -P 4 under ASan: "accept order", crossed) */
        if (!sends && (up != 0 || ent[i].bytes > pair_bytes_now(t, map[i], FLOW_S2C)))
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
    if (!t->res_by_order && results_map_by_bytes(t, ent, n, map, why, whylen) == -1) {
        if (t->res_order_why[0]) {   /* say why the order did not settle it either */
            size_t l = strlen(why);
            snprintf(why + l, whylen - l, "; creation order: %s", t->res_order_why);
        }
        return -1;
    }
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


/* How the client's entries were matched, for the test line. */
static const char *match_how(const struct test *t)
{
    if (!t->res_by_order)
        return "bytes";
    return t->res_how == SO_BY_ACCEPT      ? "accept order"
           : t->res_how == SO_BY_PORT_TIME ? "ports and SYN-ACK times"
                                           : "source ports (a sequential allocator's)";
}


/* The held results block of direction d is complete. */
static void results_finish(struct test *t, int d)
{
    char why[384];
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
                     "they were", t->res_n, match_how(t));
            return;
        }
        if (results_replace(t, d, t->res_cid, t->res_sid, t->res_n, why, sizeof(why)) == -1) {
            results_leave(t, d, why);
            return;
        }
        snprintf(t->res_note, sizeof(t->res_note), "%d of %d stream ids renumbered (matched by "
                 "%s; client's JSON)", moved, t->res_n, match_how(t));
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
void results_on_event(struct test *t, int d, const struct i3_event *ev,
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
