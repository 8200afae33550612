/* cli_pg: preflight of the source database before `walhook up` starts
 * anything: a replication=database connection must succeed and wal_level
 * must be logical. */
#ifndef CLI_PG_H
#define CLI_PG_H

#include <stddef.h>

/* WH_OK when the source is reachable with replication=database and
 * wal_level = logical; else WH_ERR with a message (never the password). */
int cli_pg_preflight(const char *dsn, char *err, size_t errlen);

#endif
