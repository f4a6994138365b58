/* Run-time configuration, filled from the command line by main.c. */
#ifndef IPERF_SHIM_PROXY_CONFIG_H
#define IPERF_SHIM_PROXY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum shim_protocol { PROTO_AUTO = 0, PROTO_IPERF2, PROTO_IPERF3 };

struct shim_config {
    struct sockaddr_storage listen_addr;    /* where clients connect (TCP and UDP) */
    socklen_t               listen_len;
    struct sockaddr_storage upstream_addr;  /* the legacy iperf server (iperf3) */
    socklen_t               upstream_len;
    struct sockaddr_storage upstream2_addr; /* the iperf2 server (default: upstream_addr) */
    socklen_t               upstream2_len;
    enum shim_protocol      protocol;       /* which protocols the listen port serves */
    double   connect_timeout;    /* s: upstream TCP connect must complete within this */
    double   handshake_timeout;  /* s: a new client connection must send its cookie/header */
    double   idle_timeout;       /* s: a relay with no traffic either way is closed (0: never) */
    double   role_timeout;       /* s: after TEST_RUNNING, bidir roles must be learned */
    double   fence_timeout;      /* s: iperf3 TEST_END waits at most this for the data (0: off) */
    uint32_t params_max;         /* bytes: longest iperf3 parameters JSON accepted */
    uint32_t results_max;        /* bytes: longest iperf3 results JSON accepted */
    double   udp_linger;         /* s: a UDP flow lives until quiet both ways this long */
    int      max_flows;          /* UDP flows at once; new clients beyond are dropped */
    bool     udp_connected;      /* per-flow sockets connected to the client (measured: see docs/udp.md) */
    bool     use_splice;         /* move TCP data with splice() (else read/write) */
};

extern struct shim_config cfg;   /* the one configuration, set before the loop starts */

#endif
