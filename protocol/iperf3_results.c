/*
 * iperf3 results JSON: stream entries, id rewrite, byte-count pairing (see
 * iperf3_results.h and docs/results-pairing.md).
 *
 * The text is read twice.  A strict scanner of our own walks it once,
 * checks the JSON grammar, bounds the nesting and records where each stream
 * entry's "id" and "bytes" values lie (byte offsets).  cJSON, the parser
 * iperf3 itself uses, then parses it too, and both readings must agree on
 * every entry's id and byte count: the ids we would rewrite are exactly the
 * ids iperf3 reads.
 *
 * The rewrite replaces the digits of the id values in place and copies
 * every other byte.  Reprinting with cJSON is not safe: iperf3 prints
 * integers through its own cJSON as unsigned 64-bit ("retransmits":-1 goes
 * out as 18446744073709551615) and Debian's libcjson would send that back as
 * 1.8446744073709552e+19; byte counts above 2^53 would be rounded.
 */
#include "protocol/iperf3_results.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Byte range of one token in the text. */
struct i3_span {
    size_t off;             /* first byte of the token */
    size_t len;             /* its length; 0: not seen */
};

/* What the scanner keeps of one stream entry. */
struct i3_rent {
    struct i3_span id_tok;  /* the "id" value (digits only) */
    struct i3_span by_tok;  /* the "bytes" value */
    int64_t  id;            /* value of id_tok */
    uint64_t bytes;         /* value of by_tok, truncated when fractional */
    double   bytes_d;       /* value of by_tok as strtod reads it (as cJSON does) */
    int8_t   sender;        /* "sender": -1 absent, 0 false, 1 true */
};

/* Scanner state over one document. */
struct i3_scan {
    const char *s;          /* the text (not NUL-terminated) */
    size_t      len;        /* its length */
    size_t      pos;        /* next byte to read */
    int         depth;      /* arrays and objects open at pos */
    bool        streams_seen;  /* the top-level "streams" key was met */
    int         n;          /* entries recorded in ent[] */
    struct i3_rent ent[I3_RESULTS_MAX_STREAMS];  /* the stream entries, in order */
    char       *why;        /* caller's reason buffer, or NULL */
    size_t      whylen;     /* its size */
};

/* Writes a reason into why[whylen] (when given).  Returns -1. */
__attribute__((format(printf, 3, 4)))
static int say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || whylen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Scanner failure at the current position.  Returns -1. */
static int fail_at(struct i3_scan *sc, const char *what)
{
    return say(sc->why, sc->whylen, "results JSON: %s at byte %zu", what, sc->pos);
}

/* ---- grammar ---------------------------------------------------------- */

static void skip_ws(struct i3_scan *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->s[sc->pos];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        sc->pos++;
    }
}

/* Consumes byte c (after white space).  Returns 0, or -1 when it is not next. */
static int expect(struct i3_scan *sc, char c)
{
    skip_ws(sc);
    if (sc->pos >= sc->len || sc->s[sc->pos] != c)
        return -1;
    sc->pos++;
    return 0;
}

/* Opens an array or object.  Returns 0, or -1 beyond I3_RESULTS_MAX_DEPTH. */
static int enter(struct i3_scan *sc)
{
    if (sc->depth >= I3_RESULTS_MAX_DEPTH)
        return say(sc->why, sc->whylen, "results JSON: nested deeper than %d at byte %zu",
                   I3_RESULTS_MAX_DEPTH, sc->pos);
    sc->depth++;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string at pos (the opening quote).  *content gets the bytes between the
 * quotes.  Escapes must be JSON's; raw control characters are refused.
 * Returns 0 or -1. */
static int scan_string(struct i3_scan *sc, struct i3_span *content)
{
    if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
        return fail_at(sc, "string expected");
    sc->pos++;
    content->off = sc->pos;
    while (sc->pos < sc->len) {
        unsigned char c = (unsigned char)sc->s[sc->pos];

        if (c == '"') {
            content->len = sc->pos - content->off;
            sc->pos++;
            return 0;
        }
        if (c < 0x20)
            return fail_at(sc, "control character in a string");
        if (c == '\\') {
            if (sc->pos + 1 >= sc->len)
                break;
            c = (unsigned char)sc->s[sc->pos + 1];
            if (c == 'u') {
                if (sc->pos + 6 > sc->len)
                    break;
                for (size_t k = 2; k < 6; k++)
                    if (hexval(sc->s[sc->pos + k]) < 0)
                        return fail_at(sc, "bad \\u escape");
                sc->pos += 6;
                continue;
            }
            if (strchr("\"\\/bfnrt", (int)c) == NULL || c == '\0')
                return fail_at(sc, "bad escape");
            sc->pos += 2;
            continue;
        }
        sc->pos++;
    }
    return fail_at(sc, "unterminated string");
}

/* Whether the string content at sp, unescaped, equals lower (ASCII, lower
 * case) ignoring case, as cJSON_GetObjectItem compares keys.  A key holding
 * an escaped NUL is compared up to it, as cJSON's C strings end there. */
static bool key_is(const struct i3_scan *sc, struct i3_span sp, const char *lower)
{
    size_t i = sp.off, end = sp.off + sp.len;
    size_t k = 0;

    while (i < end) {
        int c = (unsigned char)sc->s[i];

        if (c == '\\') {
            char e = sc->s[i + 1];

            if (e == 'u') {
                c = (hexval(sc->s[i + 2]) << 12) | (hexval(sc->s[i + 3]) << 8) |
                    (hexval(sc->s[i + 4]) << 4) | hexval(sc->s[i + 5]);
                i += 6;
                if (c == 0)
                    break;
                if (c >= 0x80)
                    return false;
            } else {
                c = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' :
                    e == 'r' ? '\r' : e == 't' ? '\t' : e;
                i += 2;
            }
        } else {
            i++;
        }
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (lower[k] == '\0' || c != lower[k])
            return false;
        k++;
    }
    return lower[k] == '\0';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* iperf3's cJSON (1.7.15) reads at most 63 bytes of a number and fails on
 * the rest; Debian's libcjson reads longer ones: refuse them here. */
#define I3_NUMBER_MAX 63

/* A number at pos, JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * *tok gets its bytes.  Returns 0 or -1. */
static int scan_number(struct i3_scan *sc, struct i3_span *tok)
{
    const char *s = sc->s;
    size_t p = sc->pos, n = sc->len;

    tok->off = p;
    if (p < n && s[p] == '-')
        p++;
    if (p >= n || !is_digit(s[p]))
        return fail_at(sc, "bad number");
    if (s[p] == '0')
        p++;
    else
        while (p < n && is_digit(s[p]))
            p++;
    if (p < n && s[p] == '.') {
        p++;
        if (p >= n || !is_digit(s[p]))
            return fail_at(sc, "bad number");
        while (p < n && is_digit(s[p]))
            p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-'))
            p++;
        if (p >= n || !is_digit(s[p]))
            return fail_at(sc, "bad number");
        while (p < n && is_digit(s[p]))
            p++;
    }
    tok->len = p - tok->off;
    if (tok->len > I3_NUMBER_MAX)
        return fail_at(sc, "number longer than 63 bytes");
    sc->pos = p;
    return 0;
}

/* Literal word (true, false, null) at pos.  Returns 0 or -1. */
static int scan_word(struct i3_scan *sc, const char *w)
{
    size_t k = strlen(w);

    if (sc->len - sc->pos < k || memcmp(sc->s + sc->pos, w, k) != 0)
        return fail_at(sc, "bad literal");
    sc->pos += k;
    return 0;
}

static int scan_value(struct i3_scan *sc);

/* Members of an object whose '{' was consumed, each value by scan_value.
 * Returns 0 or -1. */
static int scan_object_rest(struct i3_scan *sc)
{
    if (expect(sc, '}') == 0)
        return 0;
    for (;;) {
        struct i3_span key;

        skip_ws(sc);
        if (scan_string(sc, &key) < 0)
            return -1;
        if (expect(sc, ':') < 0)
            return fail_at(sc, "':' expected");
        if (scan_value(sc) < 0)
            return -1;
        if (expect(sc, '}') == 0)
            return 0;
        if (expect(sc, ',') < 0)
            return fail_at(sc, "',' or '}' expected");
    }
}

/* Any JSON value at pos (after white space).  Returns 0 or -1. */
static int scan_value(struct i3_scan *sc)
{
    struct i3_span tok;

    skip_ws(sc);
    if (sc->pos >= sc->len)
        return fail_at(sc, "value expected");
    switch (sc->s[sc->pos]) {
    case '"':
        return scan_string(sc, &tok);
    case 't':
        return scan_word(sc, "true");
    case 'f':
        return scan_word(sc, "false");
    case 'n':
        return scan_word(sc, "null");
    case '{':
        if (enter(sc) < 0)
            return -1;
        sc->pos++;
        if (scan_object_rest(sc) < 0)
            return -1;
        sc->depth--;
        return 0;
    case '[':
        if (enter(sc) < 0)
            return -1;
        sc->pos++;
        if (expect(sc, ']') != 0) {
            for (;;) {
                if (scan_value(sc) < 0)
                    return -1;
                if (expect(sc, ']') == 0)
                    break;
                if (expect(sc, ',') < 0)
                    return fail_at(sc, "',' or ']' expected");
            }
        }
        sc->depth--;
        return 0;
    default:
        return scan_number(sc, &tok);
    }
}

/* ---- results structure ------------------------------------------------ */

/* One stream entry at pos: an object; records its id, bytes and sender.
 * Returns 0 or -1. */
static int scan_entry(struct i3_scan *sc, struct i3_rent *e)
{
    int k = sc->n;

    e->sender = -1;
    skip_ws(sc);
    if (sc->pos >= sc->len || sc->s[sc->pos] != '{')
        return say(sc->why, sc->whylen, "results JSON: stream entry %d is not an object", k);
    if (enter(sc) < 0)
        return -1;
    sc->pos++;
    if (expect(sc, '}') != 0) {
        for (;;) {
            struct i3_span key;

            skip_ws(sc);
            if (scan_string(sc, &key) < 0)
                return -1;
            if (expect(sc, ':') < 0)
                return fail_at(sc, "':' expected");
            skip_ws(sc);
            if (key_is(sc, key, "id") || key_is(sc, key, "bytes")) {
                bool is_id = key_is(sc, key, "id");
                struct i3_span *t = is_id ? &e->id_tok : &e->by_tok;

                if (t->len != 0)
                    return say(sc->why, sc->whylen,
                               "results JSON: stream entry %d has two \"%s\" keys", k,
                               is_id ? "id" : "bytes");
                if (sc->pos >= sc->len ||
                    (sc->s[sc->pos] != '-' && !is_digit(sc->s[sc->pos])))
                    return say(sc->why, sc->whylen,
                               "results JSON: stream entry %d: \"%s\" is not a number", k,
                               is_id ? "id" : "bytes");
                if (scan_number(sc, t) < 0)
                    return -1;
            } else if (key_is(sc, key, "sender")) {
                if (e->sender != -1)
                    return say(sc->why, sc->whylen,
                               "results JSON: stream entry %d has two \"sender\" keys", k);
                if (sc->pos < sc->len && sc->s[sc->pos] == 't' && scan_word(sc, "true") == 0)
                    e->sender = 1;
                else if (sc->pos < sc->len && sc->s[sc->pos] == 'f' &&
                         scan_word(sc, "false") == 0)
                    e->sender = 0;
                else
                    return say(sc->why, sc->whylen,
                               "results JSON: stream entry %d: \"sender\" is not a boolean", k);
            } else if (scan_value(sc) < 0) {
                return -1;
            }
            if (expect(sc, '}') == 0)
                break;
            if (expect(sc, ',') < 0)
                return fail_at(sc, "',' or '}' expected");
        }
    }
    sc->depth--;
    if (e->id_tok.len == 0)
        return say(sc->why, sc->whylen, "results JSON: stream entry %d has no \"id\"", k);
    if (e->by_tok.len == 0)
        return say(sc->why, sc->whylen, "results JSON: stream entry %d has no \"bytes\"", k);
    return 0;
}

/* The "streams" array at pos.  Returns 0 or -1. */
static int scan_streams(struct i3_scan *sc)
{
    if (sc->streams_seen)
        return say(sc->why, sc->whylen, "results JSON: two \"streams\" keys");
    sc->streams_seen = true;
    skip_ws(sc);
    if (sc->pos >= sc->len || sc->s[sc->pos] != '[')
        return say(sc->why, sc->whylen, "results JSON: \"streams\" is not an array");
    if (enter(sc) < 0)
        return -1;
    sc->pos++;
    if (expect(sc, ']') != 0) {
        for (;;) {
            if (sc->n >= I3_RESULTS_MAX_STREAMS)
                return say(sc->why, sc->whylen,
                           "results JSON: more than %d stream entries", I3_RESULTS_MAX_STREAMS);
            memset(&sc->ent[sc->n], 0, sizeof(sc->ent[sc->n]));
            if (scan_entry(sc, &sc->ent[sc->n]) < 0)
                return -1;
            sc->n++;
            if (expect(sc, ']') == 0)
                break;
            if (expect(sc, ',') < 0)
                return fail_at(sc, "',' or ']' expected");
        }
    }
    sc->depth--;
    return 0;
}

/* The whole document: one object, then only white space.  Returns 0 or -1. */
static int scan_doc(struct i3_scan *sc)
{
    skip_ws(sc);
    if (sc->pos >= sc->len || sc->s[sc->pos] != '{')
        return say(sc->why, sc->whylen, "results JSON: not a JSON object");
    if (enter(sc) < 0)
        return -1;
    sc->pos++;
    if (expect(sc, '}') != 0) {
        for (;;) {
            struct i3_span key;

            skip_ws(sc);
            if (scan_string(sc, &key) < 0)
                return -1;
            if (expect(sc, ':') < 0)
                return fail_at(sc, "':' expected");
            if (key_is(sc, key, "streams")) {
                if (scan_streams(sc) < 0)
                    return -1;
            } else if (scan_value(sc) < 0) {
                return -1;
            }
            if (expect(sc, '}') == 0)
                break;
            if (expect(sc, ',') < 0)
                return fail_at(sc, "',' or '}' expected");
        }
    }
    sc->depth--;
    skip_ws(sc);
    if (sc->pos != sc->len)
        return fail_at(sc, "bytes after the object");
    if (!sc->streams_seen)
        return say(sc->why, sc->whylen, "results JSON: no \"streams\" array");
    return 0;
}

/* ---- values ------------------------------------------------------------ */

/* Value of entry k's id token: an integer 0..INT32_MAX.  Returns 0 or -1. */
static int id_value(struct i3_scan *sc, int k)
{
    struct i3_rent *e = &sc->ent[k];
    const char *t = sc->s + e->id_tok.off;
    int64_t v = 0;

    for (size_t i = 0; i < e->id_tok.len; i++) {
        if (!is_digit(t[i]) || v > INT32_MAX)
            return say(sc->why, sc->whylen,
                       "results JSON: stream entry %d: \"id\" %.*s is not an integer 0..%d", k,
                       (int)(e->id_tok.len < 24 ? e->id_tok.len : 24), t, INT32_MAX);
        v = v * 10 + (t[i] - '0');
    }
    if (v > INT32_MAX)
        return say(sc->why, sc->whylen,
                   "results JSON: stream entry %d: \"id\" %.*s is not an integer 0..%d", k,
                   (int)(e->id_tok.len < 24 ? e->id_tok.len : 24), t, INT32_MAX);
    e->id = v;
    return 0;
}

/* Value of entry k's bytes token: a number 0..2^64-1.  Returns 0 or -1. */
static int bytes_value(struct i3_scan *sc, int k)
{
    struct i3_rent *e = &sc->ent[k];
    const char *t = sc->s + e->by_tok.off;
    size_t n = e->by_tok.len;
    bool integer = true;
    char buf[I3_NUMBER_MAX + 1];

    if (t[0] == '-')
        return say(sc->why, sc->whylen, "results JSON: stream entry %d: \"bytes\" is negative", k);
    for (size_t i = 0; i < n; i++)
        integer = integer && is_digit(t[i]);
    if (integer) {
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++) {
            unsigned d = (unsigned)(t[i] - '0');

            if (v > (UINT64_MAX - d) / 10)
                return say(sc->why, sc->whylen,
                           "results JSON: stream entry %d: \"bytes\" beyond 2^64", k);
            v = v * 10 + d;
        }
        e->bytes = v;
        e->bytes_d = (double)v;
        return 0;
    }
    /* fraction or exponent: read it as cJSON does (strtod); n <= I3_NUMBER_MAX */
    memcpy(buf, t, n);
    buf[n] = '\0';
    e->bytes_d = strtod(buf, NULL);
    if (!(e->bytes_d < 18446744073709551616.0))
        return say(sc->why, sc->whylen, "results JSON: stream entry %d: \"bytes\" beyond 2^64", k);
    e->bytes = (uint64_t)e->bytes_d;
    return 0;
}

/* cJSON's reading of the same text must give the same entries, ids, byte
 * counts and sender flags (cJSON_GetObjectItem, as iperf3's get_results).
 * Returns 0 or -1. */
static int cjson_agrees(struct i3_scan *sc)
{
    cJSON *root = cJSON_ParseWithLength(sc->s, sc->len);
    const cJSON *streams;
    int rc = -1;

    if (root == NULL)
        return say(sc->why, sc->whylen, "results JSON: cJSON cannot parse it");
    streams = cJSON_GetObjectItem(root, "streams");
    if (!cJSON_IsArray(streams) || cJSON_GetArraySize(streams) != sc->n) {
        say(sc->why, sc->whylen, "results JSON: cJSON reads another \"streams\" array");
        goto out;
    }
    for (int k = 0; k < sc->n; k++) {
        const cJSON *e = cJSON_GetArrayItem(streams, k);
        const cJSON *id = cJSON_GetObjectItem(e, "id");
        const cJSON *by = cJSON_GetObjectItem(e, "bytes");
        const cJSON *snd = cJSON_GetObjectItem(e, "sender");
        int8_t sender = snd == NULL ? -1 : cJSON_IsTrue(snd) ? 1 : cJSON_IsFalse(snd) ? 0 : 2;

        if (!cJSON_IsNumber(id) || id->valuedouble != (double)sc->ent[k].id ||
            !cJSON_IsNumber(by) || by->valuedouble != sc->ent[k].bytes_d ||
            sender != sc->ent[k].sender) {
            say(sc->why, sc->whylen, "results JSON: cJSON reads stream entry %d otherwise", k);
            goto out;
        }
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* Scans json[0..len-1] into a new scanner (freed by the caller).  Returns it,
 * or NULL with the reason in why. */
static struct i3_scan *scan_all(const char *json, size_t len, char *why, size_t whylen)
{
    struct i3_scan *sc;

    if (json == NULL || len == 0) {
        say(why, whylen, "results JSON: empty");
        return NULL;
    }
    if (memchr(json, '\0', len) != NULL) {
        say(why, whylen, "results JSON: NUL byte at %zu",
            (size_t)((const char *)memchr(json, '\0', len) - json));
        return NULL;
    }
    sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        say(why, whylen, "results JSON: out of memory");
        return NULL;
    }
    sc->s = json;
    sc->len = len;
    sc->why = why;
    sc->whylen = whylen;
    if (scan_doc(sc) < 0)
        goto bad;
    for (int k = 0; k < sc->n; k++) {
        if (id_value(sc, k) < 0 || bytes_value(sc, k) < 0)
            goto bad;
        for (int j = 0; j < k; j++)
            if (sc->ent[j].id == sc->ent[k].id) {
                say(why, whylen, "results JSON: stream entries %d and %d both have id %" PRId64,
                    j, k, sc->ent[k].id);
                goto bad;
            }
    }
    if (cjson_agrees(sc) < 0)
        goto bad;
    return sc;
bad:
    free(sc);
    return NULL;
}

/* ---- public ------------------------------------------------------------ */

int i3_results_streams(const char *json, size_t len, struct i3_rstream *out, int max,
                       char *why, size_t whylen)
{
    struct i3_scan *sc;
    int n;

    if (max < 0 || (out == NULL && max > 0))
        return say(why, whylen, "results JSON: bad arguments");
    sc = scan_all(json, len, why, whylen);
    if (sc == NULL)
        return -1;
    n = sc->n;
    if (n > max) {
        free(sc);
        return say(why, whylen, "results JSON: %d stream entries, room for %d", n, max);
    }
    for (int k = 0; k < n; k++) {
        out[k].id         = sc->ent[k].id;
        out[k].bytes      = sc->ent[k].bytes;
        out[k].has_sender = sc->ent[k].sender >= 0;
        out[k].sender     = sc->ent[k].sender == 1;
    }
    free(sc);
    return n;
}

/* Index of id v in a[0..n-1], or -1. */
static int find_id(const int64_t *a, int n, int64_t v)
{
    for (int k = 0; k < n; k++)
        if (a[k] == v)
            return k;
    return -1;
}

/* The mapping must be a permutation of exactly the ids of sc.  Returns 0 or -1. */
static int check_mapping(const struct i3_scan *sc, const int64_t *from, const int64_t *to,
                         int n, char *why, size_t whylen)
{
    if (n != sc->n)
        return say(why, whylen, "id rewrite: mapping has %d ids, document %d stream entries",
                   n, sc->n);
    for (int k = 0; k < n; k++) {
        bool present = false;

        if (find_id(from, k, from[k]) >= 0)
            return say(why, whylen, "id rewrite: id %" PRId64 " mapped twice", from[k]);
        if (find_id(to, k, to[k]) >= 0)
            return say(why, whylen, "id rewrite: two ids mapped to %" PRId64, to[k]);
        for (int j = 0; j < sc->n; j++)
            present = present || sc->ent[j].id == from[k];
        if (!present)
            return say(why, whylen, "id rewrite: id %" PRId64 " is not in the document",
                       from[k]);
        if (find_id(from, n, to[k]) < 0)
            return say(why, whylen, "id rewrite: new id %" PRId64 " is not one of the ids "
                       "present (not a permutation)", to[k]);
    }
    return 0;
}

int i3_results_rewrite_ids(const char *json, size_t len, const int64_t *from,
                           const int64_t *to, int n, char **out, size_t *outlen,
                           char *why, size_t whylen)
{
    char digits[I3_RESULTS_MAX_STREAMS][24];
    struct i3_scan *sc;
    size_t total, o = 0, at = 0;

    if (out == NULL || outlen == NULL)
        return say(why, whylen, "id rewrite: bad arguments");
    *out = NULL;
    *outlen = 0;
    if (n < 0 || n > I3_RESULTS_MAX_STREAMS || (n > 0 && (from == NULL || to == NULL)))
        return say(why, whylen, "id rewrite: bad mapping (%d ids)", n);
    sc = scan_all(json, len, why, whylen);
    if (sc == NULL)
        return -1;
    if (check_mapping(sc, from, to, n, why, whylen) < 0) {
        free(sc);
        return -1;
    }
    total = len;
    for (int k = 0; k < sc->n; k++) {
        int64_t nid = to[find_id(from, n, sc->ent[k].id)];

        snprintf(digits[k], sizeof(digits[k]), "%" PRId64, nid);
        total = total - sc->ent[k].id_tok.len + strlen(digits[k]);
    }
    *out = malloc(total + 1);
    if (*out == NULL) {
        free(sc);
        return say(why, whylen, "id rewrite: out of memory (%zu bytes)", total + 1);
    }
    /* id tokens lie in increasing order: entries are listed one after another */
    for (int k = 0; k < sc->n; k++) {
        const struct i3_span *t = &sc->ent[k].id_tok;
        size_t dl = strlen(digits[k]);

        memcpy(*out + o, json + at, t->off - at);
        o += t->off - at;
        memcpy(*out + o, digits[k], dl);
        o += dl;
        at = t->off + t->len;
    }
    memcpy(*out + o, json + at, len - at);
    o += len - at;
    (*out)[o] = '\0';
    *outlen = o;
    free(sc);
    return 0;
}

static uint64_t dist(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

int i3_match_by_bytes(const uint64_t *entry_bytes, const uint64_t *conn_bytes, int n,
                      int *map, char *why, size_t whylen)
{
    uint64_t worst = 0;

    if (n < 0 || n > I3_RESULTS_MAX_STREAMS)
        return say(why, whylen, "pairing: %d streams (at most %d)", n, I3_RESULTS_MAX_STREAMS);
    if (n > 0 && (entry_bytes == NULL || conn_bytes == NULL || map == NULL))
        return say(why, whylen, "pairing: bad arguments");
    if (n == 1) {
        map[0] = 0;
        return 0;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            if (entry_bytes[i] == entry_bytes[j])
                return say(why, whylen, "pairing: two stream entries with %" PRIu64
                           " bytes each", entry_bytes[i]);
            if (conn_bytes[i] == conn_bytes[j])
                return say(why, whylen, "pairing: two connections with %" PRIu64
                           " bytes each", conn_bytes[i]);
        }
    /* each entry to its nearest connection (the lowest index on a tie, which
     * the margin test below then refuses) */
    for (int i = 0; i < n; i++) {
        map[i] = 0;
        for (int j = 1; j < n; j++)
            if (dist(entry_bytes[i], conn_bytes[j]) < dist(entry_bytes[i], conn_bytes[map[i]]))
                map[i] = j;
        for (int k = 0; k < i; k++)
            if (map[k] == map[i])
                return say(why, whylen, "pairing: connection %d (%" PRIu64 " bytes) is the "
                           "nearest of entries %d (%" PRIu64 ") and %d (%" PRIu64 ")", map[i],
                           conn_bytes[map[i]], k, entry_bytes[k], i, entry_bytes[i]);
        if (dist(entry_bytes[i], conn_bytes[map[i]]) > worst)
            worst = dist(entry_bytes[i], conn_bytes[map[i]]);
    }
    if (worst > UINT64_MAX / I3_MATCH_MARGIN)
        return say(why, whylen, "pairing: counts disagree by %" PRIu64 " bytes", worst);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (j != map[i] && dist(entry_bytes[i], conn_bytes[j]) <= I3_MATCH_MARGIN * worst)
                return say(why, whylen, "pairing: entry %d (%" PRIu64 " bytes) is %" PRIu64
                           " from connection %d, within %d x %" PRIu64 " (the worst chosen "
                           "pair): not certain", i, entry_bytes[i],
                           dist(entry_bytes[i], conn_bytes[j]), j, I3_MATCH_MARGIN, worst);
    return 0;
}
