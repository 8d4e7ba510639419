/*
 * test_attn.c — the blocked attention paths (engine/attn.h) against a
 * double-precision softmax attention over the same f16 cache: the vector
 * path within float rounding, the AMX path within bf16's (about 2^-8),
 * causal masks, partial blocks and row groups, a scattered block table,
 * and the AMX path declining what it does not handle.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/attn.h"
#include "quant/kernels.h"
#include "quantd/common.h"
#include "quantd/quant.h"

#if defined(__x86_64__)

#define NKV 2    /* KV heads */
#define NBLK 160 /* 2560 positions */

typedef struct {
    int hd, nrep;
    uint8_t *data;
    int32_t tab[NBLK];
    size_t row_bytes, block_bytes;
    float *kf, *vf; /* [pos][NKV][hd], the f16 values as floats */
} cache_t;

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static void cache_make(cache_t *c, int hd, int nrep, uint64_t seed)
{
    c->hd = hd;
    c->nrep = nrep;
    c->row_bytes = (size_t)NKV * hd * 2;
    c->block_bytes = 2 * 16 * c->row_bytes;
    c->data = qd_malloc_aligned(c->block_bytes * NBLK, 64);
    c->kf = malloc(sizeof(float) * 16 * NBLK * NKV * hd);
    c->vf = malloc(sizeof(float) * 16 * NBLK * NKV * hd);
    cr_assert(c->data && c->kf && c->vf);
    /* block b of the sequence lives in slot (b * 37) % NBLK */
    for (int b = 0; b < NBLK; b++)
        c->tab[b] = (b * 37) % NBLK;
    uint64_t s = seed;
    for (int p = 0; p < 16 * NBLK; p++) {
        uint8_t *blk = c->data + (size_t)c->tab[p / 16] * c->block_bytes;
        qd_fp16_t *kr = (qd_fp16_t *)(blk + (size_t)(p % 16) * c->row_bytes);
        qd_fp16_t *vr = (qd_fp16_t *)(blk + 16 * c->row_bytes + (size_t)(p % 16) * c->row_bytes);
        for (int i = 0; i < NKV * hd; i++) {
            kr[i] = qd_fp32_to_fp16(1.5f * frand(&s));
            vr[i] = qd_fp32_to_fp16(frand(&s));
            c->kf[(size_t)p * NKV * hd + i] = qd_fp16_to_fp32(kr[i]);
            c->vf[(size_t)p * NKV * hd + i] = qd_fp16_to_fp32(vr[i]);
        }
    }
}

static void cache_free(cache_t *c)
{
    qd_free_aligned(c->data);
    free(c->kf);
    free(c->vf);
}

static qd_attn_kv_t view(const cache_t *c, int g)
{
    qd_attn_kv_t a = {
        .data = c->data,
        .tab = c->tab,
        .block_bytes = c->block_bytes,
        .koff = 0,
        .voff = 16 * c->row_bytes,
        .row_bytes = c->row_bytes,
        .f16 = 1,
        .hd = c->hd,
        .n_rep = c->nrep,
        .g = g,
        .scale = 1.0f / sqrtf((float)c->hd),
    };
    return a;
}

/* out[r*hd + d], rows r = token * nrep + head, in double */
static void reference(const cache_t *c, int g, int n_tok, const float *q,
                      const int32_t *pos, double *out)
{
    const int hd = c->hd;
    double *w = malloc(sizeof(double) * 16 * NBLK);
    for (int r = 0; r < n_tok * c->nrep; r++) {
        const float *qr = q + (size_t)r * hd;
        int np = pos[r / c->nrep] + 1;
        double mx = -INFINITY, sum = 0;
        for (int p = 0; p < np; p++) {
            double s = 0;
            for (int d = 0; d < hd; d++)
                s += (double)qd_fp16_to_fp32(qd_fp32_to_fp16(qr[d])) *
                     c->kf[((size_t)p * NKV + g) * hd + d];
            w[p] = s / sqrt((double)hd);
            mx = fmax(mx, w[p]);
        }
        for (int p = 0; p < np; p++)
            sum += (w[p] = exp(w[p] - mx));
        for (int d = 0; d < hd; d++) {
            double o = 0;
            for (int p = 0; p < np; p++)
                o += w[p] / sum * c->vf[((size_t)p * NKV + g) * hd + d];
            out[(size_t)r * hd + d] = o;
        }
    }
    free(w);
}

/* Runs n_tok tokens at positions p0.. through both paths; returns the
 * AMX path's return value. */
static int check(const cache_t *c, int g, int n_tok, int32_t p0, int use_amx)
{
    const int hd = c->hd, rows = n_tok * c->nrep;
    float *q = malloc(sizeof(float) * rows * hd), *o = malloc(sizeof(float) * rows * hd);
    double *ref = malloc(sizeof(double) * rows * hd);
    float *ws = qd_malloc_aligned(qd__attn_ws_floats(hd) * sizeof(float), 64);
    int32_t pos[QD_ATTN_ROWS];
    cr_assert(q && o && ref && ws);
    uint64_t s = 99 + (uint64_t)p0;
    for (int i = 0; i < rows * hd; i++)
        q[i] = 2.0f * frand(&s);
    for (int t = 0; t < n_tok; t++)
        pos[t] = p0 + t;
    qd_attn_kv_t a = view(c, g);
    reference(c, g, n_tok, q, pos, ref);
    int rc = 0;
    if (use_amx)
        rc = qd__attn_amx(&a, n_tok, q, (int64_t)c->nrep * hd, pos, o, (int64_t)c->nrep * hd,
                          ws);
    else
        qd__attn_avx512(&a, n_tok, q, (int64_t)c->nrep * hd, pos, o, (int64_t)c->nrep * hd, ws);
    if (rc == 0) {
        double worst = 0, big = 0;
        for (int i = 0; i < rows * hd; i++) {
            worst = fmax(worst, fabs(o[i] - ref[i]));
            big = fmax(big, fabs(ref[i]));
        }
        /* relative to the largest output (averages of values in [-1, 1]:
         * about 1 over the first positions, 0.1 over hundreds); measured
         * 0.33-0.58x of this bound for amx, 0.25x for avx512 */
        double tol = (use_amx ? 8e-3 : 1e-3) * fmax(big, 0.1);
        cr_expect_leq(worst, tol, "%s hd %d rows %d from %d: max |d| %g (max |o| %g)",
                      use_amx ? "amx" : "avx512", hd, rows, (int)p0, worst, big);
    }
    free(q);
    free(o);
    free(ref);
    qd_free_aligned(ws);
    return rc;
}

Test(attn, vector_path_matches_reference)
{
    if (!qd__kernels_avx512())
        cr_skip_test("no AVX-512 on this CPU");
    cache_t c;
    cache_make(&c, 64, 4, 1);
    check(&c, 1, 16, 0, 0);
    check(&c, 0, 5, 37, 0);
    check(&c, 1, 16, 600, 0);
    cache_free(&c);
}

Test(attn, amx_path_matches_reference)
{
    if (!qd__kernels_amx())
        cr_skip_test("no AMX on this CPU (or not granted)");
    static const int hds[] = {64, 128};
    for (int h = 0; h < 2; h++) {
        cache_t c;
        cache_make(&c, hds[h], 4, 2 + (uint64_t)h);
        /* the first block (causal mask inside it), partial blocks, a row
         * group cut short (9 tokens = 36 rows), long contexts */
        cr_expect_eq(check(&c, 0, 16, 0, 1), 0);
        cr_expect_eq(check(&c, 1, 9, 3, 1), 0);
        cr_expect_eq(check(&c, 1, 16, 600, 1), 0);
        cr_expect_eq(check(&c, 0, 8, 2030, 1), 0);
        cache_free(&c);
    }
    /* two query heads per KV head: 16 tokens = 32 rows */
    cache_t c;
    cache_make(&c, 64, 2, 5);
    cr_expect_eq(check(&c, 1, 16, 100, 1), 0);
    cache_free(&c);
}

Test(attn, amx_path_declines_what_it_does_not_handle)
{
    if (!qd__kernels_amx())
        cr_skip_test("no AMX on this CPU (or not granted)");
    cache_t c;
    cache_make(&c, 64, 4, 3);
    /* past 2048 positions: the vector path's job */
    cr_expect_eq(check(&c, 0, 8, 2045, 1), -1);
    cache_free(&c);
    cache_make(&c, 32, 4, 4); /* hd 32 */
    cr_expect_eq(check(&c, 0, 8, 10, 1), -1);
    cache_free(&c);
}

#endif
