/* cli_setup: `walhook setup --print-sql` prints the least-privilege SQL for a
 * source (DSN, tables, role, publication, slot) without connecting, and
 * `walhook setup --check` runs the preflight (common/wh_pgcheck). */
#ifndef CLI_SETUP_H
#define CLI_SETUP_H

int cli_cmd_setup(int argc, char **argv);

#endif
