/* An in-memory adm_backend for the admin API's unit tests and fuzz target:
 * the state document with PutState's version check (412) and validation
 * (the store's wh_state_parse of the rendered document, 400), SetOffset on
 * a small offset table (DropOffset too; SetOffset's conditions and its
 * expected version against the current state, 404/409/412 as the store
 * answers them), PutStates whose reply is lost (written or not), fixed
 * Stats. Single file, static functions. */
#ifndef ADMIN_MEMSTORE_H
#define ADMIN_MEMSTORE_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/admin/adm_api.h"
#include "wh_state.h"
#include "wh_util.h"

#define MEM_END_LSN 0x16B3748ULL
#define MEM_END_SEQ 2

typedef struct mem_offset {
    char key[2 * WH_NAME_MAX + 2];
    adm_pos pos;
    int dropped; /* DropOffset: a tombstone until SetOffset */
    int live;    /* set by SetOffset, not dropped since */
} mem_offset;

typedef struct memstore {
    pthread_mutex_t mu;
    wh_state *cur;
    wh_config base;
    mem_offset offsets[64];
    int noffsets;
    int puts, set_offsets;
    int fail_next_put_412; /* simulate another writer winning once */
    int fail_puts_503;     /* simulate the store refusing every write */
    /* the next PutStates get no reply (status 0), as when the store dies
     * mid-write: lose_put_written ones after the write, lose_put_unwritten
     * ones before it */
    int lose_put_written, lose_put_unwritten;
    int drop_offsets;
    const char *store_metrics;  /* the store's metrics text (its memory budget), or NULL */
    const char *dsp_metrics;    /* the dispatcher's metrics text, or NULL (a default) */
    int all_stats, store_stats; /* queries of every daemon, of the store alone */
    int target_stats;           /* queries of the store and the dispatcher */
    /* Once, at the next SetOffset, before its condition is checked (under
     * mu): another writer acting between the request's read and its move. */
    void (*before_set_offset)(struct memstore *m);
} memstore;

static int mem_get_state(void *arg, wh_state **out, char *err, size_t errlen)
{
    memstore *m = arg;
    pthread_mutex_lock(&m->mu);
    wh_state_ref(m->cur);
    *out = m->cur;
    pthread_mutex_unlock(&m->mu);
    return WH_OK;
}

static int mem_put_state(void *arg, const wh_state *s, uint64_t expected, uint64_t *nv, int *status,
                         char *err, size_t errlen)
{
    memstore *m = arg;
    pthread_mutex_lock(&m->mu);
    int rc = WH_ERR;
    *status = 0;
    if (m->fail_puts_503) {
        *status = 503;
        wh_seterr(err, errlen, "write failing");
        goto out;
    }
    if (m->lose_put_unwritten > 0) {
        m->lose_put_unwritten--;
        wh_seterr(err, errlen, "PutState: no reply: the server closed the connection");
        goto out;
    }
    if (m->fail_next_put_412) {
        m->fail_next_put_412 = 0;
        m->cur->version++; /* "someone else" wrote */
        *status = 412;
        wh_seterr(err, errlen, "version conflict: current is %llu",
                  (unsigned long long)m->cur->version);
        goto out;
    }
    if (expected != m->cur->version) {
        *status = 412;
        wh_seterr(err, errlen, "version conflict: current is %llu",
                  (unsigned long long)m->cur->version);
        goto out;
    }
    wh_buf b;
    wh_buf_init(&b, 0);
    wh_state *parsed = NULL;
    if (wh_state_render(s, &b, 0) != WH_OK ||
        wh_state_parse(&parsed, b.data ? b.data : "", b.len, &m->base, err, errlen) != WH_OK) {
        wh_buf_free(&b);
        *status = 400;
        goto out;
    }
    wh_buf_free(&b);
    parsed->version = m->cur->version + 1;
    wh_state_unref(m->cur);
    m->cur = parsed;
    *nv = parsed->version;
    m->puts++;
    rc = WH_OK;
    if (m->lose_put_written > 0) {
        m->lose_put_written--;
        rc = wh_seterr(err, errlen, "PutState: no reply: the server closed the connection");
    }
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static mem_offset *mem_find_offset(memstore *m, const char *tenant, const char *consumer)
{
    char key[2 * WH_NAME_MAX + 2];
    snprintf(key, sizeof(key), "%s/%s", tenant, consumer);
    for (int i = 0; i < m->noffsets; i++)
        if (strcmp(m->offsets[i].key, key) == 0)
            return &m->offsets[i];
    if (m->noffsets >= 64)
        return NULL;
    mem_offset *o = &m->offsets[m->noffsets++];
    wh_strlcpy(o->key, key, sizeof(o->key));
    o->pos.lsn = 0;
    o->pos.seq = 0;
    return o;
}

static int mem_set_offset(void *arg, const char *tenant, const char *consumer, int cond,
                          uint64_t expected_version, int to_end, adm_pos pos, adm_pos *prev,
                          adm_pos *now, int *status, char *err, size_t errlen)
{
    memstore *m = arg;
    pthread_mutex_lock(&m->mu);
    if (m->before_set_offset) {
        void (*hook)(memstore *) = m->before_set_offset;
        m->before_set_offset = NULL;
        hook(m);
    }
    mem_offset *o = mem_find_offset(m, tenant, consumer);
    const wh_state_tenant *t = wh_state_tenant_find(m->cur, tenant);
    int named = t != NULL && wh_state_target_find(t, consumer) != NULL;
    int rc = WH_ERR;
    *status = 0;
    if (!o) {
        wh_seterr(err, errlen, "offset table full");
    } else if (cond != ADM_OFF_ANY && (t == NULL || (cond == ADM_OFF_TARGET && !named))) {
        *status = 404;
        wh_seterr(err, errlen, "no such tenant or target");
    } else if (cond == ADM_OFF_CREATE && (named || o->live)) {
        *status = 409;
        wh_seterr(err, errlen, "the target exists or its offset is live");
    } else if (expected_version != 0 && expected_version != m->cur->version) {
        *status = 412;
        wh_seterr(err, errlen, "version conflict: current is %llu, the request names %llu",
                  (unsigned long long)m->cur->version, (unsigned long long)expected_version);
    } else {
        *prev = o->pos;
        o->dropped = 0;
        o->live = 1;
        if (to_end) {
            o->pos.lsn = MEM_END_LSN;
            o->pos.seq = MEM_END_SEQ;
        } else {
            o->pos = pos;
        }
        *now = o->pos;
        m->set_offsets++;
        rc = WH_OK;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_drop_offset(void *arg, const char *tenant, const char *consumer, char *err,
                           size_t errlen)
{
    memstore *m = arg;
    pthread_mutex_lock(&m->mu);
    mem_offset *o = mem_find_offset(m, tenant, consumer);
    if (o) {
        o->pos.lsn = 0;
        o->pos.seq = 0;
        o->dropped = 1;
        o->live = 0;
        m->drop_offsets++;
    }
    pthread_mutex_unlock(&m->mu);
    return o ? WH_OK : wh_seterr(err, errlen, "offset table full");
}

static int mem_progress(void *arg, const char *tenant, const char *consumer, adm_pos *end,
                        adm_pos *committed)
{
    memstore *m = arg;
    pthread_mutex_lock(&m->mu);
    mem_offset *o = mem_find_offset(m, tenant, consumer);
    end->lsn = MEM_END_LSN;
    end->seq = MEM_END_SEQ;
    if (o)
        *committed = o->pos;
    pthread_mutex_unlock(&m->mu);
    return o ? WH_OK : WH_ERR;
}

static void mem_stats(void *arg, adm_stat st[ADM_NDAEMONS])
{
    memstore *m = arg;
    static const char *const names[ADM_NDAEMONS] = {"store", "ingestor", "dispatcher"};
    m->all_stats++;
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        wh_strlcpy(st[i].name, names[i], sizeof(st[i].name));
        st[i].up = 1;
        st[i].ready = 1;
        wh_strlcpy(st[i].state, i == 1 ? "streaming" : "running", sizeof(st[i].state));
    }
    if (m->store_metrics)
        st[0].metrics = strdup(m->store_metrics);
    st[2].metrics =
        strdup(m->dsp_metrics ? m->dsp_metrics
                              : "# TYPE walhook_events_delivered_total counter\n"
                                "walhook_events_delivered_total{target=\"t0\"} 42\n"
                                "walhook_delivery_latency_seconds_sum{target=\"t0\"} 0.5\n"
                                "walhook_delivery_latency_seconds_count{target=\"t0\"} 10\n");
}

/* the store and the dispatcher: the ingestor down */
static void mem_target_stats(void *arg, adm_stat st[ADM_NDAEMONS])
{
    memstore *m = arg;
    mem_stats(arg, st);
    m->all_stats--;
    m->target_stats++;
    free(st[1].metrics);
    st[1].metrics = NULL;
    st[1].up = st[1].ready = 0;
    wh_strlcpy(st[1].error, "not queried", sizeof(st[1].error));
}

/* the store alone: the others down */
static void mem_store_stats(void *arg, adm_stat st[ADM_NDAEMONS])
{
    memstore *m = arg;
    mem_stats(arg, st);
    m->all_stats--;
    m->store_stats++;
    for (int i = 1; i < ADM_NDAEMONS; i++) {
        free(st[i].metrics);
        st[i].metrics = NULL;
        st[i].up = st[i].ready = 0;
        wh_strlcpy(st[i].error, "not queried", sizeof(st[i].error));
    }
}

static void mem_slot(void *arg, const wh_state_tenant *t, uint64_t deadline_ms, adm_slot_info *out)
{
    memset(out, 0, sizeof(*out));
    out->found = 1;
    out->active = 1;
    wh_strlcpy(out->confirmed_flush_lsn, "0/16B3700", sizeof(out->confirmed_flush_lsn));
    out->lag_bytes = 4096;
    wh_strlcpy(out->wal_status, "reserved", sizeof(out->wal_status));
    out->safe_wal_size = -1;
}

/* A tenant "default" with target t0 (secret set) and a DSN with a password. */
static int memstore_init(memstore *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
    wh_config_defaults(&m->base);
    wh_strlcpy(m->base.source_dsn, "postgresql://walhook:hunter2@127.0.0.1:5432/shop",
               sizeof(m->base.source_dsn));
    wh_strlcpy(m->base.data_dir, "/tmp/walhook-memstore", sizeof(m->base.data_dir));
    char err[WH_ERRLEN];
    if (wh_config_set_targets(&m->base, "t0=http://127.0.0.1:9/hook", err, sizeof(err)) != WH_OK)
        return WH_ERR;
    wh_strlcpy(m->base.targets[0].secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               sizeof(m->base.targets[0].secret));
    if (wh_config_validate(&m->base, err, sizeof(err)) != WH_OK)
        return WH_ERR;
    if (wh_state_from_config(&m->cur, &m->base, NULL, err, sizeof(err)) != WH_OK)
        return WH_ERR;
    m->cur->version = 1;
    return WH_OK;
}

static void memstore_free(memstore *m)
{
    wh_state_unref(m->cur);
    pthread_mutex_destroy(&m->mu);
}

static adm_backend memstore_backend(memstore *m)
{
    adm_backend be = {.arg = m,
                      .get_state = mem_get_state,
                      .put_state = mem_put_state,
                      .set_offset = mem_set_offset,
                      .drop_offset = mem_drop_offset,
                      .progress = mem_progress,
                      .stats = mem_stats,
                      .slot = mem_slot,
                      .store_stats = mem_store_stats,
                      .target_stats = mem_target_stats};
    return be;
}

#endif
