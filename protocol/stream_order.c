#include "protocol/stream_order.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#define HELD_SLACK_US 1000   /* held up: RTT >= 2 x the test's smallest + this */

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Sorts idx[0..n-1] by key[idx[k]] (distinct keys). */
static void sort_by(int *idx, const uint64_t *key, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && key[idx[j - 1]] > key[idx[j]]; j--) {
            int x = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = x;
        }
}

/* The cookie of c arrived within SO_LATE_COOKIE_US of its accept (or before
 * it): it was not retransmitted. */
static bool prompt(const struct so_conn *c)
{
    return c->rx_us > 0 && c->accept_us > 0 && c->rx_us - c->accept_us < SO_LATE_COOKIE_US;
}

/* The earliest time the shim knows something of c had arrived: its accept,
 * or its cookie if that came first.  Whatever was created after a
 * connection h arrived after h's SYN-ACK left. */
static int64_t seen_by(const struct so_conn *c)
{
    return c->rx_us > 0 && c->rx_us < c->accept_us ? c->rx_us : c->accept_us;
}

/* a is confirmed to have been created before b.  held: held-up flags. */
static bool confirmed(const struct so_conn *a, bool held_a, const struct so_conn *b,
                      bool held_b)
{
    if (a->accept_seq < b->accept_seq && !held_b)
        return true;   /* accept order, b not held up */
    /* a held-up connection's SYN-ACK time: its cookie completed the handshake */
    bool sa = held_a && prompt(a) && a->rtt_us > 0 && !a->synack_retrans;
    bool sb = held_b && prompt(b) && b->rtt_us > 0 && !b->synack_retrans;
    int64_t syn_a = a->rx_us - (int64_t)a->rtt_us, syn_b = b->rx_us - (int64_t)b->rtt_us;
    if (sa && sb)
        return syn_a < syn_b;
    if (sa && !held_b && prompt(b))
        return syn_a < b->rx_us;   /* b before a would put b's cookie before syn_a */
    if (sb && !held_a)
        return seen_by(a) < syn_b;   /* b before a would put syn_b before a's arrival */
    return false;
}

int so_creation_order(const struct so_conn *c, int n, uint16_t ctrl_port, int *order,
                      enum so_source *how, char *why, size_t whylen)
{
    bool held[SO_MAX_CONNS];
    uint64_t key[SO_MAX_CONNS];
    uint32_t min = UINT32_MAX;

    if (n < 1 || n > SO_MAX_CONNS)
        return fail(why, whylen, "%d connections (1..%d ordered)", n, SO_MAX_CONNS);
    for (int k = 0; k < n; k++) {
        for (int j = 0; j < k; j++)
            if (c[j].accept_seq == c[k].accept_seq)
                return fail(why, whylen, "connections %d and %d: same accept number", j + 1,
                            k + 1);
        if (c[k].rtt_us > 0 && !c[k].synack_retrans && c[k].rtt_us < min)
            min = c[k].rtt_us;
    }
    int nheld = 0;
    for (int k = 0; k < n; k++) {
        held[k] = c[k].rtt_us == 0 || c[k].synack_retrans ||
                  (uint64_t)c[k].rtt_us >= 2 * (uint64_t)min + HELD_SLACK_US;
        nheld += held[k];
        order[k] = k;
    }
    if (nheld == 0) {
        for (int k = 0; k < n; k++)
            key[k] = c[k].accept_seq;
        sort_by(order, key, n);
        *how = SO_BY_ACCEPT;
        return 0;
    }
    if (ctrl_port == 0)
        return fail(why, whylen, "%d handshake(s) held up, control connection's port unknown",
                    nheld);
    for (int k = 0; k < n; k++) {
        uint16_t d = (uint16_t)(c[k].port - ctrl_port);   /* wraps as the port space does */
        if (d == 0 || d > SO_PORT_WINDOW)
            return fail(why, whylen, "%d handshake(s) held up, and port %u of connection %d "
                        "is not within %d above the control connection's %u", nheld,
                        c[k].port, k + 1, SO_PORT_WINDOW, ctrl_port);
        key[k] = d;
        for (int j = 0; j < k; j++)
            if (key[j] == key[k])
                return fail(why, whylen, "connections %d and %d: same port %u", j + 1, k + 1,
                            c[k].port);
    }
    sort_by(order, key, n);
    for (int k = 0; k + 1 < n; k++) {
        int a = order[k], b = order[k + 1];
        if (!confirmed(&c[a], held[a], &c[b], held[b]))
            return fail(why, whylen, "%d handshake(s) held up, and neither accept order nor "
                        "SYN-ACK times confirm that port %u was created before port %u",
                        nheld, c[a].port, c[b].port);
    }
    *how = SO_BY_PORT_TIME;
    return 0;
}
