/* adm_backend: store, daemons and source databases behind the admin API. */
#include "adm_backend.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh_dsn.h"
#include "wh_ipc.h"
#include "wh_pgerr.h"
#include "wh_util.h"

/* A tenant's source connection for the slot query, kept open between
 * scrapes (a new connection forks a backend on the source each time, ~10 ms
 * of its CPU), and the last answer, reused for ADM_SLOT_FRESH_MS. */
#define ADM_SLOT_FRESH_MS 1000
#define ADM_SLOT_IDLE_MS 120000 /* a connection unused this long is closed */
/* The bound of a source query outside a scrape's (the backfill's table
 * check, adm_slot_query): the connect_timeout they had */
#define ADM_SLOT_QUERY_MS 3000
typedef struct adm_slotconn {
    pthread_mutex_t mu; /* one query at a time on pg; guards the rest */
    char tenant[WH_NAME_MAX];
    char dsn[WH_URL_MAX];
    char slot[WH_NAME_MAX];
    PGconn *pg;
    adm_slot_info info;
    uint64_t at_ms; /* when info was read; 0 = never */
    uint64_t used_ms;
} adm_slotconn;

struct adm_store {
    pthread_mutex_t mu; /* one request at a time on client; guards cached */
    wh_client *client;
    wh_config *base;
    wh_state *cached;
    adm_query *q;
    /* known_state: a client of its own (ADM_STATS_TIMEOUT_MS, failing at
     * once when the store's socket is not there), one read at a time
     * (known_fetch_mu), and the last state it read, under known_mu */
    pthread_mutex_t known_fetch_mu;
    pthread_mutex_t known_mu;
    wh_client *known_client;
    wh_state *known;
    pthread_mutex_t slots_mu; /* guards the tenant names of slots */
    adm_slotconn slots[WH_MAX_TENANTS];
};

#define ADM_STORE_TIMEOUT_MS 3000

/* GetState on the store's client; the caller holds s->mu. */
static int get_state_locked(adm_store *s, wh_state **out, char *err, size_t errlen)
{
    wh_state *next = NULL;
    uint64_t known = s->cached ? s->cached->version : 0;
    int rc = wh_state_fetch(s->client, known, s->base, &next, err, errlen);
    if (rc == WH_OK && next) {
        wh_state_unref(s->cached);
        s->cached = next;
    }
    if (rc == WH_OK && !s->cached)
        rc = wh_seterr(err, errlen, "the store has no state yet");
    if (rc == WH_OK) {
        wh_state_ref(s->cached);
        *out = s->cached;
    }
    return rc;
}

static int b_get_state(void *arg, wh_state **out, char *err, size_t errlen)
{
    adm_store *s = arg;
    pthread_mutex_lock(&s->mu);
    int rc = get_state_locked(s, out, err, errlen);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Takes s->mu, waiting for it until deadline_ms (wh_now_ms) at most:
 * WH_OK, or WH_ERR with the ms waited in *left. */
static int store_lock_by(adm_store *s, uint64_t deadline_ms, int64_t *left)
{
    uint64_t now = wh_now_ms();
    *left = deadline_ms > now ? (int64_t)(deadline_ms - now) : 0;
    struct timespec until;
    wh_deadline_in(&until, CLOCK_REALTIME, *left);
    return pthread_mutex_timedlock(&s->mu, &until) == 0 ? WH_OK : WH_ERR;
}

/* get_state behind another request to the store until deadline_ms at
 * most: behind a store that does not answer each such request holds the
 * client for its timeout, and the status pages nobody waits for any more
 * (adm_bg) would queue up behind each other, 3 s each. */
static int b_get_state_by(void *arg, uint64_t deadline_ms, wh_state **out, char *err, size_t errlen)
{
    adm_store *s = arg;
    int64_t left;
    if (store_lock_by(s, deadline_ms, &left) != WH_OK)
        return wh_seterr(err, errlen,
                         "another request to the store still waits for its answer after %lld ms",
                         (long long)left);
    int rc = get_state_locked(s, out, err, errlen);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* One read of the store at a time: a scrape that finds one under way
 * answers from the last state read instead of waiting behind it (behind a
 * store that does not answer, each scrape's slot task waited its turn, a
 * second each, and they piled up). */
static int b_known_state(void *arg, wh_state **out, char *err, size_t errlen)
{
    adm_store *s = arg;
    int rc = WH_ERR;
    if (pthread_mutex_trylock(&s->known_fetch_mu) == 0) {
        pthread_mutex_lock(&s->known_mu);
        uint64_t version = s->known ? s->known->version : 0;
        pthread_mutex_unlock(&s->known_mu);
        wh_state *next = NULL;
        if (s->known_client == NULL)
            wh_seterr(err, errlen, "no client of the store");
        else
            rc = wh_state_fetch(s->known_client, version, s->base, &next, err, errlen);
        if (rc == WH_OK && next) {
            pthread_mutex_lock(&s->known_mu);
            wh_state_unref(s->known);
            s->known = next;
            pthread_mutex_unlock(&s->known_mu);
        }
        pthread_mutex_unlock(&s->known_fetch_mu);
    } else {
        wh_seterr(err, errlen, "another read of the state is under way");
    }
    pthread_mutex_lock(&s->known_mu);
    /* none read here yet: get_state's, unless a call holds it */
    if (s->known == NULL && pthread_mutex_trylock(&s->mu) == 0) {
        if (s->cached != NULL) {
            wh_state_ref(s->cached);
            s->known = s->cached;
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (s->known != NULL) { /* the store's answer, or the last one */
        wh_state_ref(s->known);
        *out = s->known;
        rc = WH_OK;
    } else if (rc == WH_OK) {
        rc = wh_seterr(err, errlen, "the store has no state yet");
    }
    pthread_mutex_unlock(&s->known_mu);
    return rc;
}

static int b_put_state(void *arg, const wh_state *st, uint64_t expected, uint64_t *new_version,
                       int *status, char *err, size_t errlen)
{
    adm_store *s = arg;
    pthread_mutex_lock(&s->mu);
    int rc = wh_state_store(s->client, st, expected, "api", new_version, status, err, errlen);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int b_drop_offset(void *arg, const char *tenant, const char *consumer, char *err,
                         size_t errlen)
{
    adm_store *s = arg;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__DropOffset d = WALHOOK__DROP_OFFSET__INIT;
    d.tenant = (char *)tenant;
    d.consumer = (char *)consumer;
    req.body_case = WALHOOK__REQUEST__BODY_DROP_OFFSET;
    req.drop_offset = &d;
    Walhook__Reply *rep = NULL;
    int status = 0;
    pthread_mutex_lock(&s->mu);
    int rc = wh_client_call_status(s->client, &req, &rep, &status, err, errlen);
    pthread_mutex_unlock(&s->mu);
    if (rc == WH_OK)
        walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

static int b_set_offset(void *arg, const char *tenant, const char *consumer, int cond,
                        uint64_t expected_version, int to_end, adm_pos pos, adm_pos *previous,
                        adm_pos *now, int *status, char *err, size_t errlen)
{
    adm_store *s = arg;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__SetOffset so = WALHOOK__SET_OFFSET__INIT;
    Walhook__Position p = WALHOOK__POSITION__INIT;
    so.tenant = (char *)tenant;
    so.consumer = (char *)consumer;
    so.to_end = to_end ? 1 : 0;
    so.condition = cond == ADM_OFF_TARGET   ? WALHOOK__SET_OFFSET__CONDITION__TARGET
                   : cond == ADM_OFF_CREATE ? WALHOOK__SET_OFFSET__CONDITION__CREATE
                                            : WALHOOK__SET_OFFSET__CONDITION__ANY;
    so.expected_version = expected_version;
    p.lsn = pos.lsn;
    p.seq = pos.seq;
    so.pos = &p;
    req.body_case = WALHOOK__REQUEST__BODY_SET_OFFSET;
    req.set_offset = &so;
    Walhook__Reply *rep = NULL;
    pthread_mutex_lock(&s->mu);
    *status = 0;
    int rc = wh_client_call_status(s->client, &req, &rep, status, err, errlen);
    pthread_mutex_unlock(&s->mu);
    if (rc != WH_OK)
        return WH_ERR;
    if (rep->body_case != WALHOOK__REPLY__BODY_OFFSET || !rep->offset) {
        walhook__reply__free_unpacked(rep, NULL);
        return wh_seterr(err, errlen, "SetOffset: the store's reply has no offset");
    }
    memset(previous, 0, sizeof(*previous));
    memset(now, 0, sizeof(*now));
    if (rep->offset->previous) {
        previous->lsn = rep->offset->previous->lsn;
        previous->seq = rep->offset->previous->seq;
    }
    if (rep->offset->committed) {
        now->lsn = rep->offset->committed->lsn;
        now->seq = rep->offset->committed->seq;
    }
    walhook__reply__free_unpacked(rep, NULL);
    return WH_OK;
}

static int b_store_call(void *arg, const Walhook__Request *req, Walhook__Reply **rep, int *status,
                        char *err, size_t errlen)
{
    adm_store *s = arg;
    pthread_mutex_lock(&s->mu);
    *status = 0;
    int rc = wh_client_call_status(s->client, req, rep, status, err, errlen);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* TenantInfo and GetOffset on the store's client; the caller holds s->mu. */
static int progress_locked(adm_store *s, const char *tenant, const char *consumer, adm_pos *end,
                           adm_pos *committed)
{
    char err[WH_ERRLEN];
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__TenantInfo ti = WALHOOK__TENANT_INFO__INIT;
    Walhook__GetOffset go = WALHOOK__GET_OFFSET__INIT;
    Walhook__Reply *rep = NULL;
    ti.tenant = (char *)tenant;
    req.body_case = WALHOOK__REQUEST__BODY_TENANT_INFO;
    req.tenant_info = &ti;
    int rc = wh_client_call(s->client, &req, &rep, err, sizeof(err));
    if (rc == WH_OK) {
        if (rep->body_case == WALHOOK__REPLY__BODY_TENANT_INFO && rep->tenant_info &&
            rep->tenant_info->end) {
            end->lsn = rep->tenant_info->end->lsn;
            end->seq = rep->tenant_info->end->seq;
        } else {
            rc = WH_ERR;
        }
        walhook__reply__free_unpacked(rep, NULL);
        rep = NULL;
    }
    if (rc == WH_OK) {
        go.tenant = (char *)tenant;
        go.consumer = (char *)consumer;
        req.body_case = WALHOOK__REQUEST__BODY_GET_OFFSET;
        req.get_offset = &go;
        rc = wh_client_call(s->client, &req, &rep, err, sizeof(err));
        if (rc == WH_OK) {
            memset(committed, 0, sizeof(*committed));
            if (rep->body_case == WALHOOK__REPLY__BODY_OFFSET && rep->offset &&
                rep->offset->committed) {
                committed->lsn = rep->offset->committed->lsn;
                committed->seq = rep->offset->committed->seq;
            }
            walhook__reply__free_unpacked(rep, NULL);
        }
    }
    return rc;
}

static int b_progress(void *arg, const char *tenant, const char *consumer, adm_pos *end,
                      adm_pos *committed)
{
    adm_store *s = arg;
    pthread_mutex_lock(&s->mu);
    int rc = progress_locked(s, tenant, consumer, end, committed);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* progress behind another request to the store until deadline_ms at most
 * (get_state_by's reason: the status pages' tasks, each reading every
 * target's backlog, queued up behind a store that stopped answering
 * meanwhile, 3 s each, holding their threads and the client long after
 * the pages had answered). */
static int b_progress_by(void *arg, uint64_t deadline_ms, const char *tenant, const char *consumer,
                         adm_pos *end, adm_pos *committed)
{
    adm_store *s = arg;
    int64_t left;
    if (store_lock_by(s, deadline_ms, &left) != WH_OK)
        return WH_ERR;
    int rc = progress_locked(s, tenant, consumer, end, committed);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void b_stats(void *arg, adm_stat st[ADM_NDAEMONS])
{
    adm_store *s = arg;
    static const char *const names[ADM_NDAEMONS] = {"store", "ingestor", "dispatcher"};
    if (s->q) {
        adm_query_all(s->q, st);
        return;
    }
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        wh_strlcpy(st[i].name, names[i], sizeof(st[i].name));
        wh_strlcpy(st[i].error, "no query configured", sizeof(st[i].error));
    }
}

static void b_target_stats(void *arg, adm_stat st[ADM_NDAEMONS])
{
    adm_store *s = arg;
    if (s->q) {
        adm_query_targets(s->q, st);
        return;
    }
    b_stats(arg, st);
}

static void b_store_stats(void *arg, adm_stat st[ADM_NDAEMONS])
{
    adm_store *s = arg;
    if (s->q) {
        adm_query_store(s->q, st);
        return;
    }
    b_stats(arg, st);
}

/* A failed query's error for the API: one line, a server's text only where
 * it quotes no value (wh_pgerr_result), never the DSN's password. */
static void result_error(const char *dsn, const PGresult *r, char *out, size_t len)
{
    char raw[256];
    wh_pgerr_result(r, raw, sizeof(raw));
    wh_dsn_scrub(dsn, raw, out, len);
}

/* Waits until pg's socket is ready for ev (POLLIN, POLLOUT) or until
 * deadline_ms (wh_now_ms): 1 ready, 0 timed out, -1 error. */
static int pg_wait(PGconn *pg, short ev, uint64_t deadline_ms)
{
    for (;;) {
        int fd = PQsocket(pg);
        if (fd < 0)
            return -1;
        uint64_t now = wh_now_ms();
        if (now >= deadline_ms)
            return 0;
        uint64_t left = deadline_ms - now;
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Connects *pg when it is not connected, giving up at deadline_ms (a
 * source that takes the connection but does not answer, or drops the
 * packets, costs no more: libpq's connect_timeout is 2 s at least); 1 when
 * it is connected, else 0 with why in err (*timed_out set when the
 * deadline passed). The slot query's and the backfill's table check's. */
static int pg_connect_within(PGconn **pg, const char *dsn, uint64_t deadline_ms, int *timed_out,
                             char *err, size_t errlen)
{
    *timed_out = 0;
    if (*pg != NULL && PQstatus(*pg) == CONNECTION_OK)
        return 1;
    PQfinish(*pg);
    uint64_t t0 = wh_now_ms();
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {dsn, "walhook-admin", NULL};
    *pg = PQconnectStartParams(keys, vals, 1);
    if (*pg != NULL && PQstatus(*pg) != CONNECTION_BAD) {
        /* libpq's loop: as if PQconnectPoll had said "writing" first */
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
            int w = pg_wait(*pg, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline_ms);
            if (w <= 0) {
                *timed_out = w == 0;
                break;
            }
            st = PQconnectPoll(*pg);
        }
        if (st == PGRES_POLLING_OK && PQstatus(*pg) == CONNECTION_OK)
            return 1;
    }
    if (*timed_out) {
        snprintf(err, errlen, "source unreachable: no answer within %llu ms",
                 (unsigned long long)(deadline_ms > t0 ? deadline_ms - t0 : 0));
    } else {
        /* libpq's parse errors may quote the DSN: never its password */
        char raw[256], m[201];
        wh_dsn_scrub(dsn, *pg ? PQerrorMessage(*pg) : "out of memory", raw, sizeof(raw));
        wh_pg_oneline(raw, m, sizeof(m));
        snprintf(err, errlen, "source unreachable: %s", m);
    }
    PQfinish(*pg);
    *pg = NULL;
    return 0;
}

/* Runs sql on pg, waiting for its answer until deadline_ms: the result
 * (PQclear it; NULL when the send failed or the connection broke), or NULL
 * with *timed_out set when the source has not answered by then (the
 * connection is then in the middle of a query: close it). */
static PGresult *exec_within(PGconn *pg, const char *sql, int nparams, const char *const *params,
                             uint64_t deadline_ms, int *timed_out)
{
    *timed_out = 0;
    if (!PQsendQueryParams(pg, sql, nparams, NULL, params, NULL, NULL, 0))
        return NULL;
    PGresult *first = NULL;
    for (;;) {
        while (PQisBusy(pg)) {
            int w = pg_wait(pg, POLLIN, deadline_ms);
            if (w <= 0 || !PQconsumeInput(pg)) {
                *timed_out = w == 0;
                PQclear(first);
                return NULL;
            }
        }
        PGresult *r = PQgetResult(pg);
        if (r == NULL)
            return first;
        if (first == NULL)
            first = r;
        else
            PQclear(r);
    }
}

/* The slot query on *pg, (re)connected as needed: a connection the source
 * closed meanwhile (a restart) is replaced once. Bounded by deadline_ms:
 * a source that has not answered by then (stopped, hung, unreachable) is
 * an error, and the connection, in the middle of the query, is closed. */
static void slot_query_on(PGconn **pg, const char *dsn, const char *slot, uint64_t deadline_ms,
                          adm_slot_info *out)
{
    memset(out, 0, sizeof(*out));
    out->lag_bytes = -1;
    out->safe_wal_size = -1;
    uint64_t t0 = wh_now_ms();
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = *pg == NULL || PQstatus(*pg) != CONNECTION_OK;
        int timed_out;
        if (!pg_connect_within(pg, dsn, deadline_ms, &timed_out, out->error, sizeof(out->error)))
            return;
        const char *params[] = {slot};
        PGresult *r = exec_within(
            *pg,
            "SELECT confirmed_flush_lsn::text, CASE WHEN pg_is_in_recovery() THEN NULL ELSE "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint END, "
            "wal_status, safe_wal_size, active FROM pg_replication_slots WHERE slot_name = $1",
            1, params, deadline_ms, &timed_out);
        if (timed_out) {
            snprintf(out->error, sizeof(out->error),
                     "slot query: the source did not answer within %llu ms",
                     (unsigned long long)(deadline_ms > t0 ? deadline_ms - t0 : 0));
            PQfinish(*pg);
            *pg = NULL;
            return;
        }
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char m[256];
            result_error(dsn, r, m, sizeof(m));
            snprintf(out->error, sizeof(out->error), "slot query failed: %.200s", m);
            PQclear(r);
            if (PQstatus(*pg) == CONNECTION_OK || fresh)
                return;
            PQfinish(*pg); /* the kept connection broke: once more on a new one */
            *pg = NULL;
            out->error[0] = '\0';
            continue;
        }
        if (PQntuples(r) == 1) {
            out->found = 1;
            wh_strlcpy(out->confirmed_flush_lsn, PQgetvalue(r, 0, 0),
                       sizeof(out->confirmed_flush_lsn));
            if (!PQgetisnull(r, 0, 1))
                out->lag_bytes = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
            wh_strlcpy(out->wal_status, PQgetvalue(r, 0, 2), sizeof(out->wal_status));
            if (!PQgetisnull(r, 0, 3))
                out->safe_wal_size = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
            out->active = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
        }
        PQclear(r);
        return;
    }
}

void adm_slot_query(const char *dsn, const char *slot, adm_slot_info *out)
{
    PGconn *pg = NULL;
    slot_query_on(&pg, dsn, slot, wh_now_ms() + ADM_SLOT_QUERY_MS, out);
    PQfinish(pg);
}

/* The tenant's entry, claimed if new (the least recently used one goes
 * when all are taken). */
static adm_slotconn *slot_entry(adm_store *s, const char *tenant)
{
    pthread_mutex_lock(&s->slots_mu);
    adm_slotconn *e = NULL, *lru = &s->slots[0];
    for (int i = 0; i < WH_MAX_TENANTS && e == NULL; i++) {
        if (strcmp(s->slots[i].tenant, tenant) == 0)
            e = &s->slots[i];
        else if (s->slots[i].used_ms < lru->used_ms)
            lru = &s->slots[i];
    }
    if (e == NULL) {
        e = lru;
        pthread_mutex_lock(&e->mu);
        wh_strlcpy(e->tenant, tenant, sizeof(e->tenant));
        e->at_ms = 0;
        e->dsn[0] = '\0';
        pthread_mutex_unlock(&e->mu);
    }
    uint64_t now = wh_now_ms();
    e->used_ms = now;
    /* a removed tenant's connection is not kept */
    for (int i = 0; i < WH_MAX_TENANTS; i++) {
        adm_slotconn *o = &s->slots[i];
        if (o != e && o->pg != NULL && now - o->used_ms > ADM_SLOT_IDLE_MS &&
            pthread_mutex_trylock(&o->mu) == 0) {
            PQfinish(o->pg);
            o->pg = NULL;
            pthread_mutex_unlock(&o->mu);
        }
    }
    pthread_mutex_unlock(&s->slots_mu);
    return e;
}

/* POST /v1/tenants/{t}/backfill: is table published? A connection of its
 * own (rare calls); the connect and the query together bounded by
 * ADM_SLOT_QUERY_MS like the slot query's (pg_connect_within,
 * exec_within): a source that does not answer (a backend stopped or hung,
 * a listener that never speaks) is -2, not a request waiting for ever. */
static int b_table_check(void *arg, const wh_state_tenant *t, const char *table, char *err,
                         size_t errlen)
{
    (void)arg;
    uint64_t deadline = wh_now_ms() + ADM_SLOT_QUERY_MS;
    char server[128];
    wh_dsn_server(t->dsn, server, sizeof(server));
    PGconn *pg = NULL;
    int timed_out;
    char cerr[256];
    if (!pg_connect_within(&pg, t->dsn, deadline, &timed_out, cerr, sizeof(cerr))) {
        wh_seterr(err, errlen, "the source of tenant '%s' (%s): %s", t->name, server, cerr);
        return timed_out ? -2 : -1;
    }
    const char *params[] = {t->publication, table};
    PGresult *r = exec_within(pg,
                              "SELECT 1 FROM pg_catalog.pg_publication_tables WHERE pubname = $1 "
                              "AND schemaname || '.' || tablename = $2",
                              2, params, deadline, &timed_out);
    int rc;
    if (timed_out) {
        wh_seterr(err, errlen,
                  "the source of tenant '%s' (%s) did not answer the publication query within "
                  "%d ms",
                  t->name, server, ADM_SLOT_QUERY_MS);
        rc = -2;
    } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char m[256];
        result_error(t->dsn, r, m, sizeof(m));
        wh_seterr(err, errlen, "publication query failed on the source of tenant '%s' (%s): %.200s",
                  t->name, server, m);
        rc = -1;
    } else {
        rc = PQntuples(r) > 0;
    }
    PQclear(r);
    PQfinish(pg); /* in the middle of the query when timed out: closed */
    return rc;
}

static void b_slot(void *arg, const wh_state_tenant *t, uint64_t deadline_ms, adm_slot_info *out)
{
    adm_store *s = arg;
    adm_slotconn *e = slot_entry(s, t->name);
    /* behind a query of this tenant's (another request's, bounded by its
     * own deadline) until this one's deadline at most */
    uint64_t now0 = wh_now_ms();
    struct timespec until;
    wh_deadline_in(&until, CLOCK_REALTIME, deadline_ms > now0 ? (int64_t)(deadline_ms - now0) : 0);
    if (pthread_mutex_timedlock(&e->mu, &until) != 0) {
        memset(out, 0, sizeof(*out));
        out->lag_bytes = -1;
        out->safe_wal_size = -1;
        snprintf(out->error, sizeof(out->error),
                 "slot query: another one of this tenant has not returned within %llu ms",
                 (unsigned long long)(deadline_ms > now0 ? deadline_ms - now0 : 0));
        return;
    }
    uint64_t now = wh_now_ms();
    if (strcmp(e->dsn, t->dsn) != 0 || strcmp(e->slot, t->slot) != 0) {
        PQfinish(e->pg); /* a new source: not the old connection */
        e->pg = NULL;
        e->at_ms = 0;
        wh_strlcpy(e->dsn, t->dsn, sizeof(e->dsn));
        wh_strlcpy(e->slot, t->slot, sizeof(e->slot));
    }
    if (e->at_ms == 0 || now - e->at_ms >= ADM_SLOT_FRESH_MS) {
        slot_query_on(&e->pg, e->dsn, e->slot, deadline_ms, &e->info);
        e->at_ms = wh_now_ms();
    }
    *out = e->info;
    pthread_mutex_unlock(&e->mu);
}

int adm_backend_open(adm_backend *out, const wh_config *cfg, adm_query *q, char *err, size_t errlen)
{
    adm_store *s = calloc(1, sizeof(*s));
    if (!s)
        return wh_seterr(err, errlen, "out of memory");
    s->base = malloc(sizeof(*s->base));
    if (!s->base) {
        free(s);
        return wh_seterr(err, errlen, "out of memory");
    }
    memcpy(s->base, cfg, sizeof(*cfg));
    size_t maxmsg = cfg->ipc_max_msg_bytes > 0 ? (size_t)cfg->ipc_max_msg_bytes : 64u << 20;
    if (wh_client_open(&s->client, cfg->store_endpoint, ADM_STORE_TIMEOUT_MS, maxmsg, err,
                       errlen) != WH_OK) {
        free(s->base);
        free(s);
        return WH_ERR;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->known_fetch_mu, NULL);
    pthread_mutex_init(&s->known_mu, NULL);
    char kerr[WH_ERRLEN];
    if (wh_client_open(&s->known_client, cfg->store_endpoint, ADM_STATS_TIMEOUT_MS, maxmsg, kerr,
                       sizeof(kerr)) == WH_OK)
        wh_client_set_connect_wait(s->known_client, 0);
    else
        s->known_client = NULL; /* known_state falls back to nothing */
    pthread_mutex_init(&s->slots_mu, NULL);
    for (int i = 0; i < WH_MAX_TENANTS; i++)
        pthread_mutex_init(&s->slots[i].mu, NULL);
    s->q = q;
    memset(out, 0, sizeof(*out));
    out->arg = s;
    out->get_state = b_get_state;
    out->get_state_by = b_get_state_by;
    out->put_state = b_put_state;
    out->set_offset = b_set_offset;
    out->drop_offset = b_drop_offset;
    out->progress = b_progress;
    out->progress_by = b_progress_by;
    out->stats = b_stats;
    out->slot = b_slot;
    out->known_state = b_known_state;
    out->table_check = b_table_check;
    out->store_call = b_store_call;
    out->store_stats = b_store_stats;
    out->target_stats = b_target_stats;
    return WH_OK;
}

void adm_backend_close(adm_backend *be)
{
    adm_store *s = be ? be->arg : NULL;
    if (!s)
        return;
    wh_client_close(s->client);
    if (s->known_client != NULL)
        wh_client_close(s->known_client);
    wh_state_unref(s->known);
    pthread_mutex_destroy(&s->known_mu);
    pthread_mutex_destroy(&s->known_fetch_mu);
    wh_state_unref(s->cached);
    for (int i = 0; i < WH_MAX_TENANTS; i++) {
        PQfinish(s->slots[i].pg);
        pthread_mutex_destroy(&s->slots[i].mu);
    }
    pthread_mutex_destroy(&s->slots_mu);
    pthread_mutex_destroy(&s->mu);
    free(s->base);
    free(s);
    be->arg = NULL;
}
