/* test_core.c — error table, allocation wrappers, compute pool. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/threadpool.h"

Test(core, strerror_covers_every_code)
{
    for (int e = QD__EFIRST + 1; e < QD__ELAST; e++) {
        cr_expect_neq(strcmp(qd_strerror(e), "unknown error"), 0,
                      "code %d has no message", e);
        cr_expect_eq(strncmp(qd_errname(e), "QD_E", 4), 0);
    }
    cr_expect_str_eq(qd_strerror(0), "success");
    cr_expect_str_eq(qd_strerror(12345), "unknown error");
}

Test(core, overflow_helpers)
{
    size_t r;
    cr_expect_eq(qd_mul_size(SIZE_MAX / 2, 3, &r), QD_EOVERFLOW);
    cr_expect_eq(qd_mul_size(1000, 1000, &r), 0);
    cr_expect_eq(r, 1000000);
    cr_expect_eq(qd_add_size(SIZE_MAX, 1, &r), QD_EOVERFLOW);
}

Test(core, fail_alloc_injection)
{
    qd_fail_alloc_after(2);
    void *a = qd_malloc(8), *b = qd_malloc(8), *c = qd_malloc(8);
    qd_fail_alloc_after(-1);
    cr_expect_not_null(a);
    cr_expect_not_null(b);
    cr_expect_null(c);
    qd_free(a);
    qd_free(b);
}

static void count_fn(void *arg, int ith, int nth)
{
    _Atomic int *slots = arg;
    atomic_fetch_add(&slots[ith], 1);
    atomic_fetch_add(&slots[64], nth);
}

/* 2000 phases of count_fn on a pool of n threads, each thread running
 * each phase once; with buf, prefetch hints into it (some threads none,
 * some spans empty) set anew before every phase. */
static void run_counted_phases(int n, const unsigned char *buf, size_t bytes)
{
    qd_pool_t *p;
    cr_assert_eq(qd_pool_create(n, &p), 0);
    _Atomic int slots[65] = {0};
    for (int it = 0; it < 2000; it++) {
        if (buf) {
            const void *base[4];
            size_t len[4];
            for (int i = 0; i < 4; i++) {
                base[i] = (it + i) % 3 ? buf + (size_t)((it * 4099 + i * 65536) % (bytes / 2)) : NULL;
                len[i] = (size_t)((it + i) % 5) * 65536;
            }
            qd_pool_hint(p, it % (n + 1), base, len);
        }
        qd_pool_run(p, count_fn, slots);
    }
    for (int i = 0; i < n; i++)
        cr_expect_eq(slots[i], 2000, "thread %d ran %d times", i, (int)slots[i]);
    cr_expect_eq(slots[64], 2000 * n * n);
    qd_pool_destroy(p);
}

Test(core, pool_runs_every_thread_each_time)
{
    for (int n = 1; n <= 4; n++)
        run_counted_phases(n, NULL, 0);
    qd_pool_t *p;
    cr_expect_eq(qd_pool_create(0, &p), QD_EINVAL);
    qd_pool_destroy(NULL);
}

/* Prefetch hints change nothing the threads compute: with spans set
 * before every phase (the memory a real buffer), every phase still runs
 * every thread once, and waiting threads that prefetch still see the
 * next phase. */
Test(core, pool_hints_keep_every_phase)
{
    size_t bytes = (size_t)4 << 20;
    unsigned char *buf = qd_malloc(bytes);
    cr_assert_not_null(buf);
    memset(buf, 1, bytes);
    for (int n = 2; n <= 4; n++)
        run_counted_phases(n, buf, bytes);
    qd_free(buf);
    qd_pool_hint(NULL, 0, NULL, NULL); /* no pool: nothing */
}
