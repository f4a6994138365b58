/*
 * libFuzzer harness for everything in protocol/ and compat/: bytes in, no
 * sockets.  Built and run by `make fuzz` (clang, ASan + UBSan); not part of
 * `make test`.
 *
 * The first input byte picks the target, the rest is its input:
 *   0  iperf3 control channel: the input is cut into chunks, each fed to the
 *      direction its first byte picks (split reads on both directions), then
 *      both directions end (i3_ctrl_eof).  Small caps, so that long JSON
 *      blocks are rejected as well as kept.
 *   1  iperf3 parameters JSON (i3_params_parse, then mode and stream count)
 *   2  iperf2 TCP test header, header ack, and mPort rewrite on a copy
 *   3  iperf2 UDP: datagram header in both layouts, client datagram, Server
 *      Report, mPort rewrite on a copy
 *   4  detection of TCP first bytes and UDP first datagrams
 *   5  iperf3 version strings and the compat predicates
 * Every call also checks the parsers' documented promises (consumed bytes
 * never exceed the input, lengths stay within the input) with abort(), so
 * that a broken promise is a crash libFuzzer reports.
 */
#include "compat/iperf3_compat.h"
#include "protocol/detect.h"
#include "protocol/iperf2.h"
#include "protocol/iperf3_ctrl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void fuzz_ctrl(const uint8_t *d, size_t n)
{
    struct i3_ctrl c;
    i3_ctrl_init(&c, 512, 4096);
    size_t off = 0;
    while (off < n) {
        uint8_t sel = d[off++];
        enum i3_dir dir = (sel & 1) ? I3_S2C : I3_C2S;
        size_t chunk = (size_t)(sel >> 1) + 1;   /* 1..128 bytes */
        if (chunk > n - off)
            chunk = n - off;
        const uint8_t *p = d + off;
        size_t left = chunk;
        while (left > 0) {
            struct i3_event ev;
            size_t used = i3_ctrl_feed(&c, dir, p, left, &ev);
            CHECK(used <= left);
            if (ev.kind == I3_EV_JSON && ev.json != NULL)
                CHECK(strlen(ev.json) <= ev.json_len);
            if (ev.kind == I3_EV_ERROR)
                CHECK(ev.reason != NULL);
            if (used == 0)
                break;   /* failed: it consumes nothing more */
            p += used;
            left -= used;
        }
        off += chunk;
    }
    struct i3_event ev;
    i3_ctrl_eof(&c, I3_C2S, &ev);
    i3_ctrl_eof(&c, I3_S2C, &ev);
    i3_ctrl_free(&c);
}

static void fuzz_params(const uint8_t *d, size_t n)
{
    /* i3_params_parse takes text that need not be NUL-terminated */
    char *json = malloc(n ? n : 1);
    if (json == NULL)
        return;
    memcpy(json, d, n);
    struct i3_params p;
    const char *why = NULL;
    for (int rule = I3_FLAGS_LENIENT; rule <= I3_FLAGS_TYPED; rule++) {
        if (i3_params_parse_as(json, n, (enum i3_flag_rule)rule, &p, &why) == 0) {
            CHECK(p.parallel >= 1 && p.parallel <= I3_MAX_PARALLEL);
            CHECK(i3_params_stream_count(&p) >= 1);
            CHECK(i3_params_mode(&p) != NULL);
            CHECK(memchr(p.client_version, '\0', sizeof(p.client_version)) != NULL);
            CHECK(memchr(p.misread_flag, '\0', sizeof(p.misread_flag)) != NULL);
            CHECK(rule != I3_FLAGS_LENIENT || p.misread_flag[0] == '\0');
        } else {
            CHECK(why != NULL);
        }
    }
    free(json);
}

static void fuzz_i2_tcp(const uint8_t *d, size_t n)
{
    struct i2_test_hdr h;
    if (i2_tcp_hdr_parse(d, n, &h) == I2_OK)
        CHECK(h.len <= n);
    struct i2_hdr_ack a;
    i2_hdr_ack_parse(d, n, &a);
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return;
    memcpy(copy, d, n);
    i2_hdr_set_port(copy, n, 5001);
    free(copy);
    i2_detect_tcp(d, n);
}

static void fuzz_i2_udp(const uint8_t *d, size_t n)
{
    struct i2_udp_dgram g;
    i2_udp_dgram_parse(d, n, I2_UDP_HDR12, &g);
    i2_udp_dgram_parse(d, n, I2_UDP_HDR16, &g);
    struct i2_udp_client c;
    if (i2_udp_client_parse(d, n, &c) == I2_OK) {
        CHECK((size_t)c.layout <= n);
        CHECK(i2_mode_name(c.hdr.mode) != NULL);
        uint8_t *copy = malloc(n);
        if (copy != NULL) {
            memcpy(copy, d, n);
            i2_hdr_set_port(copy + c.layout, n - (size_t)c.layout, 5001);
            free(copy);
        }
    }
    struct i2_udp_report r;
    if (i2_udp_report_parse(d, n, &r) == I2_OK)
        CHECK(r.dgram_len == n);
    i2_detect_udp(d, n);
}

static void fuzz_detect(const uint8_t *d, size_t n)
{
    detect_tcp(d, n);
    detect_udp(d, n);
}

static void fuzz_compat(const uint8_t *d, size_t n)
{
    char s[64];
    size_t k = n < sizeof(s) - 1 ? n : sizeof(s) - 1;
    memcpy(s, d, k);
    s[k] = '\0';
    int major = 0, minor = 0;
    if (i3_version_parse(s, &major, &minor) == 0) {
        i3_udp_magic_is_network_order(major, minor);
        i3_udp_magic_endian_fixed(major, minor);
        i3_closes_ctrl_with_half_close(major, minor);
        i3_server_params_cap(major, minor);
        i3_server_params_typed(major, minor);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: fuzz_ctrl(d, n); break;
    case 1: fuzz_params(d, n); break;
    case 2: fuzz_i2_tcp(d, n); break;
    case 3: fuzz_i2_udp(d, n); break;
    case 4: fuzz_detect(d, n); break;
    case 5: fuzz_compat(d, n); break;
    }
    return 0;
}
