/*
 * convert.h — model conversion: quantizing a GGUF model with llama.cpp's
 * mixed-precision recipes, and measuring a model's perplexity and its KL
 * divergence from a base model.
 *
 * A file type (qd_ftype_t, llama.cpp's `llama_ftype`, stored in
 * general.file_type) names a recipe: a default tensor type plus rules that
 * give some tensors more bits (attn_v and ffn_down in chosen layers, the
 * output matrix) — see convert/recipe.c and docs/quantization.md.
 * qd_quantize_model() applies it tensor by tensor, streaming: memory stays
 * near one tensor's float copy plus its quantized form.
 */
#ifndef QUANTD_CONVERT_H
#define QUANTD_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/engine.h"
#include "quantd/quant.h"

/* llama.cpp's llama_ftype ids (llama.h), as stored in general.file_type. */
typedef enum {
    QD_FTYPE_ALL_F32 = 0,
    QD_FTYPE_MOSTLY_F16 = 1,
    QD_FTYPE_MOSTLY_Q4_0 = 2,
    QD_FTYPE_MOSTLY_Q4_1 = 3,
    QD_FTYPE_MOSTLY_Q8_0 = 7,
    QD_FTYPE_MOSTLY_Q5_0 = 8,
    QD_FTYPE_MOSTLY_Q5_1 = 9,
    QD_FTYPE_MOSTLY_Q2_K = 10,
    QD_FTYPE_MOSTLY_Q3_K_S = 11,
    QD_FTYPE_MOSTLY_Q3_K_M = 12,
    QD_FTYPE_MOSTLY_Q3_K_L = 13,
    QD_FTYPE_MOSTLY_Q4_K_S = 14,
    QD_FTYPE_MOSTLY_Q4_K_M = 15,
    QD_FTYPE_MOSTLY_Q5_K_S = 16,
    QD_FTYPE_MOSTLY_Q5_K_M = 17,
    QD_FTYPE_MOSTLY_Q6_K = 18,
    QD_FTYPE_MOSTLY_IQ4_NL = 25,
    QD_FTYPE_MOSTLY_IQ4_XS = 30,
    QD_FTYPE_MOSTLY_BF16 = 32,
} qd_ftype_t;

/* Parse a llama-quantize type name ("Q4_K_M", "q8_0", "F16"; "Q4_K" and
 * "Q5_K" mean their _M variants, "Q3_K" Q3_K_M, as llama-quantize reads
 * them). 0 or QD_EINVAL. */
int qd_ftype_from_name(const char *name, qd_ftype_t *out);
/* "Q4_K_M"; "?" for an unknown id. */
const char *qd_ftype_name(qd_ftype_t ft);
/* The tensor type most matrices get (Q4_K for Q4_K_M), or QD_TYPE_COUNT for
 * an unknown ftype. */
qd_type_t qd_ftype_default_type(qd_ftype_t ft);

/* ---- recipe: which tensor gets which type ------------------------------ */

/* --tensor-type PATTERN=TYPE: POSIX extended regex searched anywhere in the
 * tensor name (so a plain substring like "ffn_down" works); first match
 * wins. */
typedef struct {
    const char *pattern;
    qd_type_t type;
} qd_tensor_override_t;

typedef struct {
    qd_ftype_t ftype;
    int pure;                 /* one type for every quantizable tensor */
    int has_imatrix;          /* some rules differ with an imatrix */
    /* --output-tensor-type / --token-embedding-type, when the flag is set */
    int set_output_type, set_token_embd_type;
    qd_type_t output_type, token_embd_type;
    const qd_tensor_override_t *overrides;
    int n_overrides;
} qd_recipe_params_t;

/* What the recipe needs to know about the model (from its metadata). */
typedef struct {
    const char *arch;   /* general.architecture ("llama") */
    int32_t n_layer;    /* <arch>.block_count */
    int32_t n_head;     /* <arch>.attention.head_count */
    int32_t n_head_kv;  /* <arch>.attention.head_count_kv (0: = n_head) */
    int32_t n_expert;   /* <arch>.expert_count (0: dense) */
} qd_recipe_model_t;

typedef struct {
    const char *name;
    qd_type_t type;     /* type in the input file */
    int64_t ne[4];      /* unused dims are 1 */
} qd_recipe_tensor_t;

/* Why a tensor got its type (for logs and tests). */
enum {
    QD_RECIPE_KEEP = 1,      /* not quantizable (norms, 1-D, ...): kept */
    QD_RECIPE_OVERRIDE = 2,  /* a --tensor-type pattern matched */
    QD_RECIPE_FALLBACK = 4,  /* row length not a multiple of the block */
    QD_RECIPE_F16_FALLBACK = 8, /* no quantized fallback fits: F16 */
};

/*
 * Decide the output type of each of n tensors, processed in the order given
 * (the rules count attn_v / ffn_down tensors as they come, so pass them in
 * output order: qd_recipe_sort() gives llama.cpp's). out_types[i] gets the
 * type; flags[i] (may be NULL) a QD_RECIPE_* mask. Fallbacks and overrides
 * are logged. 0, QD_EINVAL (a pattern that does not compile; qd_errmsg says
 * which) or QD_ENOMEM.
 */
int qd_recipe_plan(const qd_recipe_model_t *model,
                   const qd_recipe_params_t *params,
                   const qd_recipe_tensor_t *tensors, int64_t n,
                   qd_type_t *out_types, int *flags);

/* Order of tensors llama-quantize writes: by layer number ("blk.N."; other
 * tensors first), then by name (strcmp). Fills perm[0..n) with indices into
 * names. 0 or QD_ENOMEM. */
int qd_recipe_sort(const char *const *names, int64_t n, int64_t *perm);

/* 1 if llama.cpp would quantize a tensor of this name and shape at all
 * (2-D or more after dropping trailing 1s, name ends in "weight", not a
 * norm and not one of the small special tensors). */
int qd_recipe_quantizable(const char *name, const int64_t ne[4]);

/* ---- quantizing a model ------------------------------------------------ */

typedef struct {
    int64_t i_tensor;   /* 1-based count of tensors done */
    int64_t n_tensors;
    const char *name;
    qd_type_t from, to;
    uint64_t bytes_in_done;   /* input tensor bytes processed so far */
    uint64_t bytes_in_total;
    uint64_t bytes_out_done;  /* output tensor bytes written so far */
    double elapsed_s;
} qd_quantize_progress_t;

typedef struct {
    qd_recipe_params_t recipe;
    int n_threads;            /* 0: physical cores */
    const char *imatrix_path; /* NULL: none */
    /* Called after each tensor (from the calling thread). */
    void (*progress)(void *ud, const qd_quantize_progress_t *p);
    void *progress_ud;
} qd_quantize_params_t;

void qd_quantize_params_default(qd_quantize_params_t *p);

typedef struct {
    int64_t n_tensors;
    int64_t n_quantized;      /* tensors converted to another type */
    int64_t n_fallback;
    uint64_t bytes_in, bytes_out; /* tensor data */
    int64_t n_weights;        /* elements of all tensors */
    int64_t n_type[QD_TYPE_COUNT]; /* tensors per output type */
} qd_quantize_stats_t;

/*
 * Read the GGUF model at in_path (F32/F16/BF16 or already quantized, which
 * is dequantized first with a warning) and write it to out_path with the
 * types chosen by the recipe. Metadata is copied verbatim, with
 * general.file_type, general.quantization_version and a quantize.* record
 * (tool, type, method, imatrix file and sha256) set. The file is written
 * to out_path.tmp and renamed at the end; on failure nothing is left.
 * Output bytes depend only on the input and params, not on n_threads.
 * stats may be NULL. 0 or a QD_E* code with qd_errmsg() set.
 */
int qd_quantize_model(const char *in_path, const char *out_path,
                      const qd_quantize_params_t *params,
                      qd_quantize_stats_t *stats);

/* ---- perplexity and KL divergence ------------------------------------- */
/*
 * As llama.cpp's llama-perplexity: the tokens are cut into non-overlapping
 * windows of n_ctx; each window is evaluated from an empty cache with its
 * first token replaced by BOS (when the vocabulary has one), and only the
 * predictions of the second half are scored (tokens n_ctx/2 + 1 .. n_ctx-1
 * of the window, n_ctx - 1 - n_ctx/2 per window), so every scored token
 * has at least n_ctx/2 tokens of context.
 *
 * With a base model the same windows run through both models and the
 * quantized model's next-token distribution Q is compared with the base's
 * P at every scored position: KL(P || Q) = sum_i P_i (log P_i - log Q_i),
 * computed in double from the float logits.
 */
typedef struct {
    int32_t n_ctx;     /* window length (default 512) */
    int32_t n_chunks;  /* windows to evaluate (0: all that fit) */
    int32_t n_threads; /* 0: physical cores */
    /* Called after each window (from the calling thread). */
    void (*progress)(void *ud, int32_t chunk, int32_t n_chunks, double ppl);
    void *progress_ud;
} qd_ppl_params_t;

void qd_ppl_params_default(qd_ppl_params_t *p);

typedef struct {
    int32_t n_chunks;
    int64_t n_scored;           /* tokens scored */
    double ppl, ppl_err;        /* exp(mean NLL), and its standard error */
    /* with a base model: */
    int has_base;
    double base_ppl, base_ppl_err;
    double kld_mean, kld_err;   /* mean KL(base || model), std. error */
    double kld_median, kld_p99, kld_max;
    double top1_agree;          /* fraction of positions with the same argmax */
    double ln_ppl_ratio, ln_ppl_ratio_err; /* mean of NLL_model - NLL_base */
} qd_ppl_result_t;

/*
 * Perplexity of model m over toks (n_toks ids), and with base != NULL the
 * KL divergence of m from base. The models must share the vocabulary size.
 * 0, QD_EINVAL (fewer tokens than one window, vocabulary
 * mismatch) or an engine error; qd_errmsg() says which.
 */
int qd_perplexity(const qd_model_t *m, const qd_model_t *base,
                  const int32_t *toks, int64_t n_toks,
                  const qd_ppl_params_t *p, qd_ppl_result_t *out);

/* ---- calibration: imatrix, AWQ, GPTQ ----------------------------------- */
/*
 * Calibration runs the model (F32/F16 recommended) over a text in windows
 * of n_ctx tokens, each from an empty cache with its first token replaced
 * by BOS, and watches the input of every weight matmul (qd_ctx_set_observer).
 */
typedef struct {
    int32_t n_ctx;     /* window length (default 512) */
    int32_t n_chunks;  /* windows to run (0: all that fit) */
    int32_t n_threads; /* 0: physical cores */
} qd_calib_params_t;

void qd_calib_params_default(qd_calib_params_t *p);

/*
 * `quantd imatrix`: per weight matrix (output.weight excluded, as
 * llama-imatrix without --process-output) the sums of squared input
 * activations per column over text_path, written to out_path in
 * llama-imatrix's GGUF format (NAME.in_sum2 [n_cols, 1], NAME.counts [1, 1],
 * general.type "imatrix", imatrix.datasets / chunk_count / chunk_size).
 * *n_chunks_out (may be NULL) gets the windows run. 0 or a QD_E* code.
 */
int qd_imatrix_compute(const char *model_path, const char *text_path,
                       const qd_calib_params_t *p, const char *out_path,
                       int32_t *n_chunks_out);

typedef enum {
    QD_QUANT_RTN = 0, /* plain rounding (qd_quantize_model) */
    QD_QUANT_AWQ,     /* activation-aware scales folded into the norms */
    QD_QUANT_GPTQ,    /* Hessian-based error compensation */
} qd_quant_method_t;

/*
 * Quantize in_path to out_path with the recipe of qp (types exactly as
 * qd_quantize_model chooses them; qp->imatrix_path must be NULL) using a
 * calibration text:
 *  AWQ: per group of weights sharing an input (attn_q/k/v after attn_norm,
 *    ffn_gate/up after ffn_norm, ffn_down after ffn_up's rows), scales
 *    s = mean|x|^alpha with alpha grid-searched on sampled input rows; 1/s
 *    folded into the norm weight (ffn_up's rows for ffn_down), s into the
 *    weights' columns; attn_output after attn_v's rows when their shapes
 *    match (no grouped-query attention), else left alone.
 *  GPTQ: every quantized layer matrix by qd__gptq_quantize with H from its
 *    own input; output.weight and token_embd by plain rounding.
 * The output is a plain GGUF (quantize.method "awq" / "gptq"). Single
 * threaded apart from the calibration forward passes and the AWQ search's
 * error products (cp->n_threads); holds the whole output in memory. 0 or a QD_E* code with qd_errmsg() set.
 */
int qd_quantize_calibrated(const char *in_path, const char *out_path,
                           const qd_quantize_params_t *qp,
                           qd_quant_method_t method, const char *calib_path,
                           const qd_calib_params_t *cp,
                           qd_quantize_stats_t *stats);

#endif /* QUANTD_CONVERT_H */
