/* wh_check: verifies what a webhook receiver got against wh_loadgen's
 * expected change list, or a `walhook-store --dump` listing.
 *
 *   wh_check --expect FILE --received FILE [--received FILE2 ...] [--tenant T]
 *   wh_check --dump FILE (--expect FILE | --count N) [--tenant T]
 *
 * Received mode, for each received file independently (one file = one
 * target): every line is a JSON array of envelopes. Envelopes are
 * de-duplicated by "id" (a redelivered id must carry identical content); the
 * first arrivals must be in strictly increasing position (lsn, seq) order and,
 * one by one, equal the expected changes (op, table, before, after; numbers
 * compared numerically, strings exactly). Exit 0 when everything matches.
 *
 * Dump mode: lines "tenant lsn seq"; every position exactly once, in order,
 * seqs of each lsn contiguous from 0, total = the expected count.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

/* ---- position set: open addressing, (lsn, seq) -> content hash ---- */
typedef struct {
    uint64_t lsn;
    uint32_t seq;
    uint32_t used;
    uint64_t hash;
} slot_t;

typedef struct {
    slot_t *s;
    size_t cap, n;
} posset;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static slot_t *posset_find(posset *ps, uint64_t lsn, uint32_t seq, int insert)
{
    if (insert && (ps->n + 1) * 2 > ps->cap) {
        size_t ncap = ps->cap ? ps->cap * 2 : 4096;
        slot_t *ns = calloc(ncap, sizeof *ns);
        if (!ns) {
            fprintf(stderr, "wh_check: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < ps->cap; i++) {
            if (!ps->s[i].used)
                continue;
            size_t h = mix(ps->s[i].lsn * 31 + ps->s[i].seq) & (ncap - 1);
            while (ns[h].used)
                h = (h + 1) & (ncap - 1);
            ns[h] = ps->s[i];
        }
        free(ps->s);
        ps->s = ns;
        ps->cap = ncap;
    }
    if (!ps->cap)
        return NULL;
    size_t h = mix(lsn * 31 + seq) & (ps->cap - 1);
    while (ps->s[h].used) {
        if (ps->s[h].lsn == lsn && ps->s[h].seq == seq)
            return &ps->s[h];
        h = (h + 1) & (ps->cap - 1);
    }
    if (!insert)
        return NULL;
    ps->s[h].used = 1;
    ps->s[h].lsn = lsn;
    ps->s[h].seq = seq;
    ps->n++;
    return &ps->s[h];
}

/* ---- JSON helpers ---- */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t json_hash(const wh_json *j, uint64_t h)
{
    for (; j; j = j->next) {
        unsigned char t = (unsigned char)j->type;
        h = fnv(h, &t, 1);
        if (j->key)
            h = fnv(h, j->key, strlen(j->key) + 1);
        if (j->type == WH_JSON_STRING || j->type == WH_JSON_NUMBER)
            h = fnv(h, j->str, j->len + 1);
        if (j->type == WH_JSON_BOOL)
            h = fnv(h, &j->boolean, sizeof j->boolean);
        if (j->child)
            h = json_hash(j->child, h);
        h = fnv(h, "|", 1);
    }
    return h;
}

static void json_print(const wh_json *j, wh_buf *b)
{
    if (!j)
        wh_buf_puts(b, "(absent)");
    else
        wh_json_render(b, j);
}

/* Compares values; on mismatch writes the path of the first difference. */
static int json_equal(const wh_json *a, const wh_json *b, char *path, size_t plen)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case WH_JSON_NULL:
        return 1;
    case WH_JSON_BOOL:
        return a->boolean == b->boolean;
    case WH_JSON_NUMBER:
        return a->num == b->num || strcmp(a->str, b->str) == 0;
    case WH_JSON_STRING:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case WH_JSON_ARRAY: {
        if (a->count != b->count)
            return 0;
        const wh_json *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y, path, plen))
                return 0;
        return 1;
    }
    case WH_JSON_OBJECT: {
        size_t used = strlen(path);
        for (const wh_json *x = a->child; x; x = x->next) {
            snprintf(path + used, plen - used, ".%s", x->key);
            if (!json_equal(x, wh_json_get(b, x->key), path, plen))
                return 0;
        }
        for (const wh_json *y = b->child; y; y = y->next) {
            snprintf(path + used, plen - used, ".%s", y->key);
            if (!wh_json_get(a, y->key))
                return 0;
        }
        path[used] = '\0';
        return 1;
    }
    }
    return 0;
}

/* ---- expected stream ---- */
typedef struct {
    FILE *f;
    const char *name;
    char *line;
    size_t cap;
    long lineno;
} expect_rd;

/* Reads the next expected change; NULL at end of file. */
static wh_json *expect_next(expect_rd *e)
{
    for (;;) {
        ssize_t n = getline(&e->line, &e->cap, e->f);
        if (n < 0)
            return NULL;
        e->lineno++;
        while (n > 0 && (e->line[n - 1] == '\n' || e->line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        wh_json *j;
        char err[WH_ERRLEN];
        if (wh_json_parse(e->line, (size_t)n, &j, err, sizeof err) != WH_OK) {
            fprintf(stderr, "wh_check: %s:%ld: bad JSON: %s\n", e->name, e->lineno, err);
            exit(1);
        }
        return j;
    }
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "wh_check: cannot open %s\n", path);
        exit(1);
    }
    long n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, f)) >= 0)
        if (r > 1 || (r == 1 && line[0] != '\n'))
            n++;
    free(line);
    fclose(f);
    return n;
}

static void show(const char *label, const wh_json *j)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    json_print(j, &b);
    wh_buf_cstr(&b);
    fprintf(stderr, "  %s: %s\n", label, b.data ? b.data : "");
    wh_buf_free(&b);
}

/* ---- received mode ---- */
static int check_received(const char *expect_path, const char *recv_path, const char *tenant)
{
    expect_rd er = {.name = expect_path};
    er.f = fopen(expect_path, "r");
    if (!er.f) {
        fprintf(stderr, "wh_check: cannot open %s\n", expect_path);
        return 1;
    }
    FILE *rf = fopen(recv_path, "r");
    if (!rf) {
        fprintf(stderr, "wh_check: cannot open %s\n", recv_path);
        fclose(er.f);
        return 1;
    }
    posset ps = {0};
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, total = 0, uniq = 0, dups = 0, batches = 0;
    uint64_t last_lsn = 0;
    uint32_t last_seq = 0;
    int have_last = 0, failed = 0;
    ssize_t n;
    size_t tlen = strlen(tenant);
    while (!failed && (n = getline(&line, &cap, rf)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        wh_json *arr;
        char err[WH_ERRLEN];
        if (wh_json_parse(line, (size_t)n, &arr, err, sizeof err) != WH_OK) {
            fprintf(stderr, "FAIL %s:%ld: bad JSON: %s\n", recv_path, lineno, err);
            failed = 1;
            break;
        }
        if (arr->type != WH_JSON_ARRAY) {
            fprintf(stderr, "FAIL %s:%ld: a batch must be a JSON array\n", recv_path, lineno);
            wh_json_free(arr);
            failed = 1;
            break;
        }
        batches++;
        for (const wh_json *ev = arr->child; ev && !failed; ev = ev->next) {
            total++;
            const wh_json *id = wh_json_get(ev, "id"), *lsn = wh_json_get(ev, "lsn"),
                          *seq = wh_json_get(ev, "seq"), *ten = wh_json_get(ev, "tenant");
            uint64_t l;
            if (!id || id->type != WH_JSON_STRING || !lsn || lsn->type != WH_JSON_STRING ||
                wh_lsn_parse(lsn->str, &l) != WH_OK || !seq || seq->type != WH_JSON_NUMBER ||
                seq->num < 0 || seq->num > 4294967295.0 || !ten || ten->type != WH_JSON_STRING) {
                fprintf(stderr, "FAIL %s:%ld: event %ld lacks a valid id/lsn/seq/tenant\n",
                        recv_path, lineno, total);
                show("event", ev);
                failed = 1;
                break;
            }
            uint32_t s = (uint32_t)seq->num;
            char want_id[256];
            wh_event_id(tenant, l, s, want_id, sizeof want_id);
            if (strcmp(ten->str, tenant) != 0 || strcmp(id->str, want_id) != 0 ||
                strncmp(id->str, tenant, tlen) != 0) {
                fprintf(stderr, "FAIL %s:%ld: id '%s' / tenant '%s' do not match '%s'\n", recv_path,
                        lineno, id->str, ten->str, want_id);
                failed = 1;
                break;
            }
            uint64_t h = json_hash(ev->child, 1469598103934665603ULL);
            slot_t *sl = posset_find(&ps, l, s, 0);
            if (sl) {
                dups++;
                if (sl->hash != h) {
                    fprintf(stderr, "FAIL %s:%ld: redelivered %s differs from its first delivery\n",
                            recv_path, lineno, id->str);
                    show("redelivery", ev);
                    failed = 1;
                }
                continue;
            }
            if (have_last && wh_pos_cmp(l, s, last_lsn, last_seq) <= 0) {
                char lb[WH_LSN_STRLEN];
                wh_lsn_format(last_lsn, lb, sizeof lb);
                fprintf(stderr,
                        "FAIL %s:%ld: out of order: new id %s arrived after %s:%" PRIu32
                        " (unique event #%ld)\n",
                        recv_path, lineno, id->str, lb, last_seq, uniq + 1);
                failed = 1;
                break;
            }
            sl = posset_find(&ps, l, s, 1);
            sl->hash = h;
            last_lsn = l;
            last_seq = s;
            have_last = 1;
            /* schema and ddl events (the schema registry's) are no changes:
             * in order and never twice, as every event, and not expected */
            const wh_json *op = wh_json_get(ev, "op");
            if (op && op->type == WH_JSON_STRING &&
                (strcmp(op->str, "schema") == 0 || strcmp(op->str, "ddl") == 0))
                continue;
            uniq++;
            wh_json *exp = expect_next(&er);
            if (!exp) {
                fprintf(stderr, "FAIL %s:%ld: unexpected extra event #%ld: %s\n", recv_path, lineno,
                        uniq, id->str);
                show("received", ev);
                failed = 1;
                break;
            }
            static const char *fields[] = {"op", "table", "before", "after"};
            for (size_t k = 0; k < WH_ARRAY_LEN(fields); k++) {
                char path[512];
                snprintf(path, sizeof path, "%s", fields[k]);
                const wh_json *a = wh_json_get(exp, fields[k]), *b = wh_json_get(ev, fields[k]);
                if (!json_equal(a, b, path, sizeof path)) {
                    fprintf(stderr,
                            "FAIL %s:%ld: change #%ld (id %s, expected line %ld) differs at '%s'\n",
                            recv_path, lineno, uniq, id->str, er.lineno, path);
                    show("expected", exp);
                    show("received", ev);
                    failed = 1;
                    break;
                }
            }
            wh_json_free(exp);
        }
        wh_json_free(arr);
    }
    if (!failed) {
        wh_json *more = expect_next(&er);
        if (more) {
            long missing = count_lines(expect_path) - uniq;
            fprintf(stderr,
                    "FAIL %s: %ld expected change(s) never arrived; first missing is "
                    "expected line %ld\n",
                    recv_path, missing, er.lineno);
            show("expected", more);
            wh_json_free(more);
            failed = 1;
        }
    }
    printf("%s: %s: %ld batches, %ld events received, %ld unique, %ld duplicates\n",
           failed ? "FAIL" : "ok", recv_path, batches, total, uniq, dups);
    free(line);
    free(er.line);
    free(ps.s);
    fclose(rf);
    fclose(er.f);
    return failed;
}

/* ---- dump mode ---- */
static int check_dump(const char *dump_path, long expected, const char *tenant)
{
    FILE *f = fopen(dump_path, "r");
    if (!f) {
        fprintf(stderr, "wh_check: cannot open %s\n", dump_path);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, total = 0, txns = 0;
    uint64_t last_lsn = 0;
    uint32_t last_seq = 0;
    int have_last = 0, failed = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char t[128], lsn[64], mark[16] = "";
        unsigned long long seq;
        if (line[0] == '\n')
            continue;
        if (sscanf(line, "%127s %63s %llu %15s", t, lsn, &seq, mark) < 3) {
            fprintf(stderr, "FAIL %s:%ld: cannot parse '%s'\n", dump_path, lineno, line);
            failed = 1;
            break;
        }
        if (strcmp(t, tenant) != 0)
            continue;
        uint64_t l;
        if (wh_lsn_parse(lsn, &l) != WH_OK || seq > UINT32_MAX) {
            fprintf(stderr, "FAIL %s:%ld: bad position '%s %llu'\n", dump_path, lineno, lsn, seq);
            failed = 1;
            break;
        }
        uint32_t s = (uint32_t)seq;
        if (have_last && wh_pos_cmp(l, s, last_lsn, last_seq) == 0) {
            fprintf(stderr, "FAIL %s:%ld: position %s %u stored twice\n", dump_path, lineno, lsn,
                    s);
            failed = 1;
            break;
        }
        if (have_last && wh_pos_cmp(l, s, last_lsn, last_seq) < 0) {
            fprintf(stderr, "FAIL %s:%ld: position %s %u out of order\n", dump_path, lineno, lsn,
                    s);
            failed = 1;
            break;
        }
        if (!have_last || l != last_lsn) {
            txns++;
            if (s != 0) {
                fprintf(stderr, "FAIL %s:%ld: transaction %s starts at seq %u, not 0 (gap)\n",
                        dump_path, lineno, lsn, s);
                failed = 1;
                break;
            }
        } else if (s != last_seq + 1) {
            fprintf(stderr, "FAIL %s:%ld: gap in transaction %s: seq %u after %u\n", dump_path,
                    lineno, lsn, s, last_seq);
            failed = 1;
            break;
        }
        last_lsn = l;
        last_seq = s;
        have_last = 1;
        if (mark[0] == '\0') /* schema and ddl events are no changes */
            total++;
    }
    if (!failed && expected >= 0 && total != expected) {
        fprintf(stderr, "FAIL %s: %ld events stored for tenant %s, expected %ld\n", dump_path,
                total, tenant, expected);
        failed = 1;
    }
    printf("%s: %s: %ld events in %ld transactions\n", failed ? "FAIL" : "ok", dump_path, total,
           txns);
    free(line);
    fclose(f);
    return failed;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: wh_check --expect FILE --received FILE [--received FILE2 ...] [--tenant T]\n"
            "       wh_check --dump FILE (--expect FILE | --count N) [--tenant T]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *expect = NULL, *dump = NULL, *tenant = "default";
    const char *recv[16];
    int nrecv = 0;
    long count = -1;
    static const struct option opts[] = {{"expect", required_argument, 0, 'e'},
                                         {"received", required_argument, 0, 'r'},
                                         {"tenant", required_argument, 0, 't'},
                                         {"dump", required_argument, 0, 'd'},
                                         {"count", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'e':
            expect = optarg;
            break;
        case 'r':
            if (nrecv == (int)WH_ARRAY_LEN(recv))
                usage();
            recv[nrecv++] = optarg;
            break;
        case 't':
            tenant = optarg;
            break;
        case 'd':
            dump = optarg;
            break;
        case 'n':
            count = atol(optarg);
            break;
        default:
            usage();
        }
    }
    if (dump) {
        if (!expect && count < 0)
            usage();
        if (count < 0)
            count = count_lines(expect);
        return check_dump(dump, count, tenant) ? 1 : 0;
    }
    if (!expect || nrecv == 0)
        usage();
    int failed = 0;
    for (int i = 0; i < nrecv; i++)
        failed |= check_received(expect, recv[i], tenant);
    return failed ? 1 : 0;
}
