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

#include "quant/simd_avx512.h"
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

/* The kernels prefetch QD_DEC_PF_DIST (quant/kernels.h) bytes ahead of
 * the block they read, n lines per step with n >= step/64 so that every
 * line of the stream is touched, into L1 (T0): tg128 against T1, three
 * alternations, Q4_K_M 41.4-41.8 vs 39.0-40.6 t/s, Q4_0 45.1-45.7 vs
 * 43.2-44.1, Q8_0 24.1-24.2 vs 23.4-23.7; T2 and NTA were slower, and so
 * were distances of 1 and 8 KiB. */

static inline __attribute__((always_inline)) void dec_prefetch(const uint8_t *p, int n)
{
    for (int i = 0; i < n; i++)
        _mm_prefetch((const char *)p + 64 * i, _MM_HINT_T0);
}


static inline float hsum_ps512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* Q4_K unpacking constants: the shift that gives the upper 256 bits of a
 * broadcast 32-byte load the high nibbles, and the scale index of each
 * int16 product lane (lanes 0-15 of the c-th 64 values take scale 2c,
 * lanes 16-31 scale 2c+1). */
static inline void q4_consts(__m512i *shv, __m512i sidx[4])
{
    *shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    for (int c = 0; c < 4; c++)
        sidx[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * c))),
                                     _mm256_set1_epi16((short)(2 * c + 1)), 1);
}

/* NR weight rows (x0, x0 + bx, ...) against one Q8_K activation row: the
 * activation block is loaded once for all rows, each row keeps its own
 * float accumulators and is reduced once at the end, so a row's result does
 * not depend on NR. Integer sums use vpdpwssd (madd + add in one).
 * q4_K_rows serves the row-by-row dots (NR = 1); decode takes Q4_K
 * through q4_K_decN. q6_K_rows below takes its rows two at a time, from
 * two streams (DEC_PAIRS): rows next to each other, tried first, were
 * 10-20 % slower than one at a time. */
static inline __attribute__((always_inline)) void
q4_K_rows(const int NR, int n, float *restrict s, const uint8_t *restrict x0,
          size_t bx, const void *restrict vy)
{
    const qd_block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i shv, sidx[4];
    q4_consts(&shv, sidx);
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
            dec_prefetch((const uint8_t *)x + QD_DEC_PF_DIST, 3);
            __m128i sc16, mn16;
            qd__k4_scales16(x->scales, &sc16, &mn16);
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

/* Q6_K unpacking constants: qh bits s, s+1 go to bits 4, 5 by a 32-bit
 * rotate left by 4 - s (the 0x30 mask drops what crossed bytes): the low
 * 256 bits take s = 0 (and 4), the upper s = 2 (and 6); and the scale
 * index of each int16 product lane (lane l of a product covers 2 values of
 * group base + l / 8). */
static inline void q6_consts(__m512i *r01, __m512i *r23, __m512i sidx[4])
{
    *r01 = _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(2), 1);
    *r23 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(30), 1);
    for (int k = 0; k < 4; k++) {
        _Alignas(64) int16_t ix[32];
        for (int l = 0; l < 32; l++)
            ix[l] = (int16_t)(4 * k + l / 8);
        sidx[k] = _mm512_load_si512(ix);
    }
}

static inline __attribute__((always_inline)) void
q6_K_rows(const int NR, int n, float *restrict s, size_t so, const uint8_t *restrict x0,
          size_t bx, const void *restrict vy)
{
    const qd_block_q8_K *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    __m512i r01, r23, sidx[4];
    q6_consts(&r01, &r23, sidx);
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
            dec_prefetch((const uint8_t *)x + QD_DEC_PF_DIST, 4);
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
                /* (L & 0x0f) | high bits, 0xec = (A & C) | B */
                __m512i q01 = _mm512_ternarylogic_epi32(
                    L, _mm512_and_si512(_mm512_rolv_epi32(H, r01), m30), m4, 0xec);
                __m512i q23 = _mm512_ternarylogic_epi32(
                    _mm512_srli_epi16(L, 4), _mm512_and_si512(_mm512_rolv_epi32(H, r23), m30), m4, 0xec);
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
        s[(size_t)r * so] = hsum_ps512(acc[r]);
}

static void dot_q6_K_512(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    q6_K_rows(1, n, s, 0, vx, 0, vy);
}

/* ---- decode dots for Q4_1 ---------------------------------------------
 * The 256-bit dots handle one 32-value block per step and spend most of
 * their instructions on the block's fp16 scale. This one takes two blocks
 * per zmm against an activation row unpacked once per matmul call
 * (dec_act_t): int8 values in the nibble order of a block pair (A0-15
 * B0-15 A16-31 B16-31), and per block its float scale da and the Q8_1
 * s = da * sum(a). A pair is one masked 64-byte load; vpermw picks the
 * nibble bytes and a variable shift splits them. The fp16 weight scales
 * (and mins) of 8 pairs are merged into one vector (a masked vpermw per
 * pair), converted and multiplied by da once per 16 blocks, and vpermps
 * spreads them over each pair's lanes. Integer sums are exact; only the
 * float order differs. (Q4_0 and Q8_0 have kernels of their own,
 * kt_grp_q4_0 and kt_grp_q8_0 below, for one token as for several.) */
#define DEC_KMAX 16384

typedef struct {
    _Alignas(64) int8_t qs[DEC_KMAX];
    _Alignas(64) float da[DEC_KMAX / 32 + 16];   /* per block, zero-padded */
    _Alignas(64) float sm[DEC_KMAX / 32 + 16];   /* Q4_1: s per block */
    _Alignas(64) int32_t corr[DEC_KMAX / 64 + 16]; /* Q4_K: sub-block sums, 4 a superblock */
    const qd_block_q8_K *y;                        /* Q4_K, Q5_K: the Q8_K row */
} dec_act_t;

/* sum of 32 int8 */
static inline int sum_i8x32(const int8_t *q)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)q);
    __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)),
                                _mm256_setzero_si256());
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
    return _mm_cvtsi128_si32(t) - 32 * 128;
}

/* A Q8_1 activation row for Q4_1 weights. */
static void dec_act_prep_q41(const void *act, int64_t n, dec_act_t *d)
{
    const int nb = (int)(n / 32), np = (nb + 1) / 2;
    const qd_block_q8_1 *y = act;
    memset(d->qs + 64 * (np - 1), 0, 64);
    memset(d->da, 0, sizeof(float) * (size_t)(nb + 16));
    memset(d->sm, 0, sizeof(float) * (size_t)(nb + 16));
    for (int b = 0; b < nb; b++) {
        int8_t *dst = d->qs + 64 * (b / 2);
        int hb = b % 2;
        d->da[b] = h2f(y[b].d);
        d->sm[b] = h2f(y[b].s);
        memcpy(dst + 16 * hb, y[b].qs, 16);
        memcpy(dst + 32 + 16 * hb, y[b].qs + 16, 16);
    }
}

/* Up to 8 Q4_1 block pairs from block b0 (np pairs, then a lone block
 * when tail) of the row x, added to acc[0..1] and the mins to *accm. */
static inline __attribute__((always_inline)) void
q41_group(int np, int tail, const uint8_t *restrict x, int b0, const dec_act_t *restrict d,
          __m512 *acc, __m512 *accm)
{
    const int bsz = (int)sizeof(qd_block_q4_1), wb = bsz / 2;
    /* word lanes 2j, 2j+1 of the merged scales take d of A (word 0) and B
     * (word wb); the mins likewise from words 1 and wb + 1 */
    const __m512i didx = _mm512_set1_epi32(wb << 16);
    const __m512i midx = _mm512_set1_epi32(((wb + 1) << 16) | 1);
    /* nibble bytes: words of A's qs, B's qs, A's, B's; the upper 256 bits
     * shifted by 4 (high nibbles) */
    const int qw = 2, qb = wb + qw - 8;
    const __m512i qidx = _mm512_set_epi16(
        qb + 15, qb + 14, qb + 13, qb + 12, qb + 11, qb + 10, qb + 9, qb + 8,
        qw + 7, qw + 6, qw + 5, qw + 4, qw + 3, qw + 2, qw + 1, qw,
        qb + 15, qb + 14, qb + 13, qb + 12, qb + 11, qb + 10, qb + 9, qb + 8,
        qw + 7, qw + 6, qw + 5, qw + 4, qw + 3, qw + 2, qw + 1, qw);
    const __m512i shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    /* lanes of a pair's products: A x4, B x4, A x4, B x4 */
    const __m512i ebase = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
    __m512i isum[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        isum[j] = _mm512_setzero_si512();
    __m512i dacc = _mm512_setzero_si512(), macc = _mm512_setzero_si512();
    const int nj = np + tail;
#pragma GCC unroll 8
    for (int j = 0; j < nj; j++) {
        const int two = j < np, p = b0 / 2 + j;
        const uint8_t *xa = x + (size_t)(b0 + 2 * j) * bsz;
        dec_prefetch(xa + QD_DEC_PF_DIST, 1);
        /* the whole pair (never past it, so never past the matrix) */
        const __mmask32 wmask = (__mmask32)((1ull << (two ? 2 * wb : wb)) - 1);
        const __m512i win = _mm512_maskz_loadu_epi16(wmask, xa);
        const __m512i a = _mm512_load_si512(d->qs + 64 * p);
        const __m512i w = _mm512_and_si512(
            _mm512_srlv_epi16(_mm512_permutexvar_epi16(qidx, win), shv), _mm512_set1_epi8(0x0f));
        isum[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a);
        const __mmask32 lanes = (__mmask32)3u << (2 * j);
        dacc = _mm512_mask_permutexvar_epi16(dacc, lanes, didx, win);
        macc = _mm512_mask_permutexvar_epi16(macc, lanes, midx, win);
    }
    /* per-block scales dw * da, then spread over each pair's lanes */
    const __m512 dv = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(dacc)),
                                    _mm512_loadu_ps(d->da + b0));
#pragma GCC unroll 8
    for (int j = 0; j < nj; j++) {
        __m512 sv = _mm512_permutexvar_ps(_mm512_add_epi32(ebase, _mm512_set1_epi32(2 * j)), dv);
        acc[j & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[j]), sv, acc[j & 1]);
    }
    *accm = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(macc)),
                            _mm512_loadu_ps(d->sm + b0), *accm);
}

/* Q4_1 decode of NR rows (x, x + bx) into s[0], s[so]. */
static inline __attribute__((always_inline)) void
q4_1_decN(const int NR, int n, float *restrict s, size_t so, const uint8_t *restrict x0,
          size_t bx, const void *restrict vd)
{
    const dec_act_t *d = vd;
    const int nb = n / 32;
    __m512 acc[2][2], accm[2];
    for (int r = 0; r < NR; r++) {
        acc[r][0] = acc[r][1] = accm[r] = _mm512_setzero_ps();
    }
    int b = 0;
    for (; b + 16 <= nb; b += 16)
        for (int r = 0; r < NR; r++)
            q41_group(8, 0, x0 + (size_t)r * bx, b, d, acc[r], &accm[r]);
    if (b < nb)
        for (int r = 0; r < NR; r++)
            q41_group((nb - b) / 2, (nb - b) % 2, x0 + (size_t)r * bx, b, d, acc[r], &accm[r]);
    for (int r = 0; r < NR; r++)
        s[(size_t)r * so] = hsum_ps512(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), accm[r]));
}

/* Q4_K decode: the activation's values are reordered per 128 (a0-31
 * a64-95 a32-63 a96-127) so that one 64-byte load of weights splits with
 * one shift into the low nibbles of sub-blocks 0 and 2 and the high ones
 * of 1 and 3: a shift less per 128 values than the broadcast form of
 * q4_K_rows, whose 512-bit shifts, vpmaddubsw and vpdpwssd all queue
 * for the same port. */
static void dec_act_prep_q4K(const void *act, int64_t n, dec_act_t *d)
{
    const qd_block_q8_K *y = act;
    d->y = y;
    for (int64_t i = 0; i < n / QD_QK_K; i++) {
        /* sums of the 8 sub-blocks of 32: bsums[2j] + bsums[2j+1] */
        __m256i bs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums),
                                       _mm256_set1_epi16(1));
        _mm_store_si128((__m128i *)(d->corr + 4 * i),
                        _mm_packs_epi32(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1)));
        for (int h = 0; h < 2; h++) {
            const int8_t *src = y[i].qs + 128 * h;
            int8_t *dst = d->qs + QD_QK_K * i + 128 * h;
            memcpy(dst, src, 32);
            memcpy(dst + 32, src + 64, 32);
            memcpy(dst + 64, src + 32, 32);
            memcpy(dst + 96, src + 96, 32);
        }
    }
}

/* One Q4_K superblock x against the unpacked activation's superblock i:
 * the scaled sums into *acc, the min terms into *accm. */
static inline __attribute__((always_inline)) void
qk_sb(const int five, const uint8_t *blk, int i, const dec_act_t *d, const __m512i sidx[4],
      __m512 *acc, __m128 *accm)
{
    /* Q4_K and Q5_K blocks both start with d, dmin and the 12 scale
     * bytes; Q5_K's fifth bits (qh) follow, then the nibbles */
    const qd_block_q4_K *x = (const qd_block_q4_K *)blk;
    const uint8_t *qs = five ? ((const qd_block_q5_K *)blk)->qs : x->qs;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const int8_t *ap = d->qs + QD_QK_K * i;
    const __m128i bsp = _mm_load_si128((const __m128i *)(d->corr + 4 * i));
    /* d and dmin converted together, times the activation scale */
    uint32_t ddm;
    memcpy(&ddm, &x->d, 4);
    const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)ddm)),
                                 _mm_set1_ps(d->y[i].d));
    __m128i sc16, mn16;
    qd__k4_scales16(x->scales, &sc16, &mn16);
    const __m512i scz = _mm512_castsi128_si512(sc16);
    __m512i qh = _mm512_setzero_si512();
    if (five)
        qh = _mm512_broadcast_i64x4(
            _mm256_loadu_si256((const __m256i *)((const qd_block_q5_K *)blk)->qh));
    __m512i isum0 = _mm512_setzero_si512(), isum1 = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i q = _mm512_loadu_si512(qs + 64 * h);
        __m512i lo = _mm512_and_si512(q, m4);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        if (five) {
            /* value p's fifth bit is bit p/32 (its sub-block) of qh[p%32]:
             * lo holds sub-blocks 4h and 4h+2, hi 4h+1 and 4h+3 */
            const __m512i one = _mm512_set1_epi8(1);
            const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * h)),
                                                   _mm256_set1_epi16((short)(4 * h + 2)), 1);
            const __m512i shh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * h + 1)),
                                                   _mm256_set1_epi16((short)(4 * h + 3)), 1);
            lo = _mm512_or_si512(lo, _mm512_slli_epi16(
                                         _mm512_and_si512(_mm512_srlv_epi16(qh, shl), one), 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi16(
                                         _mm512_and_si512(_mm512_srlv_epi16(qh, shh), one), 4));
        }
        __m512i p0 = _mm512_maddubs_epi16(lo, _mm512_load_si512(ap + 128 * h));
        __m512i p1 = _mm512_maddubs_epi16(hi, _mm512_load_si512(ap + 128 * h + 64));
        isum0 = _mm512_dpwssd_epi32(isum0, p0, _mm512_permutexvar_epi16(sidx[2 * h], scz));
        isum1 = _mm512_dpwssd_epi32(isum1, p1, _mm512_permutexvar_epi16(sidx[2 * h + 1], scz));
    }
    *acc = _mm512_fmadd_ps(_mm512_broadcastss_ps(dd),
                           _mm512_cvtepi32_ps(_mm512_add_epi32(isum0, isum1)), *acc);
    *accm = _mm_fmadd_ps(_mm_permute_ps(dd, 0x55),
                         _mm_cvtepi32_ps(_mm_madd_epi16(mn16, bsp)), *accm);
}

static inline float q4_K_fin(__m512 acc, __m128 accm)
{
    accm = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    accm = _mm_add_ss(accm, _mm_movehdup_ps(accm));
    return hsum_ps512(acc) - _mm_cvtss_f32(accm);
}

/* Q4_K (five = 0) or Q5_K decode of NR rows (x, x + bx) into s[0], s[so]. */
static inline __attribute__((always_inline)) void
qk_decN(const int five, const int NR, int n, float *restrict s, size_t so, const uint8_t *restrict x0,
          size_t bx, const void *restrict vd)
{
    const dec_act_t *d = vd;
    /* lo of half h: sub-blocks 4h (int16 lanes 0-15) and 4h+2; hi: 4h+1, 4h+3 */
    __m512i sidx[4];
    for (int k = 0; k < 4; k++) {
        int h = k / 2, hi = k % 2;
        sidx[k] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set1_epi16((short)(4 * h + hi))),
            _mm256_set1_epi16((short)(4 * h + hi + 2)), 1);
    }
    __m512 acc[2];
    __m128 accm[2];
    for (int r = 0; r < NR; r++) {
        acc[r] = _mm512_setzero_ps();
        accm[r] = _mm_setzero_ps();
    }
    for (int i = 0; i < n / QD_QK_K; i++) {
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++) {
            const uint8_t *x = x0 + (size_t)r * bx +
                               (size_t)i * (five ? sizeof(qd_block_q5_K) : sizeof(qd_block_q4_K));
            dec_prefetch(x + QD_DEC_PF_DIST, 3);
            qk_sb(five, x, i, d, sidx, &acc[r], &accm[r]);
        }
    }
    for (int r = 0; r < NR; r++)
        s[(size_t)r * so] = q4_K_fin(acc[r], accm[r]);
}

#define QK_DECN(name, five)                                                                \
    static inline __attribute__((always_inline)) void name(                                 \
        const int NR, int n, float *restrict s, size_t so, const uint8_t *restrict x0,      \
        size_t bx, const void *restrict vd)                                                 \
    {                                                                                       \
        qk_decN(five, NR, n, s, so, x0, bx, vd);                                            \
    }
QK_DECN(q4_K_decN, 0)
QK_DECN(q5_K_decN, 1)

/* ---- small batches: one weight row, NT activation rows ----
 * Batched decode (see avx512_gemm_prefers): Q4_K and Q6_K from 2 tokens
 * to KTOKS_MAX, Q4_0 and Q8_0 from 1 (their decode too). Each stretch of
 * a row is unpacked once and dotted with every token's activation with
 * vpdpbusd, instead of going through the decoded 16-row tiles (whose
 * decoding costs more than the products at these batch sizes).
 *
 * Q6_K: each run of 256 values (a superblock) is unpacked into four zmm
 * W0..W3 of unsigned bytes whose int32 lane l always holds values of the
 * 16-value group l (values 16l+4k .. 16l+4k+3 in Wk), so one vpdpbusd
 * accumulator per token sums each group in its own lane and the groups'
 * scales are applied once per run, as a float vector. For that the
 * activations are laid out to match, once per matmul call
 * (avx512_prefers_act): per run, value 16l+4k+i at byte 64k+4l+i, then
 * per group -32 times its sum (the offset the weights were unpacked
 * with), which starts each token's integer sums, and after the row's runs
 * their Q8_K scales. Integer sums are exact; only the float order differs
 * from the single-token dots.
 *
 * Q4_K, whose scales are per 32 values, takes runs in pairs instead, with
 * a layout of its own (kt4_blk_t): lane l of eight zmm is sub-block l&7
 * of run 2p + (l>>3), so that a token's eight vpdpbusd are followed by
 * one scaling for both runs — 6 instructions per token and run, not 8,
 * where those per token are nearly all the work (8 tokens x a 4096 x
 * 4096 matrix, one thread: 1.29 ms with the 16-group layout). Q4_0 and
 * Q8_0, whose scales are per 32 values too, take groups of 16 blocks
 * (kt0w_blk_t, kt_grp_q4_0, kt_grp_q8_0): lane l of eight zmm is a whole
 * block, 3 instructions per token for 512 values' scales instead of 6 (8
 * tokens x 8192 x 2048, one thread: Q4_0 0.90-0.92 ms against 1.17-1.20,
 * Q8_0 0.80-0.84 against 1.19-1.22). */
#define KTOKS_MAX 16 /* tokens of one pass over a row (accumulators in registers) */

/* A run of 256 Q8_K activations (Q6_K): values in lane order (kt_lanes),
 * then per group l -32 times its sum (bsums); the runs' scales d follow
 * the row's runs (one float each: a per-lane copy measured 6 % slower). */
typedef struct {
    int8_t qs[QD_QK_K];
    int32_t nb[16];
} kt_blk_t;

/* Q4_K's pair of runs (2p, 2p+1): value 4k+i of sub-block s of run 2p+h
 * at byte 64k + 4(8h+s) + i; per lane 8h+s the run's d and d times the
 * sub-block's sum. A row's lone last run pairs with zeros. */
typedef struct {
    int8_t qs[512];
    float dv[16];
    float bs[16];
} kt4_blk_t;

/* The types taken in groups of 16 blocks (kt_grp_*), from one token. */
static inline int kt_grp_type(qd_type_t t) { return t == QD_TYPE_Q4_0 || t == QD_TYPE_Q8_0; }

/* Q4_0's and Q8_0's groups of 16 blocks (512 values): lane 4b+j is block
 * 4j+b of the group (the order kt_grp_q4_0's and kt_grp_q8_0's transposes
 * leave), byte 64k+4(4b+j)+i its value 4k+i; per lane minus the weights'
 * offset (Q4_0 8, Q8_0 128) times the block's sum, and its scale. The
 * lanes of blocks past a row's end are zero. */
typedef struct {
    int8_t qs[512];
    int32_t nb[16];
    float d[16];
} kt0w_blk_t;
_Static_assert(sizeof(kt0w_blk_t) <= 640, "QD_PREFERS_ACT_BYTES allows 640 bytes a started group");

/* value 16l+4k+i of a run of 256 int8 to byte 64k+4l+i */
static inline void kt_lanes(int8_t *restrict dst, const int8_t *restrict src)
{
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < 16; l++)
            memcpy(dst + 64 * k + 4 * l, src + 16 * l + 4 * k, 4);
}

static size_t avx512_prefers_act_bytes(qd_type_t t, int64_t n)
{
    int64_t nr = n / 256;
    if (t == QD_TYPE_Q4_K)
        return (size_t)((nr + 1) / 2) * sizeof(kt4_blk_t);
    if (kt_grp_type(t))
        return (size_t)((n / 32 + 15) / 16) * sizeof(kt0w_blk_t);
    return (size_t)nr * sizeof(kt_blk_t) + QD_ALIGN_UP((size_t)nr * sizeof(float), 64);
}

/* Layouts: Q6_K's runs, Q4_K's pairs, and the groups of 16 blocks with
 * Q4_0's or Q8_0's offset. */
static int avx512_prefers_layout(qd_type_t t)
{
    return t == QD_TYPE_Q4_K ? 1 : t == QD_TYPE_Q4_0 ? 2 : t == QD_TYPE_Q8_0 ? 3 : 0;
}

/* A vec_dot_type row (n values) to the layout of type t. */

static void avx512_prefers_act(qd_type_t t, const void *act, int64_t n, void *dst)
{
    if (kt_grp_type(t)) {
        const qd_block_q8_0 *y = act;
        const int64_t nblk = n / 32;
        const int off = qd__tile_off(t); /* 8 or 128 */
        kt0w_blk_t *o = dst;
        for (int64_t g = 0; g < (nblk + 15) / 16; g++) {
            memset(&o[g], 0, sizeof o[g]);
            for (int b = 0; b < 4; b++)
                for (int j = 0; j < 4; j++) {
                    const int l = 4 * b + j;
                    const int64_t bi = 16 * g + 4 * j + b;
                    if (bi >= nblk)
                        continue;
                    for (int k = 0; k < 8; k++)
                        memcpy(o[g].qs + 64 * k + 4 * l, y[bi].qs + 4 * k, 4);
                    o[g].nb[l] = -off * sum_i8x32(y[bi].qs);
                    o[g].d[l] = h2f(y[bi].d);
                }
        }
        return;
    }
    const qd_block_q8_K *y = act;
    int64_t nsb = n / QD_QK_K;
    if (t == QD_TYPE_Q4_K) {
        kt4_blk_t *o = dst;
        for (int64_t p = 0; p < (nsb + 1) / 2; p++) {
            memset(&o[p], 0, sizeof o[p]);
            for (int h = 0; h < 2 && 2 * p + h < nsb; h++) {
                const qd_block_q8_K *b = &y[2 * p + h];
                for (int sb = 0; sb < 8; sb++) {
                    int l = 8 * h + sb;
                    for (int k = 0; k < 8; k++)
                        memcpy(o[p].qs + 64 * k + 4 * l, b->qs + 32 * sb + 4 * k, 4);
                    o[p].dv[l] = b->d;
                    o[p].bs[l] = b->d * (float)(b->bsums[2 * sb] + b->bsums[2 * sb + 1]);
                }
            }
        }
        return;
    }
    kt_blk_t *o = dst;
    float *d = (float *)(o + nsb);
    for (int64_t i = 0; i < nsb; i++) {
        kt_lanes(o[i].qs, y[i].qs);
        const __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)y[i].bsums));
        _mm512_store_si512(o[i].nb, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(bs, 5)));
        d[i] = y[i].d;
    }
}

/* Q4_K's unpacking, one register: lane l = the low nibbles (l even) of
 * dword 4*(l/2) + k of the 128 bytes (A, B), or its high nibbles in place
 * (l odd: 16 times their values, which the odd lanes' scales take back;
 * exact, as 16 S stays below 2^24). Masking the high nibbles where they
 * are, rather than shifting them down, keeps a variable shift per
 * register off the port that every vpdpbusd and vcvtdq2ps needs. */
static inline __attribute__((always_inline)) __m512i kt_nib(__m512i A, __m512i B, int k)
{
    const __m512i mhl = _mm512_setr_epi32(0x0f0f0f0f, (int)0xf0f0f0f0, 0x0f0f0f0f, (int)0xf0f0f0f0,
                                          0x0f0f0f0f, (int)0xf0f0f0f0, 0x0f0f0f0f, (int)0xf0f0f0f0,
                                          0x0f0f0f0f, (int)0xf0f0f0f0, 0x0f0f0f0f, (int)0xf0f0f0f0,
                                          0x0f0f0f0f, (int)0xf0f0f0f0, 0x0f0f0f0f, (int)0xf0f0f0f0);
    const __m512i idx0 = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    return _mm512_and_si512(
        _mm512_permutex2var_epi32(A, _mm512_add_epi32(idx0, _mm512_set1_epi32(k)), B), mhl);
}

/* The products of one unpacked Q6_K superblock (W, its values + 32;
 * group scales sc) with NT tokens' blocks i: acc[t] += sum over lanes of
 * S*sc*d_t, S the group's integer dot less 32 times its activation sum. */
static inline __attribute__((always_inline)) void
kt_toks(const int NT, const __m512i W[4], __m512 sc, int64_t i, const uint8_t *act,
        size_t stride, int64_t nsb, __m512 acc[KTOKS_MAX])
{
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
        const kt_blk_t *a = (const kt_blk_t *)(act + (size_t)t * stride) + i;
        const float *d = (const float *)((const kt_blk_t *)(act + (size_t)t * stride) + nsb);
        __m512i S = _mm512_dpbusd_epi32(_mm512_load_si512(a->nb), W[0],
                                        _mm512_load_si512(a->qs));
        S = _mm512_dpbusd_epi32(S, W[1], _mm512_load_si512(a->qs + 64));
        S = _mm512_dpbusd_epi32(S, W[2], _mm512_load_si512(a->qs + 128));
        S = _mm512_dpbusd_epi32(S, W[3], _mm512_load_si512(a->qs + 192));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(sc, _mm512_set1_ps(d[i])),
                                 acc[t]);
    }
}

/* The unpacking of a row's stretch and its products with NT tokens, per
 * type. Q4_0 and Q8_0 take groups of 16 blocks (nb of them: 16, or a row's last
 * 1-15), transposed by dword so that lane 4b+j of Wk holds values
 * 4k..4k+3 of block 4j+b: each lane sums a whole block over the 8
 * vpdpbusd of a token and the block scales are applied once per 512
 * values, 11 instructions per token and group where a run of 256 at a
 * time took 14. kt_grp_toks is the part per token; wd the weight scales
 * by lane, gathered by kt_grp_scales (bsz-byte blocks; never past the
 * row). */
static inline __attribute__((always_inline)) void
kt_grp_toks(const int NT, const __m512i W[8], __m512 wd, int64_t g, const uint8_t *act,
            size_t stride, __m512 acc[KTOKS_MAX])
{
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
        const kt0w_blk_t *a = (const kt0w_blk_t *)(act + (size_t)t * stride) + g;
        __m512i S = _mm512_load_si512(a->nb);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            S = _mm512_dpbusd_epi32(S, W[k], _mm512_load_si512(a->qs + 64 * k));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(wd, _mm512_load_ps(a->d)),
                                 acc[t]);
    }
}

static inline __attribute__((always_inline)) __m512
kt_grp_scales(const uint8_t *xr, const int bsz, int nb)
{
    /* lane 4b+j: block 4j+b's first dword (its fp16 scale, then values) */
    const __m512i blk = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __mmask16 there = 0;
    for (int l = 0; l < 16; l++)
        there |= (__mmask16)((4 * (l & 3) + (l >> 2) < nb) << l);
    const __m512i hd = _mm512_mask_i32gather_epi32(
        _mm512_setzero_si512(), there, _mm512_mullo_epi32(blk, _mm512_set1_epi32(bsz)), xr, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hd));
}

/* The nibbles of n (up to 4) Q4_0 blocks from q, block b in 128-bit lane
 * b; zeros after them. */
static inline __attribute__((always_inline)) __m512i kt_four_q4_0(const qd_block_q4_0 *q, int n)
{
    if (n >= 4) {
        __m512i r = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q[0].qs));
        r = _mm512_inserti32x4(r, _mm_loadu_si128((const __m128i *)q[1].qs), 1);
        r = _mm512_inserti32x4(r, _mm_loadu_si128((const __m128i *)q[2].qs), 2);
        return _mm512_inserti32x4(r, _mm_loadu_si128((const __m128i *)q[3].qs), 3);
    }
    _Alignas(64) uint8_t t[64] = {0};
    for (int b = 0; b < n; b++)
        memcpy(t + 16 * b, q[b].qs, 16);
    return _mm512_load_si512(t);
}

/* Q4_0: four blocks to a register (R_j: 128-bit lane b = block 4j+b), a
 * 4 x 4 dword transpose in 8 unpacks; dword k's low nibbles are values
 * 4k.., its high ones 16+4k.. (W[k+4]). */
static inline __attribute__((always_inline)) void
kt_grp_q4_0(const int NT, const uint8_t *xr, int nb, int64_t g, const uint8_t *act,
            size_t stride, __m512 acc[KTOKS_MAX])
{
    const qd_block_q4_0 *x = (const qd_block_q4_0 *)xr;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i R[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        R[j] = 4 * j < nb ? kt_four_q4_0(x + 4 * j, nb - 4 * j) : _mm512_setzero_si512();
    const __m512i U0 = _mm512_unpacklo_epi32(R[0], R[1]), U1 = _mm512_unpackhi_epi32(R[0], R[1]);
    const __m512i U2 = _mm512_unpacklo_epi32(R[2], R[3]), U3 = _mm512_unpackhi_epi32(R[2], R[3]);
    const __m512i G[4] = {_mm512_unpacklo_epi64(U0, U2), _mm512_unpackhi_epi64(U0, U2),
                          _mm512_unpacklo_epi64(U1, U3), _mm512_unpackhi_epi64(U1, U3)};
    __m512i W[8];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        W[k] = _mm512_and_si512(G[k], m4);
        W[k + 4] = _mm512_and_si512(_mm512_srli_epi16(G[k], 4), m4);
    }
    kt_grp_toks(NT, W, kt_grp_scales(xr, sizeof *x, nb), g, act, stride, acc);
}

/* Two Q8_0 blocks (b and b+1, either past nb: zeros) in the two 256-bit
 * halves of one register, made unsigned (+128: the sign bit flipped). */
static inline __attribute__((always_inline)) __m512i kt_two_q8_0(const qd_block_q8_0 *x, int b,
                                                                int nb)
{
    const __m512i sign = _mm512_set1_epi8((char)0x80);
    if (b + 1 < nb)
        return _mm512_xor_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[b].qs)),
                               _mm256_loadu_si256((const __m256i *)x[b + 1].qs), 1),
            sign);
    if (b < nb)
        return _mm512_maskz_xor_epi32(0x00ff, _mm512_castsi256_si512(_mm256_loadu_si256(
                                                  (const __m256i *)x[b].qs)),
                                      sign);
    return _mm512_setzero_si512();
}

/* Q8_0: R_j holds blocks 4j, 4j+1 and R_{4+j} blocks 4j+2, 4j+3 (a block
 * a 256-bit half, so 128-bit lane L holds dwords 4(L&1).. of block
 * 4j+(L>>1) (+2)); a 4 x 4 dword transpose within the 128-bit lanes of
 * each four (16 unpacks) and one 128-bit shuffle per W put block 4j+b's
 * dword k in lane 4b+j of W[k]. */
static inline __attribute__((always_inline)) void
kt_grp_q8_0(const int NT, const uint8_t *xr, int nb, int64_t g, const uint8_t *act,
            size_t stride, __m512 acc[KTOKS_MAX])
{
    const qd_block_q8_0 *x = (const qd_block_q8_0 *)xr;
    __m512i R[8];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        R[j] = kt_two_q8_0(x, 4 * j, nb);
        R[4 + j] = kt_two_q8_0(x, 4 * j + 2, nb);
    }
    __m512i T[8]; /* T[4h+m], lane L, dword j: R[4h+j]'s lane L, dword m */
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i *r = R + 4 * h;
        const __m512i U0 = _mm512_unpacklo_epi32(r[0], r[1]), U1 = _mm512_unpackhi_epi32(r[0], r[1]);
        const __m512i U2 = _mm512_unpacklo_epi32(r[2], r[3]), U3 = _mm512_unpackhi_epi32(r[2], r[3]);
        T[4 * h] = _mm512_unpacklo_epi64(U0, U2);
        T[4 * h + 1] = _mm512_unpackhi_epi64(U0, U2);
        T[4 * h + 2] = _mm512_unpacklo_epi64(U1, U3);
        T[4 * h + 3] = _mm512_unpackhi_epi64(U1, U3);
    }
    /* W[k] lanes 0-3: T[m] lane 0 (block 4j, b 0), 4-7: T[m] lane 2
     * (4j+1), 8-11: T[4+m] lane 0 (4j+2), 12-15: T[4+m] lane 2 (4j+3);
     * W[4+m] the same from lanes 1 and 3 */
    __m512i W[8];
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        W[m] = _mm512_shuffle_i32x4(T[m], T[4 + m], _MM_SHUFFLE(2, 0, 2, 0));
        W[m + 4] = _mm512_shuffle_i32x4(T[m], T[4 + m], _MM_SHUFFLE(3, 1, 3, 1));
    }
    kt_grp_toks(NT, W, kt_grp_scales(xr, sizeof *x, nb), g, act, stride, acc);
}

/* kt_grp_q4_0 or kt_grp_q8_0 by type (kt_grp_type's). */
static inline __attribute__((always_inline)) void
kt_grp(const int NT, qd_type_t ty, const uint8_t *x, int nb, int64_t g, const uint8_t *act,
       size_t stride, __m512 acc[KTOKS_MAX])
{
    if (ty == QD_TYPE_Q4_0)
        kt_grp_q4_0(NT, x, nb, g, act, stride, acc);
    else
        kt_grp_q8_0(NT, x, nb, g, act, stride, acc);
}

/* The scales of Q4_K's pair of runs b0, b1 in kt4_blk_t's lanes (l: sub-
 * block l&7 of run l>>3): *sc = d times the 6-bit scale (over 16 in the
 * odd lanes, whose nibbles kt_nib leaves 16 times their values), *mn =
 * dmin times the 6-bit min. Both runs' 16-byte heads (d, dmin, the 12
 * scale bytes) are unpacked together in 128-bit registers, as dwords
 * u0 (scales 0-3, high bits of 4-7), u1 (mins 0-3, high bits of 4-7), u2
 * (low nibbles of scales 4-7, of mins 4-7 in the high nibbles). Each
 * run's scalar unpacking (qd__k4_scales8) and its own conversion, then
 * two permutes to merge the runs, were a quarter of a pair's instructions
 * at 8 tokens (and GCC turned the scalar code into xmm operations on the
 * vpdpbusd ports). 1024 x 2048 in cache, one thread, min of seven
 * alternations: 2 tokens 0.055 -> 0.045 ms, 4 tokens 0.076 -> 0.060, 8
 * tokens 0.120 -> 0.103; repeated to 604 MB (past the 480 MiB L3 this VM
 * reports), 2 threads, 8 tokens 33.4-36.6 -> 28.8-31.6 ms (256 x 8192:
 * 46.0-47.1 -> 43.1-43.6); 8 sequences of the Q4_K_M file, three
 * alternations, 193-195 -> 207-214 t/s. The one-run users (the decode
 * kernel, the tile decoder) keep qd__k4_scales16: this unpacking, shared
 * with them, was slower there (in cache 0.044 -> 0.050 ms a decode). */
static inline __attribute__((always_inline)) void
kt4_scales(const qd_block_q4_K *b0, const qd_block_q4_K *b1, __m512 *sc, __m512 *mn)
{
    const __m128i h0 = _mm_loadu_si128((const __m128i *)b0), h1 = _mm_loadu_si128((const __m128i *)b1);
    const __m128i lo = _mm_unpacklo_epi32(h0, h1); /* d|dmin of run 0, of run 1, u0 of 0, of 1 */
    const __m128i hi = _mm_unpackhi_epi32(h0, h1); /* u1 of 0, of 1, u2 of 0, of 1 */
    const __m128i v = _mm_alignr_epi8(hi, lo, 8);  /* u0, u0, u1, u1 */
    const __m128i u2 = _mm_srlv_epi32(_mm_unpackhi_epi64(hi, hi), _mm_setr_epi32(0, 0, 4, 4));
    const __m128i l6 = _mm_and_si128(v, _mm_set1_epi8(0x3f)); /* scales, mins 0-3 */
    const __m128i h6 = _mm_or_si128(_mm_and_si128(u2, _mm_set1_epi8(0x0f)),
                                    _mm_and_si128(_mm_srli_epi32(v, 2), _mm_set1_epi8(0x30)));
    const __m512 s = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi32(l6, h6)));
    const __m512 m = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi32(l6, h6)));
    const __m512 d4 = _mm512_castps128_ps512(_mm_cvtph_ps(lo)); /* d0, dmin0, d1, dmin1 */
    const __m512 d = _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), d4);
    const __m512 dm = _mm512_permutexvar_ps(
        _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3), d4);
    *sc = _mm512_mul_ps(_mm512_mul_ps(s, d),
                        _mm512_setr_ps(1.0f, 0.0625f, 1.0f, 0.0625f, 1.0f, 0.0625f, 1.0f, 0.0625f,
                                       1.0f, 0.0625f, 1.0f, 0.0625f, 1.0f, 0.0625f, 1.0f, 0.0625f));
    *mn = _mm512_mul_ps(m, dm);
}

/* Q4_K, runs b0 and b1 (pair p; b1 may repeat b0 against zeros): Wk's
 * lane l is dword k of sub-block s = l&7 of run h = l>>3, i.e. dword
 * 8(s>>1) + k of its qs, shifted by 4(s&1). P_h and Q_h first gather
 * dwords 0-3 and 4-7 of each 32 bytes of run h, so that one vpermt2d
 * per k picks from both runs. */
static inline __attribute__((always_inline)) void
kt_pair_q4_K(const int NT, const qd_block_q4_K *b0, const qd_block_q4_K *b1, int64_t p,
             const uint8_t *act, size_t stride, __m512 acc[KTOKS_MAX])
{
    const __m512i ip = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i iq = _mm512_add_epi32(ip, _mm512_set1_epi32(4));
    const __m512i A0 = _mm512_loadu_si512(b0->qs), B0 = _mm512_loadu_si512(b0->qs + 64);
    const __m512i A1 = _mm512_loadu_si512(b1->qs), B1 = _mm512_loadu_si512(b1->qs + 64);
    const __m512i P0 = _mm512_permutex2var_epi32(A0, ip, B0), Q0 = _mm512_permutex2var_epi32(A0, iq, B0);
    const __m512i P1 = _mm512_permutex2var_epi32(A1, ip, B1), Q1 = _mm512_permutex2var_epi32(A1, iq, B1);
    __m512 sc, mn;
    kt4_scales(b0, b1, &sc, &mn);
    /* W_k unpacked right before its products, k outer and tokens inner:
     * fewer registers live than with all eight W at once (which GCC
     * spilled), and neighbouring vpdpbusd independent. 302 MB, 2
     * threads: 2 tokens 10.7 -> 9.4-9.6 ms, 4 tokens 13.6 -> 11.8, 6
     * tokens 15.7-15.8 -> 14.5-14.6, 8 tokens 17.5 -> 17.0-17.1. The same
     * order was no faster for Q6_K, Q4_0 and Q8_0 (Q6_K 8 tokens 19.5-19.7
     * -> 21.2-21.6), nor were Q4_K's pairs of rows past 4 tokens with it. */
    __m512i S[KTOKS_MAX];
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++)
        S[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const __m512i Wk = k < 4 ? kt_nib(P0, P1, k) : kt_nib(Q0, Q1, k - 4);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            const kt4_blk_t *a = (const kt4_blk_t *)(act + (size_t)t * stride) + p;
            S[t] = _mm512_dpbusd_epi32(S[t], Wk, _mm512_load_si512(a->qs + 64 * k));
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
        const kt4_blk_t *a = (const kt4_blk_t *)(act + (size_t)t * stride) + p;
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[t]), _mm512_mul_ps(sc, _mm512_load_ps(a->dv)),
                                 acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_load_ps(a->bs), mn, acc[t]);
    }
}

/* Q6_K: group l is sub-block l (scale l). Value 16l+4k+i: ql dword
 * 16*(l/8) + 8*((l>>1)&1) + 4*(l&1) + k, nibble (l>>2)&1; qh dword
 * 8*(l/8) + 4*(l&1) + k, bits 2m..2m+1 with m = (l%8)/2, rotated to bits
 * 4-5. The values are unpacked with their offset of 32, which the
 * activation layout's nb (-32 times each group's sum) takes out: each
 * token's integer sums start at nb (kt_toks). */
static inline __attribute__((always_inline)) void
kt_run_q6_K(const int NT, const uint8_t *xr, int64_t i, const uint8_t *act, size_t stride,
            int64_t nsb, __m512 acc[KTOKS_MAX])
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i lidx = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 16, 20, 24, 28, 16, 20, 24, 28);
    const __m512i hidx = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 8, 12, 8, 12, 8, 12, 8, 12);
    const __m512i lsh = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
    const __m512i hrot = _mm512_setr_epi32(4, 4, 2, 2, 0, 0, 30, 30, 4, 4, 2, 2, 0, 0, 30, 30);
    const qd_block_q6_K *x = (const qd_block_q6_K *)xr;
    const __m512i l0 = _mm512_loadu_si512(x->ql), l1 = _mm512_loadu_si512(x->ql + 64);
    const __m512i qh = _mm512_loadu_si512(x->qh);
    /* unrolled, so that W stays in registers: as a loop GCC kept W on the
     * stack and reloaded it for every vpdpbusd. Repeated to 688 MB, 2
     * threads, three alternations: 8 tokens x 8192 columns (pairs)
     * 36.6-38.6 -> 33.6-35.4 ms, 4 tokens x 2048 23.2-23.5 -> 22.1-22.2 */
    __m512i W[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m512i kk = _mm512_set1_epi32(k);
        __m512i L = _mm512_srlv_epi32(
            _mm512_permutex2var_epi32(l0, _mm512_add_epi32(lidx, kk), l1), lsh);
        __m512i H = _mm512_rolv_epi32(
            _mm512_permutexvar_epi32(_mm512_add_epi32(hidx, kk), qh), hrot);
        W[k] = _mm512_ternarylogic_epi32(L, _mm512_and_si512(H, m30), m4, 0xec);
    }
    const __m512 sc = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->scales))),
        _mm512_set1_ps(h2f(x->d)));
    kt_toks(NT, W, sc, i, act, stride, nsb, acc);
}

/* out[t*ldo] = the sum of acc[t]'s lanes, t < NT. From 4 tokens on, a
 * tree across the registers, 8 tokens at a time: halves of token pairs
 * added (12 operations), then quarters of pairs of pairs (6), then within
 * the 128-bit lanes (5): 23 vector operations for 8 sums against about 64
 * one register at a time, which was a tenth of a 2048-column row's work
 * at 8 tokens. */
static inline __attribute__((always_inline)) void
hsum_store(const int NT, const __m512 acc[KTOKS_MAX], float *out, int64_t ldo, int add)
{
    if (NT < 4) {
        for (int t = 0; t < NT; t++)
            out[t * ldo] = add ? out[t * ldo] + hsum_ps512(acc[t]) : hsum_ps512(acc[t]);
        return;
    }
#pragma GCC unroll 2
    for (int g = 0; g < NT; g += 8) {
        __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            a[i] = g + i < NT ? acc[g + i] : _mm512_setzero_ps();
        /* b[i]: 128-bit lanes 0-1 token 2i, 2-3 token 2i+1 */
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                                 _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
        /* c[i]: 128-bit lane j token 4i+j */
#pragma GCC unroll 2
        for (int i = 0; i < 2; i++)
            c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                                 _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd));
        /* lane j: (t j, t 4+j, t j, t 4+j) after the two steps */
        __m512 u = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
        u = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, _MM_SHUFFLE(1, 0, 3, 2)));
        _Alignas(64) float v[16];
        _mm512_store_ps(v, u);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            if (g + i < NT)
                out[(g + i) * ldo] = add ? out[(g + i) * ldo] + v[4 * (i & 3) + (i >> 2)]
                                         : v[4 * (i & 3) + (i >> 2)];
    }
}

/* The most tokens a pair of rows (DEC_PAIRS) is taken for: Q4_0 and
 * Q8_0 keep 8 unpacked registers and two rows' 8 accumulators in the 32,
 * Q6_K its 4 and two rows' accumulators (a token's four products fold
 * into its accumulator at once; at 8 tokens they spill, and kt_pairs
 * keeps pairs there to long rows); Q4_K's k-outer order keeps a sum per
 * token as well. Q6_K at 5-8 tokens (session 9; 302 MB, 2 threads, min of five
 * alternations): 8192 columns 5 tokens 5.40 -> 4.46 ms, 7 tokens 6.34
 * -> 5.33, 8 tokens 7.35 -> 6.30 (two streams, and each token's
 * activations read once for two rows); 2048 columns 8 tokens within
 * noise (6.05-6.11 -> 5.77-6.31). Before, rows of 2048 columns repeated to
 * 302 MB, 2 threads, one row at a time -> pairs: Q4_K 2 tokens 12.1 ->
 * 10.2-10.3 ms, 3 tokens 13.6 -> 12.7, 4 the same (14.3-14.4), 6 and 8
 * slower (15.8 -> 17.5, 16.7 -> 21.9); Q6_K 2 tokens 16.3-16.6 -> 13.8,
 * 4 tokens 19.1 -> 16.2, 6 tokens 20.8 -> 18.7 (5 and 7 not measured, 6
 * not taken), 8 slower (20.9 -> 21.5); Q4_0 4 tokens 11.6 -> 10.2, 8
 * tokens 13.4 -> 13.1; Q8_0 6 tokens 24.2 -> 17.0, 8 tokens 20.7 -> 19.7. */
static inline int kt_pair_max(qd_type_t ty)
{
    return kt_grp_type(ty) || ty == QD_TYPE_Q6_K ? 8 : 4;
}

/* Half of a core's L1 (32 KiB on Zen 4, 48 on Sapphire Rapids): the
 * tokens' activations that a row's products may read from it (see
 * kt_pairs, kt_pass_runs). */
#define KT_L1_BYTES (24 << 10)

/* Rows taken through all their column passes (kt_pass_runs) before the
 * next ones: a block of 16 rows of the 8192-column down projection is 74
 * KiB of Q4_K, read within a short time, with the same runs of the next
 * block prefetched to L2 meanwhile. Each pass over the whole range of
 * rows instead read a piece of every row (1152 of its 4608 bytes at 8
 * tokens) and came back for the next piece a pass later: a stride that
 * neither the hardware prefetchers nor DRAM's open pages follow. 256 x
 * 8192 Q4_K repeated to 604 MB (past the 480 MiB L3 this VM reports), 2
 * threads, 8 tokens: 42.5 ms -> 34.4-34.9 in blocks (8 rows 33.9-35.2,
 * 32 rows 32.9-34.5, 64 rows 36.0-36.5), 33.0 with the next block's
 * prefetch (12 tokens 59.2-59.4 -> 50.7-55.3, 16 tokens 79.6-84.2 ->
 * 68.8-69.7). In the model, where a thread's chunk of a down projection
 * is 256 rows, less: 8 sequences of the 32k Q4_K_M file, the Q4_K down
 * projections 4.63 -> 4.30 ms a step (a timer around the products). */
#define KT_PASS_ROWS 16

/* Whether n_tok tokens of type ty (stride bytes of activations each)
 * take rows in pairs (DEC_PAIRS): up to kt_pair_max, except Q6_K at 8
 * tokens where the row's activations fit in KT_L1_BYTES. There its two
 * rows' 16 accumulators and 8 unpacked registers spill (GCC reloads them
 * around nearly every vpdpbusd), which costs more than the second row's
 * sharing of the activation reads saves while those come from L1. 8
 * tokens x 2048 columns in cache, one thread: 0.145 ms in pairs -> 0.123
 * one row at a time; from 688 MB, 2 threads, the two were even (pairs
 * 31.7-35.8 ms, rows 32.3-33.6) until the rows alternated between two
 * streams (ktoks_rows: 28.0-29.6). 8192 columns (84 KiB of activations)
 * were slower one row at a time (302 MB: 16.02 ms in pairs against
 * 18.59). At 5-7 tokens pairs stay faster on 2048 columns (302 MB: 5
 * tokens 11.90 vs 13.98 ms, 7 tokens 13.91 vs 14.18). */
static inline int kt_pairs(qd_type_t ty, int n_tok, size_t stride)
{
    if (n_tok > kt_pair_max(ty))
        return 0;
    if (ty == QD_TYPE_Q6_K && n_tok == 8)
        return stride * (size_t)n_tok > KT_L1_BYTES;
    return 1;
}

/* Whether NT tokens of type ty take long rows in column passes (see
 * kt_pass_runs): Q4_K past its pairs of rows. */
static inline int kt_passes(qd_type_t ty, int n_tok)
{
    return ty == QD_TYPE_Q4_K && n_tok > kt_pair_max(ty);
}

/* A row's prefetch cursor: the place QD_DEC_PF_DIST bytes ahead in the
 * stream that a column pass reads (runs [lo, hi) of one row, seg .. seg +
 * len, then the same runs of the next row, rs bytes on), stepped along
 * with the reads, so that the passes are prefetched as one stream; p is
 * in the piece that ends at end. Without passes (len == rs) p is the read
 * position plus QD_DEC_PF_DIST. Stepped, not divided anew: a division per
 * run would cost more than the prefetch. */
typedef struct {
    const uint8_t *p, *end;
} kt_pfc_t;

static inline kt_pfc_t kt_pf_start(const uint8_t *seg, size_t len, size_t rs)
{
    const size_t k = QD_DEC_PF_DIST / len;
    return (kt_pfc_t){seg + k * rs + QD_DEC_PF_DIST % len, seg + k * rs + len};
}

/* the next read is step bytes on (step <= len) */
static inline void kt_pf_step(kt_pfc_t *c, size_t step, size_t len, size_t rs)
{
    c->p += step;
    if (c->p >= c->end) {
        c->p += rs - len;
        c->end += rs;
    }
}

/* NR rows (xr, xr + bx; nr runs of 256 each, Q4_0 and Q8_0: nr blocks;
 * rs apart from the next rows) against NT tokens, over runs (blocks)
 * [lo, hi) (a column pass, see kt_pass_runs; lo even for Q4_K, a multiple
 * of 16 for the grouped types): row r's to out[r*so + t*ldo], stored, or
 * added when add. NR = 2 (two streams, see DEC_PAIRS) only where the
 * accumulators fit in registers. Only the kernels that take passes
 * (kt_passes) keep a prefetch cursor: its steps cost the grouped types'
 * pairs at 8 tokens 15 % (8 sequences of the Q4_0 file 218-219 -> 182-187
 * t/s), whose registers are all taken. */
static inline __attribute__((always_inline)) void
kt_row(const int NR, const int NT, const qd_type_t ty, int64_t nr, int64_t lo, int64_t hi,
       int add, float *out, size_t so, int64_t ldo, const uint8_t *xr0, size_t bx, size_t rs,
       const uint8_t *act, size_t stride)
{
    const size_t rb = ty == QD_TYPE_Q4_K   ? sizeof(qd_block_q4_K)
                      : ty == QD_TYPE_Q6_K ? sizeof(qd_block_q6_K)
                      : ty == QD_TYPE_Q4_0 ? sizeof(qd_block_q4_0)
                                           : sizeof(qd_block_q8_0);
    const size_t len = (size_t)(hi - lo) * rb; /* the pass's bytes of a row */
    const int cursor = kt_passes(ty, NT);
    kt_pfc_t pf = {0};
    if (cursor)
        pf = kt_pf_start(xr0 + (size_t)lo * rb, len, rs);
    __m512 acc[2][KTOKS_MAX];
#pragma GCC unroll 2
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            acc[r][t] = _mm512_setzero_ps();
    if (kt_grp_type(ty)) { /* blocks of rb bytes, in groups of 16 */
        int64_t g = lo / 16;
        for (; 16 * (g + 1) <= hi; g++) {
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++) {
                const uint8_t *x = xr0 + (size_t)r * bx + (size_t)(16 * g) * rb;
                dec_prefetch(x + QD_DEC_PF_DIST, (int)((16 * rb + 63) / 64));
                kt_grp(NT, ty, x, 16, g, act, stride, acc[r]);
            }
        }
        if (16 * g < hi)
            for (int r = 0; r < NR; r++)
                kt_grp(NT, ty, xr0 + (size_t)r * bx + (size_t)(16 * g) * rb, (int)(hi - 16 * g), g,
                       act, stride, acc[r]);
    } else if (ty == QD_TYPE_Q4_K) {
        for (int64_t p = lo / 2; p < (hi + 1) / 2; p++) {
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++) {
                const uint8_t *x = xr0 + (size_t)r * bx + (size_t)(2 * p) * rb;
                if (cursor) {
                    dec_prefetch(pf.p, (int)((2 * rb + 63) / 64));
                    kt_pf_step(&pf, QD_MIN(2 * rb, len), len, rs);
                    /* with passes, the same runs of the next block of
                     * rows, to L2 (past the last row: a prefetch does
                     * not fault) */
                    if (len < rs)
                        for (int q = 0; q < (int)((2 * rb + 63) / 64); q++)
                            _mm_prefetch((const char *)x + KT_PASS_ROWS * rs + 64 * q, _MM_HINT_T1);
                } else {
                    dec_prefetch(x + QD_DEC_PF_DIST, (int)((2 * rb + 63) / 64));
                }
                kt_pair_q4_K(NT, (const qd_block_q4_K *)x,
                             (const qd_block_q4_K *)(2 * p + 1 < nr ? x + rb : x), p, act, stride,
                             acc[r]);
            }
        }
    } else {
        for (int64_t i = lo; i < hi; i++) {
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++) {
                const uint8_t *x = xr0 + (size_t)r * bx + (size_t)i * rb;
                dec_prefetch(x + QD_DEC_PF_DIST, (int)((rb + 63) / 64));
                kt_run_q6_K(NT, x, i, act, stride, nr, acc[r]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < NR; r++)
        hsum_store(NT, acc[r], out + (size_t)r * so, ldo, add);
}

/* The runs of one column pass. Q4_K past its pairs of rows (one row at a
 * time, 5 to 16 tokens) takes a long row in passes, each over a block of
 * KT_PASS_ROWS rows (then the next block), the partial sums added in out:
 * so many runs that the tokens' activations for a pass (stride / nr
 * bytes a run and token) stay within KT_L1_BYTES, half of a core's L1 (32
 * KiB on Zen 4, 48 on Sapphire Rapids), while the weights stream past; a multiple of 2 (its
 * pairs of runs). In one pass, each row of the 8192-column down
 * projection read all 8 tokens' activations (80 KiB) from L2 again. 256 x
 * 8192 Q4_K repeated to 302 MB, 2 threads, min of three alternations: 6
 * tokens 4.67 -> 3.95 ms, 8 tokens 5.88 -> 4.65, 12 tokens 8.69 -> 7.14,
 * 16 tokens 11.85 -> 11.05 (2048 x 2048 repeated, 8 tokens, 4.63-4.67 ms
 * either way: one pass). The other types were slower in passes (8 tokens:
 * Q6_K 7.2 -> 7.5-7.9 ms, Q4_0 3.9 -> 4.1, Q8_0 6.5 -> 9.3; Q6_K and Q4_0
 * 4 tokens 4.0 -> 4.7 and 2.2 -> 2.4), and take a row in one. */
static int64_t kt_pass_runs(qd_type_t ty, int64_t nr, size_t stride, int n_tok)
{
    if (!kt_passes(ty, n_tok))
        return nr;
    const size_t all = stride * (size_t)n_tok;
    const int64_t np = (int64_t)((all + KT_L1_BYTES - 1) / KT_L1_BYTES);
    if (np <= 1)
        return nr;
    const int64_t per = (nr + np - 1) / np;
    return QD_MIN((per + 1) / 2 * 2, nr);
}

/* Rows [r0, r1) against n_tok activation rows (as avx512_gemm_prefers
 * allows) in the avx512_prefers_act layout: in pairs where kt_pairs says,
 * or one at a time (Q6_K's alternating between the range's halves), and
 * in column passes of kt_pass_runs runs over blocks of KT_PASS_ROWS rows
 * where a row's activations outgrow KT_L1_BYTES. */
static void ktoks_rows(const qd_qmat_t *w, int64_t r0, int64_t r1, const void *act,
                       size_t stride, int n_tok, float *out, int64_t ldo)
{
    const uint8_t *base = w->data;
    const qd_type_t ty = w->type;
    const int64_t nr = w->n_cols / (kt_grp_type(ty) ? 32 : 256); /* blocks or runs */
    const size_t rb = w->row_bytes;
    const int64_t cp = kt_pass_runs(ty, nr, stride, n_tok);
/* kt_row(NR, NT) of w's type, rows xr, xr + bx into o, o + so; KT_GRP
 * for the grouped types only (Q4_0, Q8_0: one token), KT_WIDE for those
 * and Q6_K (pairs past 4 tokens) */
#define KT_GRP(NR, NT, o, so, xr, bx)                                                       \
    do {                                                                                    \
        if (ty == QD_TYPE_Q4_0)                                                             \
            kt_row(NR, NT, QD_TYPE_Q4_0, nr, lo, hi, add, o, so, ldo, xr, bx, rb, act, stride); \
        else                                                                                \
            kt_row(NR, NT, QD_TYPE_Q8_0, nr, lo, hi, add, o, so, ldo, xr, bx, rb, act, stride); \
    } while (0)
#define KT_WIDE(NR, NT, o, so, xr, bx)                                                      \
    do {                                                                                    \
        if (ty == QD_TYPE_Q6_K)                                                             \
            kt_row(NR, NT, QD_TYPE_Q6_K, nr, lo, hi, add, o, so, ldo, xr, bx, rb, act, stride); \
        else                                                                                \
            KT_GRP(NR, NT, o, so, xr, bx);                                                  \
    } while (0)
#define KT_TYPED(NR, NT, o, so, xr, bx)                                                     \
    do {                                                                                    \
        if (ty == QD_TYPE_Q6_K)                                                             \
            kt_row(NR, NT, QD_TYPE_Q6_K, nr, lo, hi, add, o, so, ldo, xr, bx, rb, act, stride); \
        else if (ty == QD_TYPE_Q4_K)                                                        \
            kt_row(NR, NT, QD_TYPE_Q4_K, nr, lo, hi, add, o, so, ldo, xr, bx, rb, act, stride); \
        else                                                                                \
            KT_GRP(NR, NT, o, so, xr, bx);                                                  \
    } while (0)
    /* rows r and r + h together (DEC_PAIRS) where kt_pairs says */
    const int64_t h = kt_pairs(ty, n_tok, stride) ? (r1 - r0) / 2 : 0;
    /* with passes (never with pairs: kt_passes is past kt_pair_max),
     * blocks of KT_PASS_ROWS rows, each through all its passes before the
     * next */
    const int64_t rblk = cp < nr ? KT_PASS_ROWS : r1 - r0;
    for (int64_t b0 = r0; b0 < r1; b0 += rblk) {
        const int64_t b1 = QD_MIN(b0 + rblk, r1);
        for (int64_t lo = 0; lo < nr; lo += cp) {
            const int64_t hi = QD_MIN(lo + cp, nr);
            const int add = lo > 0;
            for (int64_t r = r0; r < r0 + h; r++) {
                const uint8_t *xr = base + (size_t)r * rb;
                float *o = out + r;
                const size_t so = (size_t)h, bx = (size_t)h * rb;
                switch (n_tok) {
                case 1: KT_GRP(2, 1, o, so, xr, bx); break;
                case 2: KT_TYPED(2, 2, o, so, xr, bx); break;
                case 3: KT_TYPED(2, 3, o, so, xr, bx); break;
                case 4: KT_TYPED(2, 4, o, so, xr, bx); break;
                case 5: KT_WIDE(2, 5, o, so, xr, bx); break;
                case 6: KT_WIDE(2, 6, o, so, xr, bx); break;
                case 7: KT_WIDE(2, 7, o, so, xr, bx); break;
                case 8: KT_WIDE(2, 8, o, so, xr, bx); break;
                default: break;
                }
            }
            /* rows one at a time; Q6_K's from the two halves of the
             * range in turn (s0 + i/2, s0 + sh + i/2; an odd last row
             * last): two streams, as its pairs of rows read, without
             * their spills. Q6_K 8 tokens, 1024 x 2048 repeated to 688
             * MB, 2 threads: 31.3-32.6 ms -> 28.0-29.6 (12 tokens
             * 37.5-40.7 -> 35.9-36.1, 16 the same); Q4_K (whose cursor
             * follows one stream) 8 tokens the same within noise (604
             * MB: 29.4-31.4 vs 28.6-29.8 ms), Q4_0 12 tokens 35.4 ->
             * 36.5, so they keep one. 8 sequences of the 128k-vocabulary
             * Q4_K_M file (its Q6_K output matrix), three alternations:
             * 168.5-172.0 -> 186.8-188.1 t/s; of the 32k file
             * 199.5-206.6 -> 204.3-214.5. */
            const int64_t s0 = QD_MAX(b0, r0 + 2 * h), n1 = b1 - s0;
            const int64_t sh = ty == QD_TYPE_Q6_K ? n1 / 2 : 0;
            for (int64_t i = 0; i < n1; i++) {
                const int64_t r = i >= 2 * sh ? s0 + i : s0 + (i & 1) * sh + i / 2;
                const uint8_t *xr = base + (size_t)r * rb;
                float *o = out + r;
#define KT_CASE(NT)                          \
    case NT:                                 \
        KT_TYPED(1, NT, o, 0, xr, 0);        \
        break;
                switch (n_tok) { /* as avx512_gemm_prefers allows */
                case 1: KT_GRP(1, 1, o, 0, xr, 0); break; /* Q4_0, Q8_0 only */
                    KT_CASE(2) KT_CASE(3) KT_CASE(4) KT_CASE(5)
                    KT_CASE(6) KT_CASE(7) KT_CASE(8) KT_CASE(9)
                    KT_CASE(10) KT_CASE(11) KT_CASE(12) KT_CASE(13)
                    KT_CASE(14) KT_CASE(15) KT_CASE(16)
                default: break;
                }
#undef KT_CASE
            }
        }
    }
#undef KT_TYPED
#undef KT_WIDE
#undef KT_GRP
}

/* Measured on 8192 x 8192 matrices, one thread (CPU time), against the
 * decoded tiles: Q4_K 8 tokens 6.0 ms vs 9.1, 12 tokens 9.9 vs 12.3, 16
 * tokens 12.6 vs 11.7; Q6_K 12 tokens 10.2 vs 16.2, 14 tokens 11.3 vs 17.2
 * (see docs/performance.md). */
static int avx512_gemm_prefers(const qd_qmat_t *w, int n_tok)
{
    qd_type_t t = w->type;
    return (t == QD_TYPE_Q4_K || t == QD_TYPE_Q6_K || t == QD_TYPE_Q4_0 ||
            t == QD_TYPE_Q8_0) &&
           w->n_cols % (kt_grp_type(t) ? 32 : 256) == 0 &&
           n_tok >= (kt_grp_type(t) ? 1 : 2) && n_tok <= KTOKS_MAX;
}

/* Rows x0, x0 + bx, ... [nr of them] against one activation row: the
 * unpacked dec_act_t (Q4_1, and Q4_K's and Q5_K's reordered values) or the Q8_K row
 * itself (Q6_K). */
typedef void (*dec_rows_fn)(int nr, int n, float *restrict s, const uint8_t *restrict x0,
                            size_t bx, const void *restrict a);

/* DEC_PAIRS: two streams per core. With h = nr / 2, row r is computed
 * together with row r + h (fnN(2, ...): their superblocks in turn, each
 * with its own prefetch), then an odd last row alone. One core's reads
 * are bound by the misses it keeps in flight, not by the memory, and one
 * stream of weights with a kernel's work between its loads left the
 * hardware prefetcher short: a 302 MB Q4_K matrix, 2 threads, 32.0-32.1 GB/s
 * with one stream, 34.9-37.4 with two (a plain read with software
 * prefetch, bench --membw, 36-37); tg128 of the 32k-vocabulary Q4_K_M
 * file 46.0 -> 51.9 t/s, Q4_0 49.2 -> 56.8, Q8_0 27.5 -> 29.6. A row's
 * sums are the same whichever way it is taken. */
#define DEC_PAIRS(name, fnN)                                                      \
    static void name(int nr, int n, float *restrict s, const uint8_t *restrict x0, \
                     size_t bx, const void *restrict a)                          \
    {                                                                            \
        const int h = nr / 2;                                                    \
        for (int r = 0; r < h; r++)                                              \
            fnN(2, n, s + r, (size_t)h, x0 + (size_t)r * bx, (size_t)h * bx, a); \
        if (nr & 1)                                                              \
            fnN(1, n, s + nr - 1, 0, x0 + (size_t)(nr - 1) * bx, 0, a);          \
    }
DEC_PAIRS(q4_1_dec, q4_1_decN)
DEC_PAIRS(q4_K_dec, q4_K_decN)
DEC_PAIRS(q5_K_dec, q5_K_decN)
DEC_PAIRS(q6_K_dec, q6_K_rows)

/* Decode driver: one activation row (n_tok == 1) against rows [r0, r1);
 * anything else goes to the row-by-row driver of kernels_x86.h. */
static void avx512_gemm_rows(const qd_qmat_t *w, int64_t r0, int64_t r1,
                             const void *act, size_t act_stride, int n_tok,
                             float *out, int64_t ldo)
{
    dec_rows_fn f = NULL;
    switch (w->type) {
    case QD_TYPE_Q4_1: f = q4_1_dec; break;
    case QD_TYPE_Q4_K: f = q4_K_dec; break;
    case QD_TYPE_Q5_K: f = q5_K_dec; break;
    case QD_TYPE_Q6_K: f = q6_K_dec; break;
    default: break;
    }
    const int kt = avx512_gemm_prefers(w, n_tok);
    if (!kt && (n_tok != 1 || !f || w->n_cols > DEC_KMAX)) {
        x86_gemm_rows(w, r0, r1, act, act_stride, n_tok, out, ldo);
        return;
    }
    /* The in-loop prefetch runs QD_DEC_PF_DIST ahead: start the first
     * stretch of the range now, so that it loads while the activation is
     * unpacked (or the first rows' products start) instead of as one
     * demand miss after another. */
    const uint8_t *base = w->data;
    const uint8_t *x0 = base + (size_t)r0 * w->row_bytes;
    size_t head = QD_MIN((size_t)QD_DEC_PF_DIST, (size_t)(r1 - r0) * w->row_bytes);
    const uint8_t *x1 = x0 + (size_t)((r1 - r0) / 2) * w->row_bytes; /* DEC_PAIRS' second row */
    for (size_t o = 0; o < head; o += 64) {
        _mm_prefetch((const char *)x0 + o, _MM_HINT_T0);
        if (!kt || n_tok <= kt_pair_max(w->type))
            _mm_prefetch((const char *)x1 + o, _MM_HINT_T0);
    }
    if (kt) {
        ktoks_rows(w, r0, r1, act, act_stride, n_tok, out, ldo);
        return;
    }
    dec_act_t d;
    const void *a = act;
    if (w->type == QD_TYPE_Q4_K || w->type == QD_TYPE_Q5_K) {
        dec_act_prep_q4K(act, w->n_cols, &d);
        a = &d;
    } else if (w->type == QD_TYPE_Q4_1) {
        dec_act_prep_q41(act, w->n_cols, &d);
        a = &d;
    }
    f((int)(r1 - r0), (int)w->n_cols, out + r0, x0, w->row_bytes, a);
}

static qd_vec_dot_fn x86_extra_dot(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q4_K: return dot_q4_K_512;
    case QD_TYPE_Q6_K: return dot_q6_K_512;
    case QD_TYPE_Q4_G128: return qd__dot_q4_g128_512;
    default: return NULL;
    }
}

#define NC_MAX 8

/* The VNNI tile product: 16 weight rows (one int32 lane each) x NC tokens
 * over ns subblocks of S values. A subblock's integer sums go to float
 * through an epilogue on the same vector ports as vpdpbusd, so the
 * epilogue is kept short:
 *  OFF  the type's correction is an offset of its values (corr = -C*dsc,
 *       qd__tile_off): the sums start at ti = -C * sum q and need no
 *       float correction;
 *  PER  subblocks per activation scale (Q8_K rows: a superblock's): the
 *       scaled sums add up in acc, multiplied by ta once per PER
 *       subblocks.
 * Per subblock and token that is cvt, mul, fma (Q4_0, Q8_0), cvt, fma
 * (Q6_K), cvt, fma, fma (Q4_K) instead of cvt, mul, fma, fma. */
static inline __attribute__((always_inline)) void
micro(const int NC, const int S, const int OFF, const int PER,
      const uint8_t *restrict u, const float *restrict dsc,
      const float *restrict corr, int ns, const int8_t *restrict qs,
      int64_t qs_stride, const float *restrict ta, const float *restrict tb,
      const int32_t *restrict ti, int64_t t_stride, float *restrict out,
      int64_t ldo, __mmask16 mask, int first)
{
    __m512 facc[NC_MAX], acc[NC_MAX];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        facc[c] = _mm512_setzero_ps();
        acc[c] = _mm512_setzero_ps();
    }
    for (int s = 0; s < ns; s++) {
        __m512i ia[NC_MAX];
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            ia[c] = OFF ? _mm512_set1_epi32(ti[c * t_stride + s]) : _mm512_setzero_si512();
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
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            if (PER == 1) {
                __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(ia[c]), dv);
                facc[c] = _mm512_fmadd_ps(p, _mm512_set1_ps(ta[c * t_stride + s]), facc[c]);
            } else {
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[c]), dv, acc[c]);
            }
            if (!OFF)
                facc[c] = _mm512_fmadd_ps(_mm512_load_ps(corr + s * 16),
                                          _mm512_set1_ps(tb[c * t_stride + s]), facc[c]);
        }
        if (PER > 1 && s % PER == PER - 1) {
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) {
                facc[c] = _mm512_fmadd_ps(acc[c], _mm512_set1_ps(ta[c * t_stride + s]), facc[c]);
                acc[c] = _mm512_setzero_ps();
            }
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

typedef void (*micro_fn)(int nc, const uint8_t *u, const float *dsc,
                         const float *corr, int ns, const int8_t *qs,
                         int64_t qs_stride, const float *ta, const float *tb,
                         const int32_t *ti, int64_t t_stride, float *out,
                         int64_t ldo, __mmask16 mask, int first);

#define MICRO_CASE(NC_, S_, OFF_, PER_)                                        \
    case NC_:                                                                  \
        micro(NC_, S_, OFF_, PER_, u, dsc, corr, ns, qs, qs_stride, ta, tb,    \
              ti, t_stride, out, ldo, mask, first);                            \
        break;

#define MICRO_FN(name, S_, OFF_, PER_)                                         \
    static void name(int nc, const uint8_t *u, const float *dsc,               \
                     const float *corr, int ns, const int8_t *qs,              \
                     int64_t qs_stride, const float *ta, const float *tb,      \
                     const int32_t *ti, int64_t t_stride, float *out,          \
                     int64_t ldo, __mmask16 mask, int first)                   \
    {                                                                          \
        switch (nc) {                                                          \
            MICRO_CASE(1, S_, OFF_, PER_) MICRO_CASE(2, S_, OFF_, PER_)        \
            MICRO_CASE(3, S_, OFF_, PER_) MICRO_CASE(4, S_, OFF_, PER_)        \
            MICRO_CASE(5, S_, OFF_, PER_) MICRO_CASE(6, S_, OFF_, PER_)        \
            MICRO_CASE(7, S_, OFF_, PER_) MICRO_CASE(8, S_, OFF_, PER_)        \
        }                                                                      \
    }

MICRO_FN(micro_s32, 32, 0, 1)     /* Q4_1, Q5_1, Q4_G128 */
MICRO_FN(micro_s32_off, 32, 1, 1) /* Q4_0, Q5_0, Q8_0, IQ4_NL */
MICRO_FN(micro_s32_sb, 32, 0, 8)  /* Q4_K, Q5_K */
MICRO_FN(micro_s32_off_sb, 32, 1, 8) /* IQ4_XS */
MICRO_FN(micro_s16_sb, 16, 0, 16) /* Q2_K */
MICRO_FN(micro_s16_off_sb, 16, 1, 16) /* Q3_K, Q6_K */


/* The micro kernel for weight type t (subblocks of S values). */
static micro_fn micro_for(qd_type_t t, int S)
{
    int off = qd__tile_off(t) != 0;
    int sb = qd_type_traits(t)->vec_dot_type == QD_TYPE_Q8_K;
    if (S == 16) /* the 16-value subblocks are all k-quants' */
        return off ? micro_s16_off_sb : micro_s16_sb;
    if (sb)
        return off ? micro_s32_off_sb : micro_s32_sb;
    return off ? micro_s32_off : micro_s32;
}

static void avx512_gemm_tiled(const qd_qmat_t *w, int64_t r0, int64_t r1,
                              const int8_t *qs, const float *ta,
                              const float *tb, const int32_t *ti, int n_tok,
                              float *out, int64_t ldo)
{
    const int S = qd__tile_sub(w->type);
    const int64_t K = w->n_cols, NS = K / S;
    const micro_fn mf = micro_for(w->type, S);
    _Alignas(64) uint8_t u[QD_TILE_ROWS * QD_TILE_K];
    _Alignas(64) float dsc[QD_TILE_K / 16 * QD_TILE_ROWS];
    _Alignas(64) float corr[QD_TILE_K / 16 * QD_TILE_ROWS];
    for (int64_t rt = r0; rt < r1; rt += QD_TILE_ROWS) {
        int nr = (int)QD_MIN((int64_t)QD_TILE_ROWS, r1 - rt);
        __mmask16 mask = (__mmask16)((1u << nr) - 1);
        const uint8_t *row0 = (const uint8_t *)w->data + (size_t)rt * w->row_bytes;
        /* chunks of QD_TILE_K values: whole superblocks of the k-quants,
         * so a PER group never straddles two chunks (nor ends one short) */
        for (int64_t k0 = 0; k0 < K; k0 += QD_TILE_K) {
            int nk = (int)QD_MIN((int64_t)QD_TILE_K, K - k0);
            int ns = nk / S;
            if (!qd__tile_decode_512(w->type, row0, w->row_bytes, nr, k0, nk, u, dsc, corr))
                qd__tile_decode(w->type, row0, w->row_bytes, nr, k0, nk, u, dsc, corr);
            /* the next decode's bytes, while this tile meets the tokens */
            qd__tile_prefetch_next(w, rt, r1, k0);
            for (int t = 0; t < n_tok; t += NC_MAX) {
                int nc = QD_MIN(NC_MAX, n_tok - t);
                const int8_t *q = qs + (size_t)t * K + k0;
                const float *a = ta + t * NS + k0 / S, *b = tb + t * NS + k0 / S;
                const int32_t *i = ti + t * NS + k0 / S;
                float *o = out + t * ldo + rt;
                mf(nc, u, dsc, corr, ns, q, K, a, b, i, NS, o, ldo, mask, k0 == 0);
            }
        }
    }
}

static const qd_kernels_t avx512_kernels = {
    .name = "avx512",
    .from_float = x86_from_float,
    .gemm = avx512_gemm_rows,
    .vec_dot = x86_vec_dot,
    .gemm_tiled = avx512_gemm_tiled,
    .gemm_prefers = avx512_gemm_prefers,
    .prefers_act = avx512_prefers_act,
    .prefers_act_bytes = avx512_prefers_act_bytes,
    .prefers_layout = avx512_prefers_layout,
    .tile_min_tok = 4,
};

const qd_kernels_t *qd__kernels_avx512(void) { return &avx512_kernels; }
