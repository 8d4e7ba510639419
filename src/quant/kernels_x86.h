/*
 * kernels_x86.h — x86 SIMD pieces shared by the AVX2 and AVX-512 kernel
 * sets: activation quantizers (bit-identical with the reference
 * from_float_ref), direct row·row dot products, and the row driver
 * (x86_gemm_rows), which takes Q4_K, Q6_K, Q4_0 and Q8_0 rows against up
 * to 8 tokens at once (the *_toks kernels, whose one-token case is the
 * type's dot).
 *
 * Included by kernels_avx2.c and kernels_avx512.c only, each compiled with
 * its own ISA flags; before including it the file defines
 *   static inline __m256i mul_sum_us8(__m256i u, __m256i s)
 * which returns the 8 int32 sums of 4 adjacent u8*s8 products (maddubs +
 * madd on AVX2, vpdpbusd on AVX-512 VNNI).
 */
#ifndef QUANTD_QUANT_KERNELS_X86_H
#define QUANTD_QUANT_KERNELS_X86_H

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/kernels.h"
#include "quant/ref_int.h"
#include "quantd/quant.h"

static inline float hsum_ps256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax_ps256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* roundf() (half away from zero) of 8 floats, exactly: trunc, then step
 * away from zero when the dropped fraction is >= 0.5 (exact for |t| < 2^23). */
static inline __m256i roundf_epi32(__m256 t)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(t, r));
    __m256 big = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(sign, t));
    r = _mm256_add_ps(r, _mm256_and_ps(big, one));
    return _mm256_cvttps_epi32(r);
}

/* Pack 4 x 8 int32 (each in -128..127) into 32 int8 in order. */
static inline __m256i pack_epi32_epi8(__m256i a, __m256i b, __m256i c,
                                      __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b);
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q8_0 / Q8_1 block quantization as quantize_row_q8_{0,1}_ref. */
static void x86_quantize_q8_01(const float *restrict x, void *restrict vy,
                               int64_t n, int with_sum)
{
    const __m256 signm = _mm256_set1_ps(-0.0f);
    int64_t nb = n / 32;
    uint8_t *y = vy;
    size_t bb = with_sum ? sizeof(qd_block_q8_1) : sizeof(qd_block_q8_0);
    for (int64_t i = 0; i < nb; i++, x += 32, y += bb) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signm, v0),
                                               _mm256_andnot_ps(signm, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(signm, v2),
                                               _mm256_andnot_ps(signm, v3)));
        float amax = hmax_ps256(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = roundf_epi32(_mm256_mul_ps(v0, vid));
        __m256i i1 = roundf_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = roundf_epi32(_mm256_mul_ps(v2, vid));
        __m256i i3 = roundf_epi32(_mm256_mul_ps(v3, vid));
        qd_fp16_t hd = qd_fp32_to_fp16(d);
        memcpy(y, &hd, 2);
        if (with_sum) {
            __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1),
                                         _mm256_add_epi32(i2, i3));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s),
                                       _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
            int sum = _mm_cvtsi128_si32(s4);
            qd_fp16_t hs = qd_fp32_to_fp16((float)sum * d);
            memcpy(y + 2, &hs, 2);
        }
        _mm256_storeu_si256((__m256i *)(y + (with_sum ? 4 : 2)),
                            pack_epi32_epi8(i0, i1, i2, i3));
    }
}

/* Q8_K quantization as quantize_row_q8_K_ref: the scale comes from the
 * first element of largest magnitude, iscale = -127/max, round to nearest
 * even, clamp at 127; bsums over groups of 16. */
static void x86_quantize_q8_K(const float *restrict x, void *restrict vy,
                              int64_t n)
{
    const __m256 signm = _mm256_set1_ps(-0.0f);
    qd_block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QD_QK_K; i++, x += QD_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QD_QK_K; j += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(signm, _mm256_loadu_ps(x + j)));
        float amax = hmax_ps256(m);
        if (!(amax > 0.0f)) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0.0f;
        __m256 vam = _mm256_set1_ps(amax);
        for (int j = 0; j < QD_QK_K; j += 8) {
            __m256 a = _mm256_andnot_ps(signm, _mm256_loadu_ps(x + j));
            int mk = _mm256_movemask_ps(_mm256_cmp_ps(a, vam, _CMP_EQ_OQ));
            if (mk) {
                max = x[j + __builtin_ctz((unsigned)mk)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        __m256 vis = _mm256_set1_ps(iscale);
        const __m256i c127 = _mm256_set1_epi32(127);
        for (int j = 0; j < QD_QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                __m256 t = _mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 8 * k));
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(t), c127);
            }
            __m256i p = pack_epi32_epi8(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), p);
            /* bsums of the two groups of 16 */
            __m256i w = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_set1_epi8(1), p),
                _mm256_set1_epi16(1));
            /* w: 8 int32 sums of 4; group 0 = lanes 0..3, group 1 = 4..7 */
            __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
            lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0x4e));
            lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0xb1));
            hi = _mm_add_epi32(hi, _mm_shuffle_epi32(hi, 0x4e));
            hi = _mm_add_epi32(hi, _mm_shuffle_epi32(hi, 0xb1));
            y[i].bsums[j / 16] = (int16_t)_mm_cvtsi128_si32(lo);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm_cvtsi128_si32(hi);
        }
        y[i].d = 1.0f / iscale;
    }
}

static void x86_from_float(qd_type_t t, const float *restrict x,
                           void *restrict y, int64_t n)
{
    switch (t) {
    case QD_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        return;
    case QD_TYPE_Q8_0:
        x86_quantize_q8_01(x, y, n, 0);
        return;
    case QD_TYPE_Q8_1:
        x86_quantize_q8_01(x, y, n, 1);
        return;
    case QD_TYPE_Q8_K:
        x86_quantize_q8_K(x, y, n);
        return;
    case QD_TYPE_F16: {
        qd_fp16_t *h = y;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(h + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                             _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; i++)
            h[i] = qd_fp32_to_fp16(x[i]);
        return;
    }
    default:
        qd_type_traits(t)->from_float_ref(x, y, n);
    }
}

/* ---- dot products (weight row · activation row) ----------------------- */

static inline float h2f(qd_fp16_t h) { return _cvtsh_ss(h); }

static void dot_f32(int n, float *restrict s, const void *restrict vx,
                    const void *restrict vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float r = hsum_ps256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        r += x[i] * y[i];
    *s = r;
}

/* 8 values of 16-bit floats as float: fp16, or bf16 (the high half of a
 * float, so a zero-extended shift makes it one exactly). */
static inline __m256 half8(const int bf, const uint16_t *p)
{
    if (!bf)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* sum(x * y) of n fp16 (bf = 0) or bf16 (bf = 1) values each */
static inline __attribute__((always_inline)) float dot_half(const int bf, int n,
                                                            const uint16_t *x,
                                                            const uint16_t *y)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(half8(bf, x + i), half8(bf, y + i), a0);
        a1 = _mm256_fmadd_ps(half8(bf, x + i + 8), half8(bf, y + i + 8), a1);
        a2 = _mm256_fmadd_ps(half8(bf, x + i + 16), half8(bf, y + i + 16), a2);
        a3 = _mm256_fmadd_ps(half8(bf, x + i + 24), half8(bf, y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(half8(bf, x + i), half8(bf, y + i), a0);
    float r = hsum_ps256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        r += bf ? qd_bf16_to_fp32(x[i]) * qd_bf16_to_fp32(y[i]) : h2f(x[i]) * h2f(y[i]);
    return r;
}

static void dot_f16(int n, float *restrict s, const void *restrict vx,
                    const void *restrict vy)
{
    *s = dot_half(0, n, vx, vy);
}

static void dot_bf16(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    *s = dot_half(1, n, vx, vy);
}

/* sum(w * a) for signed w, a (a in -127..127): |w| * sign(a, w). */
static inline __m256i dot_s8(__m256i w, __m256i a)
{
    return mul_sum_us8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

static inline __m256i load_nibbles32(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes 0xff where the bit is set. */
static inline __m256i bits_to_bytes(uint32_t bits)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

static void dot_q5_0(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_block_q5_0 *x = vx;
    const qd_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    const __m256i off = _mm256_set1_epi8(16);
    for (int i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        __m256i hb = _mm256_and_si256(bits_to_bytes(qh), off);
        __m256i w = _mm256_sub_epi8(_mm256_or_si256(load_nibbles32(x[i].qs), hb), off);
        __m256i a = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 p = _mm256_cvtepi32_ps(dot_s8(w, a));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), p, acc);
    }
    *s = hsum_ps256(acc);
}

static void dot_q4_1(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_block_q4_1 *x = vx;
    const qd_block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int i = 0; i < n / 32; i++) {
        __m256i w = load_nibbles32(x[i].qs);
        __m256i a = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 p = _mm256_cvtepi32_ps(mul_sum_us8(w, a));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), p, acc);
        summ += h2f(x[i].m) * h2f(y[i].s);
    }
    *s = hsum_ps256(acc) + summ;
}

/* Q4_G128 x Q8_1 (the AVX-512 set has a wider one, q4g_avx512.c): per
 * 128-value block, 32 bytes at a time give the low nibbles (values j) and
 * the high nibbles (values j + 64) of two activation blocks each. */
static void dot_q4_g128(int n, float *restrict s, const void *restrict vx,
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
#define G128_DOT(u, k) \
    _mm256_cvtepi32_ps(mul_sum_us8((u), _mm256_loadu_si256((const __m256i *)a[k].qs)))
        /* values 0..31, 32..63 (low nibbles), 64..95, 96..127 (high) */
        __m256 f = _mm256_mul_ps(G128_DOT(_mm256_and_si256(q0, m4), 0), _mm256_set1_ps(h2f(a[0].d)));
        f = _mm256_fmadd_ps(G128_DOT(_mm256_and_si256(q1, m4), 1), _mm256_set1_ps(h2f(a[1].d)), f);
        f = _mm256_fmadd_ps(G128_DOT(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), 2),
                            _mm256_set1_ps(h2f(a[2].d)), f);
        f = _mm256_fmadd_ps(G128_DOT(_mm256_and_si256(_mm256_srli_epi16(q1, 4), m4), 3),
                            _mm256_set1_ps(h2f(a[3].d)), f);
#undef G128_DOT
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d)), f, acc);
        summ += h2f(x[i].m) * ((h2f(a[0].s) + h2f(a[1].s)) + (h2f(a[2].s) + h2f(a[3].s)));
    }
    *s = hsum_ps256(acc) + summ;
}

static void dot_q5_1(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_block_q5_1 *x = vx;
    const qd_block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        __m256i hb = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16));
        __m256i w = _mm256_or_si256(load_nibbles32(x[i].qs), hb);
        __m256i a = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 p = _mm256_cvtepi32_ps(mul_sum_us8(w, a));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), p, acc);
        summ += h2f(x[i].m) * h2f(y[i].s);
    }
    *s = hsum_ps256(acc) + summ;
}

static inline __m256i iq4_lookup(const uint8_t *qs)
{
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)qd_kvalues_iq4nl));
    return _mm256_shuffle_epi8(tab, load_nibbles32(qs));
}

static void dot_iq4_nl(int n, float *restrict s, const void *restrict vx,
                       const void *restrict vy)
{
    const qd_block_iq4_nl *x = vx;
    const qd_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / 32; i++) {
        __m256i w = iq4_lookup(x[i].qs);
        __m256i a = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 p = _mm256_cvtepi32_ps(dot_s8(w, a));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), p, acc);
    }
    *s = hsum_ps256(acc);
}

/* A Q4_K / Q5_K block's 8 scales (qd__k4_scales8's s8) as int16 lanes
 * 0-7 of both 128-bit halves: k4_scale picks sub-block j's into every
 * lane with one byte shuffle (in place of a scalar broadcast per
 * sub-block, which cost the AVX2 Q4_K dot a third of its instructions). */
static inline __m256i k4_scales_x2(uint64_t s8)
{
    return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)s8)));
}

static inline __m256i k4_scale(__m256i scx2, int j)
{
    return _mm256_shuffle_epi8(scx2, _mm256_set1_epi16((short)((2 * j + 1) << 8 | 2 * j)));
}

/* sum over 8 subblocks of min j * (bsums[2j] + bsums[2j+1]) as 8 int32,
 * the mins as qd__k4_scales8's m8. q4_K_toks calls it per token: the
 * mins unpacked once per superblock instead, by hand, measured 0-7 %
 * slower at 4 and 8 tokens (2048 x 2048, one thread, two rounds of seven
 * alternations). */
static inline __m256i k4_minsum(uint64_t m8, const int16_t *bsums)
{
    __m128i m = _mm_cvtsi64_si128((long long)m8);
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    return _mm256_madd_epi16(m16, _mm256_loadu_si256((const __m256i *)bsums));
}

static void dot_q5_K(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_block_q5_K *x = vx;
    const qd_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(16);
    for (int i = 0; i < n / QD_QK_K; i++) {
        uint64_t s8, m8;
        qd__k4_scales8(x[i].scales, &s8, &m8);
        const __m256i scx2 = k4_scales_x2(s8);
        const uint8_t *q = x[i].qs;
        const int8_t *a = y[i].qs;
        __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i isum = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
            __m256i bit0 = _mm256_set1_epi8((char)(1 << (2 * j)));
            __m256i bit1 = _mm256_set1_epi8((char)(2 << (2 * j)));
            __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit0), bit0), b16);
            __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit1), bit1), b16);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(b, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4), h1);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a + 64 * j)));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 64 * j + 32)));
            p0 = _mm256_madd_epi16(p0, k4_scale(scx2, 2 * j));
            p1 = _mm256_madd_epi16(p1, k4_scale(scx2, 2 * j + 1));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        float d = h2f(x[i].d) * y[i].d, dm = h2f(x[i].dmin) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dm),
                               _mm256_cvtepi32_ps(k4_minsum(m8, y[i].bsums)), accm);
    }
    *s = hsum_ps256(acc) - hsum_ps256(accm);
}

/* One Q4_K row against NT Q8_K activation rows (y0, y0 + ys, ...): each
 * superblock's scales and nibbles unpacked once for all of them, then per
 * token its own products in one order, so that a token's sum is the same
 * bits alone (dot_q4_K, NT = 1) or in a batch. */
static inline __attribute__((always_inline)) void
q4_K_toks(const int NT, int n, float *restrict s, size_t so, const void *restrict vx,
          const uint8_t *restrict y0, size_t ys)
{
    const qd_block_q4_K *x = vx;
    __m256 acc[8], accm[8];
    for (int t = 0; t < NT; t++)
        acc[t] = accm[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int i = 0; i < n / QD_QK_K; i++) {
        uint64_t s8, m8;
        qd__k4_scales8(x[i].scales, &s8, &m8);
        const __m256i scx2 = k4_scales_x2(s8);
        const uint8_t *q = x[i].qs;
        __m256i isum[8];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
            isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
            __m256i lo = _mm256_and_si256(b, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            __m256i s0 = k4_scale(scx2, 2 * j), s1 = k4_scale(scx2, 2 * j + 1);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const int8_t *a = ((const qd_block_q8_K *)(y0 + (size_t)t * ys))[i].qs;
                __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a + 64 * j)));
                __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 64 * j + 32)));
                p0 = _mm256_madd_epi16(p0, s0);
                p1 = _mm256_madd_epi16(p1, s1);
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p0, p1));
            }
        }
        const float xd = h2f(x[i].d), xdm = h2f(x[i].dmin);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const qd_block_q8_K *y = (const qd_block_q8_K *)(y0 + (size_t)t * ys) + i;
            float d = xd * y->d, dm = xdm * y->d;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum[t]), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(dm),
                                      _mm256_cvtepi32_ps(k4_minsum(m8, y->bsums)), accm[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        s[(size_t)t * so] = hsum_ps256(acc[t]) - hsum_ps256(accm[t]);
}

/* One Q6_K row against NT Q8_K activation rows, as q4_K_toks: each
 * half-superblock's 6-bit values unpacked once (dot_q6_K: NT = 1). */
static inline __attribute__((always_inline)) void
q6_K_toks(const int NT, int n, float *restrict s, size_t so, const void *restrict vx,
          const uint8_t *restrict y0, size_t ys)
{
    const qd_block_q6_K *x = vx;
    __m256 acc[8];
    for (int t = 0; t < NT; t++)
        acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    for (int i = 0; i < n / QD_QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i isum[8];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const qd_block_q8_K *y = (const qd_block_q8_K *)(y0 + (size_t)t * ys) + i;
            __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y->bsums));
            isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i lk = k & 1 ? l1 : l0;
                if (k >= 2)
                    lk = _mm256_srli_epi16(lk, 4);
                __m256i q = _mm256_or_si256(
                    _mm256_and_si256(lk, m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m3), 4));
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]),
                                               _mm_set1_epi16(sc[2 * k]));
#pragma GCC unroll 8
                for (int t = 0; t < NT; t++) {
                    const int8_t *a = ((const qd_block_q8_K *)(y0 + (size_t)t * ys))[i].qs;
                    __m256i av = _mm256_loadu_si256((const __m256i *)(a + 128 * h + 32 * k));
                    __m256i p = _mm256_maddubs_epi16(q, av);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scv));
                }
            }
        }
        const float xd = h2f(x[i].d);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const qd_block_q8_K *y = (const qd_block_q8_K *)(y0 + (size_t)t * ys) + i;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(xd * y->d), _mm256_cvtepi32_ps(isum[t]),
                                     acc[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        s[(size_t)t * so] = hsum_ps256(acc[t]);
}

/* One Q4_0 (four = 1) or Q8_0 row against NT Q8_0 activation rows: each
 * block's signed values and their magnitudes taken once for all of them
 * (dot_q4_0, dot_q8_0: NT = 1). */
static inline __attribute__((always_inline)) void
q40_q80_toks(const int four, const int NT, int n, float *restrict s, size_t so,
             const void *restrict vx, const uint8_t *restrict y0, size_t ys)
{
    __m256 acc[8];
    for (int t = 0; t < NT; t++)
        acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < n / 32; i++) {
        __m256i w;
        float xd;
        if (four) {
            const qd_block_q4_0 *x = (const qd_block_q4_0 *)vx + i;
            w = _mm256_sub_epi8(load_nibbles32(x->qs), _mm256_set1_epi8(8));
            xd = h2f(x->d);
        } else {
            const qd_block_q8_0 *x = (const qd_block_q8_0 *)vx + i;
            w = _mm256_loadu_si256((const __m256i *)x->qs);
            xd = h2f(x->d);
        }
        const __m256i aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const qd_block_q8_0 *y = (const qd_block_q8_0 *)(y0 + (size_t)t * ys) + i;
            __m256i a = _mm256_loadu_si256((const __m256i *)y->qs);
            __m256 p = _mm256_cvtepi32_ps(mul_sum_us8(aw, _mm256_sign_epi8(a, w)));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(xd * h2f(y->d)), p, acc[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        s[(size_t)t * so] = hsum_ps256(acc[t]);
}

static inline __attribute__((always_inline)) void
q4_0_toks(const int NT, int n, float *restrict s, size_t so, const void *restrict vx,
          const uint8_t *restrict y0, size_t ys)
{
    q40_q80_toks(1, NT, n, s, so, vx, y0, ys);
}

static inline __attribute__((always_inline)) void
q8_0_toks(const int NT, int n, float *restrict s, size_t so, const void *restrict vx,
          const uint8_t *restrict y0, size_t ys)
{
    q40_q80_toks(0, NT, n, s, so, vx, y0, ys);
}

/* A row (vx) against nt activation rows (y0, y0 + ys, ...) into s[0],
 * s[so], ...: the *_toks kernels for any nt. */
typedef void (*x86_toks_fn)(int nt, int n, float *restrict s, size_t so,
                            const void *restrict vx, const uint8_t *restrict y0, size_t ys);

/* For fn (q4_K_toks, q6_K_toks, q4_0_toks, q8_0_toks): dot, the one-token
 * dot (fn's NT = 1), and toks_n, an x86_toks_fn (fn 8 tokens at a time). */
#define TOKS_FNS(dot, toks_n, fn)                                                            \
    static void dot(int n, float *restrict s, const void *restrict vx,                      \
                    const void *restrict vy)                                                \
    {                                                                                       \
        fn(1, n, s, 0, vx, vy, 0);                                                          \
    }                                                                                       \
    static void toks_n(int nt, int n, float *restrict s, size_t so, const void *restrict vx, \
                       const uint8_t *restrict y0, size_t ys)                               \
    {                                                                                       \
        for (; nt > 0; nt -= 8, s += 8 * so, y0 += 8 * ys) {                                \
            switch (nt < 8 ? nt : 8) {                                                      \
            case 1: fn(1, n, s, so, vx, y0, ys); break;                                     \
            case 2: fn(2, n, s, so, vx, y0, ys); break;                                     \
            case 3: fn(3, n, s, so, vx, y0, ys); break;                                     \
            case 4: fn(4, n, s, so, vx, y0, ys); break;                                     \
            case 5: fn(5, n, s, so, vx, y0, ys); break;                                     \
            case 6: fn(6, n, s, so, vx, y0, ys); break;                                     \
            case 7: fn(7, n, s, so, vx, y0, ys); break;                                     \
            default: fn(8, n, s, so, vx, y0, ys); break;                                    \
            }                                                                               \
        }                                                                                   \
    }
TOKS_FNS(dot_q4_K, q4_K_toks_n, q4_K_toks)
TOKS_FNS(dot_q6_K, q6_K_toks_n, q6_K_toks)
TOKS_FNS(dot_q4_0, q4_0_toks_n, q4_0_toks)
TOKS_FNS(dot_q8_0, q8_0_toks_n, q8_0_toks)

/* The scale pair of two 16-value groups as madd operands: the lower 128
 * bits take sc0 (the first 16 values of a 32-value register), the upper
 * sc1. */
static inline __m256i scale_pair(int sc0, int sc1)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)sc1), _mm_set1_epi16((short)sc0));
}

/* The 2-bit layout of Q2_K and Q3_K: per half h of 128 values, byte l of
 * its 32 holds values l, l+32, l+64, l+96 at bits 0, 2, 4, 6. Adds to
 * isum the sums over the 16 groups of 16 values of sc[g] times the
 * group's products with the Q8_K values a, the values taken unsigned
 * (0..3, or with Q3_K's high bits, hmask bit 4h + j of byte l, 0..7)
 * through vpmaddubsw, exactly. */
static inline __m256i k2bit_sums(const uint8_t *qs, const uint8_t *hmask, const int8_t *a,
                                 const int16_t sc[16], __m256i isum)
{
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    const __m256i hm = hmask ? _mm256_loadu_si256((const __m256i *)hmask) : _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
        for (int j = 0; j < 4; j++, a += 32) {
            __m256i w = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
            if (hmask)
                w = _mm256_or_si256(
                    w, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1), 2));
            const __m256i p = _mm256_maddubs_epi16(w, _mm256_loadu_si256((const __m256i *)a));
            const int g = 8 * h + 2 * j;
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[g], sc[g + 1])));
        }
    }
    return isum;
}

/* Q2_K: a 4-bit scale and a 4-bit min per 16 values; the mins meet the
 * activation's 16-value sums (bsums). */
static void dot_q2_K(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_block_q2_K *x = vx;
    const qd_block_q8_K *y = vy;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < n / QD_QK_K; i++) {
        const __m128i scb = _mm_loadu_si128((const __m128i *)x[i].scales);
        _Alignas(32) int16_t sc[16];
        _mm256_store_si256((__m256i *)sc, _mm256_cvtepu8_epi16(_mm_and_si128(scb, m4)));
        /* mins: sum over the 16 groups of min * bsum */
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(scb, 4), m4));
        const __m256i msum =
            _mm256_madd_epi16(mn16, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const __m256i isum = k2bit_sums(x[i].qs, NULL, y[i].qs, sc, _mm256_setzero_si256());
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].dmin) * y[i].d), _mm256_cvtepi32_ps(msum),
                               accm);
    }
    *s = hsum_ps256(acc) - hsum_ps256(accm);
}

/* Q3_K's 16 six-bit scales (less 32) of a block, as int16 (the layout of
 * qd__q3k_scale, 8 vector operations for the 16). */
static inline __m256i q3k_scales(const uint8_t *s)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i b = _mm_loadl_epi64((const __m128i *)s);
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(b, m4),
                                          _mm_and_si128(_mm_srli_epi16(b, 4), m4));
    uint32_t u;
    memcpy(&u, s + 8, 4);
    const __m128i hi = _mm_and_si128(
        _mm_srlv_epi32(_mm_set1_epi32((int)u), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    const __m128i v = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
    return _mm256_cvtepi8_epi16(v);
}

/* Q3_K: Q2_K's packing plus a high bit that, clear, subtracts 4: the
 * values are taken as q + 4 (0..7) and 4 times each group's scale times
 * its activation sum (bsums) is taken off: (q + 4)·a - 4·sum(a) = q·a. */
static void dot_q3_K(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_block_q3_K *x = vx;
    const qd_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QD_QK_K; i++) {
        _Alignas(32) int16_t sc[16];
        const __m256i sc16 = q3k_scales(x[i].scales);
        _mm256_store_si256((__m256i *)sc, sc16);
        const __m256i off =
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const __m256i isum = k2bit_sums(x[i].qs, x[i].hmask, y[i].qs, sc,
                                        _mm256_sub_epi32(_mm256_setzero_si256(),
                                                         _mm256_slli_epi32(off, 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum_ps256(acc);
}

/* IQ4_XS: IQ4_NL's 32-value blocks (values by table) with 6-bit scales
 * (less 32) under one fp16 per 256. */
static void dot_iq4_xs(int n, float *restrict s, const void *restrict vx,
                       const void *restrict vy)
{
    const qd_block_iq4_xs *x = vx;
    const qd_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QD_QK_K; i++) {
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < QD_QK_K / 32; ib++) {
            const __m256i w = iq4_lookup(x[i].qs + 16 * ib);
            const __m256i d =
                dot_s8(w, _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib)));
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(
                d, _mm256_set1_epi32(qd__iq4xs_scale(x[i].scales_l, x[i].scales_h, ib))));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum_ps256(acc);
}

/* Direct dot for a weight type, or NULL (use the scalar reference). */
static qd_vec_dot_fn x86_dot_for(qd_type_t t)
{
#ifdef QD_X86_EXTRA_DOTS
    /* A kernel set with wider dots for some types (kernels_avx512.c). */
    qd_vec_dot_fn e = x86_extra_dot(t);
    if (e)
        return e;
#endif
    switch (t) {
    case QD_TYPE_F32: return dot_f32;
    case QD_TYPE_F16: return dot_f16;
    case QD_TYPE_BF16: return dot_bf16;
    case QD_TYPE_Q2_K: return dot_q2_K;
    case QD_TYPE_Q3_K: return dot_q3_K;
    case QD_TYPE_IQ4_XS: return dot_iq4_xs;
    case QD_TYPE_Q8_0: return dot_q8_0;
    case QD_TYPE_Q4_0: return dot_q4_0;
    case QD_TYPE_Q5_0: return dot_q5_0;
    case QD_TYPE_Q4_1: return dot_q4_1;
    case QD_TYPE_Q4_G128: return dot_q4_g128;
    case QD_TYPE_Q5_1: return dot_q5_1;
    case QD_TYPE_IQ4_NL: return dot_iq4_nl;
    case QD_TYPE_Q4_K: return dot_q4_K;
    case QD_TYPE_Q5_K: return dot_q5_K;
    case QD_TYPE_Q6_K: return dot_q6_K;
    default: return NULL;
    }
}

static void x86_vec_dot(qd_type_t wt, int n, float *restrict s,
                        const void *restrict x, const void *restrict y)
{
    qd_vec_dot_fn f = x86_dot_for(wt);
    if (!f)
        f = qd_type_traits(wt)->vec_dot;
    f(n, s, x, y);
}

/* Decode streams each weight row once: the hardware prefetcher restarts at
 * every 4 KiB page and the dots leave little slack to hide the misses, so
 * before each row the row drivers prefetch one row's worth of bytes
 * QD_DEC_PF_DIST ahead (quant/kernels.h) into L2, which was about 5%
 * faster than into L1 (T0: more misses in flight). */
#ifndef QD_X86_PF_HINT
#define QD_X86_PF_HINT _MM_HINT_T1
#endif

static inline void x86_prefetch(const uint8_t *p, const uint8_t *end, size_t n)
{
    const uint8_t *e = p + n < end ? p + n : end;
    for (; p < e; p += 64)
        _mm_prefetch((const char *)p, QD_X86_PF_HINT);
}

/* Row-by-row gemm over direct dots. Where each row is read once (up to 4
 * tokens, or any number through a *_toks kernel) the rows are prefetched
 * and those of the range's two halves come in turn, r0, r0 + h, r0 + 1,
 * ...: two streams of weights, as the AVX-512 decode kernels read them
 * (DEC_PAIRS in kernels_avx512.c), here a row at a time. Without that
 * the *_toks kernels were slower than the tiles from memory (8
 * sequences of the 32k Q8_0 file on QD_KERNELS=avx2 45.1 -> 29.8 t/s;
 * with it 53.6-54.4). */
static void x86_gemm_rows(const qd_qmat_t *w, int64_t r0, int64_t r1,
                          const void *act, size_t act_stride, int n_tok,
                          float *out, int64_t ldo)
{
    qd_vec_dot_fn dot = x86_dot_for(w->type);
    if (!dot)
        dot = qd_type_traits(w->type)->vec_dot;
    /* several tokens: a row's blocks unpacked once for all of them */
    const x86_toks_fn toks =
        n_tok <= 1        ? NULL
        : dot == dot_q4_K ? q4_K_toks_n
        : dot == dot_q6_K ? q6_K_toks_n
        : dot == dot_q4_0 ? q4_0_toks_n
        : dot == dot_q8_0 ? q8_0_toks_n
                          : NULL;
    const uint8_t *base = w->data;
    const uint8_t *end = base + (size_t)r1 * w->row_bytes;
    const int pf = n_tok <= 4 || toks; /* each row read once */
    const int64_t h = pf ? (r1 - r0) / 2 : 0;
    for (int64_t i = 0; i < r1 - r0; i++) {
        const int64_t r = i < 2 * h ? r0 + i / 2 + (i & 1) * h : r0 + i;
        const uint8_t *row = base + (size_t)r * w->row_bytes;
        if (pf)
            x86_prefetch(row + QD_DEC_PF_DIST, end, w->row_bytes);
        if (toks)
            toks(n_tok, (int)w->n_cols, &out[r], (size_t)ldo, row, act, act_stride);
        else
            for (int t = 0; t < n_tok; t++)
                dot((int)w->n_cols, &out[(int64_t)t * ldo + r], row,
                    (const uint8_t *)act + (size_t)t * act_stride);
    }
}

#endif /* QUANTD_QUANT_KERNELS_X86_H */
