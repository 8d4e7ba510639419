/*
 * api.c — routing, auth, CORS and the OpenAI endpoints, on the loop thread.
 *
 * A call is born in qd_api_call_start() (a complete HTTP request), and dies
 * when both sides are done with it: the http layer (qd_api_call_release)
 * and, for generations, the scheduler (its final DONE/ERROR event). Engine
 * events cross threads through `evq`, a mutex-protected list the engine
 * thread appends to before uv_async_send(); since wake-ups coalesce, every
 * wake-up drains the whole list.
 *
 * Auth compares SHA-256 digests of the presented and configured keys with
 * CRYPTO_memcmp, over all keys without an early exit, so neither the
 * content nor the length of a key leaks through timing. Paths are
 * normalized once (percent-decoding, '//', '.', '..') and both auth and
 * routing look at the normalized path, so no spelling of a route skips the
 * key check.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api.h"
#include "api/chat.h"
#include "api/openai.h"
#include "quantd/common.h"
#include "quantd/metrics.h"
#include "quantd/pool.h"
#include "quantd/tokenizer.h"

#define MAX_MODELS 16
#define N_STATUS 16

typedef struct api_model {
    char *name;
    qd_api_t *api;
    char *refused;    /* the pool refused it (can never fit): why */
    int64_t created;
    /* Valid while some call holds a pool reference on the model; `loads`
     * names the pool load they belong to. */
    const qd_model_t *model;
    qd_sched_t *sched;
    uint64_t loads;
    qd_jinja_t *tmpl; /* compiled chat template, NULL: fallback format */
    /* On-demand load (loop thread): calls waiting for it. */
    int loading;
    uv_work_t work;
    int work_err;
    char work_msg[256];
    struct qd_api_call *waiting;
} api_model_t;

typedef struct ev_node {
    struct ev_node *next;
    qd_api_call_t *call;
    qd_event_t ev;
    char *text; /* copy of ev.text / ev.message */
} ev_node_t;

typedef struct {
    char *text;
    size_t len, cap;
    json_t *lp;          /* logprob entries (chat: array; cmpl: object) */
    json_t *lp_pending;  /* stream: entries not yet sent */
    const char *finish;
    size_t text_offset;  /* completions logprobs text_offset */
} api_choice_t;

/* How a generation request ended (quantd_generation_requests_ended_total):
 * every one received ends as exactly one of these when its call is freed. */
typedef enum {
    GEN_FINISHED = 0, /* ran to its end (DONE) */
    GEN_CANCELLED,    /* the client went away before the end */
    GEN_REJECTED,     /* answered without running: 4xx, queue full, ... */
    GEN_FAILED,       /* ran and failed (engine error, model file changed) */
    N_GEN_OUTCOMES
} gen_outcome_t;

static const char *const gen_outcome_name[N_GEN_OUTCOMES] = {
    "finished", "cancelled", "rejected", "failed"};

struct qd_api_call {
    qd_api_resp_t resp;
    qd_api_t *api;
    struct qd_api_call *next, *prev; /* api->calls */
    void (*wake)(void *);
    void *wake_ctx;
    int released;
    int gen_active; /* submitted, final event not yet seen */
    /* Accounting of generation requests (loop thread): gen = 1 for a
     * generation call; at call_free it ends as one gen_outcome_t. */
    int gen, gen_submitted, gen_cancelled, gen_failed;
    /* The answer could not be built completely (an allocation failed):
     * the generation is cancelled and the client gets an error instead of
     * a silently incomplete answer. `lost` is set by the engine thread
     * when an event could not be queued. */
    int oom;
    _Atomic int lost;
    int body_static;   /* resp.body is static text: never freed */
    ev_node_t *final_node; /* preallocated for the final event */
    int held;       /* holds a pool reference on m */
    uint64_t req_id;
    api_model_t *m;
    qd_sched_t *sched;
    /* Waiting for m to load: the request body and kind, kept to start the
     * generation once it is loaded. */
    api_model_t *wait_m;
    struct qd_api_call *wait_next;
    char *wait_body;
    size_t wait_len;
    int wait_chat;
    char id[64];
    int chat, stream, include_usage, logprobs;
    int32_t top_logprobs, n;
    int64_t created;
    api_choice_t *ch;
    int32_t n_finished;
    int32_t usage_prompt, usage_completion, usage_cached;
    uint64_t t_start, t_first, t_last, last_write;
    char method[12];
    char path[160];
    char peer[64];
};

struct qd_api {
    uv_loop_t *loop;
    uv_async_t async;
    uv_timer_t keepalive;
    int handles_open;
    qd_api_state_t state;
    /* limits (reloadable) */
    qd_api_limits_t lim;
    int64_t max_tokens_default;
    int64_t retry_after_s;
    int64_t sse_keepalive_s;
    unsigned char (*keys)[32];
    int n_keys;
    char **cors;
    int n_cors;
    qd_modelpool_t *pool;
    int closing; /* no more loads start; finished ones only release */
    api_model_t models[MAX_MODELS];
    int n_models;
    qd_api_call_t *calls; /* live calls (loop thread) */
    int n_calls;
    uint64_t n_requests;
    uint64_t gen_received;             /* generation requests in */
    uint64_t gen_ended[N_GEN_OUTCOMES]; /* ... and how they ended */
    /* events from engine threads */
    pthread_mutex_t evmu;
    ev_node_t *evq_head, *evq_tail;
    /* metrics (loop thread writes) */
    int status_code[N_STATUS];
    uint64_t status_count[N_STATUS];
    uint64_t tokens_in, tokens_out;
    qd_histogram_t ttft, itl, e2e;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t wall_now(void) { return (int64_t)time(NULL); }

static void add_header(qd_api_resp_t *r, const char *name, const char *value)
{
    if (r->n_headers >= QD_API_MAX_HEADERS)
        return;
    char *n = qd_strdup(name), *v = qd_strdup(value);
    if (!n || !v) {
        qd_free(n);
        qd_free(v);
        return;
    }
    r->headers[r->n_headers].name = n;
    r->headers[r->n_headers].value = v;
    r->n_headers++;
}

static const char oom_body[] =
    "{\"error\":{\"message\":\"The server ran out of memory while "
    "handling the request.\",\"type\":\"server_error\",\"param\":null,"
    "\"code\":\"out_of_memory\"}}";

/* Replace the response body (b owned by the call; NULL: the static
 * out-of-memory error, status 500). */
static void set_body(qd_api_call_t *c, char *b, size_t len, int status)
{
    if (!c->body_static)
        qd_free(c->resp.body);
    c->body_static = !b;
    c->resp.body = b ? b : (char *)oom_body;
    c->resp.body_len = b ? len : sizeof oom_body - 1;
    c->resp.content_type = "application/json";
    c->resp.status = b ? status : 500;
}

/* Answer with a JSON value (stolen); NULL (a failed build): 500. */
static void respond_json(qd_api_call_t *c, int status, json_t *j)
{
    size_t len = 0;
    char *s = qd_api_json_dump(j, &len);
    json_decref(j);
    set_body(c, s, len, status);
}

static void respond_err(qd_api_call_t *c, const qd_api_err_t *e)
{
    size_t len = 0;
    char *b = qd_api_err_json(e, &len);
    set_body(c, b, len, e->status);
    if (e->status == 503) {
        char ra[32];
        snprintf(ra, sizeof ra, "%lld", (long long)c->api->retry_after_s);
        add_header(&c->resp, "Retry-After", ra);
    }
}

static void fail(qd_api_call_t *c, int status, const char *type,
                 const char *param, const char *code, const char *msg)
{
    qd_api_err_t e;
    qd_api_err_set(&e, status, type, param, code, "%s", msg);
    respond_err(c, &e);
}

static void wake(qd_api_call_t *c)
{
    if (!c->released && c->wake)
        c->wake(c->wake_ctx);
}

/* ---- path normalization ------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int qd_api_normalize_path(const char *in, char *out, size_t cap)
{
    char dec[1024];
    size_t n = 0;
    const char *q = strchr(in, '?');
    size_t len = q ? (size_t)(q - in) : strlen(in);
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return QD_EINVAL;
            int a = hexval(in[i + 1]), b = a >= 0 ? hexval(in[i + 2]) : -1;
            if (a < 0 || b < 0)
                return QD_EINVAL;
            ch = (char)(a * 16 + b);
            if (!ch)
                return QD_EINVAL;
            i += 2;
        }
        if (n + 1 >= sizeof dec)
            return QD_EINVAL;
        dec[n++] = ch;
    }
    dec[n] = '\0';
    /* Resolve segments. */
    if (cap < 2)
        return QD_EINVAL;
    size_t o = 0;
    out[o++] = '/';
    const char *p = dec;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t sl = e ? (size_t)(e - p) : strlen(p);
        if (sl == 1 && p[0] == '.') {
            /* skip */
        } else if (sl == 2 && p[0] == '.' && p[1] == '.') {
            if (o > 1) {
                o--; /* drop the trailing '/' */
                while (o > 1 && out[o - 1] != '/')
                    o--;
            }
        } else {
            if (o + sl + 2 > cap)
                return QD_EINVAL;
            memcpy(out + o, p, sl);
            o += sl;
            out[o++] = '/';
        }
        p += sl;
    }
    if (o > 1)
        o--; /* no trailing slash */
    out[o] = '\0';
    return 0;
}

/* ---- auth and CORS ------------------------------------------------------- */

static void sha256(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

static int auth_ok(qd_api_t *api, const qd_api_req_t *req)
{
    if (api->n_keys == 0)
        return 1;
    const char *h = req->header(req->hctx, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7))
        return 0;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    unsigned char d[32];
    sha256(tok, strlen(tok), d);
    int ok = 0;
    for (int i = 0; i < api->n_keys; i++)
        ok |= CRYPTO_memcmp(d, api->keys[i], 32) == 0;
    return ok;
}

static const char *cors_origin(qd_api_t *api, const qd_api_req_t *req)
{
    const char *origin = req->header(req->hctx, "Origin");
    if (!origin || !api->n_cors)
        return NULL;
    for (int i = 0; i < api->n_cors; i++) {
        if (!strcmp(api->cors[i], "*"))
            return "*";
        if (!strcmp(api->cors[i], origin))
            return origin;
    }
    return NULL;
}

/* ---- models -------------------------------------------------------------- */

static api_model_t *find_model(qd_api_t *api, const char *name)
{
    for (int i = 0; i < api->n_models; i++)
        if (!strcmp(api->models[i].name, name))
            return &api->models[i];
    return NULL;
}

void qd_api_set_pool(qd_api_t *api, qd_modelpool_t *pool)
{
    api->pool = pool;
}

int qd_api_add_model(qd_api_t *api, const char *name, const char *refused)
{
    if (api->n_models == MAX_MODELS) {
        qd_set_errmsg("api: more than %d models", MAX_MODELS);
        return QD_EFULL;
    }
    api_model_t *am = &api->models[api->n_models];
    memset(am, 0, sizeof *am);
    am->api = api;
    am->name = qd_strdup(name);
    am->refused = refused ? qd_strdup(refused) : NULL;
    if (!am->name || (refused && !am->refused)) {
        qd_free(am->name);
        qd_free(am->refused);
        return QD_ENOMEM;
    }
    am->created = wall_now();
    api->n_models++;
    return 0;
}

/* After a successful acquire of am: remember its model and scheduler, and
 * compile its chat template when this is a new load. */
static int model_refresh(qd_api_t *api, api_model_t *am,
                         const qd_model_t *m, qd_sched_t *s)
{
    qd_modelpool_model_info_t info;
    if (qd_modelpool_info(api->pool, am->name, &info))
        return QD_EINTERNAL;
    am->sched = s;
    if (am->model == m && am->loads == info.loads)
        return 0;
    qd_jinja_free(am->tmpl);
    am->tmpl = NULL;
    am->model = m;
    am->loads = info.loads;
    int rc = qd_chat_template_compile(qd_model_tokenizer(m), &am->tmpl);
    if (rc == QD_ENOMEM) {
        am->model = NULL;
        return rc;
    }
    if (rc)
        QD_WARN("api",
                "model %s: chat template does not compile (%s); chat "
                "requests use the plain fallback format",
                am->name, qd_errmsg());
    else if (!am->tmpl)
        QD_INFO("api",
                "model %s has no chat template; chat requests use the plain "
                "fallback format",
                am->name);
    return 0;
}

/* Take a pool reference on am for call c if it is loaded now: 0, or
 * QD_EAGAIN (not loaded), or another error. */
static int hold_model(qd_api_t *api, qd_api_call_t *c, api_model_t *am)
{
    qd_sched_t *s;
    const qd_model_t *m;
    int err = qd_modelpool_try_acquire(api->pool, am->name, &s, &m);
    if (err)
        return err;
    if ((err = model_refresh(api, am, m, s))) {
        qd_modelpool_release(api->pool, am->name);
        return err;
    }
    c->m = am;
    c->sched = s;
    c->held = 1;
    return 0;
}

static void drop_model(qd_api_call_t *c)
{
    if (!c->held)
        return;
    c->held = 0;
    if (c->api->pool)
        qd_modelpool_release(c->api->pool, c->m->name);
}

static json_t *model_json(qd_api_t *api, api_model_t *am)
{
    qd_modelpool_model_info_t info;
    memset(&info, 0, sizeof info);
    if (api->pool)
        qd_modelpool_info(api->pool, am->name, &info);
    const char *state = info.loaded                   ? "loaded"
                        : info.loading || am->loading ? "loading"
                                                      : "unloaded";
    size_t resident = info.estimate_bytes;
    double kv_usage = 0;
    if (info.loaded) {
        size_t kv = info.header.kv_bytes;
        resident = info.weight_bytes + kv;
        if (info.stats.kv_blocks_total)
            kv_usage = (double)info.stats.kv_blocks_used /
                       info.stats.kv_blocks_total;
    }
    const char *arch = info.arch[0] ? info.arch : "unknown";
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:f,s:i,s:s,s:s,s:b,s:I,s:I,s:i,"
                     "s:i,s:f,s:i}",
                     "id", am->name, "object", "model", "created",
                     (json_int_t)am->created, "owned_by", "quantd",
                     "quantization",
                     info.header.quant[0] ? info.header.quant : "unknown",
                     "bits_per_weight", info.header.bits_per_weight,
                     "context_length", (int)info.n_ctx, "architecture", arch,
                     "state", state, "pinned", info.pinned,
                     "resident_bytes", (json_int_t)resident,
                     "estimate_bytes", (json_int_t)info.estimate_bytes,
                     "kv_blocks_used", (int)info.stats.kv_blocks_used,
                     "kv_blocks_total", (int)info.stats.kv_blocks_total,
                     "kv_usage", kv_usage, "requests_running",
                     (int)info.users);
}

/* ---- metrics --------------------------------------------------------------- */

static void count_status(qd_api_t *api, int status)
{
    for (int i = 0; i < N_STATUS; i++) {
        if (api->status_code[i] == status || api->status_code[i] == 0) {
            api->status_code[i] = status;
            api->status_count[i]++;
            return;
        }
    }
}

static char *render_metrics(qd_api_t *api, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    for (int i = 0; i < N_STATUS && api->status_code[i]; i++) {
        char lb[32];
        snprintf(lb, sizeof lb, "status=\"%d\"", api->status_code[i]);
        qd_metric_render(f, "quantd_requests_total", "counter",
                         "HTTP requests answered, by status", lb,
                         (double)api->status_count[i], i == 0);
    }
    qd_metric_render(f, "quantd_generation_requests_received_total",
                     "counter",
                     "generation requests (completions, chat) received", "",
                     (double)api->gen_received, 1);
    for (int i = 0; i < N_GEN_OUTCOMES; i++) {
        char lb[40];
        snprintf(lb, sizeof lb, "outcome=\"%s\"", gen_outcome_name[i]);
        qd_metric_render(f, "quantd_generation_requests_ended_total",
                         "counter",
                         "generation requests ended, by outcome; received "
                         "= the sum over outcomes + those in progress",
                         lb, (double)api->gen_ended[i], i == 0);
    }
    qd_metric_render(f, "quantd_prompt_tokens_total", "counter",
                     "prompt tokens of finished generations", "",
                     (double)api->tokens_in, 1);
    qd_metric_render(f, "quantd_generation_tokens_total", "counter",
                     "tokens generated", "", (double)api->tokens_out, 1);
    qd_hist_render(f, &api->ttft, "quantd_time_to_first_token_seconds",
                   "time from request to first generated token", "");
    qd_hist_render(f, &api->itl, "quantd_inter_token_latency_seconds",
                   "time between consecutive tokens of a choice", "");
    qd_hist_render(f, &api->e2e, "quantd_request_duration_seconds",
                   "time from request to last token", "");
    int n_loaded = 0;
    qd_modelpool_model_info_t infos[MAX_MODELS];
    for (int i = 0; i < api->n_models; i++) {
        memset(&infos[i], 0, sizeof infos[i]);
        if (api->pool)
            qd_modelpool_info(api->pool, api->models[i].name, &infos[i]);
        n_loaded += infos[i].loaded;
    }
    qd_metric_render(f, "quantd_models_loaded", "gauge", "models loaded",
                     "", (double)n_loaded, 1);
    qd_metric_render(f, "quantd_models_configured", "gauge",
                     "models served (loaded or not)", "",
                     (double)api->n_models, 1);
    qd_metric_render(f, "quantd_model_pool_bytes", "gauge",
                     "estimated bytes of the loaded models", "",
                     api->pool ? (double)qd_modelpool_bytes_loaded(api->pool)
                               : 0,
                     1);
    qd_metric_render(f, "quantd_active_requests", "gauge",
                     "HTTP calls in progress", "", (double)api->n_calls, 1);
    static const struct {
        const char *name, *type, *help;
    } per_model[] = {
        {"quantd_queue_depth", "gauge", "requests waiting for a slot"},
        {"quantd_requests_running", "gauge", "requests admitted"},
        {"quantd_engine_steps_total", "counter", "forward steps run"},
        {"quantd_kv_blocks_used", "gauge", "KV cache blocks in use"},
        {"quantd_kv_blocks_total", "gauge", "KV cache blocks in the pool"},
        {"quantd_kv_usage_ratio", "gauge", "KV cache blocks used / total"},
    };
    for (size_t k = 0; k < QD_ARRAY_SIZE(per_model); k++) {
        for (int i = 0; i < api->n_models; i++) {
            const qd_sched_stats_t st = infos[i].stats;
            double v[] = {st.queued,
                          st.running,
                          (double)st.steps,
                          st.kv_blocks_used,
                          st.kv_blocks_total,
                          st.kv_blocks_total
                              ? (double)st.kv_blocks_used / st.kv_blocks_total
                              : 0};
            char lb[160];
            snprintf(lb, sizeof lb, "model=\"%s\"", api->models[i].name);
            qd_metric_render(f, per_model[k].name, per_model[k].type,
                             per_model[k].help, lb, v[k], i == 0);
        }
    }
    fclose(f);
    char *out = qd_strndup(buf, n);
    free(buf);
    *len = n;
    return out;
}

/* ---- events from the engine ---------------------------------------------- */

static void start_load(qd_api_t *api, api_model_t *am);
static int model_unavailable(qd_api_t *api, qd_api_call_t *c,
                             api_model_t *am, int err);

static void on_event(const qd_event_t *ev, void *ud)
{
    qd_api_call_t *c = ud;
    qd_api_t *api = c->api;
    ev_node_t *n;
    if (ev->type == QD_EV_DONE || ev->type == QD_EV_ERROR) {
        /* The final event never waits for memory: its node was allocated
         * at submission (the call lives until this event is drained). */
        n = c->final_node; /* zeroed by qd_calloc at submission */
        c->final_node = NULL;
    } else if (!(n = qd_calloc(1, sizeof *n))) {
        atomic_store(&c->lost, 1); /* the answer would miss this event */
        return;
    }
    n->call = c;
    n->ev = *ev;
    const char *src = ev->type == QD_EV_TOKEN   ? ev->text
                      : ev->type == QD_EV_ERROR ? ev->message
                                                : NULL;
    size_t len = ev->type == QD_EV_TOKEN ? (size_t)ev->text_len
                 : src                   ? strlen(src)
                                         : 0;
    if (src && len && !(n->text = qd_strndup(src, len))) {
        len = 0;
        if (ev->type == QD_EV_TOKEN)
            atomic_store(&c->lost, 1);
    }
    n->ev.text = n->text;
    n->ev.text_len = (int32_t)(n->text ? len : 0);
    n->ev.message = n->text;
    pthread_mutex_lock(&api->evmu);
    if (api->evq_tail)
        api->evq_tail->next = n;
    else
        api->evq_head = n;
    api->evq_tail = n;
    pthread_mutex_unlock(&api->evmu);
    uv_async_send(&api->async);
}

static void call_free(qd_api_call_t *c)
{
    qd_api_t *api = c->api;
    if (c->prev)
        c->prev->next = c->next;
    else if (api->calls == c)
        api->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    api->n_calls--;
    if (c->gen) {
        gen_outcome_t o = c->gen_cancelled   ? GEN_CANCELLED
                          : !c->gen_submitted ? GEN_REJECTED
                          : c->gen_failed     ? GEN_FAILED
                                              : GEN_FINISHED;
        api->gen_ended[o]++;
    }
    if (c->wait_m) {
        qd_api_call_t **pp = &c->wait_m->waiting;
        while (*pp && *pp != c)
            pp = &(*pp)->wait_next;
        if (*pp)
            *pp = c->wait_next;
    }
    qd_free(c->wait_body);
    drop_model(c);
    for (int32_t i = 0; c->ch && i < c->n; i++) {
        qd_free(c->ch[i].text);
        json_decref(c->ch[i].lp);
        json_decref(c->ch[i].lp_pending);
    }
    qd_free(c->ch);
    qd_free(c->final_node);
    if (!c->body_static)
        qd_free(c->resp.body);
    qd_free(c->resp.sbuf);
    for (int i = 0; i < c->resp.n_headers; i++) {
        qd_free(c->resp.headers[i].name);
        qd_free(c->resp.headers[i].value);
    }
    qd_free(c);
}

static int piece_fn(void *ud, int32_t tok, char *buf, int cap)
{
    return qd_token_to_piece(ud, tok, buf, cap, 0);
}

/* The answer cannot be completed for lack of memory: stop generating;
 * on_done answers with an error (see `oom`). */
static void call_oom(qd_api_call_t *c)
{
    if (c->oom)
        return;
    c->oom = 1;
    if (c->gen_active)
        qd_sched_cancel(c->sched, c->req_id);
}

/* Append j (stolen; NULL: a failed build) as one SSE event. */
static void sse_push_json(qd_api_call_t *c, json_t *j)
{
    size_t n = 0;
    char *s = qd_api_json_dump(j, &n);
    json_decref(j);
    if (!s || qd_sse_append(&c->resp.sbuf, &c->resp.s_len, &c->resp.s_cap, s,
                            n))
        call_oom(c);
    qd_free(s);
    c->last_write = qd_now_ns();
}

static void sse_push_raw(qd_api_call_t *c, const char *s)
{
    size_t n = strlen(s), need = c->resp.s_len + n;
    if (need > c->resp.s_cap) {
        size_t nc = QD_MAX(c->resp.s_cap * 2, need + 64);
        char *nb = qd_realloc(c->resp.sbuf, nc);
        if (!nb) {
            call_oom(c);
            return;
        }
        c->resp.sbuf = nb;
        c->resp.s_cap = nc;
    }
    memcpy(c->resp.sbuf + c->resp.s_len, s, n);
    c->resp.s_len += n;
    c->last_write = qd_now_ns();
}

/* A chunk with one choice; `delta_or_text` is stolen. */
static json_t *chunk_json(qd_api_call_t *c, int32_t idx, json_t *payload,
                          json_t *logprobs, const char *finish)
{
    json_t *choice =
        c->chat ? json_pack("{s:i,s:o,s:o,s:o}", "index", (int)idx, "delta",
                            payload, "logprobs",
                            logprobs ? logprobs : json_null(),
                            "finish_reason",
                            finish ? json_string(finish) : json_null())
                : json_pack("{s:i,s:o,s:o,s:o}", "index", (int)idx, "text",
                            payload, "logprobs",
                            logprobs ? logprobs : json_null(),
                            "finish_reason",
                            finish ? json_string(finish) : json_null());
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", c->id, "object",
                          c->chat ? "chat.completion.chunk"
                                  : "text_completion",
                          "created", (json_int_t)c->created, "model",
                          c->m->name, "choices", choice);
    if (j && c->include_usage &&
        json_object_set_new(j, "usage", json_null())) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static json_t *new_lp(int chat)
{
    if (chat)
        return json_array();
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs",
                     "top_logprobs", "text_offset");
}

/* Append a token's logprob entry to `dst` (shape per endpoint); -1 if
 * memory ran out (dst may then hold part of the entry). */
static int lp_append(qd_api_call_t *c, api_choice_t *ch, json_t *dst,
                     const qd_sample_t *s)
{
    const qd_tokenizer_t *tok = qd_model_tokenizer(c->m->model);
    json_t *e = qd_api_chat_logprob(s, c->top_logprobs, piece_fn, (void *)tok);
    if (!e || !dst)
        goto fail;
    if (c->chat)
        return json_array_append_new(dst, e) ? -1 : 0;
    json_t *top = json_object();
    size_t i;
    json_t *t;
    int bad = !top;
    json_array_foreach(json_object_get(e, "top_logprobs"), i, t)
        bad |= !top ||
               json_object_set(top,
                               json_string_value(json_object_get(t, "token")),
                               json_object_get(t, "logprob"));
    bad |= json_array_append(json_object_get(dst, "tokens"),
                             json_object_get(e, "token")) ||
           json_array_append(json_object_get(dst, "token_logprobs"),
                             json_object_get(e, "logprob")) ||
           json_array_append_new(json_object_get(dst, "top_logprobs"), top) ||
           json_array_append_new(json_object_get(dst, "text_offset"),
                                 json_integer((json_int_t)ch->text_offset));
    json_decref(e);
    return bad ? -1 : 0;
fail:
    json_decref(e);
    return -1;
}

static void on_token(qd_api_call_t *c, const qd_event_t *ev)
{
    qd_api_t *api = c->api;
    if (ev->choice < 0 || ev->choice >= c->n)
        return;
    api_choice_t *ch = &c->ch[ev->choice];
    uint64_t now = qd_now_ns();
    if (c->oom)
        return;
    if (ev->sample.tok >= 0) {
        if (!c->t_first) {
            c->t_first = now;
            qd_hist_observe(&api->ttft, (double)(now - c->t_start) / 1e9);
        } else if (ev->choice == 0) {
            qd_hist_observe(&api->itl, (double)(now - c->t_last) / 1e9);
        }
        if (ev->choice == 0)
            c->t_last = now;
        if (c->logprobs &&
            lp_append(c, ch, c->stream ? ch->lp_pending : ch->lp,
                      &ev->sample)) {
            call_oom(c);
            return;
        }
    }
    if (ev->text_len > 0) {
        if (!c->stream) {
            size_t need = ch->len + (size_t)ev->text_len + 1;
            if (need > ch->cap) {
                size_t nc = QD_MAX(ch->cap * 2, need + 64);
                char *nb = qd_realloc(ch->text, nc);
                if (!nb) {
                    call_oom(c);
                    return;
                }
                ch->text = nb;
                ch->cap = nc;
            }
            memcpy(ch->text + ch->len, ev->text, (size_t)ev->text_len);
            ch->len += (size_t)ev->text_len;
            ch->text[ch->len] = '\0';
        } else {
            /* NULL (out of memory) makes the chunk fail: see call_oom */
            json_t *txt = qd_api_json_text(ev->text, (size_t)ev->text_len);
            json_t *payload =
                c->chat ? json_pack("{s:o}", "content", txt) : txt;
            json_t *lp = NULL;
            if (c->logprobs) {
                lp = c->chat ? json_pack("{s:O}", "content", ch->lp_pending)
                             : json_incref(ch->lp_pending);
                json_decref(ch->lp_pending);
                ch->lp_pending = new_lp(c->chat);
                if (!lp || !ch->lp_pending) {
                    json_decref(lp);
                    json_decref(payload);
                    call_oom(c);
                    return;
                }
            }
            sse_push_json(c, chunk_json(c, ev->choice, payload, lp, NULL));
            wake(c);
        }
        ch->text_offset += (size_t)ev->text_len;
    }
}

static void on_finish(qd_api_call_t *c, const qd_event_t *ev)
{
    if (ev->choice < 0 || ev->choice >= c->n)
        return;
    api_choice_t *ch = &c->ch[ev->choice];
    ch->finish = qd_finish_name(ev->finish);
    c->n_finished++;
    if (c->stream && !c->oom) {
        json_t *payload = c->chat ? json_object() : json_string("");
        json_t *lp = NULL;
        if (c->logprobs &&
            (c->chat ? json_array_size(ch->lp_pending)
                     : json_array_size(json_object_get(ch->lp_pending,
                                                       "tokens")))) {
            lp = c->chat ? json_pack("{s:O}", "content", ch->lp_pending)
                         : json_incref(ch->lp_pending);
            if (!lp) {
                json_decref(payload);
                call_oom(c);
                return;
            }
        }
        sse_push_json(c, chunk_json(c, ev->choice, payload, lp, ch->finish));
        wake(c);
    }
}

static void access_log(qd_api_call_t *c)
{
    double total_ms = (double)(qd_now_ns() - c->t_start) / 1e6;
    double ttft_ms = c->t_first ? (double)(c->t_first - c->t_start) / 1e6 : 0;
    QD_INFO("http",
            "%s %s %s %s %d prompt_tokens=%d completion_tokens=%d "
            "ttft_ms=%.1f total_ms=%.1f",
            c->id[0] ? c->id : "-", c->peer, c->method, c->path,
            c->resp.status, c->usage_prompt, c->usage_completion, ttft_ms,
            total_ms);
}

/* End a stream with an error event and [DONE]; if even that cannot be
 * queued, mark it failed so the connection ends without a proper end. */
static void stream_fail(qd_api_call_t *c, const qd_api_err_t *e)
{
    size_t n = 0;
    char *s = qd_api_err_json(e, &n);
    if (!s || qd_sse_append(&c->resp.sbuf, &c->resp.s_len, &c->resp.s_cap, s,
                            n))
        c->resp.failed = 1;
    qd_free(s);
    size_t before = c->resp.s_len;
    sse_push_raw(c, "data: [DONE]\n\n");
    if (c->resp.s_len == before)
        c->resp.failed = 1;
    c->resp.stream_ended = 1;
    wake(c);
}

static void answer_oom(qd_api_call_t *c)
{
    c->gen_failed = 1;
    qd_api_err_t e;
    qd_api_err_set(&e, 500, "server_error", NULL, "out_of_memory",
                   "The server ran out of memory while building the answer.");
    if (c->stream)
        stream_fail(c, &e);
    else
        respond_err(c, &e);
    wake(c);
}

static void on_done(qd_api_call_t *c, const qd_event_t *ev)
{
    qd_api_t *api = c->api;
    c->gen_active = 0;
    drop_model(c);
    c->usage_prompt = ev->prompt_tokens;
    c->usage_completion = ev->completion_tokens;
    c->usage_cached = ev->cached_tokens;
    api->tokens_in += (uint64_t)ev->prompt_tokens;
    api->tokens_out += (uint64_t)ev->completion_tokens;
    if (c->t_first)
        qd_hist_observe(&api->e2e, (double)(qd_now_ns() - c->t_start) / 1e9);
    if (c->released)
        return;
    if (atomic_load(&c->lost))
        c->oom = 1;
    if (c->oom) {
        answer_oom(c);
        return;
    }
    json_t *usage = qd_api_usage_json(ev->prompt_tokens,
                                      ev->completion_tokens,
                                      ev->cached_tokens);
    if (c->stream) {
        if (c->include_usage) {
            json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", c->id,
                                  "object",
                                  c->chat ? "chat.completion.chunk"
                                          : "text_completion",
                                  "created", (json_int_t)c->created, "model",
                                  c->m->name, "choices", "usage", usage);
            sse_push_json(c, j);
        } else {
            json_decref(usage);
        }
        if (!c->oom)
            sse_push_raw(c, "data: [DONE]\n\n");
        if (c->oom) {
            answer_oom(c);
            return;
        }
        c->resp.stream_ended = 1;
        wake(c);
        return;
    }
    json_t *choices = json_array();
    int bad = !choices || !usage;
    for (int32_t i = 0; !bad && i < c->n; i++) {
        api_choice_t *ch = &c->ch[i];
        const char *text = ch->text ? ch->text : "";
        /* whole characters (the scheduler releases no partial one) */
        json_t *txt = qd_api_json_text(text, ch->len);
        json_t *lp = json_null();
        if (c->logprobs)
            lp = c->chat ? json_pack("{s:O}", "content", ch->lp)
                         : json_incref(ch->lp);
        json_t *o;
        if (c->chat)
            o = json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", (int)i,
                          "message", "role", "assistant", "content", txt,
                          "logprobs", lp, "finish_reason",
                          ch->finish ? ch->finish : "stop");
        else
            o = json_pack("{s:i,s:o,s:o,s:s}", "index", (int)i, "text", txt,
                          "logprobs", lp, "finish_reason",
                          ch->finish ? ch->finish : "stop");
        bad |= json_array_append_new(choices, o) != 0;
    }
    if (bad) {
        json_decref(choices);
        json_decref(usage);
        answer_oom(c);
        return;
    }
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", c->id, "object",
                          c->chat ? "chat.completion" : "text_completion",
                          "created", (json_int_t)c->created, "model",
                          c->m->name, "choices", choices, "usage", usage);
    respond_json(c, 200, j);
    wake(c);
}

static void on_error(qd_api_call_t *c, const qd_event_t *ev)
{
    c->gen_active = 0;
    c->gen_failed = 1;
    drop_model(c);
    if (c->released)
        return;
    qd_api_err_t e;
    if (ev->error == QD_EIO) /* the model file changed under its mapping */
        qd_api_err_set(&e, 503, "server_error", "model", "model_file_changed",
                       "generation stopped: %s",
                       ev->message ? ev->message : qd_strerror(ev->error));
    else
        qd_api_err_set(&e, 500, "server_error", NULL, "engine_error",
                       "generation failed: %s",
                       ev->message ? ev->message : qd_strerror(ev->error));
    if (c->stream)
        stream_fail(c, &e);
    else
        respond_err(c, &e);
    wake(c);
}

void qd_api_drain_events(qd_api_t *api)
{
    pthread_mutex_lock(&api->evmu);
    ev_node_t *n = api->evq_head;
    api->evq_head = api->evq_tail = NULL;
    pthread_mutex_unlock(&api->evmu);
    while (n) {
        ev_node_t *next = n->next;
        qd_api_call_t *c = n->call;
        switch (n->ev.type) {
        case QD_EV_TOKEN:
            on_token(c, &n->ev);
            break;
        case QD_EV_FINISH:
            on_finish(c, &n->ev);
            break;
        case QD_EV_DONE:
            on_done(c, &n->ev);
            break;
        case QD_EV_ERROR:
            on_error(c, &n->ev);
            break;
        }
        if ((n->ev.type == QD_EV_DONE || n->ev.type == QD_EV_ERROR) &&
            c->released)
            call_free(c);
        qd_free(n->text);
        qd_free(n);
        n = next;
    }
}

static void on_async(uv_async_t *h) { qd_api_drain_events(h->data); }

/* Streams that have been quiet for sse_keepalive_s get a comment line so
 * proxies and clients do not time them out while a request waits. */
static void on_keepalive(uv_timer_t *t)
{
    qd_api_t *api = t->data;
    uint64_t now = qd_now_ns();
    uint64_t every = (uint64_t)api->sse_keepalive_s * 1000000000ull;
    for (qd_api_call_t *c = api->calls; c; c = c->next) {
        if (c->released || !c->resp.streaming || c->resp.stream_ended)
            continue;
        if (now - c->last_write >= every) {
            sse_push_raw(c, ": keep-alive\n\n");
            wake(c);
        }
    }
}

/* ---- generation endpoints ------------------------------------------------- */


/* Park call c until am is loaded; the body is kept to start over then. */
static void wait_for_model(qd_api_t *api, qd_api_call_t *c, api_model_t *am,
                           const char *body, size_t len, int chat)
{
    if (!c->wait_body) {
        if (!(c->wait_body = qd_malloc(len + 1))) {
            fail(c, 500, "server_error", NULL, NULL, "out of memory");
            return;
        }
        memcpy(c->wait_body, body, len);
        c->wait_body[len] = '\0';
        c->wait_len = len;
        c->wait_chat = chat;
    }
    c->wait_m = am;
    c->wait_next = am->waiting;
    am->waiting = c;
    start_load(api, am);
}

static void start_generation_body(qd_api_t *api, qd_api_call_t *c,
                                  const char *body, size_t body_len, int chat);

static void start_generation(qd_api_t *api, qd_api_call_t *c,
                             const qd_api_req_t *req, int chat)
{
    c->gen = 1;
    api->gen_received++;
    start_generation_body(api, c, req->body ? req->body : "", req->body_len,
                          chat);
}

/* The answer to a model that is not usable now: 0 if it is loaded. */
static int model_unavailable(qd_api_t *api, qd_api_call_t *c,
                             api_model_t *am, int err)
{
    qd_api_err_t e;
    if (err == QD_EBUSY) {
        qd_api_err_set(&e, 503, "server_error", "model", "model_pool_busy",
                       "The model '%s' cannot be loaded now: models in use "
                       "or pinned hold the memory budget (%s); retry "
                       "shortly.",
                       am->name, qd_errmsg());
    } else if (err == QD_EIO) {
        qd_api_err_set(&e, 503, "server_error", "model", "model_file_changed",
                       "The model '%s' is being reloaded: %s", am->name,
                       qd_errmsg());
    } else if (err == QD_ETOOBIG) {
        qd_api_err_set(&e, 507, "server_error", "model", "model_too_large",
                       "The model '%s' can never be loaded: %s", am->name,
                       am->refused ? am->refused : qd_errmsg());
    } else {
        qd_api_err_set(&e, 500, "server_error", "model", "model_load_failed",
                       "The model '%s' could not be loaded: %s", am->name,
                       qd_errmsg());
    }
    respond_err(c, &e);
    return err;
}

static void start_generation_body(qd_api_t *api, qd_api_call_t *c,
                                  const char *body, size_t body_len, int chat)
{
    qd_api_err_t e;
    qd_gen_req_t g;
    int32_t *toks = NULL;
    int32_t n_toks = 0;
    char *text = NULL;
    if (api->state != QD_API_READY) {
        qd_api_err_set(&e, 503, "server_error", NULL,
                       api->state == QD_API_DRAINING ? "server_draining"
                                                     : "server_loading",
                       "The server is %s; retry shortly.",
                       api->state == QD_API_DRAINING ? "shutting down"
                                                     : "loading models");
        respond_err(c, &e);
        return;
    }
    if (qd_gen_req_parse(&api->lim, body, body_len, chat, &g, &e)) {
        respond_err(c, &e);
        return;
    }
    api_model_t *am = find_model(api, g.model);
    if (!am) {
        qd_api_err_set(&e, 404, "invalid_request_error", "model",
                       "model_not_found",
                       "The model '%s' does not exist or you do not have "
                       "access to it.",
                       g.model);
        respond_err(c, &e);
        goto out;
    }
    if (am->refused) {
        model_unavailable(api, c, am, QD_ETOOBIG);
        goto out;
    }
    int herr = hold_model(api, c, am);
    if (herr == QD_EAGAIN) {
        wait_for_model(api, c, am, body, body_len, chat);
        goto out;
    }
    if (herr) {
        model_unavailable(api, c, am, herr);
        goto out;
    }
    const qd_tokenizer_t *tok = qd_model_tokenizer(am->model);
    if (qd_gen_req_check_vocab(&g, qd_tokenizer_n_vocab(tok), &e)) {
        respond_err(c, &e);
        goto out;
    }
    int rc;
    if (chat) {
        size_t len;
        int has_bos;
        if (qd_chat_render(tok, am->tmpl, g.messages, &text, &len, &has_bos,
                           &e)) {
            respond_err(c, &e);
            goto out;
        }
        rc = qd_chat_tokenize(tok, text, len, !has_bos, &toks, &n_toks);
    } else if (g.prompt) {
        rc = qd_chat_tokenize(tok, g.prompt, strlen(g.prompt), 1, &toks,
                              &n_toks);
    } else {
        toks = g.prompt_toks;
        n_toks = g.n_prompt_toks;
        g.prompt_toks = NULL;
        rc = 0;
    }
    if (rc) {
        fail(c, 500, "server_error", NULL, NULL, "tokenization failed");
        goto out;
    }
    if (n_toks == 0) {
        fail(c, 400, "invalid_request_error", chat ? "messages" : "prompt",
             "invalid_value", "The prompt is empty.");
        goto out;
    }
    int32_t n_ctx = qd_sched_n_ctx(c->sched);
    int64_t max_tokens = g.max_tokens;
    if (max_tokens < 0) {
        max_tokens = n_ctx - n_toks;
        if (api->max_tokens_default > 0)
            max_tokens = QD_MIN(max_tokens, api->max_tokens_default);
        if (max_tokens < 1)
            max_tokens = 1; /* reported below as exceeding the context */
    }
    if ((int64_t)n_toks + max_tokens > n_ctx) {
        qd_api_err_set(&e, 400, "invalid_request_error",
                       chat ? "messages" : "prompt",
                       "context_length_exceeded",
                       "This model's maximum context length is %d tokens. "
                       "However, you requested %lld tokens (%d in the "
                       "%s, %lld in the completion). Please reduce the "
                       "length of the %s or completion.",
                       n_ctx, (long long)(n_toks + max_tokens), n_toks,
                       chat ? "messages" : "prompt", (long long)max_tokens,
                       chat ? "messages" : "prompt");
        respond_err(c, &e);
        goto out;
    }
    if (!g.seed_set)
        RAND_bytes((unsigned char *)&g.sp.seed, sizeof g.sp.seed);

    c->m = am;
    c->chat = chat;
    c->stream = g.stream;
    c->include_usage = g.include_usage;
    c->logprobs = g.logprobs;
    c->top_logprobs = g.top_logprobs;
    c->n = g.n;
    c->created = wall_now();
    qd_api_random_id(chat ? "chatcmpl-" : "cmpl-", c->id, sizeof c->id);
    c->ch = qd_calloc((size_t)g.n, sizeof *c->ch);
    c->final_node = qd_calloc(1, sizeof *c->final_node);
    int lp_bad = 0;
    for (int32_t i = 0; c->ch && i < g.n; i++) {
        c->ch[i].lp = g.logprobs ? new_lp(chat) : NULL;
        c->ch[i].lp_pending = g.logprobs ? new_lp(chat) : NULL;
        lp_bad |= g.logprobs && (!c->ch[i].lp || !c->ch[i].lp_pending);
    }
    if (!c->ch || !c->final_node || lp_bad) {
        set_body(c, NULL, 0, 500);
        goto out;
    }
    qd_gen_params_t gp;
    memset(&gp, 0, sizeof gp);
    gp.prompt = toks;
    gp.n_prompt = n_toks;
    gp.max_tokens = (int32_t)max_tokens;
    gp.n = g.n;
    gp.sampling = g.sp;
    gp.stop = (const char *const *)g.stop;
    gp.n_stop = g.n_stop;
    gp.logprobs = g.logprobs;
    gp.top_logprobs = g.top_logprobs;
    rc = qd_sched_submit(c->sched, &gp, on_event, c, &c->req_id);
    if (rc == QD_EFULL) {
        qd_api_err_set(&e, 503, "server_error", NULL, "server_overloaded",
                       "The server has too many queued requests; retry "
                       "shortly.");
        respond_err(c, &e);
        goto out;
    }
    if (rc == QD_EIO) {
        qd_api_err_set(&e, 503, "server_error", "model", "model_file_changed",
                       "The model '%s' cannot run: %s", am->name,
                       qd_errmsg());
        respond_err(c, &e);
        goto out;
    }
    if (rc == QD_ETOOBIG) {
        qd_api_err_set(&e, 400, "invalid_request_error", "max_tokens",
                       "context_length_exceeded", "%s", qd_errmsg());
        respond_err(c, &e);
        goto out;
    }
    if (rc) {
        qd_api_err_set(&e, 500, "server_error", NULL, NULL,
                       "could not queue the request: %s", qd_errmsg());
        respond_err(c, &e);
        goto out;
    }
    c->gen_active = 1;
    c->gen_submitted = 1;
    if (c->stream) {
        c->resp.status = 200;
        c->resp.streaming = 1;
        c->resp.content_type = "text/event-stream";
        add_header(&c->resp, "Cache-Control", "no-cache");
        add_header(&c->resp, "X-Accel-Buffering", "no");
        if (chat) {
            /* The role goes in the first delta, before any content. */
            for (int32_t i = 0; i < c->n; i++)
                sse_push_json(
                    c, chunk_json(c, i,
                                  json_pack("{s:s,s:s}", "role", "assistant",
                                            "content", ""),
                                  NULL, NULL));
        }
        c->last_write = qd_now_ns();
    }
out:
    if (!c->gen_active)
        drop_model(c);
    qd_free(text);
    qd_free(toks);
    qd_gen_req_close(&g);
}

/* ---- on-demand loads -------------------------------------------------------- */

/* Worker thread: load through the pool (taking one reference). */
static void load_work(uv_work_t *w)
{
    api_model_t *am = w->data;
    qd_sched_t *s;
    am->work_err = qd_modelpool_acquire(am->api->pool, am->name, &s);
    if (am->work_err)
        snprintf(am->work_msg, sizeof am->work_msg, "%s", qd_errmsg());
}

/* Loop thread: start (or fail) every call that waited for the load, then
 * drop the load's own reference. */
static void load_done(uv_work_t *w, int status)
{
    api_model_t *am = w->data;
    qd_api_t *api = am->api;
    am->loading = 0;
    int err = status ? QD_ECANCELED : am->work_err;
    if (err)
        QD_WARN("api", "model %s: load failed: %s", am->name,
                status ? "cancelled" : am->work_msg);
    qd_api_call_t *list = am->waiting;
    am->waiting = NULL;
    /* Reverse to arrival order. */
    qd_api_call_t *ordered = NULL;
    while (list) {
        qd_api_call_t *next = list->wait_next;
        list->wait_next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered) {
        qd_api_call_t *c = ordered;
        ordered = c->wait_next;
        c->wait_next = NULL;
        c->wait_m = NULL;
        if (api->closing) {
            fail(c, 503, "server_error", NULL, "server_draining",
                 "The server is shutting down.");
        } else if (err) {
            qd_set_errmsg("%s", am->work_msg);
            model_unavailable(api, c, am, err);
        } else {
            start_generation_body(api, c, c->wait_body, c->wait_len,
                                  c->wait_chat);
        }
        /* A model unloaded again before this call got it: wait again. */
        if (!c->wait_m) {
            qd_free(c->wait_body);
            c->wait_body = NULL;
            wake(c);
        }
    }
    if (!err && api->pool)
        qd_modelpool_release(api->pool, am->name);
}

static void start_load(qd_api_t *api, api_model_t *am)
{
    if (am->loading || api->closing || !api->pool)
        return;
    am->loading = 1;
    am->work.data = am;
    int rc = uv_queue_work(api->loop, &am->work, load_work, load_done);
    if (rc) {
        am->loading = 0;
        am->work_err = QD_EINTERNAL;
        snprintf(am->work_msg, sizeof am->work_msg, "uv_queue_work: %s",
                 uv_strerror(rc));
        load_done(&am->work, 0);
    }
}

void qd_api_stop_loads(qd_api_t *api)
{
    if (!api)
        return;
    api->closing = 1;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < api->n_models; i++)
            busy |= api->models[i].loading;
        if (!busy)
            break;
        uv_run(api->loop, UV_RUN_ONCE);
    }
}

/* ---- tokenize / detokenize ------------------------------------------------ */

static json_t *parse_body(qd_api_t *api, qd_api_call_t *c,
                          const qd_api_req_t *req)
{
    if (qd_json_depth(req->body ? req->body : "", req->body_len) >
        api->lim.max_json_depth) {
        fail(c, 400, "invalid_request_error", NULL, "invalid_json",
             "The request body nests JSON too deeply.");
        return NULL;
    }
    json_error_t je;
    int oom;
    json_t *j = qd_api_json_loadb(req->body ? req->body : "", req->body_len,
                                  &je, &oom);
    if (oom) {
        set_body(c, NULL, 0, 500);
        return NULL;
    }
    if (!j) {
        qd_api_err_t e;
        qd_api_err_set(&e, 400, "invalid_request_error", NULL, "invalid_json",
                       "We could not parse the JSON body of your request: "
                       "%s (line %d, column %d).",
                       je.text, je.line, je.column);
        respond_err(c, &e);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(c, 400, "invalid_request_error", NULL, "invalid_json",
             "The request body must be a JSON object.");
        return NULL;
    }
    return j;
}

static api_model_t *model_for(qd_api_t *api, qd_api_call_t *c, json_t *j)
{
    json_t *m = json_object_get(j, "model");
    if (m && !json_is_string(m)) {
        fail(c, 400, "invalid_request_error", "model", "invalid_type",
             "Invalid type for 'model': expected a string.");
        return NULL;
    }
    api_model_t *am = m ? find_model(api, json_string_value(m))
                        : (api->n_models ? &api->models[0] : NULL);
    if (!am) {
        fail(c, 404, "invalid_request_error", "model", "model_not_found",
             "No such model.");
        return NULL;
    }
    int err = am->refused ? QD_ETOOBIG : hold_model(api, c, am);
    if (err == QD_EAGAIN) {
        /* Tokenizing does not wait for a load; it starts one. */
        start_load(api, am);
        qd_api_err_t e;
        qd_api_err_set(&e, 503, "server_error", "model", "model_loading",
                       "The model '%s' is not loaded; it is loading now, "
                       "retry shortly.",
                       am->name);
        respond_err(c, &e);
        return NULL;
    }
    if (err) {
        model_unavailable(api, c, am, err);
        return NULL;
    }
    return am;
}

static void do_tokenize(qd_api_t *api, qd_api_call_t *c,
                        const qd_api_req_t *req)
{
    json_t *j = parse_body(api, c, req);
    if (!j)
        return;
    api_model_t *am = model_for(api, c, j);
    json_t *content = json_object_get(j, "content");
    json_t *add = json_object_get(j, "add_special");
    if (!am)
        goto out;
    if (!json_is_string(content)) {
        fail(c, 400, "invalid_request_error", "content", "invalid_type",
             "'content' must be a string.");
        goto out;
    }
    if (add && !json_is_boolean(add)) {
        fail(c, 400, "invalid_request_error", "add_special", "invalid_type",
             "'add_special' must be a boolean.");
        goto out;
    }
    int32_t *toks;
    int32_t n;
    if (qd_chat_tokenize(qd_model_tokenizer(am->model),
                         json_string_value(content),
                         json_string_length(content), json_is_true(add),
                         &toks, &n)) {
        fail(c, 500, "server_error", NULL, NULL, "tokenization failed");
        goto out;
    }
    json_t *arr = json_array();
    for (int32_t i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(toks[i]));
    qd_free(toks);
    respond_json(c, 200, json_pack("{s:o}", "tokens", arr));
out:
    drop_model(c);
    json_decref(j);
}

static void do_detokenize(qd_api_t *api, qd_api_call_t *c,
                          const qd_api_req_t *req)
{
    json_t *j = parse_body(api, c, req);
    if (!j)
        return;
    api_model_t *am = model_for(api, c, j);
    json_t *arr = json_object_get(j, "tokens");
    char *buf = NULL;
    if (!am)
        goto out;
    if (!json_is_array(arr)) {
        fail(c, 400, "invalid_request_error", "tokens", "invalid_type",
             "'tokens' must be an array of token ids.");
        goto out;
    }
    const qd_tokenizer_t *tok = qd_model_tokenizer(am->model);
    int32_t n_vocab = qd_tokenizer_n_vocab(tok);
    size_t n = json_array_size(arr), cap = n * 32 + 64, len = 0, i;
    buf = qd_malloc(cap);
    if (!buf) {
        fail(c, 500, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    json_t *t;
    json_array_foreach(arr, i, t)
    {
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= n_vocab) {
            fail(c, 400, "invalid_request_error", "tokens", "invalid_value",
                 "'tokens' holds an id outside the vocabulary.");
            goto out;
        }
        char piece[256];
        int m = qd_token_to_piece(tok, (int32_t)json_integer_value(t), piece,
                                  (int)sizeof piece, 0);
        m = QD_MIN(QD_MAX(m, 0), (int)sizeof piece);
        if (len + (size_t)m + 1 > cap) {
            cap = (len + (size_t)m + 1) * 2;
            char *nb = qd_realloc(buf, cap);
            if (!nb) {
                fail(c, 500, "server_error", NULL, NULL, "out of memory");
                goto out;
            }
            buf = nb;
        }
        memcpy(buf + len, piece, (size_t)m);
        len += (size_t)m;
    }
    json_t *s = json_stringn(buf, len);
    if (!s)
        s = json_stringn(buf, qd_utf8_complete_len(buf, len));
    respond_json(c, 200, json_pack("{s:o}", "content", s ? s : json_string("")));
out:
    drop_model(c);
    qd_free(buf);
    json_decref(j);
}

/* ---- routing -------------------------------------------------------------- */

typedef struct {
    const char *path;
    const char *method;
    int gen; /* 1: completions, 2: chat */
} route_t;

static const route_t routes[] = {
    {"/health", "GET", 0},           {"/ready", "GET", 0},
    {"/v1/models", "GET", 0},        {"/metrics", "GET", 0},
    {"/tokenize", "POST", 0},        {"/detokenize", "POST", 0},
    {"/v1/completions", "POST", 1},  {"/v1/chat/completions", "POST", 2},
};

static void route(qd_api_t *api, qd_api_call_t *c, const qd_api_req_t *req,
                  const char *path)
{
    const route_t *r = NULL;
    for (size_t i = 0; i < QD_ARRAY_SIZE(routes); i++)
        if (!strcmp(routes[i].path, path))
            r = &routes[i];
    int is_model = !strncmp(path, "/v1/models/", 11) && path[11];
    if (!r && !is_model) {
        fail(c, 404, "invalid_request_error", NULL, "not_found",
             "Unknown request URL. Please check the URL and method.");
        return;
    }
    const char *want = r ? r->method : "GET";
    int head = !strcmp(req->method, "HEAD") && !strcmp(want, "GET");
    if (strcmp(req->method, want) && !head) {
        fail(c, 405, "invalid_request_error", NULL, "method_not_allowed",
             "Method not allowed for this URL.");
        add_header(&c->resp, "Allow", want);
        return;
    }
    if (is_model) {
        api_model_t *am = find_model(api, path + 11);
        if (!am)
            fail(c, 404, "invalid_request_error", "model", "model_not_found",
                 "No such model.");
        else
            respond_json(c, 200, model_json(api, am));
        return;
    }
    if (!strcmp(path, "/health")) {
        respond_json(c, 200, json_pack("{s:s}", "status", "ok"));
    } else if (!strcmp(path, "/ready")) {
        const char *st = api->state == QD_API_READY      ? "ready"
                         : api->state == QD_API_LOADING ? "loading"
                                                        : "draining";
        respond_json(c, api->state == QD_API_READY ? 200 : 503,
                     json_pack("{s:s}", "status", st));
        if (api->state != QD_API_READY) {
            char ra[32];
            snprintf(ra, sizeof ra, "%lld", (long long)api->retry_after_s);
            add_header(&c->resp, "Retry-After", ra);
        }
    } else if (!strcmp(path, "/v1/models")) {
        json_t *data = json_array();
        for (int i = 0; i < api->n_models; i++)
            json_array_append_new(data, model_json(api, &api->models[i]));
        respond_json(c, 200,
                     json_pack("{s:s,s:o}", "object", "list", "data", data));
    } else if (!strcmp(path, "/metrics")) {
        size_t len = 0;
        char *text = render_metrics(api, &len);
        if (!text) {
            fail(c, 500, "server_error", NULL, NULL, "out of memory");
            return;
        }
        c->resp.body = text;
        c->resp.body_len = len;
        c->resp.content_type = "text/plain; version=0.0.4";
        c->resp.status = 200;
    } else if (!strcmp(path, "/tokenize")) {
        do_tokenize(api, c, req);
    } else if (!strcmp(path, "/detokenize")) {
        do_detokenize(api, c, req);
    } else {
        start_generation(api, c, req, r->gen == 2);
    }
}

qd_api_call_t *qd_api_call_start(qd_api_t *api, const qd_api_req_t *req,
                                 void (*wakefn)(void *), void *wake_ctx)
{
    qd_api_call_t *c = qd_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->api = api;
    c->wake = wakefn;
    c->wake_ctx = wake_ctx;
    c->t_start = qd_now_ns();
    c->next = api->calls;
    if (api->calls)
        api->calls->prev = c;
    api->calls = c;
    api->n_calls++;
    api->n_requests++;
    snprintf(c->method, sizeof c->method, "%s", req->method);
    snprintf(c->peer, sizeof c->peer, "%s", req->peer ? req->peer : "-");

    char path[1024];
    if (qd_api_normalize_path(req->path, path, sizeof path)) {
        snprintf(c->path, sizeof c->path, "%.100s", req->path);
        fail(c, 400, "invalid_request_error", NULL, "invalid_path",
             "Malformed request path.");
        return c;
    }
    snprintf(c->path, sizeof c->path, "%.150s", path);

    const char *origin = cors_origin(api, req);
    if (origin) {
        add_header(&c->resp, "Access-Control-Allow-Origin", origin);
        if (strcmp(origin, "*"))
            add_header(&c->resp, "Vary", "Origin");
    }
    if (!strcmp(req->method, "OPTIONS")) {
        if (origin) {
            add_header(&c->resp, "Access-Control-Allow-Methods",
                       "GET, POST, OPTIONS");
            add_header(&c->resp, "Access-Control-Allow-Headers",
                       "Authorization, Content-Type");
            add_header(&c->resp, "Access-Control-Max-Age", "600");
        }
        c->resp.status = 204;
        c->resp.content_type = "text/plain";
        c->resp.body = qd_strdup("");
        return c;
    }
    if (strcmp(path, "/health") && strcmp(path, "/ready") &&
        !auth_ok(api, req)) {
        fail(c, 401, "invalid_request_error", NULL, "invalid_api_key",
             "Incorrect API key provided.");
        add_header(&c->resp, "WWW-Authenticate", "Bearer");
        return c;
    }
    route(api, c, req, path);
    return c;
}

qd_api_resp_t *qd_api_call_resp(qd_api_call_t *c) { return &c->resp; }

void qd_api_call_consumed(qd_api_call_t *c, size_t n)
{
    c->resp.s_off += n;
    if (c->resp.s_off == c->resp.s_len) {
        c->resp.s_off = c->resp.s_len = 0;
    }
}

void qd_api_call_release(qd_api_call_t *c, int ok)
{
    if (!c)
        return;
    qd_api_t *api = c->api;
    c->released = 1;
    int status = ok ? c->resp.status : (c->resp.status ? c->resp.status : 499);
    if (!ok && c->gen_active)
        status = 499; /* client closed the request, nginx's convention */
    if (!ok && (c->gen_active || c->wait_m))
        c->gen_cancelled = 1;
    c->resp.status = status;
    count_status(api, status);
    access_log(c);
    if (c->gen_active) {
        qd_sched_cancel(c->sched, c->req_id);
        return; /* freed when the final event arrives */
    }
    call_free(c);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int load_limits(qd_api_t *api, const qd_config_t *cfg)
{
    char **keys = NULL;
    int n_keys = 0;
    int err = qd_config_read_keys(cfg, &keys, &n_keys);
    if (err)
        return err;
    unsigned char(*dig)[32] = NULL;
    if (n_keys && !(dig = qd_calloc((size_t)n_keys, sizeof *dig))) {
        qd_config_free_keys(keys);
        return QD_ENOMEM;
    }
    for (int i = 0; i < n_keys; i++)
        sha256(keys[i], strlen(keys[i]), dig[i]);
    qd_config_free_keys(keys);

    char **cors = NULL;
    int n_cors = 0;
    if (cfg->cors_origins && *cfg->cors_origins &&
        qd_config_read_keys(&(qd_config_t){.api_keys = cfg->cors_origins},
                            &cors, &n_cors)) {
        qd_free(dig);
        return QD_ENOMEM;
    }
    qd_free(api->keys);
    api->keys = dig;
    api->n_keys = n_keys;
    qd_config_free_keys(api->cors);
    api->cors = cors;
    api->n_cors = n_cors;
    api->lim.max_n = (int32_t)QD_MIN(cfg->max_n, QD_SCHED_MAX_N);
    api->lim.max_stop = (int32_t)QD_MIN(cfg->max_stop, QD_SCHED_MAX_STOP);
    api->lim.max_json_depth = (int32_t)cfg->max_json_depth;
    api->max_tokens_default = cfg->max_tokens_default;
    api->retry_after_s = cfg->retry_after_s;
    api->sse_keepalive_s = cfg->sse_keepalive_s;
    return 0;
}

int qd_api_reload(qd_api_t *api, const qd_config_t *cfg)
{
    return load_limits(api, cfg);
}

void qd_api_set_state(qd_api_t *api, qd_api_state_t st) { api->state = st; }
qd_api_state_t qd_api_get_state(const qd_api_t *api) { return api->state; }
int qd_api_n_active(const qd_api_t *api) { return api->n_calls; }

int qd_api_create(uv_loop_t *loop, const qd_config_t *cfg, qd_api_t **out)
{
    *out = NULL;
    /* JSON values are request memory too: route jansson through our
     * wrappers so allocation-failure tests reach every JSON allocation.
     * Process-wide; both sides are malloc/free underneath, so values made
     * before this call can still be freed after it. */
    qd_api_json_init();
    qd_api_t *api = qd_calloc(1, sizeof *api);
    if (!api)
        return QD_ENOMEM;
    api->loop = loop;
    pthread_mutex_init(&api->evmu, NULL);
    int err = load_limits(api, cfg);
    if (err) {
        pthread_mutex_destroy(&api->evmu);
        qd_free(api);
        return err;
    }
    static const double ttft_b[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                    2.5,  5,     10,   30,  60};
    static const double itl_b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,   0.25,   0.5,   1,    2.5};
    static const double e2e_b[] = {0.1, 0.25, 0.5, 1,  2.5, 5,
                                   10,  30,   60,  120, 300, 600};
    qd_hist_init(&api->ttft, ttft_b, (int)QD_ARRAY_SIZE(ttft_b));
    qd_hist_init(&api->itl, itl_b, (int)QD_ARRAY_SIZE(itl_b));
    qd_hist_init(&api->e2e, e2e_b, (int)QD_ARRAY_SIZE(e2e_b));
    uv_async_init(loop, &api->async, on_async);
    api->async.data = api;
    uv_timer_init(loop, &api->keepalive);
    api->keepalive.data = api;
    uv_timer_start(&api->keepalive, on_keepalive, 1000, 1000);
    api->handles_open = 1;
    *out = api;
    return 0;
}

static void on_close_noop(uv_handle_t *h) { (void)h; }

void qd_api_destroy(qd_api_t *api)
{
    if (!api)
        return;
    api->closing = 1;
    api->pool = NULL; /* destroyed before: final events release nothing */
    qd_api_drain_events(api);
    while (api->calls) {
        qd_api_call_t *c = api->calls;
        c->gen_active = 0;
        call_free(c);
    }
    if (api->handles_open) {
        uv_close((uv_handle_t *)&api->async, on_close_noop);
        uv_close((uv_handle_t *)&api->keepalive, on_close_noop);
        /* Let the loop finish the closes before the memory goes. */
        uv_run(api->loop, UV_RUN_NOWAIT);
    }
    for (int i = 0; i < api->n_models; i++) {
        qd_free(api->models[i].name);
        qd_free(api->models[i].refused);
        qd_jinja_free(api->models[i].tmpl);
    }
    qd_free(api->keys);
    qd_config_free_keys(api->cors);
    pthread_mutex_destroy(&api->evmu);
    qd_free(api);
}
