/*
 * http_client.h — a tiny blocking HTTP/1.1 client for the integration
 * tests (no libcurl dependency), plus helpers that run build/quantd.
 */
#ifndef QUANTD_TEST_HTTP_CLIENT_H
#define QUANTD_TEST_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    int status;
    char headers[8192]; /* raw header block, lower-cased names */
    char *body;         /* NUL-terminated, malloc'd (chunked decoded) */
    size_t len;
} tc_resp_t;

int tc_connect(int port);              /* -1 on failure */
/* Same from loopback source address src (host order, e.g. 0x7f000002 for
 * 127.0.0.2; 0: any), to look like another client to per-IP limits. */
int tc_connect_from(int port, uint32_t src);
/* Send a request on fd (keep-alive) and read the whole response. extra:
 * further header lines, each ending in "\r\n", or NULL. 0 or -1. */
int tc_request(int fd, const char *method, const char *path,
               const char *extra, const char *body, tc_resp_t *r);
/* Connect, request, close. */
int tc_fetch(int port, const char *method, const char *path,
             const char *extra, const char *body, tc_resp_t *r);
void tc_resp_free(tc_resp_t *r);
/* Value of a response header (lower-case name) copied to out, or NULL. */
const char *tc_header(const tc_resp_t *r, const char *name, char *out,
                      size_t cap);
/* Send just the request head + body; read the status line + headers. The
 * body is left on the socket for tc_read_some(). */
int tc_send(int fd, const char *method, const char *path, const char *extra,
            const char *body);
ssize_t tc_read_some(int fd, char *buf, size_t cap, int timeout_ms);
/* Write raw bytes (0 or -1). */
int tc_write(int fd, const void *p, size_t n);
/* Read one response (status, headers, body) from fd; method "HEAD" means
 * no body. Several calls read pipelined responses in order. 0 or -1. */
int tc_read_resp(int fd, const char *method, tc_resp_t *r);

/* The daemon under test. */
typedef struct {
    pid_t pid;
    int port;
    char log[512];
} tc_daemon_t;

/* Path of the test model or NULL (tests then skip). */
const char *tc_model_path(void);
/* Start QD_BIN serve -m model on 127.0.0.1:<free port> with extra args
 * (NULL-terminated), wait until /ready answers 200. 0 or -1. */
int tc_daemon_start(tc_daemon_t *d, const char *const *extra_args);
/* The same with another model (file or directory); NULL: no -m at all. */
int tc_daemon_start_model(tc_daemon_t *d, const char *model,
                          const char *const *extra_args);
/* Same, serving model_path (NULL: the test model) with RLIMIT_NOFILE set
 * to nofile in the child before exec (0: inherited). */
int tc_daemon_start_ex(tc_daemon_t *d, const char *model_path, int nofile,
                       const char *const *extra);
/* SIGTERM (then SIGKILL after 10 s); returns the exit status or -1. */
int tc_daemon_stop(tc_daemon_t *d);
/* A metric's value from /metrics (first sample whose line starts with
 * `prefix`), or -1. */
double tc_metric(int port, const char *prefix);

#endif
