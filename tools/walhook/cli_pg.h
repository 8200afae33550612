/* cli_pg: preflight of the source database before `walhook up` starts
 * anything (common/wh_pgcheck: privileges, wal_level, WAL senders, slot,
 * publication), reported on stderr with the SQL that fixes each problem. */
#ifndef CLI_PG_H
#define CLI_PG_H

#include <stddef.h>

#include "wh_config.h"

/* WH_OK when the source of cfg is ready for walhook; else WH_ERR after
 * printing every problem and its fix on stderr (never the password). */
int cli_pg_preflight(const wh_config *cfg, const char *prog);

#endif
