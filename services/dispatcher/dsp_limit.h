/* dsp_limit: the token buckets of one target (events/s and requests/s,
 * with a burst), issue 8. Loop thread only; no allocation.
 *
 * A request of n events may start when both buckets hold enough tokens: n
 * events (at most the burst: a batch larger than the burst waits for a full
 * bucket and then leaves it in debt, so the average rate holds) and one
 * request. Rate 0 = unlimited. */
#ifndef DSP_LIMIT_H
#define DSP_LIMIT_H

#include <stdint.h>

#include "wh_bucket.h"

typedef struct dsp_limit {
    wh_bucket events, requests;
} dsp_limit;

void dsp_limit_init(dsp_limit *l, int events_per_s, int requests_per_s, int burst, uint64_t now_us);
/* A runtime change of the rates or the burst (wh_bucket_set): the tokens
 * left are kept (at most the new burst). Unchanged values change nothing. */
void dsp_limit_set(dsp_limit *l, int events_per_s, int requests_per_s, int burst, uint64_t now_us);
long dsp_limit_wait_ms(dsp_limit *l, uint32_t nevents, uint64_t now_us);
void dsp_limit_take(dsp_limit *l, uint32_t nevents, uint64_t now_us);

#endif
