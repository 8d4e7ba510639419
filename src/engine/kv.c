/*
 * kv.c — the paged KV cache: a pool of fixed-size blocks (QD_KV_BLOCK
 * positions of K and V for every layer), one block table per sequence, and
 * reference counts so that sequences can share the blocks of a common
 * prefix (qd_kv_seq_fork). A block shared by several sequences is copied
 * before one of them writes into it (copy on write), so sharing is never
 * visible in the results.
 *
 * The pool is allocated once at creation; taking and returning blocks is a
 * push/pop on a free stack. Layout of a block: see engine/kv_int.h.
 *
 * Prefix cache: full blocks of a finished (or fully prefilled) sequence can
 * be registered under the token prefix they cover (qd_kv_seq_cache); when
 * their last reference goes they stay in the pool, idle, until the free
 * stack runs dry and the least recently released idle block is evicted. A
 * new sequence adopts the longest registered prefix of its prompt
 * (qd_kv_seq_adopt) by reference instead of recomputing it. A registered
 * block is never written in place: prepare copies it first, like a shared
 * one, so the index always describes what the block holds.
 */
#include "engine/kv_int.h"
#include "quantd/common.h"
#include "quantd/quant.h"

#include <string.h>
#include <unistd.h>

/* Bytes of one row of kv_dim values: f32 and f16 rows padded to 16 bytes;
 * q8_0 rows (kv_dim a multiple of 32) unpadded, since the 34-byte blocks
 * are read with unaligned loads anyway (only 2-byte alignment is needed). */
static size_t row_bytes(qd_kv_type_t t, int32_t kv_dim)
{
    if (t == QD_KV_Q8_0)
        return (size_t)(kv_dim / QD_QK8_0) * sizeof(qd_block_q8_0);
    return QD_ALIGN_UP((size_t)kv_dim * (t == QD_KV_F32 ? sizeof(float)
                                                        : sizeof(qd_fp16_t)),
                       16);
}

size_t qd_kv_default_cap(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0)
        return (size_t)1 << 30;
    return (size_t)pages / 4 * (size_t)psz;
}

int qd__kv_create(int32_t n_layer, int32_t kv_dim, int32_t n_seq_max,
                  int32_t n_ctx, size_t kv_bytes, qd_kv_type_t type,
                  qd_kv_t **out)
{
    *out = NULL;
    if (type != QD_KV_F32 && type != QD_KV_F16 && type != QD_KV_Q8_0) {
        qd_set_errmsg("kv: cache type %d is not supported (f32, f16, q8_0)",
                      (int)type);
        return QD_EUNSUPPORTED;
    }
    if (type == QD_KV_Q8_0 && kv_dim % QD_QK8_0 != 0) {
        qd_set_errmsg("kv: q8_0 cache needs kv_dim (%d) to be a multiple of "
                      "%d",
                      kv_dim, QD_QK8_0);
        return QD_EINVAL;
    }
    if (n_layer <= 0 || kv_dim <= 0 || n_seq_max <= 0 || n_ctx <= 0) {
        qd_set_errmsg("kv: invalid size (layers %d, kv_dim %d, seqs %d, "
                      "ctx %d)",
                      n_layer, kv_dim, n_seq_max, n_ctx);
        return QD_EINVAL;
    }
    qd_kv_t *kv = qd_calloc(1, sizeof *kv);
    if (!kv)
        goto oom;
    kv->type = type;
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->n_seq_max = n_seq_max;
    kv->n_ctx = n_ctx;
    kv->max_seq_blocks = (n_ctx + QD_KV_BLOCK - 1) / QD_KV_BLOCK;
    kv->row_bytes = row_bytes(type, kv_dim);
    kv->layer_bytes = 2 * QD_KV_BLOCK * kv->row_bytes;
    size_t n_blocks, total;
    if (qd_mul_size(kv->layer_bytes, (size_t)n_layer, &kv->block_bytes))
        goto too_big;
    kv->block_bytes = QD_ALIGN_UP(kv->block_bytes, 64);
    if (kv_bytes) {
        n_blocks = kv_bytes / kv->block_bytes;
    } else {
        if (qd_mul_size((size_t)kv->max_seq_blocks, (size_t)n_seq_max, &n_blocks))
            goto too_big;
        n_blocks = QD_MIN(n_blocks, qd_kv_default_cap() / kv->block_bytes);
    }
    if (n_blocks == 0) {
        qd_set_errmsg("kv: budget of %zu bytes holds no block of %zu bytes",
                      kv_bytes, kv->block_bytes);
        qd_free(kv);
        return QD_EINVAL;
    }
    if (n_blocks > INT32_MAX || qd_mul_size(n_blocks, kv->block_bytes, &total))
        goto too_big;
    kv->n_blocks = (int32_t)n_blocks;
    /* Attention reads each (sequence, KV head) as a few hundred bytes of
     * every block's rows: with 4 KiB pages nearly every block cost TLB
     * misses (two-level walks in a VM). 8 sequences decoding together,
     * 32k-vocabulary Q4_K_M file, 2 threads, three alternations against
     * 4 KiB pages: attention 3.3-3.8 -> 2.55-2.64 ms a step. */
    kv->data = qd_malloc_huge(total);
    kv->refcnt = qd_calloc(n_blocks, sizeof *kv->refcnt);
    kv->free_list = qd_malloc(n_blocks * sizeof *kv->free_list);
    kv->tables =
        qd_calloc((size_t)n_seq_max * kv->max_seq_blocks, sizeof *kv->tables);
    kv->seq_blocks = qd_calloc((size_t)n_seq_max, sizeof(int32_t));
    kv->seq_len = qd_calloc((size_t)n_seq_max, sizeof(int32_t));
    kv->next_pos = qd_calloc((size_t)n_seq_max, sizeof(int32_t));
    uint32_t n_buckets = 1;
    while (n_buckets < n_blocks && n_buckets < (1u << 30))
        n_buckets <<= 1;
    kv->bucket_mask = n_buckets - 1;
    kv->cached = qd_calloc(n_blocks, 1);
    kv->hash = qd_calloc(n_blocks, sizeof *kv->hash);
    kv->parent = qd_calloc(n_blocks, sizeof *kv->parent);
    kv->parent_gen = qd_calloc(n_blocks, sizeof *kv->parent_gen);
    kv->gen = qd_calloc(n_blocks, sizeof *kv->gen);
    kv->btoks = qd_calloc(n_blocks, QD_KV_BLOCK * sizeof *kv->btoks);
    kv->hnext = qd_calloc(n_blocks, sizeof *kv->hnext);
    kv->buckets = qd_malloc((size_t)n_buckets * sizeof *kv->buckets);
    kv->lru_prev = qd_calloc(n_blocks, sizeof *kv->lru_prev);
    kv->lru_next = qd_calloc(n_blocks, sizeof *kv->lru_next);
    if (!kv->data || !kv->refcnt || !kv->free_list || !kv->tables ||
        !kv->seq_blocks || !kv->seq_len || !kv->next_pos || !kv->cached ||
        !kv->hash || !kv->parent || !kv->parent_gen || !kv->gen ||
        !kv->btoks || !kv->hnext || !kv->buckets || !kv->lru_prev ||
        !kv->lru_next) {
        qd__kv_destroy(kv);
        goto oom;
    }
    /* Free stack popped from the end: hand out low block ids first. */
    for (int32_t i = 0; i < kv->n_blocks; i++)
        kv->free_list[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    for (uint32_t i = 0; i < n_buckets; i++)
        kv->buckets[i] = -1;
    kv->lru_head = kv->lru_tail = -1;
    *out = kv;
    return 0;
too_big:
    qd_set_errmsg("kv: cache size overflows");
    qd_free(kv);
    return QD_EOVERFLOW;
oom:
    qd_set_errmsg("kv: out of memory for the cache");
    return QD_ENOMEM;
}

void qd__kv_destroy(qd_kv_t *kv)
{
    if (!kv)
        return;
    qd_free_aligned(kv->data);
    qd_free(kv->refcnt);
    qd_free(kv->free_list);
    qd_free(kv->tables);
    qd_free(kv->seq_blocks);
    qd_free(kv->seq_len);
    qd_free(kv->next_pos);
    qd_free(kv->cached);
    qd_free(kv->hash);
    qd_free(kv->parent);
    qd_free(kv->parent_gen);
    qd_free(kv->gen);
    qd_free(kv->btoks);
    qd_free(kv->hnext);
    qd_free(kv->buckets);
    qd_free(kv->lru_prev);
    qd_free(kv->lru_next);
    qd_free(kv);
}

/* ---- idle list and index ---------------------------------------------- */

static void lru_remove(qd_kv_t *kv, int32_t b)
{
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0)
        kv->lru_next[p] = n;
    else
        kv->lru_head = n;
    if (n >= 0)
        kv->lru_prev[n] = p;
    else
        kv->lru_tail = p;
    kv->n_idle--;
}

static void lru_append(qd_kv_t *kv, int32_t b)
{
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = -1;
    if (kv->lru_tail >= 0)
        kv->lru_next[kv->lru_tail] = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_idle++;
}

/* Take b out of the index; blocks registered under it stop matching. */
static void unindex(qd_kv_t *kv, int32_t b)
{
    int32_t *pp = &kv->buckets[kv->hash[b] & kv->bucket_mask];
    while (*pp != b)
        pp = &kv->hnext[*pp];
    *pp = kv->hnext[b];
    kv->cached[b] = 0;
    kv->gen[b]++;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#define HASH_SEED 0x9e3779b97f4a7c15ULL

/* h_i = H(h_{i-1}, tokens of block i). */
static uint64_t block_hash(uint64_t h, const int32_t *toks)
{
    for (int32_t i = 0; i < QD_KV_BLOCK; i++)
        h = mix64(h ^ ((uint64_t)(uint32_t)toks[i] |
                       (uint64_t)(i + 1) << 32));
    return mix64(h + HASH_SEED);
}

static int block_is(const qd_kv_t *kv, int32_t b, uint64_t h, int32_t parent,
                    const int32_t *toks)
{
    return kv->cached[b] && kv->hash[b] == h && kv->parent[b] == parent &&
           (parent < 0 || kv->parent_gen[b] == kv->gen[parent]) &&
           !memcmp(kv->btoks + (size_t)b * QD_KV_BLOCK, toks,
                   QD_KV_BLOCK * sizeof *toks);
}

/* Registered block holding `toks` after `parent`, or -1. */
static int32_t lookup(const qd_kv_t *kv, uint64_t h, int32_t parent,
                      const int32_t *toks)
{
    for (int32_t b = kv->buckets[h & kv->bucket_mask]; b >= 0;
         b = kv->hnext[b])
        if (block_is(kv, b, h, parent, toks))
            return b;
    return -1;
}

/* A block for writing: from the free stack, else the least recently
 * released idle cached block. The caller has checked n_free + n_idle. */
static int32_t block_take(qd_kv_t *kv)
{
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_list[--kv->n_free];
    } else {
        b = kv->lru_head;
        lru_remove(kv, b);
        unindex(kv, b);
    }
    kv->refcnt[b] = 1;
    return b;
}

static void block_ref(qd_kv_t *kv, int32_t b)
{
    if (kv->refcnt[b]++ == 0)
        lru_remove(kv, b); /* only registered blocks live at refcnt 0 */
}

static void block_release(qd_kv_t *kv, int32_t b)
{
    if (--kv->refcnt[b] > 0)
        return;
    if (kv->cached[b])
        lru_append(kv, b);
    else
        kv->free_list[kv->n_free++] = b;
}

static int seq_ok(const qd_kv_t *kv, int32_t seq)
{
    return seq >= 0 && seq < kv->n_seq_max;
}

void qd_kv_seq_truncate(qd_kv_t *kv, int32_t seq, int32_t n_pos)
{
    if (!kv || !seq_ok(kv, seq) || n_pos < 0 || n_pos >= kv->seq_len[seq])
        return;
    int32_t keep = (n_pos + QD_KV_BLOCK - 1) / QD_KV_BLOCK;
    int32_t *tab = kv->tables + (size_t)seq * kv->max_seq_blocks;
    for (int32_t i = keep; i < kv->seq_blocks[seq]; i++)
        block_release(kv, tab[i]);
    kv->seq_blocks[seq] = keep;
    kv->seq_len[seq] = n_pos;
}

void qd_kv_seq_clear(qd_kv_t *kv, int32_t seq)
{
    qd_kv_seq_truncate(kv, seq, 0);
}

int qd_kv_seq_fork(qd_kv_t *kv, int32_t dst, int32_t src, int32_t n_pos)
{
    if (!seq_ok(kv, dst) || !seq_ok(kv, src) || dst == src) {
        qd_set_errmsg("kv: fork %d -> %d: bad sequence id", src, dst);
        return QD_EINVAL;
    }
    if (kv->seq_len[dst] != 0) {
        qd_set_errmsg("kv: fork into sequence %d, which is not empty", dst);
        return QD_EINVAL;
    }
    if (n_pos < 0 || n_pos > kv->seq_len[src]) {
        qd_set_errmsg("kv: fork of %d positions, sequence %d has %d", n_pos,
                      src, kv->seq_len[src]);
        return QD_EINVAL;
    }
    int32_t n_full = n_pos / QD_KV_BLOCK, part = n_pos % QD_KV_BLOCK;
    if (part && kv->n_free + kv->n_idle == 0) {
        qd_set_errmsg("kv: no free block to copy the partial block of a fork");
        return QD_EFULL;
    }
    const int32_t *st = kv->tables + (size_t)src * kv->max_seq_blocks;
    int32_t *dt = kv->tables + (size_t)dst * kv->max_seq_blocks;
    for (int32_t i = 0; i < n_full; i++) {
        dt[i] = st[i];
        block_ref(kv, st[i]);
    }
    if (part) {
        /* Copy only the first `part` positions of each layer's K and V. */
        int32_t nb = block_take(kv);
        const uint8_t *from = kv->data + (size_t)st[n_full] * kv->block_bytes;
        uint8_t *to = kv->data + (size_t)nb * kv->block_bytes;
        size_t half = QD_KV_BLOCK * kv->row_bytes;
        for (int32_t l = 0; l < kv->n_layer; l++) {
            size_t off = (size_t)l * kv->layer_bytes;
            memcpy(to + off, from + off, (size_t)part * kv->row_bytes);
            memcpy(to + off + half, from + off + half,
                   (size_t)part * kv->row_bytes);
        }
        dt[n_full] = nb;
    }
    kv->seq_blocks[dst] = n_full + (part ? 1 : 0);
    kv->seq_len[dst] = n_pos;
    return 0;
}

int32_t qd_kv_seq_len(const qd_kv_t *kv, int32_t seq)
{
    return seq_ok(kv, seq) ? kv->seq_len[seq] : 0;
}

int32_t qd_kv_blocks_total(const qd_kv_t *kv)
{
    return kv->n_blocks;
}
int32_t qd_kv_blocks_free(const qd_kv_t *kv)
{
    return kv->n_free + kv->n_idle;
}
int32_t qd_kv_blocks_cached(const qd_kv_t *kv)
{
    return kv->n_idle;
}

int32_t qd_kv_seq_adopt(qd_kv_t *kv, int32_t seq, const int32_t *toks,
                        int32_t n_toks)
{
    if (!seq_ok(kv, seq) || kv->seq_len[seq] != 0 || n_toks < 0) {
        qd_set_errmsg("kv: adopt into sequence %d: bad id or not empty", seq);
        return QD_EINVAL;
    }
    int32_t n_blk = QD_MIN(n_toks / QD_KV_BLOCK, kv->max_seq_blocks);
    int32_t *tab = kv->tables + (size_t)seq * kv->max_seq_blocks;
    uint64_t h = HASH_SEED;
    int32_t parent = -1, i;
    for (i = 0; i < n_blk; i++) {
        const int32_t *t = toks + (size_t)i * QD_KV_BLOCK;
        h = block_hash(h, t);
        int32_t b = lookup(kv, h, parent, t);
        if (b < 0)
            break;
        block_ref(kv, b);
        tab[i] = b;
        parent = b;
    }
    kv->seq_blocks[seq] = i;
    kv->seq_len[seq] = i * QD_KV_BLOCK;
    return i * QD_KV_BLOCK;
}

void qd_kv_seq_cache(qd_kv_t *kv, int32_t seq, const int32_t *toks,
                     int32_t n_toks)
{
    if (!kv || !seq_ok(kv, seq) || !toks)
        return;
    int32_t n_blk = QD_MIN(n_toks, kv->seq_len[seq]) / QD_KV_BLOCK;
    const int32_t *tab = kv->tables + (size_t)seq * kv->max_seq_blocks;
    uint64_t h = HASH_SEED;
    int32_t parent = -1;
    for (int32_t i = 0; i < n_blk; i++) {
        const int32_t *t = toks + (size_t)i * QD_KV_BLOCK;
        h = block_hash(h, t);
        int32_t b = tab[i];
        if (kv->cached[b]) {
            if (!block_is(kv, b, h, parent, t))
                return; /* registered under another prefix: not ours */
            parent = b;
            continue;
        }
        int32_t same = lookup(kv, h, parent, t);
        if (same >= 0) { /* an equal block is registered already */
            parent = same;
            continue;
        }
        kv->cached[b] = 1;
        kv->hash[b] = h;
        kv->parent[b] = parent;
        kv->parent_gen[b] = parent >= 0 ? kv->gen[parent] : 0;
        memcpy(kv->btoks + (size_t)b * QD_KV_BLOCK, t,
               QD_KV_BLOCK * sizeof *t);
        int32_t *head = &kv->buckets[h & kv->bucket_mask];
        kv->hnext[b] = *head;
        *head = b;
        parent = b;
    }
}
size_t qd_kv_block_bytes(const qd_kv_t *kv)
{
    return kv->block_bytes;
}

int qd__kv_prepare(qd_kv_t *kv, const qd_batch_t *b)
{
    /* Pass 1: validate positions, computed against a scratch copy of the
     * lengths so that nothing changes on failure. */
    memcpy(kv->next_pos, kv->seq_len, (size_t)kv->n_seq_max * sizeof(int32_t));
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int32_t s = b->seq[i], p = b->pos[i];
        if (!seq_ok(kv, s)) {
            qd_set_errmsg("batch token %d: sequence id %d out of range "
                          "[0, %d)",
                          i, s, kv->n_seq_max);
            return QD_EINVAL;
        }
        if (p != kv->next_pos[s]) {
            qd_set_errmsg("batch token %d: position %d of sequence %d, "
                          "expected %d",
                          i, p, s, kv->next_pos[s]);
            return QD_EINVAL;
        }
        if (p >= kv->n_ctx) {
            qd_set_errmsg("batch token %d: position %d of sequence %d is "
                          "past the context size %d",
                          i, p, s, kv->n_ctx);
            return QD_ERANGE;
        }
        kv->next_pos[s] = p + 1;
    }
    /* Pass 2: count the blocks needed: new ones past each table's end and
     * copies of shared blocks that will be written. */
    int32_t need = 0;
    for (int32_t s = 0; s < kv->n_seq_max; s++) {
        int32_t len0 = kv->seq_len[s], len1 = kv->next_pos[s];
        if (len1 == len0)
            continue;
        const int32_t *tab = kv->tables + (size_t)s * kv->max_seq_blocks;
        for (int32_t bi = len0 / QD_KV_BLOCK; bi <= (len1 - 1) / QD_KV_BLOCK;
             bi++)
            if (bi >= kv->seq_blocks[s] || kv->refcnt[tab[bi]] > 1 ||
                kv->cached[tab[bi]])
                need++;
    }
    if (need > kv->n_free + kv->n_idle) {
        qd_set_errmsg("kv: the batch needs %d more blocks, %d free", need,
                      kv->n_free + kv->n_idle);
        return QD_EFULL;
    }
    /* Pass 3: commit. */
    for (int32_t s = 0; s < kv->n_seq_max; s++) {
        int32_t len0 = kv->seq_len[s], len1 = kv->next_pos[s];
        if (len1 == len0)
            continue;
        int32_t *tab = kv->tables + (size_t)s * kv->max_seq_blocks;
        for (int32_t bi = len0 / QD_KV_BLOCK; bi <= (len1 - 1) / QD_KV_BLOCK;
             bi++) {
            if (bi >= kv->seq_blocks[s]) {
                tab[bi] = block_take(kv);
                kv->seq_blocks[s] = bi + 1;
            } else if (kv->refcnt[tab[bi]] > 1 || kv->cached[tab[bi]]) {
                int32_t nb = block_take(kv);
                memcpy(kv->data + (size_t)nb * kv->block_bytes,
                       kv->data + (size_t)tab[bi] * kv->block_bytes,
                       kv->block_bytes);
                block_release(kv, tab[bi]);
                tab[bi] = nb;
            }
        }
        kv->seq_len[s] = len1;
    }
    return 0;
}
