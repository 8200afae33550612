/* dsp_control: Stats over NNG for the admin (common/wh_daemon.h). */
#include "dsp_control.h"

#include "wh_util.h"

/* one dispatcher per process: set once before the endpoint starts */
static dsp_backlog *backlog_src;

void dsp_control_set_backlog(dsp_backlog *b)
{
    backlog_src = b;
}

static int render_stats(void *arg, wh_buf *text, const char **state, int *ready, char *reason,
                        size_t reasonlen)
{
    /* refused targets deliver nothing, the others deliver: still ready */
    *state = dsp_loop_nrefused(arg) > 0 ? "degraded" : "running";
    *ready = 1;
    if (dsp_loop_metrics(arg, text) != WH_OK || dsp_backlog_render(backlog_src, text) != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(text);
}

int dsp_control_start(wh_control **out, const char *url, dsp_loop *loop, char *err, size_t errlen)
{
    return wh_control_start(out, url, "dispatcher", render_stats, loop, err, errlen);
}
