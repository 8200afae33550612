/* wh_daemon: shared start-up, Stats endpoint and process metrics. */
#include "wh_daemon.h"
#include "wh_budget.h"
#include "wh_metrics.h"
#include "wh_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* process_start_time_seconds: when this process started (close enough: its
 * constructors run before main) */
static int64_t process_start_us;
__attribute__((constructor)) static void note_start(void)
{
    process_start_us = wh_wallclock_us();
}

void wh_ipc_tls_configure(const wh_config *cfg)
{
    wh_ipc_tls_set(cfg->ipc_tls_cert, cfg->ipc_tls_key, cfg->ipc_tls_ca, cfg->ipc_tls_server_name);
    wh_ipc_direct_set(cfg->ipc_direct);
}

static void warn_line(void *arg, const char *msg)
{
    (void)arg;
    wh_warn("%s", msg);
}

const char *wh_daemon_init(int argc, char **argv, const char *daemon, wh_config *cfg)
{
    char prog[64], err[WH_ERRLEN];
    snprintf(prog, sizeof(prog), "walhook-%s", daemon);
    /* before any file it keeps open: none of them may become stderr */
    wh_stdfds_open();
    /* Stored rows, sockets and pid files are for this user only. */
    umask(077);
    const char *path = wh_config_parse_args(argc, argv, prog);
    if (wh_config_load(cfg, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(2);
    }
    if (wh_data_dir_prepare(cfg->data_dir, 1, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(2);
    }
    /* Memory: few malloc arenas. Request buffers (IPC messages of about
     * 512 KiB, batches, RocksDB's write batches and arena blocks) are reused
     * from the heap: from mmap, every one of them was a fresh mapping,
     * zero-filled page by page and unmapped again (page faults, munmap and
     * TLB shootdowns were a fifth of the CPU on the hot path). Blocks above
     * WH_MMAP_THRESHOLD still come from mmap; free memory above
     * WH_TRIM_THRESHOLD at the top of a heap is returned. */
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, WH_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, WH_TRIM_THRESHOLD);
    int level = wh_log_level_parse(cfg->log_level);
    wh_log_init(daemon, level < 0 ? WH_LOG_INFO : level);
    wh_log_set_format(wh_log_format_parse(cfg->log_format));
    /* secrets in files group or others may read: said, not refused */
    wh_config_check_secret_files(cfg, path, warn_line, NULL);
    if (wh_daemon_sched(cfg, daemon, err, sizeof(err)) != WH_OK)
        wh_warn("%s; keeping the scheduling policy this process was started with", err);
    char plain[4 * WH_URL_MAX];
    if (wh_config_plaintext_endpoints(cfg, 0, plain, sizeof(plain)) > 0)
        wh_warn("ipc.allow_plaintext_tcp is true and these endpoints are plain tcp:// beyond "
                "the loopback: %s. Such a link has no authentication and no encryption: anyone "
                "who can connect to the store reads every secret of the runtime state (DSN "
                "passwords, signing secrets) and rewrites it (targets, settings). Use tls+tcp:// "
                "or ipc:// on a shared volume",
                plain);
    if (wh_config_plaintext_endpoints(cfg, 1, plain, sizeof(plain)) > 0)
        wh_warn("plain tcp:// on the loopback: %s. Every local user and process of this host "
                "can connect to it, and the store serves every secret of the runtime state and "
                "takes new versions of it from whoever connects; on a host you share, use "
                "ipc:// (sockets 0600 in a 0700 directory) or tls+tcp://",
                plain);
    if (wh_daemon_affinity(cfg, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(2);
    }
    wh_ipc_tls_configure(cfg);
    wh_signals_install();
    if (wh_shutdown_watchdog_start(WH_SHUTDOWN_DEADLINE_MS, err, sizeof(err)) != WH_OK)
        wh_warn("%s; shutdown is not bounded", err);
    return path;
}

int wh_daemon_sched(const wh_config *cfg, const char *daemon, char *err, size_t errlen)
{
    /* The hot path hands every small batch from thread to thread (walsender
     * -> ingestor -> store -> dispatcher -> HTTP): as SCHED_OTHER each
     * hand-off preempted whatever ran on that CPU, often the walsender, which
     * then fell behind the writers for a few hundred ms at a time. The
     * store stays SCHED_OTHER with "auto": its threads serve several
     * tenants, and a light tenant's append must preempt a flooding one's
     * thread (INTERNALS "CPU scheduling"). */
    int batch = strcmp(cfg->cpu_scheduling, "batch") == 0 ||
                (strcmp(cfg->cpu_scheduling, "auto") == 0 && strcmp(daemon, "store") != 0);
    int want = batch ? SCHED_BATCH : SCHED_OTHER;
    int cur = sched_getscheduler(0);
    if (cur < 0)
        return wh_seterr(err, errlen, "cpu_scheduling: sched_getscheduler: %s", strerror(errno));
    if (cur == want)
        return WH_OK;
    if (cur != SCHED_OTHER && cur != SCHED_BATCH) {
        wh_info("cpu_scheduling = %s: keeping the scheduling policy %d this process was started "
                "with",
                cfg->cpu_scheduling, cur);
        return WH_OK;
    }
    struct sched_param sp = {.sched_priority = 0};
    if (sched_setscheduler(0, want, &sp) != 0)
        return wh_seterr(err, errlen, "cpu_scheduling = %s: sched_setscheduler(%s): %s",
                         cfg->cpu_scheduling, batch ? "SCHED_BATCH" : "SCHED_OTHER",
                         strerror(errno));
    return WH_OK;
}

/* One number of a CPU list at *p (digits only), below CPU_SETSIZE. */
static int cpu_number(const char **p, long *out)
{
    if (!isdigit((unsigned char)**p))
        return WH_ERR;
    long v = 0;
    while (isdigit((unsigned char)**p)) {
        v = v * 10 + (**p - '0');
        if (v >= CPU_SETSIZE)
            return WH_ERR;
        (*p)++;
    }
    *out = v;
    return WH_OK;
}

int wh_cpulist_parse(const char *s, cpu_set_t *set, char *err, size_t errlen)
{
    CPU_ZERO(set);
    const char *p = s;
    for (int item = 1;; item++) {
        while (*p == ' ')
            p++;
        long lo, hi;
        if (cpu_number(&p, &lo) != WH_OK)
            return wh_seterr(err, errlen,
                             "item %d is not a CPU number below %d or a range such as \"0-3\"",
                             item, CPU_SETSIZE);
        hi = lo;
        if (*p == '-') {
            p++;
            if (cpu_number(&p, &hi) != WH_OK || hi < lo)
                return wh_seterr(err, errlen,
                                 "item %d: a range is \"a-b\" with a <= b < %d (\"0-3\")", item,
                                 CPU_SETSIZE);
        }
        for (long c = lo; c <= hi; c++)
            CPU_SET((int)c, set);
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return WH_OK;
        if (*p != ',')
            return wh_seterr(err, errlen, "item %d is followed by '%c', not ','", item, *p);
        p++;
    }
}

/* "0-1,3" from set, into out */
static void cpulist_format(const cpu_set_t *set, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE && n < outlen; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int e = c;
        while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
            e++;
        int w = e > c ? snprintf(out + n, outlen - n, "%s%d-%d", n ? "," : "", c, e)
                      : snprintf(out + n, outlen - n, "%s%d", n ? "," : "", c);
        if (w < 0)
            break;
        n += (size_t)w;
        c = e;
    }
}

int wh_daemon_affinity(const wh_config *cfg, char *err, size_t errlen)
{
    if (cfg->cpu_affinity[0] == '\0')
        return WH_OK;
    char sub[WH_ERRLEN], had[128] = "?";
    cpu_set_t want, allowed;
    if (wh_cpulist_parse(cfg->cpu_affinity, &want, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "setting 'cpu_affinity': '%s': %s", cfg->cpu_affinity, sub);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0)
        cpulist_format(&allowed, had, sizeof(had));
    if (sched_setaffinity(0, sizeof(want), &want) != 0)
        return wh_seterr(err, errlen,
                         "setting 'cpu_affinity': '%s': sched_setaffinity: %s (this process may "
                         "run on CPUs %s)",
                         cfg->cpu_affinity, strerror(errno), had);
    wh_info("cpu_affinity: running on CPUs %s (started with %s)", cfg->cpu_affinity, had);
    return WH_OK;
}

/* Waits in poll on the stop pipe (wh_stop_request), not in a 10 Hz poll of
 * the flag that woke every idle daemon ten times a second; the timeout only
 * bounds how late it sees a flag set without wh_stop_request. */
#define WH_WATCHDOG_POLL_MS 1000
static void *shutdown_watchdog(void *arg)
{
    int deadline_ms = (int)(intptr_t)arg;
    int fd = wh_stop_fd();
    while (!wh_stop_requested) {
        if (fd < 0) {
            wh_sleep_ms(100);
            continue;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, WH_WATCHDOG_POLL_MS) != 1 || wh_stop_requested)
            continue;
        if (p.revents & (POLLNVAL | POLLERR | POLLHUP)) {
            fd = -1; /* not the pipe any more: back to naps, not a spin */
            continue;
        }
        /* readable without a stop: nothing of this process wrote it; drain
         * it, or poll returns at once forever */
        char buf[64];
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
    }
    uint64_t until = wh_now_ms() + (uint64_t)deadline_ms;
    for (uint64_t now = wh_now_ms(); now < until; now = wh_now_ms())
        wh_sleep_ms((int)(until - now < 100 ? until - now : 100));
    wh_error("shutdown did not finish within %d ms of the stop request; exiting now "
             "(everything acknowledged is already durable)",
             deadline_ms);
    _exit(1);
    return NULL;
}

int wh_shutdown_watchdog_start(int deadline_ms, char *err, size_t errlen)
{
    /* The thread keeps the stop signals blocked: they go to the daemon's own
     * threads, whose sleeps and polls they interrupt. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &at, shutdown_watchdog, (void *)(intptr_t)deadline_ms);
    pthread_attr_destroy(&at);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return wh_seterr(err, errlen, "cannot start the shutdown watchdog: %s", strerror(rc));
    return WH_OK;
}

static char pidfile_path[4200];
static pid_t pidfile_pid;

static void pidfile_remove(void)
{
    char buf[32];
    FILE *f = fopen(pidfile_path, "r");
    if (f == NULL)
        return;
    long pid = fgets(buf, sizeof(buf), f) != NULL ? strtol(buf, NULL, 10) : 0;
    fclose(f);
    if (pid == (long)pidfile_pid && getpid() == pidfile_pid)
        unlink(pidfile_path);
}

void wh_daemon_pidfile(const wh_config *cfg, const char *daemon)
{
    char tmp[sizeof(pidfile_path) + 16];
    snprintf(pidfile_path, sizeof(pidfile_path), "%s/%s.pid", cfg->data_dir, daemon);
    snprintf(tmp, sizeof(tmp), "%s.tmp%d", pidfile_path, (int)getpid());
    /* write then rename: a reader never sees a partial file */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL && fd >= 0)
        close(fd);
    if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
        rename(tmp, pidfile_path) != 0) {
        wh_warn("cannot write the pid file %s: %s", pidfile_path, strerror(errno));
        unlink(tmp);
        pidfile_path[0] = '\0';
        return;
    }
    pidfile_pid = getpid();
    atexit(pidfile_remove);
}

int wh_stats_call(wh_client *c, Walhook__Reply **rep, char *err, size_t errlen)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_STATS;
    req.stats = &sr;
    if (wh_client_call(c, &req, rep, err, errlen) != WH_OK)
        return WH_ERR;
    if ((*rep)->body_case != WALHOOK__REPLY__BODY_STATS || (*rep)->stats == NULL) {
        walhook__reply__free_unpacked(*rep, NULL);
        *rep = NULL;
        return wh_seterr(err, errlen, "the reply carries no stats");
    }
    return WH_OK;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

int wh_metric_process(wh_buf *b, const char *daemon)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "daemon=\"%s\"", daemon);
    long rss = wh_peak_rss_kib();
    int rc = wh_metric_header(b, "walhook_up", "gauge", "1 while the daemon runs");
    rc |= wh_metric_u64(b, "walhook_up", labels, 1);
    rc |= wh_metric_header(b, "walhook_peak_rss_bytes", "gauge", "peak resident set size (VmHWM)");
    rc |= wh_metric_i64(b, "walhook_peak_rss_bytes", labels, rss > 0 ? (int64_t)rss * 1024 : 0);
    rc |= wh_metric_header(b, "walhook_build_info", "gauge",
                           "1, labelled with the version and the git revision of the build");
    rc |= wh_buf_printf(b, "walhook_build_info{%s,version=\"%s\",revision=\"%s\"} 1\n", labels,
                        wh_build_version, wh_build_revision);
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    rc |= wh_metric_header(b, "process_cpu_seconds_total", "counter",
                           "user and system CPU time spent in seconds");
    rc |= wh_buf_printf(b, "process_cpu_seconds_total{%s} %.6f\n", labels, cpu);
    long res = resident_bytes(), fds = open_fds();
    rc |= wh_metric_header(b, "process_resident_memory_bytes", "gauge",
                           "resident memory size in bytes");
    rc |= wh_metric_i64(b, "process_resident_memory_bytes", labels, res > 0 ? res : 0);
    rc |= wh_metric_header(b, "process_open_fds", "gauge", "number of open file descriptors");
    rc |= wh_metric_i64(b, "process_open_fds", labels, fds > 0 ? fds : 0);
    rc |= wh_metric_header(b, "process_start_time_seconds", "gauge",
                           "start time of the process since the Unix epoch in seconds");
    rc |= wh_buf_printf(b, "process_start_time_seconds{%s} %.3f\n", labels,
                        (double)process_start_us / 1e6);
    rc |= wh_budget_metrics(b); /* the plan the daemon checked at start, if any */
    return rc == WH_OK ? WH_OK : WH_ERR;
}

typedef struct stats_mem {
    Walhook__StatsReply sr;
    wh_buf text;
    char reason[WH_REASON_LEN];
} stats_mem;

void wh_stats_reply(Walhook__Reply *rep, void **cookie, const char *daemon, wh_stats_fn fn,
                    void *arg)
{
    stats_mem *m = calloc(1, sizeof(*m));
    *cookie = NULL;
    if (m == NULL) {
        wh_reply_error(rep, 500, "%s: out of memory", daemon);
        return;
    }
    walhook__stats_reply__init(&m->sr);
    wh_buf_init(&m->text, 0);
    const char *state = "running";
    int ready = 1;
    if (wh_metric_process(&m->text, daemon) != WH_OK ||
        fn(arg, &m->text, &state, &ready, m->reason, sizeof(m->reason)) != WH_OK ||
        wh_buf_cstr(&m->text) != WH_OK) {
        wh_buf_free(&m->text);
        free(m);
        wh_reply_error(rep, 500, "%s: cannot render metrics", daemon);
        return;
    }
    m->sr.daemon = (char *)daemon;
    m->sr.state = (char *)state;
    m->sr.ready = ready != 0;
    m->sr.metrics_text = m->text.data;
    m->sr.reason = m->reason;
    rep->body_case = WALHOOK__REPLY__BODY_STATS;
    rep->stats = &m->sr;
    *cookie = m;
}

void wh_stats_reply_free(void *cookie)
{
    stats_mem *m = cookie;
    if (m == NULL)
        return;
    wh_buf_free(&m->text);
    free(m);
}

struct wh_control {
    wh_server *srv;
    const char *daemon;
    wh_stats_fn fn;
    void *arg;
};

static void control_handle(void *arg, const Walhook__Request *req, Walhook__Reply *rep,
                           void **cookie)
{
    wh_control *c = arg;
    if (req->body_case != WALHOOK__REQUEST__BODY_STATS) {
        wh_reply_error(rep, 400,
                       "%s: unsupported request (the control endpoint answers Stats only)",
                       c->daemon);
        return;
    }
    wh_stats_reply(rep, cookie, c->daemon, c->fn, c->arg);
}

static void control_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    wh_stats_reply_free(cookie);
}

int wh_control_start(wh_control **out, const char *url, const char *daemon, wh_stats_fn fn,
                     void *arg, char *err, size_t errlen)
{
    wh_control *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return wh_seterr(err, errlen, "out of memory");
    c->daemon = daemon;
    c->fn = fn;
    c->arg = arg;
    if (wh_server_start(&c->srv, url, 1, WH_BUDGET_CONTROL_REQ_BYTES, control_handle, control_done,
                        c, err, errlen) != WH_OK) {
        free(c);
        return WH_ERR;
    }
    *out = c;
    return WH_OK;
}

void wh_control_stop(wh_control *c)
{
    if (c == NULL)
        return;
    wh_server_stop(c->srv);
    free(c);
}
