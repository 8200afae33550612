/* cli_tenants: one ingestor per tenant of the runtime state. */
#include "cli_tenants.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_sup.h"
#include "wh_ipc.h"
#include "wh_state.h"
#include "wh_util.h"

#define CT_POLL_MS 1000
#define CT_STOP_WAIT_MS 10000

typedef struct ct_child {
    char tenant[WH_NAME_MAX];
    pid_t pid;
    int wanted; /* in the latest state */
    uint64_t started_ms;
    uint64_t restart_at_ms;
    int failures; /* deaths in a row before it ran CLI_SUP_STABLE_UNPROBED_MS */
} ct_child;

struct cli_tenants {
    char path[4096]; /* walhook-ingestor */
    char config[4096];
    int has_config;
    wh_config cfg;
    wh_client *store;
    uint64_t version;
    int have_state;
    int default_wanted;
    uint64_t next_poll_ms;
    ct_child ch[WH_MAX_TENANTS];
    int n;
};

int cli_tenants_start(cli_tenants **out, const char *bindir, const char *config_path)
{
    *out = NULL;
    char err[WH_ERRLEN];
    cli_tenants *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return WH_ERR;
    snprintf(t->path, sizeof(t->path), "%.4000s/walhook-ingestor", bindir);
    if (config_path != NULL) {
        wh_strlcpy(t->config, config_path, sizeof(t->config));
        t->has_config = 1;
    }
    t->default_wanted = 1;
    if (wh_config_load(&t->cfg, config_path, err, sizeof(err)) != WH_OK ||
        wh_client_open(&t->store, t->cfg.store_endpoint, 2000,
                       t->cfg.ipc_max_msg_bytes > 0 ? (size_t)t->cfg.ipc_max_msg_bytes
                                                    : (size_t)64 << 20,
                       err, sizeof(err)) != WH_OK) {
        wh_error("tenants: %s", err);
        free(t);
        return WH_ERR;
    }
    *out = t;
    cli_tenants_tick(t);
    return WH_OK;
}

static void spawn(cli_tenants *t, ct_child *c)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        wh_error("cannot fork for the ingestor of tenant %s: %s", c->tenant, strerror(errno));
        c->restart_at_ms = wh_now_ms() + (uint64_t)cli_sup_next_delay(&c->failures, 0);
        return;
    }
    if (pid == 0) {
        cli_sup_child_setup(parent);
        char *argv[6];
        int n = 0;
        argv[n++] = t->path;
        if (t->has_config) {
            argv[n++] = "-c";
            argv[n++] = t->config;
        }
        argv[n++] = "--tenant";
        argv[n++] = c->tenant;
        argv[n] = NULL;
        execv(t->path, argv);
        fprintf(stderr, "walhook: cannot exec %s: %s\n", t->path, strerror(errno));
        _exit(127);
    }
    c->pid = pid;
    c->started_ms = wh_now_ms();
    wh_info("started walhook-ingestor for tenant %s (pid %d)", c->tenant, (int)pid);
}

/* Follows the tenants of the state: marks wanted, adds new ones. */
static void poll_state(cli_tenants *t)
{
    wh_state *s = NULL;
    char err[WH_ERRLEN];
    if (wh_state_fetch(t->store, t->version, &t->cfg, &s, err, sizeof(err)) != WH_OK || s == NULL)
        return;
    t->version = s->version;
    t->have_state = 1;
    t->default_wanted = wh_state_tenant_find(s, t->cfg.tenant) != NULL;
    for (int k = 0; k < t->n; k++)
        t->ch[k].wanted = 0;
    for (int i = 0; i < s->ntenants; i++) {
        const char *name = s->tenants[i].name;
        if (strcmp(name, t->cfg.tenant) == 0)
            continue; /* the supervisor's own ingestor child */
        ct_child *c = NULL;
        for (int k = 0; k < t->n && c == NULL; k++)
            if (strcmp(t->ch[k].tenant, name) == 0)
                c = &t->ch[k];
        if (c == NULL && t->n < WH_MAX_TENANTS) {
            c = &t->ch[t->n++];
            memset(c, 0, sizeof(*c));
            wh_strlcpy(c->tenant, name, sizeof(c->tenant));
            wh_info("tenant %s is in the runtime state (version %llu): starting its ingestor", name,
                    (unsigned long long)s->version);
        }
        if (c != NULL)
            c->wanted = 1;
    }
    wh_state_unref(s);
    for (int k = 0; k < t->n; k++) {
        ct_child *c = &t->ch[k];
        if (!c->wanted && c->pid > 0) {
            wh_info("tenant %s is no longer in the runtime state: stopping its ingestor (pid %d)",
                    c->tenant, (int)c->pid);
            kill(c->pid, SIGTERM);
        }
    }
}

void cli_tenants_tick(cli_tenants *t)
{
    if (t == NULL)
        return;
    uint64_t now = wh_now_ms();
    if (now >= t->next_poll_ms) {
        poll_state(t);
        t->next_poll_ms = now + CT_POLL_MS;
    }
    for (int k = 0; k < t->n; k++) {
        ct_child *c = &t->ch[k];
        if (c->pid == 0 && c->wanted && now >= c->restart_at_ms && !wh_stop_requested)
            spawn(t, c);
    }
    /* forget stopped children of removed tenants */
    int w = 0;
    for (int k = 0; k < t->n; k++)
        if (t->ch[k].wanted || t->ch[k].pid > 0)
            t->ch[w++] = t->ch[k];
    t->n = w;
}

int cli_tenants_reaped(cli_tenants *t, pid_t pid, int status)
{
    if (t == NULL)
        return 0;
    for (int k = 0; k < t->n; k++) {
        ct_child *c = &t->ch[k];
        if (c->pid != pid)
            continue;
        char how[128];
        cli_sup_describe(status, how, sizeof(how));
        uint64_t now = wh_now_ms();
        c->pid = 0;
        if (c->wanted && !wh_stop_requested) {
            int d =
                cli_sup_next_delay(&c->failures, now - c->started_ms >= CLI_SUP_STABLE_UNPROBED_MS);
            c->restart_at_ms = now + (uint64_t)d;
            wh_warn("walhook-ingestor of tenant %s (pid %d) %s; restarting in %d ms", c->tenant,
                    (int)pid, how, d);
        } else {
            wh_info("walhook-ingestor of tenant %s (pid %d) %s", c->tenant, (int)pid, how);
        }
        return 1;
    }
    return 0;
}

int cli_tenants_default_wanted(const cli_tenants *t)
{
    return t == NULL || !t->have_state || t->default_wanted;
}

void cli_tenants_signal(cli_tenants *t, int sig)
{
    if (t == NULL)
        return;
    for (int k = 0; k < t->n; k++)
        if (t->ch[k].pid > 0)
            kill(t->ch[k].pid, sig);
}

void cli_tenants_stop(cli_tenants *t)
{
    if (t == NULL)
        return;
    for (int k = 0; k < t->n; k++)
        t->ch[k].wanted = 0;
    cli_tenants_signal(t, SIGTERM);
    uint64_t deadline = wh_now_ms() + CT_STOP_WAIT_MS;
    for (;;) {
        int left = 0;
        for (int k = 0; k < t->n; k++) {
            ct_child *c = &t->ch[k];
            if (c->pid <= 0)
                continue;
            int status;
            if (waitpid(c->pid, &status, WNOHANG) == c->pid)
                cli_tenants_reaped(t, c->pid, status);
            else
                left++;
        }
        if (left == 0 || wh_now_ms() >= deadline)
            break;
        wh_sleep_ms(50);
    }
    for (int k = 0; k < t->n; k++) {
        ct_child *c = &t->ch[k];
        if (c->pid > 0) {
            wh_warn("walhook-ingestor of tenant %s (pid %d) did not stop within %d s; killing it",
                    c->tenant, (int)c->pid, CT_STOP_WAIT_MS / 1000);
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
        }
    }
    wh_client_close(t->store);
    free(t);
}
