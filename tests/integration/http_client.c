/*
 * http_client.c — blocking HTTP/1.1 over plain sockets for the tests:
 * Content-Length and chunked bodies, keep-alive, and a daemon launcher.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"

int tc_connect(int port) { return tc_connect_from(port, 0); }

int tc_connect_from(int port, uint32_t src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (src) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        me.sin_addr.s_addr = htonl(src);
        if (bind(fd, (struct sockaddr *)&me, sizeof me)) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tc_send(int fd, const char *method, const char *path, const char *extra,
            const char *body)
{
    char head[16384];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s", method, path,
                     extra ? extra : "",
                     body ? "Content-Type: application/json\r\n" : "");
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Content-Length: %zu\r\n", bl);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (n >= (int)sizeof head)
        return -1;
    if (write_all(fd, head, (size_t)n))
        return -1;
    return body ? write_all(fd, body, bl) : 0;
}

ssize_t tc_read_some(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return r == 0 ? -2 : -1;
    return recv(fd, buf, cap, 0);
}

/* Buffered reader over the socket. */
typedef struct {
    int fd;
    char buf[65536];
    size_t off, len;
} rd_t;

static int rd_fill(rd_t *r)
{
    if (r->off == r->len)
        r->off = r->len = 0;
    if (r->len == sizeof r->buf) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    ssize_t n = tc_read_some(r->fd, r->buf + r->len, sizeof r->buf - r->len,
                             60000);
    if (n <= 0)
        return -1;
    r->len += (size_t)n;
    return 0;
}

static int rd_line(rd_t *r, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->off));
            size_t c = n < cap - 1 ? n : cap - 1;
            memcpy(out, r->buf + r->off, c);
            out[c] = '\0';
            if (c && out[c - 1] == '\r')
                out[c - 1] = '\0';
            r->off += n + 1;
            return 0;
        }
        if (rd_fill(r))
            return -1;
    }
}

static int rd_bytes(rd_t *r, char *out, size_t n)
{
    while (n) {
        if (r->off == r->len && rd_fill(r))
            return -1;
        size_t k = r->len - r->off < n ? r->len - r->off : n;
        memcpy(out, r->buf + r->off, k);
        r->off += k;
        out += k;
        n -= k;
    }
    return 0;
}

static _Thread_local rd_t *rd_cache;
static _Thread_local int rd_cache_fd = -1;

static rd_t *reader_for(int fd)
{
    if (!rd_cache)
        rd_cache = calloc(1, sizeof *rd_cache);
    if (rd_cache_fd != fd) {
        rd_cache->fd = fd;
        rd_cache->off = rd_cache->len = 0;
        rd_cache_fd = fd;
    }
    return rd_cache;
}

static int append(tc_resp_t *r, const char *p, size_t n)
{
    char *nb = realloc(r->body, r->len + n + 1);
    if (!nb)
        return -1;
    r->body = nb;
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

int tc_request(int fd, const char *method, const char *path,
               const char *extra, const char *body, tc_resp_t *r)
{
    memset(r, 0, sizeof *r);
    if (tc_send(fd, method, path, extra, body))
        return -1;
    return tc_read_resp(fd, method, r);
}

int tc_write(int fd, const void *p, size_t n) { return write_all(fd, p, n); }

int tc_read_resp(int fd, const char *method, tc_resp_t *r)
{
    memset(r, 0, sizeof *r);
    rd_t *rd = reader_for(fd);
    char line[16384];
    if (rd_line(rd, line, sizeof line) || sscanf(line, "HTTP/1.%*d %d",
                                                 &r->status) != 1)
        return -1;
    size_t hl = 0;
    long long clen = -1;
    int chunked = 0;
    for (;;) {
        if (rd_line(rd, line, sizeof line))
            return -1;
        if (!line[0])
            break;
        for (char *p = line; *p && *p != ':'; p++)
            *p = (char)tolower((unsigned char)*p);
        size_t n = strlen(line);
        if (hl + n + 2 < sizeof r->headers) {
            memcpy(r->headers + hl, line, n);
            r->headers[hl + n] = '\n';
            hl += n + 1;
            r->headers[hl] = '\0';
        }
        if (!strncmp(line, "content-length:", 15))
            clen = atoll(line + 15);
        if (!strncmp(line, "transfer-encoding:", 18) && strstr(line, "chunked"))
            chunked = 1;
    }
    append(r, "", 0);
    if (!strcmp(method, "HEAD") || r->status == 204 || r->status == 304)
        return 0;
    if (chunked) {
        for (;;) {
            if (rd_line(rd, line, sizeof line))
                return -1;
            size_t n = strtoul(line, NULL, 16);
            if (n == 0) {
                rd_line(rd, line, sizeof line); /* trailer end */
                return 0;
            }
            char *tmp = malloc(n);
            if (!tmp || rd_bytes(rd, tmp, n) || append(r, tmp, n)) {
                free(tmp);
                return -1;
            }
            free(tmp);
            rd_line(rd, line, sizeof line);
        }
    }
    if (clen >= 0) {
        char *tmp = malloc((size_t)clen + 1);
        if (!tmp || rd_bytes(rd, tmp, (size_t)clen) ||
            append(r, tmp, (size_t)clen)) {
            free(tmp);
            return -1;
        }
        free(tmp);
        return 0;
    }
    /* Until close. */
    for (;;) {
        if (rd->off == rd->len && rd_fill(rd))
            return 0;
        append(r, rd->buf + rd->off, rd->len - rd->off);
        rd->off = rd->len;
    }
}

int tc_fetch(int port, const char *method, const char *path,
             const char *extra, const char *body, tc_resp_t *r)
{
    int fd = tc_connect(port);
    if (fd < 0) {
        memset(r, 0, sizeof *r);
        return -1;
    }
    int rc = tc_request(fd, method, path, extra, body, r);
    close(fd);
    rd_cache_fd = -1;
    return rc;
}

void tc_resp_free(tc_resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

const char *tc_header(const tc_resp_t *r, const char *name, char *out,
                      size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = r->headers; *p;) {
        const char *nl = strchr(p, '\n');
        if (!strncmp(p, name, n) && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t l = (size_t)((nl ? nl : v + strlen(v)) - v);
            if (l >= cap)
                l = cap - 1;
            memcpy(out, v, l);
            out[l] = '\0';
            return out;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    return NULL;
}

/* ---- daemon ------------------------------------------------------------ */

const char *tc_model_path(void)
{
    static char path[1024];
    const char *sh = getenv("QD_SHARED");
    if (!sh)
        return NULL;
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", sh);
    return access(path, R_OK) == 0 ? path : NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* Start the daemon: model NULL means no -m at all; nofile > 0 sets
 * RLIMIT_NOFILE in the child before exec. */
static int daemon_start(tc_daemon_t *d, const char *model, int nofile,
                        const char *const *extra);

int tc_daemon_start(tc_daemon_t *d, const char *const *extra)
{
    const char *model = tc_model_path();
    if (!model)
        return -1;
    return daemon_start(d, model, 0, extra);
}

int tc_daemon_start_model(tc_daemon_t *d, const char *model,
                          const char *const *extra)
{
    return daemon_start(d, model, 0, extra);
}

int tc_daemon_start_ex(tc_daemon_t *d, const char *model_path, int nofile,
                       const char *const *extra)
{
    const char *model = model_path ? model_path : tc_model_path();
    if (!model)
        return -1;
    return daemon_start(d, model, nofile, extra);
}

static int daemon_start(tc_daemon_t *d, const char *model, int nofile,
                        const char *const *extra)
{
    const char *bin = getenv("QD_BIN");
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    if (!bin)
        return -1;
    memset(d, 0, sizeof *d);
    d->port = free_port();
    snprintf(d->log, sizeof d->log, "%s/quantd-%d.log", tmp, d->port);
    char port[16];
    snprintf(port, sizeof port, "%d", d->port);
    const char *argv[64] = {bin, "serve", "--host", "127.0.0.1", "--port",
                            port, "-t", "1"};
    int n = 8;
    if (model) {
        argv[n++] = "-m";
        argv[n++] = model;
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        FILE *f = freopen(d->log, "w", stderr);
        (void)f;
        if (nofile > 0) {
            struct rlimit rl = {(rlim_t)nofile, (rlim_t)nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl))
                _exit(126);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        tc_resp_t r;
        if (tc_fetch(d->port, "GET", "/ready", NULL, NULL, &r) == 0 &&
            r.status == 200) {
            tc_resp_free(&r);
            return 0;
        }
        tc_resp_free(&r);
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return -1;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int tc_daemon_stop(tc_daemon_t *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}

double tc_metric(int port, const char *prefix)
{
    tc_resp_t r;
    double v = -1;
    if (tc_fetch(port, "GET", "/metrics", NULL, NULL, &r) == 0 && r.body) {
        size_t n = strlen(prefix);
        for (char *p = r.body; p && *p;) {
            if (!strncmp(p, prefix, n) && p[n] == ' ') {
                v = atof(p + n + 1);
                break;
            }
            p = strchr(p, '\n');
            if (p)
                p++;
        }
    }
    tc_resp_free(&r);
    return v;
}
