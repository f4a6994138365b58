/*
 * A service: one listening address (TCP and UDP on the same port) with its
 * upstream server(s), protocol choice and timeouts.  Everything the proxy
 * creates for a client (pending connections, iperf3 tests, iperf2 sessions,
 * UDP flows, connect-back listeners) hangs off the service that accepted
 * it and reads its configuration through it; main.c builds the services and
 * the event loop runs any number of them.
 *
 *   RUNNING ──drain──> DRAINING ──nothing live──> (main exits)
 *
 * While DRAINING the listeners stay open, because running tests still need
 * them (iperf3 data connections, UDP datagrams of existing flows), but no
 * new test is taken: a new iperf3 client gets the server's own refusal
 * (ACCESS_DENIED, "the server is busy"), a new iperf2 client a closed
 * connection, a new UDP client no state.
 */
#ifndef IPERF_SHIM_PROXY_SERVICE_H
#define IPERF_SHIM_PROXY_SERVICE_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/acl.h"
#include "proxy/front.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/stats.h"

enum shim_protocol { PROTO_AUTO = 0, PROTO_IPERF2, PROTO_IPERF3 };

/* One service's settings, filled by main.c from the command line. */
#define SERVICE_NAME_MAX 48

struct service_config {
    char                    name[SERVICE_NAME_MAX]; /* for logs; default: the listen address */
    struct sockaddr_storage listen_addr;    /* where clients connect (TCP and UDP) */
    socklen_t               listen_len;     /* 0: not set */
    struct pool_list        upstream;       /* the legacy iperf servers (iperf3): the pool */
    struct pool_list        upstream2;      /* the iperf2 servers (default: upstream) */
    enum shim_protocol      protocol;       /* which protocols the listen port serves */
    double   connect_timeout;    /* s: upstream TCP connect must complete within this */
    double   handshake_timeout;  /* s: a new client connection must send its cookie/header */
    double   idle_timeout;       /* s: a relay with no traffic either way is closed (0: never) */
    double   role_timeout;       /* s: after TEST_RUNNING, bidir roles must be learned */
    double   fence_timeout;      /* s: iperf3 TEST_END waits at most this for the data (0: off) */
    uint32_t params_max;         /* bytes: longest iperf3 parameters JSON accepted */
    uint32_t results_max;        /* bytes: longest iperf3 results JSON accepted */
    int      upstream3_major;    /* --upstream-iperf3-version: the server's iperf3 version, */
    int      upstream3_minor;    /*   major 0 when not given (then nothing is assumed) */
    double   udp_linger;         /* s: a UDP flow lives until quiet both ways this long */
    int      max_flows;          /* UDP flows at once; new clients beyond are dropped */
    bool     udp_connected;      /* per-flow sockets connected to the client (docs/udp.md) */
    bool     use_splice;         /* move TCP data with splice() (else read/write) */
    struct acl allow;            /* client networks served (empty: all) */
    int      max_tests_per_client; /* tests at once from one client address (0: no limit) */
    double   max_duration;       /* s: longest iperf3 test (-t) accepted (0: no limit) */
    double   queue_timeout;      /* s: longest wait for a free server (iperf3) */
    int      queue_max;          /* iperf3 tests waiting at once (0: no queue) */
    bool     transparent;        /* --transparent: each test's server is the address its
                                    client addressed (TPROXY/REDIRECT), not cfg.upstream */
    bool     transparent_source; /* upstream legs carry the client's address (needs transparent) */
    struct acl allow_server;     /* transparent: server networks served (empty: all) */
    uint32_t transparent_mark;   /* transparent: SO_MARK of upstream sockets (0: none) */
};

/* Defaults of every setting (the addresses are left empty). */
void service_config_defaults(struct service_config *c);

enum service_state {
    SERVICE_RUNNING = 0,   /* taking new tests */
    SERVICE_DRAINING,      /* running tests go on; no new test is taken */
};

struct test;        /* proxy/iperf3.c */
struct sess;        /* proxy/iperf2.c */
struct udp_state;   /* proxy/udp.c */

struct service {
    struct service        *next;       /* the process's list of services */
    struct ev_loop        *loop;
    struct service_config  cfg;        /* this service's settings */
    enum service_state     state;
    struct tcp_listener    listener;   /* TCP accept on cfg.listen_addr */
    struct front_queue     fronts;     /* connections not yet recognised */
    struct test           *tests;      /* live iperf3 tests */
    int                    ntests;
    struct sess           *sessions;   /* live iperf2 TCP sessions */
    int                    nsessions;
    struct udp_state      *udp;        /* UDP listener and flows, NULL before start */
    struct pool            pool3;      /* iperf3 servers (cfg.upstream) and the queue */
    struct pool            pool2;      /* iperf2 servers (cfg.upstream2) */
    struct service_stats   stats;      /* what ended tests add up to */
    uint64_t               acl_refused;/* clients refused: not in the allowed networks */
    struct log_rate        acl_log;    /* at most one such line a second */
    uint64_t               server_refused; /* transparent: destinations refused
                                              (--allow-server, the shim itself) */
    struct log_rate        server_log; /* at most one such line a second */
    bool                   retiring;   /* removed by a reload: closed once drained */
    bool                   mark;       /* scratch flag of the reload */
};

/* Sets up svc (cfg copied) without opening anything. */
void service_init(struct service *svc, struct ev_loop *loop, const struct service_config *cfg);

/* Opens the TCP and UDP listeners.  Returns 0, or -1 with errno and *what
 * set to "TCP" or "UDP". */
int  service_start(struct service *svc, const char **what);

/* True when client may use svc (--allow); else counts it and logs, at most
 * once a second, "refusing <what> <client>: not in the allowed networks". */
bool service_admits(struct service *svc, const struct sockaddr_storage *client,
                    const char *what);

/* svc->cfg was replaced by a reload: the pools take the new server lists. */
void service_reconfigured(struct service *svc);

/* Stops taking new tests; running ones go on. */
void service_drain(struct service *svc);

/* Tests, sessions, UDP flows and unrecognised connections still alive. */
int  service_live(const struct service *svc);

/* Closes everything at once and the listeners (exit). */
void service_stop(struct service *svc);

/* True when new tests are taken. */
static inline bool service_open(const struct service *svc)
{
    return svc->state == SERVICE_RUNNING;
}

#endif
