/*
 * iperf3 control channel: a pure, incremental observer of both directions of
 * an iperf3 control connection.  Bytes in, events out; no sockets, no libev.
 *
 * The proxy forwards the control stream unchanged.  It feeds every chunk it
 * is about to forward to i3_ctrl_feed(), which consumes bytes up to and
 * including the byte that completes one event (or the whole chunk when no
 * event completes), so the caller can react to an event before forwarding
 * the bytes that follow it.
 *
 * Wire rules (shared/PROTOCOL-NOTES.md, iperf_api.c):
 *  - client -> server starts with a 37-byte cookie (opaque);
 *  - every later message is one signed state byte or a JSON block
 *    (4-byte big-endian length, then that many bytes of JSON, no NUL);
 *  - the client sends a JSON block only in answer to the server's
 *    PARAM_EXCHANGE (parameters) and EXCHANGE_RESULTS (its results);
 *  - the server sends its results JSON only after the client's results
 *    JSON has arrived;
 *  - SERVER_ERROR (-2) is followed by two big-endian int32: i_errno, errno.
 */
#ifndef IPERF_SHIM_PROTOCOL_IPERF3_CTRL_H
#define IPERF_SHIM_PROTOCOL_IPERF3_CTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define I3_COOKIE_SIZE 37

/* State bytes (iperf_api.h). */
enum i3_state {
    I3_TEST_START       = 1,
    I3_TEST_RUNNING     = 2,
    I3_TEST_END         = 4,
    I3_PARAM_EXCHANGE   = 9,
    I3_CREATE_STREAMS   = 10,
    I3_SERVER_TERMINATE = 11,
    I3_CLIENT_TERMINATE = 12,
    I3_EXCHANGE_RESULTS = 13,
    I3_DISPLAY_RESULTS  = 14,
    I3_IPERF_DONE       = 16,
    I3_ACCESS_DENIED    = -1,
    I3_SERVER_ERROR     = -2,
};

enum i3_dir { I3_C2S = 0, I3_S2C = 1 };

enum i3_ev_kind {
    I3_EV_NONE = 0,      /* chunk consumed, no event completed: need more input */
    I3_EV_COOKIE,        /* c2s: the 37-byte cookie is complete (ev.cookie) */
    I3_EV_STATE,         /* one state byte (ev.state); SERVER_ERROR is reported as I3_EV_SERVER_ERROR */
    I3_EV_SERVER_ERROR,  /* s2c: SERVER_ERROR and its two codes (ev.err_code, ev.err_errno) */
    I3_EV_JSON,          /* a JSON block is complete (ev.json_len; ev.json when kept) */
    I3_EV_ERROR,         /* protocol violation (ev.reason); the parser stays failed */
};

enum i3_json_kind {
    I3_JSON_PARAMS = 0,  /* c2s, after PARAM_EXCHANGE */
    I3_JSON_CLIENT_RESULTS,  /* c2s, after EXCHANGE_RESULTS */
    I3_JSON_SERVER_RESULTS,  /* s2c, after the client's results */
};

struct i3_event {
    enum i3_ev_kind kind;
    enum i3_dir     dir;          /* direction the event was seen on */
    int8_t          state;        /* I3_EV_STATE: the signed state byte */
    int32_t         err_code;     /* I3_EV_SERVER_ERROR: i_errno */
    int32_t         err_errno;    /* I3_EV_SERVER_ERROR: errno */
    enum i3_json_kind json_kind;  /* I3_EV_JSON: which block this was */
    uint32_t        json_len;     /* I3_EV_JSON: length from the wire */
    const char     *json;         /* I3_EV_JSON: NUL-terminated body when kept, else NULL;
                                     valid until the next i3_ctrl_feed() on that direction */
    const uint8_t  *cookie;       /* I3_EV_COOKIE: I3_COOKIE_SIZE bytes, valid as json */
    const char     *reason;       /* I3_EV_ERROR: text for an operator's log line; static or
                                     in c->reason_buf, valid until i3_ctrl_init/free of c */
};

/* Internal per-direction state; callers treat it as opaque. */
struct i3_dirstate {
    uint8_t  phase;          /* where in a message the next byte falls */
    uint8_t  hdr[8];         /* length prefix or SERVER_ERROR codes being collected */
    uint8_t  hdr_got;        /* bytes of hdr collected */
    uint32_t json_len;       /* length of the JSON block being read */
    uint32_t json_got;       /* bytes of it seen so far */
    bool     json_keep;      /* body being copied into buf */
    enum i3_json_kind json_kind;  /* kind of the JSON block being read */
    uint8_t  json_expected;  /* JSON blocks this direction owes (0..2) */
    char    *buf;            /* kept JSON body (heap, json_len + 1) */
    uint8_t  cookie[I3_COOKIE_SIZE];  /* c2s: the cookie as received */
    uint8_t  cookie_got;     /* c2s: bytes of cookie collected (0..I3_COOKIE_SIZE) */
};

struct i3_ctrl {
    struct i3_dirstate d[2];  /* indexed by enum i3_dir */
    uint32_t params_max;      /* longest parameters JSON accepted (kept and parsed) */
    uint32_t results_max;     /* longest results JSON accepted (streamed, not kept) */
    bool     failed;          /* a violation was reported: feed returns it again */
    const char *fail_reason;  /* text of that violation (static or reason_buf) */
    enum i3_dir fail_dir;     /* direction the violation was seen on */
    bool     param_exchange_seen;    /* s2c carried PARAM_EXCHANGE */
    bool     exchange_results_seen;  /* s2c carried EXCHANGE_RESULTS */
    bool     params_done;     /* c2s parameters JSON complete */
    char     reason_buf[112]; /* formatted violation text (lengths, state values) */
};

/* Defaults for the caps (configurable by the caller). */
#define I3_PARAMS_MAX_DEFAULT  (64u * 1024u)
#define I3_RESULTS_MAX_DEFAULT (16u * 1024u * 1024u)

/* A cap of 0 selects the default (I3_PARAMS_MAX_DEFAULT, I3_RESULTS_MAX_DEFAULT). */
void   i3_ctrl_init(struct i3_ctrl *c, uint32_t params_max, uint32_t results_max);
void   i3_ctrl_free(struct i3_ctrl *c);   /* releases kept buffers; c may be reused after init */

/* Consume bytes of one direction.  Returns the number of bytes consumed
 * (>= 1 when len >= 1, unless the parser has already failed, then 0) and fills
 * *ev; ev->kind is I3_EV_NONE when all len bytes were consumed without
 * completing an event.
 * Where a JSON block is due, the next 4 bytes are its length, as the peer
 * reads them, with one exception: a terminal state byte (CLIENT_TERMINATE
 * c2s; SERVER_TERMINATE, ACCESS_DENIED, SERVER_ERROR s2c) whose value as the
 * top byte of a length would exceed the cap is reported as that state (3.21+
 * servers send SERVER_ERROR where the client awaits their results). */
size_t i3_ctrl_feed(struct i3_ctrl *c, enum i3_dir dir, const uint8_t *in, size_t len,
                    struct i3_event *ev);

/* Report that direction dir has ended (the sender's FIN; nothing more will be
 * fed on it).  Fills *ev and returns nothing:
 *  - I3_EV_NONE when the direction ended between messages;
 *  - I3_EV_SERVER_ERROR (err_errno 0) when s2c ended after SERVER_ERROR and
 *    exactly one int32: iperf3 3.2-3.20 send only i_errno when
 *    authentication fails (iperf_exchange_parameters) and then close;
 *  - I3_EV_ERROR when it ended inside a message; the parser fails.
 * After a failure it returns the recorded error, like i3_ctrl_feed(). */
void   i3_ctrl_eof(struct i3_ctrl *c, enum i3_dir dir, struct i3_event *ev);

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

/* Name of a state byte for logs ("TEST_RUNNING"), or "UNKNOWN". */
const char *i3_state_name(int8_t state);

#endif
