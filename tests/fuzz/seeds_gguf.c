/*
 * seeds_gguf.c — writes small, valid GGUF files into DIR as the fuzzer's
 * seed corpus (`make fuzz` runs it): every value type, nested arrays,
 * version 2, a non-default alignment, a vocab-only file and an empty one.
 *
 *   seeds_gguf DIR
 */
#include <stdio.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/gguf.h"

static int save(qd_gguf_writer_t *w, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    int rc = w ? qd_gguf_writer_write(w, path) : QD_ENOMEM;
    if (rc)
        fprintf(stderr, "seeds_gguf: %s: %s\n", path, qd_errmsg());
    qd_gguf_writer_destroy(w);
    return rc;
}

static void tokens(qd_gguf_writer_t *w)
{
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "", "bc"};
    qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 6);
    float scores[6] = {0, 0, 0, -1.5f, -2, -3};
    qd_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QD_GGUF_FLOAT32, scores,
                           6);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0xffffffffu);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seeds_gguf DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int rc = 0;
    static uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31 + 7);

    qd_gguf_writer_t *w = qd_gguf_writer_create();
    rc |= save(w, dir, "empty");

    w = qd_gguf_writer_create();
    qd_gguf_writer_set_str(w, "general.architecture", "llama");
    tokens(w);
    rc |= save(w, dir, "vocab");

    w = qd_gguf_writer_create();
    qd_gguf_writer_set_version(w, 2);
    qd_gguf_writer_set_u32(w, "u32", 7);
    qd_gguf_writer_set_i32(w, "i32", -7);
    qd_gguf_writer_set_u64(w, "u64", 1ull << 40);
    qd_gguf_writer_set_f32(w, "f32", 0.5f);
    qd_gguf_writer_set_bool(w, "bool", 1);
    qd_gguf_writer_set_str(w, "str", "hello");
    qd_gguf_writer_set_str(w, "empty", "");
    for (int t = 0; t < QD_GGUF_VTYPE_COUNT; t++) {
        if (t == QD_GGUF_STRING || t == QD_GGUF_ARRAY)
            continue;
        char key[32];
        snprintf(key, sizeof key, "arr.%d", t);
        qd_gguf_writer_set_arr(w, key, (qd_gguf_vtype_t)t, data, 3);
    }
    rc |= save(w, dir, "values-v2");

    /* nested arrays: only a reader can hand them to the writer */
    static const uint8_t nested[] = {
        'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0 tensors */
        1, 0, 0, 0, 0, 0, 0, 0,                                 /* 1 kv */
        4, 0, 0, 0, 0, 0, 0, 0, 'n', 'e', 's', 't', 9, 0, 0, 0, /* array */
        9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,   /* of 2 arrays */
        5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, /* [i32 42] */
        8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'x',
    };
    qd_gguf_t *g;
    if (qd_gguf_open_mem(nested, sizeof nested, &g) == 0) {
        w = qd_gguf_writer_create();
        qd_gguf_writer_copy_kv(w, g, 0);
        qd_gguf_close(g);
        rc |= save(w, dir, "nested");
    } else {
        fprintf(stderr, "seeds_gguf: nested: %s\n", qd_errmsg());
        rc = 1;
    }

    w = qd_gguf_writer_create();
    qd_gguf_writer_set_str(w, "general.architecture", "llama");
    qd_gguf_writer_set_u32(w, "llama.block_count", 1);
    tokens(w);
    qd_gguf_writer_add_tensor(w, "token_embd.weight", QD_TYPE_F32, 2,
                              (int64_t[]){4, 6}, data, 96, 0);
    qd_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", QD_TYPE_Q4_0, 2,
                              (int64_t[]){32, 2}, data, 36, 0);
    qd_gguf_writer_add_tensor(w, "blk.0.ffn.weight", QD_TYPE_F16, 3,
                              (int64_t[]){2, 3, 2}, data, 24, 0);
    rc |= save(w, dir, "model");

    w = qd_gguf_writer_create();
    qd_gguf_writer_set_u32(w, "general.alignment", 64);
    qd_gguf_writer_add_tensor(w, "k", QD_TYPE_Q4_K, 1, (int64_t[]){256},
                              data, 144, 0);
    qd_gguf_writer_add_tensor(w, "k6", QD_TYPE_Q6_K, 4,
                              (int64_t[]){256, 1, 1, 1}, data, 210, 0);
    qd_gguf_writer_add_tensor(w, "q8", QD_TYPE_Q8_0, 1, (int64_t[]){32},
                              data, 34, 0);
    rc |= save(w, dir, "align64");
    return rc ? 1 : 0;
}
