/* Unit tests for compat/tcp_info.c: the kernel's lowest RTT of a connected
 * TCP socket (IPv4 and IPv6 loopback connections), and -1 where there is none:
 * a listener with no sample, a UDP socket, a closed descriptor. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "compat/tcp_info.h"

struct conn { int lst, cli, srv; };

/* A loopback connection in family af; skips the test if af is unavailable. */
static struct conn loop_conn(int af)
{
    struct conn c = { -1, -1, -1 };
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (af == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof(*a);
    }
    c.lst = socket(af, SOCK_STREAM, 0);
    assert_true(c.lst >= 0);
    if (bind(c.lst, (struct sockaddr *)&ss, len) == -1) {
        close(c.lst);
        c.lst = -1;
        return c;   /* no such loopback here */
    }
    assert_int_equal(listen(c.lst, 1), 0);
    assert_int_equal(getsockname(c.lst, (struct sockaddr *)&ss, &len), 0);
    c.cli = socket(af, SOCK_STREAM, 0);
    assert_int_equal(connect(c.cli, (struct sockaddr *)&ss, len), 0);
    c.srv = accept(c.lst, NULL, NULL);
    assert_true(c.srv >= 0);
    return c;
}

static void conn_close(struct conn *c)
{
    close(c->cli);
    close(c->srv);
    close(c->lst);
}

/* After the handshake and a byte acknowledged both ways, both ends know a
 * loopback RTT: not negative, under a second. */
static void min_rtt_of_connection(int af)
{
    struct conn c = loop_conn(af);
    if (c.lst < 0)
        skip();
    char b = 'x';
    assert_int_equal(send(c.cli, &b, 1, 0), 1);
    assert_int_equal(recv(c.srv, &b, 1, 0), 1);
    assert_int_equal(send(c.srv, &b, 1, 0), 1);
    assert_int_equal(recv(c.cli, &b, 1, 0), 1);
    long a = tcp_min_rtt_us(c.cli), s = tcp_min_rtt_us(c.srv);
    assert_true(a >= 0 && a < 1000000);
    assert_true(s >= 0 && s < 1000000);
    conn_close(&c);
}

static void test_min_rtt_ipv4(void **state) { (void)state; min_rtt_of_connection(AF_INET); }
static void test_min_rtt_ipv6(void **state) { (void)state; min_rtt_of_connection(AF_INET6); }

/* A listener has measured nothing: the kernel's "no sample" is not a time. */
static void test_listener_has_none(void **state)
{
    (void)state;
    struct conn c = loop_conn(AF_INET);
    assert_true(c.lst >= 0);
    assert_int_equal(tcp_min_rtt_us(c.lst), -1);
    conn_close(&c);
}

static void test_not_tcp(void **state)
{
    (void)state;
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(u >= 0);
    assert_int_equal(tcp_min_rtt_us(u), -1);
    close(u);
    assert_int_equal(tcp_min_rtt_us(u), -1);   /* closed */
    assert_int_equal(tcp_min_rtt_us(-1), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_min_rtt_ipv4),
        cmocka_unit_test(test_min_rtt_ipv6),
        cmocka_unit_test(test_listener_has_none),
        cmocka_unit_test(test_not_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
