/*
 * tokenizer.c — the tokenizer core: the vocabulary structure and its
 * builder (used by the GGUF and tokenizer.json loaders), special-token
 * partitioning of prompts, the encode dispatch, token pieces and the
 * streaming detokenizer. The algorithms live in tokenizer_spm.c (SPM),
 * tokenizer_bpe.c (pre-tokenizers + BPE) and tokenizer_wpm.c (WordPiece);
 * their behaviour follows llama.cpp's llama-vocab.cpp so that token ids are
 * identical for the same vocabulary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer_int.h"
#include "engine/unicode.h"
#include "quantd/common.h"

/* ---- small helpers ---------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

int qd__tokvec_push(qd__tokvec_t *tv, int32_t tok)
{
    if (tv->n == tv->cap) {
        size_t cap = tv->cap ? tv->cap * 2 : 64;
        int32_t *v = qd_realloc(tv->v, cap * sizeof(*v));
        if (!v)
            return QD_ENOMEM;
        tv->v = v;
        tv->cap = cap;
    }
    tv->v[tv->n++] = tok;
    return 0;
}

/* ---- builder ---------------------------------------------------------- */

int qd__tok_create(qd_vocab_kind_t kind, int64_t n_vocab, qd_tokenizer_t **out)
{
    *out = NULL;
    if (n_vocab <= 0) {
        qd_set_errmsg("tokenizer: empty vocabulary");
        return QD_EFORMAT;
    }
    if (n_vocab > (1 << 24)) {
        qd_set_errmsg("tokenizer: vocabulary of %lld tokens is too large",
                      (long long)n_vocab);
        return QD_ETOOBIG;
    }
    qd_tokenizer_t *t = qd_calloc(1, sizeof(*t));
    if (!t)
        return QD_ENOMEM;
    t->kind = kind;
    t->n_vocab = (int32_t)n_vocab;
    t->text = qd_calloc((size_t)n_vocab, sizeof(*t->text));
    t->len = qd_calloc((size_t)n_vocab, sizeof(*t->len));
    t->score = qd_calloc((size_t)n_vocab, sizeof(*t->score));
    t->attr = qd_calloc((size_t)n_vocab, sizeof(*t->attr));
    t->bos = t->eos = t->eot = t->eom = t->unk = t->pad = t->sep = -1;
    t->byte_encode = 1;
    if (!t->text || !t->len || !t->score || !t->attr) {
        qd_tokenizer_destroy(t);
        return QD_ENOMEM;
    }
    *out = t;
    return 0;
}

int qd__tok_set_token(qd_tokenizer_t *t, int32_t id, const char *text,
                      size_t len, float score, int attr)
{
    if (id < 0 || id >= t->n_vocab) {
        qd_set_errmsg("tokenizer: token id %d out of range [0, %d)", id,
                      t->n_vocab);
        return QD_ERANGE;
    }
    if (len > (1u << 20)) {
        qd_set_errmsg("tokenizer: token %d is %zu bytes long", id, len);
        return QD_EFORMAT;
    }
    char *s = qd_malloc(len + 1);
    if (!s)
        return QD_ENOMEM;
    memcpy(s, text, len);
    s[len] = 0;
    qd_free(t->text[id]);
    t->text[id] = s;
    t->len[id] = (uint32_t)len;
    t->score[id] = score;
    t->attr[id] = (uint8_t)attr;
    return 0;
}

int qd__tok_attr_from_type(int64_t type)
{
    switch (type) {
    case 1: return QD_TATTR_NORMAL;
    case 2: return QD_TATTR_UNKNOWN;
    case 3: return QD_TATTR_CONTROL;
    case 4: return QD_TATTR_USER_DEFINED;
    case 5: return QD_TATTR_UNUSED;
    case 6: return QD_TATTR_BYTE;
    default: return QD_TATTR_UNDEFINED;
    }
}

int32_t qd__tok_find(const qd_tokenizer_t *t, const char *s, size_t len)
{
    if (!t->tmap)
        return -1;
    size_t mask = t->tmap_cap - 1;
    for (size_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->tmap[i];
        if (id < 0)
            return -1;
        if (t->len[id] == len && !memcmp(t->text[id], s, len))
            return id;
    }
}

int qd__tok_index(qd_tokenizer_t *t)
{
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2)
        cap *= 2;
    t->tmap = qd_malloc(cap * sizeof(*t->tmap));
    if (!t->tmap)
        return QD_ENOMEM;
    memset(t->tmap, 0xff, cap * sizeof(*t->tmap));
    t->tmap_cap = cap;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->text[id]) {
            qd_set_errmsg("tokenizer: token id %d has no text", id);
            return QD_EFORMAT;
        }
        if (t->len[id] > t->max_len)
            t->max_len = t->len[id];
        size_t i = hash_bytes(t->text[id], t->len[id]) & (cap - 1);
        for (;; i = (i + 1) & (cap - 1)) {
            int32_t o = t->tmap[i];
            if (o < 0)
                break;
            if (t->len[o] == t->len[id] &&
                !memcmp(t->text[o], t->text[id], t->len[id])) {
                qd_set_errmsg("tokenizer: duplicate token '%.64s' (ids %d "
                              "and %d)", t->text[id], o, id);
                return QD_EFORMAT;
            }
        }
        t->tmap[i] = id;
    }
    return 0;
}

static int merges_grow(qd_tokenizer_t *t)
{
    size_t cap = t->merges_cap ? t->merges_cap * 2 : 1024;
    struct qd_merge *m = qd_malloc(cap * sizeof(*m));
    if (!m)
        return QD_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        m[i].key = UINT64_MAX;
    for (size_t i = 0; i < t->merges_cap; i++) {
        if (t->merges[i].key == UINT64_MAX)
            continue;
        size_t j = hash_u64(t->merges[i].key) & (cap - 1);
        while (m[j].key != UINT64_MAX)
            j = (j + 1) & (cap - 1);
        m[j] = t->merges[i];
    }
    qd_free(t->merges);
    t->merges = m;
    t->merges_cap = cap;
    return 0;
}

int qd__tok_add_merge(qd_tokenizer_t *t, const char *a, size_t alen,
                      const char *b, size_t blen, int32_t rank,
                      const char *where)
{
    int32_t l = qd__tok_find(t, a, alen), r = qd__tok_find(t, b, blen);
    if (l < 0 || r < 0) {
        qd_set_errmsg("%s: merge %d names unknown token '%.*s'", where, rank,
                      (int)(l < 0 ? QD_MIN(alen, 64) : QD_MIN(blen, 64)),
                      l < 0 ? a : b);
        return QD_EFORMAT;
    }
    if ((t->n_merges + 1) * 2 > t->merges_cap) {
        int rc = merges_grow(t);
        if (rc)
            return rc;
    }
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t mask = t->merges_cap - 1;
    size_t j = hash_u64(key) & mask;
    for (; t->merges[j].key != UINT64_MAX; j = (j + 1) & mask)
        if (t->merges[j].key == key)
            return 0; /* the first (lowest) rank of a pair wins */
    int32_t res = -1;
    if (alen + blen <= t->max_len) {
        char buf[512];
        char *cat = alen + blen <= sizeof(buf) ? buf : qd_malloc(alen + blen);
        if (!cat)
            return QD_ENOMEM;
        memcpy(cat, a, alen);
        memcpy(cat + alen, b, blen);
        res = qd__tok_find(t, cat, alen + blen);
        if (cat != buf)
            qd_free(cat);
    }
    t->merges[j].key = key;
    t->merges[j].rank = rank;
    t->merges[j].result = res;
    t->n_merges++;
    return 0;
}

const struct qd_merge *qd__tok_merge(const qd_tokenizer_t *t, int32_t left,
                                     int32_t right)
{
    if (!t->merges_cap || left < 0 || right < 0)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t mask = t->merges_cap - 1;
    for (size_t j = hash_u64(key) & mask; t->merges[j].key != UINT64_MAX;
         j = (j + 1) & mask)
        if (t->merges[j].key == key)
            return &t->merges[j];
    return NULL;
}

/* tokenizer.ggml.pre names → pre-tokenizer stages (the regex lists of
 * llama.cpp's llm_tokenizer_bpe, each hand-coded in tokenizer_bpe.c). */
static const struct {
    const char *names;
    int ignore_merges, add_bos;
    qd_pre_stage_t stages[QD_PRE_MAX_STAGES];
} pre_table[] = {
    {"|default|", 0, 0,
     {QD_PRE_PUNCT, QD_PRE_GPT2, QD_PRE_DIGITS, QD_PRE_DIGITS3}},
    {"|llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|",
     1, 1, {QD_PRE_LLAMA3}},
    {"|dbrx|smaug-bpe|chatglm-bpe|glm4|", 0, 0, {QD_PRE_LLAMA3}},
    {"|qwen2|deepseek-r1-qwen|stablelm2|hunyuan|", 0, 0, {QD_PRE_QWEN2}},
    {"|deepseek-llm|", 0, 0,
     {QD_PRE_NEWLINE1, QD_PRE_DSLLM_LETTERS, QD_PRE_DSLLM_PUNCT,
      QD_PRE_TRAILING_WS, QD_PRE_CJK, QD_PRE_DIGITS}},
    {"|deepseek-coder|", 0, 0,
     {QD_PRE_NEWLINE1, QD_PRE_WS_LETTERS, QD_PRE_WS_PUNCT, QD_PRE_CJK,
      QD_PRE_DIGIT1}},
    {"|falcon|", 0, 0, {QD_PRE_PUNCT_FALCON, QD_PRE_GPT2, QD_PRE_DIGITS3}},
    {"|starcoder|refact|command-r|smollm|codeshell|exaone|minerva|", 0, 0,
     {QD_PRE_DIGIT1, QD_PRE_GPT2}},
    {"|gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|mpt|olmo|"
     "jais|trillion|jina-v1-en|jina-v2-code|roberta-bpe|mellum|modern-bert|",
     0, 0, {QD_PRE_GPT2}},
};

int qd__tok_set_pre(qd_tokenizer_t *t, const char *pre)
{
    if (!pre || !*pre)
        pre = "default";
    size_t n = strlen(pre);
    for (size_t i = 0; i < QD_ARRAY_SIZE(pre_table); i++) {
        const char *s = pre_table[i].names;
        for (const char *p = strstr(s, pre); p; p = strstr(p + 1, pre)) {
            if (p[-1] != '|' || p[n] != '|')
                continue;
            t->n_pre = 0;
            for (int k = 0; k < QD_PRE_MAX_STAGES && pre_table[i].stages[k];
                 k++)
                t->pre[t->n_pre++] = pre_table[i].stages[k];
            t->ignore_merges = pre_table[i].ignore_merges;
            t->add_bos = pre_table[i].add_bos;
            return 0;
        }
    }
    qd_set_errmsg("tokenizer.ggml.pre: unknown pre-tokenizer '%.64s'", pre);
    return QD_EUNSUPPORTED;
}

/* Bytes of token id as it appears in text, special tokens as their text.
 * Writes into buf (t->len[id] * 4 + 4 bytes suffice). */
static size_t make_piece(const qd_tokenizer_t *t, int32_t id, char *buf)
{
    const char *s = t->text[id];
    size_t n = t->len[id], o = 0;
    int a = t->attr[id];
    if (a & (QD_TATTR_CONTROL | QD_TATTR_UNKNOWN | QD_TATTR_USER_DEFINED)) {
        memcpy(buf, s, n);
        return n;
    }
    if (a & QD_TATTR_NORMAL) {
        if (t->kind == QD_VOCAB_BPE && t->byte_encode) {
            for (size_t i = 0; i < n;) {
                size_t k;
                uint32_t cp = qd__utf8_decode(s + i, n - i, &k);
                int b = qd__cpt_to_byte(cp);
                if (b >= 0)
                    buf[o++] = (char)b;
                else
                    o += (size_t)qd__utf8_encode(cp, buf + o);
                i += k;
            }
            return o;
        }
        for (size_t i = 0; i < n;) { /* U+2581 → ' ' */
            if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                buf[o++] = ' ';
                i += 3;
            } else
                buf[o++] = s[i++];
        }
        return o;
    }
    if (a & QD_TATTR_BYTE) {
        unsigned v;
        char tail;
        if (n == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>') {
            buf[0] = (char)v;
            return 1;
        }
        memcpy(buf, s, n);
        return n;
    }
    return 0; /* unused / undefined: rendered as nothing, like llama.cpp */
}

static int add_eog(qd_tokenizer_t *t, int32_t id)
{
    if (id < 0)
        return 0;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return 0;
    int32_t *e = qd_realloc(t->eog, (size_t)(t->n_eog + 1) * sizeof(*e));
    if (!e)
        return QD_ENOMEM;
    t->eog = e;
    t->eog[t->n_eog++] = id;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int qd__tok_finish(qd_tokenizer_t *t)
{
    int rc;
    int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom,
                      &t->unk, &t->pad, &t->sep};
    for (size_t i = 0; i < QD_ARRAY_SIZE(ids); i++)
        if (*ids[i] >= t->n_vocab)
            *ids[i] = -1; /* checked by the loaders; defaults may not fit */
    if (t->add_bos && t->bos < 0)
        t->add_bos = 0;
    if (t->add_eos && t->eos < 0)
        t->add_eos = 0;

    /* End-of-generation: the declared ids plus well-known texts. */
    static const char *const eot_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
        "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
        "<end_of_utterance>"};
    if (t->eot < 0)
        for (size_t i = 0; i < QD_ARRAY_SIZE(eot_texts) && t->eot < 0; i++)
            t->eot = qd__tok_find(t, eot_texts[i], strlen(eot_texts[i]));
    if (t->eom < 0)
        t->eom = qd__tok_find(t, "<|eom_id|>", 10);
    for (size_t i = 0; i < QD_ARRAY_SIZE(eot_texts); i++) {
        int32_t id = qd__tok_find(t, eot_texts[i], strlen(eot_texts[i]));
        if (id >= 0 && (t->attr[id] & (QD_TATTR_CONTROL | QD_TATTR_USER_DEFINED |
                                       QD_TATTR_UNKNOWN)) &&
            (rc = add_eog(t, id)))
            return rc;
    }
    if ((rc = add_eog(t, t->eos)) || (rc = add_eog(t, t->eot)) ||
        (rc = add_eog(t, t->eom)))
        return rc;

    /* Tokens matched in the raw text before the model's algorithm runs. */
    int n_sp = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n_sp += !!(t->attr[id] & (QD_TATTR_CONTROL | QD_TATTR_USER_DEFINED |
                                  QD_TATTR_UNKNOWN));
    /* order: longest text first, then lowest id; sorted as packed keys */
    uint64_t *keys = qd_malloc((size_t)(n_sp ? n_sp : 1) * sizeof(*keys));
    t->special = qd_malloc((size_t)(n_sp ? n_sp : 1) * sizeof(int32_t));
    if (!keys || !t->special) {
        qd_free(keys);
        return QD_ENOMEM;
    }
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->attr[id] & (QD_TATTR_CONTROL | QD_TATTR_USER_DEFINED |
                            QD_TATTR_UNKNOWN)) && t->len[id] > 0)
            keys[t->n_special++] =
                ((uint64_t)(UINT32_MAX - t->len[id]) << 32) | (uint32_t)id;
    qsort(keys, (size_t)t->n_special, sizeof(*keys), cmp_u64);
    for (int i = 0; i < t->n_special; i++)
        t->special[i] = (int32_t)(uint32_t)keys[i];
    qd_free(keys);

    /* Piece cache. */
    t->piece = qd_calloc((size_t)t->n_vocab, sizeof(*t->piece));
    t->piece_len = qd_calloc((size_t)t->n_vocab, sizeof(*t->piece_len));
    char *buf = qd_malloc((size_t)t->max_len * 4 + 8);
    if (!t->piece || !t->piece_len || !buf) {
        qd_free(buf);
        return QD_ENOMEM;
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = make_piece(t, id, buf);
        t->piece[id] = qd_strndup(buf, n);
        if (!t->piece[id]) {
            qd_free(buf);
            return QD_ENOMEM;
        }
        t->piece_len[id] = (uint32_t)n;
        if (n > t->max_piece)
            t->max_piece = (uint32_t)n;
    }
    qd_free(buf);
    return 0;
}

void qd_tokenizer_destroy(qd_tokenizer_t *t)
{
    if (!t)
        return;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->text)
            qd_free(t->text[i]);
        if (t->piece)
            qd_free(t->piece[i]);
    }
    qd_free(t->text);
    qd_free(t->len);
    qd_free(t->score);
    qd_free(t->attr);
    qd_free(t->tmap);
    qd_free(t->merges);
    qd_free(t->eog);
    qd_free(t->special);
    qd_free(t->chat_template);
    qd_free(t->piece);
    qd_free(t->piece_len);
    qd_free(t);
}

/* ---- accessors -------------------------------------------------------- */

int32_t qd_tokenizer_n_vocab(const qd_tokenizer_t *t) { return t->n_vocab; }
int32_t qd_tokenizer_bos(const qd_tokenizer_t *t) { return t->bos; }
int32_t qd_tokenizer_eos(const qd_tokenizer_t *t) { return t->eos; }
int32_t qd_tokenizer_eot(const qd_tokenizer_t *t) { return t->eot; }
int qd_tokenizer_add_bos(const qd_tokenizer_t *t) { return t->add_bos; }

int qd_tokenizer_is_eog(const qd_tokenizer_t *t, int32_t tok)
{
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == tok)
            return 1;
    return 0;
}

const char *qd_tokenizer_chat_template(const qd_tokenizer_t *t)
{
    return t->chat_template;
}

const char *qd_tokenizer_token_text(const qd_tokenizer_t *t, int32_t tok)
{
    if (tok < 0 || tok >= t->n_vocab)
        return NULL;
    return t->text[tok];
}

/* ---- encode ----------------------------------------------------------- */

typedef struct {
    int32_t tok; /* -1: raw text [off, off + len) */
    size_t off, len;
} fragment_t;

typedef struct {
    fragment_t *v;
    size_t n, cap;
} fragvec_t;

static int frag_push(fragvec_t *f, int32_t tok, size_t off, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        fragment_t *v = qd_realloc(f->v, cap * sizeof(*v));
        if (!v)
            return QD_ENOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (fragment_t){tok, off, len};
    return 0;
}

static int is_c_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Split the text around special-token texts: each special token in turn
 * (longest first) is cut out of every remaining raw fragment. Control and
 * unknown tokens only when parse_special; user-defined ones always (as the
 * Hugging Face tokenizers and llama.cpp do). */
static int partition(const qd_tokenizer_t *t, const char *text, size_t len,
                     int parse_special, fragvec_t *out)
{
    fragvec_t a = {0}, b = {0};
    int rc = 0;
    if (len && (rc = frag_push(&a, -1, 0, len)))
        goto out;
    for (int s = 0; s < t->n_special; s++) {
        int32_t id = t->special[s];
        int at = t->attr[id];
        if (!parse_special && (at & (QD_TATTR_CONTROL | QD_TATTR_UNKNOWN)))
            continue;
        const char *needle = t->text[id];
        size_t nl = t->len[id];
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            fragment_t f = a.v[i];
            if (f.tok >= 0 || f.len < nl) {
                if ((rc = frag_push(&b, f.tok, f.off, f.len)))
                    goto out;
                continue;
            }
            size_t off = f.off, end = f.off + f.len;
            for (;;) {
                const char *m = memmem(text + off, end - off, needle, nl);
                if (!m)
                    break;
                size_t mpos = (size_t)(m - text), llen = mpos - off;
                if (at & QD_TATTR_LSTRIP)
                    while (llen && is_c_space(text[off + llen - 1]))
                        llen--;
                if (llen && (rc = frag_push(&b, -1, off, llen)))
                    goto out;
                if ((rc = frag_push(&b, id, 0, 0)))
                    goto out;
                off = mpos + nl;
                if (at & QD_TATTR_RSTRIP)
                    while (off < end && is_c_space(text[off]))
                        off++;
            }
            if (off < end && (rc = frag_push(&b, -1, off, end - off)))
                goto out;
        }
        fragvec_t tmp = a;
        a = b;
        b = tmp;
    }
    *out = a;
    a.v = NULL;
out:
    qd_free(a.v);
    qd_free(b.v);
    return rc;
}

int qd_tokenize(const qd_tokenizer_t *t, const char *text, size_t len,
                int add_special, int parse_special, int32_t *toks, int cap)
{
    if (!t || (!text && len) || cap < 0 || (!toks && cap > 0)) {
        qd_set_errmsg("qd_tokenize: invalid arguments");
        return QD_EINVAL;
    }
    fragvec_t fr = {0};
    qd__tokvec_t out = {0};
    int rc = partition(t, text, len, parse_special, &fr);
    if (rc)
        goto done;
    if (add_special && t->add_bos && (rc = qd__tokvec_push(&out, t->bos)))
        goto done;
    int prev_special = 1;
    for (size_t i = 0; i < fr.n; i++) {
        fragment_t f = fr.v[i];
        if (f.tok >= 0) {
            rc = qd__tokvec_push(&out, f.tok);
            prev_special = 1;
        } else if (t->kind == QD_VOCAB_SPM) {
            rc = qd__spm_encode(t, text + f.off, f.len,
                                t->add_space_prefix && prev_special, &out);
            prev_special = 0;
        } else if (t->kind == QD_VOCAB_BPE) {
            rc = qd__bpe_encode(t, text + f.off, f.len,
                                t->escape_ws && t->add_space_prefix &&
                                    prev_special,
                                &out);
            prev_special = 0;
        } else {
            rc = qd__wpm_encode(t, text + f.off, f.len, &out);
        }
        if (rc)
            goto done;
    }
    if (add_special && t->kind == QD_VOCAB_WPM && t->sep >= 0 &&
        (rc = qd__tokvec_push(&out, t->sep)))
        goto done;
    if (add_special && t->add_eos && (rc = qd__tokvec_push(&out, t->eos)))
        goto done;
    if (out.n > (size_t)INT32_MAX) {
        qd_set_errmsg("qd_tokenize: %zu tokens", out.n);
        rc = QD_ETOOBIG;
        goto done;
    }
    if (out.n && cap)
        memcpy(toks, out.v, QD_MIN(out.n, (size_t)cap) * sizeof(int32_t));
    rc = (int)out.n;
done:
    if (rc == QD_ENOMEM)
        qd_set_errmsg("qd_tokenize: out of memory");
    qd_free(fr.v);
    qd_free(out.v);
    return rc;
}

/* ---- decode ----------------------------------------------------------- */

int qd_token_to_piece(const qd_tokenizer_t *t, int32_t tok, char *buf,
                      int cap, int render_special)
{
    if (tok < 0 || tok >= t->n_vocab) {
        qd_set_errmsg("qd_token_to_piece: token %d out of range [0, %d)", tok,
                      t->n_vocab);
        return QD_ERANGE;
    }
    if (!render_special &&
        (t->attr[tok] & (QD_TATTR_CONTROL | QD_TATTR_UNKNOWN)))
        return 0;
    uint32_t n = t->piece_len[tok];
    if (cap > 0)
        memcpy(buf, t->piece[tok], QD_MIN(n, (uint32_t)cap));
    return (int)n;
}

void qd_detok_init(qd_detok_t *d, const qd_tokenizer_t *t)
{
    memset(d, 0, sizeof(*d));
    d->first = 1;
    d->strip_space = (t->kind == QD_VOCAB_SPM ||
                      (t->kind == QD_VOCAB_BPE && t->escape_ws)) &&
                     t->add_space_prefix;
}

/* Append to out the UTF-8 of src[0..n), each invalid byte replaced by
 * U+FFFD; unless final, a valid but truncated sequence at the end is not
 * emitted and its length is returned in *rest. */
static size_t emit_utf8(const char *src, size_t n, char *out, size_t *rest,
                        int final)
{
    size_t o = 0, i = 0;
    *rest = 0;
    while (i < n) {
        size_t v = qd__utf8_valid_prefix(src + i, n - i);
        memcpy(out + o, src + i, v);
        o += v;
        i += v;
        if (i >= n)
            break;
        int k = qd__utf8_check(src + i, n - i);
        if (k < 0 && !final) {
            *rest = n - i;
            break;
        }
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i = k < 0 ? n : i + 1;
    }
    return o;
}

int qd_detok_push(qd_detok_t *d, const qd_tokenizer_t *t, int32_t tok,
                  char *out, int cap)
{
    if (tok < 0 || tok >= t->n_vocab) {
        qd_set_errmsg("qd_detok_push: token %d out of range [0, %d)", tok,
                      t->n_vocab);
        return QD_ERANGE;
    }
    if (cap < 0 || (cap > 0 && !out))
        return QD_EINVAL;
    const char *p = t->piece[tok];
    size_t n = t->piece_len[tok];
    if (t->attr[tok] & (QD_TATTR_CONTROL | QD_TATTR_UNKNOWN))
        n = 0;
    if (n && d->first) {
        if (d->strip_space && p[0] == ' ') {
            p++;
            n--;
        }
        d->first = 0;
    }
    if (!n)
        return 0;
    size_t np = (size_t)d->n_pending, total = np + n;
    char stackbuf[256], dstbuf[768];
    char *src = total <= sizeof(stackbuf) ? stackbuf : qd_malloc(total);
    char *dst = total * 3 <= sizeof(dstbuf) ? dstbuf : qd_malloc(total * 3);
    int rc;
    if (!src || !dst) {
        rc = QD_ENOMEM;
        goto done;
    }
    memcpy(src, d->pending, np);
    memcpy(src + np, p, n);
    size_t rest;
    size_t o = emit_utf8(src, total, dst, &rest, 0);
    if (o > (size_t)cap) {
        qd_set_errmsg("qd_detok_push: %zu bytes do not fit in %d", o, cap);
        rc = QD_EFULL;
        goto done;
    }
    if (o)
        memcpy(out, dst, o);
    memcpy(d->pending, src + total - rest, rest);
    d->n_pending = (int)rest;
    rc = (int)o;
done:
    if (src != stackbuf)
        qd_free(src);
    if (dst != dstbuf)
        qd_free(dst);
    return rc;
}

int qd_detok_flush(qd_detok_t *d, char *out, int cap)
{
    char dst[32];
    size_t rest;
    size_t o = emit_utf8(d->pending, (size_t)d->n_pending, dst, &rest, 1);
    if (o > (size_t)(cap < 0 ? 0 : cap))
        return QD_EFULL;
    if (o)
        memcpy(out, dst, o);
    d->n_pending = 0;
    return (int)o;
}

/* ---- merge queue shared by BPE and SPM -------------------------------- */

static int bigram_before(const qd__bigram_t *x, const qd__bigram_t *y)
{
    if (x->prio != y->prio)
        return x->prio > y->prio;
    return x->left < y->left;
}

int qd__bigram_push(qd__bigram_heap_t *h, qd__bigram_t b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        qd__bigram_t *v = qd_realloc(h->v, cap * sizeof(*v));
        if (!v)
            return QD_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return 0;
}

qd__bigram_t qd__bigram_pop(qd__bigram_heap_t *h)
{
    qd__bigram_t top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!bigram_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}
