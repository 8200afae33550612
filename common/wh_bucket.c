/* wh_bucket: a token bucket. See wh_bucket.h. */
#include "wh_bucket.h"

#include <string.h>

static void refill(wh_bucket *b, uint64_t now_us)
{
    if (now_us > b->last_us) {
        b->tokens += b->rate * (double)(now_us - b->last_us) / 1e6;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
    }
    b->last_us = now_us;
}

void wh_bucket_init(wh_bucket *b, double rate, double burst, uint64_t now_us)
{
    memset(b, 0, sizeof(*b));
    b->rate = rate > 0 ? rate : 0;
    b->burst = burst > 0 ? burst : (rate >= 1 ? rate : 1);
    b->tokens = b->burst;
    b->last_us = now_us;
}

void wh_bucket_set(wh_bucket *b, double rate, double burst, uint64_t now_us)
{
    if (b->rate <= 0) {
        /* its tokens were never counted while unlimited */
        wh_bucket_init(b, rate, burst, now_us);
        return;
    }
    refill(b, now_us);
    b->rate = rate > 0 ? rate : 0;
    b->burst = burst > 0 ? burst : (rate >= 1 ? rate : 1);
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

long wh_bucket_wait_ms(wh_bucket *b, double n, uint64_t now_us)
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

void wh_bucket_take(wh_bucket *b, double n, uint64_t now_us)
{
    if (b->rate <= 0)
        return;
    refill(b, now_us);
    b->tokens -= n;
}

void wh_bucket_give(wh_bucket *b, double n)
{
    b->tokens += n;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}
