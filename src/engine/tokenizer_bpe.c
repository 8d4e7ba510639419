/*
 * tokenizer_bpe.c — byte-level BPE ("gpt2" vocabularies): pre-tokenizer,
 * then merges by rank inside each piece.
 *
 * Pre-tokenizers are regular expressions in the model files. We do not
 * carry a regex engine: each known expression is a hand-written matcher
 * over code points and their Unicode category (unicode.h). A pre-tokenizer
 * is a list of stages; every stage splits each chunk left by the previous
 * stage into its matches and the unmatched text between them (the
 * semantics of llama.cpp's unicode_regex_split), so the same vocabulary
 * gives the same ids as llama.cpp. Notes on the finer points:
 *  - \s is the White_Space property; \p{L} etc. are general categories.
 *  - Stages written with literal non-ASCII classes (deepseek) see every
 *    non-ASCII White_Space character as U+000B, so those never match a
 *    literal class (llama.cpp feeds std::wregex that way).
 *  - Invalid UTF-8 bytes are U+FFFD (one per byte).
 * Each piece is then spelled in the GPT-2 byte alphabet and merged: the
 * adjacent pair with the lowest merge rank first (ties: leftmost).
 */
#include <string.h>

#include "engine/tokenizer_int.h"
#include "engine/unicode.h"
#include "quantd/common.h"

#define WS QD_UCAT_WHITESPACE
#define LET QD_UCAT_LETTER
#define NUM QD_UCAT_NUMBER

typedef struct {
    const uint32_t *cp;
    const uint16_t *fl;
} pctx_t;

static inline unsigned F(const pctx_t *c, size_t p, size_t end)
{
    return p < end ? c->fl[p] : 0;
}

static inline uint32_t CP(const pctx_t *c, size_t p, size_t end)
{
    return p < end ? c->cp[p] : 0xFFFFFFFFu;
}

static inline uint32_t lower_ascii(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d, case-folded if fold; returns length or 0 */
static size_t contraction(const pctx_t *c, size_t pos, size_t end, int fold)
{
    if (c->cp[pos] != '\'' || pos + 1 >= end)
        return 0;
    uint32_t a = c->cp[pos + 1];
    if (fold)
        a = lower_ascii(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 >= end)
        return 0;
    uint32_t b = c->cp[pos + 2];
    if (fold)
        b = lower_ascii(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
        (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* Whitespace tail shared by the GPT-2 and Llama-3 expressions:
 * [\s*[\r\n]+ |] \s+(?!\S) | \s+ — or one code point when nothing matches */
static size_t ws_tail(const pctx_t *c, size_t pos, size_t end, int newlines)
{
    size_t n = 0, last_nl = 0;
    while (F(c, pos + n, end) & WS) {
        uint32_t x = c->cp[pos + n];
        if (x == '\r' || x == '\n')
            last_nl = n + 1;
        n++;
    }
    if (newlines && last_nl)
        return last_nl;
    if (n > 1 && pos + n < end)
        return n - 1;
    return n ? n : 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t m_gpt2(const pctx_t *c, size_t pos, size_t end)
{
    size_t k = contraction(c, pos, end, 0);
    if (k)
        return k;
    uint32_t cp = c->cp[pos];
    size_t p = pos + (cp == ' ');
    unsigned f2 = cp == ' ' ? F(c, pos + 1, end) : c->fl[pos];
    if (f2 & LET) {
        while (F(c, p, end) & LET)
            p++;
        return p - pos;
    }
    if (f2 & NUM) {
        while (F(c, p, end) & NUM)
            p++;
        return p - pos;
    }
    if (!(f2 & (WS | LET | NUM)) && f2) {
        unsigned f;
        while (!((f = F(c, p, end)) & (WS | LET | NUM)) && f)
            p++;
        return p - pos;
    }
    return ws_tail(c, pos, end, 0);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (D = 3 or 1) */
static size_t m_llama3_n(const pctx_t *c, size_t pos, size_t end,
                         size_t max_digits)
{
    size_t k = contraction(c, pos, end, 1);
    if (k)
        return k;
    uint32_t cp = c->cp[pos];
    unsigned f = c->fl[pos];
    if (!(cp == '\r' || cp == '\n' || (f & NUM)) &&
        ((f & LET) || (F(c, pos + 1, end) & LET))) {
        size_t p = pos + 1;
        while (F(c, p, end) & LET)
            p++;
        return p - pos;
    }
    if (f & NUM) {
        size_t p = pos;
        while (p - pos < max_digits && (F(c, p, end) & NUM))
            p++;
        return p - pos;
    }
    unsigned f2 = cp == ' ' ? F(c, pos + 1, end) : f;
    if (!(f2 & (WS | LET | NUM)) && f) {
        size_t p = pos + (cp == ' ');
        unsigned g;
        while (!((g = F(c, p, end)) & (WS | LET | NUM)) && g)
            p++;
        for (uint32_t x = CP(c, p, end); x == '\r' || x == '\n';
             x = CP(c, ++p, end))
            ;
        return p - pos;
    }
    return ws_tail(c, pos, end, 1);
}

static size_t m_llama3(const pctx_t *c, size_t pos, size_t end)
{
    return m_llama3_n(c, pos, end, 3);
}

static size_t m_qwen2(const pctx_t *c, size_t pos, size_t end)
{
    return m_llama3_n(c, pos, end, 1);
}

static int is_punct_extra(uint32_t cp, int backtick)
{
    return cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' ||
           cp == '^' || cp == '~' || cp == '|' || (backtick && cp == '`');
}

/* [\p{P}\$\+<=>\^~\|]+ (falcon adds `) */
static size_t punct_run(const pctx_t *c, size_t pos, size_t end, int bt)
{
    size_t p = pos;
    while (p < end && ((c->fl[p] & QD_UCAT_PUNCT) || is_punct_extra(c->cp[p], bt)))
        p++;
    return p - pos;
}

static size_t m_punct(const pctx_t *c, size_t pos, size_t end)
{
    return punct_run(c, pos, end, 0);
}

static size_t m_punct_falcon(const pctx_t *c, size_t pos, size_t end)
{
    return punct_run(c, pos, end, 1);
}

static size_t m_digits(const pctx_t *c, size_t pos, size_t end)
{
    size_t p = pos;
    while (p < end && (c->fl[p] & NUM))
        p++;
    return p - pos;
}

static size_t m_digit1(const pctx_t *c, size_t pos, size_t end)
{
    (void)end;
    return (c->fl[pos] & NUM) ? 1 : 0;
}

static size_t m_digits3(const pctx_t *c, size_t pos, size_t end)
{
    if (end - pos < 3)
        return 0;
    for (size_t i = 0; i < 3; i++)
        if (c->cp[pos + i] < '0' || c->cp[pos + i] > '9')
            return 0;
    return 3;
}

static size_t m_newline1(const pctx_t *c, size_t pos, size_t end)
{
    (void)end;
    return (c->cp[pos] == '\r' || c->cp[pos] == '\n') ? 1 : 0;
}

/* Code point as the literal-class stages see it (non-ASCII \s → U+000B). */
static inline uint32_t wcp(const pctx_t *c, size_t p)
{
    uint32_t x = c->cp[p];
    return (x > 0x7F && (c->fl[p] & WS)) ? 0x0B : x;
}

typedef struct {
    uint32_t lo, hi;
} range_t;

static int in_ranges(uint32_t x, const range_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x >= r[i].lo && x <= r[i].hi)
            return 1;
    return 0;
}

/* The letter class of DeepSeek-LLM's pre-tokenizer expression. */
static const range_t dsllm_letters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6},
    {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF}, {0x1C4, 0x293},
    {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F},
    {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
    {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F},
    {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D},
    {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E},
    {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
    {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static const range_t dsllm_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
    {0x2018, 0x201F}, {0x3000, 0x3002},
};

static const range_t cjk[] = {
    {0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF},
};

static inline int wspace(const pctx_t *c, size_t p, size_t end)
{
    return p < end && (c->fl[p] & WS);
}

/* \s?[CLASS]+ over literal ranges */
static size_t ws_opt_class(const pctx_t *c, size_t pos, size_t end,
                           const range_t *r, size_t nr)
{
    size_t p = pos;
    if (wspace(c, p, end) && p + 1 < end && in_ranges(wcp(c, p + 1), r, nr))
        p++;
    size_t q = p;
    while (q < end && in_ranges(wcp(c, q), r, nr))
        q++;
    return q > p ? q - pos : 0;
}

static size_t m_dsllm_letters(const pctx_t *c, size_t pos, size_t end)
{
    return ws_opt_class(c, pos, end, dsllm_letters,
                        QD_ARRAY_SIZE(dsllm_letters));
}

static size_t m_dsllm_punct(const pctx_t *c, size_t pos, size_t end)
{
    return ws_opt_class(c, pos, end, dsllm_punct, QD_ARRAY_SIZE(dsllm_punct));
}

/* \s+$ */
static size_t m_trailing_ws(const pctx_t *c, size_t pos, size_t end)
{
    for (size_t p = pos; p < end; p++)
        if (!(c->fl[p] & WS))
            return 0;
    return end - pos;
}

static size_t m_cjk(const pctx_t *c, size_t pos, size_t end)
{
    size_t p = pos;
    while (p < end && in_ranges(wcp(c, p), cjk, QD_ARRAY_SIZE(cjk)))
        p++;
    return p - pos;
}

/* \s?\p{X}+ over a category bit */
static size_t ws_opt_cat(const pctx_t *c, size_t pos, size_t end, unsigned bit)
{
    size_t p = pos;
    if (wspace(c, p, end) && (F(c, p + 1, end) & bit))
        p++;
    size_t q = p;
    while (q < end && (c->fl[q] & bit))
        q++;
    return q > p ? q - pos : 0;
}

static size_t m_ws_letters(const pctx_t *c, size_t pos, size_t end)
{
    return ws_opt_cat(c, pos, end, LET);
}

static size_t m_ws_punct(const pctx_t *c, size_t pos, size_t end)
{
    return ws_opt_cat(c, pos, end, QD_UCAT_PUNCT);
}

typedef size_t (*matcher_t)(const pctx_t *c, size_t pos, size_t end);

static matcher_t stage_matcher(qd_pre_stage_t s)
{
    switch (s) {
    case QD_PRE_GPT2: return m_gpt2;
    case QD_PRE_LLAMA3: return m_llama3;
    case QD_PRE_QWEN2: return m_qwen2;
    case QD_PRE_PUNCT: return m_punct;
    case QD_PRE_PUNCT_FALCON: return m_punct_falcon;
    case QD_PRE_DIGITS: return m_digits;
    case QD_PRE_DIGIT1: return m_digit1;
    case QD_PRE_DIGITS3: return m_digits3;
    case QD_PRE_NEWLINE1: return m_newline1;
    case QD_PRE_DSLLM_LETTERS: return m_dsllm_letters;
    case QD_PRE_DSLLM_PUNCT: return m_dsllm_punct;
    case QD_PRE_TRAILING_WS: return m_trailing_ws;
    case QD_PRE_CJK: return m_cjk;
    case QD_PRE_WS_LETTERS: return m_ws_letters;
    case QD_PRE_WS_PUNCT: return m_ws_punct;
    }
    return NULL;
}

/* Split every chunk (lengths in[0..n_in)) into matches and gaps. out must
 * hold as many entries as there are code points. */
static size_t split_stage(const pctx_t *c, matcher_t m, const size_t *in,
                          size_t n_in, size_t *out)
{
    size_t n_out = 0, start = 0;
    for (size_t i = 0; i < n_in; i++) {
        size_t end = start + in[i], pos = start, gap = start;
        while (pos < end) {
            size_t k = m(c, pos, end);
            if (!k) {
                pos++;
                continue;
            }
            if (pos > gap)
                out[n_out++] = pos - gap;
            out[n_out++] = k;
            pos += k;
            gap = pos;
        }
        if (gap < end)
            out[n_out++] = end - gap;
        start = end;
    }
    return n_out;
}

/* ---- merges ----------------------------------------------------------- */

typedef struct {
    int prev, next;
    size_t off, n;
    int32_t id;
} sym_t;


typedef struct {
    sym_t *sy;
    size_t sy_cap;
    qd__bigram_heap_t h;
} work_t;

static int add_bigram(const qd_tokenizer_t *t, work_t *w, int l, int r)
{
    if (l < 0 || r < 0)
        return 0;
    const struct qd_merge *m = qd__tok_merge(t, w->sy[l].id, w->sy[r].id);
    if (!m)
        return 0;
    /* Lower rank merges first: prio = -rank (exact in float below 2^24). */
    return qd__bigram_push(&w->h, (qd__bigram_t){.left = l,
                                                 .right = r,
                                                 .prio = -(float)m->rank,
                                                 .a = w->sy[l].id,
                                                 .b = w->sy[r].id});
}

static int32_t byte_fallback_token(const qd_tokenizer_t *t, unsigned char c)
{
    static const char digits[] = "0123456789ABCDEF";
    char hex[6] = {'<', '0', 'x', digits[c >> 4], digits[c & 15], '>'};
    return qd__tok_find(t, hex, 6);
}

/* Merge one pre-tokenized word (already in the vocabulary's alphabet). */
static int bpe_word(const qd_tokenizer_t *t, work_t *w, const char *word,
                    size_t n, qd__tokvec_t *out)
{
    int rc;
    if (t->ignore_merges) {
        int32_t id = qd__tok_find(t, word, n);
        if (id >= 0)
            return qd__tokvec_push(out, id);
    }
    if (n > w->sy_cap) {
        sym_t *s = qd_realloc(w->sy, n * sizeof(*s));
        if (!s)
            return QD_ENOMEM;
        w->sy = s;
        w->sy_cap = n;
    }
    sym_t *sy = w->sy;
    int n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t k = QD_MIN(qd__utf8_len((unsigned char)word[off]), n - off);
        sy[n_sym] = (sym_t){n_sym - 1, off + k == n ? -1 : n_sym + 1, off, k,
                            qd__tok_find(t, word + off, k)};
        n_sym++;
        off += k;
    }
    w->h.n = 0;
    for (int i = 1; i < n_sym; i++)
        if ((rc = add_bigram(t, w, i - 1, i)))
            return rc;
    while (w->h.n) {
        qd__bigram_t b = qd__bigram_pop(&w->h);
        sym_t *l = &sy[b.left], *r = &sy[b.right];
        if (!l->n || !r->n || l->id != b.a || r->id != b.b)
            continue; /* stale */
        const struct qd_merge *m = qd__tok_merge(t, l->id, r->id);
        l->n += r->n;
        l->id = m->result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sy[r->next].prev = b.left;
        if ((rc = add_bigram(t, w, l->prev, b.left)) ||
            (rc = add_bigram(t, w, b.left, l->next)))
            return rc;
    }
    for (int i = 0; i != -1; i = sy[i].next) {
        if (sy[i].id >= 0) {
            if ((rc = qd__tokvec_push(out, sy[i].id)))
                return rc;
            continue;
        }
        for (size_t j = 0; j < sy[i].n; j++) {
            unsigned char ch = (unsigned char)word[sy[i].off + j];
            int32_t id = t->byte_fallback ? byte_fallback_token(t, ch)
                                          : qd__tok_find(t, (char *)&ch, 1);
            if (id < 0)
                id = t->unk;
            if (id >= 0 && (rc = qd__tokvec_push(out, id)))
                return rc;
        }
    }
    return 0;
}

int qd__bpe_encode(const qd_tokenizer_t *t, const char *text, size_t len,
                   int add_prefix, qd__tokvec_t *out)
{
    if (!len)
        return 0;
    int rc = 0;
    char *esc = NULL;
    if (t->escape_ws) { /* ' ' → U+2581 before splitting */
        size_t n_sp = 0;
        for (size_t i = 0; i < len; i++)
            n_sp += text[i] == ' ';
        esc = qd_malloc(len + 2 * n_sp + 3);
        if (!esc)
            return QD_ENOMEM;
        size_t o = 0;
        if (add_prefix) {
            memcpy(esc, "\xE2\x96\x81", 3);
            o = 3;
        }
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') {
                memcpy(esc + o, "\xE2\x96\x81", 3);
                o += 3;
            } else
                esc[o++] = text[i];
        }
        text = esc;
        len = o;
    }
    uint32_t *cp = qd_malloc(len * sizeof(*cp));
    uint16_t *fl = qd_malloc(len * sizeof(*fl));
    size_t *ch_a = qd_malloc(len * sizeof(*ch_a));
    size_t *ch_b = qd_malloc(len * sizeof(*ch_b));
    char *word = NULL;
    size_t word_cap = 0;
    work_t w = {0};
    if (!cp || !fl || !ch_a || !ch_b) {
        rc = QD_ENOMEM;
        goto out;
    }
    size_t n_cp = 0;
    for (size_t i = 0; i < len;) {
        size_t k;
        cp[n_cp] = qd__utf8_decode(text + i, len - i, &k);
        fl[n_cp] = (uint16_t)qd__ucat(cp[n_cp]);
        n_cp++;
        i += k;
    }
    pctx_t c = {cp, fl};
    size_t n_ch = 1;
    ch_a[0] = n_cp;
    for (int s = 0; s < t->n_pre; s++) {
        n_ch = split_stage(&c, stage_matcher(t->pre[s]), ch_a, n_ch, ch_b);
        size_t *tmp = ch_a;
        ch_a = ch_b;
        ch_b = tmp;
    }
    size_t start = 0;
    for (size_t i = 0; i < n_ch; i++) {
        size_t need = ch_a[i] * 8, o = 0; /* ≤ 4 bytes × 2 per code point */
        if (need > word_cap) {
            char *nw = qd_realloc(word, need);
            if (!nw) {
                rc = QD_ENOMEM;
                goto out;
            }
            word = nw;
            word_cap = need;
        }
        for (size_t j = start; j < start + ch_a[i]; j++) {
            char u[4];
            int k = qd__utf8_encode(cp[j], u);
            if (!t->byte_encode) {
                memcpy(word + o, u, (size_t)k);
                o += (size_t)k;
                continue;
            }
            for (int b = 0; b < k; b++)
                o += (size_t)qd__utf8_encode(qd__byte_to_cpt((uint8_t)u[b]),
                                             word + o);
        }
        start += ch_a[i];
        if ((rc = bpe_word(t, &w, word, o, out)))
            goto out;
    }
out:
    qd_free(esc);
    qd_free(cp);
    qd_free(fl);
    qd_free(ch_a);
    qd_free(ch_b);
    qd_free(word);
    qd_free(w.sy);
    qd_free(w.h.v);
    return rc;
}
