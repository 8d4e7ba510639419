/*
 * ref_legacy.c — reference implementations of the "legacy" 32-value block
 * formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and the non-linear IQ4_NL.
 *
 * These functions define the formats for quantd and are bit-compatible with
 * ggml (ggml-quants.c and the scalar kernels of ggml-cpu/quants.c): the same
 * float operations in the same order, the same rounding (truncation after
 * adding 0.5 or 8.5, roundf, the 1.5*2^23 nearest-int trick), so that a
 * tensor quantized here equals the one llama-quantize writes byte for byte
 * and a dot product equals ggml's generic kernel bit for bit.
 *
 * Layouts (all little-endian, fp16 scales; value index j within a block):
 *   Q4_0   d, qs[16]: q = nibble - 8; value = q*d. Nibble j in the low half
 *          of qs[j] for j < 16, in the high half of qs[j-16] otherwise.
 *   Q4_1   d, m, qs[16]: value = q*d + m, q in 0..15.
 *   Q5_0   d, qh[4], qs[16]: bit j of the 32-bit qh is bit 4 of q;
 *          value = (q - 16)*d.
 *   Q5_1   d, m, qh[4], qs[16]: value = q*d + m, q in 0..31.
 *   Q8_0   d, qs[32] int8: value = q*d.
 *   Q8_1   d, s, qs[32]: value = q*d; s = d * sum(q) (for the Q4_1/Q5_1 min).
 *   IQ4_NL d, qs[16] as Q4_0, value = kvalues_iq4nl[nibble]*d.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/ref.h"
#include "quant/ref_int.h"

/* Bit-exactness needs every product rounded on its own: no fused
 * multiply-add, whatever -std/-march the file is built with. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define GROUP_MAX_EPS 1e-15f


static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/*
 * ggml converts float to int8_t/uint8_t with a plain C cast, which on x86
 * truncates to a 32-bit integer (0x80000000 when out of range or NaN) and
 * keeps the low byte. Out-of-range values only arise from degenerate scales
 * (1/d overflowing); doing the same here keeps those blocks identical and
 * avoids undefined behaviour.
 */
static inline int trunc_i32(float f)
{
    if (!(f > -2147483648.0f && f < 2147483648.0f))
        return INT32_MIN;
    return (int)f;
}
static inline int8_t cast_i8(float f)
{
    return (int8_t)(uint8_t)(trunc_i32(f) & 0xff);
}
static inline uint8_t cast_u8(float f)
{
    return (uint8_t)(trunc_i32(f) & 0xff);
}

/* Round to nearest (ties to even) by the 1.5*2^23 trick; |f| <= 4194303. */
static inline int nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float h2f(qd_fp16_t h) { return qd_fp16_to_fp32(h); }
static inline qd_fp16_t f2h(float f) { return qd_fp32_to_fp16(f); }

/* ---- dequantization ----------------------------------------------------- */

void qd__to_float_q4_0(const void *restrict src, float *restrict y, int64_t n)
{
    const qd_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QD_QK4_0; i++) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[i * 32 + j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[i * 32 + j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void qd__to_float_q4_1(const void *restrict src, float *restrict y, int64_t n)
{
    const qd_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QD_QK4_1; i++) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < 16; j++) {
            float v0 = (float)(x[i].qs[j] & 0x0f) * d;
            float v1 = (float)(x[i].qs[j] >> 4) * d;
            y[i * 32 + j] = v0 + m;
            y[i * 32 + j + 16] = v1 + m;
        }
    }
}

static inline uint32_t load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

static inline void store_qh(uint8_t qh[4], uint32_t v)
{
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(v >> (8 * k));
}

void qd__to_float_q5_0(const void *restrict src, float *restrict y, int64_t n)
{
    const qd_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QD_QK5_0; i++) {
        const float d = h2f(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[i * 32 + j] = (float)(((x[i].qs[j] & 0x0f) | h0) - 16) * d;
            y[i * 32 + j + 16] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void qd__to_float_q5_1(const void *restrict src, float *restrict y, int64_t n)
{
    const qd_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QD_QK5_1; i++) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            float v0 = (float)((x[i].qs[j] & 0x0f) | h0) * d;
            float v1 = (float)((x[i].qs[j] >> 4) | h1) * d;
            y[i * 32 + j] = v0 + m;
            y[i * 32 + j + 16] = v1 + m;
        }
    }
}

void qd__to_float_q8_0(const void *restrict src, float *restrict y, int64_t n)
{
    const qd_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QD_QK8_0; i++) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 32; j++)
            y[i * 32 + j] = (float)x[i].qs[j] * d;
    }
}

void qd__to_float_q8_1(const void *restrict src, float *restrict y, int64_t n)
{
    const qd_block_q8_1 *x = src;
    for (int64_t i = 0; i < n / QD_QK8_1; i++) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 32; j++)
            y[i * 32 + j] = (float)x[i].qs[j] * d;
    }
}

void qd__to_float_iq4_nl(const void *restrict src, float *restrict y,
                         int64_t n)
{
    const qd_block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / QD_QK4_NL; i++) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[i * 32 + j] = (float)qd_kvalues_iq4nl[x[i].qs[j] & 0x0f] * d;
            y[i * 32 + j + 16] = (float)qd_kvalues_iq4nl[x[i].qs[j] >> 4] * d;
        }
    }
}

/* ---- reference quantization (ggml's quantize_row_<t>_ref) ------------- */

/* Signed value of largest magnitude (the first one on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *min_out, float *max_out)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

void qd__from_float_q4_0(const float *restrict x, void *restrict dst,
                         int64_t n)
{
    qd_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QD_QK4_0; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < 16; j++) {
            uint8_t q0 = (uint8_t)imin(15, cast_i8(x[j] * id + 8.5f));
            uint8_t q1 = (uint8_t)imin(15, cast_i8(x[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void qd__from_float_q4_1(const float *restrict x, void *restrict dst,
                         int64_t n)
{
    qd_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QD_QK4_1; i++, x += 32) {
        float min, max;
        min_max(x, 32, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(min);
        for (int j = 0; j < 16; j++) {
            uint8_t q0 = (uint8_t)imin(15, cast_i8((x[j] - min) * id + 0.5f));
            uint8_t q1 =
                (uint8_t)imin(15, cast_i8((x[j + 16] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Pack 32 five-bit values (in 0..31) into qs/qh. */
static void pack_q5(const uint8_t *q, uint8_t qs[16], uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4);
        h |= (uint32_t)((q[j] & 0x10u) >> 4) << j;
        h |= (uint32_t)((q[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    store_qh(qh, h);
}

void qd__from_float_q5_0(const float *restrict x, void *restrict dst,
                         int64_t n)
{
    qd_block_q5_0 *y = dst;
    uint8_t q[32];
    for (int64_t i = 0; i < n / QD_QK5_0; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < 32; j++)
            q[j] = (uint8_t)imin(31, cast_i8(x[j] * id + 16.5f));
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

void qd__from_float_q5_1(const float *restrict x, void *restrict dst,
                         int64_t n)
{
    qd_block_q5_1 *y = dst;
    uint8_t q[32];
    for (int64_t i = 0; i < n / QD_QK5_1; i++, x += 32) {
        float min, max;
        min_max(x, 32, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(min);
        for (int j = 0; j < 32; j++)
            q[j] = cast_u8((x[j] - min) * id + 0.5f);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Scale of a Q8 block: absmax/127, and its inverse (0 for an all-zero
 * block). */
static float q8_scale(const float *x, float *id)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float a = fabsf(x[j]);
        amax = amax > a ? amax : a;
    }
    const float d = amax / 127;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

void qd__from_float_q8_0(const float *restrict x, void *restrict dst,
                         int64_t n)
{
    qd_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QD_QK8_0; i++, x += 32) {
        float id;
        const float d = q8_scale(x, &id);
        y[i].d = f2h(d);
        for (int j = 0; j < 32; j++)
            y[i].qs[j] = cast_i8(roundf(x[j] * id));
    }
}

void qd__from_float_q8_1(const float *restrict x, void *restrict dst,
                         int64_t n)
{
    qd_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QD_QK8_1; i++, x += 32) {
        float id;
        const float d = q8_scale(x, &id);
        int sum = 0;
        y[i].d = f2h(d);
        for (int j = 0; j < 32; j++) {
            y[i].qs[j] = cast_i8(roundf(x[j] * id));
            sum += y[i].qs[j];
        }
        y[i].s = f2h((float)sum * d);
    }
}

/* ---- IQ4_NL ------------------------------------------------------------- */

/*
 * Index of the table value nearest to x in the sorted 16-entry table; on a
 * tie (x exactly halfway) the upper one. Comparing 2x with the sum of two
 * neighbours keeps the decision exact.
 */
static inline int best_index_iq4nl(float x)
{
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int j = idx + step;
        if (x2 >= (float)(qd_kvalues_iq4nl[j - 1] + qd_kvalues_iq4nl[j]))
            idx = j;
    }
    return idx;
}

/*
 * One IQ4_NL block of 32 values (ggml's quantize_row_iq4_nl_impl with
 * super-block = block = 32). qw: 32 importance weights or NULL (then x^2).
 * ntry > 0: search 2*ntry+1 scales around the first guess, then
 * requantize with the chosen scale (what llama-quantize does); ntry <= 0:
 * only the least-squares scale of the first guess (quantize_row_iq4_nl_ref).
 */
static void iq4_nl_block(const float *x, qd_block_iq4_nl *y, const float *qw,
                         int ntry)
{
    float weight[32];
    uint8_t L[32];

    float sigma2 = 0;
    for (int j = 0; j < 32; j++)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / 32;

    memset(y->qs, 0, sizeof y->qs);
    y->d = f2h(0.f);

    for (int j = 0; j < 32; j++)
        weight[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : x[j] * x[j];

    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    float scale;
    if (amax < GROUP_MAX_EPS) {
        scale = 0;
        memset(L, 0, sizeof L);
    } else {
        const float v0 = (float)qd_kvalues_iq4nl[0];
        float d = ntry > 0 ? -max / v0 : max / v0;
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            int l = best_index_iq4nl(id * x[j]);
            L[j] = (uint8_t)l;
            float q = (float)qd_kvalues_iq4nl[l];
            float w = weight[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (float)(itry + qd_kvalues_iq4nl[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                int l = best_index_iq4nl(id * x[j]);
                float q = (float)qd_kvalues_iq4nl[l];
                float w = weight[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scale = d;
    }

    y->d = f2h(scale);
    if (ntry > 0) {
        float id = scale != 0.0f ? 1 / scale : 0;
        for (int j = 0; j < 32; j++)
            L[j] = (uint8_t)best_index_iq4nl(id * x[j]);
    }
    for (int j = 0; j < 16; j++)
        y->qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

void qd__from_float_iq4_nl(const float *restrict x, void *restrict dst,
                           int64_t n)
{
    qd_block_iq4_nl *y = dst;
    for (int64_t i = 0; i < n / QD_QK4_NL; i++)
        iq4_nl_block(x + 32 * i, &y[i], NULL, -1);
}

size_t qd__quantize_iq4_nl(const float *restrict src, void *restrict dst,
                           int64_t nrows, int64_t n_per_row,
                           const float *imatrix)
{
    const int64_t nb = n_per_row / QD_QK4_NL;
    qd_block_iq4_nl *y = dst;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *qw = imatrix ? imatrix + 32 * ib : NULL;
            iq4_nl_block(src + r * n_per_row + 32 * ib, &y[r * nb + ib], qw,
                         7);
        }
    }
    return (size_t)(nrows * nb) * sizeof(qd_block_iq4_nl);
}

/* ---- importance-weighted quantization (imatrix) ---------------------- */



/* Per-row weights for the imatrix searches: qw[j] * sqrt(sigma2 + x[j]^2),
 * sigma2 the mean square of the whole row. */
static float row_sigma2(const float *x, int64_t n)
{
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; j++)
        sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

static void block_weights(const float *x, const float *qw, float sigma2,
                          float *w)
{
    for (int j = 0; j < 32; j++)
        w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

static void q4_0_row_w(const float *x, qd_block_q4_0 *y, int64_t n,
                       const float *qw)
{
    float w[32];
    int8_t L[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, w);
        y[ib].d = f2h(qd__fit_symmetric(32, 8, xb, L, w));
        for (int j = 0; j < 16; j++)
            y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

static void q4_1_row_w(const float *x, qd_block_q4_1 *y, int64_t n,
                       const float *qw)
{
    float w[32], min;
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, w);
        float d = qd__fit_affine(32, 15, xb, w, L, &min, Laux, -0.9f, 0.05f,
                                 36, 0, 0);
        y[ib].d = f2h(d);
        y[ib].m = f2h(-min);
        for (int j = 0; j < 16; j++)
            y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

static void q5_0_row_w(const float *x, qd_block_q5_0 *y, int64_t n,
                       const float *qw)
{
    float w[32];
    int8_t L[32];
    uint8_t q[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, w);
        y[ib].d = f2h(qd__fit_symmetric(32, 16, xb, L, w));
        for (int j = 0; j < 32; j++)
            q[j] = (uint8_t)L[j];
        pack_q5(q, y[ib].qs, y[ib].qh);
    }
}

static void q5_1_row_w(const float *x, qd_block_q5_1 *y, int64_t n,
                       const float *qw)
{
    float w[32], min;
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, w);
        float d = qd__fit_affine(32, 31, xb, w, L, &min, Laux, -0.9f, 0.05f,
                                 36, 0, 0);
        y[ib].d = f2h(d);
        y[ib].m = f2h(-min);
        pack_q5(L, y[ib].qs, y[ib].qh);
    }
}

/* ---- whole-row quantization (ggml_quantize_chunk) ----------------------- */

#define DEFINE_QUANTIZE(t, block_t, row_w)                                     \
    size_t qd__quantize_##t(const float *restrict src, void *restrict dst,     \
                            int64_t nrows, int64_t n_per_row,                  \
                            const float *imatrix)                              \
    {                                                                          \
        const int64_t nb = n_per_row / 32;                                     \
        block_t *y = dst;                                                      \
        if (!imatrix)                                                          \
            qd__from_float_##t(src, dst, nrows * n_per_row);                   \
        else                                                                   \
            for (int64_t r = 0; r < nrows; r++)                                \
                row_w(src + r * n_per_row, y + r * nb, n_per_row, imatrix);    \
        return (size_t)(nrows * nb) * sizeof(block_t);                         \
    }

DEFINE_QUANTIZE(q4_0, qd_block_q4_0, q4_0_row_w)
DEFINE_QUANTIZE(q4_1, qd_block_q4_1, q4_1_row_w)
DEFINE_QUANTIZE(q5_0, qd_block_q5_0, q5_0_row_w)
DEFINE_QUANTIZE(q5_1, qd_block_q5_1, q5_1_row_w)

/* Q8_0 and Q8_1 ignore importance weights, as ggml does. */
size_t qd__quantize_q8_0(const float *restrict src, void *restrict dst,
                         int64_t nrows, int64_t n_per_row,
                         const float *imatrix)
{
    (void)imatrix;
    qd__from_float_q8_0(src, dst, nrows * n_per_row);
    return (size_t)(nrows * (n_per_row / 32)) * sizeof(qd_block_q8_0);
}

size_t qd__quantize_q8_1(const float *restrict src, void *restrict dst,
                         int64_t nrows, int64_t n_per_row,
                         const float *imatrix)
{
    (void)imatrix;
    qd__from_float_q8_1(src, dst, nrows * n_per_row);
    return (size_t)(nrows * (n_per_row / 32)) * sizeof(qd_block_q8_1);
}

/* ---- dot products (ggml's generic scalar kernels) ----------------------- */

void qd__vec_dot_q4_0(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_block_q4_0 *x = vx;
    const qd_block_q8_0 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < 16; j++) {
            sumi0 += ((x[ib].qs[j] & 0x0f) - 8) * y[ib].qs[j];
            sumi1 += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + 16];
        }
        sumf += (float)(sumi0 + sumi1) * h2f(x[ib].d) * h2f(y[ib].d);
    }
    *s = sumf;
}

void qd__vec_dot_q4_1(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_block_q4_1 *x = vx;
    const qd_block_q8_1 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < 16; j++) {
            sumi0 += (x[ib].qs[j] & 0x0f) * y[ib].qs[j];
            sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + 16];
        }
        float a = (h2f(x[ib].d) * h2f(y[ib].d)) * (float)(sumi0 + sumi1);
        float b = h2f(x[ib].m) * h2f(y[ib].s);
        sumf += a + b;
    }
    *s = sumf;
}

void qd__vec_dot_q5_0(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_block_q5_0 *x = vx;
    const qd_block_q8_0 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        const uint32_t qh = load_qh(x[ib].qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi0 += (((x[ib].qs[j] & 0x0f) | h0) - 16) * y[ib].qs[j];
            sumi1 += (((x[ib].qs[j] >> 4) | h1) - 16) * y[ib].qs[j + 16];
        }
        sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * (float)(sumi0 + sumi1);
    }
    *s = sumf;
}

void qd__vec_dot_q5_1(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_block_q5_1 *x = vx;
    const qd_block_q8_1 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        const uint32_t qh = load_qh(x[ib].qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi0 += ((x[ib].qs[j] & 0x0f) | h0) * y[ib].qs[j];
            sumi1 += ((x[ib].qs[j] >> 4) | h1) * y[ib].qs[j + 16];
        }
        float a = (h2f(x[ib].d) * h2f(y[ib].d)) * (float)(sumi0 + sumi1);
        float b = h2f(x[ib].m) * h2f(y[ib].s);
        sumf += a + b;
    }
    *s = sumf;
}

void qd__vec_dot_q8_0(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_block_q8_0 *x = vx;
    const qd_block_q8_0 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++)
            sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += (float)sumi * (h2f(x[ib].d) * h2f(y[ib].d));
    }
    *s = sumf;
}

/* Q8_1 · Q8_1 (ggml has no such kernel; defined like Q8_0 · Q8_0). */
void qd__vec_dot_q8_1(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_block_q8_1 *x = vx;
    const qd_block_q8_1 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++)
            sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += (float)sumi * (h2f(x[ib].d) * h2f(y[ib].d));
    }
    *s = sumf;
}

void qd__vec_dot_iq4_nl(int n, float *restrict s, const void *restrict vx,
                        const void *restrict vy)
{
    const qd_block_iq4_nl *x = vx;
    const qd_block_q8_0 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / 32; ib++) {
        const float d = h2f(y[ib].d) * h2f(x[ib].d);
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < 16; j++) {
            sumi1 += y[ib].qs[j] * qd_kvalues_iq4nl[x[ib].qs[j] & 0x0f];
            sumi2 += y[ib].qs[j + 16] * qd_kvalues_iq4nl[x[ib].qs[j] >> 4];
        }
        sumf += d * (float)(sumi1 + sumi2);
    }
    *s = sumf;
}
