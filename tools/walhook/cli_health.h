/* cli_health: `walhook health --daemon X` (exit 0/1: the probe of every
 * container, no curl needed) and `walhook status` (each daemon's state and
 * the cause when it is not ready, from its control endpoint). */
#ifndef CLI_HEALTH_H
#define CLI_HEALTH_H

int cli_cmd_health(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);

#endif
