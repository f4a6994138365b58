#include "proxy/log_syslog.h"

#include <syslog.h>

void log_syslog_open(void)
{
    openlog("iperf-shim", LOG_PID, LOG_DAEMON);
}

void log_syslog_close(void)
{
    closelog();
}

/* level: enum log_level (error, warn, info, debug). */
void log_syslog_line(int level, const char *msg)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    syslog(prio[level >= 0 && level <= 3 ? level : 3], "%s", msg);
}
