/*
 * quantize.c — converts a GGUF model to another tensor type mix, streaming.
 *
 * The output is written the way llama-quantize writes it, so the two tools'
 * files can be compared byte for byte in the data section:
 *   - metadata: every input kv in order, except general.file_type,
 *     general.quantization_version and split.* which are dropped and then
 *     general.quantization_version (2) and general.file_type appended,
 *     followed by our quantize.* provenance keys;
 *   - tensors sorted by layer, then name (qd_recipe_sort), n_dims with
 *     trailing 1s dropped, data aligned to general.alignment (default 32).
 *
 * Streaming: the header is fully determined by the plan (every output size
 * is known before any data is converted), so it is written first and each
 * tensor's data follows as soon as it is converted. Memory is one tensor's
 * float copy (none for F32 input, which is read from the mapping) plus its
 * converted bytes. The metadata block is produced by the GGUF writer (which
 * copies kvs verbatim) and spliced in front of our own tensor table.
 *
 * Rows are independent in every format, so each tensor's rows are split
 * over the compute pool and the bytes do not depend on the thread count.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/compute.h"
#include "quantd/convert.h"
#include "quantd/gguf.h"


/* Tell the kernel we are done with [p, p+n) of a read-only file mapping. */
static void release_pages(const void *p, size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (pg > 0 && b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}
#define MOD "quantize"
#define QD_QNT_VERSION 2 /* general.quantization_version, as ggml */

/* ---- metadata ----------------------------------------------------------- */

static int get_i32_or(const qd_gguf_t *g, const char *key, int32_t dflt)
{
    uint32_t v;
    return qd_gguf_get_u32(g, key, &v) == 0 && v <= INT32_MAX ? (int32_t)v
                                                              : dflt;
}

void qd__recipe_model_info(const qd_gguf_t *g, qd_recipe_model_t *m,
                           const char **arch_out)
{
    const char *arch = "";
    size_t len;
    char key[256];
    if (qd_gguf_get_str(g, "general.architecture", &arch, &len))
        arch = "";
    if (arch_out)
        *arch_out = arch;
    m->arch = arch;
    snprintf(key, sizeof key, "%s.block_count", arch);
    m->n_layer = get_i32_or(g, key, 0);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    m->n_head = get_i32_or(g, key, 0);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    m->n_head_kv = get_i32_or(g, key, m->n_head);
    snprintf(key, sizeof key, "%s.expert_count", arch);
    m->n_expert = get_i32_or(g, key, 0);
}

int qd__recipe_tensors(const qd_gguf_t *g, int64_t **perm_out,
                       qd_recipe_tensor_t **rt_out)
{
    int64_t n = qd_gguf_n_tensors(g);
    size_t nn = (size_t)QD_MAX(n, 1);
    const char **names = qd_calloc(nn, sizeof *names);
    int64_t *perm = qd_calloc(nn, sizeof *perm);
    qd_recipe_tensor_t *rt = qd_calloc(nn, sizeof *rt);
    int rc = 0;
    *perm_out = NULL;
    *rt_out = NULL;
    if (!names || !perm || !rt) {
        rc = QD_ENOMEM;
        qd_set_errmsg("out of memory planning %lld tensors", (long long)n);
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        names[i] = qd_gguf_tensor(g, i)->name;
    if ((rc = qd_recipe_sort(names, n, perm)))
        goto out;
    for (int64_t i = 0; i < n; i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, perm[i]);
        rt[i].name = t->name;
        rt[i].type = t->type;
        memcpy(rt[i].ne, t->ne, sizeof rt[i].ne);
    }
    *perm_out = perm;
    *rt_out = rt;
    perm = NULL;
    rt = NULL;
out:
    qd_free(names);
    qd_free(perm);
    qd_free(rt);
    return rc;
}

int qd__quantize_key_dropped(const char *k)
{
    return !strcmp(k, "general.file_type") ||
           !strcmp(k, "general.quantization_version") ||
           !strcmp(k, "split.no") || !strcmp(k, "split.count") ||
           !strcmp(k, "split.tensors.count");
}

/* Length of one encoded value of type t at p (at most n bytes), or 0. */
static size_t value_len(const uint8_t *p, size_t n, uint32_t t, int depth)
{
    static const uint8_t scalar[QD_GGUF_VTYPE_COUNT] = {
        [QD_GGUF_UINT8] = 1,   [QD_GGUF_INT8] = 1,    [QD_GGUF_UINT16] = 2,
        [QD_GGUF_INT16] = 2,   [QD_GGUF_UINT32] = 4,  [QD_GGUF_INT32] = 4,
        [QD_GGUF_FLOAT32] = 4, [QD_GGUF_BOOL] = 1,    [QD_GGUF_UINT64] = 8,
        [QD_GGUF_INT64] = 8,   [QD_GGUF_FLOAT64] = 8};
    uint64_t len, cnt;
    if (t >= QD_GGUF_VTYPE_COUNT || depth > 8)
        return 0;
    if (scalar[t])
        return scalar[t] <= n ? scalar[t] : 0;
    if (t == QD_GGUF_STRING) {
        if (n < 8)
            return 0;
        memcpy(&len, p, 8);
        return len <= n - 8 ? 8 + (size_t)len : 0;
    }
    /* array: u32 element type, u64 count, elements */
    if (n < 12)
        return 0;
    uint32_t et;
    memcpy(&et, p, 4);
    memcpy(&cnt, p + 4, 8);
    size_t off = 12;
    for (uint64_t j = 0; j < cnt; j++) {
        size_t k = value_len(p + off, n - off, et, depth + 1);
        if (!k)
            return cnt ? 0 : off;
        off += k;
    }
    return off;
}

/* The kv block (after the 24-byte file header) of a writer holding only
 * kvs: *kv points into *buf (freed by the caller with qd_free). */
static int encode_kvs(qd_gguf_writer_t *w, void **buf, const uint8_t **kv,
                      size_t *kv_len, uint64_t *n_kv)
{
    size_t n, off = 24;
    int rc = qd_gguf_writer_write_mem(w, buf, &n);
    if (rc)
        return rc;
    const uint8_t *b = *buf; /* magic, version, n_tensors (0), n_kv, kvs */
    memcpy(n_kv, b + 16, 8);
    for (uint64_t i = 0; i < *n_kv; i++) {
        uint64_t klen;
        uint32_t t;
        size_t k;
        if (n - off < 8)
            goto bad;
        memcpy(&klen, b + off, 8);
        if (klen > n - off - 8 || n - off - 8 - klen < 4)
            goto bad;
        off += 8 + (size_t)klen;
        memcpy(&t, b + off, 4);
        off += 4;
        if (!(k = value_len(b + off, n - off, t, 0)))
            goto bad;
        off += k;
    }
    *kv = b + 24;
    *kv_len = off - 24;
    return 0;
bad:
    qd_free(*buf);
    *buf = NULL;
    qd_set_errmsg("internal: cannot re-read the encoded metadata");
    return QD_EINTERNAL;
}

/* ---- parallel row work -------------------------------------------------- */

typedef struct {
    enum { JOB_TO_FLOAT, JOB_CHECK, JOB_QUANTIZE } op;
    const qd_type_traits_t *from, *to;
    const void *src;    /* JOB_TO_FLOAT: input rows */
    const float *f32;   /* JOB_CHECK / JOB_QUANTIZE: float rows */
    void *dst;
    int64_t nrows, n_per_row;
    int64_t rows_per_mat;  /* rows of one matrix (ne[1]) */
    const float *imatrix;  /* NULL, or n_per_row (x n_mat when per_mat) */
    int imatrix_per_mat;
    size_t in_row_bytes, out_row_bytes;
    int64_t *bad_row;      /* [nth]: first non-finite row, or -1 */
} job_t;

static void run_job(void *arg, int ith, int nth)
{
    job_t *j = arg;
    int64_t r0 = j->nrows * ith / nth, r1 = j->nrows * (ith + 1) / nth;
    if (j->op == JOB_TO_FLOAT) {
        if (r1 > r0)
            j->from->to_float((const uint8_t *)j->src + r0 * j->in_row_bytes,
                              (float *)j->dst + r0 * j->n_per_row,
                              (r1 - r0) * j->n_per_row);
        return;
    }
    if (j->op == JOB_CHECK) {
        j->bad_row[ith] = -1;
        for (int64_t r = r0; r < r1 && j->bad_row[ith] < 0; r++) {
            const float *x = j->f32 + r * j->n_per_row;
            for (int64_t c = 0; c < j->n_per_row; c++) {
                if (!isfinite(x[c])) {
                    j->bad_row[ith] = r;
                    break;
                }
            }
        }
        return;
    }
    /* quantize [r0, r1), cut at matrix boundaries (one imatrix each) */
    while (r0 < r1) {
        int64_t mat = r0 / j->rows_per_mat;
        int64_t end = QD_MIN(r1, (mat + 1) * j->rows_per_mat);
        const float *im = j->imatrix;
        if (im && j->imatrix_per_mat)
            im += mat * j->n_per_row;
        j->to->quantize(j->f32 + r0 * j->n_per_row,
                        (uint8_t *)j->dst + r0 * j->out_row_bytes, end - r0,
                        j->n_per_row, im);
        r0 = end;
    }
}

/* ---- output file -------------------------------------------------------- */

typedef struct {
    int fd;
    const char *path; /* for messages */
    uint64_t pos;
} out_t;

static int out_write(out_t *o, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(o->fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            qd_set_errmsg("writing %s: %s", o->path,
                          k < 0 ? strerror(errno) : "short write");
            return QD_EIO;
        }
        c += k;
        n -= (size_t)k;
        o->pos += (uint64_t)k;
    }
    return 0;
}

static int out_pad(out_t *o, size_t align)
{
    static const uint8_t zeros[256];
    size_t pad = (size_t)(QD_ALIGN_UP(o->pos, align) - o->pos);
    return pad ? out_write(o, zeros, pad) : 0;
}

static int out_str(out_t *o, const char *s)
{
    uint64_t len = strlen(s);
    int rc = out_write(o, &len, 8);
    return rc ? rc : out_write(o, s, (size_t)len);
}

/* ---- the conversion ----------------------------------------------------- */

typedef struct {
    const qd_gguf_tensor_t *in;
    qd_type_t to;
    int n_dims;          /* trailing 1s dropped, as ggml_n_dims */
    int64_t nrows;       /* ne[1] * ne[2] * ne[3] */
    size_t out_bytes;
    uint64_t offset;     /* in the output data section */
    const float *imatrix; /* borrowed from the imatrix table, or NULL */
    int imatrix_per_mat;
} plan_t;

void qd_quantize_params_default(qd_quantize_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->recipe.ftype = QD_FTYPE_MOSTLY_Q8_0;
}

static int n_dims_eff(const int64_t ne[4])
{
    for (int d = 3; d >= 1; d--)
        if (ne[d] > 1)
            return d + 1;
    return 1;
}

/* Can tensor t be converted to type `to`? 0 or QD_EUNSUPPORTED. */
static int check_convertible(const qd_gguf_tensor_t *t, qd_type_t to)
{
    const qd_type_traits_t *from = qd_type_traits(t->type);
    if (qd_type_internal((int)to)) { /* Q4_G128 of an import cache */
        qd_set_errmsg("tensor '%s': %s is quantd's own type, not written to "
                      "GGUF files", t->name, qd_type_name(to));
        return QD_EUNSUPPORTED;
    }
    if (t->type == to)
        return 0;
    if (t->type != QD_TYPE_F32 && !from->to_float) {
        qd_set_errmsg("tensor '%s': cannot convert from %s (no dequantizer)",
                      t->name, from->name);
        return QD_EUNSUPPORTED;
    }
    if (!qd_type_traits(to)->quantize) {
        qd_set_errmsg("tensor '%s': no quantizer for %s in this build",
                      t->name, qd_type_name(to));
        return QD_EUNSUPPORTED;
    }
    return 0;
}

static int write_header(out_t *o, const uint8_t *kv, size_t kv_len,
                        uint64_t n_kv, const plan_t *plan, int64_t n,
                        size_t align)
{
    uint32_t magic = 0x46554747u, version = 3;
    uint64_t nt = (uint64_t)n;
    int rc;
    if ((rc = out_write(o, &magic, 4)) || (rc = out_write(o, &version, 4)) ||
        (rc = out_write(o, &nt, 8)) || (rc = out_write(o, &n_kv, 8)) ||
        (rc = out_write(o, kv, kv_len)))
        return rc;
    for (int64_t i = 0; i < n; i++) {
        const plan_t *p = &plan[i];
        uint32_t nd = (uint32_t)p->n_dims, type = (uint32_t)p->to;
        if ((rc = out_str(o, p->in->name)) || (rc = out_write(o, &nd, 4)) ||
            (rc = out_write(o, p->in->ne, 8 * (size_t)nd)) ||
            (rc = out_write(o, &type, 4)) ||
            (rc = out_write(o, &p->offset, 8)))
            return rc;
    }
    return out_pad(o, align);
}

/* Metadata of the output: the input's kvs plus ours, in llama.cpp's order. */
static int build_kvs(qd_gguf_writer_t *w, const qd_gguf_t *g,
                     const qd_quantize_params_t *params,
                     const qd_imatrix_t *im)
{
    int rc = 0;
    for (int64_t i = 0; i < qd_gguf_n_kv(g) && !rc; i++)
        if (!qd__quantize_key_dropped(qd_gguf_kv_key(g, i)))
            rc = qd_gguf_writer_copy_kv(w, g, i);
    const qd_recipe_params_t *r = &params->recipe;
    const char *method = r->pure ? "pure" : "llama.cpp-recipe";
    if (!rc)
        rc = qd_gguf_writer_set_u32(w, "general.quantization_version",
                                    QD_QNT_VERSION);
    if (!rc)
        rc = qd_gguf_writer_set_u32(w, "general.file_type",
                                    (uint32_t)r->ftype);
    if (!rc)
        rc = qd_gguf_writer_set_str(w, "quantize.tool",
                                    "quantd " PACKAGE_VERSION);
    if (!rc)
        rc = qd_gguf_writer_set_str(w, "quantize.type",
                                    qd_ftype_name(r->ftype));
    if (!rc)
        rc = qd_gguf_writer_set_str(w, "quantize.method", method);
    if (!rc && r->n_overrides > 0) {
        const char **ov = qd_calloc((size_t)r->n_overrides, sizeof *ov);
        char **own = qd_calloc((size_t)r->n_overrides, sizeof *own);
        rc = ov && own ? 0 : QD_ENOMEM;
        for (int k = 0; k < r->n_overrides && !rc; k++) {
            size_t len = strlen(r->overrides[k].pattern) + 16;
            if (!(own[k] = qd_malloc(len))) {
                rc = QD_ENOMEM;
                break;
            }
            snprintf(own[k], len, "%s=%s", r->overrides[k].pattern,
                     qd_type_name(r->overrides[k].type));
            ov[k] = own[k];
        }
        if (!rc)
            rc = qd_gguf_writer_set_arr_str(w, "quantize.tensor_types", ov,
                                            (uint64_t)r->n_overrides);
        for (int k = 0; own && k < r->n_overrides; k++)
            qd_free(own[k]);
        qd_free(own);
        qd_free(ov);
        if (rc == QD_ENOMEM)
            qd_set_errmsg("out of memory building quantize.tensor_types");
    }
    if (!rc && im) {
        rc = qd_gguf_writer_set_str(w, "quantize.imatrix.file",
                                    qd_imatrix_path(im));
        if (!rc)
            rc = qd_gguf_writer_set_str(w, "quantize.imatrix.sha256",
                                        qd_imatrix_sha256(im));
        if (!rc)
            rc = qd_gguf_writer_set_u32(w, "quantize.imatrix.entries_count",
                                        (uint32_t)qd_imatrix_count(im));
    }
    return rc;
}

int qd_quantize_model(const char *in_path, const char *out_path,
                      const qd_quantize_params_t *params,
                      qd_quantize_stats_t *stats)
{
    qd_gguf_t *g = NULL;
    qd_gguf_writer_t *w = NULL;
    qd_pool_t *pool = NULL;
    qd_imatrix_t *im = NULL;
    plan_t *plan = NULL;
    qd_recipe_tensor_t *rt = NULL;
    qd_type_t *types = NULL;
    int *flags = NULL;
    int64_t *perm = NULL, *bad = NULL;
    void *kvbuf = NULL;
    float *f32buf = NULL;
    void *outbuf = NULL;
    size_t f32cap = 0, outcap = 0;
    char *tmp = NULL;
    out_t o = {.fd = -1};
    qd_quantize_stats_t st = {0};
    qd_recipe_model_t model = {0};
    qd_recipe_params_t recipe = params->recipe;
    const char *arch;
    int rc;
    uint64_t t0 = qd_now_ns();

    if ((rc = qd_gguf_open(in_path, &g)))
        goto out;
    int64_t n = qd_gguf_n_tensors(g);
    qd__recipe_model_info(g, &model, &arch);

    if (params->imatrix_path) {
        if ((rc = qd_imatrix_load(params->imatrix_path, &im)))
            goto out;
        recipe.has_imatrix = 1;
    }

    /* plan: output order, types, sizes, offsets */
    if ((rc = qd__recipe_tensors(g, &perm, &rt)))
        goto out;
    types = qd_calloc((size_t)QD_MAX(n, 1), sizeof *types);
    flags = qd_calloc((size_t)QD_MAX(n, 1), sizeof *flags);
    plan = qd_calloc((size_t)QD_MAX(n, 1), sizeof *plan);
    if (!types || !flags || !plan) {
        rc = QD_ENOMEM;
        qd_set_errmsg("out of memory planning %lld tensors", (long long)n);
        goto out;
    }
    if ((rc = qd_recipe_plan(&model, &recipe, rt, n, types, flags)))
        goto out;

    uint32_t align = QD_GGUF_DEFAULT_ALIGNMENT;
    if (qd_gguf_get_u32(g, "general.alignment", &align) || !align ||
        (align & (align - 1)))
        align = QD_GGUF_DEFAULT_ALIGNMENT;
    uint64_t data_bytes = 0;
    int n_requant = 0;
    for (int64_t i = 0; i < n; i++) {
        plan_t *p = &plan[i];
        p->in = qd_gguf_tensor(g, perm[i]);
        p->to = types[i];
        p->n_dims = n_dims_eff(p->in->ne);
        p->nrows = p->in->ne[1] * p->in->ne[2] * p->in->ne[3];
        p->out_bytes = qd_row_size(p->to, p->in->ne[0]) * (size_t)p->nrows;
        p->offset = data_bytes;
        data_bytes = QD_ALIGN_UP(data_bytes + p->out_bytes, align);
        if ((rc = check_convertible(p->in, p->to)))
            goto out;
        if (p->to != p->in->type && qd_type_traits(p->in->type)->is_quantized)
            n_requant++;
        if (flags[i] & QD_RECIPE_FALLBACK)
            st.n_fallback++;
        if (im && p->to != p->in->type && qd_type_traits(p->to)->is_quantized)
            qd_imatrix_lookup(im, p->in->name, p->in->ne[0], p->in->ne[2],
                              &p->imatrix, &p->imatrix_per_mat);
    }
    if (n_requant)
        QD_WARN(MOD, "%s: %d tensors are already quantized and will be "
                     "requantized (quality drops: start from F32/F16/BF16 "
                     "if you can)", in_path, n_requant);

    /* metadata, then the header */
    if (!(w = qd_gguf_writer_create())) {
        rc = QD_ENOMEM;
        qd_set_errmsg("out of memory");
        goto out;
    }
    const uint8_t *kv;
    size_t kv_len;
    uint64_t n_kv;
    if ((rc = build_kvs(w, g, params, im)) ||
        (rc = encode_kvs(w, &kvbuf, &kv, &kv_len, &n_kv)))
        goto out;

    size_t tmp_len = strlen(out_path) + 5;
    if (!(tmp = qd_malloc(tmp_len))) {
        rc = QD_ENOMEM;
        qd_set_errmsg("out of memory");
        goto out;
    }
    snprintf(tmp, tmp_len, "%s.tmp", out_path);
    o.path = tmp;
    o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o.fd < 0) {
        rc = QD_EIO;
        qd_set_errmsg("cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if ((rc = write_header(&o, kv, kv_len, n_kv, plan, n, align)))
        goto out;
    uint64_t data_start = o.pos;

    int nth = params->n_threads > 0 ? params->n_threads : qd_physical_cores();
    if ((rc = qd_pool_create(nth, &pool)))
        goto out;
    nth = qd_pool_size(pool);
    if (!(bad = qd_calloc((size_t)nth, sizeof *bad))) {
        rc = QD_ENOMEM;
        goto out;
    }

    uint64_t in_total = 0;
    for (int64_t i = 0; i < n; i++)
        in_total += plan[i].in->n_bytes;

    for (int64_t i = 0; i < n; i++) {
        plan_t *p = &plan[i];
        const qd_gguf_tensor_t *t = p->in;
        const void *data = t->data;
        int64_t n_per_row = t->ne[0];

        if (p->to != t->type) {
            const float *f32 = t->data;
            size_t need;
            if (qd_mul_size((size_t)p->nrows, (size_t)n_per_row * 4, &need)) {
                rc = QD_EOVERFLOW;
                qd_set_errmsg("tensor '%s' too large", t->name);
                goto out;
            }
            if (t->type != QD_TYPE_F32) {
                if (need > f32cap) {
                    qd_free(f32buf);
                    f32cap = 0;
                    if (!(f32buf = qd_malloc(need))) {
                        rc = QD_ENOMEM;
                        qd_set_errmsg("out of memory for tensor '%s' "
                                      "(%zu bytes as float)", t->name, need);
                        goto out;
                    }
                    f32cap = need;
                }
                job_t j = {.op = JOB_TO_FLOAT,
                           .from = qd_type_traits(t->type),
                           .src = t->data, .dst = f32buf, .nrows = p->nrows,
                           .n_per_row = n_per_row,
                           .in_row_bytes = qd_row_size(t->type, n_per_row)};
                qd_pool_run(pool, run_job, &j);
                f32 = f32buf;
            }
            job_t c = {.op = JOB_CHECK, .f32 = f32, .nrows = p->nrows,
                       .n_per_row = n_per_row, .bad_row = bad};
            qd_pool_run(pool, run_job, &c);
            for (int k = 0; k < nth; k++) {
                if (bad[k] >= 0) {
                    rc = QD_EFORMAT;
                    qd_set_errmsg("tensor '%s': row %lld holds NaN or "
                                  "infinite values", t->name,
                                  (long long)bad[k]);
                    goto out;
                }
            }
            if (p->out_bytes > outcap) {
                qd_free_aligned(outbuf);
                outcap = 0;
                if (!(outbuf = qd_malloc_aligned(p->out_bytes, 64))) {
                    rc = QD_ENOMEM;
                    qd_set_errmsg("out of memory for tensor '%s' (%zu bytes)",
                                  t->name, p->out_bytes);
                    goto out;
                }
                outcap = p->out_bytes;
            }
            job_t q = {.op = JOB_QUANTIZE, .to = qd_type_traits(p->to),
                       .f32 = f32, .dst = outbuf, .nrows = p->nrows,
                       .n_per_row = n_per_row,
                       .rows_per_mat = QD_MAX(t->ne[1], 1),
                       .imatrix = p->imatrix,
                       .imatrix_per_mat = p->imatrix_per_mat,
                       .out_row_bytes = qd_row_size(p->to, n_per_row)};
            qd_pool_run(pool, run_job, &q);
            data = outbuf;
            st.n_quantized++;
        }
        if (o.pos - data_start != p->offset) {
            rc = QD_EINTERNAL;
            qd_set_errmsg("internal: tensor '%s' at %llu, planned %llu",
                          t->name, (unsigned long long)(o.pos - data_start),
                          (unsigned long long)p->offset);
            goto out;
        }
        if ((rc = out_write(&o, data, p->out_bytes)) ||
            (rc = out_pad(&o, align)))
            goto out;

        /* Done with this tensor's input: drop its pages from the mapping
         * (they are clean file pages, re-read if ever touched again), so
         * resident memory stays near one tensor, not the whole model. */
        release_pages(t->data, t->n_bytes);

        st.n_tensors++;
        st.bytes_in += t->n_bytes;
        st.bytes_out += p->out_bytes;
        st.n_weights += t->ne[0] * p->nrows;
        st.n_type[p->to]++;
        if (params->progress) {
            qd_quantize_progress_t pr = {
                .i_tensor = i + 1, .n_tensors = n, .name = t->name,
                .from = t->type, .to = p->to, .bytes_in_done = st.bytes_in,
                .bytes_in_total = in_total, .bytes_out_done = st.bytes_out,
                .elapsed_s = (double)(qd_now_ns() - t0) * 1e-9};
            params->progress(params->progress_ud, &pr);
        }
    }
    if (fsync(o.fd) || close(o.fd)) {
        o.fd = -1;
        rc = QD_EIO;
        qd_set_errmsg("writing %s: %s", tmp, strerror(errno));
        goto out;
    }
    o.fd = -1;
    if (rename(tmp, out_path)) {
        rc = QD_EIO;
        qd_set_errmsg("renaming %s to %s: %s", tmp, out_path, strerror(errno));
        goto out;
    }
    if (stats)
        *stats = st;
out:
    if (o.fd >= 0)
        close(o.fd);
    if (rc && tmp)
        unlink(tmp);
    qd_free(tmp);
    qd_free_aligned(outbuf);
    qd_free(f32buf);
    qd_free(kvbuf);
    qd_free(bad);
    qd_pool_destroy(pool);
    qd_gguf_writer_destroy(w);
    qd_free(plan);
    qd_free(flags);
    qd_free(types);
    qd_free(rt);
    qd_free(perm);
    qd_imatrix_free(im);
    qd_gguf_close(g);
    return rc;
}
