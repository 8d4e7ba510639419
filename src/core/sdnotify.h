/*
 * sdnotify.h — systemd's readiness protocol without libsystemd.
 */
#ifndef QUANTD_SDNOTIFY_H
#define QUANTD_SDNOTIFY_H

#include <stdint.h>

/* Send state ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...") to
 * $NOTIFY_SOCKET. Returns 0 when sent, 0 as well when not under systemd
 * (no NOTIFY_SOCKET), or a negative QD_E* code. Thread-safe. */
int qd_sd_notify(const char *state);
/* Watchdog interval in microseconds from $WATCHDOG_USEC (0 if none or if
 * $WATCHDOG_PID names another process). */
uint64_t qd_sd_watchdog_usec(void);

#endif
