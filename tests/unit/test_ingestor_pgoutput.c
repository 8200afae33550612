/* Parser tests on real pgoutput v1 messages captured from PostgreSQL 15
 * (data/ingestor/pgoutput_session.*, pgoutput_origin.*), truncated and
 * corrupted inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_event.h"
#include "../../services/ingestor/ing_pgoutput.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

#include "data/ingestor/pgoutput_origin.h"
#include "ingestor_session.h"

#define NORIGIN (sizeof(pgoutput_origin_hex) / sizeof(pgoutput_origin_hex[0]))

static void test_session_types(void **state)
{
    static const char expect[] = "BRICBUCBUCBDCBICBRICBUCBDCBRRTCBMCM";
    assert_int_equal(NMSG, strlen(expect));
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    for (size_t i = 0; i < NMSG; i++) {
        size_t n;
        uint8_t *b = unhex(pgoutput_session_hex[i], &n);
        ing_msg m;
        int rc = ing_parse(p, b, n, &m, err, sizeof(err));
        if (rc != WH_OK)
            fail_msg("message %zu: %s", i, err);
        assert_int_equal(m.type, expect[i]);
        free(b);
    }
    assert_int_equal(ing_relation_count(p), 2);
    ing_parser_free(p);
}

static void test_session_fields(void **state)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    uint8_t *bufs[NMSG];
    ing_msg m;
    size_t n;
    for (size_t i = 0; i < NMSG; i++)
        bufs[i] = unhex(pgoutput_session_hex[i], &n);

    /* Begin */
    n = strlen(pgoutput_session_hex[0]) / 2;
    assert_int_equal(ing_parse(p, bufs[0], n, &m, err, sizeof(err)), WH_OK);
    assert_true(m.final_lsn > 0);
    assert_true(m.xid > 0);
    assert_true(m.commit_ts_us > INT64_C(1600000000000000)); /* after 2020 */
    uint64_t final_lsn = m.final_lsn;

    /* Relation t1 */
    n = strlen(pgoutput_session_hex[1]) / 2;
    assert_int_equal(ing_parse(p, bufs[1], n, &m, err, sizeof(err)), WH_OK);
    assert_non_null(m.rel);
    assert_string_equal(m.rel->nspname, "public");
    assert_string_equal(m.rel->relname, "t1");
    assert_int_equal(m.rel->replident, 'd');
    assert_int_equal(m.rel->natts, 14);
    assert_string_equal(m.rel->atts[0].name, "id");
    assert_int_equal(m.rel->atts[0].flags & 1, 1);
    assert_int_equal(m.rel->atts[0].type_oid, 23);
    assert_int_equal(m.rel->atts[1].flags & 1, 0);
    assert_int_equal(m.rel->atts[6].type_oid, 1184);
    uint32_t t1oid = m.rel->oid;

    /* Insert */
    n = strlen(pgoutput_session_hex[2]) / 2;
    assert_int_equal(ing_parse(p, bufs[2], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.rel_oid, t1oid);
    assert_ptr_equal(m.rel, ing_relation_get(p, t1oid));
    assert_int_equal(m.old_kind, 0);
    assert_int_equal(m.newtup.ncols, 14);
    assert_int_equal(m.newtup.cols[0].kind, 't');
    assert_memory_equal(m.newtup.cols[0].data, "1", 1);
    assert_int_equal(m.newtup.cols[10].len, 16000); /* 500 md5s */

    /* Commit */
    n = strlen(pgoutput_session_hex[3]) / 2;
    assert_int_equal(ing_parse(p, bufs[3], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.commit_lsn, final_lsn);
    assert_true(m.end_lsn > m.commit_lsn);

    /* Update with unchanged TOAST */
    n = strlen(pgoutput_session_hex[5]) / 2;
    assert_int_equal(ing_parse(p, bufs[5], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'U');
    assert_int_equal(m.old_kind, 0);
    assert_int_equal(m.newtup.cols[10].kind, 'u');

    /* Update of the key: old 'K' tuple */
    n = strlen(pgoutput_session_hex[8]) / 2;
    assert_int_equal(ing_parse(p, bufs[8], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.old_kind, 'K');
    assert_int_equal(m.oldtup.ncols, 14);
    assert_memory_equal(m.oldtup.cols[0].data, "1", 1);
    assert_int_equal(m.oldtup.cols[1].kind, 'n');
    assert_memory_equal(m.newtup.cols[0].data, "2", 1);

    /* Truncate of both tables */
    n = strlen(pgoutput_session_hex[29]) / 2;
    assert_int_equal(ing_parse(p, bufs[29], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'T');
    assert_int_equal(m.nrels, 2);
    assert_int_equal(m.flags, 3); /* cascade | restart identity */

    /* transactional message */
    n = strlen(pgoutput_session_hex[32]) / 2;
    assert_int_equal(ing_parse(p, bufs[32], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'M');
    assert_int_equal(m.flags & 1, 1);
    assert_string_equal(m.name, "wh");
    assert_int_equal(m.content_len, 5);
    assert_memory_equal(m.content, "hello", 5);
    /* non-transactional */
    n = strlen(pgoutput_session_hex[34]) / 2;
    assert_int_equal(ing_parse(p, bufs[34], n, &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.flags & 1, 0);
    assert_int_equal(m.content_len, 2);

    for (size_t i = 0; i < NMSG; i++)
        free(bufs[i]);
    ing_parser_free(p);
}

/* Every strict prefix of every message is rejected with a message naming
 * the type and the offset; never a crash (run under ASan in `make asan`).
 * Each prefix is copied into an exact-size heap block so overreads show. */
static void test_prefixes_rejected(void **state)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    /* relations first so I/U/D resolve */
    for (size_t i = 0; i < NMSG; i++) {
        size_t n;
        uint8_t *b = unhex(pgoutput_session_hex[i], &n);
        for (size_t k = 0; k < n; k++) {
            uint8_t *c = malloc(k ? k : 1);
            memcpy(c, b, k);
            ing_msg m;
            err[0] = '\0';
            int rc = ing_parse(p, k ? c : NULL, k, &m, err, sizeof(err));
            if (rc != WH_ERR)
                fail_msg("message %zu prefix %zu accepted", i, k);
            assert_non_null(strstr(err, "offset"));
            if (k > 0) {
                char want[32];
                snprintf(want, sizeof(want), "'%c'", b[0]);
                if (!strstr(err, want))
                    fail_msg("error does not name the type: %s", err);
            }
            free(c);
        }
        /* trailing garbage is rejected too */
        uint8_t *c = malloc(n + 1);
        memcpy(c, b, n);
        c[n] = 0x7f;
        ing_msg m;
        assert_int_equal(ing_parse(p, c, n + 1, &m, err, sizeof(err)), WH_ERR);
        assert_non_null(strstr(err, "trailing"));
        free(c);
        /* the full message still parses (keeps the cache current) */
        assert_int_equal(ing_parse(p, b, n, &m, err, sizeof(err)), WH_OK);
        free(b);
    }
    ing_parser_free(p);
}

/* Random corruption: never crashes; results either parse or fail cleanly. */
static void test_corruption(void **state)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    uint32_t rnd = 12345;
    wh_buf out;
    wh_buf_init(&out, 0);
    ing_txn txn;
    assert_int_equal(ing_txn_set_tenant(&txn, "t", err, sizeof(err)), WH_OK);
    ing_txn_begin(&txn, 1, 1, 0);
    for (int round = 0; round < 20000; round++) {
        size_t i = (size_t)round % NMSG, n;
        uint8_t *b = unhex(pgoutput_session_hex[i], &n);
        int flips = 1 + (int)(rnd % 4);
        for (int f = 0; f < flips; f++) {
            rnd = rnd * 1103515245u + 12345u;
            size_t pos = (rnd >> 8) % n;
            rnd = rnd * 1103515245u + 12345u;
            b[pos] = (uint8_t)(rnd >> 16);
        }
        ing_msg m;
        if (ing_parse(p, b, n, &m, err, sizeof(err)) == WH_OK &&
            (m.type == 'I' || m.type == 'U' || m.type == 'D')) {
            wh_buf_reset(&out);
            ing_event_change(&out, &txn, 0, &m, err, sizeof(err)); /* ok or clean error */
        }
        free(b);
    }
    wh_buf_free(&out);
    ing_parser_free(p);
}

static void test_bad_inputs(void **state)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    ing_msg m;
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_parse(p, (const uint8_t *)"Z", 1, &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "unknown message type"));
    /* relation claiming 65535 attributes in a short message */
    static const uint8_t rel[] = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0xff, 0xff};
    assert_int_equal(ing_parse(p, rel, sizeof(rel), &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "'R'"));
    /* insert with a huge column length */
    static const uint8_t ins[] = {'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0x7f, 0xff, 0xff, 0xff, 'x'};
    assert_int_equal(ing_parse(p, ins, sizeof(ins), &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "value exceeds message at offset 13"));
    /* unknown column kind */
    static const uint8_t ins2[] = {'I', 0, 0, 0, 1, 'N', 0, 1, 'q'};
    assert_int_equal(ing_parse(p, ins2, sizeof(ins2), &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "kind"));
    /* truncate with too many relations */
    static const uint8_t tr[] = {'T', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1};
    assert_int_equal(ing_parse(p, tr, sizeof(tr), &m, err, sizeof(err)), WH_ERR);
    /* insert for an unknown relation parses; rendering reports it */
    static const uint8_t ins3[] = {'I', 0, 0, 0, 9, 'N', 0, 1, 'n'};
    assert_int_equal(ing_parse(p, ins3, sizeof(ins3), &m, err, sizeof(err)), WH_OK);
    assert_null(m.rel);
    ing_parser_free(p);
}

/* Origin messages ('O': the origin's commit LSN, its name) right after the
 * Begin of each transaction written with a replication origin; every
 * strict prefix of one is refused, a missing terminator too. */
static void test_origin_messages(void **state)
{
    static const char expect[] = "BRICBOIUCBOICBIC";
    assert_int_equal(NORIGIN, strlen(expect));
    ing_parser *p;
    char err[WH_ERRLEN];
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    int norigin = 0;
    for (size_t i = 0; i < NORIGIN; i++) {
        size_t n;
        uint8_t *b = unhex(pgoutput_origin_hex[i], &n);
        ing_msg m;
        if (ing_parse(p, b, n, &m, err, sizeof(err)) != WH_OK)
            fail_msg("message %zu: %s", i, err);
        assert_int_equal(m.type, expect[i]);
        if (m.type == 'O') {
            assert_int_equal(expect[i - 1], 'B');
            assert_string_equal(m.name, "peer \"b\"");
            assert_true(m.lsn == UINT64_C(0xABCDEF0)); /* pg_replication_origin_xact_setup */
            norigin++;
            for (size_t k = 0; k < n; k++) {
                uint8_t *c = malloc(k ? k : 1);
                memcpy(c, b, k);
                assert_int_equal(ing_parse(p, k ? c : NULL, k, &m, err, sizeof(err)), WH_ERR);
                if (k > 0 && !strstr(err, "'O'"))
                    fail_msg("prefix %zu: %s", k, err);
                free(c);
            }
        }
        free(b);
    }
    assert_int_equal(norigin, 2);
    ing_msg m;
    static const uint8_t unterminated[] = {'O', 0, 0, 0, 0, 0, 0, 0, 1, 'p', 'e'};
    assert_int_equal(ing_parse(p, unterminated, sizeof(unterminated), &m, err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "unterminated string"));
    static const uint8_t empty_name[] = {'O', 0, 0, 0, 0, 0, 0, 0, 1, 0};
    assert_int_equal(ing_parse(p, empty_name, sizeof(empty_name), &m, err, sizeof(err)), WH_OK);
    assert_string_equal(m.name, "");
    assert_true(m.lsn == 1);
    ing_parser_free(p);
}

/* Relation cache: a newer Relation for the same OID wins. */
static void test_relation_replaced(void **state)
{
    ing_parser *p;
    char err[WH_ERRLEN];
    ing_msg m;
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    static const uint8_t r1[] = {'R', 0,   0, 0, 7, 'p', 0,  'a',  0,    'd',  0,   1,
                                 1,   'x', 0, 0, 0, 0,   23, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t r2[] = {'R', 0,   0, 0, 7, 'p', 0,    'b',  0,    'f',  0,    2,
                                 1,   'x', 0, 0, 0, 0,   23,   0xff, 0xff, 0xff, 0xff, 1,
                                 'y', 0,   0, 0, 0, 25,  0xff, 0xff, 0xff, 0xff};
    assert_int_equal(ing_parse(p, r1, sizeof(r1), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_parse(p, r2, sizeof(r2), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_relation_count(p), 1);
    const ing_relation *r = ing_relation_get(p, 7);
    assert_string_equal(r->relname, "b");
    assert_int_equal(r->natts, 2);
    assert_int_equal(r->atts[1].typmod, -1);
    /* many relations: the table grows */
    for (uint32_t oid = 100; oid < 1100; oid++) {
        uint8_t b[sizeof(r1)];
        memcpy(b, r1, sizeof(b));
        wh_put_be32(b + 1, oid);
        assert_int_equal(ing_parse(p, b, sizeof(b), &m, err, sizeof(err)), WH_OK);
    }
    assert_int_equal(ing_relation_count(p), 1001);
    for (uint32_t oid = 100; oid < 1100; oid++)
        assert_int_equal(ing_relation_get(p, oid)->oid, oid);
    assert_null(ing_relation_get(p, 5000));
    ing_parser_free(p);
}

/* Protocol 2: Stream Start/Stop/Commit/Abort, and the xid that messages
 * carry inside a stream block (not outside). */
static void test_stream_messages(void **state)
{
    (void)state;
    ing_parser *p;
    char err[WH_ERRLEN];
    ing_msg m;
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    static const uint8_t start[] = {'S', 0, 0, 2, 0xBC, 1};
    static const uint8_t rel[] = {'R', 0, 0, 2,   0xBD, 0, 0, 0x40, 0, 'p', 0,    't',  0,    'd',
                                  0,   1, 1, 'i', 'd',  0, 0, 0,    0, 23,  0xFF, 0xFF, 0xFF, 0xFF};
    static const uint8_t ins[] = {'I', 0, 0, 2,   0xBD, 0, 0, 0x40, 0,
                                  'N', 0, 1, 't', 0,    0, 0, 1,    '7'};
    static const uint8_t stop[] = {'E'};
    static const uint8_t abort_sub[] = {'A', 0, 0, 2, 0xBC, 0, 0, 2, 0xBD};
    static const uint8_t commit[] = {'c',  0,    0,    2,    0xBC, 0, 0, 0, 0,    0,
                                     0x01, 0x5A, 0x2B, 0x10, 0,    0, 0, 0, 0x01, 0x5A,
                                     0x2B, 0x40, 0,    0,    0,    0, 0, 0, 0,    1};
    assert_int_equal(ing_parse(p, start, sizeof(start), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'S');
    assert_int_equal(m.xid, 700);
    assert_int_equal(m.flags, 1);
    assert_true(ing_parser_in_stream(p));
    /* a second start inside the block */
    assert_int_equal(ing_parse(p, start, sizeof(start), &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "stream start inside a stream"));
    assert_int_equal(ing_parse(p, rel, sizeof(rel), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.xid, 701);
    assert_non_null(m.rel);
    assert_int_equal(m.rel->oid, 0x4000);
    assert_int_equal(ing_parse(p, ins, sizeof(ins), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'I');
    assert_int_equal(m.xid, 701);
    assert_int_equal(m.rel_oid, 0x4000);
    assert_int_equal(m.newtup.ncols, 1);
    assert_memory_equal(m.newtup.cols[0].data, "7", 1);
    /* commit and abort belong outside a block */
    assert_int_equal(ing_parse(p, commit, sizeof(commit), &m, err, sizeof(err)), WH_ERR);
    assert_int_equal(ing_parse(p, stop, sizeof(stop), &m, err, sizeof(err)), WH_OK);
    assert_false(ing_parser_in_stream(p));
    assert_int_equal(ing_parse(p, stop, sizeof(stop), &m, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "stream stop outside a stream"));
    /* outside a block the same insert has no xid: its bytes no longer parse */
    assert_int_equal(ing_parse(p, ins, sizeof(ins), &m, err, sizeof(err)), WH_ERR);
    assert_int_equal(ing_parse(p, abort_sub, sizeof(abort_sub), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'A');
    assert_int_equal(m.xid, 700);
    assert_int_equal(m.subxid, 701);
    assert_int_equal(ing_parse(p, commit, sizeof(commit), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(m.type, 'c');
    assert_int_equal(m.xid, 700);
    assert_int_equal(m.commit_lsn, UINT64_C(0x15A2B10));
    assert_int_equal(m.end_lsn, UINT64_C(0x15A2B40));
    assert_int_equal(m.commit_ts_us, 1 + ING_PG_EPOCH_OFFSET_US);
    /* truncated */
    assert_int_equal(ing_parse(p, commit, sizeof(commit) - 1, &m, err, sizeof(err)), WH_ERR);
    assert_int_equal(ing_parse(p, start, 3, &m, err, sizeof(err)), WH_ERR);
    assert_false(ing_parser_in_stream(p));
    assert_int_equal(ing_parse(p, start, sizeof(start), &m, err, sizeof(err)), WH_OK);
    ing_parser_stream_reset(p);
    assert_false(ing_parser_in_stream(p));
    ing_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_types),     cmocka_unit_test(test_session_fields),
        cmocka_unit_test(test_prefixes_rejected), cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_bad_inputs),        cmocka_unit_test(test_relation_replaced),
        cmocka_unit_test(test_origin_messages),   cmocka_unit_test(test_stream_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
