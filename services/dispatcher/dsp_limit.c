/* dsp_limit: a target's two token buckets (wh_bucket). See dsp_limit.h. */
#include "dsp_limit.h"

void dsp_limit_init(dsp_limit *l, int events_per_s, int requests_per_s, int burst, uint64_t now_us)
{
    wh_bucket_init(&l->events, events_per_s, burst, now_us);
    wh_bucket_init(&l->requests, requests_per_s, burst, now_us);
}

void dsp_limit_set(dsp_limit *l, int events_per_s, int requests_per_s, int burst, uint64_t now_us)
{
    wh_bucket_set(&l->events, events_per_s, burst, now_us);
    wh_bucket_set(&l->requests, requests_per_s, burst, now_us);
}

long dsp_limit_wait_ms(dsp_limit *l, uint32_t nevents, uint64_t now_us)
{
    long a = wh_bucket_wait_ms(&l->events, nevents, now_us);
    long b = wh_bucket_wait_ms(&l->requests, 1, now_us);
    return a > b ? a : b;
}

void dsp_limit_take(dsp_limit *l, uint32_t nevents, uint64_t now_us)
{
    wh_bucket_take(&l->events, nevents, now_us);
    wh_bucket_take(&l->requests, 1, now_us);
}
