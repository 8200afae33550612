/* walhook-dispatcher [-c walhook.conf]: reads each target's events from the
 * store and POSTs them as webhook batches (see dsp_loop.h, dsp_target.h).
 * The targets of every tenant come from the runtime state (dsp_state.h).
 * With dispatcher.lease_ttl_ms > 0 the targets are shared with other
 * replicas through leases (dsp_lease.h); each replica then has a control
 * endpoint of its own (dispatcher-<id>.sock unless dispatcher.control is
 * set).
 * Teardown: after the loop drained, the state watcher (no more changes),
 * the control endpoint (no more Stats), the backlog poller, the leases (released, so another
 * replica takes over at once), then the loop (stops the store
 * readers after their final commits). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dsp_backlog.h"
#include "dsp_control.h"
#include "dsp_lease.h"
#include "dsp_loop.h"
#include "dsp_state.h"
#include "dsp_target.h"
#include "wh_budget.h"
#include "wh_daemon.h"
#include "wh_util.h"

#define DSP_STORE_WAIT_MS 30000

_Static_assert(DSP_PREFETCH + 1 == WH_BUDGET_DSP_BATCHES_PER_TARGET,
               "the memory budget counts the read-ahead batches of a target");

int main(int argc, char **argv)
{
    static wh_config cfg, loopcfg;
    char err[WH_ERRLEN];
    const char *path = wh_daemon_init(argc, argv, "dispatcher", &cfg);

    /* memory: the plan for the file's targets (the runtime state's are
     * checked by the admin before it adds one, 409) */
    {
        char src[64];
        int64_t limit = wh_budget_limit(&cfg, src, sizeof(src));
        wh_budget b;
        wh_budget_counts n = {0, cfg.ntargets};
        wh_budget_plan_dispatcher(&b, &cfg, &n);
        if (wh_budget_enforce(&b, limit, src) != WH_OK)
            return 2;
    }
    if (cfg.dispatcher_ca_file[0] != '\0' && access(cfg.dispatcher_ca_file, R_OK) != 0) {
        wh_error("setting 'dispatcher.ca_file': cannot read %s: %s", cfg.dispatcher_ca_file,
                 strerror(errno));
        return 2;
    }
    /* the targets come from the runtime state, not from the file */
    loopcfg = cfg;
    loopcfg.ntargets = 0;
    dsp_loop *loop = NULL;
    wh_control *ctl = NULL;
    dsp_state *st = NULL;
    dsp_lease *lease = NULL;
    if (cfg.dispatcher_lease_ttl_ms > 0) {
        char id[DSP_LEASE_OWNER_MAX + 1];
        if (cfg.dispatcher_id[0])
            wh_strlcpy(id, cfg.dispatcher_id, sizeof(id));
        else
            dsp_lease_default_owner(id, sizeof(id));
        if (cfg.dispatcher_control_derived &&
            (size_t)snprintf(cfg.dispatcher_control, sizeof(cfg.dispatcher_control),
                             "ipc://%s/dispatcher-%s.sock", cfg.data_dir,
                             id) >= sizeof(cfg.dispatcher_control)) {
            wh_error("setting 'data_dir': too long for the control endpoint of dispatcher %s", id);
            return 2;
        }
        char adv[WH_URL_MAX];
        if (cfg.dispatcher_advertise[0] != '\0')
            wh_strlcpy(adv, cfg.dispatcher_advertise, sizeof(adv));
        else if (dsp_lease_advertise(adv, sizeof(adv), cfg.dispatcher_control) != WH_OK) {
            wh_warn("setting 'dispatcher.advertise': cannot derive it from %s (no host name): "
                    "the admin will not reach this replica; set it",
                    cfg.dispatcher_control);
            adv[0] = '\0';
        }
        dsp_lease_opts lo = {cfg.store_endpoint,
                             cfg.ipc_timeout_ms,
                             (size_t)cfg.ipc_max_msg_bytes,
                             id,
                             cfg.dispatcher_lease_ttl_ms,
                             adv};
        if (dsp_lease_start(&lease, &lo, err, sizeof(err)) != WH_OK) {
            wh_error("leases: %s", err);
            return 1;
        }
        wh_info("sharing targets with other dispatchers as '%s' (lease TTL %d ms, control "
                "announced as %s)",
                dsp_lease_owner(lease), cfg.dispatcher_lease_ttl_ms, adv[0] ? adv : "(none)");
    }
    if (dsp_loop_create(&loop, &loopcfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        dsp_lease_stop(lease);
        return 2;
    }
    dsp_backlog *backlog = NULL; /* metrics only: a failure is logged, not fatal */
    if (dsp_backlog_start(&backlog, &cfg, err, sizeof(err)) != WH_OK)
        wh_warn("backlog metrics: %s", err);
    dsp_control_set_backlog(backlog);
    if (lease != NULL) {
        dsp_loop_lease_hooks hooks = {dsp_lease_abandoned, dsp_lease_handed, dsp_lease_post_until,
                                      lease};
        dsp_loop_set_lease_hooks(loop, &hooks);
    }
    if (dsp_control_start_leased(&ctl, cfg.dispatcher_control, loop, lease, err, sizeof(err)) !=
        WH_OK) {
        wh_error("control endpoint %s: %s", cfg.dispatcher_control, err);
        dsp_backlog_stop(backlog);
        dsp_lease_stop(lease);
        dsp_loop_destroy(loop);
        return 1;
    }
    /* only now: this process owns its control endpoint (a dispatcher that
     * lost it leaves the running one's pid file alone) */
    wh_daemon_pidfile(&cfg, "dispatcher");
    if (dsp_state_start_leased(&st, &cfg, path, loop, lease, DSP_STORE_WAIT_MS, err, sizeof(err)) !=
        WH_OK) {
        wh_error("runtime state: %s", err);
        wh_control_stop(ctl);
        dsp_backlog_stop(backlog);
        dsp_lease_stop(lease);
        dsp_loop_destroy(loop);
        return 1;
    }
    wh_info("running (store %s, control %s)", cfg.store_endpoint, cfg.dispatcher_control);
    dsp_loop_run(loop);
    wh_info("stopping");
    dsp_state_stop(st); /* unsets the lease's callback into the loop */
    wh_control_stop(ctl);
    dsp_backlog_stop(backlog);
    /* the targets' last commits carry their leases' epochs: before the
     * leases are released */
    dsp_loop_destroy(loop);
    dsp_lease_stop(lease);
    wh_info("stopped");
    return 0;
}
