/*
 * error.c — qd_strerror() and the per-thread error detail message.
 */
#include <stdio.h>
#include <string.h>

#include "quantd/common.h"

const char *qd_strerror(int err)
{
    switch (err) {
    case QD_OK:
        return "success";
#define XX(name, msg)                                                          \
    case QD_E##name:                                                           \
        return msg;
        QD_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *qd_errname(int err)
{
    switch (err) {
    case QD_OK:
        return "QD_OK";
#define XX(name, msg)                                                          \
    case QD_E##name:                                                           \
        return "QD_E" #name;
        QD_ERRNO_MAP(XX)
#undef XX
    default:
        return "QD_E?";
    }
}

static _Thread_local char errmsg_buf[512];

void qd_set_errmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg_buf, sizeof errmsg_buf, fmt, ap);
    va_end(ap);
}

const char *qd_errmsg(void) { return errmsg_buf; }

void qd_clear_errmsg(void) { errmsg_buf[0] = '\0'; }
