/*
 * sdnotify.c — sd_notify(3) over the socket protocol.
 *
 * systemd passes a datagram socket path in NOTIFY_SOCKET: a filesystem path,
 * or an abstract-namespace name written with a leading '@' (which becomes a
 * leading NUL byte in sun_path). A notification is one datagram of
 * newline-separated VAR=VALUE assignments. Linking libsystemd for this one
 * sendto() would add a dependency that the unit does not need.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/sdnotify.h"
#include "quantd/common.h"

int qd_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
        qd_set_errmsg("NOTIFY_SOCKET '%s' is not a usable socket path", path);
        return QD_EINVAL;
    }
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        qd_set_errmsg("sd_notify socket: %s", strerror(errno));
        return QD_EIO;
    }
    ssize_t r = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                       (struct sockaddr *)&sa, len);
    int e = errno;
    close(fd);
    if (r < 0) {
        qd_set_errmsg("sd_notify to '%s': %s", path, strerror(e));
        return QD_EIO;
    }
    return 0;
}

uint64_t qd_sd_watchdog_usec(void)
{
    const char *us = getenv("WATCHDOG_USEC");
    if (!us || !*us)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    char *end;
    unsigned long long v = strtoull(us, &end, 10);
    return *end ? 0 : (uint64_t)v;
}
