/*
 * ref_q4g.c — reference functions of Q4_G128, quantd's private format for
 * asymmetric 4-bit weights in groups of 128 (AWQ/GPTQ group-128
 * checkpoints, repacked by convert/hf_import.c without requantizing).
 *
 * Block (quantd/quant.h, 68 bytes for 128 values): fp16 d, fp16 m, 64
 * bytes of nibbles; byte j holds q_j (low nibble) and q_{j+64} (high);
 * value_i = d*q_i + m. Against Q8_1 activations (32-value blocks with d_a
 * and s_a = d_a*sum(a)):
 *     dot = sum over the 4 activation blocks b of
 *           d*d_a_b*sum_b(q*a) + m*s_a_b
 * exactly Q4_1's formula with 4 activation blocks per weight block, so the
 * import's Q4_G128 rows give Q4_1's results up to float order.
 */
#include <math.h>
#include <string.h>

#include "quant/ref.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline float h2f(qd_fp16_t h) { return qd_fp16_to_fp32(h); }

/* Value i (0..127) of a block. */
static inline int nib(const qd_block_q4_g128 *b, int i)
{
    return i < 64 ? b->qs[i] & 0x0f : b->qs[i - 64] >> 4;
}

void qd__to_float_q4_g128(const void *restrict src, float *restrict dst,
                          int64_t n)
{
    const qd_block_q4_g128 *b = src;
    for (int64_t i = 0; i < n / QD_QK4_G128; i++, b++) {
        float d = h2f(b->d), m = h2f(b->m);
        for (int j = 0; j < QD_QK4_G128; j++)
            dst[i * QD_QK4_G128 + j] = (float)nib(b, j) * d + m;
    }
}

void qd__from_float_q4_g128(const float *restrict src, void *restrict dst,
                            int64_t n)
{
    qd_block_q4_g128 *b = dst;
    for (int64_t i = 0; i < n / QD_QK4_G128; i++, b++) {
        const float *x = src + i * QD_QK4_G128;
        float lo = x[0], hi = x[0];
        for (int j = 1; j < QD_QK4_G128; j++) {
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        float d = (hi - lo) / 15.0f;
        b->d = qd_fp32_to_fp16(d);
        b->m = qd_fp32_to_fp16(lo);
        /* round against the stored (fp16) scale and min */
        float ds = h2f(b->d), ms = h2f(b->m);
        float id = ds != 0.0f ? 1.0f / ds : 0.0f;
        memset(b->qs, 0, sizeof b->qs);
        for (int j = 0; j < QD_QK4_G128; j++) {
            float q = roundf((x[j] - ms) * id);
            int qi = !(q > 0.0f) ? 0 : q > 15.0f ? 15 : (int)q;
            b->qs[j % 64] |= (uint8_t)(qi << (j < 64 ? 0 : 4));
        }
    }
}

void qd__vec_dot_q4_g128(int n, float *restrict s, const void *restrict vx,
                         const void *restrict vy)
{
    const qd_block_q4_g128 *x = vx;
    const qd_block_q8_1 *y = vy;
    float sumf = 0;
    for (int ib = 0; ib < n / QD_QK4_G128; ib++) {
        float d = h2f(x[ib].d), m = h2f(x[ib].m);
        for (int k = 0; k < 4; k++) {
            const qd_block_q8_1 *a = &y[4 * ib + k];
            int sumi = 0;
            for (int j = 0; j < 32; j++)
                sumi += nib(&x[ib], 32 * k + j) * a->qs[j];
            sumf += (d * h2f(a->d)) * (float)sumi + m * h2f(a->s);
        }
    }
    *s = sumf;
}
