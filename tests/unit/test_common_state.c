/* Unit tests of wh_state: parse/validate errors naming the field, canonical
 * and redacted rendering, from_config with a `tenants` list in a real file,
 * clone/ref, the effective config, runtime hooks, and the watcher against a
 * real NNG server in this process that answers GetState/PutState. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_dsn.h"
#include "wh_ipc.h"
#include "wh_state.h"
#include "wh_util.h"

#define SECRET1 "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3" /* 24 bytes */
#define SECRET2 "whsec_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU2Nzg5"

static char path[64];

static const char *write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/wh_state_test_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *GOOD =
    "{\"version\":3,\"settings\":{\"log_level\":\"debug\",\"ingestor.flush_bytes\":65536},"
    "\"tenants\":[{\"name\":\"shop\",\"source\":{\"dsn\":\"postgresql://u:hunter2@127.0.0.1/"
    "shop\",\"slot\":\"s1\"},"
    "\"targets\":[{\"name\":\"orders\",\"url\":\"https://h.example/o?token=abc\",\"secrets\":"
    "[\"" SECRET1 "\",\"" SECRET2 "\"],\"retry_max_ms\":5000},"
    "{\"name\":\"audit\",\"url\":\"http://127.0.0.1:9/a\",\"paused\":true}]},"
    "{\"name\":\"crm\",\"source\":{\"dsn\":\"dbname=crm\",\"slot\":\"s2\","
    "\"create_slot\":false}}]}";

static wh_state *parse_ok(const char *doc)
{
    wh_state *s = NULL;
    char err[WH_ERRLEN];
    if (wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)) != WH_OK)
        fail_msg("parse: %s", err);
    return s;
}

static char *render(const wh_state *s, int flags)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, flags), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    return b.data;
}

static void test_parse_good(void **state)
{
    wh_state *s = parse_ok(GOOD);
    assert_int_equal(s->version, 3);
    assert_string_equal(s->settings.log_level, "debug");
    assert_true(s->settings.flush_bytes == 65536);
    assert_true(s->settings.flush_age_us == 500); /* default: the document omits it */
    assert_int_equal(s->ntenants, 2);
    const wh_state_tenant *t = wh_state_tenant_find(s, "shop");
    assert_non_null(t);
    assert_string_equal(t->slot, "s1");
    assert_string_equal(t->publication, "walhook");
    assert_int_equal(t->create_slot, 1);
    assert_int_equal(t->ntargets, 2);
    const wh_state_target *g = wh_state_target_find(t, "orders");
    assert_non_null(g);
    assert_int_equal(g->nsecrets, 2);
    assert_string_equal(g->secrets[1], SECRET2);
    assert_int_equal(g->retry_max_ms, 5000);
    assert_int_equal(g->batch_max_events, 0);
    assert_int_equal(wh_state_target_find(t, "audit")->paused, 1);
    assert_null(wh_state_target_find(t, "nope"));
    assert_null(wh_state_tenant_find(s, "nope"));
    assert_int_equal(wh_state_tenant_find(s, "crm")->create_slot, 0);
    wh_state_unref(s);
}

static void test_parse_errors(void **state)
{
    static const struct {
        const char *doc, *want;
    } cases[] = {
        {"", "document: invalid JSON"},
        {"[1]", "document: expected an object"},
        {"{\"a\":1,\"a\":2}", "document: invalid JSON"},
        {"{\"bogus\":1}", "bogus: unknown field"},
        {"{\"version\":\"x\"}", "version: expected an integer"},
        {"{\"settings\":{\"nope\":1}}", "settings.nope: unknown setting"},
        {"{\"settings\":{\"store.workers\":2}}", "settings.store.workers: not changeable"},
        {"{\"settings\":{\"ingestor.flush_bytes\":\"1\"}}",
         "settings.ingestor.flush_bytes: expected an integer"},
        {"{\"settings\":{\"ingestor.flush_bytes\":1}}",
         "settings.ingestor.flush_bytes: 1 is out of range"},
        {"{\"settings\":{\"log_level\":\"loud\"}}", "settings.log_level: 'loud'"},
        {"{\"settings\":{\"source.skip_origins\":\"a,,b\"}}",
         "settings.source.skip_origins: item 2 is empty"},
        {"{\"settings\":{\"dispatcher.retry_base_ms\":500,\"dispatcher.retry_max_ms\":100}}",
         "settings.dispatcher.retry_max_ms: 100 is below"},
        {"{\"tenants\":{}}", "tenants: expected a list"},
        {"{\"tenants\":[{}]}", "tenants[0].name: missing"},
        {"{\"tenants\":[{\"name\":\"a b\"}]}", "tenants[0].name: must be"},
        {"{\"tenants\":[{\"name\":\"a\"},{\"name\":\"a\"}]}", "tenants[1].name: duplicate"},
        {"{\"tenants\":[{\"name\":\"a\",\"x\":1}]}", "tenants[0].x: unknown field"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://h/\","
         "\"later\":1}]}]}",
         "tenants[0].targets[0].later: unknown field (written by a newer walhook? every daemon "
         "must run the same version)"},
        {"{\"tenants\":[{\"name\":\"a\",\"source\":{\"dsn\":\"nonsense=1\"}}]}",
         "tenants[0].source.dsn: invalid connection string"},
        {"{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"Bad\"}}]}",
         "tenants[0].source.slot: may contain only"},
        {"{\"tenants\":[{\"name\":\"a\",\"source\":{\"create_slot\":1}}]}",
         "tenants[0].source.create_slot: expected true or false"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\"}]}]}",
         "tenants[0].targets[0].url: missing"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"ftp://x\"}]}]}",
         "tenants[0].targets[0].url: must start with http"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://"
         "x\\r\\n\"}]}]}",
         "tenants[0].targets[0].url: byte 8 is a control character"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://\"}]}]}",
         "tenants[0].targets[0].url: no host"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\"},"
         "{\"name\":\"t\",\"url\":\"http://y\"}]}]}",
         "tenants[0].targets[1].name: duplicate target name"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"secrets\":[\"nope\"]}]}]}",
         "tenants[0].targets[0].secrets[0]: decodes to 3 bytes"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"secrets\":[\"whsec_YWJj\"]}]}]}",
         "tenants[0].targets[0].secrets[0]: decodes to 3 bytes"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"secrets\":[\"whsec_!!!!\"]}]}]}",
         "tenants[0].targets[0].secrets[0]: not whsec_ followed by standard base64"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"batch_max_events\":0,\"http_timeout_ms\":5}]}]}",
         "tenants[0].targets[0].http_timeout_ms: 5 is out of range"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"paused\":\"yes\"}]}]}",
         "tenants[0].targets[0].paused: expected true or false"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"resumes\":-1}]}]}",
         "tenants[0].targets[0].resumes: -1 is negative"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"resumes\":true}]}]}",
         "tenants[0].targets[0].resumes: expected an integer"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"created_version\":-2}]}]}",
         "tenants[0].targets[0].created_version: -2 is negative"},
        {"{\"tenants\":[{\"name\":\"a\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\","
         "\"retry_base_ms\":900,\"retry_max_ms\":100}]}]}",
         "tenants[0].targets[0].retry_max_ms: 100 is below"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wh_state *s = (wh_state *)1;
        char err[WH_ERRLEN] = "";
        int rc = wh_state_parse(&s, cases[i].doc, strlen(cases[i].doc), NULL, err, sizeof(err));
        if (rc != WH_ERR || s != NULL || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu %s: rc %d, err '%s', want '%s'", i, cases[i].doc, rc, err,
                     cases[i].want);
    }
}

/* Filter settings are compiled by every write's validation (the admin's
 * PATCH, the store's PutState), naming the setting; a stored document that
 * already holds one that does not compile is still read. */
/* a target's resume count (the dispatcher re-enables a 410 target when it
 * grows): read, rendered back, left out while 0 */
static void test_resumes(void **state)
{
    (void)state;
    wh_state *s = parse_ok("{\"tenants\":[{\"name\":\"a\",\"targets\":["
                           "{\"name\":\"t\",\"url\":\"http://x\",\"resumes\":4},"
                           "{\"name\":\"u\",\"url\":\"http://y\"}]}]}");
    const wh_state_tenant *t = wh_state_tenant_find(s, "a");
    assert_true(wh_state_target_find(t, "t")->resumes == 4);
    assert_true(wh_state_target_find(t, "u")->resumes == 0);
    char *doc = render(s, 0);
    assert_non_null(strstr(doc, "\"resumes\":4"));
    assert_null(strstr(strstr(doc, "\"name\":\"u\""), "resumes"));
    free(doc);
    wh_state_unref(s);
}

/* the state version that created a target: read, rendered back, left out
 * while 0 (a document stored before it reads as it did); stamped from the
 * document a write replaces: kept for a target it has, the new version for
 * the others (a target deleted and created again under its name, a tenant
 * created again), whatever the writer sent */
static void test_created_version(void **state)
{
    (void)state;
    wh_state *cur = parse_ok("{\"tenants\":[{\"name\":\"a\",\"targets\":["
                             "{\"name\":\"t\",\"url\":\"http://x\",\"created_version\":4},"
                             "{\"name\":\"u\",\"url\":\"http://y\"}]}]}");
    const wh_state_tenant *t = wh_state_tenant_find(cur, "a");
    assert_true(wh_state_target_find(t, "t")->created_version == 4);
    assert_true(wh_state_target_find(t, "u")->created_version == 0);
    char *doc = render(cur, 0);
    assert_non_null(strstr(doc, "\"created_version\":4"));
    assert_null(strstr(strstr(doc, "\"name\":\"u\""), "created_version"));
    free(doc);

    wh_state *next =
        parse_ok("{\"tenants\":[{\"name\":\"a\",\"targets\":["
                 "{\"name\":\"t\",\"url\":\"http://x\",\"created_version\":9},"
                 "{\"name\":\"u\",\"url\":\"http://y\"},"
                 "{\"name\":\"v\",\"url\":\"http://z\",\"created_version\":4}]},"
                 "{\"name\":\"b\",\"targets\":[{\"name\":\"t\",\"url\":\"http://x\"}]}]}");
    wh_state_stamp_created(next, cur, 8);
    t = wh_state_tenant_find(next, "a");
    assert_true(wh_state_target_find(t, "t")->created_version == 4);
    assert_true(wh_state_target_find(t, "u")->created_version == 0);
    assert_true(wh_state_target_find(t, "v")->created_version == 8);
    t = wh_state_tenant_find(next, "b");
    assert_true(wh_state_target_find(t, "t")->created_version == 8);
    /* no current document: every target is new */
    wh_state_stamp_created(next, NULL, 1);
    assert_true(wh_state_target_find(wh_state_tenant_find(next, "a"), "t")->created_version == 1);
    wh_state_unref(next);
    wh_state_unref(cur);
}

static void test_filter_settings_checked(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    wh_delivery d;
    memset(&d, 0, sizeof(d));
    wh_strlcpy(d.filter_ops, "insert,read,update", sizeof(d.filter_ops));
    wh_strlcpy(d.filter_expr, "after.amount > 5 && op == \"insert\"", sizeof(d.filter_expr));
    if (wh_delivery_check(&d, err, sizeof(err)) != WH_OK)
        fail_msg("good filter refused: %s", err);
    wh_strlcpy(d.filter_expr, "after.amount => 5", sizeof(d.filter_expr));
    assert_int_equal(wh_delivery_check(&d, err, sizeof(err)), WH_ERR);
    if (strncmp(err, "filter_expr: position", 21) != 0)
        fail_msg("error: %s", err);
    assert_int_equal(wh_delivery_check_filter(&d, err, sizeof(err)), WH_ERR);
    d.filter_expr[0] = '\0';
    wh_strlcpy(d.filter_ops, "insert,upsert", sizeof(d.filter_ops));
    assert_int_equal(wh_delivery_check(&d, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "filter_ops[1]: unknown operation \"upsert\""));
    wh_strlcpy(d.filter_ops, "insert", sizeof(d.filter_ops));
    wh_strlcpy(d.filter_columns_include, "a", sizeof(d.filter_columns_include));
    wh_strlcpy(d.filter_columns_exclude, "b", sizeof(d.filter_columns_exclude));
    assert_int_equal(wh_delivery_check(&d, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "filter_columns_include, filter_columns_exclude"));

    const char *bad = "{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\"},"
                      "\"targets\":[{\"name\":\"t\",\"url\":\"http://h/x\","
                      "\"filter_expr\":\"after.amount >> 5\"}]}]}";
    wh_state *s = parse_ok(bad); /* read as stored */
    assert_int_equal(wh_state_validate(s, err, sizeof(err)), WH_ERR);
    if (strstr(err, "tenants[0].targets[0].filter_expr: position") == NULL)
        fail_msg("error: %s", err);
    wh_state_unref(s);
}

/* A write is validated against the document it replaces: a target left as
 * stored is not refused for a filter that does not compile (an older
 * walhook stored it); one the write adds or changes is, naming it. */
static void test_validate_write_keeps_legacy_filter(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    const char *doc = "{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\"},"
                      "\"targets\":[{\"name\":\"good\",\"url\":\"http://h/g\"},"
                      "{\"name\":\"bad\",\"url\":\"http://h/b\","
                      "\"filter_expr\":\"after.amount => 5\"}]}]}";
    wh_state *cur = parse_ok(doc);
    assert_int_equal(wh_state_validate(cur, err, sizeof(err)), WH_ERR);
    /* nothing stored before it: every filter compiled */
    assert_int_equal(wh_state_validate_write(cur, NULL, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenants[0].targets[1].filter_expr: position"));
    /* the same document again, another target changed, a tenant added */
    assert_int_equal(wh_state_validate_write(cur, cur, err, sizeof(err)), WH_OK);
    wh_state *next = NULL;
    assert_int_equal(wh_state_clone(&next, cur), WH_OK);
    next->tenants[0].targets[0].paused = 1;
    wh_strlcpy(next->tenants[0].targets[0].dl.filter_ops, "insert",
               sizeof(next->tenants[0].targets[0].dl.filter_ops));
    wh_state_tenant *t = wh_state_tenant_add(next);
    assert_non_null(t);
    wh_strlcpy(t->name, "b", sizeof(t->name));
    wh_strlcpy(t->slot, "sb", sizeof(t->slot));
    wh_strlcpy(t->publication, "walhook", sizeof(t->publication));
    if (wh_state_validate_write(next, cur, err, sizeof(err)) != WH_OK)
        fail_msg("a write that leaves the legacy target alone: %s", err);
    /* the legacy target changed (its URL, or paused), its filter still bad */
    wh_state_target *bad = &next->tenants[0].targets[1];
    wh_strlcpy(bad->url, "http://h/b2", sizeof(bad->url));
    assert_int_equal(wh_state_validate_write(next, cur, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenants[0].targets[1].filter_expr: position"));
    wh_strlcpy(bad->url, "http://h/b", sizeof(bad->url));
    bad->paused = 1;
    assert_int_equal(wh_state_validate_write(next, cur, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenants[0].targets[1].filter_expr: position"));
    bad->paused = 0;
    /* a new bad filter on another target, or on a new one */
    wh_strlcpy(next->tenants[0].targets[0].dl.filter_expr,
               "op ==", sizeof(next->tenants[0].targets[0].dl.filter_expr));
    assert_int_equal(wh_state_validate_write(next, cur, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenants[0].targets[0].filter_expr: "));
    next->tenants[0].targets[0].dl.filter_expr[0] = '\0';
    wh_state_target *nt = wh_state_target_add(t);
    assert_non_null(nt);
    wh_strlcpy(nt->name, "bad", sizeof(nt->name)); /* named as the legacy one, another tenant */
    wh_strlcpy(nt->url, "http://h/b", sizeof(nt->url));
    wh_strlcpy(nt->dl.filter_expr, "after.amount => 5", sizeof(nt->dl.filter_expr));
    assert_int_equal(wh_state_validate_write(next, cur, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenants[1].targets[0].filter_expr: position"));
    nt->dl.filter_expr[0] = '\0';
    /* mended: a good filter passes, and is then checked as any other */
    wh_strlcpy(bad->dl.filter_expr, "after.amount >= 5", sizeof(bad->dl.filter_expr));
    if (wh_state_validate_write(next, cur, err, sizeof(err)) != WH_OK)
        fail_msg("the mended target: %s", err);
    if (wh_state_validate(next, err, sizeof(err)) != WH_OK)
        fail_msg("the mended document: %s", err);
    wh_state_unref(next);
    wh_state_unref(cur);
}

/* wh_dsn_same_server: a slot is per server, so the host and port count,
 * not the database; this machine written any way is one server */
static void test_dsn_same_server(void **state)
{
    (void)state;
    assert_true(
        wh_dsn_same_server("postgresql://u@127.0.0.1:5433/a", "postgresql://v@127.0.0.1:5433/b"));
    assert_true(
        wh_dsn_same_server("postgresql://u@localhost:5433/a", "host=127.0.0.1 port=5433 dbname=b"));
    assert_true(wh_dsn_same_server("dbname=a", "postgresql:///b"));
    assert_true(wh_dsn_same_server("", "host=/var/run/postgresql dbname=x"));
    assert_true(wh_dsn_same_server("host=DB.example dbname=a", "postgresql://db.example:5432/b"));
    assert_true(wh_dsn_same_server("postgresql://h1:5432,h2:6000/a", "host=h2 port=6000"));
    assert_true(wh_dsn_same_server("postgresql://[::1]:7000/a", "host=localhost port=7000"));
    assert_true(wh_dsn_same_server("host=h hostaddr=10.0.0.1", "host=10.0.0.1"));
    assert_true(wh_dsn_same_server("postgresql:///a?host=db.example&port=6432",
                                   "host=db.example port=6432"));
    assert_false(
        wh_dsn_same_server("postgresql://u@127.0.0.1:5433/a", "postgresql://u@127.0.0.1:5434/a"));
    assert_false(wh_dsn_same_server("host=db1.example", "host=db2.example"));
    assert_false(wh_dsn_same_server("postgresql://h1:5432,h2:6000/a", "host=h2 port=5432"));
    assert_false(wh_dsn_same_server("service=a", "service=b"));
    char srv[64];
    wh_dsn_server("postgresql://u:secret@DB.example:6432/x", srv, sizeof(srv));
    assert_string_equal(srv, "db.example:6432");
    wh_dsn_server("dbname=x", srv, sizeof(srv));
    assert_string_equal(srv, "local:5432");
}

static wh_state_tenant *add_tenant(wh_state *s, const char *name, const char *dsn, const char *slot)
{
    wh_state_tenant *t = wh_state_tenant_add(s);
    assert_non_null(t);
    wh_strlcpy(t->name, name, sizeof(t->name));
    wh_strlcpy(t->dsn, dsn, sizeof(t->dsn));
    wh_strlcpy(t->slot, slot, sizeof(t->slot));
    wh_strlcpy(t->publication, "walhook", sizeof(t->publication));
    return t;
}

/* Two tenants on one slot of one server are refused, naming both and the
 * slot (whatever their databases); a pair the current document already has
 * does not block other writes, and a new pair is refused. */
static void test_shared_slot_refused(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    const char *doc = "{\"tenants\":[{\"name\":\"a\",\"source\":{\"dsn\":"
                      "\"postgresql://u@127.0.0.1:5433/shop\",\"slot\":\"wh_a\"}},"
                      "{\"name\":\"b\",\"source\":{\"dsn\":\"postgresql://u@127.0.0.1:5433/"
                      "other\",\"slot\":\"wh_a\"}}]}";
    wh_state *cur = parse_ok(doc); /* stored by an older walhook: read as it is */
    assert_int_equal(wh_state_validate(cur, err, sizeof(err)), WH_ERR);
    if (strstr(err, "tenants[1].source.slot: tenants 'a' and 'b' would share replication slot "
                    "'wh_a' on server local:5433") == NULL)
        fail_msg("error: %s", err);
    assert_int_equal(wh_state_validate_write(cur, NULL, err, sizeof(err)), WH_ERR);
    assert_int_equal(wh_state_check_slots(cur, NULL, err, sizeof(err)), WH_ERR);
    /* a write that leaves the pair be passes (another tenant added, a's
     * database changed) */
    assert_int_equal(wh_state_validate_write(cur, cur, err, sizeof(err)), WH_OK);
    wh_state *next = NULL;
    assert_int_equal(wh_state_clone(&next, cur), WH_OK);
    add_tenant(next, "c", "postgresql://u@127.0.0.1:5433/shop", "wh_c");
    wh_strlcpy(next->tenants[0].dsn, "postgresql://u@localhost:5433/x",
               sizeof(next->tenants[0].dsn));
    if (wh_state_validate_write(next, cur, err, sizeof(err)) != WH_OK)
        fail_msg("a write that leaves the stored pair be: %s", err);
    /* a new pair: c takes a's slot (the same server written another way) */
    wh_strlcpy(next->tenants[2].slot, "wh_a", sizeof(next->tenants[2].slot));
    wh_strlcpy(next->tenants[2].dsn, "host=127.0.0.1 port=5433 dbname=z",
               sizeof(next->tenants[2].dsn));
    assert_int_equal(wh_state_validate_write(next, cur, err, sizeof(err)), WH_ERR);
    if (strstr(err, "tenants[2].source.slot: tenants 'a' and 'c' would share replication slot "
                    "'wh_a'") == NULL)
        fail_msg("error: %s", err);
    assert_int_equal(wh_state_check_slots(next, cur, err, sizeof(err)), WH_ERR);
    /* another server (port) for c: its own slot there */
    wh_strlcpy(next->tenants[2].dsn, "host=127.0.0.1 port=5434 dbname=z",
               sizeof(next->tenants[2].dsn));
    if (wh_state_validate_write(next, cur, err, sizeof(err)) != WH_OK)
        fail_msg("the same slot name on another server: %s", err);
    wh_state_unref(next);
    wh_state_unref(cur);

    /* a document without the pair: a write (a PATCH of b) that makes it is refused */
    wh_state *ok = parse_ok("{\"tenants\":[{\"name\":\"a\",\"source\":{\"dsn\":\"dbname=a\","
                            "\"slot\":\"wh_a\"}},{\"name\":\"b\",\"source\":{\"dsn\":"
                            "\"dbname=b\",\"slot\":\"wh_b\"}}]}");
    assert_int_equal(wh_state_validate(ok, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_state_clone(&next, ok), WH_OK);
    wh_strlcpy(next->tenants[1].slot, "wh_a", sizeof(next->tenants[1].slot));
    assert_int_equal(wh_state_validate_write(next, ok, err, sizeof(err)), WH_ERR);
    if (strstr(err, "tenants[1].source.slot: tenants 'a' and 'b'") == NULL)
        fail_msg("error: %s", err);
    wh_state_unref(next);
    wh_state_unref(ok);
}

/* A new tenant's name may not start with '.' or '-' ("." and ".." are
 * path segments, "-x" an option); a stored one still works. */
static void test_new_tenant_names(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    const char *bad[] = {".", "..", "...", ".hidden", "-x", "--tenant"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wh_state *cur = parse_ok("{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\"}}]}");
        wh_state *next = NULL;
        assert_int_equal(wh_state_clone(&next, cur), WH_OK);
        add_tenant(next, bad[i], "dbname=x", "s2");
        if (wh_state_validate_write(next, cur, err, sizeof(err)) != WH_ERR)
            fail_msg("name '%s' accepted", bad[i]);
        if (strncmp(err, "tenants[1].name: ", 17) != 0)
            fail_msg("name '%s': %s", bad[i], err);
        assert_int_equal(wh_state_validate(next, err, sizeof(err)), WH_ERR);
        /* already stored: read, and other writes pass */
        assert_int_equal(wh_state_validate_write(next, next, err, sizeof(err)), WH_OK);
        wh_state_unref(next);
        wh_state_unref(cur);
    }
    const char *good[] = {"a.b", "a-", "x.", "_x", "0-1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        wh_state *next = parse_ok("{\"tenants\":[]}");
        add_tenant(next, good[i], "dbname=x", "s");
        if (wh_state_validate_write(next, NULL, err, sizeof(err)) != WH_OK)
            fail_msg("name '%s': %s", good[i], err);
        wh_state_unref(next);
    }
    wh_state *s = parse_ok("{\"tenants\":[{\"name\":\"..\",\"source\":{\"slot\":\"s\"}}]}");
    assert_string_equal(s->tenants[0].name, "..");
    wh_state_unref(s);
}

/* The same rule for a target new to its tenant: a target ".." would be
 * the tenant's own path (/v1/tenants/T/targets/..); a stored one still
 * loads and does not block other writes. */
static void test_new_target_names(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    const char *bad[] = {".", "..", "...", ".hidden", "-x", "--url"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wh_state *cur = parse_ok("{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\"},"
                                 "\"targets\":[{\"name\":\"t\",\"url\":\"http://h.example/\"}]}]}");
        wh_state *next = NULL;
        assert_int_equal(wh_state_clone(&next, cur), WH_OK);
        wh_state_target *g = wh_state_target_add(&next->tenants[0]);
        assert_non_null(g);
        wh_strlcpy(g->name, bad[i], sizeof(g->name));
        wh_strlcpy(g->url, "http://h.example/x", sizeof(g->url));
        if (wh_state_validate_write(next, cur, err, sizeof(err)) != WH_ERR)
            fail_msg("target name '%s' accepted", bad[i]);
        if (strncmp(err, "tenants[0].targets[1].name: ", 28) != 0 ||
            strstr(err, "must not start with '.' or '-'") == NULL)
            fail_msg("target name '%s': %s", bad[i], err);
        assert_int_equal(wh_state_validate(next, err, sizeof(err)), WH_ERR);
        /* already stored: read, and other writes pass */
        assert_int_equal(wh_state_validate_write(next, next, err, sizeof(err)), WH_OK);
        wh_state *again = NULL;
        assert_int_equal(wh_state_clone(&again, next), WH_OK);
        again->tenants[0].targets[0].paused = 1;
        assert_int_equal(wh_state_validate_write(again, next, err, sizeof(err)), WH_OK);
        /* the same name in another tenant is new there */
        wh_state_tenant *b = add_tenant(again, "b", "dbname=x", "s2");
        g = wh_state_target_add(b);
        wh_strlcpy(g->name, bad[i], sizeof(g->name));
        wh_strlcpy(g->url, "http://h.example/y", sizeof(g->url));
        assert_int_equal(wh_state_validate_write(again, next, err, sizeof(err)), WH_ERR);
        if (strncmp(err, "tenants[1].targets[0].name: ", 28) != 0)
            fail_msg("target name '%s' in a new tenant: %s", bad[i], err);
        wh_state_unref(again);
        wh_state_unref(next);
        wh_state_unref(cur);
    }
    const char *good[] = {"a.b", "a-", "x.", "_x", "0-1", "x..y"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        wh_state *next = parse_ok("{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\"}}]}");
        wh_state_target *g = wh_state_target_add(&next->tenants[0]);
        wh_strlcpy(g->name, good[i], sizeof(g->name));
        wh_strlcpy(g->url, "http://h.example/x", sizeof(g->url));
        if (wh_state_validate_write(next, NULL, err, sizeof(err)) != WH_OK)
            fail_msg("target name '%s': %s", good[i], err);
        wh_state_unref(next);
    }
    wh_state *s = parse_ok("{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\"},"
                           "\"targets\":[{\"name\":\"..\",\"url\":\"http://h.example/\"}]}]}");
    assert_string_equal(s->tenants[0].targets[0].name, "..");
    wh_state_unref(s);
}

static void test_render_canonical_and_redacted(void **state)
{
    wh_state *s = parse_ok(GOOD);
    char *a = render(s, 0);
    /* the rendering parses back to the same rendering */
    wh_state *s2 = parse_ok(a);
    char *b = render(s2, 0);
    assert_string_equal(a, b);
    /* key order and whitespace of the input do not matter */
    wh_state *s3 = parse_ok(
        "{ \"tenants\":[{\"targets\":[{\"secrets\":[\"" SECRET1 "\",\"" SECRET2 "\"],"
        "\"retry_max_ms\":5000,\"url\":\"https://h.example/o?token=abc\",\"name\":\"orders\"},"
        "{\"paused\":true,\"url\":\"http://127.0.0.1:9/a\",\"name\":\"audit\"}],"
        "\"source\":{\"slot\":\"s1\",\"dsn\":\"postgresql://u:hunter2@127.0.0.1/shop\"},"
        "\"name\":\"shop\"},{\"source\":{\"create_slot\":false,\"slot\":\"s2\","
        "\"dsn\":\"dbname=crm\"},\"name\":\"crm\"}],"
        "\"settings\":{\"ingestor.flush_bytes\":65536,\"log_level\":\"debug\"},\"version\":3}");
    char *c = render(s3, 0);
    assert_string_equal(a, c);
    assert_non_null(strstr(a, "\"version\":3,\"settings\":{\"log_level\":\"debug\""));
    assert_non_null(strstr(a, "hunter2"));
    assert_non_null(strstr(a, SECRET1));
    /* redacted: no password, no secret, no query string */
    char *r = render(s, WH_STATE_REDACT);
    assert_null(strstr(r, "hunter2"));
    assert_null(strstr(r, "whsec_"));
    assert_null(strstr(r, "token=abc"));
    assert_non_null(strstr(r, "\"secrets\":[\"***\",\"***\"]"));
    assert_non_null(strstr(r, "\"name\":\"orders\""));
    /* inherited delivery settings are not rendered */
    assert_null(strstr(a, "batch_max_events\":0"));
    free(a);
    free(b);
    free(c);
    free(r);
    wh_state_unref(s);
    wh_state_unref(s2);
    wh_state_unref(s3);
}

/* The file `text` is refused by wh_config_load or wh_state_from_config
 * with an error containing `want`. */
static void expect_refused(size_t i, const char *text, const char *want)
{
    const char *p = write_conf(text);
    wh_config cfg;
    wh_state *s = NULL;
    char err[WH_ERRLEN] = "";
    int rc = wh_config_load(&cfg, p, err, sizeof(err));
    if (rc == WH_OK)
        rc = wh_state_from_config(&s, &cfg, p, err, sizeof(err));
    if (rc != WH_ERR || strstr(err, want) == NULL)
        fail_msg("bad %zu: rc %d err '%s' want '%s'", i, rc, err, want);
}

static void test_from_config_with_tenants(void **state)
{
    const char *p = write_conf(
        "tenant = \"main\";\n"
        "log_level = \"warn\";\n"
        "source = { dsn = \"postgresql://u:pw@127.0.0.1/main\"; slot = \"main_slot\"; };\n"
        "targets = ( { name = \"a\"; url = \"http://127.0.0.1:9/a\"; secret = \"" SECRET1
        "\"; } );\n"
        "tenants = (\n"
        "  { name = \"b\"; source = { dsn = \"dbname=b\"; slot = \"b_slot\"; publication = "
        "\"pb\"; create_slot = false; tables = \"public.x\"; };\n"
        "    targets = ( { name = \"t1\"; url = \"https://h/1\"; secrets = [ \"" SECRET2
        "\", \"" SECRET1 "\" ]; paused = true; batch_max_events = 10; } ); },\n"
        "  { name = \"c\"; source = { dsn = \"dbname=c\"; slot = \"c_slot\"; }; }\n"
        ");\n");
    wh_config cfg;
    char err[WH_ERRLEN];
    if (wh_config_load(&cfg, p, err, sizeof(err)) != WH_OK)
        fail_msg("load: %s", err);
    wh_state *s = NULL;
    if (wh_state_from_config(&s, &cfg, p, err, sizeof(err)) != WH_OK)
        fail_msg("from_config: %s", err);
    assert_int_equal(s->version, 0);
    assert_string_equal(s->settings.log_level, "warn");
    assert_int_equal(s->ntenants, 3);
    assert_string_equal(s->tenants[0].name, "main");
    assert_string_equal(s->tenants[0].slot, "main_slot");
    assert_int_equal(s->tenants[0].ntargets, 1);
    assert_int_equal(s->tenants[0].targets[0].nsecrets, 1);
    assert_string_equal(s->tenants[0].targets[0].secrets[0], SECRET1);
    const wh_state_tenant *b = wh_state_tenant_find(s, "b");
    assert_non_null(b);
    assert_string_equal(b->publication, "pb");
    assert_string_equal(b->tables, "public.x");
    assert_int_equal(b->create_slot, 0);
    assert_int_equal(b->targets[0].nsecrets, 2);
    assert_int_equal(b->targets[0].paused, 1);
    assert_int_equal(b->targets[0].batch_max_events, 10);
    assert_int_equal(wh_state_tenant_find(s, "c")->ntargets, 0);
    wh_state_unref(s);

    /* a list only (no top-level source or targets): the list's tenants only */
    p = write_conf("tenants = ( { name = \"x\"; source = { dsn = \"dbname=x\"; }; } );\n");
    assert_int_equal(wh_config_load(&cfg, p, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_state_from_config(&s, &cfg, p, err, sizeof(err)), WH_OK);
    assert_int_equal(s->ntenants, 1);
    assert_string_equal(s->tenants[0].name, "x");
    wh_state_unref(s);

    /* errors name the file and the field */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"tenants = 3;\n", "setting 'tenants'"},
        {"tenants = ( { source = { dsn = \"dbname=x\"; }; } );\n", "tenants[0].name: missing"},
        {"tenants = ( { name = \"x\"; colour = 1; } );\n", "unknown setting 'tenants[0].colour'"},
        {"tenants = ( { name = \"x\"; source = { dsn = 5; }; } );\n",
         "tenants[0].source.dsn (line 1): expected a string"},
        {"tenants = ( { name = \"x\"; targets = ( { name = \"t\"; url = \"ftp://h\"; } ); } );\n",
         "tenants[0].targets[0].url: must start with http"},
        {"source = { dsn = \"dbname=d\"; };\ntenants = ( { name = \"default\"; } );\n",
         "tenants[1].name: duplicate tenant name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(i, bad[i].text, bad[i].want);
    unlink(path);
}

/* The top-level targets take every target setting, as a tenant's do. */
static void test_from_config_top_targets(void **state)
{
    const char *p = write_conf(
        "source = { dsn = \"dbname=d\"; };\n"
        "targets = ( { name = \"a\"; url = \"http://127.0.0.1:9/a\"; envelope = \"debezium\";\n"
        "  filter_expr = \"op == \\\"insert\\\"\"; max_attempts = 3; paused = true;\n"
        "  secrets = [ \"" SECRET2 "\", \"" SECRET1 "\" ]; batch_max_events = 7; },\n"
        "  { url = \"http://127.0.0.1:9/b\"; http_version = \"1.1\"; on_needs_snapshot = "
        "\"resync\"; } );\n");
    wh_config cfg;
    char err[WH_ERRLEN];
    if (wh_config_load(&cfg, p, err, sizeof(err)) != WH_OK)
        fail_msg("load: %s", err);
    wh_state *s = NULL;
    if (wh_state_from_config(&s, &cfg, p, err, sizeof(err)) != WH_OK)
        fail_msg("from_config: %s", err);
    assert_int_equal(s->ntenants, 1);
    assert_int_equal(s->tenants[0].ntargets, 2);
    const wh_state_target *a = &s->tenants[0].targets[0];
    assert_string_equal(a->name, "a");
    assert_string_equal(a->dl.envelope, "debezium");
    assert_string_equal(a->dl.filter_expr, "op == \"insert\"");
    assert_int_equal(a->dl.max_attempts, 3);
    assert_int_equal(a->paused, 1);
    assert_int_equal(a->nsecrets, 2);
    assert_string_equal(a->secrets[1], SECRET1);
    assert_int_equal(a->batch_max_events, 7);
    const wh_state_target *b = &s->tenants[0].targets[1];
    assert_string_equal(b->name, "t1");
    assert_string_equal(b->dl.http_version, "1.1");
    assert_string_equal(b->dl.on_needs_snapshot, "resync");
    assert_string_equal(a->dl.on_needs_snapshot, "");
    wh_state_unref(s);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"targets = ( { name = \"a\"; url = \"http://h/\"; colour = 1; } );\n",
         "unknown setting 'targets[0].colour'"},
        {"targets = ( { name = \"a\"; url = \"http://h/\"; envelope = \"xml\"; } );\n", "envelope"},
        {"targets = ( { name = \"a\"; url = \"http://h/\"; on_needs_snapshot = \"now\"; } );\n",
         "on_needs_snapshot: 'now' is not one of wait|resync"},
        {"targets = ( { name = \"a\"; url = \"http://h/\"; max_attempts = \"x\"; } );\n",
         "targets[0] (line 1): max_attempts: expected an integer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(i, bad[i].text, bad[i].want);
    unlink(path);
}

static void test_from_config_env_targets(void **state)
{
    wh_config cfg;
    char err[WH_ERRLEN];
    setenv("WALHOOK_TARGETS", "x=http://127.0.0.1:1/x,http://127.0.0.1:1/y", 1);
    int rc = wh_config_load(&cfg, NULL, err, sizeof(err));
    unsetenv("WALHOOK_TARGETS");
    assert_int_equal(rc, WH_OK);
    wh_state *s = NULL;
    assert_int_equal(wh_state_from_config(&s, &cfg, NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(s->ntenants, 1);
    assert_string_equal(s->tenants[0].name, "default");
    assert_int_equal(s->tenants[0].ntargets, 2);
    assert_string_equal(s->tenants[0].targets[1].name, "t1");
    wh_state_unref(s);
}

static void test_clone_ref(void **state)
{
    wh_state *s = parse_ok(GOOD);
    wh_state *c = NULL;
    assert_int_equal(wh_state_clone(&c, s), WH_OK);
    assert_int_equal(c->refs, 1);
    char *a = render(s, 0), *b = render(c, 0);
    assert_string_equal(a, b);
    /* deep: changing the clone leaves the original alone */
    wh_strlcpy(c->tenants[0].targets[0].url, "http://changed/", WH_URL_MAX);
    wh_state_unref(s); /* the clone must not depend on s */
    wh_state_ref(c);
    assert_int_equal(c->refs, 2);
    wh_state_unref(c);
    char *d = render(c, 0);
    assert_non_null(strstr(d, "http://changed/"));
    assert_null(strstr(a, "http://changed/"));
    wh_state_unref(c);
    wh_state_unref(NULL);
    free(a);
    free(b);
    free(d);
}

/* Editing a clone: add and remove tenants and targets by name; the order of
 * the others is kept, a missing name is WH_ERR, a new tenant has the
 * default slot and publication. */
/* wh_state_backfill_add: ids one more than the last listed; the oldest
 * requests go when the list is full. */
static void test_backfill_add(void **state)
{
    (void)state;
    wh_state_tenant t;
    memset(&t, 0, sizeof(t));
    unsigned long id = 0;
    wh_state_backfill_add(&t, "public.a", 0, &id);
    assert_int_equal(id, 1);
    assert_string_equal(t.backfills, "1:public.a");
    wh_state_backfill_add(&t, "*", 0, &id);
    assert_int_equal(id, 2);
    assert_string_equal(t.backfills, "1:public.a;2:*");
    wh_strlcpy(t.backfills, "7:x;3:y", sizeof(t.backfills));
    wh_state_backfill_add(&t, "z", 5, &id);
    assert_int_equal(id, 8);
    assert_string_equal(t.backfills, "7:x;3:y;8:z");
    /* the floor wins over the list (emptied by a reload: no id comes back) */
    t.backfills[0] = '\0';
    wh_state_backfill_add(&t, "z", 12, &id);
    assert_int_equal(id, 12);
    assert_string_equal(t.backfills, "12:z");
    wh_state_backfill_add(&t, "z", 3, &id);
    assert_int_equal(id, 13);
    char table[WH_BACKFILL_TABLE_MAX];
    memset(table, 'q', sizeof(table) - 1);
    table[sizeof(table) - 1] = '\0';
    for (int i = 0; i < 40; i++)
        wh_state_backfill_add(&t, table, 0, &id);
    assert_int_equal(id, 53);
    assert_true(strlen(t.backfills) < sizeof(t.backfills));
    assert_null(strstr(t.backfills, "12:z")); /* the oldest went */
    const char *last = strrchr(t.backfills, ';');
    assert_non_null(last);
    assert_int_equal(strncmp(last + 1, "53:qq", 5), 0);
}

static void test_edit(void **state)
{
    wh_state *s = parse_ok(GOOD);
    int n0 = s->ntenants;
    wh_state_tenant *t = wh_state_tenant_add(s);
    assert_non_null(t);
    wh_strlcpy(t->name, "added", sizeof(t->name));
    assert_string_equal(t->slot, "walhook");
    assert_string_equal(t->publication, "walhook");
    assert_int_equal(t->create_slot, 1);
    assert_int_equal(t->ntargets, 0);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        wh_state_target *g = wh_state_target_add(t);
        assert_non_null(g);
        assert_string_equal(g->url, "");
        wh_strlcpy(g->name, names[i], sizeof(g->name));
    }
    assert_int_equal(t->ntargets, 3);
    assert_int_equal(wh_state_target_remove(t, "b"), WH_OK);
    assert_int_equal(t->ntargets, 2);
    assert_string_equal(t->targets[0].name, "a");
    assert_string_equal(t->targets[1].name, "c");
    assert_int_equal(wh_state_target_remove(t, "b"), WH_ERR);
    assert_int_equal(wh_state_target_remove(t, "c"), WH_OK);
    assert_int_equal(wh_state_target_remove(t, "a"), WH_OK);
    assert_int_equal(t->ntargets, 0);
    assert_non_null(wh_state_target_add(t)); /* the tenant keeps its array: freed below */
    assert_int_equal(s->ntenants, n0 + 1);
    char first[WH_NAME_MAX];
    wh_strlcpy(first, s->tenants[0].name, sizeof(first));
    assert_int_equal(wh_state_tenant_remove(s, "nope"), WH_ERR);
    assert_int_equal(wh_state_tenant_remove(s, first), WH_OK);
    assert_int_equal(s->ntenants, n0);
    assert_null(wh_state_tenant_find(s, first));
    assert_string_equal(s->tenants[s->ntenants - 1].name, "added");
    assert_int_equal(wh_state_tenant_remove(s, "added"), WH_OK);
    assert_int_equal(s->ntenants, n0 - 1);
    wh_state_unref(s);
}

static void test_effective(void **state)
{
    wh_config base;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&base, NULL, err, sizeof(err)), WH_OK);
    wh_state *s = parse_ok(GOOD);
    wh_config eff;
    wh_state_effective(&eff, &base, s, "shop");
    assert_string_equal(eff.log_level, "debug");
    assert_true(eff.flush_bytes == 65536);
    assert_string_equal(eff.tenant, "shop");
    assert_string_equal(eff.slot, "s1");
    assert_string_equal(eff.source_dsn, "postgresql://u:hunter2@127.0.0.1/shop");
    assert_int_equal(eff.ntargets, 2);
    assert_string_equal(eff.targets[0].secret, SECRET1);
    assert_string_equal(eff.ingestor_control, "ipc://./var/ingestor-shop.sock");
    assert_string_equal(eff.store_endpoint, base.store_endpoint);
    /* no tenant: settings only */
    wh_state_effective(&eff, &base, s, NULL);
    assert_string_equal(eff.tenant, "default");
    assert_string_equal(eff.log_level, "debug");
    assert_string_equal(eff.ingestor_control, "ipc://./var/ingestor.sock");
    /* unknown tenant: settings only */
    wh_state_effective(&eff, &base, s, "nope");
    assert_string_equal(eff.slot, "walhook");
    char ctl[256];
    wh_state_ingestor_control(ctl, sizeof(ctl), &base, "default");
    assert_string_equal(ctl, "ipc://./var/ingestor.sock");
    wh_state_ingestor_control(ctl, sizeof(ctl), &base, "b");
    assert_string_equal(ctl, "ipc://./var/ingestor-b.sock");
    wh_state_unref(s);
}

/* ---- hooks ---- */

typedef struct hook_rec {
    int calls;
    int64_t last;
} hook_rec;

static void flush_hook(void *arg, const wh_config *c)
{
    hook_rec *r = arg;
    r->calls++;
    r->last = c->flush_bytes;
}

static hook_rec rec_flush, rec_retry;

static void retry_hook(void *arg, const wh_config *c)
{
    hook_rec *r = arg;
    r->calls++;
    r->last = c->retry_max_ms;
}

static void test_hooks(void **state)
{
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_hook("store.workers", flush_hook, NULL, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "store.workers"));
    assert_int_equal(wh_config_hook("nope", flush_hook, NULL, err, sizeof(err)), WH_ERR);
    assert_int_equal(
        wh_config_hook("ingestor.flush_bytes", flush_hook, &rec_flush, err, sizeof(err)), WH_OK);
    assert_int_equal(
        wh_config_hook("dispatcher.retry_max_ms", retry_hook, &rec_retry, err, sizeof(err)), WH_OK);
    wh_config a, b;
    wh_config_defaults(&a);
    b = a;
    wh_config_apply_hooks(&a, &b);
    assert_int_equal(rec_flush.calls, 0);
    assert_int_equal(rec_retry.calls, 0);
    b.flush_bytes = 8192;
    b.store_workers = 9; /* not runtime: no hook */
    wh_config_apply_hooks(&a, &b);
    assert_int_equal(rec_flush.calls, 1);
    assert_true(rec_flush.last == 8192);
    assert_int_equal(rec_retry.calls, 0);
    a = b;
    b.retry_max_ms = 777;
    wh_config_apply_hooks(&a, &b);
    assert_int_equal(rec_flush.calls, 1);
    assert_int_equal(rec_retry.calls, 1);
    assert_true(rec_retry.last == 777);
    /* the built-in log_level hook */
    a = b;
    wh_strlcpy(b.log_level, "error", sizeof(b.log_level));
    wh_config_apply_hooks(&a, &b);
    wh_strlcpy(a.log_level, "info", sizeof(a.log_level));
    wh_config_apply_hooks(&b, &a);
}

/* ---- watcher against a real NNG server ---- */

typedef struct fake_store {
    pthread_mutex_t mu;
    uint64_t version;
    char doc[8192];
    int gets, puts;
    char last_origin[16];
    char *put_doc;
} fake_store;

static void fake_handler(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    fake_store *f = arg;
    Walhook__StateReply *sr = calloc(1, sizeof(*sr));
    walhook__state_reply__init(sr);
    *cookie = sr;
    pthread_mutex_lock(&f->mu);
    if (req->body_case == WALHOOK__REQUEST__BODY_GET_STATE) {
        f->gets++;
        sr->version = f->version;
        if (req->get_state->known_version != f->version) {
            sr->doc.data = (uint8_t *)strdup(f->doc);
            sr->doc.len = strlen(f->doc);
        }
        rep->body_case = WALHOOK__REPLY__BODY_STATE;
        rep->state = sr;
    } else if (req->body_case == WALHOOK__REQUEST__BODY_PUT_STATE) {
        f->puts++;
        const Walhook__PutState *p = req->put_state;
        wh_strlcpy(f->last_origin, p->origin, sizeof(f->last_origin));
        if (p->expected_version != 0 && p->expected_version != f->version) {
            wh_reply_error(rep, 412, "version conflict: current is %llu",
                           (unsigned long long)f->version);
        } else {
            free(f->put_doc);
            f->put_doc = strndup((const char *)p->doc.data, p->doc.len);
            sr->version = f->version; /* the test publishes it itself */
            rep->body_case = WALHOOK__REPLY__BODY_STATE;
            rep->state = sr;
        }
    } else {
        wh_reply_error(rep, 400, "unexpected");
    }
    pthread_mutex_unlock(&f->mu);
}

static void fake_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    Walhook__StateReply *sr = cookie;
    if (sr) {
        free(sr->doc.data);
        free(sr);
    }
}

typedef struct applied {
    pthread_mutex_t mu;
    int calls;
    uint64_t version;
    char log_level[16];
    int64_t flush_bytes;
    char tenant[64];
} applied;

static void on_apply(void *arg, wh_state *s, const wh_config *eff)
{
    applied *a = arg;
    pthread_mutex_lock(&a->mu);
    a->calls++;
    a->version = s->version;
    wh_strlcpy(a->log_level, eff->log_level, sizeof(a->log_level));
    a->flush_bytes = eff->flush_bytes;
    wh_strlcpy(a->tenant, eff->tenant, sizeof(a->tenant));
    pthread_mutex_unlock(&a->mu);
}

static void publish(fake_store *f, uint64_t version, const char *doc)
{
    pthread_mutex_lock(&f->mu);
    f->version = version;
    wh_strlcpy(f->doc, doc, sizeof(f->doc));
    pthread_mutex_unlock(&f->mu);
}

static void test_watcher(void **state)
{
    char dir[] = "/tmp/wh_state_watch.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char url[128], err[WH_ERRLEN];
    snprintf(url, sizeof(url), "ipc://%s/store.sock", dir);
    fake_store f;
    memset(&f, 0, sizeof(f));
    pthread_mutex_init(&f.mu, NULL);
    publish(&f, 1,
            "{\"settings\":{\"log_level\":\"info\"},\"tenants\":[{\"name\":\"shop\","
            "\"source\":{\"slot\":\"s1\"}}]}");
    wh_server *srv = NULL;
    assert_int_equal(
        wh_server_start(&srv, url, 2, 1 << 20, fake_handler, fake_done, &f, err, sizeof(err)),
        WH_OK);
    wh_config base;
    assert_int_equal(wh_config_load(&base, NULL, err, sizeof(err)), WH_OK);
    wh_strlcpy(base.store_endpoint, url, sizeof(base.store_endpoint));
    applied a;
    memset(&a, 0, sizeof(a));
    pthread_mutex_init(&a.mu, NULL);
    rec_flush.calls = 0;

    wh_state_watch *w = NULL;
    if (wh_state_watch_start(&w, &base, "shop", 50, 5000, on_apply, &a, err, sizeof(err)) != WH_OK)
        fail_msg("watch: %s", err);
    /* apply ran once before start returned */
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.version, 1);
    assert_string_equal(a.tenant, "shop");
    wh_state *cur = wh_state_watch_current(w);
    assert_int_equal(cur->version, 1);
    wh_state_unref(cur);

    /* a new version is picked up by polling; the flush hook runs */
    publish(&f, 2,
            "{\"settings\":{\"log_level\":\"info\",\"ingestor.flush_bytes\":65536},"
            "\"tenants\":[{\"name\":\"shop\",\"source\":{\"slot\":\"s1\"}}]}");
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&a.mu);
        int done = a.version == 2;
        pthread_mutex_unlock(&a.mu);
        if (done)
            break;
        wh_sleep_ms(20);
    }
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.version, 2);
    assert_int_equal(a.calls, 2);
    assert_true(a.flush_bytes == 65536);
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(rec_flush.calls, 1);
    assert_true(rec_flush.last == 65536);
    /* polling with an unchanged version applies nothing */
    wh_sleep_ms(200);
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.calls, 2);
    pthread_mutex_unlock(&a.mu);
    /* a bad document at the store keeps the running version */
    publish(&f, 3, "{\"settings\":{\"nope\":1}}");
    wh_sleep_ms(300);
    cur = wh_state_watch_current(w);
    assert_int_equal(cur->version, 2);
    wh_state_unref(cur);

    /* reload_file: a bad file is refused by name, a good one is stored as origin "file" */
    const char *p = write_conf("tenants = ( { name = \"x\"; colour = 1; } );\n");
    assert_int_equal(wh_state_watch_reload_file(w, p, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "colour"));
    assert_int_equal(f.puts, 0);
    p = write_conf("tenant = \"shop\";\nsource = { dsn = \"dbname=shop\"; slot = \"s9\"; };\n");
    if (wh_state_watch_reload_file(w, p, err, sizeof(err)) != WH_OK)
        fail_msg("reload: %s", err);
    unlink(path);
    pthread_mutex_lock(&f.mu);
    assert_int_equal(f.puts, 1);
    assert_string_equal(f.last_origin, "file");
    assert_non_null(strstr(f.put_doc, "\"slot\":\"s9\""));
    pthread_mutex_unlock(&f.mu);

    /* stop is prompt even with a long interval */
    uint64_t t0 = wh_now_ms();
    wh_state_watch_stop(w);
    assert_true(wh_now_ms() - t0 < 3000);
    wh_server_stop(srv);
    free(f.put_doc);

    /* no store: start fails after wait_ms, naming the endpoint */
    snprintf(base.store_endpoint, sizeof(base.store_endpoint), "ipc://%s/none.sock", dir);
    assert_int_equal(wh_state_watch_start(&w, &base, NULL, 50, 300, on_apply, &a, err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "none.sock"));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "%s/store.sock", dir);
    unlink(cmd);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_resumes),
        cmocka_unit_test(test_created_version),
        cmocka_unit_test(test_filter_settings_checked),
        cmocka_unit_test(test_validate_write_keeps_legacy_filter),
        cmocka_unit_test(test_dsn_same_server),
        cmocka_unit_test(test_shared_slot_refused),
        cmocka_unit_test(test_new_tenant_names),
        cmocka_unit_test(test_new_target_names),
        cmocka_unit_test(test_render_canonical_and_redacted),
        cmocka_unit_test(test_from_config_with_tenants),
        cmocka_unit_test(test_from_config_top_targets),
        cmocka_unit_test(test_from_config_env_targets),
        cmocka_unit_test(test_clone_ref),
        cmocka_unit_test(test_backfill_add),
        cmocka_unit_test(test_edit),
        cmocka_unit_test(test_effective),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_watcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
