/* dsp_breaker: the circuit breaker of one target and the sliding nack window
 * that marks a target degraded (issue 8). Loop thread only; no locks, no
 * allocation.
 *
 * Breaker: CLOSED -> OPEN after `failures` consecutive retryable failures,
 * or when the last `window` attempts hold at least `ratio_pct` % failures
 * (a full window only). OPEN sends nothing for `cooldown_ms`, then
 * HALF_OPEN lets exactly one probe through: its success closes the breaker
 * (window cleared), its failure opens it again for another cool-down.
 * Permanent answers (4xx) say the target is up: they count as successes
 * here; only the nack window counts them.
 *
 * Nack window: the last `size` attempts of any kind; the target is degraded
 * while at least `threshold` of them failed. */
#ifndef DSP_BREAKER_H
#define DSP_BREAKER_H

#include <stdint.h>

#define DSP_WINDOW_MAX 128

/* A ring of the last `size` outcomes (1 = failed). */
typedef struct dsp_window {
    uint64_t bits[DSP_WINDOW_MAX / 64];
    int size, pos, count, fails;
} dsp_window;

void dsp_window_init(dsp_window *w, int size); /* clamped to 1..DSP_WINDOW_MAX */
void dsp_window_push(dsp_window *w, int failed);
void dsp_window_clear(dsp_window *w);

typedef enum { DSP_BR_CLOSED = 0, DSP_BR_OPEN = 1, DSP_BR_HALF_OPEN = 2 } dsp_br_state;

typedef struct dsp_breaker {
    int failures, ratio_pct, cooldown_ms;
    dsp_window win;
    int consecutive;
    dsp_br_state state;
    uint64_t open_until_ms;
    int probe_out;   /* HALF_OPEN: the probe is in flight */
    uint64_t opened; /* times it opened */
} dsp_breaker;

/* 0 arguments take the defaults (5 failures, 50 %, window 20, 30 s). */
void dsp_breaker_init(dsp_breaker *b, int failures, int ratio_pct, int window, int cooldown_ms);
/* New thresholds; the state and the counts are kept (a runtime change). */
void dsp_breaker_configure(dsp_breaker *b, int failures, int ratio_pct, int window,
                           int cooldown_ms);
/* 0 when a request may start now, else milliseconds to wait (OPEN: the rest
 * of the cool-down; HALF_OPEN with the probe out: cooldown_ms, the probe's
 * result decides). OPEN turns HALF_OPEN here once the cool-down passed. */
long dsp_breaker_wait_ms(dsp_breaker *b, uint64_t now_ms);
/* A request starts (in HALF_OPEN it is the probe). */
void dsp_breaker_on_send(dsp_breaker *b);
/* Its result: failed = a retryable failure. */
void dsp_breaker_record(dsp_breaker *b, int failed, uint64_t now_ms);
const char *dsp_breaker_state_name(dsp_br_state s);

typedef struct dsp_nack {
    dsp_window win;
    int threshold;
} dsp_nack;

void dsp_nack_init(dsp_nack *n, int size, int threshold); /* 0: 20, 5 */
void dsp_nack_record(dsp_nack *n, int failed);
int dsp_nack_degraded(const dsp_nack *n);

#endif
