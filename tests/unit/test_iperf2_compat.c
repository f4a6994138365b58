/*
 * Unit tests of iperf2 version words and numThreads packing
 * (compat/iperf2_compat.c).  Values are those of include/version.h in the
 * iperf2 source mirror and of bytes captured from 2.1.8, 2.2.1 and master.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "compat/iperf2_compat.h"

static void version_str__known_builds__as_iperf_prints_them(void **state)
{
    (void)state;
    char b[I2_VERSION_STR_MAX];
    assert_string_equal(i2_version_str(0x00020001u, 0x00080003u, b, sizeof(b)), "2.1.8");
    assert_string_equal(i2_version_str(0x00020002u, 0x00010001u, b, sizeof(b)), "2.2.1-rc");
    assert_string_equal(i2_version_str(0x00020002u, 0x00020005u, b, sizeof(b)), "2.2.2-master");
    assert_string_equal(i2_version_str(0x00020002u, 0x00000004u, b, sizeof(b)), "2.2.0-private");
    assert_string_equal(i2_version_str(0x00020000u, 0x000d0000u, b, sizeof(b)), "2.0.13-dev");
    assert_string_equal(i2_version_str(0x00020000u, 0x00050002u, b, sizeof(b)), "2.0.5-rc2");
    assert_string_equal(i2_version_str(0x00020002u, 0x0001ffffu, b, sizeof(b)), "2.2.1-unk");
    /* longest text fits */
    assert_string_equal(i2_version_str(0xffffffffu, 0xffff0004u, b, sizeof(b)),
                        "65535.65535.65535-private");
}

static void version_str__small_buffer__truncated(void **state)
{
    (void)state;
    char b[4];
    memset(b, 'x', sizeof(b));
    assert_string_equal(i2_version_str(0x00020002u, 0x00020005u, b, sizeof(b)), "2.2");
}

static void version_plausible__any_build_type__accepted(void **state)
{
    (void)state;
    for (uint32_t build = 0; build <= 0xffffu; build += 0x101u)
        assert_true(i2_version_plausible(0x00020002u, 0x00020000u | build));
    assert_true(i2_version_plausible(0x00020002u, 0x00020005u));   /* master */
    assert_true(i2_version_plausible(0x00020001u, 0x00080004u));   /* private */
    assert_true(i2_version_plausible(0x00020000u, 0x00000000u));
    assert_true(i2_version_plausible(0x000200ffu, 0x00ff0003u));
}

static void version_plausible__not_iperf2__rejected(void **state)
{
    (void)state;
    assert_false(i2_version_plausible(0x00030000u, 0x00000003u));   /* 3.x */
    assert_false(i2_version_plausible(0x00010007u, 0x00000003u));   /* 1.7 */
    assert_false(i2_version_plausible(0x00020100u, 0x00000003u));   /* minor 256 */
    assert_false(i2_version_plausible(0x00020001u, 0x01000003u));   /* patch 256 */
    assert_false(i2_version_plausible(0x30303030u, 0x30303030u));   /* data pattern */
}

static void threads_split__transfer_id__masked(void **state)
{
    (void)state;
    uint32_t tid = 99;
    /* captured: master client, --sync-transfer-id -P 2, ids 1 and 2 */
    assert_int_equal(i2_threads_split(0x80100002u, true, &tid), 2);
    assert_int_equal(tid, 1);
    assert_int_equal(i2_threads_split(0x80200002u, true, &tid), 2);
    assert_int_equal(tid, 2);
    /* largest id and thread count */
    assert_int_equal(i2_threads_split(0xffffffffu, true, &tid), 0xfffffu);
    assert_int_equal(tid, 0x7ffu);
    /* no marker: the word is the count */
    assert_int_equal(i2_threads_split(0x00000004u, true, &tid), 4);
    assert_int_equal(tid, 0);
    /* a header without HEADER_EXTEND has no transfer id: the word is kept whole */
    assert_int_equal(i2_threads_split(0x80100002u, false, &tid), 0x80100002u);
    assert_int_equal(tid, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_str__known_builds__as_iperf_prints_them),
        cmocka_unit_test(version_str__small_buffer__truncated),
        cmocka_unit_test(version_plausible__any_build_type__accepted),
        cmocka_unit_test(version_plausible__not_iperf2__rejected),
        cmocka_unit_test(threads_split__transfer_id__masked),
    };
    return cmocka_run_group_tests_name("iperf2_compat", tests, NULL, NULL);
}
