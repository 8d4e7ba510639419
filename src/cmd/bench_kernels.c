/*
 * bench_kernels.c — `quantd bench --membw` and `quantd bench --kernels`:
 * machine-level figures that put the model numbers in context.
 *
 *  --membw    streaming-read bandwidth with T threads (each sums its share
 *             of a 1 GiB buffer, as one stream or as two), GB/s: the best
 *             of either;
 *  --kernels  qd_matmul throughput on random weights of 4096 x 4096 per
 *             type: matrix x vector (GB/s of weights streamed) and
 *             matrix x 512 tokens (GOP/s, 2 ops per multiply-add); then
 *             matrix x vector over a DRAM-sized matrix (the 4096 x 4096
 *             one repeated to at least 1 GiB, more than any cache here),
 *             the decode case; --mv-only skips the 512-token product.
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/bench.h"
#include "quant/kernels.h"
#include "quantd/common.h"
#include "quantd/compute.h"
#include "quantd/gguf.h"

typedef struct {
    const uint8_t *buf;
    size_t n_bytes;
    int streams; /* 1 or 2 per thread */
    double sums[64];
} membw_job_t;

/* The sum of ns streams (1 or 2) of n bytes each (a multiple of 128),
 * from p and p + n, read in step. Prefetched ahead of the hardware
 * prefetcher, across page boundaries too, as the decode kernels read
 * their weights: QD_DEC_PF_DIST for one stream; for two, 1 KiB, which
 * read fastest here (2 threads: 38.7 GB/s against 36.9 at 2 KiB, where
 * one stream read 36.8-37.1). */
__attribute__((target("avx2"))) static double sum_range(const uint8_t *p, int ns, size_t n)
{
    const size_t dist = ns == 1 ? QD_DEC_PF_DIST : 1024;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        for (int s = 0; s < ns; s++) {
            const uint8_t *x = p + (size_t)s * n + i;
            _mm_prefetch((const char *)x + dist, _MM_HINT_T0);
            _mm_prefetch((const char *)x + dist + 64, _MM_HINT_T0);
            a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)x));
            a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(x + 32)));
            a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(x + 64)));
            a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(x + 96)));
        }
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    int64_t v[4];
    memcpy(v, &a0, sizeof v);
    return (double)(v[0] + v[1] + v[2] + v[3]);
}

static void membw_fn(void *arg, int ith, int nth)
{
    membw_job_t *j = arg;
    size_t per = j->n_bytes / (size_t)nth / 256 * 256;
    const uint8_t *p = j->buf + per * (size_t)ith;
    j->sums[ith & 63] = sum_range(p, j->streams, per / (size_t)j->streams);
}

/* n bytes in memory like the weights': on huge pages when models are
 * read into memory (qd_gguf_set_load), so that a roofline is that of the
 * memory the weights live in. qd_free_aligned frees it. */
static uint8_t *alloc_like_weights(size_t n)
{
    return qd_gguf_get_load() == QD_GGUF_READ ? qd_malloc_huge(n)
                                              : qd_malloc_aligned(n, 64);
}

int qd__bench_membw(int n_threads, int reps)
{
    size_t n = (size_t)1 << 30;
    uint8_t *buf = alloc_like_weights(n);
    qd_pool_t *pool = NULL;
    if (!buf || qd_pool_create(n_threads, &pool) != 0) {
        fprintf(stderr, "bench: out of memory\n");
        qd_free_aligned(buf);
        return 1;
    }
    for (size_t i = 0; i < n; i += 4096)
        memset(buf + i, (int)(i >> 12), 4096);
    double best = 0;
    for (int streams = 1; streams <= 2; streams++) {
        membw_job_t j = {.buf = buf, .n_bytes = n, .streams = streams};
        qd_pool_run(pool, membw_fn, &j); /* warm */
        for (int r = 0; r < reps; r++) {
            uint64_t t0 = qd_now_ns();
            qd_pool_run(pool, membw_fn, &j);
            double gbs = (double)n / (double)(qd_now_ns() - t0);
            if (gbs > best)
                best = gbs;
            printf("membw threads=%d streams=%d rep %d: %.2f GB/s\n", n_threads, streams, r,
                   gbs);
        }
    }
    printf("membw threads=%d best: %.2f GB/s\n", n_threads, best);
    qd_pool_destroy(pool);
    qd_free_aligned(buf);
    return 0;
}

static uint64_t bench_rng = 88172645463325252ull;
static float frand(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (float)(bench_rng >> 40) / 8388608.0f - 1.0f;
}

/* Best-of-reps matrix x vector time over w, seconds. */
static double time_matvec(qd_pool_t *pool, const qd_qmat_t *w, const float *x,
                          float *out, void *scratch, int reps)
{
    qd_matmul(pool, out, w->n_rows, w, x, w->n_cols, 1, scratch);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = qd_now_ns();
        qd_matmul(pool, out, w->n_rows, w, x, w->n_cols, 1, scratch);
        double s = (double)(qd_now_ns() - t0) * 1e-9;
        best = s < best ? s : best;
    }
    return best;
}

int qd__bench_kernels(int n_threads, int reps, const char *types, int mv_only)
{
    const int64_t R = 4096, K = 4096;
    const int NT = 512;
    qd_pool_t *pool;
    if (qd_pool_create(n_threads, &pool) != 0)
        return 1;
    float *wf = qd_malloc((size_t)(R * K) * sizeof(float));
    float *x = qd_malloc((size_t)(NT * K) * sizeof(float));
    float *out = qd_malloc((size_t)(NT * R) * sizeof(float));
    for (int64_t i = 0; i < R * K; i++)
        wf[i] = frand() * 0.02f;
    for (int64_t i = 0; i < NT * K; i++)
        x[i] = frand();
    printf("kernels: %s, %d threads, W %ldx%ld\n", qd_kernels_name(), n_threads,
           (long)R, (long)K);
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    for (char *save, *tn = strtok_r(list, ",", &save); tn;
         tn = strtok_r(NULL, ",", &save)) {
        qd_type_t t;
        const qd_type_traits_t *tr;
        if (qd_type_from_name(tn, &t) != 0 ||
            !((tr = qd_type_traits(t))->quantize || tr->from_float_ref)) {
            fprintf(stderr, "bench: type %s not available\n", tn);
            continue;
        }
        size_t rb = qd_row_size(t, K);
        void *wq = qd_malloc(rb * (size_t)R);
        if (tr->quantize)
            tr->quantize(wf, wq, R, K, NULL);
        else /* Q4_G128: only a reference fit */
            tr->from_float_ref(wf, wq, R * K);
        qd_qmat_t w = {.type = t, .n_rows = R, .n_cols = K, .row_bytes = rb, .data = wq};
        void *scratch = qd_malloc_aligned(qd_matmul_scratch_bytes(&w, NT), 64);
        /* matrix x vector on the 4096 x 4096 matrix (in L3 on large-L3
         * CPUs: measures the dot more than memory) */
        double best_v = time_matvec(pool, &w, x, out, scratch, reps * 10);
        double best_m = 0;
        if (!mv_only) {
            best_m = 1e30;
            for (int r = 0; r < reps; r++) {
                uint64_t t0 = qd_now_ns();
                qd_matmul(pool, out, R, &w, x, K, NT, scratch);
                double s = (double)(qd_now_ns() - t0) * 1e-9;
                best_m = s < best_m ? s : best_m;
            }
        }
        /* matrix x vector from DRAM: the matrix repeated to >= 1 GiB */
        size_t mb = rb * (size_t)R, copies = (((size_t)1 << 30) + mb - 1) / mb;
        uint8_t *big = alloc_like_weights(mb * copies);
        float *bout = qd_malloc(sizeof(float) * (size_t)R * copies);
        double best_d = 0;
        if (big && bout) {
            for (size_t c = 0; c < copies; c++)
                memcpy(big + c * mb, wq, mb);
            qd_qmat_t wb = w;
            wb.n_rows = R * (int64_t)copies;
            wb.data = big;
            best_d = time_matvec(pool, &wb, x, bout, scratch, reps);
        }
        printf("%-7s mat-vec %7.3f ms  %6.2f GB/s | DRAM mat-vec (%zu MiB) %6.2f GB/s",
               qd_type_name(t), best_v * 1e3, (double)mb / best_v * 1e-9,
               mb * copies >> 20, best_d > 0 ? (double)(mb * copies) / best_d * 1e-9 : 0.0);
        if (!mv_only)
            printf(" | mat x %d tok %8.2f ms  %7.1f GOP/s", NT, best_m * 1e3,
                   2.0 * (double)R * (double)K * NT / best_m * 1e-9);
        printf("\n");
        fflush(stdout);
        qd_free_aligned(big);
        qd_free(bout);
        qd_free(wq);
        qd_free_aligned(scratch);
    }
    qd_free(wf);
    qd_free(x);
    qd_free(out);
    qd_pool_destroy(pool);
    return 0;
}
