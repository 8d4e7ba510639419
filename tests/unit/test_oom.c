/*
 * test_oom.c — allocation failure at every allocation site of request
 * handling, through the real request path in-process.
 *
 * A qd_api_t on a libuv loop serves stories260K (from QD_SHARED, with a
 * chat template added so the Jinja renderer runs) from a model pool with
 * its scheduler and engine thread, exactly as `quantd serve` wires them,
 * minus the sockets. Each request goes parse → validate → chat template →
 * tokenize → schedule → decode → response JSON (or SSE). For k = 1, 2, ...
 * the k-th allocation after the request starts fails (one-shot, counting
 * every thread: the loop's, the engine's and jansson's, which goes
 * through qd_malloc), until a run completes without reaching k. Every run
 * must end in a clean answer — 200 with a well-formed body, or an error
 * in OpenAI's shape — and the daemon state must stay usable: the request
 * after each injected failure must succeed. A second pass makes every
 * allocation from the k-th on fail (persistent) while the request is being
 * admitted. Leaks are caught by LeakSanitizer under `make check-unit
 * SAN=1`, which this test also triggers explicitly.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "quantd/common.h"
#include "quantd/config.h"
#include "quantd/gguf.h"
#include "quantd/pool.h"
#include "quantd/sched.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define TEMPLATE                                                               \
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"    \
    "<<SYS>>{{ m['content'] | trim }}<</SYS>>{% else %}[{{ m['role'] | "      \
    "upper }}] {{ m['content'] }}{% endif %}{% endfor %}{% if "               \
    "add_generation_prompt %} [ASSISTANT]{% endif %}"

typedef struct {
    uv_loop_t loop;
    qd_config_t cfg;
    qd_api_t *api;
    qd_modelpool_t *pool;
    char path[512];
} fixture_t;

static fixture_t F;

/* stories260K with a chat template, written to QD_TMP. */
static int make_model(const char *out)
{
    const char *shared = getenv("QD_SHARED");
    char src[512];
    snprintf(src, sizeof src, "%s/gguf/stories260K.gguf", shared ? shared : "");
    if (!shared || access(src, R_OK))
        return -1;
    qd_gguf_t *g = NULL;
    cr_assert_eq(qd_gguf_open(src, &g), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_gguf_write_with_str(g, "tokenizer.chat_template", TEMPLATE, out), 0,
                 "%s", qd_errmsg());
    qd_gguf_close(g);
    return 0;
}

static void setup(void)
{
    memset(&F, 0, sizeof F);
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(F.path, sizeof F.path, "%s/oom-%d.gguf", tmp, (int)getpid());
    if (make_model(F.path))
        cr_skip_test("stories260K.gguf not found: QD_SHARED");
    qd_log_set_level(QD_LOG_OFF);
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    cr_assert_eq(qd_config_init(&F.cfg), 0);
    cr_assert_eq(qd_api_create(&F.loop, &F.cfg, &F.api), 0);
    qd_modelpool_params_t pp = {0};
    cr_assert_eq(qd_modelpool_create(&pp, &F.pool), 0);
    qd_modelpool_model_params_t mp = {.name = "m", .path = F.path};
    qd_sched_params_default(&mp.sched);
    mp.sched.n_ctx = 256;
    mp.sched.n_seq_max = 4;
    mp.sched.n_threads = 1;
    cr_assert_eq(qd_modelpool_add(F.pool, &mp), 0, "%s", qd_errmsg());
    qd_sched_t *s;
    cr_assert_eq(qd_modelpool_acquire(F.pool, "m", &s), 0, "%s", qd_errmsg());
    qd_modelpool_release(F.pool, "m");
    qd_api_set_pool(F.api, F.pool);
    cr_assert_eq(qd_api_add_model(F.api, "m", NULL), 0);
    qd_api_set_state(F.api, QD_API_READY);
}

static void teardown(void)
{
    if (!F.api)
        return;
    qd_fail_alloc_after(-1);
    qd_api_stop_loads(F.api);
    qd_modelpool_destroy(F.pool);
    qd_api_destroy(F.api);
    uv_run(&F.loop, UV_RUN_NOWAIT);
    uv_loop_close(&F.loop);
    qd_config_close(&F.cfg);
    unlink(F.path);
    F.api = NULL;
}

static const char *no_header(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return NULL;
}

static void on_wake(void *ctx) { ++*(int *)ctx; }

typedef struct {
    const char *path;
    const char *body;
} req_t;

static const req_t REQS[] = {
    {"/v1/chat/completions",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\" Be "
     "brief. \"},{\"role\":\"user\",\"content\":\"Once upon a time\"}],"
     "\"max_tokens\":3,\"n\":2,\"logprobs\":true,\"top_logprobs\":2,"
     "\"stop\":[\"zz\"],\"seed\":1}"},
    {"/v1/completions",
     "{\"model\":\"m\",\"prompt\":\"The cat\",\"max_tokens\":3,"
     "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
     "\"logprobs\":1,\"seed\":2}"},
    {"/v1/chat/completions",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
     "\"max_tokens\":2,\"stream\":true,\"seed\":3}"},
};

/* What a successful answer says, without what differs from run to run
 * (id, created, usage: the prefix cache changes cached_tokens): the
 * choices of a plain answer; the chunks of a stream, one per line. NULL
 * if a stream carries an error event (a clean failure). malloc'd. */
static char *essence(const qd_api_resp_t *r, const char *sse, const char *what)
{
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    cr_assert(out);
    const char *p = r->streaming ? sse : r->body;
    while (p && *p) {
        const char *data = r->streaming ? strstr(p, "data: ") : p;
        if (!data)
            break;
        if (r->streaming)
            data += 6;
        const char *end = r->streaming ? strstr(data, "\n\n") : NULL;
        size_t n = end ? (size_t)(end - data) : strlen(data);
        p = end ? end + 2 : NULL;
        if (n == 6 && !memcmp(data, "[DONE]", 6))
            continue;
        json_error_t je;
        json_t *j = json_loadb(data, n, 0, &je);
        cr_assert(json_is_object(j), "%s: not JSON (%s): %.*s", what, je.text,
                  (int)n, data);
        if (json_object_get(j, "error")) {
            json_decref(j);
            free(out);
            return NULL;
        }
        json_t *ch = json_object_get(j, "choices");
        cr_assert(json_is_array(ch), "%s: no choices: %.*s", what, (int)n,
                  data);
        char *d = json_dumps(ch, JSON_COMPACT | JSON_SORT_KEYS);
        cr_assert(d);
        size_t dl = strlen(d);
        cr_assert(len + dl + 2 < cap, "answer too long");
        memcpy(out + len, d, dl);
        len += dl;
        out[len++] = '\n';
        free(d);
        json_decref(j);
    }
    return out;
}

static char *reference[8];
static int answer_was_error; /* set by check_answer */

/* Whether a response is a complete, correct answer (the same as the
 * reference run's) or a clean error. */
static void check_answer(const qd_api_resp_t *r, const char *sse,
                         size_t sse_len, const char *what, int qi)
{
    if (r->streaming && r->status == 200) {
        cr_assert(r->failed ||
                      (sse_len >= 14 &&
                       !memcmp(sse + sse_len - 14, "data: [DONE]\n\n", 14)),
                  "%s: stream does not end with [DONE]: %.*s", what,
                  (int)sse_len, sse);
        if (r->failed) {
            answer_was_error = 1; /* the connection is cut */
            return;
        }
        char *e = essence(r, sse, what);
        answer_was_error = !e;
        if (!reference[qi])
            reference[qi] = e;
        else if (e)
            cr_assert_str_eq(e, reference[qi], "%s: the stream differs from "
                                               "the reference run:\n%s\nvs\n%s",
                             what, e, reference[qi]);
        if (e != reference[qi])
            free(e);
        return;
    }
    answer_was_error = r->status != 200;
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, 0, &je);
    /* jansson allocates through qd_malloc: the check itself must not be
     * subject to injection, which is off by now. */
    cr_assert(json_is_object(j), "%s: status %d, body not JSON (%s at %d): %s",
              what, r->status, je.text, je.position,
              r->body ? r->body : "(null)");
    if (r->status == 200) {
        cr_assert(json_is_array(json_object_get(j, "choices")), "%s: %s", what,
                  r->body);
        char *e = essence(r, NULL, what);
        cr_assert(e);
        if (!reference[qi])
            reference[qi] = e;
        else
            cr_assert_str_eq(e, reference[qi], "%s: the answer differs from "
                                               "the reference run:\n%s\nvs\n%s",
                             what, e, reference[qi]);
        if (e != reference[qi])
            free(e);
    } else {
        json_t *e = json_object_get(j, "error");
        cr_assert(json_is_object(e) &&
                      json_is_string(json_object_get(e, "message")),
                  "%s: status %d without an error object: %s", what,
                  r->status, r->body);
    }
    json_decref(j);
}

/*
 * Run one request to its end. inject > 0: the inject-th allocation after
 * the start fails (persistent: every one from it on, until the request
 * is admitted). Returns the status (0 if qd_api_call_start itself gave up
 * for lack of memory) and sets *hit if the injected failure happened.
 */
static int run(const req_t *q, int qi, long inject, int persistent,
               int *hit)
{
    qd_api_req_t req = {.method = "POST",
                        .path = q->path,
                        .header = no_header,
                        .body = q->body,
                        .body_len = strlen(q->body),
                        .peer = "test"};
    int woken = 0;
    unsigned long before = qd_alloc_failures_injected();
    if (inject > 0) {
        if (persistent)
            qd_fail_alloc_after(inject - 1);
        else
            qd_fail_alloc_nth(inject);
    }
    qd_api_call_t *c = qd_api_call_start(F.api, &req, on_wake, &woken);
    if (persistent)
        qd_fail_alloc_after(-1);
    qd_api_resp_t *r = c ? qd_api_call_resp(c) : NULL;
    char *sse = NULL;
    size_t sse_len = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (r && (!r->status || (r->streaming && !r->stream_ended) ||
                 r->s_off < r->s_len)) {
        if (r->streaming && r->s_len > r->s_off) {
            size_t n = r->s_len - r->s_off;
            char *ns = realloc(sse, sse_len + n + 1);
            cr_assert(ns);
            sse = ns;
            memcpy(sse + sse_len, r->sbuf + r->s_off, n);
            sse_len += n;
            sse[sse_len] = '\0';
            qd_api_call_consumed(c, n);
            continue;
        }
        uv_run(&F.loop, UV_RUN_NOWAIT);
        struct timespec ts = {0, 100000}, now;
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        cr_assert(now.tv_sec - t0.tv_sec < 20,
                  "request %s (inject %ld%s) never ended", q->path, inject,
                  persistent ? ", persistent" : "");
    }
    qd_fail_alloc_after(-1); /* one-shot not reached: disarm */
    *hit = qd_alloc_failures_injected() != before;
    int status = 0;
    if (r) {
        char what[96];
        snprintf(what, sizeof what, "%s inject %ld%s", q->path, inject,
                 persistent ? " persistent" : "");
        status = r->status;
        check_answer(r, sse, sse_len, what, qi);
        qd_api_call_release(c, 1);
    }
    free(sse);
    /* Events of a finished call may still be queued: deliver them. */
    uv_run(&F.loop, UV_RUN_NOWAIT);
    return status;
}

static void leak_check(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
                 "LeakSanitizer found leaks (see above)");
#endif
}

Test(oom, every_allocation_of_a_request, .init = setup, .fini = teardown,
     .timeout = 120)
{
    int hit;
    for (size_t qi = 0; qi < QD_ARRAY_SIZE(REQS); qi++) {
        const req_t *q = &REQS[qi];
        /* Warm-up: the template is compiled on the first request. */
        cr_assert_eq(run(q, (int)qi, 0, 0, &hit), 200);
        for (int persistent = 0; persistent <= 1; persistent++) {
            long k = 1, n_fail = 0;
            for (;; k++) {
                int st = run(q, (int)qi, k, persistent, &hit);
                if (!hit) {
                    cr_assert_eq(st, 200, "%s: %d with no failure injected",
                                 q->path, st);
                    break;
                }
                n_fail += st != 200 || answer_was_error;
                /* The daemon state is intact: the next request succeeds
                 * (checked every 16th k to keep the test short; the run
                 * that ends the loop checks it once more). */
                if (k % 16 == 0)
                    cr_assert_eq(run(q, (int)qi, 0, 0, &hit), 200,
                                 "%s: request after inject %ld%s failed",
                                 q->path,
                                 k, persistent ? " persistent" : "");
                cr_assert(k < 100000, "no end to allocations");
            }
            cr_log_info("%s%s: %ld allocation sites, %ld failed requests",
                        q->path, persistent ? " (persistent)" : "", k - 1,
                        n_fail);
            fprintf(stderr, "oom: %s%s: %ld allocations injected, %ld "
                            "requests failed cleanly\n",
                    q->path, persistent ? " (persistent)" : "", k - 1,
                    n_fail);
        }
    }
    for (size_t i = 0; i < QD_ARRAY_SIZE(reference); i++) {
        free(reference[i]);
        reference[i] = NULL;
    }
    leak_check();
}
