/*
 * kernels.c — scalar reference kernel set and the start-up dispatch.
 *
 * The scalar set calls the per-type reference functions of the traits
 * table; it is the specification the SIMD sets are tested against.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "config.h"
#include "quantd/common.h"

static void scalar_from_float(qd_type_t t, const float *restrict x,
                              void *restrict y, int64_t n)
{
    if (t == QD_TYPE_F32) {
        memcpy(y, x, (size_t)n * sizeof(float));
        return;
    }
    qd_type_traits(t)->from_float_ref(x, y, n);
}

static void scalar_vec_dot(qd_type_t wt, int n, float *restrict s,
                           const void *restrict x, const void *restrict y)
{
    qd_type_traits(wt)->vec_dot(n, s, x, y);
}

static void scalar_gemm(const qd_qmat_t *w, int64_t r0, int64_t r1,
                        const void *act, size_t act_stride, int n_tok,
                        float *out, int64_t ldo)
{
    qd_vec_dot_fn dot = qd_type_traits(w->type)->vec_dot;
    const uint8_t *base = w->data;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = base + (size_t)r * w->row_bytes;
        for (int t = 0; t < n_tok; t++) {
            float s;
            dot((int)w->n_cols, &s, row,
                (const uint8_t *)act + (size_t)t * act_stride);
            out[(int64_t)t * ldo + r] = s;
        }
    }
}

static const qd_kernels_t scalar_kernels = {
    .name = "scalar",
    .from_float = scalar_from_float,
    .gemm = scalar_gemm,
    .vec_dot = scalar_vec_dot,
};

const qd_kernels_t *qd_kernels_scalar(void) { return &scalar_kernels; }

static const qd_kernels_t *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

#if defined(QD_ARCH_X86) && defined(__clang__) && __clang_major__ < 16
/* clang before 16 does not know "f16c" in __builtin_cpu_supports. */
#include <cpuid.h>
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#elif defined(QD_ARCH_X86)
#define has_f16c() __builtin_cpu_supports("f16c")
#endif

/* The best set this CPU runs, by __builtin_cpu_supports. */
static const qd_kernels_t *best_supported(int max_level)
{
#if defined(QD_ARCH_X86)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               has_f16c() && __builtin_cpu_supports("bmi2");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                 __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vnni");
    if (avx512 && max_level >= 3) {
        const qd_kernels_t *amx = qd__kernels_amx();
        if (amx)
            return amx;
    }
    if (avx512 && max_level >= 2)
        return qd__kernels_avx512();
    if (avx2 && max_level >= 1)
        return qd__kernels_avx2();
#else
    (void)max_level;
#endif
    return &scalar_kernels;
}

static void choose(void)
{
    const char *force = getenv("QD_KERNELS");
    int level = 3;
    if (force && *force) {
        if (!strcmp(force, "scalar"))
            level = 0;
        else if (!strcmp(force, "avx2"))
            level = 1;
        else if (!strcmp(force, "avx512"))
            level = 2;
        else if (!strcmp(force, "amx"))
            level = 3;
        else
            QD_WARN("quant", "QD_KERNELS=%s unknown (scalar|avx2|avx512|amx); "
                             "using the best supported", force);
    }
    chosen = best_supported(level);
    if (force && *force && strcmp(force, chosen->name))
        QD_WARN("quant", "QD_KERNELS=%s not supported by this CPU", force);
    QD_INFO("quant", "compute kernels: %s", chosen->name);
}

const qd_kernels_t *qd_kernels(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

const char *qd_kernels_name(void) { return qd_kernels()->name; }

int qd_matmul_bf16_min_tok(void)
{
    const qd_kernels_t *k = qd_kernels();
    return k->gemm_bf16 ? k->bf16_min_tok : 0;
}
