/* wh_budget: the memory plans of the daemons and the budget check (see
 * wh_budget.h). */
#include "wh_budget.h"
#include "wh_daemon.h"
#include "wh_ipc.h"
#include "wh_notify.h"
#include "wh_metrics.h"
#include "wh_state.h"
#include "wh_uds.h"
#include "wh_util.h"

#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024LL * 1024LL)

void wh_budget_init(wh_budget *b, const char *daemon)
{
    memset(b, 0, sizeof(*b));
    wh_strlcpy(b->daemon, daemon ? daemon : "", sizeof(b->daemon));
}

void wh_budget_add(wh_budget *b, const char *part, int64_t bytes, const char *how, ...)
{
    if (b->nparts >= WH_BUDGET_MAX_PARTS)
        return;
    wh_budget_part *p = &b->parts[b->nparts++];
    wh_strlcpy(p->name, part, sizeof(p->name));
    p->bytes = bytes > 0 ? bytes : 0;
    va_list ap;
    va_start(ap, how);
    vsnprintf(p->how, sizeof(p->how), how, ap);
    va_end(ap);
}

int64_t wh_budget_sum(const wh_budget *b)
{
    int64_t s = 0;
    for (int i = 0; i < b->nparts; i++)
        s += b->parts[i].bytes;
    return s;
}

int64_t wh_budget_need(const wh_budget *b)
{
    int64_t s = wh_budget_sum(b);
    return s + s / 100 * WH_BUDGET_HEADROOM_PCT + (s % 100) * WH_BUDGET_HEADROOM_PCT / 100;
}

static void mib(char *out, size_t len, int64_t v)
{
    if (v >= MiB)
        snprintf(out, len, "%.1f MiB", (double)v / (double)MiB);
    else
        snprintf(out, len, "%.0f KiB", (double)v / 1024.0);
}

/* part indexes, largest first */
static void by_size(const wh_budget *b, int *idx)
{
    for (int i = 0; i < b->nparts; i++)
        idx[i] = i;
    for (int i = 1; i < b->nparts; i++)
        for (int j = i; j > 0 && b->parts[idx[j]].bytes > b->parts[idx[j - 1]].bytes; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
}

int wh_budget_check(const wh_budget *b, int64_t limit, char *err, size_t errlen)
{
    int64_t need = wh_budget_need(b);
    if (limit < 0 || need <= limit)
        return WH_OK;
    char n[32], s[32], l[32];
    mib(n, sizeof(n), need);
    mib(s, sizeof(s), wh_budget_sum(b));
    mib(l, sizeof(l), limit);
    size_t off = (size_t)snprintf(err, errlen,
                                  "walhook-%s needs %s (%s + %d%% headroom) > "
                                  "memory_budget_bytes %s:",
                                  b->daemon, n, s, WH_BUDGET_HEADROOM_PCT, l);
    int idx[WH_BUDGET_MAX_PARTS];
    by_size(b, idx);
    for (int i = 0; i < b->nparts && off < errlen; i++) {
        const wh_budget_part *p = &b->parts[idx[i]];
        if (p->bytes == 0)
            continue;
        char v[32];
        mib(v, sizeof(v), p->bytes);
        off += (size_t)snprintf(err + off, errlen - off, "%s %s %s", i ? "," : "", p->name, v);
    }
    return WH_ERR;
}

void wh_budget_print(const wh_budget *b, int64_t limit, const char *limit_src, FILE *f)
{
    fprintf(f, "walhook-%s memory plan (one line per part; the fix is the setting named):\n",
            b->daemon);
    for (int i = 0; i < b->nparts; i++) {
        const wh_budget_part *p = &b->parts[i];
        char v[32];
        mib(v, sizeof(v), p->bytes);
        fprintf(f, "  %-20s %12" PRId64 " bytes (%9s)  %s\n", p->name, p->bytes, v, p->how);
    }
    char s[32], n[32], l[32];
    mib(s, sizeof(s), wh_budget_sum(b));
    mib(n, sizeof(n), wh_budget_need(b));
    mib(l, sizeof(l), limit);
    fprintf(f, "  %-20s %12" PRId64 " bytes (%9s)\n", "sum", wh_budget_sum(b), s);
    fprintf(f, "  %-20s %12" PRId64 " bytes (%9s)  sum + %d%% headroom\n", "need",
            wh_budget_need(b), n, WH_BUDGET_HEADROOM_PCT);
    fprintf(f, "  %-20s %12" PRId64 " bytes (%9s)  %s\n", "budget", limit, l,
            limit_src ? limit_src : "memory_budget_bytes");
    if (wh_budget_need(b) > limit && limit >= 0)
        fprintf(f,
                "walhook-%s: refusing to start: the plan exceeds memory_budget_bytes; lower the "
                "settings named above or raise memory_budget_bytes (or the container's memory "
                "limit)\n",
                b->daemon);
}

/* ---- the system's limit ---- */

static int64_t read_num(const char *root, const char *path, int *is_max)
{
    char p[WH_PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s%s", root, path);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return -1;
    char line[64] = "";
    int64_t v = -1;
    if (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "max", 3) == 0) {
            if (is_max)
                *is_max = 1;
        } else {
            char *end = NULL;
            long long x = strtoll(line, &end, 10);
            if (end != line && x >= 0)
                v = (int64_t)x;
        }
    }
    fclose(f);
    return v;
}

static int64_t mem_total(const char *root)
{
    char p[WH_PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/proc/meminfo", root);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return -1;
    char line[128];
    int64_t v = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        long long kb;
        if (sscanf(line, "MemTotal: %lld kB", &kb) == 1) {
            v = (int64_t)kb * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

/* The cgroup path of this process for the v2 hierarchy ("0::/x") or the v1
 * memory controller ("N:memory:/x" or "N:...,memory,...:/x"). */
static int cgroup_path(const char *root, int v2, char *out, size_t len)
{
    char p[WH_PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/proc/self/cgroup", root);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return WH_ERR;
    char line[WH_PATH_MAX];
    int rc = WH_ERR;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c1 = '\0';
        *c2 = '\0';
        const char *ctl = c1 + 1;
        int match = 0;
        if (v2)
            match = strcmp(line, "0") == 0 && ctl[0] == '\0';
        else {
            char tmp[256];
            wh_strlcpy(tmp, ctl, sizeof(tmp));
            char *save = NULL;
            for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, "memory") == 0)
                    match = 1;
        }
        if (match) {
            wh_strlcpy(out, strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1, len);
            rc = WH_OK;
            break;
        }
    }
    fclose(f);
    return rc;
}

int64_t wh_budget_system_limit(const char *root, char *src, size_t srclen)
{
    if (root == NULL)
        root = "";
    int64_t total = mem_total(root);
    char cg[WH_PATH_MAX], p[WH_PATH_MAX + 64];
    /* v2: inside a container the cgroup namespace puts ours at the root;
     * outside, /proc/self/cgroup names the path */
    const char *v2files[2] = {"/sys/fs/cgroup/memory.max", NULL};
    if (cgroup_path(root, 1, cg, sizeof(cg)) == WH_OK && cg[0]) {
        snprintf(p, sizeof(p), "/sys/fs/cgroup%s/memory.max", cg);
        v2files[1] = p;
    }
    for (int i = 1; i >= 0; i--) {
        if (v2files[i] == NULL)
            continue;
        int is_max = 0;
        int64_t v = read_num(root, v2files[i], &is_max);
        if (v > 0 && (total < 0 || v < total)) {
            if (src)
                snprintf(src, srclen, "cgroup v2 memory.max");
            return v;
        }
        if (v > 0 || is_max)
            break; /* found, no limit below the machine's */
    }
    const char *v1files[2] = {"/sys/fs/cgroup/memory/memory.limit_in_bytes", NULL};
    char p1[WH_PATH_MAX + 64];
    if (cgroup_path(root, 0, cg, sizeof(cg)) == WH_OK && cg[0]) {
        snprintf(p1, sizeof(p1), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", cg);
        v1files[1] = p1;
    }
    for (int i = 1; i >= 0; i--) {
        if (v1files[i] == NULL)
            continue;
        int64_t v = read_num(root, v1files[i], NULL);
        if (v > 0 && (total < 0 || v < total)) {
            if (src)
                snprintf(src, srclen, "cgroup v1 memory.limit_in_bytes");
            return v;
        }
        if (v > 0)
            break;
    }
    if (src)
        snprintf(src, srclen, total >= 0 ? "MemTotal" : "unknown");
    return total;
}

int64_t wh_budget_limit(const wh_config *c, char *src, size_t srclen)
{
    if (c->memory_budget_bytes > 0) {
        if (src)
            snprintf(src, srclen, "memory_budget_bytes");
        return c->memory_budget_bytes;
    }
    return wh_budget_system_limit("", src, srclen);
}

/* ---- plans ---- */

void wh_budget_counts_of(const struct wh_state *s, wh_budget_counts *n)
{
    n->tenants = 0;
    n->targets = 0;
    if (s == NULL)
        return;
    n->tenants = s->ntenants;
    for (int i = 0; i < s->ntenants; i++)
        n->targets += s->tenants[i].ntargets;
}

void wh_budget_store_threads(int jobs, int *flushes, int *compactions)
{
    if (jobs < 2)
        jobs = 2;
    int f = jobs / 4 > 1 ? jobs / 4 : 1;
    int c = jobs - f > 1 ? jobs - f : 1;
    *flushes = f;
    *compactions = c;
}

int64_t wh_budget_arena_block(int64_t write_buffer_bytes)
{
    int64_t a = write_buffer_bytes / 8;
    if (a > WH_BUDGET_ST_ARENA_MAX)
        a = WH_BUDGET_ST_ARENA_MAX;
    a = (a + 4095) / 4096 * 4096;
    return a < 4096 ? 4096 : a;
}

void wh_budget_store_malloc(const wh_config *c)
{
    int64_t keep = c->rocksdb_write_buffer_bytes * (WH_BUDGET_ST_MAX_WRITE_BUFFERS + 1);
    if (keep > INT_MAX)
        keep = INT_MAX;
    if (keep > WH_TRIM_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, (int)keep);
}

/* NNG's own threads (task queue: 2 per CPU, at least 2, at most 16; timer,
 * reaper, poller, resolvers) */
static int nng_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int tq = cpus > 0 ? (int)cpus * 2 : 2;
    if (tq > 16)
        tq = 16;
    return tq + 8;
}

int64_t wh_budget_direct(int busy, int64_t max_req, int64_t max_reply)
{
    int64_t keep = (int64_t)WH_UDS_KEEP_BYTES;
    return (int64_t)WH_IPC_DIRECT_MAX * (WH_BUDGET_STACK_BYTES + 2 * keep) +
           (int64_t)(busy > 0 ? busy : 1) * (max_req + max_reply);
}

int wh_budget_is_direct(const char *url)
{
    return url == NULL || url[0] == '\0' || strncmp(url, "ipc://", 6) == 0;
}

/* A daemon's control endpoint (wh_control_start: one worker): its direct
 * socket, when it is ipc:// */
static void add_control_direct(wh_budget *b, const char *url, const char *key)
{
    int direct = wh_budget_is_direct(url);
    wh_budget_add(
        b, "ipc_direct",
        direct ? wh_budget_direct(1, WH_BUDGET_CONTROL_REQ_BYTES, WH_BUDGET_CONTROL_REPLY_BYTES)
               : 0,
        "%s%s direct socket: %d connections x (%d KiB stack + 2 x %u KiB kept "
        "buffers) + 1 request served at once x (%d KiB + %d KiB Stats reply)",
        direct ? "" : "none (not ipc://); else ", key, WH_IPC_DIRECT_MAX,
        WH_BUDGET_STACK_BYTES / 1024, WH_UDS_KEEP_BYTES / 1024, WH_BUDGET_CONTROL_REQ_BYTES / 1024,
        WH_BUDGET_CONTROL_REPLY_BYTES / 1024);
}

void wh_budget_plan_store(wh_budget *b, const wh_config *c, const wh_budget_counts *n)
{
    wh_budget_init(b, "store");
    int tenants = n && n->tenants > 0 ? n->tenants : 1;
    /* requests served at once: store.workers + the spare ones */
    int served = c->store_workers + WH_STORE_SPARE_WORKERS;
    int readers = (n && n->targets > 0 ? n->targets : 0) + served;
    int64_t wb = c->rocksdb_write_buffer_bytes;
    int64_t cache = c->rocksdb_cache_bytes > 0 ? c->rocksdb_cache_bytes : 1 * MiB;
    wh_budget_add(b, "block_cache", cache, "store.cache_bytes (LRU block cache)");
    wh_budget_add(b, "index_filter_blocks", 0,
                  "held inside block_cache (cache_index_and_filter_blocks)");
    int cfs = WH_BUDGET_ST_CF_FIXED + WH_BUDGET_ST_CFS_PER_TENANT * tenants;
    int64_t hard = wb * WH_BUDGET_ST_MAX_WRITE_BUFFERS * cfs;
    int64_t soft = wb * (WH_BUDGET_ST_MAX_WRITE_BUFFERS + 1);
    int64_t arena = wh_budget_arena_block(wb);
    wh_budget_add(b, "memtables", (hard < soft ? hard : soft) + arena * cfs,
                  "store.write_buffer_bytes x %d (db_write_buffer_size, all column families) + "
                  "1 being flushed + %d column families x %" PRId64
                  " (arena block; 2 per tenant, %d tenants)",
                  WH_BUDGET_ST_MAX_WRITE_BUFFERS, cfs, arena, tenants);
    wh_budget_add(b, "table_readers",
                  (int64_t)WH_BUDGET_ST_MAX_OPEN_FILES * WH_BUDGET_ST_TABLE_READER_BYTES,
                  "%d open SST files x %d KiB (max_open_files)", WH_BUDGET_ST_MAX_OPEN_FILES,
                  WH_BUDGET_ST_TABLE_READER_BYTES / 1024);
    wh_budget_add(b, "iterators",
                  (int64_t)readers * WH_BUDGET_ST_ITER_FILES *
                      (WH_BUDGET_ST_BLOCK_BYTES + WH_BUDGET_ST_ITER_READAHEAD_BYTES),
                  "%d readers (targets + store.workers + 2) x %d files x (64 KiB block + 256 KiB "
                  "readahead)",
                  readers, WH_BUDGET_ST_ITER_FILES);
    int fl = 0, co = 0;
    wh_budget_store_threads(c->store_background_jobs, &fl, &co);
    int64_t per_comp = WH_BUDGET_ST_FILE_BUFFER_BYTES +
                       (int64_t)WH_BUDGET_ST_COMPACTION_INPUTS * WH_BUDGET_ST_READAHEAD_BYTES +
                       2 * WH_BUDGET_ST_BLOCK_BYTES;
    int64_t per_flush = WH_BUDGET_ST_FILE_BUFFER_BYTES + 2 * WH_BUDGET_ST_BLOCK_BYTES;
    wh_budget_add(b, "compaction_buffers", co * per_comp + fl * per_flush,
                  "store.background_jobs (%d): %d compactions x %" PRId64
                  " + %d flushes x %" PRId64,
                  c->store_background_jobs, co, per_comp, fl, per_flush);
    int threads =
        4 /* main, watchdog, maintenance, RocksDB timer */ + served + fl + co + nng_threads();
    wh_budget_add(b, "thread_stacks", (int64_t)threads * WH_BUDGET_STACK_BYTES,
                  "%d threads (store.workers + 2, store.background_jobs, NNG) x %d KiB resident",
                  threads, WH_BUDGET_STACK_BYTES / 1024);
    wh_budget_add(b, "ipc_buffers", (int64_t)served * 2 * c->ipc_max_msg_bytes,
                  "(store.workers (%d) + 2) x 2 (request + reply) x ipc.max_msg_bytes",
                  c->store_workers);
    /* store.endpoint's direct socket serves store.workers + 2 requests at once
     * (wh_ipc.h); store.notify_endpoint's keeps at most one unsent
     * notification per subscriber */
    int direct = wh_budget_is_direct(c->store_endpoint);
    int pub = wh_budget_is_direct(c->store_notify_endpoint);
    wh_budget_add(
        b, "ipc_direct",
        (direct ? wh_budget_direct(served, c->ipc_max_msg_bytes, c->ipc_max_msg_bytes) : 0) +
            (pub ? (int64_t)WH_IPC_DIRECT_MAX * WH_NOTE_MSG_MAX : 0),
        "store.endpoint%s: %d connections x (%d KiB stack + 2 x %u KiB kept buffers) + "
        "(store.workers (%d) + 2) x 2 x ipc.max_msg_bytes in flight; notify_endpoint%s: %d "
        "subscribers x %u KiB",
        direct ? "" : " (not ipc://: none)", WH_IPC_DIRECT_MAX, WH_BUDGET_STACK_BYTES / 1024,
        WH_UDS_KEEP_BYTES / 1024, c->store_workers, pub ? "" : " (not ipc://: none)",
        WH_IPC_DIRECT_MAX, (unsigned)(WH_NOTE_MSG_MAX / 1024));
    wh_budget_add(b, "process", WH_BUDGET_STORE_BASE_BYTES,
                  "code (RocksDB linked in), libraries, offsets and tenant tables");
}

void wh_budget_plan_ingestor(wh_budget *b, const wh_config *c, const char *daemon)
{
    wh_budget_init(b, daemon ? daemon : "ingestor");
    wh_budget_add(b, "window", c->window_bytes,
                  "ingestor.window_bytes (sent to the store, not yet acknowledged)");
    wh_budget_add(b, "batch_buffers", 2 * c->flush_bytes,
                  "2 x ingestor.flush_bytes (the open batch and the request being packed)");
    wh_budget_add(b, "toast_cache", c->toast_cache_bytes,
                  "ingestor.toast_cache_bytes (last values of TOASTed columns)");
    wh_budget_add(b, "libpq_buffers", 2 * MiB,
                  "the replication stream's read buffer (ing_copy, 512 KiB, grows with the "
                  "largest message; libpq's input buffer with TLS/GSS)");
    wh_budget_add(b, "ipc_buffers", c->ipc_max_msg_bytes,
                  "ipc.max_msg_bytes (largest reply: the runtime state document)");
    int threads = 5 + nng_threads();
    wh_budget_add(b, "thread_stacks", (int64_t)threads * WH_BUDGET_STACK_BYTES,
                  "%d threads x %d KiB resident", threads, WH_BUDGET_STACK_BYTES / 1024);
    add_control_direct(b, c->ingestor_control, "ingestor.control");
    wh_budget_add(b, "process", WH_BUDGET_BASE_BYTES, "code, libraries (libpq), static data");
}

void wh_budget_plan_dispatcher(wh_budget *b, const wh_config *c, const wh_budget_counts *n)
{
    wh_budget_init(b, "dispatcher");
    int targets = n ? n->targets : c->ntargets;
    if (targets < 0)
        targets = 0;
    wh_budget_add(b, "read_ahead",
                  (int64_t)targets * WH_BUDGET_DSP_BATCHES_PER_TARGET * c->batch_max_bytes,
                  "%d targets x %d batches x dispatcher.batch_max_bytes", targets,
                  WH_BUDGET_DSP_BATCHES_PER_TARGET);
    int inflight = c->max_inflight;
    wh_budget_add(b, "request_bodies",
                  (int64_t)(targets < inflight ? targets : inflight) * 2 * c->batch_max_bytes,
                  "min(targets, dispatcher.max_inflight) x 2 x dispatcher.batch_max_bytes "
                  "(an envelope is up to twice the native batch)");
    int64_t ub = c->batch_max_bytes < WH_BUDGET_DSP_UPLOAD_MIN   ? WH_BUDGET_DSP_UPLOAD_MIN
                 : c->batch_max_bytes > WH_BUDGET_DSP_UPLOAD_MAX ? WH_BUDGET_DSP_UPLOAD_MAX
                                                                 : c->batch_max_bytes;
    wh_budget_add(b, "upload_buffers", (int64_t)targets * ub,
                  "%d targets x libcurl's upload buffer (dispatcher.batch_max_bytes within "
                  "64 KiB .. 1 MiB, kept per target)",
                  targets);
    wh_budget_add(b, "connection_pool", (int64_t)inflight * WH_BUDGET_DSP_CONN_BYTES,
                  "dispatcher.max_inflight (%d) x %d KiB (curl handle, buffers, TLS)", inflight,
                  WH_BUDGET_DSP_CONN_BYTES / 1024);
    wh_budget_add(b, "target_state", (int64_t)targets * WH_BUDGET_DSP_TARGET_BYTES,
                  "%d targets x %d KiB (breaker, filter, limits, metrics, two store clients)",
                  targets, WH_BUDGET_DSP_TARGET_BYTES / 1024);
    wh_budget_add(b, "ipc_buffers", c->ipc_max_msg_bytes,
                  "ipc.max_msg_bytes (largest reply: state document, dead-letter page)");
    wh_budget_add(b, "pushed_events", WH_BUDGET_DSP_PUSH_BYTES + WH_NOTE_MSG_MAX,
                  "events pushed with the store's notifications, kept for the readers "
                  "(%d KiB), and the message being received",
                  WH_BUDGET_DSP_PUSH_BYTES / 1024);
    int threads = 6 + 2 * targets + nng_threads();
    wh_budget_add(b, "thread_stacks", (int64_t)threads * WH_BUDGET_STACK_BYTES,
                  "%d threads (a reader and a committer per target) x %d KiB resident", threads,
                  WH_BUDGET_STACK_BYTES / 1024);
    add_control_direct(b, c->dispatcher_control, "dispatcher.control");
    wh_budget_add(b, "process", WH_BUDGET_BASE_BYTES,
                  "code, libraries (libcurl, TLS), static data");
}

void wh_budget_plan_admin(wh_budget *b, const wh_config *c, int conns)
{
    wh_budget_init(b, "admin");
    wh_budget_add(b, "http_connections", (int64_t)conns * WH_BUDGET_ADM_CONN_BYTES,
                  "%d connections (as many as fit, at most %d) x (1 MiB request body + %d KiB "
                  "stack)",
                  conns, WH_BUDGET_ADM_CONNS, WH_BUDGET_STACK_BYTES / 1024);
    wh_budget_add(b, "ipc_buffers", 2 * c->ipc_max_msg_bytes,
                  "2 x ipc.max_msg_bytes (the state document and a dead-letter page at once; "
                  "Stats replies are small)");
    int threads = 4 + nng_threads();
    wh_budget_add(b, "thread_stacks", (int64_t)threads * WH_BUDGET_STACK_BYTES,
                  "%d threads x %d KiB resident", threads, WH_BUDGET_STACK_BYTES / 1024);
    wh_budget_add(b, "process", WH_BUDGET_BASE_BYTES,
                  "code, libraries (libmicrohttpd, libpq), static data");
}

int wh_budget_admin_conns(const wh_config *c, int64_t limit)
{
    if (limit < 0)
        return WH_BUDGET_ADM_CONNS;
    wh_budget b;
    wh_budget_plan_admin(&b, c, 0);
    int64_t room = limit / (100 + WH_BUDGET_HEADROOM_PCT) * 100 - wh_budget_sum(&b);
    int64_t n = room / WH_BUDGET_ADM_CONN_BYTES;
    if (n > WH_BUDGET_ADM_CONNS)
        n = WH_BUDGET_ADM_CONNS;
    return n < WH_BUDGET_ADM_MIN_CONNS ? WH_BUDGET_ADM_MIN_CONNS : (int)n;
}

/* ---- published plan and metrics ---- */

static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static wh_budget pub;
static int64_t pub_limit;
static int pub_set;

void wh_budget_publish(const wh_budget *b, int64_t limit)
{
    pthread_mutex_lock(&pub_mu);
    pub = *b;
    pub_limit = limit;
    pub_set = 1;
    pthread_mutex_unlock(&pub_mu);
}

int wh_budget_metrics(wh_buf *out)
{
    pthread_mutex_lock(&pub_mu);
    int rc = WH_OK;
    if (pub_set) {
        char l[256];
        snprintf(l, sizeof(l), "daemon=\"%s\"", pub.daemon);
        rc |= wh_metric_header(out, "walhook_memory_budget_bytes", "gauge",
                               "the daemon's memory budget (memory_budget_bytes or the "
                               "container's limit)");
        rc |= wh_metric_i64(out, "walhook_memory_budget_bytes", l, pub_limit);
        rc |= wh_metric_header(out, "walhook_memory_need_bytes", "gauge",
                               "the sum of the memory parts plus 20% headroom");
        rc |= wh_metric_i64(out, "walhook_memory_need_bytes", l, wh_budget_need(&pub));
        rc |= wh_metric_header(out, "walhook_memory_part_bytes", "gauge",
                               "what the daemon planned to hold, per part");
        for (int i = 0; i < pub.nparts; i++) {
            snprintf(l, sizeof(l), "daemon=\"%s\",part=\"%s\"", pub.daemon, pub.parts[i].name);
            rc |= wh_metric_i64(out, "walhook_memory_part_bytes", l, pub.parts[i].bytes);
        }
    }
    pthread_mutex_unlock(&pub_mu);
    return rc == WH_OK ? WH_OK : WH_ERR;
}

int wh_budget_enforce(const wh_budget *b, int64_t limit, const char *limit_src)
{
    char err[2048];
    wh_budget_publish(b, limit);
    if (wh_budget_check(b, limit, err, sizeof(err)) == WH_OK)
        return WH_OK;
    wh_budget_print(b, limit, limit_src, stderr);
    wh_error("%s", err);
    return WH_ERR;
}
