/* dsp_state: the dispatcher's side of the runtime state (docs/CONTROL.md).
 *
 * A wh_state_watch polls the store; on each new version its apply (on the
 * watcher thread) turns the targets of EVERY tenant into dsp_specs (a
 * target's delivery settings inherit the dispatcher.* runtime settings when
 * 0) and hands them to dsp_loop_set_targets; the loop reconciles on its own
 * thread. SIGHUP (on the loop thread) re-reads the file through the same
 * path: wh_state_watch_reload_file stores it as the next version, a bad file
 * is refused by name and the running version stays.
 *
 * Teardown: dsp_state_stop before dsp_loop_destroy. */
#ifndef DSP_STATE_H
#define DSP_STATE_H

#include <stddef.h>

#include "dsp_lease.h"
#include "dsp_loop.h"
#include "wh_state.h"

typedef struct dsp_state dsp_state;

/* Starts the watcher (waits up to wait_ms for the store) and applies the
 * current state once. cfg_path is the file SIGHUP re-reads (may be NULL). */
int dsp_state_start(dsp_state **out, const wh_config *base, const char *cfg_path, dsp_loop *loop,
                    int wait_ms, char *err, size_t errlen);
/* The same with leases (dsp_lease.h; NULL = none): every target is offered
 * to the lease module, and only those this replica holds go to the loop,
 * each with its lease epoch; a change of the held set re-applies. */
int dsp_state_start_leased(dsp_state **out, const wh_config *base, const char *cfg_path,
                           dsp_loop *loop, struct dsp_lease *lease, int wait_ms, char *err,
                           size_t errlen);
void dsp_state_stop(dsp_state *ds);

/* The specs of every target of every tenant of s; eff supplies the
 * dispatcher.* defaults. *out is malloc'd (NULL when *n == 0). */
int dsp_state_specs(const wh_state *s, const wh_config *eff, dsp_spec **out, int *n, char *err,
                    size_t errlen);

#endif
