/*
 * Wake-up batching of the event loop (--batch-interval).  While bulk TCP
 * data moves and nothing timing-sensitive runs, the loop polls at most once
 * per interval: events gather meanwhile, each splice moves more, and the
 * shim and the iperf processes are woken less often (docs/performance.md).
 * It is off whenever any UDP flow exists (a UDP test reports jitter and
 * would get up to the interval of it) or an iperf2 TCP test runs (it may
 * time every write: --trip-times, isochronous), and when no bulk relay runs.
 */
#ifndef IPERF_SHIM_PROXY_BATCHING_H
#define IPERF_SHIM_PROXY_BATCHING_H

#include <ev.h>

struct service;

/* Watches loop (before every poll) with the list of services at *services;
 * interval 0 leaves the loop alone. */
void batching_start(struct ev_loop *loop, double interval, struct service *const *services);
/* Stops the watcher and restores a loop that polls at once. */
void batching_stop(struct ev_loop *loop);

#endif
