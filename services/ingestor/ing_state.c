/* ing_state: runtime state -> the ingestor's source and settings. */
#include "ing_state.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ing_snapshot.h"
#include "wh_state.h"
#include "wh_util.h"

struct ing_state {
    char tenant[WH_NAME_MAX];
    char path[WH_PATH_MAX];
    int has_path;
    wh_state_watch *watch;
    ing_batcher *bt;
    ing_source_watch sw;

    pthread_mutex_t mu;
    wh_config base;    /* file + env */
    wh_config latest;  /* effective config of the latest version */
    wh_config running; /* the source ing_repl runs with */
    int have_latest;
    int missing; /* the tenant is not in the latest version */
    atomic_int source_changed;
    atomic_int removed;
    atomic_int started; /* the first apply is done */
};

int ing_state_source_differs(const wh_config *a, const wh_config *b)
{
    return wh_slotcfg_differs(a, b) ||       /* slot safety: the slot thread starts again */
           (a->ddl != 0) != (b->ddl != 0) || /* the capture is set up at the connection */
           strcmp(a->source_dsn, b->source_dsn) != 0 || strcmp(a->slot, b->slot) != 0 ||
           strcmp(a->publication, b->publication) != 0 || strcmp(a->tables, b->tables) != 0 ||
           (a->create_slot != 0) != (b->create_slot != 0);
}

static void copy_source(wh_config *dst, const wh_config *src)
{
    wh_strlcpy(dst->source_dsn, src->source_dsn, sizeof(dst->source_dsn));
    wh_strlcpy(dst->slot, src->slot, sizeof(dst->slot));
    wh_strlcpy(dst->publication, src->publication, sizeof(dst->publication));
    wh_strlcpy(dst->tables, src->tables, sizeof(dst->tables));
    dst->create_slot = src->create_slot;
    wh_slotcfg_copy(dst, src); /* the tenant's slot settings (ing_slot), snapshot, ddl */
}

/* Watcher thread: a new version. */
static void apply(void *arg, wh_state *s, const wh_config *eff)
{
    ing_state *is = arg;
    const wh_state_tenant *tn = wh_state_tenant_find(s, is->tenant);
    pthread_mutex_lock(&is->mu);
    if (tn == NULL) {
        is->missing = 1;
        pthread_mutex_unlock(&is->mu);
        if (atomic_load(&is->started) && !atomic_exchange(&is->removed, 1)) {
            wh_info("tenant %s was removed from the runtime state (version %" PRIu64 "): stopping",
                    is->tenant, s->version);
            wh_stop_request();
        }
        return;
    }
    is->missing = 0;
    if (is->have_latest && strcmp(is->latest.skip_origins, eff->skip_origins) != 0)
        wh_info("source.skip_origins is now \"%s\" (state version %" PRIu64 ")", eff->skip_origins,
                s->version);
    is->latest = *eff;
    wh_strlcpy(is->latest.source_dsn, tn->dsn, sizeof(is->latest.source_dsn));
    wh_strlcpy(is->latest.slot, tn->slot, sizeof(is->latest.slot));
    wh_strlcpy(is->latest.publication, tn->publication, sizeof(is->latest.publication));
    wh_strlcpy(is->latest.tables, tn->tables, sizeof(is->latest.tables));
    is->latest.create_slot = tn->create_slot;
    ing_snapshot_requests(tn->backfills);
    wh_strlcpy(is->latest.tenant, is->tenant, sizeof(is->latest.tenant));
    is->have_latest = 1;
    int changed = atomic_load(&is->started) && ing_state_source_differs(&is->latest, &is->running);
    const char *what = (is->latest.ddl != 0) == (is->running.ddl != 0) ? ""
                       : is->latest.ddl                                ? " (source.ddl on)"
                                                                       : " (source.ddl off)";
    pthread_mutex_unlock(&is->mu);
    if (changed && !atomic_exchange(&is->source_changed, 1))
        wh_info("tenant %s: the source changed in state version %" PRIu64 "%s; reconnecting",
                is->tenant, s->version, what);
}

/* Replication thread, every turn of the stream loop: SIGHUP goes through
 * the store like every other change (the watcher then applies it). */
static int sw_changed(void *arg)
{
    ing_state *is = arg;
    if (wh_reload_requested) {
        wh_reload_requested = 0;
        ing_state_reload(is);
    }
    return atomic_load(&is->source_changed);
}

static int sw_skip_origin(void *arg, const char *name)
{
    ing_state *is = arg;
    pthread_mutex_lock(&is->mu);
    int skip = wh_origins_match(is->latest.skip_origins, name);
    pthread_mutex_unlock(&is->mu);
    return skip;
}

static void sw_take(void *arg, wh_config *cfg)
{
    ing_state *is = arg;
    pthread_mutex_lock(&is->mu);
    copy_source(cfg, &is->latest);
    copy_source(&is->running, &is->latest);
    atomic_store(&is->source_changed, 0);
    pthread_mutex_unlock(&is->mu);
}

int ing_state_start(ing_state **out, const wh_config *base, const char *tenant,
                    const char *cfg_path, int wait_ms, wh_config *eff, char *err, size_t errlen)
{
    *out = NULL;
    ing_state *is = calloc(1, sizeof(*is));
    if (is == NULL)
        return wh_seterr(err, errlen, "out of memory");
    pthread_mutex_init(&is->mu, NULL);
    wh_strlcpy(is->tenant, tenant, sizeof(is->tenant));
    if (cfg_path != NULL) {
        wh_strlcpy(is->path, cfg_path, sizeof(is->path));
        is->has_path = 1;
    }
    is->base = *base;
    is->sw.changed = sw_changed;
    is->sw.take = sw_take;
    is->sw.skip_origin = sw_skip_origin;
    is->sw.arg = is;
    if (wh_state_watch_start(&is->watch, base, tenant, 200, wait_ms, apply, is, err, errlen) !=
        WH_OK)
        goto error;
    pthread_mutex_lock(&is->mu);
    int ok = is->have_latest && !is->missing;
    if (ok) {
        *eff = is->latest;
        is->running = is->latest;
    }
    pthread_mutex_unlock(&is->mu);
    if (!ok) {
        wh_seterr(err, errlen, "tenant %s is not in the runtime state (walhook-ingestor --tenant)",
                  tenant);
        goto error;
    }
    wh_state_ingestor_control(eff->ingestor_control, sizeof(eff->ingestor_control), base, tenant);
    atomic_store(&is->started, 1);
    *out = is;
    return WH_OK;
error:
    if (is->watch != NULL)
        wh_state_watch_stop(is->watch);
    pthread_mutex_destroy(&is->mu);
    free(is);
    return WH_ERR;
}

static void on_limits(void *arg, const wh_config *c)
{
    ing_state *is = arg;
    ing_batcher_set_limits(c, is->bt);
    wh_info("runtime settings: flush_bytes=%lld flush_age_us=%lld busy_linger_us=%lld "
            "window_bytes=%lld append_fail_ms=%d",
            (long long)c->flush_bytes, (long long)c->flush_age_us, (long long)c->busy_linger_us,
            (long long)c->window_bytes, c->append_fail_ms);
}

static void on_chunk_rows(void *arg, const wh_config *c)
{
    (void)arg;
    ing_snapshot_set_chunk_rows(c->snapshot_chunk_rows);
    wh_info("runtime settings: source.snapshot_chunk_rows=%d", c->snapshot_chunk_rows);
}

int ing_state_attach(ing_state *is, ing_batcher *bt, char *err, size_t errlen)
{
    static const char *const paths[] = {"ingestor.flush_bytes", "ingestor.flush_age_us",
                                        "ingestor.busy_linger_us", "ingestor.window_bytes",
                                        "ingestor.append_fail_ms"};
    is->bt = bt;
    for (size_t i = 0; i < WH_ARRAY_LEN(paths); i++)
        if (wh_config_hook(paths[i], on_limits, is, err, errlen) != WH_OK)
            return WH_ERR;
    if (wh_config_hook("source.snapshot_chunk_rows", on_chunk_rows, is, err, errlen) != WH_OK)
        return WH_ERR;
    /* a version may have arrived between the start and the hooks */
    pthread_mutex_lock(&is->mu);
    ing_snapshot_set_chunk_rows(is->latest.snapshot_chunk_rows);
    ing_batcher_set_limits(&is->latest, bt);
    pthread_mutex_unlock(&is->mu);
    return WH_OK;
}

const ing_source_watch *ing_state_source_watch(ing_state *is)
{
    return &is->sw;
}

int ing_state_removed(ing_state *is)
{
    return is != NULL && atomic_load(&is->removed);
}

void ing_state_reload(ing_state *is)
{
    char err[WH_ERRLEN];
    if (!is->has_path) {
        wh_warn("SIGHUP: no configuration file (-c) to re-read");
        return;
    }
    if (wh_state_watch_reload_file(is->watch, is->path, err, sizeof(err)) != WH_OK) {
        wh_warn("%s", err);
        return;
    }
    wh_info("reload: %s stored as the next state version", is->path);
}

void ing_state_stop(ing_state *is)
{
    if (is == NULL)
        return;
    wh_state_watch_stop(is->watch);
    pthread_mutex_destroy(&is->mu);
    free(is);
}
