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

#define QD_X86_EXTRA_DOTS 1
static qd_vec_dot_fn x86_extra_dot(qd_type_t t);

#include "quant/kernels_x86.h"

/* ---- 512-bit decode dots for the k-quants ------------------------------
 * Decode is a matrix-vector product that should run at memory speed; the
 * 256-bit dots spend about as many instructions on unpacking as memory
 * allows, so these handle 64 weights per instruction and unpack the 6-bit
 * scales with word operations. Integer sums are exact, so they equal the
 * 256-bit and scalar results up to the float accumulation order. */

/* Q4_K's 12 scale bytes: 8 six-bit scales and 8 six-bit mins (as int16). */
static inline void k4_scales16(const uint8_t *q, __m128i *sc16, __m128i *mn16)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t s_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    *sc16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(s_lo | ((uint64_t)s_hi << 32))));
    *mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(m_lo | ((uint64_t)m_hi << 32))));
}

static inline float hsum_ps512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* NR weight rows (x0, x0 + bx, ...) against one Q8_K activation row: the
 * activation block is loaded once for all rows, each row keeps its own
 * float accumulators and is reduced once at the end, so a row's result does
 * not depend on NR. Integer sums use vpdpwssd (madd + add in one).
 * Only NR = 1 is used: a driver taking 2 or 4 rows per call (activation
 * reused from registers) measured 10-20% slower on decode, the rows' 2-4
 * interleaved streams costing more in memory than the loads saved. */
static inline __attribute__((always_inline)) void
q4_K_rows(const int NR, int n, float *restrict s, const uint8_t *restrict x0,
          size_t bx, const void *restrict vy)
{
    const qd_block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* upper 256 bits take the high nibbles */
    const __m512i shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    /* int16 lanes 0-15 take scale 2c, lanes 16-31 scale 2c+1 */
    __m512i sidx[4];
    for (int c = 0; c < 4; c++)
        sidx[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * c))),
                                     _mm256_set1_epi16((short)(2 * c + 1)), 1);
    __m512 acc[4];
    __m128 accm[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        acc[r] = _mm512_setzero_ps();
        accm[r] = _mm_setzero_ps();
    }
    for (int i = 0; i < n / QD_QK_K; i++) {
        const int8_t *ap = y[i].qs;
        __m512i a[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            a[c] = _mm512_loadu_si512(ap + 64 * c);
        /* bsums of each 32-value sub-block: bsums[2j] + bsums[2j+1] */
        __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        __m128i bsp = _mm256_castsi256_si128(_mm256_madd_epi16(bs, _mm256_set1_epi16(1)));
        bsp = _mm_packs_epi32(bsp, _mm256_extracti128_si256(_mm256_madd_epi16(bs, _mm256_set1_epi16(1)), 1));
        const float yd = y[i].d;
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const qd_block_q4_K *x = (const qd_block_q4_K *)(x0 + (size_t)r * bx) + i;
            __m128i sc16, mn16;
            k4_scales16(x->scales, &sc16, &mn16);
            const __m512i scz = _mm512_castsi128_si512(sc16);
            const uint8_t *q = x->qs;
            __m512i isum0 = _mm512_setzero_si512(), isum1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c += 2) {
                __m512i b0 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + 32 * c)));
                __m512i b1 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + 32 * c + 32)));
                b0 = _mm512_and_si512(_mm512_srlv_epi16(b0, shv), m4);
                b1 = _mm512_and_si512(_mm512_srlv_epi16(b1, shv), m4);
                __m512i p0 = _mm512_maddubs_epi16(b0, a[c]);
                __m512i p1 = _mm512_maddubs_epi16(b1, a[c + 1]);
                isum0 = _mm512_dpwssd_epi32(isum0, p0, _mm512_permutexvar_epi16(sidx[c], scz));
                isum1 = _mm512_dpwssd_epi32(isum1, p1, _mm512_permutexvar_epi16(sidx[c + 1], scz));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x->d) * yd),
                                     _mm512_cvtepi32_ps(_mm512_add_epi32(isum0, isum1)), acc[r]);
            /* mins: mn[j] * (bsums[2j] + bsums[2j+1]) */
            accm[r] = _mm_fmadd_ps(_mm_set1_ps(h2f(x->dmin) * yd),
                                   _mm_cvtepi32_ps(_mm_madd_epi16(mn16, bsp)), accm[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        __m128 m = accm[r];
        m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        s[r] = hsum_ps512(acc[r]) - _mm_cvtss_f32(m);
    }
}

static void dot_q4_K_512(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    q4_K_rows(1, n, s, vx, 0, vy);
}

static inline __attribute__((always_inline)) void
q6_K_rows(const int NR, int n, float *restrict s, const uint8_t *restrict x0,
          size_t bx, const void *restrict vy)
{
    const qd_block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
    /* qh bits: low 256 take shift 0 (and 4), upper 256 shift 2 (and 6) */
    const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    /* int16 lane l of a product covers 2 values of group base + l / 8 */
    __m512i sidx[4];
    for (int k = 0; k < 4; k++) {
        _Alignas(64) int16_t ix[32];
        for (int l = 0; l < 32; l++)
            ix[l] = (int16_t)(4 * k + l / 8);
        sidx[k] = _mm512_load_si512(ix);
    }
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        acc[r] = _mm512_setzero_ps();
    for (int i = 0; i < n / QD_QK_K; i++) {
        const int8_t *ap = y[i].qs;
        __m512i a[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            a[c] = _mm512_loadu_si512(ap + 64 * c);
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const float yd = y[i].d;
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const qd_block_q6_K *x = (const qd_block_q6_K *)(x0 + (size_t)r * bx) + i;
            const uint8_t *ql = x->ql, *qh = x->qh;
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
            const __m512i scz = _mm512_castsi256_si512(sc16);
            __m512i isum = _mm512_zextsi256_si512(
                /* offset 32: 32 * sum_g sc[g] * bsums[g] */
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5)));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i L = _mm512_loadu_si512(ql + 64 * h);
                __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qh + 32 * h)));
                __m512i q01 = _mm512_or_si512(_mm512_and_si512(L, m4),
                                              _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh01), m3), 4));
                __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                              _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh23), m3), 4));
                __m512i p01 = _mm512_maddubs_epi16(q01, a[2 * h]);
                __m512i p23 = _mm512_maddubs_epi16(q23, a[2 * h + 1]);
                isum = _mm512_dpwssd_epi32(isum, p01, _mm512_permutexvar_epi16(sidx[2 * h], scz));
                isum = _mm512_dpwssd_epi32(isum, p23, _mm512_permutexvar_epi16(sidx[2 * h + 1], scz));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x->d) * yd),
                                     _mm512_cvtepi32_ps(isum), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        s[r] = hsum_ps512(acc[r]);
}

static void dot_q6_K_512(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    q6_K_rows(1, n, s, vx, 0, vy);
}

static qd_vec_dot_fn x86_extra_dot(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q4_K: return dot_q4_K_512;
    case QD_TYPE_Q6_K: return dot_q6_K_512;
    default: return NULL;
    }
}

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

/* ---- vectorized tile decode for Q4_K and Q6_K -----------------------
 * Same output as qd__tile_decode (quant/tile.c): each row is unpacked in
 * natural order into a 16-row scratch, then 4-byte groups are gathered
 * across the 16 rows into the interleaved tile. */

static void dec_row_q4_K(const uint8_t *row, int64_t k0, int nk, uint8_t *u,
                         float *ds, float *cr)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const qd_block_q4_K *b = (const qd_block_q4_K *)row + k0 / QD_QK_K;
    for (int i = 0; i < nk / QD_QK_K; i++, b++, u += QD_QK_K, ds += 8, cr += 8) {
        __m128i sc16, mn16;
        k4_scales16(b->scales, &sc16, &mn16);
        __m256 d = _mm256_set1_ps(h2f(b->d)), dm = _mm256_set1_ps(-h2f(b->dmin));
        _mm256_storeu_ps(ds, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(sc16))));
        _mm256_storeu_ps(cr, _mm256_mul_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(mn16))));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qs + 32 * j)));
            _mm512_storeu_si512(u + 64 * j, _mm512_and_si512(_mm512_srlv_epi16(q, shv), m4));
        }
    }
}

static void dec_row_q6_K(const uint8_t *row, int64_t k0, int nk, uint8_t *u,
                         float *ds, float *cr)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const qd_block_q6_K *b = (const qd_block_q6_K *)row + k0 / QD_QK_K;
    for (int i = 0; i < nk / QD_QK_K; i++, b++, u += QD_QK_K, ds += 16, cr += 16) {
        __m512 d = _mm512_set1_ps(h2f(b->d));
        __m512 sc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                         _mm_loadu_si128((const __m128i *)b->scales))));
        _mm512_storeu_ps(ds, sc);
        _mm512_storeu_ps(cr, _mm512_mul_ps(_mm512_set1_ps(-32.0f), sc));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
            __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(L, m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh01), m3), 4));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh23), m3), 4));
            _mm512_storeu_si512(u + 128 * h, q01);
            _mm512_storeu_si512(u + 128 * h + 64, q23);
        }
    }
}

int qd__tile_decode_row_512(qd_type_t t, const uint8_t *row, int64_t k0, int nk,
                            uint8_t *u, float *dsc, float *corr)
{
    if (t == QD_TYPE_Q4_K)
        dec_row_q4_K(row, k0, nk, u, dsc, corr);
    else if (t == QD_TYPE_Q6_K)
        dec_row_q6_K(row, k0, nk, u, dsc, corr);
    else
        return 0;
    return 1;
}

/* Returns 0 when the type has no vectorized decoder here. Also used by
 * the AMX set (kernels_amx.c), which shares this tile layout. */
int qd__tile_decode_512(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                           int n_rows, int64_t k0, int nk, uint8_t *restrict u,
                           float *restrict dsc, float *restrict corr)
{
    void (*dec)(const uint8_t *, int64_t, int, uint8_t *, float *, float *);
    if (t == QD_TYPE_Q4_K)
        dec = dec_row_q4_K;
    else if (t == QD_TYPE_Q6_K)
        dec = dec_row_q6_K;
    else
        return 0;
    int ns = nk / qd__tile_sub(t);
    _Alignas(64) uint8_t tmp[QD_TILE_ROWS][QD_TILE_K];
    _Alignas(64) float ds[QD_TILE_ROWS][QD_TILE_K / 16];
    _Alignas(64) float cr[QD_TILE_ROWS][QD_TILE_K / 16];
    for (int r = 0; r < QD_TILE_ROWS; r++) {
        if (r < n_rows) {
            dec(row0 + (size_t)r * row_bytes, k0, nk, tmp[r], ds[r], cr[r]);
        } else {
            memset(tmp[r], 0, (size_t)nk);
            memset(ds[r], 0, sizeof(float) * (size_t)ns);
            memset(cr[r], 0, sizeof(float) * (size_t)ns);
        }
    }
    const __m512i vb = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(QD_TILE_K));
    const __m512i vf = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(QD_TILE_K / 16));
    for (int g = 0; g < nk / 4; g++)
        _mm512_store_si512((void *)(u + (size_t)g * 64),
                           _mm512_i32gather_epi32(vb, (const void *)(&tmp[0][0] + 4 * g), 1));
    for (int s = 0; s < ns; s++) {
        _mm512_store_ps(dsc + s * QD_TILE_ROWS, _mm512_i32gather_ps(vf, &ds[0][s], 4));
        _mm512_store_ps(corr + s * QD_TILE_ROWS, _mm512_i32gather_ps(vf, &cr[0][s], 4));
    }
    return 1;
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
            if (!qd__tile_decode_512(w->type, row0, w->row_bytes, nr, k0, nk, u, dsc, corr))
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
