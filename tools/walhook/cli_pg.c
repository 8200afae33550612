/* cli_pg: source database preflight. */
#include "cli_pg.h"

#include <stdio.h>

#include "wh_pgcheck.h"
#include "wh_util.h"

int cli_pg_preflight(const wh_config *cfg, const char *prog)
{
    wh_pg_source src = wh_pg_source_of(cfg);
    wh_buf rep;
    wh_buf_init(&rep, 1 << 20);
    char err[WH_ERRLEN];
    int rc = wh_pg_preflight(&src, &rep, err, sizeof(err));
    if (rc != WH_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        if (rep.len && wh_buf_cstr(&rep) == WH_OK)
            fprintf(stderr, "%s: every problem and its fix:\n%s", prog, rep.data);
    }
    wh_buf_free(&rep);
    return rc;
}
