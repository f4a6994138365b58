/* iperf2 UDP tests through the shim: the client repeats its final datagram
 * (negative sequence number) until a Server Report comes back; the first
 * report the server sends is kept and later repeats are answered from it,
 * so fewer reports travel toward a closing port (iperf2 ticket #391).  -d and
 * -r tests get a connect-back port (proxy/udp_back.h). */
#include "proxy/udp_flow.h"

#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/service.h"
#include "proxy/udp_back.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define B (&udp_batch)

/* iperf2 -d/-r: the server must connect back to the shim, not to the port the
 * client asked for.  Datagrams that carry the test header (2.1.8: all of
 * them) get the connect-back socket's port. */
static void rewrite_back_port(struct udp_flow *f, uint8_t *d, size_t len)
{
    size_t off = f->i2.layout;   /* the test header follows the datagram header */
    if (len < off + 12)
        return;
    uint8_t *h = d + off;
    uint32_t port = ((uint32_t)h[8] << 24) | ((uint32_t)h[9] << 16) | ((uint32_t)h[10] << 8) | h[11];
    uint32_t flags = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
    if (port == f->i2.hdr.port && flags == f->i2.hdr.flags)
        i2_hdr_set_port(h, len - off, udp_back_port(f->back));
}

bool udp_i2_from_client(struct udp_flow *f, uint8_t *data, size_t len)
{
    struct udp_state *u = f->u;
    if (f->back != NULL)
        rewrite_back_port(f, data, len);
    struct i2_udp_dgram dg;
    if (i2_udp_dgram_parse(data, len, f->i2.layout, &dg) != I2_OK || !dg.fin)
        return true;
    f->fins++;
    f->fin_seen = true;
    if (f->report == NULL)
        return true;
    /* answered from the report already relayed: nothing goes upstream */
    f->fins_answered++;
    u->ctr.fins_answered++;
    udp_deliver(f, 1, f->report, f->report_len);
    return false;
}

int udp_i2_from_server(struct udp_flow *f, int n)
{
    if (f->report != NULL && f->i2.hdr.mode == I2_MODE_NORMAL) {
        /* The client has its report (repeats of its final datagram are answered
         * from it): the server's further copies would only travel toward a
         * port that is closing.  A normal test sends nothing else. */
        f->late_reports += (uint32_t)n;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *d = B->bufs[i];
        size_t len = B->msgs[i].msg_len;
        struct i2_udp_report rep;
        if (f->fin_seen && f->report == NULL &&
            i2_udp_report_parse(d, len, &rep) == I2_OK && (f->report = malloc(len)) != NULL) {
            memcpy(f->report, d, len);
            f->report_len = len;
            /* relay this one, and nothing of the server's after it in this batch */
            if (f->i2.hdr.mode == I2_MODE_NORMAL) {
                f->late_reports += (uint32_t)(n - i - 1);
                n = i + 1;
            }
        }
    }
    return n;
}

bool udp_i2_restarts(const struct udp_flow *f, const uint8_t *d, size_t len)
{
    struct i2_udp_dgram dg;
    return f->fin_seen && i2_udp_dgram_parse(d, len, f->i2.layout, &dg) == I2_OK && !dg.fin;
}

void udp_i2_open_back(struct udp_flow *f)
{
    struct udp_state *u = f->u;
    char c[ADDR_STR_MAX];
    struct sockaddr_storage up_local, up_peer, client = f->client;
    socklen_t len = sizeof(up_local), plen = sizeof(up_peer);
    net_set_port(&client, f->i2.hdr.port);
    if (getsockname(f->ufd, (struct sockaddr *)&up_local, &len) == -1 ||
        getpeername(f->ufd, (struct sockaddr *)&up_peer, &plen) == -1 ||
        (f->back = udp_back_open(u->loop, &up_peer, &up_local, &f->local, &client,
                                 u->cfg->transparent, u->cfg->transparent_mark,
                                 &f->last[1])) == NULL) {
        log_warn("iperf2 UDP %s test from %s: cannot open a connect-back port: %s",
                 i2_mode_name(f->i2.hdr.mode), udp_flow_client_str(f, c), strerror(errno));
        return;
    }
    log_debug("iperf2 UDP %s test from %s: server told to connect back to shim port %u "
              "(client asked for %u)", i2_mode_name(f->i2.hdr.mode), udp_flow_client_str(f, c),
              udp_back_port(f->back), f->i2.hdr.port);
}
