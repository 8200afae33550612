/* adm_slot: zone, policy and NEEDS_SNAPSHOT marks from the daemons'
 * metrics. See adm_slot.h. */
#include "adm_slot.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adm_page.h"
#include "wh_state.h"
#include "wh_util.h"

static const char *metrics_of(const adm_stat st[ADM_NDAEMONS], const char *daemon)
{
    for (int i = 0; i < ADM_NDAEMONS; i++)
        if (strcmp(st[i].name, daemon) == 0)
            return st[i].up && st[i].metrics ? st[i].metrics : NULL;
    return NULL;
}

const char *adm_zone_name(int zone)
{
    switch (zone) {
    case 0:
        return "green";
    case 1:
        return "yellow";
    case 2:
        return "red";
    default:
        return "unknown";
    }
}

void adm_slot_view_get(const adm_stat st[ADM_NDAEMONS], const char *tenant, adm_slot_view *out)
{
    memset(out, 0, sizeof(*out));
    out->zone = -1;
    const char *m = metrics_of(st, "ingestor");
    if (m == NULL)
        return;
    char lab[WH_NAME_MAX + 64];
    snprintf(lab, sizeof(lab), "tenant=\"%s\"", tenant);
    double z = adm_metric_sum(m, "walhook_backpressure_zone", lab);
    if (z >= 0 && z <= 2)
        out->zone = (int)z;
    static const char *const policies[] = {"independent", "track"};
    for (size_t c = 0; c < 2; c++)
        for (size_t e = 0; e < 2; e++) {
            snprintf(lab, sizeof(lab), "tenant=\"%s\",configured=\"%s\",policy=\"%s\"", tenant,
                     policies[c], policies[e]);
            if (adm_metric_sum(m, "walhook_slot_policy_effective", lab) > 0) {
                wh_strlcpy(out->configured, policies[c], sizeof(out->configured));
                wh_strlcpy(out->effective, policies[e], sizeof(out->effective));
            }
        }
}

int adm_slot_needs_snapshot(const adm_stat st[ADM_NDAEMONS], const char *tenant, const char *target)
{
    const char *m = metrics_of(st, "store");
    if (m == NULL)
        return 0;
    char lab[2 * WH_NAME_MAX + 32];
    snprintf(lab, sizeof(lab), "tenant=\"%s\",target=\"%s\"", tenant, target);
    return adm_metric_sum(m, "walhook_store_target_needs_snapshot", lab) > 0;
}

void adm_slot_json(json_t *o, const wh_state_tenant *t, const adm_stat st[ADM_NDAEMONS])
{
    adm_slot_view v;
    adm_slot_view_get(st, t->name, &v);
    json_object_set_new(o, "backpressure_zone",
                        v.zone >= 0 ? json_string(adm_zone_name(v.zone)) : json_null());
    json_object_set_new(o, "slot_policy",
                        v.configured[0] ? json_pack("{s:s,s:s}", "configured", v.configured,
                                                    "effective", v.effective)
                                        : json_null());
    json_t *ns = json_array();
    for (int j = 0; j < t->ntargets; j++)
        if (adm_slot_needs_snapshot(st, t->name, t->targets[j].name))
            json_array_append_new(ns, json_string(t->targets[j].name));
    json_object_set_new(o, "needs_snapshot", ns);
}

int adm_slot_target_info(const adm_stat st[ADM_NDAEMONS], const char *tenant, const char *target,
                         adm_ns_info *out)
{
    memset(out, 0, sizeof(*out));
    out->since = -1;
    const char *m = metrics_of(st, "store");
    if (m == NULL)
        return WH_ERR;
    out->needs_snapshot = adm_slot_needs_snapshot(st, tenant, target);
    if (!out->needs_snapshot)
        return WH_OK;
    /* walhook_store_target_needs_snapshot_since_seconds{tenant,target,reason} */
    static const char name[] = "walhook_store_target_needs_snapshot_since_seconds{";
    char lab[2 * WH_NAME_MAX + 32];
    int ll = snprintf(lab, sizeof(lab), "tenant=\"%s\",target=\"%s\",", tenant, target);
    for (const char *line = m; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > sizeof(name) - 1 && strncmp(line, name, sizeof(name) - 1) == 0 &&
            len > sizeof(name) - 1 + (size_t)ll &&
            strncmp(line + sizeof(name) - 1, lab, (size_t)ll) == 0) {
            const char *r = line + sizeof(name) - 1 + ll;
            const char *close = memchr(line, '}', len);
            if (close != NULL && strncmp(r, "reason=\"", 8) == 0) {
                r += 8;
                const char *q = memchr(r, '"', (size_t)(close - r));
                if (q != NULL && (size_t)(q - r) < sizeof(out->reason)) {
                    memcpy(out->reason, r, (size_t)(q - r));
                    out->reason[q - r] = '\0';
                }
                char *end;
                long long v = strtoll(close + 1, &end, 10);
                if (end != close + 1 && v > 0)
                    out->since = v;
            }
            break;
        }
        line = eol ? eol + 1 : NULL;
    }
    return WH_OK;
}

void adm_target_runtime(const adm_stat st[ADM_NDAEMONS], const char *tenant, const char *target,
                        adm_target_rt *out)
{
    memset(out, 0, sizeof(*out));
    out->err_at = -1;
    const char *m = metrics_of(st, "dispatcher");
    if (m == NULL)
        return;
    out->known = 1;
    char lab[2 * WH_NAME_MAX + 32];
    int ll = snprintf(lab, sizeof(lab), "tenant=\"%s\",target=\"%s\"", tenant, target);
    if (ll < 0 || (size_t)ll >= sizeof(lab))
        return;
    out->disabled = adm_metric_sum(m, "walhook_target_disabled", lab) > 0;
    out->blocked = adm_metric_sum(m, "walhook_target_blocked", lab) > 0;
    /* walhook_target_last_error_timestamp_seconds{[replica,]tenant,target,error} */
    static const char name[] = "walhook_target_last_error_timestamp_seconds{";
    const size_t nl = sizeof(name) - 1;
    wh_strlcpy(lab + ll, ",error=\"", sizeof(lab) - (size_t)ll);
    ll = (int)strlen(lab);
    for (const char *line = m; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *close =
            len > nl && strncmp(line, name, nl) == 0 ? memchr(line, '}', len) : NULL;
        const char *r = NULL;
        for (const char *q = line + nl; close && q + ll <= close && r == NULL; q++)
            if ((q == line + nl || q[-1] == ',') && memcmp(q, lab, (size_t)ll) == 0)
                r = q + ll;
        const char *endq = r ? memchr(r, '"', (size_t)(close - r)) : NULL;
        if (endq != NULL) {
            char *end;
            long long v = strtoll(close + 1, &end, 10);
            if (end != close + 1 && v > out->err_at) {
                out->err_at = v;
                size_t n = (size_t)(endq - r);
                if (n >= sizeof(out->error))
                    n = sizeof(out->error) - 1;
                memcpy(out->error, r, n);
                out->error[n] = '\0';
            }
        }
        line = eol ? eol + 1 : NULL;
    }
}

const char *adm_target_rt_state(const adm_target_rt *rt)
{
    return rt->disabled ? "disabled" : rt->blocked ? "blocked" : NULL;
}

static json_t *iso_time(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    char b[32];
    if (unix_s > 0 && gmtime_r(&t, &tm) && strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
        return json_string(b);
    return json_null();
}

void adm_slot_target_json(json_t *o, const adm_stat st[ADM_NDAEMONS], const char *tenant)
{
    const char *name = json_string_value(json_object_get(o, "name"));
    if (name == NULL)
        return;
    adm_ns_info ns;
    int known = adm_slot_target_info(st, tenant, name, &ns) == WH_OK;
    /* a stored filter that does not compile (written before the admin
     * checked filters): the dispatcher refuses the target, nothing is
     * delivered to it */
    static const char *const fkeys[] = {"filter_tables", "filter_ops", "filter_columns_include",
                                        "filter_columns_exclude", "filter_expr"};
    wh_delivery dl;
    memset(&dl, 0, sizeof(dl));
    char ferr[WH_ERRLEN];
    int refused = 0;
    for (size_t i = 0; i < sizeof(fkeys) / sizeof(fkeys[0]); i++) {
        json_t *v = json_object_get(o, fkeys[i]);
        if (v != NULL && wh_delivery_set(&dl, fkeys[i], v, ferr, sizeof(ferr)) != WH_OK)
            refused = 1;
    }
    if (!refused && wh_delivery_check_filter(&dl, ferr, sizeof(ferr)) != WH_OK)
        refused = 1;
    adm_target_rt rt;
    adm_target_runtime(st, tenant, name, &rt);
    const char *rts = adm_target_rt_state(&rt);
    const char *state = refused                                      ? "refused"
                        : ns.needs_snapshot                          ? "needs_snapshot"
                        : json_is_true(json_object_get(o, "paused")) ? "paused"
                        : rts != NULL                                ? rts
                        : known                                      ? "active"
                                                                     : "unknown";
    json_object_set_new(o, "state", json_string(state));
    if (refused)
        json_object_set_new(o, "config_error", json_string(ferr));
    if (rts != NULL && rts == state)
        json_object_set_new(
            o, "state_reason",
            json_string(rt.disabled ? "it answered 410 Gone: nothing is posted to it until an "
                                      "operator resumes it (POST .../resume; its offset is kept)"
                                    : "on_failure = block: it retries the event that failed for "
                                      "good and posts nothing after it (resume it, or move its "
                                      "offset)"));
    json_object_set_new(o, "last_error",
                        rt.err_at > 0
                            ? json_pack("{s:o,s:s}", "at", iso_time(rt.err_at), "error", rt.error)
                            : json_null());
    if (!ns.needs_snapshot) {
        json_object_set_new(o, "needs_snapshot", json_null());
        return;
    }
    json_t *since = iso_time(ns.since);
    json_object_set_new(
        o, "needs_snapshot",
        json_pack("{s:o,s:s}", "since", since, "reason", ns.reason[0] ? ns.reason : "unknown"));
}
