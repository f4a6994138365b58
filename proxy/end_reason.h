/*
 * Why a test or session ended, recorded once by the handler that saw it and
 * put into words once, in the session's log line ("connect to
 * 10.0.0.2:5201: connection refused", "the server reset the connection").
 * Shared by iperf3 tests and iperf2 sessions: handlers record a cause and
 * ask for the close; the first cause recorded is the one reported.
 */
#ifndef IPERF_SHIM_PROXY_END_REASON_H
#define IPERF_SHIM_PROXY_END_REASON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "proxy/relay.h"

enum end_cause {
    END_NONE = 0,         /* nothing went wrong (so far) */
    END_CONNECT_FAILED,   /* a connect to the server failed or timed out (err) */
    END_SERVER_RESET,     /* the server reset a connection in the middle of the test */
    END_CLIENT_RESET,     /* the client reset a connection in the middle of the test */
    END_SOCKET_ERROR,     /* another socket error on the server or client side (err, side) */
    END_IDLE,             /* no traffic either way for --idle-timeout */
    END_PROTOCOL,         /* a peer broke the protocol (detail) */
    END_TIMEOUT,          /* a peer missed one of the shim's bounds (detail) */
    END_RESOURCES,        /* out of memory or file descriptors (err or detail) */
    END_SHUTDOWN,         /* the shim exited before the test did */
};

struct end_reason {
    enum end_cause cause;    /* END_NONE until something is recorded */
    int            err;      /* errno, 0 if none */
    int            side;     /* SIDE_CLIENT or SIDE_SERVER for socket errors, -1 if none */
    const char    *detail;   /* static text completing the cause, NULL if none */
};

/* Records a cause unless one was recorded already.  Returns true if this one
 * was recorded (it is the first). */
bool end_reason_set(struct end_reason *r, enum end_cause cause, int err, const char *detail);

/* Records how a relay ended: a reset or socket error with its side and
 * errno, an idle timeout; a normal end (or an absorbed reset) records
 * nothing.  Returns what end_reason_set() returned (false for nothing). */
bool end_reason_from_relay(struct end_reason *r, const struct relay *rel, enum relay_end how);

/* The reason in words for an operator, naming the server where it matters.
 * Returns buf. */
char *end_reason_str(const struct end_reason *r, const struct sockaddr_storage *server,
                     char *buf, size_t n);

#endif
