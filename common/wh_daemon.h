/* wh_daemon: what every daemon does the same way: start-up (arguments,
 * configuration, logging, signals), the Stats control endpoint the admin
 * queries, and the process metrics every daemon exports. */
#ifndef WH_DAEMON_H
#define WH_DAEMON_H

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_ipc.h"

/* Parses argv (-c FILE), loads the configuration (defaults < file <
 * WALHOOK_* env); on error prints "walhook-<daemon>: <message>" to stderr and
 * exits 2. Then names the log lines after `daemon`, sets the log level and
 * installs the signal flags. Returns the config path, or NULL for none. */
const char *wh_daemon_init(int argc, char **argv, const char *daemon, wh_config *cfg);

/* Renders the daemon's metrics (Prometheus text) into text and says its state
 * ("streaming", "running", ...) and readiness; a daemon that is not ready may
 * say why in reason (reasonlen bytes, "" by default), naming the cause: the
 * admin's /readyz shows it. Called on an IPC worker thread. */
typedef int (*wh_stats_fn)(void *arg, wh_buf *text, const char **state, int *ready, char *reason,
                           size_t reasonlen);

/* Fills rep with a StatsReply for `daemon` (process metrics + fn's); *cookie
 * must be released with wh_stats_reply_free() after the reply was packed. */
void wh_stats_reply(Walhook__Reply *rep, void **cookie, const char *daemon, wh_stats_fn fn,
                    void *arg);
void wh_stats_reply_free(void *cookie);

/* A control endpoint that answers Stats (and refuses every other request). */
typedef struct wh_control wh_control;
int wh_control_start(wh_control **out, const char *url, const char *daemon, wh_stats_fn fn,
                     void *arg, char *err, size_t errlen);
void wh_control_stop(wh_control *c);

/* walhook_up{daemon=...} 1 and walhook_peak_rss_bytes{daemon=...}. */
int wh_metric_process(wh_buf *b, const char *daemon);

#endif
