/*
 * kernels_avx512.c — the AVX-512 (F/BW/VL/DQ) + VNNI kernel set.
 *
 * Decode (few activation rows): the direct dot products of kernels_x86.h
 * with vpdpbusd for u8 x s8 sums.
 * Prompt and batches (many rows): the tiled path. 16 weight rows are
 * decoded (quant/tile.c) to u8 values interleaved by 4, so one zmm holds 4
 * consecutive values of each of the 16 rows; vpdpbusd against 4 broadcast
 * activation bytes then advances 16 dot products at once, lanes = rows.
 * A micro-kernel keeps NC activation rows' accumulators in registers so
 * each decoded weight vector is loaded once per NC tokens, and the decoded
 * tile (16 x QD_TILE_K) stays in L1 while every token of the batch passes.
 */
#include "quant/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "quantd/common.h"

static inline __m256i mul_sum_us8(__m256i u, __m256i s)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#include "quant/kernels_x86.h"

#define NC_MAX 8

static inline __attribute__((always_inline)) void
micro(const int NC, const int S, const uint8_t *restrict u,
      const float *restrict dsc, const float *restrict corr, int ns,
      const int8_t *restrict qs, int64_t qs_stride, const float *restrict ta,
      const float *restrict tb, int64_t t_stride, float *restrict out,
      int64_t ldo, __mmask16 mask, int first)
{
    __m512 facc[NC_MAX];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        facc[c] = _mm512_setzero_ps();
    for (int s = 0; s < ns; s++) {
        __m512i ia[NC_MAX];
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            ia[c] = _mm512_setzero_si512();
        const uint8_t *us = u + (size_t)s * (S / 4) * 64;
        const int8_t *as = qs + (size_t)s * S;
#pragma GCC unroll 8
        for (int g = 0; g < S / 4; g++) {
            __m512i w = _mm512_load_si512((const void *)(us + g * 64));
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) {
                int32_t a4;
                memcpy(&a4, as + c * qs_stride + 4 * g, 4);
                ia[c] = _mm512_dpbusd_epi32(ia[c], w, _mm512_set1_epi32(a4));
            }
        }
        __m512 dv = _mm512_load_ps(dsc + s * 16);
        __m512 cv = _mm512_load_ps(corr + s * 16);
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(ia[c]), dv);
            facc[c] = _mm512_fmadd_ps(p, _mm512_set1_ps(ta[c * t_stride + s]), facc[c]);
            facc[c] = _mm512_fmadd_ps(cv, _mm512_set1_ps(tb[c * t_stride + s]), facc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        float *o = out + c * ldo;
        __m512 v = facc[c];
        if (!first)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, o));
        _mm512_mask_storeu_ps(o, mask, v);
    }
}

#define MICRO_CASE(NC_, S_)                                                    \
    case NC_:                                                                  \
        micro(NC_, S_, u, dsc, corr, ns, qs, qs_stride, ta, tb, t_stride, out, \
              ldo, mask, first);                                               \
        break;

static void micro_s32(int nc, const uint8_t *u, const float *dsc,
                      const float *corr, int ns, const int8_t *qs,
                      int64_t qs_stride, const float *ta, const float *tb,
                      int64_t t_stride, float *out, int64_t ldo,
                      __mmask16 mask, int first)
{
    switch (nc) {
        MICRO_CASE(1, 32) MICRO_CASE(2, 32) MICRO_CASE(3, 32) MICRO_CASE(4, 32)
        MICRO_CASE(5, 32) MICRO_CASE(6, 32) MICRO_CASE(7, 32) MICRO_CASE(8, 32)
    }
}

static void micro_s16(int nc, const uint8_t *u, const float *dsc,
                      const float *corr, int ns, const int8_t *qs,
                      int64_t qs_stride, const float *ta, const float *tb,
                      int64_t t_stride, float *out, int64_t ldo,
                      __mmask16 mask, int first)
{
    switch (nc) {
        MICRO_CASE(1, 16) MICRO_CASE(2, 16) MICRO_CASE(3, 16) MICRO_CASE(4, 16)
        MICRO_CASE(5, 16) MICRO_CASE(6, 16) MICRO_CASE(7, 16) MICRO_CASE(8, 16)
    }
}

static void avx512_gemm_tiled(const qd_qmat_t *w, int64_t r0, int64_t r1,
                              const int8_t *qs, const float *ta,
                              const float *tb, int n_tok, float *out,
                              int64_t ldo)
{
    const int S = qd__tile_sub(w->type);
    const int64_t K = w->n_cols, NS = K / S;
    _Alignas(64) uint8_t u[QD_TILE_ROWS * QD_TILE_K];
    _Alignas(64) float dsc[QD_TILE_K / 16 * QD_TILE_ROWS];
    _Alignas(64) float corr[QD_TILE_K / 16 * QD_TILE_ROWS];
    for (int64_t rt = r0; rt < r1; rt += QD_TILE_ROWS) {
        int nr = (int)QD_MIN((int64_t)QD_TILE_ROWS, r1 - rt);
        __mmask16 mask = (__mmask16)((1u << nr) - 1);
        const uint8_t *row0 = (const uint8_t *)w->data + (size_t)rt * w->row_bytes;
        for (int64_t k0 = 0; k0 < K; k0 += QD_TILE_K) {
            int nk = (int)QD_MIN((int64_t)QD_TILE_K, K - k0);
            int ns = nk / S;
            qd__tile_decode(w->type, row0, w->row_bytes, nr, k0, nk, u, dsc, corr);
            for (int t = 0; t < n_tok; t += NC_MAX) {
                int nc = QD_MIN(NC_MAX, n_tok - t);
                const int8_t *q = qs + (size_t)t * K + k0;
                const float *a = ta + t * NS + k0 / S, *b = tb + t * NS + k0 / S;
                float *o = out + t * ldo + rt;
                if (S == 32)
                    micro_s32(nc, u, dsc, corr, ns, q, K, a, b, NS, o, ldo, mask, k0 == 0);
                else
                    micro_s16(nc, u, dsc, corr, ns, q, K, a, b, NS, o, ldo, mask, k0 == 0);
            }
        }
    }
}

static const qd_kernels_t avx512_kernels = {
    .name = "avx512",
    .from_float = x86_from_float,
    .gemm = x86_gemm_rows,
    .vec_dot = x86_vec_dot,
    .gemm_tiled = avx512_gemm_tiled,
    .tile_min_tok = 4,
};

const qd_kernels_t *qd__kernels_avx512(void) { return &avx512_kernels; }
