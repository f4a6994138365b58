/*
 * What a service counts for its operator: finished tests by protocol, mode
 * and outcome, bytes relayed, --bidir roles re-paired.  Sessions report here
 * when they end; the metrics endpoint (proxy/metrics.h) reads it, together
 * with the UDP counters (proxy/udp.h).
 */
#ifndef IPERF_SHIM_PROXY_STATS_H
#define IPERF_SHIM_PROXY_STATS_H

#include <stdbool.h>
#include <stdint.h>

#define STATS_KINDS 48   /* (protocol, transport, mode, outcome) combinations kept */

/* Tests of one protocol, transport, mode and outcome. */
struct stats_kind {
    const char *protocol;   /* "iperf3" or "iperf2" (static) */
    const char *transport;  /* "tcp" or "udp" (static) */
    const char *mode;       /* e.g. "normal", "reverse", "bidir", "dualtest" (static) */
    bool        ok;         /* ended normally */
    uint64_t    count;      /* tests so ended */
};

struct service_stats {
    struct stats_kind kinds[STATS_KINDS];   /* in order of first appearance */
    int               nkinds;               /* entries used */
    uint64_t          other;                /* tests past STATS_KINDS kinds */
    uint64_t          tcp_bytes[2];         /* TCP data delivered client->server, server->client */
    uint64_t          udp_bytes[2];         /* UDP data delivered, same order */
    uint64_t          roles_repaired;       /* --bidir connections re-paired by role */
};

/* A test ended: counts it, and its TCP bytes.  The strings must be static. */
void stats_test_ended(struct service_stats *s, const char *protocol, const char *transport,
                      const char *mode, bool ok, uint64_t c2s, uint64_t s2c);

#endif
