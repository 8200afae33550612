/* ing_repl: the libpq logical replication connection (pgoutput v1).
 *
 * Connects with replication=database and the session options
 * TimeZone=UTC, DateStyle=ISO, bytea_output=hex; creates the publication and
 * the slot when missing and source.create_slot is set; refuses an invalidated
 * slot (wal_status = lost); streams with START_REPLICATION; decodes each
 * change into the batcher; answers keepalives; sends standby status updates
 * whose flush is the LSN the store confirmed; reconnects with backoff. At a
 * Relation message of a REPLICA IDENTITY FULL table it reads the table's
 * primary key (the envelope key) on a second connection (ing_catalog),
 * closed with the replication connection. A transaction with a replication
 * origin carries it on its events, and one whose origin is listed in
 * source.skip_origins is dropped (ing_origin). */
#ifndef ING_REPL_H
#define ING_REPL_H

#include <libpq-fe.h>

#include <stddef.h>

#include "ing_batch.h"
#include "ing_stats.h"
#include "wh_config.h"

/* Runtime source changes (ing_state.c): `changed` is a cheap check called
 * on every turn of the stream loop (it also serves SIGHUP); `take` copies
 * the new source (dsn, slot, publication, tables, create_slot) into cfg. */
typedef struct ing_source_watch {
    int (*changed)(void *arg);
    void (*take)(void *arg, wh_config *cfg);
    /* 1 when transactions of replication origin `name` are skipped: the
       source.skip_origins in force (a runtime setting); any thread */
    int (*skip_origin)(void *arg, const char *name);
    void *arg;
} ing_source_watch;

/* Runs until wh_stop_requested (WH_OK, after draining and a final status
 * update). Every failure is retried in this process: transient ones
 * (connection lost, slot still held by our previous run) with the reconnect
 * backoff in state connecting; permanent ones (a privilege revoked, the
 * publication dropped, the slot invalidated or gone, another system or
 * timeline, an undecodable message) in state error with the cause as the
 * Stats reason, every 1 s doubling to ingestor.reconnect_max_ms. A source
 * that is wrong from the start is refused before this by the ingestor's
 * preflight (wh_pgcheck, exit 1). A changed source (sw, may be NULL) drains
 * what was received, confirms it to the old source, and connects to the new
 * one from scratch. WH_ERR only when it cannot start (err says why).
 * first (may be NULL) is an open replication connection to cfg's source
 * (ing_early), taken over: the first attempt uses it instead of connecting. */
int ing_repl_run(const wh_config *cfg, ing_batcher *bt, ing_stats *st, const ing_source_watch *sw,
                 PGconn *first, char *err, size_t errlen);

#endif
