/*
 * Unit tests of iperf3 version parsing and version predicates
 * (compat/iperf3_compat.c).  The version strings are the AC_INIT versions
 * found in esnet/iperf history.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/iperf3_compat.h"

/* Parses <s> and checks the result against <maj>.<min>. */
static void expect_version(const char *s, int maj, int min)
{
    int major = -7, minor = -7;

    if (i3_version_parse(s, &major, &minor) != 0)
        fail_msg("\"%s\" rejected", s);
    assert_int_equal(major, maj);
    assert_int_equal(minor, min);
}

static void version_parse__release_versions__major_minor(void **state)
{
    (void)state;
    expect_version("3.12", 3, 12);
    expect_version("3.9", 3, 9);
    expect_version("3.0", 3, 0);
    expect_version("3.21", 3, 21);
    expect_version("3.21.1", 3, 21);
    expect_version("3.10.1", 3, 10);
    expect_version("3.0.11", 3, 0);
    expect_version("4.0", 4, 0);
}

static void version_parse__prerelease_and_dev_suffixes__major_minor(void **state)
{
    (void)state;
    expect_version("3.1b3", 3, 1);
    expect_version("3.0a4", 3, 0);
    expect_version("3.2rc1", 3, 2);
    expect_version("3.21+", 3, 21);
    expect_version("3.9+", 3, 9);
    expect_version("3.13-mt-beta3", 3, 13);
    expect_version("3.16-beta1", 3, 16);
}

static void version_parse__malformed__rejected_outputs_untouched(void **state)
{
    static const char *const bad[] = {
        "", "3", "3.", ".12", "3-CURRENT", "x3.12", " 3.12", "3.12 ", "3.12\n",
        "3..12", "3.12.", "3.12,1", "-3.12", "+3.12", "3.-1", "3.x", "v3.12",
        "99999.1", "3.99999", "3.12\xc3\xa9", "3.1b 3",
    };
    int major = 42, minor = 43;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (i3_version_parse(bad[i], &major, &minor) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(major, 42);
        assert_int_equal(minor, 43);
    }
    assert_int_equal(i3_version_parse(NULL, &major, &minor), -1);
}

static void version_parse__null_outputs__allowed(void **state)
{
    (void)state;
    assert_int_equal(i3_version_parse("3.12", NULL, NULL), 0);
}

static void udp_magic_network_order__from_3_12(void **state)
{
    (void)state;
    assert_false(i3_udp_magic_is_network_order(3, 0));
    assert_false(i3_udp_magic_is_network_order(3, 9));
    assert_false(i3_udp_magic_is_network_order(3, 11));
    assert_true(i3_udp_magic_is_network_order(3, 12));
    assert_true(i3_udp_magic_is_network_order(3, 21));
    assert_true(i3_udp_magic_is_network_order(4, 0));
    assert_false(i3_udp_magic_is_network_order(2, 99));
}

static void udp_magic_endian_fixed__from_3_17(void **state)
{
    (void)state;
    assert_false(i3_udp_magic_endian_fixed(3, 12));
    assert_false(i3_udp_magic_endian_fixed(3, 16));
    assert_true(i3_udp_magic_endian_fixed(3, 17));
    assert_true(i3_udp_magic_endian_fixed(4, 1));
}

static void half_close__from_3_21(void **state)
{
    (void)state;
    assert_false(i3_closes_ctrl_with_half_close(3, 12));
    assert_false(i3_closes_ctrl_with_half_close(3, 20));
    assert_true(i3_closes_ctrl_with_half_close(3, 21));
    assert_true(i3_closes_ctrl_with_half_close(3, 22));
    assert_true(i3_closes_ctrl_with_half_close(4, 0));
    assert_false(i3_closes_ctrl_with_half_close(2, 21));
}

static void server_params_cap__8k_from_3_18(void **state)
{
    (void)state;
    assert_int_equal(i3_server_params_cap(3, 12), 0);
    assert_int_equal(i3_server_params_cap(3, 17), 0);
    assert_int_equal(i3_server_params_cap(3, 18), 8192);
    assert_int_equal(i3_server_params_cap(3, 21), 8192);
}

static void server_params_typed__from_3_18(void **state)
{
    (void)state;
    assert_false(i3_server_params_typed(3, 12));
    assert_false(i3_server_params_typed(3, 17));
    assert_true(i3_server_params_typed(3, 18));
}

static void predicates__parsed_versions__end_to_end(void **state)
{
    int major, minor;

    (void)state;
    assert_int_equal(i3_version_parse("3.1b3", &major, &minor), 0);
    assert_false(i3_udp_magic_is_network_order(major, minor));
    assert_int_equal(i3_version_parse("3.12", &major, &minor), 0);
    assert_true(i3_udp_magic_is_network_order(major, minor));
    assert_false(i3_closes_ctrl_with_half_close(major, minor));
    assert_int_equal(i3_version_parse("3.21+", &major, &minor), 0);
    assert_true(i3_closes_ctrl_with_half_close(major, minor));
    assert_int_equal(i3_version_parse("3.9", &major, &minor), 0);
    assert_false(i3_udp_magic_is_network_order(major, minor));
}

static void error_text__codes_servers_send__named(void **state)
{
    (void)state;
    /* 3.21 servers after the results of a completed test (cleanup_server) */
    assert_string_equal(i3_error_text(205), "cannot write to a data stream");
    assert_string_equal(i3_error_text(206), "cannot read from a data stream");
    /* new in 3.20/3.21 */
    assert_string_equal(i3_error_text(160), "test duration expired");
    assert_string_equal(i3_error_text(37), "duration above the server's --server-max-duration");
    assert_string_equal(i3_error_text(36), "control keepalive period shorter than its retries");
    /* old ones, same numbers since 3.12 */
    assert_string_equal(i3_error_text(123), "cannot set the MSS");
    assert_string_equal(i3_error_text(142), "authentication failed");
    assert_null(i3_error_text(0));
    assert_null(i3_error_text(-2));
    assert_null(i3_error_text(999));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_parse__release_versions__major_minor),
        cmocka_unit_test(version_parse__prerelease_and_dev_suffixes__major_minor),
        cmocka_unit_test(version_parse__malformed__rejected_outputs_untouched),
        cmocka_unit_test(version_parse__null_outputs__allowed),
        cmocka_unit_test(udp_magic_network_order__from_3_12),
        cmocka_unit_test(udp_magic_endian_fixed__from_3_17),
        cmocka_unit_test(half_close__from_3_21),
        cmocka_unit_test(server_params_cap__8k_from_3_18),
        cmocka_unit_test(server_params_typed__from_3_18),
        cmocka_unit_test(predicates__parsed_versions__end_to_end),
        cmocka_unit_test(error_text__codes_servers_send__named),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
