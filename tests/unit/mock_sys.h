/* System-call and allocator seams for the proxy unit tests.
 *
 * The test binaries are linked with -Wl,--wrap=NAME for every function below,
 * so that calls from the code under test (and from the test itself) reach
 * __wrap_NAME in mock_sys.c.  By default every wrapper passes the call on to
 * the real function and counts it; a test arms a fault to make a chosen call
 * fail with an errno, or (send, read, splice) move fewer bytes than asked, in the
 * manner of libssh's and SSSD's cmocka tests. */
#ifndef IPERF_SHIM_TESTS_MOCK_SYS_H
#define IPERF_SHIM_TESTS_MOCK_SYS_H

#include <stdbool.h>
#include <stddef.h>

enum mock_fn {
    MOCK_CALLOC = 0,
    MOCK_REALLOC,
    MOCK_PIPE2,
    MOCK_SEND,
    MOCK_READ,
    MOCK_SPLICE_IN,    /* splice() from a socket into a pipe */
    MOCK_SPLICE_OUT,   /* splice() from a pipe into a socket */
    MOCK_SHUTDOWN,
    MOCK_FN_COUNT,
};

/* What to do to calls of one function.  A call "matches" when fd is -1 or
 * equals the socket the call works on (for splice: the socket end). */
struct mock_fault {
    int    fd;       /* socket whose calls are affected; -1: every call */
    int    skip;     /* matching calls to let through before the first fault */
    int    times;    /* matching calls to fault after that; -1: all of them */
    int    err;      /* errno the faulted call fails with; 0: no failure, cap only */
    size_t cap;      /* send/read/splice: at most this many bytes per matching call; 0: no cap */
};

/* Arms a fault on fn, replacing any previous one. */
void mock_fault_set(enum mock_fn fn, struct mock_fault f);

/* Disarms every fault and zeroes every counter. */
void mock_reset(void);

/* Calls of fn made since the last mock_reset(), matching or not. */
unsigned long mock_calls(enum mock_fn fn);

/* Calls of fn that were made to fail since the last mock_reset(). */
unsigned long mock_faults(enum mock_fn fn);

#endif
