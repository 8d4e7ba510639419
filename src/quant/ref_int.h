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
