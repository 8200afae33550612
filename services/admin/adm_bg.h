/* adm_bg: work that a request waits for until a deadline, each task on a
 * thread of its own. A task still running at the deadline is not waited
 * for: the request goes on with what the others returned, and the task
 * finishes by itself (everything it calls is bounded: IPC timeouts) into
 * memory it shares with the request, freed by whichever of them is last.
 * So a daemon that does not answer (stopped by SIGSTOP, hung) costs a
 * request at most its deadline, whatever the calls behind it wait for.
 *
 * Teardown: adm_bg_drain before freeing what the tasks use (the backend,
 * the Stats clients). */
#ifndef ADM_BG_H
#define ADM_BG_H

#include <stdint.h>

typedef struct adm_bg adm_bg;

/* fn(ctx, i) is task i. */
typedef void (*adm_bg_fn)(void *ctx, int i);

/* Starts tasks 0..n-1 (n <= ADM_BG_MAX), each on a detached thread (here,
 * at once, when no thread can be started). ctx becomes the group's: it is
 * freed with ctx_free (may be NULL) when the request has released the group
 * and no task runs. NULL (out of memory): nothing started, ctx is still the
 * caller's. */
#define ADM_BG_MAX 8
adm_bg *adm_bg_start(void *ctx, void (*ctx_free)(void *ctx), adm_bg_fn fn, int n);
/* Waits until every task returned or until deadline_ms (wh_now_ms's
 * clock), whichever comes first. done[i] is 1 for a task that returned:
 * what it wrote to ctx is the caller's to read (and take) until it
 * releases the group; the others' parts of ctx must not be touched. Returns
 * how many returned. */
int adm_bg_wait(adm_bg *g, uint64_t deadline_ms, int done[ADM_BG_MAX]);
/* The request is done with the group (ctx is freed now when no task
 * runs, else by the last one). */
void adm_bg_release(adm_bg *g);
/* Waits up to timeout_ms until no task of any group runs. 1 when none
 * runs, 0 when some still do. */
int adm_bg_drain(int timeout_ms);

#endif
