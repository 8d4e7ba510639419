/*
 * safetensors.c — validated reader, sharded-directory index, and writer for
 * the safetensors format (layout and the checks made are in
 * quantd/safetensors.h).
 *
 * The reader maps the file read-only and never copies tensor data; tensor
 * pointers are only byte-aligned (the format aligns nothing), so consumers
 * load elements with memcpy. The header is parsed with jansson using
 * JSON_REJECT_DUPLICATES, because a duplicate tensor name would otherwise
 * silently shadow the first one.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/safetensors.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[QD_ST_DTYPE_COUNT] = {
    [QD_ST_BOOL] = {"BOOL", 1},       [QD_ST_U8] = {"U8", 1},
    [QD_ST_I8] = {"I8", 1},           [QD_ST_U16] = {"U16", 2},
    [QD_ST_I16] = {"I16", 2},         [QD_ST_F16] = {"F16", 2},
    [QD_ST_BF16] = {"BF16", 2},       [QD_ST_I32] = {"I32", 4},
    [QD_ST_F32] = {"F32", 4},         [QD_ST_I64] = {"I64", 8},
    [QD_ST_F64] = {"F64", 8},         [QD_ST_F8_E4M3] = {"F8_E4M3", 1},
    [QD_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *qd_st_dtype_name(qd_st_dtype_t t)
{
    return (unsigned)t < QD_ST_DTYPE_COUNT ? dtypes[t].name : "?";
}

size_t qd_st_dtype_size(qd_st_dtype_t t)
{
    return (unsigned)t < QD_ST_DTYPE_COUNT ? dtypes[t].size : 0;
}

int qd_st_dtype_from_name(const char *name, qd_st_dtype_t *out)
{
    for (int i = 0; i < QD_ST_DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (qd_st_dtype_t)i;
            return 0;
        }
    return QD_EINVAL;
}

/* ---- reader ----------------------------------------------------------- */

typedef struct {
    uint64_t begin, end;
} span_t;

struct qd_st {
    void *map; /* NULL when over a caller's buffer */
    size_t map_len;
    const uint8_t *buf;
    size_t len;
    qd_st_tensor_t *tensors; /* [n], by offset */
    span_t *spans;           /* [n] */
    int64_t n;
    const qd_st_tensor_t **by_name; /* [n], sorted by name */
    char **meta;                    /* [2 * n_meta] key, value */
    size_t n_meta;
};

void qd_st_close(qd_st_t *st)
{
    if (!st)
        return;
    for (int64_t i = 0; i < st->n; i++)
        qd_free((char *)st->tensors[i].name);
    for (size_t i = 0; i < 2 * st->n_meta; i++)
        qd_free(st->meta[i]);
    qd_free(st->meta);
    qd_free(st->tensors);
    qd_free(st->spans);
    qd_free(st->by_name);
    if (st->map)
        munmap(st->map, st->map_len);
    qd_free(st);
}

static int cmp_by_name(const void *a, const void *b)
{
    const qd_st_tensor_t *x = *(const qd_st_tensor_t *const *)a;
    const qd_st_tensor_t *y = *(const qd_st_tensor_t *const *)b;
    return strcmp(x->name, y->name);
}

typedef struct {
    uint64_t begin, end;
    int64_t i;
} okey_t;

static int cmp_offset(const void *a, const void *b)
{
    const okey_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Reorder tensors (and their spans) by (begin, end). */
static int sort_by_offset(qd_st_t *st)
{
    size_t n = (size_t)st->n, m = n ? n : 1;
    okey_t *k = qd_malloc(m * sizeof *k);
    qd_st_tensor_t *t2 = qd_malloc(m * sizeof *t2);
    span_t *s2 = qd_malloc(m * sizeof *s2);
    if (!k || !t2 || !s2) {
        qd_free(k);
        qd_free(t2);
        qd_free(s2);
        return QD_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        k[i] = (okey_t){st->spans[i].begin, st->spans[i].end, (int64_t)i};
    qsort(k, n, sizeof *k, cmp_offset);
    for (size_t i = 0; i < n; i++) {
        t2[i] = st->tensors[k[i].i];
        s2[i] = st->spans[k[i].i];
    }
    qd_free(k);
    qd_free(st->tensors);
    qd_free(st->spans);
    st->tensors = t2;
    st->spans = s2;
    return 0;
}

/* Read a non-negative JSON integer. */
static int json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_tensor(qd_st_t *st, const char *name, json_t *obj,
                        qd_st_tensor_t *t, span_t *sp)
{
    if (!json_is_object(obj)) {
        qd_set_errmsg("safetensors: tensor '%s': entry is not a JSON object",
                      name);
        return QD_EFORMAT;
    }
    json_t *jd = json_object_get(obj, "dtype");
    json_t *js = json_object_get(obj, "shape");
    json_t *jo = json_object_get(obj, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo)) {
        qd_set_errmsg("safetensors: tensor '%s': needs string 'dtype', array "
                      "'shape' and array 'data_offsets'", name);
        return QD_EFORMAT;
    }
    if (qd_st_dtype_from_name(json_string_value(jd), &t->dtype) != 0) {
        qd_set_errmsg("safetensors: tensor '%s': unknown dtype '%.32s'", name,
                      json_string_value(jd));
        return QD_EFORMAT;
    }
    size_t nd = json_array_size(js);
    if (nd > QD_ST_MAX_DIMS) {
        qd_set_errmsg("safetensors: tensor '%s': %zu dimensions (at most %d)",
                      name, nd, QD_ST_MAX_DIMS);
        return QD_EFORMAT;
    }
    size_t numel = 1;
    t->n_dims = (int)nd;
    for (size_t d = 0; d < QD_ST_MAX_DIMS; d++)
        t->shape[d] = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t v;
        if (json_u64(json_array_get(js, d), &v) != 0) {
            qd_set_errmsg("safetensors: tensor '%s': shape[%zu] is not a "
                          "non-negative integer", name, d);
            return QD_EFORMAT;
        }
        if (v > INT64_MAX || qd_mul_size(numel, (size_t)v, &numel) != 0 ||
            numel > (size_t)INT64_MAX) {
            qd_set_errmsg("safetensors: tensor '%s': shape product overflows",
                          name);
            return QD_EFORMAT;
        }
        t->shape[d] = (int64_t)v;
    }
    size_t n_bytes;
    if (qd_mul_size(numel, qd_st_dtype_size(t->dtype), &n_bytes) != 0) {
        qd_set_errmsg("safetensors: tensor '%s': byte size overflows", name);
        return QD_EFORMAT;
    }
    t->numel = (int64_t)numel;
    t->n_bytes = n_bytes;
    if (json_array_size(jo) != 2 ||
        json_u64(json_array_get(jo, 0), &sp->begin) != 0 ||
        json_u64(json_array_get(jo, 1), &sp->end) != 0) {
        qd_set_errmsg("safetensors: tensor '%s': data_offsets must be two "
                      "non-negative integers", name);
        return QD_EFORMAT;
    }
    if (sp->begin > sp->end) {
        qd_set_errmsg("safetensors: tensor '%s': data_offsets [%llu, %llu] "
                      "out of range (begin > end)", name,
                      (unsigned long long)sp->begin,
                      (unsigned long long)sp->end);
        return QD_EFORMAT;
    }
    if (sp->end - sp->begin != n_bytes) {
        qd_set_errmsg("safetensors: tensor '%s': data_offsets span %llu bytes "
                      "but shape and dtype %s need %zu", name,
                      (unsigned long long)(sp->end - sp->begin),
                      qd_st_dtype_name(t->dtype), n_bytes);
        return QD_EFORMAT;
    }
    if (!(t->name = qd_strdup(name)))
        return QD_ENOMEM;
    (void)st;
    return 0;
}

static int parse_metadata(qd_st_t *st, json_t *obj)
{
    if (!json_is_object(obj)) {
        qd_set_errmsg("safetensors: __metadata__ is not a JSON object");
        return QD_EFORMAT;
    }
    size_t n = json_object_size(obj);
    st->meta = qd_calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta)
        return QD_ENOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!json_is_string(v)) {
            qd_set_errmsg("safetensors: __metadata__ key '%.64s' is not a "
                          "string", k);
            return QD_EFORMAT;
        }
        char *kk = qd_strdup(k), *vv = qd_strdup(json_string_value(v));
        st->meta[2 * st->n_meta] = kk;
        st->meta[2 * st->n_meta + 1] = vv;
        st->n_meta++;
        if (!kk || !vv)
            return QD_ENOMEM;
    }
    return 0;
}

static int parse(qd_st_t *st)
{
    json_t *root = NULL;
    int rc = 0;
    if (st->len < 8) {
        qd_set_errmsg("safetensors: file of %zu bytes is too short for the "
                      "8-byte header length", st->len);
        return QD_EFORMAT;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | st->buf[i];
    if (hlen > QD_ST_MAX_HEADER) {
        qd_set_errmsg("safetensors: header length %llu exceeds the limit of "
                      "%llu bytes", (unsigned long long)hlen,
                      (unsigned long long)QD_ST_MAX_HEADER);
        return QD_EFORMAT;
    }
    if (hlen > st->len - 8) {
        qd_set_errmsg("safetensors: header length %llu runs past end of file "
                      "(%zu bytes)", (unsigned long long)hlen, st->len);
        return QD_EFORMAT;
    }
    if (hlen < 2) {
        qd_set_errmsg("safetensors: header length %llu is too short for a "
                      "JSON object", (unsigned long long)hlen);
        return QD_EFORMAT;
    }
    json_error_t jerr;
    root = json_loadb((const char *)st->buf + 8, (size_t)hlen,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        qd_set_errmsg("safetensors: header is not valid JSON: %s (line %d, "
                      "column %d)", jerr.text, jerr.line, jerr.column);
        return QD_EFORMAT;
    }
    if (!json_is_object(root)) {
        qd_set_errmsg("safetensors: header is not a JSON object");
        rc = QD_EFORMAT;
        goto out;
    }
    size_t n = json_object_size(root);
    st->tensors = qd_calloc(n + 1, sizeof *st->tensors);
    st->spans = qd_calloc(n + 1, sizeof *st->spans);
    if (!st->tensors || !st->spans) {
        rc = QD_ENOMEM;
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(st, val)) != 0)
                goto out;
            continue;
        }
        rc = parse_tensor(st, key, val, &st->tensors[st->n],
                          &st->spans[st->n]);
        if (rc != 0)
            goto out;
        st->n++;
    }
    if ((rc = sort_by_offset(st)) != 0)
        goto out;
    size_t data_off = 8 + (size_t)hlen, data_len = st->len - data_off;
    uint64_t pos = 0;
    for (int64_t i = 0; i < st->n; i++) {
        const span_t *sp = &st->spans[i];
        const char *nm = st->tensors[i].name;
        if (sp->end > data_len) {
            qd_set_errmsg("safetensors: tensor '%s': data [%llu, %llu) runs "
                          "past end of file (data buffer is %zu bytes)", nm,
                          (unsigned long long)sp->begin,
                          (unsigned long long)sp->end, data_len);
            rc = QD_EFORMAT;
            goto out;
        }
        if (sp->begin < pos) {
            qd_set_errmsg("safetensors: tensor '%s': data [%llu, %llu) "
                          "overlaps tensor '%s'", nm,
                          (unsigned long long)sp->begin,
                          (unsigned long long)sp->end,
                          st->tensors[i - 1].name);
            rc = QD_EFORMAT;
            goto out;
        }
        if (sp->begin > pos) {
            qd_set_errmsg("safetensors: gap of %llu bytes before tensor '%s' "
                          "(data not contiguous)",
                          (unsigned long long)(sp->begin - pos), nm);
            rc = QD_EFORMAT;
            goto out;
        }
        pos = sp->end;
        st->tensors[i].data = st->buf + data_off + sp->begin;
    }
    if (pos != data_len) {
        qd_set_errmsg("safetensors: %llu trailing bytes after the last tensor "
                      "(tensors do not cover the data buffer)",
                      (unsigned long long)(data_len - pos));
        rc = QD_EFORMAT;
        goto out;
    }
    st->by_name = qd_malloc((size_t)(st->n + 1) * sizeof *st->by_name);
    if (!st->by_name) {
        rc = QD_ENOMEM;
        goto out;
    }
    for (int64_t i = 0; i < st->n; i++)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_by_name);
out:
    json_decref(root);
    return rc;
}

int qd_st_open_mem(const void *buf, size_t n_bytes, qd_st_t **out)
{
    *out = NULL;
    qd_st_t *st = qd_calloc(1, sizeof *st);
    if (!st)
        return QD_ENOMEM;
    st->buf = buf;
    st->len = n_bytes;
    int rc = parse(st);
    if (rc != 0) {
        if (rc == QD_ENOMEM)
            qd_set_errmsg("safetensors: out of memory");
        qd_st_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int qd_st_open(const char *path, qd_st_t **out)
{
    *out = NULL;
    char why[256];
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qd_set_errmsg("safetensors: cannot open '%s': %s", path,
                      strerror(errno));
        return errno == ENOENT ? QD_ENOENT : QD_EIO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        qd_set_errmsg("safetensors: '%s' is not a regular file", path);
        close(fd);
        return QD_EIO;
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            qd_set_errmsg("safetensors: cannot map '%s': %s", path,
                          strerror(errno));
            close(fd);
            return QD_EIO;
        }
    }
    close(fd);
    qd_st_t *st = NULL;
    rc = qd_st_open_mem(map ? map : "", len, &st);
    if (rc != 0) {
        snprintf(why, sizeof why, "%s", qd_errmsg());
        qd_set_errmsg("%s: %s", path, why);
        if (map)
            munmap(map, len);
        return rc;
    }
    st->map = map;
    st->map_len = len;
    *out = st;
    return 0;
}

int64_t qd_st_n_tensors(const qd_st_t *st) { return st->n; }

const qd_st_tensor_t *qd_st_tensor(const qd_st_t *st, int64_t i)
{
    return i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

static const qd_st_tensor_t *find_sorted(const qd_st_tensor_t *const *v,
                                         int64_t n, const char *name)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid]->name, name);
        if (c == 0)
            return v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const qd_st_tensor_t *qd_st_find(const qd_st_t *st, const char *name)
{
    return find_sorted(st->by_name, st->n, name);
}

const char *qd_st_metadata(const qd_st_t *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    return NULL;
}

/* ---- sharded directories ---------------------------------------------- */

struct qd_st_set {
    qd_st_t **files;
    char **paths;
    int n_files;
    const qd_st_tensor_t **all; /* sorted by name */
    int64_t n;
};

void qd_st_set_close(qd_st_set_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_files; i++) {
        qd_st_close(s->files[i]);
        qd_free(s->paths[i]);
    }
    qd_free(s->files);
    qd_free(s->paths);
    qd_free(s->all);
    qd_free(s);
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = qd_malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static int set_add_file(qd_st_set_t *s, const char *dir, const char *name)
{
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(strrchr(s->paths[i], '/') + 1, name) == 0)
            return i;
    if (!name[0] || strchr(name, '/') || strcmp(name, "..") == 0 ||
        strcmp(name, ".") == 0) {
        qd_set_errmsg("safetensors: index names shard '%.64s', which is not "
                      "a plain file name", name);
        return QD_EFORMAT;
    }
    void *f = qd_realloc(s->files, (size_t)(s->n_files + 1) * sizeof *s->files);
    if (!f)
        return QD_ENOMEM;
    s->files = f;
    void *p = qd_realloc(s->paths, (size_t)(s->n_files + 1) * sizeof *s->paths);
    if (!p)
        return QD_ENOMEM;
    s->paths = p;
    char *path = join_path(dir, name);
    if (!path)
        return QD_ENOMEM;
    qd_st_t *st;
    int rc = qd_st_open(path, &st);
    if (rc != 0) {
        qd_free(path);
        return rc;
    }
    s->files[s->n_files] = st;
    s->paths[s->n_files] = path;
    return s->n_files++;
}

static int set_index(qd_st_set_t *s)
{
    int64_t n = 0;
    for (int i = 0; i < s->n_files; i++)
        n += qd_st_n_tensors(s->files[i]);
    s->all = qd_malloc((size_t)(n + 1) * sizeof *s->all);
    if (!s->all)
        return QD_ENOMEM;
    for (int i = 0; i < s->n_files; i++)
        for (int64_t j = 0; j < qd_st_n_tensors(s->files[i]); j++)
            s->all[s->n++] = qd_st_tensor(s->files[i], j);
    qsort(s->all, (size_t)s->n, sizeof *s->all, cmp_by_name);
    for (int64_t i = 1; i < s->n; i++)
        if (strcmp(s->all[i]->name, s->all[i - 1]->name) == 0) {
            qd_set_errmsg("safetensors: tensor '%s' appears in two shards",
                          s->all[i]->name);
            return QD_EFORMAT;
        }
    return 0;
}

int qd_st_set_open_dir(const char *dir, qd_st_set_t **out)
{
    *out = NULL;
    int rc = 0;
    json_t *root = NULL;
    char *ipath = join_path(dir, "model.safetensors.index.json");
    qd_st_set_t *s = qd_calloc(1, sizeof *s);
    if (!ipath || !s) {
        rc = QD_ENOMEM;
        goto out;
    }
    if (access(ipath, F_OK) != 0) {
        rc = set_add_file(s, dir, "model.safetensors");
        if (rc < 0)
            goto out;
        rc = set_index(s);
        goto out;
    }
    json_error_t jerr;
    root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        qd_set_errmsg("safetensors: %s: %s (line %d)", ipath, jerr.text,
                      jerr.line);
        rc = QD_EFORMAT;
        goto out;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        qd_set_errmsg("safetensors: %s: no 'weight_map' object", ipath);
        rc = QD_EFORMAT;
        goto out;
    }
    const char *tname;
    json_t *v;
    json_object_foreach(wm, tname, v)
    {
        if (!json_is_string(v)) {
            qd_set_errmsg("safetensors: %s: weight_map['%.64s'] is not a "
                          "string", ipath, tname);
            rc = QD_EFORMAT;
            goto out;
        }
        int fi = set_add_file(s, dir, json_string_value(v));
        if (fi < 0) {
            rc = fi;
            goto out;
        }
        if (!qd_st_find(s->files[fi], tname)) {
            qd_set_errmsg("safetensors: tensor '%.128s' listed in the index "
                          "is missing from shard '%s'", tname, s->paths[fi]);
            rc = QD_EFORMAT;
            goto out;
        }
    }
    rc = set_index(s);
out:
    json_decref(root);
    qd_free(ipath);
    if (rc < 0) {
        if (rc == QD_ENOMEM)
            qd_set_errmsg("safetensors: out of memory opening '%s'", dir);
        qd_st_set_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int64_t qd_st_set_n_tensors(const qd_st_set_t *s) { return s->n; }

const qd_st_tensor_t *qd_st_set_tensor(const qd_st_set_t *s, int64_t i)
{
    return i >= 0 && i < s->n ? s->all[i] : NULL;
}

const qd_st_tensor_t *qd_st_set_find(const qd_st_set_t *s, const char *name)
{
    return find_sorted(s->all, s->n, name);
}

int qd_st_set_n_files(const qd_st_set_t *s) { return s->n_files; }

const char *qd_st_set_file_path(const qd_st_set_t *s, int i)
{
    return i >= 0 && i < s->n_files ? s->paths[i] : NULL;
}

/* ---- writer ----------------------------------------------------------- */

typedef struct {
    char *name;
    qd_st_dtype_t dtype;
    int n_dims;
    int64_t shape[QD_ST_MAX_DIMS];
    const void *data;
    size_t n_bytes;
    int owned;
} wt_t;

struct qd_st_writer {
    wt_t *t;
    size_t n, cap;
    json_t *meta;
};

qd_st_writer_t *qd_st_writer_create(void)
{
    return qd_calloc(1, sizeof(qd_st_writer_t));
}

void qd_st_writer_destroy(qd_st_writer_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        qd_free(w->t[i].name);
        if (w->t[i].owned)
            qd_free((void *)w->t[i].data);
    }
    qd_free(w->t);
    json_decref(w->meta);
    qd_free(w);
}

int qd_st_writer_add(qd_st_writer_t *w, const char *name, qd_st_dtype_t dtype,
                     int n_dims, const int64_t *shape, const void *data,
                     size_t n_bytes, int copy)
{
    if ((unsigned)dtype >= QD_ST_DTYPE_COUNT || n_dims < 0 ||
        n_dims > QD_ST_MAX_DIMS || strcmp(name, "__metadata__") == 0) {
        qd_set_errmsg("safetensors writer: bad dtype, rank or name for '%s'",
                      name);
        return QD_EINVAL;
    }
    size_t numel = 1;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] < 0 || qd_mul_size(numel, (size_t)shape[d], &numel)) {
            qd_set_errmsg("safetensors writer: bad shape for '%s'", name);
            return QD_EINVAL;
        }
    if (numel * qd_st_dtype_size(dtype) != n_bytes) {
        qd_set_errmsg("safetensors writer: '%s' has %zu bytes, shape needs "
                      "%zu", name, n_bytes, numel * qd_st_dtype_size(dtype));
        return QD_EINVAL;
    }
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) {
            qd_set_errmsg("safetensors writer: duplicate tensor '%s'", name);
            return QD_EINVAL;
        }
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        void *p = qd_realloc(w->t, cap * sizeof *w->t);
        if (!p)
            return QD_ENOMEM;
        w->t = p;
        w->cap = cap;
    }
    wt_t *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = qd_strdup(name)))
        return QD_ENOMEM;
    if (copy) {
        void *d = qd_malloc(n_bytes);
        if (!d) {
            qd_free(t->name);
            return QD_ENOMEM;
        }
        memcpy(d, data, n_bytes);
        t->data = d;
        t->owned = 1;
    } else {
        t->data = data;
    }
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++)
        t->shape[d] = shape[d];
    t->n_bytes = n_bytes;
    w->n++;
    return 0;
}

int qd_st_writer_set_metadata(qd_st_writer_t *w, const char *key,
                              const char *value)
{
    if (!w->meta && !(w->meta = json_object()))
        return QD_ENOMEM;
    return json_object_set_new(w->meta, key, json_string(value)) ? QD_ENOMEM
                                                                  : 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int qd_st_writer_write(qd_st_writer_t *w, const char *path)
{
    int rc = 0, fd = -1;
    char *hdr = NULL, *tmp = NULL;
    json_t *root = json_object();
    if (!root)
        return QD_ENOMEM;
    if (w->meta && json_object_set(root, "__metadata__", w->meta)) {
        rc = QD_ENOMEM;
        goto out;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        wt_t *t = &w->t[i];
        json_t *shape = json_array(), *offs = json_array();
        json_t *o = json_object();
        if (!shape || !offs || !o) {
            json_decref(shape);
            json_decref(offs);
            json_decref(o);
            rc = QD_ENOMEM;
            goto out;
        }
        for (int d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + t->n_bytes)));
        off += t->n_bytes;
        json_object_set_new(o, "dtype", json_string(qd_st_dtype_name(t->dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "data_offsets", offs);
        if (json_object_set_new(root, t->name, o)) {
            rc = QD_ENOMEM;
            goto out;
        }
    }
    hdr = json_dumps(root, JSON_COMPACT);
    if (!hdr) {
        rc = QD_ENOMEM;
        goto out;
    }
    size_t hlen = strlen(hdr), padded = QD_ALIGN_UP(hlen, 8);
    size_t plen = strlen(path);
    if (!(tmp = qd_malloc(plen + 5))) {
        rc = QD_ENOMEM;
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        qd_set_errmsg("safetensors writer: cannot create '%s': %s", tmp,
                      strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    int bad = write_all(fd, len8, 8) || write_all(fd, hdr, hlen) ||
              write_all(fd, spaces, padded - hlen);
    for (size_t i = 0; i < w->n && !bad; i++)
        bad = write_all(fd, w->t[i].data, w->t[i].n_bytes);
    if (bad || fsync(fd) != 0) {
        qd_set_errmsg("safetensors writer: writing '%s': %s", tmp,
                      strerror(errno));
        rc = QD_EIO;
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        qd_set_errmsg("safetensors writer: rename to '%s': %s", path,
                      strerror(errno));
        rc = QD_EIO;
    }
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(hdr); /* jansson's allocator */
    qd_free(tmp);
    json_decref(root);
    return rc;
}
