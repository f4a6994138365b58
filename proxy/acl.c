#include "proxy/acl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int cidr_parse(const char *s, struct cidr *out, const char **why)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(host)) {
        *why = "expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or 2001:db8::/32";
        return -1;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
    } else {
        *why = "not an IPv4 or IPv6 address";
        return -1;
    }
    int max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || p < 0 || p > max) {
            *why = out->family == AF_INET ? "prefix must be 0..32" : "prefix must be 0..128";
            return -1;
        }
        out->prefix = (int)p;
    }
    for (int bit = out->prefix; bit < max; bit++)   /* clear host bits */
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return 0;
}

int acl_add(struct acl *a, const char *s, const char **why)
{
    if (a->n == ACL_MAX) {
        *why = "too many networks (32 at most per service)";
        return -1;
    }
    if (cidr_parse(s, &a->net[a->n], why) == -1)
        return -1;
    a->n++;
    return 0;
}

static bool prefix_match(const uint8_t *net, const uint8_t *addr, int prefix)
{
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(net, addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (net[full] & mask) == (addr[full] & mask);
}

bool acl_allows(const struct acl *a, const struct sockaddr_storage *ss)
{
    uint8_t v4[4];
    const uint8_t *v6 = NULL;
    bool have_v4 = false;
    if (a->n == 0)
        return true;
    if (ss->ss_family == AF_INET) {
        memcpy(v4, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        have_v4 = true;
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        v6 = in6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(v4, in6->s6_addr + 12, 4);
            have_v4 = true;
        }
    }
    for (int i = 0; i < a->n; i++) {
        const struct cidr *c = &a->net[i];
        if (c->family == AF_INET && have_v4 && prefix_match(c->addr, v4, c->prefix))
            return true;
        if (c->family == AF_INET6 && v6 != NULL && prefix_match(c->addr, v6, c->prefix))
            return true;
    }
    return false;
}
