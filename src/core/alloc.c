/*
 * alloc.c — allocation wrappers with a failure-injection hook.
 *
 * Request handling allocates through qd_malloc & co. so that a test can make
 * the N-th allocation fail and walk every out-of-memory path (SQLite's
 * test_malloc.c idea). The hot path (forward pass) allocates nothing at all.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "quantd/common.h"

static _Atomic long fail_countdown = -1;
static _Atomic int fail_once;          /* 1: only the counted one fails */
static _Atomic unsigned long n_injected; /* failures injected so far */

void qd_fail_alloc_after(long n)
{
    atomic_store(&fail_once, 0);
    atomic_store(&fail_countdown, n);
}

void qd_fail_alloc_nth(long n)
{
    atomic_store(&fail_countdown, -1);
    atomic_store(&fail_once, 1);
    atomic_store(&fail_countdown, n > 0 ? n - 1 : -1);
}

unsigned long qd_alloc_failures_injected(void)
{
    return atomic_load(&n_injected);
}

static int should_fail(void)
{
    long c = atomic_load(&fail_countdown);
    while (c >= 0) {
        if (c == 0) {
            /* Several threads may get here; one-shot mode fails only the
             * thread that moves the countdown from 0 to -1. */
            if (atomic_load(&fail_once) &&
                !atomic_compare_exchange_weak(&fail_countdown, &c, -1))
                continue;
            atomic_fetch_add(&n_injected, 1);
            return 1;
        }
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return 0;
    }
    return 0;
}

void *qd_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *qd_calloc(size_t n, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *qd_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *qd_strndup(const char *s, size_t n)
{
    char *d = qd_malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *qd_strdup(const char *s) { return qd_strndup(s, strlen(s)); }

void qd_free(void *p) { free(p); }

void *qd_malloc_aligned(size_t n, size_t align)
{
    if (should_fail())
        return NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0)
        return NULL;
    return p;
}

void *qd_malloc_huge(size_t n)
{
    const size_t huge = (size_t)2 << 20; /* madvise needs a page-aligned start */
    void *p = qd_malloc_aligned(n, huge);
#ifdef MADV_HUGEPAGE
    if (p && n >= huge)
        (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

void qd_free_aligned(void *p) { free(p); }

uint64_t qd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
