/* ing_copy: the replication stream's framing on a socket pair standing in
 * for the walsender: START_REPLICATION's answer, CopyData messages split
 * across reads, larger than the buffer, skipped notices, the server's error
 * and CopyDone, a closed connection, and the client's own messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_copy.h"
#include "wh_util.h"

/* Appends a protocol message: type, length, body. */
static size_t msg(uint8_t *out, uint8_t type, const void *body, size_t n)
{
    uint32_t len = (uint32_t)n + 4;
    out[0] = type;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    memcpy(out + 5, body, n);
    return n + 5;
}

static void write_all(int fd, const void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, (const char *)p + off, n - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, (char *)p + off, n - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
}

static void test_start_and_messages(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ing_copy *c = NULL;
    char err[256];
    assert_int_equal(ing_copy_new(&c, err, sizeof(err)), WH_OK);
    ing_copy_reset(c, sv[0]);
    /* the server's answer is there before the query: a notice, then
     * CopyBothResponse, then the first CopyData (read with the answer) */
    uint8_t out[256];
    size_t o = 0;
    o += msg(out + o, 'N', "SNOTICE\0Mhello\0\0", 16);
    o += msg(out + o, 'W', "\0\0\0", 3);
    o += msg(out + o, 'd', "w-first", 7);
    write_all(sv[1], out, o);
    assert_int_equal(ing_copy_start(c, "START_REPLICATION x", 5000, NULL, err, sizeof(err)), WH_OK);
    /* the query went out as a simple Query message */
    uint8_t q[5 + 20];
    read_all(sv[1], q, sizeof(q));
    assert_int_equal(q[0], 'Q');
    assert_int_equal(q[4], 4 + 20);
    assert_memory_equal(q + 5, "START_REPLICATION x", 20);

    const uint8_t *p = NULL;
    size_t n = 0;
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 1);
    assert_int_equal(n, 7);
    assert_memory_equal(p, "w-first", 7);
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 0);

    /* a message split across reads; a parameter status in between */
    o = 0;
    o += msg(out + o, 'S', "a\0b\0", 4);
    o += msg(out + o, 'd', "kabcdefgh", 9);
    write_all(sv[1], out, 7);
    assert_int_equal(ing_copy_fill(c, err, sizeof(err)), 0);
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 0);
    write_all(sv[1], out + 7, o - 7);
    assert_int_equal(ing_copy_fill(c, err, sizeof(err)), 0);
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 1);
    assert_int_equal(n, 9);
    assert_memory_equal(p, "kabcdefgh", 9);
    assert_int_equal(ing_copy_buffered(c), 0);
    /* nothing there: drained */
    assert_int_equal(ing_copy_fill(c, err, sizeof(err)), 0);

    /* the client's status update and CopyDone */
    assert_int_equal(ing_copy_put(c, "r123", 4, 1000, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_copy_end(c, 1000, err, sizeof(err)), WH_OK);
    uint8_t in[9 + 5];
    read_all(sv[1], in, sizeof(in));
    assert_int_equal(in[0], 'd');
    assert_int_equal(in[4], 8);
    assert_memory_equal(in + 5, "r123", 4);
    assert_int_equal(in[9], 'c');
    assert_int_equal(in[13], 4);

    /* the server ends the stream with an error */
    o = msg(out, 'E', "SERROR\0C55000\0Mreplication slot \"s\" is active\0\0", 47);
    write_all(sv[1], out, o);
    assert_int_equal(ing_copy_fill(c, err, sizeof(err)), 0);
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), -1);
    assert_non_null(
        strstr(err, "replication stream ended: ERROR:  replication slot \"s\" is active"));

    /* the peer closes */
    close(sv[1]);
    assert_int_equal(ing_copy_fill(c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "connection lost"));
    ing_copy_free(c);
    close(sv[0]);
}

static void test_start_error(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ing_copy *c = NULL;
    char err[256];
    assert_int_equal(ing_copy_new(&c, err, sizeof(err)), WH_OK);
    ing_copy_reset(c, sv[0]);
    uint8_t out[256];
    size_t o = msg(out, 'E', "SERROR\0C42704\0Mpublication \"p\" does not exist\0\0", 47);
    o += msg(out + o, 'Z', "I", 1);
    write_all(sv[1], out, o);
    assert_int_equal(ing_copy_start(c, "START_REPLICATION y", 5000, NULL, err, sizeof(err)),
                     WH_ERR);
    assert_string_equal(err, "ERROR:  publication \"p\" does not exist (SQLSTATE 42704)");
    ing_copy_free(c);
    close(sv[0]);
    close(sv[1]);
}

/* A walsender error that may quote a row's value (a publication row filter
 * failing on a row): severity and SQLSTATE only, never the message or the
 * detail; an error without SQLSTATE is withheld too. */
static void test_stream_error_withheld(void **state)
{
    (void)state;
    const struct {
        const char *body;
        size_t len;
        const char *want;
    } cases[] = {
        {"SERROR\0VERROR\0C22008\0Mdate out of range: 987654322-01-01\0Dkey (n)=(987654322)\0\0",
         79,
         "replication stream ended: ERROR:  SQLSTATE 22008 (message withheld: it may quote a "
         "value; see the PostgreSQL server log)"},
        {"SERROR\0Mvalue 987654322 bad\0\0", 29,
         "replication stream ended: ERROR:  message withheld (no SQLSTATE; it may quote a value: "
         "see the PostgreSQL server log)"},
        {"SFATAL\0C57P01\0Mterminating connection due to administrator command\0\0", 68,
         "replication stream ended: FATAL:  terminating connection due to administrator command "
         "(SQLSTATE 57P01)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        ing_copy *c = NULL;
        char err[512];
        assert_int_equal(ing_copy_new(&c, err, sizeof(err)), WH_OK);
        ing_copy_reset(c, sv[0]);
        uint8_t out[256];
        size_t o = msg(out, 'E', cases[i].body, cases[i].len);
        write_all(sv[1], out, o);
        const uint8_t *p;
        size_t n;
        assert_int_equal(ing_copy_fill(c, err, sizeof(err)), 0);
        assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), -1);
        assert_string_equal(err, cases[i].want);
        assert_null(strstr(err, "987654322"));
        ing_copy_free(c);
        close(sv[0]);
        close(sv[1]);
    }
}

/* Messages larger than the buffer, many in one go, and CopyDone. */
static void test_large_and_many(void **state)
{
    (void)state;
    ing_copy *c = NULL;
    char err[256];
    assert_int_equal(ing_copy_new(&c, err, sizeof(err)), WH_OK);
    size_t big = ING_COPY_BUF * 3 + 17;
    uint8_t *body = malloc(big + 5);
    assert_non_null(body);
    for (size_t i = 0; i < big; i++)
        body[i + 5] = (uint8_t)(i * 7);
    uint8_t hdr[5];
    uint32_t len = (uint32_t)big + 4;
    hdr[0] = 'd';
    hdr[1] = (uint8_t)(len >> 24);
    hdr[2] = (uint8_t)(len >> 16);
    hdr[3] = (uint8_t)(len >> 8);
    hdr[4] = (uint8_t)len;
    const uint8_t *p = NULL;
    size_t n = 0;
    for (int round = 0; round < 3; round++) {
        /* 1000 small messages, the big one fed in pieces, 1000 more */
        uint8_t small[16];
        for (int i = 0; i < 1000; i++) {
            uint8_t b[4] = {(uint8_t)i, (uint8_t)(i >> 8), 'x', 'y'};
            size_t o = msg(small, 'd', b, 4);
            assert_int_equal(ing_copy_feed(c, small, o), WH_OK);
        }
        for (int i = 0; i < 1000; i++) {
            assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 1);
            assert_int_equal(n, 4);
            assert_int_equal(p[0] | p[1] << 8, i);
        }
        assert_int_equal(ing_copy_feed(c, hdr, 5), WH_OK);
        for (size_t off = 0; off < big;) {
            size_t k = big - off < 100000 ? big - off : 100000;
            assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 0);
            assert_int_equal(ing_copy_feed(c, body + 5 + off, k), WH_OK);
            off += k;
        }
        assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), 1);
        assert_int_equal(n, big);
        assert_memory_equal(p, body + 5, big);
    }
    ing_copy_reset(c, -1); /* a new connection: the large buffer goes */
    assert_int_equal(ing_copy_buffered(c), 0);
    assert_int_equal(ing_copy_fill(c, err, sizeof(err)), -1);
    uint8_t done[5];
    size_t o = msg(done, 'c', "", 0);
    assert_int_equal(ing_copy_feed(c, done, o), WH_OK);
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), -1);
    assert_string_equal(err, "replication stream ended");
    /* a bad length */
    uint8_t bad[5] = {'d', 0, 0, 0, 2};
    assert_int_equal(ing_copy_feed(c, bad, 5), WH_OK);
    assert_int_equal(ing_copy_next(c, &p, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad message length"));
    free(body);
    ing_copy_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_and_messages),
        cmocka_unit_test(test_start_error),
        cmocka_unit_test(test_stream_error_withheld),
        cmocka_unit_test(test_large_and_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
