/* wh_config: every setting of walhook, declared once in a table
 * (wh_config.c: wh_config_table) with its type, default, bounds, environment
 * variable and whether it may change at runtime (SIGHUP / admin push).
 *
 * Sources, later wins: built-in defaults < libconfig file < WALHOOK_* env.
 * The environment name of "a.b_c" is WALHOOK_A_B_C. Targets come from the
 * file's `targets` list or from WALHOOK_TARGETS ("url[,url...]" or
 * "name=url[,name=url...]").
 *
 * Unknown keys, wrong types, out-of-range values and bad DSNs are errors that
 * name the key; a daemon then exits non-zero. A failed reload keeps the old
 * configuration. Loading stops at the first unknown setting (with its line)
 * and is linear in the size of the file (see wh_cfgscan.h).
 */
#ifndef WH_CONFIG_H
#define WH_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define WH_MAX_TARGETS 32
#define WH_NAME_MAX 64
#define WH_URL_MAX 1024
#define WH_IPC_MAX_MSG_BYTES_MAX (1LL << 30) /* the largest ipc.max_msg_bytes (1 GiB) */
#define WH_PATH_MAX 1024
#define WH_CONFIG_FILE_MAX (16 * 1024 * 1024) /* a larger file is refused */

#define WH_SECRET_MIN_BYTES 24 /* decoded signing key, Standard Webhooks */
#define WH_SECRET_MAX_BYTES 64

typedef struct wh_target {
    char name[WH_NAME_MAX];
    char url[WH_URL_MAX];
    char secret[256]; /* Standard Webhooks secret "whsec_..." or "" */
} wh_target;

/* The one check of a webhook target, run on every target the configuration
 * holds (wh_config_validate: `walhook check`, `walhook up`, every daemon) and
 * again by the dispatcher on every target it sets up:
 *   name    1..63 letters, digits, '_', '-', '.'
 *   url     http:// or https://, printable ASCII without spaces (no CR/LF),
 *           a host (name, IPv4 or [IPv6]), an optional port 1..65535
 *   secret  "" (unsigned) or "whsec_" + standard base64 of 24..64 bytes (the
 *           prefix may be left out, as the Standard Webhooks libraries allow)
 * The message names the target and the field, never quotes the secret:
 * "target 'orders' secret: not whsec_ followed by standard base64 ...". */
int wh_target_validate(const wh_target *t, char *err, size_t errlen);
/* The same check without the target's name: "url: ...", "secret: ...",
 * "name: ..." (for callers that name the target themselves, wh_state). */
int wh_target_check(const wh_target *t, char *err, size_t errlen);
/* Decodes a secret as above into key (WH_SECRET_MAX_BYTES); "" gives
 * *keylen = 0. The dispatcher signs with the key. */
int wh_secret_decode(const char *secret, unsigned char *key, size_t *keylen, char *err,
                     size_t errlen);

typedef struct wh_config {
    /* general */
    char tenant[WH_NAME_MAX];
    char data_dir[WH_PATH_MAX];
    char log_level[16];
    char log_format[8];          /* runtime: "text" | "json" */
    char cpu_scheduling[8];      /* "auto" | "batch" | "normal" (wh_daemon_sched) */
    char cpu_affinity[64];       /* "" or a CPU list such as "1", "0-1,3" (wh_daemon_affinity) */
    int64_t memory_budget_bytes; /* per daemon; 0 = the cgroup's limit, else MemTotal (wh_budget) */
    /* source */
    char source_dsn[WH_URL_MAX];
    char slot[WH_NAME_MAX];
    char publication[WH_NAME_MAX];
    int create_slot;                  /* bool: create slot/publication if missing */
    char tables[WH_URL_MAX];          /* "" = FOR ALL TABLES, else "s.t1,s.t2" */
    int streaming;                    /* bool: pgoutput protocol 2, streaming on */
    int ddl;                          /* bool: DDL capture (event triggers, ing_schema) */
    int heartbeat_interval_ms;        /* 0 = no heartbeat */
    char heartbeat_query[WH_URL_MAX]; /* "" = pg_logical_emit_message (ING_HEARTBEAT_PREFIX) */
    char skip_origins[WH_URL_MAX];    /* runtime: replication origins whose transactions are
                                         dropped ("" = none, "*" = any; wh_origins_match) */
    char snapshot[16];                /* "never" | "initial" (ing_snapshot) */
    int snapshot_chunk_rows;          /* runtime: rows per snapshot/backfill chunk */
    int snapshot_export_max_s;        /* the exported snapshot's read: longest, 0 = no limit */
    /* slot safety (ing_slot, docs/SLOTS.md) */
    char slot_policy[16];                /* "independent" | "track" */
    int64_t safety_lag_bytes;            /* independent: flush LSN held this far behind */
    int64_t lag_warn_bytes;              /* yellow zone; track -> independent (0 = off) */
    int64_t lag_max_bytes;               /* red zone; the hard cap's action (0 = off) */
    char lag_warn_action[16];            /* "independent" | "none" */
    char lag_max_action[16];             /* "independent" | "force_resync" | "none" */
    int64_t force_resync_lag_bytes;      /* a target behind by more: NEEDS_SNAPSHOT (0 = off) */
    int64_t disconnected_resync_after_s; /* a target not delivering for longer (0 = off) */
    int slot_check_ms;                   /* slot lag measured this often */
    /* ingestor */
    char ingestor_control[WH_URL_MAX];
    int64_t flush_bytes;    /* runtime */
    int64_t flush_age_us;   /* runtime */
    int64_t busy_linger_us; /* runtime */
    int64_t window_bytes;   /* runtime */
    int64_t toast_cache_bytes;
    int status_interval_ms;
    int reconnect_max_ms;
    int append_fail_ms; /* not ready after appends failing this long (0 = never) */
    /* store */
    char store_endpoint[WH_URL_MAX];
    char store_notify_endpoint[WH_URL_MAX]; /* "" = derived for ipc://, none for tcp:// */
    int store_workers;
    int store_background_jobs;   /* RocksDB flushes + compactions */
    int64_t store_io_rate_bytes; /* RocksDB rate limiter: compaction writes */
    int64_t rocksdb_cache_bytes;
    int64_t rocksdb_write_buffer_bytes;
    int64_t store_retention_bytes;    /* runtime: per tenant, 0 = no cap */
    int64_t store_retention_age_s;    /* runtime: per tenant, 0 = no cap */
    int64_t store_tenant_rate_bytes;  /* runtime: per-tenant append bytes/s, 0 = unlimited */
    int64_t store_tenant_rate_events; /* runtime: per-tenant append events/s, 0 = unlimited */
    int store_tenant_burst_ms;        /* runtime: bucket size in ms of the rates */
    int64_t store_commit_share_bytes; /* runtime: group commit slice while tenants share */
    int store_isolation_target_pct;   /* runtime: light appends' time with floods, % (0 = off) */

    /* store syncs (latency) */
    int64_t store_offset_sync_wait_us;  /* offset commits wait this long for a synced append */
    int64_t store_wal_zero_ahead_bytes; /* WAL zero-filled this far ahead (0 = off) */
    int store_write_stall_ms;           /* not ready past a write this old (0 = never) */
    int64_t ipc_max_msg_bytes;
    int ipc_timeout_ms;
    char ipc_tls_cert[WH_PATH_MAX]; /* tls+tcp:// endpoints: PEM certificate */
    char ipc_tls_key[WH_PATH_MAX];  /* its private key */
    char ipc_tls_ca[WH_PATH_MAX];   /* CA that signs every peer */
    char ipc_tls_server_name[256];  /* name in the servers' certificates ("" = URL host) */
    int ipc_direct;                 /* clients of ipc:// endpoints use PATH.direct */
    int ipc_allow_plaintext_tcp;    /* bool: accept plain tcp:// beyond the loopback */
    /* dispatcher */
    char dispatcher_control[WH_URL_MAX];
    int batch_max_events;    /* runtime */
    int64_t batch_max_bytes; /* runtime */
    int retry_base_ms;       /* runtime */
    int commit_interval_ms;  /* runtime */
    int retry_max_ms;        /* runtime */
    int http_timeout_ms;     /* runtime */
    int max_inflight;
    char allow_private_networks[256];     /* runtime: CIDRs the SSRF guard lets through */
    char dispatcher_ca_file[WH_PATH_MAX]; /* PEM CAs for https:// targets ("" = the system's) */
    /* dispatcher scale-out (services/dispatcher/dsp_lease.h) */
    char dispatcher_advertise[WH_URL_MAX]; /* "" = derived from dispatcher.control */
    char dispatcher_id[128];               /* lease owner id; "" = <hostname>-<pid> */
    int dispatcher_lease_ttl_ms;           /* 0 = no leases (one dispatcher owns every target) */
    int dispatcher_control_derived;        /* 1: dispatcher.control was derived from data_dir */
    /* admin */
    char admin_listen[256]; /* "127.0.0.1:8080" */
    /* admin API auth and TLS (services/admin/adm_auth.h) */
    char admin_tokens_file[WH_PATH_MAX];
    char admin_read_token[256];
    char admin_admin_token[256];
    int admin_open_probes;       /* bool: /livez /readyz /metrics / without a token */
    int admin_request_timeout_s; /* a request's headers and body within this */
    int admin_stats_wait_ms;     /* /metrics, /readyz, the status page wait this for daemons */
    char admin_tls_cert[WH_PATH_MAX];
    char admin_tls_key[WH_PATH_MAX];
    /* targets */
    wh_target targets[WH_MAX_TARGETS];
    int ntargets;
    int64_t store_toast_cache_bytes; /* runtime: per tenant (st_toast) */
    int store_schema_prune;          /* runtime: prune the schema registries (st_db) */
} wh_config;

typedef enum { WH_CT_STRING, WH_CT_INT, WH_CT_INT64, WH_CT_BOOL } wh_config_type;

#define WH_CF_RUNTIME 1 /* may change without a restart */

typedef struct wh_config_entry {
    const char *path; /* "source.dsn" */
    wh_config_type type;
    size_t offset;       /* offsetof(wh_config, ...) */
    size_t size;         /* for strings: buffer size */
    const char *def_str; /* default for strings */
    int64_t def_int;     /* default for numbers/bools */
    int64_t min, max;    /* bounds for numbers */
    int flags;
    const char *help;
} wh_config_entry;

extern const wh_config_entry wh_config_table[];
extern const size_t wh_config_table_len;

/* Fills defaults. Endpoints that are "" after loading are derived from
 * data_dir: ipc://<data_dir>/store.sock, ingestor.sock, dispatcher.sock. */
void wh_config_defaults(wh_config *c);
/* Loads defaults, then `path` (may be NULL: no file), then the environment,
 * then validates. */
int wh_config_load(wh_config *c, const char *path, char *err, size_t errlen);
/* Applies WALHOOK_* environment variables over c. */
int wh_config_apply_env(wh_config *c, char *err, size_t errlen);
/* Sets one setting by path from text (as the environment would). */
int wh_config_set(wh_config *c, const char *path, const char *value, char *err, size_t errlen);
/* Parses a WALHOOK_TARGETS-style list into c->targets. */
int wh_config_set_targets(wh_config *c, const char *list, char *err, size_t errlen);
/* Checks cross-field rules, the DSN, every target (wh_target_validate, names
 * unique) and derives endpoints. */
int wh_config_validate(wh_config *c, char *err, size_t errlen);
/* Returns the name of the first non-runtime setting that differs, or NULL. */
const char *wh_config_static_diff(const wh_config *a, const wh_config *b);
/* Renders the settings as JSON (the DSN password and secrets redacted). */
struct wh_buf;
int wh_config_to_json(const wh_config *c, struct wh_buf *out);

/* Runtime apply hooks: a daemon registers, per runtime setting, what to do
 * when its value changes (docs/CONTROL.md). wh_config_hook refuses a path
 * that is unknown or not WH_CF_RUNTIME. wh_config_apply_hooks calls the hook
 * of every runtime setting whose value differs between old and cur (and the
 * built-in log_level hook). */
typedef void (*wh_config_apply_fn)(void *arg, const wh_config *c);
int wh_config_hook(const char *path, wh_config_apply_fn fn, void *arg, char *err, size_t errlen);
void wh_config_apply_hooks(const wh_config *old, const wh_config *cur);

/* source.skip_origins: a comma-separated list of replication origin names
 * (whitespace around each name ignored; "*" = every origin; "" = none).
 * wh_origins_check refuses an empty item, a control character or a name
 * longer than WH_ORIGIN_NAME_MAX bytes, naming the item ("item 2 is empty";
 * the caller names the setting).
 * wh_origins_match: 1 when name is listed (or "*" is), else 0. */
#define WH_ORIGIN_NAME_MAX 512 /* PostgreSQL 16+ refuses longer origin names */
int wh_origins_check(const char *list, char *err, size_t errlen);
int wh_origins_match(const char *list, const char *name);

/* IPC endpoints (store.endpoint, store.notify_endpoint, ingestor.control,
 * dispatcher.control, dispatcher.advertise) are ipc://, tls+tcp:// or
 * tcp://. A plain tcp:// endpoint whose host is not a loopback address
 * (wh_endpoint_plain_beyond_loopback) is refused by wh_config_validate,
 * naming the setting, unless ipc.allow_plaintext_tcp is true. This returns
 * how many plain tcp:// endpoints c has beyond the loopback (loopback 0) or
 * on it (loopback 1) and lists them in out ("store.endpoint
 * tcp://0.0.0.0:7001, ...", cut to len): what each daemon warns about at
 * its start (wh_daemon_init). */
int wh_config_plaintext_endpoints(const wh_config *c, int loopback, char *out, size_t len);

/* The table entry of a setting, or NULL. */
const wh_config_entry *wh_config_find(const char *path);

/* A target URL for display: userinfo password and query string hidden. */
void wh_config_redact_url(const char *url, char *out, size_t len);

/* Files that hold secrets and that group or others may read, each
 * reported as one message to fn (never a secret's value): the config file
 * path (may be NULL) when it holds a secret (a DSN or URL password, a
 * whsec_ value, a secret, secrets, admin_token or read_token setting;
 * the message names the settings), and the files admin.tls_key and
 * ipc.tls_key of c. Returns how many were reported. `walhook check` prints
 * them, every daemon logs them as warnings at start (wh_daemon_init). */
typedef void (*wh_config_warn_fn)(void *arg, const char *msg);
int wh_config_check_secret_files(const wh_config *c, const char *path, wh_config_warn_fn fn,
                                 void *arg);

/* Standard option parsing for a daemon's main: -c FILE, -h. Returns the
 * config path or NULL; exits 2 on bad usage. */
const char *wh_config_parse_args(int argc, char **argv, const char *prog);

#endif
