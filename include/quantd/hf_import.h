/*
 * hf_import.h — Hugging Face checkpoints (safetensors + config.json, plain
 * or AWQ/GPTQ 4-bit) ⇄ quantd's GGUF tensors.
 *
 * Import: a model directory is converted once into a GGUF file cached next
 * to it (DIR/quantd-import.gguf) or, when DIR is not writable, in
 * $XDG_CACHE_HOME/quantd or ~/.cache/quantd (named by the SHA-256 of DIR's
 * real path). The cache is keyed by a signature of config.json, the
 * shard index and every *.safetensors file's name, size and mtime; a
 * stale cache is rebuilt. Loading a fresh cache opens no safetensors.
 *
 * Repacking of 4-bit group-quantized linear layers (AWQ GEMM, GPTQ v1/v2,
 * layouts in /work/shared/awq/README.md): every run of 32 input columns
 * inside one group becomes one GGUF block
 *   - Q4_0 (x = d·(q − 8)) when every zero point of the tensor is 8
 *     (GPTQ sym): exact;
 *   - else, when every run of 128 input columns lies inside one group
 *     (group size 128 or a multiple, no act-order across groups), each run
 *     becomes one block of quantd's Q4_G128 (x = d·q + m, 4.25 bits per
 *     weight; quantd/quant.h), d and m as for Q4_1 just below;
 *   - Q4_1 (x = d·q + m) otherwise, with d = s (the fp16 scale, exact) and
 *     m = −z·s computed in f32 (exact: z ≤ 16, s has 11 significant bits)
 *     and rounded once to fp16: |error| ≤ 2^-11·|z·s| (2^-25 if subnormal);
 *   - Q8_0 of the dequantized weights when some 32-run spans groups (GPTQ
 *     act-order) or m overflows fp16; logged per tensor.
 * Rows are output features, so the llama/mistral q/k row permutation
 * (llama.cpp's `permute`) is applied after unpacking.
 */
#ifndef QUANTD_HF_IMPORT_H
#define QUANTD_HF_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/engine.h"
#include "quantd/quant.h"

/* ---- the whole directory ---------------------------------------------- */
typedef struct {
    const char *cache_dir; /* NULL: next to the model, else the user cache */
    int force;             /* 1: rebuild even if the cache is fresh */
} qd_hf_import_params_t;

typedef struct {
    char *gguf_path;        /* the cached GGUF: weights + hyperparameters */
    char *tokenizer_json;   /* DIR/tokenizer.json, or NULL if absent */
    char *tokenizer_config; /* DIR/tokenizer_config.json, or NULL */
    int from_cache;         /* 1: an existing fresh cache was used */
    int n_q4_0, n_q4_1, n_q8_0; /* repacked 4-bit layers by GGUF type */
    int n_q4_g128;          /* … and as quantd's Q4_G128 (group 128) */
    int n_float;            /* tensors stored as F32/F16/BF16 */
} qd_hf_import_result_t;

/* 1 if path is a directory holding config.json. */
int qd_hf_is_model_dir(const char *path);

/*
 * Import DIR (see the top of this file) and fill *out; free it with
 * qd_hf_import_result_free. The GGUF has general.architecture (llama,
 * qwen2, qwen3), the <arch>.* hyperparameters the engine reads,
 * quantd.import.* provenance keys and
 * quantd.generation.{bos_token_id,eos_token_ids} when the directory says;
 * it has NO tokenizer.ggml.* keys: the tokenizer comes from
 * out->tokenizer_json via qd_tokenizer_from_hf.
 */
int qd_hf_import(const char *dir, const qd_hf_import_params_t *p,
                 qd_hf_import_result_t *out);
void qd_hf_import_result_free(qd_hf_import_result_t *r);

/*
 * Open any model path the way the commands and the server accept it: a
 * GGUF file (qd_model_load), or a Hugging Face checkpoint directory (plain,
 * AWQ or GPTQ safetensors + config.json): imported once into a cached GGUF
 * by qd_hf_import, with the tokenizer from the directory's tokenizer.json.
 */
int qd_model_open(const char *path, qd_model_t **out);

/* HF tensor name → GGUF name ("model.layers.3.mlp.up_proj.weight" →
 * "blk.3.ffn_up.weight"); suffix ".weight" or ".bias". 0 or QD_ENOTFOUND. */
int qd_hf_name_to_gguf(const char *hf, char *out, size_t cap);
/* The reverse (GGUF → HF). 0 or QD_ENOTFOUND. */
int qd_hf_name_from_gguf(const char *gguf, char *out, size_t cap);

/* llama.cpp's q/k row permutation on rows of row_bytes bytes:
 * HF row h·hd + j·hd/2 + i → GGUF row h·hd + 2i + j (inverse = 0) or back
 * (inverse = 1). n_rows must be a multiple of 2·n_head. dst != src. */
int qd_hf_permute_rows(void *dst, const void *src, int64_t n_rows,
                       size_t row_bytes, int n_head, int inverse);

/* ---- one 4-bit group-quantized matrix ---------------------------------- */
/* Logical layout of nn.Linear: n_out rows (output features) × n_in
 * columns (input features). Value = (q − z[row, g]) · s[row, g] with
 * g = g_idx[col] (or col / group_size when g_idx is NULL). */
typedef struct {
    int64_t n_out, n_in, group_size, n_groups;
    uint8_t *q;     /* [n_out][n_in] codes 0..15 */
    uint8_t *z;     /* [n_out][n_groups] zero points 0..16 */
    qd_fp16_t *s;   /* [n_out][n_groups] scales */
    int32_t *g_idx; /* [n_in] or NULL */
} qd_q4mat_t;

/* Allocate the arrays (zeroed; g_idx only if with_g_idx). */
int qd_q4mat_init(qd_q4mat_t *m, int64_t n_out, int64_t n_in,
                  int64_t group_size, int with_g_idx);
void qd_q4mat_free(qd_q4mat_t *m); /* arrays only; NULL-safe fields */
/* w[n_out][n_in] = (q − z)·s in f32. */
void qd_q4mat_dequant(const qd_q4mat_t *m, float *w);
/* Permute output rows for llama q/k (see qd_hf_permute_rows). */
int qd_q4mat_permute_rows(qd_q4mat_t *m, int n_head, int inverse);
/* Repack into GGUF rows (type chosen as at the top of this file): *data
 * (freed with qd_free) holds n_out rows of n_in values. */
int qd_q4mat_to_gguf(const qd_q4mat_t *m, qd_type_t *type, void **data,
                     size_t *n_bytes);

/* AutoAWQ GEMM. qweight int32 [K, N/8], qzeros int32 [K/G, N/8], scales
 * fp16 [K/G, N], all little-endian and possibly unaligned. */
int qd_awq_unpack(const void *qweight, const void *qzeros, const void *scales,
                  int64_t n_in, int64_t n_out, int64_t group_size,
                  qd_q4mat_t *out);
/* The reverse; q and z must be 0..15. */
int qd_awq_pack(const qd_q4mat_t *m, int32_t *qweight, int32_t *qzeros,
                qd_fp16_t *scales);

/* AutoGPTQ. qweight int32 [K/8, N], qzeros int32 [n_groups, N/8] (v1:
 * zero − 1), scales fp16 [n_groups, N], g_idx int32 [K] or NULL. */
int qd_gptq_unpack(const void *qweight, const void *qzeros, const void *scales,
                   const void *g_idx, int64_t n_in, int64_t n_out,
                   int64_t n_groups, int64_t group_size, int v2,
                   qd_q4mat_t *out);
/* The reverse (v1 needs z in 1..16, v2 z in 0..15); g_idx written when
 * g_idx_out != NULL (k / G if m->g_idx is NULL). */
int qd_gptq_pack(const qd_q4mat_t *m, int v2, int32_t *qweight,
                 int32_t *qzeros, qd_fp16_t *scales, int32_t *g_idx_out);

/* ---- export (src/convert/awq_export.c) --------------------------------- */
typedef enum { QD_HF_EXPORT_AWQ = 0, QD_HF_EXPORT_GPTQ } qd_hf_export_fmt_t;

typedef struct {
    qd_hf_export_fmt_t format; /* default AWQ */
    int group_size;            /* default 128; -1: whole rows */
    int gptq_sym;              /* GPTQ: symmetric (zero 8) */
    int gptq_act_order;        /* GPTQ: scrambled g_idx (desc_act true) */
    uint64_t seed;             /* act-order permutation */
    const char *tokenizer_json;   /* copied into the directory if set */
    const char *tokenizer_config; /* idem */
    /* AWQ only: calibration text for the activation-aware scale search
     * (NULL: plain rounding), its windows (0: 512 tokens) and how many
     * (0: all), threads of the calibration passes (0: physical cores). */
    const char *calib_path;
    int32_t calib_ctx, calib_chunks, n_threads;
} qd_hf_export_params_t;

void qd_hf_export_params_default(qd_hf_export_params_t *p);

/* AutoAWQ's pseudo_quantize_tensor (zero point, w_bit 4) of w[n_out][n_in]
 * with groups of G consecutive columns, then the packer's re-rounding
 * with fp16 scales. *out initialized here. */
int qd_awq_quantize(const float *w, int64_t n_out, int64_t n_in, int64_t G,
                    qd_q4mat_t *out);
/* AutoGPTQ's RTN quantizer (find_params + quantize, 4 bits, fp16 scales);
 * perm (NULL or a permutation of n_in) groups columns perm[gG..gG+G) as
 * act-order does, filling g_idx. */
int qd_gptq_quantize(const float *w, int64_t n_out, int64_t n_in, int64_t G,
                     int sym, const int32_t *perm, qd_q4mat_t *out);

/* Write an AutoAWQ-GEMM (or GPTQ v1) directory from an F32/F16/BF16 GGUF
 * model (llama, qwen2, qwen3): config.json with quantization_config,
 * model.safetensors (HF names, q/k rows back in HF order, non-linear
 * tensors fp16), generation_config.json, tokenizer files if given.
 * With p->calib_path (AWQ), AWQ's scale search (convert/calib.c, the one
 * `quantize --method awq` runs) picks per-group scales against this
 * format's own rounding and folds them into the model first. */
int qd_hf_export(const char *in_gguf, const char *outdir,
                 const qd_hf_export_params_t *p);
/* AWQ with group_size (0: 128) — what `quantd quantize --to awq` runs. */
int qd_awq_export(const char *in_gguf, const char *outdir,
                  const qd_hf_export_params_t *p);

#endif /* QUANTD_HF_IMPORT_H */
