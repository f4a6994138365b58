/*
 * The shim's metrics in the Prometheus text format (version 0.0.4): one
 * prefix (iperf_shim_), base units (bytes, seconds), counters ending in
 * _total, one label set per service.  docs/metrics.md lists them.
 */
#ifndef IPERF_SHIM_PROXY_PROM_H
#define IPERF_SHIM_PROXY_PROM_H

#include <stdio.h>

struct service;

/* Writes every metric of the process and of each service in the list. */
void prom_render(FILE *f, const struct service *services);

#endif
