#include "proxy/pool.h"

#include "proxy/log.h"
#include "proxy/net.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define BACKOFF_MIN   2.0    /* s: first back-off of a failed member */
#define BACKOFF_MAX  60.0    /* s: longest back-off */
#define BUSY_RETRY    1.0    /* s: a member that refused a test is not asked again sooner */
#define SETTLE        0.1    /* s: after a test, an iperf3 3.12 server re-creates its listener */
#define SETTLE_REFUSE 0.5    /* s: a refused connect this soon after a test means "not yet" */

int pool_list_add(struct pool_list *l, const char *hostport, const char **why)
{
    if (l->n >= POOL_MAX) {
        *why = "too many servers in one pool (at most 64)";
        return -1;
    }
    if (net_parse_hostport(hostport, &l->addr[l->n], &l->len[l->n], why) == -1)
        return -1;
    l->n++;
    return 0;
}

char *pool_list_str(const struct pool_list *l, char *buf, size_t n)
{
    size_t off = 0;
    int i = 0;
    buf[0] = '\0';
    if (l->n > 1)
        off += (size_t)snprintf(buf, n, "(");
    for (; i < l->n && off + ADDR_STR_MAX + 8 < n; i++) {
        char a[ADDR_STR_MAX];
        net_addr_str((const struct sockaddr *)&l->addr[i], a, sizeof(a));
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", a);
    }
    snprintf(buf + off, n - off, "%s%s", i < l->n ? ", ..." : "", l->n > 1 ? ")" : "");
    return buf;
}

const char *member_health_str(enum member_health h)
{
    switch (h) {
    case MEMBER_UP:      return "up";
    case MEMBER_DOWN:    return "down";
    case MEMBER_SUSPECT: return "suspect";
    }
    return "?";
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void member_set(struct pool_member *m, const struct sockaddr_storage *a, socklen_t len)
{
    memset(m, 0, sizeof(*m));
    m->addr = *a;
    m->len = len;
    m->backoff = BACKOFF_MIN;
}

void pool_init(struct pool *p, struct ev_loop *loop, const char *what, const char *svc_name,
               const struct pool_list *l)
{
    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->what = what;
    p->svc_name = svc_name;
    for (int i = 0; i < l->n; i++)
        member_set(&p->m[i], &l->addr[i], l->len[i]);
    p->n = l->n;
    ev_timer_init(&p->retry, retry_cb, BUSY_RETRY, BUSY_RETRY);
    p->retry.data = p;
    ev_timer_init(&p->kick, kick_cb, SETTLE, 0);
    p->kick.data = p;
}

int pool_find(const struct pool *p, const struct sockaddr_storage *addr)
{
    for (int i = 0; i < p->n; i++)
        if (net_same_addr(&p->m[i].addr, addr))
            return i;
    return -1;
}

void pool_configure(struct pool *p, const struct pool_list *l)
{
    struct pool_member next[POOL_MAX];
    for (int i = 0; i < l->n; i++) {
        int k = pool_find(p, &l->addr[i]);
        if (k >= 0)
            next[i] = p->m[k];
        else
            member_set(&next[i], &l->addr[i], l->len[i]);
    }
    memcpy(p->m, next, sizeof(next[0]) * (size_t)l->n);
    p->n = l->n;
    p->next_pick = 0;
    ev_timer_start(p->loop, &p->kick);   /* new members may take waiting tests */
}

void pool_stop(struct pool *p)
{
    ev_timer_stop(p->loop, &p->retry);
    ev_timer_stop(p->loop, &p->kick);
}

/* May member m be offered a connection now? */
static bool usable(const struct pool_member *m, ev_tstamp now)
{
    return m->health == MEMBER_UP || now >= m->retry_at;
}

bool pool_all_down(const struct pool *p);

int pool_pick_iperf3(struct pool *p, uint64_t skip)
{
    ev_tstamp now = ev_now(p->loop);
    for (int k = 0; k < p->n; k++) {
        int i = (p->next_pick + k) % p->n;
        struct pool_member *m = &p->m[i];
        if ((skip >> i) & 1u || m->tests > 0 || now < m->busy_until || !usable(m, now))
            continue;
        p->next_pick = (i + 1) % p->n;
        m->tests++;
        return i;
    }
    if (!pool_all_down(p))
        return -1;
    int best = -1;   /* every member down: the one whose back-off ends first */
    for (int i = 0; i < p->n; i++)
        if (!((skip >> i) & 1u) && p->m[i].tests == 0 &&
            (best < 0 || p->m[i].retry_at < p->m[best].retry_at))
            best = i;
    if (best >= 0)
        p->m[best].tests++;
    return best;
}

int pool_pick_any(struct pool *p, uint64_t skip)
{
    int best = -1;
    for (int i = 0; i < p->n; i++)
        if (!((skip >> i) & 1u) && (best < 0 || p->m[i].tests < p->m[best].tests))
            best = i;
    if (best >= 0)
        p->m[best].tests++;
    return best;
}

int pool_pick_iperf2(struct pool *p)
{
    ev_tstamp now = ev_now(p->loop);
    int best = -1;
    for (int i = 0; i < p->n; i++)
        if (usable(&p->m[i], now) && (best < 0 || p->m[i].load < p->m[best].load))
            best = i;
    if (best < 0) {   /* every one down: the one whose back-off ends first */
        for (int i = 0; i < p->n; i++)
            if (best < 0 || p->m[i].retry_at < p->m[best].retry_at)
                best = i;
    }
    if (best >= 0) {
        p->m[best].load++;
        p->m[best].served++;
    }
    return best;
}

bool pool_all_down(const struct pool *p)
{
    ev_tstamp now = ev_now(p->loop);
    for (int i = 0; i < p->n; i++)
        if (usable(&p->m[i], now))
            return false;
    return true;
}

bool pool_any_busy(const struct pool *p)
{
    ev_tstamp now = ev_now(p->loop);
    for (int i = 0; i < p->n; i++)
        if (p->m[i].tests > 0 || now < p->m[i].busy_until)
            return true;
    return false;
}

void pool_member_ok(struct pool *p, int i)
{
    struct pool_member *m = &p->m[i];
    char a[ADDR_STR_MAX];
    if (m->health != MEMBER_UP)
        log_info("service %s: %s server %s is back up", p->svc_name, p->what,
                 net_addr_str((const struct sockaddr *)&m->addr, a, sizeof(a)));
    m->health = MEMBER_UP;
    m->backoff = BACKOFF_MIN;
}

void pool_member_failed(struct pool *p, int i, bool suspect, const char *why)
{
    struct pool_member *m = &p->m[i];
    char a[ADDR_STR_MAX];
    if (m->health == MEMBER_UP)
        log_warn("service %s: %s server %s is %s (%s): skipped for %.0f s, then tried again",
                 p->svc_name, p->what,
                 net_addr_str((const struct sockaddr *)&m->addr, a, sizeof(a)),
                 suspect ? "suspect" : "down", why, m->backoff);
    m->health = suspect ? MEMBER_SUSPECT : MEMBER_DOWN;
    m->retry_at = ev_now(p->loop) + m->backoff;
    m->backoff = m->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : m->backoff * 2;
}

bool pool_member_settling(const struct pool *p, int i)
{
    return p->m[i].released_at > 0 && ev_now(p->loop) - p->m[i].released_at < SETTLE_REFUSE;
}

void pool_member_refused(struct pool *p, int i)
{
    p->m[i].refusals++;
    p->m[i].busy_until = ev_now(p->loop) + BUSY_RETRY;
}

void pool_release_iperf3(struct pool *p, const struct sockaddr_storage *addr)
{
    int i = pool_find(p, addr);
    if (i < 0 || p->m[i].tests == 0)
        return;
    p->m[i].tests--;
    p->m[i].released_at = ev_now(p->loop);
    if (p->queued > 0)
        ev_timer_start(p->loop, &p->kick);   /* from the loop, not from inside a callback */
}

void pool_release_iperf2(struct pool *p, const struct sockaddr_storage *addr)
{
    int i = pool_find(p, addr);
    if (i >= 0 && p->m[i].load > 0)
        p->m[i].load--;
}

void pool_enqueue(struct pool *p, struct pool_waiter *w)
{
    struct pool_waiter *after = p->tail;   /* the last waiter older than w */
    while (after != NULL && after->since > w->since)
        after = after->prev;
    w->prev = after;
    w->next = after ? after->next : p->head;
    if (w->next)
        w->next->prev = w;
    else
        p->tail = w;
    if (after)
        after->next = w;
    else
        p->head = w;
    w->queued = true;
    if (p->queued++ == 0)
        ev_timer_again(p->loop, &p->retry);
}

void pool_dequeue(struct pool *p, struct pool_waiter *w)
{
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        p->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        p->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    if (--p->queued == 0)
        ev_timer_stop(p->loop, &p->retry);
}

void pool_count_wait(struct pool *p, double waited)
{
    p->waited++;
    p->wait_sum += waited;
    if (waited > p->wait_max)
        p->wait_max = waited;
}

/* True if some member could take an iperf3 test now. */
static bool any_free(const struct pool *p)
{
    ev_tstamp now = ev_now(p->loop);
    for (int i = 0; i < p->n; i++)
        if (p->m[i].tests == 0 && now >= p->m[i].busy_until && usable(&p->m[i], now))
            return true;
    return false;
}

/* Wakes the oldest waiters while a member is free.  Each woken waiter
 * either claims a member (pool_pick_iperf3) or queues again behind the
 * ones it was older than; the loop stops at a waiter that queued again. */
static void wake_waiters(struct pool *p)
{
    while (p->head != NULL && any_free(p)) {
        struct pool_waiter *w = p->head;
        pool_dequeue(p, w);
        w->wake(w);
        if (w->queued)
            break;
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    wake_waiters(w->data);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    wake_waiters(w->data);
}

void pool_counts(const struct pool *p, int *up, int *down, int *busy)
{
    *up = *down = *busy = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->m[i].health == MEMBER_UP)
            (*up)++;
        else
            (*down)++;
        if (p->m[i].tests > 0)
            (*busy)++;
    }
}
