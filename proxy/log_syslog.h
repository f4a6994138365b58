/* The syslog side of proxy/log.c, apart because <syslog.h> defines LOG_INFO,
 * LOG_DEBUG... as macros that clash with enum log_level's names.  Include it
 * without <syslog.h>. */
#ifndef IPERF_SHIM_PROXY_LOG_SYSLOG_H
#define IPERF_SHIM_PROXY_LOG_SYSLOG_H

void log_syslog_open(void);    /* ident iperf-shim, facility daemon, with the pid */
void log_syslog_close(void);
void log_syslog_line(int level, const char *msg);   /* level: enum log_level */

#endif
