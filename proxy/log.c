#include "proxy/log.h"
#include "proxy/log_syslog.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum log_level log_threshold = LOG_INFO;

static enum log_format format = LOG_TEXT;
static bool to_syslog;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = LOG_JSON;
    else
        return -1;
    return 0;
}

void log_setup(enum log_format f, bool syslog_too)
{
    format = f;
    if (syslog_too && !to_syslog)
        log_syslog_open();
    else if (!syslog_too && to_syslog)
        log_syslog_close();
    to_syslog = syslog_too;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    char msg[1024], stamp[64];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    if (lvl > log_threshold)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000) % 1000);
    if (to_syslog)
        log_syslog_line(lvl, msg);
    if (format == LOG_JSON) {
        cJSON *o = cJSON_CreateObject();
        char *line = NULL;
        if (o && cJSON_AddStringToObject(o, "time", stamp) &&
            cJSON_AddStringToObject(o, "level", level_names[lvl]) &&
            cJSON_AddStringToObject(o, "msg", msg))
            line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (line != NULL) {
            fprintf(stderr, "%s\n", line);   /* one write per line */
            free(line);
            return;
        }
    }
    /* one write per line so concurrent processes do not interleave mid-line */
    fprintf(stderr, "%s %-5s %s\n", stamp, level_names[lvl], msg);
}
