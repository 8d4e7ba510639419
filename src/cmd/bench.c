/*
 * bench.c — `quantd bench`: prompt-processing and generation speed of a
 * model, with the meaning of llama.cpp's llama-bench (pp = one forward pass
 * over a batch of p prompt tokens, tg = n single-token decode steps), plus
 * machine-level figures (--membw, --kernels; bench_kernels.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/bench.h"
#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/compute.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantd bench -m MODEL [-p 512] [-n 128] [-t THREADS] [-r REPS]\n"
            "                    [--json] [--batch B]\n"
            "       quantd bench --membw [-t THREADS] [-r REPS]\n"
            "       quantd bench --kernels [--types Q4_K,Q8_0,...] [-t THREADS] [-r REPS]\n");
}

int qd_cmd_bench(int argc, char **argv)
{
    int threads = 0, reps = 3, membw = 0, kernels = 0;
    const char *types = "Q4_0,Q8_0,Q4_K,Q6_K,Q5_0,F16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--membw")) {
            membw = 1;
        } else if (!strcmp(a, "--kernels")) {
            kernels = 1;
        } else if (!strcmp(a, "--types") && v) {
            types = v;
            i++;
        } else if (!strcmp(a, "-t") && v) {
            threads = atoi(v);
            i++;
        } else if (!strcmp(a, "-r") && v) {
            reps = atoi(v);
            i++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (threads <= 0)
        threads = qd_physical_cores();
    if (reps <= 0)
        reps = 1;
    if (membw)
        return qd__bench_membw(threads, reps);
    if (kernels)
        return qd__bench_kernels(threads, reps, types);
    usage(stderr);
    return 2;
}
