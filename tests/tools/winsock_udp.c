/*
 * libwinsock_udp.so: LD_PRELOAD fault injector giving a Linux process the Winsock
 * behaviour of UDP sockets towards ICMP port-unreachable messages (Windows without
 * SIO_UDP_CONNRESET), so that the unmodified Linux iperf2 UDP server fails the way the
 * Windows one does (iperf2 ticket #391).
 *
 *     LD_PRELOAD=build/tools/libwinsock_udp.so iperf -s -u
 *
 * What Windows does (the behaviour emulated): when a UDP socket has sent a datagram
 * that is answered by an ICMP port unreachable, the next recv/recvfrom on the socket
 * fails with WSAECONNRESET (10054); the datagrams queued behind the error are
 * returned by the calls after it.  iperf2's Windows build treats every receive error but
 * WSAEWOULDBLOCK as fatal (FATALUDPREADERR, and the listener's FAIL_errno on recvfrom
 * in Listener::udp_accept), so one late Server Report to a closed client port ends the
 * listener; every later client then gets "did not receive ack of last datagram".
 *
 * What Linux does without this library: an ICMP port unreachable is reported
 * (ECONNREFUSED, once) only on a connected UDP socket; an unconnected socket sees it
 * only with IP_RECVERR/IPV6_RECVERR.  iperf2 "accepts" a UDP client by connect()ing the
 * listening socket to the client and opening a new unconnected listener on the same port;
 * once a client's connected socket is closed, a late ICMP for that flow is matched by
 * the kernel to the wildcard listener (bound to the same local address and port) and is
 * silently dropped there because the listener has no IP_RECVERR.  So the Linux server
 * survives.
 *
 * What this library does, exactly:
 *  1. Tracking: every AF_INET/AF_INET6 SOCK_DGRAM socket (protocol 0 or UDP) created
 *     with socket() is tracked, and IP_RECVERR (and IPV6_RECVERR on AF_INET6 sockets,
 *     IP_RECVERR too for v4-mapped peers) is switched on for it.  bind() records the
 *     bound port; connect() marks it connected (AF_UNSPEC disconnects it); close()
 *     forgets it.  A "listening socket" is a tracked socket that is bound to a non-zero
 *     port (WINSOCK_UDP_PORT, if set, must equal that port) and is not connected.
 *  2. Error surfacing and mapping: recv, recvfrom, recvmsg, read (and their
 *     _FORTIFY_SOURCE __*_chk variants) on a tracked socket: when the kernel returns
 *     ECONNREFUSED, the socket's error queue is drained and the call fails with
 *     ECONNRESET instead (Winsock's WSAECONNRESET).  Other errors that only exist
 *     because of the IP_RECVERR we added (any error but ECONNREFUSED on an unconnected
 *     socket, e.g. EHOSTUNREACH) are hidden: the error queue is drained and the call is
 *     retried, as plain Linux would have dropped them.  Errors on connected sockets other
 *     than ECONNREFUSED pass through unchanged (Linux reports them there natively).
 *     Calls with MSG_ERRQUEUE are passed through untouched.
 *  3. "Any UDP socket -> the listener": an ICMP port unreachable noticed on any other
 *     tracked socket of the process (an ECONNREFUSED returned by a receive, or found
 *     pending in its error queue / SO_ERROR when it is close()d) latches a process-wide
 *     flag.  The next receive call on a listening socket then fails once with ECONNRESET
 *     before returning any datagram (the datagram stays queued for the next call, as in
 *     Winsock).  A blocking receive first waits with a 1-byte MSG_PEEK (same blocking,
 *     timeout and signal-restart behaviour as the real call), so a flag latched while
 *     the listener is already blocked takes effect when that call wakes up, before the
 *     datagram that woke it is returned.  ICMPs that the kernel itself matches to the
 *     listener (the iperf2 case: the client's connected socket is already closed when
 *     the late Server Report's ICMP comes back) fail the blocked call at once.
 *     WINSOCK_UDP_SCOPE=listener disables the latch (only errors on the listener itself
 *     count).
 * Not emulated: WSAENETRESET for ICMP TTL-exceeded, Winsock's behaviour for sends,
 * SIO_UDP_CONNRESET itself, duplicates of tracked sockets (dup(), dup2() and dup3() of a
 * tracked socket are not tracked; dup2()/dup3() onto a tracked number forgets it),
 * recvmmsg, readv, and waking poll/select/epoll for a latched error (only the next receive
 * call sees it).
 *
 * Environment:
 *   WINSOCK_UDP_PORT=N       only sockets bound to port N are listeners (default: any)
 *   WINSOCK_UDP_SCOPE=all|listener   (default all, see 3.)
 *   WINSOCK_UDP_LOG=FILE     append log lines there (default stderr); WINSOCK_UDP_QUIET=1
 *                            silences it.  Lines start with "winsock_udp[PID]: ".
 * Log lines (stable, tests grep them): "loaded", "icmp port-unreachable on fd N ...",
 * "ECONNRESET on listener fd N (...)", and at exit, if anything happened,
 * "summary icmp=N resets=N latched=N".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/icmp6.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAXFD 65536

struct fdinfo {
    _Atomic unsigned char udp;       /* tracked UDP socket */
    _Atomic unsigned char connected;
    _Atomic unsigned short port;     /* bound local port, host order, 0 = not bound */
};
static struct fdinfo fds[MAXFD];

static atomic_int latch;              /* pending ECONNRESET for the next listener receive */
static atomic_long n_icmp, n_resets, n_latched;
static int want_port = -1;            /* WINSOCK_UDP_PORT */
static int scope_all = 1;
static int log_fd = 2, quiet;

static int (*real_socket)(int, int, int);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_close)(int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_read)(int, void *, size_t);

static void wlog(const char *fmt, ...)
{
    if (quiet)
        return;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "winsock_udp[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(log_fd, buf, (size_t)n);
    (void)w;
}

static void resolve(void)
{
    real_socket = dlsym(RTLD_NEXT, "socket");
    real_bind = dlsym(RTLD_NEXT, "bind");
    real_connect = dlsym(RTLD_NEXT, "connect");
    real_close = dlsym(RTLD_NEXT, "close");
    real_recv = dlsym(RTLD_NEXT, "recv");
    real_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
    real_recvmsg = dlsym(RTLD_NEXT, "recvmsg");
    real_read = dlsym(RTLD_NEXT, "read");
}

__attribute__((constructor)) static void winsock_udp_init(void)
{
    resolve();
    const char *s = getenv("WINSOCK_UDP_PORT");
    if (s && *s)
        want_port = atoi(s);
    s = getenv("WINSOCK_UDP_SCOPE");
    if (s && strcmp(s, "listener") == 0)
        scope_all = 0;
    s = getenv("WINSOCK_UDP_QUIET");
    quiet = s && *s && strcmp(s, "0") != 0;
    s = getenv("WINSOCK_UDP_LOG");
    if (s && *s) {
        int fd = open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
            log_fd = fd;
    }
    char comm[32] = "?";
    int cfd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (cfd >= 0) {
        ssize_t n = real_read(cfd, comm, sizeof comm - 1);
        comm[n > 0 ? n : 0] = 0;
        comm[strcspn(comm, "\n")] = 0;
        real_close(cfd);
    }
    wlog("loaded into %s (port=%d scope=%s)", comm, want_port, scope_all ? "all" : "listener");
}

__attribute__((destructor)) static void winsock_udp_fini(void)
{
    if (atomic_load(&n_icmp) || atomic_load(&n_resets))
        wlog("summary icmp=%ld resets=%ld latched=%ld", atomic_load(&n_icmp), atomic_load(&n_resets),
         atomic_load(&n_latched));
}

static int tracked(int fd) { return fd >= 0 && fd < MAXFD && atomic_load(&fds[fd].udp); }

static int is_listener(int fd)
{
    if (!tracked(fd) || atomic_load(&fds[fd].connected))
        return 0;
    unsigned short p = atomic_load(&fds[fd].port);
    return p != 0 && (want_port < 0 || p == want_port);
}

/* Drain fd's error queue (non-blocking).  Returns how many port-unreachable entries it
 * held and appends a short description of the first one to desc. */
static int drain_errqueue(int fd, char *desc, size_t desclen, int *total)
{
    int unreach = 0, guard = 0;
    if (total)
        *total = 0;
    if (desc && desclen)
        desc[0] = 0;
    for (;;) {
        char data[64], ctrl[512];
        struct sockaddr_storage from;
        struct iovec iov = { data, sizeof data };
        struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = ctrl, .msg_controllen = sizeof ctrl };
        ssize_t r = real_recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
        if (r < 0 || ++guard > 4096)
            break;
        if (total)
            (*total)++;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (!((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                  (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)))
                continue;
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(c), sizeof ee);
            int pu = (ee.ee_origin == SO_EE_ORIGIN_ICMP && ee.ee_type == ICMP_DEST_UNREACH &&
                      ee.ee_code == ICMP_PORT_UNREACH) ||
                     (ee.ee_origin == SO_EE_ORIGIN_ICMP6 && ee.ee_type == ICMP6_DST_UNREACH &&
                      ee.ee_code == ICMP6_DST_UNREACH_NOPORT);
            unreach += pu;
            if (desc && desclen && !desc[0]) {
                char addr[64] = "?";
                unsigned port = 0;
                if (from.ss_family == AF_INET) {
                    struct sockaddr_in *a = (struct sockaddr_in *)&from;
                    inet_ntop(AF_INET, &a->sin_addr, addr, sizeof addr);
                    port = ntohs(a->sin_port);
                } else if (from.ss_family == AF_INET6) {
                    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&from;
                    inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof addr);
                    port = ntohs(a->sin6_port);
                }
                snprintf(desc, desclen, "%s origin=%u type=%u code=%u errno=%u, for datagram to %s port %u",
                         pu ? "port-unreachable" : "other", ee.ee_origin, ee.ee_type, ee.ee_code, ee.ee_errno,
                         addr, port);
            }
        }
    }
    return unreach;
}

static void note_icmp(int fd, int count, const char *desc, const char *where)
{
    atomic_fetch_add(&n_icmp, count);
    wlog("icmp port-unreachable on fd %d (%s, %s): %s", fd, is_listener(fd) ? "listener" : "other socket",
         where, desc);
    if (scope_all && !is_listener(fd)) {
        atomic_store(&latch, 1);
        atomic_fetch_add(&n_latched, 1);
    }
}

static void forget(int fd)
{
    if (fd >= 0 && fd < MAXFD) {
        atomic_store(&fds[fd].udp, 0);
        atomic_store(&fds[fd].connected, 0);
        atomic_store(&fds[fd].port, 0);
    }
}

int socket(int domain, int type, int protocol)
{
    if (!real_socket)
        resolve();
    int fd = real_socket(domain, type, protocol);
    if (fd < 0)
        return fd;
    forget(fd);
    if ((domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_DGRAM &&
        (protocol == 0 || protocol == IPPROTO_UDP) && fd < MAXFD) {
        int one = 1, saved = errno;
        setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof one);
        if (domain == AF_INET6)
            setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof one);
        errno = saved;
        atomic_store(&fds[fd].udp, 1);
    }
    return fd;
}

/* dup2()/dup3() onto a tracked descriptor closes it implicitly: forget it. */
int dup2(int oldfd, int newfd)
{
    static int (*real_dup2)(int, int);
    if (!real_dup2)
        real_dup2 = dlsym(RTLD_NEXT, "dup2");
    int rc = real_dup2(oldfd, newfd);
    if (rc >= 0 && rc != oldfd)
        forget(rc);
    return rc;
}

int dup3(int oldfd, int newfd, int flags)
{
    static int (*real_dup3)(int, int, int);
    if (!real_dup3)
        real_dup3 = dlsym(RTLD_NEXT, "dup3");
    int rc = real_dup3(oldfd, newfd, flags);
    if (rc >= 0)
        forget(rc);
    return rc;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!real_bind)
        resolve();
    int rc = real_bind(fd, addr, len);
    if (rc == 0 && tracked(fd)) {
        int saved = errno;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            unsigned short p = 0;
            if (ss.ss_family == AF_INET)
                p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            else if (ss.ss_family == AF_INET6)
                p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            atomic_store(&fds[fd].port, p);
        }
        errno = saved;
    }
    return rc;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!real_connect)
        resolve();
    int rc = real_connect(fd, addr, len);
    if (rc == 0 && tracked(fd))
        atomic_store(&fds[fd].connected, addr && addr->sa_family != AF_UNSPEC);
    return rc;
}

int close(int fd)
{
    if (!real_close)
        resolve();
    if (tracked(fd)) {
        int saved = errno;
        char desc[200];
        int n = drain_errqueue(fd, desc, sizeof desc, NULL);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (n == 0 && soerr == ECONNREFUSED) {
            n = 1;
            snprintf(desc, sizeof desc, "SO_ERROR ECONNREFUSED, error queue empty");
        }
        if (n > 0)
            note_icmp(fd, n, desc, "pending at close");
        forget(fd);
        errno = saved;
    }
    return real_close(fd);
}

/* Common receive path.  op() performs the real call. */
enum kind { K_RECV, K_RECVFROM, K_RECVMSG, K_READ };
struct call {
    enum kind k;
    int fd, flags;
    void *buf;
    size_t len;
    struct sockaddr *from;
    socklen_t *fromlen;
    struct msghdr *msg;
};

static ssize_t do_real(struct call *c)
{
    switch (c->k) {
    case K_RECV: return real_recv(c->fd, c->buf, c->len, c->flags);
    case K_RECVFROM: return real_recvfrom(c->fd, c->buf, c->len, c->flags, c->from, c->fromlen);
    case K_RECVMSG: return real_recvmsg(c->fd, c->msg, c->flags);
    case K_READ: return real_read(c->fd, c->buf, c->len);
    }
    errno = EINVAL;
    return -1;
}

static ssize_t reset_now(int fd, const char *why)
{
    atomic_fetch_add(&n_resets, 1);
    wlog("ECONNRESET on listener fd %d (%s)", fd, why);
    errno = ECONNRESET;
    return -1;
}

/* Handles a failed real call (or peek): returns 1 when the call must be retried,
 * 0 when *ret/errno hold the final result. */
static int on_error(struct call *c, ssize_t *ret)
{
    int e = errno, fd = c->fd;
    char desc[200];
    if (e == ECONNREFUSED) {
        int n = drain_errqueue(fd, desc, sizeof desc, NULL);
        if (n == 0)
            snprintf(desc, sizeof desc, "ECONNREFUSED, error queue empty");
        if (is_listener(fd)) {
            atomic_fetch_add(&n_icmp, n ? n : 1);
            wlog("icmp port-unreachable on fd %d (listener, receive): %s", fd, desc);
            atomic_store(&latch, 0);
            *ret = reset_now(fd, "icmp port-unreachable delivered to the listener");
            return 0;
        }
        note_icmp(fd, n ? n : 1, desc, "receive");
        errno = ECONNRESET;
        *ret = -1;
        return 0;
    }
    if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR && !atomic_load(&fds[fd].connected)) {
        /* An ICMP error other than port unreachable, visible only because of our
         * IP_RECVERR (its entry is in the error queue): hide it like plain Linux would. */
        int total = 0;
        int n = drain_errqueue(fd, desc, sizeof desc, &total);
        if (total > 0) {
            if (n > 0)
                note_icmp(fd, n, desc, "receive (other errno)");
            wlog("hid errno %d on unconnected fd %d (%s)", e, fd, desc);
            return 1;
        }
    }
    errno = e;
    *ret = -1;
    return 0;
}

static ssize_t wrapped(struct call *c)
{
    ssize_t ret;
    if (!tracked(c->fd) || (c->k != K_READ && (c->flags & MSG_ERRQUEUE)))
        return do_real(c);
    for (int tries = 0; tries < 64; tries++) {
        if (is_listener(c->fd)) {
            if (atomic_exchange(&latch, 0))
                return reset_now(c->fd, "latched icmp port-unreachable of another socket");
            int peekflags = MSG_PEEK | (c->k == K_READ ? 0 : (c->flags & MSG_DONTWAIT));
            char b;
            ssize_t p = real_recv(c->fd, &b, 1, peekflags);
            if (p < 0) {
                if (on_error(c, &ret))
                    continue;
                return ret;
            }
            if (atomic_exchange(&latch, 0))
                return reset_now(c->fd, "latched icmp port-unreachable of another socket (after wait)");
        }
        ret = do_real(c);
        if (ret >= 0)
            return ret;
        if (on_error(c, &ret))
            continue;
        return ret;
    }
    return do_real(c);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    if (!real_recv)
        resolve();
    struct call c = { .k = K_RECV, .fd = fd, .flags = flags, .buf = buf, .len = len };
    return wrapped(&c);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
{
    if (!real_recvfrom)
        resolve();
    struct call c = { .k = K_RECVFROM, .fd = fd, .flags = flags, .buf = buf, .len = len, .from = from,
                      .fromlen = fromlen };
    return wrapped(&c);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (!real_recvmsg)
        resolve();
    struct call c = { .k = K_RECVMSG, .fd = fd, .flags = flags, .msg = msg };
    return wrapped(&c);
}

ssize_t read(int fd, void *buf, size_t len)
{
    if (!real_read)
        resolve();
    if (!tracked(fd))
        return real_read(fd, buf, len);
    struct call c = { .k = K_READ, .fd = fd, .buf = buf, .len = len };
    return wrapped(&c);
}

/* _FORTIFY_SOURCE entry points (buffer size checks are left to the real ones' callers). */
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        abort();
    return recv(fd, buf, len, flags);
}
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *from,
                       socklen_t *fromlen);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *from,
                       socklen_t *fromlen)
{
    if (len > buflen)
        abort();
    return recvfrom(fd, buf, len, flags, from, fromlen);
}
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (len > buflen)
        abort();
    return read(fd, buf, len);
}
