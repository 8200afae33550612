/* Schema versions (ing_schema): the fingerprint is stable and changes with
 * every part of a table's shape; the announce rule (new, replayed, known);
 * the registration's bytes; schema and ddl events (malformed DDL messages
 * never crash); changes of a relation not sent on this connection are
 * never decoded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_event.h"
#include "../../services/ingestor/ing_pgoutput.h"
#include "../../services/ingestor/ing_schema.h"
#include "../../services/ingestor/ing_values.h"
#include "walhook.pb-c.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_json.h"
#include "wh_util.h"

/* ---- pgoutput message builders ---- */

typedef struct msgb {
    uint8_t b[4096];
    size_t n;
} msgb;

static void put8(msgb *m, uint8_t v)
{
    m->b[m->n++] = v;
}
static void put16(msgb *m, uint16_t v)
{
    put8(m, (uint8_t)(v >> 8));
    put8(m, (uint8_t)v);
}
static void put32(msgb *m, uint32_t v)
{
    put16(m, (uint16_t)(v >> 16));
    put16(m, (uint16_t)v);
}
static void puts0(msgb *m, const char *s)
{
    size_t l = strlen(s) + 1;
    memcpy(m->b + m->n, s, l);
    m->n += l;
}

typedef struct col {
    const char *name;
    uint32_t typ;
    int32_t mod;
    int ident;
} col;

static void relation_msg(msgb *m, uint32_t oid, const char *nsp, const char *rel, char ident,
                         const col *cols, int n)
{
    m->n = 0;
    put8(m, 'R');
    put32(m, oid);
    puts0(m, nsp);
    puts0(m, rel);
    put8(m, (uint8_t)ident);
    put16(m, (uint16_t)n);
    for (int i = 0; i < n; i++) {
        put8(m, cols[i].ident ? 1 : 0);
        puts0(m, cols[i].name);
        put32(m, cols[i].typ);
        put32(m, (uint32_t)cols[i].mod);
    }
}

static void insert_msg(msgb *m, uint32_t oid, int ncols)
{
    m->n = 0;
    put8(m, 'I');
    put32(m, oid);
    put8(m, 'N');
    put16(m, (uint16_t)ncols);
    for (int i = 0; i < ncols; i++) {
        put8(m, 't');
        put32(m, 1);
        put8(m, (uint8_t)('1' + i));
    }
}

static const col base_cols[] = {
    {"id", 23, -1, 1}, {"name", 1043, 68, 0}, {"price", 1700, 655366, 0}};

/* The version of a relation parsed from a Relation message. */
static ing_relation *parse_rel(ing_parser *p, uint32_t oid, const char *nsp, const char *rel,
                               char ident, const col *cols, int n)
{
    msgb m;
    relation_msg(&m, oid, nsp, rel, ident, cols, n);
    ing_msg msg;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parse(p, m.b, m.n, &msg, err, sizeof(err)), WH_OK);
    ing_relation *r = ing_relation_mut(p, oid);
    assert_non_null(r);
    wh_buf s;
    wh_buf_init(&s, 0);
    assert_int_equal(ing_schema_version(r, &s), WH_OK);
    wh_buf_free(&s);
    return r;
}

static uint64_t fp_of(const char *nsp, const char *rel, char ident, const col *cols, int n)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    uint64_t fp = parse_rel(p, 42, nsp, rel, ident, cols, n)->version;
    ing_parser_free(p);
    return fp;
}

/* The same shape gives the same fingerprint, in another parser and under
 * another OID; it is the FNV-1a hash of the documented description, pinned
 * here so that it stays the same across releases and machines. */
static void test_fingerprint_stable(void **state)
{
    (void)state;
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_relation *r = parse_rel(p, 1000, "public", "items", 'd', base_cols, 3);
    wh_buf d;
    wh_buf_init(&d, 0);
    assert_int_equal(ing_schema_describe(&d, r), WH_OK);
    assert_int_equal(wh_buf_cstr(&d), WH_OK);
    assert_string_equal(
        d.data, "{\"schema\":\"public\",\"table\":\"items\",\"replica_identity\":\"default\","
                "\"key_columns\":[\"id\"],\"columns\":[{\"name\":\"id\",\"type_oid\":23,"
                "\"typmod\":-1},{\"name\":\"name\",\"type_oid\":1043,\"typmod\":68},"
                "{\"name\":\"price\",\"type_oid\":1700,\"typmod\":655366}]}");
    assert_true(r->version == ing_schema_hash(d.data, d.len));
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)r->version);
    assert_string_equal(r->version_hex, hex);
    assert_int_equal(strlen(r->version_hex), 16);
    /* FNV-1a 64 test vectors: the hash itself never changes */
    assert_true(ing_schema_hash("", 0) == UINT64_C(0xcbf29ce484222325));
    assert_true(ing_schema_hash("a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
    assert_true(ing_schema_hash("foobar", 6) == UINT64_C(0x85944171f73967e8));
    uint64_t again = fp_of("public", "items", 'd', base_cols, 3);
    assert_true(again == r->version);
    /* a new Relation message of the same shape: same version, not done */
    r->version_done = 1;
    ing_relation *r2 = parse_rel(p, 1000, "public", "items", 'd', base_cols, 3);
    assert_true(r2->version == again);
    assert_int_equal(r2->version_done, 0);
    wh_buf_free(&d);
    ing_parser_free(p);
}

/* A composite column's fields are part of the description (nested, through
 * arrays): the same type OID with other attributes is another version. */
static void test_fingerprint_composite(void **state)
{
    (void)state;
    static const ing_vfield pt2_f[] = {{"\"x\":", 4, 23, NULL}, {"\"y\":", 4, 23, NULL}};
    static const ing_vfield pt3_f[] = {
        {"\"x\":", 4, 23, NULL}, {"\"y\":", 4, 23, NULL}, {"\"z\":", 4, 23, NULL}};
    static const ing_vfield ren_f[] = {{"\"x\":", 4, 23, NULL}, {"\"y2\":", 5, 23, NULL}};
    static const ing_vtype pt2 = {
        .oid = 16391, .kind = ING_VT_RECORD, .nfields = 2, .fields = pt2_f};
    static const ing_vtype pt3 = {
        .oid = 16391, .kind = ING_VT_RECORD, .nfields = 3, .fields = pt3_f};
    static const ing_vtype ren = {
        .oid = 16391, .kind = ING_VT_RECORD, .nfields = 2, .fields = ren_f};
    static const ing_vtype arr = {
        .oid = 16390, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 16391, .elem = &pt2};
    static const ing_vfield outer_f[] = {{"\"p\":", 4, 16391, &pt2}};
    static const ing_vtype outer = {
        .oid = 16392, .kind = ING_VT_RECORD, .nfields = 1, .fields = outer_f};
    static const col cols[] = {{"id", 23, -1, 1}, {"p", 16391, -1, 0}};
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_relation *r = parse_rel(p, 1000, "public", "c1", 'd', cols, 2);
    uint64_t untyped = r->version;
    wh_buf d;
    wh_buf_init(&d, 0);
    const ing_vtype *shapes[] = {&pt2, &pt3, &ren, &outer};
    uint64_t fp[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ing_relation_set_vtype(p, 1000, 1, shapes[i]), WH_OK);
        assert_int_equal(ing_schema_version(r, &d), WH_OK);
        fp[i] = r->version;
        assert_true(fp[i] != untyped);
        for (int k = 0; k < i; k++)
            assert_true(fp[i] != fp[k]);
    }
    /* an array's element fields (the column's type OID tells it is one) */
    assert_int_equal(ing_relation_set_vtype(p, 1000, 1, &arr), WH_OK);
    assert_int_equal(ing_schema_version(r, &d), WH_OK);
    assert_true(r->version == fp[0]);
    assert_int_equal(ing_relation_set_vtype(p, 1000, 1, &outer), WH_OK);
    wh_buf_reset(&d);
    assert_int_equal(ing_schema_describe(&d, r), WH_OK);
    assert_int_equal(wh_buf_cstr(&d), WH_OK);
    assert_non_null(strstr(d.data, "{\"name\":\"p\",\"type_oid\":16391,\"typmod\":-1,\"fields\":[{"
                                   "\"name\":\"p\",\"type_oid\":16391,\"fields\":[{\"name\":\"x\","
                                   "\"type_oid\":23},{\"name\":\"y\",\"type_oid\":23}]}]}"));
    /* a column without a composite type: described as before */
    assert_null(strstr(d.data, "\"name\":\"id\",\"type_oid\":23,\"typmod\":-1,\"fields\""));
    wh_buf_free(&d);
    ing_parser_free(p);
}

/* Every kind of change gives another fingerprint. */
static void test_fingerprint_changes(void **state)
{
    (void)state;
    uint64_t base = fp_of("public", "items", 'd', base_cols, 3);
    col c[4];
    memcpy(c, base_cols, sizeof(base_cols));
    uint64_t seen[16];
    int ns = 0;
    seen[ns++] = base;
#define DIFFERS(expr)                                                                              \
    do {                                                                                           \
        uint64_t f = (expr);                                                                       \
        for (int k = 0; k < ns; k++)                                                               \
            assert_true(f != seen[k]);                                                             \
        seen[ns++] = f;                                                                            \
        memcpy(c, base_cols, sizeof(base_cols));                                                   \
    } while (0)
    c[1].name = "title"; /* renamed column */
    DIFFERS(fp_of("public", "items", 'd', c, 3));
    c[1].typ = 25; /* retyped: varchar -> text */
    DIFFERS(fp_of("public", "items", 'd', c, 3));
    c[1].mod = 104; /* varchar(64) -> varchar(100) */
    DIFFERS(fp_of("public", "items", 'd', c, 3));
    c[1].ident = 1; /* key (replica identity) columns */
    DIFFERS(fp_of("public", "items", 'd', c, 3));
    DIFFERS(fp_of("public", "items", 'f', c, 3)); /* replica identity FULL */
    DIFFERS(fp_of("public", "items", 'i', c, 3)); /* USING INDEX */
    DIFFERS(fp_of("public", "items", 'd', c, 2)); /* dropped column */
    c[3] = (col){"qty", 23, -1, 0};               /* added column */
    DIFFERS(fp_of("public", "items", 'd', c, 4));
    DIFFERS(fp_of("public", "items2", 'd', c, 3)); /* another table */
    DIFFERS(fp_of("shop", "items", 'd', c, 3));    /* another schema */
    c[1] = base_cols[2];                           /* columns reordered */
    c[2] = base_cols[1];
    DIFFERS(fp_of("public", "items", 'd', c, 3));
#undef DIFFERS
    /* the key of a REPLICA IDENTITY FULL table: its primary key once found */
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    col all[3];
    memcpy(all, base_cols, sizeof(all));
    for (int i = 0; i < 3; i++)
        all[i].ident = 1;
    uint64_t full = parse_rel(p, 9, "public", "items", 'f', all, 3)->version;
    const char *pk[] = {"id"};
    assert_int_equal(ing_relation_set_pk(p, 9, pk, 1, err, sizeof(err)), WH_OK);
    ing_relation *r = ing_relation_mut(p, 9);
    wh_buf s;
    wh_buf_init(&s, 0);
    assert_int_equal(ing_schema_version(r, &s), WH_OK);
    assert_true(r->version != full);
    wh_buf_free(&s);
    ing_parser_free(p);
}

/* A new version is announced once in its transaction; that transaction,
 * sent again on a new connection, announces it again (same events at the
 * same positions); any other transaction does not. */
/* ing_schema_drop_fn / ing_schema_reg_fn of test_pending: what was called */
typedef struct calls {
    uint32_t drop_xid[8], drop_idx[8];
    int ndrop;
    uint64_t reg_fp[8];
    int nreg;
} calls;

static int note_drop(void *arg, uint32_t xid, uint32_t idx)
{
    calls *c = arg;
    c->drop_xid[c->ndrop] = xid;
    c->drop_idx[c->ndrop++] = idx;
    return WH_OK;
}

static int note_reg(void *arg, const char *table, uint64_t fp, const char *desc, size_t dlen)
{
    calls *c = arg;
    assert_string_equal(table, "public.t");
    assert_int_equal(dlen, 2);
    assert_memory_equal(desc, "{}", 2);
    c->reg_fp[c->nreg++] = fp;
    return WH_OK;
}

/* A streamed transaction's first change of t's shape c: it announces the
 * version, pending, its schema event staged at idx. Returns the version. */
static uint64_t announce_pending(ing_schema *s, ing_parser *p, const col *c, uint32_t xid,
                                 uint32_t idx)
{
    ing_relation *r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, xid, ING_SCHEMA_STAGED),
                     ING_SCHEMA_EMIT | ING_SCHEMA_PENDING);
    assert_int_equal(ing_schema_staged_add(s, r->version, xid, xid, idx, 1, "public.t", "{}", 2),
                     WH_OK);
    return r->version;
}

/* Pending announcements (ing_schema.h): a version first used by a streamed
 * transaction still open is announced again by the others that use it, and
 * the first to commit carries it. */
static void test_pending(void **state)
{
    (void)state;
    ing_parser *p;
    ing_schema *s;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_schema_new(&s, err, sizeof(err)), WH_OK);
    col c[3];
    uint64_t fl;
    uint32_t fx;
    calls k = {0};
    /* V: streamed X (900) stages its schema event at index 3; Y (901),
     * decoded whole, commits first: it announces V as well and takes the
     * first use over, and X's staged schema event is dropped */
    memcpy(c, base_cols, sizeof(c));
    c[2].name = "v1";
    uint64_t v = announce_pending(s, p, c, 900, 3);
    ing_relation *r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 900, ING_SCHEMA_SNAPSHOT), 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x3000, 777, ING_SCHEMA_SNAPSHOT), 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x3000, 901, ING_SCHEMA_WHOLE),
                     ING_SCHEMA_EMIT | ING_SCHEMA_TAKES);
    assert_int_equal(ing_schema_take(s, v, 0x3000, 901, note_drop, &k), WH_OK);
    assert_int_equal(k.ndrop, 1);
    assert_int_equal(k.drop_xid[0], 900);
    assert_int_equal(k.drop_idx[0], 3);
    assert_int_equal(ing_schema_first_use(s, v, &fl, &fx), 1);
    assert_true(fl == 0x3000);
    assert_int_equal(fx, 901);
    /* X rolls back: V stays (Y's event names it) */
    assert_int_equal(ing_schema_forget_xid(s, 900), 0);
    assert_int_equal(ing_schema_first_use(s, v, &fl, &fx), 1);
    /* Y sent again (a reconnect): its schema event again; a later one: none */
    ing_schema_new_connection(s);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x3000, 901, ING_SCHEMA_WHOLE), ING_SCHEMA_EMIT);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x3100, 902, ING_SCHEMA_WHOLE), 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 903, ING_SCHEMA_STAGED), 0);

    /* W: two streamed ones announce it (910 at 1, 911 at 5); 910 rolls
     * back: the first use passes to 911, which commits: its registration,
     * nothing dropped */
    c[2].name = "w1";
    uint64_t w = announce_pending(s, p, c, 910, 1);
    announce_pending(s, p, c, 911, 5);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 911, ING_SCHEMA_STAGED), 0);
    assert_int_equal(ing_schema_forget_xid(s, 910), 0);
    assert_int_equal(ing_schema_first_use(s, w, &fl, &fx), 1);
    assert_true(fl == 0);
    assert_int_equal(fx, 911);
    k = (calls){0};
    assert_int_equal(ing_schema_commit_xid(s, 911, 0x5000, note_drop, note_reg, &k), WH_OK);
    assert_int_equal(k.ndrop, 0);
    assert_int_equal(k.nreg, 1);
    assert_true(k.reg_fp[0] == w);
    assert_int_equal(ing_schema_first_use(s, w, &fl, &fx), 1);
    assert_true(fl == 0x5000);
    assert_int_equal(fx, 911);

    /* U: 920 (at 0) and 921 (at 2) announce it; 921 commits first: 920's
     * staged schema event is dropped, and 920 announces nothing more */
    c[2].name = "u1";
    uint64_t u = announce_pending(s, p, c, 920, 0);
    announce_pending(s, p, c, 921, 2);
    k = (calls){0};
    assert_int_equal(ing_schema_commit_xid(s, 921, 0x6000, note_drop, note_reg, &k), WH_OK);
    assert_int_equal(k.nreg, 1);
    assert_int_equal(k.ndrop, 1);
    assert_int_equal(k.drop_xid[0], 920);
    assert_int_equal(k.drop_idx[0], 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 920, ING_SCHEMA_STAGED), 0);
    k = (calls){0};
    assert_int_equal(ing_schema_commit_xid(s, 920, 0x6100, note_drop, note_reg, &k), WH_OK);
    assert_int_equal(k.nreg + k.ndrop, 0);
    assert_int_equal(ing_schema_first_use(s, u, &fl, &fx), 1);
    assert_int_equal(fx, 921);

    /* a subtransaction's abort drops the schema events staged in it: the
     * transaction announces again at its next change of that shape */
    c[2].name = "s1";
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    uint64_t sv = r->version;
    assert_int_equal(ing_schema_announce(s, r, 0, 940, ING_SCHEMA_STAGED),
                     ING_SCHEMA_EMIT | ING_SCHEMA_PENDING);
    assert_int_equal(ing_schema_staged_add(s, sv, 940, 941, 4, 1, "public.t", "{}", 2), WH_OK);
    assert_int_equal(ing_schema_forget_sub(s, 940, 942), 0);
    assert_int_equal(ing_schema_forget_sub(s, 940, 941), 1);
    assert_int_equal(ing_schema_first_use(s, sv, &fl, &fx), 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 940, ING_SCHEMA_STAGED),
                     ING_SCHEMA_EMIT | ING_SCHEMA_PENDING);
    assert_int_equal(ing_schema_staged_add(s, sv, 940, 940, 9, 1, "public.t", "{}", 2), WH_OK);
    k = (calls){0};
    assert_int_equal(ing_schema_commit_xid(s, 940, 0x7000, note_drop, note_reg, &k), WH_OK);
    assert_int_equal(k.nreg, 1);
    /* ... and so does the transaction that first used a version, sent again
     * streamed (not pending: its first use is committed) */
    ing_schema_new_connection(s);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 940, ING_SCHEMA_STAGED), ING_SCHEMA_EMIT);
    assert_int_equal(ing_schema_staged_add(s, sv, 940, 943, 4, 0, "public.t", "{}", 2), WH_OK);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 940, ING_SCHEMA_STAGED), 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 944, ING_SCHEMA_STAGED), 0);
    assert_int_equal(ing_schema_forget_sub(s, 940, 943), 1);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 940, ING_SCHEMA_STAGED), ING_SCHEMA_EMIT);
    assert_int_equal(ing_schema_staged_add(s, sv, 940, 940, 9, 0, "public.t", "{}", 2), WH_OK);
    k = (calls){0};
    assert_int_equal(ing_schema_commit_xid(s, 940, 0x7000, note_drop, note_reg, &k), WH_OK);
    assert_int_equal(k.nreg + k.ndrop, 0);
    assert_int_equal(ing_schema_first_use(s, sv, &fl, &fx), 1);
    assert_true(fl == 0x7000);

    /* a version only a streamed transaction announced, which rolls back */
    c[2].name = "z1";
    uint64_t z = announce_pending(s, p, c, 930, 0);
    assert_int_equal(ing_schema_forget_xid(s, 930), 1);
    assert_int_equal(ing_schema_first_use(s, z, &fl, &fx), 0);
    ing_schema_free(s);
    ing_parser_free(p);
}

static void test_announce_rule(void **state)
{
    (void)state;
    ing_parser *p;
    ing_schema *s;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_schema_new(&s, err, sizeof(err)), WH_OK);
    ing_relation *r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x1000, 700, 0), ING_SCHEMA_EMIT);
    assert_int_equal(r->version_done, 1);
    assert_int_equal(ing_schema_count(s), 1);
    /* its Relation message again in the same transaction (a TRUNCATE sends
     * one): not announced twice */
    r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x1000, 700, 0), 0);
    /* the transaction sent again on a new connection: the same events */
    ing_schema_new_connection(s);
    r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x1000, 700, 0), ING_SCHEMA_EMIT); /* replay */
    r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x1000, 700, 0), 0);
    r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x2000, 701, 0), 0); /* a later session */
    assert_int_equal(ing_schema_count(s), 1);
    /* streamed: the commit LSN is not known; the xid tells the replay */
    col c[3];
    memcpy(c, base_cols, sizeof(c));
    c[2].name = "cost";
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 900, 1), ING_SCHEMA_EMIT | ING_SCHEMA_PENDING);
    assert_int_equal(ing_schema_staged_add(s, r->version, 900, 900, 0, 1, "public.t", "{}", 2),
                     WH_OK);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 900, 1), 0);
    /* its streamed transaction dropped whole: unknown again, announced by
     * the next transaction that uses it */
    assert_int_equal(ing_schema_forget_xid(s, 900), 1);
    assert_int_equal(ing_schema_forget_xid(s, 900), 0);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    /* (the store may list 900's first use still: it moves) */
    assert_int_equal(ing_schema_announce(s, r, 0x3800, 902, 0), ING_SCHEMA_EMIT | ING_SCHEMA_TAKES);
    /* ... sent again streamed (the first use matched by its xid) */
    ing_schema_new_connection(s);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0, 902, 1), ING_SCHEMA_EMIT);
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x3900, 903, 0), 0);
    ing_parser_versions_reset(p);
    assert_int_equal(ing_relation_get(p, 5)->version_done, 0);
    /* known from the store (loaded): not announced again */
    memcpy(c, base_cols, sizeof(c));
    c[0].name = "key";
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_known(s, r->version, 0x500, 1), WH_OK);
    assert_int_equal(ing_schema_announce(s, r, 0x4000, 950, 0), 0);
    /* its first use (the registration with a start carries it) */
    uint64_t fl = 0;
    uint32_t fx = 0;
    assert_int_equal(ing_schema_first_use(s, r->version, &fl, &fx), 1);
    assert_true(fl == 0x500);
    assert_int_equal(fx, 1);
    assert_int_equal(ing_schema_forget_xid(s, 902), 0); /* committed: kept */
    assert_int_equal(ing_schema_first_use(s, 0xdead, &fl, &fx), 0);
    /* many versions (the table grows) */
    for (uint64_t i = 0; i < 500; i++)
        assert_int_equal(ing_schema_known(s, i * 7919 + 1, i, 1), WH_OK);
    assert_int_equal(ing_schema_count(s), 503);
    ing_schema_free(s);
    ing_parser_free(p);
}

/* A store answering SchemaList with the versions it was given (as the
 * store lists a pruned version: its tombstone, no description). */
typedef struct fake_registry {
    Walhook__SchemaVersion v[2], *vp[2];
    Walhook__SchemaReply reply;
    int calls;
} fake_registry;

static void registry_req(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    (void)cookie;
    fake_registry *fr = arg;
    fr->calls++;
    if (req->body_case != WALHOOK__REQUEST__BODY_SCHEMA_LIST) {
        wh_reply_error(rep, 1, "unexpected request");
        return;
    }
    rep->body_case = WALHOOK__REPLY__BODY_SCHEMAS;
    rep->schemas = &fr->reply;
}

/* The store pruned a version to its tombstone: the ingestor, loading the
 * registry after a restart, knows it as before the prune, so PostgreSQL's
 * resend of a later transaction that used it gets no schema event (its
 * changes keep their seqs), and the resend of the transaction that first
 * used it gets the schema event it had. */
static void test_load_tombstones(void **state)
{
    (void)state;
    char dir[] = "/tmp/wh_ing_schema_XXXXXX";
    assert_non_null(mkdtemp(dir));
    static wh_config cfg;
    wh_config_defaults(&cfg);
    snprintf(cfg.store_endpoint, sizeof(cfg.store_endpoint), "ipc://%s/store.sock", dir);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "%s", "default");
    cfg.ipc_timeout_ms = 2000;
    col c[3];
    memcpy(c, base_cols, sizeof(c));
    c[2].name = "cost";
    uint64_t fp_old = fp_of("public", "t", 'd', base_cols, 3); /* pruned */
    uint64_t fp_cur = fp_of("public", "t", 'd', c, 3);
    static const char desc[] = "{\"columns\":[]}";
    static fake_registry fr;
    for (int i = 0; i < 2; i++) {
        walhook__schema_version__init(&fr.v[i]);
        fr.vp[i] = &fr.v[i];
        fr.v[i].table = "public.t";
    }
    fr.v[0].fingerprint = fp_old;
    fr.v[0].first_lsn = 0x1000;
    fr.v[0].first_xid = 700;
    fr.v[0].pruned = 1;
    fr.v[1].fingerprint = fp_cur;
    fr.v[1].first_lsn = 0x3000;
    fr.v[1].first_xid = 720;
    fr.v[1].started_lsn = 0x3000;
    fr.v[1].description.data = (uint8_t *)desc;
    fr.v[1].description.len = sizeof(desc) - 1;
    walhook__schema_reply__init(&fr.reply);
    fr.reply.n_versions = 2;
    fr.reply.versions = fr.vp;
    wh_server *srv;
    char err[WH_ERRLEN];
    assert_int_equal(wh_server_start(&srv, cfg.store_endpoint, 1, 1 << 20, registry_req, NULL, &fr,
                                     err, sizeof(err)),
                     WH_OK);
    ing_schema *s;
    assert_int_equal(ing_schema_new(&s, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_schema_load(s, &cfg, err, sizeof(err)), WH_OK);
    assert_int_equal(fr.calls, 1);
    assert_int_equal(ing_schema_count(s), 2);
    ing_parser *p;
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_schema_new_connection(s);
    /* the resend of transaction 710 (0x2000), which used the pruned version
     * after its first use: no schema event */
    ing_relation *r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_true(r->version == fp_old);
    assert_int_equal(ing_schema_announce(s, r, 0x2000, 710, 0), 0);
    /* its registration with a start carries the first use (the store keeps
     * the tombstone's and restores it under it) */
    uint64_t fl = 0;
    uint32_t fx = 0;
    assert_int_equal(ing_schema_first_use(s, fp_old, &fl, &fx), 1);
    assert_true(fl == 0x1000);
    assert_int_equal(fx, 700);
    /* the resend of its first use: the schema event it had */
    r = parse_rel(p, 5, "public", "t", 'd', base_cols, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x1000, 700, 0), ING_SCHEMA_EMIT);
    /* the current version: as before */
    r = parse_rel(p, 5, "public", "t", 'd', c, 3);
    assert_int_equal(ing_schema_announce(s, r, 0x4000, 730, 0), 0);
    assert_int_equal(ing_schema_count(s), 2);
    ing_parser_free(p);
    ing_schema_free(s);
    wh_server_stop(srv);
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/store.sock", dir);
    unlink(sock);
    rmdir(dir);
}

/* The registration is an AppendBatch.schemas field that protobuf-c reads
 * back as written. */
static void test_registration_field(void **state)
{
    (void)state;
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_relation *r = parse_rel(p, 5, "shop", "orders", 'd', base_cols, 3);
    wh_buf d, f;
    wh_buf_init(&d, 0);
    wh_buf_init(&f, 0);
    assert_int_equal(ing_schema_describe(&d, r), WH_OK);
    /* a description over 127 bytes: a two-byte length */
    assert_true(d.len > 127);
    assert_int_equal(ing_schema_field(&f, r, d.data, d.len, 0x16B3748, 731, 0x16B3800, 0, 1),
                     WH_OK);
    assert_int_equal(ing_schema_field(&f, r, d.data, d.len, 0, 732, 0, 732, 0), WH_OK);
    Walhook__AppendBatch *ab = walhook__append_batch__unpack(NULL, f.len, (uint8_t *)f.data);
    assert_non_null(ab);
    assert_int_equal(ab->n_schemas, 2);
    assert_string_equal(ab->schemas[0]->table, "shop.orders");
    assert_true(ab->schemas[0]->fingerprint == r->version);
    assert_true(ab->schemas[0]->first_lsn == 0x16B3748);
    assert_int_equal(ab->schemas[0]->first_xid, 731);
    assert_int_equal(ab->schemas[0]->description.len, d.len);
    assert_memory_equal(ab->schemas[0]->description.data, d.data, d.len);
    assert_true(ab->schemas[0]->started_lsn == 0x16B3800);
    assert_int_equal(ab->schemas[0]->started_xid, 0);
    assert_true(ab->schemas[0]->first_use_moves);
    assert_false(ab->schemas[1]->first_use_moves);
    assert_true(ab->schemas[1]->first_lsn == 0);
    assert_true(ab->schemas[1]->started_lsn == 0);
    assert_int_equal(ab->schemas[1]->started_xid, 732);
    walhook__append_batch__free_unpacked(ab, NULL);
    wh_buf_free(&d);
    wh_buf_free(&f);
    ing_parser_free(p);
}

static wh_json *parse_json(const wh_buf *b)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    assert_int_equal(wh_json_parse(b->data, b->len, &j, err, sizeof(err)), WH_OK);
    return j;
}

/* Changes carry schema_version; a schema event has the description. */
static void test_schema_events(void **state)
{
    (void)state;
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_relation *r = parse_rel(p, 5, "public", "items", 'd', base_cols, 3);
    ing_txn t;
    assert_int_equal(ing_txn_set_tenant(&t, "acme", err, sizeof(err)), WH_OK);
    ing_txn_begin(&t, 0x1000, 77, 1700000000000000);
    wh_buf b, d;
    wh_buf_init(&b, 0);
    wh_buf_init(&d, 0);
    assert_int_equal(ing_schema_describe(&d, r), WH_OK);
    assert_int_equal(ing_event_schema(&b, &t, 0, r, d.data, d.len, err, sizeof(err)), WH_OK);
    wh_json *j = parse_json(&b);
    assert_string_equal(wh_json_get(j, "op")->str, "schema");
    assert_string_equal(wh_json_get(j, "schema_version")->str, r->version_hex);
    assert_string_equal(wh_json_get(j, "schema")->str, "public");
    assert_string_equal(wh_json_get(j, "table")->str, "items");
    assert_string_equal(wh_json_get(j, "replica_identity")->str, "default");
    assert_int_equal(wh_json_get(j, "columns")->count, 3);
    assert_string_equal(wh_json_at(wh_json_get(j, "key_columns"), 0)->str, "id");
    assert_int_equal(wh_json_get(j, "key")->type, WH_JSON_NULL);
    assert_int_equal(wh_json_get(j, "before")->type, WH_JSON_NULL);
    assert_int_equal(wh_json_get(j, "after")->type, WH_JSON_NULL);
    wh_json_free(j);
    /* members in a change's order, each once */
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    const char *sc = strstr(b.data, "\"op\":\"schema\",\"schema\":\"public\",\"table\":\"items\","
                                    "\"key\":null,\"before\":null,\"after\":null,");
    assert_non_null(sc);
    assert_null(strstr(strstr(sc, "\"key\":null"), "\"table\":"));
    assert_null(strstr(strstr(sc, "\"key\":null"), "\"schema\":"));
    /* an insert of the relation */
    msgb m;
    insert_msg(&m, 5, 3);
    ing_msg msg;
    assert_int_equal(ing_parse(p, m.b, m.n, &msg, err, sizeof(err)), WH_OK);
    wh_buf_reset(&b);
    assert_int_equal(ing_event_change(&b, &t, 1, &msg, err, sizeof(err)), WH_OK);
    j = parse_json(&b);
    assert_string_equal(wh_json_get(j, "schema_version")->str, r->version_hex);
    assert_string_equal(wh_json_get(j, "op")->str, "insert");
    wh_json_free(j);
    /* the last member (the dispatcher's walk predicts the ones before) */
    char tail[64];
    snprintf(tail, sizeof(tail), ",\"schema_version\":\"%s\"}", r->version_hex);
    assert_true(b.len > strlen(tail));
    assert_memory_equal(b.data + b.len - strlen(tail), tail, strlen(tail));
    /* a truncate carries it too */
    wh_buf_reset(&b);
    assert_int_equal(ing_event_truncate(&b, &t, 2, r, 1, err, sizeof(err)), WH_OK);
    assert_memory_equal(b.data + b.len - strlen(tail), tail, strlen(tail));
    j = parse_json(&b);
    assert_true(wh_json_get(wh_json_get(j, "options"), "cascade")->boolean);
    wh_json_free(j);
    wh_buf_free(&b);
    wh_buf_free(&d);
    ing_parser_free(p);
}

static ing_msg ddl_msg(const char *content, size_t n)
{
    ing_msg m;
    memset(&m, 0, sizeof(m));
    m.type = 'M';
    m.flags = 1;
    m.name = ING_SCHEMA_DDL_PREFIX;
    m.content = (const uint8_t *)content;
    m.content_len = (uint32_t)n;
    return m;
}

/* A DDL message becomes a ddl event; malformed content is refused (an
 * error that does not quote it), never a crash or broken JSON. */
static void test_ddl_events(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    ing_txn t;
    assert_int_equal(ing_txn_set_tenant(&t, "acme", err, sizeof(err)), WH_OK);
    ing_txn_begin(&t, 0x2000, 78, 1700000000000000);
    wh_buf b;
    wh_buf_init(&b, 0);
    const char *ok =
        "{\"event\":\"ddl_command_end\",\"command_tag\":\"ALTER TABLE\",\"object_type\":"
        "\"table\",\"object_identity\":\"public.items\",\"schema\":\"public\","
        "\"statement\":\"ALTER TABLE items ADD COLUMN secret text DEFAULT 'x\\\"y'\"}";
    ing_msg m = ddl_msg(ok, strlen(ok));
    assert_int_equal(ing_event_ddl(&b, &t, 3, &m, err, sizeof(err)), WH_OK);
    wh_json *j = parse_json(&b);
    assert_string_equal(wh_json_get(j, "op")->str, "ddl");
    assert_string_equal(wh_json_get(j, "schema")->str, "public");
    assert_int_equal(wh_json_get(j, "table")->type, WH_JSON_NULL);
    const wh_json *dd = wh_json_get(j, "ddl");
    assert_string_equal(wh_json_get(dd, "command_tag")->str, "ALTER TABLE");
    assert_string_equal(wh_json_get(dd, "object_identity")->str, "public.items");
    assert_string_equal(wh_json_get(dd, "statement")->str,
                        "ALTER TABLE items ADD COLUMN secret text DEFAULT 'x\"y'");
    wh_json_free(j);
    /* members of other types or missing: null */
    const char *odd = "{\"command_tag\":5,\"statement\":[1,2],\"schema\":null}";
    m = ddl_msg(odd, strlen(odd));
    wh_buf_reset(&b);
    assert_int_equal(ing_event_ddl(&b, &t, 4, &m, err, sizeof(err)), WH_OK);
    j = parse_json(&b);
    assert_int_equal(wh_json_get(wh_json_get(j, "ddl"), "command_tag")->type, WH_JSON_NULL);
    assert_int_equal(wh_json_get(wh_json_get(j, "ddl"), "statement")->type, WH_JSON_NULL);
    wh_json_free(j);
    /* malformed: not JSON, not an object, truncated, empty, binary */
    const char *bad[] = {"",
                         "ALTER TABLE secret_value",
                         "[1,2]",
                         "\"s\"",
                         "{\"statement\":\"x",
                         "{\"a\":1,}",
                         "\x01\x02\xff{",
                         "null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m = ddl_msg(bad[i], strlen(bad[i]));
        wh_buf_reset(&b);
        assert_int_equal(ing_event_ddl(&b, &t, 5, &m, err, sizeof(err)), WH_ERR);
        assert_int_equal(b.len, 0);
        assert_null(strstr(err, "secret_value"));
    }
    /* every prefix of a valid message: never a crash */
    for (size_t n = 0; n < strlen(ok); n++) {
        m = ddl_msg(ok, n);
        wh_buf_reset(&b);
        (void)ing_event_ddl(&b, &t, 6, &m, err, sizeof(err));
    }
    wh_buf_free(&b);
}

/* A change of a relation with no Relation message on this connection is
 * not decoded: msg->rel is NULL and the render refuses it with an error
 * naming the OID; after a new connection, a relation of the previous one is
 * unknown until its Relation message comes again. */
static void test_unknown_relation(void **state)
{
    (void)state;
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    ing_txn t;
    assert_int_equal(ing_txn_set_tenant(&t, "acme", err, sizeof(err)), WH_OK);
    ing_txn_begin(&t, 0x3000, 79, 1700000000000000);
    msgb m;
    insert_msg(&m, 4242, 3);
    ing_msg msg;
    assert_int_equal(ing_parse(p, m.b, m.n, &msg, err, sizeof(err)), WH_OK);
    assert_null(msg.rel);
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(ing_event_change(&b, &t, 0, &msg, err, sizeof(err)), WH_ERR);
    assert_int_equal(b.len, 0);
    assert_non_null(strstr(err, "4242"));
    assert_non_null(strstr(err, "Relation message"));
    /* known on this connection */
    (void)parse_rel(p, 4242, "public", "items", 'd', base_cols, 3);
    assert_int_equal(ing_parse(p, m.b, m.n, &msg, err, sizeof(err)), WH_OK);
    assert_non_null(msg.rel);
    /* a new connection: unknown again */
    ing_parser_new_connection(p);
    assert_null(ing_relation_get(p, 4242));
    assert_null(ing_relation_mut(p, 4242));
    assert_int_equal(ing_parse(p, m.b, m.n, &msg, err, sizeof(err)), WH_OK);
    assert_null(msg.rel);
    assert_int_equal(ing_event_change(&b, &t, 0, &msg, err, sizeof(err)), WH_ERR);
    (void)parse_rel(p, 4242, "public", "items", 'd', base_cols, 3);
    assert_int_equal(ing_parse(p, m.b, m.n, &msg, err, sizeof(err)), WH_OK);
    assert_non_null(msg.rel);
    /* the cache still holds one relation (replaced, not leaked) */
    assert_int_equal(ing_relation_count(p), 1);
    wh_buf_free(&b);
    ing_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint_stable),
        cmocka_unit_test(test_fingerprint_changes),
        cmocka_unit_test(test_fingerprint_composite),
        cmocka_unit_test(test_announce_rule),
        cmocka_unit_test(test_pending),
        cmocka_unit_test(test_registration_field),
        cmocka_unit_test(test_schema_events),
        cmocka_unit_test(test_ddl_events),
        cmocka_unit_test(test_unknown_relation),
        cmocka_unit_test(test_load_tombstones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
