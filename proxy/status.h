/*
 * The live view of the shim, for scripts (/status.json) and for a browser
 * (/, a self-contained page that reloads itself every 2 s: no script, no
 * external asset): each service, its tests in progress (client, server,
 * protocol and mode, elapsed, bytes each way, roles re-paired) and the last
 * tests that ended, with their outcome.
 */
#ifndef IPERF_SHIM_PROXY_STATUS_H
#define IPERF_SHIM_PROXY_STATUS_H

#include <stdio.h>

struct service;

/* Writes the view of every service in the list as JSON.  Returns 0, or -1
 * when out of memory. */
int  status_json(FILE *f, const struct service *services);

/* Writes the same as an HTML page. */
void status_html(FILE *f, const struct service *services);

#endif
