/*
 * nfq_delay: a userspace fixed-delay line for packets, driven by an NFQUEUE.
 *
 * The kernel here has no netem (sch_netem), so tests that need late packets send
 * them through an iptables/ip6tables rule such as
 *
 *     iptables  -A OUTPUT -p udp --sport 5001 -j NFQUEUE --queue-num 7 --queue-bypass
 *     ip6tables -A OUTPUT -p udp --sport 5001 -j NFQUEUE --queue-num 7 --queue-bypass
 *
 * and run, in the same network namespace,
 *
 *     nfq_delay -q 7 -d 1.5 [-l LIMIT] [-t MAX_RUNTIME_S] [-v]
 *
 * Every packet queued by the kernel is held and then re-injected with an NF_ACCEPT
 * verdict DELAY seconds after it reached us (a packet continues from the hook after
 * the rule, as NF_ACCEPT does).  The delay is the same for every packet and packets
 * are released from a FIFO, so their order is preserved.  Only the packet id is
 * copied to userspace (NFQNL_COPY_META): nothing but the verdict is needed.
 *
 * Bounded: at most LIMIT packets (default 10000) are held at once; a packet that
 * arrives while LIMIT are held is dropped (NF_DROP, like netem's "limit"), never
 * passed early, which would reorder.  The kernel queue length is set a little above
 * LIMIT so that our limit is the one that applies.
 *
 * Exit: on SIGTERM or SIGINT, or after MAX_RUNTIME_S seconds (-t, 0 = no limit), every
 * packet still held is released at once (NF_ACCEPT, in order; -D drops them instead),
 * the queue is unbound and a one-line summary goes to stderr.  Exit status 0, or 1 on a
 * setup error (no NFQUEUE support, queue number taken, not root...).
 * "--queue-bypass" on the rule makes the kernel accept packets itself while no
 * program is bound to the queue (before we start, after we exit).
 *
 * When the queue is bound it prints "nfq_delay: ready queue=N delay=D" to stderr (and
 * writes the same line to the -r FILE if given), so a script can wait for it.
 * -v logs one line per packet (arrival and release) to stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnfnetlink/libnfnetlink.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif

struct held {
    uint32_t id;
    uint64_t due_ns;        /* CLOCK_MONOTONIC */
};

static struct held *ring;
static size_t ring_cap, ring_head, ring_len;
static uint64_t delay_ns;
static int verbose;
static struct nfq_q_handle *qh;
static struct {
    uint64_t queued, released, dropped_full, verdict_errors, enobufs;
    size_t max_depth;
} st;
static volatile sig_atomic_t stop_signal;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void logmsg(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "nfq_delay: %s\n", buf);
}

static void verdict(uint32_t id, uint32_t v)
{
    if (nfq_set_verdict(qh, id, v, 0, NULL) < 0)
        st.verdict_errors++;
}

static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *nfmsg, struct nfq_data *nfa, void *data)
{
    (void)q; (void)nfmsg; (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    if (ring_len == ring_cap) {
        verdict(id, NF_DROP);
        st.dropped_full++;
        if (verbose)
            logmsg("drop id=%" PRIu32 " (queue full, %zu held)", id, ring_len);
        return 0;
    }
    struct held *h = &ring[(ring_head + ring_len) % ring_cap];
    h->id = id;
    h->due_ns = now_ns() + delay_ns;
    ring_len++;
    st.queued++;
    if (ring_len > st.max_depth)
        st.max_depth = ring_len;
    if (verbose)
        logmsg("hold id=%" PRIu32 " depth=%zu", id, ring_len);
    return 0;
}

/* Release every held packet that is due (all of them when force is set). */
static void release_due(int force, uint32_t v)
{
    uint64_t now = now_ns();
    while (ring_len > 0) {
        struct held *h = &ring[ring_head];
        if (!force && h->due_ns > now)
            break;
        verdict(h->id, v);
        st.released++;
        if (verbose)
            logmsg("%s id=%" PRIu32 " late=%.3f ms", v == NF_ACCEPT ? "accept" : "drop", h->id,
                   now >= h->due_ns ? (double)(now - h->due_ns) / 1e6 : -(double)(h->due_ns - now) / 1e6);
        ring_head = (ring_head + 1) % ring_cap;
        ring_len--;
    }
}

static void on_signal(int sig) { stop_signal = sig; }

static void usage(void)
{
    fprintf(stderr,
            "usage: nfq_delay -q QUEUE_NUM -d DELAY_S [-l LIMIT] [-t MAX_RUNTIME_S] [-r READY_FILE] [-D] [-v]\n"
            "  holds every packet of NFQUEUE QUEUE_NUM for DELAY_S seconds (fractions allowed),\n"
            "  then accepts it; order kept; at most LIMIT held (default 10000), excess dropped;\n"
            "  exits on SIGTERM/SIGINT or after MAX_RUNTIME_S (0 = never), releasing what it holds\n"
            "  (-D: dropping it instead).\n");
    exit(2);
}

static double parse_num(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0 || v > 1e6) {
        fprintf(stderr, "nfq_delay: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long queue_num = -1;
    double delay_s = -1, max_runtime_s = 0;
    long limit = 10000;
    const char *ready_file = NULL;
    int drop_on_exit = 0, c;

    while ((c = getopt(argc, argv, "q:d:l:t:r:Dvh")) != -1) {
        switch (c) {
        case 'q': queue_num = (long)parse_num(optarg, "queue number"); break;
        case 'd': delay_s = parse_num(optarg, "delay"); break;
        case 'l': limit = (long)parse_num(optarg, "limit"); break;
        case 't': max_runtime_s = parse_num(optarg, "max runtime"); break;
        case 'r': ready_file = optarg; break;
        case 'D': drop_on_exit = 1; break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || queue_num < 0 || queue_num > 65535 || delay_s < 0 || limit < 1 || limit > 10000000)
        usage();
    delay_ns = (uint64_t)(delay_s * 1e9 + 0.5);
    ring_cap = (size_t)limit;
    ring = calloc(ring_cap, sizeof *ring);
    if (!ring) {
        logmsg("out of memory");
        return 1;
    }
    setvbuf(stderr, NULL, _IOLBF, 0);

    /* Signals: blocked except inside ppoll(), so a SIGTERM can never be lost between
     * checking the flag and going to sleep. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);

    struct nfq_handle *h = nfq_open();
    if (!h) {
        logmsg("nfq_open: %s (root? nfnetlink_queue support?)", strerror(errno));
        return 1;
    }
    /* Old kernels need the per-family binding; newer ones ignore it. */
    nfq_bind_pf(h, AF_INET);
    nfq_bind_pf(h, AF_INET6);
    qh = nfq_create_queue(h, (uint16_t)queue_num, on_packet, NULL);
    if (!qh) {
        logmsg("cannot bind queue %ld: %s (already taken?)", queue_num, strerror(errno));
        nfq_close(h);
        return 1;
    }
    if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
        logmsg("nfq_set_mode: %s", strerror(errno));
        nfq_destroy_queue(qh);
        nfq_close(h);
        return 1;
    }
    uint32_t ql = (uint32_t)(limit + 64);
    if (nfq_set_queue_maxlen(qh, ql) < 0)
        logmsg("warning: nfq_set_queue_maxlen(%" PRIu32 "): %s", ql, strerror(errno));
    int fd = nfq_fd(h);
    nfnl_rcvbufsiz(nfq_nfnlh(h), 4u << 20);
    int one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

    logmsg("ready queue=%ld delay=%.3f limit=%ld", queue_num, delay_s, limit);
    if (ready_file) {
        FILE *f = fopen(ready_file, "w");
        if (f) {
            fprintf(f, "nfq_delay: ready queue=%ld delay=%.3f\n", queue_num, delay_s);
            fclose(f);
        }
    }

    uint64_t end_ns = max_runtime_s > 0 ? now_ns() + (uint64_t)(max_runtime_s * 1e9) : 0;
    static char buf[65536 + 4096];
    const char *why = "signal";
    for (;;) {
        if (stop_signal) break;
        uint64_t now = now_ns();
        if (end_ns && now >= end_ns) { why = "max runtime"; break; }
        release_due(0, NF_ACCEPT);
        /* Sleep until the oldest held packet is due, the runtime ends, or input. */
        uint64_t wake = UINT64_MAX;
        if (ring_len) wake = ring[ring_head].due_ns;
        if (end_ns && end_ns < wake) wake = end_ns;
        struct timespec ts, *tsp = NULL;
        if (wake != UINT64_MAX) {
            uint64_t d = wake > now ? wake - now : 0;
            ts.tv_sec = (time_t)(d / 1000000000u);
            ts.tv_nsec = (long)(d % 1000000000u);
            tsp = &ts;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int n = ppoll(&pfd, 1, tsp, &waitmask);
        if (n < 0) {
            if (errno == EINTR) continue;
            logmsg("ppoll: %s", strerror(errno));
            why = "error";
            break;
        }
        if (n == 0 || !(pfd.revents & (POLLIN | POLLERR)))
            continue;
        /* Drain everything that is readable now. */
        for (;;) {
            ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r > 0) {
                nfq_handle_packet(h, buf, (int)r);
                continue;
            }
            if (r < 0 && errno == ENOBUFS) { st.enobufs++; continue; }
            break;
        }
    }
    size_t left = ring_len;
    release_due(1, drop_on_exit ? NF_DROP : NF_ACCEPT);
    nfq_destroy_queue(qh);
    nfq_close(h);
    logmsg("exit (%s): queued=%" PRIu64 " released=%" PRIu64 " released_at_exit=%zu dropped_full=%" PRIu64
           " max_depth=%zu verdict_errors=%" PRIu64 " enobufs=%" PRIu64,
           why, st.queued, st.released, left, st.dropped_full, st.max_depth, st.verdict_errors, st.enobufs);
    free(ring);
    return 0;
}
