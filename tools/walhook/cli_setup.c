/* cli_setup: least-privilege SQL and the source preflight on demand. */
#include "cli_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_pg.h"
#include "wh_config.h"
#include "wh_pgcheck.h"
#include "wh_util.h"

static void setup_usage(FILE *f)
{
    fprintf(f, "usage: walhook setup --print-sql [-c FILE] [--source DSN] [--tables S.T,...]\n"
               "                     [--role NAME] [--publication NAME] [--slot NAME]\n"
               "       walhook setup --check [-c FILE] [--source DSN] [--tables S.T,...] ...\n"
               "  --print-sql  the SQL that sets up a least-privilege role (no connection made;\n"
               "               the role defaults to the DSN's user)\n"
               "  --check      connect and name every missing privilege or object with its fix\n"
               "               (exit 0 ready, 1 not)\n");
}

int cli_cmd_setup(int argc, char **argv)
{
    const char *path = NULL, *role = NULL;
    int print = 0, check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--print-sql")) {
            print = 1;
        } else if (!strcmp(a, "--check")) {
            check = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            setup_usage(stdout);
            return 0;
        } else if (v && (!strcmp(a, "-c") || !strcmp(a, "--config"))) {
            path = v;
            i++;
        } else if (v && !strcmp(a, "--source")) {
            setenv("WALHOOK_SOURCE_DSN", v, 1);
            i++;
        } else if (v && !strcmp(a, "--tables")) {
            setenv("WALHOOK_SOURCE_TABLES", v, 1);
            i++;
        } else if (v && !strcmp(a, "--publication")) {
            setenv("WALHOOK_SOURCE_PUBLICATION", v, 1);
            i++;
        } else if (v && !strcmp(a, "--slot")) {
            setenv("WALHOOK_SOURCE_SLOT", v, 1);
            i++;
        } else if (v && !strcmp(a, "--role")) {
            role = v;
            i++;
        } else {
            fprintf(stderr, "walhook setup: unexpected argument '%s'\n", a);
            setup_usage(stderr);
            return 2;
        }
    }
    if (print == check) {
        setup_usage(stderr);
        return 2;
    }
    static wh_config c;
    char err[WH_ERRLEN];
    if (wh_config_load(&c, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook setup: bad configuration: %s\n", err);
        return 2;
    }
    if (!c.source_dsn[0]) {
        fprintf(stderr, "walhook setup: source.dsn is not set (use --source or -c FILE)\n");
        return 2;
    }
    if (check) {
        if (cli_pg_preflight(&c, "walhook setup") != WH_OK)
            return 1;
        printf("the source is ready for walhook (slot %s, publication %s)\n", c.slot,
               c.publication);
        return 0;
    }
    wh_pg_source src = wh_pg_source_of(&c);
    wh_buf out;
    wh_buf_init(&out, 1 << 20);
    int rc = wh_pg_setup_sql(&src, role, &out, err, sizeof(err));
    if (rc == WH_OK && wh_buf_cstr(&out) == WH_OK)
        fputs(out.data, stdout);
    else
        fprintf(stderr, "walhook setup: %s\n", err);
    wh_buf_free(&out);
    return rc == WH_OK ? 0 : 2;
}
