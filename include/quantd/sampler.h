/*
 * sampler.h — turning one row of logits into the next token.
 *
 * Order of operations (as llama.cpp's default chain): logit_bias →
 * repetition / presence / frequency penalties over the last repeat_last_n
 * accepted tokens → (temperature <= 0: argmax, lowest id on ties) → top_k →
 * softmax with temperature → top_p → min_p → draw with the sampler's own
 * seeded RNG. Log-probabilities reported are those of the model's raw
 * distribution (plain softmax of the unmodified logits), as OpenAI reports.
 */
#ifndef QUANTD_SAMPLER_H
#define QUANTD_SAMPLER_H

#include <stdint.h>

typedef struct {
    int32_t tok;
    float bias;
} qd_logit_bias_t;

typedef struct {
    float temperature;       /* 0 = greedy */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off */
    float presence_penalty;  /* 0 = off */
    float frequency_penalty; /* 0 = off */
    int32_t repeat_last_n;   /* window for penalties; -1 = whole history */
    uint64_t seed;
    const qd_logit_bias_t *logit_bias; /* copied at create */
    int32_t n_logit_bias;
    int32_t n_top_logprobs; /* 0..QD_SAMPLER_MAX_TOP */
} qd_sampling_params_t;

#define QD_SAMPLER_MAX_TOP 20

/* Defaults: temperature 1, top_k 0, top_p 1, min_p 0, penalties off, seed 0 */
void qd_sampling_params_default(qd_sampling_params_t *p);

typedef struct {
    int32_t tok;
    float logprob; /* of tok under the raw distribution */
    int32_t n_top;
    int32_t top_toks[QD_SAMPLER_MAX_TOP];
    float top_logprobs[QD_SAMPLER_MAX_TOP];
} qd_sample_t;

typedef struct qd_sampler qd_sampler_t;

/* QD_EINVAL if a parameter is out of range (message in qd_errmsg). */
int qd_sampler_create(const qd_sampling_params_t *p, int32_t n_vocab,
                      qd_sampler_t **out);
void qd_sampler_destroy(qd_sampler_t *s);
/* Pick the next token from n_vocab logits (not modified). Fills *out. */
int qd_sampler_sample(qd_sampler_t *s, const float *logits, qd_sample_t *out);
/* Record a token (prompt or generated) in the penalty history. */
void qd_sampler_accept(qd_sampler_t *s, int32_t tok);

#endif /* QUANTD_SAMPLER_H */
