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
    return i3_at_least(major, minor, 3, 18) ? 8u * 1024u : 0u;
}

bool i3_server_params_typed(int major, int minor)
{
    return i3_at_least(major, minor, 3, 18);
}
