/* Unit tests: the durability notification's wire format (wh_notify): the
 * position alone, pushed events, and every push that must not be used (out
 * of order, not ending at the notified position, too big, cut short). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "wh_notify.h"
#include "wh_util.h"

typedef struct evs {
    Walhook__Event ev[8];
    Walhook__Event *evp[8];
} evs;

/* n events of transaction lsn, seq 0.., json "{\"i\":seq}" */
static void make_events(evs *e, size_t n, uint64_t lsn)
{
    static const char *js[] = {"{\"i\":0}", "{\"i\":1}", "{\"i\":2}", "{\"i\":3}",
                               "{\"i\":4}", "{\"i\":5}", "{\"i\":6}", "{\"i\":7}"};
    for (size_t i = 0; i < n; i++) {
        walhook__event__init(&e->ev[i]);
        e->ev[i].commit_lsn = lsn;
        e->ev[i].seq = (uint32_t)i;
        e->ev[i].commit_ts_us = 1000 + (int64_t)i;
        e->ev[i].json.data = (uint8_t *)js[i];
        e->ev[i].json.len = strlen(js[i]);
        e->evp[i] = &e->ev[i];
    }
}

static void test_position_only(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, WH_NOTE_MSG_MAX);
    int pushed = -1;
    assert_int_equal(wh_note_encode(&b, "acme", 0x1234, 7, 0, 0, 0, 0, NULL, 0, &pushed), WH_OK);
    assert_int_equal(pushed, 0);
    assert_int_equal(b.len, 5 + 12); /* the format older dispatchers read */
    wh_note n;
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_string_equal(n.tenant, "acme");
    assert_true(n.lsn == 0x1234);
    assert_int_equal(n.seq, 7);
    assert_null(n.push);
    /* not notifications: no NUL, too short */
    assert_int_equal(wh_note_decode((const uint8_t *)"acme", 4, &n), WH_ERR);
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len - 1, &n), WH_ERR);
    wh_buf_free(&b);
}

/* a zone note: the zone comes through, no push; a position-only note
 * carries none */
static void test_zone_note(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, WH_NOTE_MSG_MAX);
    wh_note n;
    for (uint32_t z = 0; z <= 2; z++) {
        assert_int_equal(wh_note_encode_zone(&b, "acme", z), WH_OK);
        assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
        assert_string_equal(n.tenant, "acme");
        assert_true(n.has_zone);
        assert_int_equal(n.zone, z);
        assert_true(n.lsn == UINT64_MAX);
        assert_null(n.push);
    }
    assert_int_equal(wh_note_encode(&b, "acme", 0x1234, 7, 0, 0, 0, 0, NULL, 0, NULL), WH_OK);
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_false(n.has_zone);
    wh_buf_free(&b);
}

static void test_push_roundtrip(void **state)
{
    (void)state;
    evs e;
    make_events(&e, 3, 0x200);
    wh_buf b;
    wh_buf_init(&b, WH_NOTE_MSG_MAX);
    int pushed = 0;
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 2, 1, 0x100, 4, 99, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(pushed, 1);
    wh_note n;
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_non_null(n.push);
    assert_true(n.push->prev->lsn == 0x100);
    assert_int_equal(n.push->prev->seq, 4);
    assert_true(n.push->moves == 99);
    assert_int_equal(n.push->n_events, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(n.push->events[i]->commit_lsn == 0x200);
        assert_int_equal(n.push->events[i]->seq, i);
        assert_int_equal(n.push->events[i]->commit_ts_us, 1000 + (int64_t)i);
        assert_memory_equal(n.push->events[i]->json.data, e.ev[i].json.data, e.ev[i].json.len);
    }
    wh_note_free(&n);
    assert_null(n.push);

    /* a message cut short anywhere in the note is never a shorter push */
    for (size_t len = 5 + 12 + 1; len < b.len; len++) {
        assert_int_equal(wh_note_decode((const uint8_t *)b.data, len, &n), WH_OK);
        assert_true(n.lsn == 0x200);
        assert_null(n.push);
    }
    wh_buf_free(&b);
}

static void test_push_refused(void **state)
{
    (void)state;
    evs e;
    wh_buf b;
    wh_buf_init(&b, WH_NOTE_MSG_MAX);
    wh_note n;
    int pushed = 0;

    /* no prev known: the position only */
    make_events(&e, 3, 0x200);
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 2, 0, 0, 0, 1, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(pushed, 0);
    /* the last event is not the notified position: the position only */
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 5, 1, 0x100, 0, 1, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(pushed, 0);

    /* events not strictly after prev, or out of order: sent, refused on receipt */
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 2, 1, 0x200, 0, 1, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(pushed, 1);
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_null(n.push);
    e.ev[1].seq = 0; /* a duplicate position */
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 2, 1, 0x100, 0, 1, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_null(n.push);
    make_events(&e, 3, 0x200);
    e.ev[2].json.len = 0; /* an empty event */
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 2, 1, 0x100, 0, 1, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_null(n.push);

    /* too big to push: the position only */
    size_t big = WH_NOTE_PUSH_MAX / 2;
    uint8_t *blob = malloc(big);
    assert_non_null(blob);
    memset(blob, 'x', big);
    make_events(&e, 3, 0x200);
    for (int i = 0; i < 3; i++) {
        e.ev[i].json.data = blob;
        e.ev[i].json.len = big;
    }
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 2, 1, 0x100, 0, 1, e.evp, 3, &pushed), WH_OK);
    assert_int_equal(pushed, 0);
    assert_int_equal(b.len, 2 + 12);
    /* one that fits does go */
    assert_int_equal(wh_note_encode(&b, "t", 0x200, 0, 1, 0x100, 0, 1, e.evp, 1, &pushed), WH_OK);
    assert_int_equal(pushed, 1);
    assert_true(b.len <= WH_NOTE_MSG_MAX);
    assert_int_equal(wh_note_decode((const uint8_t *)b.data, b.len, &n), WH_OK);
    assert_non_null(n.push);
    assert_int_equal(n.push->events[0]->json.len, big);
    wh_note_free(&n);
    free(blob);
    wh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_position_only),
        cmocka_unit_test(test_zone_note),
        cmocka_unit_test(test_push_roundtrip),
        cmocka_unit_test(test_push_refused),
    };
    return cmocka_run_group_tests_name("common_notify", tests, NULL, NULL);
}
