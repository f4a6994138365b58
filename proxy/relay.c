#include "proxy/relay.h"

#include "proxy/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_COPY_BUF  (64u * 1024u)     /* copy-mode buffer per direction */
#define RELAY_PIPE_SIZE (1u << 20)        /* splice pipe per direction */
#define RELAY_READS_PER_EVENT 4           /* fairness: reads per readiness event */

static uint8_t discard_buf[RELAY_COPY_BUF];  /* sink for FLOW_DISCARD */

const char *relay_end_str(enum relay_end how)
{
    switch (how) {
    case RELAY_END_CLOSED:  return "closed";
    case RELAY_END_RESET:   return "reset";
    case RELAY_END_ERROR:   return "socket error";
    case RELAY_END_IDLE:    return "idle timeout";
    case RELAY_END_ABORTED: return "aborted";
    case RELAY_END_INSPECT: return "protocol violation";
    }
    return "?";
}

static size_t flow_pending(const struct flow *f)
{
    return (f->buf_len - f->buf_off) + f->in_pipe;
}

static bool flow_splicing(const struct flow *f)
{
    return f->pipe[0] >= 0;
}

/* End of the bytes that may be delivered now: the hold point, or buf_len. */
static size_t flow_deliver_end(const struct flow *f)
{
    return f->held ? f->hold_at : f->buf_len;
}

/* Bytes that may be written to the destination now (held ones excluded). */
static size_t flow_deliverable(const struct flow *f)
{
    return (flow_deliver_end(f) - f->buf_off) + f->in_pipe;
}

/* A held flow keeps room for reading: pending bytes move to the front of the
 * buffer, and the buffer grows (doubling) up to the hold's cap.  At the cap,
 * or out of memory, the flow has no room: backpressure. */
static void flow_held_room(struct flow *f)
{
    if (!f->held || f->buf_len < f->buf_cap)
        return;
    if (f->buf_off > 0) {
        memmove(f->buf, f->buf + f->buf_off, f->buf_len - f->buf_off);
        f->hold_at -= f->buf_off;
        f->buf_len -= f->buf_off;
        f->buf_off = 0;
        return;
    }
    if (f->buf_cap >= f->hold_cap)
        return;
    size_t want = f->buf_cap * 2 < f->hold_cap ? f->buf_cap * 2 : f->hold_cap;
    uint8_t *nb = realloc(f->buf, want);
    if (nb == NULL)
        return;
    f->buf = nb;
    f->buf_cap = want;
}

/* Room for more bytes from the source, 0 when the flow is full. */
static size_t flow_room(const struct flow *f)
{
    if (flow_splicing(f))
        return f->held || f->pipe_full ? 0 : f->pipe_cap - f->in_pipe;   /* held: nothing more is read */
    return f->buf_cap - f->buf_len;
}

static void flow_close_pipe(struct flow *f)
{
    if (f->pipe[0] >= 0) {
        close(f->pipe[0]);
        close(f->pipe[1]);
    }
    f->pipe[0] = f->pipe[1] = -1;
    f->in_pipe = 0;
    f->pipe_full = false;
}

/* Switches a flow to copy mode.  Returns 0, or -1 if out of memory. */
static int flow_to_copy_mode(struct flow *f)
{
    flow_close_pipe(f);
    if (f->buf_cap < RELAY_COPY_BUF) {
        uint8_t *nb = realloc(f->buf, RELAY_COPY_BUF);
        if (nb == NULL)
            return -1;
        f->buf = nb;
        f->buf_cap = RELAY_COPY_BUF;
    }
    return 0;
}

static int flow_open_pipe(struct flow *f)
{
    if (pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
        f->pipe[0] = f->pipe[1] = -1;
        return -1;
    }
    int sz = fcntl(f->pipe[1], F_SETPIPE_SZ, (int)RELAY_PIPE_SIZE);
    if (sz == -1)
        sz = fcntl(f->pipe[1], F_GETPIPE_SZ);
    f->pipe_cap = sz > 0 ? (size_t)sz : 65536;
    return 0;
}

struct relay *relay_new(struct ev_loop *loop, int fd_client, int fd_server,
                        const struct relay_opts *o)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->fd[SIDE_CLIENT] = fd_client;
    r->fd[SIDE_SERVER] = fd_server;
    r->opts = *o;
    r->err_side = -1;
    r->inspecting = -1;
    for (int d = 0; d < 2; d++)
        r->f[d].pipe[0] = r->f[d].pipe[1] = -1;
    for (int d = 0; d < 2; d++) {
        struct flow *f = &r->f[d];
        bool spl = o->splice && !o->copy[d] && o->inspect == NULL && flow_open_pipe(f) == 0;
        if (!spl && flow_to_copy_mode(f) == -1) {
            for (int k = 0; k < 2; k++) {
                flow_close_pipe(&r->f[k]);
                free(r->f[k].buf);
            }
            free(r);
            return NULL;
        }
    }
    return r;
}

int relay_preload(struct relay *r, int flow, const void *buf, size_t len)
{
    struct flow *f = &r->f[flow];
    if (len == 0)
        return 0;
    if (f->buf_cap - f->buf_len < len) {
        size_t want = f->buf_len + len;
        if (!flow_splicing(f) && want < RELAY_COPY_BUF)
            want = RELAY_COPY_BUF;
        uint8_t *nb = realloc(f->buf, want);
        if (nb == NULL)
            return -1;
        f->buf = nb;
        f->buf_cap = want;
    }
    memcpy(f->buf + f->buf_len, buf, len);
    f->buf_len += len;
    return 0;
}

static void relay_touch(struct relay *r)
{
    r->opts.activity->last = ev_now(r->loop);
}

static int running[RELAY_KINDS];   /* relay_running() */

int relay_running(enum relay_kind kind)
{
    return running[kind];
}

static void relay_uncount(struct relay *r)
{
    if (r->counted)
        running[r->opts.kind]--;
    r->counted = false;
}

/* Stops watchers, closes everything and reports the end to the owner. */
static void relay_end(struct relay *r, enum relay_end how)
{
    if (r->ended)
        return;
    r->ended = true;
    relay_uncount(r);
    for (int s = 0; s < 2; s++) {
        ev_io_stop(r->loop, &r->rd[s]);
        ev_io_stop(r->loop, &r->wr[s]);
    }
    ev_timer_stop(r->loop, &r->idle_timer);
    bool reset = how == RELAY_END_RESET || how == RELAY_END_ERROR ||
                 how == RELAY_END_INSPECT;
    for (int s = 0; s < 2; s++) {
        if (r->fd[s] < 0)
            continue;
        if (reset)
            net_close_reset(r->fd[s]);
        else
            close(r->fd[s]);
        r->fd[s] = -1;
    }
    for (int d = 0; d < 2; d++)
        flow_close_pipe(&r->f[d]);
    r->opts.done(r->opts.arg, r, how);   /* may free r: nothing after this */
}

/* Ends the hold of flow f, putting f->repl in place of the first
 * f->repl_drop held bytes.  Returns 0, or -1 (errno ENOMEM) if the buffer
 * cannot grow. */
static int flow_apply_replace(struct flow *f)
{
    size_t tail = f->buf_len - f->hold_at - f->repl_drop;   /* held bytes kept */
    size_t need = f->hold_at + f->repl_len + tail;
    if (need > f->buf_cap) {
        uint8_t *nb = realloc(f->buf, need);
        if (nb == NULL) {
            errno = ENOMEM;
            return -1;
        }
        f->buf = nb;
        f->buf_cap = need;
    }
    memmove(f->buf + f->hold_at + f->repl_len, f->buf + f->hold_at + f->repl_drop, tail);
    memcpy(f->buf + f->hold_at, f->repl, f->repl_len);
    f->buf_len = need;
    free(f->repl);
    f->repl = NULL;
    f->held = false;
    return 0;
}

/* Result of moving bytes on a flow. */
enum io_res { IO_OK = 0, IO_AGAIN, IO_EOF, IO_FAIL, IO_REJECT };

/* Delivers pending bytes of flow d to its destination. */
static enum io_res flow_write(struct relay *r, int d)
{
    struct flow *f = &r->f[d];
    int dst = r->fd[1 - d];

    size_t end = flow_deliver_end(f);
    while (f->buf_off < end) {
        ssize_t n = send(dst, f->buf + f->buf_off, end - f->buf_off, MSG_NOSIGNAL);
        if (n > 0) {
            f->buf_off += (size_t)n;
            f->bytes += (uint64_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_AGAIN;
        return IO_FAIL;
    }
    if (f->held)
        flow_held_room(f);   /* only the held bytes are left: keep room to read */
    else
        f->buf_off = f->buf_len = 0;
    while (f->in_pipe > 0) {
        ssize_t n = splice(f->pipe[0], NULL, dst, NULL, f->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            f->in_pipe -= (size_t)n;
            f->bytes += (uint64_t)n;
            f->pipe_full = false;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_AGAIN;   /* the pipe is not empty, so the socket is full */
        return IO_FAIL;
    }
    return IO_OK;
}

/* Reads once from the source of flow d into the flow.  Returns IO_OK when
 * bytes were taken. */
static enum io_res flow_read(struct relay *r, int d)
{
    struct flow *f = &r->f[d];
    int src = r->fd[d];
    ssize_t n;

    if (f->state == FLOW_DISCARD) {
        n = read(src, discard_buf, sizeof(discard_buf));
    } else if (flow_splicing(f)) {
        n = splice(src, NULL, f->pipe[1], NULL, flow_room(f), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == -1 && (errno == EINVAL || errno == ENOSYS) && f->in_pipe == 0) {
            /* this socket type or kernel cannot splice: copy instead */
            if (flow_to_copy_mode(f) == -1)
                return IO_FAIL;
            return flow_read(r, d);
        }
        if (n > 0)
            f->in_pipe += (size_t)n;
        /* EAGAIN with bytes in the pipe: the socket is empty or the pipe is
         * out of slots (small segments take one each).  Which one cannot be
         * told, so stop reading until bytes leave the pipe, as haproxy
         * does; a level-triggered read watcher would spin otherwise. */
        if (n == -1 && errno == EAGAIN && f->in_pipe > 0)
            f->pipe_full = true;
    } else {
        n = read(src, f->buf + f->buf_len, f->buf_cap - f->buf_len);
        if (n > 0 && r->opts.inspect != NULL) {
            r->inspecting = d;
            r->inspect_len = (size_t)n;
            int rc = r->opts.inspect(r->opts.arg, d, f->buf + f->buf_len, (size_t)n);
            r->inspecting = -1;
            if (rc != 0)
                return IO_REJECT;
        }
        if (n > 0) {
            f->buf_len += (size_t)n;
            if (f->repl != NULL && flow_apply_replace(f) == -1)
                return IO_FAIL;
            flow_held_room(f);
        }
        if (n == 0 && r->opts.inspect != NULL)
            r->opts.inspect(r->opts.arg, d, NULL, 0);   /* end of this direction */
    }
    if (n > 0) {
        relay_touch(r);
        f->last_in = ev_now(r->loop);
        return IO_OK;
    }
    if (n == 0)
        return IO_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return IO_AGAIN;
    return IO_FAIL;
}

/* Drops whatever flow d holds: its destination is gone. */
static void flow_discard(struct flow *f)
{
    f->held = false;
    f->buf_off = f->buf_len = 0;
    while (f->in_pipe > 0) {
        ssize_t n = read(f->pipe[0], discard_buf, sizeof(discard_buf));
        if (n <= 0)
            break;
        f->in_pipe -= (size_t)n < f->in_pipe ? (size_t)n : f->in_pipe;
    }
    f->in_pipe = 0;
    f->pipe_full = false;
}

/* Bytes that wait, unread by us, in socket fd (0 if that cannot be told).
 * Leaves errno alone. */
static int sock_unread(int fd)
{
    int saved = errno, n = 0;
    if (ioctl(fd, FIONREAD, &n) == -1)
        n = 0;
    errno = saved;
    return n;
}

/* Side `side` reset its connection.  Returns true if it had finished
 * sending (see relay.h): then only the flow toward it ends, the flow from it
 * delivers what it holds and passes on a FIN.  Returns false for a reset in
 * the middle of its transfer: the relay must end with a reset. */
static bool flow_maybe_shut(struct relay *r, int d);

static bool side_reset(struct relay *r, int side)
{
    struct flow *from = &r->f[side], *to = &r->f[1 - side];
    r->err = errno;
    r->err_side = side;
    /* It had finished sending if it sent its FIN first, or if it had spoken
     * and was receiving when it reset: nothing of its own pending (in the
     * flow or still unread in our socket), and the last bytes moved toward
     * it, not from it.  A side that never said anything and resets (a
     * refused or dropped connection) is a failure. */
    /* A side that sent its FIN while the other was still sending toward it
     * and then resets is judged by the owner as well: a killed process with
     * nothing unread sends a FIN, not a reset, and the data still coming
     * then gets the reset. */
    bool judged_ok = r->opts.reset_ok == NULL || r->opts.reset_ok(r->opts.arg, r, side);
    bool sent_fin = from->state == FLOW_DRAIN || from->state == FLOW_SHUT;
    bool finished = from->state == FLOW_DISCARD ||
                    (sent_fin && (to->state != FLOW_OPEN || judged_ok)) ||
                    (from->bytes > 0 && flow_pending(from) == 0 && to->last_in > 0 &&
                     from->last_in <= to->last_in && sock_unread(r->fd[side]) == 0 &&
                     judged_ok);
    if (!finished)
        return false;
    r->reset_absorbed = true;
    if (from->state == FLOW_OPEN)
        from->state = FLOW_DRAIN;
    else if (from->state == FLOW_DISCARD)
        from->state = FLOW_SHUT;
    flow_discard(to);
    to->state = to->state == FLOW_OPEN ? FLOW_DISCARD : FLOW_SHUT;
    /* everything it sent is delivered: pass its FIN on now */
    if (!flow_maybe_shut(r, side))
        from->state = FLOW_SHUT;   /* the other side is gone as well */
    return true;
}

/* A write to the destination of flow d failed.  Returns true if the relay
 * goes on (see side_reset), false if it must end (r->err set). */
static bool flow_dst_failed(struct relay *r, int d)
{
    if (errno != ECONNRESET && errno != EPIPE && errno != ENOTCONN) {
        r->err = errno;
        r->err_side = 1 - d;
        return false;
    }
    return side_reset(r, 1 - d);
}

/* How a relay ends after flow_push() failed: RELAY_END_RESET when the
 * failed side reset, RELAY_END_ERROR for any other socket error. */
static enum relay_end push_failure(const struct relay *r)
{
    return r->err == ECONNRESET || r->err == EPIPE || r->err == ENOTCONN ?
           RELAY_END_RESET : RELAY_END_ERROR;
}

/* Forwards a FIN once everything before it was delivered.  Returns false on
 * failure of the shutdown itself (treated like a write failure). */
static bool flow_maybe_shut(struct relay *r, int d)
{
    struct flow *f = &r->f[d];
    if (f->state != FLOW_DRAIN || flow_pending(f) > 0)
        return true;
    f->state = FLOW_SHUT;
    if (shutdown(r->fd[1 - d], SHUT_WR) == -1 && errno != ENOTCONN)
        return false;
    return true;
}

/* Recomputes every watcher from flow state; ends the relay when both flows
 * are finished. */
static void relay_rearm(struct relay *r)
{
    if (r->f[0].state == FLOW_SHUT && r->f[1].state == FLOW_SHUT) {
        relay_end(r, RELAY_END_CLOSED);
        return;
    }
    for (int s = 0; s < 2; s++) {
        const struct flow *in = &r->f[s];        /* flow reading side s */
        const struct flow *out = &r->f[1 - s];   /* flow writing to side s */
        bool want_rd = (in->state == FLOW_OPEN && flow_room(in) > 0) ||
                       in->state == FLOW_DISCARD;
        bool want_wr = (out->state == FLOW_OPEN || out->state == FLOW_DRAIN) &&
                       flow_deliverable(out) > 0;
        if (want_rd && !ev_is_active(&r->rd[s]))
            ev_io_start(r->loop, &r->rd[s]);
        else if (!want_rd && ev_is_active(&r->rd[s]))
            ev_io_stop(r->loop, &r->rd[s]);
        if (want_wr && !ev_is_active(&r->wr[s]))
            ev_io_start(r->loop, &r->wr[s]);
        else if (!want_wr && ev_is_active(&r->wr[s]))
            ev_io_stop(r->loop, &r->wr[s]);
    }
}

/* Pushes flow d forward: write what is pending, pass on FIN.  Returns false
 * if the relay must end (r->err set). */
static bool flow_push(struct relay *r, int d)
{
    struct flow *f = &r->f[d];
    if (f->state == FLOW_OPEN || f->state == FLOW_DRAIN) {
        if (flow_write(r, d) == IO_FAIL && !flow_dst_failed(r, d))
            return false;
    }
    if (!flow_maybe_shut(r, d) && !flow_dst_failed(r, d))
        return false;
    return true;
}

static void on_readable(struct relay *r, int d)
{
    struct flow *f = &r->f[d];
    for (int i = 0; i < RELAY_READS_PER_EVENT; i++) {
        if (f->state == FLOW_OPEN && flow_room(f) == 0)
            break;
        enum io_res res = flow_read(r, d);
        if (res == IO_AGAIN)
            break;
        if (res == IO_REJECT) {
            relay_end(r, RELAY_END_INSPECT);
            return;
        }
        if (res == IO_FAIL) {
            if (errno == ECONNRESET && side_reset(r, d))
                break;   /* it had finished sending: the other side gets a FIN */
            r->err = errno;
            r->err_side = d;
            relay_end(r, errno == ECONNRESET ? RELAY_END_RESET : RELAY_END_ERROR);
            return;
        }
        if (res == IO_EOF) {
            f->state = f->state == FLOW_DISCARD ? FLOW_SHUT : FLOW_DRAIN;
            if (!flow_push(r, d)) {
                relay_end(r, push_failure(r));
                return;
            }
            break;
        }
        if (f->state == FLOW_DISCARD)
            continue;
        if (!flow_push(r, d)) {
            relay_end(r, push_failure(r));
            return;
        }
    }
    relay_rearm(r);
}

static void rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct relay *r = w->data;
    on_readable(r, w == &r->rd[SIDE_CLIENT] ? FLOW_C2S : FLOW_S2C);
}

static void wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct relay *r = w->data;
    int d = w == &r->wr[SIDE_SERVER] ? FLOW_C2S : FLOW_S2C;   /* flow whose dst is writable */
    if (!flow_push(r, d)) {
        relay_end(r, push_failure(r));
        return;
    }
    relay_rearm(r);
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct relay *r = w->data;
    ev_tstamp left = r->opts.activity->last + r->opts.idle - ev_now(loop);
    if (left <= 0) {
        relay_end(r, RELAY_END_IDLE);
        return;
    }
    w->repeat = left;
    ev_timer_again(loop, w);
}

void relay_start(struct relay *r)
{
    if (r->opts.activity == NULL)
        r->opts.activity = &r->own_activity;
    relay_touch(r);
    for (int s = 0; s < 2; s++) {
        ev_io_init(&r->rd[s], rd_cb, r->fd[s], EV_READ);
        ev_io_init(&r->wr[s], wr_cb, r->fd[s], EV_WRITE);
        r->rd[s].data = r->wr[s].data = r;
    }
    ev_init(&r->idle_timer, idle_cb);
    r->idle_timer.data = r;
    if (r->opts.idle > 0) {
        r->idle_timer.repeat = r->opts.idle;
        ev_timer_again(r->loop, &r->idle_timer);
    }
    r->started = true;
    r->counted = true;
    running[r->opts.kind]++;
    if (r->opts.kind == RELAY_TIMED) {
        /* timed data (iperf2 --trip-times stamps every write) goes on as it
         * comes: no Nagle wait for the ACK of the segment before, which the
         * client may have switched off (-N) and the server acknowledges
         * late (delayed ACK, up to 40 ms) */
        int one = 1;
        for (int s = 0; s < 2; s++)
            setsockopt(r->fd[s], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    /* deliver preloaded bytes at once; watchers only where needed */
    for (int d = 0; d < 2; d++) {
        if (!flow_push(r, d)) {
            relay_end(r, push_failure(r));
            return;
        }
    }
    relay_rearm(r);
}

int relay_hold(struct relay *r, int flow, size_t at, size_t cap)
{
    struct flow *f = &r->f[flow];
    size_t avail = r->inspecting == flow ? r->inspect_len : 0;
    if (f->held || at > avail || (flow_splicing(f) && at > 0))
        return -1;
    f->held = true;
    f->hold_at = f->buf_len + at;   /* the inspected chunk sits at buf_len */
    f->hold_cap = cap > f->buf_cap ? cap : f->buf_cap;
    if (r->started && !r->ended)
        relay_rearm(r);
    return 0;
}

void relay_release(struct relay *r, int flow)
{
    struct flow *f = &r->f[flow];
    if (!f->held || r->ended)
        return;
    f->held = false;
    /* from inside an inspect hook the chunk is not in buf_len yet: the caller
     * re-arms after it; elsewhere the write watcher delivers from the loop */
    if (r->started && r->inspecting < 0)
        relay_rearm(r);
}

int relay_release_replace(struct relay *r, int flow, size_t drop, const void *repl, size_t len)
{
    struct flow *f = &r->f[flow];
    bool inside = r->inspecting == flow;
    size_t held = f->buf_len - f->hold_at + (inside ? r->inspect_len : 0);
    if (!f->held || r->ended || flow_splicing(f) || f->repl != NULL || drop > held)
        return -1;
    f->repl = malloc(len > 0 ? len : 1);
    if (f->repl == NULL)
        return -1;
    memcpy(f->repl, repl, len);
    f->repl_len = len;
    f->repl_drop = drop;
    if (inside)
        return 0;   /* applied once the chunk is in the buffer (flow_read) */
    if (flow_apply_replace(f) == -1) {
        free(f->repl);
        f->repl = NULL;
        return -1;
    }
    if (r->started && r->inspecting < 0)
        relay_rearm(r);
    return 0;
}

/* A count from net_readable()/net_unacked(), 0 for a closed socket or an error. */
static uint64_t queued(int fd, long (*count)(int))
{
    long n = fd >= 0 ? count(fd) : 0;
    return n > 0 ? (uint64_t)n : 0;
}

uint64_t relay_unacked(const struct relay *r, int flow)
{
    const struct flow *f = &r->f[flow];
    if (r->ended || f->state == FLOW_DISCARD)
        return 0;
    uint64_t n = queued(r->fd[1 - flow], net_unacked);   /* a FIN may be unacked too */
    if (f->state == FLOW_OPEN)
        n += queued(r->fd[flow], net_readable);
    return n + flow_pending(f);
}

void relay_abort(struct relay *r, bool reset)
{
    if (r->ended)
        return;
    if (reset) {
        for (int s = 0; s < 2; s++) {
            if (r->fd[s] >= 0) {
                net_close_reset(r->fd[s]);
                r->fd[s] = -1;
            }
        }
    }
    relay_end(r, RELAY_END_ABORTED);
}

void relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    if (!r->ended) {
        relay_uncount(r);
        for (int s = 0; s < 2; s++) {
            if (r->started) {
                ev_io_stop(r->loop, &r->rd[s]);
                ev_io_stop(r->loop, &r->wr[s]);
            }
            if (r->fd[s] >= 0)
                close(r->fd[s]);
        }
        if (r->started)
            ev_timer_stop(r->loop, &r->idle_timer);
    }
    for (int d = 0; d < 2; d++) {
        flow_close_pipe(&r->f[d]);
        free(r->f[d].buf);
        free(r->f[d].repl);
    }
    free(r);
}
