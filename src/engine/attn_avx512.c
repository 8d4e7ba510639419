/*
 * attn_avx512.c — blocked attention with AVX-512 (see attn.h).
 *
 * Per block of 16 cached positions: K is converted to float and transposed
 * (Kt[d][i]) so that one row's 16 scores are hd broadcast multiply-adds
 * with no horizontal sums, four rows sharing each Kt load; V is converted
 * to float (Vf[i][d]). Each row keeps a running maximum m, a running sum l
 * and its output accumulator O (online softmax): for a new block,
 * O = O*exp(m - m') + sum_i exp(s_i - m') V_i. Positions a row may not see
 * (its own position onwards, or past the sequence) are masked.
 */
#include "engine/attn.h"
#include "quant/simd_avx512.h"
#include "quantd/common.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

static size_t vec_ws_floats(int hd)
{
    /* qf, O: ROWS x hd; Kt: hd x 16; Vf: 16 x hd; m, l: ROWS; p: 16;
     * score cache: ROWS x QD_ATTN_SCAP */
    return (size_t)QD_ATTN_ROWS * (size_t)hd * 2 + (size_t)hd * QD_ATTN_BLK * 2 +
           QD_ATTN_ROWS * 2 + QD_ATTN_BLK + 64 + (size_t)QD_ATTN_ROWS * QD_ATTN_SCAP;
}

size_t qd__attn_ws_floats(int hd)
{
    return QD_MAX(vec_ws_floats(hd), (qd__attn_amx_ws_bytes() + 3) / 4);
}



/* 16 values of a cached row (fp16 or float) to float. */
static inline __m512 load_row16(const uint8_t *row, int f16, int d)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + d)));
    return _mm512_loadu_ps((const float *)row + d);
}

static inline void transpose16(__m512 v[16])
{
    __m512i r[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_castps_si512(v[i]);
    qd__transpose16_epi32(r);
    for (int i = 0; i < 16; i++)
        v[i] = _mm512_castsi512_ps(r[i]);
}

/* O (hd floats) = O*cv + sum_i p[i]*V_i over nv rows of Vf, with fused
 * multiply-adds (cv = 1 leaves O as it is: the product is exact), 64
 * values (4 registers) at a time, then one register at a time for the
 * rest of hd (a multiple of 16). */
static inline void pv(float *O, const float *Vf, int hd, int nv, const float *p,
                      __m512 cv)
{
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
        __m512 a0 = _mm512_mul_ps(_mm512_loadu_ps(O + d), cv);
        __m512 a1 = _mm512_mul_ps(_mm512_loadu_ps(O + d + 16), cv);
        __m512 a2 = _mm512_mul_ps(_mm512_loadu_ps(O + d + 32), cv);
        __m512 a3 = _mm512_mul_ps(_mm512_loadu_ps(O + d + 48), cv);
        const float *v = Vf + d;
        for (int i = 0; i < nv; i++, v += hd) {
            __m512 w = _mm512_set1_ps(p[i]);
            a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v), a0);
            a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 16), a1);
            a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 32), a2);
            a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 48), a3);
        }
        _mm512_storeu_ps(O + d, a0);
        _mm512_storeu_ps(O + d + 16, a1);
        _mm512_storeu_ps(O + d + 32, a2);
        _mm512_storeu_ps(O + d + 48, a3);
    }
    for (; d < hd; d += 16) {
        __m512 a = _mm512_mul_ps(_mm512_loadu_ps(O + d), cv);
        for (int i = 0; i < nv; i++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(p[i]), _mm512_loadu_ps(Vf + (size_t)i * hd + d), a);
        _mm512_storeu_ps(O + d, a);
    }
}

/* Update one row with the scores s (16 lanes, masked lanes ignored): the
 * f32 cache's single pass, online softmax. */
static inline void row_update(__m512 s, __mmask16 mask, float *m, float *l,
                              float *O, const float *Vf, int hd, int nv,
                              float *p_buf)
{
    float bm = _mm512_mask_reduce_max_ps(mask, s);
    float mn = bm > *m ? bm : *m;
    float corr = expf(*m - mn); /* 0 on the first visible block */
    __m512 p = _mm512_maskz_mov_ps(mask, qd__exp512(_mm512_sub_ps(s, _mm512_set1_ps(mn))));
    *l = *l * corr + _mm512_reduce_add_ps(p);
    *m = mn;
    _mm512_store_ps(p_buf, p);
    pv(O, Vf, hd, nv, p_buf, _mm512_set1_ps(corr));
}

/* Scores of nr (<= 4) rows against the transposed block: 16 lanes each.
 * Each score is summed in the order of the per-key dot product of the
 * unblocked path (forward.c, dot_q_f16_x86): partial sums a_c over
 * d = c, c+16, ... (c < 16), then the tree
 *   ((a0+a8 + a4+a12) + (a2+a10 + a6+a14)) + ((a1+a9 + a5+a13) + (a3+a11 + a7+a15))
 * so both paths give the same scores to the bit. The partial sums are
 * formed in the tree's order, a few at a time, so the rows share each
 * load of Kt. */
static inline __attribute__((always_inline)) void
chain(const int NR, const float *q0, int hd, const float *Kt, int c, __m512 *x)
{
    __m512 kt = _mm512_load_ps(Kt + (size_t)c * QD_ATTN_BLK);
    for (int k = 0; k < NR; k++)
        x[k] = _mm512_mul_ps(_mm512_set1_ps(q0[(size_t)k * hd + c]), kt);
    for (int d = c + 16; d < hd; d += 16) {
        kt = _mm512_load_ps(Kt + (size_t)d * QD_ATTN_BLK);
        for (int k = 0; k < NR; k++)
            x[k] = _mm512_fmadd_ps(_mm512_set1_ps(q0[(size_t)k * hd + d]), kt, x[k]);
    }
}

/* h_j = (a_j + a_{j+8}) + (a_{j+4} + a_{j+12}) */
static inline __attribute__((always_inline)) void
quad(const int NR, const float *q0, int hd, const float *Kt, int j, __m512 *h)
{
    __m512 a[4], b[4];
    chain(NR, q0, hd, Kt, j, a);
    chain(NR, q0, hd, Kt, j + 8, b);
    for (int k = 0; k < NR; k++)
        a[k] = _mm512_add_ps(a[k], b[k]);
    chain(NR, q0, hd, Kt, j + 4, b);
    __m512 c[4];
    chain(NR, q0, hd, Kt, j + 12, c);
    for (int k = 0; k < NR; k++)
        h[k] = _mm512_add_ps(a[k], _mm512_add_ps(b[k], c[k]));
}

static inline __attribute__((always_inline)) void
scores_n(const int NR, const float *q0, int hd, const float *Kt, __m512 *s)
{
    __m512 h0[4], h2[4], h1[4], h3[4];
    quad(NR, q0, hd, Kt, 0, h0);
    quad(NR, q0, hd, Kt, 2, h2);
    for (int k = 0; k < NR; k++)
        h0[k] = _mm512_add_ps(h0[k], h2[k]);
    quad(NR, q0, hd, Kt, 1, h1);
    quad(NR, q0, hd, Kt, 3, h3);
    for (int k = 0; k < NR; k++)
        s[k] = _mm512_add_ps(h0[k], _mm512_add_ps(h1[k], h3[k]));
}

static inline void scores4(const float *q0, int hd, int nr, const float *Kt,
                           __m512 *s)
{
    switch (nr) {
    case 4: scores_n(4, q0, hd, Kt, s); break;
    case 3: scores_n(3, q0, hd, Kt, s); break;
    case 2: scores_n(2, q0, hd, Kt, s); break;
    default: scores_n(1, q0, hd, Kt, s); break;
    }
}

/* Running maximum and sum of exp(s - max) (pass 0 of the f16 case). */
static inline void stats_update(__m512 s, __mmask16 mask, float *m, float *l)
{
    float bm = _mm512_mask_reduce_max_ps(mask, s);
    float mn = bm > *m ? bm : *m;
    __m512 p = _mm512_maskz_mov_ps(mask, qd__exp512(_mm512_sub_ps(s, _mm512_set1_ps(mn))));
    *l = *l * expf(*m - mn) + _mm512_reduce_add_ps(p);
    *m = mn;
}

/* O += fp16(exp(s - m) / l) * V (pass 1 of the f16 case), in position
 * order. (The unblocked path multiplies then adds; fused multiply-adds
 * here differ by a rounding per term, which the conformance tests do not
 * see, and take half the vector operations.) */
static inline void accumulate(__m512 s, __mmask16 mask, float m, float l,
                              float *O, const float *Vf, int hd, int nv,
                              float *p_buf)
{
    __m512 p = _mm512_maskz_mov_ps(mask, qd__exp512(_mm512_sub_ps(s, _mm512_set1_ps(m))));
    p = qd__round_f16_512(_mm512_mul_ps(p, _mm512_set1_ps(1.0f / l)));
    _mm512_store_ps(p_buf, p);
    pv(O, Vf, hd, nv, p_buf, _mm512_set1_ps(1.0f));
}

void qd__attn_avx512(const qd_attn_kv_t *kv, int n_tok, const float *q,
                     int64_t ldq, const int32_t *pos, float *o, int64_t ldo,
                     float *ws)
{
    const int hd = kv->hd, nrep = kv->n_rep, rows = n_tok * nrep;
    float *qf = ws, *O = qf + (size_t)QD_ATTN_ROWS * hd;
    float *Kt = O + (size_t)QD_ATTN_ROWS * hd, *Vf = Kt + (size_t)hd * QD_ATTN_BLK;
    float *m = Vf + (size_t)QD_ATTN_BLK * hd, *l = m + QD_ATTN_ROWS;
    float *p_buf = (float *)(((uintptr_t)(l + QD_ATTN_ROWS) + 63) & ~(uintptr_t)63);
    float *sc = p_buf + QD_ATTN_BLK;
    int32_t pmax = 0;
    for (int i = 0; i < n_tok; i++)
        pmax = pos[i] > pmax ? pos[i] : pmax;
    const int cached = kv->f16 && pmax < QD_ATTN_SCAP;
    for (int r = 0; r < rows; r++) {
        const float *src = q + (size_t)(r / nrep) * ldq + (size_t)(r % nrep) * hd;
        for (int d = 0; d < hd; d += 16) {
            __m512 x = _mm512_loadu_ps(src + d);
            _mm512_storeu_ps(qf + (size_t)r * hd + d, kv->f16 ? qd__round_f16_512(x) : x);
            _mm512_storeu_ps(O + (size_t)r * hd + d, _mm512_setzero_ps());
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const size_t eoff = (size_t)kv->g * hd * (kv->f16 ? 2 : 4);
    const __m512 scale = _mm512_set1_ps(kv->scale);
    /* With an f32 cache: one pass, online softmax. With an f16 cache the
     * softmax weights are normalized before they are rounded to fp16 (as
     * a matrix product of f16 V by the rounded weights does), which needs
     * the final maximum and sum first: pass 0 computes them, pass 1
     * accumulates V (reading pass 0's scores, or recomputing them past
     * QD_ATTN_SCAP positions). */
    for (int pass = kv->f16 ? 0 : 1; pass < 2; pass++) {
        int two = kv->f16;
        for (int32_t b = 0; b * QD_ATTN_BLK <= pmax; b++) {
            const int32_t p0 = b * QD_ATTN_BLK;
            const int nv = pmax + 1 - p0 < QD_ATTN_BLK ? pmax + 1 - p0 : QD_ATTN_BLK;
            const uint8_t *blk = kv->data + (size_t)kv->tab[b] * kv->block_bytes;
            /* The rows of this head (hd values, 1 KiB or more apart) are
             * out of the hardware prefetcher's reach: blocks 0-2 are asked
             * for at the start, then block b+2 while b is worked on. With
             * 8 sequences decoding, attention was 14-16 % of a step,
             * mostly waiting on them: 100.6 -> 113-115 tok/s (two blocks
             * ahead; one: 109, four: 112-114). */
            for (int32_t nbk = b == 0 ? 0 : b + 2; nbk <= b + 2 && nbk * QD_ATTN_BLK <= pmax; nbk++) {
                const uint8_t *nb = kv->data + (size_t)kv->tab[nbk] * kv->block_bytes;
                const int hb = hd * (kv->f16 ? 2 : 4);
                for (int i = 0; i < QD_ATTN_BLK; i++) {
                    const uint8_t *kr = nb + kv->koff + (size_t)i * kv->row_bytes + eoff;
                    const uint8_t *vr = nb + kv->voff + (size_t)i * kv->row_bytes + eoff;
                    for (int c = 0; c < hb; c += 64) {
                        if (!(pass == 1 && cached))
                            _mm_prefetch((const char *)kr + c, _MM_HINT_T0);
                        if (pass == 1)
                            _mm_prefetch((const char *)vr + c, _MM_HINT_T0);
                    }
                }
            }
            for (int d = 0; d < hd; d += 16) {
                if (pass == 1 && cached) { /* V only */
                    for (int i = 0; i < nv; i++) {
                        const uint8_t *vr = blk + kv->voff + (size_t)i * kv->row_bytes + eoff;
                        _mm512_storeu_ps(Vf + (size_t)i * hd + d, load_row16(vr, kv->f16, d));
                    }
                    continue;
                }
                __m512 v[16];
                for (int i = 0; i < QD_ATTN_BLK; i++) {
                    if (i < nv) {
                        const uint8_t *kr = blk + kv->koff + (size_t)i * kv->row_bytes + eoff;
                        v[i] = load_row16(kr, kv->f16, d);
                        if (pass == 1) {
                            const uint8_t *vr = blk + kv->voff + (size_t)i * kv->row_bytes + eoff;
                            _mm512_storeu_ps(Vf + (size_t)i * hd + d, load_row16(vr, kv->f16, d));
                        }
                    } else {
                        v[i] = _mm512_setzero_ps();
                    }
                }
                transpose16(v);
                for (int j = 0; j < 16; j++)
                    _mm512_store_ps(Kt + (size_t)(d + j) * QD_ATTN_BLK, v[j]);
            }
            for (int r0 = 0; r0 < rows; r0 += 4) {
                int nr = rows - r0 < 4 ? rows - r0 : 4;
                __mmask16 mk[4];
                int any = 0;
                for (int k = 0; k < 4; k++) {
                    mk[k] = 0;
                    if (k < nr) {
                        mk[k] = qd__attn_visible(pos[(r0 + k) / nrep], p0);
                        any |= mk[k];
                    }
                }
                if (!any)
                    continue;
                __m512 sv[4];
                if (!(pass == 1 && cached))
                    scores4(qf + (size_t)r0 * hd, hd, nr, Kt, sv);
                for (int k = 0; k < nr; k++) {
                    if (!mk[k])
                        continue;
                    int r = r0 + k;
                    float *sr = sc + (size_t)r * QD_ATTN_SCAP + p0;
                    __m512 sk;
                    if (pass == 1 && cached) {
                        sk = _mm512_load_ps(sr);
                    } else {
                        sk = _mm512_mul_ps(sv[k], scale);
                        if (cached)
                            _mm512_store_ps(sr, sk);
                    }
                    if (pass == 0)
                        stats_update(sk, mk[k], &m[r], &l[r]);
                    else if (two)
                        accumulate(sk, mk[k], m[r], l[r], O + (size_t)r * hd, Vf, hd, nv, p_buf);
                    else
                        row_update(sk, mk[k], &m[r], &l[r], O + (size_t)r * hd, Vf,
                                   hd, nv, p_buf);
                }
            }
        }
    }
    if (kv->f16) /* accumulate() applied 1/l already */
        for (int r = 0; r < rows; r++)
            l[r] = 1.0f;
    for (int r = 0; r < rows; r++) {
        float *dst = o + (size_t)(r / nrep) * ldo + (size_t)(r % nrep) * hd;
        __m512 inv = _mm512_set1_ps(l[r] > 0.0f ? 1.0f / l[r] : 0.0f);
        for (int d = 0; d < hd; d += 16)
            _mm512_storeu_ps(dst + d, _mm512_mul_ps(_mm512_loadu_ps(O + (size_t)r * hd + d), inv));
    }
}

void qd__f32_to_f16_avx512(const float *x, uint16_t *y, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(y + i, k,
                                 _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

void qd__swiglu_avx512(float *g, const float *u, int n)
{
    int i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 e = qd__exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)),
                                              _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
