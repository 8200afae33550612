/* wh_state: the runtime state document (docs/CONTROL.md): tenants, their
 * targets and the runtime settings, versioned by the store.
 *
 * A wh_state is immutable once built and reference counted: a daemon keeps
 * the current one behind an atomic pointer (wh_state_current), readers take
 * a reference and never wait; the watcher swaps in the next version.
 *
 * JSON is parsed with libjansson; every validation error names the field
 * ("tenants[1].targets[0].url: ..." ) in err.
 */
#ifndef WH_STATE_H
#define WH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_slotcfg.h"

#define WH_MAX_TENANTS 64
#define WH_MAX_SECRETS 4

/* A target's delivery behaviour beyond batching and retry timing (issue 8,
 * docs/CONTROL.md "Target delivery settings"). 0 or "" = the default named
 * in the comment; every field is optional in the document and rendered only
 * when set. The dispatcher copies the whole struct (dsp_spec.dl). */
#define WH_DL_STR 256
#define WH_DL_EXPR 1024
typedef struct wh_delivery {
    int max_attempts;        /* failed attempts before on_failure (0 = unlimited) */
    int64_t max_age_ms;      /* time since the first failure before on_failure (0 = unlimited) */
    int breaker_failures;    /* consecutive failures that open the breaker (0 = 5) */
    int breaker_ratio_pct;   /* failure ratio in the window that opens it (0 = 50) */
    int breaker_window;      /* attempts in the ratio window (0 = 20) */
    int breaker_cooldown_ms; /* open -> half-open after (0 = 30000) */
    int nack_window;         /* attempts in the degraded window (0 = 20) */
    int nack_threshold;      /* failures in it that mark the target degraded (0 = 5) */
    int rate_events_per_s;   /* token bucket (0 = unlimited) */
    int rate_requests_per_s; /* token bucket (0 = unlimited) */
    int rate_burst;          /* bucket size (0 = one second's worth) */
    char on_failure[8];      /* "dlq" | "block" ("" = dlq) */
    char mode[12];           /* "reliable" | "fast" ("" = reliable) */
    int64_t backlog_max_ms;  /* fast: age of the oldest undelivered event that sheds (0 = 60000) */
    char ordering[8];        /* "strict" | "by_key" ("" = strict) */
    int lanes;               /* by_key: parallel lanes (0 = 4) */
    int batch_max_age_ms;    /* micro-batcher age bound (0 = 50); never a wait */
    int max_connections;     /* connections to the target (0 = 2) */
    char envelope[24]; /* native | debezium | cloudevents | cloudevents_binary ("" = native) */
    char filter_tables[WH_DL_STR];          /* globs, comma-separated ("" = all) */
    char filter_ops[64];                    /* insert,update,delete,truncate,message ("" = all) */
    char filter_columns_include[WH_DL_STR]; /* comma-separated ("" = all) */
    char filter_columns_exclude[WH_DL_STR]; /* comma-separated */
    char filter_expr[WH_DL_EXPR];           /* wh_filter expression ("" = none) */
    char allow_private[WH_DL_STR];          /* CIDRs the SSRF guard lets through for this target */
    char http_version[8]; /* "auto" | "1.1" | "2" ("" = auto: HTTP/2 over TLS by ALPN, else 1.1) */
    /* "wait" | "resync" ("" = wait): what the store does when it marks the
     * target NEEDS_SNAPSHOT: wait for an operator, or resync it at once
     * (st_resync: offset to the end, then a backfill of every table) */
    char on_needs_snapshot[8];
} wh_delivery;

/* Reads one delivery field `key` (JSON value v, libjansson's json_t) into d.
 * Returns WH_OK, WH_ERR (err names `key` and the problem) or 1 when key is
 * not a delivery field (the caller decides). The admin's PATCH and the
 * document parser share it. */
struct json_t;
int wh_delivery_set(wh_delivery *d, const char *key, struct json_t *v, char *err, size_t errlen);
/* 1 when name is a delivery field (the config file's scan accepts it in a
 * target of the tenants list). */
int wh_delivery_is_field(const char *name);
/* Cross-field and syntax checks (enums, CIDR lists), and the filter
 * settings compiled (wh_filter_compile_lists) as the dispatcher compiles
 * them; err names the field ("filter_expr: position 14: ..."). */
int wh_delivery_check(const wh_delivery *d, char *err, size_t errlen);
/* The filter settings alone compiled (the part of wh_delivery_check that
 * the document parser skips): the admin reports a stored target whose
 * filter does not compile as refused. */
int wh_delivery_check_filter(const wh_delivery *d, char *err, size_t errlen);

typedef struct wh_state_target {
    char name[WH_NAME_MAX];
    char url[WH_URL_MAX];
    char secrets[WH_MAX_SECRETS][256]; /* "whsec_...", newest first */
    int nsecrets;
    int paused;
    /* times an operator resumed it (POST .../resume): the dispatcher
     * re-enables a target disabled by 410 Gone when this grows, whatever
     * state versions it skipped in between (0: never; omitted when 0) */
    int64_t resumes;
    /* the state version that created the target, set by the store
     * (wh_state_stamp_created): a target deleted and created again under
     * its name is a new target, also for a reader that sees both changes as
     * one version (the dispatcher starts it anew: enabled, fresh breaker).
     * 0: created before walhook kept it, or unknown (omitted when 0) */
    int64_t created_version;
    /* delivery settings; 0 = inherit the dispatcher.* setting */
    int batch_max_events;
    int64_t batch_max_bytes;
    int retry_base_ms;
    int retry_max_ms;
    int http_timeout_ms;
    wh_delivery dl;
} wh_state_target;

typedef struct wh_state_tenant {
    char name[WH_NAME_MAX];
    char dsn[WH_URL_MAX];
    char slot[WH_NAME_MAX];
    char publication[WH_NAME_MAX];
    char tables[WH_URL_MAX];
    int create_slot;
    /* backfill requests (POST /v1/tenants/{t}/backfill): "id:schema.table"
     * items separated by ';', ids increasing; the oldest are dropped when it
     * is full ("" = none) */
    char backfills[WH_URL_MAX];
    wh_slotcfg slotcfg; /* source.slot_policy, lag thresholds... of this tenant (docs/SLOTS.md) */
    wh_state_target *targets;
    int ntargets;
} wh_state_tenant;

typedef struct wh_state {
    uint64_t version;
    wh_config settings; /* only WH_CF_RUNTIME fields are meaningful */
    wh_state_tenant *tenants;
    int ntenants;
    int refs; /* atomic; see wh_state_ref */
} wh_state;

/* Builds the initial state from a loaded configuration: the file's top-level
 * tenant/source/targets, plus the file's `tenants` list when `path` has one
 * (tenants = ( { name = "b"; source = { dsn = ...; }; targets = (...); } )).
 * version 0. */
int wh_state_from_config(wh_state **out, const wh_config *cfg, const char *path, char *err,
                         size_t errlen);

/* Parses and validates a document; base supplies defaults for runtime
 * settings the document omits. Filter settings are not compiled here (a
 * stored document with a filter that does not compile, written by an older
 * walhook, is still read; the dispatcher reports that target): every write
 * checks them with wh_state_validate_write. */
int wh_state_parse(wh_state **out, const char *json, size_t len, const wh_config *base, char *err,
                   size_t errlen);

/* Validates a built state (names, duplicates, targets through
 * wh_target_validate and wh_delivery_check (filters compiled), settings
 * through the table's bounds). */
int wh_state_validate(const wh_state *s, char *err, size_t errlen);

/* wh_state_validate of s, a write that replaces cur (the stored document;
 * NULL: none), except that the filter settings of a target cur has with
 * every setting as it is (same tenant, same name) are not compiled: a
 * target stored by an older walhook with a filter that does not compile
 * does not block the writes that leave it alone (the dispatcher refuses it,
 * and the admin shows it refused), while a write that adds or changes a
 * target whose filter does not compile is refused naming it
 * ("tenants[0].targets[1].filter_expr: position 14: ..."). */
int wh_state_validate_write(const wh_state *s, const wh_state *cur, char *err, size_t errlen);

/* Both wh_state_validate and wh_state_validate_write also refuse what a
 * write must not add, though a document cur (NULL: none) already has it
 * passes: a tenant or a target named with a leading '.' or '-' (a target
 * counts as new when its tenant in cur has none of that name), and two
 * tenants that use one replication slot on one PostgreSQL server (wh_dsn_same_server:
 * a slot is per server, whatever the database). This is that slot rule
 * alone: "tenants[1].source.slot: tenants 'a' and 'b' would share
 * replication slot 'wh_a' on server local:5432 ...". */
int wh_state_check_slots(const wh_state *s, const wh_state *cur, char *err, size_t errlen);

/* Canonical JSON (stable key order, so equal states render equal). With
 * redact, DSN passwords and secrets are replaced by "***". */
#define WH_STATE_REDACT 1
int wh_state_render(const wh_state *s, wh_buf *out, int flags);

/* Deep copy (refs = 1). */
int wh_state_clone(wh_state **out, const wh_state *s);

void wh_state_ref(wh_state *s);
void wh_state_unref(wh_state *s); /* frees at zero; NULL is fine */

const wh_state_tenant *wh_state_tenant_find(const wh_state *s, const char *tenant);
const wh_state_target *wh_state_target_find(const wh_state_tenant *t, const char *name);

/* Sets created_version of every target of s (a document about to replace
 * cur, NULL: none): a target cur has (same tenant, same name) keeps cur's
 * value, whatever s says; any other gets `version`, the one s is written
 * as. The store does it on every write, so the value is the store's alone;
 * the admin does it on its change before sending it, so that what it sent
 * is what the store writes. */
void wh_state_stamp_created(wh_state *s, const wh_state *cur, uint64_t version);

/* Editing a private state (wh_state_clone): append a zeroed tenant (slot,
 * publication and create_slot at their defaults) or target, NULL when out of
 * memory (the state unchanged); remove one by name (a tenant with its
 * targets), WH_ERR when there is none. */
wh_state_tenant *wh_state_tenant_add(wh_state *s);
wh_state_target *wh_state_target_add(wh_state_tenant *t);
int wh_state_tenant_remove(wh_state *s, const char *name);
int wh_state_target_remove(wh_state_tenant *t, const char *name);

/* Appends a backfill request of `table` ("schema.table", or "*" for every
 * table of the publication) to t->backfills with the id max(the last listed
 * + 1, floor), into *id; when the list is full the oldest requests go (the
 * ingestor has taken them long ago). Callers pass the state's version + 1
 * as floor: versions never go back, so an id never comes back either, even
 * after the list was emptied (a SIGHUP reload, a PUT of the document), and
 * the ingestor, which skips ids it has done, never takes a new request for
 * an old one. table is at most WH_BACKFILL_TABLE_MAX bytes. */
#define WH_BACKFILL_TABLE_MAX 200
void wh_state_backfill_add(wh_state_tenant *t, const char *table, unsigned long floor,
                           unsigned long *id);

/* The effective configuration of a daemon: base (file + env) with the
 * state's runtime settings, and the tenant's source when `tenant` is not
 * NULL and exists. */
void wh_state_effective(wh_config *out, const wh_config *base, const wh_state *s,
                        const char *tenant);

/* The ingestor control endpoint of tenant (docs/CONTROL.md). */
void wh_state_ingestor_control(char *out, size_t len, const wh_config *cfg, const char *tenant);

/* ---- store access (req/rep on store.endpoint) ---- */

/* Fetches the current state; *out = NULL with WH_OK when the store's version
 * equals known_version. */
struct wh_client;
int wh_state_fetch(struct wh_client *c, uint64_t known_version, const wh_config *base,
                   wh_state **out, char *err, size_t errlen);
/* Writes s as the next version; expected_version as in PutState. On WH_OK
 * *new_version receives the stored version. A conflict returns WH_ERR with
 * *status = 412 (other failures: the store's status, or 0 for transport). */
int wh_state_store(struct wh_client *c, const wh_state *s, uint64_t expected_version,
                   const char *origin, uint64_t *new_version, int *status, char *err,
                   size_t errlen);

/* ---- the watcher every daemon runs ---- */

/* Called on the watcher thread with the new state (borrowed: take a ref to
 * keep it) and the effective config for the daemon's tenant. */
typedef void (*wh_state_apply_fn)(void *arg, wh_state *s, const wh_config *eff);

typedef struct wh_state_watch wh_state_watch;
/* Opens its own store client, fetches the current state (waiting up to
 * wait_ms for the store), calls apply once before returning, then polls
 * every interval_ms. tenant may be NULL. After each apply it also runs
 * wh_config_apply_hooks(old effective, new effective). */
int wh_state_watch_start(wh_state_watch **out, const wh_config *base, const char *tenant,
                         int interval_ms, int wait_ms, wh_state_apply_fn fn, void *arg, char *err,
                         size_t errlen);
/* The state applied last (a new reference; unref it). */
wh_state *wh_state_watch_current(wh_state_watch *w);
/* SIGHUP: re-reads path (wh_config_load + wh_state_from_config) and stores it
 * as the next version, origin "file"; a bad file is refused (WH_ERR, err
 * names it) and nothing changes. */
int wh_state_watch_reload_file(wh_state_watch *w, const char *path, char *err, size_t errlen);
void wh_state_watch_stop(wh_state_watch *w);

#endif
