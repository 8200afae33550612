/* wh_bucket: a token bucket (rate per second, a burst, debt allowed), the
 * dispatcher's per-target limits (dsp_limit) and the store's isolation
 * guard (st_guard). Not thread-safe: callers serialise. */
#ifndef WH_BUCKET_H
#define WH_BUCKET_H

#include <stdint.h>

typedef struct wh_bucket {
    double rate;   /* tokens per second; 0 = unlimited */
    double burst;  /* capacity */
    double tokens; /* may go negative (debt) */
    uint64_t last_us;
} wh_bucket;

/* burst 0 = one second's worth (at least 1). Starts full. */
void wh_bucket_init(wh_bucket *b, double rate, double burst, uint64_t now_us);
/* Milliseconds until n tokens are there (0 = now; n = 0: until the bucket
 * holds no debt). */
/* A new rate and burst in place (burst 0 as in wh_bucket_init): the tokens
 * earned at the old rate until now are kept, at most the new burst, so a
 * change neither refills the bucket nor forgives its debt. A bucket that
 * was unlimited starts full, as a new one. */
void wh_bucket_set(wh_bucket *b, double rate, double burst, uint64_t now_us);
long wh_bucket_wait_ms(wh_bucket *b, double n, uint64_t now_us);
void wh_bucket_take(wh_bucket *b, double n, uint64_t now_us);
/* Gives n tokens back (up to the burst). */
void wh_bucket_give(wh_bucket *b, double n);

#endif
