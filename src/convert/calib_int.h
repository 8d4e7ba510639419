/*
 * calib_int.h — internals of calibrated quantization, shared by
 * convert/calib.c (activation statistics, imatrix files, the calibrated
 * model writer), convert/awq_gguf.c (AWQ scale search) and convert/gptq.c
 * (GPTQ error compensation), and used directly by tests/unit/test_calib.c.
 */
#ifndef QUANTD_CALIB_INT_H
#define QUANTD_CALIB_INT_H

#include <stdint.h>

#include "quantd/convert.h"
#include "quantd/engine.h"

/* What a calibration run keeps besides per-column sums. */
enum {
    QD_CALIB_WANT_H = 1,       /* Σ x xᵀ per input (GPTQ) */
    QD_CALIB_WANT_SAMPLES = 2, /* a sample of input rows (AWQ) */
};

/* Statistics of the input of one weight (layer il, weight id). The inputs
 * of attn_k/v equal attn_q's and ffn_up's equal ffn_gate's: H and samples
 * are kept only for the first of each group (qd__calib_slot maps them). */
typedef struct {
    int64_t n_cols;
    int64_t count;   /* rows seen */
    double *sum2;    /* [n_cols] Σ x² */
    double *sum_abs; /* [n_cols] Σ |x| */
    double *h;       /* [n_cols * n_cols] Σ x xᵀ, or NULL */
    float *sample;   /* [n_sample * n_cols] rows, or NULL */
    int64_t n_sample, cap_sample;
} qd_calib_slot_t;

typedef struct qd_calib_stats qd_calib_stats_t;

/* Tokenize the text file at path with m's tokenizer (BOS as the model
 * wants). *toks freed with qd_free. */
int qd__calib_tokens(const qd_model_t *m, const char *path, int32_t **toks,
                     int64_t *n_toks);
/* Run m over toks in windows of p->n_ctx (each from an empty cache, first
 * token replaced by BOS as llama-imatrix does) and gather statistics of
 * every matmul input. flags: QD_CALIB_WANT_*; max_samples bounds the rows
 * kept per group (spread evenly over the text). *out freed with
 * qd__calib_free. */
int qd__calib_collect(const qd_model_t *m, const int32_t *toks,
                      int64_t n_toks, const qd_calib_params_t *p, int flags,
                      int64_t max_samples, qd_calib_stats_t **out);
void qd__calib_free(qd_calib_stats_t *st);
/* Slot of weight w in layer il (il = -1 with QD_MM_OUTPUT); the group
 * leader's slot (which holds h / sample) when group != 0. NULL if none. */
const qd_calib_slot_t *qd__calib_slot(const qd_calib_stats_t *st, int il,
                                      qd_mm_weight_t w, int group);
/* Windows evaluated. */
int32_t qd__calib_chunks(const qd_calib_stats_t *st);
/* GGUF tensor name of a weight ("blk.3.attn_q.weight", "output.weight"). */
void qd__calib_weight_name(int il, qd_mm_weight_t w, char *buf, size_t cap);

/* ---- AWQ (awq_gguf.c) ---------------------------------------------------- */
/* s_j = a_j^alpha (a: mean |x| per column, floored at 1e-8), normalized by
 * sqrt(max(s) * min(s)). */
void qd__awq_scales(const double *act_mean, int64_t n, float alpha, float *s);
/* How the searched weights will be stored: round(ud, k, w, rows, n, out)
 * writes to out (rows × n floats) the dequantized rounding of w (weight k
 * of the group) in the target format. 0 or a QD_E* code. */
typedef struct {
    int (*round)(void *ud, int k, const float *w, int64_t rows, int64_t n,
                 float *out);
    void *ud;
} qd_awq_rounder_t;
/* The rounder of GGUF block types: weight k becomes types[k] (quantize,
 * then to_float; float types are used as is). */
qd_awq_rounder_t qd__awq_type_rounder(const qd_type_t *types);
/* Grid-search alpha in {0, 1/20, …, 19/20} for the nw weights that share
 * an input of n columns (w[k]: rows[k] × n floats, rounded by rd):
 * minimizes Σ_k ‖W_k x − R(W_k diag(s)) diag(1/s) x‖² over the sample rows
 * x (n_sample × n), the products on n_threads (0: physical cores; the
 * result does not depend on it). Fills s[n], *alpha, and *err / *err0
 * (the error at the best alpha and at alpha = 0, i.e. plain rounding).
 * 0, QD_ENOMEM or the rounder's error. */
int qd__awq_search(const float *sample, int64_t n_sample, int64_t n,
                   const double *act_mean, const float *const *w,
                   const int64_t *rows, int nw, const qd_awq_rounder_t *rd,
                   int n_threads, float *s, float *alpha, double *err,
                   double *err0);

/* ---- GPTQ (gptq.c) ------------------------------------------------------- */
/* Quantize w (rows × cols floats, row-major) to type with GPTQ's error
 * compensation for inputs with second moment h (cols × cols, Σ x xᵀ; any
 * positive multiple works): damping damp · mean(diag h), H⁻¹ through
 * Cholesky, then one quantization block of columns at a time (its scales
 * from the current, error-updated weights, by the type's own quantizer),
 * the block's error propagated to the later columns, in lazy batches of
 * 128 columns. dst gets rows × qd_row_size(type, cols) bytes. Falls back
 * to plain rounding when H is not positive definite even after damping
 * (logged). 0, QD_EINVAL (cols not a multiple of the block) or QD_ENOMEM. */
int qd__gptq_quantize(qd_type_t type, const float *w, int64_t rows,
                      int64_t cols, const double *h, double damp, void *dst);

/* ---- folded model (calib.c) ---------------------------------------------- */
/* Write in_path's model with AWQ scales for a fixed alpha folded in (no
 * search, no quantization: tensors keep their types): for tests of the
 * folding's exactness. */
int qd__awq_write_folded(const char *in_path, const char *out_path,
                         const char *text_path, const qd_calib_params_t *p,
                         float alpha);
/* Run AWQ's search on in_path's model over the calibration text with the
 * weights rounded by rd (rd->round's k: 0..2 for q/k/v, 0..1 gate/up, 0
 * for attn_output / ffn_down) and write the model with the chosen scales
 * folded in, unquantized: every tensor the fold changed as F32, the rest
 * as stored. The export to AWQ checkpoints quantizes that file. */
int qd__awq_write_searched(const char *in_path, const char *out_path,
                           const char *text_path, const qd_calib_params_t *p,
                           const qd_awq_rounder_t *rd);

#endif
