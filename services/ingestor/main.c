/* walhook-ingestor [-c FILE] [--tenant NAME]: PostgreSQL logical replication
 * of one tenant -> walhook-store. The tenant (default: the file's `tenant`,
 * or WALHOOK_INGESTOR_TENANT) names the entry of the runtime state that
 * holds the source (ing_state.h).
 * Teardown: replication (drains), state watcher, control endpoint, batcher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ing_batch.h"
#include "ing_early.h"
#include "ing_repl.h"
#include "ing_state.h"
#include "ing_stats.h"
#include "ing_values.h"
#include "wh_budget.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_util.h"

#define ING_STORE_WAIT_MS 10000

/* Takes "--tenant NAME" / "--tenant=NAME" out of argv (the rest is the
 * standard daemon arguments). Returns the name or NULL. */
static const char *take_tenant_arg(int *argc, char **argv)
{
    const char *tenant = NULL;
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--tenant") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "walhook-ingestor: --tenant needs a value\n");
                exit(2);
            }
            tenant = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--tenant=", 9) == 0) {
            tenant = argv[i] + 9;
            continue;
        }
        argv[w++] = argv[i];
    }
    argv[w] = NULL;
    *argc = w;
    return tenant;
}

/* The memory plan (wh_budget_plan_ingestor) against memory_budget_bytes:
 * published for the metrics; over it, one line per part and exit 2. */
static int check_budget(const wh_config *c, const char *daemon)
{
    char src[64];
    int64_t limit = wh_budget_limit(c, src, sizeof(src));
    wh_budget b;
    wh_budget_plan_ingestor(&b, c, daemon);
    return wh_budget_enforce(&b, limit, src);
}

/* The preflight of c's source: early's (its replication connection into
 * *conn) when it checked the same source, else one of its own. */
static int ing_preflight(const wh_config *c, ing_early *early, PGconn **conn)
{
    wh_buf rep;
    wh_buf_init(&rep, 1 << 20);
    char err[WH_ERRLEN];
    int rc = ing_early_preflight(early, c, conn, &rep, err, sizeof(err));
    if (rc != WH_OK) {
        wh_error("%s", err);
        if (wh_buf_cstr(&rep) == WH_OK) {
            /* one log line per problem and per fix */
            char *save = NULL;
            for (char *l = strtok_r(rep.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                wh_error("preflight: %s", l + strspn(l, " "));
        }
    }
    wh_buf_free(&rep);
    return rc;
}

int main(int argc, char **argv)
{
    static wh_config base, cfg;
    char err[WH_ERRLEN];
    const char *tenant = take_tenant_arg(&argc, argv);
    const char *path = wh_daemon_init(argc, argv, "ingestor", &base);
    if (tenant == NULL || !tenant[0])
        tenant = getenv("WALHOOK_INGESTOR_TENANT");
    if (tenant == NULL || !tenant[0])
        tenant = base.tenant;
    /* the file's tenant is "ingestor" (as its endpoint), the others
     * "ingestor-<tenant>": one pid file each */
    static char daemon_name[WH_NAME_MAX + 16];
    if (strcmp(tenant, base.tenant) == 0)
        wh_strlcpy(daemon_name, "ingestor", sizeof(daemon_name));
    else
        snprintf(daemon_name, sizeof(daemon_name), "ingestor-%.40s", tenant);

    /* the budget of the file's settings first: a refusal needs no store */
    if (check_budget(&base, daemon_name) != WH_OK)
        return 2;
    /* the file's source (the runtime state's, almost always): connected and
     * checked while the store starts and hands over the state */
    ing_early *early = NULL;
    PGconn *first = NULL;
    if (strcmp(tenant, base.tenant) == 0 && base.source_dsn[0] &&
        ing_early_start(&early, &base, err, sizeof(err)) != WH_OK)
        wh_warn("connecting to the source at start: %s", err);
    ing_state *is = NULL;
    if (ing_state_start(&is, &base, tenant, path, ING_STORE_WAIT_MS, &cfg, err, sizeof(err)) !=
        WH_OK) {
        fprintf(stderr, "walhook-ingestor: %s\n", err);
        ing_early_free(early);
        return strstr(err, "not in the runtime state") ? 2 : 1;
    }
    int rc = 1;
    static ing_stats st;
    ing_batcher *bt = NULL;
    wh_control *ctl = NULL;
    if (!cfg.source_dsn[0]) {
        fprintf(stderr,
                "walhook-ingestor: tenant %s has no source dsn (source.dsn or "
                "WALHOOK_SOURCE_DSN)\n",
                tenant);
        rc = 2;
        goto out;
    }
    if (check_budget(&cfg, daemon_name) != WH_OK) { /* the state's runtime settings may differ */
        rc = 2;
        goto out;
    }
    /* every privilege and object it needs, each missing one named with the
     * SQL that fixes it: exit 1 rather than a restart loop */
    int pf = ing_preflight(&cfg, early, &first);
    ing_early_free(early);
    early = NULL;
    if (pf != WH_OK)
        goto out;
    if (ing_batcher_new(&bt, &cfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        goto out;
    }
    st.bt = bt;
    wh_strlcpy(st.tenant, tenant, sizeof(st.tenant));
    wh_strlcpy(st.daemon_name, daemon_name, sizeof(st.daemon_name));
    ing_stats_stream(&st, 0); /* the lag figures' age counts from here */
    if (ing_state_attach(is, bt, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        goto out;
    }
    if (ing_control_start(&ctl, &cfg, &st, err, sizeof(err)) != WH_OK) {
        wh_error("control endpoint %s: %s", cfg.ingestor_control, err);
        goto out;
    }
    /* only now: this process owns its control endpoint (an ingestor that
     * lost it leaves the running one's pid file alone) */
    wh_daemon_pidfile(&base, daemon_name);
    wh_info("tenant %s (control %s)", tenant, cfg.ingestor_control);
    PGconn *c = first;
    first = NULL; /* ing_repl_run's */
    if (ing_repl_run(&cfg, bt, &st, ing_state_source_watch(is), c, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        goto out;
    }
    rc = 0;
out:
    ing_early_free(early);
    PQfinish(first);
    if (ing_state_removed(is))
        wh_info("tenant %s is no longer in the runtime state: exiting", tenant);
    ing_state_stop(is);
    wh_control_stop(ctl);
    ing_batcher_free(bt);
    ing_values_thread_cleanup(); /* the value renderer's scratch (this thread's) */
    if (rc == 0)
        wh_info("stopped");
    return rc;
}
