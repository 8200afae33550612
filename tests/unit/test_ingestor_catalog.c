/* ing_catalog without a reachable catalog: column types that are not built
 * in keep their text form, the failure is reported, the relation waits for
 * a retry (not due at once), and built-in columns are untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_catalog.h"
#include "../../services/ingestor/ing_pgoutput.h"
#include "wh_util.h"

static void test_types_unreachable(void **state)
{
    /* 'R', oid 77, "s\0", "t\0", 'd', 2 columns: (1, "id", int4, -1),
     * (0, "m", 16389, -1) */
    static const uint8_t msg[] = {'R', 0,   0,   0, 77, 's',  0,    't',  0,    'd',  0,    2,
                                  1,   'i', 'd', 0, 0,  0,    0,    23,   0xFF, 0xFF, 0xFF, 0xFF,
                                  0,   'm', 0,   0, 0,  0x40, 0x05, 0xFF, 0xFF, 0xFF, 0xFF};
    char err[WH_ERRLEN];
    ing_parser *p;
    ing_catalog *c;
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_catalog_new(&c, err, sizeof(err)), WH_OK);
    ing_msg m;
    assert_int_equal(ing_parse(p, msg, sizeof(msg), &m, err, sizeof(err)), WH_OK);
    /* nothing listens on port 1 of the loopback: the connect fails at once */
    const char *dsn = "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2";
    assert_int_equal(ing_catalog_types_due(c, 77), 0);
    assert_int_equal(ing_catalog_relation_types(c, dsn, p, 77, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "catalog connection failed"));
    const ing_relation *r = ing_relation_get(p, 77);
    assert_null(r->atts[0].vtype);
    assert_null(r->atts[1].vtype);
    /* waits for its retry time; other relations wait for nothing */
    assert_int_equal(ing_catalog_types_due(c, 77), 0);
    assert_int_equal(ing_catalog_types_due(c, 78), 0);
    /* in the hold-off after the failed connect: refused without a connect */
    assert_int_equal(ing_catalog_relation_types(c, dsn, p, 77, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "not retried yet"));
    /* a relation of built-in types only needs no catalog at all */
    static const uint8_t msg2[] = {'R', 0,   0,   0, 78, 's', 0, 't', 0,    'd',  0,    1,
                                   1,   'i', 'd', 0, 0,  0,   0, 23,  0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(ing_parse(p, msg2, sizeof(msg2), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_catalog_relation_types(c, dsn, p, 78, err, sizeof(err)), WH_OK);
    /* an unknown relation: nothing to do */
    assert_int_equal(ing_catalog_relation_types(c, dsn, p, 79, err, sizeof(err)), WH_OK);
    ing_catalog_free(c);
    ing_parser_free(p);
}

/* A DDL command's message makes every relation with a type that is not
 * built in due; a value that did not match its type makes the relations
 * of that type due, at most once per ING_TYPES_STALE_MS, with one warning
 * per type. No connection is needed. */
static void test_types_due_marking(void **state)
{
    /* 77 (id int4, m 16389), 78 (id int4), 80 (q 16390) */
    static const uint8_t m77[] = {'R', 0,   0,   0, 77, 's',  0,    't',  0,    'd',  0,    2,
                                  1,   'i', 'd', 0, 0,  0,    0,    23,   0xFF, 0xFF, 0xFF, 0xFF,
                                  0,   'm', 0,   0, 0,  0x40, 0x05, 0xFF, 0xFF, 0xFF, 0xFF};
    static const uint8_t m78[] = {'R', 0,   0,   0, 78, 's', 0, 't', 0,    'd',  0,    1,
                                  1,   'i', 'd', 0, 0,  0,   0, 23,  0xFF, 0xFF, 0xFF, 0xFF};
    static const uint8_t m80[] = {'R', 0,   0, 0, 80, 's',  0,    'u',  0,    'd',  0,   1,
                                  0,   'q', 0, 0, 0,  0x40, 0x06, 0xFF, 0xFF, 0xFF, 0xFF};
    char err[WH_ERRLEN];
    ing_parser *p;
    ing_catalog *c;
    ing_msg m;
    assert_int_equal(ing_parser_new(&p, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_parse(p, m77, sizeof(m77), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_parse(p, m78, sizeof(m78), &m, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_parse(p, m80, sizeof(m80), &m, err, sizeof(err)), WH_OK);

    assert_int_equal(ing_catalog_new(&c, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_catalog_types_due(c, 77), 0);
    ing_catalog_types_invalidate(c, p);
    assert_int_equal(ing_catalog_types_due(c, 77), 1);
    assert_int_equal(ing_catalog_types_due(c, 78), 0); /* built-in types only */
    assert_int_equal(ing_catalog_types_due(c, 80), 1);
    ing_catalog_free(c);

    assert_int_equal(ing_catalog_new(&c, err, sizeof(err)), WH_OK);
    uint64_t t0 = 1000000;
    assert_int_equal(ing_catalog_mismatch(c, p, 16389, t0),
                     ING_MISMATCH_MARKED | ING_MISMATCH_WARN);
    assert_int_equal(ing_catalog_types_due(c, 77), 1);
    assert_int_equal(ing_catalog_types_due(c, 80), 0); /* another type */
    assert_int_equal(ing_catalog_types_due(c, 78), 0);
    /* within the interval: neither marked again nor warned */
    assert_int_equal(ing_catalog_mismatch(c, p, 16389, t0 + ING_TYPES_STALE_MS - 1), 0);
    assert_int_equal(ing_catalog_mismatch(c, p, 16389, t0 + ING_TYPES_STALE_MS),
                     ING_MISMATCH_MARKED);
    assert_int_equal(ing_catalog_mismatch(c, p, 16390, t0),
                     ING_MISMATCH_MARKED | ING_MISMATCH_WARN);
    assert_int_equal(ing_catalog_types_due(c, 80), 1);
    assert_null(ing_catalog_type_name(c, 16389)); /* never read */
    ing_catalog_free(c);
    ing_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_unreachable),
        cmocka_unit_test(test_types_due_marking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
