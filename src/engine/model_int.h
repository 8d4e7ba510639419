/*
 * model_int.h — the inside of qd_model_t, shared by engine/model.c (which
 * fills it) and engine/forward.c (which runs it). Every pointer below points
 * into the read-only mapping of the GGUF file; nothing is copied.
 */
#ifndef QUANTD_ENGINE_MODEL_INT_H
#define QUANTD_ENGINE_MODEL_INT_H

#include "quantd/compute.h"
#include "quantd/engine.h"

typedef struct {
    const float *attn_norm; /* (n_embd) */
    qd_qmat_t wq;           /* (n_head * head_dim rows, n_embd cols) */
    qd_qmat_t wk;           /* (n_head_kv * head_dim, n_embd) */
    qd_qmat_t wv;           /* (n_head_kv * head_dim, n_embd) */
    qd_qmat_t wo;           /* (n_embd, n_head * head_dim) */
    const float *bq;        /* (n_head * head_dim) qwen2, else NULL */
    const float *bk;        /* (n_head_kv * head_dim) qwen2, else NULL */
    const float *bv;        /* (n_head_kv * head_dim) qwen2, else NULL */
    const float *q_norm;    /* (head_dim) qwen3, else NULL */
    const float *k_norm;    /* (head_dim) qwen3, else NULL */
    const float *ffn_norm;  /* (n_embd) */
    qd_qmat_t w_gate;       /* (n_ff, n_embd) */
    qd_qmat_t w_up;         /* (n_ff, n_embd) */
    qd_qmat_t w_down;       /* (n_embd, n_ff) */
} qd_layer_t;

struct qd_model {
    qd_hparams_t hp;
    int32_t n_rot;   /* rotated dimensions per head (<= head_dim) */
    qd_gguf_t *gguf; /* owns the mapping */
    qd_tokenizer_t *tok;
    qd_qmat_t tok_embd;      /* (n_vocab, n_embd) */
    const float *out_norm;   /* (n_embd) */
    qd_qmat_t output;        /* (n_vocab, n_embd); tok_embd when tied */
    const float *rope_freqs; /* (n_rot / 2) divisors of the angle, or NULL */
    qd_layer_t *layers;      /* [n_layer] */
    size_t weight_bytes;
    char arch_name[16];
};

#endif
