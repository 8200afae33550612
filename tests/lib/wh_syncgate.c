/* wh_syncgate: an LD_PRELOAD library for tests that holds the store's WAL
 * syncs at a gate, so a test can see what the pipeline does while an
 * Append is written but not yet durable (test_sync_overlap).
 *
 *   LD_PRELOAD=bin/tests/wh_syncgate.so WH_SYNCGATE=FILE walhook-store ...
 *
 * In a process named walhook-store only (any other process that inherits
 * the variables is left alone): while FILE exists, fdatasync and fsync of
 * a RocksDB WAL file (a name ending in ".log") wait, and FILE.held exists
 * while one waits (created when the wait starts, removed when it ends).
 * While FILE.pass holds a number N > 0, a WAL sync at the gate passes and
 * N is written back less one: the gate holds the (N+1)th sync after it
 * (test_needs_snapshot: a state write passes, the next one is held).
 * When FILE.fail exists, the next WAL sync removes it and fails with EIO
 * (the data stays written: a disk that lost a sync's pages, as far as the
 * store can tell). Everything else, and every sync once FILE is gone,
 * goes straight to the C library. Never in a daemon's build. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static const char *gate; /* NULL: off in this process */

__attribute__((constructor)) static void syncgate_init(void)
{
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *g = getenv("WH_SYNCGATE");
    if (g != NULL && *g != '\0' && strcmp(program_invocation_short_name, "walhook-store") == 0)
        gate = g;
}

static int is_wal(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n < 4)
        return 0;
    path[n] = '\0';
    return strcmp(path + n - 4, ".log") == 0;
}

/* 1: this sync fails (FILE.fail was there, now removed) */
static int fail_once(int fd)
{
    char fail[PATH_MAX];
    if (gate == NULL)
        return 0;
    snprintf(fail, sizeof(fail), "%s.fail", gate);
    return access(fail, F_OK) == 0 && is_wal(fd) && unlink(fail) == 0;
}

/* 1: this sync passes the gate (FILE.pass held a number > 0, now one less) */
static int pass_once(void)
{
    char pass[PATH_MAX];
    snprintf(pass, sizeof(pass), "%s.pass", gate);
    FILE *f = fopen(pass, "r");
    if (f == NULL)
        return 0;
    int n = 0;
    if (fscanf(f, "%d", &n) != 1)
        n = 0;
    fclose(f);
    if (n <= 0)
        return 0;
    f = fopen(pass, "w");
    if (f != NULL) {
        fprintf(f, "%d\n", n - 1);
        fclose(f);
    }
    return 1;
}

static void wait_gate(int fd)
{
    if (gate == NULL || access(gate, F_OK) != 0 || !is_wal(fd) || pass_once())
        return;
    char held[PATH_MAX];
    snprintf(held, sizeof(held), "%s.held", gate);
    FILE *f = fopen(held, "w");
    if (f != NULL)
        fclose(f);
    struct timespec ts = {0, 1000000};
    while (access(gate, F_OK) == 0)
        nanosleep(&ts, NULL);
    unlink(held);
}

/* The gate, then the C library's sync (real) or EIO. */
static int gated(int (*real)(int), int fd)
{
    int saved = errno;
    wait_gate(fd);
    if (fail_once(fd)) {
        errno = EIO;
        return -1;
    }
    errno = saved;
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}

int fdatasync(int fd)
{
    return gated(real_fdatasync, fd);
}

int fsync(int fd)
{
    return gated(real_fsync, fd);
}
