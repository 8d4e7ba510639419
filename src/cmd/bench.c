/*
 * bench.c — `quantd bench`: prompt-processing and generation speed of a
 * model, with the meaning of llama.cpp's llama-bench (pp = one forward pass
 * over a batch of p prompt tokens, tg = n single-token decode steps), plus
 * machine-level figures (--membw, --kernels; bench_kernels.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "cmd/bench.h"
#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/compute.h"
#include "quantd/engine.h"
#include "quantd/hf_import.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantd bench -m MODEL [-p 512] [-n 128] [-t THREADS] [-r REPS]\n"
            "                    [--json] [--batch B] [--kv-type f16|f32|q8_0]\n"
            "                    [--model-load read|mmap] [--ubatch U]\n"
            "       quantd bench --membw [-t THREADS] [-r REPS]\n"
            "       quantd bench --kernels [--types Q4_K,Q8_0,...] [--mv-only] [-t THREADS] [-r REPS]\n"
            "       quantd bench --awq-layout [-t THREADS] [-r REPS]\n");
}


typedef struct {
    const char *model_path;
    int p, n, threads, reps, json, batch, ubatch;
    qd_kv_type_t kv_type;
} bench_opts_t;

static size_t peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024;
}

static void stats(const double *v, int n, double *mean, double *sd)
{
    double m = 0, s = 0;
    for (int i = 0; i < n; i++)
        m += v[i];
    m /= n;
    for (int i = 0; i < n; i++)
        s += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(s / (n - 1)) : 0.0;
}

/* One decode of n_tok tokens spread over n_seq sequences (round robin),
 * positions continuing from pos0. Returns seconds, or < 0 on error. */
static double timed_decode(qd_ctx_t *c, qd_batch_t *b, int n_tok, int n_seq,
                           int32_t pos0, int32_t n_vocab, uint64_t *rng)
{
    b->n_tokens = n_tok;
    for (int i = 0; i < n_tok; i++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        b->toks[i] = 3 + (int32_t)((*rng >> 33) % (uint64_t)(n_vocab - 3));
        b->seq[i] = i % n_seq;
        b->pos[i] = pos0 + i / n_seq;
        b->logits[i] = i >= n_tok - n_seq; /* last token of each sequence */
    }
    uint64_t t0 = qd_now_ns();
    int rc = qd_ctx_decode(c, b);
    if (rc) {
        fprintf(stderr, "bench: decode failed: %s (%s)\n", qd_errmsg(), qd_strerror(rc));
        return -1;
    }
    return (double)(qd_now_ns() - t0) * 1e-9;
}

/* Weight bytes one decode step reads: every matrix, and of the token
 * embedding one row, unless it is also the output matrix (tied). */
static size_t bytes_per_token(const qd_model_t *m)
{
    const qd_gguf_t *g = qd_model_gguf(m);
    size_t b = qd_model_weight_bytes(m);
    const qd_gguf_tensor_t *e = g ? qd_gguf_find_tensor(g, "token_embd.weight") : NULL;
    if (e && qd_gguf_find_tensor(g, "output.weight") && e->ne[1] > 0)
        b -= e->n_bytes - e->n_bytes / (size_t)e->ne[1];
    return b;
}

static void report(const bench_opts_t *o, const char *type, const char *test,
                   const double *tps, int n, size_t bpt)
{
    double m, sd;
    stats(tps, n, &m, &sd);
    if (o->json)
        printf("{\"model\":\"%s\",\"type\":\"%s\",\"test\":\"%s\",\"threads\":%d,"
               "\"tokens_per_s\":%.3f,\"tokens_per_s_sd\":%.3f,\"rss_bytes\":%zu,"
               "\"bytes_per_token\":%zu}\n",
               o->model_path, type, test, o->threads, m, sd, peak_rss_bytes(), bpt);
    else
        printf("| %-28s | %-8s | %7d | %-10s | %9.2f ± %6.2f |\n", o->model_path, type,
               o->threads, test, m, sd);
    fflush(stdout);
}

static void clear_all(qd_ctx_t *c, int n_seq)
{
    for (int s = 0; s < n_seq; s++)
        qd_kv_seq_clear(qd_ctx_kv(c), s);
}

static int bench_model(const bench_opts_t *o)
{
    qd_model_t *m = NULL;
    qd_ctx_t *c = NULL;
    qd_batch_t b = {0};
    int rc = qd_model_open(o->model_path, &m), ret = 1;
    if (rc) {
        fprintf(stderr, "bench: %s: %s (%s)\n", o->model_path, qd_errmsg(), qd_strerror(rc));
        return 1;
    }
    const qd_hparams_t *hp = qd_model_hparams(m);
    int n_seq = o->batch > 1 ? o->batch : 1;
    int n_batch = QD_MAX(QD_MAX(o->p, n_seq), 1);
    qd_ctx_params_t cp;
    qd_ctx_params_default(&cp);
    cp.n_batch = n_batch;
    cp.n_seq_max = n_seq;
    cp.n_ctx = QD_MAX(o->p, o->n + 1) + 16;
    cp.n_threads = o->threads;
    cp.kv_type = o->kv_type;
    if (o->ubatch > 0)
        cp.n_ubatch = o->ubatch;
    if ((rc = qd_ctx_create(m, &cp, &c))) {
        fprintf(stderr, "bench: context: %s (%s)\n", qd_errmsg(), qd_strerror(rc));
        goto out;
    }
    b.toks = qd_calloc((size_t)n_batch, sizeof(int32_t));
    b.pos = qd_calloc((size_t)n_batch, sizeof(int32_t));
    b.seq = qd_calloc((size_t)n_batch, sizeof(int32_t));
    b.logits = qd_calloc((size_t)n_batch, 1);
    double *tps = qd_calloc((size_t)o->reps, sizeof(double));
    if (!b.toks || !b.pos || !b.seq || !b.logits || !tps) {
        fprintf(stderr, "bench: out of memory\n");
        qd_free(tps);
        goto out;
    }
    /* the type of the largest matrix names the model's type */
    const char *type = "?";
    const qd_gguf_t *g = qd_model_gguf(m);
    const qd_gguf_tensor_t *tq = qd_gguf_find_tensor(g, "blk.0.ffn_gate.weight");
    uint32_t ftype;
    if (qd_gguf_get_u32(g, "general.file_type", &ftype) == 0 && ftype == 15)
        type = "Q4_K_M";
    else if (tq)
        type = qd_type_name(tq->type);
    const size_t bpt = bytes_per_token(m);
    uint64_t rng = 12345;
    char test[32];
    if (!o->json)
        printf("| %-28s | %-8s | %7s | %-10s | %18s |\n", "model", "type", "threads",
               "test", "t/s");
    if (o->p > 0) {
        clear_all(c, n_seq);
        if (timed_decode(c, &b, QD_MIN(o->p, 16), 1, 0, hp->n_vocab, &rng) < 0)
            goto out_tps; /* warm-up */
        for (int r = 0; r < o->reps; r++) {
            clear_all(c, n_seq);
            double s = timed_decode(c, &b, o->p, 1, 0, hp->n_vocab, &rng);
            if (s < 0)
                goto out_tps;
            tps[r] = o->p / s;
        }
        snprintf(test, sizeof test, "pp%d", o->p);
        report(o, type, test, tps, o->reps, bpt);
    }
    double tg_mean = 0;
    if (o->n > 0) {
        for (int r = 0; r < o->reps; r++) {
            clear_all(c, n_seq);
            if (timed_decode(c, &b, 1, 1, 0, hp->n_vocab, &rng) < 0) /* warm-up */
                goto out_tps;
            clear_all(c, n_seq);
            double s = 0;
            for (int i = 0; i < o->n; i++) {
                double t = timed_decode(c, &b, 1, 1, i, hp->n_vocab, &rng);
                if (t < 0)
                    goto out_tps;
                s += t;
            }
            tps[r] = o->n / s;
        }
        snprintf(test, sizeof test, "tg%d", o->n);
        report(o, type, test, tps, o->reps, bpt);
        double sd;
        stats(tps, o->reps, &tg_mean, &sd);
    }
    if (o->batch > 1 && o->n > 0) {
        for (int r = 0; r < o->reps; r++) {
            clear_all(c, n_seq);
            double s = 0;
            for (int i = 0; i < o->n; i++) {
                double t = timed_decode(c, &b, n_seq, n_seq, i, hp->n_vocab, &rng);
                if (t < 0)
                    goto out_tps;
                s += t;
            }
            tps[r] = (double)o->n * n_seq / s;
        }
        snprintf(test, sizeof test, "tg%dx%d", o->n, n_seq);
        report(o, type, test, tps, o->reps, bpt);
        double mean, sd;
        stats(tps, o->reps, &mean, &sd);
        if (!o->json && tg_mean > 0)
            printf("batched decode of %d sequences: %.2fx single-sequence tg\n", n_seq,
                   mean / tg_mean);
    }
    if (!o->json)
        printf("peak RSS: %.1f MiB\n", (double)peak_rss_bytes() / 1048576.0);
    ret = 0;
out_tps:
    qd_free(tps);
out:
    qd_free(b.toks);
    qd_free(b.pos);
    qd_free(b.seq);
    qd_free(b.logits);
    qd_ctx_free(c);
    qd_model_free(m);
    return ret;
}

int qd_cmd_bench(int argc, char **argv)
{
    qd_gguf_set_load(QD_GGUF_READ); /* the model runs: huge pages (quantd/gguf.h) */
    int threads = 0, reps = 3, membw = 0, kernels = 0, awq_layout = 0, mv_only = 0;
    bench_opts_t o = {.p = 512, .n = 128, .kv_type = QD_KV_F16};
    const char *types = "Q4_0,Q8_0,Q4_K,Q6_K,Q5_0,F16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--membw")) {
            membw = 1;
        } else if (!strcmp(a, "--kernels")) {
            kernels = 1;
        } else if (!strcmp(a, "--awq-layout")) {
            awq_layout = 1;
        } else if (!strcmp(a, "--mv-only")) {
            mv_only = 1;
        } else if (!strcmp(a, "--types") && v) {
            types = v;
            i++;
        } else if (!strcmp(a, "-m") && v) {
            o.model_path = v;
            i++;
        } else if (!strcmp(a, "-p") && v) {
            o.p = atoi(v);
            i++;
        } else if (!strcmp(a, "-n") && v) {
            o.n = atoi(v);
            i++;
        } else if (!strcmp(a, "--model-load") && v && !qd_gguf_set_load_name(v)) {
            i++;
        } else if (!strcmp(a, "--ubatch") && v) {
            o.ubatch = atoi(v);
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            o.batch = atoi(v);
            i++;
        } else if (!strcmp(a, "--kv-type") && v) {
            if (!strcasecmp(v, "f16")) {
                o.kv_type = QD_KV_F16;
            } else if (!strcasecmp(v, "f32")) {
                o.kv_type = QD_KV_F32;
            } else if (!strcasecmp(v, "q8_0")) {
                o.kv_type = QD_KV_Q8_0;
            } else {
                fprintf(stderr, "quantd bench: --kv-type: '%s' (f16, f32 or q8_0)\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "-t") && v) {
            threads = atoi(v);
            i++;
        } else if (!strcmp(a, "-r") && v) {
            reps = atoi(v);
            i++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (threads <= 0)
        threads = qd_physical_cores();
    if (reps <= 0)
        reps = 1;
    if (membw)
        return qd__bench_membw(threads, reps);
    if (kernels)
        return qd__bench_kernels(threads, reps, types, mv_only);
    if (awq_layout)
        return qd__bench_awq_layout(threads, reps);
    if (!o.model_path || o.p < 0 || o.n < 0 || o.batch < 0 || o.p > 65536 ||
        o.n > 65536 || o.batch > 1024) {
        usage(stderr);
        return 2;
    }
    o.threads = threads;
    o.reps = reps;
    return bench_model(&o);
}
