/* wh_metrics: counters, gauges and histograms rendered in the Prometheus text
 * format. Counters/gauges are atomics, safe to update from any thread. */
#ifndef WH_METRICS_H
#define WH_METRICS_H

#include <stdint.h>
#include "wh_buf.h"

typedef struct wh_counter {
    _Atomic uint64_t v;
} wh_counter;
typedef struct wh_gauge {
    _Atomic int64_t v;
} wh_gauge;

#define WH_HIST_BUCKETS 14
typedef struct wh_histogram {
    _Atomic uint64_t buckets[WH_HIST_BUCKETS + 1]; /* last = +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} wh_histogram;
/* Bucket upper bounds in microseconds: 1 ms .. 60 s (rendered in seconds) */
extern const uint64_t wh_hist_bounds_us[WH_HIST_BUCKETS];

void wh_counter_add(wh_counter *c, uint64_t n);
uint64_t wh_counter_get(const wh_counter *c);
void wh_gauge_set(wh_gauge *g, int64_t v);
int64_t wh_gauge_get(const wh_gauge *g);
void wh_hist_observe_us(wh_histogram *h, uint64_t us);
/* Observations gathered without atomics (one thread), then added to a
 * histogram at once: for many per batch (a batch's events), one atomic add
 * per bucket used instead of three per observation. Zero it first. */
typedef struct wh_hist_acc {
    uint64_t buckets[WH_HIST_BUCKETS + 1];
    uint64_t count, sum_us;
} wh_hist_acc;
/* The bucket of an observation of us microseconds (WH_HIST_BUCKETS: +Inf). */
int wh_hist_bucket_us(uint64_t us);
static inline void wh_hist_acc_add(wh_hist_acc *a, uint64_t us)
{
    a->buckets[wh_hist_bucket_us(us)]++;
    a->count++;
    a->sum_us += us;
}
void wh_hist_add(wh_histogram *h, const wh_hist_acc *a);

/* Renders "# HELP/# TYPE" headers and samples. `labels` is "" or
 * 'target="a"'. Write the HELP/TYPE header once per metric name with
 * wh_metric_header(). */
int wh_metric_header(wh_buf *b, const char *name, const char *type, const char *help);
int wh_metric_u64(wh_buf *b, const char *name, const char *labels, uint64_t v);
int wh_metric_i64(wh_buf *b, const char *name, const char *labels, int64_t v);
/* A time given in microseconds, rendered in seconds with six decimals. */
int wh_metric_us_as_s(wh_buf *b, const char *name, const char *labels, int64_t us);
int wh_metric_hist(wh_buf *b, const char *name, const char *labels, const wh_histogram *h);

#endif
