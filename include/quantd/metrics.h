/*
 * metrics.h — counters, gauges and histograms rendered as Prometheus text.
 *
 * Metrics are plain structs the owner embeds (no global registry to lock);
 * updates are relaxed atomics so any thread may record. Rendering writes
 * the exposition format (# HELP, # TYPE, samples) to a FILE*, with labels
 * passed by the caller so one definition can be rendered per model.
 */
#ifndef QUANTD_METRICS_H
#define QUANTD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define QD_HIST_MAX_BUCKETS 24

typedef struct {
    int n_bounds;
    double bounds[QD_HIST_MAX_BUCKETS];      /* upper bounds, ascending */
    _Atomic uint64_t counts[QD_HIST_MAX_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t n;
    _Atomic uint64_t sum_micro;              /* sum of values * 1e6 */
} qd_histogram_t;

/* bounds: n_bounds ascending upper bounds (n_bounds <= QD_HIST_MAX_BUCKETS). */
void qd_hist_init(qd_histogram_t *h, const double *bounds, int n_bounds);
void qd_hist_observe(qd_histogram_t *h, double v);
/* Write name_bucket{labels,le=...}, name_sum, name_count with HELP/TYPE
 * lines. labels is "" or 'k="v",k2="v2"' (no braces). */
void qd_hist_render(FILE *f, const qd_histogram_t *h, const char *name,
                    const char *help, const char *labels);

/* A counter or gauge sample with its HELP/TYPE header. type: "counter" or
 * "gauge". Pass header=0 for further samples of the same metric. */
void qd_metric_render(FILE *f, const char *name, const char *type,
                      const char *help, const char *labels, double value,
                      int header);

#endif /* QUANTD_METRICS_H */
