/* st_db_int: the internals of st_db (st_db.h), shared by its files and by
 * nothing else:
 *   st_db.c         open/close, keys, tenants and their column families, the
 *                   GC compaction filter, offsets, append (group commit),
 *                   staged transactions, read, dump, tenants' create/drop,
 *                   the TOAST value cache
 *   st_db_target.c  a target's dispatcher lease, dead letters, replay queue
 *   st_db_maint.c   runtime limits, the maintenance thread (retention, GC
 *                   watermark, GC compactions), the write token bucket
 *   st_db_schema.c  the schema registry's keys and their pruning
 * Helpers shared between them carry the prefix st_dbi_. */
#ifndef ST_DB_INT_H
#define ST_DB_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdint.h>

#include "st_bgio.h"
#include "st_db.h"
#include "st_gcfilter.h"
#include "st_guard.h"
#include "st_toast.h"
#include "st_walfs.h"
#include "wh_metrics.h"

#define ST_POS_LEN 12     /* lsn(8) seq(4) */
#define ST_OFF_VAL_LEN 20 /* lsn(8) seq(4) epoch(8) */
/* an N note with an automatic resync's tail: since(8) kind(1) lsn(8) seq(4) bf(8) */
#define ST_NS_NOTE_RS_LEN 29
#define ST_KEY_MAX (1 + ST_NAME_MAX + 1 + ST_NAME_MAX + ST_POS_LEN)

/* the kinds of a tenant's column families ("<kind>:<tenant>") */
#define ST_CF_EVENTS 'e'
#define ST_CF_META 'm'
#define ST_CF_STAGE 's'
#define ST_CF_TOAST 't'
#define ST_IO_SLOTS 64          /* writes and syncs in progress watched at once (st_dbi_io_begin) */
#define ST_WRITE_STALL_MS 10000 /* store.write_stall_ms's default */

typedef struct st_tenant st_tenant;

/* One consumer's offset. Entries are never freed before close, so a pointer
 * found under the table lock stays valid after it is released.
 * wmu serialises the writers of this consumer and is held across the synced
 * put; vmu guards the values and is never held across I/O, so readers (Read,
 * GetOffset, the GC snapshot) never wait for an fsync. Lock order: the
 * tenant's lock (read) before wmu. */
typedef struct st_off {
    struct st_off *next;  /* hash chain */
    struct st_off *tnext; /* the tenant's consumers (under off_lock) */
    st_tenant *ten;
    uint32_t hash;
    char tenant[ST_NAME_MAX + 1];
    char consumer[ST_NAME_MAX + 1];
    pthread_mutex_t wmu;
    pthread_mutex_t vmu;
    uint64_t lsn;
    uint32_t seq;
    uint64_t epoch;
    int state;                  /* ST_OFF_* */
    _Atomic int needs_snapshot; /* behind the retention cap: does not hold GC */
    /* when it was marked (wall clock; 0 unknown) and why (ST_NS_*): written
     * under wmu, read under only off_lock (st_db_needs_snapshot_each) */
    _Atomic int64_t ns_since_ms;
    _Atomic int ns_kind;
    /* an automatic resync under way (st_db_resync_note; the N note's tail,
     * guarded by wmu): the tenant's end it noted and the id of the backfill
     * it requests; rs_bf 0 = none. Cleared with the mark. */
    uint64_t rs_lsn;
    uint32_t rs_seq;
    uint64_t rs_bf;
    /* the target's dispatcher lease (guarded by wmu) */
    char lease_owner[ST_OWNER_MAX + 1]; /* "" = free */
    uint64_t lease_epoch;               /* 0 = never leased */
    uint32_t lease_ttl_ms;
    int64_t lease_expiry_ms; /* monotonic clock (wh_now_ms) */
    /* released with requests abandoned, at this time (0: not): the next
     * grant is a takeover (st_lease.taken_over). Stored as a flag with the
     * lease: after a restart it counts from the load. */
    int64_t lease_abandoned_ms;
    /* the longest request timeout the holders told since the lease was
     * last granted with nothing left at the target (stored with it) */
    uint32_t lease_req_timeout_ms;
    /* granted as a takeover (st_lease.taken_over) to a holder that has not
     * renewed it yet: when what it took over lapsed (monotonic ms, as
     * expired_ms_ago counts), 0: none. The takeover is told again to every
     * Acquire of that holder until its first renewal shows it got a grant
     * (the reply that told it may have been lost: a timeout, or a store
     * restart after the write). Stored as a flag with the lease: after a
     * restart it counts from the load. */
    int64_t lease_takeover_ms;
    /* the lease is not stored: its tenant was removed (its L key went
     * with the column family) and may be created again; the next lease
     * write there stores it (lease_persist), so a store restart does not
     * forget its epoch while its holder keeps it */
    int lease_unstored;
    /* the lease as last committed, what LeaseList reports (guarded by vmu,
     * so a list never waits for wmu, which a synced write of the entry
     * holds across its sync): copied from the lease_* fields above by
     * every lease call once what it changed is stored (or has nothing to
     * store: a renewal's expiry, a lease kept in memory only) */
    char lease_c_owner[ST_OWNER_MAX + 1];
    uint64_t lease_c_epoch;
    int64_t lease_c_expiry_ms;
    /* moved (under wmu) by every replay that queues entries, after their
     * write (st_db_replay_gen); starts at the open's wall clock, so a
     * generation taken before a restart matches none after it */
    _Atomic uint64_t replay_gen;
} st_off;

enum {
    ST_OFF_NEW = 0, /* in the table, not stored yet: invisible to GC */
    ST_OFF_LIVE,    /* stored: pins GC at its position */
    ST_OFF_DROPPED  /* tombstone (DropOffset): reads nothing, commits refused */
};

/* A tenant: its two column families ("e:<tenant>" events, "m:<tenant>"
 * offsets, durable position, dead letters, replay queue, leases, GC
 * watermark) and its GC state. Never freed before close. `lock` is taken
 * for reading by every operation that uses the handles, for writing to
 * create or drop them. */
struct st_tenant {
    st_tenant *next;
    st_db *db;
    char name[ST_NAME_MAX + 1];
    pthread_rwlock_t lock;
    rocksdb_column_family_handle_t *ev, *meta; /* NULL: none (never created or dropped) */
    rocksdb_column_family_handle_t *stage;     /* "s:<tenant>": made at its first staging */
    _Atomic uint32_t stage_rdel; /* range deletes in stage since its last flush asked for */
    /* staging requests, stage commits and the staging GC, one at a time;
     * and the next staging generation (0: not read yet) of stage_cf_gen */
    pthread_mutex_t stage_mu;
    uint64_t stage_next, stage_cf_gen;
    /* the first gen staged in a file (st_sfile.h; the gens before it, of
     * a store from before files, are staged in the column family) */
    uint64_t stage_file_from;
    /* open gens' next index (one past the last staged), as far as known
     * (under stage_mu; an entry missing is read from the gen's file) */
#define ST_STAGE_NX 32
    struct {
        uint64_t gen, next;
    } stage_nx[ST_STAGE_NX];
    unsigned stage_nx_at;  /* the entry replaced next */
    st_off *offs;          /* its consumers, under db->off_lock */
    pthread_mutex_t wm_mu; /* the fields below */
    uint64_t wm_lsn;       /* GC watermark: never moves back */
    uint32_t wm_seq;
    /* wm_incl 1: the watermark is the consumers' minimum, passed by all (its
     * event goes too, unless it is the newest); 0: the retention floor or
     * read back at open (its event stays) */
    int wm_incl;
    uint64_t wm_stored_lsn; /* the W key's value */
    uint32_t wm_stored_seq;
    uint64_t floor_lsn; /* retention floor: events below it may go */
    uint32_t floor_seq;
    uint64_t drop_lsn; /* the last event below the floor (has_drop): a consumer */
    uint32_t drop_seq; /* whose offset is below it missed events that go */
    int has_drop;
    st_tenant_stats stats; /* last maintenance pass */
    _Atomic uint64_t gc_dropped;
    _Atomic uint64_t gc_compactions; /* GC slices compacted */
    _Atomic int gc_tail; /* a slice left garbage below the watermark: collect all of it */
    /* (under wm_mu) the watermark the last GC compaction collected to */
    uint64_t gc_swept_lsn;
    uint32_t gc_swept_seq;
    _Atomic uint64_t wm_moved_us; /* when its watermark last moved (st_dbi_tenant_watermark) */
    /* (under wm_mu) the position of its newest event written since the
     * store opened ((0,0): none): the GC drops the event at the watermark
     * only below it, so the tenant's last event, which says where it ends,
     * stays. Taken from each group part's highest event (not its last:
     * cq_write compares a resent event with the stored one only up to
     * here or open_end, whichever is higher, and an append out of order
     * would leave events it wrote above, written again unchecked). */
    uint64_t newest_lsn;
    uint32_t newest_seq;
    /* (under wm_mu) the position of its last event when the store opened
     * ((0,0): none; set before gc_ready; the highest position when it
     * could not be read, until a maintenance pass reads the end:
     * st_dbi_open_end_read): cq_write compares a resent event at or below it,
     * as one at or below newest_*, with the stored copy an earlier process
     * wrote (resend_check: kept, written only when none is stored, unless
     * st_db_set_resend_overwrite). A flush that drops such a key leaves a
     * deletion marker (gc_drop returns 2): a copy an earlier process
     * stored in a table file must never be read again over a later one. */
    uint64_t open_end_lsn;
    uint32_t open_end_seq;
    /* a flush waiting for its readers (gc_drop) sleeps on gc_cv (with
     * wm_mu) until an offset of the tenant moves (off_gen, gc_wake) */
    pthread_cond_t gc_cv;
    _Atomic uint64_t off_gen; /* bumped by every change of its offsets (st_dbi_off_write) */
    _Atomic int gc_waiting;   /* flushes sleeping on gc_cv */
    /* write token bucket (under wm_mu) */
    double tb_bytes, tb_events;
    uint64_t tb_ms;
    /* bumped when ev/meta are created or dropped (under lock, write) */
    uint64_t cf_gen;
    /* commit queue (under db->cq_mu): its appends not wholly in a group
     * yet, in arrival order; in_ring: it is in db's round-robin ring */
    struct st_wreq *cq_head, *cq_tail;
    uint64_t cq_bytes; /* bytes of its queued events not in a group yet */
    st_tenant *cq_next;
    int in_ring;
    /* the TOAST value cache (st_toast.h): "t:<tenant>", made at its first
     * entry (under lock, write), dropped with the tenant */
    rocksdb_column_family_handle_t *toast;
    st_toast *tc;
    _Atomic uint64_t schema_wm; /* the stored watermark LSN of its last registry prune */
    /* (under lock) dropped by st_db_tenant_drop: an implicit create
     * (ST_DBI_CREATE: an Append, a commit, ...) is refused until
     * st_db_tenant_create (a state that lists it again); set only with its
     * column families gone */
    int removed;
};

/* Per-compaction snapshot of a tenant's watermark. */
typedef struct st_gc_snap {
    st_tenant *t;
    uint64_t lsn; /* the watermark: keys below it are dropped, */
    uint32_t seq;
    int incl;          /* ... and the key at it when 1 (st_tenant.wm_incl) */
    uint64_t next_us;  /* the next re-read of the watermark */
    uint64_t wait_end; /* a flush may wait for the readers until then */
    int keys;          /* keys seen */
    /* st_tenant.open_end when the job started (it changes at open, before
     * GC, when the tenant goes, and once from the highest position to the
     * end read later: st_dbi_open_end_read) */
    uint64_t open_lsn;
    uint32_t open_seq;
} st_gc_snap;

struct st_db {
    char stage_dir[WH_PATH_MAX + 16]; /* <data_dir>/staging: st_sfile.h */
    rocksdb_t *rdb;
    rocksdb_options_t *opts; /* DB and default CF; tenant CFs copy it */
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *cache;
    rocksdb_ratelimiter_t *rl;  /* the C API's limiter (fixed rate) when bgio is NULL */
    st_bgio *bgio;              /* the limiter, retuned at runtime; compaction counts */
    int64_t io_rate_fixed;      /* rl's rate */
    rocksdb_writeoptions_t *wo; /* sync = true */

    st_walfs *walfs; /* WAL syncs watched, WALs zero-filled ahead (NULL: RocksDB's own files) */
    rocksdb_writeoptions_t *wo_lazy; /* sync = false: offset commits (off_persist_lazy) */
    /* synced writes that make the WAL durable up to where they began: each
     * takes a ticket (sync_begun) before it writes; sync_done is the highest
     * ticket of one that succeeded. An offset commit written without sync
     * waits for a ticket taken after its write (wal_synced_after). */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    pthread_mutex_t schema_mu;      /* the schema registries: reads to write (st_db_schema_prune) */
    _Atomic int schema_prune;       /* store.schema_prune */
    _Atomic uint64_t schema_pruned; /* versions pruned since open */
    _Atomic uint64_t resends_differ; /* events sent again with other bytes (cq_write) */
    _Atomic uint64_t resend_checks; /* appended events compared with a stored copy (one Get each) */
    _Atomic int resend_overwrite;   /* st_db_set_resend_overwrite */
    uint64_t sync_begun, sync_done;
    int64_t offset_sync_wait_us; /* 0: offset commits sync at once */

    rocksdb_readoptions_t *ro;
    int read_only;
    int64_t write_buffer_bytes;
    rocksdb_column_family_handle_t *cf_default;
    rocksdb_column_family_handle_t **cf_other; /* unknown CFs found at open */
    size_t ncf_other;

    /* the store's group commit (st_db_append): appends queue per tenant;
     * one appender at a time (the leader) writes groups taken round-robin
     * from the tenants' queues */
    pthread_mutex_t cq_mu;
    st_tenant *cq_ring, *cq_ring_tail; /* tenants with queued appends */
    int cq_busy;                       /* a leader is writing */
    int cq_jumped;                     /* the last group: light queues only */
    /* the last two tenants with a light append (at most cq_share bytes),
     * newest first, and when it came */
    st_tenant *cq_light_t[2];
    uint64_t cq_light_ms[2];
    _Atomic uint64_t cq_share; /* store.commit_share_bytes (st_db_set_limits) */
    _Atomic uint64_t cq_groups, cq_shared_groups;
    st_commit_hook cq_hook; /* observer of groups (tests) */
    void *cq_hook_arg;
    wh_histogram cq_stage[2][ST_APPEND_STAGES]; /* light, big */
    st_guard guard; /* slows floods down for light appends (store.isolation_target_pct) */

    pthread_rwlock_t ten_lock; /* the tenants list's structure */
    st_tenant *tenants;
    size_t ntenants;
    _Atomic int nlive; /* tenants with an events column family (ST_MAX_TENANTS) */

    pthread_rwlock_t off_lock; /* the hash table's structure, never held across I/O */
    st_off **buckets;
    size_t nbuckets, noffs;

    _Atomic uint64_t gc_dropped;
    _Atomic uint64_t gc_flush_us; /* when the last flush of events started (gc_snap_take) */
    _Atomic int gc_ready;         /* the offsets and watermarks are loaded: the GC may drop */
    _Atomic int64_t gc_idle_ms;   /* a tenant's readers idle this long: its rest of garbage goes */
    _Atomic uint64_t gc_compactions; /* garbage ranges compacted */
    uint64_t gc_slice_bytes;         /* most SST bytes one GC compaction covers */
    _Atomic size_t gc_next;          /* round-robin start, moved on by every pass */
    st_gc_hook gc_hook;              /* observer of GC slices (tests) */
    void *gc_hook_arg;
    st_floor_hook floor_hook; /* observer of published retention floors (tests) */
    void *floor_hook_arg;
    _Atomic int stopping; /* st_db_close: no new GC compaction */

    /* runtime limits (st_db_set_limits) */
    _Atomic int64_t ret_bytes, ret_age_ms;
    _Atomic int64_t rate_bytes, rate_events, rate_burst_ms;

    /* maintenance thread */
    pthread_t maint;
    int maint_started;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cond;
    int maint_stop;

    /* health of synced writes: the last one failed since fail_since_ms */
    pthread_mutex_t health_mu;
    int write_failing;
    uint64_t fail_since_ms;
    char write_err[300];
    _Atomic uint64_t write_errors;
    /* writes and syncs in progress (st_dbi_io_begin): when each began
     * (wh_now_ms, 0 = a free slot) and what it is; st_db_write_stall reads
     * them without a lock, so a Stats call never waits for the disk */
    _Atomic uint64_t io_since_ms[ST_IO_SLOTS];
    const char *_Atomic io_what[ST_IO_SLOTS];
    _Atomic int64_t stall_ms; /* store.write_stall_ms: not ready past it (0 = never) */

    /* offset moves (st_db_offset_moves): bumped before every SetOffset,
     * DropOffset, undrop and tenant drop; starts at the open's wall clock */
    _Atomic uint64_t moves;
    /* offset moves under way: from before a move changes its offset or
     * mark to after its second `moves` bump (st_db_offset_moved) */
    _Atomic int moving;
    uint64_t replay_base; /* st_off.replay_gen's start: the open's wall clock, microseconds */

    _Atomic int64_t toast_bytes; /* store.toast_cache_bytes, per tenant */
    /* lease owners seen (LeaseList's replicas), guarded by owners_mu */
    pthread_mutex_t owners_mu;
    struct {
        char name[ST_OWNER_MAX + 1];
        char control[WH_URL_MAX]; /* LeaseList.control: where the admin reaches it */
        int64_t seen_ms;
        uint32_t ttl_ms;
    } owners[ST_OWNERS_MAX];
    size_t nowners;
};

typedef struct off_val {
    uint64_t lsn;
    uint32_t seq;
    uint64_t epoch;
    int state;
} off_val;

typedef int (*meta_fn)(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                       char *err, size_t errlen);

/* the helpers st_db's files share (defined in the file named) */

/* st_db.c */
int st_dbi_rerr(char *err, size_t errlen, const char *what, char *rerrmsg);
int st_dbi_writable(st_db *db, const char *tenant, char *err, size_t errlen);
size_t st_dbi_key_prefix(char *k, char type, const char *tenant);
/* Drops the staging of committed transactions none of whose events is left
 * (t opened: t->lock held for reading); *n: how many. */
int st_dbi_stage_gc(st_db *db, st_tenant *t, size_t *n, char *err, size_t errlen);
size_t st_dbi_key_event(char *k, const char *tenant, uint64_t lsn, uint32_t seq);
size_t st_dbi_key_offset(char *k, const char *tenant, const char *consumer);
size_t st_dbi_key_durable(char *k, const char *tenant);
void st_dbi_tenant_watermark(st_tenant *t, uint64_t *lsn, uint32_t *seq, int *incl);
void st_dbi_cf_name(char *out, size_t len, char kind, const char *tenant);
/* 1 when a handle rocksdb_create_column_family returned has a column family
 * behind it (it may come with an error: cf_create), 0 when it has none. */
int st_dbi_cf_handle_live(const rocksdb_column_family_handle_t *h);
st_tenant *st_dbi_tenant_find(st_db *db, const char *name, int add);
/* WH_ERR with the error of a name past ST_MAX_TENANT_NAMES (or out of memory). */
int st_dbi_tenant_full(char *err, size_t errlen);
st_tenant **st_dbi_tenants_sorted(st_db *db, size_t *n);
/* create: 0 (NULL when it has no column families), ST_DBI_CREATE (made
 * unless removed), ST_DBI_CREATE_EXPLICIT (made, removed or not) */
#define ST_DBI_CREATE 1
#define ST_DBI_CREATE_EXPLICIT 2
int st_dbi_ten_open(st_db *db, const char *tenant, int create, st_tenant **out, char *err,
                    size_t errlen);
void st_dbi_ten_done(st_tenant *t);
/* st_dbi_ten_open without create that never waits (for Stats): NULL when
 * the tenant has no column families, or *busy = 1 when its lock is held for
 * writing (a column family create or drop, which may wait for the disk). */
st_tenant *st_dbi_ten_try(st_db *db, const char *tenant, int *busy);
st_off *st_dbi_off_find(st_db *db, const char *tenant, const char *consumer);
st_off *st_dbi_off_get(st_db *db, const char *tenant, const char *consumer, char *err,
                       size_t errlen);
off_val st_dbi_off_read(st_off *o);
void st_dbi_off_write(st_off *o, off_val v);
size_t st_dbi_off_encode(uint8_t *b, off_val v, int needs_snapshot);
int st_dbi_off_persist(st_db *db, st_off *o, off_val v, char *err, size_t errlen);
void st_dbi_ns_note_put(st_db *db, st_off *o, int kind);
int st_dbi_check_names(st_db *db, const char *tenant, const char *consumer, int write, char *err,
                       size_t errlen);
int st_dbi_split_consumer_key(const char *k, size_t kl, char *tenant, char *consumer);
int st_dbi_iter_end(rocksdb_iterator_t *it, int rc, const char *what, char *err, size_t errlen);
int st_dbi_iter_done(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro, const char *what, char *err,
                     size_t errlen);
int st_dbi_meta_scan(st_db *db, char type, meta_fn fn, char *err, size_t errlen);
void st_dbi_note_write(st_db *db, const char *err);
/* A write or sync that may wait for the disk begins: its slot (-1 when all
 * are taken: it is not watched), for st_dbi_io_end. what: a static string. */
int st_dbi_io_begin(st_db *db, const char *what);
void st_dbi_io_end(st_db *db, int slot);
/* Ends the process when err says a WAL sync failed (see wal_sync). */
void st_dbi_sync_check(const char *what, const char *err);
/* rocksdb_write between st_dbi_io_begin and st_dbi_io_end (then
 * st_dbi_sync_check) */
void st_dbi_write(st_db *db, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb, const char *what,
                  char **e);
uint64_t st_dbi_queued_bytes(uint64_t json, uint64_t events);
/* The tenant's end, read (st_db_tenant_end) by a maintenance pass: its
 * open_end when that could not be read at open. */
void st_dbi_open_end_read(st_tenant *t, uint64_t lsn, uint32_t seq);

/* st_db_target.c */
int st_dbi_lease_check(st_off *o, uint64_t lease_epoch, char *err, size_t errlen);
int st_dbi_load_leases(st_db *db, char *err, size_t errlen);

/* st_db_maint.c */
void *st_dbi_maint_main(void *arg);

/* st_db_schema.c */
int st_dbi_schema_batch_put(st_db *db, rocksdb_writebatch_t *wb, st_tenant *t, const st_schema *sv,
                            size_t n, char *err, size_t errlen);
void st_dbi_schema_maintain(st_db *db, st_tenant *t);

#endif
