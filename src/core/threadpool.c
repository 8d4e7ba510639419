/*
 * threadpool.c — the compute pool: N-1 persistent workers plus the caller.
 *
 * A forward pass is a chain of short parallel phases (one per matmul or
 * attention step), thousands per second, so the hand-off must be cheap:
 * a waiting thread spins on a counter for a bounded time (SPIN_NS, about
 * the length of a short phase), then sleeps on a futex. The bound matters
 * when cores are shared with other processes: a thread spinning for a
 * descheduled partner burns the time slice the partner needs.
 * qd_pool_run() bumps the generation, runs thread 0's share itself, then
 * waits until every worker has checked in.
 *
 * Waiting is also when a thread's memory traffic would stop: between the
 * phases of a decode step (one thread finishing the serial work, the
 * other the last rows of a product) the bus idles. qd_pool_hint() names,
 * per thread, the memory the next phase will have it read first; a
 * waiting thread prefetches it instead of pausing.
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/threadpool.h"

/* Spin budget before sleeping; QD_POOL_SPIN_US overrides (0: no spin). */
#define SPIN_NS_DEFAULT 50000

/* A waiting thread's progress through its hint (addresses as integers:
 * the span may be any memory, and the last step may pass its end). */
typedef struct {
    unsigned gen;
    uintptr_t cur, end;
} pf_cursor_t;

struct qd_pool {
    int n_threads;
    pthread_t *threads;
    long spin_ns;
    /* Work description; written by the caller before bumping `gen`. */
    qd_pool_fn fn;
    void *arg;
    _Atomic unsigned gen;     /* incremented once per qd_pool_run (futex) */
    _Atomic int n_done;       /* workers finished with the current gen (futex) */
    _Atomic int stop;
    _Atomic int n_sleeping;   /* workers in (or about to enter) futex wait */
    _Atomic int caller_sleeping;
    /* Prefetch hints (qd_pool_hint): per thread a span, and a generation
     * that tells waiting threads to pick up new spans. */
    _Atomic uintptr_t *hint_p;
    _Atomic size_t *hint_n;
    _Atomic unsigned hint_gen;
    /* The caller writes caller_pf on every round of its prefetching wait
     * while the workers poll hint_gen: a line apart, so that the two never
     * share a cache line (the pool comes from qd_calloc, 16-aligned). */
    char sep_[64];
    pf_cursor_t caller_pf; /* the caller's progress (thread 0) */
};

/* Prefetch the next piece of thread ith's hint; returns 0 when there is
 * nothing (left) to prefetch. Eight lines a call, no pause: prefetches
 * that miss wait for fill buffers, which paces the loop by memory. */
static int pf_step(qd_pool_t *p, int ith, pf_cursor_t *c)
{
    unsigned g = atomic_load_explicit(&p->hint_gen, memory_order_acquire);
    if (g != c->gen) {
        c->gen = g;
        size_t n = atomic_load_explicit(&p->hint_n[ith], memory_order_relaxed);
        c->cur = atomic_load_explicit(&p->hint_p[ith], memory_order_relaxed);
        c->end = c->cur + n;
    }
    if (c->cur >= c->end)
        return 0;
    for (int i = 0; i < 8 && c->cur < c->end; i++, c->cur += 64)
        __builtin_prefetch((const void *)c->cur, 0, 2);
    return 1;
}

typedef struct {
    qd_pool_t *p;
    int ith;
} worker_arg_t;

static void futex_wait(void *addr, unsigned expect)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(void *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Round i of a bounded spin begun at t0 by thread ith: prefetch a piece
 * of its hint, or pause; 0 once the spin budget is spent (the clock is
 * read every 64 rounds). Both waits, the workers' for the next phase and
 * the caller's for the workers, are loops of these. */
static int spin_round(qd_pool_t *p, int ith, pf_cursor_t *pc, int i, long t0)
{
    if (!pf_step(p, ith, pc))
        cpu_relax();
    return (i & 63) != 0 || now_ns() - t0 <= p->spin_ns;
}

/* Spin until *v != old or the budget runs out; returns the last value. */
static unsigned spin_while_eq(qd_pool_t *p, int ith, pf_cursor_t *pc,
                              _Atomic unsigned *v, unsigned old)
{
    unsigned x = atomic_load_explicit(v, memory_order_acquire);
    if (x != old || p->spin_ns <= 0)
        return x;
    long t0 = now_ns();
    for (int i = 1;; i++) {
        int more = spin_round(p, ith, pc, i, t0);
        x = atomic_load_explicit(v, memory_order_acquire);
        if (x != old || !more)
            return x;
    }
}

static void *worker_main(void *v)
{
    worker_arg_t wa = *(worker_arg_t *)v;
    qd_free(v);
    qd_pool_t *p = wa.p;
    unsigned seen = 0; /* gen starts at 0; a run may precede our start */
    pf_cursor_t pc = {0};
    for (;;) {
        unsigned g = spin_while_eq(p, wa.ith, &pc, &p->gen, seen);
        while (g == seen && !atomic_load(&p->stop)) {
            atomic_fetch_add(&p->n_sleeping, 1); /* seq_cst: pairs with gen */
            if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->n_sleeping, 1);
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (atomic_load(&p->stop))
            break;
        seen = g;
        p->fn(p->arg, wa.ith, p->n_threads);
        if (atomic_fetch_add(&p->n_done, 1) + 1 == p->n_threads - 1 &&
            atomic_load(&p->caller_sleeping))
            futex_wake(&p->n_done, 1);
    }
    return NULL;
}

int qd_pool_create(int n_threads, qd_pool_t **out)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024) {
        qd_set_errmsg("thread count %d out of range 1..1024", n_threads);
        return QD_EINVAL;
    }
    qd_pool_t *p = qd_calloc(1, sizeof *p);
    if (!p)
        return QD_ENOMEM;
    p->n_threads = n_threads;
    p->spin_ns = SPIN_NS_DEFAULT;
    const char *e = getenv("QD_POOL_SPIN_US");
    if (e && *e) {
        char *end = NULL;
        long us = strtol(e, &end, 10);
        if (end && *end == '\0' && us >= 0 && us <= 1000000)
            p->spin_ns = us * 1000;
    }
    if (n_threads > 1) {
        p->threads = qd_calloc((size_t)n_threads - 1, sizeof(pthread_t));
        p->hint_p = qd_calloc((size_t)n_threads, sizeof *p->hint_p);
        p->hint_n = qd_calloc((size_t)n_threads, sizeof *p->hint_n);
        if (!p->threads || !p->hint_p || !p->hint_n)
            goto err;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg_t *wa = qd_malloc(sizeof *wa);
        if (!wa)
            goto err_threads;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            qd_free(wa);
            goto err_threads;
        }
        continue;
    err_threads:
        p->n_threads = i; /* join only those started */
        qd_pool_destroy(p);
        return QD_ENOMEM;
    }
    *out = p;
    return 0;
err:
    qd_free(p->threads);
    qd_free(p->hint_p);
    qd_free(p->hint_n);
    qd_free(p);
    return QD_ENOMEM;
}

void qd_pool_destroy(qd_pool_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen, INT_MAX);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    qd_free(p->threads);
    qd_free(p->hint_p);
    qd_free(p->hint_n);
    qd_free(p);
}

void qd_pool_hint(qd_pool_t *p, int k, const void *const base[], const size_t n[])
{
    if (!p || p->n_threads == 1)
        return;
    for (int i = 0; i < p->n_threads; i++) {
        int on = i < k && base[i];
        atomic_store_explicit(&p->hint_p[i], on ? (uintptr_t)base[i] : 0, memory_order_relaxed);
        atomic_store_explicit(&p->hint_n[i], on ? n[i] : 0, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&p->hint_gen, 1, memory_order_release);
}

int qd_pool_size(const qd_pool_t *p) { return p ? p->n_threads : 1; }

void qd_pool_run(qd_pool_t *p, qd_pool_fn fn, void *arg)
{
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->n_done, 0);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with n_sleeping */
    if (atomic_load(&p->n_sleeping) > 0)
        futex_wake(&p->gen, INT_MAX);
    fn(arg, 0, p->n_threads);
    const int want = p->n_threads - 1;
    int d = atomic_load_explicit(&p->n_done, memory_order_acquire);
    if (d < want && p->spin_ns > 0) {
        long t0 = now_ns();
        for (int i = 1; d < want; i++) {
            int more = spin_round(p, 0, &p->caller_pf, i, t0);
            d = atomic_load_explicit(&p->n_done, memory_order_acquire);
            if (!more)
                break;
        }
    }
    while (d < want) {
        atomic_store(&p->caller_sleeping, 1); /* seq_cst: pairs with n_done */
        d = atomic_load(&p->n_done);
        if (d < want)
            futex_wait(&p->n_done, (unsigned)d);
        atomic_store(&p->caller_sleeping, 0);
        d = atomic_load_explicit(&p->n_done, memory_order_acquire);
    }
}

int qd_physical_cores(void)
{
    /* Count distinct (physical id, core id) pairs in /proc/cpuinfo. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    long n_online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n_online < 1)
        n_online = 1;
    if (!f)
        return (int)n_online;
    char line[256];
    int phys = -1, core = -1, n = 0;
    int seen[1024][2];
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "physical id : %d", &phys) == 1)
            continue;
        if (sscanf(line, "core id : %d", &core) == 1) {
            int dup = 0;
            for (int i = 0; i < n; i++)
                if (seen[i][0] == phys && seen[i][1] == core)
                    dup = 1;
            if (!dup && n < 1024) {
                seen[n][0] = phys;
                seen[n][1] = core;
                n++;
            }
        }
    }
    fclose(f);
    if (n < 1 || n > n_online)
        return (int)n_online;
    return n;
}
