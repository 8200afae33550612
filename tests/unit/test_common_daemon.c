/* Unit tests: the start-up pieces every daemon shares (wh_daemon, wh_util):
 * the data directory rule, the shutdown watchdog, the pid file, the CPU
 * list of cpu_affinity and its effect on the threads started after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wh_daemon.h"
#include "wh_util.h"

static char base[64];

static int setup(void **state)
{
    snprintf(base, sizeof(base), "/tmp/wh_daemon_%d", (int)getpid());
    return mkdir(base, 0700) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_data_dir_rule(void **state)
{
    char dir[128], err[WH_ERRLEN], want[200];
    struct stat st;
    mode_t old = umask(022);

    /* missing: created 0700 with its parent, or left alone when not asked */
    snprintf(dir, sizeof(dir), "%s/a/data", base);
    assert_int_equal(wh_data_dir_prepare(dir, 0, err, sizeof(err)), WH_OK);
    assert_int_not_equal(stat(dir, &st), 0);
    assert_int_equal(wh_data_dir_prepare(dir, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(wh_data_dir_prepare(dir, 1, err, sizeof(err)), WH_OK);

    /* any group or other bit: refused, naming the path and the fix */
    const int modes[] = {0755, 0750, 0705, 0770, 0701, 0710};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        assert_int_equal(chmod(dir, (mode_t)modes[i]), 0);
        err[0] = '\0';
        assert_int_equal(wh_data_dir_prepare(dir, 1, err, sizeof(err)), WH_ERR);
        snprintf(want, sizeof(want), "chmod 700 %s", dir);
        assert_non_null(strstr(err, want));
        assert_int_equal(wh_data_dir_prepare(dir, 0, err, sizeof(err)), WH_ERR);
    }
    assert_int_equal(chmod(dir, 0700), 0);
    assert_int_equal(wh_data_dir_prepare(dir, 0, err, sizeof(err)), WH_OK);

    /* not a directory */
    snprintf(dir, sizeof(dir), "%s/file", base);
    FILE *f = fopen(dir, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(wh_data_dir_prepare(dir, 1, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "not a directory"));
    umask(old);
}

/* Runs fn in a child with its stderr on a pipe; returns the wait status
 * (or -1 when it did not end within limit_ms) and the output in out. */
static int run_child(void (*fn)(void), int limit_ms, char *out, size_t outlen)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    int status = -1;
    uint64_t until = wh_now_ms() + (uint64_t)limit_ms;
    for (;;) {
        struct pollfd p = {fds[0], POLLIN, 0};
        if (poll(&p, 1, 20) == 1 && len + 1 < outlen) {
            ssize_t n = read(fds[0], out + len, outlen - len - 1);
            if (n > 0)
                len += (size_t)n;
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        if (wh_now_ms() >= until) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            status = -1;
            break;
        }
    }
    ssize_t n;
    while (len + 1 < outlen && (n = read(fds[0], out + len, outlen - len - 1)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    return status;
}

/* A teardown stuck for good after the stop request. */
static void stuck_after_stop(void)
{
    char err[WH_ERRLEN];
    wh_log_init("test", WH_LOG_INFO);
    if (wh_shutdown_watchdog_start(300, err, sizeof(err)) != WH_OK)
        _exit(3);
    wh_stop_requested = 1;
    for (;;)
        pause();
}

/* No stop request: the watchdog must leave the process alone. */
static void runs_without_stop(void)
{
    char err[WH_ERRLEN];
    wh_log_init("test", WH_LOG_INFO);
    if (wh_shutdown_watchdog_start(100, err, sizeof(err)) != WH_OK)
        _exit(3);
    usleep(600 * 1000);
    _exit(7);
}

static void test_shutdown_watchdog(void **state)
{
    char out[4096];
    uint64_t t0 = wh_now_ms();
    int st = run_child(stuck_after_stop, 10000, out, sizeof(out));
    assert_int_not_equal(st, -1); /* it ended by itself */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_true(wh_now_ms() - t0 >= 300);
    assert_non_null(strstr(out, "shutdown did not finish within 300 ms"));

    st = run_child(runs_without_stop, 10000, out, sizeof(out));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 7);
    assert_null(strstr(out, "shutdown did not finish"));
}

/* Started with stdin and stderr closed (a shell's <&- 2>&-, some init
 * systems): the stop pipe must not take those descriptors. It did: its read
 * end became fd 0 and its write end fd 2, every log line went into the pipe
 * and the watchdog's poll returned at once, forever (a core at 100 %). */
static void stop_pipe_with_std_fds_closed(void)
{
    close(STDIN_FILENO);
    close(STDERR_FILENO);
    wh_log_init("test", WH_LOG_INFO);
    wh_signals_install();
    int fd = wh_stop_fd();
    if (fd < 0)
        _exit(3);
    if (fd <= STDERR_FILENO)
        _exit(4); /* the pipe took a standard descriptor */
    /* the standard descriptors are open (on /dev/null) again: a file opened
     * later does not become stderr and take the log lines */
    if (fcntl(STDIN_FILENO, F_GETFD) < 0 || fcntl(STDERR_FILENO, F_GETFD) < 0)
        _exit(5);
    wh_info("a log line");
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) != 0)
        _exit(6); /* readable without a stop request */
    wh_stop_request();
    if (poll(&p, 1, 0) != 1 || !wh_stop_requested)
        _exit(7);
    _exit(0);
}

/* The stop pipe's path: a SIGTERM (the handler calls wh_stop_request)
 * starts the watchdog's deadline, and so does a flag set directly (seen at
 * the poll's timeout). */
static void stuck_after_sigterm(void)
{
    char err[WH_ERRLEN];
    wh_log_init("test", WH_LOG_INFO);
    wh_signals_install();
    if (wh_shutdown_watchdog_start(300, err, sizeof(err)) != WH_OK)
        _exit(3);
    kill(getpid(), SIGTERM);
    for (;;)
        pause();
}

static void stuck_after_flag_with_pipe(void)
{
    char err[WH_ERRLEN];
    wh_log_init("test", WH_LOG_INFO);
    wh_signals_install();
    if (wh_shutdown_watchdog_start(300, err, sizeof(err)) != WH_OK)
        _exit(3);
    wh_stop_requested = 1;
    for (;;)
        pause();
}

static void test_stop_pipe(void **state)
{
    char out[4096];
    int st = run_child(stop_pipe_with_std_fds_closed, 10000, out, sizeof(out));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    st = run_child(stuck_after_sigterm, 10000, out, sizeof(out));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(out, "shutdown did not finish within 300 ms"));

    st = run_child(stuck_after_flag_with_pipe, 10000, out, sizeof(out));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(out, "shutdown did not finish within 300 ms"));
}

/* wh_signal_wait: the signal lands on another thread (this one blocks
 * it, as a daemon's main thread may get none of them), and the wait still
 * ends at once through the signal pipe, long before its timeout. */
static void *send_signal(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    wh_sleep_ms(100);                   /* the waiter is in its poll by then, most likely */
    kill(getpid(), (int)(intptr_t)arg); /* handled here: the one thread unblocking it */
    return NULL;
}

static int wait_for_signal_from_thread(int sig)
{
    pthread_t t;
    if (pthread_create(&t, NULL, send_signal, (void *)(intptr_t)sig) != 0)
        return -1;
    uint64_t t0 = wh_now_ms();
    int r = wh_signal_wait(20000);
    uint64_t took = wh_now_ms() - t0;
    pthread_join(t, NULL);
    return r == 1 && took < 10000 ? 0 : -1;
}

static void signal_wait_child(void)
{
    wh_log_init("test", WH_LOG_INFO);
    /* no pipe yet: the timeout, in naps */
    uint64_t t0 = wh_now_ms();
    if (wh_signal_fd() != -1 || wh_signal_wait(50) != 0 || wh_now_ms() - t0 < 50)
        _exit(2);
    wh_signals_install();
    /* not inherited by what a daemon runs; non-blocking (the drain reads it
     * empty, a handler writes to a full one) */
    if (wh_signal_fd() < 0 || wh_signal_fd() <= STDERR_FILENO ||
        !(fcntl(wh_signal_fd(), F_GETFD) & FD_CLOEXEC) ||
        !(fcntl(wh_signal_fd(), F_GETFL) & O_NONBLOCK))
        _exit(3);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* no signal: the timeout */
    t0 = wh_now_ms();
    if (wh_signal_wait(50) != 0 || wh_now_ms() - t0 < 50)
        _exit(4);
    /* SIGHUP on another thread */
    if (wait_for_signal_from_thread(SIGHUP) != 0 || !wh_reload_requested || wh_stop_requested)
        _exit(5);
    /* still set: at once; cleared: the byte was drained, the timeout again */
    if (wh_signal_wait(20000) != 1)
        _exit(6);
    wh_reload_requested = 0;
    t0 = wh_now_ms();
    if (wh_signal_wait(50) != 0 || wh_now_ms() - t0 < 50)
        _exit(7);
    /* SIGTERM on another thread */
    if (wait_for_signal_from_thread(SIGTERM) != 0 || !wh_stop_requested)
        _exit(8);
    _exit(0);
}

static void test_signal_wait(void **state)
{
    char out[4096];
    int st = run_child(signal_wait_child, 30000, out, sizeof(out));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static wh_config pcfg;

static void write_pidfile_and_exit(void)
{
    wh_daemon_pidfile(&pcfg, "unit");
    exit(0); /* atexit removes it */
}

static void test_pidfile(void **state)
{
    char path[200], buf[32], out[256];
    snprintf(pcfg.data_dir, sizeof(pcfg.data_dir), "%s", base);
    snprintf(path, sizeof(path), "%s/unit.pid", base);
    mode_t old = umask(022);
    wh_daemon_pidfile(&pcfg, "unit");
    umask(old);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_int_equal(strtol(buf, NULL, 10), (long)getpid());
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0); /* not readable by others */
    /* a child (another daemon) writes its own and removes it at exit */
    int s = run_child(write_pidfile_and_exit, 10000, out, sizeof(out));
    assert_true(WIFEXITED(s));
    assert_int_not_equal(access(path, F_OK), 0);
}

/* wh_cpulist_parse: what a list holds, and each error naming the item */
static void test_cpulist_parse(void **state)
{
    cpu_set_t set;
    char err[WH_ERRLEN];
    assert_int_equal(wh_cpulist_parse("1", &set, err, sizeof(err)), WH_OK);
    assert_int_equal(CPU_COUNT(&set), 1);
    assert_true(CPU_ISSET(1, &set));
    assert_int_equal(wh_cpulist_parse(" 0-2 , 5,7-7", &set, err, sizeof(err)), WH_OK);
    assert_int_equal(CPU_COUNT(&set), 5);
    assert_true(CPU_ISSET(0, &set) && CPU_ISSET(2, &set) && CPU_ISSET(5, &set) &&
                CPU_ISSET(7, &set));
    assert_false(CPU_ISSET(3, &set) || CPU_ISSET(6, &set));
    assert_int_equal(wh_cpulist_parse("1023", &set, err, sizeof(err)), WH_OK);

    assert_int_equal(wh_cpulist_parse("", &set, err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "item 1 is not a CPU number below 1024 or a range such as \"0-3\"");
    assert_int_equal(wh_cpulist_parse("0,,1", &set, err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "item 2 is not a CPU number below 1024 or a range such as \"0-3\"");
    assert_int_equal(wh_cpulist_parse("1024", &set, err, sizeof(err)), WH_ERR);
    assert_int_equal(wh_cpulist_parse("-1", &set, err, sizeof(err)), WH_ERR);
    assert_int_equal(wh_cpulist_parse("3-1", &set, err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "item 1: a range is \"a-b\" with a <= b < 1024 (\"0-3\")");
    assert_int_equal(wh_cpulist_parse("0-", &set, err, sizeof(err)), WH_ERR);
    assert_int_equal(wh_cpulist_parse("0 1", &set, err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "item 1 is followed by '1', not ','");
    assert_int_equal(wh_cpulist_parse("0;1", &set, err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "item 1 is followed by ';', not ','");
}

static void *report_affinity(void *arg)
{
    cpu_set_t *out = arg;
    if (sched_getaffinity(0, sizeof(*out), out) != 0)
        CPU_ZERO(out);
    return NULL;
}

/* wh_daemon_affinity: confines the calling thread and the threads it starts
 * afterwards; "" changes nothing; a CPU the process may not use is refused
 * with the CPUs it may use named. */
static void test_affinity(void **state)
{
    cpu_set_t orig, now;
    char err[WH_ERRLEN];
    assert_int_equal(sched_getaffinity(0, sizeof(orig), &orig), 0);
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &orig))
            last = c;
    assert_true(last >= 0);

    wh_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(wh_daemon_affinity(&cfg, err, sizeof(err)), WH_OK);
    assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
    assert_true(CPU_EQUAL(&now, &orig));

    snprintf(cfg.cpu_affinity, sizeof(cfg.cpu_affinity), "%d", last);
    assert_int_equal(wh_daemon_affinity(&cfg, err, sizeof(err)), WH_OK);
    assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
    assert_int_equal(CPU_COUNT(&now), 1);
    assert_true(CPU_ISSET(last, &now));
    pthread_t t;
    cpu_set_t child;
    assert_int_equal(pthread_create(&t, NULL, report_affinity, &child), 0);
    pthread_join(t, NULL);
    assert_int_equal(CPU_COUNT(&child), 1);
    assert_true(CPU_ISSET(last, &child));
    assert_int_equal(sched_setaffinity(0, sizeof(orig), &orig), 0);

    if (last < CPU_SETSIZE - 1) { /* a CPU this process may not run on */
        snprintf(cfg.cpu_affinity, sizeof(cfg.cpu_affinity), "%d", CPU_SETSIZE - 1);
        assert_int_equal(wh_daemon_affinity(&cfg, err, sizeof(err)), WH_ERR);
        assert_non_null(strstr(err, "setting 'cpu_affinity': '1023': sched_setaffinity: "));
        assert_non_null(strstr(err, "(this process may run on CPUs "));
        assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
        assert_true(CPU_EQUAL(&now, &orig));
    }
    snprintf(cfg.cpu_affinity, sizeof(cfg.cpu_affinity), "1,x");
    assert_int_equal(wh_daemon_affinity(&cfg, err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "setting 'cpu_affinity': '1,x': item 2 is not a CPU number below "
                             "1024 or a range such as \"0-3\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_dir_rule), cmocka_unit_test(test_shutdown_watchdog),
        cmocka_unit_test(test_stop_pipe),     cmocka_unit_test(test_signal_wait),
        cmocka_unit_test(test_pidfile),       cmocka_unit_test(test_cpulist_parse),
        cmocka_unit_test(test_affinity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
