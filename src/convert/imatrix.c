/*
 * imatrix.c — reads importance matrices (llama-imatrix's GGUF and legacy
 * .dat formats, described in convert_int.h) for the quantizer.
 *
 * Every entry is checked before use: counts, lengths and sizes come from a
 * file. The file's SHA-256 is kept for the output's provenance record.
 */
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/gguf.h"

#define MOD "quantize"

typedef struct {
    char *name;
    float *w;      /* n values */
    int64_t n;
} entry_t;

struct qd_imatrix {
    char *path;
    char sha256[65];
    entry_t *e;
    int64_t n, cap;
};

static void *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long len;
    if (!f) {
        qd_set_errmsg("cannot open imatrix %s", path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET)) {
        qd_set_errmsg("cannot read imatrix %s", path);
        goto out;
    }
    if (!(buf = qd_malloc((size_t)len + 1))) {
        qd_set_errmsg("out of memory reading imatrix %s", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        qd_set_errmsg("cannot read imatrix %s", path);
        qd_free(buf);
        buf = NULL;
        goto out;
    }
    *size = (size_t)len;
out:
    fclose(f);
    return buf;
}

static int add_entry(qd_imatrix_t *im, const char *name, size_t name_len,
                     int64_t n)
{
    if (im->n == im->cap) {
        int64_t cap = im->cap ? im->cap * 2 : 64;
        entry_t *e = qd_realloc(im->e, (size_t)cap * sizeof *e);
        if (!e)
            return QD_ENOMEM;
        im->e = e;
        im->cap = cap;
    }
    entry_t *e = &im->e[im->n];
    e->name = qd_strndup(name, name_len);
    e->w = qd_malloc((size_t)QD_MAX(n, 1) * sizeof(float));
    e->n = n;
    if (!e->name || !e->w) {
        qd_free(e->name);
        qd_free(e->w);
        return QD_ENOMEM;
    }
    im->n++;
    return 0;
}

/* GGUF format: pairs NAME.in_sum2 / NAME.counts. */
static int load_gguf(qd_imatrix_t *im, const void *buf, size_t size)
{
    qd_gguf_t *g = NULL;
    int rc = qd_gguf_open_mem(buf, size, &g);
    if (rc)
        return rc;
    static const char sfx[] = ".in_sum2";
    for (int64_t i = 0; i < qd_gguf_n_tensors(g) && !rc; i++) {
        const qd_gguf_tensor_t *s = qd_gguf_tensor(g, i);
        size_t len = strlen(s->name), base = len - (sizeof sfx - 1);
        char cname[512];
        if (len < sizeof sfx || strcmp(s->name + base, sfx))
            continue;
        snprintf(cname, sizeof cname, "%.*s.counts", (int)base, s->name);
        const qd_gguf_tensor_t *c = qd_gguf_find_tensor(g, cname);
        if (!c || s->type != QD_TYPE_F32 || c->type != QD_TYPE_F32 ||
            c->ne[0] != 1 || c->ne[1] != s->ne[1] || s->ne[2] != 1 ||
            s->ne[3] != 1 || c->ne[2] != 1 || c->ne[3] != 1) {
            qd_set_errmsg("imatrix %s: '%s' has no matching F32 counts "
                          "tensor of shape [1, %lld]", im->path, s->name,
                          (long long)s->ne[1]);
            rc = QD_EFORMAT;
            break;
        }
        int64_t n0 = s->ne[0], nm = s->ne[1];
        if ((rc = add_entry(im, s->name, base, n0 * nm))) {
            qd_set_errmsg("out of memory loading imatrix %s", im->path);
            break;
        }
        float *w = im->e[im->n - 1].w;
        const float *sums = s->data, *counts = c->data;
        for (int64_t m = 0; m < nm; m++)
            for (int64_t j = 0; j < n0; j++)
                w[m * n0 + j] = counts[m] > 0.0f ? sums[m * n0 + j] / counts[m]
                                                 : 1.0f;
    }
    qd_gguf_close(g);
    return rc;
}

/* Legacy .dat format. */
static int load_dat(qd_imatrix_t *im, const uint8_t *p, size_t size)
{
    size_t off = 0;
    int32_t n_entries;
#define NEED(k)                                                                \
    do {                                                                       \
        if (size - off < (size_t)(k))                                          \
            goto trunc;                                                        \
    } while (0)
    NEED(4);
    memcpy(&n_entries, p, 4);
    off = 4;
    if (n_entries < 1) {
        qd_set_errmsg("imatrix %s: not an imatrix file (%d entries)",
                      im->path, (int)n_entries);
        return QD_EFORMAT;
    }
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len, ncall, nval;
        NEED(4);
        memcpy(&len, p + off, 4);
        off += 4;
        if (len < 1 || len > 4096)
            goto bad;
        NEED(len);
        const char *name = (const char *)p + off;
        off += (size_t)len;
        NEED(8);
        memcpy(&ncall, p + off, 4);
        memcpy(&nval, p + off + 4, 4);
        off += 8;
        if (nval < 1 || ncall < 0)
            goto bad;
        NEED((size_t)nval * 4);
        if (add_entry(im, name, (size_t)len, nval)) {
            qd_set_errmsg("out of memory loading imatrix %s", im->path);
            return QD_ENOMEM;
        }
        float *w = im->e[im->n - 1].w;
        memcpy(w, p + off, (size_t)nval * 4);
        off += (size_t)nval * 4;
        if (ncall > 0)
            for (int32_t j = 0; j < nval; j++)
                w[j] /= (float)ncall;
    }
    return 0;
trunc:
    qd_set_errmsg("imatrix %s: truncated at byte %zu", im->path, off);
    return QD_EFORMAT;
bad:
    qd_set_errmsg("imatrix %s: bad entry at byte %zu", im->path, off);
    return QD_EFORMAT;
#undef NEED
}

static void sha256_hex(const void *buf, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    out[0] = 0;
    if (!EVP_Digest(buf, n, md, &len, EVP_sha256(), NULL) || len != 32)
        return;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int qd_imatrix_load(const char *path, qd_imatrix_t **out)
{
    size_t size = 0;
    int rc;
    uint8_t *buf;
    qd_imatrix_t *im = qd_calloc(1, sizeof *im);
    *out = NULL;
    if (!im || !(im->path = qd_strdup(path))) {
        qd_free(im);
        qd_set_errmsg("out of memory");
        return QD_ENOMEM;
    }
    if (!(buf = read_file(path, &size))) {
        qd_imatrix_free(im);
        return QD_EIO;
    }
    sha256_hex(buf, size, im->sha256);
    if (size >= 4 && !memcmp(buf, "GGUF", 4))
        rc = load_gguf(im, buf, size);
    else
        rc = load_dat(im, buf, size);
    for (int64_t i = 0; i < im->n && !rc; i++) {
        for (int64_t j = 0; j < im->e[i].n; j++) {
            if (!isfinite(im->e[i].w[j]) || im->e[i].w[j] < 0) {
                qd_set_errmsg("imatrix %s: entry '%s' holds a negative or "
                              "non-finite value", path, im->e[i].name);
                rc = QD_EFORMAT;
                break;
            }
        }
    }
    if (!rc && im->n == 0) {
        qd_set_errmsg("imatrix %s: no entries", path);
        rc = QD_EFORMAT;
    }
    qd_free(buf);
    if (rc) {
        qd_imatrix_free(im);
        return rc;
    }
    QD_INFO(MOD, "imatrix %s: %lld entries", path, (long long)im->n);
    *out = im;
    return 0;
}

void qd_imatrix_free(qd_imatrix_t *im)
{
    if (!im)
        return;
    for (int64_t i = 0; i < im->n; i++) {
        qd_free(im->e[i].name);
        qd_free(im->e[i].w);
    }
    qd_free(im->e);
    qd_free(im->path);
    qd_free(im);
}

const char *qd_imatrix_path(const qd_imatrix_t *im) { return im->path; }
const char *qd_imatrix_sha256(const qd_imatrix_t *im) { return im->sha256; }
int64_t qd_imatrix_count(const qd_imatrix_t *im) { return im->n; }

void qd_imatrix_lookup(const qd_imatrix_t *im, const char *name,
                       int64_t n_cols, int64_t n_mat, const float **w,
                       int *per_mat)
{
    *w = NULL;
    *per_mat = 0;
    for (int64_t i = 0; i < im->n; i++) {
        if (strcmp(im->e[i].name, name))
            continue;
        if (im->e[i].n == n_cols * n_mat) {
            *w = im->e[i].w;
            *per_mat = n_mat > 1;
        } else {
            QD_WARN(MOD, "imatrix entry '%s' has %lld values, tensor needs "
                         "%lld: not used", name, (long long)im->e[i].n,
                    (long long)(n_cols * n_mat));
        }
        return;
    }
    QD_INFO(MOD, "no imatrix entry for %s", name);
}
