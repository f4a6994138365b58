/*
 * The configuration file, in libconfig syntax (docs/config.md, and the man
 * page iperf-shim.conf(5)): global settings and a list of services, each
 * key named as its command-line option with '_' for '-'.  libconfig (a
 * maintained Debian library: comments, includes, line numbers in errors)
 * does the parsing; this file maps its settings onto proxy/options.h.
 */
#ifndef IPERF_SHIM_PROXY_CONFIG_FILE_H
#define IPERF_SHIM_PROXY_CONFIG_FILE_H

#include <stddef.h>

#include "proxy/options.h"

#define CONFIG_FILE_DEFAULT "/etc/iperf-shim/iperf-shim.conf"

/* Reads path into c (defaults, then the file) and checks the result
 * (shim_config_finish).  Returns 0, or -1 with "FILE:LINE: what" in err. */
int config_file_load(const char *path, struct shim_config *c, char *err, size_t errlen);

#endif
