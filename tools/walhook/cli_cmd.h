/* cli_cmd: the small subcommands of `walhook`: help, version, check. */
#ifndef CLI_CMD_H
#define CLI_CMD_H

#include <stdio.h>

void cli_usage(FILE *f);
int cli_cmd_help(int argc, char **argv);
int cli_cmd_version(int argc, char **argv);
/* walhook check -c FILE: 0 when the configuration loads and validates, 2 if not. */
int cli_cmd_check(int argc, char **argv);

#endif
