/*
 * iperf2 wire formats: pure parsers over bytes.  No sockets, no libev.
 *
 * Layouts are those of iperf2's include/payloads.h (2.1 to 2.2) and of the
 * include/Settings.hpp of 2.0.5 and 2.0.13, checked against bytes captured on
 * loopback from Debian 12's iperf 2.1.8 and from iperf 2.0.6 (wire-identical
 * to 2.0.5) and 2.0.13 built from source; docs/iperf2-wire.md has the
 * captures.  Every integer on the wire is big-endian.
 *
 * TCP: every client connection starts with a test header, flags first.
 *  - 2.1.8 always sends one, even in plain mode: flags HEADER_EXTEND |
 *    HEADER_LEN_BIT | (length << 1), then numThreads, mPort, mBufLen,
 *    mWinBand, mAmount (client_hdr_v1, 24 bytes) and client_hdrext
 *    (36 bytes): 60 bytes, more with --trip-times / isochronous / a permit key.
 *  - 2.0.5 always sends client_hdr_v1 (24 bytes) with flags 0 (plain),
 *    HEADER_VERSION1 (-r) or HEADER_VERSION1 | RUN_NOW (-d).
 *  - 2.0.10 .. 2.0.13 send client_hdr_v1 only for -d/-r, 60 bytes
 *    (HEADER_EXTEND, no coded length, extension type 1 length 28) only for
 *    -X; the words they do not fill hold iperf's data pattern.  In plain mode
 *    they send no header: the stream starts with the flags word (0, or
 *    HEADER_SEQNO64B from 2.0.13) and the data pattern '0' + offset % 10.
 *  - --bounceback sends a bounceback_hdr (flags HEADER_BOUNCEBACK) instead.
 *  The same bytes are repeated in the data that follows (the client reuses
 *  its buffer), so a header is only found at the start of a connection.
 *  A 2.1.x server answers most headers with a client_hdr_ack (28 bytes,
 *  52 with trip times): see struct i2_test_hdr.server_acks.
 *
 * UDP: every datagram starts with struct UDP_datagram: id (low 32 bits of a
 *  signed sequence), tv_sec, tv_usec, and since 2.0.10 id2 (high 32 bits):
 *  16 bytes, or 12 bytes in 2.0.5 .. 2.0.9.  A client's datagrams carry its
 *  test header right after it (2.1.8 in every datagram, flags with
 *  HEADER_SEQNO64B; 2.0.5 the 24-byte client_hdr_v1; 2.0.13 in plain mode
 *  only the flags word).  The client ends with a negative sequence (the FIN)
 *  and repeats it until a datagram comes back; the server answers with a
 *  Server Report: 128 bytes (16 zero bytes, then server_hdr) from 2.0.13+,
 *  or the FIN echoed with the report at offset 12 from 2.0.5.
 */
#ifndef IPERF_SHIM_PROTOCOL_IPERF2_H
#define IPERF_SHIM_PROTOCOL_IPERF2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Base flags word of a client test header (payloads.h). */
#define I2_HEADER_VERSION1        0x80000000u  /* client_hdr_v1 present; alone: -d/-r test */
#define I2_HEADER_EXTEND          0x40000000u  /* client_hdrext follows client_hdr_v1 */
#define I2_HEADER_UDPTESTS        0x20000000u  /* UDP: stateless upperflags apply */
#define I2_HEADER_KEYCHECK        0x10000000u  /* TCP: a permit key follows the header */
#define I2_HEADER_SEQNO64B        0x08000000u  /* UDP: sequence is 64 bits (id2:id) */
#define I2_HEADER_VERSION2        0x04000000u  /* --reverse / --full-duplex / -X header */
#define I2_HEADER_V2PEERDETECT    0x02000000u  /* TCP -X: the client reads the header ack */
#define I2_HEADER_UDPAVOID2       0x02000000u  /* UDP meaning of the same bit (unused) */
#define I2_HEADER_UDPAVOID1       0x01000000u  /* UDP, unused */
#define I2_HEADER_BOUNCEBACK      0x00800000u  /* TCP --bounceback header */
#define I2_HEADER32_SMALL_TRIPTIMES 0x00020000u /* UDP small trip-times header */
#define I2_HEADER_LEN_BIT         0x00010000u  /* the length is in I2_HEADER_LEN_MASK */
#define I2_HEADER_LEN_MASK        0x000001FEu  /* header length << 1 */
#define I2_RUN_NOW                0x00000001u  /* with VERSION1: -d (else -r) */

/* 16-bit flags of client_udpsmall_testhdr, at offset 16 of a datagram. */
#define I2_HEADER16_SMALL_TRIPTIMES 0x0002u

/* Extended upperflags (client_hdrext.upperflags). */
#define I2_UF_ISOCH          0x0001u
#define I2_UF_L2ETHPIPV6     0x0002u
#define I2_UF_L2LENCHECK     0x0004u
#define I2_UF_NOUDPFIN       0x0008u  /* UDP: no FIN / Server Report exchange */
#define I2_UF_TRIPTIME       0x0010u  /* --trip-times: the header ack is 52 bytes */
#define I2_UF_ISOCH_SETTINGS 0x0040u
#define I2_UF_UNITS_PPS      0x0080u
#define I2_UF_BWSET          0x0100u
#define I2_UF_FQRATESET      0x0200u
#define I2_UF_REVERSE        0x0400u  /* --reverse (with HEADER_VERSION2) */
#define I2_UF_FULLDUPLEX     0x0800u  /* --full-duplex (with HEADER_VERSION2) */
#define I2_UF_EPOCH_START    0x1000u
#define I2_UF_PERIODICBURST  0x2000u
#define I2_UF_WRITEPREFETCH  0x4000u
#define I2_UF_TCPQUICKACK    0x8000u

/* Server Report flags (server_hdr_v1.flags). */
#define I2_SERVER_HEADER_EXTEND 0x40000000u  /* transit statistics are valid */

/* Message types of hdr_typelen. */
#define I2_CLIENTHDRACK 2u

/* Fixed sizes. */
#define I2_HDR_V1_LEN        24u   /* client_hdr_v1 */
#define I2_HDR_EXT_LEN       36u   /* client_hdrext */
#define I2_HDR_MAX_LEN       255u  /* largest length I2_HEADER_LEN_MASK can carry */
#define I2_KEY_MIN_LEN       4u    /* permit key bounds (MIN/MAX_PERMITKEY_LEN) */
#define I2_KEY_MAX_LEN       128u
#define I2_BB_HDR_LEN        48u   /* mandatory part of bounceback_hdr */
#define I2_SERVER_HDR_V1_LEN 40u   /* server_hdr_v1 */
#define I2_SERVER_HDR_LEN    112u  /* server_hdr: v1 + extension + extension2 */
#define I2_REPORT_LEN        128u  /* a 2.0.13+ Server Report datagram */
#define I2_ACK_LEN           28u   /* client_hdr_ack without timestamps */
#define I2_ACK_TS_LEN        52u   /* client_hdr_ack with timestamps (--trip-times) */

/* Longest TCP test header: a length-coded header and a permit key.  Also the
 * most bytes i2_tcp_hdr_parse() needs to decide. */
#define I2_TCP_HDR_MAX (I2_HDR_MAX_LEN + I2_KEY_MAX_LEN)

/* Bytes of a headerless stream (flags word, then data pattern) that must be
 * seen: 4 + 20 of pattern, as long as a 2.0.5 header. */
#define I2_PATTERN_CHECK 24u

/* Plausibility bounds (a header outside them is taken as not iperf2). */
#define I2_MAX_THREADS 4096u          /* numThreads (-P) */
#define I2_MAX_BUFLEN  (1u << 30)     /* mBufLen (-l) and bounceback size */

enum i2_result {
    I2_NOT_IPERF2 = -1,  /* these bytes cannot be what an iperf2 peer sends */
    I2_NEED_MORE  = 0,   /* plausible so far: more bytes are needed to decide */
    I2_OK         = 1,   /* parsed; the output structure is filled */
};

/* What a test header asks the server to do. */
enum i2_mode {
    I2_MODE_NORMAL = 0,   /* client sends, server receives */
    I2_MODE_DUALTEST,     /* -d: server connects back at once (RUN_NOW) */
    I2_MODE_TRADEOFF,     /* -r: server connects back after the client's test */
    I2_MODE_REVERSE,      /* --reverse: server sends on the same connection */
    I2_MODE_FULLDUPLEX,   /* --full-duplex: both send on the same connection */
    I2_MODE_BOUNCEBACK,   /* TCP --bounceback: server echoes each write */
};

/* A client test header (TCP stream start, or after a UDP datagram header). */
struct i2_test_hdr {
    uint32_t flags;        /* base flags word as sent (I2_HEADER_*, I2_RUN_NOW) */
    bool     headerless;   /* 2.0.10-2.0.13 plain mode: no header, only a flags word
                              (0 or SEQNO64B) before the data pattern; len is 4 */
    bool     v1_valid;     /* the six client_hdr_v1 words carry settings: false for
                              headerless streams and 2.0.10-2.0.13 -X headers without
                              VERSION1 (the fields below are then 0) */
    uint32_t num_threads;  /* numThreads: the client's -P (2.2 --sync-transfer-id
                              bits stripped: see transfer_id) */
    uint32_t transfer_id;  /* 2.2 --sync-transfer-id carried in numThreads, else 0 */
    uint16_t port;         /* mPort: where -d/-r connect back (-L, else -p) */
    uint32_t buflen;       /* mBufLen: -l when given, else 0 */
    uint32_t winband;      /* mWinBand: 2.0.5 -w (TCP) or -b (UDP); 0 from 2.1.x */
    int32_t  amount;       /* mAmount: < 0: -t in 10 ms units; >= 0: -n bytes */
    bool     extended;     /* HEADER_EXTEND: the version below was on the wire */
    uint16_t upperflags;   /* client_hdrext.upperflags (I2_UF_*); 0 from 2.0.10-2.0.13 */
    uint16_t lowerflags;   /* client_hdrext.lowerflags; 0 from 2.0.10-2.0.13 */
    uint32_t version_u;    /* peer version: major << 16 | minor (0x00020001 = 2.1) */
    uint32_t version_l;    /* peer version: patch << 16 | build type (3 release, 5 master:
                              any value; compat/iperf2_compat.h) */
    uint16_t tos;          /* client_hdrext.tos (-S) */
    uint64_t rate;         /* client_hdrext lRate | uRate: -b, bits/s (or pps);
                              0 from 2.0.10-2.0.13 */
    uint16_t key_len;      /* HEADER_KEYCHECK: permit key length, else 0 */
    size_t   key_off;      /* HEADER_KEYCHECK: offset of the key from the flags word */
    uint32_t bb_size;      /* bounceback: bbsize, the size of each write */
    size_t   len;          /* header length from the flags word, key included
                              (4 for a headerless stream: the flags word alone) */
    enum i2_mode mode;     /* what the server is asked to do */
    bool     connect_back; /* -d/-r: the server connects to the client at port */
    bool     server_acks;  /* TCP: a 2.1.x server answers with a header ack
                              (EXTEND without VERSION2, or V2PEERDETECT) */
    bool     client_awaits_ack; /* TCP: the client reads that ack before sending data
                                   (2.0.14+ -X; any 2.0.10-2.0.13 HEADER_EXTEND header) */
};

/*
 * TCP: parse the test header at the start of a client connection.
 * buf holds the first len bytes the client sent (more may follow).
 * Returns I2_OK when a complete, plausible header is there (out->len bytes;
 * bytes after it are data), I2_NEED_MORE while every byte seen is plausible
 * but the header is incomplete (at most I2_TCP_HDR_MAX bytes are ever needed),
 * I2_NOT_IPERF2 as soon as a byte rules iperf2 out.  out is written only
 * on I2_OK.
 * Plausibility: no flag bits outside those iperf2 sends over TCP, a coded
 * length that fits the flags, 1 <= numThreads <= I2_MAX_THREADS,
 * 1 <= mPort <= 65535, mBufLen <= I2_MAX_BUFLEN, mWinBand >= 0 (where the
 * client fills those words), an iperf 2.x version in the extension
 * (any build type: i2_version_plausible()), a permit
 * key of 4..128 bytes.  A headerless 2.0.10-2.0.13 stream is recognised by
 * its flags word and I2_PATTERN_CHECK bytes of data pattern (out->len 4).
 */
enum i2_result i2_tcp_hdr_parse(const uint8_t *buf, size_t len, struct i2_test_hdr *out);

/* Rewrite mPort in a test header in place.  hdr points at the flags word
 * (TCP: the connection's first byte; UDP: the datagram plus its layout),
 * len is the number of bytes available there.  Returns 0, or -1 when
 * len < 12 (mPort is bytes 8..11) or port is 0. */
int i2_hdr_set_port(uint8_t *hdr, size_t len, uint16_t port);

/* The header acknowledgement (client_hdr_ack) a 2.0.10+ server sends on TCP. */
struct i2_hdr_ack {
    uint32_t type;         /* I2_CLIENTHDRACK */
    uint32_t length;       /* whole ack in bytes: 28, or 52 with timestamps */
    uint32_t flags;        /* 0 from 2.1.8 */
    uint32_t version_u;    /* server version, as i2_test_hdr.version_u */
    uint32_t version_l;    /* server version, as i2_test_hdr.version_l */
    bool     has_ts;       /* length >= 52: the timestamps below are valid */
    uint32_t sent_sec;     /* client's header send time (from the header) */
    uint32_t sent_usec;
    uint32_t sentrx_sec;   /* server's accept time */
    uint32_t sentrx_usec;
    uint32_t ack_sec;      /* server's ack send time */
    uint32_t ack_usec;
};

/* Parse a header ack at the start of what a server sent on a TCP connection.
 * Returns I2_OK (out->length bytes are the ack), I2_NEED_MORE, or
 * I2_NOT_IPERF2 (type is not CLIENTHDRACK, length not a multiple of 4 in
 * 28..64, or version not 2.x).  out is written only on I2_OK. */
enum i2_result i2_hdr_ack_parse(const uint8_t *buf, size_t len, struct i2_hdr_ack *out);

/* UDP datagram header layouts: the value is its size in bytes. */
enum i2_udp_layout {
    I2_UDP_HDR12 = 12,   /* 2.0.5 .. 2.0.9: id, tv_sec, tv_usec */
    I2_UDP_HDR16 = 16,   /* 2.0.10+ (default builds): id, tv_sec, tv_usec, id2 */
};

struct i2_udp_dgram {
    uint32_t id;        /* word 0: low 32 bits of the sequence */
    uint32_t tv_sec;    /* word 1: sender's clock when sent, seconds */
    uint32_t tv_usec;   /* word 2: microseconds, < 1000000 */
    uint32_t id2;       /* word 3: high 32 bits (I2_UDP_HDR16), else 0 */
    int64_t  seq;       /* signed sequence: id2:id, or id sign-extended (HDR12) */
    bool     fin;       /* seq < 0: the sender's last datagram (repeated) */
};

/* Parse the datagram header in the given layout.  Returns I2_OK, or
 * I2_NOT_IPERF2 when len < layout or tv_usec >= 1000000. */
enum i2_result i2_udp_dgram_parse(const uint8_t *d, size_t len, enum i2_udp_layout layout,
                                  struct i2_udp_dgram *out);

/* A client datagram: datagram header plus the client test header. */
struct i2_udp_client {
    enum i2_udp_layout  layout;  /* where the test header starts */
    struct i2_udp_dgram dgram;   /* the datagram header */
    bool     small_triptimes;    /* 2.1.x tiny datagram: only 16-bit flags follow;
                                    hdr is zeroed but for flags */
    struct i2_test_hdr  hdr;     /* the test header (hdr.len from its flags word) */
};

/* Parse a datagram a client sent (normally its first): tries the 16-byte
 * layout with a 2.0.10+ header, then the 12-byte layout with a 2.0.5 header
 * (flags 0, VERSION1 or VERSION1|RUN_NOW), then a 2.1.x small trip-times
 * header, then a 2.0.10-2.0.13 plain datagram (a flags word 0 or SEQNO64B
 * after a 16-byte datagram header, then the data pattern: hdr.headerless).
 * Returns I2_OK, or I2_NOT_IPERF2 when no layout carries a plausible header
 * (a datagram is complete: never I2_NEED_MORE).  Datagrams with no flags
 * word at all (server streams, connect-back legs, clients run with -C) are
 * I2_NOT_IPERF2 here: use i2_udp_dgram_parse() for those.  The first
 * datagram must hold the whole fixed header (24 or 60 bytes after the
 * datagram header).  out is written only on I2_OK. */
enum i2_result i2_udp_client_parse(const uint8_t *d, size_t len, struct i2_udp_client *out);

/* Where a Server Report sits in its datagram. */
enum i2_report_layout {
    I2_REPORT_MODERN = 16,  /* 2.0.13+: 16 zero bytes, then server_hdr (128 bytes) */
    I2_REPORT_LEGACY = 12,  /* 2.0.5: the client's FIN echoed, server_hdr_v1 at 12 */
};

/* A Server Report (server_hdr), the answer to a client's UDP FIN. */
struct i2_udp_report {
    enum i2_report_layout layout;  /* which of the two forms it was */
    size_t   dgram_len;    /* length of the whole datagram */
    uint32_t flags;        /* HEADER_VERSION1 [| HEADER_SEQNO64B | SERVER_HEADER_EXTEND] */
    uint64_t total_len;    /* bytes the server received */
    uint32_t stop_sec;     /* test duration seen by the server: seconds */
    uint32_t stop_usec;    /* and microseconds (< 1000000) */
    uint64_t errors;       /* datagrams lost (64-bit with SEQNO64B and extension2) */
    uint64_t outorder;     /* datagrams out of order */
    uint64_t datagrams;    /* datagrams received */
    uint32_t jitter_sec;   /* jitter: seconds */
    uint32_t jitter_usec;  /* and microseconds (< 1000000) */
    bool     has_transit;  /* server_hdr_extension present (transit statistics) */
    uint32_t cnt_transit;  /* extension: datagrams with transit times */
    bool     has_ext2;     /* server_hdr_extension2 present (64-bit counter tops) */
    int64_t  echo_seq;     /* I2_REPORT_LEGACY: the echoed FIN's sequence; else 0 */
};

/* Recognise and parse a Server Report datagram.  Modern: at least 56 bytes,
 * the first 16 zero, flags with HEADER_VERSION1 and no other bits than
 * SEQNO64B and SERVER_HEADER_EXTEND; extensions are read when the datagram
 * is long enough.  Legacy: at least 52 bytes, a negative (FIN) id, flags
 * exactly HEADER_VERSION1 at offset 12.  Both: stop_usec and jitter
 * microseconds below 1000000.  Returns I2_OK or I2_NOT_IPERF2.
 * Note: a 2.1.8 server that keeps receiving FINs re-sends "reports" that are
 * the first 128 bytes of the client's FIN (it reads into its report buffer);
 * those are I2_NOT_IPERF2 here, though a 2.1.8 client accepts any datagram
 * as the answer to its FIN.  out is written only on I2_OK. */
enum i2_result i2_udp_report_parse(const uint8_t *d, size_t len, struct i2_udp_report *out);

/* Detection for the proxy.  TCP: the first len bytes of a connection;
 * returns as i2_tcp_hdr_parse().  UDP: the first datagram of a flow; true
 * when i2_udp_client_parse() finds a client test header. */
enum i2_result i2_detect_tcp(const uint8_t *buf, size_t len);
bool           i2_detect_udp(const uint8_t *d, size_t len);

/* Short operator text for a mode: "normal", "dualtest", ... */
const char *i2_mode_name(enum i2_mode mode);

#endif
