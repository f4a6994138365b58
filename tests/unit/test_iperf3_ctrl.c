/*
 * Unit tests of the iperf3 control channel parser (protocol/iperf3_ctrl.c).
 *
 * The session bytes below were captured on Debian 12 through a logging TCP
 * relay between `iperf3 -s` and `iperf3 -c 127.0.0.1 --bidir -P 2 -t 1`
 * (iperf 3.12): c2s carried cookie, params, TEST_END, results, IPERF_DONE;
 * s2c carried 09 0a 01 02 0d, results, 0e.  The SERVER_ERROR bytes were
 * captured from the same server asked for a UDP test while its UDP port was
 * taken (IESTREAMLISTEN 202, EADDRINUSE 98); the ACCESS_DENIED byte from a
 * second control connection during a running test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/iperf3_ctrl.h"

/* ---- captured data ---------------------------------------------------- */

static const uint8_t CAP_COOKIE[I3_COOKIE_SIZE] = "ycmmpzkpfextjhyx6xw7xribpznh2u6cxib3";

static const char CAP_PARAMS_BIDIR_P2[] =
    "{\"tcp\":true,\"omit\":0,\"time\":1,\"num\":0,\"blockcount\":0,\"paralle"
    "l\":2,\"bidirectional\":true,\"len\":131072,\"pacing_timer\":1000,\"clie"
    "nt_version\":\"3.12\"}";

static const char CAP_CLIENT_RESULTS[] =
    "{\"cpu_util_total\":14.964829148121881,\"cpu_util_user\":1.3211768615882"
    "218,\"cpu_util_system\":13.63508656518,\"sender_has_retransmits\":1,\"co"
    "ngestion_used\":\"bbr\",\"streams\":[{\"id\":1,\"bytes\":184811520,\"ret"
    "ransmits\":3,\"jitter\":0,\"errors\":0,\"packets\":0,\"start_time\":0,\""
    "end_time\":1.027241},{\"id\":3,\"bytes\":104857600,\"retransmits\":9,\"j"
    "itter\":0,\"errors\":0,\"packets\":0,\"start_time\":0,\"end_time\":1.027"
    "255},{\"id\":4,\"bytes\":68288512,\"retransmits\":18446744073709551615,"
    "\"jitter\":0,\"errors\":0,\"packets\":0,\"start_time\":0,\"end_time\":1."
    "027257},{\"id\":5,\"bytes\":94765056,\"retransmits\":1844674407370955161"
    "5,\"jitter\":0,\"errors\":0,\"packets\":0,\"start_time\":0,\"end_time\":"
    "1.027285}]}";

static const char CAP_SERVER_RESULTS[] =
    "{\"cpu_util_total\":7.970352829102592,\"cpu_util_user\":0.46956459695062"
    "625,\"cpu_util_system\":7.5006918123168624,\"sender_has_retransmits\":1,"
    "\"congestion_used\":\"bbr\",\"streams\":[{\"id\":1,\"bytes\":184811520,"
    "\"retransmits\":18446744073709551615,\"jitter\":0,\"errors\":0,\"packets"
    "\":0,\"start_time\":0,\"end_time\":1.037089},{\"id\":3,\"bytes\":9810739"
    "2,\"retransmits\":18446744073709551615,\"jitter\":0,\"errors\":0,\"packe"
    "ts\":0,\"start_time\":0,\"end_time\":1.037095},{\"id\":4,\"bytes\":76021"
    "760,\"retransmits\":19,\"jitter\":0,\"errors\":0,\"packets\":0,\"start_t"
    "ime\":0,\"end_time\":1.037097},{\"id\":5,\"bytes\":102236160,\"retransmi"
    "ts\":18,\"jitter\":0,\"errors\":0,\"packets\":0,\"start_time\":0,\"end_t"
    "ime\":1.037099}]}";

/* SERVER_ERROR, i_errno 202 (IESTREAMLISTEN), errno 98 (EADDRINUSE) */
static const uint8_t CAP_SERVER_ERROR[] = { 0xfe, 0, 0, 0, 0xca, 0, 0, 0, 0x62 };

/* ---- session script ---------------------------------------------------- */

#define MAX_SEG   16
#define MAX_EVS   32
#define SEG_MAX   1024

/* One causally ordered piece of the session: bytes of one direction that the
 * peer sends before it has to wait for the other direction. */
struct seg {
    enum i3_dir dir;             /* direction */
    uint8_t     b[SEG_MAX];      /* bytes */
    size_t      n;               /* length of b */
};

/* An event as recorded by the driver (json copied: its buffer expires). */
struct rec {
    enum i3_ev_kind   kind;      /* event kind */
    enum i3_dir       dir;       /* direction */
    size_t            at;        /* direction offset just after its last byte */
    int8_t            state;     /* I3_EV_STATE */
    int32_t           code;      /* I3_EV_SERVER_ERROR: i_errno */
    int32_t           eno;       /* I3_EV_SERVER_ERROR: errno */
    enum i3_json_kind jkind;     /* I3_EV_JSON */
    uint32_t          jlen;      /* I3_EV_JSON */
    bool              jkept;     /* I3_EV_JSON: ev.json was not NULL */
    char              json[SEG_MAX]; /* I3_EV_JSON: copy of the kept body */
    char              reason[128];   /* I3_EV_ERROR */
};

/* Everything a test run produced. */
struct run {
    struct rec ev[MAX_EVS];      /* recorded events */
    size_t     nev;              /* events recorded */
    size_t     off[2];           /* bytes fed so far per direction */
};

static struct seg session[MAX_SEG];
static size_t nseg;

static void seg_add(enum i3_dir dir, const void *p, size_t n)
{
    struct seg *s;

    if (nseg == 0 || session[nseg - 1].dir != dir) {
        assert_true(nseg < MAX_SEG);
        s = &session[nseg++];
        s->dir = dir;
        s->n = 0;
    } else {
        s = &session[nseg - 1];
    }
    assert_true(s->n + n <= SEG_MAX);
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void seg_add_json(enum i3_dir dir, const char *json)
{
    uint8_t len[4];

    put_be32(len, (uint32_t)strlen(json));
    seg_add(dir, len, 4);
    seg_add(dir, json, strlen(json));
}

static void seg_add_byte(enum i3_dir dir, uint8_t b)
{
    seg_add(dir, &b, 1);
}

/* The captured 3.12 --bidir -P 2 session, in causal order. */
static void build_session(void)
{
    nseg = 0;
    seg_add(I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE);
    seg_add_byte(I3_S2C, 9);
    seg_add_json(I3_C2S, CAP_PARAMS_BIDIR_P2);
    seg_add_byte(I3_S2C, 10);
    seg_add_byte(I3_S2C, 1);
    seg_add_byte(I3_S2C, 2);
    seg_add_byte(I3_C2S, 4);
    seg_add_byte(I3_S2C, 13);
    seg_add_json(I3_C2S, CAP_CLIENT_RESULTS);
    seg_add_json(I3_S2C, CAP_SERVER_RESULTS);
    seg_add_byte(I3_S2C, 14);
    seg_add_byte(I3_C2S, 16);
}

/* Feeds one chunk completely, recording every event, and checks the feed
 * contract: an event ends the call, NONE means everything was consumed. */
static void feed_chunk(struct i3_ctrl *c, struct run *r, enum i3_dir dir,
                       const uint8_t *p, size_t n)
{
    while (n > 0) {
        struct i3_event ev;
        size_t used = i3_ctrl_feed(c, dir, p, n, &ev);

        assert_int_equal(ev.dir, dir);
        if (ev.kind == I3_EV_NONE) {
            assert_int_equal(used, n);
        } else {
            struct rec *e;

            assert_true(used >= 1 || ev.kind == I3_EV_ERROR);
            assert_true(used <= n);
            assert_true(r->nev < MAX_EVS);
            e = &r->ev[r->nev++];
            memset(e, 0, sizeof(*e));
            e->kind  = ev.kind;
            e->dir   = ev.dir;
            e->at    = r->off[dir] + used;
            e->state = ev.state;
            e->code  = ev.err_code;
            e->eno   = ev.err_errno;
            e->jkind = ev.json_kind;
            e->jlen  = ev.json_len;
            e->jkept = ev.json != NULL;
            if (ev.json != NULL) {
                assert_true(ev.json_len < sizeof(e->json));
                assert_int_equal(ev.json[ev.json_len], '\0');
                memcpy(e->json, ev.json, ev.json_len + 1);
            }
            if (ev.kind == I3_EV_COOKIE) {
                assert_non_null(ev.cookie);
                assert_memory_equal(ev.cookie, CAP_COOKIE, I3_COOKIE_SIZE);
            }
            if (ev.kind == I3_EV_ERROR) {
                assert_non_null(ev.reason);
                snprintf(e->reason, sizeof(e->reason), "%s", ev.reason);
                r->off[dir] += used;
                return;
            }
        }
        r->off[dir] += used;
        p += used;
        n -= used;
    }
}

/* Runs the whole session; segment i is cut at the offsets in cuts[i]
 * (a 0-terminated list; NULL: one chunk; BYTEWISE: every byte). */
static const size_t BYTEWISE_CUTS[1];
#define BYTEWISE BYTEWISE_CUTS

static void run_session(struct run *r, const size_t *const *cuts)
{
    struct i3_ctrl c;

    memset(r, 0, sizeof(*r));
    i3_ctrl_init(&c, 0, 0);
    for (size_t i = 0; i < nseg; i++) {
        const struct seg *s = &session[i];
        const size_t *cut = cuts ? cuts[i] : NULL;
        size_t from = 0;

        if (cut == BYTEWISE) {
            for (size_t k = 0; k < s->n; k++)
                feed_chunk(&c, r, s->dir, s->b + k, 1);
            continue;
        }
        for (; cut != NULL && *cut != 0; cut++) {
            assert_true(*cut > from && *cut < s->n);
            feed_chunk(&c, r, s->dir, s->b + from, *cut - from);
            from = *cut;
        }
        feed_chunk(&c, r, s->dir, s->b + from, s->n - from);
    }
    i3_ctrl_free(&c);
}

/* Checks the recorded events against the captured session. */
static void check_session(const struct run *r)
{
    size_t c2s_params_end = I3_COOKIE_SIZE + 4 + strlen(CAP_PARAMS_BIDIR_P2);
    size_t c2s_res_end = c2s_params_end + 1 + 4 + strlen(CAP_CLIENT_RESULTS);
    size_t s2c_res_end = 5 + 4 + strlen(CAP_SERVER_RESULTS);
    const struct { enum i3_ev_kind k; enum i3_dir d; size_t at; int v; } want[] = {
        { I3_EV_COOKIE, I3_C2S, I3_COOKIE_SIZE, 0 },
        { I3_EV_STATE,  I3_S2C, 1, I3_PARAM_EXCHANGE },
        { I3_EV_JSON,   I3_C2S, c2s_params_end, I3_JSON_PARAMS },
        { I3_EV_STATE,  I3_S2C, 2, I3_CREATE_STREAMS },
        { I3_EV_STATE,  I3_S2C, 3, I3_TEST_START },
        { I3_EV_STATE,  I3_S2C, 4, I3_TEST_RUNNING },
        { I3_EV_STATE,  I3_C2S, c2s_params_end + 1, I3_TEST_END },
        { I3_EV_STATE,  I3_S2C, 5, I3_EXCHANGE_RESULTS },
        { I3_EV_JSON,   I3_C2S, c2s_res_end, I3_JSON_CLIENT_RESULTS },
        { I3_EV_JSON,   I3_S2C, s2c_res_end, I3_JSON_SERVER_RESULTS },
        { I3_EV_STATE,  I3_S2C, s2c_res_end + 1, I3_DISPLAY_RESULTS },
        { I3_EV_STATE,  I3_C2S, c2s_res_end + 1, I3_IPERF_DONE },
    };

    assert_int_equal(r->nev, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < r->nev; i++) {
        const struct rec *e = &r->ev[i];

        assert_int_equal(e->kind, want[i].k);
        assert_int_equal(e->dir, want[i].d);
        assert_int_equal(e->at, want[i].at);
        if (e->kind == I3_EV_STATE)
            assert_int_equal(e->state, want[i].v);
        if (e->kind == I3_EV_JSON)
            assert_int_equal(e->jkind, want[i].v);
    }
    /* parameters kept verbatim, results streamed */
    assert_true(r->ev[2].jkept);
    assert_int_equal(r->ev[2].jlen, strlen(CAP_PARAMS_BIDIR_P2));
    assert_string_equal(r->ev[2].json, CAP_PARAMS_BIDIR_P2);
    assert_false(r->ev[8].jkept);
    assert_int_equal(r->ev[8].jlen, strlen(CAP_CLIENT_RESULTS));
    assert_false(r->ev[9].jkept);
    assert_int_equal(r->ev[9].jlen, strlen(CAP_SERVER_RESULTS));
}

static int setup_session(void **state)
{
    (void)state;
    build_session();
    return 0;
}

/* ---- full session ------------------------------------------------------ */

static void feed__full_session_one_chunk_per_segment__all_events_in_order(void **state)
{
    struct run r;

    (void)state;
    run_session(&r, NULL);
    check_session(&r);
}

static void feed__full_session_byte_by_byte__same_events(void **state)
{
    const size_t *cuts[MAX_SEG];
    struct run r;

    (void)state;
    for (size_t i = 0; i < nseg; i++)
        cuts[i] = BYTEWISE;
    run_session(&r, cuts);
    check_session(&r);
}

static void feed__full_session_split_at_every_offset__same_events(void **state)
{
    const size_t *cuts[MAX_SEG] = { 0 };
    size_t cut[2] = { 0, 0 };
    struct run r;
    size_t runs = 0;

    (void)state;
    for (size_t i = 0; i < nseg; i++) {
        for (size_t k = 1; k < session[i].n; k++) {
            cut[0] = k;
            cuts[i] = cut;
            run_session(&r, cuts);
            check_session(&r);
            runs++;
        }
        cuts[i] = NULL;
    }
    assert_true(runs > 1400);
}

static void feed__full_session_random_chunks__same_events(void **state)
{
    static size_t cut[MAX_SEG][SEG_MAX];
    const size_t *cuts[MAX_SEG];
    uint32_t rnd = 12345;
    struct run r;

    (void)state;
    for (int iter = 0; iter < 200; iter++) {
        for (size_t i = 0; i < nseg; i++) {
            size_t n = 0, at = 0;

            for (;;) {
                rnd = rnd * 1103515245u + 12345u;
                at += 1 + (rnd >> 16) % 97;
                if (at >= session[i].n)
                    break;
                cut[i][n++] = at;
            }
            cut[i][n] = 0;
            cuts[i] = cut[i];
        }
        run_session(&r, cuts);
        check_session(&r);
    }
}

static void feed__params_json__parses_as_bidir_two_streams_each_way(void **state)
{
    struct i3_params p;
    const char *why = "unset";
    struct run r;

    (void)state;
    run_session(&r, NULL);
    assert_int_equal(i3_params_parse(r.ev[2].json, r.ev[2].jlen, &p, &why), 0);
    assert_null(why);
    assert_int_equal(p.proto, I3_PROTO_TCP);
    assert_true(p.bidir);
    assert_false(p.reverse);
    assert_int_equal(p.parallel, 2);
    assert_int_equal(i3_params_stream_count(&p), 4);
    assert_string_equal(i3_params_mode(&p), "TCP bidir");
    assert_int_equal(p.time, 1);
    assert_int_equal(p.len, 131072);
    assert_string_equal(p.client_version, "3.12");
}

/* ---- feed contract ----------------------------------------------------- */

static void feed__three_states_in_one_chunk__one_event_per_call(void **state)
{
    static const uint8_t b[] = { 10, 1, 2 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b + i, sizeof(b) - (size_t)i, &ev), 1);
        assert_int_equal(ev.kind, I3_EV_STATE);
        assert_int_equal(ev.state, b[i]);
    }
    i3_ctrl_free(&c);
}

static void feed__zero_length_input__returns_zero_no_event(void **state)
{
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, NULL, 0, &ev), 0);
    assert_int_equal(ev.kind, I3_EV_NONE);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, NULL, 0, &ev), 0);
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_free(&c);
}

static void feed__cookie_and_first_state_in_one_chunk__cookie_event_stops_at_byte_37(void **state)
{
    uint8_t b[I3_COOKIE_SIZE + 1];
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    memcpy(b, CAP_COOKIE, I3_COOKIE_SIZE);
    b[I3_COOKIE_SIZE] = I3_TEST_END;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), I3_COOKIE_SIZE);
    assert_int_equal(ev.kind, I3_EV_COOKIE);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b + I3_COOKIE_SIZE, 1, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_STATE);
    assert_int_equal(ev.state, I3_TEST_END);
    i3_ctrl_free(&c);
}

static void feed__cookie_is_opaque__any_bytes_accepted(void **state)
{
    uint8_t b[I3_COOKIE_SIZE];
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)(0xf0 + i);     /* would be invalid state bytes */
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), sizeof(b));
    assert_int_equal(ev.kind, I3_EV_COOKIE);
    assert_memory_equal(ev.cookie, b, sizeof(b));
    i3_ctrl_free(&c);
}

static void feed__params_buffer_valid_until_next_feed_on_same_direction(void **state)
{
    struct i3_ctrl c;
    struct i3_event ev, s2c;
    uint8_t b[4 + 16];
    const char *json = "{\"tcp\":true}";
    uint8_t nine = 9, ten = 10;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
    i3_ctrl_feed(&c, I3_S2C, &nine, 1, &ev);
    put_be32(b, (uint32_t)strlen(json));
    memcpy(b + 4, json, strlen(json));
    i3_ctrl_feed(&c, I3_C2S, b, 4 + strlen(json), &ev);
    assert_int_equal(ev.kind, I3_EV_JSON);
    /* feeding the other direction does not invalidate it (ASan would say) */
    i3_ctrl_feed(&c, I3_S2C, &ten, 1, &s2c);
    assert_int_equal(s2c.kind, I3_EV_STATE);
    assert_string_equal(ev.json, json);
    i3_ctrl_free(&c);
}

static void free__with_kept_params__releases_buffer(void **state)
{
    struct i3_ctrl c;
    struct i3_event ev;
    uint8_t nine = 9, b[4 + 2] = { 0, 0, 0, 2, '{', '}' };

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
    i3_ctrl_feed(&c, I3_S2C, &nine, 1, &ev);
    i3_ctrl_feed(&c, I3_C2S, b, 5, &ev);  /* body half read: buffer held */
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_free(&c);                      /* LeakSanitizer checks this */
    assert_null(c.d[I3_C2S].buf);
}

static void init__zero_caps__defaults(void **state)
{
    struct i3_ctrl c;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(c.params_max, I3_PARAMS_MAX_DEFAULT);
    assert_int_equal(c.results_max, I3_RESULTS_MAX_DEFAULT);
    i3_ctrl_free(&c);
    i3_ctrl_init(&c, 100, 200);
    assert_int_equal(c.params_max, 100);
    assert_int_equal(c.results_max, 200);
    i3_ctrl_free(&c);
}

/* ---- SERVER_ERROR, ACCESS_DENIED ---------------------------------------- */

static void feed__server_error_split_at_every_offset__one_event_with_codes(void **state)
{
    (void)state;
    for (size_t k = 0; k <= sizeof(CAP_SERVER_ERROR); k++) {
        struct i3_ctrl c;
        struct run r;

        memset(&r, 0, sizeof(r));
        i3_ctrl_init(&c, 0, 0);
        if (k > 0)
            feed_chunk(&c, &r, I3_S2C, CAP_SERVER_ERROR, k);
        if (k < sizeof(CAP_SERVER_ERROR))
            feed_chunk(&c, &r, I3_S2C, CAP_SERVER_ERROR + k, sizeof(CAP_SERVER_ERROR) - k);
        assert_int_equal(r.nev, 1);
        assert_int_equal(r.ev[0].kind, I3_EV_SERVER_ERROR);
        assert_int_equal(r.ev[0].at, sizeof(CAP_SERVER_ERROR));
        assert_int_equal(r.ev[0].code, 202);
        assert_int_equal(r.ev[0].eno, 98);
        assert_false(c.failed);
        i3_ctrl_free(&c);
    }
}

static void feed__server_error_byte_by_byte__one_event(void **state)
{
    struct i3_ctrl c;
    struct run r;

    (void)state;
    memset(&r, 0, sizeof(r));
    i3_ctrl_init(&c, 0, 0);
    for (size_t i = 0; i < sizeof(CAP_SERVER_ERROR); i++)
        feed_chunk(&c, &r, I3_S2C, CAP_SERVER_ERROR + i, 1);
    assert_int_equal(r.nev, 1);
    assert_int_equal(r.ev[0].kind, I3_EV_SERVER_ERROR);
    assert_int_equal(r.ev[0].code, 202);
    assert_int_equal(r.ev[0].eno, 98);
    i3_ctrl_free(&c);
}

static void feed__server_error_codes__signed_big_endian(void **state)
{
    static const uint8_t b[] = { 0xfe, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 1 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b, sizeof(b), &ev), sizeof(b));
    assert_int_equal(ev.kind, I3_EV_SERVER_ERROR);
    assert_int_equal(ev.err_code, -1);
    assert_int_equal(ev.err_errno, INT32_MIN + 1);
    i3_ctrl_free(&c);
}

static void feed__server_error_after_params__then_close(void **state)
{
    struct i3_ctrl c;
    struct run r;
    uint8_t nine = 9;

    (void)state;
    memset(&r, 0, sizeof(r));
    i3_ctrl_init(&c, 0, 0);
    feed_chunk(&c, &r, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE);
    feed_chunk(&c, &r, I3_S2C, &nine, 1);
    {
        uint8_t b[4 + 200];
        size_t n = strlen(CAP_PARAMS_BIDIR_P2);

        put_be32(b, (uint32_t)n);
        memcpy(b + 4, CAP_PARAMS_BIDIR_P2, n);
        feed_chunk(&c, &r, I3_C2S, b, 4 + n);
    }
    feed_chunk(&c, &r, I3_S2C, CAP_SERVER_ERROR, sizeof(CAP_SERVER_ERROR));
    assert_int_equal(r.nev, 4);
    assert_int_equal(r.ev[3].kind, I3_EV_SERVER_ERROR);
    i3_ctrl_free(&c);
}

static void feed__access_denied_first_byte__state_event_parser_usable(void **state)
{
    static const uint8_t denied = 0xff;    /* captured from a busy 3.12 server */
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, &denied, 1, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_STATE);
    assert_int_equal(ev.state, I3_ACCESS_DENIED);
    assert_string_equal(i3_state_name(ev.state), "ACCESS_DENIED");
    assert_false(c.failed);
    /* the cookie the client had sent is still seen */
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev), I3_COOKIE_SIZE);
    assert_int_equal(ev.kind, I3_EV_COOKIE);
    i3_ctrl_free(&c);
}

/* ---- JSON due but something else sent ---------------------------------- */

static void feed__server_error_where_server_results_due__reported_as_server_error(void **state)
{
    struct i3_ctrl c;
    struct run r;
    static const uint8_t s1[] = { 9 }, s2[] = { 10, 1, 2 }, s3[] = { 13 };
    uint8_t b[4 + 700];
    size_t n;

    (void)state;
    memset(&r, 0, sizeof(r));
    i3_ctrl_init(&c, 0, 0);
    feed_chunk(&c, &r, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE);
    feed_chunk(&c, &r, I3_S2C, s1, 1);
    n = strlen(CAP_PARAMS_BIDIR_P2);
    put_be32(b, (uint32_t)n);
    memcpy(b + 4, CAP_PARAMS_BIDIR_P2, n);
    feed_chunk(&c, &r, I3_C2S, b, 4 + n);
    feed_chunk(&c, &r, I3_S2C, s2, sizeof(s2));
    feed_chunk(&c, &r, I3_C2S, (const uint8_t *)"\x04", 1);
    feed_chunk(&c, &r, I3_S2C, s3, 1);
    n = strlen(CAP_CLIENT_RESULTS);
    put_be32(b, (uint32_t)n);
    memcpy(b + 4, CAP_CLIENT_RESULTS, n);
    feed_chunk(&c, &r, I3_C2S, b, 4 + n);
    /* a 3.21 server failing in get_results sends SERVER_ERROR instead */
    feed_chunk(&c, &r, I3_S2C, CAP_SERVER_ERROR, sizeof(CAP_SERVER_ERROR));
    assert_int_equal(r.nev, 10);
    assert_int_equal(r.ev[9].kind, I3_EV_SERVER_ERROR);
    assert_int_equal(r.ev[9].code, 202);
    assert_false(c.failed);
    i3_ctrl_free(&c);
}

/* A 3.21 server ends even a test that completed with SERVER_ERROR when a
 * stream thread left i_errno set (cleanup_server): captured with strace from
 * a 3.21 server, after DISPLAY_RESULTS and the client's IPERF_DONE:
 * fe, then 205 (IESTREAMWRITE) and errno 9 (EBADF). */
static void feed__321_server_error_after_display_results__event_with_codes(void **state)
{
    struct i3_ctrl c;
    struct run r;
    static const uint8_t s1[] = { 9 }, s2[] = { 10, 1, 2 }, s3[] = { 13 }, s4[] = { 14 };
    static const uint8_t done[] = { 16 };
    static const uint8_t serr_321[] = { 0xfe, 0, 0, 0, 0xcd, 0, 0, 0, 0x09 };
    uint8_t b[4 + 700];
    size_t n;

    (void)state;
    memset(&r, 0, sizeof(r));
    i3_ctrl_init(&c, 0, 0);
    feed_chunk(&c, &r, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE);
    feed_chunk(&c, &r, I3_S2C, s1, 1);
    n = strlen(CAP_PARAMS_BIDIR_P2);
    put_be32(b, (uint32_t)n);
    memcpy(b + 4, CAP_PARAMS_BIDIR_P2, n);
    feed_chunk(&c, &r, I3_C2S, b, 4 + n);
    feed_chunk(&c, &r, I3_S2C, s2, sizeof(s2));
    feed_chunk(&c, &r, I3_C2S, (const uint8_t *)"\x04", 1);
    feed_chunk(&c, &r, I3_S2C, s3, 1);
    n = strlen(CAP_CLIENT_RESULTS);
    put_be32(b, (uint32_t)n);
    memcpy(b + 4, CAP_CLIENT_RESULTS, n);
    feed_chunk(&c, &r, I3_C2S, b, 4 + n);
    n = strlen(CAP_SERVER_RESULTS);
    put_be32(b, (uint32_t)n);
    memcpy(b + 4, CAP_SERVER_RESULTS, n);
    feed_chunk(&c, &r, I3_S2C, b, 4 + n);
    feed_chunk(&c, &r, I3_S2C, s4, 1);
    feed_chunk(&c, &r, I3_C2S, done, 1);
    feed_chunk(&c, &r, I3_S2C, serr_321, sizeof(serr_321));
    assert_int_equal(r.nev, 13);
    assert_int_equal(r.ev[9].kind, I3_EV_JSON);   /* the server's results came first */
    assert_int_equal(r.ev[12].kind, I3_EV_SERVER_ERROR);
    assert_int_equal(r.ev[12].code, 205);
    assert_false(c.failed);
    i3_ctrl_free(&c);
}

static void feed__client_terminate_where_params_due__reported_as_state(void **state)
{
    struct i3_ctrl c;
    struct i3_event ev;
    uint8_t nine = 9, twelve = 12;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
    i3_ctrl_feed(&c, I3_S2C, &nine, 1, &ev);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, &twelve, 1, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_STATE);
    assert_int_equal(ev.state, I3_CLIENT_TERMINATE);
    i3_ctrl_free(&c);
}

/* ---- violations ---------------------------------------------------------- */

/* Brings c to the point where c2s owes its parameters. */
static void to_params_due(struct i3_ctrl *c, uint32_t params_max, uint32_t results_max)
{
    struct i3_event ev;
    uint8_t nine = 9;

    i3_ctrl_init(c, params_max, results_max);
    assert_int_equal(i3_ctrl_feed(c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev), I3_COOKIE_SIZE);
    assert_int_equal(i3_ctrl_feed(c, I3_S2C, &nine, 1, &ev), 1);
}

static void feed__json_length_0xffffffff__rejected_without_allocation(void **state)
{
    static const uint8_t b[] = { 0xff, 0xff, 0xff, 0xff, '{' };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_params_due(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_int_equal(ev.dir, I3_C2S);
    assert_string_equal(ev.reason, "parameters JSON length 4294967295 exceeds cap 65536");
    assert_null(c.d[I3_C2S].buf);
    i3_ctrl_free(&c);
}

static void feed__json_length_cap_plus_one__rejected(void **state)
{
    static const uint8_t b[] = { 0, 0, 0, 17 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_params_due(&c, 16, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "parameters JSON length 17 exceeds cap 16");
    i3_ctrl_free(&c);
}

static void feed__json_length_equal_cap__accepted(void **state)
{
    static const uint8_t b[] = { 0, 0, 0, 16, '{', '"', 't', 'c', 'p', '"', ':',
                                 't', 'r', 'u', 'e', ' ', ' ', ' ', ' ', '}' };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_params_due(&c, 16, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), sizeof(b));
    assert_int_equal(ev.kind, I3_EV_JSON);
    assert_int_equal(ev.json_len, 16);
    assert_string_equal(ev.json, "{\"tcp\":true    }");
    i3_ctrl_free(&c);
}

static void feed__json_length_zero__rejected(void **state)
{
    static const uint8_t b[] = { 0, 0, 0, 0 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_params_due(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "parameters JSON length 0");
    i3_ctrl_free(&c);
}

/* Brings c to the point where c2s owes its results. */
static void to_client_results_due(struct i3_ctrl *c, uint32_t results_max)
{
    struct i3_event ev;
    static const uint8_t params[] = { 0, 0, 0, 2, '{', '}' };
    static const uint8_t s2c[] = { 10, 1, 2 };
    uint8_t four = 4, thirteen = 13;

    to_params_due(c, 0, results_max);
    assert_int_equal(i3_ctrl_feed(c, I3_C2S, params, sizeof(params), &ev), sizeof(params));
    assert_int_equal(ev.kind, I3_EV_JSON);
    for (size_t i = 0; i < sizeof(s2c); i++)
        assert_int_equal(i3_ctrl_feed(c, I3_S2C, s2c + i, 1, &ev), 1);
    assert_int_equal(i3_ctrl_feed(c, I3_C2S, &four, 1, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_STATE);
    assert_int_equal(i3_ctrl_feed(c, I3_S2C, &thirteen, 1, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_STATE);
}

static void feed__terminal_byte_where_length_fits_cap__read_as_length(void **state)
{
    /* with a results cap of 0xFFFFFFFF a leading 0x0b (SERVER_TERMINATE) is
     * a possible length: the parser reads it as the peer does */
    static const uint8_t res[] = { 0, 0, 0, 2, '{', '}' };
    static const uint8_t b[] = { 11, 0, 0, 0 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_client_results_due(&c, UINT32_MAX);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, res, sizeof(res), &ev), sizeof(res));
    assert_int_equal(ev.kind, I3_EV_JSON);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_NONE);
    assert_int_equal(c.d[I3_S2C].json_len, 0x0b000000u);
    assert_null(c.d[I3_S2C].buf);          /* results are streamed */
    i3_ctrl_free(&c);
}

static void feed__client_results_length_above_cap__rejected(void **state)
{
    static const uint8_t b[] = { 0, 0, 4, 1 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_client_results_due(&c, 1024);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "client results JSON length 1025 exceeds cap 1024");
    i3_ctrl_free(&c);
}

static void feed__server_results_length_above_cap__rejected(void **state)
{
    static const uint8_t res[] = { 0, 0, 0, 2, '{', '}' };
    static const uint8_t b[] = { 0, 0, 4, 1 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_client_results_due(&c, 1024);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, res, sizeof(res), &ev), sizeof(res));
    assert_int_equal(ev.kind, I3_EV_JSON);
    assert_int_equal(ev.json_kind, I3_JSON_CLIENT_RESULTS);
    assert_null(ev.json);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_int_equal(ev.dir, I3_S2C);
    assert_string_equal(ev.reason, "server results JSON length 1025 exceeds cap 1024");
    i3_ctrl_free(&c);
}

static void feed__after_error__returns_zero_and_same_error(void **state)
{
    static const uint8_t b[] = { 0xff, 0xff, 0xff, 0xff };
    static const uint8_t more[] = { 1, 2, 3 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_params_due(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), 4);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    for (int d = 0; d < 2; d++) {
        assert_int_equal(i3_ctrl_feed(&c, (enum i3_dir)d, more, sizeof(more), &ev), 0);
        assert_int_equal(ev.kind, I3_EV_ERROR);
        assert_int_equal(ev.dir, I3_C2S);
        assert_string_equal(ev.reason, "parameters JSON length 4294967295 exceeds cap 65536");
    }
    i3_ctrl_eof(&c, I3_S2C, &ev);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    i3_ctrl_free(&c);
}

static void feed__unknown_state_byte__rejected(void **state)
{
    static const uint8_t bad[] = { 0, 3, 5, 7, 8, 15, 17, 0x7f, 0x80, 0xfd };
    struct i3_event ev;

    (void)state;
    for (size_t i = 0; i < sizeof(bad); i++) {
        for (int d = 0; d < 2; d++) {
            struct i3_ctrl c;

            i3_ctrl_init(&c, 0, 0);
            if (d == I3_C2S)
                i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
            assert_int_equal(i3_ctrl_feed(&c, (enum i3_dir)d, bad + i, 1, &ev), 1);
            assert_int_equal(ev.kind, I3_EV_ERROR);
            assert_non_null(strstr(ev.reason, "unknown state byte"));
            i3_ctrl_free(&c);
        }
    }
}

static void feed__server_state_from_client__rejected(void **state)
{
    static const uint8_t bad[] = { 2, 9, 10, 11, 13, 14, 0xff, 0xfe };
    struct i3_event ev;

    (void)state;
    for (size_t i = 0; i < sizeof(bad); i++) {
        struct i3_ctrl c;

        i3_ctrl_init(&c, 0, 0);
        i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
        assert_int_equal(i3_ctrl_feed(&c, I3_C2S, bad + i, 1, &ev), 1);
        assert_int_equal(ev.kind, I3_EV_ERROR);
        assert_non_null(strstr(ev.reason, "is not valid from the client"));
        i3_ctrl_free(&c);
    }
}

static void feed__client_state_from_server__rejected(void **state)
{
    static const uint8_t bad[] = { 4, 12 };
    struct i3_event ev;

    (void)state;
    for (size_t i = 0; i < sizeof(bad); i++) {
        struct i3_ctrl c;

        i3_ctrl_init(&c, 0, 0);
        assert_int_equal(i3_ctrl_feed(&c, I3_S2C, bad + i, 1, &ev), 1);
        assert_int_equal(ev.kind, I3_EV_ERROR);
        assert_non_null(strstr(ev.reason, "is not valid from the server"));
        i3_ctrl_free(&c);
    }
}

static void feed__param_exchange_twice__rejected(void **state)
{
    static const uint8_t b[] = { 9, 9 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b, 2, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_STATE);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b + 1, 1, &ev), 1);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "PARAM_EXCHANGE sent twice by the server");
    i3_ctrl_free(&c);
}

static void feed__client_json_without_request__rejected_as_state(void **state)
{
    /* no PARAM_EXCHANGE fed: a length prefix starts with 0x00, not a state */
    static const uint8_t b[] = { 0, 0, 0, 2, '{', '}' };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), 1);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "unknown state byte 0 (0x00) from the client");
    i3_ctrl_free(&c);
}

/* ---- truncation and EOF -------------------------------------------------- */

static void feed__truncated_session_every_prefix__no_spurious_event(void **state)
{
    /* Feed the session up to every byte of every segment, then stop: the
     * events seen must be a prefix of the full list, and no crash, no leak. */
    struct run full;

    (void)state;
    run_session(&full, NULL);
    for (size_t i = 0; i < nseg; i++) {
        for (size_t k = 0; k < session[i].n; k++) {
            struct i3_ctrl c;
            struct run r;

            memset(&r, 0, sizeof(r));
            i3_ctrl_init(&c, 0, 0);
            for (size_t j = 0; j < i; j++)
                feed_chunk(&c, &r, session[j].dir, session[j].b, session[j].n);
            if (k > 0)
                feed_chunk(&c, &r, session[i].dir, session[i].b, k);
            assert_true(r.nev < full.nev);
            for (size_t e = 0; e < r.nev; e++) {
                assert_int_equal(r.ev[e].kind, full.ev[e].kind);
                assert_int_equal(r.ev[e].at, full.ev[e].at);
            }
            assert_false(c.failed);
            i3_ctrl_free(&c);
        }
    }
}

static void eof__between_messages__no_event(void **state)
{
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    i3_ctrl_eof(&c, I3_C2S, &ev);         /* probe: connected, sent nothing */
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, I3_COOKIE_SIZE, &ev);
    i3_ctrl_eof(&c, I3_C2S, &ev);
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_eof(&c, I3_S2C, &ev);
    assert_int_equal(ev.kind, I3_EV_NONE);
    assert_false(c.failed);
    i3_ctrl_free(&c);
}

static void eof__inside_cookie__rejected(void **state)
{
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, CAP_COOKIE, 36, &ev), 36);
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_eof(&c, I3_C2S, &ev);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "connection closed after 36 of 37 cookie bytes");
    i3_ctrl_free(&c);
}

static void eof__inside_params_body__rejected(void **state)
{
    static const uint8_t b[] = { 0, 0, 0, 10, '{', '"' };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    to_params_due(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_C2S, b, sizeof(b), &ev), sizeof(b));
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_eof(&c, I3_C2S, &ev);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_string_equal(ev.reason, "connection closed after 2 of 10 bytes of the parameters JSON");
    i3_ctrl_free(&c);
}

static void eof__after_server_error_and_one_code__server_error_errno_zero(void **state)
{
    /* 3.2-3.20 on authentication failure: SERVER_ERROR, i_errno, close */
    static const uint8_t b[] = { 0xfe, 0, 0, 0, 142 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    assert_int_equal(i3_ctrl_feed(&c, I3_S2C, b, sizeof(b), &ev), sizeof(b));
    assert_int_equal(ev.kind, I3_EV_NONE);
    i3_ctrl_eof(&c, I3_S2C, &ev);
    assert_int_equal(ev.kind, I3_EV_SERVER_ERROR);
    assert_int_equal(ev.err_code, 142);
    assert_int_equal(ev.err_errno, 0);
    assert_false(c.failed);
    i3_ctrl_free(&c);
}

static void eof__after_server_error_and_partial_code__rejected(void **state)
{
    static const uint8_t b[] = { 0xfe, 0, 0 };
    struct i3_ctrl c;
    struct i3_event ev;

    (void)state;
    i3_ctrl_init(&c, 0, 0);
    i3_ctrl_feed(&c, I3_S2C, b, sizeof(b), &ev);
    i3_ctrl_eof(&c, I3_S2C, &ev);
    assert_int_equal(ev.kind, I3_EV_ERROR);
    assert_true(c.failed);
    i3_ctrl_free(&c);
}

/* ---- parameters ---------------------------------------------------------- */

static int parse(const char *json, struct i3_params *p, const char **why)
{
    return i3_params_parse(json, strlen(json), p, why);
}

static void params_parse__malformed_json__rejected(void **state)
{
    static const char *const bad[] = {
        "{", "{\"tcp\":tru}", "nul", "{\"parallel\":}", "\"tcp\"", "[1,2]",
        "42", "{\"tcp\":true,}", "   ",
    };
    struct i3_params p;
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(parse(bad[i], &p, &why), -1);
        assert_non_null(why);
        assert_int_equal(p.parallel, 1);
    }
    why = NULL;
    assert_int_equal(i3_params_parse("", 0, &p, &why), -1);
    assert_string_equal(why, "parameters are empty");
    assert_int_equal(i3_params_parse(NULL, 5, &p, &why), -1);
    assert_int_equal(parse("[1,2]", &p, &why), -1);
    assert_string_equal(why, "parameters are not a JSON object");
    assert_int_equal(parse("{", &p, &why), -1);
    assert_string_equal(why, "parameters are not valid JSON");
}

static void params_parse__parallel_out_of_range__rejected(void **state)
{
    static const char *const bad[] = {
        "{\"parallel\":0}", "{\"parallel\":-1}", "{\"parallel\":1000}",
        "{\"parallel\":129}", "{\"parallel\":2.5}", "{\"parallel\":1e300}",
    };
    struct i3_params p;
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &p, &why), -1);
        assert_string_equal(why, "parameter \"parallel\" is outside 1..128");
    }
    assert_int_equal(parse("{\"parallel\":\"2\"}", &p, &why), -1);
    assert_string_equal(why, "parameter \"parallel\" is not a number");
}

static void params_parse__parallel_in_range__accepted(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"parallel\":1}", &p, NULL), 0);
    assert_int_equal(p.parallel, 1);
    assert_int_equal(parse("{\"parallel\":128}", &p, NULL), 0);
    assert_int_equal(p.parallel, 128);
    assert_int_equal(parse("{\"tcp\":true}", &p, NULL), 0);
    assert_int_equal(p.parallel, 1);      /* absent means 1 */
}

static void params_parse__booleans_as_true__set(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"udp\":true,\"reverse\":true,\"nodelay\":true,"
                           "\"udp_counters_64bit\":true,\"parallel\":3}", &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_UDP);
    assert_true(p.reverse);
    assert_false(p.bidir);
    assert_true(p.nodelay);
    assert_true(p.udp_counters_64bit);
    assert_int_equal(i3_params_stream_count(&p), 3);
    assert_string_equal(i3_params_mode(&p), "UDP reverse");
}

static void params_parse__booleans_as_1__set(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"sctp\":1,\"bidirectional\":1,\"nodelay\":1,"
                           "\"udp_counters_64bit\":1}", &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_SCTP);
    assert_true(p.bidir);
    assert_true(p.nodelay);
    assert_true(p.udp_counters_64bit);
    assert_int_equal(i3_params_stream_count(&p), 2);
    assert_string_equal(i3_params_mode(&p), "SCTP bidir");
}

static void params_parse__booleans_false_0_null__not_set(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"udp\":false,\"reverse\":0,\"bidirectional\":null}", &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_TCP);
    assert_false(p.reverse);
    assert_false(p.bidir);
    assert_string_equal(i3_params_mode(&p), "TCP");
}

static void params_parse__boolean_as_string__rejected(void **state)
{
    struct i3_params p;
    const char *why;

    (void)state;
    assert_int_equal(parse("{\"reverse\":\"yes\"}", &p, &why), -1);
    assert_string_equal(why, "parameter \"reverse\" is not a boolean");
    assert_int_equal(parse("{\"udp\":{}}", &p, &why), -1);
    assert_string_equal(why, "parameter \"udp\" is not a boolean");
}

static void params_parse__several_protocols__last_applied_by_iperf3_wins(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"tcp\":true,\"udp\":true}", &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_UDP);
    assert_int_equal(parse("{\"sctp\":true,\"udp\":true,\"tcp\":true}", &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_SCTP);
}

static void params_parse__bidir_and_reverse__bidir_wins(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"reverse\":true,\"bidirectional\":true,\"parallel\":2}", &p, NULL), 0);
    assert_int_equal(i3_params_stream_count(&p), 4);
    assert_string_equal(i3_params_mode(&p), "TCP bidir");
}

static void params_parse__iperf3_312_captures__all_fields(void **state)
{
    /* captured from iperf3 3.12 clients (a fake server logged them) */
    static const char udp[] =
        "{\"udp\":true,\"omit\":0,\"time\":5,\"num\":0,\"blockcount\":0,\"parallel\":3,"
        "\"reverse\":true,\"len\":1400,\"bandwidth\":10000000,\"pacing_timer\":1000,"
        "\"udp_counters_64bit\":1,\"client_version\":\"3.12\"}";
    static const char tcp[] =
        "{\"tcp\":true,\"omit\":1,\"time\":0,\"num\":10737418240,\"blockcount\":0,"
        "\"MSS\":1200,\"nodelay\":true,\"parallel\":1,\"window\":262144,\"len\":1400,"
        "\"pacing_timer\":1000,\"client_version\":\"3.12\"}";
    static const char sctp[] =
        "{\"sctp\":true,\"omit\":0,\"time\":0,\"num\":0,\"blockcount\":1000,"
        "\"parallel\":1,\"len\":65536,\"pacing_timer\":1000,\"client_version\":\"3.12\"}";
    struct i3_params p;

    (void)state;
    assert_int_equal(parse(udp, &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_UDP);
    assert_true(p.reverse);
    assert_int_equal(p.parallel, 3);
    assert_int_equal(p.time, 5);
    assert_int_equal(p.len, 1400);
    assert_true(p.udp_counters_64bit);
    assert_string_equal(i3_params_mode(&p), "UDP reverse");

    assert_int_equal(parse(tcp, &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_TCP);
    assert_int_equal(p.omit, 1);
    assert_int_equal(p.bytes, 10737418240LL);
    assert_int_equal(p.mss, 1200);
    assert_true(p.nodelay);
    assert_int_equal(p.window, 262144);
    assert_string_equal(i3_params_mode(&p), "TCP");

    assert_int_equal(parse(sctp, &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_SCTP);
    assert_int_equal(p.blockcount, 1000);
    assert_int_equal(p.len, 65536);
    assert_string_equal(i3_params_mode(&p), "SCTP");
}

static void params_parse__newer_client_captures__mptcp_and_version(void **state)
{
    /* captured (strace of the client's write) from clients built from
     * esnet/iperf tags 3.19.1 (--mptcp) and 3.21 (plain), docs/peers.md */
    static const char v319_mptcp[] =
        "{\"tcp\":true,\"omit\":0,\"time\":1,\"num\":0,\"blockcount\":0,\"parallel\":1,"
        "\"mptcp\":true,\"len\":131072,\"pacing_timer\":1000,\"client_version\":\"3.19.1\"}";
    static const char v321[] =
        "{\"tcp\":true,\"omit\":0,\"time\":1,\"num\":0,\"blockcount\":0,\"parallel\":1,"
        "\"len\":131072,\"pacing_timer\":1000,\"client_version\":\"3.21\"}";
    static const char mptcp_string[] = "{\"tcp\":true,\"mptcp\":\"yes\"}";
    struct i3_params p;
    const char *why = NULL;

    (void)state;
    assert_int_equal(parse(v319_mptcp, &p, NULL), 0);
    assert_true(p.mptcp);
    assert_int_equal(p.proto, I3_PROTO_TCP);
    assert_string_equal(p.client_version, "3.19.1");

    assert_int_equal(parse(v321, &p, NULL), 0);
    assert_false(p.mptcp);
    assert_string_equal(p.client_version, "3.21");

    assert_int_equal(parse(mptcp_string, &p, &why), -1);
    assert_string_equal(why, "parameter \"mptcp\" is not a boolean");
}

static void params_parse_as__flag_rules__read_as_each_server_version(void **state)
{
    /* what 3.12 clients send: true, and udp_counters_64bit as a number */
    static const char real[] =
        "{\"udp\":true,\"reverse\":true,\"udp_counters_64bit\":1,\"client_version\":\"3.12\"}";
    /* hand-made: flags as numbers and false */
    static const char odd[] = "{\"tcp\":true,\"reverse\":1,\"bidirectional\":false,"
                              "\"udp_counters_64bit\":0}";
    struct i3_params p;
    const char *why;

    (void)state;
    for (int rule = I3_FLAGS_LENIENT; rule <= I3_FLAGS_TYPED; rule++) {
        assert_int_equal(i3_params_parse_as(real, strlen(real), (enum i3_flag_rule)rule, &p,
                                            &why), 0);
        assert_int_equal(p.proto, I3_PROTO_UDP);
        assert_true(p.reverse);
        assert_true(p.udp_counters_64bit);
        assert_string_equal(p.misread_flag, "");   /* real clients read alike everywhere */
    }

    /* unknown server: true or a nonzero number */
    assert_int_equal(i3_params_parse_as(odd, strlen(odd), I3_FLAGS_LENIENT, &p, &why), 0);
    assert_true(p.reverse);
    assert_false(p.bidir);
    assert_false(p.udp_counters_64bit);
    assert_string_equal(p.misread_flag, "");
    /* up to 3.17 the key alone sets the flag: bidir despite false */
    assert_int_equal(i3_params_parse_as(odd, strlen(odd), I3_FLAGS_PRESENCE, &p, &why), 0);
    assert_true(p.reverse);
    assert_true(p.bidir);
    assert_true(p.udp_counters_64bit);
    assert_string_equal(p.misread_flag, "bidirectional");
    assert_string_equal(i3_params_mode(&p), "TCP bidir");
    /* 3.18+: only true (numbers for udp_counters_64bit): "reverse":1 is ignored */
    assert_int_equal(i3_params_parse_as(odd, strlen(odd), I3_FLAGS_TYPED, &p, &why), 0);
    assert_false(p.reverse);
    assert_false(p.bidir);
    assert_true(p.udp_counters_64bit);
    assert_string_equal(p.misread_flag, "reverse");
    assert_string_equal(i3_params_mode(&p), "TCP");
}

static void params_parse__absent_numbers__zero(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{}", &p, NULL), 0);
    assert_int_equal(p.proto, I3_PROTO_TCP);
    assert_int_equal(p.len, 0);
    assert_int_equal(p.time, 0);
    assert_int_equal(p.bytes, 0);
    assert_int_equal(p.blockcount, 0);
    assert_int_equal(p.omit, 0);
    assert_int_equal(p.window, 0);
    assert_int_equal(p.mss, 0);
    assert_string_equal(p.client_version, "");
}

static void params_parse__bad_numbers__rejected(void **state)
{
    struct i3_params p;
    const char *why;

    (void)state;
    assert_int_equal(parse("{\"time\":-1}", &p, &why), -1);
    assert_string_equal(why, "parameter \"time\" is not a non-negative integer");
    assert_int_equal(parse("{\"len\":1.5}", &p, &why), -1);
    assert_string_equal(why, "parameter \"len\" is not a non-negative integer");
    assert_int_equal(parse("{\"num\":\"10G\"}", &p, &why), -1);
    assert_string_equal(why, "parameter \"num\" is not a non-negative integer");
    assert_int_equal(parse("{\"window\":1e19}", &p, &why), -1);
    assert_string_equal(why, "parameter \"window\" is not a non-negative integer");
    assert_int_equal(parse("{\"MSS\":true}", &p, &why), -1);
    assert_string_equal(why, "parameter \"MSS\" is not a non-negative integer");
}

static void params_parse__keys_case_insensitive__as_iperf3(void **state)
{
    /* cJSON_GetObjectItem, used by iperf3's get_parameters, ignores case */
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"Reverse\":true,\"PARALLEL\":4,\"mss\":1000}", &p, NULL), 0);
    assert_true(p.reverse);
    assert_int_equal(p.parallel, 4);
    assert_int_equal(p.mss, 1000);
}

static void params_parse__trailing_bytes_after_object__ignored_as_iperf3(void **state)
{
    struct i3_params p;

    (void)state;
    assert_int_equal(parse("{\"parallel\":2}garbage", &p, NULL), 0);
    assert_int_equal(p.parallel, 2);
}

static void params_parse__embedded_nul__text_cut_there(void **state)
{
    static const char b[] = "{\"parallel\":2}\0{\"parallel\":0}";
    static const char c[] = "{\"parallel\":\0 2}";
    struct i3_params p;

    (void)state;
    assert_int_equal(i3_params_parse(b, sizeof(b) - 1, &p, NULL), 0);
    assert_int_equal(p.parallel, 2);
    assert_int_equal(i3_params_parse(c, sizeof(c) - 1, &p, NULL), -1);
}

static void params_parse__client_version__copied_truncated_or_rejected(void **state)
{
    struct i3_params p;
    const char *why;

    (void)state;
    assert_int_equal(parse("{\"client_version\":\"3.21+\"}", &p, NULL), 0);
    assert_string_equal(p.client_version, "3.21+");
    assert_int_equal(parse("{\"client_version\":\"0123456789012345678901234567890123456789\"}",
                           &p, NULL), 0);
    assert_int_equal(strlen(p.client_version), sizeof(p.client_version) - 1);
    assert_memory_equal(p.client_version, "0123456789012345678901234567890", 31);
    assert_int_equal(parse("{\"client_version\":3.12}", &p, &why), -1);
    assert_string_equal(why, "parameter \"client_version\" is not a string");
}

static void params_stream_count__modes__p_or_2p(void **state)
{
    struct i3_params p;

    (void)state;
    memset(&p, 0, sizeof(p));
    p.parallel = 3;
    assert_int_equal(i3_params_stream_count(&p), 3);
    p.reverse = true;
    assert_int_equal(i3_params_stream_count(&p), 3);
    p.bidir = true;
    assert_int_equal(i3_params_stream_count(&p), 6);
    p.parallel = I3_MAX_PARALLEL;
    assert_int_equal(i3_params_stream_count(&p), 2 * I3_MAX_PARALLEL);
}

static void params_mode__every_combination__named(void **state)
{
    static const char *const want[3][3] = {
        { "TCP",  "TCP reverse",  "TCP bidir"  },
        { "UDP",  "UDP reverse",  "UDP bidir"  },
        { "SCTP", "SCTP reverse", "SCTP bidir" },
    };
    struct i3_params p;

    (void)state;
    memset(&p, 0, sizeof(p));
    p.parallel = 1;
    for (int proto = 0; proto < 3; proto++) {
        p.proto = (enum i3_proto)proto;
        p.reverse = false; p.bidir = false;
        assert_string_equal(i3_params_mode(&p), want[proto][0]);
        p.reverse = true;
        assert_string_equal(i3_params_mode(&p), want[proto][1]);
        p.reverse = false; p.bidir = true;
        assert_string_equal(i3_params_mode(&p), want[proto][2]);
    }
}

static void state_name__known_and_unknown(void **state)
{
    (void)state;
    assert_string_equal(i3_state_name(1), "TEST_START");
    assert_string_equal(i3_state_name(2), "TEST_RUNNING");
    assert_string_equal(i3_state_name(4), "TEST_END");
    assert_string_equal(i3_state_name(9), "PARAM_EXCHANGE");
    assert_string_equal(i3_state_name(10), "CREATE_STREAMS");
    assert_string_equal(i3_state_name(11), "SERVER_TERMINATE");
    assert_string_equal(i3_state_name(12), "CLIENT_TERMINATE");
    assert_string_equal(i3_state_name(13), "EXCHANGE_RESULTS");
    assert_string_equal(i3_state_name(14), "DISPLAY_RESULTS");
    assert_string_equal(i3_state_name(16), "IPERF_DONE");
    assert_string_equal(i3_state_name(-1), "ACCESS_DENIED");
    assert_string_equal(i3_state_name(-2), "SERVER_ERROR");
    assert_string_equal(i3_state_name(0), "UNKNOWN");
    assert_string_equal(i3_state_name(3), "UNKNOWN");
    assert_string_equal(i3_state_name(127), "UNKNOWN");
    assert_string_equal(i3_state_name(-3), "UNKNOWN");
    assert_string_equal(i3_state_name(INT8_MIN), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(feed__full_session_one_chunk_per_segment__all_events_in_order, setup_session),
        cmocka_unit_test_setup(feed__full_session_byte_by_byte__same_events, setup_session),
        cmocka_unit_test_setup(feed__full_session_split_at_every_offset__same_events, setup_session),
        cmocka_unit_test_setup(feed__full_session_random_chunks__same_events, setup_session),
        cmocka_unit_test_setup(feed__params_json__parses_as_bidir_two_streams_each_way, setup_session),
        cmocka_unit_test_setup(feed__truncated_session_every_prefix__no_spurious_event, setup_session),
        cmocka_unit_test(feed__three_states_in_one_chunk__one_event_per_call),
        cmocka_unit_test(feed__zero_length_input__returns_zero_no_event),
        cmocka_unit_test(feed__cookie_and_first_state_in_one_chunk__cookie_event_stops_at_byte_37),
        cmocka_unit_test(feed__cookie_is_opaque__any_bytes_accepted),
        cmocka_unit_test(feed__params_buffer_valid_until_next_feed_on_same_direction),
        cmocka_unit_test(free__with_kept_params__releases_buffer),
        cmocka_unit_test(init__zero_caps__defaults),
        cmocka_unit_test(feed__server_error_split_at_every_offset__one_event_with_codes),
        cmocka_unit_test(feed__server_error_byte_by_byte__one_event),
        cmocka_unit_test(feed__server_error_codes__signed_big_endian),
        cmocka_unit_test(feed__server_error_after_params__then_close),
        cmocka_unit_test(feed__access_denied_first_byte__state_event_parser_usable),
        cmocka_unit_test(feed__server_error_where_server_results_due__reported_as_server_error),
        cmocka_unit_test(feed__321_server_error_after_display_results__event_with_codes),
        cmocka_unit_test(feed__client_terminate_where_params_due__reported_as_state),
        cmocka_unit_test(feed__terminal_byte_where_length_fits_cap__read_as_length),
        cmocka_unit_test(feed__json_length_0xffffffff__rejected_without_allocation),
        cmocka_unit_test(feed__json_length_cap_plus_one__rejected),
        cmocka_unit_test(feed__json_length_equal_cap__accepted),
        cmocka_unit_test(feed__json_length_zero__rejected),
        cmocka_unit_test(feed__client_results_length_above_cap__rejected),
        cmocka_unit_test(feed__server_results_length_above_cap__rejected),
        cmocka_unit_test(feed__after_error__returns_zero_and_same_error),
        cmocka_unit_test(feed__unknown_state_byte__rejected),
        cmocka_unit_test(feed__server_state_from_client__rejected),
        cmocka_unit_test(feed__client_state_from_server__rejected),
        cmocka_unit_test(feed__param_exchange_twice__rejected),
        cmocka_unit_test(feed__client_json_without_request__rejected_as_state),
        cmocka_unit_test(eof__between_messages__no_event),
        cmocka_unit_test(eof__inside_cookie__rejected),
        cmocka_unit_test(eof__inside_params_body__rejected),
        cmocka_unit_test(eof__after_server_error_and_one_code__server_error_errno_zero),
        cmocka_unit_test(eof__after_server_error_and_partial_code__rejected),
        cmocka_unit_test(params_parse__malformed_json__rejected),
        cmocka_unit_test(params_parse__parallel_out_of_range__rejected),
        cmocka_unit_test(params_parse__parallel_in_range__accepted),
        cmocka_unit_test(params_parse__booleans_as_true__set),
        cmocka_unit_test(params_parse__booleans_as_1__set),
        cmocka_unit_test(params_parse__booleans_false_0_null__not_set),
        cmocka_unit_test(params_parse__boolean_as_string__rejected),
        cmocka_unit_test(params_parse__several_protocols__last_applied_by_iperf3_wins),
        cmocka_unit_test(params_parse__bidir_and_reverse__bidir_wins),
        cmocka_unit_test(params_parse__iperf3_312_captures__all_fields),
        cmocka_unit_test(params_parse__newer_client_captures__mptcp_and_version),
        cmocka_unit_test(params_parse_as__flag_rules__read_as_each_server_version),
        cmocka_unit_test(params_parse__absent_numbers__zero),
        cmocka_unit_test(params_parse__bad_numbers__rejected),
        cmocka_unit_test(params_parse__keys_case_insensitive__as_iperf3),
        cmocka_unit_test(params_parse__trailing_bytes_after_object__ignored_as_iperf3),
        cmocka_unit_test(params_parse__embedded_nul__text_cut_there),
        cmocka_unit_test(params_parse__client_version__copied_truncated_or_rejected),
        cmocka_unit_test(params_stream_count__modes__p_or_2p),
        cmocka_unit_test(params_mode__every_combination__named),
        cmocka_unit_test(state_name__known_and_unknown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
