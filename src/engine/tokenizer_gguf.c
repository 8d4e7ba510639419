/*
 * tokenizer_gguf.c — fill the vocabulary structure (tokenizer_int.h) from
 * the tokenizer.ggml.* metadata of a GGUF file:
 *
 *   model          string: "llama" (SPM), "gpt2" (BPE) or "bert" (WPM)
 *   pre            string: BPE pre-tokenizer name (absent → "default")
 *   tokens         [string] × n_vocab (required, n_vocab ≥ 1, no duplicates)
 *   scores         [f32 or i32] ≥ n_vocab (optional, SPM merge priority)
 *   token_type     [i32] ≥ n_vocab (optional; 1 normal, 2 unknown,
 *                  3 control, 4 user-defined, 5 unused, 6 byte)
 *   merges         [string "a b"] (required for gpt2; both halves tokens)
 *   bos/eos/eot/eom/unknown/seperator/padding_token_id  u32 < n_vocab
 *   add_bos_token, add_eos_token, add_space_prefix      bool
 *   tokenizer.chat_template                             string
 *
 * Defaults follow llama.cpp (e.g. SPM: bos 1, eos 2, unk 0, add_bos).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "engine/tokenizer_int.h"
#include "quantd/common.h"
#include "quantd/gguf.h"

#define KP "tokenizer.ggml."

static int get_array(const qd_gguf_t *g, const char *key, qd_gguf_arr_t *a,
                     int required)
{
    int rc = qd_gguf_get_arr(g, key, a);
    if (rc == QD_ENOTFOUND && !required)
        return 1;
    if (rc) {
        qd_set_errmsg("%s: %s", key,
                      rc == QD_ENOTFOUND ? "missing" : "not an array");
        return rc == QD_ENOTFOUND ? QD_EFORMAT : rc;
    }
    return 0;
}

static int is_int_type(qd_gguf_vtype_t t)
{
    return t == QD_GGUF_INT8 || t == QD_GGUF_UINT8 || t == QD_GGUF_INT16 ||
           t == QD_GGUF_UINT16 || t == QD_GGUF_INT32 || t == QD_GGUF_UINT32 ||
           t == QD_GGUF_INT64 || t == QD_GGUF_UINT64;
}

static int get_flag(const qd_gguf_t *g, const char *key, int *v)
{
    int b, rc = qd_gguf_get_bool(g, key, &b);
    if (rc == QD_ENOTFOUND)
        return 0;
    if (rc) {
        qd_set_errmsg("%s: not a bool", key);
        return QD_EFORMAT;
    }
    *v = b;
    return 0;
}

int qd_tokenizer_from_gguf(const qd_gguf_t *g, qd_tokenizer_t **out)
{
    qd_tokenizer_t *t = NULL;
    const char *model, *s;
    size_t len;
    qd_gguf_arr_t toks, scores, types, merges;
    int rc, has_scores, has_types;
    *out = NULL;

    rc = qd_gguf_get_str(g, KP "model", &model, &len);
    if (rc) {
        qd_set_errmsg(KP "model: %s",
                      rc == QD_ENOTFOUND ? "missing" : "not a string");
        return QD_EFORMAT;
    }
    qd_vocab_kind_t kind;
    if (!strcmp(model, "llama"))
        kind = QD_VOCAB_SPM;
    else if (!strcmp(model, "gpt2"))
        kind = QD_VOCAB_BPE;
    else if (!strcmp(model, "bert"))
        kind = QD_VOCAB_WPM;
    else {
        qd_set_errmsg(KP "model: tokenizer '%.40s' is not supported", model);
        return QD_EUNSUPPORTED;
    }
    if ((rc = get_array(g, KP "tokens", &toks, 1)))
        return rc;
    if (toks.elem_type != QD_GGUF_STRING) {
        qd_set_errmsg(KP "tokens: not an array of strings");
        return QD_EFORMAT;
    }
    if (toks.n == 0 || toks.n > (1u << 24)) {
        qd_set_errmsg(KP "tokens: %llu tokens", (unsigned long long)toks.n);
        return QD_EFORMAT;
    }
    if ((has_scores = get_array(g, KP "scores", &scores, 0)) < 0)
        return has_scores;
    has_scores = !has_scores;
    if (has_scores && ((scores.elem_type != QD_GGUF_FLOAT32 &&
                        scores.elem_type != QD_GGUF_INT32) ||
                       scores.n < toks.n)) {
        qd_set_errmsg(KP "scores: need f32/i32 × %llu, have %llu of type %d",
                      (unsigned long long)toks.n, (unsigned long long)scores.n,
                      (int)scores.elem_type);
        return QD_EFORMAT;
    }
    if ((has_types = get_array(g, KP "token_type", &types, 0)) < 0)
        return has_types;
    has_types = !has_types;
    if (has_types && (!is_int_type(types.elem_type) || types.n < toks.n)) {
        qd_set_errmsg(KP "token_type: need integers × %llu, have %llu",
                      (unsigned long long)toks.n, (unsigned long long)types.n);
        return QD_EFORMAT;
    }

    if ((rc = qd__tok_create(kind, (int64_t)toks.n, &t)))
        return rc;
    for (uint64_t i = 0; i < toks.n; i++) {
        size_t n;
        const char *txt = qd_gguf_arr_str(&toks, i, &n);
        char empty[32];
        if (!txt || !n) { /* llama.cpp renames empty tokens the same way */
            n = (size_t)snprintf(empty, sizeof(empty), "[EMPTY_%llu]",
                                 (unsigned long long)i);
            txt = empty;
        }
        float sc = has_scores ? (float)qd_gguf_arr_f64(&scores, i) : 0.0f;
        int attr = has_types
                       ? qd__tok_attr_from_type(qd_gguf_arr_i64(&types, i))
                       : QD_TATTR_NORMAL;
        if ((rc = qd__tok_set_token(t, (int32_t)i, txt, n, sc, attr)))
            goto fail;
    }
    if ((rc = qd__tok_index(t)))
        goto fail;

    switch (kind) {
    case QD_VOCAB_SPM:
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_bos = 1;
        t->add_space_prefix = 1;
        t->byte_encode = 0;
        break;
    case QD_VOCAB_BPE: {
        const char *pre = NULL;
        rc = qd_gguf_get_str(g, KP "pre", &pre, &len);
        if (rc && rc != QD_ENOTFOUND) {
            qd_set_errmsg(KP "pre: not a string");
            rc = QD_EFORMAT;
            goto fail;
        }
        if ((rc = qd__tok_set_pre(t, rc ? NULL : pre)))
            goto fail;
        t->bos = t->eos = 11;
        if ((rc = get_array(g, KP "merges", &merges, 1)))
            goto fail;
        if (merges.elem_type != QD_GGUF_STRING || merges.n > INT32_MAX) {
            qd_set_errmsg(KP "merges: not an array of strings");
            rc = QD_EFORMAT;
            goto fail;
        }
        for (uint64_t i = 0; i < merges.n; i++) {
            size_t n;
            const char *m = qd_gguf_arr_str(&merges, i, &n);
            const char *sp = m && n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
            if (!sp) {
                qd_set_errmsg(KP "merges[%llu]: '%.40s' is not two tokens",
                              (unsigned long long)i, m ? m : "");
                rc = QD_EFORMAT;
                goto fail;
            }
            size_t a = (size_t)(sp - m);
            if ((rc = qd__tok_add_merge(t, m, a, sp + 1, n - a - 1,
                                        (int32_t)i, KP "merges")))
                goto fail;
        }
        break;
    }
    case QD_VOCAB_WPM:
        t->bos = 101;
        t->unk = 100;
        t->sep = 102;
        t->pad = 0;
        t->add_bos = 1;
        t->wpm_lowercase = 1;
        t->wpm_strip_accents = 1;
        break;
    }
    /* defaults that do not fit this vocabulary are dropped, as llama.cpp */
    int32_t *ids[] = {&t->bos, &t->eos, &t->unk, &t->sep, &t->pad};
    for (size_t i = 0; i < QD_ARRAY_SIZE(ids); i++)
        if (*ids[i] >= t->n_vocab)
            *ids[i] = -1;

    static const struct {
        const char *key;
        size_t off;
    } special[] = {
        {KP "bos_token_id", offsetof(qd_tokenizer_t, bos)},
        {KP "eos_token_id", offsetof(qd_tokenizer_t, eos)},
        {KP "eot_token_id", offsetof(qd_tokenizer_t, eot)},
        {KP "eom_token_id", offsetof(qd_tokenizer_t, eom)},
        {KP "unknown_token_id", offsetof(qd_tokenizer_t, unk)},
        {KP "seperator_token_id", offsetof(qd_tokenizer_t, sep)},
        {KP "padding_token_id", offsetof(qd_tokenizer_t, pad)},
    };
    for (size_t i = 0; i < QD_ARRAY_SIZE(special); i++) {
        uint32_t v;
        int32_t sv;
        rc = qd_gguf_get_u32(g, special[i].key, &v);
        if (rc == QD_ENOTFOUND)
            continue;
        if (rc == QD_EINVAL && !qd_gguf_get_i32(g, special[i].key, &sv) &&
            sv == -1) {
            rc = 0;
            v = UINT32_MAX;
        }
        if (!rc && v == UINT32_MAX) { /* -1: explicitly none */
            *(int32_t *)((char *)t + special[i].off) = -1;
            continue;
        }
        if (rc || v >= (uint32_t)t->n_vocab) {
            qd_set_errmsg("%s: %s (vocabulary has %d tokens)", special[i].key,
                          rc ? "not an unsigned integer" : "out of range",
                          t->n_vocab);
            rc = QD_EFORMAT;
            goto fail;
        }
        *(int32_t *)((char *)t + special[i].off) = (int32_t)v;
    }
    if ((rc = get_flag(g, KP "add_bos_token", &t->add_bos)) ||
        (rc = get_flag(g, KP "add_eos_token", &t->add_eos)) ||
        (rc = get_flag(g, KP "add_space_prefix", &t->add_space_prefix)))
        goto fail;
    if (kind != QD_VOCAB_SPM)
        t->add_space_prefix = 0;
    rc = qd_gguf_get_str(g, "tokenizer.chat_template", &s, &len);
    if (rc == 0) {
        if (!(t->chat_template = qd_strndup(s, len))) {
            rc = QD_ENOMEM;
            goto fail;
        }
    } else if (rc != QD_ENOTFOUND) {
        qd_set_errmsg("tokenizer.chat_template: not a string");
        rc = QD_EFORMAT;
        goto fail;
    }
    if ((rc = qd__tok_finish(t)))
        goto fail;
    *out = t;
    return 0;
fail:
    qd_tokenizer_destroy(t);
    return rc;
}
