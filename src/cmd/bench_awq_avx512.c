/*
 * bench_awq_avx512.c — matrix × vector computed directly on AutoAWQ's GEMM
 * layout with AVX-512, for `quantd bench --awq-layout` (bench_awq.c),
 * which weighs it against repacking into the import's blocks (Q4_G128).
 *
 * Layout (docs/awq.md): qweight int32 [K][N/8], nibble i of word c in row
 * k is q[k][8c + order[i]], order = [0,2,4,6,1,3,5,7]; qzeros int32
 * [K/G][N/8] packed the same way; scales fp16 [K/G][N].
 * y[n] = Σ_g s[g][n] · (Σ_{k∈g} x[k]·q[k][n] − z[g][n] · Σ_{k∈g} x[k]).
 *
 * One block is 16 words of a row = 128 output columns = one cache line.
 * Nibble i of the 16 words goes to accumulator i (16 lanes), so the
 * interleave costs nothing until the end of a group, when the 8
 * accumulators, less zero × Σx, are scattered into column order and
 * multiplied by the fp16 scales. Nibble i is taken as (word & 0xF << 4i),
 * converted to float as q·16^i (exact) and the power of 16 removed once
 * per group; the top nibble is shifted down instead (sign bit).
 */
#include "cmd/bench_awq.h"

#include <immintrin.h>
#include <stdint.h>

void qd__awq_gemv_avx512(const int32_t *qw, const int32_t *qz,
                         const uint16_t *sc, const float *x, const float *xsum,
                         int64_t K, int64_t N, int64_t G, int64_t b0,
                         int64_t b1, float *y)
{
    const int64_t nw = N / 8; /* words per row */
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    const __m512i lane8 = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(8));
    for (int64_t b = b0; b < b1; b++) {
        const int64_t w0 = b * 16; /* first word of the block */
        __m512 yv[8];
        for (int j = 0; j < 8; j++)
            yv[j] = _mm512_setzero_ps();
        for (int64_t g = 0; g < K / G; g++) {
            __m512 acc[8];
            for (int i = 0; i < 8; i++)
                acc[i] = _mm512_setzero_ps();
            const int32_t *row = qw + g * G * nw + w0;
            for (int64_t k = 0; k < G; k++, row += nw) {
                __m512 xv = _mm512_set1_ps(x[g * G + k]);
                __m512i w = _mm512_loadu_si512(row);
                for (int i = 0; i < 7; i++) {
                    __m512i q =
                        _mm512_and_si512(w, _mm512_set1_epi32(0xF << (4 * i)));
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), xv, acc[i]);
                }
                acc[7] = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 28)), xv, acc[7]);
            }
            /* acc_i / 16^i − z_i · Σx, scattered to column order */
            __m512i z = _mm512_loadu_si512(qz + g * nw + w0);
            __m512 sx = _mm512_set1_ps(xsum[g]);
            float tmp[128] __attribute__((aligned(64)));
            for (int i = 0; i < 8; i++) {
                __m512 zi = _mm512_cvtepi32_ps(_mm512_and_si512(
                    _mm512_srli_epi32(z, 4 * i), _mm512_set1_epi32(0xF)));
                /* acc[7] holds q itself (shifted down), the others q·16^i */
                float unit = i < 7 ? 1.0f / (float)(1u << (4 * i)) : 1.0f;
                __m512 v = _mm512_mul_ps(acc[i], _mm512_set1_ps(unit));
                v = _mm512_fnmadd_ps(zi, sx, v);
                __m512i idx =
                    _mm512_add_epi32(lane8, _mm512_set1_epi32(order[i]));
                _mm512_i32scatter_ps(tmp, idx, v, 4);
            }
            const uint16_t *s = sc + g * N + w0 * 8;
            for (int j = 0; j < 8; j++) {
                __m512 sj = _mm512_cvtph_ps(
                    _mm256_loadu_si256((const __m256i *)(s + 16 * j)));
                yv[j] =
                    _mm512_fmadd_ps(sj, _mm512_load_ps(tmp + 16 * j), yv[j]);
            }
        }
        for (int j = 0; j < 8; j++)
            _mm512_storeu_ps(y + w0 * 8 + 16 * j, yv[j]);
    }
}
