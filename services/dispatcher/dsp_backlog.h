/* dsp_backlog: per target, how far delivery is behind, for the metrics
 * walhook_target_backlog_events{tenant,target} and
 * walhook_target_oldest_undelivered_age_seconds{tenant,target}.
 *
 * A thread of its own with its own store client: every DSP_BACKLOG_EVERY_MS
 * it fetches the runtime state (the targets of every tenant) and asks the
 * store (Backlog request) how many events lie after each target's committed
 * offset (counted up to DSP_BACKLOG_MAX) and when the first of them was
 * committed. Rendering reads the last results under a mutex; the age is
 * computed at render time, so it keeps growing while delivery is stuck.
 * Teardown: dsp_backlog_stop joins the thread, then frees. */
#ifndef DSP_BACKLOG_H
#define DSP_BACKLOG_H

#include <stddef.h>

#include "wh_buf.h"
#include "wh_config.h"

#define DSP_BACKLOG_EVERY_MS 5000
#define DSP_BACKLOG_MAX 1000000

typedef struct dsp_backlog dsp_backlog;

int dsp_backlog_start(dsp_backlog **out, const wh_config *cfg, char *err, size_t errlen);
/* Appends the two metrics (Prometheus text). NULL renders nothing. */
int dsp_backlog_render(dsp_backlog *b, wh_buf *out);
void dsp_backlog_stop(dsp_backlog *b);

#endif
