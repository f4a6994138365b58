/*
 * A pool of upstream servers behind one service (--upstream given several
 * times; a single --upstream is a pool of one).  The pool knows, for each
 * member, whether it is reachable and how loaded it is; it never opens a
 * connection itself (an idle connection blocks an iperf3 3.12 server).
 *
 * Health of a member:
 *
 *   UP ──connect failed / timed out──> DOWN ──back-off over, tried──> UP
 *    └──accepted, never answered the cookie──> SUSPECT ──(same)──> UP
 *
 * A DOWN or SUSPECT member is skipped until its back-off (2 s, doubling up
 * to 60 s) is over; then the next test may try it.  One log line when a
 * member goes down and one when it comes back.
 *
 * iperf3: a member runs one test at a time.  A member is "free" when no
 * test of ours is on it (or being offered to it) and it has not refused one
 * (ACCESS_DENIED) in the last second.  When no member is free, tests wait in
 * a FIFO queue; the pool wakes the oldest waiters when a member is released
 * and once a second while the queue is not empty (a member busy with a test
 * from elsewhere is asked again then).
 *
 * iperf2: the least-loaded member that is up (sessions and UDP flows).
 */
#ifndef IPERF_SHIM_PROXY_POOL_H
#define IPERF_SHIM_PROXY_POOL_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define POOL_MAX 64   /* members of one pool */

/* The configured members, in order (struct service_config). */
struct pool_list {
    int                     n;              /* entries used */
    struct sockaddr_storage addr[POOL_MAX]; /* member addresses */
    socklen_t               len[POOL_MAX];  /* their lengths */
};

/* Adds "host:port" to l.  Returns 0, or -1 with *why set. */
int  pool_list_add(struct pool_list *l, const char *hostport, const char **why);

#define POOL_LIST_STR_MAX 4096   /* pool_list_str() buffer: enough for a few dozen members */

/* The members as "a" or "(a, b, c)" (cut with "..." if buf is short).  Returns buf. */
char *pool_list_str(const struct pool_list *l, char *buf, size_t n);

enum member_health {
    MEMBER_UP = 0,    /* reachable (or never tried) */
    MEMBER_DOWN,      /* its last connect failed or timed out */
    MEMBER_SUSPECT,   /* accepted but never answered within the bound */
};

struct pool_member {
    struct sockaddr_storage addr;       /* where it listens */
    socklen_t               len;        /* its length */
    enum member_health      health;     /* see the diagram above */
    double                  backoff;    /* s: the next back-off if it fails again */
    ev_tstamp               retry_at;   /* DOWN / SUSPECT: not tried before this */
    int                     tests;      /* iperf3: tests of ours on it or being offered */
    ev_tstamp               busy_until; /* iperf3: it refused a test; not asked before this */
    int                     load;       /* iperf2: sessions and UDP flows on it */
    uint64_t                served;     /* tests it took */
    uint64_t                refusals;   /* ACCESS_DENIED answers it gave */
    ev_tstamp               released_at;/* iperf3: when a test of ours last left it (0: never) */
};

/* A test waiting for a member (embedded in the test). */
struct pool_waiter {
    struct pool_waiter *prev, *next;   /* the queue, oldest first */
    ev_tstamp           since;         /* when it first queued */
    bool                queued;        /* in the queue now */
    void (*wake)(struct pool_waiter *w); /* taken out of the queue: a member may be free */
};

struct pool {
    struct ev_loop     *loop;
    const char         *what;          /* "iperf3" or "iperf2", for logs */
    const char         *svc_name;      /* the service's name, for logs */
    struct pool_member  m[POOL_MAX];   /* the members */
    int                 n;             /* members used */
    int                 next_pick;     /* iperf3: where the next search starts (round robin) */
    struct pool_waiter *head, *tail;   /* the queue */
    int                 queued;        /* waiters in it */
    ev_timer            retry;         /* while queued: wakes waiters once a second */
    ev_timer            kick;          /* deferred wake-up after a member was released */
    uint64_t            waited;        /* tests that left the queue for a member */
    double              wait_sum;      /* s: their total wait */
    double              wait_max;      /* s: the longest */
    uint64_t            queue_timeouts;/* tests refused: waited --queue-timeout */
    uint64_t            queue_full;    /* tests refused: queue at --queue-max */
};

/* Sets up p with the members of l (nothing opened). */
void pool_init(struct pool *p, struct ev_loop *loop, const char *what, const char *svc_name,
               const struct pool_list *l);

/* New members after a reload: members still listed keep their state. */
void pool_configure(struct pool *p, const struct pool_list *l);

/* Stops the timers (the queue must be empty). */
void pool_stop(struct pool *p);


/* The member at addr, or -1 (removed by a reload). */
int  pool_find(const struct pool *p, const struct sockaddr_storage *addr);

/* iperf3: a free member not in skip (bit i: member i), counted in its
 * tests; when every member is down, the one whose back-off ends first
 * (down members are not skipped for good); -1 if none. */
int  pool_pick_iperf3(struct pool *p, uint64_t skip);

/* iperf3 without a queue: the member not in skip with the fewest tests of
 * ours, busy or not (its own answer goes to the client), or -1. */
int  pool_pick_any(struct pool *p, uint64_t skip);

/* iperf2: the least-loaded usable member; if every one is down, the one
 * whose back-off ends first (-1 only for an empty pool). */
int  pool_pick_iperf2(struct pool *p);

/* True when every member is down or suspect and still in its back-off. */
bool pool_all_down(const struct pool *p);

/* True when some member runs (or is being offered) a test of ours, or
 * refused one (ACCESS_DENIED) within the last second: worth waiting for. */
bool pool_any_busy(const struct pool *p);

/* The member answered or connected: back to UP (logged if it was not). */
void pool_member_ok(struct pool *p, int i);

/* The member failed (connect refused or timed out, or no answer when
 * suspect is true): DOWN or SUSPECT with back-off (logged once). */
void pool_member_failed(struct pool *p, int i, bool suspect, const char *why);

/* iperf3: did a test of ours leave the member moments ago (0.5 s)?  A 3.12 server
 * closes and re-opens its listening socket after each test: a connection
 * refused then means "not yet", not "down". */
bool pool_member_settling(const struct pool *p, int i);

/* iperf3: the member refused a test (ACCESS_DENIED, or not listening yet
 * right after a test): not asked again for a second. */
void pool_member_refused(struct pool *p, int i);

/* iperf3: a test of ours left member addr (no-op if it is gone); wakes the queue. */
void pool_release_iperf3(struct pool *p, const struct sockaddr_storage *addr);

/* iperf2: one session or flow fewer on member addr (no-op if it is gone). */
void pool_release_iperf2(struct pool *p, const struct sockaddr_storage *addr);

/* Queues w (kept in order of w->since, which the caller sets on first queuing). */
void pool_enqueue(struct pool *p, struct pool_waiter *w);

/* Takes w out of the queue (no-op if it is not in it). */
void pool_dequeue(struct pool *p, struct pool_waiter *w);

/* A waiter got a member after waiting `waited` seconds (metrics). */
void pool_count_wait(struct pool *p, double waited);

/* Members up (health UP), down (DOWN or SUSPECT), busy (iperf3: a test on it). */
void pool_counts(const struct pool *p, int *up, int *down, int *busy);

const char *member_health_str(enum member_health h);

#endif
