/*
 * iperf3 test parameters: the client's parameters JSON (sent after the
 * server's PARAM_EXCHANGE, see protocol/iperf3_ctrl.h), parsed into what a
 * relay needs of it.  Pure: no sockets.
 */
#ifndef IPERF_SHIM_PROTOCOL_IPERF3_PARAMS_H
#define IPERF_SHIM_PROTOCOL_IPERF3_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Test parameters that matter to a relay, from the client's parameters JSON. */
enum i3_proto { I3_PROTO_TCP = 0, I3_PROTO_UDP, I3_PROTO_SCTP };

struct i3_params {
    enum i3_proto proto;
    bool     reverse;        /* -R */
    bool     bidir;          /* --bidir */
    int      parallel;       /* -P, >= 1 */
    int64_t  len;            /* -l block size, 0 if absent */
    int64_t  time;           /* -t seconds, 0 if absent */
    int64_t  bytes;          /* -n ("num"), 0 if absent */
    int64_t  blockcount;     /* -k, 0 if absent */
    int64_t  omit;           /* -O, 0 if absent */
    int64_t  window;         /* -w ("window") in bytes, 0 if absent */
    int64_t  mss;            /* -M ("MSS"), 0 if absent */
    bool     nodelay;        /* -N ("nodelay") */
    bool     udp_counters_64bit;
    bool     mptcp;          /* --mptcp (3.19+): data streams over MPTCP */
    char     client_version[32];  /* "" if absent */
    char     misread_flag[24];    /* first flag key (e.g. "reverse") whose value the rule
                                     read otherwise than I3_FLAGS_LENIENT would, "" if none */
};

/* How a server reads a flag parameter ("reverse", "udp", ...) that is not
 * simply true (compat/iperf3_compat.h i3_server_params_typed()). */
enum i3_flag_rule {
    I3_FLAGS_LENIENT = 0,  /* true or a nonzero number sets it (server version unknown) */
    I3_FLAGS_PRESENCE,     /* up to 3.17: the key sets it, whatever its value */
    I3_FLAGS_TYPED,        /* 3.18+: only the JSON value true sets it */
};

/* Parse a parameters JSON block.  Returns 0 on success, -1 on malformed JSON or
 * absurd values (parallel outside 1..I3_MAX_PARALLEL), with *why set to a
 * static text. */
#define I3_MAX_PARALLEL 128
int i3_params_parse(const char *json, size_t len, struct i3_params *out, const char **why);

/* As i3_params_parse(), reading flags as a server with <rule> does (the
 * former is this with I3_FLAGS_LENIENT).  Real clients send flags as true,
 * so the rules differ only for hand-made or broken clients: misread_flag
 * names the first flag where they did. */
int i3_params_parse_as(const char *json, size_t len, enum i3_flag_rule rule,
                       struct i3_params *out, const char **why);

/* Number of data connections the client opens for these parameters. */
int i3_params_stream_count(const struct i3_params *p);

/* Short operator text: "TCP", "TCP reverse", "TCP bidir", "UDP bidir"... */
const char *i3_params_mode(const struct i3_params *p);

#endif
