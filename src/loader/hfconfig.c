/*
 * hfconfig.c — reads config.json, generation_config.json and the
 * quantization config of a Hugging Face model directory into
 * qd_hf_config_t (quantd/hfconfig.h).
 *
 * The JSON is untrusted: each value's type and range is checked and a bad
 * one is reported by file and key. Defaults follow the transformers config
 * classes (LlamaConfig, Qwen2Config): num_key_value_heads = heads,
 * head_dim = hidden / heads, rope_theta = 10000, rms_norm_eps = 1e-6.
 */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/hfconfig.h"

static int get_int(const json_t *o, const char *file, const char *key,
                   int required, int64_t def, int64_t lo, int64_t hi,
                   int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) {
            qd_set_errmsg("%s: key '%s' is missing", file, key);
            return QD_EFORMAT;
        }
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        qd_set_errmsg("%s: key '%s' must be an integer in [%lld, %lld]", file,
                      key, (long long)lo, (long long)hi);
        return QD_EFORMAT;
    }
    *out = json_integer_value(v);
    return 0;
}

static int get_num(const json_t *o, const char *file, const char *key,
                   double def, double lo, double hi, double *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= lo) ||
        !(json_number_value(v) <= hi)) {
        qd_set_errmsg("%s: key '%s' must be a number in [%g, %g]", file, key,
                      lo, hi);
        return QD_EFORMAT;
    }
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *file, const char *key,
                    int def, int *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        qd_set_errmsg("%s: key '%s' must be true or false", file, key);
        return QD_EFORMAT;
    }
    *out = json_is_true(v);
    return 0;
}

static int get_str(const json_t *o, const char *file, const char *key,
                   char *buf, size_t cap)
{
    const json_t *v = json_object_get(o, key);
    buf[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap) {
        qd_set_errmsg("%s: key '%s' must be a string of under %zu bytes",
                      file, key, cap);
        return QD_EFORMAT;
    }
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static json_t *load_obj(const char *text, const char *file, int *rc)
{
    json_error_t err;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!o) {
        qd_set_errmsg("%s: not valid JSON: %s (line %d)", file, err.text,
                      err.line);
        *rc = QD_EFORMAT;
        return NULL;
    }
    if (!json_is_object(o)) {
        qd_set_errmsg("%s: not a JSON object", file);
        json_decref(o);
        *rc = QD_EFORMAT;
        return NULL;
    }
    return o;
}

/* bos/eos ids: eos may be one integer or a list. */
static int parse_special_ids(const json_t *o, const char *file,
                             qd_hf_config_t *c)
{
    int64_t v;
    int rc;
    if (json_object_get(o, "bos_token_id")) {
        if ((rc = get_int(o, file, "bos_token_id", 0, -1, -1, INT32_MAX, &v)))
            return rc;
        c->bos_id = (int32_t)v;
    }
    const json_t *e = json_object_get(o, "eos_token_id");
    if (!e || json_is_null(e))
        return 0;
    if (json_is_integer(e)) {
        if ((rc = get_int(o, file, "eos_token_id", 0, -1, 0, INT32_MAX, &v)))
            return rc;
        c->eos_ids[0] = (int32_t)v;
        c->n_eos = 1;
        return 0;
    }
    if (!json_is_array(e) || json_array_size(e) > QD_HF_MAX_EOS) {
        qd_set_errmsg("%s: eos_token_id must be an integer or a list of at "
                      "most %d", file, QD_HF_MAX_EOS);
        return QD_EFORMAT;
    }
    c->n_eos = 0;
    for (size_t i = 0; i < json_array_size(e); i++) {
        const json_t *x = json_array_get(e, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
            json_integer_value(x) > INT32_MAX) {
            qd_set_errmsg("%s: eos_token_id[%zu] is not a token id", file, i);
            return QD_EFORMAT;
        }
        c->eos_ids[c->n_eos++] = (int32_t)json_integer_value(x);
    }
    return 0;
}

static int parse_quant(const json_t *q, const char *file, qd_hf_quant_t *out)
{
    char method[16];
    int rc;
    int64_t v;
    if (!json_is_object(q)) {
        qd_set_errmsg("%s: quantization config is not an object", file);
        return QD_EFORMAT;
    }
    if ((rc = get_str(q, file, "quant_method", method, sizeof method)))
        return rc;
    /* AutoAWQ's quant_config.json has no quant_method but w_bit. */
    if (!method[0] && json_object_get(q, "w_bit"))
        strcpy(method, "awq");
    if (strcasecmp(method, "awq") == 0)
        out->method = QD_HF_QUANT_AWQ;
    else if (strcasecmp(method, "gptq") == 0)
        out->method = QD_HF_QUANT_GPTQ;
    else {
        qd_set_errmsg("%s: quant_method '%s' is not supported (awq, gptq)",
                      file, method[0] ? method : "(none)");
        return QD_EUNSUPPORTED;
    }
    const char *bk = json_object_get(q, "bits") ? "bits" : "w_bit";
    const char *gk = json_object_get(q, "group_size") ? "group_size"
                                                        : "q_group_size";
    if ((rc = get_int(q, file, bk, 1, 4, 1, 16, &v)))
        return rc;
    out->bits = (int)v;
    if ((rc = get_int(q, file, gk, 0, 128, -1, 1 << 20, &v)))
        return rc;
    if (v == 0 || v < -1) {
        qd_set_errmsg("%s: %s must be positive or -1", file, gk);
        return QD_EFORMAT;
    }
    out->group_size = (int)v;
    if ((rc = get_bool(q, file, "zero_point", 1, &out->zero_point)) ||
        (rc = get_bool(q, file, "sym", 1, &out->sym)) ||
        (rc = get_bool(q, file, "desc_act", 0, &out->desc_act)) ||
        (rc = get_str(q, file, "version", out->version, sizeof out->version)))
        return rc;
    char fmt[32];
    if ((rc = get_str(q, file, "checkpoint_format", fmt, sizeof fmt)))
        return rc;
    out->gptq_v2 = strcasecmp(fmt, "gptq_v2") == 0;
    for (char *p = out->version; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (out->method == QD_HF_QUANT_AWQ && !out->version[0])
        strcpy(out->version, "gemm");
    return 0;
}

static int parse_rope_scaling(const json_t *o, qd_hf_config_t *c)
{
    const char *f = "config.json rope_scaling";
    const json_t *rs = json_object_get(o, "rope_scaling");
    int rc;
    if (!rs || json_is_null(rs))
        return 0;
    if (!json_is_object(rs)) {
        qd_set_errmsg("config.json: rope_scaling is not an object");
        return QD_EFORMAT;
    }
    const char *tk = json_object_get(rs, "rope_type") ? "rope_type" : "type";
    if ((rc = get_str(rs, f, tk, c->rope_type, sizeof c->rope_type)) ||
        (rc = get_num(rs, f, "factor", 8.0, 1e-6, 1e6, &c->rope_factor)) ||
        (rc = get_num(rs, f, "low_freq_factor", 1.0, 1e-6, 1e6,
                      &c->rope_low_freq_factor)) ||
        (rc = get_num(rs, f, "high_freq_factor", 4.0, 1e-6, 1e6,
                      &c->rope_high_freq_factor)) ||
        (rc = get_int(rs, f, "original_max_position_embeddings", 0, 8192, 1,
                      INT32_MAX, &c->rope_orig_max_pos)))
        return rc;
    return 0;
}

int qd_hf_config_parse(const char *config_json, const char *gen_json,
                       const char *quant_json, qd_hf_config_t *c)
{
    const char *f = "config.json";
    int rc = 0;
    json_t *o = NULL, *g = NULL, *qj = NULL;
    memset(c, 0, sizeof *c);
    c->bos_id = -1;
    if (!(o = load_obj(config_json, f, &rc)))
        goto out;
    const json_t *archs = json_object_get(o, "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0) {
        const json_t *a = json_array_get(archs, 0);
        if (!json_is_string(a) ||
            json_string_length(a) >= sizeof c->architecture) {
            qd_set_errmsg("%s: architectures[0] is not a short string", f);
            rc = QD_EFORMAT;
            goto out;
        }
        strcpy(c->architecture, json_string_value(a));
    }
    int64_t hmax = (int64_t)1 << 20;
    if ((rc = get_str(o, f, "model_type", c->model_type, sizeof c->model_type)) ||
        (rc = get_int(o, f, "hidden_size", 1, 0, 1, hmax, &c->hidden_size)) ||
        (rc = get_int(o, f, "num_hidden_layers", 1, 0, 1, 4096, &c->n_layer)) ||
        (rc = get_int(o, f, "num_attention_heads", 1, 0, 1, 4096, &c->n_head)) ||
        (rc = get_int(o, f, "num_key_value_heads", 0, c->n_head, 1, c->n_head,
                      &c->n_head_kv)) ||
        (rc = get_int(o, f, "intermediate_size", 1, 0, 1, hmax, &c->n_ff)) ||
        (rc = get_int(o, f, "max_position_embeddings", 0, 2048, 1, INT32_MAX,
                      &c->max_pos)) ||
        (rc = get_int(o, f, "vocab_size", 1, 0, 1, INT32_MAX, &c->vocab_size)) ||
        (rc = get_int(o, f, "head_dim", 0, c->hidden_size / c->n_head, 1, hmax,
                      &c->head_dim)) ||
        (rc = get_num(o, f, "rms_norm_eps", 1e-6, 0.0, 1.0, &c->rms_eps)) ||
        (rc = get_num(o, f, "rope_theta", 10000.0, 1e-3, 1e12,
                      &c->rope_theta)) ||
        (rc = get_bool(o, f, "tie_word_embeddings", 0,
                       &c->tie_word_embeddings)) ||
        (rc = parse_rope_scaling(o, c)) || (rc = parse_special_ids(o, f, c)))
        goto out;
    if (c->head_dim == 0) {
        qd_set_errmsg("%s: head_dim is 0 (hidden_size < num_attention_heads)",
                      f);
        rc = QD_EFORMAT;
        goto out;
    }
    if (c->n_head % c->n_head_kv != 0) {
        qd_set_errmsg("%s: num_attention_heads %lld is not a multiple of "
                      "num_key_value_heads %lld", f, (long long)c->n_head,
                      (long long)c->n_head_kv);
        rc = QD_EFORMAT;
        goto out;
    }
    const json_t *q = json_object_get(o, "quantization_config");
    if (q && !json_is_null(q)) {
        if ((rc = parse_quant(q, "config.json quantization_config", &c->quant)))
            goto out;
    } else if (quant_json) {
        if (!(qj = load_obj(quant_json, "quantization config file", &rc)))
            goto out;
        if ((rc = parse_quant(qj, "quantization config file", &c->quant)))
            goto out;
    }
    if (gen_json) {
        if (!(g = load_obj(gen_json, "generation_config.json", &rc)))
            goto out;
        if ((rc = parse_special_ids(g, "generation_config.json", c)))
            goto out;
    }
out:
    json_decref(o);
    json_decref(g);
    json_decref(qj);
    return rc;
}

/* Whole file as a NUL-terminated string (NULL + *rc when it cannot be
 * read; *rc = 0 and NULL when it does not exist and is optional). */
static char *slurp(const char *dir, const char *name, int required, int *rc)
{
    char path[4096];
    *rc = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        qd_set_errmsg("hfconfig: path too long: %s", dir);
        *rc = QD_EINVAL;
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (required) {
            qd_set_errmsg("hfconfig: cannot open %s", path);
            *rc = QD_ENOENT;
        }
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            if (cap > ((size_t)64 << 20)) {
                qd_set_errmsg("hfconfig: %s is larger than 64 MB", path);
                *rc = QD_ETOOBIG;
                break;
            }
            cap = cap ? 2 * cap : 8192;
            char *p = qd_realloc(buf, cap);
            if (!p) {
                *rc = QD_ENOMEM;
                break;
            }
            buf = p;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, fp);
        n += k;
        if (k == 0)
            break;
    }
    if (!*rc && ferror(fp)) {
        qd_set_errmsg("hfconfig: read error on %s", path);
        *rc = QD_EIO;
    }
    fclose(fp);
    if (*rc) {
        qd_free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int qd_hf_config_load(const char *dir, qd_hf_config_t *out)
{
    int rc;
    char *cfg = NULL, *gen = NULL, *qc = NULL;
    if (!(cfg = slurp(dir, "config.json", 1, &rc)))
        goto out;
    if (!(gen = slurp(dir, "generation_config.json", 0, &rc)) && rc)
        goto out;
    if (!(qc = slurp(dir, "quantize_config.json", 0, &rc)) && rc)
        goto out;
    if (!qc && !(qc = slurp(dir, "quant_config.json", 0, &rc)) && rc)
        goto out;
    rc = qd_hf_config_parse(cfg, gen, qc, out);
out:
    qd_free(cfg);
    qd_free(gen);
    qd_free(qc);
    return rc;
}
