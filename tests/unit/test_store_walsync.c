/* Unit tests of st_walfs's watch of WAL and directory syncs (st_walfs.h):
 * once a sync failed, every later one in the process fails without
 * syncing, and one that returned 0 beside a failing sync of the same file
 * fails too (Linux reports a writeback error to one fdatasync of a
 * descriptor: the other one's 0 proves nothing).
 *
 * The syncs' failures are injected here: this program defines fdatasync
 * and fsync, which come before the C library's for librocksdb's calls too
 * (an executable's symbols come first), and act on WAL files (.log) and
 * directories only: counted when they reach the C library, failed with EIO
 * when asked (the data stays written: a disk that lost a sync's pages, as
 * far as the caller can tell), or held, to make a sync run beside another.
 * RocksDB never syncs one WAL from two threads at once, so the overlap is
 * driven through st_walfs's files directly (walfs_drive.h); the rest on
 * real RocksDB databases too. The watch is per process and sticky, so each
 * case runs in a child process of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "../../services/store/st_walfs.h"
#include "stdb_fixture.h"
#include "walfs_drive.h"

/* ---- the injected syncs ---- */

static pthread_mutex_t inj_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t inj_cv = PTHREAD_COND_INITIALIZER;
static int inj_fail_next; /* the next sync fails */
static int inj_fail_dir;  /* the next sync of a directory fails */
static int inj_hold_fail; /* the next sync waits until another one returned 0, then fails */
static int inj_holding;   /* a sync waits so */
static int inj_passed;    /* a sync returned 0 while one was held */
static int inj_real;      /* syncs that reached the C library */

/* 1: fd is a WAL file, 2: a directory, 0: neither */
static int inj_watched(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode))
        return 2;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    return n >= 4 && memcmp(path + n - 4, ".log", 4) == 0;
}

static int inj_sync(const char *name, int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    int saved = errno;
    int kind = inj_watched(fd);
    if (kind == 0) {
        errno = saved;
        return real(fd);
    }
    pthread_mutex_lock(&inj_mu);
    if (inj_hold_fail) {
        inj_hold_fail = 0;
        inj_holding = 1;
        pthread_cond_broadcast(&inj_cv);
        while (!inj_passed)
            pthread_cond_wait(&inj_cv, &inj_mu);
        inj_holding = 0;
        pthread_mutex_unlock(&inj_mu);
        errno = EIO;
        return -1;
    }
    if (inj_fail_next || (kind == 2 && inj_fail_dir)) {
        inj_fail_next = 0;
        inj_fail_dir = 0;
        pthread_mutex_unlock(&inj_mu);
        errno = EIO;
        return -1;
    }
    inj_real++;
    pthread_mutex_unlock(&inj_mu);
    errno = saved;
    int r = real(fd);
    int e = errno;
    pthread_mutex_lock(&inj_mu);
    if (r == 0 && inj_holding) {
        inj_passed = 1;
        pthread_cond_broadcast(&inj_cv);
    }
    pthread_mutex_unlock(&inj_mu);
    errno = e;
    return r;
}

int fdatasync(int fd)
{
    return inj_sync("fdatasync", fd);
}

int fsync(int fd)
{
    return inj_sync("fsync", fd);
}

static int inj_get(int *v)
{
    pthread_mutex_lock(&inj_mu);
    int r = *v;
    pthread_mutex_unlock(&inj_mu);
    return r;
}

static void inj_set(int *v, int x)
{
    pthread_mutex_lock(&inj_mu);
    *v = x;
    pthread_mutex_unlock(&inj_mu);
}

/* ---- cases, each in a child process (a failed check: its message on
 * stderr, exit 1) ---- */

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "line %d: ", __LINE__);                                                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* fn(dir) in a child process, its stderr into dir/child.err (not a name
 * ending in .log: the injected syncs would take it for a WAL): it must exit
 * with `status`, and the log hold `want` (NULL: anything) */
static void run_child_want(int (*fn)(const char *dir), const char *name, int status,
                           const char *want)
{
    char dir[128], log[256];
    stdb_fx_mkdtemp(dir, sizeof(dir), name);
    snprintf(log, sizeof(log), "%s/child.err", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(99);
        _exit(fn(dir));
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char out[8192] = "";
    FILE *f = fopen(log, "r");
    if (f != NULL) {
        size_t n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        fclose(f);
    }
    wh_test_rmtree(dir);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != status || (want != NULL && strstr(out, want) == NULL))
        fail_msg("the child %s %d (want exit %d%s%s); its stderr:\n%s",
                 WIFEXITED(st) ? "exited" : "died of signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), status, want ? ", and " : "",
                 want ? want : "", out);
}

static void run_child(int (*fn)(const char *dir), const char *name)
{
    run_child_want(fn, name, 0, NULL);
}

/* options with st_walfs installed (zero-fill `chunk` ahead, 0: none) */
static rocksdb_options_t *walfs_opts(uint64_t chunk)
{
    char err[256];
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    if (st_walfs_install(o, chunk, err, sizeof(err)) == NULL) {
        fprintf(stderr, "st_walfs_install: %s\n", err);
        _exit(1); /* the handle is kept for the child's life */
    }
    return o;
}

typedef struct held {
    wfd_file *f;
    int rc;
    char err[512];
} held;

static void *held_sync(void *arg)
{
    held *h = arg;
    h->rc = wfd_file_sync(h->f, h->err, sizeof(h->err));
    return NULL;
}

/* A WAL sync that returned 0 while another sync of the same WAL ran and
 * failed (the kernel told that one alone) fails too; then every later sync
 * fails without reaching the C library: of that WAL, of another WAL, of a
 * directory. */
static int beside(const char *dir, uint64_t chunk)
{
    rocksdb_options_t *o = walfs_opts(chunk);
    char p[256], err[512];
    snprintf(p, sizeof(p), "%s/000007.log", dir);
    wfd_file *f = wfd_file_open(o, p, err, sizeof(err));
    CHECK(f != NULL, "open %s: %s", p, err);
    char data[4096];
    memset(data, 'x', sizeof(data));
    CHECK(wfd_file_append(f, data, sizeof(data), err, sizeof(err)) == 0, "append: %s", err);
    CHECK(wfd_file_sync(f, err, sizeof(err)) == 0, "a first sync: %s", err);

    inj_set(&inj_hold_fail, 1);
    held h = {.f = f};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, held_sync, &h) == 0, "pthread_create");
    pthread_mutex_lock(&inj_mu);
    while (!inj_holding)
        pthread_cond_wait(&inj_cv, &inj_mu);
    pthread_mutex_unlock(&inj_mu);
    CHECK(wfd_file_append(f, data, sizeof(data), err, sizeof(err)) == 0, "append: %s", err);
    int rc = wfd_file_sync(f, err, sizeof(err)); /* 0 from the C library */
    pthread_join(t, NULL);
    CHECK(inj_get(&inj_passed), "the second sync did not reach the C library");
    CHECK(h.rc != 0 && strstr(h.err, "Input/output error") != NULL,
          "the held sync did not fail with EIO: %s", h.rc == 0 ? "OK" : h.err);
    CHECK(rc != 0, "a sync that returned 0 beside a failed sync of the same WAL said OK");
    CHECK(strstr(err, ST_WALFS_REFUSED) != NULL && strstr(err, "Input/output error") != NULL,
          "the sync beside a failed one: %s", err);

    int real = inj_get(&inj_real);
    CHECK(wfd_file_sync(f, err, sizeof(err)) != 0, "a later sync of the WAL said OK");
    CHECK(strstr(err, ST_WALFS_REFUSED) != NULL, "a later sync of the WAL: %s", err);
    snprintf(p, sizeof(p), "%s/000008.log", dir);
    wfd_file *g = wfd_file_open(o, p, err, sizeof(err));
    CHECK(g != NULL, "open %s: %s", p, err);
    CHECK(wfd_file_append(g, data, sizeof(data), err, sizeof(err)) == 0, "append: %s", err);
    CHECK(wfd_file_sync(g, err, sizeof(err)) != 0, "a later sync of another WAL said OK");
    CHECK(strstr(err, ST_WALFS_REFUSED) != NULL, "a later sync of another WAL: %s", err);
    wfd_dir *d = wfd_dir_open(o, dir, err, sizeof(err));
    CHECK(d != NULL, "open %s: %s", dir, err);
    CHECK(wfd_dir_sync(d, err, sizeof(err)) != 0, "a later sync of the directory said OK");
    CHECK(strstr(err, ST_WALFS_REFUSED) != NULL, "a later sync of the directory: %s", err);
    CHECK(inj_get(&inj_real) == real, "%d later syncs reached the C library",
          inj_get(&inj_real) - real);
    wfd_dir_free(d);
    wfd_file_free(g);
    wfd_file_free(f);
    return 0;
}

static int beside_zeroed(const char *dir)
{
    return beside(dir, 64 << 10);
}

/* store.wal_zero_ahead_bytes 0: nothing zero-filled, the syncs watched */
static int beside_unzeroed(const char *dir)
{
    return beside(dir, 0);
}

static void test_sync_beside_failed_one(void **state)
{
    (void)state;
    run_child(beside_zeroed, "test_store_walsync");
    run_child(beside_unzeroed, "test_store_walsync");
}

/* A failed fsync of a directory (the database's holds the WALs, and their
 * entries) refuses every later WAL sync. */
static int dir_failed(const char *dir)
{
    rocksdb_options_t *o = walfs_opts(64 << 10);
    char p[256], err[512];
    snprintf(p, sizeof(p), "%s/000009.log", dir);
    wfd_file *f = wfd_file_open(o, p, err, sizeof(err));
    CHECK(f != NULL, "open %s: %s", p, err);
    CHECK(wfd_file_append(f, "x", 1, err, sizeof(err)) == 0, "append: %s", err);
    wfd_dir *d = wfd_dir_open(o, dir, err, sizeof(err));
    CHECK(d != NULL, "open %s: %s", dir, err);
    inj_set(&inj_fail_next, 1);
    CHECK(wfd_dir_sync(d, err, sizeof(err)) != 0, "the failing directory sync said OK");
    int real = inj_get(&inj_real);
    CHECK(wfd_file_sync(f, err, sizeof(err)) != 0, "a WAL sync after a failed directory sync "
                                                   "said OK");
    CHECK(strstr(err, ST_WALFS_REFUSED) != NULL && strstr(err, "a directory") != NULL,
          "a WAL sync after a failed directory sync: %s", err);
    CHECK(inj_get(&inj_real) == real, "the refused sync reached the C library");
    wfd_dir_free(d);
    wfd_file_free(f);
    return 0;
}

static void test_dir_sync_failed(void **state)
{
    (void)state;
    run_child(dir_failed, "test_store_walsync");
}

/* On real RocksDB databases: once a WAL sync of one failed, a
 * FlushWAL(sync) of another, whose own WAL never failed (RocksDB keeps a
 * failed sync per WAL writer and per database), is refused too; it would
 * sync and say OK. */
static int two_dbs(const char *dir)
{
    rocksdb_t *db[2];
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    for (int i = 0; i < 2; i++) {
        char p[256];
        char *e = NULL;
        snprintf(p, sizeof(p), "%s/db%d", dir, i);
        db[i] = rocksdb_open(walfs_opts(64 << 10), p, &e);
        CHECK(e == NULL, "open %s: %s", p, e);
        rocksdb_put(db[i], wo, "k", 1, "v", 1, &e);
        CHECK(e == NULL, "put: %s", e);
        rocksdb_flush_wal(db[i], 1, &e);
        CHECK(e == NULL, "a first WAL sync: %s", e);
        rocksdb_put(db[i], wo, "l", 1, "v", 1, &e);
        CHECK(e == NULL, "put: %s", e);
    }
    inj_set(&inj_fail_next, 1);
    char *e = NULL;
    rocksdb_flush_wal(db[0], 1, &e);
    CHECK(e != NULL && strstr(e, "While fdatasync") != NULL, "the failing WAL sync: %s",
          e ? e : "OK");
    rocksdb_free(e);
    e = NULL;
    int real = inj_get(&inj_real);
    rocksdb_flush_wal(db[1], 1, &e);
    CHECK(e != NULL, "the other database's WAL sync after a failed one said OK");
    CHECK(strstr(e, ST_WALFS_REFUSED) != NULL && strstr(e, "While fdatasync") != NULL,
          "the other database's WAL sync: %s", e);
    rocksdb_free(e);
    CHECK(inj_get(&inj_real) == real, "the refused sync reached the C library");
    return 0; /* not closed: a database whose WAL sync failed */
}

static void test_other_db_after_failed_sync(void **state)
{
    (void)state;
    run_child(two_dbs, "test_store_walsync");
}

/* The store's own path: a flush's fsync of the database directory failed
 * (RocksDB keeps it as its background error, and the store would exit at
 * its next write, which returns it), then st_db_wal_synced, as a
 * SchemaList or an offset commit waits: RocksDB's FlushWAL(sync) does not
 * look at the background error, and the directory's next fsync returns 0,
 * so it said OK (exit 3 here). The store exits as on any failed WAL
 * sync. */
static int store_dir_failed(const char *dir, int64_t zero_ahead)
{
    char err[WH_ERRLEN];
    st_db_opts o = {.data_dir = dir,
                    .cache_bytes = 1 << 20,
                    .write_buffer_bytes = 1 << 20,
                    .wal_zero_ahead_bytes = zero_ahead};
    st_db *db = NULL;
    CHECK(st_db_open(&db, &o, err, sizeof(err)) == WH_OK, "open: %s", err);
    st_event e = {0x1000, 0, 1, "{}", 2};
    uint64_t durable = 0;
    CHECK(st_db_append(db, "t", &e, 1, 0x1000, &durable, err, sizeof(err)) == WH_OK, "append: %s",
          err);
    inj_set(&inj_fail_dir, 1);
    CHECK(st_db_flush(db, err, sizeof(err)) != WH_OK && strstr(err, "a directory") != NULL,
          "the flush whose directory fsync failed: %s", err);
    if (st_db_wal_synced(db, err, sizeof(err)) == WH_OK) {
        fprintf(stderr, "st_db_wal_synced said OK after a failed directory fsync\n");
        return 3;
    }
    fprintf(stderr, "st_db_wal_synced failed and the store did not exit: %s\n", err);
    return 4;
}

static int store_dir_failed_zeroed(const char *dir)
{
    return store_dir_failed(dir, 1 << 20);
}

/* store.wal_zero_ahead_bytes 0: st_walfs is installed all the same, for
 * the watch alone */
static int store_dir_failed_unzeroed(const char *dir)
{
    return store_dir_failed(dir, 0);
}

static void test_store_wal_synced_after_dir_failed(void **state)
{
    (void)state;
    run_child_want(store_dir_failed_zeroed, "test_store_walsync", 1,
                   "WAL sync refused: a sync failed earlier in this process");
    run_child_want(store_dir_failed_unzeroed, "test_store_walsync", 1,
                   "WAL sync refused: a sync failed earlier in this process");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_beside_failed_one),
        cmocka_unit_test(test_dir_sync_failed),
        cmocka_unit_test(test_other_db_after_failed_sync),
        cmocka_unit_test(test_store_wal_synced_after_dir_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
