/* test_widen.c — gen-model --widen (convert/widen.c): stories260K padded
 * with zeros to widths of 128 computes the same logits, and its shapes are
 * the ones an AWQ checkpoint needs. */
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/engine.h"
#include "quantd/gguf.h"
#include "util.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

Test(widen, stories260k_same_logits_in_wider_shapes)
{
    const char *sh = getenv("QD_SHARED");
    if (!sh || !*sh)
        cr_skip_test("stories260K not found: QD_SHARED");
    char src[1024], dst[512];
    snprintf(src, sizeof src, "%s/gguf/stories260K.gguf", sh);
    snprintf(dst, sizeof dst, "%s/widen-%d.gguf",
             getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp", (int)getpid());
    cr_assert_eq(qd__model_widen(src, dst, 128), 0, "%s", qd_errmsg());

    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(dst, &g), 0);
    uint32_t v;
    cr_assert_eq(qd_gguf_get_u32(g, "llama.embedding_length", &v), 0);
    cr_expect_eq(v, 128);
    cr_assert_eq(qd_gguf_get_u32(g, "llama.feed_forward_length", &v), 0);
    cr_expect_eq(v, 256);
    cr_assert_eq(qd_gguf_get_u32(g, "llama.attention.head_count", &v), 0);
    cr_expect_eq(v, 16);
    cr_assert_eq(qd_gguf_get_u32(g, "llama.attention.head_count_kv", &v), 0);
    cr_expect_eq(v, 8); /* the grouped-query ratio kept */
    const qd_gguf_tensor_t *t = qd_gguf_find_tensor(g, "blk.2.ffn_down.weight");
    cr_assert_not_null(t);
    cr_expect(t->ne[0] == 256 && t->ne[1] == 128 && t->type == QD_TYPE_F32);
    qd_gguf_close(g);

    int32_t toks[40];
    for (int i = 0; i < 40; i++)
        toks[i] = i == 0 ? 1 : 3 + (i * 97) % 509;
    int32_t na, nb;
    float *a = tu_logits(src, toks, 40, 1, &na);
    float *b = tu_logits(dst, toks, 40, 1, &nb);
    cr_assert_eq(na, nb);
    float maxd = 0, maxa = 0;
    for (int i = 0; i < 40 * na; i++) {
        maxd = fmaxf(maxd, fabsf(a[i] - b[i]));
        maxa = fmaxf(maxa, fabsf(a[i]));
    }
    cr_log_info("widened vs original: max |dlogit| %g (max |logit| %g)", maxd,
                maxa);
    cr_expect_leq(maxd, 1e-5f * maxa, "max logit difference %g", maxd);
    free(a);
    free(b);
    unlink(dst);

    /* a model that is not llama is refused with a message */
    snprintf(src, sizeof src, "%s/vocab/ggml-vocab-gpt-2.gguf", sh);
    cr_expect_lt(qd__model_widen(src, dst, 128), 0);
}
