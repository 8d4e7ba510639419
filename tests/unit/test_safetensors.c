/* test_safetensors.c — safetensors reader validation, writer round trip,
 * sharded directories, HF config parsing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/hfconfig.h"
#include "quantd/safetensors.h"

/* 8-byte length (hlen, or strlen(json) when hlen == UINT64_MAX) + json +
 * data_len zero bytes. Caller frees. */
static uint8_t *mk(const char *json, size_t data_len, uint64_t hlen,
                   size_t *n)
{
    size_t jl = strlen(json);
    if (hlen == UINT64_MAX)
        hlen = jl;
    *n = 8 + jl + data_len;
    uint8_t *b = calloc(1, *n);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, json, jl);
    return b;
}

static void expect_bad(const char *json, size_t data_len, uint64_t hlen,
                       const char *needle)
{
    size_t n;
    uint8_t *b = mk(json, data_len, hlen, &n);
    qd_st_t *st = (qd_st_t *)1;
    int rc = qd_st_open_mem(b, n, &st);
    cr_expect_eq(rc, QD_EFORMAT, "accepted: %s", json);
    cr_expect_null(st);
    cr_expect(strstr(qd_errmsg(), needle) != NULL,
              "message '%s' lacks '%s' (header %s)", qd_errmsg(), needle,
              json);
    free(b);
}

#define T8 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"

Test(safetensors, header_length_huge)
{
    expect_bad("{}", 0, (uint64_t)1 << 40, "exceeds the limit");
}

Test(safetensors, header_length_past_eof)
{
    expect_bad("{}", 0, 1000, "past end of file");
}

Test(safetensors, file_too_short)
{
    qd_st_t *st;
    uint8_t b[5] = {0};
    cr_expect_eq(qd_st_open_mem(b, 5, &st), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "too short"));
    cr_expect_eq(qd_st_open_mem(b, 0, &st), QD_EFORMAT);
}

Test(safetensors, not_json)
{
    expect_bad("{\"a\": nope}", 0, UINT64_MAX, "not valid JSON");
}

Test(safetensors, not_object)
{
    expect_bad("[1, 2, 3]", 0, UINT64_MAX, "not a JSON object");
}

Test(safetensors, duplicate_key)
{
    expect_bad("{\"a\":" T8 "[0,8]},\"a\":" T8 "[8,16]}}", 16, UINT64_MAX,
               "duplicate");
}

Test(safetensors, unknown_dtype)
{
    expect_bad("{\"w\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,"
               "8]}}", 8, UINT64_MAX, "tensor 'w': unknown dtype 'F7'");
}

Test(safetensors, shape_overflow)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,"
               "16],\"data_offsets\":[0,8]}}", 8, UINT64_MAX,
               "tensor 'w': shape product overflows");
    expect_bad("{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
               "\"data_offsets\":[0,8]}}", 8, UINT64_MAX,
               "tensor 'w': byte size overflows");
}

Test(safetensors, negative_shape)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,"
               "8]}}", 8, UINT64_MAX, "tensor 'w': shape[0]");
}

Test(safetensors, offsets_out_of_range)
{
    expect_bad("{\"w\":" T8 "[8,0]}}", 8, UINT64_MAX,
               "tensor 'w': data_offsets [8, 0] out of range");
    expect_bad("{\"w\":" T8 "[1000,1008]}}", 8, UINT64_MAX,
               "tensor 'w': data [1000, 1008) runs past end of file");
}

Test(safetensors, overlapping)
{
    expect_bad("{\"a\":" T8 "[0,8]},\"b\":" T8 "[4,12]}}", 12, UINT64_MAX,
               "tensor 'b': data [4, 12) overlaps tensor 'a'");
}

Test(safetensors, gap)
{
    expect_bad("{\"a\":" T8 "[0,8]},\"b\":" T8 "[12,20]}}", 20, UINT64_MAX,
               "gap of 4 bytes before tensor 'b'");
}

Test(safetensors, not_covering)
{
    expect_bad("{\"a\":" T8 "[0,8]}}", 11, UINT64_MAX,
               "3 trailing bytes after the last tensor");
}

Test(safetensors, size_mismatch)
{
    expect_bad("{\"a\":" T8 "[0,12]}}", 12, UINT64_MAX,
               "tensor 'a': data_offsets span 12 bytes but shape and dtype "
               "F32 need 8");
}

Test(safetensors, truncated_data)
{
    expect_bad("{\"a\":" T8 "[0,8]},\"b\":" T8 "[8,16]}}", 13, UINT64_MAX,
               "tensor 'b': data [8, 16) runs past end of file");
}

Test(safetensors, bad_metadata_and_fields)
{
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, UINT64_MAX,
               "__metadata__ key 'k' is not a string");
    expect_bad("{\"__metadata__\":[]}", 0, UINT64_MAX,
               "__metadata__ is not a JSON object");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, UINT64_MAX,
               "tensor 'a': needs");
    expect_bad("{\"a\":" T8 "[0,8.5]}}", 8, UINT64_MAX,
               "tensor 'a': data_offsets must be two");
    expect_bad("{\"a\":7}", 0, UINT64_MAX, "tensor 'a': entry is not");
}

Test(safetensors, empty_and_zero_size_ok)
{
    size_t n;
    uint8_t *b = mk("{\"__metadata__\":{\"format\":\"pt\"},\"z\":{\"dtype\":"
                    "\"F16\",\"shape\":[0,4],\"data_offsets\":[0,0]},\"a\":"
                    T8 "[0,8]}}  ", 8, UINT64_MAX, &n);
    qd_st_t *st;
    cr_assert_eq(qd_st_open_mem(b, n, &st), 0, "%s", qd_errmsg());
    cr_expect_eq(qd_st_n_tensors(st), 2);
    cr_expect_str_eq(qd_st_metadata(st, "format"), "pt");
    cr_expect_eq(qd_st_find(st, "z")->numel, 0);
    cr_expect_eq(qd_st_find(st, "a")->n_bytes, 8);
    cr_expect_null(qd_st_find(st, "nope"));
    qd_st_close(st);
    qd_st_close(NULL);
    free(b);
}

static const char *tmpdir(void)
{
    const char *t = getenv("QD_TMP");
    return t && t[0] ? t : "/tmp";
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

Test(safetensors, writer_round_trip_and_truncations)
{
    char path[512];
    snprintf(path, sizeof path, "%s/st-rt-%d.safetensors", tmpdir(),
             (int)getpid());
    float a[6] = {1, 2, 3, 4, 5, -6.5f};
    uint16_t h[4] = {0x3c00, 0x4000, 0xc000, 0x0001};
    int32_t s = -77;
    int8_t i8[3] = {-1, 0, 1};
    qd_st_writer_t *w = qd_st_writer_create();
    cr_assert_not_null(w);
    cr_assert_eq(qd_st_writer_add(w, "model.a", QD_ST_F32, 2,
                                  (int64_t[]){2, 3}, a, sizeof a, 1), 0);
    cr_assert_eq(qd_st_writer_add(w, "h", QD_ST_F16, 1, (int64_t[]){4}, h,
                                  sizeof h, 0), 0);
    cr_assert_eq(qd_st_writer_add(w, "scalar", QD_ST_I32, 0, NULL, &s,
                                  sizeof s, 1), 0);
    cr_assert_eq(qd_st_writer_add(w, "i8", QD_ST_I8, 1, (int64_t[]){3}, i8,
                                  sizeof i8, 1), 0);
    cr_expect_eq(qd_st_writer_add(w, "h", QD_ST_F16, 1, (int64_t[]){4}, h,
                                  sizeof h, 0), QD_EINVAL);
    cr_expect_eq(qd_st_writer_add(w, "bad", QD_ST_F16, 1, (int64_t[]){3}, h,
                                  sizeof h, 0), QD_EINVAL);
    cr_assert_eq(qd_st_writer_set_metadata(w, "format", "pt"), 0);
    cr_assert_eq(qd_st_writer_write(w, path), 0, "%s", qd_errmsg());
    qd_st_writer_destroy(w);

    qd_st_t *st;
    cr_assert_eq(qd_st_open(path, &st), 0, "%s", qd_errmsg());
    cr_expect_eq(qd_st_n_tensors(st), 4);
    const qd_st_tensor_t *t = qd_st_find(st, "model.a");
    cr_assert_not_null(t);
    cr_expect_eq(t->dtype, QD_ST_F32);
    cr_expect_eq(t->n_dims, 2);
    cr_expect_eq(t->shape[0], 2);
    cr_expect_eq(t->shape[1], 3);
    cr_expect_eq(memcmp(t->data, a, sizeof a), 0);
    t = qd_st_find(st, "h");
    cr_expect_eq(memcmp(t->data, h, sizeof h), 0);
    t = qd_st_find(st, "scalar");
    cr_expect_eq(t->n_dims, 0);
    cr_expect_eq(t->numel, 1);
    cr_expect_eq(memcmp(t->data, &s, 4), 0);
    cr_expect_eq(memcmp(qd_st_find(st, "i8")->data, i8, 3), 0);
    cr_expect_str_eq(qd_st_metadata(st, "format"), "pt");
    /* tensors come back in data order, which is insertion order */
    cr_expect_str_eq(qd_st_tensor(st, 0)->name, "model.a");
    cr_expect_str_eq(qd_st_tensor(st, 3)->name, "i8");
    qd_st_close(st);

    size_t n;
    char *buf = read_all(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (uint8_t)buf[i];
    cr_expect_eq(hlen % 8, 0, "header padded to 8 bytes");
    /* every proper prefix is refused, none crashes */
    for (size_t k = 0; k < n; k++) {
        char *cut = malloc(k ? k : 1);
        memcpy(cut, buf, k);
        cr_expect_neq(qd_st_open_mem(cut, k, &st), 0, "prefix %zu", k);
        free(cut);
    }
    /* flip each header byte: refused or accepted, never a crash */
    for (size_t k = 8; k < 8 + hlen; k++) {
        char *mod = malloc(n);
        memcpy(mod, buf, n);
        mod[k] ^= 0x5a;
        if (qd_st_open_mem(mod, n, &st) == 0)
            qd_st_close(st);
        free(mod);
    }
    free(buf);
    unlink(path);
    cr_expect_eq(qd_st_open(path, &st), QD_ENOENT);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_shard(const char *dir, const char *name, const char *t1,
                        const char *t2)
{
    char p[600];
    float v[2] = {1, 2};
    qd_st_writer_t *w = qd_st_writer_create();
    cr_assert_eq(qd_st_writer_add(w, t1, QD_ST_F32, 1, (int64_t[]){2}, v,
                                  sizeof v, 1), 0);
    cr_assert_eq(qd_st_writer_add(w, t2, QD_ST_F32, 1, (int64_t[]){2}, v,
                                  sizeof v, 1), 0);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(qd_st_writer_write(w, p), 0);
    qd_st_writer_destroy(w);
}

Test(safetensors, sharded_directory)
{
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/st-shards-%d", tmpdir(), (int)getpid());
    mkdir(dir, 0755);
    write_shard(dir, "model-00001-of-00002.safetensors", "a", "b");
    write_shard(dir, "model-00002-of-00002.safetensors", "c", "d");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"metadata\":{},\"weight_map\":{"
                  "\"a\":\"model-00001-of-00002.safetensors\","
                  "\"b\":\"model-00001-of-00002.safetensors\","
                  "\"c\":\"model-00002-of-00002.safetensors\","
                  "\"d\":\"model-00002-of-00002.safetensors\"}}");
    qd_st_set_t *s;
    cr_assert_eq(qd_st_set_open_dir(dir, &s), 0, "%s", qd_errmsg());
    cr_expect_eq(qd_st_set_n_files(s), 2);
    cr_expect_eq(qd_st_set_n_tensors(s), 4);
    cr_expect_not_null(qd_st_set_find(s, "c"));
    cr_expect_null(qd_st_set_find(s, "e"));
    qd_st_set_close(s);

    write_text(p, "{\"weight_map\":{\"a\":\"model-00002-of-00002."
                  "safetensors\"}}");
    cr_expect_eq(qd_st_set_open_dir(dir, &s), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "'a' listed in the index is missing"),
              "%s", qd_errmsg());
    write_text(p, "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    cr_expect_eq(qd_st_set_open_dir(dir, &s), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "not a plain file name"), "%s",
              qd_errmsg());
    write_shard(dir, "model-00002-of-00002.safetensors", "a", "d");
    write_text(p, "{\"weight_map\":{"
                  "\"a\":\"model-00001-of-00002.safetensors\","
                  "\"d\":\"model-00002-of-00002.safetensors\"}}");
    cr_expect_eq(qd_st_set_open_dir(dir, &s), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "'a' appears in two shards"), "%s",
              qd_errmsg());
    unlink(p);
    cr_expect_eq(qd_st_set_open_dir(dir, &s), QD_ENOENT);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

Test(hfconfig, parse_llama3_with_awq)
{
    const char *cfg =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
        "\"hidden_size\":2048,\"num_hidden_layers\":16,"
        "\"num_attention_heads\":32,\"num_key_value_heads\":8,"
        "\"intermediate_size\":8192,\"max_position_embeddings\":131072,"
        "\"vocab_size\":128256,\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,"
        "\"tie_word_embeddings\":true,\"head_dim\":64,\"bos_token_id\":128000,"
        "\"eos_token_id\":128001,\"rope_scaling\":{\"factor\":32.0,"
        "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
        "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
        "\"quantization_config\":{\"quant_method\":\"awq\",\"zero_point\":true,"
        "\"group_size\":128,\"bits\":4,\"version\":\"GEMM\"}}";
    const char *gen = "{\"bos_token_id\":128000,\"eos_token_id\":[128001,"
                      "128008,128009]}";
    qd_hf_config_t c;
    cr_assert_eq(qd_hf_config_parse(cfg, gen, NULL, &c), 0, "%s",
                 qd_errmsg());
    cr_expect_str_eq(c.architecture, "LlamaForCausalLM");
    cr_expect_eq(c.hidden_size, 2048);
    cr_expect_eq(c.n_head_kv, 8);
    cr_expect_eq(c.head_dim, 64);
    cr_expect_eq(c.tie_word_embeddings, 1);
    cr_expect_str_eq(c.rope_type, "llama3");
    cr_expect_float_eq(c.rope_factor, 32.0, 1e-9);
    cr_expect_eq(c.rope_orig_max_pos, 8192);
    cr_expect_eq(c.quant.method, QD_HF_QUANT_AWQ);
    cr_expect_eq(c.quant.group_size, 128);
    cr_expect_str_eq(c.quant.version, "gemm");
    cr_expect_eq(c.n_eos, 3);
    cr_expect_eq(c.eos_ids[2], 128009);
    cr_expect_eq(c.bos_id, 128000);
}

Test(hfconfig, defaults_gptq_file_and_errors)
{
    qd_hf_config_t c;
    const char *cfg = "{\"architectures\":[\"Qwen2ForCausalLM\"],"
                      "\"hidden_size\":256,\"num_hidden_layers\":2,"
                      "\"num_attention_heads\":4,\"intermediate_size\":512,"
                      "\"vocab_size\":1000}";
    cr_assert_eq(qd_hf_config_parse(cfg, NULL,
                                    "{\"bits\":4,\"group_size\":-1,"
                                    "\"desc_act\":true,\"sym\":false,"
                                    "\"quant_method\":\"gptq\"}", &c), 0,
                 "%s", qd_errmsg());
    cr_expect_eq(c.n_head_kv, 4);
    cr_expect_eq(c.head_dim, 64);
    cr_expect_float_eq(c.rope_theta, 10000.0, 1e-9);
    cr_expect_eq(c.quant.method, QD_HF_QUANT_GPTQ);
    cr_expect_eq(c.quant.group_size, -1);
    cr_expect_eq(c.quant.desc_act, 1);
    cr_expect_eq(c.quant.sym, 0);
    cr_expect_eq(c.bos_id, -1);

    cr_expect_eq(qd_hf_config_parse("{\"hidden_size\":1}", NULL, NULL, &c),
                 QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "num_hidden_layers"), "%s", qd_errmsg());
    cr_expect_eq(qd_hf_config_parse("{\"hidden_size\":\"x\"}", NULL, NULL, &c),
                 QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "'hidden_size' must be an integer"));
    cr_expect_eq(qd_hf_config_parse("[]", NULL, NULL, &c), QD_EFORMAT);
    cr_expect_eq(qd_hf_config_parse("{\"a\":1,\"a\":2}", NULL, NULL, &c),
                 QD_EFORMAT);
    char bad[512];
    snprintf(bad, sizeof bad, "%.*s,\"num_key_value_heads\":3}",
             (int)strlen(cfg) - 1, cfg);
    cr_expect_eq(qd_hf_config_parse(bad, NULL, NULL, &c), QD_EFORMAT);
    cr_expect(strstr(qd_errmsg(), "not a multiple"), "%s", qd_errmsg());
    snprintf(bad, sizeof bad, "%.*s,\"quantization_config\":{"
             "\"quant_method\":\"bitsandbytes\"}}", (int)strlen(cfg) - 1, cfg);
    cr_expect_eq(qd_hf_config_parse(bad, NULL, NULL, &c), QD_EUNSUPPORTED);
}
