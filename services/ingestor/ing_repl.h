/* ing_repl: the libpq logical replication connection (pgoutput v1).
 *
 * Connects with replication=database and the session options
 * TimeZone=UTC, DateStyle=ISO, bytea_output=hex; creates the publication and
 * the slot when missing and source.create_slot is set; refuses an invalidated
 * slot (wal_status = lost); streams with START_REPLICATION; decodes each
 * change into the batcher; answers keepalives; sends standby status updates
 * whose flush is the LSN the store confirmed; reconnects with backoff. */
#ifndef ING_REPL_H
#define ING_REPL_H

#include <stddef.h>

#include "ing_batch.h"
#include "ing_stats.h"
#include "wh_config.h"

/* Runs until wh_stop_requested (WH_OK, after draining and a final status
 * update) or a fatal error (WH_ERR with the reason in err): the first
 * connection failing, a missing or invalidated slot, an undecodable
 * message. SIGHUP re-reads cfg_path (may be NULL) and applies the runtime
 * flush and window settings. */
int ing_repl_run(const wh_config *cfg, const char *cfg_path, ing_batcher *bt, ing_stats *st,
                 char *err, size_t errlen);

#endif
