/* Unit tests for protocol/stream_order.c: the client's creation order of its
 * data connections.  A model of the client (streams created one after another,
 * each handshake clean, held up by a lost ACK and cookie, or with only its
 * cookie lost) generates what the shim observes; over every combination and
 * several accept lags the decision must never return a wrong order, and must
 * decide the cases the docs promise.  Plus ties, port wrap, missing
 * observations and hostile values. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "protocol/stream_order.h"

enum fate { CLEAN, LATE_COOKIE, HELD };

#define RTT    20        /* us, one handshake */
#define STEP   90        /* us between two creations (connect + cookie) */
#define RTO    200000    /* us, the client's retransmission timeout */
#define T0     1700000000000000LL

/* Observations of n streams created in order 0..n-1 with fates f[], shuffled
 * so that observation i is stream perm[i]; ports from ctrl + 2 in steps of 4;
 * the shim accepts each connection lag us after its handshake completes. */
static void model(const enum fate *f, int n, const int *perm, int64_t lag, uint16_t ctrl,
                  struct so_conn *c)
{
    int64_t acc[SO_MAX_CONNS];
    for (int k = 0; k < n; k++) {
        int s = perm[k];
        int64_t syn = T0 + (int64_t)s * STEP;   /* the SYN-ACK leaves */
        int64_t done = f[s] == HELD ? syn + RTO + s : syn + RTT;
        acc[k] = done + lag;
        c[k] = (struct so_conn){
            .port = (uint16_t)(ctrl + 2 + 4 * s),
            .rtt_us = (uint32_t)(done - syn),
            .accept_us = acc[k],
            .rx_us = f[s] == LATE_COOKIE ? done + RTO : f[s] == HELD ? done : done + 3,
        };
    }
    for (int k = 0; k < n; k++) {   /* accept order: by accept time */
        uint64_t seq = 1;
        for (int j = 0; j < n; j++)
            seq += acc[j] < acc[k] || (acc[j] == acc[k] && j < k);
        c[k].accept_seq = seq;
    }
}

/* model(), with the client's real source ports: ports[i] of observation i. */
static void model_ports(const enum fate *f, int n, const int *perm, uint16_t ctrl,
                        const uint16_t *ports, struct so_conn *c)
{
    model(f, n, perm, 5, ctrl, c);
    for (int k = 0; k < n; k++)
        c[k].port = ports[k];
}

/* order[] is the creation order of observations shuffled by perm[]: its
 * k-th entry is stream k. */
static void assert_creation_order(const int *perm, const int *order, int n)
{
    for (int k = 0; k < n; k++)
        assert_int_equal(perm[order[k]], k);
}

static int decide(const struct so_conn *c, int n, uint16_t ctrl, int *order, enum so_source *how)
{
    char why[256];
    struct so_ctrl cc = { .port = ctrl };
    return so_creation_order(c, n, &cc, order, how, why, sizeof(why));
}

static void order__every_fate_of_four_streams__never_wrong(void **state)
{
    (void)state;
    const int perms[3][4] = { { 0, 1, 2, 3 }, { 3, 1, 0, 2 }, { 2, 3, 1, 0 } };
    const int64_t lags[4] = { 0, 5, 60, 400 };
    int decided = 0, total = 0;
    for (int code = 0; code < 81; code++) {
        enum fate f[4];
        for (int k = 0, x = code; k < 4; k++, x /= 3)
            f[k] = (enum fate)(x % 3);
        for (int p = 0; p < 3; p++)
            for (int l = 0; l < 4; l++) {
                struct so_conn c[4];
                int order[4];
                enum so_source how;
                model(f, 4, perms[p], lags[l], 40000, c);
                total++;
                if (decide(c, 4, 40000, order, &how) == -1)
                    continue;
                decided++;
                assert_creation_order(perms[p], order, 4);
            }
    }
    assert_true(decided > total / 2);
}

static void order__no_handshake_held__accept_order(void **state)
{
    (void)state;
    enum fate f[3] = { CLEAN, LATE_COOKIE, CLEAN };
    int perm[3] = { 2, 0, 1 }, order[3];
    struct so_conn c[3];
    enum so_source how;
    model(f, 3, perm, 5, 40000, c);
    c[0].port = 1;   /* ports are not even looked at */
    assert_int_equal(decide(c, 3, 40000, order, &how), 0);
    assert_int_equal(how, SO_BY_ACCEPT);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 0);
}

static void order__first_stream_held_up__placed_by_its_syn_ack_time(void **state)
{
    (void)state;
    /* the case of t_iperf3_reorder: stream 0 accepted last */
    enum fate f[4] = { HELD, CLEAN, CLEAN, CLEAN };
    int perm[4] = { 0, 1, 2, 3 }, order[4];
    struct so_conn c[4];
    enum so_source how;
    model(f, 4, perm, 5, 40000, c);
    assert_int_equal(c[0].accept_seq, 4);
    assert_int_equal(decide(c, 4, 40000, order, &how), 0);
    assert_int_equal(how, SO_BY_PORT_TIME);
    for (int k = 0; k < 4; k++)
        assert_int_equal(order[k], k);
}

static void order__ports_alone_contradicted__refused(void **state)
{
    (void)state;
    /* a held stream whose port says "first" but whose SYN-ACK left last */
    enum fate f[3] = { CLEAN, CLEAN, HELD };
    int perm[3] = { 0, 1, 2 }, order[3];
    struct so_conn c[3];
    enum so_source how;
    model(f, 3, perm, 5, 40000, c);
    c[2].port = 40001;
    assert_int_equal(decide(c, 3, 40000, order, &how), -1);
}

/* Without the held-up stream's cookie time or RTT sample nothing times it:
 * only a sequential allocator's ports can place it. */
static void order__held_without_timestamp_or_rtt__ports_alone_or_refused(void **state)
{
    (void)state;
    enum fate f[3] = { HELD, CLEAN, CLEAN };
    int perm[3] = { 0, 1, 2 }, order[3];
    struct so_conn c[3];
    enum so_source how;
    model(f, 3, perm, 5, 40000, c);
    for (int spread = 0; spread < 2; spread++) {
        if (spread)
            for (int k = 0; k < 3; k++)
                c[k].port = (uint16_t)(40002 + 1000 * k);   /* in order, but far apart */
        struct so_conn keep = c[0];
        for (int miss = 0; miss < 3; miss++) {
            c[0] = keep;
            if (miss == 0)
                c[0].rx_us = 0;                 /* no SO_TIMESTAMPNS */
            else if (miss == 1)
                c[0].synack_retrans = true;     /* no handshake RTT sample */
            else
                c[0].rtt_us = 0;
            int rc = decide(c, 3, 40000, order, &how);
            if (spread) {
                assert_int_equal(rc, -1);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(how, SO_BY_PORT_RUN);
            }
        }
        c[0] = keep;
        for (int ctrl = 0; ctrl < 2; ctrl++) {   /* control port unknown, then known */
            assert_int_equal(decide(c, 3, ctrl ? 40000 : 0, order, &how), 0);
            assert_int_equal(how, SO_BY_PORT_TIME);
            for (int k = 0; k < 3; k++)
                assert_int_equal(order[k], k);
        }
        c[0].rx_us = 0;   /* 3 ports alone, without the control port: too few to decide */
        assert_int_equal(decide(c, 3, 0, order, &how), -1);
        c[0] = keep;
    }
}

/* The run t_iperf3_reorder left as it was (-R -P 4, kernel 6.18): ports
 * 42748 (held up), 42754 (cookie lost), 42758 (clean), 42766 (cookie lost)
 * above control port 42744, accepted 4th, 1st, 2nd, 3rd.  Nothing times the
 * held-up one against its neighbour, whose cookie was retransmitted too: the
 * ports of a sequential allocator decide that pair, the others confirm the
 * rest. */
static void order__held_next_to_lost_cookie__ports_of_a_sequential_allocator(void **state)
{
    (void)state;
    enum fate f[4] = { HELD, LATE_COOKIE, CLEAN, LATE_COOKIE };
    int perm[4] = { 1, 2, 3, 0 }, order[4];
    struct so_conn c[4];
    enum so_source how;
    model_ports(f, 4, perm, 42744, (const uint16_t[]){ 42754, 42758, 42766, 42748 }, c);
    assert_int_equal(c[3].accept_seq, 4);
    assert_int_equal(decide(c, 4, 42744, order, &how), 0);
    assert_int_equal(how, SO_BY_PORT_RUN);
    assert_creation_order(perm, order, 4);
}

/* The same, from a client whose ports are spread (a randomising allocator):
 * the unconfirmed pair cannot be decided. */
static void order__unconfirmed_pair_ports_spread__refused(void **state)
{
    (void)state;
    enum fate f[4] = { HELD, LATE_COOKIE, CLEAN, LATE_COOKIE };
    int perm[4] = { 1, 2, 3, 0 }, order[4];
    struct so_conn c[4];
    enum so_source how;
    char why[256];
    model(f, 4, perm, 5, 40000, c);
    for (int k = 0; k < 4; k++)
        c[k].port = (uint16_t)(40000 + 2 + 900 * perm[k]);
    assert_int_equal(so_creation_order(c, 4, &(struct so_ctrl){ .port = 40000 }, order, &how,
                                       why, sizeof(why)), -1);
    assert_non_null(strstr(why, "sequential allocator"));
    /* within SO_PORT_RUN per connection above the control port: decided */
    for (int k = 0; k < 4; k++)
        c[k].port = (uint16_t)(40000 + SO_PORT_RUN * (perm[k] + 1));
    assert_int_equal(decide(c, 4, 40000, order, &how), 0);
    assert_int_equal(how, SO_BY_PORT_RUN);
    c[0].port = (uint16_t)(40000 + SO_PORT_RUN * 4 + 1);   /* one port beyond */
    assert_int_equal(decide(c, 4, 40000, order, &how), -1);
}

/* Over every fate of four streams, a randomising allocator (ports spread
 * and in no relation to creation order): an order is returned only when the
 * observations prove it, and it is never wrong. */
static void order__every_fate_spread_ports__never_wrong(void **state)
{
    (void)state;
    const int perms[3][4] = { { 0, 1, 2, 3 }, { 3, 1, 0, 2 }, { 2, 3, 1, 0 } };
    const uint16_t spread[4] = { 43100, 40500, 41900, 40800 };   /* by creation */
    for (int code = 0; code < 81; code++) {
        enum fate f[4];
        for (int k = 0, x = code; k < 4; k++, x /= 3)
            f[k] = (enum fate)(x % 3);
        for (int p = 0; p < 3; p++) {
            struct so_conn c[4];
            int order[4];
            enum so_source how;
            model(f, 4, perms[p], 5, 40000, c);
            for (int k = 0; k < 4; k++)
                c[k].port = spread[perms[p][k]];
            if (decide(c, 4, 40000, order, &how) == -1)
                continue;
            assert_int_not_equal(how, SO_BY_PORT_RUN);
            assert_creation_order(perms[p], order, 4);
        }
    }
}

static void order__ports_wrap_past_65535__still_ordered(void **state)
{
    (void)state;
    enum fate f[3] = { HELD, CLEAN, CLEAN };
    int perm[3] = { 0, 1, 2 }, order[3];
    struct so_conn c[3];
    enum so_source how;
    model(f, 3, perm, 5, 65530, c);   /* ports 65532, 0, 4 */
    assert_int_equal(c[1].port, 0);
    assert_int_equal(decide(c, 3, 65530, order, &how), 0);
    for (int k = 0; k < 3; k++)
        assert_int_equal(order[k], k);
}

static void order__port_range_wrapped__refused(void **state)
{
    (void)state;
    /* 60999 -> 32768: Linux's range wrapped between two streams */
    enum fate f[2] = { HELD, CLEAN };
    int perm[2] = { 0, 1 }, order[2];
    struct so_conn c[2];
    enum so_source how;
    model(f, 2, perm, 5, 60990, c);
    c[1].port = 32768;
    assert_int_equal(decide(c, 2, 60990, order, &how), -1);
}

static void order__ties__refused(void **state)
{
    (void)state;
    enum fate f[2] = { HELD, CLEAN };
    int perm[2] = { 0, 1 }, order[2];
    struct so_conn c[2];
    enum so_source how;
    model(f, 2, perm, 5, 40000, c);
    struct so_conn keep = c[1];
    c[1].port = c[0].port;   /* same port */
    assert_int_equal(decide(c, 2, 40000, order, &how), -1);
    c[1] = keep;
    c[1].accept_seq = c[0].accept_seq;   /* same accept number */
    assert_int_equal(decide(c, 2, 40000, order, &how), -1);
    c[1] = keep;
    c[1].port = 40000;   /* the control connection's own port */
    assert_int_equal(decide(c, 2, 40000, order, &how), -1);
}

static void order__hostile_values__no_overflow_no_order(void **state)
{
    (void)state;
    struct so_conn c[2] = {
        { .accept_seq = 2, .port = 40002, .rtt_us = UINT32_MAX, .accept_us = INT64_MIN,
          .rx_us = INT64_MAX },
        { .accept_seq = 1, .port = 43006, .rtt_us = 1, .accept_us = INT64_MAX,
          .rx_us = INT64_MIN },
    };
    int order[SO_MAX_CONNS + 1];
    enum so_source how;
    assert_int_equal(decide(c, 2, 40000, order, &how), -1);
    c[1].port = 40006;   /* a sequential allocator's ports: they decide, nothing overflows */
    assert_int_equal(decide(c, 2, 40000, order, &how), 0);
    assert_int_equal(how, SO_BY_PORT_RUN);
    c[1].port = 43006;
    assert_int_equal(decide(c, 0, 40000, order, &how), -1);
    assert_int_equal(decide(c, SO_MAX_CONNS + 1, 40000, order, &how), -1);
    assert_int_equal(so_creation_order(c, 2, &(struct so_ctrl){ .port = 40000 }, order, &how,
                                       NULL, 0), -1);
}

static void order__one_stream__always(void **state)
{
    (void)state;
    struct so_conn c = { .accept_seq = 7, .rtt_us = 0 };
    int order[1];
    enum so_source how;
    /* held (RTT unknown), port and control port unknown: one stream, one order */
    assert_int_equal(decide(&c, 1, 0, order, &how), 0);
    assert_int_equal(order[0], 0);
    c.port = 40002;
    assert_int_equal(decide(&c, 1, 40000, order, &how), 0);
    assert_int_equal(order[0], 0);
}

/* The run t_iperf3_reorder left as it was before the lowest data port could
 * anchor the ports (-R -P 4, kernel 6.18): control port 51962, data ports
 * 59618..59652 (the allocator jumped after a held-up control connection);
 * three handshakes held up, every pair timed. */
static void order__control_port_far__data_ports_anchor(void **state)
{
    (void)state;
    enum fate f[4] = { HELD, HELD, CLEAN, HELD };
    int perm[4] = { 2, 3, 1, 0 }, order[4];
    struct so_conn c[4];
    enum so_source how;
    model_ports(f, 4, perm, 51962, (const uint16_t[]){ 59636, 59652, 59632, 59618 }, c);
    assert_int_equal(decide(c, 4, 51962, order, &how), 0);
    assert_int_equal(how, SO_BY_PORT_TIME);
    assert_creation_order(perm, order, 4);
    c[0].port = 59636 + SO_PORT_WINDOW;   /* no anchor either way */
    assert_int_equal(decide(c, 4, 51962, order, &how), -1);
}

/* Seen in t_iperf3_reorder (-P 4): every ACK and cookie lost, the four
 * retransmitted cookies completed the handshakes within 2 ms of one another
 * and in reverse order (RTT samples 201.6 to 203.5 ms).  Against the data
 * handshakes alone none looks held up and accept order is wrong; against the
 * control connection's RTT all are, and their SYN-ACK times order them. */
static void order__every_handshake_held__judged_by_the_control_rtt(void **state)
{
    (void)state;
    const uint32_t rtt[4] = { 203481, 202780, 202229, 201644 };   /* by creation */
    const uint16_t port[4] = { 50000, 50004, 50020, 50022 };
    struct so_conn c[4];
    int order[4];
    enum so_source how;
    char why[256];
    for (int s = 0; s < 4; s++) {
        int64_t syn = T0 + (int64_t)s * STEP;
        int64_t done = syn + rtt[s];
        c[3 - s] = (struct so_conn){ .accept_seq = (uint64_t)(4 - s), .port = port[s],
                                     .rtt_us = rtt[s], .accept_us = done + 5,
                                     .rx_us = done };
    }
    struct so_ctrl ctrl = { .port = 49994, .min_rtt_us = 25 };
    assert_int_equal(so_creation_order(c, 4, &ctrl, order, &how, why, sizeof(why)), 0);
    assert_int_equal(how, SO_BY_PORT_TIME);
    for (int k = 0; k < 4; k++)
        assert_int_equal(order[k], 3 - k);
    ctrl.min_rtt_us = 0;   /* unknown: the data handshakes alone say "none held" */
    assert_int_equal(so_creation_order(c, 4, &ctrl, order, &how, why, sizeof(why)), 0);
    assert_int_equal(how, SO_BY_ACCEPT);   /* wrong; the caller's byte checks catch it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(order__every_fate_of_four_streams__never_wrong),
        cmocka_unit_test(order__no_handshake_held__accept_order),
        cmocka_unit_test(order__first_stream_held_up__placed_by_its_syn_ack_time),
        cmocka_unit_test(order__ports_alone_contradicted__refused),
        cmocka_unit_test(order__held_without_timestamp_or_rtt__ports_alone_or_refused),
        cmocka_unit_test(order__held_next_to_lost_cookie__ports_of_a_sequential_allocator),
        cmocka_unit_test(order__unconfirmed_pair_ports_spread__refused),
        cmocka_unit_test(order__every_fate_spread_ports__never_wrong),
        cmocka_unit_test(order__ports_wrap_past_65535__still_ordered),
        cmocka_unit_test(order__port_range_wrapped__refused),
        cmocka_unit_test(order__ties__refused),
        cmocka_unit_test(order__hostile_values__no_overflow_no_order),
        cmocka_unit_test(order__one_stream__always),
        cmocka_unit_test(order__control_port_far__data_ports_anchor),
        cmocka_unit_test(order__every_handshake_held__judged_by_the_control_rtt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
