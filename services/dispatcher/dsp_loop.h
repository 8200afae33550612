/* dsp_loop: the dispatcher's single event-loop thread driving one libcurl
 * multi handle with curl_multi_socket_action over epoll and curl's timer
 * (the model is curl's docs/examples/ephiperfifo.c): curl names the sockets
 * to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); the targets' store readers wake the loop
 * through an eventfd. Every target in parallel, capped at
 * dispatcher.max_inflight concurrent requests; HTTP/1.1 keep-alive, and
 * HTTP/2 multiplexing where a TLS target negotiates it.
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

#define DSP_MAX_REFUSED 64
/* A target refused at setup or at a change (metrics, state "degraded"). */
typedef struct dsp_refused {
    char tenant[WH_NAME_MAX];
    char name[WH_NAME_MAX];
    uint64_t count; /* refusals so far */
    int current;    /* refused in the list applied last */
} dsp_refused;

/* Builds the targets of cfg (tenant cfg->tenant; none is fine: the loop
 * idles until targets arrive through dsp_loop_set_targets) and starts their
 * store readers. */
int dsp_loop_create(dsp_loop **out, const wh_config *cfg, char *err, size_t errlen);
/* Runs on the calling thread until dsp_loop_stop() or a stop signal;
 * returns WH_OK after draining. SIGHUP calls the function set with
 * dsp_loop_on_reload (on the loop thread). */
int dsp_loop_run(dsp_loop *l);
void dsp_loop_on_reload(dsp_loop *l, void (*fn)(void *arg), void *arg);
/* The dispatcher's leases as the loop sees them (dsp_lease.h), set before
 * dsp_loop_run; arg is passed to each:
 * - abandoned: requests to a target were abandoned unanswered (the target
 *   stopped here, or the loop is destroyed with them in flight), told on
 *   the thread that abandons them;
 * - handed: a target handed over (dsp_spec.handover) stopped with none
 *   unanswered and its held commit sent, or handed over while none of its
 *   name runs or drains here (never started, or stopped earlier); told on
 *   the loop thread, for the latter with every list applied while the
 *   handover lasts;
 * - post_until: until when (monotonic ms) a request to the target may start
 *   under lease epoch `epoch` (0 or past: none now); asked before a request
 *   starts once the last answer has run out. */
typedef struct dsp_loop_lease_hooks {
    void (*abandoned)(void *arg, const char *tenant, const char *target);
    void (*handed)(void *arg, const char *tenant, const char *target);
    uint64_t (*post_until)(void *arg, const char *tenant, const char *target, uint64_t epoch);
    void *arg;
} dsp_loop_lease_hooks;
void dsp_loop_set_lease_hooks(dsp_loop *l, const dsp_loop_lease_hooks *h);
/* Thread-safe: the complete list of targets of every tenant as of state
 * `version` (copied). The loop reconciles by (tenant, name) on its thread:
 * new ones start, changed ones are swapped between requests, paused ones
 * start no request, missing ones (and ones with another created_version:
 * deleted and created again) stop: what they held back is forgotten, and
 * their requests in flight are let end (answers not applied) before they
 * are destroyed; a target of the same name starts no request before. */
int dsp_loop_set_targets(dsp_loop *l, const dsp_spec *specs, int n, uint64_t version);
/* Version of the target list applied last (0: the file's). */
uint64_t dsp_loop_version(dsp_loop *l);
/* Thread-safe; wakes the loop. */
void dsp_loop_stop(dsp_loop *l);
/* Thread-safe: appends the dispatcher's Prometheus metrics to out. */
int dsp_loop_metrics(dsp_loop *l, wh_buf *out);
/* Stops the readers (final commits) and frees everything. */
void dsp_loop_destroy(dsp_loop *l);

/* Targets refused in the list applied last (the dispatcher's state is
 * "degraded" then). A target whose setup fails (dsp_target_init: the shared
 * wh_target_validate, its secrets, curl) is refused on its own: logged,
 * counted in walhook_target_config_errors_total{tenant,target}, never
 * posted to, and the other targets go on. Thread-safe. */
int dsp_loop_nrefused(dsp_loop *l);
/* Targets whose breaker is open, or that are degraded (nack window),
 * disabled (410) or blocked: the dispatcher's state is "degraded" then.
 * Thread-safe. */
int dsp_loop_nunhealthy(dsp_loop *l);

/* For tests: number of targets and access to one (loop thread or stopped
 * loop). */
int dsp_loop_ntargets(const dsp_loop *l);
dsp_target *dsp_loop_target(dsp_loop *l, int i);
dsp_target *dsp_loop_find(dsp_loop *l, const char *tenant, const char *name);

#endif
