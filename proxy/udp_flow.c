/* The UDP flow table: flows by client address, detached flows that only
 * linger, expiry when quiet both ways for --udp-linger, and the flow's log
 * line when it goes. */
#include "proxy/udp_flow.h"

#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/udp_back.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FNV-1a of an address and port, continuing from h. */
static uint32_t sa_hash1(uint32_t h, const struct sockaddr_storage *a)
{
    const uint8_t *p;
    size_t n;
    if (a->ss_family == 0)
        return h;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)a;
        p = (const uint8_t *)&s->sin_addr;
        n = sizeof(s->sin_addr);
        h = (h ^ s->sin_port) * 16777619u;
    } else {
        const struct sockaddr_in6 *s = (const void *)a;
        p = (const uint8_t *)&s->sin6_addr;
        n = sizeof(s->sin6_addr);
        h = (h ^ s->sin6_port) * 16777619u;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The bucket of a flow key: the client, and the destination (family 0
 * outside --transparent). */
static unsigned sa_hash(const struct sockaddr_storage *client,
                        const struct sockaddr_storage *dest)
{
    return sa_hash1(sa_hash1(2166136261u, client), dest) % HASH_BUCKETS;
}

const char *udp_flow_client_str(const struct udp_flow *f, char *buf)
{
    return net_addr_str((const struct sockaddr *)&f->client, buf, ADDR_STR_MAX);
}

static void flow_log_end(const struct udp_flow *f)
{
    char c[ADDR_STR_MAX], sv[ADDR_STR_MAX];
    if (f->proto == UDP_IPERF2) {
        char back[96] = "";
        if (f->back != NULL) {
            uint64_t to_c, to_s;
            udp_back_counts(f->back, &to_c, &to_s);
            snprintf(back, sizeof(back), "; connect-back: %" PRIu64 " datagrams to client, %"
                     PRIu64 " to server", to_c, to_s);
        }
        log_info("iperf2 UDP flow %s ended (%s): server %s; %" PRIu64 " datagrams (%" PRIu64
                 " bytes) to "
                 "server, %" PRIu64 " to client; final datagrams %" PRIu32 " (%" PRIu32
                 " answered by the shim), Server Report %s (%" PRIu32 " later copies absorbed); "
                 "ICMP errors absorbed %" PRIu32 "; queue drops %" PRIu64 "%s",
                 udp_flow_client_str(f, c), i2_mode_name(f->i2.hdr.mode),
                 net_addr_str((const struct sockaddr *)&f->server, sv, sizeof(sv)), f->dgrams[0],
                 f->bytes[0], f->dgrams[1], f->fins, f->fins_answered,
                 f->report ? "relayed" : (f->fin_seen ? "never came" : "not due"),
                 f->late_reports, f->icmp, f->drops, back);
    } else {
        log_info("iperf3 UDP stream %s ended: server %s; %" PRIu64 " datagrams (%" PRIu64
                 " bytes) to "
                 "server, %" PRIu64 " (%" PRIu64 " bytes) to client; ICMP errors absorbed %"
                 PRIu32 "; queue drops %" PRIu64, udp_flow_client_str(f, c),
                 net_addr_str((const struct sockaddr *)&f->server, sv, sizeof(sv)), f->dgrams[0],
                 f->bytes[0], f->dgrams[1], f->bytes[1], f->icmp, f->drops);
    }
}

void udp_flow_free(struct udp_flow *f)
{
    struct udp_state *u = f->u;
    unsigned h = sa_hash(&f->client, &f->dest);
    struct udp_flow **pp = f->detached ? &u->detached : &u->hash[h];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            break;
        }
    }
    if (f->waiting) {
        for (pp = &u->waiting; *pp; pp = &(*pp)->wnext) {
            if (*pp == f) {
                *pp = f->wnext;
                break;
            }
        }
    }
    flow_log_end(f);
    struct service_stats *st = &u->svc->stats;
    st->udp_bytes[0] += f->bytes[0];
    st->udp_bytes[1] += f->bytes[1];
    if (f->proto == UDP_IPERF2 && !f->detached) {   /* an iperf2 UDP stream is a test */
        struct test_info t = {
            .protocol = "iperf2", .transport = "udp", .mode = i2_mode_name(f->i2.hdr.mode),
            .client = f->client, .server = f->server, .started = f->started,
            .seconds = (f->last[0] > f->last[1] ? f->last[0] : f->last[1]) - f->created,
            .bytes = { f->bytes[0], f->bytes[1] }, .ok = f->report != NULL || !f->fin_seen,
        };
        snprintf(t.outcome, sizeof(t.outcome), "Server Report %s",
                 f->report ? "relayed" : (f->fin_seen ? "never came" : "not due"));
        stats_test_ended(st, &t);
    }
    if (f->member_held)
        pool_release_iperf2(&u->svc->pool2, &f->server);
    ev_io_stop(u->loop, &f->urd);
    ev_io_stop(u->loop, &f->uwr);
    ev_timer_stop(u->loop, &f->linger);
    close(f->ufd);
    if (f->cfd >= 0) {
        ev_io_stop(u->loop, &f->crd);
        ev_io_stop(u->loop, &f->cwr);
        close(f->cfd);
    }
    udp_back_close(f->back);
    udp_dgq_clear(&f->q[0]);
    udp_dgq_clear(&f->q[1]);
    free(f->report);
    free(f);
    u->nflows--;
}

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct udp_flow *f = w->data;
    struct udp_state *u = f->u;
    ev_tstamp last = f->last[0] > f->last[1] ? f->last[0] : f->last[1];
    ev_tstamp left = last + u->cfg->udp_linger - ev_now(loop);
    if (left > 0 || f->q[0].count > 0 || f->q[1].count > 0) {
        w->repeat = left > 0.05 ? left : 0.05;
        ev_timer_again(loop, w);
        return;
    }
    udp_flow_free(f);
}

struct udp_flow *udp_flow_lookup(const struct udp_state *u, const struct sockaddr_storage *client,
                                 const struct sockaddr_storage *dest)
{
    for (struct udp_flow *f = u->hash[sa_hash(client, dest)]; f; f = f->hnext)
        if (net_same_addr(&f->client, client) &&
            (dest->ss_family == 0 ? f->dest.ss_family == 0 : net_same_addr(&f->dest, dest)))
            return f;
    return NULL;
}

void udp_flow_insert(struct udp_state *u, struct udp_flow *f)
{
    ev_init(&f->linger, linger_cb);
    f->linger.repeat = u->cfg->udp_linger;
    f->linger.data = f;
    ev_timer_again(u->loop, &f->linger);
    unsigned h = sa_hash(&f->client, &f->dest);
    f->hnext = u->hash[h];
    u->hash[h] = f;
    u->nflows++;
    u->ctr.flows++;
}

void udp_flow_detach(struct udp_flow *f)
{
    struct udp_state *u = f->u;
    char c[ADDR_STR_MAX];
    unsigned h = sa_hash(&f->client, &f->dest);
    for (struct udp_flow **pp = &u->hash[h]; *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            break;
        }
    }
    f->detached = true;
    f->hnext = u->detached;
    u->detached = f;
    udp_dgq_clear(&f->q[1]);   /* nothing more goes to the old test's client */
    if (f->cfd >= 0) {         /* the new flow's own socket takes the client's datagrams */
        ev_io_stop(u->loop, &f->crd);
        ev_io_stop(u->loop, &f->cwr);
        close(f->cfd);
        f->cfd = -1;
    }
    log_debug("UDP client %s started a new test while its last flow lingered: "
              "a new flow serves it", udp_flow_client_str(f, c));
}
