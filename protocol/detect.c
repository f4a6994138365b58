#include "protocol/detect.h"

#include "protocol/iperf3_ctrl.h"

enum detect_verdict detect_tcp(const uint8_t *buf, size_t len)
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
