/* Unit tests of the store's control-plane requests against a real RocksDB:
 * the state document (seeding, PutState 412/400, reopen, identical file
 * origin, offsets of removed targets dropped), SetOffset/epochs/409 and
 * its expected_version (412),
 * DropOffset, TenantInfo, the offset hash table with many consumers and
 * concurrent commits, reading 12-byte offset values of older stores, and
 * st_resync (the automatic resync of NEEDS_SNAPSHOT targets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../services/store/st_resync.h"
#include "../../services/store/st_server.h"
#include "../../services/store/st_state.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_state.h"
#include "stdb_fixture.h"

typedef struct fx {
    char dir[64];
    char conf[128];
    wh_config cfg;
    st_db *db;
    st_state *st;
    st_server *srv;
} fx;

static const char *CONF =
    "tenant = \"default\";\n"
    "targets = ( { name = \"a\"; url = \"http://127.0.0.1:9/a\"; },\n"
    "            { name = \"b\"; url = \"http://127.0.0.1:9/b\"; } );\n"
    "tenants = ( { name = \"other\"; source = { dsn = \"dbname=o\"; slot = "
    "\"o\"; };\n"
    "              targets = ( { name = \"x\"; url = \"https://h/x\"; } ); } );\n";

static const st_db_opts OPTS = {0};

static void open_all(fx *f)
{
    char err[WH_ERRLEN];
    stdb_fx_open(&f->db, f->dir, &OPTS);
    if (wh_config_load(&f->cfg, f->conf, err, sizeof(err)) != WH_OK)
        fail_msg("config: %s", err);
    if (st_state_open(&f->st, f->db, &f->cfg, f->conf, err, sizeof(err)) != WH_OK)
        fail_msg("state: %s", err);
    if (st_server_create(&f->srv, f->db, 4, 4u << 20, err, sizeof(err)) != WH_OK)
        fail_msg("server: %s", err);
    st_server_set_state(f->srv, f->st);
}

static void close_all(fx *f)
{
    st_server_destroy(f->srv);
    st_state_close(f->st);
    st_db_close(f->db);
    f->srv = NULL;
    f->st = NULL;
    f->db = NULL;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    stdb_fx_mkdtemp(f->dir, sizeof(f->dir), "test_store_state");
    snprintf(f->conf, sizeof(f->conf), "%s/walhook.conf", f->dir);
    FILE *c = fopen(f->conf, "w");
    assert_non_null(c);
    fprintf(c, "data_dir = \"%s\";\n%s", f->dir, CONF);
    fclose(c);
    open_all(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    close_all(f);
    stdb_fx_remove(NULL, f->dir);
    free(f);
    return 0;
}

/* ---- requests through the handler ---- */

typedef struct reply {
    Walhook__Reply rep;
    void *cookie;
    fx *f;
} reply;

static int call(fx *f, Walhook__Request *req, reply *r)
{
    walhook__reply__init(&r->rep);
    r->cookie = NULL;
    r->f = f;
    st_server_handle(f->srv, req, &r->rep, &r->cookie);
    return r->rep.status;
}

static void done(reply *r)
{
    st_server_done(r->f->srv, &r->rep, r->cookie);
}

static int get_state(fx *f, uint64_t known, reply *r)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__GetState g = WALHOOK__GET_STATE__INIT;
    g.known_version = known;
    req.body_case = WALHOOK__REQUEST__BODY_GET_STATE;
    req.get_state = &g;
    return call(f, &req, r);
}

static int put_state(fx *f, uint64_t expected, const char *doc, const char *origin, reply *r)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__PutState p = WALHOOK__PUT_STATE__INIT;
    p.expected_version = expected;
    p.doc.data = (uint8_t *)doc;
    p.doc.len = strlen(doc);
    p.origin = (char *)origin;
    req.body_case = WALHOOK__REQUEST__BODY_PUT_STATE;
    req.put_state = &p;
    return call(f, &req, r);
}

static uint64_t current_version(fx *f)
{
    reply r;
    assert_int_equal(get_state(f, 0, &r), 0);
    uint64_t v = r.rep.state->version;
    done(&r);
    return v;
}

/* Renders s, drops the caller's reference and puts the document
 * (put_state: expected version, origin); returns its status. */
static int put_rendered(fx *f, wh_state *s, uint64_t expected, const char *origin)
{
    wh_buf b;
    reply r;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    wh_state_unref(s);
    int rc = put_state(f, expected, b.data, origin, &r);
    done(&r);
    wh_buf_free(&b);
    return rc;
}

/* The current document with `from` replaced by `to` (once). */
static char *current_doc_replace(fx *f, const char *from, const char *to)
{
    reply r;
    assert_int_equal(get_state(f, 0, &r), 0);
    size_t n = r.rep.state->doc.len;
    char *d = malloc(n + strlen(to) + 1);
    memcpy(d, r.rep.state->doc.data, n);
    d[n] = '\0';
    done(&r);
    if (from != NULL) {
        char *p = strstr(d, from);
        assert_non_null(p);
        size_t fl = strlen(from), tl = strlen(to);
        memmove(p + tl, p + fl, strlen(p + fl) + 1);
        memcpy(p, to, tl);
    }
    return d;
}

static int set_offset(fx *f, const char *tenant, const char *consumer, int to_end, uint64_t lsn,
                      uint32_t seq, reply *r)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__SetOffset so = WALHOOK__SET_OFFSET__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    so.tenant = (char *)tenant;
    so.consumer = (char *)consumer;
    so.to_end = to_end;
    pos.lsn = lsn;
    pos.seq = seq;
    so.pos = to_end ? NULL : &pos;
    req.body_case = WALHOOK__REQUEST__BODY_SET_OFFSET;
    req.set_offset = &so;
    return call(f, &req, r);
}

static int commit(fx *f, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                  uint64_t epoch, reply *r)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__CommitOffset c = WALHOOK__COMMIT_OFFSET__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    c.tenant = (char *)tenant;
    c.consumer = (char *)consumer;
    pos.lsn = lsn;
    pos.seq = seq;
    c.pos = &pos;
    c.epoch = epoch;
    req.body_case = WALHOOK__REQUEST__BODY_COMMIT;
    req.commit = &c;
    return call(f, &req, r);
}

static int read_consumer(fx *f, const char *tenant, const char *consumer, reply *r)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__ReadRequest rr = WALHOOK__READ_REQUEST__INIT;
    rr.tenant = (char *)tenant;
    rr.consumer = (char *)consumer;
    req.body_case = WALHOOK__REQUEST__BODY_READ;
    req.read = &rr;
    return call(f, &req, r);
}

static void append(fx *f, const char *tenant, uint64_t lsn, uint32_t n, uint64_t ack)
{
    char err[WH_ERRLEN];
    st_event ev[16];
    assert_true(n <= 16);
    for (uint32_t i = 0; i < n; i++)
        ev[i] = (st_event){lsn, i, 1000, "{\"k\":1}", 7};
    uint64_t d;
    if (st_db_append(f->db, tenant, ev, n, ack, &d, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
}

/* ---- state ---- */

static void test_seeded_from_file(void **state)
{
    fx *f = *state;
    reply r;
    assert_int_equal(get_state(f, 0, &r), 0);
    assert_int_equal(r.rep.state->version, 1);
    wh_state *s = NULL;
    char err[WH_ERRLEN];
    if (wh_state_parse(&s, (const char *)r.rep.state->doc.data, r.rep.state->doc.len, NULL, err,
                       sizeof(err)) != WH_OK)
        fail_msg("stored doc: %s", err);
    done(&r);
    assert_int_equal(s->ntenants, 2);
    assert_string_equal(s->tenants[0].name, "default");
    assert_int_equal(s->tenants[0].ntargets, 2);
    assert_non_null(wh_state_target_find(wh_state_tenant_find(s, "other"), "x"));
    wh_state_unref(s);
    /* known version: no document */
    assert_int_equal(get_state(f, 1, &r), 0);
    assert_int_equal(r.rep.state->version, 1);
    assert_int_equal(r.rep.state->doc.len, 0);
    done(&r);
}

static void test_put_conflict_and_bad_doc(void **state)
{
    fx *f = *state;
    reply r;
    char *doc = current_doc_replace(f, "\"name\":\"b\"", "\"name\":\"c\"");
    /* stale or missing expected_version: 412 naming the current version */
    assert_int_equal(put_state(f, 0, doc, "api", &r), ST_STATE_CONFLICT);
    assert_non_null(strstr(r.rep.error, "version conflict: current is 1"));
    done(&r);
    assert_int_equal(put_state(f, 7, doc, "api", &r), ST_STATE_CONFLICT);
    done(&r);
    /* bad document: 400 naming the field */
    assert_int_equal(put_state(f, 1,
                               "{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\"}]}]}",
                               "api", &r),
                     ST_STATE_BAD);
    assert_non_null(strstr(r.rep.error, "tenants[0].targets[0].url: missing"));
    done(&r);
    assert_int_equal(put_state(f, 1, "not json", "api", &r), ST_STATE_BAD);
    done(&r);
    assert_int_equal(put_state(f, 1, "", "api", &r), ST_STATUS_BAD_REQUEST);
    done(&r);
    assert_int_equal(current_version(f), 1);
    /* good: version 2 (the client's version field is ignored) */
    assert_int_equal(put_state(f, 1, doc, "api", &r), 0);
    assert_int_equal(r.rep.state->version, 2);
    done(&r);
    assert_int_equal(put_state(f, 1, doc, "api", &r), ST_STATE_CONFLICT);
    assert_non_null(strstr(r.rep.error, "current is 2"));
    done(&r);
    free(doc);
    /* the stored document is the canonical one with the new version */
    doc = current_doc_replace(f, NULL, "");
    assert_non_null(strstr(doc, "{\"version\":2,"));
    assert_non_null(strstr(doc, "\"name\":\"c\""));
    free(doc);
}

static void test_version_survives_reopen(void **state)
{
    fx *f = *state;
    reply r;
    char *doc = current_doc_replace(f, "\"name\":\"x\"", "\"name\":\"y\"");
    assert_int_equal(put_state(f, 1, doc, "api", &r), 0);
    done(&r);
    free(doc);
    close_all(f);
    open_all(f); /* the file still says "x": the stored version wins */
    assert_int_equal(current_version(f), 2);
    doc = current_doc_replace(f, NULL, "");
    assert_non_null(strstr(doc, "\"name\":\"y\""));
    assert_null(strstr(doc, "\"name\":\"x\""));
    free(doc);
}

static void test_file_origin(void **state)
{
    fx *f = *state;
    reply r;
    /* the file's own state again: no new version */
    char *doc = current_doc_replace(f, NULL, "");
    assert_int_equal(put_state(f, 0, doc, "file", &r), 0);
    assert_int_equal(r.rep.state->version, 1);
    done(&r);
    free(doc);
    /* an api write, then the file resets it, unconditionally */
    doc = current_doc_replace(f, "\"name\":\"b\"", "\"name\":\"c\"");
    assert_int_equal(put_state(f, 1, doc, "api", &r), 0);
    done(&r);
    free(doc);
    wh_state *s = NULL;
    char err[WH_ERRLEN];
    assert_int_equal(wh_state_from_config(&s, &f->cfg, f->conf, err, sizeof(err)), WH_OK);
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    assert_int_equal(put_state(f, 0, b.data, "file", &r), 0);
    assert_int_equal(r.rep.state->version, 3);
    done(&r);
    assert_int_equal(put_state(f, 0, b.data, "file", &r), 0);
    assert_int_equal(r.rep.state->version, 3);
    done(&r);
    wh_buf_free(&b);
    wh_state_unref(s);
    /* origin api with expected 0 stays conditional */
    doc = current_doc_replace(f, NULL, "");
    assert_int_equal(put_state(f, 0, doc, "api", &r), ST_STATE_CONFLICT);
    done(&r);
    free(doc);
}

static void test_removed_target_offset_dropped(void **state)
{
    fx *f = *state;
    reply r;
    char err[WH_ERRLEN];
    append(f, "default", 0x100, 4, 0x101);
    assert_int_equal(commit(f, "default", "a", 0x100, 1, 0, &r), 0);
    done(&r);
    assert_int_equal(commit(f, "default", "b", 0x100, 0, 0, &r), 0);
    done(&r);
    assert_int_equal(commit(f, "other", "x", 0x5, 0, 0, &r), 0);
    done(&r);
    /* remove target b of default, and tenant other entirely */
    wh_state *s = NULL;
    char *doc = current_doc_replace(f, NULL, "");
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)), WH_OK);
    free(doc);
    s->tenants[0].ntargets = 1;
    s->ntenants = 1;
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    s->ntenants = 2;
    wh_state_unref(s);
    assert_int_equal(put_state(f, 1, b.data, "api", &r), 0);
    done(&r);
    wh_buf_free(&b);
    st_offset o;
    assert_int_equal(st_db_offset_info(f->db, "default", "b", &o, err, sizeof(err)), WH_OK);
    assert_int_equal(o.dropped, 1);
    assert_true(o.lsn == 0);
    assert_int_equal(st_db_offset_info(f->db, "other", "x", &o, err, sizeof(err)), WH_OK);
    assert_int_equal(o.dropped, 1);
    /* the removed tenant's column families are gone, the other's stay */
    assert_false(st_db_tenant_exists(f->db, "other"));
    assert_true(st_db_tenant_exists(f->db, "default"));
    assert_int_equal(st_db_offset_info(f->db, "default", "a", &o, err, sizeof(err)), WH_OK);
    assert_int_equal(o.dropped, 0);
    assert_true(o.lsn == 0x100 && o.seq == 1);
    /* GC is no longer held back by b (at 0x100/0): a's offset rules */
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    assert_true(st_db_gc_dropped(f->db) >= 1);
    /* a late commit and read of the removed target do not bring it back */
    assert_int_equal(commit(f, "default", "b", 0x100, 3, 0, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_int_equal(read_consumer(f, "default", "b", &r), 0);
    assert_int_equal(r.rep.read->n_events, 0);
    done(&r);
    /* the offsets are gone from disk too */
    close_all(f);
    open_all(f);
    assert_int_equal(st_db_offset_info(f->db, "default", "b", &o, err, sizeof(err)), WH_OK);
    assert_true(o.lsn == 0 && o.dropped == 0);
    assert_int_equal(st_db_consumer_count(f->db), 1);
}

static void test_readded_target_undropped(void **state)
{
    fx *f = *state;
    reply r;
    char err[WH_ERRLEN];
    append(f, "default", 0x100, 2, 0);
    assert_int_equal(commit(f, "default", "b", 0x100, 0, 0, &r), 0);
    done(&r);
    char *without = current_doc_replace(
        f,
        ",{\"name\":\"b\",\"url\":\"http://127.0.0.1:9/b\",\"secrets\":[],\"paused\":false,"
        "\"created_version\":1}",
        "");
    char *with = current_doc_replace(f, NULL, "");
    assert_int_equal(put_state(f, 1, without, "api", &r), 0);
    done(&r);
    st_offset o;
    assert_int_equal(st_db_offset_info(f->db, "default", "b", &o, err, sizeof(err)), WH_OK);
    assert_int_equal(o.dropped, 1);
    uint64_t e = o.epoch;
    assert_int_equal(put_state(f, 2, with, "api", &r), 0);
    done(&r);
    /* back as a target: its next Read registers it with a newer epoch */
    assert_int_equal(read_consumer(f, "default", "b", &r), 0);
    assert_int_equal(r.rep.read->n_events, 2);
    assert_true(r.rep.read->epoch > e);
    uint64_t ne = r.rep.read->epoch;
    done(&r);
    assert_int_equal(commit(f, "default", "b", 0x100, 1, e, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_int_equal(commit(f, "default", "b", 0x100, 1, ne, &r), 0);
    done(&r);
    free(without);
    free(with);
}

/* ---- offsets ---- */

static void test_set_offset_epoch(void **state)
{
    fx *f = *state;
    reply r;
    append(f, "default", 0x100, 3, 0);
    append(f, "default", 0x200, 2, 0);
    assert_int_equal(commit(f, "default", "a", 0x200, 0, 0, &r), 0);
    assert_int_equal(r.rep.offset->epoch, 0);
    done(&r);
    /* backwards: replay from 0x100/0 */
    assert_int_equal(set_offset(f, "default", "a", 0, 0x100, 0, &r), 0);
    assert_true(r.rep.offset->previous->lsn == 0x200 && r.rep.offset->previous->seq == 0);
    assert_true(r.rep.offset->committed->lsn == 0x100 && r.rep.offset->committed->seq == 0);
    assert_int_equal(r.rep.offset->epoch, 1);
    done(&r);
    /* a batch read before the move commits with epoch 0: refused */
    assert_int_equal(commit(f, "default", "a", 0x200, 1, 0, &r), ST_STATUS_CONFLICT);
    assert_non_null(strstr(r.rep.error, "epoch"));
    done(&r);
    /* reads see the new offset and epoch */
    assert_int_equal(read_consumer(f, "default", "a", &r), 0);
    assert_int_equal(r.rep.read->epoch, 1);
    assert_true(r.rep.read->committed->lsn == 0x100);
    assert_int_equal(r.rep.read->n_events, 4); /* 0x100/1, 0x100/2, 0x200/0, 0x200/1 */
    done(&r);
    assert_int_equal(commit(f, "default", "a", 0x200, 1, 1, &r), 0);
    assert_true(r.rep.offset->committed->lsn == 0x200 && r.rep.offset->committed->seq == 1);
    done(&r);
    /* commits still never move backwards */
    assert_int_equal(commit(f, "default", "a", 0x100, 2, 1, &r), 0);
    assert_true(r.rep.offset->committed->lsn == 0x200 && r.rep.offset->committed->seq == 1);
    done(&r);
    /* to the end; a consumer never seen before */
    assert_int_equal(set_offset(f, "default", "new", 1, 0, 0, &r), 0);
    assert_true(r.rep.offset->committed->lsn == 0x200 && r.rep.offset->committed->seq == 1);
    assert_true(r.rep.offset->previous->lsn == 0);
    assert_int_equal(r.rep.offset->epoch, 1);
    done(&r);
    /* epoch survives a restart */
    close_all(f);
    open_all(f);
    assert_int_equal(read_consumer(f, "default", "a", &r), 0);
    assert_int_equal(r.rep.read->epoch, 1);
    assert_int_equal(r.rep.read->n_events, 0);
    done(&r);
    /* bad requests */
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__SetOffset so = WALHOOK__SET_OFFSET__INIT;
    so.tenant = "default";
    so.consumer = "a";
    req.body_case = WALHOOK__REQUEST__BODY_SET_OFFSET;
    req.set_offset = &so;
    assert_int_equal(call(f, &req, &r), ST_STATUS_BAD_REQUEST);
    assert_non_null(strstr(r.rep.error, "pos"));
    done(&r);
    so.consumer = "";
    assert_int_equal(call(f, &req, &r), ST_STATUS_BAD_REQUEST);
    assert_non_null(strstr(r.rep.error, "consumer"));
    done(&r);
}

static void test_drop_offset_and_tenant_info(void **state)
{
    fx *f = *state;
    reply r;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__TenantInfo ti = WALHOOK__TENANT_INFO__INIT;
    ti.tenant = "default";
    req.body_case = WALHOOK__REQUEST__BODY_TENANT_INFO;
    req.tenant_info = &ti;
    assert_int_equal(call(f, &req, &r), 0);
    assert_true(r.rep.tenant_info->end->lsn == 0 && r.rep.tenant_info->end->seq == 0);
    done(&r);
    append(f, "default", 0x300, 3, 0x301);
    append(f, "default", 0x100, 5, 0);
    append(f, "defaulu", 0x900, 1, 0); /* a neighbour key range */
    assert_int_equal(call(f, &req, &r), 0);
    assert_true(r.rep.tenant_info->end->lsn == 0x300 && r.rep.tenant_info->end->seq == 2);
    assert_true(r.rep.tenant_info->durable_lsn == 0x301);
    done(&r);
    ti.tenant = "";
    assert_int_equal(call(f, &req, &r), ST_STATUS_BAD_REQUEST);
    done(&r);

    assert_int_equal(commit(f, "default", "z", 0x100, 4, 0, &r), 0);
    done(&r);
    Walhook__DropOffset d = WALHOOK__DROP_OFFSET__INIT;
    d.tenant = "default";
    d.consumer = "z";
    Walhook__Request dreq = WALHOOK__REQUEST__INIT;
    dreq.body_case = WALHOOK__REQUEST__BODY_DROP_OFFSET;
    dreq.drop_offset = &d;
    assert_int_equal(call(f, &dreq, &r), 0);
    assert_true(r.rep.offset->previous->lsn == 0x100 && r.rep.offset->previous->seq == 4);
    assert_true(r.rep.offset->committed->lsn == 0);
    done(&r);
    /* idempotent; an unknown consumer is fine */
    assert_int_equal(call(f, &dreq, &r), 0);
    done(&r);
    d.consumer = "never";
    assert_int_equal(call(f, &dreq, &r), 0);
    done(&r);
    /* dropped: reads nothing, commits refused; SetOffset brings it back */
    assert_int_equal(read_consumer(f, "default", "z", &r), 0);
    assert_int_equal(r.rep.read->n_events, 0);
    done(&r);
    assert_int_equal(commit(f, "default", "z", 0x300, 0, 0, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_int_equal(set_offset(f, "default", "z", 0, 0x100, 2, &r), 0);
    uint64_t e = r.rep.offset->epoch;
    assert_true(e >= 2);
    done(&r);
    assert_int_equal(read_consumer(f, "default", "z", &r), 0);
    assert_int_equal(r.rep.read->n_events, 5);
    assert_int_equal(r.rep.read->epoch, e);
    done(&r);
}

/* A tenant with data that neither the state nor the file names (a removal
 * whose drop did not happen: the store stopped between the state write and
 * the drop, or the drop failed) loses it at the next open and at the next
 * write; the file's tenants keep theirs, and a first start (no state
 * stored yet) drops nothing. */
static void test_sweep_leftover_tenant(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    append(f, "gone", 0x100, 3, 0);
    assert_true(st_db_tenant_exists(f->db, "gone"));
    close_all(f);
    open_all(f);
    assert_false(st_db_tenant_exists(f->db, "gone"));
    assert_true(st_db_tenant_exists(f->db, "default"));
    assert_true(st_db_tenant_exists(f->db, "other"));

    /* at the next write */
    append(f, "gone2", 0x100, 3, 0);
    wh_state *cur = st_state_current(f->st), *next = NULL;
    assert_non_null(cur);
    assert_int_equal(wh_state_clone(&next, cur), WH_OK);
    next->tenants[0].targets[0].paused = 1;
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(next, &b, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    uint64_t v = 0;
    int status = 0;
    if (st_state_put(f->st, cur->version, b.data, b.len, "api", &v, &status, err, sizeof(err)) !=
        WH_OK)
        fail_msg("put: %s", err);
    wh_buf_free(&b);
    wh_state_unref(next);
    wh_state_unref(cur);
    assert_false(st_db_tenant_exists(f->db, "gone2"));
    assert_true(st_db_tenant_exists(f->db, "other"));

    /* a first start: the data on disk stays */
    fx *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    stdb_fx_mkdtemp(g->dir, sizeof(g->dir), "test_store_state");
    snprintf(g->conf, sizeof(g->conf), "%s/walhook.conf", g->dir);
    FILE *c = fopen(g->conf, "w");
    assert_non_null(c);
    fprintf(c, "data_dir = \"%s\";\n%s", g->dir, CONF);
    fclose(c);
    stdb_fx_open(&g->db, g->dir, &OPTS);
    assert_int_equal(st_db_tenant_create(g->db, "pre", err, sizeof(err)), WH_OK);
    st_db_close(g->db);
    g->db = NULL;
    open_all(g);
    assert_true(st_db_tenant_exists(g->db, "pre"));
    void *gp = g;
    teardown(&gp);
}

/* A state without tenant "other" (which the file names) stored as st_state_put
 * stores it, without the drop after it: what a store that stopped between
 * the two left. */
static void store_without_other(fx *f, int marked)
{
    char err[WH_ERRLEN];
    wh_state *cur = st_state_current(f->st), *next = NULL;
    assert_non_null(cur);
    assert_int_equal(wh_state_clone(&next, cur), WH_OK);
    (void)wh_state_tenant_remove(next, "other"); /* gone already the second time */
    wh_buf b;
    wh_buf_init(&b, 0);
    next->version = cur->version + 1;
    assert_int_equal(wh_state_render(next, &b, 0), WH_OK);
    if (marked && st_db_tenant_mark_removal(f->db, "other", 1, err, sizeof(err)) != WH_OK)
        fail_msg("mark: %s", err);
    if (st_db_state_put(f->db, cur->version + 1, b.data, b.len, err, sizeof(err)) != WH_OK)
        fail_msg("state put: %s", err);
    wh_buf_free(&b);
    wh_state_unref(next);
    wh_state_unref(cur);
}

/* A tenant whose removal was marked with the state write goes at the next
 * open though the configuration file names it; an unmarked one the file
 * names stays (it may be the file's tenant of a state written before). */
static void test_sweep_marked_removal(void **state)
{
    fx *f = *state;
    append(f, "other", 0x100, 3, 0);
    store_without_other(f, 0);
    close_all(f);
    open_all(f);
    assert_true(st_db_tenant_exists(f->db, "other"));

    store_without_other(f, 1);
    close_all(f);
    open_all(f);
    assert_false(st_db_tenant_exists(f->db, "other"));
    assert_true(st_db_tenant_exists(f->db, "default"));
}

/* A state write that adds a tenant the store cannot keep (here: past the
 * tenant names a store process keeps) is refused naming the limit, and
 * the state stays as it was. */
static void test_put_refused_when_tenant_cannot_be_kept(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], name[32];
    int i;
    for (i = 0; i < ST_MAX_TENANT_NAMES + 8; i++) {
        st_reader *rd = NULL;
        snprintf(name, sizeof(name), "n%d", i);
        if (st_db_reader_open(f->db, name, NULL, &rd, err, sizeof(err)) != WH_OK)
            break;
        st_db_reader_close(rd);
    }
    assert_true(i < ST_MAX_TENANT_NAMES);
    wh_state *cur = st_state_current(f->st), *next = NULL;
    assert_non_null(cur);
    assert_int_equal(wh_state_clone(&next, cur), WH_OK);
    wh_state_tenant *t = wh_state_tenant_add(next);
    assert_non_null(t);
    wh_strlcpy(t->name, "late", sizeof(t->name));
    wh_strlcpy(t->slot, "late", sizeof(t->slot));
    wh_strlcpy(t->publication, "walhook", sizeof(t->publication));
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(next, &b, 0), WH_OK);
    uint64_t v = 0;
    int status = 0;
    assert_int_equal(
        st_state_put(f->st, cur->version, b.data, b.len, "api", &v, &status, err, sizeof(err)),
        WH_ERR);
    assert_int_equal(status, ST_STATE_FAILED);
    if (strstr(err, "tenant late") == NULL || strstr(err, "4096") == NULL)
        fail_msg("error: %s", err);
    assert_int_equal(st_state_version(f->st), cur->version);
    wh_buf_free(&b);
    wh_state_unref(next);
    wh_state_unref(cur);
}

static void test_many_consumers(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], name[32];
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        st_offset o;
        if (st_db_commit_epoch(f->db, i % 2 ? "default" : "other", name, (uint64_t)i + 1,
                               (uint32_t)i, 0, &o, err, sizeof(err)) != WH_OK)
            fail_msg("commit %d: %s", i, err);
    }
    assert_int_equal(st_db_consumer_count(f->db), N);
    close_all(f);
    open_all(f);
    assert_int_equal(st_db_consumer_count(f->db), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        uint64_t lsn;
        uint32_t seq;
        assert_int_equal(st_db_get_offset(f->db, i % 2 ? "default" : "other", name, &lsn, &seq, err,
                                          sizeof(err)),
                         WH_OK);
        assert_true(lsn == (uint64_t)i + 1 && seq == (uint32_t)i);
        /* same consumer name under the other tenant: unknown */
        assert_int_equal(st_db_get_offset(f->db, i % 2 ? "other" : "default", name, &lsn, &seq, err,
                                          sizeof(err)),
                         WH_OK);
        assert_true(lsn == 0);
    }
}

typedef struct worker {
    st_db *db;
    int id;
    int shared;
} worker;

static void *commit_worker(void *p)
{
    worker *w = p;
    char name[32], err[WH_ERRLEN];
    snprintf(name, sizeof(name), w->shared ? "shared" : "w%d", w->id);
    for (uint32_t i = 1; i <= 100; i++) {
        st_offset o;
        if (st_db_commit_epoch(w->db, "t", name, 0x10, w->shared ? i * 4 + (uint32_t)w->id : i, 0,
                               &o, err, sizeof(err)) != WH_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_concurrent_commits(void **state)
{
    fx *f = *state;
    pthread_t th[8];
    worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){f->db, i % 4, i >= 4};
        assert_int_equal(pthread_create(&th[i], NULL, commit_worker, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    char err[WH_ERRLEN], name[32];
    uint64_t lsn;
    uint32_t seq;
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        assert_int_equal(st_db_get_offset(f->db, "t", name, &lsn, &seq, err, sizeof(err)), WH_OK);
        assert_int_equal(seq, 100);
    }
    /* one consumer committed by four threads: the highest position wins */
    assert_int_equal(st_db_get_offset(f->db, "t", "shared", &lsn, &seq, err, sizeof(err)), WH_OK);
    assert_int_equal(seq, 403);
}

static void test_legacy_offset_value(void **state)
{
    fx *f = *state;
    close_all(f);
    /* an offset as older stores wrote it: 12 bytes, no epoch, in the
     * default column family of a store before per-tenant ones */
    char path[128];
    snprintf(path, sizeof(path), "%s/rocksdb", f->dir);
    wh_test_rmtree(path);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &e);
    if (db == NULL)
        fail_msg("rocksdb open: %s", e);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    const char key[] = "Ot\0old";
    const unsigned char val[12] = {0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 7};
    rocksdb_put(db, wo, key, sizeof(key) - 1, (const char *)val, sizeof(val), &e);
    assert_null(e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    open_all(f);
    char err[WH_ERRLEN];
    st_offset off;
    assert_int_equal(st_db_offset_info(f->db, "t", "old", &off, err, sizeof(err)), WH_OK);
    assert_true(off.lsn == 0x1234 && off.seq == 7 && off.epoch == 0);
    reply r;
    assert_int_equal(commit(f, "t", "old", 0x1235, 0, 0, &r), 0);
    done(&r);
    assert_int_equal(set_offset(f, "t", "old", 0, 0x1000, 0, &r), 0);
    assert_int_equal(r.rep.offset->epoch, 1);
    done(&r);
}

/* st_resync: a marked target with on_needs_snapshot = resync gets its
 * offset at the tenant's end and a backfill of every table in the state
 * document; one set to wait (the default) is left alone; a target marked
 * again within the minimum interval waits. */
static void set_on_needs_snapshot(fx *f, const char *target, const char *v)
{
    char err[WH_ERRLEN];
    wh_state *cur = st_state_current(f->st), *s = NULL;
    assert_non_null(cur);
    assert_int_equal(wh_state_clone(&s, cur), WH_OK);
    wh_state_unref(cur);
    wh_state_target *g =
        (wh_state_target *)wh_state_target_find(wh_state_tenant_find(s, "default"), target);
    assert_non_null(g);
    wh_strlcpy(g->dl.on_needs_snapshot, v, sizeof(g->dl.on_needs_snapshot));
    wh_buf doc;
    wh_buf_init(&doc, 0);
    assert_int_equal(wh_state_render(s, &doc, 0), WH_OK);
    uint64_t version = 0;
    int status = 0;
    if (st_state_put(f->st, s->version, doc.data, doc.len, "api", &version, &status, err,
                     sizeof(err)) != WH_OK)
        fail_msg("put: %s", err);
    wh_buf_free(&doc);
    wh_state_unref(s);
}

static void backfills_are(fx *f, const char *want)
{
    wh_state *cur = st_state_current(f->st);
    assert_non_null(cur);
    assert_string_equal(wh_state_tenant_find(cur, "default")->backfills, want);
    wh_state_unref(cur);
}

static int set_offset_at(fx *f, const char *tenant, const char *consumer,
                         Walhook__SetOffset__Condition cond, uint64_t expected_version,
                         uint64_t lsn, reply *r)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__SetOffset so = WALHOOK__SET_OFFSET__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    so.tenant = (char *)tenant;
    so.consumer = (char *)consumer;
    pos.lsn = lsn;
    so.pos = &pos;
    so.condition = cond;
    so.expected_version = expected_version;
    req.body_case = WALHOOK__REQUEST__BODY_SET_OFFSET;
    req.set_offset = &so;
    return call(f, &req, r);
}

static int set_offset_if(fx *f, const char *tenant, const char *consumer,
                         Walhook__SetOffset__Condition cond, uint64_t lsn, reply *r)
{
    return set_offset_at(f, tenant, consumer, cond, 0, lsn, r);
}

static int offset_live(fx *f, const char *tenant, const char *consumer, uint64_t *lsn)
{
    st_offset o;
    char err[WH_ERRLEN];
    assert_int_equal(st_db_offset_info(f->db, tenant, consumer, &o, err, sizeof(err)), WH_OK);
    *lsn = o.lsn;
    return st_db_offset_live(f->db, tenant, consumer);
}

/* SetOffset's conditions, against the current state: TARGET moves only a
 * target's offset (a removed target's dropped offset stays dropped, a
 * removed tenant is not made again); CREATE only one no target has and no
 * other create has set (live); ANY as before. */
static void test_set_offset_conditions(void **state)
{
    fx *f = *state;
    reply r;
    uint64_t lsn;
    const Walhook__SetOffset__Condition TARGET = WALHOOK__SET_OFFSET__CONDITION__TARGET;
    const Walhook__SetOffset__Condition CREATE = WALHOOK__SET_OFFSET__CONDITION__CREATE;
    assert_int_equal(set_offset_if(f, "default", "a", TARGET, 0x10, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x10);
    assert_int_equal(set_offset_if(f, "default", "zz", TARGET, 0x10, &r), ST_STATUS_NOT_FOUND);
    done(&r);
    assert_false(offset_live(f, "default", "zz", &lsn));

    /* b and tenant other removed: their offsets are dropped and stay so */
    assert_int_equal(commit(f, "default", "b", 0x20, 0, 0, &r), 0);
    done(&r);
    char err[WH_ERRLEN];
    wh_state *s = NULL;
    char *doc = current_doc_replace(f, NULL, "");
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)), WH_OK);
    free(doc);
    s->tenants[0].ntargets = 1;
    s->ntenants = 1;
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    s->ntenants = 2;
    wh_state_unref(s);
    assert_int_equal(put_state(f, 1, b.data, "api", &r), 0);
    done(&r);
    wh_buf_free(&b);
    assert_int_equal(set_offset_if(f, "default", "b", TARGET, 0x30, &r), ST_STATUS_NOT_FOUND);
    done(&r);
    assert_false(offset_live(f, "default", "b", &lsn));
    assert_int_equal(set_offset_if(f, "other", "x", TARGET, 0x30, &r), ST_STATUS_NOT_FOUND);
    done(&r);
    assert_int_equal(set_offset_if(f, "other", "x", CREATE, 0x30, &r), ST_STATUS_NOT_FOUND);
    done(&r);
    assert_false(offset_live(f, "other", "x", &lsn));
    assert_false(st_db_tenant_exists(f->db, "other"));

    /* CREATE: a new name, once; not a target's; a dropped one again */
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x40, &r), 0);
    done(&r);
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x50, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x40);
    assert_int_equal(set_offset_if(f, "default", "a", CREATE, 0x50, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x10);
    assert_int_equal(set_offset_if(f, "default", "b", CREATE, 0x50, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "b", &lsn) && lsn == 0x50);

    /* no condition: as before (any consumer) */
    assert_int_equal(set_offset(f, "default", "zz", 0, 0x60, 0, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "zz", &lsn) && lsn == 0x60);
}

/* Orphan offsets (live, no target names them): a CREATE of the name is
 * refused for the grace period from when the store first saw the offset,
 * then replaces it (the grace starts again); the sweep drops one past the
 * drop bound, a target's offset never; one found on disk after a restart
 * is first seen then, and a PutState naming it keeps it for the target. */
static void test_orphan_offsets(void **state)
{
    fx *f = *state;
    reply r;
    uint64_t lsn;
    const Walhook__SetOffset__Condition CREATE = WALHOOK__SET_OFFSET__CONDITION__CREATE;
    st_state_set_orphan_limits(f->st, 200, 600);
    append(f, "default", 0x100, 3, 0);
    assert_int_equal(commit(f, "default", "a", 0x100, 2, 0, &r), 0);
    done(&r);
    assert_int_equal(commit(f, "default", "b", 0x100, 2, 0, &r), 0);
    done(&r);

    /* a create's intent: a second create within the grace is 409 */
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x40, &r), 0);
    done(&r);
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x50, &r), ST_STATUS_CONFLICT);
    assert_non_null(strstr(r.rep.error, "under way"));
    done(&r);
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x40);
    assert_int_equal(st_state_sweep_orphans(f->st), 0);
    /* past the grace: replaced, and the grace starts again */
    wh_sleep_ms(250);
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x50, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x50);
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x60, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x50);

    /* it holds the GC back until the sweep drops it; the targets' stay */
    uint64_t wl;
    uint32_t ws;
    assert_int_equal(st_db_watermark(f->db, "default", &wl, &ws), WH_OK);
    assert_true(wl <= 0x50);
    assert_int_equal(st_state_sweep_orphans(f->st), 0);
    wh_sleep_ms(650);
    assert_int_equal(st_state_sweep_orphans(f->st), 1);
    assert_false(offset_live(f, "default", "n", &lsn));
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x100);
    assert_true(offset_live(f, "default", "b", &lsn) && lsn == 0x100);
    assert_int_equal(st_db_watermark(f->db, "default", &wl, &ws), WH_OK);
    assert_true(wl == 0x100 && ws == 2);
    /* dropped: a create of it passes at once */
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x70, &r), 0);
    done(&r);

    /* the store restarts with that create's offset on disk: first seen at
     * the restart, so a create of it is refused for the grace again */
    close_all(f);
    open_all(f);
    st_state_set_orphan_limits(f->st, 200, 600);
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x70);
    assert_int_equal(set_offset_if(f, "default", "n", CREATE, 0x80, &r), ST_STATUS_CONFLICT);
    done(&r);
    assert_int_equal(st_state_sweep_orphans(f->st), 0);
    /* the first create's PutState reaches the new store: the target starts
     * at the offset that create set, which is no orphan any more */
    char *doc = current_doc_replace(f, "{\"name\":\"b\",",
                                    "{\"name\":\"n\",\"url\":\"http://127.0.0.1:9/n\"},"
                                    "{\"name\":\"b\",");
    assert_int_equal(put_state(f, current_version(f), doc, "api", &r), 0);
    done(&r);
    free(doc);
    wh_sleep_ms(650);
    assert_int_equal(st_state_sweep_orphans(f->st), 0);
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x70);

    /* any other consumer no target names is found by the sweep */
    assert_int_equal(set_offset(f, "other", "hold", 0, 0x10, 0, &r), 0);
    done(&r);
    assert_int_equal(st_state_sweep_orphans(f->st), 0);
    assert_true(offset_live(f, "other", "hold", &lsn));
    wh_sleep_ms(650);
    assert_int_equal(st_state_sweep_orphans(f->st), 1);
    assert_false(offset_live(f, "other", "hold", &lsn));
    assert_true(offset_live(f, "default", "n", &lsn) && lsn == 0x70);
}

static uint64_t offset_epoch(fx *f, const char *tenant, const char *consumer)
{
    st_offset o;
    char err[WH_ERRLEN];
    assert_int_equal(st_db_offset_info(f->db, tenant, consumer, &o, err, sizeof(err)), WH_OK);
    return o.epoch;
}

/* SetOffset.expected_version (the admin's If-Match): the store moves the
 * offset only while the state is at that version, compared under the
 * state's lock; another version is 412 and moves nothing (no epoch bump,
 * no consumer made). The version is the state's: a commit does not change
 * it. 0 checks nothing; a condition that fails answers first. */
static void test_set_offset_expected_version(void **state)
{
    fx *f = *state;
    reply r;
    uint64_t lsn;
    const Walhook__SetOffset__Condition ANY = WALHOOK__SET_OFFSET__CONDITION__ANY;
    const Walhook__SetOffset__Condition TARGET = WALHOOK__SET_OFFSET__CONDITION__TARGET;
    assert_int_equal(current_version(f), 1);
    assert_int_equal(set_offset_at(f, "default", "a", TARGET, 1, 0x10, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x10);

    /* another writer's PutState: version 2 */
    char *doc = current_doc_replace(f, "http://127.0.0.1:9/b", "http://127.0.0.1:9/b2");
    assert_int_equal(put_state(f, 1, doc, "api", &r), 0);
    done(&r);
    free(doc);
    assert_int_equal(current_version(f), 2);

    /* based on version 1: refused, nothing moved */
    uint64_t epoch = offset_epoch(f, "default", "a");
    assert_int_equal(set_offset_at(f, "default", "a", TARGET, 1, 0x20, &r), ST_STATE_CONFLICT);
    assert_non_null(strstr(r.rep.error, "current is 2"));
    assert_non_null(strstr(r.rep.error, "names 1"));
    done(&r);
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x10);
    assert_int_equal(offset_epoch(f, "default", "a"), epoch);
    assert_int_equal(set_offset_at(f, "default", "a", TARGET, 3, 0x20, &r), ST_STATE_CONFLICT);
    done(&r);
    /* without a condition too, and no consumer is made */
    assert_int_equal(set_offset_at(f, "default", "zz", ANY, 1, 0x20, &r), ST_STATE_CONFLICT);
    done(&r);
    assert_false(offset_live(f, "default", "zz", &lsn));
    /* a failing condition answers first */
    assert_int_equal(set_offset_at(f, "default", "nope", TARGET, 1, 0x20, &r), ST_STATUS_NOT_FOUND);
    done(&r);

    /* a commit moves the offset, not the version: version 2 still holds */
    assert_int_equal(commit(f, "default", "a", 0x18, 0, epoch, &r), 0);
    done(&r);
    assert_int_equal(set_offset_at(f, "default", "a", TARGET, 2, 0x30, &r), 0);
    assert_true(r.rep.offset->previous->lsn == 0x18);
    assert_true(r.rep.offset->committed->lsn == 0x30);
    assert_int_equal(r.rep.offset->epoch, epoch + 1);
    done(&r);
    assert_int_equal(set_offset_at(f, "default", "zz", ANY, 2, 0x40, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "zz", &lsn) && lsn == 0x40);
    /* 0: no check, as before */
    assert_int_equal(set_offset_at(f, "default", "a", TARGET, 0, 0x50, &r), 0);
    done(&r);
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x50);

    /* a store that keeps no state cannot compare: 503, nothing moved */
    st_server_set_state(f->srv, NULL);
    assert_int_equal(set_offset_at(f, "default", "a", ANY, 2, 0x60, &r), ST_STATUS_UNAVAILABLE);
    done(&r);
    st_server_set_state(f->srv, f->st);
    assert_true(offset_live(f, "default", "a", &lsn) && lsn == 0x50);
}

/* PutState of s (rendered) at expected version s->version. */
static int put_parsed(fx *f, wh_state *s, reply *r)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    int rc = put_state(f, s->version, b.data, "api", r);
    wh_buf_free(&b);
    return rc;
}

/* A clone of the current document, to edit and put. */
static wh_state *current_clone(fx *f)
{
    wh_state *cur = st_state_current(f->st), *s = NULL;
    assert_non_null(cur);
    assert_int_equal(wh_state_clone(&s, cur), WH_OK);
    wh_state_unref(cur);
    return s;
}

/* A target an older walhook stored with a filter that does not compile:
 * the document loads, and the writes that leave that target as it is go
 * through (another target changed, a tenant added); a write that changes
 * it with the filter still bad, or that brings a new bad filter, is
 * refused naming the target's filter; a good filter mends it. */
static void test_legacy_bad_filter(void **state)
{
    fx *f = *state;
    reply r;
    char err[WH_ERRLEN];
    char *doc = current_doc_replace(f, "\"name\":\"b\"",
                                    "\"filter_expr\":\"after.amount => 5\",\"name\":\"b\"");
    assert_int_equal(st_db_state_put(f->db, 2, doc, strlen(doc), err, sizeof(err)), WH_OK);
    free(doc);
    close_all(f);
    open_all(f);
    assert_int_equal(current_version(f), 2);
    wh_state *s = current_clone(f);
    assert_string_equal(s->tenants[0].targets[1].name, "b");
    assert_string_equal(s->tenants[0].targets[1].dl.filter_expr, "after.amount => 5");

    /* another target paused, a tenant added: stored */
    s->tenants[0].targets[0].paused = 1;
    wh_state_tenant *t = wh_state_tenant_add(s);
    assert_non_null(t);
    wh_strlcpy(t->name, "third", sizeof(t->name));
    wh_strlcpy(t->slot, "third", sizeof(t->slot));
    wh_strlcpy(t->publication, "walhook", sizeof(t->publication));
    if (put_parsed(f, s, &r) != 0)
        fail_msg("a write that leaves the legacy target alone: %s", r.rep.error);
    assert_int_equal(r.rep.state->version, 3);
    done(&r);
    wh_state_unref(s);
    s = current_clone(f);
    assert_non_null(wh_state_tenant_find(s, "third"));
    assert_string_equal(s->tenants[0].targets[1].dl.filter_expr, "after.amount => 5");
    /* a target added next to it */
    wh_state_target *g = wh_state_target_add(&s->tenants[0]);
    assert_non_null(g);
    wh_strlcpy(g->name, "c", sizeof(g->name));
    wh_strlcpy(g->url, "http://127.0.0.1:9/c", sizeof(g->url));
    wh_strlcpy(g->dl.filter_ops, "insert", sizeof(g->dl.filter_ops));
    if (put_parsed(f, s, &r) != 0)
        fail_msg("a target added next to the legacy one: %s", r.rep.error);
    assert_int_equal(r.rep.state->version, 4);
    done(&r);
    wh_state_unref(s);

    /* the legacy target changed, its filter left bad: refused, nothing stored */
    s = current_clone(f);
    wh_state_target *b = &s->tenants[0].targets[1];
    wh_strlcpy(b->url, "http://127.0.0.1:9/b2", sizeof(b->url));
    assert_int_equal(put_parsed(f, s, &r), ST_STATE_BAD);
    if (strstr(r.rep.error, "tenants[0].targets[1].filter_expr: position") == NULL)
        fail_msg("error: %s", r.rep.error);
    done(&r);
    /* a new bad filter on another target: refused */
    wh_strlcpy(b->url, "http://127.0.0.1:9/b", sizeof(b->url));
    wh_strlcpy(s->tenants[0].targets[2].dl.filter_expr, "after.x >> 1",
               sizeof(s->tenants[0].targets[2].dl.filter_expr));
    assert_int_equal(put_parsed(f, s, &r), ST_STATE_BAD);
    if (strstr(r.rep.error, "tenants[0].targets[2].filter_expr: position") == NULL)
        fail_msg("error: %s", r.rep.error);
    done(&r);
    assert_int_equal(current_version(f), 4);
    /* mended by a good filter; a bad one again is a change, refused */
    s->tenants[0].targets[2].dl.filter_expr[0] = '\0';
    wh_strlcpy(b->dl.filter_expr, "after.amount >= 5", sizeof(b->dl.filter_expr));
    if (put_parsed(f, s, &r) != 0)
        fail_msg("the mending write: %s", r.rep.error);
    assert_int_equal(r.rep.state->version, 5);
    done(&r);
    wh_state_unref(s);
    s = current_clone(f);
    wh_strlcpy(s->tenants[0].targets[1].dl.filter_expr, "after.amount => 5",
               sizeof(s->tenants[0].targets[1].dl.filter_expr));
    assert_int_equal(put_parsed(f, s, &r), ST_STATE_BAD);
    assert_non_null(strstr(r.rep.error, "tenants[0].targets[1].filter_expr: position"));
    done(&r);
    wh_state_unref(s);
    assert_int_equal(current_version(f), 5);
}

/* A reload of the file (origin "file", whichever daemon sends it) keeps
 * the pending backfill requests: the file has none. */
static void test_file_origin_keeps_backfills(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    wh_state *s = NULL;
    char *doc = current_doc_replace(f, NULL, "");
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)), WH_OK);
    free(doc);
    wh_strlcpy(s->tenants[0].backfills, "2:public.t", sizeof(s->tenants[0].backfills));
    assert_int_equal(put_rendered(f, s, 1, "api"), 0);
    backfills_are(f, "2:public.t");
    /* the file as the admin, ingestor and dispatcher send it on SIGHUP */
    assert_int_equal(wh_state_from_config(&s, &f->cfg, f->conf, err, sizeof(err)), WH_OK);
    assert_int_equal(put_rendered(f, s, 0, "file"), 0);
    backfills_are(f, "2:public.t");
}

/* A reload of the file keeps each target's resume count (the file has
 * none): an unchanged file is no new version, and the dispatcher never
 * sees the count change. Before, it went back to 0 in a new version. */
static void test_file_origin_keeps_resumes(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    wh_state *s = NULL;
    char *doc = current_doc_replace(f, NULL, "");
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)), WH_OK);
    free(doc);
    assert_string_equal(s->tenants[0].targets[0].name, "a");
    s->tenants[0].targets[0].resumes = 3;
    assert_int_equal(put_rendered(f, s, 1, "api"), 0);
    uint64_t v = current_version(f);
    /* the unchanged file, as a SIGHUP sends it */
    assert_int_equal(wh_state_from_config(&s, &f->cfg, f->conf, err, sizeof(err)), WH_OK);
    assert_int_equal(put_rendered(f, s, 0, "file"), 0);
    assert_int_equal(current_version(f), v);
    wh_state *cur = st_state_current(f->st);
    const wh_state_tenant *t = wh_state_tenant_find(cur, "default");
    assert_non_null(t);
    assert_int_equal(wh_state_target_find(t, "a")->resumes, 3);
    wh_state_unref(cur);
}

static int64_t created_of(fx *f, const char *tenant, const char *target)
{
    wh_state *cur = st_state_current(f->st);
    assert_non_null(cur);
    const wh_state_target *g = wh_state_target_find(wh_state_tenant_find(cur, tenant), target);
    assert_non_null(g);
    int64_t v = g->created_version;
    wh_state_unref(cur);
    return v;
}

/* Each target carries the state version that created it, set by the store
 * alone: the dispatcher tells by it a target deleted and created again
 * under its name when it sees both writes as one version (before, it kept
 * the old target, disabled by its 410). Seeded targets: 1; a new one: the
 * version its write makes; kept by every later write (a file reload, a
 * writer that sends another value); a target created again: a new value. */
static void test_created_version(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    assert_int_equal(created_of(f, "default", "a"), 1);
    assert_int_equal(created_of(f, "other", "x"), 1);
    /* a new target c, with a value the writer made up */
    char *doc = current_doc_replace(f, "\"targets\":[",
                                    "\"targets\":[{\"name\":\"c\",\"url\":"
                                    "\"http://127.0.0.1:9/c\",\"created_"
                                    "version\":77},");
    reply r;
    assert_int_equal(put_state(f, 1, doc, "api", &r), 0);
    done(&r);
    free(doc);
    assert_int_equal(current_version(f), 2);
    assert_int_equal(created_of(f, "default", "c"), 2);
    assert_int_equal(created_of(f, "default", "a"), 1);
    /* a writer's other value for an existing target is not taken */
    wh_state *s = NULL;
    doc = current_doc_replace(f, NULL, "");
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)), WH_OK);
    free(doc);
    wh_state_tenant *t = &s->tenants[0];
    assert_string_equal(t->name, "default");
    wh_state_target *c = (wh_state_target *)wh_state_target_find(t, "c");
    c->created_version = 9;
    c->paused = 1;
    assert_int_equal(put_rendered(f, s, 2, "api"), 0);
    assert_int_equal(current_version(f), 3);
    assert_int_equal(created_of(f, "default", "c"), 2);
    /* the unchanged file (no created_version in it): no new version */
    assert_int_equal(wh_state_from_config(&s, &f->cfg, f->conf, err, sizeof(err)), WH_OK);
    assert_int_equal(put_rendered(f, s, 0, "file"), 0);
    assert_int_equal(current_version(f), 4); /* c goes: the file does not have it */
    assert_int_equal(created_of(f, "default", "a"), 1);
    assert_int_equal(wh_state_from_config(&s, &f->cfg, f->conf, err, sizeof(err)), WH_OK);
    assert_int_equal(put_rendered(f, s, 0, "file"), 0);
    assert_int_equal(current_version(f), 4);
    /* a deleted, then created again: a new value */
    doc = current_doc_replace(f, NULL, "");
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)), WH_OK);
    free(doc);
    assert_int_equal(wh_state_target_remove(&s->tenants[0], "a"), WH_OK);
    assert_int_equal(put_rendered(f, s, 4, "api"), 0);
    doc = current_doc_replace(f, "\"targets\":[",
                              "\"targets\":[{\"name\":\"a\",\"url\":"
                              "\"http://127.0.0.1:9/a\"},");
    assert_int_equal(put_state(f, 5, doc, "api", &r), 0);
    done(&r);
    free(doc);
    assert_int_equal(current_version(f), 6);
    assert_int_equal(created_of(f, "default", "a"), 6);
    /* kept across a reopen (it is in the stored document) */
    close_all(f);
    open_all(f);
    assert_int_equal(created_of(f, "default", "a"), 6);
    assert_int_equal(created_of(f, "other", "x"), 1);
}

static void test_auto_resync(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    reply r;
    append(f, "default", 0x100, 3, 0);
    append(f, "default", 0x200, 2, 0);
    assert_int_equal(commit(f, "default", "a", 0x100, 0, 0, &r), 0);
    done(&r);
    assert_int_equal(commit(f, "default", "b", 0x100, 0, 0, &r), 0);
    done(&r);
    assert_int_equal(
        st_db_mark_needs_snapshot(f->db, "default", "a", 0x100, 0, ST_NS_RETENTION, "test"), 1);
    assert_int_equal(
        st_db_mark_needs_snapshot(f->db, "default", "b", 0x100, 0, ST_NS_RETENTION, "test"), 1);
    st_resync *rs = NULL;
    assert_int_equal(st_resync_new(&rs, f->db, f->st, 60000, err, sizeof(err)), WH_OK);
    /* both wait (the default) */
    assert_int_equal(st_resync_run(rs), 0);
    assert_int_equal(st_db_needs_snapshot(f->db, "default", "a"), 1);
    backfills_are(f, "");
    set_on_needs_snapshot(f, "a", "resync");
    assert_int_equal(st_resync_run(rs), 1);
    assert_int_equal(st_db_needs_snapshot(f->db, "default", "a"), 0);
    assert_int_equal(st_db_needs_snapshot(f->db, "default", "b"), 1);
    uint64_t lsn = 0;
    uint32_t seq = 0;
    assert_int_equal(st_db_get_offset(f->db, "default", "a", &lsn, &seq, err, sizeof(err)), WH_OK);
    assert_true(lsn == 0x200 && seq == 1);
    backfills_are(f, "3:*"); /* the id: the state's version (2) + 1 */
    /* marked again at once: it waits for the minimum interval */
    append(f, "default", 0x300, 1, 0);
    assert_int_equal(
        st_db_mark_needs_snapshot(f->db, "default", "a", 0x200, 1, ST_NS_RETENTION, "test"), 1);
    assert_int_equal(st_resync_run(rs), 0);
    assert_int_equal(st_db_needs_snapshot(f->db, "default", "a"), 1);
    st_resync_free(rs);
    /* no minimum interval, both set to resync: resynced together, with one
     * more backfill */
    set_on_needs_snapshot(f, "b", "resync");
    assert_int_equal(st_resync_new(&rs, f->db, f->st, 0, err, sizeof(err)), WH_OK);
    assert_int_equal(st_resync_run(rs), 2);
    assert_int_equal(st_db_get_offset(f->db, "default", "a", &lsn, &seq, err, sizeof(err)), WH_OK);
    assert_true(lsn == 0x300 && seq == 0);
    assert_int_equal(st_db_get_offset(f->db, "default", "b", &lsn, &seq, err, sizeof(err)), WH_OK);
    assert_true(lsn == 0x300 && seq == 0);
    assert_int_equal(st_db_needs_snapshot(f->db, "default", "b"), 0);
    backfills_are(f, "3:*;5:*");
    /* nothing marked: nothing done */
    assert_int_equal(st_resync_run(rs), 0);
    backfills_are(f, "3:*;5:*");
    /* st_db_resync_offset moves only a marked offset */
    st_offset prev;
    assert_int_equal(st_db_resync_offset(f->db, "default", "a", 0x100, 0, &prev, err, sizeof(err)),
                     0);
    assert_int_equal(st_db_get_offset(f->db, "default", "a", &lsn, &seq, err, sizeof(err)), WH_OK);
    assert_true(lsn == 0x300 && seq == 0);
    assert_int_equal(st_db_resync_offset(f->db, "nosuch", "a", 0x100, 0, &prev, err, sizeof(err)),
                     0);
    st_resync_free(rs);
}

static void test_no_state_attached(void **state)
{
    fx *f = *state;
    st_server_set_state(f->srv, NULL);
    reply r;
    assert_int_equal(get_state(f, 0, &r), ST_STATUS_UNAVAILABLE);
    done(&r);
    assert_int_equal(put_state(f, 1, "{}", "api", &r), ST_STATUS_UNAVAILABLE);
    done(&r);
    st_server_set_state(f->srv, f->st);
}

/* GetState/PutState over real NNG through wh_state_fetch/wh_state_store. */
static void test_fetch_store_over_ipc(void **state)
{
    fx *f = *state;
    char url[128], err[WH_ERRLEN];
    snprintf(url, sizeof(url), "ipc://%s/store.sock", f->dir);
    assert_int_equal(st_server_listen(f->srv, url, err, sizeof(err)), WH_OK);
    wh_client *c = NULL;
    assert_int_equal(wh_client_open(&c, url, 5000, 4u << 20, err, sizeof(err)), WH_OK);
    wh_state *s = NULL;
    if (wh_state_fetch(c, 0, &f->cfg, &s, err, sizeof(err)) != WH_OK)
        fail_msg("fetch: %s", err);
    assert_non_null(s);
    assert_int_equal(s->version, 1);
    wh_state *none = NULL;
    assert_int_equal(wh_state_fetch(c, 1, &f->cfg, &none, err, sizeof(err)), WH_OK);
    assert_null(none);
    wh_strlcpy(s->tenants[0].targets[0].url, "http://127.0.0.1:9/changed", WH_URL_MAX);
    uint64_t v = 0;
    int status = 0;
    assert_int_equal(wh_state_store(c, s, 1, "api", &v, &status, err, sizeof(err)), WH_OK);
    assert_int_equal(v, 2);
    assert_int_equal(wh_state_store(c, s, 1, "api", &v, &status, err, sizeof(err)), WH_ERR);
    assert_int_equal(status, 412);
    assert_non_null(strstr(err, "current is 2"));
    s->tenants[0].targets[0].url[0] = '\0';
    assert_int_equal(wh_state_store(c, s, 2, "api", &v, &status, err, sizeof(err)), WH_ERR);
    assert_int_equal(status, 400);
    wh_state_unref(s);
    assert_int_equal(wh_state_fetch(c, 1, &f->cfg, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(s->version, 2);
    assert_string_equal(s->tenants[0].targets[0].url, "http://127.0.0.1:9/changed");
    wh_state_unref(s);
    wh_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seeded_from_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_conflict_and_bad_doc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_target_offset_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readded_target_undropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_offset_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_offset_and_tenant_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_consumers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_leftover_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_marked_removal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_refused_when_tenant_cannot_be_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_offset_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_resync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_state_attached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_store_over_ipc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_offset_conditions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_offset_expected_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_origin_keeps_backfills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_origin_keeps_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_created_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_bad_filter, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
