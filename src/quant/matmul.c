/*
 * matmul.c — batched matrix products over the compute pool.
 *
 * Phase 1: each thread quantizes a share of the n_tok activation rows to the
 * weight type's vec_dot_type (Q8_0, Q8_1, Q8_K, F16 …) into scratch; when
 * the tiled path will run, it also unpacks them (qd__tile_act: int8 values
 * contiguous, per-subblock scale and scaled sum).
 * Phase 2: each thread owns a contiguous range of weight rows (in chunks of
 * 16, the tile height) and computes every activation row against them, so a
 * weight row is streamed from memory once per batch, whatever n_tok is.
 * Each output element is computed by one thread in a fixed order, so the
 * result does not depend on the number of threads.
 *
 * Scratch layout: n_tok activation rows (64-aligned stride), then for the
 * tiled path n_tok*n_cols int8 values, then ta and tb (n_tok*n_cols/16
 * floats each, at most).
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

static size_t tile_bytes(const qd_qmat_t *w, int n_tok)
{
    if (!qd__tile_sub(w->type))
        return 0;
    size_t n = (size_t)(n_tok > 0 ? n_tok : 1);
    size_t qs = QD_ALIGN_UP(n * (size_t)w->n_cols, 64);
    size_t t = QD_ALIGN_UP(n * (size_t)(w->n_cols / 16) * sizeof(float), 64);
    return qs + 2 * t;
}

/* BF16 path: n_tok rows of bf16 values, padded to a multiple of 16. */
static size_t bf16_bytes(const qd_qmat_t *w, int n_tok)
{
    if (!qd__tile_sub(w->type) || w->n_cols % 32)
        return 0;
    size_t n = QD_ALIGN_UP((size_t)(n_tok > 0 ? n_tok : 1), 16);
    return QD_ALIGN_UP(n * (size_t)w->n_cols * 2, 64);
}

size_t qd_matmul_scratch_bytes(const qd_qmat_t *w, int n_tok)
{
    size_t a = act_row_bytes(w) * (size_t)(n_tok > 0 ? n_tok : 1) +
               tile_bytes(w, n_tok);
    return QD_MAX(a, bf16_bytes(w, n_tok));
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
    int tiled;
    uint16_t *bf;   /* bf16 path: blocked bf16 activations */
    int8_t *qs;     /* tiled: n_tok x n_cols */
    float *ta, *tb; /* tiled: n_tok x (n_cols / S) */
} matmul_job_t;

static void quantize_phase(void *v, int ith, int nth)
{
    matmul_job_t *j = v;
    const qd_qmat_t *w = j->w;
    qd_type_t at = qd_type_traits(w->type)->vec_dot_type;
    int64_t ns = j->tiled ? w->n_cols / qd__tile_sub(w->type) : 0;
    if (j->bf) {
        int64_t nc = w->n_cols / 32;
        for (int t = ith; t < j->n_tok; t += nth)
            j->k->act_bf16(j->x + (int64_t)t * j->ldx, w->n_cols,
                           j->bf + ((size_t)(t / 16) * (size_t)nc * 512 + (size_t)(t % 16) * 32));
        return;
    }
    for (int t = ith; t < j->n_tok; t += nth) {
        uint8_t *a = j->act + (size_t)t * j->act_stride;
        j->k->from_float(at, j->x + (int64_t)t * j->ldx, a, w->n_cols);
        if (j->tiled)
            qd__tile_act(w->type, a, w->n_cols, j->qs + (size_t)t * w->n_cols,
                         j->ta + t * ns, j->tb + t * ns);
    }
}

static void dot_phase(void *v, int ith, int nth)
{
    matmul_job_t *j = v;
    const qd_qmat_t *w = j->w;
    int64_t n_chunks = (w->n_rows + QD_TILE_ROWS - 1) / QD_TILE_ROWS;
    int64_t c0 = n_chunks * ith / nth, c1 = n_chunks * (ith + 1) / nth;
    int64_t r0 = c0 * QD_TILE_ROWS, r1 = QD_MIN(c1 * QD_TILE_ROWS, w->n_rows);
    if (r0 >= r1)
        return;
    if (j->bf)
        j->k->gemm_bf16(w, r0, r1, j->bf, j->n_tok, j->out, j->ldo);
    else if (j->tiled)
        j->k->gemm_tiled(w, r0, r1, j->qs, j->ta, j->tb, j->n_tok, j->out, j->ldo);
    else
        j->k->gemm(w, r0, r1, j->act, j->act_stride, j->n_tok, j->out, j->ldo);
}

/* qd_matmul with a given kernel set (tests compare sets through this). */
void qd__matmul_with(const qd_kernels_t *k, qd_pool_t *pool,
                     float *restrict out, int64_t ldo, const qd_qmat_t *w,
                     const float *restrict x, int64_t ldx, int n_tok,
                     void *scratch)
{
    if (n_tok <= 0)
        return;
    matmul_job_t j = {
        .out = out,
        .ldo = ldo,
        .w = w,
        .x = x,
        .ldx = ldx,
        .n_tok = n_tok,
        .act = scratch,
        .act_stride = act_row_bytes(w),
        .k = k,
    };
    int S = qd__tile_sub(w->type);
    if (k->gemm_bf16 && S && n_tok >= k->bf16_min_tok && w->n_cols % 32 == 0) {
        j.bf = scratch;
    } else if (k->gemm_tiled && S && n_tok >= k->tile_min_tok) {
        uint8_t *p = (uint8_t *)scratch + j.act_stride * (size_t)n_tok;
        size_t tsz = QD_ALIGN_UP((size_t)n_tok * (size_t)(w->n_cols / 16) * sizeof(float), 64);
        j.tiled = 1;
        j.qs = (int8_t *)p;
        p += QD_ALIGN_UP((size_t)n_tok * (size_t)w->n_cols, 64);
        j.ta = (float *)p;
        j.tb = (float *)(p + tsz);
    }
    qd_type_t at = qd_type_traits(w->type)->vec_dot_type;
    if (j.bf) {
        qd_pool_run(pool, quantize_phase, &j);
    } else if (at == QD_TYPE_F32) {
        /* F32 weights read the activations as they are. */
        j.act = (uint8_t *)(uintptr_t)x;
        j.act_stride = (size_t)ldx * sizeof(float);
    } else if (n_tok < qd_pool_size(pool)) {
        /* Decode: one activation row costs a few microseconds to
         * quantize, less than a pool hand-off. */
        quantize_phase(&j, 0, 1);
    } else {
        qd_pool_run(pool, quantize_phase, &j);
    }
    /* Below about 2^18 multiply-adds (tens of microseconds) a pool
     * hand-off costs more than it saves: small models' matrices run on
     * the caller. Each output is computed the same way either way. */
    if ((double)w->n_rows * (double)w->n_cols * n_tok < (double)(1 << 18))
        dot_phase(&j, 0, 1);
    else
        qd_pool_run(pool, dot_phase, &j);
}

void qd_matmul(qd_pool_t *pool, float *restrict out, int64_t ldo,
               const qd_qmat_t *w, const float *restrict x, int64_t ldx,
               int n_tok, void *scratch)
{
    qd__matmul_with(qd_kernels(), pool, out, ldo, w, x, ldx, n_tok, scratch);
}
