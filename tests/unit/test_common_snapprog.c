/* Unit tests: the snapshot progress document (wh_snapprog) and the chunk
 * key filter (key encoding, key set). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_snapprog.h"
#include "wh_util.h"

static void set_last(wh_snapjob *j, const char *a, const char *b)
{
    const char *v[2] = {a, b};
    size_t l[2] = {strlen(a), b ? strlen(b) : 0};
    assert_int_equal(wh_snapjob_set_last(j, v, l, b ? 2 : 1), WH_OK);
}

static void test_progress_roundtrip(void **state)
{
    wh_snapprog p, q;
    memset(&p, 0, sizeof(p));
    memset(&q, 0, sizeof(q));
    p.plan = 2;
    wh_snapjob *a = wh_snapprog_add(&p, WH_SNAP_INITIAL, "initial", "public.snap");
    wh_snapjob *b = wh_snapprog_add(&p, WH_SNAP_BACKFILL, "bf-7", "we\"ird\t.ta\nble");
    assert_non_null(a);
    assert_non_null(b);
    a->state = WH_SNAP_RUNNING;
    a->rows_done = 123456789012ULL;
    a->rows_est = 1000000;
    a->started_us = 1700000000000000LL;
    set_last(a, "42", "x\ty\nz;\\'\"");
    b->state = WH_SNAP_DONE;
    set_last(b, "", NULL); /* an empty text key */
    wh_buf out;
    wh_buf_init(&out, 0);
    assert_int_equal(wh_snapprog_encode(&p, &out), WH_OK);
    /* one record a line, nothing of the values in clear */
    assert_null(memmem(out.data, out.len, "x\ty", 3));
    char err[WH_ERRLEN];
    assert_int_equal(wh_snapprog_decode(&q, out.data, out.len, err, sizeof(err)), WH_OK);
    assert_int_equal(q.plan, 2);
    assert_int_equal(q.njobs, 2);
    assert_string_equal(q.jobs[0].table, "public.snap");
    assert_string_equal(q.jobs[0].id, "initial");
    assert_int_equal(q.jobs[0].state, WH_SNAP_RUNNING);
    assert_true(q.jobs[0].rows_done == 123456789012ULL);
    assert_true(q.jobs[0].rows_est == 1000000);
    assert_true(q.jobs[0].started_us == 1700000000000000LL);
    assert_int_equal(q.jobs[0].nlast, 2);
    assert_string_equal(q.jobs[0].last[0], "42");
    assert_string_equal(q.jobs[0].last[1], "x\ty\nz;\\'\"");
    assert_string_equal(q.jobs[1].table, "we\"ird\t.ta\nble");
    assert_int_equal(q.jobs[1].kind, WH_SNAP_BACKFILL);
    assert_int_equal(q.jobs[1].state, WH_SNAP_DONE);
    assert_int_equal(q.jobs[1].nlast, 1);
    assert_string_equal(q.jobs[1].last[0], "");
    assert_non_null(wh_snapprog_find(&q, "bf-7", "we\"ird\t.ta\nble"));
    assert_null(wh_snapprog_find(&q, "bf-8", "we\"ird\t.ta\nble"));
    /* encode(decode(x)) == x */
    wh_buf again;
    wh_buf_init(&again, 0);
    assert_int_equal(wh_snapprog_encode(&q, &again), WH_OK);
    assert_int_equal(again.len, out.len);
    assert_memory_equal(again.data, out.data, out.len);
    wh_buf_free(&again);
    wh_buf_free(&out);
    wh_snapprog_clear(&p);
    wh_snapprog_clear(&q);
}

static void test_progress_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "walhook-snapshot 2\nplan 0\n",
        "walhook-snapshot 1\n",                                        /* no plan */
        "walhook-snapshot 1\nplan 3\n",                                /* unknown plan */
        "walhook-snapshot 1\nplan 0\nplan 1\n",                        /* two plans */
        "walhook-snapshot 1\nplan 0",                                  /* no end of line */
        "walhook-snapshot 1\nplan 0\nfoo\n",                           /* unknown record */
        "walhook-snapshot 1\nplan 0\njob\t0\t1\t5\t9\t0\t61\t61\t0\n", /* table "a" ok... */
    };
    char err[WH_ERRLEN];
    wh_snapprog p;
    memset(&p, 0, sizeof(p));
    for (size_t i = 0; i + 1 < WH_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(wh_snapprog_decode(&p, bad[i], strlen(bad[i]), err, sizeof(err)), WH_ERR);
        assert_true(err[0] != '\0');
        assert_int_equal(p.njobs, 0);
    }
    /* the last one is valid: one job */
    const char *ok = bad[WH_ARRAY_LEN(bad) - 1];
    assert_int_equal(wh_snapprog_decode(&p, ok, strlen(ok), err, sizeof(err)), WH_OK);
    assert_int_equal(p.njobs, 1);
    assert_string_equal(p.jobs[0].table, "a");
    static const char *const badjobs[] = {
        "job\t2\t1\t5\t9\t0\t61\t61\t0\n",                    /* kind */
        "job\t0\t4\t5\t9\t0\t61\t61\t0\n",                    /* state */
        "job\t0\t1\t-5\t9\t0\t61\t61\t0\n",                   /* rows */
        "job\t0\t1\t5\t9\t0\t6\t61\t0\n",                     /* odd hex */
        "job\t0\t1\t5\t9\t0\t61\t-\t0\n",                     /* empty table */
        "job\t0\t1\t5\t9\t0\t61\t61\t2\t62\n",                /* fewer key values than said */
        "job\t0\t1\t5\t9\t0\t61\t61\t1\t62\t63\n",            /* more */
        "job\t0\t1\t5\t9\t0\t61\t0061\t0\n",                  /* a NUL byte */
        "job\t0\t1\t99999999999999999999\t9\t0\t61\t61\t0\n", /* overflow */
    };
    for (size_t i = 0; i < WH_ARRAY_LEN(badjobs); i++) {
        char doc[256];
        snprintf(doc, sizeof(doc), "walhook-snapshot 1\nplan 1\n%s", badjobs[i]);
        if (wh_snapprog_decode(&p, doc, strlen(doc), err, sizeof(err)) != WH_ERR)
            fail_msg("accepted: %s", badjobs[i]);
        assert_non_null(strstr(err, "line 3"));
        assert_int_equal(p.njobs, 0);
    }
    wh_snapprog_clear(&p);
}

static void key(wh_buf *b, const char *a, const char *c)
{
    const char *v[2] = {a, c};
    size_t l[2] = {strlen(a), c ? strlen(c) : 0};
    wh_buf_reset(b);
    assert_int_equal(wh_snapkey_encode(b, v, l, c ? 2 : 1), WH_OK);
}

/* The chunk filter: a row whose key was changed in the window is left out;
 * keys of several columns never collide by concatenation. */
static void test_key_filter(void **state)
{
    wh_keyset s;
    wh_keyset_init(&s);
    wh_buf k;
    wh_buf_init(&k, 0);
    key(&k, "a", "bc");
    assert_int_equal(wh_keyset_add(&s, k.data, k.len), WH_OK);
    key(&k, "ab", "c");
    assert_false(wh_keyset_has(&s, k.data, k.len));
    key(&k, "a", "bc");
    assert_true(wh_keyset_has(&s, k.data, k.len));
    key(&k, "a", "");
    assert_false(wh_keyset_has(&s, k.data, k.len));
    /* many keys: growth keeps every one */
    char num[16];
    for (int i = 0; i < 20000; i++) {
        snprintf(num, sizeof(num), "%d", i * 7);
        key(&k, num, NULL);
        assert_int_equal(wh_keyset_add(&s, k.data, k.len), WH_OK);
        assert_int_equal(wh_keyset_add(&s, k.data, k.len), WH_OK); /* twice: once kept */
    }
    assert_int_equal(s.count, 20001);
    for (int i = 0; i < 20000 * 7; i++) {
        snprintf(num, sizeof(num), "%d", i);
        key(&k, num, NULL);
        if (wh_keyset_has(&s, k.data, k.len) != (i % 7 == 0))
            fail_msg("key %d", i);
    }
    /* a new window starts empty */
    wh_keyset_clear(&s);
    key(&k, "a", "bc");
    assert_false(wh_keyset_has(&s, k.data, k.len));
    assert_int_equal(wh_keyset_add(&s, k.data, k.len), WH_OK);
    assert_true(wh_keyset_has(&s, k.data, k.len));
    wh_buf_free(&k);
    wh_keyset_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_roundtrip),
        cmocka_unit_test(test_progress_bad),
        cmocka_unit_test(test_key_filter),
    };
    return cmocka_run_group_tests_name("common_snapprog", tests, NULL, NULL);
}
