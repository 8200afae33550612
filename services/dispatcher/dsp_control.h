/* dsp_control: the dispatcher's control endpoint (dispatcher.control, NNG
 * rep). Answers Stats with daemon "dispatcher", state "running", ready true
 * and the metrics text; every other request gets an error reply. */
#ifndef DSP_CONTROL_H
#define DSP_CONTROL_H

#include <stddef.h>

#include "dsp_lease.h"
#include "dsp_backlog.h"
#include "dsp_loop.h"
#include "wh_daemon.h"

/* The backlog metrics (dsp_backlog) appended to every Stats reply; set
 * before dsp_control_start, NULL (the default) for none. */
void dsp_control_set_backlog(dsp_backlog *b);

int dsp_control_start(wh_control **out, const char *url, dsp_loop *loop, char *err, size_t errlen);
/* The same, adding the lease metrics of `lease` (dsp_lease_metrics; NULL =
 * none). Stop the endpoint before dsp_lease_stop. */
int dsp_control_start_leased(wh_control **out, const char *url, dsp_loop *loop, dsp_lease *lease,
                             char *err, size_t errlen);

#endif
