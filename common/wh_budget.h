/* wh_budget: the memory budget every daemon checks at start (seed 000,
 * problem 5), and the admin again before it adds a tenant or a target.
 *
 * A plan is the list of what a daemon will hold, part by part, each with its
 * size in bytes and the settings that change it (the fix). A plan fits when
 * its sum plus WH_BUDGET_HEADROOM_PCT percent (room for the allocator, the
 * kernel's page tables, what no part names) is at most the budget:
 * `memory_budget_bytes`, or when that is 0 the memory limit of the process's
 * cgroup (v2 memory.max, v1 memory.limit_in_bytes), else MemTotal. The
 * setting applies to each daemon on its own (one container per daemon is the
 * usual deployment, and each reads its own cgroup); daemons that share one
 * container share its limit, so set it per daemon there (WALHOOK_MEMORY_
 * BUDGET_BYTES in each one's environment).
 *
 * The plans of the four daemons live here (wh_budget_plan_*) because the
 * admin computes the store's and the dispatcher's plan for a runtime change;
 * the store takes its RocksDB sizes from the constants below, so what is
 * declared is what RocksDB is configured with.
 *
 * The last plan a daemon checked is published (wh_budget_publish) and
 * rendered by wh_metric_process as walhook_memory_budget_bytes{daemon} and
 * walhook_memory_part_bytes{daemon,part}.
 *
 * Thread-safety: a wh_budget is a plain value; publish/metrics take a lock.
 */
#ifndef WH_BUDGET_H
#define WH_BUDGET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "wh_buf.h"
#include "wh_config.h"

#define WH_BUDGET_HEADROOM_PCT 20
#define WH_BUDGET_MAX_PARTS 16

/* ---- RocksDB sizes the store is configured with (st_db.c uses them) ---- */
/* memtables per column family; db_write_buffer_size = this x write_buffer */
#define WH_BUDGET_ST_MAX_WRITE_BUFFERS 2
/* The store serves store.workers requests that may wait for the disk at
 * once and this many more kept for those that do not (Read, GetState,
 * Stats, LeaseList, LeaseRenew): st_server.c, write_place_take */
#define WH_STORE_SPARE_WORKERS 2
/* SST block size */
#define WH_BUDGET_ST_BLOCK_BYTES (64 * 1024)
/* compaction readahead, per input file */
#define WH_BUDGET_ST_READAHEAD_BYTES (256 * 1024)
/* an iterator's auto readahead, at most, per file it reads */
#define WH_BUDGET_ST_ITER_READAHEAD_BYTES (256 * 1024)
/* files an in-order iterator reads at once (L0 files and levels) */
#define WH_BUDGET_ST_ITER_FILES 4
/* writable_file_max_buffer_size: a flush's or compaction's output buffer */
#define WH_BUDGET_ST_FILE_BUFFER_BYTES (1024 * 1024)
/* level0_file_num_compaction_trigger */
#define WH_BUDGET_ST_L0_TRIGGER 4
/* input files of one compaction: L0 files + overlapping L1 */
#define WH_BUDGET_ST_COMPACTION_INPUTS (WH_BUDGET_ST_L0_TRIGGER + 4)
/* max_open_files, and an open SST's reader beyond its cached blocks */
#define WH_BUDGET_ST_MAX_OPEN_FILES 256
#define WH_BUDGET_ST_TABLE_READER_BYTES (16 * 1024)
/* memtable arena block: write_buffer / 8, at most this */
#define WH_BUDGET_ST_ARENA_MAX (1024 * 1024)
/* column families: "default", and e:<tenant> m:<tenant> per tenant */
#define WH_BUDGET_ST_CF_FIXED 1
#define WH_BUDGET_ST_CFS_PER_TENANT 2

/* ---- dispatcher and admin sizes (their code asserts the shared ones) ---- */
/* DSP_PREFETCH read-ahead batches + the one posted */
#define WH_BUDGET_DSP_BATCHES_PER_TARGET 3
/* a pooled connection: curl handle, buffers, TLS */
#define WH_BUDGET_DSP_CONN_BYTES (96 * 1024)
/* libcurl's upload buffer per target (dsp_target.c): the batch size, within
 * these bounds; it stays allocated, touched as far as the largest body */
#define WH_BUDGET_DSP_UPLOAD_MIN (64 * 1024)
#define WH_BUDGET_DSP_UPLOAD_MAX (1024 * 1024)
/* a target's state beyond its batches */
#define WH_BUDGET_DSP_TARGET_BYTES (64 * 1024)
/* events pushed with durability notifications that the dispatcher keeps
 * for its readers, all targets together (dsp_push) */
#define WH_BUDGET_DSP_PUSH_BYTES (4 * 1024 * 1024)
/* ADM_HTTP_MAX_CONNS, and ADM_MAX_BODY (a request body, buffered) */
#define WH_BUDGET_ADM_CONNS 1000
#define WH_BUDGET_ADM_BODY_BYTES (1024 * 1024)
#define WH_BUDGET_ADM_CONN_BYTES (WH_BUDGET_ADM_BODY_BYTES + WH_BUDGET_STACK_BYTES)
/* fewer connections than this fitting: the admin refuses to start */
#define WH_BUDGET_ADM_MIN_CONNS 16

/* ---- direct unix-socket servers (wh_uds.h, "Memory") ---- */
/* a control endpoint's request (wh_control_start's max message) and its
 * Stats reply (the metrics text), at most about */
#define WH_BUDGET_CONTROL_REQ_BYTES (64 * 1024)
#define WH_BUDGET_CONTROL_REPLY_BYTES (1024 * 1024)

/* ---- the process itself ---- */
/* resident stack per thread (touched pages, not the 8 MiB reserved) */
#define WH_BUDGET_STACK_BYTES (256 * 1024)
/* code, libraries, static data, heap bookkeeping */
#define WH_BUDGET_BASE_BYTES (16 * 1024 * 1024)
/* the store links RocksDB statically */
#define WH_BUDGET_STORE_BASE_BYTES (24 * 1024 * 1024)

typedef struct wh_budget_part {
    char name[32];
    int64_t bytes;
    char how[200]; /* the formula and the settings that change it */
} wh_budget_part;

typedef struct wh_budget {
    char daemon[48];
    wh_budget_part parts[WH_BUDGET_MAX_PARTS];
    int nparts;
} wh_budget;

/* Counts of what a daemon serves; a plan grows with them. */
typedef struct wh_budget_counts {
    int tenants; /* tenants with column families (store) */
    int targets; /* targets over every tenant (store readers, dispatcher) */
} wh_budget_counts;

void wh_budget_init(wh_budget *b, const char *daemon);
/* Adds a part (at most WH_BUDGET_MAX_PARTS; negative sizes count as 0). */
void wh_budget_add(wh_budget *b, const char *part, int64_t bytes, const char *how, ...)
    __attribute__((format(printf, 4, 5)));
int64_t wh_budget_sum(const wh_budget *b);
/* sum + WH_BUDGET_HEADROOM_PCT % */
int64_t wh_budget_need(const wh_budget *b);
/* WH_OK when wh_budget_need(b) <= limit; else WH_ERR and err names the
 * daemon, the need, the limit and the parts, largest first
 * ("walhook-store needs 700 MiB (580 MiB + 20% headroom) > memory_budget_bytes
 * 512 MiB: ipc_buffers 512 MiB, ..."). */
int wh_budget_check(const wh_budget *b, int64_t limit, char *err, size_t errlen);
/* One line per part, "  part  bytes (MiB)  how", then the total, the need
 * and the limit (with where it came from), for the refusal at start. */
void wh_budget_print(const wh_budget *b, int64_t limit, const char *limit_src, FILE *f);

/* The budget: memory_budget_bytes when > 0, else the system's limit
 * (wh_budget_system_limit with root ""). *src names where it came from
 * ("memory_budget_bytes", "cgroup v2 memory.max", "cgroup v1 ...",
 * "MemTotal"). Returns -1 when nothing could be read. */
int64_t wh_budget_limit(const wh_config *c, char *src, size_t srclen);
/* The memory limit of the cgroup of this process, else MemTotal. root is
 * prefixed to /proc and /sys paths ("" for the real ones; tests give a
 * directory with fake files). A cgroup limit of "max" or one above
 * MemTotal counts as none. -1 when nothing could be read. */
int64_t wh_budget_system_limit(const char *root, char *src, size_t srclen);

struct wh_state;
/* Tenants and targets of a runtime state (s may be NULL: none). */
void wh_budget_counts_of(const struct wh_state *s, wh_budget_counts *n);

/* The plans. Each fills b (wh_budget_init is called) from the settings and
 * the counts. */
void wh_budget_plan_store(wh_budget *b, const wh_config *c, const wh_budget_counts *n);
void wh_budget_plan_ingestor(wh_budget *b, const wh_config *c, const char *daemon);
void wh_budget_plan_dispatcher(wh_budget *b, const wh_config *c, const wh_budget_counts *n);
void wh_budget_plan_admin(wh_budget *b, const wh_config *c, int conns);
/* The admin's HTTP connections that fit in limit beside its other parts
 * (each may hold a request body and a thread): at most WH_BUDGET_ADM_CONNS,
 * at least WH_BUDGET_ADM_MIN_CONNS (the check then fails). */
int wh_budget_admin_conns(const wh_config *c, int64_t limit);

/* RocksDB background threads for store.background_jobs: flushes
 * max(1, jobs/4), compactions max(1, jobs - flushes) (RocksDB's split). */
void wh_budget_store_threads(int jobs, int *flushes, int *compactions);
/* The memtable arena block RocksDB uses for this write buffer size. */
int64_t wh_budget_arena_block(int64_t write_buffer_bytes);
/* The store's malloc: free heap at the top of an arena is kept up to the
 * memtables' declared size (write_buffer_bytes x (max buffers + 1)) instead
 * of WH_TRIM_THRESHOLD: a flushed memtable's arena blocks become the next
 * memtable's, not returned to the kernel and page-faulted in again (a page
 * fault per 4 KiB of events written). The memory is the budget's
 * "memtables" part either way. */
void wh_budget_store_malloc(const wh_config *c);

/* What a direct-socket server (wh_uds) may hold: WH_IPC_DIRECT_MAX
 * connections x (a thread's stack + request and reply buffers kept between
 * requests, WH_UDS_KEEP_BYTES each) + busy requests served at once x
 * (max_req + max_reply). */
int64_t wh_budget_direct(int busy, int64_t max_req, int64_t max_reply);
/* 1 when url is served over a direct socket too (ipc://, or "": the
 * default endpoint in data_dir, ipc://). */
int wh_budget_is_direct(const char *url);

/* Publishes b and its limit for the metrics (copied). */
void wh_budget_publish(const wh_budget *b, int64_t limit);
/* A daemon's start check: publishes the plan against limit; over it, prints
 * one line per part to stderr (limit_src names where the limit came from),
 * logs the refusal and returns WH_ERR (the daemon exits 2). */
int wh_budget_enforce(const wh_budget *b, int64_t limit, const char *limit_src);
/* Appends walhook_memory_budget_bytes, walhook_memory_need_bytes and
 * walhook_memory_part_bytes{daemon,part} of the published plan (nothing
 * when none was published). */
int wh_budget_metrics(wh_buf *out);

#endif
