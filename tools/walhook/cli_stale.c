/* cli_stale: finds and stops daemons of a previous instance. */
#include "cli_stale.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "cli_sup.h"
#include "wh_util.h"

#define STALE_MAX 8
#define STALE_KILL_WAIT_MS 3000

static const char *const daemon_names[] = {"store", "ingestor", "dispatcher", "admin"};

typedef struct stale_proc {
    pid_t pid;
    char name[32]; /* "walhook-store" */
    char how[64];  /* "pid file store.pid" or "holder of rocksdb/LOCK" */
} stale_proc;

/* Basename of /proc/PID/exe without " (deleted)"; WH_ERR when the process
 * is gone (or a zombie, which has no exe). */
static int proc_exe_name(pid_t pid, char *out, size_t len)
{
    char link[64], target[4096];
    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return WH_ERR;
    target[n] = '\0';
    char *del = strstr(target, " (deleted)");
    if (del != NULL)
        *del = '\0';
    const char *slash = strrchr(target, '/');
    wh_strlcpy(out, slash ? slash + 1 : target, len);
    return WH_OK;
}

/* State letter and parent of PID from /proc/PID/stat; WH_ERR when gone. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return WH_ERR;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain anything */
    int pp = 0;
    if (p == NULL || sscanf(p + 1, " %c %d", state, &pp) != 2)
        return WH_ERR;
    *ppid = (pid_t)pp;
    return WH_OK;
}

/* 1 while PID runs a walhook-* daemon (not a zombie); its name in name. */
static int is_daemon(pid_t pid, char *name, size_t len)
{
    char exe[256], state = 0;
    pid_t ppid;
    if (pid <= 1 || pid == getpid() || proc_exe_name(pid, exe, sizeof(exe)) != WH_OK ||
        proc_stat(pid, &state, &ppid) != WH_OK || state == 'Z')
        return 0;
    for (size_t i = 0; i < WH_ARRAY_LEN(daemon_names); i++) {
        char want[32];
        snprintf(want, sizeof(want), "walhook-%s", daemon_names[i]);
        if (strcmp(exe, want) == 0) {
            wh_strlcpy(name, want, len);
            return 1;
        }
    }
    return 0;
}

/* The pid of the walhook up that started PID (CLI_SUP_ENV in its
 * environment), 0 when none did, -1 when the environment is unreadable. */
static pid_t started_by(pid_t pid)
{
    char path[64], buf[65536];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    if (n == 0)
        return -1; /* exiting: its memory, and so its environment, is gone */
    buf[n] = '\0';
    const char *key = CLI_SUP_ENV "=";
    size_t klen = strlen(key);
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
        if (strncmp(buf + i, key, klen) == 0)
            return (pid_t)strtol(buf + i + klen, NULL, 10);
    return 0;
}

static void add(stale_proc *v, int *n, pid_t pid, const char *how)
{
    char name[32];
    for (int i = 0; i < *n; i++)
        if (v[i].pid == pid)
            return;
    if (*n >= STALE_MAX || !is_daemon(pid, name, sizeof(name)))
        return;
    v[*n].pid = pid;
    wh_strlcpy(v[*n].name, name, sizeof(v[*n].name));
    wh_strlcpy(v[*n].how, how, sizeof(v[*n].how));
    (*n)++;
}

static pid_t pidfile_pid(const char *data_dir, const char *daemon)
{
    char path[4200], buf[32];
    snprintf(path, sizeof(path), "%s/%s.pid", data_dir, daemon);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    long pid = fgets(buf, sizeof(buf), f) != NULL ? strtol(buf, NULL, 10) : 0;
    fclose(f);
    return pid > 1 && pid < 1 << 30 ? (pid_t)pid : 0;
}

/* The process holding a POSIX lock on <data_dir>/rocksdb/LOCK, or 0. */
static pid_t lock_holder(const char *data_dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rocksdb/LOCK", data_dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    pid_t holder = 0;
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0)
        holder = fl.l_pid;
    close(fd);
    return holder;
}

/* Waits up to ms for every listed process to be gone; returns how many are
 * left. */
static int wait_gone(stale_proc *v, int n, int ms)
{
    uint64_t until = wh_now_ms() + (uint64_t)ms;
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            char name[32];
            if (v[i].pid > 0 && !is_daemon(v[i].pid, name, sizeof(name)))
                v[i].pid = -v[i].pid; /* gone: keep it, negated, for the log */
            left += v[i].pid > 0;
        }
        if (left == 0 || wh_now_ms() >= until)
            return left;
        wh_sleep_ms(50);
    }
}

int cli_stale_stop(const char *data_dir, int term_wait_ms, char *err, size_t errlen)
{
    stale_proc v[STALE_MAX];
    int n = 0;
    for (size_t i = 0; i < WH_ARRAY_LEN(daemon_names); i++) {
        char how[64];
        snprintf(how, sizeof(how), "pid file %s.pid", daemon_names[i]);
        pid_t pid = pidfile_pid(data_dir, daemon_names[i]);
        if (pid > 0)
            add(v, &n, pid, how);
    }
    pid_t holder = lock_holder(data_dir);
    if (holder > 0)
        add(v, &n, holder, "holder of rocksdb/LOCK");
    if (n == 0)
        return WH_OK;

    /* Only the daemons of a walhook up that is gone are ours to stop. */
    for (int i = 0; i < n; i++) {
        char exe[256];
        pid_t up = started_by(v[i].pid);
        if (up < 0 && wait_gone(&v[i], 1, STALE_KILL_WAIT_MS) == 0)
            continue; /* it was exiting while we looked (a SIGTERM from its walhook up) */
        if (up <= 0)
            return wh_seterr(err, errlen,
                             "%s (pid %d) runs on the data directory %s and was not started by "
                             "walhook up; stop it first",
                             v[i].name, (int)v[i].pid, data_dir);
        if (up != getpid() && proc_exe_name(up, exe, sizeof(exe)) == WH_OK &&
            strcmp(exe, "walhook") == 0)
            return wh_seterr(err, errlen,
                             "another walhook up (pid %d) runs on the data directory %s (its %s, "
                             "pid %d); stop it first",
                             (int)up, data_dir, v[i].name, (int)v[i].pid);
    }
    for (int i = 0; i < n; i++) {
        if (v[i].pid <= 0)
            continue; /* already gone (negated by wait_gone) */
        wh_warn("%s (pid %d, %s) of a previous instance is still running on %s; stopping it "
                "(SIGTERM)",
                v[i].name, (int)v[i].pid, v[i].how, data_dir);
        kill(v[i].pid, SIGTERM);
    }
    if (wait_gone(v, n, term_wait_ms) > 0) {
        for (int i = 0; i < n; i++)
            if (v[i].pid > 0) {
                wh_warn("%s (pid %d) of a previous instance did not stop within %d ms of SIGTERM; "
                        "killing it (SIGKILL)",
                        v[i].name, (int)v[i].pid, term_wait_ms);
                kill(v[i].pid, SIGKILL);
            }
        if (wait_gone(v, n, STALE_KILL_WAIT_MS) > 0) {
            for (int i = 0; i < n; i++)
                if (v[i].pid > 0)
                    return wh_seterr(err, errlen,
                                     "%s (pid %d) of a previous instance still runs on %s after "
                                     "SIGKILL",
                                     v[i].name, (int)v[i].pid, data_dir);
        }
    }
    for (int i = 0; i < n; i++)
        wh_info("%s (pid %d) of the previous instance has stopped", v[i].name, (int)-v[i].pid);
    return WH_OK;
}
