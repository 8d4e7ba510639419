/*
 * tokenizer_wpm.c — WordPiece ("bert" vocabularies, as converted to GGUF
 * by llama.cpp: word-initial pieces carry a U+2581 prefix, continuation
 * pieces none). The text is lowercased and stripped of accents as the
 * vocabulary asks, split at whitespace and around punctuation and CJK
 * ideographs, and each word is matched greedily, longest piece first; a
 * word that cannot be spelled becomes the unknown token.
 */
#include <string.h>

#include "engine/tokenizer_int.h"
#include "engine/unicode.h"
#include "quantd/common.h"

static int is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest-match of "▁" + word[0..n). */
static int wpm_word(const qd_tokenizer_t *t, const char *word, size_t n,
                    qd__tokvec_t *out)
{
    if (!n)
        return 0;
    size_t m = n + 3;
    char stackbuf[256];
    char *w = m <= sizeof(stackbuf) ? stackbuf : qd_malloc(m);
    if (!w)
        return QD_ENOMEM;
    memcpy(w, "\xE2\x96\x81", 3);
    memcpy(w + 3, word, n);
    size_t mark = out->n;
    int rc = 0;
    for (size_t i = 0; i < m;) {
        size_t j = QD_MIN(m, i + t->max_len + 1);
        int32_t id = -1;
        for (; j > i; j--)
            if ((id = qd__tok_find(t, w + i, j - i)) >= 0)
                break;
        if (id < 0) {
            out->n = mark; /* the whole word is unknown */
            break;
        }
        if ((rc = qd__tokvec_push(out, id)))
            goto done;
        i = j;
    }
    if (out->n == mark && t->unk >= 0)
        rc = qd__tokvec_push(out, t->unk);
done:
    if (w != stackbuf)
        qd_free(w);
    return rc;
}

int qd__wpm_encode(const qd_tokenizer_t *t, const char *text, size_t len,
                   qd__tokvec_t *out)
{
    char *word = qd_malloc(len * 4 + 4);
    if (!word)
        return QD_ENOMEM;
    size_t wn = 0;
    int rc = 0;
    for (size_t i = 0; i < len;) {
        size_t k;
        uint32_t c = qd__utf8_decode(text + i, len - i, &k);
        i += k;
        if (t->wpm_strip_accents)
            c = qd__unicode_nfd_first(c);
        unsigned f = qd__ucat(c);
        if (f & QD_UCAT_WHITESPACE) {
            if ((rc = wpm_word(t, word, wn, out)))
                goto out;
            wn = 0;
            continue;
        }
        if (c == 0 || c == 0xFFFD || (f & QD_UCAT_CONTROL))
            continue;
        if (t->wpm_strip_accents && (f & QD_UCAT_MARK))
            continue;
        char u[4];
        int n = qd__utf8_encode(t->wpm_lowercase ? qd__unicode_tolower(c) : c, u);
        if ((f & QD_UCAT_PUNCT) || (c < 0x7F && (f & QD_UCAT_SYMBOL)) ||
            is_chinese(c)) {
            if ((rc = wpm_word(t, word, wn, out)) ||
                (rc = wpm_word(t, u, (size_t)n, out)))
                goto out;
            wn = 0;
            continue;
        }
        memcpy(word + wn, u, (size_t)n);
        wn += (size_t)n;
    }
    rc = wpm_word(t, word, wn, out);
out:
    qd_free(word);
    return rc;
}
