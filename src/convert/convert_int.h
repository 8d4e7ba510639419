/*
 * convert_int.h — internals shared by the files of src/convert/.
 */
#ifndef QUANTD_CONVERT_INT_H
#define QUANTD_CONVERT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "quantd/convert.h"
#include "quantd/gguf.h"

/* ---- importance matrices (imatrix.c) ------------------------------------ */
/*
 * An importance matrix gives, per weight matrix and input column, the mean
 * squared activation seen on calibration text; quantizers weight their
 * rounding error by it. Two file formats, as llama-imatrix writes them:
 *
 *  GGUF (general.type = "imatrix"): per matrix NAME two F32 tensors,
 *    NAME.in_sum2 [n_cols, n_mat] (sums of x^2) and NAME.counts [1, n_mat]
 *    (tokens seen); the importance is in_sum2 / count (1 where count is 0).
 *
 *  legacy .dat: i32 n_entries, then per entry: i32 name_len, name bytes,
 *    i32 n_call, i32 n_values, f32 values[n_values]; an optional trailer
 *    (i32 last_call, i32 len, dataset name) follows. The importance is
 *    values / n_call (values as stored when n_call is 0).
 */
typedef struct qd_imatrix qd_imatrix_t;

/* Load and validate path (either format, told apart by the GGUF magic).
 * *out freed with qd_imatrix_free. */
int qd_imatrix_load(const char *path, qd_imatrix_t **out);
void qd_imatrix_free(qd_imatrix_t *im);
const char *qd_imatrix_path(const qd_imatrix_t *im);
const char *qd_imatrix_sha256(const qd_imatrix_t *im); /* 64 hex digits */
int64_t qd_imatrix_count(const qd_imatrix_t *im);
/* Importance of tensor `name` with rows of n_cols and n_mat matrices
 * (ne[2]): *w is NULL when absent or of the wrong size (logged), else
 * n_cols values, or n_cols * n_mat with *per_mat = 1. */
void qd_imatrix_lookup(const qd_imatrix_t *im, const char *name,
                       int64_t n_cols, int64_t n_mat, const float **w,
                       int *per_mat);

/* Fill the recipe's model description from the metadata (*arch_out, may
 * be NULL: the architecture name, owned by g, "" when absent). */
void qd__recipe_model_info(const qd_gguf_t *g, qd_recipe_model_t *m,
                           const char **arch_out);
/* The tensors of g in llama.cpp's output order: (*perm)[i] is the reader
 * index of the i-th, (*rt)[i] its description for the recipe. Both
 * qd_malloc'd, freed by the caller (NULL on failure). */
int qd__recipe_tensors(const qd_gguf_t *g, int64_t **perm,
                       qd_recipe_tensor_t **rt);
/* 1 for metadata keys llama-quantize drops from its input (and re-sets or
 * omits): general.file_type, general.quantization_version, split.*. */
int qd__quantize_key_dropped(const char *k);

/* ---- JSON files (awq_export.c) ----------------------------------------- */
/* o written as DIR/NAME, indented, keys in order; errors name `what`
 * ("awq export", ...). */
int qd__json_dump(json_t *o, const char *dir, const char *name, const char *what);

/* ---- tokenizer files (hf_tokenizer.c) --------------------------------- */
/* Write outdir/tokenizer.json and tokenizer_config.json equivalent to g's
 * GGUF vocabulary (SentencePiece "llama" only: see hf_tokenizer.c).
 * *n_unreachable (may be NULL) gets the pieces BPE cannot form (logged).
 * 0, QD_EUNSUPPORTED (another vocabulary type, or tokens that JSON cannot
 * hold; qd_errmsg says which), QD_EIO or QD_ENOMEM. */
int qd__hf_write_tokenizer(const qd_gguf_t *g, const char *outdir,
                           int32_t *n_unreachable);

/* ---- widening (widen.c) ---------------------------------------------- */
/* Write in_path's llama model (any dequantizable types) to out_path as F32
 * with its widths (embedding, heads, feed-forward) padded with zeros up to
 * multiples of mult, computing the same function: see widen.c. */
int qd__model_widen(const char *in_path, const char *out_path, int mult);

#endif /* QUANTD_CONVERT_INT_H */
