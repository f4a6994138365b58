/* Unit tests for proxy/udp_io.c's batched sends: runs of equal-sized
 * datagrams leave in UDP_SEGMENT sends, and every datagram still arrives as
 * itself (same size, same bytes, same order) and is counted once, with the
 * offload on, off (--no-udp-gso), and refused by the socket (then the flow
 * falls back by itself).  Real UDP sockets on 127.0.0.1: the flow's upstream
 * socket is connected to a receiving socket of the test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/service.h"
#include "proxy/udp_flow.h"

struct fixture {
    struct ev_loop       *loop;
    struct service_config cfg;
    struct service        svc;
    struct udp_state      u;
    struct udp_flow       f;
    int                   rx;      /* the "server": receives what the flow sends */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    service_config_defaults(&fx->cfg);
    fx->u.svc = &fx->svc;
    fx->u.cfg = &fx->cfg;
    fx->u.loop = fx->loop;
    fx->u.fd = -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    fx->rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fx->rx >= 0);
    udp_sockbufs(fx->rx);
    assert_int_equal(bind(fx->rx, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fx->rx, (struct sockaddr *)&a, &alen), 0);
    fx->f.u = &fx->u;
    fx->f.cfd = -1;
    fx->f.ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fx->f.ufd >= 0);
    udp_sockbufs(fx->f.ufd);
    assert_int_equal(connect(fx->f.ufd, (struct sockaddr *)&a, sizeof(a)), 0);
    ev_io_init(&fx->f.uwr, udp_upstream_writable_cb, fx->f.ufd, EV_WRITE);
    fx->f.uwr.data = &fx->f;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    ev_io_stop(fx->loop, &fx->f.uwr);
    udp_dgq_clear(&fx->f.q[0]);
    close(fx->f.ufd);
    close(fx->rx);
    ev_loop_destroy(fx->loop);
    free(fx);
    return 0;
}

/* Puts n datagrams of the given lengths in the shared batch from slot at on;
 * byte j of datagram i is (i * 7 + j) & 0xff, so that a datagram cut in the
 * wrong place or out of order shows. */
static void fill(int at, const size_t *len, int n)
{
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < len[i]; j++)
            udp_batch.bufs[at + i][j] = (uint8_t)((i * 7 + j) & 0xff);
        udp_batch.msgs[at + i].msg_len = (unsigned)len[i];
        udp_batch.iovs[at + i] = (struct iovec){ .iov_base = udp_batch.bufs[at + i] };
    }
}

/* Receives n datagrams and checks each against fill()'s pattern. */
static void expect(struct fixture *fx, const size_t *len, int n)
{
    static uint8_t buf[DGRAM_MAX];
    for (int i = 0; i < n; i++) {
        struct pollfd p = { .fd = fx->rx, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 2000), 1);
        ssize_t r = recv(fx->rx, buf, sizeof(buf), MSG_DONTWAIT);
        assert_int_equal(r, (ssize_t)len[i]);
        for (size_t j = 0; j < len[i]; j++)
            if (buf[j] != (uint8_t)((i * 7 + j) & 0xff))
                fail_msg("datagram %d, byte %zu: %u, expected %u", i, j, buf[j],
                         (unsigned)((i * 7 + j) & 0xff));
    }
    assert_int_equal(recv(fx->rx, buf, sizeof(buf), MSG_DONTWAIT), -1);   /* nothing more */
}

/* A batch as an iperf test makes it: runs of one size, a shorter datagram
 * ending a run, sizes changing, a lone datagram, a run longer than one
 * ten. */
static const size_t LENS[] = {
    1400, 1400, 1400, 1400, 700,         /* a run ended by a shorter one */
    1400, 1400, 64, 64, 64, 64,          /* two runs */
    9000,                                /* alone */
    16, 16,
    1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400,
};
#define NLENS ((int)(sizeof(LENS) / sizeof(LENS[0])))

static uint64_t sum(const size_t *len, int n)
{
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += len[i];
    return s;
}

static void send_and_check(struct fixture *fx, int at)
{
    fill(at, LENS, NLENS);
    udp_send_batch_to_server(&fx->f, at, NLENS);
    expect(fx, LENS, NLENS);
    assert_int_equal(fx->f.dgrams[0], NLENS);
    assert_int_equal(fx->f.bytes[0], sum(LENS, NLENS));
    assert_int_equal(fx->f.drops, 0);
    assert_int_equal(fx->f.q[0].count, 0);
}

static void gso__mixed_runs__each_datagram_arrives_as_sent(void **state)
{
    struct fixture *fx = *state;
    send_and_check(fx, 0);
    assert_false(fx->f.gso_off[0]);
}

static void gso__batch_not_at_slot_0__same_datagrams(void **state)
{
    struct fixture *fx = *state;
    send_and_check(fx, BATCH - NLENS);
}

static void gso__off__same_datagrams(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.udp_gso = false;
    send_and_check(fx, 0);
}

static void gso__refused_by_socket__falls_back_once(void **state)
{
    struct fixture *fx = *state;
    int one = 1;   /* no UDP checksum: the kernel refuses segmentation (EINVAL) */
    assert_int_equal(setsockopt(fx->f.ufd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof(one)), 0);
    send_and_check(fx, 0);
    assert_true(fx->f.gso_off[0]);
    assert_false(fx->f.gso_off[1]);
}

static void gso__long_run__cut_below_the_send_limit(void **state)
{
    struct fixture *fx = *state;
    size_t lens[BATCH];
    for (int i = 0; i < BATCH; i++)
        lens[i] = 4000;    /* 32 x 4000 bytes: more than GSO_BYTES in one run */
    fill(0, lens, BATCH);
    udp_send_batch_to_server(&fx->f, 0, BATCH);
    expect(fx, lens, BATCH);
    assert_int_equal(fx->f.dgrams[0], BATCH);
    assert_false(fx->f.gso_off[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(gso__mixed_runs__each_datagram_arrives_as_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(gso__batch_not_at_slot_0__same_datagrams, setup, teardown),
        cmocka_unit_test_setup_teardown(gso__off__same_datagrams, setup, teardown),
        cmocka_unit_test_setup_teardown(gso__refused_by_socket__falls_back_once, setup, teardown),
        cmocka_unit_test_setup_teardown(gso__long_run__cut_below_the_send_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
