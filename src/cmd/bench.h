/*
 * bench.h — pieces of `quantd bench` (src/cmd/bench*.c).
 */
#ifndef QUANTD_CMD_BENCH_H
#define QUANTD_CMD_BENCH_H

/* Streaming-read bandwidth with n_threads; prints GB/s. Exit status. */
int qd__bench_membw(int n_threads, int reps);
/* qd_matmul throughput per type (comma-separated names); mv_only skips
 * the many-token product. Exit status. */
int qd__bench_kernels(int n_threads, int reps, const char *types, int mv_only);

/* AWQ GEMM layout computed directly vs repacked by the import (Q4_G128 for group 128) + qd_matmul,
 * on 1B-shaped matrices (bench_awq.c). Exit status. */
int qd__bench_awq_layout(int n_threads, int reps);

#endif
