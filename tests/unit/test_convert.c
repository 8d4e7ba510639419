/*
 * test_convert.c — the quantizer: recipe tables (which tensor gets which
 * type for each file type, fallbacks, overrides), whole files compared with
 * llama-quantize's output ($QD_SHARED/reference), determinism across thread
 * counts, metadata, imatrix files, and bad input; then perplexity and KL
 * divergence on stories260K over the start of tinyshakespeare.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/convert.h"
#include "quantd/engine.h"
#include "quantd/gguf.h"

/* ---- helpers ------------------------------------------------------------- */

static const char *shared_dir(void)
{
    const char *s = getenv("QD_SHARED");
    struct stat st;
    if (!s || stat(s, &st))
        cr_skip_test("reference data not found: QD_SHARED");
    return s;
}

static void tmp_path(char *buf, size_t cap, const char *tag)
{
    const char *dir = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(buf, cap, "%s/conv-%d-%s.gguf", dir, (int)getpid(), tag);
}

static void *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Quantize in -> out with ftype name, pure flag and thread count. */
static int quantize(const char *in, const char *out, const char *type,
                    int pure, int threads)
{
    qd_quantize_params_t p;
    qd_quantize_params_default(&p);
    cr_assert_eq(qd_ftype_from_name(type, &p.recipe.ftype), 0, "%s", type);
    p.recipe.pure = pure;
    p.n_threads = threads;
    return qd_quantize_model(in, out, &p, NULL);
}

/* Every tensor of `ours` has the same name, type, shape and bytes as in
 * `ref`, in the same order. Returns the number of identical tensors. */
static int64_t compare_tensors(const char *ours, const char *ref)
{
    qd_gguf_t *a, *b;
    cr_assert_eq(qd_gguf_open(ours, &a), 0, "%s: %s", ours, qd_errmsg());
    cr_assert_eq(qd_gguf_open(ref, &b), 0, "%s: %s", ref, qd_errmsg());
    cr_assert_eq(qd_gguf_n_tensors(a), qd_gguf_n_tensors(b));
    int64_t same = 0;
    for (int64_t i = 0; i < qd_gguf_n_tensors(a); i++) {
        const qd_gguf_tensor_t *x = qd_gguf_tensor(a, i);
        const qd_gguf_tensor_t *y = qd_gguf_tensor(b, i);
        cr_expect_str_eq(x->name, y->name, "tensor %lld order", (long long)i);
        cr_expect_eq(x->type, y->type, "%s: type %s, llama.cpp %s", x->name,
                     qd_type_name(x->type), qd_type_name(y->type));
        cr_expect_eq(x->offset, y->offset, "%s offset", x->name);
        if (x->type == y->type && x->n_bytes == y->n_bytes &&
            !memcmp(x->data, y->data, x->n_bytes))
            same++;
        else
            cr_expect_fail("%s: bytes differ from llama.cpp's", x->name);
    }
    qd_gguf_close(a);
    qd_gguf_close(b);
    return same;
}

/* ---- recipe tables ------------------------------------------------------- */

#define MAX_T 512

typedef struct {
    qd_recipe_tensor_t t[MAX_T];
    char names[MAX_T][64];
    qd_type_t types[MAX_T];
    int flags[MAX_T];
    int n;
} tlist_t;

static void add(tlist_t *l, const char *name, int64_t ne0, int64_t ne1)
{
    cr_assert_lt(l->n, MAX_T);
    snprintf(l->names[l->n], 64, "%s", name);
    l->t[l->n] = (qd_recipe_tensor_t){.name = l->names[l->n],
                                      .type = QD_TYPE_F32,
                                      .ne = {ne0, ne1, 1, 1}};
    l->n++;
}

/* A Llama-like model in llama-quantize's order: n_embd 4096 ... */
static void make_model(tlist_t *l, int n_layer, int tied)
{
    char nm[64];
    static const char *const blk[] = {
        "attn_k.weight", "attn_norm.weight", "attn_output.weight",
        "attn_q.weight", "attn_v.weight", "ffn_down.weight",
        "ffn_gate.weight", "ffn_norm.weight", "ffn_up.weight"};
    l->n = 0;
    if (!tied)
        add(l, "output.weight", 512, 1000);
    add(l, "output_norm.weight", 512, 1);
    add(l, "token_embd.weight", 512, 1000);
    for (int i = 0; i < n_layer; i++) {
        for (size_t k = 0; k < QD_ARRAY_SIZE(blk); k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s", i, blk[k]);
            int norm = strstr(blk[k], "norm") != NULL;
            int down = !strcmp(blk[k], "ffn_down.weight");
            add(l, nm, down ? 1024 : 512, norm ? 1 : down ? 512 : 1024);
        }
    }
}

static void plan(tlist_t *l, const char *ftype, int n_layer, int n_gqa)
{
    qd_recipe_model_t m = {.arch = "llama", .n_layer = n_layer,
                           .n_head = 8 * n_gqa, .n_head_kv = 8};
    qd_recipe_params_t p = {0};
    cr_assert_eq(qd_ftype_from_name(ftype, &p.ftype), 0);
    cr_assert_eq(qd_recipe_plan(&m, &p, l->t, l->n, l->types, l->flags), 0);
}

static qd_type_t type_of(const tlist_t *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name))
            return l->types[i];
    cr_assert_fail("no tensor %s", name);
    return QD_TYPE_COUNT;
}

static qd_type_t layer_type(const tlist_t *l, int layer, const char *what)
{
    char nm[64];
    snprintf(nm, sizeof nm, "blk.%d.%s", layer, what);
    return type_of(l, nm);
}

#define EXPECT_TYPE(got, want, ...)                                            \
    cr_expect_eq(got, want, "%s (want %s): " __VA_ARGS__, qd_type_name(got),   \
                 qd_type_name(want))

/* Layers llama.cpp gives more bits (worked out by hand, not by formula):
 * first and last eighth, and every third layer from n/8 + 2. */
static const int more_bits_32[] = {0,  1,  2,  3,  6,  9,  12, 15,
                                   18, 21, 24, 27, 28, 29, 30, 31};
static const int more_bits_16[] = {0, 1, 4, 7, 10, 13, 14, 15};

static int in_set(const int *s, size_t n, int v)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == v)
            return 1;
    return 0;
}

Test(recipe, q4_k_m_32_layers)
{
    static tlist_t l;
    make_model(&l, 32, 0);
    plan(&l, "Q4_K_M", 32, 1);
    EXPECT_TYPE(type_of(&l, "output.weight"), QD_TYPE_Q6_K, "output");
    EXPECT_TYPE(type_of(&l, "token_embd.weight"), QD_TYPE_Q4_K, "token_embd");
    EXPECT_TYPE(type_of(&l, "output_norm.weight"), QD_TYPE_F32, "norm");
    for (int i = 0; i < 32; i++) {
        qd_type_t more = in_set(more_bits_32, 16, i) ? QD_TYPE_Q6_K
                                                     : QD_TYPE_Q4_K;
        EXPECT_TYPE(layer_type(&l, i, "attn_v.weight"), more, "attn_v %d", i);
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"), more, "ffn_down %d",
                    i);
        EXPECT_TYPE(layer_type(&l, i, "attn_q.weight"), QD_TYPE_Q4_K, "q %d",
                    i);
        EXPECT_TYPE(layer_type(&l, i, "attn_output.weight"), QD_TYPE_Q4_K,
                    "o %d", i);
        EXPECT_TYPE(layer_type(&l, i, "ffn_up.weight"), QD_TYPE_Q4_K, "up");
        EXPECT_TYPE(layer_type(&l, i, "attn_norm.weight"), QD_TYPE_F32, "n");
    }
}

Test(recipe, q5_k_m_16_layers_tied)
{
    static tlist_t l;
    make_model(&l, 16, 1);
    plan(&l, "Q5_K_M", 16, 1);
    /* no output.weight: token_embd is the output matrix */
    EXPECT_TYPE(type_of(&l, "token_embd.weight"), QD_TYPE_Q6_K, "tied embd");
    for (int i = 0; i < 16; i++) {
        qd_type_t more = in_set(more_bits_16, 8, i) ? QD_TYPE_Q6_K
                                                    : QD_TYPE_Q5_K;
        EXPECT_TYPE(layer_type(&l, i, "attn_v.weight"), more, "attn_v %d", i);
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"), more, "down %d", i);
        EXPECT_TYPE(layer_type(&l, i, "attn_k.weight"), QD_TYPE_Q5_K, "k");
    }
}

Test(recipe, q4_k_s_and_q5_k_s)
{
    static tlist_t l;
    make_model(&l, 32, 0);
    plan(&l, "Q4_K_S", 32, 1);
    for (int i = 0; i < 32; i++) {
        EXPECT_TYPE(layer_type(&l, i, "attn_v.weight"),
                    i < 4 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K, "attn_v %d", i);
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"),
                    i < 4 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K, "down %d", i);
    }
    EXPECT_TYPE(type_of(&l, "output.weight"), QD_TYPE_Q6_K, "output");
    plan(&l, "Q5_K_S", 32, 1);
    for (int i = 0; i < l.n; i++) {
        if (strstr(l.names[i], "norm"))
            EXPECT_TYPE(l.types[i], QD_TYPE_F32, "%s", l.names[i]);
        else if (!strcmp(l.names[i], "output.weight"))
            EXPECT_TYPE(l.types[i], QD_TYPE_Q6_K, "output");
        else
            EXPECT_TYPE(l.types[i], QD_TYPE_Q5_K, "%s", l.names[i]);
    }
}

Test(recipe, q3_k_variants)
{
    static tlist_t l;
    make_model(&l, 32, 0);
    plan(&l, "Q3_K_S", 32, 1);
    for (int i = 0; i < l.n; i++) {
        qd_type_t want = strstr(l.names[i], "norm") ? QD_TYPE_F32
                         : !strcmp(l.names[i], "output.weight") ? QD_TYPE_Q6_K
                                                                 : QD_TYPE_Q3_K;
        EXPECT_TYPE(l.types[i], want, "Q3_K_S %s", l.names[i]);
    }
    plan(&l, "Q3_K_M", 32, 1);
    for (int i = 0; i < 32; i++) {
        EXPECT_TYPE(layer_type(&l, i, "attn_v.weight"),
                    i < 2 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K, "M attn_v %d", i);
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"),
                    i < 2 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K, "M down %d", i);
        EXPECT_TYPE(layer_type(&l, i, "attn_output.weight"), QD_TYPE_Q4_K,
                    "M o %d", i);
        EXPECT_TYPE(layer_type(&l, i, "attn_q.weight"), QD_TYPE_Q3_K, "M q");
    }
    plan(&l, "Q3_K_L", 32, 1);
    for (int i = 0; i < 32; i++) {
        EXPECT_TYPE(layer_type(&l, i, "attn_v.weight"), QD_TYPE_Q5_K, "L v");
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"), QD_TYPE_Q5_K, "L d");
        EXPECT_TYPE(layer_type(&l, i, "attn_output.weight"), QD_TYPE_Q5_K,
                    "L o");
        EXPECT_TYPE(layer_type(&l, i, "ffn_gate.weight"), QD_TYPE_Q3_K, "L g");
    }
    EXPECT_TYPE(type_of(&l, "token_embd.weight"), QD_TYPE_Q3_K, "L embd");
}

Test(recipe, q2_k_q6_k_q8_0)
{
    static tlist_t l;
    make_model(&l, 16, 0);
    plan(&l, "Q2_K", 16, 1); /* n_gqa 1: attn_v Q3_K */
    for (int i = 0; i < 16; i++) {
        EXPECT_TYPE(layer_type(&l, i, "attn_v.weight"), QD_TYPE_Q3_K, "v");
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"), QD_TYPE_Q3_K, "d");
        EXPECT_TYPE(layer_type(&l, i, "attn_output.weight"), QD_TYPE_Q3_K,
                    "o");
        EXPECT_TYPE(layer_type(&l, i, "attn_q.weight"), QD_TYPE_Q2_K, "q");
    }
    plan(&l, "Q2_K", 16, 4); /* grouped-query attention: attn_v Q4_K */
    EXPECT_TYPE(layer_type(&l, 7, "attn_v.weight"), QD_TYPE_Q4_K, "gqa v");
    plan(&l, "Q6_K", 16, 1);
    for (int i = 0; i < l.n; i++)
        EXPECT_TYPE(l.types[i], strstr(l.names[i], "norm") ? QD_TYPE_F32
                                                           : QD_TYPE_Q6_K,
                    "Q6_K %s", l.names[i]);
    plan(&l, "Q8_0", 16, 1);
    for (int i = 0; i < l.n; i++)
        EXPECT_TYPE(l.types[i], strstr(l.names[i], "norm") ? QD_TYPE_F32
                                                           : QD_TYPE_Q8_0,
                    "Q8_0 %s", l.names[i]);
    plan(&l, "Q4_0", 16, 1); /* legacy types: the output gets Q6_K */
    EXPECT_TYPE(type_of(&l, "output.weight"), QD_TYPE_Q6_K, "Q4_0 output");
    EXPECT_TYPE(type_of(&l, "blk.0.ffn_down.weight"), QD_TYPE_Q4_0, "Q4_0 d");
    plan(&l, "F16", 16, 1);
    EXPECT_TYPE(type_of(&l, "output.weight"), QD_TYPE_F16, "F16 output");
    EXPECT_TYPE(type_of(&l, "blk.3.ffn_norm.weight"), QD_TYPE_F32, "F16 n");
}

/* Row lengths 172 (no 32-block type fits) and 64 (only 32-block types). */
Test(recipe, fallbacks)
{
    static const struct {
        const char *ftype;
        int64_t ncols;
        qd_type_t want;
        int f16;
    } cases[] = {
        {"Q4_K_S", 64, QD_TYPE_Q5_0, 0},  {"Q4_K_S", 172, QD_TYPE_F16, 1},
        {"Q5_K_S", 64, QD_TYPE_Q5_1, 0},  {"Q6_K", 64, QD_TYPE_Q8_0, 0},
        {"Q6_K", 172, QD_TYPE_F16, 1},    {"Q3_K_S", 64, QD_TYPE_Q4_0, 0},
        {"Q2_K", 64, QD_TYPE_Q4_0, 0},    {"IQ4_XS", 64, QD_TYPE_IQ4_NL, 0},
        {"IQ4_XS", 172, QD_TYPE_F16, 1},  {"Q8_0", 172, QD_TYPE_F16, 1},
        {"Q4_0", 172, QD_TYPE_F16, 1},    {"Q8_0", 64, QD_TYPE_Q8_0, -1},
        {"Q4_K_S", 512, QD_TYPE_Q4_K, -1},
    };
    for (size_t c = 0; c < QD_ARRAY_SIZE(cases); c++) {
        qd_recipe_tensor_t t = {.name = "blk.0.attn_q.weight",
                                .type = QD_TYPE_F32,
                                .ne = {cases[c].ncols, 8, 1, 1}};
        qd_recipe_tensor_t o = {.name = "output.weight", .type = QD_TYPE_F32,
                                .ne = {512, 8, 1, 1}};
        qd_recipe_tensor_t ts[2] = {o, t};
        qd_recipe_model_t m = {.arch = "llama", .n_layer = 1, .n_head = 1};
        qd_recipe_params_t p = {0};
        qd_type_t types[2];
        int flags[2];
        cr_assert_eq(qd_ftype_from_name(cases[c].ftype, &p.ftype), 0);
        cr_assert_eq(qd_recipe_plan(&m, &p, ts, 2, types, flags), 0);
        EXPECT_TYPE(types[1], cases[c].want, "%s ncols %lld", cases[c].ftype,
                    (long long)cases[c].ncols);
        if (cases[c].f16 < 0) {
            cr_expect_eq(flags[1] & QD_RECIPE_FALLBACK, 0);
        } else {
            cr_expect(flags[1] & QD_RECIPE_FALLBACK);
            cr_expect_eq(!!(flags[1] & QD_RECIPE_F16_FALLBACK), cases[c].f16);
        }
    }
}

Test(recipe, quantizable)
{
    int64_t mat[4] = {256, 256, 1, 1}, vec[4] = {256, 1, 1, 1};
    int64_t col[4] = {256, 1, 1, 1}, exp3[4] = {256, 64, 8, 1};
    cr_expect(qd_recipe_quantizable("blk.0.attn_q.weight", mat));
    cr_expect(qd_recipe_quantizable("blk.0.ffn_up_exps.weight", exp3));
    cr_expect_not(qd_recipe_quantizable("blk.0.attn_q.bias", mat));
    cr_expect_not(qd_recipe_quantizable("blk.0.attn_norm.weight", vec));
    cr_expect_not(qd_recipe_quantizable("blk.0.attn_q_norm.weight", mat));
    cr_expect_not(qd_recipe_quantizable("rope_freqs.weight", vec));
    cr_expect_not(qd_recipe_quantizable("blk.0.x.weight", col)); /* [256,1] */
    cr_expect_not(qd_recipe_quantizable("blk.0.ffn_gate_inp.weight", mat));
    cr_expect_not(qd_recipe_quantizable("position_embd.weight", mat));
}

Test(recipe, overrides_and_pure)
{
    static tlist_t l;
    make_model(&l, 8, 0);
    qd_recipe_model_t m = {.arch = "llama", .n_layer = 8, .n_head = 8,
                           .n_head_kv = 8};
    qd_tensor_override_t ov[] = {{"ffn_down", QD_TYPE_F16},
                                 {"^blk\\.1\\.attn_[qk]\\.", QD_TYPE_Q8_0}};
    qd_recipe_params_t p = {.ftype = QD_FTYPE_MOSTLY_Q4_K_M,
                            .overrides = ov, .n_overrides = 2};
    cr_assert_eq(qd_recipe_plan(&m, &p, l.t, l.n, l.types, l.flags), 0);
    for (int i = 0; i < 8; i++)
        EXPECT_TYPE(layer_type(&l, i, "ffn_down.weight"), QD_TYPE_F16, "d");
    EXPECT_TYPE(type_of(&l, "blk.1.attn_q.weight"), QD_TYPE_Q8_0, "q1");
    EXPECT_TYPE(type_of(&l, "blk.1.attn_k.weight"), QD_TYPE_Q8_0, "k1");
    EXPECT_TYPE(type_of(&l, "blk.2.attn_q.weight"), QD_TYPE_Q4_K, "q2");
    EXPECT_TYPE(type_of(&l, "blk.1.attn_v.weight"), QD_TYPE_Q4_K, "v1");
    EXPECT_TYPE(type_of(&l, "blk.0.attn_v.weight"), QD_TYPE_Q6_K, "v0");

    qd_tensor_override_t bad[] = {{"(unclosed", QD_TYPE_F16}};
    p.overrides = bad;
    p.n_overrides = 1;
    cr_expect_eq(qd_recipe_plan(&m, &p, l.t, l.n, l.types, l.flags),
                 QD_EINVAL);
    cr_expect(strstr(qd_errmsg(), "(unclosed") != NULL, "%s", qd_errmsg());

    /* --output-tensor-type / --token-embedding-type */
    qd_recipe_params_t ex = {.ftype = QD_FTYPE_MOSTLY_Q4_K_M,
                             .set_output_type = 1, .output_type = QD_TYPE_Q8_0,
                             .set_token_embd_type = 1,
                             .token_embd_type = QD_TYPE_Q2_K};
    cr_assert_eq(qd_recipe_plan(&m, &ex, l.t, l.n, l.types, l.flags), 0);
    EXPECT_TYPE(type_of(&l, "output.weight"), QD_TYPE_Q8_0, "output");
    EXPECT_TYPE(type_of(&l, "token_embd.weight"), QD_TYPE_Q2_K, "embd");
    EXPECT_TYPE(type_of(&l, "blk.0.attn_v.weight"), QD_TYPE_Q6_K, "v0");

    qd_recipe_params_t pure = {.ftype = QD_FTYPE_MOSTLY_Q4_K_M, .pure = 1};
    cr_assert_eq(qd_recipe_plan(&m, &pure, l.t, l.n, l.types, l.flags), 0);
    for (int i = 0; i < l.n; i++)
        EXPECT_TYPE(l.types[i], strstr(l.names[i], "norm") ? QD_TYPE_F32
                                                           : QD_TYPE_Q4_K,
                    "pure %s", l.names[i]);
}

Test(recipe, ftype_names_and_order)
{
    qd_ftype_t ft;
    cr_expect_eq(qd_ftype_from_name("q4_k_m", &ft), 0);
    cr_expect_eq(ft, 15);
    cr_expect_eq(qd_ftype_from_name("Q4_K", &ft), 0);
    cr_expect_eq(ft, QD_FTYPE_MOSTLY_Q4_K_M);
    cr_expect_eq(qd_ftype_from_name("Q8_0", &ft), 0);
    cr_expect_eq(ft, 7);
    cr_expect_eq(qd_ftype_from_name("BF16", &ft), 0);
    cr_expect_eq(ft, 32);
    cr_expect_eq(qd_ftype_from_name("Q7_K", &ft), QD_EINVAL);
    cr_expect_str_eq(qd_ftype_name(QD_FTYPE_MOSTLY_Q3_K_L), "Q3_K_L");
    cr_expect_eq(qd_ftype_default_type(QD_FTYPE_MOSTLY_Q5_K_S), QD_TYPE_Q5_K);

    const char *names[] = {"blk.10.attn_q.weight", "token_embd.weight",
                           "blk.2.ffn_up.weight", "blk.2.attn_k.weight",
                           "output.weight"};
    int64_t perm[5];
    cr_assert_eq(qd_recipe_sort(names, 5, perm), 0);
    cr_expect_str_eq(names[perm[0]], "output.weight");
    cr_expect_str_eq(names[perm[1]], "token_embd.weight");
    cr_expect_str_eq(names[perm[2]], "blk.2.attn_k.weight");
    cr_expect_str_eq(names[perm[3]], "blk.2.ffn_up.weight");
    cr_expect_str_eq(names[perm[4]], "blk.10.attn_q.weight");
}

/* ---- whole files against llama-quantize ---------------------------------- */

/* --pure qv-F32.gguf -> every type, compared with qv-<T>.gguf. */
Test(quantize_file, pure_types_match_llama_cpp)
{
    static const struct { const char *tensor_type, *arg; } cases[] = {
        {"Q8_0", "Q8_0"},     {"Q4_0", "Q4_0"},     {"Q4_1", "Q4_1"},
        {"Q5_0", "Q5_0"},     {"Q5_1", "Q5_1"},     {"Q2_K", "Q2_K"},
        {"Q3_K", "Q3_K_S"},   {"Q4_K", "Q4_K_S"},   {"Q5_K", "Q5_K_S"},
        {"Q6_K", "Q6_K"},     {"IQ4_NL", "IQ4_NL"}, {"IQ4_XS", "IQ4_XS"},
        {"F16", "F16"},       {"BF16", "BF16"},
    };
    const char *sh = shared_dir();
    char in[4096], ref[4096], out[4096];
    snprintf(in, sizeof in, "%s/reference/quant-vectors/qv-F32.gguf", sh);
    for (size_t c = 0; c < QD_ARRAY_SIZE(cases); c++) {
        snprintf(ref, sizeof ref, "%s/reference/quant-vectors/qv-%s.gguf", sh,
                 cases[c].tensor_type);
        tmp_path(out, sizeof out, cases[c].tensor_type);
        int rc = quantize(in, out, cases[c].arg, 1, 2);
        cr_assert_eq(rc, 0, "%s: %s", cases[c].arg, qd_errmsg());
        cr_expect_eq(compare_tensors(out, ref), 21, "%s", cases[c].arg);
        unlink(out);
    }
}

/* The recipes on the forward-pass models: types and bytes identical. */
Test(quantize_file, recipes_match_llama_cpp)
{
    static const struct { const char *model, *type; int64_t n; } cases[] = {
        {"synth-llama31", "Q4_K_M", 22}, {"synth-llama31", "Q8_0", 22},
        {"synth-qwen2", "Q4_K_M", 26},   {"synth-qwen2", "Q8_0", 26},
        {"stories260K", "Q4_K_M", 48},   {"stories260K", "Q8_0", 48},
        {"stories260K", "Q4_0", 48},
    };
    const char *sh = shared_dir();
    char in[4096], ref[4096], out[4096];
    for (size_t c = 0; c < QD_ARRAY_SIZE(cases); c++) {
        snprintf(in, sizeof in, "%s/reference/forward/%s-F32.gguf", sh,
                 cases[c].model);
        snprintf(ref, sizeof ref, "%s/reference/forward/%s-%s.gguf", sh,
                 cases[c].model, cases[c].type);
        tmp_path(out, sizeof out, "recipe");
        /* stories260K's Q8_0/Q4_0 were made with --tensor-type ffn_down=f16;
         * our F16 fallback for 172-value rows gives the same without it */
        cr_assert_eq(quantize(in, out, cases[c].type, 0, 2), 0, "%s %s: %s",
                     cases[c].model, cases[c].type, qd_errmsg());
        cr_expect_eq(compare_tensors(out, ref), cases[c].n, "%s %s",
                     cases[c].model, cases[c].type);
        unlink(out);
    }
}

/* Metadata: the input's keys, then file_type, quantization_version and the
 * provenance record; the data section equals llama.cpp's. */
Test(quantize_file, metadata)
{
    const char *sh = shared_dir();
    char in[4096], ref[4096], out[4096];
    snprintf(in, sizeof in, "%s/reference/forward/synth-llama31-F32.gguf", sh);
    snprintf(ref, sizeof ref, "%s/reference/forward/synth-llama31-Q4_K_M.gguf",
             sh);
    tmp_path(out, sizeof out, "meta");
    cr_assert_eq(quantize(in, out, "Q4_K_M", 0, 1), 0, "%s", qd_errmsg());
    qd_gguf_t *a, *b;
    cr_assert_eq(qd_gguf_open(out, &a), 0);
    cr_assert_eq(qd_gguf_open(ref, &b), 0);
    uint32_t ft = 0, qv = 0;
    const char *s;
    size_t len;
    cr_expect_eq(qd_gguf_get_u32(a, "general.file_type", &ft), 0);
    cr_expect_eq(ft, 15);
    cr_expect_eq(qd_gguf_get_u32(a, "general.quantization_version", &qv), 0);
    cr_expect_eq(qv, 2);
    cr_expect_eq(qd_gguf_get_str(a, "quantize.tool", &s, &len), 0);
    cr_expect(!strncmp(s, "quantd ", 7), "%s", s);
    cr_expect_eq(qd_gguf_get_str(a, "quantize.type", &s, &len), 0);
    cr_expect_str_eq(s, "Q4_K_M");
    cr_expect_eq(qd_gguf_get_str(a, "quantize.method", &s, &len), 0);
    /* every key of llama.cpp's file, in the same order, same value */
    cr_assert_eq(qd_gguf_n_kv(a), qd_gguf_n_kv(b) + 3);
    for (int64_t i = 0; i < qd_gguf_n_kv(b); i++) {
        char x[256], y[256];
        cr_expect_str_eq(qd_gguf_kv_key(a, i), qd_gguf_kv_key(b, i));
        qd_gguf_kv_format(a, i, x, sizeof x, 4);
        qd_gguf_kv_format(b, i, y, sizeof y, 4);
        cr_expect_str_eq(x, y, "%s", qd_gguf_kv_key(b, i));
    }
    size_t da = qd_gguf_data_offset(a), db = qd_gguf_data_offset(b);
    size_t na = qd_gguf_file_size(a) - da, nb = qd_gguf_file_size(b) - db;
    cr_assert_eq(na, nb);
    cr_expect_eq(memcmp((const uint8_t *)qd_gguf_tensor(a, 0)->data,
                        (const uint8_t *)qd_gguf_tensor(b, 0)->data, na),
                 0, "data sections differ");
    qd_gguf_close(a);
    qd_gguf_close(b);
    unlink(out);
}

Test(quantize_file, deterministic_across_threads)
{
    const char *sh = shared_dir();
    char in[4096], o1[4096], o3[4096], o3b[4096];
    snprintf(in, sizeof in, "%s/reference/forward/stories260K-F32.gguf", sh);
    tmp_path(o1, sizeof o1, "t1");
    tmp_path(o3, sizeof o3, "t3");
    tmp_path(o3b, sizeof o3b, "t3b");
    cr_assert_eq(quantize(in, o1, "Q4_K_M", 0, 1), 0, "%s", qd_errmsg());
    cr_assert_eq(quantize(in, o3, "Q4_K_M", 0, 3), 0, "%s", qd_errmsg());
    cr_assert_eq(quantize(in, o3b, "Q4_K_M", 0, 3), 0, "%s", qd_errmsg());
    size_t n1, n3, n3b;
    void *b1 = slurp(o1, &n1), *b3 = slurp(o3, &n3), *b3b = slurp(o3b, &n3b);
    cr_expect_eq(n1, n3);
    cr_expect_eq(n3, n3b);
    cr_expect(n1 == n3 && !memcmp(b1, b3, n1), "1 vs 3 threads differ");
    cr_expect(n3 == n3b && !memcmp(b3, b3b, n3), "two runs differ");
    free(b1);
    free(b3);
    free(b3b);
    unlink(o1);
    unlink(o3);
    unlink(o3b);
}

/* ---- self-made fixtures -------------------------------------------------- */

/* A 2-layer llama-like model with random F32 (or F16) matrices. */
static void write_model(const char *path, qd_type_t wtype, float poison)
{
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    cr_assert_not_null(w);
    qd_gguf_writer_set_str(w, "general.architecture", "llama");
    qd_gguf_writer_set_u32(w, "llama.block_count", 2);
    qd_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    qd_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4);
    qd_gguf_writer_set_u32(w, "general.file_type", 0);
    static const char *const mats[] = {
        "token_embd.weight", "output.weight", "blk.0.attn_v.weight",
        "blk.0.ffn_down.weight", "blk.1.attn_v.weight",
        "blk.1.ffn_down.weight"};
    uint64_t s = 12345;
    enum { N0 = 256, N1 = 64 };
    static float f[N0 * N1];
    static uint16_t h[N0 * N1];
    for (size_t m = 0; m < QD_ARRAY_SIZE(mats); m++) {
        for (int i = 0; i < N0 * N1; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            f[i] = (float)((double)(s >> 11) * 0x1p-53 - 0.5) * 0.1f;
            h[i] = qd_fp32_to_fp16(f[i]);
        }
        if (m == 3)
            f[N0 * 5 + 7] = poison;
        int64_t ne[2] = {N0, N1};
        if (wtype == QD_TYPE_F16)
            cr_assert_eq(qd_gguf_writer_add_tensor(w, mats[m], wtype, 2, ne,
                                                   h, sizeof h, 1), 0);
        else
            cr_assert_eq(qd_gguf_writer_add_tensor(w, mats[m], wtype, 2, ne,
                                                   f, sizeof f, 1), 0);
    }
    float norm[N0];
    for (int i = 0; i < N0; i++)
        norm[i] = 1.0f;
    int64_t ne1[1] = {N0};
    qd_gguf_writer_add_tensor(w, "output_norm.weight", QD_TYPE_F32, 1, ne1,
                              norm, sizeof norm, 1);
    cr_assert_eq(qd_gguf_writer_write(w, path), 0, "%s", qd_errmsg());
    qd_gguf_writer_destroy(w);
}

Test(quantize_file, f16_input_and_requantize)
{
    char in[4096], out[4096], out2[4096];
    tmp_path(in, sizeof in, "f16in");
    tmp_path(out, sizeof out, "f16q");
    tmp_path(out2, sizeof out2, "requant");
    write_model(in, QD_TYPE_F16, 0.0f);
    cr_assert_eq(quantize(in, out, "Q4_K_M", 0, 2), 0, "%s", qd_errmsg());
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(out, &g), 0);
    /* 2 layers: layer 1 is in the last eighth, so attn_v/ffn_down Q6_K */
    cr_expect_eq(qd_gguf_find_tensor(g, "blk.0.attn_v.weight")->type,
                 QD_TYPE_Q4_K);
    cr_expect_eq(qd_gguf_find_tensor(g, "blk.1.attn_v.weight")->type,
                 QD_TYPE_Q6_K);
    cr_expect_eq(qd_gguf_find_tensor(g, "output.weight")->type, QD_TYPE_Q6_K);
    cr_expect_eq(qd_gguf_find_tensor(g, "output_norm.weight")->type,
                 QD_TYPE_F32);
    qd_gguf_close(g);
    /* an already quantized input is dequantized and quantized again */
    cr_assert_eq(quantize(out, out2, "Q8_0", 0, 2), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_gguf_open(out2, &g), 0);
    cr_expect_eq(qd_gguf_find_tensor(g, "blk.0.attn_v.weight")->type,
                 QD_TYPE_Q8_0);
    qd_gguf_close(g);
    unlink(in);
    unlink(out);
    unlink(out2);
}

Test(quantize_file, bad_input)
{
    char in[4096], out[4096], nan_in[4096];
    tmp_path(in, sizeof in, "notgguf");
    tmp_path(out, sizeof out, "badout");
    tmp_path(nan_in, sizeof nan_in, "nan");
    FILE *f = fopen(in, "wb");
    cr_assert_not_null(f);
    fputs("this is not a model\n", f);
    fclose(f);
    cr_expect_neq(quantize(in, out, "Q4_0", 0, 1), 0);
    cr_expect_not(file_exists(out));

    /* output directory does not exist */
    write_model(nan_in, QD_TYPE_F32, 0.0f);
    int rc = quantize(nan_in, "/nonexistent-dir/x.gguf", "Q4_0", 0, 1);
    cr_expect_eq(rc, QD_EIO, "%s", qd_strerror(rc));
    cr_expect(strstr(qd_errmsg(), "/nonexistent-dir/x.gguf") != NULL, "%s",
              qd_errmsg());

    /* a NaN in a matrix: refused, naming tensor and row, no file left */
    write_model(nan_in, QD_TYPE_F32, NAN);
    rc = quantize(nan_in, out, "Q4_0", 0, 2);
    cr_expect_eq(rc, QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "blk.0.ffn_down.weight") &&
                  strstr(qd_errmsg(), "row 5"), "%s", qd_errmsg());
    cr_expect_not(file_exists(out));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_expect_not(file_exists(tmp));

    /* the command: unknown type, missing arguments, bad option */
    char *a1[] = {"quantize", nan_in, out, "Q9_X", NULL};
    cr_expect_eq(qd_cmd_quantize(4, a1), 2);
    char *a2[] = {"quantize", nan_in, NULL};
    cr_expect_eq(qd_cmd_quantize(2, a2), 2);
    char *a3[] = {"quantize", "--tensor-type", "nonsense", nan_in, out,
                  "Q4_0", NULL};
    cr_expect_eq(qd_cmd_quantize(6, a3), 2);
    char *a4[] = {"quantize", in, out, "Q4_0", "-q", NULL};
    cr_expect_eq(qd_cmd_quantize(5, a4), 1);
    unlink(in);
    unlink(nan_in);
}

/* --imatrix (legacy .dat and GGUF): used, recorded, deterministic. */
Test(quantize_file, imatrix)
{
    char in[4096], out_plain[4096], out_dat[4096], out_gguf[4096];
    char dat[4096], imgguf[4096];
    tmp_path(in, sizeof in, "imin");
    tmp_path(out_plain, sizeof out_plain, "implain");
    tmp_path(out_dat, sizeof out_dat, "imdat");
    tmp_path(out_gguf, sizeof out_gguf, "imgguf-out");
    tmp_path(dat, sizeof dat, "im.dat");
    tmp_path(imgguf, sizeof imgguf, "im-gguf");
    write_model(in, QD_TYPE_F32, 0.0f);

    /* importance rising along the row, the same in both files */
    enum { N0 = 256 };
    static const char *const names[] = {"blk.0.attn_v.weight",
                                        "blk.0.ffn_down.weight"};
    float vals[N0], sums[N0], count = 10.0f;
    for (int j = 0; j < N0; j++) {
        vals[j] = (float)(1 + j % 17) * 0.25f;
        sums[j] = vals[j] * count;
    }
    FILE *f = fopen(dat, "wb");
    cr_assert_not_null(f);
    int32_t n = 2, ncall = 10, nval = N0;
    fwrite(&n, 4, 1, f);
    for (int k = 0; k < 2; k++) {
        int32_t len = (int32_t)strlen(names[k]);
        fwrite(&len, 4, 1, f);
        fwrite(names[k], 1, (size_t)len, f);
        fwrite(&ncall, 4, 1, f);
        fwrite(&nval, 4, 1, f);
        fwrite(sums, 4, N0, f); /* stored as sums over n_call */
    }
    fclose(f);
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    qd_gguf_writer_set_str(w, "general.type", "imatrix");
    for (int k = 0; k < 2; k++) {
        char nm[128];
        int64_t ne_s[2] = {N0, 1}, ne_c[2] = {1, 1};
        snprintf(nm, sizeof nm, "%s.in_sum2", names[k]);
        qd_gguf_writer_add_tensor(w, nm, QD_TYPE_F32, 2, ne_s, sums,
                                  sizeof sums, 1);
        snprintf(nm, sizeof nm, "%s.counts", names[k]);
        qd_gguf_writer_add_tensor(w, nm, QD_TYPE_F32, 2, ne_c, &count, 4, 1);
    }
    cr_assert_eq(qd_gguf_writer_write(w, imgguf), 0);
    qd_gguf_writer_destroy(w);

    qd_quantize_params_t p;
    qd_quantize_params_default(&p);
    p.recipe.ftype = QD_FTYPE_MOSTLY_Q4_K_S;
    p.n_threads = 2;
    cr_assert_eq(qd_quantize_model(in, out_plain, &p, NULL), 0);
    p.imatrix_path = dat;
    cr_assert_eq(qd_quantize_model(in, out_dat, &p, NULL), 0, "%s",
                 qd_errmsg());
    p.imatrix_path = imgguf;
    cr_assert_eq(qd_quantize_model(in, out_gguf, &p, NULL), 0, "%s",
                 qd_errmsg());

    qd_gguf_t *a, *b, *c;
    cr_assert_eq(qd_gguf_open(out_plain, &a), 0);
    cr_assert_eq(qd_gguf_open(out_dat, &b), 0);
    cr_assert_eq(qd_gguf_open(out_gguf, &c), 0);
    const qd_gguf_tensor_t *ta = qd_gguf_find_tensor(a, "blk.0.attn_q.weight");
    const qd_gguf_tensor_t *tb, *tc;
    /* matrices with an entry change; the two formats agree */
    ta = qd_gguf_find_tensor(a, "blk.1.attn_v.weight");
    tb = qd_gguf_find_tensor(b, "blk.1.attn_v.weight");
    cr_expect_eq(memcmp(ta->data, tb->data, ta->n_bytes), 0, "no entry");
    ta = qd_gguf_find_tensor(a, "blk.0.ffn_down.weight");
    tb = qd_gguf_find_tensor(b, "blk.0.ffn_down.weight");
    tc = qd_gguf_find_tensor(c, "blk.0.ffn_down.weight");
    cr_expect_neq(memcmp(ta->data, tb->data, ta->n_bytes), 0, "unused");
    cr_expect_eq(memcmp(tb->data, tc->data, tb->n_bytes), 0, "dat != gguf");
    const char *s;
    size_t len;
    cr_expect_eq(qd_gguf_get_str(b, "quantize.imatrix.file", &s, &len), 0);
    cr_expect_str_eq(s, dat);
    cr_expect_eq(qd_gguf_get_str(b, "quantize.imatrix.sha256", &s, &len), 0);
    cr_expect_eq(len, 64);
    cr_expect_eq(qd_gguf_find_key(a, "quantize.imatrix.file"), -1);
    qd_gguf_close(a);
    qd_gguf_close(b);
    qd_gguf_close(c);

    /* a truncated imatrix is refused */
    f = fopen(dat, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 100), 0);
    fclose(f);
    p.imatrix_path = dat;
    cr_expect_eq(qd_quantize_model(in, out_dat, &p, NULL), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "truncated"), "%s", qd_errmsg());

    unlink(in);
    unlink(out_plain);
    unlink(out_dat);
    unlink(out_gguf);
    unlink(dat);
    unlink(imgguf);
}

/* Options after the positionals, --tensor-type, thread count. */
Test(quantize_file, command_line)
{
    char in[4096], out[4096];
    tmp_path(in, sizeof in, "cli-in");
    tmp_path(out, sizeof out, "cli-out");
    write_model(in, QD_TYPE_F32, 0.0f);
    char *argv[] = {"quantize", in, out, "q4_k_m", "-t", "3", "-q",
                    "--tensor-type", "BLK\\.1\\.ffn_down=q8_0", NULL};
    cr_assert_eq(qd_cmd_quantize(9, argv), 0);
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(out, &g), 0);
    cr_expect_eq(qd_gguf_find_tensor(g, "blk.1.ffn_down.weight")->type,
                 QD_TYPE_Q8_0);
    cr_expect_eq(qd_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type,
                 QD_TYPE_Q4_K);
    qd_gguf_arr_t a;
    cr_expect_eq(qd_gguf_get_arr(g, "quantize.tensor_types", &a), 0);
    cr_expect_eq(a.n, 1);
    cr_expect_str_eq(qd_gguf_arr_str(&a, 0, NULL), "blk\\.1\\.ffn_down=Q8_0");
    qd_gguf_close(g);
    char *pure[] = {"quantize", "--pure", in, out, "Q4_K_M", "2", "-q", NULL};
    cr_assert_eq(qd_cmd_quantize(7, pure), 0);
    cr_assert_eq(qd_gguf_open(out, &g), 0);
    cr_expect_eq(qd_gguf_find_tensor(g, "output.weight")->type, QD_TYPE_Q4_K);
    cr_expect_eq(qd_gguf_find_tensor(g, "blk.1.attn_v.weight")->type,
                 QD_TYPE_Q4_K);
    qd_gguf_close(g);
    unlink(in);
    unlink(out);
}

/* ---- perplexity and KL divergence ---------------------------------------- */

/* The first bytes of tinyshakespeare, tokenized with m's vocabulary. */
static int32_t *shakespeare_tokens(const qd_model_t *m, int *n_out)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/text/tinyshakespeare.txt", shared_dir());
    char *text = slurp(path, &len);
    len = len < 40000 ? len : 40000;
    int32_t *toks = malloc((len + 16) * sizeof *toks);
    int n = qd_tokenize(qd_model_tokenizer(m), text, len, 1, 0, toks,
                        (int)len + 16);
    cr_assert_gt(n, 0, "%s", qd_errmsg());
    cr_assert_leq(n, (int)len + 16);
    free(text);
    *n_out = n;
    return toks;
}

static qd_model_t *load(const char *path)
{
    qd_model_t *m;
    cr_assert_eq(qd_model_load(path, &m), 0, "%s: %s", path, qd_errmsg());
    return m;
}

static void ppl_params(qd_ppl_params_t *p)
{
    qd_ppl_params_default(p);
    p->n_ctx = 128;
    p->n_chunks = 3;
    p->n_threads = 2;
}

Test(perplexity, stories260k_plausible)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", shared_dir());
    qd_model_t *m = load(path);
    int n;
    int32_t *toks = shakespeare_tokens(m, &n);
    qd_ppl_params_t p;
    qd_ppl_result_t r;
    ppl_params(&p);
    cr_assert_eq(qd_perplexity(m, NULL, toks, n, &p, &r), 0, "%s",
                 qd_errmsg());
    cr_expect_eq(r.n_chunks, 3);
    cr_expect_eq(r.n_scored, 3 * (128 - 1 - 64));
    /* a 512-token TinyStories model on Shakespeare: far from 1, far below
     * the 512 of a uniform guess */
    cr_expect(isfinite(r.ppl) && r.ppl > 5 && r.ppl < 300, "ppl %f", r.ppl);
    cr_expect(r.ppl_err > 0 && r.ppl_err < r.ppl, "err %f", r.ppl_err);
    cr_expect_not(r.has_base);

    /* too few tokens for one window */
    cr_expect_eq(qd_perplexity(m, NULL, toks, 100, &p, &r), QD_EINVAL);
    /* out-of-vocabulary ids are refused, not read past the logits */
    int32_t saved = toks[5];
    toks[5] = 100000;
    cr_expect_eq(qd_perplexity(m, NULL, toks, n, &p, &r), QD_EINVAL);
    toks[5] = saved;
    free(toks);
    qd_model_free(m);
}

Test(perplexity, kld_self_is_zero)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", shared_dir());
    qd_model_t *m = load(path), *b = load(path);
    int n;
    int32_t *toks = shakespeare_tokens(m, &n);
    qd_ppl_params_t p;
    qd_ppl_result_t r;
    ppl_params(&p);
    p.n_chunks = 2;
    cr_assert_eq(qd_perplexity(m, b, toks, n, &p, &r), 0, "%s", qd_errmsg());
    cr_expect(r.has_base);
    cr_expect_eq(r.kld_mean, 0.0, "%g", r.kld_mean);
    cr_expect_eq(r.kld_max, 0.0, "%g", r.kld_max);
    cr_expect_eq(r.top1_agree, 1.0);
    cr_expect_eq(r.ppl, r.base_ppl);
    cr_expect_eq(r.ln_ppl_ratio, 0.0);
    /* a base with another vocabulary */
    qd_model_free(b);
    snprintf(path, sizeof path, "%s/gguf/llama-2-tiny-random.gguf",
             shared_dir());
    b = load(path);
    cr_expect_eq(qd_perplexity(m, b, toks, n, &p, &r), QD_EINVAL);
    cr_expect(strstr(qd_errmsg(), "vocabularies differ"), "%s", qd_errmsg());
    free(toks);
    qd_model_free(m);
    qd_model_free(b);
}

/* Q8_0 stays close to F32; Q4_0 drifts further. */
Test(perplexity, kld_q8_0_below_q4_0)
{
    char path[4096], q8[4096], q4[4096];
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", shared_dir());
    tmp_path(q8, sizeof q8, "ppl-q8");
    tmp_path(q4, sizeof q4, "ppl-q4");
    cr_assert_eq(quantize(path, q8, "Q8_0", 0, 2), 0, "%s", qd_errmsg());
    cr_assert_eq(quantize(path, q4, "Q4_0", 0, 2), 0, "%s", qd_errmsg());
    qd_model_t *base = load(path), *m8 = load(q8), *m4 = load(q4);
    int n;
    int32_t *toks = shakespeare_tokens(base, &n);
    qd_ppl_params_t p;
    qd_ppl_result_t r8, r4;
    ppl_params(&p);
    cr_assert_eq(qd_perplexity(m8, base, toks, n, &p, &r8), 0, "%s",
                 qd_errmsg());
    cr_assert_eq(qd_perplexity(m4, base, toks, n, &p, &r4), 0, "%s",
                 qd_errmsg());
    cr_expect(r8.kld_mean > 0 && r8.kld_mean < 0.01, "Q8_0 KLD %g",
              r8.kld_mean);
    cr_expect_lt(r8.kld_mean, r4.kld_mean, "Q8_0 %g vs Q4_0 %g", r8.kld_mean,
                 r4.kld_mean);
    cr_expect_leq(r8.kld_p99, r4.kld_p99);
    cr_expect_gt(r8.top1_agree, r4.top1_agree);
    cr_expect_gt(r8.top1_agree, 0.9);
    cr_expect_lt(fabs(r8.ppl - r8.base_ppl), 0.02 * r8.base_ppl);
    cr_expect_leq(r8.kld_median, r8.kld_p99);
    cr_expect_leq(r8.kld_p99, r8.kld_max);
    free(toks);
    qd_model_free(base);
    qd_model_free(m8);
    qd_model_free(m4);
    unlink(q8);
    unlink(q4);
}

Test(perplexity, command_arguments)
{
    char *a1[] = {"perplexity", "-m", NULL};
    cr_expect_eq(qd_cmd_perplexity(2, a1), 2);
    char *a2[] = {"perplexity", "-m", "x.gguf", "-f", "t.txt", "--ctx", "2",
                  NULL};
    cr_expect_eq(qd_cmd_perplexity(7, a2), 2);
    char *a3[] = {"perplexity", "-m", "/nonexistent.gguf", "-f",
                  "/nonexistent.txt", NULL};
    cr_expect_eq(qd_cmd_perplexity(5, a3), 1);
}
