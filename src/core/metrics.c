/*
 * metrics.c — Prometheus text exposition of counters, gauges, histograms.
 *
 * Histograms keep one count per bucket (not cumulative) so observe() is a
 * single atomic increment; render() accumulates them into Prometheus'
 * cumulative `le` buckets.
 */
#include <math.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/metrics.h"

void qd_hist_init(qd_histogram_t *h, const double *bounds, int n_bounds)
{
    memset(h, 0, sizeof *h);
    if (n_bounds > QD_HIST_MAX_BUCKETS)
        n_bounds = QD_HIST_MAX_BUCKETS;
    h->n_bounds = n_bounds;
    memcpy(h->bounds, bounds, (size_t)n_bounds * sizeof *bounds);
}

void qd_hist_observe(qd_histogram_t *h, double v)
{
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
    if (v > 0 && isfinite(v))
        atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(v * 1e6),
                                  memory_order_relaxed);
}

void qd_hist_render(FILE *f, const qd_histogram_t *h, const char *name,
                    const char *help, const char *labels)
{
    const char *sep = labels && *labels ? "," : "";
    if (!labels)
        labels = "";
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->n_bounds)
            fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                    h->bounds[i], (unsigned long long)cum);
        else
            fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    (unsigned long long)cum);
    }
    const char *lb = *labels ? "{" : "", *rb = *labels ? "}" : "";
    fprintf(f, "%s_sum%s%s%s %.6f\n", name, lb, labels, rb,
            (double)atomic_load(&h->sum_micro) / 1e6);
    fprintf(f, "%s_count%s%s%s %llu\n", name, lb, labels, rb,
            (unsigned long long)atomic_load(&h->n));
}

void qd_metric_render(FILE *f, const char *name, const char *type,
                      const char *help, const char *labels, double value,
                      int header)
{
    if (header)
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    if (labels && *labels)
        fprintf(f, "%s{%s} %.17g\n", name, labels, value);
    else
        fprintf(f, "%s %.17g\n", name, value);
}
