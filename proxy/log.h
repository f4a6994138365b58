/* Operator logging: one line per event, on stderr (journald takes it from
 * there), as text or JSON, and optionally to syslog too. */
#ifndef IPERF_SHIM_PROXY_LOG_H
#define IPERF_SHIM_PROXY_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_TEXT = 0, LOG_JSON };

extern enum log_level log_threshold;   /* lines above this level are dropped */

/* Parses "error", "warn", "info" or "debug"; returns 0, or -1 if unknown. */
int  log_level_parse(const char *s, enum log_level *out);
/* Parses "text" or "json"; returns 0, or -1 if unknown. */
int  log_format_parse(const char *s, enum log_format *out);
/* Sets the format of stderr lines, and whether lines also go to syslog
 * (facility daemon, ident iperf-shim). */
void log_setup(enum log_format format, bool syslog);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* At most LOG_RATE_BURST lines per interval (rate-limited warnings): */
#define LOG_RATE_BURST 5

struct log_rate {
    double   start;       /* start of the current interval (caller's clock, s) */
    unsigned lines;       /* lines written in it */
    uint64_t suppressed;  /* events that wrote no line since the last one that did */
};

/* True when a line may be written at `now`; false counts the event as
 * suppressed.  The caller prints r->suppressed in its line and zeroes it. */
static inline bool log_rate_ok(struct log_rate *r, double now, double interval)
{
    if (r->lines == 0 || now - r->start >= interval) {
        r->start = now;
        r->lines = 0;
    }
    if (r->lines >= LOG_RATE_BURST) {
        r->suppressed++;
        return false;
    }
    r->lines++;
    return true;
}

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_threshold >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
