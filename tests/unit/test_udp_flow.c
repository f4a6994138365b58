/* Unit tests for proxy/udp_flow.c, the UDP flow table: lookup by client
 * address (IPv4 and IPv6, port included), detach (a new test from a lingering
 * flow's address), expiry after --udp-linger of quiet, and freeing with
 * datagrams still queued (no leak, no fd left open); --transparent: flows
 * keyed by client and original destination, the destination from the
 * datagram's control data (which servers are served: test_transparent.c).  A real libev loop and
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
#include "proxy/net.h"
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

static const struct sockaddr_storage nodest;   /* outside --transparent: no destination */

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

/* A flow of --transparent: keyed by client and original destination, with a
 * client-facing socket (unbound here). */
static struct udp_flow *flow_add_to(struct fixture *fx, struct sockaddr_storage client,
                                    struct sockaddr_storage dest)
{
    struct udp_flow *f = calloc(1, sizeof(*f));
    f->u = fx->u;
    f->client = client;
    f->clen = client.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6);
    f->dest = dest;
    f->ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    f->cfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(f->ufd >= 0 && f->cfd >= 0);
    ev_io_init(&f->crd, NULL, f->cfd, EV_READ);
    ev_io_init(&f->cwr, NULL, f->cfd, EV_WRITE);
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
    assert_ptr_equal(udp_flow_lookup(fx->u, &a, &nodest), f);
    assert_null(udp_flow_lookup(fx->u, &b, &nodest));
    struct sockaddr_storage c = addr4("10.0.0.2", 5001);
    assert_null(udp_flow_lookup(fx->u, &c, &nodest));
    assert_int_equal(fx->u->nflows, 1);
    assert_int_equal(fx->u->ctr.flows, 1);
}

static void lookup__ipv6__found_and_distinct_from_ipv4(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage v6 = addr6("fd00::1", 5001), v6b = addr6("fd00::2", 5001);
    struct sockaddr_storage v4 = addr4("0.0.0.0", 5001);
    struct udp_flow *f = flow_add(fx, v6);
    assert_ptr_equal(udp_flow_lookup(fx->u, &v6, &nodest), f);
    assert_null(udp_flow_lookup(fx->u, &v6b, &nodest));
    assert_null(udp_flow_lookup(fx->u, &v4, &nodest));
}

static void lookup__many_flows__each_found(void **state)
{
    struct fixture *fx = *state;
    struct udp_flow *fl[300];
    for (int i = 0; i < 300; i++)
        fl[i] = flow_add(fx, addr4("10.1.0.1", (uint16_t)(20000 + i)));
    for (int i = 0; i < 300; i++) {
        struct sockaddr_storage a = addr4("10.1.0.1", (uint16_t)(20000 + i));
        assert_ptr_equal(udp_flow_lookup(fx->u, &a, &nodest), fl[i]);
    }
    udp_flow_free(fl[150]);
    struct sockaddr_storage gone = addr4("10.1.0.1", 20150);
    assert_null(udp_flow_lookup(fx->u, &gone, &nodest));
    assert_int_equal(fx->u->nflows, 299);
}

static void detach__lookup_misses__new_flow_takes_address(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage a = addr4("10.0.0.1", 5001);
    struct udp_flow *old = flow_add(fx, a);
    udp_flow_detach(old);
    assert_true(old->detached);
    assert_null(udp_flow_lookup(fx->u, &a, &nodest));
    assert_int_equal(fx->u->nflows, 1);          /* it lingers on, counted */
    struct udp_flow *nf = flow_add(fx, a);
    assert_ptr_equal(udp_flow_lookup(fx->u, &a, &nodest), nf);
    assert_int_equal(fx->u->nflows, 2);
    udp_flow_free(old);                          /* off the detached list */
    assert_null(fx->u->detached);
    assert_ptr_equal(udp_flow_lookup(fx->u, &a, &nodest), nf);
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

static void lookup__transparent__keyed_by_client_and_destination(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage c = addr4("10.0.0.1", 40000);
    struct sockaddr_storage a = addr4("10.2.0.2", 5201), b = addr4("10.3.0.2", 5201);
    struct sockaddr_storage a2 = addr4("10.2.0.2", 5001);
    struct udp_flow *fa = flow_add_to(fx, c, a), *fb = flow_add_to(fx, c, b);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &a), fa);   /* one client, two servers */
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &b), fb);
    assert_null(udp_flow_lookup(fx->u, &c, &a2));           /* the port is part of the key */
    assert_null(udp_flow_lookup(fx->u, &c, &nodest));       /* no destination, no match */
    struct sockaddr_storage c2 = addr4("10.0.0.1", 40001);
    assert_null(udp_flow_lookup(fx->u, &c2, &a));
    struct udp_flow *plain = flow_add(fx, c);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &nodest), plain);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &a), fa);
}

static void lookup__transparent_ipv6__keyed_by_destination(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage c = addr6("fd00:1::2", 40000);
    struct sockaddr_storage a = addr6("fd00:2::2", 5201), b = addr6("fd00:3::2", 5201);
    struct sockaddr_storage a4 = addr6("::ffff:10.2.0.2", 5201);
    struct udp_flow *fa = flow_add_to(fx, c, a);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &a), fa);
    assert_null(udp_flow_lookup(fx->u, &c, &b));
    assert_null(udp_flow_lookup(fx->u, &c, &a4));
    struct udp_flow *fb = flow_add_to(fx, c, b);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &b), fb);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &a), fa);
}

static void detach__transparent__closes_client_socket_lingers_on(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_storage c = addr4("10.0.0.1", 40000), a = addr4("10.2.0.2", 5001);
    struct udp_flow *old = flow_add_to(fx, c, a);
    udp_flow_detach(old);
    assert_int_equal(old->cfd, -1);            /* the new flow's socket takes the client */
    assert_true(old->ufd >= 0);                /* the upstream port stays open (#391) */
    assert_null(udp_flow_lookup(fx->u, &c, &a));
    struct udp_flow *nf = flow_add_to(fx, c, a);
    assert_ptr_equal(udp_flow_lookup(fx->u, &c, &a), nf);
    assert_int_equal(fx->u->nflows, 2);
}

/* A received datagram's control data, as the kernel gives it. */
struct cmsg_buf {
    union { struct cmsghdr align; uint8_t b[128]; } u;
    struct msghdr mh;
};

static void cmsg_put(struct cmsg_buf *cb, int level, int type, const void *data, size_t len)
{
    memset(cb, 0, sizeof(*cb));
    cb->mh.msg_control = cb->u.b;
    cb->mh.msg_controllen = CMSG_SPACE(len);
    struct cmsghdr *c = CMSG_FIRSTHDR(&cb->mh);
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), data, len);
}

static void origdst__ipv4__plain_or_v4_mapped_by_listener_family(void **state)
{
    (void)state;
    struct sockaddr_storage a = addr4("10.2.0.2", 5001), got;
    struct cmsg_buf cb;
    cmsg_put(&cb, IPPROTO_IP, IP_ORIGDSTADDR, &a, sizeof(struct sockaddr_in));
    assert_int_equal(udp_tp_dest_from_cmsg(&cb.mh, AF_INET, &got), 0);
    assert_true(net_same_addr(&got, &a));
    assert_int_equal(udp_tp_dest_from_cmsg(&cb.mh, AF_INET6, &got), 0);
    assert_int_equal(got.ss_family, AF_INET6);      /* a dual-stack listener's form */
    struct sockaddr_storage m = addr6("::ffff:10.2.0.2", 5001);
    assert_true(net_same_addr(&got, &m));
}

static void origdst__ipv6_and_none(void **state)
{
    (void)state;
    struct sockaddr_storage a = addr6("fd00:2::2", 5201), got;
    struct cmsg_buf cb;
    cmsg_put(&cb, IPPROTO_IPV6, IPV6_ORIGDSTADDR, &a, sizeof(struct sockaddr_in6));
    assert_int_equal(udp_tp_dest_from_cmsg(&cb.mh, AF_INET6, &got), 0);
    assert_true(net_same_addr(&got, &a));
    assert_int_equal(udp_tp_dest_from_cmsg(&cb.mh, AF_INET, &got), -1);   /* no IPv4 form */
    struct in_pktinfo pi = { 0 };
    cmsg_put(&cb, IPPROTO_IP, IP_PKTINFO, &pi, sizeof(pi));
    assert_int_equal(udp_tp_dest_from_cmsg(&cb.mh, AF_INET, &got), -1);   /* not TPROXY'd */
    assert_int_equal(got.ss_family, 0);
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
        cmocka_unit_test_setup_teardown(lookup__transparent__keyed_by_client_and_destination, setup, teardown),
        cmocka_unit_test_setup_teardown(lookup__transparent_ipv6__keyed_by_destination, setup, teardown),
        cmocka_unit_test_setup_teardown(detach__transparent__closes_client_socket_lingers_on, setup, teardown),
        cmocka_unit_test(origdst__ipv4__plain_or_v4_mapped_by_listener_family),
        cmocka_unit_test(origdst__ipv6_and_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
