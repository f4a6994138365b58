#include "proxy/http.h"

#include "proxy/log.h"
#include "proxy/prom.h"
#include "proxy/status.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_CONNECTIONS 16   /* scrapers at once */
#define HTTP_TIMEOUT     10   /* s: an idle HTTP connection is closed */

static struct {
    struct ev_loop        *loop;
    struct MHD_Daemon     *d;
    ev_io                  io;        /* libmicrohttpd's epoll fd */
    ev_timer               timer;     /* its next timeout */
    struct service *const *services;  /* the process's list */
} H;

static void rearm(void)
{
    MHD_UNSIGNED_LONG_LONG ms;
    ev_timer_stop(H.loop, &H.timer);
    if (MHD_get_timeout(H.d, &ms) == MHD_YES) {
        ev_timer_set(&H.timer, (double)ms / 1000.0, 0);
        ev_timer_start(H.loop, &H.timer);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)w; (void)revents;
    MHD_run(H.d);
    rearm();
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)w; (void)revents;
    MHD_run(H.d);
    rearm();
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_len, void **state)
{
    (void)cls; (void)version; (void)upload; (void)state;
    char *body = NULL;
    size_t len = 0;
    if (*upload_len != 0)
        return MHD_NO;   /* no request bodies here */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        body = strdup("method not allowed\n");
        return body ? reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", body, strlen(body))
                    : MHD_NO;
    }
    FILE *f = open_memstream(&body, &len);
    if (f == NULL)
        return MHD_NO;
    const char *type = "text/plain; charset=utf-8";
    unsigned status = MHD_HTTP_OK;
    if (strcmp(url, "/metrics") == 0) {
        prom_render(f, *H.services);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(url, "/status.json") == 0) {
        if (status_json(f, *H.services) == -1)
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        type = "application/json";
    } else if (strcmp(url, "/") == 0) {
        status_html(f, *H.services);
        type = "text/html; charset=utf-8";
    } else {
        status = MHD_HTTP_NOT_FOUND;
        fputs("not found: /, /status.json or /metrics\n", f);
    }
    if (fclose(f) != 0) {
        free(body);
        return MHD_NO;
    }
    return reply(c, status, type, body, len);
}

int http_start(struct ev_loop *loop, const struct sockaddr_storage *addr, socklen_t len,
               struct service *const *services)
{
    (void)len;
    unsigned flags = MHD_USE_EPOLL | (addr->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    uint16_t port = addr->ss_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)addr)->sin6_port)
                        : ntohs(((const struct sockaddr_in *)addr)->sin_port);
    H.loop = loop;
    H.services = services;
    H.d = MHD_start_daemon(flags, port, NULL, NULL, on_request, NULL,
                           MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr,
                           MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTIONS,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT,
                           MHD_OPTION_END);
    if (H.d == NULL) {
        if (errno == 0)
            errno = EADDRINUSE;
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(H.d, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL) {
        MHD_stop_daemon(H.d);
        H.d = NULL;
        errno = ENOSYS;
        return -1;
    }
    ev_io_init(&H.io, io_cb, info->epoll_fd, EV_READ);
    ev_init(&H.timer, timer_cb);
    ev_io_start(loop, &H.io);
    rearm();
    return 0;
}

void http_stop(void)
{
    if (H.d == NULL)
        return;
    ev_io_stop(H.loop, &H.io);
    ev_timer_stop(H.loop, &H.timer);
    MHD_stop_daemon(H.d);
    H.d = NULL;
}
