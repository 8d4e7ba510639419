/*
 * run.c — `quantd run`: generate text from a prompt on the command line.
 *
 * stdout carries only the generated text, streamed token by token through
 * the detokenizer and flushed after each token, with no newline added at
 * the end (so the output can be compared byte for byte); logs, timings and
 * errors go to stderr.
 */
#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/engine.h"
#include "quantd/sampler.h"
#include "quantd/tokenizer.h"
#include "quantd/hf_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: quantd run -m MODEL -p PROMPT [options]\n"
            "  -m, --model PATH        GGUF file or HF/AWQ/GPTQ checkpoint directory\n"
            "  -p, --prompt TEXT       prompt (\"\" gives BOS only)\n"
            "  -n, --n-predict N       tokens to generate (default 128)\n"
            "  -c, --ctx-size N        context size (default: model's, at "
            "most 4096)\n"
            "  -t, --threads N         compute threads (default: physical "
            "cores)\n"
            "  --temp T                temperature (0: greedy; default 0.8)\n"
            "  --seed S                RNG seed (default 0)\n"
            "  --top-k K               (default 40; 0 off)\n"
            "  --top-p P               (default 0.95; 1 off)\n"
            "  --min-p P               (default 0.05; 0 off)\n"
            "  --repeat-penalty R      (default 1.0: off)\n"
            "  --kv-type f16|f32|q8_0  KV cache element type (default f16)\n"
            "  --model-load read|mmap  read the model into memory (default) or map it\n");
}

typedef struct {
    const char *model;
    const char *prompt;
    long n_predict;
    long n_ctx;
    long n_threads;
    qd_sampling_params_t sp;
    qd_kv_type_t kv_type;
} run_opts_t;

static int parse_long(const char *opt, const char *s, long lo, long hi,
                      long *out)
{
    if (qd__parse_int(s, lo, hi, out)) {
        fprintf(stderr,
                "quantd run: %s: '%s' is not an integer in [%ld, "
                "%ld]\n",
                opt, s, lo, hi);
        return -1;
    }
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end) {
        fprintf(stderr, "quantd run: %s: '%s' is not a number\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, run_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->n_ctx = 0;
    o->kv_type = QD_KV_F16;
    qd_sampling_params_default(&o->sp);
    o->sp.temperature = 0.8f;
    o->sp.top_k = 40;
    o->sp.top_p = 0.95f;
    o->sp.min_p = 0.05f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr,
                    "quantd run: unknown option or missing value: "
                    "%s\n",
                    a);
            return -1;
        }
        const char *v = argv[++i];
        long l;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            o->prompt = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (parse_long(a, v, 0, 1L << 30, &o->n_predict))
                return -1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (parse_long(a, v, 0, 1L << 24, &o->n_ctx))
                return -1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (parse_long(a, v, 1, 1024, &o->n_threads))
                return -1;
        } else if (!strcmp(a, "--temp")) {
            if (parse_float(a, v, &o->sp.temperature))
                return -1;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end) {
                fprintf(stderr,
                        "quantd run: --seed: '%s' is not an "
                        "integer\n",
                        v);
                return -1;
            }
            o->sp.seed = s;
        } else if (!strcmp(a, "--top-k")) {
            if (parse_long(a, v, 0, INT32_MAX, &l))
                return -1;
            o->sp.top_k = (int32_t)l;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(a, v, &o->sp.top_p))
                return -1;
        } else if (!strcmp(a, "--min-p")) {
            if (parse_float(a, v, &o->sp.min_p))
                return -1;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (parse_float(a, v, &o->sp.repeat_penalty))
                return -1;
        } else if (!strcmp(a, "--model-load")) {
            if (qd_gguf_set_load_name(v)) {
                fprintf(stderr, "quantd run: --model-load: %s\n", qd_errmsg());
                return -1;
            }
        } else if (!strcmp(a, "--kv-type")) {
            if (!strcasecmp(v, "f16")) {
                o->kv_type = QD_KV_F16;
            } else if (!strcasecmp(v, "f32")) {
                o->kv_type = QD_KV_F32;
            } else if (!strcasecmp(v, "q8_0")) {
                o->kv_type = QD_KV_Q8_0;
            } else {
                fprintf(stderr,
                        "quantd run: --kv-type: '%s' (f16, f32 or q8_0)\n", v);
                return -1;
            }
        } else {
            fprintf(stderr, "quantd run: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "quantd run: -m MODEL and -p PROMPT are required\n");
        return -1;
    }
    return 0;
}

static void report(const char *what, int rc)
{
    const char *msg = qd_errmsg();
    fprintf(stderr, "quantd run: %s: %s%s%s\n", what, qd_strerror(rc),
            msg && *msg ? ": " : "", msg ? msg : "");
}

static void emit(const char *buf, int n)
{
    if (n > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
    }
}

int qd_cmd_run(int argc, char **argv)
{
    qd_gguf_set_load(QD_GGUF_READ); /* the model runs: huge pages (quantd/gguf.h) */
    run_opts_t o;
    int pa = parse_args(argc, argv, &o);
    if (pa)
        return pa > 0 ? 0 : 2;
    int status = 1, rc;
    qd_model_t *m = NULL;
    qd_ctx_t *ctx = NULL;
    qd_sampler_t *smp = NULL;
    int32_t *toks = NULL;

    if ((rc = qd_model_open(o.model, &m)) < 0) {
        report(o.model, rc);
        goto out;
    }
    const qd_hparams_t *hp = qd_model_hparams(m);
    const qd_tokenizer_t *tk = qd_model_tokenizer(m);
    int32_t n_ctx = o.n_ctx ? (int32_t)o.n_ctx : QD_MIN(hp->n_ctx_train, 4096);

    /* Tokenize (BOS as the model asks, special tokens parsed). */
    size_t plen = strlen(o.prompt);
    int cap = (int)QD_MIN(plen + 16, (size_t)1 << 30);
    toks = qd_malloc((size_t)cap * sizeof *toks);
    if (!toks)
        goto oom;
    int n_prompt = qd_tokenize(tk, o.prompt, plen, 1, 1, toks, cap);
    if (n_prompt > cap) {
        cap = n_prompt;
        qd_free(toks);
        if (!(toks = qd_malloc((size_t)cap * sizeof *toks)))
            goto oom;
        n_prompt = qd_tokenize(tk, o.prompt, plen, 1, 1, toks, cap);
    }
    if (n_prompt < 0) {
        report("tokenize", n_prompt);
        goto out;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "quantd run: the prompt is empty and the model adds "
                        "no BOS\n");
        goto out;
    }
    if (n_prompt >= n_ctx) {
        fprintf(stderr,
                "quantd run: the prompt (%d tokens) does not fit the "
                "context of %d\n",
                n_prompt, n_ctx);
        goto out;
    }
    long n_gen = QD_MIN(o.n_predict, (long)n_ctx - n_prompt);

    qd_ctx_params_t cp;
    qd_ctx_params_default(&cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = QD_MIN(n_prompt, 512);
    cp.n_seq_max = 1;
    cp.kv_type = o.kv_type;
    cp.n_threads = (int32_t)o.n_threads;
    if ((rc = qd_ctx_create(m, &cp, &ctx)) < 0) {
        report("context", rc);
        goto out;
    }
    /* An HF checkpoint's embedding may have more rows than its tokenizer
     * has tokens (padding): sample only ids the tokenizer can print. */
    int32_t n_vocab = QD_MIN(hp->n_vocab, qd_tokenizer_n_vocab(tk));
    if ((rc = qd_sampler_create(&o.sp, n_vocab, &smp)) < 0) {
        report("sampler", rc);
        goto out;
    }
    for (int i = 0; i < n_prompt; i++)
        qd_sampler_accept(smp, toks[i]);

    int32_t pos[512], seq[512];
    int8_t keep[512];
    memset(seq, 0, sizeof seq);
    /* Prompt, in chunks of n_batch; logits only for its last token. */
    uint64_t t0 = qd_now_ns();
    for (int i = 0; i < n_prompt; i += cp.n_batch) {
        int n = QD_MIN(cp.n_batch, n_prompt - i);
        for (int j = 0; j < n; j++) {
            pos[j] = i + j;
            keep[j] = i + j == n_prompt - 1;
        }
        qd_batch_t b = {.n_tokens = n,
                        .toks = toks + i,
                        .pos = pos,
                        .seq = seq,
                        .logits = keep};
        if ((rc = qd_ctx_decode(ctx, &b)) < 0) {
            report("decode", rc);
            goto out;
        }
    }
    uint64_t t1 = qd_now_ns();

    qd_detok_t dt;
    qd_detok_init(&dt, tk);
    /* The SentencePiece leading space is dropped only for text that starts
     * right after BOS; a continuation of prompt text keeps it. */
    if (toks[n_prompt - 1] != qd_tokenizer_bos(tk))
        dt.strip_space = 0;
    char buf[256];
    long n_done = 0;
    int32_t cur_pos = n_prompt;
    while (n_done < n_gen) {
        qd_sample_t s;
        if ((rc = qd_sampler_sample(smp, qd_ctx_logits(ctx, 0), &s)) < 0) {
            report("sample", rc);
            goto out;
        }
        if (qd_tokenizer_is_eog(tk, s.tok))
            break;
        qd_sampler_accept(smp, s.tok);
        int n = qd_detok_push(&dt, tk, s.tok, buf, (int)sizeof buf);
        if (n < 0) {
            report("detokenize", n);
            goto out;
        }
        emit(buf, n);
        n_done++;
        if (n_done == n_gen)
            break;
        int32_t tok = s.tok;
        int8_t one = 1;
        qd_batch_t b = {.n_tokens = 1,
                        .toks = &tok,
                        .pos = &cur_pos,
                        .seq = seq,
                        .logits = &one};
        if ((rc = qd_ctx_decode(ctx, &b)) < 0) {
            report("decode", rc);
            goto out;
        }
        cur_pos++;
    }
    int n = qd_detok_flush(&dt, buf, (int)sizeof buf);
    if (n > 0)
        emit(buf, n);
    uint64_t t2 = qd_now_ns();
    double pp_s = (double)(t1 - t0) / 1e9, tg_s = (double)(t2 - t1) / 1e9;
    fprintf(stderr,
            "\nquantd run: prompt %d tokens in %.3f s (%.1f tok/s), "
            "generated %ld tokens in %.3f s (%.1f tok/s), %d threads, "
            "kernels %s\n",
            n_prompt, pp_s, pp_s > 0 ? n_prompt / pp_s : 0.0, n_done, tg_s,
            tg_s > 0 ? n_done / tg_s : 0.0,
            cp.n_threads ? cp.n_threads : qd_physical_cores(),
            qd_kernels_name());
    status = 0;
    goto out;
oom:
    fprintf(stderr, "quantd run: out of memory\n");
out:
    qd_sampler_destroy(smp);
    qd_ctx_free(ctx);
    qd_model_free(m);
    qd_free(toks);
    return status;
}
