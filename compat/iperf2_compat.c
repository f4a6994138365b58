/*
 * iperf2 version words and numThreads packing (see iperf2_compat.h).
 */
#include <stdio.h>

#include "compat/iperf2_compat.h"

#define I2_VERSION_FIELD_MAX 0xFFu   /* minor and patch fit a byte in every release */

struct i2_version *i2_version_decode(uint32_t version_u, uint32_t version_l,
                                     struct i2_version *out)
{
    out->major = (uint16_t)(version_u >> 16);
    out->minor = (uint16_t)version_u;
    out->patch = (uint16_t)(version_l >> 16);
    out->build = (uint16_t)version_l;
    return out;
}

bool i2_version_plausible(uint32_t version_u, uint32_t version_l)
{
    struct i2_version v;
    i2_version_decode(version_u, version_l, &v);
    return v.major == 2 && v.minor <= I2_VERSION_FIELD_MAX && v.patch <= I2_VERSION_FIELD_MAX;
}

const char *i2_build_suffix(uint16_t build)
{
    switch (build) {
    case I2_BUILD_DEV:     return "-dev";
    case I2_BUILD_RC:      return "-rc";
    case I2_BUILD_RC2:     return "-rc2";
    case I2_BUILD_RELEASE: return "";
    case I2_BUILD_PRIVATE: return "-private";
    case I2_BUILD_MASTER:  return "-master";
    }
    return "-unk";
}

char *i2_version_str(uint32_t version_u, uint32_t version_l, char *buf, size_t n)
{
    struct i2_version v;
    i2_version_decode(version_u, version_l, &v);
    if (n > 0)
        snprintf(buf, n, "%u.%u.%u%s", (unsigned)v.major, (unsigned)v.minor,
                 (unsigned)v.patch, i2_build_suffix(v.build));
    return buf;
}

uint32_t i2_threads_split(uint32_t word, bool extended, uint32_t *transfer_id)
{
    *transfer_id = 0;
    if (!extended || !(word & I2_THREADS_HASTRANSFERID))
        return word;
    *transfer_id = (word & I2_THREADS_TRANSFERIDMASK) >> I2_THREADS_TRANSFERIDSHIFT;
    return word & I2_THREADS_MASK;
}
