/* dsp_breaker: circuit breaker and nack window. See dsp_breaker.h. */
#include "dsp_breaker.h"

#include <string.h>

#define BR_DEF_FAILURES 5
#define BR_DEF_RATIO 50
#define BR_DEF_WINDOW 20
#define BR_DEF_COOLDOWN_MS 30000

void dsp_window_init(dsp_window *w, int size)
{
    memset(w, 0, sizeof(*w));
    w->size = size < 1 ? 1 : size > DSP_WINDOW_MAX ? DSP_WINDOW_MAX : size;
}

void dsp_window_clear(dsp_window *w)
{
    dsp_window_init(w, w->size);
}

void dsp_window_push(dsp_window *w, int failed)
{
    uint64_t *word = &w->bits[w->pos / 64];
    uint64_t bit = 1ULL << (w->pos % 64);
    if (w->count == w->size) {
        if (*word & bit)
            w->fails--;
    } else {
        w->count++;
    }
    if (failed) {
        *word |= bit;
        w->fails++;
    } else {
        *word &= ~bit;
    }
    w->pos = (w->pos + 1) % w->size;
}

void dsp_breaker_configure(dsp_breaker *b, int failures, int ratio_pct, int window, int cooldown_ms)
{
    b->failures = failures > 0 ? failures : BR_DEF_FAILURES;
    b->ratio_pct = ratio_pct > 0 ? ratio_pct : BR_DEF_RATIO;
    b->cooldown_ms = cooldown_ms > 0 ? cooldown_ms : BR_DEF_COOLDOWN_MS;
    int w = window > 0 ? window : BR_DEF_WINDOW;
    if (w != b->win.size)
        dsp_window_init(&b->win, w);
}

void dsp_breaker_init(dsp_breaker *b, int failures, int ratio_pct, int window, int cooldown_ms)
{
    memset(b, 0, sizeof(*b));
    dsp_breaker_configure(b, failures, ratio_pct, window, cooldown_ms);
}

static void trip(dsp_breaker *b, uint64_t now_ms)
{
    b->state = DSP_BR_OPEN;
    b->open_until_ms = now_ms + (uint64_t)b->cooldown_ms;
    b->probe_out = 0;
    b->opened++;
}

long dsp_breaker_wait_ms(dsp_breaker *b, uint64_t now_ms)
{
    if (b->state == DSP_BR_OPEN) {
        if (now_ms < b->open_until_ms)
            return (long)(b->open_until_ms - now_ms);
        b->state = DSP_BR_HALF_OPEN;
        b->probe_out = 0;
    }
    if (b->state == DSP_BR_HALF_OPEN && b->probe_out)
        return b->cooldown_ms;
    return 0;
}

void dsp_breaker_on_send(dsp_breaker *b)
{
    if (b->state == DSP_BR_HALF_OPEN)
        b->probe_out = 1;
}

void dsp_breaker_record(dsp_breaker *b, int failed, uint64_t now_ms)
{
    if (b->state == DSP_BR_HALF_OPEN) {
        if (failed) {
            trip(b, now_ms);
        } else {
            b->state = DSP_BR_CLOSED;
            b->probe_out = 0;
            b->consecutive = 0;
            dsp_window_clear(&b->win);
        }
        return;
    }
    if (b->state == DSP_BR_OPEN)
        return; /* a result of a request sent before it opened */
    dsp_window_push(&b->win, failed);
    b->consecutive = failed ? b->consecutive + 1 : 0;
    if (b->consecutive >= b->failures ||
        (b->win.count == b->win.size && b->win.fails * 100 >= b->ratio_pct * b->win.size))
        trip(b, now_ms);
}

const char *dsp_breaker_state_name(dsp_br_state s)
{
    return s == DSP_BR_OPEN ? "open" : s == DSP_BR_HALF_OPEN ? "half-open" : "closed";
}

void dsp_nack_init(dsp_nack *n, int size, int threshold)
{
    dsp_window_init(&n->win, size > 0 ? size : 20);
    n->threshold = threshold > 0 ? threshold : 5;
}

void dsp_nack_record(dsp_nack *n, int failed)
{
    dsp_window_push(&n->win, failed);
}

int dsp_nack_degraded(const dsp_nack *n)
{
    return n->win.fails >= n->threshold;
}
