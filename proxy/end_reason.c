#include "proxy/end_reason.h"

#include "proxy/net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

bool end_reason_set(struct end_reason *r, enum end_cause cause, int err, const char *detail)
{
    if (r->cause != END_NONE || cause == END_NONE)
        return false;
    r->cause = cause;
    r->err = err;
    r->detail = detail;
    return true;
}

bool end_reason_from_relay(struct end_reason *r, const struct relay *rel, enum relay_end how)
{
    bool set;
    switch (how) {
    case RELAY_END_RESET:
        set = end_reason_set(r, rel->err_side == SIDE_SERVER ? END_SERVER_RESET : END_CLIENT_RESET,
                             rel->err, NULL);
        break;
    case RELAY_END_ERROR:
        set = end_reason_set(r, END_SOCKET_ERROR, rel->err, NULL);
        break;
    case RELAY_END_IDLE:
        set = end_reason_set(r, END_IDLE, 0, NULL);
        break;
    case RELAY_END_INSPECT:
        set = end_reason_set(r, END_PROTOCOL, 0, "unexpected bytes on the control connection");
        break;
    case RELAY_END_CLOSED:
    case RELAY_END_ABORTED:
    default:
        return false;
    }
    if (set)
        r->side = rel->err_side;
    return set;
}

char *end_reason_str(const struct end_reason *r, const struct sockaddr_storage *server,
                     char *buf, size_t n)
{
    char s[ADDR_STR_MAX];
    const char *who = r->side == SIDE_CLIENT ? "client" : "server";
    net_addr_str((const struct sockaddr *)server, s, sizeof(s));
    switch (r->cause) {
    case END_NONE:
        snprintf(buf, n, "ok");
        break;
    case END_CONNECT_FAILED:
        if (r->err == ETIMEDOUT)
            snprintf(buf, n, "connect to %s timed out", s);
        else
            snprintf(buf, n, "connect to %s: %s", s, strerror(r->err));
        break;
    case END_SERVER_RESET:
        snprintf(buf, n, "server %s reset the connection", s);
        break;
    case END_CLIENT_RESET:
        snprintf(buf, n, "the client reset the connection");
        break;
    case END_SOCKET_ERROR:
        snprintf(buf, n, "%s connection failed: %s", who, strerror(r->err));
        break;
    case END_IDLE:
        snprintf(buf, n, "no traffic either way for the idle timeout");
        break;
    case END_PROTOCOL:
        snprintf(buf, n, "protocol violation: %s", r->detail ? r->detail : "?");
        break;
    case END_TIMEOUT:
        snprintf(buf, n, "timed out: %s", r->detail ? r->detail : "?");
        break;
    case END_RESOURCES:
        if (r->detail)
            snprintf(buf, n, "out of resources: %s%s%s", r->detail, r->err ? ": " : "",
                     r->err ? strerror(r->err) : "");
        else
            snprintf(buf, n, "out of resources: %s", strerror(r->err));
        break;
    case END_SHUTDOWN:
        snprintf(buf, n, "the shim exited before the test ended");
        break;
    }
    return buf;
}
