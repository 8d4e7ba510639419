/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader: open arbitrary bytes
 * and, when they are accepted, touch every kv (format it, walk its arrays,
 * nested ones included), every tensor (find it by name, read its first and
 * last data byte) and copy every kv through the writer, so that whatever
 * the reader accepts is safe to use.
 *
 *   make fuzz FUZZ_SECONDS=60
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/gguf.h"

static volatile uint64_t sink;

static void walk_arr(const qd_gguf_arr_t *a, int depth)
{
    for (uint64_t j = 0; j < a->n; j++) {
        if (a->elem_type == QD_GGUF_STRING) {
            size_t len;
            const char *s = qd_gguf_arr_str(a, j, &len);
            sink += len + (s && len ? (unsigned char)s[len - 1] : 0) +
                    (s ? (unsigned char)s[len] : 0);
        } else if (a->elem_type == QD_GGUF_ARRAY) {
            qd_gguf_arr_t sub;
            if (qd_gguf_arr_sub(a, j, &sub) == 0)
                walk_arr(&sub, depth + 1);
        } else {
            sink += (uint64_t)qd_gguf_arr_i64(a, j);
            double d = qd_gguf_arr_f64(a, j);
            uint64_t bits;
            memcpy(&bits, &d, sizeof bits);
            sink += bits;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qd_gguf_t *g = NULL;
    if (qd_gguf_open_mem(data, size, &g))
        return 0;
    char buf[256];
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    for (int64_t i = 0; i < qd_gguf_n_kv(g); i++) {
        const char *key = qd_gguf_kv_key(g, i);
        sink += strlen(key);
        if (qd_gguf_find_key(g, key) != i)
            __builtin_trap();
        qd_gguf_kv_format(g, i, buf, sizeof buf, 4);
        qd_gguf_arr_t a;
        if (qd_gguf_kv_arr(g, i, &a) == 0)
            walk_arr(&a, 0);
        uint32_t u;
        int32_t s;
        uint64_t q;
        float f;
        int b;
        const char *str;
        size_t len;
        qd_gguf_get_u32(g, key, &u);
        qd_gguf_get_i32(g, key, &s);
        qd_gguf_get_u64(g, key, &q);
        qd_gguf_get_f32(g, key, &f);
        qd_gguf_get_bool(g, key, &b);
        if (qd_gguf_get_str(g, key, &str, &len) == 0 && str[len] != '\0')
            __builtin_trap();
        if (w)
            qd_gguf_writer_copy_kv(w, g, i);
    }
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        if (qd_gguf_find_tensor(g, t->name) != t)
            __builtin_trap();
        const uint8_t *p = t->data;
        sink += p[0] + p[t->n_bytes - 1];
        if (w)
            qd_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
                                      t->data, t->n_bytes, 0);
    }
    /* Whatever was accepted, re-written, must read back the same. */
    void *out;
    size_t n_out;
    if (w && qd_gguf_writer_write_mem(w, &out, &n_out) == 0) {
        qd_gguf_t *g2 = NULL;
        if (qd_gguf_open_mem(out, n_out, &g2) == 0) {
            if (qd_gguf_n_kv(g2) != qd_gguf_n_kv(g) ||
                qd_gguf_n_tensors(g2) != qd_gguf_n_tensors(g))
                __builtin_trap();
            qd_gguf_close(g2);
        } else {
            __builtin_trap(); /* a rewrite of a valid file must be valid */
        }
        qd_free(out);
    }
    qd_gguf_writer_destroy(w);
    qd_gguf_close(g);
    return 0;
}
