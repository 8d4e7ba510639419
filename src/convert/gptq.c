/*
 * gptq.c — GPTQ (Frantar et al., "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers") producing ggml
 * block formats.
 *
 * For a layer y = W x with inputs of second moment H = Σ x xᵀ, rounding
 * column j of W leaves an output error that the not-yet-rounded columns can
 * partly cancel: with U the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), fixing
 * column j to q_j moves the later columns by −(w_j − q_j)/U_jj · U_j,k.
 * Applied column after column this is exact for the quadratic error, even
 * when several columns are fixed at once: a ggml block's scales need all of
 * its columns, so each block of 32 / 256 columns is quantized together by
 * the type's own quantizer (its scales taken from the current,
 * error-compensated weights), and then its columns' errors are propagated
 * one by one, with their effect on columns past the current batch of 128
 * columns applied lazily in one product.
 */
#include <math.h>
#include <string.h>

#include "convert/calib_int.h"
#include "quantd/common.h"

#define MOD "gptq"
#define BATCH 128

/* In-place lower Cholesky factor of the n×n matrix a (row-major; the upper
 * triangle is cleared). 0, or -1 if a is not positive definite. */
static int cholesky(double *a, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; k++)
            d -= a[j * n + k] * a[j * n + k];
        if (!(d > 0))
            return -1;
        d = sqrt(d);
        a[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double v = a[i * n + j];
            for (int64_t k = 0; k < j; k++)
                v -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = v / d;
        }
        for (int64_t k = j + 1; k < n; k++)
            a[j * n + k] = 0;
    }
    return 0;
}

/* u = upper Cholesky factor of (l lᵀ)⁻¹ for lower-triangular l; t: n×n
 * scratch. 0 or -1. */
static int inverse_upper(const double *l, double *u, double *t, int64_t n)
{
    /* t = l⁻¹ (lower), by forward substitution column by column */
    memset(t, 0, (size_t)(n * n) * sizeof *t);
    for (int64_t c = 0; c < n; c++) {
        t[c * n + c] = 1.0 / l[c * n + c];
        for (int64_t i = c + 1; i < n; i++) {
            double v = 0;
            for (int64_t k = c; k < i; k++)
                v -= l[i * n + k] * t[k * n + c];
            t[i * n + c] = v / l[i * n + i];
        }
    }
    /* u = H⁻¹ = tᵀ t */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j <= i; j++) {
            double v = 0;
            for (int64_t k = i; k < n; k++)
                v += t[k * n + i] * t[k * n + j];
            u[i * n + j] = u[j * n + i] = v;
        }
    }
    if (cholesky(u, n))
        return -1;
    /* transpose the lower factor into the upper one */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) {
            u[j * n + i] = u[i * n + j];
            u[i * n + j] = 0;
        }
    return 0;
}

int qd__gptq_quantize(qd_type_t type, const float *w, int64_t rows,
                      int64_t cols, const double *h, double damp, void *dst)
{
    const qd_type_traits_t *tr = qd_type_traits(type);
    int64_t bs = tr->blck_size;
    size_t row_bytes = qd_row_size(type, cols);
    int rc = QD_ENOMEM;
    if (!tr->quantize || !tr->to_float || bs < 1 || cols % bs) {
        qd_set_errmsg("gptq: %lld columns do not split into %s blocks",
                      (long long)cols, tr->name);
        return QD_EINVAL;
    }
    size_t nn = (size_t)(cols * cols), nw = (size_t)(rows * cols);
    int64_t batch = QD_MAX(BATCH / bs, 1) * bs;
    double *a = qd_malloc(nn * sizeof *a), *u = qd_malloc(nn * sizeof *u);
    double *t = qd_malloc(nn * sizeof *t);
    float *W = qd_malloc(nw * sizeof *W);
    float *blk = qd_malloc((size_t)(rows * bs) * sizeof *blk);
    float *deq = qd_malloc((size_t)(rows * bs) * sizeof *deq);
    float *E = qd_malloc((size_t)(rows * batch) * sizeof *E);
    uint8_t *qb = qd_malloc(qd_row_size(type, bs) * (size_t)rows);
    if (!a || !u || !t || !W || !blk || !deq || !E || !qb) {
        qd_set_errmsg("gptq: out of memory for a %lld x %lld matrix",
                      (long long)rows, (long long)cols);
        goto out;
    }
    memcpy(a, h, nn * sizeof *a);
    memcpy(W, w, nw * sizeof *W);
    double mean = 0;
    for (int64_t j = 0; j < cols; j++)
        mean += a[j * cols + j];
    mean /= (double)cols;
    for (int64_t j = 0; j < cols; j++) {
        if (a[j * cols + j] == 0) { /* a dead input: its weights do nothing */
            a[j * cols + j] = 1;
            for (int64_t r = 0; r < rows; r++)
                W[r * cols + j] = 0;
        }
        a[j * cols + j] += damp * (mean > 0 ? mean : 1.0);
    }
    if (cholesky(a, cols) || inverse_upper(a, u, t, cols)) {
        QD_WARN(MOD, "H is not positive definite: plain rounding");
        tr->quantize(w, dst, rows, cols, NULL);
        rc = 0;
        goto out;
    }
    size_t qrow = qd_row_size(type, bs);
    for (int64_t b0 = 0; b0 < cols; b0 += batch) {
        int64_t b1 = QD_MIN(b0 + batch, cols), nb = b1 - b0;
        for (int64_t j0 = b0; j0 < b1; j0 += bs) {
            for (int64_t r = 0; r < rows; r++)
                memcpy(blk + r * bs, W + r * cols + j0, (size_t)bs * sizeof *blk);
            tr->quantize(blk, qb, rows, bs, NULL);
            tr->to_float(qb, deq, rows * bs);
            for (int64_t r = 0; r < rows; r++)
                memcpy((uint8_t *)dst + (size_t)r * row_bytes +
                           (size_t)(j0 / bs) * qrow,
                       qb + (size_t)r * qrow, qrow);
            for (int64_t j = j0; j < j0 + bs; j++) {
                const double *uj = u + j * cols;
                double d = uj[j];
                for (int64_t r = 0; r < rows; r++) {
                    float *wr = W + r * cols;
                    double e = (wr[j] - deq[r * bs + (j - j0)]) / d;
                    E[r * batch + (j - b0)] = (float)e;
                    for (int64_t k = j + 1; k < b1; k++)
                        wr[k] -= (float)(e * uj[k]);
                }
            }
        }
        /* lazy update of the columns after the batch */
        for (int64_t r = 0; r < rows; r++) {
            float *wr = W + r * cols;
            const float *er = E + r * batch;
            for (int64_t k = b1; k < cols; k++) {
                double acc = 0;
                for (int64_t j = 0; j < nb; j++)
                    acc += (double)er[j] * u[(b0 + j) * cols + k];
                wr[k] -= (float)acc;
            }
        }
    }
    rc = 0;
out:
    qd_free(a);
    qd_free(u);
    qd_free(t);
    qd_free(W);
    qd_free(blk);
    qd_free(deq);
    qd_free(E);
    qd_free(qb);
    return rc;
}
