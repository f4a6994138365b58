#include "proxy/options.h"

#include "compat/iperf3_compat.h"
#include "protocol/iperf3_ctrl.h"
#include "proxy/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum opt_id {
    O_LISTEN, O_UPSTREAM, O_UPSTREAM2, O_PROTOCOL, O_NAME,
    O_CONNECT, O_HANDSHAKE, O_IDLE, O_ROLE, O_FENCE, O_LINGER,
    O_MAXFLOWS, O_PARAMS, O_RESULTS, O_UDPCONN, O_NOSPLICE,
    O_UP3VER, O_LOGLEVEL, O_LOGFORMAT, O_SYSLOG, O_DRAIN, O_METRICS, O_ALLOW, O_MAXTESTS, O_MAXDUR,
    O_QTIMEOUT, O_QMAX, O_TRANSP, O_TRANSPSRC, O_ALLOWSRV, O_TRANSPMARK,
};

const struct opt_def shim_options[] = {
    { "listen",            "listen",            OPT_SERVICE, OPT_STRING, O_LISTEN },
    { "upstream",          "upstream",          OPT_SERVICE, OPT_LIST,   O_UPSTREAM },
    { "upstream-iperf2",   "upstream_iperf2",   OPT_SERVICE, OPT_LIST,   O_UPSTREAM2 },
    { "protocol",          "protocol",          OPT_SERVICE, OPT_STRING, O_PROTOCOL },
    { "name",              "name",              OPT_SERVICE, OPT_STRING, O_NAME },
    { "connect-timeout",   "connect_timeout",   OPT_SERVICE, OPT_STRING, O_CONNECT },
    { "handshake-timeout", "handshake_timeout", OPT_SERVICE, OPT_STRING, O_HANDSHAKE },
    { "idle-timeout",      "idle_timeout",      OPT_SERVICE, OPT_STRING, O_IDLE },
    { "role-timeout",      "role_timeout",      OPT_SERVICE, OPT_STRING, O_ROLE },
    { "fence-timeout",     "fence_timeout",     OPT_SERVICE, OPT_STRING, O_FENCE },
    { "udp-linger",        "udp_linger",        OPT_SERVICE, OPT_STRING, O_LINGER },
    { "max-flows",         "max_flows",         OPT_SERVICE, OPT_STRING, O_MAXFLOWS },
    { "max-params",        "max_params",        OPT_SERVICE, OPT_STRING, O_PARAMS },
    { "max-results",       "max_results",       OPT_SERVICE, OPT_STRING, O_RESULTS },
    { "upstream-iperf3-version", "upstream_iperf3_version", OPT_SERVICE, OPT_STRING, O_UP3VER },
    { "udp-connected",     "udp_connected",     OPT_SERVICE, OPT_FLAG,   O_UDPCONN },
    { "no-splice",         "no_splice",         OPT_SERVICE, OPT_FLAG,   O_NOSPLICE },
    { "allow",             "allow",             OPT_SERVICE, OPT_LIST,   O_ALLOW },
    { "max-tests-per-client", "max_tests_per_client", OPT_SERVICE, OPT_STRING, O_MAXTESTS },
    { "max-duration",      "max_duration",      OPT_SERVICE, OPT_STRING, O_MAXDUR },
    { "queue-timeout",     "queue_timeout",     OPT_SERVICE, OPT_STRING, O_QTIMEOUT },
    { "queue-max",         "queue_max",         OPT_SERVICE, OPT_STRING, O_QMAX },
    { "transparent",       "transparent",       OPT_SERVICE, OPT_FLAG,   O_TRANSP },
    { "transparent-source", "transparent_source", OPT_SERVICE, OPT_FLAG, O_TRANSPSRC },
    { "allow-server",      "allow_server",      OPT_SERVICE, OPT_LIST,   O_ALLOWSRV },
    { "transparent-mark",  "transparent_mark",  OPT_SERVICE, OPT_STRING, O_TRANSPMARK },
    { "log-level",         "log_level",         OPT_GLOBAL,  OPT_STRING, O_LOGLEVEL },
    { "log-format",        "log_format",        OPT_GLOBAL,  OPT_STRING, O_LOGFORMAT },
    { "syslog",            "syslog",            OPT_GLOBAL,  OPT_FLAG,   O_SYSLOG },
    { "drain-timeout",     "drain_timeout",     OPT_GLOBAL,  OPT_STRING, O_DRAIN },
    { "metrics",           "metrics",           OPT_GLOBAL,  OPT_STRING, O_METRICS },
    { NULL, NULL, 0, 0, 0 },
};

void shim_config_defaults(struct shim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->log_level = LOG_INFO;
    c->drain_timeout = 60.0;
}

const struct opt_def *opt_by_key(const char *key)
{
    for (const struct opt_def *d = shim_options; d->name; d++)
        if (strcmp(d->key, key) == 0)
            return d;
    return NULL;
}

/* Seconds in [0, 86400].  Returns 0, or -1 with *why if malformed. */
static int parse_seconds(const char *s, double *out, const char **why)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0 && v <= 86400)) {
        *why = "expected seconds from 0 to 86400";
        return -1;
    }
    *out = v;
    return 0;
}

/* A whole number in [min, max].  Returns 0, or -1 if malformed. */
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

static int parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

int opt_set(const struct opt_def *d, const char *v, struct shim_config *c,
            struct service_config *s, const char **why)
{
    unsigned long n = 0;
    bool b = false;
    int bad = 0;
    switch ((enum opt_id)d->id) {
    case O_LISTEN:
        return net_parse_hostport(v, &s->listen_addr, &s->listen_len, why);
    case O_METRICS:
        return net_parse_hostport(v, &c->metrics_addr, &c->metrics_len, why);
    case O_UPSTREAM:
        return pool_list_add(&s->upstream, v, why);
    case O_UPSTREAM2:
        return pool_list_add(&s->upstream2, v, why);
    case O_PROTOCOL:
        if (strcmp(v, "auto") == 0)
            s->protocol = PROTO_AUTO;
        else if (strcmp(v, "iperf2") == 0)
            s->protocol = PROTO_IPERF2;
        else if (strcmp(v, "iperf3") == 0)
            s->protocol = PROTO_IPERF3;
        else
            bad = 1;
        *why = "expected auto, iperf3 or iperf2";
        break;
    case O_NAME:
        bad = v[0] == '\0' || strlen(v) >= sizeof(s->name);
        if (!bad)
            strcpy(s->name, v);
        *why = "expected 1 to 47 characters";
        break;
    case O_CONNECT:   return parse_seconds(v, &s->connect_timeout, why);
    case O_HANDSHAKE: return parse_seconds(v, &s->handshake_timeout, why);
    case O_IDLE:      return parse_seconds(v, &s->idle_timeout, why);
    case O_ROLE:      return parse_seconds(v, &s->role_timeout, why);
    case O_FENCE:     return parse_seconds(v, &s->fence_timeout, why);
    case O_LINGER:    return parse_seconds(v, &s->udp_linger, why);
    case O_DRAIN:     return parse_seconds(v, &c->drain_timeout, why);
    case O_MAXDUR:    return parse_seconds(v, &s->max_duration, why);
    case O_QTIMEOUT:  return parse_seconds(v, &s->queue_timeout, why);
    case O_QMAX:
        bad = parse_uint(v, 0, 100000, &n);
        s->queue_max = (int)n;
        *why = "expected a whole number from 0 (no queue) to 100000";
        break;
    case O_ALLOW:     return acl_add(&s->allow, v, why);
    case O_ALLOWSRV:  return acl_add(&s->allow_server, v, why);
    case O_TRANSPMARK: {
        char *end;
        errno = 0;
        unsigned long m = strtoul(v, &end, 0);   /* 0x... as nft writes marks */
        bad = errno != 0 || end == v || *end != '\0' || *v == '-' || m > UINT32_MAX;
        s->transparent_mark = (uint32_t)m;
        *why = "expected a firewall mark from 0 (none) to 0xffffffff";
        break;
    }
    case O_TRANSP:
    case O_TRANSPSRC:
        bad = parse_bool(v, &b);
        *(d->id == O_TRANSP ? &s->transparent : &s->transparent_source) = b;
        *why = "expected true or false";
        break;
    case O_MAXTESTS:
        bad = parse_uint(v, 0, 100000, &n);
        s->max_tests_per_client = (int)n;
        *why = "expected a whole number from 0 (no limit) to 100000";
        break;
    case O_MAXFLOWS:
        bad = parse_uint(v, 1, 1000000, &n);
        s->max_flows = (int)n;
        *why = "expected a whole number from 1 to 1000000";
        break;
    case O_PARAMS:
    case O_RESULTS:
        bad = parse_uint(v, 64, 1ul << 30, &n);
        *(d->id == O_PARAMS ? &s->params_max : &s->results_max) = (uint32_t)n;
        *why = "expected a whole number of bytes from 64 to 1073741824";
        break;
    case O_UP3VER:
        bad = i3_version_parse(v, &s->upstream3_major, &s->upstream3_minor) != 0 ||
              s->upstream3_major != 3;
        *why = "expected an iperf3 version: 3.12, 3.21...";
        break;
    case O_UDPCONN:
        bad = parse_bool(v, &b);
        s->udp_connected = b;
        *why = "expected true or false";
        break;
    case O_NOSPLICE:
        bad = parse_bool(v, &b);
        s->use_splice = !b;
        *why = "expected true or false";
        break;
    case O_LOGLEVEL:
        bad = log_level_parse(v, &c->log_level);
        *why = "expected error, warn, info or debug";
        break;
    case O_LOGFORMAT:
        bad = log_format_parse(v, &c->log_format);
        *why = "expected text or json";
        break;
    case O_SYSLOG:
        bad = parse_bool(v, &b);
        c->log_syslog = b;
        *why = "expected true or false";
        break;
    }
    return bad ? -1 : 0;
}

static bool same_addr(const struct service_config *a, const struct service_config *b)
{
    return a->listen_len == b->listen_len &&
           memcmp(&a->listen_addr, &b->listen_addr, a->listen_len) == 0;
}

int shim_config_finish(struct shim_config *c, int *svc, const char **why)
{
    *svc = -1;
    if (c->nservices == 0) {
        *why = "no service: give --listen and --upstream, or services in the file";
        return -1;
    }
    for (int i = 0; i < c->nservices; i++) {
        struct service_config *s = &c->services[i];
        *svc = i;
        if (s->listen_len == 0) {
            *why = "a service needs a listen address";
            return -1;
        }
        if (s->transparent && (s->upstream.n > 0 || s->upstream2.n > 0)) {
            *why = "--transparent takes each test's server from the client's destination: "
                   "no --upstream";
            return -1;
        }
        if (!s->transparent && (s->transparent_source || s->allow_server.n > 0 ||
                                s->transparent_mark != 0)) {
            *why = "--transparent-source, --transparent-mark and --allow-server need "
                   "--transparent";
            return -1;
        }
        if (s->upstream.n == 0 && !s->transparent) {
            *why = "a service needs an upstream server (or --transparent)";
            return -1;
        }
        if (s->upstream2.n == 0)
            s->upstream2 = s->upstream;
        if (s->connect_timeout <= 0 || s->handshake_timeout <= 0 || s->role_timeout <= 0 ||
            s->udp_linger <= 0) {
            *why = "connect, handshake and role timeouts and the UDP linger must be > 0";
            return -1;
        }
        if (s->name[0] == '\0')
            net_addr_str((const struct sockaddr *)&s->listen_addr, s->name, sizeof(s->name));
        for (int j = 0; j < i; j++) {
            if (same_addr(&c->services[j], s)) {
                *why = "two services listen on the same address";
                return -1;
            }
            if (strcmp(c->services[j].name, s->name) == 0) {
                *why = "two services have the same name";
                return -1;
            }
        }
    }
    *svc = -1;
    return 0;
}

void shim_config_print(const struct shim_config *c, FILE *out)
{
    static const char *const proto[] = { "auto", "iperf2", "iperf3" };
    static const char *const level[] = { "error", "warn", "info", "debug" };
    char m[ADDR_STR_MAX] = "none";
    if (c->metrics_len > 0)
        net_addr_str((const struct sockaddr *)&c->metrics_addr, m, sizeof(m));
    fprintf(out, "log level %s, format %s%s, drain timeout %g s, metrics %s, %d service(s)\n",
            level[c->log_level], c->log_format == LOG_JSON ? "json" : "text",
            c->log_syslog ? " and syslog" : "", c->drain_timeout, m, c->nservices);
    for (int i = 0; i < c->nservices; i++) {
        const struct service_config *s = &c->services[i];
        char l[ADDR_STR_MAX], u[POOL_LIST_STR_MAX], u2[POOL_LIST_STR_MAX];
        if (s->transparent) {
            snprintf(u, sizeof(u), "the client's destination (transparent%s, %d server "
                     "network(s)%s, mark %#x)", s->transparent_source ? ", client's source" : "",
                     s->allow_server.n, s->allow_server.n ? "" : ": any", s->transparent_mark);
            strcpy(u2, u);
        } else {
            pool_list_str(&s->upstream, u, sizeof(u));
            pool_list_str(&s->upstream2, u2, sizeof(u2));
        }
        fprintf(out, "service %s: listen %s (TCP and UDP), protocol %s; iperf3 -> %s, "
                "iperf2 -> %s; timeouts: connect %g s, handshake %g s, idle %g s, role %g s; "
                "fence %g s; UDP linger %g s, max flows %d%s; max params %u, max results %u%s; "
                "clients: %s%d network(s)%s, max tests per client %d, max duration %g s; "
                "queue max %d, timeout %g s\n",
                s->name, net_addr_str((const struct sockaddr *)&s->listen_addr, l, sizeof(l)),
                proto[s->protocol], u, u2,
                s->connect_timeout, s->handshake_timeout, s->idle_timeout, s->role_timeout,
                s->fence_timeout, s->udp_linger, s->max_flows,
                s->udp_connected ? ", connected UDP sockets" : "",
                s->params_max, s->results_max, s->use_splice ? "" : "; splice off",
                s->allow.n ? "" : "any (", s->allow.n, s->allow.n ? "" : ")",
                s->max_tests_per_client, s->max_duration, s->queue_max, s->queue_timeout);
    }
}
