/*
 * perplexity.c — `quantd perplexity -m MODEL -f TEXT [--ctx N] [--chunks K]
 * [--kld-base BASE] [-t N]`: perplexity over a text, and with a base model
 * the KL divergence of MODEL from it (see qd_perplexity in convert.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/convert.h"
#include "quantd/engine.h"
#include "quantd/hf_import.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantd perplexity -m MODEL -f TEXT [options]\n"
            "\n"
            "  -m, --model FILE    model to measure\n"
            "  -f, --file FILE     text (UTF-8)\n"
            "  -c, --ctx N         window length in tokens (default 512); the\n"
            "                      second half of each window is scored\n"
            "  --chunks K          evaluate only the first K windows\n"
            "  --kld-base FILE     base model (e.g. the F32/F16 original): also\n"
            "                      report KL divergence, top-1 agreement, dPPL\n"
            "  -t, --threads N     threads (default: physical cores)\n");
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 &&
        !fseek(f, 0, SEEK_SET) && (buf = qd_malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = 0;
            *len = (size_t)n;
        } else {
            qd_free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static void on_chunk(void *ud, int32_t chunk, int32_t n_chunks, double ppl)
{
    int *tty = ud;
    if (*tty)
        fprintf(stderr, "\r[%d/%d] ppl %.4f ", chunk, n_chunks, ppl);
    if (*tty && chunk == n_chunks)
        fputc('\n', stderr);
}

int qd_cmd_perplexity(int argc, char **argv)
{
    qd_gguf_set_load(QD_GGUF_READ); /* the model runs: huge pages (quantd/gguf.h) */
    const char *model_path = NULL, *text_path = NULL, *base_path = NULL;
    qd_ppl_params_t pp;
    qd_model_t *m = NULL, *base = NULL;
    char *text = NULL;
    int32_t *toks = NULL;
    int status = 2, rc, tty = isatty(2);

    qd_ppl_params_default(&pp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) {
            model_path = v;
            i++;
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && v) {
            text_path = v;
            i++;
        } else if (!strcmp(a, "--kld-base") && v) {
            base_path = v;
            i++;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx")) && v) {
            if (qd__parse_i32(v, 4, 1 << 24, &pp.n_ctx)) {
                fprintf(stderr, "quantd perplexity: bad --ctx '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--chunks") && v) {
            if (qd__parse_i32(v, 1, 1 << 24, &pp.n_chunks)) {
                fprintf(stderr, "quantd perplexity: bad --chunks '%s'\n", v);
                return 2;
            }
            i++;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) {
            if (qd__parse_i32(v, 1, 1024, &pp.n_threads)) {
                fprintf(stderr, "quantd perplexity: bad thread count '%s'\n",
                        v);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "quantd perplexity: unknown or incomplete "
                            "argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !text_path) {
        usage(stderr);
        return 2;
    }

    size_t len = 0;
    if (!(text = read_text(text_path, &len))) {
        fprintf(stderr, "quantd perplexity: cannot read %s\n", text_path);
        status = 1;
        goto out;
    }
    if ((rc = qd_model_open(model_path, &m)) ||
        (base_path && (rc = qd_model_open(base_path, &base)))) {
        fprintf(stderr, "quantd perplexity: %s: %s\n", qd_strerror(rc),
                qd_errmsg());
        status = 1;
        goto out;
    }
    const qd_tokenizer_t *tk = qd_model_tokenizer(m);
    if (len > (size_t)INT32_MAX - 16) {
        fprintf(stderr, "quantd perplexity: %s is too large\n", text_path);
        goto out;
    }
    int cap = (int)len + 16, n;
    if (!(toks = qd_malloc((size_t)cap * sizeof *toks))) {
        fprintf(stderr, "quantd perplexity: out of memory\n");
        status = 1;
        goto out;
    }
    n = qd_tokenize(tk, text, len, 1, 0, toks, cap);
    if (n < 0 || n > cap) {
        fprintf(stderr, "quantd perplexity: tokenizing %s: %s\n", text_path,
                n < 0 ? qd_errmsg() : "too many tokens");
        status = 1;
        goto out;
    }

    qd_ppl_result_t r;
    pp.progress = on_chunk;
    pp.progress_ud = &tty;
    uint64_t t0 = qd_now_ns();
    if ((rc = qd_perplexity(m, base, toks, n, &pp, &r))) {
        fprintf(stderr, "quantd perplexity: %s: %s\n", qd_strerror(rc),
                qd_errmsg());
        status = 1;
        goto out;
    }
    double secs = (double)(qd_now_ns() - t0) * 1e-9;
    printf("model:       %s\n", model_path);
    printf("text:        %s (%d tokens)\n", text_path, n);
    printf("windows:     %d of %d tokens, %lld tokens scored, %.1fs\n",
           r.n_chunks, pp.n_ctx, (long long)r.n_scored, secs);
    printf("PPL:         %.4f +/- %.4f\n", r.ppl, r.ppl_err);
    if (r.has_base) {
        printf("base:        %s\n", base_path);
        printf("base PPL:    %.4f +/- %.4f\n", r.base_ppl, r.base_ppl_err);
        printf("dPPL:        %+.4f (ln ratio %+.6f +/- %.6f)\n",
               r.ppl - r.base_ppl, r.ln_ppl_ratio, r.ln_ppl_ratio_err);
        printf("KLD mean:    %.6f +/- %.6f\n", r.kld_mean, r.kld_err);
        printf("KLD median:  %.6f\n", r.kld_median);
        printf("KLD 99%%:     %.6f\n", r.kld_p99);
        printf("KLD max:     %.6f\n", r.kld_max);
        printf("same top-1:  %.2f%%\n", 100.0 * r.top1_agree);
    }
    status = 0;
out:
    qd_free(toks);
    qd_free(text);
    qd_model_free(base);
    qd_model_free(m);
    return status;
}
