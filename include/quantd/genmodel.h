/*
 * genmodel.h — deterministic random-weight Llama models (GGUF), for
 * benchmarks and tests: `quantd gen-model`.
 */
#ifndef QUANTD_GENMODEL_H
#define QUANTD_GENMODEL_H

#include <stdint.h>

#include "quantd/quant.h"

typedef struct {
    int32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    int32_t n_ctx;    /* llama.context_length */
    float rope_base, rms_eps;
    qd_type_t type;   /* F32, F16, Q8_0, Q4_0, … (matrices) */
    int q4_k_m;       /* 1: llama.cpp's Q4_K_M mix (type ignored) */
    uint64_t seed;
} qd_genmodel_params_t;

/* Fill p from a preset name ("1b": Llama-3.2-1B shape, "tiny"); F16,
 * seed 1. QD_EINVAL for an unknown name. */
int qd_genmodel_preset(const char *name, qd_genmodel_params_t *p);
/* Set p->type / p->q4_k_m from "F16", "Q8_0", "Q4_0", "Q4_K_M", …
 * QD_EINVAL if unknown. */
int qd_genmodel_set_type(qd_genmodel_params_t *p, const char *name);
/* Write the model to path (atomically). Weights N(0, 1/sqrt(fan_in)),
 * norms 1, vocabulary <unk> <s> </s>, 256 byte tokens, filler pieces.
 * Generated tensor by tensor through a temporary file beside path. */
int qd_genmodel_write(const qd_genmodel_params_t *p, const char *path);

#endif
