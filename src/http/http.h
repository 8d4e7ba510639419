/*
 * http.h — the HTTP/1.1 server: libmicrohttpd driven by the libuv loop.
 */
#ifndef QUANTD_HTTP_HTTP_H
#define QUANTD_HTTP_HTTP_H

#include <uv.h>

#include "api/api.h"
#include "quantd/config.h"

typedef struct qd_http qd_http_t;

/* Bind and start serving on the loop. Limits come from cfg (copied). */
int qd_http_start(uv_loop_t *loop, const qd_config_t *cfg, qd_api_t *api,
                  qd_http_t **out);
/* The port actually bound (useful with port 0). */
int qd_http_port(const qd_http_t *h);
/* Apply reloadable limits (SIGHUP): body/header size, timeouts. */
void qd_http_reload(qd_http_t *h, const qd_config_t *cfg);
/* Open connections. */
int qd_http_n_connections(const qd_http_t *h);
/* The connections the HTTP layer may hold open for cfg: max_connections
 * plus the slack for those answered 503 or waiting to close. */
int64_t qd_http_max_sockets(const qd_config_t *cfg);
/* Stop MHD (closing every connection) and free. NULL is a no-op. */
void qd_http_stop(qd_http_t *h);
/* For an immediate exit (second SIGTERM): stop polling but leave
 * libmicrohttpd's connections to the process exit, which closes them —
 * MHD cannot be stopped while a streaming connection is suspended. */
void qd_http_abandon(qd_http_t *h);

#endif
