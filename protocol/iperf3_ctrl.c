/*
 * iperf3 control channel parser (see iperf3_ctrl.h for the wire rules).
 *
 * Each direction is a small state machine over bytes:
 *
 *   COOKIE (c2s only, 37 bytes) ──> MSG ──state byte──────────────> MSG
 *                                    │ ──SERVER_ERROR──> SERR (8) ─> MSG
 *                                    └─JSON owed──> JSON_LEN (4) ──> JSON_BODY ─> MSG
 *
 * Whether the next message of a direction is a JSON block is never guessed
 * from the bytes: it follows from what the other direction carried, exactly
 * as the receiving iperf3 decides it (it calls JSON_read() at that point):
 *  - s2c PARAM_EXCHANGE   -> c2s owes the parameters JSON;
 *  - s2c EXCHANGE_RESULTS -> c2s owes the client's results JSON;
 *  - c2s results complete -> s2c owes the server's results JSON.
 * The proxy feeds each chunk before forwarding it, so causality holds: the
 * client cannot answer a PARAM_EXCHANGE that has not been fed yet.
 *
 * State bytes are checked against the set the receiving iperf3 accepts
 * (iperf_handle_message_server / iperf_handle_message_client, the same in
 * 3.0.11, 3.1, 3.5, 3.12 and master after 3.21): anything else makes the peer
 * fail with IEMESSAGE, and we could not frame what follows it.
 *
 * The byte parser allocates nothing but a kept parameters body, never more
 * than params_max + 1 bytes (i3_params_parse allocates through cJSON).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "protocol/iperf3_ctrl.h"

/* Values of i3_dirstate.phase. */
enum i3_phase {
    I3_PH_MSG = 0,     /* the next byte starts a message */
    I3_PH_COOKIE,      /* c2s: inside the 37-byte cookie */
    I3_PH_JSON_LEN,    /* inside the 4-byte length of a JSON block */
    I3_PH_JSON_BODY,   /* inside the body of a JSON block */
    I3_PH_SERR,        /* inside the two int32 that follow SERVER_ERROR */
};

#define I3_SERR_CODES_LEN 8   /* two big-endian int32 after SERVER_ERROR */
#define I3_JSON_LEN_LEN   4   /* big-endian uint32 before a JSON block */

#define I3_STR_(x) #x
#define I3_STR(x)  I3_STR_(x)

static uint32_t i3_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static const char *i3_dir_peer(enum i3_dir dir)
{
    return dir == I3_C2S ? "client" : "server";
}

static const char *i3_json_kind_name(enum i3_json_kind kind)
{
    switch (kind) {
    case I3_JSON_PARAMS:         return "parameters";
    case I3_JSON_CLIENT_RESULTS: return "client results";
    case I3_JSON_SERVER_RESULTS: return "server results";
    }
    return "unknown";
}

/* Records a violation seen on <dir> and fills <ev> with it.  <fmt> is printed
 * into c->reason_buf.  Sets c->failed.  Returns nothing. */
static void i3_fail(struct i3_ctrl *c, enum i3_dir dir, struct i3_event *ev,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void i3_fail(struct i3_ctrl *c, enum i3_dir dir, struct i3_event *ev,
                    const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->reason_buf, sizeof(c->reason_buf), fmt, ap);
    va_end(ap);
    c->failed      = true;
    c->fail_reason = c->reason_buf;
    c->fail_dir    = dir;
    ev->kind       = I3_EV_ERROR;
    ev->dir        = dir;
    ev->reason     = c->fail_reason;
}

/* Returns true if the iperf3 at the receiving end of <dir> accepts state
 * byte <s> (it fails with IEMESSAGE on any other value). */
static bool i3_state_valid(enum i3_dir dir, int8_t s)
{
    if (dir == I3_C2S) {
        /* iperf_handle_message_server() */
        return s == I3_TEST_START || s == I3_TEST_END ||
               s == I3_IPERF_DONE || s == I3_CLIENT_TERMINATE;
    }
    /* iperf_handle_message_client() */
    switch (s) {
    case I3_PARAM_EXCHANGE: case I3_CREATE_STREAMS: case I3_TEST_START:
    case I3_TEST_RUNNING: case I3_EXCHANGE_RESULTS: case I3_DISPLAY_RESULTS:
    case I3_IPERF_DONE: case I3_SERVER_TERMINATE: case I3_ACCESS_DENIED:
    case I3_SERVER_ERROR:
        return true;
    default:
        return false;
    }
}

/* Returns true if <s> ends the session when sent on <dir> in place of a due
 * JSON block (see i3_ctrl_feed in the header). */
static bool i3_state_terminal(enum i3_dir dir, int8_t s)
{
    if (dir == I3_C2S)
        return s == I3_CLIENT_TERMINATE;
    return s == I3_SERVER_TERMINATE || s == I3_ACCESS_DENIED || s == I3_SERVER_ERROR;
}

/* Returns the cap that applies to a JSON block of <kind>. */
static uint32_t i3_json_cap(const struct i3_ctrl *c, enum i3_json_kind kind)
{
    return kind == I3_JSON_PARAMS ? c->params_max : c->results_max;
}

/* Returns the kind of the next JSON block <dir> owes.  c2s owes its
 * parameters first (if PARAM_EXCHANGE came and they have not), then its
 * results; s2c only ever owes its results. */
static enum i3_json_kind i3_next_json_kind(const struct i3_ctrl *c, enum i3_dir dir)
{
    if (dir == I3_S2C)
        return I3_JSON_SERVER_RESULTS;
    if (c->param_exchange_seen && !c->params_done)
        return I3_JSON_PARAMS;
    return I3_JSON_CLIENT_RESULTS;
}

/* Handles state byte <s> just consumed on <dir>.  Returns true when an event
 * is complete in <ev> (a state, or a violation), false when SERVER_ERROR
 * started and its codes must still be read.  May set c->failed and the
 * counts of JSON blocks owed by the c2s direction. */
static bool i3_on_state(struct i3_ctrl *c, enum i3_dir dir, int8_t s, struct i3_event *ev)
{
    struct i3_dirstate *d = &c->d[dir];

    if (!i3_state_valid(dir, s)) {
        if (strcmp(i3_state_name(s), "UNKNOWN") == 0)
            i3_fail(c, dir, ev, "unknown state byte %d (0x%02x) from the %s",
                    s, (uint8_t)s, i3_dir_peer(dir));
        else
            i3_fail(c, dir, ev, "state %s (%d) is not valid from the %s",
                    i3_state_name(s), s, i3_dir_peer(dir));
        return true;
    }

    if (dir == I3_S2C && s == I3_PARAM_EXCHANGE) {
        if (c->param_exchange_seen) {
            i3_fail(c, dir, ev, "PARAM_EXCHANGE sent twice by the server");
            return true;
        }
        c->param_exchange_seen = true;
        c->d[I3_C2S].json_expected++;
    } else if (dir == I3_S2C && s == I3_EXCHANGE_RESULTS) {
        if (c->exchange_results_seen) {
            i3_fail(c, dir, ev, "EXCHANGE_RESULTS sent twice by the server");
            return true;
        }
        c->exchange_results_seen = true;
        c->d[I3_C2S].json_expected++;
    } else if (s == I3_SERVER_ERROR) {
        d->phase   = I3_PH_SERR;
        d->hdr_got = 0;
        return false;
    }

    ev->kind  = I3_EV_STATE;
    ev->state = s;
    return true;
}

void i3_ctrl_init(struct i3_ctrl *c, uint32_t params_max, uint32_t results_max)
{
    memset(c, 0, sizeof(*c));
    c->params_max  = params_max  ? params_max  : I3_PARAMS_MAX_DEFAULT;
    c->results_max = results_max ? results_max : I3_RESULTS_MAX_DEFAULT;
    c->d[I3_C2S].phase = I3_PH_COOKIE;
    c->d[I3_S2C].phase = I3_PH_MSG;
}

void i3_ctrl_free(struct i3_ctrl *c)
{
    for (int i = 0; i < 2; i++) {
        free(c->d[i].buf);
        c->d[i].buf = NULL;
    }
}

/* Returns the error recorded earlier, in <ev>. */
static void i3_repeat_failure(const struct i3_ctrl *c, struct i3_event *ev)
{
    ev->kind   = I3_EV_ERROR;
    ev->dir    = c->fail_dir;
    ev->reason = c->fail_reason;
}

size_t i3_ctrl_feed(struct i3_ctrl *c, enum i3_dir dir, const uint8_t *in, size_t len,
                    struct i3_event *ev)
{
    struct i3_dirstate *d;
    size_t pos = 0;

    memset(ev, 0, sizeof(*ev));
    ev->dir = dir;
    if (c->failed) {
        i3_repeat_failure(c, ev);
        return 0;
    }
    if (dir != I3_C2S && dir != I3_S2C) {
        /* a caller bug, not a peer's violation: the parser stays usable */
        ev->kind   = I3_EV_ERROR;
        ev->reason = "invalid direction";
        return 0;
    }
    d = &c->d[dir];

    /* The body handed out by the previous event on this direction expires now. */
    if (d->buf != NULL && d->phase != I3_PH_JSON_BODY) {
        free(d->buf);
        d->buf = NULL;
    }

    while (pos < len) {
        switch (d->phase) {
        case I3_PH_COOKIE: {
            size_t n = I3_COOKIE_SIZE - d->cookie_got;

            if (n > len - pos)
                n = len - pos;
            memcpy(d->cookie + d->cookie_got, in + pos, n);
            d->cookie_got += (uint8_t)n;
            pos += n;
            if (d->cookie_got == I3_COOKIE_SIZE) {
                d->phase   = I3_PH_MSG;
                ev->kind   = I3_EV_COOKIE;
                ev->cookie = d->cookie;
                return pos;
            }
            break;
        }

        case I3_PH_MSG: {
            int8_t s = (int8_t)in[pos];

            if (d->json_expected > 0) {
                enum i3_json_kind kind = i3_next_json_kind(c, dir);

                /* A terminal state byte in place of a due block, when as the
                 * top byte of a length it could only exceed the cap. */
                if (!(i3_state_terminal(dir, s) &&
                      ((uint32_t)(uint8_t)s << 24) > i3_json_cap(c, kind))) {
                    d->json_kind = kind;
                    d->hdr_got   = 0;
                    d->phase     = I3_PH_JSON_LEN;
                    break;      /* the byte is read again as a length byte */
                }
            }
            pos++;
            if (i3_on_state(c, dir, s, ev))
                return pos;
            break;
        }

        case I3_PH_JSON_LEN: {
            uint32_t cap;

            d->hdr[d->hdr_got++] = in[pos++];
            if (d->hdr_got < I3_JSON_LEN_LEN)
                break;
            d->json_len = i3_be32(d->hdr);
            d->json_got = 0;
            cap = i3_json_cap(c, d->json_kind);
            if (d->json_len == 0) {
                i3_fail(c, dir, ev, "%s JSON length 0", i3_json_kind_name(d->json_kind));
                return pos;
            }
            if (d->json_len > cap) {
                i3_fail(c, dir, ev, "%s JSON length %u exceeds cap %u",
                        i3_json_kind_name(d->json_kind), d->json_len, cap);
                return pos;
            }
            d->json_keep = d->json_kind == I3_JSON_PARAMS;
            if (d->json_keep) {
                d->buf = malloc((size_t)d->json_len + 1);
                if (d->buf == NULL) {
                    i3_fail(c, dir, ev, "out of memory for %u bytes of %s JSON",
                            d->json_len, i3_json_kind_name(d->json_kind));
                    return pos;
                }
            }
            d->phase = I3_PH_JSON_BODY;
            break;
        }

        case I3_PH_JSON_BODY: {
            size_t n = d->json_len - d->json_got;

            if (n > len - pos)
                n = len - pos;
            if (d->json_keep)
                memcpy(d->buf + d->json_got, in + pos, n);
            d->json_got += (uint32_t)n;
            pos += n;
            if (d->json_got < d->json_len)
                break;

            d->phase = I3_PH_MSG;
            d->json_expected--;
            ev->kind      = I3_EV_JSON;
            ev->json_kind = d->json_kind;
            ev->json_len  = d->json_len;
            if (d->json_keep) {
                d->buf[d->json_len] = '\0';
                ev->json = d->buf;
            }
            if (d->json_kind == I3_JSON_PARAMS)
                c->params_done = true;
            else if (d->json_kind == I3_JSON_CLIENT_RESULTS)
                c->d[I3_S2C].json_expected++;
            return pos;
        }

        case I3_PH_SERR:
            d->hdr[d->hdr_got++] = in[pos++];
            if (d->hdr_got < I3_SERR_CODES_LEN)
                break;
            d->phase       = I3_PH_MSG;
            ev->kind       = I3_EV_SERVER_ERROR;
            ev->state      = I3_SERVER_ERROR;
            ev->err_code   = (int32_t)i3_be32(d->hdr);
            ev->err_errno  = (int32_t)i3_be32(d->hdr + 4);
            return pos;

        default:
            i3_fail(c, dir, ev, "internal error: phase %u", d->phase);
            return pos;
        }
    }

    ev->kind = I3_EV_NONE;
    return pos;
}

void i3_ctrl_eof(struct i3_ctrl *c, enum i3_dir dir, struct i3_event *ev)
{
    struct i3_dirstate *d;

    memset(ev, 0, sizeof(*ev));
    ev->dir = dir;
    if (c->failed) {
        i3_repeat_failure(c, ev);
        return;
    }
    if (dir != I3_C2S && dir != I3_S2C) {
        ev->kind   = I3_EV_ERROR;
        ev->reason = "invalid direction";
        return;
    }
    d = &c->d[dir];

    switch (d->phase) {
    case I3_PH_MSG:
        ev->kind = I3_EV_NONE;
        return;
    case I3_PH_COOKIE:
        if (d->cookie_got == 0) {
            ev->kind = I3_EV_NONE;     /* connected and closed: a probe */
            return;
        }
        i3_fail(c, dir, ev, "connection closed after %u of %u cookie bytes",
                d->cookie_got, I3_COOKIE_SIZE);
        return;
    case I3_PH_SERR:
        if (d->hdr_got == 4) {
            /* 3.2-3.20 authentication failure: i_errno only, then close */
            d->phase      = I3_PH_MSG;
            ev->kind      = I3_EV_SERVER_ERROR;
            ev->state     = I3_SERVER_ERROR;
            ev->err_code  = (int32_t)i3_be32(d->hdr);
            ev->err_errno = 0;
            return;
        }
        i3_fail(c, dir, ev, "connection closed after %u of %u SERVER_ERROR code bytes",
                d->hdr_got, I3_SERR_CODES_LEN);
        return;
    case I3_PH_JSON_LEN:
        i3_fail(c, dir, ev, "connection closed inside the length of the %s JSON",
                i3_json_kind_name(d->json_kind));
        return;
    case I3_PH_JSON_BODY:
        i3_fail(c, dir, ev, "connection closed after %u of %u bytes of the %s JSON",
                d->json_got, d->json_len, i3_json_kind_name(d->json_kind));
        return;
    default:
        i3_fail(c, dir, ev, "internal error: phase %u", d->phase);
        return;
    }
}

const char *i3_state_name(int8_t state)
{
    switch (state) {
    case I3_TEST_START:       return "TEST_START";
    case I3_TEST_RUNNING:     return "TEST_RUNNING";
    case I3_TEST_END:         return "TEST_END";
    case I3_PARAM_EXCHANGE:   return "PARAM_EXCHANGE";
    case I3_CREATE_STREAMS:   return "CREATE_STREAMS";
    case I3_SERVER_TERMINATE: return "SERVER_TERMINATE";
    case I3_CLIENT_TERMINATE: return "CLIENT_TERMINATE";
    case I3_EXCHANGE_RESULTS: return "EXCHANGE_RESULTS";
    case I3_DISPLAY_RESULTS:  return "DISPLAY_RESULTS";
    case I3_IPERF_DONE:       return "IPERF_DONE";
    case I3_ACCESS_DENIED:    return "ACCESS_DENIED";
    case I3_SERVER_ERROR:     return "SERVER_ERROR";
    default:                  return "UNKNOWN";
    }
}

/*
 * Parameters.
 *
 * Keys are looked up with cJSON_GetObjectItem(), which is case-insensitive,
 * as iperf3's get_parameters() does: the server honours "Reverse" too.  The
 * text is cut at its first NUL, as iperf3 parses a NUL-terminated copy, and
 * cJSON ignores whatever follows the first complete value, as in iperf3.
 *
 * Booleans: clients send JSON true (tcp, udp, sctp, reverse, bidirectional,
 * nodelay) or the number 1 (udp_counters_64bit).  Both spellings are taken
 * for every flag here; false, 0 and null are false.  Servers disagree on the
 * odd cases: up to 3.17 the mere presence of a key sets the flag (even
 * "reverse":false), 3.18+ honours only the type it expects.
 */

/* Numbers a relay cares about, with their field and the text when invalid. */
struct i3_num_key {
    const char *key;     /* parameter name on the wire */
    size_t      off;     /* offset of the int64_t in struct i3_params */
    const char *why;     /* static text when the value is not acceptable */
};

#define I3_NUM_KEY(k, f) \
    { k, offsetof(struct i3_params, f), "parameter \"" k "\" is not a non-negative integer" }

static const struct i3_num_key i3_num_keys[] = {
    I3_NUM_KEY("len", len),
    I3_NUM_KEY("time", time),
    I3_NUM_KEY("num", bytes),
    I3_NUM_KEY("blockcount", blockcount),
    I3_NUM_KEY("omit", omit),
    I3_NUM_KEY("window", window),
    I3_NUM_KEY("MSS", mss),
};

/* Reads integer <key> of <obj> into *out (unchanged when absent).  Returns 0,
 * or -1 when it is not a JSON number, not integral, negative or beyond
 * int64. */
static int i3_get_int(const cJSON *obj, const char *key, int64_t *out)
{
    const cJSON *it = cJSON_GetObjectItem(obj, key);
    double v;

    if (it == NULL)
        return 0;
    if (!cJSON_IsNumber(it))
        return -1;
    v = it->valuedouble;
    /* also rejects NaN and infinities: every comparison with them is false */
    if (!(v >= 0.0 && v < 9223372036854775808.0))
        return -1;
    if ((double)(int64_t)v != v)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Reads flag <key> of <obj> into *out (false when absent).  Returns 0, or -1
 * when it is neither a boolean, a number nor null. */
/* Reads flag <key> of <obj> into *out as <rule> says; *misread is set when
 * the lenient reading (true or a nonzero number) would differ.  <number>: a
 * 3.18+ server expects this flag as a number (any value sets it), not true.
 * Returns 0, or -1 when the value is of no type a flag can have. */
static int i3_get_bool(const cJSON *obj, const char *key, bool number, enum i3_flag_rule rule,
                       bool *out, bool *misread)
{
    const cJSON *it = cJSON_GetObjectItem(obj, key);
    bool lenient;

    *out = false;
    *misread = false;
    if (it == NULL)
        return 0;
    if (cJSON_IsTrue(it))
        lenient = true;
    else if (cJSON_IsFalse(it) || cJSON_IsNull(it))
        lenient = false;
    else if (cJSON_IsNumber(it))
        lenient = it->valuedouble != 0.0;
    else
        return -1;
    switch (rule) {
    case I3_FLAGS_LENIENT:  *out = lenient; break;
    case I3_FLAGS_PRESENCE: *out = true; break;          /* up to 3.17: the key alone */
    case I3_FLAGS_TYPED:    /* 3.18+: the expected JSON type alone */
        *out = number ? cJSON_IsNumber(it) : cJSON_IsTrue(it);
        break;
    }
    *misread = *out != lenient;
    return 0;
}

int i3_params_parse(const char *json, size_t len, struct i3_params *out, const char **why)
{
    return i3_params_parse_as(json, len, I3_FLAGS_LENIENT, out, why);
}

int i3_params_parse_as(const char *json, size_t len, enum i3_flag_rule rule,
                       struct i3_params *out, const char **why)
{
    /* number: get_parameters (3.18+) wants a JSON number for it, not true */
    static const struct { const char *key; bool number; const char *why; } bool_whys[] = {
        { "tcp",                false, "parameter \"tcp\" is not a boolean" },
        { "udp",                false, "parameter \"udp\" is not a boolean" },
        { "sctp",               false, "parameter \"sctp\" is not a boolean" },
        { "reverse",            false, "parameter \"reverse\" is not a boolean" },
        { "bidirectional",      false, "parameter \"bidirectional\" is not a boolean" },
        { "nodelay",            false, "parameter \"nodelay\" is not a boolean" },
        { "udp_counters_64bit", true,  "parameter \"udp_counters_64bit\" is not a boolean" },
        { "mptcp",              false, "parameter \"mptcp\" is not a boolean" },
    };
    bool flags[sizeof(bool_whys) / sizeof(bool_whys[0])];
    const char *dummy;
    cJSON *root;
    const cJSON *it;
    int rc = -1;

    if (why == NULL)
        why = &dummy;
    *why = NULL;
    memset(out, 0, sizeof(*out));
    out->proto    = I3_PROTO_TCP;
    out->parallel = 1;

    if (json == NULL || len == 0) {
        *why = "parameters are empty";
        return -1;
    }
    root = cJSON_ParseWithLength(json, strnlen(json, len));
    if (root == NULL) {
        *why = "parameters are not valid JSON";
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        *why = "parameters are not a JSON object";
        goto out;
    }

    for (size_t i = 0; i < sizeof(bool_whys) / sizeof(bool_whys[0]); i++) {
        bool misread;

        if (i3_get_bool(root, bool_whys[i].key, bool_whys[i].number, rule, &flags[i],
                        &misread) < 0) {
            *why = bool_whys[i].why;
            goto out;
        }
        if (misread && out->misread_flag[0] == '\0')
            snprintf(out->misread_flag, sizeof(out->misread_flag), "%s", bool_whys[i].key);
    }
    /* get_parameters() applies tcp, then udp, then sctp: the last one wins */
    if (flags[2])
        out->proto = I3_PROTO_SCTP;
    else if (flags[1])
        out->proto = I3_PROTO_UDP;
    out->reverse            = flags[3];
    out->bidir              = flags[4];
    out->nodelay            = flags[5];
    out->udp_counters_64bit = flags[6];
    out->mptcp              = flags[7];

    for (size_t i = 0; i < sizeof(i3_num_keys) / sizeof(i3_num_keys[0]); i++) {
        int64_t *f = (int64_t *)((char *)out + i3_num_keys[i].off);

        if (i3_get_int(root, i3_num_keys[i].key, f) < 0) {
            *why = i3_num_keys[i].why;
            goto out;
        }
    }

    it = cJSON_GetObjectItem(root, "parallel");
    if (it != NULL) {
        double v;

        if (!cJSON_IsNumber(it)) {
            *why = "parameter \"parallel\" is not a number";
            goto out;
        }
        v = it->valuedouble;
        if (!(v >= 1.0 && v <= (double)I3_MAX_PARALLEL) || (double)(int)v != v) {
            *why = "parameter \"parallel\" is outside 1.." I3_STR(I3_MAX_PARALLEL);
            goto out;
        }
        out->parallel = (int)v;
    }

    it = cJSON_GetObjectItem(root, "client_version");
    if (it != NULL) {
        if (!cJSON_IsString(it) || it->valuestring == NULL) {
            *why = "parameter \"client_version\" is not a string";
            goto out;
        }
        snprintf(out->client_version, sizeof(out->client_version), "%s", it->valuestring);
    }
    rc = 0;

out:
    cJSON_Delete(root);
    if (rc < 0) {
        /* leave no half-filled result behind */
        memset(out, 0, sizeof(*out));
        out->parallel = 1;
    }
    return rc;
}

int i3_params_stream_count(const struct i3_params *p)
{
    return p->bidir ? 2 * p->parallel : p->parallel;
}

const char *i3_params_mode(const struct i3_params *p)
{
    /* [proto][0 forward, 1 reverse, 2 bidir]; bidir wins over reverse as in
     * get_parameters(), which applies "reverse" then "bidirectional" */
    static const char *const names[3][3] = {
        { "TCP",  "TCP reverse",  "TCP bidir"  },
        { "UDP",  "UDP reverse",  "UDP bidir"  },
        { "SCTP", "SCTP reverse", "SCTP bidir" },
    };
    unsigned proto = (unsigned)p->proto;
    int dirn = p->bidir ? 2 : p->reverse ? 1 : 0;

    if (proto > I3_PROTO_SCTP)
        return "unknown";
    return names[proto][dirn];
}
