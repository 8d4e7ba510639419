/*
 * tokenizer_spm.c — SentencePiece BPE ("llama" vocabularies), as llama.cpp
 * runs it: spaces become U+2581 (with a dummy leading one when asked), the
 * text is cut into UTF-8 characters, and the adjacent pair whose
 * concatenation is the highest-scoring token is merged first (ties: the
 * leftmost), until no pair forms a token. Characters that are not tokens
 * fall back to their bytes as <0xNN> tokens.
 */
#include <string.h>

#include "engine/tokenizer_int.h"
#include "engine/unicode.h"
#include "quantd/common.h"

typedef struct {
    int prev, next;
    size_t off, n;
} sym_t;


static int try_bigram(const qd_tokenizer_t *t, const char *buf,
                      const sym_t *sy, int left, int right, qd__bigram_heap_t *h)
{
    if (left < 0 || right < 0)
        return 0;
    size_t size = sy[left].n + sy[right].n;
    int32_t id = qd__tok_find(t, buf + sy[left].off, size);
    if (id < 0)
        return 0;
    return qd__bigram_push(h, (qd__bigram_t){left, right, t->score[id], 0, 0, size});
}

static int32_t byte_token(const qd_tokenizer_t *t, unsigned char c)
{
    char hex[8];
    static const char digits[] = "0123456789ABCDEF";
    memcpy(hex, "<0x", 3);
    hex[3] = digits[c >> 4];
    hex[4] = digits[c & 15];
    hex[5] = '>';
    int32_t id = qd__tok_find(t, hex, 6);
    if (id < 0)
        id = qd__tok_find(t, (const char *)&c, 1);
    return id;
}

int qd__spm_encode(const qd_tokenizer_t *t, const char *text, size_t len,
                   int add_prefix, qd__tokvec_t *out)
{
    /* Escaped copy: ' ' → U+2581 (3 bytes). */
    size_t n_sp = add_prefix;
    for (size_t i = 0; i < len; i++)
        n_sp += text[i] == ' ';
    size_t n = len - (n_sp - (size_t)add_prefix) + n_sp * 3;
    if (n == 0)
        return 0;
    char *buf = qd_malloc(n);
    sym_t *sy = qd_malloc(n * sizeof(*sy));
    qd__bigram_heap_t h = {0};
    int rc = 0;
    if (!buf || !sy) {
        rc = QD_ENOMEM;
        goto out;
    }
    size_t o = 0;
    if (add_prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + o, "\xE2\x96\x81", 3);
            o += 3;
        } else
            buf[o++] = text[i];
    }

    int n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t k = QD_MIN(qd__utf8_len((unsigned char)buf[off]), n - off);
        sy[n_sym] = (sym_t){n_sym - 1, off + k == n ? -1 : n_sym + 1, off, k};
        n_sym++;
        off += k;
    }
    for (int i = 1; i < n_sym; i++)
        if ((rc = try_bigram(t, buf, sy, i - 1, i, &h)))
            goto out;
    while (h.n) {
        qd__bigram_t b = qd__bigram_pop(&h);
        sym_t *l = &sy[b.left], *r = &sy[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sy[r->next].prev = b.left;
        if ((rc = try_bigram(t, buf, sy, l->prev, b.left, &h)) ||
            (rc = try_bigram(t, buf, sy, b.left, l->next, &h)))
            goto out;
    }
    for (int i = 0; i != -1; i = sy[i].next) {
        int32_t id = qd__tok_find(t, buf + sy[i].off, sy[i].n);
        if (id >= 0) {
            if ((rc = qd__tokvec_push(out, id)))
                goto out;
            continue;
        }
        for (size_t j = 0; j < sy[i].n; j++) {
            id = byte_token(t, (unsigned char)buf[sy[i].off + j]);
            if (id < 0)
                id = t->unk;
            if (id >= 0 && (rc = qd__tokvec_push(out, id)))
                goto out;
        }
    }
out:
    qd_free(buf);
    qd_free(sy);
    qd_free(h.v);
    return rc;
}
