/* cli_sup: starts the four daemons in order and supervises them.
 *
 * Start: walhook-store, wait until its endpoint answers Stats, then
 * walhook-ingestor, walhook-dispatcher, walhook-admin (each with -c FILE when
 * given). Children run in their own process group (a terminal's Ctrl-C
 * reaches only the supervisor, which then stops them in order) and get
 * SIGTERM if the supervisor dies. A child that dies is restarted after a
 * backoff of 250 ms doubling to 10 s, reset once it stayed up 30 s.
 * Stop (SIGTERM/SIGINT): ingestor, then dispatcher and admin, then the
 * store; SIGTERM, up to 10 s, then SIGKILL. */
#ifndef CLI_SUP_H
#define CLI_SUP_H

#include <stddef.h>

typedef struct cli_sup_opts {
    const char *bindir;         /* directory holding the walhook-* binaries */
    const char *config_path;    /* passed as -c to every child, or NULL */
    const char *store_endpoint; /* to wait for the store */
    size_t max_msg;
    int store_wait_ms; /* how long the store may take to answer */
} cli_sup_opts;

/* Runs until a stop signal; returns the exit code (0, or 1 on a startup
 * failure). */
int cli_sup_run(const cli_sup_opts *o);

/* Next restart delay: returns the delay to use now and updates *backoff_ms
 * (250 -> 10000 doubling; reset to 250 when uptime_ms >= 30000). */
int cli_sup_next_delay(int *backoff_ms, long long uptime_ms);

/* Describes a wait status: "exited with code 3", "killed by signal 9 (Killed)". */
void cli_sup_describe(int status, char *buf, size_t len);

#endif
