#include "protocol/iperf2.h"

#include "compat/iperf2_compat.h"

#include <string.h>

/* Flag bits an iperf2 client may set in a TCP test header (bounceback aside);
 * 2.0.13 sets SEQNO64B on TCP too. */
#define TCP_FLAGS_KNOWN (I2_HEADER_VERSION1 | I2_HEADER_EXTEND | I2_HEADER_KEYCHECK | \
                         I2_HEADER_SEQNO64B | I2_HEADER_VERSION2 | I2_HEADER_V2PEERDETECT | \
                         I2_HEADER_LEN_BIT | I2_HEADER_LEN_MASK | I2_RUN_NOW)

/* Flag bits an iperf2 client may set in a UDP test header (after 16 bytes). */
#define UDP_FLAGS_KNOWN (I2_HEADER_VERSION1 | I2_HEADER_EXTEND | I2_HEADER_UDPTESTS | \
                         I2_HEADER_SEQNO64B | I2_HEADER_VERSION2 | I2_HEADER_UDPAVOID2 | \
                         I2_HEADER_UDPAVOID1 | I2_HEADER_LEN_BIT | I2_HEADER_LEN_MASK | \
                         I2_RUN_NOW)

/* Bits of a Server Report's flags besides HEADER_VERSION1. */
#define REPORT_FLAGS_KNOWN (I2_HEADER_VERSION1 | I2_SERVER_HEADER_EXTEND | I2_HEADER_SEQNO64B)

/* bounceback_hdr.bbflags bits (QUICKACK, CLOCKSYNCED, TOS, STOP, 2.2 REPLYSIZE). */
#define BB_FLAGS_KNOWN 0xF800u

/* Offsets in a test header, from its flags word. */
enum {
    OFF_FLAGS = 0, OFF_THREADS = 4, OFF_PORT = 8, OFF_BUFLEN = 12, OFF_WINBAND = 16,
    OFF_AMOUNT = 20,
    /* client_hdrext, right after client_hdr_v1 */
    OFF_TYPE = 24, OFF_LENGTH = 28, OFF_UPPER = 32, OFF_LOWER = 34, OFF_VER_U = 36,
    OFF_VER_L = 40, OFF_TOS = 46, OFF_LRATE = 48, OFF_URATE = 52,
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* 2.0.10 .. 2.0.13 extension: HEADER_EXTEND without a coded length; its
 * client_hdrext is typelen {1, 28}, flags, version_u, version_l, reserved,
 * mRate, mUDPRateUnits, mRealtime (version at the same offsets). */
static bool ext_2013(uint32_t flags)
{
    return (flags & I2_HEADER_EXTEND) && !(flags & I2_HEADER_LEN_BIT);
}

/* Whether the client filled the six client_hdr_v1 words: 2.0.10 .. 2.0.13
 * fill them for -d/-r only (VERSION1); everyone else always. */
static bool v1_filled(uint32_t flags)
{
    return !ext_2013(flags) || (flags & I2_HEADER_VERSION1);
}

/* Checks the fields of client_hdr_v1 and client_hdrext that lie within the
 * first avail bytes of header p (flags word first).  Returns false when one
 * of them is implausible. */
static bool fields_plausible(const uint8_t *p, size_t avail, uint32_t flags)
{
    if (v1_filled(flags)) {
        if (avail >= OFF_THREADS + 4) {
            uint32_t tid;
            uint32_t n = i2_threads_split(be32(p + OFF_THREADS), flags & I2_HEADER_EXTEND, &tid);
            if (n == 0 || n > I2_MAX_THREADS)
                return false;
        }
        if (avail >= OFF_PORT + 4) {
            uint32_t port = be32(p + OFF_PORT);
            if (port == 0 || port > 65535)
                return false;
        }
        if (avail >= OFF_BUFLEN + 4 && be32(p + OFF_BUFLEN) > I2_MAX_BUFLEN)
            return false;
        /* 2.0.10 .. 2.0.13 leave mWinBand unset: data pattern, still >= 0 */
        if (avail >= OFF_WINBAND + 4 && (be32(p + OFF_WINBAND) & 0x80000000u))
            return false;
    }
    if (flags & I2_HEADER_EXTEND) {
        if (ext_2013(flags)) {   /* typelen: CLIENTHDR, 28 from 2.0.10 .. 2.0.13 */
            if (avail >= OFF_TYPE + 4 && be32(p + OFF_TYPE) != 1)
                return false;
            if (avail >= OFF_LENGTH + 4 && (be32(p + OFF_LENGTH) < I2_HDR_EXT_LEN - 8 ||
                                            be32(p + OFF_LENGTH) > I2_HDR_MAX_LEN))
                return false;
        }
        /* any build type (version_l's low 16 bits): compat/iperf2_compat.h */
        if (avail >= OFF_VER_U + 4 &&
            !i2_version_plausible(be32(p + OFF_VER_U), avail >= OFF_VER_L + 4 ?
                                                       be32(p + OFF_VER_L) : 0))
            return false;
    }
    return true;
}

/* Fills the fields of h that come from client_hdr_v1 and client_hdrext,
 * and the mode, from a header whose fixed part is complete. */
static void fields_fill(const uint8_t *p, uint32_t flags, struct i2_test_hdr *h)
{
    h->flags = flags;
    h->v1_valid = v1_filled(flags);
    if (h->v1_valid) {
        h->num_threads = i2_threads_split(be32(p + OFF_THREADS), flags & I2_HEADER_EXTEND,
                                          &h->transfer_id);
        h->port = (uint16_t)be32(p + OFF_PORT);
        h->buflen = be32(p + OFF_BUFLEN);
        h->winband = be32(p + OFF_WINBAND);
        h->amount = (int32_t)be32(p + OFF_AMOUNT);
    }
    if (flags & I2_HEADER_EXTEND) {
        h->extended = true;
        h->version_u = be32(p + OFF_VER_U);
        h->version_l = be32(p + OFF_VER_L);
        if (!ext_2013(flags)) {
            h->upperflags = be16(p + OFF_UPPER);
            h->lowerflags = be16(p + OFF_LOWER);
            h->tos = be16(p + OFF_TOS);
            h->rate = be32(p + OFF_LRATE) | (uint64_t)(be32(p + OFF_URATE) >> 8) << 32;
        }
    }
    /* As Listener::apply_client_settings_* and Settings_GenerateClientSettings. */
    if ((flags & I2_HEADER_VERSION1) && !(flags & I2_HEADER_VERSION2)) {
        h->mode = (flags & I2_RUN_NOW) ? I2_MODE_DUALTEST : I2_MODE_TRADEOFF;
        h->connect_back = true;
    } else if ((flags & I2_HEADER_VERSION2) && (h->upperflags & I2_UF_FULLDUPLEX)) {
        h->mode = I2_MODE_FULLDUPLEX;
    } else if ((flags & I2_HEADER_VERSION2) && (h->upperflags & I2_UF_REVERSE)) {
        h->mode = I2_MODE_REVERSE;
    } else {
        h->mode = I2_MODE_NORMAL;
    }
}

/* Length of the fixed part (client_hdr_v1 [+ client_hdrext]) for flags that
 * announce a header, or 0 when the combination is one no iperf2 client
 * sends.  udp selects the UDP meaning of 0x02000000. */
static size_t fixed_len(uint32_t flags, bool udp)
{
    if (!(flags & (I2_HEADER_VERSION1 | I2_HEADER_EXTEND | I2_HEADER_VERSION2)))
        return 0;
    if ((flags & I2_RUN_NOW) && !(flags & I2_HEADER_VERSION1))
        return 0;
    if ((flags & I2_HEADER_VERSION2) && !(flags & I2_HEADER_EXTEND))
        return 0;
    if (!udp && (flags & I2_HEADER_V2PEERDETECT) && !(flags & I2_HEADER_VERSION2))
        return 0;
    if ((flags & I2_HEADER_LEN_MASK) && !(flags & I2_HEADER_LEN_BIT))
        return 0;
    if ((flags & I2_HEADER_KEYCHECK) &&
        !((flags & I2_HEADER_LEN_BIT) && (flags & I2_HEADER_EXTEND)))
        return 0;
    return I2_HDR_V1_LEN + ((flags & I2_HEADER_EXTEND) ? I2_HDR_EXT_LEN : 0);
}

/* Data pattern check (compat/string.c pattern(): byte i of a buffer is
 * '0' + i % 10): returns I2_NOT_IPERF2 at the first byte of d[from, to)
 * within len that differs, I2_NEED_MORE while len < to, else I2_OK. */
static enum i2_result pattern_check(const uint8_t *d, size_t len, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < len; i++)
        if (d[i] != (uint8_t)('0' + i % 10))
            return I2_NOT_IPERF2;
    return len < to ? I2_NEED_MORE : I2_OK;
}

/* The flags word of a headerless 2.0.10 .. 2.0.13 stream or datagram. */
static bool headerless_flags(uint32_t flags)
{
    return flags == 0 || flags == I2_HEADER_SEQNO64B;
}

static enum i2_result bounceback_parse(const uint8_t *buf, size_t len, uint32_t flags,
                                       struct i2_test_hdr *out)
{
    if (flags != I2_HEADER_BOUNCEBACK)
        return I2_NOT_IPERF2;
    if (len >= 8) {
        uint32_t size = be32(buf + 4);
        if (size < I2_BB_HDR_LEN || size > I2_MAX_BUFLEN)
            return I2_NOT_IPERF2;
    }
    if (len >= 14 && (be16(buf + 12) & ~BB_FLAGS_KNOWN))
        return I2_NOT_IPERF2;
    if (len >= 28 && be32(buf + 24) >= 1000000u)   /* bbclientTx_ts.usec */
        return I2_NOT_IPERF2;
    if (len < I2_BB_HDR_LEN)
        return I2_NEED_MORE;
    memset(out, 0, sizeof(*out));
    out->flags = flags;
    out->bb_size = be32(buf + 4);
    out->len = I2_BB_HDR_LEN;
    out->mode = I2_MODE_BOUNCEBACK;
    return I2_OK;
}

/* Flags 0 or SEQNO64B: 2.0.5 .. 2.0.9's plain header (flags 0, then
 * client_hdr_v1), or 2.0.10 .. 2.0.13's headerless plain stream (the flags
 * word, then the data pattern from offset 4).  Byte 4 tells them apart
 * (numThreads <= 4096 starts with 00, the pattern with '4'). */
static enum i2_result tcp_plain_legacy(const uint8_t *buf, size_t len, uint32_t flags,
                                       struct i2_test_hdr *out)
{
    enum i2_result v1 = I2_NOT_IPERF2;
    if (flags == 0) {
        if (!fields_plausible(buf, len < I2_HDR_V1_LEN ? len : I2_HDR_V1_LEN, flags))
            v1 = I2_NOT_IPERF2;
        else
            v1 = len < I2_HDR_V1_LEN ? I2_NEED_MORE : I2_OK;
    }
    if (v1 == I2_OK) {
        memset(out, 0, sizeof(*out));
        fields_fill(buf, flags, out);
        out->len = I2_HDR_V1_LEN;
        return I2_OK;
    }
    enum i2_result pat = pattern_check(buf, len, 4, I2_PATTERN_CHECK);
    if (pat == I2_OK) {
        memset(out, 0, sizeof(*out));
        out->flags = flags;
        out->headerless = true;
        out->len = 4;
        out->mode = I2_MODE_NORMAL;
        return I2_OK;
    }
    return (v1 == I2_NEED_MORE || pat == I2_NEED_MORE) ? I2_NEED_MORE : I2_NOT_IPERF2;
}

enum i2_result i2_tcp_hdr_parse(const uint8_t *buf, size_t len, struct i2_test_hdr *out)
{
    const uint32_t known = TCP_FLAGS_KNOWN | I2_HEADER_BOUNCEBACK;

    /* Reject on the first flags byte that carries an unknown bit. */
    for (size_t i = 0; i < len && i < 4; i++)
        if (buf[i] & ~(uint8_t)(known >> (24 - 8 * i)))
            return I2_NOT_IPERF2;
    if (len < 4)
        return I2_NEED_MORE;

    uint32_t flags = be32(buf);
    if (flags & I2_HEADER_BOUNCEBACK)
        return bounceback_parse(buf, len, flags, out);
    if (headerless_flags(flags))
        return tcp_plain_legacy(buf, len, flags, out);

    size_t fixed = fixed_len(flags, false);
    if (fixed == 0)
        return I2_NOT_IPERF2;
    size_t coded = fixed;
    if (flags & I2_HEADER_LEN_BIT) {
        coded = (flags & I2_HEADER_LEN_MASK) >> 1;
        if (coded < fixed + ((flags & I2_HEADER_KEYCHECK) ? 2u : 0u))
            return I2_NOT_IPERF2;
    }
    if (!fields_plausible(buf, len < fixed ? len : fixed, flags))
        return I2_NOT_IPERF2;

    size_t total = coded;
    uint16_t key_len = 0;
    if (flags & I2_HEADER_KEYCHECK) {
        /* The key's 16-bit length ends the coded part; the key follows. */
        if (len < coded)
            return I2_NEED_MORE;
        key_len = be16(buf + coded - 2);
        if (key_len < I2_KEY_MIN_LEN || key_len > I2_KEY_MAX_LEN)
            return I2_NOT_IPERF2;
        total = coded + key_len;
    }
    if (len < total)
        return I2_NEED_MORE;

    memset(out, 0, sizeof(*out));
    fields_fill(buf, flags, out);
    out->len = total;
    if (key_len) {
        out->key_len = key_len;
        out->key_off = coded;
    }
    /* Listener::apply_client_settings_tcp (2.1.8): acked when EXTEND comes
     * without VERSION2 (every 2.1.x mode but --reverse/--full-duplex, and
     * 2.0.10 .. 2.0.13 -X), and with V2PEERDETECT (-X). */
    out->server_acks = (!(flags & I2_HEADER_VERSION2) && (flags & I2_HEADER_EXTEND)) ||
                       (flags & I2_HEADER_V2PEERDETECT);
    /* 2.0.14+ read it with -X only; 2.0.10 .. 2.0.13 after any EXTEND header */
    out->client_awaits_ack = (flags & I2_HEADER_V2PEERDETECT) || ext_2013(flags);
    return I2_OK;
}

int i2_hdr_set_port(uint8_t *hdr, size_t len, uint16_t port)
{
    if (len < OFF_PORT + 4 || port == 0)
        return -1;
    hdr[OFF_PORT] = 0;
    hdr[OFF_PORT + 1] = 0;
    hdr[OFF_PORT + 2] = (uint8_t)(port >> 8);
    hdr[OFF_PORT + 3] = (uint8_t)port;
    return 0;
}

enum i2_result i2_hdr_ack_parse(const uint8_t *buf, size_t len, struct i2_hdr_ack *out)
{
    /* type is a big-endian 2: reject on the first byte that differs. */
    static const uint8_t type[4] = { 0, 0, 0, I2_CLIENTHDRACK };
    for (size_t i = 0; i < len && i < 4; i++)
        if (buf[i] != type[i])
            return I2_NOT_IPERF2;
    if (len < 8)
        return I2_NEED_MORE;
    uint32_t length = be32(buf + 4);
    if (length < I2_ACK_LEN || length > 64 || length % 4)
        return I2_NOT_IPERF2;
    if (len >= 16 && (be32(buf + 12) >> 16) != 2)
        return I2_NOT_IPERF2;
    if (len < length)
        return I2_NEED_MORE;

    memset(out, 0, sizeof(*out));
    out->type = I2_CLIENTHDRACK;
    out->length = length;
    out->flags = be32(buf + 8);
    out->version_u = be32(buf + 12);
    out->version_l = be32(buf + 16);
    if (length >= I2_ACK_TS_LEN) {
        out->has_ts = true;
        out->sent_sec = be32(buf + 28);
        out->sent_usec = be32(buf + 32);
        out->sentrx_sec = be32(buf + 36);
        out->sentrx_usec = be32(buf + 40);
        out->ack_sec = be32(buf + 44);
        out->ack_usec = be32(buf + 48);
    }
    return I2_OK;
}

enum i2_result i2_udp_dgram_parse(const uint8_t *d, size_t len, enum i2_udp_layout layout,
                                  struct i2_udp_dgram *out)
{
    if ((layout != I2_UDP_HDR12 && layout != I2_UDP_HDR16) || len < (size_t)layout)
        return I2_NOT_IPERF2;
    uint32_t usec = be32(d + 8);
    if (usec >= 1000000u)
        return I2_NOT_IPERF2;
    memset(out, 0, sizeof(*out));
    out->id = be32(d);
    out->tv_sec = be32(d + 4);
    out->tv_usec = usec;
    if (layout == I2_UDP_HDR16) {
        out->id2 = be32(d + 12);
        out->seq = (int64_t)((uint64_t)out->id2 << 32 | out->id);
    } else {
        out->seq = (int32_t)out->id;
    }
    out->fin = out->seq < 0;
    return I2_OK;
}

/* Common start of every UDP client datagram form: the datagram header in
 * `layout`, and an empty test header.  Returns I2_OK or I2_NOT_IPERF2. */
static enum i2_result udp_client_start(const uint8_t *d, size_t len, enum i2_udp_layout layout,
                                       bool small_triptimes, struct i2_udp_client *out)
{
    if (i2_udp_dgram_parse(d, len, layout, &out->dgram) != I2_OK)
        return I2_NOT_IPERF2;
    out->layout = layout;
    out->small_triptimes = small_triptimes;
    memset(&out->hdr, 0, sizeof(out->hdr));
    return I2_OK;
}

/* 2.0.13+ test header at offset 16.  Returns I2_OK or I2_NOT_IPERF2. */
static enum i2_result udp_modern(const uint8_t *d, size_t len, struct i2_udp_client *out)
{
    if (len < I2_UDP_HDR16 + 4)
        return I2_NOT_IPERF2;
    const uint8_t *p = d + I2_UDP_HDR16;
    size_t avail = len - I2_UDP_HDR16;
    uint32_t flags = be32(p);
    if (flags & ~UDP_FLAGS_KNOWN)
        return I2_NOT_IPERF2;
    size_t fixed = fixed_len(flags, true);
    if (fixed == 0 || avail < fixed)
        return I2_NOT_IPERF2;
    size_t hlen = fixed;
    if (flags & I2_HEADER_LEN_BIT) {
        size_t coded = (flags & I2_HEADER_LEN_MASK) >> 1;   /* counts the 16 bytes */
        if (coded < I2_UDP_HDR16 + fixed)
            return I2_NOT_IPERF2;
        hlen = coded - I2_UDP_HDR16;
    }
    if (!fields_plausible(p, fixed, flags))
        return I2_NOT_IPERF2;
    if (udp_client_start(d, len, I2_UDP_HDR16, false, out) != I2_OK)
        return I2_NOT_IPERF2;
    fields_fill(p, flags, &out->hdr);
    out->hdr.len = hlen;
    return I2_OK;
}

/* 2.0.5 client_hdr_v1 at offset 12.  Returns I2_OK or I2_NOT_IPERF2. */
static enum i2_result udp_legacy(const uint8_t *d, size_t len, struct i2_udp_client *out)
{
    if (len < I2_UDP_HDR12 + I2_HDR_V1_LEN)
        return I2_NOT_IPERF2;
    const uint8_t *p = d + I2_UDP_HDR12;
    uint32_t flags = be32(p);
    if (flags != 0 && flags != I2_HEADER_VERSION1 && flags != (I2_HEADER_VERSION1 | I2_RUN_NOW))
        return I2_NOT_IPERF2;
    if (!fields_plausible(p, I2_HDR_V1_LEN, flags))
        return I2_NOT_IPERF2;
    if (udp_client_start(d, len, I2_UDP_HDR12, false, out) != I2_OK)
        return I2_NOT_IPERF2;
    fields_fill(p, flags, &out->hdr);
    out->hdr.len = I2_HDR_V1_LEN;
    return I2_OK;
}

/* 2.1.x --trip-times with -l below 128: client_udpsmall_testhdr, 16-bit
 * flags 0x0002 right after the 16-byte header, datagrams of 18..127 bytes. */
static enum i2_result udp_small(const uint8_t *d, size_t len, struct i2_udp_client *out)
{
    if (len < I2_UDP_HDR16 + 2 || len >= 128)
        return I2_NOT_IPERF2;
    if (be16(d + I2_UDP_HDR16) != I2_HEADER16_SMALL_TRIPTIMES)
        return I2_NOT_IPERF2;
    if (udp_client_start(d, len, I2_UDP_HDR16, true, out) != I2_OK)
        return I2_NOT_IPERF2;
    out->hdr.flags = I2_HEADER16_SMALL_TRIPTIMES;
    out->hdr.len = 2;
    out->hdr.mode = I2_MODE_NORMAL;
    return I2_OK;
}

/* 2.0.10 .. 2.0.13 plain mode (default builds, 16-byte datagram header): a
 * flags word at 16 (0, or SEQNO64B from 2.0.13), then the data pattern for at
 * least 16 bytes.  (Builds with --disable-seqno64b would put a 0 at 12 and
 * the pattern from 16: exactly what 2.1.x server streams look like, so that
 * form is not taken.)  Returns I2_OK or I2_NOT_IPERF2. */
static enum i2_result udp_headerless(const uint8_t *d, size_t len, struct i2_udp_client *out)
{
    const size_t off = I2_UDP_HDR16;
    if (len < off + 4 + 16 || !headerless_flags(be32(d + off)))
        return I2_NOT_IPERF2;
    if (pattern_check(d, len, off + 4, off + 4 + 16) != I2_OK)
        return I2_NOT_IPERF2;
    if (udp_client_start(d, len, I2_UDP_HDR16, false, out) != I2_OK)
        return I2_NOT_IPERF2;
    out->hdr.flags = be32(d + off);
    out->hdr.headerless = true;
    out->hdr.len = 4;
    out->hdr.mode = I2_MODE_NORMAL;
    return I2_OK;
}

enum i2_result i2_udp_client_parse(const uint8_t *d, size_t len, struct i2_udp_client *out)
{
    struct i2_udp_client c;

    if (udp_modern(d, len, &c) == I2_OK || udp_legacy(d, len, &c) == I2_OK ||
        udp_small(d, len, &c) == I2_OK || udp_headerless(d, len, &c) == I2_OK) {
        *out = c;
        return I2_OK;
    }
    return I2_NOT_IPERF2;
}

/* server_hdr_v1 at p (I2_SERVER_HDR_V1_LEN bytes available). */
static bool report_v1(const uint8_t *p, struct i2_udp_report *r)
{
    uint32_t stop_usec = be32(p + 16);
    uint32_t jitter_usec = be32(p + 36);

    if (stop_usec >= 1000000u || jitter_usec >= 1000000u)
        return false;
    r->flags = be32(p);
    r->total_len = (uint64_t)be32(p + 4) << 32 | be32(p + 8);
    r->stop_sec = be32(p + 12);
    r->stop_usec = stop_usec;
    r->errors = be32(p + 20);
    r->outorder = be32(p + 24);
    r->datagrams = be32(p + 28);
    r->jitter_sec = be32(p + 32);
    r->jitter_usec = jitter_usec;
    return true;
}

enum i2_result i2_udp_report_parse(const uint8_t *d, size_t len, struct i2_udp_report *out)
{
    struct i2_udp_report r;
    static const uint8_t zero[I2_UDP_HDR16];

    memset(&r, 0, sizeof(r));
    r.dgram_len = len;
    if (len >= I2_UDP_HDR16 + I2_SERVER_HDR_V1_LEN && memcmp(d, zero, sizeof(zero)) == 0) {
        const uint8_t *p = d + I2_UDP_HDR16;
        uint32_t flags = be32(p);
        if (!(flags & I2_HEADER_VERSION1) || (flags & ~REPORT_FLAGS_KNOWN))
            return I2_NOT_IPERF2;
        if (!report_v1(p, &r))
            return I2_NOT_IPERF2;
        r.layout = I2_REPORT_MODERN;
        if (len >= I2_UDP_HDR16 + I2_SERVER_HDR_V1_LEN + 60) {   /* server_hdr_extension */
            r.has_transit = true;
            r.cnt_transit = be32(p + I2_SERVER_HDR_V1_LEN + 48);
        }
        if (len >= I2_UDP_HDR16 + I2_SERVER_HDR_LEN) {           /* server_hdr_extension2 */
            r.has_ext2 = true;
            if (flags & I2_HEADER_SEQNO64B) {
                const uint8_t *e2 = p + I2_SERVER_HDR_V1_LEN + 60;
                r.errors |= (uint64_t)be32(e2) << 32;
                r.outorder |= (uint64_t)be32(e2 + 4) << 32;
                r.datagrams |= (uint64_t)be32(e2 + 8) << 32;
            }
        }
        *out = r;
        return I2_OK;
    }
    if (len >= I2_UDP_HDR12 + I2_SERVER_HDR_V1_LEN) {
        struct i2_udp_dgram g;
        if (i2_udp_dgram_parse(d, len, I2_UDP_HDR12, &g) != I2_OK || !g.fin)
            return I2_NOT_IPERF2;
        if (be32(d + I2_UDP_HDR12) != I2_HEADER_VERSION1)
            return I2_NOT_IPERF2;
        if (!report_v1(d + I2_UDP_HDR12, &r))
            return I2_NOT_IPERF2;
        r.layout = I2_REPORT_LEGACY;
        r.echo_seq = g.seq;
        *out = r;
        return I2_OK;
    }
    return I2_NOT_IPERF2;
}

enum i2_result i2_detect_tcp(const uint8_t *buf, size_t len)
{
    struct i2_test_hdr h;
    return i2_tcp_hdr_parse(buf, len, &h);
}

bool i2_detect_udp(const uint8_t *d, size_t len)
{
    struct i2_udp_client c;
    return i2_udp_client_parse(d, len, &c) == I2_OK;
}

const char *i2_mode_name(enum i2_mode mode)
{
    switch (mode) {
    case I2_MODE_NORMAL:     return "normal";
    case I2_MODE_DUALTEST:   return "dualtest";
    case I2_MODE_TRADEOFF:   return "tradeoff";
    case I2_MODE_REVERSE:    return "reverse";
    case I2_MODE_FULLDUPLEX: return "full-duplex";
    case I2_MODE_BOUNCEBACK: return "bounceback";
    }
    return "unknown";
}
