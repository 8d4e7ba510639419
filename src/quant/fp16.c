/*
 * fp16.c — IEEE half and bfloat16 conversions (scalar, exact).
 *
 * fp32 → fp16 rounds to nearest even with overflow to infinity and correct
 * subnormals, matching the hardware conversion (F16C) that ggml uses, so
 * block scales written here equal llama.cpp's bit for bit.
 */
#include <string.h>

#include "quantd/quant.h"

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float qd_fp16_to_fp32(qd_fp16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

qd_fp16_t qd_fp32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t mant = x & 0x7fffff;
    if (exp == 0xff) /* inf or nan (keep nan quiet) */
        return (qd_fp16_t)(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f)
        return (qd_fp16_t)(sign | 0x7c00);
    if (e <= 0) {
        /* subnormal or zero in half precision */
        if (e < -10)
            return (qd_fp16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (qd_fp16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++; /* may carry into the exponent, up to infinity: correct */
    return (qd_fp16_t)(sign | half);
}

float qd_bf16_to_fp32(qd_bf16_t h) { return bits_f32((uint32_t)h << 16); }

qd_bf16_t qd_fp32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) /* nan: force quiet */
        return (qd_bf16_t)((u >> 16) | 64);
    return (qd_bf16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}
