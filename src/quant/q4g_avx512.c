/*
 * q4g_avx512.c — the decode dot product of Q4_G128 weights (quantd's
 * asymmetric 4-bit group-128 format, quantd/quant.h) with Q8_1
 * activations, AVX-512 + VNNI.
 *
 * Decode is memory-bound: a weight row is read once per token, so the loop
 * must cost fewer cycles than its 68 bytes per block take to arrive. One
 * block is one 64-byte load: its low nibbles are values 0..63 (activation
 * blocks 0 and 1, two vpdpbusd lanes groups of 8), its high nibbles values
 * 64..127 (blocks 2 and 3). The activation blocks' d_a and s_a (adjacent
 * fp16) are fetched as 4 words and converted at once; d_a is spread over
 * the lanes of the dot sums. The weight's d and m (adjacent too) multiply
 * d_a and s_a lane-wise, so per block the float work is one multiply, one
 * add (the min term m * s_a, in the s lanes of an 8-lane vector) and two
 * multiply-adds. Integer sums are exact, so the result equals the scalar
 * reference up to float order.
 */
#include "quant/kernels.h"

#include <immintrin.h>
#include <string.h>

/* d and s of 4 activation blocks, as 8 floats d0 s0 d1 s1 d2 s2 d3 s3:
 * one 32-bit load per block (d and s are adjacent) and one conversion. */
static inline __m256 act_ds(const qd_block_q8_1 *a)
{
    int32_t w[4];
    for (int k = 0; k < 4; k++)
        memcpy(&w[k], &a[k].d, 4);
    __m128i v = _mm_cvtsi32_si128(w[0]);
    v = _mm_insert_epi32(v, w[1], 1);
    v = _mm_insert_epi32(v, w[2], 2);
    v = _mm_insert_epi32(v, w[3], 3);
    return _mm256_cvtph_ps(v);
}

/* 32 + 32 activation bytes of blocks a[0] and a[1] in one register. */
static inline __m512i act64(const qd_block_q8_1 *a)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *)a[0].qs);
    __m256i hi = _mm256_loadu_si256((const __m256i *)a[1].qs);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* One block into acc (16 lanes of d_w * d_a_b * (q . a)_b, to be summed)
 * and accm (lanes d0 s0 d1 s1 ... of act_ds times d_w m_w d_w m_w ...: its
 * s lanes sum to the min term m * sum_b s_a_b). */
static inline __attribute__((always_inline)) void
block(const qd_block_q4_g128 *x, const qd_block_q8_1 *a, __m512 *acc,
      __m256 *accm)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* lane l of a 64-value dot sum belongs to activation block l / 8 of
     * the pair: these pick d_w*d_a of blocks (0, 1) and (2, 3) per lane
     * out of the 8 lanes d0 s0 d1 s1 d2 s2 d3 s3 */
    const __m512i sel01 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i sel23 = _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4);
    __m512i q = _mm512_loadu_si512(x->qs);
    __m512i lo = _mm512_and_si512(q, m4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    __m512i p01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, act64(a));
    __m512i p23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, act64(a + 2));
    int32_t dm;
    memcpy(&dm, &x->d, 4); /* d and m, adjacent */
    __m256 w = _mm256_cvtph_ps(_mm_set1_epi32(dm));
    __m256 ds = _mm256_mul_ps(act_ds(a), w);
    *accm = _mm256_add_ps(*accm, ds);
    __m512 sc = _mm512_castps256_ps512(ds);
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), _mm512_permutexvar_ps(sel01, sc), *acc);
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_permutexvar_ps(sel23, sc), *acc);
}

void qd__dot_q4_g128_512(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q4_g128 *x = vx;
    const qd_block_q8_1 *y = vy;
    int nb = n / QD_QK4_G128, i = 0;
    /* two blocks per step, two accumulators each: the chains overlap */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m256 accm0 = _mm256_setzero_ps(), accm1 = _mm256_setzero_ps();
    for (; i + 1 < nb; i += 2) {
        block(x + i, y + 4 * i, &acc0, &accm0);
        block(x + i + 1, y + 4 * i + 4, &acc1, &accm1);
    }
    if (i < nb)
        block(x + i, y + 4 * i, &acc0, &accm0);
    __m256 accm = _mm256_add_ps(accm0, accm1);
    /* the s lanes (odd) of accm: m * sum(s_a) */
    float summ = _mm512_mask_reduce_add_ps(0xaa, _mm512_castps256_ps512(accm));
    *s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + summ;
}
