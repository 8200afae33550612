/* Unit tests of the store's staging files as the store uses them (st_db
 * stage_*, st_sfile; requests through st_server's handler): a torn tail cut
 * back at a restart and copies sent again skipped at the commit, the sweep
 * of the staging directory at start, files removed with their generations
 * (whole abort, drop-all, the staging GC, a tenant dropped), one_event
 * aborts of a generation staged in a file, a store upgraded while a
 * transaction streamed in the staging column family (the gens before the F
 * key), and a damaged record of a committed generation. Real RocksDB and
 * real files in a temporary directory (docs/INTERNALS.md, "Streamed
 * transactions"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../services/store/st_db_int.h"
#include "../../services/store/st_server.h"
#include "../../services/store/st_sfile.h"
#include "wh_lsn.h"
#include "stdb_fixture.h"
#include "stsrv_fixture.h"

#define MAX_MSG (4u * 1024 * 1024)

typedef struct fx {
    char dir[64];
    st_db *db;
    st_server *srv;
} fx;

/* the store's offset commits and WAL as in production */
static const st_db_opts OPTS = {.offset_sync_wait_us = 2000, .wal_zero_ahead_bytes = 1 << 20};

static void store_open(fx *f)
{
    char err[WH_ERRLEN];
    stdb_fx_open(&f->db, f->dir, &OPTS);
    if (st_server_create(&f->srv, f->db, 4, MAX_MSG, err, sizeof(err)) != WH_OK)
        fail_msg("server: %s", err);
}

static void store_close(fx *f)
{
    st_server_destroy(f->srv);
    st_db_close(f->db);
    f->srv = NULL;
    f->db = NULL;
}

static void reopen(fx *f)
{
    store_close(f);
    store_open(f);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    stdb_fx_mkdtemp(f->dir, sizeof(f->dir), "test_store_stagefile");
    store_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f == NULL)
        return 0;
    if (f->srv != NULL)
        st_server_destroy(f->srv);
    stdb_fx_remove(f->db, f->dir);
    free(f);
    return 0;
}

/* ---- requests (built by stsrv_fixture.h) ---- */

/* Stages events first..first+n-1 of xid in tenant "t" (tag; subxid xid) */
static void stage_n(fx *f, uint32_t xid, int reset, uint32_t first, size_t n, char tag)
{
    static stsrv_stage_req r;
    stsrv_make_stage(&r, "t", xid, reset, first, n, xid, tag);
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), n);
}

/* Commits xid of tenant at lsn; the events it stored must be n. */
static void commit_n(fx *f, const char *tenant, uint32_t xid, uint64_t lsn, uint32_t n)
{
    static stsrv_stage_req r;
    stsrv_make_commit(&r, tenant, xid, lsn, 0);
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), n);
}

static void abort_call(fx *f, const char *tenant, uint32_t xid, uint32_t subxid)
{
    static stsrv_stage_req r;
    stsrv_make_aborts(&r, tenant, xid, subxid);
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 0);
}

/* ---- the staging directory ---- */

static void sdir(const fx *f, char *out, size_t n)
{
    snprintf(out, n, "%s/staging", f->dir);
}

/* The tenant's staging column family ID (its files' prefix). */
static uint32_t stage_cf(fx *f, const char *tenant)
{
    st_tenant *t = st_dbi_tenant_find(f->db, tenant, 0);
    assert_non_null(t);
    assert_non_null(t->stage);
    return rocksdb_column_family_handle_get_id(t->stage);
}

/* The xid's open staging generation (0: none). */
static uint64_t gen_of(fx *f, const char *tenant, uint32_t xid)
{
    char err[WH_ERRLEN];
    st_stage_txn *h;
    uint64_t gen;
    if (st_db_stage_begin(f->db, tenant, xid, &h, &gen, err, sizeof(err)) != WH_OK)
        fail_msg("stage begin: %s", err);
    st_db_stage_end(h);
    return gen;
}

static void spath(const fx *f, uint32_t cf, uint64_t gen, char *out, size_t n)
{
    char d[128], name[ST_SFILE_NAME_MAX];
    sdir(f, d, sizeof(d));
    st_sfile_name(name, cf, gen);
    snprintf(out, n, "%s/%s", d, name);
}

/* The size of path's file; -1: there is none. */
static int64_t fsize(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        assert_int_equal(errno, ENOENT);
        return -1;
    }
    return (int64_t)st.st_size;
}

static int64_t gen_size(const fx *f, uint32_t cf, uint64_t gen)
{
    char p[256];
    spath(f, cf, gen, p, sizeof(p));
    return fsize(p);
}

/* Staging files in the staging directory (names st_sfile makes) of column
 * family cf (-1: of any). */
static size_t count_files(const fx *f, int64_t cf)
{
    char d[128];
    sdir(f, d, sizeof(d));
    DIR *dd = opendir(d);
    assert_non_null(dd);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(dd)) != NULL;) {
        uint32_t c;
        uint64_t g;
        if (st_sfile_parse_name(de->d_name, &c, &g) == WH_OK && (cf < 0 || (int64_t)c == cf))
            n++;
    }
    closedir(dd);
    return n;
}

/* path's whole content (malloc'ed, *len bytes). */
static char *fread_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* Writes b at the end of path (made when missing), or at off (>= 0). */
static void fwrite_at(const char *path, int64_t off, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (off < 0 ? O_APPEND : 0), 0600);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    ssize_t w = off < 0 ? write(fd, b, n) : pwrite(fd, b, n, (off_t)off);
    assert_int_equal(w, (ssize_t)n);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* The offsets of the records of a staging file's bytes (as st_sfile.h
 * documents them: crc(4) json_len(4) idx(4) subxid(4) json); their
 * indexes into idx. Returns how many (at most max). */
static size_t rec_offsets(const char *b, size_t len, uint64_t *off, uint32_t *idx, size_t max)
{
    size_t n = 0, at = 0;
    while (at + ST_SFILE_HDR <= len && n < max) {
        uint32_t jl = wh_get_be32((const uint8_t *)b + at + 4);
        assert_true(at + ST_SFILE_HDR + jl <= len);
        off[n] = at;
        idx[n] = wh_get_be32((const uint8_t *)b + at + 8);
        n++;
        at += ST_SFILE_HDR + jl;
    }
    assert_int_equal(at, len);
    return n;
}

/* ---- 1. a torn tail at a restart ---- */

enum tail_kind { TAIL_GARBAGE, TAIL_ZEROS, TAIL_PARTIAL };

/* Two batches of xid 700 (idx 0..4, 5..9) staged and acknowledged; the
 * store stops and its gen's file gets a tail no acknowledged append wrote:
 * garbage, zero bytes (a file system's extension after a crash), or what a
 * store killed during the third batch's append leaves: its first record
 * whole (idx 10, in the file but not acknowledged) and the second cut
 * short. At the next start the file is cut back to its last whole record;
 * the ingestor sends the second batch again (its ack may have been lost)
 * and the third: the commit makes every event once, in order, byte for
 * byte (copies sent again are skipped by index). */
static void torn_tail(fx *f, enum tail_kind kind)
{
    stage_n(f, 700, 1, 0, 5, 'a');
    stage_n(f, 700, 0, 5, 5, 'a');
    uint32_t cf = stage_cf(f, "t");
    uint64_t gen = gen_of(f, "t", 700);
    assert_true(gen > 0);
    char p[256];
    spath(f, cf, gen, p, sizeof(p));
    int64_t size0 = fsize(p);
    assert_true(size0 > 10 * ST_SFILE_HDR);
    store_close(f);

    char tail[256];
    size_t tl = 0, whole = 0; /* whole: the bytes of a whole record the tail begins with */
    if (kind == TAIL_GARBAGE) {
        for (size_t i = 0; i < 37; i++)
            tail[i] = (char)(0xA5 ^ (i * 7));
        tl = 37;
    } else if (kind == TAIL_ZEROS) {
        memset(tail, 0, 100);
        tl = 100;
    } else { /* records idx 10 and 11 of the third batch, encoded by st_sfile */
        char tmp[128], err[WH_ERRLEN];
        snprintf(tmp, sizeof(tmp), "%s/enc", f->dir);
        assert_int_equal(st_sfile_dir_make(tmp, err, sizeof(err)), WH_OK);
        st_staged ev[2] = {{10, 700, "\"b\":\"a10\"}", 10}, {11, 700, "\"b\":\"a11\"}", 10}};
        int torn;
        if (st_sfile_append(tmp, 1, 1, 1, ev, 2, &torn, err, sizeof(err)) != WH_OK)
            fail_msg("encode: %s", err);
        char ep[256];
        snprintf(ep, sizeof(ep), "%s/%s", tmp, "1-0000000000000001");
        size_t el;
        char *eb = fread_all(ep, &el);
        assert_int_equal(el, 2 * (ST_SFILE_HDR + 10));
        whole = ST_SFILE_HDR + 10;
        tl = whole + ST_SFILE_HDR + 4; /* the second's header and 4 bytes of its json */
        memcpy(tail, eb, tl);
        free(eb);
    }
    fwrite_at(p, -1, tail, tl);
    assert_int_equal(fsize(p), size0 + (int64_t)tl);

    store_open(f);
    /* the first use of the staging cuts the file back (or the maintenance
     * pass did already) */
    assert_int_equal(stsrv_staged_count(f->db, "t", 700), kind == TAIL_PARTIAL ? 11 : 10);
    assert_int_equal(fsize(p), size0 + (int64_t)whole);
    assert_int_equal(gen_of(f, "t", 700), gen);

    stage_n(f, 700, 0, 5, 5, 'a');   /* the second batch again */
    stage_n(f, 700, 0, 10, 10, 'a'); /* the third */
    assert_int_equal(stsrv_staged_count(f->db, "t", 700), 20);
    commit_n(f, "t", 700, 0x900, 20);
    stsrv_read_expect(f->srv, "t", 20, 0x900, 'a', 1);
    reopen(f); /* and after a restart */
    stsrv_read_expect(f->srv, "t", 20, 0x900, 'a', 1);
}

static void test_torn_tail_garbage(void **state)
{
    torn_tail(*state, TAIL_GARBAGE);
}

static void test_torn_tail_zeros(void **state)
{
    torn_tail(*state, TAIL_ZEROS);
}

static void test_torn_tail_partial_record(void **state)
{
    torn_tail(*state, TAIL_PARTIAL);
}

/* `walhook-store --dump-staged` (a read-only open beside the running
 * store) while an append is under way: the partial record at the end of
 * an open gen's file is the end of what it counts, not an error; the
 * running store's file is not touched. */
static void test_dump_staged_torn_tail_read_only(void **state)
{
    fx *f = *state;
    stage_n(f, 730, 1, 0, 5, 'a');
    uint32_t cf = stage_cf(f, "t");
    uint64_t gen = gen_of(f, "t", 730);
    char p[256];
    spath(f, cf, gen, p, sizeof(p));
    int64_t size0 = fsize(p);
    char part[ST_SFILE_HDR + 3] = {0x11, 0x22, 0x33, 0x44, 0, 0, 0, 50};
    fwrite_at(p, -1, part, sizeof(part)); /* a header claiming 50 bytes, 3 of them */
    st_db *ro = NULL;
    st_db_opts o = OPTS;
    o.read_only = 1;
    stdb_fx_open(&ro, f->dir, &o);
    char *buf = NULL, err[WH_ERRLEN] = "";
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    int rc = st_db_dump_staged(ro, mf, err, sizeof(err));
    fclose(mf);
    if (rc != WH_OK)
        fail_msg("dump-staged: %s", err);
    assert_string_equal(buf, "t 730 5\n");
    free(buf);
    st_db_close(ro);
    assert_int_equal(fsize(p), size0 + (int64_t)sizeof(part));
}

typedef struct scan_got {
    size_t n;
    uint32_t idx[8];
    char json[8][8];
} scan_got;

static int scan_step(void *arg, uint32_t idx, uint32_t subxid, const void *json, size_t len)
{
    (void)subxid;
    scan_got *g = arg;
    if (g->n == 8 || len >= sizeof(g->json[0]))
        return 1;
    g->idx[g->n] = idx;
    memcpy(g->json[g->n], json, len);
    g->json[g->n][len] = '\0';
    g->n++;
    return 0;
}

/* A batch out of index order with an index twice: written in index order,
 * of the index twice its last event (as a WriteBatch's last put of a key) */
static void test_batch_unsorted_twice(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_staged ev[4] = {{2, 740, "c", 1}, {1, 740, "b1", 2}, {0, 740, "a", 1}, {1, 740, "b2", 2}};
    if (st_db_stage_put(f->db, "t", 740, 0, ev, 4, err, sizeof(err)) != WH_OK)
        fail_msg("stage: %s", err);
    scan_got g = {0};
    int stopped;
    assert_int_equal(
        st_db_stage_scan(f->db, "t", 740, 0, scan_step, &g, &stopped, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.idx[0], 0);
    assert_string_equal(g.json[0], "a");
    assert_int_equal(g.idx[1], 1);
    assert_string_equal(g.json[1], "b2");
    assert_int_equal(g.idx[2], 2);
    assert_string_equal(g.json[2], "c");
}

/* ---- 2. batches sent twice ---- */

/* Batches sent again before the commit (same indexes and bytes: a resend
 * after a lost ack, one of an earlier batch too) are not written again
 * (the file does not grow), counted once, and committed once, in index
 * order, also across chunks of the commit (small chunks). */
static void test_batch_sent_twice(void **state)
{
    fx *f = *state;
    st_server_set_stage_chunk(f->srv, 200); /* a few events a chunk */
    stage_n(f, 710, 1, 0, 5, 'w');
    stage_n(f, 710, 0, 5, 5, 'w');
    uint32_t cf = stage_cf(f, "t");
    uint64_t gen = gen_of(f, "t", 710);
    int64_t s1 = gen_size(f, cf, gen);
    stage_n(f, 710, 0, 5, 5, 'w'); /* the second again */
    assert_int_equal(gen_size(f, cf, gen), s1);
    stage_n(f, 710, 0, 0, 5, 'w'); /* the first again */
    assert_int_equal(gen_size(f, cf, gen), s1);
    stage_n(f, 710, 0, 10, 5, 'w');
    int64_t s3 = gen_size(f, cf, gen);
    assert_true(s3 > s1);
    stage_n(f, 710, 0, 10, 5, 'w'); /* the third twice */
    assert_int_equal(gen_size(f, cf, gen), s3);
    assert_int_equal(stsrv_staged_count(f->db, "t", 710), 15);
    commit_n(f, "t", 710, 0xA00, 15);
    stsrv_read_expect(f->srv, "t", 15, 0xA00, 'w', 1);
    /* the commit sent again after it finished: nothing more */
    commit_n(f, "t", 710, 0xA00, 0);
    stsrv_read_expect(f->srv, "t", 15, 0xA00, 'w', 1);
}

/* ---- 3. the sweep at start ---- */

/* At its first use after the store started, the staging directory is put
 * right: a file of the tenant's column family with a gen at or past the
 * next gen, one of a gen with neither a G key nor a commit record (its xid
 * was aborted, and the file came back: the store stopped before removing
 * it) and one of a column family no tenant has are removed; an open gen's
 * file and a committed gen's (its events still stored) stay, and so does a
 * file not named like a staging file. The xid staged next gets the gen a
 * stray file had, and commits its own events only. */
static void test_sweep_at_open(void **state)
{
    fx *f = *state;
    stage_n(f, 100, 1, 0, 3, 'o'); /* open */
    stage_n(f, 101, 1, 0, 4, 'c'); /* committed */
    commit_n(f, "t", 101, 0x500, 4);
    stage_n(f, 102, 1, 0, 3, 'x'); /* aborted */
    uint32_t cf = stage_cf(f, "t");
    uint64_t g_open = gen_of(f, "t", 100), g_ab = gen_of(f, "t", 102);
    uint64_t g_com = g_open + 1;
    assert_true(g_open > 0 && g_ab == g_open + 2);
    assert_true(gen_size(f, cf, g_com) > 0);
    char pab[256];
    spath(f, cf, g_ab, pab, sizeof(pab));
    size_t abl;
    char *ab = fread_all(pab, &abl);
    abort_call(f, "t", 102, 102);
    assert_int_equal(fsize(pab), -1);
    assert_int_equal(count_files(f, -1), 2);
    int64_t s_open = gen_size(f, cf, g_open), s_com = gen_size(f, cf, g_com);
    store_close(f);

    uint64_t next = g_ab + 1;
    char p_next[256], p_far[256], p_cf[256], p_other[256];
    fwrite_at(pab, -1, ab, abl);
    spath(f, cf, next, p_next, sizeof(p_next));
    fwrite_at(p_next, -1, ab, abl);
    spath(f, cf, next + 0x1000, p_far, sizeof(p_far));
    fwrite_at(p_far, -1, ab, abl);
    spath(f, cf + 1000, 1, p_cf, sizeof(p_cf));
    fwrite_at(p_cf, -1, ab, abl);
    char d[128];
    sdir(f, d, sizeof(d));
    snprintf(p_other, sizeof(p_other), "%s/README", d);
    fwrite_at(p_other, -1, "x", 1);
    free(ab);
    assert_int_equal(count_files(f, -1), 6);

    store_open(f);
    assert_int_equal(fsize(p_cf), -1); /* at the open: no tenant's column family */
    assert_int_equal(stsrv_staged_count(f->db, "t", 100), 3);
    assert_int_equal(fsize(pab), -1);
    assert_int_equal(fsize(p_next), -1);
    assert_int_equal(fsize(p_far), -1);
    assert_int_equal(gen_size(f, cf, g_open), s_open);
    assert_int_equal(gen_size(f, cf, g_com), s_com);
    assert_int_equal(fsize(p_other), 1);
    assert_int_equal(count_files(f, -1), 2);

    stage_n(f, 103, 1, 0, 2, 'n'); /* gets gen `next` */
    assert_int_equal(gen_of(f, "t", 103), next);
    commit_n(f, "t", 100, 0x600, 3);
    commit_n(f, "t", 103, 0x700, 2);
    stsrv_collected *c = calloc(1, sizeof(*c));
    stsrv_read_all(f->srv, "t", c);
    assert_int_equal(c->n, 4 + 3 + 2);
    stsrv_expect_txn(c, 0, 4, 0x500, 'c', NULL, 0, 1);
    stsrv_expect_txn(c, 4, 3, 0x600, 'o', NULL, 0, 1);
    stsrv_expect_txn(c, 7, 2, 0x700, 'n', NULL, 0, 1);
    free(c);
}

/* ---- 4. files removed with their gens ---- */

/* A whole abort (subxid == xid) removes its gen's file; a subtransaction's
 * abort does not; another xid's stays. */
static void test_files_whole_abort(void **state)
{
    fx *f = *state;
    stage_n(f, 200, 1, 0, 3, 'a');
    stage_n(f, 200, 0, 3, 3, 'a');
    stage_n(f, 201, 1, 0, 2, 'b');
    uint32_t cf = stage_cf(f, "t");
    uint64_t g200 = gen_of(f, "t", 200), g201 = gen_of(f, "t", 201);
    assert_int_equal(count_files(f, cf), 2);
    /* the metrics count them */
    assert_int_equal(stsrv_metric_of(f->srv, "walhook_store_staging_files"), 2);
    assert_int_equal(stsrv_metric_of(f->srv, "walhook_store_staging_bytes"),
                     (uint64_t)(gen_size(f, cf, g200) + gen_size(f, cf, g201)));
    abort_call(f, "t", 200, 205); /* a subtransaction: the file stays */
    assert_int_equal(count_files(f, cf), 2);
    abort_call(f, "t", 200, 200);
    assert_int_equal(count_files(f, cf), 1);
    assert_int_equal(gen_size(f, cf, g200), -1);
    assert_true(gen_size(f, cf, g201) > 0);
    assert_int_equal(stsrv_staged_count(f->db, "t", 200), 0);
    abort_call(f, "t", 201, 201);
    assert_int_equal(count_files(f, -1), 0);
    assert_int_equal(stsrv_metric_of(f->srv, "walhook_store_staging_files"), 0);
    assert_int_equal(stsrv_metric_of(f->srv, "walhook_store_staging_bytes"), 0);
    commit_n(f, "t", 200, 0x500, 0);
    stsrv_collected *c = calloc(1, sizeof(*c));
    stsrv_read_all(f->srv, "t", c);
    assert_int_equal(c->n, 0);
    free(c);
}

/* A drop-all (xid == subxid == 0) removes the files of every open gen and
 * keeps a committed gen's (what its stored events refer to). */
static void test_files_drop_all(void **state)
{
    fx *f = *state;
    stage_n(f, 300, 1, 0, 3, 'a');
    stage_n(f, 301, 1, 0, 3, 'b');
    stage_n(f, 302, 1, 0, 3, 'c');
    uint32_t cf = stage_cf(f, "t");
    uint64_t g302 = gen_of(f, "t", 302);
    commit_n(f, "t", 302, 0x500, 3);
    assert_int_equal(count_files(f, cf), 3);
    abort_call(f, "t", 0, 0);
    assert_int_equal(count_files(f, -1), 1);
    assert_true(gen_size(f, cf, g302) > 0);
    assert_int_equal(stsrv_staged_count(f->db, "t", 300), 0);
    assert_int_equal(stsrv_staged_count(f->db, "t", 301), 0);
    stsrv_read_expect(f->srv, "t", 3, 0x500, 'c', 1);
}

/* The staging GC (maintenance pass) removes a committed gen's file with
 * its keys once no event of it is left (test_stage_gc of
 * test_store_server.c drives it the same way); another's stays. */
static void test_files_gc(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    stage_n(f, 700, 1, 0, 10, 'g');
    uint32_t cf = stage_cf(f, "t");
    uint64_t g700 = gen_of(f, "t", 700);
    commit_n(f, "t", 700, 0xA00, 10);
    stage_n(f, 701, 1, 0, 5, 'h');
    uint64_t g701 = gen_of(f, "t", 701);
    commit_n(f, "t", 701, 0xB00, 5);
    abort_call(f, "t", 0, 0);
    st_db_maintain(f->db);
    assert_int_equal(stsrv_committed_count(f->db, "t"), 2);
    assert_int_equal(count_files(f, cf), 2);

    uint64_t l;
    uint32_t q;
    assert_int_equal(st_db_commit(f->db, "t", "c", 0xA00, 9, &l, &q, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    st_db_maintain(f->db);
    assert_int_equal(stsrv_committed_count(f->db, "t"), 1);
    assert_int_equal(count_files(f, cf), 1);
    assert_int_equal(gen_size(f, cf, g700), -1);
    assert_true(gen_size(f, cf, g701) > 0);
    stsrv_read_expect(f->srv, "t", 5, 0xB00, 'h', 1);
}

/* A tenant dropped (st_db_tenant_drop) loses its staging files, open and
 * committed; another tenant's stay. Made again (st_db_tenant_create), it stages under a new
 * column family ID: its files do not meet the old ones. */
static void test_files_tenant_drop(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    static stsrv_stage_req r;
    stage_n(f, 400, 1, 0, 3, 't');
    stsrv_make_stage(&r, "u", 400, 1, 0, 3, 400, 'u');
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 3);
    stsrv_make_stage(&r, "u", 401, 1, 0, 2, 401, 'u');
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 2);
    commit_n(f, "u", 401, 0x500, 2);
    uint32_t cft = stage_cf(f, "t"), cfu = stage_cf(f, "u");
    assert_true(cft != cfu);
    assert_int_equal(count_files(f, cft), 1);
    assert_int_equal(count_files(f, cfu), 2);
    assert_int_equal(st_db_tenant_drop(f->db, "u", err, sizeof(err)), WH_OK);
    assert_int_equal(count_files(f, cfu), 0);
    assert_int_equal(count_files(f, -1), 1);
    assert_int_equal(stsrv_staged_count(f->db, "u", 400), 0);

    assert_int_equal(st_db_tenant_create(f->db, "u", err, sizeof(err)), WH_OK); /* made again */
    stsrv_make_stage(&r, "u", 400, 1, 0, 4, 400, 'v');
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 4);
    uint32_t cfu2 = stage_cf(f, "u");
    assert_true(cfu2 != cfu && cfu2 != cft);
    assert_int_equal(count_files(f, cfu2), 1);
    reopen(f);
    assert_int_equal(count_files(f, -1), 2);
    commit_n(f, "u", 400, 0x600, 4);
    stsrv_read_expect(f->srv, "u", 4, 0x600, 'v', 1);
    stage_n(f, 400, 0, 3, 1, 't');
    commit_n(f, "t", 400, 0x700, 4);
    stsrv_read_expect(f->srv, "t", 4, 0x700, 't', 1);
}

/* ---- 5. one_event aborts in file mode ---- */

/* A one_event abort of a staged index (a schema event another transaction
 * announced first) writes a `d` key: that event, and every copy of it sent
 * again, is not in the commit, and takes no seq: the commit numbers the
 * rest 0, 1, ... (docs/INTERNALS.md, "Schema versions and DDL": "the
 * commit numbers the rest, so no seq is lost"); also across a restart and
 * across chunks of the commit. */
static void test_one_event_abort_file(void **state)
{
    fx *f = *state;
    static stsrv_stage_req r;
    st_server_set_stage_chunk(f->srv, 100); /* two events a chunk */
    stage_n(f, 900, 1, 0, 6, 'o');
    uint32_t cf = stage_cf(f, "t");
    uint64_t gen = gen_of(f, "t", 900);
    int64_t s0 = gen_size(f, cf, gen);
    stsrv_make_aborts(&r, "t", 900, 900);
    r.ab[0].one_event = 1;
    r.ab[0].index = 2;
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 0);
    assert_int_equal(gen_size(f, cf, gen), s0); /* the file is not rewritten */
    assert_int_equal(stsrv_staged_count(f->db, "t", 900), 5);
    stage_n(f, 900, 0, 0, 6, 'o'); /* the batch again: idx 2 with it */
    assert_int_equal(stsrv_staged_count(f->db, "t", 900), 5);
    stsrv_make_aborts(&r, "t", 900, 900);
    r.ab[0].one_event = 1;
    r.ab[0].index = 5; /* the last so far */
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 0);
    stage_n(f, 900, 0, 6, 2, 'o');
    reopen(f); /* the d keys are durable */
    assert_int_equal(stsrv_staged_count(f->db, "t", 900), 6);
    commit_n(f, "t", 900, 0x500, 6);
    stsrv_collected *c = calloc(1, sizeof(*c));
    stsrv_read_all(f->srv, "t", c);
    static const uint32_t idx[6] = {0, 1, 3, 4, 6, 7};
    assert_int_equal(c->n, 6);
    stsrv_expect_txn(c, 0, 6, 0x500, 'o', idx, 0, 1);
    free(c);
}

/* ---- 6. the legacy mode: gens staged in the column family ---- */

/* Writes, straight into <dir>/rocksdb (the store closed), what a store of
 * the version before staging files left: the tenant's staging column
 * family "s:t" with gen 1 (xid 50, idx 0..2, bodies u0..u2) and gen 2 (xid
 * 60, idx 0..1, bodies v0..v1) as `X` keys, their `G` keys, `N` = 3, and no
 * `F` key. */
static void write_legacy_staging(const fx *f)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/rocksdb", f->dir);
    rocksdb_options_t *o = rocksdb_options_create();
    char *e = NULL;
    size_t n = 0;
    char **names = rocksdb_list_column_families(o, path, &n, &e);
    if (e)
        fail_msg("list column families: %s", e);
    const rocksdb_options_t **ov = calloc(n, sizeof(*ov));
    rocksdb_column_family_handle_t **hv = calloc(n, sizeof(*hv));
    assert_non_null(ov);
    assert_non_null(hv);
    for (size_t i = 0; i < n; i++) {
        ov[i] = o;
        assert_string_not_equal(names[i], "s:t"); /* nothing staged yet */
    }
    rocksdb_t *db =
        rocksdb_open_column_families(o, path, (int)n, (const char *const *)names, ov, hv, &e);
    if (e)
        fail_msg("open: %s", e);
    rocksdb_column_family_handle_t *s = rocksdb_create_column_family(db, o, "s:t", &e);
    if (e)
        fail_msg("create s:t: %s", e);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    static const struct {
        uint64_t gen;
        uint32_t xid, n;
        char tag;
    } g[2] = {{1, 50, 3, 'u'}, {2, 60, 2, 'v'}};
    for (size_t x = 0; x < 2; x++) {
        for (uint32_t i = 0; i < g[x].n; i++) { /* X t \0 gen(8) 'e' idx(4) -> subxid(4) json */
            char k[64], v[64];
            size_t kl = st_dbi_key_prefix(k, 'X', "t");
            wh_put_be64((uint8_t *)k + kl, g[x].gen);
            k[kl + 8] = 'e';
            wh_put_be32((uint8_t *)k + kl + 9, i);
            wh_put_be32((uint8_t *)v, g[x].xid);
            int l = snprintf(v + 4, sizeof(v) - 4, "\"b\":\"%c%u\"}", g[x].tag, i);
            rocksdb_writebatch_put_cf(wb, s, k, kl + 13, v, 4 + (size_t)l);
        }
        char k[64], v[8]; /* G t \0 xid(4) -> gen(8) */
        size_t kl = st_dbi_key_prefix(k, 'G', "t");
        wh_put_be32((uint8_t *)k + kl, g[x].xid);
        wh_put_be64((uint8_t *)v, g[x].gen);
        rocksdb_writebatch_put_cf(wb, s, k, kl + 4, v, 8);
    }
    char k[64], v[8]; /* N t \0 -> 3 */
    size_t kl = st_dbi_key_prefix(k, 'N', "t");
    wh_put_be64((uint8_t *)v, 3);
    rocksdb_writebatch_put_cf(wb, s, k, kl, v, 8);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    rocksdb_write(db, wo, wb, &e);
    if (e)
        fail_msg("write: %s", e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_writebatch_destroy(wb);
    rocksdb_column_family_handle_destroy(s);
    for (size_t i = 0; i < n; i++)
        rocksdb_column_family_handle_destroy(hv[i]);
    rocksdb_close(db);
    rocksdb_list_column_families_destroy(names, n);
    rocksdb_options_destroy(o);
    free(ov);
    free(hv);
}

/* The stored value of the event at (lsn, seq) of tenant: its length and
 * the byte after commit_ts (0x01: a reference into the staging column
 * family, 0x02: into a staging file). */
static void stored_kind(fx *f, const char *tenant, uint64_t lsn, uint32_t seq, size_t *len,
                        int *mark)
{
    st_tenant *t = st_dbi_tenant_find(f->db, tenant, 0);
    assert_non_null(t);
    assert_non_null(t->ev);
    char k[ST_KEY_MAX], *e = NULL;
    size_t kl = st_dbi_key_event(k, tenant, lsn, seq), vl = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(f->db->rdb, ro, t->ev, k, kl, &vl, &e);
    rocksdb_readoptions_destroy(ro);
    assert_null(e);
    assert_non_null(v);
    *len = vl;
    *mark = vl > 8 ? (unsigned char)v[8] : -1;
    rocksdb_free(v);
}

/* A store upgraded while transactions streamed in the staging column
 * family (gens 1 and 2, no F key): at its first use of the staging the F
 * key makes gen 3 the first staged in a file. xid 50 goes on in the column
 * family (no file for gen 1) and commits with references 0x01 (25 bytes);
 * a new xid gets a file and references 0x02 (29 bytes); every event reads
 * back whole, also after a restart; the gens before F stay in the column
 * family after it (a one_event abort there deletes the `e` key: no `d`
 * key, no file). */
static void test_legacy_mode(void **state)
{
    fx *f = *state;
    stsrv_append_req a;
    stsrv_make_append(&a, "t", 1, 0x100, 0); /* the tenant exists, nothing staged */
    assert_int_equal(stsrv_stage_call(f->srv, &a.req, NULL), 1);
    store_close(f);
    write_legacy_staging(f);
    store_open(f);

    assert_int_equal(count_files(f, -1), 0);
    assert_int_equal(stsrv_staged_count(f->db, "t", 50), 3);
    assert_int_equal(gen_of(f, "t", 50), 1);
    stage_n(f, 50, 0, 3, 2, 'u'); /* the stream goes on: idx 3..4 */
    assert_int_equal(count_files(f, -1), 0);
    assert_int_equal(stsrv_staged_count(f->db, "t", 50), 5);
    commit_n(f, "t", 50, 0xC00, 5);
    size_t vl;
    int mark;
    stored_kind(f, "t", 0xC00, 0, &vl, &mark);
    assert_int_equal(mark, 0x01);
    assert_int_equal(vl, 25);

    stage_n(f, 70, 1, 0, 4, 'w'); /* a new xid: a file */
    assert_int_equal(gen_of(f, "t", 70), 3);
    uint32_t cf = stage_cf(f, "t");
    assert_int_equal(count_files(f, -1), 1);
    assert_true(gen_size(f, cf, 3) > 0);
    commit_n(f, "t", 70, 0xD00, 4);
    stored_kind(f, "t", 0xD00, 3, &vl, &mark);
    assert_int_equal(mark, 0x02);
    assert_int_equal(vl, 29);

    reopen(f);
    stage_n(f, 60, 0, 2, 1, 'v'); /* gen 2: still in the column family */
    assert_int_equal(count_files(f, -1), 1);
    static stsrv_stage_req r;
    stsrv_make_aborts(&r, "t", 60, 60); /* a one_event abort there: its e key goes */
    r.ab[0].one_event = 1;
    r.ab[0].index = 1;
    assert_int_equal(stsrv_stage_call(f->srv, &r.req, NULL), 0);
    assert_int_equal(count_files(f, -1), 1);
    commit_n(f, "t", 60, 0xE00, 2);
    stored_kind(f, "t", 0xE00, 1, &vl, &mark);
    assert_int_equal(mark, 0x01);
    stage_n(f, 80, 1, 0, 2, 'y');
    assert_int_equal(gen_of(f, "t", 80), 4);
    assert_true(gen_size(f, cf, 4) > 0);
    commit_n(f, "t", 80, 0xF00, 2);

    reopen(f);
    stsrv_collected *c = calloc(1, sizeof(*c));
    stsrv_read_all(f->srv, "t", c);
    assert_int_equal(c->n, 1 + 5 + 4 + 2 + 2);
    assert_true(c->lsn[0] == 0x100);
    assert_string_equal(c->json[0], "{\"k\":1}");
    stsrv_expect_txn(c, 1, 5, 0xC00, 'u', NULL, 0, 1);
    stsrv_expect_txn(c, 6, 4, 0xD00, 'w', NULL, 0, 1);
    static const uint32_t idx60[2] = {0, 2};
    stsrv_expect_txn(c, 10, 2, 0xE00, 'v', idx60, 0, 1);
    stsrv_expect_txn(c, 12, 2, 0xF00, 'y', NULL, 0, 1);
    free(c);
}

/* ---- 7. a damaged record of a committed gen ---- */

/* Reads tenant from (lsn, seq) (max_events): the status, the error into
 * err (empty: none), the events into c. */
static int read_once(fx *f, const char *tenant, uint64_t lsn, uint32_t seq, uint32_t max_events,
                     stsrv_collected *c, char *err, size_t errlen)
{
    stsrv_read_req r;
    stsrv_make_read(&r, tenant, NULL, 1, lsn, seq, 0);
    r.r.max_events = max_events;
    Walhook__Reply rep;
    void *cookie;
    int st = stsrv_call(f->srv, &r.req, &rep, &cookie);
    snprintf(err, errlen, "%s", rep.error ? rep.error : "");
    c->n = 0;
    if (st == 0)
        for (size_t i = 0; i < rep.read->n_events; i++)
            stsrv_collect(c, rep.read->events[i]);
    st_server_done(f->srv, &rep, cookie);
    return st;
}

/* A byte of a committed gen's file changed (a disk's damage): a Read
 * reaching that event fails with an error naming the event's position,
 * the record's offset and the gen, instead of returning other bytes; the
 * events before and after it still read, the store goes on (appends,
 * maintenance, a restart, which does not cut a committed gen's file). */
static void test_damaged_committed_record(void **state)
{
    fx *f = *state;
    stage_n(f, 700, 1, 0, 10, 'd');
    uint32_t cf = stage_cf(f, "t");
    uint64_t gen = gen_of(f, "t", 700);
    commit_n(f, "t", 700, 0x900, 10);
    char p[256];
    spath(f, cf, gen, p, sizeof(p));
    size_t bl;
    char *b = fread_all(p, &bl);
    uint64_t off[16];
    uint32_t idx[16];
    assert_int_equal(rec_offsets(b, bl, off, idx, 16), 10);
    assert_int_equal(idx[4], 4);
    char flip = (char)(b[off[4] + ST_SFILE_HDR + 3] ^ 0x20); /* in idx 4's json */
    fwrite_at(p, (int64_t)(off[4] + ST_SFILE_HDR + 3), &flip, 1);
    char lenb[4]; /* idx 7's json_len: past the file's end */
    wh_put_be32((uint8_t *)lenb, 0x10000);
    fwrite_at(p, (int64_t)(off[7] + 4), lenb, 4);
    assert_int_equal(fsize(p), (int64_t)bl);
    free(b);

    stsrv_collected *c = calloc(1, sizeof(*c));
    char err[WH_ERRLEN], want[128];
    for (int round = 0; round < 2; round++) {
        int st = read_once(f, "t", 0, 0, 1000, c, err, sizeof(err));
        assert_int_not_equal(st, 0);
        snprintf(want, sizeof(want), "seq 4");
        if (strstr(err, want) == NULL)
            fail_msg("error '%s' does not name '%s'", err, want);
        snprintf(want, sizeof(want), "offset %" PRIu64 " of generation %" PRIu64, off[4], gen);
        if (strstr(err, want) == NULL)
            fail_msg("error '%s' does not name '%s'", err, want);
        /* before it */
        assert_int_equal(read_once(f, "t", 0, 0, 4, c, err, sizeof(err)), 0);
        assert_int_equal(c->n, 4);
        stsrv_expect_txn(c, 0, 4, 0x900, 'd', NULL, 0, 1);
        /* between the two damaged records */
        assert_int_equal(read_once(f, "t", 0x900, 4, 2, c, err, sizeof(err)), 0);
        assert_int_equal(c->n, 2);
        assert_int_equal(c->seq[0], 5);
        char w[96];
        stsrv_expect_json(w, sizeof(w), 6, 'd', 6);
        assert_string_equal(c->json[1], w);
        /* the second damaged one */
        assert_int_not_equal(read_once(f, "t", 0x900, 6, 10, c, err, sizeof(err)), 0);
        snprintf(want, sizeof(want), "offset %" PRIu64 " of generation %" PRIu64, off[7], gen);
        if (strstr(err, want) == NULL)
            fail_msg("error '%s' does not name '%s'", err, want);
        /* after it */
        assert_int_equal(read_once(f, "t", 0x900, 7, 2, c, err, sizeof(err)), 0);
        assert_int_equal(c->n, 2);
        assert_int_equal(c->seq[0], 8);
        stsrv_expect_json(w, sizeof(w), 9, 'd', 9);
        assert_string_equal(c->json[1], w);

        stsrv_append_req a; /* the store goes on */
        stsrv_make_append(&a, "t", 1, 0xA00 + (uint64_t)round, 0);
        assert_int_equal(stsrv_stage_call(f->srv, &a.req, NULL), 1);
        st_db_maintain(f->db);
        reopen(f);
        assert_int_equal(fsize(p), (int64_t)bl); /* a committed gen's file is not cut */
    }
    free(c);
}

/* BUG (open, left failing for the lead): a damaged record in the middle
 * of an open gen's file (a disk's damage; every append before the last
 * was synced, so no crash leaves it), with acknowledged records after it.
 * Before a restart the commit fails naming the record's offset (nothing
 * stored). After a restart the sweep's trim takes the damaged record for
 * a torn tail and cuts the file back to it, dropping the 7 acknowledged
 * records after it (logged as "bytes of an append cut short removed"),
 * and the commit then stores 3 events of 10 and acknowledges the commit
 * LSN: acknowledged staged events lost without an error. Expected: the
 * commit never stores the transaction without them (it fails, as before
 * the restart). */
static void test_damaged_open_record_restart(void **state)
{
    fx *f = *state;
    stage_n(f, 720, 1, 0, 5, 'm');
    stage_n(f, 720, 0, 5, 5, 'm');
    uint32_t cf = stage_cf(f, "t");
    uint64_t gen = gen_of(f, "t", 720);
    char p[256];
    spath(f, cf, gen, p, sizeof(p));
    size_t bl;
    char *b = fread_all(p, &bl);
    uint64_t off[16];
    uint32_t idx[16];
    assert_int_equal(rec_offsets(b, bl, off, idx, 16), 10);
    char flip = (char)(b[off[3] + ST_SFILE_HDR + 3] ^ 0x20); /* in idx 3's json */
    fwrite_at(p, (int64_t)(off[3] + ST_SFILE_HDR + 3), &flip, 1);
    free(b);

    static stsrv_stage_req r;
    stsrv_make_commit(&r, "t", 720, 0x900, 0);
    Walhook__Reply rep;
    void *cookie;
    assert_int_not_equal(stsrv_call(f->srv, &r.req, &rep, &cookie), 0);
    char want[128];
    snprintf(want, sizeof(want), "generation %" PRIu64 ": damaged record at offset %" PRIu64, gen,
             off[3]);
    if (rep.error == NULL || strstr(rep.error, want) == NULL)
        fail_msg("error '%s' does not name '%s'", rep.error ? rep.error : "", want);
    st_server_done(f->srv, &rep, cookie);
    stsrv_collected *c = calloc(1, sizeof(*c));
    stsrv_read_all(f->srv, "t", c);
    assert_int_equal(c->n, 0);

    reopen(f); /* the commit is sent again after the store restarted */
    stsrv_make_commit(&r, "t", 720, 0x900, 0);
    int st = stsrv_call(f->srv, &r.req, &rep, &cookie);
    uint32_t stored = st == 0 ? rep.append->stored : 0;
    st_server_done(f->srv, &rep, cookie);
    stsrv_read_all(f->srv, "t", c);
    if (st == 0 || c->n != 0)
        fail_msg("after a restart the commit stored %u events (%zu read) of the 10 acknowledged, "
                 "the file cut from %zu to %" PRId64 " bytes",
                 stored, c->n, bl, fsize(p));
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_torn_tail_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_partial_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_staged_torn_tail_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_unsorted_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_sent_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_whole_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_drop_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_tenant_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_event_abort_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_committed_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_open_record_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
