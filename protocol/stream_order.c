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
    /* prompt: rx_us > 0, so these cannot overflow */
    int64_t syn_a = sa ? a->rx_us - (int64_t)a->rtt_us : 0;
    int64_t syn_b = sb ? b->rx_us - (int64_t)b->rtt_us : 0;
    if (sa && sb)
        return syn_a < syn_b;
    if (sa && !held_b && prompt(b))
        return syn_a < b->rx_us;   /* b before a would put b's cookie before syn_a */
    if (sb && !held_a)
        return seen_by(a) < syn_b;   /* b before a would put syn_b before a's arrival */
    return false;
}

/* key[k]: port k's distance above an anchor, for the candidate order.  The
 * anchor is the control connection's port when every data port lies within
 * SO_PORT_WINDOW above it (the client's allocator went on from there,
 * wrapping in its range as it may): *by_ctrl.  Else (control port unknown,
 * or the allocator jumped between the control and the data connections) the
 * lowest data port, when all lie within SO_PORT_WINDOW of it (not wrapped).
 * Returns 0, or -1 if neither. */
static int port_keys(const struct so_conn *c, int n, uint16_t ctrl_port, uint64_t *key,
                     bool *by_ctrl)
{
    *by_ctrl = ctrl_port != 0;
    for (int k = 0; k < n && *by_ctrl; k++) {
        uint16_t d = (uint16_t)(c[k].port - ctrl_port);   /* wraps as the port space does */
        *by_ctrl = d != 0 && d <= SO_PORT_WINDOW;
        key[k] = d;
    }
    if (*by_ctrl)
        return 0;
    uint16_t lo = UINT16_MAX;
    for (int k = 0; k < n; k++)
        if (c[k].port < lo)
            lo = c[k].port;
    for (int k = 0; k < n; k++) {
        key[k] = (uint64_t)(c[k].port - lo) + 1;
        if (key[k] > SO_PORT_WINDOW)
            return -1;
    }
    return 0;
}

int so_creation_order(const struct so_conn *c, int n, const struct so_ctrl *ctrl, int *order,
                      enum so_source *how, char *why, size_t whylen)
{
    bool held[SO_MAX_CONNS];
    uint64_t key[SO_MAX_CONNS];
    uint32_t min = ctrl->min_rtt_us > 0 ? ctrl->min_rtt_us : UINT32_MAX;

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
    bool by_ctrl;
    if (port_keys(c, n, ctrl->port, key, &by_ctrl) == -1)
        return fail(why, whylen, "%d handshake(s) held up, and the data connections' ports "
                    "are not within %d above the control connection's %u, nor within %d of "
                    "one another", nheld, SO_PORT_WINDOW, ctrl->port, SO_PORT_WINDOW);
    for (int k = 0; k < n; k++)
        for (int j = 0; j < k; j++)
            if (key[j] == key[k])
                return fail(why, whylen, "connections %d and %d: same port %u", j + 1, k + 1,
                            c[k].port);
    sort_by(order, key, n);
    /* every pair the observations order must agree with the ports */
    for (int k = 0; k < n; k++)
        for (int j = k + 1; j < n; j++) {
            int a = order[k], b = order[j];
            if (confirmed(&c[b], held[b], &c[a], held[a]))
                return fail(why, whylen, "%d handshake(s) held up, and port %u was created "
                            "after port %u: the ports do not follow creation order", nheld,
                            c[a].port, c[b].port);
        }
    int unconfirmed = 0;
    uint16_t first = 0, last = 0;
    for (int k = 0; k + 1 < n; k++) {
        int a = order[k], b = order[k + 1];
        if (!confirmed(&c[a], held[a], &c[b], held[b]) && unconfirmed++ == 0) {
            first = c[a].port;
            last = c[b].port;
        }
    }
    if (unconfirmed == 0) {
        *how = SO_BY_PORT_TIME;
        return 0;
    }
    /* a randomising allocator of R ports lands n ports within SO_PORT_RUN * n
     * above the control port with a probability of about (SO_PORT_RUN n / R)^n,
     * n ports that close to one another of about n (SO_PORT_RUN n / R)^(n-1):
     * with R = 16384 (macOS, FreeBSD) 1.5e-5 for 2 connections and 4e-9 for
     * 4 with the control port, 2e-6 for 4 without it (3 would be 2e-4) */
    if (key[order[n - 1]] > (uint64_t)SO_PORT_RUN * (uint64_t)n || (!by_ctrl && n < 4))
        return fail(why, whylen, "%d handshake(s) held up, neither accept order nor SYN-ACK "
                    "times confirm that port %u was created before port %u, and the ports "
                    "span %u above %s (a sequential allocator's are within %d%s)", nheld,
                    first, last, (unsigned)key[order[n - 1]],
                    by_ctrl ? "the control connection's" : "the lowest, the control "
                    "connection's being far", SO_PORT_RUN * n,
                    by_ctrl ? "" : ", and 4 connections are needed without the control "
                    "connection's");
    *how = SO_BY_PORT_RUN;
    return 0;
}
