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
#include <time.h>

#include "quantd/common.h"

static _Atomic long fail_countdown = -1;

void qd_fail_alloc_after(long n) { fail_countdown = n; }

static int should_fail(void)
{
    long c = atomic_load(&fail_countdown);
    if (c < 0)
        return 0;
    if (c == 0)
        return 1;
    atomic_fetch_sub(&fail_countdown, 1);
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

void qd_free_aligned(void *p) { free(p); }

uint64_t qd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
