/* cli_cmd: help, version, check. */
#include "cli_cmd.h"

#include <stdlib.h>
#include <string.h>

#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_util.h"

void cli_usage(FILE *f)
{
    fprintf(f,
            "usage: walhook <command> [options]\n"
            "\n"
            "commands:\n"
            "  up [-c FILE] [--source DSN] [--target URL]... [--data DIR]\n"
            "     [--admin HOST:PORT] [--tenant NAME] [--slot NAME] [--publication NAME]\n"
            "     [--tables S.T,...]\n"
            "        check the configuration and the source database (every privilege and\n"
            "        object, each missing one named with its fix), then start and\n"
            "        supervise walhook-store, -ingestor, -dispatcher and -admin\n"
            "  setup --print-sql [--source DSN] [--tables S.T,...] [--role NAME]\n"
            "        the least-privilege SQL for the source; `setup --check` runs the preflight\n"
            "  health --daemon store|ingestor|dispatcher|admin [-c FILE] [--ready]\n"
            "        container probe: exit 0 when the daemon answers (and is ready), else 1\n"
            "  status [-c FILE]  every daemon's state and the cause when it is not ready\n"
            "  check -c FILE   validate a configuration file (exit 0 ok, 2 bad); warns when\n"
            "                  it holds secrets or names TLS keys that group or others may read\n"
            "  tenants|targets|settings|slots [list|get|add|set|pause|resume|rm|offset ...]\n"
            "     [--admin URL] [--json] [-c FILE] [--tenant T]\n"
            "        the admin REST API (token: WALHOOK_ADMIN_TOKEN or <data_dir>/admin.token);\n"
            "        `walhook targets --help` for details\n"
            "  dlq list|show|replay|purge TARGET ...\n"
            "        the dead letters of a target (same options)\n"
            "  version         print the version\n"
            "  help            this text\n"
            "\n"
            "Settings: built-in defaults < FILE < WALHOOK_* environment < flags.\n");
}

int cli_cmd_help(int argc, char **argv)
{
    cli_usage(stdout);
    return 0;
}

int cli_cmd_version(int argc, char **argv)
{
    printf("walhook %s (revision %s)\n", wh_build_version, wh_build_revision);
    return 0;
}

static void check_warn(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "walhook check: warning: %s\n", msg);
}

int cli_cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else {
            fprintf(stderr, "walhook check: unexpected argument '%s'\n", argv[i]);
            fprintf(stderr, "usage: walhook check -c FILE\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: walhook check -c FILE\n");
        return 2;
    }
    static wh_config c;
    char err[WH_ERRLEN];
    if (wh_config_load(&c, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook check: %s: %s\n", path, err);
        return 2;
    }
    /* the daemons' own rule (a missing directory is created 0700 at start) */
    if (wh_data_dir_prepare(c.data_dir, 0, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook check: %s: %s\n", path, err);
        return 2;
    }
    /* valid, but secrets others may read: said, the exit status stays 0 */
    int warned = wh_config_check_secret_files(&c, path, check_warn, NULL);
    printf("%s: ok (tenant %s, %d target%s, admin on %s)", path, c.tenant, c.ntargets,
           c.ntargets == 1 ? "" : "s", c.admin_listen);
    if (warned > 0)
        printf(", %d warning%s", warned, warned == 1 ? "" : "s");
    putchar('\n');
    return 0;
}
