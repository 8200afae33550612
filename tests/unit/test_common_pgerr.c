/* Unit tests: wh_pg_oneline (a libpq or server message on one line: runs
 * with a control byte become one space, runs of plain spaces are kept, the
 * ends are trimmed, a cut never splits a UTF-8 sequence nor ends in a
 * space) and the texts of wh_pgerr_server that go through it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "wh_pgerr.h"
#include "wh_util.h"

/* msg on one line into a buffer of len bytes: the text, and the return code
 * expected */
static void expect(const char *msg, size_t len, const char *want, int rc)
{
    char out[512];
    assert_true(len <= sizeof(out));
    memset(out, 'X', sizeof(out));
    assert_int_equal(wh_pg_oneline(msg, out, len), rc);
    assert_string_equal(out, want);
}

static void test_oneline_newlines(void **state)
{
    /* libpq's messages end in "\n" */
    expect("ERROR:  relation \"t\" does not exist\n", 128, "ERROR:  relation \"t\" does not exist",
           WH_OK);
    expect("server closed the connection\n\n\r\n", 128, "server closed the connection", WH_OK);
    /* a multi-line connection message: "\n\t" is one space */
    expect("connection to server at \"h\", port 1 failed: Connection refused\n"
           "\tIs the server running on that host and accepting TCP/IP connections?\n",
           256,
           "connection to server at \"h\", port 1 failed: Connection refused Is the server "
           "running on that host and accepting TCP/IP connections?",
           WH_OK);
    /* a server error with its detail and hint */
    expect("ERROR:  x\nDETAIL:  y\nHINT:  z\n", 128, "ERROR:  x DETAIL:  y HINT:  z", WH_OK);
    expect("a\r\nb", 128, "a b", WH_OK);
}

static void test_oneline_whitespace(void **state)
{
    /* a run holding a control byte is one space, whatever else it holds */
    expect("a\tb", 16, "a b", WH_OK);
    expect("a \n  b", 16, "a b", WH_OK);
    expect("a\t\t \t\n b", 16, "a b", WH_OK);
    expect("a\vb\fc", 16, "a b c", WH_OK);
    expect("a\x01\x1f\x7f"
           "b",
           16, "a b", WH_OK);
    /* plain spaces are kept: PostgreSQL's "SEVERITY:  message" */
    expect("FATAL:  no", 16, "FATAL:  no", WH_OK);
    expect("a     b", 16, "a     b", WH_OK);
    /* the ends: leading and trailing runs, plain or not, are dropped */
    expect("  \n\ta b \t\n ", 16, "a b", WH_OK);
    expect("a   ", 16, "a", WH_OK);
    /* UTF-8 passes unchanged */
    expect("r\xc3\xb4le \xe2\x80\x9cx\xe2\x80\x9d\n", 32, "r\xc3\xb4le \xe2\x80\x9cx\xe2\x80\x9d",
           WH_OK);
}

static void test_oneline_empty(void **state)
{
    expect("", 8, "", WH_OK);
    expect(NULL, 8, "", WH_OK);
    expect("\n", 8, "", WH_OK);
    expect(" \t\r\n ", 8, "", WH_OK);
    expect("", 1, "", WH_OK);
    expect("\n\n", 1, "", WH_OK);
    /* len 0: nothing written */
    char out[4] = "abc";
    assert_int_equal(wh_pg_oneline("x", out, 0), WH_ERR);
    assert_string_equal(out, "abc");
    assert_int_equal(wh_pg_oneline("x", NULL, 4), WH_ERR);
}

static void test_oneline_truncation(void **state)
{
    /* len - 1 bytes at most; what fits exactly is no cut, trailing runs
     * included (they are dropped anyway) */
    expect("abcdef", 7, "abcdef", WH_OK);
    expect("abcdef\n\n", 7, "abcdef", WH_OK);
    expect("abcdefg", 7, "abcdef", WH_ERR);
    expect("abcdef", 1, "", WH_ERR);
    expect("abcdef", 2, "a", WH_ERR);
    /* never ends in a space: a run that does not fit is left out whole,
     * and a cut right after a space drops it */
    expect("abcde\nf", 7, "abcde", WH_ERR);
    expect("abcd  ef", 7, "abcd", WH_ERR);
    expect("abcde fg", 7, "abcde", WH_ERR);
    expect("ab\n\n\ncd", 4, "ab", WH_ERR);
    expect("ab \ncd", 5, "ab c", WH_ERR);
    /* never inside a UTF-8 sequence: "\xc3\xb4" is two bytes, "\xe2\x80\x9c"
     * three */
    expect("ab\xc3\xb4", 4, "ab", WH_ERR);
    expect("ab\xc3\xb4", 5, "ab\xc3\xb4", WH_OK);
    expect("a \xe2\x80\x9c", 4, "a", WH_ERR);
    expect("a \xe2\x80\x9c", 5, "a", WH_ERR);
    expect("a \xe2\x80\x9cx", 6, "a \xe2\x80\x9c", WH_ERR);
}

static void test_oneline_in_place(void **state)
{
    char m[64] = "\n ERROR:  a\n\tb  c \t\n";
    assert_int_equal(wh_pg_oneline(m, m, sizeof(m)), WH_OK);
    assert_string_equal(m, "ERROR:  a b  c");
    char n[8] = "a\tbcdef";
    assert_int_equal(wh_pg_oneline(n, n, 4), WH_ERR);
    assert_string_equal(n, "a b");
}

/* the server's primary message through wh_pgerr_server: on one line */
static void test_server_primary(void **state)
{
    char out[256];
    wh_pgerr_server("FATAL", "28000", "no pg_hba.conf entry\n\tfor host \"h\"\n", out, sizeof(out));
    assert_string_equal(out, "FATAL:  no pg_hba.conf entry for host \"h\" (SQLSTATE 28000)");
    /* a SQLSTATE whose message may quote a value: withheld */
    wh_pgerr_server("ERROR", "23505", "duplicate key\nvalue", out, sizeof(out));
    assert_null(strstr(out, "duplicate"));
    assert_null(strchr(out, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oneline_newlines), cmocka_unit_test(test_oneline_whitespace),
        cmocka_unit_test(test_oneline_empty),    cmocka_unit_test(test_oneline_truncation),
        cmocka_unit_test(test_oneline_in_place), cmocka_unit_test(test_server_primary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
