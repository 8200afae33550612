/* adm_query: Stats queries to the daemons, readiness verdict, metrics page. */
#include "adm_query.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adm_bg.h"
#include "wh_ipc.h"
#include "wh_metrics.h"
#include "wh_daemon.h"
#include "wh_state.h"
#include "wh_util.h"

/* The ingestor of one tenant (one per tenant of the runtime state). */
typedef struct adm_ing {
    char tenant[WH_NAME_MAX];
    char url[WH_URL_MAX];
    wh_client *client;
} adm_ing;

/* A dispatcher replica announced in the store's leases (owner, control). */
typedef struct adm_rep {
    char owner[128];
    char url[WH_URL_MAX];
    wh_client *client;
    size_t max_msg;
    adm_stat st;      /* this query's answer */
    int64_t retry_ms; /* after a failed query: not asked again before this (monotonic) */
    char last_err[200];
} adm_rep;

/* A replica that did not answer is not asked again for this long: a dead
 * one (its owner entry lives for the lease TTL) costs one Stats timeout,
 * not one per request. */
#define ADM_REPLICA_RETRY_MS 5000

struct adm_query {
    char name[ADM_NDAEMONS][16];
    wh_client *client[ADM_NDAEMONS];
    pthread_mutex_t mu[ADM_NDAEMONS];
    char open_err[ADM_NDAEMONS][256];

    /* "ingestor" stands for every tenant's ingestor: the tenants come from
     * the runtime state (GetState on the store, cheap when unchanged); until
     * the store answers, the configured ingestor.control alone. The list
     * under mu[1]; state_client and state_version under state_mu, taken
     * by one request at a time (the others go on with the list). */
    wh_config *cfg;
    pthread_mutex_t state_mu;
    wh_client *state_client;
    uint64_t state_version;
    adm_ing ing[WH_MAX_TENANTS];
    int ning;

    /* the dispatcher replicas of the last query, their clients kept open;
     * under mu[2] */
    adm_rep rep[ADM_REPLICAS_MAX];
    int nrep;
    /* the store's lease table (LeaseList): a client of its own, failing at
     * once when the store is not there, under lease_mu, taken by one
     * request at a time; the others go on with the last answer's counts
     * (under mu[2]: live owners, and those that announced a control
     * endpoint, 0 when the call failed) and replicas */
    wh_client *lease_client;
    pthread_mutex_t lease_mu;
    size_t lease_nlive, lease_nctl;
};

static const char *const adm_names[ADM_NDAEMONS] = {"store", "ingestor", "dispatcher"};

int adm_stats_wait_ms = 2000;

int adm_query_open(adm_query **out, const wh_config *c, char *err, size_t errlen)
{
    if (c->admin_stats_wait_ms > 0)
        adm_stats_wait_ms = c->admin_stats_wait_ms;
    adm_query *q = calloc(1, sizeof(*q));
    if (!q)
        return wh_seterr(err, errlen, "out of memory");
    const char *urls[ADM_NDAEMONS] = {c->store_endpoint, c->ingestor_control,
                                      c->dispatcher_control};
    size_t maxmsg = c->ipc_max_msg_bytes > 0 ? (size_t)c->ipc_max_msg_bytes : 64u << 20;
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        wh_strlcpy(q->name[i], adm_names[i], sizeof(q->name[i]));
        pthread_mutex_init(&q->mu[i], NULL);
        char e[WH_ERRLEN];
        /* A failure here (bad URL) is reported per request rather than
         * preventing the admin from serving /livez and /metrics. */
        if (wh_client_open(&q->client[i], urls[i], ADM_STATS_TIMEOUT_MS, maxmsg, e, sizeof(e)) !=
            WH_OK) {
            q->client[i] = NULL;
            snprintf(q->open_err[i], sizeof(q->open_err[i]), "cannot open client: %.200s", e);
            wh_warn("%s: %s", adm_names[i], q->open_err[i]);
        } else {
            /* a daemon whose socket is not there is down now: /metrics,
             * /readyz and the status page say so without waiting */
            wh_client_set_connect_wait(q->client[i], 0);
        }
    }
    q->cfg = malloc(sizeof(*q->cfg));
    if (q->cfg != NULL) {
        *q->cfg = *c;
        char e[WH_ERRLEN];
        if (wh_client_open(&q->state_client, c->store_endpoint, ADM_STATS_TIMEOUT_MS, maxmsg, e,
                           sizeof(e)) != WH_OK)
            q->state_client = NULL;
        else /* a store that is not there: the ingestors' Stats at once */
            wh_client_set_connect_wait(q->state_client, 0);
    }
    pthread_mutex_init(&q->state_mu, NULL);
    pthread_mutex_init(&q->lease_mu, NULL);
    {
        char e[WH_ERRLEN];
        if (wh_client_open(&q->lease_client, c->store_endpoint, ADM_STATS_TIMEOUT_MS, maxmsg, e,
                           sizeof(e)) != WH_OK)
            q->lease_client = NULL;
        else
            wh_client_set_connect_wait(q->lease_client, 0);
    }
    *out = q;
    return WH_OK;
}

/* Under state_mu: the runtime state when it changed since the tenants'
 * list was made; NULL when unchanged or when the store does not answer
 * (keep the list). */
static wh_state *tenants_fetch(adm_query *q)
{
    if (q->cfg == NULL || q->state_client == NULL)
        return NULL;
    wh_state *s = NULL;
    char e[WH_ERRLEN];
    if (wh_state_fetch(q->state_client, q->state_version, q->cfg, &s, e, sizeof(e)) != WH_OK)
        return NULL;
    return s;
}

/* Under state_mu and mu[1]: follows the tenants of s (consumed). */
static void tenants_apply(adm_query *q, wh_state *s)
{
    adm_ing next[WH_MAX_TENANTS];
    int n = 0;
    for (int i = 0; i < s->ntenants && n < WH_MAX_TENANTS; i++) {
        adm_ing *g = &next[n++];
        memset(g, 0, sizeof(*g));
        wh_strlcpy(g->tenant, s->tenants[i].name, sizeof(g->tenant));
        wh_state_ingestor_control(g->url, sizeof(g->url), q->cfg, g->tenant);
        for (int k = 0; k < q->ning; k++) /* keep open clients */
            if (q->ing[k].client != NULL && strcmp(q->ing[k].url, g->url) == 0) {
                g->client = q->ing[k].client;
                q->ing[k].client = NULL;
            }
    }
    for (int k = 0; k < q->ning; k++)
        if (q->ing[k].client != NULL)
            wh_client_close(q->ing[k].client);
    memcpy(q->ing, next, (size_t)n * sizeof(next[0]));
    q->ning = n;
    q->state_version = s->version;
    wh_state_unref(s);
}

void adm_query_close(adm_query *q)
{
    if (!q)
        return;
    /* a query the request stopped waiting for (adm_query_all) may still
     * use the clients: its calls end within their timeouts */
    if (!adm_bg_drain(ADM_STATS_TIMEOUT_MS)) {
        wh_warn("a Stats query still runs at shutdown; its clients are left open");
        return;
    }
    for (int k = 0; k < q->ning; k++)
        if (q->ing[k].client != NULL)
            wh_client_close(q->ing[k].client);
    if (q->state_client != NULL)
        wh_client_close(q->state_client);
    for (int k = 0; k < q->nrep; k++)
        if (q->rep[k].client != NULL)
            wh_client_close(q->rep[k].client);
    if (q->lease_client != NULL)
        wh_client_close(q->lease_client);
    pthread_mutex_destroy(&q->lease_mu);
    pthread_mutex_destroy(&q->state_mu);
    free(q->cfg);
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        if (q->client[i])
            wh_client_close(q->client[i]);
        pthread_mutex_destroy(&q->mu[i]);
    }
    free(q);
}

void adm_stat_from_reply(adm_stat *st, const Walhook__Reply *rep)
{
    st->up = 0;
    st->ready = 0;
    st->state[0] = '\0';
    st->reason[0] = '\0';
    st->error[0] = '\0';
    free(st->metrics);
    st->metrics = NULL;
    if (!rep || rep->body_case != WALHOOK__REPLY__BODY_STATS || !rep->stats) {
        wh_strlcpy(st->error, "reply carries no stats", sizeof(st->error));
        return;
    }
    const Walhook__StatsReply *s = rep->stats;
    st->up = 1;
    st->ready = s->ready ? 1 : 0;
    if (s->state)
        wh_strlcpy(st->state, s->state, sizeof(st->state));
    if (s->reason)
        wh_strlcpy(st->reason, s->reason, sizeof(st->reason));
    if (s->metrics_text && s->metrics_text[0])
        st->metrics = strdup(s->metrics_text);
}

static void stats_call(wh_client *c, adm_stat *st)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_STATS;
    req.stats = &sr;
    Walhook__Reply *rep = NULL;
    char e[WH_ERRLEN] = "";
    if (wh_client_call(c, &req, &rep, e, sizeof(e)) != WH_OK) {
        snprintf(st->error, sizeof(st->error), "no stats reply: %.200s", e[0] ? e : "error");
        return;
    }
    adm_stat_from_reply(st, rep);
    walhook__reply__free_unpacked(rep, NULL);
}

typedef struct adm_ing_job {
    adm_ing *g;
    size_t max_msg;
    adm_stat one;
} adm_ing_job;

/* One tenant's ingestor's Stats (its client opened on first use). */
static void *ing_job(void *arg)
{
    adm_ing_job *j = arg;
    char e[WH_ERRLEN];
    if (j->g->client == NULL && wh_client_open(&j->g->client, j->g->url, ADM_STATS_TIMEOUT_MS,
                                               j->max_msg, e, sizeof(e)) != WH_OK) {
        j->g->client = NULL;
        snprintf(j->one.error, sizeof(j->one.error), "cannot open client: %.200s", e);
        return NULL;
    }
    wh_client_set_connect_wait(j->g->client, 0);
    stats_call(j->g->client, &j->one);
    return NULL;
}

/* Under mu[1]: every tenant's ingestor, all at once (one that does not
 * answer costs the others nothing), as one "ingestor" entry: up and ready
 * when all are; the state and reason name the first tenant that is not;
 * the metrics of all that answered, concatenated. */
static void query_ingestors(adm_query *q, adm_stat *st)
{
    adm_ing_job *jobs = calloc((size_t)q->ning, sizeof(*jobs));
    pthread_t *th = calloc((size_t)q->ning, sizeof(*th));
    int *started = calloc((size_t)q->ning, sizeof(*started));
    if (jobs == NULL || th == NULL || started == NULL) {
        free(jobs);
        free(th);
        free(started);
        wh_strlcpy(st->error, "out of memory", sizeof(st->error));
        return;
    }
    size_t max_msg = q->cfg->ipc_max_msg_bytes > 0 ? (size_t)q->cfg->ipc_max_msg_bytes : 64u << 20;
    for (int k = 0; k < q->ning; k++) {
        jobs[k].g = &q->ing[k];
        jobs[k].max_msg = max_msg;
        started[k] = q->ning > 1 && pthread_create(&th[k], NULL, ing_job, &jobs[k]) == 0;
        if (!started[k])
            ing_job(&jobs[k]);
    }
    for (int k = 0; k < q->ning; k++)
        if (started[k])
            pthread_join(th[k], NULL);
    wh_buf all;
    wh_buf_init(&all, 0);
    int up = 1, ready = 1;
    for (int k = 0; k < q->ning; k++) {
        adm_ing *g = &q->ing[k];
        adm_stat *one = &jobs[k].one;
        if (!one->up && up) {
            snprintf(st->error, sizeof(st->error), "tenant %.63s: %.180s", g->tenant, one->error);
            up = 0;
        }
        if (one->up && !one->ready && ready && up) {
            snprintf(st->state, sizeof(st->state), "%.15s (%.13s)", one->state, g->tenant);
            if (one->reason[0]) /* the cause, for /readyz and the status page */
                wh_cut_words(st->reason, sizeof(st->reason), "tenant %.40s: %s", g->tenant,
                             one->reason);
        }
        ready = ready && one->up && one->ready;
        if (one->up && ready && st->state[0] == '\0')
            wh_strlcpy(st->state, one->state, sizeof(st->state));
        if (one->metrics != NULL) {
            wh_buf_puts(&all, one->metrics);
            if (all.len > 0 && all.data[all.len - 1] != '\n')
                wh_buf_putc(&all, '\n');
        }
        free(one->metrics);
    }
    st->up = up;
    st->ready = up && ready;
    if (all.len > 0 && wh_buf_cstr(&all) == WH_OK)
        st->metrics = strdup(all.data);
    wh_buf_free(&all);
    free(jobs);
    free(th);
    free(started);
}

/* Locks mu, waiting until deadline_ms (wh_now_ms's clock) at most: 0, or
 * an error number (ETIMEDOUT). A request's task that cannot have a
 * daemon's lock by its request's deadline gives up: the request no longer
 * waits for it, and behind a call that waits for its timeout (a store
 * whose disk hangs: GetState, LeaseList) tasks queued one per request
 * while requests came faster than the calls ended (about 5 threads more a
 * second with 6 scrapers: test_admin_scrape_queue). */
static int lock_by(pthread_mutex_t *mu, uint64_t deadline_ms)
{
    uint64_t now = wh_now_ms();
    struct timespec ts;
    wh_deadline_in(&ts, CLOCK_REALTIME, deadline_ms > now ? (int64_t)(deadline_ms - now) : 0);
    return pthread_mutex_timedlock(mu, &ts);
}

/* Under lease_mu: the live dispatcher replicas in the store's lease table
 * (owners that renewed within their TTL) with the control endpoint each
 * announced: *n owners, of which *nctl announced one; the reply (free it)
 * or NULL. */
static Walhook__Reply *lease_owners(adm_query *q, size_t *n, size_t *nctl)
{
    *n = *nctl = 0;
    if (q->lease_client == NULL)
        return NULL;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__LeaseList ll = WALHOOK__LEASE_LIST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_LEASE_LIST;
    req.lease_list = &ll;
    Walhook__Reply *rep = NULL;
    char e[WH_ERRLEN];
    int rc = wh_client_call(q->lease_client, &req, &rep, e, sizeof(e));
    if (rc != WH_OK)
        return NULL;
    if (rep->body_case == WALHOOK__REPLY__BODY_LEASE && rep->lease != NULL) {
        *n = rep->lease->n_owners;
        for (size_t i = 0; i < rep->lease->n_owner_controls && i < *n; i++)
            if (rep->lease->owner_controls[i] != NULL && rep->lease->owner_controls[i][0] != '\0')
                (*nctl)++;
    }
    return rep;
}

/* The one walhook_dispatcher_replicas of the page: the store's count of
 * live replicas (each replica's own copy is dropped when they are asked). */
static int replicas_gauge(wh_buf *out, size_t n)
{
    return wh_buf_printf(out,
                         "# HELP walhook_dispatcher_replicas Dispatcher replicas renewing leases "
                         "in the store.\n# TYPE walhook_dispatcher_replicas gauge\n"
                         "walhook_dispatcher_replicas %zu\n",
                         n);
}

/* n replicas renew leases but none answered Stats (replicas on the host
 * network each keep a private control socket; behind one address only one
 * replica answers): the dispatcher counts as up, state "leasing", and
 * /metrics gets walhook_dispatcher_replicas. st->error says why none
 * answered. */
static void leasing_verdict(adm_stat *st, size_t n)
{
    char why[sizeof(st->error)];
    wh_strlcpy(why, st->error, sizeof(why));
    st->up = 1;
    st->ready = 1;
    st->error[0] = '\0';
    wh_strlcpy(st->state, "leasing", sizeof(st->state));
    snprintf(st->reason, sizeof(st->reason),
             "%zu replica(s) renewing leases in the store; Stats at dispatcher.control: %.150s", n,
             why);
    wh_buf text;
    wh_buf_init(&text, 0);
    free(st->metrics);
    st->metrics = NULL;
    if (replicas_gauge(&text, n) == WH_OK && wh_buf_cstr(&text) == WH_OK)
        st->metrics = strdup(text.data);
    wh_buf_free(&text);
}

static void *rep_job(void *arg)
{
    adm_rep *r = arg;
    char e[WH_ERRLEN];
    if (r->client == NULL) {
        if (wh_client_open(&r->client, r->url, ADM_STATS_TIMEOUT_MS, r->max_msg, e, sizeof(e)) !=
            WH_OK) {
            r->client = NULL;
            snprintf(r->st.error, sizeof(r->st.error), "cannot open client: %.200s", e);
            return NULL;
        }
        wh_client_set_connect_wait(r->client, 0);
    }
    stats_call(r->client, &r->st);
    return NULL;
}

/* Under mu[2]: the replicas of the lease reply, clients of the last query
 * (and a failed one's back-off) kept where the (owner, endpoint) is the
 * same. */
static void refresh_replicas(adm_query *q, const Walhook__LeaseReply *l)
{
    adm_rep *next = calloc(ADM_REPLICAS_MAX, sizeof(*next));
    if (next == NULL)
        return;
    int n = 0;
    size_t maxmsg = q->cfg != NULL && q->cfg->ipc_max_msg_bytes > 0
                        ? (size_t)q->cfg->ipc_max_msg_bytes
                        : 64u << 20;
    for (size_t i = 0; i < l->n_owners && i < l->n_owner_controls && n < ADM_REPLICAS_MAX; i++) {
        const char *o = l->owners[i], *c = l->owner_controls[i];
        if (o == NULL || c == NULL || c[0] == '\0')
            continue;
        adm_rep *r = &next[n++];
        wh_strlcpy(r->owner, o, sizeof(r->owner));
        wh_strlcpy(r->url, c, sizeof(r->url));
        r->max_msg = maxmsg;
        wh_strlcpy(r->st.name, "dispatcher", sizeof(r->st.name));
        for (int k = 0; k < q->nrep; k++)
            if (strcmp(q->rep[k].url, r->url) == 0 && strcmp(q->rep[k].owner, r->owner) == 0) {
                r->client = q->rep[k].client;
                q->rep[k].client = NULL;
                r->retry_ms = q->rep[k].retry_ms;
                wh_strlcpy(r->last_err, q->rep[k].last_err, sizeof(r->last_err));
            }
    }
    for (int k = 0; k < q->nrep; k++)
        if (q->rep[k].client != NULL)
            wh_client_close(q->rep[k].client);
    memcpy(q->rep, next, (size_t)n * sizeof(*next));
    q->nrep = n;
    free(next);
}

/* Under mu[2]: every replica's Stats, at once (a replica that failed within
 * ADM_REPLICA_RETRY_MS is not asked: its last error stands), folded into
 * st: up when one answered; ready when all live replicas did and are; the
 * first one that did not answer, is not ready or announced no endpoint
 * named in the reason; each one's metrics with a replica="<owner>" label
 * (one series per replica, as a scrape of each would give), and one
 * walhook_dispatcher_replicas, the store's count. Returns the replicas
 * that answered. */
static int query_replicas(adm_query *q, adm_stat *st, size_t nlive, size_t nctl)
{
    pthread_t th[ADM_REPLICAS_MAX];
    int started[ADM_REPLICAS_MAX], asked[ADM_REPLICAS_MAX];
    int64_t now = (int64_t)wh_now_ms();
    for (int k = 0; k < q->nrep; k++) {
        adm_rep *r = &q->rep[k];
        started[k] = 0;
        asked[k] = r->retry_ms <= now;
        if (!asked[k]) {
            char last[sizeof(r->last_err)];
            wh_strlcpy(last, r->last_err, sizeof(last));
            snprintf(r->st.error, sizeof(r->st.error), "%.180s (asked again within %d s)", last,
                     ADM_REPLICA_RETRY_MS / 1000);
            continue;
        }
        started[k] = pthread_create(&th[k], NULL, rep_job, r) == 0;
        if (!started[k])
            rep_job(r);
    }
    for (int k = 0; k < q->nrep; k++)
        if (started[k])
            pthread_join(th[k], NULL);
    now = (int64_t)wh_now_ms();
    wh_buf all;
    wh_buf_init(&all, 0);
    int up = 0, ready = 1;
    const char *state = NULL;
    for (int k = 0; k < q->nrep; k++) {
        adm_rep *r = &q->rep[k];
        if (asked[k] && !r->st.up) { /* not asked again for a while */
            r->retry_ms = now + ADM_REPLICA_RETRY_MS;
            wh_strlcpy(r->last_err, r->st.error, sizeof(r->last_err));
        } else if (r->st.up) {
            r->retry_ms = 0;
        }
        if (r->st.up) {
            up++;
            if (state == NULL || strcmp(state, r->st.state) == 0)
                state = r->st.state;
            else
                state = "degraded";
            if (r->st.metrics != NULL &&
                adm_metrics_label(r->st.metrics, "replica", r->owner, "walhook_dispatcher_replicas",
                                  &all) != WH_OK)
                wh_warn("dispatcher replica %s: its metrics could not be labelled", r->owner);
        }
        if ((!r->st.up || !r->st.ready) && ready) {
            if (!r->st.up)
                snprintf(st->reason, sizeof(st->reason), "replica %.60s (%.60s): %.120s", r->owner,
                         r->url, r->st.error);
            else
                snprintf(st->reason, sizeof(st->reason), "replica %.60s: %.15s: %.150s", r->owner,
                         r->st.state, r->st.reason);
            if (!r->st.up && st->error[0] == '\0')
                snprintf(st->error, sizeof(st->error), "replica %.60s (%.60s): %.120s", r->owner,
                         r->url, r->st.error);
        }
        ready = ready && r->st.up && r->st.ready;
    }
    if (up == 0) {
        wh_buf_free(&all);
        return 0;
    }
    /* live replicas the admin cannot ask: older dispatchers that announce
     * no endpoint, or more than it asks */
    size_t unasked = nlive > (size_t)q->nrep ? nlive - (size_t)q->nrep : 0;
    if (unasked > 0 && ready) {
        snprintf(st->reason, sizeof(st->reason),
                 "%zu of %zu live replica(s) not asked (%zu announce no control endpoint: a "
                 "dispatcher older than this admin; at most %d are asked): their targets' figures "
                 "are missing",
                 unasked, nlive, nlive - nctl, ADM_REPLICAS_MAX);
        ready = 0;
    }
    st->up = 1;
    st->ready = ready;
    st->error[0] = '\0';
    if (up < q->nrep || unasked > 0)
        state = "degraded";
    snprintf(st->state, sizeof(st->state), "%.31s", state ? state : "running");
    int rc = replicas_gauge(&all, nlive);
    rc |= wh_buf_printf(&all,
                        "# HELP walhook_dispatcher_replicas_answering Dispatcher replicas that "
                        "answered the admin's Stats (at the endpoint each announced in the "
                        "store's leases).\n# TYPE walhook_dispatcher_replicas_answering gauge\n"
                        "walhook_dispatcher_replicas_answering %d\n",
                        up);
    if (rc == WH_OK && wh_buf_cstr(&all) == WH_OK)
        st->metrics = strdup(all.data);
    wh_buf_free(&all);
    return up;
}

/* The dispatcher when live replicas announced their control endpoints in
 * the store's leases: every one of them (query_replicas). 1 when st is
 * filled; 0 when none announced one or none answered (then ask
 * dispatcher.control, and fall back to the lease table's count of *nlive
 * replicas). */
static int query_dispatchers(adm_query *q, uint64_t deadline_ms, adm_stat *st, size_t *nlive)
{
    size_t nctl = 0;
    *nlive = 0;
    /* one LeaseList at a time: a request that finds one under way (a
     * store that does not answer: its timeout) goes on with the last
     * answer rather than queueing behind it */
    Walhook__Reply *rep = NULL;
    int asked = pthread_mutex_trylock(&q->lease_mu) == 0;
    if (asked)
        rep = lease_owners(q, nlive, &nctl);
    if (lock_by(&q->mu[2], deadline_ms) != 0) {
        if (asked)
            pthread_mutex_unlock(&q->lease_mu);
        if (rep != NULL)
            walhook__reply__free_unpacked(rep, NULL);
        *nlive = 0;
        return 0;
    }
    if (asked) {
        q->lease_nlive = *nlive;
        q->lease_nctl = nctl;
        if (rep != NULL && nctl > 0)
            refresh_replicas(q, rep->lease);
        if (rep != NULL)
            walhook__reply__free_unpacked(rep, NULL);
        pthread_mutex_unlock(&q->lease_mu);
    } else {
        *nlive = q->lease_nlive;
        nctl = q->lease_nctl;
    }
    if (nctl == 0) {
        pthread_mutex_unlock(&q->mu[2]);
        return 0;
    }
    adm_stat acc;
    memset(&acc, 0, sizeof(acc));
    wh_strlcpy(acc.name, st->name, sizeof(acc.name));
    int answered = query_replicas(q, &acc, *nlive, nctl);
    for (int k = 0; k < q->nrep; k++) {
        free(q->rep[k].st.metrics);
        memset(&q->rep[k].st, 0, sizeof(q->rep[k].st));
        wh_strlcpy(q->rep[k].st.name, "dispatcher", sizeof(q->rep[k].st.name));
    }
    pthread_mutex_unlock(&q->mu[2]);
    if (answered == 0) {
        free(acc.metrics);
        return 0;
    }
    *st = acc;
    return 1;
}

/* Daemon i's Stats into st, its locks waited for until deadline_ms at
 * most (past it nobody reads st). */
static void adm_query_one(adm_query *q, int i, uint64_t deadline_ms, adm_stat *st)
{
    memset(st, 0, sizeof(*st));
    if (i == 1) {
        wh_strlcpy(st->name, q->name[i], sizeof(st->name));
        /* the tenants: one GetState at a time, outside mu[1] (a store
         * that does not answer holds no other request's ingestors' Stats);
         * a request that finds one under way goes on with the list */
        wh_state *s = NULL;
        int fetching = pthread_mutex_trylock(&q->state_mu) == 0;
        if (fetching)
            s = tenants_fetch(q);
        if (lock_by(&q->mu[i], deadline_ms) != 0) {
            if (fetching)
                pthread_mutex_unlock(&q->state_mu);
            wh_state_unref(s);
            wh_strlcpy(st->error, "another request's query of it has not returned",
                       sizeof(st->error));
            return;
        }
        if (s != NULL)
            tenants_apply(q, s);
        if (fetching)
            pthread_mutex_unlock(&q->state_mu);
        int many = q->ning > 0;
        if (many)
            query_ingestors(q, st);
        pthread_mutex_unlock(&q->mu[i]);
        if (many)
            return;
    }
    wh_strlcpy(st->name, q->name[i], sizeof(st->name));
    size_t nlive = 0;
    if (i == 2 && query_dispatchers(q, deadline_ms, st, &nlive))
        return;
    if (!q->client[i]) {
        wh_strlcpy(st->error, q->open_err[i], sizeof(st->error));
        return;
    }
    Walhook__Reply *rep = NULL;
    char e[WH_ERRLEN] = "";
    if (lock_by(&q->mu[i], deadline_ms) != 0) {
        wh_strlcpy(st->error, "another request's query of it has not returned", sizeof(st->error));
        return;
    }
    int rc = wh_stats_call(q->client[i], &rep, e, sizeof(e));
    pthread_mutex_unlock(&q->mu[i]);
    if (rc != WH_OK) {
        snprintf(st->error, sizeof(st->error), "no stats reply: %.200s", e[0] ? e : "error");
        if (i == 2 && nlive > 0)
            leasing_verdict(st, nlive);
        return;
    }
    adm_stat_from_reply(st, rep);
    walhook__reply__free_unpacked(rep, NULL);
}

/* One request's Stats of the daemons in want (a bit per index), shared
 * with the task of each (adm_bg): a task the request stops waiting for
 * fills its entry for nobody. */
typedef struct adm_round {
    adm_query *q;
    int want;
    uint64_t deadline_ms;
    adm_stat st[ADM_NDAEMONS];
} adm_round;

static void round_free(void *arg)
{
    adm_round *r = arg;
    adm_stats_free(r->st, ADM_NDAEMONS);
    free(r);
}

/* Task k: the k-th daemon of want. */
static void round_task(void *arg, int k)
{
    adm_round *r = arg;
    for (int i = 0; i < ADM_NDAEMONS; i++)
        if ((r->want & (1 << i)) && k-- == 0) {
            adm_query_one(r->q, i, r->deadline_ms, &r->st[i]);
            return;
        }
}

/* The daemons of want, each on a task of its own, waited for up to
 * adm_stats_wait_ms: one that has not answered by then is down ("no Stats
 * answer within ..."); the others "not queried". */
static void query_within(adm_query *q, int want, adm_stat st[ADM_NDAEMONS])
{
    uint64_t deadline = wh_now_ms() + adm_stats_wait_ms;
    int n = 0;
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        wh_strlcpy(st[i].name, q->name[i], sizeof(st[i].name));
        if (want & (1 << i))
            n++;
        else
            wh_strlcpy(st[i].error, "not queried", sizeof(st[i].error));
    }
    adm_round *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->q = q;
        r->want = want;
        r->deadline_ms = deadline;
    }
    adm_bg *g = r != NULL ? adm_bg_start(r, round_free, round_task, n) : NULL;
    if (g == NULL) { /* out of memory: one after another, here */
        free(r);
        for (int i = 0; i < ADM_NDAEMONS; i++)
            if (want & (1 << i))
                adm_query_one(q, i, deadline, &st[i]);
        return;
    }
    int done[ADM_BG_MAX];
    adm_bg_wait(g, deadline, done);
    for (int i = 0, k = 0; i < ADM_NDAEMONS; i++) {
        if (!(want & (1 << i)))
            continue;
        if (done[k++]) {
            st[i] = r->st[i]; /* its metrics are the caller's now */
            r->st[i].metrics = NULL;
        } else {
            snprintf(st[i].error, sizeof(st[i].error),
                     "no Stats answer within %d ms (the daemon, or the store it is found "
                     "through, does not answer)",
                     adm_stats_wait_ms);
        }
    }
    adm_bg_release(g);
}

void adm_query_all(adm_query *q, adm_stat st[ADM_NDAEMONS])
{
    query_within(q, 7, st);
}

void adm_query_store(adm_query *q, adm_stat st[ADM_NDAEMONS])
{
    query_within(q, 1, st);
}

void adm_query_targets(adm_query *q, adm_stat st[ADM_NDAEMONS])
{
    query_within(q, 5, st);
}

void adm_stats_free(adm_stat *st, int n)
{
    for (int i = 0; i < n; i++) {
        free(st[i].metrics);
        st[i].metrics = NULL;
    }
}

/* Returns 1 and writes why when st is not ready. */
static int adm_not_ready(const adm_stat *st, char *why, size_t len)
{
    if (!st->up) {
        snprintf(why, len, "%.250s", st->error[0] ? st->error : "not answering");
        return 1;
    }
    /* the dispatcher's flag is informational: a target that fails must not
     * take the pipeline out of service */
    if (st->ready || strcmp(st->name, "dispatcher") == 0)
        return 0;
    const char *state = st->state[0] ? st->state : "unknown";
    if (st->reason[0])
        wh_strlcpy(why, st->reason, len);
    else if (strcmp(st->name, "ingestor") == 0)
        snprintf(why, len, "not streaming (state %.31s)", state);
    else
        snprintf(why, len, "not ready (state %.31s)", state);
    return 1;
}

int adm_readiness(const adm_stat *st, int n, wh_buf *out)
{
    int ready = 1;
    int first_bad = -1;
    char why[WH_REASON_LEN];
    for (int i = 0; i < n; i++)
        if (adm_not_ready(&st[i], why, sizeof(why))) {
            ready = 0;
            if (first_bad < 0)
                first_bad = i;
        }
    int rc = wh_buf_printf(out, "{\"ready\":%s", ready ? "true" : "false");
    if (first_bad >= 0) {
        adm_not_ready(&st[first_bad], why, sizeof(why));
        rc |= wh_buf_puts(out, ",\"not_ready\":");
        rc |= wh_json_str(out, st[first_bad].name, strlen(st[first_bad].name));
        rc |= wh_buf_puts(out, ",\"reason\":");
        rc |= wh_json_str(out, why, strlen(why));
    }
    rc |= wh_buf_puts(out, ",\"daemons\":[");
    for (int i = 0; i < n; i++) {
        rc |= wh_buf_puts(out, i ? ",{\"daemon\":" : "{\"daemon\":");
        rc |= wh_json_str(out, st[i].name, strlen(st[i].name));
        rc |= wh_buf_printf(out, ",\"up\":%s,\"ready\":%s,\"state\":", st[i].up ? "true" : "false",
                            st[i].ready ? "true" : "false");
        rc |= wh_json_str(out, st[i].state, strlen(st[i].state));
        if (adm_not_ready(&st[i], why, sizeof(why))) {
            rc |= wh_buf_puts(out, ",\"reason\":");
            rc |= wh_json_str(out, why, strlen(why));
        } else if (st[i].up && !st[i].ready && st[i].reason[0]) {
            /* informational (a dispatcher replica that does not answer) */
            rc |= wh_buf_puts(out, ",\"reason\":");
            rc |= wh_json_str(out, st[i].reason, strlen(st[i].reason));
        }
        rc |= wh_buf_putc(out, '}');
    }
    rc |= wh_buf_puts(out, "]}\n");
    (void)rc; /* a truncated body still carries the status code */
    return ready;
}

/* ---- Prometheus text merging ---- */

typedef struct adm_family {
    char *name;
    char *help; /* full line */
    char *type; /* full line */
    char kind[16];
    wh_buf samples;
} adm_family;

typedef struct adm_families {
    adm_family *v;
    size_t n, cap;
} adm_families;

static adm_family *fam_find(adm_families *f, const char *name, size_t len)
{
    for (size_t i = 0; i < f->n; i++)
        if (strlen(f->v[i].name) == len && memcmp(f->v[i].name, name, len) == 0)
            return &f->v[i];
    return NULL;
}

static adm_family *fam_get(adm_families *f, const char *name, size_t len)
{
    adm_family *x = fam_find(f, name, len);
    if (x)
        return x;
    if (wh_grow(&f->v, f->n + 1, &f->cap, sizeof(*f->v), 32) != WH_OK)
        return NULL;
    x = &f->v[f->n];
    memset(x, 0, sizeof(*x));
    x->name = strndup(name, len);
    if (!x->name)
        return NULL;
    wh_buf_init(&x->samples, 0);
    f->n++;
    return x;
}

static size_t name_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] != '{' && s[i] != ' ' && s[i] != '\t')
        i++;
    return i;
}

/* Family of a sample named name[0..len): exact, or the base of a
 * histogram/summary series (_bucket, _sum, _count). */
static adm_family *fam_for_sample(adm_families *f, const char *name, size_t len)
{
    adm_family *x = fam_find(f, name, len);
    if (x)
        return x;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < WH_ARRAY_LEN(suffixes); i++) {
        size_t sl = strlen(suffixes[i]);
        if (len > sl && memcmp(name + len - sl, suffixes[i], sl) == 0) {
            x = fam_find(f, name, len - sl);
            if (x && (strcmp(x->kind, "histogram") == 0 || strcmp(x->kind, "summary") == 0))
                return x;
        }
    }
    return fam_get(f, name, len);
}

static int merge_line(adm_families *f, const char *line, size_t n)
{
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    if (n == 0)
        return WH_OK;
    if (line[0] == '#') {
        int is_help = n > 7 && memcmp(line, "# HELP ", 7) == 0;
        int is_type = n > 7 && memcmp(line, "# TYPE ", 7) == 0;
        if (!is_help && !is_type)
            return WH_OK; /* other comments are dropped */
        const char *nm = line + 7;
        size_t nl = name_len(nm, n - 7);
        if (nl == 0)
            return WH_OK;
        adm_family *x = fam_get(f, nm, nl);
        if (!x)
            return WH_ERR;
        char **slot = is_help ? &x->help : &x->type;
        if (*slot)
            return WH_OK; /* first one wins */
        *slot = strndup(line, n);
        if (!*slot)
            return WH_ERR;
        if (is_type) {
            const char *k = nm + nl;
            size_t kl = n - 7 - nl;
            while (kl && (*k == ' ' || *k == '\t')) {
                k++;
                kl--;
            }
            snprintf(x->kind, sizeof(x->kind), "%.*s", (int)kl, k);
        }
        return WH_OK;
    }
    size_t nl = name_len(line, n);
    if (nl == 0)
        return WH_OK;
    adm_family *x = fam_for_sample(f, line, nl);
    if (!x)
        return WH_ERR;
    if (wh_buf_append(&x->samples, line, n) != WH_OK || wh_buf_putc(&x->samples, '\n') != WH_OK)
        return WH_ERR;
    return WH_OK;
}

int adm_metrics_merge(const char *const *texts, int ntexts, wh_buf *out)
{
    adm_families f = {0};
    int rc = WH_OK;
    for (int t = 0; t < ntexts && rc == WH_OK; t++) {
        const char *p = texts[t];
        if (!p)
            continue;
        while (*p && rc == WH_OK) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            rc = merge_line(&f, p, n);
            p += n;
            if (*p == '\n')
                p++;
        }
    }
    for (size_t i = 0; i < f.n; i++) {
        adm_family *x = &f.v[i];
        if (rc == WH_OK && x->help)
            rc = wh_buf_printf(out, "%s\n", x->help);
        if (rc == WH_OK && x->type)
            rc = wh_buf_printf(out, "%s\n", x->type);
        if (rc == WH_OK && x->samples.len)
            rc = wh_buf_append(out, x->samples.data, x->samples.len);
        free(x->name);
        free(x->help);
        free(x->type);
        wh_buf_free(&x->samples);
    }
    free(f.v);
    return rc;
}

int adm_metrics_label(const char *text, const char *label, const char *value, const char *drop,
                      wh_buf *out)
{
    size_t dl = drop ? strlen(drop) : 0;
    wh_buf lv; /* label="escaped value" */
    wh_buf_init(&lv, 0);
    int rc = wh_buf_printf(&lv, "%s=\"", label);
    for (const char *v = value; *v && rc == WH_OK; v++)
        rc = *v == '\\'   ? wh_buf_puts(&lv, "\\\\")
             : *v == '"'  ? wh_buf_puts(&lv, "\\\"")
             : *v == '\n' ? wh_buf_puts(&lv, "\\n")
                          : wh_buf_putc(&lv, *v);
    if (rc == WH_OK)
        rc = wh_buf_putc(&lv, '"');
    const char *p = text;
    while (*p && rc == WH_OK) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        size_t nl = name_len(p, n);
        const char *nm =
            n > 7 && (memcmp(p, "# HELP ", 7) == 0 || memcmp(p, "# TYPE ", 7) == 0) ? p + 7 : p;
        size_t nml = nm == p ? nl : name_len(nm, n - 7);
        if (dl > 0 && nml == dl && memcmp(nm, drop, dl) == 0) {
            p += n; /* the family dropped: its comments and samples */
            if (*p == '\n')
                p++;
            continue;
        }
        if (n == 0 || p[0] == '#' || nl == 0) {
            rc = wh_buf_append(out, p, n);
        } else if (nl < n && p[nl] == '{') {
            int empty = nl + 1 < n && p[nl + 1] == '}';
            rc = wh_buf_append(out, p, nl + 1) || wh_buf_append(out, lv.data, lv.len) ||
                 (empty ? 0 : wh_buf_putc(out, ',')) || wh_buf_append(out, p + nl + 1, n - nl - 1);
        } else {
            rc = wh_buf_append(out, p, nl) || wh_buf_putc(out, '{') ||
                 wh_buf_append(out, lv.data, lv.len) || wh_buf_putc(out, '}') ||
                 wh_buf_append(out, p + nl, n - nl);
        }
        if (rc == WH_OK)
            rc = wh_buf_putc(out, '\n');
        p += n;
        if (*p == '\n')
            p++;
    }
    wh_buf_free(&lv);
    return rc ? WH_ERR : WH_OK;
}

int adm_metrics_render(const adm_stat *st, int n, wh_buf *out)
{
    wh_buf own;
    wh_buf_init(&own, 0);
    int rc = WH_OK;
    char labels[64];
    rc |= wh_metric_process(&own, "admin");
    char help[128];
    snprintf(help, sizeof(help),
             "1 when the daemon answered the admin's Stats request (within %d ms)",
             adm_stats_wait_ms);
    rc |= wh_metric_header(&own, "walhook_daemon_up", "gauge", help);
    for (int i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "daemon=\"%s\"", st[i].name);
        rc |= wh_metric_u64(&own, "walhook_daemon_up", labels, st[i].up ? 1 : 0);
    }
    rc |= wh_metric_header(&own, "walhook_daemon_ready", "gauge",
                           "1 when the daemon reports it can do its job");
    for (int i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "daemon=\"%s\"", st[i].name);
        rc |= wh_metric_u64(&own, "walhook_daemon_ready", labels, st[i].up && st[i].ready);
    }
    if (rc != WH_OK || wh_buf_cstr(&own) != WH_OK) {
        wh_buf_free(&own);
        return WH_ERR;
    }
    const char *texts[ADM_NDAEMONS + 1];
    int nt = 0;
    texts[nt++] = own.data;
    for (int i = 0; i < n && nt < (int)WH_ARRAY_LEN(texts); i++)
        if (st[i].metrics)
            texts[nt++] = st[i].metrics;
    rc = adm_metrics_merge(texts, nt, out);
    wh_buf_free(&own);
    return rc;
}

int adm_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
                     size_t errlen)
{
    if (!s || !*s)
        return wh_seterr(err, errlen, "admin.listen: empty (want host:port)");
    const char *h, *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return wh_seterr(err, errlen, "admin.listen: bad address '%s' (want [v6]:port)", s);
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return wh_seterr(err, errlen, "admin.listen: '%s' has no port (want host:port)", s);
        h = s;
        hl = (size_t)(colon - s);
        if (memchr(h, ':', hl))
            return wh_seterr(err, errlen, "admin.listen: IPv6 address needs brackets: '%s'", s);
    }
    if (hl == 0)
        return wh_seterr(err, errlen, "admin.listen: '%s' has no host", s);
    if (hl >= hostlen)
        return wh_seterr(err, errlen, "admin.listen: host too long");
    const char *p = colon + 1;
    if (!*p)
        return wh_seterr(err, errlen, "admin.listen: '%s' has no port", s);
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return wh_seterr(err, errlen, "admin.listen: bad port in '%s'", s);
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return wh_seterr(err, errlen, "admin.listen: port out of range in '%s'", s);
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return WH_OK;
}
