/* UDP in transparent mode (--transparent): the gateway's TPROXY rules hand
 * the shim datagrams addressed to servers; each one's original destination
 * (IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR) is the server its flow goes
 * to, and part of the flow's key.  A flow speaks to its client from a socket
 * bound to that destination (IP_TRANSPARENT) and connected to the client:
 * replies carry the server's address and port, and the kernel hands that
 * client's later datagrams straight to it (TPROXY's established-socket
 * lookup).  With --transparent-source the upstream socket is bound to the
 * client's address, so the server sees the client. */
#include "proxy/udp_flow.h"

#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef IP_RECVORIGDSTADDR
#define IP_RECVORIGDSTADDR 20
#endif
#ifndef IP_ORIGDSTADDR
#define IP_ORIGDSTADDR IP_RECVORIGDSTADDR
#endif
#ifndef IPV6_RECVORIGDSTADDR
#define IPV6_RECVORIGDSTADDR 74
#endif
#ifndef IPV6_ORIGDSTADDR
#define IPV6_ORIGDSTADDR IPV6_RECVORIGDSTADDR
#endif

/* a in the form a socket of family takes: IPv4 as v4-mapped IPv6 for AF_INET6,
 * a v4-mapped IPv6 as plain IPv4 for AF_INET.  Returns its length, 0 if it
 * cannot be expressed in that family. */
static socklen_t in_family(const struct sockaddr_storage *a, int family,
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

/* The family a itself belongs to: AF_INET for IPv4 and v4-mapped IPv6. */
static int plain_family(const struct sockaddr_storage *a)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
    if (a->ss_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
        return AF_INET6;
    return AF_INET;
}

int udp_tp_want_origdst(int fd, int family)
{
    int one = 1;
    if (family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) == -1)
        return -1;
    /* an IPv6 socket takes IPv4 datagrams too (dual-stack): ask for both */
    if (setsockopt(fd, IPPROTO_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) == -1 &&
        family == AF_INET)
        return -1;
    return 0;
}

int udp_tp_dest_from_cmsg(struct msghdr *mh, int family, struct sockaddr_storage *dest)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        struct sockaddr_storage got;
        memset(&got, 0, sizeof(got));
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_ORIGDSTADDR)
            memcpy(&got, CMSG_DATA(c), sizeof(struct sockaddr_in));
        else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)
            memcpy(&got, CMSG_DATA(c), sizeof(struct sockaddr_in6));
        else
            continue;
        if (in_family(&got, family, dest) > 0)
            return 0;
    }
    memset(dest, 0, sizeof(*dest));
    return -1;
}

/* --transparent-mark: SO_MARK on a socket of the shim's own traffic.  Returns
 * 0 (also when no mark is configured), or -1 with errno. */
static int set_mark(int fd, uint32_t mark)
{
    if (mark == 0)
        return 0;
    return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
}

int udp_tp_upstream_socket(struct udp_flow *f)
{
    int family = plain_family(&f->dest), one = 1, sz = SOCKBUF;
    socklen_t slen = in_family(&f->dest, family, &f->server);
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (set_mark(fd, f->u->cfg->transparent_mark) == -1)
        goto fail;
    if (f->u->cfg->transparent_source) {
        /* the server sees the client: bound to the client's address and port
         * (not local: IP_TRANSPARENT); the ruleset's "socket transparent" rule
         * brings the server's answers back to this socket */
        struct sockaddr_storage src;
        socklen_t len = in_family(&f->client, family, &src);
        if (len == 0) {
            errno = EAFNOSUPPORT;   /* an IPv6 client to an IPv4 server: impossible by TPROXY */
            goto fail;
        }
        if (net_set_transparent(fd, family) == -1 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
            bind(fd, (struct sockaddr *)&src, len) == -1)
            goto fail;
    }
    if (connect(fd, (struct sockaddr *)&f->server, slen) == -1)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int udp_tp_client_socket(const struct udp_flow *f)
{
    int family = f->u->family, one = 1, sz = SOCKBUF;
    socklen_t dlen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    /* several flows (clients) share the server's address and port */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        net_set_transparent(fd, family) == -1 || udp_tp_want_origdst(fd, family) == -1 ||
        set_mark(fd, f->u->cfg->transparent_mark) == -1 ||
        bind(fd, (const struct sockaddr *)&f->dest, dlen) == -1 ||
        connect(fd, (const struct sockaddr *)&f->client, f->clen) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    /* the client's datagrams land here, not on the listener: same buffers */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    return fd;
}
