/*
 * hf_import.c — converts a Hugging Face model directory (config.json +
 * safetensors, plain or AWQ GEMM / GPTQ 4-bit) into a GGUF file the engine
 * runs unchanged, and caches that file so the next load is one mmap.
 *
 * Why a conversion at all: the engine's kernels run GGUF block formats.
 * AWQ/GPTQ 4-bit groups map exactly (or within one fp16 rounding of the
 * min, see quantd/hf_import.h) onto Q4_0 blocks (symmetric: every zero
 * point 8), quantd's Q4_G128 blocks (asymmetric, 128-value runs within one
 * group: 4.25 bits per weight) or Q4_1 blocks (other group sizes), so the
 * import keeps the checkpoint's quantization instead of re-quantizing.
 *
 * The 4-bit layouts (nibble orders, zero offsets, g_idx) are those of
 * AutoAWQ's WQLinear_GEMM and AutoGPTQ's cuda_old QuantLinear, described
 * in docs/awq.md.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/hf_import.h"
#include "quantd/hfconfig.h"
#include "quantd/quant.h"
#include "quantd/safetensors.h"

#define MOD "hf_import"
/* Bumped whenever the produced GGUF would differ: invalidates caches. */
#define IMPORT_VERSION "quantd-hf-import 2" /* 2: Q4_G128 */

static const uint8_t awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* Little-endian loads from possibly unaligned tensor data. */
static inline uint32_t ld_u32(const void *p, size_t i)
{
    const uint8_t *b = (const uint8_t *)p + 4 * i;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

static inline uint16_t ld_u16(const void *p, size_t i)
{
    const uint8_t *b = (const uint8_t *)p + 2 * i;
    return (uint16_t)(b[0] | b[1] << 8);
}

/* ---- qd_q4mat_t -------------------------------------------------------- */

int qd_q4mat_init(qd_q4mat_t *m, int64_t n_out, int64_t n_in,
                  int64_t group_size, int with_g_idx)
{
    memset(m, 0, sizeof *m);
    if (n_out <= 0 || n_in <= 0 || group_size <= 0) {
        qd_set_errmsg("q4mat: bad shape %lld x %lld, group %lld",
                      (long long)n_out, (long long)n_in,
                      (long long)group_size);
        return QD_EINVAL;
    }
    size_t nq, nz;
    int64_t ng = (n_in + group_size - 1) / group_size;
    if (qd_mul_size((size_t)n_out, (size_t)n_in, &nq) ||
        qd_mul_size((size_t)n_out, (size_t)ng, &nz))
        return QD_EOVERFLOW;
    m->n_out = n_out;
    m->n_in = n_in;
    m->group_size = group_size;
    m->n_groups = ng;
    m->q = qd_calloc(nq, 1);
    m->z = qd_calloc(nz, 1);
    m->s = qd_calloc(nz, sizeof *m->s);
    if (with_g_idx)
        m->g_idx = qd_calloc((size_t)n_in, sizeof *m->g_idx);
    if (!m->q || !m->z || !m->s || (with_g_idx && !m->g_idx)) {
        qd_q4mat_free(m);
        qd_set_errmsg("q4mat: out of memory for %lld x %lld",
                      (long long)n_out, (long long)n_in);
        return QD_ENOMEM;
    }
    return 0;
}

void qd_q4mat_free(qd_q4mat_t *m)
{
    if (!m)
        return;
    qd_free(m->q);
    qd_free(m->z);
    qd_free(m->s);
    qd_free(m->g_idx);
    m->q = m->z = NULL;
    m->s = NULL;
    m->g_idx = NULL;
}

static inline int64_t grp(const qd_q4mat_t *m, int64_t k)
{
    return m->g_idx ? m->g_idx[k] : k / m->group_size;
}

void qd_q4mat_dequant(const qd_q4mat_t *m, float *w)
{
    for (int64_t n = 0; n < m->n_out; n++) {
        const uint8_t *q = m->q + n * m->n_in;
        const uint8_t *z = m->z + n * m->n_groups;
        const qd_fp16_t *s = m->s + n * m->n_groups;
        for (int64_t k = 0; k < m->n_in; k++) {
            int64_t g = grp(m, k);
            w[n * m->n_in + k] =
                (float)((int)q[k] - (int)z[g]) * qd_fp16_to_fp32(s[g]);
        }
    }
}

int qd_hf_permute_rows(void *dst, const void *src, int64_t n_rows,
                       size_t row_bytes, int n_head, int inverse)
{
    if (n_head <= 0 || n_rows % (2 * (int64_t)n_head) != 0) {
        qd_set_errmsg("permute: %lld rows do not split into %d heads of an "
                      "even size", (long long)n_rows, n_head);
        return QD_EINVAL;
    }
    int64_t hd = n_rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < half; i++) {
                int64_t hf = h * hd + j * half + i, gg = h * hd + 2 * i + j;
                int64_t to = inverse ? hf : gg, from = inverse ? gg : hf;
                memcpy((uint8_t *)dst + (size_t)to * row_bytes,
                       (const uint8_t *)src + (size_t)from * row_bytes,
                       row_bytes);
            }
    return 0;
}

static int permute_inplace(void *buf, int64_t n_rows, size_t row_bytes,
                           int n_head, int inverse)
{
    size_t n = (size_t)n_rows * row_bytes;
    void *tmp = qd_malloc(n);
    if (!tmp)
        return QD_ENOMEM;
    memcpy(tmp, buf, n);
    int rc = qd_hf_permute_rows(buf, tmp, n_rows, row_bytes, n_head, inverse);
    qd_free(tmp);
    return rc;
}

int qd_q4mat_permute_rows(qd_q4mat_t *m, int n_head, int inverse)
{
    int rc;
    if ((rc = permute_inplace(m->q, m->n_out, (size_t)m->n_in, n_head,
                              inverse)) ||
        (rc = permute_inplace(m->z, m->n_out, (size_t)m->n_groups, n_head,
                              inverse)) ||
        (rc = permute_inplace(m->s, m->n_out,
                              (size_t)m->n_groups * sizeof *m->s, n_head,
                              inverse)))
        return rc;
    return 0;
}

/* ---- AWQ GEMM ---------------------------------------------------------- */

int qd_awq_unpack(const void *qweight, const void *qzeros, const void *scales,
                  int64_t K, int64_t N, int64_t G, qd_q4mat_t *m)
{
    if (N % 8 != 0 || G <= 0 || K % G != 0) {
        qd_set_errmsg("awq: shape K=%lld N=%lld G=%lld (need N %% 8 == 0 "
                      "and K %% G == 0)", (long long)K, (long long)N,
                      (long long)G);
        return QD_EFORMAT;
    }
    int rc = qd_q4mat_init(m, N, K, G, 0);
    if (rc)
        return rc;
    int64_t nw = N / 8;
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < nw; c++) {
            uint32_t w = ld_u32(qweight, (size_t)(k * nw + c));
            for (int i = 0; i < 8; i++)
                m->q[(8 * c + awq_order[i]) * K + k] = (w >> (4 * i)) & 0xF;
        }
    for (int64_t g = 0; g < m->n_groups; g++) {
        for (int64_t c = 0; c < nw; c++) {
            uint32_t w = ld_u32(qzeros, (size_t)(g * nw + c));
            for (int i = 0; i < 8; i++)
                m->z[(8 * c + awq_order[i]) * m->n_groups + g] =
                    (w >> (4 * i)) & 0xF;
        }
        for (int64_t n = 0; n < N; n++)
            m->s[n * m->n_groups + g] = ld_u16(scales, (size_t)(g * N + n));
    }
    return 0;
}

int qd_awq_pack(const qd_q4mat_t *m, int32_t *qweight, int32_t *qzeros,
                qd_fp16_t *scales)
{
    int64_t K = m->n_in, N = m->n_out, nw = N / 8, ng = m->n_groups;
    if (N % 8 != 0 || m->g_idx || K % m->group_size != 0) {
        qd_set_errmsg("awq pack: needs N %% 8 == 0, K %% G == 0, no g_idx");
        return QD_EINVAL;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < nw; c++) {
            uint32_t w = 0;
            for (int i = 0; i < 8; i++)
                w |= (uint32_t)(m->q[(8 * c + awq_order[i]) * K + k] & 0xF)
                     << (4 * i);
            qweight[k * nw + c] = (int32_t)w;
        }
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t c = 0; c < nw; c++) {
            uint32_t w = 0;
            for (int i = 0; i < 8; i++) {
                uint8_t z = m->z[(8 * c + awq_order[i]) * ng + g];
                if (z > 15) {
                    qd_set_errmsg("awq pack: zero point %d > 15", z);
                    return QD_EINVAL;
                }
                w |= (uint32_t)z << (4 * i);
            }
            qzeros[g * nw + c] = (int32_t)w;
        }
        for (int64_t n = 0; n < N; n++)
            scales[g * N + n] = m->s[n * ng + g];
    }
    return 0;
}

/* ---- GPTQ -------------------------------------------------------------- */

int qd_gptq_unpack(const void *qweight, const void *qzeros, const void *scales,
                   const void *g_idx, int64_t K, int64_t N, int64_t ng,
                   int64_t G, int v2, qd_q4mat_t *m)
{
    if (N % 8 != 0 || K % 8 != 0 || G <= 0 || ng <= 0 ||
        (!g_idx && ng != (K + G - 1) / G)) {
        qd_set_errmsg("gptq: shape K=%lld N=%lld groups=%lld G=%lld does "
                      "not fit the 4-bit layout", (long long)K, (long long)N,
                      (long long)ng, (long long)G);
        return QD_EFORMAT;
    }
    int rc = qd_q4mat_init(m, N, K, G, g_idx != NULL);
    if (rc)
        return rc;
    m->n_groups = ng; /* init derived ceil(K/G); g_idx may say otherwise */
    if (g_idx) {
        /* init sized z/s by ceil(K/G); reallocate for ng groups */
        qd_free(m->z);
        qd_free(m->s);
        m->z = qd_calloc((size_t)(N * ng), 1);
        m->s = qd_calloc((size_t)(N * ng), sizeof *m->s);
        if (!m->z || !m->s) {
            qd_q4mat_free(m);
            return QD_ENOMEM;
        }
        for (int64_t k = 0; k < K; k++) {
            uint32_t g = ld_u32(g_idx, (size_t)k);
            if ((int64_t)(int32_t)g < 0 || (int64_t)g >= ng) {
                qd_set_errmsg("gptq: g_idx[%lld] = %d is not a group in "
                              "[0, %lld)", (long long)k, (int32_t)g,
                              (long long)ng);
                qd_q4mat_free(m);
                return QD_EFORMAT;
            }
            m->g_idx[k] = (int32_t)g;
        }
    }
    for (int64_t r = 0; r < K / 8; r++)
        for (int64_t n = 0; n < N; n++) {
            uint32_t w = ld_u32(qweight, (size_t)(r * N + n));
            for (int j = 0; j < 8; j++)
                m->q[n * K + 8 * r + j] = (w >> (4 * j)) & 0xF;
        }
    int64_t nw = N / 8;
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t c = 0; c < nw; c++) {
            uint32_t w = ld_u32(qzeros, (size_t)(g * nw + c));
            for (int j = 0; j < 8; j++)
                m->z[(8 * c + j) * ng + g] =
                    (uint8_t)(((w >> (4 * j)) & 0xF) + (v2 ? 0 : 1));
        }
        for (int64_t n = 0; n < N; n++)
            m->s[n * ng + g] = ld_u16(scales, (size_t)(g * N + n));
    }
    return 0;
}

int qd_gptq_pack(const qd_q4mat_t *m, int v2, int32_t *qweight,
                 int32_t *qzeros, qd_fp16_t *scales, int32_t *g_idx_out)
{
    int64_t K = m->n_in, N = m->n_out, ng = m->n_groups, nw = N / 8;
    if (N % 8 != 0 || K % 8 != 0) {
        qd_set_errmsg("gptq pack: needs N %% 8 == 0 and K %% 8 == 0");
        return QD_EINVAL;
    }
    for (int64_t r = 0; r < K / 8; r++)
        for (int64_t n = 0; n < N; n++) {
            uint32_t w = 0;
            for (int j = 0; j < 8; j++)
                w |= (uint32_t)(m->q[n * K + 8 * r + j] & 0xF) << (4 * j);
            qweight[r * N + n] = (int32_t)w;
        }
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t c = 0; c < nw; c++) {
            uint32_t w = 0;
            for (int j = 0; j < 8; j++) {
                int z = m->z[(8 * c + j) * ng + g] - (v2 ? 0 : 1);
                if (z < 0 || z > 15) {
                    qd_set_errmsg("gptq pack: zero point %d not storable in "
                                  "%s", z + (v2 ? 0 : 1), v2 ? "v2" : "v1");
                    return QD_EINVAL;
                }
                w |= (uint32_t)z << (4 * j);
            }
            qzeros[g * nw + c] = (int32_t)w;
        }
        for (int64_t n = 0; n < N; n++)
            scales[g * N + n] = m->s[n * ng + g];
    }
    if (g_idx_out)
        for (int64_t k = 0; k < K; k++)
            g_idx_out[k] = (int32_t)grp(m, k);
    return 0;
}

/* ---- repacking into GGUF blocks ----------------------------------------- */

/* Dequantize + Q8_0 (or F32 when rows are not whole blocks). */
static int to_q8_0(const qd_q4mat_t *m, qd_type_t *type, void **data,
                   size_t *n_bytes)
{
    int64_t K = m->n_in, N = m->n_out;
    qd_type_t t = K % QD_QK8_0 == 0 ? QD_TYPE_Q8_0 : QD_TYPE_F32;
    size_t row = qd_row_size(t, K);
    float *w = qd_malloc((size_t)K * sizeof *w);
    uint8_t *out = qd_malloc(row * (size_t)N);
    if (!w || !out) {
        qd_free(w);
        qd_free(out);
        return QD_ENOMEM;
    }
    qd_q4mat_t one = *m; /* a one-row view */
    for (int64_t n = 0; n < N; n++) {
        one.n_out = 1;
        one.q = m->q + n * K;
        one.z = m->z + n * m->n_groups;
        one.s = m->s + n * m->n_groups;
        qd_q4mat_dequant(&one, w);
        if (t == QD_TYPE_F32)
            memcpy(out + (size_t)n * row, w, row);
        else
            qd_type_traits(t)->from_float_ref(w, out + (size_t)n * row, K);
    }
    qd_free(w);
    *type = t;
    *data = out;
    *n_bytes = row * (size_t)N;
    return 0;
}

int qd_q4mat_to_gguf(const qd_q4mat_t *m, qd_type_t *type, void **data,
                     size_t *n_bytes)
{
    int64_t K = m->n_in, N = m->n_out, ng = m->n_groups;
    int uniform = K % 32 == 0, all8 = 1;
    for (int64_t b = 0; uniform && b < K / 32; b++)
        for (int64_t k = b * 32 + 1; k < b * 32 + 32; k++)
            if (grp(m, k) != grp(m, b * 32)) {
                uniform = 0;
                break;
            }
    /* 128-value runs within one group (group size 128 or a multiple, no
     * act-order permutation across them): Q4_G128 when asymmetric */
    int run128 = uniform && K % QD_QK4_G128 == 0;
    for (int64_t b = 0; run128 && b < K / 32; b++)
        if (grp(m, b * 32) != grp(m, b / 4 * 128))
            run128 = 0;
    for (size_t i = 0; uniform && i < (size_t)(N * ng); i++) {
        if (m->z[i] != 8)
            all8 = 0;
        float zs = (float)m->z[i] * qd_fp16_to_fp32(m->s[i]);
        if (!(fabsf(zs) <= 65504.0f))
            uniform = 0; /* m would not be a finite fp16 */
    }
    if (!uniform)
        return to_q8_0(m, type, data, n_bytes);

    qd_type_t t = all8     ? QD_TYPE_Q4_0
                  : run128 ? QD_TYPE_Q4_G128
                           : QD_TYPE_Q4_1;
    size_t row = qd_row_size(t, K);
    uint8_t *out = qd_malloc(row * (size_t)N);
    if (!out)
        return QD_ENOMEM;
    /* d (and for Q4_1 / Q4_G128 the min m = -z*s, rounded once), then
     * values j and j + qk/2 in the low and high nibbles of byte j */
    const int qk = qd_type_traits(t)->blck_size;
    const size_t bsz = qd_type_traits(t)->type_size;
    const size_t moff = t == QD_TYPE_Q4_1 ? offsetof(qd_block_q4_1, m)
                                          : offsetof(qd_block_q4_g128, m);
    const size_t qoff = t == QD_TYPE_Q4_0   ? offsetof(qd_block_q4_0, qs)
                        : t == QD_TYPE_Q4_1 ? offsetof(qd_block_q4_1, qs)
                                            : offsetof(qd_block_q4_g128, qs);
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *q = m->q + n * K;
        for (int64_t b = 0; b < K / qk; b++) {
            int64_t g = grp(m, b * qk);
            qd_fp16_t s = m->s[n * ng + g];
            uint8_t *blk = out + n * row + (size_t)b * bsz;
            memcpy(blk, &s, sizeof s); /* d is every block's first field */
            if (t != QD_TYPE_Q4_0) {
                float zs = (float)m->z[n * ng + g] * qd_fp16_to_fp32(s);
                qd_fp16_t mn = qd_fp32_to_fp16(-zs);
                memcpy(blk + moff, &mn, sizeof mn);
            }
            const uint8_t *qb = q + b * qk;
            for (int j = 0; j < qk / 2; j++)
                blk[qoff + (size_t)j] = (uint8_t)(qb[j] | qb[j + qk / 2] << 4);
        }
    }
    *type = t;
    *data = out;
    *n_bytes = row * (size_t)N;
    return 0;
}

/* ---- names -------------------------------------------------------------- */

static const struct {
    const char *hf, *gguf;
} layer_names[] = {
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
}, global_names[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

/* Split "base.weight"/"base.bias": returns the suffix or NULL. */
static const char *param_suffix(const char *name, size_t *base_len)
{
    size_t n = strlen(name);
    static const char *const sfx[] = {".weight", ".bias"};
    for (size_t i = 0; i < QD_ARRAY_SIZE(sfx); i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && strcmp(name + n - k, sfx[i]) == 0) {
            *base_len = n - k;
            return sfx[i];
        }
    }
    return NULL;
}

static int map_name(const char *in, char *out, size_t cap, int to_gguf)
{
    size_t bl;
    const char *sfx = param_suffix(in, &bl);
    if (!sfx)
        return QD_ENOTFOUND;
    for (size_t i = 0; i < QD_ARRAY_SIZE(global_names); i++) {
        const char *from = to_gguf ? global_names[i].hf : global_names[i].gguf;
        const char *to = to_gguf ? global_names[i].gguf : global_names[i].hf;
        if (strlen(from) == bl && strncmp(in, from, bl) == 0)
            return snprintf(out, cap, "%s%s", to, sfx) < (int)cap
                       ? 0
                       : QD_ERANGE;
    }
    const char *pre = to_gguf ? "model.layers." : "blk.";
    size_t pl = strlen(pre);
    if (strncmp(in, pre, pl) != 0)
        return QD_ENOTFOUND;
    const char *p = in + pl;
    char *end;
    errno = 0;
    long layer = strtol(p, &end, 10);
    if (end == p || *end != '.' || layer < 0 || layer > 100000 || errno ||
        (p[0] == '0' && end - p > 1))
        return QD_ENOTFOUND;
    const char *sub = end + 1;
    size_t sl = (size_t)((in + bl) - sub);
    for (size_t i = 0; i < QD_ARRAY_SIZE(layer_names); i++) {
        const char *from = to_gguf ? layer_names[i].hf : layer_names[i].gguf;
        const char *to = to_gguf ? layer_names[i].gguf : layer_names[i].hf;
        if (strlen(from) == sl && strncmp(sub, from, sl) == 0)
            return snprintf(out, cap, "%s%ld.%s%s",
                            to_gguf ? "blk." : "model.layers.", layer, to,
                            sfx) < (int)cap
                       ? 0
                       : QD_ERANGE;
    }
    return QD_ENOTFOUND;
}

int qd_hf_name_to_gguf(const char *hf, char *out, size_t cap)
{
    return map_name(hf, out, cap, 1);
}

int qd_hf_name_from_gguf(const char *gguf, char *out, size_t cap)
{
    return map_name(gguf, out, cap, 0);
}

/* ---- import ------------------------------------------------------------- */

typedef struct {
    const char *hf_arch, *arch;
    int permute_qk;
} arch_map_t;

static const arch_map_t arch_table[] = {
    {"LlamaForCausalLM", "llama", 1},
    {"MistralForCausalLM", "llama", 1},
    {"Qwen2ForCausalLM", "qwen2", 0},
    {"Qwen3ForCausalLM", "qwen3", 0},
};

int qd_hf_is_model_dir(const char *path)
{
    struct stat sb;
    char p[PATH_MAX];
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return 0;
    if (snprintf(p, sizeof p, "%s/config.json", path) >= (int)sizeof p)
        return 0;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

void qd_hf_import_result_free(qd_hf_import_result_t *r)
{
    if (!r)
        return;
    qd_free(r->gguf_path);
    qd_free(r->tokenizer_json);
    qd_free(r->tokenizer_config);
    memset(r, 0, sizeof *r);
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void hash_file(EVP_MD_CTX *ctx, const char *dir, const char *name)
{
    char p[PATH_MAX];
    EVP_DigestUpdate(ctx, name, strlen(name) + 1);
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p)
        return;
    FILE *fp = fopen(p, "rb");
    if (!fp)
        return;
    char buf[8192];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, fp)) > 0)
        EVP_DigestUpdate(ctx, buf, k);
    fclose(fp);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Signature of what the import reads: the JSON files' bytes and each
 * *.safetensors file's name, size and mtime (not its bytes: hashing
 * gigabytes would defeat the cache). */
static int signature(const char *dir, char out[65])
{
    int rc = 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    DIR *d = opendir(dir);
    if (!ctx || !d) {
        qd_set_errmsg("hf_import: cannot read directory '%s'", dir);
        rc = ctx ? QD_EIO : QD_ENOMEM;
        goto out;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, IMPORT_VERSION, sizeof IMPORT_VERSION);
    hash_file(ctx, dir, "config.json");
    hash_file(ctx, dir, "generation_config.json");
    hash_file(ctx, dir, "quantize_config.json");
    hash_file(ctx, dir, "quant_config.json");
    hash_file(ctx, dir, "model.safetensors.index.json");
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            void *p = qd_realloc(names, cap * sizeof *names);
            if (!p) {
                rc = QD_ENOMEM;
                goto out;
            }
            names = p;
        }
        if (!(names[n] = qd_strdup(e->d_name))) {
            rc = QD_ENOMEM;
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX];
        struct stat sb;
        if (snprintf(p, sizeof p, "%s/%s", dir, names[i]) >= (int)sizeof p ||
            stat(p, &sb) != 0)
            continue;
        char line[PATH_MAX + 96];
        int k = snprintf(line, sizeof line, "%s|%lld|%lld.%09ld\n", names[i],
                         (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
                         (long)sb.st_mtim.tv_nsec);
        EVP_DigestUpdate(ctx, line, (size_t)QD_MIN(k, (int)sizeof line - 1));
    }
    unsigned char md[32];
    unsigned int mdl = 0;
    EVP_DigestFinal_ex(ctx, md, &mdl);
    hex(md, 32, out);
out:
    for (size_t i = 0; i < n; i++)
        qd_free(names[i]);
    qd_free(names);
    if (d)
        closedir(d);
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int mkdir_p(const char *path)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return QD_EINVAL;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return QD_EIO;
            *s = '/';
        }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return QD_EIO;
    return 0;
}

/* Cache file in a user cache directory, named after DIR's real path. */
static int user_cache_path(const char *dir, const char *cache_dir, char *out,
                           size_t cap)
{
    char real[PATH_MAX], base[PATH_MAX];
    if (!realpath(dir, real))
        snprintf(real, sizeof real, "%s", dir);
    if (cache_dir)
        snprintf(base, sizeof base, "%s", cache_dir);
    else if (getenv("XDG_CACHE_HOME") && getenv("XDG_CACHE_HOME")[0])
        (void)!snprintf(base, sizeof base, "%s/quantd",
                        getenv("XDG_CACHE_HOME"));
    else if (getenv("HOME") && getenv("HOME")[0])
        (void)!snprintf(base, sizeof base, "%s/.cache/quantd", getenv("HOME"));
    else {
        qd_set_errmsg("hf_import: '%s' is read-only and there is no HOME "
                      "for a cache", dir);
        return QD_EIO;
    }
    if (mkdir_p(base) != 0) {
        qd_set_errmsg("hf_import: cannot create cache directory '%s'", base);
        return QD_EIO;
    }
    unsigned char md[32];
    unsigned int mdl = 0;
    char hx[65];
    EVP_Digest(real, strlen(real), md, &mdl, EVP_sha256(), NULL);
    hex(md, 16, hx);
    const char *slash = strrchr(real, '/');
    if (snprintf(out, cap, "%s/%.64s-%s.gguf", base, slash ? slash + 1 : real,
                 hx) >= (int)cap)
        return QD_EINVAL;
    return 0;
}

/* 1 if path is a GGUF whose import signature is sig. */
static int cache_fresh(const char *path, const char *sig)
{
    qd_gguf_t *g;
    if (access(path, R_OK) != 0 || qd_gguf_open(path, &g) != 0)
        return 0;
    const char *s;
    size_t len;
    int ok = qd_gguf_get_str(g, QD_GGUF_KEY_IMPORT_SIGNATURE, &s, &len) == 0 &&
             len == 64 && memcmp(s, sig, 64) == 0;
    qd_gguf_close(g);
    return ok;
}

/* Conversion state: the writer plus the buffers it points into. */
typedef struct {
    const char *dir;
    const qd_hf_config_t *cfg;
    const arch_map_t *am;
    qd_st_set_t *set;
    qd_gguf_writer_t *w;
    void **owned;
    size_t n_owned, cap_owned;
    qd_hf_import_result_t *res;
} conv_t;

static int keep(conv_t *c, void *p)
{
    if (c->n_owned == c->cap_owned) {
        size_t cap = c->cap_owned ? 2 * c->cap_owned : 64;
        void *q = qd_realloc(c->owned, cap * sizeof *c->owned);
        if (!q) {
            qd_free(p);
            return QD_ENOMEM;
        }
        c->owned = q;
        c->cap_owned = cap;
    }
    c->owned[c->n_owned++] = p;
    return 0;
}

/* n_head for the q/k permutation of gguf tensor `name`, or 0. */
static int qk_heads(const conv_t *c, const char *name)
{
    if (!c->am->permute_qk)
        return 0;
    const char *d = strchr(name, '.');
    if (!d || strncmp(name, "blk.", 4) != 0)
        return 0;
    d = strchr(d + 1, '.');
    if (!d)
        return 0;
    if (strncmp(d, ".attn_q.", 8) == 0)
        return (int)c->cfg->n_head;
    if (strncmp(d, ".attn_k.", 8) == 0)
        return (int)c->cfg->n_head_kv;
    return 0;
}

static int add(conv_t *c, const char *name, qd_type_t t, int n_dims,
               int64_t ne0, int64_t ne1, const void *data, size_t n_bytes)
{
    int64_t ne[2] = {ne0, ne1};
    int rc = qd_gguf_writer_add_tensor(c->w, name, t, n_dims, ne, data,
                                       n_bytes, 0);
    if (rc && !qd_errmsg()[0])
        qd_set_errmsg("hf_import: cannot add tensor '%s'", name);
    return rc;
}

/* A float tensor: vectors become F32 (the engine reads norms and biases as
 * F32); matrices keep their dtype, straight from the mapping unless the
 * q/k permutation applies. */
static int conv_float(conv_t *c, const qd_st_tensor_t *t, const char *gname)
{
    qd_type_t gt;
    switch (t->dtype) {
    case QD_ST_F32: gt = QD_TYPE_F32; break;
    case QD_ST_F16: gt = QD_TYPE_F16; break;
    case QD_ST_BF16: gt = QD_TYPE_BF16; break;
    default:
        qd_set_errmsg("hf_import: tensor '%s' has dtype %s (expected F32, "
                      "F16 or BF16)", t->name, qd_st_dtype_name(t->dtype));
        return QD_EUNSUPPORTED;
    }
    int heads = qk_heads(c, gname), rc;
    if (t->n_dims == 1) {
        int64_t n = t->shape[0];
        float *v = qd_malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v || keep(c, v))
            return QD_ENOMEM;
        for (int64_t i = 0; i < n; i++) {
            if (gt == QD_TYPE_F32) {
                uint32_t u = ld_u32(t->data, (size_t)i);
                memcpy(&v[i], &u, 4);
            } else if (gt == QD_TYPE_F16)
                v[i] = qd_fp16_to_fp32(ld_u16(t->data, (size_t)i));
            else
                v[i] = qd_bf16_to_fp32(ld_u16(t->data, (size_t)i));
        }
        if (heads) {
            if ((rc = permute_inplace(v, n, sizeof *v, heads, 0)))
                return rc;
        }
        c->res->n_float++;
        return add(c, gname, QD_TYPE_F32, 1, n, 1, v, (size_t)n * 4);
    }
    if (t->n_dims != 2) {
        qd_set_errmsg("hf_import: tensor '%s' has %d dimensions", t->name,
                      t->n_dims);
        return QD_EFORMAT;
    }
    const void *data = t->data;
    if (heads) {
        void *p = qd_malloc(t->n_bytes);
        if (!p || keep(c, p))
            return QD_ENOMEM;
        size_t row = t->n_bytes / (size_t)(t->shape[0] ? t->shape[0] : 1);
        if ((rc = qd_hf_permute_rows(p, t->data, t->shape[0], row, heads, 0)))
            return rc;
        data = p;
    }
    c->res->n_float++;
    return add(c, gname, gt, 2, t->shape[1], t->shape[0], data, t->n_bytes);
}

static const qd_st_tensor_t *sibling(conv_t *c, const char *base,
                                     const char *sfx, int required, int *rc)
{
    char nm[600];
    const qd_st_tensor_t *t = NULL;
    if (snprintf(nm, sizeof nm, "%s.%s", base, sfx) < (int)sizeof nm)
        t = qd_st_set_find(c->set, nm);
    if (!t && required) {
        qd_set_errmsg("hf_import: '%s.qweight' has no '%s'", base, nm);
        *rc = QD_EFORMAT;
    }
    return t;
}

static int check_t(const qd_st_tensor_t *t, qd_st_dtype_t dt, int64_t d0,
                   int64_t d1)
{
    if (t->dtype != dt || t->n_dims != (d1 < 0 ? 1 : 2) ||
        t->shape[0] != d0 || (d1 >= 0 && t->shape[1] != d1)) {
        qd_set_errmsg("hf_import: tensor '%s' is %s [%lld, %lld], expected "
                      "%s [%lld, %lld]", t->name, qd_st_dtype_name(t->dtype),
                      (long long)t->shape[0],
                      (long long)(t->n_dims > 1 ? t->shape[1] : -1),
                      qd_st_dtype_name(dt), (long long)d0, (long long)d1);
        return QD_EFORMAT;
    }
    return 0;
}

/* One quantized linear layer: base.qweight/.qzeros/.scales(/.g_idx). */
static int conv_quant(conv_t *c, const qd_st_tensor_t *qw, const char *base)
{
    const qd_hf_quant_t *qc = &c->cfg->quant;
    int rc = 0;
    char hfname[600], gname[256];
    if (snprintf(hfname, sizeof hfname, "%s.weight", base) >=
            (int)sizeof hfname ||
        qd_hf_name_to_gguf(hfname, gname, sizeof gname) != 0) {
        QD_WARN(MOD, "ignoring quantized tensor '%s' (unknown module)",
                qw->name);
        return 0;
    }
    const qd_st_tensor_t *qz = sibling(c, base, "qzeros", 1, &rc);
    const qd_st_tensor_t *sc = sibling(c, base, "scales", 1, &rc);
    const qd_st_tensor_t *gi = sibling(c, base, "g_idx", 0, &rc);
    if (rc)
        return rc;
    if (qw->n_dims != 2 || sc->n_dims != 2) {
        qd_set_errmsg("hf_import: '%s' and its scales must be 2-D", qw->name);
        return QD_EFORMAT;
    }
    qd_q4mat_t m;
    int64_t K, N, ng = sc->shape[0], G;
    if (qc->method == QD_HF_QUANT_AWQ) {
        K = qw->shape[0];
        N = qw->shape[1] * 8;
        G = qc->group_size > 0 ? qc->group_size : K;
        if ((rc = check_t(qw, QD_ST_I32, K, N / 8)) ||
            (rc = check_t(qz, QD_ST_I32, K / G, N / 8)) ||
            (rc = check_t(sc, QD_ST_F16, K / G, N)))
            return rc;
        rc = qd_awq_unpack(qw->data, qz->data, sc->data, K, N, G, &m);
    } else {
        K = qw->shape[0] * 8;
        N = qw->shape[1];
        G = qc->group_size > 0 ? qc->group_size : K;
        if ((rc = check_t(qw, QD_ST_I32, K / 8, N)) ||
            (rc = check_t(qz, QD_ST_I32, ng, N / 8)) ||
            (rc = check_t(sc, QD_ST_F16, ng, N)) ||
            (gi && (rc = check_t(gi, QD_ST_I32, K, -1))))
            return rc;
        /* a g_idx equal to k / G carries no information: drop it so the
         * exact Q4 path is taken whenever the layout allows */
        int trivial = gi != NULL;
        for (int64_t k = 0; gi && trivial && k < K; k++)
            trivial = ld_u32(gi->data, (size_t)k) == (uint32_t)(k / G);
        rc = qd_gptq_unpack(qw->data, qz->data, sc->data,
                            gi && !trivial ? gi->data : NULL, K, N, ng, G,
                            qc->gptq_v2, &m);
    }
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "%s", qd_errmsg());
        qd_set_errmsg("hf_import: '%s': %s", qw->name, why);
        return rc;
    }
    int heads = qk_heads(c, gname);
    if (heads && (rc = qd_q4mat_permute_rows(&m, heads, 0))) {
        qd_q4mat_free(&m);
        return rc;
    }
    qd_type_t t;
    void *data;
    size_t nb;
    rc = qd_q4mat_to_gguf(&m, &t, &data, &nb);
    qd_q4mat_free(&m);
    if (rc)
        return rc;
    if ((rc = keep(c, data)))
        return rc;
    if (t == QD_TYPE_Q4_0)
        c->res->n_q4_0++;
    else if (t == QD_TYPE_Q4_1)
        c->res->n_q4_1++;
    else if (t == QD_TYPE_Q4_G128)
        c->res->n_q4_g128++;
    else {
        c->res->n_q8_0++;
        QD_INFO(MOD, "'%s': 32-column runs span groups (act-order g_idx); "
                "stored as %s of the dequantized weights", base,
                qd_type_name(t));
    }
    return add(c, gname, t, 2, K, N, data, nb);
}

/* llama3 rope_scaling → per-frequency divisors, as llama.cpp's converter
 * computes them (float32 arithmetic like the torch code it mirrors). */
static int add_rope_freqs(conv_t *c)
{
    const qd_hf_config_t *h = c->cfg;
    int64_t dim = h->head_dim;
    float *f = qd_malloc((size_t)(dim / 2) * sizeof *f);
    if (!f || keep(c, f))
        return QD_ENOMEM;
    float lo_wl = (float)h->rope_orig_max_pos / (float)h->rope_low_freq_factor;
    float hi_wl = (float)h->rope_orig_max_pos / (float)h->rope_high_freq_factor;
    for (int64_t i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf((float)h->rope_theta,
                                 (float)(2 * i) / (float)dim);
        float wl = 2.0f * (float)M_PI / freq;
        if (wl < hi_wl)
            f[i] = 1.0f;
        else if (wl > lo_wl)
            f[i] = (float)h->rope_factor;
        else {
            float smooth = ((float)h->rope_orig_max_pos / wl -
                            (float)h->rope_low_freq_factor) /
                           (float)(h->rope_high_freq_factor -
                                   h->rope_low_freq_factor);
            f[i] = 1.0f / ((1.0f - smooth) / (float)h->rope_factor + smooth);
        }
    }
    return add(c, "rope_freqs.weight", QD_TYPE_F32, 1, dim / 2, 1, f,
               (size_t)(dim / 2) * sizeof *f);
}

static int set_meta(conv_t *c, const char *sig)
{
    const qd_hf_config_t *h = c->cfg;
    const char *a = c->am->arch;
    qd_gguf_writer_t *w = c->w;
    char k[128];
    int rc = 0;
#define U32(suffix, v)                                                         \
    (snprintf(k, sizeof k, "%s.%s", a, suffix),                                \
     qd_gguf_writer_set_u32(w, k, (uint32_t)(v)))
#define F32(suffix, v)                                                         \
    (snprintf(k, sizeof k, "%s.%s", a, suffix),                                \
     qd_gguf_writer_set_f32(w, k, (float)(v)))
    const char *slash = strrchr(c->dir, '/');
    const char *name = slash && slash[1] ? slash + 1 : c->dir;
    const char *qm = h->quant.method == QD_HF_QUANT_AWQ    ? "awq"
                     : h->quant.method == QD_HF_QUANT_GPTQ ? "gptq"
                                                           : "none";
    if ((rc = qd_gguf_writer_set_str(w, "general.architecture", a)) ||
        (rc = qd_gguf_writer_set_str(w, "general.name", name)) ||
        (rc = U32("context_length", h->max_pos)) ||
        (rc = U32("embedding_length", h->hidden_size)) ||
        (rc = U32("block_count", h->n_layer)) ||
        (rc = U32("feed_forward_length", h->n_ff)) ||
        (rc = U32("attention.head_count", h->n_head)) ||
        (rc = U32("attention.head_count_kv", h->n_head_kv)) ||
        (rc = U32("attention.key_length", h->head_dim)) ||
        (rc = U32("attention.value_length", h->head_dim)) ||
        (rc = U32("rope.dimension_count", h->head_dim)) ||
        (rc = U32("vocab_size", h->vocab_size)) ||
        (rc = F32("attention.layer_norm_rms_epsilon", h->rms_eps)) ||
        (rc = F32("rope.freq_base", h->rope_theta)) ||
        (rc = qd_gguf_writer_set_str(w, QD_GGUF_KEY_IMPORT_SIGNATURE, sig)) ||
        (rc = qd_gguf_writer_set_str(w, "quantd.import.source", c->dir)) ||
        (rc = qd_gguf_writer_set_str(w, "quantd.import.quant_method", qm)) ||
        (rc = qd_gguf_writer_set_i32(w, "quantd.import.group_size",
                                     h->quant.group_size)))
        return rc;
#undef U32
#undef F32
    if (h->bos_id >= 0 &&
        (rc = qd_gguf_writer_set_i32(w, "quantd.generation.bos_token_id",
                                     h->bos_id)))
        return rc;
    if (h->n_eos > 0 &&
        (rc = qd_gguf_writer_set_arr(w, "quantd.generation.eos_token_ids",
                                     QD_GGUF_INT32, h->eos_ids,
                                     (uint64_t)h->n_eos)))
        return rc;
    return 0;
}

static int check_config(const qd_hf_config_t *h, const arch_map_t **am)
{
    *am = NULL;
    for (size_t i = 0; i < QD_ARRAY_SIZE(arch_table); i++)
        if (strcmp(h->architecture, arch_table[i].hf_arch) == 0)
            *am = &arch_table[i];
    if (!*am) {
        qd_set_errmsg("hf_import: architecture '%s' is not supported "
                      "(LlamaForCausalLM, MistralForCausalLM, "
                      "Qwen2ForCausalLM, Qwen3ForCausalLM)",
                      h->architecture[0] ? h->architecture : "(none)");
        return QD_EUNSUPPORTED;
    }
    const qd_hf_quant_t *q = &h->quant;
    if (q->method != QD_HF_QUANT_NONE && q->bits != 4) {
        qd_set_errmsg("hf_import: %d-bit quantization is not supported (4)",
                      q->bits);
        return QD_EUNSUPPORTED;
    }
    if (q->method == QD_HF_QUANT_AWQ &&
        (strcmp(q->version, "gemm") != 0 || !q->zero_point)) {
        qd_set_errmsg("hf_import: AWQ version '%s'%s is not supported (only "
                      "GEMM with zero points)", q->version,
                      q->zero_point ? "" : " without zero points");
        return QD_EUNSUPPORTED;
    }
    if (h->rope_type[0] && strcmp(h->rope_type, "llama3") != 0 &&
        strcmp(h->rope_type, "default") != 0) {
        if (!(*am)->permute_qk || strcmp(h->rope_type, "linear") == 0 ||
            strcmp(h->rope_type, "dynamic") == 0)
            QD_WARN(MOD, "rope_scaling type '%s' is ignored: positions past "
                    "the original context will be off", h->rope_type);
    }
    return 0;
}

static int convert(const char *dir, const qd_hf_config_t *cfg,
                   const arch_map_t *am, const char *sig, const char *path,
                   qd_hf_import_result_t *res)
{
    conv_t c = {.dir = dir, .cfg = cfg, .am = am, .res = res};
    int rc;
    if ((rc = qd_st_set_open_dir(dir, &c.set)))
        goto out;
    if (!(c.w = qd_gguf_writer_create())) {
        rc = QD_ENOMEM;
        goto out;
    }
    if ((rc = set_meta(&c, sig)))
        goto out;
    if (am->permute_qk && strcmp(cfg->rope_type, "llama3") == 0 &&
        (rc = add_rope_freqs(&c)))
        goto out;
    for (int64_t i = 0; i < qd_st_set_n_tensors(c.set); i++) {
        const qd_st_tensor_t *t = qd_st_set_tensor(c.set, i);
        size_t l = strlen(t->name);
        char gname[256];
        if (l > 8 && strcmp(t->name + l - 8, ".qweight") == 0) {
            char base[512];
            snprintf(base, sizeof base, "%.*s", (int)(l - 8), t->name);
            if (cfg->quant.method == QD_HF_QUANT_NONE) {
                qd_set_errmsg("hf_import: '%s' is quantized but config.json "
                              "has no quantization_config", t->name);
                rc = QD_EFORMAT;
                goto out;
            }
            if ((rc = conv_quant(&c, t, base)))
                goto out;
            continue;
        }
        if ((l > 7 && strcmp(t->name + l - 7, ".qzeros") == 0) ||
            (l > 7 && strcmp(t->name + l - 7, ".scales") == 0) ||
            (l > 6 && strcmp(t->name + l - 6, ".g_idx") == 0))
            continue; /* read with their qweight */
        if (qd_hf_name_to_gguf(t->name, gname, sizeof gname) != 0) {
            if (!strstr(t->name, "rotary_emb.inv_freq"))
                QD_WARN(MOD, "ignoring tensor '%s'", t->name);
            continue;
        }
        if ((rc = conv_float(&c, t, gname)))
            goto out;
    }
    rc = qd_gguf_writer_write(c.w, path);
out:
    qd_gguf_writer_destroy(c.w);
    for (size_t i = 0; i < c.n_owned; i++)
        qd_free(c.owned[i]);
    qd_free(c.owned);
    qd_st_set_close(c.set);
    return rc;
}

static char *optional_file(const char *dir, const char *name)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p ||
        access(p, R_OK) != 0)
        return NULL;
    return qd_strdup(p);
}

int qd_hf_import(const char *dir, const qd_hf_import_params_t *p,
                 qd_hf_import_result_t *out)
{
    qd_hf_import_params_t defp = {0};
    qd_hf_config_t cfg;
    const arch_map_t *am;
    char sig[65], path[PATH_MAX];
    int rc;
    memset(out, 0, sizeof *out);
    if (!p)
        p = &defp;
    if ((rc = qd_hf_config_load(dir, &cfg)) || (rc = check_config(&cfg, &am)) ||
        (rc = signature(dir, sig)))
        return rc;
    /* candidates: next to the model (unless a cache dir is forced), then
     * the user cache */
    char cand[2][PATH_MAX];
    int n_cand = 0;
    if (!p->cache_dir && access(dir, W_OK) == 0 &&
        snprintf(cand[n_cand], PATH_MAX, "%s/quantd-import.gguf", dir) <
            PATH_MAX)
        n_cand++;
    if (user_cache_path(dir, p->cache_dir, cand[n_cand], PATH_MAX) == 0)
        n_cand++;
    if (n_cand == 0)
        return QD_EIO;
    int hit = -1;
    for (int i = 0; i < n_cand && !p->force && hit < 0; i++)
        if (cache_fresh(cand[i], sig))
            hit = i;
    if (hit >= 0) {
        memcpy(path, cand[hit], sizeof path);
        out->from_cache = 1;
    } else {
        rc = QD_EIO;
        for (int i = 0; i < n_cand; i++) {
            qd_hf_import_result_t tmp = {0};
            rc = convert(dir, &cfg, am, sig, cand[i], &tmp);
            if (rc == 0) {
                *out = tmp;
                memcpy(path, cand[i], sizeof path);
                QD_INFO(MOD, "imported '%s' → '%s' (%d Q4_0, %d Q4_G128, "
                        "%d Q4_1, %d Q8_0, %d float tensors)", dir, path,
                        tmp.n_q4_0, tmp.n_q4_g128, tmp.n_q4_1, tmp.n_q8_0,
                        tmp.n_float);
                break;
            }
            if (rc != QD_EIO)
                return rc; /* a bad checkpoint: no point in another place */
        }
        if (rc)
            return rc;
    }
    out->gguf_path = qd_strdup(path);
    out->tokenizer_json = optional_file(dir, "tokenizer.json");
    out->tokenizer_config = optional_file(dir, "tokenizer_config.json");
    if (!out->gguf_path) {
        qd_hf_import_result_free(out);
        return QD_ENOMEM;
    }
    return 0;
}

/* ---- opening any model path ------------------------------------------- */

int qd_model_open(const char *path, qd_model_t **out)
{
    *out = NULL;
    if (!qd_hf_is_model_dir(path))
        return qd_model_load(path, out);
    qd_hf_import_result_t r;
    memset(&r, 0, sizeof r);
    int rc = qd_hf_import(path, NULL, &r);
    if (rc < 0) {
        char why[384];
        snprintf(why, sizeof why, "%s", qd_errmsg());
        qd_set_errmsg("model: importing %s: %s", path,
                      why[0] ? why : qd_strerror(rc));
        return rc;
    }
    if (!r.tokenizer_json) {
        qd_set_errmsg("model: %s has no tokenizer.json (quantd reads the "
                      "tokenizer of a checkpoint directory from it)",
                      path);
        rc = QD_EFORMAT;
    } else {
        rc = qd_model_load_hf_tokenizer(r.gguf_path, r.tokenizer_json,
                                        r.tokenizer_config, out);
    }
    qd_hf_import_result_free(&r);
    return rc;
}
