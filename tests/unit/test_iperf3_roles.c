/* Unit tests for protocol/iperf3_roles.c: the --bidir pairing decision.
 * Every accept order of the client's and the server's connections (P = 1..3,
 * all permutations of which connections are senders) must pair each client
 * sender with a server receiver and each client receiver with a server
 * sender, every connection exactly once; too few known senders waits, too
 * many falls back to arrival order. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "protocol/iperf3_roles.h"

#define S I3_ROLE_SENDER
#define R I3_ROLE_RECEIVER
#define U I3_ROLE_UNKNOWN

static void check_pairs(const enum i3_role *c, const enum i3_role *s, int P, int pairs[][2])
{
    int used_c[16] = { 0 }, used_s[16] = { 0 };
    for (int j = 0; j < 2 * P; j++) {
        int ci = pairs[j][0], si = pairs[j][1];
        assert_in_range(ci, 0, 2 * P - 1);
        assert_in_range(si, 0, 2 * P - 1);
        assert_int_equal(used_c[ci]++, 0);
        assert_int_equal(used_s[si]++, 0);
        /* a client sender meets a server receiver (unknown = receiver), and vice versa */
        bool c_sends = c[ci] == S, s_sends = s[si] == S;
        assert_true(c_sends != s_sends);
    }
}

static void pair__arrival_order_as_iperf3_expects__straight(void **state)
{
    (void)state;
    enum i3_role c[4] = { S, S, R, R }, s[4] = { R, R, S, S };
    int pairs[4][2];
    assert_int_equal(i3_pair_by_role(c, s, 2, pairs), I3_PAIR_BY_ROLE);
    check_pairs(c, s, 2, pairs);
    for (int j = 0; j < 4; j++)
        assert_int_equal(pairs[j][0], pairs[j][1]);   /* nothing re-paired */
}

static void pair__crossed_roles_on_either_leg__re_paired(void **state)
{
    (void)state;
    /* the race: a client sender arrived after a receiver on the client leg, and
     * the server saw its connections in yet another order */
    enum i3_role c[4] = { S, R, S, R }, s[4] = { R, S, R, S };
    int pairs[4][2];
    assert_int_equal(i3_pair_by_role(c, s, 2, pairs), I3_PAIR_BY_ROLE);
    check_pairs(c, s, 2, pairs);
}

static void pair__unknown_roles_once_p_senders_known__receivers(void **state)
{
    (void)state;
    enum i3_role c[4] = { S, U, U, S }, s[4] = { U, S, S, U };
    int pairs[4][2];
    assert_int_equal(i3_pair_by_role(c, s, 2, pairs), I3_PAIR_BY_ROLE);
    check_pairs(c, s, 2, pairs);
}

static void pair__too_few_senders__waits(void **state)
{
    (void)state;
    enum i3_role c[4] = { S, U, U, U }, s[4] = { S, S, U, U };
    int pairs[4][2];
    memset(pairs, 0x55, sizeof(pairs));
    assert_int_equal(i3_pair_by_role(c, s, 2, pairs), I3_PAIR_WAIT);
    assert_int_equal(pairs[0][0], 0x55555555);   /* untouched */
}

static void pair__more_senders_than_p__by_order(void **state)
{
    (void)state;
    enum i3_role c[4] = { S, S, S, U }, s[4] = { R, R, S, S };
    int pairs[4][2];
    assert_int_equal(i3_pair_by_role(c, s, 2, pairs), I3_PAIR_BY_ORDER);
    enum i3_role c2[4] = { S, S, R, R }, s2[4] = { S, S, S, R };
    assert_int_equal(i3_pair_by_role(c2, s2, 2, pairs), I3_PAIR_BY_ORDER);
}

/* Every placement of P senders among 2P connections, on both legs. */
static void pair__every_order_p1_to_p3__valid_bijection(void **state)
{
    (void)state;
    for (int P = 1; P <= 3; P++) {
        int n = 2 * P, tried = 0;
        for (unsigned cm = 0; cm < (1u << n); cm++) {
            if (__builtin_popcount(cm) != P)
                continue;
            for (unsigned sm = 0; sm < (1u << n); sm++) {
                if (__builtin_popcount(sm) != P)
                    continue;
                enum i3_role c[6], s[6];
                for (int i = 0; i < n; i++) {
                    c[i] = (cm >> i) & 1 ? S : U;
                    s[i] = (sm >> i) & 1 ? S : U;
                }
                int pairs[6][2];
                assert_int_equal(i3_pair_by_role(c, s, P, pairs), I3_PAIR_BY_ROLE);
                check_pairs(c, s, P, pairs);
                tried++;
            }
        }
        assert_true(tried > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pair__arrival_order_as_iperf3_expects__straight),
        cmocka_unit_test(pair__crossed_roles_on_either_leg__re_paired),
        cmocka_unit_test(pair__unknown_roles_once_p_senders_known__receivers),
        cmocka_unit_test(pair__too_few_senders__waits),
        cmocka_unit_test(pair__more_senders_than_p__by_order),
        cmocka_unit_test(pair__every_order_p1_to_p3__valid_bijection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
