/*
 * test_tokenizer.c — tokenizer conformance against llama.cpp's vectors
 * (ggml-vocab-*.gguf.inp/.out and reference/tokenize/), streamed
 * detokenization round trips, special tokens, and malformed vocabularies.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"

static const char *shared(void)
{
    const char *s = getenv("QD_SHARED");
    return s && *s && access(s, R_OK) == 0 ? s : NULL;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[sz] = 0;
        *n = (size_t)sz;
    }
    return b;
}

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Check every emitted chunk is complete, valid UTF-8 (no split chars). */
static int valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

/* Stream toks through qd_detok_* into out; returns length or -1 if some
 * chunk was not whole UTF-8. */
static long detok_stream(const qd_tokenizer_t *t, const int32_t *toks, int n,
                         char *out, size_t cap)
{
    qd_detok_t d;
    qd_detok_init(&d, t);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        char buf[512];
        int k = qd_detok_push(&d, t, toks[i], buf, sizeof(buf));
        if (k < 0 || !valid_utf8(buf, (size_t)k) || o + (size_t)k > cap)
            return -1;
        memcpy(out + o, buf, (size_t)k);
        o += (size_t)k;
    }
    char buf[64];
    int k = qd_detok_flush(&d, buf, sizeof(buf));
    if (k < 0 || o + (size_t)k > cap)
        return -1;
    memcpy(out + o, buf, (size_t)k);
    return (long)(o + (size_t)k);
}

/* Run a .inp/.out pair; returns the number of mismatching strings. With
 * roundtrip, also require detokenize(tokenize(s)) == s. */
static int run_vectors(const qd_tokenizer_t *t, const char *inp_path,
                       const char *out_path, int roundtrip, int *n_strings)
{
    size_t ni, no;
    char *inp = slurp(inp_path, &ni), *outp = slurp(out_path, &no);
    cr_assert_not_null(inp, "cannot read %s", inp_path);
    cr_assert_not_null(outp, "cannot read %s", out_path);
    int bad = 0, count = 0;
    char *s = inp, *line = outp;
    int32_t *toks = malloc(sizeof(int32_t) * 65536);
    char *back = malloc(1 << 20);
    for (;;) {
        char *sep = strstr(s, SEP);
        if (!sep)
            break;
        size_t len = (size_t)(sep - s);
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "%s: fewer lines than strings", out_path);
        *nl = 0;
        int n = qd_tokenize(t, s, len, 0, 0, toks, 65536);
        cr_assert_geq(n, 0, "tokenize failed: %s", qd_errmsg());
        /* expected ids */
        int ok = 1, k = 0;
        char *p = line;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p)
                break;
            if (k >= n || toks[k] != v)
                ok = 0;
            k++;
            p = end;
        }
        if (k != n)
            ok = 0;
        if (!ok) {
            bad++;
            char got[4096];
            size_t o = 0;
            for (int i = 0; i < n && o < sizeof(got) - 16; i++)
                o += (size_t)snprintf(got + o, sizeof(got) - o, " %d", toks[i]);
            got[o] = 0;
            cr_log_error("%s string %d '%.*s':\n  want%s\n  got %s", inp_path,
                         count, (int)QD_MIN(len, 80), s, line, got);
        }
        if (roundtrip) {
            long m = detok_stream(t, toks, n, back, 1 << 20);
            if (m != (long)len || memcmp(back, s, len)) {
                bad++;
                cr_log_error("%s string %d: round trip gives '%.*s' (%ld)",
                             inp_path, count, (int)QD_MAX(m, 0L), back, m);
            }
        }
        count++;
        s = sep + strlen(SEP);
        line = nl + 1;
    }
    free(toks);
    free(back);
    free(inp);
    free(outp);
    if (n_strings)
        *n_strings = count;
    return bad;
}

static qd_tokenizer_t *load_hf(const char *name)
{
    char j[1024], c[1024];
    snprintf(j, sizeof(j), "%s/tokenizers/%s/tokenizer.json", shared(), name);
    snprintf(c, sizeof(c), "%s/tokenizers/%s/tokenizer_config.json", shared(),
             name);
    qd_tokenizer_t *t = NULL;
    int rc = qd_tokenizer_from_hf(j, c, &t);
    cr_assert_eq(rc, 0, "load %s: %s: %s", j, qd_strerror(rc), qd_errmsg());
    return t;
}

#define NEED_SHARED()                                                          \
    do {                                                                       \
        if (!shared())                                                         \
            cr_skip_test("test data not found: QD_SHARED is not set");        \
    } while (0)

static void vocab_vectors(const qd_tokenizer_t *t, const char *vocab,
                          int roundtrip)
{
    char inp[1024], out[1024];
    snprintf(inp, sizeof(inp), "%s/vocab/ggml-vocab-%s.gguf.inp", shared(),
             vocab);
    snprintf(out, sizeof(out), "%s/vocab/ggml-vocab-%s.gguf.out", shared(),
             vocab);
    int n = 0;
    int bad = run_vectors(t, inp, out, roundtrip, &n);
    cr_expect_eq(bad, 0, "%s: %d of %d strings differ", vocab, bad, n);
    cr_expect_gt(n, 10, "%s: only %d strings", vocab, n);
}

Test(tokenizer, hf_llama3_vectors_and_roundtrip)
{
    NEED_SHARED();
    qd_tokenizer_t *t = load_hf("llama3");
    cr_expect_eq(qd_tokenizer_n_vocab(t), 128256);
    cr_expect_eq(qd_tokenizer_bos(t), 128000);
    cr_expect_eq(qd_tokenizer_eos(t), 128001);
    cr_expect_eq(qd_tokenizer_add_bos(t), 1);
    cr_expect(qd_tokenizer_is_eog(t, 128009), "<|eot_id|> ends generation");
    cr_expect(qd_tokenizer_is_eog(t, 128001));
    cr_expect(!qd_tokenizer_is_eog(t, 100));
    vocab_vectors(t, "llama-bpe", 1);
    qd_tokenizer_destroy(t);
}

Test(tokenizer, hf_qwen3_vectors_and_roundtrip)
{
    NEED_SHARED();
    qd_tokenizer_t *t = load_hf("qwen3");
    cr_expect_eq(qd_tokenizer_bos(t), -1);
    cr_expect_eq(qd_tokenizer_add_bos(t), 0);
    cr_expect_str_eq(qd_tokenizer_token_text(t, qd_tokenizer_eos(t)),
                     "<|im_end|>");
    cr_expect_not_null(qd_tokenizer_chat_template(t));
    vocab_vectors(t, "qwen2", 1);
    vocab_vectors(t, "deepseek-r1-qwen", 1);
    qd_tokenizer_destroy(t);
}

Test(tokenizer, special_tokens_parse_or_not)
{
    NEED_SHARED();
    qd_tokenizer_t *t = load_hf("llama3");
    const char *s = "<|begin_of_text|>Hello";
    int32_t a[64], b[64];
    int na = qd_tokenize(t, s, strlen(s), 0, 1, a, 64);
    int nb = qd_tokenize(t, s, strlen(s), 0, 0, b, 64);
    cr_assert_eq(na, 2, "parse_special=1 gives %d tokens", na);
    cr_expect_eq(a[0], 128000);
    cr_expect_eq(a[1], 9906); /* "Hello" */
    cr_expect_gt(nb, 2, "parse_special=0 tokenizes the text: %d", nb);
    for (int i = 0; i < nb; i++)
        cr_expect_neq(b[i], 128000);
    /* add_special prepends BOS; the count is returned even if truncated */
    int nc = qd_tokenize(t, "Hello", 5, 1, 0, a, 1);
    cr_expect_eq(nc, 2);
    cr_expect_eq(a[0], 128000);
    /* pieces: control tokens render only on request */
    char buf[64];
    cr_expect_eq(qd_token_to_piece(t, 128000, buf, sizeof(buf), 0), 0);
    int k = qd_token_to_piece(t, 128000, buf, sizeof(buf), 1);
    cr_expect_eq(k, 17);
    cr_expect_eq(memcmp(buf, "<|begin_of_text|>", 17), 0);
    k = qd_token_to_piece(t, 9906, buf, sizeof(buf), 0);
    cr_expect_eq(k, 5);
    cr_expect_eq(qd_token_to_piece(t, -1, buf, 64, 0), QD_ERANGE);
    cr_expect_eq(qd_token_to_piece(t, 128256, buf, 64, 0), QD_ERANGE);
    qd_tokenizer_destroy(t);
}

Test(tokenizer, detok_holds_back_split_utf8)
{
    NEED_SHARED();
    qd_tokenizer_t *t = load_hf("llama3");
    /* the byte-level tokens of the 4 bytes of U+1F600: F0 → 'ð' (direct),
     * 9F → U+0141, 98 → U+013A, 80 → U+0122 (GPT-2 byte alphabet) */
    const char *emoji = "\xF0\x9F\x98\x80";
    const char *texts[4] = {"\xC3\xB0", "\xC5\x81", "\xC4\xBA",
                            "\xC4\xA2"};
    int32_t bt[4] = {-1, -1, -1, -1};
    for (int32_t id = 0; id < qd_tokenizer_n_vocab(t); id++)
        for (int i = 0; i < 4; i++)
            if (!strcmp(qd_tokenizer_token_text(t, id), texts[i]))
                bt[i] = id;
    for (int i = 0; i < 4; i++)
        cr_assert_geq(bt[i], 0, "byte token %d not found", i);
    qd_detok_t d;
    qd_detok_init(&d, t);
    char out[64];
    for (int i = 0; i < 3; i++)
        cr_expect_eq(qd_detok_push(&d, t, bt[i], out, sizeof(out)), 0,
                     "byte %d of a 4-byte char must be held back", i);
    cr_expect_eq(qd_detok_push(&d, t, bt[3], out, sizeof(out)), 4);
    cr_expect_eq(memcmp(out, emoji, 4), 0);
    /* a truncated character at the end flushes as U+FFFD */
    qd_detok_init(&d, t);
    cr_expect_eq(qd_detok_push(&d, t, bt[0], out, sizeof(out)), 0);
    cr_expect_eq(qd_detok_flush(&d, out, sizeof(out)), 3);
    cr_expect_eq(memcmp(out, "\xEF\xBF\xBD", 3), 0);
    /* an impossible sequence is replaced at once */
    qd_detok_init(&d, t);
    cr_expect_eq(qd_detok_push(&d, t, bt[0], out, sizeof(out)), 0);
    int k = qd_detok_push(&d, t, 32, out, sizeof(out)); /* "A" */
    cr_expect_eq(k, 4);
    cr_expect_eq(memcmp(out, "\xEF\xBF\xBD" "A", 4), 0);
    qd_tokenizer_destroy(t);
}

Test(tokenizer, llama3_megabyte_under_a_second)
{
    NEED_SHARED();
    struct timespec a, b, c;
    clock_gettime(CLOCK_MONOTONIC, &a);
    qd_tokenizer_t *t = load_hf("llama3");
    clock_gettime(CLOCK_MONOTONIC, &b);
    size_t n = 1 << 20, o = 0;
    char *text = malloc(n);
    const char *para = "The quick brown fox jumps over the lazy dog 1234567. "
                       "Zażółć gęślą jaźń, 東京は晴れ。 \n\tx = f(y) + 42;\n";
    while (o < n) {
        size_t k = QD_MIN(strlen(para), n - o);
        memcpy(text + o, para, k);
        o += k;
    }
    while (n && ((unsigned char)text[n - 1] & 0xC0) == 0x80)
        n--; /* keep the cut out of a character */
    int32_t *toks = malloc(sizeof(int32_t) * n);
    int m = qd_tokenize(t, text, n, 0, 0, toks, (int)n);
    clock_gettime(CLOCK_MONOTONIC, &c);
    double load_s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    double tok_s = (c.tv_sec - b.tv_sec) + (c.tv_nsec - b.tv_nsec) * 1e-9;
    cr_log_info("llama3: load %.3f s, 1 MiB → %d tokens in %.3f s", load_s, m,
                tok_s);
    cr_expect_gt(m, 100000);
    /* generous bounds: the machine running tests may be busy */
    cr_expect_lt(tok_s, 3.0, "tokenizing 1 MiB took %.2f s", tok_s);
    cr_expect_lt(load_s, 5.0, "loading took %.2f s", load_s);
    free(toks);
    free(text);
    qd_tokenizer_destroy(t);
}

/* ---- malformed tokenizer.json ----------------------------------------- */

static int load_json_text(const char *json, const char *cfg_json)
{
    const char *dir = getenv("QD_TMP");
    char p[512], q[512];
    snprintf(p, sizeof(p), "%s/tok-%d.json", dir ? dir : "/tmp", (int)getpid());
    snprintf(q, sizeof(q), "%s/tokcfg-%d.json", dir ? dir : "/tmp",
             (int)getpid());
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
    if (cfg_json) {
        f = fopen(q, "w");
        cr_assert_not_null(f);
        fputs(cfg_json, f);
        fclose(f);
    }
    qd_tokenizer_t *t = NULL;
    int rc = qd_tokenizer_from_hf(p, cfg_json ? q : NULL, &t);
    if (rc == 0) {
        /* a usable tokenizer: exercise it */
        int32_t toks[64];
        int n = qd_tokenize(t, "ab ab", 5, 1, 1, toks, 64);
        cr_expect_geq(n, 0);
        qd_tokenizer_destroy(t);
    } else {
        cr_expect_null(t);
        cr_expect_neq(qd_errmsg()[0], 0, "error without a message");
    }
    remove(p);
    remove(q);
    return rc;
}

#define TINY_HEAD                                                              \
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,"       \
    "\"\\u0120\":3},"
#define TINY_PRE                                                               \
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":true}"

Test(tokenizer, hf_tiny_valid)
{
    cr_expect_eq(load_json_text(TINY_HEAD "\"merges\":[\"a b\"]}," TINY_PRE
                                          ",\"added_tokens\":[{\"id\":4,"
                                          "\"content\":\"<s>\",\"special\":"
                                          "true}]}",
                                "{\"bos_token\":\"<s>\"}"),
                 0, "%s", qd_errmsg());
}

Test(tokenizer, hf_tiny_encodes)
{
    const char *dir = getenv("QD_TMP");
    char p[512];
    snprintf(p, sizeof(p), "%s/tok-enc-%d.json", dir ? dir : "/tmp",
             (int)getpid());
    FILE *f = fopen(p, "w");
    fputs(TINY_HEAD "\"merges\":[[\"a\",\"b\"]]}," TINY_PRE
                    ",\"added_tokens\":[{\"id\":4,\"content\":\"<s>\","
                    "\"special\":true}]}",
          f);
    fclose(f);
    qd_tokenizer_t *t = NULL;
    cr_assert_eq(qd_tokenizer_from_hf(p, NULL, &t), 0, "%s", qd_errmsg());
    remove(p);
    int32_t toks[16];
    int n = qd_tokenize(t, "<s>ab a", 7, 0, 1, toks, 16);
    cr_assert_eq(n, 4);
    cr_expect_eq(toks[0], 4);
    cr_expect_eq(toks[1], 2);
    cr_expect_eq(toks[2], 3); /* " " → Ġ, then "a" */
    cr_expect_eq(toks[3], 0);
    qd_tokenizer_destroy(t);
}

Test(tokenizer, hf_malformed_refused)
{
    /* merge naming an unknown token */
    cr_expect_eq(load_json_text(TINY_HEAD "\"merges\":[\"a c\"]}," TINY_PRE "}",
                                NULL),
                 QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "unknown token"), "%s", qd_errmsg());
    /* merge that is not two tokens */
    cr_expect_eq(load_json_text(TINY_HEAD "\"merges\":[\"ab\"]}," TINY_PRE "}",
                                NULL),
                 QD_EFORMAT);
    /* empty vocabulary */
    cr_expect_eq(load_json_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{},"
                                "\"merges\":[]}," TINY_PRE "}",
                                NULL),
                 QD_EFORMAT);
    /* negative / non-integer ids */
    cr_expect_eq(load_json_text("{\"model\":{\"type\":\"BPE\",\"vocab\":"
                                "{\"a\":-1},\"merges\":[]}," TINY_PRE "}",
                                NULL),
                 QD_EFORMAT);
    cr_expect_eq(load_json_text("{\"model\":{\"type\":\"BPE\",\"vocab\":"
                                "{\"a\":\"x\"},\"merges\":[]}," TINY_PRE "}",
                                NULL),
                 QD_EFORMAT);
    /* id out of range */
    cr_expect_eq(load_json_text("{\"model\":{\"type\":\"BPE\",\"vocab\":"
                                "{\"a\":99999999},\"merges\":[]}," TINY_PRE
                                "}",
                                NULL),
                 QD_EFORMAT);
    /* two tokens with one id, one text with two ids */
    cr_expect_eq(load_json_text(TINY_HEAD "\"merges\":[]}," TINY_PRE
                                          ",\"added_tokens\":[{\"id\":5,"
                                          "\"content\":\"ab\"}]}",
                                NULL),
                 QD_EFORMAT);
    /* unknown pre-tokenizer regex, with its text in the message */
    cr_expect_eq(load_json_text(TINY_HEAD "\"merges\":[]},\"pre_tokenizer\":"
                                          "{\"type\":\"Split\",\"pattern\":{"
                                          "\"Regex\":\"[a-z]+\"},\"behavior\":"
                                          "\"Isolated\"}}",
                                NULL),
                 QD_EUNSUPPORTED);
    cr_expect(strstr(qd_errmsg(), "[a-z]+"), "%s", qd_errmsg());
    /* unsupported model, broken JSON, missing file */
    cr_expect_eq(load_json_text("{\"model\":{\"type\":\"Unigram\"}}", NULL),
                 QD_EUNSUPPORTED);
    cr_expect_eq(load_json_text("{\"model\":", NULL), QD_EFORMAT);
    qd_tokenizer_t *t = (qd_tokenizer_t *)1;
    cr_expect_lt(qd_tokenizer_from_hf("/nonexistent/tokenizer.json", NULL, &t),
                 0);
    cr_expect_null(t);
    qd_tokenizer_destroy(NULL);
}

Test(tokenizer, vocabularies_without_data_skip)
{
    NEED_SHARED();
    cr_skip_test("chameleon, command-r and roberta-bpe vectors exist but no "
                 "vocabulary for them is available (no GGUF, no "
                 "tokenizer.json)");
}

/* ---- GGUF vocabularies ------------------------------------------------ */

static qd_tokenizer_t *load_gguf_path(const char *path, qd_gguf_t **gout)
{
    qd_gguf_t *g = NULL;
    int rc = qd_gguf_open(path, &g);
    cr_assert_eq(rc, 0, "open %s: %s: %s", path, qd_strerror(rc), qd_errmsg());
    qd_tokenizer_t *t = NULL;
    rc = qd_tokenizer_from_gguf(g, &t);
    cr_assert_eq(rc, 0, "vocab %s: %s: %s", path, qd_strerror(rc),
                 qd_errmsg());
    *gout = g;
    return t;
}

static void gguf_vectors(const char *vocab, int roundtrip)
{
    NEED_SHARED();
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf", shared(),
             vocab);
    if (!file_exists(path))
        cr_skip_test("%s not found", path);
    qd_gguf_t *g;
    qd_tokenizer_t *t = load_gguf_path(path, &g);
    vocab_vectors(t, vocab, roundtrip);
    qd_tokenizer_destroy(t);
    qd_gguf_close(g);
}

Test(tokenizer, gguf_llama_spm) { gguf_vectors("llama-spm", 1); }
Test(tokenizer, gguf_phi_3) { gguf_vectors("phi-3", 1); }
Test(tokenizer, gguf_gpt_2) { gguf_vectors("gpt-2", 1); }
Test(tokenizer, gguf_deepseek_coder) { gguf_vectors("deepseek-coder", 1); }
Test(tokenizer, gguf_deepseek_llm) { gguf_vectors("deepseek-llm", 1); }
Test(tokenizer, gguf_falcon) { gguf_vectors("falcon", 1); }
Test(tokenizer, gguf_mpt) { gguf_vectors("mpt", 1); }
Test(tokenizer, gguf_refact) { gguf_vectors("refact", 1); }
Test(tokenizer, gguf_starcoder) { gguf_vectors("starcoder", 1); }
Test(tokenizer, gguf_bert_bge) { gguf_vectors("bert-bge", 0); }

Test(tokenizer, gguf_without_vectors_load)
{
    NEED_SHARED();
    const char *names[] = {"baichuan", "gpt-neox"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf", shared(),
                 names[i]);
        qd_gguf_t *g;
        qd_tokenizer_t *t = load_gguf_path(path, &g);
        int32_t toks[64];
        int n = qd_tokenize(t, "Hello world", 11, 1, 0, toks, 64);
        cr_expect_gt(n, 1, "%s", names[i]);
        char back[128];
        long m = detok_stream(t, toks, QD_MIN(n, 64), back, sizeof(back));
        cr_expect_eq(m, 11, "%s round trip: %ld", names[i], m);
        qd_tokenizer_destroy(t);
        qd_gguf_close(g);
    }
}

static void reference_vectors(const char *file, const char *model)
{
    NEED_SHARED();
    char path[1024], inp[1024], out[1024];
    snprintf(path, sizeof(path), "%s/%s", shared(), model);
    snprintf(inp, sizeof(inp), "%s/reference/tokenize/%s.inp", shared(), file);
    snprintf(out, sizeof(out), "%s/reference/tokenize/%s.out", shared(), file);
    if (!file_exists(path) || !file_exists(inp))
        cr_skip_test("%s or %s not found", path, inp);
    qd_gguf_t *g;
    qd_tokenizer_t *t = load_gguf_path(path, &g);
    int n = 0;
    int bad = run_vectors(t, inp, out, 1, &n);
    cr_expect_eq(bad, 0, "%s: %d of %d strings differ", file, bad, n);
    cr_expect_gt(n, 10);
    qd_tokenizer_destroy(t);
    qd_gguf_close(g);
}

Test(tokenizer, reference_stories260k)
{
    reference_vectors("stories260K.gguf", "gguf/stories260K.gguf");
}
Test(tokenizer, reference_llama_spm)
{
    reference_vectors("ggml-vocab-llama-spm.gguf",
                      "vocab/ggml-vocab-llama-spm.gguf");
}
Test(tokenizer, reference_gpt_2)
{
    reference_vectors("ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-gpt-2.gguf");
}

/* ---- malformed GGUF vocabularies (built with our writer) -------------- */

typedef struct {
    int n_tokens;      /* tokens written */
    int n_types;       /* token_type entries written (-1: no key) */
    const char *model; /* NULL: no key */
    const char *pre;
    const char *merge; /* one merge, or NULL */
    int64_t bos;       /* -1: no key */
} vocab_spec_t;

static const char *const tiny_tokens[] = {"<unk>", "<s>", "</s>", "<0x41>",
                                          "<0xC3>", "<0xA9>", "\xE2\x96\x81",
                                          "a", "b", "ab", "\xE2\x96\x81" "ab"};

static int load_spec(const vocab_spec_t *s, qd_tokenizer_t **t)
{
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    cr_assert_not_null(w);
    if (s->model)
        qd_gguf_writer_set_str(w, "tokenizer.ggml.model", s->model);
    if (s->pre)
        qd_gguf_writer_set_str(w, "tokenizer.ggml.pre", s->pre);
    qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tiny_tokens,
                               (uint64_t)s->n_tokens);
    float scores[11];
    int32_t types[11];
    for (int i = 0; i < 11; i++) {
        scores[i] = (float)(int)strlen(tiny_tokens[i]);
        types[i] = i < 3 ? (i ? 3 : 2) : (i < 6 ? 6 : 1);
    }
    qd_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QD_GGUF_FLOAT32, scores,
                           (uint64_t)s->n_tokens);
    if (s->n_types >= 0)
        qd_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QD_GGUF_INT32,
                               types, (uint64_t)s->n_types);
    if (s->merge) {
        const char *m[1] = {s->merge};
        qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, 1);
    }
    if (s->bos >= 0)
        qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
                               (uint32_t)s->bos);
    void *buf;
    size_t n;
    cr_assert_eq(qd_gguf_writer_write_mem(w, &buf, &n), 0);
    qd_gguf_writer_destroy(w);
    qd_gguf_t *g = NULL;
    *t = NULL;
    /* the reader may already refuse some bad tokenizer keys itself */
    int rc = qd_gguf_open_mem(buf, n, &g);
    if (!rc)
        rc = qd_tokenizer_from_gguf(g, t);
    if (rc) {
        cr_expect_null(*t);
        cr_expect_neq(qd_errmsg()[0], 0);
    }
    qd_gguf_close(g);
    qd_free(buf);
    return rc;
}

Test(tokenizer, gguf_tiny_spm_byte_fallback)
{
    vocab_spec_t s = {11, 11, "llama", NULL, NULL, 1};
    qd_tokenizer_t *t;
    cr_assert_eq(load_spec(&s, &t), 0, "%s", qd_errmsg());
    int32_t toks[32];
    /* " ab" merges by score; "A" and "é" (C3 A9) fall back to bytes; "x"
     * has no byte token and becomes <unk> */
    const char *txt = "ab A\xC3\xA9";
    int n = qd_tokenize(t, txt, strlen(txt), 1, 0, toks, 32);
    int32_t want[] = {1, 10, 6, 3, 4, 5};
    cr_assert_eq(n, 6, "got %d tokens", n);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(toks[i], want[i], "token %d: %d", i, toks[i]);
    char back[64];
    long m = detok_stream(t, toks, n, back, sizeof(back));
    cr_expect_eq(m, (long)strlen(txt));
    cr_expect_eq(memcmp(back, txt, strlen(txt)), 0);
    n = qd_tokenize(t, "x", 1, 0, 0, toks, 32);
    cr_expect_eq(n, 2);
    cr_expect_eq(toks[1], 0);
    qd_tokenizer_destroy(t);
}

Test(tokenizer, gguf_malformed_refused)
{
    qd_tokenizer_t *t;
    vocab_spec_t s = {11, 5, "llama", NULL, NULL, -1}; /* short token_type */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "token_type"), "%s", qd_errmsg());
    s = (vocab_spec_t){0, -1, "llama", NULL, NULL, -1}; /* empty vocab */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    s = (vocab_spec_t){11, 11, "llama", NULL, NULL, 11}; /* bos out of range */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "bos_token_id"), "%s", qd_errmsg());
    s = (vocab_spec_t){11, 11, NULL, NULL, NULL, -1}; /* no model */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    s = (vocab_spec_t){11, 11, "t5", NULL, NULL, -1};
    cr_expect_eq(load_spec(&s, &t), QD_EUNSUPPORTED);
    s = (vocab_spec_t){11, 11, "gpt2", NULL, "a z", -1}; /* unknown merge */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "unknown token"), "%s", qd_errmsg());
    s = (vocab_spec_t){11, 11, "gpt2", NULL, "ab", -1}; /* not two tokens */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    s = (vocab_spec_t){11, 11, "gpt2", NULL, NULL, -1}; /* no merges */
    cr_expect_eq(load_spec(&s, &t), QD_EFORMAT);
    s = (vocab_spec_t){11, 11, "gpt2", "no-such-pre", "a b", -1};
    cr_expect_eq(load_spec(&s, &t), QD_EUNSUPPORTED);
    cr_expect(strstr(qd_errmsg(), "no-such-pre"), "%s", qd_errmsg());
    s = (vocab_spec_t){11, 11, "gpt2", "llama-bpe", "a b", -1}; /* valid */
    cr_expect_eq(load_spec(&s, &t), 0, "%s", qd_errmsg());
    qd_tokenizer_destroy(t);
}
