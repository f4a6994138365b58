/* System-call and allocator seams for the proxy unit tests (see mock_sys.h).
 * Linked with -Wl,--wrap=calloc,--wrap=realloc,--wrap=pipe2,--wrap=send,
 * --wrap=read,--wrap=splice,--wrap=shutdown. */
#include "tests/unit/mock_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

void   *__real_calloc(size_t n, size_t size);
void   *__real_realloc(void *p, size_t size);
int     __real_pipe2(int fds[2], int flags);
ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_read(int fd, void *buf, size_t len);
ssize_t __real_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
                      size_t len, unsigned int flags);
int     __real_shutdown(int fd, int how);

void   *__wrap_calloc(size_t n, size_t size);
void   *__wrap_realloc(void *p, size_t size);
int     __wrap_pipe2(int fds[2], int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_read(int fd, void *buf, size_t len);
ssize_t __wrap_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
                      size_t len, unsigned int flags);
int     __wrap_shutdown(int fd, int how);

/* One armed fault and its progress. */
struct mock_slot {
    struct mock_fault f;        /* what the test asked for */
    bool              armed;    /* a fault is set */
    int               seen;     /* matching calls so far */
    unsigned long     calls;    /* all calls */
    unsigned long     faults;   /* calls made to fail */
};

static struct mock_slot slots[MOCK_FN_COUNT];

void mock_fault_set(enum mock_fn fn, struct mock_fault f)
{
    slots[fn].f = f;
    slots[fn].armed = true;
    slots[fn].seen = 0;
}

void mock_reset(void)
{
    for (int i = 0; i < MOCK_FN_COUNT; i++)
        slots[i] = (struct mock_slot){ .armed = false };
}

unsigned long mock_calls(enum mock_fn fn)
{
    return slots[fn].calls;
}

unsigned long mock_faults(enum mock_fn fn)
{
    return slots[fn].faults;
}

/* Counts a call of fn on fd and decides its fate.  Returns the fault that
 * applies to this call, or NULL to pass it on untouched. */
static const struct mock_fault *mock_hit(enum mock_fn fn, int fd)
{
    struct mock_slot *s = &slots[fn];
    s->calls++;
    if (!s->armed || (s->f.fd != -1 && s->f.fd != fd))
        return NULL;
    int k = s->seen++;
    if (k < s->f.skip)
        return NULL;
    if (s->f.times != -1 && k >= s->f.skip + s->f.times)
        return NULL;
    return &s->f;
}

/* Applies fault f (possibly NULL) to a call moving len bytes.  Returns -1
 * with errno set when the call must fail, else the length to pass on. */
static ssize_t mock_len(enum mock_fn fn, const struct mock_fault *f, size_t len)
{
    if (f == NULL)
        return (ssize_t)len;
    if (f->err != 0) {
        slots[fn].faults++;
        errno = f->err;
        return -1;
    }
    if (f->cap != 0 && len > f->cap) {
        slots[fn].faults++;
        return (ssize_t)f->cap;
    }
    return (ssize_t)len;
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (mock_len(MOCK_CALLOC, mock_hit(MOCK_CALLOC, -1), 0) == -1)
        return NULL;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    if (mock_len(MOCK_REALLOC, mock_hit(MOCK_REALLOC, -1), 0) == -1)
        return NULL;
    return __real_realloc(p, size);
}

int __wrap_pipe2(int fds[2], int flags)
{
    if (mock_len(MOCK_PIPE2, mock_hit(MOCK_PIPE2, -1), 0) == -1)
        return -1;
    return __real_pipe2(fds, flags);
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t n = mock_len(MOCK_SEND, mock_hit(MOCK_SEND, fd), len);
    if (n == -1)
        return -1;
    return __real_send(fd, buf, (size_t)n, flags);
}

ssize_t __wrap_read(int fd, void *buf, size_t len)
{
    ssize_t n = mock_len(MOCK_READ, mock_hit(MOCK_READ, fd), len);
    if (n == -1)
        return -1;
    return __real_read(fd, buf, (size_t)n);
}

/* Returns true if fd is a socket. */
static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

ssize_t __wrap_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
                      size_t len, unsigned int flags)
{
    bool in = is_socket(fd_in);
    enum mock_fn fn = in ? MOCK_SPLICE_IN : MOCK_SPLICE_OUT;
    ssize_t n = mock_len(fn, mock_hit(fn, in ? fd_in : fd_out), len);
    if (n == -1)
        return -1;
    return __real_splice(fd_in, off_in, fd_out, off_out, (size_t)n, flags);
}

int __wrap_shutdown(int fd, int how)
{
    if (mock_len(MOCK_SHUTDOWN, mock_hit(MOCK_SHUTDOWN, fd), 0) == -1)
        return -1;
    return __real_shutdown(fd, how);
}
