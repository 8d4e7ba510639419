/*
 * types.c — the traits table: one entry per tensor type, indexed by ggml's
 * type id. The per-format reference functions live in quant/ref_*.c and are
 * declared in quant/ref.h.
 */
#include <string.h>
#include <strings.h>

#include "quant/ref.h"
#include "quantd/common.h"
#include "quantd/quant.h"

static const qd_type_traits_t traits[QD_TYPE_COUNT] = {
    [QD_TYPE_F32] = {.name = "F32", .blck_size = 1, .type_size = 4,
                     .vec_dot_type = QD_TYPE_F32,
                     .to_float = qd__to_float_f32,
                     .from_float_ref = qd__from_float_f32,
                     .quantize = qd__quantize_f32,
                     .vec_dot = qd__vec_dot_f32},
    [QD_TYPE_F16] = {.name = "F16", .blck_size = 1, .type_size = 2,
                     .vec_dot_type = QD_TYPE_F16,
                     .to_float = qd__to_float_f16,
                     .from_float_ref = qd__from_float_f16,
                     .quantize = qd__quantize_f16,
                     .vec_dot = qd__vec_dot_f16},
    [QD_TYPE_BF16] = {.name = "BF16", .blck_size = 1, .type_size = 2,
                      .vec_dot_type = QD_TYPE_BF16,
                      .to_float = qd__to_float_bf16,
                      .from_float_ref = qd__from_float_bf16,
                      .quantize = qd__quantize_bf16,
                      .vec_dot = qd__vec_dot_bf16},
    [QD_TYPE_Q4_0] = {.name = "Q4_0", .blck_size = QD_QK4_0,
                      .type_size = sizeof(qd_block_q4_0), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_0,
                      .to_float = qd__to_float_q4_0,
                      .from_float_ref = qd__from_float_q4_0,
                      .quantize = qd__quantize_q4_0,
                      .vec_dot = qd__vec_dot_q4_0},
    [QD_TYPE_Q4_1] = {.name = "Q4_1", .blck_size = QD_QK4_1,
                      .type_size = sizeof(qd_block_q4_1), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_1,
                      .to_float = qd__to_float_q4_1,
                      .from_float_ref = qd__from_float_q4_1,
                      .quantize = qd__quantize_q4_1,
                      .vec_dot = qd__vec_dot_q4_1},
    [QD_TYPE_Q5_0] = {.name = "Q5_0", .blck_size = QD_QK5_0,
                      .type_size = sizeof(qd_block_q5_0), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_0,
                      .to_float = qd__to_float_q5_0,
                      .from_float_ref = qd__from_float_q5_0,
                      .quantize = qd__quantize_q5_0,
                      .vec_dot = qd__vec_dot_q5_0},
    [QD_TYPE_Q5_1] = {.name = "Q5_1", .blck_size = QD_QK5_1,
                      .type_size = sizeof(qd_block_q5_1), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_1,
                      .to_float = qd__to_float_q5_1,
                      .from_float_ref = qd__from_float_q5_1,
                      .quantize = qd__quantize_q5_1,
                      .vec_dot = qd__vec_dot_q5_1},
    [QD_TYPE_Q8_0] = {.name = "Q8_0", .blck_size = QD_QK8_0,
                      .type_size = sizeof(qd_block_q8_0), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_0,
                      .to_float = qd__to_float_q8_0,
                      .from_float_ref = qd__from_float_q8_0,
                      .quantize = qd__quantize_q8_0,
                      .vec_dot = qd__vec_dot_q8_0},
    [QD_TYPE_Q8_1] = {.name = "Q8_1", .blck_size = QD_QK8_1,
                      .type_size = sizeof(qd_block_q8_1), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_1,
                      .to_float = qd__to_float_q8_1,
                      .from_float_ref = qd__from_float_q8_1,
                      .quantize = qd__quantize_q8_1,
                      .vec_dot = qd__vec_dot_q8_1},
    [QD_TYPE_Q2_K] = {.name = "Q2_K", .blck_size = QD_QK_K,
                      .type_size = sizeof(qd_block_q2_K), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_q2_K,
                      .from_float_ref = qd_ref_from_float_q2_K,
                      .quantize = qd_ref_quantize_q2_K,
                      .vec_dot = qd_ref_vec_dot_q2_K},
    [QD_TYPE_Q3_K] = {.name = "Q3_K", .blck_size = QD_QK_K,
                      .type_size = sizeof(qd_block_q3_K), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_q3_K,
                      .from_float_ref = qd_ref_from_float_q3_K,
                      .quantize = qd_ref_quantize_q3_K,
                      .vec_dot = qd_ref_vec_dot_q3_K},
    [QD_TYPE_Q4_K] = {.name = "Q4_K", .blck_size = QD_QK_K,
                      .type_size = sizeof(qd_block_q4_K), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_q4_K,
                      .from_float_ref = qd_ref_from_float_q4_K,
                      .quantize = qd_ref_quantize_q4_K,
                      .vec_dot = qd_ref_vec_dot_q4_K},
    [QD_TYPE_Q5_K] = {.name = "Q5_K", .blck_size = QD_QK_K,
                      .type_size = sizeof(qd_block_q5_K), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_q5_K,
                      .from_float_ref = qd_ref_from_float_q5_K,
                      .quantize = qd_ref_quantize_q5_K,
                      .vec_dot = qd_ref_vec_dot_q5_K},
    [QD_TYPE_Q6_K] = {.name = "Q6_K", .blck_size = QD_QK_K,
                      .type_size = sizeof(qd_block_q6_K), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_q6_K,
                      .from_float_ref = qd_ref_from_float_q6_K,
                      .quantize = qd_ref_quantize_q6_K,
                      .vec_dot = qd_ref_vec_dot_q6_K},
    [QD_TYPE_Q8_K] = {.name = "Q8_K", .blck_size = QD_QK_K,
                      .type_size = sizeof(qd_block_q8_K), .is_quantized = 1,
                      .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_q8_K,
                      .from_float_ref = qd_ref_from_float_q8_K,
                      .quantize = qd_ref_quantize_q8_K,
                      .vec_dot = qd_ref_vec_dot_q8_K},
    [QD_TYPE_IQ4_NL] = {.name = "IQ4_NL", .blck_size = QD_QK4_NL,
                        .type_size = sizeof(qd_block_iq4_nl),
                        .is_quantized = 1, .vec_dot_type = QD_TYPE_Q8_0,
                        .to_float = qd__to_float_iq4_nl,
                        .from_float_ref = qd__from_float_iq4_nl,
                        .quantize = qd__quantize_iq4_nl,
                        .vec_dot = qd__vec_dot_iq4_nl},
    [QD_TYPE_IQ4_XS] = {.name = "IQ4_XS", .blck_size = QD_QK_K,
                        .type_size = sizeof(qd_block_iq4_xs),
                        .is_quantized = 1, .vec_dot_type = QD_TYPE_Q8_K,
                      .to_float = qd_ref_to_float_iq4_xs,
                      .from_float_ref = qd_ref_from_float_iq4_xs,
                      .quantize = qd_ref_quantize_iq4_xs,
                      .vec_dot = qd_ref_vec_dot_iq4_xs},
    [QD_TYPE_I8] = {.name = "I8", .blck_size = 1, .type_size = 1},
    [QD_TYPE_I16] = {.name = "I16", .blck_size = 1, .type_size = 2},
    [QD_TYPE_I32] = {.name = "I32", .blck_size = 1, .type_size = 4},
    [QD_TYPE_I64] = {.name = "I64", .blck_size = 1, .type_size = 8},
    [QD_TYPE_F64] = {.name = "F64", .blck_size = 1, .type_size = 8},
};

/* quantd-private types: ids above QD_TYPE_COUNT, outside the table. */
static const qd_type_traits_t q4_g128_traits = {
    .name = "Q4_G128", .blck_size = QD_QK4_G128,
    .type_size = sizeof(qd_block_q4_g128), .is_quantized = 1,
    .vec_dot_type = QD_TYPE_Q8_1,
    .to_float = qd__to_float_q4_g128,
    .from_float_ref = qd__from_float_q4_g128,
    .quantize = NULL, /* never a target of `quantize` */
    .vec_dot = qd__vec_dot_q4_g128};

int qd_type_internal(int id) { return id == QD_TYPE_Q4_G128; }

int qd_type_valid(int id)
{
    return (id >= 0 && id < QD_TYPE_COUNT && traits[id].name != NULL) ||
           qd_type_internal(id);
}

const qd_type_traits_t *qd_type_traits(qd_type_t t)
{
    return t == QD_TYPE_Q4_G128 ? &q4_g128_traits : &traits[t];
}

const char *qd_type_name(qd_type_t t)
{
    return qd_type_valid((int)t) ? qd_type_traits(t)->name : "?";
}

int qd_type_from_name(const char *name, qd_type_t *out)
{
    for (int i = 0; i < QD_TYPE_COUNT; i++) {
        if (traits[i].name && !strcasecmp(traits[i].name, name)) {
            *out = (qd_type_t)i;
            return 0;
        }
    }
    if (!strcasecmp(q4_g128_traits.name, name)) {
        *out = QD_TYPE_Q4_G128;
        return 0;
    }
    return QD_EINVAL;
}

size_t qd_row_size(qd_type_t t, int64_t n)
{
    const qd_type_traits_t *tr = qd_type_traits(t);
    return (size_t)(n / tr->blck_size) * tr->type_size;
}
