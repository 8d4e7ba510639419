/*
 * genmodel.c — deterministic random-weight Llama models in GGUF.
 *
 * The benchmark models need the shape of a real model (Llama-3.2-1B) and a
 * real type mix (llama.cpp's Q4_K_M), not real weights. Every tensor is
 * generated from its own stream (seed mixed with the tensor's name), so a
 * tensor's bytes do not depend on the order of generation. Tensors are
 * generated and quantized a few rows at a time and appended to a temporary
 * file; that file is then mapped read-only and its pieces handed to the
 * GGUF writer without copying, so the model never sits in anonymous memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/genmodel.h"
#include "quantd/gguf.h"

int qd_genmodel_preset(const char *name, qd_genmodel_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->type = QD_TYPE_F16;
    p->seed = 1;
    p->rope_base = 500000.0f;
    p->rms_eps = 1e-5f;
    if (!strcmp(name, "1b")) {
        p->n_embd = 2048, p->n_layer = 16, p->n_head = 32, p->n_head_kv = 8;
        p->head_dim = 64, p->n_ff = 8192, p->n_vocab = 128256, p->n_ctx = 131072;
        return 0;
    }
    if (!strcmp(name, "tiny")) {
        p->n_embd = 256, p->n_layer = 2, p->n_head = 4, p->n_head_kv = 2;
        p->head_dim = 64, p->n_ff = 512, p->n_vocab = 512, p->n_ctx = 2048;
        return 0;
    }
    qd_set_errmsg("gen-model: unknown preset '%s' (1b, tiny)", name);
    return QD_EINVAL;
}

int qd_genmodel_set_type(qd_genmodel_params_t *p, const char *name)
{
    if (!strcasecmp(name, "Q4_K_M")) {
        p->q4_k_m = 1;
        p->type = QD_TYPE_Q4_K;
        return 0;
    }
    qd_type_t t;
    if (qd_type_from_name(name, &t) == 0 && qd_type_traits(t)->quantize &&
        t != QD_TYPE_Q8_K && t != QD_TYPE_Q8_1) {
        p->q4_k_m = 0;
        p->type = t;
        return 0;
    }
    qd_set_errmsg("gen-model: unsupported type '%s'", name);
    return QD_EINVAL;
}

/* ---- random numbers: splitmix64 + Box-Muller --------------------------- */
typedef struct {
    uint64_t s;
    int have;
    float spare;
} rng_t;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float gauss(rng_t *r)
{
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u1 = ((double)(splitmix(&r->s) >> 11) + 0.5) * 0x1p-53;
    double u2 = (double)(splitmix(&r->s) >> 11) * 0x1p-53;
    double m = sqrt(-2.0 * log(u1));
    r->spare = (float)(m * sin(2.0 * M_PI * u2));
    r->have = 1;
    return (float)(m * cos(2.0 * M_PI * u2));
}

static uint64_t name_seed(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    return h;
}

/* use_more_bits of llama.cpp's Q4_K_M mix */
static int more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

typedef struct {
    char name[64];
    qd_type_t type;
    int n_dims;
    int64_t ne[2];
    int norm; /* 1: all ones (F32) */
    size_t offset, n_bytes;
} gtensor_t;

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return QD_EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Generate one tensor and append it to fd. */
static int gen_tensor(int fd, const gtensor_t *t, uint64_t seed)
{
    const int64_t cols = t->ne[0], rows = t->n_dims > 1 ? t->ne[1] : 1;
    if (t->norm) {
        float *ones = qd_malloc((size_t)cols * sizeof(float));
        if (!ones)
            return QD_ENOMEM;
        for (int64_t i = 0; i < cols; i++)
            ones[i] = 1.0f;
        int rc = write_all(fd, ones, (size_t)cols * sizeof(float));
        qd_free(ones);
        return rc;
    }
    const qd_type_traits_t *tr = qd_type_traits(t->type);
    const int64_t chunk = 64;
    size_t rb = qd_row_size(t->type, cols);
    float *f = qd_malloc((size_t)(chunk * cols) * sizeof(float));
    void *q = qd_malloc(rb * (size_t)chunk);
    int rc = 0;
    if (!f || !q) {
        rc = QD_ENOMEM;
        goto out;
    }
    rng_t r = {.s = name_seed(seed, t->name)};
    const float sd = 1.0f / sqrtf((float)cols);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t n = QD_MIN(chunk, rows - r0);
        for (int64_t i = 0; i < n * cols; i++)
            f[i] = sd * gauss(&r);
        if (t->type == QD_TYPE_F32)
            memcpy(q, f, (size_t)(n * cols) * sizeof(float));
        else
            tr->quantize(f, q, n, cols, NULL);
        if ((rc = write_all(fd, q, rb * (size_t)n)))
            goto out;
    }
out:
    qd_free(f);
    qd_free(q);
    return rc;
}

static int set_vocab(qd_gguf_writer_t *w, int32_t n_vocab)
{
    int rc = QD_ENOMEM;
    char **toks = qd_calloc((size_t)n_vocab, sizeof(char *));
    float *scores = qd_calloc((size_t)n_vocab, sizeof(float));
    int32_t *types = qd_calloc((size_t)n_vocab, sizeof(int32_t));
    if (!toks || !scores || !types)
        goto out;
    static const char *letters = "etaoinshrdlucmfwypvbgkjqxz";
    for (int32_t i = 0; i < n_vocab; i++) {
        char buf[64];
        if (i == 0)
            snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1)
            snprintf(buf, sizeof buf, "<s>");
        else if (i == 2)
            snprintf(buf, sizeof buf, "</s>");
        else if (i < 3 + 256)
            snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else {
            /* filler: "▁" + a letter word unique to i */
            int v = i - 259, k = 0;
            char word[32];
            do {
                word[k++] = letters[v % 26];
                v /= 26;
            } while (v && k < 30);
            word[k] = 0;
            snprintf(buf, sizeof buf, "%s%s", (i % 2) ? "\xe2\x96\x81" : "", word);
        }
        toks[i] = qd_strdup(buf);
        if (!toks[i])
            goto out;
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    if ((rc = qd_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (rc = qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
                                         (const char *const *)toks, (uint64_t)n_vocab)) ||
        (rc = qd_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QD_GGUF_FLOAT32,
                                     scores, (uint64_t)n_vocab)) ||
        (rc = qd_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QD_GGUF_INT32,
                                     types, (uint64_t)n_vocab)) ||
        (rc = qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (rc = qd_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (rc = qd_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (rc = qd_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1)))
        goto out;
out:
    if (toks)
        for (int32_t i = 0; i < n_vocab; i++)
            qd_free(toks[i]);
    qd_free(toks);
    qd_free(scores);
    qd_free(types);
    return rc;
}

static int set_hparams(qd_gguf_writer_t *w, const qd_genmodel_params_t *p)
{
    uint32_t ftype = p->q4_k_m ? 15 : p->type == QD_TYPE_F32 ? 0
                     : p->type == QD_TYPE_F16 ? 1 : p->type == QD_TYPE_Q4_0 ? 2
                     : p->type == QD_TYPE_Q8_0 ? 7 : 1024;
    int rc;
    if ((rc = qd_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (rc = qd_gguf_writer_set_str(w, "general.name", "quantd random llama")) ||
        (rc = qd_gguf_writer_set_u32(w, "general.file_type", ftype)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)p->n_ctx)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)p->n_embd)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)p->n_layer)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)p->n_ff)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)p->n_head)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)p->n_head_kv)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)p->head_dim)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.value_length", (uint32_t)p->head_dim)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)p->head_dim)) ||
        (rc = qd_gguf_writer_set_f32(w, "llama.rope.freq_base", p->rope_base)) ||
        (rc = qd_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", p->rms_eps)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)p->n_vocab)))
        return rc;
    return set_vocab(w, p->n_vocab);
}

/* The tensor list with types; returns the count (<= cap). */
static int plan(const qd_genmodel_params_t *p, gtensor_t *ts, int cap)
{
    int n = 0;
    const int64_t E = p->n_embd, Q = (int64_t)p->n_head * p->head_dim;
    const int64_t KV = (int64_t)p->n_head_kv * p->head_dim, F = p->n_ff;
    qd_type_t base = p->q4_k_m ? QD_TYPE_Q4_K : p->type;
#define ADD(nm, ty, nd, e0, e1, nrm)                                           \
    do {                                                                       \
        if (n < cap) {                                                         \
            gtensor_t *t = &ts[n];                                             \
            snprintf(t->name, sizeof t->name, "%s", nm);                       \
            t->type = (ty), t->n_dims = (nd), t->ne[0] = (e0), t->ne[1] = (e1); \
            t->norm = (nrm);                                                   \
        }                                                                      \
        n++;                                                                   \
    } while (0)
    ADD("token_embd.weight", p->q4_k_m ? QD_TYPE_Q6_K : base, 2, E, p->n_vocab, 0);
    ADD("output_norm.weight", QD_TYPE_F32, 1, E, 1, 1);
    char nm[64];
    for (int i = 0; i < p->n_layer; i++) {
        int mb = p->q4_k_m && more_bits(i, p->n_layer);
        qd_type_t tv = mb ? QD_TYPE_Q6_K : base;
#define L(suffix, ty, nd, e0, e1, nrm)                                         \
    snprintf(nm, sizeof nm, "blk.%d.%s", i, suffix);                           \
    ADD(nm, ty, nd, e0, e1, nrm)
        L("attn_norm.weight", QD_TYPE_F32, 1, E, 1, 1);
        L("attn_q.weight", base, 2, E, Q, 0);
        L("attn_k.weight", base, 2, E, KV, 0);
        L("attn_v.weight", tv, 2, E, KV, 0);
        L("attn_output.weight", base, 2, Q, E, 0);
        L("ffn_norm.weight", QD_TYPE_F32, 1, E, 1, 1);
        L("ffn_gate.weight", base, 2, E, F, 0);
        L("ffn_up.weight", base, 2, E, F, 0);
        L("ffn_down.weight", tv, 2, F, E, 0);
#undef L
    }
#undef ADD
    return n;
}

int qd_genmodel_write(const qd_genmodel_params_t *p, const char *path)
{
    int rc = 0, fd = -1, n = plan(p, NULL, 0);
    gtensor_t *ts = qd_calloc((size_t)n, sizeof *ts);
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    char *tmp = NULL;
    void *map = MAP_FAILED;
    size_t total = 0;
    if (!ts || !w || !(tmp = qd_malloc(strlen(path) + 8))) {
        rc = QD_ENOMEM;
        goto out;
    }
    plan(p, ts, n);
    for (int i = 0; i < n; i++) {
        const qd_type_traits_t *tr = qd_type_traits(ts[i].type);
        if (ts[i].ne[0] % tr->blck_size) {
            qd_set_errmsg("gen-model: %s: %ld columns not a multiple of the %s "
                          "block size", ts[i].name, (long)ts[i].ne[0], tr->name);
            rc = QD_EINVAL;
            goto out;
        }
        ts[i].offset = total;
        ts[i].n_bytes = qd_row_size(ts[i].type, ts[i].ne[0]) * (size_t)ts[i].ne[1];
        total += ts[i].n_bytes;
    }
    sprintf(tmp, "%s.data", path);
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        qd_set_errmsg("gen-model: %s: %s", tmp, strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    unlink(tmp); /* gone when closed */
    for (int i = 0; i < n; i++) {
        if ((rc = gen_tensor(fd, &ts[i], p->seed))) {
            qd_set_errmsg("gen-model: writing tensor %s: %s", ts[i].name,
                          qd_strerror(rc));
            goto out;
        }
    }
    map = mmap(NULL, total, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        qd_set_errmsg("gen-model: mmap: %s", strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    if ((rc = set_hparams(w, p)))
        goto out;
    for (int i = 0; i < n; i++) {
        int64_t ne[2] = {ts[i].ne[0], ts[i].ne[1]};
        if ((rc = qd_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims,
                                            ne, (uint8_t *)map + ts[i].offset,
                                            ts[i].n_bytes, 0)))
            goto out;
    }
    rc = qd_gguf_writer_write(w, path);
out:
    qd_gguf_writer_destroy(w);
    if (map != MAP_FAILED)
        munmap(map, total);
    if (fd >= 0)
        close(fd);
    qd_free(tmp);
    qd_free(ts);
    return rc;
}
