/* cli_up: `walhook up`: flags -> WALHOOK_* environment, config check,
 * source preflight, data directory, then the supervisor (cli_sup). */
#ifndef CLI_UP_H
#define CLI_UP_H

/* Returns the process exit code: 0 clean stop, 1 runtime failure, 2 bad
 * usage or configuration. */
int cli_cmd_up(int argc, char **argv);

#endif
