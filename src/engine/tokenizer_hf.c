/*
 * tokenizer_hf.c — load a Hugging Face tokenizer.json (+ the optional
 * tokenizer_config.json) into the vocabulary structure of tokenizer_int.h.
 *
 * Supported: model BPE (vocab object, merges as "a b" strings or [a, b]
 * pairs, ignore_merges, byte_fallback, unk_token); normalizer null, NFC
 * (accepted and not applied, as llama.cpp does not apply it either, so ids
 * match llama.cpp's for the converted vocabulary), or a Sequence of
 * Prepend("▁") / Replace(" ", "▁") (SentencePiece-style BPE);
 * pre_tokenizer ByteLevel, Split with one of the known expressions (GPT-2,
 * Llama-3, Qwen2: each hand-coded in tokenizer_bpe.c; any other pattern is
 * refused with its text in the message), Digits, Metaspace, and Sequences
 * of these; added_tokens (special → control tokens, others user-defined,
 * both matched in the raw text before BPE); bos/eos/unk, add_bos_token,
 * add_eos_token and chat_template from tokenizer_config.json.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/tokenizer_int.h"
#include "quantd/common.h"

#define RE_GPT2                                                                \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"       \
    "|\\s+(?!\\S)"
#define RE_LLAMA3_HEAD                                                         \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL                                                         \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const struct {
    const char *regex;
    qd_pre_stage_t stage;
} known_regex[] = {
    {RE_GPT2, QD_PRE_GPT2},
    {RE_GPT2 "|\\s+", QD_PRE_GPT2},
    {RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL, QD_PRE_LLAMA3},
    {RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL, QD_PRE_QWEN2},
};

typedef struct {
    const char *path;
    int spm_style; /* Prepend/Replace normalizer or Metaspace seen */
} ctx_t;

static int add_stage(qd_tokenizer_t *t, const ctx_t *c, qd_pre_stage_t s)
{
    if (t->n_pre == QD_PRE_MAX_STAGES) {
        qd_set_errmsg("%s: pre_tokenizer has too many stages", c->path);
        return QD_EUNSUPPORTED;
    }
    t->pre[t->n_pre++] = s;
    return 0;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_pre(qd_tokenizer_t *t, ctx_t *c, json_t *p)
{
    if (!p || json_is_null(p))
        return 0;
    const char *type = jstr(p, "type");
    if (!type) {
        qd_set_errmsg("%s: pre_tokenizer without a type", c->path);
        return QD_EFORMAT;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(p, "pretokenizers");
        size_t i;
        json_t *e;
        if (!json_is_array(a)) {
            qd_set_errmsg("%s: pre_tokenizer Sequence without a list", c->path);
            return QD_EFORMAT;
        }
        json_array_foreach(a, i, e)
        {
            int rc = parse_pre(t, c, e);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        t->byte_encode = 1;
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur))
            return add_stage(t, c, QD_PRE_GPT2);
        return 0;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *re = jstr(pat, "Regex");
        const char *beh = jstr(p, "behavior");
        if (!re) {
            const char *s = jstr(pat, "String");
            qd_set_errmsg("%s: pre_tokenizer Split on string '%.60s' is not "
                          "supported", c->path, s ? s : "?");
            return QD_EUNSUPPORTED;
        }
        if ((beh && strcmp(beh, "Isolated")) ||
            json_is_true(json_object_get(p, "invert"))) {
            qd_set_errmsg("%s: pre_tokenizer Split behavior '%s' is not "
                          "supported", c->path, beh ? beh : "?");
            return QD_EUNSUPPORTED;
        }
        for (size_t i = 0; i < QD_ARRAY_SIZE(known_regex); i++)
            if (!strcmp(re, known_regex[i].regex))
                return add_stage(t, c, known_regex[i].stage);
        qd_set_errmsg("%s: pre_tokenizer Split pattern '%.200s' is not one of "
                      "the known expressions (GPT-2, Llama-3, Qwen2)",
                      c->path, re);
        return QD_EUNSUPPORTED;
    }
    if (!strcmp(type, "Digits")) {
        return add_stage(t, c,
                         json_is_true(json_object_get(p, "individual_digits"))
                             ? QD_PRE_DIGIT1
                             : QD_PRE_DIGITS);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        const char *scheme = jstr(p, "prepend_scheme");
        json_t *aps = json_object_get(p, "add_prefix_space");
        if (rep && strcmp(rep, "\xE2\x96\x81")) {
            qd_set_errmsg("%s: Metaspace replacement '%s' is not supported",
                          c->path, rep);
            return QD_EUNSUPPORTED;
        }
        c->spm_style = 1;
        t->add_space_prefix = scheme ? strcmp(scheme, "never") != 0
                                     : (!aps || json_is_true(aps));
        return 0;
    }
    qd_set_errmsg("%s: pre_tokenizer type '%s' is not supported", c->path,
                  type);
    return QD_EUNSUPPORTED;
}

static int parse_normalizer(qd_tokenizer_t *t, ctx_t *c, json_t *n)
{
    if (!n || json_is_null(n))
        return 0;
    const char *type = jstr(n, "type");
    if (!type) {
        qd_set_errmsg("%s: normalizer without a type", c->path);
        return QD_EFORMAT;
    }
    if (!strcmp(type, "NFC"))
        return 0;
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(n, "normalizers"), *e;
        size_t i;
        if (!json_is_array(a)) {
            qd_set_errmsg("%s: normalizer Sequence without a list", c->path);
            return QD_EFORMAT;
        }
        json_array_foreach(a, i, e)
        {
            int rc = parse_normalizer(t, c, e);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        const char *s = jstr(n, "prepend");
        if (s && !strcmp(s, "\xE2\x96\x81")) {
            c->spm_style = 1;
            t->add_space_prefix = 1;
            return 0;
        }
    } else if (!strcmp(type, "Replace")) {
        const char *from = jstr(json_object_get(n, "pattern"), "String");
        const char *to = jstr(n, "content");
        if (from && to && !strcmp(from, " ") && !strcmp(to, "\xE2\x96\x81")) {
            c->spm_style = 1;
            return 0;
        }
    }
    qd_set_errmsg("%s: normalizer '%s' is not supported", c->path, type);
    return QD_EUNSUPPORTED;
}

/* Added tokens that ought to be control tokens even when not marked special
 * (the rule of llama.cpp's GGUF converter). */
static int looks_special(const char *s)
{
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>"))
        return 1;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>"))
        return 1;
    if (n >= 8 && !strncmp(s, "<\xEF\xBD\x9C", 4) &&
        !strcmp(s + n - 4, "\xEF\xBD\x9C>"))
        return 1;
    return 0;
}

/* "<s>" or {"content": "<s>", ...} → token id, -1 if absent */
static int32_t config_token(const qd_tokenizer_t *t, json_t *cfg,
                            const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return -1;
    return qd__tok_find(t, json_string_value(v), json_string_length(v));
}

static int load_config(qd_tokenizer_t *t, const char *path, json_t *root)
{
    json_error_t err;
    json_t *cfg = NULL;
    int rc = 0;
    if (path) {
        cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &err);
        if (!cfg) {
            qd_set_errmsg("%s:%d: %s", path, err.line, err.text);
            return QD_EFORMAT;
        }
        if (!json_is_object(cfg)) {
            qd_set_errmsg("%s: not a JSON object", path);
            rc = QD_EFORMAT;
            goto out;
        }
    }
    if (cfg) {
        t->bos = config_token(t, cfg, "bos_token");
        t->eos = config_token(t, cfg, "eos_token");
        int32_t unk = config_token(t, cfg, "unk_token");
        if (unk >= 0)
            t->unk = unk;
        t->pad = config_token(t, cfg, "pad_token");
    }
    /* add_bos: explicit, else a post-processor template that starts with a
     * special token, else whether a BOS token is declared at all. */
    json_t *ab = cfg ? json_object_get(cfg, "add_bos_token") : NULL;
    json_t *pp = json_object_get(root, "post_processor");
    json_t *single = json_object_get(pp, "single");
    json_t *first = json_array_get(single, 0);
    json_t *sp = json_object_get(first, "SpecialToken");
    if (json_is_boolean(ab)) {
        t->add_bos = json_is_true(ab);
    } else if (sp) {
        const char *id = jstr(sp, "id");
        int32_t tok = id ? qd__tok_find(t, id, strlen(id)) : -1;
        if (tok >= 0) {
            if (t->bos < 0)
                t->bos = tok;
            t->add_bos = tok == t->bos;
        }
    } else {
        t->add_bos = t->bos >= 0;
    }
    if (cfg)
        t->add_eos = json_is_true(json_object_get(cfg, "add_eos_token"));
    json_t *tpl = cfg ? json_object_get(cfg, "chat_template") : NULL;
    if (json_is_array(tpl)) { /* [{name, template}]: take "default" */
        json_t *e, *pick = NULL;
        size_t i;
        json_array_foreach(tpl, i, e)
        {
            const char *name = jstr(e, "name");
            if (!pick || (name && !strcmp(name, "default")))
                pick = json_object_get(e, "template");
        }
        tpl = pick;
    }
    if (json_is_string(tpl)) {
        t->chat_template = qd_strdup(json_string_value(tpl));
        if (!t->chat_template)
            rc = QD_ENOMEM;
    }
out:
    json_decref(cfg);
    return rc;
}

static int set_merges(qd_tokenizer_t *t, const char *path, json_t *merges)
{
    size_t i;
    json_t *m;
    if (!merges || json_is_null(merges))
        return 0;
    if (!json_is_array(merges)) {
        qd_set_errmsg("%s: model.merges is not an array", path);
        return QD_EFORMAT;
    }
    if (json_array_size(merges) > INT32_MAX) {
        qd_set_errmsg("%s: too many merges", path);
        return QD_ETOOBIG;
    }
    json_array_foreach(merges, i, m)
    {
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
            if (!sp) {
                qd_set_errmsg("%s: merge %zu '%.60s' is not two tokens", path,
                              i, s);
                return QD_EFORMAT;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = n - alen - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            alen = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            blen = json_string_length(json_array_get(m, 1));
        } else {
            qd_set_errmsg("%s: merge %zu is neither \"a b\" nor [a, b]", path,
                          i);
            return QD_EFORMAT;
        }
        int rc = qd__tok_add_merge(t, a, alen, b, blen, (int32_t)i, path);
        if (rc)
            return rc;
    }
    return 0;
}

int qd_tokenizer_from_hf(const char *tokenizer_json_path,
                         const char *tokenizer_config_path,
                         qd_tokenizer_t **out)
{
    const char *path = tokenizer_json_path;
    json_error_t err;
    qd_tokenizer_t *t = NULL;
    int rc = 0;
    *out = NULL;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        qd_set_errmsg("%s:%d: %s", path, err.line, err.text);
        return err.line < 0 ? QD_EIO : QD_EFORMAT;
    }
    json_t *model = json_object_get(root, "model");
    const char *mtype = jstr(model, "type");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!mtype || strcmp(mtype, "BPE")) {
        qd_set_errmsg("%s: model type '%s' is not supported (only BPE)", path,
                      mtype ? mtype : "(none)");
        rc = mtype ? QD_EUNSUPPORTED : QD_EFORMAT;
        goto out;
    }
    if (!json_is_object(vocab) || (added && !json_is_array(added) &&
                                   !json_is_null(added))) {
        qd_set_errmsg("%s: model.vocab must be an object and added_tokens "
                      "a list", path);
        rc = QD_EFORMAT;
        goto out;
    }

    /* Size: the largest id in vocab and added_tokens. */
    int64_t max_id = -1;
    const char *key;
    json_t *v, *e;
    size_t i;
    json_object_foreach(vocab, key, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= (1 << 24)) {
            qd_set_errmsg("%s: vocab entry '%.60s' has a bad id", path, key);
            rc = QD_EFORMAT;
            goto out;
        }
        max_id = QD_MAX(max_id, json_integer_value(v));
    }
    json_array_foreach(added, i, e)
    {
        json_t *id = json_object_get(e, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24) ||
            !json_is_string(json_object_get(e, "content"))) {
            qd_set_errmsg("%s: added_tokens[%zu] has a bad id or content",
                          path, i);
            rc = QD_EFORMAT;
            goto out;
        }
        max_id = QD_MAX(max_id, json_integer_value(id));
    }
    if ((rc = qd__tok_create(QD_VOCAB_BPE, max_id + 1, &t)))
        goto out;
    json_object_foreach(vocab, key, v)
    {
        int32_t id = (int32_t)json_integer_value(v);
        if (t->text[id]) {
            qd_set_errmsg("%s: id %d used twice in vocab", path, id);
            rc = QD_EFORMAT;
            goto out;
        }
        if ((rc = qd__tok_set_token(t, id, key, strlen(key), 0.0f,
                                    QD_TATTR_NORMAL)))
            goto out;
    }
    json_array_foreach(added, i, e)
    {
        int32_t id = (int32_t)json_integer_value(json_object_get(e, "id"));
        json_t *content = json_object_get(e, "content");
        const char *s = json_string_value(content);
        int attr = (json_is_true(json_object_get(e, "special")) ||
                    looks_special(s))
                       ? QD_TATTR_CONTROL
                       : QD_TATTR_USER_DEFINED;
        if (json_is_true(json_object_get(e, "lstrip")))
            attr |= QD_TATTR_LSTRIP;
        if (json_is_true(json_object_get(e, "rstrip")))
            attr |= QD_TATTR_RSTRIP;
        if ((rc = qd__tok_set_token(t, id, s, json_string_length(content),
                                    0.0f, attr)))
            goto out;
    }
    for (int32_t id = 0; id < t->n_vocab; id++) { /* holes: unused fillers */
        if (t->text[id])
            continue;
        char pad[32];
        int n = snprintf(pad, sizeof(pad), "[PAD%d]", id);
        if ((rc = qd__tok_set_token(t, id, pad, (size_t)n, 0.0f,
                                    QD_TATTR_UNUSED)))
            goto out;
    }
    if ((rc = qd__tok_index(t)))
        goto out;

    ctx_t c = {path, 0};
    t->byte_encode = 0;
    if ((rc = parse_normalizer(t, &c, json_object_get(root, "normalizer"))) ||
        (rc = parse_pre(t, &c, json_object_get(root, "pre_tokenizer"))))
        goto out;
    if (c.spm_style) {
        if (t->byte_encode) {
            qd_set_errmsg("%s: both ByteLevel and Metaspace-style "
                          "normalization", path);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
        t->escape_ws = 1;
    } else if (!t->byte_encode) {
        /* BPE over raw text without a byte alphabet: only with fallback. */
        if (!json_is_true(json_object_get(model, "byte_fallback"))) {
            qd_set_errmsg("%s: BPE without ByteLevel, Metaspace or "
                          "byte_fallback is not supported", path);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
    }
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    const char *unk = jstr(model, "unk_token");
    if (unk)
        t->unk = qd__tok_find(t, unk, strlen(unk));
    if ((rc = set_merges(t, path, json_object_get(model, "merges"))))
        goto out;
    if ((rc = load_config(t, tokenizer_config_path, root)))
        goto out;
    if ((rc = qd__tok_finish(t)))
        goto out;
    *out = t;
    t = NULL;
out:
    qd_tokenizer_destroy(t);
    json_decref(root);
    return rc;
}
