/* Unit tests of st_walfs's spare inodes (st_walfs.cc, WalFs): a WAL or
 * table file RocksDB deletes is emptied and kept as walhook-spare-N, and
 * the next one created takes it; a spare left by an earlier process (even
 * one with bytes in it) is taken and starts empty; a file with another hard
 * link, or one a writer or a reader (of this process or another) still has
 * open, is deleted, never emptied; a spare somebody has open or with
 * another link is not taken; a store opened without st_walfs removes the
 * spares. On a plain RocksDB with st_walfs installed, reopened to read
 * everything back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "../../services/store/st_walfs.h"
#include "stdb_fixture.h"

typedef struct wfx {
    char dir[128];
    rocksdb_options_t *o;
    st_walfs *w;
    rocksdb_t *db;
} wfx;

static int setup(void **state)
{
    wfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    stdb_fx_mkdtemp(f->dir, sizeof(f->dir), "test_store_walfs");
    *state = f;
    return 0;
}

static void db_close(wfx *f)
{
    if (f->db != NULL)
        rocksdb_close(f->db);
    f->db = NULL;
    st_walfs_free(f->w); /* after the DB, as st_walfs.h asks */
    f->w = NULL;
    if (f->o != NULL)
        rocksdb_options_destroy(f->o);
    f->o = NULL;
}

static void db_open(wfx *f)
{
    char err[256];
    char *e = NULL;
    f->o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(f->o, 1);
    rocksdb_options_set_write_buffer_size(f->o, 64 << 10);
    rocksdb_options_set_disable_auto_compactions(f->o, 1);
    f->w = st_walfs_install(f->o, 64 << 10, err, sizeof(err));
    assert_non_null(f->w);
    f->db = rocksdb_open(f->o, f->dir, &e);
    if (e != NULL)
        fail_msg("open: %s", e);
}

static int teardown(void **state)
{
    wfx *f = *state;
    db_close(f);
    wh_test_rmtree(f->dir);
    free(f);
    return 0;
}

static void put_range(wfx *f, int from, int to, char fill)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char k[32], v[1000];
    memset(v, fill, sizeof(v));
    for (int i = from; i < to; i++) {
        snprintf(k, sizeof(k), "k%08d", i);
        char *e = NULL;
        rocksdb_put(f->db, wo, k, strlen(k), v, sizeof(v), &e);
        if (e != NULL)
            fail_msg("put: %s", e);
    }
    rocksdb_writeoptions_destroy(wo);
}

static void flush(wfx *f)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    char *e = NULL;
    rocksdb_flush(f->db, fo, &e);
    rocksdb_flushoptions_destroy(fo);
    if (e != NULL)
        fail_msg("flush: %s", e);
}

/* every key in [from, to) holds 1000 bytes of fill */
static void check_range(wfx *f, int from, int to, char fill)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char k[32];
    for (int i = from; i < to; i++) {
        snprintf(k, sizeof(k), "k%08d", i);
        size_t len = 0;
        char *e = NULL;
        char *v = rocksdb_get(f->db, ro, k, strlen(k), &len, &e);
        if (e != NULL || v == NULL)
            fail_msg("get %s: %s", k, e ? e : "missing");
        assert_int_equal(len, 1000);
        assert_int_equal(v[0], fill);
        assert_int_equal(v[999], fill);
        rocksdb_free(v);
    }
    rocksdb_readoptions_destroy(ro);
}

/* the walhook-spare-* files in dir: how many, and their bytes together */
static int spares(const char *dir, off_t *bytes)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    *bytes = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "walhook-spare-", 14) != 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        *bytes += st.st_size;
        n++;
    }
    closedir(d);
    return n;
}

/* Flushes switch WALs: each WAL RocksDB deletes becomes an empty spare, the
 * next WAL (or table file) is created on one, and the data survives a
 * reopen. */
/* Spares are made and taken only under a write lease (fcntl F_SETLEASE):
 * where the file system or fs.leases-enable refuses leases, st_walfs
 * deletes and creates files as RocksDB does, and the tests of reuse skip. */
static void need_leases(const wfx *f)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/lease-probe", f->dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    int ok = fcntl(fd, F_SETLEASE, F_WRLCK) == 0;
    if (ok)
        fcntl(fd, F_SETLEASE, F_UNLCK);
    close(fd);
    unlink(p);
    if (!ok) {
        print_message("skipped: no write lease on files in %s: st_walfs makes no spares there\n",
                      f->dir);
        skip();
    }
}

static void test_spares_reused(void **state)
{
    wfx *f = *state;
    need_leases(f);
    db_open(f);
    for (int r = 0; r < 6; r++) {
        put_range(f, r * 100, (r + 1) * 100, (char)('a' + r));
        flush(f);
    }
    assert_true(st_walfs_reused(f->w) >= 4);
    off_t bytes = 0;
    int n = spares(f->dir, &bytes);
    assert_true(n >= 1 && n <= 4);
    assert_int_equal(bytes, 0);
    db_close(f);
    db_open(f);
    for (int r = 0; r < 6; r++)
        check_range(f, r * 100, (r + 1) * 100, (char)('a' + r));
}

/* A spare an earlier process left, even one with bytes in it (not what
 * st_walfs leaves, but a file of that name), is taken by the next new file
 * and starts empty: what is written after it reads back after a reopen,
 * and none of the old bytes does. */
static void test_leftover_spare(void **state)
{
    wfx *f = *state;
    need_leases(f);
    db_open(f);
    put_range(f, 0, 10, 'x');
    db_close(f);
    char p[256];
    snprintf(p, sizeof(p), "%s/walhook-spare-0", f->dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    db_open(f); /* its new WAL takes the spare */
    assert_true(st_walfs_reused(f->w) >= 1);
    put_range(f, 10, 20, 'y');
    db_close(f);
    db_open(f);
    check_range(f, 0, 10, 'x');
    check_range(f, 10, 20, 'y');
}

/* dir/name into dst (cap bytes), checked not cut */
static void join(char *dst, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(dst, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

/* A table file with another hard link (as a checkpoint makes) is deleted
 * when RocksDB is done with it, not emptied: the link keeps its bytes. */
static void test_hard_link_kept(void **state)
{
    wfx *f = *state;
    db_open(f);
    put_range(f, 0, 50, 'a');
    flush(f);
    put_range(f, 0, 50, 'b');
    flush(f);
    char links[256];
    snprintf(links, sizeof(links), "%s.links", f->dir);
    assert_int_equal(mkdir(links, 0700), 0);
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int nl = 0;
    off_t sizes[16];
    char names[16][256];
    for (struct dirent *e; (e = readdir(d)) != NULL && nl < 16;) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".sst") != 0)
            continue;
        char a[600], b[600];
        join(a, sizeof(a), f->dir, e->d_name);
        join(b, sizeof(b), links, e->d_name);
        assert_int_equal(link(a, b), 0);
        struct stat st;
        assert_int_equal(stat(a, &st), 0);
        sizes[nl] = st.st_size;
        assert_true(l < sizeof(names[nl]));
        memcpy(names[nl], e->d_name, l + 1);
        nl++;
    }
    closedir(d);
    assert_int_equal(nl, 2);
    rocksdb_compact_range(f->db, NULL, 0, NULL, 0); /* both inputs deleted */
    for (int i = 0; i < nl; i++) {
        char a[600], b[600];
        join(a, sizeof(a), f->dir, names[i]);
        join(b, sizeof(b), links, names[i]);
        struct stat st;
        assert_int_not_equal(stat(a, &st), 0); /* gone from the DB */
        assert_int_equal(stat(b, &st), 0);
        assert_int_equal(st.st_size, sizes[i]);
        assert_true(st.st_size > 0);
        unlink(b);
    }
    rmdir(links);
    check_range(f, 0, 50, 'b');
}

/* A file RocksDB deletes while a writer of it is still open is unlinked,
 * not made a spare: that writer's later appends and its close (which
 * truncates the file to the writer's own size) would land in whatever file
 * is created next on the inode. RocksDB 7.8 does this to WALs: a sync
 * write hands an inactive WAL's writer, unclosed, to logs_to_free_
 * (MarkLogsSynced), the next FindObsoleteFiles takes it, and when that is
 * an iterator's cleanup (the last reference to an old SuperVersion) the
 * flush that obsoletes the WAL can delete it before the cleanup closes the
 * writer (seen within seconds with sync writes, 64 KiB memtables and
 * iterators made and destroyed in a loop: a spare grown back to a WAL's
 * size by that close). On demand here: an SstFileWriter (through the same
 * options, so the same st_walfs) holds 000999.sst open in the DB directory
 * while the DB's open deletes it as an unknown table file; the DB then
 * flushes a table file and writes its WAL, and the SstFileWriter finishes.
 * Everything the DB wrote reads back after a reopen. */
static void test_open_writer_not_recycled(void **state)
{
    wfx *f = *state;
    db_open(f);
    put_range(f, 0, 50, 'a');
    flush(f);
    rocksdb_close(f->db);
    f->db = NULL;

    char *e = NULL;
    char p[256];
    join(p, sizeof(p), f->dir, "000999.sst");
    rocksdb_envoptions_t *eo = rocksdb_envoptions_create();
    rocksdb_sstfilewriter_t *w = rocksdb_sstfilewriter_create(eo, f->o);
    rocksdb_sstfilewriter_open(w, p, &e);
    if (e != NULL)
        fail_msg("sst writer open: %s", e);
    char v[1000];
    memset(v, 'z', sizeof(v));
    rocksdb_sstfilewriter_put(w, "x0000", 5, v, sizeof(v), &e);
    if (e != NULL)
        fail_msg("sst writer put: %s", e);

    f->db = rocksdb_open(f->o, f->dir, &e); /* deletes 000999.sst */
    if (e != NULL)
        fail_msg("reopen: %s", e);
    assert_int_not_equal(access(p, F_OK), 0);
    put_range(f, 50, 100, 'b');
    flush(f);
    put_range(f, 100, 150, 'c'); /* in the WAL only */

    char k[16];
    for (int i = 1; i < 200; i++) {
        snprintf(k, sizeof(k), "x%04d", i);
        rocksdb_sstfilewriter_put(w, k, 5, v, sizeof(v), &e);
        if (e != NULL)
            fail_msg("sst writer put: %s", e);
    }
    rocksdb_sstfilewriter_finish(w, &e);
    if (e != NULL)
        fail_msg("sst writer finish: %s", e);
    rocksdb_sstfilewriter_destroy(w);
    rocksdb_envoptions_destroy(eo);

    db_close(f);
    db_open(f);
    check_range(f, 0, 50, 'a');
    check_range(f, 50, 100, 'b');
    check_range(f, 100, 150, 'c');
}

/* an empty file named dir/<n>.<ext> (a store killed inside keep_spare or
 * take_spare leaves one under RocksDB's name) */
static void empty_file(const char *dir, unsigned n, const char *ext, char *path, size_t len)
{
    int l = snprintf(path, len, "%s/%06u.%s", dir, n, ext);
    assert_true(l > 0 && (size_t)l < len);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
}

/* the lowest file number in dir no file name holds, below `below` */
static unsigned free_number(const char *dir, unsigned below, unsigned after)
{
    for (unsigned n = after + 1; n < below; n++) {
        char num[16];
        snprintf(num, sizeof(num), "%06u", n);
        DIR *d = opendir(dir);
        assert_non_null(d);
        int used = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            used |= strstr(e->d_name, num) != NULL;
        closedir(d);
        if (!used)
            return n;
    }
    fail_msg("no free file number below %u", below);
    return 0;
}

/* What a store killed between the two steps of keep_spare or take_spare
 * leaves, and a spare of an earlier process: empty table files and WALs
 * under RocksDB's names, numbered below its live files (a deleted file
 * emptied but not renamed yet, as an earlier st_walfs did) and above them
 * (a new file renamed from a spare but not opened yet). RocksDB opens with its default paranoid
 * checks, nothing acked is lost, and the empty files do not stay under
 * RocksDB's names. */
static void test_crash_leftovers(void **state)
{
    wfx *f = *state;
    db_open(f);
    for (int r = 0; r < 3; r++) {
        put_range(f, r * 100, (r + 1) * 100, (char)('a' + r));
        flush(f);
    }
    put_range(f, 300, 350, 'w'); /* in the WAL only */
    db_close(f);
    char sst_lo[256], log_lo[256], sst_hi[256], log_hi[256];
    unsigned lo1 = free_number(f->dir, 100, 0);
    empty_file(f->dir, lo1, "sst", sst_lo, sizeof(sst_lo));
    empty_file(f->dir, free_number(f->dir, 100, lo1), "log", log_lo, sizeof(log_lo));
    empty_file(f->dir, 990, "sst", sst_hi, sizeof(sst_hi));
    empty_file(f->dir, 991, "log", log_hi, sizeof(log_hi));
    db_open(f);
    check_range(f, 0, 100, 'a');
    check_range(f, 100, 200, 'b');
    check_range(f, 200, 300, 'c');
    check_range(f, 300, 350, 'w');
    put_range(f, 350, 400, 'x');
    flush(f);
    db_close(f);
    db_open(f);
    check_range(f, 300, 350, 'w');
    check_range(f, 350, 400, 'x');
    const char *left[] = {sst_lo, log_lo, sst_hi, log_hi};
    for (int i = 0; i < 4; i++)
        if (access(left[i], F_OK) == 0)
            fail_msg("%s is still there", left[i]);
}

/* the names of dir's files ending in suffix, up to max of them; how many */
static int list_files(const char *dir, const char *suffix, char names[][256], int max)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    size_t sl = strlen(suffix);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l <= sl || strcmp(e->d_name + l - sl, suffix) != 0)
            continue;
        assert_true(n < max);
        assert_true(l < 256);
        memcpy(names[n++], e->d_name, l + 1);
    }
    closedir(d);
    return n;
}

/* fd's whole contents from offset 0 (malloc'd; its size into *len) */
static char *fd_contents(int fd, size_t *len)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    size_t n = 0;
    for (;;) {
        ssize_t r = pread(fd, b + n, (size_t)st.st_size + 1 - n, (off_t)n);
        assert_true(r >= 0);
        if (r == 0)
            break;
        n += (size_t)r;
        assert_true(n <= (size_t)st.st_size); /* nobody writes to it meanwhile */
    }
    *len = n;
    return b;
}

/* What a reader that st_walfs does not know of holds (a descriptor of this
 * process, or of another: walhook-store --dump run against a running
 * store's directory, a backup) keeps its bytes when RocksDB deletes the
 * file, as an unlinked file's do: st_walfs empties and keeps a file as a
 * spare only when no other descriptor has it open. Two table files a
 * compaction deletes, one open here, one in a child process, each checked
 * byte for byte after the deletion. */
static void test_reader_keeps_table_files(void **state)
{
    wfx *f = *state;
    db_open(f);
    put_range(f, 0, 50, 'a');
    flush(f);
    put_range(f, 0, 50, 'b');
    flush(f);
    char names[4][256];
    assert_int_equal(list_files(f->dir, ".sst", names, 4), 2);
    char paths[2][600];
    char *before[2];
    size_t len[2];
    int fd[2];
    for (int i = 0; i < 2; i++) {
        join(paths[i], sizeof(paths[i]), f->dir, names[i]);
        fd[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
        assert_true(fd[i] >= 0);
        before[i] = fd_contents(fd[i], &len[i]);
        assert_true(len[i] > 0);
    }
    close(fd[1]); /* the child holds that one */

    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    char *seen = malloc(len[1] + 1);
    assert_non_null(seen);
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) {
        /* only async-signal-safe calls from here: the DB has threads; a
         * parent gone (a failed assertion) ends the wait for go */
        close(go[1]);
        close(ready[0]);
        int h = open(paths[1], O_RDONLY);
        char b = h >= 0 ? 'r' : 'e';
        if (write(ready[1], &b, 1) != 1 || h < 0 || read(go[0], &b, 1) != 1)
            _exit(2);
        size_t n = 0;
        for (ssize_t r; (r = pread(h, seen + n, len[1] + 1 - n, (off_t)n)) > 0;)
            n += (size_t)r;
        _exit(n == len[1] && memcmp(seen, before[1], n) == 0 ? 0 : 1);
    }
    char b = 0;
    assert_int_equal(read(ready[0], &b, 1), 1);
    assert_int_equal(b, 'r');

    rocksdb_compact_range(f->db, NULL, 0, NULL, 0); /* both inputs deleted */
    int st = 0;
    pid_t waited = write(go[1], "g", 1) == 1 ? waitpid(c, &st, 0) : -1;
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    free(seen);
    assert_int_equal(waited, c);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0); /* the child read all its bytes */
    for (int i = 0; i < 2; i++)
        assert_int_not_equal(access(paths[i], F_OK), 0);

    size_t l0 = 0;
    char *after = fd_contents(fd[0], &l0);
    assert_int_equal(l0, len[0]);
    assert_memory_equal(after, before[0], len[0]);
    free(after);
    close(fd[0]);
    for (int i = 0; i < 2; i++)
        free(before[i]);

    off_t bytes = 0;
    spares(f->dir, &bytes);
    assert_int_equal(bytes, 0);
    check_range(f, 0, 50, 'b');
}

/* The same for a WAL: a descriptor open on the WAL when a flush makes
 * RocksDB delete it reads back every byte of data written to it (RocksDB's
 * close trims the zeros after the data: those may go). */
static void test_reader_keeps_wal(void **state)
{
    wfx *f = *state;
    db_open(f);
    put_range(f, 0, 30, 'a');
    char names[4][256];
    assert_int_equal(list_files(f->dir, ".log", names, 4), 1);
    char p[600];
    join(p, sizeof(p), f->dir, names[0]);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    size_t len = 0;
    char *before = fd_contents(fd, &len);
    size_t data = len;
    while (data > 0 && before[data - 1] == 0)
        data--;
    assert_true(data > 30 * 1000);

    flush(f); /* a new WAL; the old one deleted */
    assert_int_not_equal(access(p, F_OK), 0);
    size_t l = 0;
    char *after = fd_contents(fd, &l);
    assert_true(l >= data);
    assert_memory_equal(after, before, data);
    free(after);
    free(before);
    close(fd);
    check_range(f, 0, 30, 'a');
}

/* a file of 4096 bytes of fill named dir/name (a spare an earlier process
 * left, or one that somebody has open) */
static void junk_file(const char *dir, const char *name, char fill, char *path, size_t len)
{
    join(path, len, dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, fill, sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
}

/* fd holds 4096 bytes of fill, its inode still named path */
static void check_junk(int fd, const char *path, char fill)
{
    size_t len = 0;
    char *b = fd_contents(fd, &len);
    assert_int_equal(len, 4096);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(b[i], fill);
    free(b);
    struct stat a, n;
    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(stat(path, &n), 0);
    assert_int_equal(a.st_ino, n.st_ino);
}

/* A spare that somebody has open (a reader that opened a deleted file by
 * its name just as st_walfs renamed it to a spare's, or a backup copying
 * the directory) or that has another hard link (a copy of the directory
 * made with links) is not taken by a new file: its O_TRUNC and its writes
 * would reach them, and the reader would read a WAL or table file under
 * the name it opened. Such a spare stays as it is; once nobody else has it,
 * it is taken and starts empty. */
static void test_spare_in_use_not_taken(void **state)
{
    wfx *f = *state;
    need_leases(f);
    db_open(f);
    put_range(f, 0, 10, 'x');
    db_close(f);
    char held[256], linked[256], other[300];
    junk_file(f->dir, "walhook-spare-0", 0x5a, held, sizeof(held));
    junk_file(f->dir, "walhook-spare-1", 0x5b, linked, sizeof(linked));
    join(other, sizeof(other), f->dir, "copy-of-spare-1"); /* a name RocksDB leaves */
    assert_int_equal(link(linked, other), 0);
    int fd = open(held, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int lfd = open(other, O_RDONLY | O_CLOEXEC);
    assert_true(lfd >= 0);

    db_open(f); /* a new WAL */
    for (int r = 0; r < 3; r++) {
        put_range(f, 10 + r * 100, 10 + (r + 1) * 100, (char)('a' + r));
        flush(f); /* a table file and a WAL each */
    }
    check_junk(fd, held, 0x5a);
    check_junk(lfd, linked, 0x5b);
    close(fd);
    close(lfd);
    unlink(other);

    put_range(f, 400, 500, 'z');
    flush(f); /* now both may be taken */
    off_t bytes = 0;
    spares(f->dir, &bytes);
    assert_int_equal(bytes, 0);
    db_close(f);
    db_open(f);
    check_range(f, 0, 10, 'x');
    for (int r = 0; r < 3; r++)
        check_range(f, 10 + r * 100, 10 + (r + 1) * 100, (char)('a' + r));
    check_range(f, 400, 500, 'z');
}

/* With store.wal_zero_ahead_bytes = 0 st_walfs keeps no spares, and
 * nothing would take or remove the spares an earlier run left: the store's
 * open removes them. A read-only open (walhook-store --dump, maybe beside
 * a running store that uses them) leaves them. */
static void test_spares_removed_without_zero_fill(void **state)
{
    wfx *f = *state;
    st_db_opts o = {0};
    o.wal_zero_ahead_bytes = 1 << 20;
    st_db *db = NULL;
    stdb_fx_open(&db, f->dir, &o);
    st_db_close(db);
    char rdir[256];
    join(rdir, sizeof(rdir), f->dir, "rocksdb");
    for (int i = 0; i < 4; i++) {
        char p[300], name[32];
        snprintf(name, sizeof(name), "walhook-spare-%d", i);
        join(p, sizeof(p), rdir, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "spare", 5), 5);
        close(fd);
    }
    off_t bytes = 0;
    o.read_only = 1;
    stdb_fx_open(&db, f->dir, &o);
    st_db_close(db);
    assert_int_equal(spares(rdir, &bytes), 4);

    o.read_only = 0;
    o.wal_zero_ahead_bytes = 0;
    stdb_fx_open(&db, f->dir, &o);
    assert_int_equal(spares(rdir, &bytes), 0);
    st_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spares_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_spare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hard_link_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_writer_not_recycled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_keeps_table_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_keeps_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spare_in_use_not_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spares_removed_without_zero_fill, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
