/* ing_catalog: primary key lookup on a second, ordinary connection. */
#include "ing_catalog.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <time.h>

#include "ing_types.h"
#include "wh_buf.h"
#include "wh_dsn.h"
#include "wh_pgerr.h"
#include "wh_util.h"

/* Key columns of the primary key index, in index order (INCLUDE columns
 * are not part of the key). */
#define PK_SQL                                                                                     \
    "SELECT a.attname FROM pg_catalog.pg_index i"                                                  \
    " CROSS JOIN LATERAL unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)"    \
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"           \
    " WHERE i.indrelid = $1::pg_catalog.oid AND i.indisprimary AND k.ord <= i.indnkeyatts"         \
    " ORDER BY k.ord"

typedef struct warned {
    uint32_t oid;
    unsigned what;
} warned;

typedef struct pending pending;

/* A type whose values did not match its descriptor (ing_catalog_mismatch). */
typedef struct stale {
    uint32_t oid;
    uint64_t marked_ms; /* when it was last marked to be read again */
    int warned;
} stale;

struct ing_catalog {
    PGconn *conn;
    ing_types *types; /* render descriptors of column types */
    pending *pending; /* relations whose types wait for a retry */
    size_t npending, cappending;
    uint64_t holdoff_until_ms; /* no connect before this after a failed one */
    char **names;
    int nnames;
    warned *warned;
    size_t nwarned, capwarned;
    stale *stale;
    size_t nstale, capstale;
    uint32_t visible_xid; /* the last transaction seen visible (ing_catalog_wait_visible) */
};

int ing_catalog_new(ing_catalog **out, char *err, size_t errlen)
{
    ing_catalog *c = calloc(1, sizeof(*c));
    if (!c || ing_types_new(&c->types, err, errlen) != WH_OK) {
        free(c);
        return wh_seterr(err, errlen, "out of memory");
    }
    *out = c;
    return WH_OK;
}

static void names_clear(ing_catalog *c)
{
    for (int i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    c->names = NULL;
    c->nnames = 0;
}

void ing_catalog_close(ing_catalog *c)
{
    if (c && c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    if (c)
        c->visible_xid = 0;
    /* the next connection may see changed types (ALTER TYPE): read them
     * again at their next Relation message, using the old ones meanwhile */
    if (c)
        ing_types_expire(c->types);
}

void ing_catalog_new_stream(ing_catalog *c)
{
    if (c)
        ing_types_reclaim(c->types);
}

void ing_catalog_free(ing_catalog *c)
{
    if (!c)
        return;
    ing_catalog_close(c);
    names_clear(c);
    ing_types_free(c->types);
    free(c->pending);
    free(c->warned);
    free(c->stale);
    free(c);
}

/* libpq's message about a connection to dsn on one line (wh_pg_oneline),
 * without the DSN's password. */
static void one_line(char *dst, size_t n, const char *dsn, const char *msg)
{
    wh_dsn_scrub(dsn, msg ? msg : "", dst, n);
    wh_pg_oneline(dst, dst, n);
}

/* A failed result: severity, SQLSTATE and, when it cannot quote a value,
 * the message (wh_pgerr_result). */
static void result_line(char *dst, size_t n, const char *dsn, const PGresult *res)
{
    char m[384];
    wh_pgerr_result(res, m, sizeof(m));
    one_line(dst, n, dsn, m);
}

/* The session settings that change the text of values, pinned on every
 * connection the ingestor opens (as `-c` switches after the user's own, so
 * they win over ALTER ROLE/DATABASE and postgresql.conf). client_encoding
 * is a connection keyword (ing_pg_connect), not one of these. */
static const struct {
    const char *name, *value;
    int reported; /* a GUC_REPORT setting: checked after connecting */
} PINS[] = {
    {"TimeZone", "UTC", 1},     {"DateStyle", "ISO", 1},        {"IntervalStyle", "iso_8601", 1},
    {"bytea_output", "hex", 0}, {"extra_float_digits", "3", 0}, {"search_path", "pg_catalog", 0},
};

/* 1 when the server's reported value of setting i is the pinned one. */
static int pin_holds(PGconn *c, size_t i)
{
    const char *v = PQparameterStatus(c, PINS[i].name);
    if (v == NULL)
        return 0;
    if (!strcmp(PINS[i].name, "DateStyle")) /* "ISO, MDY": the order is for input only */
        return !strncmp(v, "ISO,", 4) || !strcmp(v, "ISO");
    return !strcasecmp(v, PINS[i].value);
}

/* One SET on c; WH_ERR with the server's message. */
static int set_one(PGconn *c, const char *dsn, const char *name, const char *value, char *err,
                   size_t errlen)
{
    char sql[128], msg[512];
    snprintf(sql, sizeof(sql), "SET %s = '%s'", name, value);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    result_line(msg, sizeof(msg), dsn, r);
    PQclear(r);
    return ok ? WH_OK : wh_seterr(err, errlen, "cannot set %s: %s", name, msg);
}

/* After connecting: libpq sends PGDATESTYLE and PGTZ from the environment
 * as startup parameters of their own, which the server applies after the
 * `options` switches; SETs what the server reports as different, then
 * checks again. A SQL_ASCII database cannot convert to UTF8 (the server
 * fails on the first byte that is not UTF-8, for good): its values are
 * read as they are (client_encoding SQL_ASCII) and checked by the
 * renderers (wh_json_str, wh_buf_append_utf8). WH_ERR when a setting
 * still differs (err says which). */
static int pins_verify(PGconn *c, const char *dsn, char *err, size_t errlen)
{
    const char *server = PQparameterStatus(c, "server_encoding");
    const char *want = server && !strcasecmp(server, "SQL_ASCII") ? "SQL_ASCII" : "UTF8";
    const char *enc = PQparameterStatus(c, "client_encoding");
    if ((enc == NULL || strcasecmp(enc, want) != 0) &&
        set_one(c, dsn, "client_encoding", want, err, errlen) != WH_OK)
        return WH_ERR;
    enc = PQparameterStatus(c, "client_encoding");
    if (enc == NULL || strcasecmp(enc, want) != 0)
        return wh_seterr(err, errlen, "the connection's client_encoding is %s, not %s",
                         enc ? enc : "unknown", want);
    for (size_t i = 0; i < sizeof(PINS) / sizeof(PINS[0]); i++) {
        if (!PINS[i].reported || pin_holds(c, i))
            continue;
        if (set_one(c, dsn, PINS[i].name, PINS[i].value, err, errlen) != WH_OK)
            return WH_ERR;
        if (!pin_holds(c, i)) {
            const char *v = PQparameterStatus(c, PINS[i].name);
            return wh_seterr(err, errlen, "the connection's %s is %s, not %s", PINS[i].name,
                             v ? v : "unknown", PINS[i].value);
        }
    }
    return WH_OK;
}

/* Once per process: a SQL_ASCII source is not converted to UTF-8. */
static void warn_sql_ascii(PGconn *c)
{
    static int warned;
    const char *enc = PQparameterStatus(c, "server_encoding");
    if (enc == NULL || strcasecmp(enc, "SQL_ASCII") != 0 ||
        __atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        return;
    wh_warn("the source database's encoding is SQL_ASCII: PostgreSQL does not convert its bytes "
            "to UTF-8; bytes of text and json values that are not UTF-8 are sent as U+FFFD "
            "(walhook_ingestor_invalid_utf8_total counts them)");
}

int ing_pg_connect(PGconn **out, const char *dsn, const char *replication, const char *extra_opts,
                   const char *app, const char *connect_timeout, char *err, size_t errlen)
{
    *out = NULL;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (!opts) {
        char why[WH_ERRLEN];
        PQfreemem(perr); /* it may quote the DSN */
        wh_pgerr_dsn_check(dsn, why, sizeof(why));
        return wh_seterr(err, errlen, "source.dsn: %s", why);
    }
    const char *kw[64], *val[64];
    int n = 0;
    const char *user_opts = NULL, *user_app = NULL;
    for (PQconninfoOption *o = opts; o->keyword && n < 58; o++) {
        if (!o->val || !strcmp(o->keyword, "replication") ||
            !strcmp(o->keyword, "client_encoding") ||
            (connect_timeout && !strcmp(o->keyword, "connect_timeout")))
            continue;
        if (!strcmp(o->keyword, "options")) {
            user_opts = o->val;
            continue;
        }
        if (!strcmp(o->keyword, "application_name"))
            user_app = o->val;
        kw[n] = o->keyword;
        val[n++] = o->val;
    }
    /* the user's options first, walhook's pins after them (the last -c of
     * a setting wins); no size limit */
    wh_buf options;
    wh_buf_init(&options, 0);
    int rc = user_opts ? wh_buf_printf(&options, "%s ", user_opts) : WH_OK;
    for (size_t i = 0; rc == WH_OK && i < sizeof(PINS) / sizeof(PINS[0]); i++)
        rc = wh_buf_printf(&options, "-c %s=%s ", PINS[i].name, PINS[i].value);
    if (rc == WH_OK && extra_opts)
        rc = wh_buf_puts(&options, extra_opts);
    if (rc != WH_OK || wh_buf_cstr(&options) != WH_OK) {
        wh_buf_free(&options);
        PQconninfoFree(opts);
        return wh_seterr(err, errlen, "out of memory");
    }
    if (replication) {
        kw[n] = "replication";
        val[n++] = replication;
    }
    kw[n] = "options";
    val[n++] = options.data;
    /* a keyword: neither PGCLIENTENCODING nor the DSN can change it (but
     * SQL_ASCII, see pins_verify) */
    kw[n] = "client_encoding";
    val[n++] = "UTF8";
    if (connect_timeout) {
        kw[n] = "connect_timeout";
        val[n++] = connect_timeout;
    }
    if (!user_app) {
        kw[n] = "application_name";
        val[n++] = app;
    }
    kw[n] = NULL;
    val[n] = NULL;
    PGconn *c = PQconnectdbParams(kw, val, 0);
    PQconninfoFree(opts);
    wh_buf_free(&options);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        one_line(msg, sizeof(msg), dsn, c ? PQerrorMessage(c) : "out of memory");
        if (c)
            PQfinish(c);
        return wh_seterr(err, errlen, "%s", msg);
    }
    if (pins_verify(c, dsn, err, errlen) != WH_OK) {
        PQfinish(c);
        return WH_ERR;
    }
    warn_sql_ascii(c);
    *out = c;
    return WH_OK;
}

static int cat_connect(ing_catalog *c, const char *dsn, char *err, size_t errlen)
{
    uint64_t now = wh_now_ms();
    if (now < c->holdoff_until_ms)
        return wh_seterr(err, errlen,
                         "catalog connection failed less than %d s ago; not retried yet",
                         ING_CATALOG_HOLDOFF_MS / 1000);
    char opts[128], msg[400];
    snprintf(opts, sizeof(opts), "-c statement_timeout=%d -c lock_timeout=%d",
             ING_CATALOG_TIMEOUT_MS, ING_CATALOG_TIMEOUT_MS);
    if (ing_pg_connect(&c->conn, dsn, NULL, opts, "walhook-ingestor-catalog", "3", msg,
                       sizeof(msg)) != WH_OK) {
        c->holdoff_until_ms = wh_now_ms() + ING_CATALOG_HOLDOFF_MS;
        return wh_seterr(err, errlen, "catalog connection failed: %s", msg);
    }
    return WH_OK;
}

/* Waits for the query's result until the deadline; NULL on timeout or a
 * lost connection (err set). */
static PGresult *wait_result(ing_catalog *c, const char *dsn, uint64_t deadline, char *err,
                             size_t errlen)
{
    while (PQisBusy(c->conn)) {
        uint64_t now = wh_now_ms();
        int sock = PQsocket(c->conn);
        if (now >= deadline || sock < 0 || sock >= FD_SETSIZE) {
            wh_seterr(err, errlen, "catalog query: no answer within %d ms",
                      ING_CATALOG_TIMEOUT_MS + 1000);
            return NULL;
        }
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(sock, &rd);
        uint64_t left = deadline - now;
        struct timeval tv = {.tv_sec = (time_t)(left / 1000),
                             .tv_usec = (suseconds_t)(left % 1000) * 1000};
        if (select(sock + 1, &rd, NULL, NULL, &tv) < 0 && errno != EINTR) {
            wh_seterr(err, errlen, "catalog query: select failed");
            return NULL;
        }
        if (!PQconsumeInput(c->conn)) {
            char msg[384];
            one_line(msg, sizeof(msg), dsn, PQerrorMessage(c->conn));
            wh_seterr(err, errlen, "catalog query: %s", msg);
            return NULL;
        }
    }
    return PQgetResult(c->conn);
}

/* Runs sql with text parameters on the catalog connection (opened when
 * none is). WH_OK: *out is the result of a query that returned rows
 * (PQclear it). WH_ERR: err says why; a lost or silent connection is
 * closed. */
static int run_query(ing_catalog *c, const char *dsn, const char *sql, int nparams,
                     const char *const *params, PGresult **out, char *err, size_t errlen)
{
    *out = NULL;
    if (c->conn && PQstatus(c->conn) != CONNECTION_OK)
        ing_catalog_close(c);
    if (!c->conn && cat_connect(c, dsn, err, errlen) != WH_OK)
        return WH_ERR;
    if (!PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
        char msg[384];
        one_line(msg, sizeof(msg), dsn, PQerrorMessage(c->conn));
        ing_catalog_close(c);
        return wh_seterr(err, errlen, "catalog query: %s", msg);
    }
    /* the server's statement_timeout answers first; this deadline covers a
     * server or network that does not answer at all */
    uint64_t deadline = wh_now_ms() + ING_CATALOG_TIMEOUT_MS + 1000;
    PGresult *res = wait_result(c, dsn, deadline, err, errlen);
    if (!res) {
        ing_catalog_close(c);
        return WH_ERR;
    }
    int rc = WH_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[384];
        result_line(msg, sizeof(msg), dsn, res);
        rc = wh_seterr(err, errlen, "catalog query failed: %s", msg);
        PQclear(res);
        res = NULL;
    }
    /* drain to the end of the command so the connection is ready again */
    PGresult *more;
    while ((more = PQgetResult(c->conn)) != NULL)
        PQclear(more);
    *out = res;
    return rc;
}

int ing_catalog_pk(ing_catalog *c, const char *dsn, uint32_t oid, const char *const **names, int *n,
                   char *err, size_t errlen)
{
    names_clear(c);
    *names = NULL;
    *n = 0;
    char oidstr[16];
    snprintf(oidstr, sizeof(oidstr), "%u", oid);
    const char *params[1] = {oidstr};
    PGresult *res;
    if (run_query(c, dsn, PK_SQL, 1, params, &res, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    if (PQnfields(res) != 1) {
        rc = wh_seterr(err, errlen, "catalog query failed: %d columns", PQnfields(res));
    } else {
        int rows = PQntuples(res);
        c->names = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*c->names));
        if (!c->names)
            rc = wh_seterr(err, errlen, "out of memory");
        for (int i = 0; rc == WH_OK && i < rows; i++) {
            c->names[i] = strdup(PQgetvalue(res, i, 0));
            if (!c->names[i])
                rc = wh_seterr(err, errlen, "out of memory");
            else
                c->nnames = i + 1;
        }
    }
    PQclear(res);
    if (rc != WH_OK) {
        names_clear(c);
        return WH_ERR;
    }
    *names = (const char *const *)c->names;
    *n = c->nnames;
    return WH_OK;
}

int ing_catalog_exec(ing_catalog *c, const char *dsn, const char *sql, char *err, size_t errlen)
{
    if (c->conn && PQstatus(c->conn) != CONNECTION_OK)
        ing_catalog_close(c);
    if (!c->conn && cat_connect(c, dsn, err, errlen) != WH_OK)
        return WH_ERR;
    if (!PQsendQuery(c->conn, sql)) {
        char msg[384];
        one_line(msg, sizeof(msg), dsn, PQerrorMessage(c->conn));
        ing_catalog_close(c);
        return wh_seterr(err, errlen, "%s", msg);
    }
    uint64_t deadline = wh_now_ms() + ING_CATALOG_TIMEOUT_MS + 1000;
    int rc = WH_OK;
    PGresult *res;
    while ((res = wait_result(c, dsn, deadline, err, errlen)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
            PQclear(res); /* a COPY would never end here: drop the connection */
            ing_catalog_close(c);
            return wh_seterr(err, errlen, "the statement starts a COPY");
        }
        if (rc == WH_OK && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            char msg[384];
            result_line(msg, sizeof(msg), dsn, res);
            rc = wh_seterr(err, errlen, "%s", msg);
        }
        PQclear(res);
    }
    if (PQisBusy(c->conn)) { /* wait_result gave up: no answer in time */
        ing_catalog_close(c);
        return WH_ERR;
    }
    return rc;
}

/* 't' once no backend holds transaction $1's lock: a committing backend
 * releases it after it left the proc array, so a snapshot taken after
 * that sees the commit. pg_locks is readable by every role. 's' while the
 * holder waits for synchronous replication (wait_event SyncRep; visible
 * for the roles pg_stat_activity shows wait events of): it may be waiting
 * for this very ingestor's acknowledgement, which comes after the lookup,
 * so waiting would only run into the deadline. */
#define VISIBLE_SQL                                                                                \
    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l"                             \
    " WHERE l.locktype = 'transactionid' AND l.transactionid = $1::pg_catalog.xid) THEN 't'"       \
    " WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a"         \
    " ON a.pid = l.pid WHERE l.locktype = 'transactionid'"                                         \
    " AND l.transactionid = $1::pg_catalog.xid AND l.granted AND a.wait_event = 'SyncRep')"        \
    " THEN 's' ELSE 'f' END"

int ing_catalog_wait_visible(ing_catalog *c, const char *dsn, uint32_t xid, char *err,
                             size_t errlen)
{
    if (xid == 0 || xid == c->visible_xid)
        return WH_OK;
    char xidstr[16];
    snprintf(xidstr, sizeof(xidstr), "%u", xid);
    const char *params[1] = {xidstr};
    uint64_t deadline = wh_now_ms() + ING_CATALOG_VISIBLE_MS;
    long pause_us = 1000;
    for (;;) {
        PGresult *res;
        if (run_query(c, dsn, VISIBLE_SQL, 1, params, &res, err, errlen) != WH_OK)
            return WH_ERR;
        char v = PQntuples(res) == 1 && PQnfields(res) == 1 ? PQgetvalue(res, 0, 0)[0] : 'f';
        PQclear(res);
        if (v == 't' || v == 's') {
            c->visible_xid = xid;
            return v == 't' ? WH_OK : ING_CATALOG_SYNCREP;
        }
        if (wh_now_ms() >= deadline) {
            c->visible_xid = xid; /* one wait per transaction, not one per lookup */
            return wh_seterr(err, errlen,
                             "transaction %u is not visible to the catalog connection after %d ms",
                             xid, ING_CATALOG_VISIBLE_MS);
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = pause_us * 1000};
        nanosleep(&ts, NULL);
        if (pause_us < 50000)
            pause_us *= 2;
    }
}

/* ---- column types ---------------------------------------------------------- */

/* Every type reachable from the OIDs in $1 (array elements, domain bases,
 * composite attributes) that is not built in, with one row per attribute of
 * a composite type. pg_type and pg_attribute are readable by every role. */
#define TYPES_SQL                                                                                  \
    "WITH RECURSIVE t(oid, depth) AS ("                                                            \
    " SELECT o, 0 FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS o"                               \
    " UNION"                                                                                       \
    " SELECT d.oid, t.depth + 1 FROM t JOIN pg_catalog.pg_type ty ON ty.oid = t.oid"               \
    " CROSS JOIN LATERAL ("                                                                        \
    "  SELECT ty.typelem WHERE ty.typsubscript ="                                                  \
    "   'pg_catalog.array_subscript_handler'::pg_catalog.regproc"                                  \
    "  UNION ALL SELECT ty.typbasetype WHERE ty.typtype = 'd'"                                     \
    "  UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE ty.typtype = 'c'"          \
    "   AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped) d(oid)"              \
    " WHERE t.depth < 32 AND d.oid >= 10000)"                                                      \
    " SELECT ty.oid, ty.typtype, ty.typname,"                                                      \
    " CASE WHEN ty.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc"        \
    "  THEN ty.typelem ELSE 0 END, coalesce(e.typdelim, ','), ty.typbasetype, a.attname,"          \
    " a.atttypid"                                                                                  \
    " FROM (SELECT DISTINCT oid FROM t) u JOIN pg_catalog.pg_type ty ON ty.oid = u.oid"            \
    " LEFT JOIN pg_catalog.pg_type e ON e.oid = ty.typelem"                                        \
    " LEFT JOIN pg_catalog.pg_attribute a ON ty.typtype = 'c' AND a.attrelid = ty.typrelid"        \
    "  AND a.attnum > 0 AND NOT a.attisdropped"                                                    \
    " ORDER BY ty.oid, a.attnum"

static uint32_t get_oid(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    return (uint32_t)strtoul(PQgetvalue(res, row, col), NULL, 10);
}

/* Reads the types oids[0..n) (and what they refer to) into the cache. */
static int load_types(ing_catalog *c, const char *dsn, const uint32_t *oids, int n, char *err,
                      size_t errlen)
{
    /* "{1,2,...}" */
    size_t cap = (size_t)n * 11 + 3;
    char *arr = malloc(cap);
    if (!arr)
        return wh_seterr(err, errlen, "out of memory");
    size_t o = 0;
    arr[o++] = '{';
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(arr + o, cap - o, "%s%u", i ? "," : "", oids[i]);
    arr[o++] = '}';
    arr[o] = '\0';
    const char *params[1] = {arr};
    PGresult *res;
    int rc = run_query(c, dsn, TYPES_SQL, 1, params, &res, err, errlen);
    free(arr);
    if (rc != WH_OK)
        return WH_ERR;
    int rows = PQntuples(res);
    ing_typerow *tr = NULL;
    if (PQnfields(res) != 8) {
        rc = wh_seterr(err, errlen, "catalog query failed: %d columns", PQnfields(res));
    } else if (!(tr = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*tr)))) {
        rc = wh_seterr(err, errlen, "out of memory");
    } else {
        for (int i = 0; i < rows; i++) {
            tr[i].oid = get_oid(res, i, 0);
            tr[i].typtype = PQgetvalue(res, i, 1)[0];
            tr[i].typname = PQgetvalue(res, i, 2);
            tr[i].elem = get_oid(res, i, 3);
            tr[i].elemdelim = PQgetvalue(res, i, 4)[0];
            tr[i].basetype = get_oid(res, i, 5);
            tr[i].attname = PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6);
            tr[i].atttype = get_oid(res, i, 7);
        }
        rc = ing_types_load(c->types, tr, (size_t)rows, err, errlen);
    }
    free(tr);
    PQclear(res);
    return rc;
}

/* Relations whose types could not be read: tried again at a change of
 * theirs once next_ms has come, with a backoff. */
typedef struct pending {
    uint32_t reloid;
    uint64_t next_ms;
    uint64_t backoff_ms;
} pending;

static pending *pending_find(const ing_catalog *c, uint32_t reloid)
{
    for (size_t i = 0; i < c->npending; i++)
        if (c->pending[i].reloid == reloid)
            return &c->pending[i];
    return NULL;
}

static void pending_set(ing_catalog *c, uint32_t reloid)
{
    pending *p = pending_find(c, reloid);
    if (!p) {
        if (c->npending == c->cappending) {
            size_t cap = c->cappending ? c->cappending * 2 : 8;
            pending *np = realloc(c->pending, cap * sizeof(*np));
            if (!np)
                return; /* retried at the next Relation message only */
            c->pending = np;
            c->cappending = cap;
        }
        p = &c->pending[c->npending++];
        p->reloid = reloid;
        p->backoff_ms = ING_CATALOG_HOLDOFF_MS;
    } else if (p->backoff_ms < ING_TYPES_RETRY_MAX_MS) {
        p->backoff_ms *= 2;
        if (p->backoff_ms > ING_TYPES_RETRY_MAX_MS)
            p->backoff_ms = ING_TYPES_RETRY_MAX_MS;
    }
    p->next_ms = wh_now_ms() + p->backoff_ms;
}

static void pending_clear(ing_catalog *c, uint32_t reloid)
{
    pending *p = pending_find(c, reloid);
    if (p)
        *p = c->pending[--c->npending];
}

/* reloid's types are to be read again at its next change. */
static void pending_now(ing_catalog *c, uint32_t reloid)
{
    pending *p = pending_find(c, reloid);
    if (!p) {
        pending_set(c, reloid);
        p = pending_find(c, reloid);
        if (!p)
            return; /* no memory: read again at its next Relation message */
        p->backoff_ms = ING_CATALOG_HOLDOFF_MS / 2; /* a failure next: the first backoff */
    }
    p->next_ms = 0;
}

/* 1 when relation r has a column of type oid (0: any type that is not
 * built in). */
static int rel_uses(const ing_relation *r, uint32_t oid)
{
    for (int i = 0; i < r->natts; i++) {
        uint32_t t = r->atts[i].type_oid;
        if (oid == 0 ? t >= ING_FIRST_NONBUILTIN_OID : t == oid)
            return 1;
    }
    return 0;
}

void ing_catalog_types_invalidate(ing_catalog *c, const ing_parser *p)
{
    ing_types_expire(c->types);
    size_t pos = 0;
    const ing_relation *r;
    while ((r = ing_relation_next(p, &pos)) != NULL)
        if (rel_uses(r, 0))
            pending_now(c, r->oid);
}

int ing_catalog_mismatch(ing_catalog *c, const ing_parser *p, uint32_t type_oid, uint64_t now_ms)
{
    stale *st = NULL;
    for (size_t i = 0; i < c->nstale && !st; i++)
        if (c->stale[i].oid == type_oid)
            st = &c->stale[i];
    if (!st) {
        if (wh_grow(&c->stale, c->nstale + 1, &c->capstale, sizeof(*c->stale), 8) != WH_OK)
            return 0;
        st = &c->stale[c->nstale++];
        *st = (stale){.oid = type_oid};
    }
    int rc = 0;
    if (st->marked_ms == 0 || now_ms - st->marked_ms >= ING_TYPES_STALE_MS) {
        st->marked_ms = now_ms ? now_ms : 1;
        ing_types_stale(c->types, type_oid);
        size_t pos = 0;
        const ing_relation *r;
        while ((r = ing_relation_next(p, &pos)) != NULL)
            if (rel_uses(r, type_oid))
                pending_now(c, r->oid);
        rc |= ING_MISMATCH_MARKED;
    }
    if (!st->warned) {
        st->warned = 1;
        rc |= ING_MISMATCH_WARN;
    }
    return rc;
}

const char *ing_catalog_type_name(const ing_catalog *c, uint32_t type_oid)
{
    return ing_types_name(c->types, type_oid);
}

int ing_catalog_types_due(const ing_catalog *c, uint32_t reloid)
{
    if (c->npending == 0)
        return 0;
    const pending *p = pending_find(c, reloid);
    return p != NULL && wh_now_ms() >= p->next_ms;
}

int ing_catalog_relation_types(ing_catalog *c, const char *dsn, ing_parser *p, uint32_t reloid,
                               char *err, size_t errlen)
{
    const ing_relation *rel = ing_relation_get(p, reloid);
    if (!rel)
        return WH_OK;
    int rc = WH_OK;
    uint32_t *need = NULL;
    int nneed = 0;
    for (int i = 0; i < rel->natts; i++) {
        uint32_t oid = rel->atts[i].type_oid;
        if (!ing_types_needs(c->types, oid))
            continue;
        if (!need && !(need = calloc((size_t)rel->natts, sizeof(*need)))) {
            rc = wh_seterr(err, errlen, "out of memory");
            break;
        }
        int dup = 0;
        for (int k = 0; k < nneed && !dup; k++)
            dup = need[k] == oid;
        if (!dup)
            need[nneed++] = oid;
    }
    if (rc == WH_OK && nneed > 0)
        rc = load_types(c, dsn, need, nneed, err, errlen);
    /* a type the query did not return: not visible to the catalog
     * connection (yet), or gone; not read, so tried again later */
    for (int k = 0; rc == WH_OK && k < nneed; k++)
        if (ing_types_needs(c->types, need[k]))
            rc = wh_seterr(err, errlen, "type OID %u is not in the catalog", need[k]);
    free(need);
    /* every column: what the cache has (on failure maybe an older entry,
     * else NULL: the column is sent as its text) */
    for (int i = 0; i < rel->natts; i++)
        ing_relation_set_vtype(p, reloid, i, ing_types_get(c->types, rel->atts[i].type_oid));
    if (rc != WH_OK) {
        pending_set(c, reloid);
        return WH_ERR;
    }
    pending_clear(c, reloid);
    return WH_OK;
}

int ing_catalog_warn_once(ing_catalog *c, uint32_t oid, unsigned what)
{
    for (size_t i = 0; i < c->nwarned; i++) {
        if (c->warned[i].oid != oid)
            continue;
        if (c->warned[i].what & what)
            return 0;
        c->warned[i].what |= what;
        return 1;
    }
    if (c->nwarned == c->capwarned) {
        size_t cap = c->capwarned ? c->capwarned * 2 : 16;
        warned *nw = realloc(c->warned, cap * sizeof(*nw));
        if (!nw)
            return 1; /* no memory to remember: log (rare, harmless) */
        c->warned = nw;
        c->capwarned = cap;
    }
    c->warned[c->nwarned].oid = oid;
    c->warned[c->nwarned].what = what;
    c->nwarned++;
    return 1;
}

int ing_catalog_warned_clear(ing_catalog *c, uint32_t oid, unsigned what)
{
    for (size_t i = 0; i < c->nwarned; i++) {
        if (c->warned[i].oid != oid)
            continue;
        int was = (c->warned[i].what & what) != 0;
        c->warned[i].what &= ~what;
        return was;
    }
    return 0;
}

void ing_catalog_warned_reset(ing_catalog *c, uint32_t oid)
{
    for (size_t i = 0; i < c->nwarned; i++)
        if (c->warned[i].oid == oid)
            c->warned[i].what = 0;
}
