/* ing_catalog: what the stream needs from the source's catalog: the primary
 * key of a REPLICA IDENTITY FULL table for the envelope's `key`
 * (docs/INTERNALS.md "Event identity and envelope"), and the render
 * descriptors of column types that are not built in (ing_types; the cache
 * is owned here and lives as long as the catalog, so cached relations may
 * point into it).
 *
 * The replication connection cannot run queries while it streams, so this
 * module keeps a second, ordinary connection built from the source DSN
 * (without `replication`), opened on first need, kept while the stream
 * runs, closed by ing_catalog_close (the replication connection's
 * disconnect). Each lookup is bounded: connect_timeout 3 s, and the query
 * waits at most ING_CATALOG_TIMEOUT_MS (statement_timeout on the server, a
 * client-side deadline too); after a failed connect no new connection is
 * tried for ING_CATALOG_HOLDOFF_MS, so a source whose catalog connection
 * fails costs the stream one timeout, not one per Relation message. The
 * queries read pg_index, pg_attribute and pg_type, which every role can
 * read: no privilege beyond the replication role's own is needed.
 *
 * Owned by ing_repl, one per source; freed after the replication
 * connection. */
#ifndef ING_CATALOG_H
#define ING_CATALOG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "ing_pgoutput.h"

#define ING_CATALOG_TIMEOUT_MS 3000
#define ING_CATALOG_HOLDOFF_MS 10000
#define ING_TYPES_RETRY_MAX_MS (5 * 60 * 1000)
/* ing_catalog_wait_visible's bound; ing_catalog_mismatch's interval */
#define ING_CATALOG_VISIBLE_MS 2000
#define ING_TYPES_STALE_MS 1000

typedef struct ing_catalog ing_catalog;

int ing_catalog_new(ing_catalog **out, char *err, size_t errlen);
void ing_catalog_free(ing_catalog *c);
/* A new replication stream began (ing_parser_new_connection): the previous
 * connection's relations are gone, so the type descriptors replaced since
 * are freed (ing_types_reclaim). */
void ing_catalog_new_stream(ing_catalog *c);
/* Closes the catalog connection (the next lookup opens one again). */
void ing_catalog_close(ing_catalog *c);

/* The primary key columns of relation oid, in index order, read through a
 * connection to dsn (opened when none is). WH_OK: *n names in *names (owned
 * by the catalog, valid until the next call); *n = 0 when the table has no
 * primary key (or is gone). WH_ERR: the lookup failed (err says why, without
 * the DSN's password). */
int ing_catalog_pk(ing_catalog *c, const char *dsn, uint32_t oid, const char *const **names, int *n,
                   char *err, size_t errlen);

/* Runs sql (one statement, its rows ignored) through the connection to
 * dsn, within the same bounds as a lookup. WH_ERR: err says why (the
 * server's message on one line). */
int ing_catalog_exec(ing_catalog *c, const char *dsn, const char *sql, char *err, size_t errlen);
/* Column types that are not built in (ing_types): sets the render
 * descriptor of each column of the cached relation reloid in p, reading
 * from pg_type (through the catalog connection, as for ing_catalog_pk) the
 * types not read yet on this connection; one query for all of them. WH_ERR
 * (err says why): some could not be read; their columns keep an older
 * descriptor of the type when there is one, else are sent as their text,
 * and ing_catalog_types_due says when to try again. */
int ing_catalog_relation_types(ing_catalog *c, const char *dsn, ing_parser *p, uint32_t reloid,
                               char *err, size_t errlen);
/* 1 when the types of relation reloid failed to resolve and the time to
 * try again has come (ING_CATALOG_HOLDOFF_MS doubling up to
 * ING_TYPES_RETRY_MAX_MS). One compare when nothing waits. */
int ing_catalog_types_due(const ing_catalog *c, uint32_t reloid);

/* A DDL command was decoded (its message, ING_SCHEMA_DDL_PREFIX): every
 * type is read again at its next use, and every cached relation of p with
 * a column whose type is not built in is due (ing_catalog_types_due) at its
 * next change, so the changes after the command render with the shapes
 * the catalog has then. */
void ing_catalog_types_invalidate(ing_catalog *c, const ing_parser *p);

/* A value of type type_oid (a column's type) did not match its descriptor
 * (ing_values_mismatch_take) at now_ms. At most once per
 * ING_TYPES_STALE_MS per type: the type is read again at its next use and
 * the relations of p with a column of it are due (ING_MISMATCH_MARKED).
 * ING_MISMATCH_WARN the first time for the type. */
#define ING_MISMATCH_MARKED 1
#define ING_MISMATCH_WARN 2
int ing_catalog_mismatch(ing_catalog *c, const ing_parser *p, uint32_t type_oid, uint64_t now_ms);
/* The name of a type read (pg_type.typname), or NULL. */
const char *ing_catalog_type_name(const ing_catalog *c, uint32_t type_oid);

/* Waits (ING_CATALOG_VISIBLE_MS at most, querying pg_locks with short
 * pauses) until transaction xid, decoded from the stream, is visible to
 * the catalog connection, so that a lookup made for one of its Relation
 * messages sees its catalog changes. WH_OK at once for xid 0 and for the
 * last xid waited for (found visible, or timed out: one wait per
 * transaction). ING_CATALOG_SYNCREP at once when the transaction's backend
 * waits for synchronous replication (maybe for this ingestor: it is not
 * visible before walhook acknowledges it). WH_ERR: a failed query, or not
 * visible in time (err says which). */
#define ING_CATALOG_SYNCREP 1
int ing_catalog_wait_visible(ing_catalog *c, const char *dsn, uint32_t xid, char *err,
                             size_t errlen);

/* Warnings logged once per relation: returns 1 the first time (oid, what)
 * is seen since the last ing_catalog_warned_reset of that oid, else 0. */
int ing_catalog_warn_once(ing_catalog *c, uint32_t oid, unsigned what);
void ing_catalog_warned_reset(ing_catalog *c, uint32_t oid);
/* Forgets the warnings `what` of oid; 1 when one of them had been given. */
int ing_catalog_warned_clear(ing_catalog *c, uint32_t oid, unsigned what);

/* Shared with ing_repl, ing_snapshot, ing_slot, ing_early: every connection
 * the ingestor opens. Opens a connection to dsn with its settings, less
 * `replication` (set to replication when not NULL) and with, after the DSN's
 * `options`, the session settings that change the text of values (TimeZone
 * UTC, DateStyle ISO, IntervalStyle iso_8601, bytea_output hex,
 * extra_float_digits 3, search_path pg_catalog) and then extra_opts (may be
 * NULL); client_encoding UTF8 as a keyword (the DSN's and PGCLIENTENCODING
 * are ignored). After connecting it checks the settings the server reports
 * and SETs those that differ (PGTZ, PGDATESTYLE in the environment);
 * WH_ERR when one cannot be pinned. application_name app unless the DSN has
 * one; connect_timeout (when not NULL) replaces the DSN's. On WH_ERR *out is
 * NULL and err holds the message on one line ("source.dsn: ..." when the DSN
 * does not parse). Logs once per process when the source database is
 * SQL_ASCII (no conversion to UTF-8). */
int ing_pg_connect(PGconn **out, const char *dsn, const char *replication, const char *extra_opts,
                   const char *app, const char *connect_timeout, char *err, size_t errlen);

#endif
