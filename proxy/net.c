#include "proxy/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int net_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                       const char **why)
{
    char host[256];
    const char *port_s;
    size_t hlen;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            *why = "expected [IPv6]:PORT";
            return -1;
        }
        hlen = (size_t)(end - s - 1);
        if (hlen >= sizeof(host)) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s + 1, hlen);
        port_s = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            *why = "expected ADDR:PORT";
            return -1;
        }
        if (strchr(s, ':') != colon) {
            *why = "IPv6 addresses go in brackets: [2001:db8::1]:5201";
            return -1;
        }
        hlen = (size_t)(colon - s);
        if (hlen >= sizeof(host)) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s, hlen);
        port_s = colon + 1;
    }
    host[hlen] = '\0';

    char *endp;
    errno = 0;
    long port = strtol(port_s, &endp, 10);
    if (*port_s == '\0' || *endp != '\0' || errno != 0 || port < 1 || port > 65535) {
        *why = "port must be 1..65535";
        return -1;
    }

    memset(ss, 0, sizeof(*ss));
    if (hlen == 0 || strcmp(host, "*") == 0 || strcmp(host, "::") == 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*s6);
        return 0;
    }

    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        *why = rc == EAI_NONAME ? "unknown host" : "address lookup failed";
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    return 0;
}

char *net_addr_str(const struct sockaddr *sa, char *buf, size_t bufsz)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, bufsz, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
            snprintf(buf, bufsz, "%s:%u", ip, ntohs(s6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
            snprintf(buf, bufsz, "[%s]:%u", ip, ntohs(s6->sin6_port));
        }
    } else {
        snprintf(buf, bufsz, "?");
    }
    return buf;
}

/* The IPv4 address of a (an IPv4 or v4-mapped IPv6 address) in *v4; returns
 * false for other IPv6 addresses. */
static bool host_v4(const struct sockaddr_storage *a, struct in_addr *v4)
{
    if (a->ss_family == AF_INET) {
        *v4 = ((const struct sockaddr_in *)a)->sin_addr;
        return true;
    }
    const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
    if (a->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(x))
        return false;
    memcpy(v4, &x->s6_addr[12], sizeof(*v4));
    return true;
}

bool net_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    struct in_addr x, y;
    bool xv4 = host_v4(a, &x), yv4 = host_v4(b, &y);
    if (xv4 || yv4)
        return xv4 && yv4 && x.s_addr == y.s_addr;
    return a->ss_family == AF_INET6 && b->ss_family == AF_INET6 &&
           memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

bool net_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

int net_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

socklen_t net_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
        return sizeof(struct sockaddr_in);
    }
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    return sizeof(struct sockaddr_in6);
}

int net_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int net_set_transparent(int fd, int family)
{
    int one = 1;
    if (family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == -1)
        return -1;
    /* an IPv6 socket takes IPv4 too (v4-mapped) when dual-stack: set both */
    if (setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) == -1 &&
        family == AF_INET)
        return -1;
    return 0;
}

int net_tcp_listen(const struct sockaddr_storage *ss, socklen_t len, bool transparent)
{
    int one = 1, zero = 0;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
        goto fail;
    if (transparent && net_set_transparent(fd, ss->ss_family) == -1)
        goto fail;
    if (ss->ss_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr) &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) == -1)
        goto fail;
    if (bind(fd, (const struct sockaddr *)ss, len) == -1 || listen(fd, 511) == -1)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int net_sock_error(int fd)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == -1)
        return errno;
    return err;
}

long net_readable(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) == -1)
        return -1;
    return n;
}

long net_unacked(int fd)
{
    int n = 0;
    if (ioctl(fd, SIOCOUTQ, &n) == -1)
        return -1;
    return n;
}

void net_close_reset(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

socklen_t net_addr_in_family(const struct sockaddr_storage *a, int family,
                             struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (a->ss_family == family) {
        *out = *a;
        return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    }
    if (a->ss_family == AF_INET && family == AF_INET6) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)a;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = s4->sin_port;
        s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&s6->sin6_addr.s6_addr[12], &s4->sin_addr, 4);
        return sizeof(*s6);
    }
    if (a->ss_family == AF_INET6 && family == AF_INET) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
        if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            return 0;
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_port = s6->sin6_port;
        memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        return sizeof(*s4);
    }
    return 0;
}

int net_addr_family(const struct sockaddr_storage *a)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
    if (a->ss_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
        return AF_INET6;
    return AF_INET;
}

int net_set_mark(int fd, uint32_t mark)
{
    if (mark == 0)
        return 0;
    return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
}
