/* wh_metrics: atomic counters and histograms, Prometheus text rendering. */
#include "wh_metrics.h"
#include "wh_util.h"

#include <inttypes.h>
#include <stdatomic.h>

void wh_counter_add(wh_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t wh_counter_get(const wh_counter *c)
{
    return atomic_load_explicit(&c->v, memory_order_relaxed);
}

void wh_gauge_set(wh_gauge *g, int64_t v)
{
    atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

int64_t wh_gauge_get(const wh_gauge *g)
{
    return atomic_load_explicit(&g->v, memory_order_relaxed);
}

const uint64_t wh_hist_bounds_us[WH_HIST_BUCKETS] = {1000,    2500,    5000,     10000,   25000,
                                                     50000,   100000,  250000,   500000,  1000000,
                                                     2500000, 5000000, 10000000, 60000000};

int wh_hist_bucket_us(uint64_t us)
{
    int i = 0;
    while (i < WH_HIST_BUCKETS && us > wh_hist_bounds_us[i])
        i++;
    return i;
}

void wh_hist_observe_us(wh_histogram *h, uint64_t us)
{
    atomic_fetch_add_explicit(&h->buckets[wh_hist_bucket_us(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void wh_hist_add(wh_histogram *h, const wh_hist_acc *a)
{
    if (a->count == 0)
        return;
    for (int i = 0; i <= WH_HIST_BUCKETS; i++)
        if (a->buckets[i] != 0)
            atomic_fetch_add_explicit(&h->buckets[i], a->buckets[i], memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, a->count, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, a->sum_us, memory_order_relaxed);
}

int wh_metric_header(wh_buf *b, const char *name, const char *type, const char *help)
{
    return wh_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int wh_metric_u64(wh_buf *b, const char *name, const char *labels, uint64_t v)
{
    if (labels != NULL && *labels)
        return wh_buf_printf(b, "%s{%s} %" PRIu64 "\n", name, labels, v);
    return wh_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

int wh_metric_i64(wh_buf *b, const char *name, const char *labels, int64_t v)
{
    if (labels != NULL && *labels)
        return wh_buf_printf(b, "%s{%s} %" PRId64 "\n", name, labels, v);
    return wh_buf_printf(b, "%s %" PRId64 "\n", name, v);
}

int wh_metric_us_as_s(wh_buf *b, const char *name, const char *labels, int64_t us)
{
    const char *sign = us < 0 ? "-" : "";
    uint64_t a = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
    if (labels != NULL && *labels)
        return wh_buf_printf(b, "%s{%s} %s%" PRIu64 ".%06" PRIu64 "\n", name, labels, sign,
                             a / 1000000, a % 1000000);
    return wh_buf_printf(b, "%s %s%" PRIu64 ".%06" PRIu64 "\n", name, sign, a / 1000000,
                         a % 1000000);
}

int wh_metric_hist(wh_buf *b, const char *name, const char *labels, const wh_histogram *h)
{
    const char *sep = (labels != NULL && *labels) ? "," : "";
    const char *lab = labels != NULL ? labels : "";
    uint64_t cum = 0;
    for (int i = 0; i <= WH_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        int rc;
        if (i < WH_HIST_BUCKETS)
            rc = wh_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, lab, sep,
                               (double)wh_hist_bounds_us[i] / 1e6, cum);
        else
            rc = wh_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, lab, sep, cum);
        if (rc != WH_OK)
            return WH_ERR;
    }
    uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    uint64_t cnt = atomic_load_explicit(&h->count, memory_order_relaxed);
    const char *o = (labels != NULL && *labels) ? "{" : "";
    const char *c = (labels != NULL && *labels) ? "}" : "";
    if (wh_buf_printf(b, "%s_sum%s%s%s %.6f\n", name, o, lab, c, (double)sum / 1e6) != WH_OK)
        return WH_ERR;
    return wh_buf_printf(b, "%s_count%s%s%s %" PRIu64 "\n", name, o, lab, c, cnt);
}
