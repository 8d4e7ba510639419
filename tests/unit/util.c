/* util.c — helpers shared by the unit test files (util.h). */
#include "util.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/engine.h"

float *tu_logits(const char *path, const int32_t *toks, int n, int all, int32_t *n_vocab)
{
    cr_assert(n > 0 && n <= 64);
    qd_model_t *m;
    qd_ctx_t *c;
    qd_ctx_params_t cp;
    cr_assert_eq(qd_model_load(path, &m), 0, "%s", qd_errmsg());
    qd_ctx_params_default(&cp);
    cp.n_batch = n;
    cp.n_ctx = 64;
    cp.kv_type = QD_KV_F32;
    cp.n_threads = 1;
    cr_assert_eq(qd_ctx_create(m, &cp, &c), 0, "%s", qd_errmsg());
    int32_t pos[64], seq[64] = {0};
    int8_t keep[64];
    for (int i = 0; i < n; i++)
        pos[i] = i, keep[i] = 1;
    /* without flags only the last token's logits are computed */
    qd_batch_t b = {.n_tokens = n, .toks = (int32_t *)toks, .pos = pos, .seq = seq,
                    .logits = all ? keep : NULL};
    cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
    *n_vocab = qd_model_hparams(m)->n_vocab;
    int rows = all ? n : 1;
    float *out = malloc((size_t)rows * (size_t)*n_vocab * sizeof *out);
    cr_assert_not_null(out);
    for (int i = 0; i < rows; i++)
        memcpy(out + (size_t)i * *n_vocab, qd_ctx_logits(c, i), (size_t)*n_vocab * sizeof *out);
    qd_ctx_free(c);
    qd_model_free(m);
    return out;
}
