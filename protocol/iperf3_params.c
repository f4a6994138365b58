/* The client's parameters JSON of an iperf3 test: what a relay needs of it
 * (protocol/iperf3_params.h).  Pure: bytes in, struct out. */
#include "protocol/iperf3_params.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define I3_STR_(x) #x
#define I3_STR(x)  I3_STR_(x)

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
