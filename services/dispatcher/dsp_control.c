/* dsp_control: Stats over NNG for the admin (common/wh_daemon.h). */
#include "dsp_control.h"

#include "wh_util.h"

typedef struct ctl_arg {
    dsp_loop *loop;
    dsp_lease *lease; /* NULL without leases */
} ctl_arg;

static ctl_arg the_arg; /* one control endpoint per process */

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
    const ctl_arg *a = arg;
    *state =
        dsp_loop_nrefused(a->loop) > 0 || dsp_loop_nunhealthy(a->loop) > 0 ? "degraded" : "running";
    *ready = 1;
    if (dsp_loop_metrics(a->loop, text) != WH_OK || dsp_backlog_render(backlog_src, text) != WH_OK)
        return WH_ERR;
    if (a->lease && dsp_lease_metrics(a->lease, text) != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(text);
}

int dsp_control_start(wh_control **out, const char *url, dsp_loop *loop, char *err, size_t errlen)
{
    return dsp_control_start_leased(out, url, loop, NULL, err, errlen);
}

int dsp_control_start_leased(wh_control **out, const char *url, dsp_loop *loop, dsp_lease *lease,
                             char *err, size_t errlen)
{
    the_arg.loop = loop;
    the_arg.lease = lease;
    return wh_control_start(out, url, "dispatcher", render_stats, &the_arg, err, errlen);
}
