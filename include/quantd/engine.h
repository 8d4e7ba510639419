/*
 * engine.h — a loaded model and the contexts that run it.
 *
 * qd_model_t holds hyperparameters and weights (views into the read-only
 * mapping of the file) and the tokenizer; it is immutable and shared.
 * qd_ctx_t is one execution context: a paged KV cache, the buffers of a
 * forward pass sized once for n_ubatch tokens, and a compute pool. It runs a
 * forward pass over a batch that mixes tokens of many sequences
 * (qd_batch_t), which is what the scheduler's continuous batching feeds.
 *
 * Threading: a qd_ctx_t is used by one thread at a time (the model's engine
 * thread); the model may be shared by any number of contexts.
 */
#ifndef QUANTD_ENGINE_H
#define QUANTD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/compute.h"
#include "quantd/gguf.h"
#include "quantd/tokenizer.h"

typedef enum {
    QD_ARCH_LLAMA = 0, /* Llama 1/2/3/3.1/3.2, Mistral */
    QD_ARCH_QWEN2,     /* q/k/v biases, NeoX RoPE */
    QD_ARCH_QWEN3,     /* per-head q/k RMSNorm, NeoX RoPE */
} qd_arch_t;

typedef struct {
    qd_arch_t arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;  /* key/value length per head */
    int32_t n_ff;
    float rms_eps;
    float rope_base;
    int rope_neox;     /* 1: pairs (i, i + d/2); 0: adjacent pairs */
    int tied_output;   /* logits from token_embd */
} qd_hparams_t;

typedef struct qd_model qd_model_t;

/* Load a GGUF model file: validate architecture, hyperparameters, every
 * tensor's presence, type and shape; the tokenizer comes from the file's
 * tokenizer.ggml.* metadata. Errors name what is wrong (qd_errmsg).
 * (Checkpoint directories: qd_model_open in quantd/convert.h.) */
int qd_model_load(const char *path, qd_model_t **out);
/* Same, with the tokenizer read from a Hugging Face tokenizer.json (+
 * tokenizer_config.json, may be NULL) instead of the GGUF metadata. */
int qd_model_load_hf_tokenizer(const char *gguf_path,
                               const char *tokenizer_json,
                               const char *tokenizer_config,
                               qd_model_t **out);
void qd_model_free(qd_model_t *m);
const qd_hparams_t *qd_model_hparams(const qd_model_t *m);
const qd_tokenizer_t *qd_model_tokenizer(const qd_model_t *m);
const qd_gguf_t *qd_model_gguf(const qd_model_t *m);
const char *qd_model_arch_name(const qd_model_t *m);
/* Bytes of weights (tensor data) and bits per weight over the matrices. */
size_t qd_model_weight_bytes(const qd_model_t *m);
/* 1 if the model file was truncated while mapped (qd_gguf_damaged): its
 * outputs are garbage from then on and it must be reloaded. */
int qd_model_damaged(const qd_model_t *m);

/* ---- batch ------------------------------------------------------------ */
typedef struct {
    int32_t n_tokens;
    int32_t *toks;   /* [n_tokens] token ids */
    int32_t *pos;    /* [n_tokens] position of each token in its sequence */
    int32_t *seq;    /* [n_tokens] sequence id (0 .. n_seq_max-1) */
    int8_t *logits;  /* [n_tokens] 1: keep this token's logits */
} qd_batch_t;

/* ---- context ---------------------------------------------------------- */
typedef enum { QD_KV_F32 = 0, QD_KV_F16, QD_KV_Q8_0 } qd_kv_type_t;

typedef struct {
    int32_t n_batch;      /* max tokens per qd_ctx_decode call */
    int32_t n_ubatch;     /* tokens computed together: a larger batch runs
                           * as micro-batches of at most this many, equal
                           * within a token (the buffers are sized for
                           * them); 0: n_batch */
    int32_t n_seq_max;    /* max concurrent sequences */
    int32_t n_ctx;        /* max positions per sequence (0: model's) */
    size_t kv_bytes;      /* KV pool budget in bytes (0: n_ctx * n_seq_max,
                           * at most qd_kv_default_cap()) */
    qd_kv_type_t kv_type; /* default QD_KV_F16 */
    int32_t n_threads;    /* 0: physical cores */
} qd_ctx_params_t;

void qd_ctx_params_default(qd_ctx_params_t *p);

typedef struct qd_ctx qd_ctx_t;
typedef struct qd_kv qd_kv_t;

/* The KV budget used when none is given is every sequence at full context,
 * but at most this: a quarter of the machine's physical memory (a model's
 * trained context times the sequences would otherwise ask for tens of
 * GiB). */
size_t qd_kv_default_cap(void);

int qd_ctx_create(const qd_model_t *m, const qd_ctx_params_t *p,
                  qd_ctx_t **out);
void qd_ctx_free(qd_ctx_t *c);
qd_kv_t *qd_ctx_kv(qd_ctx_t *c);
const qd_model_t *qd_ctx_model(const qd_ctx_t *c);

/*
 * Run one forward pass over the batch. For each sequence the batch's tokens
 * must continue it: a token at position p needs positions 0..p-1 already in
 * the cache or earlier in this batch. KV blocks are taken from the pool as
 * needed; QD_EFULL if the pool has none left (nothing is changed then).
 * On success the logits of the tokens flagged in batch->logits are
 * available, in batch order, through qd_ctx_logits(c, j) for the j-th
 * flagged token.
 */
int qd_ctx_decode(qd_ctx_t *c, const qd_batch_t *b);
const float *qd_ctx_logits(const qd_ctx_t *c, int32_t j);

/* ---- matmul observer (calibration) ------------------------------------ */
/* The weight a matmul multiplies: layer il's attn_q … ffn_down, or the
 * output matrix (il = -1). */
typedef enum {
    QD_MM_ATTN_Q = 0,
    QD_MM_ATTN_K,
    QD_MM_ATTN_V,
    QD_MM_ATTN_OUTPUT,
    QD_MM_FFN_GATE,
    QD_MM_FFN_UP,
    QD_MM_FFN_DOWN,
    QD_MM_OUTPUT,
    QD_MM_COUNT
} qd_mm_weight_t;

/* Called by qd_ctx_decode right before each weight matmul with its input:
 * n_tok rows of n_cols floats, row t at x + t * ldx (read-only, valid only
 * during the call); a batch larger than n_ubatch calls it per
 * micro-batch, in batch order. attn_q/k/v (and ffn_gate/up) share one input and get
 * one call each. Runs on the decoding thread, between parallel phases. */
typedef void (*qd_matmul_observer_fn)(void *ud, int il, qd_mm_weight_t w,
                                      const float *x, int64_t ldx, int n_tok,
                                      int64_t n_cols);
/* Set (fn != NULL) or clear the observer of c. */
void qd_ctx_set_observer(qd_ctx_t *c, qd_matmul_observer_fn fn, void *ud);

/* ---- paged KV cache (engine/kv.c) ------------------------------------- */
/*
 * The cache is a pool of fixed-size blocks (QD_KV_BLOCK tokens, all layers)
 * with a block table per sequence; blocks are reference-counted so
 * sequences can share a prompt prefix.
 */
#define QD_KV_BLOCK 16

/* Drop all positions of a sequence and return its blocks to the pool. */
void qd_kv_seq_clear(qd_kv_t *kv, int32_t seq);
/* Keep positions [0, n_pos) of seq, drop the rest. */
void qd_kv_seq_truncate(qd_kv_t *kv, int32_t seq, int32_t n_pos);
/* Make dst share positions [0, n_pos) of src (dst must be empty): whole
 * blocks are shared by reference, a partial last block is copied. */
int qd_kv_seq_fork(qd_kv_t *kv, int32_t dst, int32_t src, int32_t n_pos);
/* Number of positions held for seq. */
int32_t qd_kv_seq_len(const qd_kv_t *kv, int32_t seq);
int32_t qd_kv_blocks_total(const qd_kv_t *kv);
/* Blocks that can be taken now: free plus idle cached (evictable). */
int32_t qd_kv_blocks_free(const qd_kv_t *kv);
/* Idle cached blocks (registered, no sequence holds them). */
int32_t qd_kv_blocks_cached(const qd_kv_t *kv);

/* ---- prefix cache ----------------------------------------------------- */
/*
 * Register the full blocks of seq that cover toks[0, n_toks) (the tokens at
 * positions 0.. of seq; at most its length) under that token prefix, so
 * that they outlive the sequence (idle, evicted least recently released
 * first when the pool needs blocks) and later prompts can adopt them.
 * Blocks equal to ones already registered are left alone.
 */
void qd_kv_seq_cache(qd_kv_t *kv, int32_t seq, const int32_t *toks,
                     int32_t n_toks);
/*
 * Start the empty sequence seq with the longest registered prefix of
 * toks[0, n_toks), whole blocks only, shared by reference. Returns the
 * positions adopted (a multiple of QD_KV_BLOCK, <= n_toks) or QD_EINVAL.
 * To keep the logits of the last prompt token, pass n_prompt - 1.
 */
int32_t qd_kv_seq_adopt(qd_kv_t *kv, int32_t seq, const int32_t *toks,
                        int32_t n_toks);
size_t qd_kv_block_bytes(const qd_kv_t *kv);

#endif /* QUANTD_ENGINE_H */
