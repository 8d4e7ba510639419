/*
 * ref.h — plain-C reference implementations of every tensor format
 * (quant/ref_*.c). These define the formats; SIMD kernels are tested
 * against them. Names follow <op>_<type>: to_float (dequantize),
 * from_float (reference quantization, bit-exact with ggml's _ref),
 * quantize (whole rows, optional importance weights, like
 * ggml_quantize_chunk) and vec_dot (weight row · activation row).
 */
#ifndef QUANTD_QUANT_REF_H
#define QUANTD_QUANT_REF_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/quant.h"

/* ---- float and legacy formats (ref_float.c, ref_legacy.c) -------------
 * F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL. Signatures
 * are those of the traits table (quantd/quant.h). vec_dot_<t> reads a row
 * of t and a row of its vec_dot_type (Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1
 * for Q4_1/Q5_1/Q8_1, the same type for F32/F16/BF16). */
#define QD__REF_DECLARE(t)                                                     \
    void qd__to_float_##t(const void *restrict src, float *restrict dst,       \
                          int64_t n);                                          \
    void qd__from_float_##t(const float *restrict src, void *restrict dst,     \
                            int64_t n);                                        \
    size_t qd__quantize_##t(const float *restrict src, void *restrict dst,     \
                            int64_t nrows, int64_t n_per_row,                  \
                            const float *imatrix);                             \
    void qd__vec_dot_##t(int n, float *restrict s, const void *restrict x,     \
                         const void *restrict y);

QD__REF_DECLARE(f32)
QD__REF_DECLARE(f16)
QD__REF_DECLARE(bf16)
QD__REF_DECLARE(q4_0)
QD__REF_DECLARE(q4_1)
QD__REF_DECLARE(q5_0)
QD__REF_DECLARE(q5_1)
QD__REF_DECLARE(q8_0)
QD__REF_DECLARE(q8_1)
QD__REF_DECLARE(iq4_nl)

/* ---- Q4_G128 (ref_q4g.c), quantd-private ------------------------------
 * to_float / vec_dot (y: Q8_1) define the format; from_float is a plain
 * min/max fit per 128 values (for tests and benchmarks: imported weights
 * come repacked, never quantized by us). n a multiple of 128. */
void qd__to_float_q4_g128(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd__from_float_q4_g128(const float *restrict src, void *restrict dst,
                            int64_t n);
void qd__vec_dot_q4_g128(int n, float *restrict s, const void *restrict x,
                         const void *restrict y);
/* ---- end float and legacy formats ------------------------------------- */

/* ---- K-quants, Q8_K and IQ4_XS (ref_kquants.c) ------------------------
 * Types qd_to_float_fn, qd_from_float_fn, qd_quantize_fn, qd_vec_dot_fn of
 * quant.h. n and n_per_row are multiples of 256. quantize with imatrix
 * NULL equals from_float (ggml's _ref); with an imatrix (n_per_row
 * weights) it is ggml's importance-weighted quantize_<t>. Q8_K ignores
 * the imatrix. vec_dot reads a Q8_K activation row (Q8_K: Q8_K · Q8_K). */
void qd_ref_to_float_q2_K(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd_ref_from_float_q2_K(const float *restrict src, void *restrict dst,
                            int64_t n);
size_t qd_ref_quantize_q2_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix);
void qd_ref_vec_dot_q2_K(int n, float *restrict s, const void *restrict x,
                         const void *restrict y); /* y: Q8_K */
void qd_ref_to_float_q3_K(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd_ref_from_float_q3_K(const float *restrict src, void *restrict dst,
                            int64_t n);
size_t qd_ref_quantize_q3_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix);
void qd_ref_vec_dot_q3_K(int n, float *restrict s, const void *restrict x,
                         const void *restrict y); /* y: Q8_K */
void qd_ref_to_float_q4_K(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd_ref_from_float_q4_K(const float *restrict src, void *restrict dst,
                            int64_t n);
size_t qd_ref_quantize_q4_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix);
void qd_ref_vec_dot_q4_K(int n, float *restrict s, const void *restrict x,
                         const void *restrict y); /* y: Q8_K */
void qd_ref_to_float_q5_K(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd_ref_from_float_q5_K(const float *restrict src, void *restrict dst,
                            int64_t n);
size_t qd_ref_quantize_q5_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix);
void qd_ref_vec_dot_q5_K(int n, float *restrict s, const void *restrict x,
                         const void *restrict y); /* y: Q8_K */
void qd_ref_to_float_q6_K(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd_ref_from_float_q6_K(const float *restrict src, void *restrict dst,
                            int64_t n);
size_t qd_ref_quantize_q6_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix);
void qd_ref_vec_dot_q6_K(int n, float *restrict s, const void *restrict x,
                         const void *restrict y); /* y: Q8_K */
void qd_ref_to_float_q8_K(const void *restrict src, float *restrict dst,
                          int64_t n);
void qd_ref_from_float_q8_K(const float *restrict src, void *restrict dst,
                            int64_t n);
size_t qd_ref_quantize_q8_K(const float *restrict src, void *restrict dst,
                            int64_t nrows, int64_t n_per_row,
                            const float *imatrix);
void qd_ref_vec_dot_q8_K(int n, float *restrict s, const void *restrict x,
                         const void *restrict y); /* y: Q8_K */
void qd_ref_to_float_iq4_xs(const void *restrict src, float *restrict dst,
                            int64_t n);
void qd_ref_from_float_iq4_xs(const float *restrict src, void *restrict dst,
                              int64_t n);
size_t qd_ref_quantize_iq4_xs(const float *restrict src, void *restrict dst,
                              int64_t nrows, int64_t n_per_row,
                              const float *imatrix);
void qd_ref_vec_dot_iq4_xs(int n, float *restrict s, const void *restrict x,
                           const void *restrict y); /* y: Q8_K */
/* ---- end K-quants ----------------------------------------------------- */

#endif
