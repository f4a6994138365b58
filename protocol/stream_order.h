/*
 * iperf3 data connections: the order in which the client created them, from
 * what the shim observed when it accepted them.  Pure: observations in, an
 * order or a refusal out; no sockets, no clocks.
 *
 * The client creates its streams one after another: connect (SYN, SYN-ACK,
 * ACK), write the 37-byte cookie, then the next connect.  Its stream ids (and
 * its results JSON) follow that order.  What the shim can observe per
 * connection, and what each tells:
 *
 *  - accept order.  The ACK completing stream k's handshake (or its cookie,
 *    which carries an ACK) leaves before stream k+1's SYN, so handshakes
 *    complete in creation order unless one was held up (ACK and cookie lost:
 *    completed by the retransmitted cookie a retransmission timeout later).
 *    A held-up handshake shows in its RTT sample (SYN-ACK to completion, taken
 *    by the kernel at accept).  So: i accepted before j and j not held up
 *    => i created before j.
 *  - the source port.  Linux gives consecutive connects to one destination
 *    increasing ports (small increments, wrapping in the range); the control
 *    connection comes first.  The candidate order, which the other sources
 *    confirm pair by pair, and which decides alone only for pairs they
 *    cannot order and only when the ports are a sequential allocator's
 *    (measured on kernel 6.18: 39 connects, steps of 2 to 16).
 *  - when the SYN-ACK went out.  For a held-up connection h the segment that
 *    completed the handshake is its retransmitted cookie, so
 *    syn_ack(h) = rx(cookie of h) - rtt(h), from the kernel's receive
 *    timestamp (SO_TIMESTAMPNS) and RTT sample, microsecond exact.  Since the
 *    client waits for h's SYN-ACK before it creates the next stream, and
 *    writes a stream's cookie before it creates the next:
 *      h created before x => syn_ack(h) < rx(cookie of x), and < the accept
 *                              of x (which follows x's handshake);
 *      x created before h => rx(cookie of x) < syn_ack(h)
 *    (the second when x's cookie was not itself retransmitted, i.e. arrived
 *    within SO_LATE_COOKIE_US of x's accept, and segments of one client to the
 *    shim are not reordered, as the accept-order rule assumes too).
 *  - not usable: the SYN's TCP timestamp.  On Linux 6.18 the TSval offset
 *    depends on the ports too (measured: six connects from one socket pair's
 *    addresses got unrelated TSvals), so TSvals of two connections are not
 *    readings of one clock.
 *
 * The rule (so_creation_order): with no handshake held up, accept order.
 * Otherwise the port order is the candidate.  No two connections may be
 * ordered against it by accept order or the SYN-ACK times (then it is
 * refused).  If every two neighbours in it are confirmed by them, it is
 * taken (SO_BY_PORT_TIME).  If some neighbours are neither confirmed nor
 * contradicted (typically a held-up handshake next to a connection whose
 * cookie alone was lost: neither has a prompt cookie to time), the ports
 * alone decide, but only when they are a sequential allocator's: all within
 * SO_PORT_RUN per connection above the control connection's port
 * (SO_BY_PORT_RUN).  Linux gives consecutive connects to one destination
 * ports 2 to 16 apart (__inet_hash_connect: even ports, a random step of up
 * to 7 x 2), Windows 1 apart; a randomising allocator (the BSDs, macOS: 16384
 * ports) puts n ports that close to the control port with a probability of
 * about (32 n / 16384)^n: 1.5e-5 for 2 connections, 4e-9 for 4, and then
 * orders them right half the time.  Ports farther apart, and the order is refused:
 * the caller then leaves the results as they were.
 *
 * Ports are measured from the control connection's port, the allocator's
 * previous step, so that a wrap of the range between them is seen; all must
 * lie within SO_PORT_WINDOW above it.  Seen once in 36 runs on kernel 6.18:
 * the allocator jumped 7656 ports after a held-up control connection.  Then
 * (or with the control port unknown) they are measured from the lowest data
 * port, all within SO_PORT_WINDOW of it, and the ports alone decide a pair
 * only for 4 connections or more (n ports within 32 n of one another by
 * chance: about n (32 n / 16384)^(n-1), 2e-6 for 4).
 */
#ifndef IPERF_SHIM_PROTOCOL_STREAM_ORDER_H
#define IPERF_SHIM_PROTOCOL_STREAM_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SO_MAX_CONNS      256      /* connections ordered at most */
#define SO_PORT_WINDOW    4096     /* data ports lie within this above the control port,
                                      or of one another */
#define SO_PORT_RUN       32       /* a sequential allocator's data ports lie within this
                                      many per connection above the control port */
#define SO_LATE_COOKIE_US 100000   /* a cookie later than this after the accept was
                                      retransmitted (an RTO is >= 200 ms) */

/* What the shim saw of one client data connection. */
struct so_conn {
    uint64_t accept_seq;     /* accept order on the listener (distinct per connection) */
    uint16_t port;           /* the client's source port */
    uint32_t rtt_us;         /* handshake RTT sample from TCP_INFO at accept (0: unknown) */
    bool     synack_retrans; /* the SYN-ACK was retransmitted: no handshake RTT sample */
    int64_t  accept_us;      /* when the shim accepted it (us, the clock of rx_us) */
    int64_t  rx_us;          /* kernel receive time of its first segment, the cookie (0: unknown) */
};

enum so_source {
    SO_BY_ACCEPT = 1,   /* no handshake held up: accept order */
    SO_BY_PORT_TIME,    /* port order, every neighbour pair confirmed */
    SO_BY_PORT_RUN,     /* port order of a sequential allocator, none contradicted */
};

/* What the shim saw of the client's control connection. */
struct so_ctrl {
    uint16_t port;           /* its source port (0: unknown) */
    uint32_t min_rtt_us;     /* its lowest RTT so far, the path's (0: unknown) */
};

/* Orders the n (1..SO_MAX_CONNS) data connections c[] of one client as it
 * created them: order[k] = index into c[] of its k-th stream.  A handshake
 * was held up when its RTT sample is at least twice the lowest of the
 * test's handshakes and the control connection's RTT, plus 1 ms: measured
 * against the data handshakes alone, a test whose handshakes were all held
 * up looked clean (4 of 4 cookies lost, completed within 2 ms of one another
 * in reverse order: seen in t_iperf3_reorder).  Returns 0 with order[] and
 * *how set, or -1 with a one-line reason in why[whylen] (why may be NULL;
 * order[] is then unspecified). */
int so_creation_order(const struct so_conn *c, int n, const struct so_ctrl *ctrl, int *order,
                      enum so_source *how, char *why, size_t whylen);

#endif
