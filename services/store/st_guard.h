/* st_guard: the store's isolation guard (store.isolation_target_pct).
 *
 * One WAL and one disk serve every tenant: a tenant flooding the store
 * with big appends makes every sync slower, a light tenant's too, even
 * when the group commit never lets the light appends wait behind the
 * flood's (st_db's slices). The guard keeps a light tenant's appends near
 * what they take when no other tenant floods, by slowing the floods down:
 *
 * - Light and big are st_db's: an append of at most store.commit_share_
 *   bytes is light. A tenant that made (or tried) a big append in the
 *   last second is a flood, except the protected tenant: the one whose
 *   light append came last (a flood's own light appends count for
 *   nothing). The protected tenant's own big appends are never held back,
 *   and its light appends that queued behind them (st_db knows: one queue
 *   per tenant) are not measured.
 * - It learns the quiet time: per window (100 ms) the slowest light
 *   append's time in the commit queue, averaged (EWMA) over the windows
 *   with no flood. None yet: the lowest window seen, rising slowly, so a
 *   store started under a flood still guards.
 * - The target is pct % of the quiet time, and at least 200 us more.
 *   While floods are on, a light append over it lowers the rate (bytes/s)
 *   admitted to the floods' big appends, at once and once a window, by
 *   its overshoot (to target/time: at least an eighth, at most a half),
 *   never below 64 KiB/s; the first time, it starts from what the floods
 *   appended: the larger of this window's bytes/s (once 10 ms old) and
 *   the last one's (none: it waits for a window that has some). A window
 *   within the target raises the rate by a 32nd plus 64 KiB/s.
 * - A big append over the rate (a bucket of 100 ms of it, shared by the
 *   floods) is refused with a retry delay of at most 500 ms (shorter than
 *   the second a flood is remembered, so a flood that waits is still one
 *   when it comes back), which the store answers "slow down" (as for a
 *   tenant's write budget), so the flooding ingestor waits and its credit
 *   window pauses its source.
 * - When a window closes with no light append, or no flood, in the last
 *   second, or with pct 0, the limiting stops (pct 0 stops it at once).
 *   One tenant alone, light and big batches mixed, is never limited.
 *
 * One quiet time serves every light tenant (the last one measured), and
 * ST_GUARD_FLOODS tenants are tracked as floods (the oldest replaced).
 * Time is passed in (us; read before the lock, so an earlier time than
 * one seen is taken as the latest) and tenants are opaque pointers
 * compared only, so the logic is tested without a store
 * (test_store_guard). */
#ifndef ST_GUARD_H
#define ST_GUARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "wh_bucket.h"

#define ST_GUARD_WINDOW_US 100000    /* one decision per window */
#define ST_GUARD_ACTIVE_US 1000000   /* a tenant's light/big appends count this long */
#define ST_GUARD_MIN_RATE (64 << 10) /* bytes/s: the lowest rate, and the step up */
#define ST_GUARD_BURST_US 100000     /* the rate's bucket holds this long of it */
#define ST_GUARD_SLACK_US 200        /* the target is at least this much over the quiet time */
#define ST_GUARD_RETRY_MAX_MS 500    /* the longest retry delay (< ST_GUARD_ACTIVE_US) */
#define ST_GUARD_FLOODS 8            /* flooding tenants tracked */

typedef struct st_guard_flood {
    const void *t;
    uint64_t us; /* its last big append (or try); 0 = free */
} st_guard_flood;

struct st_guard {
    pthread_mutex_t mu;
    _Atomic int pct;     /* store.isolation_target_pct, 0 = off */
    uint64_t now_max;    /* the latest time seen */
    double quiet_us;     /* EWMA of quiet windows' slowest light append (0: none yet) */
    double low_us;       /* lowest window maximum seen, rising slowly */
    const void *light_t; /* the protected tenant */
    uint64_t light_us;   /* its last light append */
    st_guard_flood floods[ST_GUARD_FLOODS];
    uint64_t win_us;            /* this window's start */
    uint64_t win_max;           /* its slowest measured light append */
    uint64_t win_big;           /* the floods' big bytes appended in it */
    int win_down;               /* the rate went down in it */
    double last_used;           /* the floods' bytes/s in the last window */
    double rate;                /* bytes/s admitted to the floods; 0 = not limiting */
    wh_bucket bucket;           /* at rate, a burst of ST_GUARD_BURST_US of it */
    _Atomic uint64_t slowed;    /* appends refused */
    _Atomic int64_t rate_gauge; /* rate for metrics (bytes/s, 0 = not limiting) */
    _Atomic int64_t quiet_gauge;
};
typedef struct st_guard st_guard;

void st_guard_init(st_guard *g, int pct);
void st_guard_destroy(st_guard *g);
void st_guard_set_pct(st_guard *g, int pct);
/* What an append was, for st_guard_observe. */
enum {
    ST_GUARD_LIGHT,        /* light, measured */
    ST_GUARD_LIGHT_BEHIND, /* light, queued behind its own tenant's big append: not measured */
    ST_GUARD_BIG,
};
/* An append of tenant t done at now: its kind, its bytes, and the time it
 * took in the store's commit queue (queued, written, woken; measured for
 * ST_GUARD_LIGHT only). */
void st_guard_observe(st_guard *g, uint64_t now, const void *t, int kind, uint64_t bytes,
                      uint64_t took_us);
/* For a big append of bytes by tenant t: 1 when it may go now (*charged:
 * what it took from the floods' bucket, 0 when not limited), 0 with
 * *retry_ms when it must wait. */
int st_guard_admit(st_guard *g, uint64_t now, const void *t, uint64_t bytes, uint32_t *retry_ms,
                   uint64_t *charged);
/* Gives back what st_guard_admit charged for an append that was then
 * refused for another reason (the tenant's write budget). */
void st_guard_refund(st_guard *g, uint64_t charged);

#endif
