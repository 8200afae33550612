/* dsp_lease: target leases shared by dispatcher replicas (see dsp_lease.h). */
#include "dsp_lease.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_metrics.h"
#include "wh_util.h"

typedef struct lease_t {
    char tenant[WH_NAME_MAX];
    char name[WH_NAME_MAX];
    uint64_t epoch;       /* 0: not held */
    uint64_t valid_until; /* monotonic ms; held while now < valid_until */
    uint64_t given_up;    /* monotonic ms: given up for balancing until then */
    uint64_t handover;    /* monotonic ms: given up to balance, still valid in the store */
    int listed;           /* in the current target list */
    int quiet_ms;         /* the target's request timeout (dsp_lease_set_targets) */
    /* the timeout before a change that lowered it, and until when (monotonic
     * ms) it still counts: requests started under it may run that long */
    int quiet_prev_ms;
    uint64_t quiet_prev_until;
    /* monotonic ms: held, but not posted to before then (a takeover: the
     * old holder's requests may still be at the target) */
    uint64_t quiet_until;
    uint64_t quiet_since;     /* monotonic ms: when the wait began */
    int quiet_told;           /* the loop was told when quiet_until passed */
    uint64_t abandoned_until; /* requests abandoned here may run until then */
    uint64_t handover_epoch;  /* the epoch given up to balance (with handover) */
    int release_pending;      /* handed over with nothing unanswered: release it */
    /* monotonic ms: no longer listed (the target was deleted) but held,
     * renewed, until then rather than released: a request of it the loop
     * lets end may still be at the target, and the name created again
     * meanwhile stays with this replica, whose loop posts to the new one
     * only after that request ended. 0 while listed */
    uint64_t unlisted_until;
    /* its last Acquire got no answer (the store slow: the lease write not
     * synced yet; or the reply lost): not held here, though the store may
     * have granted it. Counted toward the fair share and tried again after
     * the other targets, until an Acquire of it is answered */
    int unanswered;
    /* the round (dsp_lease.round_no) whose renewal or grant of it was
     * answered last: valid_until counts from a request of that round */
    uint64_t renewed_round;
} lease_t;

struct dsp_lease {
    char owner[DSP_LEASE_OWNER_MAX + 1]; /* "<id>#<instance>" */
    size_t id_len;                       /* bytes of <id> */
    int dup_warned;                      /* another live owner with our id was logged */
    int ttl_ms;
    int call_ms;              /* a store call's timeout: min(ipc.timeout_ms, TTL/3) */
    char control[WH_URL_MAX]; /* announced in LeaseList: where the admin reaches us */
    wh_client *store;
    pthread_t thread;
    int started;

    pthread_mutex_t cb_mu; /* held across on_change calls and their (un)setting */
    pthread_mutex_t mu;    /* everything below */
    pthread_cond_t cond;
    int stopping, poked;
    /* the last round left targets to acquire for lack of time (an Acquire
     * without an answer took its timeout): the next one starts at once */
    int rush;
    /* the rounds run so far: a lease renewed or acquired in the last one
     * has renewed_round == round_no (a round that began in the millisecond
     * of the last one's last renewal is told apart from it) */
    uint64_t round_no;
    lease_t *v;
    size_t n, cap;
    size_t replicas;
    void (*on_change)(void *arg);
    void *on_change_arg;
};

void dsp_lease_default_owner(char *out, size_t len)
{
    char host[64] = "host";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, len, "%s-%ld", host, (long)getpid());
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            *p = '_';
}

int dsp_lease_advertise(char *out, size_t len, const char *control)
{
    size_t pre = strncmp(control, "tcp://", 6) == 0        ? 6
                 : strncmp(control, "tls+tcp://", 10) == 0 ? 10
                                                           : 0;
    const char *host = control + pre, *port = NULL;
    if (pre > 0) {
        const char *rb = host[0] == '[' ? strchr(host, ']') : NULL;
        port = strrchr(rb ? rb : host, ':');
    }
    size_t hl = port ? (size_t)(port - host) : 0;
    int wild =
        port != NULL && (hl == 0 || (hl == 7 && memcmp(host, "0.0.0.0", 7) == 0) ||
                         (hl == 1 && host[0] == '*') || (hl == 4 && memcmp(host, "[::]", 4) == 0));
    if (!wild)
        return wh_strlcpy(out, control, len) == 0 ? WH_OK : WH_ERR;
    char name[256];
    if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
        return WH_ERR;
    name[sizeof(name) - 1] = '\0';
    int n = snprintf(out, len, "%.*s%s%s", (int)pre, control, name, port);
    return n > 0 && (size_t)n < len ? WH_OK : WH_ERR;
}

const char *dsp_lease_owner(const dsp_lease *l)
{
    return l->owner;
}

/* The longest a request to the target started here may still run: its
 * timeout, or the one before a change that lowered it, for that long after
 * the change. Caller holds mu. */
static int quiet_eff(const lease_t *e, uint64_t now)
{
    return now < e->quiet_prev_until && e->quiet_prev_ms > e->quiet_ms ? e->quiet_prev_ms
                                                                       : e->quiet_ms;
}

/* Caller holds mu. */
static lease_t *find(dsp_lease *l, const char *tenant, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].tenant, tenant) == 0 && strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

int dsp_lease_owns(dsp_lease *l, const char *tenant, const char *target, uint64_t *epoch)
{
    int own = 0;
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    if (e && e->epoch != 0 && now < e->valid_until && now >= e->quiet_until) {
        own = 1;
        if (epoch)
            *epoch = e->epoch;
    }
    pthread_mutex_unlock(&l->mu);
    return own;
}

int dsp_lease_handing_over(dsp_lease *l, const char *tenant, const char *target)
{
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    int r = e != NULL && e->epoch == 0 && now < e->handover;
    pthread_mutex_unlock(&l->mu);
    return r;
}

size_t dsp_lease_held(dsp_lease *l)
{
    size_t k = 0;
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].epoch != 0 && now < l->v[i].valid_until)
            k++;
    pthread_mutex_unlock(&l->mu);
    return k;
}

void dsp_lease_on_change(dsp_lease *l, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&l->cb_mu); /* waits for a call in progress */
    pthread_mutex_lock(&l->mu);
    l->on_change = fn;
    l->on_change_arg = arg;
    pthread_mutex_unlock(&l->mu);
    pthread_mutex_unlock(&l->cb_mu);
}

void dsp_lease_poke(dsp_lease *l)
{
    pthread_mutex_lock(&l->mu);
    l->poked = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

int dsp_lease_set_targets(dsp_lease *l, const char *const *tenants, const char *const *names,
                          const int *quiet_ms, size_t n)
{
    if (n > DSP_LEASE_MAX_TARGETS)
        return WH_ERR;
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++)
        l->v[i].listed = 0;
    int rc = WH_OK;
    for (size_t i = 0; i < n; i++) {
        lease_t *e = find(l, tenants[i], names[i]);
        if (e == NULL) {
            if (wh_grow(&l->v, l->n + 1, &l->cap, sizeof(*l->v), 16) != WH_OK) {
                rc = WH_ERR;
                break;
            }
            e = &l->v[l->n++];
            memset(e, 0, sizeof(*e));
            wh_strlcpy(e->tenant, tenants[i], sizeof(e->tenant));
            wh_strlcpy(e->name, names[i], sizeof(e->name));
        }
        e->listed = 1;
        int q = quiet_ms ? quiet_ms[i] : 0;
        if (q < e->quiet_ms) {
            /* lowered: requests started under the old timeout may run that
             * long yet (the loop takes the new one a moment after this).
             * Only a change counts: every state version lists the target
             * again, and one with the same timeout must not move the end
             * of an earlier change's window. */
            uint64_t until = now + (uint64_t)e->quiet_ms;
            if (now >= e->quiet_prev_until) {
                e->quiet_prev_ms = e->quiet_ms;
                e->quiet_prev_until = until;
            } else {
                if (e->quiet_ms > e->quiet_prev_ms)
                    e->quiet_prev_ms = e->quiet_ms;
                if (until > e->quiet_prev_until)
                    e->quiet_prev_until = until;
            }
        }
        e->quiet_ms = q;
    }
    for (size_t i = 0; i < l->n; i++) {
        lease_t *e = &l->v[i];
        if (e->listed)
            e->unlisted_until = 0;
        else if (e->unlisted_until == 0 && e->epoch != 0)
            e->unlisted_until = now + (uint64_t)quiet_eff(e, now);
    }
    l->poked = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int dsp_lease_request_timeout(dsp_lease *l, const char *tenant, const char *target)
{
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    int r = e && e->listed ? quiet_eff(e, wh_now_ms()) : -1;
    pthread_mutex_unlock(&l->mu);
    return r;
}

/* ---- store calls (lease thread only) ---- */

/* What a lease call is, for its log lines: "acquire of tenant/target". A
 * failed call named nothing, so a lost Acquire (a takeover's reply, say)
 * looked like a failed renewal or list. */
static void call_what(const Walhook__Request *req, char *out, size_t len)
{
    const char *verb = "call", *tenant = NULL, *name = NULL;
    switch (req->body_case) {
    case WALHOOK__REQUEST__BODY_LEASE_ACQUIRE:
        verb = "acquire";
        tenant = req->lease_acquire->tenant;
        name = req->lease_acquire->consumer;
        break;
    case WALHOOK__REQUEST__BODY_LEASE_RENEW:
        verb = "renewal";
        tenant = req->lease_renew->tenant;
        name = req->lease_renew->consumer;
        break;
    case WALHOOK__REQUEST__BODY_LEASE_RELEASE:
        verb = "release";
        tenant = req->lease_release->tenant;
        name = req->lease_release->consumer;
        break;
    default:
        break;
    }
    if (tenant != NULL && name != NULL)
        snprintf(out, len, "%s of %s/%s", verb, tenant, name);
    else
        snprintf(out, len, "%s", verb);
}

/* call_x: the store answered with an error (the call did nothing) */
#define CALL_REFUSED 1

/* One lease call; granted and epoch from the reply, and for an Acquire
 * whether it took over a lapsed lease (*lapsed_ago: -1 when not, else ms
 * since it lapsed; *told_ms: the longest request timeout its holders told
 * the store, 0 when none or an older store). WH_OK; WH_ERR: no answer (the
 * call may have been carried out); CALL_REFUSED: an error reply. */
static int call_x(dsp_lease *l, Walhook__Request *req, int *granted, uint64_t *epoch,
                  int64_t *lapsed_ago, uint32_t *told_ms)
{
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN], what[2 * WH_NAME_MAX + 32];
    int status = 0;
    if (wh_client_call_status(l->store, req, &rep, &status, err, sizeof(err)) != WH_OK) {
        call_what(req, what, sizeof(what));
        wh_warn("lease: store: %s: %s", what, err);
        return status != 0 ? CALL_REFUSED : WH_ERR;
    }
    int rc = WH_ERR;
    if (rep->body_case == WALHOOK__REPLY__BODY_LEASE && rep->lease) {
        *granted = rep->lease->granted;
        *epoch = rep->lease->epoch;
        if (lapsed_ago)
            *lapsed_ago = rep->lease->taken_over
                              ? (rep->lease->expired_ms_ago > 0 ? rep->lease->expired_ms_ago : 0)
                              : -1;
        if (told_ms) {
            /* bounded: a store telling more (corrupt, or not walhook's)
             * would stop the target for up to 49 days */
            uint32_t t = rep->lease->taken_over ? rep->lease->request_timeout_ms : 0;
            *told_ms = t < DSP_LEASE_TOLD_MAX_MS ? t : DSP_LEASE_TOLD_MAX_MS;
        }
        rc = WH_OK;
    } else if (rep->status != 0) {
        call_what(req, what, sizeof(what));
        wh_warn("lease: store: %s: %s", what, rep->error && rep->error[0] ? rep->error : "error");
    }
    walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

static int call(dsp_lease *l, Walhook__Request *req, int *granted, uint64_t *epoch)
{
    return call_x(l, req, granted, epoch, NULL, NULL);
}

/* req_timeout: the longest a request started here to the target may run
 * (told to the store, which keeps the longest for the next takeover). */
static int acquire(dsp_lease *l, const char *tenant, const char *name, int req_timeout,
                   int *granted, uint64_t *epoch, int64_t *lapsed_ago, uint32_t *told_ms)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__LeaseAcquire a = WALHOOK__LEASE_ACQUIRE__INIT;
    a.tenant = (char *)tenant;
    a.consumer = (char *)name;
    a.owner = l->owner;
    a.ttl_ms = (uint32_t)l->ttl_ms;
    a.request_timeout_ms = req_timeout > 0 ? (uint32_t)req_timeout : 0;
    req.body_case = WALHOOK__REQUEST__BODY_LEASE_ACQUIRE;
    req.lease_acquire = &a;
    return call_x(l, &req, granted, epoch, lapsed_ago, told_ms);
}

static int renew(dsp_lease *l, const char *tenant, const char *name, uint64_t ep, int req_timeout,
                 int *granted)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__LeaseRenew r = WALHOOK__LEASE_RENEW__INIT;
    r.tenant = (char *)tenant;
    r.consumer = (char *)name;
    r.owner = l->owner;
    r.epoch = ep;
    r.ttl_ms = (uint32_t)l->ttl_ms;
    r.request_timeout_ms = req_timeout > 0 ? (uint32_t)req_timeout : 0;
    req.body_case = WALHOOK__REQUEST__BODY_LEASE_RENEW;
    req.lease_renew = &r;
    uint64_t e2 = 0;
    return call(l, &req, granted, &e2);
}

/* WH_OK: the store answered; else the lease is left to lapse in the store
 * (refused, e.g. 429 while lease writes wait for the disk, or no answer):
 * its next holder waits as after a lapse. */
static int release(dsp_lease *l, const char *tenant, const char *name, uint64_t ep, int abandoned)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__LeaseRelease r = WALHOOK__LEASE_RELEASE__INIT;
    r.tenant = (char *)tenant;
    r.consumer = (char *)name;
    r.owner = l->owner;
    r.epoch = ep;
    r.abandoned = abandoned != 0;
    req.body_case = WALHOOK__REQUEST__BODY_LEASE_RELEASE;
    req.lease_release = &r;
    int g;
    uint64_t e;
    return call(l, &req, &g, &e) == WH_OK ? WH_OK : WH_ERR;
}

/* The log line of a release not done (refused or unanswered): the call's
 * own warning said why; this one, what follows. Before, it was logged as
 * "released" though the store kept the lease until its TTL ran out. */
static void release_failed(const char *tenant, const char *name, const char *why)
{
    wh_warn("lease of %s/%s not released (%s): the store keeps it until its TTL runs out, and "
            "its next holder waits as after a lapse",
            tenant, name, why);
}

/* Live replicas (>= 1) and whether each target is free (no live holder). */
static size_t list_replicas(dsp_lease *l)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__LeaseList ll = WALHOOK__LEASE_LIST__INIT;
    ll.owner = l->owner;
    ll.ttl_ms = (uint32_t)l->ttl_ms;
    ll.control = l->control;
    req.body_case = WALHOOK__REQUEST__BODY_LEASE_LIST;
    req.lease_list = &ll;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN];
    if (wh_client_call(l->store, &req, &rep, err, sizeof(err)) != WH_OK) {
        wh_warn("lease: store: list: %s", err);
        return 0;
    }
    size_t r = 1;
    if (rep->body_case == WALHOOK__REPLY__BODY_LEASE && rep->lease && rep->lease->n_owners > 0) {
        r = rep->lease->n_owners;
        for (size_t i = 0; i < rep->lease->n_owners && !l->dup_warned; i++) {
            const char *o = rep->lease->owners[i];
            if (o != NULL && strcmp(o, l->owner) != 0 && strncmp(o, l->owner, l->id_len + 1) == 0) {
                wh_warn("lease: another live dispatcher uses dispatcher.id '%.*s' (owner %s, this "
                        "one %s): they share no lease, but give each replica its own id (their "
                        "control endpoints and logs are told apart by it)",
                        (int)l->id_len, l->owner, o, l->owner);
                l->dup_warned = 1;
            }
        }
    }
    walhook__reply__free_unpacked(rep, NULL);
    return r;
}

/* A snapshot entry the round works on without holding mu across calls. */
typedef struct work {
    char tenant[WH_NAME_MAX];
    char name[WH_NAME_MAX];
    uint64_t epoch;
    uint64_t valid_until;
    uint64_t given_up;
    int listed;
    uint64_t unlisted_until;
    int req_timeout; /* quiet_eff when the round began */
    int unanswered;  /* lease_t.unanswered */
} work;

/* lapsed_ago: for a new grant, -1, or the ms since the lease it took over
 * lapsed (its old holders' requests get the longest of their timeouts,
 * told_ms, and this replica's own to end before this replica posts:
 * quiet_until). */
static void set_result_x(dsp_lease *l, const work *w, uint64_t epoch, uint64_t valid_until,
                         int64_t lapsed_ago, uint32_t told_ms, int *changed)
{
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, w->tenant, w->name);
    if (e) {
        if ((e->epoch != 0) != (epoch != 0) || e->epoch != epoch)
            *changed = 1;
        if (epoch != 0 && e->epoch != epoch) {
            uint64_t now = wh_now_ms(), q = now;
            int own = quiet_eff(e, now);
            int64_t wait = own > (int64_t)told_ms ? own : (int64_t)told_ms;
            if (lapsed_ago >= 0 && lapsed_ago < wait)
                q = now + (uint64_t)(wait - lapsed_ago);
            if (e->abandoned_until > q)
                q = e->abandoned_until;
            /* a wait not over yet (given up here in it, its renewals
             * unanswered, and granted back: the store, its expiry not
             * reached, tells no takeover): its last holder's requests may
             * still be at the target */
            if (e->quiet_until > q)
                q = e->quiet_until;
            e->quiet_until = q;
            e->quiet_since = now;
            e->quiet_told = q <= now;
            if (q > now)
                wh_info("lease of %s/%s: posting starts in %" PRIu64 " ms (requests its last "
                        "holder did not finish may still be at the target until then: they "
                        "end by the longer of this dispatcher's request timeout, %d ms, and "
                        "the one its holders told the store, %" PRIu32 " ms)",
                        w->tenant, w->name, q - now, own, told_ms);
        }
        e->epoch = epoch;
        e->valid_until = valid_until;
        e->handover = 0;
        if (epoch != 0)
            e->renewed_round = l->round_no;
    }
    pthread_mutex_unlock(&l->mu);
}

static void set_result(dsp_lease *l, const work *w, uint64_t epoch, uint64_t valid_until,
                       int *changed)
{
    set_result_x(l, w, epoch, valid_until, -1, 0, changed);
}

/* Held leases whose quiet time has just passed: the loop is told (changed),
 * once. */
static void quiet_passed(dsp_lease *l, int *changed)
{
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++) {
        lease_t *e = &l->v[i];
        if (e->epoch != 0 && !e->quiet_told && now >= e->quiet_until) {
            e->quiet_told = 1;
            *changed = 1;
            wh_info("lease of %s/%s: its takeover wait is over after %" PRIu64
                    " ms; posting starts",
                    e->tenant, e->name, now - e->quiet_since);
        }
    }
    pthread_mutex_unlock(&l->mu);
}

uint64_t dsp_lease_post_until(void *arg, const char *tenant, const char *target, uint64_t epoch)
{
    dsp_lease *l = arg;
    uint64_t r = 0, now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    if (e && epoch != 0 && e->epoch == epoch && now >= e->quiet_until && now < e->valid_until)
        r = e->valid_until;
    pthread_mutex_unlock(&l->mu);
    return r;
}

void dsp_lease_handed(void *arg, const char *tenant, const char *target)
{
    dsp_lease *l = arg;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    if (e && e->epoch == 0 && e->handover_epoch != 0 && wh_now_ms() < e->handover) {
        e->release_pending = 1;
        l->poked = 1;
        pthread_cond_signal(&l->cond);
    }
    pthread_mutex_unlock(&l->mu);
}

/* A lease given up to balance that the loop says it handed (stopped with
 * nothing unanswered, or never ran): requests of it may still be at the
 * target only when they were abandoned here, or when it was given up in
 * its takeover wait (its last holder's). Caller holds mu. */
static int handed_abandoned(const lease_t *e, uint64_t now)
{
    return e->abandoned_until > now || e->quiet_until > now;
}

/* Leases handed over by the loop (dsp_lease_handed): released at once, so
 * the replica taking the target over need not wait for the TTL. With
 * nothing of it left at the target (the usual case) the release is clean
 * and the taker posts at once; a lease given up in its takeover wait, the
 * loop never having run it, is released with requests abandoned, so the
 * taker waits a request timeout from the release (not the TTL and then
 * the timeout, as after a lapse). */
static void release_handed(dsp_lease *l)
{
    for (;;) {
        char tenant[WH_NAME_MAX], name[WH_NAME_MAX];
        uint64_t ep = 0;
        int ab = 0;
        pthread_mutex_lock(&l->mu);
        uint64_t now = wh_now_ms();
        for (size_t i = 0; i < l->n && ep == 0; i++) {
            lease_t *e = &l->v[i];
            if (!e->release_pending)
                continue;
            e->release_pending = 0;
            if (e->epoch != 0 || e->handover_epoch == 0)
                continue;
            ep = e->handover_epoch;
            ab = handed_abandoned(e, now);
            e->handover_epoch = 0;
            e->handover = 0;
            wh_strlcpy(tenant, e->tenant, sizeof(tenant));
            wh_strlcpy(name, e->name, sizeof(name));
        }
        pthread_mutex_unlock(&l->mu);
        if (ep == 0)
            return;
        if (release(l, tenant, name, ep, ab) != WH_OK) {
            release_failed(tenant, name, "handed over");
            continue;
        }
        wh_info("lease of %s/%s released: handed over with %s", tenant, name,
                ab ? "requests that may still be at the target (abandoned here, or its last "
                     "holder's in its takeover wait): its next holder waits"
                   : "no request unanswered");
    }
}

void dsp_lease_abandoned(void *arg, const char *tenant, const char *target)
{
    dsp_lease *l = arg;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    if (e) {
        uint64_t now = wh_now_ms();
        e->abandoned_until = now + (uint64_t)quiet_eff(e, now);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Requests abandoned at the target, or its last holder's, may still run
 * (release with abandoned). Caller holds mu. */
static int abandoned_locked(const lease_t *e, uint64_t now)
{
    return e->abandoned_until > now || (e->epoch != 0 && e->quiet_until > now);
}

static int abandoned_now(dsp_lease *l, const char *tenant, const char *target)
{
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, tenant, target);
    int r = e != NULL && abandoned_locked(e, wh_now_ms());
    pthread_mutex_unlock(&l->mu);
    return r;
}

static void fire_change(dsp_lease *l)
{
    pthread_mutex_lock(&l->cb_mu);
    pthread_mutex_lock(&l->mu);
    void (*fn)(void *) = l->on_change;
    void *arg = l->on_change_arg;
    pthread_mutex_unlock(&l->mu);
    if (fn)
        fn(arg);
    pthread_mutex_unlock(&l->cb_mu);
}

/* A held lease whose local validity ended without a renewal (the store did
 * not answer): given up here, the loop told by the caller (changed). */
static void give_up_lapsed(dsp_lease *l, work *w, int *changed)
{
    wh_warn("lease of %s/%s: not renewed within its validity (no answer from the store); the "
            "target stops here",
            w->tenant, w->name);
    set_result(l, w, 0, 0, changed);
    w->epoch = 0;
}

/* Held leases whose local validity ended (their renewals got no answer in
 * time) are given up here first, and the loop is told at once, before this
 * round's calls (each may wait for its timeout). */
static void expire_lapsed(dsp_lease *l, work *w, size_t n)
{
    int changed = 0;
    uint64_t now = wh_now_ms();
    for (size_t i = 0; i < n; i++) {
        if (w[i].epoch != 0 && now >= w[i].valid_until)
            give_up_lapsed(l, &w[i], &changed);
    }
    if (changed)
        fire_change(l);
}

/* A target no longer listed (deleted) and not held is forgotten only once
 * nothing it remembers counts any more: given up to balance (given_up), its
 * lease may still be this replica's in the store, left to lapse, and a
 * target of the name created again meanwhile would be granted back to this
 * replica as its own, with no takeover to wait for, while requests
 * abandoned here (abandoned_until) or its last holder's (quiet_until) may
 * still be at the receiver; given_up also keeps this replica from taking
 * back at once what it gave up. Caller holds mu. */
static int forgettable(const lease_t *e, uint64_t now)
{
    return !e->listed && e->epoch == 0 && now >= e->given_up && now >= e->abandoned_until &&
           now >= e->quiet_until;
}

/* Records whether the target's last Acquire went unanswered. */
static void set_unanswered(dsp_lease *l, work *w, int unanswered)
{
    w->unanswered = unanswered;
    pthread_mutex_lock(&l->mu);
    lease_t *e = find(l, w->tenant, w->name);
    if (e)
        e->unanswered = unanswered;
    pthread_mutex_unlock(&l->mu);
}

/* One Acquire of w in a round (a free target not held here): granted, held
 * here (*held + 1); refused or answered with an error, not (an error keeps
 * the mark below as it was); no answer, its outcome unknown: not held, not
 * posted to, marked unanswered. */
static void acquire_one(dsp_lease *l, work *w, size_t *held, int *changed)
{
    uint64_t sent = wh_now_ms();
    int granted = 0;
    uint64_t ep = 0;
    int64_t lapsed_ago = -1;
    uint32_t told_ms = 0;
    int rc = acquire(l, w->tenant, w->name, w->req_timeout, &granted, &ep, &lapsed_ago, &told_ms);
    if (rc == WH_ERR) {
        set_unanswered(l, w, 1);
        return;
    }
    /* only an answer (granted or not) tells what became of an earlier
     * Acquire without one: the store grants it as this owner's own, or
     * tells who holds it. An error reply tells nothing of it: a 429 (lease
     * writes waiting for the disk) did nothing at all, while the earlier
     * Acquire may still wait for its sync and be granted; the target,
     * cleared, was no longer counted toward the share nor asked again once
     * the share was held, and its lease, granted unknown to this replica,
     * kept the others from it until it lapsed (test_lease_refused_unanswered) */
    if (rc != WH_OK)
        return;
    if (w->unanswered)
        set_unanswered(l, w, 0);
    if (!granted)
        return;
    if (lapsed_ago >= 0)
        wh_info("lease of %s/%s acquired (epoch %" PRIu64 "; its last holder let it "
                "lapse %" PRId64 " ms ago)",
                w->tenant, w->name, ep, lapsed_ago);
    else
        wh_info("lease of %s/%s acquired (epoch %" PRIu64 ")", w->tenant, w->name, ep);
    set_result_x(l, w, ep, sent + (uint64_t)l->ttl_ms * 4 / 5, lapsed_ago, told_ms, changed);
    w->epoch = ep;
    (*held)++;
}

static void round_once(dsp_lease *l)
{
    uint64_t round_start = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    l->rush = 0;
    l->round_no++;
    size_t n = l->n;
    work *w = n ? calloc(n, sizeof(*w)) : NULL;
    for (size_t i = 0; w && i < n; i++) {
        wh_strlcpy(w[i].tenant, l->v[i].tenant, sizeof(w[i].tenant));
        wh_strlcpy(w[i].name, l->v[i].name, sizeof(w[i].name));
        w[i].epoch = l->v[i].epoch;
        w[i].valid_until = l->v[i].valid_until;
        w[i].given_up = l->v[i].given_up;
        w[i].listed = l->v[i].listed;
        w[i].unlisted_until = l->v[i].unlisted_until;
        w[i].req_timeout = quiet_eff(&l->v[i], wh_now_ms());
        w[i].unanswered = l->v[i].unanswered;
    }
    pthread_mutex_unlock(&l->mu);
    if (n > 0 && w == NULL)
        return;
    release_handed(l);
    expire_lapsed(l, w, n);
    size_t replicas = list_replicas(l);
    int changed = 0;
    size_t listed = 0, held = 0;
    for (size_t i = 0; i < n; i++)
        listed += w[i].listed;
    /* renew (or release what is no longer a target, once a request the
     * loop let end there is over: unlisted_until) */
    for (size_t i = 0; i < n; i++) {
        if (w[i].epoch == 0)
            continue;
        if (!w[i].listed && wh_now_ms() >= w[i].unlisted_until) {
            int ab = abandoned_now(l, w[i].tenant, w[i].name);
            if (release(l, w[i].tenant, w[i].name, w[i].epoch, ab) != WH_OK)
                release_failed(w[i].tenant, w[i].name, "no longer a target");
            else
                wh_info("lease of %s/%s released: no longer a target%s", w[i].tenant, w[i].name,
                        ab ? " (requests abandoned here may still be at it: its next holder waits)"
                           : "");
            set_result(l, &w[i], 0, 0, &changed);
            w[i].epoch = 0;
            continue;
        }
        uint64_t sent = wh_now_ms();
        int granted = 0;
        if (renew(l, w[i].tenant, w[i].name, w[i].epoch, w[i].req_timeout, &granted) != WH_OK) {
            /* no answer: held until its local validity runs out, then
             * given up here (the loop drops the target) before the store's
             * expiry lets another replica take it */
            if (wh_now_ms() >= w[i].valid_until)
                give_up_lapsed(l, &w[i], &changed);
            else
                held += w[i].listed;
            continue;
        }
        if (granted) {
            set_result(l, &w[i], w[i].epoch, sent + (uint64_t)l->ttl_ms * 4 / 5, &changed);
            held += w[i].listed; /* one kept after its removal is no share */
        } else {
            wh_warn("lease of %s/%s lost (another dispatcher holds it)", w[i].tenant, w[i].name);
            set_result(l, &w[i], 0, 0, &changed);
            w[i].epoch = 0;
        }
    }
    size_t fair = replicas ? (listed + replicas - 1) / replicas : listed;
    if (replicas > 1 && held > fair) {
        /* give one up per round: it stops here at once, and the store frees
         * it only when its TTL ran out (not renewed), so a request still in
         * flight here is over before another replica posts to the target */
        for (size_t i = n; i-- > 0;) {
            if (w[i].epoch != 0 && w[i].listed) {
                wh_info("lease of %s/%s given up to balance %zu targets over %zu dispatchers",
                        w[i].tenant, w[i].name, listed, replicas);
                set_result(l, &w[i], 0, 0, &changed);
                pthread_mutex_lock(&l->mu);
                lease_t *e = find(l, w[i].tenant, w[i].name);
                if (e) {
                    e->given_up = wh_now_ms() + 2 * (uint64_t)l->ttl_ms;
                    e->handover = w[i].valid_until;
                    e->handover_epoch = w[i].epoch;
                    e->release_pending = 0;
                }
                pthread_mutex_unlock(&l->mu);
                w[i].epoch = 0;
                w[i].given_up = UINT64_MAX;
                held--;
                break;
            }
        }
    }
    /* acquire free targets up to the fair share. An Acquire without an
     * answer (the store slow: its lease write not synced yet; or the reply
     * lost) does not stop the round: its target is not held here (the
     * store may have granted it: it counts toward the share), and the
     * others are acquired after it, then it is tried again (the store
     * grants it as this owner's own once its write is done, or tells the
     * takeover again: LEASE_F_TAKEOVER); the targets whose last Acquire
     * went unanswered are tried after the others in later rounds too. An
     * Acquire is started only if its timeout ends within 2/3 of the TTL
     * from the round's start, so the next round renews the leases held in
     * time (held until 4/5 of the TTL after their renewal); the targets
     * left go to the next round, which starts at once. */
    uint64_t now = wh_now_ms(), budget_end = round_start + (uint64_t)l->ttl_ms * 2 / 3;
    size_t maybe = 0;
    for (size_t i = 0; i < n; i++)
        maybe += w[i].epoch == 0 && w[i].listed && w[i].unanswered && now >= w[i].given_up;
    int left = 0;
    for (int pass = 0; pass < 2 && replicas > 0 && !left; pass++) {
        for (size_t i = 0; i < n; i++) {
            /* first the others while below the share, then the unanswered */
            if (w[i].epoch != 0 || !w[i].listed || now < w[i].given_up || w[i].unanswered != pass)
                continue;
            if (pass == 0 && held + maybe >= fair)
                break;
            if (wh_now_ms() + (uint64_t)l->call_ms > budget_end) {
                left = 1;
                break;
            }
            acquire_one(l, &w[i], &held, &changed);
            if (pass == 0 && w[i].unanswered)
                maybe++; /* tried again in pass 1 */
            else if (pass == 1 && !w[i].unanswered)
                maybe--;
        }
    }
    if (left)
        wh_info("lease: store calls took %" PRIu64 " ms this round; the targets left to "
                "acquire are tried in the next round, at once",
                wh_now_ms() - round_start);
    free(w);
    quiet_passed(l, &changed);
    pthread_mutex_lock(&l->mu);
    l->replicas = replicas;
    l->rush = left;
    /* forget targets no longer listed and not held, once what they
     * remember no longer counts (forgettable) */
    size_t j = 0;
    uint64_t fnow = wh_now_ms();
    for (size_t i = 0; i < l->n; i++)
        if (!forgettable(&l->v[i], fnow))
            l->v[j++] = l->v[i];
    l->n = j;
    pthread_mutex_unlock(&l->mu);
    if (changed)
        fire_change(l);
}

/* ms until the next round: TTL/3, or sooner when a held lease's local
 * validity ends first (its renewals got no answer: it is given up then),
 * or when a lease renewed (or acquired) in the last round is due for its
 * next renewal: TTL/3 after that renewal was sent, not after the round
 * ended. A round made long by Acquires without an answer (up to 2/3 of
 * the TTL) otherwise put the next one after the validity of the leases it
 * renewed at its start (4/5 of the TTL after their renewal), which then
 * woke it only to give them up. A lease whose renewal got no answer keeps
 * the wake at its validity's end (given up at the start of that round,
 * before any call). Caller holds mu. */
static int next_round_in(dsp_lease *l)
{
    if (l->rush)
        return 0;
    uint64_t now = wh_now_ms(), in = (uint64_t)l->ttl_ms / 3;
    uint64_t hold = (uint64_t)l->ttl_ms * 4 / 5; /* valid_until - the request's time */
    for (size_t i = 0; i < l->n; i++) {
        const lease_t *e = &l->v[i];
        if (e->epoch != 0 && e->valid_until > now && e->valid_until - now < in)
            in = e->valid_until - now;
        if (e->epoch != 0 && e->renewed_round == l->round_no && e->valid_until >= hold) {
            uint64_t due = e->valid_until - hold + (uint64_t)l->ttl_ms / 3;
            if (due <= now)
                in = 0;
            else if (due - now < in)
                in = due - now;
        }
        if (e->epoch != 0 && !e->listed && e->unlisted_until > now && e->unlisted_until - now < in)
            in = e->unlisted_until - now;
        if (e->epoch != 0 && !e->quiet_told && e->quiet_until > now && e->quiet_until - now < in)
            in = e->quiet_until - now;
        if (e->epoch != 0 && !e->quiet_told && e->quiet_until <= now)
            in = 0;
    }
    return (int)in;
}

static void *lease_main(void *arg)
{
    dsp_lease *l = arg;
    pthread_setname_np(pthread_self(), "dsp-lease");
    for (;;) {
        round_once(l);
        pthread_mutex_lock(&l->mu);
        struct timespec ts;
        /* monotonic: a clock step moves no renewal */
        wh_deadline_in(&ts, CLOCK_MONOTONIC, next_round_in(l));
        while (!l->stopping && !l->poked) {
            if (pthread_cond_timedwait(&l->cond, &l->mu, &ts) == ETIMEDOUT)
                break;
        }
        l->poked = 0;
        int stop = l->stopping;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            break;
    }
    return NULL;
}

int dsp_lease_start(dsp_lease **out, const dsp_lease_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (o->ttl_ms < 1000)
        return wh_seterr(err, errlen, "dispatcher.lease_ttl_ms: %d is below 1000", o->ttl_ms);
    dsp_lease *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return wh_seterr(err, errlen, "out of memory");
    char id[DSP_LEASE_OWNER_MAX + 1];
    if (o->owner && o->owner[0])
        wh_strlcpy(id, o->owner, sizeof(id));
    else
        dsp_lease_default_owner(id, sizeof(id));
    uint32_t inst = 0;
    if (getrandom(&inst, sizeof(inst), 0) != (ssize_t)sizeof(inst)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        inst = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 12) ^ (uint32_t)ts.tv_sec;
    }
    /* "#" and 8 hex digits fit: the id is cut if it has to be */
    int idn = (int)strlen(id);
    if (idn > DSP_LEASE_OWNER_MAX - 9)
        idn = DSP_LEASE_OWNER_MAX - 9;
    snprintf(l->owner, sizeof(l->owner), "%.*s#%08" PRIx32, idn, id, inst);
    l->id_len = (size_t)idn;
    l->ttl_ms = o->ttl_ms;
    wh_strlcpy(l->control, o->control ? o->control : "", sizeof(l->control));
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->cb_mu, NULL);
    wh_cond_init_monotonic(&l->cond);
    /* calls are short; a stuck store must not hold a lease past its TTL */
    int timeout = o->ipc_timeout_ms < l->ttl_ms / 3 ? o->ipc_timeout_ms : l->ttl_ms / 3;
    l->call_ms = timeout;
    if (wh_client_open(&l->store, o->store_endpoint, timeout, o->max_msg, err, errlen) != WH_OK)
        goto error;
    if (pthread_create(&l->thread, NULL, lease_main, l) != 0) {
        wh_seterr(err, errlen, "lease thread: cannot start");
        goto error;
    }
    l->started = 1;
    *out = l;
    return WH_OK;
error:
    if (l->store)
        wh_client_close(l->store);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->cb_mu);
    free(l);
    return WH_ERR;
}

int dsp_lease_metrics(dsp_lease *l, wh_buf *out)
{
    int rc = 0;
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&l->mu);
    size_t held = 0, waiting = 0;
    for (size_t i = 0; i < l->n; i++) {
        int h = l->v[i].epoch != 0 && now < l->v[i].valid_until;
        held += h;
        waiting += h && now < l->v[i].quiet_until;
    }
    rc |= wh_metric_header(out, "walhook_dispatcher_leases_held", "gauge",
                           "targets whose lease this dispatcher holds (in a takeover wait too)");
    rc |= wh_metric_u64(out, "walhook_dispatcher_leases_held", "", held);
    rc |= wh_metric_header(out, "walhook_dispatcher_leases_waiting", "gauge",
                           "held leases in their takeover wait: not posted to yet");
    rc |= wh_metric_u64(out, "walhook_dispatcher_leases_waiting", "", waiting);
    rc |= wh_metric_header(out, "walhook_dispatcher_replicas", "gauge",
                           "dispatchers sharing the targets (seen by the store)");
    rc |= wh_metric_u64(out, "walhook_dispatcher_replicas", "", l->replicas);
    rc |= wh_metric_header(out, "walhook_target_lease_held", "gauge",
                           "1 while this dispatcher holds the target's lease");
    for (size_t i = 0; i < l->n; i++) {
        char labels[2 * WH_NAME_MAX + 32];
        snprintf(labels, sizeof(labels), "tenant=\"%s\",target=\"%s\"", l->v[i].tenant,
                 l->v[i].name);
        rc |= wh_metric_u64(out, "walhook_target_lease_held", labels,
                            l->v[i].epoch != 0 && now < l->v[i].valid_until);
    }
    rc |= wh_metric_header(out, "walhook_target_lease_quiet_seconds", "gauge",
                           "seconds left of the takeover wait of a held lease (requests of its "
                           "last holder may still be at the target): the target is not posted "
                           "to before; 0 when posting");
    for (size_t i = 0; i < l->n; i++) {
        const lease_t *e = &l->v[i];
        if (e->epoch == 0 || now >= e->valid_until)
            continue;
        char labels[2 * WH_NAME_MAX + 32];
        snprintf(labels, sizeof(labels), "tenant=\"%s\",target=\"%s\"", e->tenant, e->name);
        int64_t left_ms = now < e->quiet_until ? (int64_t)(e->quiet_until - now) : 0;
        rc |= wh_metric_us_as_s(out, "walhook_target_lease_quiet_seconds", labels, left_ms * 1000);
    }
    pthread_mutex_unlock(&l->mu);
    return rc == 0 ? WH_OK : WH_ERR;
}

void dsp_lease_stop(dsp_lease *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->stopping = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->mu);
    if (l->started)
        pthread_join(l->thread, NULL);
    /* hand the targets over at once instead of after the TTL; and the
     * ones the loop handed while the thread was stopping */
    for (size_t i = 0; i < l->n; i++) {
        lease_t *e = &l->v[i];
        uint64_t now = wh_now_ms();
        if (e->epoch != 0) {
            if (release(l, e->tenant, e->name, e->epoch, abandoned_locked(e, now)) != WH_OK)
                release_failed(e->tenant, e->name, "stopping");
            e->epoch = 0;
        } else if (e->release_pending && e->handover_epoch != 0 && now < e->handover) {
            if (release(l, e->tenant, e->name, e->handover_epoch, handed_abandoned(e, now)) !=
                WH_OK)
                release_failed(e->tenant, e->name, "stopping, handed over");
            e->handover_epoch = 0;
        }
    }
    wh_client_close(l->store);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->cb_mu);
    free(l->v);
    free(l);
}
