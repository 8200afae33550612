/* wh_pgcheck: source database preflight and least-privilege SQL. */
#include "wh_pgcheck.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_dsn.h"
#include "wh_pgerr.h"
#include "wh_util.h"

#define MAX_TABLES 256

typedef struct table_ref {
    char schema[128];
    char name[128];
} table_ref;

/* "s.t1, t2" -> {s,t1},{public,t2}. Returns the count, -1 when malformed. */
static int parse_tables(const char *list, table_ref *out, int max, char *err, size_t errlen)
{
    int n = 0;
    const char *p = list;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            if (n >= max) {
                wh_seterr(err, errlen, "source.tables: more than %d tables", max);
                return -1;
            }
            char item[260];
            if (len >= sizeof(item)) {
                wh_seterr(err, errlen, "source.tables: name too long");
                return -1;
            }
            memcpy(item, p, len);
            item[len] = '\0';
            char *dot = strchr(item, '.');
            const char *schema = "public", *name = item;
            if (dot) {
                *dot = '\0';
                schema = item;
                name = dot + 1;
            }
            if (!*schema || !*name || wh_strlcpy(out[n].schema, schema, 128) != WH_OK ||
                wh_strlcpy(out[n].name, name, 128) != WH_OK) {
                wh_seterr(err, errlen, "source.tables: bad table name \"%s\"", item);
                return -1;
            }
            n++;
        }
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

int wh_pg_ident(wh_buf *out, const char *name)
{
    int bare = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9');
    for (const char *p = name; bare && *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            bare = 0;
    if (bare)
        return wh_buf_puts(out, name);
    int rc = wh_buf_putc(out, '"');
    for (const char *p = name; *p; p++)
        rc |= *p == '"' ? wh_buf_puts(out, "\"\"") : wh_buf_putc(out, *p);
    rc |= wh_buf_putc(out, '"');
    return rc ? WH_ERR : WH_OK;
}

static int put_literal(wh_buf *out, const char *s)
{
    int rc = wh_buf_putc(out, '\'');
    for (; *s; s++)
        rc |= *s == '\'' ? wh_buf_puts(out, "''") : wh_buf_putc(out, *s);
    rc |= wh_buf_putc(out, '\'');
    return rc ? WH_ERR : WH_OK;
}

static int put_tables(wh_buf *out, const table_ref *t, int n)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            rc |= wh_buf_puts(out, ", ");
        rc |= wh_pg_ident(out, t[i].schema);
        rc |= wh_buf_putc(out, '.');
        rc |= wh_pg_ident(out, t[i].name);
    }
    return rc ? WH_ERR : WH_OK;
}

/* "CREATE PUBLICATION p FOR TABLE ..." or "... FOR ALL TABLES" */
static int put_create_publication(wh_buf *out, const char *pub, const table_ref *t, int n)
{
    int rc = wh_buf_puts(out, "CREATE PUBLICATION ");
    rc |= wh_pg_ident(out, pub);
    if (n > 0) {
        rc |= wh_buf_puts(out, " FOR TABLE ");
        rc |= put_tables(out, t, n);
    } else {
        rc |= wh_buf_puts(out, " FOR ALL TABLES");
    }
    rc |= wh_buf_putc(out, ';');
    return rc ? WH_ERR : WH_OK;
}

/* user and dbname of a DSN without connecting (defaults as libpq's). */
static void dsn_names(const char *dsn, char *user, size_t ulen, char *db, size_t dlen)
{
    user[0] = db[0] = '\0';
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn ? dsn : "", &perr);
    PQfreemem(perr);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (o->val && !strcmp(o->keyword, "user"))
            wh_strlcpy(user, o->val, ulen);
        else if (o->val && !strcmp(o->keyword, "dbname"))
            wh_strlcpy(db, o->val, dlen);
    }
    PQconninfoFree(opts);
    if (!user[0]) {
        const char *u = getenv("PGUSER");
        if (!u)
            u = getenv("USER");
        wh_strlcpy(user, u ? u : "walhook", ulen);
    }
    if (!db[0]) {
        const char *d = getenv("PGDATABASE");
        wh_strlcpy(db, d ? d : user, dlen);
    }
}

/* ---- preflight ---------------------------------------------------------- */

typedef struct chk {
    const wh_pg_source *src;
    wh_buf *rep;
    int n;
    char first[300];
    char role[128], db[128];
    PGconn *conn;
    table_ref tables[MAX_TABLES];
    int ntables;
} chk;

/* One problem; fix (may be NULL) is the SQL, run by who. */
static void __attribute__((format(printf, 4, 5)))
problem(chk *k, const char *who, const char *fix, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (k->n++ == 0)
        wh_strlcpy(k->first, msg, sizeof(k->first));
    wh_buf_printf(k->rep, "  - %s\n", msg);
    if (fix)
        wh_buf_printf(k->rep, "    fix (as %s): %s\n", who, fix);
}

static PGconn *connect_src(const char *dsn, int repl)
{
    const char *keys[] = {"dbname", "connect_timeout", "replication", NULL};
    const char *vals[] = {dsn, "10", repl ? "database" : NULL, NULL};
    if (!repl)
        keys[2] = NULL;
    return PQconnectdbParams(keys, vals, 1);
}

/* One-row query: the row, or NULL after naming the failure. */
static PGresult *query(chk *k, const char *sql, const char *what)
{
    PGresult *r = PQexec(k->conn, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    char msg[400];
    wh_dsn_scrub(k->src->dsn, PQerrorMessage(k->conn), msg, sizeof(msg));
    wh_pg_oneline(msg, msg, sizeof(msg));
    problem(k, NULL, NULL, "%s failed: %s", what, msg);
    PQclear(r);
    return NULL;
}

/* A connection failure (libpq's message): names the cause and its fix.
 * Returns 1 when the REPLICATION attribute is what is missing (a plain
 * connection may work). */
static int connect_failed_msg(chk *k, const char *libpq_msg)
{
    char msg[400];
    wh_dsn_scrub(k->src->dsn, libpq_msg, msg, sizeof(msg)); /* it may quote the DSN */
    wh_pg_oneline(msg, msg, sizeof(msg));
    wh_buf fix;
    wh_buf_init(&fix, 4096);
    int repl = 0;
    if (strstr(msg, "replication role") != NULL) {
        wh_buf_puts(&fix, "ALTER ROLE ");
        wh_pg_ident(&fix, k->role);
        wh_buf_puts(&fix, " WITH REPLICATION;");
        wh_buf_cstr(&fix);
        problem(k, "a superuser", fix.data,
                "role \"%s\" lacks the REPLICATION attribute (needed to stream a logical slot)",
                k->role);
        repl = 1;
    } else if (strstr(msg, "permission denied for database") != NULL) {
        wh_buf_puts(&fix, "GRANT CONNECT ON DATABASE ");
        wh_pg_ident(&fix, k->db);
        wh_buf_puts(&fix, " TO ");
        wh_pg_ident(&fix, k->role);
        wh_buf_putc(&fix, ';');
        wh_buf_cstr(&fix);
        problem(k, "a superuser or the database owner", fix.data,
                "role \"%s\" has no CONNECT privilege on database \"%s\"", k->role, k->db);
    } else if (strstr(msg, "role \"") != NULL && strstr(msg, "does not exist") != NULL) {
        wh_buf_puts(&fix, "CREATE ROLE ");
        wh_pg_ident(&fix, k->role);
        wh_buf_puts(&fix, " WITH LOGIN REPLICATION;");
        wh_buf_cstr(&fix);
        problem(k, "a superuser", fix.data, "role \"%s\" does not exist", k->role);
    } else if (strstr(msg, "no pg_hba.conf entry") != NULL) {
        char line[400];
        snprintf(line, sizeof(line),
                 "a line \"host %s %s <walhook's address>/32 scram-sha-256\""
                 " in pg_hba.conf, then SELECT pg_reload_conf();",
                 k->db, k->role);
        problem(k, "the server's administrator", line,
                "the server's pg_hba.conf does not let role \"%s\" connect to database \"%s\" "
                "(%s)",
                k->role, k->db, msg);
    } else {
        problem(k, NULL, NULL, "cannot connect to the source database: %s", msg);
    }
    wh_buf_free(&fix);
    return repl;
}

static int connect_failed(chk *k, PGconn *c)
{
    return connect_failed_msg(k, c ? PQerrorMessage(c) : "out of memory");
}

static char *lit(chk *k, const char *s)
{
    return PQescapeLiteral(k->conn, s, strlen(s));
}

static void check_server(chk *k, int repl_conn, int repl_missing)
{
    PGresult *r = query(k,
                        "SELECT current_setting('wal_level'), "
                        "current_setting('max_wal_senders')::int, "
                        "(SELECT count(*) FROM pg_catalog.pg_stat_activity "
                        " WHERE backend_type = 'walsender')::int, "
                        "current_setting('max_replication_slots')::int, "
                        "(SELECT count(*) FROM pg_catalog.pg_replication_slots)::int, "
                        "r.rolsuper, r.rolreplication, current_user, current_database() "
                        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
                        "reading the server settings");
    if (!r)
        return;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return;
    }
    wh_strlcpy(k->role, PQgetvalue(r, 0, 7), sizeof(k->role));
    wh_strlcpy(k->db, PQgetvalue(r, 0, 8), sizeof(k->db));
    const char *wal_level = PQgetvalue(r, 0, 0);
    int senders = atoi(PQgetvalue(r, 0, 1)), used = atoi(PQgetvalue(r, 0, 2));
    int slots_max = atoi(PQgetvalue(r, 0, 3)), slots_used = atoi(PQgetvalue(r, 0, 4));
    int super = PQgetvalue(r, 0, 5)[0] == 't', replattr = PQgetvalue(r, 0, 6)[0] == 't';
    if (strcmp(wal_level, "logical") != 0)
        problem(k, "a superuser, then restart PostgreSQL", "ALTER SYSTEM SET wal_level = logical;",
                "the server has wal_level = %s; logical decoding needs wal_level = logical",
                wal_level);
    if (!repl_missing && !super && !replattr) {
        wh_buf fix;
        wh_buf_init(&fix, 1024);
        wh_buf_puts(&fix, "ALTER ROLE ");
        wh_pg_ident(&fix, k->role);
        wh_buf_puts(&fix, " WITH REPLICATION;");
        wh_buf_cstr(&fix);
        problem(k, "a superuser", fix.data, "role \"%s\" lacks the REPLICATION attribute", k->role);
        wh_buf_free(&fix);
    }
    /* our own connection is one of the WAL senders when it is one */
    int free_senders = senders - used + (repl_conn ? 1 : 0);
    if (free_senders < 1) {
        char fix[128];
        snprintf(fix, sizeof(fix), "ALTER SYSTEM SET max_wal_senders = %d;", used + 2);
        problem(k, "a superuser, then restart PostgreSQL", fix,
                "no free WAL sender: max_wal_senders = %d and %d are in use", senders, used);
    }
    PQclear(r);

    const wh_pg_source *s = k->src;
    char *sl = lit(k, s->slot);
    if (!sl)
        return;
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT slot_type, coalesce(plugin, ''), database = current_database(), "
             "coalesce(wal_status, '') FROM pg_catalog.pg_replication_slots WHERE slot_name = %s",
             sl);
    r = query(k, sql, "looking up the replication slot");
    if (r && PQntuples(r) > 0) {
        const char *type = PQgetvalue(r, 0, 0), *plugin = PQgetvalue(r, 0, 1);
        char fix[512];
        snprintf(fix, sizeof(fix), "SELECT pg_drop_replication_slot(%s);", sl);
        if (strcmp(type, "logical") != 0 || strcmp(plugin, "pgoutput") != 0)
            problem(k, "a superuser, or choose another slot with --slot", fix,
                    "replication slot \"%s\" exists but is not a logical pgoutput slot (type %s, "
                    "plugin %s)",
                    s->slot, type, plugin);
        else if (PQgetvalue(r, 0, 2)[0] != 't')
            problem(k, NULL, NULL,
                    "replication slot \"%s\" belongs to another database: choose another name "
                    "with --slot (source.slot)",
                    s->slot);
        else if (strcmp(PQgetvalue(r, 0, 3), "lost") == 0)
            problem(k, "a role with REPLICATION, then resync the targets", fix,
                    "replication slot \"%s\" was invalidated (wal_status = lost, "
                    "max_slot_wal_keep_size exceeded): the WAL it needed is gone",
                    s->slot);
    } else if (r) {
        char fix[512];
        snprintf(fix, sizeof(fix), "SELECT pg_create_logical_replication_slot(%s, 'pgoutput');",
                 sl);
        if (!s->create)
            problem(k, "a role with REPLICATION, or set source.create_slot = true", fix,
                    "replication slot \"%s\" does not exist and source.create_slot is false",
                    s->slot);
        else if (slots_used >= slots_max) {
            char f2[128];
            snprintf(f2, sizeof(f2), "ALTER SYSTEM SET max_replication_slots = %d;",
                     slots_used + 2);
            problem(k, "a superuser, then restart PostgreSQL", f2,
                    "replication slot \"%s\" does not exist and cannot be created: "
                    "max_replication_slots = %d, all in use",
                    s->slot, slots_max);
        }
    }
    PQclear(r);
    PQfreemem(sl);

    /* the publication */
    char *pl = lit(k, s->publication);
    if (!pl)
        return;
    snprintf(sql, sizeof(sql),
             "SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = %s", pl);
    r = query(k, sql, "looking up the publication");
    int exists = r && PQntuples(r) > 0;
    int all = exists && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!r && !exists) {
        PQfreemem(pl);
        return;
    }
    wh_buf fix;
    wh_buf_init(&fix, 1 << 20);
    /* the listed tables: exist? owned by us? in the publication? */
    char owners[256] = "";
    int not_owned = 0, missing = 0;
    for (int i = 0; i < k->ntables; i++) {
        char *sc = lit(k, k->tables[i].schema), *tn = lit(k, k->tables[i].name);
        if (!sc || !tn) {
            PQfreemem(sc);
            PQfreemem(tn);
            break;
        }
        snprintf(sql, sizeof(sql),
                 "SELECT pg_catalog.pg_get_userbyid(c.relowner), "
                 "pg_catalog.pg_has_role(c.relowner, 'USAGE'), "
                 "EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables p WHERE p.pubname = %s "
                 "AND p.schemaname = n.nspname AND p.tablename = c.relname) "
                 "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                 "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                 pl, sc, tn);
        PQfreemem(sc);
        PQfreemem(tn);
        r = query(k, sql, "looking up a listed table");
        if (!r)
            break;
        if (PQntuples(r) == 0) {
            problem(k, NULL, NULL, "table %s.%s (source.tables) does not exist in database \"%s\"",
                    k->tables[i].schema, k->tables[i].name, k->db);
            missing++;
        } else {
            if (PQgetvalue(r, 0, 1)[0] != 't') {
                if (!not_owned++)
                    wh_strlcpy(owners, PQgetvalue(r, 0, 0), sizeof(owners));
            }
            if (exists && !all && PQgetvalue(r, 0, 2)[0] != 't') {
                wh_buf_reset(&fix);
                wh_buf_puts(&fix, "ALTER PUBLICATION ");
                wh_pg_ident(&fix, s->publication);
                wh_buf_puts(&fix, " ADD TABLE ");
                put_tables(&fix, &k->tables[i], 1);
                wh_buf_puts(&fix, ";");
                wh_buf_cstr(&fix);
                char who[200];
                snprintf(who, sizeof(who), "the table's owner %s, or a superuser",
                         PQgetvalue(r, 0, 0));
                problem(k, who, fix.data, "publication \"%s\" does not publish table %s.%s",
                        s->publication, k->tables[i].schema, k->tables[i].name);
            }
        }
        PQclear(r);
    }
    if (!exists) {
        wh_buf_reset(&fix);
        put_create_publication(&fix, s->publication, k->tables, k->ntables);
        wh_buf_cstr(&fix);
        if (!s->create) {
            problem(k, k->ntables ? "the owner of the tables or a superuser" : "a superuser",
                    fix.data, "publication \"%s\" does not exist and source.create_slot is false",
                    s->publication);
        } else if (k->ntables == 0 && !super) {
            problem(k,
                    "a superuser; or list the tables with --tables and have their owner create it",
                    fix.data,
                    "publication \"%s\" does not exist and role \"%s\" cannot create it: FOR "
                    "ALL TABLES needs a superuser",
                    s->publication, k->role);
        } else if (k->ntables > 0 && !missing && not_owned) {
            char who[300];
            snprintf(who, sizeof(who), "the tables' owner %s, or a superuser", owners);
            problem(k, who, fix.data,
                    "publication \"%s\" does not exist and role \"%s\" cannot create it: it does "
                    "not own %d of the listed tables",
                    s->publication, k->role, not_owned);
        } else if (k->ntables > 0 && !missing && !super) {
            snprintf(sql, sizeof(sql),
                     "SELECT has_database_privilege(current_database(), 'CREATE')");
            r = query(k, sql, "checking CREATE on the database");
            if (r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] != 't')
                problem(k, "the owner of the tables or a superuser", fix.data,
                        "publication \"%s\" does not exist and role \"%s\" cannot create it "
                        "(no CREATE privilege on database \"%s\")",
                        s->publication, k->role, k->db);
            PQclear(r);
        }
    }
    wh_buf_free(&fix);
    PQfreemem(pl);
}

/* Checks src on conn when it is an open replication connection (kept
 * open); after conn_err (a replication connection that failed with that
 * message) without connecting again, unless with a plain connection when
 * the REPLICATION attribute is what is missing; else on a connection of its
 * own (closed). */
static int preflight(const wh_pg_source *src, PGconn *conn, const char *conn_err, wh_buf *report,
                     char *err, size_t errlen)
{
    if (!src->dsn || !*src->dsn)
        return wh_seterr(err, errlen, "source.dsn is not set (use --source or WALHOOK_SOURCE_DSN)");
    char why[WH_ERRLEN];
    if (wh_pgerr_dsn_check(src->dsn, why, sizeof(why)) != WH_OK) {
        wh_buf_printf(report, "  - source.dsn: invalid connection string: %s\n", why);
        return wh_seterr(err, errlen,
                         "the source database is not ready for walhook (1 problem): source.dsn: "
                         "invalid connection string: %s",
                         why);
    }
    chk *k = calloc(1, sizeof(*k));
    if (!k)
        return wh_seterr(err, errlen, "out of memory");
    k->src = src;
    k->rep = report;
    dsn_names(src->dsn, k->role, sizeof(k->role), k->db, sizeof(k->db));
    k->ntables = parse_tables(src->tables ? src->tables : "", k->tables, MAX_TABLES, err, errlen);
    if (k->ntables < 0) {
        free(k);
        return WH_ERR;
    }
    int repl_conn = 1, repl_missing = 0;
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
        k->conn = conn;
    } else if (conn_err != NULL) {
        repl_missing = connect_failed_msg(k, conn_err);
        repl_conn = 0;
    } else {
        k->conn = connect_src(src->dsn, 1);
        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK) {
            repl_missing = connect_failed(k, k->conn);
            PQfinish(k->conn);
            k->conn = NULL;
            repl_conn = 0;
        }
    }
    if (repl_missing) { /* go on with a plain connection: name the rest too */
        k->conn = connect_src(src->dsn, 0);
        if (!k->conn || PQstatus(k->conn) != CONNECTION_OK) {
            connect_failed(k, k->conn);
            PQfinish(k->conn);
            k->conn = NULL;
        }
    }
    if (k->conn)
        check_server(k, repl_conn, repl_missing);
    if (k->conn != conn)
        PQfinish(k->conn);
    int n = k->n;
    if (n)
        wh_seterr(err, errlen, "the source database is not ready for walhook (%d problem%s): %s", n,
                  n == 1 ? "" : "s", k->first);
    free(k);
    return n ? WH_ERR : WH_OK;
}

wh_pg_source wh_pg_source_of(const wh_config *c)
{
    wh_pg_source src = {.dsn = c->source_dsn,
                        .slot = c->slot,
                        .publication = c->publication,
                        .tables = c->tables,
                        .create = c->create_slot};
    return src;
}

int wh_pg_preflight(const wh_pg_source *src, wh_buf *report, char *err, size_t errlen)
{
    return preflight(src, NULL, NULL, report, err, errlen);
}

int wh_pg_preflight_conn(const wh_pg_source *src, struct pg_conn *conn, const char *conn_err,
                         wh_buf *report, char *err, size_t errlen)
{
    return preflight(src, conn, conn_err, report, err, errlen);
}

/* ---- setup SQL ---------------------------------------------------------- */

int wh_pg_setup_sql(const wh_pg_source *src, const char *role, wh_buf *out, char *err,
                    size_t errlen)
{
    char user[128], db[128];
    dsn_names(src->dsn, user, sizeof(user), db, sizeof(db));
    if (role && *role)
        wh_strlcpy(user, role, sizeof(user));
    table_ref *t = calloc(MAX_TABLES, sizeof(*t));
    if (!t)
        return wh_seterr(err, errlen, "out of memory");
    int n = parse_tables(src->tables ? src->tables : "", t, MAX_TABLES, err, errlen);
    if (n < 0) {
        free(t);
        return WH_ERR;
    }
    int rc = 0;
    rc |= wh_buf_printf(out,
                        "-- walhook: least-privilege setup of role %s on database %s.\n"
                        "-- Server settings (postgresql.conf, restart after a change):\n"
                        "--   wal_level = logical; one free max_replication_slots and one free\n"
                        "--   max_wal_senders for walhook.\n\n"
                        "-- 1. As a superuser: the role (LOGIN, REPLICATION, nothing else).\n",
                        user, db);
    rc |= wh_buf_puts(out, "CREATE ROLE ");
    rc |= wh_pg_ident(out, user);
    rc |= wh_buf_puts(out, " WITH LOGIN REPLICATION;\n-- its password, in psql: \\password ");
    rc |= wh_pg_ident(out, user);
    rc |= wh_buf_puts(out, "\n\n-- 2. As a superuser or the database's owner: connecting.\n"
                           "GRANT CONNECT ON DATABASE ");
    rc |= wh_pg_ident(out, db);
    rc |= wh_buf_puts(out, " TO ");
    rc |= wh_pg_ident(out, user);
    rc |= wh_buf_puts(out, ";\n\n");
    if (n > 0)
        rc |= wh_buf_printf(out,
                            "-- 3. As the owner of the tables (or a superuser), connected to "
                            "database %s:\n",
                            db);
    else
        rc |= wh_buf_printf(out,
                            "-- 3. As a superuser (FOR ALL TABLES; list tables with --tables "
                            "so that their owner can do it), connected to database %s:\n",
                            db);
    rc |= put_create_publication(out, src->publication, t, n);
    rc |= wh_buf_puts(out, "\n\n-- 4. Optional: walhook creates its slot on its first start "
                           "(REPLICATION suffices).\n-- To create it now, connected to database ");
    rc |= wh_buf_printf(out, "%s:\n-- SELECT pg_create_logical_replication_slot(", db);
    rc |= put_literal(out, src->slot);
    rc |= wh_buf_puts(out, ", 'pgoutput');\n\n"
                           "-- walhook needs no SELECT on the tables: pgoutput decodes the WAL.\n");
    free(t);
    if (rc)
        return wh_seterr(err, errlen, "out of memory");
    return WH_OK;
}
