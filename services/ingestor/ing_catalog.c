/* ing_catalog: primary key lookup on a second, ordinary connection. */
#include "ing_catalog.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

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

struct ing_catalog {
    PGconn *conn;
    uint64_t holdoff_until_ms; /* no connect before this after a failed one */
    char **names;
    int nnames;
    warned *warned;
    size_t nwarned, capwarned;
};

int ing_catalog_new(ing_catalog **out, char *err, size_t errlen)
{
    ing_catalog *c = calloc(1, sizeof(*c));
    if (!c)
        return wh_seterr(err, errlen, "out of memory");
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
}

void ing_catalog_free(ing_catalog *c)
{
    if (!c)
        return;
    ing_catalog_close(c);
    names_clear(c);
    free(c->warned);
    free(c);
}

void ing_pg_chomp(char *s)
{
    char *w = s;
    for (char *p = s; *p; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            if (w > s && w[-1] != ' ')
                *w++ = ' ';
            continue;
        }
        *w++ = *p;
    }
    *w = '\0';
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = '\0';
}

/* libpq's message on one line. */
static void one_line(char *dst, size_t n, const char *msg)
{
    wh_strlcpy(dst, msg ? msg : "", n);
    ing_pg_chomp(dst);
}

int ing_pg_connect(PGconn **out, const char *dsn, const char *replication, const char *extra_opts,
                   const char *app, const char *connect_timeout, char *err, size_t errlen)
{
    *out = NULL;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (!opts) {
        int rc = wh_seterr(err, errlen, "source.dsn: %s", perr ? perr : "cannot parse");
        PQfreemem(perr);
        return rc;
    }
    const char *kw[64], *val[64];
    char options[1024];
    int n = 0;
    const char *user_opts = NULL, *user_app = NULL;
    for (PQconninfoOption *o = opts; o->keyword && n < 59; o++) {
        if (!o->val || !strcmp(o->keyword, "replication") ||
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
    snprintf(options, sizeof(options), "%s%s%s", user_opts ? user_opts : "", user_opts ? " " : "",
             extra_opts);
    if (replication) {
        kw[n] = "replication";
        val[n++] = replication;
    }
    kw[n] = "options";
    val[n++] = options;
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
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        one_line(msg, sizeof(msg), c ? PQerrorMessage(c) : "out of memory");
        if (c)
            PQfinish(c);
        return wh_seterr(err, errlen, "%s", msg);
    }
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
static PGresult *wait_result(ing_catalog *c, uint64_t deadline, char *err, size_t errlen)
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
            one_line(msg, sizeof(msg), PQerrorMessage(c->conn));
            wh_seterr(err, errlen, "catalog query: %s", msg);
            return NULL;
        }
    }
    return PQgetResult(c->conn);
}

int ing_catalog_pk(ing_catalog *c, const char *dsn, uint32_t oid, const char *const **names, int *n,
                   char *err, size_t errlen)
{
    names_clear(c);
    *names = NULL;
    *n = 0;
    if (c->conn && PQstatus(c->conn) != CONNECTION_OK)
        ing_catalog_close(c);
    if (!c->conn && cat_connect(c, dsn, err, errlen) != WH_OK)
        return WH_ERR;
    char oidstr[16];
    snprintf(oidstr, sizeof(oidstr), "%u", oid);
    const char *params[1] = {oidstr};
    if (!PQsendQueryParams(c->conn, PK_SQL, 1, NULL, params, NULL, NULL, 0)) {
        char msg[384];
        one_line(msg, sizeof(msg), PQerrorMessage(c->conn));
        ing_catalog_close(c);
        return wh_seterr(err, errlen, "catalog query: %s", msg);
    }
    /* the server's statement_timeout answers first; this deadline covers a
     * server or network that does not answer at all */
    uint64_t deadline = wh_now_ms() + ING_CATALOG_TIMEOUT_MS + 1000;
    PGresult *res = wait_result(c, deadline, err, errlen);
    if (!res) {
        ing_catalog_close(c);
        return WH_ERR;
    }
    int rc = WH_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 1) {
        char msg[384];
        one_line(msg, sizeof(msg), PQresultErrorMessage(res));
        rc = wh_seterr(err, errlen, "catalog query failed: %s", msg);
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
    /* drain to the end of the command so the connection is ready again */
    while ((res = PQgetResult(c->conn)) != NULL)
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
        one_line(msg, sizeof(msg), PQerrorMessage(c->conn));
        ing_catalog_close(c);
        return wh_seterr(err, errlen, "%s", msg);
    }
    uint64_t deadline = wh_now_ms() + ING_CATALOG_TIMEOUT_MS + 1000;
    int rc = WH_OK;
    PGresult *res;
    while ((res = wait_result(c, deadline, err, errlen)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (rc == WH_OK && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            char msg[384];
            one_line(msg, sizeof(msg), PQresultErrorMessage(res));
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

void ing_catalog_warned_reset(ing_catalog *c, uint32_t oid)
{
    for (size_t i = 0; i < c->nwarned; i++)
        if (c->warned[i].oid == oid)
            c->warned[i].what = 0;
}
