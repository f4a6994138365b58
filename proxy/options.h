/*
 * Every setting of the shim in one table: the command line (--foo-bar) and
 * the configuration file (key foo_bar, proxy/config_file.h) both set values
 * through it, so a setting, its range and its error text exist once.
 */
#ifndef IPERF_SHIM_PROXY_OPTIONS_H
#define IPERF_SHIM_PROXY_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "proxy/log.h"
#include "proxy/service.h"

#define SHIM_MAX_SERVICES 64   /* services in one configuration */
#define BATCH_INTERVAL_DEFAULT 0.0005   /* s: --batch-interval (docs/performance.md) */

/* The whole configuration of the process. */
struct shim_config {
    enum log_level        log_level;      /* lines above this level are dropped */
    enum log_format       log_format;     /* text or JSON lines on stderr */
    bool                  log_syslog;     /* lines to syslog too */
    double                drain_timeout;  /* s: SIGTERM lets running tests finish this long */
    double                batch_interval; /* s: wake-up batching while only bulk TCP runs
                                             (proxy/batching.h); 0 = off */
    struct sockaddr_storage metrics_addr; /* --metrics: the HTTP endpoint */
    socklen_t             metrics_len;    /* 0: no endpoint */
    int                   nservices;      /* entries used in services[] */
    struct service_config services[SHIM_MAX_SERVICES];
};

enum opt_scope {
    OPT_GLOBAL = 0,   /* a setting of the process */
    OPT_SERVICE,      /* a setting of one service */
};

enum opt_kind {
    OPT_STRING = 0,   /* a value: address, name, level, seconds, count */
    OPT_FLAG,         /* on the command line, no value; in the file, a boolean */
    OPT_LIST,         /* repeated on the command line; in the file, a list of strings */
};

struct opt_def {
    const char    *name;    /* command-line name, without "--" */
    const char    *key;     /* configuration file key */
    enum opt_scope scope;
    enum opt_kind  kind;
    int            id;      /* what opt_set() sets */
};

/* The table, ended by an entry with a NULL name. */
extern const struct opt_def shim_options[];

/* Defaults of the process settings, with no service. */
void shim_config_defaults(struct shim_config *c);

/* The option of a configuration key, or NULL if there is none. */
const struct opt_def *opt_by_key(const char *key);

/* Sets option d from its textual value (a flag takes "true" or "false"):
 * in c (global) or s (service).  Returns 0, or -1 with *why set. */
int  opt_set(const struct opt_def *d, const char *value, struct shim_config *c,
             struct service_config *s, const char **why);

/* Checks what one option cannot: required settings, timeouts > 0, unique
 * names and listen addresses; fills in defaults that depend on other
 * settings (the iperf2 upstream).  Returns 0, or -1 with *why set and *svc
 * the index of the service at fault (-1: none). */
int  shim_config_finish(struct shim_config *c, int *svc, const char **why);

/* Writes what would run, one line per service, to out (--check). */
void shim_config_print(const struct shim_config *c, FILE *out);

#endif
