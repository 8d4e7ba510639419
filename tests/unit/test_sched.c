/* test_sched.c — the continuous-batching scheduler on stories260K: a
 * request's output does not depend on what it is batched with, the prefix
 * cache hits without changing the output, cancellation at every stage
 * frees the KV, a full queue answers QD_EFULL.
 *
 * Steps can be held: the scheduler calls its heartbeat after every step,
 * and the test's heartbeat blocks until the test hands out a step. */
#include "quantd/common.h"
#include "quantd/sched.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OUT 128

typedef struct {
    int32_t toks[MAX_OUT];
    int32_t n_toks;
    int n_finish;
    qd_finish_t finish;
    int done, error;
    int32_t completion, cached;
} out_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void on_event(const qd_event_t *ev, void *ud)
{
    out_t *o = ud;
    pthread_mutex_lock(&mu);
    switch (ev->type) {
    case QD_EV_TOKEN:
        if (ev->sample.tok >= 0 && o->n_toks < MAX_OUT)
            o->toks[o->n_toks++] = ev->sample.tok;
        break;
    case QD_EV_FINISH:
        o->n_finish++;
        o->finish = ev->finish;
        break;
    case QD_EV_DONE:
        o->done = 1;
        o->completion = ev->completion_tokens;
        o->cached = ev->cached_tokens;
        break;
    case QD_EV_ERROR:
        o->done = 1;
        o->error = ev->error;
        break;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void wait_done(out_t *o)
{
    pthread_mutex_lock(&mu);
    while (!o->done)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* ---- step gate ----------------------------------------------------------- */
typedef struct {
    int open;          /* 1: never block */
    int credits;       /* steps handed out */
    uint64_t entries;  /* heartbeat calls so far */
} gate_t;

static void gate_hb(void *ud)
{
    gate_t *g = ud;
    pthread_mutex_lock(&mu);
    g->entries++;
    pthread_cond_broadcast(&cv);
    while (!g->open && g->credits == 0)
        pthread_cond_wait(&cv, &mu);
    if (!g->open)
        g->credits--;
    pthread_mutex_unlock(&mu);
}

/* Let the engine thread through one heartbeat and wait until it is back. */
static void gate_step(gate_t *g)
{
    pthread_mutex_lock(&mu);
    uint64_t e0 = g->entries;
    g->credits++;
    pthread_cond_broadcast(&cv);
    while (g->entries <= e0)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&mu);
    g->open = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Wait until the engine thread blocks in the gate. */
static void gate_wait_blocked(gate_t *g, uint64_t after)
{
    pthread_mutex_lock(&mu);
    while (g->entries <= after)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* ---- fixtures ------------------------------------------------------------ */
static qd_model_t *load_stories(void)
{
    const char *sh = getenv("QD_SHARED");
    if (!sh || !*sh)
        cr_skip_test("test data not found: QD_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", sh);
    FILE *f = fopen(path, "rb");
    if (!f)
        cr_skip_test("test data not found: %s", path);
    fclose(f);
    qd_model_t *m = NULL;
    cr_assert_eq(qd_model_load(path, &m), 0, "%s", qd_errmsg());
    return m;
}

static qd_sched_t *mk_sched(const qd_model_t *m, int32_t n_seq,
                            int32_t n_batch, int32_t queue_max, gate_t *g)
{
    qd_sched_params_t p;
    qd_sched_params_default(&p);
    p.n_seq_max = n_seq;
    p.n_batch = n_batch;
    p.queue_max = queue_max;
    p.n_ctx = 256;
    p.kv_type = QD_KV_F32;
    p.n_threads = 2;
    if (g) {
        p.heartbeat = gate_hb;
        p.heartbeat_ud = g;
        p.heartbeat_ms = 5; /* idle heartbeats too: the gate holds them */
    }
    qd_sched_t *s = NULL;
    cr_assert_eq(qd_sched_create(m, &p, &s), 0, "%s", qd_errmsg());
    return s;
}

static void mk_prompt(int32_t *t, int32_t n, int32_t which)
{
    t[0] = 1; /* BOS */
    for (int32_t i = 1; i < n; i++)
        t[i] = 3 + (int32_t)((i * 31 + which * 97) % 500);
}

static uint64_t submit(qd_sched_t *s, const int32_t *prompt, int32_t n,
                       int32_t max_tokens, float temp, uint64_t seed,
                       out_t *o)
{
    qd_gen_params_t g = {0};
    g.prompt = prompt;
    g.n_prompt = n;
    g.max_tokens = max_tokens;
    g.n = 1;
    qd_sampling_params_default(&g.sampling);
    g.sampling.temperature = temp;
    g.sampling.seed = seed;
    g.ignore_eos = 1;
    uint64_t id = 0;
    int rc = qd_sched_submit(s, &g, on_event, o, &id);
    cr_assert_eq(rc, 0, "submit: %s", qd_errmsg());
    return id;
}

static void wait_idle(qd_sched_t *s)
{
    qd_sched_stats_t st;
    for (int i = 0; i < 5000; i++) {
        qd_sched_stats(s, &st);
        if (st.running == 0 && st.queued == 0 && st.seqs_used == 0)
            return;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert_fail("scheduler did not become idle");
}

static void expect_kv_free(qd_sched_t *s)
{
    wait_idle(s);
    qd_sched_stats_t st;
    qd_sched_stats(s, &st);
    cr_expect_eq(st.kv_blocks_used, 0, "%d KV blocks still held",
                 st.kv_blocks_used);
}

/* ---- batching invariance ----------------------------------------------- */

static void alone_vs_batched(float temp)
{
    qd_model_t *m = load_stories();
    int32_t prompts[8][40];
    for (int i = 0; i < 8; i++)
        mk_prompt(prompts[i], 20 + 2 * i, i);

    static out_t alone, batched[8], again;
    memset(&alone, 0, sizeof alone);
    memset(batched, 0, sizeof batched);
    memset(&again, 0, sizeof again);

    qd_sched_t *a = mk_sched(m, 8, 64, 16, NULL);
    submit(a, prompts[3], 26, 24, temp, 42, &alone);
    wait_done(&alone);
    qd_sched_destroy(a);

    /* Fresh scheduler (no cached prefix): prompt 3 amid 7 others, with a
     * small step budget so prefill chunks and decodes mix. */
    qd_sched_t *b = mk_sched(m, 8, 24, 16, NULL);
    for (int i = 0; i < 8; i++)
        submit(b, prompts[i], 20 + 2 * i, 24, temp, 42, &batched[i]);
    for (int i = 0; i < 8; i++)
        wait_done(&batched[i]);
    cr_assert_eq(alone.error, 0);
    cr_assert_eq(batched[3].error, 0);
    cr_assert_eq(alone.n_toks, 24);
    cr_assert_eq(batched[3].n_toks, 24);
    cr_expect_eq(batched[3].cached, 0);
    cr_expect_arr_eq(alone.toks, batched[3].toks, 24 * sizeof(int32_t),
                     "output changed when batched with 7 others");
    /* Once more on b: the prompt's full block comes from the cache. */
    expect_kv_free(b);
    submit(b, prompts[3], 26, 24, temp, 42, &again);
    wait_done(&again);
    cr_expect_eq(again.cached, 16, "cached_tokens %d", again.cached);
    cr_expect_arr_eq(alone.toks, again.toks, 24 * sizeof(int32_t),
                     "output changed with a prefix cache hit");
    expect_kv_free(b);
    qd_sched_destroy(b);
    qd_model_free(m);
}

Test(sched, greedy_alone_equals_batched) { alone_vs_batched(0.0f); }
Test(sched, seeded_alone_equals_batched) { alone_vs_batched(0.9f); }

/* Multi-turn: the second turn repeats the first turn's prompt and answer,
 * so it adopts the blocks of both. */
Test(sched, multi_turn_hits_prompt_and_answer)
{
    qd_model_t *m = load_stories();
    qd_sched_t *s = mk_sched(m, 2, 64, 4, NULL);
    static out_t t1, t2;
    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    int32_t p[128];
    mk_prompt(p, 30, 5);
    submit(s, p, 30, 40, 0.0f, 1, &t1);
    wait_done(&t1);
    cr_assert_eq(t1.n_toks, 40);
    /* turn 2 = turn 1 prompt + answer (all but the last token, which never
     * entered the cache) + new user tokens */
    memcpy(p + 30, t1.toks, 39 * sizeof(int32_t));
    mk_prompt(p + 69, 20, 9);
    submit(s, p, 89, 8, 0.0f, 1, &t2);
    wait_done(&t2);
    cr_expect_eq(t2.cached, 64, "cached_tokens %d", t2.cached);
    expect_kv_free(s);
    qd_sched_destroy(s);
    qd_model_free(m);
}

/* ---- cancellation ------------------------------------------------------ */

Test(sched, cancel_queued_prefill_decode_frees_kv)
{
    qd_model_t *m = load_stories();
    static gate_t g;
    memset(&g, 0, sizeof g);
    /* One sequence slot, 8 tokens per step: a 100-token prompt prefills
     * over 13 steps and a second request has to queue. */
    qd_sched_t *s = mk_sched(m, 1, 8, 4, &g);
    static out_t pre, queued, dec;
    memset(&pre, 0, sizeof pre);
    memset(&queued, 0, sizeof queued);
    memset(&dec, 0, sizeof dec);
    int32_t p[100];
    mk_prompt(p, 100, 1);

    uint64_t e0 = g.entries;
    uint64_t id_pre = submit(s, p, 100, 50, 0.0f, 1, &pre);
    uint64_t id_q = submit(s, p, 50, 50, 0.0f, 1, &queued);
    gate_wait_blocked(&g, e0);
    gate_step(&g); /* admits pre, first chunk (or the idle wake-up) */
    gate_step(&g);
    gate_step(&g);
    qd_sched_stats_t st;
    qd_sched_stats(s, &st);
    cr_assert_eq(st.running, 1);
    cr_assert_eq(st.queued, 1);
    cr_assert(st.tokens_in > 0 && st.tokens_in < 100, "tokens_in %llu",
              (unsigned long long)st.tokens_in);
    cr_assert(st.kv_blocks_used > 0);
    qd_sched_cancel(s, id_q);   /* queued */
    qd_sched_cancel(s, id_pre); /* prefilling */
    gate_open(&g);
    wait_done(&pre);
    wait_done(&queued);
    cr_expect_eq(pre.finish, QD_FINISH_CANCELLED);
    cr_expect_eq(pre.completion, 0);
    cr_expect_eq(queued.finish, QD_FINISH_CANCELLED);
    cr_expect_eq(queued.n_finish, 1);
    cr_expect_eq(queued.completion, 0);
    expect_kv_free(s);

    /* Decoding: cancel after the first tokens arrived. */
    uint64_t id_dec = submit(s, p, 20, 200, 0.0f, 1, &dec);
    pthread_mutex_lock(&mu);
    while (dec.n_toks < 2 && !dec.done)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    qd_sched_cancel(s, id_dec);
    wait_done(&dec);
    cr_expect_eq(dec.finish, QD_FINISH_CANCELLED);
    cr_expect(dec.completion >= 2 && dec.completion < 200);
    expect_kv_free(s);
    qd_sched_destroy(s);
    qd_model_free(m);
}

Test(sched, queue_full_is_efull)
{
    qd_model_t *m = load_stories();
    static gate_t g;
    memset(&g, 0, sizeof g);
    qd_sched_t *s = mk_sched(m, 1, 8, 1, &g);
    static out_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int32_t p[10];
    mk_prompt(p, 10, 2);
    /* The idle engine is held in its heartbeat: nothing is admitted. */
    gate_wait_blocked(&g, 0);
    submit(s, p, 10, 4, 0.0f, 1, &a);
    qd_gen_params_t gp = {0};
    gp.prompt = p;
    gp.n_prompt = 10;
    gp.max_tokens = 4;
    gp.n = 1;
    qd_sampling_params_default(&gp.sampling);
    uint64_t id;
    cr_expect_eq(qd_sched_submit(s, &gp, on_event, &b, &id), QD_EFULL);
    gate_open(&g);
    wait_done(&a);
    cr_expect_eq(a.error, 0);
    expect_kv_free(s);
    qd_sched_destroy(s);
    qd_model_free(m);
}

/* ---- model pool (src/pool) ---------------------------------------------- */
#include "quantd/pool.h"

static const char *stories_path(char *buf, size_t n)
{
    const char *sh = getenv("QD_SHARED");
    if (!sh || !*sh)
        cr_skip_test("test data not found: QD_SHARED");
    snprintf(buf, n, "%s/gguf/stories260K.gguf", sh);
    FILE *f = fopen(buf, "rb");
    if (!f)
        cr_skip_test("test data not found: %s", buf);
    fclose(f);
    return buf;
}

static qd_modelpool_model_params_t pool_model(const char *name, const char *path)
{
    qd_modelpool_model_params_t mp = {.name = name, .path = path};
    qd_sched_params_default(&mp.sched);
    mp.sched.n_ctx = 256;
    mp.sched.n_seq_max = 2;
    mp.sched.n_batch = 32;
    mp.sched.n_threads = 1;
    return mp;
}

Test(pool, estimate_budget_lazy_load_and_idle_unload)
{
    char path[1024];
    stories_path(path, sizeof path);
    qd_modelpool_model_params_t a = pool_model("a", path), b = pool_model("b", path);
    size_t est = 0;
    cr_assert_eq(qd_modelpool_estimate(path, &a.sched, &est), 0, "%s",
                 qd_errmsg());
    /* stories260K: ~1 MiB of F32 weights; KV 256 x 2 seqs x 5 layers x
     * 2 x 64 x f16 = 640 KiB; logits 32 x 512 floats. */
    cr_expect(est > 1000000 && est < 4000000, "estimate %zu", est);

    /* Room for one model at a time. */
    qd_modelpool_t *pool = NULL;
    qd_modelpool_params_t pp = {.mem_budget = est + est / 2,
                                .idle_unload_ms = 1000};
    cr_assert_eq(qd_modelpool_create(&pp, &pool), 0);
    cr_assert_eq(qd_modelpool_add(pool, &a), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_modelpool_add(pool, &b), 0);
    cr_expect_eq(qd_modelpool_add(pool, &a), QD_EINVAL, "duplicate name");
    qd_modelpool_model_params_t big = pool_model("big", path);
    big.sched.n_ctx = 512;
    big.sched.n_seq_max = 64; /* KV alone over the budget */
    cr_expect_eq(qd_modelpool_add(pool, &big), QD_ETOOBIG);
    qd_modelpool_model_params_t missing = pool_model("x", "/nonexistent.gguf");
    cr_expect_neq(qd_modelpool_add(pool, &missing), 0);

    qd_modelpool_model_info_t info;
    cr_assert_eq(qd_modelpool_info(pool, "a", &info), 0);
    cr_expect_eq(info.loaded, 0, "nothing loads before its first request");
    qd_sched_t *sa = NULL, *sb = NULL;
    cr_expect_eq(qd_modelpool_acquire(pool, "nope", &sa), QD_ENOTFOUND);
    cr_assert_eq(qd_modelpool_acquire(pool, "a", &sa), 0, "%s", qd_errmsg());
    cr_assert_not_null(sa);
    /* The scheduler works. */
    static out_t o;
    memset(&o, 0, sizeof o);
    int32_t p[12];
    mk_prompt(p, 12, 4);
    submit(sa, p, 12, 5, 0.0f, 1, &o);
    wait_done(&o);
    cr_expect_eq(o.n_toks, 5);
    /* b does not fit while a is in use. */
    cr_expect_eq(qd_modelpool_acquire(pool, "b", &sb), QD_EBUSY);
    qd_modelpool_release(pool, "a");
    /* Now a is idle: it is unloaded to make room for b. */
    cr_assert_eq(qd_modelpool_acquire(pool, "b", &sb), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_modelpool_info(pool, "a", &info), 0);
    cr_expect_eq(info.loaded, 0);
    cr_expect_eq(qd_modelpool_bytes_loaded(pool), est);
    /* Idle unload: not while in use, not before the idle time. */
    cr_expect_eq(qd_modelpool_reap(pool, qd_now_ns() + 5000000000ULL), 0);
    qd_modelpool_release(pool, "b");
    cr_expect_eq(qd_modelpool_reap(pool, qd_now_ns()), 0);
    cr_expect_eq(qd_modelpool_reap(pool, qd_now_ns() + 2000000000ULL), 1);
    cr_assert_eq(qd_modelpool_info(pool, "b", &info), 0);
    cr_expect_eq(info.loaded, 0);
    cr_expect_eq(qd_modelpool_bytes_loaded(pool), 0);
    qd_modelpool_destroy(pool);
}
