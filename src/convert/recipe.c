/*
 * recipe.c — which tensor gets which type when a model is quantized.
 *
 * The rules are llama.cpp's (llama_tensor_get_type in src/llama-quant.cpp),
 * so that `quantd quantize in out Q4_K_M` gives the same tensor types as
 * `llama-quantize in out Q4_K_M` and files of either tool are interchangeable:
 *
 *  - only matrices are quantized: tensors of 2+ dimensions (trailing 1s
 *    dropped) whose name ends in "weight", minus norms and a few small
 *    special tensors; everything else keeps its type;
 *  - the output matrix (and token_embd when it doubles as the output, i.e.
 *    the model has no output.weight) gets Q6_K, or Q8_0 for a Q8_0 file or
 *    when its rows do not split into blocks of the default type;
 *  - attn_v and ffn_down get more bits in some layers: use_more_bits() picks
 *    the first and last eighth of the layers and every third one between;
 *    which type they get depends on the file type (the _S/_M/_L variants);
 *  - a tensor whose row length is not a multiple of its type's block falls
 *    back to a type with 32-value blocks, else F16.
 *
 * The attn_v / ffn_down rules count those tensors in the order they come,
 * as llama.cpp does, so the caller passes tensors in output order.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quantd/common.h"
#include "quantd/convert.h"

#define MOD "quantize"

/* ---- file types --------------------------------------------------------- */

static const struct {
    const char *name;
    qd_ftype_t ftype;
    qd_type_t type; /* default tensor type */
} ftypes[] = {
    {"F32", QD_FTYPE_ALL_F32, QD_TYPE_F32},
    {"F16", QD_FTYPE_MOSTLY_F16, QD_TYPE_F16},
    {"BF16", QD_FTYPE_MOSTLY_BF16, QD_TYPE_BF16},
    {"Q4_0", QD_FTYPE_MOSTLY_Q4_0, QD_TYPE_Q4_0},
    {"Q4_1", QD_FTYPE_MOSTLY_Q4_1, QD_TYPE_Q4_1},
    {"Q5_0", QD_FTYPE_MOSTLY_Q5_0, QD_TYPE_Q5_0},
    {"Q5_1", QD_FTYPE_MOSTLY_Q5_1, QD_TYPE_Q5_1},
    {"Q8_0", QD_FTYPE_MOSTLY_Q8_0, QD_TYPE_Q8_0},
    {"Q2_K", QD_FTYPE_MOSTLY_Q2_K, QD_TYPE_Q2_K},
    {"Q3_K_S", QD_FTYPE_MOSTLY_Q3_K_S, QD_TYPE_Q3_K},
    {"Q3_K_M", QD_FTYPE_MOSTLY_Q3_K_M, QD_TYPE_Q3_K},
    {"Q3_K_L", QD_FTYPE_MOSTLY_Q3_K_L, QD_TYPE_Q3_K},
    {"Q4_K_S", QD_FTYPE_MOSTLY_Q4_K_S, QD_TYPE_Q4_K},
    {"Q4_K_M", QD_FTYPE_MOSTLY_Q4_K_M, QD_TYPE_Q4_K},
    {"Q5_K_S", QD_FTYPE_MOSTLY_Q5_K_S, QD_TYPE_Q5_K},
    {"Q5_K_M", QD_FTYPE_MOSTLY_Q5_K_M, QD_TYPE_Q5_K},
    {"Q6_K", QD_FTYPE_MOSTLY_Q6_K, QD_TYPE_Q6_K},
    {"IQ4_NL", QD_FTYPE_MOSTLY_IQ4_NL, QD_TYPE_IQ4_NL},
    {"IQ4_XS", QD_FTYPE_MOSTLY_IQ4_XS, QD_TYPE_IQ4_XS},
};

int qd_ftype_from_name(const char *name, qd_ftype_t *out)
{
    /* llama-quantize's short names for the _M variants */
    static const struct { const char *alias, *name; } aliases[] = {
        {"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};
    for (size_t i = 0; i < QD_ARRAY_SIZE(aliases); i++)
        if (!strcasecmp(name, aliases[i].alias))
            name = aliases[i].name;
    for (size_t i = 0; i < QD_ARRAY_SIZE(ftypes); i++) {
        if (!strcasecmp(name, ftypes[i].name)) {
            *out = ftypes[i].ftype;
            return 0;
        }
    }
    return QD_EINVAL;
}

const char *qd_ftype_name(qd_ftype_t ft)
{
    for (size_t i = 0; i < QD_ARRAY_SIZE(ftypes); i++)
        if (ftypes[i].ftype == ft)
            return ftypes[i].name;
    return "?";
}

qd_type_t qd_ftype_default_type(qd_ftype_t ft)
{
    for (size_t i = 0; i < QD_ARRAY_SIZE(ftypes); i++)
        if (ftypes[i].ftype == ft)
            return ftypes[i].type;
    return QD_TYPE_COUNT;
}

/* ---- which tensors are quantized ---------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* ggml_n_dims: dimensions up to the last one > 1 (at least 1). */
static int n_dims_eff(const int64_t ne[4])
{
    for (int d = 3; d >= 1; d--)
        if (ne[d] > 1)
            return d + 1;
    return 1;
}

int qd_recipe_quantizable(const char *name, const int64_t ne[4])
{
    /* Matrices llama.cpp keeps as they are: small or special ones. */
    static const char *const keep[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight",
        "altup", "laurel", "per_layer_model_proj", "ssm_conv1d",
        "shortconv.conv.weight", "indexer.k_proj.weight",
        "indexer.q_proj.weight", "time_mix_first.weight",
        "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
        "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
        "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
        "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
        ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"};
    if (n_dims_eff(ne) < 2 || !ends_with(name, "weight"))
        return 0;
    if (!strcmp(name, "position_embd.weight") ||
        !strcmp(name, "token_types.weight"))
        return 0;
    for (size_t i = 0; i < QD_ARRAY_SIZE(keep); i++)
        if (strstr(name, keep[i]))
            return 0;
    return 1;
}

/* ---- categories --------------------------------------------------------- */

typedef enum {
    CAT_OTHER = 0,
    CAT_TOKEN_EMBD,
    CAT_OUTPUT,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_Q,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
} category_t;

static category_t category_of(const char *name)
{
    static const struct { const char *needle; category_t cat; } subs[] = {
        {"attn_qkv.weight", CAT_ATTN_QKV}, {"attn_kv_b.weight", CAT_ATTN_KV_B},
        {"attn_v.weight", CAT_ATTN_V},     {"attn_k.weight", CAT_ATTN_K},
        {"attn_q.weight", CAT_ATTN_Q},     {"attn_output.weight", CAT_ATTN_OUTPUT},
        {"ffn_up", CAT_FFN_UP},            {"ffn_gate", CAT_FFN_GATE},
        {"ffn_down", CAT_FFN_DOWN}};
    if (!strcmp(name, "output.weight"))
        return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") ||
        !strcmp(name, "per_layer_token_embd.weight"))
        return CAT_TOKEN_EMBD;
    for (size_t i = 0; i < QD_ARRAY_SIZE(subs); i++)
        if (strstr(name, subs[i].needle))
            return subs[i].cat;
    return CAT_OTHER;
}

/* attn_v-like tensors: the most sensitive to quantization */
static int is_attn_v(category_t c)
{
    return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

/* ---- the rules ---------------------------------------------------------- */

typedef struct {
    const qd_recipe_model_t *m;
    const qd_recipe_params_t *p;
    int tied;             /* no output.weight: token_embd is the output */
    int is_falcon, is_70b;
    int n_gqa;
    int n_attn_v, i_attn_v; /* attn_v-like tensors: total, seen */
    int i_ffn_down;       /* ffn_down tensors seen (= layer when dense) */
} state_t;

/* First and last eighth of the layers, and every third layer between. */
static int use_more_bits(int i_layer, int n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 ||
           (i_layer - n_layer / 8) % 3 == 2;
}

/* Layer of a ffn_down tensor: counted when dense; for mixture-of-experts
 * models the experts of a layer are not contiguous, so read "blk.N.". */
static int ffn_layer(const state_t *s, const char *name)
{
    int layer = s->i_ffn_down;
    if (s->m->n_expert > 1 && sscanf(name, "blk.%d.", &layer) != 1)
        layer = s->i_ffn_down;
    return layer;
}

/* The file type's choice for a quantizable tensor, before fallbacks. */
static qd_type_t type_for(state_t *s, const qd_recipe_tensor_t *t,
                          category_t cat, qd_type_t type)
{
    const qd_ftype_t ft = s->p->ftype;
    const int n_layer = s->m->n_layer, n_expert = s->m->n_expert;

    if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD)) {
        if (s->p->set_output_type)
            return s->p->output_type;
        int blck = qd_type_traits(type)->blck_size;
        if (s->is_falcon || t->ne[0] % blck != 0)
            return QD_TYPE_Q8_0;
        return type == QD_TYPE_Q8_0 ? QD_TYPE_Q8_0 : QD_TYPE_Q6_K;
    }
    if (cat == CAT_TOKEN_EMBD)
        return type; /* only the IQ1/IQ2/IQ3 recipes change it */

    if (is_attn_v(cat)) {
        if (ft == QD_FTYPE_MOSTLY_Q2_K)
            type = s->n_gqa >= 4 ? QD_TYPE_Q4_K : QD_TYPE_Q3_K;
        else if (ft == QD_FTYPE_MOSTLY_Q3_K_M)
            type = s->i_attn_v < 2 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K;
        else if (ft == QD_FTYPE_MOSTLY_Q3_K_L)
            type = QD_TYPE_Q5_K;
        else if ((ft == QD_FTYPE_MOSTLY_IQ4_NL ||
                  ft == QD_FTYPE_MOSTLY_IQ4_XS) && s->n_gqa >= 4)
            type = QD_TYPE_Q5_K;
        else if ((ft == QD_FTYPE_MOSTLY_Q4_K_M ||
                  ft == QD_FTYPE_MOSTLY_Q5_K_M) &&
                 use_more_bits(s->i_attn_v, s->n_attn_v))
            type = QD_TYPE_Q6_K;
        else if (ft == QD_FTYPE_MOSTLY_Q4_K_S && s->i_attn_v < 4)
            type = QD_TYPE_Q5_K;
        /* 70B Llama: 8 heads share each attn_v row, so it is small */
        if (s->is_70b && (type == QD_TYPE_Q3_K || type == QD_TYPE_Q4_K))
            type = QD_TYPE_Q5_K;
        if (n_expert == 8)
            type = QD_TYPE_Q8_0;
        s->i_attn_v++;
        return type;
    }
    if (cat == CAT_ATTN_K)
        return n_expert == 8 ? QD_TYPE_Q8_0 : type;
    if (cat == CAT_FFN_DOWN) {
        int il = ffn_layer(s, t->name);
        if (ft == QD_FTYPE_MOSTLY_Q2_K)
            type = QD_TYPE_Q3_K;
        else if (ft == QD_FTYPE_MOSTLY_Q3_K_M)
            type = il < n_layer / 16 ? QD_TYPE_Q5_K
                   : !s->is_falcon || use_more_bits(il, n_layer) ? QD_TYPE_Q4_K
                                                                 : QD_TYPE_Q3_K;
        else if (ft == QD_FTYPE_MOSTLY_Q3_K_L)
            type = s->is_falcon ? QD_TYPE_Q4_K : QD_TYPE_Q5_K;
        else if (ft == QD_FTYPE_MOSTLY_Q4_K_M) {
            if (s->is_falcon)
                type = il < n_layer / 16 ? QD_TYPE_Q6_K
                       : use_more_bits(il, n_layer) ? QD_TYPE_Q5_K
                                                    : QD_TYPE_Q4_K;
            else if (use_more_bits(il, n_layer))
                type = QD_TYPE_Q6_K;
        } else if (il < n_layer / 8 &&
                   (ft == QD_FTYPE_MOSTLY_IQ4_NL ||
                    ft == QD_FTYPE_MOSTLY_IQ4_XS) && !s->p->has_imatrix)
            type = QD_TYPE_Q5_K;
        else if (ft == QD_FTYPE_MOSTLY_Q5_K_M && use_more_bits(il, n_layer))
            type = QD_TYPE_Q6_K;
        else if (ft == QD_FTYPE_MOSTLY_Q4_K_S && !s->is_falcon &&
                 il < n_layer / 8)
            type = QD_TYPE_Q5_K;
        else if ((ft == QD_FTYPE_MOSTLY_Q4_0 || ft == QD_FTYPE_MOSTLY_Q5_0) &&
                 s->p->has_imatrix && il < n_layer / 8)
            /* guards the first layers, which go wrong even with an imatrix */
            type = ft == QD_FTYPE_MOSTLY_Q4_0 ? QD_TYPE_Q4_1 : QD_TYPE_Q5_1;
        s->i_ffn_down++;
        return type;
    }
    if (cat == CAT_ATTN_OUTPUT) {
        if (s->is_falcon)
            return ft == QD_FTYPE_MOSTLY_Q3_K_L ? QD_TYPE_Q4_K : type;
        if (n_expert == 8) {
            switch (ft) {
            case QD_FTYPE_MOSTLY_Q2_K: case QD_FTYPE_MOSTLY_Q3_K_S:
            case QD_FTYPE_MOSTLY_Q3_K_M: case QD_FTYPE_MOSTLY_IQ4_NL:
            case QD_FTYPE_MOSTLY_Q4_K_S: case QD_FTYPE_MOSTLY_Q4_K_M:
            case QD_FTYPE_MOSTLY_IQ4_XS:
                return QD_TYPE_Q5_K;
            default:
                return type;
            }
        }
        if (ft == QD_FTYPE_MOSTLY_Q2_K)
            return QD_TYPE_Q3_K;
        if (ft == QD_FTYPE_MOSTLY_Q3_K_M)
            return QD_TYPE_Q4_K;
        if (ft == QD_FTYPE_MOSTLY_Q3_K_L)
            return QD_TYPE_Q5_K;
        return type;
    }
    return type;
}

/* A type whose block divides the row length, or F16. */
static qd_type_t fallback(const qd_recipe_tensor_t *t, qd_type_t type,
                          int *flags)
{
    int64_t ncols = t->ne[0];
    qd_type_t fb;
    if (ncols % qd_type_traits(type)->blck_size == 0)
        return type;
    switch (type) {
    case QD_TYPE_IQ4_XS:
        fb = QD_TYPE_IQ4_NL;
        break;
    case QD_TYPE_Q2_K:
    case QD_TYPE_Q3_K:
        fb = QD_TYPE_Q4_0;
        break;
    case QD_TYPE_Q4_K:
        fb = QD_TYPE_Q5_0;
        break;
    case QD_TYPE_Q5_K:
        fb = QD_TYPE_Q5_1;
        break;
    case QD_TYPE_Q6_K:
        fb = QD_TYPE_Q8_0;
        break;
    default:
        /* llama.cpp stops here ("no tensor type fallback"); F16 keeps the
         * tensor usable and is what it does when a fallback does not fit */
        fb = QD_TYPE_F16;
        break;
    }
    *flags |= QD_RECIPE_FALLBACK;
    if (ncols % qd_type_traits(fb)->blck_size != 0)
        fb = QD_TYPE_F16;
    if (fb == QD_TYPE_F16)
        *flags |= QD_RECIPE_F16_FALLBACK;
    QD_WARN(MOD, "%s: row length %lld is not a multiple of %d (%s): using %s",
            t->name, (long long)ncols, qd_type_traits(type)->blck_size,
            qd_type_name(type), qd_type_name(fb));
    return fb;
}

static int type_is_quantized(qd_type_t t)
{
    return qd_type_traits(t)->is_quantized;
}

int qd_recipe_plan(const qd_recipe_model_t *model,
                   const qd_recipe_params_t *params,
                   const qd_recipe_tensor_t *tensors, int64_t n,
                   qd_type_t *out_types, int *flags)
{
    qd_type_t dflt = qd_ftype_default_type(params->ftype);
    regex_t *re = NULL;
    int rc = 0, n_re = 0;
    state_t s = {.m = model, .p = params, .tied = 1};

    if (dflt == QD_TYPE_COUNT) {
        qd_set_errmsg("unknown file type %d", (int)params->ftype);
        return QD_EINVAL;
    }
    if (params->n_overrides > 0) {
        re = qd_calloc((size_t)params->n_overrides, sizeof *re);
        if (!re) {
            qd_set_errmsg("out of memory compiling tensor-type patterns");
            return QD_ENOMEM;
        }
        for (; n_re < params->n_overrides; n_re++) {
            const char *pat = params->overrides[n_re].pattern;
            int e = regcomp(&re[n_re], pat, REG_EXTENDED | REG_NOSUB);
            if (e) {
                char msg[128];
                regerror(e, &re[n_re], msg, sizeof msg);
                qd_set_errmsg("--tensor-type pattern '%s': %s", pat, msg);
                rc = QD_EINVAL;
                goto out;
            }
        }
    }

    s.is_falcon = model->arch && !strcmp(model->arch, "falcon");
    s.is_70b = model->arch && !strcmp(model->arch, "llama") &&
               model->n_layer == 80 && model->n_head_kv > 0 &&
               model->n_head != model->n_head_kv;
    {
        int kv = model->n_head_kv > 0 ? model->n_head_kv : model->n_head;
        s.n_gqa = kv > 0 ? model->n_head / kv : 0;
    }
    for (int64_t i = 0; i < n; i++) {
        category_t c = category_of(tensors[i].name);
        if (is_attn_v(c))
            s.n_attn_v++;
        if (c == CAT_OUTPUT)
            s.tied = 0;
    }

    for (int64_t i = 0; i < n; i++) {
        const qd_recipe_tensor_t *t = &tensors[i];
        int f = 0;
        qd_type_t type = dflt;
        if (!qd_recipe_quantizable(t->name, t->ne)) {
            out_types[i] = t->type;
            if (flags)
                flags[i] = QD_RECIPE_KEEP;
            continue;
        }
        category_t cat = category_of(t->name);
        if (params->set_token_embd_type && cat == CAT_TOKEN_EMBD) {
            type = params->token_embd_type;
        } else if (params->set_output_type && cat == CAT_OUTPUT) {
            type = params->output_type;
        } else if (type_is_quantized(dflt)) {
            int manual = 0;
            for (int k = 0; k < n_re; k++) {
                if (regexec(&re[k], t->name, 0, NULL, 0) == 0) {
                    qd_type_t want = params->overrides[k].type;
                    if (want != type)
                        QD_INFO(MOD, "%s: --tensor-type '%s': %s -> %s",
                                t->name, params->overrides[k].pattern,
                                qd_type_name(type), qd_type_name(want));
                    type = want;
                    manual = 1;
                    f |= QD_RECIPE_OVERRIDE;
                    break;
                }
            }
            if (!manual && !params->pure)
                type = type_for(&s, t, cat, type);
        }
        /* (llama.cpp skips this for the two explicit types and would then
         * write a broken tensor; a float type always fits) */
        type = fallback(t, type, &f);
        out_types[i] = type;
        if (flags)
            flags[i] = f;
    }
out:
    for (int k = 0; k < n_re; k++)
        regfree(&re[k]);
    qd_free(re);
    return rc;
}

/* ---- output order ------------------------------------------------------- */

typedef struct {
    const char *name;
    int layer;
    int64_t idx;
} sort_key_t;

static int cmp_key(const void *a, const void *b)
{
    const sort_key_t *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int qd_recipe_sort(const char *const *names, int64_t n, int64_t *perm)
{
    sort_key_t *k = qd_calloc((size_t)(n > 0 ? n : 1), sizeof *k);
    if (!k) {
        qd_set_errmsg("out of memory sorting %lld tensor names", (long long)n);
        return QD_ENOMEM;
    }
    for (int64_t i = 0; i < n; i++) {
        k[i].name = names[i];
        k[i].idx = i;
        if (sscanf(names[i], "blk.%d.", &k[i].layer) != 1)
            k[i].layer = -1;
    }
    qsort(k, (size_t)n, sizeof *k, cmp_key);
    for (int64_t i = 0; i < n; i++)
        perm[i] = k[i].idx;
    qd_free(k);
    return 0;
}
