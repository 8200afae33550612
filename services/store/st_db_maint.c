/* st_db (st_db.h): runtime limits, the maintenance thread (GC watermark, retention,
 * NEEDS_SNAPSHOT marks, GC compactions, per-tenant figures) and the write token bucket. */
#include "st_db_int.h"

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
        al = st_dbi_key_prefix(a, 'E', t->name);
        bl = st_dbi_key_event(b, t->name, lsn, seq);
    } else {
        al = st_dbi_key_event(a, t->name, lsn, seq);
        bl = st_dbi_key_prefix(b, 'E', t->name);
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
    if (st_dbi_ten_open(db, t->name, 0, &h, err, sizeof(err)) != WH_OK || h == NULL)
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
        off_val cur = st_dbi_off_read(o);
        int mark = cur.state == ST_OFF_LIVE && !o->needs_snapshot &&
                   wh_pos_cmp(cur.lsn, cur.seq, fl, fs) < 0;
        if (mark) {
            /* before and after, like a move: a reader fed by pushed events
             * Reads again and gets the mark (st_db_offset_moves) */
            atomic_fetch_add(&db->moves, 1);
            o->needs_snapshot = 1;
            st_dbi_ns_note_put(db, o, ST_NS_RETENTION);
            if (st_dbi_off_persist(db, o, cur, err, sizeof(err)) != WH_OK)
                wh_error("target %s/%s: storing NEEDS_SNAPSHOT: %s", t->name, o->consumer, err);
            wh_warn("target %s/%s is behind the tenant's retention cap: NEEDS_SNAPSHOT (its "
                    "events below the cap are dropped; a snapshot or a set offset resumes it)",
                    t->name, o->consumer);
        }
        if (o->needs_snapshot)
            marked++;
        pthread_mutex_unlock(&o->wmu);
        if (mark)
            atomic_fetch_add(&db->moves, 1);
    }
    st_dbi_ten_done(h);
    free(v);
    return marked;
}

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
    st_dbi_tenant_watermark(t, &wl, &ws, NULL);

    /* retention caps */
    int64_t cap_age_ms = atomic_load(&db->ret_age_ms);
    int64_t cap_bytes = atomic_load(&db->ret_bytes);
    uint64_t fl = 0, dl = 0;
    uint32_t fs = 0, ds = 0;
    int floor = 0, drop = 0;
    /* (a committed streamed transaction's events count as their
     * references: retention only drops events, and the staging CF also
     * holds open transactions, which no drop of events frees) */
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
    /* the last event that goes: the new one, or the one of an earlier pass */
    uint64_t ml = 0;
    uint32_t ms = 0;
    pthread_mutex_lock(&t->wm_mu);
    if (t->has_drop)
        ml = t->drop_lsn, ms = t->drop_seq;
    pthread_mutex_unlock(&t->wm_mu);
    if (floor && drop && wh_pos_cmp(dl, ds, ml, ms) > 0)
        ml = dl, ms = ds;
    /* A consumer is behind when an event after its offset goes: its offset
     * is below the last event that goes (one at that event has it). The
     * marks come before the floor: once published, the floor is every flush
     * and compaction's watermark at once, so a consumer behind it must by
     * then be NEEDS_SNAPSHOT (its Reads say so, its offset no longer holds
     * the GC), or it could read across the hole and commit past it
     * unmarked. An unmarked consumer holds the GC at its offset until then,
     * and offsets only move on. (0,0): counts the marks only. */
    uint32_t ns = mark_behind(db, t, ml, ms);
    if (floor) {
        int published = 0;
        pthread_mutex_lock(&t->wm_mu);
        if (wh_pos_cmp(fl, fs, t->floor_lsn, t->floor_seq) > 0) {
            t->floor_lsn = fl;
            t->floor_seq = fs;
            published = 1;
        }
        if (drop && (!t->has_drop || wh_pos_cmp(dl, ds, t->drop_lsn, t->drop_seq) > 0)) {
            t->drop_lsn = dl;
            t->drop_seq = ds;
            t->has_drop = 1;
        }
        pthread_mutex_unlock(&t->wm_mu);
        st_floor_hook hook = db->floor_hook;
        if (published && hook != NULL)
            hook(db->floor_hook_arg, t->name, fl, fs);
    }
    st_dbi_tenant_watermark(t, &wl, &ws, NULL);

    /* W key, and the garbage below the watermark */
    st_tenant *h;
    if (st_dbi_ten_open(db, t->name, 0, &h, err, sizeof(err)) == WH_OK && h != NULL) {
        pthread_mutex_lock(&t->wm_mu);
        int moved = wh_pos_cmp(wl, ws, t->wm_stored_lsn, t->wm_stored_seq) > 0;
        pthread_mutex_unlock(&t->wm_mu);
        if (moved) {
            char k[ST_KEY_MAX];
            size_t kl = st_dbi_key_durable(k, t->name);
            k[0] = 'W';
            uint8_t v[ST_POS_LEN];
            wh_put_be64(v, wl);
            wh_put_be32(v + 8, ws);
            char *e = NULL;
            /* synced: the retention floor is not stored elsewhere */
            int slot = st_dbi_io_begin(db, "retention write");
            rocksdb_put_cf(db->rdb, db->wo, t->meta, k, kl, (const char *)v, sizeof(v), &e);
            st_dbi_io_end(db, slot);
            st_dbi_sync_check("retention write", e);
            if (e) {
                rocksdb_free(e);
            } else {
                pthread_mutex_lock(&t->wm_mu);
                t->wm_stored_lsn = wl;
                t->wm_stored_seq = ws;
                pthread_mutex_unlock(&t->wm_mu);
            }
        }
        st_dbi_schema_maintain(db, t); /* the schema registry, at the stored watermark */
        /* the staging of committed transactions none of whose events is left */
        size_t ngc = 0;
        if (st_dbi_stage_gc(db, t, &ngc, err, sizeof(err)) != WH_OK)
            wh_warn("tenant %s: staging GC: %s", t->name, err);
        else if (ngc > 0)
            wh_debug("tenant %s: staging of %zu committed transaction%s dropped", t->name, ngc,
                     ngc == 1 ? "" : "s");
        uint64_t bytes = cf_bytes(db, t->ev) + cf_bytes(db, t->meta);
        if (t->stage != NULL)
            bytes += cf_bytes(db, t->stage);
        if (t->toast != NULL)
            bytes += cf_bytes(db, t->toast);
        st_dbi_ten_done(h);

        uint64_t el = 0;
        uint32_t es = 0;
        int end_ok = st_db_tenant_end(db, t->name, &el, &es, err, sizeof(err)) == WH_OK;
        if (end_ok) {
            st_dbi_open_end_read(t, el, es); /* not read at open: now */
        } else {
            /* keep the end of the last pass that read it (lag, metrics),
             * say so once per failing stretch */
            pthread_mutex_lock(&t->wm_mu);
            el = t->stats.end_lsn;
            es = t->stats.end_seq;
            int was_ok = !t->stats.end_unread;
            pthread_mutex_unlock(&t->wm_mu);
            if (was_ok)
                wh_warn("tenant %s: its last event cannot be read (%s): its end and lag "
                        "keep the last figures read "
                        "(walhook_store_tenant_end_read_ok 0)",
                        t->name, err);
        }
        first_ev f = {-1, 0, 0};
        uint64_t pl = wl;
        uint32_t ps = ws;
        pos_prev(&pl, &ps);
        size_t n = 0;
        st_db_read(db, t->name, pl, ps, 1, SIZE_MAX, first_step, &f, &n, err, sizeof(err));
        char cf[ST_NAME_MAX + 3];
        st_dbi_cf_name(cf, sizeof(cf), ST_CF_EVENTS, t->name);
        uint64_t compactions = st_bgio_compactions(db->bgio, cf);
        st_dbi_cf_name(cf, sizeof(cf), ST_CF_META, t->name);
        compactions += st_bgio_compactions(db->bgio, cf);
        st_dbi_cf_name(cf, sizeof(cf), ST_CF_STAGE, t->name);
        compactions += st_bgio_compactions(db->bgio, cf);
        pthread_mutex_lock(&t->wm_mu);
        st_tenant_stats *st = &t->stats;
        wh_strlcpy(st->tenant, t->name, sizeof(st->tenant));
        st->bytes = bytes;
        st->live_bytes = live;
        if (end_ok && st->end_unread)
            wh_info("tenant %s: its last event reads again", t->name);
        st->end_lsn = el;
        st->end_seq = es;
        st->end_unread = !end_ok;
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
    st_dbi_tenant_watermark(t, &wl, &ws, NULL);
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
    size_t al = st_dbi_key_prefix(a, 'E', t->name);
    size_t bl = st_dbi_key_event(b, t->name, end_lsn, end_seq);
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
    st_dbi_tenant_watermark(t, &wl, &ws, NULL);
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
                st_dbi_ten_open(db, tv[i]->name, 0, &h, err, sizeof(err)) != WH_OK || h == NULL) {
                done[i] = 1, ndone++;
                continue;
            }
            int tail = sliced[i] || idle[i] || atomic_load(&tv[i]->gc_tail);
            if (!gc_slice(db, tv[i], tail, &el, &es, &bytes)) {
                done[i] = 1, ndone++;
            } else {
                uint64_t wl;
                uint32_t ws;
                st_dbi_tenant_watermark(tv[i], &wl, &ws, NULL);
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
            st_dbi_ten_done(h);
        }
    }
}

void st_db_maintain(st_db *db)
{
    size_t nt;
    st_tenant **tv = st_dbi_tenants_sorted(db, &nt);
    for (size_t i = 0; i < nt; i++)
        maintain_tenant(db, tv[i]);
    /* the GC turns go to tenants with data alone (at most ST_MAX_TENANTS),
     * not to the entries of dropped ones (up to ST_MAX_TENANT_NAMES) */
    size_t nl = 0;
    for (size_t i = 0; i < nt; i++)
        if (st_db_tenant_exists(db, tv[i]->name))
            tv[nl++] = tv[i];
    gc_round_robin(db, tv, nl);
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
    st_tenant *t = st_dbi_tenant_find(db, tenant, 0);
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

void st_db_set_floor_hook(st_db *db, st_floor_hook fn, void *arg)
{
    db->floor_hook_arg = arg;
    db->floor_hook = fn;
}

void st_db_set_gc_hook(st_db *db, st_gc_hook fn, void *arg)
{
    db->gc_hook_arg = arg;
    db->gc_hook = fn;
}

void *st_dbi_maint_main(void *arg)
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
    st_tenant **tv = st_dbi_tenants_sorted(db, &nt);
    size_t n = 0;
    for (size_t i = 0; i < nt && n < max; i++) {
        /* not st_db_tenant_exists: Stats reads this, and a tenant whose
         * column family create or drop waits for the disk holds its lock */
        int busy;
        st_tenant *h = st_dbi_ten_try(db, tv[i]->name, &busy);
        if (h == NULL && !busy)
            continue;
        st_dbi_ten_done(h);
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
    st_tenant *t = st_dbi_tenant_find(db, tenant, 0);
    if (t == NULL)
        return WH_OK;
    st_dbi_tenant_watermark(t, lsn, seq, NULL);
    return WH_OK;
}

int st_db_needs_snapshot(st_db *db, const char *tenant, const char *consumer)
{
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    return o != NULL && o->needs_snapshot;
}

void st_db_offset_and_mark(st_db *db, const char *tenant, const char *consumer, st_offset *out,
                           int *needs_snapshot)
{
    memset(out, 0, sizeof(*out));
    *needs_snapshot = 0;
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o == NULL)
        return;
    pthread_mutex_lock(&o->wmu);
    off_val v = st_dbi_off_read(o);
    *needs_snapshot = o->needs_snapshot;
    pthread_mutex_unlock(&o->wmu);
    if (v.state == ST_OFF_LIVE) {
        out->lsn = v.lsn;
        out->seq = v.seq;
    }
    out->epoch = v.epoch;
    out->dropped = v.state == ST_OFF_DROPPED;
}

int st_db_resync_note(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                      uint32_t seq, uint64_t bf, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    st_tenant *h;
    if (o == NULL)
        return 0;
    if (st_dbi_ten_open(db, tenant, 0, &h, err, errlen) != WH_OK)
        return WH_ERR;
    if (h == NULL)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&o->wmu);
    if (o->needs_snapshot) {
        char k[ST_KEY_MAX];
        size_t kl = st_dbi_key_offset(k, o->tenant, o->consumer);
        k[0] = 'N';
        uint8_t b[ST_NS_NOTE_RS_LEN];
        wh_put_be64(b, (uint64_t)atomic_load(&o->ns_since_ms));
        b[8] = (uint8_t)atomic_load(&o->ns_kind);
        wh_put_be64(b + 9, lsn);
        wh_put_be32(b + 17, seq);
        wh_put_be64(b + 21, bf);
        char *e = NULL;
        /* no sync of its own: the caller's synced state write comes next
         * in the same WAL and makes this durable before it */
        rocksdb_put_cf(db->rdb, db->wo_lazy, o->ten->meta, k, kl, (const char *)b, sizeof(b), &e);
        st_dbi_note_write(db, e);
        if (e) {
            rc = st_dbi_rerr(err, errlen, "resync note write", e);
        } else {
            o->rs_lsn = lsn;
            o->rs_seq = seq;
            o->rs_bf = bf;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(h);
    return rc;
}

int st_db_resync_noted(st_db *db, const char *tenant, const char *consumer, uint64_t *lsn,
                       uint32_t *seq, uint64_t *bf)
{
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o == NULL)
        return 0;
    pthread_mutex_lock(&o->wmu);
    int r = o->needs_snapshot && o->rs_bf != 0;
    if (r) {
        *lsn = o->rs_lsn;
        *seq = o->rs_seq;
        *bf = o->rs_bf;
    }
    pthread_mutex_unlock(&o->wmu);
    return r;
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
    st_tenant *t = st_dbi_tenant_find(db, tenant, 0);
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
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    st_tenant *h;
    if (o == NULL || st_dbi_ten_open(db, tenant, 0, &h, err, sizeof(err)) != WH_OK || h == NULL)
        return 0;
    int marked = 0;
    atomic_fetch_add(&db->moves, 1); /* before and after, like a move: pushed events are
                                        checked against the mark again */
    pthread_mutex_lock(&o->wmu);
    off_val cur = st_dbi_off_read(o);
    /* only at the position it was decided on: a commit (or a set offset)
     * since then wins */
    if (cur.state == ST_OFF_LIVE && !o->needs_snapshot && cur.lsn == lsn && cur.seq == seq) {
        o->needs_snapshot = 1;
        marked = 1;
        st_dbi_ns_note_put(db, o, kind);
        if (st_dbi_off_persist(db, o, cur, err, sizeof(err)) != WH_OK)
            wh_error("target %s/%s: storing NEEDS_SNAPSHOT: %s", tenant, consumer, err);
        wh_warn("target %s/%s: NEEDS_SNAPSHOT (force_resync: %s): its offset no longer holds "
                "the slot or GC; a snapshot or a set offset resumes it",
                tenant, consumer, why);
    }
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(h);
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
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK; /* no tenant: nothing to keep */
    char k[ST_KEY_MAX];
    size_t kl = st_dbi_key_offset(k, tenant, consumer);
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
    st_dbi_ten_done(t);
    if (e)
        return st_dbi_rerr(err, errlen, "stall timer write", e);
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
    if (st_dbi_check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return -1;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return -1;
    if (t == NULL)
        return 0;
    char k[ST_KEY_MAX];
    size_t kl = st_dbi_key_offset(k, tenant, consumer);
    k[0] = letter;
    char *e = NULL;
    *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, vl, &e);
    st_dbi_ten_done(t);
    if (e) {
        st_dbi_rerr(err, errlen, what, e);
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
    int found = vl == 9 || vl == ST_NS_NOTE_RS_LEN;
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
    uint64_t q = st_dbi_queued_bytes(bytes, events), charged = 0;
    if (atomic_load(&db->guard.pct) > 0 && q > atomic_load(&db->cq_share) &&
        !st_guard_admit(&db->guard, wh_now_us(), st_dbi_tenant_find(db, tenant, 1), q, retry_ms,
                        &charged))
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
    return st_dbi_tenant_find(db, tenant, 1);
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
    st_tenant *t = st_dbi_tenant_find(db, tenant, 1);
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
