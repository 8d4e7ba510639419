/*
 * threadpool.h — the compute pool (core/threadpool.c).
 *
 * Persistent worker threads (each engine context has a pool; N = physical
 * cores by default).
 * qd_pool_run() runs fn on every thread (the caller is thread 0) and
 * returns when all are done, so a forward pass is a sequence of parallel
 * phases with no allocation and no thread creation. Below the engine and
 * the matrix products (quantd/compute.h), beside the loader, which splits
 * its read into memory over a pool.
 */
#ifndef QUANTD_THREADPOOL_H
#define QUANTD_THREADPOOL_H

#include <stddef.h>

typedef struct qd_pool qd_pool_t;

/* Create a pool of n_threads (>= 1; the caller counts as one). */
int qd_pool_create(int n_threads, qd_pool_t **out);
void qd_pool_destroy(qd_pool_t *p);
int qd_pool_size(const qd_pool_t *p);
typedef void (*qd_pool_fn)(void *arg, int ith, int nth);
/* Run fn(arg, ith, nth) on every thread; returns after all finished.
 * Not reentrant: one caller at a time. */
void qd_pool_run(qd_pool_t *p, qd_pool_fn fn, void *arg);
/* Prefetch hints: for thread i < k, base[i], n[i] bytes (NULL: none) is
 * the memory it will read first in a coming phase (the hint stays until
 * replaced, through any phases in between); while a thread spins
 * waiting (for its partners to finish a phase, or for the next one) it
 * prefetches its span into cache; a thread asleep on the futex (or with
 * QD_POOL_SPIN_US=0) does not. Threads from k on get none. Replaces the
 * previous hints. Called by the thread that calls qd_pool_run. Only a
 * hint: prefetches do not fault, results do not change. */
void qd_pool_hint(qd_pool_t *p, int k, const void *const base[], const size_t n[]);
/* Number of physical cores (falls back to online CPUs). */
int qd_physical_cores(void);

#endif /* QUANTD_THREADPOOL_H */
