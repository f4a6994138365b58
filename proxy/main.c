/* iperf-shim: a transparent, wire-compatible proxy in front of legacy iperf
 * servers.  main() reads the command line (and the configuration file with
 * --config), checks it, and hands it to the process (proxy/process.h). */
#include "proxy/config_file.h"
#include "proxy/log.h"
#include "proxy/options.h"
#include "proxy/process.h"
#include "proxy/version.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>


static void usage(FILE *out)
{
    fprintf(out,
"usage: iperf-shim --listen ADDR:PORT --upstream HOST:PORT [options]\n"
"       iperf-shim --config FILE [--check] [--log-level L] [--drain-timeout S]\n"
"                  [--metrics ADDR:PORT]\n"
"\n"
"  --listen ADDR:PORT       where clients connect: 0.0.0.0:5201, [::]:5201 (dual-stack),\n"
"                           [2001:db8::1]:5201, :5201 (dual-stack wildcard)\n"
"  --upstream HOST:PORT     the iperf server behind the shim; repeat it for a pool of\n"
"                           servers (each iperf3 test goes to a free one, see pool.md)\n"
"  --upstream-iperf2 HOST:PORT\n"
"                           where iperf2 clients go, when not the same as --upstream\n"
"                           (repeatable: the least-loaded one is used)\n"
"  --protocol P             auto (default: iperf3 and iperf2 on one port), iperf3, iperf2\n"
"  --name NAME              the service's name in logs (default: the listen address)\n"
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
"  --upstream-iperf3-version V\n"
"                           the server's iperf3 version (3.12, 3.21...): flag parameters\n"
"                           are read as it reads them, parameters it will refuse (3.18+:\n"
"                           over 8 KiB) are logged (default: nothing assumed)\n"
"  --no-splice              move TCP data with read/write instead of splice\n"
"  --allow CIDR             serve only clients in this network (repeat for more;\n"
"                           default: everyone), e.g. 10.0.0.0/8, 2001:db8::/32\n"
"  --transparent            serve clients that address their servers directly, sent here\n"
"                           by the gateway's TPROXY (or REDIRECT/DNAT) rules: each test\n"
"                           goes to the server its client addressed; no --upstream\n"
"                           (needs CAP_NET_ADMIN; see transparent.md)\n"
"  --transparent-source     with --transparent: connect to the server from the client's\n"
"                           own address (needs the server's return path via the gateway)\n"
"  --allow-server CIDR      with --transparent: serve only servers in this network\n"
"                           (repeat for more; default: any destination the rules send)\n"
"  --transparent-mark N     with --transparent: firewall mark (SO_MARK) of the shim's own\n"
"                           connections, for the gateway's rules (default 0: none)\n"
"  --max-tests-per-client N tests at once from one client address (default 0: no limit)\n"
"  --max-duration S         refuse iperf3 tests longer than S (-t; default 0: no limit)\n"
"  --queue-timeout S        an iperf3 client waits at most S for a free server, then gets\n"
"                           the server's refusal, \"busy\" (default 60)\n"
"  --queue-max N            iperf3 clients waiting at once; 0: no queue (default 256)\n"
"  --drain-timeout S        on SIGTERM/SIGINT, let running tests and UDP flows finish for\n"
"                           at most S before exiting (default 60); a second signal exits\n"
"  --log-level LEVEL        error, warn, info (default) or debug\n"
"  --log-format F           text (default) or json: one JSON object per line\n"
"  --syslog                 log to syslog too (facility daemon)\n"
"  --metrics ADDR:PORT      serve Prometheus metrics at http://ADDR:PORT/metrics, the\n"
"                           status page at / and /status.json\n"
"  --config FILE            services and settings from FILE (libconfig syntax, see\n"
"                           iperf-shim.conf(5); default " CONFIG_FILE_DEFAULT ");\n"
"                           SIGHUP reads it again\n"
"  --check                  check the configuration, print what would run, and exit\n"
"  --version                print the version and exit\n"
"  -h, --help               this text\n");
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

#define MAX_OVERRIDES 16

/* The configuration file and the command-line settings that override it. */
static struct {
    const char           *path;                      /* --config FILE, NULL if none */
    const struct opt_def *def[MAX_OVERRIDES];        /* global options given */
    const char           *value[MAX_OVERRIDES];
    int                   n;
} source;

/* Reads the file and applies the command line's global settings on top
 * (at start and on SIGHUP).  Returns 0, or -1 with err set. */
static int load_config(void *arg, struct shim_config *c, char *err, size_t errlen)
{
    (void)arg;
    const char *why;
    if (config_file_load(source.path, c, err, errlen) == -1)
        return -1;
    for (int i = 0; i < source.n; i++) {
        if (opt_set(source.def[i], source.value[i], c, NULL, &why) == -1) {
            snprintf(err, errlen, "--%s %s: %s", source.def[i]->name, source.value[i], why);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_CONFIG = 1000, O_CHECK, O_VERSION, O_TABLE = 2000 };
    static struct option opts[64];
    static struct shim_config cfg;   /* large: not on the stack */
    struct service_config cli;
    int nopts = 0, c, nservice_opts = 0;
    bool check = false;
    const char *why;
    char err[512];

    for (const struct opt_def *d = shim_options; d->name; d++)
        opts[nopts++] = (struct option){ d->name, d->kind == OPT_FLAG ? no_argument
                                                                       : required_argument,
                                         NULL, O_TABLE + (int)(d - shim_options) };
    opts[nopts++] = (struct option){ "config", required_argument, NULL, O_CONFIG };
    opts[nopts++] = (struct option){ "check", no_argument, NULL, O_CHECK };
    opts[nopts++] = (struct option){ "version", no_argument, NULL, O_VERSION };
    opts[nopts++] = (struct option){ "help", no_argument, NULL, 'h' };
    opts[nopts] = (struct option){ NULL, 0, NULL, 0 };

    shim_config_defaults(&cfg);
    service_config_defaults(&cli);
    while ((c = getopt_long(argc, argv, "l:u:h", opts, NULL)) != -1) {
        const struct opt_def *d = NULL;
        if (c == 'l' || c == 'u')
            d = opt_by_key(c == 'l' ? "listen" : "upstream");
        else if (c >= O_TABLE)
            d = &shim_options[c - O_TABLE];
        if (d != NULL) {
            const char *v = d->kind == OPT_FLAG ? "true" : optarg;
            if (opt_set(d, v, &cfg, &cli, &why) == -1) {
                fprintf(stderr, "iperf-shim: --%s %s: %s\n", d->name, v, why);
                return 2;
            }
            if (d->scope == OPT_SERVICE) {
                nservice_opts++;
            } else if (source.n < MAX_OVERRIDES) {
                source.def[source.n] = d;
                source.value[source.n++] = v;
            }
            continue;
        }
        switch (c) {
        case O_CONFIG: source.path = optarg; break;
        case O_CHECK: check = true; break;
        case O_VERSION: printf("iperf-shim %s\n", shim_version); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (source.path == NULL && nservice_opts == 0 && check)
        source.path = CONFIG_FILE_DEFAULT;
    if (source.path != NULL) {
        if (nservice_opts > 0) {
            fprintf(stderr, "iperf-shim: with --config, services come from the file; only "
                            "global options (--log-level, --log-format, --syslog, "
                            "--drain-timeout, --metrics) may be given beside it\n");
            return 2;
        }
        if (load_config(NULL, &cfg, err, sizeof(err)) == -1) {
            fprintf(stderr, "iperf-shim: %s\n", err);
            return 1;
        }
    } else {
        int bad;
        cfg.services[0] = cli;
        cfg.nservices = 1;
        if (cli.listen_len == 0 || (cli.upstream.n == 0 && !cli.transparent)) {
            usage(stderr);
            return 2;
        }
        if (shim_config_finish(&cfg, &bad, &why) == -1) {
            fprintf(stderr, "iperf-shim: %s\n", why);
            return 2;
        }
    }
    if (check) {
        shim_config_print(&cfg, stdout);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    return process_run(EV_DEFAULT, &cfg, source.path ? load_config : NULL, NULL);
}
