/* ing_ddl: the DDL capture's event triggers in the source database, and
 * the slots that use them. See ing_ddl.h. */
#include "ing_ddl.h"

#include <stdlib.h>
#include <string.h>

#include "ing_catalog.h"
#include "ing_schema.h"
#include "wh_dsn.h"
#include "wh_pgerr.h"
#include "wh_util.h"

#define DDL_FUNCTION_BODY                                                                          \
    "\nDECLARE r record;\n"                                                                        \
    "BEGIN\n"                                                                                      \
    "  IF TG_EVENT = 'sql_drop' THEN\n"                                                            \
    "    FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP\n"              \
    "      PERFORM pg_catalog.pg_logical_emit_message(true, '" ING_SCHEMA_DDL_PREFIX "',\n"        \
    "        pg_catalog.json_build_object('event', TG_EVENT, 'command_tag', TG_TAG,\n"             \
    "          'object_type', r.object_type, 'object_identity', r.object_identity,\n"              \
    "          'schema', r.schema_name, 'statement', pg_catalog.current_query())::text);\n"        \
    "    END LOOP;\n"                                                                              \
    "  ELSE\n"                                                                                     \
    "    FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP\n"                 \
    "      PERFORM pg_catalog.pg_logical_emit_message(true, '" ING_SCHEMA_DDL_PREFIX "',\n"        \
    "        pg_catalog.json_build_object('event', TG_EVENT, 'command_tag', r.command_tag,\n"      \
    "          'object_type', r.object_type, 'object_identity', r.object_identity,\n"              \
    "          'schema', r.schema_name, 'statement', pg_catalog.current_query())::text);\n"        \
    "    END LOOP;\n"                                                                              \
    "  END IF;\n"                                                                                  \
    "END\n"

/* One message per command (ddl_command_end) and per dropped object
 * (sql_drop): {"event","command_tag","object_type","object_identity",
 * "schema","statement"}. Replaced only when its source differs (a CREATE
 * OR REPLACE is itself a DDL command the trigger would report). */
#define DDL_FUNCTION_SQL                                                                           \
    "CREATE OR REPLACE FUNCTION public.walhook_ddl_capture() RETURNS event_trigger "               \
    "LANGUAGE plpgsql SET search_path = pg_catalog AS $walhook$" DDL_FUNCTION_BODY "$walhook$"

#define DDL_TRIGGERS_SQL                                                                           \
    "DO $walhook$ BEGIN\n"                                                                         \
    "  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = "                  \
    "'walhook_ddl_end') THEN\n"                                                                    \
    "    CREATE EVENT TRIGGER walhook_ddl_end ON ddl_command_end\n"                                \
    "      EXECUTE FUNCTION public.walhook_ddl_capture();\n"                                       \
    "  END IF;\n"                                                                                  \
    "  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = "                  \
    "'walhook_ddl_drop') THEN\n"                                                                   \
    "    CREATE EVENT TRIGGER walhook_ddl_drop ON sql_drop\n"                                      \
    "      EXECUTE FUNCTION public.walhook_ddl_capture();\n"                                       \
    "  END IF;\n"                                                                                  \
    "END $walhook$"

/* The state: 0 superuser, 1 both triggers exist, 2 the function exists and
 * is owned by the current user, 3 the user, 4 the function has this source,
 * 5 the comment of walhook_ddl_end ("" without), 6 the slots of the
 * cluster, comma-separated, 7 walhook_ddl_end exists. */
#define DDL_PROC_WHERE                                                                             \
    " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE "   \
    "n.nspname = 'public' AND p.proname = 'walhook_ddl_capture' AND p.pronargs = 0"
#define DDL_STATE_SQL                                                                              \
    "SELECT r.rolsuper, (SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname IN "       \
    "('walhook_ddl_end', 'walhook_ddl_drop')) = 2, "                                               \
    "COALESCE((SELECT p.proowner = r.oid" DDL_PROC_WHERE "), false), current_user, "               \
    "COALESCE((SELECT p.prosrc = $walhook$" DDL_FUNCTION_BODY "$walhook$" DDL_PROC_WHERE           \
    "), false), "                                                                                  \
    "COALESCE((SELECT pg_catalog.obj_description(e.oid, 'pg_event_trigger') FROM "                 \
    "pg_catalog.pg_event_trigger e WHERE e.evtname = 'walhook_ddl_end'), ''), "                    \
    "COALESCE((SELECT pg_catalog.string_agg(slot_name, ',') FROM "                                 \
    "pg_catalog.pg_replication_slots), ''), "                                                      \
    "EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'walhook_ddl_end') "        \
    "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"

#define DDL_DROP_SQL                                                                               \
    "DROP EVENT TRIGGER IF EXISTS walhook_ddl_end; DROP EVENT TRIGGER IF EXISTS "                  \
    "walhook_ddl_drop; "                                                                           \
    "DROP FUNCTION IF EXISTS public.walhook_ddl_capture()"

static int run(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        wh_dsn_scrub(NULL, PQerrorMessage(conn), msg, sizeof(msg)); /* any URI password */
        wh_pg_oneline(msg, msg, sizeof(msg));
        PQclear(res);
        return wh_seterr(err, errlen, "source.ddl: %s failed: %s", what, msg);
    }
    PQclear(res);
    return WH_OK;
}

static int valid_slot(const char *s, size_t n)
{
    if (n == 0 || n >= 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* 1 when the comma-separated list holds the name s[0..n). */
static int listed(const char *list, const char *s, size_t n)
{
    for (const char *p = list; p != NULL && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, s, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

int ing_ddl_users(const char *list, const char *slot, int add, const char *live, wh_buf *out)
{
    wh_buf_reset(out);
    size_t sn = strlen(slot);
    for (const char *p = list; p != NULL && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int keep = valid_slot(p, n) && !(n == sn && memcmp(p, slot, n) == 0) &&
                   (live == NULL || listed(live, p, n));
        if (keep && out->len > 0) { /* once each */
            if (wh_buf_cstr(out) != WH_OK)
                return WH_ERR;
            keep = !listed(out->data, p, n);
        }
        if (keep &&
            ((out->len > 0 && wh_buf_putc(out, ',') != WH_OK) || wh_buf_append(out, p, n) != WH_OK))
            return WH_ERR;
        p = e ? e + 1 : NULL;
    }
    if (add &&
        ((out->len > 0 && wh_buf_putc(out, ',') != WH_OK) || wh_buf_append(out, slot, sn) != WH_OK))
        return WH_ERR;
    return wh_buf_cstr(out);
}

typedef struct ddl_state {
    int super, triggers, owner, same, marked, listed;
    int end_exists; /* walhook_ddl_end exists (triggers: both do) */
    char user[128];
    char *list; /* the mark's tail (users), in res */
    char *live; /* the cluster's slots, in res */
    PGresult *res;
} ddl_state;

static int read_state(PGconn *conn, const char *slot, ddl_state *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    st->res = PQexec(conn, DDL_STATE_SQL);
    if (PQresultStatus(st->res) != PGRES_TUPLES_OK || PQntuples(st->res) != 1 ||
        PQnfields(st->res) < 8) {
        char msg[512];
        wh_dsn_scrub(NULL, PQerrorMessage(conn), msg, sizeof(msg)); /* any URI password */
        wh_pg_oneline(msg, msg, sizeof(msg));
        PQclear(st->res);
        st->res = NULL;
        return wh_seterr(err, errlen, "source.ddl: reading the DDL capture's state failed: %s",
                         msg);
    }
    PGresult *res = st->res;
    st->super = PQgetvalue(res, 0, 0)[0] == 't';
    st->triggers = PQgetvalue(res, 0, 1)[0] == 't';
    st->owner = PQgetvalue(res, 0, 2)[0] == 't';
    wh_strlcpy(st->user, PQgetvalue(res, 0, 3), sizeof(st->user));
    st->same = PQgetvalue(res, 0, 4)[0] == 't';
    const char *c = PQgetvalue(res, 0, 5);
    st->marked = strncmp(c, ING_DDL_MARK, strlen(ING_DDL_MARK)) == 0;
    st->list = st->marked ? (char *)c + strlen(ING_DDL_MARK) : NULL;
    st->live = PQgetvalue(res, 0, 6);
    st->listed = st->marked && listed(st->list, slot, strlen(slot));
    st->end_exists = PQgetvalue(res, 0, 7)[0] == 't';
    return WH_OK;
}

/* COMMENT ON EVENT TRIGGER walhook_ddl_end: the mark with users. */
static int write_mark(PGconn *conn, const char *users, char *err, size_t errlen)
{
    wh_buf text, sql;
    wh_buf_init(&text, 0);
    wh_buf_init(&sql, 0);
    int rc = wh_buf_printf(&text, "%s%s", ING_DDL_MARK, users);
    char *lit = rc == WH_OK ? PQescapeLiteral(conn, text.data, text.len) : NULL;
    if (lit == NULL ||
        wh_buf_printf(&sql, "COMMENT ON EVENT TRIGGER walhook_ddl_end IS %s", lit) != WH_OK)
        rc = wh_seterr(err, errlen, "out of memory");
    else
        rc = run(conn, sql.data, "COMMENT ON EVENT TRIGGER walhook_ddl_end", err, errlen);
    PQfreemem(lit);
    wh_buf_free(&text);
    wh_buf_free(&sql);
    return rc;
}

static int install(PGconn *conn, const char *slot, char *err, size_t errlen)
{
    ddl_state st;
    if (read_state(conn, slot, &st, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    wh_buf users;
    wh_buf_init(&users, 0);
    if (st.triggers && st.same && (!st.marked || st.listed))
        goto out; /* installed as this version does it (by walhook for this slot, or by hand) */
    if (!st.super && !st.triggers) {
        rc = wh_seterr(err, errlen,
                       "source.ddl: creating the event triggers walhook_ddl_end and "
                       "walhook_ddl_drop needs a superuser, and user \"%s\" is not one: "
                       "connect once as a superuser (docs/INTERNALS.md \"Schema versions and "
                       "DDL\"), or set source.ddl = false",
                       st.user);
        goto out;
    }
    if (!st.same && !st.super && !st.owner) {
        rc = wh_seterr(err, errlen,
                       "source.ddl: replacing function public.walhook_ddl_capture() needs its "
                       "ownership (or a superuser), and user \"%s\" has neither",
                       st.user);
        goto out;
    }
    if (!st.same &&
        (rc = run(conn, DDL_FUNCTION_SQL, "CREATE OR REPLACE FUNCTION public.walhook_ddl_capture()",
                  err, errlen)) != WH_OK)
        goto out;
    if (!st.triggers && st.end_exists && !st.marked) {
        /* one of the pair was dropped by hand, and walhook_ddl_end is not
         * walhook's (no mark): the missing one is created, no mark written
         * (walhook never drops what it did not create) */
        if ((rc = run(conn, DDL_TRIGGERS_SQL, "CREATE EVENT TRIGGER walhook_ddl_drop", err,
                      errlen)) != WH_OK)
            goto out;
        wh_warn("source.ddl: created the missing event trigger walhook_ddl_drop next to an "
                "existing walhook_ddl_end walhook did not create (neither is dropped when "
                "source.ddl turns off)");
    } else if (!st.triggers) {
        /* none, or walhook's walhook_ddl_end without its pair: its users
         * are kept */
        if ((rc = run(conn, DDL_TRIGGERS_SQL,
                      "CREATE EVENT TRIGGER walhook_ddl_end/walhook_ddl_drop", err, errlen)) !=
                WH_OK ||
            (rc = ing_ddl_users(st.marked ? st.list : "", slot, 1, st.marked ? st.live : NULL,
                                &users)) != WH_OK ||
            (rc = write_mark(conn, users.data, err, errlen)) != WH_OK)
            goto out;
        wh_info("source.ddl: created the event triggers walhook_ddl_end and walhook_ddl_drop "
                "(used by slot %s)",
                slot);
    } else if (st.marked && !st.listed) {
        if (!st.super) { /* the owner of an event trigger is a superuser */
            wh_warn("source.ddl: user \"%s\" cannot add slot %s to the users of the event "
                    "triggers walhook created (a superuser can): they are used as they are, and "
                    "go when their last registered slot turns source.ddl off",
                    st.user, slot);
            goto out;
        }
        if ((rc = ing_ddl_users(st.list, slot, 1, st.live, &users)) != WH_OK ||
            (rc = write_mark(conn, users.data, err, errlen)) != WH_OK)
            goto out;
        wh_info("source.ddl: slot %s uses the event triggers walhook created (slots: %s)", slot,
                users.data);
    }
out:
    wh_buf_free(&users);
    PQclear(st.res);
    return rc;
}

static int release(PGconn *conn, const char *slot, char *err, size_t errlen)
{
    ddl_state st;
    if (read_state(conn, slot, &st, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    wh_buf users;
    wh_buf_init(&users, 0);
    if (!st.listed)
        goto out; /* none, not walhook's, or not this slot's */
    if (!st.super) {
        wh_warn("source.ddl is off, and user \"%s\" cannot remove slot %s from the users of the "
                "event triggers walhook_ddl_end and walhook_ddl_drop (a superuser can): they stay "
                "(their messages are no events of this tenant)",
                st.user, slot);
        goto out;
    }
    if ((rc = ing_ddl_users(st.list, slot, 0, st.live, &users)) != WH_OK)
        goto out;
    if (users.len == 0) {
        if ((rc = run(conn, DDL_DROP_SQL, "dropping the DDL capture", err, errlen)) != WH_OK)
            goto out;
        wh_info("source.ddl is off: dropped the event triggers walhook_ddl_end and "
                "walhook_ddl_drop and the function public.walhook_ddl_capture() (no other slot "
                "uses them)");
    } else {
        if ((rc = write_mark(conn, users.data, err, errlen)) != WH_OK)
            goto out;
        wh_info("source.ddl is off for slot %s: the event triggers stay for slots %s", slot,
                users.data);
    }
out:
    wh_buf_free(&users);
    PQclear(st.res);
    return rc;
}

int ing_ddl_setup(PGconn *conn, const char *slot, int on, char *err, size_t errlen)
{
    char sql[96], lerr[WH_ERRLEN];
    snprintf(sql, sizeof(sql), "SELECT pg_catalog.pg_advisory_xact_lock(%d)", ING_DDL_LOCK);
    int rc = run(conn, "BEGIN", "BEGIN", lerr, sizeof(lerr));
    if (rc == WH_OK) {
        rc = run(conn, sql, "taking the DDL capture's lock", lerr, sizeof(lerr));
        if (rc == WH_OK)
            rc = on ? install(conn, slot, lerr, sizeof(lerr))
                    : release(conn, slot, lerr, sizeof(lerr));
        if (rc == WH_OK)
            rc = run(conn, "COMMIT", "COMMIT", lerr, sizeof(lerr));
        else
            PQclear(PQexec(conn, "ROLLBACK"));
    }
    if (rc == WH_OK)
        return WH_OK;
    if (on)
        return wh_seterr(err, errlen, "%s", lerr);
    wh_warn("%s (source.ddl is off: no ddl events either way)", lerr);
    return WH_OK;
}
