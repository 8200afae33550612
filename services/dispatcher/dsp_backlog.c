/* dsp_backlog: per-target backlog and oldest undelivered event age. */
#include "dsp_backlog.h"
#include "dsp_zone.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_ipc.h"
#include "wh_metrics.h"
#include "wh_state.h"
#include "wh_util.h"

typedef struct backlog_row {
    char tenant[WH_NAME_MAX];
    char target[WH_NAME_MAX];
    uint64_t events;
    int capped;
    int64_t oldest_ts_us; /* 0: nothing undelivered */
} backlog_row;

struct dsp_backlog {
    wh_config cfg;
    pthread_t thr;
    atomic_int stop;
    pthread_mutex_t mu; /* guards rows and client */
    pthread_cond_t cv;  /* the stop (under mu): ends the thread's wait */
    wh_client *client;  /* the thread's, for dsp_backlog_stop to interrupt */
    backlog_row *rows;
    int nrows;
};

static int ask(wh_client *c, const char *tenant, const char *target, backlog_row *row)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__Backlog b = WALHOOK__BACKLOG__INIT;
    b.tenant = (char *)tenant;
    b.consumer = (char *)target;
    b.max_events = DSP_BACKLOG_MAX;
    req.body_case = WALHOOK__REQUEST__BODY_BACKLOG;
    req.backlog = &b;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN];
    uint64_t zmark = dsp_zone_mark();
    if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK)
        return WH_ERR;
    int rc = WH_ERR;
    if (rep->body_case == WALHOOK__REPLY__BODY_BACKLOG && rep->backlog != NULL) {
        wh_strlcpy(row->tenant, tenant, sizeof(row->tenant));
        wh_strlcpy(row->target, target, sizeof(row->target));
        row->events = rep->backlog->events;
        row->capped = rep->backlog->capped;
        row->oldest_ts_us = rep->backlog->oldest_commit_ts_us;
        dsp_zone_set(tenant, rep->backlog->zone, zmark);
        rc = WH_OK;
    }
    walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

static void refresh(dsp_backlog *b, wh_client *c)
{
    wh_state *s = NULL;
    char err[WH_ERRLEN];
    if (wh_state_fetch(c, 0, &b->cfg, &s, err, sizeof(err)) != WH_OK || s == NULL)
        return;
    int n = 0;
    for (int i = 0; i < s->ntenants; i++)
        n += s->tenants[i].ntargets;
    backlog_row *rows = calloc(n > 0 ? (size_t)n : 1, sizeof(*rows));
    int k = 0;
    for (int i = 0; rows && i < s->ntenants && !atomic_load(&b->stop); i++)
        for (int j = 0; j < s->tenants[i].ntargets && !atomic_load(&b->stop); j++)
            if (ask(c, s->tenants[i].name, s->tenants[i].targets[j].name, &rows[k]) == WH_OK)
                k++;
    wh_state_unref(s);
    if (rows == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    free(b->rows);
    b->rows = rows;
    b->nrows = k;
    pthread_mutex_unlock(&b->mu);
}

static void *backlog_thread(void *arg)
{
    dsp_backlog *b = arg;
    wh_client *c = NULL;
    char err[WH_ERRLEN];
    size_t max = b->cfg.ipc_max_msg_bytes > 0 ? (size_t)b->cfg.ipc_max_msg_bytes : 64u << 20;
    if (wh_client_open(&c, b->cfg.store_endpoint, b->cfg.ipc_timeout_ms, max, err, sizeof(err)) !=
        WH_OK) {
        wh_warn("backlog metrics: store %s: %s", b->cfg.store_endpoint, err);
        return NULL;
    }
    pthread_mutex_lock(&b->mu);
    b->client = c;
    pthread_mutex_unlock(&b->mu);
    while (!atomic_load(&b->stop)) {
        refresh(b, c);
        /* until the next count or the stop (dsp_backlog_stop signals cv):
         * 100 ms naps to look at the flag woke the idle dispatcher ten
         * times a second */
        wh_cond_sleep(&b->cv, &b->mu, &b->stop, DSP_BACKLOG_EVERY_MS);
    }
    pthread_mutex_lock(&b->mu);
    b->client = NULL;
    pthread_mutex_unlock(&b->mu);
    wh_client_close(c);
    return NULL;
}

int dsp_backlog_start(dsp_backlog **out, const wh_config *cfg, char *err, size_t errlen)
{
    dsp_backlog *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return wh_seterr(err, errlen, "out of memory");
    b->cfg = *cfg;
    pthread_mutex_init(&b->mu, NULL);
    wh_cond_init_monotonic(&b->cv);
    if (pthread_create(&b->thr, NULL, backlog_thread, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return wh_seterr(err, errlen, "cannot start the backlog thread");
    }
    *out = b;
    return WH_OK;
}

int dsp_backlog_render(dsp_backlog *b, wh_buf *out)
{
    if (b == NULL)
        return WH_OK;
    int rc = WH_OK;
    int64_t now = wh_wallclock_us();
    pthread_mutex_lock(&b->mu);
    /* each metric's samples form one group after its header */
    for (int pass = 0; pass < 2 && rc == WH_OK; pass++) {
        rc |= pass == 0
                  ? wh_metric_header(out, "walhook_target_backlog_events", "gauge",
                                     "Stored events after the target's committed offset "
                                     "(counted up to 1000000, refreshed every 5 s).")
                  : wh_metric_header(out, "walhook_target_oldest_undelivered_age_seconds", "gauge",
                                     "Age (now - commit time) of the target's oldest "
                                     "undelivered event; 0 when it delivered everything.");
        for (int i = 0; i < b->nrows && rc == WH_OK; i++) {
            const backlog_row *r = &b->rows[i];
            char lab[2 * WH_NAME_MAX + 32];
            /* tenant and target names are [A-Za-z0-9_.-]: no escaping needed */
            snprintf(lab, sizeof(lab), "tenant=\"%s\",target=\"%s\"", r->tenant, r->target);
            if (pass == 0) {
                rc |= wh_metric_u64(out, "walhook_target_backlog_events", lab, r->events);
                continue;
            }
            double age = r->events > 0 && r->oldest_ts_us > 0 && now > r->oldest_ts_us
                             ? (double)(now - r->oldest_ts_us) / 1e6
                             : 0.0;
            rc |= wh_buf_printf(out, "walhook_target_oldest_undelivered_age_seconds{%s} %.3f\n",
                                lab, age);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rc == WH_OK ? WH_OK : WH_ERR;
}

void dsp_backlog_stop(dsp_backlog *b)
{
    if (b == NULL)
        return;
    atomic_store(&b->stop, 1);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    if (b->client != NULL)
        wh_client_interrupt(b->client); /* a count in progress returns at once */
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thr, NULL);
    free(b->rows);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
