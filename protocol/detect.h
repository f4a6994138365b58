/* Protocol recognition from the first bytes a client sends: on a TCP
 * connection, or in the first datagram of a UDP flow.  Pure: bytes in,
 * verdict out. */
#ifndef IPERF_SHIM_PROTOCOL_DETECT_H
#define IPERF_SHIM_PROTOCOL_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/iperf2.h"

enum detect_verdict {
    DETECT_NEED_MORE = 0,  /* plausible so far: read more (TCP only) */
    DETECT_IPERF3,         /* TCP: a complete iperf3 cookie (I3_COOKIE_SIZE bytes);
                              UDP: an iperf3 stream request (4 bytes) */
    DETECT_UNKNOWN,        /* neither: close the connection / drop the datagram */
    DETECT_IPERF2,         /* TCP: a complete iperf2 test header (i2_tcp_hdr_parse);
                              UDP: an iperf2 client datagram (i2_udp_client_parse) */
};

/* Looks at the first len bytes of a TCP connection.
 * iperf3: a cookie is 36 printable ASCII characters and a NUL (3.2+ clients
 * use the base32 alphabet, older ones hostname.time.random: both printable).
 * iperf2: a client test header, flags word first (see protocol/iperf2.h):
 * 24 bytes from 2.0.5, 60 or more from 2.0.13+, a bounceback header.
 * No iperf2 header is printable ASCII in its first 8 bytes, no cookie is a
 * plausible iperf2 header, so at most one of them matches.
 * Returns DETECT_IPERF2 only once the whole header is there (the bytes after
 * it are data), DETECT_NEED_MORE while either protocol is still possible. */
enum detect_verdict detect_tcp(const uint8_t *buf, size_t len);

/* Bytes detect_tcp() needs at most to decide: the longest iperf2 test
 * header (a 255-byte length-coded header plus a 128-byte permit key,
 * I2_TCP_HDR_MAX); an iperf3 cookie needs only 37.  A reader that stops at
 * this many bytes always gets a verdict other than DETECT_NEED_MORE. */
#define DETECT_MAX_BYTES I2_TCP_HDR_MAX

/* Looks at the first datagram of a UDP flow (dgram, len bytes).
 * iperf3: exactly 4 bytes, 39 38 37 36 (3.12+), or 123456789 in the
 * client's byte order, 15 cd 5b 07 on little-endian hosts (older 3.x;
 * 07 5b cd 15 from big-endian ones).
 * iperf2: a datagram carrying a client test header (i2_udp_client_parse).
 * Returns DETECT_IPERF3, DETECT_IPERF2 or DETECT_UNKNOWN (never
 * DETECT_NEED_MORE: a datagram is complete). */
enum detect_verdict detect_udp(const uint8_t *dgram, size_t len);

#endif
