/*
 * gguf.c — the GGUF v2/v3 reader: parses and validates the header of a
 * model file, maps the file read-only and hands out views of its metadata
 * and tensors. The weights are never copied; the tensor data pointers point
 * into the mapping.
 *
 * Every byte is hostile. The header is read through a bounds-checked cursor,
 * and every count is bounded by the bytes left in the file divided by the
 * smallest encoding of one element BEFORE anything is allocated from it, so
 * an absurd count fails at once instead of asking for petabytes; the kv and
 * tensor arrays and their hash indexes then grow only as entries are
 * actually parsed. NUL-terminated copies of strings and array views come
 * from one chunked arena; qd_gguf_close() frees it all.
 *
 * Limits (beyond the layout documented in quantd/gguf.h):
 *   - version 2 or 3 (1 used u32 counts and is refused);
 *   - keys and tensor names: 1..65535 bytes, no NUL byte, unique;
 *   - arrays of arrays nest at most GGUF_MAX_DEPTH deep;
 *   - general.alignment, when present, is a u32 power of two;
 *   - tensors: 1..4 dims, each >= 1, element count and byte size fit in
 *     int64/size_t, ne[0] a multiple of the type's block, offset aligned,
 *     data inside the file, no two tensors overlap;
 *   - when tokenizer.ggml.tokens is present, every tokenizer.ggml.*_token_id
 *     is an integer below the number of tokens, or -1 / all-ones ("none").
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/gguf_int.h"
#include "quantd/common.h"
#include "quantd/threadpool.h"
#include "quantd/gguf.h"
#include "quantd/mapguard.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_MAX_DEPTH 8       /* arrays of arrays */
#define GGUF_MAX_NAME 65535    /* bytes in a key or tensor name */
/* Smallest encodings, used to bound counts by the bytes that remain. */
#define GGUF_MIN_KV_BYTES (8 + 1 + 4 + 1)           /* key, type, u8 */
#define GGUF_MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8) /* 1 dim */
#define GGUF_MIN_STR_BYTES 8
#define GGUF_MIN_ARR_BYTES (4 + 8)
#define ARENA_CHUNK (64 * 1024)

typedef struct {
    char *s;      /* NUL-terminated copy in the arena */
    uint64_t len; /* bytes, excluding the NUL */
} gstr_t;

/* One array (top-level or nested). Scalar elements stay in the file
 * buffer; strings and sub-arrays are decoded into the arena. */
typedef struct arr_node {
    uint32_t type;
    uint64_t n;
    const uint8_t *raw;    /* scalar types: n × size, little-endian */
    gstr_t *strs;          /* STRING: n entries */
    struct arr_node *subs; /* ARRAY: n entries */
} arr_node_t;

typedef struct {
    const char *key;
    uint32_t type;
    size_t val_off, val_len; /* encoded value in the buffer */
    gstr_t str;              /* STRING */
    arr_node_t arr;          /* ARRAY */
} kv_t;

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} chunk_t;

/* Open-addressing hash index from a C string to an entry number. */
typedef struct {
    const char **keys; /* cap slots, NULL = empty */
    int64_t *idx;
    size_t mask;
} index_t;

struct qd_gguf {
    const uint8_t *buf;
    size_t size;
    int mapped; /* buf is ours (file mapping or anonymous copy): munmap on close */
    int guard;  /* mapguard slot of the mapping, -1: none */
    uint32_t version;
    uint32_t alignment;
    size_t data_offset;
    int64_t n_kv, cap_kv; /* grown as parsed, never past the header's count */
    kv_t *kvs;
    int64_t n_tensors, cap_tensors;
    qd_gguf_tensor_t *tensors;
    index_t kv_index, tensor_index;
    chunk_t *arena;
};

/* ---- value types --------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} vtypes[QD_GGUF_VTYPE_COUNT] = {
    [QD_GGUF_UINT8] = {"u8", 1},     [QD_GGUF_INT8] = {"i8", 1},
    [QD_GGUF_UINT16] = {"u16", 2},   [QD_GGUF_INT16] = {"i16", 2},
    [QD_GGUF_UINT32] = {"u32", 4},   [QD_GGUF_INT32] = {"i32", 4},
    [QD_GGUF_FLOAT32] = {"f32", 4},  [QD_GGUF_BOOL] = {"bool", 1},
    [QD_GGUF_STRING] = {"string", 0}, [QD_GGUF_ARRAY] = {"array", 0},
    [QD_GGUF_UINT64] = {"u64", 8},   [QD_GGUF_INT64] = {"i64", 8},
    [QD_GGUF_FLOAT64] = {"f64", 8},
};

size_t qd__gguf_vtype_size(uint32_t t)
{
    return t < QD_GGUF_VTYPE_COUNT ? vtypes[t].size : 0;
}

const char *qd__gguf_vtype_name(uint32_t t)
{
    return t < QD_GGUF_VTYPE_COUNT ? vtypes[t].name : "?";
}

static int vtype_is_int(uint32_t t)
{
    switch (t) {
    case QD_GGUF_UINT8: case QD_GGUF_INT8: case QD_GGUF_UINT16:
    case QD_GGUF_INT16: case QD_GGUF_UINT32: case QD_GGUF_INT32:
    case QD_GGUF_UINT64: case QD_GGUF_INT64:
        return 1;
    default:
        return 0;
    }
}

/* Decode one integer element. *neg says whether the value is negative;
 * *mag holds it as u64 when !neg, *sval as i64 when it fits. */
typedef struct {
    int neg;
    uint64_t u; /* valid when !neg */
    int64_t s;  /* valid when neg, or when u <= INT64_MAX */
} ival_t;

static ival_t decode_int(uint32_t t, const uint8_t *p)
{
    ival_t v = {0, 0, 0};
    switch (t) {
    case QD_GGUF_UINT8: v.u = p[0]; break;
    case QD_GGUF_INT8: v.s = (int8_t)p[0]; break;
    case QD_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); v.u = x; break; }
    case QD_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); v.s = x; break; }
    case QD_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); v.u = x; break; }
    case QD_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); v.s = x; break; }
    case QD_GGUF_UINT64: memcpy(&v.u, p, 8); break;
    case QD_GGUF_INT64: memcpy(&v.s, p, 8); break;
    default: break;
    }
    switch (t) {
    case QD_GGUF_INT8: case QD_GGUF_INT16: case QD_GGUF_INT32:
    case QD_GGUF_INT64:
        v.neg = v.s < 0;
        if (!v.neg)
            v.u = (uint64_t)v.s;
        break;
    default:
        v.s = v.u <= INT64_MAX ? (int64_t)v.u : INT64_MAX;
        break;
    }
    return v;
}

/* Any numeric or bool element as a double (0 for strings/arrays). */
static double decode_f64(uint32_t t, const uint8_t *p)
{
    if (vtype_is_int(t)) {
        ival_t v = decode_int(t, p);
        return v.neg ? (double)v.s : (double)v.u;
    }
    switch (t) {
    case QD_GGUF_FLOAT32: { float f; memcpy(&f, p, 4); return f; }
    case QD_GGUF_FLOAT64: { double d; memcpy(&d, p, 8); return d; }
    case QD_GGUF_BOOL: return p[0] != 0;
    default: return 0.0;
    }
}

/* ---- arena ---------------------------------------------------------------- */

static void *arena_alloc(qd_gguf_t *g, size_t n)
{
    n = QD_ALIGN_UP(n ? n : 1, sizeof(max_align_t));
    chunk_t *c = g->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = QD_MAX(n, (size_t)ARENA_CHUNK), total;
        if (qd_add_size(sizeof(chunk_t), cap, &total))
            return NULL;
        c = qd_malloc(total);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = g->arena;
        g->arena = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(qd_gguf_t *g)
{
    while (g->arena) {
        chunk_t *next = g->arena->next;
        qd_free(g->arena);
        g->arena = next;
    }
}

/* ---- hash index ------------------------------------------------------------ */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void index_free(index_t *ix)
{
    qd_free(ix->keys);
    qd_free(ix->idx);
    ix->keys = NULL;
    ix->idx = NULL;
}

static int64_t index_find(const index_t *ix, const char *key)
{
    if (!ix->keys)
        return -1;
    for (size_t h = hash_str(key) & ix->mask;; h = (h + 1) & ix->mask) {
        if (!ix->keys[h])
            return -1;
        if (!strcmp(ix->keys[h], key))
            return ix->idx[h];
    }
}

static void index_put(index_t *ix, const char *key, int64_t i)
{
    size_t h = hash_str(key) & ix->mask;
    while (ix->keys[h])
        h = (h + 1) & ix->mask;
    ix->keys[h] = key;
    ix->idx[h] = i;
}

/* Make room for n entries at a load of at most one half. */
static int index_reserve(index_t *ix, size_t n)
{
    size_t cap = ix->keys ? ix->mask + 1 : 0;
    if (n * 2 <= cap)
        return 0;
    size_t new_cap = cap ? cap * 2 : 16;
    while (new_cap < n * 2)
        new_cap *= 2;
    index_t nx = {qd_calloc(new_cap, sizeof *nx.keys),
                  qd_malloc(new_cap * sizeof *nx.idx), new_cap - 1};
    if (!nx.keys || !nx.idx) {
        index_free(&nx);
        return QD_ENOMEM;
    }
    for (size_t h = 0; h < cap; h++)
        if (ix->keys[h])
            index_put(&nx, ix->keys[h], ix->idx[h]);
    index_free(ix);
    *ix = nx;
    return 0;
}

/* Insert key → i, the table then holding n entries. Returns the index of
 * an entry with the same key (nothing inserted), -1 when inserted, or
 * INT64_MIN when the table cannot grow (out of memory). */
static int64_t index_insert(index_t *ix, const char *key, int64_t i,
                            size_t n)
{
    if (index_reserve(ix, n))
        return INT64_MIN;
    int64_t dup = index_find(ix, key);
    if (dup >= 0)
        return dup;
    index_put(ix, key, i);
    return -1;
}

/* Grow a parse array so that element i exists; never past max. */
static int grow_to(void **arr, int64_t *cap, int64_t i, int64_t max,
                   size_t elem)
{
    if (i < *cap)
        return 0;
    int64_t n = *cap ? *cap * 2 : 16;
    n = QD_MIN(QD_MAX(n, i + 1), max);
    void *p = qd_realloc(*arr, (size_t)n * elem);
    if (!p)
        return QD_ENOMEM;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(n - *cap) * elem);
    *arr = p;
    *cap = n;
    return 0;
}

/* ---- bounds-checked cursor --------------------------------------------------- */

typedef struct {
    qd_gguf_t *g;
    const uint8_t *p;
    size_t n, pos;
} rd_t;

static size_t rd_left(const rd_t *r) { return r->n - r->pos; }

static int rd_need(rd_t *r, size_t k, const char *what, const char *where)
{
    if (rd_left(r) >= k)
        return 0;
    qd_set_errmsg("%s%s%s: truncated at offset %zu (needs %zu bytes, %zu "
                  "left in the file)",
                  where, *where ? ": " : "", what, r->pos, k, rd_left(r));
    return QD_EFORMAT;
}

static int rd_u32(rd_t *r, uint32_t *v, const char *what, const char *where)
{
    int rc = rd_need(r, 4, what, where);
    if (rc)
        return rc;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd_t *r, uint64_t *v, const char *what, const char *where)
{
    int rc = rd_need(r, 8, what, where);
    if (rc)
        return rc;
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* Read a string into a NUL-terminated arena copy. name != 0: it is a key or
 * tensor name, so it must be 1..GGUF_MAX_NAME bytes without NUL. */
static int rd_str(rd_t *r, gstr_t *out, int name, const char *what,
                  const char *where)
{
    size_t at = r->pos;
    uint64_t len;
    int rc = rd_u64(r, &len, what, where);
    if (rc)
        return rc;
    if (len > rd_left(r)) {
        qd_set_errmsg("%s%s%s: string length %" PRIu64 " at offset %zu runs "
                      "past end of file (%zu bytes left)",
                      where, *where ? ": " : "", what, len, at, rd_left(r));
        return QD_EFORMAT;
    }
    const uint8_t *s = r->p + r->pos;
    if (name && (len == 0 || len > GGUF_MAX_NAME)) {
        qd_set_errmsg("%s%s%s at offset %zu: length %" PRIu64
                      " not in 1..%d",
                      where, *where ? ": " : "", what, at, len, GGUF_MAX_NAME);
        return QD_EFORMAT;
    }
    if (name && memchr(s, 0, (size_t)len)) {
        qd_set_errmsg("%s%s%s at offset %zu contains a NUL byte", where,
                      *where ? ": " : "", what, at);
        return QD_EFORMAT;
    }
    out->s = arena_alloc(r->g, (size_t)len + 1);
    if (!out->s)
        return QD_ENOMEM;
    memcpy(out->s, s, (size_t)len);
    out->s[len] = '\0';
    out->len = len;
    r->pos += (size_t)len;
    return 0;
}

/* ---- metadata ------------------------------------------------------------------ */

/* Parse the body of an array (elem type, count, elements) into a. */
static int rd_arr(rd_t *r, arr_node_t *a, int depth, const char *key)
{
    size_t at = r->pos;
    uint32_t t;
    uint64_t n;
    int rc;
    if ((rc = rd_u32(r, &t, "array element type", key)))
        return rc;
    if (t >= QD_GGUF_VTYPE_COUNT) {
        qd_set_errmsg("%s: array element type %" PRIu32 " at offset %zu is "
                      "not a GGUF value type",
                      key, t, at);
        return QD_EFORMAT;
    }
    if (t == QD_GGUF_ARRAY && depth + 1 >= GGUF_MAX_DEPTH) {
        qd_set_errmsg("%s: arrays nested more than %d deep at offset %zu", key,
                      GGUF_MAX_DEPTH, at);
        return QD_EFORMAT;
    }
    if ((rc = rd_u64(r, &n, "array count", key)))
        return rc;
    size_t min = t == QD_GGUF_STRING  ? GGUF_MIN_STR_BYTES
                 : t == QD_GGUF_ARRAY ? GGUF_MIN_ARR_BYTES
                                      : vtypes[t].size;
    if (n > rd_left(r) / min) {
        qd_set_errmsg("%s: array of %" PRIu64 " × %s at offset %zu runs past "
                      "end of file (%zu bytes left, each element needs at "
                      "least %zu)",
                      key, n, vtypes[t].name, at, rd_left(r), min);
        return QD_EFORMAT;
    }
    a->type = t;
    a->n = n;
    if (t == QD_GGUF_STRING) {
        a->strs = arena_alloc(r->g, (size_t)n * sizeof *a->strs);
        if (!a->strs)
            return QD_ENOMEM;
        for (uint64_t j = 0; j < n; j++)
            if ((rc = rd_str(r, &a->strs[j], 0, "array string", key)))
                return rc;
    } else if (t == QD_GGUF_ARRAY) {
        a->subs = arena_alloc(r->g, (size_t)n * sizeof *a->subs);
        if (!a->subs)
            return QD_ENOMEM;
        memset(a->subs, 0, (size_t)n * sizeof *a->subs);
        for (uint64_t j = 0; j < n; j++)
            if ((rc = rd_arr(r, &a->subs[j], depth + 1, key)))
                return rc;
    } else {
        a->raw = r->p + r->pos;
        r->pos += (size_t)n * vtypes[t].size;
    }
    return 0;
}

static int check_alignment(const qd_gguf_t *g, const kv_t *kv, size_t at)
{
    if (kv->type != QD_GGUF_UINT32) {
        qd_set_errmsg("general.alignment at offset %zu is a %s, must be u32",
                      at, vtypes[kv->type].name);
        return QD_EFORMAT;
    }
    uint32_t a;
    memcpy(&a, g->buf + kv->val_off, 4);
    if (a == 0 || (a & (a - 1))) {
        qd_set_errmsg("general.alignment = %" PRIu32 " at offset %zu is not "
                      "a power of two",
                      a, at);
        return QD_EFORMAT;
    }
    return 0;
}

static int rd_kvs(rd_t *r, qd_gguf_t *g, int64_t n_kv)
{
    int rc;
    char where[48];
    for (int64_t i = 0; i < n_kv; i++) {
        if ((rc = grow_to((void **)&g->kvs, &g->cap_kv, i, n_kv,
                          sizeof *g->kvs)))
            return rc;
        g->n_kv = i + 1;
        kv_t *kv = &g->kvs[i];
        size_t at = r->pos;
        gstr_t key;
        snprintf(where, sizeof where, "kv #%" PRId64, i);
        if ((rc = rd_str(r, &key, 1, "key", where)))
            return rc;
        kv->key = key.s;
        if ((rc = rd_u32(r, &kv->type, "value type", kv->key)))
            return rc;
        if (kv->type >= QD_GGUF_VTYPE_COUNT) {
            qd_set_errmsg("%s: value type %" PRIu32 " at offset %zu is not a "
                          "GGUF value type",
                          kv->key, kv->type, r->pos - 4);
            return QD_EFORMAT;
        }
        kv->val_off = r->pos;
        if (kv->type == QD_GGUF_STRING)
            rc = rd_str(r, &kv->str, 0, "value", kv->key);
        else if (kv->type == QD_GGUF_ARRAY)
            rc = rd_arr(r, &kv->arr, 0, kv->key);
        else
            rc = rd_need(r, vtypes[kv->type].size, "value", kv->key);
        if (rc)
            return rc;
        if (kv->type != QD_GGUF_STRING && kv->type != QD_GGUF_ARRAY)
            r->pos += vtypes[kv->type].size;
        kv->val_len = r->pos - kv->val_off;
        int64_t dup = index_insert(&g->kv_index, kv->key, i, (size_t)i + 1);
        if (dup == INT64_MIN)
            return QD_ENOMEM;
        if (dup >= 0) {
            qd_set_errmsg("duplicate key '%s' at offset %zu (first is kv "
                          "#%" PRId64 ")",
                          kv->key, at, dup);
            return QD_EFORMAT;
        }
        if (!strcmp(kv->key, "general.alignment")) {
            if ((rc = check_alignment(g, kv, at)))
                return rc;
            memcpy(&g->alignment, g->buf + kv->val_off, 4);
        }
    }
    return 0;
}

/* -1, stored signed or as the all-ones value of an unsigned type, is how
 * converters say "no such token" (llama.cpp's LLAMA_TOKEN_NULL). */
static int is_no_token(uint32_t t, ival_t v)
{
    if (v.neg)
        return v.s == -1;
    size_t bits = 8 * vtypes[t].size;
    return v.u == (bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1);
}

/* Every tokenizer.ggml.*_token_id must name a token that exists (or be the
 * "none" value). */
static int check_token_ids(const qd_gguf_t *g)
{
    int64_t ti = qd_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ti < 0)
        return 0;
    const kv_t *tok = &g->kvs[ti];
    if (tok->type != QD_GGUF_ARRAY || tok->arr.type != QD_GGUF_STRING) {
        qd_set_errmsg("tokenizer.ggml.tokens is a %s of %s, must be an array "
                      "of strings",
                      vtypes[tok->type].name,
                      tok->type == QD_GGUF_ARRAY ? vtypes[tok->arr.type].name
                                                 : "-");
        return QD_EFORMAT;
    }
    static const char prefix[] = "tokenizer.ggml.", suffix[] = "_token_id";
    const size_t np = sizeof prefix - 1, ns = sizeof suffix - 1;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const kv_t *kv = &g->kvs[i];
        size_t len = strlen(kv->key);
        if (len < np + ns || strncmp(kv->key, prefix, np) ||
            strcmp(kv->key + len - ns, suffix))
            continue;
        if (!vtype_is_int(kv->type)) {
            qd_set_errmsg("%s is a %s, must be an integer token id", kv->key,
                          vtypes[kv->type].name);
            return QD_EFORMAT;
        }
        ival_t v = decode_int(kv->type, g->buf + kv->val_off);
        if (is_no_token(kv->type, v))
            continue;
        if (v.neg || v.u >= tok->arr.n) {
            char val[24];
            if (v.neg)
                snprintf(val, sizeof val, "%" PRId64, v.s);
            else
                snprintf(val, sizeof val, "%" PRIu64, v.u);
            qd_set_errmsg("%s = %s is out of range: the vocabulary has "
                          "%" PRIu64 " tokens",
                          kv->key, val, tok->arr.n);
            return QD_EFORMAT;
        }
    }
    return 0;
}

/* ---- tensors ------------------------------------------------------------------- */

static int rd_tensor_info(rd_t *r, qd_gguf_t *g, int64_t i)
{
    qd_gguf_tensor_t *t = &g->tensors[i];
    char where[48];
    gstr_t name;
    size_t at = r->pos;
    uint32_t n_dims, type;
    int rc;
    snprintf(where, sizeof where, "tensor #%" PRId64, i);
    if ((rc = rd_str(r, &name, 1, "name", where)))
        return rc;
    t->name = name.s;
    if ((rc = rd_u32(r, &n_dims, "n_dims", t->name)))
        return rc;
    if (n_dims < 1 || n_dims > QD_GGUF_MAX_DIMS) {
        qd_set_errmsg("tensor '%s' at offset %zu: n_dims = %" PRIu32
                      " not in 1..%d",
                      t->name, at, n_dims, QD_GGUF_MAX_DIMS);
        return QD_EFORMAT;
    }
    t->n_dims = (int)n_dims;
    int64_t n_elems = 1;
    for (int d = 0; d < QD_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims)
            continue;
        uint64_t ne;
        if ((rc = rd_u64(r, &ne, "dimension", t->name)))
            return rc;
        if (ne == 0 || ne > INT64_MAX) {
            qd_set_errmsg("tensor '%s': dimension %d is %" PRId64
                          ", must be >= 1",
                          t->name, d, (int64_t)ne);
            return QD_EFORMAT;
        }
        t->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(n_elems, t->ne[d], &n_elems)) {
            qd_set_errmsg("tensor '%s': element count overflows (dimension "
                          "%d = %" PRId64 ")",
                          t->name, d, t->ne[d]);
            return QD_EFORMAT;
        }
    }
    if ((rc = rd_u32(r, &type, "type", t->name)))
        return rc;
    if (!qd_type_valid((int)QD_MIN(type, (uint32_t)INT32_MAX))) {
        qd_set_errmsg("tensor '%s': type id %" PRIu32 " is unknown", t->name,
                      type);
        return QD_EFORMAT;
    }
    /* quantd-private types (not GGUF's) only in quantd's import caches,
     * which carry their import signature */
    if (qd_type_internal((int)type) &&
        qd_gguf_find_key(g, QD_GGUF_KEY_IMPORT_SIGNATURE) < 0) {
        qd_set_errmsg("tensor '%s': type id %" PRIu32 " (%s) is quantd's "
                      "own and only valid in its import caches", t->name,
                      type, qd_type_name((qd_type_t)type));
        return QD_EFORMAT;
    }
    t->type = (qd_type_t)type;
    const qd_type_traits_t *tr = qd_type_traits(t->type);
    if (t->ne[0] % tr->blck_size) {
        qd_set_errmsg("tensor '%s': ne[0] = %" PRId64 " is not a multiple of "
                      "the %s block size %d",
                      t->name, t->ne[0], tr->name, tr->blck_size);
        return QD_EFORMAT;
    }
    size_t row, rows = (size_t)(n_elems / t->ne[0]);
    if (qd_mul_size((size_t)(t->ne[0] / tr->blck_size), tr->type_size, &row) ||
        qd_mul_size(row, rows, &t->n_bytes)) {
        qd_set_errmsg("tensor '%s': byte size overflows", t->name);
        return QD_EFORMAT;
    }
    if ((rc = rd_u64(r, &t->offset, "data offset", t->name)))
        return rc;
    if (t->offset % g->alignment) {
        qd_set_errmsg("tensor '%s': data offset %" PRIu64 " is not a "
                      "multiple of the alignment %" PRIu32,
                      t->name, t->offset, g->alignment);
        return QD_EFORMAT;
    }
    int64_t dup = index_insert(&g->tensor_index, t->name, i, (size_t)i + 1);
    if (dup == INT64_MIN)
        return QD_ENOMEM;
    if (dup >= 0) {
        qd_set_errmsg("duplicate tensor name '%s' at offset %zu (first is "
                      "tensor #%" PRId64 ")",
                      t->name, at, dup);
        return QD_EFORMAT;
    }
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const qd_gguf_tensor_t *x = *(qd_gguf_tensor_t *const *)a,
                           *y = *(qd_gguf_tensor_t *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Data inside the file and no overlaps; sets the data pointers. */
static int check_tensor_data(qd_gguf_t *g)
{
    size_t data_bytes = g->size > g->data_offset ? g->size - g->data_offset : 0;
    qd_gguf_tensor_t **by_off = NULL;
    int rc = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        qd_gguf_tensor_t *t = &g->tensors[i];
        if (t->offset > data_bytes || t->n_bytes > data_bytes - t->offset) {
            qd_set_errmsg("tensor '%s': data at offset %" PRIu64 " (+%zu "
                          "bytes) past end of file (data section: %zu bytes "
                          "at file offset %zu)",
                          t->name, t->offset, t->n_bytes, data_bytes,
                          g->data_offset);
            return QD_EFORMAT;
        }
        t->data = g->buf + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2)
        return 0;
    by_off = qd_malloc((size_t)g->n_tensors * sizeof *by_off);
    if (!by_off)
        return QD_ENOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++)
        by_off[i] = &g->tensors[i];
    qsort(by_off, (size_t)g->n_tensors, sizeof *by_off, cmp_offset);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const qd_gguf_tensor_t *a = by_off[i - 1], *b = by_off[i];
        if (a->offset + a->n_bytes > b->offset) {
            qd_set_errmsg("tensor '%s' (data offset %" PRIu64 ") overlaps "
                          "tensor '%s' (data offset %" PRIu64 ", %zu bytes)",
                          b->name, b->offset, a->name, a->offset, a->n_bytes);
            rc = QD_EFORMAT;
            break;
        }
    }
    qd_free(by_off);
    return rc;
}

/* ---- open / close ---------------------------------------------------------------- */

static int parse(qd_gguf_t *g)
{
    rd_t r = {g, g->buf, g->size, 0};
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    int rc;
    if ((rc = rd_u32(&r, &magic, "magic", "header")))
        return rc;
    if (magic != GGUF_MAGIC) {
        qd_set_errmsg("bad magic 0x%08" PRIx32 " at offset 0: not a GGUF file",
                      magic);
        return QD_EFORMAT;
    }
    if ((rc = rd_u32(&r, &g->version, "version", "header")))
        return rc;
    if (g->version < 2) {
        qd_set_errmsg("GGUF version %" PRIu32 " at offset 4 is not supported "
                      "(version 1 is obsolete; need 2 or 3)",
                      g->version);
        return g->version == 1 ? QD_EUNSUPPORTED : QD_EFORMAT;
    }
    if (g->version > 3) {
        qd_set_errmsg("GGUF version %" PRIu32 " at offset 4 is not supported "
                      "(need 2 or 3)",
                      g->version);
        return QD_EUNSUPPORTED;
    }
    if ((rc = rd_u64(&r, &n_tensors, "tensor count", "header")) ||
        (rc = rd_u64(&r, &n_kv, "kv count", "header")))
        return rc;
    if (n_tensors > rd_left(&r) / GGUF_MIN_TENSOR_BYTES) {
        qd_set_errmsg("tensor count %" PRIu64 " at offset 8 cannot fit in "
                      "the %zu bytes left in the file",
                      n_tensors, rd_left(&r));
        return QD_EFORMAT;
    }
    if (n_kv > rd_left(&r) / GGUF_MIN_KV_BYTES) {
        qd_set_errmsg("kv count %" PRIu64 " at offset 16 cannot fit in the "
                      "%zu bytes left in the file",
                      n_kv, rd_left(&r));
        return QD_EFORMAT;
    }
    /* The arrays grow as entries are parsed, so a count that lies costs
     * nothing until the bytes behind it actually exist. */
    g->alignment = QD_GGUF_DEFAULT_ALIGNMENT;
    if ((rc = rd_kvs(&r, g, (int64_t)n_kv)) || (rc = check_token_ids(g)))
        return rc;
    for (int64_t i = 0; i < (int64_t)n_tensors; i++) {
        if ((rc = grow_to((void **)&g->tensors, &g->cap_tensors, i,
                          (int64_t)n_tensors, sizeof *g->tensors)))
            return rc;
        g->n_tensors = i + 1;
        if ((rc = rd_tensor_info(&r, g, i)))
            return rc;
    }
    /* The header ends here; the data section starts at the next aligned
     * offset. A file without tensor data may end before that padding. */
    g->data_offset = QD_ALIGN_UP(r.pos, (size_t)g->alignment);
    return check_tensor_data(g);
}

int qd_gguf_open_mem(const void *buf, size_t n_bytes, qd_gguf_t **out)
{
    *out = NULL;
    qd_gguf_t *g = qd_calloc(1, sizeof *g);
    if (!g)
        return QD_ENOMEM;
    g->buf = buf;
    g->size = n_bytes;
    g->guard = -1;
    int rc = parse(g);
    if (rc) {
        if (rc == QD_ENOMEM)
            qd_set_errmsg("out of memory reading the GGUF header");
        qd_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

static _Atomic int load_how = QD_GGUF_MMAP;

void qd_gguf_set_load(qd_gguf_load_t how) { atomic_store(&load_how, (int)how); }
qd_gguf_load_t qd_gguf_get_load(void) { return (qd_gguf_load_t)atomic_load(&load_how); }

int qd_gguf_set_load_name(const char *name)
{
    if (strcmp(name, "read") && strcmp(name, "mmap")) {
        qd_set_errmsg("'%s' (read or mmap)", name);
        return QD_EINVAL;
    }
    qd_gguf_set_load(!strcmp(name, "mmap") ? QD_GGUF_MMAP : QD_GGUF_READ);
    return 0;
}

#define HUGE_2M ((size_t)2 << 20)

/* Reading the file in nth slices of `step` bytes (2 MiB multiples). */
typedef struct {
    int fd;
    uint8_t *dst;
    size_t n, step;
    int err[4]; /* per slice: errno, -1: end of file early */
} read_job_t;

static void read_slice(void *arg, int ith, int nth)
{
    (void)nth;
    read_job_t *j = arg;
    size_t at = QD_MIN(j->n, (size_t)ith * j->step), hi = QD_MIN(j->n, at + j->step);
    while (at < hi) {
        ssize_t r = pread(j->fd, j->dst + at, QD_MIN(hi - at, (size_t)1 << 30), (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            j->err[ith] = r < 0 ? errno : -1;
            return;
        }
        at += (size_t)r;
    }
}

/* The file's n bytes read into anonymous memory at a 2 MiB boundary,
 * huge pages asked for, then made read-only; NULL (errmsg set) on
 * failure. */
static void *read_anon(int fd, const char *path, size_t n)
{
    size_t len = n + HUGE_2M;
    uint8_t *region = mmap(NULL, len, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        qd_set_errmsg("%s: cannot allocate %zu bytes for the model: %s", path, n,
                      strerror(errno));
        return NULL;
    }
    uint8_t *base = (uint8_t *)QD_ALIGN_UP((uintptr_t)region, HUGE_2M);
    size_t keep = QD_ALIGN_UP(n, 4096), head = (size_t)(base - region);
    if (head)
        munmap(region, head);
    if (len - head > keep)
        munmap(base + keep, len - head - keep);
#ifdef MADV_HUGEPAGE
    (void)madvise(base, n, MADV_HUGEPAGE);
#endif
    /* a few readers in parallel (a compute pool of up to 4): the copy and
     * the kernel's zeroing of the fresh pages both scale with cores */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nr = n < ((size_t)64 << 20) ? 1 : (int)QD_MAX(1, QD_MIN(ncpu, 4));
    qd_pool_t *pool = NULL;
    if (nr > 1 && qd_pool_create(nr, &pool) < 0)
        nr = 1; /* no threads: the caller reads it all */
    read_job_t job = {.fd = fd, .dst = base, .n = n,
                      .step = QD_ALIGN_UP((n + (size_t)nr - 1) / (size_t)nr, HUGE_2M)};
    if (pool)
        qd_pool_run(pool, read_slice, &job);
    else
        read_slice(&job, 0, 1);
    qd_pool_destroy(pool);
    for (int i = 0; i < nr; i++) {
        if (job.err[i]) {
            if (job.err[i] > 0)
                qd_set_errmsg("%s: read: %s", path, strerror(job.err[i]));
            else
                qd_set_errmsg("%s: file changed on disk (shorter than its %zu bytes) "
                              "while being read", path, n);
            munmap(base, QD_ALIGN_UP(n, 4096));
            return NULL;
        }
    }
    (void)mprotect(base, QD_ALIGN_UP(n, 4096), PROT_READ);
    return base;
}

int qd_gguf_open(const char *path, qd_gguf_t **out)
{
    return qd_gguf_open_as(path, QD_GGUF_MMAP, out);
}

int qd_gguf_open_as(const char *path, qd_gguf_load_t how, qd_gguf_t **out)
{
    struct stat st;
    void *map = MAP_FAILED;
    int rc;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qd_set_errmsg("%s: %s", path, strerror(errno));
        return errno == ENOENT ? QD_ENOENT : QD_EIO;
    }
    if (fstat(fd, &st) < 0) {
        qd_set_errmsg("%s: %s", path, strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        qd_set_errmsg("%s: not a regular file", path);
        rc = QD_EINVAL;
        goto out;
    }
    if (st.st_size < 24) {
        qd_set_errmsg("%s: %lld bytes is too small for a GGUF header", path,
                      (long long)st.st_size);
        rc = QD_EFORMAT;
        goto out;
    }
    int guard = -1;
    if (how == QD_GGUF_READ) {
        map = read_anon(fd, path, (size_t)st.st_size);
        if (!map) {
            rc = QD_EIO;
            goto out;
        }
    } else {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            qd_set_errmsg("%s: mmap: %s", path, strerror(errno));
            rc = QD_EIO;
            goto out;
        }
        /* Guard the mapping before the first read: a file truncated while
         * we read it must not kill the process (quantd/mapguard.h). */
        guard = qd_mapguard_add(map, (size_t)st.st_size);
        if (guard < 0)
            QD_WARN("gguf", "%s: mapping not guarded against truncation (%s)",
                    path, qd_errmsg());
    }
    rc = qd_gguf_open_mem(map, (size_t)st.st_size, out);
    if (!rc && qd_mapguard_damaged(guard)) {
        qd_gguf_close(*out);
        *out = NULL;
        qd_set_errmsg("file changed on disk (truncated) while being read");
        rc = QD_EIO;
    }
    if (rc) {
        qd_mapguard_remove(guard);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qd_errmsg());
        qd_set_errmsg("%s: %s", path, msg);
        munmap(map, QD_ALIGN_UP((size_t)st.st_size, 4096));
        goto out;
    }
    (*out)->mapped = 1;
    (*out)->guard = guard;
out:
    close(fd);
    return rc;
}

void qd_gguf_close(qd_gguf_t *g)
{
    if (!g)
        return;
    if (g->mapped) {
        qd_mapguard_remove(g->guard);
        munmap((void *)g->buf, QD_ALIGN_UP(g->size, 4096));
    }
    index_free(&g->kv_index);
    index_free(&g->tensor_index);
    qd_free(g->kvs);
    qd_free(g->tensors);
    arena_free(g);
    qd_free(g);
}

uint32_t qd_gguf_version(const qd_gguf_t *g) { return g->version; }
uint32_t qd_gguf_alignment(const qd_gguf_t *g) { return g->alignment; }
size_t qd_gguf_data_offset(const qd_gguf_t *g) { return g->data_offset; }
size_t qd_gguf_file_size(const qd_gguf_t *g) { return g->size; }
int qd_gguf_damaged(const qd_gguf_t *g)
{
    return g->mapped && qd_mapguard_damaged(g->guard);
}

/* ---- metadata access --------------------------------------------------------------- */

int64_t qd_gguf_n_kv(const qd_gguf_t *g) { return g->n_kv; }

const char *qd_gguf_kv_key(const qd_gguf_t *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? g->kvs[i].key : NULL;
}

qd_gguf_vtype_t qd_gguf_kv_type(const qd_gguf_t *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? (qd_gguf_vtype_t)g->kvs[i].type
                                 : QD_GGUF_VTYPE_COUNT;
}

int64_t qd_gguf_find_key(const qd_gguf_t *g, const char *key)
{
    return index_find(&g->kv_index, key);
}

int qd__gguf_kv_raw(const qd_gguf_t *g, int64_t i, qd_gguf_vtype_t *type,
                    const void **val, size_t *n_bytes)
{
    if (i < 0 || i >= g->n_kv)
        return QD_EINVAL;
    *type = (qd_gguf_vtype_t)g->kvs[i].type;
    *val = g->buf + g->kvs[i].val_off;
    *n_bytes = g->kvs[i].val_len;
    return 0;
}

static const kv_t *find_kv(const qd_gguf_t *g, const char *key)
{
    int64_t i = index_find(&g->kv_index, key);
    return i < 0 ? NULL : &g->kvs[i];
}

/* Integer kv by key: 0, QD_ENOTFOUND or QD_EINVAL (not an integer). */
static int get_int(const qd_gguf_t *g, const char *key, ival_t *v)
{
    const kv_t *kv = find_kv(g, key);
    if (!kv)
        return QD_ENOTFOUND;
    if (!vtype_is_int(kv->type))
        return QD_EINVAL;
    *v = decode_int(kv->type, g->buf + kv->val_off);
    return 0;
}

int qd_gguf_get_u32(const qd_gguf_t *g, const char *key, uint32_t *out)
{
    ival_t v;
    int rc = get_int(g, key, &v);
    if (rc)
        return rc;
    if (v.neg || v.u > UINT32_MAX)
        return QD_EINVAL;
    *out = (uint32_t)v.u;
    return 0;
}

int qd_gguf_get_i32(const qd_gguf_t *g, const char *key, int32_t *out)
{
    ival_t v;
    int rc = get_int(g, key, &v);
    if (rc)
        return rc;
    if (v.neg ? v.s < INT32_MIN : v.u > INT32_MAX)
        return QD_EINVAL;
    *out = v.neg ? (int32_t)v.s : (int32_t)v.u;
    return 0;
}

int qd_gguf_get_u64(const qd_gguf_t *g, const char *key, uint64_t *out)
{
    ival_t v;
    int rc = get_int(g, key, &v);
    if (rc)
        return rc;
    if (v.neg)
        return QD_EINVAL;
    *out = v.u;
    return 0;
}

int qd_gguf_get_f32(const qd_gguf_t *g, const char *key, float *out)
{
    const kv_t *kv = find_kv(g, key);
    if (!kv)
        return QD_ENOTFOUND;
    if (kv->type != QD_GGUF_FLOAT32 && kv->type != QD_GGUF_FLOAT64 &&
        !vtype_is_int(kv->type))
        return QD_EINVAL;
    double d = decode_f64(kv->type, g->buf + kv->val_off);
    if (d > FLT_MAX || d < -FLT_MAX) /* NaN passes through */
        return QD_EINVAL;
    *out = (float)d;
    return 0;
}

int qd_gguf_get_bool(const qd_gguf_t *g, const char *key, int *out)
{
    const kv_t *kv = find_kv(g, key);
    if (!kv)
        return QD_ENOTFOUND;
    if (kv->type != QD_GGUF_BOOL)
        return QD_EINVAL;
    *out = g->buf[kv->val_off] != 0;
    return 0;
}

int qd_gguf_get_str(const qd_gguf_t *g, const char *key, const char **out,
                    size_t *len)
{
    const kv_t *kv = find_kv(g, key);
    if (!kv)
        return QD_ENOTFOUND;
    if (kv->type != QD_GGUF_STRING)
        return QD_EINVAL;
    *out = kv->str.s;
    if (len)
        *len = (size_t)kv->str.len;
    return 0;
}

static void arr_view(const qd_gguf_t *g, const arr_node_t *a,
                     qd_gguf_arr_t *out)
{
    out->g = g;
    out->elem_type = (qd_gguf_vtype_t)a->type;
    out->n = a->n;
    out->impl = a;
}

int qd_gguf_kv_arr(const qd_gguf_t *g, int64_t i, qd_gguf_arr_t *out)
{
    if (i < 0 || i >= g->n_kv || g->kvs[i].type != QD_GGUF_ARRAY)
        return QD_EINVAL;
    arr_view(g, &g->kvs[i].arr, out);
    return 0;
}

int qd_gguf_get_arr(const qd_gguf_t *g, const char *key, qd_gguf_arr_t *out)
{
    int64_t i = index_find(&g->kv_index, key);
    return i < 0 ? QD_ENOTFOUND : qd_gguf_kv_arr(g, i, out);
}

double qd_gguf_arr_f64(const qd_gguf_arr_t *a, uint64_t j)
{
    const arr_node_t *n = a->impl;
    if (j >= n->n || !n->raw)
        return 0.0;
    return decode_f64(n->type, n->raw + j * vtypes[n->type].size);
}

int64_t qd_gguf_arr_i64(const qd_gguf_arr_t *a, uint64_t j)
{
    const arr_node_t *n = a->impl;
    if (j >= n->n || !n->raw)
        return 0;
    const uint8_t *p = n->raw + j * vtypes[n->type].size;
    if (vtype_is_int(n->type))
        return decode_int(n->type, p).s;
    double d = decode_f64(n->type, p);
    if (d != d)
        return 0;
    return d >= 9.2233720368547758e18 ? INT64_MAX
           : d <= -9.2233720368547758e18 ? INT64_MIN
                                         : (int64_t)d;
}

const char *qd_gguf_arr_str(const qd_gguf_arr_t *a, uint64_t j, size_t *len)
{
    const arr_node_t *n = a->impl;
    if (n->type != QD_GGUF_STRING || j >= n->n)
        return NULL;
    if (len)
        *len = (size_t)n->strs[j].len;
    return n->strs[j].s;
}

int qd_gguf_arr_sub(const qd_gguf_arr_t *a, uint64_t j, qd_gguf_arr_t *out)
{
    const arr_node_t *n = a->impl;
    if (n->type != QD_GGUF_ARRAY || j >= n->n)
        return QD_EINVAL;
    arr_view(a->g, &n->subs[j], out);
    return 0;
}

/* ---- formatting for `inspect` ----------------------------------------------------- */

/* snprintf into a bounded buffer, counting what would have been written. */
typedef struct {
    char *buf;
    size_t cap, n;
} fmt_t;

static void fmt_put(fmt_t *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fmt_put(fmt_t *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = f->n < f->cap ? f->cap - f->n : 0;
    int k = vsnprintf(room ? f->buf + f->n : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0)
        f->n += (size_t)k;
}

static void fmt_str(fmt_t *f, const char *s, uint64_t len)
{
    fmt_put(f, "\"");
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fmt_put(f, "\\%c", c);
        else if (c == '\n')
            fmt_put(f, "\\n");
        else if (c == '\t')
            fmt_put(f, "\\t");
        else if (c < 0x20 || c == 0x7f)
            fmt_put(f, "\\x%02x", c);
        else
            fmt_put(f, "%c", c);
    }
    fmt_put(f, "\"");
}

static void fmt_scalar(fmt_t *f, uint32_t t, const uint8_t *p)
{
    if (vtype_is_int(t)) {
        ival_t v = decode_int(t, p);
        if (v.neg)
            fmt_put(f, "%" PRId64, v.s);
        else
            fmt_put(f, "%" PRIu64, v.u);
    } else if (t == QD_GGUF_BOOL) {
        fmt_put(f, "%s", p[0] ? "true" : "false");
    } else if (t == QD_GGUF_FLOAT32) {
        fmt_put(f, "%.9g", decode_f64(t, p));
    } else {
        fmt_put(f, "%.17g", decode_f64(t, p));
    }
}

static void fmt_arr(fmt_t *f, const arr_node_t *a, int max_elems)
{
    fmt_put(f, "[%" PRIu64 " × %s]", a->n, vtypes[a->type].name);
    uint64_t shown = max_elems < 0 ? a->n : QD_MIN(a->n, (uint64_t)max_elems);
    for (uint64_t j = 0; j < shown; j++) {
        fmt_put(f, j ? ", " : " ");
        if (a->type == QD_GGUF_STRING) {
            fmt_str(f, a->strs[j].s, a->strs[j].len);
        } else if (a->type == QD_GGUF_ARRAY) {
            fmt_put(f, "(");
            fmt_arr(f, &a->subs[j], max_elems);
            fmt_put(f, ")");
        } else {
            fmt_scalar(f, a->type, a->raw + j * vtypes[a->type].size);
        }
    }
    if (shown < a->n)
        fmt_put(f, shown ? ", ..." : " ...");
}

/* max_elems < 0 shows every array element. */
int qd_gguf_kv_format(const qd_gguf_t *g, int64_t i, char *buf, size_t cap,
                      int max_elems)
{
    fmt_t f = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    if (i < 0 || i >= g->n_kv)
        return 0;
    const kv_t *kv = &g->kvs[i];
    if (kv->type == QD_GGUF_STRING)
        fmt_str(&f, kv->str.s, kv->str.len);
    else if (kv->type == QD_GGUF_ARRAY)
        fmt_arr(&f, &kv->arr, max_elems);
    else
        fmt_scalar(&f, kv->type, g->buf + kv->val_off);
    return (int)QD_MIN(f.n, (size_t)INT32_MAX);
}

/* ---- tensor access ------------------------------------------------------------------- */

int64_t qd_gguf_n_tensors(const qd_gguf_t *g) { return g->n_tensors; }

const qd_gguf_tensor_t *qd_gguf_tensor(const qd_gguf_t *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const qd_gguf_tensor_t *qd_gguf_find_tensor(const qd_gguf_t *g,
                                            const char *name)
{
    int64_t i = index_find(&g->tensor_index, name);
    return i < 0 ? NULL : &g->tensors[i];
}
