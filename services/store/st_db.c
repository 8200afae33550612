/* st_db: RocksDB wrapper of walhook-store. See st_db.h. */
#include "st_db.h"
#include "st_bgio.h"
#include "st_gcfilter.h"
#include "st_guard.h"
#include "st_toast.h"
#include "st_walfs.h"

#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh_config.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_util.h"

#define ST_POS_LEN 12     /* lsn(8) seq(4) */
#define ST_OFF_VAL_LEN 20 /* lsn(8) seq(4) epoch(8) */
#define ST_KEY_MAX (1 + ST_NAME_MAX + 1 + ST_NAME_MAX + ST_POS_LEN)

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
    /* the target's dispatcher lease (guarded by wmu) */
    char lease_owner[ST_OWNER_MAX + 1]; /* "" = free */
    uint64_t lease_epoch;               /* 0 = never leased */
    uint32_t lease_ttl_ms;
    int64_t lease_expiry_ms; /* wall clock */
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
    st_off *offs;                /* its consumers, under db->off_lock */
    pthread_mutex_t wm_mu;       /* the fields below */
    uint64_t wm_lsn;             /* GC watermark: never moves back */
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
    _Atomic uint64_t wm_moved_us; /* when its watermark last moved (tenant_watermark) */
    /* (under wm_mu) the position of its newest event written since the
     * store opened ((0,0): none): the GC drops the event at the watermark
     * only below it, so the tenant's last event, which says where it ends,
     * stays. Taken from each group part's last event: an append out of
     * order makes it lower than the real newest, which only keeps more. */
    uint64_t newest_lsn;
    uint32_t newest_seq;
    /* a flush waiting for its readers (gc_drop) sleeps on gc_cv (with
     * wm_mu) until an offset of the tenant moves (off_gen, gc_wake) */
    pthread_cond_t gc_cv;
    _Atomic uint64_t off_gen; /* bumped by every change of its offsets (off_write) */
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
} st_gc_snap;

struct st_db {
    rocksdb_t *rdb;
    rocksdb_options_t *opts; /* DB and default CF; tenant CFs copy it */
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *cache;
    rocksdb_ratelimiter_t *rl;  /* the C API's limiter (fixed rate) when bgio is NULL */
    st_bgio *bgio;              /* the limiter, retuned at runtime; compaction counts */
    int64_t io_rate_fixed;      /* rl's rate */
    rocksdb_writeoptions_t *wo; /* sync = true */

    st_walfs *walfs;                 /* WALs zero-filled ahead (NULL: RocksDB's own files) */
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
    char write_err[200];
    _Atomic uint64_t write_errors;

    /* offset moves (st_db_offset_moves): bumped before every SetOffset,
     * DropOffset, undrop and tenant drop; starts at the open's wall clock */
    _Atomic uint64_t moves;

    _Atomic int64_t toast_bytes; /* store.toast_cache_bytes, per tenant */
    /* lease owners seen (LeaseList's replicas), guarded by owners_mu */
    pthread_mutex_t owners_mu;
    struct {
        char name[ST_OWNER_MAX + 1];
        int64_t seen_ms;
        uint32_t ttl_ms;
    } owners[ST_OWNERS_MAX];
    size_t nowners;
};

int st_db_check_name(const char *name, const char *what, char *err, size_t errlen)
{
    if (name == NULL || name[0] == '\0')
        return wh_seterr(err, errlen, "%s: missing or empty", what);
    if (strlen(name) > ST_NAME_MAX)
        return wh_seterr(err, errlen, "%s: longer than %d bytes", what, ST_NAME_MAX);
    return WH_OK;
}

#define ST_LEVELS 7 /* RocksDB's default number of levels */

static int rerr(char *err, size_t errlen, const char *what, char *rerrmsg)
{
    wh_seterr(err, errlen, "rocksdb %s: %s", what, rerrmsg ? rerrmsg : "unknown error");
    if (rerrmsg)
        rocksdb_free(rerrmsg);
    return WH_ERR;
}

/* ---- keys ---- */

/* A write to tenant may go ahead: the store is not read-only and the name
 * is valid. */
static int writable(st_db *db, const char *tenant, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    return st_db_check_name(tenant, "tenant", err, errlen);
}

static size_t key_prefix(char *k, char type, const char *tenant)
{
    size_t tl = strlen(tenant);
    k[0] = type;
    memcpy(k + 1, tenant, tl);
    k[1 + tl] = '\0';
    return tl + 2;
}

static size_t key_event(char *k, const char *tenant, uint64_t lsn, uint32_t seq)
{
    size_t n = key_prefix(k, 'E', tenant);
    wh_put_be64((uint8_t *)k + n, lsn);
    wh_put_be32((uint8_t *)k + n + 8, seq);
    return n + ST_POS_LEN;
}

/* 'P' tenant \0: the ingestor's snapshot progress (AppendBatch.snapshot_progress,
 * an opaque document), written with the events it goes with. */
static size_t key_progress(char *k, const char *tenant)
{
    return key_prefix(k, 'P', tenant);
}

static size_t key_offset(char *k, const char *tenant, const char *consumer)
{
    size_t n = key_prefix(k, 'O', tenant);
    size_t cl = strlen(consumer);
    memcpy(k + n, consumer, cl);
    return n + cl;
}

static size_t key_durable(char *k, const char *tenant)
{
    size_t tl = strlen(tenant);
    k[0] = 'D';
    memcpy(k + 1, tenant, tl);
    return tl + 1;
}

/* Parses an E key: tenant (copied), lsn, seq. */
static int parse_event_key(const char *k, size_t kl, char *tenant, uint64_t *lsn, uint32_t *seq)
{
    if (kl < 1 + 1 + 1 + ST_POS_LEN || k[0] != 'E')
        return WH_ERR;
    const char *z = memchr(k + 1, '\0', kl - 1);
    if (z == NULL)
        return WH_ERR;
    size_t tl = (size_t)(z - (k + 1));
    if (tl == 0 || tl > ST_NAME_MAX || kl != 1 + tl + 1 + ST_POS_LEN)
        return WH_ERR;
    if (tenant) {
        memcpy(tenant, k + 1, tl);
        tenant[tl] = '\0';
    }
    *lsn = wh_get_be64((const uint8_t *)z + 1);
    *seq = wh_get_be32((const uint8_t *)z + 9);
    return WH_OK;
}

/* ---- GC compaction filter (one factory per tenant's events CF) ---- */

#define ST_GC_REFRESH_US 200      /* the watermark re-read while keys are kept */
#define ST_GC_FLUSH_WAIT_US 40000 /* a flush waits for the readers at most this long, */
#define ST_GC_FLUSH_WAIT_DIV 2    /* ... and half the time since the last flush (any tenant's) */
#define ST_GC_STALL_US 25000      /* ... while the watermark moves this often */
#define ST_GC_STEP_US 5000        /* its longest sleep: an offset commit wakes it */

static void tenant_watermark(st_tenant *t, uint64_t *lsn, uint32_t *seq, int *incl);

static void gc_snap_free(void *state)
{
    free(state);
}

static const char *gc_name(void *state)
{
    WH_UNUSED(state);
    return "walhook-gc";
}

/* Re-reads the tenant's watermark into s (it only moves forward); 1 when
 * it moved. */
static int gc_snap_refresh(st_gc_snap *s, uint64_t now)
{
    uint64_t l;
    uint32_t q;
    int incl;
    s->next_us = now + ST_GC_REFRESH_US;
    tenant_watermark(s->t, &l, &q, &incl);
    int c = wh_pos_cmp(l, q, s->lsn, s->seq);
    if (c < 0 || (c == 0 && incl <= s->incl))
        return 0;
    s->lsn = l;
    s->seq = q;
    s->incl = incl;
    return 1;
}

/* 1 when a later event than (lsn, seq) of t was written */
static int newer_written(st_tenant *t, uint64_t lsn, uint32_t seq)
{
    pthread_mutex_lock(&t->wm_mu);
    int n = wh_pos_cmp(t->newest_lsn, t->newest_seq, lsn, seq) > 0;
    pthread_mutex_unlock(&t->wm_mu);
    return n;
}

/* 1 when the key at (lsn, seq) is garbage under the snapshot's watermark:
 * below it, or at it when every consumer passed it and a later event was
 * written (st_tenant.newest_lsn, newest_seq) */
static int gc_below(const st_gc_snap *s, uint64_t lsn, uint32_t seq)
{
    int c = wh_pos_cmp(lsn, seq, s->lsn, s->seq);
    return c < 0 || (c == 0 && s->incl && newer_written(s->t, lsn, seq));
}

/* Sleeps until an offset of t moved after gen (read before the watermark
 * was), for at most ST_GC_STEP_US and not past end. A commit bumps off_gen,
 * then looks at gc_waiting; this counts itself in gc_waiting, then looks at
 * off_gen (all sequentially consistent), so one of the two sees the other
 * and no wake-up is lost. */
static void gc_sleep(st_tenant *t, uint64_t gen, uint64_t now, uint64_t end)
{
    uint64_t until = now + ST_GC_STEP_US < end ? now + ST_GC_STEP_US : end;
    struct timespec ts = {(time_t)(until / 1000000u), (long)(until % 1000000u) * 1000L};
    pthread_mutex_lock(&t->wm_mu);
    atomic_fetch_add(&t->gc_waiting, 1);
    while (atomic_load(&t->off_gen) == gen && !atomic_load(&t->db->stopping))
        if (pthread_cond_timedwait(&t->gc_cv, &t->wm_mu, &ts) != 0)
            break;
    atomic_fetch_sub(&t->gc_waiting, 1);
    pthread_mutex_unlock(&t->wm_mu);
}

/* After an offset of t changed (off_write): wakes a flush waiting for its
 * readers. Called with o->wmu held (lock order: wmu, then wm_mu). */
static void gc_wake(st_tenant *t)
{
    atomic_fetch_add(&t->off_gen, 1);
    if (atomic_load(&t->gc_waiting)) {
        pthread_mutex_lock(&t->wm_mu);
        pthread_cond_broadcast(&t->gc_cv);
        pthread_mutex_unlock(&t->wm_mu);
    }
}

/* 1 when the event key is below the snapshot's watermark, or at it when
 * every consumer has passed it (gc_below).
 *
 * The watermark is re-read every ST_GC_REFRESH_US while keys are kept: a
 * job's keys come in order, the newest last, and the readers go on while
 * it runs. A flush (wait_end set) may also wait for them, when they are
 * delivering this memtable (its first key is below the watermark: a reader
 * further behind would not reach it in time) and the watermark moved in
 * the last ST_GC_STALL_US (more than the dispatchers' commit interval): it
 * sleeps while its key is not yet delivered, until wait_end, woken by the
 * changes of the tenant's offsets (gc_sleep; at least every
 * ST_GC_STEP_US). A memtable of events the readers are about to deliver
 * is then dropped instead of written to a level-0 file and compacted away
 * later. wait_end is ST_GC_FLUSH_WAIT_US after the flush started, and at
 * most half the time since the last flush of any tenant's events started:
 * the next memtable takes at least about that long to fill, and writes
 * stall only when it is full before this flush ends; and the flush
 * thread, which every column family shares, sleeps for at most half of
 * the time between flushes, whichever tenants they are for. A reader that
 * stopped ends the wait (no movement). It does not wait at the watermark
 * itself: a key kept there is the tenant's newest event, which only a
 * later append, not a commit, lets go. */
static int gc_drop(void *snap, const char *key, size_t key_length)
{
    st_gc_snap *s = snap;
    if (s == NULL || (s->lsn == 0 && s->seq == 0) || !atomic_load(&s->t->db->gc_ready))
        return 0;
    uint64_t lsn;
    uint32_t seq;
    if (parse_event_key(key, key_length, NULL, &lsn, &seq) != WH_OK)
        return 0;
    int first = s->keys++ == 0;
    while (!gc_below(s, lsn, seq)) {
        uint64_t now = wh_now_us();
        uint64_t gen = atomic_load(&s->t->off_gen); /* before the watermark is read */
        int fresh = now >= s->next_us;
        if (fresh && gc_snap_refresh(s, now))
            continue;
        if (first)
            s->wait_end = 0; /* the readers have not reached this memtable */
        if (s->wait_end == 0 || now >= s->wait_end || atomic_load(&s->t->db->stopping) ||
            now - atomic_load(&s->t->wm_moved_us) >= ST_GC_STALL_US ||
            wh_pos_cmp(lsn, seq, s->lsn, s->seq) == 0) {
            /* (at the watermark and kept: the tenant's newest event, which
             * only a later append, not a commit, lets go) */
            s->wait_end = 0; /* no more waiting in this flush */
            return 0;
        }
        if (!fresh && gc_snap_refresh(s, now))
            continue;
        gc_sleep(s->t, gen, now, s->wait_end);
        s->next_us = 0;
    }
    atomic_fetch_add(&s->t->gc_dropped, 1);
    atomic_fetch_add(&s->t->db->gc_dropped, 1);
    return 1;
}

static unsigned char gc_filter(void *state, int level, const char *key, size_t key_length,
                               const char *existing_value, size_t value_length, char **new_value,
                               size_t *new_value_length, unsigned char *value_changed)
{
    WH_UNUSED(level);
    WH_UNUSED(existing_value);
    WH_UNUSED(value_length);
    WH_UNUSED(new_value);
    WH_UNUSED(new_value_length);
    *value_changed = 0;
    return (unsigned char)gc_drop(state, key, key_length);
}

static void gc_factory_destroy(void *state)
{
    WH_UNUSED(state); /* the tenant belongs to the db */
}

static const char *gc_factory_name(void *state)
{
    WH_UNUSED(state);
    return "walhook-gc-factory";
}

/* The tenant's watermark, moved forward to min(offsets of its live
 * consumers not marked NEEDS_SNAPSHOT) and to the retention floor; never
 * back. No consumer and no floor: (0,0), nothing is dropped. */
static void tenant_watermark(st_tenant *t, uint64_t *lsn, uint32_t *seq, int *incl)
{
    st_db *db = t->db;
    int have = 0;
    uint64_t ml = 0;
    uint32_t ms = 0;
    pthread_rwlock_rdlock(&db->off_lock);
    for (st_off *o = t->offs; o != NULL; o = o->tnext) {
        pthread_mutex_lock(&o->vmu);
        int live = o->state == ST_OFF_LIVE && !o->needs_snapshot;
        uint64_t l = o->lsn;
        uint32_t q = o->seq;
        pthread_mutex_unlock(&o->vmu);
        if (live && (!have || wh_pos_cmp(l, q, ml, ms) < 0)) {
            ml = l;
            ms = q;
            have = 1;
        }
    }
    pthread_rwlock_unlock(&db->off_lock);
    pthread_mutex_lock(&t->wm_mu);
    /* not while the offsets load (gc_ready): some consumers are not known yet */
    int c = have && atomic_load(&db->gc_ready) ? wh_pos_cmp(ml, ms, t->wm_lsn, t->wm_seq) : -1;
    if (c > 0 || (c == 0 && !t->wm_incl)) {
        /* a consumer's offset is the last event it passed: that one goes too */
        t->wm_lsn = ml;
        t->wm_seq = ms;
        t->wm_incl = 1;
        atomic_store(&t->wm_moved_us, wh_now_us());
    }
    if (wh_pos_cmp(t->floor_lsn, t->floor_seq, t->wm_lsn, t->wm_seq) > 0) {
        t->wm_lsn = t->floor_lsn; /* the first event kept */
        t->wm_seq = t->floor_seq;
        t->wm_incl = 0;
    }
    *lsn = t->wm_lsn;
    *seq = t->wm_seq;
    if (incl)
        *incl = t->wm_incl;
    pthread_mutex_unlock(&t->wm_mu);
}

/* The tenant's watermark now, for one flush (flush 1: it may wait for the
 * readers, see gc_drop) or compaction job; NULL when out of memory
 * (nothing is dropped) */
static void *gc_snap_take(void *state, int flush)
{
    st_tenant *t = state;
    st_gc_snap *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->t = t;
    uint64_t now = wh_now_us();
    gc_snap_refresh(s, now);
    if (flush) {
        uint64_t last = atomic_exchange(&t->db->gc_flush_us, now);
        uint64_t wait = last != 0 && now > last ? (now - last) / ST_GC_FLUSH_WAIT_DIV : 0;
        if (wait > ST_GC_FLUSH_WAIT_US)
            wait = ST_GC_FLUSH_WAIT_US;
        if (wait > 0 && (s->lsn != 0 || s->seq != 0))
            s->wait_end = now + wait;
    }
    return s;
}

/* Called by RocksDB at the start of each compaction of the events CF when
 * st_gcfilter cannot be installed. */
static rocksdb_compactionfilter_t *gc_factory_create(void *state,
                                                     rocksdb_compactionfiltercontext_t *ctx)
{
    WH_UNUSED(ctx);
    st_gc_snap *s = gc_snap_take(state, 0);
    if (s == NULL)
        return NULL;
    return rocksdb_compactionfilter_create(s, gc_snap_free, gc_filter, gc_name);
}

/* The filter applied at flush and compaction (st_gcfilter) */
static const st_gcfilter_ops gc_ops = {gc_snap_take, gc_snap_free, gc_drop};

/* ---- tenants and their column families ---- */

#define ST_CF_EVENTS 'e'
#define ST_CF_META 'm'
#define ST_CF_STAGE 's'
#define ST_CF_TOAST 't'

static void cf_name(char *out, size_t len, char kind, const char *tenant)
{
    snprintf(out, len, "%c:%s", kind, tenant);
}

/* Finds the tenant; adds it (without column families) when add. NULL when
 * absent, or out of memory. */
static st_tenant *tenant_find(st_db *db, const char *name, int add)
{
    pthread_rwlock_rdlock(&db->ten_lock);
    st_tenant *t = db->tenants;
    while (t != NULL && strcmp(t->name, name) != 0)
        t = t->next;
    pthread_rwlock_unlock(&db->ten_lock);
    if (t != NULL || !add)
        return t;
    pthread_rwlock_wrlock(&db->ten_lock);
    for (t = db->tenants; t != NULL && strcmp(t->name, name) != 0;)
        t = t->next;
    if (t == NULL && db->ntenants < ST_MAX_TENANTS && (t = calloc(1, sizeof(*t))) != NULL) {
        t->db = db;
        wh_strlcpy(t->name, name, sizeof(t->name));
        pthread_rwlock_init(&t->lock, NULL);
        pthread_mutex_init(&t->wm_mu, NULL);
        wh_cond_init_monotonic(&t->gc_cv);
        t->stats.oldest_age_ms = -1;
        t->tc = st_toast_new();
        t->next = db->tenants;
        db->tenants = t;
        db->ntenants++;
    }
    pthread_rwlock_unlock(&db->ten_lock);
    return t;
}

/* Options of the tenant's events CF: the DB's, with its GC filter. */
static rocksdb_options_t *events_options(st_db *db, st_tenant *t)
{
    rocksdb_options_t *o = rocksdb_options_create_copy(db->opts);
    if (!db->read_only) {
        /* the options own the factory (shared_ptr); its state is the tenant.
         * Flushes drop delivered events too; else compactions only. */
        char e[WH_ERRLEN];
        if (st_gcfilter_install(o, t, &gc_ops, e, sizeof(e)) != WH_OK) {
            static atomic_int warned;
            if (atomic_exchange(&warned, 1) == 0)
                wh_warn("%s", e);
            rocksdb_compactionfilterfactory_t *f = rocksdb_compactionfilterfactory_create(
                t, gc_factory_destroy, gc_factory_create, gc_factory_name);
            rocksdb_options_set_compaction_filter_factory(o, f);
        }
    }
    return o;
}

/* Caller holds t->lock for writing. */
static int tenant_cf_create(st_tenant *t, char *err, size_t errlen)
{
    st_db *db = t->db;
    char name[ST_NAME_MAX + 3];
    char *e = NULL;
    if (t->ev == NULL) {
        rocksdb_options_t *o = events_options(db, t);
        cf_name(name, sizeof(name), ST_CF_EVENTS, t->name);
        t->ev = rocksdb_create_column_family(db->rdb, o, name, &e);
        rocksdb_options_destroy(o);
        t->cf_gen++;
        if (e)
            return rerr(err, errlen, "create column family", e);
    }
    if (t->meta == NULL) {
        cf_name(name, sizeof(name), ST_CF_META, t->name);
        t->meta = rocksdb_create_column_family(db->rdb, db->opts, name, &e);
        if (e)
            return rerr(err, errlen, "create column family", e);
    }
    wh_info("tenant %s: column families created", t->name);
    return WH_OK;
}

/* Takes the tenant's lock for reading with its column families present:
 * *out = the tenant (release with ten_done), or NULL when the tenant has
 * none and create is 0. With create, they are made first. */
static int ten_open(st_db *db, const char *tenant, int create, st_tenant **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (create && db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    st_tenant *t = tenant_find(db, tenant, create);
    if (t == NULL)
        return create ? wh_seterr(err, errlen, "tenant: too many tenants (max %d) or out of memory",
                                  ST_MAX_TENANTS)
                      : WH_OK;
    for (;;) {
        pthread_rwlock_rdlock(&t->lock);
        if (t->ev != NULL && t->meta != NULL) {
            *out = t;
            return WH_OK;
        }
        pthread_rwlock_unlock(&t->lock);
        if (!create)
            return WH_OK;
        pthread_rwlock_wrlock(&t->lock);
        int rc = tenant_cf_create(t, err, errlen);
        pthread_rwlock_unlock(&t->lock);
        if (rc != WH_OK)
            return WH_ERR;
    }
}

static void ten_done(st_tenant *t)
{
    if (t != NULL)
        pthread_rwlock_unlock(&t->lock);
}

static void tenants_free(st_db *db)
{
    st_tenant *t = db->tenants;
    while (t != NULL) {
        st_tenant *n = t->next;
        pthread_rwlock_destroy(&t->lock);
        pthread_mutex_destroy(&t->wm_mu);
        pthread_cond_destroy(&t->gc_cv);
        st_toast_free(t->tc);
        free(t);
        t = n;
    }
    db->tenants = NULL;
}

/* ---- offsets table (hash) ---- */

static uint32_t off_hash(const char *tenant, const char *consumer)
{
    uint32_t h = 2166136261u; /* FNV-1a over tenant \0 consumer */
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++)
        h = (h ^ *p) * 16777619u;
    h = (h ^ 0) * 16777619u;
    for (const unsigned char *p = (const unsigned char *)consumer; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* Caller holds off_lock (read or write). */
static st_off *off_lookup(st_db *db, uint32_t h, const char *tenant, const char *consumer)
{
    if (db->nbuckets == 0)
        return NULL;
    for (st_off *o = db->buckets[h & (db->nbuckets - 1)]; o != NULL; o = o->next)
        if (o->hash == h && strcmp(o->tenant, tenant) == 0 && strcmp(o->consumer, consumer) == 0)
            return o;
    return NULL;
}

static st_off *off_find(st_db *db, const char *tenant, const char *consumer)
{
    uint32_t h = off_hash(tenant, consumer);
    pthread_rwlock_rdlock(&db->off_lock);
    st_off *o = off_lookup(db, h, tenant, consumer);
    pthread_rwlock_unlock(&db->off_lock);
    return o;
}

/* Caller holds off_lock for writing. Doubles the bucket array at load 1. */
static int off_grow(st_db *db)
{
    size_t nb = db->nbuckets ? db->nbuckets * 2 : 256;
    st_off **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return WH_ERR;
    for (size_t i = 0; i < db->nbuckets; i++) {
        st_off *o = db->buckets[i];
        while (o != NULL) {
            st_off *n = o->next;
            o->next = b[o->hash & (nb - 1)];
            b[o->hash & (nb - 1)] = o;
            o = n;
        }
    }
    free(db->buckets);
    db->buckets = b;
    db->nbuckets = nb;
    return WH_OK;
}

/* Finds or adds the consumer (state ST_OFF_NEW when added). NULL when the
 * table is full or out of memory (err says which). */
static st_off *off_get(st_db *db, const char *tenant, const char *consumer, char *err,
                       size_t errlen)
{
    uint32_t h = off_hash(tenant, consumer);
    pthread_rwlock_rdlock(&db->off_lock);
    st_off *o = off_lookup(db, h, tenant, consumer);
    pthread_rwlock_unlock(&db->off_lock);
    if (o != NULL)
        return o;
    st_tenant *t = tenant_find(db, tenant, 1);
    if (t == NULL) {
        wh_seterr(err, errlen, "tenant: too many tenants (max %d) or out of memory",
                  ST_MAX_TENANTS);
        return NULL;
    }
    pthread_rwlock_wrlock(&db->off_lock);
    o = off_lookup(db, h, tenant, consumer);
    if (o == NULL) {
        if (db->noffs >= ST_MAX_CONSUMERS) {
            wh_seterr(err, errlen, "consumer: too many consumers (max %d)", ST_MAX_CONSUMERS);
        } else if (db->noffs >= db->nbuckets && off_grow(db) != WH_OK) {
            wh_seterr(err, errlen, "out of memory");
        } else if ((o = calloc(1, sizeof(*o))) == NULL) {
            wh_seterr(err, errlen, "out of memory");
        } else {
            o->hash = h;
            wh_strlcpy(o->tenant, tenant, sizeof(o->tenant));
            wh_strlcpy(o->consumer, consumer, sizeof(o->consumer));
            pthread_mutex_init(&o->wmu, NULL);
            pthread_mutex_init(&o->vmu, NULL);
            o->next = db->buckets[h & (db->nbuckets - 1)];
            db->buckets[h & (db->nbuckets - 1)] = o;
            o->ten = t;
            o->tnext = t->offs;
            t->offs = o;
            db->noffs++;
        }
    }
    pthread_rwlock_unlock(&db->off_lock);
    return o;
}

static void off_free_all(st_db *db)
{
    for (size_t i = 0; i < db->nbuckets; i++) {
        st_off *o = db->buckets[i];
        while (o != NULL) {
            st_off *n = o->next;
            pthread_mutex_destroy(&o->wmu);
            pthread_mutex_destroy(&o->vmu);
            free(o);
            o = n;
        }
    }
    free(db->buckets);
    db->buckets = NULL;
    db->nbuckets = db->noffs = 0;
}

typedef struct off_val {
    uint64_t lsn;
    uint32_t seq;
    uint64_t epoch;
    int state;
} off_val;

static off_val off_read(st_off *o)
{
    pthread_mutex_lock(&o->vmu);
    off_val v = {o->lsn, o->seq, o->epoch, o->state};
    pthread_mutex_unlock(&o->vmu);
    return v;
}

static void gc_wake(st_tenant *t);

/* Every change of an offset in memory; wakes a flush waiting for its
 * tenant's readers (gc_wake). */
static void off_write(st_off *o, off_val v)
{
    pthread_mutex_lock(&o->vmu);
    o->lsn = v.lsn;
    o->seq = v.seq;
    o->epoch = v.epoch;
    o->state = v.state;
    pthread_mutex_unlock(&o->vmu);
    if (o->ten != NULL)
        gc_wake(o->ten);
}

typedef int (*meta_fn)(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                       char *err, size_t errlen);

/* Ends an iteration: destroys IT and returns RC, or, when RC is WH_OK and
 * the iterator met an error, that error (WHAT names the work). */
static int iter_end(rocksdb_iterator_t *it, int rc, const char *what, char *err, size_t errlen)
{
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    if (e && rc == WH_OK)
        return rerr(err, errlen, what, e);
    if (e)
        rocksdb_free(e);
    return rc;
}

/* iter_end for an iteration of its own read options: destroys both. */
static int iter_done(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro, const char *what, char *err,
                     size_t errlen)
{
    int rc = iter_end(it, WH_OK, what, err, errlen);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* Calls fn for each key of `type` in every tenant's meta CF (at open). */
static int meta_scan(st_db *db, char type, meta_fn fn, char *err, size_t errlen)
{
    int rc = WH_OK;
    for (st_tenant *t = db->tenants; t != NULL && rc == WH_OK; t = t->next) {
        if (t->meta == NULL)
            continue;
        char lo[1] = {type}, hi[1] = {(char)(type + 1)};
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 1);
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->meta);
        for (rocksdb_iter_seek(it, lo, 1); rocksdb_iter_valid(it) && rc == WH_OK;
             rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            rc = fn(db, t, k, kl, v, vl, err, errlen);
        }
        rc = iter_end(it, rc, "loading the tenant's keys", err, errlen);
        rocksdb_readoptions_destroy(ro);
    }
    return rc;
}

/* Splits a "<type> tenant \0 consumer" key; WH_ERR when malformed. */
static int split_consumer_key(const char *k, size_t kl, char *tenant, char *consumer)
{
    const char *z = kl > 1 ? memchr(k + 1, '\0', kl - 1) : NULL;
    if (z == NULL)
        return WH_ERR;
    size_t tl = (size_t)(z - (k + 1)), cl = kl - tl - 2;
    if (tl == 0 || tl > ST_NAME_MAX || cl == 0 || cl > ST_NAME_MAX ||
        memchr(z + 1, '\0', cl) != NULL)
        return WH_ERR;
    memcpy(tenant, k + 1, tl);
    tenant[tl] = '\0';
    memcpy(consumer, z + 1, cl);
    consumer[cl] = '\0';
    return WH_OK;
}

static int load_offset(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                       char *err, size_t errlen)
{
    WH_UNUSED(t);
    char tenant[ST_NAME_MAX + 1], consumer[ST_NAME_MAX + 1];
    if ((vl != ST_POS_LEN && vl != ST_OFF_VAL_LEN && vl != ST_OFF_VAL_LEN + 1) ||
        split_consumer_key(k, kl, tenant, consumer) != WH_OK)
        return WH_OK;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    /* 12 bytes: written before epochs existed (epoch 0); 21: flags */
    off_val ov = {wh_get_be64((const uint8_t *)v), wh_get_be32((const uint8_t *)v + 8),
                  vl >= ST_OFF_VAL_LEN ? wh_get_be64((const uint8_t *)v + 12) : 0, ST_OFF_LIVE};
    off_write(o, ov);
    o->needs_snapshot = vl == ST_OFF_VAL_LEN + 1 && (v[ST_OFF_VAL_LEN] & 1);
    return WH_OK;
}

/* 'N' tenant \0 consumer -> since_ms(8, wall clock) kind(1): why and when a
 * consumer was marked NEEDS_SNAPSHOT (ns_note_put); used while the O value
 * says it is marked. */
static int load_ns_note(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                        char *err, size_t errlen)
{
    WH_UNUSED(t);
    WH_UNUSED(err);
    WH_UNUSED(errlen);
    char tenant[ST_NAME_MAX + 1], consumer[ST_NAME_MAX + 1];
    if (vl != 9 || split_consumer_key(k, kl, tenant, consumer) != WH_OK)
        return WH_OK;
    st_off *o = off_find(db, tenant, consumer);
    if (o != NULL && o->needs_snapshot) {
        atomic_store(&o->ns_since_ms, (int64_t)wh_get_be64((const uint8_t *)v));
        atomic_store(&o->ns_kind,
                     (uint8_t)v[8] <= ST_NS_DISCONNECTED ? (uint8_t)v[8] : ST_NS_UNKNOWN);
    }
    return WH_OK;
}

static int load_watermark(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v,
                          size_t vl, char *err, size_t errlen)
{
    WH_UNUSED(db);
    WH_UNUSED(err);
    WH_UNUSED(errlen);
    if (vl == ST_POS_LEN && kl == 1 + strlen(t->name) && memcmp(k + 1, t->name, kl - 1) == 0) {
        uint64_t l = wh_get_be64((const uint8_t *)v);
        uint32_t q = wh_get_be32((const uint8_t *)v + 8);
        /* under wm_mu: a flush's GC filter may already run (the offsets are
         * loaded first); W may be a retention floor, whose event stays */
        pthread_mutex_lock(&t->wm_mu);
        t->wm_stored_lsn = l;
        t->wm_stored_seq = q;
        if (wh_pos_cmp(l, q, t->wm_lsn, t->wm_seq) >= 0) {
            t->wm_lsn = l;
            t->wm_seq = q;
            t->wm_incl = 0;
        }
        pthread_mutex_unlock(&t->wm_mu);
    }
    return WH_OK;
}

static int load_offsets(st_db *db, char *err, size_t errlen)
{
    if (meta_scan(db, 'O', load_offset, err, errlen) != WH_OK ||
        meta_scan(db, 'N', load_ns_note, err, errlen) != WH_OK ||
        meta_scan(db, 'W', load_watermark, err, errlen) != WH_OK)
        return WH_ERR;
    return WH_OK;
}

static int load_leases(st_db *db, char *err, size_t errlen);

static void *maint_main(void *arg);

/* Opens the DB with every column family it has: "default" (state document,
 * and the keys of stores older than per-tenant CFs until migrate_default
 * moved them), "e:<tenant>" and "m:<tenant>". */
static rocksdb_t *open_cfs(st_db *db, const char *path, char **e)
{
    size_t n = 0;
    char *le = NULL;
    char **names = rocksdb_list_column_families(db->opts, path, &n, &le);
    if (le != NULL) { /* no DB yet (the array is allocated all the same) */
        rocksdb_free(le);
        if (names)
            rocksdb_list_column_families_destroy(names, n);
        names = NULL;
        n = 0;
    }
    size_t total = n ? n : 1;
    const char **nv = calloc(total, sizeof(*nv));
    const rocksdb_options_t **ov = calloc(total, sizeof(*ov));
    rocksdb_options_t **own = calloc(total, sizeof(*own));
    rocksdb_column_family_handle_t **hv = calloc(total, sizeof(*hv));
    st_tenant **tv = calloc(total, sizeof(*tv));
    rocksdb_t *r = NULL;
    if (!nv || !ov || !own || !hv || !tv) {
        *e = strdup("out of memory");
        goto out;
    }
    if (n == 0) {
        nv[0] = "default";
        ov[0] = db->opts;
    }
    for (size_t i = 0; i < n; i++) {
        nv[i] = names[i];
        ov[i] = db->opts;
        size_t l = strlen(names[i]);
        if (l > 2 && l <= 2 + ST_NAME_MAX && names[i][1] == ':' &&
            (names[i][0] == ST_CF_EVENTS || names[i][0] == ST_CF_META ||
             names[i][0] == ST_CF_STAGE || names[i][0] == ST_CF_TOAST)) {
            tv[i] = tenant_find(db, names[i] + 2, 1);
            if (tv[i] == NULL) {
                *e = strdup("out of memory");
                goto out;
            }
            if (names[i][0] == ST_CF_EVENTS)
                ov[i] = own[i] = events_options(db, tv[i]);
        }
    }
    if (db->read_only)
        r = rocksdb_open_for_read_only_column_families(db->opts, path, (int)total, nv, ov, hv, 0,
                                                       e);
    else
        r = rocksdb_open_column_families(db->opts, path, (int)total, nv, ov, hv, e);
    if (r == NULL)
        goto out;
    db->cf_other = calloc(total, sizeof(*db->cf_other));
    for (size_t i = 0; i < total; i++) {
        if (strcmp(nv[i], "default") == 0)
            db->cf_default = hv[i];
        else if (tv[i] != NULL && nv[i][0] == ST_CF_EVENTS)
            tv[i]->ev = hv[i];
        else if (tv[i] != NULL && nv[i][0] == ST_CF_STAGE)
            tv[i]->stage = hv[i];
        else if (tv[i] != NULL && nv[i][0] == ST_CF_TOAST)
            tv[i]->toast = hv[i];
        else if (tv[i] != NULL)
            tv[i]->meta = hv[i];
        else if (db->cf_other != NULL)
            db->cf_other[db->ncf_other++] = hv[i];
        else
            rocksdb_column_family_handle_destroy(hv[i]);
    }
out:
    for (size_t i = 0; own != NULL && i < total; i++)
        if (own[i])
            rocksdb_options_destroy(own[i]);
    if (names)
        rocksdb_list_column_families_destroy(names, n);
    free(nv);
    free(ov);
    free(own);
    free(hv);
    free(tv);
    return r;
}

/* Stores made before per-tenant column families kept every key in the
 * default CF. Their tenant keys (E O D Q R L) are copied into the tenants'
 * CFs in synced batches, then removed from the default CF with one range
 * delete per key type. A crash in between repeats the copy (same bytes). */
#define ST_MIGRATE_BATCH (4u << 20)
static int migrate_default(st_db *db, char *err, size_t errlen)
{
    static const char types[] = "DELOQR";
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf_default);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint64_t moved = 0;
    int rc = WH_OK;
    size_t bytes = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == WH_OK;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl < 2 || strchr(types, k[0]) == NULL)
            continue;
        char tenant[ST_NAME_MAX + 1];
        const char *z = memchr(k + 1, '\0', kl - 1);
        size_t tl = k[0] == 'D' ? kl - 1 : (z ? (size_t)(z - (k + 1)) : 0);
        if (tl == 0 || tl > ST_NAME_MAX)
            continue;
        memcpy(tenant, k + 1, tl);
        tenant[tl] = '\0';
        st_tenant *t = tenant_find(db, tenant, 1);
        if (t == NULL) {
            rc = wh_seterr(err, errlen, "out of memory");
            break;
        }
        if ((t->ev == NULL || t->meta == NULL) && tenant_cf_create(t, err, errlen) != WH_OK) {
            rc = WH_ERR;
            break;
        }
        rocksdb_writebatch_put_cf(wb, k[0] == 'E' ? t->ev : t->meta, k, kl, v, vl);
        moved++;
        bytes += kl + vl;
        if (bytes >= ST_MIGRATE_BATCH) {
            char *e = NULL;
            rocksdb_write(db->rdb, db->wo, wb, &e);
            if (e)
                rc = rerr(err, errlen, "migrating to column families", e);
            rocksdb_writebatch_clear(wb);
            bytes = 0;
        }
    }
    rc = iter_end(it, rc, "migrating to column families", err, errlen);
    char *e = NULL;
    if (rc == WH_OK && moved > 0) {
        for (const char *p = types; *p; p++) {
            char lo[1] = {*p}, hi[1] = {(char)(*p + 1)};
            rocksdb_writebatch_delete_range_cf(wb, db->cf_default, lo, 1, hi, 1);
        }
        rocksdb_write(db->rdb, db->wo, wb, &e);
        if (e)
            rc = rerr(err, errlen, "migrating to column families", e);
        else
            wh_info("moved %" PRIu64 " keys of the default column family into per-tenant "
                    "column families",
                    moved);
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}

/* ---- open / close ---- */

int st_db_open(st_db **out, const st_db_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->data_dir == NULL || o->data_dir[0] == '\0')
        return wh_seterr(err, errlen, "data_dir: empty");
    if (o->cache_bytes < 0 || o->write_buffer_bytes <= 0)
        return wh_seterr(err, errlen, "store.cache_bytes/store.write_buffer_bytes: out of range");

    char path[WH_PATH_MAX + 16];
    if ((size_t)snprintf(path, sizeof(path), "%s/rocksdb", o->data_dir) >= sizeof(path))
        return wh_seterr(err, errlen, "data_dir: path too long");
    if (!o->read_only && wh_mkdirs(o->data_dir, 0700, err, errlen) != WH_OK)
        return WH_ERR;

    st_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return wh_seterr(err, errlen, "out of memory");
    db->read_only = o->read_only;
    struct timespec now_ts;
    clock_gettime(CLOCK_REALTIME, &now_ts);
    atomic_store(&db->moves, (uint64_t)now_ts.tv_sec * 1000000u + (uint64_t)now_ts.tv_nsec / 1000u);
    db->write_buffer_bytes = o->write_buffer_bytes;
    db->gc_slice_bytes = (uint64_t)o->write_buffer_bytes * ST_GC_SLICE_BUFFERS;
    pthread_mutex_init(&db->cq_mu, NULL);
    db->cq_share = ST_COMMIT_SHARE_BYTES;
    st_guard_init(&db->guard, ST_ISOLATION_TARGET_PCT);
    pthread_rwlock_init(&db->off_lock, NULL);
    pthread_rwlock_init(&db->ten_lock, NULL);
    pthread_mutex_init(&db->maint_mu, NULL);
    wh_cond_init_monotonic(&db->maint_cond);
    pthread_mutex_init(&db->health_mu, NULL);
    pthread_mutex_init(&db->owners_mu, NULL);
    pthread_mutex_init(&db->sync_mu, NULL);
    pthread_mutex_init(&db->schema_mu, NULL);
    atomic_store(&db->schema_prune, 1);
    wh_cond_init_monotonic(&db->sync_cv);
    db->offset_sync_wait_us = o->offset_sync_wait_us > 0 ? o->offset_sync_wait_us : 0;

    /* Every size here is one the memory budget declares (wh_budget.h,
     * wh_budget_plan_store): change both together. */
    int jobs = o->background_jobs > 0 ? o->background_jobs : 2;
    int64_t io_rate = o->io_rate_bytes > 0 ? o->io_rate_bytes : 128LL * 1024 * 1024;
    db->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(db->opts, 1);
    rocksdb_options_set_write_buffer_size(db->opts, (size_t)o->write_buffer_bytes);
    rocksdb_options_set_max_write_buffer_number(db->opts, ST_MAX_WRITE_BUFFERS);
    rocksdb_options_set_arena_block_size(db->opts,
                                         (size_t)wh_budget_arena_block(o->write_buffer_bytes));
    /* memtables of every column family (two per tenant) together: past
     * this RocksDB flushes the largest, so the store's memtable memory does
     * not grow with the number of tenants (the budget's "memtables") */
    rocksdb_options_set_db_write_buffer_size(db->opts,
                                             (size_t)o->write_buffer_bytes * ST_MAX_WRITE_BUFFERS);
    /* flushes max(1, jobs/4), compactions the rest; RocksDB queues the
     * column families that need a compaction and puts one back at the tail
     * after each job, so tenants take turns on the compaction threads */
    rocksdb_options_set_max_background_jobs(db->opts, jobs);
    rocksdb_options_set_max_open_files(db->opts, WH_BUDGET_ST_MAX_OPEN_FILES);
    rocksdb_options_set_level0_file_num_compaction_trigger(db->opts, WH_BUDGET_ST_L0_TRIGGER);
    rocksdb_options_set_writable_file_max_buffer_size(db->opts, WH_BUDGET_ST_FILE_BUFFER_BYTES);
    /* one automatic compaction job holds a thread for a bounded amount of
     * work, so another tenant's turn comes soon */
    rocksdb_options_set_max_compaction_bytes(db->opts, ST_MAX_COMPACTION_BYTES);
    rocksdb_options_set_keep_log_file_num(db->opts, 2);
    /* FATAL only: the info LOG lives on the data disk, and with Debian's
     * librocksdb (assertions enabled) a LOG file whose write failed (disk
     * full) aborts the process at its next log line (seen in
     * SstFileManagerImpl::ClearError while recovering from "No space left
     * on device"). The store reports its own errors. */
    rocksdb_options_set_info_log_level(db->opts, 4 /* FATAL */);
    rocksdb_options_set_stats_dump_period_sec(db->opts, 0);
    rocksdb_options_set_max_total_wal_size(db->opts, (uint64_t)o->write_buffer_bytes * 4);

    db->cache = rocksdb_cache_create_lru((size_t)(o->cache_bytes > 0 ? o->cache_bytes : 1 << 20));
    db->bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(db->bbto, db->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(db->bbto, 1);
    /* Events are written once, read once in order, and read back once more
     * by the compaction that drops them: 64 KiB blocks and 256 KiB
     * compaction readahead (a buffer per input file: more costs PSS) make
     * that one pread per 256 KiB instead of one per 4 KiB block (syscalls
     * dominated the compaction's CPU). */
    rocksdb_block_based_options_set_block_size(db->bbto, WH_BUDGET_ST_BLOCK_BYTES);
    rocksdb_options_compaction_readahead_size(db->opts, WH_BUDGET_ST_READAHEAD_BYTES);
    rocksdb_options_set_block_based_table_factory(db->opts, db->bbto);

    if (!o->read_only) {
        /* compaction writes of every tenant together (RocksDB's rate
         * limiter is per DB; appends and, with st_bgio, flushes are not
         * limited by it) */
        char e[WH_ERRLEN];
        db->bgio = st_bgio_install(db->opts, io_rate, e, sizeof(e));
        if (db->bgio == NULL) {
            wh_warn("%s", e);
            db->rl = rocksdb_ratelimiter_create(io_rate, 100 * 1000, 10);
            rocksdb_options_set_ratelimiter(db->opts, db->rl);
            db->io_rate_fixed = io_rate;
        }
        if (o->wal_zero_ahead_bytes > 0) {
            db->walfs = st_walfs_install(db->opts, (uint64_t)o->wal_zero_ahead_bytes, e, sizeof(e));
            if (db->walfs == NULL)
                wh_warn("%s", e);
        }
    }

    char *e = NULL;
    if (o->read_only) {
        db->rdb = open_cfs(db, path, &e);
    } else {
        /* LZ4 if this librocksdb was built with it, otherwise no
         * compression; and none in levels 0 and 1: delivered events die
         * there (GC filter in the first compaction), so compressing them
         * on flush and decompressing them in that compaction is CPU spent
         * for nothing (a fifth of the store's CPU on a backlog); a backlog
         * kept longer is compressed from level 2 on. */
        int levels[ST_LEVELS];
        for (int i = 0; i < ST_LEVELS; i++)
            levels[i] = i < 2 ? rocksdb_no_compression : rocksdb_lz4_compression;
        rocksdb_options_set_num_levels(db->opts, ST_LEVELS);
        rocksdb_options_set_compression_per_level(db->opts, levels, ST_LEVELS);
        db->rdb = open_cfs(db, path, &e);
        if (db->rdb == NULL && e && strstr(e, "ompression")) {
            wh_warn("lz4 not available in librocksdb, storing uncompressed");
            rocksdb_free(e);
            e = NULL;
            for (int i = 0; i < ST_LEVELS; i++)
                levels[i] = rocksdb_no_compression;
            rocksdb_options_set_compression_per_level(db->opts, levels, ST_LEVELS);
            db->rdb = open_cfs(db, path, &e);
        }
    }
    if (db->rdb == NULL) {
        char msg[WH_ERRLEN];
        rerr(msg, sizeof(msg), "open", e);
        wh_seterr(err, errlen, "%s (%s)", msg, path);
        st_db_close(db);
        return WH_ERR;
    }

    db->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(db->wo, 1);
    db->wo_lazy = rocksdb_writeoptions_create();
    db->ro = rocksdb_readoptions_create();

    if ((!db->read_only && migrate_default(db, err, errlen) != WH_OK) ||
        load_offsets(db, err, errlen) != WH_OK || load_leases(db, err, errlen) != WH_OK) {
        st_db_close(db);
        return WH_ERR;
    }
    /* a flush or compaction that ran while the offsets loaded dropped
     * nothing: a watermark over some consumers could pass another's */
    atomic_store(&db->gc_idle_ms, ST_GC_IDLE_MS);
    atomic_store(&db->gc_ready, 1);
    if (!db->read_only) {
        if (pthread_create(&db->maint, NULL, maint_main, db) != 0) {
            wh_seterr(err, errlen, "cannot start the store's maintenance thread");
            st_db_close(db);
            return WH_ERR;
        }
        db->maint_started = 1;
    }
    *out = db;
    return WH_OK;
}

/* Teardown order: the DB (waits for background work, which may still call
 * the GC factory with db as state), then options, table options, cache,
 * rate limiter, then our own tables and locks. */
void st_db_close(st_db *db)
{
    if (db == NULL)
        return;
    if (db->maint_started) {
        pthread_mutex_lock(&db->maint_mu);
        db->maint_stop = 1;
        atomic_store(&db->stopping, 1);
        pthread_cond_signal(&db->maint_cond);
        pthread_mutex_unlock(&db->maint_mu);
        /* a garbage-range compaction in progress returns at once */
        rocksdb_disable_manual_compaction(db->rdb);
        pthread_join(db->maint, NULL);
    }
    if (db->rdb) {
        rocksdb_cancel_all_background_work(db->rdb, 1);
        for (st_tenant *t = db->tenants; t != NULL; t = t->next) {
            if (t->ev)
                rocksdb_column_family_handle_destroy(t->ev);
            if (t->meta)
                rocksdb_column_family_handle_destroy(t->meta);
            if (t->stage)
                rocksdb_column_family_handle_destroy(t->stage);
            if (t->toast)
                rocksdb_column_family_handle_destroy(t->toast);
            t->ev = t->meta = t->stage = t->toast = NULL;
        }
        for (size_t i = 0; i < db->ncf_other; i++)
            rocksdb_column_family_handle_destroy(db->cf_other[i]);
        if (db->cf_default)
            rocksdb_column_family_handle_destroy(db->cf_default);
        rocksdb_close(db->rdb);
    }
    free(db->cf_other);
    if (db->wo)
        rocksdb_writeoptions_destroy(db->wo);
    if (db->wo_lazy)
        rocksdb_writeoptions_destroy(db->wo_lazy);
    if (db->ro)
        rocksdb_readoptions_destroy(db->ro);
    if (db->opts)
        rocksdb_options_destroy(db->opts);
    if (db->bbto)
        rocksdb_block_based_options_destroy(db->bbto);
    if (db->cache)
        rocksdb_cache_destroy(db->cache);
    if (db->rl)
        rocksdb_ratelimiter_destroy(db->rl);
    st_bgio_free(db->bgio);
    st_walfs_free(db->walfs);
    off_free_all(db);
    tenants_free(db);
    pthread_rwlock_destroy(&db->ten_lock);
    pthread_mutex_destroy(&db->maint_mu);
    pthread_cond_destroy(&db->maint_cond);
    pthread_mutex_destroy(&db->cq_mu);
    st_guard_destroy(&db->guard);
    pthread_rwlock_destroy(&db->off_lock);
    pthread_mutex_destroy(&db->health_mu);
    pthread_mutex_destroy(&db->owners_mu);
    pthread_mutex_destroy(&db->sync_mu);
    pthread_mutex_destroy(&db->schema_mu);
    pthread_cond_destroy(&db->sync_cv);
    free(db);
}

/* ---- write health ---- */

/* Records the outcome of a synced RocksDB write: err is RocksDB's message,
 * or NULL when it succeeded. */
static void note_write(st_db *db, const char *err)
{
    pthread_mutex_lock(&db->health_mu);
    if (err != NULL) {
        atomic_fetch_add(&db->write_errors, 1);
        if (!db->write_failing) {
            db->write_failing = 1;
            db->fail_since_ms = wh_now_ms();
        }
        wh_strlcpy(db->write_err, err, sizeof(db->write_err));
    } else if (db->write_failing) {
        db->write_failing = 0;
        wh_info("writes succeed again after %.1f s of failures (%s)",
                (double)(wh_now_ms() - db->fail_since_ms) / 1000.0, db->write_err);
    }
    pthread_mutex_unlock(&db->health_mu);
}

int st_db_write_health(st_db *db, char *why, size_t whylen)
{
    pthread_mutex_lock(&db->health_mu);
    int failing = db->write_failing;
    if (failing)
        wh_seterr(why, whylen, "cannot write for %.1f s: %s",
                  (double)(wh_now_ms() - db->fail_since_ms) / 1000.0, db->write_err);
    pthread_mutex_unlock(&db->health_mu);
    return failing ? WH_ERR : WH_OK;
}

uint64_t st_db_write_errors(st_db *db)
{
    return atomic_load(&db->write_errors);
}

/* ---- append ---- */

/* The tenant's D key; caller holds t->lock (read). */
static int get_durable_locked(st_db *db, st_tenant *t, uint64_t *lsn, char *err, size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_durable(k, t->name);
    size_t vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    if (e)
        return rerr(err, errlen, "get durable", e);
    *lsn = (v && vl == 8) ? wh_get_be64((const uint8_t *)v) : 0;
    if (v)
        rocksdb_free(v);
    return WH_OK;
}

int st_db_get_durable(st_db *db, const char *tenant, uint64_t *lsn, char *err, size_t errlen)
{
    *lsn = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = get_durable_locked(db, t, lsn, err, errlen);
    ten_done(t);
    return rc;
}

/* A synced write begins: its ticket (sync_end once it succeeded). */
static uint64_t sync_begin(st_db *db)
{
    pthread_mutex_lock(&db->sync_mu);
    uint64_t tk = ++db->sync_begun;
    pthread_mutex_unlock(&db->sync_mu);
    return tk;
}

/* The waiters are woken after the unlock: woken under it, each would
 * only block again on sync_mu (two more futex calls and a switch each). */
static void sync_end(st_db *db, uint64_t tk)
{
    pthread_mutex_lock(&db->sync_mu);
    int moved = tk > db->sync_done;
    if (moved)
        db->sync_done = tk;
    pthread_mutex_unlock(&db->sync_mu);
    if (moved)
        pthread_cond_broadcast(&db->sync_cv);
}

/* Returns once the WAL written before the call is synced: by a synced
 * write that began after the call (RocksDB syncs every live WAL file up to
 * a synced write's end, so it covers what was written before it), waited
 * for up to offset_sync_wait_us, else by a WAL sync of its own. */
static int wal_synced_after(st_db *db, char *err, size_t errlen)
{
    pthread_mutex_lock(&db->sync_mu);
    uint64_t need = db->sync_begun + 1;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)db->offset_sync_wait_us * 1000u;
    dl.tv_sec += (time_t)(ns / 1000000000u);
    dl.tv_nsec = (long)(ns % 1000000000u);
    while (db->sync_done < need)
        if (pthread_cond_timedwait(&db->sync_cv, &db->sync_mu, &dl) != 0)
            break; /* timed out */
    if (db->sync_done >= need) {
        pthread_mutex_unlock(&db->sync_mu);
        return WH_OK;
    }
    uint64_t tk = ++db->sync_begun;
    pthread_mutex_unlock(&db->sync_mu);
    char *e = NULL;
    rocksdb_flush_wal(db->rdb, 1, &e);
    note_write(db, e);
    if (e)
        return rerr(err, errlen, "WAL sync", e);
    sync_end(db, tk);
    return WH_OK;
}

static uint64_t append_bytes(const st_event *ev, size_t n);
/* One append in the commit queue; lives on its appender's stack. */
typedef struct st_wreq {
    struct st_wreq *next; /* the tenant's queue */
    st_tenant *t;
    const st_event *ev;
    size_t n;
    size_t taken; /* events [0, taken) are in a group (written or being written) */
    uint64_t ack_lsn;
    uint64_t durable; /* the D value once done */
    int drop;         /* its last group also drops the staging of drop_xid */
    uint32_t drop_xid;
    const char *prog;    /* snapshot progress to put with its last group (NULL: none); */
    size_t prog_len;     /* such an append is never split across groups */
    const st_schema *sv; /* schema versions, written in its first group */
    size_t nsv;
    int light;               /* at most store.commit_share_bytes */
    const st_toast_op *tops; /* TOAST cache ops, written with its last events */
    size_t ntops;
    uint64_t tsender, tserial;
    int done; /* all its events synced, or failed (rc) */
    int rc;
    char err[WH_ERRLEN];
    pthread_cond_t cond;
    uint64_t enq_us, start_us, end_us; /* queued; its last group's write began, ended */
} st_wreq;

/* One group: the appends it holds events of, [from, to) each. */
typedef struct st_gpart {
    st_wreq *r;
    size_t from, to;
} st_gpart;

/* What the commit queue counts of an append of json bytes in events
 * (light or big, slices), about: the values, and the keys with a tenant
 * name of average length. */
static uint64_t queued_bytes(uint64_t json, uint64_t events)
{
    return json + events * (8 + ST_POS_LEN + 18);
}

static size_t event_bytes(const st_event *e)
{
    return (size_t)queued_bytes(e->json_len, 1);
}

/* Caller holds cq_mu. Takes up to `max` bytes (at least one event, or an
 * empty append whole) of the tenant's queue into parts; appends taken
 * whole leave the queue. Returns the bytes taken. */
static uint64_t cq_take(st_tenant *t, uint64_t max, st_gpart **parts, size_t *np, size_t *cap)
{
    uint64_t bytes = 0;
    while (t->cq_head != NULL && (bytes < max || bytes == 0)) {
        st_wreq *r = t->cq_head;
        size_t from = r->taken, to = from;
        /* an append with snapshot progress goes whole into one group (its
         * events and the progress in one WriteBatch): after the others */
        if (r->prog != NULL && bytes > 0 && bytes + append_bytes(r->ev, r->n) > max)
            break;
        while (to < r->n && (bytes < max || to == from || r->prog != NULL)) {
            uint64_t b = event_bytes(&r->ev[to]);
            if (to > from && bytes + b > max && r->prog == NULL)
                break;
            bytes += b;
            t->cq_bytes -= b;
            to++;
        }
        if (wh_grow(parts, *np + 1, cap, sizeof(**parts), 16) != WH_OK)
            break; /* the rest waits for the next group */
        (*parts)[(*np)++] = (st_gpart){r, from, to};
        r->taken = to;
        if (to < r->n)
            break; /* the slice is full */
        t->cq_head = r->next;
        if (t->cq_head == NULL)
            t->cq_tail = NULL;
        if (bytes == 0)
            bytes = 1; /* an empty append counts, so a queue of them ends */
    }
    return bytes;
}

/* Caller holds cq_mu: 1 when a tenant other than t made a light append
 * within ST_COMMIT_LIGHT_MS (t's big appends then go in slices). */
static int cq_light_other(st_db *db, st_tenant *t, uint64_t now)
{
    for (int i = 0; i < 2; i++)
        if (db->cq_light_t[i] != NULL && db->cq_light_t[i] != t &&
            now - db->cq_light_ms[i] < ST_COMMIT_LIGHT_MS)
            return 1;
    return 0;
}

/* Caller holds cq_mu: 1 when t's queue holds light appends only (not the
 * rest of a big one). */
static int cq_light_queue(const st_tenant *t, uint64_t share)
{
    return t->cq_head != NULL && t->cq_head->light && t->cq_bytes <= share;
}

/* Caller holds cq_mu. The next group: round-robin over the tenants with
 * queued appends. While another tenant makes light appends (at most
 * `share` bytes), a tenant takes a slice of at most `share` bytes, and such
 * a group is that one round; when a light append is queued, the group
 * holds the light queues only (it jumps ahead of the big ones' slices),
 * unless the last group did (so big ones are never starved). So a light
 * append waits for at most one group of `share` bytes (and a light one),
 * then is synced with no other tenant's bulk. Otherwise (tenants alone, or all
 * appending big batches) each tenant's queue goes whole, rounds go on up
 * to ST_COMMIT_MAX_BYTES. Returns 1 for a sliced group. */
static int cq_form(st_db *db, st_gpart **parts, size_t *np, size_t *cap, uint64_t *gbytes)
{
    *np = 0;
    uint64_t now = wh_now_ms(), share = atomic_load(&db->cq_share);
    uint64_t bytes = 0;
    int sliced = 0, light_queued = 0, skipped = 0;
    /* after a group that jumped ahead, the big ones' turn: never starved */
    for (st_tenant *t = db->cq_ring; t != NULL && !db->cq_jumped; t = t->cq_next)
        if (cq_light_queue(t, share))
            light_queued = 1;
    while (db->cq_ring != NULL && bytes < ST_COMMIT_MAX_BYTES && !sliced) {
        /* one round: every tenant in the ring once */
        st_tenant *end = db->cq_ring_tail;
        for (;;) {
            st_tenant *t = db->cq_ring;
            db->cq_ring = t->cq_next;
            if (db->cq_ring == NULL)
                db->cq_ring_tail = NULL;
            t->cq_next = NULL;
            uint64_t slice = ST_COMMIT_MAX_BYTES;
            if (cq_light_other(db, t, now)) {
                slice = share;
                sliced = 1;
            }
            /* a light append queued jumps ahead: its group holds no slice of
             * a big one */
            if (sliced && light_queued && !cq_light_queue(t, share))
                skipped = 1;
            else
                bytes += cq_take(t, slice, parts, np, cap);
            if (t->cq_head != NULL) { /* back at the tail */
                if (db->cq_ring_tail)
                    db->cq_ring_tail->cq_next = t;
                else
                    db->cq_ring = t;
                db->cq_ring_tail = t;
            } else {
                t->in_ring = 0;
            }
            if (t == end || db->cq_ring == NULL)
                break;
        }
    }
    db->cq_jumped = skipped;
    *gbytes = bytes;
    return sliced;
}

static size_t stage_xid_range(char *lo, char *hi, size_t *hl, const char *tenant, uint32_t xid);
static void stage_rdel_note(st_db *db, st_tenant *t, uint32_t n);
static int schema_batch_put(st_db *db, rocksdb_writebatch_t *wb, st_tenant *t, const st_schema *sv,
                            size_t n, char *err, size_t errlen);

/* Writes one group with sync (no lock held): its events, and the D key of
 * every tenant with an append that ends in it (and the range delete of
 * the staging a stage commit's last append drops). Sets each such append's
 * durable value. */
static int cq_write(st_db *db, st_gpart *parts, size_t np, char *err, size_t errlen)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char k[ST_KEY_MAX];
    int rc = WH_OK;
    for (size_t i = 0; i < np; i++) {
        st_wreq *r = parts[i].r;
        for (size_t e = parts[i].from; e < parts[i].to; e++) {
            const st_event *ev = &r->ev[e];
            size_t kl = key_event(k, r->t->name, ev->lsn, ev->seq);
            uint8_t ts[8];
            wh_put_be64(ts, (uint64_t)ev->commit_ts_us);
            const char *vp[2] = {(const char *)ts, ev->json ? ev->json : ""};
            size_t vs[2] = {8, ev->json ? ev->json_len : 0};
            const char *kp[1] = {k};
            size_t ks[1] = {kl};
            rocksdb_writebatch_putv_cf(wb, r->t->ev, 1, kp, ks, 2, vp, vs);
        }
    }
    /* D: per tenant, the appends ending here in their order (a tenant's
     * parts are in queue order); max with the stored value */
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        st_tenant *t = parts[i].r->t;
        int first = 1;
        for (size_t j = 0; j < i; j++)
            if (parts[j].r->t == t)
                first = 0;
        if (!first)
            continue;
        uint64_t old = 0, d;
        if ((rc = get_durable_locked(db, t, &old, err, errlen)) != WH_OK)
            break;
        d = old;
        for (size_t j = i; j < np; j++) {
            st_wreq *r = parts[j].r;
            if (r->t != t || parts[j].to != r->n)
                continue;
            if (r->ack_lsn > d)
                d = r->ack_lsn;
            r->durable = d;
        }
        if (d != old) {
            uint8_t v[8];
            wh_put_be64(v, d);
            size_t kl = key_durable(k, t->name);
            rocksdb_writebatch_put_cf(wb, t->meta, k, kl, (const char *)v, 8);
        }
    }
    int reg = 0; /* schema registrations: db->schema_mu until written */
    for (size_t i = 0; i < np && !reg; i++)
        reg = parts[i].r->nsv > 0 && parts[i].from == 0;
    if (reg)
        pthread_mutex_lock(&db->schema_mu);
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        st_wreq *r = parts[i].r;
        if (r->prog != NULL && parts[i].to == r->n) {
            size_t kl = key_progress(k, r->t->name);
            rocksdb_writebatch_put_cf(wb, r->t->meta, k, kl, r->prog, r->prog_len);
        }
        if (r->nsv > 0 && parts[i].from == 0)
            rc = schema_batch_put(db, wb, r->t, r->sv, r->nsv, err, errlen);
    }
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        st_wreq *r = parts[i].r;
        if (r->drop && parts[i].to == r->n && r->t->stage != NULL) {
            char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
            size_t hl, ll = stage_xid_range(lo, hi, &hl, r->t->name, r->drop_xid);
            rocksdb_writebatch_delete_range_cf(wb, r->t->stage, lo, ll, hi, hl);
        }
    }
    /* TOAST cache ops (st_toast.h): with the append's last events and D */
    uint64_t tmax = (uint64_t)atomic_load(&db->toast_bytes);
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        st_wreq *r = parts[i].r;
        if (r->ntops > 0 && parts[i].to == r->n)
            rc = st_toast_apply(r->t->tc, db->rdb, r->t->toast, wb, r->tops, r->ntops, r->tsender,
                                r->tserial, tmax, err, errlen);
    }
    if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0) {
        char *e = NULL;
        uint64_t tk = sync_begin(db);
        rocksdb_write(db->rdb, db->wo, wb, &e);
        note_write(db, e);
        if (e)
            rc = rerr(err, errlen, "write", e);
        else
            sync_end(db, tk);
    }
    for (size_t i = 0; i < np && rc == WH_OK; i++) { /* newest_*: a part's last event */
        if (parts[i].to == parts[i].from)
            continue;
        st_tenant *t = parts[i].r->t;
        const st_event *ev = &parts[i].r->ev[parts[i].to - 1];
        pthread_mutex_lock(&t->wm_mu);
        if (wh_pos_cmp(ev->lsn, ev->seq, t->newest_lsn, t->newest_seq) > 0) {
            t->newest_lsn = ev->lsn;
            t->newest_seq = ev->seq;
        }
        pthread_mutex_unlock(&t->wm_mu);
    }
    if (reg)
        pthread_mutex_unlock(&db->schema_mu);
    for (size_t i = 0; i < np; i++)
        if (parts[i].r->ntops > 0)
            st_toast_end(parts[i].r->t->tc, rc == WH_OK);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

static void cq_done(st_wreq *w, const char *err, st_wreq *self)
{
    if (w->done)
        return;
    if (err != NULL) {
        w->rc = WH_ERR;
        wh_strlcpy(w->err, err, sizeof(w->err));
    }
    w->done = 1;
    if (w != self)
        pthread_cond_signal(&w->cond);
}

/* Caller holds cq_mu: r failed. Every append of its tenant still queued
 * fails with it (a partly written r is at the head; the rest came after
 * it: nothing of a later append is written past a gap). The tenant leaves
 * the ring at the next cq_form. */
static void cq_fail(st_wreq *r, const char *err, st_wreq *self)
{
    st_tenant *t = r->t;
    st_wreq *w = t->cq_head;
    t->cq_head = t->cq_tail = NULL;
    t->cq_bytes = 0;
    cq_done(r, err, self);
    while (w != NULL) {
        st_wreq *next = w->next; /* w's thread waits for cq_mu, held here */
        cq_done(w, err, self);
        w = next;
    }
}

/* Caller holds cq_mu; r is queued. Writes groups until r is done, then
 * hands the lead to a queued append, if any. */
static void cq_lead(st_db *db, st_wreq *r)
{
    st_gpart *parts = NULL;
    size_t np = 0, cap = 0;
    char err[WH_ERRLEN];
    db->cq_busy = 1;
    while (!r->done) {
        uint64_t gbytes = 0;
        int shared = cq_form(db, &parts, &np, &cap, &gbytes);
        if (np == 0) { /* out of memory for the parts */
            if (!r->done)
                cq_fail(r, "out of memory", r);
            break;
        }
        pthread_mutex_unlock(&db->cq_mu);
        uint64_t t0 = wh_now_us();
        int rc = cq_write(db, parts, np, err, sizeof(err));
        uint64_t t1 = wh_now_us();
        if (db->cq_hook != NULL)
            db->cq_hook(db->cq_hook_arg, np, gbytes, shared);
        pthread_mutex_lock(&db->cq_mu);
        atomic_fetch_add(&db->cq_groups, 1);
        if (shared)
            atomic_fetch_add(&db->cq_shared_groups, 1);
        for (size_t i = 0; i < np; i++) {
            st_wreq *w = parts[i].r;
            if (w->done || (rc == WH_OK && parts[i].to != w->n))
                continue; /* failed before, or not wholly written yet */
            w->start_us = t0;
            w->end_us = t1;
            if (rc != WH_OK)
                cq_fail(w, err, r);
            else
                cq_done(w, NULL, r);
        }
    }
    db->cq_busy = 0;
    /* the next leader: a light append if one is queued (its own thread then
     * writes its group and answers, with no second wake-up after the write
     * as when another appender writes it), else the first one queued */
    st_tenant *next = NULL;
    uint64_t share = atomic_load(&db->cq_share);
    for (st_tenant *t = db->cq_ring; t != NULL; t = t->cq_next) {
        if (t->cq_head == NULL)
            continue;
        if (next == NULL)
            next = t;
        if (cq_light_queue(t, share)) {
            next = t;
            break;
        }
    }
    if (next != NULL)
        pthread_cond_signal(&next->cq_head->cond);
    free(parts);
}

static int append_do(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                     int drop, uint32_t drop_xid, const st_append_extra *x, uint64_t *durable_lsn,
                     char *err, size_t errlen);

int st_db_append(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                 uint64_t *durable_lsn, char *err, size_t errlen)
{
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, NULL, durable_lsn, err, errlen);
}

int st_db_append_progress(st_db *db, const char *tenant, const st_event *ev, size_t n,
                          uint64_t ack_lsn, const void *prog, size_t prog_len,
                          uint64_t *durable_lsn, char *err, size_t errlen)
{
    st_append_extra x = {prog != NULL ? prog : "", prog_len, NULL, 0, NULL, 0, 0, 0};
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, &x, durable_lsn, err, errlen);
}

int st_db_append_schemas(st_db *db, const char *tenant, const st_event *ev, size_t n,
                         uint64_t ack_lsn, const st_schema *sv, size_t nsv, uint64_t *durable_lsn,
                         char *err, size_t errlen)
{
    st_append_extra x = {NULL, 0, sv, nsv, NULL, 0, 0, 0};
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, &x, durable_lsn, err, errlen);
}

int st_db_append_ext(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                     const st_append_extra *x, uint64_t *durable_lsn, char *err, size_t errlen)
{
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, x, durable_lsn, err, errlen);
}

int st_db_get_progress(st_db *db, const char *tenant, char **out, size_t *len, char *err,
                       size_t errlen)
{
    *out = NULL;
    *len = 0;
    st_tenant *t;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL || t->meta == NULL) {
        if (t != NULL)
            ten_done(t);
        return WH_OK;
    }
    char k[ST_KEY_MAX];
    size_t kl = key_progress(k, t->name), vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    ten_done(t);
    if (e)
        return rerr(err, errlen, "get snapshot progress", e);
    if (v == NULL)
        return WH_OK;
    *out = malloc(vl + 1);
    if (*out == NULL) {
        rocksdb_free(v);
        return wh_seterr(err, errlen, "out of memory");
    }
    memcpy(*out, v, vl);
    (*out)[vl] = '\0';
    *len = vl;
    rocksdb_free(v);
    return WH_OK;
}

int st_db_append_stage_end(st_db *db, const char *tenant, const st_event *ev, size_t n,
                           uint64_t ack_lsn, uint32_t xid, uint64_t *durable_lsn, char *err,
                           size_t errlen)
{
    return append_do(db, tenant, ev, n, ack_lsn, 1, xid, NULL, durable_lsn, err, errlen);
}

static int ten_open_toast(st_db *db, const char *tenant, st_tenant **out, char *err, size_t errlen);

int st_db_append_toast(st_db *db, const char *tenant, const st_event *ev, size_t n,
                       uint64_t ack_lsn, const void *prog, size_t prog_len, const st_toast_op *ops,
                       size_t nops, uint64_t sender, uint64_t serial, uint64_t *durable_lsn,
                       char *err, size_t errlen)
{
    st_append_extra x = {(const char *)prog, prog_len, NULL, 0, ops, nops, sender, serial};
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, &x, durable_lsn, err, errlen);
}

static int append_do(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                     int drop, uint32_t drop_xid, const st_append_extra *x, uint64_t *durable_lsn,
                     char *err, size_t errlen)
{
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    if (n > 0 && ev == NULL)
        return wh_seterr(err, errlen, "events: NULL");

    st_tenant *t;
    if ((x != NULL && x->ntops > 0 ? ten_open_toast(db, tenant, &t, err, errlen)
                                   : ten_open(db, tenant, 1, &t, err, errlen)) != WH_OK)
        return WH_ERR;
    uint64_t bytes = append_bytes(ev, n);
    int light = bytes <= atomic_load(&db->cq_share);
    st_wreq r = {.t = t,
                 .ev = ev,
                 .n = n,
                 .ack_lsn = ack_lsn,
                 .light = light,
                 .rc = WH_OK,
                 .drop = drop,
                 .drop_xid = drop_xid,
                 .prog = x != NULL ? x->prog : NULL,
                 .prog_len = x != NULL ? x->prog_len : 0,
                 .sv = x != NULL ? x->sv : NULL,
                 .nsv = x != NULL ? x->nsv : 0,
                 .tops = x != NULL ? x->tops : NULL,
                 .ntops = x != NULL ? x->ntops : 0,
                 .tsender = x != NULL ? x->tsender : 0,
                 .tserial = x != NULL ? x->tserial : 0};
    pthread_cond_init(&r.cond, NULL);
    pthread_mutex_lock(&db->cq_mu);
    r.enq_us = wh_now_us();
    /* a light append behind its own tenant's big one waits for that one:
     * the isolation guard does not blame the floods for it */
    int behind_own = 0;
    for (const st_wreq *q = light ? t->cq_head : NULL; q != NULL && !behind_own; q = q->next)
        behind_own = !q->light;
    if (t->cq_tail)
        t->cq_tail->next = &r;
    else
        t->cq_head = &r;
    t->cq_tail = &r;
    t->cq_bytes += bytes;
    if (!t->in_ring) {
        t->in_ring = 1;
        if (db->cq_ring_tail)
            db->cq_ring_tail->cq_next = t;
        else
            db->cq_ring = t;
        db->cq_ring_tail = t;
    }
    if (light) {
        if (db->cq_light_t[0] != t) {
            db->cq_light_t[1] = db->cq_light_t[0];
            db->cq_light_ms[1] = db->cq_light_ms[0];
            db->cq_light_t[0] = t;
        }
        db->cq_light_ms[0] = wh_now_ms();
    }
    while (!r.done) {
        if (!db->cq_busy)
            cq_lead(db, &r);
        else
            pthread_cond_wait(&r.cond, &db->cq_mu);
    }
    pthread_mutex_unlock(&db->cq_mu);
    uint64_t woke = wh_now_us();
    pthread_cond_destroy(&r.cond);
    if (drop && r.rc == WH_OK && t->stage != NULL)
        stage_rdel_note(db, t, 1);
    ten_done(t);
    if (r.rc != WH_OK)
        return wh_seterr(err, errlen, "%s", r.err);
    if (n > 0)
        st_guard_observe(&db->guard, woke, t,
                         !light       ? ST_GUARD_BIG
                         : behind_own ? ST_GUARD_LIGHT_BEHIND
                                      : ST_GUARD_LIGHT,
                         bytes, woke - r.enq_us);
    if (r.end_us != 0) {
        wh_histogram *h = db->cq_stage[light ? 0 : 1];
        wh_hist_observe_us(&h[ST_APPEND_QUEUE], r.start_us - r.enq_us);
        wh_hist_observe_us(&h[ST_APPEND_WRITE], r.end_us - r.start_us);
        wh_hist_observe_us(&h[ST_APPEND_WAKE], woke - r.end_us);
    }
    if (durable_lsn)
        *durable_lsn = r.durable;
    return WH_OK;
}

void st_db_append_stats(st_db *db, st_append_stats *out)
{
    out->groups = atomic_load(&db->cq_groups);
    out->shared_groups = atomic_load(&db->cq_shared_groups);
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < ST_APPEND_STAGES; i++)
            out->stage[l][i] = &db->cq_stage[l][i];
}

static uint64_t append_bytes(const st_event *ev, size_t n)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += event_bytes(&ev[i]);
    return bytes;
}

int st_db_append_light(st_db *db, const st_event *ev, size_t n)
{
    return append_bytes(ev, n) <= atomic_load(&db->cq_share);
}

/* ---- staged (streamed) transactions ----
 * In the tenant's staging CF "s:<tenant>" (made at its first staging; its
 * range deletes never slow the meta CF's point reads of the append path):
 *   'X' tenant \0 xid(4, BE) 'e' idx(4, BE) -> subxid(4, BE) + json
 *   'X' tenant \0 xid(4, BE) 'a' subxid(4, BE) -> "" (an aborted subtransaction)
 * A whole xid is the range [X tenant \0 xid, X tenant \0 xid \xff). */

#define ST_STAGE_EVENT 'e'
#define ST_STAGE_ABORT 'a'

/* 'X' tenant \0 xid: the xid's prefix */
static size_t key_stage_xid(char *k, const char *tenant, uint32_t xid)
{
    size_t n = key_prefix(k, 'X', tenant);
    wh_put_be32((uint8_t *)k + n, xid);
    return n + 4;
}

static size_t key_stage(char *k, const char *tenant, uint32_t xid, char tag, uint32_t v)
{
    size_t n = key_stage_xid(k, tenant, xid);
    k[n] = tag;
    wh_put_be32((uint8_t *)k + n + 1, v);
    return n + 5;
}

/* Every key of the xid: [lo, hi); returns lo's length, *hl hi's. */
static size_t stage_xid_range(char *lo, char *hi, size_t *hl, const char *tenant, uint32_t xid)
{
    size_t ll = key_stage_xid(lo, tenant, xid);
    memcpy(hi, lo, ll);
    hi[ll] = '\xff';
    *hl = ll + 1;
    return ll;
}

/* A synced write of wb (a ticket for the lazy offset commits). */
static int sync_write(st_db *db, rocksdb_writebatch_t *wb, const char *what, char *err,
                      size_t errlen)
{
    char *e = NULL;
    uint64_t tk = sync_begin(db);
    rocksdb_write(db->rdb, db->wo, wb, &e);
    note_write(db, e);
    if (e)
        return rerr(err, errlen, what, e);
    sync_end(db, tk);
    return WH_OK;
}

/* ten_open, with the staging CF made first when create (else t->stage
 * may be NULL: nothing staged). */
static int ten_open_stage(st_db *db, const char *tenant, int create, st_tenant **out, char *err,
                          size_t errlen)
{
    for (;;) {
        if (ten_open(db, tenant, create, out, err, errlen) != WH_OK)
            return WH_ERR;
        st_tenant *t = *out;
        if (t == NULL || t->stage != NULL || !create)
            return WH_OK;
        ten_done(t);
        pthread_rwlock_wrlock(&t->lock);
        char *e = NULL;
        if (t->stage == NULL && t->ev != NULL) {
            char name[ST_NAME_MAX + 3];
            cf_name(name, sizeof(name), ST_CF_STAGE, t->name);
            t->stage = rocksdb_create_column_family(db->rdb, db->opts, name, &e);
            if (e == NULL)
                wh_info("tenant %s: staging column family created", t->name);
        }
        pthread_rwlock_unlock(&t->lock);
        if (e)
            return rerr(err, errlen, "create column family", e);
    }
}

/* Called after n range deletes were written to t's staging CF (t->lock
 * held for reading). RocksDB (7.x) fragments a memtable's range tombstones
 * again for every iterator and point read: past ST_STAGE_RDEL_FLUSH of
 * them the staging CF is flushed (not waited for), so a commit's scans
 * stay cheap however many transactions were streamed. */
#define ST_STAGE_RDEL_FLUSH 64
static void stage_rdel_note(st_db *db, st_tenant *t, uint32_t n)
{
    if (n == 0 || atomic_fetch_add(&t->stage_rdel, n) + n < ST_STAGE_RDEL_FLUSH)
        return;
    atomic_store(&t->stage_rdel, 0);
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 0);
    char *e = NULL;
    rocksdb_flush_cf(db->rdb, fo, t->stage, &e);
    rocksdb_flushoptions_destroy(fo);
    if (e) {
        wh_warn("tenant %s: flush of the staging column family: %s", t->name, e);
        rocksdb_free(e);
    }
}

int st_db_stage_put(st_db *db, const char *tenant, uint32_t xid, int reset, const st_staged *ev,
                    size_t n, char *err, size_t errlen)
{
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    if (xid == 0)
        return wh_seterr(err, errlen, "stage_xid: must be > 0");
    if (n > 0 && ev == NULL)
        return wh_seterr(err, errlen, "events: NULL");
    st_tenant *t;
    if (ten_open_stage(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char k[ST_KEY_MAX], hi[ST_KEY_MAX];
    if (reset) {
        size_t hl, kl = stage_xid_range(k, hi, &hl, tenant, xid);
        rocksdb_writebatch_delete_range_cf(wb, t->stage, k, kl, hi, hl);
    }
    for (size_t i = 0; i < n; i++) {
        size_t kl = key_stage(k, tenant, xid, ST_STAGE_EVENT, ev[i].idx);
        uint8_t sx[4];
        wh_put_be32(sx, ev[i].subxid);
        const char *vp[2] = {(const char *)sx, ev[i].json ? ev[i].json : ""};
        size_t vs[2] = {4, ev[i].json ? ev[i].json_len : 0};
        const char *kp[1] = {k};
        size_t ks[1] = {kl};
        rocksdb_writebatch_putv_cf(wb, t->stage, 1, kp, ks, 2, vp, vs);
    }
    int rc = WH_OK;
    if (rocksdb_writebatch_count(wb) > 0)
        rc = sync_write(db, wb, "stage write", err, errlen);
    if (rc == WH_OK && reset)
        stage_rdel_note(db, t, 1);
    uint64_t json = 0;
    for (size_t i = 0; i < n; i++)
        json += ev[i].json ? ev[i].json_len : 0;
    uint64_t q = queued_bytes(json, n);
    if (rc == WH_OK && q > atomic_load(&db->cq_share))
        st_guard_observe(&db->guard, wh_now_us(), t, ST_GUARD_BIG, q, 0); /* a flood too */
    rocksdb_writebatch_destroy(wb);
    ten_done(t);
    return rc;
}

int st_db_stage_abort(st_db *db, const char *tenant, const st_stage_abort *ab, size_t n, char *err,
                      size_t errlen)
{
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    for (size_t i = 0; i < n; i++)
        if ((ab[i].xid == 0) != (ab[i].subxid == 0))
            return wh_seterr(err, errlen,
                             "stage_aborts[%zu].%s: must be > 0 (both 0: drop all staging)", i,
                             ab[i].xid == 0 ? "xid" : "subxid");
    /* a subtransaction's abort is remembered even before anything is
     * staged; a whole abort of nothing is a no-op */
    int sub = 0;
    for (size_t i = 0; i < n; i++)
        sub |= ab[i].subxid != ab[i].xid;
    st_tenant *t;
    if (ten_open_stage(db, tenant, sub, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL || t->stage == NULL) {
        ten_done(t);
        return WH_OK; /* nothing staged */
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint32_t rdel = 0;
    for (size_t i = 0; i < n; i++) {
        char k[ST_KEY_MAX], hi[ST_KEY_MAX];
        if (ab[i].xid == 0) { /* everything the tenant has staged */
            rdel++;
            size_t kl = key_prefix(k, 'X', tenant);
            memcpy(hi, k, kl);
            hi[kl - 1] = '\x01'; /* past 'X' tenant '\0' ... */
            rocksdb_writebatch_delete_range_cf(wb, t->stage, k, kl, hi, kl);
        } else if (ab[i].subxid == ab[i].xid) {
            rdel++;
            size_t hl, kl = stage_xid_range(k, hi, &hl, tenant, ab[i].xid);
            rocksdb_writebatch_delete_range_cf(wb, t->stage, k, kl, hi, hl);
        } else {
            size_t kl = key_stage(k, tenant, ab[i].xid, ST_STAGE_ABORT, ab[i].subxid);
            rocksdb_writebatch_put_cf(wb, t->stage, k, kl, "", 0);
        }
    }
    int rc = WH_OK;
    if (rocksdb_writebatch_count(wb) > 0)
        rc = sync_write(db, wb, "stage abort", err, errlen);
    if (rc == WH_OK)
        stage_rdel_note(db, t, rdel);
    rocksdb_writebatch_destroy(wb);
    ten_done(t);
    return rc;
}

/* Iterates the keys of xid with tag from v on: fn(arg, v, value, len) per
 * key (a non-zero return stops before the key counts: *stopped). */
typedef int (*stage_key_fn)(void *arg, uint32_t v, const char *val, size_t len);

static int stage_iter(st_db *db, const char *tenant, uint32_t xid, char tag, uint32_t from,
                      stage_key_fn fn, void *arg, int *stopped, char *err, size_t errlen)
{
    *stopped = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open_stage(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL || t->stage == NULL) {
        ten_done(t);
        return WH_OK; /* nothing staged */
    }
    char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
    size_t ll = key_stage(lo, tenant, xid, tag, from);
    size_t hl = key_stage_xid(hi, tenant, xid);
    hi[hl++] = (char)(tag + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hl);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->stage);
    int rc = WH_OK;
    for (rocksdb_iter_seek(it, lo, ll); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != hl + 4)
            continue; /* not a key of this layout */
        if (fn(arg, wh_get_be32((const uint8_t *)k + hl), v, vl) != 0) {
            *stopped = 1;
            break;
        }
    }
    rc = iter_done(it, ro, "reading staged events", err, errlen);
    ten_done(t);
    return rc;
}

typedef struct aborted_acc {
    uint32_t *v;
    size_t n, cap;
    int oom;
} aborted_acc;

static int aborted_step(void *arg, uint32_t sub, const char *val, size_t len)
{
    WH_UNUSED(val);
    WH_UNUSED(len);
    aborted_acc *a = arg;
    if (wh_grow(&a->v, a->n + 1, &a->cap, sizeof(*a->v), 16) != WH_OK) {
        a->oom = 1;
        return 1;
    }
    a->v[a->n++] = sub; /* in key order: ascending */
    return 0;
}

int st_db_stage_aborted(st_db *db, const char *tenant, uint32_t xid, uint32_t **subs, size_t *n,
                        char *err, size_t errlen)
{
    aborted_acc a = {0};
    int stopped;
    int rc =
        stage_iter(db, tenant, xid, ST_STAGE_ABORT, 0, aborted_step, &a, &stopped, err, errlen);
    if (rc == WH_OK && a.oom)
        rc = wh_seterr(err, errlen, "out of memory");
    if (rc != WH_OK) {
        free(a.v);
        a.v = NULL;
        a.n = 0;
    }
    *subs = a.v;
    *n = a.n;
    return rc;
}

typedef struct stage_scan_arg {
    st_stage_fn fn;
    void *arg;
} stage_scan_arg;

static int stage_scan_step(void *arg, uint32_t idx, const char *val, size_t len)
{
    stage_scan_arg *a = arg;
    if (len < 4)
        return 0; /* not a staged event's value */
    return a->fn(a->arg, idx, wh_get_be32((const uint8_t *)val), val + 4, len - 4);
}

int st_db_stage_scan(st_db *db, const char *tenant, uint32_t xid, uint32_t from_idx, st_stage_fn fn,
                     void *arg, int *stopped, char *err, size_t errlen)
{
    stage_scan_arg a = {fn, arg};
    return stage_iter(db, tenant, xid, ST_STAGE_EVENT, from_idx, stage_scan_step, &a, stopped, err,
                      errlen);
}

typedef struct stage_count_arg {
    uint64_t n, cap;
} stage_count_arg;

static int stage_count_step(void *arg, uint32_t idx, const char *val, size_t len)
{
    WH_UNUSED(idx);
    WH_UNUSED(val);
    WH_UNUSED(len);
    stage_count_arg *a = arg;
    if (a->n >= a->cap)
        return 1;
    a->n++;
    return 0;
}

int st_db_stage_count(st_db *db, const char *tenant, uint32_t xid, uint64_t cap, uint64_t *n,
                      char *err, size_t errlen)
{
    stage_count_arg a = {0, cap};
    int stopped;
    int rc =
        stage_iter(db, tenant, xid, ST_STAGE_EVENT, 0, stage_count_step, &a, &stopped, err, errlen);
    *n = a.n;
    return rc;
}

/* ---- read ---- */

/* The upper bound of the tenant's event keys: just past every
 * "E tenant \0 ..." key. */
static size_t events_upper(char *upper, const char *tenant)
{
    size_t ul = key_prefix(upper, 'E', tenant);
    upper[ul - 1] = '\x01';
    return ul;
}

/* Read options for the tenant's events (upper is kept by the caller while
 * they live). Events are read once, in order: their data blocks stay out of
 * the block cache (the iterator pins the block it is on). tailing: the
 * iterator sees what is written after its creation (a reader's reused
 * iterator, st_db_reader_read). */
static rocksdb_readoptions_t *events_readoptions(const char *upper, size_t ul, int tailing)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper, ul);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    if (tailing)
        rocksdb_readoptions_set_tailing(ro, 1);
    return ro;
}

/* Seeks it just past (from_lsn, from_seq) and passes events to fn (see
 * st_db_read); the number passed. */
static size_t iter_events(rocksdb_iterator_t *it, const char *tenant, uint64_t from_lsn,
                          uint32_t from_seq, uint32_t max_events, size_t max_bytes, st_read_fn fn,
                          void *arg)
{
    char seek[ST_KEY_MAX];
    size_t sl = key_event(seek, tenant, from_lsn, from_seq);
    rocksdb_iter_seek(it, seek, sl);
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const char *kk = rocksdb_iter_key(it, &kl);
        if (kl == sl && memcmp(kk, seek, sl) == 0)
            rocksdb_iter_next(it); /* `from` is exclusive */
    }
    size_t count = 0, bytes = 0;
    for (; rocksdb_iter_valid(it) && count < max_events; rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *kk = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        uint64_t lsn;
        uint32_t seq;
        if (parse_event_key(kk, kl, NULL, &lsn, &seq) != WH_OK || vl < 8)
            continue; /* not ours (cannot happen with the prefix bound) */
        size_t jl = vl - 8;
        if (count > 0 && bytes + jl > max_bytes)
            break;
        int64_t ts = (int64_t)wh_get_be64((const uint8_t *)v);
        count++;
        bytes += jl;
        if (fn(arg, lsn, seq, ts, v + 8, jl) != 0)
            break;
    }
    return count;
}

int st_db_read(st_db *db, const char *tenant, uint64_t from_lsn, uint32_t from_seq,
               uint32_t max_events, size_t max_bytes, st_read_fn fn, void *arg, size_t *nread,
               char *err, size_t errlen)
{
    if (nread)
        *nread = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char upper[ST_KEY_MAX];
    size_t ul = events_upper(upper, tenant);
    rocksdb_readoptions_t *ro = events_readoptions(upper, ul, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->ev);
    size_t count = iter_events(it, tenant, from_lsn, from_seq, max_events, max_bytes, fn, arg);
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    ten_done(t);
    if (nread)
        *nread = count;
    if (e)
        return rerr(err, errlen, "read", e);
    return WH_OK;
}

/* ---- a reader's cursor ---- */

struct st_reader {
    st_db *db;
    st_tenant *t;
    st_off *o; /* NULL: no consumer */
    char tenant[ST_NAME_MAX + 1];
    char upper[ST_KEY_MAX];
    size_t ul;
    rocksdb_readoptions_t *ro; /* tailing */
    rocksdb_iterator_t *it;    /* NULL: none yet, or dropped after an error */
    uint64_t it_gen;           /* t->cf_gen when it was made */
};

static off_val off_read(st_off *o);
static void off_write(st_off *o, off_val v);
static int off_persist(st_db *db, st_off *o, off_val v, char *err, size_t errlen);

int st_db_reader_open(st_db *db, const char *tenant, const char *consumer, st_reader **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK ||
        (consumer != NULL && st_db_check_name(consumer, "consumer", err, errlen) != WH_OK))
        return WH_ERR;
    st_tenant *t = tenant_find(db, tenant, 1);
    if (t == NULL)
        return wh_seterr(err, errlen, "tenant: too many tenants (max %d) or out of memory",
                         ST_MAX_TENANTS);
    st_off *o = NULL;
    if (consumer != NULL && (o = off_get(db, tenant, consumer, err, errlen)) == NULL)
        return WH_ERR;
    st_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return wh_seterr(err, errlen, "out of memory");
    r->db = db;
    r->t = t;
    r->o = o;
    wh_strlcpy(r->tenant, tenant, sizeof(r->tenant));
    r->ul = events_upper(r->upper, tenant);
    r->ro = events_readoptions(r->upper, r->ul, 1);
    *out = r;
    return WH_OK;
}

int st_db_reader_register(st_reader *r, st_offset *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    st_off *o = r->o;
    if (o == NULL)
        return wh_seterr(err, errlen, "consumer: missing");
    off_val cur = off_read(o); /* fast path: no lock but the entry's own */
    int rc = WH_OK;
    if (cur.state == ST_OFF_NEW && !r->db->read_only) {
        st_tenant *t;
        if (ten_open(r->db, r->tenant, 1, &t, err, errlen) != WH_OK)
            return WH_ERR;
        pthread_mutex_lock(&o->wmu);
        cur = off_read(o);
        if (cur.state == ST_OFF_NEW) {
            off_val nv = {cur.lsn, cur.seq, cur.epoch, ST_OFF_LIVE};
            rc = off_persist(r->db, o, nv, err, errlen);
            if (rc == WH_OK) {
                off_write(o, nv);
                cur = nv;
            }
        }
        pthread_mutex_unlock(&o->wmu);
        ten_done(t);
    }
    int dropped = cur.state == ST_OFF_DROPPED;
    out->lsn = dropped ? 0 : cur.lsn;
    out->seq = dropped ? 0 : cur.seq;
    out->epoch = cur.epoch;
    out->dropped = dropped;
    return rc;
}

int st_db_reader_needs_snapshot(const st_reader *r)
{
    return r->o != NULL && r->o->needs_snapshot;
}

int st_db_reader_read(st_reader *r, uint64_t from_lsn, uint32_t from_seq, uint32_t max_events,
                      size_t max_bytes, st_read_fn fn, void *arg, size_t *nread, char *err,
                      size_t errlen)
{
    if (nread)
        *nread = 0;
    st_tenant *t = r->t;
    pthread_rwlock_rdlock(&t->lock);
    if (r->it != NULL && (r->it_gen != t->cf_gen || t->ev == NULL)) {
        rocksdb_iter_destroy(r->it); /* made on a column family since dropped */
        r->it = NULL;
    }
    if (t->ev == NULL || t->meta == NULL) {
        pthread_rwlock_unlock(&t->lock);
        return WH_OK; /* nothing stored for the tenant */
    }
    if (r->it == NULL) {
        r->it = rocksdb_create_iterator_cf(r->db->rdb, r->ro, t->ev);
        r->it_gen = t->cf_gen;
    }
    size_t count =
        iter_events(r->it, r->tenant, from_lsn, from_seq, max_events, max_bytes, fn, arg);
    char *e = NULL;
    rocksdb_iter_get_error(r->it, &e);
    if (e != NULL) {
        rocksdb_iter_destroy(r->it); /* the next read starts afresh */
        r->it = NULL;
    }
    pthread_rwlock_unlock(&t->lock);
    if (nread)
        *nread = count;
    if (e)
        return rerr(err, errlen, "read", e);
    return WH_OK;
}

void st_db_reader_close(st_reader *r)
{
    if (r == NULL)
        return;
    if (r->it != NULL)
        rocksdb_iter_destroy(r->it);
    rocksdb_readoptions_destroy(r->ro);
    free(r);
}

/* ---- offsets ---- */

static int check_names(st_db *db, const char *tenant, const char *consumer, int write, char *err,
                       size_t errlen)
{
    if (write && db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK ||
        st_db_check_name(consumer, "consumer", err, errlen) != WH_OK)
        return WH_ERR;
    return WH_OK;
}

/* An O value: lsn seq epoch, and a flags byte when a flag is set. */
static size_t off_encode(uint8_t *b, off_val v, int needs_snapshot)
{
    wh_put_be64(b, v.lsn);
    wh_put_be32(b + 8, v.seq);
    wh_put_be64(b + 12, v.epoch);
    if (!needs_snapshot)
        return ST_OFF_VAL_LEN;
    b[ST_OFF_VAL_LEN] = 1;
    return ST_OFF_VAL_LEN + 1;
}

/* Stores the offset value with write options wo. Caller holds the tenant's
 * lock (read, column families present) and o->wmu. */
static int off_put(st_db *db, st_off *o, off_val v, rocksdb_writeoptions_t *wo, char *err,
                   size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_offset(k, o->tenant, o->consumer);
    uint8_t b[ST_OFF_VAL_LEN + 1];
    size_t bl = off_encode(b, v, o->needs_snapshot);
    char *e = NULL;
    rocksdb_put_cf(db->rdb, wo, o->ten->meta, k, kl, (const char *)b, bl, &e);
    note_write(db, e);
    if (e)
        return rerr(err, errlen, "offset write", e);
    return WH_OK;
}

/* Stores the offset value with sync. Same locks as off_put. */
static int off_persist(st_db *db, st_off *o, off_val v, char *err, size_t errlen)
{
    return off_put(db, o, v, db->wo, err, errlen);
}

/* Stores (v not NULL) or deletes (NULL) o's offset value with sync in the
 * tenant's metadata cf meta, and deletes its N note (when and why it was
 * marked) and, with del_stall, its T key (st_slot's stall timer) in the
 * same write, so a later target of the same name inherits neither. Same
 * locks as off_put. */
static int off_put_clean(st_db *db, st_off *o, rocksdb_column_family_handle_t *meta,
                         const off_val *v, int del_stall, char *err, size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_offset(k, o->tenant, o->consumer);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (v != NULL) {
        uint8_t b[ST_OFF_VAL_LEN + 1];
        size_t bl = off_encode(b, *v, o->needs_snapshot);
        rocksdb_writebatch_put_cf(wb, meta, k, kl, (const char *)b, bl);
    } else {
        rocksdb_writebatch_delete_cf(wb, meta, k, kl);
    }
    k[0] = 'N';
    rocksdb_writebatch_delete_cf(wb, meta, k, kl);
    if (del_stall) {
        k[0] = 'T';
        rocksdb_writebatch_delete_cf(wb, meta, k, kl);
    }
    char *e = NULL;
    rocksdb_write(db->rdb, db->wo, wb, &e);
    rocksdb_writebatch_destroy(wb);
    if (v != NULL)
        note_write(db, e);
    if (e)
        return rerr(err, errlen, v != NULL ? "offset write" : "offset delete", e);
    return WH_OK;
}

/* Notes why and when o is marked NEEDS_SNAPSHOT (memory and its N key,
 * written without sync just before the synced O value that carries the
 * mark, so both are durable together). Same locks as off_put. */
static void ns_note_put(st_db *db, st_off *o, int kind)
{
    int64_t since = wh_wallclock_us() / 1000;
    atomic_store(&o->ns_since_ms, since);
    atomic_store(&o->ns_kind, kind);
    char k[ST_KEY_MAX];
    size_t kl = key_offset(k, o->tenant, o->consumer);
    k[0] = 'N';
    uint8_t b[9];
    wh_put_be64(b, (uint64_t)since);
    b[8] = (uint8_t)kind;
    char *e = NULL;
    rocksdb_put_cf(db->rdb, db->wo_lazy, o->ten->meta, k, kl, (const char *)b, sizeof(b), &e);
    if (e) {
        wh_error("target %s/%s: storing when it was marked NEEDS_SNAPSHOT: %s", o->tenant,
                 o->consumer, e);
        rocksdb_free(e);
    }
}

/* off_persist for an offset commit: written without sync, durable before
 * it returns (wal_synced_after), so it shares the sync of the appends that
 * come meanwhile instead of adding one of its own before them. Same locks. */
static int off_persist_lazy(st_db *db, st_off *o, off_val v, char *err, size_t errlen)
{
    if (db->offset_sync_wait_us <= 0)
        return off_persist(db, o, v, err, errlen);
    if (off_put(db, o, v, db->wo_lazy, err, errlen) != WH_OK)
        return WH_ERR;
    return wal_synced_after(db, err, errlen);
}

static int lease_check(st_off *o, uint64_t lease_epoch, char *err, size_t errlen);

int st_db_commit_epoch(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                       uint32_t seq, uint64_t epoch, st_offset *out, char *err, size_t errlen)
{
    return st_db_commit_fenced(db, tenant, consumer, lsn, seq, epoch, 0, out, err, errlen);
}

int st_db_commit_fenced(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                        uint32_t seq, uint64_t epoch, uint64_t lease_epoch, st_offset *out,
                        char *err, size_t errlen)
{
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o);
    if (cur.state == ST_OFF_DROPPED) {
        wh_seterr(err, errlen, "consumer '%s' of tenant '%s' was dropped", consumer, tenant);
        rc = ST_DB_STALE;
    } else if (lease_check(o, lease_epoch, err, errlen) != WH_OK) {
        rc = ST_DB_STALE;
    } else if (epoch != cur.epoch) {
        wh_seterr(err, errlen,
                  "epoch %" PRIu64 " is not the consumer's epoch %" PRIu64
                  " (its offset was moved); read again",
                  epoch, cur.epoch);
        rc = ST_DB_STALE;
    } else if (cur.state == ST_OFF_NEW || wh_pos_cmp(lsn, seq, cur.lsn, cur.seq) > 0) {
        /* A new consumer is always stored (even at (0,0): it then pins GC).
         * A new entry is at (0,0), so this never moves an offset backwards. */
        off_val nv = {lsn, seq, cur.epoch, ST_OFF_LIVE};
        rc = off_persist_lazy(db, o, nv, err, errlen);
        if (rc == WH_OK) {
            off_write(o, nv);
            cur = nv;
        }
    }
    pthread_mutex_unlock(&o->wmu);
    ten_done(t);
    if (out != NULL) {
        out->lsn = cur.lsn;
        out->seq = cur.seq;
        out->epoch = cur.epoch;
        out->dropped = cur.state == ST_OFF_DROPPED;
    }
    return rc;
}

int st_db_commit(st_db *db, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                 uint64_t *out_lsn, uint32_t *out_seq, char *err, size_t errlen)
{
    st_offset cur;
    int rc = st_db_commit_epoch(db, tenant, consumer, lsn, seq, 0, &cur, err, errlen);
    if (rc != WH_OK)
        return WH_ERR;
    if (out_lsn)
        *out_lsn = cur.lsn;
    if (out_seq)
        *out_seq = cur.seq;
    return WH_OK;
}

int st_db_register(st_db *db, const char *tenant, const char *consumer, st_offset *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    off_val cur = off_read(o); /* fast path: no wait for a commit's fsync */
    int rc = WH_OK;
    if (cur.state == ST_OFF_NEW && !db->read_only) {
        st_tenant *t;
        if (ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
            return WH_ERR;
        pthread_mutex_lock(&o->wmu);
        cur = off_read(o);
        if (cur.state == ST_OFF_NEW) {
            off_val nv = {cur.lsn, cur.seq, cur.epoch, ST_OFF_LIVE};
            rc = off_persist(db, o, nv, err, errlen);
            if (rc == WH_OK) {
                off_write(o, nv);
                cur = nv;
            }
        }
        pthread_mutex_unlock(&o->wmu);
        ten_done(t);
    }
    out->lsn = cur.state == ST_OFF_DROPPED ? 0 : cur.lsn;
    out->seq = cur.state == ST_OFF_DROPPED ? 0 : cur.seq;
    out->epoch = cur.epoch;
    out->dropped = cur.state == ST_OFF_DROPPED;
    return rc;
}

/* Moves o's offset to (lsn, seq) with the epoch bumped, clearing
 * NEEDS_SNAPSHOT (a snapshot resumed the target, or an operator moved it):
 * stored with sync, then in memory; on a failed write nothing changes.
 * Under o->wmu. *nv receives the new value. */
static int off_move_locked(st_db *db, st_off *o, off_val cur, uint64_t lsn, uint32_t seq,
                           off_val *nv, char *err, size_t errlen)
{
    *nv = (off_val){lsn, seq, cur.epoch + 1, ST_OFF_LIVE};
    int had_ns = o->needs_snapshot;
    o->needs_snapshot = 0;
    int rc = off_put_clean(db, o, o->ten->meta, nv, 0, err, errlen);
    if (rc == WH_OK)
        off_write(o, *nv);
    else
        o->needs_snapshot = had_ns;
    return rc;
}

int st_db_set_offset(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                     uint32_t seq, st_offset *prev, st_offset *now, char *err, size_t errlen)
{
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o), nv;
    int rc = off_move_locked(db, o, cur, lsn, seq, &nv, err, errlen);
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1); /* before and after: see st_db_offset_moves */
    ten_done(t);
    if (prev != NULL) {
        int had = cur.state == ST_OFF_LIVE;
        prev->lsn = had ? cur.lsn : 0;
        prev->seq = had ? cur.seq : 0;
        prev->epoch = cur.epoch;
        prev->dropped = cur.state == ST_OFF_DROPPED;
    }
    if (now != NULL && rc == WH_OK) {
        now->lsn = nv.lsn;
        now->seq = nv.seq;
        now->epoch = nv.epoch;
        now->dropped = 0;
    }
    return rc;
}

int st_db_resync_offset(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                        uint32_t seq, st_offset *prev, char *err, size_t errlen)
{
    memset(prev, 0, sizeof(*prev));
    st_off *o = off_find(db, tenant, consumer);
    st_tenant *t;
    if (o == NULL || db->read_only)
        return 0;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return 0;
    atomic_fetch_add(&db->moves, 1);
    int rc = 0;
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o);
    if (cur.state == ST_OFF_LIVE && o->needs_snapshot) {
        off_val nv;
        rc = off_move_locked(db, o, cur, lsn, seq, &nv, err, errlen) == WH_OK ? 1 : WH_ERR;
        if (rc == 1)
            *prev = (st_offset){cur.lsn, cur.seq, cur.epoch, 0};
    }
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1);
    ten_done(t);
    return rc;
}

int st_db_drop_offset(st_db *db, const char *tenant, const char *consumer, st_offset *prev,
                      char *err, size_t errlen)
{
    if (prev != NULL)
        memset(prev, 0, sizeof(*prev));
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_off *o = off_find(db, tenant, consumer);
    if (o == NULL)
        return WH_OK; /* nothing to drop */
    int rc = WH_OK;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o);
    if (cur.state != ST_OFF_DROPPED) {
        if (cur.state == ST_OFF_LIVE && t != NULL)
            rc = off_put_clean(db, o, t->meta, NULL, 1, err, errlen);
        if (rc == WH_OK) {
            off_write(o, (off_val){0, 0, cur.epoch + 1, ST_OFF_DROPPED});
            o->needs_snapshot = 0;
        }
    }
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1);
    ten_done(t);
    if (prev != NULL) {
        int had = cur.state == ST_OFF_LIVE;
        prev->lsn = had ? cur.lsn : 0;
        prev->seq = had ? cur.seq : 0;
        prev->epoch = cur.epoch;
        prev->dropped = cur.state == ST_OFF_DROPPED;
    }
    return rc;
}

int st_db_undrop(st_db *db, const char *tenant, const char *consumer)
{
    if (check_names(db, tenant, consumer, 0, NULL, 0) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_off *o = off_find(db, tenant, consumer);
    if (o == NULL)
        return WH_OK;
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o);
    if (cur.state == ST_OFF_DROPPED)
        off_write(o, (off_val){0, 0, cur.epoch + 1, ST_OFF_NEW});
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1);
    return WH_OK;
}

int st_db_offset_info(st_db *db, const char *tenant, const char *consumer, st_offset *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_find(db, tenant, consumer);
    if (o != NULL) {
        off_val v = off_read(o);
        if (v.state == ST_OFF_LIVE) {
            out->lsn = v.lsn;
            out->seq = v.seq;
        }
        out->epoch = v.epoch;
        out->dropped = v.state == ST_OFF_DROPPED;
    }
    return WH_OK;
}

int st_db_get_offset(st_db *db, const char *tenant, const char *consumer, uint64_t *lsn,
                     uint32_t *seq, char *err, size_t errlen)
{
    st_offset o;
    int rc = st_db_offset_info(db, tenant, consumer, &o, err, errlen);
    *lsn = o.lsn;
    *seq = o.seq;
    return rc;
}

size_t st_db_consumer_count(st_db *db)
{
    pthread_rwlock_rdlock(&db->off_lock);
    size_t n = db->noffs;
    pthread_rwlock_unlock(&db->off_lock);
    return n;
}

/* ---- tenant end, state document ---- */

int st_db_tenant_end(st_db *db, const char *tenant, uint64_t *lsn, uint32_t *seq, char *err,
                     size_t errlen)
{
    *lsn = 0;
    *seq = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char lower[ST_KEY_MAX], last[ST_KEY_MAX];
    size_t ll = key_prefix(lower, 'E', tenant);
    size_t kl = key_event(last, tenant, UINT64_MAX, UINT32_MAX);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lower, ll);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->ev);
    rocksdb_iter_seek_for_prev(it, last, kl);
    if (rocksdb_iter_valid(it)) {
        size_t n;
        const char *k = rocksdb_iter_key(it, &n);
        if (n > ll && memcmp(k, lower, ll) == 0)
            parse_event_key(k, n, NULL, lsn, seq);
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    ten_done(t);
    if (e)
        return rerr(err, errlen, "tenant end", e);
    return WH_OK;
}

static const char state_key[] = "Sstate";

int st_db_state_get(st_db *db, uint64_t *version, char **doc, size_t *len, char *err, size_t errlen)
{
    *version = 0;
    *doc = NULL;
    *len = 0;
    size_t vl = 0;
    char *e = NULL;
    char *v = rocksdb_get(db->rdb, db->ro, state_key, sizeof(state_key) - 1, &vl, &e);
    if (e)
        return rerr(err, errlen, "state read", e);
    if (v == NULL)
        return WH_OK;
    int rc = WH_OK;
    if (vl < 8) {
        rc = wh_seterr(err, errlen, "state: stored value of %zu bytes is too short", vl);
    } else {
        *doc = malloc(vl - 8 + 1);
        if (*doc == NULL) {
            rc = wh_seterr(err, errlen, "out of memory");
        } else {
            memcpy(*doc, v + 8, vl - 8);
            (*doc)[vl - 8] = '\0';
            *len = vl - 8;
            *version = wh_get_be64((const uint8_t *)v);
        }
    }
    rocksdb_free(v);
    return rc;
}

int st_db_state_put(st_db *db, uint64_t version, const char *doc, size_t len, char *err,
                    size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    uint8_t ver[8];
    wh_put_be64(ver, version);
    const char *parts[2] = {(const char *)ver, doc};
    size_t sizes[2] = {8, len};
    const char *kp[1] = {state_key};
    size_t ks[1] = {sizeof(state_key) - 1};
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_putv(wb, 1, kp, ks, 2, parts, sizes);
    char *e = NULL;
    rocksdb_write(db->rdb, db->wo, wb, &e);
    rocksdb_writebatch_destroy(wb);
    if (e)
        return rerr(err, errlen, "state write", e);
    return WH_OK;
}

/* ---- dump / compact ---- */

static int ten_cmp(const void *a, const void *b)
{
    return strcmp((*(st_tenant *const *)a)->name, (*(st_tenant *const *)b)->name);
}

/* The tenants known now, sorted by name (malloc'ed; NULL and 0 when none). */
static st_tenant **tenants_sorted(st_db *db, size_t *n)
{
    pthread_rwlock_rdlock(&db->ten_lock);
    size_t cap = db->ntenants;
    st_tenant **v = cap ? malloc(cap * sizeof(*v)) : NULL;
    *n = 0;
    for (st_tenant *t = db->tenants; v != NULL && t != NULL && *n < cap; t = t->next)
        v[(*n)++] = t;
    pthread_rwlock_unlock(&db->ten_lock);
    if (*n > 1)
        qsort(v, *n, sizeof(*v), ten_cmp);
    return v;
}

/* Calls one(db, t, out) for every tenant in name order; then flushes out. */
typedef int (*dump_fn)(st_db *db, st_tenant *t, FILE *out, char *err, size_t errlen);

static int dump_each(st_db *db, FILE *out, dump_fn one, char *err, size_t errlen)
{
    size_t nt;
    st_tenant **tv = tenants_sorted(db, &nt);
    int rc = WH_OK;
    for (size_t i = 0; i < nt && rc == WH_OK; i++) {
        st_tenant *t;
        if (ten_open(db, tv[i]->name, 0, &t, err, errlen) != WH_OK) {
            rc = WH_ERR;
            break;
        }
        if (t == NULL)
            continue;
        rc = one(db, t, out, err, errlen);
        ten_done(t);
    }
    free(tv);
    if (rc != WH_OK)
        return rc;
    if (fflush(out) != 0 || ferror(out))
        return wh_seterr(err, errlen, "dump: write error");
    return WH_OK;
}

static int dump_events(st_db *db, st_tenant *t, FILE *out, char *err, size_t errlen)
{
    static const char lo[] = "E", hi[] = "F";
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 1);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->ev);
    for (rocksdb_iter_seek(it, lo, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        char tenant[ST_NAME_MAX + 1], l[WH_LSN_STRLEN];
        uint64_t lsn;
        uint32_t seq;
        if (parse_event_key(k, kl, tenant, &lsn, &seq) != WH_OK)
            continue;
        wh_lsn_format(lsn, l, sizeof(l));
        /* a schema registry event (its op, the first in the JSON) is
         * marked: it is no change of the source */
        size_t vl;
        const char *v = rocksdb_iter_value(it, &vl);
        const char *op = vl > 8 ? memmem(v + 8, vl - 8, ",\"op\":\"", 7) : NULL;
        size_t left = op ? vl - (size_t)(op + 7 - v) : 0;
        const char *mark = op && left >= 7 && memcmp(op + 7, "schema\"", 7) == 0 ? " schema"
                           : op && left >= 4 && memcmp(op + 7, "ddl\"", 4) == 0  ? " ddl"
                                                                                 : "";
        fprintf(out, "%s %s %" PRIu32 "%s\n", tenant, l, seq, mark);
    }
    return iter_done(it, ro, "dump", err, errlen);
}

int st_db_dump(st_db *db, FILE *out, char *err, size_t errlen)
{
    return dump_each(db, out, dump_events, err, errlen);
}

static int dump_stage(st_db *db, st_tenant *t, FILE *out, char *err, size_t errlen)
{
    if (t->stage == NULL)
        return WH_OK;
    char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
    size_t pl = key_prefix(lo, 'X', t->name);
    memcpy(hi, lo, pl);
    hi[pl - 1] = '\x01';
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, pl);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->stage);
    uint32_t xid = 0;
    uint64_t n = 0;
    for (rocksdb_iter_seek(it, lo, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl != pl + 9 || k[pl + 4] != ST_STAGE_EVENT)
            continue;
        uint32_t x = wh_get_be32((const uint8_t *)k + pl);
        if (n > 0 && x != xid) {
            fprintf(out, "%s %" PRIu32 " %" PRIu64 "\n", t->name, xid, n);
            n = 0;
        }
        xid = x;
        n++;
    }
    if (n > 0)
        fprintf(out, "%s %" PRIu32 " %" PRIu64 "\n", t->name, xid, n);
    return iter_done(it, ro, "dump of staged events", err, errlen);
}

int st_db_dump_staged(st_db *db, FILE *out, char *err, size_t errlen)
{
    return dump_each(db, out, dump_stage, err, errlen);
}

/* Flush and compact the tenant's CFs (or every tenant's when NULL). */
/* Flushes each tenant's column families (only: that tenant), then compacts
 * them fully when compact. */
static int compact_tenants(st_db *db, const char *only, int compact, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    size_t nt;
    st_tenant **tv = tenants_sorted(db, &nt);
    int rc = WH_OK;
    for (size_t i = 0; i < nt && rc == WH_OK; i++) {
        if (only != NULL && strcmp(tv[i]->name, only) != 0)
            continue;
        st_tenant *t;
        if (ten_open(db, tv[i]->name, 0, &t, err, errlen) != WH_OK) {
            rc = WH_ERR;
            break;
        }
        if (t == NULL)
            continue;
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        char *e = NULL;
        rocksdb_flush_cf(db->rdb, fo, t->ev, &e);
        if (e == NULL)
            rocksdb_flush_cf(db->rdb, fo, t->meta, &e);
        if (e == NULL && t->stage != NULL)
            rocksdb_flush_cf(db->rdb, fo, t->stage, &e);
        rocksdb_flushoptions_destroy(fo);
        if (e) {
            rc = rerr(err, errlen, "flush", e);
        } else if (compact) {
            rocksdb_compact_range_cf(db->rdb, t->ev, NULL, 0, NULL, 0);
            rocksdb_compact_range_cf(db->rdb, t->meta, NULL, 0, NULL, 0);
            if (t->stage != NULL)
                rocksdb_compact_range_cf(db->rdb, t->stage, NULL, 0, NULL, 0);
        }
        ten_done(t);
    }
    free(tv);
    return rc;
}

int st_db_compact(st_db *db, char *err, size_t errlen)
{
    return compact_tenants(db, NULL, 1, err, errlen);
}

int st_db_flush(st_db *db, char *err, size_t errlen)
{
    return compact_tenants(db, NULL, 0, err, errlen);
}

uint64_t st_db_offset_moves(st_db *db)
{
    return atomic_load(&db->moves);
}

uint64_t st_db_gc_dropped(st_db *db)
{
    return atomic_load(&db->gc_dropped);
}

uint64_t st_db_gc_compactions(st_db *db)
{
    return atomic_load(&db->gc_compactions);
}

/* ---- dead-letter queue ---- */

/* 'Q'/'R' tenant \0 consumer \0: the prefix of a consumer's queue. */
static size_t key_queue_prefix(char *k, char kind, const char *tenant, const char *consumer)
{
    size_t n = key_prefix(k, kind, tenant);
    size_t cl = strlen(consumer);
    memcpy(k + n, consumer, cl);
    k[n + cl] = '\0';
    return n + cl + 1;
}

static size_t key_queue(char *k, char kind, const char *tenant, const char *consumer, uint64_t lsn,
                        uint32_t seq)
{
    size_t n = key_queue_prefix(k, kind, tenant, consumer);
    wh_put_be64((uint8_t *)k + n, lsn);
    wh_put_be32((uint8_t *)k + n + 8, seq);
    return n + ST_POS_LEN;
}

static size_t key_lease(char *k, const char *tenant, const char *consumer)
{
    size_t n = key_prefix(k, 'L', tenant);
    size_t cl = strlen(consumer);
    memcpy(k + n, consumer, cl);
    return n + cl;
}

static int64_t wall_ms(void)
{
    return wh_wallclock_us() / 1000;
}

/* Caller holds o->wmu. */
static int lease_check(st_off *o, uint64_t lease_epoch, char *err, size_t errlen)
{
    if (o->lease_epoch == 0) {
        if (lease_epoch == 0)
            return WH_OK;
        return wh_seterr(err, errlen,
                         "lease epoch %" PRIu64 " was never granted for this target (its lease "
                         "was dropped); acquire it again",
                         lease_epoch);
    }
    if (lease_epoch == o->lease_epoch)
        return WH_OK;
    int live = o->lease_owner[0] != '\0' && o->lease_expiry_ms > wall_ms();
    if (lease_epoch == 0 && !live)
        return WH_OK;
    return wh_seterr(err, errlen,
                     "lease epoch %" PRIu64 " is not the target's lease epoch %" PRIu64
                     " (held by '%s'); the target moved to another dispatcher",
                     lease_epoch, o->lease_epoch, o->lease_owner[0] ? o->lease_owner : "nobody");
}

/* Fills *out from the entry. Caller holds o->wmu. */
static void lease_out(st_off *o, const char *owner, st_lease *out)
{
    memset(out, 0, sizeof(*out));
    int64_t left = o->lease_expiry_ms - wall_ms();
    int live = o->lease_owner[0] != '\0' && left > 0;
    out->epoch = o->lease_epoch;
    wh_strlcpy(out->owner, live ? o->lease_owner : "", sizeof(out->owner));
    out->expires_in_ms = live ? left : 0;
    out->granted = live && owner != NULL && strcmp(o->lease_owner, owner) == 0;
}

static int lease_persist(st_db *db, st_off *o, char *err, size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_lease(k, o->tenant, o->consumer);
    uint8_t v[12 + ST_OWNER_MAX];
    size_t ol = strlen(o->lease_owner);
    wh_put_be64(v, o->lease_epoch);
    wh_put_be32(v + 8, o->lease_ttl_ms);
    memcpy(v + 12, o->lease_owner, ol);
    char *e = NULL;
    rocksdb_put_cf(db->rdb, db->wo, o->ten->meta, k, kl, (const char *)v, 12 + ol, &e);
    note_write(db, e);
    if (e)
        return rerr(err, errlen, "lease write", e);
    return WH_OK;
}

int st_db_check_owner(const char *owner, char *err, size_t errlen)
{
    if (owner == NULL || owner[0] == '\0')
        return wh_seterr(err, errlen, "owner: missing or empty");
    size_t n = strlen(owner);
    if (n > ST_OWNER_MAX)
        return wh_seterr(err, errlen, "owner: longer than %d bytes", ST_OWNER_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)owner[i] < 0x21 || (unsigned char)owner[i] > 0x7E)
            return wh_seterr(err, errlen, "owner: only printable ASCII without spaces");
    return WH_OK;
}

static int lease_args(st_db *db, const char *tenant, const char *consumer, const char *owner,
                      uint32_t ttl_ms, int need_ttl, char *err, size_t errlen)
{
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK ||
        st_db_check_owner(owner, err, errlen) != WH_OK)
        return WH_ERR;
    if (need_ttl && (ttl_ms < 100 || ttl_ms > 600000))
        return wh_seterr(err, errlen, "ttl_ms: %u out of range (100..600000)", ttl_ms);
    return WH_OK;
}

int st_db_lease_acquire(st_db *db, const char *tenant, const char *consumer, const char *owner,
                        uint32_t ttl_ms, st_lease *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_args(db, tenant, consumer, owner, ttl_ms, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    pthread_mutex_lock(&o->wmu);
    int64_t now = wall_ms();
    int mine = strcmp(o->lease_owner, owner) == 0;
    int free_ = o->lease_owner[0] == '\0' || o->lease_expiry_ms <= now;
    if (mine || free_) {
        if (!mine || o->lease_epoch == 0 || o->lease_ttl_ms != ttl_ms) {
            /* a new holder: a new epoch, stored before it is granted */
            char prev_owner[ST_OWNER_MAX + 1];
            uint64_t prev_epoch = o->lease_epoch;
            uint32_t prev_ttl = o->lease_ttl_ms;
            wh_strlcpy(prev_owner, o->lease_owner, sizeof(prev_owner));
            if (!mine || o->lease_epoch == 0)
                o->lease_epoch++;
            wh_strlcpy(o->lease_owner, owner, sizeof(o->lease_owner));
            o->lease_ttl_ms = ttl_ms;
            rc = lease_persist(db, o, err, errlen);
            if (rc != WH_OK) {
                wh_strlcpy(o->lease_owner, prev_owner, sizeof(o->lease_owner));
                o->lease_epoch = prev_epoch;
                o->lease_ttl_ms = prev_ttl;
            }
        }
        if (rc == WH_OK)
            o->lease_expiry_ms = now + ttl_ms;
    }
    lease_out(o, owner, out);
    pthread_mutex_unlock(&o->wmu);
    ten_done(t);
    return rc;
}

int st_db_lease_renew(st_db *db, const char *tenant, const char *consumer, const char *owner,
                      uint64_t epoch, uint32_t ttl_ms, st_lease *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_args(db, tenant, consumer, owner, ttl_ms, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    /* still ours even after expiry, as long as nobody else took it */
    if (epoch != 0 && epoch == o->lease_epoch && strcmp(o->lease_owner, owner) == 0)
        o->lease_expiry_ms = wall_ms() + ttl_ms;
    lease_out(o, owner, out);
    pthread_mutex_unlock(&o->wmu);
    return WH_OK;
}

int st_db_lease_release(st_db *db, const char *tenant, const char *consumer, const char *owner,
                        uint64_t epoch, st_lease *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_args(db, tenant, consumer, owner, 0, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_find(db, tenant, consumer);
    if (o == NULL)
        return WH_OK;
    int rc = WH_OK;
    st_tenant *t;
    if (ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    if (epoch == o->lease_epoch && strcmp(o->lease_owner, owner) == 0) {
        o->lease_owner[0] = '\0';
        o->lease_expiry_ms = 0;
        rc = lease_persist(db, o, err, errlen); /* the epoch stays: fencing */
    }
    lease_out(o, owner, out);
    pthread_mutex_unlock(&o->wmu);
    ten_done(t);
    return rc;
}

int st_db_lease_each(st_db *db, st_lease_fn fn, void *arg)
{
    /* entries are never freed before close: collect pointers, then visit
     * each under its own lock without holding the table lock */
    pthread_rwlock_rdlock(&db->off_lock);
    size_t n = 0, cap = db->noffs;
    st_off **v = cap ? malloc(cap * sizeof(*v)) : NULL;
    for (size_t b = 0; v != NULL && b < db->nbuckets; b++)
        for (st_off *o = db->buckets[b]; o != NULL && n < cap; o = o->next)
            v[n++] = o;
    pthread_rwlock_unlock(&db->off_lock);
    int rc = WH_OK;
    for (size_t i = 0; i < n && rc == WH_OK; i++) {
        st_lease l;
        pthread_mutex_lock(&v[i]->wmu);
        uint64_t e = v[i]->lease_epoch;
        lease_out(v[i], NULL, &l);
        pthread_mutex_unlock(&v[i]->wmu);
        if (e != 0 && fn(arg, v[i]->tenant, v[i]->consumer, &l) != 0)
            rc = WH_ERR;
    }
    free(v);
    return WH_OK;
}

int st_db_owners_live(st_db *db, const char *owner, uint32_t ttl_ms,
                      void (*fn)(void *arg, const char *owner), void *arg)
{
    int64_t now = wall_ms();
    pthread_mutex_lock(&db->owners_mu);
    size_t j = 0;
    int found = 0;
    for (size_t i = 0; i < db->nowners; i++) {
        if (owner && strcmp(db->owners[i].name, owner) == 0) {
            db->owners[i].seen_ms = now;
            db->owners[i].ttl_ms = ttl_ms;
            found = 1;
        }
        if (db->owners[i].seen_ms + db->owners[i].ttl_ms < now)
            continue; /* forgotten */
        if (j != i)
            db->owners[j] = db->owners[i];
        j++;
    }
    db->nowners = j;
    if (owner && !found && db->nowners < ST_OWNERS_MAX) {
        wh_strlcpy(db->owners[db->nowners].name, owner, sizeof(db->owners[0].name));
        db->owners[db->nowners].seen_ms = now;
        db->owners[db->nowners].ttl_ms = ttl_ms;
        db->nowners++;
    }
    for (size_t i = 0; fn && i < db->nowners; i++)
        fn(arg, db->owners[i].name);
    pthread_mutex_unlock(&db->owners_mu);
    return WH_OK;
}

static int load_lease(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                      char *err, size_t errlen)
{
    WH_UNUSED(t);
    char tenant[ST_NAME_MAX + 1], consumer[ST_NAME_MAX + 1];
    if (vl < 12 || vl > 12 + ST_OWNER_MAX || split_consumer_key(k, kl, tenant, consumer) != WH_OK)
        return WH_OK;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    o->lease_epoch = wh_get_be64((const uint8_t *)v);
    o->lease_ttl_ms = wh_get_be32((const uint8_t *)v + 8);
    memcpy(o->lease_owner, v + 12, vl - 12);
    o->lease_owner[vl - 12] = '\0';
    /* live for its TTL again: the owner renews before anyone takes it */
    o->lease_expiry_ms = o->lease_owner[0] ? wall_ms() + o->lease_ttl_ms : 0;
    return WH_OK;
}

static int load_leases(st_db *db, char *err, size_t errlen)
{
    return meta_scan(db, 'L', load_lease, err, errlen);
}

int st_db_dlq_write(st_db *db, const char *tenant, const char *consumer, const st_dlq_item *items,
                    size_t n, int has_pos, uint64_t lsn, uint32_t seq, uint64_t epoch,
                    uint64_t lease_epoch, int has_ack, uint64_t ack_lsn, uint32_t ack_seq,
                    st_offset *out, char *err, size_t errlen)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    for (size_t i = 0; has_pos && i < n; i++)
        if (wh_pos_cmp(items[i].lsn, items[i].seq, lsn, seq) > 0)
            return wh_seterr(err, errlen, "records[%zu]: position after pos", i);
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o);
    off_val nv = cur;
    if (cur.state == ST_OFF_DROPPED) {
        wh_seterr(err, errlen, "consumer '%s' of tenant '%s' was dropped", consumer, tenant);
        rc = ST_DB_STALE;
    } else if (lease_check(o, lease_epoch, err, errlen) != WH_OK) {
        rc = ST_DB_STALE;
    } else if (has_pos && epoch != cur.epoch) {
        wh_seterr(err, errlen,
                  "epoch %" PRIu64 " is not the consumer's epoch %" PRIu64
                  " (its offset was moved); read again",
                  epoch, cur.epoch);
        rc = ST_DB_STALE;
    } else {
        char k[ST_KEY_MAX];
        for (size_t i = 0; i < n; i++) {
            size_t kl = key_queue(k, 'Q', tenant, consumer, items[i].lsn, items[i].seq);
            rocksdb_writebatch_put_cf(wb, t->meta, k, kl, items[i].val, items[i].len);
        }
        if (has_ack) {
            char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
            size_t ll = key_queue_prefix(lo, 'R', tenant, consumer);
            size_t hl = key_queue(hi, 'R', tenant, consumer, ack_lsn, ack_seq);
            /* [lo, hi] inclusive: delete the range then the last key */
            rocksdb_writebatch_delete_range_cf(wb, t->meta, lo, ll, hi, hl);
            rocksdb_writebatch_delete_cf(wb, t->meta, hi, hl);
        }
        if (has_pos && (cur.state == ST_OFF_NEW || wh_pos_cmp(lsn, seq, cur.lsn, cur.seq) > 0)) {
            nv = (off_val){lsn, seq, cur.epoch, ST_OFF_LIVE};
            size_t kl = key_offset(k, tenant, consumer);
            uint8_t b[ST_OFF_VAL_LEN + 1];
            size_t bl = off_encode(b, nv, o->needs_snapshot);
            rocksdb_writebatch_put_cf(wb, t->meta, k, kl, (const char *)b, bl);
        }
        if (rocksdb_writebatch_count(wb) > 0) {
            char *e = NULL;
            rocksdb_write(db->rdb, db->wo, wb, &e);
            note_write(db, e);
            if (e)
                rc = rerr(err, errlen, "dead-letter write", e);
        }
        if (rc == WH_OK)
            off_write(o, nv);
        else
            nv = cur;
    }
    pthread_mutex_unlock(&o->wmu);
    ten_done(t);
    rocksdb_writebatch_destroy(wb);
    if (out) {
        out->lsn = nv.state == ST_OFF_LIVE ? nv.lsn : 0;
        out->seq = nv.state == ST_OFF_LIVE ? nv.seq : 0;
        out->epoch = nv.epoch;
        out->dropped = nv.state == ST_OFF_DROPPED;
    }
    return rc;
}

/* Iterates queue `kind` of the consumer from the first key after the
 * optional position. */
static rocksdb_iterator_t *queue_iter(st_db *db, st_tenant *t, char kind, const char *tenant,
                                      const char *consumer, int has_after, uint64_t lsn,
                                      uint32_t seq, rocksdb_readoptions_t **rop, char *upper,
                                      size_t *ul)
{
    *ul = key_queue_prefix(upper, kind, tenant, consumer);
    upper[*ul - 1] = '\x01';
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper, *ul);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->meta);
    char seek[ST_KEY_MAX];
    size_t sl;
    if (has_after) {
        sl = key_queue(seek, kind, tenant, consumer, lsn, seq);
        rocksdb_iter_seek(it, seek, sl);
        if (rocksdb_iter_valid(it)) {
            size_t kl;
            const char *kk = rocksdb_iter_key(it, &kl);
            if (kl == sl && memcmp(kk, seek, sl) == 0)
                rocksdb_iter_next(it);
        }
    } else {
        sl = key_queue_prefix(seek, kind, tenant, consumer);
        rocksdb_iter_seek(it, seek, sl);
    }
    *rop = ro;
    return it;
}

static int queue_key_pos(const char *k, size_t kl, size_t plen, uint64_t *lsn, uint32_t *seq)
{
    if (kl != plen + ST_POS_LEN)
        return WH_ERR;
    *lsn = wh_get_be64((const uint8_t *)k + plen);
    *seq = wh_get_be32((const uint8_t *)k + plen + 8);
    return WH_OK;
}

int st_db_dlq_list(st_db *db, const char *tenant, const char *consumer, char kind, int has_after,
                   uint64_t lsn, uint32_t seq, uint32_t limit, size_t max_bytes, st_dlq_fn fn,
                   void *arg, int *more, char *err, size_t errlen)
{
    *more = 0;
    if (check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    if (kind != 'Q' && kind != 'R')
        return wh_seterr(err, errlen, "queue: unknown kind");
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char upper[ST_KEY_MAX];
    size_t ul;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it =
        queue_iter(db, t, kind, tenant, consumer, has_after, lsn, seq, &ro, upper, &ul);
    uint32_t count = 0;
    size_t bytes = 0;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        uint64_t l;
        uint32_t s;
        if (queue_key_pos(k, kl, ul, &l, &s) != WH_OK)
            continue;
        if (count >= limit || (count > 0 && bytes + vl > max_bytes)) {
            *more = 1;
            break;
        }
        count++;
        bytes += vl;
        if (fn(arg, l, s, v, vl) != 0)
            break;
    }
    int rc = iter_done(it, ro, "dead-letter list", err, errlen);
    ten_done(t);
    return rc;
}

int st_db_dlq_get(st_db *db, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                  st_dlq_fn fn, void *arg, int *found, char *err, size_t errlen)
{
    *found = 0;
    if (check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char k[ST_KEY_MAX];
    size_t kl = key_queue(k, 'Q', tenant, consumer, lsn, seq);
    size_t vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    if (e) {
        ten_done(t);
        return rerr(err, errlen, "dead-letter read", e);
    }
    if (v != NULL) {
        *found = 1;
        fn(arg, lsn, seq, v, vl);
        rocksdb_free(v);
    }
    ten_done(t);
    return WH_OK;
}

int st_db_dlq_count(st_db *db, const char *tenant, const char *consumer, char kind, uint64_t cap,
                    uint64_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char upper[ST_KEY_MAX];
    size_t ul;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = queue_iter(db, t, kind, tenant, consumer, 0, 0, 0, &ro, upper, &ul);
    for (; rocksdb_iter_valid(it) && *n < cap; rocksdb_iter_next(it))
        (*n)++;
    int rc = iter_done(it, ro, "dead-letter count", err, errlen);
    ten_done(t);
    return rc;
}

/* Moves (to_replay) or deletes the dead letters selected; caller-held lock
 * is taken here. */
static int queue_edit(st_db *db, const char *tenant, const char *consumer, int all,
                      const uint64_t *lsns, const uint32_t *seqs, size_t n, int to_replay,
                      uint32_t *count, char *err, size_t errlen)
{
    *count = 0;
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK; /* nothing stored */
    int rc = WH_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&o->wmu);
    char k[ST_KEY_MAX], rk[ST_KEY_MAX];
    if (all) {
        char upper[ST_KEY_MAX];
        size_t ul;
        rocksdb_readoptions_t *ro;
        rocksdb_iterator_t *it = queue_iter(db, t, 'Q', tenant, consumer, 0, 0, 0, &ro, upper, &ul);
        for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *kk = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            uint64_t l;
            uint32_t s;
            if (queue_key_pos(kk, kl, ul, &l, &s) != WH_OK)
                continue;
            if (to_replay) {
                size_t rl = key_queue(rk, 'R', tenant, consumer, l, s);
                rocksdb_writebatch_put_cf(wb, t->meta, rk, rl, v, vl);
            }
            rocksdb_writebatch_delete_cf(wb, t->meta, kk, kl);
            (*count)++;
        }
        rc = iter_done(it, ro, "dead-letter scan", err, errlen);
    } else {
        for (size_t i = 0; i < n && rc == WH_OK; i++) {
            size_t kl = key_queue(k, 'Q', tenant, consumer, lsns[i], seqs[i]);
            size_t vl = 0;
            char *e = NULL;
            char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
            if (e) {
                rc = rerr(err, errlen, "dead-letter read", e);
                break;
            }
            if (v == NULL)
                continue;
            if (to_replay) {
                size_t rl = key_queue(rk, 'R', tenant, consumer, lsns[i], seqs[i]);
                rocksdb_writebatch_put_cf(wb, t->meta, rk, rl, v, vl);
            }
            rocksdb_free(v);
            rocksdb_writebatch_delete_cf(wb, t->meta, k, kl);
            (*count)++;
        }
    }
    if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0) {
        char *e = NULL;
        rocksdb_write(db->rdb, db->wo, wb, &e);
        note_write(db, e);
        if (e)
            rc = rerr(err, errlen, "dead-letter write", e);
    }
    if (rc != WH_OK)
        *count = 0;
    pthread_mutex_unlock(&o->wmu);
    ten_done(t);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int st_db_dlq_replay(st_db *db, const char *tenant, const char *consumer, int all,
                     const uint64_t *lsns, const uint32_t *seqs, size_t n, uint32_t *moved,
                     char *err, size_t errlen)
{
    return queue_edit(db, tenant, consumer, all, lsns, seqs, n, 1, moved, err, errlen);
}

int st_db_dlq_purge(st_db *db, const char *tenant, const char *consumer, int all,
                    const uint64_t *lsns, const uint32_t *seqs, size_t n, uint32_t *deleted,
                    char *err, size_t errlen)
{
    return queue_edit(db, tenant, consumer, all, lsns, seqs, n, 0, deleted, err, errlen);
}

int st_db_replay_ack(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                     uint32_t seq, uint64_t lease_epoch, uint32_t *deleted, char *err,
                     size_t errlen)
{
    *deleted = 0;
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&o->wmu);
    if (lease_check(o, lease_epoch, err, errlen) != WH_OK) {
        rc = ST_DB_STALE;
    } else {
        char upper[ST_KEY_MAX];
        size_t ul;
        rocksdb_readoptions_t *ro;
        rocksdb_iterator_t *it = queue_iter(db, t, 'R', tenant, consumer, 0, 0, 0, &ro, upper, &ul);
        for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl;
            const char *kk = rocksdb_iter_key(it, &kl);
            uint64_t l;
            uint32_t s;
            if (queue_key_pos(kk, kl, ul, &l, &s) != WH_OK)
                continue;
            if (wh_pos_cmp(l, s, lsn, seq) > 0)
                break;
            rocksdb_writebatch_delete_cf(wb, t->meta, kk, kl);
            (*deleted)++;
        }
        rc = iter_done(it, ro, "replay scan", err, errlen);
        if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0) {
            char *e = NULL;
            rocksdb_write(db->rdb, db->wo, wb, &e);
            note_write(db, e);
            if (e)
                rc = rerr(err, errlen, "replay ack", e);
        }
    }
    pthread_mutex_unlock(&o->wmu);
    ten_done(t);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int st_db_dlq_drop(st_db *db, const char *tenant, const char *consumer, char *err, size_t errlen)
{
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK; /* nothing stored */
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    const char kinds[2] = {'Q', 'R'};
    for (int i = 0; i < 2; i++) {
        char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
        size_t ll = key_queue_prefix(lo, kinds[i], tenant, consumer);
        memcpy(hi, lo, ll);
        hi[ll - 1] = '\x01';
        rocksdb_writebatch_delete_range_cf(wb, t->meta, lo, ll, hi, ll);
    }
    /* the lease is freed but its epoch kept, so an old holder stays fenced
     * if the target comes back */
    st_off *o = off_find(db, tenant, consumer);
    if (o)
        pthread_mutex_lock(&o->wmu);
    if (o && o->lease_epoch > 0) {
        char k[ST_KEY_MAX];
        size_t kl = key_lease(k, tenant, consumer);
        uint8_t v[12];
        wh_put_be64(v, o->lease_epoch);
        wh_put_be32(v + 8, o->lease_ttl_ms);
        rocksdb_writebatch_put_cf(wb, t->meta, k, kl, (const char *)v, sizeof(v));
    }
    char *e = NULL;
    rocksdb_write(db->rdb, db->wo, wb, &e);
    note_write(db, e);
    if (o) {
        if (!e) {
            o->lease_owner[0] = '\0';
            o->lease_expiry_ms = 0;
        }
        pthread_mutex_unlock(&o->wmu);
    }
    ten_done(t);
    rocksdb_writebatch_destroy(wb);
    if (e)
        return rerr(err, errlen, "dead-letter drop", e);
    return WH_OK;
}

/* ---- tenants: create, drop ---- */

int st_db_tenant_create(st_db *db, const char *tenant, char *err, size_t errlen)
{
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    ten_done(t);
    return WH_OK;
}

int st_db_tenant_drop(st_db *db, const char *tenant, char *err, size_t errlen)
{
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_tenant *t = tenant_find(db, tenant, 0);
    if (t == NULL)
        return WH_OK;
    int rc = WH_OK;
    pthread_rwlock_wrlock(&t->lock);
    rocksdb_column_family_handle_t *h[4] = {t->ev, t->meta, t->stage, t->toast};
    for (int i = 0; i < 4 && rc == WH_OK; i++) {
        if (h[i] == NULL)
            continue;
        char *e = NULL;
        rocksdb_drop_column_family(db->rdb, h[i], &e);
        note_write(db, e);
        if (e) {
            rc = rerr(err, errlen, "drop column family", e);
            break;
        }
        rocksdb_column_family_handle_destroy(h[i]);
        t->cf_gen++;
        if (i == 0)
            t->ev = NULL;
        else if (i == 1)
            t->meta = NULL;
        else if (i == 2)
            t->stage = NULL;
        else
            t->toast = NULL;
    }
    if (rc == WH_OK) {
        /* its consumers become tombstones (a late commit or read of a
         * removed target does not bring the tenant back); st_db_undrop
         * when the tenant and target come back */
        pthread_rwlock_rdlock(&db->off_lock);
        for (st_off *o = t->offs; o != NULL; o = o->tnext) {
            pthread_mutex_lock(&o->wmu);
            off_val cur = off_read(o);
            off_write(o, (off_val){0, 0, cur.epoch + 1, ST_OFF_DROPPED});
            o->needs_snapshot = 0;
            o->lease_owner[0] = '\0';
            o->lease_expiry_ms = 0;
            pthread_mutex_unlock(&o->wmu);
        }
        pthread_rwlock_unlock(&db->off_lock);
        pthread_mutex_lock(&t->wm_mu);
        t->wm_lsn = t->wm_stored_lsn = t->floor_lsn = t->drop_lsn = 0;
        t->wm_incl = 0;
        t->newest_lsn = 0;
        t->newest_seq = 0;
        t->wm_seq = t->wm_stored_seq = t->floor_seq = t->drop_seq = 0;
        t->has_drop = 0;
        memset(&t->stats, 0, sizeof(t->stats));
        t->stats.oldest_age_ms = -1;
        pthread_mutex_unlock(&t->wm_mu);
        atomic_store(&t->gc_dropped, 0);
        st_toast_reset(t->tc);
        wh_info("tenant %s: column families dropped", tenant);
    }
    pthread_rwlock_unlock(&t->lock);
    atomic_fetch_add(&db->moves, 1);
    return rc;
}

int st_db_tenant_exists(st_db *db, const char *tenant)
{
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, NULL, 0) != WH_OK || t == NULL)
        return 0;
    ten_done(t);
    return 1;
}

/* ---- limits, maintenance (GC watermark, retention, per-tenant metrics) ---- */

void st_db_set_limits(st_db *db, const st_db_limits *l)
{
    atomic_store(&db->ret_bytes, l->retention_bytes);
    atomic_store(&db->ret_age_ms, l->retention_age_ms);
    atomic_store(&db->rate_bytes, l->rate_bytes_per_s);
    atomic_store(&db->rate_events, l->rate_events_per_s);
    atomic_store(&db->rate_burst_ms, l->rate_burst_ms);
    atomic_store(&db->cq_share, l->commit_share_bytes > 0 ? (uint64_t)l->commit_share_bytes
                                                          : ST_COMMIT_SHARE_BYTES);
    st_guard_set_pct(&db->guard, (int)l->isolation_target_pct);
    if (l->io_rate_bytes > 0 && !db->read_only) {
        if (db->bgio != NULL) {
            st_bgio_set_rate(db->bgio, l->io_rate_bytes);
        } else if (l->io_rate_bytes != db->io_rate_fixed) {
            static atomic_int warned;
            if (atomic_exchange(&warned, 1) == 0)
                wh_warn("store.io_rate_bytes cannot change at runtime with this librocksdb: "
                        "%" PRId64 " bytes/s until the store restarts",
                        db->io_rate_fixed);
        }
    }
}

int64_t st_db_io_rate(st_db *db)
{
    return db->bgio != NULL ? st_bgio_rate(db->bgio) : db->io_rate_fixed;
}

void st_db_io_bytes(st_db *db, uint64_t *limited, uint64_t *passed)
{
    st_bgio_bytes(db->bgio, limited, passed);
}

size_t st_db_compaction_log(st_db *db, st_bgio_rec *out, size_t max)
{
    return st_bgio_log(db->bgio, out, max);
}

void st_db_compaction_log_start(st_db *db)
{
    st_bgio_log_start(db->bgio);
}

/* A scan from a position: stops at the first event whose commit time is at
 * least cutoff_us (age cap), or once `skip` bytes were passed (bytes cap),
 * at most ST_RET_SCAN events a pass. */
#define ST_RET_SCAN 200000

typedef struct ret_scan {
    int64_t cutoff_us;
    uint64_t skip;
    uint64_t passed;
    uint64_t lsn; /* the last event looked at */
    uint32_t seq;
    int64_t ts;
    int found;     /* stopped at (lsn, seq): the first event kept */
    uint64_t plsn; /* the event looked at before it (nseen > 1) */
    uint32_t pseq;
    size_t nseen;
} ret_scan;

static int ret_step(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json, size_t len)
{
    WH_UNUSED(json);
    ret_scan *r = arg;
    r->plsn = r->lsn;
    r->pseq = r->seq;
    r->nseen++;
    r->lsn = lsn;
    r->seq = seq;
    r->ts = ts;
    if ((r->cutoff_us > 0 && ts >= r->cutoff_us) || (r->skip > 0 && r->passed >= r->skip)) {
        r->found = 1;
        return 1;
    }
    r->passed += len + 8 + ST_POS_LEN + 2; /* value + key, roughly */
    return 0;
}

/* The position just before (lsn, seq), for an exclusive read that must
 * include (lsn, seq). */
static void pos_prev(uint64_t *lsn, uint32_t *seq)
{
    if (*seq > 0) {
        (*seq)--;
    } else if (*lsn > 0) {
        (*lsn)--;
        *seq = UINT32_MAX;
    }
}

/* Scans from the watermark (inclusive); (fl, fs) = the first position kept,
 * (dl, ds) = the last event that goes (has_drop: there is one). */
static int ret_floor(st_db *db, st_tenant *t, uint64_t wl, uint32_t ws, ret_scan *r, uint64_t *fl,
                     uint32_t *fs, uint64_t *dl, uint32_t *ds, int *has_drop)
{
    char err[WH_ERRLEN];
    uint64_t l = wl;
    uint32_t q = ws;
    pos_prev(&l, &q);
    size_t n = 0;
    if (st_db_read(db, t->name, l, q, ST_RET_SCAN, SIZE_MAX, ret_step, r, &n, err, sizeof(err)) !=
            WH_OK ||
        n == 0)
        return 0;
    *fl = r->lsn;
    *fs = r->seq;
    *has_drop = !r->found || r->nseen > 1;
    *dl = r->found ? r->plsn : r->lsn;
    *ds = r->found ? r->pseq : r->seq;
    if (!r->found) { /* everything looked at goes */
        if (*fs == UINT32_MAX) {
            (*fl)++;
            *fs = 0;
        } else {
            (*fs)++;
        }
    }
    return 1;
}

/* The CF's bytes: SST files + memtables. */
static uint64_t cf_bytes(st_db *db, rocksdb_column_family_handle_t *cf)
{
    uint64_t a = 0, b = 0;
    rocksdb_property_int_cf(db->rdb, cf, "rocksdb.total-sst-files-size", &a);
    rocksdb_property_int_cf(db->rdb, cf, "rocksdb.cur-size-all-mem-tables", &b);
    return a + b;
}

/* Approximate on-disk bytes of the tenant's events in [from, end). */
static uint64_t events_bytes_from(st_db *db, st_tenant *t, uint64_t lsn, uint32_t seq, int below)
{
    char a[ST_KEY_MAX], b[ST_KEY_MAX];
    size_t al, bl;
    if (below) {
        al = key_prefix(a, 'E', t->name);
        bl = key_event(b, t->name, lsn, seq);
    } else {
        al = key_event(a, t->name, lsn, seq);
        bl = key_prefix(b, 'E', t->name);
        b[bl - 1] = '\x01';
    }
    const char *sk[1] = {a}, *lk[1] = {b};
    size_t sl[1] = {al}, ll[1] = {bl};
    uint64_t sz[1] = {0};
    char *e = NULL;
    rocksdb_approximate_sizes_cf(db->rdb, t->ev, 1, sk, sl, lk, ll, sz, &e);
    if (e) {
        rocksdb_free(e);
        return 0;
    }
    return sz[0];
}

/* The first event a read returned (first_step): its commit time and position */
typedef struct first_ev {
    int64_t ts;
    uint64_t lsn;
    uint32_t seq;
} first_ev;

static int first_step(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json,
                      size_t len)
{
    WH_UNUSED(json);
    WH_UNUSED(len);
    first_ev *f = arg;
    f->ts = ts;
    f->lsn = lsn;
    f->seq = seq;
    return 1;
}

/* Marks the tenant's live consumers whose offset is below (fl, fs), the last
 * event the retention cap drops, NEEDS_SNAPSHOT (stored with the offset, so
 * a restart keeps it); returns how many are marked. */
static uint32_t mark_behind(st_db *db, st_tenant *t, uint64_t fl, uint32_t fs)
{
    char err[WH_ERRLEN];
    uint32_t marked = 0;
    st_tenant *h;
    if (ten_open(db, t->name, 0, &h, err, sizeof(err)) != WH_OK || h == NULL)
        return 0;
    pthread_rwlock_rdlock(&db->off_lock);
    size_t n = 0;
    for (st_off *o = t->offs; o != NULL; o = o->tnext)
        n++;
    st_off **v = n ? malloc(n * sizeof(*v)) : NULL;
    n = 0;
    for (st_off *o = t->offs; v != NULL && o != NULL; o = o->tnext)
        v[n++] = o;
    pthread_rwlock_unlock(&db->off_lock);
    for (size_t i = 0; i < n; i++) {
        st_off *o = v[i];
        pthread_mutex_lock(&o->wmu);
        off_val cur = off_read(o);
        if (cur.state == ST_OFF_LIVE && !o->needs_snapshot &&
            wh_pos_cmp(cur.lsn, cur.seq, fl, fs) < 0) {
            o->needs_snapshot = 1;
            ns_note_put(db, o, ST_NS_RETENTION);
            if (off_persist(db, o, cur, err, sizeof(err)) != WH_OK)
                wh_error("target %s/%s: storing NEEDS_SNAPSHOT: %s", t->name, o->consumer, err);
            wh_warn("target %s/%s is behind the tenant's retention cap: NEEDS_SNAPSHOT (its "
                    "events below the cap are dropped; a snapshot or a set offset resumes it)",
                    t->name, o->consumer);
        }
        if (o->needs_snapshot)
            marked++;
        pthread_mutex_unlock(&o->wmu);
    }
    ten_done(h);
    free(v);
    return marked;
}

static void schema_maintain(st_db *db, st_tenant *t);

/* One pass over a tenant: retention floor, NEEDS_SNAPSHOT marks, the W key
 * when the watermark moved, a compaction of the garbage range below it, and
 * the tenant's figures. */
static void maintain_tenant(st_db *db, st_tenant *t)
{
    char err[WH_ERRLEN];
    if (!st_db_tenant_exists(db, t->name))
        return;
    int64_t now_us = wh_wallclock_us();
    uint64_t wl;
    uint32_t ws;
    tenant_watermark(t, &wl, &ws, NULL);

    /* retention caps */
    int64_t cap_age_ms = atomic_load(&db->ret_age_ms);
    int64_t cap_bytes = atomic_load(&db->ret_bytes);
    uint64_t fl = 0, dl = 0;
    uint32_t fs = 0, ds = 0;
    int floor = 0, drop = 0;
    uint64_t live = events_bytes_from(db, t, wl, ws, 0);
    if (cap_age_ms > 0) {
        ret_scan r = {0};
        r.cutoff_us = now_us - cap_age_ms * 1000;
        uint64_t l, d;
        uint32_t q, e;
        int hd = 0;
        if (ret_floor(db, t, wl, ws, &r, &l, &q, &d, &e, &hd) && wh_pos_cmp(l, q, wl, ws) > 0) {
            fl = l, fs = q, floor = 1;
            if (hd)
                dl = d, ds = e, drop = 1;
        }
    }
    if (cap_bytes > 0 && live > (uint64_t)cap_bytes) {
        ret_scan r = {0};
        r.skip = live - (uint64_t)cap_bytes;
        uint64_t l, d;
        uint32_t q, e;
        int hd = 0;
        if (ret_floor(db, t, wl, ws, &r, &l, &q, &d, &e, &hd) && wh_pos_cmp(l, q, wl, ws) > 0 &&
            (!floor || wh_pos_cmp(l, q, fl, fs) > 0)) {
            fl = l, fs = q, floor = 1;
            if (hd)
                dl = d, ds = e, drop = 1;
        }
    }
    uint32_t ns = 0;
    if (floor) {
        pthread_mutex_lock(&t->wm_mu);
        if (wh_pos_cmp(fl, fs, t->floor_lsn, t->floor_seq) > 0) {
            t->floor_lsn = fl;
            t->floor_seq = fs;
        }
        if (drop && (!t->has_drop || wh_pos_cmp(dl, ds, t->drop_lsn, t->drop_seq) > 0)) {
            t->drop_lsn = dl;
            t->drop_seq = ds;
            t->has_drop = 1;
        }
        pthread_mutex_unlock(&t->wm_mu);
    }
    pthread_mutex_lock(&t->wm_mu);
    drop = t->has_drop;
    dl = t->drop_lsn;
    ds = t->drop_seq;
    pthread_mutex_unlock(&t->wm_mu);
    /* a consumer is behind when an event after its offset goes: its offset
     * is below the last event that goes (one at that event has it) */
    ns = mark_behind(db, t, drop ? dl : 0, drop ? ds : 0); /* (0,0): counts the marks only */
    tenant_watermark(t, &wl, &ws, NULL);

    /* W key, and the garbage below the watermark */
    st_tenant *h;
    if (ten_open(db, t->name, 0, &h, err, sizeof(err)) == WH_OK && h != NULL) {
        pthread_mutex_lock(&t->wm_mu);
        int moved = wh_pos_cmp(wl, ws, t->wm_stored_lsn, t->wm_stored_seq) > 0;
        pthread_mutex_unlock(&t->wm_mu);
        if (moved) {
            char k[ST_KEY_MAX];
            size_t kl = key_durable(k, t->name);
            k[0] = 'W';
            uint8_t v[ST_POS_LEN];
            wh_put_be64(v, wl);
            wh_put_be32(v + 8, ws);
            char *e = NULL;
            /* synced: the retention floor is not stored elsewhere */
            rocksdb_put_cf(db->rdb, db->wo, t->meta, k, kl, (const char *)v, sizeof(v), &e);
            if (e) {
                rocksdb_free(e);
            } else {
                pthread_mutex_lock(&t->wm_mu);
                t->wm_stored_lsn = wl;
                t->wm_stored_seq = ws;
                pthread_mutex_unlock(&t->wm_mu);
            }
        }
        schema_maintain(db, t); /* the schema registry, at the stored watermark */
        uint64_t bytes = cf_bytes(db, t->ev) + cf_bytes(db, t->meta);
        if (t->stage != NULL)
            bytes += cf_bytes(db, t->stage);
        if (t->toast != NULL)
            bytes += cf_bytes(db, t->toast);
        ten_done(h);

        uint64_t el = 0;
        uint32_t es = 0;
        st_db_tenant_end(db, t->name, &el, &es, err, sizeof(err));
        first_ev f = {-1, 0, 0};
        uint64_t pl = wl;
        uint32_t ps = ws;
        pos_prev(&pl, &ps);
        size_t n = 0;
        st_db_read(db, t->name, pl, ps, 1, SIZE_MAX, first_step, &f, &n, err, sizeof(err));
        char cf[ST_NAME_MAX + 3];
        cf_name(cf, sizeof(cf), ST_CF_EVENTS, t->name);
        uint64_t compactions = st_bgio_compactions(db->bgio, cf);
        cf_name(cf, sizeof(cf), ST_CF_META, t->name);
        compactions += st_bgio_compactions(db->bgio, cf);
        cf_name(cf, sizeof(cf), ST_CF_STAGE, t->name);
        compactions += st_bgio_compactions(db->bgio, cf);
        pthread_mutex_lock(&t->wm_mu);
        st_tenant_stats *st = &t->stats;
        wh_strlcpy(st->tenant, t->name, sizeof(st->tenant));
        st->bytes = bytes;
        st->live_bytes = live;
        st->end_lsn = el;
        st->end_seq = es;
        st->wm_lsn = wl;
        st->wm_seq = ws;
        st->wm_lag_bytes = el > wl ? el - wl : 0;
        st->oldest_age_ms = n > 0 && f.ts >= 0 ? (now_us - f.ts) / 1000 : -1;
        if (st->oldest_age_ms < -1)
            st->oldest_age_ms = 0;
        st->needs_snapshot = ns;
        st->gc_dropped = atomic_load(&t->gc_dropped);
        st->gc_compactions = atomic_load(&t->gc_compactions);
        st->compactions = compactions;
        pthread_mutex_unlock(&t->wm_mu);
    }
}

/* The key range of the tenant's garbage to compact next: from its first
 * event to the last position (lsn, 0) at or below the watermark with at most
 * db->gc_slice_bytes of SST data below it (bisection on the LSN with
 * approximate sizes; at least one step of the LSN). 0 when the garbage is
 * below the threshold (one memtable; any garbage with tail: the rest of a
 * tenant whose last slice stopped short of its watermark, so a backlog is
 * collected to its watermark as one whole-range compaction would). */
static int gc_slice(st_db *db, st_tenant *t, int tail, uint64_t *end_lsn, uint32_t *end_seq,
                    uint64_t *bytes)
{
    uint64_t wl;
    uint32_t ws;
    tenant_watermark(t, &wl, &ws, NULL);
    if (wl == 0 && ws == 0)
        return 0;
    /* approximate sizes read 0 for a range inside one block: with tail
     * such a rest is compacted too (to the watermark, once) */
    uint64_t garbage = events_bytes_from(db, t, wl, ws, 1);
    if (!tail && garbage < (uint64_t)db->write_buffer_bytes)
        return 0;
    *end_lsn = wl;
    *end_seq = ws;
    *bytes = garbage;
    if (garbage <= db->gc_slice_bytes)
        return 1;
    uint64_t lo = 0, hi = wl; /* bytes_below(lo) <= slice < bytes_below(hi) */
    for (int i = 0; i < 64 && hi - lo > 1; i++) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (events_bytes_from(db, t, mid, 0, 1) <= db->gc_slice_bytes)
            lo = mid;
        else
            hi = mid;
    }
    if (lo == 0)
        lo = hi; /* one block is larger than a slice: take it */
    *end_lsn = lo;
    *end_seq = 0;
    *bytes = events_bytes_from(db, t, lo, 0, 1);
    return 1;
}

/* Compacts [first event, end) of the tenant's events: the GC filter drops
 * what is below the watermark (taken when the compaction starts). */
static void gc_compact(st_db *db, st_tenant *t, uint64_t end_lsn, uint32_t end_seq, uint64_t bytes)
{
    char a[ST_KEY_MAX], b[ST_KEY_MAX];
    size_t al = key_prefix(a, 'E', t->name);
    size_t bl = key_event(b, t->name, end_lsn, end_seq);
    if (db->gc_hook)
        db->gc_hook(db->gc_hook_arg, t->name, bytes);
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_exclusive_manual_compaction(co, 0);
    rocksdb_compact_range_cf_opt(db->rdb, t->ev, co, a, al, b, bl);
    rocksdb_compactoptions_destroy(co);
    atomic_fetch_add(&db->gc_compactions, 1);
    atomic_fetch_add(&t->gc_compactions, 1);
}

/* 1 when t's readers are idle (its watermark has not moved for
 * db->gc_idle_ms), no GC compaction collected to this watermark yet, and
 * its first event is below it: a rest under the threshold (one memtable)
 * that an earlier compaction left, its filter having taken an older
 * watermark, goes once instead of staying until more garbage comes. A
 * watermark that moves now and then (a slow target) sweeps no more often
 * than that. */
static int gc_idle(st_db *db, st_tenant *t)
{
    uint64_t wl;
    uint32_t ws;
    tenant_watermark(t, &wl, &ws, NULL);
    if ((wl == 0 && ws == 0) ||
        wh_now_us() - atomic_load(&t->wm_moved_us) < (uint64_t)atomic_load(&db->gc_idle_ms) * 1000u)
        return 0;
    pthread_mutex_lock(&t->wm_mu);
    int swept = wh_pos_cmp(wl, ws, t->gc_swept_lsn, t->gc_swept_seq) <= 0;
    pthread_mutex_unlock(&t->wm_mu);
    first_ev f = {-1, 0, 0};
    size_t n = 0;
    char err[WH_ERRLEN];
    if (swept ||
        st_db_read(db, t->name, 0, 0, 1, SIZE_MAX, first_step, &f, &n, err, sizeof(err)) != WH_OK ||
        n == 0)
        return 0;
    return wh_pos_cmp(f.lsn, f.seq, wl, ws) < 0;
}

/* Garbage below the watermarks: compact those key ranges only (the filter
 * drops them; the file that straddles a watermark is the only live data
 * rewritten). Event keys arrive in order, so RocksDB's own compactions move
 * files down without rewriting them and would never run the filter on them;
 * SuggestCompactRange does not mark files of the last level. Not
 * exclusive: RocksDB's automatic compactions go on meanwhile; writes are
 * rate limited (store.io_rate_bytes).
 *
 * Fair between tenants: one slice (at most gc_slice_bytes) per tenant per
 * round, round-robin, the first tenant served moving on by one every pass;
 * so a tenant with a large backlog of garbage holds the maintenance thread
 * (and the one compaction thread its manual compaction takes) one slice at
 * a time, and a tenant with a little garbage waits for at most one slice
 * of each other tenant. A pass stops after ST_GC_PASS_SLICES slices. */
static void gc_round_robin(st_db *db, st_tenant **tv, size_t nt)
{
    if (nt == 0)
        return;
    if (nt > ST_MAX_TENANTS)
        nt = ST_MAX_TENANTS;
    size_t start = atomic_fetch_add(&db->gc_next, 1) % nt;
    int done[ST_MAX_TENANTS], sliced[ST_MAX_TENANTS], idle[ST_MAX_TENANTS];
    size_t ndone = 0, slices = 0;
    memset(done, 0, sizeof(done));
    memset(sliced, 0, sizeof(sliced));
    for (size_t i = 0; i < nt; i++)
        idle[i] = gc_idle(db, tv[i]);
    for (int round = 0; round < ST_GC_PASS_SLICES && ndone < nt && slices < ST_GC_PASS_SLICES &&
                        !atomic_load(&db->stopping);
         round++) {
        for (size_t k = 0; k < nt && slices < ST_GC_PASS_SLICES; k++) {
            size_t i = (start + k) % nt;
            if (done[i])
                continue;
            st_tenant *h = NULL;
            char err[WH_ERRLEN];
            uint64_t el = 0, bytes = 0;
            uint32_t es = 0;
            if (atomic_load(&db->stopping) ||
                ten_open(db, tv[i]->name, 0, &h, err, sizeof(err)) != WH_OK || h == NULL) {
                done[i] = 1, ndone++;
                continue;
            }
            int tail = sliced[i] || idle[i] || atomic_load(&tv[i]->gc_tail);
            if (!gc_slice(db, tv[i], tail, &el, &es, &bytes)) {
                done[i] = 1, ndone++;
            } else {
                uint64_t wl;
                uint32_t ws;
                tenant_watermark(tv[i], &wl, &ws, NULL);
                gc_compact(db, tv[i], el, es, bytes);
                slices++;
                sliced[i] = 1;
                /* a slice short of the watermark: the rest goes whatever
                 * its size, in this pass or the next */
                int reached = wh_pos_cmp(el, es, wl, ws) >= 0;
                atomic_store(&tv[i]->gc_tail, !reached);
                if (reached) { /* collected to this watermark */
                    pthread_mutex_lock(&tv[i]->wm_mu);
                    tv[i]->gc_swept_lsn = wl;
                    tv[i]->gc_swept_seq = ws;
                    pthread_mutex_unlock(&tv[i]->wm_mu);
                }
                /* collected to its watermark, or no progress (the next
                 * pass tries again) */
                if (reached || events_bytes_from(db, tv[i], el, es, 1) >= bytes)
                    done[i] = 1, ndone++;
            }
            ten_done(h);
        }
    }
}

void st_db_maintain(st_db *db)
{
    size_t nt;
    st_tenant **tv = tenants_sorted(db, &nt);
    for (size_t i = 0; i < nt; i++)
        maintain_tenant(db, tv[i]);
    gc_round_robin(db, tv, nt);
    free(tv);
}

void st_db_set_commit_hook(st_db *db, st_commit_hook fn, void *arg)
{
    pthread_mutex_lock(&db->cq_mu);
    db->cq_hook_arg = arg;
    db->cq_hook = fn;
    pthread_mutex_unlock(&db->cq_mu);
}

uint64_t st_db_commit_queued(st_db *db, const char *tenant)
{
    st_tenant *t = tenant_find(db, tenant, 0);
    if (t == NULL)
        return 0;
    pthread_mutex_lock(&db->cq_mu);
    uint64_t b = t->cq_head != NULL ? t->cq_bytes : 0;
    pthread_mutex_unlock(&db->cq_mu);
    return b;
}

void st_db_set_gc_idle_ms(st_db *db, int64_t ms)
{
    atomic_store(&db->gc_idle_ms, ms >= 0 ? ms : 0);
}

void st_db_set_gc_hook(st_db *db, st_gc_hook fn, void *arg)
{
    db->gc_hook_arg = arg;
    db->gc_hook = fn;
}

static void *maint_main(void *arg)
{
    st_db *db = arg;
    pthread_mutex_lock(&db->maint_mu);
    while (!db->maint_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ST_MAINT_MS / 1000;
        pthread_cond_timedwait(&db->maint_cond, &db->maint_mu, &ts);
        if (db->maint_stop)
            break;
        pthread_mutex_unlock(&db->maint_mu);
        st_db_maintain(db);
        pthread_mutex_lock(&db->maint_mu);
    }
    pthread_mutex_unlock(&db->maint_mu);
    return NULL;
}

size_t st_db_tenant_stats(st_db *db, st_tenant_stats *out, size_t max)
{
    size_t nt;
    st_tenant **tv = tenants_sorted(db, &nt);
    size_t n = 0;
    for (size_t i = 0; i < nt && n < max; i++) {
        if (!st_db_tenant_exists(db, tv[i]->name))
            continue;
        pthread_mutex_lock(&tv[i]->wm_mu);
        out[n] = tv[i]->stats;
        wh_strlcpy(out[n].tenant, tv[i]->name, sizeof(out[n].tenant));
        pthread_mutex_unlock(&tv[i]->wm_mu);
        n++;
    }
    free(tv);
    return n;
}

int st_db_watermark(st_db *db, const char *tenant, uint64_t *lsn, uint32_t *seq)
{
    *lsn = 0;
    *seq = 0;
    st_tenant *t = tenant_find(db, tenant, 0);
    if (t == NULL)
        return WH_OK;
    tenant_watermark(t, lsn, seq, NULL);
    return WH_OK;
}

int st_db_needs_snapshot(st_db *db, const char *tenant, const char *consumer)
{
    st_off *o = off_find(db, tenant, consumer);
    return o != NULL && o->needs_snapshot;
}

void st_db_needs_snapshot_each(st_db *db, st_consumer_fn fn, void *arg)
{
    pthread_rwlock_rdlock(&db->off_lock);
    for (size_t b = 0; b < db->nbuckets; b++)
        for (st_off *o = db->buckets[b]; o != NULL; o = o->next)
            if (o->needs_snapshot)
                fn(arg, o->tenant, o->consumer, atomic_load(&o->ns_since_ms),
                   st_db_ns_kind_name(atomic_load(&o->ns_kind)));
    pthread_rwlock_unlock(&db->off_lock);
}

void st_db_offsets_each(st_db *db, const char *tenant, st_offset_fn fn, void *arg)
{
    st_tenant *t = tenant_find(db, tenant, 0);
    if (t == NULL)
        return;
    pthread_rwlock_rdlock(&db->off_lock);
    for (st_off *o = t->offs; o != NULL; o = o->tnext) {
        pthread_mutex_lock(&o->vmu);
        int live = o->state == ST_OFF_LIVE;
        uint64_t l = o->lsn;
        uint32_t q = o->seq;
        pthread_mutex_unlock(&o->vmu);
        if (live)
            fn(arg, o->consumer, l, q, o->needs_snapshot);
    }
    pthread_rwlock_unlock(&db->off_lock);
}

int st_db_mark_needs_snapshot(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                              uint32_t seq, int kind, const char *why)
{
    char err[WH_ERRLEN];
    st_off *o = off_find(db, tenant, consumer);
    st_tenant *h;
    if (o == NULL || ten_open(db, tenant, 0, &h, err, sizeof(err)) != WH_OK || h == NULL)
        return 0;
    int marked = 0;
    atomic_fetch_add(&db->moves, 1); /* before and after, like a move: pushed events are
                                        checked against the mark again */
    pthread_mutex_lock(&o->wmu);
    off_val cur = off_read(o);
    /* only at the position it was decided on: a commit (or a set offset)
     * since then wins */
    if (cur.state == ST_OFF_LIVE && !o->needs_snapshot && cur.lsn == lsn && cur.seq == seq) {
        o->needs_snapshot = 1;
        marked = 1;
        ns_note_put(db, o, kind);
        if (off_persist(db, o, cur, err, sizeof(err)) != WH_OK)
            wh_error("target %s/%s: storing NEEDS_SNAPSHOT: %s", tenant, consumer, err);
        wh_warn("target %s/%s: NEEDS_SNAPSHOT (force_resync: %s): its offset no longer holds "
                "the slot or GC; a snapshot or a set offset resumes it",
                tenant, consumer, why);
    }
    pthread_mutex_unlock(&o->wmu);
    ten_done(h);
    atomic_fetch_add(&db->moves, 1);
    return marked;
}

const char *st_db_ns_kind_name(int kind)
{
    switch (kind) {
    case ST_NS_RETENTION:
        return "retention_cap";
    case ST_NS_LAG:
        return "force_resync_lag";
    case ST_NS_DISCONNECTED:
        return "force_resync_disconnected";
    default:
        return "unknown";
    }
}

/* 'T' tenant \0 consumer -> elapsed_ms(8) lsn(8) seq(4) format(1) = 1:
 * st_slot's stall timer, written without sync (durable with the store's
 * next synced write). A 20-byte value (an older store's wall-clock start)
 * is not read: its timer starts again. */
enum { ST_STALL_LEN = 21, ST_STALL_FORMAT = 1 };

int st_db_stall_put(st_db *db, const char *tenant, const char *consumer, uint64_t elapsed_ms,
                    uint64_t lsn, uint32_t seq, char *err, size_t errlen)
{
    if (check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK; /* no tenant: nothing to keep */
    char k[ST_KEY_MAX];
    size_t kl = key_offset(k, tenant, consumer);
    k[0] = 'T';
    uint8_t b[ST_STALL_LEN];
    wh_put_be64(b, elapsed_ms);
    wh_put_be64(b + 8, lsn);
    wh_put_be32(b + 16, seq);
    b[20] = ST_STALL_FORMAT;
    char *e = NULL;
    if (elapsed_ms != 0)
        rocksdb_put_cf(db->rdb, db->wo_lazy, t->meta, k, kl, (const char *)b, sizeof(b), &e);
    else
        rocksdb_delete_cf(db->rdb, db->wo_lazy, t->meta, k, kl, &e);
    ten_done(t);
    if (e)
        return rerr(err, errlen, "stall timer write", e);
    return WH_OK;
}

/* The consumer's metadata value under key letter `letter` (its offset key
 * otherwise): 1 and *v (rocksdb_free it) when found, 0 when not (or the
 * tenant is unknown), -1 on error (err names `what`). */
static int consumer_meta_get(st_db *db, const char *tenant, const char *consumer, char letter,
                             const char *what, char **v, size_t *vl, char *err, size_t errlen)
{
    *v = NULL;
    *vl = 0;
    if (check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return -1;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return -1;
    if (t == NULL)
        return 0;
    char k[ST_KEY_MAX];
    size_t kl = key_offset(k, tenant, consumer);
    k[0] = letter;
    char *e = NULL;
    *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, vl, &e);
    ten_done(t);
    if (e) {
        rerr(err, errlen, what, e);
        rocksdb_free(*v);
        *v = NULL;
        return -1;
    }
    return *v != NULL;
}

int st_db_ns_note_get(st_db *db, const char *tenant, const char *consumer, int64_t *since_ms,
                      int *kind, char *err, size_t errlen)
{
    char *v;
    size_t vl;
    int rc = consumer_meta_get(db, tenant, consumer, 'N', "mark note read", &v, &vl, err, errlen);
    if (rc <= 0)
        return rc;
    int found = vl == 9;
    if (found) {
        *since_ms = (int64_t)wh_get_be64((const uint8_t *)v);
        *kind = (uint8_t)v[8];
    }
    rocksdb_free(v);
    return found;
}

int st_db_stall_get(st_db *db, const char *tenant, const char *consumer, uint64_t *elapsed_ms,
                    uint64_t *lsn, uint32_t *seq, char *err, size_t errlen)
{
    char *v;
    size_t vl;
    int rc = consumer_meta_get(db, tenant, consumer, 'T', "stall timer read", &v, &vl, err, errlen);
    if (rc <= 0)
        return rc;
    int found = vl == ST_STALL_LEN && v[20] == ST_STALL_FORMAT;
    if (found) {
        *elapsed_ms = wh_get_be64((const uint8_t *)v);
        *lsn = wh_get_be64((const uint8_t *)v + 8);
        *seq = wh_get_be32((const uint8_t *)v + 16);
    }
    rocksdb_free(v);
    return found;
}

/* ---- per-tenant write token bucket ---- */

static int bucket_take(st_db *db, const char *tenant, uint64_t bytes, uint64_t events, int force,
                       uint32_t *retry_ms);

int st_db_admit(st_db *db, const char *tenant, uint64_t bytes, uint64_t events, uint32_t *retry_ms)
{
    /* the guard, for a big append, before the budget: the budget charges
     * what it admits, and gives nothing back */
    uint64_t q = queued_bytes(bytes, events), charged = 0;
    if (atomic_load(&db->guard.pct) > 0 && q > atomic_load(&db->cq_share) &&
        !st_guard_admit(&db->guard, wh_now_us(), tenant_find(db, tenant, 1), q, retry_ms, &charged))
        return ST_DB_GUARD;
    if (bucket_take(db, tenant, bytes, events, 0, retry_ms) == ST_DB_SLOW) {
        if (charged > 0)
            st_guard_refund(&db->guard, charged);
        return ST_DB_SLOW;
    }
    return WH_OK;
}

st_guard *st_db_guard(st_db *db)
{
    return &db->guard;
}

const void *st_db_tenant_key(st_db *db, const char *tenant)
{
    return tenant_find(db, tenant, 1);
}

void st_db_guard_stats(st_db *db, st_guard_stats *out)
{
    out->rate_bytes = atomic_load(&db->guard.rate_gauge);
    out->quiet_us = atomic_load(&db->guard.quiet_gauge);
    out->slowed = atomic_load(&db->guard.slowed);
}

void st_db_charge(st_db *db, const char *tenant, uint64_t bytes, uint64_t events)
{
    uint32_t retry_ms;
    (void)bucket_take(db, tenant, bytes, events, 1, &retry_ms);
}

static int bucket_take(st_db *db, const char *tenant, uint64_t bytes, uint64_t events, int force,
                       uint32_t *retry_ms)
{
    *retry_ms = 0;
    int64_t rb = atomic_load(&db->rate_bytes), re = atomic_load(&db->rate_events);
    if (rb <= 0 && re <= 0)
        return WH_OK;
    int64_t burst_ms = atomic_load(&db->rate_burst_ms);
    if (burst_ms <= 0)
        burst_ms = 1000;
    st_tenant *t = tenant_find(db, tenant, 1);
    if (t == NULL)
        return WH_OK; /* out of memory: the append itself will say so */
    uint64_t now = wh_now_ms();
    double cap_b = (double)rb * (double)burst_ms / 1000.0;
    double cap_e = (double)re * (double)burst_ms / 1000.0;
    int rc = WH_OK;
    pthread_mutex_lock(&t->wm_mu);
    if (t->tb_ms == 0) { /* first use: a full bucket */
        t->tb_bytes = cap_b;
        t->tb_events = cap_e;
    } else {
        double dt = (double)(now - t->tb_ms) / 1000.0;
        t->tb_bytes = t->tb_bytes + dt * (double)rb;
        t->tb_events = t->tb_events + dt * (double)re;
        if (t->tb_bytes > cap_b)
            t->tb_bytes = cap_b;
        if (t->tb_events > cap_e)
            t->tb_events = cap_e;
    }
    t->tb_ms = now;
    /* an append is admitted while the bucket holds no debt, and charged in
     * full (a batch bigger than the bucket goes through when it is full);
     * the debt is paid back at the rate before the next one */
    double wait = 0;
    if (rb > 0 && t->tb_bytes < 0)
        wait = -t->tb_bytes / (double)rb;
    if (re > 0 && t->tb_events < 0 && -t->tb_events / (double)re > wait)
        wait = -t->tb_events / (double)re;
    if (wait > 0 && !force) {
        uint64_t ms = (uint64_t)(wait * 1000.0) + 1;
        *retry_ms = ms > 60000 ? 60000 : (uint32_t)ms;
        rc = ST_DB_SLOW;
    } else {
        if (rb > 0)
            t->tb_bytes -= (double)bytes;
        if (re > 0)
            t->tb_events -= (double)events;
    }
    pthread_mutex_unlock(&t->wm_mu);
    return rc;
}

/* ---- group commit figures ---- */

int st_db_write_groups(st_db *db, uint64_t *writes, uint64_t *groups, uint64_t *syncs)
{
    *writes = *groups = *syncs = 0;
    char *v = rocksdb_property_value(db->rdb, "rocksdb.dbstats");
    if (v == NULL)
        return WH_ERR;
    /* "Cumulative writes: 10K writes, 10K keys, 4937 commit groups, 2.0 writes per commit
     * group, ..." and "Cumulative WAL: 10K writes, 4937 syncs, ..." (K/M suffixes) */
    int rc = WH_ERR;
    const char *w = strstr(v, "Cumulative writes: ");
    const char *g = w ? strstr(w, " keys, ") : NULL;
    const char *s = strstr(v, "Cumulative WAL: ");
    const char *sy = s ? strstr(s, " writes, ") : NULL;
    if (w && g && sy) {
        double a, b, c;
        char ua = 0, ub = 0, uc = 0;
        if (sscanf(w + 19, "%lf%c", &a, &ua) == 2 && sscanf(g + 7, "%lf%c", &b, &ub) == 2 &&
            sscanf(sy + 9, "%lf%c", &c, &uc) == 2) {
            double m[3] = {ua == 'K'   ? 1e3
                           : ua == 'M' ? 1e6
                           : ua == 'G' ? 1e9
                                       : 1,
                           ub == 'K'   ? 1e3
                           : ub == 'M' ? 1e6
                           : ub == 'G' ? 1e9
                                       : 1,
                           uc == 'K'   ? 1e3
                           : uc == 'M' ? 1e6
                           : uc == 'G' ? 1e9
                                       : 1};
            *writes = (uint64_t)(a * m[0]);
            *groups = (uint64_t)(b * m[1]);
            *syncs = (uint64_t)(c * m[2]);
            rc = WH_OK;
        }
    }
    rocksdb_free(v);
    return rc;
}

/* ---- schema registry ----
 * In the tenant's meta CF:
 *   'V' tenant \0 table \0 fp(8, BE) -> first_lsn(8, BE) first_xid(4, BE) description
 *     (a tombstone: the 12 bytes alone)
 *   ... fp(8, BE) 'S' lsn(8, BE) -> flags(1): a start of the version at
 *     commit LSN lsn (ST_START_PROVEN: in a transaction decoded whole)
 *   ... fp(8, BE) 'P' xid(4, BE) -> (empty): a start in the streamed
 *     transaction xid, not committed yet
 * A version is written once: registering it again leaves it as it is. A
 * version's S and P keys sort right after its V key.
 *
 * Tombstones. A pruned version keeps its V key with the 12-byte head
 * alone (no description: a description is never empty) and no S or P
 * key: the ingestor loads it (SchemaList, pruned set) and knows the version
 * and its first use as before the prune, so a transaction PostgreSQL sends
 * again from below the watermark gets the same events at the same seqs. A
 * registration with a start (S or P) over a tombstone writes the
 * description again under the same head (the table is back to that shape);
 * by a P alone, with an S key at its first_lsn (flags 0) too.
 * What stays per version ever seen: its key and 12 bytes.
 *
 * Starts. The ingestor registers a version with a start at the first
 * change of a table after each Relation message of it (pgoutput sends one
 * before a table's first change on every connection, and after every
 * change of its shape): the start is that change's commit LSN, or in a
 * streamed transaction its xid (a P key), which the transaction's
 * StageCommit turns into a start at its commit LSN (st_db_schema_commit_xid)
 * before its events are stored. A registration is durable no later than
 * the event after it (the same synced WriteBatch; a staged request's
 * registrations are written before its events). Per Relation message, not
 * per event.
 *
 * The rule (st_db_schema_prune, on the maintenance pass when the tenant's
 * stored GC watermark moved). For a version V of table T (the versions
 * registered under one "schema.table"):
 *   start(V)  = the highest of its starts (S keys) and first_lsn;
 *   proven(V) = the highest of its ST_START_PROVEN starts (its first_lsn
 *               when it has no S key: registered before starts were):
 *               a committed change of T at that commit LSN has shape V.
 *               A start registered start_unproven (a snapshot chunk's
 *               position, whose description may not be the stream's) is
 *               no proof, nor is a first_lsn that such a chunk set (the
 *               first use of a version with S keys has a start at its
 *               first_lsn, proven when it was a change decoded whole).
 * V is pruned (to a tombstone) when it has an S key (versions registered
 * before pruning existed have none and are kept), no P key, and some
 * version W of T, not a tombstone, has
 *   start(V) < proven(W) < wm
 * where wm is the LSN of the tenant's stored GC watermark (wm, wseq):
 * events below it may be dropped by GC at any time.
 * Why it is sound: take T's changes in commit order, each with the version
 * its event carries, cut into runs of one version. A run of V with a
 * stored event has a start s of V stored with (or before) that event, at
 * or after the run's first commit LSN: the connection that decoded the
 * event had a Relation message of T either at the run's first change (the
 * shape changed there) or, when it began inside the run, at its own first
 * change of T. Were an event of V at a commit LSN c > proven(W), its run
 * would begin at or before s <= start(V) < proven(W) < c, so W's change at
 * proven(W) would lie inside a run of V: impossible. So every event of V
 * is at a commit LSN <= proven(W) < wm, below the watermark. A table that
 * returns to an older shape V starts a new run of V, whose start is
 * stored before its events: V stays until a later version is proven below
 * the watermark. Two versions started in one transaction have equal
 * starts and neither drops the other. A streamed transaction's start only
 * protects (its change may be in a subtransaction that aborted, so it
 * proves nothing); so does a snapshot chunk's. The current version of a
 * table has its highest start and is never dropped; a dropped or renamed
 * table keeps its last version.
 *
 * Registrations (append groups, st_db_schema_put), st_db_schema_drop_xid,
 * st_db_schema_commit_xid and the prune hold db->schema_mu from their
 * reads to their write: a start registered while a prune runs is never
 * deleted with its version. The prune reads the stored W key's value, so
 * after a crash the watermark is never below the one that pruned; a prune
 * cut short by a crash leaves versions (and starts) to the next one. */

#define ST_SCHEMA_KEY_MAX (1 + ST_NAME_MAX + 1 + ST_SCHEMA_TABLE_MAX + 1 + 8 + 1 + 8)
#define ST_START_PROVEN 1

static size_t key_schema(char *k, const char *tenant, const char *table, uint64_t fp)
{
    size_t tl = strlen(tenant), bl = strlen(table);
    k[0] = 'V';
    memcpy(k + 1, tenant, tl);
    k[1 + tl] = '\0';
    memcpy(k + 2 + tl, table, bl);
    k[2 + tl + bl] = '\0';
    wh_put_be64((uint8_t *)k + 3 + tl + bl, fp);
    return 3 + tl + bl + 8;
}

/* The version's S key (a start at lsn) or P key (a pending start in xid). */
static size_t key_schema_start(char *k, const char *tenant, const char *table, uint64_t fp,
                               uint64_t lsn)
{
    size_t kl = key_schema(k, tenant, table, fp);
    k[kl] = 'S';
    wh_put_be64((uint8_t *)k + kl + 1, lsn);
    return kl + 9;
}

static size_t key_schema_pending(char *k, const char *tenant, const char *table, uint64_t fp,
                                 uint32_t xid)
{
    size_t kl = key_schema(k, tenant, table, fp);
    k[kl] = 'P';
    wh_put_be32((uint8_t *)k + kl + 1, xid);
    return kl + 5;
}

/* A registry key parsed: kind 'V' (a version), 'S' (a start; arg: its
 * LSN) or 'P' (a pending start; arg: its xid). */
typedef struct skey {
    const char *table; /* not NUL-terminated: tl bytes */
    size_t tl;
    uint64_t fp;
    char kind;
    uint64_t arg;
} skey;

/* 1 when k (kl bytes, the tenant's prefix pl bytes) is a registry key. */
static int skey_parse(const char *k, size_t kl, size_t pl, skey *o)
{
    if (kl <= pl)
        return 0;
    const char *tb = k + pl;
    const char *z = memchr(tb, '\0', kl - pl);
    if (z == NULL || z == tb || (size_t)(z - tb) > ST_SCHEMA_TABLE_MAX)
        return 0;
    const uint8_t *p = (const uint8_t *)z + 1;
    size_t rest = (size_t)(k + kl - (z + 1));
    o->table = tb;
    o->tl = (size_t)(z - tb);
    if (rest < 8)
        return 0;
    o->fp = wh_get_be64(p);
    if (rest == 8) {
        o->kind = 'V';
        o->arg = 0;
    } else if (rest == 17 && p[8] == 'S') {
        o->kind = 'S';
        o->arg = wh_get_be64(p + 9);
    } else if (rest == 13 && p[8] == 'P') {
        o->kind = 'P';
        o->arg = wh_get_be32(p + 9);
    } else {
        return 0;
    }
    return 1;
}

static int skey_is(const skey *sk, const char *table, uint64_t fp)
{
    return sk->fp == fp && strlen(table) == sk->tl && memcmp(table, sk->table, sk->tl) == 0;
}

static int schema_check(const st_schema *v, char *err, size_t errlen)
{
    size_t bl = v->table ? strlen(v->table) : 0;
    if (bl == 0 || bl > ST_SCHEMA_TABLE_MAX)
        return wh_seterr(err, errlen, "schemas: table must be 1..%d bytes", ST_SCHEMA_TABLE_MAX);
    if (v->desc_len == 0 || v->desc == NULL) /* (an empty one is a tombstone's) */
        return wh_seterr(err, errlen, "schemas: description missing");
    return WH_OK;
}

/* Puts the versions of sv not yet stored, and their starts, into wb
 * (reads the meta CF). The caller holds db->schema_mu until wb is
 * written. */
static int schema_batch_put(st_db *db, rocksdb_writebatch_t *wb, st_tenant *t, const st_schema *sv,
                            size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (schema_check(&sv[i], err, errlen) != WH_OK)
            return WH_ERR;
        char k[ST_SCHEMA_KEY_MAX];
        size_t kl;
        if (sv[i].started_lsn != 0) { /* blind puts: the same start again is the same key */
            /* unproven (a snapshot chunk's): protects only, as a streamed
             * start (over a proven one at the same LSN: prunes later only) */
            uint8_t flags = sv[i].start_unproven ? 0 : ST_START_PROVEN;
            kl = key_schema_start(k, t->name, sv[i].table, sv[i].fp, sv[i].started_lsn);
            rocksdb_writebatch_put_cf(wb, t->meta, k, kl, (const char *)&flags, 1);
        }
        if (sv[i].started_xid != 0) {
            kl = key_schema_pending(k, t->name, sv[i].table, sv[i].fp, sv[i].started_xid);
            rocksdb_writebatch_put_cf(wb, t->meta, k, kl, "", 0);
        }
        kl = key_schema(k, t->name, sv[i].table, sv[i].fp);
        size_t vl = 0;
        char *e = NULL;
        char *old = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
        if (e)
            return rerr(err, errlen, "get schema version", e);
        uint8_t head[12];
        wh_put_be64(head, sv[i].first_lsn);
        wh_put_be32(head + 8, sv[i].first_xid);
        if (old != NULL) {
            /* a tombstone started again: its description back, its first
             * use kept (the ingestor knows it by that) */
            int back = vl == 12 && (sv[i].started_lsn != 0 || sv[i].started_xid != 0);
            if (back)
                memcpy(head, old, 12);
            rocksdb_free(old);
            if (!back)
                continue;
            if (sv[i].started_lsn == 0) {
                /* by a pending start alone: an S key at its first use too
                 * (protects no later, proves nothing), so that when the
                 * transaction is dropped whole the version, with no new
                 * event, is pruned again rather than kept as one
                 * registered before starts were */
                uint8_t flags = 0;
                uint64_t fl = wh_get_be64(head);
                size_t sl = key_schema_start(k, t->name, sv[i].table, sv[i].fp, fl ? fl : 1);
                rocksdb_writebatch_put_cf(wb, t->meta, k, sl, (const char *)&flags, 1);
                kl = key_schema(k, t->name, sv[i].table, sv[i].fp);
            }
        } else {
            int dup = 0; /* the same version twice in one batch */
            for (size_t j = 0; j < i && !dup; j++)
                dup = sv[j].fp == sv[i].fp && strcmp(sv[j].table, sv[i].table) == 0;
            if (dup)
                continue;
        }
        const char *kp[1] = {k}, *vp[2] = {(const char *)head, sv[i].desc ? sv[i].desc : ""};
        size_t ks[1] = {kl}, vs[2] = {12, sv[i].desc_len};
        rocksdb_writebatch_putv_cf(wb, t->meta, 1, kp, ks, 2, vp, vs);
    }
    return WH_OK;
}

/* Writes wb (synced) when it holds anything. */
static int schema_write(st_db *db, rocksdb_writebatch_t *wb, const char *what, char *err,
                        size_t errlen)
{
    if (rocksdb_writebatch_count(wb) == 0)
        return WH_OK;
    char *e = NULL;
    rocksdb_write(db->rdb, db->wo, wb, &e);
    note_write(db, e);
    return e ? rerr(err, errlen, what, e) : WH_OK;
}

int st_db_schema_put(st_db *db, const char *tenant, const st_schema *sv, size_t n, char *err,
                     size_t errlen)
{
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    if (n == 0)
        return WH_OK;
    st_tenant *t;
    if (ten_open(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&db->schema_mu);
    int rc = schema_batch_put(db, wb, t, sv, n, err, errlen);
    if (rc == WH_OK)
        rc = schema_write(db, wb, "write schema versions", err, errlen);
    pthread_mutex_unlock(&db->schema_mu);
    rocksdb_writebatch_destroy(wb);
    ten_done(t);
    return rc;
}

/* Calls fn for each registry key of the opened tenant t, in key order;
 * non-zero from fn stops. */
typedef int (*skey_fn)(void *arg, const char *k, size_t kl, const skey *sk, const char *v,
                       size_t vl);
static int schema_keys(st_db *db, st_tenant *t, skey_fn fn, void *arg, char *err, size_t errlen)
{
    if (t->meta == NULL)
        return WH_OK;
    char lo[1 + ST_NAME_MAX + 1], hi[1 + ST_NAME_MAX + 1];
    size_t tl = strlen(t->name);
    lo[0] = hi[0] = 'V';
    memcpy(lo + 1, t->name, tl);
    memcpy(hi + 1, t->name, tl);
    lo[1 + tl] = '\0';
    hi[1 + tl] = '\1';
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, tl + 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->meta);
    for (rocksdb_iter_seek(it, lo, tl + 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        skey sk;
        if (!skey_parse(k, kl, tl + 2, &sk))
            continue; /* not a registry key */
        if (sk.kind == 'V' && vl < 12)
            continue; /* not a version */
        if (fn(arg, k, kl, &sk, v, vl) != 0)
            break;
    }
    int rc = iter_end(it, WH_OK, "reading the schema registry", err, errlen);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* schema_scan's state: the version being read (its S and P keys follow
 * its V key). */
typedef struct scan_acc {
    st_schema_fn fn;
    void *arg;
    int have, stopped, oom;
    char table[ST_SCHEMA_TABLE_MAX + 1];
    st_schema cur;
    wh_buf desc;
} scan_acc;

static int scan_flush(scan_acc *a)
{
    if (!a->have)
        return 0;
    a->have = 0;
    a->cur.table = a->table;
    a->cur.desc = a->desc.data != NULL ? a->desc.data : "";
    a->stopped = a->fn(a->arg, &a->cur) != 0;
    return a->stopped;
}

static int scan_step(void *arg, const char *k, size_t kl, const skey *sk, const char *v, size_t vl)
{
    WH_UNUSED(k);
    WH_UNUSED(kl);
    scan_acc *a = arg;
    if (sk->kind == 'V') {
        if (scan_flush(a))
            return 1;
        wh_buf_reset(&a->desc);
        if (wh_buf_append(&a->desc, v + 12, vl - 12) != WH_OK) {
            a->oom = 1;
            return 1;
        }
        memcpy(a->table, sk->table, sk->tl);
        a->table[sk->tl] = '\0';
        a->cur = (st_schema){.fp = sk->fp,
                             .first_lsn = wh_get_be64((const uint8_t *)v),
                             .first_xid = wh_get_be32((const uint8_t *)v + 8),
                             .desc_len = vl - 12,
                             .pruned = vl == 12};
        a->have = 1;
        return 0;
    }
    if (!a->have || !skey_is(sk, a->table, a->cur.fp))
        return 0; /* a start without its version */
    if (sk->kind == 'P') {
        a->cur.pending++;
    } else {
        if (sk->arg > a->cur.started_lsn)
            a->cur.started_lsn = sk->arg;
        if (vl >= 1 && (v[0] & ST_START_PROVEN) && sk->arg > a->cur.proven_lsn)
            a->cur.proven_lsn = sk->arg;
    }
    return 0;
}

/* Calls fn for each version of the opened tenant t (with its starts). */
static int schema_scan(st_db *db, st_tenant *t, st_schema_fn fn, void *arg, char *err,
                       size_t errlen)
{
    scan_acc a = {.fn = fn, .arg = arg};
    wh_buf_init(&a.desc, 0);
    int rc = schema_keys(db, t, scan_step, &a, err, errlen);
    if (rc == WH_OK && !a.oom && !a.stopped)
        scan_flush(&a);
    if (rc == WH_OK && a.oom)
        rc = wh_seterr(err, errlen, "out of memory");
    wh_buf_free(&a.desc);
    return rc;
}

int st_db_schema_list(st_db *db, const char *tenant, st_schema_fn fn, void *arg, char *err,
                      size_t errlen)
{
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = schema_scan(db, t, fn, arg, err, errlen);
    ten_done(t);
    return rc;
}

/* st_db_schema_drop_xid's and st_db_schema_commit_xid's walk. */
typedef struct xid_acc {
    st_tenant *t;
    uint32_t xid;
    uint64_t commit_lsn; /* 0: drop (the transaction is dropped whole) */
    rocksdb_writebatch_t *wb;
    char table[ST_SCHEMA_TABLE_MAX + 1]; /* the version being dropped ("": none) */
    uint64_t fp;
    size_t n;
} xid_acc;

static int xid_step(void *arg, const char *k, size_t kl, const skey *sk, const char *v, size_t vl)
{
    WH_UNUSED(vl);
    xid_acc *a = arg;
    if (sk->kind == 'V') {
        a->table[0] = '\0';
        if (a->commit_lsn == 0 && wh_get_be64((const uint8_t *)v) == 0 &&
            wh_get_be32((const uint8_t *)v + 8) == a->xid) {
            memcpy(a->table, sk->table, sk->tl); /* first used by xid: it goes, starts too */
            a->table[sk->tl] = '\0';
            a->fp = sk->fp;
            rocksdb_writebatch_delete_cf(a->wb, a->t->meta, k, kl);
            a->n++;
        }
        return 0;
    }
    if (a->table[0] != '\0' && skey_is(sk, a->table, a->fp)) {
        rocksdb_writebatch_delete_cf(a->wb, a->t->meta, k, kl);
        return 0;
    }
    if (sk->kind != 'P' || (sk->arg != a->xid && !(a->xid == 0 && a->commit_lsn == 0)))
        return 0;
    rocksdb_writebatch_delete_cf(a->wb, a->t->meta, k, kl); /* a pending start of xid */
    if (a->commit_lsn != 0) {                               /* ... becomes a start at its commit */
        char sk2[ST_SCHEMA_KEY_MAX], table[ST_SCHEMA_TABLE_MAX + 1];
        memcpy(table, sk->table, sk->tl);
        table[sk->tl] = '\0';
        uint8_t flags = 0; /* streamed: protects only */
        size_t l = key_schema_start(sk2, a->t->name, table, sk->fp, a->commit_lsn);
        rocksdb_writebatch_put_cf(a->wb, a->t->meta, sk2, l, (const char *)&flags, 1);
        a->n++;
    }
    return 0;
}

/* Drops (commit_lsn 0) or commits xid's registry entries. */
static int schema_xid(st_db *db, const char *tenant, uint32_t xid, uint64_t commit_lsn, size_t *n,
                      char *err, size_t errlen)
{
    *n = 0;
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    xid_acc a = {.t = t, .xid = xid, .commit_lsn = commit_lsn, .wb = rocksdb_writebatch_create()};
    pthread_mutex_lock(&db->schema_mu);
    int rc = schema_keys(db, t, xid_step, &a, err, errlen);
    if (rc == WH_OK)
        rc = schema_write(db, a.wb, commit_lsn ? "commit schema starts" : "delete schema versions",
                          err, errlen);
    pthread_mutex_unlock(&db->schema_mu);
    rocksdb_writebatch_destroy(a.wb);
    ten_done(t);
    *n = a.n;
    return rc;
}

int st_db_schema_drop_xid(st_db *db, const char *tenant, uint32_t xid, size_t *n, char *err,
                          size_t errlen)
{
    return schema_xid(db, tenant, xid, 0, n, err, errlen);
}

int st_db_schema_commit_xid(st_db *db, const char *tenant, uint32_t xid, uint64_t commit_lsn,
                            size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (xid == 0 || commit_lsn == 0)
        return wh_seterr(err, errlen, "schema starts: commit of xid %u at LSN %" PRIu64, xid,
                         commit_lsn);
    return schema_xid(db, tenant, xid, commit_lsn, n, err, errlen);
}

/* ---- pruning (the rule above) ---- */

typedef struct pver {
    char table[ST_SCHEMA_TABLE_MAX + 1];
    uint64_t fp;
    uint64_t start;   /* start(V) */
    uint64_t proven;  /* proven(V) */
    uint64_t s_max;   /* its S keys that count: the highest, the highest proven */
    uint64_t s_proof; /* (0: none) */
    uint32_t pending;
    int drop;
    int tomb; /* a tombstone already: neither pruned nor a proof */
} pver;

typedef struct prune_acc {
    pver *v;
    size_t n, cap;
    int oom;
    /* the walk that deletes */
    st_tenant *t;
    rocksdb_writebatch_t *wb;
    const pver *cur; /* the version of the last V key (NULL: unknown) */
    size_t dropped, starts;
} prune_acc;

static int prune_collect(void *arg, const st_schema *sv)
{
    prune_acc *a = arg;
    if (wh_grow(&a->v, a->n + 1, &a->cap, sizeof(*a->v), 32) != WH_OK) {
        a->oom = 1;
        return 1;
    }
    pver *p = &a->v[a->n++];
    memset(p, 0, sizeof(*p));
    wh_strlcpy(p->table, sv->table, sizeof(p->table));
    p->fp = sv->fp;
    p->start = sv->started_lsn > sv->first_lsn ? sv->started_lsn : sv->first_lsn;
    /* with S keys, first_lsn proves only through its own start (a snapshot
     * chunk's first use proves nothing) */
    p->proven = sv->started_lsn != 0 ? sv->proven_lsn : sv->first_lsn;
    p->s_max = sv->started_lsn;
    p->s_proof = sv->proven_lsn;
    p->pending = sv->pending;
    p->tomb = sv->pruned;
    /* no S key: registered before starts were recorded, its last start
     * unknown: kept */
    p->drop = sv->started_lsn != 0 && sv->pending == 0 && !sv->pruned;
    return 0;
}

/* Marks what goes: the versions of each table (contiguous, by key order)
 * whose start is below a proven start of the table under wm. */
static void prune_decide(pver *v, size_t n, uint64_t wm)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t best = 0; /* the highest proven start below wm */
        while (j < n && strcmp(v[j].table, v[i].table) == 0) {
            if (!v[j].tomb && v[j].proven < wm && v[j].proven > best)
                best = v[j].proven;
            j++;
        }
        for (size_t x = i; x < j; x++)
            v[x].drop = v[x].drop && v[x].start < best;
        i = j;
    }
}

static int pver_cmp(const char *table, uint64_t fp, const pver *p)
{
    int c = strcmp(table, p->table);
    return c != 0 ? c : fp < p->fp ? -1 : fp > p->fp ? 1 : 0;
}

static int prune_step(void *arg, const char *k, size_t kl, const skey *sk, const char *v, size_t vl)
{
    prune_acc *a = arg;
    if (sk->kind == 'V') {
        char table[ST_SCHEMA_TABLE_MAX + 1];
        memcpy(table, sk->table, sk->tl);
        table[sk->tl] = '\0';
        size_t lo = 0, hi = a->n;
        a->cur = NULL;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = pver_cmp(table, sk->fp, &a->v[mid]);
            if (c == 0) {
                a->cur = &a->v[mid];
                break;
            }
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (a->cur != NULL && a->cur->drop && vl > 12) { /* its tombstone: the head alone */
            rocksdb_writebatch_put_cf(a->wb, a->t->meta, k, kl, v, 12);
            a->dropped++;
        }
        return 0;
    }
    const pver *c = a->cur != NULL && skey_is(sk, a->cur->table, a->cur->fp) ? a->cur : NULL;
    if (c != NULL && !c->drop && (sk->kind == 'P' || sk->arg == c->s_max || sk->arg == c->s_proof))
        return 0;                                           /* kept: it counts */
    rocksdb_writebatch_delete_cf(a->wb, a->t->meta, k, kl); /* dropped, or no longer counts */
    a->starts++;
    return 0;
}

/* The prune of the opened tenant t at watermark LSN wm. */
static int schema_prune_t(st_db *db, st_tenant *t, uint64_t wm, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    prune_acc a = {.t = t, .wb = rocksdb_writebatch_create()};
    pthread_mutex_lock(&db->schema_mu);
    int rc = schema_scan(db, t, prune_collect, &a, err, errlen);
    if (rc == WH_OK && a.oom)
        rc = wh_seterr(err, errlen, "out of memory");
    if (rc == WH_OK) {
        prune_decide(a.v, a.n, wm);
        rc = schema_keys(db, t, prune_step, &a, err, errlen);
    }
    if (rc == WH_OK)
        rc = schema_write(db, a.wb, "prune schema versions", err, errlen);
    pthread_mutex_unlock(&db->schema_mu);
    rocksdb_writebatch_destroy(a.wb);
    free(a.v);
    if (rc == WH_OK) {
        *n = a.dropped;
        atomic_fetch_add(&db->schema_pruned, a.dropped);
    }
    return rc;
}

int st_db_schema_prune(st_db *db, const char *tenant, uint64_t wm_lsn, size_t *n, char *err,
                       size_t errlen)
{
    *n = 0;
    if (writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = schema_prune_t(db, t, wm_lsn, n, err, errlen);
    ten_done(t);
    return rc;
}

void st_db_set_schema_prune(st_db *db, int on)
{
    atomic_store(&db->schema_prune, on != 0);
}

uint64_t st_db_schema_pruned(st_db *db)
{
    return atomic_load(&db->schema_pruned);
}

/* The maintenance pass of the opened tenant t: a prune when its stored
 * watermark moved since the last one. */
static void schema_maintain(st_db *db, st_tenant *t)
{
    pthread_mutex_lock(&t->wm_mu);
    uint64_t wm = t->wm_stored_lsn;
    pthread_mutex_unlock(&t->wm_mu);
    if (db->read_only || wm == atomic_load(&t->schema_wm) || !atomic_load(&db->schema_prune))
        return;
    char err[WH_ERRLEN];
    size_t n = 0;
    if (schema_prune_t(db, t, wm, &n, err, sizeof(err)) != WH_OK) {
        wh_warn("tenant %s: pruning the schema registry failed (tried again at the next pass): %s",
                t->name, err);
        return;
    }
    atomic_store(&t->schema_wm, wm);
    if (n > 0) {
        char l[WH_LSN_STRLEN];
        wh_lsn_format(wm, l, sizeof(l));
        wh_info("tenant %s: %zu schema version%s pruned to tombstones (no event at or above the "
                "GC watermark %s uses %s)",
                t->name, n, n == 1 ? "" : "s", l, n == 1 ? "it" : "them");
    }
}

/* ---- the TOAST value cache (st_toast.h) ---- */

/* ten_open (create), with the TOAST CF made first. */
static int ten_open_toast(st_db *db, const char *tenant, st_tenant **out, char *err, size_t errlen)
{
    for (;;) {
        if (ten_open(db, tenant, 1, out, err, errlen) != WH_OK)
            return WH_ERR;
        st_tenant *t = *out;
        if (t->toast != NULL)
            return WH_OK;
        ten_done(t);
        pthread_rwlock_wrlock(&t->lock);
        char *e = NULL;
        if (t->toast == NULL && t->ev != NULL) {
            char name[ST_NAME_MAX + 3];
            cf_name(name, sizeof(name), ST_CF_TOAST, t->name);
            t->toast = rocksdb_create_column_family(db->rdb, db->opts, name, &e);
            if (e == NULL) {
                st_toast_reset(t->tc);
                wh_info("tenant %s: TOAST cache column family created", t->name);
            }
        }
        pthread_rwlock_unlock(&t->lock);
        if (e)
            return rerr(err, errlen, "create column family", e);
    }
}

void st_db_set_toast_bytes(st_db *db, int64_t bytes)
{
    atomic_store(&db->toast_bytes, bytes);
}

int st_db_toast_get(st_db *db, const char *tenant, uint32_t rel, const char *key, size_t keylen,
                    const char *col, uint64_t before_lsn, char **val, size_t *vallen, uint64_t *lsn,
                    char *err, size_t errlen)
{
    *val = NULL;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return -1;
    if (t == NULL)
        return 0;
    int rc = st_toast_get(t->tc, db->rdb, t->toast, rel, key, keylen, col, before_lsn, val, vallen,
                          lsn, err, errlen);
    ten_done(t);
    return rc;
}

int st_db_toast_tables(st_db *db, const char *tenant, st_toast_table **out, size_t *n, char *err,
                       size_t errlen)
{
    *out = NULL;
    *n = 0;
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = st_toast_tables(t->tc, db->rdb, t->toast, out, n, err, errlen);
    ten_done(t);
    return rc;
}

int st_db_toast_stats(st_db *db, const char *tenant, st_toast_stats *out)
{
    memset(out, 0, sizeof(*out));
    st_tenant *t;
    if (ten_open(db, tenant, 0, &t, NULL, 0) != WH_OK || t == NULL)
        return 0;
    int has = t->toast != NULL;
    if (has)
        st_toast_get_stats(t->tc, db->rdb, t->toast, out);
    ten_done(t);
    return has;
}
