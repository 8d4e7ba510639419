/*
 * kernels.h — the kernel table chosen once at start-up (scalar, AVX2,
 * AVX-512). Internal to quant/: the engine only sees qd_matmul().
 */
#ifndef QUANTD_QUANT_KERNELS_H
#define QUANTD_QUANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quantd/compute.h"
#include "quantd/quant.h"

typedef struct {
    const char *name;
    /* Quantize one activation row of n floats to type t (a vec_dot_type). */
    void (*from_float)(qd_type_t t, const float *restrict x, void *restrict y,
                       int64_t n);
    /* out[t*ldo + r] = dot(W row r, act row t) for r in [r0, r1), t < n_tok.
     * act rows are vec_dot_type rows, act_stride bytes apart. */
    void (*gemm)(const qd_qmat_t *w, int64_t r0, int64_t r1,
                 const void *act, size_t act_stride, int n_tok,
                 float *out, int64_t ldo);
    /* Single dot product with the set's vec_dot for weight type wt. */
    void (*vec_dot)(qd_type_t wt, int n, float *restrict s,
                    const void *restrict x, const void *restrict y);
    /* Tiled path (NULL if the set has none), used when n_tok >=
     * tile_min_tok and qd__tile_sub(w->type) != 0: activations prepared
     * by qd__tile_act, token t at qs + t*n_cols, ta/tb/ti + t*(n_cols/S). */
    void (*gemm_tiled)(const qd_qmat_t *w, int64_t r0, int64_t r1,
                       const int8_t *qs, const float *ta, const float *tb,
                       const int32_t *ti, int n_tok, float *out, int64_t ldo);
    int tile_min_tok;
    /* Optional: nonzero when `gemm` should take n_tok activation rows of
     * w although the tiled path could (small batches of types with a
     * multi-token direct kernel; on the AVX2 set also the types or batch
     * sizes its tiles do not serve). */
    int (*gemm_prefers)(const qd_qmat_t *w, int n_tok);
    /* Optional, with gemm_prefers: for those batches `gemm` takes its
     * activation rows in a layout of its own, made from the vec_dot_type
     * row once per matmul call by prefers_act; prefers_act_bytes(t, n) is a
     * row's size, at most QD_PREFERS_ACT_BYTES(n). The layout may depend
     * on t: prefers_layout(t) names it (NULL: one layout per vec_dot_type),
     * and two matrices share prepared activations only with the same. */
    void (*prefers_act)(qd_type_t t, const void *act, int64_t n, void *dst);
    size_t (*prefers_act_bytes)(qd_type_t t, int64_t n);
    int (*prefers_layout)(qd_type_t t);
    /* BF16 path (NULL if none), used when n_tok >= bf16_min_tok and
     * qd__tile_sub(w->type) != 0, before the tiled path: weights decoded
     * to bf16, activations converted to bf16 by act_bf16, float sums.
     * Activations blocked by 16 tokens and 32 values: value k of token t
     * at act[((t/16)*(n_cols/32) + k/32)*512 + (t%16)*32 + k%32]; rows
     * are split among threads in multiples of 32. */
    void (*gemm_bf16)(const qd_qmat_t *w, int64_t r0, int64_t r1,
                      const uint16_t *act, int n_tok, float *out, int64_t ldo);
    /* One token's row x (n values, a multiple of 32) to bf16: chunk c of
     * 32 values at dst + c*512. */
    void (*act_bf16)(const float *x, int64_t n, uint16_t *dst);
    int bf16_min_tok;
} qd_kernels_t;

/* Decode streams each weight row once from memory: the decode kernels (and
 * `quantd bench --membw`, which measures their roofline) prefetch this many
 * bytes ahead of what they read, past the hardware prefetcher's 4 KiB page
 * restarts: into L1 on the AVX-512 set (kernels_avx512.c, dec_prefetch),
 * into L2 in the AVX2 row drivers (QD_X86_PF_HINT). 2 KiB was the best of
 * 1-16 KiB (AVX2 row drivers), and of 1, 2, 4 and 8 KiB with T0; the
 * AVX-512 in-loop prefetch read a DRAM-sized Q4_K matrix 15 % faster on
 * one thread than a burst per row. */
#define QD_DEC_PF_DIST 2048

/* The most a kernel set's own activation layout (prefers_act) may take
 * per row of n values (matmul's scratch is sized for it): 2 bytes a value
 * covers each layout's bytes per value (at most about 1.27, Q6_K's with
 * its scales) and the 640 bytes of a started group of AVX-512's Q4_0 and
 * Q8_0 layout (512 values). The kernel test prefers_act_within_bound
 * checks every layout against it. */
#define QD_PREFERS_ACT_BYTES(n) ((size_t)(n) * 2 + 640)

/* ---- tiled path (quant/tile.c) ----------------------------------------
 * Weights decoded QD_TILE_ROWS rows and at most QD_TILE_K values at a time
 * to u8 values interleaved in groups of 4 (u[(k/4)*64 + r*4 + k%4]) plus a
 * float scale and correction per subblock of S values (S = 16 or 32):
 *   dot(w_s, x_s) = dsc*ta*sum(u*a) + corr*tb
 * where a are the activation's int8 values, ta its scale and tb its scale
 * times sum(a) (the stored s for Q8_1). */
#define QD_TILE_ROWS 16
#define QD_TILE_K 1024
/* The micro kernels' PER groups (a superblock's subblocks) never
 * straddle two chunks. */
_Static_assert(QD_TILE_K % QD_QK_K == 0, "a tile chunk holds whole superblocks");

/* Subblock length S of the tiled path for weight type t; 0: no tiled path. */
int qd__tile_sub(qd_type_t t);
/* Decode values [k0, k0+nk) of n_rows (<= 16) rows starting at row0 into
 * u (16*nk bytes), dsc and corr ([nk/S][16] floats); missing rows are 0. */
void qd__tile_decode(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                     int n_rows, int64_t k0, int nk, uint8_t *restrict u,
                     float *restrict dsc, float *restrict corr);
/* C when every subblock's correction of weight type t is corr = -C*dsc
 * (an offset of the decoded values: Q4_0's 8, Q8_0's 128 …), else 0. For
 * such types a subblock's product is dsc * ta * (sum u*q - C * sum q):
 * the correction stays in the integers (qd__tile_act's ti). The tile
 * decoders (tile.c, tiledec_avx512.c) write corr from it, so the two
 * cannot disagree. */
static inline int qd__tile_off(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q4_0: return 8;
    case QD_TYPE_Q5_0: return 16;
    case QD_TYPE_Q8_0: case QD_TYPE_IQ4_NL: case QD_TYPE_IQ4_XS: return 128;
    case QD_TYPE_Q6_K: return 32;
    case QD_TYPE_Q3_K: return 4;
    default: return 0;
    }
}
/* From one activation row (vec_dot_type of weight type wt, n values):
 * qs[n] int8 values; per subblock the scale ta, the correction factor tb
 * (ta times the sum of the values, or Q8_1's stored s) and
 * ti = -qd__tile_off(wt) times the sum of the values ([n/S] each). A
 * Q8_K row's ta is the same for all the subblocks of a superblock. */
void qd__tile_act(qd_type_t wt, const void *act, int64_t n,
                  int8_t *restrict qs, float *restrict ta,
                  float *restrict tb, int32_t *restrict ti);

/* qd_matmul with a given kernel set (for tests and benchmarks). */
void qd__matmul_with(const qd_kernels_t *k, qd_pool_t *pool,
                     float *restrict out, int64_t ldo, const qd_qmat_t *w,
                     const float *restrict x, int64_t ldx, int n_tok,
                     void *scratch);

/* qd__tile_decode with AVX-512 (tiledec_avx512.c) for Q4_0, Q4_1, Q8_0,
 * Q4_K, Q6_K and Q4_G128 with k0 and nk multiples of 64; returns 0, doing nothing,
 * otherwise. */
int qd__tile_decode_512(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                        int n_rows, int64_t k0, int nk, uint8_t *restrict u,
                        float *restrict dsc, float *restrict corr);
/* Prefetch (to L2) the bytes of values [k0, k0+nk) of n_rows rows from
 * row0: a tile decode's input, asked for while the tile before it is
 * being multiplied (a row's start is otherwise a demand miss each time:
 * the decoders' in-row prefetch runs ahead of the row, not into the
 * next). */
void qd__tile_prefetch(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                       int n_rows, int64_t k0, int nk);
/* The tiled drivers' walk (QD_TILE_ROWS rows from rt, chunks of QD_TILE_K
 * values from k0, rows [.., r1) of w): prefetch the tile after the one at
 * (rt, k0), the next chunk of these rows or the first of the next rows. */
void qd__tile_prefetch_next(const qd_qmat_t *w, int64_t rt, int64_t r1, int64_t k0);
/* The same weights as bf16 in AMX's B layout (see tiledec_avx512.c); same
 * types and conditions, 0 otherwise. */
int qd__tile_decode_bf16_512(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                             int n_rows, int64_t k0, int nk, uint16_t *wb);

/* Q4_G128 x Q8_1 decode dot with AVX-512 VNNI (q4g_avx512.c), for the
 * AVX-512 set's dot lookup. */
void qd__dot_q4_g128_512(int n, float *restrict s, const void *restrict x,
                         const void *restrict y);
/* qd_matmul_multi with a given kernel set. */
void qd__matmul_multi_with(const qd_kernels_t *k, qd_pool_t *pool, int n_w,
                           float *const outs[], const int64_t ldos[],
                           const qd_qmat_t *const ws[], const float *restrict x,
                           int64_t ldx, int n_tok, void *scratch);

/* SIMD sets (kernels_avx2.c, kernels_avx512.c); call only when the CPU
 * supports them (x86 builds only). */
const qd_kernels_t *qd__kernels_avx2(void);
const qd_kernels_t *qd__kernels_avx512(void);
/* The AVX-512 set with the tiled path on AMX-INT8 (kernels_amx.c): NULL
 * when the CPU lacks AMX or the kernel refuses the tile state. */
const qd_kernels_t *qd__kernels_amx(void);

/* The table in use (chosen on first call; QD_KERNELS=scalar|avx2|avx512
 * forces one). Thread-safe. */
const qd_kernels_t *qd_kernels(void);
/* The scalar reference table (always available, for tests). */
const qd_kernels_t *qd_kernels_scalar(void);

/* Q4_K's 12 scale bytes: the 8 six-bit scales and the 8 six-bit mins, one
 * byte each, packed into *s8 and *m8 (byte j = sub-block j). */
static inline void qd__k4_scales8(const uint8_t *q, uint64_t *s8, uint64_t *m8)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t s_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    *s8 = s_lo | ((uint64_t)s_hi << 32);
    *m8 = m_lo | ((uint64_t)m_hi << 32);
}

#endif
