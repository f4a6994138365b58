/* Protocol recognition from the first bytes a client sends on a TCP
 * connection.  Pure: bytes in, verdict out. */
#ifndef IPERF_SHIM_PROTOCOL_DETECT_H
#define IPERF_SHIM_PROTOCOL_DETECT_H

#include <stddef.h>
#include <stdint.h>

enum detect_verdict {
    DETECT_NEED_MORE = 0,  /* plausible so far: read more */
    DETECT_IPERF3,         /* a complete iperf3 cookie (I3_COOKIE_SIZE bytes) */
    DETECT_UNKNOWN,        /* neither: close the connection */
};

/* Looks at the first len bytes of a TCP connection.  An iperf3 cookie is 36
 * printable ASCII characters and a NUL (3.2+ clients use the base32 alphabet,
 * older ones hostname.time.random: both printable). */
enum detect_verdict detect_tcp(const uint8_t *buf, size_t len);

/* Bytes detect_tcp() needs at most to decide. */
#define DETECT_MAX_BYTES 37

#endif
