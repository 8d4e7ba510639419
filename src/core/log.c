/*
 * log.c — leveled logging to stderr, plain text or one JSON object per line.
 *
 * stderr is what journald captures under systemd, so the daemon never opens
 * log files of its own. A line is formatted into a local buffer and written
 * with one fwrite so lines from different threads do not interleave.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "quantd/common.h"

static _Atomic int log_level = QD_LOG_INFO;
static _Atomic int log_json = 0;

void qd_log_set_level(qd_log_level_t level) { log_level = (int)level; }
qd_log_level_t qd_log_get_level(void) { return (qd_log_level_t)log_level; }
void qd_log_set_json(int json) { log_json = json != 0; }

static const char *level_name[] = {"debug", "info", "warn", "error", "off"};

/* Append s to buf as a JSON string body (escaped, no quotes). */
static size_t json_escape(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n] = '\0';
    return n;
}

void qd_logv(qd_log_level_t level, const char *module, const char *fmt,
             va_list ap)
{
    if ((int)level < log_level || level >= QD_LOG_OFF)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[80];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    char line[4608];
    int n;
    if (log_json) {
        char esc[4200];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"%s\","
                     "\"msg\":\"%s\"}\n",
                     when, level_name[level], module ? module : "", esc);
    } else {
        n = snprintf(line, sizeof line, "%s %-5s [%s] %s\n", when,
                     level_name[level], module ? module : "-", msg);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = (int)sizeof line - 1;
    fwrite(line, 1, (size_t)n, stderr);
}

void qd_log(qd_log_level_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qd_logv(level, module, fmt, ap);
    va_end(ap);
}
