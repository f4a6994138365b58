/* Unit tests for protocol/iperf2.c against bytes captured from real iperf
 * 2.1.8, 2.0.6 (2.0.5 wire formats), 2.0.13, 2.2.1 and master (2.2.2) peers:
 * tests/unit/iperf2_fixtures.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "protocol/iperf2.h"
#include "tests/unit/iperf2_fixtures.h"

/* ---- helpers ---------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Deterministic xorshift generator for garbage inputs. */
static uint32_t rng_state = 0x2545F491u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void fill_random(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rng();
}

/* Parses a complete TCP header that must be accepted; checks that every
 * shorter prefix asks for more. */
static struct i2_test_hdr tcp_ok(const uint8_t *b, size_t n, size_t want_len)
{
    struct i2_test_hdr h;
    for (size_t k = 0; k < want_len; k++) {
        if (i2_tcp_hdr_parse(b, k, &h) != I2_NEED_MORE)
            fail_msg("prefix of %zu bytes not NEED_MORE", k);
    }
    memset(&h, 0xAA, sizeof(h));
    assert_int_equal(i2_tcp_hdr_parse(b, n, &h), I2_OK);
    assert_int_equal(h.len, want_len);
    return h;
}

/* A copy of the 2.1.8 plain header with one 32-bit word replaced. */
static enum i2_result tcp_plain_with(size_t off, uint32_t v, size_t *decided_at)
{
    uint8_t b[sizeof(tcp_plain)];
    struct i2_test_hdr h;
    memcpy(b, tcp_plain, sizeof(b));
    wr32(b + off, v);
    enum i2_result r = i2_tcp_hdr_parse(b, sizeof(b), &h);
    if (decided_at != NULL) {
        *decided_at = sizeof(b);
        for (size_t k = 0; k <= sizeof(b); k++)
            if (i2_tcp_hdr_parse(b, k, &h) != I2_NEED_MORE) {
                *decided_at = k;
                break;
            }
    }
    return r;
}

/* ---- TCP test headers from 2.1.8 clients ------------------------------- */

static void tcp_hdr__plain_218__normal_with_ack(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_plain, sizeof(tcp_plain), 60);
    assert_int_equal(h.flags, 0x40010078u);
    assert_int_equal(h.flags, I2_HEADER_EXTEND | I2_HEADER_LEN_BIT | (60u << 1));
    assert_int_equal(h.num_threads, 1);
    assert_int_equal(h.transfer_id, 0);
    assert_int_equal(h.port, 15301);
    assert_int_equal(h.buflen, 0);
    assert_int_equal(h.winband, 0);
    assert_int_equal(h.amount, -100);          /* -t 1: 100 units of 10 ms */
    assert_true(h.extended);
    assert_int_equal(h.upperflags, 0);
    assert_int_equal(h.version_u, 0x00020001u);
    assert_int_equal(h.version_l, 0x00080003u);
    assert_int_equal(h.rate, 0);
    assert_int_equal(h.key_len, 0);
    assert_int_equal(h.mode, I2_MODE_NORMAL);
    assert_false(h.connect_back);
    assert_true(h.server_acks);                /* observed: 28-byte ack */
    assert_false(h.client_awaits_ack);
    assert_string_equal(i2_mode_name(h.mode), "normal");
}

static void tcp_hdr__stream_start__header_then_data(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    assert_int_equal(i2_tcp_hdr_parse(tcp_plain_stream, sizeof(tcp_plain_stream), &h), I2_OK);
    assert_int_equal(h.len, 60);
    /* the data repeats the header: the client reuses its buffer */
    assert_memory_equal(tcp_plain_stream + 60, tcp_plain, 36);
}

static void tcp_hdr__P2_e_n__fields(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_p2, sizeof(tcp_p2), 60);
    assert_int_equal(h.num_threads, 2);
    assert_int_equal(h.mode, I2_MODE_NORMAL);

    h = tcp_ok(tcp_e, sizeof(tcp_e), 60);        /* -e changes nothing on the wire */
    assert_memory_equal(tcp_e, tcp_plain, sizeof(tcp_plain));

    h = tcp_ok(tcp_n1m, sizeof(tcp_n1m), 60);
    assert_int_equal(h.amount, 1048576);         /* -n 1M: bytes, not negative */
    assert_true(h.server_acks);

    h = tcp_ok(tcp_l, sizeof(tcp_l), 60);        /* -l 1000 -w 64K -b 10M */
    assert_int_equal(h.buflen, 1000);
    assert_int_equal(h.winband, 0);              /* 2.1.8 does not send -w */
    assert_int_equal(h.rate, 10u * 1024 * 1024);
}

static void tcp_hdr__dualtest__connect_back_now(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_d, sizeof(tcp_d), 60);
    assert_int_equal(h.flags, 0xc0010079u);
    assert_true(h.flags & I2_RUN_NOW);
    assert_int_equal(h.mode, I2_MODE_DUALTEST);
    assert_true(h.connect_back);
    assert_int_equal(h.port, 15301);             /* no -L: the client's -p */
    assert_true(h.server_acks);

    h = tcp_ok(tcp_dl, sizeof(tcp_dl), 60);
    assert_int_equal(h.mode, I2_MODE_DUALTEST);
    assert_int_equal(h.port, 15390);             /* -L 15390 */

    h = tcp_ok(tcp_p2d, sizeof(tcp_p2d), 60);
    assert_int_equal(h.mode, I2_MODE_DUALTEST);
    assert_int_equal(h.num_threads, 2);
    assert_int_equal(h.port, 15394);
}

static void tcp_hdr__tradeoff__connect_back_later(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_r, sizeof(tcp_r), 60);
    assert_int_equal(h.flags, 0xc0010078u);
    assert_int_equal(h.mode, I2_MODE_TRADEOFF);
    assert_true(h.connect_back);
    assert_string_equal(i2_mode_name(h.mode), "tradeoff");
}

static void tcp_hdr__reverse_fullduplex__same_connection_no_ack(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_reverse, sizeof(tcp_reverse), 60);
    assert_int_equal(h.flags, 0x44010078u);
    assert_int_equal(h.upperflags, I2_UF_REVERSE);
    assert_int_equal(h.mode, I2_MODE_REVERSE);
    assert_false(h.connect_back);
    assert_false(h.server_acks);

    h = tcp_ok(tcp_fd, sizeof(tcp_fd), 60);
    assert_int_equal(h.upperflags, I2_UF_FULLDUPLEX);
    assert_int_equal(h.mode, I2_MODE_FULLDUPLEX);
    assert_false(h.connect_back);
    assert_false(h.server_acks);
}

static void tcp_hdr__peer_detect__client_awaits_ack(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_x, sizeof(tcp_x), 60);
    assert_int_equal(h.flags, 0x46010078u);
    assert_int_equal(h.mode, I2_MODE_NORMAL);
    assert_true(h.server_acks);
    assert_true(h.client_awaits_ack);
}

static void tcp_hdr__trip_times__80_bytes(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_tt, sizeof(tcp_tt), 80);
    assert_int_equal(h.flags, I2_HEADER_EXTEND | I2_HEADER_LEN_BIT | (80u << 1));
    assert_int_equal(h.upperflags, I2_UF_TRIPTIME);
    assert_true(h.server_acks);
}

static void tcp_hdr__permit_key__length_includes_key(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_key, sizeof(tcp_key), 70);
    assert_int_equal(h.flags, 0x5001007cu);
    assert_int_equal(h.key_len, 8);
    assert_int_equal(h.key_off, 62);
    assert_memory_equal(tcp_key + h.key_off, "abcd1234", 8);
}

static void tcp_hdr__bounceback__recognised(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(tcp_bb, sizeof(tcp_bb), I2_BB_HDR_LEN);
    assert_int_equal(h.flags, I2_HEADER_BOUNCEBACK);
    assert_int_equal(h.mode, I2_MODE_BOUNCEBACK);
    assert_int_equal(h.bb_size, 100);
    assert_false(h.connect_back);
    assert_false(h.server_acks);
}

/* ---- TCP test headers from 2.0.6 (2.0.5 format) clients ---------------- */

static void tcp_hdr__legacy_plain__flags_zero_24_bytes(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(o_tcp_plain, sizeof(o_tcp_plain), 24);
    assert_int_equal(h.flags, 0);
    assert_int_equal(h.num_threads, 1);
    assert_int_equal(h.port, 15301);
    assert_int_equal(h.amount, -100);
    assert_false(h.extended);
    assert_int_equal(h.mode, I2_MODE_NORMAL);
    assert_false(h.server_acks);                 /* observed: 2.1.8 server sent nothing */
}

static void tcp_hdr__legacy_dual_tradeoff(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(o_tcp_d, sizeof(o_tcp_d), 24);
    assert_int_equal(h.flags, I2_HEADER_VERSION1 | I2_RUN_NOW);
    assert_int_equal(h.mode, I2_MODE_DUALTEST);
    assert_true(h.connect_back);
    assert_false(h.server_acks);

    h = tcp_ok(o_tcp_r, sizeof(o_tcp_r), 24);
    assert_int_equal(h.flags, I2_HEADER_VERSION1);
    assert_int_equal(h.mode, I2_MODE_TRADEOFF);
    assert_int_equal(h.port, 15391);             /* -L 15391 */
}

/* ---- every capture, every truncation ----------------------------------- */

static void tcp_hdr__every_client_capture__prefixes_need_more(void **state)
{
    (void)state;
    for (size_t i = 0; i < I2FX_COUNT(i2fx_tcp_client); i++) {
        const struct i2_fixture *f = &i2fx_tcp_client[i];
        struct i2_test_hdr h;
        assert_int_equal(i2_tcp_hdr_parse(f->bytes, f->len, &h), I2_OK);
        assert_true(h.len <= f->len && h.len <= I2_TCP_HDR_MAX);
        /* decided at the header's end (headerless: after I2_PATTERN_CHECK) */
        size_t decided = h.headerless ? I2_PATTERN_CHECK : h.len;
        for (size_t k = 0; k < decided; k++)
            if (i2_tcp_hdr_parse(f->bytes, k, &h) != I2_NEED_MORE)
                fail_msg("%s: prefix %zu not NEED_MORE", f->name, k);
        assert_int_equal(i2_tcp_hdr_parse(f->bytes, decided, &h), I2_OK);
        assert_int_equal(i2_detect_tcp(f->bytes, f->len), I2_OK);
    }
}

/* ---- TCP from 2.0.13 (Ubuntu 20.04's iperf) ---------------------------- */

static void tcp_hdr__2013_plain__headerless_stream(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    for (size_t k = 0; k < I2_PATTERN_CHECK; k++)
        assert_int_equal(i2_tcp_hdr_parse(m_tcp_plain, k, &h), I2_NEED_MORE);
    assert_int_equal(i2_tcp_hdr_parse(m_tcp_plain, I2_PATTERN_CHECK, &h), I2_OK);
    assert_true(h.headerless);
    assert_false(h.v1_valid);
    assert_int_equal(h.flags, I2_HEADER_SEQNO64B);   /* 08 00 00 00, then "456789..." */
    assert_int_equal(h.len, 4);
    assert_int_equal(h.mode, I2_MODE_NORMAL);
    assert_false(h.connect_back);
    assert_false(h.server_acks);                     /* observed: nothing came back */
    assert_int_equal(h.num_threads, 0);

    /* 2.0.10 .. 2.0.12: the same with a zero flags word */
    uint8_t b[sizeof(m_tcp_plain)];
    memcpy(b, m_tcp_plain, sizeof(b));
    wr32(b, 0);
    assert_int_equal(i2_tcp_hdr_parse(b, 4, &h), I2_NEED_MORE);   /* or a 2.0.5 header */
    assert_int_equal(i2_tcp_hdr_parse(b, sizeof(b), &h), I2_OK);
    assert_true(h.headerless);
    assert_int_equal(h.flags, 0);
    /* the pattern must be right from byte 4 on */
    b[23] = 'x';
    assert_int_equal(i2_tcp_hdr_parse(b, 23, &h), I2_NEED_MORE);
    assert_int_equal(i2_tcp_hdr_parse(b, 24, &h), I2_NOT_IPERF2);
    memcpy(b, m_tcp_plain, sizeof(b));
    b[4] = '0';                                      /* pattern from 0, not from 4 */
    assert_int_equal(i2_tcp_hdr_parse(b, 5, &h), I2_NOT_IPERF2);
}

static void tcp_hdr__2013_dual__v1_header_only(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(m_tcp_d, sizeof(m_tcp_d), 24);
    assert_int_equal(h.flags, I2_HEADER_VERSION1 | I2_HEADER_SEQNO64B | I2_RUN_NOW);
    assert_true(h.v1_valid);
    assert_int_equal(h.mode, I2_MODE_DUALTEST);
    assert_int_equal(h.port, 15395);
    assert_int_equal(h.winband, 0x36373839u);        /* not filled: data pattern "6789" */
    assert_false(h.extended);
    assert_false(h.server_acks);                     /* observed: no ack */
    assert_false(h.client_awaits_ack);
}

static void tcp_hdr__2013_peer_detect__ext_without_v1(void **state)
{
    (void)state;
    struct i2_test_hdr h = tcp_ok(m_tcp_x, sizeof(m_tcp_x), 60);
    assert_int_equal(h.flags, I2_HEADER_EXTEND | I2_HEADER_SEQNO64B);
    assert_false(h.v1_valid);                        /* numThreads... hold "456789..." */
    assert_int_equal(h.num_threads, 0);
    assert_int_equal(h.port, 0);
    assert_true(h.extended);
    assert_int_equal(h.version_u, 0x00020000u);
    assert_int_equal(h.version_l, 0x000d0003u);
    assert_int_equal(h.upperflags, 0);
    assert_int_equal(h.mode, I2_MODE_NORMAL);
    assert_true(h.server_acks);                      /* observed: 28-byte ack */
    assert_true(h.client_awaits_ack);                /* HdrXchange waits for it */
    struct i2_hdr_ack a;
    assert_int_equal(i2_hdr_ack_parse(m_ack28, sizeof(m_ack28), &a), I2_OK);
    assert_int_equal(a.length, 28);
    /* the 2.0.10 .. 2.0.13 extension must say CLIENTHDR */
    uint8_t b[sizeof(m_tcp_x)];
    memcpy(b, m_tcp_x, sizeof(b));
    wr32(b + 24, 2);
    assert_int_equal(i2_tcp_hdr_parse(b, 28, &h), I2_NOT_IPERF2);
    memcpy(b, m_tcp_x, sizeof(b));
    wr32(b + 28, 8);
    assert_int_equal(i2_tcp_hdr_parse(b, 32, &h), I2_NOT_IPERF2);
}

static void tcp_hdr__server_bytes_and_connect_back__not_iperf2(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    /* the server's -d connect-back carries no header: "0123456789..." */
    assert_int_equal(i2_tcp_hdr_parse(tcp_d_back, sizeof(tcp_d_back), &h), I2_NOT_IPERF2);
    assert_int_equal(i2_tcp_hdr_parse(tcp_d_back, 1, &h), I2_NOT_IPERF2);
    for (size_t i = 0; i < I2FX_COUNT(i2fx_tcp_other); i++) {
        const struct i2_fixture *f = &i2fx_tcp_other[i];
        if (i2_tcp_hdr_parse(f->bytes, f->len, &h) != I2_NOT_IPERF2)
            fail_msg("%s taken for a client header", f->name);
    }
}

static void tcp_hdr__garbage__rejected(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    static const char cookie[] = "abcdefghijklmnopqrstuvwxyz2345672345";   /* iperf3 */
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    uint8_t ff[64];
    memset(ff, 0xff, sizeof(ff));

    assert_int_equal(i2_tcp_hdr_parse((const uint8_t *)cookie, sizeof(cookie), &h), I2_NOT_IPERF2);
    assert_int_equal(i2_tcp_hdr_parse((const uint8_t *)cookie, 1, &h), I2_NOT_IPERF2);
    assert_int_equal(i2_tcp_hdr_parse((const uint8_t *)http, 1, &h), I2_NOT_IPERF2);
    assert_int_equal(i2_tcp_hdr_parse((const uint8_t *)tls, sizeof(tls) - 1, &h), I2_NOT_IPERF2);
    assert_int_equal(i2_tcp_hdr_parse(ff, 1, &h), I2_NOT_IPERF2);

    uint8_t zero[64] = { 0 };                    /* flags 0 but numThreads 0 */
    assert_int_equal(i2_tcp_hdr_parse(zero, 7, &h), I2_NEED_MORE);
    assert_int_equal(i2_tcp_hdr_parse(zero, 8, &h), I2_NOT_IPERF2);

    int accepted = 0;
    uint8_t b[I2_TCP_HDR_MAX];
    for (int i = 0; i < 200000; i++) {
        fill_random(b, sizeof(b));
        if (i2_tcp_hdr_parse(b, sizeof(b), &h) == I2_OK)
            accepted++;
        else
            assert_int_equal(i2_tcp_hdr_parse(b, sizeof(b), &h), I2_NOT_IPERF2);
    }
    assert_int_equal(accepted, 0);
}

static void tcp_hdr__absurd_values__rejected_early(void **state)
{
    (void)state;
    size_t at;
    /* numThreads */
    assert_int_equal(tcp_plain_with(4, 0, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 8);
    assert_int_equal(tcp_plain_with(4, I2_MAX_THREADS + 1, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(4, 0x40010078u, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(4, I2_MAX_THREADS, NULL), I2_OK);
    /* mPort */
    assert_int_equal(tcp_plain_with(8, 0, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 12);
    assert_int_equal(tcp_plain_with(8, 65536, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(8, 65535, NULL), I2_OK);
    /* mBufLen, mWinBand */
    assert_int_equal(tcp_plain_with(12, 0x80000000u, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 16);
    assert_int_equal(tcp_plain_with(12, I2_MAX_BUFLEN, NULL), I2_OK);
    assert_int_equal(tcp_plain_with(16, 0xffffffffu, NULL), I2_NOT_IPERF2);
    /* mAmount takes any value */
    assert_int_equal(tcp_plain_with(20, 0x80000000u, NULL), I2_OK);
    assert_int_equal(tcp_plain_with(20, 0x7fffffffu, NULL), I2_OK);
    /* version: iperf 2.x only */
    assert_int_equal(tcp_plain_with(36, 0x00030000u, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 40);
    assert_int_equal(tcp_plain_with(36, 0x00020100u, NULL), I2_NOT_IPERF2);
    /* any build type: 4 private, 5 master (2.2.2 from master), 0xffff */
    assert_int_equal(tcp_plain_with(40, 0x00080004u, NULL), I2_OK);
    assert_int_equal(tcp_plain_with(40, 0x00020005u, NULL), I2_OK);
    assert_int_equal(tcp_plain_with(40, 0x0008ffffu, NULL), I2_OK);
    assert_int_equal(tcp_plain_with(40, 0x01000003u, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(36, 0x00020000u, NULL), I2_OK);   /* 2.0.x */
}

static void tcp_hdr__impossible_flags__rejected(void **state)
{
    (void)state;
    size_t at;
    const uint32_t len60 = I2_HEADER_LEN_BIT | (60u << 1);
    /* unknown bits, seen in the first byte that carries them */
    assert_int_equal(tcp_plain_with(0, 0x40010078u | I2_HEADER_UDPTESTS, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 1);
    assert_int_equal(tcp_plain_with(0, 0x40010078u | I2_HEADER_UDPAVOID1, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 1);
    assert_int_equal(tcp_plain_with(0, 0x40010078u | 0x00400000u, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 2);
    assert_int_equal(tcp_plain_with(0, 0x40010078u | 0x00000200u, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 3);
    /* known bits in combinations no client sends */
    assert_int_equal(tcp_plain_with(0, I2_HEADER_EXTEND | len60 | I2_RUN_NOW, &at), I2_NOT_IPERF2);
    assert_int_equal(at, 4);
    assert_int_equal(tcp_plain_with(0, I2_HEADER_VERSION2 | I2_HEADER_VERSION1, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(0, I2_HEADER_EXTEND | I2_HEADER_V2PEERDETECT | len60, NULL),
                     I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(0, I2_HEADER_EXTEND | I2_HEADER_KEYCHECK, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(0, I2_HEADER_EXTEND | 0x78u, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(0, I2_HEADER_LEN_BIT | (60u << 1), NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(0, I2_HEADER_KEYCHECK, NULL), I2_NOT_IPERF2);
    assert_int_equal(tcp_plain_with(0, I2_RUN_NOW, NULL), I2_NOT_IPERF2);
    /* a coded length shorter than the fields the flags announce */
    assert_int_equal(tcp_plain_with(0, I2_HEADER_EXTEND | I2_HEADER_LEN_BIT | (40u << 1), NULL),
                     I2_NOT_IPERF2);
    /* bounceback with any other bit */
    assert_int_equal(tcp_plain_with(0, I2_HEADER_BOUNCEBACK | I2_HEADER_EXTEND, NULL), I2_NOT_IPERF2);
    /* EXTEND without a coded length is 2.0.10-2.0.12's 60-byte -X header
     * (2.0.13's adds SEQNO64B: m_tcp_x); with the 2.1.x extension typelen
     * {0, 0} it is not */
    struct i2_test_hdr h;
    uint8_t b[60];
    memcpy(b, tcp_plain, sizeof(b));
    wr32(b, I2_HEADER_EXTEND);
    assert_int_equal(i2_tcp_hdr_parse(b, sizeof(b), &h), I2_NOT_IPERF2);
    wr32(b + 24, 1);                               /* CLIENTHDR */
    wr32(b + 28, 28);
    wr32(b + 36, 0x00020000u);
    wr32(b + 40, 0x000a0003u);
    assert_int_equal(i2_tcp_hdr_parse(b, 59, &h), I2_NEED_MORE);
    assert_int_equal(i2_tcp_hdr_parse(b, 60, &h), I2_OK);
    assert_int_equal(h.len, 60);
    assert_false(h.v1_valid);
    assert_true(h.server_acks);
    assert_true(h.client_awaits_ack);
}

static void tcp_hdr__permit_key_bounds(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    uint8_t b[sizeof(tcp_key)];
    memcpy(b, tcp_key, sizeof(b));
    assert_int_equal(i2_tcp_hdr_parse(b, 62, &h), I2_NEED_MORE);  /* length known, key not */
    wr16(b + 60, 3);
    assert_int_equal(i2_tcp_hdr_parse(b, 62, &h), I2_NOT_IPERF2);
    wr16(b + 60, I2_KEY_MAX_LEN + 1);
    assert_int_equal(i2_tcp_hdr_parse(b, 62, &h), I2_NOT_IPERF2);
    wr16(b + 60, 4);
    assert_int_equal(i2_tcp_hdr_parse(b, 66, &h), I2_OK);
    assert_int_equal(h.len, 66);
    /* keyed header needs room for the 2-byte key length */
    wr32(b, I2_HEADER_EXTEND | I2_HEADER_KEYCHECK | I2_HEADER_LEN_BIT | (60u << 1));
    assert_int_equal(i2_tcp_hdr_parse(b, sizeof(b), &h), I2_NOT_IPERF2);
}

static void tcp_hdr__longest_header__383_bytes(void **state)
{
    (void)state;
    uint8_t b[I2_TCP_HDR_MAX + 16];
    struct i2_test_hdr h;
    memset(b, 0, sizeof(b));
    memcpy(b, tcp_plain, sizeof(tcp_plain));
    wr32(b, I2_HEADER_EXTEND | I2_HEADER_KEYCHECK | I2_HEADER_LEN_BIT | (255u << 1));
    wr16(b + 253, I2_KEY_MAX_LEN);
    for (size_t k = 0; k < I2_TCP_HDR_MAX; k++)
        assert_int_equal(i2_tcp_hdr_parse(b, k, &h), I2_NEED_MORE);
    assert_int_equal(i2_tcp_hdr_parse(b, I2_TCP_HDR_MAX, &h), I2_OK);
    assert_int_equal(h.len, I2_TCP_HDR_MAX);
    assert_int_equal(I2_TCP_HDR_MAX, 383);
}

static void tcp_hdr__sync_transfer_id__threads_masked(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    uint8_t b[sizeof(tcp_plain)];
    memcpy(b, tcp_plain, sizeof(b));
    wr32(b + 4, 0x80000000u | (5u << 20) | 3u);   /* 2.2 --sync-transfer-id */
    assert_int_equal(i2_tcp_hdr_parse(b, sizeof(b), &h), I2_OK);
    assert_int_equal(h.num_threads, 3);
    assert_int_equal(h.transfer_id, 5);
    /* not without HEADER_EXTEND: a 2.0.5 header has no such field */
    memcpy(b, o_tcp_plain, sizeof(o_tcp_plain));
    wr32(b + 4, 0x80000000u | (5u << 20) | 3u);
    assert_int_equal(i2_tcp_hdr_parse(b, sizeof(o_tcp_plain), &h), I2_NOT_IPERF2);
}

/* 2.2.1 and master (2.2.2, build type 5) clients: 64-byte headers, any build
 * type accepted (a master build's headers were refused before). */
static void tcp_hdr__22_peers__any_build_type(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    assert_int_equal(i2_tcp_hdr_parse(v22m_tcp_plain, sizeof(v22m_tcp_plain), &h), I2_OK);
    assert_int_equal(h.len, 64);
    assert_int_equal(h.num_threads, 1);
    assert_int_equal(h.transfer_id, 0);
    assert_int_equal(h.port, 15301);
    assert_int_equal(h.version_u, 0x00020002u);
    assert_int_equal(h.version_l, 0x00020005u);   /* 2.2.2-master */
    assert_int_equal(h.mode, I2_MODE_NORMAL);
    assert_true(h.server_acks);
    /* every prefix is still plausible */
    for (size_t n = 0; n < sizeof(v22m_tcp_plain); n++)
        assert_int_equal(i2_tcp_hdr_parse(v22m_tcp_plain, n, &h), I2_NEED_MORE);

    assert_int_equal(i2_tcp_hdr_parse(v221_tcp_plain, sizeof(v221_tcp_plain), &h), I2_OK);
    assert_int_equal(h.len, 64);
    assert_int_equal(h.version_l, 0x00010001u);   /* the 2.2.1 release says "rc" */

    /* --sync-transfer-id: transfer id 1 in the high bits of numThreads (-P 2) */
    assert_int_equal(i2_tcp_hdr_parse(v22m_tcp_tid, sizeof(v22m_tcp_tid), &h), I2_OK);
    assert_int_equal(h.num_threads, 2);
    assert_int_equal(h.transfer_id, 1);
}

static void tcp_hdr__bounceback_bounds(void **state)
{
    (void)state;
    struct i2_test_hdr h;
    uint8_t b[sizeof(tcp_bb)];
    memcpy(b, tcp_bb, sizeof(b));
    wr32(b + 4, I2_BB_HDR_LEN - 1);
    assert_int_equal(i2_tcp_hdr_parse(b, 8, &h), I2_NOT_IPERF2);
    wr32(b + 4, I2_MAX_BUFLEN + 1);
    assert_int_equal(i2_tcp_hdr_parse(b, 8, &h), I2_NOT_IPERF2);
    memcpy(b, tcp_bb, sizeof(b));
    wr16(b + 12, 0x0001);                         /* unknown bbflags bit */
    assert_int_equal(i2_tcp_hdr_parse(b, 14, &h), I2_NOT_IPERF2);
    memcpy(b, tcp_bb, sizeof(b));
    wr32(b + 24, 1000000u);                       /* bbclientTx_ts.usec */
    assert_int_equal(i2_tcp_hdr_parse(b, 27, &h), I2_NEED_MORE);
    assert_int_equal(i2_tcp_hdr_parse(b, 28, &h), I2_NOT_IPERF2);
}

/* ---- mPort rewrite ----------------------------------------------------- */

static void set_port__round_trip__only_mport_changes(void **state)
{
    (void)state;
    for (size_t i = 0; i < I2FX_COUNT(i2fx_tcp_client); i++) {
        const struct i2_fixture *f = &i2fx_tcp_client[i];
        struct i2_test_hdr orig, h;
        uint8_t b[I2_TCP_HDR_MAX];
        assert_int_equal(i2_tcp_hdr_parse(f->bytes, f->len, &orig), I2_OK);
        if (!orig.v1_valid)
            continue;                              /* no mPort in that header */
        memcpy(b, f->bytes, f->len);
        assert_int_equal(i2_hdr_set_port(b, f->len, 40001), 0);
        assert_int_equal(i2_tcp_hdr_parse(b, f->len, &h), I2_OK);
        assert_int_equal(h.port, 40001);
        assert_int_equal(h.len, orig.len);
        assert_int_equal(h.mode, orig.mode);
        assert_memory_equal(b, f->bytes, 8);
        assert_memory_equal(b + 12, f->bytes + 12, f->len - 12);
        assert_int_equal(i2_hdr_set_port(b, f->len, orig.port), 0);
        assert_memory_equal(b, f->bytes, f->len);
    }
}

static void set_port__udp_both_layouts(void **state)
{
    (void)state;
    uint8_t d[1470];
    struct i2_udp_client c;
    size_t n = i2fx_datagram(&(struct i2_fixture)I2FXW(udp_d_first, UDP_D_FIRST_WIRE_LEN), d, sizeof(d));
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_OK);
    assert_int_equal(c.hdr.port, 15302);
    assert_int_equal(i2_hdr_set_port(d + c.layout, n - c.layout, 50000), 0);
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_OK);
    assert_int_equal(c.hdr.port, 50000);
    assert_int_equal(c.hdr.mode, I2_MODE_DUALTEST);

    n = i2fx_datagram(&(struct i2_fixture)I2FXW(o_udp_d_first, O_UDP_D_FIRST_WIRE_LEN), d, sizeof(d));
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_OK);
    assert_int_equal(c.layout, I2_UDP_HDR12);
    assert_int_equal(c.hdr.port, 15393);
    assert_int_equal(i2_hdr_set_port(d + c.layout, n - c.layout, 50001), 0);
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_OK);
    assert_int_equal(c.hdr.port, 50001);
    assert_int_equal(rd32(d + 20), 50001);
}

static void set_port__bad_arguments__refused(void **state)
{
    (void)state;
    uint8_t b[sizeof(tcp_plain)];
    memcpy(b, tcp_plain, sizeof(b));
    assert_int_equal(i2_hdr_set_port(b, 11, 1234), -1);
    assert_int_equal(i2_hdr_set_port(b, sizeof(b), 0), -1);
    assert_memory_equal(b, tcp_plain, sizeof(b));
    assert_int_equal(i2_hdr_set_port(b, 12, 65535), 0);
    assert_int_equal(rd32(b + 8), 65535);
}

/* ---- header ack -------------------------------------------------------- */

static void ack__218_plain__28_bytes(void **state)
{
    (void)state;
    struct i2_hdr_ack a;
    for (size_t k = 0; k < sizeof(ack28); k++)
        assert_int_equal(i2_hdr_ack_parse(ack28, k, &a), I2_NEED_MORE);
    assert_int_equal(i2_hdr_ack_parse(ack28, sizeof(ack28), &a), I2_OK);
    assert_int_equal(a.type, I2_CLIENTHDRACK);
    assert_int_equal(a.length, I2_ACK_LEN);
    assert_int_equal(a.flags, 0);
    assert_int_equal(a.version_u, 0x00020001u);
    assert_int_equal(a.version_l, 0x00080003u);
    assert_false(a.has_ts);
}

static void ack__trip_times__52_bytes_with_timestamps(void **state)
{
    (void)state;
    struct i2_hdr_ack a;
    for (size_t k = 0; k < sizeof(ack52); k++)
        assert_int_equal(i2_hdr_ack_parse(ack52, k, &a), I2_NEED_MORE);
    assert_int_equal(i2_hdr_ack_parse(ack52, sizeof(ack52), &a), I2_OK);
    assert_int_equal(a.length, I2_ACK_TS_LEN);
    assert_true(a.has_ts);
    /* the server echoes the client's start time from the header (offset 64) */
    assert_int_equal(a.sent_sec, rd32(tcp_tt + 64));
    assert_int_equal(a.sent_usec, rd32(tcp_tt + 68));
    assert_true(a.sentrx_usec < 1000000 && a.ack_usec < 1000000);
    assert_true(a.ack_sec >= a.sentrx_sec);
}

static void ack__followed_by_data__length_from_ack(void **state)
{
    (void)state;
    struct i2_hdr_ack a;
    assert_int_equal(i2_hdr_ack_parse(revx_s2c, sizeof(revx_s2c), &a), I2_OK);
    assert_int_equal(a.length, 28);
    assert_memory_equal(revx_s2c + 28, "0123456789", 10);
}

static void ack__other_bytes__rejected(void **state)
{
    (void)state;
    struct i2_hdr_ack a;
    uint8_t b[52];
    assert_int_equal(i2_hdr_ack_parse(reverse_s2c, 1, &a), I2_NOT_IPERF2);  /* data */
    assert_int_equal(i2_hdr_ack_parse(tcp_plain, sizeof(tcp_plain), &a), I2_NOT_IPERF2);
    assert_int_equal(i2_hdr_ack_parse(o_tcp_plain, 4, &a), I2_NOT_IPERF2);  /* 00 00 00 00 */
    memcpy(b, ack28, 28);
    wr32(b + 4, 30);
    assert_int_equal(i2_hdr_ack_parse(b, 8, &a), I2_NOT_IPERF2);
    wr32(b + 4, 24);
    assert_int_equal(i2_hdr_ack_parse(b, 8, &a), I2_NOT_IPERF2);
    wr32(b + 4, 68);
    assert_int_equal(i2_hdr_ack_parse(b, 8, &a), I2_NOT_IPERF2);
    wr32(b + 4, 28);
    wr32(b + 12, 0x00030000u);
    assert_int_equal(i2_hdr_ack_parse(b, 16, &a), I2_NOT_IPERF2);
}

/* ---- UDP datagram header ----------------------------------------------- */

static void dgram__218__64bit_sequence(void **state)
{
    (void)state;
    struct i2_udp_dgram g;
    assert_int_equal(i2_udp_dgram_parse(udp_plain_first, sizeof(udp_plain_first), I2_UDP_HDR16, &g), I2_OK);
    assert_int_equal(g.id, 1);                   /* 2.1.8 starts at 1 */
    assert_int_equal(g.id2, 0);
    assert_int_equal(g.seq, 1);
    assert_false(g.fin);
    assert_true(g.tv_usec < 1000000);

    assert_int_equal(i2_udp_dgram_parse(udp_plain_fin, sizeof(udp_plain_fin), I2_UDP_HDR16, &g), I2_OK);
    assert_int_equal(g.id, 0xffffffa3u);
    assert_int_equal(g.id2, 0xffffffffu);
    assert_int_equal(g.seq, -93);
    assert_true(g.fin);
    /* read in the 12-byte layout, a sign-extended id gives the same answer */
    assert_int_equal(i2_udp_dgram_parse(udp_plain_fin, 12, I2_UDP_HDR12, &g), I2_OK);
    assert_int_equal(g.seq, -93);
    assert_int_equal(g.id2, 0);
}

static void dgram__fin_retries__sequence_decreases(void **state)
{
    (void)state;
    struct i2_udp_dgram g0, g1;
    assert_int_equal(i2_udp_dgram_parse(udp_fin_retry0, 16, I2_UDP_HDR16, &g0), I2_OK);
    assert_int_equal(i2_udp_dgram_parse(udp_fin_retry1, 16, I2_UDP_HDR16, &g1), I2_OK);
    assert_true(g0.fin && g1.fin);
    assert_int_equal(g0.seq, -93);
    assert_int_equal(g1.seq, -94);
    assert_int_equal(g0.tv_sec, g1.tv_sec);      /* the timestamp is not refreshed */
    assert_int_equal(g0.tv_usec, g1.tv_usec);
}

static void dgram__legacy__32bit_sequence_from_zero(void **state)
{
    (void)state;
    struct i2_udp_dgram g;
    assert_int_equal(i2_udp_dgram_parse(o_udp_first, sizeof(o_udp_first), I2_UDP_HDR12, &g), I2_OK);
    assert_int_equal(g.seq, 0);                  /* 2.0.5 starts at 0 */
    assert_false(g.fin);
    assert_int_equal(i2_udp_dgram_parse(o_udp_fin, sizeof(o_udp_fin), I2_UDP_HDR12, &g), I2_OK);
    assert_int_equal(g.seq, -91);
    assert_true(g.fin);
}

static void dgram__connect_back_stream__headerless_but_parsable(void **state)
{
    (void)state;
    struct i2_udp_dgram g;
    assert_int_equal(i2_udp_dgram_parse(udp_d_back_first, sizeof(udp_d_back_first), I2_UDP_HDR16, &g), I2_OK);
    assert_int_equal(g.seq, 1);
    assert_int_equal(i2_udp_dgram_parse(udp_d_back_fin, sizeof(udp_d_back_fin), I2_UDP_HDR16, &g), I2_OK);
    assert_int_equal(g.seq, -92);
    assert_true(g.fin);
}

static void dgram__bad_input__rejected(void **state)
{
    (void)state;
    struct i2_udp_dgram g;
    uint8_t b[16];
    memcpy(b, udp_plain_first, 16);
    for (size_t k = 0; k < 16; k++)
        assert_int_equal(i2_udp_dgram_parse(b, k, I2_UDP_HDR16, &g), I2_NOT_IPERF2);
    for (size_t k = 0; k < 12; k++)
        assert_int_equal(i2_udp_dgram_parse(b, k, I2_UDP_HDR12, &g), I2_NOT_IPERF2);
    assert_int_equal(i2_udp_dgram_parse(b, 16, (enum i2_udp_layout)14, &g), I2_NOT_IPERF2);
    wr32(b + 8, 1000000u);
    assert_int_equal(i2_udp_dgram_parse(b, 16, I2_UDP_HDR16, &g), I2_NOT_IPERF2);
    wr32(b + 8, 999999u);
    wr32(b, 5);
    wr32(b + 12, 1);
    assert_int_equal(i2_udp_dgram_parse(b, 16, I2_UDP_HDR16, &g), I2_OK);
    assert_true(g.seq == (int64_t)0x100000005LL);
}

/* ---- UDP client test header -------------------------------------------- */

static struct i2_udp_client udp_ok(const uint8_t *fx, size_t fxlen, size_t wire_len)
{
    uint8_t d[2048];
    struct i2_udp_client c;
    struct i2_fixture f = { "fx", fx, fxlen, wire_len };
    size_t n = i2fx_datagram(&f, d, sizeof(d));
    assert_int_not_equal(n, 0);
    memset(&c, 0xAA, sizeof(c));
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_OK);
    return c;
}

static void udp_client__218_plain(void **state)
{
    (void)state;
    struct i2_udp_client c = udp_ok(udp_plain_first, sizeof(udp_plain_first), UDP_PLAIN_FIRST_WIRE_LEN);
    assert_int_equal(c.layout, I2_UDP_HDR16);
    assert_false(c.small_triptimes);
    assert_int_equal(c.dgram.seq, 1);
    assert_int_equal(c.hdr.flags, 0x48010098u);
    assert_int_equal(c.hdr.flags, I2_HEADER_EXTEND | I2_HEADER_SEQNO64B | I2_HEADER_LEN_BIT | (76u << 1));
    assert_int_equal(c.hdr.len, 60);
    assert_int_equal(c.hdr.num_threads, 1);
    assert_int_equal(c.hdr.port, 15302);
    assert_int_equal(c.hdr.amount, -100);
    assert_int_equal(c.hdr.rate, 1048576);      /* default -b 1M */
    assert_int_equal(c.hdr.version_u, 0x00020001u);
    assert_int_equal(c.hdr.mode, I2_MODE_NORMAL);
    assert_false(c.hdr.connect_back);
    assert_false(c.hdr.server_acks);

    /* the FIN still carries the header */
    c = udp_ok(udp_plain_fin, sizeof(udp_plain_fin), UDP_PLAIN_FIN_WIRE_LEN);
    assert_true(c.dgram.fin);
    assert_int_equal(c.dgram.seq, -93);
    assert_int_equal(c.hdr.port, 15302);
}

static void udp_client__218_modes(void **state)
{
    (void)state;
    struct i2_udp_client c = udp_ok(udp_d_first, sizeof(udp_d_first), UDP_D_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.flags, 0xc8010099u);
    assert_int_equal(c.hdr.mode, I2_MODE_DUALTEST);
    assert_true(c.hdr.connect_back);

    c = udp_ok(udp_r_first, sizeof(udp_r_first), UDP_R_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.mode, I2_MODE_TRADEOFF);
    assert_true(c.hdr.connect_back);

    c = udp_ok(udp_reverse_first, sizeof(udp_reverse_first), UDP_REVERSE_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.flags, 0x6c010098u);
    assert_int_equal(c.hdr.upperflags, I2_UF_REVERSE);
    assert_int_equal(c.hdr.mode, I2_MODE_REVERSE);
    assert_false(c.hdr.connect_back);

    c = udp_ok(udp_fd_first, sizeof(udp_fd_first), UDP_FD_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.upperflags, I2_UF_FULLDUPLEX | I2_UF_NOUDPFIN);
    assert_int_equal(c.hdr.mode, I2_MODE_FULLDUPLEX);
}

static void udp_client__small_payloads(void **state)
{
    (void)state;
    struct i2_udp_client c = udp_ok(udp_small_first, sizeof(udp_small_first), UDP_SMALL_FIRST_WIRE_LEN);
    assert_true(c.small_triptimes);
    assert_int_equal(c.layout, I2_UDP_HDR16);
    assert_int_equal(c.dgram.seq, 1);

    /* -l 40: the first datagram grows to hold the header, later ones cut it */
    c = udp_ok(udp_l40_first, sizeof(udp_l40_first), UDP_L40_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.buflen, 40);
    assert_int_equal(c.hdr.amount, -30);
    struct i2_udp_client c2;
    assert_int_equal(i2_udp_client_parse(udp_l40_second, sizeof(udp_l40_second), &c2), I2_NOT_IPERF2);
}

static void udp_client__legacy(void **state)
{
    (void)state;
    struct i2_udp_client c = udp_ok(o_udp_first, sizeof(o_udp_first), O_UDP_FIRST_WIRE_LEN);
    assert_int_equal(c.layout, I2_UDP_HDR12);
    assert_int_equal(c.dgram.seq, 0);
    assert_int_equal(c.hdr.flags, 0);
    assert_int_equal(c.hdr.len, 24);
    assert_int_equal(c.hdr.num_threads, 1);
    assert_int_equal(c.hdr.port, 15304);
    assert_int_equal(c.hdr.winband, 1048576);    /* 2.0.5 sends -b here */
    assert_int_equal(c.hdr.amount, -100);
    assert_false(c.hdr.extended);
    assert_int_equal(c.hdr.mode, I2_MODE_NORMAL);

    c = udp_ok(o_udp_d_first, sizeof(o_udp_d_first), O_UDP_D_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.mode, I2_MODE_DUALTEST);
    assert_int_equal(c.hdr.port, 15393);

    c = udp_ok(o_udp_fin, sizeof(o_udp_fin), O_UDP_FIN_WIRE_LEN);
    assert_true(c.dgram.fin);
    assert_int_equal(c.dgram.seq, -91);
}

static void udp_client__2013(void **state)
{
    (void)state;
    struct i2_udp_client c = udp_ok(m_udp_plain_first, sizeof(m_udp_plain_first),
                                    M_UDP_PLAIN_FIRST_WIRE_LEN);
    assert_int_equal(c.layout, I2_UDP_HDR16);
    assert_int_equal(c.dgram.seq, 0);                /* 2.0.13 starts at 0 */
    assert_true(c.hdr.headerless);
    assert_int_equal(c.hdr.flags, I2_HEADER_SEQNO64B);
    assert_int_equal(c.hdr.mode, I2_MODE_NORMAL);

    c = udp_ok(m_udp_plain_fin, sizeof(m_udp_plain_fin), M_UDP_PLAIN_FIN_WIRE_LEN);
    assert_true(c.dgram.fin);
    assert_int_equal(c.dgram.seq, -90);

    c = udp_ok(m_udp_d_first, sizeof(m_udp_d_first), M_UDP_D_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.flags, I2_HEADER_VERSION1 | I2_HEADER_SEQNO64B | I2_RUN_NOW);
    assert_int_equal(c.hdr.mode, I2_MODE_DUALTEST);
    assert_int_equal(c.hdr.port, 15396);

    c = udp_ok(m_udp_x_first, sizeof(m_udp_x_first), M_UDP_X_FIRST_WIRE_LEN);
    assert_int_equal(c.hdr.flags, I2_HEADER_EXTEND | I2_HEADER_SEQNO64B);
    assert_false(c.hdr.v1_valid);
    assert_int_equal(c.hdr.version_l, 0x000d0003u);
    /* this first datagram leaves id2 unset ("2345"): a 64-bit reader sees a
     * huge sequence (the 2.1.8 server reported 3617292327946551204 lost) */
    assert_int_equal(c.dgram.id2, 0x32333435u);
    assert_true(c.dgram.seq == (int64_t)0x3233343500000000LL);

    struct i2_udp_report r;
    assert_int_equal(i2_udp_report_parse(m_udp_report, sizeof(m_udp_report), &r), I2_OK);
    assert_int_equal(r.layout, I2_REPORT_MODERN);
    assert_int_equal(r.datagrams, 90);
}

static void udp_client__22_master__any_build_type(void **state)
{
    (void)state;
    struct i2_udp_client c = udp_ok(v22m_udp_first, sizeof(v22m_udp_first),
                                    V22M_UDP_FIRST_WIRE_LEN);
    assert_int_equal(c.layout, I2_UDP_HDR16);
    assert_int_equal(c.dgram.seq, 1);
    assert_int_equal(c.hdr.flags, I2_HEADER_EXTEND | I2_HEADER_SEQNO64B | I2_HEADER_LEN_BIT |
                                  (80u << 1));
    assert_int_equal(c.hdr.len, 64);
    assert_int_equal(c.hdr.num_threads, 1);
    assert_int_equal(c.hdr.version_l, 0x00020005u);
    assert_int_equal(c.hdr.mode, I2_MODE_NORMAL);
}

static void udp_client__every_capture_and_truncation(void **state)
{
    (void)state;
    uint8_t d[2048];
    struct i2_udp_client c;
    for (size_t i = 0; i < I2FX_COUNT(i2fx_udp_client); i++) {
        const struct i2_fixture *f = &i2fx_udp_client[i];
        size_t n = i2fx_datagram(f, d, sizeof(d));
        assert_int_equal(i2_udp_client_parse(d, n, &c), I2_OK);
        assert_true(i2_detect_udp(d, n));
        /* a datagram cut inside the header is refused, never misread */
        size_t need = (size_t)c.layout + (c.small_triptimes ? 2 : c.hdr.headerless ? 20 :
                                          c.hdr.extended ? 60 : 24);
        for (size_t k = 0; k < need; k++)
            if (i2_udp_client_parse(d, k, &c) != I2_NOT_IPERF2)
                fail_msg("%s: %zu bytes accepted", f->name, k);
    }
    for (size_t i = 0; i < I2FX_COUNT(i2fx_udp_other); i++) {
        const struct i2_fixture *f = &i2fx_udp_other[i];
        size_t n = i2fx_datagram(f, d, sizeof(d));
        if (i2_udp_client_parse(d, n, &c) != I2_NOT_IPERF2)
            fail_msg("%s taken for a client datagram", f->name);
        assert_false(i2_detect_udp(d, n));
    }
}

static void udp_client__garbage_and_absurd__rejected(void **state)
{
    (void)state;
    uint8_t d[1470];
    struct i2_udp_client c;
    static const uint8_t i3_req[4] = { 0x39, 0x38, 0x37, 0x36 };
    assert_int_equal(i2_udp_client_parse(i3_req, 4, &c), I2_NOT_IPERF2);

    int accepted = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = 12 + rng() % 200;
        fill_random(d, n);
        if (i2_udp_client_parse(d, n, &c) == I2_OK)
            accepted++;
    }
    assert_int_equal(accepted, 0);

    struct i2_fixture f = I2FXW(udp_plain_first, UDP_PLAIN_FIRST_WIRE_LEN);
    size_t n = i2fx_datagram(&f, d, sizeof(d));
    wr32(d + 8, 1000000u);                         /* tv_usec */
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);
    n = i2fx_datagram(&f, d, sizeof(d));
    wr32(d + 16, 0x48010098u | I2_HEADER_KEYCHECK);  /* no keys over UDP */
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);
    n = i2fx_datagram(&f, d, sizeof(d));
    wr32(d + 16, I2_HEADER_EXTEND | I2_HEADER_LEN_BIT | (60u << 1));  /* length without the 16 */
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);
    n = i2fx_datagram(&f, d, sizeof(d));
    wr32(d + 20, 0);                               /* numThreads */
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);
    n = i2fx_datagram(&f, d, sizeof(d));
    wr32(d + 24, 70000);                           /* mPort */
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);

    struct i2_fixture o = I2FXW(o_udp_first, O_UDP_FIRST_WIRE_LEN);
    n = i2fx_datagram(&o, d, sizeof(d));
    wr32(d + 12, I2_RUN_NOW);                      /* 2.0.5 sends 0, V1 or V1|RUN_NOW */
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);
    n = i2fx_datagram(&o, d, sizeof(d));
    wr32(d + 16, 0);
    assert_int_equal(i2_udp_client_parse(d, n, &c), I2_NOT_IPERF2);
}

/* ---- Server Report ----------------------------------------------------- */

static void report__218__128_bytes(void **state)
{
    (void)state;
    struct i2_udp_report r;
    assert_int_equal(sizeof(udp_plain_report), I2_REPORT_LEN);
    assert_int_equal(i2_udp_report_parse(udp_plain_report, sizeof(udp_plain_report), &r), I2_OK);
    assert_int_equal(r.layout, I2_REPORT_MODERN);
    assert_int_equal(r.dgram_len, 128);
    assert_int_equal(r.flags, I2_HEADER_VERSION1 | I2_HEADER_SEQNO64B);
    assert_int_equal(r.total_len, 136710);       /* 93 x 1470 */
    assert_int_equal(r.stop_sec, 1);
    assert_int_equal(r.stop_usec, 22070);        /* client printed 1.0221 s */
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.outorder, 0);
    assert_int_equal(r.datagrams, 93);
    assert_int_equal(r.jitter_sec, 0);
    assert_int_equal(r.jitter_usec, 17);         /* client printed 0.017 ms */
    assert_true(r.has_transit);
    assert_int_equal(r.cnt_transit, 93);
    assert_true(r.has_ext2);
    assert_int_equal(r.echo_seq, 0);
}

static void report__218_other_captures(void **state)
{
    (void)state;
    struct i2_udp_report r;
    assert_int_equal(i2_udp_report_parse(udp_d_report, sizeof(udp_d_report), &r), I2_OK);
    assert_int_equal(r.datagrams, 93);
    assert_int_equal(r.jitter_usec, 14);
    /* a 2.1.8 server answers a 2.0.6 client the same way: 128 bytes */
    assert_int_equal(i2_udp_report_parse(udp_report_old, sizeof(udp_report_old), &r), I2_OK);
    assert_int_equal(r.layout, I2_REPORT_MODERN);
    assert_int_equal(r.datagrams, 91);
    assert_int_equal(r.total_len, 91 * 1470);
    assert_int_equal(i2_udp_report_parse(udp_report_fake, sizeof(udp_report_fake), &r), I2_OK);
    assert_int_equal(r.datagrams, 11);           /* 10 data + the first FIN */
}

static void report__218_resend__is_the_fin_echo(void **state)
{
    (void)state;
    struct i2_udp_report r;
    struct i2_udp_dgram g;
    assert_int_equal(sizeof(udp_resend_echo), 128);
    assert_int_equal(i2_udp_report_parse(udp_resend_echo, sizeof(udp_resend_echo), &r), I2_NOT_IPERF2);
    assert_int_equal(i2_udp_dgram_parse(udp_resend_echo, 128, I2_UDP_HDR16, &g), I2_OK);
    assert_int_equal(g.seq, -11);                /* the sender's own FIN */
    assert_int_equal(rd32(udp_resend_echo + 16), 0x48010098u);  /* its test header */
    /* so it even reads as a client datagram (it is one, sent back) */
    struct i2_udp_client c;
    assert_int_equal(i2_udp_client_parse(udp_resend_echo, 128, &c), I2_OK);
    assert_int_equal(c.dgram.seq, -11);
}

static void report__legacy__fin_echo_with_report_at_12(void **state)
{
    (void)state;
    uint8_t d[1470];
    struct i2_udp_report r;
    struct i2_fixture f = I2FXW(o_udp_report, O_UDP_REPORT_WIRE_LEN);
    size_t n = i2fx_datagram(&f, d, sizeof(d));
    assert_int_equal(i2_udp_report_parse(d, n, &r), I2_OK);
    assert_int_equal(r.layout, I2_REPORT_LEGACY);
    assert_int_equal(r.dgram_len, 1470);         /* the server's -l, not a report size */
    assert_int_equal(r.echo_seq, -91);
    assert_int_equal(r.flags, I2_HEADER_VERSION1);
    assert_int_equal(r.total_len, 91 * 1470);
    assert_int_equal(r.stop_sec, 1);
    assert_int_equal(r.datagrams, 91);
    assert_int_equal(r.jitter_usec, 57);         /* client printed 0.057 ms */
    assert_false(r.has_transit);
    /* the echoed FIN's tv_sec/tv_usec are the client's */
    assert_memory_equal(d, o_udp_fin, 12);

    struct i2_fixture g = I2FXW(o_udp_report_new, O_UDP_REPORT_NEW_WIRE_LEN);
    n = i2fx_datagram(&g, d, sizeof(d));
    assert_int_equal(i2_udp_report_parse(d, n, &r), I2_OK);
    assert_int_equal(r.layout, I2_REPORT_LEGACY);
    assert_int_equal(r.echo_seq, -93);
    assert_int_equal(r.datagrams, 93);
    assert_int_equal(r.errors, 1);               /* 2.0.6 expects the first id to be 0 */
}

static void report__truncated_and_garbage(void **state)
{
    (void)state;
    struct i2_udp_report r;
    uint8_t d[1470];
    for (size_t k = 0; k < 56; k++)
        assert_int_equal(i2_udp_report_parse(udp_plain_report, k, &r), I2_NOT_IPERF2);
    assert_int_equal(i2_udp_report_parse(udp_plain_report, 56, &r), I2_OK);
    assert_false(r.has_transit);
    assert_false(r.has_ext2);
    assert_int_equal(i2_udp_report_parse(udp_plain_report, 116, &r), I2_OK);
    assert_true(r.has_transit);
    assert_false(r.has_ext2);

    struct i2_fixture f = I2FXW(o_udp_report, O_UDP_REPORT_WIRE_LEN);
    i2fx_datagram(&f, d, sizeof(d));
    for (size_t k = 0; k < 52; k++)
        assert_int_equal(i2_udp_report_parse(d, k, &r), I2_NOT_IPERF2);
    assert_int_equal(i2_udp_report_parse(d, 52, &r), I2_OK);

    /* client datagrams are not reports */
    for (size_t i = 0; i < I2FX_COUNT(i2fx_udp_client); i++) {
        const struct i2_fixture *c = &i2fx_udp_client[i];
        size_t n = i2fx_datagram(c, d, sizeof(d));
        if (i2_udp_report_parse(d, n, &r) != I2_NOT_IPERF2)
            fail_msg("%s taken for a report", c->name);
    }
    /* absurd fields */
    memcpy(d, udp_plain_report, 128);
    wr32(d + 16 + 16, 1000000u);                 /* stop_usec */
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_NOT_IPERF2);
    memcpy(d, udp_plain_report, 128);
    wr32(d + 16 + 36, 1000000u);                 /* jitter usec */
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_NOT_IPERF2);
    memcpy(d, udp_plain_report, 128);
    wr32(d + 16, I2_HEADER_SEQNO64B);            /* no VERSION1 */
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_NOT_IPERF2);
    wr32(d + 16, I2_HEADER_VERSION1 | I2_RUN_NOW);
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_NOT_IPERF2);
    memcpy(d, udp_plain_report, 128);
    d[3] = 1;                                    /* header not zero */
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_NOT_IPERF2);

    int accepted = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = 52 + rng() % 100;
        fill_random(d, n);
        if (i2_udp_report_parse(d, n, &r) == I2_OK)
            accepted++;
    }
    assert_int_equal(accepted, 0);
}

static void report__64bit_counters(void **state)
{
    (void)state;
    struct i2_udp_report r;
    uint8_t d[128];
    memcpy(d, udp_plain_report, 128);
    wr32(d + 16 + 100, 2);                       /* error_cnt2 */
    wr32(d + 16 + 108, 1);                       /* datagrams2 */
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_OK);
    assert_true(r.errors == 2ull << 32);
    assert_true(r.datagrams == (1ull << 32) + 93);
    wr32(d + 16, I2_HEADER_VERSION1);            /* without SEQNO64B they are ignored */
    assert_int_equal(i2_udp_report_parse(d, 128, &r), I2_OK);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.datagrams, 93);
}

static void mode_names(void **state)
{
    (void)state;
    assert_string_equal(i2_mode_name(I2_MODE_DUALTEST), "dualtest");
    assert_string_equal(i2_mode_name(I2_MODE_REVERSE), "reverse");
    assert_string_equal(i2_mode_name(I2_MODE_FULLDUPLEX), "full-duplex");
    assert_string_equal(i2_mode_name(I2_MODE_BOUNCEBACK), "bounceback");
    assert_string_equal(i2_mode_name((enum i2_mode)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_hdr__plain_218__normal_with_ack),
        cmocka_unit_test(tcp_hdr__stream_start__header_then_data),
        cmocka_unit_test(tcp_hdr__P2_e_n__fields),
        cmocka_unit_test(tcp_hdr__dualtest__connect_back_now),
        cmocka_unit_test(tcp_hdr__tradeoff__connect_back_later),
        cmocka_unit_test(tcp_hdr__reverse_fullduplex__same_connection_no_ack),
        cmocka_unit_test(tcp_hdr__peer_detect__client_awaits_ack),
        cmocka_unit_test(tcp_hdr__trip_times__80_bytes),
        cmocka_unit_test(tcp_hdr__permit_key__length_includes_key),
        cmocka_unit_test(tcp_hdr__bounceback__recognised),
        cmocka_unit_test(tcp_hdr__legacy_plain__flags_zero_24_bytes),
        cmocka_unit_test(tcp_hdr__legacy_dual_tradeoff),
        cmocka_unit_test(tcp_hdr__every_client_capture__prefixes_need_more),
        cmocka_unit_test(tcp_hdr__2013_plain__headerless_stream),
        cmocka_unit_test(tcp_hdr__2013_dual__v1_header_only),
        cmocka_unit_test(tcp_hdr__2013_peer_detect__ext_without_v1),
        cmocka_unit_test(tcp_hdr__server_bytes_and_connect_back__not_iperf2),
        cmocka_unit_test(tcp_hdr__garbage__rejected),
        cmocka_unit_test(tcp_hdr__absurd_values__rejected_early),
        cmocka_unit_test(tcp_hdr__impossible_flags__rejected),
        cmocka_unit_test(tcp_hdr__permit_key_bounds),
        cmocka_unit_test(tcp_hdr__longest_header__383_bytes),
        cmocka_unit_test(tcp_hdr__sync_transfer_id__threads_masked),
        cmocka_unit_test(tcp_hdr__22_peers__any_build_type),
        cmocka_unit_test(tcp_hdr__bounceback_bounds),
        cmocka_unit_test(set_port__round_trip__only_mport_changes),
        cmocka_unit_test(set_port__udp_both_layouts),
        cmocka_unit_test(set_port__bad_arguments__refused),
        cmocka_unit_test(ack__218_plain__28_bytes),
        cmocka_unit_test(ack__trip_times__52_bytes_with_timestamps),
        cmocka_unit_test(ack__followed_by_data__length_from_ack),
        cmocka_unit_test(ack__other_bytes__rejected),
        cmocka_unit_test(dgram__218__64bit_sequence),
        cmocka_unit_test(dgram__fin_retries__sequence_decreases),
        cmocka_unit_test(dgram__legacy__32bit_sequence_from_zero),
        cmocka_unit_test(dgram__connect_back_stream__headerless_but_parsable),
        cmocka_unit_test(dgram__bad_input__rejected),
        cmocka_unit_test(udp_client__218_plain),
        cmocka_unit_test(udp_client__218_modes),
        cmocka_unit_test(udp_client__small_payloads),
        cmocka_unit_test(udp_client__legacy),
        cmocka_unit_test(udp_client__2013),
        cmocka_unit_test(udp_client__22_master__any_build_type),
        cmocka_unit_test(udp_client__every_capture_and_truncation),
        cmocka_unit_test(udp_client__garbage_and_absurd__rejected),
        cmocka_unit_test(report__218__128_bytes),
        cmocka_unit_test(report__218_other_captures),
        cmocka_unit_test(report__218_resend__is_the_fin_echo),
        cmocka_unit_test(report__legacy__fin_echo_with_report_at_12),
        cmocka_unit_test(report__truncated_and_garbage),
        cmocka_unit_test(report__64bit_counters),
        cmocka_unit_test(mode_names),
    };
    return cmocka_run_group_tests_name("iperf2", tests, NULL, NULL);
}
