/*
 * bench_awq.h — the direct AWQ-layout matrix × vector of `quantd bench
 * --awq-layout` (bench_awq.c, bench_awq_avx512.c).
 */
#ifndef QUANTD_CMD_BENCH_AWQ_H
#define QUANTD_CMD_BENCH_AWQ_H

#include <stdint.h>

/* y[128·b0 .. 128·b1) of y = W x for W in AutoAWQ GEMM layout (qweight
 * int32 [K][N/8], qzeros int32 [K/G][N/8], scales fp16 [K/G][N]); xsum[g]
 * = Σ of x over group g. N % 128 == 0, K % G == 0. */
void qd__awq_gemv_avx512(const int32_t *qw, const int32_t *qz,
                         const uint16_t *sc, const float *x, const float *xsum,
                         int64_t K, int64_t N, int64_t G, int64_t b0,
                         int64_t b1, float *y);

#endif
