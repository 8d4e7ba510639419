/*
 * test_engine.c — the forward pass against llama.cpp, batching, KV sharing
 * and model validation.
 *
 * Conformance: $QD_SHARED/reference/forward/<model>.json hold llama.cpp's
 * greedy tokens and top-10 log-probabilities per step (README there,
 * section 2). We teacher-force: the prompt as one batch, then each recorded
 * token as a one-token decode on the KV cache, and compare at every step our
 * argmax with the recorded token and our log-softmax of the recorded top-10
 * ids with theirs.
 */
#include "quantd/common.h"
#include "quantd/engine.h"
#include "quantd/gguf.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define MAX_TOK 128

static const char *shared_dir(void)
{
    const char *s = getenv("QD_SHARED");
    if (!s || !*s)
        cr_skip_test("test data not found: QD_SHARED is not set");
    return s;
}

/* Under AddressSanitizer (make check-unit SAN=1) fewer steps are checked. */
static int under_san(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#else
    return 0;
#endif
}

static qd_model_t *load_model(const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference/forward/%s", shared_dir(), file);
    FILE *f = fopen(path, "rb");
    if (!f)
        cr_skip_test("test data not found: %s", path);
    fclose(f);
    qd_model_t *m = NULL;
    int rc = qd_model_load(path, &m);
    cr_assert_eq(rc, 0, "load %s: %s: %s", file, qd_strerror(rc), qd_errmsg());
    return m;
}

/* n_ubatch 0: the whole batch in one pass. */
static qd_ctx_t *make_ctx_ub(const qd_model_t *m, qd_kv_type_t kv, int n_seq,
                             int n_batch, size_t kv_bytes, int n_threads,
                             int n_ubatch)
{
    qd_ctx_params_t p;
    qd_ctx_params_default(&p);
    p.n_ctx = 256;
    p.n_batch = n_batch;
    p.n_ubatch = n_ubatch;
    p.n_seq_max = n_seq;
    p.kv_type = kv;
    p.kv_bytes = kv_bytes;
    p.n_threads = n_threads;
    qd_ctx_t *c = NULL;
    int rc = qd_ctx_create(m, &p, &c);
    cr_assert_eq(rc, 0, "ctx: %s", qd_errmsg());
    return c;
}

static qd_ctx_t *make_ctx(const qd_model_t *m, qd_kv_type_t kv, int n_seq,
                          int n_batch, size_t kv_bytes, int n_threads)
{
    return make_ctx_ub(m, kv, n_seq, n_batch, kv_bytes, n_threads, 0);
}

/* Decode toks[0..n) of one sequence from position p0; logits of the last. */
static int decode_seq(qd_ctx_t *c, int32_t seq, const int32_t *toks, int n,
                      int32_t p0)
{
    int32_t pos[MAX_TOK], seqs[MAX_TOK], t[MAX_TOK];
    int8_t lg[MAX_TOK];
    cr_assert_leq(n, MAX_TOK);
    for (int i = 0; i < n; i++) {
        t[i] = toks[i];
        pos[i] = p0 + i;
        seqs[i] = seq;
        lg[i] = i == n - 1;
    }
    qd_batch_t b = {
        .n_tokens = n, .toks = t, .pos = pos, .seq = seqs, .logits = lg};
    return qd_ctx_decode(c, &b);
}

/* ---- conformance ------------------------------------------------------ */

typedef struct {
    int n_steps;
    int n_top1;         /* steps whose argmax is the recorded token */
    double max_dlp;     /* max |Δ logprob| over all top-10 entries */
    int prompts_all_ok; /* prompts with every step's argmax matching */
    int n_prompts;
} conf_t;

static void int_array(json_t *a, int32_t *out, int *n)
{
    *n = (int)json_array_size(a);
    cr_assert_leq(*n, MAX_TOK);
    for (int i = 0; i < *n; i++)
        out[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
}

static int32_t argmax(const float *l, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return b;
}

static void compare_step(const float *l, int n_vocab, json_t *step, conf_t *cf,
                         int *all_ok)
{
    double mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        mx = fmax(mx, l[i]);
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    int32_t want = (int32_t)json_integer_value(json_object_get(step, "token"));
    cf->n_steps++;
    if (argmax(l, n_vocab) == want)
        cf->n_top1++;
    else
        *all_ok = 0;
    json_t *top = json_object_get(step, "top");
    for (size_t j = 0; j < json_array_size(top); j++) {
        json_t *e = json_array_get(top, j);
        int32_t id = (int32_t)json_integer_value(json_array_get(e, 0));
        double lp = json_number_value(json_array_get(e, 1));
        cr_assert(id >= 0 && id < n_vocab);
        double d = fabs(((double)l[id] - lse) - lp);
        if (d > cf->max_dlp)
            cf->max_dlp = d;
    }
}

/* Teacher-force every prompt of the run with KV type kv. */
static conf_t conform(const char *model, const char *run_kv, qd_kv_type_t kv)
{
    char jpath[1024];
    snprintf(jpath, sizeof jpath, "%s/reference/forward/%s.json", shared_dir(),
             model);
    json_error_t err;
    json_t *root = json_load_file(jpath, 0, &err);
    if (!root)
        cr_skip_test("test data not found: %s (%s)", jpath, err.text);
    char gpath[256];
    snprintf(gpath, sizeof gpath, "%s.gguf", model);
    qd_model_t *m = load_model(gpath);
    int n_vocab = qd_model_hparams(m)->n_vocab;
    qd_ctx_t *c = make_ctx(m, kv, 1, 64, 0, 2);
    conf_t cf = {0};
    json_t *runs = json_object_get(root, "runs");
    json_t *run = NULL;
    for (size_t i = 0; i < json_array_size(runs); i++) {
        json_t *r = json_array_get(runs, i);
        if (!strcmp(json_string_value(json_object_get(r, "kv_cache_type")),
                    run_kv))
            run = r;
    }
    cr_assert_not_null(run, "%s: no run with kv %s", model, run_kv);
    json_t *prompts = json_object_get(run, "prompts");
    size_t n_prompts = json_array_size(prompts);
    for (size_t pi = 0; pi < n_prompts; pi++) {
        json_t *pr = json_array_get(prompts, pi);
        int32_t ptoks[MAX_TOK], gtoks[MAX_TOK];
        int np, ng;
        int_array(json_object_get(pr, "prompt_tokens"), ptoks, &np);
        int_array(json_object_get(pr, "generated_tokens"), gtoks, &ng);
        json_t *steps = json_object_get(pr, "steps");
        cr_assert_eq((int)json_array_size(steps), ng);
        if (under_san() && ng > 8)
            ng = 8; /* keep the sanitizer run short */
        qd_kv_seq_clear(qd_ctx_kv(c), 0);
        cr_assert_eq(decode_seq(c, 0, ptoks, np, 0), 0, "%s", qd_errmsg());
        int all_ok = 1;
        for (int i = 0; i < ng; i++) {
            compare_step(qd_ctx_logits(c, 0), n_vocab,
                         json_array_get(steps, (size_t)i), &cf, &all_ok);
            if (i + 1 < ng)
                cr_assert_eq(decode_seq(c, 0, &gtoks[i], 1, np + i), 0);
        }
        cf.prompts_all_ok += all_ok;
        cf.n_prompts++;
    }
    fprintf(stderr,
            "conformance %-22s kv %s (ours %s): top-1 %d/%d (%.1f%%), "
            "max |dlogprob| %.3g, prompts all-equal %d/%d\n",
            model, run_kv,
            kv == QD_KV_F16 ? "f16" : kv == QD_KV_Q8_0 ? "q8_0" : "f32",
            cf.n_top1,
            cf.n_steps, 100.0 * cf.n_top1 / cf.n_steps, cf.max_dlp,
            cf.prompts_all_ok, cf.n_prompts);
    qd_ctx_free(c);
    qd_model_free(m);
    json_decref(root);
    return cf;
}

static void expect_exact(const char *model, const char *kv_name,
                         qd_kv_type_t kv, double tol)
{
    conf_t cf = conform(model, kv_name, kv);
    cr_expect_eq(cf.n_top1, cf.n_steps,
                 "%s kv %s: greedy tokens differ at "
                 "%d of %d steps",
                 model, kv_name, cf.n_steps - cf.n_top1, cf.n_steps);
    cr_expect_leq(cf.max_dlp, tol, "%s kv %s: max |dlogprob| %g > %g", model,
                  kv_name, cf.max_dlp, tol);
}

Test(engine, conformance_f32_models_f32_kv)
{
    expect_exact("stories260K-F32", "f32", QD_KV_F32, 1e-3);
    expect_exact("synth-llama31-F32", "f32", QD_KV_F32, 1e-3);
    expect_exact("synth-qwen2-F32", "f32", QD_KV_F32, 1e-3);
}

Test(engine, conformance_f32_models_f16_kv)
{
    /* With emulated roundings an independent implementation was within
     * 1.9e-2 of these runs (reference README); we assert the tokens and a
     * bound of that size. */
    expect_exact("stories260K-F32", "f16", QD_KV_F16, 5e-2);
    expect_exact("synth-llama31-F32", "f16", QD_KV_F16, 5e-2);
    expect_exact("synth-qwen2-F32", "f16", QD_KV_F16, 5e-2);
}

/* log-softmax of l into out (double). */
static void log_softmax(const float *l, int n, double *out)
{
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, l[i]);
    for (int i = 0; i < n; i++)
        sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++)
        out[i] = (double)l[i] - lse;
}

/* q8_0 KV against the recorded f32-KV llama.cpp run (tokens, top-10
 * log-probs) and against our own f32-KV run (every log-prob), teacher-forced
 * on the recorded tokens. */
static void kv_vs_f32_check(const char *model, qd_kv_type_t kvt,
                            double min_top1, double tol_all, double tol_mean)
{
    char jpath[1024];
    snprintf(jpath, sizeof jpath, "%s/reference/forward/%s.json", shared_dir(),
             model);
    json_error_t err;
    json_t *root = json_load_file(jpath, 0, &err);
    if (!root)
        cr_skip_test("test data not found: %s (%s)", jpath, err.text);
    char gpath[256];
    snprintf(gpath, sizeof gpath, "%s.gguf", model);
    qd_model_t *m = load_model(gpath);
    int nv = qd_model_hparams(m)->n_vocab;
    cr_assert_leq(nv, 4096);
    qd_ctx_t *c8 = make_ctx(m, kvt, 1, 64, 0, 2);
    qd_ctx_t *c32 = make_ctx(m, QD_KV_F32, 1, 64, 0, 2);
    json_t *runs = json_object_get(root, "runs"), *run = NULL;
    for (size_t i = 0; i < json_array_size(runs); i++) {
        json_t *r = json_array_get(runs, i);
        if (!strcmp(json_string_value(json_object_get(r, "kv_cache_type")),
                    "f32"))
            run = r;
    }
    cr_assert_not_null(run, "%s: no f32 run", model);
    static double lp8[4096], lp32[4096];
    conf_t cf = {0};
    int same_argmax = 0;
    double max_ours = 0.0, max_tok = 0.0, sum_tok = 0.0;
    json_t *prompts = json_object_get(run, "prompts");
    for (size_t pi = 0; pi < json_array_size(prompts); pi++) {
        json_t *pr = json_array_get(prompts, pi);
        int32_t ptoks[MAX_TOK], gtoks[MAX_TOK];
        int np, ng;
        int_array(json_object_get(pr, "prompt_tokens"), ptoks, &np);
        int_array(json_object_get(pr, "generated_tokens"), gtoks, &ng);
        json_t *steps = json_object_get(pr, "steps");
        if (under_san() && ng > 8)
            ng = 8;
        qd_kv_seq_clear(qd_ctx_kv(c8), 0);
        qd_kv_seq_clear(qd_ctx_kv(c32), 0);
        cr_assert_eq(decode_seq(c8, 0, ptoks, np, 0), 0, "%s", qd_errmsg());
        cr_assert_eq(decode_seq(c32, 0, ptoks, np, 0), 0, "%s", qd_errmsg());
        int all_ok = 1;
        for (int i = 0; i < ng; i++) {
            const float *l8 = qd_ctx_logits(c8, 0), *l32 = qd_ctx_logits(c32, 0);
            compare_step(l8, nv, json_array_get(steps, (size_t)i), &cf,
                         &all_ok);
            same_argmax += argmax(l8, nv) == argmax(l32, nv);
            log_softmax(l8, nv, lp8);
            log_softmax(l32, nv, lp32);
            for (int j = 0; j < nv; j++)
                max_ours = fmax(max_ours, fabs(lp8[j] - lp32[j]));
            int32_t a = argmax(l32, nv);
            max_tok = fmax(max_tok, fabs(lp8[a] - lp32[a]));
            sum_tok += fabs(lp8[a] - lp32[a]);
            if (i + 1 < ng) {
                cr_assert_eq(decode_seq(c8, 0, &gtoks[i], 1, np + i), 0);
                cr_assert_eq(decode_seq(c32, 0, &gtoks[i], 1, np + i), 0);
            }
        }
        cf.prompts_all_ok += all_ok;
        cf.n_prompts++;
    }
    double top1 = (double)cf.n_top1 / cf.n_steps;
    fprintf(stderr,
            "%s kv %-18s: top-1 vs recorded %d/%d (%.1f%%), argmax = our "
            "f32-kv %d/%d; |dlogprob| vs our f32 kv: max %.3g (all vocab), "
            "of the f32 argmax max %.3g mean %.3g; vs llama.cpp f32 kv "
            "%.3g (top-10)\n",
            kvt == QD_KV_Q8_0 ? "q8_0" : "f16", model, cf.n_top1, cf.n_steps,
            100.0 * top1, same_argmax, cf.n_steps, max_ours, max_tok,
            sum_tok / cf.n_steps, cf.max_dlp);
    cr_expect_geq(top1, min_top1, "%s: q8_0 kv top-1 %.3f < %.3f", model,
                  top1, min_top1);
    cr_expect_leq(max_ours, tol_all, "%s: kv |dlogprob| %g > %g", model,
                  max_ours, tol_all);
    cr_expect_leq(sum_tok / cf.n_steps, tol_mean,
                  "%s: kv mean |dlogprob| of the argmax %g > %g", model,
                  sum_tok / cf.n_steps, tol_mean);
    cr_expect_gt(max_ours, 0.0, "kv type %d gave exactly the f32 kv result",
                 (int)kvt);
    qd_ctx_free(c8);
    qd_ctx_free(c32);
    qd_model_free(m);
    json_decref(root);
}

Test(engine, conformance_f32_models_q8_0_kv)
{
    /* Measured (x86, AVX2 path): q8_0 top-1 100% / 99% (one near-tie step of
     * qwen2), mean |dlogprob| of the chosen token 1.5e-2 / 1.2e-2, max over
     * the whole vocabulary 1.4 / 0.9 -- about 20x the f16 cache's error on
     * these random-weight models (0.07 / 0.06), as Q8_0's step (amax/127)
     * is ~16x fp16's relative step. Bounds with a 2x margin. */
    kv_vs_f32_check("synth-llama31-F32", QD_KV_Q8_0, 0.95, 3.0, 0.04);
    kv_vs_f32_check("synth-qwen2-F32", QD_KV_Q8_0, 0.95, 3.0, 0.04);
    /* the f16 cache, for scale */
    kv_vs_f32_check("synth-llama31-F32", QD_KV_F16, 0.99, 0.15, 0.002);
}

/* head_dim 8 cannot hold 32-value blocks: refused at creation, by name. */
Test(engine, q8_0_kv_needs_head_dim_multiple_of_32)
{
    qd_model_t *m = load_model("stories260K-F32.gguf");
    cr_assert_eq(qd_model_hparams(m)->head_dim, 8);
    qd_ctx_params_t p;
    qd_ctx_params_default(&p);
    p.n_ctx = 64;
    p.kv_type = QD_KV_Q8_0;
    p.n_threads = 1;
    qd_ctx_t *c = (qd_ctx_t *)&p; /* must come back NULL */
    int rc = qd_ctx_create(m, &p, &c);
    cr_expect_eq(rc, QD_EUNSUPPORTED, "rc %d", rc);
    cr_expect_null(c);
    cr_expect_not_null(strstr(qd_errmsg(), "head_dim is 8"), "errmsg: %s",
                       qd_errmsg());
    fprintf(stderr, "q8_0 kv on stories260K: %s\n", qd_errmsg());
    qd_model_free(m);
}

/* The same KV budget holds ~1.9x the f16 positions with q8_0. */
Test(engine, q8_0_kv_blocks_hold_more_positions)
{
    static const char *files[] = {"synth-llama31-F32.gguf",
                                  "synth-qwen2-F32.gguf"};
    for (int i = 0; i < 2; i++) {
        qd_model_t *m = load_model(files[i]);
        size_t budget = (size_t)4 << 20;
        qd_ctx_t *c16 = make_ctx(m, QD_KV_F16, 1, 8, budget, 1);
        qd_ctx_t *c8 = make_ctx(m, QD_KV_Q8_0, 1, 8, budget, 1);
        qd_kv_t *k16 = qd_ctx_kv(c16), *k8 = qd_ctx_kv(c8);
        double ratio = (double)qd_kv_block_bytes(k16) / qd_kv_block_bytes(k8);
        fprintf(stderr,
                "%s: kv block bytes f16 %zu, q8_0 %zu (%.3fx); 4 MiB holds "
                "%d vs %d blocks\n",
                files[i], qd_kv_block_bytes(k16), qd_kv_block_bytes(k8), ratio,
                qd_kv_blocks_total(k16), qd_kv_blocks_total(k8));
        cr_expect_geq(ratio, 1.85);
        cr_expect_geq(qd_kv_blocks_total(k8),
                      (int32_t)(1.85 * qd_kv_blocks_total(k16)));
        qd_ctx_free(c16);
        qd_ctx_free(c8);
        qd_model_free(m);
    }
}

Test(engine, conformance_stories_quantized)
{
    static const char *models[] = {"stories260K-Q8_0", "stories260K-Q4_0",
                                   "stories260K-Q4_K_M"};
    /* f32 KV: tokens and 0.25 (the brief's bound; we measure < 0.1). f16
     * KV: the fp16 roundings of q, K, V and the probabilities add their own
     * activation-rounding flips (an independent float64 emulation was 0.17
     * off, a plain one 0.24); we assert the tokens and 0.5. */
    for (size_t i = 0; i < QD_ARRAY_SIZE(models); i++) {
        expect_exact(models[i], "f32", QD_KV_F32, 0.25);
        expect_exact(models[i], "f16", QD_KV_F16, 0.5);
    }
}

Test(engine, conformance_synthetic_quantized)
{
    static const char *models[] = {"synth-llama31-Q8_0", "synth-llama31-Q4_K_M",
                                   "synth-qwen2-Q8_0", "synth-qwen2-Q4_K_M"};
    for (size_t i = 0; i < QD_ARRAY_SIZE(models); i++) {
        for (int k = 0; k < 2; k++) {
            conf_t cf = conform(models[i], k ? "f16" : "f32",
                                k ? QD_KV_F16 : QD_KV_F32);
            cr_expect_geq(cf.n_top1 * 10, cf.n_steps * 9,
                          "%s kv %s: top-1 agreement %d/%d below 90%%",
                          models[i], k ? "f16" : "f32", cf.n_top1, cf.n_steps);
        }
    }
}

/* ---- batching and KV sharing ------------------------------------------ */

static const int32_t prompt_a[] = {1, 403, 407, 261, 378};
static const int32_t prompt_b[] = {1,   450, 349, 309, 272, 285, 302,
                                   365, 267, 310, 283, 394, 268, 331,
                                   259, 298, 300, 411, 275, 280};
static const int32_t prompt_c[] = {1, 334};
#define N_CONT 5
static const int32_t cont[N_CONT] = {432, 383, 286, 261, 376};

static double max_diff(const float *a, const float *b, int n, int *bitwise)
{
    double d = 0.0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        if (memcmp(&a[i], &b[i], sizeof(float)))
            *bitwise = 0;
    }
    return d;
}

Test(engine, batch_equivalence)
{
    qd_model_t *m = load_model("synth-llama31-F32.gguf");
    int nv = qd_model_hparams(m)->n_vocab;
    const int32_t *ps[3] = {prompt_a, prompt_b, prompt_c};
    int ns[3] = {QD_ARRAY_SIZE(prompt_a), QD_ARRAY_SIZE(prompt_b),
                 QD_ARRAY_SIZE(prompt_c)};
    static const qd_kv_type_t kvs[] = {QD_KV_F32, QD_KV_F16, QD_KV_Q8_0};
    for (int kvk = 0; kvk < 3; kvk++) {
        qd_kv_type_t kv = kvs[kvk];
        /* Alone: [seq][step] logits. */
        static float alone[3][N_CONT + 1][512];
        cr_assert_leq(nv, 512);
        for (int s = 0; s < 3; s++) {
            qd_ctx_t *c = make_ctx(m, kv, 1, 32, 0, 1);
            cr_assert_eq(decode_seq(c, 0, ps[s], ns[s], 0), 0);
            memcpy(alone[s][0], qd_ctx_logits(c, 0), nv * sizeof(float));
            for (int i = 0; i < N_CONT; i++) {
                cr_assert_eq(decode_seq(c, 0, &cont[i], 1, ns[s] + i), 0);
                memcpy(alone[s][i + 1], qd_ctx_logits(c, 0),
                       nv * sizeof(float));
            }
            qd_ctx_free(c);
        }
        /* Together: the three prompts interleaved in one batch, then one
         * token of each sequence per step; 2 threads; the 27-token batch
         * in one pass, then as micro-batches of at most 5 tokens. */
        for (int ub = 0; ub <= 5; ub += 5) {
        qd_ctx_t *c = make_ctx_ub(m, kv, 3, 64, 0, 2, ub);
        int32_t toks[64], pos[64], seq[64];
        int8_t lg[64];
        int n = 0, done[3] = {0};
        while (done[0] < ns[0] || done[1] < ns[1] || done[2] < ns[2]) {
            for (int s = 0; s < 3; s++) {
                if (done[s] == ns[s])
                    continue;
                toks[n] = ps[s][done[s]];
                pos[n] = done[s];
                seq[n] = s;
                lg[n] = ++done[s] == ns[s];
                n++;
            }
        }
        qd_batch_t b = {
            .n_tokens = n, .toks = toks, .pos = pos, .seq = seq, .logits = lg};
        cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
        /* Flagged order is batch order: c (shortest) ends first, then a,
         * then b. */
        int order[3] = {2, 0, 1};
        int bitwise = 1;
        double worst = 0.0;
        for (int j = 0; j < 3; j++)
            worst = fmax(worst, max_diff(qd_ctx_logits(c, j),
                                         alone[order[j]][0], nv, &bitwise));
        cr_expect_null(qd_ctx_logits(c, 3));
        for (int i = 0; i < N_CONT; i++) {
            for (int s = 0; s < 3; s++) {
                toks[s] = cont[i];
                pos[s] = ns[s] + i;
                seq[s] = s;
                lg[s] = 1;
            }
            b.n_tokens = 3;
            cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
            for (int s = 0; s < 3; s++)
                worst = fmax(worst, max_diff(qd_ctx_logits(c, s),
                                             alone[s][i + 1], nv, &bitwise));
        }
        fprintf(stderr,
                "batch equivalence (kv %s, n_ubatch %d): max |dlogit| %g, "
                "%s\n",
                kv == QD_KV_F16 ? "f16" : kv == QD_KV_Q8_0 ? "q8_0" : "f32",
                ub, worst, bitwise ? "bitwise identical" : "not bitwise");
        cr_expect_leq(worst, 1e-5);
        qd_ctx_free(c);
        }
    }
    qd_model_free(m);
}

static void fork_check(const char *file, qd_kv_type_t kvt)
{
    qd_model_t *m = load_model(file);
    int nv = qd_model_hparams(m)->n_vocab;
    cr_assert_leq(nv, 512);
    int nb = QD_ARRAY_SIZE(prompt_b);
    /* Reference: recompute prompt_b[0..k) + cont[0] from scratch. */
    static float ref[2][512];
    int cut[2] = {nb, 10}; /* 20: partial 2nd block; 10: inside block 0 */
    for (int k = 0; k < 2; k++) {
        qd_ctx_t *c = make_ctx(m, kvt, 1, 32, 0, 1);
        int32_t t[32];
        memcpy(t, prompt_b, (size_t)cut[k] * sizeof(int32_t));
        t[cut[k]] = cont[0];
        cr_assert_eq(decode_seq(c, 0, t, cut[k] + 1, 0), 0);
        memcpy(ref[k], qd_ctx_logits(c, 0), nv * sizeof(float));
        qd_ctx_free(c);
    }
    qd_ctx_t *c = make_ctx(m, kvt, 3, 32, 0, 2);
    qd_kv_t *kv = qd_ctx_kv(c);
    cr_assert_eq(decode_seq(c, 0, prompt_b, nb, 0), 0);
    int32_t free0 = qd_kv_blocks_free(kv);
    cr_assert_eq(qd_kv_seq_fork(kv, 1, 0, nb), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), free0 - 1); /* 1 shared + 1 copied */
    cr_assert_eq(qd_kv_seq_fork(kv, 2, 0, cut[1]), 0);
    /* Continue all three: 0 and 1 with cont[0] at nb, 2 with cont[0] at 10
     * (overwriting nothing of 0's). */
    int32_t toks[3] = {cont[0], cont[0], cont[0]}, pos[3] = {nb, nb, cut[1]};
    int32_t seq[3] = {0, 1, 2};
    int8_t lg[3] = {1, 1, 1};
    qd_batch_t b = {
        .n_tokens = 3, .toks = toks, .pos = pos, .seq = seq, .logits = lg};
    cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
    int bitwise = 1;
    double d0 = max_diff(qd_ctx_logits(c, 0), ref[0], nv, &bitwise);
    double d1 = max_diff(qd_ctx_logits(c, 1), ref[0], nv, &bitwise);
    double d2 = max_diff(qd_ctx_logits(c, 2), ref[1], nv, &bitwise);
    fprintf(stderr, "fork: max |dlogit| %g %g %g (%s)\n", d0, d1, d2,
            bitwise ? "bitwise" : "not bitwise");
    cr_expect_leq(fmax(d0, fmax(d1, d2)), 1e-5);
    /* Sequence 0 truncated into the shared block and rewritten (copy on
     * write) does not disturb sequence 1. */
    qd_kv_seq_truncate(kv, 0, 12);
    int32_t t12[8] = {cont[1], cont[2], cont[3]};
    cr_assert_eq(decode_seq(c, 0, t12, 3, 12), 0);
    cr_assert_eq(decode_seq(c, 1, &cont[1], 1, nb + 1), 0);
    memcpy(ref[1], qd_ctx_logits(c, 0), nv * sizeof(float));
    qd_ctx_t *c2 = make_ctx(m, kvt, 1, 32, 0, 1);
    int32_t t[32];
    memcpy(t, prompt_b, (size_t)nb * sizeof(int32_t));
    t[nb] = cont[0];
    t[nb + 1] = cont[1];
    cr_assert_eq(decode_seq(c2, 0, t, nb + 2, 0), 0);
    double d3 = max_diff(ref[1], qd_ctx_logits(c2, 0), nv, &bitwise);
    cr_expect_leq(d3, 1e-5, "sequence 1 disturbed by a write of 0: %g", d3);
    qd_ctx_free(c2);
    qd_ctx_free(c);
    qd_model_free(m);
}

Test(engine, fork_shares_prefix_exactly)
{
    fork_check("stories260K-F32.gguf", QD_KV_F16);
}

Test(engine, fork_shares_prefix_exactly_q8_0_kv)
{
    fork_check("synth-llama31-F32.gguf", QD_KV_Q8_0);
}

Test(engine, full_pool_leaves_state_usable)
{
    qd_model_t *m = load_model("stories260K-F32.gguf");
    int nv = qd_model_hparams(m)->n_vocab;
    size_t bb;
    {
        qd_ctx_t *p = make_ctx(m, QD_KV_F32, 1, 8, 0, 1);
        bb = qd_kv_block_bytes(qd_ctx_kv(p));
        qd_ctx_free(p);
    }
    qd_ctx_t *c = make_ctx(m, QD_KV_F32, 2, 32, 2 * bb, 1);
    qd_kv_t *kv = qd_ctx_kv(c);
    cr_assert_eq(qd_kv_blocks_total(kv), 2);
    int nb = QD_ARRAY_SIZE(prompt_b); /* 20 positions: both blocks */
    cr_assert_eq(decode_seq(c, 0, prompt_b, nb, 0), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 0);
    cr_expect_eq(decode_seq(c, 1, prompt_a, 3, 0), QD_EFULL);
    cr_expect_eq(qd_kv_seq_len(kv, 1), 0);
    cr_expect_eq(qd_kv_seq_len(kv, 0), nb);
    /* Sequence 0 goes on inside its second block, with correct logits. */
    cr_assert_eq(decode_seq(c, 0, cont, 2, nb), 0);
    static float got[512];
    memcpy(got, qd_ctx_logits(c, 0), nv * sizeof(float));
    qd_ctx_t *r = make_ctx(m, QD_KV_F32, 1, 32, 0, 1);
    int32_t t[32];
    memcpy(t, prompt_b, (size_t)nb * sizeof(int32_t));
    t[nb] = cont[0];
    t[nb + 1] = cont[1];
    cr_assert_eq(decode_seq(r, 0, t, nb + 2, 0), 0);
    int bitwise = 1;
    cr_expect_leq(max_diff(got, qd_ctx_logits(r, 0), nv, &bitwise), 1e-5);
    qd_ctx_free(r);
    /* After clearing sequence 0, sequence 1 fits. */
    qd_kv_seq_clear(kv, 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 2);
    cr_expect_eq(decode_seq(c, 1, prompt_a, 3, 0), 0);
    qd_ctx_free(c);
    qd_model_free(m);
}

Test(engine, bad_batches_are_rejected)
{
    qd_model_t *m = load_model("stories260K-F32.gguf");
    qd_ctx_t *c = make_ctx(m, QD_KV_F32, 1, 8, 0, 1);
    int32_t bad_tok = 100000;
    cr_expect_eq(decode_seq(c, 0, &bad_tok, 1, 0), QD_EINVAL);
    int32_t one = 1;
    cr_expect_eq(decode_seq(c, 0, &one, 1, 3), QD_EINVAL);     /* gap */
    cr_expect_eq(decode_seq(c, 1, &one, 1, 0), QD_EINVAL);     /* seq id */
    cr_expect_eq(decode_seq(c, 0, prompt_b, 9, 0), QD_EINVAL); /* > n_batch */
    cr_expect_eq(qd_kv_seq_len(qd_ctx_kv(c), 0), 0);
    cr_expect_eq(decode_seq(c, 0, &one, 1, 0), 0);
    qd_ctx_free(c);
    qd_model_free(m);
}

/* ---- generated models (need nothing outside the repo) ----------------- */

enum { MAL_NONE, MAL_ARCH, MAL_MISSING, MAL_SHAPE, MAL_HPARAM };

typedef struct {
    const char *arch;  /* llama, qwen2, qwen3 */
    int defect;        /* MAL_* */
    int vocab;         /* 1: add an 8-token SentencePiece vocabulary */
    float qnorm_scale; /* qwen3: scale of the attn_q_norm weights */
} gen_t;

#define G_E  32 /* n_embd */
#define G_F  64 /* n_ff */
#define G_V  8  /* n_vocab */
#define G_HD 16

static int add_f32(qd_gguf_writer_t *g, const char *name, int64_t ne0,
                   int64_t ne1, float base, float amp, unsigned salt)
{
    static float w[G_F * G_E];
    size_t n = (size_t)(ne0 * ne1);
    cr_assert_leq(n, QD_ARRAY_SIZE(w));
    for (size_t i = 0; i < n; i++)
        w[i] = base + amp * sinf(0.7f * (float)i + 1.3f * (float)salt);
    int64_t ne[2] = {ne0, ne1};
    return qd_gguf_writer_add_tensor(g, name, QD_TYPE_F32, ne1 == 1 ? 1 : 2, ne,
                                     w, n * sizeof(float), 1);
}

/* A tiny model (n_embd 32, 2 heads of 16, 1 layer, n_ff 64, vocab 8) with
 * smooth pseudo-random weights, optionally with one defect. */
static int write_model(const char *path, const gen_t *o)
{
    qd_gguf_writer_t *g = qd_gguf_writer_create();
    cr_assert_not_null(g);
    const char *arch = o->defect == MAL_ARCH ? "gpt-unknown" : o->arch;
    char key[96];
    qd_gguf_writer_set_str(g, "general.architecture", arch);
#define KEY(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    qd_gguf_writer_set_u32(g, KEY("context_length"), 128);
    qd_gguf_writer_set_u32(g, KEY("embedding_length"), G_E);
    qd_gguf_writer_set_u32(g, KEY("block_count"), 1);
    qd_gguf_writer_set_u32(g, KEY("feed_forward_length"), G_F);
    qd_gguf_writer_set_u32(g, KEY("attention.head_count"),
                           o->defect == MAL_HPARAM ? 3 : 2);
    qd_gguf_writer_set_u32(g, KEY("attention.head_count_kv"), 2);
    qd_gguf_writer_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef KEY
    if (o->vocab) {
        static const char *const toks[G_V] = {"<unk>",
                                              "<s>",
                                              "</s>",
                                              "\xe2\x96\x81"
                                              "a",
                                              "\xe2\x96\x81"
                                              "b",
                                              "a",
                                              "b",
                                              "c"};
        float scores[G_V];
        int32_t types[G_V];
        for (int i = 0; i < G_V; i++) {
            scores[i] = -(float)i;
            types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
        }
        qd_gguf_writer_set_str(g, "tokenizer.ggml.model", "llama");
        qd_gguf_writer_set_arr_str(g, "tokenizer.ggml.tokens", toks, G_V);
        qd_gguf_writer_set_arr(g, "tokenizer.ggml.scores", QD_GGUF_FLOAT32,
                               scores, G_V);
        qd_gguf_writer_set_arr(g, "tokenizer.ggml.token_type", QD_GGUF_INT32,
                               types, G_V);
        qd_gguf_writer_set_u32(g, "tokenizer.ggml.bos_token_id", 1);
        qd_gguf_writer_set_u32(g, "tokenizer.ggml.eos_token_id", 2);
    }
    struct {
        const char *name;
        int64_t ne0, ne1;
        float base, amp;
    } ts[] = {
        {"token_embd.weight", G_E, G_V, 0, 1},
        {"output_norm.weight", G_E, 1, 1, 0.2f},
        {"blk.0.attn_norm.weight", G_E, 1, 1, 0.2f},
        {"blk.0.attn_q.weight", G_E, G_E, 0, 0.3f},
        {"blk.0.attn_k.weight", G_E, G_E, 0, 0.3f},
        {"blk.0.attn_v.weight", G_E, G_E, 0, 0.3f},
        {"blk.0.attn_output.weight", G_E, G_E, 0, 0.3f},
        {"blk.0.ffn_norm.weight", G_E, 1, 1, 0.2f},
        {"blk.0.ffn_gate.weight", G_E, G_F, 0, 0.3f},
        {"blk.0.ffn_up.weight", G_E, G_F, 0, 0.3f},
        {"blk.0.ffn_down.weight", G_F, G_E, 0, 0.3f},
    };
    int rc;
    for (size_t i = 0; i < QD_ARRAY_SIZE(ts); i++) {
        if (o->defect == MAL_MISSING &&
            !strcmp(ts[i].name, "blk.0.ffn_up.weight"))
            continue;
        int64_t ne1 = ts[i].ne1;
        if (o->defect == MAL_SHAPE &&
            !strcmp(ts[i].name, "blk.0.attn_k.weight"))
            ne1 = G_E / 2;
        rc = add_f32(g, ts[i].name, ts[i].ne0, ne1, ts[i].base, ts[i].amp,
                     (unsigned)i);
        cr_assert_eq(rc, 0, "%s", qd_errmsg());
    }
    if (!strcmp(o->arch, "qwen2")) {
        cr_assert_eq(add_f32(g, "blk.0.attn_q.bias", G_E, 1, 0, 0.5f, 21), 0);
        cr_assert_eq(add_f32(g, "blk.0.attn_k.bias", G_E, 1, 0, 0.5f, 22), 0);
        cr_assert_eq(add_f32(g, "blk.0.attn_v.bias", G_E, 1, 0, 0.5f, 23), 0);
    }
    if (!strcmp(o->arch, "qwen3")) {
        cr_assert_eq(add_f32(g, "blk.0.attn_q_norm.weight", G_HD, 1,
                             o->qnorm_scale, 0.3f * o->qnorm_scale, 31),
                     0);
        cr_assert_eq(
            add_f32(g, "blk.0.attn_k_norm.weight", G_HD, 1, 1, 0.3f, 32), 0);
    }
    rc = qd_gguf_writer_write(g, path);
    qd_gguf_writer_destroy(g);
    return rc;
}

static void tmp_path(char *buf, size_t cap, const char *name)
{
    const char *tmp = getenv("QD_TMP");
    snprintf(buf, cap, "%s/%s", tmp ? tmp : "/tmp", name);
}

/* Logits of tokens[0..n) of one sequence: one batch (every token flagged)
 * or one token per decode. */
static void gen_logits(const qd_model_t *m, int one_by_one, int n_threads,
                       int n_ubatch, const int32_t *toks, int n, float *out)
{
    qd_ctx_t *c = make_ctx_ub(m, QD_KV_F16, 1, 16, 0, n_threads, n_ubatch);
    if (one_by_one) {
        for (int i = 0; i < n; i++) {
            cr_assert_eq(decode_seq(c, 0, &toks[i], 1, i), 0);
            memcpy(out + i * G_V, qd_ctx_logits(c, 0), G_V * sizeof(float));
        }
    } else {
        int32_t t[16], pos[16], seq[16];
        int8_t lg[16];
        for (int i = 0; i < n; i++) {
            t[i] = toks[i];
            pos[i] = i;
            seq[i] = 0;
            lg[i] = 1;
        }
        qd_batch_t b = {
            .n_tokens = n, .toks = t, .pos = pos, .seq = seq, .logits = lg};
        cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
        for (int i = 0; i < n; i++)
            memcpy(out + i * G_V, qd_ctx_logits(c, i), G_V * sizeof(float));
    }
    qd_ctx_free(c);
}

Test(engine, generated_models_of_each_architecture)
{
    static const char *archs[] = {"llama", "qwen2", "qwen3"};
    static const int32_t toks[6] = {1, 3, 5, 4, 7, 6};
    for (size_t a = 0; a < QD_ARRAY_SIZE(archs); a++) {
        char path[512];
        tmp_path(path, sizeof path, "engine-gen.gguf");
        gen_t o = {.arch = archs[a], .vocab = 1, .qnorm_scale = 1.0f};
        cr_assert_eq(write_model(path, &o), 0, "%s", qd_errmsg());
        qd_model_t *m = NULL;
        int rc = qd_model_load(path, &m);
        cr_assert_eq(rc, 0, "%s: %s", archs[a], qd_errmsg());
        const qd_hparams_t *hp = qd_model_hparams(m);
        cr_expect_str_eq(qd_model_arch_name(m), archs[a]);
        cr_expect_eq(hp->n_vocab, G_V);
        cr_expect_eq(hp->head_dim, G_HD);
        cr_expect_eq(hp->rope_neox, a > 0);
        cr_expect(hp->tied_output);
        cr_expect_eq(hp->rope_base, 10000.0f);
        float batch[6 * G_V], single[6 * G_V], two[6 * G_V], ub[6 * G_V];
        gen_logits(m, 0, 1, 0, toks, 6, batch);
        gen_logits(m, 1, 1, 0, toks, 6, single);
        gen_logits(m, 0, 2, 0, toks, 6, two);
        gen_logits(m, 0, 2, 4, toks, 6, ub); /* micro-batches of 3 + 3 */
        int bitwise = 1;
        double d = max_diff(batch, single, 6 * G_V, &bitwise);
        cr_expect_leq(d, 1e-5, "%s: batch vs one by one %g", archs[a], d);
        d = max_diff(batch, ub, 6 * G_V, &bitwise);
        cr_expect_leq(d, 1e-5, "%s: batch vs micro-batches %g", archs[a], d);
        int bw2 = 1;
        max_diff(batch, two, 6 * G_V, &bw2);
        cr_expect(bw2, "%s: 1 and 2 threads differ", archs[a]);
        int varies = 0;
        for (int i = 0; i < 6 * G_V; i++) {
            cr_expect(isfinite(batch[i]));
            varies |= batch[i] != batch[i % G_V];
        }
        cr_expect(varies, "%s: logits do not depend on the input", archs[a]);
        if (a == 2) {
            /* qwen3: the q norm weights take part. */
            qd_model_t *m2 = NULL;
            o.qnorm_scale = 2.0f;
            cr_assert_eq(write_model(path, &o), 0);
            cr_assert_eq(qd_model_load(path, &m2), 0, "%s", qd_errmsg());
            gen_logits(m2, 0, 1, 0, toks, 6, two);
            int same = 1;
            cr_expect_gt(max_diff(batch + G_V, two + G_V, 5 * G_V, &same),
                         1e-4);
            qd_model_free(m2);
        }
        qd_model_free(m);
        remove(path);
    }
}

static void expect_load_error(int defect, const char *needle)
{
    char path[512], name[64];
    snprintf(name, sizeof name, "engine-bad-%d.gguf", defect);
    tmp_path(path, sizeof path, name);
    gen_t o = {.arch = "llama", .defect = defect};
    cr_assert_eq(write_model(path, &o), 0, "%s", qd_errmsg());
    qd_model_t *m = (qd_model_t *)1;
    int rc = qd_model_load(path, &m);
    cr_expect_lt(rc, 0);
    cr_expect_null(m);
    cr_expect(rc == QD_EFORMAT || rc == QD_EUNSUPPORTED, "rc %s",
              qd_errname(rc));
    cr_expect_not_null(strstr(qd_errmsg(), needle), "message '%s' lacks '%s'",
                       qd_errmsg(), needle);
    remove(path);
}

Test(engine, malformed_models_are_refused)
{
    expect_load_error(MAL_ARCH, "gpt-unknown");
    expect_load_error(MAL_MISSING, "blk.0.ffn_up.weight");
    expect_load_error(MAL_SHAPE, "blk.0.attn_k.weight");
    expect_load_error(MAL_HPARAM, "head_count");
}

Test(engine, tiny_valid_model_fails_only_for_want_of_a_vocabulary)
{
    /* The same file without defect passes every model check and stops at
     * the tokenizer, which this file lacks: the error must say so. */
    char path[512];
    tmp_path(path, sizeof path, "engine-novocab.gguf");
    gen_t o = {.arch = "llama"};
    cr_assert_eq(write_model(path, &o), 0);
    qd_model_t *m = NULL;
    int rc = qd_model_load(path, &m);
    cr_expect_lt(rc, 0);
    cr_expect_null(m);
    cr_expect_not_null(strstr(qd_errmsg(), "tokenizer"), "message: %s",
                       qd_errmsg());
    remove(path);
}

/* ---- quantd run, end to end ------------------------------------------- */

/* Run a shell command, capture stdout (up to cap bytes), return the exit
 * status. */
static int capture(const char *cmd, char *out, size_t cap, size_t *n)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    *n = fread(out, 1, cap, p);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(engine, run_command_reproduces_llama2c_greedy)
{
    const char *bin = getenv("QD_BIN"), *sh = shared_dir();
    if (!bin)
        cr_skip_test("QD_BIN not set");
    char exp_path[1024], cmd[2048];
    snprintf(exp_path, sizeof exp_path,
             "%s/gguf/stories260K.greedy200.expected.txt", sh);
    FILE *f = fopen(exp_path, "rb");
    if (!f)
        cr_skip_test("test data not found: %s", exp_path);
    static char want[4096], got[4096];
    size_t n_want = fread(want, 1, sizeof want, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "'%s' run -m '%s/gguf/stories260K.gguf' -p '' -n 200 --temp 0 "
             "-t 1 2>/dev/null",
             bin, sh);
    size_t n_got;
    cr_assert_eq(capture(cmd, got, sizeof got, &n_got), 0);
    cr_expect_eq(n_got, n_want, "stdout has %zu bytes, expected %zu", n_got,
                 n_want);
    cr_expect_eq(memcmp(got, want, QD_MIN(n_got, n_want)), 0,
                 "stdout differs from llama2.c's output");

    /* A file that is not a model: exit 1, nothing on stdout. */
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'x' -n 5 2>/dev/null", bin,
             exp_path);
    cr_expect_eq(capture(cmd, got, sizeof got, &n_got), 1);
    cr_expect_eq(n_got, 0);
}
