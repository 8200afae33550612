/* ing_early: the source's connection and preflight, begun at start.
 *
 * At start the ingestor waits for the store (its runtime state), opens its
 * batcher and control endpoints, and only then needs PostgreSQL. The
 * replication connection (a backend forked, authenticated, its catalog
 * caches warmed) and the preflight (wh_pgcheck) need only the source's
 * settings, which the configuration file already has: ing_early_start does
 * both in a thread meanwhile, the preflight on that same connection (one
 * connection, not two). ing_early_preflight hands them over when the runtime
 * state's source is the one the thread used; otherwise (the source was
 * changed at runtime) the connection is closed and the caller checks and
 * connects as without it.
 *
 * Teardown: ing_early_preflight joins the thread; ing_early_free closes a
 * connection not taken, and without a take does not wait for a thread
 * still connecting: it detaches it, and the thread frees what it holds
 * when its attempt ends. */
#ifndef ING_EARLY_H
#define ING_EARLY_H

#include <libpq-fe.h>
#include <stddef.h>

#include "wh_buf.h"
#include "wh_config.h"

typedef struct ing_early ing_early;

/* Starts the thread for c's source (copied). WH_ERR (err says why) when it
 * cannot: the caller goes on without it. */
int ing_early_start(ing_early **out, const wh_config *c, char *err, size_t errlen);

/* The preflight of c's source (wh_pg_preflight: WH_ERR with err and report,
 * one entry per problem, filled). When e (may be NULL) checked the same
 * source (ing_state_source_differs), its result, after waiting for the
 * thread, and *conn its open replication connection (the caller's from now
 * on; NULL when the preflight failed). Otherwise e's connection is closed at
 * once and c's source is checked on a connection of its own (*conn NULL). */
int ing_early_preflight(ing_early *e, const wh_config *c, PGconn **conn, wh_buf *report, char *err,
                        size_t errlen);

/* Closes what was not taken and frees; a thread still running (no
 * ing_early_preflight) is left to finish and free itself. NULL ok. */
void ing_early_free(ing_early *e);

#endif
