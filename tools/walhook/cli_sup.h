/* cli_sup: starts the four daemons in order and supervises them.
 *
 * Start: walhook-store, wait until its endpoint answers Stats, then
 * walhook-ingestor, walhook-dispatcher, walhook-admin (each with -c FILE when
 * given). Children run in their own process group (a terminal's Ctrl-C
 * reaches only the supervisor, which then stops them in order) and get
 * SIGTERM if the supervisor dies. A thread watches each child until it is
 * ready (store, ingestor, dispatcher: `ready` in their Stats reply; admin:
 * its HTTP port accepts connections) and the supervisor logs "walhook-X (pid
 * N) is ready". A child that dies is restarted at once when it had become
 * ready, and at once the first time it dies before becoming ready; each
 * further death before readiness doubles the delay from 250 ms up to 10 s;
 * readiness resets it. Stop (SIGTERM/SIGINT): ingestor, then dispatcher and
 * admin, then the store; SIGTERM, then SIGKILL after the daemons' own
 * shutdown deadline plus 5 s. */
#ifndef CLI_SUP_H
#define CLI_SUP_H

#include <stddef.h>
#include <sys/types.h>

/* Environment variable naming the walhook up (pid) that started a daemon. */
#define CLI_SUP_ENV "WH_WALHOOK_UP"

typedef struct cli_sup_opts {
    const char *bindir;             /* directory holding the walhook-* binaries */
    const char *config_path;        /* passed as -c to every child, or NULL */
    const char *store_endpoint;     /* to wait for the store, and its readiness */
    const char *ingestor_control;   /* readiness of the ingestor */
    const char *dispatcher_control; /* readiness of the dispatcher */
    const char *admin_listen;       /* host:port: readiness of the admin */
    size_t max_msg;
    int store_wait_ms; /* how long the store may take to answer */
} cli_sup_opts;

/* Runs until a stop signal; returns the exit code (0, 1 on a startup
 * failure, 2 when every daemon keeps exiting 2: bad configuration). */
int cli_sup_run(const cli_sup_opts *o);

/* When a child counts as having been ready (its restart backoff starts
 * over; cli_sup_next_delay's was_ready). A daemon with a readiness probe:
 * the probe got an answer on its endpoint AND it has been up
 * CLI_SUP_STABLE_MS, since the answer may come from another process on the
 * endpoint (another instance, a leftover) while this child fails to bind it
 * and dies: a failure before readiness, not a ready daemon restarted at
 * once. A child without a probe (a tenant's ingestor, cli_tenants.c): up
 * CLI_SUP_STABLE_UNPROBED_MS. */
#define CLI_SUP_STABLE_MS 1000
#define CLI_SUP_STABLE_UNPROBED_MS 10000

/* Restart delay of a daemon that died: *failures counts its deaths in a row
 * before it became ready. was_ready resets it; then 0 ms for the first such
 * death, 250 ms for the second, doubling up to 10000 ms. Updates *failures. */
int cli_sup_next_delay(int *failures, int was_ready);

/* Prepares a child forked by walhook up (see cli_sup.c). */
void cli_sup_child_setup(pid_t parent);

/* Describes a wait status: "exited with code 3", "killed by signal 9 (Killed)". */
void cli_sup_describe(int status, char *buf, size_t len);

#endif
