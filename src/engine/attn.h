/*
 * attn.h — blocked attention over the paged KV cache (engine-internal).
 *
 * One call computes the attention of a run of tokens of one sequence for
 * the query heads that share one KV head: every cached block of 16
 * positions is converted to float once and used by all those rows (up to
 * QD_ATTN_ROWS = tokens x heads per KV head), with an online softmax, so
 * a prompt's attention costs multiply-adds, not per-key function calls.
 */
#ifndef QUANTD_ENGINE_ATTN_H
#define QUANTD_ENGINE_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/engine.h"

#define QD_ATTN_ROWS 64
/* positions per cache block: one 16-lane mask or register per block */
#define QD_ATTN_BLK QD_KV_BLOCK
_Static_assert(QD_KV_BLOCK == 16, "the attention paths take a cache block as 16 lanes");
/* positions whose scores the f16 path's pass 0 keeps for pass 1 (per
 * row); longer contexts recompute them */
#define QD_ATTN_SCAP 2048

typedef struct {
    const uint8_t *data;  /* the cache's block memory */
    const int32_t *tab;   /* the sequence's block table */
    size_t block_bytes;   /* bytes per block */
    size_t koff, voff;    /* K and V rows of this layer inside a block */
    size_t row_bytes;     /* bytes per position (all KV heads) */
    int f16;              /* rows hold fp16 (1) or float (0) */
    int hd;               /* head dimension, a multiple of 16 */
    int n_rep;            /* query heads per KV head */
    int g;                /* the KV head */
    float scale;          /* 1/sqrt(hd) */
} qd_attn_kv_t;

/* The lanes of the 16-position block starting at p0 that a row at
 * position ps sees (positions 0..ps): a mask, lane i = position p0 + i. */
static inline uint16_t qd__attn_visible(int32_t ps, int32_t p0)
{
    int32_t vis = ps + 1 - p0;
    if (vis <= 0)
        return 0;
    return (uint16_t)(vis >= 16 ? 0xffff : (1u << vis) - 1);
}

/* Floats of workspace one thread needs: scratch for one call of either
 * path, so the larger of the two (each call starts it afresh). */
size_t qd__attn_ws_floats(int hd);
size_t qd__attn_amx_ws_bytes(void); /* attn_amx.c's part */

/* Tokens i < n_tok (n_tok * n_rep <= QD_ATTN_ROWS): query head j of token
 * i at q + i*ldq + j*hd sees positions 0..pos[i] and writes its output at
 * o + i*ldo + j*hd. With f16 rows, queries and softmax weights are
 * rounded to fp16 as the cache's precision implies. */
void qd__attn_avx512(const qd_attn_kv_t *kv, int n_tok, const float *q,
                     int64_t ldq, const int32_t *pos, float *o, int64_t ldo,
                     float *ws);

/* The same on AMX BF16 tiles (attn_amx.c; the amx kernel set only), for
 * runs of many rows: returns -1, having done nothing, unless the cache
 * is f16, hd is 64 or 128 and every position is below QD_ATTN_SCAP. ws:
 * the thread's workspace. Rounds Q, K, V and
 * the weights to bf16 (about 2^-8 relative error). */
int qd__attn_amx(const qd_attn_kv_t *kv, int n_tok, const float *q, int64_t ldq,
                 const int32_t *pos, float *o, int64_t ldo, void *ws);

/* Other AVX-512 loops of the forward pass. */

/* g = silu(g) * u over n values (exp within 2 ulp of expf). */
void qd__swiglu_avx512(float *g, const float *u, int n);

/* fp32 -> fp16 (round to nearest even), n values, with F16C. */
void qd__f32_to_f16_avx512(const float *x, uint16_t *y, int n);

#endif
