/* dsp_loop: curl multi event loop over all targets. */
#include "dsp_loop.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "wh_metrics.h"
#include "wh_util.h"

#define DSP_POLL_MAX_MS 1000

struct dsp_loop {
    CURLM *multi;
    dsp_target *targets;
    int ntargets;
    int ninit;        /* targets initialised (for destroy) */
    int max_inflight; /* 0 = one per target */
    int inflight;
    int rr; /* round-robin start for fairness under the cap */
    atomic_int stop;
    int curl_inited;
    int nrefused;             /* targets that failed their setup */
    wh_counter reload_errors; /* SIGHUP files refused */
};

static void wake(void *arg)
{
    dsp_loop *l = arg;
    curl_multi_wakeup(l->multi);
}

int dsp_loop_create(dsp_loop **out, const wh_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->ntargets <= 0)
        return wh_seterr(err, errlen, "targets: no webhook target configured");
    dsp_loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(l);
        return wh_seterr(err, errlen, "curl_global_init failed");
    }
    l->curl_inited = 1;
    l->max_inflight = cfg->max_inflight > 0 ? cfg->max_inflight : 0;
    l->multi = curl_multi_init();
    l->targets = calloc((size_t)cfg->ntargets, sizeof(*l->targets));
    if (l->multi == NULL || l->targets == NULL) {
        wh_seterr(err, errlen, "out of memory (curl multi / targets)");
        goto error;
    }
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)(cfg->ntargets * 2 + 4));
    l->ntargets = cfg->ntargets;
    dsp_settings set;
    dsp_settings_from_config(&set, cfg);
    /* A target that cannot be set up is refused on its own: the others go on. */
    for (int i = 0; i < cfg->ntargets; i++) {
        char terr[WH_ERRLEN];
        int rc =
            dsp_target_init(&l->targets[i], &cfg->targets[i], &set, wake, l, terr, sizeof(terr));
        l->ninit = i + 1;
        if (rc != WH_OK) {
            l->nrefused++;
            wh_error("targets[%d] refused, nothing is delivered to it (the other targets go on): "
                     "%s",
                     i, terr);
        }
    }
    if (l->nrefused == l->ntargets)
        wh_error("every target was refused: nothing will be delivered until the configuration is "
                 "fixed");
    for (int i = 0; i < l->ntargets; i++)
        if (!l->targets[i].refused && dsp_target_start_reader(&l->targets[i], err, errlen) != WH_OK)
            goto error;
    *out = l;
    return WH_OK;
error:
    dsp_loop_destroy(l);
    return WH_ERR;
}

static int stopping(dsp_loop *l)
{
    return atomic_load(&l->stop) || wh_stop_requested;
}

/* Collects finished transfers. Returns how many finished. */
static int reap(dsp_loop *l)
{
    int n = 0, left = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(l->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result;
        dsp_target *t = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
        if (t == NULL) {
            curl_multi_remove_handle(l->multi, e);
            continue;
        }
        dsp_target_finished(t, l->multi, res, wh_now_ms());
        l->inflight--;
        n++;
    }
    return n;
}

static int start_ready(dsp_loop *l)
{
    int started = 0;
    uint64_t now = wh_now_ms();
    for (int k = 0; k < l->ntargets; k++) {
        if (l->max_inflight > 0 && l->inflight >= l->max_inflight)
            break;
        dsp_target *t = &l->targets[(l->rr + k) % l->ntargets];
        if (dsp_target_maybe_post(t, l->multi, now) == 1) {
            l->inflight++;
            started++;
        }
    }
    l->rr = (l->rr + 1) % l->ntargets;
    return started;
}

static int next_timeout(dsp_loop *l)
{
    uint64_t now = wh_now_ms();
    long to = DSP_POLL_MAX_MS;
    for (int i = 0; i < l->ntargets; i++) {
        long t = dsp_target_timeout_ms(&l->targets[i], now);
        if (t >= 0 && t < to)
            to = t;
    }
    return (int)to;
}

/* SIGHUP: re-reads the file; runtime settings are swapped in, a bad file
 * keeps the old ones, static ones (targets, endpoints) need a restart. */
static void reload(dsp_loop *l, const char *cfg_path)
{
    static wh_config nc; /* loop thread only */
    char err[WH_ERRLEN];
    if (wh_config_load(&nc, cfg_path, err, sizeof(err)) != WH_OK) {
        wh_counter_add(&l->reload_errors, 1);
        wh_warn("reload failed, keeping the old settings: %s", err);
        return;
    }
    int same_targets = nc.ntargets == l->ntargets;
    for (int i = 0; same_targets && i < l->ntargets; i++)
        same_targets = strcmp(nc.targets[i].name, l->targets[i].name) == 0;
    if (!same_targets)
        wh_warn("reload: the list of targets changed; it takes effect after a restart");
    dsp_settings set;
    dsp_settings_from_config(&set, &nc);
    for (int i = 0; i < l->ntargets; i++)
        dsp_target_apply_settings(&l->targets[i], &set);
    wh_info("reloaded: batch_max_events=%u batch_max_bytes=%u retry=%d..%d ms http_timeout=%d ms",
            set.batch_max_events, set.batch_max_bytes, set.retry_base_ms, set.retry_max_ms,
            set.http_timeout_ms);
}

int dsp_loop_run(dsp_loop *l, const char *cfg_path)
{
    int running = 0;
    wh_info("dispatching to %d target(s)", l->ntargets);
    while (!stopping(l)) {
        if (wh_reload_requested) {
            wh_reload_requested = 0;
            reload(l, cfg_path);
        }
        CURLMcode mc = curl_multi_perform(l->multi, &running);
        if (mc != CURLM_OK)
            wh_error("curl_multi_perform: %s", curl_multi_strerror(mc));
        reap(l);
        if (start_ready(l) > 0)
            continue; /* kick the new transfers at once */
        mc = curl_multi_poll(l->multi, NULL, 0, next_timeout(l), NULL);
        if (mc != CURLM_OK) {
            wh_error("curl_multi_poll: %s", curl_multi_strerror(mc));
            wh_sleep_ms(10);
        }
    }
    /* Drain: let requests in flight finish for a bounded time. */
    uint64_t deadline = wh_now_ms() + DSP_DRAIN_MS;
    if (l->inflight > 0)
        wh_info("stopping: waiting up to %d ms for %d request(s) in flight", DSP_DRAIN_MS,
                l->inflight);
    while (l->inflight > 0) {
        uint64_t now = wh_now_ms();
        if (now >= deadline)
            break;
        curl_multi_perform(l->multi, &running);
        reap(l);
        if (l->inflight == 0)
            break;
        long left = (long)(deadline - now);
        curl_multi_poll(l->multi, NULL, 0, left < 100 ? (int)left : 100, NULL);
    }
    for (int i = 0; i < l->ntargets; i++)
        dsp_target_abandon(&l->targets[i], l->multi);
    l->inflight = 0;
    return WH_OK;
}

void dsp_loop_stop(dsp_loop *l)
{
    atomic_store(&l->stop, 1);
    if (l->multi != NULL)
        curl_multi_wakeup(l->multi);
}

/* Label value escaping for Prometheus: \ " and newline. */
static int put_label(wh_buf *b, const char *name)
{
    if (wh_buf_puts(b, "target=\"") != WH_OK)
        return WH_ERR;
    for (const char *p = name; *p; p++) {
        if ((*p == '\\' || *p == '"') && wh_buf_putc(b, '\\') != WH_OK)
            return WH_ERR;
        if (*p == '\n') {
            if (wh_buf_puts(b, "\\n") != WH_OK)
                return WH_ERR;
            continue;
        }
        if (wh_buf_putc(b, *p) != WH_OK)
            return WH_ERR;
    }
    if (wh_buf_putc(b, '"') != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(b);
}

typedef enum { M_DELIVERED, M_FAILURES, M_LATENCY, M_COMMITTED_LSN, M_CONFIG_ERRORS } metric_kind;

static int render_metric(dsp_loop *l, wh_buf *out, metric_kind kind)
{
    static const char *names[] = {
        "walhook_events_delivered_total", "walhook_delivery_failures_total",
        "walhook_delivery_latency_seconds", "walhook_dispatcher_committed_lsn",
        "walhook_target_config_errors_total"};
    static const char *types[] = {"counter", "counter", "histogram", "gauge", "counter"};
    static const char *helps[] = {
        "Events delivered with a 2xx response, per target.",
        "Failed delivery attempts (non-2xx or transport error), per target.",
        "Time from commit_ts to the 2xx response, per event, per target.",
        "Commit LSN of the last offset the store acknowledged, per target.",
        "Times the target was refused for a bad configuration (it then delivers nothing)."};
    if (wh_metric_header(out, names[kind], types[kind], helps[kind]) != WH_OK)
        return WH_ERR;
    wh_buf lab;
    wh_buf_init(&lab, 0);
    int rc = WH_OK;
    for (int i = 0; i < l->ntargets && rc == WH_OK; i++) {
        dsp_target *t = &l->targets[i];
        wh_buf_reset(&lab);
        if (put_label(&lab, t->name) != WH_OK) {
            rc = WH_ERR;
            break;
        }
        switch (kind) {
        case M_DELIVERED:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->delivered));
            break;
        case M_FAILURES:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->failures));
            break;
        case M_LATENCY:
            rc = wh_metric_hist(out, names[kind], lab.data, &t->latency);
            break;
        case M_COMMITTED_LSN:
            rc = wh_metric_i64(out, names[kind], lab.data, wh_gauge_get(&t->committed_lsn));
            break;
        case M_CONFIG_ERRORS:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->config_errors));
            break;
        }
    }
    wh_buf_free(&lab);
    return rc;
}

int dsp_loop_metrics(dsp_loop *l, wh_buf *out)
{
    for (int k = M_DELIVERED; k <= M_CONFIG_ERRORS; k++)
        if (render_metric(l, out, (metric_kind)k) != WH_OK)
            return WH_ERR;
    if (wh_metric_header(out, "walhook_config_reload_errors_total", "counter",
                         "SIGHUP reloads refused for a bad configuration file "
                         "(the old settings stay)") != WH_OK ||
        wh_metric_u64(out, "walhook_config_reload_errors_total", "",
                      wh_counter_get(&l->reload_errors)) != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(out);
}

void dsp_loop_destroy(dsp_loop *l)
{
    if (l == NULL)
        return;
    /* stop every reader first so their final commits run in parallel */
    for (int i = 0; i < l->ninit; i++)
        if (l->targets[i].thr_started)
            dsp_target_stop_reader(&l->targets[i]);
    for (int i = 0; i < l->ninit; i++)
        dsp_target_destroy(&l->targets[i]);
    free(l->targets);
    if (l->multi != NULL)
        curl_multi_cleanup(l->multi);
    if (l->curl_inited)
        curl_global_cleanup();
    free(l);
}

int dsp_loop_nrefused(const dsp_loop *l)
{
    return l->nrefused;
}

int dsp_loop_ntargets(const dsp_loop *l)
{
    return l->ntargets;
}

dsp_target *dsp_loop_target(dsp_loop *l, int i)
{
    return (i >= 0 && i < l->ntargets) ? &l->targets[i] : NULL;
}
