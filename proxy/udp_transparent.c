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
        if (net_addr_in_family(&got, family, dest) > 0)
            return 0;
    }
    memset(dest, 0, sizeof(*dest));
    return -1;
}

int udp_tp_upstream_socket(struct udp_flow *f)
{
    int family = net_addr_family(&f->dest), one = 1;
    socklen_t slen = net_addr_in_family(&f->dest, family, &f->server);
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    udp_sockbufs(fd);
    if (net_set_mark(fd, f->u->cfg->transparent_mark) == -1)
        goto fail;
    if (f->u->cfg->transparent_source) {
        /* the server sees the client: bound to the client's address and port
         * (not local: IP_TRANSPARENT); the ruleset's "socket transparent" rule
         * brings the server's answers back to this socket */
        struct sockaddr_storage src;
        socklen_t len = net_addr_in_family(&f->client, family, &src);
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
    int family = f->u->family, one = 1;
    socklen_t dlen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    /* several flows (clients) share the server's address and port */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        net_set_transparent(fd, family) == -1 || udp_tp_want_origdst(fd, family) == -1 ||
        net_set_mark(fd, f->u->cfg->transparent_mark) == -1 ||
        bind(fd, (const struct sockaddr *)&f->dest, dlen) == -1 ||
        connect(fd, (const struct sockaddr *)&f->client, f->clen) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    udp_sockbufs(fd);   /* the client's datagrams land here, not on the listener */
    return fd;
}
