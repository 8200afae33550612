/* cli_health: `walhook health` (a container probe that needs no curl) and
 * `walhook status` (every daemon's state and the cause when not ready). */
#include "cli_health.h"

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>

#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_state.h"
#include "wh_util.h"

#define PROBE_TIMEOUT_MS 2000

/* A listening URL (tcp://0.0.0.0:P, tcp:// + "*:P", tcp://[::]:P) is dialed on
 * the loopback: the probe runs next to the daemon. */
static void dial_url(char *out, size_t len, const char *url)
{
    static const char *const any[] = {"0.0.0.0:", "*:", "[::]:", ":"};
    const char *rest = NULL, *scheme = NULL;
    if (strncmp(url, "tcp://", 6) == 0) {
        scheme = "tcp://";
        rest = url + 6;
    } else if (strncmp(url, "tls+tcp://", 10) == 0) {
        scheme = "tls+tcp://";
        rest = url + 10;
    }
    if (rest != NULL)
        for (size_t i = 0; i < WH_ARRAY_LEN(any); i++)
            if (strncmp(rest, any[i], strlen(any[i])) == 0) {
                snprintf(out, len, "%s127.0.0.1:%s", scheme, rest + strlen(any[i]));
                return;
            }
    wh_strlcpy(out, url, len);
}

/* Stats of one daemon: 0 answered (state/ready/reason filled), -1 not. */
static int ask(const wh_config *c, const char *url, char *state, size_t slen, int *ready,
               char *reason, size_t rlen)
{
    char u[WH_URL_MAX + 16], err[WH_ERRLEN];
    dial_url(u, sizeof(u), url);
    wh_client *cl = NULL;
    Walhook__Reply *rep = NULL;
    size_t max = c->ipc_max_msg_bytes > 0 ? (size_t)c->ipc_max_msg_bytes : (size_t)64 << 20;
    if (wh_client_open(&cl, u, PROBE_TIMEOUT_MS, max, err, sizeof(err)) != WH_OK ||
        wh_stats_call(cl, &rep, err, sizeof(err)) != WH_OK) {
        snprintf(reason, rlen, "no answer on %.200s: %.280s", u, err);
        wh_client_close(cl);
        return -1;
    }
    wh_strlcpy(state, rep->stats->state ? rep->stats->state : "", slen);
    *ready = rep->stats->ready;
    wh_strlcpy(reason, rep->stats->reason ? rep->stats->reason : "", rlen);
    walhook__reply__free_unpacked(rep, NULL);
    wh_client_close(cl);
    return 0;
}

/* The admin answers when its port accepts a connection (addr: host:port,
 * NULL = admin.listen). */
static int ask_admin(const wh_config *c, const char *addr, char *reason, size_t rlen)
{
    char host[256];
    const char *shown = addr ? addr : c->admin_listen;
    wh_strlcpy(host, shown, sizeof(host));
    char *colon = strrchr(host, ':');
    if (!colon) {
        snprintf(reason, rlen, "'%s' is not host:port", shown);
        return -1;
    }
    *colon = '\0';
    const char *port = colon + 1;
    char *h = host;
    if (*h == '[') {
        h++;
        char *e = strchr(h, ']');
        if (e)
            *e = '\0';
    }
    if (!*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "*"))
        h = "127.0.0.1";
    else if (!strcmp(h, "::"))
        h = "::1";
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(h, port, &hints, &ai);
    if (gai != 0) {
        snprintf(reason, rlen, "admin %s: %s", shown, gai_strerror(gai));
        return -1;
    }
    int ok = -1;
    for (struct addrinfo *a = ai; a && ok < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            ok = 0;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&p, 1, PROBE_TIMEOUT_MS) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                ok = 0;
            else
                snprintf(reason, rlen, "admin %s: %s", shown,
                         soerr ? strerror(soerr) : "timed out");
        } else {
            snprintf(reason, rlen, "admin %s: %s", shown, strerror(errno));
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static void health_usage(FILE *f)
{
    fprintf(f, "usage: walhook health --daemon store|ingestor|dispatcher|admin [-c FILE]\n"
               "                      [--tenant NAME] [--ready]\n"
               "       walhook health --address HOST:PORT\n"
               "  asks the daemon over its control endpoint (the admin: its port);\n"
               "  exit 0 when it answers (with --ready: and is ready), 1 if not, 2 usage;\n"
               "  --address: any TCP port that accepts (e.g. a sample receiver)\n");
}

/* -c FILE / --config FILE / --config=FILE; returns 1 when argv[*i] was one. */
static int config_arg(int argc, char **argv, int *i, const char **path)
{
    if ((strcmp(argv[*i], "-c") == 0 || strcmp(argv[*i], "--config") == 0) && *i + 1 < argc) {
        *path = argv[++*i];
        return 1;
    }
    if (strncmp(argv[*i], "--config=", 9) == 0) {
        *path = argv[*i] + 9;
        return 1;
    }
    return 0;
}

int cli_cmd_health(int argc, char **argv)
{
    const char *path = NULL, *daemon = NULL, *tenant = NULL, *address = NULL;
    int want_ready = 0;
    for (int i = 1; i < argc; i++) {
        if (config_arg(argc, argv, &i, &path))
            continue;
        if (strcmp(argv[i], "--daemon") == 0 && i + 1 < argc)
            daemon = argv[++i];
        else if (strncmp(argv[i], "--daemon=", 9) == 0)
            daemon = argv[i] + 9;
        else if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
            tenant = argv[++i];
        else if (strcmp(argv[i], "--ready") == 0)
            want_ready = 1;
        else if (strcmp(argv[i], "--address") == 0 && i + 1 < argc)
            address = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            health_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "walhook health: unexpected argument '%s'\n", argv[i]);
            health_usage(stderr);
            return 2;
        }
    }
    if (address && !daemon)
        daemon = "admin";
    if (!daemon || (strcmp(daemon, "store") && strcmp(daemon, "ingestor") &&
                    strcmp(daemon, "dispatcher") && strcmp(daemon, "admin"))) {
        fprintf(stderr, "walhook health: --daemon must be store, ingestor, dispatcher or admin\n");
        health_usage(stderr);
        return 2;
    }
    static wh_config c;
    char err[WH_ERRLEN];
    if (wh_config_load(&c, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook health: bad configuration: %s\n", err);
        return 2;
    }
    wh_ipc_tls_configure(&c);
    char reason[WH_REASON_LEN] = "", state[64] = "";
    int ready = 0, rc;
    if (strcmp(daemon, "admin") == 0) {
        rc = ask_admin(&c, address, reason, sizeof(reason));
        ready = rc == 0;
        wh_strlcpy(state, rc == 0 ? "listening" : "", sizeof(state));
    } else {
        char url[WH_URL_MAX];
        if (strcmp(daemon, "store") == 0)
            wh_strlcpy(url, c.store_endpoint, sizeof(url));
        else if (strcmp(daemon, "dispatcher") == 0)
            wh_strlcpy(url, c.dispatcher_control, sizeof(url));
        else if (tenant && strcmp(tenant, c.tenant) != 0)
            wh_state_ingestor_control(url, sizeof(url), &c, tenant);
        else
            wh_strlcpy(url, c.ingestor_control, sizeof(url));
        rc = ask(&c, url, state, sizeof(state), &ready, reason, sizeof(reason));
    }
    if (address)
        daemon = address;
    if (rc != 0) {
        printf("%s: down (%s)\n", daemon, reason);
        return 1;
    }
    printf("%s: %s%s%s%s\n", daemon, state, ready ? ", ready" : ", not ready",
           reason[0] ? ": " : "", reason);
    return want_ready && !ready ? 1 : 0;
}

int cli_cmd_status(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (config_arg(argc, argv, &i, &path))
            continue;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: walhook status [-c FILE]\n"
                   "  every daemon's state, readiness and the cause when not ready;\n"
                   "  exit 0 when every daemon is up and ready, 1 if not\n");
            return 0;
        }
        fprintf(stderr, "walhook status: unexpected argument '%s'\n", argv[i]);
        return 2;
    }
    static wh_config c;
    char err[WH_ERRLEN];
    if (wh_config_load(&c, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook status: bad configuration: %s\n", err);
        return 2;
    }
    wh_ipc_tls_configure(&c);
    /* the tenants come from the runtime state (one ingestor each) */
    char tenants[WH_MAX_TENANTS][WH_NAME_MAX];
    int nt = 0;
    wh_client *sc = NULL;
    wh_state *s = NULL;
    char u[WH_URL_MAX + 16];
    dial_url(u, sizeof(u), c.store_endpoint);
    if (wh_client_open(&sc, u, PROBE_TIMEOUT_MS, (size_t)64 << 20, err, sizeof(err)) == WH_OK &&
        wh_state_fetch(sc, 0, &c, &s, err, sizeof(err)) == WH_OK && s != NULL) {
        for (int i = 0; i < s->ntenants && nt < WH_MAX_TENANTS; i++)
            wh_strlcpy(tenants[nt++], s->tenants[i].name, WH_NAME_MAX);
    }
    wh_state_unref(s);
    wh_client_close(sc);
    if (nt == 0)
        wh_strlcpy(tenants[nt++], c.tenant, WH_NAME_MAX);
    int bad = 0;
    printf("%-24s %-14s %-6s %s\n", "DAEMON", "STATE", "READY", "CAUSE");
    for (int i = 0; i < 2 + nt; i++) {
        char name[WH_NAME_MAX + 16], url[WH_URL_MAX], state[64] = "", reason[512] = "";
        int ready = 0;
        if (i == 0) {
            wh_strlcpy(name, "store", sizeof(name));
            wh_strlcpy(url, c.store_endpoint, sizeof(url));
        } else if (i == 1) {
            wh_strlcpy(name, "dispatcher", sizeof(name));
            wh_strlcpy(url, c.dispatcher_control, sizeof(url));
        } else {
            snprintf(name, sizeof(name), "ingestor (%s)", tenants[i - 2]);
            wh_state_ingestor_control(url, sizeof(url), &c, tenants[i - 2]);
        }
        int rc = ask(&c, url, state, sizeof(state), &ready, reason, sizeof(reason));
        /* the dispatcher's flag is informational, as for /readyz */
        if (rc != 0 || (!ready && i != 1))
            bad = 1;
        printf("%-24s %-14s %-6s %s\n", name, rc ? "down" : state,
               rc      ? "no"
               : ready ? "yes"
                       : "no",
               reason);
    }
    char reason[WH_REASON_LEN] = "";
    int arc = ask_admin(&c, NULL, reason, sizeof(reason));
    printf("%-24s %-14s %-6s %s\n", "admin", arc ? "down" : "listening", arc ? "no" : "yes",
           reason);
    return bad || arc ? 1 : 0;
}
