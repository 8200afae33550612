/* wh_pss: the benches' peak-PSS sampler.
 *
 *   wh_pss INTERVAL_MS PID...
 *
 * Reads Pss from /proc/PID/smaps_rollup of every PID every INTERVAL_MS and
 * keeps each one's peak. On SIGTERM/SIGINT, or once every PID is gone, it
 * prints one line per PID, "PID PEAK_KIB" (0 when never read), and exits 0.
 *
 * Why a program: the shell loop it replaces forked an awk and a sleep ten
 * times a second, which cost the machine more CPU than some of the daemons
 * it measured (on a 2-core host, taken from them and from the walsender).
 * Here a sample is three system calls per PID; the kernel's walk of the
 * process's mappings remains, as any PSS reading needs it.
 *
 * With WH_PSS_CPU_LOG=FILE it also appends, at every sample, a line
 * "EPOCH_MS TICKS MINFLT...": the wall-clock time, the CPU (utime + stime,
 * in clock ticks) of every PID together, and each PID's minor page faults
 * so far (in the order of the arguments), so that a bench can tell the CPU
 * and the faults before a moment (the first event's arrival) from the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PSS_MAX_PIDS 64

static volatile sig_atomic_t pss_stop;

static void pss_on_signal(int sig)
{
    (void)sig;
    pss_stop = 1;
}

/* The start of a /proc file into buf (NUL-terminated); 0 when it cannot be
 * read (the process is gone). */
static int pss_proc_read(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return 1;
}

/* Pss in KiB from /proc/PID/smaps_rollup; -1 when it cannot be read. */
static long pss_read(const char *path)
{
    char buf[4096];
    if (!pss_proc_read(path, buf, sizeof(buf)))
        return -1;
    const char *p = strstr(buf, "\nPss:");
    if (p == NULL)
        return -1;
    return strtol(p + 5, NULL, 10);
}

/* utime + stime of /proc/PID/stat in clock ticks, and its minor faults
 * into *minflt; -1 when unreadable. The fields after the command name,
 * which may hold spaces and parentheses, are counted from its last ')'. */
static long long pss_cpu_read(const char *path, long long *minflt)
{
    char buf[1024];
    if (!pss_proc_read(path, buf, sizeof(buf)))
        return -1;
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* after ')': state(3) ... minflt(10) ... utime(14) stime(15) */
    long long v[2] = {0, 0}, flt = 0;
    for (int field = 2; field < 15; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return -1;
        if (field == 9)
            flt = strtoll(p + 1, NULL, 10);
        if (field >= 13)
            v[field - 13] = strtoll(p + 1, NULL, 10);
    }
    *minflt = flt;
    return v[0] + v[1];
}

static void pss_add_ms(struct timespec *t, long ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long interval = argc > 2 ? strtol(argv[1], &end, 10) : 0;
    int n = argc - 2;
    if (interval <= 0 || interval > 60000 || end == NULL || *end != '\0' || n > PSS_MAX_PIDS) {
        fprintf(stderr, "usage: wh_pss INTERVAL_MS PID... (1..60000 ms, at most %d PIDs)\n",
                PSS_MAX_PIDS);
        return 2;
    }
    char paths[PSS_MAX_PIDS][64], stats[PSS_MAX_PIDS][64];
    long peak[PSS_MAX_PIDS];
    long long cpu[PSS_MAX_PIDS], flt[PSS_MAX_PIDS];
    for (int i = 0; i < n; i++) {
        char *e = NULL;
        long pid = strtol(argv[i + 2], &e, 10);
        if (pid <= 0 || e == NULL || *e != '\0') {
            fprintf(stderr, "wh_pss: not a PID: %s\n", argv[i + 2]);
            return 2;
        }
        snprintf(paths[i], sizeof(paths[i]), "/proc/%ld/smaps_rollup", pid);
        snprintf(stats[i], sizeof(stats[i]), "/proc/%ld/stat", pid);
        peak[i] = 0;
        cpu[i] = 0;
        flt[i] = 0;
    }
    FILE *cpulog = NULL;
    const char *cpupath = getenv("WH_PSS_CPU_LOG");
    if (cpupath != NULL && *cpupath != '\0' && (cpulog = fopen(cpupath, "a")) == NULL) {
        fprintf(stderr, "wh_pss: %s: %s\n", cpupath, strerror(errno));
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pss_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!pss_stop) {
        int alive = 0;
        for (int i = 0; i < n; i++) {
            long kb = pss_read(paths[i]);
            if (kb >= 0)
                alive++;
            if (kb > peak[i])
                peak[i] = kb;
        }
        if (alive == 0)
            break;
        if (cpulog != NULL) {
            long long sum = 0;
            for (int i = 0; i < n; i++) {
                long long f = 0, c = pss_cpu_read(stats[i], &f);
                if (c > cpu[i])
                    cpu[i] = c; /* a process gone keeps its last reading */
                if (f > flt[i])
                    flt[i] = f;
                sum += cpu[i];
            }
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            fprintf(cpulog, "%lld %lld", (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, sum);
            for (int i = 0; i < n; i++)
                fprintf(cpulog, " %lld", flt[i]);
            fputc('\n', cpulog);
            fflush(cpulog);
        }
        pss_add_ms(&next, interval);
        while (!pss_stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
    }
    for (int i = 0; i < n; i++)
        printf("%s %ld\n", argv[i + 2], peak[i]);
    if (cpulog != NULL)
        fclose(cpulog);
    return 0;
}
