/* ing_repl: replication connection, stream loop, status updates. */
#include "ing_repl.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "ing_catalog.h"
#include "ing_slot.h"
#include "ing_copy.h"
#include "ing_ddl.h"
#include "ing_event.h"
#include "ing_origin.h"
#include "ing_pgoutput.h"
#include "ing_snapshot.h"
#include "ing_schema.h"
#include "ing_values.h"
#include "wh_dsn.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_lattrace.h"
#include "wh_pgerr.h"
#include "wh_util.h"

/* With a backlog (see ING_BACKLOG_AGE_US) the replication socket wakes the
 * loop only once this many bytes are buffered (SO_RCVLOWAT), so a wake-up
 * moves many messages instead of a handful; the sender's wake fd (request
 * done) and the timers still wake it at once. A live stream is read as it
 * arrives (its latency is the point). */
#define ING_RCVLOWAT_BACKLOG (128 * 1024)
/* Reads per loop pass while the socket still holds data once what was read
 * is parsed: with libpq (16 KiB a read) a wake-up moves up to 1 MiB, and
 * libpq's buffer does not grow; on the socket itself (ing_copy) a read takes
 * what the socket holds, up to ING_COPY_BUF. */
#define ING_DRAIN_READS 64
/* The slot has a backlog while the open batch's newest transaction
 * committed more than this long ago (a logical walsender reports no WAL end
 * ahead of what it sends, so the commit time is the signal; a clock skew
 * between the hosts costs at most busy_linger_us per batch): batches then
 * fill before they go (ing_batcher_tick), and the socket keeps its
 * low-water mark even with nothing in flight. 1 s: a catch-up after
 * downtime or a bulk load, not a live stream that fell a little behind
 * under load (whose latency the hold would add to). */
#define ING_BACKLOG_AGE_US (1000 * 1000)

/* The longest wait for the answer to START_REPLICATION, and for room in
 * the socket to write a status update, on the socket itself (ing_copy). */
#define ING_START_TIMEOUT_MS (5 * 60 * 1000)
#define ING_WRITE_TIMEOUT_MS (60 * 1000)
/* A stream up this long has worked: its end starts the reconnect backoff
 * over. One that ends sooner (the walsender fails on the same change every
 * time) is retried with the delay still growing. */
#define ING_STREAM_STABLE_MS (10 * 1000)

/* The prefix of the heartbeat's logical message (source.heartbeat_query
 * ""): such messages are consumed, never events. */
#define ING_HEARTBEAT_PREFIX "walhook.heartbeat"
#define ING_HEARTBEAT_SQL                                                                          \
    "SELECT pg_catalog.pg_logical_emit_message(false, '" ING_HEARTBEAT_PREFIX "', '')"

typedef struct repl {
    wh_config *cfg; /* own copy: the source may change at runtime */
    PGconn *pre;    /* the first source's connection opened at start (ing_early) */
    const ing_source_watch *sw;
    ing_batcher *bt;
    ing_stats *st;
    ing_parser *parser;
    ing_catalog *catalog;     /* primary keys of REPLICA IDENTITY FULL tables */
    ing_toast *toast;         /* last values of TOASTed columns (kept across reconnects) */
    ing_snapshot *snap;       /* snapshot and backfill chunks (ing_snapshot) */
    ing_schema *schema;       /* the tenant's schema versions (kept across reconnects) */
    wh_buf sdesc, sfield;     /* a schema event's description and registration */
    char drop_err[WH_ERRLEN]; /* drop_staged's */
    /* stream_commit's registrations of versions it takes over (commit_reg) */
    Walhook__SchemaVersion *creg;
    size_t ncreg, capcreg;
    uint32_t creg_xid;
    uint64_t creg_lsn;
    ing_slot *slot; /* slot policy, zones (kept across sources) */
    PGconn *conn;
    /* the stream on the socket itself (ing_copy), on a connection without
     * TLS or GSS encryption; libpq's COPY functions otherwise */
    ing_copy *copy;
    int direct;
    int more;        /* direct: the last read filled the buffer, the socket may hold more */
    int lost;        /* direct: writing to the socket failed */
    char where[512]; /* "host=... port=... dbname=... user=..." for messages */

    uint64_t start_lsn;    /* slot's confirmed_flush_lsn at connect */
    uint64_t received;     /* highest XLogData start / keepalive end seen */
    uint64_t server_end;   /* server WAL end from the last message */
    uint64_t idle_confirm; /* safe to confirm: nothing pending at that point */
    uint64_t flushed;      /* last flush LSN reported */
    uint64_t last_event;   /* commit LSN of the last event rendered (ing_slot_cap) */
    uint64_t last_status_ms;
    uint64_t last_change_ms; /* a change, truncate or message (not a heartbeat) decoded */
    uint64_t last_hb_ms;     /* the last heartbeat statement run */
    int hb_failing;          /* the last heartbeat statement failed (warned once) */
    int in_txn;
    int fatal;     /* the last setup error will not go away by retrying */
    int pub_found; /* the last setup found the publication (it was not created then) */
    int slot_ok;   /* the slot was found or created once */
    /* the DDL capture's setup ran after an exported snapshot's import
     * (ddl_after_import): 1 done, -1 failed (ddl_err) */
    int ddl_early;
    char ddl_err[WH_ERRLEN];
    uint32_t seq;
    ing_txn txn;
    /* streamed transactions (source.streaming): the one whose stream block
     * is open (0: none), its rendering context (staged events), and the next
     * staging index of every streamed transaction not yet committed */
    uint32_t stream_xid;
    ing_txn stxn;
    struct stream_next {
        uint32_t xid, next;
        int skip;     /* its origin is in source.skip_origins: nothing staged */
        int reset;    /* a first segment: the store's staging of it is dropped first */
        char *origin; /* its origin (the first segment's Origin message), or NULL */
    } * streams;
    size_t nstreams, capstreams;
    int stream_reread;    /* a Relation or DDL message in a stream block: the types
                             are read again at the next Stream Commit */
    int visible_warned;   /* ing_catalog_wait_visible's timeout was logged */
    int reread_at_commit; /* a Relation message's lookup ran before its transaction was
                             visible (synchronous replication): read again at its Commit */
    int staging_swept;    /* this process dropped earlier processes' staging */
    int streaming;        /* this connection uses protocol 2 with streaming */
    ing_origin origin;    /* the transaction's origin, source.skip_origins */
    char sysid[32];       /* system identifier and timeline of the first connection */
    char timeline[16];
    /* the error state (run_source): failed attempts in a row; after a
     * failed stream, the point the stream must get past before the source
     * counts as working again (check_recovered); the causes logged */
    int errors;
    int fail_pending;     /* in state error until the stream got past fail_lsn */
    int fail_exact;       /* fail_lsn is the commit of the transaction that failed here */
    uint64_t fail_lsn;    /* 0: the failure was in the connect or setup */
    uint64_t up_since_ms; /* when this stream started */
    char causes[4][WH_REASON_LEN];
    int ncauses;
} repl;

static void streams_clear(repl *r);
static int streams_abandon(repl *r, char *err, size_t errlen);
static void check_recovered(repl *r, uint64_t now_ms);

/* ---- connection -------------------------------------------------------- */

static void describe_target(repl *r, PQconninfoOption *opts)
{
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
    }
    snprintf(r->where, sizeof(r->where), "host=%s port=%s dbname=%s user=%s",
             host       ? host
             : hostaddr ? hostaddr
                        : "(default)",
             port ? port : "(default)", db ? db : "(default)", user ? user : "(default)");
}

static int repl_connect(repl *r, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(r->cfg->source_dsn, &perr);
    if (!opts) {
        char why[WH_ERRLEN];
        PQfreemem(perr); /* it may quote the DSN */
        wh_pgerr_dsn_check(r->cfg->source_dsn, why, sizeof(why));
        return wh_seterr(err, errlen, "source.dsn: %s", why);
    }
    describe_target(r, opts);
    PQconninfoFree(opts);
    if (r->pre != NULL) { /* opened at start (ing_early), for the first attempt */
        r->conn = r->pre;
        r->pre = NULL;
        /* the server may have closed it while the ingestor waited for the
         * store: read what is there (a FATAL, an EOF) before trusting it */
        if (PQconsumeInput(r->conn) && PQstatus(r->conn) == CONNECTION_OK)
            return WH_OK;
        PQfinish(r->conn); /* lost meanwhile: a connection of its own */
        r->conn = NULL;
    }
    char msg[512];
    if (ing_pg_connect(&r->conn, r->cfg->source_dsn, "database", NULL, "walhook-ingestor", NULL,
                       msg, sizeof(msg)) != WH_OK)
        return wh_seterr(err, errlen, "cannot connect to PostgreSQL (%s): %s", r->where, msg);
    return WH_OK;
}

/* Runs a command; expects tuples (want_tuples) or command OK. */
static PGresult *exec_cmd(repl *r, const char *sql, int want_tuples, const char *what, char *err,
                          size_t errlen)
{
    PGresult *res = PQexec(r->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    if ((want_tuples && s != PGRES_TUPLES_OK) ||
        (!want_tuples && s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)) {
        char msg[512];
        wh_dsn_scrub(r->cfg->source_dsn, PQerrorMessage(r->conn), msg, sizeof(msg));
        wh_pg_oneline(msg, msg, sizeof(msg));
        wh_seterr(err, errlen, "%s failed: %s", what, msg);
        PQclear(res);
        return NULL;
    }
    return res;
}

static char *quote_tables(repl *r, const char *list, char *err, size_t errlen)
{
    /* "s.t1,s.t2" -> "s"."t1", "s"."t2" */
    wh_buf out;
    wh_buf_init(&out, 0);
    char *copy = strdup(list);
    if (!copy)
        goto oom;
    char *save = NULL;
    int first = 1;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ')
            *--end = '\0';
        if (!*tok)
            continue;
        char *dot = strchr(tok, '.');
        char *parts[2] = {tok, NULL};
        if (dot) {
            *dot = '\0';
            parts[1] = dot + 1;
        }
        if (!first && wh_buf_puts(&out, ", "))
            goto oom;
        first = 0;
        for (int i = 0; i < 2 && parts[i]; i++) {
            char *q = PQescapeIdentifier(r->conn, parts[i], strlen(parts[i]));
            if (!q)
                goto oom;
            int rc = (i ? wh_buf_putc(&out, '.') : 0) || wh_buf_puts(&out, q);
            PQfreemem(q);
            if (rc)
                goto oom;
        }
    }
    free(copy);
    if (first) {
        wh_buf_free(&out);
        wh_seterr(err, errlen, "source.tables: no table names in \"%s\"", list);
        return NULL;
    }
    if (wh_buf_cstr(&out))
        goto oom;
    return out.data;
oom:
    free(copy);
    wh_buf_free(&out);
    wh_seterr(err, errlen, "out of memory");
    return NULL;
}

static int ensure_publication(repl *r, char *err, size_t errlen)
{
    const wh_config *c = r->cfg;
    char *lit = PQescapeLiteral(r->conn, c->publication, strlen(c->publication));
    char *ident = PQescapeIdentifier(r->conn, c->publication, strlen(c->publication));
    char sql[4096];
    int rc = WH_ERR;
    char *tables = NULL;
    PGresult *res = NULL;
    int transient = 0; /* errors are fatal unless marked transient */
    if (!lit || !ident) {
        wh_seterr(err, errlen, "out of memory");
        goto out;
    }
    snprintf(sql, sizeof(sql), "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", lit);
    res = exec_cmd(r, sql, 1, "looking up the publication", err, errlen);
    if (!res) {
        transient = 1;
        goto out;
    }
    if (PQntuples(res) > 0) {
        r->pub_found = 1;
        rc = WH_OK;
        goto out;
    }
    r->pub_found = 0;
    if (!c->create_slot) {
        wh_seterr(err, errlen,
                  "publication \"%s\" does not exist and source.create_slot is "
                  "false: create it (CREATE PUBLICATION %s FOR ALL TABLES) or enable "
                  "source.create_slot",
                  c->publication, ident);
        goto out;
    }
    if (c->tables[0]) {
        tables = quote_tables(r, c->tables, err, errlen);
        if (!tables)
            goto out;
        if ((size_t)snprintf(sql, sizeof(sql), "CREATE PUBLICATION %s FOR TABLE %s", ident,
                             tables) >= sizeof(sql)) {
            wh_seterr(err, errlen, "source.tables: list too long");
            goto out;
        }
    } else {
        snprintf(sql, sizeof(sql), "CREATE PUBLICATION %s FOR ALL TABLES", ident);
    }
    PQclear(res);
    char msg[512];
    res = exec_cmd(r, sql, 0, "creating it", msg, sizeof(msg));
    if (!res) {
        /* the cause first: it is missing (the create is walhook's attempt) */
        wh_seterr(err, errlen,
                  "publication \"%s\" does not exist (dropped?), and %s: create it as a role that "
                  "may (%s); once it exists, changes written while it was missing cannot be "
                  "decoded through the slot (the cause will say so)",
                  c->publication, msg, sql);
        goto out;
    }
    wh_info("created publication \"%s\" (%s)", c->publication,
            c->tables[0] ? "listed tables" : "all tables");
    rc = WH_OK;
out:
    if (rc != WH_OK && !transient)
        r->fatal = 1;
    PQclear(res);
    free(tables);
    PQfreemem(lit);
    PQfreemem(ident);
    return rc;
}

/* Once the exported snapshot is imported the replication connection is
 * free again: the DDL capture is set up then, not after the whole read
 * (DDL during a long initial snapshot gets its events). */
static void ddl_after_import(void *arg)
{
    repl *r = arg;
    r->ddl_early =
        ing_ddl_setup(r->conn, r->cfg->slot, r->cfg->ddl, r->ddl_err, sizeof(r->ddl_err)) == WH_OK
            ? 1
            : -1;
}

/* Finds or creates the slot; sets r->start_lsn. `first`: slot creation is
 * allowed only on the first connection (a slot that vanished later means the
 * position is gone). */
static int ensure_slot(repl *r, int first, char *err, size_t errlen)
{
    const wh_config *c = r->cfg;
    char *lit = PQescapeLiteral(r->conn, c->slot, strlen(c->slot));
    char sql[1024];
    int rc = WH_ERR;
    int transient = 0; /* errors are fatal unless marked transient */
    PGresult *res = NULL;
    if (!lit)
        return wh_seterr(err, errlen, "out of memory");
    snprintf(sql, sizeof(sql),
             "SELECT plugin, database = current_database(), coalesce(wal_status, ''), "
             "coalesce(confirmed_flush_lsn::text, ''), slot_type "
             "FROM pg_catalog.pg_replication_slots WHERE slot_name = %s",
             lit);
    res = exec_cmd(r, sql, 1, "looking up the replication slot", err, errlen);
    if (!res) {
        transient = 1;
        goto out;
    }
    if (PQntuples(res) > 0) {
        const char *plugin = PQgetvalue(res, 0, 0);
        const char *samedb = PQgetvalue(res, 0, 1);
        const char *ws = PQgetvalue(res, 0, 2);
        const char *cf = PQgetvalue(res, 0, 3);
        const char *type = PQgetvalue(res, 0, 4);
        if (strcmp(type, "logical") != 0 || strcmp(plugin, "pgoutput") != 0) {
            wh_seterr(err, errlen,
                      "replication slot \"%s\" exists but is not a logical pgoutput "
                      "slot (type %s, plugin %s)",
                      c->slot, type, plugin);
            goto out;
        }
        if (strcmp(samedb, "t") != 0) {
            wh_seterr(err, errlen, "replication slot \"%s\" belongs to another database", c->slot);
            goto out;
        }
        if (strcmp(ws, "lost") == 0) {
            wh_seterr(err, errlen,
                      "replication slot \"%s\" was invalidated (wal_status = lost, "
                      "max_slot_wal_keep_size exceeded): the WAL it needed is gone. walhook will "
                      "not recreate it silently; drop it, resync the targets and restart",
                      c->slot);
            goto out;
        }
        if (!cf[0] || wh_lsn_parse(cf, &r->start_lsn) != WH_OK)
            r->start_lsn = 0;
        rc = WH_OK;
        r->slot_ok = 1;
        goto out;
    }
    if (!first) {
        wh_seterr(err, errlen,
                  "replication slot \"%s\" disappeared while walhook was using it "
                  "(dropped?): its position is lost; not recreating it",
                  c->slot);
        goto out;
    }
    if (!c->create_slot) {
        wh_seterr(err, errlen,
                  "replication slot \"%s\" does not exist and source.create_slot is "
                  "false: create it (SELECT pg_create_logical_replication_slot('%s', "
                  "'pgoutput')) or enable source.create_slot",
                  c->slot, c->slot);
        goto out;
    }
    PQclear(res);
    res = NULL;
    if (ing_snapshot_plan(r->snap, err, errlen) != WH_OK) { /* source.snapshot = initial */
        transient = 1;
        goto out;
    }
    /* an initial snapshot reads the tables in the slot's own snapshot */
    int export = ing_snapshot_wants_export(r->snap);
    snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput %s", c->slot,
             export ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
    res = exec_cmd(r, sql, 1, "creating the replication slot", err, errlen);
    if (!res)
        goto out;
    if (PQntuples(res) < 1 || PQnfields(res) < 2 ||
        wh_lsn_parse(PQgetvalue(res, 0, 1), &r->start_lsn) != WH_OK)
        r->start_lsn = 0;
    wh_info("created logical replication slot \"%s\" at %s", c->slot,
            PQntuples(res) > 0 && PQnfields(res) > 1 ? PQgetvalue(res, 0, 1) : "?");
    /* before any other command on this connection: the exported snapshot
     * lives until then */
    if (export && PQntuples(res) > 0 && PQnfields(res) > 2 && !PQgetisnull(res, 0, 2))
        ing_snapshot_export(r->snap, r->catalog, PQgetvalue(res, 0, 2), r->start_lsn,
                            ddl_after_import, r);
    rc = WH_OK;
    r->slot_ok = 1;
out:
    if (rc != WH_OK && !transient)
        r->fatal = 1;
    PQclear(res);
    PQfreemem(lit);
    return rc;
}

static int valid_slot_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* A reconnect must reach the same WAL history: a server restored from a
 * backup (another timeline, or WAL behind what was already confirmed) or
 * another server reusing LSNs would make the confirmed flush LSN skip
 * transactions. That is fatal; the operator decides (new slot, resync). */
static int check_same_history(repl *r, PGresult *res, char *err, size_t errlen)
{
    const char *sysid = PQgetvalue(res, 0, 0), *tli = PQgetvalue(res, 0, 1);
    uint64_t xlogpos = 0;
    if (r->sysid[0] == '\0') {
        wh_strlcpy(r->sysid, sysid, sizeof(r->sysid));
        wh_strlcpy(r->timeline, tli, sizeof(r->timeline));
        return WH_OK;
    }
    if (strcmp(r->sysid, sysid) != 0)
        return wh_seterr(err, errlen,
                         "the source is another PostgreSQL system (system identifier %s, was %s): "
                         "refusing to stream from it into the same store",
                         sysid, r->sysid);
    if (strcmp(r->timeline, tli) != 0)
        return wh_seterr(err, errlen,
                         "the source moved from timeline %s to %s (restored from a backup or "
                         "promoted): positions already confirmed may not exist in the new history; "
                         "refusing to continue",
                         r->timeline, tli);
    if (wh_lsn_parse(PQgetvalue(res, 0, 2), &xlogpos) == WH_OK && xlogpos < r->flushed) {
        char a[WH_LSN_STRLEN], b[WH_LSN_STRLEN];
        wh_lsn_format(xlogpos, a, sizeof(a));
        wh_lsn_format(r->flushed, b, sizeof(b));
        return wh_seterr(err, errlen,
                         "the source's WAL ends at %s, before the %s walhook already confirmed "
                         "(restored from a backup?): refusing to continue",
                         a, b);
    }
    return WH_OK;
}

static int repl_setup(repl *r, char *err, size_t errlen)
{
    r->fatal = 0;
    r->ddl_early = 0;
    int first = !r->slot_ok;
    if (!valid_slot_name(r->cfg->slot)) {
        r->fatal = 1;
        return wh_seterr(err, errlen,
                         "source.slot: \"%s\" is not a valid slot name "
                         "(lower-case letters, digits and underscores)",
                         r->cfg->slot);
    }
    PGresult *res = exec_cmd(r, "IDENTIFY_SYSTEM", 1, "IDENTIFY_SYSTEM", err, errlen);
    if (!res)
        return WH_ERR;
    if (PQntuples(res) < 1 || PQnfields(res) < 4 || PQgetisnull(res, 0, 3)) {
        PQclear(res);
        r->fatal = 1;
        return wh_seterr(err, errlen, "IDENTIFY_SYSTEM: not a database replication connection");
    }
    wh_info("connected to PostgreSQL (%s): system %s, timeline %s, WAL at %s", r->where,
            PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    if (check_same_history(r, res, err, errlen) != WH_OK) {
        PQclear(res);
        r->fatal = 1;
        return WH_ERR;
    }
    PQclear(res);
    /* the registry first: an initial snapshot announces versions */
    if (ing_schema_load(r->schema, r->cfg, err, errlen) != WH_OK)
        return WH_ERR;
    if (ensure_publication(r, err, errlen) || ensure_slot(r, first, err, errlen))
        return WH_ERR;
    /* after the slot: an exported snapshot was read by then (ensure_slot) */
    int early = r->ddl_early;
    r->ddl_early = 0;
    if (early < 0)
        wh_seterr(err, errlen, "%s", r->ddl_err);
    if (early < 0 ||
        (early == 0 && ing_ddl_setup(r->conn, r->cfg->slot, r->cfg->ddl, err, errlen) != WH_OK)) {
        r->fatal = 1;
        return WH_ERR;
    }

    char *publit = NULL,
         *pubident = PQescapeIdentifier(r->conn, r->cfg->publication, strlen(r->cfg->publication));
    if (pubident)
        publit = PQescapeLiteral(r->conn, pubident, strlen(pubident));
    if (!pubident || !publit) {
        PQfreemem(pubident);
        return wh_seterr(err, errlen, "out of memory");
    }
    char lsn[WH_LSN_STRLEN], sql[1024];
    wh_lsn_format(r->start_lsn, lsn, sizeof(lsn));
    r->streaming = r->cfg->streaming && PQserverVersion(r->conn) >= 140000;
    if (r->cfg->streaming && !r->streaming)
        wh_info("source.streaming: PostgreSQL %d has no streaming of transactions in progress "
                "(14 or later has); large transactions are sent at their commit",
                PQserverVersion(r->conn) / 10000);
    snprintf(sql, sizeof(sql),
             "START_REPLICATION SLOT \"%s\" LOGICAL %s (proto_version '%s', publication_names "
             "%s, messages 'true'%s)",
             r->cfg->slot, lsn, r->streaming ? "2" : "1", publit,
             r->streaming ? ", streaming 'on'" : "");
    PQfreemem(pubident);
    PQfreemem(publit);
    r->direct = !PQsslInUse(r->conn) && !PQgssEncInUse(r->conn) && PQsocket(r->conn) >= 0;
    r->more = 0;
    r->lost = 0;
    if (r->direct) {
        /* libpq is idle (every earlier result was read): its buffer holds
         * nothing of the stream, which is read from the socket from now on */
        char msg[512];
        ing_copy_reset(r->copy, PQsocket(r->conn));
        if (ing_copy_start(r->copy, sql, ING_START_TIMEOUT_MS, &wh_stop_requested, msg,
                           sizeof(msg)) != WH_OK) {
            wh_pg_oneline(msg, msg, sizeof(msg));
            return wh_seterr(err, errlen, "START_REPLICATION on slot \"%s\" failed: %s",
                             r->cfg->slot, msg);
        }
        goto started;
    }
    res = PQexec(r->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        char msg[512];
        wh_dsn_scrub(r->cfg->source_dsn, PQerrorMessage(r->conn), msg, sizeof(msg));
        wh_pg_oneline(msg, msg, sizeof(msg));
        PQclear(res);
        return wh_seterr(err, errlen, "START_REPLICATION on slot \"%s\" failed: %s", r->cfg->slot,
                         msg);
    }
    PQclear(res);
started:
    /* from here on a server error may quote a row's value (a publication
     * row filter, an output function): libpq's own text of one (in
     * PQerrorMessage) carries only severity and SQLSTATE */
    PQsetErrorVerbosity(r->conn, PQERRORS_SQLSTATE);
    /* a new stream starts outside any stream block; PostgreSQL sends every
     * transaction in progress again from its first segment */
    r->stream_xid = 0;
    ing_parser_new_connection(r->parser);
    ing_catalog_new_stream(r->catalog); /* after it: no relation holds a replaced type */
    ing_schema_new_connection(r->schema);
    ing_snapshot_reset(r->snap);
    if (ing_batcher_unstage(r->bt, err, errlen) != WH_OK ||
        streams_abandon(r, err, errlen) != WH_OK)
        return WH_ERR;
    /* what PostgreSQL sends again must not read values from its future */
    ing_toast_rewind(r->toast, r->start_lsn);
    if (r->start_lsn > r->flushed)
        r->flushed = r->start_lsn;
    if (r->flushed > r->idle_confirm)
        r->idle_confirm = r->flushed;
    wh_info("streaming from slot \"%s\" at %s (publication \"%s\")", r->cfg->slot, lsn,
            r->cfg->publication);
    return WH_OK;
}

/* ---- status updates ---------------------------------------------------- */

static uint64_t flush_lsn(repl *r)
{
    uint64_t acked = ing_batcher_acked_lsn(r->bt);
    uint64_t f = acked;
    if (r->idle_confirm > f)
        f = r->idle_confirm;
    f = ing_slot_cap(r->slot, f, acked, r->last_event); /* source.slot_policy */
    if (r->flushed > f)
        f = r->flushed; /* never move backwards */
    return f;
}

static int send_status(repl *r, char *err, size_t errlen)
{
    uint8_t msg[34];
    uint64_t flush = flush_lsn(r);
    uint64_t write = r->received > flush ? r->received : flush;
    int64_t now = wh_wallclock_us() - ING_PG_EPOCH_OFFSET_US;
    msg[0] = 'r';
    wh_put_be64(msg + 1, write);
    wh_put_be64(msg + 9, flush);
    wh_put_be64(msg + 17, flush);
    wh_put_be64(msg + 25, (uint64_t)now);
    msg[33] = 0;
    if (r->direct) {
        char m[256];
        if (ing_copy_put(r->copy, msg, sizeof(msg), ING_WRITE_TIMEOUT_MS, m, sizeof(m)) != WH_OK) {
            r->lost = 1;
            return wh_seterr(err, errlen, "sending a standby status update failed: %s", m);
        }
    } else if (PQputCopyData(r->conn, (const char *)msg, sizeof(msg)) <= 0 ||
               PQflush(r->conn) < 0) {
        char m[256];
        wh_dsn_scrub(r->cfg->source_dsn, PQerrorMessage(r->conn), m, sizeof(m));
        wh_pg_oneline(m, m, sizeof(m));
        return wh_seterr(err, errlen, "sending a standby status update failed: %s", m);
    }
    r->flushed = flush;
    r->last_status_ms = wh_now_ms();
    wh_gauge_set(&r->st->confirmed_flush_lsn, (int64_t)flush);
    return WH_OK;
}

/* source.heartbeat_interval_ms: with no change decoded for an interval,
 * runs the heartbeat statement on the catalog connection (bounded like a
 * key lookup). A failure is logged when it starts and when it ends, and
 * counted; the stream goes on either way. */
static void heartbeat(repl *r, uint64_t now_ms)
{
    uint64_t every = (uint64_t)r->cfg->heartbeat_interval_ms;
    if (every == 0 || now_ms - r->last_hb_ms < every || now_ms - r->last_change_ms < every)
        return;
    r->last_hb_ms = now_ms;
    const char *sql = r->cfg->heartbeat_query[0] ? r->cfg->heartbeat_query : ING_HEARTBEAT_SQL;
    char msg[512];
    if (ing_catalog_exec(r->catalog, r->cfg->source_dsn, sql, msg, sizeof(msg)) != WH_OK) {
        wh_counter_add(&r->st->heartbeat_errors, 1);
        if (!r->hb_failing)
            wh_warn("heartbeat (source.heartbeat_query) failed: %s; retried every %d ms", msg,
                    r->cfg->heartbeat_interval_ms);
        r->hb_failing = 1;
        return;
    }
    wh_counter_add(&r->st->heartbeats_sent, 1);
    if (r->hb_failing)
        wh_info("heartbeat (source.heartbeat_query) works again");
    r->hb_failing = 0;
}

/* ---- decoding ------------------------------------------------------------ */

/* Renders one event into the open batch, sealing and retrying once when the
 * batch is full. kind: 0 change, 1 truncate, 2 message, 3 schema (rel, its
 * description in r->sdesc; m: only its xid, the (sub)transaction it is
 * staged in), 4 DDL message. */
static int emit(repl *r, const ing_txn *t, uint32_t seq, const ing_msg *m, const ing_relation *rel,
                int kind, char *err, size_t errlen)
{
    uint32_t subxid = m != NULL ? m->xid : t->xid;
    if (kind == 0 && ing_event_check(m, err, errlen) != WH_OK)
        return WH_ERR;
    for (int attempt = 0; attempt < 2; attempt++) {
        wh_buf *b = ing_batcher_buf(r->bt);
        size_t start = b->len;
        int rc;
        if (kind == 0)
            rc = ing_event_change(b, t, seq, m, err, errlen);
        else if (kind == 1)
            rc = ing_event_truncate(b, t, seq, rel, m->flags, err, errlen);
        else if (kind == 3)
            rc = ing_event_schema(b, t, seq, rel, r->sdesc.data, r->sdesc.len, err, errlen);
        else if (kind == 4)
            rc = ing_event_ddl(b, t, seq, m, err, errlen);
        else
            rc = ing_event_message(b, t, seq, m, err, errlen);
        if (rc == WH_OK && !t->staged && t->commit_lsn > r->last_event)
            r->last_event = t->commit_lsn;
        if (rc == WH_OK)
            return t->staged ? ing_batcher_add_staged(r->bt, seq, subxid, start, err, errlen)
                             : ing_batcher_add(r->bt, t->commit_lsn, seq, t->commit_ts_us, start,
                                               err, errlen);
        if (attempt == 0 && ing_batcher_open_events(r->bt) > 0) {
            if (ing_batcher_seal(r->bt, err, errlen))
                return WH_ERR;
            continue;
        }
        break;
    }
    char lsn[WH_LSN_STRLEN];
    wh_lsn_format(t->commit_lsn, lsn, sizeof(lsn));
    const ing_relation *tr = rel != NULL ? rel : (kind == 0 && m != NULL ? m->rel : NULL);
    size_t vbytes = 0; /* the values' text, a lower bound of the event's size */
    for (int i = 0; kind == 0 && m != NULL && i < m->newtup.ncols; i++)
        vbytes += m->newtup.cols[i].len;
    for (int i = 0; kind == 0 && m != NULL && i < m->oldtup.ncols; i++)
        vbytes += m->oldtup.cols[i].len;
    if ((kind == 2 || kind == 4) && m != NULL)
        vbytes = m->content_len;
    char what[2 * WH_NAME_MAX + 64];
    if (tr != NULL)
        snprintf(what, sizeof(what), "a change of table %s.%s", tr->nspname, tr->relname);
    else
        snprintf(what, sizeof(what), "%s", kind == 4 ? "a DDL command" : "a logical message");
    /* the least ipc.max_msg_bytes that may carry it: the values and room for
     * their escapes, names and envelope */
    int64_t need = ing_msg_bytes_for(vbytes + vbytes / 16 + 65536);
    /* (and more than now: the estimate may fall short of what escapes took) */
    int64_t more = ing_msg_bytes_for(ing_batch_bytes_for(r->cfg->ipc_max_msg_bytes));
    if (need >= 0 && need < more)
        need = more;
    if (more < 0)
        need = -1;
    if (need < 0)
        return wh_seterr(
            err, errlen,
            "%s at %s cannot be delivered: its event (values of %zu bytes) is larger than the "
            "largest request walhook can carry (ipc.max_msg_bytes at most %lld); the changes after "
            "it wait behind it: to skip it (it is then lost), stop walhook and advance slot \"%s\" "
            "past it (SELECT pg_replication_slot_advance('%s', LSN) with an LSN after its commit)",
            what, lsn, vbytes, (long long)WH_IPC_MAX_MSG_BYTES_MAX, r->cfg->slot, r->cfg->slot);
    return wh_seterr(err, errlen,
                     "%s at %s cannot be delivered: its event (values of %zu bytes) is larger "
                     "than a request can carry (ipc.max_msg_bytes %lld): raise ipc.max_msg_bytes "
                     "to at least %lld (its maximum is %lld) for every daemon and restart them; "
                     "the changes after it wait behind it",
                     what, lsn, vbytes, (long long)r->cfg->ipc_max_msg_bytes, (long long)need,
                     (long long)WH_IPC_MAX_MSG_BYTES_MAX);
}

static int queue_stage_abort(repl *r, uint32_t xid, uint32_t subxid, int one_event, uint32_t idx,
                             char *err, size_t errlen);

/* ing_schema_drop_fn: a StageAbort of xid's staged event at idx alone (a
 * schema event another transaction announced first). */
static int drop_staged(void *arg, uint32_t xid, uint32_t idx)
{
    repl *r = arg;
    return queue_stage_abort(r, xid, xid, 1, idx, r->drop_err, sizeof(r->drop_err));
}

/* Before the first change of relation oid's version (since its Relation
 * message) in transaction t: its registration with a start (the store's
 * registry pruning, ing_schema.h), in the batch of the change's event, and
 * its schema event at *seq (then *seq moves on) when ing_schema_announce
 * says so. */
static int schema_first_use(repl *r, const ing_txn *t, uint32_t *seq, uint32_t oid, uint32_t subxid,
                            char *err, size_t errlen)
{
    ing_relation *rel = ing_relation_mut(r->parser, oid);
    if (rel == NULL || rel->version_done)
        return WH_OK;
    int ann = ing_schema_announce(r->schema, rel, t->commit_lsn, t->xid,
                                  t->staged ? ING_SCHEMA_STAGED : ING_SCHEMA_WHOLE);
    int ev = ann & ING_SCHEMA_EMIT;
    if (rel->version_hex[0] == '\0') /* no version: its events carry none */
        return WH_OK;
    uint64_t flsn = t->staged ? 0 : t->commit_lsn;
    uint32_t fxid = t->xid;
    /* never an event without its start registered before it */
    if (!rel->version_done || (!ev && !ing_schema_first_use(r->schema, rel->version, &flsn, &fxid)))
        return wh_seterr(err, errlen, "out of memory");
    wh_buf_reset(&r->sdesc);
    wh_buf_reset(&r->sfield);
    if (ing_schema_describe(&r->sdesc, rel) != WH_OK ||
        ing_schema_field(&r->sfield, rel, r->sdesc.data, r->sdesc.len, flsn, fxid,
                         t->staged ? 0 : t->commit_lsn, t->staged ? t->xid : 0,
                         ann & ING_SCHEMA_TAKES) != WH_OK)
        return wh_seterr(err, errlen, "out of memory");
    if (ing_batcher_add_schema(r->bt, r->sfield.data, r->sfield.len, err, errlen) != WH_OK)
        return WH_ERR;
    if (!ev)
        return WH_OK;
    /* staged in the change's subtransaction: an abort of it drops the
     * schema event with the change, as the form sent whole never has it */
    ing_msg sm;
    memset(&sm, 0, sizeof(sm));
    sm.xid = subxid != 0 ? subxid : t->xid;
    if (emit(r, t, *seq, &sm, rel, 3, err, errlen) != WH_OK)
        return WH_ERR;
    if ((ann & ING_SCHEMA_TAKES) &&
        ing_schema_take(r->schema, rel->version, t->commit_lsn, t->xid, drop_staged, r) != WH_OK)
        return wh_seterr(err, errlen, "%s", r->drop_err);
    if (t->staged) {
        char table[ING_SCHEMA_TABLE_MAX];
        ing_schema_table(rel, table, sizeof(table));
        if (ing_schema_staged_add(r->schema, rel->version, t->xid, sm.xid, *seq,
                                  ann & ING_SCHEMA_PENDING, table, r->sdesc.data,
                                  r->sdesc.len) != WH_OK)
            return wh_seterr(err, errlen, "out of memory");
    }
    (*seq)++;
    wh_info("schema version %s of %s.%s (%d columns, replica identity %s)", rel->version_hex,
            rel->nspname, rel->relname, rel->natts, ing_schema_identity_name(rel->replident));
    return WH_OK;
}

/* A DDL command's message (source.ddl): a ddl event; content that is not
 * a JSON object (never logged: it holds the statement) goes as a plain
 * message event, with a warning. */
static int emit_ddl(repl *r, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                    size_t errlen)
{
    if (!r->cfg->ddl) { /* another slot's capture: no event, its seq kept (ing_ddl.h) */
        if (!t->staged)
            return WH_OK;
        /* staged: an empty placeholder, which the store's commit numbers
         * and never stores, so the seqs are those of the whole form */
        wh_buf *b = ing_batcher_buf(r->bt);
        return ing_batcher_add_staged(r->bt, seq, m->xid, b->len, err, errlen);
    }
    wh_buf probe;
    wh_buf_init(&probe, 0);
    char derr[WH_ERRLEN];
    int ok = ing_event_ddl(&probe, t, seq, m, derr, sizeof(derr)) == WH_OK;
    wh_buf_free(&probe);
    if (!ok)
        wh_warn("%s (prefix %s): sent as a message event", derr, ING_SCHEMA_DDL_PREFIX);
    return emit(r, t, seq, m, NULL, ok ? 4 : 2, err, errlen);
}

/* A Truncate: one event per truncated relation (a relation without a
 * Relation message on this connection fails it), at *seq on; the TOAST
 * cache drops what it kept of them. */
static int emit_truncate(repl *r, const ing_txn *t, uint32_t *seq, const ing_msg *m, char *err,
                         size_t errlen)
{
    for (int i = 0; i < m->nrels; i++) {
        const ing_relation *rel = ing_relation_get(r->parser, m->rel_oids[i]);
        if (!rel) /* never guessed: the connection fails and is made again */
            return wh_seterr(err, errlen,
                             "pgoutput: truncate of relation OID %u, which has had no Relation "
                             "message on this connection: not decoded (reconnecting)",
                             m->rel_oids[i]);
        ing_toast_forget_rel(r->toast, rel->oid);
        if (!rel->version_done &&
            schema_first_use(r, t, seq, rel->oid, m->xid, err, errlen) != WH_OK)
            return WH_ERR;
        if (emit(r, t, *seq, m, rel, 1, err, errlen))
            return WH_ERR;
        (*seq)++;
        r->last_change_ms = wh_now_ms();
        wh_counter_add(&r->st->changes_received, 1);
    }
    return WH_OK;
}

/* A change (I/U/D/T or a transactional message) of a transaction from a
 * skipped origin: counted, and the TOAST cache drops what it kept of its
 * tables (the change may have replaced it). Its Commit still moves the
 * flush LSN. */
static void skipped(repl *r, const ing_msg *m)
{
    wh_counter_add(&r->st->changes_skipped, m->type == 'T' ? (uint64_t)m->nrels : 1);
    if (m->type == 'I' || m->type == 'U' || m->type == 'D')
        ing_toast_forget_rel(r->toast, m->rel_oid);
    else if (m->type == 'T')
        for (int i = 0; i < m->nrels; i++)
            ing_toast_forget_rel(r->toast, m->rel_oids[i]);
}

/* ---- streamed transactions (pgoutput protocol 2) --------------------------
 * A stream block of xid (Stream Start .. Stop) carries changes of a
 * transaction still running. They are rendered without their head and
 * staged in the store under xid, each with its staging index (counting on
 * from the transaction's first segment) and its subtransaction. Stream
 * Abort drops a subtransaction's (or the whole transaction's) staged
 * changes; Stream Commit asks the store to turn them into events at
 * (commit LSN, 0..n-1) with the heads ing_event_head_parts gives, and carries
 * the commit's end LSN as ack_lsn, like a Commit. */

static struct stream_next *stream_find(repl *r, uint32_t xid, int create)
{
    for (size_t i = 0; i < r->nstreams; i++)
        if (r->streams[i].xid == xid)
            return &r->streams[i];
    if (!create)
        return NULL;
    if (r->nstreams == r->capstreams) {
        size_t cap = r->capstreams ? r->capstreams * 2 : 8;
        struct stream_next *n = realloc(r->streams, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        r->streams = n;
        r->capstreams = cap;
    }
    struct stream_next *s = &r->streams[r->nstreams++];
    s->xid = xid;
    s->next = 0;
    s->skip = 0;
    s->reset = 0;
    s->origin = NULL;
    return s;
}

static void stream_drop(repl *r, uint32_t xid)
{
    struct stream_next *s = stream_find(r, xid, 0);
    if (s != NULL) {
        free(s->origin);
        *s = r->streams[--r->nstreams];
    }
}

static void streams_clear(repl *r)
{
    for (size_t i = 0; i < r->nstreams; i++)
        free(r->streams[i].origin);
    r->nstreams = 0;
}

static int skip_origin(void *arg, const char *name);

/* An Origin message in a stream block (after a first segment's Stream
 * Start): the transaction's events carry it, or, when source.skip_origins
 * lists it, nothing of the transaction is staged (its commit still moves
 * the flush LSN). */
static int stream_origin(repl *r, const ing_msg *m, char *err, size_t errlen)
{
    struct stream_next *s = stream_find(r, r->stream_xid, 1);
    if (s == NULL || m->name == NULL)
        return s == NULL ? wh_seterr(err, errlen, "out of memory") : WH_OK;
    if (skip_origin(r, m->name)) {
        s->skip = 1;
        return WH_OK;
    }
    ing_txn probe = r->stxn; /* the name must render */
    if (ing_txn_set_origin(&probe, m->name, err, errlen) != WH_OK)
        return WH_ERR;
    free(s->origin);
    s->origin = strdup(m->name);
    return s->origin != NULL ? WH_OK : wh_seterr(err, errlen, "out of memory");
}

static int stream_start(repl *r, const ing_msg *m, char *err, size_t errlen)
{
    if (r->in_txn)
        return wh_seterr(err, errlen, "pgoutput: stream start inside a transaction");
    if (m->xid == 0)
        return wh_seterr(err, errlen, "pgoutput: stream start of xid 0");
    int first = m->flags & 1;
    struct stream_next *s = stream_find(r, m->xid, 1);
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if (first) { /* the reset goes with its first staged event (stream_change) */
        s->next = 0;
        s->reset = 1;
    }
    r->stream_xid = m->xid;
    ing_txn *t = &r->stxn;
    *t = r->txn; /* tenant, TOAST cache */
    ing_txn_begin(t, 0, m->xid, 0);
    t->origin_len = 0;
    t->streamed = 1;
    t->staged = 1;
    return WH_OK;
}

/* Packs a Request carrying ab (tenant set here) and queues it; commit_end
 * (0: none) is the end LSN of the commit it completes (its ack_lsn). */
static int queue_packed(repl *r, Walhook__AppendBatch *ab, uint64_t commit_end, char *err,
                        size_t errlen)
{
    Walhook__Request req;
    walhook__request__init(&req);
    req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    req.append = ab;
    ab->tenant = r->cfg->tenant;
    size_t n = walhook__request__get_packed_size(&req);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return wh_seterr(err, errlen, "out of memory");
    walhook__request__pack(&req, buf);
    int rc = ing_batcher_packed(r->bt, buf, n, commit_end, err, errlen);
    free(buf);
    return rc;
}

/* Queues a request with one StageAbort (proto/walhook.proto). */
static int queue_stage_abort(repl *r, uint32_t xid, uint32_t subxid, int one_event, uint32_t idx,
                             char *err, size_t errlen)
{
    Walhook__StageAbort sa;
    walhook__stage_abort__init(&sa);
    sa.xid = xid;
    sa.subxid = subxid;
    sa.one_event = one_event != 0;
    sa.index = idx;
    Walhook__StageAbort *list[1] = {&sa};
    Walhook__AppendBatch ab;
    walhook__append_batch__init(&ab);
    ab.n_stage_aborts = 1;
    ab.stage_aborts = list;
    return queue_packed(r, &ab, 0, err, errlen);
}

/* Queues a StageAbort of (xid, subxid): subxid == xid drops all of xid
 * (and the schema versions it first used: ing_schema_forget_xid). */
static int queue_abort(repl *r, uint32_t xid, uint32_t subxid, char *err, size_t errlen)
{
    if (subxid == xid && ing_schema_forget_xid(r->schema, xid) > 0)
        ing_parser_versions_reset(r->parser);
    return queue_stage_abort(r, xid, subxid, 0, 0, err, errlen);
}

/* A new stream: the staging of every transaction that was streaming on the
 * last connection is dropped. One still running is sent again from its
 * first segment; one that ended meanwhile (PostgreSQL crashed: implicitly
 * aborted) would otherwise leave its staging in the store for good. The
 * first stream of a process drops all of the tenant's staging: an earlier
 * process (SIGKILLed, say) may have staged transactions that ended while
 * no ingestor ran, and PostgreSQL sends every transaction whose commit was
 * not confirmed again, from its first change. */
static int streams_abandon(repl *r, char *err, size_t errlen)
{
    int rc = WH_OK;
    if (!r->staging_swept) {
        streams_clear(r);
        rc = queue_abort(r, 0, 0, err, errlen);
        if (rc == WH_OK)
            r->staging_swept = 1;
        return rc;
    }
    for (size_t i = 0; i < r->nstreams && rc == WH_OK; i++) {
        if (r->streams[i].skip)
            continue; /* nothing staged */
        rc = queue_abort(r, r->streams[i].xid, r->streams[i].xid, err, errlen);
    }
    streams_clear(r);
    return rc;
}

/* ing_schema_reg_fn: the registration of a version the committing streamed
 * transaction takes over (copies: the pending announcement goes). */
static int commit_reg(void *arg, const char *table, uint64_t fp, const char *desc, size_t dlen)
{
    repl *r = arg;
    if (wh_grow(&r->creg, r->ncreg + 1, &r->capcreg, sizeof(*r->creg), 4) != WH_OK)
        return wh_seterr(r->drop_err, sizeof(r->drop_err), "out of memory");
    Walhook__SchemaVersion *v = &r->creg[r->ncreg];
    walhook__schema_version__init(v);
    v->table = strdup(table);
    v->description.data = malloc(dlen ? dlen : 1);
    if (v->table == NULL || v->description.data == NULL) {
        free(v->table);
        free(v->description.data);
        return wh_seterr(r->drop_err, sizeof(r->drop_err), "out of memory");
    }
    memcpy(v->description.data, desc, dlen);
    v->description.len = dlen;
    v->fingerprint = fp;
    v->first_lsn = r->creg_lsn;
    v->first_xid = r->creg_xid;
    v->started_lsn = r->creg_lsn;
    v->start_unproven = 1; /* streamed: protects only (st_db_schema.c) */
    v->first_use_moves = 1;
    r->ncreg++;
    return WH_OK;
}

static void commit_reg_free(repl *r)
{
    for (size_t i = 0; i < r->ncreg; i++) {
        free(r->creg[i].table);
        free(r->creg[i].description.data);
    }
    r->ncreg = 0;
}

static int stream_commit(repl *r, const ing_msg *m, char *err, size_t errlen)
{
    if (r->in_txn)
        return wh_seterr(err, errlen, "pgoutput: stream commit inside a transaction");
    ing_txn t = r->txn;
    ing_txn_begin(&t, m->commit_lsn, m->xid, m->commit_ts_us);
    t.origin_len = 0;
    struct stream_next *s = stream_find(r, m->xid, 0);
    if (s != NULL && s->skip) { /* nothing staged: only the flush LSN moves */
        stream_drop(r, m->xid);
        ing_batcher_note_commit(r->bt, m->end_lsn);
        if (ing_batcher_idle(r->bt) && m->end_lsn > r->idle_confirm)
            r->idle_confirm = m->end_lsn;
        return WH_OK;
    }
    if (s != NULL && s->origin != NULL && ing_txn_set_origin(&t, s->origin, err, errlen) != WH_OK)
        return WH_ERR;
    if (s != NULL && s->reset) {
        /* sent again after a reconnect without a change to stage: what the
         * store staged of it before is not part of it any more */
        if (queue_abort(r, m->xid, m->xid, err, errlen) != WH_OK)
            return WH_ERR;
    } else if (s == NULL) {
        wh_warn("stream commit of transaction %u without its stream in this connection: what "
                "the store staged of it is committed",
                m->xid);
    }
    stream_drop(r, m->xid);
    wh_buf head;
    wh_buf_init(&head, 0);
    size_t cut[2];
    if (ing_event_head_parts(&t, &head, cut) != WH_OK) {
        wh_buf_free(&head);
        return wh_seterr(err, errlen, "out of memory");
    }
    ProtobufCBinaryData parts[3] = {
        {.data = (uint8_t *)head.data, .len = cut[0]},
        {.data = (uint8_t *)head.data + cut[0], .len = cut[1] - cut[0]},
        {.data = (uint8_t *)head.data + cut[1], .len = head.len - cut[1]},
    };
    Walhook__StageCommit sc;
    walhook__stage_commit__init(&sc);
    sc.xid = m->xid;
    sc.commit_lsn = m->commit_lsn;
    sc.commit_ts_us = m->commit_ts_us;
    sc.n_head_parts = 3;
    sc.head_parts = parts;
    /* the staged events before it go first, without this commit's end as
     * their ack: the flush LSN passes it only once the commit is durable
     * (ing_batcher_packed notes the commit) */
    Walhook__AppendBatch ab;
    walhook__append_batch__init(&ab);
    ab.stage_commit = &sc;
    ab.ack_lsn = m->end_lsn;
    /* the versions it announced while another open transaction had too:
     * first used by it now (ing_schema.h, "pending announcements"); the
     * registrations go with the commit (the store writes them first) */
    r->ncreg = 0;
    r->creg_xid = m->xid;
    r->creg_lsn = m->commit_lsn;
    int rc = ing_schema_commit_xid(r->schema, m->xid, m->commit_lsn, drop_staged, commit_reg, r);
    Walhook__SchemaVersion **regp = NULL;
    if (rc == WH_OK && r->ncreg > 0 && (regp = calloc(r->ncreg, sizeof(*regp))) == NULL)
        rc = wh_seterr(r->drop_err, sizeof(r->drop_err), "out of memory");
    if (rc != WH_OK) {
        commit_reg_free(r);
        wh_buf_free(&head);
        return wh_seterr(err, errlen, "%s", r->drop_err);
    }
    for (size_t i = 0; i < r->ncreg; i++)
        regp[i] = &r->creg[i];
    ab.n_schemas = r->ncreg;
    ab.schemas = regp;
    if (m->commit_lsn > r->last_event)
        r->last_event = m->commit_lsn; /* its staged events become events (ing_slot_cap) */
    rc = queue_packed(r, &ab, m->end_lsn, err, errlen);
    free(regp);
    commit_reg_free(r);
    wh_buf_free(&head);
    return rc;
}

static int stream_abort(repl *r, const ing_msg *m, char *err, size_t errlen)
{
    if (m->subxid == m->xid)
        stream_drop(r, m->xid);
    else if (ing_schema_forget_sub(r->schema, m->xid, m->subxid) > 0)
        ing_parser_versions_reset(r->parser); /* its next change of them announces again */
    return queue_abort(r, m->xid, m->subxid, err, errlen);
}

static int types_refresh(repl *r, const ing_msg *m, char *err, size_t errlen);
static void ddl_decoded(repl *r, const ing_msg *m);
static void values_mismatch(repl *r, const ing_relation *rel);

/* A change, truncate or transactional message inside a stream block. */
static int stream_change(repl *r, const ing_msg *m, char *err, size_t errlen)
{
    struct stream_next *s = stream_find(r, r->stream_xid, 1);
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if (s->skip) { /* from a skipped origin */
        skipped(r, m);
        return WH_OK;
    }
    if (ing_batcher_stage(r->bt, r->stream_xid, s->reset, err, errlen) != WH_OK)
        return WH_ERR;
    s->reset = 0;
    if (m->type == 'T')
        return emit_truncate(r, &r->stxn, &s->next, m, err, errlen);
    if (m->type != 'M' && types_refresh(r, m, err, errlen) != WH_OK)
        return WH_ERR;
    if (m->type == 'M' && m->name != NULL && strcmp(m->name, ING_SCHEMA_DDL_PREFIX) == 0)
        ddl_decoded(r, m);
    if (m->type != 'M' && m->rel != NULL && !m->rel->version_done &&
        schema_first_use(r, &r->stxn, &s->next, m->rel_oid, m->xid, err, errlen) != WH_OK)
        return WH_ERR;
    if (m->type == 'M' && m->name != NULL && strcmp(m->name, ING_SCHEMA_DDL_PREFIX) == 0
            ? emit_ddl(r, &r->stxn, s->next, m, err, errlen)
            : emit(r, &r->stxn, s->next, m, NULL, m->type == 'M' ? 2 : 0, err, errlen))
        return WH_ERR;
    if (m->type != 'M')
        values_mismatch(r, m->rel);
    s->next++;
    r->last_change_ms = wh_now_ms();
    wh_counter_add(&r->st->changes_received, 1);
    return WH_OK;
}

/* Warnings of relation_key, once per relation each. */
#define KEY_WARN_NOPK 1u
#define KEY_WARN_LOOKUP 2u
#define KEY_WARN_MISMATCH 4u

/* A Relation message of a REPLICA IDENTITY FULL table: its envelope key is
 * the primary key, looked up in the catalog at each Relation message of the
 * OID (a schema change sends one again). Without a primary key, or when the
 * lookup fails, the key stays every identity column (all of them) and the
 * next Relation message of the OID tries again. Never fails the stream. */
static void relation_key(repl *r, const ing_relation *rel)
{
    if (rel == NULL || rel->replident != 'f')
        return;
    const char *const *names = NULL;
    int n = 0;
    char cerr[WH_ERRLEN];
    if (ing_catalog_pk(r->catalog, r->cfg->source_dsn, rel->oid, &names, &n, cerr, sizeof(cerr)) !=
        WH_OK) {
        if (ing_catalog_warn_once(r->catalog, rel->oid, KEY_WARN_LOOKUP))
            wh_warn("%s.%s has REPLICA IDENTITY FULL and its primary key could not be read (%s): "
                    "its events' key is every column until a later Relation message",
                    rel->nspname, rel->relname, cerr);
        return;
    }
    if (n == 0) {
        if (ing_catalog_warn_once(r->catalog, rel->oid, KEY_WARN_NOPK))
            wh_warn("%s.%s has REPLICA IDENTITY FULL and no primary key: its events' key is "
                    "every column",
                    rel->nspname, rel->relname);
        return;
    }
    if (ing_relation_set_pk(r->parser, rel->oid, names, n, cerr, sizeof(cerr)) != WH_OK) {
        if (ing_catalog_warn_once(r->catalog, rel->oid, KEY_WARN_MISMATCH))
            wh_warn("%s: its events' key is every column", cerr);
        return;
    }
    ing_catalog_warned_reset(r->catalog, rel->oid);
}

/* ing_origin_skip_fn (arg: the repl): source.skip_origins as the source
 * watch has it (the runtime list), else the file's list. */
static int skip_origin(void *arg, const char *name)
{
    const repl *r = arg;
    if (r->sw != NULL && r->sw->skip_origin != NULL)
        return r->sw->skip_origin(r->sw->arg, name);
    return wh_origins_match(r->cfg->skip_origins, name);
}

/* Warning of relation_types, once per relation until its types resolve. */
#define TYPES_WARN 8u

/* A Relation message (or a retry, ing_catalog_types_due): the render
 * descriptors of its columns whose types are not built in, read from
 * pg_type on the catalog connection. When that fails those columns are sent
 * as their text (one warning) and it is tried again later. Never fails the
 * stream. */
static void relation_types(repl *r, const ing_relation *rel)
{
    if (rel == NULL)
        return;
    char cerr[WH_ERRLEN];
    if (ing_catalog_relation_types(r->catalog, r->cfg->source_dsn, r->parser, rel->oid, cerr,
                                   sizeof(cerr)) != WH_OK) {
        if (ing_catalog_warn_once(r->catalog, rel->oid, TYPES_WARN))
            wh_warn("%s.%s: the types of its columns that are not built in could not be read "
                    "(%s): those columns are sent as their text until they can be (tried again "
                    "later)",
                    rel->nspname, rel->relname, cerr);
        return;
    }
    if (ing_catalog_warned_clear(r->catalog, rel->oid, TYPES_WARN))
        wh_info("%s.%s: the types of its columns were read: values are sent in their JSON form",
                rel->nspname, rel->relname);
}

/* Before a catalog lookup made for the transaction being decoded (its
 * Relation message, or a relation due after its DDL): waits until the
 * catalog connection sees that transaction (ing_catalog_wait_visible), so
 * the lookup reads the catalog its changes were decoded with, not the one
 * before it. Not inside a stream block: a streamed transaction is still
 * open, the catalog connection cannot see it (its relations are read again
 * at its Stream Commit, stream_reread). */
static int wait_visible(repl *r)
{
    if (!r->in_txn || r->stream_xid != 0)
        return WH_OK;
    char cerr[WH_ERRLEN];
    int rc =
        ing_catalog_wait_visible(r->catalog, r->cfg->source_dsn, r->txn.xid, cerr, sizeof(cerr));
    if (rc != WH_ERR)
        return rc;
    if (!r->visible_warned)
        wh_warn("%s: the catalog lookups for its Relation messages may read the catalog as it "
                "was before it (logged once)",
                cerr);
    else
        wh_debug("%s", cerr);
    r->visible_warned = 1;
    return WH_ERR;
}

/* A relation whose types are due (ing_catalog_types_due: a DDL command, a
 * value that did not match its type, or a failed read): read again before
 * its change m, and its schema version computed again (the shapes of its
 * composite columns are part of it: a changed one is a new version, with
 * its schema event at its first use). */
static int types_refresh(repl *r, const ing_msg *m, char *err, size_t errlen)
{
    if (m->rel == NULL || !ing_catalog_types_due(r->catalog, m->rel_oid))
        return WH_OK;
    wait_visible(r);
    relation_types(r, m->rel);
    ing_relation *rel = ing_relation_mut(r->parser, m->rel_oid);
    if (rel == NULL)
        return WH_OK;
    uint64_t was = rel->version;
    int done = rel->version_done;
    if (ing_schema_version(rel, &r->sdesc) != WH_OK)
        return wh_seterr(err, errlen, "out of memory");
    if (rel->version == was)
        rel->version_done = done; /* the same shape: nothing to announce again */
    return WH_OK;
}

/* A DDL command's message (the capture's, whether or not this slot's
 * source.ddl is on): the types are read again before the next change of
 * each relation that uses one that is not built in. Commands that cannot
 * change an existing type's shape (CREATE ..., DROP of anything but a
 * column) do not. The message is in the command's transaction: every
 * change after it is of the new shape. */
static void ddl_decoded(repl *r, const ing_msg *m)
{
    wh_json_span doc, tag, ot;
    if (wh_json_span_value((const char *)m->content, m->content_len, &doc) == WH_OK &&
        wh_json_span_get(&doc, "command_tag", 11, &tag) == WH_OK) {
        int alter = wh_json_span_hasprefix(&tag, "ALTER ", 6);
        int drop_col = wh_json_span_hasprefix(&tag, "DROP ", 5) &&
                       wh_json_span_get(&doc, "object_type", 11, &ot) == WH_OK &&
                       ot.type == WH_JSON_STRING && ot.len >= 8 &&
                       memcmp(ot.p + ot.len - 8, " column\"", 8) == 0;
        if (!alter && !drop_col)
            return;
    }
    ing_catalog_types_invalidate(r->catalog, r->parser);
    if (r->stream_xid != 0)
        r->stream_reread = 1;
}

/* After a change's event: values of a column type that did not match the
 * type's descriptor (ing_values_mismatch_take) are counted, the type is
 * read again before the relation's next change (at most once a second per
 * type), and a warning names the type once (never a value). */
static void values_mismatch(repl *r, const ing_relation *rel)
{
    const ing_vtype *vt = NULL;
    unsigned long n = ing_values_mismatch_take(&vt);
    if (n == 0)
        return;
    wh_counter_add(&r->st->values_as_text, n);
    uint32_t type_oid = 0;
    for (int i = 0; rel != NULL && i < rel->natts && type_oid == 0; i++)
        if (rel->atts[i].vtype == vt)
            type_oid = rel->atts[i].type_oid;
    if (type_oid == 0)
        return;
    if (ing_catalog_mismatch(r->catalog, r->parser, type_oid, wh_now_ms()) & ING_MISMATCH_WARN) {
        const char *name = ing_catalog_type_name(r->catalog, type_oid);
        wh_warn("values of type %s (OID %u) in %s.%s do not match the type as read from the "
                "catalog (it changed): they are sent as their text, a JSON string, and the type "
                "is read again (walhook_ingestor_values_as_text_total counts them; logged once "
                "per type)",
                name ? name : "?", type_oid, rel->nspname, rel->relname);
    }
}

static int handle_xlogdata(repl *r, uint64_t start, const uint8_t *p, size_t n, char *err,
                           size_t errlen)
{
    ing_msg m;
    if (ing_parse(r->parser, p, n, &m, err, errlen) != WH_OK)
        return WH_ERR;
    /* the walsender sends each change at its own LSN (a Begin resets it) */
    r->txn.change_lsn = start;
    r->stxn.change_lsn = start;
    int keep = ing_origin_step(&r->origin, &r->txn, &m, r->in_txn, skip_origin, r, err, errlen);
    if (keep < 0)
        return WH_ERR;
    if (keep == ING_ORIGIN_DROP) {
        skipped(r, &m);
        return WH_OK;
    }
    if (r->stream_xid != 0 && m.type == 'O')
        return stream_origin(r, &m, err, errlen);
    if (r->stream_xid != 0 && m.type == 'M' && ing_snapshot_is_watermark(&m)) {
        ing_snapshot_streamed_watermark(r->snap, &m); /* never an event */
        return WH_OK;
    }
    if (r->stream_xid != 0 && (m.type == 'I' || m.type == 'U' || m.type == 'D' || m.type == 'T' ||
                               (m.type == 'M' && (m.flags & 1))))
        return stream_change(r, &m, err, errlen);
    switch (m.type) {
    case 'S':
        return stream_start(r, &m, err, errlen);
    case 'E':
        r->stream_xid = 0; /* its staged events wait for more (ing_batcher_tick) */
        return WH_OK;
    case 'c':
        ing_snapshot_stream_commit(r->snap, m.xid);
        if (r->stream_reread) { /* its catalog changes are visible now */
            r->stream_reread = 0;
            ing_catalog_types_invalidate(r->catalog, r->parser);
        }
        return stream_commit(r, &m, err, errlen);
    case 'A':
        return stream_abort(r, &m, err, errlen);
    case 'B':
        /* out of order from a correct walsender never: a second Begin would
         * number the open transaction's events from 0 again */
        if (r->in_txn)
            return wh_seterr(err, errlen, "pgoutput: Begin (xid %u) inside transaction xid %u",
                             m.xid, r->txn.xid);
        if (r->stream_xid != 0)
            return wh_seterr(err, errlen,
                             "pgoutput: Begin (xid %u) inside the stream block of xid %u", m.xid,
                             r->stream_xid);
        if (ing_batcher_unstage(r->bt, err, errlen) != WH_OK)
            return WH_ERR;
        r->in_txn = 1;
        r->seq = 0;
        ing_txn_begin(&r->txn, m.final_lsn, m.xid, m.commit_ts_us);
        break;
    case 'C':
        if (!r->in_txn)
            return wh_seterr(err, errlen, "pgoutput: Commit without a Begin");
        if (m.commit_lsn != r->txn.commit_lsn) {
            char a[WH_LSN_STRLEN], b[WH_LSN_STRLEN];
            wh_lsn_format(m.commit_lsn, a, sizeof(a));
            wh_lsn_format(r->txn.commit_lsn, b, sizeof(b));
            return wh_seterr(err, errlen,
                             "pgoutput: Commit at %s of a transaction whose Begin said %s", a, b);
        }
        r->in_txn = 0;
        if (r->reread_at_commit) {
            r->reread_at_commit = 0;
            ing_catalog_types_invalidate(r->catalog, r->parser);
        }
        if (wh_lat_trace_on()) {
            wh_lat_trace_add("ing_commit", r->txn.commit_ts_us);
            wh_lat_trace_flush();
        }
        ing_batcher_note_commit(r->bt, m.end_lsn);
        if (ing_batcher_idle(r->bt) && m.end_lsn > r->idle_confirm)
            r->idle_confirm = m.end_lsn;
        break;
    case 'I':
    case 'U':
    case 'D':
        if (!r->in_txn)
            return wh_seterr(err, errlen, "pgoutput: change outside a transaction");
        if (types_refresh(r, &m, err, errlen) != WH_OK)
            return WH_ERR;
        if (m.rel != NULL && !m.rel->version_done &&
            schema_first_use(r, &r->txn, &r->seq, m.rel_oid, 0, err, errlen) != WH_OK)
            return WH_ERR;
        if (emit(r, &r->txn, r->seq, &m, NULL, 0, err, errlen))
            return WH_ERR;
        values_mismatch(r, m.rel);
        ing_snapshot_change(r->snap, &m, r->txn.xid);
        r->seq++;
        r->last_change_ms = wh_now_ms();
        wh_counter_add(&r->st->changes_received, 1);
        break;
    case 'T':
        if (!r->in_txn)
            return wh_seterr(err, errlen, "pgoutput: truncate outside a transaction");
        ing_snapshot_truncate(r->snap, &m);
        if (emit_truncate(r, &r->txn, &r->seq, &m, err, errlen))
            return WH_ERR;
        break;
    case 'M':
        if (ing_snapshot_is_watermark(&m)) { /* a snapshot chunk's watermark: never an event */
            if ((m.flags & 1) && r->in_txn)
                return ing_snapshot_message(r->snap, &m, &r->txn, &r->seq, err, errlen);
            break;
        }
        if (!(m.flags & 1) && m.name != NULL && strcmp(m.name, ING_HEARTBEAT_PREFIX) == 0) {
            /* our heartbeat came through: the stream is alive; nothing is
             * pending at its position when the batcher is idle */
            wh_counter_add(&r->st->heartbeats_seen, 1);
            wh_gauge_set(&r->st->heartbeat_seen_us, wh_wallclock_us());
            if (!r->in_txn && ing_batcher_idle(r->bt) && m.lsn > r->idle_confirm)
                r->idle_confirm = m.lsn;
            break;
        }
        r->last_change_ms = wh_now_ms();
        if ((m.flags & 1) && r->in_txn && m.name != NULL &&
            strcmp(m.name, ING_SCHEMA_DDL_PREFIX) == 0)
            ddl_decoded(r, &m);
        if ((m.flags & 1) && r->in_txn) {
            if (m.name != NULL && strcmp(m.name, ING_SCHEMA_DDL_PREFIX) == 0
                    ? emit_ddl(r, &r->txn, r->seq, &m, err, errlen)
                    : emit(r, &r->txn, r->seq, &m, NULL, 2, err, errlen))
                return WH_ERR;
            r->seq++;
        } else {
            /* Non-transactional: its own position. m.lsn is the end of the
             * message's WAL record, where the next record (maybe a commit,
             * whose start LSN is a transaction's position) begins; m.lsn - 1
             * lies inside the message record, so no transaction can share
             * it, and it sorts between the transactions before and after.
             * No commit time: replays must render identical bytes. */
            if (m.flags & 1)
                return wh_seterr(err, errlen,
                                 "pgoutput: transactional message outside a transaction");
            if (m.lsn == 0)
                return wh_seterr(err, errlen, "pgoutput: message with LSN 0");
            if (ing_batcher_unstage(r->bt, err, errlen) != WH_OK)
                return WH_ERR;
            ing_txn t = r->txn;
            ing_txn_begin(&t, m.lsn - 1, 0, 0);
            t.change_lsn = m.lsn;
            if (emit(r, &t, 0, &m, NULL, 2, err, errlen))
                return WH_ERR;
        }
        wh_counter_add(&r->st->changes_received, 1);
        break;
    case 'R':
        ing_toast_relation(r->toast, m.rel);
        /* a transaction held for synchronous replication (maybe for this
         * ingestor) is not visible before its acknowledgement: its
         * relations are read again at its Commit, before the next
         * transaction's changes (reread_at_commit) */
        if (r->stream_xid == 0 && wait_visible(r) == ING_CATALOG_SYNCREP)
            r->reread_at_commit = 1;
        for (int i = 0; r->stream_xid != 0 && m.rel != NULL && i < m.rel->natts; i++)
            if (m.rel->atts[i].type_oid >= ING_FIRST_NONBUILTIN_OID)
                r->stream_reread = 1;
        relation_key(r, m.rel);
        relation_types(r, m.rel);
        /* its schema version (the key above is part of it) */
        if (ing_schema_version(ing_relation_mut(r->parser, m.rel_oid), &r->sdesc) != WH_OK)
            return wh_seterr(err, errlen, "out of memory");
        break;
    default: /* Y, and O (ing_origin_step put the origin on the transaction) */
        break;
    }
    return WH_OK;
}

/* One CopyData message from the walsender. */
static int handle_copy(repl *r, const uint8_t *p, size_t n, char *err, size_t errlen)
{
    if (n < 1)
        return wh_seterr(err, errlen, "empty CopyData message");
    if (p[0] == 'w') {
        if (n < 25)
            return wh_seterr(err, errlen, "truncated XLogData header (%zu bytes)", n);
        uint64_t start = wh_get_be64(p + 1);
        uint64_t end = wh_get_be64(p + 9);
        if (start > r->received)
            r->received = start;
        if (end > r->server_end)
            r->server_end = end;
        return handle_xlogdata(r, start, p + 25, n - 25, err, errlen);
    }
    if (p[0] == 'k') {
        if (n < 18)
            return wh_seterr(err, errlen, "truncated keepalive (%zu bytes)", n);
        uint64_t end = wh_get_be64(p + 1);
        if (end > r->server_end)
            r->server_end = end;
        if (!r->in_txn && ing_batcher_idle(r->bt)) {
            /* everything received is durable and we are between
             * transactions: the idle slot must not pin WAL */
            if (end > r->idle_confirm)
                r->idle_confirm = end;
            if (end > r->received)
                r->received = end;
        }
        if (p[17])
            return send_status(r, err, errlen);
        return WH_OK;
    }
    return wh_seterr(err, errlen, "unknown CopyData message type 0x%02x", p[0]);
}

/* ---- loop ---------------------------------------------------------------- */

enum { LOOP_STOP = 0, LOOP_RECONNECT = 1, LOOP_FATAL = 2, LOOP_SOURCE = 3 };

/* Reads what the socket has into libpq's buffer (or ing_copy's); WH_ERR
 * (err: the connection was lost, the reason) when it cannot. */
static int consume_input(repl *r, char *err, size_t errlen)
{
    if (r->direct) {
        int f = ing_copy_fill(r->copy, err, errlen);
        r->more = f == 1;
        return f < 0 ? WH_ERR : WH_OK;
    }
    if (PQconsumeInput(r->conn))
        return WH_OK;
    char m[256];
    wh_dsn_scrub(r->cfg->source_dsn, PQerrorMessage(r->conn), m, sizeof(m));
    wh_pg_oneline(m, m, sizeof(m));
    return wh_seterr(err, errlen, "replication connection lost: %s", m);
}

/* The next CopyData message already read: 1 (*p, *n; *lbuf, if set, is
 * libpq's copy to free with PQfreemem), 0 none, -1 the stream ended or the
 * connection was lost (err). */
static int next_copy(repl *r, const uint8_t **p, size_t *n, char **lbuf, char *err, size_t errlen)
{
    *lbuf = NULL;
    if (r->direct)
        return ing_copy_next(r->copy, p, n, err, errlen);
    char *buf = NULL;
    int got = PQgetCopyData(r->conn, &buf, 1);
    if (got > 0) {
        *p = (const uint8_t *)buf;
        *n = (size_t)got;
        *lbuf = buf;
        return 1;
    }
    if (got == 0)
        return 0;
    char m[256];
    if (got == -1) {
        PGresult *res = PQgetResult(r->conn);
        m[0] = '\0';
        if (PQresultStatus(res) != PGRES_COMMAND_OK) /* a walsender error may quote a value */
            wh_pgerr_result(res, m, sizeof(m));
        PQclear(res);
        wh_seterr(err, errlen, "replication stream ended%s%s", m[0] ? ": " : "", m);
        return -1;
    }
    wh_dsn_scrub(r->cfg->source_dsn, PQerrorMessage(r->conn), m, sizeof(m));
    wh_pg_oneline(m, m, sizeof(m));
    wh_seterr(err, errlen, "replication connection lost: %s", m);
    return -1;
}

/* What was read is parsed: reads again at once if the socket may hold more
 * (rather than after a select, which with a low-water mark would wait for
 * more to arrive). 1 read, 0 the socket is drained, -1 lost (err). */
static int read_more(repl *r, char *err, size_t errlen)
{
    if (r->direct) {
        if (!r->more)
            return 0;
    } else {
        /* libpq reads one 16 KiB buffer at a time */
        int avail = 0, sock = PQsocket(r->conn);
        if (sock < 0 || ioctl(sock, FIONREAD, &avail) != 0 || avail <= 0)
            return 0;
    }
    return consume_input(r, err, errlen) == WH_OK ? 1 : -1;
}

static int stream(repl *r, char *err, size_t errlen)
{
    const uint64_t interval_ms = (uint64_t)r->cfg->status_interval_ms;
    const uint64_t prompt_ms = 20; /* min gap of the prompt updates after acks */
    int lowat = 1;                 /* SO_RCVLOWAT of the socket */
    uint64_t last_read_us = 0;
    r->last_status_ms = wh_now_ms();
    for (;;) {
        if (wh_stop_requested)
            return LOOP_STOP;
        if (r->sw != NULL && r->sw->changed(r->sw->arg) && !r->in_txn)
            return LOOP_SOURCE; /* between transactions: nothing half-batched */
        int need_wait = 0;      /* 1: libpq's buffer is drained, wait for the socket */
        int throttled = ing_batcher_window_full(r->bt);
        int drains = 0;
        if (!throttled) {
            for (int i = 0; i < 4096; i++) {
                const uint8_t *msg = NULL;
                size_t mlen = 0;
                char *lbuf = NULL;
                int n = next_copy(r, &msg, &mlen, &lbuf, err, errlen);
                if (n > 0) {
                    int rc = handle_copy(r, msg, mlen, err, errlen);
                    PQfreemem(lbuf);
                    if (rc != WH_OK)
                        return PQstatus(r->conn) == CONNECTION_OK && !r->lost ? LOOP_FATAL
                                                                              : LOOP_RECONNECT;
                    if (ing_batcher_window_full(r->bt)) {
                        throttled = 1;
                        break;
                    }
                    continue;
                }
                if (n == 0) {
                    /* what was read is parsed; the socket may hold more */
                    int m = drains < ING_DRAIN_READS ? read_more(r, err, errlen) : 0;
                    if (m < 0)
                        return LOOP_RECONNECT;
                    if (m > 0) {
                        drains++;
                        continue;
                    }
                    need_wait = 1;
                    break;
                }
                return LOOP_RECONNECT;
            }
        }
        /* once a pass, not per message: the lag figures' age counts while
         * the window is full (nothing read: they are frozen) */
        ing_stats_stream(r->st, !throttled);
        /* what was read is decoded: with nothing in flight it goes out at
         * once (ing_batcher_tick); while a request is in flight the open
         * batch grows (group commit) */
        /* a streamed transaction's changes are a backlog too: nothing of
         * them is delivered before its commit, so they are read in large
         * pieces */
        int backlog =
            r->stream_xid != 0 || (ing_batcher_open_events(r->bt) > 0 && r->txn.commit_ts_us > 0 &&
                                   wh_wallclock_us() - r->txn.commit_ts_us > ING_BACKLOG_AGE_US);
        ing_batcher_set_backlog(r->bt, backlog);
        uint64_t now_us = wh_now_us();
        uint64_t bdue = ing_batcher_tick(r->bt, now_us);
        uint64_t now_ms = now_us / 1000;
        /* the status timer, or promptly (at most every 20 ms) once the
         * store confirmed more: low lag, the slot advances soon */
        uint64_t since = now_ms - r->last_status_ms;
        if (since >= interval_ms || (since >= prompt_ms && flush_lsn(r) > r->flushed)) {
            if (send_status(r, err, errlen) != WH_OK)
                return LOOP_RECONNECT;
        }
        wh_gauge_set(&r->st->server_wal_end, (int64_t)r->server_end);
        check_recovered(r, now_ms);
        heartbeat(r, now_ms);
        ing_snapshot_tick(r->snap, r->catalog);

        /* wait for the socket (unless throttled), the sender (an ack:
         * window room, a flush LSN to report, an open batch to send), the
         * batch age deadline, the status timer. The sender wakes this
         * thread only for what it waits for: every ack when throttled or
         * when a prompt update is due; the sender free when an open batch
         * is held for it. A live stream just after an update sleeps through
         * the acks (one wake-up per event fewer) and wakes for the prompt
         * update at its time. */
        int prompt_due = r->last_status_ms + prompt_ms <= now_ms;
        int want_ack = throttled || prompt_due;
        ing_batcher_want_wake(r->bt, (want_ack ? ING_WAKE_ACK : 0) |
                                         (ing_batcher_held(r->bt) ? ING_WAKE_FREE : 0));
        uint64_t wait_us = (r->last_status_ms + interval_ms) * 1000 > now_us
                               ? (r->last_status_ms + interval_ms) * 1000 - now_us
                               : 0;
        if (bdue != UINT64_MAX)
            wait_us = bdue > now_us ? (bdue - now_us < wait_us ? bdue - now_us : wait_us) : 0;
        /* the prompt update after an ack, or after the acks still to come
         * (not woken by them: anything queued or in flight, a request
         * without events too). The sender is seen busy before the acked
         * LSN is read: free, it stored the LSN of its last ack before */
        int busy = ing_batcher_sender_busy(r->bt);
        if (flush_lsn(r) > r->flushed || (!want_ack && busy)) {
            uint64_t at = (r->last_status_ms + prompt_ms) * 1000;
            uint64_t w = at > now_us ? at - now_us : 0;
            if (w < wait_us)
                wait_us = w;
        }
        if ((throttled && !ing_batcher_window_full(r->bt)) ||
            (ing_batcher_held(r->bt) && !ing_batcher_sender_busy(r->bt)))
            wait_us = 0; /* an ack came before want_wake was set */
        if (!throttled && !need_wait)
            wait_us = 0; /* messages still buffered: just service the timers */
        /* a signal wakes the select (wh_signal_fd); what other threads
         * change (a source change, a backfill request, ...) is read at
         * the top of the loop, at least every 100 ms */
        if (wait_us > 100000)
            wait_us = 100000;
        int sock = PQsocket(r->conn);
        if (sock < 0) {
            wh_seterr(err, errlen, "replication connection has no socket");
            return LOOP_RECONNECT;
        }
        /* live: read what arrives at once (it is sealed and queued for the
         * sender, which sends it the moment the request in flight is
         * acknowledged) */
        int want = backlog ? ING_RCVLOWAT_BACKLOG : 1;
        if (want != lowat && setsockopt(sock, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want)) == 0)
            lowat = want;
        int wfd = ing_batcher_wake_fd(r->bt), sfd = wh_signal_fd();
        fd_set rfds;
        FD_ZERO(&rfds);
        if (!throttled)
            FD_SET(sock, &rfds);
        FD_SET(wfd, &rfds);
        int maxfd = sock > wfd ? sock : wfd;
        if (sfd >= 0 && sfd < FD_SETSIZE) {
            FD_SET(sfd, &rfds);
            maxfd = sfd > maxfd ? sfd : maxfd;
        }
        struct timeval tv = {.tv_sec = (time_t)(wait_us / 1000000),
                             .tv_usec = (suseconds_t)(wait_us % 1000000)};
        uint64_t t_sel = throttled ? wh_now_us() : 0;
        int sel = select(maxfd + 1, &rfds, NULL, NULL, &tv);
        if (throttled) /* the WAL not read meanwhile: backpressure (a metric) */
            wh_counter_add(&r->st->window_full_us, wh_now_us() - t_sel);
        if (sel < 0 && errno != EINTR) {
            wh_seterr(err, errlen, "select: %s", strerror(errno));
            return LOOP_RECONNECT;
        }
        int rd = sel > 0 && FD_ISSET(sock, &rfds);
        if (sel > 0 && sfd >= 0 && sfd < FD_SETSIZE && FD_ISSET(sfd, &rfds))
            wh_signal_drain(); /* the flags are read at the top of the loop */
        if (sel > 0 && FD_ISSET(wfd, &rfds)) {
            ing_batcher_wake_clear(r->bt);
            rd |= !throttled; /* the sender is free: take what is there */
        }
        /* below the low-water mark: read what is there now and then anyway
         * (a keepalive asking for a reply) */
        uint64_t t = wh_now_us();
        if (!rd && !throttled && lowat > 1 && t - last_read_us >= 50000)
            rd = 1;
        if (rd) {
            last_read_us = t;
            if (consume_input(r, err, errlen) != WH_OK)
                return LOOP_RECONNECT;
        }
    }
}

static void disconnect(repl *r)
{
    ing_catalog_close(r->catalog);
    if (r->conn)
        PQfinish(r->conn);
    r->conn = NULL;
    r->in_txn = 0;
    r->direct = 0;
    if (r->copy)
        ing_copy_reset(r->copy, -1);
}

/* Backoff of the retries in state error: 1 s doubling up to
 * ingestor.reconnect_max_ms (at least 1 s). */
static int error_delay_ms(const repl *r, int n)
{
    int cap = r->cfg->reconnect_max_ms > 1000 ? r->cfg->reconnect_max_ms : 1000;
    int ms = 1000;
    for (int i = 0; i < n && ms < cap; i++)
        ms *= 2;
    return ms < cap ? ms : cap;
}

/* The walsender ended the stream, or PostgreSQL refused the connection,
 * with an error that a reconnect will meet again: a dropped publication, a
 * revoked privilege, an invalidated slot, a wrong password (28P01), no
 * pg_hba.conf entry for walhook (28000). */
static int stream_error_permanent(const char *msg)
{
    static const char *const marks[] = {"does not exist",
                                        "permission denied",
                                        "must be superuser",
                                        "replication role",
                                        "invalidated",
                                        "can no longer get",
                                        "password authentication failed",
                                        "no pg_hba.conf entry",
                                        "pg_hba.conf rejects connection"};
    for (size_t i = 0; i < WH_ARRAY_LEN(marks); i++)
        if (strstr(msg, marks[i]) != NULL)
            return 1;
    return 0;
}

/* 1 when cause is not among the causes logged in this error state (then
 * it is remembered): each distinct cause is logged once, not per retry. */
static int new_cause(repl *r, const char *cause)
{
    int n = r->ncauses < (int)WH_ARRAY_LEN(r->causes) ? r->ncauses : (int)WH_ARRAY_LEN(r->causes);
    for (int i = 0; i < n; i++)
        if (strncmp(r->causes[i], cause, sizeof(r->causes[i]) - 1) == 0)
            return 0;
    wh_strlcpy(r->causes[r->ncauses % WH_ARRAY_LEN(r->causes)], cause, sizeof(r->causes[0]));
    r->ncauses++;
    return 1;
}

/* In state error, a cause not seen yet in it is logged (the state shows
 * the latest cause; the log says when it changed). */
static void error_cause(repl *r, const char *cause)
{
    if (new_cause(r, cause))
        wh_error("still in state error, now: %s", cause);
    ing_stats_set_state(r->st, ING_STATE_ERROR, cause);
}

/* Where the stream that just ended failed (before disconnect() forgets
 * its transaction): the commit of the transaction the ingestor failed on
 * (exact), else the last position received (the walsender's own error
 * comes from somewhere after it). Never 0: 0 means connect or setup. */
static uint64_t stream_fail_lsn(const repl *r, int ingestor_side, int *exact)
{
    uint64_t at = r->received > r->flushed ? r->received : r->flushed;
    *exact = 0;
    if (ingestor_side && r->in_txn && r->stream_xid == 0 && r->txn.commit_lsn > 0) {
        at = r->txn.commit_lsn;
        *exact = 1;
    }
    return at > 0 ? at : 1;
}

/* A permanent error (permission, dropped publication, invalidated slot,
 * another server, a wrong password): state "error" with the cause
 * (/readyz, `walhook status`, the status page), retried every 1 s doubling
 * up to ingestor.reconnect_max_ms, in this process: a restart would not
 * help. at: where a failed stream failed (stream_fail_lsn), 0 for a
 * failure to connect or set up (which keeps the point of an earlier failed
 * stream). */
static void enter_error(repl *r, const char *cause, uint64_t at, int exact)
{
    if (r->errors == 0) {
        wh_counter_add(&r->st->errors, 1);
        r->ncauses = 0;
        new_cause(r, cause);
        wh_error("%s; state error: retrying from 1 s doubling to %d ms, without a restart", cause,
                 error_delay_ms(r, 64));
    } else if (new_cause(r, cause)) {
        wh_error("still in state error, now: %s", cause);
    } else if (r->errors % 10 == 0) {
        wh_error("still failing after %d attempts: %s", r->errors, cause);
    }
    r->errors++;
    if (at != 0) {
        r->fail_lsn = at;
        r->fail_exact = exact;
    } else if (!r->fail_pending) {
        r->fail_lsn = 0;
        r->fail_exact = 0;
    }
    r->fail_pending = 1;
    ing_stats_set_state(r->st, ING_STATE_ERROR, cause);
}

/* In state error the stream counts as working again, and the state
 * becomes streaming (ready), only once it got past where it failed: the
 * store acknowledged, or an idle stream's keepalive reported, a position
 * beyond it. A failure the walsender reported (its exact place unknown)
 * needs the stream up for ING_STREAM_STABLE_MS as well, or six times that
 * alone (an idle source may report nothing new). A failure to connect or
 * set up is past once the stream runs. */
static void check_recovered(repl *r, uint64_t now_ms)
{
    if (!r->fail_pending)
        return;
    uint64_t up = now_ms - r->up_since_ms;
    uint64_t got = ing_batcher_acked_lsn(r->bt);
    if (r->idle_confirm > got)
        got = r->idle_confirm;
    int past = r->fail_lsn == 0 ||
               (got > r->fail_lsn && (r->fail_exact || up >= ING_STREAM_STABLE_MS)) ||
               (!r->fail_exact && up >= 6 * ING_STREAM_STABLE_MS);
    if (!past)
        return;
    char l[WH_LSN_STRLEN];
    wh_lsn_format(r->fail_lsn, l, sizeof(l));
    if (r->fail_lsn != 0)
        wh_info("the source works again after %d failed attempt%s: streaming, past %s", r->errors,
                r->errors == 1 ? "" : "s", l);
    else
        wh_info("the source works again after %d failed attempt%s: streaming", r->errors,
                r->errors == 1 ? "" : "s");
    r->fail_pending = 0;
    r->fail_lsn = 0;
    r->errors = 0;
    r->ncauses = 0;
    ing_stats_set_state(r->st, ING_STATE_STREAMING, NULL);
}

/* A stream ended by "publication ... does not exist" although this
 * connection's setup found it: it was dropped and created again, and
 * PostgreSQL decodes each change with the publications of its time, so the
 * changes written while it was missing never get through this slot. The
 * cause says so and gives the ways out. */
static void explain_stream_error(const repl *r, char *err, size_t errlen)
{
    char pubmark[WH_NAME_MAX + 32];
    snprintf(pubmark, sizeof(pubmark), "publication \"%s\" does not exist", r->cfg->publication);
    if (!r->pub_found || strstr(err, pubmark) == NULL)
        return;
    char orig[WH_REASON_LEN], l[WH_LSN_STRLEN];
    wh_strlcpy(orig, err, sizeof(orig));
    wh_lsn_format(r->flushed, l, sizeof(l));
    wh_cut_words(err, errlen,
                 "%s: it exists now, but changes after the slot's position %s were written while "
                 "it was missing (dropped and created again?), and PostgreSQL decodes each change "
                 "with the publications of its time, so slot \"%s\" cannot get past them: skip "
                 "them (they are not delivered) with SELECT pg_replication_slot_advance('%s', "
                 "'LSN') for an LSN from after the CREATE PUBLICATION (the slot must be inactive: "
                 "between walhook's attempts, or with walhook stopped), or drop the slot and "
                 "resync the targets",
                 orig, l, r->cfg->slot, r->cfg->slot);
}

/* Sleeps ms unless a stop or a source change comes first: 0 slept, 1 stop,
 * 2 source changed. */
static int pause_ms(repl *r, int ms)
{
    for (int slept = 0; slept < ms && !wh_stop_requested; slept += 50) {
        wh_sleep_ms(ms - slept < 50 ? ms - slept : 50);
        if (r->sw != NULL && r->sw->changed(r->sw->arg))
            return 2;
    }
    return wh_stop_requested ? 1 : 0;
}

/* One source: until stop (WH_OK) or a source change (2). Every failure is
 * retried: transient ones with the reconnect backoff, permanent ones in
 * state "error" (enter_error). A bad source fails before this, in the
 * ingestor's preflight (exit 1). */
static int run_source(repl *r, int first, char *err, size_t errlen)
{
    const wh_config *cfg = r->cfg;
    ing_batcher *bt = r->bt;
    ing_stats *st = r->st;
    char lerr[WH_REASON_LEN];
    ing_stats_set_state(st, ING_STATE_CONNECTING, NULL);
    int attempt = 0;
    r->errors = 0;
    r->fail_pending = 0;
    int connected = 0;
    (void)first;
    for (;;) {
        while (!connected) {
            if (attempt > 0 || r->errors > 0) {
                int ms = r->errors > 0 ? error_delay_ms(r, r->errors - 1)
                                       : wh_backoff_ms(attempt < 16 ? attempt : 16, 100,
                                                       cfg->reconnect_max_ms);
                int p = pause_ms(r, ms);
                if (p == 1) {
                    ing_batcher_seal(bt, lerr, sizeof(lerr));
                    ing_batcher_drain(bt, 10000);
                    return WH_OK;
                }
                if (p == 2)
                    return 2;
            }
            attempt++;
            if (repl_connect(r, lerr, sizeof(lerr)) == WH_OK) {
                if (repl_setup(r, lerr, sizeof(lerr)) == WH_OK) {
                    connected = 1;
                    break;
                }
                disconnect(r);
                if (r->fatal) {
                    enter_error(r, lerr, 0, 0);
                    continue;
                }
            } else if (stream_error_permanent(lerr)) { /* e.g. REPLICATION revoked */
                enter_error(r, lerr, 0, 0);
                continue;
            }
            if (r->errors > 0) { /* still failing: show the latest cause */
                error_cause(r, lerr);
            } else {
                ing_stats_set_state(st, ING_STATE_CONNECTING, lerr);
                if (attempt > 1)
                    wh_warn("reconnect attempt %d failed: %s", attempt - 1, lerr);
                else
                    wh_warn("%s; retrying", lerr); /* e.g. the slot is still held by our
                                                      previous run */
            }
        }
        /* in state error it stays so (not ready) until the stream got
         * past where it failed (check_recovered, in stream) */
        r->up_since_ms = wh_now_ms();
        if (!r->fail_pending)
            ing_stats_set_state(st, ING_STATE_STREAMING, NULL);
        /* read: marked by stream's first pass that reads (not while the
         * window is still full) */
        int what = stream(r, lerr, sizeof(lerr));
        ing_stats_stream(st, 0);
        /* the backoff starts over only once this stream has run for a
         * while: a stream that fails right after connecting (the walsender
         * meets the same bad change again) is retried with a growing delay */
        if (wh_now_ms() - r->up_since_ms >= ING_STREAM_STABLE_MS)
            attempt = 0;
        int exact = 0;
        uint64_t fail_at = stream_fail_lsn(r, what == LOOP_FATAL, &exact);
        /* whatever happens, sealed events go to the store */
        char serr[128];
        ing_batcher_seal(bt, serr, sizeof(serr));
        if (what == LOOP_STOP || what == LOOP_SOURCE) {
            wh_info("%s: waiting for the store to acknowledge pending batches",
                    what == LOOP_STOP ? "stopping" : "source changed");
            int drained = ing_batcher_drain(bt, 10000) == WH_OK;
            /* a new source waits for every ack of the old one: a late ack
             * would set the acked LSN, which the new source's flush LSN
             * comes from, to an LSN of the old server */
            while (!drained && what == LOOP_SOURCE && !wh_stop_requested) {
                wh_warn("source changed: batches of the old source still not acknowledged; the "
                        "new source waits for them");
                drained = ing_batcher_drain(bt, 10000) == WH_OK;
            }
            if (!drained)
                wh_warn("pending batches not acknowledged in 10 s; PostgreSQL will resend them");
            if (r->conn && send_status(r, lerr, sizeof(lerr)) == WH_OK) {
                char l[WH_LSN_STRLEN];
                wh_lsn_format(r->flushed, l, sizeof(l));
                wh_info("confirmed flush LSN %s to PostgreSQL", l);
            }
            if (r->conn && r->direct)
                ing_copy_end(r->copy, 1000, lerr, sizeof(lerr));
            else if (r->conn)
                PQputCopyEnd(r->conn, NULL);
            /* (a source change not drained: stopping meanwhile) */
            return what == LOOP_STOP || !drained ? WH_OK : 2;
        }
        disconnect(r);
        connected = 0;
        if (what == LOOP_FATAL || stream_error_permanent(lerr)) {
            explain_stream_error(r, lerr, sizeof(lerr));
            enter_error(r, lerr, fail_at, exact);
            if (attempt < 1)
                attempt = 1;
            continue;
        }
        if (r->fail_pending) { /* not past the failure yet: still in state error */
            r->errors++;
            error_cause(r, lerr);
            continue;
        }
        r->errors = 0; /* transient: the reconnect backoff (attempt) */
        if (attempt > 1)
            wh_warn("%s; reconnecting (attempt %d after a stream that ended at once)", lerr,
                    attempt);
        else
            wh_warn("%s; reconnecting", lerr);
        ing_stats_set_state(st, ING_STATE_CONNECTING, lerr);
    }
    (void)err;
    (void)errlen;
}

int ing_repl_run(const wh_config *cfg, ing_batcher *bt, ing_stats *st, const ing_source_watch *sw,
                 PGconn *first, char *err, size_t errlen)
{
    repl *r = calloc(1, sizeof(*r));
    wh_config *own = malloc(sizeof(*own));
    int rc = WH_ERR;
    if (r == NULL || own == NULL) {
        free(r);
        free(own);
        PQfinish(first);
        return wh_seterr(err, errlen, "out of memory");
    }
    r->pre = first;
    *own = *cfg;
    r->cfg = own;
    r->sw = sw;
    r->bt = bt;
    r->st = st;
    if (ing_txn_set_tenant(&r->txn, cfg->tenant, err, errlen) != WH_OK ||
        ing_toast_new(&r->toast, (size_t)cfg->toast_cache_bytes, &st->toast, err, errlen) !=
            WH_OK ||
        ing_toast_attach_store(r->toast, cfg, bt, err, errlen) != WH_OK)
        goto out;
    r->txn.toast = r->toast;
    if (ing_schema_new(&r->schema, err, errlen) != WH_OK)
        goto out;
    if (ing_slot_new(&r->slot, cfg->tenant, err, errlen) != WH_OK)
        goto out;
    pthread_mutex_lock(&st->reason_mu);
    st->slot = r->slot;
    pthread_mutex_unlock(&st->reason_mu);
    for (int first_source = 1;; first_source = 0) {
        if (ing_parser_new(&r->parser, err, errlen) != WH_OK ||
            ing_catalog_new(&r->catalog, err, errlen) != WH_OK ||
            ing_snapshot_new(&r->snap, own, bt, st, err, errlen) != WH_OK ||
            ing_copy_new(&r->copy, err, errlen) != WH_OK ||
            ing_slot_start(r->slot, own, err, errlen) != WH_OK)
            goto out;
        ing_snapshot_set_schema(r->snap, r->schema);
        rc = run_source(r, first_source, err, errlen);
        PQfinish(r->pre); /* for the first source only */
        r->pre = NULL;
        ing_slot_stop(r->slot);
        disconnect(r);
        ing_snapshot_free(r->snap);
        r->snap = NULL;
        ing_catalog_free(r->catalog);
        r->catalog = NULL;
        ing_parser_free(r->parser);
        r->parser = NULL;
        ing_copy_free(r->copy);
        r->copy = NULL;
        if (rc != 2)
            break;
        /* a new source: its LSNs have nothing to do with the old one's */
        sw->take(sw->arg, own);
        ing_batcher_reset_lsn(bt);
        ing_txn txn = r->txn;
        ing_toast *toast = r->toast;
        ing_schema *schema = r->schema;
        ing_slot *slot = r->slot;
        ing_toast_clear(toast); /* another database's rows */
        streams_clear(r);
        free(r->streams);
        wh_buf_free(&r->sdesc);
        wh_buf_free(&r->sfield);
        memset(r, 0, sizeof(*r));
        r->toast = toast;
        r->schema = schema;
        r->slot = slot;
        r->cfg = own;
        r->sw = sw;
        r->bt = bt;
        r->st = st;
        r->txn = txn;
        wh_info("source changed: connecting to the new source (slot \"%s\", publication \"%s\")",
                own->slot, own->publication);
    }
out:
    disconnect(r);
    PQfinish(r->pre);
    streams_clear(r);
    free(r->streams);
    pthread_mutex_lock(&st->reason_mu);
    st->slot = NULL;
    pthread_mutex_unlock(&st->reason_mu);
    ing_slot_free(r->slot);
    ing_toast_free(r->toast);
    ing_snapshot_free(r->snap);
    ing_schema_free(r->schema);
    free(r->creg);
    wh_buf_free(&r->sdesc);
    wh_buf_free(&r->sfield);
    ing_catalog_free(r->catalog);
    ing_parser_free(r->parser);
    ing_copy_free(r->copy);
    free(r);
    free(own);
    return rc;
}
