/*
 * compute.h — the matrix products the engine runs on, split over the
 * compute pool (quantd/threadpool.h).
 *
 * qd_matmul() computes out[t][r] = sum_k W[r][k] * x[t][k] for a whole batch
 * of n_tok activation rows: the activations are quantized once to the
 * weight type's vec_dot_type, then each thread takes a range of weight rows
 * and multiplies each row with all n_tok activations, so every weight block
 * is read from memory once per step, not once per token.
 */
#ifndef QUANTD_COMPUTE_H
#define QUANTD_COMPUTE_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/quant.h"
#include "quantd/threadpool.h"

/* A weight matrix as stored: n_rows rows of n_cols values of `type`. */
typedef struct {
    qd_type_t type;
    int64_t n_rows;   /* output features (ggml ne[1]) */
    int64_t n_cols;   /* input features (ggml ne[0]) */
    size_t row_bytes; /* qd_row_size(type, n_cols) */
    const void *data; /* n_rows * row_bytes, read-only (mmapped) */
    const void *packed; /* optional kernel-specific repacked copy, or NULL */
} qd_qmat_t;

/* Bytes of scratch qd_matmul needs for n_tok rows of activations for w. */
size_t qd_matmul_scratch_bytes(const qd_qmat_t *w, int n_tok);

/* out: n_tok rows, row t at out + t*ldo (ldo >= n_rows).
 * x:   n_tok rows of n_cols floats, row t at x + t*ldx.
 * scratch: at least qd_matmul_scratch_bytes(w, n_tok) bytes, 64-aligned.
 * Runs on the pool; results do not depend on the number of threads. */
void qd_matmul(qd_pool_t *pool, float *restrict out, int64_t ldo,
               const qd_qmat_t *w, const float *restrict x, int64_t ldx,
               int n_tok, void *scratch);

/* The same input through n_w matrices (out i = x * ws[i]^T, rows of
 * ldos[i]): matrices with the same n_cols and activation format share one
 * preparation of x and one pool phase (e.g. attention's q, k and v). Each
 * output equals qd_matmul's. scratch: the largest qd_matmul_scratch_bytes
 * of the matrices. */
void qd_matmul_multi(qd_pool_t *pool, int n_w, float *const outs[],
                     const int64_t ldos[], const qd_qmat_t *const ws[],
                     const float *restrict x, int64_t ldx, int n_tok,
                     void *scratch);

/* A coming qd_matmul / qd_matmul_multi on pool (the forward pass names
 * each product one product ahead) will be of ws[0..n_w) and n_tok rows:
 * have each thread prefetch the start of its share while it waits before
 * then (qd_pool_hint). Changes no result. */
void qd_matmul_hint(qd_pool_t *pool, int n_w, const qd_qmat_t *const ws[], int n_tok);

/* Name of the kernel set chosen at start-up ("scalar", "avx2", "avx512"). */
const char *qd_kernels_name(void);
/* The batch size from which qd_matmul rounds weights and activations to
 * bf16 (the AMX tile path), 0 if the set has no such path. */
int qd_matmul_bf16_min_tok(void);

#endif /* QUANTD_COMPUTE_H */
