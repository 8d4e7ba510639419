/*
 * ref_float.c — reference functions of the unquantized types F32, F16 and
 * BF16: conversion from and to float, "quantization" of whole rows (a plain
 * conversion, as ggml_quantize_chunk does for these types) and dot products.
 *
 * The dot products follow ggml's scalar fallback (ggml_vec_dot_f32/f16/bf16):
 * each product is formed in float from the widened operands and the products
 * are accumulated in double, then rounded once to float. SIMD kernels that
 * accumulate in float lanes are tested against these with a tolerance.
 */
#include <string.h>

#include "quant/ref.h"

/* Bit-exactness needs every product rounded on its own: no fused
 * multiply-add, whatever -std/-march the file is built with. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- F32 ---------------------------------------------------------------- */

void qd__to_float_f32(const void *restrict src, float *restrict dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void qd__from_float_f32(const float *restrict src, void *restrict dst,
                        int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

size_t qd__quantize_f32(const float *restrict src, void *restrict dst,
                        int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    size_t bytes = (size_t)(nrows * n_per_row) * sizeof(float);
    memcpy(dst, src, bytes);
    return bytes;
}

void qd__vec_dot_f32(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const float *x = vx, *y = vy;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

/* ---- F16 ---------------------------------------------------------------- */

void qd__to_float_f16(const void *restrict src, float *restrict dst, int64_t n)
{
    const qd_fp16_t *x = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = qd_fp16_to_fp32(x[i]);
}

void qd__from_float_f16(const float *restrict src, void *restrict dst,
                        int64_t n)
{
    qd_fp16_t *y = dst;
    for (int64_t i = 0; i < n; i++)
        y[i] = qd_fp32_to_fp16(src[i]);
}

size_t qd__quantize_f16(const float *restrict src, void *restrict dst,
                        int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    qd__from_float_f16(src, dst, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(qd_fp16_t);
}

void qd__vec_dot_f16(int n, float *restrict s, const void *restrict vx,
                     const void *restrict vy)
{
    const qd_fp16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(qd_fp16_to_fp32(x[i]) * qd_fp16_to_fp32(y[i]));
    *s = (float)sum;
}

/* ---- BF16 --------------------------------------------------------------- */

void qd__to_float_bf16(const void *restrict src, float *restrict dst,
                       int64_t n)
{
    const qd_bf16_t *x = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = qd_bf16_to_fp32(x[i]);
}

void qd__from_float_bf16(const float *restrict src, void *restrict dst,
                         int64_t n)
{
    qd_bf16_t *y = dst;
    for (int64_t i = 0; i < n; i++)
        y[i] = qd_fp32_to_bf16(src[i]);
}

size_t qd__quantize_bf16(const float *restrict src, void *restrict dst,
                         int64_t nrows, int64_t n_per_row,
                         const float *imatrix)
{
    (void)imatrix;
    qd__from_float_bf16(src, dst, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(qd_bf16_t);
}

void qd__vec_dot_bf16(int n, float *restrict s, const void *restrict vx,
                      const void *restrict vy)
{
    const qd_bf16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(qd_bf16_to_fp32(x[i]) * qd_bf16_to_fp32(y[i]));
    *s = (float)sum;
}
