/* Wake-up batching of the event loop: see proxy/batching.h. */
#include "proxy/batching.h"

#include "proxy/log.h"
#include "proxy/relay.h"
#include "proxy/service.h"
#include "proxy/udp.h"

#include <stdbool.h>

static struct {
    ev_prepare               prep;       /* runs before every poll */
    double                   interval;   /* s: the configured interval */
    struct service *const   *services;   /* the process's list */
    bool                     on;         /* the loop batches now */
} Bt;

/* Is anything running that the interval would delay noticeably? */
static bool timing_sensitive(void)
{
    if (relay_running(RELAY_TIMED) > 0)
        return true;
    for (const struct service *svc = *Bt.services; svc; svc = svc->next)
        if (udp_live_flows(svc) > 0)
            return true;
    return false;
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)w; (void)revents;
    bool want = relay_running(RELAY_BULK) > 0 && !timing_sensitive();
    if (want == Bt.on)
        return;
    Bt.on = want;
    ev_set_io_collect_interval(loop, want ? Bt.interval : 0.);
    log_debug("wake-up batching %s (%d bulk TCP relays)", want ? "on" : "off",
              relay_running(RELAY_BULK));
}

void batching_start(struct ev_loop *loop, double interval, struct service *const *services)
{
    if (interval <= 0)
        return;
    Bt.interval = interval;
    Bt.services = services;
    Bt.on = false;
    ev_prepare_init(&Bt.prep, prepare_cb);
    ev_prepare_start(loop, &Bt.prep);
    ev_unref(loop);   /* the watcher alone does not keep the loop running */
}

void batching_stop(struct ev_loop *loop)
{
    if (!ev_is_active(&Bt.prep))
        return;
    ev_ref(loop);
    ev_prepare_stop(loop, &Bt.prep);
    ev_set_io_collect_interval(loop, 0.);
    Bt.on = false;
}
