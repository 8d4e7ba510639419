/* test_hf_tokenizer.c — tokenizer.json written from a GGUF SentencePiece
 * vocabulary (convert/hf_tokenizer.c) tokenizes exactly as the GGUF
 * vocabulary does: Llama-2's real 32k vocabulary on llama.cpp's test
 * strings and on English text, stories260K, and the synthetic vocabulary
 * of gen-model. */
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/genmodel.h"
#include "quantd/gguf.h"
#include "quantd/tokenizer.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEP "\n__ggml_vocab_test__\n"

static const char *shared(void)
{
    const char *s = getenv("QD_SHARED");
    return s && *s ? s : NULL;
}

static char *slurp(const char *path, size_t max, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = malloc(max + 1);
    *n = fread(b, 1, max, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

/* Export g's vocabulary into a fresh directory; load both tokenizers. */
static void both(const char *gguf, const char *tag, qd_tokenizer_t **from_gguf,
                 qd_tokenizer_t **from_hf, int32_t *n_unreach)
{
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    char dir[512], j[600], c[600];
    snprintf(dir, sizeof dir, "%s/hftok-%s-%d", tmp, tag, (int)getpid());
    mkdir(dir, 0755);
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(gguf, &g), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_tokenizer_from_gguf(g, from_gguf), 0, "%s", qd_errmsg());
    cr_assert_eq(qd__hf_write_tokenizer(g, dir, n_unreach), 0, "%s",
                 qd_errmsg());
    qd_gguf_close(g);
    snprintf(j, sizeof j, "%s/tokenizer.json", dir);
    snprintf(c, sizeof c, "%s/tokenizer_config.json", dir);
    cr_assert_eq(qd_tokenizer_from_hf(j, c, from_hf), 0, "%s", qd_errmsg());
    unlink(j);
    unlink(c);
    rmdir(dir);
}

/* Tokenize s both ways (with BOS as each tokenizer says): 1 if equal. */
static int same_ids(const qd_tokenizer_t *a, const qd_tokenizer_t *b,
                    const char *s, size_t len)
{
    static int32_t ta[1 << 18], tb[1 << 18];
    int na = qd_tokenize(a, s, len, qd_tokenizer_add_bos(a), 0, ta, 1 << 18);
    int nb = qd_tokenize(b, s, len, qd_tokenizer_add_bos(b), 0, tb, 1 << 18);
    cr_assert_geq(na, 0);
    cr_assert_geq(nb, 0);
    if (na == nb && memcmp(ta, tb, (size_t)na * sizeof *ta) == 0)
        return 1;
    int k = 0;
    while (k < na && k < nb && ta[k] == tb[k])
        k++;
    cr_log_error("'%.60s': %d vs %d tokens, first difference at %d (%d vs %d)",
                 s, na, nb, k, k < na ? ta[k] : -1, k < nb ? tb[k] : -1);
    return 0;
}

static void check_text(const qd_tokenizer_t *a, const qd_tokenizer_t *b,
                       const char *path, size_t max, size_t piece)
{
    size_t n;
    char *txt = slurp(path, max, &n);
    cr_assert_not_null(txt, "cannot read %s", path);
    int bad = 0;
    for (size_t o = 0; o < n; o += piece) {
        size_t l = QD_MIN(piece, n - o);
        while (o + l < n && ((unsigned char)txt[o + l] & 0xC0) == 0x80)
            l++; /* whole UTF-8 characters */
        bad += !same_ids(a, b, txt + o, l);
        while (o + piece < n && ((unsigned char)txt[o + piece] & 0xC0) == 0x80)
            o++;
    }
    cr_expect_eq(bad, 0, "%s: %d pieces differ", path, bad);
    free(txt);
}

Test(hf_tokenizer, llama2_vocab_matches_gguf_on_vectors_and_text)
{
    if (!shared())
        cr_skip_test("test data not found: QD_SHARED");
    char gguf[1024], inp[1100];
    snprintf(gguf, sizeof gguf, "%s/vocab/ggml-vocab-llama-spm.gguf", shared());
    qd_tokenizer_t *a, *b;
    int32_t unreach = -1;
    both(gguf, "llama2", &a, &b, &unreach);
    cr_expect_eq(unreach, 0);
    cr_expect_eq(qd_tokenizer_n_vocab(a), qd_tokenizer_n_vocab(b));
    cr_expect_eq(qd_tokenizer_bos(a), qd_tokenizer_bos(b));
    cr_expect_eq(qd_tokenizer_eos(a), qd_tokenizer_eos(b));
    cr_expect_eq(qd_tokenizer_add_bos(a), qd_tokenizer_add_bos(b));

    /* llama.cpp's tokenizer test strings (spaces, digits, unicode, emoji) */
    snprintf(inp, sizeof inp, "%s.inp", gguf);
    size_t n;
    char *s = slurp(inp, 1 << 20, &n);
    cr_assert_not_null(s);
    int count = 0, bad = 0;
    for (char *p = s, *sep; (sep = strstr(p, SEP)); p = sep + strlen(SEP)) {
        bad += !same_ids(a, b, p, (size_t)(sep - p));
        count++;
    }
    free(s);
    cr_expect_gt(count, 20);
    cr_expect_eq(bad, 0, "%d of %d test strings differ", bad, count);

    snprintf(inp, sizeof inp, "%s/text/wikitext-2-raw-test.crlf.raw", shared());
    check_text(a, b, inp, 60000, 1500);
    snprintf(inp, sizeof inp, "%s/text/tinyshakespeare.txt", shared());
    check_text(a, b, inp, 30000, 1500);
    qd_tokenizer_destroy(a);
    qd_tokenizer_destroy(b);
}

Test(hf_tokenizer, stories260k_matches_gguf)
{
    if (!shared())
        cr_skip_test("test data not found: QD_SHARED");
    char gguf[1024], txt[1024];
    snprintf(gguf, sizeof gguf, "%s/gguf/stories260K.gguf", shared());
    qd_tokenizer_t *a, *b;
    int32_t unreach = -1;
    both(gguf, "s260k", &a, &b, &unreach);
    cr_expect_eq(unreach, 0);
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "  two  spaces\n\nand lines\tand a tab",
        "h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82",
        "<s> is text here, not BOS </s>",
        "",
    };
    for (size_t i = 0; i < QD_ARRAY_SIZE(texts); i++)
        cr_expect(same_ids(a, b, texts[i], strlen(texts[i])), "text %zu", i);
    snprintf(txt, sizeof txt, "%s/text/tinyshakespeare.txt", shared());
    check_text(a, b, txt, 20000, 1000);
    qd_tokenizer_destroy(a);
    qd_tokenizer_destroy(b);
}

/* gen-model's synthetic vocabulary has pieces whose characters are not
 * pieces: the export loads, counts them, and agrees on text made of the
 * single-character pieces and bytes it can form. */
Test(hf_tokenizer, genmodel_vocab_counts_unreachable_pieces)
{
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/hftok-gen-%d.gguf", tmp, (int)getpid());
    qd_genmodel_params_t gp;
    cr_assert_eq(qd_genmodel_preset("tiny", &gp), 0);
    gp.n_vocab = 2000;
    gp.n_layer = 1;
    cr_assert_eq(qd_genmodel_write(&gp, path), 0, "%s", qd_errmsg());
    qd_tokenizer_t *a, *b;
    int32_t unreach = 0;
    both(path, "gen", &a, &b, &unreach);
    unlink(path);
    cr_expect_gt(unreach, 0);
    cr_expect_eq(qd_tokenizer_n_vocab(a), qd_tokenizer_n_vocab(b));
    cr_expect(same_ids(a, b, "\xc3\xa9\xe2\x82\xac", 5)); /* bytes only */
    qd_tokenizer_destroy(a);
    qd_tokenizer_destroy(b);
}

Test(hf_tokenizer, refuses_other_vocabularies)
{
    if (!shared())
        cr_skip_test("test data not found: QD_SHARED");
    char gguf[1024];
    snprintf(gguf, sizeof gguf, "%s/vocab/ggml-vocab-gpt-2.gguf", shared());
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(gguf, &g), 0);
    cr_expect_eq(qd__hf_write_tokenizer(g, "/nonexistent", NULL),
                 QD_EUNSUPPORTED);
    cr_expect(strstr(qd_errmsg(), "gpt2"), "%s", qd_errmsg());
    qd_gguf_close(g);
}
