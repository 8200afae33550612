/* dsp_state: runtime state -> dispatcher targets. */
#include "dsp_state.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "wh_budget.h"
#include "wh_dsn.h"
#include "wh_util.h"

_Static_assert(DSP_KEYS_MAX >= WH_MAX_SECRETS, "a target's secrets fit the dispatcher's keys");

struct dsp_state {
    dsp_loop *loop;
    wh_state_watch *watch;
    char path[WH_PATH_MAX];
    int has_path;
    /* leases: the last full list, re-filtered when the held set changes */
    dsp_lease *lease;
    pthread_mutex_t mu;
    dsp_spec *all;
    int nall;
    uint64_t version;
    int have;
};

/* Hands the targets this replica holds to the loop. Caller holds ds->mu. */
static void push_held(dsp_state *ds)
{
    dsp_spec *v = ds->nall ? calloc((size_t)ds->nall, sizeof(*v)) : NULL;
    if (ds->nall && v == NULL) {
        wh_error("leases: out of memory; keeping the running targets");
        return;
    }
    int k = 0;
    for (int i = 0; i < ds->nall; i++) {
        uint64_t epoch = 0;
        v[k] = ds->all[i];
        v[k].unheld = !dsp_lease_owns(ds->lease, ds->all[i].set.tenant, ds->all[i].name, &epoch);
        v[k].handover = v[k].unheld &&
                        dsp_lease_handing_over(ds->lease, ds->all[i].set.tenant, ds->all[i].name);
        v[k].lease_epoch = epoch;
        k++;
    }
    if (dsp_loop_set_targets(ds->loop, v, k, ds->version) != WH_OK)
        wh_error("leases: out of memory; keeping the running targets");
    free(v);
}

/* Lease thread: the held set changed. */
static void lease_changed(void *arg)
{
    dsp_state *ds = arg;
    pthread_mutex_lock(&ds->mu);
    if (ds->have)
        push_held(ds);
    pthread_mutex_unlock(&ds->mu);
}

/* Watcher thread, with leases: remember the list, offer it, push the held. */
static void apply_leased(dsp_state *ds, dsp_spec *specs, int n, uint64_t version)
{
    const char **tenants = n ? calloc((size_t)n, sizeof(*tenants)) : NULL;
    const char **names = n ? calloc((size_t)n, sizeof(*names)) : NULL;
    int *quiet = n ? calloc((size_t)n, sizeof(*quiet)) : NULL;
    for (int i = 0; tenants && names && quiet && i < n; i++) {
        tenants[i] = specs[i].set.tenant;
        names[i] = specs[i].name;
        quiet[i] = specs[i].set.http_timeout_ms;
    }
    if (n == 0 || (tenants && names && quiet))
        dsp_lease_set_targets(ds->lease, tenants, names, quiet, (size_t)n);
    free(tenants);
    free(names);
    free(quiet);
    pthread_mutex_lock(&ds->mu);
    free(ds->all);
    ds->all = specs; /* owned now */
    ds->nall = n;
    ds->version = version;
    ds->have = 1;
    push_held(ds);
    pthread_mutex_unlock(&ds->mu);
}

int dsp_state_specs(const wh_state *s, const wh_config *eff, dsp_spec **out, int *n, char *err,
                    size_t errlen)
{
    *out = NULL;
    *n = 0;
    int total = 0;
    for (int i = 0; i < s->ntenants; i++)
        total += s->tenants[i].ntargets;
    if (total == 0)
        return WH_OK;
    dsp_spec *v = calloc((size_t)total, sizeof(*v));
    if (v == NULL)
        return wh_seterr(err, errlen, "out of memory (%d targets)", total);
    dsp_settings base;
    dsp_settings_from_config(&base, eff);
    int k = 0;
    for (int i = 0; i < s->ntenants; i++) {
        const wh_state_tenant *tn = &s->tenants[i];
        for (int j = 0; j < tn->ntargets; j++) {
            const wh_state_target *tg = &tn->targets[j];
            dsp_spec *sp = &v[k++];
            wh_strlcpy(sp->name, tg->name, sizeof(sp->name));
            wh_strlcpy(sp->url, tg->url, sizeof(sp->url));
            sp->nsecrets = tg->nsecrets < WH_MAX_SECRETS ? tg->nsecrets : WH_MAX_SECRETS;
            for (int q = 0; q < sp->nsecrets; q++)
                wh_strlcpy(sp->secrets[q], tg->secrets[q], sizeof(sp->secrets[q]));
            sp->paused = tg->paused != 0;
            sp->resumes = tg->resumes;
            sp->created_version = tg->created_version;
            sp->set = base;
            wh_strlcpy(sp->set.tenant, tn->name, sizeof(sp->set.tenant));
            if (tn->dsn[0] != '\0')
                wh_dsn_dbname(tn->dsn, sp->set.db, sizeof(sp->set.db));
            if (tg->batch_max_events > 0)
                sp->set.batch_max_events = (uint32_t)tg->batch_max_events;
            if (tg->batch_max_bytes > 0)
                sp->set.batch_max_bytes =
                    tg->batch_max_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)tg->batch_max_bytes;
            if (tg->retry_base_ms > 0)
                sp->set.retry_base_ms = tg->retry_base_ms;
            if (tg->retry_max_ms > 0)
                sp->set.retry_max_ms = tg->retry_max_ms;
            if (tg->http_timeout_ms > 0)
                sp->set.http_timeout_ms = tg->http_timeout_ms;
            sp->set.dl = tg->dl;
            dsp_settings_clamp(&sp->set);
        }
    }
    *out = v;
    *n = k;
    return WH_OK;
}

/* Watcher thread: a new version. */
static void apply(void *arg, wh_state *s, const wh_config *eff)
{
    dsp_state *ds = arg;
    dsp_spec *specs = NULL;
    int n = 0;
    char err[WH_ERRLEN];
    if (dsp_state_specs(s, eff, &specs, &n, err, sizeof(err)) != WH_OK) {
        wh_error("state version %" PRIu64 ": %s; keeping the running targets", s->version, err);
        return;
    }
    /* the memory gauges follow the targets (the admin refused a change
     * over the budget; one made otherwise is logged) */
    wh_budget b;
    wh_budget_counts bc = {s->ntenants, n};
    wh_budget_plan_dispatcher(&b, eff, &bc);
    int64_t limit = wh_budget_limit(eff, NULL, 0);
    wh_budget_publish(&b, limit);
    if (wh_budget_check(&b, limit, err, sizeof(err)) != WH_OK)
        wh_warn("state version %" PRIu64 ": over the memory budget: %s", s->version, err);
    if (ds->lease) {
        apply_leased(ds, specs, n, s->version);
        return;
    }
    if (dsp_loop_set_targets(ds->loop, specs, n, s->version) != WH_OK)
        wh_error("state version %" PRIu64 ": out of memory; keeping the running targets",
                 s->version);
    free(specs);
}

/* Loop thread: SIGHUP. */
static void reload(void *arg)
{
    dsp_state *ds = arg;
    char err[WH_ERRLEN];
    if (!ds->has_path) {
        wh_warn("SIGHUP: no configuration file (-c) to re-read");
        return;
    }
    if (wh_state_watch_reload_file(ds->watch, ds->path, err, sizeof(err)) != WH_OK) {
        wh_warn("%s", err);
        return;
    }
    wh_info("reload: %s stored as the next state version", ds->path);
}

int dsp_state_start(dsp_state **out, const wh_config *base, const char *cfg_path, dsp_loop *loop,
                    int wait_ms, char *err, size_t errlen)
{
    return dsp_state_start_leased(out, base, cfg_path, loop, NULL, wait_ms, err, errlen);
}

int dsp_state_start_leased(dsp_state **out, const wh_config *base, const char *cfg_path,
                           dsp_loop *loop, dsp_lease *lease, int wait_ms, char *err, size_t errlen)
{
    *out = NULL;
    dsp_state *ds = calloc(1, sizeof(*ds));
    if (ds == NULL)
        return wh_seterr(err, errlen, "out of memory");
    ds->loop = loop;
    ds->lease = lease;
    pthread_mutex_init(&ds->mu, NULL);
    if (lease)
        dsp_lease_on_change(lease, lease_changed, ds);
    if (cfg_path != NULL) {
        wh_strlcpy(ds->path, cfg_path, sizeof(ds->path));
        ds->has_path = 1;
    }
    if (wh_state_watch_start(&ds->watch, base, NULL, 200, wait_ms, apply, ds, err, errlen) !=
        WH_OK) {
        if (lease)
            dsp_lease_on_change(lease, NULL, NULL);
        pthread_mutex_destroy(&ds->mu);
        free(ds);
        return WH_ERR;
    }
    dsp_loop_on_reload(loop, reload, ds);
    *out = ds;
    return WH_OK;
}

void dsp_state_stop(dsp_state *ds)
{
    if (ds == NULL)
        return;
    dsp_loop_on_reload(ds->loop, NULL, NULL);
    wh_state_watch_stop(ds->watch);
    if (ds->lease)
        dsp_lease_on_change(ds->lease, NULL, NULL);
    pthread_mutex_destroy(&ds->mu);
    free(ds->all);
    free(ds);
}
