/*
 * awq_gguf.c — the AWQ scale search for GGUF quantization (after Lin et
 * al., "AWQ: Activation-aware Weight Quantization").
 *
 * Input channels that carry large activations matter more; scaling such a
 * column of W up by s_j (and its input down by 1/s_j, folded into the
 * preceding RMSNorm weight) leaves the float function unchanged but gives
 * the column relatively finer quantization steps. The scale is
 * s = mean|x|^alpha, and alpha is chosen on a grid by the error it leaves
 * in the layer's output on sampled calibration rows, measured with the
 * target block type's own quantizer and dequantizer.
 */
#include <math.h>
#include <string.h>

#include "convert/calib_int.h"
#include "quantd/common.h"
#include "quantd/compute.h"

#define N_GRID 20
#define SAMPLE_BATCH 64 /* sample rows per matmul */

void qd__awq_scales(const double *act_mean, int64_t n, float alpha, float *s)
{
    double lo = INFINITY, hi = 0;
    for (int64_t j = 0; j < n; j++) {
        double v = pow(QD_MAX(act_mean[j], 1e-8), (double)alpha);
        s[j] = (float)v;
        lo = QD_MIN(lo, v);
        hi = QD_MAX(hi, v);
    }
    double norm = sqrt(lo * hi);
    for (int64_t j = 0; j < n; j++)
        s[j] = (float)(s[j] / norm);
}

static int type_round(void *ud, int k, const float *w, int64_t rows,
                      int64_t n, float *out)
{
    const qd_type_t *types = ud;
    const qd_type_traits_t *tr = qd_type_traits(types[k]);
    if (!tr->is_quantized) {
        memcpy(out, w, (size_t)(rows * n) * sizeof *out);
        return 0;
    }
    void *qb = qd_malloc(QD_MAX(qd_row_size(types[k], n) * (size_t)rows, 1));
    if (!qb) {
        qd_set_errmsg("awq: out of memory");
        return QD_ENOMEM;
    }
    tr->quantize(w, qb, rows, n, NULL);
    tr->to_float(qb, out, rows * n);
    qd_free(qb);
    return 0;
}

qd_awq_rounder_t qd__awq_type_rounder(const qd_type_t *types)
{
    qd_awq_rounder_t r = {type_round, (void *)types};
    return r;
}

/* Scratch of one search. */
typedef struct {
    qd_pool_t *pool;   /* for the error products */
    float *ws, *dq;    /* rows × n */
    float *y;          /* n_sample × rows */
    void *scratch;     /* for qd_matmul */
} search_buf_t;

/* Σ over sample rows of ‖(W − Wq) x‖², Wq the rounding of W diag(s)
 * brought back by diag(1/s); the products D·x by the engine's F32 matmul. */
static int group_error(const float *sample, int64_t n_sample, int64_t n,
                       const float *w, int64_t rows, int k,
                       const qd_awq_rounder_t *rd, const float *s,
                       search_buf_t *b, double *out)
{
    float *ws = b->ws, *dq = b->dq;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            ws[r * n + j] = w[r * n + j] * s[j];
    int rc = rd->round(rd->ud, k, ws, rows, n, dq);
    if (rc)
        return rc;
    /* dq becomes the weight error D = W − deq · diag(1/s) */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            dq[r * n + j] = w[r * n + j] - dq[r * n + j] / s[j];
    qd_qmat_t d = {QD_TYPE_F32, rows, n, (size_t)n * sizeof(float), dq, NULL};
    double err = 0;
    for (int64_t t0 = 0; t0 < n_sample; t0 += SAMPLE_BATCH) {
        int nt = (int)QD_MIN(SAMPLE_BATCH, n_sample - t0);
        qd_matmul(b->pool, b->y, rows, &d, sample + t0 * n, n, nt, b->scratch);
        for (int64_t i = 0; i < (int64_t)nt * rows; i++)
            err += (double)b->y[i] * b->y[i];
    }
    *out = err;
    return 0;
}

int qd__awq_search(const float *sample, int64_t n_sample, int64_t n,
                   const double *act_mean, const float *const *w,
                   const int64_t *rows, int nw, const qd_awq_rounder_t *rd,
                   int n_threads, float *s, float *alpha, double *err,
                   double *err0)
{
    int64_t max_rows = 0;
    int rc = 0;
    for (int k = 0; k < nw; k++)
        max_rows = QD_MAX(max_rows, rows[k]);
    size_t nf = (size_t)(max_rows * n);
    search_buf_t b = {0};
    qd_qmat_t big = {QD_TYPE_F32, max_rows, n, (size_t)n * sizeof(float),
                     NULL, NULL};
    float *cur = qd_malloc((size_t)n * sizeof *cur);
    b.ws = qd_malloc(QD_MAX(nf, 1) * sizeof *b.ws);
    b.dq = qd_malloc(QD_MAX(nf, 1) * sizeof *b.dq);
    b.y = qd_malloc((size_t)QD_MAX(max_rows * SAMPLE_BATCH, 1) * sizeof *b.y);
    b.scratch = qd_malloc_aligned(
        QD_MAX(qd_matmul_scratch_bytes(&big, SAMPLE_BATCH), 64), 64);
    if (!cur || !b.ws || !b.dq || !b.y || !b.scratch ||
        qd_pool_create(n_threads > 0 ? n_threads : qd_physical_cores(),
                       &b.pool)) {
        qd_set_errmsg("awq: out of memory");
        rc = QD_ENOMEM;
        goto out;
    }
    double best = INFINITY;
    *alpha = 0;
    for (int gi = 0; gi < N_GRID; gi++) {
        float a = (float)gi / N_GRID;
        qd__awq_scales(act_mean, n, a, cur);
        double e = 0;
        for (int k = 0; k < nw; k++) {
            double ek;
            if ((rc = group_error(sample, n_sample, n, w[k], rows[k], k, rd,
                                  cur, &b, &ek)))
                goto out;
            e += ek;
        }
        if (gi == 0)
            *err0 = e;
        if (e < best) {
            best = e;
            *alpha = a;
            memcpy(s, cur, (size_t)n * sizeof *s);
        }
    }
    *err = best;
out:
    qd_pool_destroy(b.pool);
    qd_free_aligned(b.scratch);
    qd_free(b.y);
    qd_free(b.ws);
    qd_free(b.dq);
    qd_free(cur);
    return rc;
}
