/*
 * api.h — the HTTP-independent API layer: routing, auth, CORS, OpenAI
 * endpoints, and the bridge from engine events to responses.
 *
 * The http/ module hands every complete request to qd_api_call_start() and
 * gets back a qd_api_call_t whose response fields it reads: a finished
 * answer (status + body) or an SSE stream whose bytes accumulate in a
 * buffer. When an answer becomes ready later (generation), the API calls
 * the wake function the http layer registered, on the loop thread. The
 * http layer ends its use of a call with qd_api_call_release(); from then
 * on the API never calls wake again and frees the call once the scheduler
 * has delivered its final event.
 *
 * Threading: everything here runs on the libuv loop thread except the
 * scheduler's event callback, which only copies the event into a locked
 * queue and uv_async_send()s the loop.
 */
#ifndef QUANTD_API_API_H
#define QUANTD_API_API_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "quantd/config.h"
#include "quantd/engine.h"
#include "quantd/pool.h"
#include "quantd/sched.h"

typedef struct qd_api qd_api_t;

typedef enum {
    QD_API_LOADING = 0,
    QD_API_READY,
    QD_API_DRAINING,
} qd_api_state_t;

#define QD_API_MAX_HEADERS 8

typedef struct {
    char *name;
    char *value;
} qd_api_header_t;

/* One request, filled by the http layer. */
typedef struct {
    const char *method;
    const char *path; /* as received (decoded by MHD), unnormalized */
    /* Header lookup (case-insensitive), NULL if absent. */
    const char *(*header)(void *hctx, const char *name);
    void *hctx;
    const char *body;
    size_t body_len;
    const char *peer; /* client address text */
} qd_api_req_t;

typedef struct qd_api_call qd_api_call_t;

/* The parts of a call the http layer reads (loop thread only). */
typedef struct {
    int status;                /* 0 while pending */
    const char *content_type;
    char *body;                /* non-streamed answer (owned by the call) */
    size_t body_len;
    int n_headers;
    qd_api_header_t headers[QD_API_MAX_HEADERS];
    int streaming;             /* 1: SSE; bytes in sbuf */
    char *sbuf;
    size_t s_len;              /* bytes in sbuf */
    size_t s_off;              /* bytes already handed to the socket */
    size_t s_cap;
    int stream_ended;          /* no more bytes will come */
    int failed;                /* the stream could not be completed: end
                                  the connection without a proper end */
} qd_api_resp_t;

int qd_api_create(uv_loop_t *loop, const qd_config_t *cfg, qd_api_t **out);
/* Drains pending events, frees. Schedulers must be destroyed before. */
void qd_api_destroy(qd_api_t *api);
/* Re-read keys and limits (SIGHUP). On failure the old values stay. */
int qd_api_reload(qd_api_t *api, const qd_config_t *cfg);
void qd_api_set_state(qd_api_t *api, qd_api_state_t st);
qd_api_state_t qd_api_get_state(const qd_api_t *api);
/* The model pool every served model lives in (owned by the caller; it
 * must outlive the API's use: qd_api_stop_loads(), then destroy the pool,
 * then qd_api_destroy()). */
void qd_api_set_pool(qd_api_t *api, qd_modelpool_t *pool);
/* Serve model `name` of the pool (copied). refused: NULL, or why the pool
 * refused it (its estimate exceeds the budget): its requests then get 507
 * model_too_large. A request for a model that is not loaded waits while a
 * worker thread loads it. */
int qd_api_add_model(qd_api_t *api, const char *name, const char *refused);
/* No more loads start; waits (running the loop) for those in flight. */
void qd_api_stop_loads(qd_api_t *api);
/* Generation calls not yet finished (for draining). */
int qd_api_n_active(const qd_api_t *api);
/* Process queued engine events now (normally done by the async). */
void qd_api_drain_events(qd_api_t *api);

/*
 * Handle a complete request. Returns the call (never NULL unless out of
 * memory); its response is either ready (resp->status != 0) or pending, in
 * which case wake(wake_ctx) is called on the loop thread when the status is
 * set or stream bytes arrive.
 */
qd_api_call_t *qd_api_call_start(qd_api_t *api, const qd_api_req_t *req,
                                 void (*wake)(void *), void *wake_ctx);
qd_api_resp_t *qd_api_call_resp(qd_api_call_t *c);
/* The stream consumer took `n` bytes from sbuf. */
void qd_api_call_consumed(qd_api_call_t *c, size_t n);
/* The http layer is done with the call. ok: the response was delivered
 * in full; otherwise a running generation is cancelled. Logs the request
 * line and counts its status. */
void qd_api_call_release(qd_api_call_t *c, int ok);

/* Normalize a request path: collapse '//' , resolve '.' and '..' (never
 * above the root), drop a trailing '/', percent-decode. Writes to out
 * (cap bytes). Returns 0 or QD_EINVAL for a malformed path. */
int qd_api_normalize_path(const char *in, char *out, size_t cap);

#endif /* QUANTD_API_API_H */
