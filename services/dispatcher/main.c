/* walhook-dispatcher [-c walhook.conf]: reads each target's events from the
 * store and POSTs them as webhook batches (see dsp_loop.h, dsp_target.h). */
#include <stdio.h>

#include "dsp_control.h"
#include "dsp_loop.h"
#include "wh_config.h"
#include "wh_util.h"

int main(int argc, char **argv)
{
    const char *path = wh_config_parse_args(argc, argv, "walhook-dispatcher");
    static wh_config cfg;
    char err[WH_ERRLEN];
    if (wh_config_load(&cfg, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook-dispatcher: %s\n", err);
        return 2;
    }
    int lvl = wh_log_level_parse(cfg.log_level);
    wh_log_init("dispatcher", lvl < 0 ? WH_LOG_INFO : lvl);
    wh_signals_install();

    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook-dispatcher: %s\n", err);
        return 2;
    }
    wh_server *ctl = NULL;
    if (dsp_control_start(&ctl, cfg.dispatcher_control, (size_t)cfg.ipc_max_msg_bytes, loop, err,
                          sizeof(err)) != WH_OK) {
        wh_error("control endpoint %s: %s", cfg.dispatcher_control, err);
        dsp_loop_destroy(loop);
        return 1;
    }
    wh_info("running (tenant %s, store %s, control %s)", cfg.tenant, cfg.store_endpoint,
            cfg.dispatcher_control);
    dsp_loop_run(loop);
    wh_info("stopping");
    wh_server_stop(ctl);
    dsp_loop_destroy(loop);
    wh_info("stopped");
    return 0;
}
