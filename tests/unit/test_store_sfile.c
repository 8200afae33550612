/* Unit tests of st_sfile, the store's staging files, on real files in a
 * temporary directory: file names and their parse, the record format the
 * header documents (checked against an encoder of this file's own), appends
 * read back in order and out of order through the reader's 256 KiB buffer
 * (records across its edges, one larger than it, zero-length ones), appends
 * that accumulate or truncate, torn and damaged tails found by the reader
 * and cut by st_sfile_trim, missing files, removal, and errors naming the
 * file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../services/store/st_crc32c.h"
#include "../../services/store/st_sfile.h"
#include "stdb_fixture.h"

#define KIB 1024u
#define RB ST_SFILE_READ_BYTES

typedef struct sfx {
    char tmp[128];
    char dir[160]; /* tmp/staging: the staging directory */
} sfx;

static int setup(void **state)
{
    sfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    stdb_fx_mkdtemp(f->tmp, sizeof(f->tmp), "test_store_sfile");
    snprintf(f->dir, sizeof(f->dir), "%s/staging", f->tmp);
    char err[WH_ERRLEN];
    if (st_sfile_dir_make(f->dir, err, sizeof(err)) != WH_OK)
        fail_msg("dir_make: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    sfx *f = *state;
    wh_test_rmtree(f->tmp);
    free(f);
    return 0;
}

/* ---- records the tests append, and what they must read back ---- */

typedef struct recs {
    st_staged *ev;
    size_t n, cap;
} recs;

static uint64_t rnd_state = 88172645463325252u;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Adds a record of idx and subxid. json: its bytes (copied), or NULL with
 * len > 0: len pseudo-random bytes (any byte, NUL too); NULL with len 0: a
 * record without json (json NULL). */
static void recs_add(recs *rs, uint32_t idx, uint32_t subxid, const char *json, size_t len)
{
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 16;
        rs->ev = realloc(rs->ev, rs->cap * sizeof(*rs->ev));
        assert_non_null(rs->ev);
    }
    char *b = NULL;
    if (json != NULL || len > 0) {
        b = malloc(len + 1);
        assert_non_null(b);
        if (json != NULL)
            memcpy(b, json, len);
        else
            for (size_t i = 0; i < len; i++)
                b[i] = (char)(rnd() >> 24);
    }
    rs->ev[rs->n++] = (st_staged){.idx = idx, .subxid = subxid, .json = b, .json_len = len};
}

static void recs_free(recs *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free((void *)rs->ev[i].json);
    free(rs->ev);
    memset(rs, 0, sizeof(*rs));
}

/* the bytes record i takes in the file */
static uint64_t rec_bytes(const st_staged *e)
{
    return ST_SFILE_HDR + (e->json != NULL ? e->json_len : 0);
}

/* the offset of record i when records [0, n) are the file's */
static uint64_t recs_off(const recs *rs, size_t i)
{
    uint64_t off = 0;
    for (size_t j = 0; j < i; j++)
        off += rec_bytes(&rs->ev[j]);
    return off;
}

/* ---- files ---- */

static void path_of(const sfx *f, uint32_t cf, uint64_t gen, char *p, size_t n)
{
    char name[ST_SFILE_NAME_MAX];
    st_sfile_name(name, cf, gen);
    snprintf(p, n, "%s/%s", f->dir, name);
}

/* the size of (cf, gen)'s file; -1: there is none */
static int64_t fsize(const sfx *f, uint32_t cf, uint64_t gen)
{
    char p[512];
    path_of(f, cf, gen, p, sizeof(p));
    struct stat st;
    if (stat(p, &st) != 0) {
        assert_int_equal(errno, ENOENT);
        return -1;
    }
    return (int64_t)st.st_size;
}

static void append(const sfx *f, uint32_t cf, uint64_t gen, int truncate, const st_staged *ev,
                   size_t n)
{
    char err[WH_ERRLEN] = "";
    int torn = -1;
    if (st_sfile_append(f->dir, cf, gen, truncate, ev, n, &torn, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
    assert_int_equal(torn, 0);
}

/* writes b[0, n) at the end of (cf, gen)'s file beside st_sfile (a torn
 * append, garbage) */
static void raw_append(const sfx *f, uint32_t cf, uint64_t gen, const void *b, size_t n)
{
    char p[512];
    path_of(f, cf, gen, p, sizeof(p));
    int fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    close(fd);
}

/* flips the bits of mask in the byte at off of (cf, gen)'s file */
static void flip(const sfx *f, uint32_t cf, uint64_t gen, uint64_t off, unsigned char mask)
{
    char p[512];
    path_of(f, cf, gen, p, sizeof(p));
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= mask;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

static void read_file_bytes(const sfx *f, uint32_t cf, uint64_t gen, unsigned char *b, size_t n)
{
    char p[512];
    path_of(f, cf, gen, p, sizeof(p));
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, b, n), (ssize_t)n);
    close(fd);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* The record st_sfile.h documents, encoded here on its own: crc(4)
 * json_len(4) idx(4) subxid(4) json, big-endian, crc the CRC32C of the 12
 * header bytes after it and the json. Into b (ST_SFILE_HDR + len bytes). */
static size_t enc_rec(unsigned char *b, uint32_t idx, uint32_t subxid, const void *json, size_t len)
{
    put32(b + 4, (uint32_t)len);
    put32(b + 8, idx);
    put32(b + 12, subxid);
    if (len > 0)
        memcpy(b + ST_SFILE_HDR, json, len);
    put32(b, st_crc32c_extend(st_crc32c_extend(0, b + 4, 12), b + ST_SFILE_HDR, len));
    return ST_SFILE_HDR + len;
}

/* ---- reading ---- */

static void open_rd(const sfx *f, st_sfile_rd *r, uint32_t cf, uint64_t gen, int want_missing)
{
    char err[WH_ERRLEN] = "";
    int missing = -1;
    if (st_sfile_rd_open(r, f->dir, cf, gen, &missing, err, sizeof(err)) != WH_OK)
        fail_msg("rd_open: %s", err);
    assert_int_equal(missing, want_missing);
}

/* the record at off; 0: *end */
static int rd(st_sfile_rd *r, uint64_t off, st_sfile_rec *rec)
{
    char err[WH_ERRLEN] = "";
    int end = -1;
    memset(rec, 0, sizeof(*rec));
    if (st_sfile_rd_at(r, off, rec, &end, err, sizeof(err)) != WH_OK)
        fail_msg("rd_at %llu: %s", (unsigned long long)off, err);
    assert_true(end == 0 || end == 1);
    return !end;
}

/* rec is e, found at off */
static void check_rec(const st_sfile_rec *rec, const st_staged *e, uint64_t off)
{
    size_t len = e->json != NULL ? e->json_len : 0;
    assert_int_equal(rec->idx, e->idx);
    assert_int_equal(rec->subxid, e->subxid);
    assert_int_equal(rec->json_len, len);
    if (len > 0) {
        assert_non_null(rec->json);
        assert_memory_equal(rec->json, e->json, len);
    }
    assert_int_equal(rec->next, off + ST_SFILE_HDR + len);
}

static void expect_at(st_sfile_rd *r, uint64_t off, const st_staged *e)
{
    st_sfile_rec rec;
    if (!rd(r, off, &rec))
        fail_msg("end at %llu: record idx %u expected", (unsigned long long)off, e->idx);
    check_rec(&rec, e, off);
}

static void expect_end(st_sfile_rd *r, uint64_t off)
{
    st_sfile_rec rec;
    if (rd(r, off, &rec))
        fail_msg("a record (idx %u, %zu bytes) at %llu: the end expected", rec.idx, rec.json_len,
                 (unsigned long long)off);
}

/* Reads (cf, gen)'s file from offset 0 following rec.next: the records of
 * rs in order, then the end, at end_off (the file's size, or where a torn
 * tail starts). */
static void expect_file(const sfx *f, uint32_t cf, uint64_t gen, const recs *rs, uint64_t end_off)
{
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    open_rd(f, &r, cf, gen, 0);
    uint64_t off = 0;
    for (size_t i = 0; i < rs->n; i++) {
        st_sfile_rec rec;
        if (!rd(&r, off, &rec))
            fail_msg("end at %llu: record %zu of %zu expected", (unsigned long long)off, i, rs->n);
        check_rec(&rec, &rs->ev[i], off);
        off = rec.next;
    }
    assert_int_equal(off, end_off);
    expect_end(&r, off);
    st_sfile_rd_close(&r);
    assert_int_equal(r.fd, -1);
}

/* st_sfile_trim that must refuse: damage (a whole-length record with a
 * bad checksum and other bytes), nothing cut, the error naming it */
static void trim_refused(const sfx *f, uint32_t cf, uint64_t gen)
{
    char err[WH_ERRLEN] = "";
    uint64_t cut = 12345;
    assert_int_equal(st_sfile_trim(f->dir, cf, gen, &cut, NULL, err, sizeof(err)), WH_ERR);
    assert_int_equal(cut, 0);
    assert_non_null(strstr(err, "damaged record at offset"));
}

static uint64_t trim(const sfx *f, uint32_t cf, uint64_t gen)
{
    char err[WH_ERRLEN] = "";
    uint64_t cut = 12345;
    if (st_sfile_trim(f->dir, cf, gen, &cut, NULL, err, sizeof(err)) != WH_OK)
        fail_msg("trim: %s", err);
    return cut;
}

/* ---- 1. names ---- */

static void test_name_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint32_t cf;
        uint64_t gen;
        const char *name;
    } t[] = {
        {0, 0, "0-0000000000000000"},
        {1, 1, "1-0000000000000001"},
        {42, 0x0123456789abcdefu, "42-0123456789abcdef"},
        {4000000000u, 0xfedcba9876543210u, "4000000000-fedcba9876543210"},
        {UINT32_MAX, UINT64_MAX, "4294967295-ffffffffffffffff"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char name[ST_SFILE_NAME_MAX];
        st_sfile_name(name, t[i].cf, t[i].gen);
        assert_string_equal(name, t[i].name);
        uint32_t cf = 7;
        uint64_t gen = 7;
        assert_int_equal(st_sfile_parse_name(name, &cf, &gen), WH_OK);
        assert_int_equal(cf, t[i].cf);
        assert_true(gen == t[i].gen);
    }
    /* pseudo-random ones */
    for (int i = 0; i < 1000; i++) {
        uint32_t cf0 = (uint32_t)rnd() >> (i % 32);
        uint64_t gen0 = rnd() >> (i % 64);
        char name[ST_SFILE_NAME_MAX];
        st_sfile_name(name, cf0, gen0);
        uint32_t cf;
        uint64_t gen;
        assert_int_equal(st_sfile_parse_name(name, &cf, &gen), WH_OK);
        assert_int_equal(cf, cf0);
        assert_true(gen == gen0);
    }
}

static void test_parse_rejects(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "-",
        "42",                           /* no dash */
        "420123456789abcdef",           /* no dash */
        "-0123456789abcdef",            /* empty cf */
        "42-",                          /* empty gen */
        "42-0123456789abcdeg",          /* gen not hex */
        "42-0123456789abcde ",          /* gen not hex */
        "42-0123456789ABCDEF",          /* not as st_sfile_name writes it */
        "42-0x23456789abcdef",          /* gen not hex */
        "42-123",                       /* gen not 16 digits */
        "42-0123456789abcde",           /* 15 */
        "42-00123456789abcdef",         /* 17 */
        "42-0123456789abcdef.tmp",      /* more after it */
        "42-0123456789abcdef-1",        /* a second dash */
        "42--123456789abcdef",          /* gen's first digit a dash */
        "4294967296-0123456789abcdef",  /* cf > UINT32_MAX */
        "9999999999-0123456789abcdef",  /* cf > UINT32_MAX */
        "42949672950-0123456789abcdef", /* cf of 11 digits */
        "4a-0123456789abcdef",          /* cf not decimal */
        "+42-0123456789abcdef",         /* cf not decimal */
        " 42-0123456789abcdef",         /* cf not decimal */
        "LOCK",
        ".",
        "..",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t cf = 0;
        uint64_t gen = 0;
        if (st_sfile_parse_name(bad[i], &cf, &gen) != WH_ERR)
            fail_msg("\"%s\" parsed (cf %u gen %llx)", bad[i], cf, (unsigned long long)gen);
    }
}

/* ---- 2. append and read back ---- */

/* The on-disk bytes are the documented format: the file equals the records
 * encoded by enc_rec, one after another. */
static void test_format_bytes(void **state)
{
    sfx *f = *state;
    recs rs = {0};
    recs_add(&rs, 0, 700, "{\"a\":1}", 7);
    recs_add(&rs, 1, 701, NULL, 0);
    recs_add(&rs, 2, 702, "", 0);
    recs_add(&rs, 0x01020304u, 0xa0b0c0d0u, NULL, 1000);
    append(f, 3, 9, 0, rs.ev, rs.n);
    size_t n = (size_t)recs_off(&rs, rs.n);
    assert_int_equal(fsize(f, 3, 9), (int64_t)n);
    unsigned char *want = malloc(n), *got = malloc(n);
    assert_non_null(want);
    assert_non_null(got);
    size_t at = 0;
    for (size_t i = 0; i < rs.n; i++)
        at += enc_rec(want + at, rs.ev[i].idx, rs.ev[i].subxid, rs.ev[i].json,
                      rs.ev[i].json != NULL ? rs.ev[i].json_len : 0);
    assert_int_equal(at, n);
    read_file_bytes(f, 3, 9, got, n);
    assert_memory_equal(got, want, n);
    /* the fourth record's header, big-endian */
    const unsigned char *h = got + recs_off(&rs, 3);
    static const unsigned char hdr[12] = {0, 0, 0x03, 0xe8, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0};
    assert_memory_equal(h + 4, hdr, 12);
    free(want);
    free(got);
    recs_free(&rs);
}

/* Records of every size read back in order through the reader's buffer:
 * zero-length ones, one larger than the buffer, thousands of small ones
 * across several buffer fills; one append of more iovecs than IOV_MAX. */
static void test_append_read_back(void **state)
{
    sfx *f = *state;
    recs rs = {0};
    uint32_t idx = 0;
    recs_add(&rs, idx++, 1000, NULL, 0); /* a placeholder: no json */
    recs_add(&rs, idx++, 1000, "", 0);
    recs_add(&rs, idx++, 1001, "{\"id\":1,\"name\":\"x\"}", 19);
    for (int i = 0; i < 1500; i++)
        recs_add(&rs, idx++, 1000 + (uint32_t)(rnd() % 5), NULL, (size_t)(rnd() % 300));
    recs_add(&rs, idx++, 2000, NULL, 600 * KIB); /* larger than the buffer */
    recs_add(&rs, idx++, 2000, NULL, 0);
    for (int i = 0; i < 1500; i++)
        recs_add(&rs, idx++, 1000 + (uint32_t)(rnd() % 5), NULL, (size_t)(rnd() % 300));
    recs_add(&rs, UINT32_MAX, UINT32_MAX, NULL, 3);
    recs_add(&rs, idx++, 0, NULL, 0); /* the last: a header alone */
    uint64_t size = recs_off(&rs, rs.n);
    assert_true(size > 4 * (uint64_t)RB);

    assert_int_equal(fsize(f, 1, 1), -1);
    append(f, 1, 1, 0, rs.ev, rs.n);
    assert_int_equal(fsize(f, 1, 1), (int64_t)size);
    expect_file(f, 1, 1, &rs, size);

    /* past the end too */
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    open_rd(f, &r, 1, 1, 0);
    assert_int_equal(r.size, size);
    expect_end(&r, size);
    expect_end(&r, size + 1);
    expect_end(&r, size + 100 * KIB);
    expect_end(&r, UINT64_MAX);
    expect_at(&r, 0, &rs.ev[0]);
    st_sfile_rd_close(&r);

    /* an empty file: the end at 0; trim cuts nothing */
    append(f, 1, 2, 0, NULL, 0);
    assert_int_equal(fsize(f, 1, 2), 0);
    recs none = {0};
    expect_file(f, 1, 2, &none, 0);
    assert_int_equal(trim(f, 1, 2), 0);
    assert_int_equal(trim(f, 1, 1), 0);
    assert_int_equal(fsize(f, 1, 1), (int64_t)size);
    recs_free(&rs);
}

/* Records placed on the buffer's edges: a header across it, a json across
 * it, a record ending on it, one exactly the buffer's size and larger. */
static void test_read_buffer_edges(void **state)
{
    sfx *f = *state;
    /* the first record's json length: where the second one starts */
    static const size_t first[] = {
        RB - ST_SFILE_HDR - 8,                 /* header across the edge */
        RB - ST_SFILE_HDR - 1,                 /* header across, by 1 byte */
        RB - ST_SFILE_HDR - ST_SFILE_HDR + 1,  /* header across, 1 byte in it */
        RB - ST_SFILE_HDR - ST_SFILE_HDR,      /* header ends on it, json after */
        RB - ST_SFILE_HDR - ST_SFILE_HDR - 50, /* json across */
        RB - ST_SFILE_HDR,                     /* starts on the edge */
        RB,                                    /* the buffer's size */
        RB + 1,
        2 * RB - ST_SFILE_HDR - 4,
    };
    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
        recs rs = {0};
        recs_add(&rs, 0, 1, NULL, first[i]);
        recs_add(&rs, 1, 1, NULL, 200);
        recs_add(&rs, 2, 1, NULL, 0);
        recs_add(&rs, 3, 1, NULL, RB - 3 * ST_SFILE_HDR);
        recs_add(&rs, 4, 1, NULL, 5);
        append(f, 2, i, 0, rs.ev, rs.n);
        uint64_t size = recs_off(&rs, rs.n);
        expect_file(f, 2, i, &rs, size);
        assert_int_equal(trim(f, 2, i), 0);
        /* the second record alone first (nothing buffered), then the first */
        st_sfile_rd r;
        st_sfile_rd_init(&r);
        open_rd(f, &r, 2, i, 0);
        expect_at(&r, recs_off(&rs, 1), &rs.ev[1]);
        expect_at(&r, 0, &rs.ev[0]);
        expect_at(&r, recs_off(&rs, 4), &rs.ev[4]);
        expect_at(&r, recs_off(&rs, 2), &rs.ev[2]);
        expect_end(&r, size);
        st_sfile_rd_close(&r);
        recs_free(&rs);
    }
}

/* ---- 3. appends accumulate; truncate empties first ---- */

static void test_appends_accumulate(void **state)
{
    sfx *f = *state;
    recs a = {0}, b = {0}, all = {0};
    for (uint32_t i = 0; i < 3; i++)
        recs_add(&a, i, 10, NULL, 10 + i);
    for (uint32_t i = 3; i < 5; i++)
        recs_add(&b, i, 11, NULL, i == 4 ? 0 : 40);
    append(f, 4, 1, 0, a.ev, a.n);
    append(f, 4, 1, 0, b.ev, b.n);
    append(f, 4, 1, 0, NULL, 0); /* nothing */
    for (size_t i = 0; i < a.n; i++)
        recs_add(&all, a.ev[i].idx, a.ev[i].subxid, a.ev[i].json, a.ev[i].json_len);
    for (size_t i = 0; i < b.n; i++)
        recs_add(&all, b.ev[i].idx, b.ev[i].subxid, b.ev[i].json, b.ev[i].json_len);
    uint64_t size = recs_off(&all, all.n);
    assert_int_equal(fsize(f, 4, 1), (int64_t)size);
    expect_file(f, 4, 1, &all, size);
    for (size_t i = 0; i < b.n; i++) /* a record at a time */
        append(f, 4, 1, 0, &b.ev[i], 1);
    for (size_t i = 0; i < b.n; i++)
        recs_add(&all, b.ev[i].idx, b.ev[i].subxid, b.ev[i].json, b.ev[i].json_len);
    size = recs_off(&all, all.n);
    expect_file(f, 4, 1, &all, size);

    /* other files of the cf, or of the gen in another cf, are apart */
    append(f, 4, 2, 0, b.ev, b.n);
    append(f, 5, 1, 0, a.ev, 1);
    expect_file(f, 4, 1, &all, size);
    expect_file(f, 4, 2, &b, recs_off(&b, b.n));

    /* truncate: the file holds the new records alone */
    append(f, 4, 1, 1, b.ev, 1);
    recs one = {0};
    recs_add(&one, b.ev[0].idx, b.ev[0].subxid, b.ev[0].json, b.ev[0].json_len);
    assert_int_equal(fsize(f, 4, 1), (int64_t)recs_off(&one, 1));
    expect_file(f, 4, 1, &one, recs_off(&one, 1));
    append(f, 4, 1, 0, a.ev, a.n); /* and appends after it */
    for (size_t i = 0; i < a.n; i++)
        recs_add(&one, a.ev[i].idx, a.ev[i].subxid, a.ev[i].json, a.ev[i].json_len);
    expect_file(f, 4, 1, &one, recs_off(&one, one.n));
    /* truncate with no records: empty; of a missing file: made */
    append(f, 4, 1, 1, NULL, 0);
    assert_int_equal(fsize(f, 4, 1), 0);
    append(f, 4, 3, 1, a.ev, a.n);
    expect_file(f, 4, 3, &a, recs_off(&a, a.n));
    /* the others untouched */
    expect_file(f, 4, 2, &b, recs_off(&b, b.n));
    recs_free(&a);
    recs_free(&b);
    recs_free(&all);
    recs_free(&one);
}

/* A reader reads the file's length when opened; rd_open again (without a
 * close) on another file reads that one, not what its buffer held. */
static void test_reader_reopen(void **state)
{
    sfx *f = *state;
    recs a = {0}, b = {0}, more = {0};
    for (uint32_t i = 0; i < 3; i++)
        recs_add(&a, i, 1, NULL, 100);
    for (uint32_t i = 0; i < 5; i++)
        recs_add(&b, 100 + i, 2, NULL, 100); /* the same offsets as a's */
    for (uint32_t i = 3; i < 5; i++)
        recs_add(&more, i, 1, NULL, 30);
    append(f, 6, 1, 0, a.ev, a.n);
    append(f, 6, 2, 0, b.ev, b.n);

    st_sfile_rd r;
    st_sfile_rd_init(&r);
    open_rd(f, &r, 6, 1, 0);
    expect_at(&r, 0, &a.ev[0]);
    append(f, 6, 1, 0, more.ev, more.n); /* after the open: not seen */
    expect_at(&r, recs_off(&a, 1), &a.ev[1]);
    expect_at(&r, recs_off(&a, 2), &a.ev[2]);
    expect_end(&r, recs_off(&a, 3));

    open_rd(f, &r, 6, 2, 0);
    for (size_t i = 0; i < b.n; i++)
        expect_at(&r, recs_off(&b, i), &b.ev[i]);
    expect_end(&r, recs_off(&b, b.n));

    open_rd(f, &r, 6, 3, 1); /* none: reads nothing */
    expect_end(&r, 0);
    expect_end(&r, recs_off(&b, 1));

    open_rd(f, &r, 6, 1, 0); /* now with the later records */
    for (size_t i = 0; i < a.n; i++)
        expect_at(&r, recs_off(&a, i), &a.ev[i]);
    for (size_t i = 0; i < more.n; i++)
        expect_at(&r, recs_off(&a, a.n) + recs_off(&more, i), &more.ev[i]);
    expect_end(&r, recs_off(&a, a.n) + recs_off(&more, more.n));
    st_sfile_rd_close(&r);
    st_sfile_rd_close(&r); /* twice: harmless */
    recs_free(&a);
    recs_free(&b);
    recs_free(&more);
}

/* ---- 4. random access ---- */

static void test_random_access(void **state)
{
    sfx *f = *state;
    recs rs = {0};
    for (uint32_t i = 0; i < 2000; i++) {
        size_t len = i == 700 ? 600 * KIB : i % 97 == 0 ? 0 : (size_t)(rnd() % 400);
        recs_add(&rs, i, 5000 + i % 7, NULL, len);
    }
    append(f, 7, 1, 0, rs.ev, rs.n);
    uint64_t *off = malloc(rs.n * sizeof(*off));
    assert_non_null(off);
    uint64_t at = 0;
    for (size_t i = 0; i < rs.n; i++) {
        off[i] = at;
        at += rec_bytes(&rs.ev[i]);
    }
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    open_rd(f, &r, 7, 1, 0);
    /* the last ones first, then back to the start */
    expect_end(&r, at);
    for (size_t i = rs.n; i-- > 0;)
        expect_at(&r, off[i], &rs.ev[i]);
    /* forward, jumping back now and then to an earlier one */
    for (size_t i = 0; i < rs.n; i++) {
        expect_at(&r, off[i], &rs.ev[i]);
        if (i % 50 == 49) {
            size_t j = (size_t)(rnd() % (i + 1));
            expect_at(&r, off[j], &rs.ev[j]);
        }
    }
    /* anywhere */
    for (int k = 0; k < 5000; k++) {
        size_t i = (size_t)(rnd() % rs.n);
        expect_at(&r, off[i], &rs.ev[i]);
    }
    /* the big one, then its neighbours, then it again */
    expect_at(&r, off[700], &rs.ev[700]);
    expect_at(&r, off[699], &rs.ev[699]);
    expect_at(&r, off[701], &rs.ev[701]);
    expect_at(&r, off[0], &rs.ev[0]);
    expect_at(&r, off[700], &rs.ev[700]);
    /* not a record's offset: no record there */
    for (size_t i = 1; i < rs.n; i += 101) {
        st_sfile_rec rec;
        if (rd(&r, off[i] + 1, &rec))
            fail_msg("a record (idx %u) at %llu, one past record %zu's offset", rec.idx,
                     (unsigned long long)(off[i] + 1), i);
    }
    st_sfile_rd_close(&r);
    free(off);
    recs_free(&rs);
}

/* ---- 5. torn and damaged tails ---- */

/* the records the torn tests start from */
static void base_recs(recs *rs)
{
    recs_add(rs, 0, 9, "{\"k\":1}", 7);
    recs_add(rs, 1, 9, NULL, 0);
    recs_add(rs, 2, 10, NULL, 300);
}

/* After a tail of junk the reader ends where it starts; trim cuts the
 * junk exactly, and later appends are read after the old records. */
static void torn_case(const sfx *f, uint64_t gen, const unsigned char *tail, size_t n)
{
    recs rs = {0}, more = {0};
    base_recs(&rs);
    append(f, 8, gen, 0, rs.ev, rs.n);
    uint64_t good = recs_off(&rs, rs.n);
    raw_append(f, 8, gen, tail, n);
    assert_int_equal(fsize(f, 8, gen), (int64_t)(good + n));
    expect_file(f, 8, gen, &rs, good);

    assert_int_equal(trim(f, 8, gen), n);
    assert_int_equal(fsize(f, 8, gen), (int64_t)good);
    expect_file(f, 8, gen, &rs, good);
    assert_int_equal(trim(f, 8, gen), 0);

    recs_add(&more, 3, 11, "{\"after\":true}", 14);
    recs_add(&more, 4, 11, NULL, 0);
    append(f, 8, gen, 0, more.ev, more.n);
    for (size_t i = 0; i < more.n; i++)
        recs_add(&rs, more.ev[i].idx, more.ev[i].subxid, more.ev[i].json, more.ev[i].json_len);
    expect_file(f, 8, gen, &rs, recs_off(&rs, rs.n));
    recs_free(&rs);
    recs_free(&more);
}

static void test_torn_tail(void **state)
{
    sfx *f = *state;
    unsigned char rec[ST_SFILE_HDR + 40];
    char json[40];
    for (size_t i = 0; i < sizeof(json); i++)
        json[i] = (char)('a' + i % 26);
    size_t rn = enc_rec(rec, 3, 11, json, sizeof(json));
    uint64_t gen = 0;
    /* a partial record: every cut of it */
    for (size_t k = 1; k < rn; k++)
        torn_case(f, gen++, rec, k);
    /* a whole record then a partial one */
    unsigned char two[2 * sizeof(rec)];
    memcpy(two, rec, rn);
    memcpy(two + rn, rec, rn);
    {
        recs rs = {0};
        base_recs(&rs);
        append(f, 8, gen, 0, rs.ev, rs.n);
        raw_append(f, 8, gen, two, rn + 5);
        uint64_t good = recs_off(&rs, rs.n);
        recs_add(&rs, 3, 11, json, sizeof(json)); /* the whole one is read */
        expect_file(f, 8, gen, &rs, good + rn);
        assert_int_equal(trim(f, 8, gen), 5);
        assert_int_equal(fsize(f, 8, gen), (int64_t)(good + rn));
        expect_file(f, 8, gen, &rs, good + rn);
        recs_free(&rs);
        gen++;
    }
    /* garbage */
    unsigned char g[4096];
    for (size_t i = 0; i < sizeof(g); i++)
        g[i] = (unsigned char)(rnd() >> 32);
    torn_case(f, gen++, g, 1);
    torn_case(f, gen++, g, 7);
    torn_case(f, gen++, g, 100);
    torn_case(f, gen++, g, sizeof(g));
    memset(g, 0, sizeof(g)); /* a length extended with zeros */
    torn_case(f, gen++, g, ST_SFILE_HDR);
    torn_case(f, gen++, g, sizeof(g));
    /* a header that claims a length past the end, the largest */
    unsigned char h[ST_SFILE_HDR + 8];
    enc_rec(h, 3, 11, "12345678", 8);
    put32(h + 4, 0xffffffffu);
    torn_case(f, gen++, h, sizeof(h));
    put32(h + 4, 9);
    torn_case(f, gen++, h, sizeof(h));
    /* a zero-length record with a bad checksum: whole, so damage, not a
     * torn append: left as it is */
    enc_rec(h, 3, 11, NULL, 0);
    h[0] ^= 1;
    {
        recs rs = {0};
        base_recs(&rs);
        append(f, 8, gen, 0, rs.ev, rs.n);
        raw_append(f, 8, gen, h, ST_SFILE_HDR);
        uint64_t good = recs_off(&rs, rs.n);
        trim_refused(f, 8, gen);
        assert_int_equal(fsize(f, 8, gen), (int64_t)(good + ST_SFILE_HDR));
        recs_free(&rs);
        gen++;
    }
    /* a torn tail after a record larger than the buffer */
    {
        recs rs = {0};
        recs_add(&rs, 0, 1, NULL, 600 * KIB);
        append(f, 8, gen, 0, rs.ev, rs.n);
        raw_append(f, 8, gen, rec, rn - 1);
        uint64_t good = recs_off(&rs, rs.n);
        expect_file(f, 8, gen, &rs, good);
        assert_int_equal(trim(f, 8, gen), rn - 1);
        assert_int_equal(fsize(f, 8, gen), (int64_t)good);
        recs_free(&rs);
    }
}

/* One byte of the last record changed: the reader ends at that record;
 * trim cuts it off (it alone) when its length now runs past the file's
 * end (what a torn append leaves), and refuses otherwise (damage). */
static void test_damaged_last_record(void **state)
{
    sfx *f = *state;
    recs rs = {0};
    base_recs(&rs);
    recs_add(&rs, 3, 12, NULL, 50);
    uint64_t last = recs_off(&rs, 3), size = recs_off(&rs, 4);
    /* bytes of the last record, and bits flipped in them: its crc,
     * json_len (past the end of the file; 50 -> 2, shorter; 50 -> 48),
     * idx, subxid, json */
    static const struct {
        uint64_t at;
        unsigned char mask;
    } d[] = {{0, 0xff},  {3, 0x01},  {4, 0xff},  {4, 0x40},       {6, 0x01},
             {7, 0xff},  {7, 0x30},  {7, 0x02},  {8, 0x80},       {11, 0x01},
             {12, 0xff}, {15, 0x01}, {16, 0x01}, {16 + 10, 0xff}, {16 + 49, 0x80}};
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        uint64_t gen = 100 + i;
        append(f, 9, gen, 0, rs.ev, rs.n);
        flip(f, 9, gen, last + d[i].at, d[i].mask);
        recs first = rs;
        first.n = 3;
        expect_file(f, 9, gen, &first, last);
        uint32_t len = 50;
        if (d[i].at >= 4 && d[i].at < 8)
            len ^= (uint32_t)d[i].mask << (8 * (7 - d[i].at));
        if ((uint64_t)len + ST_SFILE_HDR <= size - last) {
            trim_refused(f, 9, gen);
            assert_int_equal(fsize(f, 9, gen), (int64_t)size);
            continue;
        }
        assert_int_equal(trim(f, 9, gen), size - last);
        assert_int_equal(fsize(f, 9, gen), (int64_t)last);
        expect_file(f, 9, gen, &first, last);
        /* appended again: all four read */
        append(f, 9, gen, 0, &rs.ev[3], 1);
        expect_file(f, 9, gen, &rs, size);
    }
    /* a record in the middle damaged: the reader ends there, and trim
     * refuses (the records after it may be acknowledged ones) */
    append(f, 9, 200, 0, rs.ev, rs.n);
    flip(f, 9, 200, recs_off(&rs, 2) + ST_SFILE_HDR + 5, 0xff);
    recs first = rs;
    first.n = 2;
    expect_file(f, 9, 200, &first, recs_off(&rs, 2));
    trim_refused(f, 9, 200);
    assert_int_equal(fsize(f, 9, 200), (int64_t)size);
    recs_free(&rs);
}

/* ---- 6. missing files ---- */

static void test_missing(void **state)
{
    sfx *f = *state;
    char err[WH_ERRLEN] = "";
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    open_rd(f, &r, 10, 1, 1);
    assert_int_equal(r.fd, -1);
    expect_end(&r, 0);
    expect_end(&r, 100);
    st_sfile_rd_close(&r);
    assert_int_equal(trim(f, 10, 1), 0);
    assert_int_equal(st_sfile_remove(f->dir, 10, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(fsize(f, 10, 1), -1); /* none made */

    /* the directory missing too */
    char nodir[256];
    snprintf(nodir, sizeof(nodir), "%s/nope/staging", f->tmp);
    int missing = -1;
    assert_int_equal(st_sfile_rd_open(&r, nodir, 10, 1, &missing, err, sizeof(err)), WH_OK);
    assert_int_equal(missing, 1);
    expect_end(&r, 0);
    st_sfile_rd_close(&r);
    uint64_t cut = 1;
    assert_int_equal(st_sfile_trim(nodir, 10, 1, &cut, NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(cut, 0);
    assert_int_equal(st_sfile_remove(nodir, 10, 1, err, sizeof(err)), WH_OK);
}

/* ---- 7. remove ---- */

static void test_remove(void **state)
{
    sfx *f = *state;
    char err[WH_ERRLEN] = "";
    recs rs = {0};
    base_recs(&rs);
    append(f, 11, 1, 0, rs.ev, rs.n);
    append(f, 11, 2, 0, rs.ev, rs.n);
    append(f, 12, 1, 0, rs.ev, rs.n);
    assert_int_equal(st_sfile_remove(f->dir, 11, 2, err, sizeof(err)), WH_OK);
    assert_int_equal(fsize(f, 11, 2), -1);
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    open_rd(f, &r, 11, 2, 1);
    st_sfile_rd_close(&r);
    uint64_t size = recs_off(&rs, rs.n);
    expect_file(f, 11, 1, &rs, size);
    expect_file(f, 12, 1, &rs, size);
    assert_int_equal(st_sfile_remove(f->dir, 11, 2, err, sizeof(err)), WH_OK); /* again */
    /* made again by an append: only the new records */
    append(f, 11, 2, 0, rs.ev, 1);
    recs one = rs;
    one.n = 1;
    expect_file(f, 11, 2, &one, recs_off(&rs, 1));
    /* a reader open on a removed file still reads it */
    open_rd(f, &r, 12, 1, 0);
    assert_int_equal(st_sfile_remove(f->dir, 12, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(fsize(f, 12, 1), -1);
    for (size_t i = 0; i < rs.n; i++)
        expect_at(&r, recs_off(&rs, i), &rs.ev[i]);
    st_sfile_rd_close(&r);
    recs_free(&rs);
}

/* ---- 8. errors ---- */

static void test_errors(void **state)
{
    sfx *f = *state;
    char err[WH_ERRLEN] = "";
    recs rs = {0};
    base_recs(&rs);

    /* the directory missing: an error naming the file; nothing made */
    char nodir[256];
    snprintf(nodir, sizeof(nodir), "%s/nope/staging", f->tmp);
    int torn = -1;
    assert_int_equal(st_sfile_append(nodir, 13, 1, 0, rs.ev, rs.n, &torn, err, sizeof(err)),
                     WH_ERR);
    assert_int_equal(torn, 0);
    if (strstr(err, "staging") == NULL || strstr(err, nodir) == NULL ||
        strstr(err, "13-0000000000000001") == NULL)
        fail_msg("err: %s", err);
    struct stat st;
    assert_int_not_equal(stat(nodir, &st), 0);
    /* dir_make makes it and its parents; again: nothing to do */
    assert_int_equal(st_sfile_dir_make(nodir, err, sizeof(err)), WH_OK);
    assert_int_equal(stat(nodir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st_sfile_dir_make(nodir, err, sizeof(err)), WH_OK);
    torn = -1;
    assert_int_equal(st_sfile_append(nodir, 13, 1, 0, rs.ev, rs.n, &torn, err, sizeof(err)), WH_OK);
    assert_int_equal(torn, 0);

    /* a directory in the way: of dir_make, of the file */
    char p[512];
    snprintf(p, sizeof(p), "%s/afile", f->tmp);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof(p), "%s/afile/staging", f->tmp);
    err[0] = '\0';
    assert_int_equal(st_sfile_dir_make(p, err, sizeof(err)), WH_ERR);
    assert_true(err[0] != '\0');
    path_of(f, 13, 2, p, sizeof(p));
    assert_int_equal(mkdir(p, 0700), 0);
    torn = -1;
    err[0] = '\0';
    assert_int_equal(st_sfile_append(f->dir, 13, 2, 0, rs.ev, rs.n, &torn, err, sizeof(err)),
                     WH_ERR);
    assert_int_equal(torn, 0);
    if (strstr(err, "staging") == NULL || strstr(err, p) == NULL)
        fail_msg("err: %s", err);
    err[0] = '\0';
    assert_int_equal(st_sfile_remove(f->dir, 13, 2, err, sizeof(err)), WH_ERR);
    if (strstr(err, "staging") == NULL || strstr(err, p) == NULL)
        fail_msg("err: %s", err);
    assert_int_equal(rmdir(p), 0);

    /* a json longer than a record takes: an error; nothing written */
    append(f, 13, 3, 0, rs.ev, rs.n);
    uint64_t size = recs_off(&rs, rs.n);
    st_staged big[2] = {rs.ev[0],
                        {.idx = 77, .subxid = 1, .json = "x", .json_len = (size_t)1 << 31}};
    torn = -1;
    err[0] = '\0';
    assert_int_equal(st_sfile_append(f->dir, 13, 3, 0, big, 2, &torn, err, sizeof(err)), WH_ERR);
    assert_int_equal(torn, 0);
    if (strstr(err, "77") == NULL)
        fail_msg("err: %s", err);
    assert_int_equal(fsize(f, 13, 3), (int64_t)size);
    expect_file(f, 13, 3, &rs, size);
    recs_free(&rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_round_trip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test_setup_teardown(test_format_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_buffer_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_accumulate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_last_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
