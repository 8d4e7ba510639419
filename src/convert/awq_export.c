/*
 * awq_export.c — writes Hugging Face checkpoint directories in the
 * AutoAWQ GEMM layout (and the AutoGPTQ v1 layout, used by tests and for
 * interoperability) from a float GGUF model.
 *
 * Quantization is round-to-nearest exactly as the reference tools do it
 * (AutoAWQ's pseudo_quantize_tensor + WQLinear_GEMM.from_linear; AutoGPTQ's
 * Quantizer.find_params + QuantLinear.pack). AWQ's activation-aware
 * scaling only rescales the float weights before this step: with a
 * calibration text the search of convert/calib.c (the one `quantize
 * --method awq` uses, here with this format's rounding as its yardstick)
 * writes a folded float copy of the model, which is then exported. Linear layers become
 * qweight/qzeros/scales; embeddings, norms and lm_head stay fp16, as
 * AutoAWQ leaves them. q/k rows go back from llama.cpp's interleaved RoPE
 * order to Hugging Face's half-split order.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/calib_int.h"
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/convert.h"
#include "quantd/gguf.h"
#include "quantd/hf_import.h"
#include "quantd/quant.h"
#include "quantd/safetensors.h"

#define MOD "awq_export"

void qd_hf_export_params_default(qd_hf_export_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->format = QD_HF_EXPORT_AWQ;
    p->group_size = 128;
    p->gptq_sym = 1;
    p->seed = 1;
}

static inline float clampf(float x, float lo, float hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

int qd_awq_quantize(const float *w, int64_t N, int64_t K, int64_t G,
                    qd_q4mat_t *m)
{
    if (G <= 0 || K % G != 0) {
        qd_set_errmsg("awq: input size %lld is not a multiple of the group "
                      "size %lld", (long long)K, (long long)G);
        return QD_EINVAL;
    }
    int rc = qd_q4mat_init(m, N, K, G, 0);
    if (rc)
        return rc;
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K / G; g++) {
            const float *x = w + n * K + g * G;
            float mx = x[0], mn = x[0];
            for (int64_t j = 1; j < G; j++) {
                mx = fmaxf(mx, x[j]);
                mn = fminf(mn, x[j]);
            }
            /* pseudo_quantize_tensor: torch.round is half-to-even = rintf */
            float scale = fmaxf(mx - mn, 1e-5f) / 15.0f;
            float zero = clampf(-rintf(mn / scale), 0.0f, 15.0f);
            /* from_linear: fp16 scales, then re-round against them */
            qd_fp16_t s16 = qd_fp32_to_fp16(scale);
            float s = qd_fp16_to_fp32(s16);
            m->s[n * m->n_groups + g] = s16;
            m->z[n * m->n_groups + g] = (uint8_t)zero;
            for (int64_t j = 0; j < G; j++)
                m->q[n * K + g * G + j] =
                    (uint8_t)clampf(rintf((x[j] + zero * s) / s), 0, 15);
        }
    return 0;
}

int qd_gptq_quantize(const float *w, int64_t N, int64_t K, int64_t G,
                     int sym, const int32_t *perm, qd_q4mat_t *m)
{
    if (G <= 0 || K % G != 0) {
        qd_set_errmsg("gptq: input size %lld is not a multiple of the group "
                      "size %lld", (long long)K, (long long)G);
        return QD_EINVAL;
    }
    int rc = qd_q4mat_init(m, N, K, G, perm != NULL);
    if (rc)
        return rc;
    if (perm)
        for (int64_t i = 0; i < K; i++)
            m->g_idx[perm[i]] = (int32_t)(i / G);
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K / G; g++) {
            const float *x = w + n * K;
#define COL(j) (perm ? perm[g * G + (j)] : g * G + (j))
            float mn = 0, mx = 0; /* find_params includes 0 in the range */
            for (int64_t j = 0; j < G; j++) {
                mx = fmaxf(mx, x[COL(j)]);
                mn = fminf(mn, x[COL(j)]);
            }
            if (sym) {
                mx = fmaxf(fabsf(mn), mx);
                if (mn < 0)
                    mn = -mx;
            }
            if (mn == 0 && mx == 0) {
                mn = -1;
                mx = 1;
            }
            float scale = (mx - mn) / 15.0f;
            float zero = sym ? 8.0f : rintf(-mn / scale);
            /* v1 stores zero - 1, so zero 0 is not representable (AutoGPTQ
             * wraps it to 15); it only arises when the group's minimum is
             * within scale/2 of 0, and 1 then costs at most one step at
             * the top of the range. */
            zero = clampf(zero, 1.0f, 15.0f);
            qd_fp16_t s16 = qd_fp32_to_fp16(scale);
            float s = qd_fp16_to_fp32(s16);
            m->s[n * m->n_groups + g] = s16;
            m->z[n * m->n_groups + g] = (uint8_t)zero;
            for (int64_t j = 0; j < G; j++)
                m->q[n * K + COL(j)] =
                    (uint8_t)clampf(rintf((x[COL(j)] + zero * s) / s), 0, 15);
#undef COL
        }
    return 0;
}

/* ---- directory writer --------------------------------------------------- */

typedef struct {
    void **p;
    size_t n, cap;
} bufs_t;

static void *keep(bufs_t *b, void *p)
{
    if (!p)
        return NULL;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        void *q = qd_realloc(b->p, cap * sizeof *b->p);
        if (!q) {
            qd_free(p);
            return NULL;
        }
        b->p = q;
        b->cap = cap;
    }
    return b->p[b->n++] = p;
}

static const char *const linear_names[] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
    "ffn_down",
};

/* 1 if the GGUF tensor is a linear layer's weight. */
static int is_linear(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return 0;
    const char *d = strchr(name + 4, '.');
    if (!d)
        return 0;
    for (size_t i = 0; i < QD_ARRAY_SIZE(linear_names); i++) {
        size_t l = strlen(linear_names[i]);
        if (strncmp(d + 1, linear_names[i], l) == 0 &&
            strcmp(d + 1 + l, ".weight") == 0)
            return 1;
    }
    return 0;
}

static int get_u32_def(const qd_gguf_t *g, const char *arch, const char *sfx,
                       uint32_t def, uint32_t *out)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, sfx);
    int rc = qd_gguf_get_u32(g, k, out);
    if (rc == QD_ENOTFOUND) {
        if (def == UINT32_MAX) {
            qd_set_errmsg("awq export: metadata key '%s' is missing", k);
            return QD_EFORMAT;
        }
        *out = def;
        return 0;
    }
    if (rc)
        qd_set_errmsg("awq export: metadata key '%s' is not a u32", k);
    return rc;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int copy_file(const char *from, const char *dir, const char *name)
{
    char to[4096];
    if (snprintf(to, sizeof to, "%s/%s", dir, name) >= (int)sizeof to)
        return QD_EINVAL;
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    int rc = 0;
    if (!a || !b) {
        qd_set_errmsg("awq export: cannot copy '%s' to '%s': %s", from, to,
                      strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, k, b) != k) {
            rc = QD_EIO;
            break;
        }
    if (ferror(a))
        rc = QD_EIO;
out:
    if (a)
        fclose(a);
    if (b && fclose(b) != 0)
        rc = QD_EIO;
    return rc;
}

int qd__json_dump(json_t *o, const char *dir, const char *name, const char *what)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) {
        qd_set_errmsg("%s: path too long in '%s'", what, dir);
        return QD_EINVAL;
    }
    if (json_dump_file(o, p, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        qd_set_errmsg("%s: cannot write '%s'", what, p);
        return QD_EIO;
    }
    return 0;
}

typedef struct {
    const qd_hf_export_params_t *p;
    qd_st_writer_t *w;
    bufs_t bufs;
    int64_t G; /* per tensor */
} exp_t;

static int add_st(exp_t *e, const char *name, qd_st_dtype_t dt, int nd,
                  int64_t d0, int64_t d1, void *data, size_t nb)
{
    int64_t shape[2] = {d0, d1};
    return qd_st_writer_add(e->w, name, dt, nd, shape, data, nb, 0);
}

/* Quantize one linear layer w[N][K] (HF row order) under base name. */
static int export_linear(exp_t *e, const char *base, const float *w,
                         int64_t N, int64_t K)
{
    const qd_hf_export_params_t *p = e->p;
    int64_t G = p->group_size > 0 ? p->group_size : K;
    qd_q4mat_t m = {0};
    int32_t *perm = NULL;
    int rc;
    char nm[320];
    if (N % 8 != 0 || K % G != 0) {
        qd_set_errmsg("awq export: '%s' is %lld x %lld; needs outputs %% 8 "
                      "== 0 and inputs %% group size %lld == 0", base,
                      (long long)N, (long long)K, (long long)G);
        return QD_EUNSUPPORTED;
    }
    if (p->format == QD_HF_EXPORT_AWQ) {
        if ((rc = qd_awq_quantize(w, N, K, G, &m)))
            return rc;
        int32_t *qw = keep(&e->bufs, qd_malloc((size_t)(K * N / 8) * 4));
        int32_t *qz = keep(&e->bufs, qd_malloc((size_t)(K / G * N / 8) * 4));
        qd_fp16_t *sc = keep(&e->bufs, qd_malloc((size_t)(K / G * N) * 2));
        if (!qw || !qz || !sc) {
            rc = QD_ENOMEM;
            goto out;
        }
        if ((rc = qd_awq_pack(&m, qw, qz, sc)))
            goto out;
        if ((snprintf(nm, sizeof nm, "%s.qweight", base),
             rc = add_st(e, nm, QD_ST_I32, 2, K, N / 8, qw,
                         (size_t)(K * N / 8) * 4)) ||
            (snprintf(nm, sizeof nm, "%s.qzeros", base),
             rc = add_st(e, nm, QD_ST_I32, 2, K / G, N / 8, qz,
                         (size_t)(K / G * N / 8) * 4)) ||
            (snprintf(nm, sizeof nm, "%s.scales", base),
             rc = add_st(e, nm, QD_ST_F16, 2, K / G, N, sc,
                         (size_t)(K / G * N) * 2)))
            goto out;
    } else {
        if (K % 8 != 0) {
            rc = QD_EUNSUPPORTED;
            goto out;
        }
        if (p->gptq_act_order) {
            perm = qd_malloc((size_t)K * sizeof *perm);
            if (!perm) {
                rc = QD_ENOMEM;
                goto out;
            }
            uint64_t s = p->seed ? p->seed : 1;
            for (int64_t i = 0; i < K; i++)
                perm[i] = (int32_t)i;
            for (int64_t i = K - 1; i > 0; i--) {
                int64_t j = (int64_t)(xorshift(&s) % (uint64_t)(i + 1));
                int32_t t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
        }
        if ((rc = qd_gptq_quantize(w, N, K, G, p->gptq_sym, perm, &m)))
            goto out;
        int64_t ng = m.n_groups;
        int32_t *qw = keep(&e->bufs, qd_malloc((size_t)(K / 8 * N) * 4));
        int32_t *qz = keep(&e->bufs, qd_malloc((size_t)(ng * N / 8) * 4));
        qd_fp16_t *sc = keep(&e->bufs, qd_malloc((size_t)(ng * N) * 2));
        int32_t *gi = keep(&e->bufs, qd_malloc((size_t)K * 4));
        if (!qw || !qz || !sc || !gi) {
            rc = QD_ENOMEM;
            goto out;
        }
        if ((rc = qd_gptq_pack(&m, 0, qw, qz, sc, gi)))
            goto out;
        if ((snprintf(nm, sizeof nm, "%s.qweight", base),
             rc = add_st(e, nm, QD_ST_I32, 2, K / 8, N, qw,
                         (size_t)(K / 8 * N) * 4)) ||
            (snprintf(nm, sizeof nm, "%s.qzeros", base),
             rc = add_st(e, nm, QD_ST_I32, 2, ng, N / 8, qz,
                         (size_t)(ng * N / 8) * 4)) ||
            (snprintf(nm, sizeof nm, "%s.scales", base),
             rc = add_st(e, nm, QD_ST_F16, 2, ng, N, sc,
                         (size_t)(ng * N) * 2)) ||
            (snprintf(nm, sizeof nm, "%s.g_idx", base),
             rc = add_st(e, nm, QD_ST_I32, 1, K, 1, gi, (size_t)K * 4)))
            goto out;
    }
out:
    qd_free(perm);
    qd_q4mat_free(&m);
    return rc;
}

static json_t *make_config(const char *arch, const uint32_t *hp, float eps,
                           float theta, int64_t n_vocab, int tied,
                           const qd_hf_export_params_t *p)
{
    static const char *const hf_arch[][2] = {
        {"llama", "LlamaForCausalLM"},
        {"qwen2", "Qwen2ForCausalLM"},
        {"qwen3", "Qwen3ForCausalLM"},
    };
    const char *ha = "LlamaForCausalLM";
    for (size_t i = 0; i < QD_ARRAY_SIZE(hf_arch); i++)
        if (strcmp(arch, hf_arch[i][0]) == 0)
            ha = hf_arch[i][1];
    json_t *q;
    if (p->format == QD_HF_EXPORT_AWQ)
        q = json_pack("{s:s, s:b, s:i, s:i, s:s, s:n}", "quant_method", "awq",
                      "zero_point", 1, "group_size", p->group_size, "bits", 4,
                      "version", "gemm", "modules_to_not_convert");
    else
        q = json_pack("{s:s, s:i, s:i, s:b, s:b, s:s}", "quant_method",
                      "gptq", "bits", 4, "group_size", p->group_size,
                      "desc_act", p->gptq_act_order, "sym", p->gptq_sym,
                      "checkpoint_format", "gptq");
    /* hp: n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, head_dim */
    return json_pack(
        "{s:[s], s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, "
        "s:b, s:s, s:s, s:o}",
        "architectures", ha, "model_type", arch, "hidden_size",
        (json_int_t)hp[0], "num_hidden_layers", (json_int_t)hp[1],
        "num_attention_heads", (json_int_t)hp[2], "num_key_value_heads",
        (json_int_t)hp[3], "intermediate_size", (json_int_t)hp[4],
        "max_position_embeddings", (json_int_t)hp[5], "head_dim",
        (json_int_t)hp[6], "vocab_size", (json_int_t)n_vocab, "rms_norm_eps",
        (double)eps, "rope_theta", (double)theta, "tie_word_embeddings", tied,
        "torch_dtype", "float16", "hidden_act", "silu", "quantization_config",
        q);
}

/* The search's view of this format: AutoAWQ's rounding with group G. */
static int awq_round(void *ud, int k, const float *w, int64_t rows, int64_t n,
                     float *out)
{
    int64_t G = *(const int64_t *)ud;
    qd_q4mat_t m = {0};
    int rc = qd_awq_quantize(w, rows, n, G > 0 ? G : n, &m);
    if (rc == 0)
        qd_q4mat_dequant(&m, out);
    qd_q4mat_free(&m);
    return rc;
}

/* Write the model with AWQ scales searched on p->calib_path folded in to
 * tmp (a GGUF inside outdir, which exists). */
static int awq_search(const char *in_gguf, const char *tmp,
                      const qd_hf_export_params_t *p)
{
    qd_calib_params_t cp;
    qd_calib_params_default(&cp);
    if (p->calib_ctx > 0)
        cp.n_ctx = p->calib_ctx;
    cp.n_chunks = p->calib_chunks;
    cp.n_threads = p->n_threads;
    int64_t G = p->group_size;
    qd_awq_rounder_t rd = {awq_round, &G};
    QD_INFO(MOD, "awq: searching scales on %s", p->calib_path);
    return qd__awq_write_searched(in_gguf, tmp, p->calib_path, &cp, &rd);
}

int qd_hf_export(const char *in_gguf, const char *outdir,
                 const qd_hf_export_params_t *p)
{
    qd_hf_export_params_t defp;
    qd_gguf_t *g = NULL;
    exp_t e = {0};
    json_t *cfg = NULL, *gen = NULL;
    float *row = NULL;
    char tmp[4096];
    int rc;
    if (!p) {
        qd_hf_export_params_default(&defp);
        p = &defp;
    }
    e.p = p;
    if (p->group_size == 0 || p->group_size < -1 ||
        (p->group_size > 0 && p->group_size % 8 != 0)) {
        qd_set_errmsg("awq export: group size %d (a multiple of 8, or -1)",
                      p->group_size);
        return QD_EINVAL;
    }
    if (p->calib_path) {
        if (p->format != QD_HF_EXPORT_AWQ) {
            qd_set_errmsg("export: calibration is supported for AWQ only");
            return QD_EUNSUPPORTED;
        }
        if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
            qd_set_errmsg("awq export: cannot create '%s': %s", outdir,
                          strerror(errno));
            return QD_EIO;
        }
        if (snprintf(tmp, sizeof tmp, "%s/.quantd-awq-search.gguf",
                     outdir) >= (int)sizeof tmp) {
            qd_set_errmsg("awq export: path too long: '%s'", outdir);
            return QD_EINVAL;
        }
        if ((rc = awq_search(in_gguf, tmp, p))) {
            unlink(tmp);
            return rc;
        }
        /* read through the mapping; the name can go now */
        rc = qd_gguf_open(tmp, &g);
        unlink(tmp);
        if (rc)
            return rc;
    } else if ((rc = qd_gguf_open(in_gguf, &g))) {
        return rc;
    }
    const char *arch;
    size_t alen;
    if (qd_gguf_get_str(g, "general.architecture", &arch, &alen) != 0 ||
        (strcmp(arch, "llama") && strcmp(arch, "qwen2") &&
         strcmp(arch, "qwen3"))) {
        qd_set_errmsg("awq export: '%s' is not a llama, qwen2 or qwen3 model",
                      in_gguf);
        rc = QD_EUNSUPPORTED;
        goto out;
    }
    int permute = strcmp(arch, "llama") == 0;
    uint32_t hp[7];
    float eps, theta = 10000.0f;
    char k[128];
    if ((rc = get_u32_def(g, arch, "embedding_length", UINT32_MAX, &hp[0])) ||
        (rc = get_u32_def(g, arch, "block_count", UINT32_MAX, &hp[1])) ||
        (rc = get_u32_def(g, arch, "attention.head_count", UINT32_MAX,
                          &hp[2])) ||
        (rc = get_u32_def(g, arch, "attention.head_count_kv", hp[2],
                          &hp[3])) ||
        (rc = get_u32_def(g, arch, "feed_forward_length", UINT32_MAX,
                          &hp[4])) ||
        (rc = get_u32_def(g, arch, "context_length", 2048, &hp[5])) ||
        (rc = get_u32_def(g, arch, "attention.key_length",
                          hp[2] ? hp[0] / hp[2] : 0, &hp[6])))
        goto out;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    if (qd_gguf_get_f32(g, k, &eps) != 0) {
        qd_set_errmsg("awq export: metadata key '%s' is missing", k);
        rc = QD_EFORMAT;
        goto out;
    }
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    qd_gguf_get_f32(g, k, &theta);
    const qd_gguf_tensor_t *emb = qd_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) {
        qd_set_errmsg("awq export: no 2-D token_embd.weight in '%s'", in_gguf);
        rc = QD_EFORMAT;
        goto out;
    }
    int tied = qd_gguf_find_tensor(g, "output.weight") == NULL;
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        qd_set_errmsg("awq export: cannot create '%s': %s", outdir,
                      strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    if (!(e.w = qd_st_writer_create())) {
        rc = QD_ENOMEM;
        goto out;
    }
    qd_st_writer_set_metadata(e.w, "format", "pt");
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        char hf[300];
        if (strcmp(t->name, "rope_freqs.weight") == 0) {
            QD_WARN(MOD, "rope_freqs.weight has no Hugging Face tensor: the "
                    "exported config.json carries no rope_scaling");
            continue;
        }
        if (qd_hf_name_from_gguf(t->name, hf, sizeof hf) != 0) {
            QD_WARN(MOD, "skipping tensor '%s' (no Hugging Face name)",
                    t->name);
            continue;
        }
        const qd_type_traits_t *tr = qd_type_traits(t->type);
        if (!tr->to_float || t->n_dims > 2 || t->ne[0] % tr->blck_size) {
            qd_set_errmsg("awq export: cannot convert tensor '%s' (%s)",
                          t->name, tr->name);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
        int64_t K = t->ne[0], N = t->n_dims == 2 ? t->ne[1] : 1;
        size_t n = (size_t)(K * N), rb = qd_row_size(t->type, K);
        row = qd_malloc(n * sizeof *row);
        if (!row) {
            rc = QD_ENOMEM;
            goto out;
        }
        for (int64_t r = 0; r < N; r++)
            tr->to_float((const uint8_t *)t->data + (size_t)r * rb,
                         row + r * K, K);
        int heads = 0;
        if (permute && strncmp(t->name, "blk.", 4) == 0) {
            if (strstr(t->name, ".attn_q."))
                heads = (int)hp[2];
            else if (strstr(t->name, ".attn_k."))
                heads = (int)hp[3];
        }
        if (heads) {
            float *un = qd_malloc(n * sizeof *un);
            int64_t rows = t->n_dims == 2 ? N : K;
            size_t rbytes = t->n_dims == 2 ? (size_t)K * 4 : 4;
            if (!un || (rc = qd_hf_permute_rows(un, row, rows, rbytes, heads,
                                                1))) {
                qd_free(un);
                rc = rc ? rc : QD_ENOMEM;
                goto out;
            }
            qd_free(row);
            row = un;
        }
        if (t->n_dims == 2 && is_linear(t->name)) {
            char base[300];
            snprintf(base, sizeof base, "%.*s", (int)(strlen(hf) - 7), hf);
            rc = export_linear(&e, base, row, N, K);
        } else {
            qd_fp16_t *h = keep(&e.bufs, qd_malloc(n * sizeof *h));
            if (!h) {
                rc = QD_ENOMEM;
                goto out;
            }
            for (size_t j = 0; j < n; j++)
                h[j] = qd_fp32_to_fp16(row[j]);
            rc = t->n_dims == 2
                     ? add_st(&e, hf, QD_ST_F16, 2, N, K, h, n * 2)
                     : add_st(&e, hf, QD_ST_F16, 1, K, 1, h, n * 2);
        }
        qd_free(row);
        row = NULL;
        if (rc)
            goto out;
    }
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors", outdir) >=
        (int)sizeof path) {
        rc = QD_EINVAL;
        goto out;
    }
    if ((rc = qd_st_writer_write(e.w, path)))
        goto out;
    cfg = make_config(arch, hp, eps, theta, emb->ne[1], tied, p);
    gen = json_object();
    if (!cfg || !gen) {
        rc = QD_ENOMEM;
        goto out;
    }
    uint32_t id;
    if (qd_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id) == 0) {
        json_object_set_new(cfg, "bos_token_id", json_integer(id));
        json_object_set_new(gen, "bos_token_id", json_integer(id));
    }
    if (qd_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id) == 0) {
        json_object_set_new(cfg, "eos_token_id", json_integer(id));
        json_object_set_new(gen, "eos_token_id", json_integer(id));
    }
    if ((rc = qd__json_dump(cfg, outdir, "config.json", "awq export")) ||
        (rc = qd__json_dump(gen, outdir, "generation_config.json", "awq export")))
        goto out;
    if (p->tokenizer_json) {
        if ((rc = copy_file(p->tokenizer_json, outdir, "tokenizer.json")))
            goto out;
    } else {
        /* the GGUF's own vocabulary, as Hugging Face's converter writes it
         * (tokenizer_config.json too, unless one is given below) */
        rc = qd__hf_write_tokenizer(g, outdir, NULL);
        if (rc == QD_EUNSUPPORTED) {
            QD_WARN(MOD, "no tokenizer written to '%s' (give --tokenizer): "
                    "%s", outdir, qd_errmsg());
            rc = 0;
        } else if (rc) {
            goto out;
        }
    }
    if (p->tokenizer_config &&
        (rc = copy_file(p->tokenizer_config, outdir, "tokenizer_config.json")))
        goto out;
out:
    qd_free(row);
    json_decref(cfg);
    json_decref(gen);
    qd_st_writer_destroy(e.w);
    for (size_t i = 0; i < e.bufs.n; i++)
        qd_free(e.bufs.p[i]);
    qd_free(e.bufs.p);
    qd_gguf_close(g);
    return rc;
}

int qd_awq_export(const char *in_gguf, const char *outdir,
                  const qd_hf_export_params_t *p)
{
    qd_hf_export_params_t q;
    if (p)
        q = *p;
    else
        qd_hf_export_params_default(&q);
    q.format = QD_HF_EXPORT_AWQ;
    if (q.group_size == 0)
        q.group_size = 128;
    return qd_hf_export(in_gguf, outdir, &q);
}
