/* cli_sup: fork/exec and supervision of the walhook daemons. */
#include "cli_sup.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_tenants.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_ipc.h"
#include "wh_util.h"

#define SUP_BACKOFF_MIN_MS 250
#define SUP_BACKOFF_MAX_MS 10000
/* longer than a daemon's own shutdown deadline: it logs before it is killed */
#define SUP_STOP_WAIT_MS (WH_SHUTDOWN_DEADLINE_MS + 5000)
#define SUP_PROBE_EVERY_MS 100
#define SUP_PROBE_TIMEOUT_MS 300
#define SUP_SLOW_READY_MS 10000 /* a daemon not ready after this is logged, with the cause */
/* Exit code 2 is a daemon's "bad configuration": walhook up re-reads the file
 * and logs why, at most this often per daemon (unless the reason changes). */
#define SUP_CONFIG_LOG_EVERY_MS 60000
/* Every daemon down, each after this many exits 2 in a row: walhook up
 * gives up (exit 2). */
#define SUP_CONFIG_GIVE_UP 3

enum { SUP_STORE, SUP_INGESTOR, SUP_DISPATCHER, SUP_ADMIN, SUP_N };

/* The ingestors of the other tenants of the runtime state (cli_tenants.h). */
static cli_tenants *sup_tenants;

typedef struct sup_child {
    const char *name; /* "store" */
    char path[4096];  /* <bindir>/walhook-store */
    pid_t pid;        /* 0 = not running */
    uint64_t started_ms;
    uint64_t restart_at_ms;    /* when pid == 0: start again at this time */
    int failures;              /* deaths in a row before becoming ready */
    int ready_logged;          /* "is ready" logged for this pid */
    atomic_int probe_pid;      /* the probe thread checks this pid's readiness */
    atomic_int ready_pid;      /* the last pid the probe saw ready */
    int slow_logged;           /* "not ready yet" logged for this pid */
    pthread_mutex_t why_mu;    /* guards why */
    char why[256];             /* the probe's last error for this child */
    int config_failures;       /* exits with code 2 in a row */
    uint64_t config_logged_ms; /* when the last configuration error was logged */
    char config_err[256];      /* and what it said */
} sup_child;

/* The file every daemon is started with (NULL: defaults and environment). */
static const char *sup_config_path;

int cli_sup_next_delay(int *failures, int was_ready)
{
    if (was_ready)
        *failures = 0;
    int n = (*failures)++;
    if (n <= 0)
        return 0;
    int d = SUP_BACKOFF_MIN_MS;
    for (int i = 1; i < n && d < SUP_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < SUP_BACKOFF_MAX_MS ? d : SUP_BACKOFF_MAX_MS;
}

void cli_sup_describe(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "stopped (status 0x%x)", (unsigned)status);
}

/* In a child just forked by walhook up (PARENT): its own process group (the
 * terminal's Ctrl-C reaches only the supervisor, which stops children in
 * order), death with the parent, default signal handling, and the mark that
 * tells a later walhook up the daemon was ours (cli_stale). SIGHUP stays
 * blocked across exec: walhook up forwards a reload to children it has just
 * forked, and with the default action it would kill them before the daemon
 * installs its handler; wh_signals_install unblocks it, and a SIGHUP
 * pending by then is a reload. */
void cli_sup_child_setup(pid_t parent)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigprocmask(SIG_SETMASK, &hup, NULL);
    char up[32];
    snprintf(up, sizeof(up), "%d", (int)parent);
    setenv(CLI_SUP_ENV, up, 1);
}

static int sup_spawn(sup_child *c, const char *config_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        wh_error("cannot fork for %s: %s", c->name, strerror(errno));
        return WH_ERR;
    }
    if (pid == 0) {
        cli_sup_child_setup(parent);
        char *argv[4];
        int n = 0;
        argv[n++] = c->path;
        if (config_path) {
            argv[n++] = "-c";
            argv[n++] = (char *)config_path;
        }
        argv[n] = NULL;
        execv(c->path, argv);
        fprintf(stderr, "walhook: cannot exec %s: %s\n", c->path, strerror(errno));
        _exit(127);
    }
    c->pid = pid;
    c->started_ms = wh_now_ms();
    c->ready_logged = 0;
    c->slow_logged = 0;
    pthread_mutex_lock(&c->why_mu);
    c->why[0] = '\0';
    pthread_mutex_unlock(&c->why_mu);
    atomic_store(&c->ready_pid, 0); /* a reused pid is not ready yet */
    atomic_store(&c->probe_pid, (int)pid);
    wh_info("started walhook-%s (pid %d)", c->name, (int)pid);
    return WH_OK;
}

/* C exited with code 2 (it refused its configuration): re-reads the file as
 * the daemons do and logs the reason as an error, at most every
 * SUP_CONFIG_LOG_EVERY_MS unless the reason changes. The restart keeps its
 * backoff (DELAY_MS); the other daemons keep running. */
static void sup_config_failed(sup_child *c, uint64_t now, int delay_ms)
{
    static wh_config cfg;
    char err[WH_ERRLEN], why[sizeof(c->config_err)];
    if (wh_config_load(&cfg, sup_config_path, err, sizeof(err)) != WH_OK)
        snprintf(why, sizeof(why), "its configuration is invalid: %.200s", err);
    else
        snprintf(why, sizeof(why),
                 "it refused its configuration (its own error is logged above; the file "
                 "itself loads)");
    c->config_failures++;
    if (c->config_logged_ms != 0 && now < c->config_logged_ms + SUP_CONFIG_LOG_EVERY_MS &&
        strcmp(why, c->config_err) == 0)
        return;
    c->config_logged_ms = now;
    wh_strlcpy(c->config_err, why, sizeof(c->config_err));
    wh_error("walhook-%s exited with code 2: %s; it is retried with backoff (next in %d ms) until "
             "that is fixed, the other daemons keep running (%d exit%s 2 in a row; this error is "
             "repeated at most every %d s)",
             c->name, why, delay_ms, c->config_failures, c->config_failures == 1 ? "" : "s",
             SUP_CONFIG_LOG_EVERY_MS / 1000);
}

/* Reaps every exited child; schedules restarts when `restart`. Returns the
 * number of children reaped. */
static int sup_reap(sup_child *ch, int restart)
{
    int n = 0;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        if (cli_tenants_reaped(sup_tenants, pid, status))
            continue;
        for (int i = 0; i < SUP_N; i++) {
            if (ch[i].pid != pid)
                continue;
            char how[128];
            cli_sup_describe(status, how, sizeof(how));
            uint64_t now = wh_now_ms();
            long long up = (long long)(now - ch[i].started_ms);
            int was_ready = ch[i].ready_logged || (atomic_load(&ch[i].ready_pid) == (int)pid &&
                                                   now >= ch[i].started_ms + CLI_SUP_STABLE_MS);
            ch[i].pid = 0;
            atomic_store(&ch[i].probe_pid, 0);
            n++;
            if (restart) {
                /* A daemon that had become ready is restarted at once, and
                 * so is one that failed once before it got there; only one
                 * that keeps dying before it is ready backs off. */
                int d = cli_sup_next_delay(&ch[i].failures, was_ready);
                ch[i].restart_at_ms = now + (uint64_t)d;
                if (d == 0)
                    wh_warn("walhook-%s (pid %d) %s after %lld ms (%s); restarting walhook-%s "
                            "at once",
                            ch[i].name, (int)pid, how, up,
                            was_ready ? "it was ready" : "before it became ready, first time",
                            ch[i].name);
                else
                    wh_warn("walhook-%s (pid %d) %s after %lld ms, before it became ready (%d "
                            "times in a row); restarting walhook-%s in %d ms",
                            ch[i].name, (int)pid, how, up, ch[i].failures, ch[i].name, d);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
                    sup_config_failed(&ch[i], now, d);
                else
                    ch[i].config_failures = 0;
            } else {
                wh_info("walhook-%s (pid %d) %s", ch[i].name, (int)pid, how);
            }
        }
    }
    return n;
}

/* Asks the listed children to stop, waits up to SUP_STOP_WAIT_MS, then
 * kills what is left. */
static void sup_stop(sup_child *ch, const int *which, int nwhich)
{
    int any = 0;
    for (int k = 0; k < nwhich; k++) {
        sup_child *c = &ch[which[k]];
        if (c->pid > 0) {
            wh_info("stopping walhook-%s (pid %d)", c->name, (int)c->pid);
            kill(c->pid, SIGTERM);
            any = 1;
        }
    }
    if (!any)
        return;
    uint64_t deadline = wh_now_ms() + SUP_STOP_WAIT_MS;
    for (;;) {
        sup_reap(ch, 0);
        int left = 0;
        for (int k = 0; k < nwhich; k++)
            left += ch[which[k]].pid > 0;
        if (!left)
            return;
        if (wh_now_ms() >= deadline)
            break;
        wh_sleep_ms(50);
    }
    for (int k = 0; k < nwhich; k++) {
        sup_child *c = &ch[which[k]];
        if (c->pid > 0) {
            wh_warn("walhook-%s (pid %d) did not stop within %d s; killing it", c->name,
                    (int)c->pid, SUP_STOP_WAIT_MS / 1000);
            kill(c->pid, SIGKILL);
            int status;
            if (waitpid(c->pid, &status, 0) == c->pid)
                c->pid = 0;
        }
    }
}

static void sup_stop_all(sup_child *ch)
{
    cli_tenants_stop(sup_tenants);
    sup_tenants = NULL;
    static const int first[] = {SUP_INGESTOR};
    static const int then[] = {SUP_DISPATCHER, SUP_ADMIN};
    static const int last[] = {SUP_STORE};
    sup_stop(ch, first, 1);
    sup_stop(ch, then, 2);
    sup_stop(ch, last, 1);
}

/* Waits until the store answers a Stats request. WH_ERR when it died, the
 * wait timed out, or a stop was requested. */
static int sup_wait_store(sup_child *ch, const cli_sup_opts *o)
{
    char err[WH_ERRLEN];
    wh_client *cl = NULL;
    if (wh_client_open(&cl, o->store_endpoint, 500, o->max_msg, err, sizeof(err)) != WH_OK) {
        wh_error("cannot open a client to the store at %s: %s", o->store_endpoint, err);
        return WH_ERR;
    }
    uint64_t deadline = wh_now_ms() + (uint64_t)o->store_wait_ms;
    int rc = WH_ERR;
    while (!wh_stop_requested) {
        Walhook__Reply *rep = NULL;
        if (wh_stats_call(cl, &rep, err, sizeof(err)) == WH_OK) {
            walhook__reply__free_unpacked(rep, NULL);
            rc = WH_OK;
            break;
        }
        sup_reap(ch, 0);
        if (ch[SUP_STORE].pid == 0) {
            wh_error("walhook-store exited during startup (see its log above)");
            break;
        }
        if (wh_now_ms() >= deadline) {
            wh_error("walhook-store did not answer at %s within %d s: %s", o->store_endpoint,
                     o->store_wait_ms / 1000, err);
            break;
        }
        wh_sleep_ms(100);
    }
    wh_client_close(cl);
    return rc;
}

/* ---- readiness ----
 * A thread asks every running daemon whether it is ready, every
 * SUP_PROBE_EVERY_MS until it is: store, ingestor and dispatcher answer Stats
 * on their endpoints (`ready`, as the admin's /readyz reads it; the
 * ingestor is ready once it streams); the admin is ready once its HTTP port
 * accepts connections. */
typedef struct sup_probe {
    sup_child *ch;
    wh_client *cl[SUP_N]; /* NULL for the admin */
    char admin_host[256], admin_port[16];
    pthread_t thr;
    int started;
    atomic_int stop;
} sup_probe;

/* 1 when something accepts a TCP connection at host:port. */
static int tcp_accepts(const char *host, const char *port)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return 0;
    int ok = 0;
    for (struct addrinfo *a = ai; a && !ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            ok = 1;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            if (poll(&p, 1, SUP_PROBE_TIMEOUT_MS) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                ok = 1;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static int probe_ready(sup_probe *p, int i)
{
    if (i == SUP_ADMIN)
        return tcp_accepts(p->admin_host, p->admin_port);
    if (p->cl[i] == NULL)
        return 0;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN];
    if (wh_stats_call(p->cl[i], &rep, err, sizeof(err)) != WH_OK) {
        pthread_mutex_lock(&p->ch[i].why_mu);
        wh_strlcpy(p->ch[i].why, err, sizeof(p->ch[i].why));
        pthread_mutex_unlock(&p->ch[i].why_mu);
        return 0;
    }
    int ready = rep->stats->ready ? 1 : 0;
    if (!ready) {
        pthread_mutex_lock(&p->ch[i].why_mu);
        snprintf(p->ch[i].why, sizeof(p->ch[i].why), "it answers, not ready: %.200s",
                 rep->stats->reason ? rep->stats->reason : "(no reason given)");
        pthread_mutex_unlock(&p->ch[i].why_mu);
    }
    walhook__reply__free_unpacked(rep, NULL);
    return ready;
}

static void *probe_main(void *arg)
{
    sup_probe *p = arg;
    while (!atomic_load(&p->stop)) {
        for (int i = 0; i < SUP_N && !atomic_load(&p->stop); i++) {
            int pid = atomic_load(&p->ch[i].probe_pid);
            if (pid > 0 && atomic_load(&p->ch[i].ready_pid) != pid && probe_ready(p, i))
                atomic_store(&p->ch[i].ready_pid, pid);
        }
        wh_sleep_ms(SUP_PROBE_EVERY_MS);
    }
    return NULL;
}

/* host:port of admin.listen, with a wildcard host replaced by loopback. */
static void admin_addr(const char *listen, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    const char *h = listen;
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    snprintf(host, hlen, "%.*s", (int)n, h);
    snprintf(port, plen, "%s", colon ? colon + 1 : "8080");
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        snprintf(host, hlen, "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        snprintf(host, hlen, "::1");
}

static void probe_start(sup_probe *p, sup_child *ch, const cli_sup_opts *o)
{
    memset(p, 0, sizeof(*p));
    p->ch = ch;
    const char *urls[SUP_N] = {o->store_endpoint, o->ingestor_control, o->dispatcher_control, NULL};
    for (int i = 0; i < SUP_N; i++) {
        char err[WH_ERRLEN];
        if (urls[i] && urls[i][0] &&
            wh_client_open(&p->cl[i], urls[i], SUP_PROBE_TIMEOUT_MS, o->max_msg, err,
                           sizeof(err)) != WH_OK) {
            wh_warn("walhook-%s: cannot open a client to %s (%s); its readiness is not known, "
                    "so it backs off when it dies",
                    ch[i].name, urls[i], err);
            p->cl[i] = NULL;
        }
    }
    admin_addr(o->admin_listen ? o->admin_listen : "", p->admin_host, sizeof(p->admin_host),
               p->admin_port, sizeof(p->admin_port));
    p->started = pthread_create(&p->thr, NULL, probe_main, p) == 0;
    if (!p->started)
        wh_warn("cannot start the readiness probe: %s", strerror(errno));
}

static void probe_stop(sup_probe *p)
{
    atomic_store(&p->stop, 1);
    if (p->started)
        pthread_join(p->thr, NULL);
    for (int i = 0; i < SUP_N; i++)
        wh_client_close(p->cl[i]);
}

int cli_sup_run(const cli_sup_opts *o)
{
    static const char *const names[SUP_N] = {"store", "ingestor", "dispatcher", "admin"};
    sup_config_path = o->config_path;
    sup_child ch[SUP_N];
    memset(ch, 0, sizeof(ch));
    for (int i = 0; i < SUP_N; i++) {
        pthread_mutex_init(&ch[i].why_mu, NULL);
        ch[i].name = names[i];
        snprintf(ch[i].path, sizeof(ch[i].path), "%.4000s/walhook-%s", o->bindir, names[i]);
        if (access(ch[i].path, X_OK) != 0) {
            wh_error("cannot run %s: %s", ch[i].path, strerror(errno));
            return 1;
        }
    }
    /* The ingestor with the store: it waits for the store itself (and is
     * restarted if it gave up first), meanwhile connecting to PostgreSQL
     * and checking the source (ing_early). The dispatcher and the admin
     * once the store answers: before, their start-up only takes CPU from
     * the store's. */
    if (sup_spawn(&ch[SUP_STORE], o->config_path) != WH_OK)
        return 1;
    if (sup_spawn(&ch[SUP_INGESTOR], o->config_path) != WH_OK) {
        sup_stop_all(ch);
        return 1;
    }
    if (sup_wait_store(ch, o) != WH_OK) {
        int stopped = wh_stop_requested;
        sup_stop_all(ch);
        return stopped ? 0 : 1;
    }
    wh_info("walhook-store answers at %s", o->store_endpoint);
    for (int i = SUP_DISPATCHER; i < SUP_N; i++)
        if (sup_spawn(&ch[i], o->config_path) != WH_OK) {
            sup_stop_all(ch);
            return 1;
        }
    static sup_probe probe;
    probe_start(&probe, ch, o);

    if (cli_tenants_start(&sup_tenants, o->bindir, o->config_path) != WH_OK)
        wh_warn("cannot follow the tenants of the runtime state; only the file's tenant runs");

    int rc = 0;
    while (!wh_stop_requested) {
        sup_reap(ch, 1);
        int bad = 0;
        for (int i = 0; i < SUP_N; i++)
            bad += ch[i].pid == 0 && ch[i].config_failures >= SUP_CONFIG_GIVE_UP;
        if (bad == SUP_N) {
            wh_error("every daemon exits with code 2 (walhook-%s: %s); giving up: fix the "
                     "configuration and start walhook up again",
                     ch[SUP_STORE].name, ch[SUP_STORE].config_err);
            rc = 2;
            break;
        }
        cli_tenants_tick(sup_tenants);
        uint64_t now = wh_now_ms();
        for (int i = 0; i < SUP_N; i++) {
            if (ch[i].pid == 0 && now >= ch[i].restart_at_ms && !wh_stop_requested &&
                (i != SUP_INGESTOR || cli_tenants_default_wanted(sup_tenants))) {
                if (sup_spawn(&ch[i], o->config_path) != WH_OK)
                    ch[i].restart_at_ms = now + (uint64_t)cli_sup_next_delay(&ch[i].failures, 0);
                else
                    now = wh_now_ms(); /* not before the child's started_ms */
            }
            if (ch[i].pid > 0 && !ch[i].ready_logged &&
                atomic_load(&ch[i].ready_pid) == (int)ch[i].pid &&
                now >= ch[i].started_ms + CLI_SUP_STABLE_MS) {
                ch[i].ready_logged = 1;
                ch[i].failures = 0; /* ready: the backoff starts over */
                ch[i].config_failures = 0;
                ch[i].config_logged_ms = 0;
                wh_info("walhook-%s (pid %d) is ready after %llu ms", ch[i].name, (int)ch[i].pid,
                        (unsigned long long)(now - ch[i].started_ms));
            }
            if (ch[i].pid > 0 && !ch[i].ready_logged && !ch[i].slow_logged &&
                now > ch[i].started_ms + SUP_SLOW_READY_MS) {
                char why[256];
                pthread_mutex_lock(&ch[i].why_mu);
                wh_strlcpy(why, ch[i].why[0] ? ch[i].why : "no answer yet", sizeof(why));
                pthread_mutex_unlock(&ch[i].why_mu);
                ch[i].slow_logged = 1;
                wh_warn("walhook-%s (pid %d) is not ready after %d s: %s", ch[i].name,
                        (int)ch[i].pid, SUP_SLOW_READY_MS / 1000, why);
            }
        }
        if (wh_reload_requested) {
            /* Pass SIGHUP on: every daemon re-reads the file itself. */
            wh_reload_requested = 0;
            for (int i = 0; i < SUP_N; i++)
                if (ch[i].pid > 0)
                    kill(ch[i].pid, SIGHUP);
            cli_tenants_signal(sup_tenants, SIGHUP);
            wh_info("reload: SIGHUP sent to the daemons");
        }
        wh_sleep_ms(50);
    }
    if (rc == 0)
        wh_info("stop requested: stopping ingestor, then dispatcher and admin, then store");
    probe_stop(&probe);
    sup_stop_all(ch);
    wh_info("all daemons stopped");
    return rc;
}
