/*
 * model.c — loading a GGUF model: architecture, hyperparameters and weights.
 *
 * Supported architectures (general.architecture):
 *   llama  Llama 1/2/3/3.1/3.2 and Mistral; "normal" RoPE on adjacent pairs
 *          (llama.cpp's converter permutes Q/K rows for this), optional
 *          rope_freqs.weight (Llama 3.1 frequency divisors);
 *   qwen2  q/k/v biases, NeoX RoPE;
 *   qwen3  per-head RMSNorm of q and k (attn_q_norm / attn_k_norm), NeoX RoPE.
 *
 * Every tensor the forward pass reads is looked up here once, its type,
 * dimensions and block alignment checked, and stored as a view into the
 * read-only mapping (qd_qmat_t / const float *). A file that fails any check
 * is refused with QD_EFORMAT (or QD_EUNSUPPORTED) and a message naming the
 * tensor or key; the forward pass then never has to check again.
 */
#include "engine/model_int.h"
#include "quantd/common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    qd_arch_t arch;
    int rope_neox;
} arch_info_t;

static const arch_info_t archs[] = {
    {"llama", QD_ARCH_LLAMA, 0},
    {"qwen2", QD_ARCH_QWEN2, 1},
    {"qwen3", QD_ARCH_QWEN3, 1},
};

/* ---- metadata --------------------------------------------------------- */

static int get_i32_key(const qd_gguf_t *g, const char *arch, const char *suffix,
                       int required, int32_t def, int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = qd_gguf_get_i32(g, key, out);
    if (rc == QD_ENOTFOUND && !required) {
        *out = def;
        return 0;
    }
    if (rc == QD_ENOTFOUND) {
        qd_set_errmsg("model: metadata key '%s' is missing", key);
        return QD_EFORMAT;
    }
    if (rc < 0) {
        qd_set_errmsg("model: metadata key '%s' is not a 32-bit integer", key);
        return QD_EFORMAT;
    }
    return 0;
}

static int get_f32_key(const qd_gguf_t *g, const char *arch, const char *suffix,
                       int required, float def, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = qd_gguf_get_f32(g, key, out);
    if (rc == QD_ENOTFOUND && !required) {
        *out = def;
        return 0;
    }
    if (rc == QD_ENOTFOUND) {
        qd_set_errmsg("model: metadata key '%s' is missing", key);
        return QD_EFORMAT;
    }
    if (rc < 0 || !isfinite(*out)) {
        qd_set_errmsg("model: metadata key '%s' is not a finite number", key);
        return QD_EFORMAT;
    }
    return 0;
}

static int bad_hparam(const char *arch, const char *what, long long v)
{
    qd_set_errmsg("model: %s.%s = %lld is out of range", arch, what, v);
    return QD_EFORMAT;
}

static int read_hparams(qd_model_t *m)
{
    const qd_gguf_t *g = m->gguf;
    qd_hparams_t *hp = &m->hp;
    const char *a = m->arch_name;
    int rc;
    int32_t n_rot = 0;
    if ((rc = get_i32_key(g, a, "context_length", 1, 0, &hp->n_ctx_train)) ||
        (rc = get_i32_key(g, a, "embedding_length", 1, 0, &hp->n_embd)) ||
        (rc = get_i32_key(g, a, "block_count", 1, 0, &hp->n_layer)) ||
        (rc = get_i32_key(g, a, "feed_forward_length", 1, 0, &hp->n_ff)) ||
        (rc = get_i32_key(g, a, "attention.head_count", 1, 0, &hp->n_head)))
        return rc;
    if (hp->n_ctx_train <= 0)
        return bad_hparam(a, "context_length", hp->n_ctx_train);
    if (hp->n_embd <= 0 || hp->n_embd > (1 << 20))
        return bad_hparam(a, "embedding_length", hp->n_embd);
    if (hp->n_layer <= 0 || hp->n_layer > 4096)
        return bad_hparam(a, "block_count", hp->n_layer);
    if (hp->n_ff <= 0 || hp->n_ff > (1 << 22))
        return bad_hparam(a, "feed_forward_length", hp->n_ff);
    if (hp->n_head <= 0 || hp->n_head > 4096)
        return bad_hparam(a, "attention.head_count", hp->n_head);
    if ((rc = get_i32_key(g, a, "attention.head_count_kv", 0, hp->n_head,
                          &hp->n_head_kv)))
        return rc;
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0)
        return bad_hparam(a, "attention.head_count_kv", hp->n_head_kv);
    int32_t def_hd = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : 0;
    if ((rc = get_i32_key(g, a, "attention.key_length", 0, def_hd,
                          &hp->head_dim)))
        return rc;
    if (hp->head_dim <= 0 || hp->head_dim % 2 != 0 || hp->head_dim > 4096)
        return bad_hparam(a, "attention.key_length", hp->head_dim);
    int32_t v_len;
    if ((rc = get_i32_key(g, a, "attention.value_length", 0, hp->head_dim,
                          &v_len)))
        return rc;
    if (v_len != hp->head_dim) {
        qd_set_errmsg("model: %s.attention.value_length %d differs from "
                      "key_length %d (not supported)",
                      a, v_len, hp->head_dim);
        return QD_EUNSUPPORTED;
    }
    if ((rc = get_i32_key(g, a, "rope.dimension_count", 0, hp->head_dim,
                          &n_rot)))
        return rc;
    if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > hp->head_dim)
        return bad_hparam(a, "rope.dimension_count", n_rot);
    m->n_rot = n_rot;
    if ((rc = get_f32_key(g, a, "attention.layer_norm_rms_epsilon", 1, 0,
                          &hp->rms_eps)))
        return rc;
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f)) {
        qd_set_errmsg("model: %s.attention.layer_norm_rms_epsilon = %g is out "
                      "of range",
                      a, (double)hp->rms_eps);
        return QD_EFORMAT;
    }
    if ((rc = get_f32_key(g, a, "rope.freq_base", 0, 10000.0f, &hp->rope_base)))
        return rc;
    if (!(hp->rope_base > 0.0f)) {
        qd_set_errmsg("model: %s.rope.freq_base = %g is out of range", a,
                      (double)hp->rope_base);
        return QD_EFORMAT;
    }
    return 0;
}

/* ---- tensors ---------------------------------------------------------- */

/* Look up a 2-D weight of n_rows rows of n_cols values, any type with a dot
 * product kernel. required == 0: absent gives 0 with mat->data == NULL. */
static int get_mat(qd_model_t *m, const char *name, int64_t n_cols,
                   int64_t n_rows, int required, qd_qmat_t *mat)
{
    memset(mat, 0, sizeof *mat);
    const qd_gguf_tensor_t *t = qd_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (!required)
            return 0;
        qd_set_errmsg("model: tensor '%s' is missing", name);
        return QD_EFORMAT;
    }
    for (int d = 2; d < QD_GGUF_MAX_DIMS; d++)
        if (t->ne[d] != 1)
            goto bad_shape;
    if (t->ne[0] != n_cols || t->ne[1] != n_rows)
        goto bad_shape;
    if (!qd_type_valid((int)t->type)) {
        qd_set_errmsg("model: tensor '%s' has unknown type %d", name,
                      (int)t->type);
        return QD_EFORMAT;
    }
    const qd_type_traits_t *tr = qd_type_traits(t->type);
    if (!tr->vec_dot || !tr->to_float ||
        !qd_type_valid((int)tr->vec_dot_type)) {
        qd_set_errmsg("model: tensor '%s' has type %s, which this build cannot "
                      "multiply",
                      name, tr->name);
        return QD_EUNSUPPORTED;
    }
    if (n_cols % tr->blck_size != 0) {
        qd_set_errmsg("model: tensor '%s' of type %s has rows of %lld values, "
                      "not a multiple of its block size %d",
                      name, tr->name, (long long)n_cols, tr->blck_size);
        return QD_EFORMAT;
    }
    mat->type = t->type;
    mat->n_rows = n_rows;
    mat->n_cols = n_cols;
    mat->row_bytes = qd_row_size(t->type, n_cols);
    if (mat->row_bytes * (size_t)n_rows != t->n_bytes) {
        qd_set_errmsg("model: tensor '%s' holds %zu bytes, expected %zu", name,
                      t->n_bytes, mat->row_bytes * (size_t)n_rows);
        return QD_EFORMAT;
    }
    mat->data = t->data;
    mat->packed = NULL;
    m->weight_bytes += t->n_bytes;
    return 0;
bad_shape:
    qd_set_errmsg("model: tensor '%s' has shape [%lld, %lld, %lld, %lld], "
                  "expected [%lld, %lld]",
                  name, (long long)t->ne[0], (long long)t->ne[1],
                  (long long)t->ne[2], (long long)t->ne[3], (long long)n_cols,
                  (long long)n_rows);
    return QD_EFORMAT;
}

/* A 1-D F32 vector of n values (norm weights, biases, rope factors). */
static int get_vec(qd_model_t *m, const char *name, int64_t n, int required,
                   const float **out)
{
    *out = NULL;
    const qd_gguf_tensor_t *t = qd_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (!required)
            return 0;
        qd_set_errmsg("model: tensor '%s' is missing", name);
        return QD_EFORMAT;
    }
    for (int d = 1; d < QD_GGUF_MAX_DIMS; d++) {
        if (t->ne[d] != 1) {
            qd_set_errmsg("model: tensor '%s' should be a vector of %lld "
                          "values",
                          name, (long long)n);
            return QD_EFORMAT;
        }
    }
    if (t->ne[0] != n) {
        qd_set_errmsg("model: tensor '%s' has %lld values, expected %lld", name,
                      (long long)t->ne[0], (long long)n);
        return QD_EFORMAT;
    }
    if (t->type != QD_TYPE_F32) {
        qd_set_errmsg("model: tensor '%s' has type %s, expected F32", name,
                      qd_type_name(t->type));
        return QD_EUNSUPPORTED;
    }
    if ((uintptr_t)t->data % sizeof(float) != 0 ||
        t->n_bytes != (size_t)n * sizeof(float)) {
        qd_set_errmsg("model: tensor '%s' data is misaligned or truncated",
                      name);
        return QD_EFORMAT;
    }
    *out = t->data;
    m->weight_bytes += t->n_bytes;
    return 0;
}

static int load_layer(qd_model_t *m, int il)
{
    const qd_hparams_t *hp = &m->hp;
    qd_layer_t *L = &m->layers[il];
    int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hp->head_dim;
    int64_t n_kv = (int64_t)hp->n_head_kv * hp->head_dim, n_ff = hp->n_ff;
    int qwen2 = hp->arch == QD_ARCH_QWEN2, qwen3 = hp->arch == QD_ARCH_QWEN3;
    char nm[96];
    int rc;
#define NM(s) (snprintf(nm, sizeof nm, "blk.%d." s, il), nm)
    if ((rc = get_vec(m, NM("attn_norm.weight"), n_embd, 1, &L->attn_norm)) ||
        (rc = get_mat(m, NM("attn_q.weight"), n_embd, n_q, 1, &L->wq)) ||
        (rc = get_mat(m, NM("attn_k.weight"), n_embd, n_kv, 1, &L->wk)) ||
        (rc = get_mat(m, NM("attn_v.weight"), n_embd, n_kv, 1, &L->wv)) ||
        (rc = get_mat(m, NM("attn_output.weight"), n_q, n_embd, 1, &L->wo)) ||
        (rc = get_vec(m, NM("attn_q.bias"), n_q, qwen2, &L->bq)) ||
        (rc = get_vec(m, NM("attn_k.bias"), n_kv, qwen2, &L->bk)) ||
        (rc = get_vec(m, NM("attn_v.bias"), n_kv, qwen2, &L->bv)) ||
        (rc = get_vec(m, NM("attn_q_norm.weight"), hp->head_dim, qwen3,
                      &L->q_norm)) ||
        (rc = get_vec(m, NM("attn_k_norm.weight"), hp->head_dim, qwen3,
                      &L->k_norm)) ||
        (rc = get_vec(m, NM("ffn_norm.weight"), n_embd, 1, &L->ffn_norm)) ||
        (rc = get_mat(m, NM("ffn_gate.weight"), n_embd, n_ff, 1, &L->w_gate)) ||
        (rc = get_mat(m, NM("ffn_up.weight"), n_embd, n_ff, 1, &L->w_up)) ||
        (rc = get_mat(m, NM("ffn_down.weight"), n_ff, n_embd, 1, &L->w_down)))
        return rc;
#undef NM
    /* q_norm and k_norm go together. */
    if (!L->q_norm != !L->k_norm) {
        qd_set_errmsg("model: layer %d has only one of attn_q_norm / "
                      "attn_k_norm",
                      il);
        return QD_EFORMAT;
    }
    return 0;
}

static int load_weights(qd_model_t *m)
{
    qd_hparams_t *hp = &m->hp;
    const qd_gguf_tensor_t *te =
        qd_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) {
        qd_set_errmsg("model: tensor 'token_embd.weight' is missing");
        return QD_EFORMAT;
    }
    if (te->ne[1] <= 0 || te->ne[1] > INT32_MAX) {
        qd_set_errmsg("model: tensor 'token_embd.weight' has %lld rows",
                      (long long)te->ne[1]);
        return QD_EFORMAT;
    }
    hp->n_vocab = (int32_t)te->ne[1];
    int rc;
    if ((rc = get_mat(m, "token_embd.weight", hp->n_embd, hp->n_vocab, 1,
                      &m->tok_embd)) ||
        (rc = get_vec(m, "output_norm.weight", hp->n_embd, 1, &m->out_norm)) ||
        (rc = get_mat(m, "output.weight", hp->n_embd, hp->n_vocab, 0,
                      &m->output)))
        return rc;
    hp->tied_output = m->output.data == NULL;
    if (hp->tied_output)
        m->output = m->tok_embd;
    if (hp->arch == QD_ARCH_LLAMA &&
        (rc = get_vec(m, "rope_freqs.weight", m->n_rot / 2, 0, &m->rope_freqs)))
        return rc;
    m->layers = qd_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        qd_set_errmsg("model: out of memory for %d layers", hp->n_layer);
        return QD_ENOMEM;
    }
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = load_layer(m, il)))
            return rc;
    return 0;
}

/* ---- public ----------------------------------------------------------- */

/* Fill m from an open GGUF (m->gguf set): everything but the tokenizer. */
static int model_init(qd_model_t *m)
{
    const char *arch;
    size_t arch_len;
    int rc = qd_gguf_get_str(m->gguf, "general.architecture", &arch, &arch_len);
    if (rc < 0) {
        qd_set_errmsg("model: metadata key 'general.architecture' is missing "
                      "or not a string");
        return QD_EFORMAT;
    }
    const arch_info_t *ai = NULL;
    for (size_t i = 0; i < QD_ARRAY_SIZE(archs); i++)
        if (strlen(archs[i].name) == arch_len &&
            !memcmp(archs[i].name, arch, arch_len))
            ai = &archs[i];
    if (!ai) {
        qd_set_errmsg("model: unknown architecture '%.*s' (supported: llama, "
                      "qwen2, qwen3)",
                      (int)QD_MIN(arch_len, 64), arch);
        return QD_EUNSUPPORTED;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%s", ai->name);
    m->hp.arch = ai->arch;
    m->hp.rope_neox = ai->rope_neox;
    if ((rc = read_hparams(m)) || (rc = load_weights(m)))
        return rc;
    return 0;
}

/* The vocabulary must fit token_embd. */
static int check_vocab(const qd_model_t *m)
{
    if (qd_tokenizer_n_vocab(m->tok) > m->hp.n_vocab) {
        qd_set_errmsg("model: the vocabulary has %d tokens but token_embd "
                      "only %d rows",
                      qd_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        return QD_EFORMAT;
    }
    return 0;
}

/* Open the GGUF, check the tensors, then build the tokenizer from the
 * file's metadata (tokenizer_json == NULL) or from tokenizer.json. */
static int model_load(const char *path, const char *tokenizer_json,
                      const char *tokenizer_config, qd_model_t **out)
{
    *out = NULL;
    qd_model_t *m = qd_calloc(1, sizeof *m);
    if (!m) {
        qd_set_errmsg("model: out of memory");
        return QD_ENOMEM;
    }
    /* the weights as the process chose (quantd/gguf.h) */
    int rc = qd_gguf_open_as(path, qd_gguf_get_load(), &m->gguf);
    if (rc < 0)
        goto fail;
    if ((rc = model_init(m)))
        goto fail;
    rc = tokenizer_json ? qd_tokenizer_from_hf(tokenizer_json,
                                               tokenizer_config, &m->tok)
                        : qd_tokenizer_from_gguf(m->gguf, &m->tok);
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", qd_errmsg());
        qd_set_errmsg("model: tokenizer%s%s: %s", tokenizer_json ? " " : "",
                      tokenizer_json ? tokenizer_json : "",
                      why[0] ? why : qd_strerror(rc));
        goto fail;
    }
    if ((rc = check_vocab(m)))
        goto fail;
    *out = m;
    return 0;
fail:
    qd_model_free(m);
    return rc;
}

int qd_model_load(const char *path, qd_model_t **out)
{
    return model_load(path, NULL, NULL, out);
}

int qd_model_load_hf_tokenizer(const char *gguf_path,
                               const char *tokenizer_json,
                               const char *tokenizer_config,
                               qd_model_t **out)
{
    if (!tokenizer_json) {
        *out = NULL;
        qd_set_errmsg("model: no tokenizer.json given");
        return QD_EINVAL;
    }
    return model_load(gguf_path, tokenizer_json, tokenizer_config, out);
}

void qd_model_free(qd_model_t *m)
{
    if (!m)
        return;
    qd_tokenizer_destroy(m->tok);
    qd_free(m->layers);
    qd_gguf_close(m->gguf);
    qd_free(m);
}

const qd_hparams_t *qd_model_hparams(const qd_model_t *m)
{
    return &m->hp;
}
const qd_tokenizer_t *qd_model_tokenizer(const qd_model_t *m)
{
    return m->tok;
}
const qd_gguf_t *qd_model_gguf(const qd_model_t *m)
{
    return m->gguf;
}
const char *qd_model_arch_name(const qd_model_t *m)
{
    return m->arch_name;
}
size_t qd_model_weight_bytes(const qd_model_t *m)
{
    return m->weight_bytes;
}
int qd_model_damaged(const qd_model_t *m)
{
    return m->gguf && qd_gguf_damaged(m->gguf);
}
