/* walhook: the command that starts and supervises the walhook daemons. */
#include <stdio.h>
#include <string.h>

#include "cli_api.h"
#include "cli_cmd.h"
#include "cli_health.h"
#include "cli_setup.h"
#include "cli_up.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "up") == 0)
        return cli_cmd_up(argc - 1, argv + 1);
    if (strcmp(cmd, "tenants") == 0 || strcmp(cmd, "targets") == 0 ||
        strcmp(cmd, "settings") == 0 || strcmp(cmd, "slots") == 0 || strcmp(cmd, "dlq") == 0)
        return cli_cmd_api(argc - 1, argv + 1);
    if (strcmp(cmd, "setup") == 0)
        return cli_cmd_setup(argc - 1, argv + 1);
    if (strcmp(cmd, "health") == 0)
        return cli_cmd_health(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cli_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cli_cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cli_cmd_version(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return cli_cmd_help(argc - 1, argv + 1);
    fprintf(stderr, "walhook: unknown command '%s'\n", cmd);
    cli_usage(stderr);
    return 2;
}
