/* cli_pg: source database preflight. */
#include "cli_pg.h"

#include <libpq-fe.h>
#include <string.h>

#include "wh_util.h"

/* libpq messages end with a newline; drop it. */
static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

int cli_pg_preflight(const char *dsn, char *err, size_t errlen)
{
    if (!dsn || !*dsn)
        return wh_seterr(err, errlen, "source.dsn is not set (use --source or WALHOOK_SOURCE_DSN)");
    const char *keys[] = {"dbname", "replication", "connect_timeout", NULL};
    const char *vals[] = {dsn, "database", "10", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn)
        return wh_seterr(err, errlen, "source database: out of memory");
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[400];
        wh_strlcpy(msg, PQerrorMessage(conn), sizeof(msg));
        chomp(msg);
        PQfinish(conn);
        return wh_seterr(err, errlen,
                         "cannot connect to the source database (replication=database): %s", msg);
    }
    PGresult *r = PQexec(conn, "SHOW wal_level");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        char msg[400];
        wh_strlcpy(msg, PQerrorMessage(conn), sizeof(msg));
        chomp(msg);
        PQclear(r);
        PQfinish(conn);
        return wh_seterr(err, errlen, "source database: SHOW wal_level failed: %s", msg);
    }
    char level[64];
    wh_strlcpy(level, PQgetvalue(r, 0, 0), sizeof(level));
    PQclear(r);
    PQfinish(conn);
    if (strcmp(level, "logical") != 0)
        return wh_seterr(err, errlen,
                         "source database has wal_level=%s; walhook needs wal_level=logical "
                         "(ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)",
                         level);
    return WH_OK;
}
