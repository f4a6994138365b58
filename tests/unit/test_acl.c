/* Unit tests for proxy/acl.c: CIDR parsing (IPv4, IPv6, host bits, bad
 * text, bad prefixes) and matching (v4, v6, v4-mapped v6 from a dual-stack
 * listener, /0, empty list, full list). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy/acl.h"

static struct sockaddr_storage ip(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(s, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, s, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, s, &a->sin_addr), 1);
    }
    return ss;
}

static bool allows(const struct acl *a, const char *s)
{
    struct sockaddr_storage ss = ip(s);
    return acl_allows(a, &ss);
}

static void parse__v4_and_v6__host_bits_cleared(void **state)
{
    (void)state;
    struct cidr c;
    const char *why;
    assert_int_equal(cidr_parse("10.1.2.3/8", &c, &why), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_memory_equal(c.addr, "\x0a\x00\x00\x00", 4);
    assert_int_equal(cidr_parse("2001:db8:ffff::1/33", &c, &why), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 33);
    assert_int_equal(c.addr[4], 0x80);   /* 0xff with 7 host bits cleared */
    assert_int_equal(c.addr[15], 0);
    assert_int_equal(cidr_parse("192.0.2.7", &c, &why), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("::1", &c, &why), 0);
    assert_int_equal(c.prefix, 128);
}

static void parse__bad_text__rejected_with_reason(void **state)
{
    (void)state;
    struct cidr c;
    const char *bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "::/129",
                          "10.0.0.0/8x", "host.example/8", "10.0.0/8", "1.2.3.4.5",
                          "10.0.0.0/08junk", "2001:db8::/32/1",
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        assert_int_equal(cidr_parse(bad[i], &c, &why), -1);
        assert_non_null(why);
    }
}

static void allows__empty_list__everyone(void **state)
{
    (void)state;
    struct acl a = { .n = 0 };
    assert_true(allows(&a, "203.0.113.9"));
    assert_true(allows(&a, "2001:db8::9"));
}

static void allows__v4_networks__inside_yes_outside_no(void **state)
{
    (void)state;
    struct acl a = { .n = 0 };
    const char *why;
    assert_int_equal(acl_add(&a, "10.0.0.0/8", &why), 0);
    assert_int_equal(acl_add(&a, "192.0.2.128/25", &why), 0);
    assert_true(allows(&a, "10.255.0.1"));
    assert_true(allows(&a, "192.0.2.200"));
    assert_false(allows(&a, "192.0.2.127"));
    assert_false(allows(&a, "11.0.0.1"));
    assert_false(allows(&a, "2001:db8::1"));    /* no IPv6 network listed */
}

static void allows__v6_networks__and_v4_mapped_matches_v4(void **state)
{
    (void)state;
    struct acl a = { .n = 0 };
    const char *why;
    assert_int_equal(acl_add(&a, "2001:db8:1::/48", &why), 0);
    assert_int_equal(acl_add(&a, "198.51.100.0/24", &why), 0);
    assert_true(allows(&a, "2001:db8:1:ffff::1"));
    assert_false(allows(&a, "2001:db8:2::1"));
    assert_true(allows(&a, "::ffff:198.51.100.7"));     /* IPv4 client, dual-stack listener */
    assert_false(allows(&a, "::ffff:198.51.101.7"));
    assert_false(allows(&a, "::198.51.100.7"));         /* v4-compatible is not v4-mapped */
}

static void allows__zero_prefix__matches_its_family_only(void **state)
{
    (void)state;
    struct acl a = { .n = 0 };
    const char *why;
    assert_int_equal(acl_add(&a, "0.0.0.0/0", &why), 0);
    assert_true(allows(&a, "203.0.113.1"));
    assert_true(allows(&a, "::ffff:203.0.113.1"));
    assert_false(allows(&a, "2001:db8::1"));
}

static void add__full_list__rejected(void **state)
{
    (void)state;
    struct acl a = { .n = 0 };
    const char *why;
    for (int i = 0; i < ACL_MAX; i++)
        assert_int_equal(acl_add(&a, "10.0.0.0/8", &why), 0);
    why = NULL;
    assert_int_equal(acl_add(&a, "10.0.0.0/8", &why), -1);
    assert_non_null(why);
    assert_int_equal(a.n, ACL_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse__v4_and_v6__host_bits_cleared),
        cmocka_unit_test(parse__bad_text__rejected_with_reason),
        cmocka_unit_test(allows__empty_list__everyone),
        cmocka_unit_test(allows__v4_networks__inside_yes_outside_no),
        cmocka_unit_test(allows__v6_networks__and_v4_mapped_matches_v4),
        cmocka_unit_test(allows__zero_prefix__matches_its_family_only),
        cmocka_unit_test(add__full_list__rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
