/* iperf-shim: a transparent, wire-compatible proxy in front of legacy iperf
 * servers.  main() parses the command line, sets up the listener and runs
 * the event loop. */
#include "proxy/config.h"
#include "proxy/front.h"
#include "proxy/iperf2.h"
#include "proxy/iperf3.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/udp.h"
#include "protocol/iperf3_ctrl.h"

#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct shim_config cfg = {
    .connect_timeout   = 5.0,
    .handshake_timeout = 10.0,
    .idle_timeout      = 300.0,
    .role_timeout      = 5.0,
    .fence_timeout     = 2.0,
    .params_max        = I3_PARAMS_MAX_DEFAULT,
    .results_max       = I3_RESULTS_MAX_DEFAULT,
    .udp_linger        = 10.0,
    .max_flows         = 4096,
    .use_splice        = true,
};

static void usage(FILE *out)
{
    fprintf(out,
"usage: iperf-shim --listen ADDR:PORT --upstream HOST:PORT [options]\n"
"\n"
"  --listen ADDR:PORT       where clients connect: 0.0.0.0:5201, [::]:5201 (dual-stack),\n"
"                           [2001:db8::1]:5201, :5201 (dual-stack wildcard)\n"
"  --upstream HOST:PORT     the iperf server behind the shim\n"
"  --upstream-iperf2 HOST:PORT\n"
"                           where iperf2 clients go, when not the same as --upstream\n"
"  --protocol P             auto (default: iperf3 and iperf2 on one port), iperf3, iperf2\n"
"  --connect-timeout S      upstream TCP connect timeout (default 5)\n"
"  --handshake-timeout S    a client must send its cookie/header within S (default 10)\n"
"  --idle-timeout S         close a test with no traffic for S, 0 = never (default 300)\n"
"  --role-timeout S         --bidir: learn stream roles within S after the test starts,\n"
"                           else pair in arrival order (default 5)\n"
"  --fence-timeout S        iperf3: the client's TEST_END reaches the server only once the\n"
"                           test's data did, waiting at most S; 0 = off (default 2)\n"
"  --udp-linger S           a UDP flow (and its upstream port) stays open until quiet\n"
"                           both ways for S, absorbing late server datagrams (default 10)\n"
"  --max-flows N            UDP flows at once; datagrams of further clients are dropped\n"
"                           (default 4096)\n"
"  --udp-connected          give each UDP flow a socket connected to the client (the\n"
"                           kernel dispatches; default: one listener, lookup)\n"
"  --max-params BYTES       longest iperf3 parameters JSON accepted (default 65536)\n"
"  --max-results BYTES      longest iperf3 results JSON accepted (default 16777216)\n"
"  --no-splice              move TCP data with read/write instead of splice\n"
"  --log-level LEVEL        error, warn, info (default) or debug\n"
"  -h, --help               this text\n");
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 86400)
        return -1;
    *out = v;
    return 0;
}

/* Parses a whole number in [min, max].  Returns 0, or -1 if malformed. */
static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_info("signal %d: shutting down (%d test(s) in progress are closed)", w->signum,
             i3_live_tests());
    tcp_listener_stop(loop);
    front_close_all(loop);
    i3_close_all();
    i2_close_all();
    udp_stop(loop);
    ev_break(loop, EVBREAK_ALL);
}

/* More fds than the default 1024: a -P 128 --bidir test alone uses ~1500. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    enum { O_CONNECT = 256, O_HANDSHAKE, O_IDLE, O_ROLE, O_PARAMS, O_RESULTS, O_NOSPLICE,
           O_LOGLEVEL, O_LINGER, O_MAXFLOWS, O_UPSTREAM2, O_PROTOCOL, O_UDPCONN, O_FENCE };
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "upstream", required_argument, NULL, 'u' },
        { "upstream-iperf2", required_argument, NULL, O_UPSTREAM2 },
        { "protocol", required_argument, NULL, O_PROTOCOL },
        { "connect-timeout", required_argument, NULL, O_CONNECT },
        { "handshake-timeout", required_argument, NULL, O_HANDSHAKE },
        { "idle-timeout", required_argument, NULL, O_IDLE },
        { "role-timeout", required_argument, NULL, O_ROLE },
        { "fence-timeout", required_argument, NULL, O_FENCE },
        { "max-params", required_argument, NULL, O_PARAMS },
        { "max-results", required_argument, NULL, O_RESULTS },
        { "no-splice", no_argument, NULL, O_NOSPLICE },
        { "udp-linger", required_argument, NULL, O_LINGER },
        { "max-flows", required_argument, NULL, O_MAXFLOWS },
        { "udp-connected", no_argument, NULL, O_UDPCONN },
        { "log-level", required_argument, NULL, O_LOGLEVEL },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *listen_s = NULL, *upstream_s = NULL, *upstream2_s = NULL, *why;
    int c;

    while ((c = getopt_long(argc, argv, "l:u:h", opts, NULL)) != -1) {
        int bad = 0;
        unsigned long n = 0;
        switch (c) {
        case 'l': listen_s = optarg; break;
        case 'u': upstream_s = optarg; break;
        case O_UPSTREAM2: upstream2_s = optarg; break;
        case O_PROTOCOL:
            if (strcmp(optarg, "auto") == 0)
                cfg.protocol = PROTO_AUTO;
            else if (strcmp(optarg, "iperf2") == 0)
                cfg.protocol = PROTO_IPERF2;
            else if (strcmp(optarg, "iperf3") == 0)
                cfg.protocol = PROTO_IPERF3;
            else
                bad = 1;
            break;
        case O_CONNECT: bad = parse_seconds(optarg, &cfg.connect_timeout); break;
        case O_HANDSHAKE: bad = parse_seconds(optarg, &cfg.handshake_timeout); break;
        case O_IDLE: bad = parse_seconds(optarg, &cfg.idle_timeout); break;
        case O_ROLE: bad = parse_seconds(optarg, &cfg.role_timeout); break;
        case O_FENCE: bad = parse_seconds(optarg, &cfg.fence_timeout); break;
        case O_PARAMS:
            bad = parse_uint(optarg, 64, 1ul << 30, &n);
            cfg.params_max = (uint32_t)n;
            break;
        case O_RESULTS:
            bad = parse_uint(optarg, 64, 1ul << 30, &n);
            cfg.results_max = (uint32_t)n;
            break;
        case O_NOSPLICE: cfg.use_splice = false; break;
        case O_UDPCONN: cfg.udp_connected = true; break;
        case O_LINGER: bad = parse_seconds(optarg, &cfg.udp_linger); break;
        case O_MAXFLOWS:
            bad = parse_uint(optarg, 1, 1000000, &n);
            cfg.max_flows = (int)n;
            break;
        case O_LOGLEVEL: bad = log_level_parse(optarg, &log_threshold); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "iperf-shim: bad value '%s' for an option\n", optarg);
            return 2;
        }
    }
    if (listen_s == NULL || upstream_s == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (cfg.connect_timeout <= 0 || cfg.handshake_timeout <= 0 || cfg.role_timeout <= 0 ||
        cfg.udp_linger <= 0) {
        fprintf(stderr, "iperf-shim: connect, handshake and role timeouts and the UDP linger "
                        "must be > 0\n");
        return 2;
    }
    if (net_parse_hostport(listen_s, &cfg.listen_addr, &cfg.listen_len, &why) == -1) {
        fprintf(stderr, "iperf-shim: --listen %s: %s\n", listen_s, why);
        return 2;
    }
    if (net_parse_hostport(upstream_s, &cfg.upstream_addr, &cfg.upstream_len, &why) == -1) {
        fprintf(stderr, "iperf-shim: --upstream %s: %s\n", upstream_s, why);
        return 2;
    }
    cfg.upstream2_addr = cfg.upstream_addr;
    cfg.upstream2_len = cfg.upstream_len;
    if (upstream2_s != NULL &&
        net_parse_hostport(upstream2_s, &cfg.upstream2_addr, &cfg.upstream2_len, &why) == -1) {
        fprintf(stderr, "iperf-shim: --upstream-iperf2 %s: %s\n", upstream2_s, why);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    struct ev_loop *loop = EV_DEFAULT;
    if (tcp_listener_start(loop, &cfg.listen_addr, cfg.listen_len) == -1) {
        fprintf(stderr, "iperf-shim: cannot listen on %s (TCP): %s\n", listen_s, strerror(errno));
        return 1;
    }
    if (udp_start(loop, &cfg.listen_addr, cfg.listen_len) == -1) {
        fprintf(stderr, "iperf-shim: cannot listen on %s (UDP): %s\n", listen_s, strerror(errno));
        return 1;
    }
    ev_signal sigint, sigterm;
    ev_signal_init(&sigint, on_signal, SIGINT);
    ev_signal_init(&sigterm, on_signal, SIGTERM);
    ev_signal_start(loop, &sigint);
    ev_signal_start(loop, &sigterm);

    char l[ADDR_STR_MAX], u[ADDR_STR_MAX];
    log_info("iperf-shim listening on %s (TCP and UDP), relaying to %s%s",
             net_addr_str((struct sockaddr *)&cfg.listen_addr, l, sizeof(l)),
             net_addr_str((struct sockaddr *)&cfg.upstream_addr, u, sizeof(u)),
             cfg.use_splice ? "" : " (splice off)");
    ev_run(loop, 0);
    return 0;
}
