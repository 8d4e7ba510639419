/*
 * test_quant_k.c — K-quants (Q2_K … Q6_K), Q8_K and IQ4_XS reference
 * implementations: bit-exactness against tensors quantized by llama.cpp
 * ($QD_SHARED/reference/quant-vectors, see its README section 1),
 * round-trip error bounds, vec_dot against a double-precision dot, and the
 * importance-weighted (imatrix) quantization paths.
 */
#include "quantd/quant.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define VEC_ROWS 256
#define VEC_COLS 512
#define VEC_N    (VEC_ROWS * VEC_COLS)

static const qd_type_t conf_types[] = {QD_TYPE_Q2_K, QD_TYPE_Q3_K,
                                       QD_TYPE_Q4_K, QD_TYPE_Q5_K,
                                       QD_TYPE_Q6_K, QD_TYPE_IQ4_XS};
#define N_CONF (sizeof conf_types / sizeof conf_types[0])

static const qd_type_t all_types[] = {QD_TYPE_Q2_K,  QD_TYPE_Q3_K, QD_TYPE_Q4_K,
                                      QD_TYPE_Q5_K,  QD_TYPE_Q6_K, QD_TYPE_Q8_K,
                                      QD_TYPE_IQ4_XS};
#define N_ALL (sizeof all_types / sizeof all_types[0])

/* ---- helpers ---------------------------------------------------------- */

/* Read $QD_SHARED/reference/quant-vectors/<name>; NULL if QD_SHARED is
 * unset or has no quant-vectors directory (caller skips). Fails the test
 * if the directory exists but the file is missing or has the wrong size. */
static void *read_vector(const char *name, size_t want_bytes)
{
    const char *root = getenv("QD_SHARED");
    if (!root)
        return NULL;
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/reference/quant-vectors", root);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    snprintf(path, sizeof path, "%s/reference/quant-vectors/%s", root, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    void *buf = malloc(want_bytes + 1);
    cr_assert(buf);
    size_t got = fread(buf, 1, want_bytes + 1, f);
    fclose(f);
    cr_assert_eq(got, want_bytes, "%s: %zu bytes, expected %zu", path, got,
                 want_bytes);
    return buf;
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) /* (0, 1) */
{
    return ((double)(rng_next() >> 11) + 0.5) * 0x1p-53;
}

static double rng_normal(void)
{
    double u = rng_uniform(), v = rng_uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Heavy-tailed rows like the shared vectors: per-row scale, Gaussian body
 * and a few outliers of 8-20 sigma. */
static void fill_heavy(float *x, int64_t nrows, int64_t ncols)
{
    for (int64_t r = 0; r < nrows; r++) {
        double s = 0.02 * exp(0.5 * rng_normal());
        float *row = x + r * ncols;
        for (int64_t c = 0; c < ncols; c++)
            row[c] = (float)(s * rng_normal());
        for (int k = 0; k < 4; k++) {
            int64_t c = (int64_t)(rng_next() % (uint64_t)ncols);
            double mag = 8 + 12 * rng_uniform();
            row[c] = (float)((rng_next() & 1 ? mag : -mag) * s);
        }
    }
}

static double rmse(const float *a, const float *b, int64_t n)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        e += d * d;
    }
    return sqrt(e / (double)n);
}

static double rms(const float *a, int64_t n)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++)
        e += (double)a[i] * a[i];
    return sqrt(e / (double)n);
}

/* ---- llama.cpp conformance ------------------------------------------- */

Test(quant_k, dequantize_matches_llamacpp)
{
    for (size_t t = 0; t < N_CONF; t++) {
        const qd_type_traits_t *tr = qd_type_traits(conf_types[t]);
        size_t bin_bytes = qd_row_size(conf_types[t], VEC_COLS) * VEC_ROWS;
        char name[64];
        snprintf(name, sizeof name, "%s.blk0_ffn_down.bin", tr->name);
        uint8_t *bin = read_vector(name, bin_bytes);
        if (!bin)
            cr_skip_test("reference vectors not found: QD_SHARED");
        snprintf(name, sizeof name, "%s.blk0_ffn_down.f32", tr->name);
        float *want = read_vector(name, VEC_N * sizeof(float));
        float *got = malloc(VEC_N * sizeof(float));
        tr->to_float(bin, got, VEC_N);
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < VEC_N; i++) {
            if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
                if (first < 0)
                    first = i;
                bad++;
            }
        }
        cr_expect_eq(bad, 0,
                     "%s: %lld of %d dequantized values differ (first at %lld)",
                     tr->name, (long long)bad, VEC_N, (long long)first);
        free(bin);
        free(want);
        free(got);
    }
}

Test(quant_k, quantize_matches_llamacpp)
{
    float *src = read_vector("F32.blk0_ffn_down.f32", VEC_N * sizeof(float));
    if (!src)
        cr_skip_test("reference vectors not found: QD_SHARED");
    for (size_t t = 0; t < N_CONF; t++) {
        const qd_type_traits_t *tr = qd_type_traits(conf_types[t]);
        const size_t row_bytes = qd_row_size(conf_types[t], VEC_COLS);
        const size_t bin_bytes = row_bytes * VEC_ROWS;
        char name[64];
        snprintf(name, sizeof name, "%s.blk0_ffn_down.bin", tr->name);
        uint8_t *want = read_vector(name, bin_bytes);
        uint8_t *got = malloc(bin_bytes);
        size_t n = tr->quantize(src, got, VEC_ROWS, VEC_COLS, NULL);
        cr_expect_eq(n, bin_bytes, "%s: quantize returned %zu", tr->name, n);
        const size_t nblk = bin_bytes / tr->type_size;
        size_t same = 0;
        long long first_bad = -1;
        for (size_t b = 0; b < nblk; b++) {
            if (!memcmp(got + b * tr->type_size, want + b * tr->type_size,
                        tr->type_size))
                same++;
            else if (first_bad < 0)
                first_bad = (long long)b;
        }
        cr_expect_eq(same, nblk,
                     "%s: %zu of %zu blocks match llama.cpp (first differing "
                     "block %lld, row %lld)",
                     tr->name, same, nblk, first_bad,
                     first_bad < 0 ? -1
                                   : first_bad / (VEC_COLS / tr->blck_size));

        /* from_float_ref on the whole tensor is the same computation. */
        uint8_t *again = malloc(bin_bytes);
        tr->from_float_ref(src, again, VEC_N);
        cr_expect(!memcmp(again, got, bin_bytes),
                  "%s: from_float_ref differs from quantize(imatrix NULL)",
                  tr->name);
        free(again);
        free(want);
        free(got);
    }
    free(src);
}

Test(quant_k, error_not_worse_than_llamacpp)
{
    float *src = read_vector("F32.blk0_ffn_down.f32", VEC_N * sizeof(float));
    if (!src)
        cr_skip_test("reference vectors not found: QD_SHARED");
    const int64_t off = 8 * VEC_COLS, n = VEC_N - off; /* rows 8+ */
    for (size_t t = 0; t < N_CONF; t++) {
        const qd_type_traits_t *tr = qd_type_traits(conf_types[t]);
        const size_t bin_bytes =
            qd_row_size(conf_types[t], VEC_COLS) * VEC_ROWS;
        char name[64];
        snprintf(name, sizeof name, "%s.blk0_ffn_down.f32", tr->name);
        float *theirs = read_vector(name, VEC_N * sizeof(float));
        uint8_t *q = malloc(bin_bytes);
        float *ours = malloc(VEC_N * sizeof(float));
        tr->quantize(src, q, VEC_ROWS, VEC_COLS, NULL);
        tr->to_float(q, ours, VEC_N);
        double e_ours = rmse(src + off, ours + off, n);
        double e_theirs = rmse(src + off, theirs + off, n);
        cr_log_info("%s: RMSE rows 8+ ours %.4g, llama.cpp %.4g", tr->name,
                    e_ours, e_theirs);
        cr_expect(e_ours <= e_theirs, "%s: RMSE %.6g > llama.cpp %.6g",
                  tr->name, e_ours, e_theirs);
        free(theirs);
        free(q);
        free(ours);
    }
    free(src);
}

/*
 * Whole-file check: every matrix of qv-<T>.gguf (16 tensors, rows of 256
 * and 512 values) against our quantization of the same tensor in
 * qv-F32.gguf. A minimal GGUF walk, enough for these trusted files: header,
 * key/value pairs skipped by type, tensor infos, aligned data section.
 */
typedef struct {
    char name[96];
    int64_t ne0, nrows;
    uint32_t type;
    const uint8_t *data;
} gguf_tensor;

typedef struct {
    uint8_t *buf;
    size_t size, pos;
} gguf_cursor;

static uint64_t gg_u(gguf_cursor *c, int bytes)
{
    cr_assert(c->pos + (size_t)bytes <= c->size, "GGUF truncated at %zu",
              c->pos);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)c->buf[c->pos + (size_t)i] << (8 * i);
    c->pos += (size_t)bytes;
    return v;
}

static void gg_skip_value(gguf_cursor *c, uint32_t type)
{
    static const int width[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    cr_assert(type < 13, "GGUF value type %u", type);
    if (type == 8) { /* string */
        uint64_t len = gg_u(c, 8);
        cr_assert(len <= c->size - c->pos);
        c->pos += (size_t)len;
    } else if (type == 9) { /* array */
        uint32_t et = (uint32_t)gg_u(c, 4);
        uint64_t n = gg_u(c, 8);
        for (uint64_t i = 0; i < n; i++)
            gg_skip_value(c, et);
    } else {
        c->pos += (size_t)width[type];
    }
}

/* Loads the file and its tensor table; returns the count (<= max). */
static int gguf_tensors(const char *file, gguf_cursor *c, gguf_tensor *t,
                        int max)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference/quant-vectors/%s",
             getenv("QD_SHARED"), file);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    c->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    c->buf = malloc(c->size);
    cr_assert(fread(c->buf, 1, c->size, f) == c->size);
    fclose(f);
    c->pos = 0;
    cr_assert(!memcmp(c->buf, "GGUF", 4), "%s: not GGUF", path);
    c->pos = 4;
    cr_assert_eq(gg_u(c, 4), 3, "%s: GGUF version", path);
    uint64_t n_t = gg_u(c, 8), n_kv = gg_u(c, 8);
    uint64_t align = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t klen = gg_u(c, 8);
        cr_assert(klen <= c->size - c->pos);
        int is_align =
            klen == 17 && !memcmp(c->buf + c->pos, "general.alignment", 17);
        c->pos += (size_t)klen;
        uint32_t vt = (uint32_t)gg_u(c, 4);
        if (is_align && vt == 4)
            align = gg_u(c, 4);
        else
            gg_skip_value(c, vt);
    }
    cr_assert(n_t <= (uint64_t)max, "%s: %llu tensors", path,
              (unsigned long long)n_t);
    uint64_t offs[64];
    for (uint64_t i = 0; i < n_t; i++) {
        uint64_t len = gg_u(c, 8);
        cr_assert(len < sizeof t[i].name);
        memcpy(t[i].name, c->buf + c->pos, (size_t)len);
        t[i].name[len] = 0;
        c->pos += (size_t)len;
        uint32_t nd = (uint32_t)gg_u(c, 4);
        t[i].ne0 = (int64_t)gg_u(c, 8);
        t[i].nrows = 1;
        for (uint32_t d = 1; d < nd; d++)
            t[i].nrows *= (int64_t)gg_u(c, 8);
        t[i].type = (uint32_t)gg_u(c, 4);
        offs[i] = gg_u(c, 8);
    }
    size_t data = (c->pos + align - 1) / align * align;
    for (uint64_t i = 0; i < n_t; i++)
        t[i].data = c->buf + data + offs[i];
    return (int)n_t;
}

Test(quant_k, whole_files_match_llamacpp)
{
    const char *root = getenv("QD_SHARED");
    char dir[1024];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/reference/quant-vectors", root ? root : "");
    if (!root || stat(dir, &st) != 0)
        cr_skip_test("reference vectors not found: QD_SHARED");
    gguf_cursor fc, qc;
    gguf_tensor ft[64], qt[64];
    int nf = gguf_tensors("qv-F32.gguf", &fc, ft, 64);
    for (size_t k = 0; k < N_CONF; k++) {
        const qd_type_traits_t *tr = qd_type_traits(conf_types[k]);
        char file[64];
        snprintf(file, sizeof file, "qv-%s.gguf", tr->name);
        int nq = gguf_tensors(file, &qc, qt, 64);
        int n_mat = 0;
        size_t n_blk = 0, n_same = 0;
        for (int i = 0; i < nq; i++) {
            if (qt[i].type != (uint32_t)conf_types[k])
                continue;
            const gguf_tensor *src = NULL;
            for (int j = 0; j < nf; j++)
                if (!strcmp(ft[j].name, qt[i].name))
                    src = &ft[j];
            cr_assert(src && src->type == QD_TYPE_F32, "%s: %s not in F32 file",
                      file, qt[i].name);
            const size_t bytes =
                qd_row_size(conf_types[k], src->ne0) * (size_t)src->nrows;
            uint8_t *q = malloc(bytes);
            tr->quantize((const float *)src->data, q, src->nrows, src->ne0,
                         NULL);
            for (size_t b = 0; b < bytes / tr->type_size; b++, n_blk++)
                n_same +=
                    !memcmp(q + b * tr->type_size,
                            qt[i].data + b * tr->type_size, tr->type_size);
            free(q);
            n_mat++;
        }
        cr_log_info("%s: %d matrices, %zu of %zu blocks identical", tr->name,
                    n_mat, n_same, n_blk);
        cr_expect_eq(n_mat, 16, "%s: %d matrices of that type", tr->name,
                     n_mat);
        cr_expect_eq(n_same, n_blk, "%s: %zu of %zu blocks identical", tr->name,
                     n_same, n_blk);
        free(qc.buf);
    }
    free(fc.buf);
}

/* ---- synthetic round trips ------------------------------------------- */

/* RMSE / RMS bounds for Gaussian N(0,1) data, n = 64 K values. Measured
 * (this implementation, seed below): Q2_K 0.297, Q3_K 0.151, Q4_K 0.0714,
 * Q5_K 0.0361, Q6_K 0.0177, Q8_K 0.00701, IQ4_XS 0.0768; the bounds leave
 * about 10% headroom. */
static double rel_bound(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q2_K:
        return 0.33;
    case QD_TYPE_Q3_K:
        return 0.17;
    case QD_TYPE_Q4_K:
        return 0.080;
    case QD_TYPE_Q5_K:
        return 0.040;
    case QD_TYPE_Q6_K:
        return 0.020;
    case QD_TYPE_Q8_K:
        return 0.0078;
    case QD_TYPE_IQ4_XS:
        return 0.085;
    default:
        return 0;
    }
}

Test(quant_k, round_trip_gaussian)
{
    const int64_t n = 256 * 256;
    float *x = malloc((size_t)n * sizeof(float));
    float *y = malloc((size_t)n * sizeof(float));
    rng_state = 12345;
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rng_normal();
    for (size_t t = 0; t < N_ALL; t++) {
        const qd_type_traits_t *tr = qd_type_traits(all_types[t]);
        void *q = malloc(qd_row_size(all_types[t], n));
        tr->from_float_ref(x, q, n);
        tr->to_float(q, y, n);
        double rel = rmse(x, y, n) / rms(x, n);
        cr_log_info("%s: Gaussian relative RMSE %.4g", tr->name, rel);
        cr_expect(rel <= rel_bound(all_types[t]),
                  "%s: relative RMSE %.4g > %.4g", tr->name, rel,
                  rel_bound(all_types[t]));
        cr_expect(rel > rel_bound(all_types[t]) / 4,
                  "%s: relative RMSE %.4g implausibly small", tr->name, rel);
        free(q);
    }
    free(x);
    free(y);
}

Test(quant_k, zero_and_constant_blocks)
{
    float x[512], y[512];
    for (size_t t = 0; t < N_ALL; t++) {
        const qd_type_traits_t *tr = qd_type_traits(all_types[t]);
        void *q = malloc(qd_row_size(all_types[t], 512));
        memset(x, 0, sizeof x);
        tr->from_float_ref(x, q, 512);
        tr->to_float(q, y, 512);
        for (int i = 0; i < 512; i++)
            cr_assert(y[i] == 0, "%s: zero input gave %g at %d", tr->name, y[i],
                      i);
        /* A constant block must come back within 2% (the coarsest grid,
         * Q2_K, has 4 levels per sub-block plus a min). */
        for (int i = 0; i < 512; i++)
            x[i] = i < 256 ? 0.75f : -0.3f;
        tr->from_float_ref(x, q, 512);
        tr->to_float(q, y, 512);
        for (int i = 0; i < 512; i++)
            cr_assert(fabsf(y[i] - x[i]) <= 0.02f * fabsf(x[i]),
                      "%s: constant %g came back as %g", tr->name, x[i], y[i]);
        free(q);
    }
}

Test(quant_k, q8_K_activation_format)
{
    const int64_t n = 1024;
    float x[1024], y[1024];
    qd_block_q8_K q[4];
    rng_state = 777;
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(rng_normal() * (1 + i / 256));
    x[300] = -40.f; /* block 1's extreme is negative */
    qd_type_traits(QD_TYPE_Q8_K)->from_float_ref(x, q, n);
    qd_type_traits(QD_TYPE_Q8_K)->to_float(q, y, n);
    for (int b = 0; b < 4; b++) {
        float amax = 0;
        int at = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[256 * b + j]) > amax) {
                amax = fabsf(x[256 * b + j]);
                at = j;
            }
        /* d = max / -127: the extreme value maps to -127 exactly. */
        cr_assert_eq(q[b].qs[at], -127, "block %d extreme -> %d", b,
                     q[b].qs[at]);
        cr_assert_float_eq(fabsf(q[b].d), amax / 127, amax * 1e-6);
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += q[b].qs[16 * j + l];
            cr_assert_eq(q[b].bsums[j], s, "bsums[%d] of block %d", j, b);
        }
        for (int j = 0; j < 256; j++)
            cr_assert(fabsf(y[256 * b + j] - x[256 * b + j]) <=
                          0.5001f * fabsf(q[b].d),
                      "element %d off by more than half a step", 256 * b + j);
    }
}

/* ---- vec_dot ---------------------------------------------------------- */

/*
 * vec_dot against a double-precision dot of the dequantized weight row and
 * the dequantized Q8_K activation row. The integer parts are exact; what
 * remains is float rounding of a few dozen scaled partial sums and of the
 * dequantized values themselves, so |error| <= 1e-5 * sum |w_i| |a_i|
 * (measured worst case over these rows: about 1e-7).
 */
Test(quant_k, vec_dot_matches_double)
{
    static const int sizes[] = {256, 512, 4096};
    rng_state = 4242;
    double worst = 0;
    for (size_t s = 0; s < 3; s++) {
        const int n = sizes[s];
        float *w = malloc((size_t)n * sizeof(float));
        float *a = malloc((size_t)n * sizeof(float));
        float *wd = malloc((size_t)n * sizeof(float));
        float *ad = malloc((size_t)n * sizeof(float));
        void *qa = malloc(qd_row_size(QD_TYPE_Q8_K, n));
        for (size_t t = 0; t < N_ALL; t++) {
            const qd_type_traits_t *tr = qd_type_traits(all_types[t]);
            cr_assert_eq(tr->vec_dot_type, QD_TYPE_Q8_K);
            void *qw = malloc(qd_row_size(all_types[t], n));
            for (int rep = 0; rep < 8; rep++) {
                fill_heavy(w, 1, n);
                for (int i = 0; i < n; i++)
                    a[i] = (float)(rng_normal() * (rep & 1 ? 3.0 : 0.1));
                if (rep == 2) /* all-positive weights: mins matter */
                    for (int i = 0; i < n; i++)
                        w[i] = fabsf(w[i]);
                tr->from_float_ref(w, qw, n);
                qd_type_traits(QD_TYPE_Q8_K)->from_float_ref(a, qa, n);
                tr->to_float(qw, wd, n);
                qd_type_traits(QD_TYPE_Q8_K)->to_float(qa, ad, n);
                double ref = 0, mag = 0;
                for (int i = 0; i < n; i++) {
                    ref += (double)wd[i] * ad[i];
                    mag += fabs((double)wd[i] * ad[i]);
                }
                float got = NAN;
                tr->vec_dot(n, &got, qw, qa);
                double err = fabs((double)got - ref);
                if (mag > 0 && err / mag > worst)
                    worst = err / mag;
                cr_assert(
                    err <= 1e-5 * mag + 1e-30,
                    "%s n=%d rep %d: vec_dot %.9g, double %.9g (|a||w| %g)",
                    tr->name, n, rep, (double)got, ref, mag);
            }
            free(qw);
        }
        free(w);
        free(a);
        free(wd);
        free(ad);
        free(qa);
    }
    cr_log_info("vec_dot worst relative error %.3g", worst);
}

/* ---- imatrix path ----------------------------------------------------- */

/*
 * Heavy-tailed rows and a skewed importance vector (log-normal, sigma 1.5,
 * plus a few columns 100x more important). The importance-weighted error
 * sum_j imp_j (x_j - q_j)^2 of the imatrix path must not exceed that of
 * the plain path, in total over all rows. Measured ratios
 * (imatrix / plain) are in the log message; all are well below 1.
 */
Test(quant_k, imatrix_path)
{
    const int64_t rows = 32, cols = 1024, n = rows * cols;
    float *x = malloc((size_t)n * sizeof(float));
    float *y = malloc((size_t)n * sizeof(float));
    float *imp = malloc((size_t)cols * sizeof(float));
    rng_state = 99;
    fill_heavy(x, rows, cols);
    for (int64_t c = 0; c < cols; c++)
        imp[c] = (float)exp(1.5 * rng_normal());
    for (int k = 0; k < 8; k++)
        imp[rng_next() % (uint64_t)cols] *= 100.f;

    for (size_t t = 0; t < N_CONF; t++) {
        const qd_type_traits_t *tr = qd_type_traits(conf_types[t]);
        const size_t bytes = qd_row_size(conf_types[t], cols) * (size_t)rows;
        uint8_t *qa = malloc(bytes), *qb = malloc(bytes), *qp = malloc(bytes);
        cr_assert_eq(tr->quantize(x, qa, rows, cols, imp), bytes);
        tr->quantize(x, qb, rows, cols, imp);
        cr_expect(!memcmp(qa, qb, bytes), "%s: imatrix path not deterministic",
                  tr->name);
        tr->quantize(x, qp, rows, cols, NULL);
        cr_expect(memcmp(qa, qp, bytes) != 0, "%s: imatrix made no difference",
                  tr->name);

        double e_imp = 0, e_plain = 0;
        tr->to_float(qa, y, n);
        for (int64_t i = 0; i < n; i++) {
            double d = (double)x[i] - y[i];
            e_imp += imp[i % cols] * d * d;
        }
        tr->to_float(qp, y, n);
        for (int64_t i = 0; i < n; i++) {
            double d = (double)x[i] - y[i];
            e_plain += imp[i % cols] * d * d;
        }
        cr_log_info("%s: weighted error imatrix/plain = %.3f", tr->name,
                    e_imp / e_plain);
        cr_expect(e_imp <= e_plain,
                  "%s: weighted error with imatrix %.6g > without %.6g",
                  tr->name, e_imp, e_plain);
        free(qa);
        free(qb);
        free(qp);
    }
    free(x);
    free(y);
    free(imp);
}
