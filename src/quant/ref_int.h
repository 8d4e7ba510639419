/*
 * ref_int.h — helpers shared by the reference format implementations
 * (quant/ref_*.c): ggml's rounding trick, the IQ4_NL table and the scale
 * fitters that several formats' quantizers search with.
 */
#ifndef QUANTD_QUANT_REF_INT_H
#define QUANTD_QUANT_REF_INT_H

#include <stdint.h>
#include <string.h>

/* Groups whose largest magnitude is below this quantize to zero. */
#define QD_GROUP_EPS 1e-15f

/* The 16 non-linear levels of IQ4_NL and IQ4_XS. */
extern const int8_t qd_kvalues_iq4nl[16];

/* Q3_K's scale j (0..15) less 32: its low 4 bits in byte j (j < 8, low
 * nibble) or j - 8 (high nibble), its high 2 bits at bits 2(j/4) of byte
 * 8 + j%4 of the 12 scale bytes s. */
static inline int qd__q3k_scale(const uint8_t *s, int j)
{
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* IQ4_XS's scale of 32-value block ib (0..7) less 32: 4 bits of
 * scales_l[ib/2], 2 of scales_h. */
static inline int qd__iq4xs_scale(const uint8_t *scales_l, uint16_t scales_h, int ib)
{
    return (((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4)) -
           32;
}

/* Round to nearest, ties to even, by adding 1.5 * 2^23: the sum's low
 * mantissa bits are then the integer offset by 2^22. Exact for
 * |v| < 2^22; larger inputs give the same (meaningless) value ggml gets,
 * which callers clamp. */
static inline int qd__nearest_int(float v)
{
    float t = v + 12582912.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (int)(bits & 0x007fffffu) - 0x00400000;
}

static inline int qd__iclamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Symmetric least-squares fit (ggml's make_qx_quants, rmse_type 1). */
float qd__fit_symmetric(int n, int nmax, const float *restrict x,
                        int8_t *restrict L, const float *restrict weights);
/* Affine fit x ≈ s*L + m (ggml's make_qkx2_quants when reference = 1,
 * make_qkx3_quants when reference = 0). */
float qd__fit_affine(int n, int nmax, const float *restrict x,
                     const float *restrict weights, uint8_t *restrict L,
                     float *restrict the_min, uint8_t *restrict Laux,
                     float rmin, float rdelta, int nstep, int use_mad,
                     int reference);

#endif
