/* cli_up: `walhook up`. */
#include "cli_up.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_pg.h"
#include "cli_stale.h"
#include "cli_sup.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_dsn.h"
#include "wh_util.h"

static void up_usage(FILE *f)
{
    fprintf(f, "usage: walhook up [-c FILE] [--source DSN] [--target URL]... [--data DIR]\n"
               "                  [--admin HOST:PORT] [--tenant NAME] [--slot NAME]\n"
               "                  [--publication NAME] [--tables SCHEMA.TABLE,...]\n");
}

/* Matches "--name VALUE" or "--name=VALUE"; advances *i. Returns the value,
 * or NULL when argv[*i] is not this option. Sets *missing when the value is
 * absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

/* Overwrites in place the passwords of the DSN v (an argument of ours,
 * copied already) with '*': argv is what `ps` and /proc/PID/cmdline show
 * every user for the whole life of the supervisor. The bytes that
 * wh_dsn_redact would change (between the first and the last change) are
 * masked; the length stays. */
static void argv_hide_password(char *v)
{
    char red[WH_URL_MAX + 64];
    wh_dsn_redact(v, red, sizeof(red));
    size_t n = strlen(v), m = strlen(red), p = 0, q = 0;
    while (p < n && p < m && v[p] == red[p])
        p++;
    if (p == n && p == m)
        return; /* no password */
    while (q < n - p && q < m - p && v[n - 1 - q] == red[m - 1 - q])
        q++;
    memset(v + p, '*', n - p - q);
}

/* The data directory belongs to one walhook up at a time: an exclusive
 * flock on <data_dir>/walhook-up.lock, held until this process exits (the
 * descriptor is close-on-exec: the daemons do not inherit it). The file
 * holds the holder's pid, for the error of the next one. Returns the
 * descriptor, or -1 with the reason in err. */
static int up_lock(const char *data_dir, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/walhook-up.lock", data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        wh_seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long holder = 0;
        /* The holder writes its pid just after it took the lock: two
         * started together may find the file still empty. Wait for it, a
         * second at most. */
        for (int tries = 0; e == EWOULDBLOCK && tries < 100; tries++) {
            char buf[32];
            ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
            if (n > 0) {
                buf[n] = '\0';
                holder = strtol(buf, NULL, 10);
            }
            if (holder > 0)
                break;
            usleep(10 * 1000);
        }
        close(fd);
        if (e == EWOULDBLOCK) {
            if (holder > 0)
                wh_seterr(err, errlen,
                          "another walhook up (pid %ld) runs on the data directory %s (it holds "
                          "%s); stop it first",
                          holder, data_dir, path);
            else
                wh_seterr(err, errlen,
                          "another walhook up runs on the data directory %s (it holds %s); stop "
                          "it first",
                          data_dir, path);
        } else {
            wh_seterr(err, errlen, "cannot lock %s: %s", path, strerror(e));
        }
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    /* pid first, then the length: the file is never seen empty */
    if (pwrite(fd, pid, (size_t)len, 0) != len || ftruncate(fd, len) != 0)
        wh_warn("cannot write the pid into %s: %s", path, strerror(errno));
    return fd;
}

/* Directory of the running walhook binary. */
static int self_dir(char *buf, size_t len, char *err, size_t errlen)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0 || (size_t)n >= len - 1)
        return wh_seterr(err, errlen, "cannot read /proc/self/exe: %s", strerror(errno));
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return wh_seterr(err, errlen, "odd executable path %s", buf);
    if (slash == buf)
        slash[1] = '\0';
    else
        *slash = '\0';
    return WH_OK;
}

int cli_cmd_up(int argc, char **argv)
{
    const char *config_path = NULL;
    wh_buf targets;
    wh_buf_init(&targets, 0);
    int rc = 2;
    static wh_config cfg;
    char err[WH_ERRLEN];

    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            up_usage(stdout);
            rc = 0;
            goto out;
        }
        if ((v = opt_value(argc, argv, &i, "-c", &missing)) ||
            (!missing && (v = opt_value(argc, argv, &i, "--config", &missing)))) {
            config_path = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--source", &missing))) {
            setenv("WALHOOK_SOURCE_DSN", v, 1);
            argv_hide_password((char *)v);
        } else if (!missing && (v = opt_value(argc, argv, &i, "--target", &missing))) {
            if ((targets.len && wh_buf_putc(&targets, ',') != WH_OK) ||
                wh_buf_puts(&targets, v) != WH_OK || wh_buf_cstr(&targets) != WH_OK) {
                fprintf(stderr, "walhook up: out of memory\n");
                rc = 1;
                goto out;
            }
        } else if (!missing && (v = opt_value(argc, argv, &i, "--data", &missing))) {
            setenv("WALHOOK_DATA_DIR", v, 1);
        } else if (!missing && (v = opt_value(argc, argv, &i, "--admin", &missing))) {
            setenv("WALHOOK_ADMIN_LISTEN", v, 1);
        } else if (!missing && (v = opt_value(argc, argv, &i, "--tenant", &missing))) {
            setenv("WALHOOK_TENANT", v, 1);
        } else if (!missing && (v = opt_value(argc, argv, &i, "--slot", &missing))) {
            setenv("WALHOOK_SOURCE_SLOT", v, 1);
        } else if (!missing && (v = opt_value(argc, argv, &i, "--publication", &missing))) {
            setenv("WALHOOK_SOURCE_PUBLICATION", v, 1);
        } else if (!missing && (v = opt_value(argc, argv, &i, "--tables", &missing))) {
            setenv("WALHOOK_SOURCE_TABLES", v, 1);
        } else {
            if (missing)
                fprintf(stderr, "walhook up: %s needs a value\n", argv[i]);
            else
                fprintf(stderr, "walhook up: unknown option '%s'\n", argv[i]);
            up_usage(stderr);
            goto out;
        }
    }
    if (targets.len)
        setenv("WALHOOK_TARGETS", targets.data, 1);

    wh_log_init("walhook", WH_LOG_INFO);
    /* Exactly what every daemon will load: defaults < file < environment. */
    if (wh_config_load(&cfg, config_path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook up: bad configuration: %s\n", err);
        rc = 2;
        goto out;
    }
    int lvl = wh_log_level_parse(cfg.log_level);
    wh_log_init("walhook", lvl < 0 ? WH_LOG_INFO : lvl);
    wh_log_set_format(wh_log_format_parse(cfg.log_format));
    wh_ipc_tls_configure(&cfg);

    /* The same data directory rule as every daemon (which would refuse it
     * one by one): created 0700, refused when group or others can read it. */
    if (wh_data_dir_prepare(cfg.data_dir, 1, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook up: %s\n", err);
        rc = 2;
        goto out;
    }
    /* Before anything else on the data directory: a second walhook up on it
     * (even one started at the same moment) stops here. Held until exit. */
    if (up_lock(cfg.data_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "walhook up: %s\n", err);
        rc = 1;
        goto out;
    }
    /* Daemons of a previous instance still on this data directory would
     * keep RocksDB's LOCK, the slot or an endpoint: stop them first. */
    if (cli_stale_stop(cfg.data_dir, WH_SHUTDOWN_DEADLINE_MS + 2000, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook up: %s\n", err);
        rc = 1;
        goto out;
    }
    if (!cfg.source_dsn[0]) {
        fprintf(stderr, "walhook up: source.dsn is not set (use --source or WALHOOK_SOURCE_DSN)\n");
        rc = 2;
        goto out;
    }
    /* every privilege and object the ingestor needs, each missing one named
     * with its fix: exit 1 now rather than a restart loop later */
    if (cli_pg_preflight(&cfg, "walhook up") != WH_OK) {
        rc = 1;
        goto out;
    }
    char bindir[PATH_MAX];
    if (self_dir(bindir, sizeof(bindir), err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook up: %s\n", err);
        rc = 1;
        goto out;
    }
    /* Children get an absolute config path: it does not matter then where
     * they run from. */
    char abs_cfg[PATH_MAX];
    if (config_path && realpath(config_path, abs_cfg))
        config_path = abs_cfg;

    wh_signals_install();
    wh_info("tenant %s, data in %s, %d target%s; admin listens on http://%s", cfg.tenant,
            cfg.data_dir, cfg.ntargets, cfg.ntargets == 1 ? "" : "s", cfg.admin_listen);
    cli_sup_opts o = {
        .bindir = bindir,
        .config_path = config_path,
        .store_endpoint = cfg.store_endpoint,
        .ingestor_control = cfg.ingestor_control,
        .dispatcher_control = cfg.dispatcher_control,
        .admin_listen = cfg.admin_listen,
        .max_msg = cfg.ipc_max_msg_bytes > 0 ? (size_t)cfg.ipc_max_msg_bytes : (size_t)64 << 20,
        .store_wait_ms = 30000,
    };
    rc = cli_sup_run(&o);
out:
    wh_buf_free(&targets);
    return rc;
}
