/*
 * kernels_avx2.c — the AVX2 + FMA + F16C kernel set.
 *
 * Activation quantization and direct row dot products (kernels_x86.h) with
 * u8 x s8 products done by vpmaddubsw + vpmaddwd. No tiled path: prompt
 * batches run the direct dots row by row (the AVX-512 set tiles).
 */
#include "quant/kernels.h"

#include <immintrin.h>

static inline __m256i mul_sum_us8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#include "quant/kernels_x86.h"

static const qd_kernels_t avx2_kernels = {
    .name = "avx2",
    .from_float = x86_from_float,
    .gemm = x86_gemm_rows,
    .vec_dot = x86_vec_dot,
    .gemm_tiled = NULL,
};

const qd_kernels_t *qd__kernels_avx2(void) { return &avx2_kernels; }
