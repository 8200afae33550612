/* st_guard: the store's isolation guard (store.isolation_target_pct).
 *
 * One WAL and one disk serve every tenant: a tenant flooding the store
 * with big appends makes every sync slower, a light tenant's too, even
 * when the group commit never lets the light appends wait behind the
 * flood's (st_db's slices). The guard keeps a light tenant's appends near
 * what they take when no other tenant floods, by slowing the floods down:
 *
 * - It learns the light appends' quiet time: per window (100 ms) the
 *   slowest light append, averaged over the windows in which no other
 *   tenant made a big append in the last second.
 * - While some tenant makes light appends and another makes big ones, a
 *   light append slower than pct % of the quiet time lowers the rate
 *   (bytes/s) admitted to the other tenants' big appends, at once and once
 *   per window, by its overshoot (to target/time: at least an eighth, at
 *   most a half; the first time, of what they appended in the window). A
 *   window within the target raises the rate by a 32nd plus 64 KiB/s, never
 *   above what they appended when the limiting began. An append over the
 *   rate is refused with "slow down" and a retry delay (as a tenant's write
 *   budget does), so the flooding ingestor's credit window pauses its
 *   source.
 * - With no light append for a second, or pct 0, nothing is limited.
 *
 * A tenant is never slowed down for its own light appends: one tenant
 * alone, light and big batches mixed, is never limited. The light appends
 * of the tenant whose big append came last (within a second) count for
 * nothing: a flood's small batches do not make it the protected tenant.
 * One protected and one flooding tenant are tracked at a time (the last
 * of each), which is what one light tenant beside floods needs. No light append
 * measured alone yet: the quiet time is the lowest window maximum seen
 * (rising slowly), so a store started under a flood still guards.
 * Time is passed in (us) and tenants are opaque pointers compared only,
 * so the logic is tested without a store (test_store_guard). */
#ifndef ST_GUARD_H
#define ST_GUARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define ST_GUARD_WINDOW_US 100000    /* one decision per window */
#define ST_GUARD_ACTIVE_US 1000000   /* a tenant's light/big appends count this long */
#define ST_GUARD_MIN_RATE (64 << 10) /* bytes/s: the lowest rate, and the step up */
#define ST_GUARD_BURST_US 100000     /* the rate's bucket holds this long of it */
#define ST_GUARD_SLACK_US 200        /* a slow light append is at least this much slower */

struct st_guard {
    pthread_mutex_t mu;
    _Atomic int pct; /* store.isolation_target_pct, 0 = off */
    double quiet_us; /* EWMA of quiet windows' slowest light append (0: none yet) */
    double low_us;   /* lowest window maximum seen, rising slowly (no quiet time yet) */
    const void *light_t, *big_t;
    uint64_t light_us, big_us; /* the last light / big append (of another tenant) */
    uint64_t win_us;           /* this window's start */
    uint64_t win_max;          /* its slowest light append */
    uint64_t win_big;          /* big bytes appended in it, light_t's excepted */
    double last_used; /* the last window's big bytes/s */
    int win_down;              /* the rate went down in this window */
    double rate;               /* bytes/s of other tenants' big appends; 0 = not limiting */
    double top; /* what they appended when the limiting began */
    double tokens;
    uint64_t tok_us;
    _Atomic uint64_t slowed;    /* appends refused */
    _Atomic int64_t rate_gauge; /* rate for metrics (bytes/s, 0 = not limiting) */
    _Atomic int64_t quiet_gauge;
};
typedef struct st_guard st_guard;

void st_guard_init(st_guard *g, int pct);
void st_guard_destroy(st_guard *g);
void st_guard_set_pct(st_guard *g, int pct);
/* An append of tenant t done at now: light or big, its bytes, and the time
 * it took in the store's commit queue (queued, written, woken). */
void st_guard_observe(st_guard *g, uint64_t now, const void *t, int light, uint64_t bytes,
                      uint64_t took_us);
/* 1 when tenant t's append of bytes (light or big) may go now; 0 with
 * *retry_ms when it must wait (charged in full when admitted). */
int st_guard_admit(st_guard *g, uint64_t now, const void *t, int light, uint64_t bytes,
                   uint32_t *retry_ms);

#endif
