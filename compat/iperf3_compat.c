/*
 * iperf3 version parsing and version predicates (see iperf3_compat.h).
 */
#include <stddef.h>

#include "compat/iperf3_compat.h"

#define I3_VERSION_DIGITS_MAX 4   /* digits accepted in major or minor */

/* Reads a decimal number of 1..I3_VERSION_DIGITS_MAX digits at *p.  Returns
 * it and advances *p past it, or returns -1 and leaves *p unchanged. */
static int i3_read_num(const char **p)
{
    const char *s = *p;
    int v = 0, n = 0;

    while (*s >= '0' && *s <= '9') {
        if (++n > I3_VERSION_DIGITS_MAX)
            return -1;
        v = v * 10 + (*s - '0');
        s++;
    }
    if (n == 0)
        return -1;
    *p = s;
    return v;
}

static bool i3_is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

int i3_version_parse(const char *s, int *major, int *minor)
{
    const char *p = s;
    int maj, min;

    if (s == NULL)
        return -1;
    if ((maj = i3_read_num(&p)) < 0 || *p != '.')
        return -1;
    p++;
    if ((min = i3_read_num(&p)) < 0)
        return -1;

    if (*p != '\0') {
        /* a suffix: ".1" (patch), "b3", "rc1", "+", "-mt-beta3" */
        if (*p == '.') {
            if (!(p[1] >= '0' && p[1] <= '9'))
                return -1;
        } else if (*p != '+' && *p != '-' && !i3_is_alpha(*p)) {
            return -1;
        }
        for (const char *q = p; *q != '\0'; q++) {
            if (*q <= ' ' || *q > '~')
                return -1;   /* blanks, controls, non-ASCII */
        }
    }
    if (major != NULL)
        *major = maj;
    if (minor != NULL)
        *minor = min;
    return 0;
}

/* Returns true when major.minor is at least want_major.want_minor. */
static bool i3_at_least(int major, int minor, int want_major, int want_minor)
{
    return major > want_major || (major == want_major && minor >= want_minor);
}

bool i3_udp_magic_is_network_order(int major, int minor)
{
    return i3_at_least(major, minor, 3, 12);
}

bool i3_udp_magic_endian_fixed(int major, int minor)
{
    return i3_at_least(major, minor, 3, 17);
}

bool i3_closes_ctrl_with_half_close(int major, int minor)
{
    return i3_at_least(major, minor, 3, 21);
}

uint32_t i3_server_params_cap(int major, int minor)
{
    return i3_at_least(major, minor, 3, 18) ? I3_PARAMS_CAP_318 : 0u;
}

bool i3_server_params_typed(int major, int minor)
{
    return i3_at_least(major, minor, 3, 18);
}

/* One known error code. */
struct i3_error_name {
    int32_t     code;   /* i_errno */
    const char *text;   /* what it means, for a log line */
};

/* The codes a server sends (parameter checks, control and stream errors). */
static const struct i3_error_name i3_errors[] = {
    { 5,   "test duration too long" },
    { 6,   "too many parallel streams" },
    { 7,   "block size too large" },
    { 8,   "socket buffer too large" },
    { 10,  "MSS too large" },
    { 12,  "bad --omit value" },
    { 16,  "more than one end condition (-t, -n, -k)" },
    { 18,  "no SCTP support" },
    { 20,  "bad UDP block size" },
    { 25,  "both --reverse and --bidir" },
    { 27,  "rate above the server's --server-bitrate-limit" },
    { 31,  "bad receive timeout" },
    { 32,  "receive timeout only valid with -R" },
    { 34,  "cannot send a file over UDP" },
    { 36,  "control keepalive period shorter than its retries" },
    { 37,  "duration above the server's --server-max-duration" },
    { 100, "cannot create a test" },
    { 101, "test initialisation failed" },
    { 104, "cannot accept a connection" },
    { 106, "cannot read the cookie" },
    { 107, "cannot write to the control connection" },
    { 108, "cannot read from the control connection" },
    { 109, "control connection closed unexpectedly" },
    { 110, "unknown control message" },
    { 111, "cannot send a control message" },
    { 112, "cannot read a control message" },
    { 114, "cannot read the test parameters" },
    { 115, "cannot build the results" },
    { 116, "cannot send the results" },
    { 117, "cannot read the results" },
    { 118, "select failed" },
    { 119, "the client terminated" },
    { 121, "server busy" },
    { 122, "cannot set TCP_NODELAY" },
    { 123, "cannot set the MSS" },
    { 124, "cannot set the socket buffer size" },
    { 125, "cannot set the IP TOS" },
    { 127, "cannot set the IPv6 flow label" },
    { 131, "protocol not supported" },
    { 134, "cannot set the congestion control algorithm" },
    { 140, "cannot set the pacing rate" },
    { 141, "socket buffer size not applied as asked" },
    { 142, "authentication failed" },
    { 144, "no message received in time" },
    { 145, "cannot set don't-fragment" },
    { 150, "cannot create a stream thread" },
    { 160, "test duration expired" },
    { 200, "cannot create a data stream" },
    { 201, "cannot initialise a data stream" },
    { 202, "cannot listen for data streams" },
    { 204, "cannot accept a data stream" },
    { 205, "cannot write to a data stream" },
    { 206, "cannot read from a data stream" },
    { 207, "a data stream closed unexpectedly" },
    { 208, "bad data stream id" },
};

const char *i3_error_text(int32_t code)
{
    for (size_t i = 0; i < sizeof(i3_errors) / sizeof(i3_errors[0]); i++)
        if (i3_errors[i].code == code)
            return i3_errors[i].text;
    return NULL;
}
