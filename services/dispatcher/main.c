/* walhook-dispatcher [-c walhook.conf]: reads each target's events from the
 * store and POSTs them as webhook batches (see dsp_loop.h, dsp_target.h).
 * The targets of every tenant come from the runtime state (dsp_state.h).
 * Teardown: the state watcher first (no more changes), then the control
 * endpoint (no more Stats), then the loop (stops the store readers after
 * their final commits). */
#include "dsp_backlog.h"
#include "dsp_control.h"
#include "dsp_loop.h"
#include "dsp_state.h"
#include "dsp_target.h"
#include "wh_daemon.h"
#include "wh_util.h"

#define DSP_STORE_WAIT_MS 30000

int main(int argc, char **argv)
{
    static wh_config cfg, loopcfg;
    char err[WH_ERRLEN];
    const char *path = wh_daemon_init(argc, argv, "dispatcher", &cfg);
    wh_daemon_pidfile(&cfg, "dispatcher");

    /* memory: per target the read-ahead batches and the one being posted,
     * each up to batch_max_bytes, plus curl and the process itself */
    int64_t need =
        (int64_t)cfg.ntargets * (DSP_PREFETCH + 1) * cfg.batch_max_bytes + 16 * 1024 * 1024;
    if (cfg.memory_budget_bytes > 0 && need > cfg.memory_budget_bytes) {
        wh_error("memory_budget_bytes (%lld) is below what the dispatcher needs: %d target(s) x "
                 "%d batches x dispatcher.batch_max_bytes (%lld) + 16 MiB = %lld",
                 (long long)cfg.memory_budget_bytes, cfg.ntargets, DSP_PREFETCH + 1,
                 (long long)cfg.batch_max_bytes, (long long)need);
        return 2;
    }
    /* the targets come from the runtime state, not from the file */
    loopcfg = cfg;
    loopcfg.ntargets = 0;
    dsp_loop *loop = NULL;
    wh_control *ctl = NULL;
    dsp_state *st = NULL;
    if (dsp_loop_create(&loop, &loopcfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        return 2;
    }
    dsp_backlog *backlog = NULL; /* metrics only: a failure is logged, not fatal */
    if (dsp_backlog_start(&backlog, &cfg, err, sizeof(err)) != WH_OK)
        wh_warn("backlog metrics: %s", err);
    dsp_control_set_backlog(backlog);
    if (dsp_control_start(&ctl, cfg.dispatcher_control, loop, err, sizeof(err)) != WH_OK) {
        wh_error("control endpoint %s: %s", cfg.dispatcher_control, err);
        dsp_backlog_stop(backlog);
        dsp_loop_destroy(loop);
        return 1;
    }
    if (dsp_state_start(&st, &cfg, path, loop, DSP_STORE_WAIT_MS, err, sizeof(err)) != WH_OK) {
        wh_error("runtime state: %s", err);
        wh_control_stop(ctl);
        dsp_backlog_stop(backlog);
        dsp_loop_destroy(loop);
        return 1;
    }
    wh_info("running (store %s, control %s)", cfg.store_endpoint, cfg.dispatcher_control);
    dsp_loop_run(loop);
    wh_info("stopping");
    dsp_state_stop(st);
    wh_control_stop(ctl);
    dsp_backlog_stop(backlog);
    dsp_loop_destroy(loop);
    wh_info("stopped");
    return 0;
}
