/*
 * q4g_avx2.c — the decode dot product of Q4_G128 weights with Q8_1
 * activations, AVX2 + FMA + F16C (q4g_avx512.c has the layout notes).
 * Per block: 32 bytes at a time give the low nibbles (values j) and high
 * nibbles (values j + 64) of two activation blocks each; u8 x s8 sums by
 * vpmaddubsw (at most 2*15*128 per pair: no saturation) + vpmaddwd.
 */
#include "quant/kernels.h"

#include <immintrin.h>

static inline __m256 dot32(__m256i u, const qd_block_q8_1 *a)
{
    __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)a->qs));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

void qd__dot_q4_g128_256(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q4_g128 *x = vx;
    const qd_block_q8_1 *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int i = 0; i < n / QD_QK4_G128; i++) {
        const qd_block_q8_1 *a = y + 4 * i;
        __m256i q0 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i q1 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32));
        /* values 0..31, 32..63 (low nibbles), 64..95, 96..127 (high) */
        __m256 f = _mm256_mul_ps(dot32(_mm256_and_si256(q0, m4), a + 0),
                                 _mm256_set1_ps(_cvtsh_ss(a[0].d)));
        f = _mm256_fmadd_ps(dot32(_mm256_and_si256(q1, m4), a + 1),
                            _mm256_set1_ps(_cvtsh_ss(a[1].d)), f);
        f = _mm256_fmadd_ps(dot32(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), a + 2),
                            _mm256_set1_ps(_cvtsh_ss(a[2].d)), f);
        f = _mm256_fmadd_ps(dot32(_mm256_and_si256(_mm256_srli_epi16(q1, 4), m4), a + 3),
                            _mm256_set1_ps(_cvtsh_ss(a[3].d)), f);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d)), f, acc);
        summ += _cvtsh_ss(x[i].m) * ((_cvtsh_ss(a[0].s) + _cvtsh_ss(a[1].s)) +
                                     (_cvtsh_ss(a[2].s) + _cvtsh_ss(a[3].s)));
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    *s = _mm_cvtss_f32(h) + summ;
}
