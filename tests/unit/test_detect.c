/* Unit tests for protocol/detect.c: iperf3 cookies and UDP stream requests
 * against iperf2 test headers and datagrams captured from real peers
 * (tests/unit/iperf2_fixtures.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "protocol/detect.h"
#include "protocol/iperf3_ctrl.h"
#include "tests/unit/iperf2_fixtures.h"

/* A 3.2+ cookie: 36 characters of the base32 alphabet and a NUL. */
static void make_cookie(uint8_t out[I3_COOKIE_SIZE], unsigned seed)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    for (size_t i = 0; i < I3_COOKIE_SIZE - 1; i++) {
        seed = seed * 1103515245u + 12345u;
        out[i] = (uint8_t)alphabet[(seed >> 16) % 32];
    }
    out[I3_COOKIE_SIZE - 1] = '\0';
}

static uint32_t rng_state = 0x9E3779B9u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ---- TCP --------------------------------------------------------------- */

static void tcp__iperf3_cookie__need_more_then_iperf3(void **state)
{
    (void)state;
    uint8_t c[I3_COOKIE_SIZE];
    for (unsigned s = 0; s < 64; s++) {
        make_cookie(c, s);
        for (size_t k = 0; k < I3_COOKIE_SIZE; k++)
            assert_int_equal(detect_tcp(c, k), DETECT_NEED_MORE);
        assert_int_equal(detect_tcp(c, I3_COOKIE_SIZE), DETECT_IPERF3);
    }
    /* pre-3.2 cookie: hostname.time.random, printable too */
    static const char old[I3_COOKIE_SIZE] = "myhost.1384986112.862934.0a5b3c7d8e9";
    assert_int_equal(detect_tcp((const uint8_t *)old, sizeof(old)), DETECT_IPERF3);
}

static void tcp__iperf3_cookie_damaged__unknown(void **state)
{
    (void)state;
    uint8_t c[I3_COOKIE_SIZE];
    make_cookie(c, 7);
    c[36] = 'x';                                   /* no NUL */
    assert_int_equal(detect_tcp(c, I3_COOKIE_SIZE), DETECT_UNKNOWN);
    make_cookie(c, 7);
    c[10] = 0x01;
    assert_int_equal(detect_tcp(c, 10), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(c, 11), DETECT_UNKNOWN);
}

static void tcp__iperf2_captures__iperf2_after_whole_header(void **state)
{
    (void)state;
    for (size_t i = 0; i < I2FX_COUNT(i2fx_tcp_client); i++) {
        const struct i2_fixture *f = &i2fx_tcp_client[i];
        struct i2_test_hdr h;
        assert_int_equal(i2_tcp_hdr_parse(f->bytes, f->len, &h), I2_OK);
        size_t decided = h.headerless ? I2_PATTERN_CHECK : h.len;
        for (size_t k = 0; k < decided; k++)
            if (detect_tcp(f->bytes, k) != DETECT_NEED_MORE)
                fail_msg("%s: %zu bytes decided", f->name, k);
        assert_int_equal(detect_tcp(f->bytes, decided), DETECT_IPERF2);
        assert_int_equal(detect_tcp(f->bytes, f->len), DETECT_IPERF2);
        assert_true(decided <= DETECT_MAX_BYTES);
    }
}

static void tcp__plain_218_client__iperf2(void **state)
{
    (void)state;
    /* the plain 2.1.8 client's first 4 bytes are 40 01 00 78 ("@..x") */
    assert_int_equal(detect_tcp(tcp_plain, 4), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(tcp_plain, 59), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(tcp_plain, 60), DETECT_IPERF2);
    assert_int_equal(detect_tcp(tcp_plain_stream, sizeof(tcp_plain_stream)), DETECT_IPERF2);
    /* 2.0.5 format: 24 bytes, flags 0 */
    assert_int_equal(detect_tcp(o_tcp_plain, 23), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(o_tcp_plain, 24), DETECT_IPERF2);
    /* 2.0.13 plain: no header, a flags word and the data pattern */
    assert_int_equal(detect_tcp(m_tcp_plain, 23), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(m_tcp_plain, 24), DETECT_IPERF2);
}

static void tcp__server_side_bytes__unknown(void **state)
{
    (void)state;
    /* acks, server data and connect-back streams are never an iperf2 client */
    for (size_t i = 0; i < I2FX_COUNT(i2fx_tcp_other); i++) {
        const struct i2_fixture *f = &i2fx_tcp_other[i];
        enum detect_verdict v = detect_tcp(f->bytes, f->len);
        if (v == DETECT_IPERF2 || v == DETECT_IPERF3)
            fail_msg("%s taken for a client", f->name);
    }
    assert_int_equal(detect_tcp(ack28, sizeof(ack28)), DETECT_UNKNOWN);
    assert_int_equal(detect_tcp(revx_s2c, sizeof(revx_s2c)), DETECT_UNKNOWN);
    /* iperf2 data is printable ("0123456789..."): it could be a cookie
     * until byte 37, which is not a NUL */
    assert_int_equal(detect_tcp(tcp_d_back, sizeof(tcp_d_back)), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(reverse_s2c, sizeof(reverse_s2c)), DETECT_NEED_MORE);
    uint8_t data[I3_COOKIE_SIZE];
    for (size_t k = 0; k < sizeof(data); k++)
        data[k] = (uint8_t)('0' + k % 10);
    assert_int_equal(detect_tcp(data, sizeof(data)), DETECT_UNKNOWN);
}

static void tcp__garbage__unknown_within_max_bytes(void **state)
{
    (void)state;
    static const char http[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    static const char ssh[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    assert_int_equal(detect_tcp((const uint8_t *)http, sizeof(http) - 1), DETECT_UNKNOWN);
    assert_int_equal(detect_tcp((const uint8_t *)ssh, sizeof(ssh) - 1), DETECT_UNKNOWN);
    uint8_t zero[DETECT_MAX_BYTES] = { 0 };
    assert_int_equal(detect_tcp(zero, 1), DETECT_NEED_MORE);   /* 2.0.5 flags 0 */
    assert_int_equal(detect_tcp(zero, 8), DETECT_UNKNOWN);     /* numThreads 0 */

    /* a reader that stops at DETECT_MAX_BYTES always gets a verdict */
    uint8_t b[DETECT_MAX_BYTES];
    for (int i = 0; i < 100000; i++) {
        for (size_t k = 0; k < sizeof(b); k++)
            b[k] = (uint8_t)rng();
        if (i % 2)                                 /* printable: looks like a cookie */
            for (size_t k = 0; k < sizeof(b); k++)
                b[k] = (uint8_t)(0x20 + b[k] % 95);
        enum detect_verdict v = detect_tcp(b, sizeof(b));
        assert_int_not_equal(v, DETECT_NEED_MORE);
        assert_int_not_equal(v, DETECT_IPERF2);
    }
}

static void tcp__longest_iperf2_header__decided_at_max(void **state)
{
    (void)state;
    uint8_t b[DETECT_MAX_BYTES];
    memset(b, 0, sizeof(b));
    memcpy(b, tcp_plain, sizeof(tcp_plain));
    /* EXTEND | KEYCHECK | LEN_BIT | 255 << 1, key length 128 at 253 */
    b[0] = 0x50; b[1] = 0x01; b[2] = 0x01; b[3] = 0xfe;
    b[253] = 0x00; b[254] = 0x80;
    assert_int_equal(DETECT_MAX_BYTES, 383);
    assert_int_equal(detect_tcp(b, DETECT_MAX_BYTES - 1), DETECT_NEED_MORE);
    assert_int_equal(detect_tcp(b, DETECT_MAX_BYTES), DETECT_IPERF2);
}

/* ---- UDP --------------------------------------------------------------- */

static void udp__iperf3_requests(void **state)
{
    (void)state;
    static const uint8_t v312[4] = { 0x39, 0x38, 0x37, 0x36 };
    static const uint8_t le[4] = { 0x15, 0xcd, 0x5b, 0x07 };
    static const uint8_t be[4] = { 0x07, 0x5b, 0xcd, 0x15 };
    static const uint8_t reply[4] = { 0x36, 0x37, 0x38, 0x39 };   /* server's answer */
    static const uint8_t longer[5] = { 0x39, 0x38, 0x37, 0x36, 0x00 };
    uint32_t host = 123456789;                      /* old clients: host byte order */
    assert_int_equal(detect_udp(v312, 4), DETECT_IPERF3);
    assert_int_equal(detect_udp(le, 4), DETECT_IPERF3);
    assert_int_equal(detect_udp(be, 4), DETECT_IPERF3);
    assert_int_equal(detect_udp((const uint8_t *)&host, 4), DETECT_IPERF3);
    assert_int_equal(detect_udp(reply, 4), DETECT_UNKNOWN);
    assert_int_equal(detect_udp(v312, 3), DETECT_UNKNOWN);
    assert_int_equal(detect_udp(longer, 5), DETECT_UNKNOWN);
    assert_int_equal(detect_udp(v312, 0), DETECT_UNKNOWN);
}

static void udp__iperf2_client_datagrams(void **state)
{
    (void)state;
    uint8_t d[2048];
    for (size_t i = 0; i < I2FX_COUNT(i2fx_udp_client); i++) {
        const struct i2_fixture *f = &i2fx_udp_client[i];
        size_t n = i2fx_datagram(f, d, sizeof(d));
        if (detect_udp(d, n) != DETECT_IPERF2)
            fail_msg("%s not IPERF2", f->name);
    }
}

static void udp__server_datagrams__unknown(void **state)
{
    (void)state;
    uint8_t d[2048];
    for (size_t i = 0; i < I2FX_COUNT(i2fx_udp_other); i++) {
        const struct i2_fixture *f = &i2fx_udp_other[i];
        size_t n = i2fx_datagram(f, d, sizeof(d));
        if (detect_udp(d, n) != DETECT_UNKNOWN)
            fail_msg("%s not UNKNOWN", f->name);
    }
    for (size_t i = 0; i < I2FX_COUNT(i2fx_udp_report); i++) {
        const struct i2_fixture *f = &i2fx_udp_report[i];
        size_t n = i2fx_datagram(f, d, sizeof(d));
        assert_int_equal(detect_udp(d, n), DETECT_UNKNOWN);
    }
}

static void udp__garbage__unknown(void **state)
{
    (void)state;
    uint8_t d[1500];
    for (int i = 0; i < 100000; i++) {
        size_t n = rng() % sizeof(d);
        for (size_t k = 0; k < n; k++)
            d[k] = (uint8_t)rng();
        if (n == 4)
            d[0] = 0;                               /* keep clear of the magics */
        assert_int_equal(detect_udp(d, n), DETECT_UNKNOWN);
    }
    /* DNS query */
    static const uint8_t dns[] = { 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03,
                                   'c', 'o', 'm', 0x00, 0x00, 0x01, 0x00, 0x01 };
    assert_int_equal(detect_udp(dns, sizeof(dns)), DETECT_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp__iperf3_cookie__need_more_then_iperf3),
        cmocka_unit_test(tcp__iperf3_cookie_damaged__unknown),
        cmocka_unit_test(tcp__iperf2_captures__iperf2_after_whole_header),
        cmocka_unit_test(tcp__plain_218_client__iperf2),
        cmocka_unit_test(tcp__server_side_bytes__unknown),
        cmocka_unit_test(tcp__garbage__unknown_within_max_bytes),
        cmocka_unit_test(tcp__longest_iperf2_header__decided_at_max),
        cmocka_unit_test(udp__iperf3_requests),
        cmocka_unit_test(udp__iperf2_client_datagrams),
        cmocka_unit_test(udp__server_datagrams__unknown),
        cmocka_unit_test(udp__garbage__unknown),
    };
    return cmocka_run_group_tests_name("detect", tests, NULL, NULL);
}
