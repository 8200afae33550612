/* wh_pgcheck: what walhook needs from the source database, and the SQL that
 * grants it.
 *
 * wh_pg_preflight connects like the ingestor (replication=database) and
 * checks, naming each missing thing with the statement that fixes it:
 * CONNECT on the database, the REPLICATION attribute, wal_level = logical, a
 * free WAL sender, the slot (exists as a logical pgoutput slot of this
 * database and not invalidated, or can be created: source.create_slot and a
 * free slot), the publication (exists, or can be created: FOR ALL TABLES
 * needs a superuser; FOR TABLE needs CREATE on the database and ownership of
 * every listed table). pgoutput itself needs no SELECT on the published
 * tables (it decodes WAL, it does not read them), so SELECT is not checked.
 * Used by `walhook up` before it starts anything and by walhook-ingestor at
 * start: both exit 1 with the report instead of entering a restart loop.
 *
 * wh_pg_setup_sql renders the least-privilege SQL for a DSN, tables and a
 * role (`walhook setup --print-sql`); it does not connect. Neither ever
 * prints the DSN's password. */
#ifndef WH_PGCHECK_H
#define WH_PGCHECK_H

#include <stddef.h>

#include "wh_buf.h"
#include "wh_config.h"

typedef struct wh_pg_source {
    const char *dsn;
    const char *slot;
    const char *publication;
    const char *tables; /* "" = FOR ALL TABLES, else "schema.table,..." */
    int create;         /* source.create_slot: walhook may create slot/publication */
} wh_pg_source;

/* The source of c (its source.* settings; pointers into c). */
wh_pg_source wh_pg_source_of(const wh_config *c);

/* WH_OK when everything is in place. WH_ERR otherwise: report gets one
 * entry per problem ("  - what is missing\n    fix (as WHO): SQL\n"), err
 * a one-line summary naming the first problem. */
int wh_pg_preflight(const wh_pg_source *src, wh_buf *report, char *err, size_t errlen);

/* The same checks on conn, an open replication connection (replication =
 * database) to src->dsn that stays open and idle for its caller. With conn
 * NULL and conn_err set (libpq's message of such a connection that failed),
 * the failure is named from conn_err without connecting again (a plain
 * connection is still tried when the REPLICATION attribute is what is
 * missing, to name the rest); with both NULL, as wh_pg_preflight. */
struct pg_conn;
int wh_pg_preflight_conn(const wh_pg_source *src, struct pg_conn *conn, const char *conn_err,
                         wh_buf *report, char *err, size_t errlen);

/* The SQL that sets up `role` (default: the DSN's user) for src. */
int wh_pg_setup_sql(const wh_pg_source *src, const char *role, wh_buf *out, char *err,
                    size_t errlen);

/* Quotes an SQL identifier only when needed (lower-case letters, digits,
 * '_', not starting with a digit stay bare). */
int wh_pg_ident(wh_buf *out, const char *name);

#endif
