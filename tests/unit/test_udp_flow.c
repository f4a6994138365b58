/* Unit tests for proxy/udp_flow.c, the UDP flow table: lookup by client
 * address (IPv4 and IPv6, port included), detach (a new test from a lingering
 * flow's address), expiry after --udp-linger of quiet, and freeing with
 * datagrams still queued (no leak, no fd left open).  A real libev loop and
 * real (unconnected) UDP sockets stand in for the flows' upstream sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/service.h"
#include "proxy/udp_flow.h"

struct fixture {
    struct ev_loop       *loop;
    struct service_config cfg;
    struct service        svc;   /* the owner: only its stats are used */
    struct udp_state     *u;
    int                   fds_before;
};

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->fds_before = open_fds();
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    service_config_defaults(&fx->cfg);
    fx->cfg.udp_linger = 0.05;
    fx->u = calloc(1, sizeof(*fx->u));
    fx->u->svc = &fx->svc;
    fx->u->cfg = &fx->cfg;
    fx->u->loop = fx->loop;
    fx->u->fd = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    for (int h = 0; h < HASH_BUCKETS; h++)
        while (fx->u->hash[h])
            udp_flow_free(fx->u->hash[h]);
    while (fx->u->detached)
        udp_flow_free(fx->u->detached);
    assert_int_equal(fx->u->nflows, 0);
    free(fx->u);
    ev_loop_destroy(fx->loop);
    assert_int_equal(open_fds(), fx->fds_before);   /* every flow's socket was closed */
    free(fx);
    return 0;
}

static struct sockaddr_storage addr4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s->sin_addr);
    return ss;
}

static struct sockaddr_storage addr6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s->sin6_addr);
    return ss;
}

/* A flow as flow_new() makes one, minus the sockets' connect. */
static struct udp_flow *flow_add(struct fixture *fx, struct sockaddr_storage client)
{
    struct udp_flow *f = calloc(1, sizeof(*f));
    f->u = fx->u;
    f->client = client;
    f->clen = client.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6);
    f->ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(f->ufd >= 0);
    f->cfd = -1;
    f->last[0] = f->last[1] = ev_now(fx->loop);
    udp_flow_insert(fx->u, f);
    return f;
}

/* Runs the loop until the table has n flows, at most about 2 s. */
static void run_until_flows(struct fixture *fx, int n)
{
    for (int i = 0; i < 400 && fx->u->nflows != n; i++) {
        ev_run(fx->loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(5000);
    }
}

static void lookup__same_address_and_port__found_other_port_not(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage a = addr4("10.0.0.1", 5001), b = addr4("10.0.0.1", 5002);
    struct udp_flow *f = flow_add(fx, a);
    assert_ptr_equal(udp_flow_lookup(fx->u, &a), f);
    assert_null(udp_flow_lookup(fx->u, &b));
    struct sockaddr_storage c = addr4("10.0.0.2", 5001);
    assert_null(udp_flow_lookup(fx->u, &c));
    assert_int_equal(fx->u->nflows, 1);
    assert_int_equal(fx->u->ctr.flows, 1);
}

static void lookup__ipv6__found_and_distinct_from_ipv4(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage v6 = addr6("fd00::1", 5001), v6b = addr6("fd00::2", 5001);
    struct sockaddr_storage v4 = addr4("0.0.0.0", 5001);
    struct udp_flow *f = flow_add(fx, v6);
    assert_ptr_equal(udp_flow_lookup(fx->u, &v6), f);
    assert_null(udp_flow_lookup(fx->u, &v6b));
    assert_null(udp_flow_lookup(fx->u, &v4));
}

static void lookup__many_flows__each_found(void **state)
{
    struct fixture *fx = *state;
    struct udp_flow *fl[300];
    for (int i = 0; i < 300; i++)
        fl[i] = flow_add(fx, addr4("10.1.0.1", (uint16_t)(20000 + i)));
    for (int i = 0; i < 300; i++) {
        struct sockaddr_storage a = addr4("10.1.0.1", (uint16_t)(20000 + i));
        assert_ptr_equal(udp_flow_lookup(fx->u, &a), fl[i]);
    }
    udp_flow_free(fl[150]);
    struct sockaddr_storage gone = addr4("10.1.0.1", 20150);
    assert_null(udp_flow_lookup(fx->u, &gone));
    assert_int_equal(fx->u->nflows, 299);
}

static void detach__lookup_misses__new_flow_takes_address(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage a = addr4("10.0.0.1", 5001);
    struct udp_flow *old = flow_add(fx, a);
    udp_flow_detach(old);
    assert_true(old->detached);
    assert_null(udp_flow_lookup(fx->u, &a));
    assert_int_equal(fx->u->nflows, 1);          /* it lingers on, counted */
    struct udp_flow *nf = flow_add(fx, a);
    assert_ptr_equal(udp_flow_lookup(fx->u, &a), nf);
    assert_int_equal(fx->u->nflows, 2);
    udp_flow_free(old);                          /* off the detached list */
    assert_null(fx->u->detached);
    assert_ptr_equal(udp_flow_lookup(fx->u, &a), nf);
}

static void linger__quiet_flow__expires(void **state)
{
    struct fixture *fx = *state;
    flow_add(fx, addr4("10.0.0.1", 5001));
    run_until_flows(fx, 0);
    assert_int_equal(fx->u->nflows, 0);
}

static void linger__recent_server_datagram__outlives_first_expiry(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.udp_linger = 0.2;
    struct udp_flow *f = flow_add(fx, addr4("10.0.0.1", 5001));
    ev_tstamp start = ev_now(fx->loop);
    /* the server keeps sending for 0.3 s: the flow must stay while it does */
    while (ev_now(fx->loop) - start < 0.3) {
        f->last[1] = ev_now(fx->loop);
        ev_run(fx->loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(5000);
        ev_now_update(fx->loop);
        assert_int_equal(fx->u->nflows, 1);
    }
    ev_tstamp last = f->last[1];   /* the server's last datagram */
    run_until_flows(fx, 0);
    assert_int_equal(fx->u->nflows, 0);
    assert_true(ev_now(fx->loop) - last >= 0.2 - 0.01);   /* freed only after 0.2 s of quiet */
}

static void free__queued_datagrams__released(void **state)
{
    struct fixture *fx = *state;
    struct udp_flow *f = flow_add(fx, addr4("10.0.0.1", 5001));
    for (int dir = 0; dir < 2; dir++) {
        for (int i = 0; i < 3; i++) {
            struct qdgram *d = malloc(sizeof(*d) + 100);
            d->next = NULL;
            d->len = 100;
            if (f->q[dir].tail)
                f->q[dir].tail->next = d;
            else
                f->q[dir].head = d;
            f->q[dir].tail = d;
            f->q[dir].count++;
            f->q[dir].bytes += 100;
        }
    }
    f->report = malloc(128);
    f->report_len = 128;
    udp_flow_free(f);   /* ASan: nothing of it leaks */
    assert_int_equal(fx->u->nflows, 0);
}

int main(void)
{
    log_threshold = LOG_ERROR;   /* each freed flow logs its line: not wanted here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lookup__same_address_and_port__found_other_port_not, setup, teardown),
        cmocka_unit_test_setup_teardown(lookup__ipv6__found_and_distinct_from_ipv4, setup, teardown),
        cmocka_unit_test_setup_teardown(lookup__many_flows__each_found, setup, teardown),
        cmocka_unit_test_setup_teardown(detach__lookup_misses__new_flow_takes_address, setup, teardown),
        cmocka_unit_test_setup_teardown(linger__quiet_flow__expires, setup, teardown),
        cmocka_unit_test_setup_teardown(linger__recent_server_datagram__outlives_first_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(free__queued_datagrams__released, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
