/*
 * matmul.c — batched matrix products over the compute pool.
 *
 * Phase 1: each thread quantizes a share of the n_tok activation rows to the
 * weight type's vec_dot_type (Q8_0, Q8_1, Q8_K, F16 …) into scratch.
 * Phase 2: each thread owns a contiguous range of weight rows and, for each
 * row, takes the dot product with every activation row, so a weight row is
 * streamed from memory once per batch, whatever n_tok is.
 *
 * This file holds the portable driver and the scalar path; the vec_dot it
 * calls comes from the kernel table chosen at start-up (quant/kernels.c).
 */
#include <string.h>

#include "quant/kernels.h"
#include "quantd/common.h"
#include "quantd/compute.h"

static size_t act_row_bytes(const qd_qmat_t *w)
{
    const qd_type_traits_t *tr = qd_type_traits(w->type);
    return QD_ALIGN_UP(qd_row_size(tr->vec_dot_type, w->n_cols), 64);
}

size_t qd_matmul_scratch_bytes(const qd_qmat_t *w, int n_tok)
{
    return act_row_bytes(w) * (size_t)(n_tok > 0 ? n_tok : 1);
}

typedef struct {
    float *out;
    int64_t ldo;
    const qd_qmat_t *w;
    const float *x;
    int64_t ldx;
    int n_tok;
    uint8_t *act;
    size_t act_stride;
    const qd_kernels_t *k;
} matmul_job_t;

static void quantize_phase(void *v, int ith, int nth)
{
    matmul_job_t *j = v;
    const qd_type_traits_t *tr = qd_type_traits(j->w->type);
    qd_type_t at = tr->vec_dot_type;
    for (int t = ith; t < j->n_tok; t += nth)
        j->k->from_float(at, j->x + (int64_t)t * j->ldx,
                         j->act + (size_t)t * j->act_stride, j->w->n_cols);
}

static void dot_phase(void *v, int ith, int nth)
{
    matmul_job_t *j = v;
    const qd_qmat_t *w = j->w;
    /* Rows split in chunks of 16 so each thread's range stays contiguous. */
    int64_t n_chunks = (w->n_rows + 15) / 16;
    int64_t c0 = n_chunks * ith / nth, c1 = n_chunks * (ith + 1) / nth;
    int64_t r0 = c0 * 16, r1 = QD_MIN(c1 * 16, w->n_rows);
    if (r0 >= r1)
        return;
    j->k->gemm(w, r0, r1, j->act, j->act_stride, j->n_tok, j->out, j->ldo);
}

void qd_matmul(qd_pool_t *pool, float *restrict out, int64_t ldo,
               const qd_qmat_t *w, const float *restrict x, int64_t ldx,
               int n_tok, void *scratch)
{
    matmul_job_t j = {
        .out = out,
        .ldo = ldo,
        .w = w,
        .x = x,
        .ldx = ldx,
        .n_tok = n_tok,
        .act = scratch,
        .act_stride = act_row_bytes(w),
        .k = qd_kernels(),
    };
    qd_type_t at = qd_type_traits(w->type)->vec_dot_type;
    if (at == QD_TYPE_F32) {
        /* F32 weights read the activations as they are. */
        j.act = (uint8_t *)(uintptr_t)x;
        j.act_stride = (size_t)ldx * sizeof(float);
    } else {
        qd_pool_run(pool, quantize_phase, &j);
    }
    qd_pool_run(pool, dot_phase, &j);
}
