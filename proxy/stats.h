/*
 * What a service counts and remembers for its operator: finished tests by
 * protocol, transport, mode and outcome, bytes relayed, --bidir roles
 * re-paired, and the last tests that ended.  Sessions report here when they
 * end; the metrics and the status page (proxy/http.h) read it, together with
 * the UDP counters (proxy/udp.h) and the tests in progress.
 */
#ifndef IPERF_SHIM_PROXY_STATS_H
#define IPERF_SHIM_PROXY_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define STATS_KINDS  48   /* (protocol, transport, mode, outcome) combinations kept */
#define STATS_RECENT 16   /* ended tests remembered for the status page */
#define STATS_TEXT   120  /* longest outcome text kept */

/* One test, running or ended, as the operator sees it. */
struct test_info {
    char        id[16];                  /* iperf3: the cookie's first characters; else "" */
    const char *protocol;                /* "iperf3" or "iperf2" (static) */
    const char *transport;               /* "tcp" or "udp" (static) */
    const char *mode;                    /* "normal", "reverse", "bidir", "dualtest"... (static) */
    struct sockaddr_storage client;      /* the client's address */
    struct sockaddr_storage server;      /* the server it was relayed to */
    time_t      started;                 /* wall clock, s */
    double      seconds;                 /* how long it ran (so far) */
    uint64_t    bytes[2];                /* data delivered client->server, server->client */
    int         repaired;                /* --bidir connections re-paired by role */
    bool        ok;                      /* ended normally (running: no failure so far) */
    char        outcome[STATS_TEXT];     /* ended: how; running: its state */
};

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
    struct test_info  recent[STATS_RECENT]; /* ring of the last tests that ended */
    unsigned          nrecent;              /* tests ever put in the ring */
};

/* A test ended: counts it, its TCP bytes (udp: not added here) and its
 * re-paired roles, and remembers it. */
void stats_test_ended(struct service_stats *s, const struct test_info *t);

/* The i-th most recent ended test (0: the last), or NULL. */
const struct test_info *stats_recent(const struct service_stats *s, unsigned i);

/* Calls fn for every test in progress on a service (iperf3 tests, iperf2
 * sessions), filled by the session modules. */
struct service;
typedef void (*test_info_fn)(void *arg, const struct test_info *t);
void i3_running(const struct service *svc, test_info_fn fn, void *arg);
void i2_running(const struct service *svc, test_info_fn fn, void *arg);

#endif
