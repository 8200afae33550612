/* dsp_control: Stats over NNG for the admin (common/wh_daemon.h). */
#include "dsp_control.h"

#include "wh_util.h"

static int render_stats(void *arg, wh_buf *text, const char **state, int *ready, char *reason,
                        size_t reasonlen)
{
    /* refused targets deliver nothing, the others deliver: still ready */
    *state = dsp_loop_nrefused(arg) > 0 || dsp_loop_nunhealthy(arg) > 0 ? "degraded" : "running";
    *ready = 1;
    return dsp_loop_metrics(arg, text);
}

int dsp_control_start(wh_control **out, const char *url, dsp_loop *loop, char *err, size_t errlen)
{
    return wh_control_start(out, url, "dispatcher", render_stats, loop, err, errlen);
}
