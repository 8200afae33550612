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
static int inj_hold_fail; /* the next sync waits until another one returned 0, then fails */
static int inj_holding;   /* a sync waits so */
static int inj_passed;    /* a sync returned 0 while one was held */
static int inj_real;      /* syncs that reached the C library */

/* 1: fd is a WAL file or a directory */
static int inj_watched(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode))
        return 1;
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
    if (!inj_watched(fd)) {
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
    if (inj_fail_next) {
        inj_fail_next = 0;
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

static void run_child(int (*fn)(const char *dir), const char *name)
{
    char dir[128];
    stdb_fx_mkdtemp(dir, sizeof(dir), name);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(dir));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    wh_test_rmtree(dir);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_beside_failed_one),
        cmocka_unit_test(test_dir_sync_failed),
        cmocka_unit_test(test_other_db_after_failed_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
