/*
 * attn_amx.c — prompt attention on AMX BF16 tiles (the amx kernel set).
 *
 * The same computation as qd__attn_avx512's f16 path — scores, each row's
 * maximum and sum, softmax weights normalized, then P·V — with the two
 * products on TDPBF16PS instead of the vector units. For a 512-token
 * prompt those products are about 9 G multiply-adds of the 1B shape,
 * which the vector path (exact per-key score order, fp32 FMAs) spends a
 * sixth of the prompt's time on.
 *
 * Per 16-position block, K is converted to bf16 pairs and transposed
 * into the B operand (pairs of head dimensions x 16 positions); each
 * group of 16 query rows (bf16) gives a 16 x 16 score tile, stored into
 * the score cache. Pass 1 writes the normalized weights as bf16 rows of
 * 32 positions (the A operand) and V as pairs of positions interleaved
 * (the B operand: 16 pairs x 16 dimensions per tile), and each row group
 * accumulates its 16 x 64 slice of O in four tiles over all positions.
 *
 * Numerics: Q, K, V and the weights rounded to bf16 (8-bit mantissa; the
 * f16 cache holds 11), sums in float: the relative error of a score or an
 * output is about 2^-8, the size of the error of the prompt path's bf16
 * matrix products. Decode and short runs keep the exact vector path.
 */
#include "engine/attn.h"
#include "quant/amx.h"
#include "quant/simd_avx512.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define GRPS (QD_ATTN_ROWS / 16)
#define STEPS (QD_ATTN_SCAP / 32)


/* Workspace layout, in bytes from a 64-aligned base. */
#define QB_BYTES ((size_t)QD_ATTN_ROWS * 128 * 2)        /* bf16 Q, hd <= 128 */
#define KB_BYTES ((size_t)(128 / 32) * 1024)              /* one block's K */
#define SC_BYTES ((size_t)QD_ATTN_ROWS * QD_ATTN_SCAP * 4)        /* scores */
#define PB_BYTES ((size_t)GRPS * STEPS * 1024)            /* bf16 weights */
#define VB_BYTES ((size_t)STEPS * 16 * 4 * 128)           /* bf16 V pairs */
#define O_BYTES ((size_t)QD_ATTN_ROWS * 128 * 4)
#define ML_BYTES ((size_t)QD_ATTN_ROWS * 2 * 4)

size_t qd__attn_amx_ws_bytes(void)
{
    return QB_BYTES + KB_BYTES + SC_BYTES + PB_BYTES + VB_BYTES + O_BYTES + ML_BYTES + 64;
}


/* 32 fp16 values to 32 bf16 (16 dwords of consecutive pairs). */
static inline __m512i f16x32_to_bf16(const uint16_t *h)
{
    __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
    __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + 16)));
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

int qd__attn_amx(const qd_attn_kv_t *kv, int n_tok, const float *q, int64_t ldq,
                 const int32_t *pos, float *o, int64_t ldo, void *ws)
{
    const int hd = kv->hd, nrep = kv->n_rep, rows = n_tok * nrep;
    int32_t pmax = 0;
    for (int i = 0; i < n_tok; i++)
        pmax = pos[i] > pmax ? pos[i] : pmax;
    if (!kv->f16 || hd % 64 || hd > 128 || rows > QD_ATTN_ROWS || pmax >= QD_ATTN_SCAP)
        return -1;
    const int nks = hd / 32, ngrp = (rows + 15) / 16;
    const int nblk = pmax / QD_ATTN_BLK + 1, nstep = (nblk + 1) / 2;
    uint8_t *base = (uint8_t *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    uint16_t *qb = (uint16_t *)base;
    uint8_t *kb = base + QB_BYTES;
    float *sc = (float *)(kb + KB_BYTES);
    uint16_t *pb = (uint16_t *)((uint8_t *)sc + SC_BYTES);
    uint8_t *vb = (uint8_t *)pb + PB_BYTES;
    float *O = (float *)(vb + VB_BYTES);
    float *m = (float *)((uint8_t *)O + O_BYTES), *l = m + QD_ATTN_ROWS;
    const size_t eoff = (size_t)kv->g * hd * 2;
    const size_t vrow = (size_t)4 * hd; /* bytes of a pair of V rows */

    /* Q as the A operand: group g, step ks: 16 rows x 32 bf16 (rows past
     * `rows` zero). Like the vector path, Q is rounded to fp16 first. */
    memset(qb, 0, (size_t)ngrp * 16 * hd * 2);
    for (int r = 0; r < rows; r++) {
        const float *src = q + (size_t)(r / nrep) * ldq + (size_t)(r % nrep) * hd;
        for (int ks = 0; ks < nks; ks++) {
            __m512 a = qd__round_f16_512(_mm512_loadu_ps(src + 32 * ks));
            __m512 b = qd__round_f16_512(_mm512_loadu_ps(src + 32 * ks + 16));
            uint16_t *dst = qb + ((size_t)((r / 16) * nks + ks) * 16 + r % 16) * 32;
            _mm512_storeu_si512((void *)dst, (__m512i)_mm512_cvtne2ps_pbh(b, a));
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }

    static const int rows16[8] = {16, 16, 16, 16, 16, 16, 16, 16};
    static const int bytes64[8] = {64, 64, 64, 64, 64, 64, 64, 64};
    qd__amx_cfg_load(rows16, bytes64);

    /* Pass 0: scores into the cache, each row's maximum and sum. */
    const __m512 scale = _mm512_set1_ps(kv->scale);
    for (int b = 0; b < nblk; b++) {
        const int32_t p0 = b * QD_ATTN_BLK;
        const int nv = pmax + 1 - p0 < QD_ATTN_BLK ? pmax + 1 - p0 : QD_ATTN_BLK;
        const uint8_t *blk = kv->data + (size_t)kv->tab[b] * kv->block_bytes;
        for (int ks = 0; ks < nks; ks++) {
            __m512i t[16];
            for (int i = 0; i < QD_ATTN_BLK; i++)
                t[i] = i < nv ? f16x32_to_bf16((const uint16_t *)(blk + kv->koff +
                                                                  (size_t)i * kv->row_bytes + eoff) +
                                               32 * ks)
                              : _mm512_setzero_si512();
            qd__transpose16_epi32(t);
            for (int d = 0; d < 16; d++)
                _mm512_store_si512((void *)(kb + (size_t)ks * 1024 + 64 * d), t[d]);
        }
        for (int g = 0; g < ngrp; g++) {
            _tile_zero(0);
            for (int ks = 0; ks < nks; ks++) {
                _tile_loadd(1, qb + (size_t)(g * nks + ks) * 512, 64);
                _tile_loadd(2, kb + (size_t)ks * 1024, 64);
                _tile_dpbf16ps(0, 1, 2);
            }
            _tile_stored(0, sc + (size_t)16 * g * QD_ATTN_SCAP + p0, QD_ATTN_SCAP * 4);
        }
        for (int r = 0; r < rows; r++) {
            __mmask16 mk = qd__attn_visible(pos[r / nrep], p0);
            if (!mk)
                continue;
            float *sr = sc + (size_t)r * QD_ATTN_SCAP + p0;
            __m512 s = _mm512_mul_ps(_mm512_load_ps(sr), scale);
            _mm512_store_ps(sr, s);
            float bm = _mm512_mask_reduce_max_ps(mk, s);
            float mn = bm > m[r] ? bm : m[r];
            __m512 p = _mm512_maskz_mov_ps(mk, qd__exp512(_mm512_sub_ps(s, _mm512_set1_ps(mn))));
            l[r] = l[r] * expf(m[r] - mn) + _mm512_reduce_add_ps(p);
            m[r] = mn;
        }
    }

    /* Pass 1: the normalized weights (A: group g, step s: 16 rows x 32
     * positions) and V (B: step s, pair kp: the two positions' rows
     * interleaved, 4*hd bytes; tile j = dimensions 16j..16j+15). */
    memset(pb, 0, (size_t)ngrp * nstep * 1024);
    for (int r = 0; r < rows; r++) {
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        const __m512 mv = _mm512_set1_ps(m[r]), iv = _mm512_set1_ps(inv);
        for (int b = 0; b < nblk; b++) {
            __mmask16 mk = qd__attn_visible(pos[r / nrep], b * QD_ATTN_BLK);
            if (!mk)
                break;
            __m512 s = _mm512_load_ps(sc + (size_t)r * QD_ATTN_SCAP + b * QD_ATTN_BLK);
            __m512 p = _mm512_maskz_mov_ps(mk, _mm512_mul_ps(qd__exp512(_mm512_sub_ps(s, mv)), iv));
            uint16_t *dst = pb + ((size_t)((r / 16) * nstep + b / 2) * 16 + r % 16) * 32 + 16 * (b % 2);
            _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(p));
        }
    }
    /* word 2n from a, 2n+1 from c: [a0 c0 a1 c1 ... a15 c15] */
    _Alignas(64) uint16_t ilv_w[32];
    for (int n = 0; n < 16; n++) {
        ilv_w[2 * n] = (uint16_t)n;
        ilv_w[2 * n + 1] = (uint16_t)(32 + n);
    }
    const __m512i ilv = _mm512_load_si512(ilv_w);
    for (int s = 0; s < nstep; s++) {
        for (int kp = 0; kp < 16; kp++) {
            uint8_t *dst = vb + ((size_t)s * 16 + kp) * vrow;
            const int32_t k0 = 32 * s + 2 * kp, k1 = k0 + 1;
            const uint16_t *v0 = NULL, *v1 = NULL;
            if (k0 <= pmax)
                v0 = (const uint16_t *)(kv->data + (size_t)kv->tab[k0 / QD_ATTN_BLK] * kv->block_bytes +
                                        kv->voff + (size_t)(k0 % QD_ATTN_BLK) * kv->row_bytes + eoff);
            if (k1 <= pmax)
                v1 = (const uint16_t *)(kv->data + (size_t)kv->tab[k1 / QD_ATTN_BLK] * kv->block_bytes +
                                        kv->voff + (size_t)(k1 % QD_ATTN_BLK) * kv->row_bytes + eoff);
            for (int d = 0; d < hd; d += 32) {
                __m512i a = v0 ? f16x32_to_bf16(v0 + d) : _mm512_setzero_si512();
                __m512i c = v1 ? f16x32_to_bf16(v1 + d) : _mm512_setzero_si512();
                /* values d..d+15 of both rows interleaved, then d+16..d+31 */
                __m512i lo = _mm512_permutex2var_epi16(a, ilv, c);
                __m512i hi = _mm512_permutex2var_epi16(
                    a, _mm512_add_epi16(ilv, _mm512_set1_epi16(16)), c);
                _mm512_storeu_si512((void *)(dst + (size_t)d * 4), lo);
                _mm512_storeu_si512((void *)(dst + (size_t)d * 4 + 64), hi);
            }
        }
    }
    for (int dc = 0; dc < hd; dc += 64) {
        for (int g = 0; g < ngrp; g++) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int s = 0; s < nstep; s++) {
                _tile_loadd(4, pb + (size_t)(g * nstep + s) * 512, 64);
                const uint8_t *vs = vb + (size_t)s * 16 * vrow + (size_t)dc * 4;
                _tile_loadd(5, vs, vrow);
                _tile_dpbf16ps(0, 4, 5);
                _tile_loadd(6, vs + 64, vrow);
                _tile_dpbf16ps(1, 4, 6);
                _tile_loadd(7, vs + 128, vrow);
                _tile_dpbf16ps(2, 4, 7);
                _tile_loadd(5, vs + 192, vrow);
                _tile_dpbf16ps(3, 4, 5);
            }
            float *od = O + (size_t)16 * g * hd + dc;
            _tile_stored(0, od, hd * 4);
            _tile_stored(1, od + 16, hd * 4);
            _tile_stored(2, od + 32, hd * 4);
            _tile_stored(3, od + 48, hd * 4);
        }
    }
    _tile_release();
    for (int r = 0; r < rows; r++) {
        float *dst = o + (size_t)(r / nrep) * ldo + (size_t)(r % nrep) * hd;
        memcpy(dst, O + (size_t)r * hd, (size_t)hd * sizeof(float));
    }
    return 0;
}
