/* Envelope rendering: the captured PostgreSQL 15 session end to end (parse
 * -> render), plus synthetic tuples for the key/before/after/unchanged
 * rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_event.h"
#include "../../services/ingestor/ing_origin.h"
#include "../../services/ingestor/ing_values.h"
#include "../../services/ingestor/ing_pgoutput.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

#include "data/ingestor/pgoutput_origin.h"
#include "ingestor_session.h"

/* Renders the whole session like the replication loop does. */
static int render_session(wh_json **events, int max)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_txn txn;
    memset(&txn, 0, sizeof(txn));
    assert_int_equal(ing_txn_set_tenant(&txn, "default", err, sizeof(err)), WH_OK);
    uint32_t seq = 0;
    int in_txn = 0, nev = 0;
    wh_buf b;
    wh_buf_init(&b, 0);
    for (size_t i = 0; i < NMSG; i++) {
        size_t n;
        uint8_t *buf = unhex(pgoutput_session_hex[i], &n);
        ing_msg m;
        assert_int_equal(ing_parse(p, buf, n, &m, err, sizeof(err)), WH_OK);
        size_t start = b.len;
        int made = 0;
        switch (m.type) {
        case 'B':
            ing_txn_begin(&txn, m.final_lsn, m.xid, m.commit_ts_us);
            seq = 0;
            in_txn = 1;
            break;
        case 'C':
            in_txn = 0;
            break;
        case 'I':
        case 'U':
        case 'D':
            assert_int_equal(ing_event_change(&b, &txn, seq++, &m, err, sizeof(err)), WH_OK);
            made = 1;
            break;
        case 'T':
            for (int k = 0; k < m.nrels; k++) {
                const ing_relation *r = ing_relation_get(p, m.rel_oids[k]);
                assert_non_null(r);
                assert_int_equal(ing_event_truncate(&b, &txn, seq++, r, m.flags, err, sizeof(err)),
                                 WH_OK);
                wh_json *j;
                if (wh_json_parse(b.data + start, b.len - start, &j, err, sizeof(err)))
                    fail_msg("invalid JSON: %s", err);
                events[nev++] = j;
                start = b.len;
            }
            break;
        case 'M':
            if (in_txn) {
                assert_int_equal(ing_event_message(&b, &txn, seq++, &m, err, sizeof(err)), WH_OK);
            } else {
                ing_txn t = txn;
                ing_txn_begin(&t, m.lsn, 0, 0);
                assert_int_equal(ing_event_message(&b, &t, 0, &m, err, sizeof(err)), WH_OK);
            }
            made = 1;
            break;
        }
        if (made) {
            wh_json *j;
            if (wh_json_parse(b.data + start, b.len - start, &j, err, sizeof(err)))
                fail_msg("invalid JSON: %s", err);
            assert_true(nev < max);
            events[nev++] = j;
        }
        free(buf);
    }
    wh_buf_free(&b);
    ing_parser_free(p);
    return nev;
}

static const char *sget(const wh_json *o, const char *k)
{
    const wh_json *v = wh_json_get(o, k);
    if (!v)
        fail_msg("member %s missing", k);
    return v->type == WH_JSON_STRING ? v->str : v->type == WH_JSON_NULL ? "(null)" : "(other)";
}

static void test_session_envelopes(void **state)
{
    wh_json *ev[32];
    int n = render_session(ev, 32);
    /* I, U, U, D, I, I(tfull), U, D, T, T, M, M */
    assert_int_equal(n, 12);
    static const char *ops[] = {"insert", "update", "update",   "delete",   "insert",  "insert",
                                "update", "delete", "truncate", "truncate", "message", "message"};
    for (int i = 0; i < n; i++) {
        assert_string_equal(sget(ev[i], "op"), ops[i]);
        assert_string_equal(sget(ev[i], "tenant"), "default");
        /* id = tenant:lsn:seq */
        char want[128];
        snprintf(want, sizeof(want), "default:%s:%d", sget(ev[i], "lsn"),
                 (int)wh_json_get(ev[i], "seq")->num);
        assert_string_equal(sget(ev[i], "id"), want);
        assert_non_null(wh_json_get(ev[i], "xid"));
        const char *ts = sget(ev[i], "commit_ts");
        if (i == 11) {
            /* the non-transactional message has no commit time: replays
             * must render identical bytes */
            assert_string_equal(ts, "(null)");
            continue;
        }
        assert_int_equal(strlen(ts), 27);
        assert_int_equal(ts[26], 'Z');
    }
    /* insert: all types */
    const wh_json *a = wh_json_get(ev[0], "after");
    assert_int_equal(a->type, WH_JSON_OBJECT);
    assert_int_equal(wh_json_get(a, "id")->num, 1);
    assert_string_equal(wh_json_get(a, "note")->str, "h\xc3\xa9 \"q\"\n");
    assert_string_equal(wh_json_get(a, "n")->str, "12.50");
    assert_string_equal(wh_json_get(a, "f")->str, "NaN");
    assert_int_equal(wh_json_get(a, "b")->type, WH_JSON_BOOL);
    assert_true(wh_json_get(a, "b")->boolean);
    const wh_json *j = wh_json_get(a, "j");
    assert_int_equal(j->type, WH_JSON_OBJECT);
    assert_int_equal(wh_json_get(j, "a")->count, 2);
    assert_string_equal(wh_json_get(a, "ts")->str, "2026-11-22T01:02:03.123456Z");
    assert_string_equal(wh_json_get(a, "d")->str, "2026-11-22");
    assert_string_equal(wh_json_get(a, "u")->str, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_string_equal(wh_json_get(a, "by")->str, "AP8Q");
    assert_int_equal(wh_json_get(a, "big")->len, 16000);
    assert_string_equal(wh_json_get(a, "i8")->str, "-9223372036854775808");
    assert_int_equal(wh_json_get(a, "r")->type, WH_JSON_NUMBER);
    assert_string_equal(wh_json_get(a, "tsn")->str, "2026-11-22T01:02:03");
    assert_int_equal(wh_json_get(wh_json_get(ev[0], "key"), "id")->num, 1);
    assert_int_equal(wh_json_get(wh_json_get(ev[0], "key"), "id")->num, 1);
    assert_int_equal(wh_json_get(ev[0], "key")->count, 1);
    assert_int_equal(wh_json_get(ev[0], "before")->type, WH_JSON_NULL);
    assert_null(wh_json_get(ev[0], "unchanged"));
    assert_string_equal(sget(ev[0], "schema"), "public");
    assert_string_equal(sget(ev[0], "table"), "t1");

    /* update with unchanged TOAST: big omitted and listed */
    a = wh_json_get(ev[1], "after");
    assert_null(wh_json_get(a, "big"));
    assert_string_equal(wh_json_get(a, "note")->str, "upd");
    const wh_json *u = wh_json_get(ev[1], "unchanged");
    assert_non_null(u);
    assert_int_equal(u->count, 1);
    assert_string_equal(wh_json_at(u, 0)->str, "big");
    assert_int_equal(wh_json_get(ev[1], "before")->type, WH_JSON_NULL);
    assert_int_equal(wh_json_get(wh_json_get(ev[1], "key"), "id")->num, 1);

    /* key change: key from the old 'K' tuple, before = key columns only */
    assert_int_equal(wh_json_get(wh_json_get(ev[2], "key"), "id")->num, 1);
    const wh_json *bf = wh_json_get(ev[2], "before");
    assert_int_equal(bf->count, 1);
    assert_int_equal(wh_json_get(bf, "id")->num, 1);
    assert_int_equal(wh_json_get(wh_json_get(ev[2], "after"), "id")->num, 2);

    /* delete: key from old, after null */
    assert_int_equal(wh_json_get(wh_json_get(ev[3], "key"), "id")->num, 2);
    assert_int_equal(wh_json_get(ev[3], "after")->type, WH_JSON_NULL);
    assert_int_equal(wh_json_get(ev[3], "before")->count, 1);

    /* insert with NULLs */
    a = wh_json_get(ev[4], "after");
    assert_int_equal(wh_json_get(a, "note")->type, WH_JSON_NULL);
    assert_int_equal(a->count, 14);

    /* REPLICA IDENTITY FULL: before is the full old row, key all columns */
    bf = wh_json_get(ev[6], "before");
    assert_int_equal(bf->count, 2);
    assert_string_equal(wh_json_get(bf, "v")->str, "a");
    assert_string_equal(wh_json_get(wh_json_get(ev[6], "after"), "v")->str, "b");
    assert_int_equal(wh_json_get(ev[6], "key")->count, 2);
    assert_string_equal(wh_json_get(wh_json_get(ev[7], "before"), "v")->str, "b");

    /* truncate */
    assert_string_equal(sget(ev[8], "table"), "t1");
    assert_string_equal(sget(ev[9], "table"), "tfull");
    const wh_json *o = wh_json_get(ev[8], "options");
    assert_true(wh_json_get(o, "cascade")->boolean);
    assert_true(wh_json_get(o, "restart_identity")->boolean);
    assert_int_equal(wh_json_get(ev[8], "key")->type, WH_JSON_NULL);
    assert_int_equal(wh_json_get(ev[9], "seq")->num, 1);

    /* messages */
    assert_string_equal(sget(ev[10], "prefix"), "wh");
    assert_string_equal(sget(ev[10], "content"), "aGVsbG8=");
    assert_int_equal(wh_json_get(ev[10], "schema")->type, WH_JSON_NULL);
    assert_string_equal(sget(ev[11], "prefix"), "nt");
    assert_string_equal(sget(ev[11], "content"), "AAE=");
    for (int i = 0; i < n; i++)
        wh_json_free(ev[i]);
}

/* Exact bytes for a synthetic update, so the format is pinned down. */
static void test_exact_bytes(void **state)
{
    ing_attr atts[3] = {{.flags = 1, .name = "id", .type_oid = 23, .typmod = -1},
                        {.flags = 0, .name = "name", .type_oid = 25, .typmod = -1},
                        {.flags = 0, .name = "doc", .type_oid = 25, .typmod = -1}};
    ing_relation rel = {
        .oid = 42, .nspname = "s", .relname = "t", .replident = 'd', .natts = 3, .atts = atts};
    ing_col oldc[3] = {{'t', 1, "7"}, {'n', 0, NULL}, {'n', 0, NULL}};
    ing_col newc[3] = {{'t', 1, "8"}, {'t', 2, "a\""}, {'u', 0, NULL}};
    ing_msg m;
    memset(&m, 0, sizeof(m));
    m.type = 'U';
    m.rel = &rel;
    m.rel_oid = 42;
    m.old_kind = 'K';
    m.oldtup.ncols = 3;
    m.oldtup.cols = oldc;
    m.has_new = 1;
    m.newtup.ncols = 3;
    m.newtup.cols = newc;
    ing_txn t;
    char err[WH_ERRLEN];
    assert_int_equal(ing_txn_set_tenant(&t, "acme", err, sizeof(err)), WH_OK);
    ing_txn_begin(&t, UINT64_C(0x1A2B3C8), 735, INT64_C(1795309323123456));
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(ing_event_change(&b, &t, 3, &m, err, sizeof(err)), WH_OK);
    wh_buf_cstr(&b);
    assert_string_equal(b.data,
                        "{\"id\":\"acme:0/1A2B3C8:3\",\"tenant\":\"acme\",\"lsn\":\"0/1A2B3C8\","
                        "\"seq\":3,\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\","
                        "\"op\":\"update\",\"schema\":\"s\",\"table\":\"t\",\"key\":{\"id\":7},"
                        "\"before\":{\"id\":7},\"after\":{\"id\":8,\"name\":\"a\\\"\"},"
                        "\"unchanged\":[\"doc\"]}");

    /* the change's own LSN (its XLogData start) after op; a read row (a
     * snapshot's) never carries it; ing_txn_begin clears it */
    t.change_lsn = UINT64_C(0x1A2B300);
    wh_buf_reset(&b);
    assert_int_equal(ing_event_change(&b, &t, 3, &m, err, sizeof(err)), WH_OK);
    wh_buf_cstr(&b);
    assert_non_null(strstr(b.data, "\"op\":\"update\",\"change_lsn\":\"0/1A2B300\",\"schema\":"));
    m.type = 'r';
    wh_buf_reset(&b);
    assert_int_equal(ing_event_change(&b, &t, 3, &m, err, sizeof(err)), WH_OK);
    wh_buf_cstr(&b);
    assert_non_null(strstr(b.data, "\"op\":\"read\",\"schema\":"));
    m.type = 'U';
    ing_txn_begin(&t, UINT64_C(0x1A2B3C8), 735, INT64_C(1795309323123456));
    assert_true(t.change_lsn == 0);
    wh_buf_reset(&b);
    assert_int_equal(ing_event_change(&b, &t, 3, &m, err, sizeof(err)), WH_OK);

    /* a tuple that does not match the relation is an error, buffer untouched */
    size_t len = b.len;
    m.newtup.ncols = 2;
    assert_int_equal(ing_event_change(&b, &t, 4, &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "column count"));
    assert_int_equal(b.len, len);
    /* no relation */
    m.rel = NULL;
    assert_int_equal(ing_event_change(&b, &t, 4, &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "OID 42"));

    /* a full buffer rolls back */
    wh_buf small;
    wh_buf_init(&small, 40);
    m.rel = &rel;
    m.newtup.ncols = 3;
    assert_int_equal(ing_event_change(&small, &t, 4, &m, err, sizeof(err)), WH_ERR);
    assert_int_equal(small.len, 0);
    wh_buf_free(&small);

    /* relation without key columns: key null; insert: before null */
    atts[0].flags = 0;
    m.type = 'I';
    m.old_kind = 0;
    wh_buf_reset(&b);
    assert_int_equal(ing_event_change(&b, &t, 0, &m, err, sizeof(err)), WH_OK);
    wh_buf_cstr(&b);
    assert_non_null(strstr(b.data, "\"key\":null,\"before\":null,\"after\":{"));
    wh_buf_free(&b);

    /* tenant needing escapes */
    assert_int_equal(ing_txn_set_tenant(&t, "a\"b", err, sizeof(err)), WH_OK);
    assert_string_equal(t.tenant_esc, "a\\\"b");
}

/* REPLICA IDENTITY FULL: every column is flagged identity and the old
 * tuple ('O') is the whole row. With the primary key known (key_pk, set by
 * ing_relation_set_pk from the catalog) key = the primary key columns only,
 * before = the whole old row; without it, key = every column as before. */
static void render(wh_buf *b, const ing_msg *m)
{
    ing_txn t;
    char err[WH_ERRLEN];
    assert_int_equal(ing_txn_set_tenant(&t, "acme", err, sizeof(err)), WH_OK);
    ing_txn_begin(&t, UINT64_C(0x1A2B3C8), 735, INT64_C(1795309323123456));
    wh_buf_reset(b);
    assert_int_equal(ing_event_change(b, &t, 0, m, err, sizeof(err)), WH_OK);
    wh_buf_cstr(b);
}

static void test_identity_full_pk(void **state)
{
    ing_attr atts[4] = {{.flags = 1, .name = "a", .type_oid = 23, .typmod = -1},
                        {.flags = 1, .name = "v", .type_oid = 25, .typmod = -1},
                        {.flags = 1, .name = "b", .type_oid = 23, .typmod = -1},
                        {.flags = 1, .name = "w", .type_oid = 23, .typmod = -1}};
    ing_relation rel = {
        .oid = 9, .nspname = "s", .relname = "t", .replident = 'f', .natts = 4, .atts = atts};
    ing_col oldc[4] = {{'t', 1, "1"}, {'t', 1, "x"}, {'t', 1, "2"}, {'n', 0, NULL}};
    ing_col newc[4] = {{'t', 1, "1"}, {'t', 1, "y"}, {'t', 1, "2"}, {'t', 1, "5"}};
    ing_msg m;
    memset(&m, 0, sizeof(m));
    m.type = 'U';
    m.rel = &rel;
    m.rel_oid = 9;
    m.old_kind = 'O';
    m.oldtup.ncols = 4;
    m.oldtup.cols = oldc;
    m.has_new = 1;
    m.newtup.ncols = 4;
    m.newtup.cols = newc;
    wh_buf b;
    wh_buf_init(&b, 0);

    /* no primary key known: key = every identity column (all of them) */
    render(&b, &m);
    assert_non_null(strstr(b.data, "\"key\":{\"a\":1,\"v\":\"x\",\"b\":2,\"w\":null},"
                                   "\"before\":{\"a\":1,\"v\":\"x\",\"b\":2,\"w\":null},"
                                   "\"after\":{\"a\":1,\"v\":\"y\",\"b\":2,\"w\":5}}"));

    /* composite primary key (b, a): key = those columns only, before whole */
    atts[0].flags |= ING_ATTR_PK;
    atts[2].flags |= ING_ATTR_PK;
    rel.key_pk = 1;
    render(&b, &m);
    assert_non_null(strstr(b.data, "\"key\":{\"a\":1,\"b\":2},"
                                   "\"before\":{\"a\":1,\"v\":\"x\",\"b\":2,\"w\":null},"
                                   "\"after\":{\"a\":1,\"v\":\"y\",\"b\":2,\"w\":5}}"));
    /* delete: key from the old tuple */
    m.type = 'D';
    m.has_new = 0;
    render(&b, &m);
    assert_non_null(strstr(b.data, "\"key\":{\"a\":1,\"b\":2},\"before\":{\"a\":1,"));
    assert_non_null(strstr(b.data, "\"after\":null}"));
    /* insert: key from the new tuple */
    m.type = 'I';
    m.old_kind = 0;
    m.has_new = 1;
    newc[0].data = "3";
    render(&b, &m);
    assert_non_null(strstr(b.data, "\"key\":{\"a\":3,\"b\":2},\"before\":null,"));
    wh_buf_free(&b);
}

/* ing_relation_set_pk on a parsed Relation message: names matched to
 * columns; an unknown name or an empty list leaves key_pk 0 and no PK bit;
 * a flags byte with other bits than the identity one keeps only that bit. */
static void test_relation_set_pk(void **state)
{
    /* 'R', oid 77, "s\0", "t\0", 'f', 3 columns: (0xFF, "id", int4, -1),
     * (1, "x", text, -1), (1, "y", text, -1) */
    static const uint8_t msg[] = {'R',  0,   0,   0, 77, 's', 0,    't',  0,    'f',  0,    3,
                                  0xFF, 'i', 'd', 0, 0,  0,   0,    23,   0xFF, 0xFF, 0xFF, 0xFF,
                                  1,    'x', 0,   0, 0,  0,   25,   0xFF, 0xFF, 0xFF, 0xFF, 1,
                                  'y',  0,   0,   0, 0,  25,  0xFF, 0xFF, 0xFF, 0xFF};
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_msg m;
    assert_int_equal(ing_parse(p, msg, sizeof(msg), &m, err, sizeof(err)), WH_OK);
    const ing_relation *r = ing_relation_get(p, 77);
    assert_non_null(r);
    assert_int_equal(r->replident, 'f');
    assert_int_equal(r->atts[0].flags, ING_ATTR_IDENT);
    const char *ok[] = {"y", "id"};
    assert_int_equal(ing_relation_set_pk(p, 77, ok, 2, err, sizeof(err)), WH_OK);
    assert_int_equal(r->key_pk, 1);
    assert_int_equal(r->atts[0].flags, ING_ATTR_IDENT | ING_ATTR_PK);
    assert_int_equal(r->atts[1].flags, ING_ATTR_IDENT);
    assert_int_equal(r->atts[2].flags, ING_ATTR_IDENT | ING_ATTR_PK);
    const char *bad[] = {"id", "gone"};
    assert_int_equal(ing_relation_set_pk(p, 77, bad, 2, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "\"gone\""));
    assert_int_equal(r->key_pk, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r->atts[i].flags & ING_ATTR_PK, 0);
    assert_int_equal(ing_relation_set_pk(p, 77, ok, 0, err, sizeof(err)), WH_ERR);
    assert_int_equal(ing_relation_set_pk(p, 78, ok, 2, err, sizeof(err)), WH_ERR);
    /* a new Relation message for the OID starts without the key */
    assert_int_equal(ing_relation_set_pk(p, 77, ok, 2, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_parse(p, msg, sizeof(msg), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_relation_get(p, 77)->key_pk, 0);
    ing_parser_free(p);
}

/* ing_origin_skip_fn over a fixed source.skip_origins list */
static int skip_listed(void *arg, const char *name)
{
    return wh_origins_match(arg, name);
}

/* Renders the captured origin session (data/ingestor/pgoutput_origin.*)
 * the way the replication loop does, with source.skip_origins = list:
 * every event's JSON into out[], one per line; returns the count. */
static int render_origin_session(const char *list, ing_origin *o, char out[][512], int max)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_txn txn;
    memset(&txn, 0, sizeof(txn));
    memset(o, 0, sizeof(*o));
    assert_int_equal(ing_txn_set_tenant(&txn, "default", err, sizeof(err)), WH_OK);
    uint32_t seq = 0;
    int in_txn = 0, nev = 0;
    wh_buf b;
    wh_buf_init(&b, 0);
    for (size_t i = 0; i < sizeof(pgoutput_origin_hex) / sizeof(pgoutput_origin_hex[0]); i++) {
        size_t n;
        uint8_t *buf = unhex(pgoutput_origin_hex[i], &n);
        ing_msg m;
        assert_int_equal(ing_parse(p, buf, n, &m, err, sizeof(err)), WH_OK);
        int keep =
            ing_origin_step(o, &txn, &m, in_txn, skip_listed, (void *)list, err, sizeof(err));
        assert_true(keep == ING_ORIGIN_KEEP || keep == ING_ORIGIN_DROP);
        if (keep == ING_ORIGIN_KEEP) {
            switch (m.type) {
            case 'B':
                ing_txn_begin(&txn, m.final_lsn, m.xid, m.commit_ts_us);
                seq = 0;
                in_txn = 1;
                break;
            case 'C':
                in_txn = 0;
                break;
            case 'I':
            case 'U':
            case 'D':
                wh_buf_reset(&b);
                assert_int_equal(ing_event_change(&b, &txn, seq++, &m, err, sizeof(err)), WH_OK);
                wh_json *j;
                if (wh_json_parse(b.data, b.len, &j, err, sizeof(err)))
                    fail_msg("invalid JSON: %s", err);
                wh_json_free(j);
                assert_true(nev < max && b.len < 512);
                memcpy(out[nev], b.data, b.len);
                out[nev++][b.len] = '\0';
                break;
            }
        }
        free(buf);
    }
    wh_buf_free(&b);
    ing_parser_free(p);
    return nev;
}

/* The origin of a transaction on its events ("origin" after commit_ts,
 * absent without one), and source.skip_origins: a listed origin's
 * transactions are dropped whole, the others' events are unchanged. */
static void test_origin_events(void **state)
{
    char ev[8][512];
    ing_origin o;
    int n = render_origin_session("", &o, ev, 8);
    assert_int_equal(n, 5);
    assert_true(o.skipped_txns == 0 && o.skipped_changes == 0);
    /* local, peer (insert, update), peer, local again */
    static const int has[] = {0, 1, 1, 1, 0};
    for (int i = 0; i < n; i++) {
        const char *at = strstr(ev[i], ",\"origin\":");
        if (has[i]) {
            assert_non_null(at);
            assert_non_null(strstr(ev[i], "\"commit_ts\":\"2026-11-22T01:02:03.000000Z\","
                                          "\"origin\":\"peer \\\"b\\\"\",\"op\":"));
        } else {
            assert_null(at);
            assert_non_null(strstr(ev[i], "Z\",\"op\":\"insert\""));
        }
    }
    assert_non_null(strstr(ev[2], "\"seq\":1,"));
    assert_non_null(strstr(ev[2], "\"op\":\"update\""));

    /* the peer's two transactions skipped (3 changes); the local ones kept
     * byte for byte */
    char kept[8][512];
    static const char *const lists[] = {"peer \"b\"", "other, peer \"b\"", "*"};
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        int m = render_origin_session(lists[k], &o, kept, 8);
        assert_int_equal(m, 2);
        assert_string_equal(kept[0], ev[0]);
        assert_string_equal(kept[1], ev[4]);
        assert_true(o.skipped_txns == 2);
        assert_true(o.skipped_changes == 3);
        assert_int_equal(o.skip, 0); /* reset at the Commit */
    }
    /* other names: nothing skipped */
    assert_int_equal(render_origin_session("peer, peer \"c\"", &o, kept, 8), 5);
    assert_true(o.skipped_txns == 0);
}

/* ing_origin_step on synthetic messages: what is dropped while skipping,
 * and that Begin, Relation and Commit never are. */
static void test_origin_step(void **state)
{
    ing_origin o;
    memset(&o, 0, sizeof(o));
    ing_txn t;
    char err[WH_ERRLEN];
    memset(&t, 0, sizeof(t));
    assert_int_equal(ing_txn_set_tenant(&t, "x", err, sizeof(err)), WH_OK);
    ing_msg m;
    memset(&m, 0, sizeof(m));
    const char *list = "peer";
#define STEP(type_, in_txn_)                                                                       \
    (m.type = (type_),                                                                             \
     ing_origin_step(&o, &t, &m, (in_txn_), skip_listed, (void *)list, err, sizeof(err)))
    assert_int_equal(STEP('B', 0), ING_ORIGIN_KEEP);
    ing_txn_begin(&t, 100, 1, 1);
    m.name = "peer";
    assert_int_equal(STEP('O', 1), ING_ORIGIN_KEEP);
    assert_int_equal(o.skip, 1);
    assert_true(t.origin_len > 0);
    assert_int_equal(STEP('R', 1), ING_ORIGIN_KEEP);
    assert_int_equal(STEP('Y', 1), ING_ORIGIN_KEEP);
    assert_int_equal(STEP('I', 1), ING_ORIGIN_DROP);
    assert_int_equal(STEP('U', 1), ING_ORIGIN_DROP);
    assert_int_equal(STEP('D', 1), ING_ORIGIN_DROP);
    m.nrels = 3;
    assert_int_equal(STEP('T', 1), ING_ORIGIN_DROP);
    m.flags = 1; /* transactional message */
    assert_int_equal(STEP('M', 1), ING_ORIGIN_DROP);
    m.flags = 0; /* non-transactional: its origin is not known */
    assert_int_equal(STEP('M', 1), ING_ORIGIN_KEEP);
    assert_true(o.skipped_changes == 7);
    assert_int_equal(STEP('C', 1), ING_ORIGIN_KEEP);
    assert_int_equal(o.skip, 0);
    /* the next transaction has no origin: kept, no origin member */
    assert_int_equal(STEP('B', 0), ING_ORIGIN_KEEP);
    ing_txn_begin(&t, 200, 2, 1);
    assert_int_equal(t.origin_len, 0);
    assert_int_equal(STEP('I', 1), ING_ORIGIN_KEEP);
    /* no skip function: nothing skipped, the origin still recorded */
    m.type = 'O';
    m.name = "peer";
    assert_int_equal(ing_origin_step(&o, &t, &m, 1, NULL, NULL, err, sizeof(err)), ING_ORIGIN_KEEP);
    assert_int_equal(o.skip, 0);
    assert_true(t.origin_len == 6);
    /* a name too long to render fails the message */
    static char longname[WH_ORIGIN_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    m.name = longname;
    assert_int_equal(STEP('O', 1), -1);
    assert_non_null(strstr(err, "longer than 512 bytes"));
    /* ... unless its transaction is skipped (its events are not rendered) */
    list = "*";
    assert_int_equal(STEP('B', 0), ING_ORIGIN_KEEP);
    assert_int_equal(STEP('O', 1), ING_ORIGIN_KEEP);
    assert_int_equal(o.skip, 1);
    assert_int_equal(STEP('I', 1), ING_ORIGIN_DROP);
    /* an escaped name at the limit fits its buffer */
    static char ctl[WH_ORIGIN_NAME_MAX + 1];
    memset(ctl, 1, sizeof(ctl) - 1);
    assert_int_equal(ing_txn_set_origin(&t, ctl, err, sizeof(err)), WH_OK);
    assert_int_equal(t.origin_len, WH_ORIGIN_NAME_MAX * 6 + 2);
#undef STEP
}

/* ing_relation_set_vtype: a column with a descriptor renders through it (in
 * key, before and after alike); a built-in array by its OID; a new
 * Relation message of the OID starts without descriptors. */
static void test_relation_vtype(void **state)
{
    /* 'R', oid 77, "s\0", "t\0", 'd', 3 columns: (1, "id", int4, -1),
     * (0, "a", int4[], -1), (0, "m", 16389 (an enum array), -1) */
    static const uint8_t msg[] = {'R', 0,   0,   0, 77,   's',  0,    't',  0,    'd',  0,    3,
                                  1,   'i', 'd', 0, 0,    0,    0,    23,   0xFF, 0xFF, 0xFF, 0xFF,
                                  0,   'a', 0,   0, 0,    0x03, 0xEF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
                                  'm', 0,   0,   0, 0x40, 0x05, 0xFF, 0xFF, 0xFF, 0xFF};
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_msg m;
    assert_int_equal(ing_parse(p, msg, sizeof(msg), &m, err, sizeof(err)), WH_OK);
    static const ing_vtype mood = {.oid = 25, .kind = ING_VT_SCALAR};
    static const ing_vtype moods = {
        .oid = 16389, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 16388, .elem = &mood};
    assert_int_equal(ing_relation_set_vtype(p, 77, 2, &moods), WH_OK);
    assert_int_equal(ing_relation_set_vtype(p, 77, 3, &moods), WH_ERR);
    assert_int_equal(ing_relation_set_vtype(p, 78, 0, &moods), WH_ERR);
    ing_col newc[3] = {{'t', 1, "1"}, {'t', 8, "{2,NULL}"}, {'t', 10, "{ok,\"a b\"}"}};
    ing_msg ins;
    memset(&ins, 0, sizeof(ins));
    ins.type = 'I';
    ins.rel = ing_relation_get(p, 77);
    ins.rel_oid = 77;
    ins.has_new = 1;
    ins.newtup.ncols = 3;
    ins.newtup.cols = newc;
    wh_buf b;
    wh_buf_init(&b, 0);
    render(&b, &ins);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"a\":[2,null],\"m\":[\"ok\",\"a b\"]}"));
    /* a new Relation message: the column is sent as its text until set again */
    assert_int_equal(ing_parse(p, msg, sizeof(msg), &m, err, sizeof(err)), WH_OK);
    ins.rel = ing_relation_get(p, 77);
    render(&b, &ins);
    assert_non_null(strstr(b.data, "\"m\":\"{ok,\\\"a b\\\"}\"}"));
    wh_buf_free(&b);
    ing_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_envelopes), cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_identity_full_pk),  cmocka_unit_test(test_relation_set_pk),
        cmocka_unit_test(test_origin_events),     cmocka_unit_test(test_origin_step),
        cmocka_unit_test(test_relation_vtype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
