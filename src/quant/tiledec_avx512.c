/*
 * tiledec_avx512.c — AVX-512 weight decoding for the tiled paths.
 *
 * The tiled matrix products (kernels_avx512.c's VNNI tiles, kernels_amx.c's
 * BF16 tiles) need 16 weight rows at a time, decoded to u8 values (and a
 * scale and correction per subblock, as quant/tile.c defines them) and
 * interleaved across the rows. Here each row's 64 values at a time are
 * decoded into one register, in their natural order, and 16 rows' registers
 * are transposed as 16 x 16 four-byte groups — which is exactly the VNNI
 * layout u[(k/4)*64 + r*4 + k%4] — instead of being stored and gathered.
 *
 * Types decoded here: Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, Q4_G128 (the formats
 * of the usual model files and of imported AWQ checkpoints); the others, and chunks
 * that are not a multiple of 64 values, use the scalar decoder (tile.c).
 */
#include "quant/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "quant/ref_int.h"
#include "quant/simd_avx512.h"
#include "quantd/common.h"

static inline float h2f(qd_fp16_t h) { return _cvtsh_ss(h); }


/* 32 nibbles of a legacy block: low nibbles are values 0..15, high 16..31 */
static inline __m256i nib32(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* A legacy 5-bit block's 32 values: nibbles, plus 16 where bit j of qh
 * is set (value j) */
static inline __m256i q5_32(const uint8_t *qs, const uint8_t *qhp)
{
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    return _mm256_or_si256(nib32(qs), _mm256_maskz_set1_epi8((__mmask32)qh, 16));
}

/* 32 IQ4 values (16 nibble bytes) as table value + 128 */
static inline __m256i iq4_32(const uint8_t *qs)
{
    const __m256i tab = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qd_kvalues_iq4nl)),
        _mm256_set1_epi8((char)0x80));
    return _mm256_shuffle_epi8(tab, nib32(qs));
}

/* Two legacy blocks' scales (d0, d1) and corrections: minus the type's
 * offset times the scale, or the blocks' own m (m0, m1; off < 0). */
static inline void ds2(float *ds, float *cr, qd_fp16_t d0, qd_fp16_t d1, int off,
                       qd_fp16_t m0, qd_fp16_t m1)
{
    ds[0] = h2f(d0);
    ds[1] = h2f(d1);
    cr[0] = off >= 0 ? -(float)off * ds[0] : h2f(m0);
    cr[1] = off >= 0 ? -(float)off * ds[1] : h2f(m1);
}

static inline __m512i cat2(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Values [k, k+64) of one row (k a multiple of 64) as u8, plus the scale
 * and correction of each subblock among them (64/S entries). */
static inline __m512i dec64(qd_type_t t, const uint8_t *row, int64_t k,
                            float *ds, float *cr)
{
    switch (t) {
    case QD_TYPE_Q4_0: {
        const qd_block_q4_0 *b = (const qd_block_q4_0 *)row + k / 32;
        ds2(ds, cr, b[0].d, b[1].d, qd__tile_off(QD_TYPE_Q4_0), 0, 0);
        return cat2(nib32(b[0].qs), nib32(b[1].qs));
    }
    case QD_TYPE_Q4_1: {
        const qd_block_q4_1 *b = (const qd_block_q4_1 *)row + k / 32;
        ds2(ds, cr, b[0].d, b[1].d, -1, b[0].m, b[1].m);
        return cat2(nib32(b[0].qs), nib32(b[1].qs));
    }
    case QD_TYPE_Q4_G128: {
        /* half h of a block: the low (h = 0) or high nibbles of its 64
         * bytes; 2 subblocks of 32 with the block's d and m */
        const qd_block_q4_g128 *b = (const qd_block_q4_g128 *)row + k / 128;
        ds[0] = ds[1] = h2f(b->d);
        cr[0] = cr[1] = h2f(b->m);
        __m512i q = _mm512_loadu_si512(b->qs);
        if (k % 128)
            q = _mm512_srli_epi16(q, 4);
        return _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
    }
    case QD_TYPE_Q8_0: {
        const qd_block_q8_0 *b = (const qd_block_q8_0 *)row + k / 32;
        const __m256i x80 = _mm256_set1_epi8((char)0x80);
        ds2(ds, cr, b[0].d, b[1].d, qd__tile_off(QD_TYPE_Q8_0), 0, 0);
        __m256i q0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b[0].qs), x80);
        __m256i q1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b[1].qs), x80);
        return cat2(q0, q1);
    }
    case QD_TYPE_Q5_0: {
        const qd_block_q5_0 *b = (const qd_block_q5_0 *)row + k / 32;
        ds2(ds, cr, b[0].d, b[1].d, qd__tile_off(QD_TYPE_Q5_0), 0, 0);
        return cat2(q5_32(b[0].qs, b[0].qh), q5_32(b[1].qs, b[1].qh));
    }
    case QD_TYPE_Q5_1: {
        const qd_block_q5_1 *b = (const qd_block_q5_1 *)row + k / 32;
        ds2(ds, cr, b[0].d, b[1].d, -1, b[0].m, b[1].m);
        return cat2(q5_32(b[0].qs, b[0].qh), q5_32(b[1].qs, b[1].qh));
    }
    case QD_TYPE_IQ4_NL: {
        const qd_block_iq4_nl *b = (const qd_block_iq4_nl *)row + k / 32;
        ds2(ds, cr, b[0].d, b[1].d, qd__tile_off(QD_TYPE_IQ4_NL), 0, 0);
        return cat2(iq4_32(b[0].qs), iq4_32(b[1].qs));
    }
    case QD_TYPE_IQ4_XS: {
        const qd_block_iq4_xs *b = (const qd_block_iq4_xs *)row + k / QD_QK_K;
        const int ib0 = (int)(k % QD_QK_K) / 32;
        const float d = h2f(b->d);
        for (int i = 0; i < 2; i++) {
            const int ib = ib0 + i;
            ds[i] = d * (float)qd__iq4xs_scale(b->scales_l, b->scales_h, ib);
            cr[i] = -(float)qd__tile_off(QD_TYPE_IQ4_XS) * ds[i];
        }
        return cat2(iq4_32(b->qs + 16 * ib0), iq4_32(b->qs + 16 * (ib0 + 1)));
    }
    case QD_TYPE_Q4_K:
    case QD_TYPE_Q5_K: {
        /* the nibbles of 32 bytes: low ones values 64j.., high ones
         * 64j+32..; Q5_K's fifth bit is bit 2j (low) or 2j + 1 (high) of
         * qh[l]. Both blocks start with d, dmin and the 12 scale bytes. */
        const int five = t == QD_TYPE_Q5_K;
        const uint8_t *p = row + (size_t)(k / QD_QK_K) *
                                     (five ? sizeof(qd_block_q5_K) : sizeof(qd_block_q4_K));
        const qd_block_q4_K *b4 = (const qd_block_q4_K *)p; /* d, dmin, scales */
        int j = (int)(k % QD_QK_K) / 64;
        float d = h2f(b4->d), dmin = h2f(b4->dmin);
        for (int h = 0; h < 2; h++) {
            int sc, m;
            k4_scale_min(2 * j + h, b4->scales, &sc, &m);
            ds[h] = d * (float)sc;
            cr[h] = -dmin * (float)m;
        }
        const uint8_t *qs = five ? ((const qd_block_q5_K *)p)->qs : b4->qs;
        const __m512i shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
        __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * j)));
        const __m512i v = _mm512_and_si512(_mm512_srlv_epi16(q, shv), _mm512_set1_epi8(0x0f));
        if (!five)
            return v;
        const __m512i hsh = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * j)),
                                               _mm256_set1_epi16((short)(2 * j + 1)), 1);
        __m512i hb = _mm512_broadcast_i64x4(
            _mm256_loadu_si256((const __m256i *)((const qd_block_q5_K *)p)->qh));
        hb = _mm512_and_si512(_mm512_srlv_epi16(hb, hsh), _mm512_set1_epi8(1));
        return _mm512_or_si512(v, _mm512_slli_epi16(hb, 4));
    }
    case QD_TYPE_Q6_K: {
        const qd_block_q6_K *b = (const qd_block_q6_K *)row + k / QD_QK_K;
        int qi = (int)(k % QD_QK_K) / 64, h = qi / 2;
        float d = h2f(b->d);
        for (int i = 0; i < 4; i++) {
            ds[i] = d * (float)b->scales[4 * qi + i];
            cr[i] = -(float)qd__tile_off(QD_TYPE_Q6_K) * ds[i];
        }
        const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
        __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
        __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
        if (qi % 2 == 0) {
            const __m512i sh = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
            return _mm512_or_si512(_mm512_and_si512(L, m4),
                                   _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh), m3), 4));
        }
        const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
        return _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh), m3), 4));
    }
    case QD_TYPE_Q2_K:
    case QD_TYPE_Q3_K: {
        /* half h = q / 2 of the block, 32 bytes; values 64q..64q+31 are
         * at bits 4m, 64q+32.. at bits 4m+2 (m = q % 2), Q3_K's high bits
         * at bit 4h + 2m (and + 1) of hmask */
        const int q = (int)(k % QD_QK_K) / 64, h = q / 2, m = q % 2, is = 4 * q;
        const uint8_t *qs, *sc;
        if (t == QD_TYPE_Q2_K) {
            const qd_block_q2_K *b = (const qd_block_q2_K *)row + k / QD_QK_K;
            const float d = h2f(b->d), dmin = h2f(b->dmin);
            qs = b->qs;
            sc = b->scales;
            for (int i = 0; i < 4; i++) {
                ds[i] = d * (float)(sc[is + i] & 0xf);
                cr[i] = -dmin * (float)(sc[is + i] >> 4);
            }
        } else {
            const qd_block_q3_K *b = (const qd_block_q3_K *)row + k / QD_QK_K;
            const float d = h2f(b->d);
            qs = b->qs;
            sc = b->scales;
            for (int i = 0; i < 4; i++) {
                ds[i] = d * (float)qd__q3k_scale(sc, is + i);
                cr[i] = -(float)qd__tile_off(QD_TYPE_Q3_K) * ds[i];
            }
        }
        const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * m)),
                                              _mm256_set1_epi16((short)(4 * m + 2)), 1);
        const __m512i v = _mm512_and_si512(
            _mm512_srlv_epi16(
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * h))), sh),
            _mm512_set1_epi8(3));
        if (t == QD_TYPE_Q2_K)
            return v;
        const qd_block_q3_K *b = (const qd_block_q3_K *)row + k / QD_QK_K;
        const __m512i hs = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * h + 2 * m)),
                                              _mm256_set1_epi16((short)(4 * h + 2 * m + 1)), 1);
        const __m512i hb = _mm512_and_si512(
            _mm512_srlv_epi16(
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b->hmask)), hs),
            _mm512_set1_epi8(1));
        return _mm512_or_si512(v, _mm512_slli_epi16(hb, 2));
    }
    default:
        return _mm512_setzero_si512();
    }
}

/* Prefetch the bytes of values [k, k+64) of a row (PF_AHEAD values ahead;
 * 512, 1536 and 3072 were within 3 % of each other on batched decode): each of the 16 rows is
 * its own stream, more than the hardware prefetcher follows at once. */
#ifndef PF_AHEAD
#define PF_AHEAD 1536 /* values */
#endif
#ifndef PF_SB
#define PF_SB 6 /* k-quant superblocks */
#endif
static inline void pf64(qd_type_t t, const uint8_t *row, int64_t k)
{
    size_t off;
    switch (t) {
    case QD_TYPE_Q4_0: off = (size_t)(k / 32) * sizeof(qd_block_q4_0); break;
    case QD_TYPE_Q4_1: off = (size_t)(k / 32) * sizeof(qd_block_q4_1); break;
    case QD_TYPE_Q8_0: off = (size_t)(k / 32) * sizeof(qd_block_q8_0); break;
    case QD_TYPE_Q4_G128: off = (size_t)(k / 128) * sizeof(qd_block_q4_g128); break;
    case QD_TYPE_Q4_K: off = (size_t)(k / QD_QK_K) * sizeof(qd_block_q4_K) + 16 + (size_t)(k % QD_QK_K) / 2; break;
    case QD_TYPE_Q6_K: off = (size_t)(k / QD_QK_K) * sizeof(qd_block_q6_K) + (size_t)(k % QD_QK_K) / 2; break;
    case QD_TYPE_Q2_K: off = (size_t)(k / QD_QK_K) * sizeof(qd_block_q2_K) + 16 + (size_t)(k % QD_QK_K) / 128 * 32; break;
    case QD_TYPE_Q5_K: off = (size_t)(k / QD_QK_K) * sizeof(qd_block_q5_K) + 48 + (size_t)(k % QD_QK_K) / 2; break;
    case QD_TYPE_Q5_0: off = (size_t)(k / 32) * sizeof(qd_block_q5_0); break;
    case QD_TYPE_Q5_1: off = (size_t)(k / 32) * sizeof(qd_block_q5_1); break;
    case QD_TYPE_IQ4_NL: off = (size_t)(k / 32) * sizeof(qd_block_iq4_nl); break;
    case QD_TYPE_IQ4_XS: off = (size_t)(k / QD_QK_K) * sizeof(qd_block_iq4_xs) + 8 + (size_t)(k % QD_QK_K) / 2; break;
    case QD_TYPE_Q3_K: off = (size_t)(k / QD_QK_K) * sizeof(qd_block_q3_K) + 32 + (size_t)(k % QD_QK_K) / 128 * 32; break;
    default: return;
    }
    _mm_prefetch((const char *)row + off, _MM_HINT_T0);
    _mm_prefetch((const char *)row + off + 63, _MM_HINT_T0);
}

/* The types dec64 decodes, with their subblock (qd__tile_sub): one
 * tile_body / bf16_body instance each, so that dec64's switch and the
 * subblock loops fold away. */
#define DEC64_TYPES(X)                                                                  \
    X(Q4_0, 32) X(Q4_1, 32) X(Q8_0, 32) X(Q4_K, 32) X(Q6_K, 16) X(Q4_G128, 32)           \
    X(Q2_K, 16) X(Q3_K, 16) X(Q5_K, 32) X(Q5_0, 32) X(Q5_1, 32) X(IQ4_NL, 32) X(IQ4_XS, 32)

static int has_dec64(qd_type_t t)
{
    switch (t) {
#define X(T, S) case QD_TYPE_##T:
        DEC64_TYPES(X)
#undef X
        return 1;
    default:
        return 0;
    }
}


/* One row's values [k0, k0+nk) in natural order into u, and the scale and
 * correction of each subblock (nk/S of each). The k-quants go a
 * superblock at a time, their scales unpacked as vectors. */
static inline __attribute__((always_inline)) void
dec_row(const qd_type_t t, const int S, const uint8_t *row, int64_t k0, int nk, uint8_t *u,
        float *ds, float *cr)
{
    if (t == QD_TYPE_Q4_K) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
        const qd_block_q4_K *b = (const qd_block_q4_K *)row + k0 / QD_QK_K;
        for (int i = 0; i < nk / QD_QK_K; i++, b++, u += QD_QK_K, ds += 8, cr += 8) {
            _mm_prefetch((const char *)(b + PF_SB), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PF_SB) + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PF_SB) + 128, _MM_HINT_T0);
            __m128i sc16, mn16;
            qd__k4_scales16(b->scales, &sc16, &mn16);
            __m256 d = _mm256_set1_ps(h2f(b->d)), dm = _mm256_set1_ps(-h2f(b->dmin));
            _mm256_storeu_ps(ds, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(sc16))));
            _mm256_storeu_ps(cr, _mm256_mul_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(mn16))));
            for (int j = 0; j < 4; j++) {
                __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qs + 32 * j)));
                _mm512_store_si512((void *)(u + 64 * j), _mm512_and_si512(_mm512_srlv_epi16(q, shv), m4));
            }
        }
        return;
    }
    if (t == QD_TYPE_Q6_K) {
        const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
        const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
        const qd_block_q6_K *b = (const qd_block_q6_K *)row + k0 / QD_QK_K;
        for (int i = 0; i < nk / QD_QK_K; i++, b++, u += QD_QK_K, ds += 16, cr += 16) {
            for (int l = 0; l < 4; l++)
                _mm_prefetch((const char *)(b + PF_SB) + 64 * l, _MM_HINT_T0);
            __m512 d = _mm512_set1_ps(h2f(b->d));
            __m512 sc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                             _mm_loadu_si128((const __m128i *)b->scales))));
            _mm512_storeu_ps(ds, sc);
            _mm512_storeu_ps(cr, _mm512_mul_ps(_mm512_set1_ps(-(float)qd__tile_off(QD_TYPE_Q6_K)), sc));
            for (int h = 0; h < 2; h++) {
                __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
                __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
                __m512i q01 = _mm512_or_si512(_mm512_and_si512(L, m4),
                                              _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh01), m3), 4));
                __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                              _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, sh23), m3), 4));
                _mm512_store_si512((void *)(u + 128 * h), q01);
                _mm512_store_si512((void *)(u + 128 * h + 64), q23);
            }
        }
        return;
    }
    const int per = 64 / S; /* subblocks per 64 values */
    for (int g = 0; g < nk / 64; g++) {
        pf64(t, row, k0 + 64 * g + PF_AHEAD);
        _mm512_store_si512((void *)(u + 64 * g), dec64(t, row, k0 + 64 * g, ds + g * per, cr + g * per));
    }
}

/* Rows are decoded one after the other (each row's bytes are read in
 * order, which the hardware prefetcher follows; 16 rows interleaved 36
 * bytes at a time were not, and starved batched decode of bandwidth) into
 * a 16 x nk scratch, then transposed 64 values at a time. */
static inline __attribute__((always_inline)) void
tile_body(const qd_type_t t, const int S, const uint8_t *row0,
          size_t row_bytes, int n_rows, int64_t k0, int nk, uint8_t *u,
          float *dsc, float *corr)
{
    _Alignas(64) uint8_t tmp[QD_TILE_ROWS][QD_TILE_K];
    float ds[QD_TILE_K / 16], cr[QD_TILE_K / 16];
    for (int r = 0; r < n_rows; r++) {
        dec_row(t, S, row0 + (size_t)r * row_bytes, k0, nk, tmp[r], ds, cr);
        for (int i = 0; i < nk / S; i++) {
            dsc[i * QD_TILE_ROWS + r] = ds[i];
            corr[i * QD_TILE_ROWS + r] = cr[i];
        }
    }
    for (int r = n_rows; r < QD_TILE_ROWS; r++) {
        for (int i = 0; i < nk / S; i++)
            dsc[i * QD_TILE_ROWS + r] = corr[i * QD_TILE_ROWS + r] = 0.0f;
    }
    for (int g = 0; g < nk / 64; g++) {
        __m512i v[16];
        for (int r = 0; r < 16; r++)
            v[r] = r < n_rows ? _mm512_load_si512((const void *)(tmp[r] + 64 * g))
                              : _mm512_setzero_si512();
        qd__transpose16_epi32(v);
        for (int i = 0; i < 16; i++)
            _mm512_store_si512((void *)(u + ((size_t)g * 16 + i) * 64), v[i]);
    }
}

int qd__tile_decode_512(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                        int n_rows, int64_t k0, int nk, uint8_t *restrict u,
                        float *restrict dsc, float *restrict corr)
{
    if (!has_dec64(t) || nk % 64 || k0 % 64)
        return 0;
    switch (t) {
#define X(T, S)                                                                 \
    case QD_TYPE_##T:                                                          \
        tile_body(QD_TYPE_##T, S, row0, row_bytes, n_rows, k0, nk, u, dsc, corr); \
        break;
        DEC64_TYPES(X)
#undef X
    default: return 0;
    }
    return 1;
}

/* BF16 decoding for the AMX set: values [k0, k0+nk) of n_rows (<= 16)
 * rows as bf16 (w = dsc*u + corr), in TDPBF16PS's B layout: for chunk c of
 * 32 values, pair p, row r, the bf16 of values 32c+2p and 32c+2p+1 at
 * wb[(c*16 + p)*32 + 2r + {0,1}]. */
static inline __attribute__((always_inline)) void
bf16_body(const qd_type_t t, const int S, const uint8_t *row0,
          size_t row_bytes, int n_rows, int64_t k0, int nk, uint16_t *wb)
{
    /* as tile_body: rows decoded in order first, then converted and
     * transposed 32 values at a time */
    _Alignas(64) uint8_t tmp[QD_TILE_ROWS][QD_TILE_K];
    float ds[QD_TILE_ROWS][QD_TILE_K / 16], cr[QD_TILE_ROWS][QD_TILE_K / 16];
    for (int r = 0; r < n_rows; r++)
        dec_row(t, S, row0 + (size_t)r * row_bytes, k0, nk, tmp[r], ds[r], cr[r]);
    for (int c = 0; c < nk / 32; c++) {
        /* subblocks of values 32c..32c+15 and 32c+16..32c+31 */
        const int s0 = 32 * c / S, s1 = (32 * c + 16) / S;
        __m512i w[16];
        for (int r = 0; r < 16; r++) {
            if (r >= n_rows) {
                w[r] = _mm512_setzero_si512();
                continue;
            }
            __m256i q = _mm256_load_si256((const __m256i *)(tmp[r] + 32 * c));
            __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
            __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));
            f0 = _mm512_fmadd_ps(f0, _mm512_set1_ps(ds[r][s0]), _mm512_set1_ps(cr[r][s0]));
            f1 = _mm512_fmadd_ps(f1, _mm512_set1_ps(ds[r][s1]), _mm512_set1_ps(cr[r][s1]));
            w[r] = (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
        }
        qd__transpose16_epi32(w);
        uint16_t *dst = wb + (size_t)c * 16 * 32;
        for (int p = 0; p < 16; p++)
            _mm512_store_si512((void *)(dst + (size_t)p * 32), w[p]);
    }
}

int qd__tile_decode_bf16_512(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                         int n_rows, int64_t k0, int nk, uint16_t *wb)
{
    if (!has_dec64(t) || nk % 64 || k0 % 64)
        return 0;
    switch (t) {
#define X(T, S)                                                       \
    case QD_TYPE_##T:                                                \
        bf16_body(QD_TYPE_##T, S, row0, row_bytes, n_rows, k0, nk, wb); \
        break;
        DEC64_TYPES(X)
#undef X
    default: return 0;
    }
    return 1;
}
