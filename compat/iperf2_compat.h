/*
 * iperf2 version differences that the parsers and the relay must know about.
 *
 * iperf2 states its version in the extended test header (client_hdrext) and
 * in the header ack (client_hdr_ack), as two big-endian words
 * (include/version.h IPERF_VERSION_MAJORHEX / IPERF_VERSION_MINORHEX):
 *   version_u = major << 16 | minor
 *   version_l = patch << 16 | build type
 * The build type is not a version number: 0 dev, 1 rc, 2 rc2, 3 release,
 * 4 private, 5 master (src/Reports.c reporter_peerversion; the 2.2.1 release
 * tarball itself says 1, "rc"; builds of the source tree's master say 5).
 * Any value is legitimate: a parser must not refuse a header for it.
 *
 * Facts were checked in the iperf2 sources (harrycheng1/iperf2-mirror,
 * branches 2-2-1 and master); the file or function is named on each.
 *
 * The header and datagram layouts of each version (12- or 16-byte UDP
 * header, 2.0.5 / 2.0.10-2.0.13 / 2.1+ test headers, 64-byte 2.2 headers)
 * stay in protocol/iperf2.c: they are recognised from the bytes, because
 * the version is written inside the header being recognised (and 2.0.x
 * headers carry none).
 */
#ifndef IPERF_SHIM_COMPAT_IPERF2_COMPAT_H
#define IPERF_SHIM_COMPAT_IPERF2_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Build types of version_l's low 16 bits (reporter_peerversion). */
enum i2_build_type {
    I2_BUILD_DEV     = 0,  /* "-dev" */
    I2_BUILD_RC      = 1,  /* "-rc" (the 2.2.1 release says this too) */
    I2_BUILD_RC2     = 2,  /* "-rc2" */
    I2_BUILD_RELEASE = 3,  /* no suffix (2.1.8, 2.0.13) */
    I2_BUILD_PRIVATE = 4,  /* "-private" */
    I2_BUILD_MASTER  = 5,  /* "-master": built from the source tree's master */
};

/* A decoded iperf2 version. */
struct i2_version {
    uint16_t major;   /* 2 */
    uint16_t minor;   /* 0, 1, 2 */
    uint16_t patch;   /* 2.1.8 -> 8 */
    uint16_t build;   /* enum i2_build_type, or any other value a build chose */
};

/* Splits the two version words.  Returns out. */
struct i2_version *i2_version_decode(uint32_t version_u, uint32_t version_l,
                                     struct i2_version *out);

/* Returns true when the two words can come from an iperf 2.x peer: major 2,
 * minor and patch at most 255.  The build type is not checked: every value
 * is accepted (private and master builds use 4 and 5). */
bool i2_version_plausible(uint32_t version_u, uint32_t version_l);

/* Returns the suffix iperf2 prints for a build type: "" for a release,
 * "-dev", "-rc", "-rc2", "-private", "-master", "-unk" for other values. */
const char *i2_build_suffix(uint16_t build);

/* Writes "2.2.2-master", "2.1.8" ... into buf (n bytes, NUL-terminated,
 * truncated to fit).  Returns buf. */
char *i2_version_str(uint32_t version_u, uint32_t version_l, char *buf, size_t n);

/* Longest text i2_version_str() writes, NUL included. */
#define I2_VERSION_STR_MAX 28

/*
 * numThreads of client_hdr_v1 (Settings.cpp Settings_GenerateClientHdr,
 * Listener.cpp apply_client_settings_*): since 2.2.0, --sync-transfer-id
 * sets the top bit and puts a transfer id in bits 20..30; the thread count
 * (-P) keeps the low 20 bits.  Only extended headers (HEADER_EXTEND, 2.1+)
 * can carry it: a 2.0.5 header's top bit is just a huge thread count.
 */
#define I2_THREADS_HASTRANSFERID  0x80000000u  /* HEADER_HASTRANSFERID */
#define I2_THREADS_TRANSFERIDMASK 0x7FF00000u  /* HEADER_TRANSFERIDMASK without the marker */
#define I2_THREADS_TRANSFERIDSHIFT 20          /* HEADER_TRANSFERIDSHIFT */
#define I2_THREADS_MASK           0x000FFFFFu  /* the thread count proper */

/* Splits a numThreads word.  extended: the header had HEADER_EXTEND.
 * Returns the thread count and sets *transfer_id (0 when there is none). */
uint32_t i2_threads_split(uint32_t word, bool extended, uint32_t *transfer_id);

#endif
