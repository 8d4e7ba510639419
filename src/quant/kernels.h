/*
 * kernels.h — the kernel table chosen once at start-up (scalar, AVX2,
 * AVX-512). Internal to quant/: the engine only sees qd_matmul().
 */
#ifndef QUANTD_QUANT_KERNELS_H
#define QUANTD_QUANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/compute.h"
#include "quantd/quant.h"

typedef struct {
    const char *name;
    /* Quantize one activation row of n floats to type t (a vec_dot_type). */
    void (*from_float)(qd_type_t t, const float *restrict x, void *restrict y,
                       int64_t n);
    /* out[t*ldo + r] = dot(W row r, act row t) for r in [r0, r1), t < n_tok.
     * act rows are vec_dot_type rows, act_stride bytes apart. */
    void (*gemm)(const qd_qmat_t *w, int64_t r0, int64_t r1,
                 const void *act, size_t act_stride, int n_tok,
                 float *out, int64_t ldo);
    /* Single dot product with the set's vec_dot for weight type wt. */
    void (*vec_dot)(qd_type_t wt, int n, float *restrict s,
                    const void *restrict x, const void *restrict y);
} qd_kernels_t;

/* The table in use (chosen on first call; QD_KERNELS=scalar|avx2|avx512
 * forces one). Thread-safe. */
const qd_kernels_t *qd_kernels(void);
/* The scalar reference table (always available, for tests). */
const qd_kernels_t *qd_kernels_scalar(void);

#endif
