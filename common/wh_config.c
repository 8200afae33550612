/* wh_config: the declarative settings table, libconfig loading, environment
 * overrides and validation. */
#include "wh_config.h"
#include "wh_buf.h"
#include "wh_cfgscan.h"
#include "wh_cidr.h"
#include "wh_daemon.h"
#include "wh_dsn.h"
#include "wh_state.h"
#include "wh_util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S(field, path, def, flags, help)                                                           \
    {                                                                                              \
        path, WH_CT_STRING, offsetof(wh_config, field), sizeof(((wh_config *)0)->field), def, 0,   \
            0, 0, flags, help                                                                      \
    }
#define I(field, path, def, lo, hi, flags, help)                                                   \
    {                                                                                              \
        path, WH_CT_INT, offsetof(wh_config, field), sizeof(int), NULL, def, lo, hi, flags, help   \
    }
#define L(field, path, def, lo, hi, flags, help)                                                   \
    {                                                                                              \
        path, WH_CT_INT64, offsetof(wh_config, field), sizeof(int64_t), NULL, def, lo, hi, flags,  \
            help                                                                                   \
    }
#define B(field, path, def, flags, help)                                                           \
    {                                                                                              \
        path, WH_CT_BOOL, offsetof(wh_config, field), sizeof(int), NULL, def, 0, 1, flags, help    \
    }

#define KiB 1024LL
#define MiB (1024LL * 1024LL)
#define GiB (1024LL * MiB)

const wh_config_entry wh_config_table[] = {
    S(tenant, "tenant", "default", 0, "tenant name: one per source database"),
    S(data_dir, "data_dir", "./var", 0, "directory for RocksDB and ipc sockets"),
    S(log_level, "log_level", "info", WH_CF_RUNTIME, "debug | info | warn | error"),
    S(log_format, "log_format", "text", WH_CF_RUNTIME,
      "text | json (one JSON object a line, OpenTelemetry log data model names)"),
    L(memory_budget_bytes, "memory_budget_bytes", 0, 0, 1024 * GiB, 0,
      "per daemon: refuse to start (and the admin refuses tenants/targets, 409) when the "
      "daemon's planned memory + 20% exceeds this (0 = the container's cgroup memory limit, "
      "else MemTotal)"),
    S(source_dsn, "source.dsn", "", 0, "PostgreSQL connection URI or key=value string"),
    S(slot, "source.slot", "walhook", 0, "logical replication slot name"),
    S(publication, "source.publication", "walhook", 0, "publication name"),
    B(create_slot, "source.create_slot", 1, 0, "create slot and publication when missing"),
    S(tables, "source.tables", "", 0, "\"\" = all tables, else schema.table,schema.table"),
    B(streaming, "source.streaming", 1, 0,
      "pgoutput protocol 2 with streaming (PostgreSQL 14+): a large transaction is staged in "
      "the store while it runs, instead of spilled by PostgreSQL and sent at its commit"),
    B(ddl, "source.ddl", 0, 0,
      "capture DDL: install (idempotently; needs a superuser) event triggers that emit each DDL "
      "command as a transactional logical message, delivered as a `ddl` event; turned off, "
      "walhook drops the triggers it created once no other slot uses them"),
    I(heartbeat_interval_ms, "source.heartbeat_interval_ms", 0, 0, 86400000, 0,
      "with no change for this long, run source.heartbeat_query on the source (0: never)"),
    S(heartbeat_query, "source.heartbeat_query", "", 0,
      "the heartbeat statement; \"\" = a non-transactional logical message with the prefix "
      "walhook.heartbeat, consumed by the ingestor (never an event)"),
    S(skip_origins, "source.skip_origins", "", WH_CF_RUNTIME,
      "replication origins (comma-separated names, \"*\" = any) whose transactions are not "
      "delivered: for two-way setups (\"\" = deliver every transaction)"),
    S(snapshot, "source.snapshot", "never", 0,
      "never | initial: when walhook creates the slot, read every published table's rows as "
      "`read` events (in the slot's exported snapshot before streaming, chunked by key, "
      "resumable)"),
    I(snapshot_export_max_s, "source.snapshot_export_max_s", 0, 0, 1000000000, 0,
      "longest time the initial snapshot's read in the slot's exported snapshot may hold its "
      "one transaction (xmin, table locks, the slot's WAL); then the rest is read by watermark "
      "chunks while streaming (0 = no limit)"),
    I(snapshot_chunk_rows, "source.snapshot_chunk_rows", 2048, 1, 100000, WH_CF_RUNTIME,
      "rows per snapshot or backfill chunk (one SELECT, one store request)"),
    S(slot_policy, "source.slot_policy", "independent", 0,
      "independent (the flush LSN follows what the store fsynced) | track (it follows the "
      "slowest target's delivered position)"),
    L(safety_lag_bytes, "source.safety_lag_bytes", 0, 0, 1024 * GiB, 0,
      "independent: the flush LSN reported to PostgreSQL stays this many bytes behind what "
      "the store fsynced"),
    L(lag_warn_bytes, "source.lag_warn_bytes", 1 * GiB, 0, 1024 * 1024 * GiB, 0,
      "slot lag of the yellow backpressure zone and of source.lag_warn_action (0 = off)"),
    L(lag_max_bytes, "source.lag_max_bytes", 4 * GiB, 0, 1024 * 1024 * GiB, 0,
      "slot lag hard cap: the red backpressure zone and source.lag_max_action (0 = off)"),
    S(lag_warn_action, "source.lag_warn_action", "independent", 0,
      "at lag_warn_bytes: independent (track switches to independent, back with hysteresis) "
      "| none"),
    S(lag_max_action, "source.lag_max_action", "independent", 0,
      "at lag_max_bytes: independent (track switches to independent) | force_resync (targets "
      "behind by more than lag_max_bytes are marked NEEDS_SNAPSHOT) | none"),
    L(force_resync_lag_bytes, "source.force_resync_lag_bytes", 0, 0, 1024 * 1024 * GiB, 0,
      "a target behind the source by more WAL bytes is marked NEEDS_SNAPSHOT (0 = never)"),
    L(disconnected_resync_after_s, "source.disconnected_resync_after_s", 0, 0, 10LL * 366 * 86400,
      0,
      "a target with events to deliver that delivered nothing for this long is marked "
      "NEEDS_SNAPSHOT (0 = never)"),
    I(slot_check_ms, "source.slot_check_ms", 1000, 100, 600000, 0,
      "how often the ingestor measures the slot lag and reports to the store (slot policy, "
      "backpressure zone)"),
    S(ingestor_control, "ingestor.control", "", 0, "ingestor control endpoint (Stats)"),
    L(flush_bytes, "ingestor.flush_bytes", 4 * MiB, 1 * KiB, 256 * MiB, WH_CF_RUNTIME,
      "seal a batch at this many bytes of JSON (at most about 1 MiB: one request)"),
    L(flush_age_us, "ingestor.flush_age_us", 500, 0, 10000000, WH_CF_RUNTIME,
      "ignored (adaptive batching seals when the sender is free); accepted so older files load"),
    L(busy_linger_us, "ingestor.busy_linger_us", 100000, 0, 10000000, WH_CF_RUNTIME,
      "with a backlog (commits older than 1 s), hold a batch up to this long to fill"),
    L(window_bytes, "ingestor.window_bytes", 2 * MiB, 64 * KiB, 16 * GiB, WH_CF_RUNTIME,
      "stop reading WAL while this many bytes are unacked by the store"),
    L(toast_cache_bytes, "ingestor.toast_cache_bytes", 8 * MiB, 0, 16 * GiB, 0,
      "keep the last value of TOASTed columns up to this many bytes, to fill updates that "
      "leave them unchanged (0: list them as \"unchanged\")"),
    I(append_fail_ms, "ingestor.append_fail_ms", 10000, 0, 3600000, WH_CF_RUNTIME,
      "the ingestor reports not ready, with the store's error, once its appends to the store "
      "have failed (refused, timed out, no store) for this long, until one succeeds (0 = never)"),
    I(status_interval_ms, "ingestor.status_interval_ms", 1000, 10, 60000, 0,
      "standby status update interval"),
    I(reconnect_max_ms, "ingestor.reconnect_max_ms", 10000, 100, 600000, 0,
      "maximum reconnect backoff"),
    S(store_endpoint, "store.endpoint", "", 0,
      "store request endpoint: ipc://, tls+tcp:// or tcp:// (plain tcp:// on the loopback "
      "only, unless ipc.allow_plaintext_tcp)"),
    S(store_notify_endpoint, "store.notify_endpoint", "", 0,
      "the store's durability notifications (pub/sub; dispatchers read when notified): \"\" "
      "= store.endpoint + \".notify\" for ipc://, none for tcp:// (readers then long-poll)"),
    I(store_workers, "store.workers", 4, 1, 64, 0,
      "store requests that may wait for the disk served at once (2 more for the others)"),
    I(store_background_jobs, "store.background_jobs", 2, 2, 32, 0,
      "RocksDB background threads: max(1, n/4) flush, the rest compaction (shared by every "
      "tenant, round-robin; each costs compaction buffers in the memory budget)"),
    L(store_io_rate_bytes, "store.io_rate_bytes", 128 * MiB, 1 * MiB, 64 * GiB, WH_CF_RUNTIME,
      "RocksDB rate limiter: bytes/s of compaction writes, all tenants together (flushes, and "
      "any compaction while writes stall, are not limited)"),
    L(rocksdb_cache_bytes, "store.cache_bytes", 4 * MiB, 0, 64 * GiB, 0,
      "RocksDB block cache size"),
    L(rocksdb_write_buffer_bytes, "store.write_buffer_bytes", 4 * MiB, 64 * KiB, 4 * GiB, 0,
      "RocksDB memtable size"),
    L(store_retention_bytes, "store.retention_bytes", 0, 0, 1024 * 1024 * GiB, WH_CF_RUNTIME,
      "per tenant: bytes of undelivered events kept (a streamed transaction's events count as "
      "their ~30-byte references); a target further behind is marked NEEDS_SNAPSHOT (0 = no "
      "cap)"),
    L(store_retention_age_s, "store.retention_age_s", 0, 0, 10LL * 366 * 86400, WH_CF_RUNTIME,
      "per tenant: age of undelivered events kept; a target further behind is marked "
      "NEEDS_SNAPSHOT (0 = no cap)"),
    L(store_tenant_rate_bytes, "store.tenant_rate_bytes", 0, 0, 64 * GiB, WH_CF_RUNTIME,
      "per tenant: append bytes/s before the store answers \"slow down\" (0 = unlimited)"),
    L(store_tenant_rate_events, "store.tenant_rate_events", 0, 0, 1000000000, WH_CF_RUNTIME,
      "per tenant: appended events/s before the store answers \"slow down\" (0 = unlimited)"),
    I(store_tenant_burst_ms, "store.tenant_burst_ms", 1000, 10, 60000, WH_CF_RUNTIME,
      "per tenant: token bucket size, in ms of the rates"),
    L(store_commit_share_bytes, "store.commit_share_bytes", 128 * KiB, 4 * KiB, 64 * MiB,
      WH_CF_RUNTIME,
      "group commit: while a tenant makes appends of at most this size, another tenant's "
      "appends are synced in slices of this size, so the small ones never wait behind a big "
      "sync (smaller: better isolation; larger: more throughput for a flooding tenant)"),
    I(store_isolation_target_pct, "store.isolation_target_pct", 150, 0, 100000, WH_CF_RUNTIME,
      "while a tenant makes light appends (store.commit_share_bytes or less), other tenants' "
      "big appends are answered \"slow down\" as much as it takes (down to 64 KiB/s) to keep "
      "the light ones within this percentage of their time with no flood, and at least 200 us "
      "over it (0 = off: a flood slows the others' syncs)"),
    L(store_offset_sync_wait_us, "store.offset_sync_wait_us", 2000, 0, 1000000, 0,
      "an offset commit is written without sync and answered once the next synced group of "
      "appends (which syncs the WAL before it) returned, or after this long its own WAL sync: "
      "one sync fewer per delivered batch, so appends do not queue behind commits (0 = every "
      "offset commit syncs at once)"),
    L(store_wal_zero_ahead_bytes, "store.wal_zero_ahead_bytes", 1 * MiB, 0, 1 * GiB, 0,
      "write zeros this far ahead of the end of RocksDB's WAL, so a synced append overwrites "
      "written blocks inside the file size and its fdatasync commits no file system journal "
      "(ext4, XFS; 0 = off)"),
    I(store_write_stall_ms, "store.write_stall_ms", 10000, 0, 3600000, WH_CF_RUNTIME,
      "the store reports not ready (and walhook_store_write_stalled_seconds shows it) while a "
      "write or sync has waited this long for the disk: a hung or frozen disk fails nothing "
      "(0 = never)"),
    L(ipc_max_msg_bytes, "ipc.max_msg_bytes", 64 * MiB, 64 * KiB, WH_IPC_MAX_MSG_BYTES_MAX, 0,
      "largest IPC message accepted"),
    I(ipc_timeout_ms, "ipc.timeout_ms", 10000, 100, 600000, 0, "IPC request timeout"),
    S(ipc_tls_cert, "ipc.tls_cert", "", 0,
      "PEM certificate for tls+tcp:// endpoints (mutual TLS, with tls_key and tls_ca)"),
    S(ipc_tls_key, "ipc.tls_key", "", 0, "PEM private key of ipc.tls_cert"),
    S(ipc_tls_ca, "ipc.tls_ca", "", 0, "PEM CA certificate that signs every peer's certificate"),
    S(ipc_tls_server_name, "ipc.tls_server_name", "", 0,
      "name the servers' certificates carry (\"\" = the endpoint's host)"),
    B(ipc_allow_plaintext_tcp, "ipc.allow_plaintext_tcp", 0, 0,
      "accept plain tcp:// endpoints on addresses other than the loopback (0.0.0.0, a "
      "container or host name, any other address): such a link has no authentication and no "
      "encryption, so whoever can connect to the store reads every secret of the runtime state "
      "(DSN passwords, signing secrets) and rewrites it; false refuses them (use tls+tcp:// or "
      "ipc:// on a volume the daemons share); true accepts an unauthenticated network, with a "
      "warning at every daemon's start (a loopback tcp:// endpoint is accepted either way, "
      "with a warning: every local user can connect to it)"),
    B(ipc_direct, "ipc.direct", 1, 0,
      "ipc:// endpoints: call over a plain unix socket next to the endpoint (PATH.direct) "
      "instead of NNG (servers always offer it; false: this daemon's clients use NNG)"),
    S(dispatcher_control, "dispatcher.control", "", 0, "dispatcher control endpoint (Stats)"),
    I(batch_max_events, "dispatcher.batch_max_events", 1000, 1, 100000, WH_CF_RUNTIME,
      "most events in one webhook request"),
    L(batch_max_bytes, "dispatcher.batch_max_bytes", 1 * MiB, 1 * KiB, 256 * MiB, WH_CF_RUNTIME,
      "most bytes in one webhook request"),
    I(retry_base_ms, "dispatcher.retry_base_ms", 100, 1, 600000, WH_CF_RUNTIME,
      "first retry backoff cap"),
    I(retry_max_ms, "dispatcher.retry_max_ms", 30000, 1, 3600000, WH_CF_RUNTIME,
      "largest retry backoff"),
    I(http_timeout_ms, "dispatcher.http_timeout_ms", 30000, 100, 600000, WH_CF_RUNTIME,
      "webhook request timeout"),
    I(commit_interval_ms, "dispatcher.commit_interval_ms", 10, 0, 60000, WH_CF_RUNTIME,
      "a target's offset is committed to the store at most this often (0 = after every "
      "acknowledged request): the positions acknowledged meanwhile go in one commit; a "
      "crash redelivers at most this much"),
    I(max_inflight, "dispatcher.max_inflight", 64, 1, 10000, 0, "global in-flight request cap"),
    S(allow_private_networks, "dispatcher.allow_private_networks", "", WH_CF_RUNTIME,
      "CIDRs (\"127.0.0.0/8,::1\") a target may resolve to although loopback, private, "
      "link-local, CGNAT, multicast or metadata (SSRF guard)"),
    S(dispatcher_ca_file, "dispatcher.ca_file", "", 0,
      "PEM CA bundle that https:// targets' certificates are verified against (\"\" = the "
      "system's, /etc/ssl/certs)"),
    S(dispatcher_id, "dispatcher.id", "", 0,
      "this dispatcher's lease owner id (\"\" = <hostname>-<pid>)"),
    S(dispatcher_advertise, "dispatcher.advertise", "", 0,
      "with leases: the control endpoint at which the admin reaches this replica, announced "
      "in the store's lease table (\"\" = dispatcher.control, with a wildcard host such as "
      "0.0.0.0 replaced by this host's name)"),
    I(dispatcher_lease_ttl_ms, "dispatcher.lease_ttl_ms", 0, 0, 600000, 0,
      "share targets between dispatcher replicas through leases of this TTL (0 = off)"),
    S(admin_listen, "admin.listen", "127.0.0.1:8080", 0, "admin HTTP address host:port"),
    /* admin API auth and TLS (services/admin/adm_auth.h) */
    S(admin_tokens_file, "admin.tokens_file", "", 0,
      "bearer tokens, one a line: TOKEN (admin) or read:TOKEN; \"\" = <data_dir>/admin.token"),
    S(admin_read_token, "admin.read_token", "", 0, "bearer token with the read scope"),
    S(admin_admin_token, "admin.admin_token", "", 0, "bearer token with the admin scope"),
    B(admin_open_probes, "admin.open_probes", 1, 0,
      "/livez, /readyz, /metrics and the status page answer without a token"),
    I(admin_request_timeout_s, "admin.request_timeout_s", 30, 1, 3600, 0,
      "an HTTP request's headers and body must arrive within this many seconds of the "
      "connection (or of its previous request's answer), however slowly they trickle in, "
      "else the connection is closed"),
    I(admin_stats_wait_ms, "admin.stats_wait_ms", 2000, 100, 60000, 0,
      "/metrics, /readyz and the status page wait this long at most for the daemons' answers "
      "(and the store's state); one that has not answered by then is shown down"),
    S(admin_tls_cert, "admin.tls_cert", "", 0, "PEM certificate: serve HTTPS (with tls_key)"),
    S(admin_tls_key, "admin.tls_key", "", 0, "PEM private key of admin.tls_cert"),
    L(store_toast_cache_bytes, "store.toast_cache_bytes", 64 * MiB, 0, 1024 * GiB, WH_CF_RUNTIME,
      "per tenant, keep the last values of TOASTed columns in the store up to this many bytes "
      "(oldest written first out), so updates that leave them unchanged are filled after an "
      "ingestor restart (0: none kept)"),
    B(store_schema_prune, "store.schema_prune", 1, WH_CF_RUNTIME,
      "per tenant, drop schema versions no stored event at or above the GC watermark can carry "
      "(never a table's current one; false: keep every version)"),
    S(cpu_scheduling, "cpu_scheduling", "auto", 0,
      "auto (SCHED_BATCH for the ingestor, dispatcher and admin, SCHED_OTHER for the store) | "
      "batch (all four) | normal (SCHED_OTHER for all); INTERNALS \"CPU scheduling\""),
    S(cpu_affinity, "cpu_affinity", "", 0,
      "CPUs the daemon and its threads may run on, a list such as \"1\" or \"0-1,3\" "
      "(\"\": those it was started with); INTERNALS \"CPU placement\""),
};
const size_t wh_config_table_len = WH_ARRAY_LEN(wh_config_table);

/* One lookup costs one pass over the table (a few dozen entries), whatever
 * the file holds: loading is linear in the number of settings. */
const wh_config_entry *wh_config_find(const char *path)
{
    for (size_t i = 0; i < wh_config_table_len; i++)
        if (strcmp(wh_config_table[i].path, path) == 0)
            return &wh_config_table[i];
    return NULL;
}

/* 1 when path is a group of the table ("source" for "source.dsn"). */
static int is_group(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < wh_config_table_len; i++)
        if (strncmp(wh_config_table[i].path, path, n) == 0 && wh_config_table[i].path[n] == '.')
            return 1;
    return 0;
}

/* The members a target group may have. */
/* A target's settings besides its delivery fields (wh_delivery_is_field),
 * in the top-level `targets` list and in a tenant's. */
static const char *const target_fields[] = {"name",
                                            "url",
                                            "secret",
                                            "secrets",
                                            "paused",
                                            "batch_max_events",
                                            "batch_max_bytes",
                                            "retry_base_ms",
                                            "retry_max_ms",
                                            "http_timeout_ms"};

/* name, url and secret are read here; the others (types and values) by
 * wh_state_from_config, which builds the targets of the runtime state. */
static int is_target_field(const char *name)
{
    for (size_t i = 0; i < WH_ARRAY_LEN(target_fields); i++)
        if (strcmp(name, target_fields[i]) == 0)
            return 1;
    return wh_delivery_is_field(name);
}

static int is_target_own_field(const char *name)
{
    return strcmp(name, "name") == 0 || strcmp(name, "url") == 0 || strcmp(name, "secret") == 0;
}

/* "targets[<k>].<field>" with a known field. */
static int is_target_field_path(const char *path)
{
    if (strncmp(path, "targets[", 8) != 0)
        return 0;
    const char *p = path + 8;
    if (!isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    return p[0] == ']' && p[1] == '.' && is_target_field(p + 2);
}

static int unknown_setting(char *err, size_t errlen, const char *path, int line)
{
    return wh_seterr(err, errlen, "unknown setting '%s' (line %d)", path, line);
}

void wh_config_defaults(wh_config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        char *p = (char *)c + e->offset;
        switch (e->type) {
        case WH_CT_STRING:
            wh_strlcpy(p, e->def_str, e->size);
            break;
        case WH_CT_INT:
        case WH_CT_BOOL:
            *(int *)p = (int)e->def_int;
            break;
        case WH_CT_INT64:
            *(int64_t *)p = e->def_int;
            break;
        }
    }
}

static int set_int(const wh_config_entry *e, wh_config *c, int64_t v, char *err, size_t errlen)
{
    if (v < e->min || v > e->max)
        return wh_seterr(err, errlen,
                         "setting '%s': %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                         e->path, v, e->min, e->max);
    char *p = (char *)c + e->offset;
    if (e->type == WH_CT_INT64)
        *(int64_t *)p = v;
    else
        *(int *)p = (int)v;
    return WH_OK;
}

static int set_string(const wh_config_entry *e, wh_config *c, const char *v, char *err,
                      size_t errlen)
{
    if (wh_strlcpy((char *)c + e->offset, v, e->size) != WH_OK)
        return wh_seterr(err, errlen, "setting '%s': value too long (max %zu bytes)", e->path,
                         e->size - 1);
    return WH_OK;
}

/* Parses an integer with an optional K/M/G suffix (powers of 1024). */
static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s)
        return WH_ERR;
    int64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = KiB, end++;
    else if (*end == 'M' || *end == 'm')
        mul = MiB, end++;
    else if (*end == 'G' || *end == 'g')
        mul = GiB, end++;
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end != '\0')
        return WH_ERR;
    if (mul > 1 && (v > INT64_MAX / mul || v < INT64_MIN / mul))
        return WH_ERR;
    *out = (int64_t)v * mul;
    return WH_OK;
}

int wh_config_set(wh_config *c, const char *path, const char *value, char *err, size_t errlen)
{
    if (strcmp(path, "targets") == 0)
        return wh_config_set_targets(c, value, err, errlen);
    const wh_config_entry *e = wh_config_find(path);
    if (e == NULL)
        return wh_seterr(err, errlen, "unknown setting '%s'", path);
    int64_t v;
    switch (e->type) {
    case WH_CT_STRING:
        return set_string(e, c, value, err, errlen);
    case WH_CT_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes") ||
            !strcmp(value, "on"))
            v = 1;
        else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no") ||
                 !strcmp(value, "off"))
            v = 0;
        else
            return wh_seterr(err, errlen, "setting '%s': expected a boolean, got '%s'", path,
                             value);
        return set_int(e, c, v, err, errlen);
    case WH_CT_INT:
    case WH_CT_INT64:
        if (parse_int(value, &v) != WH_OK)
            return wh_seterr(err, errlen, "setting '%s': expected an integer, got '%s'", path,
                             value);
        return set_int(e, c, v, err, errlen);
    }
    return WH_ERR;
}

static int valid_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

/* ---- replication origins (source.skip_origins) ------------------------- */

/* The next item of a comma-separated list at *p: [*s, *s + *n) without the
 * whitespace around it; *p moves past the comma. 0 at the end. */
static int origin_item(const char **p, const char **s, size_t *n)
{
    const char *q = *p;
    if (q == NULL)
        return 0;
    const char *comma = strchr(q, ',');
    const char *end = comma ? comma : q + strlen(q);
    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    const char *e = end;
    while (e > q && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *s = q;
    *n = (size_t)(e - q);
    *p = comma ? comma + 1 : NULL;
    return 1;
}

int wh_origins_check(const char *list, char *err, size_t errlen)
{
    const char *p = list, *s;
    size_t n;
    for (const char *q = list; *q; q++)
        if ((unsigned char)*q < 0x20 && *q != '\t')
            return wh_seterr(err, errlen, "byte %zu is a control character", (size_t)(q - list));
    if (list[strspn(list, " \t")] == '\0')
        return WH_OK; /* "" or blanks: no origin skipped */
    for (int k = 1; origin_item(&p, &s, &n); k++) {
        if (n == 0)
            return wh_seterr(err, errlen,
                             "item %d is empty (a list of origin "
                             "names separated by ',', or \"*\" for every origin)",
                             k);
        if (n > WH_ORIGIN_NAME_MAX)
            return wh_seterr(err, errlen, "item %d is longer than %d bytes", k, WH_ORIGIN_NAME_MAX);
    }
    return WH_OK;
}

int wh_origins_match(const char *list, const char *name)
{
    const char *p = list, *s;
    size_t n, len = strlen(name);
    while (origin_item(&p, &s, &n))
        if ((n == 1 && s[0] == '*') || (n == len && n > 0 && memcmp(s, name, n) == 0))
            return 1;
    return 0;
}

/* ---- targets ---------------------------------------------------------- */

int wh_secret_decode(const char *secret, unsigned char *key, size_t *keylen, char *err,
                     size_t errlen)
{
    *keylen = 0;
    if (secret == NULL || secret[0] == '\0')
        return WH_OK;
    const char *p = secret;
    if (strncmp(p, "whsec_", 6) == 0)
        p += 6;
    size_t n = strlen(p);
    if (n == 0)
        return wh_seterr(err, errlen, "secret: empty after the whsec_ prefix");
    /* the message never quotes the secret */
    wh_buf b;
    wh_buf_init(&b, n);
    int rc = WH_OK;
    if (n % 4 == 1 || wh_base64_decode(&b, p, n) != WH_OK)
        rc = wh_seterr(err, errlen,
                       "secret: not whsec_ followed by standard base64 (A-Z a-z 0-9 + / and = "
                       "padding)");
    else if (b.len < WH_SECRET_MIN_BYTES || b.len > WH_SECRET_MAX_BYTES)
        rc = wh_seterr(err, errlen,
                       "secret: decodes to %zu bytes; a Standard Webhooks secret has %d to %d",
                       b.len, WH_SECRET_MIN_BYTES, WH_SECRET_MAX_BYTES);
    if (rc == WH_OK) {
        memcpy(key, b.data, b.len);
        *keylen = b.len;
    }
    wh_buf_free(&b);
    return rc;
}

static int host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* http(s)://[userinfo@]host[:port][/path][?query][#fragment], printable
 * ASCII without spaces, a host name or an IP address, port 1..65535. */
static int check_url(const char *url, char *err, size_t errlen)
{
    if (url[0] == '\0')
        return wh_seterr(err, errlen, "url: missing");
    for (const char *p = url; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f)
            return wh_seterr(err, errlen,
                             "url: byte %zu is a control character, a space or not ASCII "
                             "(percent-encode it)",
                             (size_t)(p - url));
    }
    const char *a;
    if (strncmp(url, "http://", 7) == 0)
        a = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        a = url + 8;
    else
        return wh_seterr(err, errlen, "url: must start with http:// or https://");
    size_t alen = strcspn(a, "/?#");
    const char *at = NULL;
    for (const char *p = a; p < a + alen; p++)
        if (*p == '@')
            at = p;
    const char *h = at ? at + 1 : a, *end = a + alen, *port = NULL;
    if (h < end && *h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (rb == NULL || rb == h + 1)
            return wh_seterr(err, errlen, "url: bad IPv6 address (want [addr])");
        for (const char *p = h + 1; p < rb; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return wh_seterr(err, errlen, "url: bad IPv6 address (want [addr])");
        if (rb + 1 < end && rb[1] != ':')
            return wh_seterr(err, errlen, "url: unexpected text after the IPv6 address");
        port = rb + 1 < end ? rb + 2 : NULL;
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        const char *hend = colon ? colon : end;
        if (hend == h)
            return wh_seterr(err, errlen, "url: no host");
        for (const char *p = h; p < hend; p++)
            if (!host_char(*p))
                return wh_seterr(err, errlen,
                                 "url: the host may hold letters, digits, '-', '.' and '_' only");
        port = colon ? colon + 1 : NULL;
    }
    if (port != NULL) {
        long v = 0;
        const char *p = port;
        for (; p < end && isdigit((unsigned char)*p) && v <= 65535; p++)
            v = v * 10 + (*p - '0');
        if (p == port || p != end || v < 1 || v > 65535)
            return wh_seterr(err, errlen, "url: the port must be a number from 1 to 65535");
    }
    return WH_OK;
}

int wh_target_check(const wh_target *t, char *err, size_t errlen)
{
    if (memchr(t->name, '\0', sizeof(t->name)) == NULL || !valid_name(t->name))
        return wh_seterr(err, errlen, "name: must be 1 to %d letters, digits, '_', '-' or '.'",
                         WH_NAME_MAX - 1);
    if (memchr(t->url, '\0', sizeof(t->url)) == NULL)
        return wh_seterr(err, errlen, "url: longer than %d bytes", WH_URL_MAX - 1);
    if (check_url(t->url, err, errlen) != WH_OK)
        return WH_ERR;
    unsigned char key[WH_SECRET_MAX_BYTES];
    size_t klen;
    if (memchr(t->secret, '\0', sizeof(t->secret)) == NULL)
        return wh_seterr(err, errlen, "secret: too long");
    return wh_secret_decode(t->secret, key, &klen, err, errlen);
}

int wh_target_validate(const wh_target *t, char *err, size_t errlen)
{
    char sub[WH_ERRLEN];
    if (wh_target_check(t, sub, sizeof(sub)) == WH_OK)
        return WH_OK;
    if (strncmp(sub, "name:", 5) == 0)
        return wh_seterr(err, errlen, "%s", sub);
    return wh_seterr(err, errlen, "target '%s' %s", t->name, sub);
}

/* The index of an earlier target named like targets[i], or -1. */
static int earlier_same_name(const wh_config *c, int i)
{
    for (int j = 0; j < i; j++)
        if (strcmp(c->targets[j].name, c->targets[i].name) == 0)
            return j;
    return -1;
}

/* Every target valid, names unique. */
static int validate_targets(const wh_config *c, char *err, size_t errlen)
{
    char sub[WH_ERRLEN];
    for (int i = 0; i < c->ntargets; i++) {
        if (wh_target_validate(&c->targets[i], sub, sizeof(sub)) != WH_OK)
            return wh_seterr(err, errlen, "targets[%d]: %s", i, sub);
        int j = earlier_same_name(c, i);
        if (j >= 0)
            return wh_seterr(err, errlen, "targets[%d]: duplicate name '%s' (as targets[%d])", i,
                             c->targets[i].name, j);
    }
    return WH_OK;
}

/* Appends a target; `line` > 0 is its line in the file (for messages). Each
 * target is checked as it comes, so the first bad one is the one named. */
static int add_target(wh_config *c, const char *name, const char *url, const char *secret, int line,
                      char *err, size_t errlen)
{
    char where[48];
    if (line > 0)
        snprintf(where, sizeof(where), "targets[%d] (line %d)", c->ntargets, line);
    else
        snprintf(where, sizeof(where), "targets[%d]", c->ntargets);
    if (c->ntargets >= WH_MAX_TARGETS)
        return wh_seterr(err, errlen, "%s: more than %d targets", where, WH_MAX_TARGETS);
    wh_target *t = &c->targets[c->ntargets];
    memset(t, 0, sizeof(*t));
    if (name == NULL || *name == '\0')
        snprintf(t->name, sizeof(t->name), "t%d", c->ntargets);
    else if (wh_strlcpy(t->name, name, sizeof(t->name)) != WH_OK)
        return wh_seterr(err, errlen, "%s: name: longer than %d bytes", where, WH_NAME_MAX - 1);
    if (wh_strlcpy(t->url, url ? url : "", sizeof(t->url)) != WH_OK)
        return wh_seterr(err, errlen, "%s: url: longer than %d bytes", where, WH_URL_MAX - 1);
    if (secret != NULL && wh_strlcpy(t->secret, secret, sizeof(t->secret)) != WH_OK)
        return wh_seterr(err, errlen, "%s: secret: too long", where);
    char sub[WH_ERRLEN];
    if (wh_target_validate(t, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "%s: %s", where, sub);
    int j = earlier_same_name(c, c->ntargets);
    if (j >= 0)
        return wh_seterr(err, errlen, "%s: duplicate name '%s' (as targets[%d])", where, t->name,
                         j);
    c->ntargets++;
    return WH_OK;
}

int wh_config_set_targets(wh_config *c, const char *list, char *err, size_t errlen)
{
    c->ntargets = 0;
    char *copy = strdup(list);
    if (copy == NULL)
        return wh_seterr(err, errlen, "out of memory");
    int rc = WH_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        if (*tok == '\0')
            continue;
        char *eq = strchr(tok, '=');
        char *sch = strstr(tok, "://");
        const char *name = NULL, *url = tok;
        if (eq != NULL && (sch == NULL || eq < sch)) {
            *eq = '\0';
            name = tok;
            url = eq + 1;
        }
        if ((rc = add_target(c, name, url, NULL, 0, err, errlen)) != WH_OK)
            break;
    }
    free(copy);
    return rc;
}

/* Walks one libconfig group, applying every known setting and rejecting
 * unknown ones and wrong types. */
static int load_group(wh_config *c, config_setting_t *group, const char *prefix, char *err,
                      size_t errlen)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        char path[256];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", name ? name : "?");
        int type = config_setting_type(s);
        if (*prefix == '\0' && name != NULL && strcmp(name, "targets") == 0) {
            if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY)
                return wh_seterr(err, errlen,
                                 "setting 'targets' (line %d): expected a list ( {...}, ... )",
                                 config_setting_source_line(s));
            c->ntargets = 0;
            int nt = config_setting_length(s);
            for (int k = 0; k < nt; k++) {
                config_setting_t *t = config_setting_get_elem(s, (unsigned)k);
                if (config_setting_type(t) != CONFIG_TYPE_GROUP)
                    return wh_seterr(
                        err, errlen,
                        "targets[%d] (line %d): expected a group { name = ...; url = ...; }", k,
                        config_setting_source_line(t));
                const char *tname = NULL, *turl = NULL, *tsecret = NULL;
                int nm = config_setting_length(t);
                for (int m = 0; m < nm; m++) {
                    config_setting_t *f = config_setting_get_elem(t, (unsigned)m);
                    const char *fn = config_setting_name(f);
                    if (!is_target_field(fn)) {
                        char tpath[256];
                        snprintf(tpath, sizeof(tpath), "targets[%d].%s", k, fn);
                        return unknown_setting(err, errlen, tpath, config_setting_source_line(f));
                    }
                    if (!is_target_own_field(fn))
                        continue;
                    if (config_setting_type(f) != CONFIG_TYPE_STRING)
                        return wh_seterr(err, errlen, "targets[%d].%s (line %d): expected a string",
                                         k, fn, config_setting_source_line(f));
                    if (strcmp(fn, "name") == 0)
                        tname = config_setting_get_string(f);
                    else if (strcmp(fn, "url") == 0)
                        turl = config_setting_get_string(f);
                    else
                        tsecret = config_setting_get_string(f);
                }
                if (add_target(c, tname, turl, tsecret, config_setting_source_line(t), err,
                               errlen) != WH_OK)
                    return WH_ERR;
            }
            continue;
        }
        if (*prefix == '\0' && name != NULL && strcmp(name, "tenants") == 0) {
            /* read by wh_state_from_config (common/wh_state.c) */
            if (type != CONFIG_TYPE_LIST)
                return wh_seterr(err, errlen,
                                 "setting 'tenants' (line %d): expected a list ( {...}, ... )",
                                 config_setting_source_line(s));
            continue;
        }
        const wh_config_entry *e = wh_config_find(path);
        if (e == NULL && type == CONFIG_TYPE_GROUP && is_group(path)) {
            if (load_group(c, s, path, err, errlen) != WH_OK)
                return WH_ERR;
            continue;
        }
        if (e == NULL)
            return unknown_setting(err, errlen, path, config_setting_source_line(s));
        int line = config_setting_source_line(s);
        char sub[WH_ERRLEN];
        switch (e->type) {
        case WH_CT_STRING:
            if (type != CONFIG_TYPE_STRING)
                return wh_seterr(err, errlen, "setting '%s' (line %d): expected a string", path,
                                 line);
            if (set_string(e, c, config_setting_get_string(s), sub, sizeof(sub)) != WH_OK)
                return wh_seterr(err, errlen, "%s (line %d)", sub, line);
            break;
        case WH_CT_BOOL:
            if (type != CONFIG_TYPE_BOOL)
                return wh_seterr(err, errlen, "setting '%s' (line %d): expected true or false",
                                 path, line);
            *(int *)((char *)c + e->offset) = config_setting_get_bool(s);
            break;
        case WH_CT_INT:
        case WH_CT_INT64:
            if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
                return wh_seterr(err, errlen, "setting '%s' (line %d): expected an integer", path,
                                 line);
            if (set_int(e, c, config_setting_get_int64(s), sub, sizeof(sub)) != WH_OK)
                return wh_seterr(err, errlen, "%s (line %d)", sub, line);
            break;
        }
    }
    return WH_OK;
}

/* Reads the whole file (at most WH_CONFIG_FILE_MAX bytes) into *out. */
static int read_text(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return wh_seterr(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
    wh_buf b;
    wh_buf_init(&b, WH_CONFIG_FILE_MAX);
    char chunk[8192];
    size_t n;
    int rc = WH_OK;
    while (rc == WH_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (wh_buf_append(&b, chunk, n) != WH_OK)
            rc = wh_seterr(err, errlen, "config file %s: larger than %d bytes", path,
                           WH_CONFIG_FILE_MAX);
    if (rc == WH_OK && ferror(f))
        rc = wh_seterr(err, errlen, "cannot read config file %s: read error", path);
    fclose(f);
    if (rc == WH_OK && wh_buf_cstr(&b) != WH_OK)
        rc = wh_seterr(err, errlen, "out of memory reading %s", path);
    if (rc != WH_OK) {
        wh_buf_free(&b);
        return WH_ERR;
    }
    *out = b.data;
    *outlen = b.len;
    return WH_OK;
}

/* Skips "[<digits>]" at *p; 1 when it was there. */
static int skip_index(const char **p)
{
    const char *q = *p;
    if (*q != '[' || !isdigit((unsigned char)q[1]))
        return 0;
    for (q++; isdigit((unsigned char)*q); q++)
        ;
    if (*q != ']')
        return 0;
    *p = q + 1;
    return 1;
}

/* The file's `tenants` list is read by wh_state_from_config, which names any
 * unknown member itself; the scan only needs to stop at one early, so that a
 * tenant group of many unknown names never reaches libconfig's quadratic
 * parser. rest follows "tenants". */
static int scan_tenants_path(const char *rest)
{
    static const char *const source_fields[] = {"dsn", "slot", "publication", "tables",
                                                "create_slot"};
    const char *p = rest;
    if (*p == '\0')
        return WH_CFGSCAN_DESCEND;
    if (!skip_index(&p))
        return WH_CFGSCAN_STOP;
    if (*p == '\0')
        return WH_CFGSCAN_DESCEND;
    if (strcmp(p, ".name") == 0)
        return WH_CFGSCAN_SKIP;
    if (strcmp(p, ".source") == 0 || strcmp(p, ".targets") == 0)
        return WH_CFGSCAN_DESCEND;
    if (strncmp(p, ".source.", 8) == 0) {
        for (size_t i = 0; i < WH_ARRAY_LEN(source_fields); i++)
            if (strcmp(p + 8, source_fields[i]) == 0)
                return WH_CFGSCAN_SKIP;
        return wh_slotcfg_key(p + 8) >= 0 ? WH_CFGSCAN_SKIP : WH_CFGSCAN_STOP;
    }
    if (strncmp(p, ".targets", 8) != 0)
        return WH_CFGSCAN_STOP;
    p += 8;
    if (!skip_index(&p))
        return WH_CFGSCAN_STOP;
    if (*p == '\0')
        return WH_CFGSCAN_DESCEND;
    if (*p++ != '.')
        return WH_CFGSCAN_STOP;
    return is_target_field(p) ? WH_CFGSCAN_SKIP : WH_CFGSCAN_STOP;
}

typedef struct scan_check {
    char *err;
    size_t errlen;
} scan_check;

/* wh_cfgscan_fn: stops at the first setting the table does not know. */
static int scan_setting(void *arg, const char *path, int line)
{
    scan_check *sc = arg;
    if (strcmp(path, "targets") == 0 || is_group(path))
        return WH_CFGSCAN_DESCEND;
    int next = WH_CFGSCAN_STOP;
    if (strncmp(path, "tenants", 7) == 0 && (path[7] == '\0' || path[7] == '['))
        next = scan_tenants_path(path + 7);
    if (next != WH_CFGSCAN_STOP)
        return next;
    if (wh_config_find(path) != NULL || is_target_field_path(path))
        return WH_CFGSCAN_SKIP;
    unknown_setting(sc->err, sc->errlen, path, line);
    return WH_CFGSCAN_STOP;
}

/* The file is walked once with wh_cfgscan before libconfig parses it, so a
 * file of many unknown settings is refused at the first one in linear time
 * (libconfig 1.5's parser is quadratic in the size of a group). */
static int load_file(wh_config *c, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (read_text(path, &text, &len, err, errlen) != WH_OK)
        return WH_ERR;
    char sub[WH_ERRLEN];
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        free(text);
        return wh_seterr(err, errlen, "config file %s line %d: NUL byte", path, line);
    }
    scan_check sc = {sub, sizeof(sub)};
    if (wh_cfgscan(text, len, scan_setting, &sc)) {
        free(text);
        return wh_seterr(err, errlen, "config file %s: %s", path, sub);
    }
    config_t cf;
    config_init(&cf);
    int rc = WH_OK;
    if (config_read_string(&cf, text) != CONFIG_TRUE) {
        rc = wh_seterr(err, errlen, "config file %s line %d: %s", path, config_error_line(&cf),
                       config_error_text(&cf));
    } else if (load_group(c, config_root_setting(&cf), "", sub, sizeof(sub)) != WH_OK) {
        rc = wh_seterr(err, errlen, "config file %s: %s", path, sub);
    }
    config_destroy(&cf);
    free(text);
    return rc;
}

int wh_config_apply_env(wh_config *c, char *err, size_t errlen)
{
    char sub[WH_ERRLEN];
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        char env[128] = "WALHOOK_";
        size_t k = strlen(env);
        for (const char *p = e->path; *p && k + 1 < sizeof(env); p++)
            env[k++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v == NULL)
            continue;
        if (wh_config_set(c, e->path, v, sub, sizeof(sub)) != WH_OK)
            return wh_seterr(err, errlen, "environment %s: %s", env, sub);
    }
    const char *t = getenv("WALHOOK_TARGETS");
    if (t != NULL && wh_config_set_targets(c, t, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "environment WALHOOK_TARGETS: %s", sub);
    return WH_OK;
}

static int derive_endpoint(char *dst, size_t len, const char *dir, const char *name)
{
    int n = snprintf(dst, len, "ipc://%s/%s", dir, name);
    return (n < 0 || (size_t)n >= len) ? WH_ERR : WH_OK;
}

static int check_endpoint(const char *key, const char *url, char *err, size_t errlen)
{
    if (!wh_endpoint_scheme_ok(url))
        return wh_seterr(err, errlen,
                         "setting '%s': '%s' must start with ipc://, tcp:// or tls+tcp://", key,
                         url);
    if (strncmp(url, "ipc://", 6) == 0 && strlen(url + 6) >= 108)
        return wh_seterr(
            err, errlen,
            "setting '%s': ipc path longer than 107 bytes (a Unix socket limit); use a "
            "shorter data_dir",
            key);
    return WH_OK;
}

typedef struct ipc_endpoint {
    const char *v;
    const char *key;
    const char *risk; /* what whoever connects gets */
} ipc_endpoint;

#define WH_IPC_NENDPOINTS 5

/* Every IPC endpoint of the configuration: what each daemon listens on or
 * dials (store.notify_endpoint and dispatcher.advertise may be ""). */
static void ipc_endpoints(const wh_config *c, ipc_endpoint eps[WH_IPC_NENDPOINTS])
{
    static const char store[] = "reads every secret of the runtime state and rewrites it";
    static const char notify[] = "reads the row data the notifications carry";
    static const char control[] = "reads its Stats or impersonates the daemon";
    eps[0] = (ipc_endpoint){c->store_endpoint, "store.endpoint", store};
    eps[1] = (ipc_endpoint){c->store_notify_endpoint, "store.notify_endpoint", notify};
    eps[2] = (ipc_endpoint){c->ingestor_control, "ingestor.control", control};
    eps[3] = (ipc_endpoint){c->dispatcher_control, "dispatcher.control", control};
    eps[4] = (ipc_endpoint){c->dispatcher_advertise, "dispatcher.advertise", control};
}

/* Plain tcp:// beyond the loopback: refused unless ipc.allow_plaintext_tcp.
 * The store answers GetState (every secret in clear) and PutState to
 * whoever connects, and a plain tcp:// link cannot tell who that is. */
static int check_plaintext(const wh_config *c, char *err, size_t errlen)
{
    if (c->ipc_allow_plaintext_tcp)
        return WH_OK;
    ipc_endpoint eps[WH_IPC_NENDPOINTS];
    ipc_endpoints(c, eps);
    for (size_t i = 0; i < WH_IPC_NENDPOINTS; i++)
        if (wh_endpoint_plain_beyond_loopback(eps[i].v))
            return wh_seterr(
                err, errlen,
                "setting '%s': '%.160s' is plain tcp:// beyond the loopback (no "
                "authentication, no encryption: whoever connects %s); use tls+tcp:// (mutual "
                "TLS, ipc.tls_*) or ipc:// on a volume the daemons share, or set "
                "ipc.allow_plaintext_tcp = true to accept an unauthenticated network",
                eps[i].key, eps[i].v, eps[i].risk);
    return WH_OK;
}

int wh_config_plaintext_endpoints(const wh_config *c, int loopback, char *out, size_t len)
{
    ipc_endpoint eps[WH_IPC_NENDPOINTS];
    ipc_endpoints(c, eps);
    int n = 0;
    if (len > 0)
        out[0] = '\0';
    for (size_t i = 0; i < WH_IPC_NENDPOINTS; i++) {
        int plain = strncmp(eps[i].v, "tcp://", 6) == 0;
        if (!plain || wh_endpoint_plain_beyond_loopback(eps[i].v) == loopback)
            continue;
        size_t used = strlen(out);
        if (used < len)
            snprintf(out + used, len - used, "%s%s %s", n ? ", " : "", eps[i].key, eps[i].v);
        n++;
    }
    return n;
}

int wh_config_validate(wh_config *c, char *err, size_t errlen)
{
    if (!valid_name(c->tenant) || strchr(c->tenant, ':') != NULL)
        return wh_seterr(err, errlen,
                         "setting 'tenant': '%s' must be letters, digits, '_', '-', '.'",
                         c->tenant);
    if (c->data_dir[0] == '\0')
        return wh_seterr(err, errlen, "setting 'data_dir': must not be empty");
    if (wh_log_level_parse(c->log_level) < 0)
        return wh_seterr(err, errlen, "setting 'log_level': '%s' is not debug, info, warn or error",
                         c->log_level);
    if (wh_log_format_parse(c->log_format) < 0)
        return wh_seterr(err, errlen, "setting 'log_format': '%s' is not text or json",
                         c->log_format);
    if (strcmp(c->cpu_scheduling, "auto") != 0 && strcmp(c->cpu_scheduling, "batch") != 0 &&
        strcmp(c->cpu_scheduling, "normal") != 0)
        return wh_seterr(err, errlen, "setting 'cpu_scheduling': '%s' is not auto, batch or normal",
                         c->cpu_scheduling);
    if (c->cpu_affinity[0] != '\0') {
        char sub[WH_ERRLEN];
        cpu_set_t set;
        if (wh_cpulist_parse(c->cpu_affinity, &set, sub, sizeof(sub)) != WH_OK)
            return wh_seterr(err, errlen, "setting 'cpu_affinity': '%s': %s", c->cpu_affinity, sub);
    }
    if (c->source_dsn[0] != '\0') {
        char sub[WH_ERRLEN];
        if (wh_dsn_check(c->source_dsn, sub, sizeof(sub)) != WH_OK)
            return wh_seterr(err, errlen, "setting 'source.dsn': invalid connection string: %s",
                             sub);
    }
    if (!valid_name(c->slot))
        return wh_seterr(err, errlen, "setting 'source.slot': '%s' is not a valid name", c->slot);
    for (const char *p = c->slot; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return wh_seterr(err, errlen,
                             "setting 'source.slot': '%s' may contain only lower case letters, "
                             "digits and '_'",
                             c->slot);
    if (!valid_name(c->publication))
        return wh_seterr(err, errlen, "setting 'source.publication': '%s' is not a valid name",
                         c->publication);
    if (strcmp(c->snapshot, "never") != 0 && strcmp(c->snapshot, "initial") != 0)
        return wh_seterr(err, errlen, "setting 'source.snapshot': '%s' is not never or initial",
                         c->snapshot);
    if (strcmp(c->slot_policy, "independent") != 0 && strcmp(c->slot_policy, "track") != 0)
        return wh_seterr(err, errlen,
                         "setting 'source.slot_policy': '%s' is not independent or track",
                         c->slot_policy);
    if (strcmp(c->lag_warn_action, "independent") != 0 && strcmp(c->lag_warn_action, "none") != 0)
        return wh_seterr(err, errlen,
                         "setting 'source.lag_warn_action': '%s' is not independent or none",
                         c->lag_warn_action);
    if (strcmp(c->lag_max_action, "independent") != 0 &&
        strcmp(c->lag_max_action, "force_resync") != 0 && strcmp(c->lag_max_action, "none") != 0)
        return wh_seterr(err, errlen,
                         "setting 'source.lag_max_action': '%s' is not independent, "
                         "force_resync or none",
                         c->lag_max_action);
    if (c->lag_warn_bytes > 0 && c->lag_max_bytes > 0 && c->lag_max_bytes <= c->lag_warn_bytes)
        return wh_seterr(err, errlen,
                         "setting 'source.lag_max_bytes': %lld must be above "
                         "source.lag_warn_bytes (%lld)",
                         (long long)c->lag_max_bytes, (long long)c->lag_warn_bytes);
    char osub[WH_ERRLEN];
    if (wh_origins_check(c->skip_origins, osub, sizeof(osub)) != WH_OK)
        return wh_seterr(err, errlen, "setting 'source.skip_origins': %s", osub);
    struct {
        char *v;
        const char *key;
        const char *file;
    } eps[] = {
        {c->store_endpoint, "store.endpoint", "store.sock"},
        {c->ingestor_control, "ingestor.control", "ingestor.sock"},
        {c->dispatcher_control, "dispatcher.control", "dispatcher.sock"},
    };
    c->dispatcher_control_derived = c->dispatcher_control[0] == '\0';
    if (c->dispatcher_advertise[0] != '\0' &&
        check_endpoint("dispatcher.advertise", c->dispatcher_advertise, err, errlen) != WH_OK)
        return WH_ERR;
    if (!wh_str_visible(c->dispatcher_advertise)) /* as the store requires */
        return wh_seterr(err, errlen,
                         "setting 'dispatcher.advertise': '%s' may contain only printable ASCII "
                         "without spaces",
                         c->dispatcher_advertise);
    for (size_t i = 0; i < WH_ARRAY_LEN(eps); i++) {
        if (eps[i].v[0] == '\0' &&
            derive_endpoint(eps[i].v, WH_URL_MAX, c->data_dir, eps[i].file) != WH_OK)
            return wh_seterr(err, errlen, "setting 'data_dir': too long");
        if (check_endpoint(eps[i].key, eps[i].v, err, errlen) != WH_OK)
            return WH_ERR;
        if (strncmp(eps[i].v, "tls+tcp://", 10) == 0 &&
            (!c->ipc_tls_cert[0] || !c->ipc_tls_key[0] || !c->ipc_tls_ca[0]))
            return wh_seterr(err, errlen,
                             "setting '%s': a tls+tcp:// endpoint needs ipc.tls_cert, "
                             "ipc.tls_key and ipc.tls_ca",
                             eps[i].key);
    }
    if (c->store_notify_endpoint[0] != '\0') {
        if (check_endpoint("store.notify_endpoint", c->store_notify_endpoint, err, errlen) != WH_OK)
            return WH_ERR;
        if (strcmp(c->store_notify_endpoint, c->store_endpoint) == 0)
            return wh_seterr(
                err, errlen,
                "setting 'store.notify_endpoint': must differ from store.endpoint (%s)",
                c->store_endpoint);
        if (strncmp(c->store_notify_endpoint, "tls+tcp://", 10) == 0 &&
            (!c->ipc_tls_cert[0] || !c->ipc_tls_key[0] || !c->ipc_tls_ca[0]))
            return wh_seterr(err, errlen,
                             "setting 'store.notify_endpoint': a tls+tcp:// endpoint needs "
                             "ipc.tls_cert, ipc.tls_key and ipc.tls_ca");
    }
    if (check_plaintext(c, err, errlen) != WH_OK)
        return WH_ERR;
    if (strchr(c->admin_listen, ':') == NULL)
        return wh_seterr(err, errlen, "setting 'admin.listen': '%s' must be host:port",
                         c->admin_listen);
    if ((c->admin_tls_cert[0] == '\0') != (c->admin_tls_key[0] == '\0'))
        return wh_seterr(err, errlen, "setting '%s': admin.tls_cert and admin.tls_key go together",
                         c->admin_tls_cert[0] ? "admin.tls_key" : "admin.tls_cert");
    if (c->dispatcher_lease_ttl_ms > 0 && c->dispatcher_lease_ttl_ms < 1000)
        return wh_seterr(err, errlen,
                         "setting 'dispatcher.lease_ttl_ms': %d is below 1000 (0 = off)",
                         c->dispatcher_lease_ttl_ms);
    for (const char *p = c->dispatcher_id; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
            return wh_seterr(err, errlen,
                             "setting 'dispatcher.id': '%s' may contain only letters, digits, "
                             "'-', '_' and '.'",
                             c->dispatcher_id);
    if (c->retry_max_ms < c->retry_base_ms)
        return wh_seterr(
            err, errlen,
            "setting 'dispatcher.retry_max_ms': %d is below dispatcher.retry_base_ms %d",
            c->retry_max_ms, c->retry_base_ms);
    wh_cidr_list cl;
    char csub[WH_ERRLEN];
    if (wh_cidr_list_parse(c->allow_private_networks, &cl, csub, sizeof(csub)) != WH_OK)
        return wh_seterr(err, errlen, "setting 'dispatcher.allow_private_networks': %s", csub);
    if (c->flush_bytes > c->ipc_max_msg_bytes / 2)
        return wh_seterr(err, errlen,
                         "setting 'ingestor.flush_bytes': %" PRId64
                         " must be at most half of ipc.max_msg_bytes (%" PRId64 ")",
                         c->flush_bytes, c->ipc_max_msg_bytes);
    return validate_targets(c, err, errlen);
}

int wh_config_load(wh_config *c, const char *path, char *err, size_t errlen)
{
    wh_config_defaults(c);
    if (path != NULL && load_file(c, path, err, errlen) != WH_OK)
        return WH_ERR;
    if (wh_config_apply_env(c, err, errlen) != WH_OK)
        return WH_ERR;
    return wh_config_validate(c, err, errlen);
}

static int entry_differs(const wh_config_entry *e, const wh_config *a, const wh_config *b)
{
    const char *pa = (const char *)a + e->offset, *pb = (const char *)b + e->offset;
    return e->type == WH_CT_STRING ? strcmp(pa, pb) != 0 : memcmp(pa, pb, e->size) != 0;
}

const char *wh_config_static_diff(const wh_config *a, const wh_config *b)
{
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        if (e->flags & WH_CF_RUNTIME)
            continue;
        if (entry_differs(e, a, b))
            return e->path;
    }
    return NULL;
}

void wh_config_redact_url(const char *url, char *out, size_t len)
{
    char tmp[WH_URL_MAX + 16];
    wh_dsn_redact(url, tmp, sizeof(tmp)); /* hides "user:****@" */
    char *q = strchr(tmp, '?');
    if (q != NULL)
        wh_strlcpy(q, "?****", sizeof(tmp) - (size_t)(q - tmp));
    wh_strlcpy(out, tmp, len);
}

/* ---- files that hold secrets ---- */

typedef struct secret_acc {
    char names[512]; /* "source.dsn (password), targets[0].secret, ..." */
    int n;
} secret_acc;

static void secret_note(secret_acc *a, const char *path, const char *what)
{
    size_t len = strlen(a->names);
    if (a->n < 4)
        snprintf(a->names + len, sizeof(a->names) - len, "%s%s%s", a->n ? ", " : "", path, what);
    else if (a->n == 4)
        snprintf(a->names + len, sizeof(a->names) - len, ", ...");
    a->n++;
}

/* Whether the string v of setting `key` (the member name; a list element
 * has its list's) is a secret, noted under path. */
static void secret_string(secret_acc *a, const char *path, const char *key, const char *v)
{
    static const char *const keys[] = {"secret", "secrets", "admin_token", "read_token",
                                       "password"};
    if (v == NULL || *v == '\0')
        return;
    if (strncmp(v, "whsec_", 6) == 0) {
        secret_note(a, path, "");
        return;
    }
    for (size_t i = 0; key != NULL && i < WH_ARRAY_LEN(keys); i++)
        if (strcmp(key, keys[i]) == 0) {
            secret_note(a, path, "");
            return;
        }
    if (key != NULL && (strcmp(key, "dsn") == 0 || strcmp(key, "url") == 0)) {
        /* a password (URI userinfo, password=, sslpassword=): redaction
         * changes the text */
        char red[WH_URL_MAX + 64];
        wh_dsn_redact(v, red, sizeof(red));
        if (strcmp(red, v) != 0)
            secret_note(a, path, " (a password)");
    }
}

static void secret_walk(secret_acc *a, config_setting_t *s, const char *path, const char *key,
                        int depth)
{
    if (depth > 16)
        return;
    int type = config_setting_type(s);
    if (type == CONFIG_TYPE_STRING) {
        secret_string(a, path, key, config_setting_get_string(s));
        return;
    }
    if (type != CONFIG_TYPE_GROUP && type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY)
        return;
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned int)i);
        if (e == NULL)
            continue;
        const char *name = config_setting_name(e);
        char sub[WH_PATH_MAX];
        if (name != NULL)
            snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", name);
        else
            snprintf(sub, sizeof(sub), "%s[%d]", path, i);
        secret_walk(a, e, sub, name != NULL ? name : key, depth + 1);
    }
}

int wh_config_check_secret_files(const wh_config *c, const char *path, wh_config_warn_fn fn,
                                 void *arg)
{
    char msg[WH_PATH_MAX + 1024];
    int reported = 0;
    struct stat st;
    if (path != NULL && stat(path, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH))) {
        config_t cf;
        config_init(&cf);
        if (config_read_file(&cf, path) == CONFIG_TRUE) {
            secret_acc a = {.n = 0};
            secret_walk(&a, config_root_setting(&cf), "", NULL, 0);
            if (a.n > 0) {
                snprintf(msg, sizeof(msg),
                         "config file %s is readable by %s (mode %04o) and holds secrets (%s): "
                         "chmod 600 it, or give the secrets by environment",
                         path, (st.st_mode & S_IROTH) ? "others" : "its group",
                         (unsigned)(st.st_mode & 07777), a.names);
                fn(arg, msg);
                reported++;
            }
        }
        config_destroy(&cf);
    }
    const struct {
        const char *setting, *file;
    } keys[] = {{"admin.tls_key", c->admin_tls_key}, {"ipc.tls_key", c->ipc_tls_key}};
    for (size_t i = 0; i < WH_ARRAY_LEN(keys); i++) {
        if (keys[i].file[0] == '\0' || stat(keys[i].file, &st) != 0 ||
            !(st.st_mode & (S_IRGRP | S_IROTH)))
            continue;
        snprintf(msg, sizeof(msg), "%s %s is readable by %s (mode %04o): chmod 600 it",
                 keys[i].setting, keys[i].file, (st.st_mode & S_IROTH) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777));
        fn(arg, msg);
        reported++;
    }
    return reported;
}

int wh_config_to_json(const wh_config *c, wh_buf *b)
{
    int rc = wh_buf_putc(b, '{');
    for (size_t i = 0; i < wh_config_table_len && rc == WH_OK; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        const char *p = (const char *)c + e->offset;
        rc |= wh_json_str(b, e->path, strlen(e->path));
        rc |= wh_buf_putc(b, ':');
        if (e->type == WH_CT_STRING) {
            char red[WH_URL_MAX + 16];
            if (strcmp(e->path, "source.dsn") == 0) {
                wh_dsn_redact(p, red, sizeof(red));
                p = red;
            } else if (*p && strstr(e->path, "_token") != NULL) {
                p = "***"; /* admin.read_token, admin.admin_token */
            }
            rc |= wh_json_str(b, p, strlen(p));
        } else if (e->type == WH_CT_BOOL) {
            rc |= wh_buf_puts(b, *(const int *)p ? "true" : "false");
        } else if (e->type == WH_CT_INT) {
            rc |= wh_buf_printf(b, "%d", *(const int *)p);
        } else {
            rc |= wh_buf_printf(b, "%" PRId64, *(const int64_t *)p);
        }
        rc |= wh_buf_putc(b, ',');
    }
    rc |= wh_buf_puts(b, "\"targets\":[");
    for (int i = 0; i < c->ntargets; i++) {
        rc |= wh_buf_printf(b, "%s{\"name\":", i ? "," : "");
        rc |= wh_json_str(b, c->targets[i].name, strlen(c->targets[i].name));
        char url[WH_URL_MAX + 16];
        wh_config_redact_url(c->targets[i].url, url, sizeof(url));
        rc |= wh_buf_puts(b, ",\"url\":");
        rc |= wh_json_str(b, url, strlen(url));
        rc |= wh_buf_printf(b, ",\"signed\":%s}", c->targets[i].secret[0] ? "true" : "false");
    }
    rc |= wh_buf_puts(b, "]}");
    return rc == WH_OK ? WH_OK : WH_ERR;
}

/* ---- runtime apply hooks ---- */

#define WH_MAX_HOOKS 64

typedef struct hook {
    const wh_config_entry *e;
    wh_config_apply_fn fn;
    void *arg;
} hook;

static pthread_mutex_t hooks_mu = PTHREAD_MUTEX_INITIALIZER;
static hook hooks[WH_MAX_HOOKS];
static int nhooks;

int wh_config_hook(const char *path, wh_config_apply_fn fn, void *arg, char *err, size_t errlen)
{
    const wh_config_entry *e = wh_config_find(path);
    if (e == NULL)
        return wh_seterr(err, errlen, "hook: unknown setting '%s'", path);
    if (!(e->flags & WH_CF_RUNTIME))
        return wh_seterr(err, errlen, "hook: setting '%s' is not changeable at runtime", path);
    if (fn == NULL)
        return wh_seterr(err, errlen, "hook: '%s': no function", path);
    pthread_mutex_lock(&hooks_mu);
    int rc = WH_OK;
    if (nhooks >= WH_MAX_HOOKS)
        rc = wh_seterr(err, errlen, "hook: more than %d hooks", WH_MAX_HOOKS);
    else
        hooks[nhooks++] = (hook){e, fn, arg};
    pthread_mutex_unlock(&hooks_mu);
    return rc;
}

void wh_config_apply_hooks(const wh_config *old, const wh_config *cur)
{
    if (strcmp(old->log_level, cur->log_level) != 0) {
        int lvl = wh_log_level_parse(cur->log_level);
        if (lvl >= 0) {
            wh_log_set_level(lvl);
            wh_info("log_level is now %s", cur->log_level);
        }
    }
    if (strcmp(old->log_format, cur->log_format) != 0) {
        int f = wh_log_format_parse(cur->log_format);
        if (f >= 0) {
            wh_log_set_format(f);
            wh_info("log_format is now %s", cur->log_format);
        }
    }
    /* copy under the lock, call outside it: a hook may register another */
    hook hs[WH_MAX_HOOKS];
    pthread_mutex_lock(&hooks_mu);
    int n = nhooks;
    memcpy(hs, hooks, (size_t)n * sizeof(hook));
    pthread_mutex_unlock(&hooks_mu);
    for (int i = 0; i < n; i++)
        if (entry_differs(hs[i].e, old, cur))
            hs[i].fn(hs[i].arg, cur);
}

const char *wh_config_parse_args(int argc, char **argv, const char *prog)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [-c walhook.conf]\n"
                   "Settings: defaults < config file < WALHOOK_* environment variables.\n",
                   prog);
            exit(0);
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\nusage: %s [-c walhook.conf]\n", prog,
                    argv[i], prog);
            exit(2);
        }
    }
    return path;
}
