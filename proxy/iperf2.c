#include "proxy/iperf2.h"

#include "compat/iperf2_compat.h"

#include "protocol/iperf2.h"
#include "proxy/config.h"
#include "proxy/connect.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/relay.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define I2_MAX_BACK 128   /* connect-back connections accepted per session */

struct sess;

/* One connect-back connection: the server's, relayed to the client. */
struct back {
    struct sess      *s;          /* owning session */
    int               sfd;        /* the server's connection (accepted) */
    struct connector  conn;       /* connecting to the client */
    struct relay     *relay;      /* once connected */
    int               slot;       /* index in s->backs */
};

struct sess {
    struct sess      *next;          /* list of live sessions */
    struct ev_loop   *loop;
    struct sockaddr_storage client;  /* the client's address */
    int               cfd;           /* client connection until its relay exists */
    uint8_t          *first;         /* bytes read by the front (header first) */
    size_t            nfirst;
    struct i2_test_hdr hdr;          /* the parsed test header */
    struct connector  conn;          /* upstream connect */
    bool              connecting;    /* conn in progress */
    struct relay     *main;          /* the client's connection, relayed */
    bool              main_done;     /* it ended */
    enum relay_end    main_end;      /* how */
    bool              reset_absorbed;/* a side reset after finishing: closed with FIN */
    int               lfd;           /* connect-back listener, -1 if none */
    ev_io             lio;           /* its accept watcher */
    ev_timer          ltimer;        /* closes the listener when no connect-back comes */
    uint16_t          back_port;     /* port the server is told (the listener's) */
    struct back      *backs[I2_MAX_BACK]; /* connect-back connections, NULL once done */
    int               nbacks;        /* accepted so far */
    int               live_backs;    /* still alive */
    uint64_t          bytes[2];      /* main connection: client->server, server->client */
    uint64_t          back_bytes[2]; /* connect-backs: server->client, client->server */
    const char       *failure;       /* why the shim closed it, NULL if it did not */
    int               busy;          /* > 0 while in a callback chain: defer freeing */
};

static struct sess *sessions;
static int nsessions;

int i2_live_sessions(void)
{
    return nsessions;
}

static char *addr_s(const struct sockaddr_storage *ss, char *buf)
{
    return net_addr_str((const struct sockaddr *)ss, buf, ADDR_STR_MAX);
}

static void listener_close(struct sess *s)
{
    if (s->lfd < 0)
        return;
    ev_io_stop(s->loop, &s->lio);
    ev_timer_stop(s->loop, &s->ltimer);
    close(s->lfd);
    s->lfd = -1;
}

static void sess_log_end(struct sess *s)
{
    char c[ADDR_STR_MAX], u[ADDR_STR_MAX], back[160] = "", outcome[96];
    if (s->hdr.connect_back)
        snprintf(back, sizeof(back), ", connect-back via shim port %u to client port %u: %d "
                 "connection(s), bytes server->client %" PRIu64 ", client->server %" PRIu64,
                 s->back_port, s->hdr.port, s->nbacks, s->back_bytes[0], s->back_bytes[1]);
    if (s->failure)
        snprintf(outcome, sizeof(outcome), "closed by the shim: %s", s->failure);
    else if (s->reset_absorbed)
        snprintf(outcome, sizeof(outcome), "a side reset after finishing: the other got a FIN");
    else
        snprintf(outcome, sizeof(outcome), "%s", relay_end_str(s->main_end));
    log_info("iperf2 test: client %s, server %s, mode %s, bytes client->server %" PRIu64
             ", server->client %" PRIu64 "%s, %s", addr_s(&s->client, c),
             addr_s(&cfg.upstream2_addr, u), i2_mode_name(s->hdr.mode), s->bytes[0],
             s->bytes[1], back, outcome);
}

static void sess_maybe_free(struct sess *s)
{
    if (s->busy > 0 || !s->main_done || s->connecting || s->live_backs > 0 || s->lfd >= 0)
        return;
    sess_log_end(s);
    for (struct sess **pp = &sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    free(s->first);
    free(s);
    nsessions--;
}

/* ------------------------------------------------------- connect-backs */

static void back_free(struct back *b)
{
    struct sess *s = b->s;
    connector_cancel(&b->conn);
    if (b->relay == NULL && b->sfd >= 0)
        close(b->sfd);
    s->backs[b->slot] = NULL;
    s->live_backs--;
    free(b);
}

static void back_done(void *arg, struct relay *r, enum relay_end how)
{
    struct back *b = arg;
    struct sess *s = b->s;
    s->back_bytes[0] += r->f[FLOW_C2S].bytes;
    s->back_bytes[1] += r->f[FLOW_S2C].bytes;
    log_debug("iperf2 connect-back ended (%s)", relay_end_str(how));
    relay_free(r);
    b->relay = NULL;
    b->sfd = -1;
    back_free(b);
    sess_maybe_free(s);
}

static void back_connected(void *arg, int fd, int err)
{
    struct back *b = arg;
    struct sess *s = b->s;
    char c[ADDR_STR_MAX];

    if (fd < 0) {
        struct sockaddr_storage to = s->client;
        net_set_port(&to, s->hdr.port);
        log_warn("iperf2 connect-back: cannot reach the client at %s: %s; closing the "
                 "server's connection", addr_s(&to, c), strerror(err));
        net_close_reset(b->sfd);
        b->sfd = -1;
        back_free(b);
        sess_maybe_free(s);
        return;
    }
    struct relay_opts o = {
        .splice = cfg.use_splice, .idle = cfg.idle_timeout, .done = back_done, .arg = b,
    };
    /* the server plays the client on this connection: it is the relay's client side */
    b->relay = relay_new(s->loop, b->sfd, fd, &o);
    if (b->relay == NULL) {
        close(fd);
        back_free(b);
        sess_maybe_free(s);
        return;
    }
    s->busy++;
    relay_start(b->relay);
    s->busy--;
    sess_maybe_free(s);
}

static void back_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    struct sess *s = w->data;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    char who[ADDR_STR_MAX], to_s[ADDR_STR_MAX];

    int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd == -1)
        return;
    if (s->nbacks >= I2_MAX_BACK) {
        log_warn("iperf2 connect-back: refusing %s: more than %d connections", addr_s(&peer, who),
                 I2_MAX_BACK);
        close(fd);
        return;
    }
    struct back *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        close(fd);
        return;
    }
    b->s = s;
    b->sfd = fd;
    b->slot = s->nbacks++;
    s->backs[b->slot] = b;
    s->live_backs++;
    struct sockaddr_storage to = s->client;
    socklen_t tolen = net_set_port(&to, s->hdr.port);
    log_debug("iperf2 connect-back from server %s, relaying to client %s", addr_s(&peer, who),
              addr_s(&to, to_s));
    if (connector_start(&b->conn, s->loop, &to, tolen, NULL, cfg.connect_timeout,
                        back_connected, b) == -1) {
        back_free(b);
        return;
    }
    /* the listener stays open for more connect-backs until the session ends */
}

static void listener_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    struct sess *s = w->data;
    if (!s->main_done) {   /* still running: check again later */
        ev_timer_again(loop, w);
        return;
    }
    if (s->nbacks == 0)
        log_warn("iperf2 %s test: the server never connected back within %.0f s",
                 i2_mode_name(s->hdr.mode), cfg.handshake_timeout);
    listener_close(s);
    sess_maybe_free(s);
}

/* Opens the connect-back listener on the address the server sees (the local
 * address of the upstream connection) and rewrites mPort to its port.
 * Returns 0, or -1 with errno. */
static int listener_open(struct sess *s, int ufd)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    if (getsockname(ufd, (struct sockaddr *)&local, &len) == -1)
        return -1;
    net_set_port(&local, 0);
    s->lfd = net_tcp_listen(&local, len);
    if (s->lfd == -1)
        return -1;
    len = sizeof(local);
    if (getsockname(s->lfd, (struct sockaddr *)&local, &len) == -1)
        return -1;
    s->back_port = (uint16_t)net_port((struct sockaddr *)&local);
    if (i2_hdr_set_port(s->first, s->nfirst, s->back_port) == -1) {
        errno = EINVAL;
        return -1;
    }
    ev_io_init(&s->lio, back_accept_cb, s->lfd, EV_READ);
    s->lio.data = s;
    ev_io_start(s->loop, &s->lio);
    /* after the client's connection ends, wait this long for a late connect-back (-r) */
    ev_init(&s->ltimer, listener_timeout_cb);
    s->ltimer.repeat = cfg.handshake_timeout;
    s->ltimer.data = s;
    ev_timer_again(s->loop, &s->ltimer);
    return 0;
}

/* ------------------------------------------------------- main connection */

static void main_done(void *arg, struct relay *r, enum relay_end how)
{
    struct sess *s = arg;
    s->bytes[0] = r->f[FLOW_C2S].bytes;
    s->bytes[1] = r->f[FLOW_S2C].bytes;
    s->main_end = how;
    s->reset_absorbed = r->reset_absorbed;
    s->main_done = true;
    s->main = NULL;
    relay_free(r);
    if (s->lfd >= 0)
        ev_timer_again(s->loop, &s->ltimer);   /* grace period for a late connect-back */
    sess_maybe_free(s);
}

static void main_connected(void *arg, int ufd, int err)
{
    struct sess *s = arg;
    char c[ADDR_STR_MAX], u[ADDR_STR_MAX];

    s->connecting = false;
    if (ufd < 0) {
        log_warn("iperf2: cannot reach server %s for client %s: %s",
                 addr_s(&cfg.upstream2_addr, u), addr_s(&s->client, c), strerror(err));
        net_close_reset(s->cfd);
        s->failure = "server unreachable";
        s->main_done = true;
        sess_maybe_free(s);
        return;
    }
    if (s->hdr.connect_back && listener_open(s, ufd) == -1) {
        log_warn("iperf2 %s test from %s: cannot open a connect-back port: %s; closing",
                 i2_mode_name(s->hdr.mode), addr_s(&s->client, c), strerror(errno));
        listener_close(s);
        close(ufd);
        net_close_reset(s->cfd);
        s->failure = "no connect-back port";
        s->main_done = true;
        sess_maybe_free(s);
        return;
    }
    struct relay_opts o = {
        .splice = cfg.use_splice, .idle = cfg.idle_timeout, .done = main_done, .arg = s,
    };
    s->main = relay_new(s->loop, s->cfd, ufd, &o);
    if (s->main == NULL || relay_preload(s->main, FLOW_C2S, s->first, s->nfirst) == -1) {
        if (s->main) {
            s->main->fd[0] = s->main->fd[1] = -1;
            relay_free(s->main);
            s->main = NULL;
        }
        close(ufd);
        net_close_reset(s->cfd);
        listener_close(s);
        s->failure = "out of memory";
        s->main_done = true;
        sess_maybe_free(s);
        return;
    }
    s->cfd = -1;
    if (s->hdr.connect_back)
        log_debug("iperf2 %s test from %s: server told to connect back to shim port %u "
                  "(client asked for %u)", i2_mode_name(s->hdr.mode), addr_s(&s->client, c),
                  s->back_port, s->hdr.port);
    s->busy++;
    relay_start(s->main);
    s->busy--;
    sess_maybe_free(s);
}

void i2_accept(struct ev_loop *loop, int fd, const struct sockaddr_storage *peer,
               const uint8_t *first, size_t n)
{
    char c[ADDR_STR_MAX];
    struct sess *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->first = malloc(n)) == NULL) {
        free(s);
        log_error("out of memory: refusing an iperf2 client");
        close(fd);
        return;
    }
    memcpy(s->first, first, n);
    s->nfirst = n;
    if (i2_tcp_hdr_parse(first, n, &s->hdr) != I2_OK) {   /* the front checked it */
        log_warn("closing client %s: iperf2 test header no longer parses", addr_s(peer, c));
        free(s->first);
        free(s);
        close(fd);
        return;
    }
    s->loop = loop;
    s->client = *peer;
    s->cfd = fd;
    s->lfd = -1;
    s->next = sessions;
    sessions = s;
    nsessions++;
    char ver[I2_VERSION_STR_MAX] = "2.0.x";   /* no version in its header */
    if (s->hdr.extended)
        i2_version_str(s->hdr.version_u, s->hdr.version_l, ver, sizeof(ver));
    log_debug("iperf2 %s test from %s (iperf %s)", i2_mode_name(s->hdr.mode), addr_s(peer, c),
              ver);
    s->connecting = true;
    if (connector_start(&s->conn, loop, &cfg.upstream2_addr, cfg.upstream2_len, NULL,
                        cfg.connect_timeout, main_connected, s) == -1) {
        s->connecting = false;
        log_warn("iperf2: no socket for the server connection: %s", strerror(errno));
        close(fd);
        s->failure = "no socket";
        s->main_done = true;
        sess_maybe_free(s);
    }
}

void i2_close_all(void)
{
    while (sessions) {
        struct sess *s = sessions;
        s->busy++;
        if (s->connecting) {
            connector_cancel(&s->conn);
            s->connecting = false;
            close(s->cfd);
            s->main_done = true;
        }
        if (s->main)
            relay_abort(s->main, false);
        for (int i = 0; i < s->nbacks; i++) {
            if (s->backs[i] && s->backs[i]->relay)
                relay_abort(s->backs[i]->relay, false);
            else if (s->backs[i])
                back_free(s->backs[i]);
        }
        listener_close(s);
        s->busy--;
        sess_maybe_free(s);
        if (sessions == s)
            break;
    }
}
