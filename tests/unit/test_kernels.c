/*
 * test_kernels.c — SIMD kernel sets against the scalar reference set.
 *
 * For every kernel set this CPU runs (avx2, avx512, amx) and every weight type:
 *  - activation quantization (Q8_0, Q8_1, Q8_K, F16) bit-identical with the
 *    reference from_float_ref, ties and zero blocks included;
 *  - vec_dot and the whole qd_matmul path (direct and tiled) on random
 *    data with odd shapes, within a tolerance of TOL times the sum of the
 *    absolute products (the integer parts are exact; only the float scale
 *    arithmetic is ordered differently; TOL_BF16 for the AMX BF16 path);
 *  - qd_matmul output bit-identical for 1, 2 and 3 threads.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "quant/kernels.h"
#include "quantd/common.h"
#include "quantd/compute.h"

#define TOL 2e-5
/* The BF16 path (sets with gemm_bf16, from bf16_min_tok tokens) rounds
 * weights and activations to 8 significant bits (each off by up to 2^-8,
 * so a product by up to 2^-7 of its size), while the reference quantizes
 * the activations to 8-bit integers (each off by up to amax/254): the two
 * differ by up to about 1e-2 of the absolute products. 5e-3 held until a
 * 64-token case drew a 32-value row off by 5.2e-3 (session 11). */
#define TOL_BF16 1e-2

static const qd_type_t all_types[] = {
    QD_TYPE_F32,  QD_TYPE_F16,  QD_TYPE_BF16, QD_TYPE_Q4_0,   QD_TYPE_Q4_1,
    QD_TYPE_Q5_0, QD_TYPE_Q5_1, QD_TYPE_Q8_0, QD_TYPE_Q2_K,   QD_TYPE_Q3_K,
    QD_TYPE_Q4_K, QD_TYPE_Q5_K, QD_TYPE_Q6_K, QD_TYPE_IQ4_NL, QD_TYPE_IQ4_XS,
    QD_TYPE_Q4_G128,
};

static uint64_t rng_state;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * frand();
}

/* Types whose reference functions are present in this build. */
static int have_type(qd_type_t t)
{
    const qd_type_traits_t *tr = qd_type_traits(t);
    const qd_type_traits_t *at = qd_type_traits(tr->vec_dot_type);
    return tr->vec_dot && tr->to_float && (tr->quantize || tr->from_float_ref) &&
           (tr->vec_dot_type == QD_TYPE_F32 || at->from_float_ref);
}

static int n_sets;
static const qd_kernels_t *sets[3];

static void find_sets(void)
{
    n_sets = 0;
#if defined(QD_ARCH_X86) || defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2"))
        sets[n_sets++] = qd__kernels_avx2();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni")) {
        sets[n_sets++] = qd__kernels_avx512();
        if (qd__kernels_amx())
            sets[n_sets++] = qd__kernels_amx();
    }
#endif
}

/* find_sets, skipping the calling test where this CPU has no SIMD set */
static void need_sets(void)
{
    find_sets();
    if (!n_sets)
        cr_skip_test("no SIMD kernel set on this CPU");
}

static void quantize_rows(qd_type_t t, const float *x, void *dst,
                          int64_t nrows, int64_t ncols)
{
    const qd_type_traits_t *tr = qd_type_traits(t);
    if (tr->quantize)
        tr->quantize(x, dst, nrows, ncols, NULL);
    else
        tr->from_float_ref(x, dst, nrows * ncols);
}

Test(kernels, dispatch_names_a_set)
{
    const char *n = qd_kernels_name();
    cr_assert(!strcmp(n, "scalar") || !strcmp(n, "avx2") || !strcmp(n, "avx512") ||
              !strcmp(n, "amx"));
}

Test(kernels, activation_quantization_bit_identical)
{
    need_sets();
    const qd_type_t acts[] = {QD_TYPE_Q8_0, QD_TYPE_Q8_1, QD_TYPE_Q8_K, QD_TYPE_F16};
    const int64_t n = 4 * QD_QK_K;
    float *x = qd_malloc(n * sizeof(float));
    uint8_t *a = qd_malloc(n * 4), *b = qd_malloc(n * 4);
    for (int trial = 0; trial < 24; trial++) {
        rng_state = 1000 + (uint64_t)trial;
        fill(x, n, trial % 3 == 0 ? 1.0f : 37.5f);
        if (trial % 4 == 1) {
            /* exact ties: amax 127 gives d = 1, so k + 0.5 is a tie */
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)((int)(frand() * 120.0f)) + 0.5f;
            for (int64_t i = 0; i < n; i += 32)
                x[i + 7] = (i / 32) % 2 ? 127.0f : -127.0f;
        }
        if (trial % 4 == 2) {
            memset(x, 0, QD_QK_K * sizeof(float)); /* zero blocks */
            x[300] = -2.0f; /* magnitude ties of both signs */
            x[301] = 2.0f;
        }
        for (size_t k = 0; k < QD_ARRAY_SIZE(acts); k++) {
            qd_type_t t = acts[k];
            if (!qd_type_traits(t)->from_float_ref)
                continue;
            size_t rb = qd_row_size(t, n);
            for (int s = 0; s < n_sets; s++) {
                memset(a, 0x55, rb);
                memset(b, 0x55, rb);
                qd_kernels_scalar()->from_float(t, x, a, n);
                sets[s]->from_float(t, x, b, n);
                cr_assert(memcmp(a, b, rb) == 0, "%s %s trial %d",
                          sets[s]->name, qd_type_name(t), trial);
            }
        }
    }
    qd_free(x);
    qd_free(a);
    qd_free(b);
}

/* Sum of |w_k * x_k| of a weight row (dequantized) with float x. */
static double abs_products(qd_type_t t, const void *row, const float *x,
                           int64_t n, float *tmp)
{
    qd_type_traits(t)->to_float(row, tmp, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += fabs((double)tmp[i] * x[i]);
    return s;
}

/* An n_rows x n_cols matrix of type t quantized from fill(scale) values
 * (drawn from the test RNG); its data is freed with qd_free. The float
 * values go to *keep (the caller frees them) or are freed. */
static qd_qmat_t make_qmat(qd_type_t t, int64_t n_rows, int64_t n_cols, float scale,
                           float **keep)
{
    float *wf = qd_malloc((size_t)(n_rows * n_cols) * sizeof(float));
    fill(wf, n_rows * n_cols, scale);
    size_t rb = qd_row_size(t, n_cols);
    void *wq = qd_malloc(rb * (size_t)n_rows);
    quantize_rows(t, wf, wq, n_rows, n_cols);
    if (keep)
        *keep = wf;
    else
        qd_free(wf);
    return (qd_qmat_t){.type = t, .n_rows = n_rows, .n_cols = n_cols, .row_bytes = rb,
                       .data = wq};
}

/* k against the scalar set on an n_rows x n_cols matrix of type t and
 * n_tok activation rows. guard: the matrix ends where an inaccessible
 * page begins, so that a kernel reading past its last row crashes. */
static void check_matmul_in(const qd_kernels_t *k, qd_type_t t, int64_t n_rows,
                            int64_t n_cols, int n_tok, qd_pool_t *pool, int guard)
{
    rng_state = (uint64_t)(t * 7919 + n_rows * 31 + n_cols * 17 + n_tok);
    float *wf;
    qd_qmat_t w = make_qmat(t, n_rows, n_cols, 0.5f, &wf);
    size_t rb = w.row_bytes;
    uint8_t *map = NULL;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), span = 0;
    if (guard) {
        size_t tot = rb * (size_t)n_rows;
        span = QD_ALIGN_UP(tot, pg);
        map = mmap(NULL, span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        cr_assert(map != MAP_FAILED);
        cr_assert_eq(mprotect(map + span, pg, PROT_NONE), 0);
        memcpy(map + span - tot, w.data, tot);
        qd_free((void *)w.data);
        w.data = map + span - tot;
    }
    const void *wq = w.data;
    float *x = qd_malloc((size_t)(n_tok * n_cols) * sizeof(float));
    fill(x, n_tok * n_cols, 2.0f);
    size_t sb = qd_matmul_scratch_bytes(&w, n_tok);
    void *scratch = qd_malloc_aligned(sb, 64);
    int64_t ldo = n_rows + 3;
    float *ref = qd_calloc((size_t)(n_tok * ldo), sizeof(float));
    float *got = qd_calloc((size_t)(n_tok * ldo), sizeof(float));
    for (int64_t i = 0; i < n_tok * ldo; i++)
        got[i] = ref[i] = 12345.0f; /* padding must stay untouched */
    qd__matmul_with(qd_kernels_scalar(), pool, ref, ldo, &w, x, n_cols, n_tok, scratch);
    qd__matmul_with(k, pool, got, ldo, &w, x, n_cols, n_tok, scratch);
    for (int tk = 0; tk < n_tok; tk++) {
        for (int64_t r = 0; r < ldo; r++) {
            float e = ref[tk * ldo + r], g = got[tk * ldo + r];
            if (r >= n_rows) {
                cr_assert_eq(g, 12345.0f, "%s %s wrote padding", k->name,
                             qd_type_name(t));
                continue;
            }
            int bf = k->gemm_bf16 && n_tok >= k->bf16_min_tok && qd__tile_sub(t) &&
                     n_cols % 32 == 0;
            double bound = (bf ? TOL_BF16 : TOL) *
                               abs_products(t, (uint8_t *)wq + r * rb,
                                            x + tk * n_cols, n_cols, wf) + 1e-6;
            cr_assert(fabs((double)e - g) <= bound,
                      "%s %s rows %ld cols %ld tok %d/%d row %ld: ref %.9g got "
                      "%.9g (bound %.3g)",
                      k->name, qd_type_name(t), (long)n_rows, (long)n_cols, tk,
                      n_tok, (long)r, e, g, bound);
        }
    }
    qd_free(wf);
    qd_free(x);
    if (map)
        munmap(map, span + pg);
    else
        qd_free((void *)wq);
    qd_free_aligned(scratch);
    qd_free(ref);
    qd_free(got);
}

static void check_matmul(const qd_kernels_t *k, qd_type_t t, int64_t n_rows,
                         int64_t n_cols, int n_tok, qd_pool_t *pool)
{
    check_matmul_in(k, t, n_rows, n_cols, n_tok, pool, 0);
}

Test(kernels, vec_dot_matches_reference)
{
    need_sets();
    for (size_t i = 0; i < QD_ARRAY_SIZE(all_types); i++) {
        qd_type_t t = all_types[i];
        if (!have_type(t))
            continue;
        const qd_type_traits_t *tr = qd_type_traits(t);
        int64_t n = 3 * QD_QK_K;
        rng_state = 77 + i;
        float *wf = qd_malloc(n * sizeof(float)), *x = qd_malloc(n * sizeof(float));
        fill(wf, n, 1.0f);
        fill(x, n, 3.0f);
        void *wq = qd_malloc(qd_row_size(t, n));
        void *aq = qd_malloc(qd_row_size(tr->vec_dot_type, n) + 64);
        quantize_rows(t, wf, wq, 1, n);
        qd_kernels_scalar()->from_float(tr->vec_dot_type, x, aq, n);
        float ref;
        tr->vec_dot((int)n, &ref, wq, aq);
        for (int s = 0; s < n_sets; s++) {
            float got;
            sets[s]->vec_dot(t, (int)n, &got, wq, aq);
            double bound = TOL * abs_products(t, wq, x, n, wf) + 1e-6;
            cr_assert(fabs((double)ref - got) <= bound, "%s %s: ref %.9g got %.9g",
                      sets[s]->name, qd_type_name(t), ref, got);
        }
        qd_free(wf);
        qd_free(x);
        qd_free(wq);
        qd_free(aq);
    }
}

Test(kernels, matmul_matches_reference)
{
    need_sets();
    qd_pool_t *pool;
    cr_assert_eq(qd_pool_create(2, &pool), 0);
    const int toks[] = {1, 2, 3, 7, 8, 12, 16, 17, 33, 50, 64};
    const int64_t rows[] = {1, 17, 35};
    for (size_t i = 0; i < QD_ARRAY_SIZE(all_types); i++) {
        qd_type_t t = all_types[i];
        if (!have_type(t))
            continue;
        int bs = qd_type_traits(t)->blck_size;
        int64_t unit = bs > 1 ? bs : 32;
        /* one block, several blocks, past one QD_TILE_K chunk, and runs
         * of 256 (the batched decode kernels' unit: odd and even counts,
         * Q4_K takes them in pairs; Q4_0 and Q8_0 take groups of 16
         * blocks, whose every last size group_tails_end_at_a_guard_page
         * runs; at 8 tokens Q6_K's short rows one at a time, alternating
         * between the halves of a call's rows: 17, or 32 and 3 of 35,
         * an odd one last; 64 tokens: the AVX2 set's Q4_K tiles, from
         * 56) */
        int64_t cols[5] = {unit, 3 * unit, QD_TILE_K + unit, QD_ALIGN_UP(768, unit),
                           QD_ALIGN_UP(1024, unit)};
        for (int s = 0; s < n_sets; s++)
            for (int c = 0; c < 5; c++)
                for (size_t r = 0; r < QD_ARRAY_SIZE(rows); r++)
                    for (size_t k = 0; k < QD_ARRAY_SIZE(toks); k++)
                        check_matmul(sets[s], t, rows[r], cols[c], toks[k], pool);
    }
    qd_pool_destroy(pool);
}

/* The AVX-512 set's batched Q4_K kernel takes rows whose activations
 * outgrow half of L1 in column passes past 4 tokens (kt_pass_runs), each
 * pass's partial sums added to the last: rows of 21 runs (passes of 8, 8
 * and 5 at 8 tokens, the last an odd run against zeros; 12 and 9 at 5-7
 * tokens), with pairs of rows and a lone row, for 2 to 16 tokens, and 33
 * rows (calls of 32 and 1) in blocks of 16, 16 and 1 (KT_PASS_ROWS); the
 * other batched types (one pass) on the same long rows (Q6_K at 8 tokens
 * in pairs there), Q4_0 and Q8_0 of 83 blocks (a last group of 3). */
Test(kernels, batched_decode_column_passes)
{
    need_sets();
    qd_pool_t *pool;
    cr_assert_eq(qd_pool_create(2, &pool), 0);
    const qd_type_t types[] = {QD_TYPE_Q4_K, QD_TYPE_Q6_K, QD_TYPE_Q4_0, QD_TYPE_Q8_0};
    const int toks[] = {2, 4, 5, 8, 16};
    const int64_t rows[] = {5, 33};
    for (size_t i = 0; i < QD_ARRAY_SIZE(types); i++) {
        qd_type_t t = types[i];
        if (!have_type(t))
            continue;
        const int64_t cols = qd_type_traits(t)->blck_size == QD_QK_K ? 21 * QD_QK_K : 83 * 32;
        for (int s = 0; s < n_sets; s++)
            for (size_t r = 0; r < QD_ARRAY_SIZE(rows); r++)
                for (size_t k = 0; k < QD_ARRAY_SIZE(toks); k++)
                    check_matmul(sets[s], t, rows[r], cols, toks[k], pool);
    }
    qd_pool_destroy(pool);
}

/* The decode path (one activation row) of the AVX-512 set takes block
 * pairs in groups of 16 blocks, with a lone last block, and falls back to
 * the row-by-row dots past 16384 columns: cover each case. */
Test(kernels, decode_matvec_shapes)
{
    need_sets();
    qd_pool_t *pool;
    cr_assert_eq(qd_pool_create(2, &pool), 0);
    const qd_type_t types[] = {QD_TYPE_Q4_0, QD_TYPE_Q4_1, QD_TYPE_Q8_0,
                               QD_TYPE_Q4_K, QD_TYPE_Q5_K, QD_TYPE_Q6_K};
    /* in 32-value blocks: for the Q4_1 dots a pair, 20 (a group of 16 and
     * 2 pairs), 31 (a group, 7 pairs and a lone block), 64, and 520 (over
     * their 16384-value limit, the row-by-row dots); for Q4_0's and
     * Q8_0's groups of 16 blocks a last group of 2, 4, 15, none and 8 */
    const int64_t blocks[] = {2, 20, 31, 64, 520};
    const int64_t rows[] = {5, 33};
    for (size_t i = 0; i < QD_ARRAY_SIZE(types); i++) {
        qd_type_t t = types[i];
        if (!have_type(t))
            continue;
        int64_t bs = qd_type_traits(t)->blck_size;
        for (int s = 0; s < n_sets; s++)
            for (size_t c = 0; c < QD_ARRAY_SIZE(blocks); c++) {
                int64_t cols = blocks[c] * 32;
                if (cols % bs)
                    cols = (cols + bs - 1) / bs * bs;
                for (size_t r = 0; r < QD_ARRAY_SIZE(rows); r++)
                    check_matmul(sets[s], t, rows[r], cols, 1, pool);
            }
    }
    qd_pool_destroy(pool);
}

/* The AVX-512 set takes Q4_0 and Q8_0 in groups of 16 blocks, a row's
 * last group with 1-15: every size of that last group, for one token and
 * several, on a matrix that ends at an inaccessible page (no load, the
 * scales' gather included, may read past the last row). */
Test(kernels, group_tails_end_at_a_guard_page)
{
    need_sets();
    qd_pool_t *pool;
    cr_assert_eq(qd_pool_create(2, &pool), 0);
    const qd_type_t types[] = {QD_TYPE_Q4_0, QD_TYPE_Q8_0};
    const int toks[] = {1, 2, 4, 16};
    for (size_t i = 0; i < QD_ARRAY_SIZE(types); i++)
        for (int s = 0; s < n_sets; s++)
            for (int nb = 1; nb <= 33; nb++) {
                if (nb > 17 && nb != 31 && nb != 33)
                    continue;
                for (size_t k = 0; k < QD_ARRAY_SIZE(toks); k++)
                    check_matmul_in(sets[s], types[i], 3, 32 * nb, toks[k], pool, 1);
            }
    qd_pool_destroy(pool);
}

/* The tiled paths at the largest products the formats allow: weights
 * and activations of one magnitude, every sign combination, so that each
 * block's values are at their extremes (the AVX2 set's int16 sums of
 * vpmaddubsw saturate past 32767 if more groups are added than the
 * type's largest value allows). 64 tokens, 16 rows: the tiles. */
Test(kernels, tiles_at_extreme_values)
{
    need_sets();
    qd_pool_t *pool;
    cr_assert_eq(qd_pool_create(1, &pool), 0);
    const int64_t R = 16, C = 512;
    const int NT = 64; /* the tiles on every set (AVX2: Q4_K from 56) */
    float *wf = qd_malloc((size_t)(R * C) * sizeof(float));
    float *x = qd_malloc((size_t)(NT * C) * sizeof(float));
    float *tmp = qd_malloc((size_t)C * sizeof(float));
    float ref[16 * 64], got[16 * 64];
    for (size_t i = 0; i < QD_ARRAY_SIZE(all_types); i++) {
        qd_type_t t = all_types[i];
        if (!have_type(t) || !qd__tile_sub(t))
            continue;
        size_t rb = qd_row_size(t, C);
        void *wq = qd_malloc(rb * (size_t)R);
        qd_qmat_t w = {.type = t, .n_rows = R, .n_cols = C, .row_bytes = rb, .data = wq};
        void *scratch = qd_malloc_aligned(qd_matmul_scratch_bytes(&w, NT), 64);
        for (int sg = 0; sg < 4; sg++) {
            float ws = sg & 1 ? -1.0f : 1.0f, xs = sg & 2 ? -1.0f : 1.0f;
            /* rows: one value everywhere, or one value and a tiny one
             * alternating (extremes at both ends of a block's range) */
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++)
                    wf[r * C + c] = (r & 1) && (c & 1) ? ws * 1e-3f : ws;
            for (int64_t k = 0; k < NT * C; k++)
                x[k] = xs;
            quantize_rows(t, wf, wq, R, C);
            qd__matmul_with(qd_kernels_scalar(), pool, ref, R, &w, x, C, NT, scratch);
            for (int s = 0; s < n_sets; s++) {
                qd__matmul_with(sets[s], pool, got, R, &w, x, C, NT, scratch);
                int bf = sets[s]->gemm_bf16 && NT >= sets[s]->bf16_min_tok && C % 32 == 0;
                for (int k = 0; k < NT; k++)
                    for (int64_t r = 0; r < R; r++) {
                        double bound = (bf ? TOL_BF16 : TOL) *
                                           abs_products(t, (uint8_t *)wq + r * rb, x + k * C,
                                                        C, tmp) +
                                       1e-6;
                        cr_assert(fabs((double)ref[k * R + r] - got[k * R + r]) <= bound,
                                  "%s %s signs %d row %ld tok %d: ref %.9g got %.9g", sets[s]->name,
                                  qd_type_name(t), sg, (long)r, k, ref[k * R + r], got[k * R + r]);
                    }
            }
        }
        qd_free_aligned(scratch);
        qd_free(wq);
    }
    qd_free(tmp);
    qd_free(x);
    qd_free(wf);
    qd_pool_destroy(pool);
}

/* matmul sizes its scratch by QD_PREFERS_ACT_BYTES: no set's own
 * activation layout may take more, for any width a type can have. */
Test(kernels, prefers_act_within_bound)
{
    need_sets();
    int checked = 0;
    for (int s = 0; s < n_sets; s++) {
        const qd_kernels_t *k = sets[s];
        if (!k->prefers_act_bytes || !k->gemm_prefers)
            continue;
        for (size_t i = 0; i < QD_ARRAY_SIZE(all_types); i++) {
            qd_type_t t = all_types[i];
            int64_t bs = qd_type_traits(t)->blck_size;
            for (int64_t n = bs; n <= 20000; n += bs) {
                qd_qmat_t w = {.type = t, .n_rows = 1, .n_cols = n,
                               .row_bytes = qd_row_size(t, n)};
                int any = 0;
                for (int nt = 1; nt <= 16 && !any; nt++)
                    any = k->gemm_prefers(&w, nt);
                if (!any)
                    continue;
                checked++;
                cr_assert_leq(k->prefers_act_bytes(t, n), QD_PREFERS_ACT_BYTES(n),
                              "%s %s n %ld: %zu > %zu", k->name, qd_type_name(t), (long)n,
                              k->prefers_act_bytes(t, n), QD_PREFERS_ACT_BYTES(n));
            }
        }
    }
    if (!checked)
        cr_skip_test("no kernel set here has a layout of its own");
}

Test(kernels, matmul_independent_of_thread_count)
{
    const qd_type_t types[] = {QD_TYPE_Q4_0, QD_TYPE_Q4_1, QD_TYPE_Q8_0, QD_TYPE_Q4_K,
                               QD_TYPE_Q6_K, QD_TYPE_F16,  QD_TYPE_Q4_G128};
    const int toks[] = {1, 9, 40};
    for (size_t i = 0; i < QD_ARRAY_SIZE(types); i++) {
        qd_type_t t = types[i];
        if (!have_type(t))
            continue;
        for (size_t k = 0; k < QD_ARRAY_SIZE(toks); k++) {
            int n_tok = toks[k];
            int64_t n_rows = 83, n_cols = 2 * QD_QK_K;
            rng_state = 4242 + i;
            qd_qmat_t w = make_qmat(t, n_rows, n_cols, 1.0f, NULL);
            float *x = qd_malloc((size_t)(n_tok * n_cols) * sizeof(float));
            fill(x, n_tok * n_cols, 1.0f);
            void *scratch = qd_malloc_aligned(qd_matmul_scratch_bytes(&w, n_tok), 64);
            float *out[3];
            for (int nt = 1; nt <= 3; nt++) {
                qd_pool_t *pool;
                cr_assert_eq(qd_pool_create(nt, &pool), 0);
                out[nt - 1] = qd_calloc((size_t)(n_tok * n_rows), sizeof(float));
                qd_matmul(pool, out[nt - 1], n_rows, &w, x, n_cols, n_tok, scratch);
                qd_pool_destroy(pool);
            }
            size_t ob = (size_t)(n_tok * n_rows) * sizeof(float);
            cr_assert(memcmp(out[0], out[1], ob) == 0, "%s 1 vs 2 threads", qd_type_name(t));
            cr_assert(memcmp(out[0], out[2], ob) == 0, "%s 1 vs 3 threads", qd_type_name(t));
            for (int j = 0; j < 3; j++)
                qd_free(out[j]);
            qd_free(x);
            qd_free((void *)w.data);
            qd_free_aligned(scratch);
        }
    }
}

/* More threads than chunks, and than the 64 stretch owners: two matrices
 * through qd_matmul_multi (136 rows: 5 chunks of 32 at 70 threads, one
 * chunk a stretch at 5) give bitwise the results of one thread, hinted or
 * not. */
Test(kernels, matmul_stretches_many_threads)
{
    const int64_t rows[2] = {96, 40}, n_cols = 4096;
    const int toks[] = {1, 40};
    rng_state = 777;
    qd_qmat_t w[2];
    const qd_qmat_t *wp[2];
    size_t sb = 0;
    for (int i = 0; i < 2; i++) {
        w[i] = make_qmat(QD_TYPE_Q4_0, rows[i], n_cols, 1.0f, NULL);
        wp[i] = &w[i];
        sb = QD_MAX(sb, qd_matmul_scratch_bytes(&w[i], 40));
    }
    void *scratch = qd_malloc_aligned(sb, 64);
    float *x = qd_malloc((size_t)(40 * n_cols) * sizeof(float));
    fill(x, 40 * n_cols, 1.0f);
    for (size_t k = 0; k < QD_ARRAY_SIZE(toks); k++) {
        int n_tok = toks[k];
        const int nts[] = {1, 5, 70};
        float *o[3][2];
        for (int a = 0; a < 3; a++) {
            qd_pool_t *pool;
            cr_assert_eq(qd_pool_create(nts[a], &pool), 0);
            int64_t ldo[2] = {rows[0], rows[1]};
            for (int i = 0; i < 2; i++)
                o[a][i] = qd_calloc((size_t)(n_tok * rows[i]), sizeof(float));
            qd_matmul_hint(pool, 2, wp, n_tok);
            qd_matmul_multi(pool, 2, o[a], ldo, wp, x, n_cols, n_tok, scratch);
            qd_pool_destroy(pool);
        }
        for (int a = 1; a < 3; a++)
            for (int i = 0; i < 2; i++)
                cr_assert(memcmp(o[0][i], o[a][i], (size_t)(n_tok * rows[i]) * sizeof(float)) == 0,
                          "matrix %d, %d tokens: %d threads differ from 1", i, n_tok, nts[a]);
        for (int a = 0; a < 3; a++)
            for (int i = 0; i < 2; i++)
                qd_free(o[a][i]);
    }
    for (int i = 0; i < 2; i++)
        qd_free((void *)w[i].data);
    qd_free(x);
    qd_free_aligned(scratch);
}

/* The tiled paths' weight decoding (quant/tile.c, the scalar decoder every
 * set falls back to) gives dsc*u + corr = the type's to_float values, and
 * the AVX-512 decoder (tiledec_avx512.c) gives the same bytes and floats. */
Test(kernels, tile_decode_matches_to_float)
{
    const int64_t K = QD_TILE_K, R = 13;
    float *wf = qd_malloc((size_t)(R * K) * sizeof(float));
    float *ref = qd_malloc((size_t)K * sizeof(float));
    _Alignas(64) static uint8_t u[QD_TILE_ROWS * QD_TILE_K], u2[QD_TILE_ROWS * QD_TILE_K];
    _Alignas(64) static float dsc[QD_TILE_K / 16 * QD_TILE_ROWS], corr[QD_TILE_K / 16 * QD_TILE_ROWS];
    _Alignas(64) static float dsc2[QD_TILE_K / 16 * QD_TILE_ROWS], corr2[QD_TILE_K / 16 * QD_TILE_ROWS];
    find_sets();
    int have512 = 0;
    for (int s = 0; s < n_sets; s++)
        have512 |= !strcmp(sets[s]->name, "avx512");
    int n_checked = 0;
    for (size_t i = 0; i < QD_ARRAY_SIZE(all_types); i++) {
        qd_type_t t = all_types[i];
        int S = qd__tile_sub(t);
        if (!S || !have_type(t))
            continue;
        rng_state = 99 + i;
        fill(wf, R * K, 1.0f);
        size_t rb = qd_row_size(t, K);
        uint8_t *wq = qd_malloc(rb * (size_t)R);
        quantize_rows(t, wf, wq, R, K);
        int bs = qd_type_traits(t)->blck_size;
        /* the whole chunk, and a part of it from a later block */
        int64_t k0s[2] = {0, K / 2};
        for (int c = 0; c < 2; c++) {
            int64_t k0 = k0s[c];
            int nk = (int)(K - k0);
            cr_assert_eq(k0 % bs, 0);
            memset(u, 0xa5, sizeof u);
            qd__tile_decode(t, wq, rb, (int)R, k0, nk, u, dsc, corr);
            for (int64_t r = 0; r < QD_TILE_ROWS; r++) {
                if (r < R)
                    qd_type_traits(t)->to_float(wq + r * rb, ref, K);
                for (int k = 0; k < nk; k++) {
                    float d = dsc[(k / S) * QD_TILE_ROWS + r];
                    float cr = corr[(k / S) * QD_TILE_ROWS + r];
                    uint8_t uv = u[(k / 4) * 64 + r * 4 + k % 4];
                    float got = d * (float)uv + cr;
                    float want = r < R ? ref[k0 + k] : 0.0f;
                    float tol = 1e-6f * (fabsf(d) * 255.0f + fabsf(cr)) + 1e-30f;
                    cr_assert(fabsf(got - want) <= tol,
                              "%s row %ld k %ld: %g*%d%+g = %g, to_float %g",
                              qd_type_name(t), (long)r, (long)(k0 + k), d, uv,
                              cr, got, want);
                }
            }
#if defined(QD_ARCH_X86) || defined(__x86_64__)
            if (have512 && k0 % 64 == 0 &&
                qd__tile_decode_512(t, wq, rb, (int)R, k0, nk, u2, dsc2, corr2)) {
                cr_assert(memcmp(u, u2, (size_t)QD_TILE_ROWS * nk) == 0,
                          "%s: AVX-512 decoded values differ", qd_type_name(t));
                size_t nf = (size_t)(nk / S) * QD_TILE_ROWS * sizeof(float);
                cr_assert(memcmp(dsc, dsc2, nf) == 0 && memcmp(corr, corr2, nf) == 0,
                          "%s: AVX-512 decoded scales differ", qd_type_name(t));
            }
#endif
            n_checked++;
        }
        qd_free(wq);
    }
    cr_assert_gt(n_checked, 0);
    qd_free(wf);
    qd_free(ref);
}

/* qd_matmul_multi: every output bit-identical to its own qd_matmul, on
 * every set, whether the matrices share the activations (same format) or
 * not (Q4_K next to Q6_K on the tiled path), for decode, batched decode,
 * tiled and bf16 batch sizes, with 1 and 3 threads. */
static void multi_equals_separate(const qd_type_t types[3], int64_t n_cols)
{
    find_sets();
    const qd_kernels_t *all[4] = {qd_kernels_scalar()};
    int n_all = 1;
    for (int s = 0; s < n_sets; s++)
        all[n_all++] = sets[s];
    const int64_t rows[3] = {48, 17, 33};
    const int toks[] = {1, 9, 40};
    qd_qmat_t w[3];
    size_t sb = 0;
    rng_state = 4242;
    for (int i = 0; i < 3; i++) {
        w[i] = make_qmat(types[i], rows[i], n_cols, 1.0f, NULL);
        sb = QD_MAX(sb, qd_matmul_scratch_bytes(&w[i], 40));
    }
    void *scratch = qd_malloc_aligned(sb, 64);
    float *x = qd_malloc((size_t)(40 * n_cols) * sizeof(float));
    fill(x, 40 * n_cols, 1.0f);
    for (int s = 0; s < n_all; s++) {
        for (int nt = 1; nt <= 3; nt += 2) {
            qd_pool_t *pool;
            cr_assert_eq(qd_pool_create(nt, &pool), 0);
            for (size_t k = 0; k < QD_ARRAY_SIZE(toks); k++) {
                int n_tok = toks[k];
                float *sep[3], *mul[3];
                int64_t ldo[3];
                const qd_qmat_t *wp[3];
                for (int i = 0; i < 3; i++) {
                    ldo[i] = rows[i] + 1;
                    wp[i] = &w[i];
                    sep[i] = qd_calloc((size_t)(n_tok * ldo[i]), sizeof(float));
                    mul[i] = qd_calloc((size_t)(n_tok * ldo[i]), sizeof(float));
                    qd__matmul_with(all[s], pool, sep[i], ldo[i], &w[i], x, n_cols, n_tok, scratch);
                }
                qd__matmul_multi_with(all[s], pool, 3, mul, ldo, wp, x, n_cols, n_tok, scratch);
                for (int i = 0; i < 3; i++) {
                    cr_assert(memcmp(sep[i], mul[i], (size_t)(n_tok * ldo[i]) * sizeof(float)) == 0,
                              "%s: matrix %d, %d tokens, %d threads differs", all[s]->name, i,
                              n_tok, nt);
                    qd_free(sep[i]);
                    qd_free(mul[i]);
                }
            }
            qd_pool_destroy(pool);
        }
    }
    for (int i = 0; i < 3; i++)
        qd_free((void *)w[i].data);
    qd_free(x);
    qd_free_aligned(scratch);
}

Test(kernels, matmul_multi_equals_separate)
{
    /* k-quants (Q8_K activations): Q4_K's two share the batched decode
     * layout (runs in pairs), Q6_K has its own; then the Q8_0-activation
     * types: on the AVX-512 set the two Q4_0 share a layout of groups of
     * 16 blocks, Q8_0 has its own (the offset in its block sums), also at
     * 19 blocks a row (a group and a last one of 3) */
    const qd_type_t kq[3] = {QD_TYPE_Q4_K, QD_TYPE_Q4_K, QD_TYPE_Q6_K};
    const qd_type_t leg[3] = {QD_TYPE_Q4_0, QD_TYPE_Q4_0, QD_TYPE_Q8_0};
    multi_equals_separate(kq, 2 * QD_QK_K);
    multi_equals_separate(leg, 2 * QD_QK_K);
    multi_equals_separate(leg, 19 * 32);
}
