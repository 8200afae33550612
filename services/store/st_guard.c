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

static void set_rate(st_guard *g, double rate, uint64_t now)
{
    if (g->rate == 0 && rate > 0) { /* starts limiting: an empty bucket */
        g->tokens = 0;
        g->tok_us = now;
    }
    g->rate = rate;
    atomic_store(&g->rate_gauge, (int64_t)rate);
}

static int contended(const st_guard *g, uint64_t now)
{
    return g->big_us != 0 && now - g->big_us < ST_GUARD_ACTIVE_US && g->big_t != g->light_t;
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

/* Down by the overshoot m / target: to a half .. an eighth of the rate (of
 * what the others appended in this window when not limiting yet). */
static void rate_down(st_guard *g, uint64_t now, double m, double target)
{
    double span = (double)(now - g->win_us) / 1e6;
    double used = span > 0.01 ? (double)g->win_big / span : 0;
    if (used < g->last_used)
        used = g->last_used; /* early in a window: the last one's */
    double f = target / m;
    f = f > 0.5 ? 0.5 : f < 0.125 ? 0.125 : f;
    if (g->rate == 0) /* starts limiting: it never goes back above what they took */
        g->top = used < ST_GUARD_MIN_RATE ? ST_GUARD_MIN_RATE : used;
    double r = (g->rate > 0 ? g->rate : used) * f;
    set_rate(g, r < ST_GUARD_MIN_RATE ? ST_GUARD_MIN_RATE : r, now);
    g->win_down = 1;
}

/* Closes the window that began at g->win_us: learns the quiet time, or
 * moves the rate up when the light appends kept within the target. */
static void window_close(st_guard *g, uint64_t now)
{
    if (atomic_load(&g->pct) == 0 || g->light_us == 0 || now - g->light_us >= ST_GUARD_ACTIVE_US) {
        set_rate(g, 0, now); /* off, or no light tenant to protect */
    } else if (g->win_max > 0) {
        double m = (double)g->win_max;
        double target = target_us(g);
        if (!contended(g, now))
            g->quiet_us = g->quiet_us > 0 ? g->quiet_us + (m - g->quiet_us) / 8 : m;
        g->low_us = g->low_us == 0 || m < g->low_us ? m : g->low_us + g->low_us / 512;
        if (contended(g, now) && target > 0) {
            if (m > target && !g->win_down)
                rate_down(g, now, m, target);
            else if (m <= target && g->rate > 0) {
                double r = g->rate + g->rate / 32 + ST_GUARD_MIN_RATE;
                set_rate(g, r > g->top ? g->top : r, now);
            }
        }
        atomic_store(&g->quiet_gauge, (int64_t)(g->quiet_us > 0 ? g->quiet_us : g->low_us));
    }
    double span = (double)(now - g->win_us) / 1e6;
    g->last_used = span > 0 ? (double)g->win_big / span : 0;
    g->win_us = now;
    g->win_max = 0;
    g->win_big = 0;
    g->win_down = 0;
}

void st_guard_observe(st_guard *g, uint64_t now, const void *t, int light, uint64_t bytes,
                      uint64_t took_us)
{
    pthread_mutex_lock(&g->mu);
    if (g->win_us == 0)
        g->win_us = now;
    else if (now >= g->win_us + ST_GUARD_WINDOW_US)
        window_close(g, now);
    if (light && t == g->big_t && now - g->big_us < ST_GUARD_ACTIVE_US) {
        /* a flooding tenant's small batch: neither protected nor measured */
    } else if (light) {
        g->light_t = t;
        g->light_us = now;
        if (took_us > g->win_max)
            g->win_max = took_us;
        /* too slow with a flood on: down at once (once a window), not at its end */
        double target = target_us(g);
        if (!g->win_down && target > 0 && (double)took_us > target && contended(g, now))
            rate_down(g, now, (double)took_us, target);
    } else if (t != g->light_t || now - g->light_us >= ST_GUARD_ACTIVE_US) {
        g->big_t = t;
        g->big_us = now;
        g->win_big += bytes;
    }
    pthread_mutex_unlock(&g->mu);
}

int st_guard_admit(st_guard *g, uint64_t now, const void *t, int light, uint64_t bytes,
                   uint32_t *retry_ms)
{
    *retry_ms = 0;
    if (light)
        return 1;
    int ok = 1;
    pthread_mutex_lock(&g->mu);
    if (t != g->light_t || now - g->light_us >= ST_GUARD_ACTIVE_US) {
        g->big_t = t; /* a flood held back is still a flood */
        g->big_us = now;
    }
    if (g->rate > 0 && t != g->light_t && now - g->light_us < ST_GUARD_ACTIVE_US &&
        atomic_load(&g->pct) > 0) {
        double cap = g->rate * ST_GUARD_BURST_US / 1e6;
        g->tokens += (double)(now - g->tok_us) * g->rate / 1e6;
        if (g->tokens > cap)
            g->tokens = cap;
        g->tok_us = now;
        if (g->tokens < 0) { /* the debt of the last one admitted, paid back at the rate */
            double ms = -g->tokens / g->rate * 1000.0 + 1;
            *retry_ms = ms > 60000 ? 60000 : (uint32_t)ms;
            atomic_fetch_add(&g->slowed, 1);
            ok = 0;
        } else {
            g->tokens -= (double)bytes;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ok;
}
