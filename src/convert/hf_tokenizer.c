/*
 * hf_tokenizer.c — tokenizer.json and tokenizer_config.json from a GGUF
 * vocabulary, so that a checkpoint directory written by the exporter
 * carries the tokenizer of the model it came from.
 *
 * Supported: SentencePiece vocabularies (tokenizer.ggml.model "llama"),
 * written the way Hugging Face's converter writes Llama-2's: a BPE model
 * with byte_fallback over the SentencePiece pieces, whose merges are
 * derived from the scores — every split of a piece into two pieces of the
 * vocabulary is a merge, ranked by the score of the merged piece (highest
 * first; equal scores by piece id, then by the ids of the two halves), so
 * that BPE by rank merges exactly as SentencePiece merges by score; a
 * normalizer Prepend("▁") (when the vocabulary adds a space prefix) +
 * Replace(" ", "▁"); control/unknown tokens as special added tokens,
 * user-defined ones as plain added tokens; a TemplateProcessing that adds
 * BOS (and EOS) as the GGUF asks; the decoder Replace("▁", " "),
 * ByteFallback, Fuse, Strip(1 leading space). tokenizer_config.json gets
 * bos/eos/unk/pad, add_bos_token, add_eos_token and the chat template.
 * Other vocabulary types return QD_EUNSUPPORTED (the caller says so).
 *
 * The merges reproduce SentencePiece exactly when every piece of two or
 * more characters splits into two pieces (true of trained SentencePiece
 * BPE vocabularies, whose characters are pieces: checked on Llama-2's and
 * stories260K's). SentencePiece also merges characters that are not
 * pieces themselves; BPE cannot, so such pieces (gen-model's synthetic
 * vocabulary has them: "▁e" without "▁") are counted and warned about.
 */
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/gguf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "hf_tokenizer"
#define KP  "tokenizer.ggml."

enum {
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6
};

typedef struct {
    float score; /* of the merged piece */
    int32_t id, l, r;
} merge_t;

static int merge_cmp(const void *a, const void *b)
{
    const merge_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->l != y->l)
        return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

static int32_t opt_id(const qd_gguf_t *g, const char *key, int32_t n)
{
    uint32_t v;
    if (qd_gguf_get_u32(g, key, &v) != 0 || v >= (uint32_t)n)
        return -1;
    return (int32_t)v;
}

static int opt_flag(const qd_gguf_t *g, const char *key, int def)
{
    int v;
    return qd_gguf_get_bool(g, key, &v) == 0 ? v : def;
}

/* {"SpecialToken": {"id": text, "type_id": 0}} / {"Sequence": ...} */
static json_t *tp_special(const char *text)
{
    return json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", text, "type_id",
                     0);
}

static json_t *post_processor(const char *const *text, int32_t bos, int32_t eos,
                              int add_bos, int add_eos)
{
    json_t *single = json_array(), *pair = json_array(),
           *specials = json_object();
    if (!single || !pair || !specials)
        goto oom;
    for (int part = 0; part < 2; part++) {
        json_t *arr = part ? pair : single;
        for (int s = 0; s <= part; s++) {
            if (add_bos && bos >= 0)
                json_array_append_new(arr, tp_special(text[bos]));
            json_array_append_new(arr,
                                  json_pack("{s:{s:s, s:i}}", "Sequence", "id",
                                            s ? "B" : "A", "type_id", s));
            if (add_eos && eos >= 0)
                json_array_append_new(arr, tp_special(text[eos]));
        }
    }
    int32_t ids[2] = {add_bos ? bos : -1, add_eos ? eos : -1};
    for (int i = 0; i < 2; i++)
        if (ids[i] >= 0)
            json_object_set_new(specials, text[ids[i]],
                                json_pack("{s:s, s:[i], s:[s]}", "id",
                                          text[ids[i]], "ids", ids[i], "tokens",
                                          text[ids[i]]));
    return json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing",
                     "single", single, "pair", pair, "special_tokens",
                     specials);
oom:
    json_decref(single);
    json_decref(pair);
    json_decref(specials);
    return NULL;
}

/* Characters in s[0..len) (UTF-8 lead bytes). */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

int qd__hf_write_tokenizer(const qd_gguf_t *g, const char *outdir,
                           int32_t *n_unreachable)
{
    int32_t n_unreach = 0;
    const char *model;
    size_t mlen;
    qd_gguf_arr_t toks, scores, types;
    json_t *root = NULL, *vocab = NULL, *merges = NULL, *added = NULL,
           *cfg = NULL;
    const char **text = NULL;
    merge_t *mg = NULL;
    size_t n_mg = 0, cap_mg = 0;
    int rc = QD_ENOMEM;
    if (qd_gguf_get_str(g, KP "model", &model, &mlen) != 0) {
        qd_set_errmsg("tokenizer export: the model has no vocabulary");
        return QD_EUNSUPPORTED;
    }
    if (strcmp(model, "llama") != 0) {
        qd_set_errmsg("tokenizer export: vocabulary type '%s' is not "
                      "supported (only SentencePiece 'llama')",
                      model);
        return QD_EUNSUPPORTED;
    }
    if (qd_gguf_get_arr(g, KP "tokens", &toks) != 0 ||
        toks.elem_type != QD_GGUF_STRING || toks.n == 0 ||
        toks.n > (1u << 24)) {
        qd_set_errmsg("tokenizer export: bad %stokens", KP);
        return QD_EFORMAT;
    }
    int32_t n = (int32_t)toks.n;
    int has_scores =
        qd_gguf_get_arr(g, KP "scores", &scores) == 0 && scores.n == toks.n;
    int has_types =
        qd_gguf_get_arr(g, KP "token_type", &types) == 0 && types.n == toks.n;
    if (!(text = qd_calloc((size_t)n, sizeof *text)) ||
        !(root = json_object()) || !(vocab = json_object()) ||
        !(merges = json_array()) || !(added = json_array()))
        goto oom;
    int any_space = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *s = qd_gguf_arr_str(&toks, (uint64_t)i, &len);
        /* GGUF strings are not NUL-terminated: copy */
        char *c = s ? qd_strndup(s, len) : NULL;
        if (!c)
            goto oom;
        text[i] = c;
        if (strlen(c) != len || json_object_get(vocab, c)) {
            qd_set_errmsg("tokenizer export: token %d ('%.40s') is empty, has "
                          "a NUL or repeats an earlier token",
                          (int)i, c);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
        if (strchr(c, ' '))
            any_space = 1;
        if (json_object_set_new(vocab, c, json_integer(i))) {
            qd_set_errmsg("tokenizer export: token %d is not valid UTF-8",
                          (int)i);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
    }
    int32_t bos = opt_id(g, KP "bos_token_id", n),
            eos = opt_id(g, KP "eos_token_id", n),
            unk = opt_id(g, KP "unknown_token_id", n),
            pad = opt_id(g, KP "padding_token_id", n);
    int add_bos = opt_flag(g, KP "add_bos_token", 1),
        add_eos = opt_flag(g, KP "add_eos_token", 0),
        add_space = opt_flag(g, KP "add_space_prefix", 1);

    for (int32_t i = 0; i < n; i++) {
        int tt =
            has_types ? (int)qd_gguf_arr_i64(&types, (uint64_t)i) : TT_NORMAL;
        if (tt == TT_CONTROL || tt == TT_UNKNOWN || tt == TT_USER) {
            json_t *e = json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
                                  i, "content", text[i], "single_word", 0,
                                  "lstrip", 0, "rstrip", 0, "normalized",
                                  tt == TT_USER, "special", tt != TT_USER);
            if (!e || json_array_append_new(added, e))
                goto oom;
            continue;
        }
        if (tt != TT_NORMAL)
            continue;
        /* every split into two pieces of the vocabulary is a merge */
        const char *s = text[i];
        size_t len = strlen(s), n_split = 0;
        float sc = has_scores ? (float)qd_gguf_arr_f64(&scores, (uint64_t)i)
                              : -(float)i;
        char buf[1024];
        if (len >= sizeof buf)
            continue;
        memcpy(buf, s, len + 1);
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80)
                continue; /* not a character boundary */
            char save = buf[k];
            buf[k] = 0;
            json_t *l = json_object_get(vocab, buf);
            buf[k] = save;
            json_t *r = l ? json_object_get(vocab, buf + k) : NULL;
            if (!r)
                continue;
            if (n_mg == cap_mg) {
                size_t nc = cap_mg ? cap_mg * 2 : 1024;
                merge_t *p = qd_realloc(mg, nc * sizeof *p);
                if (!p)
                    goto oom;
                mg = p;
                cap_mg = nc;
            }
            mg[n_mg++] = (merge_t){sc, i, (int32_t)json_integer_value(l),
                                   (int32_t)json_integer_value(r)};
            n_split++;
        }
        /* more than one character but no split: SentencePiece can still
         * build it from characters that are not pieces, BPE cannot */
        if (n_split == 0 && utf8_chars(s, len) > 1)
            n_unreach++;
    }
    if (n_unreach)
        QD_WARN(MOD,
                "%d of %d pieces are not pairs of pieces (their "
                "characters are not in the vocabulary): BPE cannot form them "
                "and text containing them tokenizes differently from the GGUF",
                (int)n_unreach, (int)n);
    if (n_unreachable)
        *n_unreachable = n_unreach;
    qsort(mg, n_mg, sizeof *mg, merge_cmp);
    for (size_t j = 0; j < n_mg; j++) {
        json_t *e;
        if (any_space) {
            e = json_pack("[s, s]", text[mg[j].l], text[mg[j].r]);
        } else {
            size_t la = strlen(text[mg[j].l]), lb = strlen(text[mg[j].r]);
            char *m = qd_malloc(la + lb + 2);
            if (!m)
                goto oom;
            memcpy(m, text[mg[j].l], la);
            m[la] = ' ';
            memcpy(m + la + 1, text[mg[j].r], lb + 1);
            e = json_string(m);
            qd_free(m);
        }
        if (!e || json_array_append_new(merges, e))
            goto oom;
    }

    json_t *norm_list = json_array();
    if (!norm_list)
        goto oom;
    if (add_space)
        json_array_append_new(norm_list,
                              json_pack("{s:s, s:s}", "type", "Prepend",
                                        "prepend", "\xe2\x96\x81"));
    json_array_append_new(norm_list, json_pack("{s:s, s:{s:s}, s:s}", "type",
                                               "Replace", "pattern", "String",
                                               " ", "content", "\xe2\x96\x81"));
    json_t *decoder = json_pack(
        "{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}",
        "type", "Sequence", "decoders", "type", "Replace", "pattern", "String",
        "\xe2\x96\x81", "content", " ", "type", "ByteFallback", "type", "Fuse",
        "type", "Strip", "content", " ", "start", add_space ? 1 : 0, "stop", 0);
    json_t *pp = post_processor(text, bos, eos, add_bos, add_eos);
    json_t *bpe =
        json_pack("{s:s, s:n, s:s?, s:n, s:n, s:b, s:b, s:b, s:O, s:O}", "type",
                  "BPE", "dropout", "unk_token", unk >= 0 ? text[unk] : NULL,
                  "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                  1, "byte_fallback", 1, "ignore_merges", 0, "vocab", vocab,
                  "merges", merges);
    if (json_object_set_new(root, "version", json_string("1.0")) ||
        json_object_set_new(root, "truncation", json_null()) ||
        json_object_set_new(root, "padding", json_null()) ||
        json_object_set(root, "added_tokens", added) ||
        json_object_set_new(root, "normalizer",
                            json_pack("{s:s, s:o}", "type", "Sequence",
                                      "normalizers", norm_list)) ||
        json_object_set_new(root, "pre_tokenizer", json_null()) ||
        json_object_set_new(root, "post_processor", pp) ||
        json_object_set_new(root, "decoder", decoder) ||
        json_object_set_new(root, "model", bpe))
        goto oom;
    if ((rc = qd__json_dump(root, outdir, "tokenizer.json", "tokenizer export")))
        goto out;

    cfg = json_pack("{s:b, s:b, s:b, s:b, s:s}", "add_bos_token", add_bos,
                    "add_eos_token", add_eos, "clean_up_tokenization_spaces", 0,
                    "legacy", 1, "tokenizer_class", "LlamaTokenizer");
    if (!cfg)
        goto oom;
    const char *keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    int32_t ids[4] = {bos, eos, unk, pad};
    for (int i = 0; i < 4; i++)
        json_object_set_new(cfg, keys[i],
                            ids[i] >= 0 ? json_string(text[ids[i]])
                                        : json_null());
    const char *tpl;
    size_t tlen;
    if (qd_gguf_get_str(g, KP "chat_template", &tpl, &tlen) == 0)
        json_object_set_new(cfg, "chat_template", json_stringn(tpl, tlen));
    rc = qd__json_dump(cfg, outdir, "tokenizer_config.json", "tokenizer export");
    goto out;
oom:
    rc = QD_ENOMEM;
    qd_set_errmsg("tokenizer export: out of memory");
out:
    for (int32_t i = 0; text && i < n; i++)
        qd_free((void *)text[i]);
    qd_free(text);
    qd_free(mg);
    json_decref(root);
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    json_decref(cfg);
    return rc;
}
