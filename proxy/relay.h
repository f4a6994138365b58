/*
 * A bidirectional TCP relay between a client-side and a server-side socket.
 *
 * Each direction is a flow with its own explicit state:
 *
 *   OPEN ──src FIN──> DRAIN ──all delivered, shutdown(dst, SHUT_WR)──> SHUT
 *     │
 *     └──dst reset after it had sent its own FIN──> DISCARD ──src FIN──> SHUT
 *
 * Data moves with splice() through a pipe (1 MiB) or, when splice is off or
 * not supported or the owner asks it of a flow (relay_opts.copy), with
 * read()/write() through a buffer.  Bytes handed over
 * with relay_preload() (a cookie, bytes held while roles were learned) are
 * delivered before anything read later.  A source is read only while its
 * flow has room (backpressure); a destination is watched for writability
 * only while its flow has pending bytes and the last write hit EAGAIN; the
 * watcher masks are recomputed after every event.
 *
 * Holding: the owner may hold a flow from a given byte on (relay_hold(),
 * typically from its inspect hook): the bytes before it are delivered, the
 * held ones are kept (in copy mode reading goes on into a buffer bounded by
 * the hold's cap, then backpressure; in splice mode nothing more is read) and
 * a FIN read meanwhile is passed on only after them.  relay_release()
 * delivers them.  The iperf3 session uses it to keep the client's TEST_END
 * back until the test's data is delivered, and to stop taking the server's
 * data meanwhile.
 *
 * Closing rules: FIN is propagated as a half-close, the other direction
 * keeps flowing; the relay ends when both flows are SHUT.  A reset from a
 * side that had finished sending ends only the flow toward it: everything it
 * sent is still delivered and the other side sees a FIN, not a reset.  A side
 * has finished sending when it sent its FIN before the reset (the
 * reset-after-FIN of Microsoft KB Q152474), or when it had sent something
 * and was the receiving side at the moment of the reset: nothing of its own
 * was pending and the last bytes moved toward it, not from it (a server
 * closing with unread data).  A reset from a side that was sending
 * (mid-transfer), or from one that never sent anything (a refused or dropped
 * connection), resets the other side too: real failures are not hidden.
 */
#ifndef IPERF_SHIM_PROXY_RELAY_H
#define IPERF_SHIM_PROXY_RELAY_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SIDE_CLIENT = 0, SIDE_SERVER = 1 };
/* Flow index: the flow reading side s is flow s (C2S = 0, S2C = 1). */
enum { FLOW_C2S = 0, FLOW_S2C = 1 };

enum flow_state {
    FLOW_OPEN = 0,   /* reading src, writing dst */
    FLOW_DRAIN,      /* src sent FIN; delivering what is pending */
    FLOW_DISCARD,    /* dst is gone after its own FIN; src is read and dropped until FIN */
    FLOW_SHUT,       /* finished: FIN delivered to dst (or dst gone) */
};

enum relay_end {
    RELAY_END_CLOSED = 0,  /* both directions finished with FIN */
    RELAY_END_RESET,       /* a side reset mid-transfer; the other was reset too */
    RELAY_END_ERROR,       /* a socket error other than reset; both closed */
    RELAY_END_IDLE,        /* idle timeout */
    RELAY_END_ABORTED,     /* closed by its owner (relay_abort) */
    RELAY_END_INSPECT,     /* the inspect hook rejected the bytes */
};

/* Shared activity clock: several relays of one test may point at the same one,
 * so that a quiet control connection is not idle while its data streams run. */
struct activity {
    ev_tstamp last;   /* ev_now() of the last byte moved by any relay using it */
};

struct relay;

/* Called with bytes read from side `from` before they are forwarded (copy mode
 * only), and once with len 0 when that side sent its FIN.  Returns 0 to
 * forward them, -1 to end the relay (RELAY_END_INSPECT; ignored at FIN). */
typedef int (*relay_inspect_fn)(void *arg, int from, const uint8_t *buf, size_t len);
/* Called once when the relay has ended and both sockets are closed.  The
 * owner may call relay_free() from inside it. */
typedef void (*relay_done_fn)(void *arg, struct relay *r, enum relay_end how);
/* Called when side `side` resets while it was receiving (it had spoken, and
 * the last bytes moved toward it, or it had sent its FIN while the other side
 * was still sending toward it): returns true if that is the end of its
 * transfer (the reset is absorbed), false if the transfer was cut short (the
 * reset is passed on, as for a side that was sending). */
typedef bool (*relay_reset_fn)(void *arg, const struct relay *r, int side);

/* What a relay carries, for the loop's wake-up batching (proxy/batching.h). */
enum relay_kind {
    RELAY_CONTROL = 0,   /* control and set-up connections: not counted */
    RELAY_BULK,          /* iperf3 TCP test data: wake-ups may be batched */
    RELAY_TIMED,         /* iperf2 TCP test data (may time each write: --trip-times,
                            isochronous): no batching while one runs */
    RELAY_KINDS
};

/* Relays of this kind started and not yet ended, in the process. */
int relay_running(enum relay_kind kind);

struct relay_opts {
    bool             splice;     /* use splice() (falls back to copying if refused) */
    bool             copy[2];    /* per flow: copy even when splice is set */
    enum relay_kind  kind;       /* what it carries (default: RELAY_CONTROL) */
    double           idle;       /* s: end the relay after this long without traffic; 0 = never */
    struct activity *activity;   /* shared activity clock, or NULL for the relay's own */
    relay_inspect_fn inspect;    /* forces copy mode when set */
    relay_done_fn    done;       /* required */
    relay_reset_fn   reset_ok;   /* judges a reset from a receiving side; NULL: absorbed */
    void            *arg;        /* passed to inspect, done and reset_ok */
};

struct flow {
    enum flow_state state;
    int       pipe[2];       /* splice pipe (read end, write end), -1 in copy mode */
    size_t    in_pipe;       /* bytes sitting in the pipe */
    size_t    pipe_cap;      /* pipe capacity */
    bool      pipe_full;     /* splice into the pipe hit EAGAIN while it held bytes: it
                                may be out of slots; read again once bytes left it */
    uint8_t  *buf;           /* copy buffer, or preloaded bytes in splice mode */
    size_t    buf_cap;       /* allocated size of buf */
    size_t    buf_off;       /* first pending byte in buf */
    size_t    buf_len;       /* end of pending bytes in buf */
    uint64_t  bytes;         /* bytes delivered to dst */
    bool      wr_blocked;    /* last write to dst hit EAGAIN: watch for writability */
    ev_tstamp last_in;       /* when bytes were last read from src (0: never) */
    bool      held;          /* bytes from hold_at on wait for relay_release() */
    size_t    hold_at;       /* index in buf of the first held byte */
    size_t    hold_cap;      /* buf may grow up to this many bytes while held */
    uint8_t  *repl;          /* replacement for the first repl_drop held bytes, applied
                                once the inspected chunk is in buf (relay_release_replace) */
    size_t    repl_len;      /* bytes in repl */
    size_t    repl_drop;     /* held bytes it replaces */
};

struct relay {
    struct ev_loop *loop;
    int        fd[2];            /* client-side, server-side socket; -1 once closed */
    ev_io      rd[2];            /* read watcher of each side */
    ev_io      wr[2];            /* write watcher of each side */
    ev_timer   idle_timer;       /* checks activity->last */
    struct flow f[2];            /* FLOW_C2S reads fd[0], FLOW_S2C reads fd[1] */
    struct activity own_activity;/* used when opts.activity is NULL */
    struct relay_opts opts;
    bool       started;          /* relay_start() was called */
    bool       counted;          /* in relay_running(opts.kind) */
    bool       ended;            /* done was called (or is being called) */
    int        err;              /* errno of the failure that ended it, 0 if none */
    int        err_side;         /* side whose socket failed, -1 if none */
    bool       reset_absorbed;   /* err_side reset after it had finished sending; the
                                    other side got everything and a FIN */
    void      *owner;            /* free for the owner's use */
    int        inspecting;       /* flow whose inspect hook is running, -1 if none */
    size_t     inspect_len;      /* length of the chunk being inspected */
};

/* Creates a relay that owns fd_client and fd_server from now on (both
 * non-blocking and connected).  Returns NULL on failure (fds untouched). */
struct relay *relay_new(struct ev_loop *loop, int fd_client, int fd_server,
                        const struct relay_opts *o);

/* Queues bytes to be delivered on flow `flow` before anything read later.
 * Only before relay_start().  Returns 0, or -1 if out of memory. */
int  relay_preload(struct relay *r, int flow, const void *buf, size_t len);

/* Holds flow `flow`: nothing from the hold point on is delivered until
 * relay_release().  Called from inside the inspect hook of that flow, `at` is
 * an offset in the chunk being inspected (the hold starts with that byte);
 * called elsewhere, `at` must be 0 and the hold starts with the next byte
 * read.  Copy mode: held bytes plus what is read after them may fill the
 * buffer up to `cap` bytes (at least the copy buffer's size), then the source
 * is no longer read.  Splice mode: `at` must be 0, the source is not read
 * while held (what is in the pipe is delivered).  Returns 0, or -1 (already
 * held, or `at` not allowed) and nothing is held. */
int  relay_hold(struct relay *r, int flow, size_t at, size_t cap);

/* Ends a hold: the held bytes are delivered next (from the event loop, never
 * from inside this call), then what follows, then a FIN read meanwhile.
 * No-op if the flow is not held or the relay has ended. */
void relay_release(struct relay *r, int flow);

/* Ends a hold like relay_release(), delivering `len` bytes of `repl` (copied)
 * in place of the first `drop` held bytes.  From inside the inspect hook of
 * that flow the held bytes include the whole chunk being inspected.  Copy mode
 * only.  Returns 0, or -1 (not held, fewer than `drop` bytes held, splice
 * mode, out of memory) and the hold stays as it was. */
int  relay_release_replace(struct relay *r, int flow, size_t drop, const void *repl, size_t len);

/* Bytes of flow `flow` that its destination has not acknowledged yet: still
 * readable on the source socket, in the relay (pipe, buffer, held), and in the
 * destination socket's send queue (sent or not, unacknowledged).  0 once the
 * flow is finished.  Reads socket state (FIONREAD, SIOCOUTQ), moves nothing. */
uint64_t relay_unacked(const struct relay *r, int flow);

/* Starts moving bytes. */
void relay_start(struct relay *r);

/* Ends the relay now: both sockets closed (with RST when reset is true), done
 * called with RELAY_END_ABORTED.  No-op if it has ended. */
void relay_abort(struct relay *r, bool reset);

/* Releases a relay that has ended, or one never started (its fds are closed). */
void relay_free(struct relay *r);

const char *relay_end_str(enum relay_end how);

#endif
