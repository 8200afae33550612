/* cli_tenants: `walhook up` runs one ingestor per tenant of the runtime
 * state. The file's tenant is the supervisor's own "ingestor" child
 * (cli_sup.c); this module runs the others (walhook-ingestor -c FILE
 * --tenant NAME): after the store answers it fetches the state
 * (wh_state_fetch) and then polls it once a second, starting an ingestor
 * for a tenant that appears and stopping the one of a tenant that is gone.
 * A child that dies is restarted with the supervisor's backoff.
 *
 * The supervisor reaps every child (waitpid(-1)); it hands the pids it does
 * not know to cli_tenants_reaped. */
#ifndef CLI_TENANTS_H
#define CLI_TENANTS_H

#include <sys/types.h>

typedef struct cli_tenants cli_tenants;

/* Loads the configuration (as the children will) and opens a store client. */
int cli_tenants_start(cli_tenants **out, const char *bindir, const char *config_path);
/* Polls the state (at most once a second) and starts/stops/restarts. */
void cli_tenants_tick(cli_tenants *t);
/* 1 when pid was one of ours (status is recorded), else 0. */
int cli_tenants_reaped(cli_tenants *t, pid_t pid, int status);
/* 1 unless the state is known and no longer holds the file's tenant (its
 * ingestor then stops for good). */
int cli_tenants_default_wanted(const cli_tenants *t);
/* Sends sig to every running child (SIGHUP forwarding). */
void cli_tenants_signal(cli_tenants *t, int sig);
/* SIGTERM to every child, up to 10 s, then SIGKILL; frees t. */
void cli_tenants_stop(cli_tenants *t);

#endif
