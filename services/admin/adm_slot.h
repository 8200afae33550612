/* adm_slot: slot safety as the admin shows it (docs/SLOTS.md), read from
 * the daemons' metrics (Stats): the tenant's backpressure zone and its
 * configured and effective slot policy (ingestor: walhook_backpressure_zone,
 * walhook_slot_policy_effective), and its targets marked NEEDS_SNAPSHOT
 * (store: walhook_store_target_needs_snapshot; the retention cap's mark and
 * force_resync's). GET /v1/slots and the status page use it.
 */
#ifndef ADM_SLOT_H
#define ADM_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "adm_api.h"
#include "adm_query.h"
#include "wh_state.h"

typedef struct adm_slot_view {
    int zone;            /* 0 green, 1 yellow, 2 red; -1 unknown (no ingestor metrics) */
    char configured[16]; /* source.slot_policy ("" unknown) */
    char effective[16];  /* "track" | "independent" ("" unknown) */
} adm_slot_view;

const char *adm_zone_name(int zone); /* "green", "yellow", "red", "unknown" */

/* The view of tenant from st (the admin's ingestor is its file's tenant's:
 * another tenant's view is unknown). */
void adm_slot_view_get(const adm_stat st[ADM_NDAEMONS], const char *tenant, adm_slot_view *out);

/* 1 when the store's metrics mark tenant/target NEEDS_SNAPSHOT. */
int adm_slot_needs_snapshot(const adm_stat st[ADM_NDAEMONS], const char *tenant,
                            const char *target);

/* A target's NEEDS_SNAPSHOT mark as the store's metrics show it
 * (walhook_store_target_needs_snapshot and
 * walhook_store_target_needs_snapshot_since_seconds{reason}). */
typedef struct adm_ns_info {
    int needs_snapshot;
    int64_t since;   /* unix seconds it was marked; -1 unknown */
    char reason[40]; /* retention_cap, force_resync_lag, force_resync_disconnected, unknown; "" */
} adm_ns_info;
/* WH_ERR when the store's metrics are unavailable (out says not marked). */
int adm_slot_target_info(const adm_stat st[ADM_NDAEMONS], const char *tenant, const char *target,
                         adm_ns_info *out);

/* What the dispatcher's metrics say of a target (every replica's):
 * walhook_target_disabled (410 Gone), walhook_target_blocked (on_failure =
 * block) and walhook_target_last_error_timestamp_seconds{error} (the
 * newest). */
typedef struct adm_target_rt {
    int known;       /* the dispatcher's metrics were available */
    int disabled;    /* answered 410 Gone: nothing is posted until resumed */
    int blocked;     /* on_failure = block holds it at a failing event */
    int64_t err_at;  /* unix seconds of the last failed attempt; -1 none */
    char error[256]; /* its text (HTTP status or transport error), "" none */
} adm_target_rt;
void adm_target_runtime(const adm_stat st[ADM_NDAEMONS], const char *tenant, const char *target,
                        adm_target_rt *out);
/* "disabled", "blocked" or NULL (the dispatcher delivers to it). */
const char *adm_target_rt_state(const adm_target_rt *rt);

struct json_t;
/* Adds to a target object o (GET /v1/tenants/{t}/targets[/{n}]) "state":
 * "refused" with "config_error" (a stored filter that does not compile:
 * the dispatcher delivers nothing to it), "needs_snapshot" (first, as on
 * the status page), "paused", "disabled" (it answered 410 Gone: resume it),
 * "blocked" (on_failure = block), "active", or
 * "unknown" (the store's metrics unavailable), and "needs_snapshot": null or
 * {"since": ISO 8601 UTC or null, "reason": ...}, "last_error": null or
 * {"at": ISO 8601 UTC, "error": ...} (the dispatcher's last failed attempt),
 * and with disabled or blocked "state_reason". */
void adm_slot_target_json(struct json_t *o, const adm_stat st[ADM_NDAEMONS], const char *tenant);

/* Adds to a /v1/slots tenant object: backpressure_zone, slot_policy
 * {configured, effective} and needs_snapshot (the names of its targets
 * marked NEEDS_SNAPSHOT). */
void adm_slot_json(struct json_t *o, const wh_state_tenant *t, const adm_stat st[ADM_NDAEMONS]);

#endif
