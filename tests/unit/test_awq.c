/* test_awq.c — AWQ/GPTQ packing against hand-computed words, repacking
 * into GGUF blocks, and a tiny llama exported to AWQ/GPTQ and imported
 * back (bounds, cache). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/hf_import.h"
#include "quantd/quant.h"
#include "quantd/safetensors.h"

/* ---- packing: hand-computed words ------------------------------------- */

/* AWQ: q[k, n] = (k + n) % 16 for K = 2, N = 16; nibble i of word c holds
 * column 8c + [0,2,4,6,1,3,5,7][i]. */
static const int32_t awq_qweight[2 * 2] = {
    (int32_t)0x75316420, (int32_t)0xFDB9ECA8, /* k = 0 */
    (int32_t)0x86427531, (int32_t)0x0ECAFDB9, /* k = 1 */
};
/* zeros z[g, n] = n, one group */
static const int32_t awq_qzeros[2] = {(int32_t)0x75316420,
                                      (int32_t)0xFDB9ECA8};

Test(awq, pack_matches_hand_computed_words)
{
    qd_q4mat_t m;
    cr_assert_eq(qd_q4mat_init(&m, 16, 2, 2, 0), 0);
    for (int n = 0; n < 16; n++) {
        for (int k = 0; k < 2; k++)
            m.q[n * 2 + k] = (uint8_t)((k + n) % 16);
        m.z[n] = (uint8_t)n;
        m.s[n] = qd_fp32_to_fp16(0.5f + (float)n);
    }
    int32_t qw[4], qz[2];
    qd_fp16_t sc[16];
    cr_assert_eq(qd_awq_pack(&m, qw, qz, sc), 0);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(qw[i], awq_qweight[i], "qweight[%d] = %08x, want %08x", i,
                     (unsigned)qw[i], (unsigned)awq_qweight[i]);
    for (int i = 0; i < 2; i++)
        cr_expect_eq(qz[i], awq_qzeros[i]);
    for (int n = 0; n < 16; n++)
        cr_expect_eq(sc[n], m.s[n]);

    /* unpacking the literal words gives the matrix back */
    qd_q4mat_t u;
    cr_assert_eq(qd_awq_unpack(awq_qweight, awq_qzeros, sc, 2, 16, 2, &u), 0);
    cr_expect_eq(memcmp(u.q, m.q, 32), 0);
    cr_expect_eq(memcmp(u.z, m.z, 16), 0);
    float w[32];
    qd_q4mat_dequant(&u, w);
    /* W[n, k] = (q - z) * s: row 3, col 1: (4 - 3) * 3.5 */
    cr_expect_float_eq(w[3 * 2 + 1], 3.5f, 0);
    cr_expect_float_eq(w[15 * 2 + 1], (0 - 15) * 15.5f, 0);
    qd_q4mat_free(&u);
    qd_q4mat_free(&m);
}

/* GPTQ: q[k, n] = (k + n) % 16 for K = 16, N = 8 packed along K (nibble j
 * of word r holds row 8r + j); v1 zeros stored as z - 1 along N. */
Test(awq, gptq_pack_matches_hand_computed_words)
{
    static const int32_t want_qw[2 * 8] = {
        0x76543210,          (int32_t)0x87654321, (int32_t)0x98765432,
        (int32_t)0xA9876543, (int32_t)0xBA987654, (int32_t)0xCBA98765,
        (int32_t)0xDCBA9876, (int32_t)0xEDCBA987, /* r = 0, n = 0..7 */
        (int32_t)0xFEDCBA98, 0x0FEDCBA9,          0x10FEDCBA,
        0x210FEDCB,          0x3210FEDC,          0x43210FED,
        0x543210FE,          0x6543210F, /* r = 1 */
    };
    qd_q4mat_t m;
    cr_assert_eq(qd_q4mat_init(&m, 8, 16, 16, 0), 0);
    for (int n = 0; n < 8; n++) {
        for (int k = 0; k < 16; k++)
            m.q[n * 16 + k] = (uint8_t)((k + n) % 16);
        m.z[n] = (uint8_t)(n + 1);
        m.s[n] = qd_fp32_to_fp16(0.25f);
    }
    int32_t qw[16], qz[1], gi[16];
    qd_fp16_t sc[8];
    cr_assert_eq(qd_gptq_pack(&m, 0, qw, qz, sc, gi), 0);
    for (int i = 0; i < 16; i++)
        cr_expect_eq(qw[i], want_qw[i], "qweight[%d] = %08x, want %08x", i,
                     (unsigned)qw[i], (unsigned)want_qw[i]);
    cr_expect_eq(qz[0], 0x76543210, "v1 zeros %08x", (unsigned)qz[0]);
    for (int k = 0; k < 16; k++)
        cr_expect_eq(gi[k], 0);
    /* v2 stores the zero itself */
    cr_assert_eq(qd_gptq_pack(&m, 1, qw, qz, sc, NULL), 0);
    cr_expect_eq(qz[0], (int32_t)0x87654321);

    /* symmetric: zero 8 stored as 7 in every nibble */
    memset(m.z, 8, 8);
    cr_assert_eq(qd_gptq_pack(&m, 0, qw, qz, sc, NULL), 0);
    cr_expect_eq(qz[0], 0x77777777);

    /* unpack literal words (v1, zeros 0x76543210 → z = n + 1) */
    int32_t lz = 0x76543210;
    qd_q4mat_t u;
    cr_assert_eq(qd_gptq_unpack(want_qw, &lz, sc, NULL, 16, 8, 1, 16, 0, &u),
                 0);
    for (int n = 0; n < 8; n++) {
        cr_expect_eq(u.z[n], n + 1);
        for (int k = 0; k < 16; k++)
            cr_expect_eq(u.q[n * 16 + k], (k + n) % 16);
    }
    qd_q4mat_free(&u);
    /* g_idx out of range is refused */
    int32_t bad_g[16] = {0};
    bad_g[5] = 1;
    cr_expect_eq(qd_gptq_unpack(want_qw, &lz, sc, bad_g, 16, 8, 1, 16, 0, &u),
                 QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "g_idx[5] = 1"), "%s", qd_errmsg());
    qd_q4mat_free(&m);
}

/* ---- repacking into GGUF blocks ---------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float uni(void) { return (float)((next() >> 11) * 0x1.0p-53); }
static float gauss(void)
{
    float u = uni() + 1e-12f, v = uni();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void random_q4mat(qd_q4mat_t *m, int64_t N, int64_t K, int64_t G,
                         int zero8)
{
    cr_assert_eq(qd_q4mat_init(m, N, K, G, 0), 0);
    for (int64_t i = 0; i < N * K; i++)
        m->q[i] = (uint8_t)(next() % 16);
    for (int64_t i = 0; i < N * m->n_groups; i++) {
        m->z[i] = zero8 ? 8 : (uint8_t)(next() % 16);
        m->s[i] = qd_fp32_to_fp16(0.001f + 0.05f * uni());
    }
}

/* Q8_0 of a block with max |x| = amax: half a step d = amax/127, plus
 * the fp16 rounding of d (2^-11 relative) over up to 127 steps. */
static float q8_bound(float amax)
{
    return amax / 127.0f * (0.5f + 127.0f * 0x1p-11f) + 1e-7f;
}

static void dequant_rows(qd_type_t t, const void *data, int64_t N, int64_t K,
                         float *out)
{
    size_t rb = qd_row_size(t, K);
    for (int64_t n = 0; n < N; n++)
        qd_type_traits(t)->to_float((const uint8_t *)data + n * rb,
                                    out + n * K, K);
}

Test(awq, repack_q4_1_within_min_rounding)
{
    qd_q4mat_t m;
    random_q4mat(&m, 16, 256, 64, 0);
    qd_type_t t;
    void *data;
    size_t nb;
    cr_assert_eq(qd_q4mat_to_gguf(&m, &t, &data, &nb), 0);
    cr_assert_eq(t, QD_TYPE_Q4_1);
    cr_expect_eq(nb, qd_row_size(QD_TYPE_Q4_1, 256) * 16);
    float *a = malloc(16 * 256 * 4), *b = malloc(16 * 256 * 4);
    qd_q4mat_dequant(&m, a);
    dequant_rows(t, data, 16, 256, b);
    double worst = 0;
    int n_exact = 0;
    for (int n = 0; n < 16; n++)
        for (int k = 0; k < 256; k++) {
            int g = k / 64;
            float zs = (float)m.z[n * 4 + g] * qd_fp16_to_fp32(m.s[n * 4 + g]);
            /* the only rounding: m = -z*s to fp16 (half an fp16 ulp) */
            float bound = ldexpf(fabsf(zs), -11) + ldexpf(1.0f, -25);
            float d = fabsf(a[n * 256 + k] - b[n * 256 + k]);
            cr_expect(d <= bound, "n=%d k=%d |%g - %g| > %g", n, k,
                      a[n * 256 + k], b[n * 256 + k], bound);
            worst = fmax(worst, d);
            n_exact += d == 0;
        }
    cr_log_info("Q4_1 repack: max |Δ| = %.3g, %d/4096 exact", worst, n_exact);
    free(a);
    free(b);
    qd_free(data);
    qd_q4mat_free(&m);
}

/* Asymmetric groups of 128 (or a multiple) become Q4_G128: the same d and
 * m as Q4_1's repack, so the same bound; groups of 64 stay Q4_1. */
static void check_g128_repack(int64_t K, int64_t G, int with_g_idx)
{
    const int64_t N = 16;
    qd_q4mat_t m;
    random_q4mat(&m, N, K, G, 0);
    if (with_g_idx) { /* a trivial g_idx: k / G */
        m.g_idx = malloc((size_t)K * sizeof *m.g_idx);
        for (int64_t k = 0; k < K; k++)
            m.g_idx[k] = (int32_t)(k / G);
    }
    qd_type_t t;
    void *data;
    size_t nb;
    cr_assert_eq(qd_q4mat_to_gguf(&m, &t, &data, &nb), 0);
    cr_assert_eq(t, QD_TYPE_Q4_G128, "K %lld G %lld: %s", (long long)K,
                 (long long)G, qd_type_name(t));
    cr_expect_eq(nb, (size_t)(K / 128 * 68 * N));
    cr_expect_eq(nb, qd_row_size(QD_TYPE_Q4_G128, K) * N);
    float *a = malloc((size_t)(N * K) * 4), *b = malloc((size_t)(N * K) * 4);
    qd_q4mat_dequant(&m, a);
    dequant_rows(t, data, N, K, b);
    double worst = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int64_t g = k / G;
            float zs = (float)m.z[n * m.n_groups + g] *
                       qd_fp16_to_fp32(m.s[n * m.n_groups + g]);
            float bound = ldexpf(fabsf(zs), -11) + ldexpf(1.0f, -25);
            float d = fabsf(a[n * K + k] - b[n * K + k]);
            cr_expect(d <= bound, "n=%lld k=%lld |%g - %g| > %g", (long long)n,
                      (long long)k, a[n * K + k], b[n * K + k], bound);
            worst = fmax(worst, d);
        }
    cr_log_info("Q4_G128 repack (K %lld, G %lld): max |Δ| = %.3g",
                (long long)K, (long long)G, worst);
    free(a);
    free(b);
    qd_free(data);
    qd_q4mat_free(&m);
}

Test(awq, repack_group128_is_q4_g128)
{
    check_g128_repack(384, 128, 0);
    check_g128_repack(512, 256, 0);
    check_g128_repack(256, 128, 1);
}

Test(awq, repack_group64_stays_q4_1)
{
    qd_q4mat_t m;
    random_q4mat(&m, 4, 256, 64, 0);
    qd_type_t t;
    void *data;
    size_t nb;
    cr_assert_eq(qd_q4mat_to_gguf(&m, &t, &data, &nb), 0);
    cr_expect_eq(t, QD_TYPE_Q4_1);
    qd_free(data);
    /* an act-order g_idx whose 32-runs stay in one group but whose
     * 128-runs do not: Q4_1 */
    m.g_idx = malloc(256 * sizeof *m.g_idx);
    for (int k = 0; k < 256; k++)
        m.g_idx[k] = (k / 32) % 4;
    cr_assert_eq(qd_q4mat_to_gguf(&m, &t, &data, &nb), 0);
    cr_expect_eq(t, QD_TYPE_Q4_1);
    qd_free(data);
    qd_q4mat_free(&m);
}

/* Q4_G128 is quantd's own: a GGUF holding it is read only when it is an
 * import cache (has quantd.import.signature). */
static int open_with_q4_g128(int with_signature)
{
    char path[512];
    snprintf(path, sizeof path, "%s/awq-q4g-%d-%d.gguf",
             getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp", with_signature,
             (int)getpid());
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    cr_assert_not_null(w);
    static qd_block_q4_g128 blk[2];
    cr_assert_eq(qd_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    if (with_signature)
        cr_assert_eq(qd_gguf_writer_set_str(w, "quantd.import.signature",
                                            "0123"), 0);
    int64_t ne[2] = {128, 2};
    cr_assert_eq(qd_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight",
                                           QD_TYPE_Q4_G128, 2, ne, blk,
                                           sizeof blk, 1), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_gguf_writer_write(w, path), 0, "%s", qd_errmsg());
    qd_gguf_writer_destroy(w);
    qd_gguf_t *g;
    int rc = qd_gguf_open(path, &g);
    if (rc == 0) {
        const qd_gguf_tensor_t *t = qd_gguf_find_tensor(g, "blk.0.ffn_up.weight");
        cr_assert_not_null(t);
        cr_expect_eq(t->type, QD_TYPE_Q4_G128);
        cr_expect_eq(t->n_bytes, sizeof blk);
        qd_gguf_close(g);
    } else {
        cr_expect(strstr(qd_errmsg(), "import caches"), "%s", qd_errmsg());
    }
    unlink(path);
    return rc;
}

Test(awq, q4_g128_only_in_import_caches)
{
    cr_expect_eq(open_with_q4_g128(1), 0);
    cr_expect_eq(open_with_q4_g128(0), QD_EFORMAT);
    cr_expect(qd_type_valid(QD_TYPE_Q4_G128));
    cr_expect(qd_type_internal(QD_TYPE_Q4_G128));
    cr_expect(!qd_type_internal(QD_TYPE_Q4_1));
    cr_expect_str_eq(qd_type_name(QD_TYPE_Q4_G128), "Q4_G128");
    qd_type_t t;
    cr_expect_eq(qd_type_from_name("q4_g128", &t), 0);
    cr_expect_eq(t, QD_TYPE_Q4_G128);
    cr_expect_eq(qd_row_size(QD_TYPE_Q4_G128, 256), 136u);
}

Test(awq, repack_zero8_is_exact_q4_0)
{
    qd_q4mat_t m;
    random_q4mat(&m, 8, 128, 32, 1);
    qd_type_t t;
    void *data;
    size_t nb;
    cr_assert_eq(qd_q4mat_to_gguf(&m, &t, &data, &nb), 0);
    cr_assert_eq(t, QD_TYPE_Q4_0);
    float a[8 * 128], b[8 * 128];
    qd_q4mat_dequant(&m, a);
    dequant_rows(t, data, 8, 128, b);
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "Q4_0 repack must be exact");
    qd_free(data);
    qd_q4mat_free(&m);
}

Test(awq, repack_act_order_falls_back_to_q8_0)
{
    qd_q4mat_t m;
    random_q4mat(&m, 8, 128, 32, 0);
    m.g_idx = malloc(128 * sizeof *m.g_idx);
    for (int k = 0; k < 128; k++)
        m.g_idx[k] = (k * 5) % 4; /* 32-runs span all four groups */
    qd_type_t t;
    void *data;
    size_t nb;
    cr_assert_eq(qd_q4mat_to_gguf(&m, &t, &data, &nb), 0);
    cr_assert_eq(t, QD_TYPE_Q8_0);
    float a[8 * 128], b[8 * 128];
    qd_q4mat_dequant(&m, a);
    dequant_rows(t, data, 8, 128, b);
    for (int n = 0; n < 8; n++)
        for (int blk = 0; blk < 4; blk++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(a[n * 128 + blk * 32 + j]));
            for (int j = 0; j < 32; j++) {
                int i = n * 128 + blk * 32 + j;
                cr_expect(fabsf(a[i] - b[i]) <= q8_bound(amax),
                          "Q8_0 fallback error too large at %d", i);
            }
        }
    free(m.g_idx);
    m.g_idx = NULL;
    qd_free(data);
    qd_q4mat_free(&m);
}

Test(awq, name_mapping_and_permutation)
{
    char out[128];
    cr_assert_eq(qd_hf_name_to_gguf("model.layers.12.self_attn.o_proj.weight",
                                    out, sizeof out), 0);
    cr_expect_str_eq(out, "blk.12.attn_output.weight");
    cr_assert_eq(qd_hf_name_to_gguf("model.layers.0.self_attn.k_proj.bias",
                                    out, sizeof out), 0);
    cr_expect_str_eq(out, "blk.0.attn_k.bias");
    cr_assert_eq(qd_hf_name_to_gguf("lm_head.weight", out, sizeof out), 0);
    cr_expect_str_eq(out, "output.weight");
    cr_assert_eq(qd_hf_name_to_gguf("model.layers.1.self_attn.q_norm.weight",
                                    out, sizeof out), 0);
    cr_expect_str_eq(out, "blk.1.attn_q_norm.weight");
    cr_expect_eq(qd_hf_name_to_gguf("model.layers.01.mlp.up_proj.weight", out,
                                    sizeof out), QD_ENOTFOUND);
    cr_expect_eq(qd_hf_name_to_gguf("model.layers.1.mlp.up_proj.qweight", out,
                                    sizeof out), QD_ENOTFOUND);
    cr_assert_eq(qd_hf_name_from_gguf("blk.3.ffn_down.weight", out,
                                      sizeof out), 0);
    cr_expect_str_eq(out, "model.layers.3.mlp.down_proj.weight");
    cr_assert_eq(qd_hf_name_from_gguf("token_embd.weight", out, sizeof out),
                 0);
    cr_expect_str_eq(out, "model.embed_tokens.weight");

    /* llama.cpp permute(w, n_head=2) on 8 rows (head_dim 4):
     * reshape (2, 2, 2) → swap axes 1, 2: HF rows 0 2 1 3 | 4 6 5 7 */
    int src[8] = {0, 1, 2, 3, 4, 5, 6, 7}, dst[8], back[8];
    cr_assert_eq(qd_hf_permute_rows(dst, src, 8, sizeof(int), 2, 0), 0);
    int want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    cr_expect_eq(memcmp(dst, want, sizeof want), 0);
    cr_assert_eq(qd_hf_permute_rows(back, dst, 8, sizeof(int), 2, 1), 0);
    cr_expect_eq(memcmp(back, src, sizeof src), 0);
    int src16[16], dst16[16];
    for (int i = 0; i < 16; i++)
        src16[i] = i;
    cr_assert_eq(qd_hf_permute_rows(dst16, src16, 16, sizeof(int), 2, 0), 0);
    /* head_dim 8: rows 0 4 1 5 2 6 3 7 */
    int want16[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    cr_expect_eq(memcmp(dst16, want16, sizeof want16), 0);
    cr_expect_eq(qd_hf_permute_rows(dst, src, 6, sizeof(int), 2, 0),
                 QD_EINVAL);
}

/* ---- a tiny llama: export, import, compare ----------------------------- */

enum { EMB = 128, LAYERS = 2, HEADS = 4, HEADS_KV = 2, FF = 256, VOCAB = 512 };
#define HD (EMB / HEADS)

static const char *tmpdir(void)
{
    const char *t = getenv("QD_TMP");
    return t && t[0] ? t : "/tmp";
}

static void add_f32(qd_gguf_writer_t *w, const char *name, int64_t ne0,
                    int64_t ne1, float scale, float offset)
{
    int64_t n = ne0 * ne1, ne[2] = {ne0, ne1};
    float *v = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++)
        v[i] = offset + scale * gauss();
    cr_assert_eq(qd_gguf_writer_add_tensor(w, name, QD_TYPE_F32,
                                           ne1 > 1 ? 2 : 1, ne, v,
                                           (size_t)n * 4, 1), 0);
    free(v);
}

/* Write a random F32 llama GGUF (no tokenizer) to path. */
static void make_tiny_llama(const char *path)
{
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    cr_assert_not_null(w);
    qd_gguf_writer_set_str(w, "general.architecture", "llama");
    qd_gguf_writer_set_u32(w, "llama.context_length", 256);
    qd_gguf_writer_set_u32(w, "llama.embedding_length", EMB);
    qd_gguf_writer_set_u32(w, "llama.block_count", LAYERS);
    qd_gguf_writer_set_u32(w, "llama.feed_forward_length", FF);
    qd_gguf_writer_set_u32(w, "llama.attention.head_count", HEADS);
    qd_gguf_writer_set_u32(w, "llama.attention.head_count_kv", HEADS_KV);
    qd_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    qd_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    add_f32(w, "token_embd.weight", EMB, VOCAB, 0.5f, 0);
    add_f32(w, "output_norm.weight", EMB, 1, 0.1f, 1.0f);
    add_f32(w, "output.weight", EMB, VOCAB, 0.08f, 0);
    for (int l = 0; l < LAYERS; l++) {
        char nm[64];
#define T(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
        add_f32(w, T("attn_norm.weight"), EMB, 1, 0.1f, 1.0f);
        add_f32(w, T("attn_q.weight"), EMB, EMB, 0.09f, 0);
        add_f32(w, T("attn_k.weight"), EMB, HD * HEADS_KV, 0.09f, 0);
        add_f32(w, T("attn_v.weight"), EMB, HD * HEADS_KV, 0.09f, 0);
        add_f32(w, T("attn_output.weight"), EMB, EMB, 0.09f, 0);
        add_f32(w, T("ffn_norm.weight"), EMB, 1, 0.1f, 1.0f);
        add_f32(w, T("ffn_gate.weight"), EMB, FF, 0.09f, 0);
        add_f32(w, T("ffn_up.weight"), EMB, FF, 0.09f, 0);
        add_f32(w, T("ffn_down.weight"), FF, EMB, 0.06f, 0);
#undef T
    }
    cr_assert_eq(qd_gguf_writer_write(w, path), 0, "%s", qd_errmsg());
    qd_gguf_writer_destroy(w);
}

static void rm_rf_dir(const char *dir)
{
    static const char *const files[] = {
        "model.safetensors", "config.json", "generation_config.json",
        "quantd-import.gguf", "tokenizer.json", "tokenizer_config.json"};
    char p[1024];
    for (size_t i = 0; i < QD_ARRAY_SIZE(files); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static const char *const linears[] = {"attn_q",   "attn_k", "attn_v",
                                      "attn_output", "ffn_gate", "ffn_up",
                                      "ffn_down"};

static const char *hf_module(const char *lin)
{
    static const char *const hf[] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
        "mlp.down_proj"};
    for (size_t i = 0; i < QD_ARRAY_SIZE(linears); i++)
        if (strcmp(lin, linears[i]) == 0)
            return hf[i];
    return NULL;
}

/* Read the exported layer back with the reference unpacker (HF order),
 * then permute into GGUF order for llama q/k. */
static void read_exported(const qd_st_t *st, int layer, const char *lin,
                          int gptq, int64_t G, qd_q4mat_t *m)
{
    char base[128], nm[160];
    snprintf(base, sizeof base, "model.layers.%d.%s", layer, hf_module(lin));
#define GET(s) (snprintf(nm, sizeof nm, "%s." s, base), qd_st_find(st, nm))
    const qd_st_tensor_t *qw = GET("qweight"), *qz = GET("qzeros"),
                         *sc = GET("scales"), *gi = GET("g_idx");
#undef GET
    cr_assert(qw && qz && sc, "missing tensors of %s", base);
    if (!gptq) {
        cr_assert_eq(qd_awq_unpack(qw->data, qz->data, sc->data, qw->shape[0],
                                   qw->shape[1] * 8, G, m), 0);
    } else {
        cr_assert_not_null(gi);
        cr_assert_eq(qd_gptq_unpack(qw->data, qz->data, sc->data, gi->data,
                                    qw->shape[0] * 8, qw->shape[1],
                                    sc->shape[0], G, 0, m), 0, "%s",
                     qd_errmsg());
    }
    int heads = strcmp(lin, "attn_q") == 0   ? HEADS
                : strcmp(lin, "attn_k") == 0 ? HEADS_KV
                                             : 0;
    if (heads)
        cr_assert_eq(qd_q4mat_permute_rows(m, heads, 0), 0);
}

typedef struct {
    double max_q_err_over_s; /* max |deq - src| / s */
    double max_repack;       /* max |imported - reference deq| */
    qd_type_t type;
} cmp_t;

/* Compare one layer: source (F32 GGUF) vs the exported checkpoint's
 * reference dequantization vs the imported GGUF tensor. */
static cmp_t compare_layer(const qd_gguf_t *src, const qd_st_t *st,
                           const qd_gguf_t *imp, int layer, const char *lin,
                           int gptq, int64_t G)
{
    char nm[64];
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, lin);
    const qd_gguf_tensor_t *ts = qd_gguf_find_tensor(src, nm);
    const qd_gguf_tensor_t *ti = qd_gguf_find_tensor(imp, nm);
    cr_assert(ts && ti, "missing %s", nm);
    int64_t K = ts->ne[0], N = ts->ne[1];
    cr_assert_eq(ti->ne[0], K);
    cr_assert_eq(ti->ne[1], N);
    qd_q4mat_t m;
    read_exported(st, layer, lin, gptq, G, &m);
    float *ref = malloc((size_t)(N * K) * 4), *got = malloc((size_t)(N * K) * 4);
    qd_q4mat_dequant(&m, ref);
    dequant_rows(ti->type, ti->data, N, K, got);
    const float *w = ts->data;
    cmp_t c = {0, 0, ti->type};
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int64_t g = m.g_idx ? m.g_idx[k] : k / m.group_size;
            float s = qd_fp16_to_fp32(m.s[n * m.n_groups + g]);
            float zs = (float)m.z[n * m.n_groups + g] * s;
            size_t i = (size_t)(n * K + k);
            /* RTN: half a step, plus the fp16 rounding of the scale
             * (2^-11 relative) over at most 16 steps where the top of
             * the range clips */
            double e = fabs((double)ref[i] - w[i]);
            cr_expect(e <= s * (0.5 + 0x1p-7) + 1e-7,
                      "%s [%lld, %lld]: |%g - %g| > s/2 = %g", nm,
                      (long long)n, (long long)k, ref[i], w[i], 0.5 * s);
            c.max_q_err_over_s = fmax(c.max_q_err_over_s, e / s);
            double r = fabs((double)got[i] - ref[i]);
            c.max_repack = fmax(c.max_repack, r);
            if (ti->type == QD_TYPE_Q4_1 || ti->type == QD_TYPE_Q4_0 ||
                ti->type == QD_TYPE_Q4_G128)
                cr_expect(r <= ldexp(fabs(zs), -11) + ldexp(1.0, -25),
                          "%s [%lld, %lld]: repack |%g - %g| beyond the m "
                          "rounding", nm, (long long)n, (long long)k, got[i],
                          ref[i]);
        }
    if (ti->type == QD_TYPE_Q8_0)
        for (int64_t n = 0; n < N; n++)
            for (int64_t b = 0; b < K / 32; b++) {
                float amax = 0;
                for (int j = 0; j < 32; j++)
                    amax = fmaxf(amax, fabsf(ref[n * K + b * 32 + j]));
                for (int j = 0; j < 32; j++) {
                    size_t i = (size_t)(n * K + b * 32 + j);
                    cr_expect(fabsf(got[i] - ref[i]) <= q8_bound(amax),
                              "%s: Q8_0 fallback error at %zu", nm, i);
                }
            }
    free(ref);
    free(got);
    qd_q4mat_free(&m);
    return c;
}

static void check_float_tensors(const qd_gguf_t *src, const qd_gguf_t *imp)
{
    /* embeddings/lm_head: fp16 of the source; norms: F32 of fp16 */
    const char *names[] = {"token_embd.weight", "output.weight",
                           "output_norm.weight", "blk.1.ffn_norm.weight"};
    for (size_t i = 0; i < QD_ARRAY_SIZE(names); i++) {
        const qd_gguf_tensor_t *a = qd_gguf_find_tensor(src, names[i]);
        const qd_gguf_tensor_t *b = qd_gguf_find_tensor(imp, names[i]);
        cr_assert(a && b, "missing %s", names[i]);
        int64_t n = a->ne[0] * a->ne[1];
        cr_assert_eq(b->ne[0] * b->ne[1], n);
        const float *x = a->data;
        for (int64_t j = 0; j < n; j++) {
            float want = qd_fp16_to_fp32(qd_fp32_to_fp16(x[j]));
            float got = b->type == QD_TYPE_F16
                            ? qd_fp16_to_fp32(((const qd_fp16_t *)b->data)[j])
                            : ((const float *)b->data)[j];
            cr_expect_eq(got, want, "%s[%lld]", names[i], (long long)j);
            if (got != want)
                break;
        }
    }
}

typedef struct {
    qd_hf_export_fmt_t fmt;
    int group, sym, act;
    int want_q4_0, want_q4_1, want_q8_0, want_q4_g128;
} case_t;

static void round_trip(const case_t *cs, const char *tag)
{
    char src_path[512], dir[512];
    snprintf(src_path, sizeof src_path, "%s/awq-src-%s-%d.gguf", tmpdir(), tag,
             (int)getpid());
    snprintf(dir, sizeof dir, "%s/awq-dir-%s-%d", tmpdir(), tag, (int)getpid());
    make_tiny_llama(src_path);
    qd_hf_export_params_t p;
    qd_hf_export_params_default(&p);
    p.format = cs->fmt;
    p.group_size = cs->group;
    p.gptq_sym = cs->sym;
    p.gptq_act_order = cs->act;
    p.seed = 42;
    cr_assert_eq(qd_hf_export(src_path, dir, &p), 0, "%s", qd_errmsg());

    qd_hf_import_result_t r;
    uint64_t t0 = qd_now_ns();
    cr_assert_eq(qd_hf_import(dir, NULL, &r), 0, "%s", qd_errmsg());
    uint64_t t1 = qd_now_ns();
    cr_expect_eq(r.from_cache, 0);
    cr_expect_eq(r.n_q4_0, cs->want_q4_0);
    cr_expect_eq(r.n_q4_1, cs->want_q4_1);
    cr_expect_eq(r.n_q8_0, cs->want_q8_0);
    cr_expect_eq(r.n_q4_g128, cs->want_q4_g128);
    cr_expect_eq(r.n_float, 2 + 1 + 2 * LAYERS);
    cr_expect_null(r.tokenizer_json);

    qd_gguf_t *src, *imp;
    qd_st_t *st;
    char stp[600];
    snprintf(stp, sizeof stp, "%s/model.safetensors", dir);
    cr_assert_eq(qd_gguf_open(src_path, &src), 0);
    cr_assert_eq(qd_gguf_open(r.gguf_path, &imp), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_st_open(stp, &st), 0, "%s", qd_errmsg());
    uint32_t u;
    cr_expect_eq(qd_gguf_get_u32(imp, "llama.attention.head_count_kv", &u), 0);
    cr_expect_eq(u, HEADS_KV);
    cr_expect_eq(qd_gguf_get_u32(imp, "llama.feed_forward_length", &u), 0);
    cr_expect_eq(u, FF);
    double worst_q = 0, worst_r = 0;
    for (int l = 0; l < LAYERS; l++)
        for (size_t i = 0; i < QD_ARRAY_SIZE(linears); i++) {
            cmp_t c = compare_layer(src, st, imp, l, linears[i],
                                    cs->fmt == QD_HF_EXPORT_GPTQ, cs->group);
            worst_q = fmax(worst_q, c.max_q_err_over_s);
            worst_r = fmax(worst_r, c.max_repack);
        }
    check_float_tensors(src, imp);
    cr_log_info("%s: max |deq - src| = %.4f s, max repack |Δ| = %.3g", tag,
                worst_q, worst_r);
    qd_st_close(st);
    qd_gguf_close(imp);

    /* second import: the cache, without opening any safetensors */
    qd_hf_import_result_t r2;
    uint64_t t2 = qd_now_ns();
    cr_assert_eq(qd_hf_import(dir, NULL, &r2), 0, "%s", qd_errmsg());
    uint64_t t3 = qd_now_ns();
    cr_expect_eq(r2.from_cache, 1);
    cr_expect_str_eq(r2.gguf_path, r.gguf_path);
    cr_log_info("%s: cold import %.2f ms, cached %.2f ms", tag,
                (double)(t1 - t0) / 1e6, (double)(t3 - t2) / 1e6);
    qd_hf_import_result_free(&r2);
    qd_hf_import_result_free(&r);
    qd_gguf_close(src);
    unlink(src_path);
    rm_rf_dir(dir);
}

Test(awq, tiny_llama_awq_round_trip)
{
    /* 14 linears, every one Q4_1 (AWQ zero points vary) */
    case_t c = {QD_HF_EXPORT_AWQ, 64, 0, 0, 0, 14, 0, 0};
    round_trip(&c, "awq64");
}

Test(awq, tiny_llama_awq_group128)
{
    /* group 128, asymmetric: every linear Q4_G128 */
    case_t c = {QD_HF_EXPORT_AWQ, 128, 0, 0, 0, 0, 0, 14};
    round_trip(&c, "awq128");
}

Test(awq, tiny_llama_gptq_asym_group128)
{
    case_t c = {QD_HF_EXPORT_GPTQ, 128, 0, 0, 0, 0, 0, 14};
    round_trip(&c, "gptq-asym128");
}

Test(awq, tiny_llama_gptq_sym)
{
    case_t c = {QD_HF_EXPORT_GPTQ, 128, 1, 0, 14, 0, 0, 0};
    round_trip(&c, "gptq-sym");
}

Test(awq, tiny_llama_gptq_asym)
{
    case_t c = {QD_HF_EXPORT_GPTQ, 32, 0, 0, 0, 14, 0, 0};
    round_trip(&c, "gptq-asym");
}

Test(awq, tiny_llama_gptq_act_order)
{
    case_t c = {QD_HF_EXPORT_GPTQ, 64, 1, 1, 0, 0, 14, 0};
    round_trip(&c, "gptq-act");
}

Test(awq, cache_invalidation_and_user_cache)
{
    char src_path[512], dir[512], cache[512];
    snprintf(src_path, sizeof src_path, "%s/awq-c-src-%d.gguf", tmpdir(),
             (int)getpid());
    snprintf(dir, sizeof dir, "%s/awq-c-dir-%d", tmpdir(), (int)getpid());
    snprintf(cache, sizeof cache, "%s/awq-c-cache-%d", tmpdir(), (int)getpid());
    make_tiny_llama(src_path);
    cr_assert_eq(qd_awq_export(src_path, dir, NULL), 0, "%s", qd_errmsg());
    qd_hf_import_params_t p = {.cache_dir = cache};
    qd_hf_import_result_t r;
    cr_assert_eq(qd_hf_import(dir, &p, &r), 0, "%s", qd_errmsg());
    cr_expect_eq(r.from_cache, 0);
    cr_expect(strncmp(r.gguf_path, cache, strlen(cache)) == 0, "%s",
              r.gguf_path);
    char cached[1024];
    snprintf(cached, sizeof cached, "%s", r.gguf_path);
    qd_hf_import_result_free(&r);
    cr_assert_eq(qd_hf_import(dir, &p, &r), 0);
    cr_expect_eq(r.from_cache, 1);
    qd_hf_import_result_free(&r);
    /* a changed config.json makes the cache stale */
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *f = fopen(cfg, "a");
    fputs("\n", f);
    fclose(f);
    cr_assert_eq(qd_hf_import(dir, &p, &r), 0);
    cr_expect_eq(r.from_cache, 0);
    qd_hf_import_result_free(&r);
    p.force = 1;
    cr_assert_eq(qd_hf_import(dir, &p, &r), 0);
    cr_expect_eq(r.from_cache, 0);
    qd_hf_import_result_free(&r);
    /* an unsupported architecture is refused by name */
    f = fopen(cfg, "w");
    fputs("{\"architectures\":[\"GPT2LMHeadModel\"],\"hidden_size\":128,"
          "\"num_hidden_layers\":2,\"num_attention_heads\":4,"
          "\"intermediate_size\":256,\"vocab_size\":512}", f);
    fclose(f);
    cr_expect_eq(qd_hf_import(dir, &p, &r), QD_EUNSUPPORTED);
    cr_expect(strstr(qd_errmsg(), "GPT2LMHeadModel"), "%s", qd_errmsg());
    unlink(cached);
    rmdir(cache);
    unlink(src_path);
    rm_rf_dir(dir);
}
