/* st_guard: the isolation guard (see st_guard.h). */
#include "st_guard.h"

#include <string.h>

void st_guard_init(st_guard *g, int pct)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    atomic_store(&g->pct, pct);
}

void st_guard_destroy(st_guard *g)
{
    pthread_mutex_destroy(&g->mu);
}

void st_guard_set_pct(st_guard *g, int pct)
{
    atomic_store(&g->pct, pct < 0 ? 0 : pct);
}

/* Callers hold g->mu. now as the guard has seen time: threads read the
 * clock before they take the lock, so a later time may come first; an
 * earlier one is taken as the latest seen (no difference goes negative). */
static uint64_t clock_at(st_guard *g, uint64_t now)
{
    if (now < g->now_max)
        return g->now_max;
    g->now_max = now;
    return now;
}

static int recent(uint64_t at, uint64_t now)
{
    return at != 0 && now - at < ST_GUARD_ACTIVE_US;
}

/* The flood entry of tenant t, or NULL. */
static st_guard_flood *flood_of(st_guard *g, const void *t)
{
    for (int i = 0; i < ST_GUARD_FLOODS; i++)
        if (g->floods[i].t == t && g->floods[i].us != 0)
            return &g->floods[i];
    return NULL;
}

/* Tenant t made (or tried) a big append at now: a flood for a second. */
static void flood_note(st_guard *g, const void *t, uint64_t now)
{
    st_guard_flood *f = flood_of(g, t);
    if (f == NULL) { /* a free entry, else the oldest */
        f = &g->floods[0];
        for (int i = 1; i < ST_GUARD_FLOODS && f->us != 0; i++)
            if (g->floods[i].us < f->us)
                f = &g->floods[i];
        f->t = t;
    }
    f->us = now;
}

/* t is the protected tenant: its light append came last, within a second. */
static int is_protected(const st_guard *g, const void *t, uint64_t now)
{
    return t == g->light_t && recent(g->light_us, now);
}

static int is_flood(st_guard *g, const void *t, uint64_t now)
{
    st_guard_flood *f = flood_of(g, t);
    return f != NULL && recent(f->us, now);
}

/* A tenant other than the protected one made a big append in the last
 * second. */
static int contended(st_guard *g, uint64_t now)
{
    for (int i = 0; i < ST_GUARD_FLOODS; i++)
        if (g->floods[i].t != g->light_t && recent(g->floods[i].us, now))
            return 1;
    return 0;
}

static void set_rate(st_guard *g, double rate, uint64_t now)
{
    double burst = rate * ST_GUARD_BURST_US / 1e6;
    if (g->rate == 0 && rate > 0) { /* starts limiting: an empty bucket */
        wh_bucket_init(&g->bucket, rate, burst, now);
        g->bucket.tokens = 0;
    }
    g->bucket.rate = rate;
    g->bucket.burst = burst;
    g->rate = rate;
    atomic_store(&g->rate_gauge, (int64_t)rate);
}

/* The light appends' time to keep within, 0 when none is known or off. */
static double target_us(const st_guard *g)
{
    int pct = atomic_load(&g->pct);
    double ref = g->quiet_us > 0 ? g->quiet_us : g->low_us;
    if (pct == 0 || ref == 0)
        return 0;
    double t = ref * pct / 100.0;
    return t < ref + ST_GUARD_SLACK_US ? ref + ST_GUARD_SLACK_US : t;
}

/* Down by the overshoot m / target: to a half .. an eighth of the rate, or
 * when not limiting yet, of what the floods appended: the larger of this
 * window's bytes/s (once it is 10 ms old) and the last one's (none: not
 * yet, there is nothing to go by). */
static void rate_down(st_guard *g, uint64_t now, double m, double target)
{
    double span = (double)(now - g->win_us) / 1e6;
    double used = span >= 0.01 ? (double)g->win_big / span : 0;
    if (used < g->last_used)
        used = g->last_used;
    if (g->rate == 0 && used == 0)
        return;
    double f = target / m;
    f = f > 0.5 ? 0.5 : f < 0.125 ? 0.125 : f;
    double r = (g->rate > 0 ? g->rate : used) * f;
    set_rate(g, r < ST_GUARD_MIN_RATE ? ST_GUARD_MIN_RATE : r, now);
    g->win_down = 1;
}

/* Closes the window that began at g->win_us: learns the quiet time, moves
 * the rate up when the light appends kept within the target, and stops
 * limiting when there is nothing to protect or nothing to hold back. */
static void window_close(st_guard *g, uint64_t now)
{
    int active = atomic_load(&g->pct) > 0 && recent(g->light_us, now);
    int cont = contended(g, now);
    if (g->win_max > 0) {
        double m = (double)g->win_max;
        if (!cont)
            g->quiet_us = g->quiet_us > 0 ? g->quiet_us + (m - g->quiet_us) / 8 : m;
        g->low_us = g->low_us == 0 || m < g->low_us ? m : g->low_us + g->low_us / 512;
        double target = target_us(g);
        if (active && cont && target > 0) {
            if (m > target && !g->win_down)
                rate_down(g, now, m, target);
            else if (m <= target && g->rate > 0)
                set_rate(g, g->rate + g->rate / 32 + ST_GUARD_MIN_RATE, now);
        }
        atomic_store(&g->quiet_gauge, (int64_t)(g->quiet_us > 0 ? g->quiet_us : g->low_us));
    }
    if (!active || !cont)
        set_rate(g, 0, now);
    double span = (double)(now - g->win_us) / 1e6;
    g->last_used = span > 0 ? (double)g->win_big / span : 0;
    g->win_us = now;
    g->win_max = 0;
    g->win_big = 0;
    g->win_down = 0;
}

void st_guard_observe(st_guard *g, uint64_t now, const void *t, int kind, uint64_t bytes,
                      uint64_t took_us)
{
    pthread_mutex_lock(&g->mu);
    now = clock_at(g, now);
    if (g->win_us == 0)
        g->win_us = now;
    else if (now >= g->win_us + ST_GUARD_WINDOW_US)
        window_close(g, now);
    int protected_t = is_protected(g, t, now);
    if (kind == ST_GUARD_BIG) {
        if (!protected_t) { /* the protected tenant's own are not a flood */
            flood_note(g, t, now);
            g->win_big += bytes;
        }
    } else if (!is_flood(g, t, now)) { /* a flood's small batches count for nothing */
        g->light_t = t;
        g->light_us = now;
        if (kind == ST_GUARD_LIGHT) { /* not queued behind its own big append */
            if (took_us > g->win_max)
                g->win_max = took_us;
            /* too slow with a flood on: down at once (once a window) */
            double target = target_us(g);
            if (!g->win_down && target > 0 && (double)took_us > target && contended(g, now))
                rate_down(g, now, (double)took_us, target);
        }
    }
    pthread_mutex_unlock(&g->mu);
}

int st_guard_admit(st_guard *g, uint64_t now, const void *t, uint64_t bytes, uint32_t *retry_ms,
                   uint64_t *charged)
{
    *retry_ms = 0;
    *charged = 0;
    if (atomic_load(&g->pct) == 0)
        return 1;
    int ok = 1;
    pthread_mutex_lock(&g->mu);
    now = clock_at(g, now);
    int protected_t = is_protected(g, t, now);
    if (!protected_t)
        flood_note(g, t, now); /* a flood held back is still a flood */
    if (g->rate > 0 && !protected_t && recent(g->light_us, now)) {
        /* admitted while the bucket holds no debt, and charged in full */
        long ms = wh_bucket_wait_ms(&g->bucket, 0, now);
        if (ms > 0) {
            *retry_ms = ms > ST_GUARD_RETRY_MAX_MS ? ST_GUARD_RETRY_MAX_MS : (uint32_t)ms;
            atomic_fetch_add(&g->slowed, 1);
            ok = 0;
        } else {
            wh_bucket_take(&g->bucket, (double)bytes, now);
            *charged = bytes;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ok;
}

void st_guard_refund(st_guard *g, uint64_t charged)
{
    pthread_mutex_lock(&g->mu);
    if (g->rate > 0)
        wh_bucket_give(&g->bucket, (double)charged);
    pthread_mutex_unlock(&g->mu);
}
