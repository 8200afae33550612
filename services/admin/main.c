/* walhook-admin: REST status, /metrics, /livez, /readyz, /config.
 * The admin serves /livez while the store is down, so its state watcher
 * (log_level, SIGHUP through the runtime state like every daemon) starts
 * in the background once the store answers.
 * Teardown: the watcher thread, the watcher, HTTP, the Stats clients. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "adm_api.h"
#include "adm_http.h"
#include "adm_query.h"
#include "wh_budget.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_state.h"
#include "wh_util.h"

_Static_assert(ADM_HTTP_MAX_CONNS == WH_BUDGET_ADM_CONNS &&
                   ADM_MAX_BODY == WH_BUDGET_ADM_BODY_BYTES,
               "the memory budget counts the admin's connections and their bodies");

static wh_config cfg; /* large: keep off the stack */
static _Atomic(wh_state_watch *) watch;

/* Starts the state watcher as soon as the store answers. */
static void *watch_starter(void *arg)
{
    WH_UNUSED(arg);
    char err[WH_ERRLEN];
    int warned = 0;
    while (!wh_stop_requested) {
        wh_state_watch *w = NULL;
        if (wh_state_watch_start(&w, &cfg, NULL, 1000, 1000, NULL, NULL, err, sizeof(err)) ==
            WH_OK) {
            atomic_store(&watch, w);
            return NULL;
        }
        if (!warned++)
            wh_warn("%s; retrying in the background", err);
        wh_sleep_ms(500);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    char err[WH_ERRLEN];
    const char *path = wh_daemon_init(argc, argv, "admin", &cfg);

    {
        char src[64];
        int64_t limit = wh_budget_limit(&cfg, src, sizeof(src));
        wh_budget b;
        int conns = wh_budget_admin_conns(&cfg, limit);
        wh_budget_plan_admin(&b, &cfg, conns);
        adm_http_set_max_conns((unsigned)conns);
        if (wh_budget_enforce(&b, limit, src) != WH_OK)
            return 2;
    }
    adm_query *q = NULL;
    adm_http *h = NULL;
    if (adm_query_open(&q, &cfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        return 1;
    }
    if (adm_http_start(&h, cfg.admin_listen, q, &cfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        adm_query_close(q);
        return 1;
    }
    /* only now: this process owns its port (an admin that lost it leaves
     * the running one's pid file alone) */
    wh_daemon_pidfile(&cfg, "admin");
    wh_info("listening on http://%s (port %u)", cfg.admin_listen, (unsigned)adm_http_port(h));

    pthread_t starter;
    int starter_ok = pthread_create(&starter, NULL, watch_starter, NULL) == 0;
    while (!wh_stop_requested) {
        if (wh_reload_requested) {
            /* the file becomes the next state version (docs/CONTROL.md) */
            wh_reload_requested = 0;
            wh_state_watch *w = atomic_load(&watch);
            if (path == NULL)
                wh_warn("SIGHUP: no configuration file (-c) to re-read");
            else if (w == NULL)
                wh_warn("SIGHUP: the store does not answer yet; the file is not reloaded");
            else if (wh_state_watch_reload_file(w, path, err, sizeof(err)) != WH_OK)
                wh_warn("%s", err);
            else
                wh_info("reload: %s stored as the next state version", path);
        }
        /* nothing periodic here: asleep until a signal */
        wh_signal_wait(-1);
    }
    if (starter_ok)
        pthread_join(starter, NULL);
    wh_state_watch_stop(atomic_load(&watch));
    wh_info("stopping");
    adm_http_stop(h);
    adm_query_close(q);
    return 0;
}
