#include "protocol/detect.h"

#include "protocol/iperf2.h"
#include "protocol/iperf3_ctrl.h"

#include <string.h>

_Static_assert(DETECT_MAX_BYTES >= I3_COOKIE_SIZE, "detect buffer must hold an iperf3 cookie");

/* iperf3 cookie: DETECT_IPERF3, DETECT_NEED_MORE or DETECT_UNKNOWN. */
static enum detect_verdict detect_iperf3(const uint8_t *buf, size_t len)
{
    size_t n = len < I3_COOKIE_SIZE ? len : I3_COOKIE_SIZE;
    for (size_t i = 0; i < n; i++) {
        if (i == I3_COOKIE_SIZE - 1)
            return buf[i] == '\0' ? DETECT_IPERF3 : DETECT_UNKNOWN;
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return DETECT_UNKNOWN;
    }
    return DETECT_NEED_MORE;
}

enum detect_verdict detect_tcp(const uint8_t *buf, size_t len)
{
    enum detect_verdict v3 = detect_iperf3(buf, len);
    if (v3 == DETECT_IPERF3)
        return DETECT_IPERF3;
    switch (i2_detect_tcp(buf, len)) {
    case I2_OK:
        return DETECT_IPERF2;
    case I2_NEED_MORE:
        return DETECT_NEED_MORE;
    case I2_NOT_IPERF2:
        break;
    }
    return v3;
}

enum detect_verdict detect_udp(const uint8_t *dgram, size_t len)
{
    static const uint8_t magic_312[4] = { 0x39, 0x38, 0x37, 0x36 };  /* "9876" */
    static const uint8_t magic_le[4]  = { 0x15, 0xcd, 0x5b, 0x07 };  /* 123456789 LE */
    static const uint8_t magic_be[4]  = { 0x07, 0x5b, 0xcd, 0x15 };  /* 123456789 BE */

    if (len == 4) {
        if (memcmp(dgram, magic_312, 4) == 0 || memcmp(dgram, magic_le, 4) == 0 ||
            memcmp(dgram, magic_be, 4) == 0)
            return DETECT_IPERF3;
        return DETECT_UNKNOWN;
    }
    return i2_detect_udp(dgram, len) ? DETECT_IPERF2 : DETECT_UNKNOWN;
}
