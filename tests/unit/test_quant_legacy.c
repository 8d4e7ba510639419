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
    return sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform());
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
        cr_assert_eq(bin_size, VEC_ROWS * qd_row_size(vector_types[t], VEC_COLS));
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
