/*
 * test_quant_legacy.c — the float and legacy tensor formats (F32, F16, BF16,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL) against llama.cpp's vectors
 * ($QD_SHARED/reference/quant-vectors), plus error bounds, dot products and
 * importance-weighted quantization on synthetic data.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantd/quant.h"

#define VEC_ROWS 256
#define VEC_COLS 512

/* ---- helpers ------------------------------------------------------------ */

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
    double r = sqrt(-2.0 * log(rng_uniform()));
    return r * cos(6.283185307179586 * rng_uniform());
}

/* Gaussian rows with a per-row scale and a few outliers (like the vectors'
 * heavy-tailed matrices). */
static void fill_heavy(float *x, int64_t nrows, int64_t n)
{
    for (int64_t r = 0; r < nrows; r++) {
        double s = 0.02 * exp(0.5 * rng_normal());
        for (int64_t j = 0; j < n; j++)
            x[r * n + j] = (float)(s * rng_normal());
        for (int k = 0; k < 4; k++) {
            int64_t j = (int64_t)(rng_uniform() * (double)n);
            double m = 8 + 12 * rng_uniform();
            x[r * n + j] = (float)((rng_uniform() < 0.5 ? -m : m) * s);
        }
    }
}

static void *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len, "read %s", path);
    fclose(f);
    *size = (size_t)len;
    return buf;
}

/* Loads quant-vectors/<name>; skips the test if QD_SHARED is unset. */
static void *load_vector(const char *name, size_t *size)
{
    const char *shared = getenv("QD_SHARED");
    char path[4096];
    if (!shared)
        cr_skip_test("quant vectors not found: QD_SHARED unset");
    snprintf(path, sizeof path, "%s/reference/quant-vectors/%s", shared, name);
    void *p = read_all(path, size);
    if (!p)
        cr_skip_test("quant vectors not found: %s (QD_SHARED)", path);
    return p;
}

static const qd_type_t vector_types[] = {
    QD_TYPE_Q4_0, QD_TYPE_Q4_1, QD_TYPE_Q5_0, QD_TYPE_Q5_1,
    QD_TYPE_Q8_0, QD_TYPE_IQ4_NL, QD_TYPE_F16,  QD_TYPE_BF16,
};
#define N_VECTOR_TYPES (sizeof vector_types / sizeof vector_types[0])

static const qd_type_t all_types[] = {
    QD_TYPE_F32,  QD_TYPE_F16,  QD_TYPE_BF16, QD_TYPE_Q4_0,
    QD_TYPE_Q4_1, QD_TYPE_Q5_0, QD_TYPE_Q5_1, QD_TYPE_Q8_0,
    QD_TYPE_Q8_1, QD_TYPE_IQ4_NL,
};
#define N_ALL_TYPES (sizeof all_types / sizeof all_types[0])

/* ---- llama.cpp vectors ------------------------------------------------- */

Test(quant_legacy, traits_are_filled)
{
    for (size_t i = 0; i < N_ALL_TYPES; i++) {
        const qd_type_traits_t *tr = qd_type_traits(all_types[i]);
        cr_assert(tr->to_float && tr->from_float_ref && tr->quantize &&
                      tr->vec_dot,
                  "%s", tr->name);
    }
}

Test(quant_legacy, dequantize_matches_llama_cpp)
{
    for (size_t t = 0; t < N_VECTOR_TYPES; t++) {
        const qd_type_traits_t *tr = qd_type_traits(vector_types[t]);
        char name[64];
        size_t bin_size, f32_size;
        snprintf(name, sizeof name, "%s.blk0_ffn_down.bin", tr->name);
        uint8_t *bin = load_vector(name, &bin_size);
        snprintf(name, sizeof name, "%s.blk0_ffn_down.f32", tr->name);
        float *want = load_vector(name, &f32_size);
        cr_assert_eq(bin_size,
                     VEC_ROWS * qd_row_size(vector_types[t], VEC_COLS));
        cr_assert_eq(f32_size, sizeof(float) * VEC_ROWS * VEC_COLS);

        float *got = malloc(f32_size);
        tr->to_float(bin, got, (int64_t)VEC_ROWS * VEC_COLS);
        int bad = 0, first = -1;
        for (int i = 0; i < VEC_ROWS * VEC_COLS; i++) {
            if (memcmp(&got[i], &want[i], 4) != 0) {
                if (first < 0)
                    first = i;
                bad++;
            }
        }
        cr_expect_eq(bad, 0, "%s: %d values differ, first at %d (%g vs %g)",
                     tr->name, bad, first, first < 0 ? 0.0 : got[first],
                     first < 0 ? 0.0 : want[first]);
        free(got);
        free(bin);
        free(want);
    }
}

Test(quant_legacy, quantize_matches_llama_cpp)
{
    size_t f32_size;
    float *src = load_vector("F32.blk0_ffn_down.f32", &f32_size);
    cr_assert_eq(f32_size, sizeof(float) * VEC_ROWS * VEC_COLS);
    for (size_t t = 0; t < N_VECTOR_TYPES; t++) {
        const qd_type_traits_t *tr = qd_type_traits(vector_types[t]);
        char name[64];
        size_t bin_size;
        snprintf(name, sizeof name, "%s.blk0_ffn_down.bin", tr->name);
        uint8_t *want = load_vector(name, &bin_size);
        uint8_t *got = malloc(bin_size);
        size_t n = tr->quantize(src, got, VEC_ROWS, VEC_COLS, NULL);
        cr_assert_eq(n, bin_size, "%s: returned %zu bytes", tr->name, n);

        size_t row_bytes = qd_row_size(vector_types[t], VEC_COLS);
        size_t blk = tr->type_size;
        int bad_rows = 0, bad_blocks = 0, first_row = -1;
        for (int r = 0; r < VEC_ROWS; r++) {
            const uint8_t *g = got + r * row_bytes, *w = want + r * row_bytes;
            if (memcmp(g, w, row_bytes) == 0)
                continue;
            if (first_row < 0)
                first_row = r;
            bad_rows++;
            for (size_t b = 0; b < row_bytes; b += blk)
                bad_blocks += memcmp(g + b, w + b, blk) != 0;
        }
        cr_expect_eq(bad_rows, 0,
                     "%s: %d of %d rows (%d blocks) differ, first row %d",
                     tr->name, bad_rows, VEC_ROWS, bad_blocks, first_row);
        free(got);
        free(want);
    }
    free(src);
}

/* For the types whose NULL-imatrix quantization is the _ref path, the row
 * function and the chunk function agree. */
Test(quant_legacy, from_float_ref_equals_quantize_without_imatrix)
{
    static const qd_type_t ts[] = {QD_TYPE_F16,  QD_TYPE_BF16, QD_TYPE_Q4_0,
                                   QD_TYPE_Q4_1, QD_TYPE_Q5_0, QD_TYPE_Q5_1,
                                   QD_TYPE_Q8_0, QD_TYPE_Q8_1};
    enum { R = 8, N = 256 };
    static float x[R * N];
    static uint8_t a[R * N * 4], b[R * N * 4];
    rng_state = 1;
    fill_heavy(x, R, N);
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        const qd_type_traits_t *tr = qd_type_traits(ts[t]);
        size_t bytes = R * qd_row_size(ts[t], N);
        tr->from_float_ref(x, a, R * N);
        cr_assert_eq(tr->quantize(x, b, R, N, NULL), bytes);
        cr_expect(memcmp(a, b, bytes) == 0, "%s", tr->name);
    }
}

/* ---- round-trip error on synthetic data -------------------------------- */

/*
 * Relative RMSE (RMSE / RMS of the input) of quantize + dequantize on
 * N(0,1) rows of 512 values. The bounds sit ~15% above what llama.cpp's
 * algorithms give on such data (measured: F16 2.1e-4, BF16 1.7e-3, Q4_0
 * 0.086, Q4_1 0.078, Q5_0 0.043, Q5_1 0.038, Q8_0 0.0054, IQ4_NL 0.076),
 * so a weaker search or a packing error fails them.
 */
static const struct {
    qd_type_t type;
    double max_rel_rmse;
} rt_bounds[] = {
    {QD_TYPE_F32, 0.0},     {QD_TYPE_F16, 2.5e-4},  {QD_TYPE_BF16, 2.0e-3},
    {QD_TYPE_Q4_0, 0.10},   {QD_TYPE_Q4_1, 0.09},   {QD_TYPE_Q5_0, 0.05},
    {QD_TYPE_Q5_1, 0.044},  {QD_TYPE_Q8_0, 0.0065}, {QD_TYPE_Q8_1, 0.0065},
    {QD_TYPE_IQ4_NL, 0.088},
};

Test(quant_legacy, round_trip_error_bounds)
{
    enum { R = 64, N = 512 };
    static float x[R * N], y[R * N];
    static uint8_t q[R * N * 4];
    rng_state = 7;
    for (int i = 0; i < R * N; i++)
        x[i] = (float)rng_normal();
    for (size_t t = 0; t < sizeof rt_bounds / sizeof rt_bounds[0]; t++) {
        const qd_type_traits_t *tr = qd_type_traits(rt_bounds[t].type);
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0)
                tr->quantize(x, q, R, N, NULL);
            else
                tr->from_float_ref(x, q, R * N);
            tr->to_float(q, y, R * N);
            double se = 0, ss = 0;
            for (int i = 0; i < R * N; i++) {
                double e = (double)x[i] - y[i];
                se += e * e;
                ss += (double)x[i] * x[i];
            }
            double rel = sqrt(se / ss);
            cr_expect(rel <= rt_bounds[t].max_rel_rmse,
                      "%s (%s): relative RMSE %.5f > %.5f", tr->name,
                      pass ? "from_float_ref" : "quantize", rel,
                      rt_bounds[t].max_rel_rmse);
        }
    }
}

/* Zero rows stay exactly zero in every format, with and without weights. */
Test(quant_legacy, zero_rows_stay_zero)
{
    enum { N = 256 };
    static float x[N], y[N], w[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++)
        w[i] = 1.0f + (float)i;
    for (size_t t = 0; t < N_ALL_TYPES; t++) {
        const qd_type_traits_t *tr = qd_type_traits(all_types[t]);
        for (int pass = 0; pass < 3; pass++) {
            memset(y, 0x55, sizeof y);
            if (pass == 0)
                tr->from_float_ref(x, q, N);
            else
                tr->quantize(x, q, 1, N, pass == 2 ? w : NULL);
            tr->to_float(q, y, N);
            for (int i = 0; i < N; i++)
                cr_assert(y[i] == 0.0f, "%s pass %d: y[%d] = %g", tr->name,
                          pass, i, y[i]);
        }
    }
}

/* ---- Q8_0 / Q8_1 activations ------------------------------------------- */

/*
 * q = roundf(x * (1/d)) with d = amax/127 in float, stored with d rounded to
 * fp16 (dh): |x - q*dh| <= 0.5*d + 127*|d - dh| plus float rounding
 * (2^-22 relative), about 0.56*d while dh is a normal half and more once it
 * is subnormal (amax < ~0.008; covered by the small-scale blocks here). The
 * element of largest magnitude maps to ±127, and Q8_1's s is
 * fp16(d * sum(q)) exactly.
 */
Test(quant_legacy, q8_activation_error_bound)
{
    enum { N = 4096 };
    static float x[N], y[N];
    static qd_block_q8_0 b0[N / 32];
    static qd_block_q8_1 b1[N / 32];
    rng_state = 11;
    for (int i = 0; i < N; i++) {
        double scale = pow(10.0, -3 + 5 * rng_uniform() * ((i / 32) % 2));
        x[i] = (float)(rng_normal() * scale);
    }
    qd_type_traits(QD_TYPE_Q8_0)->from_float_ref(x, b0, N);
    qd_type_traits(QD_TYPE_Q8_1)->from_float_ref(x, b1, N);
    for (int pass = 0; pass < 2; pass++) {
        qd_type_traits(pass ? QD_TYPE_Q8_1 : QD_TYPE_Q8_0)
            ->to_float(pass ? (void *)b1 : (void *)b0, y, N);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            int imax = 0;
            for (int j = 0; j < 32; j++) {
                if (fabsf(x[b * 32 + j]) > amax) {
                    amax = fabsf(x[b * 32 + j]);
                    imax = j;
                }
            }
            const float d = amax / 127;
            const int8_t *qs = pass ? b1[b].qs : b0[b].qs;
            const double dh = qd_fp16_to_fp32(b0[b].d);
            const double bound = 0.5 * d + 127 * fabs(d - dh) + amax * 0x1p-22;
            cr_assert_eq(abs(qs[imax]), 127, "block %d", b);
            for (int j = 0; j < 32; j++) {
                double e = fabs((double)x[b * 32 + j] - y[b * 32 + j]);
                cr_assert(e <= bound, "Q8_%d block %d [%d]: err %g > %g",
                          pass, b, j, e, bound);
            }
            if (pass) {
                int sum = 0;
                for (int j = 0; j < 32; j++)
                    sum += qs[j];
                cr_assert_eq(b1[b].s, qd_fp32_to_fp16((float)sum * d),
                             "block %d s", b);
                cr_assert_eq(b1[b].d, b0[b].d);
                cr_assert(memcmp(b1[b].qs, b0[b].qs, 32) == 0);
            }
        }
    }
}

/* ggml rounds activations with roundf: halves go away from zero. */
Test(quant_legacy, q8_rounds_halves_away_from_zero)
{
    float x[32] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 3.5f};
    qd_block_q8_0 b;
    qd_type_traits(QD_TYPE_Q8_0)->from_float_ref(x, &b, 32);
    cr_expect_eq(qd_fp16_to_fp32(b.d), 1.0f);
    cr_expect_eq(b.qs[0], 127);
    cr_expect_eq(b.qs[1], 3);
    cr_expect_eq(b.qs[2], -3);
    cr_expect_eq(b.qs[3], 1);
    cr_expect_eq(b.qs[4], -1);
    cr_expect_eq(b.qs[5], 4);
    cr_expect_eq(b.qs[6], 0);
}

/* ---- dot products ------------------------------------------------------- */

/* Offset (-min) of the block holding element i for the types with a min. */
static float block_min(qd_type_t t, const void *w, int i)
{
    if (t == QD_TYPE_Q4_1)
        return qd_fp16_to_fp32(((const qd_block_q4_1 *)w)[i / 32].m);
    if (t == QD_TYPE_Q5_1)
        return qd_fp16_to_fp32(((const qd_block_q5_1 *)w)[i / 32].m);
    return 0.0f;
}

/*
 * vec_dot(w, a) against sum(deq(w)[i] * deq(a)[i]) in double. Integer sums
 * are exact; what remains is float rounding of the per-block scaling and of
 * the running sum (at most nb+8 roundings of terms bounded by S =
 * sum |a_i| (|w_i| + |m_b|)), and, for Q4_1/Q5_1, ggml's use of the stored
 * Q8_1 s = fp16(d*sum(q)) in place of fp16(d)*sum(q), which the test
 * accounts for exactly per block.
 */
Test(quant_legacy, vec_dot_matches_float_dot)
{
    static const int lens[] = {32, 64, 512, 4096};
    static float w[4096], a[4096], wd[4096], ad[4096];
    static uint8_t wq[4096 * 4], aq[4096 * 4];
    rng_state = 3;
    for (size_t t = 0; t < N_ALL_TYPES; t++) {
        const qd_type_t wt = all_types[t];
        const qd_type_traits_t *tr = qd_type_traits(wt);
        const qd_type_traits_t *at = qd_type_traits(tr->vec_dot_type);
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            const int n = lens[l];
            for (int rep = 0; rep < 4; rep++) {
                for (int i = 0; i < n; i++) {
                    w[i] = (float)(rng_normal() * 0.05 + (rep == 3 ? 0.03 : 0));
                    a[i] = (float)(rng_normal() * (rep == 1 ? 100.0 : 1.0));
                }
                tr->quantize(w, wq, 1, n, NULL);
                at->from_float_ref(a, aq, n);
                tr->to_float(wq, wd, n);
                at->to_float(aq, ad, n);

                double ref = 0, S = 0, corr = 0;
                for (int i = 0; i < n; i++) {
                    ref += (double)wd[i] * ad[i];
                    S += fabs((double)ad[i]) *
                         (fabs((double)wd[i]) + fabs(block_min(wt, wq, i)));
                }
                if (tr->vec_dot_type == QD_TYPE_Q8_1 && wt != QD_TYPE_Q8_1) {
                    const qd_block_q8_1 *yb = (const qd_block_q8_1 *)aq;
                    for (int b = 0; b < n / 32; b++) {
                        int sum = 0;
                        for (int j = 0; j < 32; j++)
                            sum += yb[b].qs[j];
                        double exact = (double)qd_fp16_to_fp32(yb[b].d) * sum;
                        corr += fabs(block_min(wt, wq, b * 32)) *
                                fabs(qd_fp16_to_fp32(yb[b].s) - exact);
                    }
                }
                float got;
                tr->vec_dot(n, &got, wq, aq);
                double tol = (n / 32 + 8) * 0x1p-23 * S + corr + 1e-30;
                cr_expect(fabs(got - ref) <= tol,
                          "%s n=%d rep %d: vec_dot %.9g, float dot %.9g, "
                          "tol %.3g",
                          tr->name, n, rep, got, ref, tol);
            }
        }
    }
}

/* ---- importance-weighted quantization ------------------------------- */

/* sum over rows and columns of imatrix[j] * (x - deq(q(x)))^2 */
static double weighted_error(const qd_type_traits_t *tr, const float *x,
                             int rows, int n, const float *imatrix,
                             const float *weights, void *q, float *y)
{
    tr->quantize(x, q, rows, n, imatrix);
    tr->to_float(q, y, (int64_t)rows * n);
    double e = 0;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            double d = (double)x[r * n + j] - y[r * n + j];
            e += weights[j] * d * d;
        }
    return e;
}

Test(quant_legacy, imatrix_is_deterministic_and_helps)
{
    enum { R = 64, N = 512 };
    static float x[R * N], y[R * N], imat[N];
    static uint8_t q1[R * N * 4], q2[R * N * 4];
    static const qd_type_t ts[] = {QD_TYPE_Q4_0, QD_TYPE_Q4_1, QD_TYPE_Q5_0,
                                   QD_TYPE_Q5_1, QD_TYPE_IQ4_NL,
                                   QD_TYPE_Q8_0};
    rng_state = 5;
    fill_heavy(x, R, N);
    /* edge rows: zero, constant, all positive, tiny */
    for (int j = 0; j < N; j++) {
        x[0 * N + j] = 0.0f;
        x[1 * N + j] = 0.0123f;
        x[2 * N + j] = fabsf(x[2 * N + j]);
        x[3 * N + j] *= 1e-5f;
    }
    for (int j = 0; j < N; j++) /* heavy-tailed activation statistics */
        imat[j] = (float)exp(1.5 * rng_normal());

    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        const qd_type_traits_t *tr = qd_type_traits(ts[t]);
        size_t bytes = tr->quantize(x, q1, R, N, imat);
        cr_assert_eq(bytes, R * qd_row_size(ts[t], N));
        tr->quantize(x, q2, R, N, imat);
        cr_expect(memcmp(q1, q2, bytes) == 0, "%s: not deterministic",
                  tr->name);

        double e_imat = weighted_error(tr, x, R, N, imat, imat, q1, y);
        double e_null = weighted_error(tr, x, R, N, NULL, imat, q2, y);
        if (ts[t] == QD_TYPE_Q8_0) { /* ggml ignores the weights for Q8_0 */
            cr_expect(memcmp(q1, q2, bytes) == 0);
            continue;
        }
        cr_log_info("%s: weighted error with imatrix / without = %.3f",
                    tr->name, e_imat / e_null);
        cr_expect(e_imat <= e_null,
                  "%s: weighted error with imatrix %.6g > without %.6g",
                  tr->name, e_imat, e_null);
    }
}

/* ---- every matrix of the qv-<T>.gguf models ---------------------------- */

/*
 * A minimal GGUF v3 walk, enough for these well-formed reference files:
 * header, key/values skipped (general.alignment read), then tensor infos.
 * The real, validating reader is loader/gguf.c; this one only serves to
 * compare all 16 matrices of qv-F32.gguf against each qv-<T>.gguf.
 */
typedef struct {
    char name[96];
    int n_dims;
    int64_t ne[4];
    uint32_t type;
    const uint8_t *data;
} gguf_tensor;

typedef struct {
    const uint8_t *p, *end;
} cursor;

static uint64_t rd_u64(cursor *c)
{
    uint64_t v;
    cr_assert(c->p + 8 <= c->end);
    memcpy(&v, c->p, 8);
    c->p += 8;
    return v;
}

static uint32_t rd_u32(cursor *c)
{
    uint32_t v;
    cr_assert(c->p + 4 <= c->end);
    memcpy(&v, c->p, 4);
    c->p += 4;
    return v;
}

static void skip_value(cursor *c, uint32_t type)
{
    static const int sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    cr_assert(type <= 12, "gguf value type %u", type);
    if (type == 8) {
        c->p += rd_u64(c);
    } else if (type == 9) {
        uint32_t et = rd_u32(c);
        uint64_t n = rd_u64(c);
        for (uint64_t i = 0; i < n; i++)
            skip_value(c, et);
    } else {
        c->p += sizes[type];
    }
    cr_assert(c->p <= c->end);
}

/* Parses buf; returns the number of tensors stored in out (at most max). */
static int gguf_tensors(const uint8_t *buf, size_t size, gguf_tensor *out,
                        int max)
{
    cursor c = {buf, buf + size};
    cr_assert(size > 24 && memcmp(buf, "GGUF", 4) == 0);
    c.p += 4;
    cr_assert_eq(rd_u32(&c), 3);
    uint64_t n_tensors = rd_u64(&c), n_kv = rd_u64(&c);
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t klen = rd_u64(&c);
        const char *key = (const char *)c.p;
        c.p += klen;
        uint32_t type = rd_u32(&c);
        if (klen == 17 && !memcmp(key, "general.alignment", 17) && type == 4) {
            alignment = rd_u32(&c);
            continue;
        }
        skip_value(&c, type);
    }
    cr_assert(n_tensors <= (uint64_t)max);
    uint64_t offsets[64];
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &out[i];
        uint64_t len = rd_u64(&c);
        cr_assert(len < sizeof t->name);
        memcpy(t->name, c.p, len);
        t->name[len] = 0;
        c.p += len;
        t->n_dims = (int)rd_u32(&c);
        cr_assert(t->n_dims >= 1 && t->n_dims <= 4);
        for (int d = 0; d < 4; d++)
            t->ne[d] = d < t->n_dims ? (int64_t)rd_u64(&c) : 1;
        t->type = rd_u32(&c);
        offsets[i] = rd_u64(&c);
    }
    size_t data = (size_t)(c.p - buf);
    data = (data + alignment - 1) / alignment * alignment;
    for (uint64_t i = 0; i < n_tensors; i++)
        out[i].data = buf + data + offsets[i];
    return (int)n_tensors;
}

Test(quant_legacy, quantize_matches_every_matrix_of_qv_models)
{
    static gguf_tensor src_t[64], dst_t[64];
    size_t src_size;
    uint8_t *src = load_vector("qv-F32.gguf", &src_size);
    int n_src = gguf_tensors(src, src_size, src_t, 64);
    for (size_t t = 0; t < N_VECTOR_TYPES; t++) {
        const qd_type_traits_t *tr = qd_type_traits(vector_types[t]);
        char name[64];
        size_t dst_size;
        snprintf(name, sizeof name, "qv-%s.gguf", tr->name);
        uint8_t *dst = load_vector(name, &dst_size);
        int n_dst = gguf_tensors(dst, dst_size, dst_t, 64);
        cr_assert_eq(n_dst, n_src);
        int n_matrices = 0, n_bad = 0;
        for (int i = 0; i < n_src; i++) {
            const gguf_tensor *s = &src_t[i], *d = NULL;
            for (int k = 0; k < n_dst; k++) /* llama-quantize reorders */
                if (!strcmp(dst_t[k].name, s->name))
                    d = &dst_t[k];
            cr_assert_not_null(d, "%s: no %s", name, s->name);
            if (s->n_dims != 2)
                continue;
            cr_assert_eq(d->type, (uint32_t)vector_types[t], "%s", d->name);
            const int64_t rows = s->ne[1], cols = s->ne[0];
            const size_t bytes =
                (size_t)rows * qd_row_size(vector_types[t], cols);
            cr_assert(d->data + bytes <= dst + dst_size, "%s", d->name);
            uint8_t *got = malloc(bytes);
            tr->quantize((const float *)s->data, got, rows, cols, NULL);
            if (memcmp(got, d->data, bytes) != 0) {
                n_bad++;
                cr_log_error("%s %s: differs from llama-quantize", tr->name,
                             d->name);
            }
            free(got);
            n_matrices++;
        }
        cr_expect_eq(n_matrices, 16, "%s: %d matrices", tr->name, n_matrices);
        cr_expect_eq(n_bad, 0, "%s: %d of %d matrices differ", tr->name, n_bad,
                     n_matrices);
        free(dst);
    }
    free(src);
}
