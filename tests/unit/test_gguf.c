/*
 * test_gguf.c — the GGUF reader and writer: round trips of every value type,
 * getters, formatting, and a long list of malformed files, each of which must
 * be refused with a specific code and a message naming the culprit. Files
 * are built with our writer and then patched, or put together byte by byte.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/gguf.h"

/* ---- helpers ------------------------------------------------------------- */

/* A growable byte buffer for hand-made files. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb_t;

static void bb_put(bb_t *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u32(bb_t *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb_t *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb_t *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_header(bb_t *b, uint32_t version, uint64_t n_tensors,
                      uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void put_u64_at(void *buf, size_t off, uint64_t v)
{
    memcpy((uint8_t *)buf + off, &v, 8);
}
static void put_u32_at(void *buf, size_t off, uint32_t v)
{
    memcpy((uint8_t *)buf + off, &v, 4);
}

/* Offset of the first occurrence of string s (its bytes, after the length)
 * in buf; fails the test when absent. */
static size_t find_bytes(const void *buf, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp((const uint8_t *)buf + i, s, k))
            return i;
    cr_assert_fail("'%s' not found in the file", s);
    return 0;
}

static qd_gguf_writer_t *new_writer(void)
{
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    cr_assert_not_null(w);
    return w;
}

static void write_mem(qd_gguf_writer_t *w, void **buf, size_t *n)
{
    cr_assert_eq(qd_gguf_writer_write_mem(w, buf, n), 0, "%s", qd_errmsg());
    qd_gguf_writer_destroy(w);
}

static void add_f32(qd_gguf_writer_t *w, const char *name, int n_dims,
                    const int64_t *ne)
{
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        n *= ne[d];
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)i * 0.5f;
    cr_assert_eq(qd_gguf_writer_add_tensor(w, name, QD_TYPE_F32, n_dims, ne, x,
                                           (size_t)n * 4, 1),
                 0, "%s", qd_errmsg());
    free(x);
}

/* A small valid model: a few kvs (tokens included) and three tensors. */
static qd_gguf_writer_t *small_writer(void)
{
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b"};
    qd_gguf_writer_t *w = new_writer();
    cr_assert_eq(qd_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    cr_assert_eq(qd_gguf_writer_set_u32(w, "llama.block_count", 2), 0);
    cr_assert_eq(qd_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5),
                 0);
    cr_assert_eq(qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
    add_f32(w, "tok_embd.weight", 2, (int64_t[]){8, 5});
    add_f32(w, "norm.weight", 1, (int64_t[]){8});
    uint8_t q[2 * 18] = {0};
    cr_assert_eq(qd_gguf_writer_add_tensor(w, "blk.0.q.weight", QD_TYPE_Q4_0,
                                           2, (int64_t[]){32, 2}, q, sizeof q,
                                           1),
                 0, "%s", qd_errmsg());
    return w;
}

static void small_file(void **buf, size_t *n) { write_mem(small_writer(), buf, n); }

/* Open must fail with code, and qd_errmsg() must contain each needle. */
static void expect_refused(const void *buf, size_t n, int code,
                           const char *needle1, const char *needle2)
{
    qd_gguf_t *g = (qd_gguf_t *)1;
    qd_clear_errmsg();
    int rc = qd_gguf_open_mem(buf, n, &g);
    cr_expect_eq(rc, code, "expected %s, got %s (%s)", qd_errname(code),
                 qd_errname(rc), qd_errmsg());
    cr_expect_null(g);
    if (rc == 0)
        qd_gguf_close(g);
    if (needle1)
        cr_expect(strstr(qd_errmsg(), needle1), "message '%s' lacks '%s'",
                  qd_errmsg(), needle1);
    if (needle2)
        cr_expect(strstr(qd_errmsg(), needle2), "message '%s' lacks '%s'",
                  qd_errmsg(), needle2);
}

static qd_gguf_t *open_ok(const void *buf, size_t n)
{
    qd_gguf_t *g = NULL;
    int rc = qd_gguf_open_mem(buf, n, &g);
    cr_assert_eq(rc, 0, "open failed: %s (%s)", qd_errmsg(), qd_errname(rc));
    return g;
}

/* Offset of a tensor's info record fields, found by its name. */
typedef struct {
    size_t n_dims, ne, type, offset; /* byte offsets in the file */
} tinfo_at_t;

static tinfo_at_t tensor_info_at(const void *buf, size_t n, const char *name,
                                 int n_dims)
{
    tinfo_at_t a;
    a.n_dims = find_bytes(buf, n, name) + strlen(name);
    a.ne = a.n_dims + 4;
    a.type = a.ne + 8 * (size_t)n_dims;
    a.offset = a.type + 4;
    return a;
}

/* ---- round trip ------------------------------------------------------------ */

/* A hand-made file holding nested arrays (which only copy_kv can write):
 * nest = [[1, 2, 3], [], [4]] as i32, deep = [[["x", ""]]], empty arrays of
 * strings and of arrays. */
static bb_t nested_file(void)
{
    bb_t b = {0};
    bb_header(&b, 3, 0, 3);
    bb_str(&b, "test.nest");
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u64(&b, 3);
    bb_u32(&b, QD_GGUF_INT32);
    bb_u64(&b, 3);
    bb_u32(&b, 1);
    bb_u32(&b, 2);
    bb_u32(&b, 3);
    bb_u32(&b, QD_GGUF_INT32);
    bb_u64(&b, 0);
    bb_u32(&b, QD_GGUF_INT32);
    bb_u64(&b, 1);
    bb_u32(&b, 4);
    bb_str(&b, "test.deep");
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u64(&b, 1);
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u64(&b, 1);
    bb_u32(&b, QD_GGUF_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "x");
    bb_str(&b, "");
    bb_str(&b, "test.empty_nest");
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u32(&b, QD_GGUF_ARRAY);
    bb_u64(&b, 0);
    return b;
}

static void check_nested(const qd_gguf_t *g)
{
    qd_gguf_arr_t a, s, s2;
    cr_assert_eq(qd_gguf_get_arr(g, "test.nest", &a), 0);
    cr_assert_eq(a.elem_type, QD_GGUF_ARRAY);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(qd_gguf_arr_sub(&a, 0, &s), 0);
    cr_expect_eq(s.elem_type, QD_GGUF_INT32);
    cr_assert_eq(s.n, 3);
    cr_expect_eq(qd_gguf_arr_i64(&s, 2), 3);
    cr_assert_eq(qd_gguf_arr_sub(&a, 1, &s), 0);
    cr_expect_eq(s.n, 0);
    cr_assert_eq(qd_gguf_arr_sub(&a, 2, &s), 0);
    cr_expect_eq(qd_gguf_arr_i64(&s, 0), 4);
    cr_expect_eq(qd_gguf_arr_sub(&a, 3, &s), QD_EINVAL);
    cr_assert_eq(qd_gguf_get_arr(g, "test.deep", &a), 0);
    cr_assert_eq(qd_gguf_arr_sub(&a, 0, &s), 0);
    cr_assert_eq(qd_gguf_arr_sub(&s, 0, &s2), 0);
    cr_assert_eq(s2.elem_type, QD_GGUF_STRING);
    size_t len = 99;
    cr_expect_str_eq(qd_gguf_arr_str(&s2, 0, NULL), "x");
    cr_expect_str_eq(qd_gguf_arr_str(&s2, 1, &len), "");
    cr_expect_eq(len, 0);
    cr_assert_eq(qd_gguf_get_arr(g, "test.empty_nest", &a), 0);
    cr_expect_eq(a.n, 0);
    cr_expect_eq(a.elem_type, QD_GGUF_ARRAY);
}

Test(gguf, round_trip_every_value_type)
{
    bb_t nb = nested_file();
    qd_gguf_t *src = open_ok(nb.p, nb.n);
    check_nested(src);

    qd_gguf_writer_t *w = new_writer();
    cr_assert_eq(qd_gguf_writer_set_u32(w, "v.u32", 4000000000u), 0);
    cr_assert_eq(qd_gguf_writer_set_i32(w, "v.i32", -123456), 0);
    cr_assert_eq(qd_gguf_writer_set_u64(w, "v.u64", UINT64_MAX - 1), 0);
    cr_assert_eq(qd_gguf_writer_set_f32(w, "v.f32", 1.5e-5f), 0);
    cr_assert_eq(qd_gguf_writer_set_bool(w, "v.true", 1), 0);
    cr_assert_eq(qd_gguf_writer_set_bool(w, "v.false", 0), 0);
    cr_assert_eq(qd_gguf_writer_set_str(w, "v.str", "héllo \"world\""), 0);
    cr_assert_eq(qd_gguf_writer_set_str(w, "v.empty", ""), 0);
    cr_assert_eq(qd_gguf_writer_set_str(w, "v.replaced", "first"), 0);
    cr_assert_eq(qd_gguf_writer_set_str(w, "v.replaced", "second"), 0);
    uint8_t u8[] = {0, 1, 255};
    int8_t i8[] = {-128, 0, 127};
    uint16_t u16[] = {0, 65535};
    int16_t i16[] = {-32768, 32767};
    uint32_t u32[] = {7, 4294967295u};
    int32_t i32[] = {-5, 5};
    float f32[] = {0.25f, -3.0f};
    uint8_t bools[] = {1, 0, 1};
    uint64_t u64[] = {UINT64_MAX};
    int64_t i64[] = {INT64_MIN, -1};
    double f64[] = {1e300, -0.125};
    struct {
        const char *key;
        qd_gguf_vtype_t t;
        const void *d;
        uint64_t n;
    } arrs[] = {
        {"a.u8", QD_GGUF_UINT8, u8, 3},    {"a.i8", QD_GGUF_INT8, i8, 3},
        {"a.u16", QD_GGUF_UINT16, u16, 2}, {"a.i16", QD_GGUF_INT16, i16, 2},
        {"a.u32", QD_GGUF_UINT32, u32, 2}, {"a.i32", QD_GGUF_INT32, i32, 2},
        {"a.f32", QD_GGUF_FLOAT32, f32, 2}, {"a.bool", QD_GGUF_BOOL, bools, 3},
        {"a.u64", QD_GGUF_UINT64, u64, 1}, {"a.i64", QD_GGUF_INT64, i64, 2},
        {"a.f64", QD_GGUF_FLOAT64, f64, 2}, {"a.empty", QD_GGUF_FLOAT32, NULL, 0},
    };
    for (size_t i = 0; i < QD_ARRAY_SIZE(arrs); i++)
        cr_assert_eq(qd_gguf_writer_set_arr(w, arrs[i].key, arrs[i].t,
                                            arrs[i].d, arrs[i].n),
                     0);
    const char *strs[] = {"alpha", "", "γ"};
    cr_assert_eq(qd_gguf_writer_set_arr_str(w, "a.str", strs, 3), 0);
    cr_assert_eq(qd_gguf_writer_set_arr_str(w, "a.str_empty", NULL, 0), 0);
    for (int64_t i = 0; i < qd_gguf_n_kv(src); i++)
        cr_assert_eq(qd_gguf_writer_copy_kv(w, src, i), 0);
    cr_expect_eq(qd_gguf_writer_set_arr(w, "bad", QD_GGUF_STRING, NULL, 0),
                 QD_EINVAL);

    /* Tensors of several types and shapes. */
    add_f32(w, "t.f32", 3, (int64_t[]){4, 3, 2});
    uint16_t h[64];
    for (int i = 0; i < 64; i++)
        h[i] = (uint16_t)(0x3c00 + i);
    cr_assert_eq(qd_gguf_writer_add_tensor(w, "t.f16", QD_TYPE_F16, 2,
                                           (int64_t[]){16, 4}, h, sizeof h, 0),
                 0);
    uint8_t q8[3 * 34], q4k[2 * 144];
    for (size_t i = 0; i < sizeof q8; i++)
        q8[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof q4k; i++)
        q4k[i] = (uint8_t)(i * 7);
    cr_assert_eq(qd_gguf_writer_add_tensor(w, "t.q8_0", QD_TYPE_Q8_0, 1,
                                           (int64_t[]){96}, q8, sizeof q8, 1),
                 0);
    cr_assert_eq(qd_gguf_writer_add_tensor(w, "t.q4_k", QD_TYPE_Q4_K, 4,
                                           (int64_t[]){256, 1, 2, 1}, q4k,
                                           sizeof q4k, 1),
                 0);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    qd_gguf_close(src);
    free(nb.p);

    qd_gguf_t *g = open_ok(buf, n);
    cr_expect_eq(qd_gguf_version(g), 3);
    cr_expect_eq(qd_gguf_alignment(g), 32);
    cr_expect_eq(qd_gguf_data_offset(g) % 32, 0);
    cr_expect_eq(qd_gguf_n_kv(g), 9 + 12 + 2 + 3);
    uint32_t u;
    int32_t i;
    uint64_t q;
    float f;
    int b;
    const char *s;
    size_t len;
    cr_expect_eq(qd_gguf_get_u32(g, "v.u32", &u), 0);
    cr_expect_eq(u, 4000000000u);
    cr_expect_eq(qd_gguf_get_i32(g, "v.i32", &i), 0);
    cr_expect_eq(i, -123456);
    cr_expect_eq(qd_gguf_get_u64(g, "v.u64", &q), 0);
    cr_expect_eq(q, UINT64_MAX - 1);
    cr_expect_eq(qd_gguf_get_f32(g, "v.f32", &f), 0);
    cr_expect_eq(f, 1.5e-5f);
    cr_expect_eq(qd_gguf_get_bool(g, "v.true", &b), 0);
    cr_expect_eq(b, 1);
    cr_expect_eq(qd_gguf_get_bool(g, "v.false", &b), 0);
    cr_expect_eq(b, 0);
    cr_expect_eq(qd_gguf_get_str(g, "v.str", &s, &len), 0);
    cr_expect_str_eq(s, "héllo \"world\"");
    cr_expect_eq(len, strlen("héllo \"world\""));
    cr_expect_eq(qd_gguf_get_str(g, "v.empty", &s, &len), 0);
    cr_expect_str_eq(s, "");
    cr_expect_eq(len, 0);
    cr_expect_eq(qd_gguf_get_str(g, "v.replaced", &s, NULL), 0);
    cr_expect_str_eq(s, "second");

    qd_gguf_arr_t a;
    cr_assert_eq(qd_gguf_get_arr(g, "a.u8", &a), 0);
    cr_expect_eq(a.elem_type, QD_GGUF_UINT8);
    cr_expect_eq(qd_gguf_arr_i64(&a, 2), 255);
    cr_assert_eq(qd_gguf_get_arr(g, "a.i8", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 0), -128);
    cr_assert_eq(qd_gguf_get_arr(g, "a.u16", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 1), 65535);
    cr_assert_eq(qd_gguf_get_arr(g, "a.i16", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 0), -32768);
    cr_assert_eq(qd_gguf_get_arr(g, "a.u32", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 1), 4294967295ll);
    cr_assert_eq(qd_gguf_get_arr(g, "a.i32", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 0), -5);
    cr_assert_eq(qd_gguf_get_arr(g, "a.f32", &a), 0);
    cr_expect_eq(qd_gguf_arr_f64(&a, 0), 0.25);
    cr_expect_eq(qd_gguf_arr_i64(&a, 1), -3);
    cr_assert_eq(qd_gguf_get_arr(g, "a.bool", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 1), 0);
    cr_expect_eq(qd_gguf_arr_f64(&a, 2), 1.0);
    cr_assert_eq(qd_gguf_get_arr(g, "a.u64", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 0), INT64_MAX); /* saturates */
    cr_expect_eq(qd_gguf_arr_f64(&a, 0), 18446744073709551615.0);
    cr_assert_eq(qd_gguf_get_arr(g, "a.i64", &a), 0);
    cr_expect_eq(qd_gguf_arr_i64(&a, 0), INT64_MIN);
    cr_assert_eq(qd_gguf_get_arr(g, "a.f64", &a), 0);
    cr_expect_eq(qd_gguf_arr_f64(&a, 0), 1e300);
    cr_expect_eq(qd_gguf_arr_f64(&a, 5), 0.0); /* out of range */
    cr_assert_eq(qd_gguf_get_arr(g, "a.empty", &a), 0);
    cr_expect_eq(a.n, 0);
    cr_expect_eq(a.elem_type, QD_GGUF_FLOAT32);
    cr_assert_eq(qd_gguf_get_arr(g, "a.str", &a), 0);
    cr_expect_eq(a.n, 3);
    cr_expect_str_eq(qd_gguf_arr_str(&a, 0, NULL), "alpha");
    cr_expect_str_eq(qd_gguf_arr_str(&a, 1, &len), "");
    cr_expect_eq(len, 0);
    cr_expect_str_eq(qd_gguf_arr_str(&a, 2, &len), "γ");
    cr_expect_eq(len, 2);
    cr_expect_null(qd_gguf_arr_str(&a, 3, NULL));
    cr_assert_eq(qd_gguf_get_arr(g, "a.str_empty", &a), 0);
    cr_expect_eq(a.n, 0);
    cr_expect_eq(a.elem_type, QD_GGUF_STRING);
    check_nested(g);

    cr_assert_eq(qd_gguf_n_tensors(g), 4);
    const qd_gguf_tensor_t *t = qd_gguf_tensor(g, 0);
    cr_expect_str_eq(t->name, "t.f32");
    cr_expect_eq(t->n_dims, 3);
    cr_expect_eq(t->ne[0], 4);
    cr_expect_eq(t->ne[2], 2);
    cr_expect_eq(t->ne[3], 1);
    cr_expect_eq(t->n_bytes, 96);
    cr_expect_eq(((const float *)t->data)[5], 2.5f);
    t = qd_gguf_find_tensor(g, "t.f16");
    cr_assert_not_null(t);
    cr_expect_eq(t->type, QD_TYPE_F16);
    cr_expect_eq(memcmp(t->data, h, sizeof h), 0);
    t = qd_gguf_find_tensor(g, "t.q8_0");
    cr_assert_not_null(t);
    cr_expect_eq(t->n_bytes, sizeof q8);
    cr_expect_eq(memcmp(t->data, q8, sizeof q8), 0);
    t = qd_gguf_find_tensor(g, "t.q4_k");
    cr_assert_not_null(t);
    cr_expect_eq(t->type, QD_TYPE_Q4_K);
    cr_expect_eq(t->n_dims, 4);
    cr_expect_eq(memcmp(t->data, q4k, sizeof q4k), 0);
    for (int64_t k = 0; k < qd_gguf_n_tensors(g); k++) {
        t = qd_gguf_tensor(g, k);
        cr_expect_eq(t->offset % 32, 0);
        cr_expect_eq((const uint8_t *)t->data,
                     (const uint8_t *)buf + qd_gguf_data_offset(g) + t->offset);
    }
    cr_expect_null(qd_gguf_find_tensor(g, "nope"));
    cr_expect_null(qd_gguf_tensor(g, 4));
    qd_gguf_close(g);
    qd_free(buf);
}

Test(gguf, getters_check_type_and_range)
{
    qd_gguf_writer_t *w = new_writer();
    qd_gguf_writer_set_i32(w, "neg", -1);
    qd_gguf_writer_set_u32(w, "big", 4000000000u);
    qd_gguf_writer_set_u64(w, "huge", 1ull << 40);
    qd_gguf_writer_set_str(w, "s", "x");
    qd_gguf_writer_set_u32(w, "n", 3);
    uint8_t bytes[] = {1};
    qd_gguf_writer_set_arr(w, "arr", QD_GGUF_UINT8, bytes, 1);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    qd_gguf_t *g = open_ok(buf, n);
    uint32_t u;
    int32_t i;
    uint64_t q;
    float f;
    int b;
    const char *s;
    qd_gguf_arr_t a;
    cr_expect_eq(qd_gguf_get_u32(g, "neg", &u), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_u64(g, "neg", &q), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_i32(g, "neg", &i), 0);
    cr_expect_eq(i, -1);
    cr_expect_eq(qd_gguf_get_i32(g, "big", &i), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_u32(g, "huge", &u), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_u64(g, "huge", &q), 0);
    cr_expect_eq(q, 1ull << 40);
    cr_expect_eq(qd_gguf_get_f32(g, "n", &f), 0);
    cr_expect_eq(f, 3.0f);
    cr_expect_eq(qd_gguf_get_f32(g, "s", &f), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_u32(g, "s", &u), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_bool(g, "n", &b), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_str(g, "n", &s, NULL), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_arr(g, "n", &a), QD_EINVAL);
    cr_expect_eq(qd_gguf_get_u32(g, "absent", &u), QD_ENOTFOUND);
    cr_expect_eq(qd_gguf_get_str(g, "absent", &s, NULL), QD_ENOTFOUND);
    cr_expect_eq(qd_gguf_get_arr(g, "absent", &a), QD_ENOTFOUND);
    cr_expect_eq(qd_gguf_find_key(g, "absent"), -1);
    cr_expect_eq(qd_gguf_find_key(g, "s"), 3);
    cr_expect_null(qd_gguf_kv_key(g, 6));
    cr_expect_eq(qd_gguf_kv_arr(g, 0, &a), QD_EINVAL);
    cr_expect_eq(qd_gguf_kv_arr(g, 5, &a), 0);
    cr_expect_null(qd_gguf_arr_str(&a, 0, NULL)); /* not a string array */
    qd_gguf_close(g);
    qd_free(buf);
}

Test(gguf, kv_format)
{
    static const char *const toks[] = {"<unk>", "<s>", "a\"b\n"};
    qd_gguf_writer_t *w = new_writer();
    qd_gguf_writer_set_arr_str(w, "toks", toks, 3);
    qd_gguf_writer_set_f32(w, "eps", 0.5f);
    qd_gguf_writer_set_bool(w, "flag", 1);
    qd_gguf_writer_set_i32(w, "neg", -7);
    int32_t xs[] = {1, 2, 3, 4};
    qd_gguf_writer_set_arr(w, "xs", QD_GGUF_INT32, xs, 4);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    qd_gguf_t *g = open_ok(buf, n);
    char s[128];
    qd_gguf_kv_format(g, 0, s, sizeof s, 2);
    cr_expect_str_eq(s, "[3 × string] \"<unk>\", \"<s>\", ...");
    qd_gguf_kv_format(g, 0, s, sizeof s, -1);
    cr_expect_str_eq(s, "[3 × string] \"<unk>\", \"<s>\", \"a\\\"b\\n\"");
    qd_gguf_kv_format(g, 1, s, sizeof s, 8);
    cr_expect_str_eq(s, "0.5");
    qd_gguf_kv_format(g, 2, s, sizeof s, 8);
    cr_expect_str_eq(s, "true");
    qd_gguf_kv_format(g, 3, s, sizeof s, 8);
    cr_expect_str_eq(s, "-7");
    int full = qd_gguf_kv_format(g, 4, s, sizeof s, 8);
    cr_expect_str_eq(s, "[4 × i32] 1, 2, 3, 4");
    /* Truncation is snprintf-like: NUL-terminated, full length returned. */
    int k = qd_gguf_kv_format(g, 4, s, 6, 8);
    cr_expect_eq(k, full);
    cr_expect_eq(strlen(s), 5);
    qd_gguf_close(g);
    qd_free(buf);
}

Test(gguf, writer_writes_file_atomically_and_reader_maps_it)
{
    const char *dir = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/gguf-test-%d.gguf", dir, (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    qd_gguf_writer_t *w = small_writer();
    qd_gguf_writer_set_u32(w, "general.alignment", 64);
    qd_gguf_writer_set_version(w, 2);
    cr_assert_eq(qd_gguf_writer_write(w, path), 0, "%s", qd_errmsg());
    void *mem;
    size_t n_mem;
    cr_assert_eq(qd_gguf_writer_write_mem(w, &mem, &n_mem), 0);
    qd_gguf_writer_destroy(w);
    cr_expect_neq(access(path, F_OK), -1);
    cr_expect_eq(access(tmp, F_OK), -1, "temporary file left behind");

    qd_gguf_t *g = NULL;
    cr_assert_eq(qd_gguf_open(path, &g), 0, "%s", qd_errmsg());
    cr_expect_eq(qd_gguf_version(g), 2);
    cr_expect_eq(qd_gguf_alignment(g), 64);
    cr_expect_eq(qd_gguf_file_size(g), n_mem);
    cr_expect_eq(qd_gguf_data_offset(g) % 64, 0);
    cr_assert_eq(qd_gguf_n_tensors(g), 3);
    const qd_gguf_tensor_t *t = qd_gguf_find_tensor(g, "norm.weight");
    cr_assert_not_null(t);
    cr_expect_eq(t->offset % 64, 0);
    cr_expect_eq(((const float *)t->data)[3], 1.5f);
    /* The file and the in-memory image are byte-identical. */
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t *disk = malloc(n_mem + 1);
    cr_expect_eq(fread(disk, 1, n_mem + 1, f), n_mem);
    fclose(f);
    cr_expect_eq(memcmp(disk, mem, n_mem), 0);
    free(disk);
    qd_free(mem);
    qd_gguf_close(g);
    unlink(path);

    cr_expect_eq(qd_gguf_open("/nonexistent/x.gguf", &g), QD_ENOENT);
    cr_expect_null(g);
    cr_expect(strstr(qd_errmsg(), "/nonexistent/x.gguf"));
}

Test(gguf, writer_refuses_bad_tensors)
{
    qd_gguf_writer_t *w = new_writer();
    float x[64] = {0};
    uint8_t q[18] = {0};
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", QD_TYPE_F32, 5,
                                           (int64_t[]){1, 1, 1, 1, 1}, x, 4, 0),
                 QD_EINVAL);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", QD_TYPE_F32, 1,
                                           (int64_t[]){0}, x, 0, 0),
                 QD_EINVAL);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", (qd_type_t)99, 1,
                                           (int64_t[]){4}, x, 16, 0),
                 QD_EINVAL);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", QD_TYPE_Q4_0, 1,
                                           (int64_t[]){33}, q, 18, 0),
                 QD_EINVAL);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", QD_TYPE_F32, 1,
                                           (int64_t[]){4}, x, 15, 0),
                 QD_EINVAL);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "", QD_TYPE_F32, 1,
                                           (int64_t[]){4}, x, 16, 0),
                 QD_EINVAL);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", QD_TYPE_F32, 1,
                                           (int64_t[]){4}, x, 16, 0),
                 0);
    cr_expect_eq(qd_gguf_writer_add_tensor(w, "a", QD_TYPE_F32, 1,
                                           (int64_t[]){4}, x, 16, 0),
                 QD_EINVAL);
    qd_gguf_writer_destroy(w);
    qd_gguf_writer_destroy(NULL);
    qd_gguf_close(NULL);
}

/* Every allocation the reader makes may fail: it must say ENOMEM (or
 * succeed) and leak nothing (ASan checks the leaks). */
Test(gguf, out_of_memory_at_every_allocation)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    int ok = 0;
    for (long k = 0; k < 64 && !ok; k++) {
        qd_gguf_t *g = NULL;
        qd_fail_alloc_after(k);
        int rc = qd_gguf_open_mem(buf, n, &g);
        qd_fail_alloc_after(-1);
        cr_assert(rc == 0 || rc == QD_ENOMEM, "k=%ld rc=%s", k,
                  qd_errname(rc));
        ok = rc == 0;
        qd_gguf_close(g);
    }
    cr_expect(ok, "open never succeeded");
    qd_free(buf);
}

/* ---- malformed files ----------------------------------------------------------- */

Test(gguf_bad, bad_magic)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    memcpy(buf, "GGML", 4);
    expect_refused(buf, n, QD_EFORMAT, "magic", "offset 0");
    qd_free(buf);
}

static void version_case(uint32_t v, int code)
{
    qd_gguf_writer_t *w = small_writer();
    qd_gguf_writer_set_version(w, v);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    char needle[32];
    snprintf(needle, sizeof needle, "version %u", v);
    expect_refused(buf, n, code, needle, NULL);
    qd_free(buf);
}

Test(gguf_bad, version_0) { version_case(0, QD_EFORMAT); }
Test(gguf_bad, version_1) { version_case(1, QD_EUNSUPPORTED); }
Test(gguf_bad, version_99) { version_case(99, QD_EUNSUPPORTED); }

Test(gguf_bad, n_tensors_huge)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    put_u64_at(buf, 8, 1ull << 63);
    expect_refused(buf, n, QD_EFORMAT, "tensor count 9223372036854775808",
                   NULL);
    put_u64_at(buf, 8, UINT64_MAX);
    expect_refused(buf, n, QD_EFORMAT, "tensor count", NULL);
    qd_free(buf);
}

Test(gguf_bad, n_kv_huge)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    put_u64_at(buf, 16, 1ull << 63);
    expect_refused(buf, n, QD_EFORMAT, "kv count 9223372036854775808", NULL);
    /* Large but under the crude bound: fails when the data runs out. */
    put_u64_at(buf, 16, n / 20);
    expect_refused(buf, n, QD_EFORMAT, NULL, NULL);
    qd_free(buf);
}

Test(gguf_bad, string_length_past_eof)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    /* the length of the value of general.architecture */
    size_t at = find_bytes(buf, n, "general.architecture") + 20 + 4;
    put_u64_at(buf, at, n);
    expect_refused(buf, n, QD_EFORMAT, "general.architecture",
                   "runs past end of file");
    put_u64_at(buf, at, UINT64_MAX);
    expect_refused(buf, n, QD_EFORMAT, "general.architecture", NULL);
    /* The same for a key's length. */
    at = find_bytes(buf, n, "general.architecture") - 8;
    put_u64_at(buf, at, UINT64_MAX - 3);
    expect_refused(buf, n, QD_EFORMAT, "kv #0", "runs past end of file");
    qd_free(buf);
}

Test(gguf_bad, array_count_past_eof)
{
    qd_gguf_writer_t *w = small_writer();
    uint32_t xs[4] = {1, 2, 3, 4};
    qd_gguf_writer_set_arr(w, "test.xs", QD_GGUF_UINT32, xs, 4);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    /* count sits after key, value type and element type */
    size_t at = find_bytes(buf, n, "test.xs") + 7 + 4 + 4;
    put_u64_at(buf, at, 1ull << 62); /* × 4 bytes overflows 64 bits */
    expect_refused(buf, n, QD_EFORMAT, "test.xs", "past end of file");
    put_u64_at(buf, at, n / 4);
    expect_refused(buf, n, QD_EFORMAT, "test.xs", "past end of file");
    /* A string array whose count exceeds what the file could hold. */
    at = find_bytes(buf, n, "tokenizer.ggml.tokens") + 21 + 4 + 4;
    put_u64_at(buf, at, UINT64_MAX / 2);
    expect_refused(buf, n, QD_EFORMAT, "tokenizer.ggml.tokens",
                   "past end of file");
    qd_free(buf);
}

Test(gguf_bad, array_nesting_too_deep)
{
    for (int depth = 7; depth <= 9; depth++) {
        bb_t b = {0};
        bb_header(&b, 3, 0, 1);
        bb_str(&b, "test.deep");
        bb_u32(&b, QD_GGUF_ARRAY);
        for (int d = 0; d < depth - 1; d++) {
            bb_u32(&b, QD_GGUF_ARRAY);
            bb_u64(&b, 1);
        }
        bb_u32(&b, QD_GGUF_UINT8);
        bb_u64(&b, 1);
        uint8_t one = 1;
        bb_put(&b, &one, 1);
        if (depth <= 8) {
            qd_gguf_t *g = open_ok(b.p, b.n);
            qd_gguf_close(g);
        } else {
            expect_refused(b.p, b.n, QD_EFORMAT, "test.deep", "nested");
        }
        free(b.p);
    }
}

Test(gguf_bad, alignment_zero_and_not_power_of_two)
{
    for (uint32_t a = 0; a <= 13; a += 13) {
        qd_gguf_writer_t *w = small_writer();
        qd_gguf_writer_set_u32(w, "general.alignment", a);
        void *buf;
        size_t n;
        write_mem(w, &buf, &n);
        char needle[40];
        snprintf(needle, sizeof needle, "general.alignment = %u", a);
        expect_refused(buf, n, QD_EFORMAT, needle, "power of two");
        qd_free(buf);
    }
}

Test(gguf_bad, alignment_not_u32)
{
    qd_gguf_writer_t *w = small_writer();
    qd_gguf_writer_set_str(w, "general.alignment", "32");
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    expect_refused(buf, n, QD_EFORMAT, "general.alignment", "must be u32");
    qd_free(buf);
    w = small_writer();
    qd_gguf_writer_set_u64(w, "general.alignment", 32);
    write_mem(w, &buf, &n);
    expect_refused(buf, n, QD_EFORMAT, "general.alignment", "u64");
    qd_free(buf);
}

Test(gguf_bad, n_dims_5_and_0)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "norm.weight", 1);
    put_u32_at(buf, at.n_dims, 5);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "n_dims = 5");
    put_u32_at(buf, at.n_dims, 0);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "n_dims = 0");
    qd_free(buf);
}

Test(gguf_bad, negative_and_zero_dim)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "tok_embd.weight", 2);
    put_u64_at(buf, at.ne + 8, (uint64_t)-5);
    expect_refused(buf, n, QD_EFORMAT, "tok_embd.weight", "dimension 1 is -5");
    put_u64_at(buf, at.ne + 8, 0);
    expect_refused(buf, n, QD_EFORMAT, "tok_embd.weight", "dimension 1 is 0");
    qd_free(buf);
}

Test(gguf_bad, dims_product_overflows)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "tok_embd.weight", 2);
    put_u64_at(buf, at.ne, 1ull << 40);
    put_u64_at(buf, at.ne + 8, 1ull << 40);
    expect_refused(buf, n, QD_EFORMAT, "tok_embd.weight", "overflows");
    /* Elements and bytes fit, but the file is too short... */
    put_u64_at(buf, at.ne, 1ull << 30);
    put_u64_at(buf, at.ne + 8, 1ull << 30);
    expect_refused(buf, n, QD_EFORMAT, "tok_embd.weight", "past end of file");
    /* ...or the elements fit in int64 but the bytes (× 4) do not. */
    put_u64_at(buf, at.ne, 1ull << 62);
    put_u64_at(buf, at.ne + 8, 1);
    expect_refused(buf, n, QD_EFORMAT, "tok_embd.weight", "byte size overflows");
    qd_free(buf);
}

Test(gguf_bad, type_id_unknown)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "norm.weight", 1);
    put_u32_at(buf, at.type, 99);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "type id 99");
    put_u32_at(buf, at.type, 4); /* a hole in ggml's numbering (old Q4_2) */
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "type id 4");
    put_u32_at(buf, at.type, 0x80000000u);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "type id");
    qd_free(buf);
}

Test(gguf_bad, ne0_not_multiple_of_block)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "blk.0.q.weight", 2);
    put_u64_at(buf, at.ne, 33);
    expect_refused(buf, n, QD_EFORMAT, "blk.0.q.weight", "ne[0] = 33");
    qd_free(buf);
}

Test(gguf_bad, tensor_data_past_eof)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "norm.weight", 1);
    put_u64_at(buf, at.offset, (uint64_t)n & ~(uint64_t)31);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "past end of file");
    put_u64_at(buf, at.offset, UINT64_MAX & ~(uint64_t)31);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "past end of file");
    qd_free(buf);
    /* Or simply a file cut short inside the last tensor. */
    small_file(&buf, &n);
    expect_refused(buf, n - 33, QD_EFORMAT, "blk.0.q.weight",
                   "past end of file");
    qd_free(buf);
}

Test(gguf_bad, tensor_offset_unaligned)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    tinfo_at_t at = tensor_info_at(buf, n, "norm.weight", 1);
    put_u64_at(buf, at.offset, 8);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "alignment");
    qd_free(buf);
}

Test(gguf_bad, overlapping_tensors)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    /* tok_embd occupies [0, 160): put norm.weight at 128. */
    tinfo_at_t at = tensor_info_at(buf, n, "norm.weight", 1);
    put_u64_at(buf, at.offset, 128);
    expect_refused(buf, n, QD_EFORMAT, "norm.weight", "overlaps");
    qd_free(buf);
}

Test(gguf_bad, duplicate_key)
{
    qd_gguf_writer_t *w = small_writer();
    qd_gguf_writer_set_u32(w, "test.dupA", 1);
    qd_gguf_writer_set_u32(w, "test.dupB", 2);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    ((char *)buf)[find_bytes(buf, n, "test.dupB") + 8] = 'A';
    expect_refused(buf, n, QD_EFORMAT, "duplicate key 'test.dupA'", "offset");
    qd_free(buf);
}

Test(gguf_bad, duplicate_tensor_name)
{
    qd_gguf_writer_t *w = small_writer();
    add_f32(w, "extra.A", 1, (int64_t[]){4});
    add_f32(w, "extra.B", 1, (int64_t[]){4});
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    ((char *)buf)[find_bytes(buf, n, "extra.B") + 6] = 'A';
    expect_refused(buf, n, QD_EFORMAT, "duplicate tensor name 'extra.A'",
                   NULL);
    qd_free(buf);
}

Test(gguf_bad, embedded_nul_in_key_and_name)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    ((char *)buf)[find_bytes(buf, n, "llama.block_count") + 5] = '\0';
    expect_refused(buf, n, QD_EFORMAT, "kv #1", "NUL");
    qd_free(buf);
    small_file(&buf, &n);
    ((char *)buf)[find_bytes(buf, n, "norm.weight") + 4] = '\0';
    expect_refused(buf, n, QD_EFORMAT, "tensor #1", "NUL");
    qd_free(buf);
}

Test(gguf_bad, value_type_unknown)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    size_t at = find_bytes(buf, n, "llama.block_count") + 17;
    put_u32_at(buf, at, 13);
    expect_refused(buf, n, QD_EFORMAT, "llama.block_count", "value type 13");
    qd_free(buf);
    /* element type of an array */
    small_file(&buf, &n);
    at = find_bytes(buf, n, "tokenizer.ggml.tokens") + 21 + 4;
    put_u32_at(buf, at, 0xffffffffu);
    expect_refused(buf, n, QD_EFORMAT, "tokenizer.ggml.tokens",
                   "element type");
    qd_free(buf);
}

Test(gguf_bad, token_id_out_of_range)
{
    qd_gguf_writer_t *w = small_writer();
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 5); /* 5 tokens */
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    expect_refused(buf, n, QD_EFORMAT, "tokenizer.ggml.bos_token_id", "5");
    qd_free(buf);
    w = small_writer();
    qd_gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", -2);
    write_mem(w, &buf, &n);
    expect_refused(buf, n, QD_EFORMAT, "tokenizer.ggml.eos_token_id", "-2");
    qd_free(buf);
    w = small_writer();
    qd_gguf_writer_set_str(w, "tokenizer.ggml.pad_token_id", "0");
    write_mem(w, &buf, &n);
    expect_refused(buf, n, QD_EFORMAT, "tokenizer.ggml.pad_token_id",
                   "integer");
    qd_free(buf);
    /* -1 and 0xffffffff mean "no such token" and are accepted. */
    w = small_writer();
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id",
                           0xffffffffu);
    qd_gguf_writer_set_i32(w, "tokenizer.ggml.padding_token_id", -1);
    qd_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 4);
    write_mem(w, &buf, &n);
    qd_gguf_close(open_ok(buf, n));
    qd_free(buf);
}

Test(gguf_bad, tokens_not_a_string_array)
{
    qd_gguf_writer_t *w = new_writer();
    uint32_t ids[] = {1, 2};
    qd_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", QD_GGUF_UINT32, ids, 2);
    void *buf;
    size_t n;
    write_mem(w, &buf, &n);
    expect_refused(buf, n, QD_EFORMAT, "tokenizer.ggml.tokens", "strings");
    qd_free(buf);
}

/* Every proper prefix of a valid file is refused cleanly (the last tensor
 * ends at the end of the file, so no prefix can be complete). */
Test(gguf_bad, truncation_at_every_byte)
{
    void *buf;
    size_t n;
    small_file(&buf, &n);
    qd_gguf_t *g = open_ok(buf, n);
    const qd_gguf_tensor_t *last = qd_gguf_tensor(g, 2);
    size_t end = qd_gguf_data_offset(g) + last->offset + last->n_bytes;
    qd_gguf_close(g);
    for (size_t k = 0; k < end; k++) {
        /* a fresh exact-size copy so ASan sees any read past the end */
        uint8_t *p = malloc(k ? k : 1);
        memcpy(p, buf, k);
        g = (qd_gguf_t *)1;
        int rc = qd_gguf_open_mem(p, k, &g);
        cr_assert_eq(rc, QD_EFORMAT, "prefix of %zu bytes: %s (%s)", k,
                     qd_errname(rc), qd_errmsg());
        cr_assert_null(g);
        cr_assert_neq(qd_errmsg()[0], '\0');
        free(p);
    }
    g = open_ok(buf, end);
    qd_gguf_close(g);
    qd_free(buf);
}

/* ---- real files ---------------------------------------------------------------- */

static int check_dir(const char *root, const char *sub)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, sub);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n_files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        qd_gguf_t *g = NULL;
        int rc = qd_gguf_open(path, &g);
        cr_expect_eq(rc, 0, "%s: %s", path, qd_errmsg());
        if (rc)
            continue;
        n_files++;
        int vocab_only = !strcmp(sub, "vocab");
        cr_expect(qd_gguf_version(g) >= 2);
        cr_expect_geq(qd_gguf_n_kv(g), 1, "%s", path);
        const char *arch;
        cr_expect_eq(qd_gguf_get_str(g, "general.architecture", &arch, NULL),
                     0, "%s", path);
        qd_gguf_arr_t toks;
        if (qd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) == 0)
            cr_expect_gt(toks.n, 0);
        if (vocab_only) {
            cr_expect_eq(qd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), 0,
                         "%s", path);
        } else {
            cr_expect_gt(qd_gguf_n_tensors(g), 0, "%s", path);
        }
        size_t end = 0;
        for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
            const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
            cr_expect(qd_type_valid((int)t->type));
            cr_expect_eq(qd_gguf_find_tensor(g, t->name), t);
            cr_expect_eq(t->n_bytes,
                         qd_row_size(t->type, t->ne[0]) *
                             (size_t)(t->ne[1] * t->ne[2] * t->ne[3]));
            end = QD_MAX(end, (size_t)t->offset + t->n_bytes);
        }
        /* (a vocab-only file may end before the data section's padding) */
        if (qd_gguf_n_tensors(g))
            cr_expect_leq(qd_gguf_data_offset(g) + end, qd_gguf_file_size(g),
                          "%s", path);
        qd_gguf_close(g);
    }
    closedir(d);
    return n_files;
}

Test(gguf, shared_files_open)
{
    const char *root = getenv("QD_SHARED");
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/gguf", root ? root : "");
    if (!root || access(probe, F_OK))
        cr_skip_test("test data not found: QD_SHARED");
    int n = check_dir(root, "gguf") + check_dir(root, "vocab") +
            check_dir(root, "reference/quant-vectors") +
            check_dir(root, "reference/forward");
    cr_expect_geq(n, 4, "only %d GGUF files found under %s", n, root);
}

Test(gguf, shared_stories260k_contents)
{
    const char *root = getenv("QD_SHARED");
    if (!root)
        cr_skip_test("test data not found: QD_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", root);
    if (access(path, F_OK))
        cr_skip_test("%s not found: QD_SHARED", path);
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(path, &g), 0, "%s", qd_errmsg());
    uint32_t u;
    cr_expect_eq(qd_gguf_get_u32(g, "llama.embedding_length", &u), 0);
    cr_expect_eq(u, 64);
    cr_expect_eq(qd_gguf_get_u32(g, "llama.block_count", &u), 0);
    cr_expect_eq(u, 5);
    qd_gguf_arr_t toks;
    cr_assert_eq(qd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), 0);
    cr_expect_eq(toks.n, 512);
    cr_expect_str_eq(qd_gguf_arr_str(&toks, 1, NULL), "<s>");
    const qd_gguf_tensor_t *t = qd_gguf_find_tensor(g, "token_embd.weight");
    cr_assert_not_null(t);
    cr_expect_eq(t->type, QD_TYPE_F32);
    cr_expect_eq(t->ne[0], 64);
    cr_expect_eq(t->ne[1], 512);
    cr_expect_eq(qd_gguf_n_tensors(g), 48);
    qd_gguf_close(g);
}

/* ---- quantd inspect ------------------------------------------------------------- */

/* Run `$QD_BIN inspect path`, capturing stdout+stderr into out. */
static int run_inspect(const char *path, char *out, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' 2>&1", getenv("QD_BIN"),
             path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(gguf, inspect_command)
{
    if (!getenv("QD_BIN") || access(getenv("QD_BIN"), X_OK))
        cr_skip_test("quantd binary not found: QD_BIN");
    const char *dir = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/inspect-%d.gguf", dir, (int)getpid());
    qd_gguf_writer_t *w = small_writer();
    cr_assert_eq(qd_gguf_writer_write(w, path), 0, "%s", qd_errmsg());
    qd_gguf_writer_destroy(w);
    static char out[16384];
    cr_expect_eq(run_inspect(path, out, sizeof out), 0, "%s", out);
    const char *want[] = {
        "version:    GGUF v3", "alignment:  32", "tensors:    3",
        "kv pairs:   4", "general.architecture", "string = \"llama\"",
        "[5 × string] \"<unk>\", \"<s>\", \"</s>\", \"a\", \"b\"",
        "tokenizer.ggml.bos_token_id", "tok_embd.weight", "8 × 5",
        "blk.0.q.weight", "Q4_0", "32 × 2",
        "parameters       112", /* 40 + 8 + 64 */
        "tensor bytes     228", /* 160 + 32 + 36 */
        "bits per weight  16.2857", "F32              2 tensors",
        "Q4_0             1 tensors",
    };
    for (size_t i = 0; i < QD_ARRAY_SIZE(want); i++)
        cr_expect(strstr(out, want[i]), "inspect output lacks '%s':\n%s",
                  want[i], out);
    /* A malformed file: exit status 1 and a message naming the problem. */
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fwrite("GGML", 1, 4, f);
    fclose(f);
    cr_expect_eq(run_inspect(path, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "bad magic"), "%s", out);
    unlink(path);
    cr_expect_eq(run_inspect("/nonexistent.gguf", out, sizeof out), 1);
}
