/* ing_ddl: the list of slots that use the DDL capture (the mark on
 * walhook_ddl_end): adding, removing, dropping slots that no longer exist
 * and names that are no slot names. The SQL side runs against PostgreSQL in
 * tests/integration/test_tenant_capture.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../services/ingestor/ing_ddl.h"
#include "wh_buf.h"
#include "wh_util.h"

static const char *users(wh_buf *b, const char *list, const char *slot, int add, const char *live)
{
    assert_int_equal(ing_ddl_users(list, slot, add, live, b), WH_OK);
    return b->data;
}

static void test_users(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_string_equal(users(&b, "", "a", 1, NULL), "a");
    assert_string_equal(users(&b, "a", "a", 1, NULL), "a"); /* once */
    assert_string_equal(users(&b, "a", "b", 1, "a,b"), "a,b");
    assert_string_equal(users(&b, "a,b", "a", 0, "a,b"), "b");
    assert_string_equal(users(&b, "b", "b", 0, "a,b"), ""); /* the last one: drop */
    assert_string_equal(users(&b, "a,b,c", "b", 0, NULL), "a,c");
    /* a slot that no longer exists is no user; nor is a bad name */
    assert_string_equal(users(&b, "gone,a", "b", 1, "a,b"), "a,b");
    assert_string_equal(users(&b, "gone", "b", 0, "a,b"), "");
    assert_string_equal(users(&b, "A,x y,,a;b,a", "c", 1, NULL), "a,c");
    assert_string_equal(users(&b, "a,a,b", "c", 0, NULL), "a,b");
    /* a live list with a longer name that starts like a user */
    assert_string_equal(users(&b, "ab", "c", 0, "abc,c"), "");
    assert_string_equal(users(&b, "abc", "c", 0, "ab,abc"), "abc");
    wh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
