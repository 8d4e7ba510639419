/*
 * bench_awq.c — `quantd bench --awq-layout`: the two ways to run an AWQ
 * checkpoint's 4-bit layers, measured on 1B-shaped matrices.
 *
 *  direct  matrix × vector on AutoAWQ's GEMM layout as stored (int32
 *          qweight [K][N/8] with interleaved nibbles, qzeros, fp16 scales,
 *          group 128): bench_awq_avx512.c, one fp32 FMA per weight;
 *  repack  the layer repacked at import (qd_q4mat_to_gguf: Q4_G128
 *          blocks for group 128, Q4_1 before quantd-hf-import 2) and run by the engine's qd_matmul (int8
 *          activations × 4-bit weights).
 *
 * Both are checked against a double-precision product of the dequantized
 * weights, then timed (median of reps × 20 products); GB/s counts the bytes
 * of weights each one streams. The import repacks because the repacked
 * path is the faster one (docs/awq.md has the figures).
 */
#include "cmd/bench_awq.h"

#include "config.h"

#include "cmd/bench.h"
#include "quantd/common.h"
#include "quantd/compute.h"
#include "quantd/hf_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t awq_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    awq_rng ^= awq_rng << 13;
    awq_rng ^= awq_rng >> 7;
    awq_rng ^= awq_rng << 17;
    return (uint32_t)(awq_rng >> 32);
}

/* Scalar reference of the direct kernel (any CPU). */
static void gemv_scalar(const int32_t *qw, const int32_t *qz,
                        const uint16_t *sc, const float *x, const float *xsum,
                        int64_t K, int64_t N, int64_t G, int64_t b0, int64_t b1,
                        float *y)
{
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    const int64_t nw = N / 8;
    float acc[128];
    for (int64_t n = b0 * 128; n < b1 * 128; n++)
        y[n] = 0;
    for (int64_t b = b0; b < b1; b++)
        for (int64_t g = 0; g < K / G; g++) {
            memset(acc, 0, sizeof acc);
            for (int64_t k = g * G; k < (g + 1) * G; k++)
                for (int c = 0; c < 16; c++) {
                    uint32_t w = (uint32_t)qw[k * nw + b * 16 + c];
                    for (int i = 0; i < 8; i++)
                        acc[8 * c + order[i]] +=
                            x[k] * (float)((w >> (4 * i)) & 15);
                }
            for (int c = 0; c < 16; c++) {
                uint32_t z = (uint32_t)qz[g * nw + b * 16 + c];
                for (int i = 0; i < 8; i++) {
                    int64_t n = b * 128 + 8 * c + order[i];
                    float v = acc[8 * c + order[i]] -
                              (float)((z >> (4 * i)) & 15) * xsum[g];
                    y[n] += qd_fp16_to_fp32(sc[g * N + n]) * v;
                }
            }
        }
}

typedef void (*gemv_fn)(const int32_t *, const int32_t *, const uint16_t *,
                        const float *, const float *, int64_t, int64_t, int64_t,
                        int64_t, int64_t, float *);

typedef struct {
    gemv_fn fn;
    const int32_t *qw, *qz;
    const uint16_t *sc;
    const float *x;
    float *xsum, *y;
    int64_t K, N, G;
} direct_job_t;

/* Σx per group (the zero points' correction): K adds, on the caller
 * before the pool phase that reads them. */
static void group_sums(const direct_job_t *j)
{
    for (int64_t g = 0; g < j->K / j->G; g++) {
        float s = 0;
        for (int64_t k = g * j->G; k < (g + 1) * j->G; k++)
            s += j->x[k];
        j->xsum[g] = s;
    }
}

static void direct_run(void *arg, int ith, int nth)
{
    direct_job_t *j = arg;
    int64_t nb = j->N / 128, per = (nb + nth - 1) / nth;
    int64_t b0 = per * ith, b1 = QD_MIN(nb, b0 + per);
    if (b0 < b1)
        j->fn(j->qw, j->qz, j->sc, j->x, j->xsum, j->K, j->N, j->G, b0, b1,
              j->y);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double rel_err(const float *y, const double *ref, int64_t n)
{
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs(y[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / m;
}

int qd__bench_awq_layout(int n_threads, int reps)
{
    static const int64_t shapes[][2] = {
        {2048, 2048}, {8192, 2048}, {2048, 8192}}; /* N out, K in */
    const int64_t G = 128;
    qd_pool_t *pool = NULL;
    int status = 1;
    gemv_fn fn = gemv_scalar;
    const char *kname = "scalar";
    const char *want = getenv("QD_KERNELS"); /* "scalar": the reference */
#if defined(QD_ARCH_X86)
    /* the AVX-512 kernel sets imply AVX-512 F/BW/VL and F16C */
    const char *set = qd_kernels_name();
    if ((!want || strcmp(want, "scalar")) &&
        (!strcmp(set, "avx512") || !strcmp(set, "amx"))) {
        fn = qd__awq_gemv_avx512;
        kname = "avx512";
    }
#endif
    if (qd_pool_create(n_threads, &pool) != 0)
        return 1;
    if (reps < 1)
        reps = 1;
    printf("awq-layout: %d threads, group %d, direct kernel %s, qd_matmul "
           "kernels %s; median of %d x 20 products\n",
           n_threads, (int)G, kname, qd_kernels_name(), reps);
    printf("%-14s %-7s %9s %8s %10s\n", "out x in", "path", "us/matvec", "GB/s",
           "max rel err");
    for (size_t si = 0; si < QD_ARRAY_SIZE(shapes); si++) {
        int64_t N = shapes[si][0], K = shapes[si][1];
        qd_q4mat_t m = {0};
        int32_t *qw = NULL, *qz = NULL;
        uint16_t *sc = NULL;
        void *rp = NULL, *scratch = NULL;
        float *x = NULL, *y = NULL, *xsum = NULL, *wf = NULL;
        double *ref = NULL, *times = NULL;
        size_t rp_bytes = 0;
        qd_type_t rp_type;
        if (qd_q4mat_init(&m, N, K, G, 0))
            goto fail;
        for (int64_t i = 0; i < N * K; i++)
            m.q[i] = (uint8_t)(rnd() & 15);
        for (int64_t i = 0; i < N * (K / G); i++) {
            m.z[i] = (uint8_t)(4 + rnd() % 8);
            m.s[i] = qd_fp32_to_fp16(0.002f + (float)(rnd() % 1000) * 1e-5f);
        }
        qw = qd_malloc((size_t)(K * N / 8) * 4);
        qz = qd_malloc((size_t)(K / G * N / 8) * 4);
        sc = qd_malloc((size_t)(K / G * N) * 2);
        x = qd_malloc((size_t)K * sizeof *x);
        y = qd_malloc((size_t)N * sizeof *y);
        xsum = qd_malloc((size_t)(K / G) * sizeof *xsum);
        wf = qd_malloc((size_t)(N * K) * sizeof *wf);
        ref = qd_malloc((size_t)N * sizeof *ref);
        times = qd_malloc((size_t)reps * 20 * sizeof *times);
        if (!qw || !qz || !sc || !x || !y || !xsum || !wf || !ref || !times ||
            qd_awq_pack(&m, qw, qz, (qd_fp16_t *)sc) ||
            qd_q4mat_to_gguf(&m, &rp_type, &rp, &rp_bytes))
            goto fail;
        for (int64_t k = 0; k < K; k++)
            x[k] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        qd_q4mat_dequant(&m, wf);
        for (int64_t n = 0; n < N; n++) {
            double a = 0;
            for (int64_t k = 0; k < K; k++)
                a += (double)wf[n * K + k] * x[k];
            ref[n] = a;
        }
        for (int64_t i = 0; i < N; i++)
            y[i] = NAN;
        qd_qmat_t w = {rp_type, N, K, qd_row_size(rp_type, K), rp, NULL};
        scratch =
            qd_malloc_aligned(QD_MAX(qd_matmul_scratch_bytes(&w, 1), 64), 64);
        if (!scratch)
            goto fail;
        direct_job_t j = {fn, qw, qz, sc, x, xsum, y, K, N, G};
        size_t direct_bytes =
            (size_t)(K * N / 2 + K / G * N / 2 + K / G * N * 2);
        for (int path = 0; path < 2; path++) {
            int nt = reps * 20;
            for (int r = -2; r < nt; r++) {
                uint64_t t0 = qd_now_ns();
                if (path == 0) {
                    group_sums(&j);
                    qd_pool_run(pool, direct_run, &j);
                }
                else
                    qd_matmul(pool, y, N, &w, x, K, 1, scratch);
                if (r >= 0)
                    times[r] = (double)(qd_now_ns() - t0) * 1e-3;
            }
            qsort(times, (size_t)nt, sizeof *times, cmp_d);
            double us = times[nt / 2];
            size_t bytes = path == 0 ? direct_bytes : rp_bytes;
            char shape[32];
            snprintf(shape, sizeof shape, "%lld x %lld", (long long)N,
                     (long long)K);
            printf("%-14s %-7s %9.1f %8.2f %10.2e\n", shape,
                   path == 0 ? "direct" : qd_type_name(rp_type), us,
                   (double)bytes / us * 1e-3, rel_err(y, ref, N));
        }
        status = 0;
        goto next;
    fail:
        fprintf(stderr, "bench --awq-layout: out of memory\n");
        status = 1;
    next:
        qd_q4mat_free(&m);
        qd_free(qw);
        qd_free(qz);
        qd_free(sc);
        qd_free(rp);
        qd_free_aligned(scratch);
        qd_free(x);
        qd_free(y);
        qd_free(xsum);
        qd_free(wf);
        qd_free(ref);
        qd_free(times);
        if (status)
            break;
    }
    qd_pool_destroy(pool);
    return status;
}
