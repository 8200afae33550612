/* dsp_limit: token buckets. See dsp_limit.h. */
#include "dsp_limit.h"

#include <string.h>

static void refill(dsp_bucket *b, uint64_t now_us)
{
    if (now_us > b->last_us) {
        b->tokens += b->rate * (double)(now_us - b->last_us) / 1e6;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
    }
    b->last_us = now_us;
}

void dsp_bucket_init(dsp_bucket *b, double rate, double burst, uint64_t now_us)
{
    memset(b, 0, sizeof(*b));
    b->rate = rate > 0 ? rate : 0;
    b->burst = burst > 0 ? burst : (rate >= 1 ? rate : 1);
    b->tokens = b->burst;
    b->last_us = now_us;
}

long dsp_bucket_wait_ms(dsp_bucket *b, double n, uint64_t now_us)
{
    if (b->rate <= 0)
        return 0;
    refill(b, now_us);
    if (n > b->burst)
        n = b->burst;
    if (b->tokens >= n)
        return 0;
    double ms = (n - b->tokens) * 1000.0 / b->rate;
    return ms < 1 ? 1 : (long)(ms + 0.999);
}

void dsp_bucket_take(dsp_bucket *b, double n, uint64_t now_us)
{
    if (b->rate <= 0)
        return;
    refill(b, now_us);
    b->tokens -= n;
}

void dsp_limit_init(dsp_limit *l, int events_per_s, int requests_per_s, int burst, uint64_t now_us)
{
    dsp_bucket_init(&l->events, events_per_s, burst, now_us);
    dsp_bucket_init(&l->requests, requests_per_s, burst, now_us);
}

long dsp_limit_wait_ms(dsp_limit *l, uint32_t nevents, uint64_t now_us)
{
    long a = dsp_bucket_wait_ms(&l->events, nevents, now_us);
    long b = dsp_bucket_wait_ms(&l->requests, 1, now_us);
    return a > b ? a : b;
}

void dsp_limit_take(dsp_limit *l, uint32_t nevents, uint64_t now_us)
{
    dsp_bucket_take(&l->events, nevents, now_us);
    dsp_bucket_take(&l->requests, 1, now_us);
}
