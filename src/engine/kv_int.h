/*
 * kv_int.h — the paged KV cache as the forward pass sees it.
 *
 * Block layout (block_bytes each, 64-byte aligned):
 *   for each layer l: K[QD_KV_BLOCK][kv_dim] then V[QD_KV_BLOCK][kv_dim]
 * with kv_dim = n_head_kv * head_dim values of the cache type (f32 or f16),
 * so the K row of position p of a sequence is at
 *   data + table[p / QD_KV_BLOCK] * block_bytes + l * layer_bytes
 *        + (p % QD_KV_BLOCK) * row_bytes
 * and its V row layer_bytes / 2 further.
 *
 * Owned by the qd_ctx_t that created it (one thread at a time).
 */
#ifndef QUANTD_ENGINE_KV_INT_H
#define QUANTD_ENGINE_KV_INT_H

#include "quantd/engine.h"

#include <stdint.h>

struct qd_kv {
    qd_kv_type_t type;
    int32_t n_layer;
    int32_t kv_dim; /* n_head_kv * head_dim */
    int32_t n_seq_max;
    int32_t n_ctx;          /* max positions per sequence */
    int32_t max_seq_blocks; /* ceil(n_ctx / QD_KV_BLOCK) */
    size_t row_bytes;       /* one position, K or V, one layer */
    size_t layer_bytes;     /* 2 * QD_KV_BLOCK * row_bytes */
    size_t block_bytes;     /* n_layer * layer_bytes */
    int32_t n_blocks;
    uint8_t *data;      /* [n_blocks * block_bytes] */
    int32_t *refcnt;    /* [n_blocks]; 0 = free */
    int32_t *free_list; /* [n_blocks] stack of free block ids */
    int32_t n_free;
    int32_t *tables;     /* [n_seq_max][max_seq_blocks] block ids */
    int32_t *seq_blocks; /* [n_seq_max] blocks in each table */
    int32_t *seq_len;    /* [n_seq_max] positions held */
    int32_t *next_pos;   /* [n_seq_max] scratch of qd__kv_prepare */

    /* Prefix cache. A full block can be registered in an index under the
     * token prefix it completes: its QD_KV_BLOCK tokens plus the registered
     * block before it (parent, checked by generation so that a parent that
     * was evicted and reused never matches). The 64-bit chained hash only
     * picks the bucket; a match compares parent and tokens exactly.
     * Registered blocks with refcnt 0 are idle: kept, on an LRU list, and
     * taken (evicted) only when the free stack is empty. */
    uint8_t *cached;      /* [n_blocks] 1: in the index */
    uint64_t *hash;       /* [n_blocks] chained hash through this block */
    int32_t *parent;      /* [n_blocks] previous block of the prefix, -1 */
    uint32_t *parent_gen; /* [n_blocks] gen[parent] when registered */
    uint32_t *gen;        /* [n_blocks] bumped when a block leaves the index */
    int32_t *btoks;       /* [n_blocks][QD_KV_BLOCK] tokens of the block */
    int32_t *hnext;       /* [n_blocks] next block in the same bucket */
    int32_t *buckets;     /* [bucket_mask + 1] first block, -1 */
    uint32_t bucket_mask;
    int32_t *lru_prev, *lru_next; /* [n_blocks] idle list, oldest first */
    int32_t lru_head, lru_tail;
    int32_t n_idle;       /* registered blocks with refcnt 0 */
};

int qd__kv_create(int32_t n_layer, int32_t kv_dim, int32_t n_seq_max,
                  int32_t n_ctx, size_t kv_bytes, qd_kv_type_t type,
                  qd_kv_t **out);
void qd__kv_destroy(qd_kv_t *kv);

/*
 * Check that the batch continues its sequences (sequence ids in range, each
 * token at the next position of its sequence, below n_ctx) and make every
 * block the batch will write exist and be private to its sequence (copy on
 * write of shared blocks). All or nothing: QD_EFULL (pool exhausted) or
 * QD_EINVAL / QD_ERANGE leave the cache unchanged. On success the sequence
 * lengths include the batch's positions.
 */
int qd__kv_prepare(qd_kv_t *kv, const qd_batch_t *b);

static inline uint8_t *qd__kv_k(const qd_kv_t *kv, int32_t seq, int32_t pos,
                                int32_t layer)
{
    int32_t blk =
        kv->tables[(size_t)seq * kv->max_seq_blocks + pos / QD_KV_BLOCK];
    return kv->data + (size_t)blk * kv->block_bytes +
           (size_t)layer * kv->layer_bytes +
           (size_t)(pos % QD_KV_BLOCK) * kv->row_bytes;
}

static inline uint8_t *qd__kv_v(const qd_kv_t *kv, int32_t seq, int32_t pos,
                                int32_t layer)
{
    return qd__kv_k(kv, seq, pos, layer) + QD_KV_BLOCK * kv->row_bytes;
}

/* Block ids of a sequence's table (for attention: one lookup per block). */
static inline const int32_t *qd__kv_table(const qd_kv_t *kv, int32_t seq)
{
    return kv->tables + (size_t)seq * kv->max_seq_blocks;
}

#endif
