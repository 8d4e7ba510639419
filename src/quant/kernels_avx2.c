/*
 * kernels_avx2.c — the AVX2 + FMA + F16C kernel set.
 *
 * Activation quantization and direct row dot products (kernels_x86.h) with
 * u8 x s8 products done by vpmaddubsw + vpmaddwd, and from 4 tokens the
 * tiled path (tile.c's decoded weights, micro2 below) for the types whose
 * decoded values stay within vpmaddubsw's exact range.
 */
#include "quant/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "quantd/common.h"

static inline __m256i mul_sum_us8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#include "quant/kernels_x86.h"

/* ---- tiled path (prompts, batches from 4 tokens) ----
 * The weights decoded by tile.c (u8 values of 16 rows interleaved by 4,
 * a scale and a correction per subblock; see quant/kernels.h) meet up to
 * NC2 tokens at a time. Without VNNI the u8 x s8 products go through
 * vpmaddubsw, whose int16 pair sums saturate past 32767: exact only while
 * u <= 127 (2 x 127 x 128 = 32512). The decoded values of Q8_0 and the
 * IQ4 types (value + 128) pass 127: those take their signed values back
 * (SGN, below); the others' u are at most 63 (Q6_K). The int16
 * sums of G groups of 4 values add up before one vpmaddwd widens them,
 * G as the type's largest u allows (G * 2 * umax * 128 <= 32767: 8 for
 * 4-bit values, 4 for 5-bit and Q3_K's, 2 for Q6_K's). Per subblock and
 * token the 16 rows' sums are two ymm, scaled as the AVX-512 micro kernel
 * scales them (corrections folded into ti for offset types, the Q8_K
 * scale once per superblock).
 *
 * SGN (Q8_0, IQ4_NL, IQ4_XS): u ^ 0x80 is the signed value q (u = q +
 * 128; IQ4's table values lie in -127..113), and q * a =
 * |q| * (a with q's sign), which vpsignb gives: |q| <= 128 and |a| <= 127
 * keep a pair within 32512, so each group is widened at once (G = 1), and
 * the sums are sum q * a with no offset to correct (corr, tb and ti are
 * not read). |q| is taken once per tile load, the sign once per token. */
#define NC2 4

static inline __attribute__((always_inline)) void
micro2(const int NC, const int S, const int OFF, const int PER, const int G, const int SGN,
       const uint8_t *restrict u,
       const float *restrict dsc, const float *restrict corr, int ns,
       const int8_t *restrict qs, int64_t qs_stride, const float *restrict ta,
       const float *restrict tb, const int32_t *restrict ti, int64_t t_stride,
       float *restrict out, int64_t ldo, int nr, int first)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 facc[NC2][2], acc[NC2][2];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        for (int h = 0; h < 2; h++)
            facc[c][h] = acc[c][h] = _mm256_setzero_ps();
    for (int s = 0; s < ns; s++) {
        __m256i ia[NC2][2];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            ia[c][0] = ia[c][1] =
                OFF ? _mm256_set1_epi32(ti[c * t_stride + s]) : _mm256_setzero_si256();
        const uint8_t *us = u + (size_t)s * (S / 4) * 64;
        const int8_t *as = qs + (size_t)s * S;
#pragma GCC unroll 8
        for (int g0 = 0; g0 < S / 4; g0 += G) {
            __m256i h16[NC2][2];
#pragma GCC unroll 8
            for (int g = g0; g < g0 + G; g++) {
                __m256i w0 = _mm256_load_si256((const __m256i *)(us + g * 64));
                __m256i w1 = _mm256_load_si256((const __m256i *)(us + g * 64 + 32));
                __m256i q0 = w0, q1 = w1;
                if (SGN) {
                    const __m256i bias = _mm256_set1_epi8((char)0x80);
                    q0 = _mm256_xor_si256(w0, bias);
                    q1 = _mm256_xor_si256(w1, bias);
                    w0 = _mm256_abs_epi8(q0);
                    w1 = _mm256_abs_epi8(q1);
                }
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    int32_t a4;
                    memcpy(&a4, as + c * qs_stride + 4 * g, 4);
                    const __m256i a = _mm256_set1_epi32(a4);
                    const __m256i p0 = _mm256_maddubs_epi16(w0, SGN ? _mm256_sign_epi8(a, q0) : a);
                    const __m256i p1 = _mm256_maddubs_epi16(w1, SGN ? _mm256_sign_epi8(a, q1) : a);
                    h16[c][0] = g == g0 ? p0 : _mm256_add_epi16(h16[c][0], p0);
                    h16[c][1] = g == g0 ? p1 : _mm256_add_epi16(h16[c][1], p1);
                }
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                ia[c][0] = _mm256_add_epi32(ia[c][0], _mm256_madd_epi16(h16[c][0], ones));
                ia[c][1] = _mm256_add_epi32(ia[c][1], _mm256_madd_epi16(h16[c][1], ones));
            }
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 dv = _mm256_load_ps(dsc + s * 16 + 8 * h);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                if (PER == 1) {
                    __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(ia[c][h]), dv);
                    facc[c][h] =
                        _mm256_fmadd_ps(p, _mm256_set1_ps(ta[c * t_stride + s]), facc[c][h]);
                } else {
                    acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[c][h]), dv, acc[c][h]);
                }
                if (!OFF && !SGN)
                    facc[c][h] = _mm256_fmadd_ps(_mm256_load_ps(corr + s * 16 + 8 * h),
                                                 _mm256_set1_ps(tb[c * t_stride + s]),
                                                 facc[c][h]);
            }
        }
        if (PER > 1 && s % PER == PER - 1) {
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                for (int h = 0; h < 2; h++) {
                    facc[c][h] = _mm256_fmadd_ps(acc[c][h], _mm256_set1_ps(ta[c * t_stride + s]),
                                                 facc[c][h]);
                    acc[c][h] = _mm256_setzero_ps();
                }
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        _Alignas(32) float v[16];
        _mm256_store_ps(v, facc[c][0]);
        _mm256_store_ps(v + 8, facc[c][1]);
        float *o = out + c * ldo;
        for (int r = 0; r < nr; r++)
            o[r] = first ? v[r] : o[r] + v[r];
    }
}

typedef void (*micro2_fn)(int nc, const uint8_t *u, const float *dsc, const float *corr,
                          int ns, const int8_t *qs, int64_t qs_stride, const float *ta,
                          const float *tb, const int32_t *ti, int64_t t_stride, float *out,
                          int64_t ldo, int nr, int first);

#define MICRO2_CASE(NC_, S_, OFF_, PER_, G_, SGN_)                                      \
    case NC_:                                                                           \
        micro2(NC_, S_, OFF_, PER_, G_, SGN_, u, dsc, corr, ns, qs, qs_stride, ta, tb, ti, \
               t_stride, out, ldo, nr, first);                                          \
        break;

#define MICRO2_FN(name, S_, OFF_, PER_, G_, SGN_)                                      \
    static void name(int nc, const uint8_t *u, const float *dsc, const float *corr,    \
                     int ns, const int8_t *qs, int64_t qs_stride, const float *ta,     \
                     const float *tb, const int32_t *ti, int64_t t_stride, float *out, \
                     int64_t ldo, int nr, int first)                                   \
    {                                                                                  \
        switch (nc) {                                                                  \
            MICRO2_CASE(1, S_, OFF_, PER_, G_, SGN_)                                   \
            MICRO2_CASE(2, S_, OFF_, PER_, G_, SGN_)                                   \
            MICRO2_CASE(3, S_, OFF_, PER_, G_, SGN_)                                   \
            MICRO2_CASE(4, S_, OFF_, PER_, G_, SGN_)                                   \
        }                                                                              \
    }

MICRO2_FN(micro2_s32_g8, 32, 0, 1, 8, 0)         /* Q4_1, Q4_G128 */
MICRO2_FN(micro2_s32_g4, 32, 0, 1, 4, 0)         /* Q5_1 */
MICRO2_FN(micro2_s32_off_g8, 32, 1, 1, 8, 0)     /* Q4_0 */
MICRO2_FN(micro2_s32_off_g4, 32, 1, 1, 4, 0)     /* Q5_0 */
MICRO2_FN(micro2_s32_sgn, 32, 0, 1, 1, 1)        /* Q8_0, IQ4_NL */
MICRO2_FN(micro2_s32_sb_sgn, 32, 0, 8, 1, 1)     /* IQ4_XS */
MICRO2_FN(micro2_s32_sb_g8, 32, 0, 8, 8, 0)      /* Q4_K */
MICRO2_FN(micro2_s32_sb_g4, 32, 0, 8, 4, 0)      /* Q5_K */
MICRO2_FN(micro2_s16_sb, 16, 0, 16, 4, 0)        /* Q2_K */
MICRO2_FN(micro2_s16_off_sb_g4, 16, 1, 16, 4, 0) /* Q3_K */
MICRO2_FN(micro2_s16_off_sb_g2, 16, 1, 16, 2, 0) /* Q6_K */


/* The micro kernel for weight type t, NULL for the types without tiles. */
static micro2_fn micro2_for(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q4_1: case QD_TYPE_Q4_G128: return micro2_s32_g8;
    case QD_TYPE_Q5_1: return micro2_s32_g4;
    case QD_TYPE_Q4_0: return micro2_s32_off_g8;
    case QD_TYPE_Q5_0: return micro2_s32_off_g4;
    case QD_TYPE_Q8_0: case QD_TYPE_IQ4_NL: return micro2_s32_sgn;
    case QD_TYPE_IQ4_XS: return micro2_s32_sb_sgn;
    case QD_TYPE_Q4_K: return micro2_s32_sb_g8;
    case QD_TYPE_Q5_K: return micro2_s32_sb_g4;
    case QD_TYPE_Q2_K: return micro2_s16_sb;
    case QD_TYPE_Q3_K: return micro2_s16_off_sb_g4;
    case QD_TYPE_Q6_K: return micro2_s16_off_sb_g2;
    default: return NULL;
    }
}

/* The batch size from which the tiles beat the direct dots here. The
 * tiles are decoded in C (tile.c) once per call, which the tokens must
 * pay back: 2048 x 2048, one thread, direct vs tiled, ms (22:58): Q4_K 8
 * tokens 1.60 vs 2.60, 16 3.24 vs 3.19, 24 4.87 vs 3.62 (since session
 * 11's q4_K_toks, min of seven alternations: 20 tokens 1.86 vs 3.30, 32
 * 3.04 vs 3.85, 48 4.52 vs 4.70, 64 6.10 vs 5.62; Q6_K, q6_K_toks: 8
 * tokens 0.65 vs 1.18, 16 1.28 vs 1.64, 32 2.69 vs 2.42); Q5_K 16 3.68 vs
 * 4.49; Q5_0 8 2.25 vs 3.13, 16 4.40 vs 3.62; Q5_1 16 5.20 vs 3.67; Q4_0,
 * Q4_1 about equal at 4 and the tiles ahead from 8; Q2_K and Q3_K
 * (no SIMD dots here) the tiles from 4. Q8_0 (session 11, min of seven
 * alternations): 4 tokens 0.71 vs 0.96, 8 1.30 vs 1.24, 16 2.67 vs 1.83,
 * and with q8_0_toks 8 1.04 vs 1.26, 12 1.49 vs 1.57, 16 1.98 vs 1.81;
 * Q4_0 with q4_0_toks 4 0.57 vs 0.83, 8 1.01 vs 1.07, 10 1.34 vs 1.20;
 * IQ4_NL 8 1.80 vs 2.45, 12 2.74 vs 2.79, 16 3.54 vs 3.11 (IQ4_XS the
 * same within 5 %). */
static int avx2_tile_from(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q4_K: return 56;
    case QD_TYPE_Q5_K: return 20;
    case QD_TYPE_Q5_0: case QD_TYPE_Q5_1: case QD_TYPE_IQ4_NL: case QD_TYPE_IQ4_XS: return 12;
    case QD_TYPE_Q8_0: return 14;
    case QD_TYPE_Q4_0: return 9;
    case QD_TYPE_Q6_K: return 24;
    default: return 4;
    }
}

/* The direct dots for the types micro2_for has no kernel for, and below
 * avx2_tile_from's batch size. */
static int avx2_gemm_prefers(const qd_qmat_t *w, int n_tok)
{
    return micro2_for(w->type) == NULL || n_tok < avx2_tile_from(w->type);
}

static void avx2_gemm_tiled(const qd_qmat_t *w, int64_t r0, int64_t r1, const int8_t *qs,
                            const float *ta, const float *tb, const int32_t *ti, int n_tok,
                            float *out, int64_t ldo)
{
    const int S = qd__tile_sub(w->type);
    const int64_t K = w->n_cols, NS = K / S;
    const micro2_fn mf = micro2_for(w->type); /* not NULL: avx2_gemm_prefers */
    _Alignas(64) uint8_t u[QD_TILE_ROWS * QD_TILE_K];
    _Alignas(64) float dsc[QD_TILE_K / 16 * QD_TILE_ROWS];
    _Alignas(64) float corr[QD_TILE_K / 16 * QD_TILE_ROWS];
    for (int64_t rt = r0; rt < r1; rt += QD_TILE_ROWS) {
        int nr = (int)QD_MIN((int64_t)QD_TILE_ROWS, r1 - rt);
        const uint8_t *row0 = (const uint8_t *)w->data + (size_t)rt * w->row_bytes;
        for (int64_t k0 = 0; k0 < K; k0 += QD_TILE_K) {
            int nk = (int)QD_MIN((int64_t)QD_TILE_K, K - k0);
            qd__tile_decode(w->type, row0, w->row_bytes, nr, k0, nk, u, dsc, corr);
            qd__tile_prefetch_next(w, rt, r1, k0);
            for (int t = 0; t < n_tok; t += NC2) {
                int nc = QD_MIN(NC2, n_tok - t);
                mf(nc, u, dsc, corr, nk / S, qs + (size_t)t * K + k0, K, ta + t * NS + k0 / S,
                   tb + t * NS + k0 / S, ti + t * NS + k0 / S, NS, out + t * ldo + rt, ldo, nr,
                   k0 == 0);
            }
        }
    }
}

static const qd_kernels_t avx2_kernels = {
    .name = "avx2",
    .from_float = x86_from_float,
    .gemm = x86_gemm_rows,
    .vec_dot = x86_vec_dot,
    .gemm_tiled = avx2_gemm_tiled,
    .gemm_prefers = avx2_gemm_prefers,
    .tile_min_tok = 4,
};

const qd_kernels_t *qd__kernels_avx2(void) { return &avx2_kernels; }
