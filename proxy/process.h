/*
 * The running process: its services, and what signals do to them.
 *
 *   SIGTERM, SIGINT  drain: no new tests, running ones finish (UDP flows
 *                    until quiet, iperf2 ticket #391), then exit; bounded by
 *                    the drain timeout; a second signal exits at once.
 *   SIGHUP           reload: the configuration is read again; a file that
 *                    fails its check is refused and the running one stays.
 *                    Services are matched by listen address: a new one
 *                    starts, a removed one stops taking tests and closes
 *                    once drained, a kept one takes its new settings for the
 *                    tests that start from now on.
 */
#ifndef IPERF_SHIM_PROXY_PROCESS_H
#define IPERF_SHIM_PROXY_PROCESS_H

#include <ev.h>
#include <stddef.h>

#include "proxy/options.h"

/* Reads the configuration again (SIGHUP).  Returns 0, or -1 with err set;
 * NULL when the process has nothing to reload (command line only). */
typedef int (*config_reload_fn)(void *arg, struct shim_config *out, char *err, size_t errlen);

/* Starts every service of cfg and runs the loop until the process exits.
 * Returns the exit status: 0, or 1 when a service could not start. */
int process_run(struct ev_loop *loop, const struct shim_config *cfg, config_reload_fn reload,
                void *reload_arg);

#endif
