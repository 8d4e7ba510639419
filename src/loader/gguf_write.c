/*
 * gguf_write.c — builds GGUF v3 files (the layout is in quantd/gguf.h).
 *
 * Each kv is kept already encoded (value type + value bytes), so setters,
 * replacement and qd_gguf_writer_copy_kv() (which copies a reader's encoded
 * value verbatim, nested arrays included) all work the same way. Tensors are
 * laid out in the order they were added, each at an offset aligned to
 * general.alignment (32 unless set), with zero padding after each one, as
 * ggml writes them. The header is built in memory; tensor data is streamed
 * from the caller's buffers, so writing a large model does not copy it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "loader/gguf_int.h"
#include "quantd/common.h"
#include "quantd/gguf.h"

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* encoded value, owned */
    size_t val_len;
} wkv_t;

typedef struct {
    char *name;
    qd_type_t type;
    int n_dims;
    int64_t ne[QD_GGUF_MAX_DIMS];
    const void *data;
    size_t n_bytes;
    int owned; /* data is our copy */
    uint64_t offset; /* assigned by layout() */
} wtensor_t;

struct qd_gguf_writer {
    uint32_t version;
    wkv_t *kvs;
    size_t n_kv, cap_kv;
    wtensor_t *tensors;
    size_t n_tensors, cap_tensors;
};

qd_gguf_writer_t *qd_gguf_writer_create(void)
{
    qd_gguf_writer_t *w = qd_calloc(1, sizeof *w);
    if (w)
        w->version = 3;
    return w;
}

void qd_gguf_writer_destroy(qd_gguf_writer_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        qd_free(w->kvs[i].key);
        qd_free(w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        qd_free(w->tensors[i].name);
        if (w->tensors[i].owned)
            qd_free((void *)w->tensors[i].data);
    }
    qd_free(w->kvs);
    qd_free(w->tensors);
    qd_free(w);
}

void qd_gguf_writer_set_version(qd_gguf_writer_t *w, uint32_t version)
{
    w->version = version;
}

/* Grow *arr (of *cap elements of size sz) to hold at least need. */
static int grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16, bytes;
    while (n < need)
        n *= 2;
    if (qd_mul_size(n, sz, &bytes))
        return QD_ENOMEM;
    void *p = qd_realloc(*arr, bytes);
    if (!p)
        return QD_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* Store key = (type, val); takes ownership of val (freed on failure). */
static int set_kv(qd_gguf_writer_t *w, const char *key, uint32_t type,
                  uint8_t *val, size_t val_len)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kvs[i].key, key)) {
            qd_free(w->kvs[i].val);
            w->kvs[i].type = type;
            w->kvs[i].val = val;
            w->kvs[i].val_len = val_len;
            return 0;
        }
    }
    char *k = NULL;
    if (grow((void **)&w->kvs, &w->cap_kv, w->n_kv + 1, sizeof *w->kvs) ||
        !(k = qd_strdup(key))) {
        qd_free(val);
        qd_set_errmsg("out of memory adding kv '%s'", key);
        return QD_ENOMEM;
    }
    w->kvs[w->n_kv++] = (wkv_t){k, type, val, val_len};
    return 0;
}

static int set_bytes(qd_gguf_writer_t *w, const char *key, uint32_t type,
                     const void *src, size_t n)
{
    uint8_t *val = qd_malloc(n);
    if (!val) {
        qd_set_errmsg("out of memory adding kv '%s'", key);
        return QD_ENOMEM;
    }
    memcpy(val, src, n);
    return set_kv(w, key, type, val, n);
}

int qd_gguf_writer_set_u32(qd_gguf_writer_t *w, const char *key, uint32_t v)
{
    return set_bytes(w, key, QD_GGUF_UINT32, &v, 4);
}

int qd_gguf_writer_set_i32(qd_gguf_writer_t *w, const char *key, int32_t v)
{
    return set_bytes(w, key, QD_GGUF_INT32, &v, 4);
}

int qd_gguf_writer_set_u64(qd_gguf_writer_t *w, const char *key, uint64_t v)
{
    return set_bytes(w, key, QD_GGUF_UINT64, &v, 8);
}

int qd_gguf_writer_set_f32(qd_gguf_writer_t *w, const char *key, float v)
{
    return set_bytes(w, key, QD_GGUF_FLOAT32, &v, 4);
}

int qd_gguf_writer_set_bool(qd_gguf_writer_t *w, const char *key, int v)
{
    uint8_t b = v != 0;
    return set_bytes(w, key, QD_GGUF_BOOL, &b, 1);
}

int qd_gguf_writer_set_str(qd_gguf_writer_t *w, const char *key,
                           const char *v)
{
    uint64_t len = strlen(v);
    uint8_t *val = qd_malloc(8 + (size_t)len);
    if (!val) {
        qd_set_errmsg("out of memory adding kv '%s'", key);
        return QD_ENOMEM;
    }
    memcpy(val, &len, 8);
    memcpy(val + 8, v, (size_t)len);
    return set_kv(w, key, QD_GGUF_STRING, val, 8 + (size_t)len);
}

int qd_gguf_writer_set_arr(qd_gguf_writer_t *w, const char *key,
                           qd_gguf_vtype_t elem_type, const void *data,
                           uint64_t n)
{
    size_t esz = qd__gguf_vtype_size(elem_type), bytes, total;
    if (!esz) {
        qd_set_errmsg("kv '%s': array element type %d is not a scalar type",
                      key, (int)elem_type);
        return QD_EINVAL;
    }
    if (qd_mul_size((size_t)n, esz, &bytes) || qd_add_size(bytes, 12, &total)) {
        qd_set_errmsg("kv '%s': array of %llu elements is too large", key,
                      (unsigned long long)n);
        return QD_EINVAL;
    }
    uint8_t *val = qd_malloc(total);
    if (!val) {
        qd_set_errmsg("out of memory adding kv '%s'", key);
        return QD_ENOMEM;
    }
    uint32_t t = elem_type;
    memcpy(val, &t, 4);
    memcpy(val + 4, &n, 8);
    if (bytes)
        memcpy(val + 12, data, bytes);
    return set_kv(w, key, QD_GGUF_ARRAY, val, total);
}

int qd_gguf_writer_set_arr_str(qd_gguf_writer_t *w, const char *key,
                               const char *const *v, uint64_t n)
{
    size_t total = 12;
    for (uint64_t j = 0; j < n; j++) {
        if (qd_add_size(total, 8 + strlen(v[j]), &total)) {
            qd_set_errmsg("kv '%s': string array too large", key);
            return QD_EINVAL;
        }
    }
    uint8_t *val = qd_malloc(total), *p;
    if (!val) {
        qd_set_errmsg("out of memory adding kv '%s'", key);
        return QD_ENOMEM;
    }
    uint32_t t = QD_GGUF_STRING;
    memcpy(val, &t, 4);
    memcpy(val + 4, &n, 8);
    p = val + 12;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t len = strlen(v[j]);
        memcpy(p, &len, 8);
        memcpy(p + 8, v[j], (size_t)len);
        p += 8 + len;
    }
    return set_kv(w, key, QD_GGUF_ARRAY, val, total);
}

int qd_gguf_writer_copy_kv(qd_gguf_writer_t *w, const qd_gguf_t *g,
                           int64_t i)
{
    qd_gguf_vtype_t type;
    const void *val;
    size_t n;
    if (qd__gguf_kv_raw(g, i, &type, &val, &n)) {
        qd_set_errmsg("copy_kv: no kv #%lld in the source", (long long)i);
        return QD_EINVAL;
    }
    return set_bytes(w, qd_gguf_kv_key(g, i), type, val, n);
}

int qd_gguf_writer_add_tensor(qd_gguf_writer_t *w, const char *name,
                              qd_type_t type, int n_dims, const int64_t *ne,
                              const void *data, size_t n_bytes, int copy)
{
    size_t expect = 0, row;
    int64_t rows = 1;
    if (!name || !*name) {
        qd_set_errmsg("add_tensor: empty name");
        return QD_EINVAL;
    }
    if (n_dims < 1 || n_dims > QD_GGUF_MAX_DIMS || !qd_type_valid((int)type)) {
        qd_set_errmsg("add_tensor '%s': bad n_dims %d or type %d", name,
                      n_dims, (int)type);
        return QD_EINVAL;
    }
    const qd_type_traits_t *tr = qd_type_traits(type);
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || (d > 0 && __builtin_mul_overflow(rows, ne[d], &rows))) {
            qd_set_errmsg("add_tensor '%s': bad dimension %d", name, d);
            return QD_EINVAL;
        }
    }
    if (ne[0] % tr->blck_size) {
        qd_set_errmsg("add_tensor '%s': ne[0] = %lld is not a multiple of the "
                      "%s block size %d",
                      name, (long long)ne[0], tr->name, tr->blck_size);
        return QD_EINVAL;
    }
    row = qd_row_size(type, ne[0]);
    if (qd_mul_size(row, (size_t)rows, &expect) || expect != n_bytes) {
        qd_set_errmsg("add_tensor '%s': %zu bytes given, shape needs %zu",
                      name, n_bytes, expect);
        return QD_EINVAL;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (!strcmp(w->tensors[i].name, name)) {
            qd_set_errmsg("add_tensor: duplicate tensor name '%s'", name);
            return QD_EINVAL;
        }
    }
    wtensor_t t = {.type = type, .n_dims = n_dims, .n_bytes = n_bytes,
                   .owned = copy != 0, .data = data};
    for (int d = 0; d < QD_GGUF_MAX_DIMS; d++)
        t.ne[d] = d < n_dims ? ne[d] : 1;
    if (grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors + 1,
             sizeof *w->tensors) ||
        !(t.name = qd_strdup(name)))
        goto oom;
    if (copy) {
        void *p = qd_malloc(n_bytes);
        if (!p)
            goto oom;
        memcpy(p, data, n_bytes);
        t.data = p;
    }
    w->tensors[w->n_tensors++] = t;
    return 0;
oom:
    qd_free(t.name);
    qd_set_errmsg("out of memory adding tensor '%s'", name);
    return QD_ENOMEM;
}

/* ---- layout and output ------------------------------------------------------ */

/* general.alignment when it is a usable u32, else the default. (A test may
 * store a bad one on purpose; the layout then uses the default.) */
static size_t writer_alignment(const qd_gguf_writer_t *w)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") ||
            w->kvs[i].type != QD_GGUF_UINT32)
            continue;
        uint32_t a;
        memcpy(&a, w->kvs[i].val, 4);
        if (a && !(a & (a - 1)))
            return a;
    }
    return QD_GGUF_DEFAULT_ALIGNMENT;
}

static uint8_t *put(uint8_t *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
    uint64_t len = strlen(s);
    p = put(p, &len, 8);
    return put(p, s, (size_t)len);
}

/* Assign tensor offsets and build the padded header. On success *hdr (freed
 * by the caller) holds hdr_len bytes and *total is the whole file size. */
static int build_header(qd_gguf_writer_t *w, uint8_t **hdr, size_t *hdr_len,
                        size_t *total)
{
    size_t align = writer_alignment(w), n = 24, data = 0;
    int ovf = 0;
    for (size_t i = 0; i < w->n_kv; i++)
        ovf |= qd_add_size(n, 8 + strlen(w->kvs[i].key) + 4 + w->kvs[i].val_len,
                           &n);
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor_t *t = &w->tensors[i];
        ovf |= qd_add_size(n, 8 + strlen(t->name) + 4 + 8 * (size_t)t->n_dims +
                                  4 + 8,
                           &n);
        t->offset = data;
        ovf |= qd_add_size(data, t->n_bytes, &data);
        data = QD_ALIGN_UP(data, align);
    }
    size_t padded = QD_ALIGN_UP(n, align);
    ovf |= qd_add_size(padded, data, total);
    if (ovf) {
        qd_set_errmsg("GGUF file size overflows");
        return QD_EOVERFLOW;
    }
    uint8_t *h = qd_calloc(1, padded), *p = h;
    if (!h) {
        qd_set_errmsg("out of memory building a GGUF header of %zu bytes",
                      padded);
        return QD_ENOMEM;
    }
    uint32_t magic = 0x46554747u;
    uint64_t n_tensors = w->n_tensors, n_kv = w->n_kv;
    p = put(p, &magic, 4);
    p = put(p, &w->version, 4);
    p = put(p, &n_tensors, 8);
    p = put(p, &n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        p = put_str(p, w->kvs[i].key);
        p = put(p, &w->kvs[i].type, 4);
        p = put(p, w->kvs[i].val, w->kvs[i].val_len);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor_t *t = &w->tensors[i];
        uint32_t n_dims = (uint32_t)t->n_dims, type = (uint32_t)t->type;
        p = put_str(p, t->name);
        p = put(p, &n_dims, 4);
        p = put(p, t->ne, 8 * (size_t)t->n_dims);
        p = put(p, &type, 4);
        p = put(p, &t->offset, 8);
    }
    *hdr = h;
    *hdr_len = padded;
    return 0;
}

int qd_gguf_writer_write_mem(qd_gguf_writer_t *w, void **buf, size_t *n)
{
    uint8_t *hdr, *out;
    size_t hdr_len, total;
    int rc = build_header(w, &hdr, &hdr_len, &total);
    if (rc)
        return rc;
    out = qd_calloc(1, total);
    if (!out) {
        qd_free(hdr);
        qd_set_errmsg("out of memory for a GGUF file of %zu bytes", total);
        return QD_ENOMEM;
    }
    memcpy(out, hdr, hdr_len);
    for (size_t i = 0; i < w->n_tensors; i++)
        memcpy(out + hdr_len + w->tensors[i].offset, w->tensors[i].data,
               w->tensors[i].n_bytes);
    qd_free(hdr);
    *buf = out;
    *n = total;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int qd_gguf_writer_write(qd_gguf_writer_t *w, const char *path)
{
    static const uint8_t zeros[256];
    uint8_t *hdr = NULL;
    size_t hdr_len, total, pos;
    char *tmp = NULL;
    int fd = -1, rc = build_header(w, &hdr, &hdr_len, &total);
    if (rc)
        return rc;
    size_t align = writer_alignment(w), tmp_len = strlen(path) + 5;
    tmp = qd_malloc(tmp_len);
    if (!tmp) {
        rc = QD_ENOMEM;
        qd_set_errmsg("out of memory");
        goto out;
    }
    snprintf(tmp, tmp_len, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto io_error;
    if (write_all(fd, hdr, hdr_len))
        goto io_error;
    pos = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor_t *t = &w->tensors[i];
        if (write_all(fd, t->data, t->n_bytes))
            goto io_error;
        pos = t->offset + t->n_bytes;
        for (size_t pad = QD_ALIGN_UP(pos, align) - pos; pad;) {
            size_t k = QD_MIN(pad, sizeof zeros);
            if (write_all(fd, zeros, k))
                goto io_error;
            pad -= k;
        }
    }
    if (fsync(fd) || close(fd)) {
        fd = -1;
        goto io_error;
    }
    fd = -1;
    if (rename(tmp, path))
        goto io_error;
    goto out;
io_error:
    qd_set_errmsg("writing %s: %s", tmp, strerror(errno));
    rc = QD_EIO;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    qd_free(tmp);
    qd_free(hdr);
    return rc;
}

int qd_gguf_write_with_str(const qd_gguf_t *g, const char *key, const char *value,
                           const char *path)
{
    qd_gguf_writer_t *w = qd_gguf_writer_create();
    if (!w)
        return QD_ENOMEM;
    int err = 0;
    for (int64_t i = 0; i < qd_gguf_n_kv(g) && !err; i++)
        err = qd_gguf_writer_copy_kv(w, g, i);
    if (!err)
        err = qd_gguf_writer_set_str(w, key, value);
    for (int64_t i = 0; i < qd_gguf_n_tensors(g) && !err; i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        err = qd_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
                                        t->n_bytes, 0);
    }
    if (!err)
        err = qd_gguf_writer_write(w, path);
    qd_gguf_writer_destroy(w);
    return err;
}
