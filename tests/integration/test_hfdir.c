/*
 * test_hfdir.c — HF/AWQ checkpoint directories as models: qd_model_load
 * on a directory, `quantd run -m DIR`, `quantd serve -m DIR`.
 *
 * gen-model's tiny F16 Llama is exported to AutoAWQ or AutoGPTQ with
 * a byte-level BPE tokenizer.json written here (256 byte tokens, one
 * merge, <s> and </s>) and a tokenizer_config.json with a ChatML template.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_client.h"
#include "quantd/common.h"
#include "quantd/engine.h"
#include "quantd/genmodel.h"
#include "quantd/gguf.h"
#include "quantd/hf_import.h"
#include "quantd/quant.h"
#include "quantd/tokenizer.h"

static const char *tmp_dir(void)
{
    return getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
}

/* GPT-2's byte → code point table of byte-level BPE. */
static void byte_cps(int cp[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                        (b >= 174 && b <= 255);
        cp[b] = printable ? b : 256 + n++;
    }
}

static void utf8(int cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static void write_tokenizer(const char *dir) /* dir < 1024 bytes */
{
    int cp[256];
    byte_cps(cp);
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        utf8(cp[b], s);
        json_object_set_new(vocab, s, json_integer(b));
    }
    json_object_set_new(vocab, "<s>", json_integer(256));
    json_object_set_new(vocab, "</s>", json_integer(257));
    json_object_set_new(vocab, "he", json_integer(258));
    json_t *tj = json_pack(
        "{s:s,s:[{s:i,s:s,s:b,s:b,s:b,s:b,s:b},{s:i,s:s,s:b,s:b,s:b,s:b,s:b}],"
        "s:n,s:{s:s,s:b,s:b,s:b},s:{s:s},s:{s:s,s:o,s:[s],s:b,s:b}}",
        "version", "1.0", "added_tokens", "id", 256, "content", "<s>",
        "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
        "special", 1, "id", 257, "content", "</s>", "single_word", 0,
        "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1,
        "normalizer", "pre_tokenizer", "type", "ByteLevel",
        "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "decoder",
        "type", "ByteLevel", "model", "type", "BPE", "vocab", vocab, "merges",
        "h e", "byte_fallback", 0, "ignore_merges", 0);
    cr_assert(tj);
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(tj, p, 0), 0);
    json_decref(tj);
    json_t *cfg = json_pack(
        "{s:s,s:s,s:b,s:b,s:s}", "bos_token", "<s>", "eos_token", "</s>",
        "add_bos_token", 1, "add_eos_token", 0, "chat_template",
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + "
        "m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
        "{% endif %}");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    cr_assert_eq(json_dump_file(cfg, p, 0), 0);
    json_decref(cfg);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static char g_src[1024], g_dir[1024], g_tok[1024];

/* src GGUF + AWQ (or GPTQ) directory (with tokenizer files). */
static void make_dir(int32_t n_vocab, qd_hf_export_fmt_t fmt)
{
    snprintf(g_src, sizeof g_src, "%s/hfdir-src-%d.gguf", tmp_dir(),
             (int)getpid());
    snprintf(g_dir, sizeof g_dir, "%s/hfdir-awq-%d", tmp_dir(),
             (int)getpid());
    snprintf(g_tok, sizeof g_tok, "%s/hfdir-tok-%d", tmp_dir(),
             (int)getpid());
    rm_rf(g_dir);
    rm_rf(g_tok);
    qd_genmodel_params_t p;
    cr_assert_eq(qd_genmodel_preset("tiny", &p), 0);
    if (n_vocab)
        p.n_vocab = n_vocab;
    cr_assert_eq(qd_genmodel_write(&p, g_src), 0, "%s", qd_errmsg());
    cr_assert_eq(mkdir(g_tok, 0755), 0);
    write_tokenizer(g_tok);
    char tj[1100], tc[1100];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", g_tok);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", g_tok);
    qd_hf_export_params_t ep;
    qd_hf_export_params_default(&ep);
    ep.format = fmt;
    ep.tokenizer_json = tj;
    ep.tokenizer_config = tc;
    cr_assert_eq(qd_hf_export(g_src, g_dir, &ep), 0, "%s", qd_errmsg());
}

static void make_awq_dir(int32_t n_vocab)
{
    make_dir(n_vocab, QD_HF_EXPORT_AWQ);
}

static void serve_chat(void);

static void cleanup(void)
{
    unlink(g_src);
    rm_rf(g_dir);
    rm_rf(g_tok);
}

/* Greedy-decode prompt + n steps; logits of the last prompt token in
 * *first (n_vocab floats, caller frees). */
static void decode(const qd_model_t *m, const int32_t *prompt, int n_prompt,
                   int n, int32_t *out, float **first)
{
    qd_ctx_params_t cp;
    qd_ctx_params_default(&cp);
    cp.n_ctx = 64;
    cp.n_seq_max = 1;
    cp.n_threads = 1;
    qd_ctx_t *c;
    cr_assert_eq(qd_ctx_create(m, &cp, &c), 0, "%s", qd_errmsg());
    int32_t n_vocab = qd_model_hparams(m)->n_vocab;
    int32_t toks[64], pos[64], seq[64];
    int8_t keep[64];
    for (int i = 0; i < n_prompt; i++)
        toks[i] = prompt[i], pos[i] = i, seq[i] = 0, keep[i] = 0;
    keep[n_prompt - 1] = 1;
    qd_batch_t b = {n_prompt, toks, pos, seq, keep};
    int32_t p = n_prompt;
    for (int step = 0; step < n; step++) {
        cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
        const float *l = qd_ctx_logits(c, 0);
        if (step == 0) {
            *first = malloc((size_t)n_vocab * sizeof(float));
            memcpy(*first, l, (size_t)n_vocab * sizeof(float));
        }
        int best = 0;
        for (int v = 0; v < n_vocab; v++) {
            cr_assert(isfinite(l[v]));
            if (l[v] > l[best])
                best = v;
        }
        out[step] = best;
        toks[0] = best, pos[0] = p++, seq[0] = 0, keep[0] = 1;
        b.n_tokens = 1;
    }
    qd_ctx_free(c);
}

Test(hfdir, load_awq_directory_and_decode, .fini = cleanup)
{
    make_awq_dir(0);
    cr_assert(qd_hf_is_model_dir(g_dir));
    qd_model_t *m, *ref;
    cr_assert_eq(qd_model_open(g_dir, &m), 0, "%s", qd_errmsg());
    cr_assert_str_eq(qd_model_arch_name(m), "llama");
    const qd_tokenizer_t *tok = qd_model_tokenizer(m);
    cr_assert_eq(qd_tokenizer_n_vocab(tok), 259);
    cr_assert_eq(qd_tokenizer_bos(tok), 256);
    cr_assert_eq(qd_tokenizer_eos(tok), 257);
    cr_assert(qd_tokenizer_chat_template(tok) &&
              strstr(qd_tokenizer_chat_template(tok), "im_start"));
    int32_t t[16];
    int n = qd_tokenize(tok, "hello", 5, 1, 1, t, 16);
    cr_assert_eq(n, 5, "%d tokens", n);
    cr_assert_eq(t[0], 256);
    cr_assert_eq(t[1], 258); /* "he" merged */
    cr_assert_eq(t[2], 'l');
    cr_assert_eq(t[3], 'l');
    cr_assert_eq(t[4], 'o');

    /* 4-bit AWQ weights vs the F16 source: same model, small error. */
    cr_assert_eq(qd_model_load(g_src, &ref), 0, "%s", qd_errmsg());
    int32_t out[4], out_ref[4];
    float *l, *l_ref;
    decode(m, t, n, 4, out, &l);
    decode(ref, t, n, 4, out_ref, &l_ref);
    int32_t nv = qd_model_hparams(m)->n_vocab;
    double dot = 0, a2 = 0, b2 = 0;
    for (int v = 0; v < nv; v++) {
        dot += (double)l[v] * l_ref[v];
        a2 += (double)l[v] * l[v];
        b2 += (double)l_ref[v] * l_ref[v];
    }
    double cosv = dot / sqrt(a2 * b2);
    cr_log_info("AWQ vs F16 logits: cosine %.4f; greedy %d %d %d %d vs "
                "%d %d %d %d",
                cosv, out[0], out[1], out[2], out[3], out_ref[0], out_ref[1],
                out_ref[2], out_ref[3]);
    cr_assert_gt(cosv, 0.9, "cosine %.4f", cosv);
    free(l);
    free(l_ref);
    qd_model_free(ref);
    qd_model_free(m);
}

/* The imported AWQ g128 directory (layers as Q4_G128, quantd's own type)
 * against the same GGUF with those layers dequantized to F32: the import's
 * kernels (8-bit activations, Q4_G128 dots and tiles) may differ only by
 * activation rounding. */
Test(hfdir, awq_g128_logits_match_dequantized_weights, .fini = cleanup)
{
    make_awq_dir(0);
    qd_hf_import_result_t r;
    cr_assert_eq(qd_hf_import(g_dir, NULL, &r), 0, "%s", qd_errmsg());
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(r.gguf_path, &g), 0, "%s", qd_errmsg());
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    cr_assert_not_null(w);
    for (int64_t i = 0; i < qd_gguf_n_kv(g); i++)
        cr_assert_eq(qd_gguf_writer_copy_kv(w, g, i), 0);
    int n_g128 = 0;
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        if (t->type != QD_TYPE_Q4_G128) {
            cr_assert_eq(qd_gguf_writer_add_tensor(w, t->name, t->type,
                                                   t->n_dims, t->ne, t->data,
                                                   t->n_bytes, 0), 0);
            continue;
        }
        n_g128++;
        int64_t n = t->ne[0] * t->ne[1];
        float *f = malloc((size_t)n * sizeof *f);
        qd_type_traits(t->type)->to_float(t->data, f, n);
        cr_assert_eq(qd_gguf_writer_add_tensor(w, t->name, QD_TYPE_F32,
                                               t->n_dims, t->ne, f,
                                               (size_t)n * sizeof *f, 1), 0);
        free(f);
    }
    cr_assert_eq(n_g128, 14, "%d Q4_G128 layers", n_g128);
    char deq[1100];
    snprintf(deq, sizeof deq, "%s/hfdir-deq-%d.gguf", tmp_dir(), (int)getpid());
    cr_assert_eq(qd_gguf_writer_write(w, deq), 0, "%s", qd_errmsg());
    qd_gguf_writer_destroy(w);
    qd_gguf_close(g);

    qd_model_t *m, *ref;
    cr_assert_eq(qd_model_open(g_dir, &m), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_model_load_hf_tokenizer(deq, r.tokenizer_json,
                                            r.tokenizer_config, &ref),
                 0, "%s", qd_errmsg());
    int32_t t[16];
    int n = qd_tokenize(qd_model_tokenizer(m), "hello there, ok", 15, 1, 1, t, 16);
    cr_assert_gt(n, 4);
    int32_t out[4], out_ref[4];
    float *l, *l_ref;
    decode(m, t, n, 4, out, &l);
    decode(ref, t, n, 4, out_ref, &l_ref);
    int32_t nv = qd_model_hparams(m)->n_vocab;
    double maxd = 0, maxl = 0;
    for (int v = 0; v < nv; v++) {
        maxd = fmax(maxd, fabs((double)l[v] - l_ref[v]));
        maxl = fmax(maxl, fabs((double)l_ref[v]));
    }
    cr_log_info("AWQ g128 (Q4_G128) vs dequantized F32: max |dlogit| %.4f "
                "(max |logit| %.3f); greedy %d %d %d %d vs %d %d %d %d",
                maxd, maxl, out[0], out[1], out[2], out[3], out_ref[0],
                out_ref[1], out_ref[2], out_ref[3]);
    cr_assert_lt(maxd, 0.05 * maxl, "max |dlogit| %g of %g", maxd, maxl);
    free(l);
    free(l_ref);
    qd_model_free(ref);
    qd_model_free(m);
    qd_hf_import_result_free(&r);
    unlink(deq);
}

Test(hfdir, directory_without_tokenizer_is_refused, .fini = cleanup)
{
    make_awq_dir(0);
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer.json", g_dir);
    cr_assert_eq(unlink(p), 0);
    qd_model_t *m;
    cr_assert_lt(qd_model_open(g_dir, &m), 0);
    cr_assert_null(m);
    cr_assert(strstr(qd_errmsg(), "tokenizer.json"), "%s", qd_errmsg());
}

Test(hfdir, run_and_serve_directory, .fini = cleanup)
{
    const char *bin = getenv("QD_BIN");
    if (!bin)
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    /* run: the embedding (512 rows) is larger than the tokenizer (259). */
    make_awq_dir(0);
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "'%s' run -m '%s' -p hello -n 3 -t 1 --temp 0 >'%s.run.log' 2>&1",
             bin, g_dir, g_dir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "quantd run -m DIR: %d",
              st);

    /* serve: a vocabulary that matches the embedding (the scheduler samples
     * over all embedding rows). */
    cleanup();
    make_awq_dir(259);
    serve_chat();
}

/* The same for an AutoGPTQ directory (sym: repacked to Q4_0). */
Test(hfdir, serve_gptq_directory, .fini = cleanup)
{
    if (!getenv("QD_BIN"))
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    make_dir(259, QD_HF_EXPORT_GPTQ);
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", g_dir);
    json_t *cfg = json_load_file(p, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(cfg, "quantization_config"),
                         "quant_method")),
                     "gptq");
    json_decref(cfg);
    serve_chat();
}

/* serve -m g_dir; one chat completion; its prompt token count equals the
 * server's own tokenization of the rendered template. */
static void serve_chat(void)
{
    tc_daemon_t d;
    cr_assert_eq(tc_daemon_start_model(&d, g_dir, NULL), 0,
                 "serve -m DIR did not start");
    const char *name = strrchr(g_dir, '/') + 1;
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\"}],\"max_tokens\":3}",
             name);
    tc_resp_t r;
    cr_assert_eq(tc_fetch(d.port, "POST", "/v1/chat/completions", NULL, body,
                          &r),
                 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    /* the request samples with a random seed: the text may hold any
     * byte-fallback token, NUL included (\u0000 is valid JSON) */
    json_t *j = json_loads(r.body, JSON_ALLOW_NUL, NULL);
    json_t *msg = json_object_get(
        json_array_get(json_object_get(j, "choices"), 0), "message");
    cr_assert(json_is_string(json_object_get(msg, "content")), "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(msg, "role")),
                     "assistant");
    int got = (int)json_integer_value(
        json_object_get(json_object_get(j, "usage"), "prompt_tokens"));
    json_decref(j);
    tc_resp_free(&r);
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"content\":\"<|im_start|>user\\nhi"
             "<|im_end|>\\n<|im_start|>assistant\\n\",\"add_special\":true}",
             name);
    cr_assert_eq(tc_fetch(d.port, "POST", "/tokenize", NULL, body, &r), 0);
    j = json_loads(r.body, JSON_ALLOW_NUL, NULL);
    int want = (int)json_array_size(json_object_get(j, "tokens"));
    json_decref(j);
    tc_resp_free(&r);
    tc_daemon_stop(&d);
    cr_assert_eq(got, want);
}
