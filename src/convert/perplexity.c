/*
 * perplexity.c — perplexity of a model over a token stream, and the KL
 * divergence of a (quantized) model from a base model over the same tokens.
 *
 * The windowing and statistics follow llama.cpp's llama-perplexity so the
 * figures can be put side by side: windows of n_ctx tokens, BOS first,
 * the second half scored; PPL = exp(mean NLL) with the standard error
 * ppl * sqrt(var(NLL) / (n - 1)); KLD mean with its standard error, the
 * median and 99th percentile, and how often both models rank the same
 * token first.
 *
 * Each window is one batch through the engine (qd_ctx_decode) with logits
 * kept only for the scored positions; the cache is cleared between windows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/convert.h"
#include "quantd/engine.h"

void qd_ppl_params_default(qd_ppl_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->n_ctx = 512;
}

/* log-softmax of n logits into out (double), returning nothing. */
static void log_softmax(const float *l, int32_t n, double *out)
{
    float mx = l[0];
    for (int32_t i = 1; i < n; i++)
        mx = l[i] > mx ? l[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)l[i] - (double)mx);
    double lse = (double)mx + log(sum);
    for (int32_t i = 0; i < n; i++)
        out[i] = (double)l[i] - lse;
}

static int32_t argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Standard error of a mean from sum and sum of squares of n values. */
static double std_err(double sum, double sum2, int64_t n)
{
    if (n < 2)
        return 0;
    double mean = sum / (double)n, var = sum2 / (double)n - mean * mean;
    return var > 0 ? sqrt(var / (double)(n - 1)) : 0;
}

/* Run one window through c; logits of the scored positions are then at
 * qd_ctx_logits(c, 0 .. n_ctx - 2 - first). */
static int run_window(qd_ctx_t *c, qd_batch_t *b, const int32_t *toks,
                      int32_t n_ctx, int32_t first, int32_t bos)
{
    qd_kv_seq_clear(qd_ctx_kv(c), 0);
    for (int32_t j = 0; j < n_ctx; j++) {
        b->toks[j] = j == 0 && bos >= 0 ? bos : toks[j];
        b->pos[j] = j;
        b->seq[j] = 0;
        b->logits[j] = j >= first && j < n_ctx - 1;
    }
    b->n_tokens = n_ctx;
    return qd_ctx_decode(c, b);
}

int qd_perplexity(const qd_model_t *m, const qd_model_t *base,
                  const int32_t *toks, int64_t n_toks,
                  const qd_ppl_params_t *p, qd_ppl_result_t *out)
{
    const int32_t n_ctx = p->n_ctx, first = n_ctx / 2;
    const int32_t n_vocab = qd_model_hparams(m)->n_vocab;
    const int32_t n_score = n_ctx - 1 - first; /* per window */
    const int32_t bos = qd_tokenizer_bos(qd_model_tokenizer(m));
    qd_ctx_t *c = NULL, *cb = NULL;
    qd_batch_t b = {0};
    float *base_logits = NULL;
    double *lp = NULL, *lpb = NULL, *klds = NULL;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (n_ctx < 4) {
        qd_set_errmsg("perplexity: context %d is too short", n_ctx);
        return QD_EINVAL;
    }
    int64_t n_chunks = n_toks / n_ctx;
    if (p->n_chunks > 0 && p->n_chunks < n_chunks)
        n_chunks = p->n_chunks;
    if (n_chunks < 1) {
        qd_set_errmsg("perplexity: %lld tokens are fewer than one window of "
                      "%d", (long long)n_toks, n_ctx);
        return QD_EINVAL;
    }
    if (base && qd_model_hparams(base)->n_vocab != n_vocab) {
        qd_set_errmsg("perplexity: vocabularies differ (%d and %d tokens)",
                      n_vocab, qd_model_hparams(base)->n_vocab);
        return QD_EINVAL;
    }
    for (int64_t i = 0; i < n_chunks * n_ctx; i++) {
        if (toks[i] < 0 || toks[i] >= n_vocab) {
            qd_set_errmsg("perplexity: token %d at %lld is outside the "
                          "vocabulary", toks[i], (long long)i);
            return QD_EINVAL;
        }
    }

    qd_ctx_params_t cp;
    qd_ctx_params_default(&cp);
    cp.n_batch = n_ctx;
    cp.n_seq_max = 1;
    cp.n_ctx = n_ctx;
    cp.n_threads = p->n_threads;
    if ((rc = qd_ctx_create(m, &cp, &c)) ||
        (base && (rc = qd_ctx_create(base, &cp, &cb))))
        goto out;

    b.toks = qd_calloc((size_t)n_ctx, sizeof *b.toks);
    b.pos = qd_calloc((size_t)n_ctx, sizeof *b.pos);
    b.seq = qd_calloc((size_t)n_ctx, sizeof *b.seq);
    b.logits = qd_calloc((size_t)n_ctx, sizeof *b.logits);
    lp = qd_malloc((size_t)n_vocab * sizeof *lp);
    lpb = qd_malloc((size_t)n_vocab * sizeof *lpb);
    if (!b.toks || !b.pos || !b.seq || !b.logits || !lp || !lpb)
        goto oom;
    if (base) {
        size_t nl, nk;
        if (qd_mul_size((size_t)n_score * sizeof(float), (size_t)n_vocab,
                        &nl) ||
            qd_mul_size((size_t)(n_chunks * n_score), sizeof(double), &nk))
            goto oom;
        if (!(base_logits = qd_malloc(nl)) || !(klds = qd_malloc(nk)))
            goto oom;
    }

    double nll = 0, nll2 = 0, bnll = 0, bnll2 = 0, kl = 0, kl2 = 0;
    double dl = 0, dl2 = 0;
    int64_t n = 0, same_top = 0;
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        const int32_t *w = toks + ch * n_ctx;
        if (base) {
            if ((rc = run_window(cb, &b, w, n_ctx, first, bos)))
                goto out;
            for (int32_t j = 0; j < n_score; j++)
                memcpy(base_logits + (size_t)j * n_vocab,
                       qd_ctx_logits(cb, j), (size_t)n_vocab * sizeof(float));
        }
        if ((rc = run_window(c, &b, w, n_ctx, first, bos)))
            goto out;
        for (int32_t j = 0; j < n_score; j++) {
            const float *l = qd_ctx_logits(c, j);
            int32_t next = w[first + j + 1];
            log_softmax(l, n_vocab, lp);
            double x = -lp[next];
            nll += x;
            nll2 += x * x;
            if (base) {
                const float *lb = base_logits + (size_t)j * n_vocab;
                log_softmax(lb, n_vocab, lpb);
                double k = 0, y = -lpb[next];
                for (int32_t i = 0; i < n_vocab; i++)
                    k += exp(lpb[i]) * (lpb[i] - lp[i]);
                k = k > 0 ? k : 0; /* rounding can give -1e-17 */
                klds[n] = k;
                kl += k;
                kl2 += k * k;
                bnll += y;
                bnll2 += y * y;
                dl += x - y;
                dl2 += (x - y) * (x - y);
                same_top += argmax(l, n_vocab) == argmax(lb, n_vocab);
            }
            n++;
        }
        if (p->progress)
            p->progress(p->progress_ud, (int32_t)(ch + 1), (int32_t)n_chunks,
                        exp(nll / (double)n));
    }

    out->n_chunks = (int32_t)n_chunks;
    out->n_scored = n;
    out->ppl = exp(nll / (double)n);
    out->ppl_err = out->ppl * std_err(nll, nll2, n);
    if (base) {
        out->has_base = 1;
        out->base_ppl = exp(bnll / (double)n);
        out->base_ppl_err = out->base_ppl * std_err(bnll, bnll2, n);
        out->kld_mean = kl / (double)n;
        out->kld_err = std_err(kl, kl2, n);
        out->ln_ppl_ratio = dl / (double)n;
        out->ln_ppl_ratio_err = std_err(dl, dl2, n);
        out->top1_agree = (double)same_top / (double)n;
        qsort(klds, (size_t)n, sizeof *klds, cmp_double);
        out->kld_median = klds[n / 2];
        out->kld_p99 = klds[QD_MIN(n - 1, (int64_t)(0.99 * (double)n))];
        out->kld_max = klds[n - 1];
    }
    goto out;
oom:
    rc = QD_ENOMEM;
    qd_set_errmsg("perplexity: out of memory");
out:
    qd_free(klds);
    qd_free(base_logits);
    qd_free(lp);
    qd_free(lpb);
    qd_free(b.toks);
    qd_free(b.pos);
    qd_free(b.seq);
    qd_free(b.logits);
    qd_ctx_free(cb);
    qd_ctx_free(c);
    return rc;
}
