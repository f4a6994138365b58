/* Unit tests for proxy/transparent.c: the destination of an accepted
 * connection without NAT (its own address, IPv4 and v4-mapped on a
 * dual-stack listener), --allow-server and the shim's own listener refused
 * and counted, and the upstream socket bound to a non-local source. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/transparent.h"

static struct sockaddr_storage ip(const char *s, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(s, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, s, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, s, &a->sin_addr), 1);
    }
    return ss;
}

static socklen_t len_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* Connects a client to listener `at` and returns the accepted socket; the
 * client's fd in *cfd.  lfd is the listener. */
static int accept_one(const char *at, const char *to, int *lfd, int *cfd,
                      struct sockaddr_storage *listen_addr)
{
    struct sockaddr_storage l = ip(at, 0);
    *lfd = net_tcp_listen(&l, len_of(&l), false);
    assert_true(*lfd >= 0);
    socklen_t len = sizeof(*listen_addr);
    assert_int_equal(getsockname(*lfd, (struct sockaddr *)listen_addr, &len), 0);
    struct sockaddr_storage dst = ip(to, net_port((struct sockaddr *)listen_addr));
    *cfd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*cfd >= 0);
    assert_int_equal(connect(*cfd, (struct sockaddr *)&dst, len_of(&dst)), 0);
    int afd = -1;
    for (int i = 0; i < 1000 && afd < 0; i++) {   /* the listener is non-blocking */
        afd = accept(*lfd, NULL, NULL);
        if (afd < 0)
            usleep(1000);
    }
    assert_true(afd >= 0);
    return afd;
}

static void orig_dst__no_nat__the_socket_address(void **state)
{
    (void)state;
    int lfd, cfd;
    struct sockaddr_storage la, d;
    socklen_t dlen = sizeof(d);
    int afd = accept_one("127.0.0.1", "127.0.0.1", &lfd, &cfd, &la);
    assert_int_equal(transparent_orig_dst(afd, &d, &dlen), 0);
    assert_int_equal(d.ss_family, AF_INET);
    assert_true(net_same_addr(&d, &la));
    close(afd); close(cfd); close(lfd);
}

static void orig_dst__dual_stack_v4__v4_mapped(void **state)
{
    (void)state;
    int lfd, cfd;
    struct sockaddr_storage la, d;
    socklen_t dlen = sizeof(d);
    int afd = accept_one("::", "127.0.0.1", &lfd, &cfd, &la);
    assert_int_equal(transparent_orig_dst(afd, &d, &dlen), 0);
    assert_int_equal(d.ss_family, AF_INET6);
    assert_true(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&d)->sin6_addr));
    struct sockaddr_storage want = ip("127.0.0.1", 0);
    assert_true(net_same_host(&d, &want));   /* v4 and v4-mapped: the same host */
    assert_int_equal(net_port((struct sockaddr *)&d), net_port((struct sockaddr *)&la));
    close(afd); close(cfd); close(lfd);
}

static struct service *test_service(const char *listen, int port)
{
    static struct service svc;
    memset(&svc, 0, sizeof(svc));
    svc.loop = ev_default_loop(0);
    svc.cfg.listen_addr = ip(listen, port);
    svc.cfg.listen_len = len_of(&svc.cfg.listen_addr);
    svc.cfg.transparent = true;
    strcpy(svc.cfg.name, "t");
    return &svc;
}

static bool admits(struct service *svc, const char *dst, int port)
{
    struct sockaddr_storage c = ip("10.9.9.9", 40000), d = ip(dst, port);
    return transparent_admits(svc, &c, &d, "TCP client");
}

static void admits__allow_server__others_refused_and_counted(void **state)
{
    (void)state;
    struct service *svc = test_service("::", 15201);
    const char *why = NULL;
    assert_int_equal(acl_add(&svc->cfg.allow_server, "192.0.2.0/24", &why), 0);
    assert_int_equal(acl_add(&svc->cfg.allow_server, "2001:db8:10::/48", &why), 0);
    assert_true(admits(svc, "192.0.2.10", 5201));
    assert_true(admits(svc, "::ffff:192.0.2.10", 5201));   /* dual-stack form */
    assert_true(admits(svc, "2001:db8:10::5", 5001));
    assert_false(admits(svc, "198.51.100.1", 5201));
    assert_false(admits(svc, "2001:db8:11::5", 5201));
    assert_int_equal(svc->server_refused, 2);
}

static void admits__own_listener__refused_other_hosts_same_port_not(void **state)
{
    (void)state;
    struct service *svc = test_service("::", 15201);
    assert_false(admits(svc, "127.0.0.1", 15201));   /* local, the listener's port */
    assert_false(admits(svc, "::1", 15201));
    assert_true(admits(svc, "127.0.0.1", 5201));     /* local, another port */
    assert_true(admits(svc, "192.0.2.1", 15201));    /* not local: a server elsewhere */
    assert_int_equal(svc->server_refused, 2);
    svc = test_service("127.0.0.2", 15201);           /* a specific listen address */
    assert_false(admits(svc, "127.0.0.2", 15201));
}

static void bind_source__non_local_address__bound(void **state)
{
    (void)state;
    struct sockaddr_storage src = ip("192.0.2.7", 1234), got;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (transparent_bind_source(fd, &src) == -1 && errno == EPERM) {
        close(fd);
        skip();   /* needs CAP_NET_ADMIN */
    }
    socklen_t len = sizeof(got);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&got, &len), 0);
    assert_true(net_same_host(&got, &src));
    assert_int_equal(net_port((struct sockaddr *)&got), 0);   /* the port: at connect */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(orig_dst__no_nat__the_socket_address),
        cmocka_unit_test(orig_dst__dual_stack_v4__v4_mapped),
        cmocka_unit_test(admits__allow_server__others_refused_and_counted),
        cmocka_unit_test(admits__own_listener__refused_other_hosts_same_port_not),
        cmocka_unit_test(bind_source__non_local_address__bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
