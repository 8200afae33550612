/* wh_daemon: what every daemon does the same way: start-up (arguments,
 * configuration, logging, signals, umask, data directory, shutdown
 * deadline, pid file), the Stats control endpoint the admin and `walhook up`
 * query, and the process metrics every daemon exports. */
#ifndef WH_DAEMON_H
#define WH_DAEMON_H

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_ipc.h"

#include <sched.h>

/* After a stop was requested a daemon has this long to finish; then the
 * shutdown watchdog logs it and _exit()s. Everything a daemon acknowledged is
 * already durable (synced), so cutting a stuck teardown short loses nothing;
 * `walhook up` waits longer (cli_sup) before it sends SIGKILL. */
#define WH_SHUTDOWN_DEADLINE_MS 5000
/* the bound of a Stats reply's reason (why a daemon is not ready), kept
 * whole by the admin's /readyz and status page and by `walhook status` */
#define WH_REASON_LEN 1024
/* malloc: blocks below this come from the heap and are reused (see
 * wh_daemon_init); free heap tops above WH_TRIM_THRESHOLD are returned. */
#define WH_MMAP_THRESHOLD (4 * 1024 * 1024)
#define WH_TRIM_THRESHOLD (4 * 1024 * 1024)

/* Parses argv (-c FILE), loads the configuration (defaults < file <
 * WALHOOK_* env); on error prints "walhook-<daemon>: <message>" to stderr and
 * exits 2. Sets the umask to 077 (files 0600, directories 0700), creates the
 * data directory 0700 or refuses it (exit 2, wh_data_dir_prepare) when group
 * or others may access it. Then names the log lines after `daemon`, sets the
 * log level, applies cpu_scheduling (wh_daemon_sched; a refusal is logged)
 * and cpu_affinity (wh_daemon_affinity; a refusal exits 2), installs the signal flags and starts
 * the shutdown watchdog (wh_shutdown_watchdog_start, WH_SHUTDOWN_DEADLINE_MS). Returns the config
 * path, or NULL for none. */
const char *wh_daemon_init(int argc, char **argv, const char *daemon, wh_config *cfg);

/* cpu_scheduling for this daemon ("store", "ingestor", ...): SCHED_BATCH
 * with "batch", and with "auto" for every daemon but the store; SCHED_OTHER
 * otherwise. Sets the calling thread's policy, so every thread created
 * afterwards inherits it (pthread's default); needs no privilege. A policy
 * other than those two that the daemon was started with (FIFO, RR, IDLE)
 * is kept, with a log line. A SCHED_BATCH thread that wakes while its CPU
 * runs another task does not preempt it: it waits for that task to sleep
 * or for the next scheduler tick. wh_daemon_init calls it before the
 * daemon starts any thread. */
int wh_daemon_sched(const wh_config *cfg, const char *daemon, char *err, size_t errlen);

/* Parses a CPU list: items separated by ',', each a CPU number or a range
 * "a-b" (a <= b), numbers below CPU_SETSIZE, spaces around items allowed
 * ("1", "0-1,3"). Fills set; on WH_ERR err names the item and what is wrong
 * with it. */
int wh_cpulist_parse(const char *s, cpu_set_t *set, char *err, size_t errlen);

/* cpu_affinity: "" leaves the CPUs the process was started with; a CPU list
 * confines the calling thread to those CPUs (sched_setaffinity), so every
 * thread created afterwards is confined too. No privilege needed. WH_ERR
 * (err names the setting, the list and the CPUs this process may use) when
 * none of them is one it may use. wh_daemon_init calls it before the
 * daemon starts any thread. Why: with the daemons on one CPU every hand-off
 * between their threads is a wake-up on the same CPU, and PostgreSQL keeps
 * the others (INTERNALS "CPU placement"). */
int wh_daemon_affinity(const wh_config *cfg, char *err, size_t errlen);

/* Starts a detached thread that waits for wh_stop_requested, then gives the
 * process deadline_ms to exit by itself; past that it logs that the shutdown
 * was cut short and calls _exit(1). */
int wh_shutdown_watchdog_start(int deadline_ms, char *err, size_t errlen);

/* Writes <data_dir>/<daemon>.pid (this process's pid) and removes it at exit
 * when it still names this process. `walhook up` reads these files to find
 * daemons of a previous instance still running on the data directory. A
 * failure is logged, not fatal. */
void wh_daemon_pidfile(const wh_config *cfg, const char *daemon);

/* Sends a Stats request on c: on WH_OK *rep is a reply carrying a StatsReply
 * (free it with walhook__reply__free_unpacked(*rep, NULL)). Used by the admin
 * (every daemon's metrics and readiness) and by `walhook up` (readiness). */
int wh_stats_call(wh_client *c, Walhook__Reply **rep, char *err, size_t errlen);

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

/* Every daemon's own samples, labelled daemon="...": walhook_up 1,
 * walhook_peak_rss_bytes, walhook_build_info{version,revision} 1 and the
 * standard process metrics (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds,
 * process_start_time_seconds) read from /proc and getrusage. */
int wh_metric_process(wh_buf *b, const char *daemon);

/* The VERSION file and the git revision at build time (Makefile). */
extern const char wh_build_version[];
extern const char wh_build_revision[];

/* Applies ipc.tls_* (wh_ipc_tls_set); wh_daemon_init calls it. */
void wh_ipc_tls_configure(const wh_config *cfg);

#endif
