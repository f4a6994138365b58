/*
 * Access control: which client networks a service serves (--allow CIDR,
 * config key allow = [ ... ]).  Pure: addresses in, verdicts out.  An empty
 * list allows everyone.  IPv4 clients of a dual-stack listener arrive as
 * v4-mapped IPv6 addresses (::ffff:a.b.c.d) and match IPv4 networks.
 */
#ifndef IPERF_SHIM_PROXY_ACL_H
#define IPERF_SHIM_PROXY_ACL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define ACL_MAX 32   /* networks per service */

struct cidr {
    int     family;     /* AF_INET or AF_INET6 */
    uint8_t addr[16];   /* network address, host bits cleared (4 bytes used for IPv4) */
    int     prefix;     /* 0..32 or 0..128 */
};

struct acl {
    struct cidr net[ACL_MAX];   /* allowed networks */
    int         n;              /* entries used; 0: everyone is allowed */
};

/* Parses "10.0.0.0/8", "2001:db8::/32" or a single address ("192.0.2.7":
 * /32, "2001:db8::7": /128).  Returns 0, or -1 with *why set. */
int  cidr_parse(const char *s, struct cidr *out, const char **why);

/* Adds a network.  Returns 0, or -1 with *why set (bad text, list full). */
int  acl_add(struct acl *a, const char *s, const char **why);

/* True when the list is empty or addr is in one of its networks. */
bool acl_allows(const struct acl *a, const struct sockaddr_storage *addr);

#endif
