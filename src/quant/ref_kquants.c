/*
 * ref_kquants.c — plain-C reference implementations of the 256-value
 * "K-quant" super-block formats (Q2_K … Q6_K), their activation format Q8_K,
 * and IQ4_XS.
 *
 * These functions are the specification of each format in quantd. They must
 * produce exactly the bytes llama.cpp produces, because GGUF files written by
 * either program are read by the other: every rounding step below (the
 * magic-number round-to-nearest-even, the float (not double) accumulations,
 * the order of the sums, the search grids of the scale fitters) follows
 * ggml-quants.c, and tests/unit/test_quant_k.c checks the result byte for
 * byte against tensors quantized by llama.cpp.
 *
 * Layout summary (QK_K = 256 values per super-block):
 *   Q2_K  16 sub-blocks of 16; 4-bit scale + 4-bit min each; fp16 d, dmin;
 *         2-bit quants, value = d*sc*q - dmin*m.
 *   Q3_K  16 sub-blocks of 16; 6-bit signed scales (offset 32) packed in 12
 *         bytes; fp16 d; 2 low bits in qs + 1 high bit in hmask, q in -4..3.
 *   Q4_K  8 sub-blocks of 32; 6-bit scale + 6-bit min packed in 12 bytes
 *         (see unpack_scale_min); fp16 d, dmin; 4-bit quants.
 *   Q5_K  as Q4_K with a fifth bit per value in qh.
 *   Q6_K  16 sub-blocks of 16; int8 scales; fp16 d; 4 low bits in ql and
 *         2 high bits in qh, q in -32..31.
 *   Q8_K  float d; int8 quants; int16 sums of each 16 quants (bsums).
 *   IQ4_XS 8 sub-blocks of 32; 6-bit scales (offset 32); fp16 d; 4-bit
 *         indices into the non-linear table qd_kvalues_iq4nl.
 *
 * With importance weights (an imatrix: one non-negative weight per column)
 * quantize_* uses the weighted fitters, as llama.cpp's quantize_q*_K do.
 */
#include "quant/ref.h"
#include "quant/ref_int.h"

#include <math.h>
#include <string.h>

#define QK QD_QK_K
/* Sub-blocks whose largest magnitude is below this are treated as zero. */
#define GROUP_EPS QD_GROUP_EPS


static inline int imin(int a, int b)
{
    return a < b ? a : b;
}
static inline int imax(int a, int b)
{
    return a > b ? a : b;
}
static inline int iclamp(int v, int lo, int hi)
{
    return imax(lo, imin(hi, v));
}


static inline float h2f(qd_fp16_t h)
{
    return qd_fp16_to_fp32(h);
}
static inline qd_fp16_t f2h(float f)
{
    return qd_fp32_to_fp16(f);
}

/* ---- scale fitters ---------------------------------------------------- */


/*
 * Symmetric fit for Q3_K's reference path: start from q = round(-nmax/max*x)
 * and improve the x^2-weighted least-squares objective one value at a time
 * (up to 5 passes). L receives q + nmax. Returns the scale.
 */
static float fit_q3(int n, int nmax, const float *restrict x,
                    int8_t *restrict L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = iclamp(qd__nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int nl = iclamp(qd__nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}


/*
 * Fit non-negative values x ≈ s*q, q in [0, nmax], weighted by w: used to
 * quantize the per-sub-block scales and mins themselves on the imatrix
 * path. L receives q. Returns s.
 */
static float fit_positive(int n, int nmax, const float *restrict x,
                          uint8_t *restrict L, const float *restrict w)
{
    float max = 0;
    for (int i = 0; i < n; i++)
        max = max > x[i] ? max : x[i];
    if (max < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)qd__nearest_int(iscale * x[i]);
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * (float)L[i];
        best_mse += w[i] * diff * diff;
    }
    for (int k = -4; k <= 4; k++) {
        if (k == 0)
            continue;
        float is_k = (0.1f * (float)k + (float)nmax) / max;
        float s_k = 1 / is_k;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = imin(nmax, qd__nearest_int(is_k * x[i]));
            float diff = x[i] - s_k * (float)l;
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = is_k;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imin(nmax, qd__nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * (float)l;
        suml2 += w[i] * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float slx = sumlx - w[i] * x[i] * (float)L[i];
            float sl2 = suml2 - w[i] * (float)L[i] * (float)L[i];
            if (slx > 0 && sl2 > 0) {
                int nl = imin(nmax, qd__nearest_int(x[i] * sl2 / slx));
                if (nl != L[i]) {
                    slx += w[i] * x[i] * (float)nl;
                    sl2 += w[i] * (float)nl * (float)nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- 6-bit scale packing shared by Q4_K and Q5_K ----------------------
 * 12 bytes hold 8 (scale, min) pairs of 6 bits. Pairs 0-3: bytes j and
 * j+4 hold scale and min in their low 6 bits. Pairs 4-7: byte j+4 holds
 * the low nibbles (scale | min << 4); the two high bits of the scale go to
 * the top of byte j-4, those of the min to the top of byte j. */
static inline void unpack_scale_min(int j, const uint8_t *restrict q,
                                    uint8_t *restrict sc, uint8_t *restrict m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void pack_scales_mins(uint8_t *restrict q, const uint8_t *ls,
                             const uint8_t *lm)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Q3_K: 16 scales of 6 bits (stored +32) in 12 bytes: low nibbles of 0-7
 * in bytes 0-7 low, of 8-15 in bytes 0-7 high; the 2 high bits of scale j
 * in byte 8 + j%4 at bit 2*(j/4). */
static void q3_pack_scales(uint8_t *restrict s, const int *l6)
{
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        int l = l6[j];
        if (j < 8)
            s[j] = (uint8_t)(l & 0xF);
        else
            s[j - 8] |= (uint8_t)((l & 0xF) << 4);
        s[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}


/* 2-bit packing used by Q2_K and Q3_K: in each half of 128 values, byte l
 * holds values l, l+32, l+64, l+96 at bits 0, 2, 4, 6. */
static void pack_2bit(uint8_t *restrict qs, const uint8_t *restrict L)
{
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                          (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* ===================================================================== */
/* Q8_K                                                                  */
/* ===================================================================== */

void qd_ref_to_float_q8_K(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK; i++)
        for (int j = 0; j < QK; j++)
            *dst++ = b[i].d * (float)b[i].qs[j];
}

void qd_ref_from_float_q8_K(const float *restrict x, void *restrict dst,
                            int64_t n)
{
    qd_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0) {
            /* ggml leaves bsums untouched here; we zero them. */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* -127 rather than -128 keeps every product symmetric. */
        const float iscale = -127.f / max;
        for (int j = 0; j < QK; j++)
            y[i].qs[j] = (int8_t)imin(127, qd__nearest_int(iscale * x[j]));
        for (int j = 0; j < QK / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

size_t qd_ref_quantize_q8_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix)
{
    (void)imatrix;
    qd_ref_from_float_q8_K(src, dst, nrows * n_per_row);
    return (size_t)nrows * qd_row_size(QD_TYPE_Q8_K, n_per_row);
}

void qd_ref_vec_dot_q8_K(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q8_K *x = vx, *y = vy;
    float sumf = 0;
    for (int i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++)
            sumi += x[i].qs[j] * y[i].qs[j];
        sumf += x[i].d * y[i].d * (float)sumi;
    }
    *s = sumf;
}

/* ===================================================================== */
/* Q2_K                                                                  */
/* ===================================================================== */

void qd_ref_to_float_q2_K(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; k++) {
                    uint8_t sc = b[i].scales[is++];
                    float dl = d * (float)(sc & 0xF);
                    float ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *dst++ =
                            dl * (float)((q[16 * k + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* Requantize with the stored (fp16-rounded) scales and pack. L holds the
 * fitter's values for sub-blocks whose scale rounds to zero. */
static void q2_finish(qd_block_q2_K *restrict y, const float *restrict x,
                      uint8_t *restrict L)
{
    const float d0 = h2f(y->d), m0 = h2f(y->dmin);
    for (int j = 0; j < QK / 16; j++) {
        const float d = d0 * (float)(y->scales[j] & 0xF);
        if (d == 0)
            continue;
        const float m = m0 * (float)(y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] =
                (uint8_t)iclamp(qd__nearest_int((x[16 * j + ii] + m) / d), 0, 3);
    }
    pack_2bit(y->qs, L);
}

void qd_ref_from_float_q2_K(const float *restrict x, void *restrict dst,
                            int64_t n)
{
    qd_block_q2_K *y = dst;
    uint8_t L[QK], Laux[16];
    float w[16], mins[QK / 16], scales[QK / 16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK / 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = fabsf(x[16 * j + l]);
            scales[j] = qd__fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j],
                                   Laux, -0.5f, 0.1f, 15, 1, 1);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK / 16; j++)
                y[i].scales[j] = (uint8_t)qd__nearest_int(iscale * scales[j]);
            y[i].d = f2h(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = f2h(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK / 16; j++)
                y[i].scales[j] |=
                    (uint8_t)((unsigned)qd__nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f2h(max_min / q4scale);
        } else {
            y[i].dmin = f2h(0.f);
        }
        q2_finish(&y[i], x, L);
    }
}

static void q2_row_imatrix(const float *restrict x, qd_block_q2_K *restrict y,
                           int64_t n_per_row, const float *restrict qw_row)
{
    uint8_t L[QK], Laux[16], Ls[QK / 16], Lm[QK / 16];
    float mins[QK / 16], scales[QK / 16], sw[QK / 16], w[16];

    for (int64_t i = 0; i < n_per_row / QK; i++, x += QK) {
        float sumx2 = 0;
        for (int j = 0; j < QK; j++)
            sumx2 += x[j] * x[j];
        const float sigma2 = sumx2 / QK;
        for (int j = 0; j < QK / 16; j++) {
            const float *qw = qw_row + QK * i + 16 * j;
            sw[j] = 0;
            for (int l = 0; l < 16; l++)
                w[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++)
                sw[j] += w[l];
            scales[j] = qd__fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j],
                                   Laux, -0.9f, 0.05f, 36, 0, 0);
        }
        float dm = fit_positive(QK / 16, 15, scales, Ls, sw);
        float mm = fit_positive(QK / 16, 15, mins, Lm, sw);
        y[i].d = f2h(dm);
        y[i].dmin = f2h(mm);
        for (int j = 0; j < QK / 16; j++)
            y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_finish(&y[i], x, L);
    }
}

/* ===================================================================== */
/* Q3_K                                                                  */
/* ===================================================================== */

void qd_ref_to_float_q3_K(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d_all = h2f(b[i].d);
        const uint8_t *q = b[i].qs, *hm = b[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int k = 0; k < 2; k++) {
                    float dl = d_all * (float)qd__q3k_scale(b[i].scales, is++);
                    for (int l = 16 * k; l < 16 * k + 16; l++) {
                        int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Requantize with the stored scales, then split into hmask + 2-bit qs.
 * L holds q + 4 in 0..7 on entry. */
static void q3_finish(qd_block_q3_K *restrict y, const float *restrict x,
                      int8_t *restrict L)
{
    const float d0 = h2f(y->d);
    for (int j = 0; j < QK / 16; j++) {
        const float d = d0 * (float)qd__q3k_scale(y->scales, j);
        if (d == 0)
            continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] =
                (int8_t)(iclamp(qd__nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    /* The high bit of value j goes to hmask[j % 32], bit j / 32. */
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t low[QK];
    for (int j = 0; j < QK; j++) {
        int l = L[j];
        if (l > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            l -= 4;
        }
        low[j] = (uint8_t)l;
    }
    pack_2bit(y->qs, low);
}

void qd_ref_from_float_q3_K(const float *restrict x, void *restrict dst,
                            int64_t n)
{
    qd_block_q3_K *y = dst;
    int8_t L[QK];
    float scales[QK / 16];

    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK / 16; j++) {
            scales[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        if (max_scale != 0) {
            float iscale = -32.f / max_scale;
            int l6[QK / 16];
            for (int j = 0; j < QK / 16; j++) {
                int8_t l = (int8_t)qd__nearest_int(iscale * scales[j]);
                l6[j] = iclamp(l, -32, 31) + 32;
            }
            q3_pack_scales(y[i].scales, l6);
            y[i].d = f2h(1 / iscale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = f2h(0.f);
        }
        q3_finish(&y[i], x, L);
    }
}

static void q3_row_imatrix(const float *restrict x, qd_block_q3_K *restrict y,
                           int64_t n_per_row, const float *restrict qw_row)
{
    int8_t L[QK], Ls[QK / 16];
    float scales[QK / 16], w[16], sw[QK / 16];

    for (int64_t i = 0; i < n_per_row / QK; i++, x += QK) {
        float sumx2 = 0;
        for (int j = 0; j < QK; j++)
            sumx2 += x[j] * x[j];
        const float sigma2 = 2 * sumx2 / QK;
        for (int j = 0; j < QK / 16; j++) {
            const float *qw = qw_row + QK * i + 16 * j;
            for (int l = 0; l < 16; l++)
                w[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; l++)
                sumw += w[l];
            sw[j] = sumw;
            scales[j] = qd__fit_symmetric(16, 4, x + 16 * j, L + 16 * j, w);
        }
        float d_block = qd__fit_symmetric(QK / 16, 32, scales, Ls, sw);
        int l6[QK / 16];
        for (int j = 0; j < QK / 16; j++)
            l6[j] = Ls[j];
        q3_pack_scales(y[i].scales, l6);
        y[i].d = f2h(d_block);
        q3_finish(&y[i], x, L);
    }
}

/* ===================================================================== */
/* Q4_K and Q5_K                                                         */
/* ===================================================================== */

void qd_ref_to_float_q4_K(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            unpack_scale_min(j, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            unpack_scale_min(j + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void qd_ref_to_float_q5_K(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            unpack_scale_min(j, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            unpack_scale_min(j + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ =
                    d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ =
                    d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Shared tail of Q4_K/Q5_K quantization: requantize every sub-block of 32
 * against the stored scale/min (fp16 d, dmin times the 6-bit integers)
 * into L (0..nmax). Sub-blocks whose scale is zero keep the fitter's L. */
static void k4_requantize(const uint8_t *restrict packed, qd_fp16_t hd,
                          qd_fp16_t hdmin, const float *restrict x,
                          uint8_t *restrict L, int nmax)
{
    for (int j = 0; j < QK / 32; j++) {
        uint8_t sc, m;
        unpack_scale_min(j, packed, &sc, &m);
        const float d = h2f(hd) * (float)sc;
        if (d == 0)
            continue;
        const float dm = h2f(hdmin) * (float)m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] =
                (uint8_t)iclamp(qd__nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

static void q4_pack(qd_block_q4_K *restrict y, const uint8_t *restrict L)
{
    uint8_t *q = y->qs;
    for (int j = 0; j < QK; j += 64, q += 32)
        for (int l = 0; l < 32; l++)
            q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q5_pack(qd_block_q5_K *restrict y, const uint8_t *restrict L)
{
    uint8_t *qh = y->qh, *ql = y->qs;
    memset(qh, 0, sizeof y->qh);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

/* Reference fit of one Q4_K/Q5_K super-block: per sub-block affine fits
 * weighted by rms + |x|, then 6-bit scales and mins relative to their
 * maxima. Writes d, dmin, scales; L gets the fitter's quants. */
static void k4_fit_ref(const float *restrict x, int nmax, float rmin, int nstep,
                       uint8_t *restrict packed, qd_fp16_t *hd,
                       qd_fp16_t *hdmin, uint8_t *restrict L)
{
    uint8_t Laux[32], ls[8], lm[8];
    float w[32], mins[QK / 32], scales[QK / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qd__fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j],
                               Laux, rmin, 0.1f, nstep, 0, 1);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK / 32; j++) {
        uint8_t a = (uint8_t)qd__nearest_int(inv_scale * scales[j]);
        uint8_t b = (uint8_t)qd__nearest_int(inv_min * mins[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    pack_scales_mins(packed, ls, lm);
    *hd = f2h(max_scale / 63.f);
    *hdmin = f2h(max_min / 63.f);
}

/* Importance-weighted fit of one Q4_K/Q5_K super-block (qw: 256 weights).
 * Scales and mins are themselves fitted with fit_positive. */
static void k4_fit_imatrix(const float *restrict x, int nmax, int clamp63,
                           const float *restrict qw, uint8_t *restrict packed,
                           qd_fp16_t *hd, qd_fp16_t *hdmin, uint8_t *restrict L)
{
    uint8_t Laux[32], Ls[QK / 32], Lm[QK / 32];
    float w[32], sw[QK / 32], mins[QK / 32], scales[QK / 32];
    float sum_x2 = 0;
    for (int l = 0; l < QK; l++)
        sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / QK;
    for (int j = 0; j < QK / 32; j++) {
        for (int l = 0; l < 32; l++)
            w[l] =
                qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; l++)
            sumw += w[l];
        sw[j] = sumw;
        scales[j] = qd__fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j],
                               Laux, -0.9f, 0.05f, 36, 0, 0);
    }
    float d_block = fit_positive(QK / 32, 63, scales, Ls, sw);
    float m_block = fit_positive(QK / 32, 63, mins, Lm, sw);
    /* ggml clamps here for Q5_K only; fit_positive stays within 63
     * except for negative fits, which wrap as uint8. */
    for (int j = 0; clamp63 && j < QK / 32; j++) {
        Ls[j] = Ls[j] < 63 ? Ls[j] : 63;
        Lm[j] = Lm[j] < 63 ? Lm[j] : 63;
    }
    pack_scales_mins(packed, Ls, Lm);
    *hd = f2h(d_block);
    *hdmin = f2h(m_block);
}

void qd_ref_from_float_q4_K(const float *restrict x, void *restrict dst,
                            int64_t n)
{
    qd_block_q4_K *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        k4_fit_ref(x, 15, -1.f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        k4_requantize(y[i].scales, y[i].d, y[i].dmin, x, L, 15);
        q4_pack(&y[i], L);
    }
}

void qd_ref_from_float_q5_K(const float *restrict x, void *restrict dst,
                            int64_t n)
{
    qd_block_q5_K *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        k4_fit_ref(x, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        k4_requantize(y[i].scales, y[i].d, y[i].dmin, x, L, 31);
        q5_pack(&y[i], L);
    }
}

static void q4_row_imatrix(const float *restrict x, qd_block_q4_K *restrict y,
                           int64_t n_per_row, const float *restrict qw)
{
    uint8_t L[QK];
    for (int64_t i = 0; i < n_per_row / QK; i++, x += QK) {
        k4_fit_imatrix(x, 15, 0, qw + QK * i, y[i].scales, &y[i].d, &y[i].dmin,
                       L);
        k4_requantize(y[i].scales, y[i].d, y[i].dmin, x, L, 15);
        q4_pack(&y[i], L);
    }
}

static void q5_row_imatrix(const float *restrict x, qd_block_q5_K *restrict y,
                           int64_t n_per_row, const float *restrict qw)
{
    uint8_t L[QK];
    for (int64_t i = 0; i < n_per_row / QK; i++, x += QK) {
        k4_fit_imatrix(x, 31, 1, qw + QK * i, y[i].scales, &y[i].d, &y[i].dmin,
                       L);
        k4_requantize(y[i].scales, y[i].d, y[i].dmin, x, L, 31);
        q5_pack(&y[i], L);
    }
}

/* ===================================================================== */
/* Q6_K                                                                  */
/* ===================================================================== */

void qd_ref_to_float_q6_K(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = h2f(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * (float)sc[is + 0] * (float)q1;
                dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            dst += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* Quantize one Q6_K super-block; qw (256 weights) may be NULL. */
static void q6_block(const float *restrict x, qd_block_q6_K *restrict y,
                     const float *restrict qw)
{
    int8_t L[QK];
    float scales[QK / 16];
    float max_scale = 0, max_abs = 0;
    for (int ib = 0; ib < QK / 16; ib++) {
        float s = qd__fit_symmetric(16, 32, x + 16 * ib, L + 16 * ib,
                                qw ? qw + 16 * ib : NULL);
        scales[ib] = s;
        if (fabsf(s) > max_abs) {
            max_abs = fabsf(s);
            max_scale = s;
        }
    }
    if (max_abs < GROUP_EPS) {
        memset(y, 0, sizeof *y);
        y->d = f2h(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = f2h(1 / iscale);
    for (int ib = 0; ib < QK / 16; ib++)
        y->scales[ib] = (int8_t)imin(127, qd__nearest_int(iscale * scales[ib]));
    const float d0 = h2f(y->d);
    for (int j = 0; j < QK / 16; j++) {
        float d = d0 * (float)y->scales[j];
        if (d == 0)
            continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] =
                (int8_t)(iclamp(qd__nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < QK; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const int a = L[j + l], b = L[j + l + 32], c = L[j + l + 64],
                      e = L[j + l + 96];
            ql[l] = (uint8_t)((a & 0xF) | ((c & 0xF) << 4));
            ql[l + 32] = (uint8_t)((b & 0xF) | ((e & 0xF) << 4));
            qh[l] = (uint8_t)((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) |
                              ((e >> 4) << 6));
        }
    }
}

void qd_ref_from_float_q6_K(const float *restrict x, void *restrict dst,
                            int64_t n)
{
    qd_block_q6_K *y = dst;
    for (int64_t i = 0; i < n / QK; i++)
        q6_block(x + QK * i, &y[i], NULL);
}

/* ===================================================================== */
/* IQ4_XS                                                                */
/* ===================================================================== */

/* Index of the table value nearest to x (val sorted, n a power of two);
 * at an exact midpoint the larger value wins. x + x and val[j-1] + val[j]
 * are exact, so no rounding enters the comparison. */
static inline int nearest_index(int n, const int8_t *val, float x)
{
    const float x2 = x + x;
    int idx = 0;
    for (int step = n >> 1; step > 0; step >>= 1) {
        const int j = idx + step;
        if (x2 >= (float)(val[j - 1] + val[j]))
            idx = j;
    }
    return idx;
}

void qd_ref_to_float_iq4_xs(const void *restrict src, float *restrict dst,
                            int64_t n)
{
    const qd_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = h2f(b[i].d);
        const uint8_t *qs = b[i].qs;
        for (int ib = 0; ib < QK / 32; ib++, qs += 16, dst += 32) {
            const float dl = d * (float)qd__iq4xs_scale(b[i].scales_l, b[i].scales_h, ib);
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * (float)qd_kvalues_iq4nl[qs[j] & 0xF];
                dst[j + 16] = dl * (float)qd_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

/* One IQ4_XS super-block; qw (256 weights) may be NULL (weights x^2). */
static void iq4_xs_block(const float *restrict x, qd_block_iq4_xs *restrict y,
                         const float *restrict qw)
{
    const int ntry = 7;
    const int8_t *val = qd_kvalues_iq4nl;
    uint8_t L[QK];
    float scales[QK / 32], w[32];

    float sigma2 = 0;
    for (int j = 0; j < QK; j++)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / QK;

    memset(y->qs, 0, sizeof y->qs);
    y->d = f2h(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < QK / 32; ib++) {
        const float *xb = x + 32 * ib;
        uint8_t *Lb = L + 32 * ib;
        if (qw) {
            for (int j = 0; j < 32; j++)
                w[j] = qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < 32; j++)
                w[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < GROUP_EPS) {
            scales[ib] = 0;
            memset(Lb, 0, 32);
            continue;
        }
        float d = -max / (float)val[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            int l = nearest_index(16, val, id * xb[j]);
            Lb[j] = (uint8_t)l;
            float q = (float)val[l];
            sumqx += w[j] * q * xb[j];
            sumq2 += w[j] * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int t = -ntry; t <= ntry; t++) {
            id = (float)(t + val[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                int l = nearest_index(16, val, id * xb[j]);
                float q = (float)val[l];
                sumqx += w[j] * q * xb[j];
                sumq2 += w[j] * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }

    y->scales_h = 0;
    const float d = -max_scale / 32;
    y->d = f2h(d);
    const float id = d != 0 ? 1 / d : 0.f;
    for (int ib = 0; ib < QK / 32; ib++) {
        int l = iclamp(qd__nearest_int(id * scales[ib]), -32, 31);
        /* Requantized with the unrounded super-scale, as ggml does. */
        float dl = d * (float)l;
        float idl = dl != 0 ? 1 / dl : 0.f;
        for (int j = 0; j < 32; j++)
            L[32 * ib + j] =
                (uint8_t)nearest_index(16, val, idl * x[32 * ib + j]);
        l += 32;
        if (ib % 2 == 0)
            y->scales_l[ib / 2] = (uint8_t)(l & 0xF);
        else
            y->scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
        y->scales_h |= (uint16_t)((l >> 4) << (2 * ib));
    }
    for (int i = 0; i < QK / 32; i++)
        for (int j = 0; j < 16; j++)
            y->qs[16 * i + j] =
                (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void qd_ref_from_float_iq4_xs(const float *restrict x, void *restrict dst,
                              int64_t n)
{
    qd_block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / QK; i++)
        iq4_xs_block(x + QK * i, &y[i], NULL);
}

/* ===================================================================== */
/* quantize: whole rows, optional importance weights                     */
/* ===================================================================== */

size_t qd_ref_quantize_q2_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix)
{
    const size_t row_bytes = qd_row_size(QD_TYPE_Q2_K, n_per_row);
    if (!imatrix) {
        qd_ref_from_float_q2_K(src, dst, nrows * n_per_row);
    } else {
        for (int64_t r = 0; r < nrows; r++)
            q2_row_imatrix(
                src + r * n_per_row,
                (qd_block_q2_K *)((char *)dst + (size_t)r * row_bytes),
                n_per_row, imatrix);
    }
    return (size_t)nrows * row_bytes;
}

size_t qd_ref_quantize_q3_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix)
{
    const size_t row_bytes = qd_row_size(QD_TYPE_Q3_K, n_per_row);
    if (!imatrix) {
        qd_ref_from_float_q3_K(src, dst, nrows * n_per_row);
    } else {
        for (int64_t r = 0; r < nrows; r++)
            q3_row_imatrix(
                src + r * n_per_row,
                (qd_block_q3_K *)((char *)dst + (size_t)r * row_bytes),
                n_per_row, imatrix);
    }
    return (size_t)nrows * row_bytes;
}

size_t qd_ref_quantize_q4_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix)
{
    const size_t row_bytes = qd_row_size(QD_TYPE_Q4_K, n_per_row);
    if (!imatrix) {
        qd_ref_from_float_q4_K(src, dst, nrows * n_per_row);
    } else {
        for (int64_t r = 0; r < nrows; r++)
            q4_row_imatrix(
                src + r * n_per_row,
                (qd_block_q4_K *)((char *)dst + (size_t)r * row_bytes),
                n_per_row, imatrix);
    }
    return (size_t)nrows * row_bytes;
}

size_t qd_ref_quantize_q5_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix)
{
    const size_t row_bytes = qd_row_size(QD_TYPE_Q5_K, n_per_row);
    if (!imatrix) {
        qd_ref_from_float_q5_K(src, dst, nrows * n_per_row);
    } else {
        for (int64_t r = 0; r < nrows; r++)
            q5_row_imatrix(
                src + r * n_per_row,
                (qd_block_q5_K *)((char *)dst + (size_t)r * row_bytes),
                n_per_row, imatrix);
    }
    return (size_t)nrows * row_bytes;
}

size_t qd_ref_quantize_q6_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix)
{
    const size_t row_bytes = qd_row_size(QD_TYPE_Q6_K, n_per_row);
    const int64_t nb = n_per_row / QK;
    for (int64_t r = 0; r < nrows; r++) {
        qd_block_q6_K *y =
            (qd_block_q6_K *)((char *)dst + (size_t)r * row_bytes);
        for (int64_t i = 0; i < nb; i++)
            q6_block(src + r * n_per_row + QK * i, &y[i],
                     imatrix ? imatrix + QK * i : NULL);
    }
    return (size_t)nrows * row_bytes;
}

size_t qd_ref_quantize_iq4_xs(const float *restrict src, void *restrict dst,
                              int64_t nrows, int64_t n_per_row,
                              const float *imatrix)
{
    const size_t row_bytes = qd_row_size(QD_TYPE_IQ4_XS, n_per_row);
    const int64_t nb = n_per_row / QK;
    for (int64_t r = 0; r < nrows; r++) {
        qd_block_iq4_xs *y =
            (qd_block_iq4_xs *)((char *)dst + (size_t)r * row_bytes);
        for (int64_t i = 0; i < nb; i++)
            iq4_xs_block(src + r * n_per_row + QK * i, &y[i],
                         imatrix ? imatrix + QK * i : NULL);
    }
    return (size_t)nrows * row_bytes;
}

/* ===================================================================== */
/* vec_dot with Q8_K activations                                         */
/* ===================================================================== */
/*
 * Integer products are summed per sub-block and scaled in integers; the
 * float accumulation follows ggml's generic code: for Q3_K … Q6_K eight
 * float lanes (value index mod 8) accumulate d * lane_sum per super-block,
 * the min correction goes to a separate running sum, and the lanes are
 * added to it at the end.
 */

static float lanes_total(float start, const float *lanes)
{
    float s = start;
    for (int l = 0; l < 8; l++)
        s += lanes[l];
    return s;
}

void qd_ref_vec_dot_q2_K(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q2_K *x = vx;
    const qd_block_q8_K *y = vy;
    float sumf = 0;
    for (int i = 0; i < n / QK; i++) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int summs = 0;
        for (int j = 0; j < 16; j++)
            summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * h2f(x[i].d);
        const float dmin = y[i].d * h2f(x[i].dmin);
        int isum = 0, is = 0;
        for (int half = 0; half < 2; half++, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                for (int k = 0; k < 2; k++) {
                    int d = sc[is++] & 0xF, part = 0;
                    for (int l = 16 * k; l < 16 * k + 16; l++)
                        part += q8[l] * ((q2[l] >> shift) & 3);
                    isum += d * part;
                }
            }
        }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    *s = sumf;
}

void qd_ref_vec_dot_q3_K(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q3_K *x = vx;
    const qd_block_q8_K *y = vy;
    float lanes[8] = {0};
    for (int i = 0; i < n / QK; i++) {
        int32_t acc[8] = {0};
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        int p = 0; /* value index */
        uint8_t m = 1;
        for (int half = 0; half < 2; half++, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int l = 0; l < 32; l++, p++) {
                    int q = ((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                    int sc = qd__q3k_scale(x[i].scales, p / 16);
                    acc[p & 7] += sc * (q * y[i].qs[p]);
                }
            }
        }
        const float d = h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            lanes[l] += d * (float)acc[l];
    }
    *s = lanes_total(0, lanes);
}

/* One Q4_K/Q5_K super-block against Q8_K: per-lane integer sums into acc
 * and the bsums·mins correction into *sumi. qh is NULL for Q4_K. */
static void k4_block_dot(const uint8_t *restrict q4, const uint8_t *restrict qh,
                         const uint8_t *restrict packed,
                         const qd_block_q8_K *restrict y, int32_t acc[8],
                         int *sumi)
{
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++)
        unpack_scale_min(j, packed, &sc[j], &mn[j]);
    int sm = 0;
    for (int j = 0; j < QK / 16; j++)
        sm += y->bsums[j] * mn[j / 2];
    *sumi = sm;
    for (int p = 0; p < QK; p++) {
        /* 64 values per 32 bytes: low nibbles first, then high. */
        const int byte = 32 * (p / 64) + p % 32;
        int q = (p / 32) & 1 ? q4[byte] >> 4 : q4[byte] & 0xF;
        if (qh && (qh[p % 32] & (1u << (p / 32))))
            q += 16;
        acc[p & 7] += sc[p / 32] * (q * y->qs[p]);
    }
}

void qd_ref_vec_dot_q4_K(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q4_K *x = vx;
    const qd_block_q8_K *y = vy;
    float lanes[8] = {0}, sumf = 0;
    for (int i = 0; i < n / QK; i++) {
        int32_t acc[8] = {0};
        int sumi;
        k4_block_dot(x[i].qs, NULL, x[i].scales, &y[i], acc, &sumi);
        const float d = h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            lanes[l] += d * (float)acc[l];
        sumf -= h2f(x[i].dmin) * y[i].d * (float)sumi;
    }
    *s = lanes_total(sumf, lanes);
}

void qd_ref_vec_dot_q5_K(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q5_K *x = vx;
    const qd_block_q8_K *y = vy;
    float lanes[8] = {0}, sumf = 0;
    for (int i = 0; i < n / QK; i++) {
        int32_t acc[8] = {0};
        int sumi;
        k4_block_dot(x[i].qs, x[i].qh, x[i].scales, &y[i], acc, &sumi);
        const float d = h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            lanes[l] += d * (float)acc[l];
        sumf -= h2f(x[i].dmin) * y[i].d * (float)sumi;
    }
    *s = lanes_total(sumf, lanes);
}

void qd_ref_vec_dot_q6_K(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q6_K *x = vx;
    const qd_block_q8_K *y = vy;
    float lanes[8] = {0};
    for (int i = 0; i < n / QK; i++) {
        int32_t acc[8] = {0};
        for (int p = 0; p < QK; p++) {
            const int h = p / 128, r = p % 128, l = r % 32, part = r / 32;
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            int lo = part & 1 ? ql[l + 32] : ql[l];
            lo = part >= 2 ? lo >> 4 : lo & 0xF;
            int q = (lo | (((qh[l] >> (2 * part)) & 3) << 4)) - 32;
            acc[p & 7] += x[i].scales[p / 16] * (q * y[i].qs[p]);
        }
        const float d = h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            lanes[l] += d * (float)acc[l];
    }
    *s = lanes_total(0, lanes);
}

void qd_ref_vec_dot_iq4_xs(int n, float *restrict s, const void *restrict vx,
                           const void *restrict vy)
{
    const qd_block_iq4_xs *x = vx;
    const qd_block_q8_K *y = vy;
    float sumf = 0;
    for (int i = 0; i < n / QK; i++) {
        const float d4d8 = h2f(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        for (int ib = 0; ib < QK / 32; ib++, qs += 16, q8 += 32) {
            const float dl = d4d8 * (float)qd__iq4xs_scale(x[i].scales_l, x[i].scales_h, ib);
            int s1 = 0, s2 = 0;
            for (int j = 0; j < 16; j++) {
                s1 += q8[j] * qd_kvalues_iq4nl[qs[j] & 0xF];
                s2 += q8[j + 16] * qd_kvalues_iq4nl[qs[j] >> 4];
            }
            sumf += dl * (float)(s1 + s2);
        }
    }
    *s = sumf;
}
