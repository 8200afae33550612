/* ing_slot: slot policy, lag thresholds and backpressure zones of one
 * tenant. See ing_slot.h. */
#include "ing_slot.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ing_catalog.h"
#include "wh_dsn.h"
#include "wh_ipc.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_pgerr.h"
#include "wh_util.h"

/* A zone the store has not heard again within this many checks is no
 * longer applied (the ingestor is gone: no measurement, no shedding). */
#define ING_SLOT_ZONE_TTL_CHECKS 10

const char *ing_zone_name(int zone)
{
    switch (zone) {
    case ING_ZONE_YELLOW:
        return "yellow";
    case ING_ZONE_RED:
        return "red";
    default:
        return "green";
    }
}

const char *ing_policy_name(int policy)
{
    return policy == ING_POLICY_TRACK ? "track" : "independent";
}

int ing_zone_next(int cur, uint64_t lag, uint64_t warn, uint64_t max)
{
    if (max > 0 && lag >= max)
        return ING_ZONE_RED;
    if (cur == ING_ZONE_RED) {
        if (warn > 0) {
            if (lag < warn / 2)
                return ING_ZONE_GREEN;
            return lag < warn ? ING_ZONE_YELLOW : ING_ZONE_RED;
        }
        return max > 0 && lag >= max / 2 ? ING_ZONE_RED : ING_ZONE_GREEN;
    }
    if (warn > 0 && lag >= warn)
        return ING_ZONE_YELLOW;
    if (cur == ING_ZONE_YELLOW && warn > 0 && lag >= warn / 2)
        return ING_ZONE_YELLOW;
    return ING_ZONE_GREEN;
}

uint64_t ing_slot_effective_lag(uint64_t lag, int64_t safe_wal_size, uint64_t max)
{
    if (max == 0 || safe_wal_size < 0)
        return lag;
    uint64_t left = (uint64_t)safe_wal_size;
    uint64_t e = left >= max ? 0 : max - left;
    return e > lag ? e : lag;
}

int ing_policy_next(int cur, uint64_t slot_lag, uint64_t track_lag, const ing_slot_limits *l,
                    const char **why)
{
    *why = NULL;
    if (!l->track)
        return ING_POLICY_INDEPENDENT;
    /* the threshold whose action is "independent": warn first */
    uint64_t at = 0;
    const char *name = NULL;
    if (l->warn_independent && l->warn > 0) {
        at = l->warn;
        name = "the slot lag reached source.lag_warn_bytes";
    } else if (l->max_independent && l->max > 0) {
        at = l->max;
        name = "the slot lag reached source.lag_max_bytes (hard cap)";
    }
    if (cur == ING_POLICY_TRACK) {
        if (at > 0 && slot_lag >= at) {
            *why = name;
            return ING_POLICY_INDEPENDENT;
        }
        /* a hard cap whose action is independent always applies */
        if (l->max_independent && l->max > 0 && slot_lag >= l->max) {
            *why = "the slot lag reached source.lag_max_bytes (hard cap)";
            return ING_POLICY_INDEPENDENT;
        }
        return ING_POLICY_TRACK;
    }
    /* fallen back: track again once the slowest target is close enough */
    if (at == 0 || track_lag < at / 2) {
        *why = "the slowest target caught up (track lag below half the threshold)";
        return ING_POLICY_TRACK;
    }
    return ING_POLICY_INDEPENDENT;
}

struct ing_slot {
    char tenant[WH_NAME_MAX];
    wh_config cfg; /* the running source's (under mu while the thread runs) */
    pthread_t th;
    int running;
    atomic_int stop;
    wh_client *client; /* the thread's store client (under mu), interrupted by a stop */

    pthread_mutex_t mu; /* the fields below */
    pthread_cond_t cv;  /* the stop (under mu): ends the thread's sleep */
    int have_track;     /* the store answered once for this source */
    uint64_t track_lsn; /* never moves back */
    int caught_up;
    uint64_t end_lsn; /* the store's end when it decided caught_up */
    int policy;       /* effective */
    int zone;
    int measured;   /* a measurement succeeded */
    int safe_noted; /* the thread: safe_wal_size rules the lag (warned) */
    uint64_t wal_lsn, confirmed;
    int64_t slot_lag, track_lag, safe_wal_size;
    char wal_status[16];
    char slowest[WH_NAME_MAX];
    uint32_t targets;
    uint64_t switches, zone_changes, resyncs, check_errors, report_errors;
};

int ing_slot_new(ing_slot **out, const char *tenant, char *err, size_t errlen)
{
    ing_slot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    wh_strlcpy(s->tenant, tenant, sizeof(s->tenant));
    pthread_mutex_init(&s->mu, NULL);
    wh_cond_init_monotonic(&s->cv);
    s->slot_lag = s->track_lag = s->safe_wal_size = -1;
    *out = s;
    return WH_OK;
}

void ing_slot_free(ing_slot *s)
{
    if (s == NULL)
        return;
    ing_slot_stop(s);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

uint64_t ing_slot_cap(ing_slot *s, uint64_t f, uint64_t acked, uint64_t last_event)
{
    if (s == NULL)
        return f;
    pthread_mutex_lock(&s->mu);
    int policy = s->policy, have = s->have_track, cu = s->caught_up;
    uint64_t w = s->track_lsn, end = s->end_lsn;
    uint64_t safety = (uint64_t)s->cfg.safety_lag_bytes;
    pthread_mutex_unlock(&s->mu);
    if (policy == ING_POLICY_INDEPENDENT)
        return f > safety ? f - safety : 0;
    if (!have)
        return 0; /* nothing is known of the targets yet */
    if (cu && w >= acked && end >= last_event)
        return f; /* every counted target delivered all the ingestor stored */
    return w < f ? w : f;
}

void ing_slot_set(ing_slot *s, int policy, int have_track, uint64_t track_lsn, int caught_up,
                  uint64_t end_lsn, int64_t safety_lag_bytes)
{
    pthread_mutex_lock(&s->mu);
    s->end_lsn = end_lsn;
    s->policy = policy;
    s->have_track = have_track;
    s->track_lsn = track_lsn;
    s->caught_up = caught_up;
    s->cfg.safety_lag_bytes = safety_lag_bytes;
    pthread_mutex_unlock(&s->mu);
}

/* ---- the thread ---------------------------------------------------------- */

static int measure(ing_slot *s, PGconn **conn, uint64_t *wal, uint64_t *confirmed, char *status,
                   size_t slen, int64_t *safe, char *err, size_t errlen)
{
    if (*conn == NULL && ing_pg_connect(conn, s->cfg.source_dsn, NULL, "-c statement_timeout=5000",
                                        "walhook-slot", "5", err, errlen) != WH_OK)
        return WH_ERR;
    const char *params[1] = {s->cfg.slot};
    PGresult *r = PQexecParams(*conn,
                               "SELECT pg_catalog.pg_current_wal_lsn()::text, "
                               "coalesce(confirmed_flush_lsn::text, ''), "
                               "coalesce(wal_status, ''), coalesce(safe_wal_size, -1) "
                               "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                               1, NULL, params, NULL, NULL, 0);
    int rc = WH_ERR;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[384];
        wh_dsn_scrub(s->cfg.source_dsn, PQerrorMessage(*conn), msg, sizeof(msg));
        wh_pg_oneline(msg, msg, sizeof(msg));
        wh_seterr(err, errlen, "measuring the slot: %s", msg);
        PQclear(r);
        PQfinish(*conn);
        *conn = NULL;
        return WH_ERR;
    }
    if (PQntuples(r) != 1) {
        wh_seterr(err, errlen, "slot \"%s\" not found", s->cfg.slot);
        goto out;
    }
    if (wh_lsn_parse(PQgetvalue(r, 0, 0), wal) != WH_OK ||
        wh_lsn_parse(PQgetvalue(r, 0, 1), confirmed) != WH_OK) {
        wh_seterr(err, errlen, "slot \"%s\" has no confirmed flush LSN yet", s->cfg.slot);
        goto out;
    }
    wh_strlcpy(status, PQgetvalue(r, 0, 2), slen);
    *safe = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    rc = WH_OK;
out:
    PQclear(r);
    return rc;
}

/* SlotReport to the store; fills the reply fields. */
static int report(ing_slot *s, wh_client *c, uint64_t wal, int zone, uint64_t resync_lag,
                  uint64_t *track, int *caught_up, uint64_t *end, uint32_t *targets,
                  uint32_t *marked, char *slowest, size_t sl, char *err, size_t errlen)
{
    Walhook__SlotReport sr = WALHOOK__SLOT_REPORT__INIT;
    sr.tenant = s->tenant;
    sr.wal_lsn = wal;
    sr.zone = (uint32_t)zone;
    sr.resync_lag_bytes = resync_lag;
    sr.resync_after_ms = (uint64_t)s->cfg.disconnected_resync_after_s * 1000;
    sr.zone_ttl_ms = (uint32_t)s->cfg.slot_check_ms * ING_SLOT_ZONE_TTL_CHECKS;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_SLOT_REPORT;
    req.slot_report = &sr;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(c, &req, &rep, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_ERR;
    if (rep->body_case != WALHOOK__REPLY__BODY_SLOT || rep->slot == NULL) {
        wh_seterr(err, errlen, "the store answered SlotReport without a slot body");
        goto out;
    }
    *track = rep->slot->track_lsn;
    *caught_up = rep->slot->caught_up;
    *end = rep->slot->end_lsn;
    *targets = rep->slot->targets;
    *marked = rep->slot->marked;
    wh_strlcpy(slowest, rep->slot->slowest ? rep->slot->slowest : "", sl);
    rc = WH_OK;
out:
    walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

/* Sleeps ms unless the thread is stopped first (ing_slot_stop signals cv):
 * one wake-up per check, where 50 ms naps to look at the stop flag woke
 * the idle ingestor 20 times a second. */
static void sleep_ms(ing_slot *s, int ms)
{
    wh_cond_sleep(&s->cv, &s->mu, &s->stop, ms);
}

static void *slot_main(void *arg)
{
    ing_slot *s = arg;
    PGconn *conn = NULL;
    wh_client *c = NULL;
    char err[WH_ERRLEN];
    int meas_failing = 0, rep_failing = 0;
    const wh_config *cfg = &s->cfg;
    ing_slot_limits lim = {
        .track = strcmp(cfg->slot_policy, "track") == 0,
        .warn = (uint64_t)cfg->lag_warn_bytes,
        .max = (uint64_t)cfg->lag_max_bytes,
        .warn_independent = strcmp(cfg->lag_warn_action, "independent") == 0,
        .max_independent = strcmp(cfg->lag_max_action, "independent") == 0,
    };
    if (lim.warn > 0 && lim.max > 0 && lim.max <= lim.warn) {
        /* a tenant's own settings (wh_slotcfg) over the file's can cross */
        wh_error("tenant %s: source.lag_max_bytes (%" PRIu64 ") is not above "
                 "source.lag_warn_bytes (%" PRIu64 "): the warn threshold is taken as %" PRIu64,
                 s->tenant, lim.max, lim.warn, lim.max / 2);
        lim.warn = lim.max / 2;
    }
    int max_resync = strcmp(cfg->lag_max_action, "force_resync") == 0 && lim.max > 0;
    while (!atomic_load(&s->stop)) {
        uint64_t t0 = wh_now_ms();
        uint64_t wal = 0, confirmed = 0;
        int64_t safe = -1;
        char status[16] = "";
        if (measure(s, &conn, &wal, &confirmed, status, sizeof(status), &safe, err, sizeof(err)) !=
            WH_OK) {
            pthread_mutex_lock(&s->mu);
            s->check_errors++;
            pthread_mutex_unlock(&s->mu);
            /* before the replication connection made the slot: quiet */
            if (!meas_failing && s->measured)
                wh_warn("slot check (source.slot_check_ms) failed: %s; retried", err);
            else if (!meas_failing)
                wh_debug("slot check (source.slot_check_ms) failed: %s; retried", err);
            meas_failing = s->measured ? 1 : 0;
            sleep_ms(s, cfg->slot_check_ms);
            continue;
        }
        if (meas_failing)
            wh_info("slot check works again");
        meas_failing = 0;
        uint64_t lag = wal > confirmed ? wal - confirmed : 0;
        uint64_t elag = ing_slot_effective_lag(lag, safe, lim.max);
        if (elag > lag && !s->safe_noted)
            wh_warn("tenant %s: the slot's safe_wal_size (%" PRId64 " bytes before "
                    "max_slot_wal_keep_size invalidates it) is below source.lag_max_bytes - slot "
                    "lag: the thresholds act on %" PRIu64 " bytes",
                    s->tenant, safe, elag);
        s->safe_noted = elag > lag;
        pthread_mutex_lock(&s->mu);
        int zone0 = s->zone;
        pthread_mutex_unlock(&s->mu);
        int zone = ing_zone_next(zone0, elag, lim.warn, lim.max);
        if (zone != zone0) {
            char l[WH_LSN_STRLEN];
            wh_lsn_format(confirmed, l, sizeof(l));
            if (zone > zone0)
                wh_warn("tenant %s: backpressure zone %s -> %s: slot lag %" PRIu64
                        " bytes (confirmed flush %s; source.lag_warn_bytes %" PRIu64
                        ", source.lag_max_bytes %" PRIu64 ")%s",
                        s->tenant, ing_zone_name(zone0), ing_zone_name(zone), lag, l, lim.warn,
                        lim.max, zone == ING_ZONE_RED ? ": fast targets shed to their DLQ" : "");
            else
                wh_info("tenant %s: backpressure zone %s -> %s: slot lag %" PRIu64 " bytes",
                        s->tenant, ing_zone_name(zone0), ing_zone_name(zone), lag);
        }
        /* force_resync: the configured lag, and at the hard cap (its action
         * force_resync) every target behind by lag_max_bytes or more */
        uint64_t resync = (uint64_t)cfg->force_resync_lag_bytes;
        if (max_resync && elag >= lim.max) {
            /* behind by lag_max_bytes or more; less by what safe_wal_size
             * took off (elag - lag) */
            uint64_t cut = lim.max - 1, shift = elag - lag;
            cut = shift < cut ? cut - shift : 1;
            if (resync == 0 || resync > cut)
                resync = cut;
        }
        uint64_t track = 0;
        int cu = 0;
        uint64_t endl = 0;
        uint32_t targets = 0, marked = 0;
        char slowest[WH_NAME_MAX] = "";
        int have = 0;
        if (c == NULL) {
            /* a report is small and goes again soon: a short timeout */
            int tmo = cfg->ipc_timeout_ms < 5000 ? cfg->ipc_timeout_ms : 5000;
            if (wh_client_open(&c, cfg->store_endpoint, tmo, 1 << 20, err, sizeof(err)) != WH_OK)
                c = NULL;
            pthread_mutex_lock(&s->mu);
            s->client = c;
            pthread_mutex_unlock(&s->mu);
        }
        if (c != NULL && report(s, c, wal, zone, resync, &track, &cu, &endl, &targets, &marked,
                                slowest, sizeof(slowest), err, sizeof(err)) == WH_OK) {
            have = 1;
            if (rep_failing)
                wh_info("slot report to the store works again");
            rep_failing = 0;
        } else {
            if (!rep_failing)
                wh_warn("slot report to the store failed: %s; retried", err);
            rep_failing = 1;
        }
        pthread_mutex_lock(&s->mu);
        s->measured = 1;
        s->wal_lsn = wal;
        s->confirmed = confirmed;
        s->slot_lag = (int64_t)lag;
        s->safe_wal_size = safe;
        wh_strlcpy(s->wal_status, status, sizeof(s->wal_status));
        if (zone != s->zone)
            s->zone_changes++;
        s->zone = zone;
        if (have)
            wh_debug("slot report: wal %" PRIu64 " confirmed %" PRIu64 " lag %" PRIu64
                     " zone %s; store: track %" PRIu64 " caught_up %d targets %u slowest %s",
                     wal, confirmed, lag, ing_zone_name(zone), track, cu, targets, slowest);
        if (have) {
            if (!s->have_track || track > s->track_lsn)
                s->track_lsn = track;
            s->have_track = 1;
            s->caught_up = cu;
            s->end_lsn = endl;
            s->targets = targets;
            s->resyncs += marked;
            wh_strlcpy(s->slowest, slowest, sizeof(s->slowest));
        }
        /* what the slot lag would be under track (0 when every counted
         * target delivered all that is stored: the idle position goes) */
        uint64_t tl = 0;
        if (s->have_track && !s->caught_up)
            tl = wal > s->track_lsn ? wal - s->track_lsn : 0;
        s->track_lag = s->have_track ? (int64_t)tl : -1;
        int p0 = s->policy;
        const char *why = NULL;
        /* without an answer of the store the track lag is unknown: stay */
        int p = s->have_track || p0 == ING_POLICY_TRACK
                    ? ing_policy_next(p0, elag, s->have_track ? tl : UINT64_MAX, &lim, &why)
                    : p0;
        if (p != p0)
            s->switches++;
        s->policy = p;
        pthread_mutex_unlock(&s->mu);
        if (p != p0)
            wh_warn("tenant %s: slot policy %s -> %s: %s (slot lag %" PRIu64
                    " bytes, track lag %" PRIu64 " bytes)",
                    s->tenant, ing_policy_name(p0), ing_policy_name(p), why ? why : "", lag, tl);
        if (marked > 0)
            wh_warn("tenant %s: the store marked %u target(s) NEEDS_SNAPSHOT (force_resync)",
                    s->tenant, marked);
        uint64_t spent = wh_now_ms() - t0;
        if (spent < (uint64_t)cfg->slot_check_ms)
            sleep_ms(s, cfg->slot_check_ms - (int)spent);
    }
    if (conn)
        PQfinish(conn);
    pthread_mutex_lock(&s->mu);
    s->client = NULL;
    pthread_mutex_unlock(&s->mu);
    wh_client_close(c);
    return NULL;
}

int ing_slot_start(ing_slot *s, const wh_config *cfg, char *err, size_t errlen)
{
    ing_slot_stop(s);
    pthread_mutex_lock(&s->mu);
    s->cfg = *cfg;
    s->have_track = 0;
    s->track_lsn = 0;
    s->caught_up = 0;
    s->policy = strcmp(cfg->slot_policy, "track") == 0 ? ING_POLICY_TRACK : ING_POLICY_INDEPENDENT;
    s->zone = ING_ZONE_GREEN;
    s->measured = 0;
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->stop, 0);
    if (pthread_create(&s->th, NULL, slot_main, s) != 0)
        return wh_seterr(err, errlen, "cannot start the slot thread");
    s->running = 1;
    wh_info("slot policy %s (source.slot_policy); lag warn %" PRId64 " bytes, hard cap %" PRId64
            " bytes, checked every %d ms",
            cfg->slot_policy, cfg->lag_warn_bytes, cfg->lag_max_bytes, cfg->slot_check_ms);
    return WH_OK;
}

void ing_slot_stop(ing_slot *s)
{
    if (s == NULL || !s->running)
        return;
    atomic_store(&s->stop, 1);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    if (s->client != NULL)
        wh_client_interrupt(s->client); /* a report waiting for a store that is gone */
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    s->running = 0;
}

int ing_slot_render(ing_slot *s, wh_buf *b, const char *labels)
{
    if (s == NULL)
        return WH_OK;
    pthread_mutex_lock(&s->mu);
    int zone = s->zone, policy = s->policy, measured = s->measured;
    int64_t slag = s->slot_lag, tlag = s->track_lag, safe = s->safe_wal_size;
    uint64_t sw = s->switches, zc = s->zone_changes, rs = s->resyncs, ce = s->check_errors;
    char configured[16];
    wh_strlcpy(configured, s->cfg.slot_policy[0] ? s->cfg.slot_policy : "independent",
               sizeof(configured));
    pthread_mutex_unlock(&s->mu);
    char l[512];
    const char *sep = labels[0] ? "," : "";
    int rc = 0;
    rc |= wh_metric_header(b, "walhook_backpressure_zone", "gauge",
                           "backpressure zone by slot lag: 0 green, 1 yellow, 2 red (in red, "
                           "fast targets shed to their DLQ)");
    rc |= wh_metric_i64(b, "walhook_backpressure_zone", labels, zone);
    rc |= wh_metric_header(b, "walhook_backpressure_zone_state", "gauge",
                           "1, labelled with the backpressure zone's name");
    snprintf(l, sizeof(l), "%s%szone=\"%s\"", labels, sep, ing_zone_name(zone));
    rc |= wh_metric_i64(b, "walhook_backpressure_zone_state", l, 1);
    rc |= wh_metric_header(b, "walhook_backpressure_zone_changes_total", "counter",
                           "backpressure zone changes");
    rc |= wh_metric_u64(b, "walhook_backpressure_zone_changes_total", labels, zc);
    rc |= wh_metric_header(b, "walhook_slot_policy_effective", "gauge",
                           "1, labelled with the configured and the effective slot policy");
    snprintf(l, sizeof(l), "%s%sconfigured=\"%s\",policy=\"%s\"", labels, sep, configured,
             ing_policy_name(policy));
    rc |= wh_metric_i64(b, "walhook_slot_policy_effective", l, 1);
    rc |= wh_metric_header(b, "walhook_slot_policy_track", "gauge",
                           "1 while the effective slot policy is track");
    rc |= wh_metric_i64(b, "walhook_slot_policy_track", labels, policy == ING_POLICY_TRACK);
    rc |= wh_metric_header(b, "walhook_slot_policy_switches_total", "counter",
                           "switches of the effective slot policy (track <-> independent)");
    rc |= wh_metric_u64(b, "walhook_slot_policy_switches_total", labels, sw);
    rc |= wh_metric_header(b, "walhook_ingestor_slot_lag_bytes", "gauge",
                           "slot lag the ingestor measured: source WAL - confirmed flush (-1: "
                           "not measured)");
    rc |= wh_metric_i64(b, "walhook_ingestor_slot_lag_bytes", labels, measured ? slag : -1);
    rc |= wh_metric_header(b, "walhook_ingestor_slot_safe_wal_size_bytes", "gauge",
                           "the slot's safe_wal_size (-1: unlimited or not measured)");
    rc |= wh_metric_i64(b, "walhook_ingestor_slot_safe_wal_size_bytes", labels, safe);
    rc |= wh_metric_header(b, "walhook_slot_track_lag_bytes", "gauge",
                           "source WAL - the slowest counted target's delivered position (0: "
                           "all delivered; -1: unknown)");
    rc |= wh_metric_i64(b, "walhook_slot_track_lag_bytes", labels, tlag);
    rc |= wh_metric_header(b, "walhook_slot_force_resyncs_total", "counter",
                           "targets the store marked NEEDS_SNAPSHOT on this ingestor's reports "
                           "(source.force_resync_lag_bytes, disconnected_resync_after_s, "
                           "lag_max_action)");
    rc |= wh_metric_u64(b, "walhook_slot_force_resyncs_total", labels, rs);
    rc |= wh_metric_header(b, "walhook_slot_check_errors_total", "counter",
                           "slot measurements that failed");
    rc |= wh_metric_u64(b, "walhook_slot_check_errors_total", labels, ce);
    return rc ? WH_ERR : WH_OK;
}
