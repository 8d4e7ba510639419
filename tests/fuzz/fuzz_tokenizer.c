/*
 * fuzz_tokenizer.c — libFuzzer target for tokenize + streamed detokenize.
 *
 * The first input byte picks one of the vocabularies loaded at start-up:
 * two tiny ones generated here (SentencePiece with byte fallback, byte-level
 * BPE with merges) and, when QD_SHARED holds them, stories260K and the
 * llama-spm, gpt-2 and bert-bge vocabularies. Its low bit also picks
 * add_special. The rest is text, tokenized with parse_special off and on;
 * every id must be in range, and the ids fed one by one through
 * qd_detok_push + qd_detok_flush must yield valid UTF-8 — and, for the
 * byte-level BPE vocabularies, exactly the input text when it was valid
 * UTF-8 and no special tokens were involved.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/tokenizer.h"

#define MAX_VOCABS 8

static qd_tokenizer_t *vocabs[MAX_VOCABS];
static qd_gguf_t *ggufs[MAX_VOCABS];
static void *bufs[MAX_VOCABS];
static int lossless[MAX_VOCABS]; /* byte-level BPE: text round-trips */
static int n_vocabs;

static void add_mem(qd_gguf_writer_t *w)
{
    void *buf;
    size_t n;
    qd_gguf_t *g = NULL;
    qd_tokenizer_t *t = NULL;
    if (w && qd_gguf_writer_write_mem(w, &buf, &n) == 0) {
        if (qd_gguf_open_mem(buf, n, &g) == 0 &&
            qd_tokenizer_from_gguf(g, &t) == 0) {
            bufs[n_vocabs] = buf;
            ggufs[n_vocabs] = g;
            vocabs[n_vocabs++] = t;
        } else {
            fprintf(stderr, "fuzz_tokenizer: tiny vocab: %s\n", qd_errmsg());
            qd_gguf_close(g);
            qd_free(buf);
        }
    }
    qd_gguf_writer_destroy(w);
}

static void tiny_spm(void)
{
    static const char *const toks[] = {
        "<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "<0xA9>", "<0xE2>",
        "<0x96>", "<0x81>", "<0xFF>", "<0x0A>", "\xE2\x96\x81", "a", "b",
        "ab", ("\xE2\x96\x81" "ab"), "<|ctl|>"};
    enum { N = sizeof toks / sizeof toks[0] };
    float scores[N];
    int32_t types[N];
    for (int i = 0; i < N; i++) {
        scores[i] = (float)(int)strlen(toks[i]);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 11 ? 6 : 1;
    }
    types[N - 1] = 3;
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    qd_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, N);
    qd_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QD_GGUF_FLOAT32, scores,
                           N);
    qd_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QD_GGUF_INT32,
                           types, N);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    add_mem(w);
}

static void tiny_bpe(void)
{
    /* byte-level BPE: the 256 byte symbols of GPT-2 plus a few merges */
    static char store[256][4];
    const char *toks[262];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        unsigned cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                              (b >= 174 && b <= 255)
                          ? (unsigned)b
                          : 0;
        if (!cp) {
            static unsigned extra = 256;
            cp = extra++;
        }
        char *s = store[b];
        if (cp < 0x80) {
            s[0] = (char)cp, s[1] = 0;
        } else {
            s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F));
            s[2] = 0;
        }
        toks[n++] = s;
    }
    toks[n++] = "ab";
    toks[n++] = "\xC4\xA0" "a"; /* "Ġa" */
    toks[n++] = "<|endoftext|>";
    int32_t types[262];
    for (int i = 0; i < n; i++)
        types[i] = 1;
    types[n - 1] = 3;
    const char *merges[] = {"a b", "\xC4\xA0 a"};
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    qd_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    qd_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    qd_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QD_GGUF_INT32,
                           types, (uint64_t)n);
    qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 2);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
                           (uint32_t)(n - 1));
    add_mem(w);
    lossless[n_vocabs - 1] = 1;
}

static void add_file(const char *rel, int is_lossless)
{
    const char *sh = getenv("QD_SHARED");
    if (!sh || !*sh || n_vocabs >= MAX_VOCABS)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", sh, rel);
    qd_gguf_t *g = NULL;
    qd_tokenizer_t *t = NULL;
    if (qd_gguf_open(path, &g))
        return;
    if (qd_tokenizer_from_gguf(g, &t)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, qd_errmsg());
        qd_gguf_close(g);
        return;
    }
    ggufs[n_vocabs] = g;
    lossless[n_vocabs] = is_lossless;
    vocabs[n_vocabs++] = t;
}

static void load_all(void)
{
    tiny_spm();
    tiny_bpe();
    add_file("gguf/stories260K.gguf", 0);
    add_file("vocab/ggml-vocab-llama-spm.gguf", 0);
    add_file("vocab/ggml-vocab-gpt-2.gguf", 1);
    add_file("vocab/ggml-vocab-bert-bge.gguf", 0);
    if (!n_vocabs) {
        fprintf(stderr, "fuzz_tokenizer: no vocabulary loaded\n");
        abort();
    }
    fprintf(stderr, "fuzz_tokenizer: %d vocabularies\n", n_vocabs);
}

static void check(const qd_tokenizer_t *t, int is_lossless, const char *text,
                  size_t len, int add_special, int parse_special)
{
    int32_t stack[512];
    int32_t *toks = stack;
    int cap = 512;
    int n = qd_tokenize(t, text, len, add_special, parse_special, toks, cap);
    if (n > cap) {
        cap = n;
        toks = malloc((size_t)cap * sizeof *toks);
        n = qd_tokenize(t, text, len, add_special, parse_special, toks, cap);
        if (n != cap)
            __builtin_trap(); /* the second call must agree */
    }
    if (n < 0)
        goto out;
    int32_t nv = qd_tokenizer_n_vocab(t);
    size_t out_cap = (size_t)n * 128 + 256, o = 0;
    char *out = malloc(out_cap);
    qd_detok_t d;
    qd_detok_init(&d, t);
    for (int i = 0; i < n; i++) {
        if (toks[i] < 0 || toks[i] >= nv)
            __builtin_trap();
        int k = qd_detok_push(&d, t, toks[i], out + o, 128);
        if (k < 0 || k > 128)
            __builtin_trap();
        o += (size_t)k;
    }
    int k = qd_detok_flush(&d, out + o, 128);
    if (k < 0 || k > 128)
        __builtin_trap();
    o += (size_t)k;
    if (!fz_utf8_valid(out, o))
        __builtin_trap();
    /* Byte-level BPE loses nothing: valid UTF-8 comes back as it went in. */
    if (is_lossless && !add_special && !parse_special &&
        fz_utf8_valid(text, len) && !memchr(text, 0, len) &&
        (o != len || memcmp(out, text, len)))
        __builtin_trap();
    free(out);
out:
    if (toks != stack)
        free(toks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!n_vocabs)
        load_all();
    if (size < 1)
        return 0;
    int v = (data[0] >> 1) % n_vocabs;
    const char *text = (const char *)data + 1;
    check(vocabs[v], lossless[v], text, size - 1, data[0] & 1, 0);
    check(vocabs[v], lossless[v], text, size - 1, data[0] & 1, 1);
    return 0;
}
