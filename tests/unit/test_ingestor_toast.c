/* Unchanged TOAST values: the cache (ing_toast) alone, and the envelope
 * (ing_event) filling an update's unchanged column from the cache or from a
 * REPLICA IDENTITY FULL old row, else listing it under "unchanged". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_event.h"
#include "../../services/ingestor/ing_toast.h"
#include "wh_util.h"

static ing_attr g_atts[3] = {{.flags = ING_ATTR_IDENT, .name = "id", .type_oid = 23, .typmod = -1},
                             {.flags = 0, .name = "doc", .type_oid = 25, .typmod = -1},
                             {.flags = 0, .name = "n", .type_oid = 23, .typmod = -1}};
static ing_relation g_rel = {
    .oid = 7, .nspname = "s", .relname = "t", .replident = 'd', .natts = 3, .atts = g_atts};

static char *big(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_cache_basics(void **state)
{
    (void)state;
    ing_toast *c;
    ing_toast_stats st;
    memset(&st, 0, sizeof(st));
    char err[WH_ERRLEN];
    assert_int_equal(ing_toast_new(&c, 1 << 20, &st, err, sizeof(err)), WH_OK);
    assert_true(ing_toast_empty(c));
    /* only values large enough to be stored out of line, until a column is
     * seen unchanged */
    assert_false(ing_toast_wanted(c, &g_rel, 1, 100));
    assert_true(ing_toast_wanted(c, &g_rel, 1, ING_TOAST_MIN_VALUE));
    size_t n;
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n)); /* marks "doc" */
    assert_true(ing_toast_wanted(c, &g_rel, 1, 100));
    assert_false(ing_toast_wanted(c, &g_rel, 2, 100));

    assert_int_equal(ing_toast_put(c, &g_rel, "{\"id\":1}", 8, 1, "\"v1\"", 4, 100), WH_OK);
    assert_int_equal(ing_toast_put(c, &g_rel, "{\"id\":2}", 8, 1, "\"w\"", 3, 110), WH_OK);
    const char *v = ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n);
    assert_non_null(v);
    assert_int_equal(n, 4);
    assert_memory_equal(v, "\"v1\"", 4);
    /* replaced */
    assert_int_equal(ing_toast_put(c, &g_rel, "{\"id\":1}", 8, 1, "\"v22\"", 5, 120), WH_OK);
    v = ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n);
    assert_int_equal(n, 5);
    assert_int_equal(wh_gauge_get(&st.entries), 2);
    /* the key and the column both count: another column, another key miss */
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 2, &n));
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":3}", 8, 1, &n));
    /* forget one, forget a row */
    ing_toast_forget(c, &g_rel, "{\"id\":2}", 8, 1);
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":2}", 8, 1, &n));
    ing_toast_forget_row(c, &g_rel, "{\"id\":1}", 8);
    assert_true(ing_toast_empty(c));
    assert_int_equal(wh_gauge_get(&st.bytes), 0);

    /* a stream that starts again at 115 drops what commits at or after it */
    ing_toast_put(c, &g_rel, "{\"id\":1}", 8, 1, "\"a\"", 3, 100);
    ing_toast_put(c, &g_rel, "{\"id\":2}", 8, 1, "\"b\"", 3, 115);
    ing_toast_put(c, &g_rel, "{\"id\":3}", 8, 1, "\"c\"", 3, 130);
    ing_toast_rewind(c, 115);
    assert_non_null(ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n));
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":2}", 8, 1, &n));
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":3}", 8, 1, &n));

    /* a Relation message drops the entries (the same shape keeps the
     * marks); another shape drops the marks too */
    ing_toast_relation(c, &g_rel);
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n));
    assert_true(ing_toast_wanted(c, &g_rel, 1, 100));
    ing_toast_put(c, &g_rel, "{\"id\":1}", 8, 1, "\"a\"", 3, 100);
    ing_attr atts2[3];
    memcpy(atts2, g_atts, sizeof(atts2));
    atts2[1].type_oid = 3802; /* doc retyped to jsonb */
    ing_relation rel2 = g_rel;
    rel2.atts = atts2;
    ing_toast_relation(c, &rel2);
    assert_true(ing_toast_empty(c));
    assert_false(ing_toast_wanted(c, &rel2, 1, 100));

    /* truncate: every entry of the relation */
    ing_toast_put(c, &rel2, "{\"id\":1}", 8, 1, "1", 1, 200);
    ing_toast_forget_rel(c, rel2.oid);
    assert_true(ing_toast_empty(c));
    ing_toast_free(c);
}

/* The bound holds: least recently used entries go first; a value larger
 * than the whole cache is not kept (and does not leave an older one). */
static void test_cache_bound(void **state)
{
    (void)state;
    ing_toast *c;
    ing_toast_stats st;
    memset(&st, 0, sizeof(st));
    char err[WH_ERRLEN];
    const size_t max = 64 * 1024;
    assert_int_equal(ing_toast_new(&c, max, &st, err, sizeof(err)), WH_OK);
    char *v = big('x', 3000);
    char key[32];
    for (int i = 0; i < 100; i++) {
        int k = snprintf(key, sizeof(key), "{\"id\":%d}", i);
        assert_int_equal(ing_toast_put(c, &g_rel, key, (size_t)k, 1, v, 3000, 1), WH_OK);
        assert_true((size_t)wh_gauge_get(&st.bytes) <= max);
        if (i == 5) { /* 0 used again: it outlives 1..4 */
            size_t n;
            assert_non_null(ing_toast_get(c, &g_rel, "{\"id\":0}", 8, 1, &n));
        }
    }
    assert_true(wh_counter_get(&st.evicted) > 0);
    size_t n;
    assert_non_null(ing_toast_get(c, &g_rel, "{\"id\":99}", 9, 1, &n));
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n));
    char *huge = big('y', max);
    assert_int_equal(ing_toast_put(c, &g_rel, "{\"id\":99}", 9, 1, huge, max, 2), WH_OK);
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":99}", 9, 1, &n));
    free(huge);
    free(v);
    ing_toast_free(c);

    /* 0 bytes: nothing kept */
    assert_int_equal(ing_toast_new(&c, 0, NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_toast_put(c, &g_rel, "{\"id\":1}", 8, 1, "\"a\"", 3, 1), WH_OK);
    assert_true(ing_toast_empty(c));
    assert_null(ing_toast_get(c, &g_rel, "{\"id\":1}", 8, 1, &n));
    ing_toast_free(c);
}

static ing_txn g_txn;

static void render(wh_buf *b, const ing_msg *m, uint64_t lsn)
{
    char err[WH_ERRLEN];
    ing_txn_begin(&g_txn, lsn, 1, INT64_C(1795309323123456));
    wh_buf_reset(b);
    assert_int_equal(ing_event_change(b, &g_txn, 0, m, err, sizeof(err)), WH_OK);
    wh_buf_cstr(b);
}

/* Insert with a large value, then updates that leave it unchanged: filled
 * from the cache, under the row's key; a key change moves it; a delete
 * forgets it; without a cache the column is listed. */
static void test_event_fill(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    ing_toast_stats st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(ing_txn_set_tenant(&g_txn, "acme", err, sizeof(err)), WH_OK);
    assert_int_equal(ing_toast_new(&g_txn.toast, 1 << 20, &st, err, sizeof(err)), WH_OK);
    char *doc = big('d', 2500);
    char want[2600];
    snprintf(want, sizeof(want), "\"doc\":\"%s\"", doc);

    ing_col ins[3] = {{'t', 1, "1"}, {'t', 2500, doc}, {'t', 1, "5"}};
    ing_col upd[3] = {{'t', 1, "1"}, {'u', 0, NULL}, {'t', 1, "6"}};
    ing_msg m;
    memset(&m, 0, sizeof(m));
    m.rel = &g_rel;
    m.rel_oid = g_rel.oid;
    m.type = 'I';
    m.has_new = 1;
    m.newtup.ncols = 3;
    m.newtup.cols = ins;
    wh_buf b;
    wh_buf_init(&b, 0);
    render(&b, &m, 100);
    assert_non_null(strstr(b.data, want));

    m.type = 'U';
    m.newtup.cols = upd;
    render(&b, &m, 200);
    assert_non_null(strstr(b.data, want));
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"doc\":\"ddd"));
    assert_null(strstr(b.data, "\"unchanged\""));
    assert_int_equal(wh_counter_get(&st.hits), 1);

    /* the key changes (old key 'K'): the value is looked up under the old
     * key and kept under the new one */
    ing_col oldk[3] = {{'t', 1, "1"}, {'n', 0, NULL}, {'n', 0, NULL}};
    ing_col upd2[3] = {{'t', 1, "2"}, {'u', 0, NULL}, {'t', 1, "7"}};
    m.old_kind = 'K';
    m.oldtup.ncols = 3;
    m.oldtup.cols = oldk;
    m.newtup.cols = upd2;
    render(&b, &m, 300);
    assert_non_null(strstr(b.data, "\"key\":{\"id\":1}"));
    assert_non_null(strstr(b.data, "\"after\":{\"id\":2,\"doc\":\"ddd"));
    m.old_kind = 0;
    render(&b, &m, 310);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":2,\"doc\":\"ddd"));

    /* another row, never seen, takes key 1 (its old key 9): its value is
     * not known, and row 1's old value must not come back for it */
    ing_col oldk9[3] = {{'t', 1, "9"}, {'n', 0, NULL}, {'n', 0, NULL}};
    ing_col upd1[3] = {{'t', 1, "1"}, {'u', 0, NULL}, {'t', 1, "8"}};
    m.old_kind = 'K';
    m.oldtup.cols = oldk9;
    m.newtup.cols = upd1;
    render(&b, &m, 312);
    assert_non_null(strstr(b.data, "\"unchanged\":[\"doc\"]"));
    m.old_kind = 0;
    render(&b, &m, 314);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"n\":8},\"unchanged\":[\"doc\"]}"));
    m.newtup.cols = upd2;

    /* a small new value replaces the kept one: an unchanged after that is
     * not filled with the old large text */
    ing_col small[3] = {{'t', 1, "2"}, {'t', 2, "hi"}, {'t', 1, "7"}};
    m.newtup.cols = small;
    render(&b, &m, 320);
    m.newtup.cols = upd2;
    render(&b, &m, 330);
    /* "doc" was seen unchanged, so its small value "hi" was kept */
    assert_non_null(strstr(b.data, "\"after\":{\"id\":2,\"doc\":\"hi\",\"n\":7}"));

    /* a delete forgets the row */
    ing_col delk[3] = {{'t', 1, "2"}, {'n', 0, NULL}, {'n', 0, NULL}};
    m.type = 'D';
    m.old_kind = 'K';
    m.oldtup.cols = delk;
    m.has_new = 0;
    render(&b, &m, 400);
    m.type = 'U';
    m.old_kind = 0;
    m.has_new = 1;
    render(&b, &m, 500);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":2,\"n\":7},\"unchanged\":[\"doc\"]}"));
    assert_int_equal(wh_counter_get(&st.misses), 3);

    /* no cache: listed, as before */
    ing_toast_free(g_txn.toast);
    g_txn.toast = NULL;
    m.newtup.cols = upd;
    render(&b, &m, 600);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"n\":6},\"unchanged\":[\"doc\"]}"));
    wh_buf_free(&b);
    free(doc);
}

/* REPLICA IDENTITY FULL: the old row carries the value, with or without a
 * cache; a column unchanged in both stays listed. */
static void test_event_full_old_row(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    ing_attr atts[3];
    memcpy(atts, g_atts, sizeof(atts));
    for (int i = 0; i < 3; i++)
        atts[i].flags = ING_ATTR_IDENT;
    ing_relation rel = g_rel;
    rel.replident = 'f';
    rel.atts = atts;
    assert_int_equal(ing_txn_set_tenant(&g_txn, "acme", err, sizeof(err)), WH_OK);
    ing_col oldc[3] = {{'t', 1, "1"}, {'t', 5, "big!!"}, {'t', 1, "5"}};
    ing_col newc[3] = {{'t', 1, "1"}, {'u', 0, NULL}, {'t', 1, "6"}};
    ing_msg m;
    memset(&m, 0, sizeof(m));
    m.rel = &rel;
    m.rel_oid = rel.oid;
    m.type = 'U';
    m.old_kind = 'O';
    m.oldtup.ncols = 3;
    m.oldtup.cols = oldc;
    m.has_new = 1;
    m.newtup.ncols = 3;
    m.newtup.cols = newc;
    wh_buf b;
    wh_buf_init(&b, 0);
    render(&b, &m, 100);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"doc\":\"big!!\",\"n\":6}}"));
    ing_toast_stats st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(ing_toast_new(&g_txn.toast, 1 << 20, &st, err, sizeof(err)), WH_OK);
    render(&b, &m, 200);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"doc\":\"big!!\",\"n\":6}}"));
    assert_int_equal(wh_counter_get(&st.from_old), 1);
    /* the old row has it unchanged too (it cannot, with FULL; but never
     * invent a value) */
    oldc[1].kind = 'u';
    render(&b, &m, 300);
    assert_non_null(strstr(b.data, "\"after\":{\"id\":1,\"n\":6},\"unchanged\":[\"doc\"]}"));
    /* first column unchanged: no stray comma */
    oldc[1].kind = 't';
    newc[0].kind = 'u';
    oldc[0].kind = 'u';
    render(&b, &m, 400);
    assert_non_null(
        strstr(b.data, "\"after\":{\"doc\":\"big!!\",\"n\":6},\"unchanged\":[\"id\"]}"));
    ing_toast_free(g_txn.toast);
    g_txn.toast = NULL;
    wh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_basics),
        cmocka_unit_test(test_cache_bound),
        cmocka_unit_test(test_event_fill),
        cmocka_unit_test(test_event_full_old_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
