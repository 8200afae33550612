/* adm_slot: zone, policy and NEEDS_SNAPSHOT marks from the daemons'
 * metrics. See adm_slot.h. */
#include "adm_slot.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "adm_page.h"
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
