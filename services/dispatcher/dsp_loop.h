/* dsp_loop: the dispatcher's single event-loop thread driving one libcurl
 * multi handle (curl_multi_perform + curl_multi_poll, woken with
 * curl_multi_wakeup by the targets' store readers) with every target in
 * parallel, capped at dispatcher.max_inflight concurrent requests.
 *
 * Stop: dsp_loop_stop() or wh_stop_requested. Then no new request starts;
 * requests in flight get up to DSP_DRAIN_MS to finish (a 2xx is still
 * committed), the rest are abandoned without a commit; readers send their
 * last commit and exit. */
#ifndef DSP_LOOP_H
#define DSP_LOOP_H

#include "dsp_target.h"
#include "wh_buf.h"
#include "wh_config.h"

#define DSP_DRAIN_MS 3000

typedef struct dsp_loop dsp_loop;

/* Builds every target of cfg and starts their store readers. A target that
 * fails its setup (dsp_target_init) is refused on its own: logged, counted
 * in walhook_target_config_errors_total{target}, never posted to, and the
 * other targets go on. Fails only for what concerns every target. */
int dsp_loop_create(dsp_loop **out, const wh_config *cfg, char *err, size_t errlen);
/* Runs on the calling thread until stopped; returns WH_OK after draining. */
/* Runs until dsp_loop_stop() or a stop signal; SIGHUP re-reads cfg_path. */
int dsp_loop_run(dsp_loop *l, const char *cfg_path);
/* Thread-safe; wakes the loop. */
void dsp_loop_stop(dsp_loop *l);
/* Thread-safe: appends the dispatcher's Prometheus metrics to out. */
int dsp_loop_metrics(dsp_loop *l, wh_buf *out);
/* Stops the readers (final commits) and frees everything. */
void dsp_loop_destroy(dsp_loop *l);

/* Targets refused at setup (the dispatcher's state is "degraded" then). */
int dsp_loop_nrefused(const dsp_loop *l);

/* For tests: number of targets and access to one. */
int dsp_loop_ntargets(const dsp_loop *l);
dsp_target *dsp_loop_target(dsp_loop *l, int i);

#endif
