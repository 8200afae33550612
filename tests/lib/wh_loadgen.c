/* wh_loadgen: deterministic change generator for integration tests.
 *
 *   wh_loadgen --dsn DSN --changes N --seed S [--max-txn 500] [--tables 3]
 *              --expect FILE [--setup-only] [--txn-pause-ms N]
 *
 * Creates tables t1..tK (id bigint primary key, i int, f float8, t text,
 * b bool, n numeric) with REPLICA IDENTITY FULL. Unless --setup-only, makes N
 * row changes (insert/update/delete mixed) in transactions of 1..max-txn rows
 * over one connection, so commit order is program order, and writes the
 * expected change stream to FILE, one JSON object per line:
 *   {"op":"update","table":"t2","before":{...},"after":{...}}
 * One change is always one row. Each transaction is sent as one multi-statement
 * simple query (consecutive inserts into one table become one multi-row
 * INSERT, which PostgreSQL decodes row by row in VALUES order).
 * --txn-pause-ms N sleeps N ms after each transaction (a stream that lasts,
 * for tests that change things while it runs).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_util.h"

typedef struct {
    int alive;
    size_t live_pos; /* index in the table's live array */
    int32_t i;
    double f;
    char t[160];
    int t_null;
    int b; /* 0, 1, or -1 = NULL */
    char n[48];
    int n_null;
} row_t;

typedef struct {
    char name[16];
    row_t *rows; /* indexed by id; id 0 unused */
    size_t nrows, caprows;
    int64_t *live; /* ids of live rows */
    size_t nlive, caplive;
} table_t;

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return n ? rng_next() % n : 0;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "wh_loadgen: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        die("%s", "out of memory");
    return q;
}

static void random_row(row_t *r)
{
    r->i = (int32_t)(uint32_t)rng_next();
    if (rng_below(10) == 0)
        r->i = (int32_t)rng_below(100);
    /* floats exactly representable, some with exponents */
    int64_t m = (int64_t)rng_below(2000001) - 1000000;
    int e = (int)rng_below(61) - 30;
    r->f = (double)m / 8.0;
    if (rng_below(4) == 0)
        r->f = (double)m * (e >= 0 ? (double)(1ULL << e) : 1.0 / (double)(1ULL << -e));
    /* text: ASCII plus characters that need escaping and multibyte UTF-8 */
    static const char *pieces[] = {"a",
                                   "b",
                                   "z",
                                   "Q",
                                   "0",
                                   "9",
                                   " ",
                                   "'",
                                   "\"",
                                   "\\",
                                   "\n",
                                   "\t",
                                   "/",
                                   "{",
                                   "}",
                                   "\xc3\xa9",
                                   "\xe2\x82\xac",
                                   "\xf0\x9f\x98\x80",
                                   "\x01",
                                   "<",
                                   "&",
                                   "%",
                                   ","};
    r->t_null = rng_below(12) == 0;
    size_t tl = 0;
    size_t want = rng_below(30);
    r->t[0] = '\0';
    for (size_t k = 0; k < want; k++) {
        const char *pc = pieces[rng_below(WH_ARRAY_LEN(pieces))];
        size_t pl = strlen(pc);
        if (tl + pl + 1 > sizeof r->t)
            break;
        memcpy(r->t + tl, pc, pl);
        tl += pl;
        r->t[tl] = '\0';
    }
    uint64_t bv = rng_below(5);
    r->b = bv == 0 ? -1 : (int)(bv & 1);
    r->n_null = rng_below(15) == 0;
    int64_t c = (int64_t)rng_below(2000000001) - 1000000000;
    int scale = (int)rng_below(5); /* 0..4 decimals */
    int64_t pow10 = 1;
    for (int k = 0; k < scale; k++)
        pow10 *= 10;
    uint64_t a = (uint64_t)(c < 0 ? -c : c);
    if (scale == 0)
        snprintf(r->n, sizeof r->n, "%s%" PRIu64, c < 0 ? "-" : "", a);
    else
        snprintf(r->n, sizeof r->n, "%s%" PRIu64 ".%0*" PRIu64, c < 0 ? "-" : "",
                 a / (uint64_t)pow10, scale, a % (uint64_t)pow10);
    if (c == 0)
        snprintf(r->n, sizeof r->n, scale ? "0.%0*d" : "0", scale, 0);
}

/* SQL literal: standard_conforming_strings is on, so only ' needs doubling. */
static void sql_lit(wh_buf *b, const char *s)
{
    wh_buf_putc(b, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            wh_buf_putc(b, '\'');
        wh_buf_putc(b, *s);
    }
    wh_buf_putc(b, '\'');
}

static void sql_values(wh_buf *b, int64_t id, const row_t *r)
{
    wh_buf_printf(b, "(%" PRId64 ",%" PRId32 ",%.17g,", id, r->i, r->f);
    if (r->t_null)
        wh_buf_puts(b, "NULL");
    else
        sql_lit(b, r->t);
    wh_buf_printf(b, ",%s,%s)",
                  r->b < 0 ? "NULL"
                  : r->b   ? "true"
                           : "false",
                  r->n_null ? "NULL" : r->n);
}

static void sql_set(wh_buf *b, const row_t *r)
{
    wh_buf_printf(b, "i=%" PRId32 ",f=%.17g,t=", r->i, r->f);
    if (r->t_null)
        wh_buf_puts(b, "NULL");
    else
        sql_lit(b, r->t);
    wh_buf_printf(b, ",b=%s,n=%s",
                  r->b < 0 ? "NULL"
                  : r->b   ? "true"
                           : "false",
                  r->n_null ? "NULL" : r->n);
}

static void json_row(wh_buf *b, int64_t id, const row_t *r)
{
    wh_buf_printf(b, "{\"id\":%" PRId64 ",\"i\":%" PRId32 ",\"f\":%.17g,\"t\":", id, r->i, r->f);
    if (r->t_null)
        wh_buf_puts(b, "null");
    else
        wh_json_str(b, r->t, strlen(r->t));
    wh_buf_printf(b, ",\"b\":%s,\"n\":", r->b < 0 ? "null" : r->b ? "true" : "false");
    if (r->n_null)
        wh_buf_puts(b, "null");
    else
        wh_buf_printf(b, "\"%s\"", r->n);
    wh_buf_putc(b, '}');
}

static void exec_ok(PGconn *c, const char *sql, const char *what)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "wh_loadgen: %s failed: %s", what, PQerrorMessage(c));
        PQclear(res);
        exit(1);
    }
    PQclear(res);
}

static void usage(void)
{
    fprintf(stderr, "usage: wh_loadgen --dsn DSN --changes N --seed S [--max-txn 500] "
                    "[--tables 3] --expect FILE [--setup-only] [--txn-pause-ms N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dsn = NULL, *expect = NULL;
    long long nchanges = -1, seed = 1, max_txn = 500, ntables = 3, pause_ms = 0;
    int setup_only = 0;
    static const struct option opts[] = {
        {"dsn", required_argument, 0, 'd'},    {"changes", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},   {"max-txn", required_argument, 0, 'm'},
        {"tables", required_argument, 0, 't'}, {"expect", required_argument, 0, 'e'},
        {"setup-only", no_argument, 0, 'S'},   {"txn-pause-ms", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            dsn = optarg;
            break;
        case 'n':
            nchanges = atoll(optarg);
            break;
        case 's':
            seed = atoll(optarg);
            break;
        case 'm':
            max_txn = atoll(optarg);
            break;
        case 't':
            ntables = atoll(optarg);
            break;
        case 'e':
            expect = optarg;
            break;
        case 'S':
            setup_only = 1;
            break;
        case 'p':
            pause_ms = atoll(optarg);
            break;
        default:
            usage();
        }
    }
    if (!dsn || ntables < 1 || ntables > 100 || max_txn < 1 ||
        (!setup_only && (nchanges < 0 || !expect)))
        usage();

    PGconn *conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "wh_loadgen: connection failed: %s", PQerrorMessage(conn));
        return 1;
    }
    exec_ok(conn, "SET client_min_messages = warning", "set");
    exec_ok(conn, "SET extra_float_digits = 3", "set");

    table_t *tabs = calloc((size_t)ntables, sizeof *tabs);
    wh_buf sql;
    wh_buf_init(&sql, 0);
    for (long long k = 0; k < ntables; k++) {
        snprintf(tabs[k].name, sizeof tabs[k].name, "t%d", (int)(k + 1) % 1000000);
        wh_buf_reset(&sql);
        wh_buf_printf(&sql,
                      "CREATE TABLE IF NOT EXISTS %s (id bigint PRIMARY KEY, i int, f float8, "
                      "t text, b bool, n numeric); ALTER TABLE %s REPLICA IDENTITY FULL",
                      tabs[k].name, tabs[k].name);
        wh_buf_cstr(&sql);
        exec_ok(conn, sql.data, "create table");
    }
    if (setup_only) {
        wh_buf_free(&sql);
        free(tabs);
        PQfinish(conn);
        return 0;
    }
    for (long long k = 0; k < ntables; k++) {
        char q[64];
        snprintf(q, sizeof q, "SELECT 1 FROM %s LIMIT 1", tabs[k].name);
        PGresult *res = PQexec(conn, q);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 0)
            die("table %s is not empty (the generator starts from empty tables)", tabs[k].name);
        PQclear(res);
    }

    FILE *ef = fopen(expect, "w");
    if (!ef)
        die("cannot open %s", expect);
    rng_state = (uint64_t)seed * 0x2545F4914F6CDD1DULL + 1;

    wh_buf exp;
    wh_buf_init(&exp, 0);
    long long done = 0, ntx = 0;
    uint64_t t0 = wh_now_ms();
    while (done < nchanges) {
        long long txn = 1 + (long long)rng_below((uint64_t)max_txn);
        if (txn > nchanges - done)
            txn = nchanges - done;
        wh_buf_reset(&sql);
        wh_buf_reset(&exp);
        wh_buf_puts(&sql, "BEGIN;");
        int open_insert = -1; /* table index of an unterminated INSERT */
        for (long long c = 0; c < txn; c++) {
            int ti = (int)rng_below((uint64_t)ntables);
            table_t *tb = &tabs[ti];
            uint64_t r = rng_below(100);
            int op = tb->nlive == 0 || r < 50 ? 0 : r < 80 ? 1 : 2; /* ins/upd/del */
            if (open_insert >= 0 && (op != 0 || open_insert != ti)) {
                wh_buf_putc(&sql, ';');
                open_insert = -1;
            }
            if (op == 0) {
                if (tb->nrows + 1 >= tb->caprows) {
                    tb->caprows = tb->caprows ? tb->caprows * 2 : 1024;
                    tb->rows = xrealloc(tb->rows, tb->caprows * sizeof(row_t));
                }
                if (tb->nrows == 0)
                    tb->nrows = 1; /* id 0 unused */
                int64_t id = (int64_t)tb->nrows++;
                row_t *row = &tb->rows[id];
                memset(row, 0, sizeof *row);
                random_row(row);
                row->alive = 1;
                if (tb->nlive == tb->caplive) {
                    tb->caplive = tb->caplive ? tb->caplive * 2 : 1024;
                    tb->live = xrealloc(tb->live, tb->caplive * sizeof(int64_t));
                }
                row->live_pos = tb->nlive;
                tb->live[tb->nlive++] = id;
                if (open_insert == ti) {
                    wh_buf_putc(&sql, ',');
                } else {
                    wh_buf_printf(&sql, "INSERT INTO %s VALUES ", tb->name);
                    open_insert = ti;
                }
                sql_values(&sql, id, row);
                wh_buf_printf(
                    &exp,
                    "{\"op\":\"insert\",\"table\":\"%s\",\"before\":null,\"after\":", tb->name);
                json_row(&exp, id, row);
                wh_buf_puts(&exp, "}\n");
            } else {
                int64_t id = tb->live[rng_below(tb->nlive)];
                row_t *row = &tb->rows[id];
                wh_buf_printf(&exp, "{\"op\":\"%s\",\"table\":\"%s\",\"before\":",
                              op == 1 ? "update" : "delete", tb->name);
                json_row(&exp, id, row);
                wh_buf_puts(&exp, ",\"after\":");
                if (op == 1) {
                    row_t nr;
                    memset(&nr, 0, sizeof nr);
                    random_row(&nr);
                    nr.alive = 1;
                    nr.live_pos = row->live_pos;
                    *row = nr;
                    wh_buf_printf(&sql, "UPDATE %s SET ", tb->name);
                    sql_set(&sql, row);
                    wh_buf_printf(&sql, " WHERE id=%" PRId64 ";", id);
                    json_row(&exp, id, row);
                } else {
                    wh_buf_printf(&sql, "DELETE FROM %s WHERE id=%" PRId64 ";", tb->name, id);
                    wh_buf_puts(&exp, "null");
                    size_t pos = row->live_pos;
                    int64_t last = tb->live[--tb->nlive];
                    tb->live[pos] = last;
                    tb->rows[last].live_pos = pos;
                    row->alive = 0;
                }
                wh_buf_puts(&exp, "}\n");
            }
        }
        if (open_insert >= 0)
            wh_buf_putc(&sql, ';');
        wh_buf_puts(&sql, "COMMIT;");
        if (wh_buf_cstr(&sql) != WH_OK)
            die("%s", "out of memory");
        exec_ok(conn, sql.data, "transaction");
        /* the transaction committed: its changes are now expected */
        if (fwrite(exp.data, 1, exp.len, ef) != exp.len)
            die("write to %s failed", expect);
        done += txn;
        ntx++;
        if (pause_ms > 0)
            wh_sleep_ms((int)pause_ms);
    }
    if (fclose(ef) != 0)
        die("write to %s failed", expect);
    fprintf(stderr, "wh_loadgen: %lld changes in %lld transactions over %lld tables in %.1f s\n",
            done, ntx, ntables, (double)(wh_now_ms() - t0) / 1000.0);
    wh_buf_free(&sql);
    wh_buf_free(&exp);
    for (long long k = 0; k < ntables; k++) {
        free(tabs[k].rows);
        free(tabs[k].live);
    }
    free(tabs);
    PQfinish(conn);
    return 0;
}
