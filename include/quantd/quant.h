/*
 * quant.h — tensor element types, GGUF block layouts and the per-type traits
 * table (block size, bytes, to_float, quantize, vec_dot).
 *
 * Type ids are ggml's (they are what GGUF files store), so a qd_type_t read
 * from a file indexes qd_type_traits() directly once it is checked with
 * qd_type_valid(). Block structs are bit-compatible with ggml-common.h; each
 * is followed by a static_assert on its size.
 *
 * The scalar functions in the traits table are the specification of each
 * format. SIMD kernels (quant/kernels_*.c) are tested against them.
 */
#ifndef QUANTD_QUANT_H
#define QUANTD_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

typedef uint16_t qd_fp16_t; /* IEEE half, stored little-endian */
typedef uint16_t qd_bf16_t; /* bfloat16 */

typedef enum {
    QD_TYPE_F32 = 0,
    QD_TYPE_F16 = 1,
    QD_TYPE_Q4_0 = 2,
    QD_TYPE_Q4_1 = 3,
    QD_TYPE_Q5_0 = 6,
    QD_TYPE_Q5_1 = 7,
    QD_TYPE_Q8_0 = 8,
    QD_TYPE_Q8_1 = 9,
    QD_TYPE_Q2_K = 10,
    QD_TYPE_Q3_K = 11,
    QD_TYPE_Q4_K = 12,
    QD_TYPE_Q5_K = 13,
    QD_TYPE_Q6_K = 14,
    QD_TYPE_Q8_K = 15,
    QD_TYPE_IQ4_NL = 20,
    QD_TYPE_IQ4_XS = 23,
    QD_TYPE_I8 = 24,
    QD_TYPE_I16 = 25,
    QD_TYPE_I32 = 26,
    QD_TYPE_I64 = 27,
    QD_TYPE_F64 = 28,
    QD_TYPE_BF16 = 30,
    QD_TYPE_COUNT = 40, /* ids below this may appear in files */
    /* quantd-private types, above every GGUF id: valid in memory and in
     * quantd's own import caches only (see qd_type_internal) */
    QD_TYPE_Q4_G128 = 1000
} qd_type_t;

#define QD_QK4_0 32
#define QD_QK4_1 32
#define QD_QK5_0 32
#define QD_QK5_1 32
#define QD_QK8_0 32
#define QD_QK8_1 32
#define QD_QK4_NL 32
#define QD_QK_K 256
#define QD_K_SCALE_SIZE 12

typedef struct {
    qd_fp16_t d;          /* delta */
    uint8_t qs[QD_QK4_0 / 2]; /* nibbles: low = elements 0..15, high = 16..31 */
} qd_block_q4_0;
static_assert(sizeof(qd_block_q4_0) == 18, "q4_0 block size");

typedef struct {
    qd_fp16_t d; /* delta */
    qd_fp16_t m; /* min */
    uint8_t qs[QD_QK4_1 / 2];
} qd_block_q4_1;
static_assert(sizeof(qd_block_q4_1) == 20, "q4_1 block size");

typedef struct {
    qd_fp16_t d;
    uint8_t qh[4]; /* 5th bits */
    uint8_t qs[QD_QK5_0 / 2];
} qd_block_q5_0;
static_assert(sizeof(qd_block_q5_0) == 22, "q5_0 block size");

typedef struct {
    qd_fp16_t d;
    qd_fp16_t m;
    uint8_t qh[4];
    uint8_t qs[QD_QK5_1 / 2];
} qd_block_q5_1;
static_assert(sizeof(qd_block_q5_1) == 24, "q5_1 block size");

typedef struct {
    qd_fp16_t d;
    int8_t qs[QD_QK8_0];
} qd_block_q8_0;
static_assert(sizeof(qd_block_q8_0) == 34, "q8_0 block size");

typedef struct {
    qd_fp16_t d; /* delta */
    qd_fp16_t s; /* d * sum(qs) */
    int8_t qs[QD_QK8_1];
} qd_block_q8_1;
static_assert(sizeof(qd_block_q8_1) == 36, "q8_1 block size");

typedef struct {
    uint8_t scales[QD_QK_K / 16]; /* scales and mins, 4 bits each */
    uint8_t qs[QD_QK_K / 4];      /* quants, 2 bits */
    qd_fp16_t d;                  /* super-block scale for scales */
    qd_fp16_t dmin;               /* super-block scale for mins */
} qd_block_q2_K;
static_assert(sizeof(qd_block_q2_K) == 84, "q2_K block size");

typedef struct {
    uint8_t hmask[QD_QK_K / 8]; /* high bit of quants */
    uint8_t qs[QD_QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];         /* 16 6-bit scales */
    qd_fp16_t d;
} qd_block_q3_K;
static_assert(sizeof(qd_block_q3_K) == 110, "q3_K block size");

typedef struct {
    qd_fp16_t d;
    qd_fp16_t dmin;
    uint8_t scales[QD_K_SCALE_SIZE]; /* 8 scales + 8 mins, 6 bits each */
    uint8_t qs[QD_QK_K / 2];
} qd_block_q4_K;
static_assert(sizeof(qd_block_q4_K) == 144, "q4_K block size");

typedef struct {
    qd_fp16_t d;
    qd_fp16_t dmin;
    uint8_t scales[QD_K_SCALE_SIZE];
    uint8_t qh[QD_QK_K / 8];
    uint8_t qs[QD_QK_K / 2];
} qd_block_q5_K;
static_assert(sizeof(qd_block_q5_K) == 176, "q5_K block size");

typedef struct {
    uint8_t ql[QD_QK_K / 2];     /* low 4 bits */
    uint8_t qh[QD_QK_K / 4];     /* high 2 bits */
    int8_t scales[QD_QK_K / 16]; /* 8-bit scales */
    qd_fp16_t d;
} qd_block_q6_K;
static_assert(sizeof(qd_block_q6_K) == 210, "q6_K block size");

typedef struct {
    float d;
    int8_t qs[QD_QK_K];
    int16_t bsums[QD_QK_K / 16]; /* sum of quants in groups of 16 */
} qd_block_q8_K;
static_assert(sizeof(qd_block_q8_K) == 292, "q8_K block size");

typedef struct {
    qd_fp16_t d;
    uint8_t qs[QD_QK4_NL / 2];
} qd_block_iq4_nl;
static_assert(sizeof(qd_block_iq4_nl) == 18, "iq4_nl block size");

typedef struct {
    qd_fp16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QD_QK_K / 64];
    uint8_t qs[QD_QK_K / 2];
} qd_block_iq4_xs;
static_assert(sizeof(qd_block_iq4_xs) == 136, "iq4_xs block size");

/* Q4_G128 (quantd-private, QD_TYPE_Q4_G128): asymmetric 4-bit weights in
 * groups of 128, the layout of AWQ/GPTQ group-128 checkpoints. Value i of
 * the block is d*q_i + m (m = -z*d for a zero point z, rounded to fp16
 * once). Nibble order: byte j holds value j in its low nibble and value
 * j + 64 in its high nibble, so one 64-byte load gives values 0..63 (low
 * nibbles) and 64..127 (high). 4.25 bits per weight. */
#define QD_QK4_G128 128
typedef struct {
    qd_fp16_t d; /* scale */
    qd_fp16_t m; /* value of q = 0 */
    uint8_t qs[QD_QK4_G128 / 2];
} qd_block_q4_g128;
static_assert(sizeof(qd_block_q4_g128) == 68, "q4_g128 block size");

/* ---- fp16 / bf16 ------------------------------------------------------ */
float qd_fp16_to_fp32(qd_fp16_t h);
qd_fp16_t qd_fp32_to_fp16(float f); /* round to nearest even, as ggml */
float qd_bf16_to_fp32(qd_bf16_t h);
qd_bf16_t qd_fp32_to_bf16(float f); /* round to nearest even, NaN kept quiet */

/* ---- traits ----------------------------------------------------------- */
/* Dequantize n values (n a multiple of blck_size). */
typedef void (*qd_to_float_fn)(const void *restrict src, float *restrict dst,
                               int64_t n);
/* Reference quantization of n values (a multiple of blck_size); for the types
 * llama.cpp quantizes "_ref", bit-identical to quantize_row_<t>_ref. */
typedef void (*qd_from_float_fn)(const float *restrict src, void *restrict dst,
                                 int64_t n);
/* Quantize nrows rows of n_per_row values; imatrix (n_per_row importance
 * weights, may be NULL). Bit-identical to ggml_quantize_chunk. Returns bytes
 * written. */
typedef size_t (*qd_quantize_fn)(const float *restrict src, void *restrict dst,
                                 int64_t nrows, int64_t n_per_row,
                                 const float *imatrix);
/* s = dot(x, y) over n values: x a row of this type, y a row of
 * traits.vec_dot_type (the quantized activations). */
typedef void (*qd_vec_dot_fn)(int n, float *restrict s,
                              const void *restrict x, const void *restrict y);

typedef struct {
    const char *name;   /* "Q4_K" */
    int blck_size;      /* values per block */
    size_t type_size;   /* bytes per block */
    int is_quantized;
    qd_to_float_fn to_float;
    qd_from_float_fn from_float_ref;
    qd_quantize_fn quantize;
    qd_type_t vec_dot_type; /* activation format this type's vec_dot reads */
    qd_vec_dot_fn vec_dot;  /* scalar reference */
} qd_type_traits_t;

/* 1 if id names a type this build knows (has a traits entry), GGUF's or
 * quantd-private. */
int qd_type_valid(int id);
/* 1 for quantd-private type ids (not GGUF's: QD_TYPE_Q4_G128), which only
 * quantd's own files may hold. */
int qd_type_internal(int id);
/* Traits of a valid type (undefined for invalid ids: check first). */
const qd_type_traits_t *qd_type_traits(qd_type_t t);
const char *qd_type_name(qd_type_t t);
/* Parse "Q4_K", "q4_k", "F16", "Q4_G128" … into *out. 0 or QD_EINVAL. */
int qd_type_from_name(const char *name, qd_type_t *out);
/* Bytes of one row of n values (n must be a multiple of the block size). */
size_t qd_row_size(qd_type_t t, int64_t n);

#endif /* QUANTD_QUANT_H */
