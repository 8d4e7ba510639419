/*
 * threadpool.c — the compute pool: N-1 persistent workers plus the caller.
 *
 * A forward pass is a chain of short parallel phases (one per matmul or
 * attention step), thousands per second, so the hand-off must be cheap:
 * workers spin on a generation counter for a short while, then sleep on a
 * condition variable. qd_pool_run() bumps the generation, runs thread 0's
 * share itself, then waits until every worker has checked in.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/compute.h"

#define SPIN_ITERS 20000

struct qd_pool {
    int n_threads;
    pthread_t *threads;
    /* Work description; written by the caller before bumping `gen`. */
    qd_pool_fn fn;
    void *arg;
    _Atomic unsigned gen;     /* incremented once per qd_pool_run */
    _Atomic int n_done;       /* workers finished with the current gen */
    _Atomic int stop;
    pthread_mutex_t mu;       /* guards sleeping on cv */
    pthread_cond_t cv;        /* workers wait for a new gen */
    pthread_cond_t done_cv;   /* caller waits for n_done */
    _Atomic int n_sleeping;
    _Atomic int caller_sleeping;
};

typedef struct {
    qd_pool_t *p;
    int ith;
} worker_arg_t;

static void *worker_main(void *v)
{
    worker_arg_t wa = *(worker_arg_t *)v;
    qd_free(v);
    qd_pool_t *p = wa.p;
    unsigned seen = 0; /* gen starts at 0; a run may precede our start */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) ==
                   seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = g;
        p->fn(p->arg, wa.ith, p->n_threads);
        if (atomic_fetch_add(&p->n_done, 1) + 1 ==
                p->n_threads - 1 &&
            atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
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
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (n_threads > 1) {
        p->threads = qd_calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!p->threads)
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
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done_cv);
    qd_free(p);
    return QD_ENOMEM;
}

void qd_pool_destroy(qd_pool_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    qd_free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done_cv);
    qd_free(p);
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
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n_threads);
    int spins = 0;
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) <
           p->n_threads - 1) {
        if (++spins < SPIN_ITERS) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->n_done) < p->n_threads - 1)
            pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
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
