/*
 * q4g_avx512.c — the decode dot product of Q4_G128 weights (quantd's
 * asymmetric 4-bit group-128 format, quantd/quant.h) with Q8_1
 * activations, AVX-512 + VNNI.
 *
 * Decode is memory-bound: a weight row is read once per token, so the loop
 * must cost fewer cycles than its 68 bytes per block take to arrive. One
 * block is one 64-byte load: its low nibbles are values 0..63 (activation
 * blocks 0 and 1, two vpdpbusd lanes groups of 8), its high nibbles values
 * 64..127 (blocks 2 and 3). The activation scales d_a of the 4 blocks are
 * spread over the lanes of their dot sums, so per block the float work is
 * two multiply-adds and one scaling by the weight's d; the min term
 * m * sum(s_a) accumulates in a 4-lane vector. Integer sums are exact, so
 * the result equals the scalar reference up to float order.
 */
#include "quant/kernels.h"

#include <immintrin.h>
#include <string.h>

/* fp16 d (hi = 0) or s (hi = 1) of 4 activation blocks as 4 floats. */
static inline __m128 act4(const qd_block_q8_1 *a, int hi)
{
    uint16_t h[4];
    for (int k = 0; k < 4; k++)
        h[k] = hi ? a[k].s : a[k].d;
    uint64_t v;
    memcpy(&v, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* 32 + 32 activation bytes of blocks a[0] and a[1] in one register. */
static inline __m512i act64(const qd_block_q8_1 *a)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *)a[0].qs);
    __m256i hi = _mm256_loadu_si256((const __m256i *)a[1].qs);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* d_w * sum_b d_a_b * (q . a)_b of one block (16 lanes to be summed);
 * the min term m * s_a of its 4 activation blocks added into *accm. */
static inline __attribute__((always_inline)) __m512
block(const qd_block_q4_g128 *x, const qd_block_q8_1 *a, __m128 *accm)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* lane l of a 64-value dot sum belongs to activation block l / 8 of
     * the pair: these pick d_a of blocks (0, 1) and (2, 3) per lane */
    const __m512i sel01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i sel23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512i q = _mm512_loadu_si512(x->qs);
    __m512i lo = _mm512_and_si512(q, m4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    __m512i p01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, act64(a));
    __m512i p23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, act64(a + 2));
    __m512 da = _mm512_castps128_ps512(act4(a, 0));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(p01), _mm512_permutexvar_ps(sel01, da));
    f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_permutexvar_ps(sel23, da), f);
    *accm = _mm_fmadd_ps(_mm_set1_ps(_cvtsh_ss(x->m)), act4(a, 1), *accm);
    return _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(x->d)), f);
}

void qd__dot_q4_g128_512(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q4_g128 *x = vx;
    const qd_block_q8_1 *y = vy;
    int nb = n / QD_QK4_G128, i = 0;
    /* two blocks per step, two accumulators: the float chains overlap */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (; i + 1 < nb; i += 2) {
        acc0 = _mm512_add_ps(acc0, block(x + i, y + 4 * i, &accm));
        acc1 = _mm512_add_ps(acc1, block(x + i + 1, y + 4 * i + 4, &accm));
    }
    if (i < nb)
        acc0 = _mm512_add_ps(acc0, block(x + i, y + 4 * i, &accm));
    __m128 m2 = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m2 = _mm_add_ss(m2, _mm_movehdup_ps(m2));
    *s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + _mm_cvtss_f32(m2);
}
