/* Operator logging: one line per event, on stderr (journald takes it from
 * there), as text or JSON, and optionally to syslog too. */
#ifndef IPERF_SHIM_PROXY_LOG_H
#define IPERF_SHIM_PROXY_LOG_H

#include <stdbool.h>

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

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_threshold >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
