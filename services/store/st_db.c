/* st_db: RocksDB wrapper of walhook-store. See st_db.h. */
#include "st_db_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "st_sfile.h"
#include "wh_config.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_util.h"

int st_db_check_name(const char *name, const char *what, char *err, size_t errlen)
{
    if (name == NULL || name[0] == '\0')
        return wh_seterr(err, errlen, "%s: missing or empty", what);
    if (strlen(name) > ST_NAME_MAX)
        return wh_seterr(err, errlen, "%s: longer than %d bytes", what, ST_NAME_MAX);
    return WH_OK;
}

#define ST_LEVELS 7 /* RocksDB's default number of levels */

int st_dbi_rerr(char *err, size_t errlen, const char *what, char *rerrmsg)
{
    wh_seterr(err, errlen, "rocksdb %s: %s", what, rerrmsg ? rerrmsg : "unknown error");
    if (rerrmsg)
        rocksdb_free(rerrmsg);
    return WH_ERR;
}

/* ---- keys ---- */

/* A write to tenant may go ahead: the store is not read-only and the name
 * is valid. */
int st_dbi_writable(st_db *db, const char *tenant, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    return st_db_check_name(tenant, "tenant", err, errlen);
}

size_t st_dbi_key_prefix(char *k, char type, const char *tenant)
{
    size_t tl = strlen(tenant);
    k[0] = type;
    memcpy(k + 1, tenant, tl);
    k[1 + tl] = '\0';
    return tl + 2;
}

size_t st_dbi_key_event(char *k, const char *tenant, uint64_t lsn, uint32_t seq)
{
    size_t n = st_dbi_key_prefix(k, 'E', tenant);
    wh_put_be64((uint8_t *)k + n, lsn);
    wh_put_be32((uint8_t *)k + n + 8, seq);
    return n + ST_POS_LEN;
}

/* 'P' tenant \0: the ingestor's snapshot progress (AppendBatch.snapshot_progress,
 * an opaque document), written with the events it goes with. */
static size_t key_progress(char *k, const char *tenant)
{
    return st_dbi_key_prefix(k, 'P', tenant);
}

size_t st_dbi_key_offset(char *k, const char *tenant, const char *consumer)
{
    size_t n = st_dbi_key_prefix(k, 'O', tenant);
    size_t cl = strlen(consumer);
    memcpy(k + n, consumer, cl);
    return n + cl;
}

size_t st_dbi_key_durable(char *k, const char *tenant)
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
    st_dbi_tenant_watermark(s->t, &l, &q, &incl);
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

/* After an offset of t changed (st_dbi_off_write): wakes a flush waiting for its
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
 * every consumer has passed it (gc_below); 2 instead of 1 when an older
 * copy of it may be stored (at or below st_tenant.open_end, or written
 * with st_db_set_resend_overwrite): st_gcfilter keeps its deletion marker.
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
    int older = wh_pos_cmp(lsn, seq, s->open_lsn, s->open_seq) <= 0;
    return older || atomic_load(&s->t->db->resend_overwrite) ? 2 : 1;
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
    return gc_drop(state, key, key_length) != 0;
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
void st_dbi_tenant_watermark(st_tenant *t, uint64_t *lsn, uint32_t *seq, int *incl)
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
    pthread_mutex_lock(&t->wm_mu);
    s->open_lsn = t->open_end_lsn;
    s->open_seq = t->open_end_seq;
    pthread_mutex_unlock(&t->wm_mu);
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

void st_dbi_cf_name(char *out, size_t len, char kind, const char *tenant)
{
    snprintf(out, len, "%c:%s", kind, tenant);
}

/* Finds the tenant; adds it (without column families) when add. NULL when
 * absent, or out of memory. */
st_tenant *st_dbi_tenant_find(st_db *db, const char *name, int add)
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
    if (t == NULL && db->ntenants < ST_MAX_TENANT_NAMES && (t = calloc(1, sizeof(*t))) != NULL) {
        t->db = db;
        wh_strlcpy(t->name, name, sizeof(t->name));
        pthread_rwlock_init(&t->lock, NULL);
        pthread_mutex_init(&t->wm_mu, NULL);
        pthread_mutex_init(&t->stage_mu, NULL);
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

int st_dbi_tenant_full(char *err, size_t errlen)
{
    return wh_seterr(err, errlen,
                     "tenant: this store process has seen %d tenant names, the most it keeps "
                     "(a restart forgets the removed ones), or out of memory",
                     ST_MAX_TENANT_NAMES);
}

static const char *cf_kind_name(char kind)
{
    switch (kind) {
    case ST_CF_EVENTS:
        return "events";
    case ST_CF_META:
        return "metadata";
    case ST_CF_STAGE:
        return "staging";
    case ST_CF_TOAST:
        return "TOAST cache";
    default:
        return "unknown";
    }
}

int st_dbi_cf_handle_live(const rocksdb_column_family_handle_t *h)
{
    /* the C API's struct rocksdb_column_family_handle_t (c.cc) begins with
     * its ColumnFamilyHandle *rep; opaque in c.h, and no C function reads
     * it without dereferencing it. test_store_cf checks this reading on
     * the linked librocksdb (a created handle: live; a refused one: not). */
    void *rep = NULL;
    memcpy(&rep, (const void *)h, sizeof(rep));
    return rep != NULL;
}

/* Creates t's column family of kind with options o into *out. Caller holds
 * t->lock for writing. RocksDB's C API returns a handle whatever happened,
 * and an error may come with either kind:
 * - no column family behind it (the create failed: a later read or write
 *   with it would abort): it is destroyed, *out stays NULL, and the next
 *   use creates it again. A failure counts as a failed write
 *   (st_db_write_health: the store is not ready until a write succeeds).
 * - a column family behind it (created and in the MANIFEST, then a later
 *   step failed: writing the OPTIONS file, an error with
 *   fail_if_options_file_error, the default of RocksDB releases since late
 *   2023, and always once they removed the option): it is
 *   kept, with a warning. Destroyed, the column family would exist without
 *   a handle: every next create "already exists" until a restart. */
static int cf_create(st_db *db, st_tenant *t, rocksdb_options_t *o, char kind,
                     rocksdb_column_family_handle_t **out, char *err, size_t errlen)
{
    char name[ST_NAME_MAX + 3];
    st_dbi_cf_name(name, sizeof(name), kind, t->name);
    char *e = NULL;
    int slot = st_dbi_io_begin(db, "column family create");
    rocksdb_column_family_handle_t *h = rocksdb_create_column_family(db->rdb, o, name, &e);
    st_dbi_io_end(db, slot);
    if (h != NULL && (e == NULL || st_dbi_cf_handle_live(h))) {
        if (e != NULL) {
            wh_warn("tenant %s: column family %s (%s) was created, but RocksDB reported: %s; "
                    "it is used",
                    t->name, name, cf_kind_name(kind), e);
            rocksdb_free(e);
        }
        st_dbi_note_write(db, NULL);
        *out = h;
        return WH_OK;
    }
    if (h != NULL)
        rocksdb_column_family_handle_destroy(h);
    *out = NULL;
    char msg[sizeof(db->write_err)];
    snprintf(msg, sizeof(msg), "create column family %s (tenant %s, %s): %s%s", name, t->name,
             cf_kind_name(kind), e != NULL ? e : "no handle",
             e != NULL && strstr(e, "already exists") != NULL
                 ? " (RocksDB has it, the store holds no handle for it: a restart of the store "
                   "opens it)"
                 : "");
    st_dbi_note_write(db, msg);
    if (e != NULL)
        rocksdb_free(e);
    return wh_seterr(err, errlen, "rocksdb %s", msg);
}

/* Caller holds t->lock for writing. */
static int tenant_cf_create(st_tenant *t, char *err, size_t errlen)
{
    st_db *db = t->db;
    if (t->ev == NULL) {
        /* only tenants with data count: a dropped one's entry does not */
        if (atomic_fetch_add(&db->nlive, 1) >= ST_MAX_TENANTS) {
            atomic_fetch_sub(&db->nlive, 1);
            return wh_seterr(err, errlen,
                             "tenant: too many tenants with data (max %d; removed ones do not "
                             "count)",
                             ST_MAX_TENANTS);
        }
        rocksdb_options_t *o = events_options(db, t);
        int rc = cf_create(db, t, o, ST_CF_EVENTS, &t->ev, err, errlen);
        rocksdb_options_destroy(o);
        t->cf_gen++;
        if (rc != WH_OK) {
            atomic_fetch_sub(&db->nlive, 1);
            return WH_ERR;
        }
    }
    if (t->meta == NULL && cf_create(db, t, db->opts, ST_CF_META, &t->meta, err, errlen) != WH_OK)
        return WH_ERR;
    wh_info("tenant %s: column families created", t->name);
    return WH_OK;
}

/* Takes the tenant's lock for reading with its column families present:
 * *out = the tenant (release with st_dbi_ten_done), or NULL when the tenant has
 * none and create is 0. With create, they are made first. */
int st_dbi_ten_open(st_db *db, const char *tenant, int create, st_tenant **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (create && db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    st_tenant *t = st_dbi_tenant_find(db, tenant, create);
    if (t == NULL)
        return create ? st_dbi_tenant_full(err, errlen) : WH_OK;
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
        int rc;
        if (create == ST_DBI_CREATE && t->removed && t->ev == NULL) {
            /* a late Append (or commit, lease, ...) of a removed tenant
             * would bring its column families back, never collected */
            rc = wh_seterr(err, errlen,
                           "tenant %s was removed (its data is dropped); it takes a state that "
                           "lists it again",
                           tenant);
        } else {
            if (create == ST_DBI_CREATE_EXPLICIT)
                t->removed = 0;
            rc = tenant_cf_create(t, err, errlen);
        }
        pthread_rwlock_unlock(&t->lock);
        if (rc != WH_OK)
            return WH_ERR;
    }
}

st_tenant *st_dbi_ten_try(st_db *db, const char *tenant, int *busy)
{
    *busy = 0;
    st_tenant *t = st_dbi_tenant_find(db, tenant, 0);
    if (t == NULL)
        return NULL;
    if (pthread_rwlock_tryrdlock(&t->lock) != 0) {
        *busy = 1;
        return NULL;
    }
    if (t->ev != NULL && t->meta != NULL)
        return t;
    pthread_rwlock_unlock(&t->lock);
    return NULL;
}

void st_dbi_ten_done(st_tenant *t)
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
        pthread_mutex_destroy(&t->stage_mu);
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

st_off *st_dbi_off_find(st_db *db, const char *tenant, const char *consumer)
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
st_off *st_dbi_off_get(st_db *db, const char *tenant, const char *consumer, char *err,
                       size_t errlen)
{
    uint32_t h = off_hash(tenant, consumer);
    pthread_rwlock_rdlock(&db->off_lock);
    st_off *o = off_lookup(db, h, tenant, consumer);
    pthread_rwlock_unlock(&db->off_lock);
    if (o != NULL)
        return o;
    st_tenant *t = st_dbi_tenant_find(db, tenant, 1);
    if (t == NULL) {
        st_dbi_tenant_full(err, errlen);
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
            o->replay_gen = db->replay_base;
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

off_val st_dbi_off_read(st_off *o)
{
    pthread_mutex_lock(&o->vmu);
    off_val v = {o->lsn, o->seq, o->epoch, o->state};
    pthread_mutex_unlock(&o->vmu);
    return v;
}

static void gc_wake(st_tenant *t);

/* Every change of an offset in memory; wakes a flush waiting for its
 * tenant's readers (gc_wake). */
void st_dbi_off_write(st_off *o, off_val v)
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

/* Ends an iteration: destroys IT and returns RC, or, when RC is WH_OK and
 * the iterator met an error, that error (WHAT names the work). */
int st_dbi_iter_end(rocksdb_iterator_t *it, int rc, const char *what, char *err, size_t errlen)
{
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    if (e && rc == WH_OK)
        return st_dbi_rerr(err, errlen, what, e);
    if (e)
        rocksdb_free(e);
    return rc;
}

/* st_dbi_iter_end for an iteration of its own read options: destroys both. */
int st_dbi_iter_done(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro, const char *what, char *err,
                     size_t errlen)
{
    int rc = st_dbi_iter_end(it, WH_OK, what, err, errlen);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* Calls fn for each key of `type` in every tenant's meta CF (at open). */
int st_dbi_meta_scan(st_db *db, char type, meta_fn fn, char *err, size_t errlen)
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
        rc = st_dbi_iter_end(it, rc, "loading the tenant's keys", err, errlen);
        rocksdb_readoptions_destroy(ro);
    }
    return rc;
}

/* Splits a "<type> tenant \0 consumer" key; WH_ERR when malformed. */
int st_dbi_split_consumer_key(const char *k, size_t kl, char *tenant, char *consumer)
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
        st_dbi_split_consumer_key(k, kl, tenant, consumer) != WH_OK)
        return WH_OK;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    /* 12 bytes: written before epochs existed (epoch 0); 21: flags */
    off_val ov = {wh_get_be64((const uint8_t *)v), wh_get_be32((const uint8_t *)v + 8),
                  vl >= ST_OFF_VAL_LEN ? wh_get_be64((const uint8_t *)v + 12) : 0, ST_OFF_LIVE};
    st_dbi_off_write(o, ov);
    o->needs_snapshot = vl == ST_OFF_VAL_LEN + 1 && (v[ST_OFF_VAL_LEN] & 1);
    return WH_OK;
}

/* 'N' tenant \0 consumer -> since_ms(8, wall clock) kind(1): why and when a
 * consumer was marked NEEDS_SNAPSHOT (st_dbi_ns_note_put); used while the O value
 * says it is marked. ST_NS_NOTE_RS_LEN bytes: then lsn(8) seq(4) bf(8) of an
 * automatic resync whose backfill request may be stored (st_db_resync_note). */
static int load_ns_note(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                        char *err, size_t errlen)
{
    WH_UNUSED(t);
    WH_UNUSED(err);
    WH_UNUSED(errlen);
    char tenant[ST_NAME_MAX + 1], consumer[ST_NAME_MAX + 1];
    if ((vl != 9 && vl != ST_NS_NOTE_RS_LEN) ||
        st_dbi_split_consumer_key(k, kl, tenant, consumer) != WH_OK)
        return WH_OK;
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o != NULL && o->needs_snapshot) {
        atomic_store(&o->ns_since_ms, (int64_t)wh_get_be64((const uint8_t *)v));
        atomic_store(&o->ns_kind,
                     (uint8_t)v[8] <= ST_NS_DISCONNECTED ? (uint8_t)v[8] : ST_NS_UNKNOWN);
        if (vl == ST_NS_NOTE_RS_LEN) {
            o->rs_lsn = wh_get_be64((const uint8_t *)v + 9);
            o->rs_seq = wh_get_be32((const uint8_t *)v + 17);
            o->rs_bf = wh_get_be64((const uint8_t *)v + 21);
        }
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
    if (st_dbi_meta_scan(db, 'O', load_offset, err, errlen) != WH_OK ||
        st_dbi_meta_scan(db, 'N', load_ns_note, err, errlen) != WH_OK ||
        st_dbi_meta_scan(db, 'W', load_watermark, err, errlen) != WH_OK)
        return WH_ERR;
    return WH_OK;
}

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
            tv[i] = st_dbi_tenant_find(db, names[i] + 2, 1);
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
        else if (tv[i] != NULL && nv[i][0] == ST_CF_EVENTS) {
            tv[i]->ev = hv[i];
            atomic_fetch_add(&db->nlive, 1);
        } else if (tv[i] != NULL && nv[i][0] == ST_CF_STAGE)
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
        st_tenant *t = st_dbi_tenant_find(db, tenant, 1);
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
                rc = st_dbi_rerr(err, errlen, "migrating to column families", e);
            rocksdb_writebatch_clear(wb);
            bytes = 0;
        }
    }
    rc = st_dbi_iter_end(it, rc, "migrating to column families", err, errlen);
    char *e = NULL;
    if (rc == WH_OK && moved > 0) {
        for (const char *p = types; *p; p++) {
            char lo[1] = {*p}, hi[1] = {(char)(*p + 1)};
            rocksdb_writebatch_delete_range_cf(wb, db->cf_default, lo, 1, hi, 1);
        }
        rocksdb_write(db->rdb, db->wo, wb, &e);
        if (e)
            rc = st_dbi_rerr(err, errlen, "migrating to column families", e);
        else
            wh_info("moved %" PRIu64 " keys of the default column family into per-tenant "
                    "column families",
                    moved);
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}

/* ---- open / close ---- */

/* Each tenant's last event now (st_tenant.open_end), before GC drops
 * anything; a tenant whose end cannot be read (an I/O error, a corrupt
 * block) gets the highest position (every event appended is compared with
 * a stored copy, every key a flush drops keeps its marker) until a
 * maintenance pass reads it (st_dbi_open_end_read). */
static void note_open_ends(st_db *db)
{
    size_t nt;
    st_tenant **tv = st_dbi_tenants_sorted(db, &nt);
    for (size_t i = 0; i < nt; i++) {
        uint64_t l = 0;
        uint32_t q = 0;
        char e[WH_ERRLEN];
        if (st_db_tenant_end(db, tv[i]->name, &l, &q, e, sizeof(e)) != WH_OK) {
            wh_warn("tenant %s: %s", tv[i]->name, e);
            l = UINT64_MAX;
            q = UINT32_MAX;
        }
        pthread_mutex_lock(&tv[i]->wm_mu);
        tv[i]->open_end_lsn = l;
        tv[i]->open_end_seq = q;
        pthread_mutex_unlock(&tv[i]->wm_mu);
    }
    free(tv);
}

/* The maintenance pass reads each tenant's end every ST_MAINT_MS
 * (st_db_tenant_end, for its figures); one that read it passes it here: a
 * tenant whose end could not be read at open (open_end the highest
 * position) takes it as open_end. Safe though the end now may be below the
 * end at open:
 * - the events an earlier process wrote are only removed after open (by
 *   the GC, or the tenant's removal), never added again: each one still
 *   stored when the end is read is at or below it (the iterator sees them
 *   all, or the read fails), and one no longer readable is gone, or
 *   hidden by a deletion marker that RocksDB drops only with the copy
 *   below it (an event key is never deleted, only dropped by the filter;
 *   every drop while open_end was the highest position kept its marker);
 * - every event this process wrote is at or below newest_* (one group is
 *   written at a time: each takes max(open_end, newest_*) after the one
 *   before updated newest_*);
 * so an event appended above both was never stored or is gone: written
 *   without a Get, as resend_check writes it when its Get finds nothing;
 * and a flush that drops a key above the end without a marker (gc_drop
 *   returns 1) brings no older copy back: this process writes a key only
 *   when no copy of it can be read (resend_check found none, or the key is
 *   above both; st_db_set_resend_overwrite keeps every marker), and a
 *   copy no longer readable is gone or under a marker that stays while
 *   the copy does (a key readable when the end was read is at or below
 *   it, and keeps its marker).
 * A GC job keeps the open_end it took when it started (gc_snap_take): a
 * job across the change keeps every marker; the markers written meanwhile
 * hide nothing that must be read. Set only while it is still the highest
 * position: st_db_tenant_drop resets it to (0,0) (its next column family
 * starts empty), and an end read from the dropped column family is not
 * taken. A read-only open (--dump) has no maintenance thread, writes
 * nothing, and its open_end stays (0,0). */
void st_dbi_open_end_read(st_tenant *t, uint64_t lsn, uint32_t seq)
{
    pthread_mutex_lock(&t->wm_mu);
    int unknown = t->open_end_lsn == UINT64_MAX && t->open_end_seq == UINT32_MAX;
    if (unknown) {
        t->open_end_lsn = lsn;
        t->open_end_seq = seq;
    }
    pthread_mutex_unlock(&t->wm_mu);
    if (unknown) {
        char at[WH_LSN_STRLEN];
        wh_lsn_format(lsn, at, sizeof(at));
        wh_info("tenant %s: its last event, unreadable at open, read now: %s seq %u; the events "
                "appended above it are no longer compared with a stored copy",
                t->name, at, seq);
    }
}

/* RocksDB's max_file_opening_threads (16 by default): each column family's
 * recovery starts that many threads less one to open its table files and
 * joins them, however few files there are; with max_open_files set, at
 * most 16 files per column family are opened then (RocksDB's initial load
 * limit). Here: one thread per table file in the directory, at most
 * RocksDB's 16: the files of a big store are still opened in parallel, and
 * an empty or small store (the usual case: delivered events are dropped)
 * starts no thread for nothing (each costs ~0.3 ms of CPU to create and
 * join; a fresh store started 15, a restart 15 per column family). */
#define ST_OPEN_THREADS_MAX 16
static int open_threads(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return 1; /* no DB yet */
    int n = 0;
    struct dirent *e;
    while (n < ST_OPEN_THREADS_MAX && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".sst") == 0)
            n++;
    }
    closedir(d);
    return n > 1 ? n : 1;
}

/* Removes the staging files of column family cf (-1: of every staging
 * column family that is not a tenant's now: one dropped while the store
 * stopped before its files were removed). */
static void stage_files_drop_cf(st_db *db, int64_t cf)
{
    DIR *d = opendir(db->stage_dir);
    if (d == NULL)
        return;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        uint32_t fcf;
        uint64_t gen;
        if (st_sfile_parse_name(de->d_name, &fcf, &gen) != WH_OK)
            continue;
        int drop = cf >= 0 ? fcf == (uint64_t)cf : 1;
        for (st_tenant *t = db->tenants; cf < 0 && t != NULL && drop; t = t->next)
            drop = t->stage == NULL || rocksdb_column_family_handle_get_id(t->stage) != fcf;
        char e[WH_ERRLEN];
        if (drop && st_sfile_remove(db->stage_dir, fcf, gen, e, sizeof(e)) != WH_OK)
            wh_warn("%s", e);
    }
    closedir(d);
}

void st_db_staging_files(st_db *db, uint64_t *files, uint64_t *bytes)
{
    *files = *bytes = 0;
    DIR *d = opendir(db->stage_dir);
    if (d == NULL)
        return;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        uint32_t cf;
        uint64_t gen;
        struct stat st;
        if (st_sfile_parse_name(de->d_name, &cf, &gen) == WH_OK &&
            fstatat(dirfd(d), de->d_name, &st, 0) == 0) {
            (*files)++;
            *bytes += (uint64_t)st.st_size;
        }
    }
    closedir(d);
}

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
    /* the staging files (st_sfile.h) beside the RocksDB directory */
    snprintf(db->stage_dir, sizeof(db->stage_dir), "%s/staging", o->data_dir);
    if (!o->read_only && st_sfile_dir_make(db->stage_dir, err, errlen) != WH_OK) {
        free(db);
        return WH_ERR;
    }
    struct timespec now_ts;
    clock_gettime(CLOCK_REALTIME, &now_ts);
    atomic_store(&db->moves, (uint64_t)now_ts.tv_sec * 1000000u + (uint64_t)now_ts.tv_nsec / 1000u);
    db->replay_base = (uint64_t)now_ts.tv_sec * 1000000u + (uint64_t)now_ts.tv_nsec / 1000u;
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
    atomic_store(&db->stall_ms, ST_WRITE_STALL_MS);

    /* Every size here is one the memory budget declares (wh_budget.h,
     * wh_budget_plan_store): change both together. */
    int jobs = o->background_jobs > 0 ? o->background_jobs : 2;
    int64_t io_rate = o->io_rate_bytes > 0 ? o->io_rate_bytes : 128LL * 1024 * 1024;
    db->opts = rocksdb_options_create();
    /* test hook (WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR=1): RocksDB's
     * fail_if_options_file_error (no C setter; the default of RocksDB
     * releases since late 2023), so a column family create whose OPTIONS
     * file cannot be
     * written returns an error with the created column family's handle
     * (tests/unit/test_store_cf.c) */
    const char *fofe = getenv("WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR");
    if (fofe != NULL && strcmp(fofe, "1") == 0) {
        rocksdb_options_t *n = rocksdb_options_create();
        char *fe = NULL;
        rocksdb_get_options_from_string(db->opts, "fail_if_options_file_error=true", n, &fe);
        if (fe == NULL) {
            rocksdb_options_destroy(db->opts);
            db->opts = n;
            wh_warn("test hook WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR is set: a failed "
                    "OPTIONS file write is an error");
        } else {
            wh_warn("test hook WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR: %s", fe);
            rocksdb_free(fe);
            rocksdb_options_destroy(n);
        }
    }
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
    rocksdb_options_set_max_file_opening_threads(db->opts, open_threads(path));
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
        /* with wal_zero_ahead_bytes 0 too: it watches the WAL's syncs
         * (st_walfs.h) */
        db->walfs = st_walfs_install(
            db->opts, o->wal_zero_ahead_bytes > 0 ? (uint64_t)o->wal_zero_ahead_bytes : 0, e,
            sizeof(e));
        if (db->walfs == NULL)
            wh_warn("%s", e);
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
        st_dbi_rerr(msg, sizeof(msg), "open", e);
        wh_seterr(err, errlen, "%s (%s)", msg, path);
        st_db_close(db);
        return WH_ERR;
    }

    if (!db->read_only && (db->walfs == NULL || o->wal_zero_ahead_bytes <= 0)) {
        /* spares an earlier run with st_walfs left: empty files that
         * nothing would take or remove (not a read-only open's: a running
         * store beside it may be using them) */
        char se[WH_ERRLEN];
        if (st_walfs_remove_spares(path, se, sizeof(se)) != 0)
            wh_warn("%s", se);
    }

    db->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(db->wo, 1);
    db->wo_lazy = rocksdb_writeoptions_create();
    db->ro = rocksdb_readoptions_create();

    if ((!db->read_only && migrate_default(db, err, errlen) != WH_OK) ||
        load_offsets(db, err, errlen) != WH_OK || st_dbi_load_leases(db, err, errlen) != WH_OK) {
        st_db_close(db);
        return WH_ERR;
    }
    if (!db->read_only) {
        note_open_ends(db);
        stage_files_drop_cf(db, -1);
    }
    /* a flush or compaction that ran while the offsets loaded dropped
     * nothing: a watermark over some consumers could pass another's */
    atomic_store(&db->gc_idle_ms, ST_GC_IDLE_MS);
    atomic_store(&db->gc_ready, 1);
    if (!db->read_only) {
        if (pthread_create(&db->maint, NULL, st_dbi_maint_main, db) != 0) {
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
/* A write that failed on a WAL sync (its own, or RocksDB's background
 * error from an earlier one, which every later write returns) ends the
 * process, as wal_sync does and for the same reasons: RocksDB refuses every
 * write from then on, and only a restart, which recovers the WAL from the
 * disk, brings the store back. */
static _Noreturn void sync_failed_exit(const char *what, const char *err)
{
    wh_error("%s: %s: walhook-store exits (a failed WAL sync cannot be retried safely); "
             "restarted, it recovers the WAL from disk, and nothing that sync covered was "
             "acknowledged",
             what, err);
    _exit(1);
}

void st_dbi_sync_check(const char *what, const char *err)
{
    if (err != NULL &&
        (strstr(err, "While fdatasync") != NULL || strstr(err, "While fsync") != NULL ||
         strstr(err, ST_WALFS_REFUSED) != NULL))
        sync_failed_exit(what, err);
}

void st_dbi_note_write(st_db *db, const char *err)
{
    st_dbi_sync_check("write", err);
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

int st_dbi_io_begin(st_db *db, const char *what)
{
    uint64_t now = wh_now_ms();
    if (now == 0)
        now = 1;
    for (int i = 0; i < ST_IO_SLOTS; i++) {
        uint64_t free_slot = 0;
        if (atomic_load_explicit(&db->io_since_ms[i], memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&db->io_since_ms[i], &free_slot, now)) {
            atomic_store(&db->io_what[i], what);
            return i;
        }
    }
    return -1;
}

void st_dbi_io_end(st_db *db, int slot)
{
    if (slot >= 0 && slot < ST_IO_SLOTS)
        atomic_store(&db->io_since_ms[slot], 0);
}

void st_dbi_write(st_db *db, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb, const char *what,
                  char **e)
{
    int slot = st_dbi_io_begin(db, what);
    rocksdb_write(db->rdb, wo, wb, e);
    st_dbi_io_end(db, slot);
    st_dbi_sync_check(what, *e);
}

uint64_t st_db_write_pending_ms(st_db *db, const char **what)
{
    uint64_t oldest = 0;
    const char *w = NULL;
    for (int i = 0; i < ST_IO_SLOTS; i++) {
        uint64_t since = atomic_load(&db->io_since_ms[i]);
        if (since != 0 && (oldest == 0 || since < oldest)) {
            oldest = since;
            w = atomic_load(&db->io_what[i]);
        }
    }
    if (what != NULL)
        *what = w != NULL ? w : "write";
    if (oldest == 0)
        return 0;
    uint64_t now = wh_now_ms();
    return now > oldest ? now - oldest : 0;
}

int st_db_write_stall(st_db *db, char *why, size_t whylen)
{
    int64_t bound = atomic_load(&db->stall_ms);
    const char *what;
    uint64_t ms = st_db_write_pending_ms(db, &what);
    if (bound <= 0 || ms <= (uint64_t)bound)
        return WH_OK;
    return wh_seterr(why, whylen,
                     "a write has waited %.1f s for the disk (%s; store.write_stall_ms %lld): "
                     "the disk or its file system does not answer",
                     (double)ms / 1000.0, what, (long long)bound);
}

void st_db_set_write_stall_ms(st_db *db, int64_t ms)
{
    atomic_store(&db->stall_ms, ms > 0 ? ms : 0);
}

/* ---- append ---- */

/* The tenant's D key; caller holds t->lock (read). */
static int get_durable_locked(st_db *db, st_tenant *t, uint64_t *lsn, char *err, size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = st_dbi_key_durable(k, t->name);
    size_t vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    if (e)
        return st_dbi_rerr(err, errlen, "get durable", e);
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
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = get_durable_locked(db, t, lsn, err, errlen);
    st_dbi_ten_done(t);
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

/* Syncs the WAL (everything written before the call). A failure ends
 * the process, as PostgreSQL PANICs on a failed fsync: what the sync should
 * have made durable is readable already (appends are written before their
 * sync), so a retry could find it stored, write nothing and be answered
 * without it ever being synced; and the kernel may have dropped the pages
 * that failed. A restart recovers the WAL from what the disk holds, and
 * nothing that sync covered was acknowledged (the ingestor sends it again). */
static int wal_sync(st_db *db, char *err, size_t errlen)
{
    char *e = NULL;
    int slot = st_dbi_io_begin(db, "WAL sync");
    rocksdb_flush_wal(db->rdb, 1, &e);
    st_dbi_io_end(db, slot);
    if (e == NULL)
        return WH_OK;
    sync_failed_exit("rocksdb WAL sync", e);
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
    if (wal_sync(db, err, errlen) != WH_OK)
        return WH_ERR;
    sync_end(db, tk);
    return WH_OK;
}

int st_db_wal_synced(st_db *db, char *err, size_t errlen)
{
    return wal_synced_after(db, err, errlen);
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
    st_written_fn written; /* told once its last events are written */
    void *written_arg;
    uint64_t ref_gen; /* st_append_extra's */
    const uint64_t *ref_pos;
    int ref_file;
    const char *cval;
    size_t cval_len;
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
    size_t differ;                /* events sent again with other bytes (cq_write) */
    const st_event *first_differ; /* the first of them */
} st_gpart;

/* What the commit queue counts of an append of json bytes in events
 * (light or big, slices), about: the values, and the keys with a tenant
 * name of average length. */
uint64_t st_dbi_queued_bytes(uint64_t json, uint64_t events)
{
    return json + events * (8 + ST_POS_LEN + 18);
}

static size_t event_bytes(const st_event *e)
{
    return (size_t)st_dbi_queued_bytes(e->json_len, 1);
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
        (*parts)[(*np)++] = (st_gpart){.r = r, .from = from, .to = to};
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

/* A reference, the value of a committed staged event in "e:<tenant>":
 * commit_ts(8) 0x01 gen(8) idx(4) len(4) to a gen staged in the staging
 * column family (its `e` key idx), or commit_ts(8) 0x02 gen(8) off(8)
 * len(4) to a gen staged in a file (st_sfile: the record at off); len: the
 * resolved json's. No event's json starts with 0x01 or 0x02. */
#define ST_REF_MARK '\x01'
#define ST_REF_LEN (8 + 1 + 8 + 4 + 4)
#define ST_REF_FILE_MARK '\x02'
#define ST_REF_FILE_LEN (8 + 1 + 8 + 8 + 4)

/* Resolves the references of one tenant's events (t->lock held for
 * reading): an iterator on its staging, moved forward with the read (a
 * point read per event would walk the memtable's range tombstones each
 * time), the commit record of the last gen met, and the bytes. */
typedef struct st_resolver {
    st_db *db;
    st_tenant *t;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    st_sfile_rd rd; /* the staging file of the last file gen met */
    int rd_open;
    uint64_t cgen; /* 0: none cached */
    char *cval;
    size_t cval_len;
    wh_buf out;
} st_resolver;

static size_t key_stage_map(char *k, const char *tenant, uint32_t xid);
static size_t key_stage_commit(char *k, const char *tenant, uint64_t gen);
static void resolver_init(st_resolver *rs, st_db *db, st_tenant *t);
static void resolver_free(st_resolver *rs);
static int is_ref(const char *v, size_t vl);
static uint32_t ref_len(const char *v);
static int resolve(st_resolver *rs, const char *v, uint32_t seq, int *gone, char *err,
                   size_t errlen);

/* An event at a position that may be stored (written in this process, or
 * at or below the tenant's last event when the store opened: a resend,
 * PostgreSQL sends what was not confirmed again, after a restart of the
 * store too; a stage commit cut short is sent again) must come with the
 * same bytes: an event's id is its position (DESIGN). The same bytes are
 * not written again. Other bytes are an ingestor bug (or a value it can no
 * longer render as it did: a TOAST value replaced since, an ingestor
 * upgraded since the first copy), and the stored event,
 * durable and maybe delivered, is what the id names: *stored is set and
 * the event is not written again (unless st_db_set_resend_overwrite), and
 * the difference is counted in *differ (walhook_store_resends_differ_total,
 * and an error in the log). WH_ERR: the read failed. */
static int resend_check(st_db *db, st_tenant *t, st_resolver *rs, const char *k, size_t kl,
                        const st_event *ev, int *stored, size_t *differ, char *err, size_t errlen)
{
    size_t vl = 0;
    char *e = NULL;
    atomic_fetch_add(&db->resend_checks, 1);
    char *old = rocksdb_get_cf(db->rdb, db->ro, t->ev, k, kl, &vl, &e);
    if (e)
        return st_dbi_rerr(err, errlen, "get event", e);
    if (old == NULL)
        return WH_OK; /* collected (below the watermark), or never stored: written */
    *stored = !atomic_load(&db->resend_overwrite);
    uint8_t ts[8];
    wh_put_be64(ts, (uint64_t)ev->commit_ts_us);
    size_t jl = ev->json ? ev->json_len : 0;
    const char *sj = old + 8; /* the stored json */
    size_t sl = vl >= 8 ? vl - 8 : 0;
    int rc = WH_OK;
    if (is_ref(old, vl)) { /* a stage commit's: compared by what it stands for */
        int gone;
        uint32_t seq = wh_get_be32((const uint8_t *)k + kl - 4);
        char rerr[WH_ERRLEN];
        if (resolve(rs, old, seq, &gone, rerr, sizeof(rerr)) == WH_OK) {
            sj = rs->out.data;
            sl = rs->out.len;
        } else if (gone) {
            *stored = 0; /* what it referred to is gone: written again */
            goto out;
        } else {
            rc = wh_seterr(err, errlen, "%s", rerr);
            goto out;
        }
    }
    if (vl < 8 || sl != jl || memcmp(old, ts, 8) != 0 || (jl > 0 && memcmp(sj, ev->json, jl) != 0))
        (*differ)++;
out:
    rocksdb_free(old);
    return rc;
}

/* Writes one group with sync (no lock held): its events (a stage commit's
 * as references), and the D key of every tenant with an append that ends
 * in it (a stage commit's first chunk also puts its commit record, its
 * last deletes the xid's G key). Sets each such append's durable value. */
static int cq_write(st_db *db, st_gpart *parts, size_t np, char *err, size_t errlen)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char k[ST_KEY_MAX];
    int rc = WH_OK;
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        st_wreq *r = parts[i].r;
        size_t differ = 0;
        const st_event *first_differ = NULL;
        parts[i].differ = 0;
        /* what may be stored of it: what this process wrote, and what an
         * earlier one stored (its last event at open) */
        pthread_mutex_lock(&r->t->wm_mu);
        uint64_t nl = r->t->newest_lsn;
        uint32_t ns = r->t->newest_seq;
        if (wh_pos_cmp(r->t->open_end_lsn, r->t->open_end_seq, nl, ns) > 0) {
            nl = r->t->open_end_lsn;
            ns = r->t->open_end_seq;
        }
        pthread_mutex_unlock(&r->t->wm_mu);
        st_resolver rs; /* for the stored references the resend check meets */
        resolver_init(&rs, db, r->t);
        for (size_t e = parts[i].from; e < parts[i].to; e++) {
            const st_event *ev = &r->ev[e];
            size_t kl = st_dbi_key_event(k, r->t->name, ev->lsn, ev->seq);
            size_t d0 = differ;
            int stored = 0;
            if (wh_pos_cmp(ev->lsn, ev->seq, nl, ns) <= 0 &&
                (rc = resend_check(db, r->t, &rs, k, kl, ev, &stored, &differ, err, errlen)) !=
                    WH_OK)
                break;
            if (differ > d0 && first_differ == NULL)
                first_differ = ev;
            if (stored)
                continue;
            uint8_t ts[ST_REF_FILE_LEN];
            wh_put_be64(ts, (uint64_t)ev->commit_ts_us);
            const char *vp[2] = {(const char *)ts, ev->json ? ev->json : ""};
            size_t vs[2] = {8, ev->json ? ev->json_len : 0};
            if (r->ref_gen != 0 && r->ref_file) { /* a reference to its staged bytes */
                ts[8] = ST_REF_FILE_MARK;
                wh_put_be64(ts + 9, r->ref_gen);
                wh_put_be64(ts + 17, r->ref_pos[e]);
                wh_put_be32(ts + 25, (uint32_t)vs[1]);
                vs[0] = ST_REF_FILE_LEN;
                vs[1] = 0;
            } else if (r->ref_gen != 0) {
                ts[8] = ST_REF_MARK;
                wh_put_be64(ts + 9, r->ref_gen);
                wh_put_be32(ts + 17, (uint32_t)r->ref_pos[e]);
                wh_put_be32(ts + 21, (uint32_t)vs[1]);
                vs[0] = ST_REF_LEN;
                vs[1] = 0;
            }
            const char *kp[1] = {k};
            size_t ks[1] = {kl};
            rocksdb_writebatch_putv_cf(wb, r->t->ev, 1, kp, ks, 2, vp, vs);
        }
        resolver_free(&rs);
        parts[i].differ = differ;
        parts[i].first_differ = first_differ;
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
            size_t kl = st_dbi_key_durable(k, t->name);
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
            rc = st_dbi_schema_batch_put(db, wb, r->t, r->sv, r->nsv, err, errlen);
    }
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        st_wreq *r = parts[i].r;
        if (r->cval != NULL && parts[i].from == 0 && r->t->stage != NULL) {
            size_t kl = key_stage_commit(k, r->t->name, r->ref_gen);
            rocksdb_writebatch_put_cf(wb, r->t->stage, k, kl, r->cval, r->cval_len);
        }
        if (r->drop && parts[i].to == r->n && r->t->stage != NULL) {
            size_t kl = key_stage_map(k, r->t->name, r->drop_xid);
            rocksdb_writebatch_delete_cf(wb, r->t->stage, k, kl);
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
    /* Written without sync, then the WAL synced: the events are readable
     * from the write on, and the appends complete in this group are told
     * (`written`: their events go to the dispatchers while the WAL syncs);
     * each is acknowledged only after the sync. Every group syncs, one with
     * nothing new to write too (all sent again, a stage commit retried
     * after its staging was dropped, TOAST ops already applied). */
    uint64_t tk = 0;
    /* a snapshot or backfill chunk (it carries the progress) is written
     * with sync=true: RocksDB makes it readable only once synced (its ids
     * would not survive a loss of the unsynced WAL: the ingestor reads a
     * lost chunk again at other positions) */
    int chunk = 0;
    for (size_t i = 0; i < np; i++)
        chunk |= parts[i].r->prog != NULL;
    if (rc == WH_OK) {
        tk = sync_begin(db);
        if (rocksdb_writebatch_count(wb) > 0) {
            char *e = NULL;
            st_dbi_write(db, chunk ? db->wo : db->wo_lazy, wb, "append write", &e);
            st_dbi_note_write(db, e);
            if (e)
                rc = st_dbi_rerr(err, errlen, "write", e);
        }
    }
    for (size_t i = 0; i < np && rc == WH_OK; i++) { /* newest_*: a part's highest event */
        if (parts[i].to == parts[i].from)
            continue;
        st_tenant *t = parts[i].r->t;
        const st_event *ev = &parts[i].r->ev[parts[i].from];
        for (size_t e = parts[i].from + 1; e < parts[i].to; e++)
            if (wh_pos_cmp(parts[i].r->ev[e].lsn, parts[i].r->ev[e].seq, ev->lsn, ev->seq) > 0)
                ev = &parts[i].r->ev[e];
        pthread_mutex_lock(&t->wm_mu);
        if (wh_pos_cmp(ev->lsn, ev->seq, t->newest_lsn, t->newest_seq) > 0) {
            t->newest_lsn = ev->lsn;
            t->newest_seq = ev->seq;
        }
        pthread_mutex_unlock(&t->wm_mu);
    }
    for (size_t i = 0; i < np && rc == WH_OK; i++)
        if (parts[i].r->written != NULL && parts[i].to == parts[i].r->n)
            parts[i].r->written(parts[i].r->written_arg);
    if (rc == WH_OK && tk != 0) {
        if (!chunk || rocksdb_writebatch_count(wb) == 0)
            rc = wal_sync(db, err, errlen);
        if (rc == WH_OK)
            sync_end(db, tk);
    }
    if (reg)
        pthread_mutex_unlock(&db->schema_mu);
    for (size_t i = 0; i < np; i++)
        if (parts[i].r->ntops > 0)
            st_toast_end(parts[i].r->t->tc, rc == WH_OK);
    /* resends with other bytes: counted once their group is written (a
     * group that failed is sent again by the ingestor, and counted then) */
    for (size_t i = 0; i < np && rc == WH_OK; i++) {
        if (parts[i].differ == 0)
            continue;
        char at[WH_LSN_STRLEN];
        wh_lsn_format(parts[i].first_differ->lsn, at, sizeof(at));
        atomic_fetch_add(&db->resends_differ, parts[i].differ);
        wh_error("tenant %s: %zu event%s sent again with other bytes than stored, the first "
                 "at %s seq %u: the stored ones kept (an event's id names one content; "
                 "please report this)",
                 parts[i].r->t->name, parts[i].differ, parts[i].differ == 1 ? "" : "s", at,
                 parts[i].first_differ->seq);
    }
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
    st_append_extra x = {.prog = prog != NULL ? prog : "", .prog_len = prog_len};
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, &x, durable_lsn, err, errlen);
}

int st_db_append_schemas(st_db *db, const char *tenant, const st_event *ev, size_t n,
                         uint64_t ack_lsn, const st_schema *sv, size_t nsv, uint64_t *durable_lsn,
                         char *err, size_t errlen)
{
    st_append_extra x = {.sv = sv, .nsv = nsv};
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
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL || t->meta == NULL) {
        if (t != NULL)
            st_dbi_ten_done(t);
        return WH_OK;
    }
    char k[ST_KEY_MAX];
    size_t kl = key_progress(k, t->name), vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    st_dbi_ten_done(t);
    if (e)
        return st_dbi_rerr(err, errlen, "get snapshot progress", e);
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
                           uint64_t ack_lsn, uint32_t xid, const st_append_extra *x,
                           uint64_t *durable_lsn, char *err, size_t errlen)
{
    return append_do(db, tenant, ev, n, ack_lsn, 1, xid, x, durable_lsn, err, errlen);
}

static int ten_open_toast(st_db *db, const char *tenant, st_tenant **out, char *err, size_t errlen);

int st_db_append_toast(st_db *db, const char *tenant, const st_event *ev, size_t n,
                       uint64_t ack_lsn, const void *prog, size_t prog_len, const st_toast_op *ops,
                       size_t nops, uint64_t sender, uint64_t serial, uint64_t *durable_lsn,
                       char *err, size_t errlen)
{
    st_append_extra x = {.prog = (const char *)prog,
                         .prog_len = prog_len,
                         .tops = ops,
                         .ntops = nops,
                         .tsender = sender,
                         .tserial = serial};
    return append_do(db, tenant, ev, n, ack_lsn, 0, 0, &x, durable_lsn, err, errlen);
}

static int append_do(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                     int drop, uint32_t drop_xid, const st_append_extra *x, uint64_t *durable_lsn,
                     char *err, size_t errlen)
{
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    if (n > 0 && ev == NULL)
        return wh_seterr(err, errlen, "events: NULL");

    st_tenant *t;
    if ((x != NULL && x->ntops > 0
             ? ten_open_toast(db, tenant, &t, err, errlen)
             : st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen)) != WH_OK)
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
                 .tserial = x != NULL ? x->tserial : 0,
                 .written = x != NULL ? x->written : NULL,
                 .written_arg = x != NULL ? x->written_arg : NULL,
                 .ref_gen = x != NULL ? x->ref_gen : 0,
                 .ref_pos = x != NULL ? x->ref_pos : NULL,
                 .ref_file = x != NULL ? x->ref_file : 0,
                 .cval = x != NULL ? x->cval : NULL,
                 .cval_len = x != NULL ? x->cval_len : 0};
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
    st_dbi_ten_done(t);
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

void st_db_resends_differ_add(st_db *db, uint64_t n)
{
    atomic_fetch_add(&db->resends_differ, n);
}

uint64_t st_db_resends_differ(st_db *db)
{
    return atomic_load(&db->resends_differ);
}

uint64_t st_db_resend_checks(st_db *db)
{
    return atomic_load(&db->resend_checks);
}

void st_db_set_resend_overwrite(st_db *db, int on)
{
    atomic_store(&db->resend_overwrite, on != 0);
}

int st_db_append_light(st_db *db, const st_event *ev, size_t n)
{
    return append_bytes(ev, n) <= atomic_load(&db->cq_share);
}

/* ---- staged (streamed) transactions ----
 * Keys in the tenant's staging CF "s:<tenant>": st_db.h. The tenant's
 * staging lock (t->stage_mu) is held by every staging request, stage
 * commit and staging GC, so that an xid's G key and the next gen are read
 * and written by one of them at a time (the ingestor sends one request at
 * a time; a resent one, or a new ingestor's first request while the store
 * still runs a dead one's commit, waits). */

#define ST_STAGE_EVENT 'e'
#define ST_STAGE_ABORT 'a'
#define ST_STAGE_MAP 'G'
#define ST_STAGE_COMMIT 'C'
#define ST_STAGE_NEXT 'N'
#define ST_STAGE_FILE 'F' /* the first gen staged in a file */
#define ST_STAGE_DEL 'd'  /* a staged event deleted (one_event abort) */
#define ST_CVAL_VERSION 1

/* 'X' tenant \0 gen: the gen's prefix */
static size_t key_stage_gen(char *k, const char *tenant, uint64_t gen)
{
    size_t n = st_dbi_key_prefix(k, 'X', tenant);
    wh_put_be64((uint8_t *)k + n, gen);
    return n + 8;
}

static size_t key_stage(char *k, const char *tenant, uint64_t gen, char tag, uint32_t v)
{
    size_t n = key_stage_gen(k, tenant, gen);
    k[n] = tag;
    wh_put_be32((uint8_t *)k + n + 1, v);
    return n + 5;
}

/* Every key of the gen: [lo, hi); returns lo's length, *hl hi's. */
static size_t stage_gen_range(char *lo, char *hi, size_t *hl, const char *tenant, uint64_t gen)
{
    size_t ll = key_stage_gen(lo, tenant, gen);
    memcpy(hi, lo, ll);
    hi[ll] = '\xff';
    *hl = ll + 1;
    return ll;
}

static size_t key_stage_map(char *k, const char *tenant, uint32_t xid)
{
    size_t n = st_dbi_key_prefix(k, ST_STAGE_MAP, tenant);
    wh_put_be32((uint8_t *)k + n, xid);
    return n + 4;
}

static size_t key_stage_commit(char *k, const char *tenant, uint64_t gen)
{
    size_t n = st_dbi_key_prefix(k, ST_STAGE_COMMIT, tenant);
    wh_put_be64((uint8_t *)k + n, gen);
    return n + 8;
}

/* A synced write of wb (a ticket for the lazy offset commits). */
static int sync_write(st_db *db, rocksdb_writebatch_t *wb, const char *what, char *err,
                      size_t errlen)
{
    char *e = NULL;
    uint64_t tk = sync_begin(db);
    st_dbi_write(db, db->wo, wb, what, &e);
    st_dbi_note_write(db, e);
    if (e)
        return st_dbi_rerr(err, errlen, what, e);
    sync_end(db, tk);
    return WH_OK;
}

/* st_dbi_ten_open, with the staging CF made first when create (else t->stage
 * may be NULL: nothing staged). */
static int ten_open_stage(st_db *db, const char *tenant, int create, st_tenant **out, char *err,
                          size_t errlen)
{
    for (;;) {
        if (st_dbi_ten_open(db, tenant, create, out, err, errlen) != WH_OK)
            return WH_ERR;
        st_tenant *t = *out;
        if (t == NULL || t->stage != NULL || !create)
            return WH_OK;
        st_dbi_ten_done(t);
        pthread_rwlock_wrlock(&t->lock);
        int rc = WH_OK;
        if (t->stage == NULL && t->ev != NULL) {
            rc = cf_create(db, t, db->opts, ST_CF_STAGE, &t->stage, err, errlen);
            if (rc == WH_OK)
                wh_info("tenant %s: staging column family created", t->name);
        }
        pthread_rwlock_unlock(&t->lock);
        if (rc != WH_OK)
            return WH_ERR;
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

/* A staging CF point read: *found, and the value into v (vmax bytes, *vl
 * its length; v may be NULL). */
static int stage_get(st_db *db, st_tenant *t, const char *k, size_t kl, char *v, size_t vmax,
                     size_t *vl, int *found, char *err, size_t errlen)
{
    char *e = NULL;
    size_t l = 0;
    char *val = rocksdb_get_cf(db->rdb, db->ro, t->stage, k, kl, &l, &e);
    if (e)
        return st_dbi_rerr(err, errlen, "get staging key", e);
    *found = val != NULL;
    if (vl)
        *vl = l;
    if (val != NULL && v != NULL)
        memcpy(v, val, l < vmax ? l : vmax);
    rocksdb_free(val);
    return WH_OK;
}

/* The gen's commit record (*v NULL: none; free it with rocksdb_free). */
static int stage_cval_get(st_db *db, st_tenant *t, uint64_t gen, char **v, size_t *vl, char *err,
                          size_t errlen)
{
    char k[ST_KEY_MAX], *e = NULL;
    size_t kl = key_stage_commit(k, t->name, gen);
    *v = rocksdb_get_cf(db->rdb, db->ro, t->stage, k, kl, vl, &e);
    if (e)
        return st_dbi_rerr(err, errlen, "get commit record", e);
    return WH_OK;
}

/* Whether the gen has a commit record. */
static int stage_committed(st_db *db, st_tenant *t, uint64_t gen, int *committed, char *err,
                           size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_stage_commit(k, t->name, gen);
    return stage_get(db, t, k, kl, NULL, 0, NULL, committed, err, errlen);
}

/* The xid's staging generation (*gen 0: none) and whether it has a commit
 * record (*committed). Under t->stage_mu. */
static int stage_gen_of(st_db *db, st_tenant *t, uint32_t xid, uint64_t *gen, int *committed,
                        char *err, size_t errlen)
{
    *gen = 0;
    *committed = 0;
    char k[ST_KEY_MAX], v[8];
    size_t kl = key_stage_map(k, t->name, xid), vl;
    int found;
    if (stage_get(db, t, k, kl, v, sizeof(v), &vl, &found, err, errlen) != WH_OK)
        return WH_ERR;
    if (!found || vl != 8)
        return WH_OK;
    *gen = wh_get_be64((const uint8_t *)v);
    return stage_committed(db, t, *gen, committed, err, errlen);
}

/* An iterator over t's staging keys of type tag ('X', 'G', 'C'), at the
 * first; *ro and hi (ST_KEY_MAX bytes, its upper bound) live as long as
 * it (st_dbi_iter_done frees both); *pl: the prefix's length. */
static rocksdb_iterator_t *stage_prefix_iter(st_db *db, st_tenant *t, char tag,
                                             rocksdb_readoptions_t **ro, char *hi, size_t *pl)
{
    char lo[ST_KEY_MAX];
    *pl = st_dbi_key_prefix(lo, tag, t->name);
    memcpy(hi, lo, *pl);
    hi[*pl - 1] = '\x01';
    *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(*ro, hi, *pl);
    rocksdb_readoptions_set_fill_cache(*ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, *ro, t->stage);
    rocksdb_iter_seek(it, lo, *pl);
    return it;
}

typedef int (*stage_map_fn)(void *arg, uint32_t xid, uint64_t gen, const char *k, size_t kl,
                            char *err, size_t errlen);
static int stage_map_each(st_db *db, st_tenant *t, stage_map_fn fn, void *arg, char *err,
                          size_t errlen);
static uint32_t stage_cfid(const st_tenant *t)
{
    return rocksdb_column_family_handle_get_id(t->stage);
}

/* Whether gen is staged in a file (st_sfile.h) */
static int stage_in_file(const st_tenant *t, uint64_t gen)
{
    return gen != 0 && gen >= t->stage_file_from;
}

typedef struct gen_set {
    uint64_t *v;
    size_t n, cap;
} gen_set;

static int gen_set_add(gen_set *s, uint64_t gen)
{
    if (wh_grow(&s->v, s->n + 1, &s->cap, sizeof(*s->v), 16) != WH_OK)
        return WH_ERR;
    s->v[s->n++] = gen;
    return WH_OK;
}

static int gen_set_has(const gen_set *s, uint64_t gen)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == gen)
            return 1;
    return 0;
}

static int open_gen_step(void *arg, uint32_t xid, uint64_t gen, const char *k, size_t kl, char *err,
                         size_t errlen)
{
    WH_UNUSED(xid);
    WH_UNUSED(k);
    WH_UNUSED(kl);
    return gen_set_add(arg, gen) == WH_OK ? WH_OK : wh_seterr(err, errlen, "out of memory");
}

/* Removes the staging files of gens (after the write that dropped them is
 * durable; one left behind is removed at the next start: stage_sweep). */
static void stage_files_remove(st_db *db, st_tenant *t, const gen_set *gens)
{
    for (size_t i = 0; i < gens->n; i++) {
        char e[WH_ERRLEN];
        if (stage_in_file(t, gens->v[i]) &&
            st_sfile_remove(db->stage_dir, stage_cfid(t), gens->v[i], e, sizeof(e)) != WH_OK)
            wh_warn("tenant %s: %s", t->name, e);
    }
}

/* The next index of file gen (one past its last staged record; 0: none):
 * the cache, else its file read through (a gen the store has not staged
 * to since it started). Under t->stage_mu. */
static int stage_nx_get(st_db *db, st_tenant *t, uint64_t gen, uint64_t *next, char *err,
                        size_t errlen)
{
    for (unsigned i = 0; i < ST_STAGE_NX; i++)
        if (t->stage_nx[i].gen == gen) {
            *next = t->stage_nx[i].next;
            return WH_OK;
        }
    return st_sfile_next_idx(db->stage_dir, stage_cfid(t), gen, next, err, errlen);
}

static void stage_nx_set(st_tenant *t, uint64_t gen, uint64_t next)
{
    for (unsigned i = 0; i < ST_STAGE_NX; i++)
        if (t->stage_nx[i].gen == gen) {
            t->stage_nx[i].next = next;
            return;
        }
    unsigned i = t->stage_nx_at++ % ST_STAGE_NX;
    t->stage_nx[i].gen = gen;
    t->stage_nx[i].next = next;
}

static void stage_nx_forget(st_tenant *t, uint64_t gen)
{
    for (unsigned i = 0; i < ST_STAGE_NX; i++)
        if (t->stage_nx[i].gen == gen)
            t->stage_nx[i].gen = 0;
}

/* At the first use of t's staging after the store opened (stage_ready):
 * its staging files are put right. A file of a gen at or past next (made
 * by a request whose gen was not stored: the store stopped in between) or
 * of a gen with neither a G key naming it nor a commit record (dropped,
 * and the store stopped before the file was removed) is removed; an open
 * gen's file is cut back to its last whole record (an append the store
 * was killed in: not acknowledged, the ingestor sends it again). */
static int stage_sweep(st_db *db, st_tenant *t, uint64_t next, char *err, size_t errlen)
{
    DIR *d = opendir(db->stage_dir);
    if (d == NULL)
        return wh_seterr(err, errlen, "staging directory %s: %s", db->stage_dir, strerror(errno));
    gen_set files = {0}, open = {0};
    uint32_t cf = stage_cfid(t);
    int rc = WH_OK;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        uint32_t fcf;
        uint64_t gen;
        if (st_sfile_parse_name(de->d_name, &fcf, &gen) == WH_OK && fcf == cf &&
            gen_set_add(&files, gen) != WH_OK) {
            rc = wh_seterr(err, errlen, "out of memory");
            break;
        }
    }
    closedir(d);
    if (rc == WH_OK && files.n > 0)
        rc = stage_map_each(db, t, open_gen_step, &open, err, errlen);
    for (size_t i = 0; i < files.n && rc == WH_OK; i++) {
        uint64_t gen = files.v[i], cut = 0, nx = 0;
        int committed = 0;
        if (gen < next && (rc = stage_committed(db, t, gen, &committed, err, errlen)) != WH_OK)
            break;
        if (committed)
            continue;
        if (gen < next && gen_set_has(&open, gen)) {
            char e[WH_ERRLEN];
            if (st_sfile_trim(db->stage_dir, cf, gen, &cut, &nx, e, sizeof(e)) != WH_OK) {
                st_dbi_sync_check("staging file", e);
                /* damage: left as it is; the transaction's commit fails
                 * naming the record */
                wh_error("tenant %s: %s", t->name, e);
                continue;
            }
            if (cut > 0)
                wh_warn("tenant %s: staging file of generation %" PRIu64 ": %" PRIu64
                        " bytes of an append cut short removed",
                        t->name, gen, cut);
            stage_nx_set(t, gen, nx); /* its first append need not read it again */
            continue;
        }
        char e[WH_ERRLEN];
        if (st_sfile_remove(db->stage_dir, cf, gen, e, sizeof(e)) != WH_OK)
            wh_warn("tenant %s: %s", t->name, e); /* tried again at the next start */
    }
    free(files.v);
    free(open.v);
    return rc;
}

/* Under t->stage_mu before any use of the staging: the next gen read
 * (t->stage_next). With no N key yet, staging of the layout before
 * generations ('X' tenant \0 xid(4) tag v(4): a transaction streaming
 * while the store was upgraded, the ingestor still running) is moved
 * under gens, one synced WriteBatch per xid (its keys under a new gen, its
 * G key, the old range deleted), then N; a migration cut short is taken
 * up again at the next open (N still missing), after the gens it made. */
static int stage_ready(st_db *db, st_tenant *t, char *err, size_t errlen)
{
    if (t->stage == NULL || (t->stage_next != 0 && t->stage_cf_gen == t->cf_gen))
        return WH_OK;
    char nk[ST_KEY_MAX], v[8];
    size_t nkl = st_dbi_key_prefix(nk, ST_STAGE_NEXT, t->name), vl;
    int found;
    if (stage_get(db, t, nk, nkl, v, sizeof(v), &vl, &found, err, errlen) != WH_OK)
        return WH_ERR;
    uint64_t next = found && vl == 8 ? wh_get_be64((const uint8_t *)v) : 1;
    if (!found && !db->read_only) {
        char hi[ST_KEY_MAX];
        size_t pl;
        rocksdb_readoptions_t *ro;
        rocksdb_iterator_t *it = stage_prefix_iter(db, t, 'X', &ro, hi, &pl);
        rocksdb_writebatch_t *wb = NULL;
        uint32_t xid = 0;
        uint64_t gen = 0, moved = 0;
        int rc = WH_OK;
        for (;; rocksdb_iter_next(it)) {
            int valid = rocksdb_iter_valid(it);
            char *ie = NULL;
            if (!valid)
                rocksdb_iter_get_error(it, &ie);
            if (ie != NULL) { /* not the end: the pending xid is not written */
                rc = st_dbi_rerr(err, errlen, "reading staging to move", ie);
                break;
            }
            size_t kl = 0, ivl = 0;
            const char *k = valid ? rocksdb_iter_key(it, &kl) : NULL;
            if (valid && kl == pl + 13) { /* a gen's (a migration cut short): sorts first */
                uint64_t g = wh_get_be64((const uint8_t *)k + pl);
                if (g >= next)
                    next = g + 1;
                continue;
            }
            uint32_t x = valid && kl == pl + 9 ? wh_get_be32((const uint8_t *)k + pl) : 0;
            if (valid && x == 0)
                continue;                             /* not of the old layout */
            if (wb != NULL && (!valid || x != xid)) { /* xid's keys all read */
                char ok[ST_KEY_MAX], oh[ST_KEY_MAX], g[8];
                size_t ol = st_dbi_key_prefix(ok, 'X', t->name);
                wh_put_be32((uint8_t *)ok + ol, xid);
                ol += 4;
                memcpy(oh, ok, ol);
                oh[ol] = '\xff';
                rocksdb_writebatch_delete_range_cf(wb, t->stage, ok, ol, oh, ol + 1);
                wh_put_be64((uint8_t *)g, gen);
                size_t gl = key_stage_map(ok, t->name, xid);
                rocksdb_writebatch_put_cf(wb, t->stage, ok, gl, g, 8);
                rc = sync_write(db, wb, "staging migration", err, errlen);
                rocksdb_writebatch_destroy(wb);
                wb = NULL;
                if (rc != WH_OK)
                    break;
                moved++;
            }
            if (!valid)
                break;
            if (wb == NULL) {
                wb = rocksdb_writebatch_create();
                xid = x;
                gen = next++;
            }
            const char *iv = rocksdb_iter_value(it, &ivl);
            char nk2[ST_KEY_MAX];
            size_t l2 =
                key_stage(nk2, t->name, gen, k[pl + 4], wh_get_be32((const uint8_t *)k + pl + 5));
            rocksdb_writebatch_put_cf(wb, t->stage, nk2, l2, iv, ivl);
        }
        if (wb != NULL)
            rocksdb_writebatch_destroy(wb);
        int irc = st_dbi_iter_done(it, ro, "reading staging of the layout before generations", err,
                                   errlen);
        if (rc != WH_OK || irc != WH_OK)
            return WH_ERR;
        /* N last: a migration cut short before it is done again at the next
         * open, its gens so far counted by the keys they hold */
        if (next > 1) {
            char n[8];
            wh_put_be64((uint8_t *)n, next);
            rocksdb_writebatch_t *nb = rocksdb_writebatch_create();
            rocksdb_writebatch_put_cf(nb, t->stage, nk, nkl, n, 8);
            rc = sync_write(db, nb, "staging migration", err, errlen);
            rocksdb_writebatch_destroy(nb);
            if (rc != WH_OK)
                return WH_ERR;
        }
        if (moved > 0)
            wh_info("tenant %s: staging of %" PRIu64 " transaction%s moved to the layout with "
                    "generations",
                    t->name, moved, moved == 1 ? "" : "s");
    }
    /* F: the first gen staged in a file, written once (a store from
     * before files staged the gens before it in the column family) */
    char fk[ST_KEY_MAX];
    size_t fkl = st_dbi_key_prefix(fk, ST_STAGE_FILE, t->name);
    if (stage_get(db, t, fk, fkl, v, sizeof(v), &vl, &found, err, errlen) != WH_OK)
        return WH_ERR;
    /* none: no gen was ever staged in a file (a read-only open of a store
     * from before files: every gen is in the column family) */
    uint64_t from = found && vl == 8 ? wh_get_be64((const uint8_t *)v)
                    : db->read_only  ? UINT64_MAX
                                     : next;
    if (!found && !db->read_only) {
        wh_put_be64((uint8_t *)v, from);
        rocksdb_writebatch_t *fb = rocksdb_writebatch_create();
        rocksdb_writebatch_put_cf(fb, t->stage, fk, fkl, v, 8);
        int rc = sync_write(db, fb, "staging files' start", err, errlen);
        rocksdb_writebatch_destroy(fb);
        if (rc != WH_OK)
            return WH_ERR;
    }
    t->stage_file_from = from;
    /* the next indexes known are of this column family's files as they are
     * now (the sweep puts in those it reads) */
    memset(t->stage_nx, 0, sizeof(t->stage_nx));
    if (!db->read_only && stage_sweep(db, t, next, err, errlen) != WH_OK)
        return WH_ERR;
    t->stage_next = next;
    t->stage_cf_gen = t->cf_gen;
    return WH_OK;
}

/* A new generation for xid: its G key and the next gen go into wb. Under
 * t->stage_mu. Gens are never reused while anything refers to them (the
 * next gen is stored with every new one). */
static int stage_gen_new(st_db *db, st_tenant *t, rocksdb_writebatch_t *wb, uint32_t xid,
                         uint64_t *gen, char *err, size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = st_dbi_key_prefix(k, ST_STAGE_NEXT, t->name);
    if (stage_ready(db, t, err, errlen) != WH_OK)
        return WH_ERR;
    *gen = t->stage_next++;
    uint8_t nv[8], gv[8];
    wh_put_be64(nv, t->stage_next);
    rocksdb_writebatch_put_cf(wb, t->stage, k, kl, (const char *)nv, 8);
    wh_put_be64(gv, *gen);
    kl = key_stage_map(k, t->name, xid);
    rocksdb_writebatch_put_cf(wb, t->stage, k, kl, (const char *)gv, 8);
    return WH_OK;
}

/* The gen staging of xid goes to: its open one, or a new one (none, or
 * its gen is committed: kept for the references). *rdel: a range delete
 * was added (reset of an open gen). */
static int stage_gen_for(st_db *db, st_tenant *t, rocksdb_writebatch_t *wb, uint32_t xid, int reset,
                         uint64_t *gen, uint32_t *rdel, char *err, size_t errlen)
{
    int committed;
    if (stage_gen_of(db, t, xid, gen, &committed, err, errlen) != WH_OK)
        return WH_ERR;
    if (*gen == 0 || committed)
        return stage_gen_new(db, t, wb, xid, gen, err, errlen);
    if (reset) {
        char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
        size_t hl, ll = stage_gen_range(lo, hi, &hl, t->name, *gen);
        rocksdb_writebatch_delete_range_cf(wb, t->stage, lo, ll, hi, hl);
        (*rdel)++;
    }
    return WH_OK;
}

/* a staged event and its place in its batch (the sort below is stable) */
typedef struct staged_at {
    st_staged ev;
    size_t at;
} staged_at;

static int staged_at_cmp(const void *a, const void *b)
{
    const staged_at *x = a, *y = b;
    if (x->ev.idx != y->ev.idx)
        return x->ev.idx < y->ev.idx ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* The events of a batch for gen's file, in index order, without what the
 * file already holds: an index below the gen's next one is a copy of a
 * batch sent again (whole, or in part after an append cut short), and of
 * an index twice in the batch its last one (a WriteBatch's last put of a
 * key wins); *out malloc'ed (free it), *nout its events. */
static int stage_file_batch(const st_staged *ev, size_t n, uint64_t next, st_staged **out,
                            size_t *nout, char *err, size_t errlen)
{
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return WH_OK;
    st_staged *v = malloc(n * sizeof(*v));
    if (v == NULL)
        return wh_seterr(err, errlen, "out of memory");
    memcpy(v, ev, n * sizeof(*v));
    int sorted = 1;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = v[i - 1].idx < v[i].idx;
    if (!sorted) { /* stable, so the last of an index twice stays last */
        staged_at *w = malloc(n * sizeof(*w));
        if (w == NULL) {
            free(v);
            return wh_seterr(err, errlen, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            w[i] = (staged_at){v[i], i};
        qsort(w, n, sizeof(*w), staged_at_cmp);
        for (size_t i = 0; i < n; i++)
            v[i] = w[i].ev;
        free(w);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].idx < next)
            continue;
        if (m > 0 && v[m - 1].idx == v[i].idx)
            m--;
        v[m++] = v[i];
    }
    *out = v;
    *nout = m;
    return WH_OK;
}

int st_db_stage_put(st_db *db, const char *tenant, uint32_t xid, int reset, const st_staged *ev,
                    size_t n, char *err, size_t errlen)
{
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    if (xid == 0)
        return wh_seterr(err, errlen, "stage_xid: must be > 0");
    if (n > 0 && ev == NULL)
        return wh_seterr(err, errlen, "events: NULL");
    st_tenant *t;
    if (ten_open_stage(db, tenant, 1, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&t->stage_mu);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint64_t gen = 0;
    uint32_t rdel = 0;
    int rc = stage_ready(db, t, err, errlen);
    uint64_t first_new = t->stage_next;
    size_t nk = n; /* events staged as keys */
    if (rc == WH_OK && (n > 0 || reset))
        rc = stage_gen_for(db, t, wb, xid, reset, &gen, &rdel, err, errlen);
    if (rc == WH_OK && stage_in_file(t, gen)) {
        /* the file first: a new gen's file (emptied, in case one of that
         * number was left by a request whose G key was not stored) or a
         * reset's is written before the keys that name it, so a stop in
         * between leaves a file that no key names (stage_sweep removes
         * it) or a reset the ingestor sends again */
        int fresh = gen >= first_new || reset, torn = 0;
        uint64_t next = 0;
        st_staged *fe = NULL;
        size_t fn = 0;
        if (!fresh)
            rc = stage_nx_get(db, t, gen, &next, err, errlen);
        if (rc == WH_OK)
            rc = stage_file_batch(ev, n, next, &fe, &fn, err, errlen);
        if (rc == WH_OK && fn < n)
            wh_info("tenant %s: xid %" PRIu32 ": %zu of %zu staged events already staged (a "
                    "batch sent again): not written again",
                    tenant, xid, n - fn, n);
        if (rc == WH_OK && (fn > 0 || fresh)) {
            int slot = st_dbi_io_begin(db, "staging file write");
            rc = st_sfile_append(db->stage_dir, stage_cfid(t), gen, fresh, fe, fn, &torn, err,
                                 errlen);
            st_dbi_io_end(db, slot);
            if (rc != WH_OK) {
                st_dbi_sync_check("staging file", err);
                if (torn)
                    t->stage_next = 0; /* stage_ready cuts the file back first */
            }
        }
        if (rc == WH_OK)
            stage_nx_set(t, gen, fn > 0 ? (uint64_t)fe[fn - 1].idx + 1 : next);
        else
            stage_nx_forget(t, gen); /* the file is read again */
        free(fe);
        nk = 0; /* the keys below: only the gen's */
    }
    char k[ST_KEY_MAX];
    for (size_t i = 0; i < nk && rc == WH_OK; i++) {
        size_t kl = key_stage(k, tenant, gen, ST_STAGE_EVENT, ev[i].idx);
        uint8_t sx[4];
        wh_put_be32(sx, ev[i].subxid);
        const char *vp[2] = {(const char *)sx, ev[i].json ? ev[i].json : ""};
        size_t vs[2] = {4, ev[i].json ? ev[i].json_len : 0};
        const char *kp[1] = {k};
        size_t ks[1] = {kl};
        rocksdb_writebatch_putv_cf(wb, t->stage, 1, kp, ks, 2, vp, vs);
    }
    if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0)
        rc = sync_write(db, wb, "stage write", err, errlen);
    if (rc == WH_OK)
        stage_rdel_note(db, t, rdel);
    pthread_mutex_unlock(&t->stage_mu);
    uint64_t json = 0;
    for (size_t i = 0; i < n; i++)
        json += ev[i].json ? ev[i].json_len : 0;
    uint64_t q = st_dbi_queued_bytes(json, n);
    if (rc == WH_OK && q > atomic_load(&db->cq_share))
        st_guard_observe(&db->guard, wh_now_us(), t, ST_GUARD_BIG, q, 0); /* a flood too */
    rocksdb_writebatch_destroy(wb);
    st_dbi_ten_done(t);
    return rc;
}

/* fn(arg, xid, gen, G key) per G key of t (a non-zero status stops). */
static int stage_map_each(st_db *db, st_tenant *t, stage_map_fn fn, void *arg, char *err,
                          size_t errlen)
{
    char hi[ST_KEY_MAX];
    size_t pl;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = stage_prefix_iter(db, t, ST_STAGE_MAP, &ro, hi, &pl);
    int rc = WH_OK;
    for (; rc == WH_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl == pl + 4 && vl == 8)
            rc = fn(arg, wh_get_be32((const uint8_t *)k + pl), wh_get_be64((const uint8_t *)v), k,
                    kl, err, errlen);
    }
    int irc = st_dbi_iter_done(it, ro, "reading the staging map", err, errlen);
    return rc != WH_OK ? rc : irc;
}

typedef struct drop_all_arg {
    st_db *db;
    st_tenant *t;
    rocksdb_writebatch_t *wb;
    uint32_t *rdel;
    gen_set *gone; /* gens dropped: their files go once wb is written */
} drop_all_arg;

static int drop_all_step(void *arg, uint32_t xid, uint64_t gen, const char *k, size_t kl, char *err,
                         size_t errlen)
{
    WH_UNUSED(xid);
    drop_all_arg *a = arg;
    char gl[ST_KEY_MAX], gh[ST_KEY_MAX];
    int committed = 0;
    if (stage_committed(a->db, a->t, gen, &committed, err, errlen) != WH_OK)
        return WH_ERR;
    if (!committed) {
        size_t hl, ll = stage_gen_range(gl, gh, &hl, a->t->name, gen);
        rocksdb_writebatch_delete_range_cf(a->wb, a->t->stage, gl, ll, gh, hl);
        (*a->rdel)++;
        if (gen_set_add(a->gone, gen) != WH_OK)
            return wh_seterr(err, errlen, "out of memory");
    }
    rocksdb_writebatch_delete_cf(a->wb, a->t->stage, k, kl);
    return WH_OK;
}

/* Drop all staging (xid == subxid == 0) into wb: every xid's G key, and
 * the staging of the gens without a commit record (a committed one is
 * what its events refer to: the GC drops it). */
static int stage_drop_all(st_db *db, st_tenant *t, rocksdb_writebatch_t *wb, uint32_t *rdel,
                          gen_set *gone, char *err, size_t errlen)
{
    drop_all_arg a = {db, t, wb, rdel, gone};
    return stage_map_each(db, t, drop_all_step, &a, err, errlen);
}

int st_db_stage_abort(st_db *db, const char *tenant, const st_stage_abort *ab, size_t n, char *err,
                      size_t errlen)
{
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    for (size_t i = 0; i < n; i++)
        if ((ab[i].xid == 0) != (ab[i].subxid == 0))
            return wh_seterr(err, errlen,
                             "stage_aborts[%zu].%s: must be > 0 (both 0: drop all staging)", i,
                             ab[i].xid == 0 ? "xid" : "subxid");
        else if (ab[i].one_event && (ab[i].xid == 0 || ab[i].subxid != ab[i].xid))
            return wh_seterr(err, errlen, "stage_aborts[%zu]: one_event needs subxid == xid > 0",
                             i);
    /* a subtransaction's abort is remembered even before anything is
     * staged; a whole abort of nothing is a no-op */
    int sub = 0;
    for (size_t i = 0; i < n; i++)
        sub |= ab[i].subxid != ab[i].xid || ab[i].one_event;
    st_tenant *t;
    if (ten_open_stage(db, tenant, sub, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL || t->stage == NULL) {
        st_dbi_ten_done(t);
        return WH_OK; /* nothing staged */
    }
    pthread_mutex_lock(&t->stage_mu);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint32_t rdel = 0;
    int rc = stage_ready(db, t, err, errlen);
    /* the gens this request gave an xid (their G keys are in wb only) */
    uint32_t *nx = NULL;
    uint64_t *ng = NULL;
    size_t nn = 0, capx = 0, capg = 0;
    gen_set gone = {0}; /* uncommitted gens dropped: their files go after the write */
    for (size_t i = 0; i < n && rc == WH_OK; i++) {
        char k[ST_KEY_MAX], hi[ST_KEY_MAX];
        uint64_t gen = 0;
        int committed = 0;
        if (ab[i].xid == 0) { /* everything the tenant has staged */
            for (size_t j = 0; j < nn; j++) {
                if (nx[j] == 0)
                    continue;
                size_t hl, kl = stage_gen_range(k, hi, &hl, tenant, ng[j]);
                rocksdb_writebatch_delete_range_cf(wb, t->stage, k, kl, hi, hl);
                kl = key_stage_map(k, tenant, nx[j]);
                rocksdb_writebatch_delete_cf(wb, t->stage, k, kl);
            }
            nn = 0;
            rc = stage_drop_all(db, t, wb, &rdel, &gone, err, errlen);
            continue;
        }
        for (size_t j = 0; j < nn && gen == 0; j++)
            gen = nx[j] == ab[i].xid ? ng[j] : 0;
        if (gen == 0 &&
            (rc = stage_gen_of(db, t, ab[i].xid, &gen, &committed, err, errlen)) != WH_OK)
            break;
        if (ab[i].one_event) {
            if (gen == 0 || committed)
                continue;                /* nothing staged */
            if (stage_in_file(t, gen)) { /* the scans skip its index */
                size_t kl = key_stage(k, tenant, gen, ST_STAGE_DEL, ab[i].index);
                rocksdb_writebatch_put_cf(wb, t->stage, k, kl, "", 0);
                continue;
            }
            size_t kl = key_stage(k, tenant, gen, ST_STAGE_EVENT, ab[i].index);
            rocksdb_writebatch_delete_cf(wb, t->stage, k, kl);
        } else if (ab[i].subxid == ab[i].xid) {
            if (gen == 0)
                continue;
            if (!committed) {
                size_t hl, kl = stage_gen_range(k, hi, &hl, tenant, gen);
                rocksdb_writebatch_delete_range_cf(wb, t->stage, k, kl, hi, hl);
                rdel++;
                if (gen_set_add(&gone, gen) != WH_OK) {
                    rc = wh_seterr(err, errlen, "out of memory");
                    break;
                }
            }
            size_t kl = key_stage_map(k, tenant, ab[i].xid);
            rocksdb_writebatch_delete_cf(wb, t->stage, k, kl);
            for (size_t j = 0; j < nn; j++)
                if (nx[j] == ab[i].xid)
                    nx[j] = 0;
        } else {
            if (gen == 0 || committed) {
                if (wh_grow(&nx, nn + 1, &capx, sizeof(*nx), 8) != WH_OK ||
                    wh_grow(&ng, nn + 1, &capg, sizeof(*ng), 8) != WH_OK) {
                    rc = wh_seterr(err, errlen, "out of memory");
                    break;
                }
                if ((rc = stage_gen_new(db, t, wb, ab[i].xid, &gen, err, errlen)) != WH_OK)
                    break;
                nx[nn] = ab[i].xid;
                ng[nn++] = gen;
            }
            size_t kl = key_stage(k, tenant, gen, ST_STAGE_ABORT, ab[i].subxid);
            rocksdb_writebatch_put_cf(wb, t->stage, k, kl, "", 0);
        }
    }
    free(nx);
    free(ng);
    if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0)
        rc = sync_write(db, wb, "stage abort", err, errlen);
    if (rc == WH_OK) {
        stage_rdel_note(db, t, rdel);
        stage_files_remove(db, t, &gone);
    }
    free(gone.v);
    pthread_mutex_unlock(&t->stage_mu);
    rocksdb_writebatch_destroy(wb);
    st_dbi_ten_done(t);
    return rc;
}

/* Iterates the keys of gen with tag from v on: fn(arg, v, value, len) per
 * key (a non-zero return stops before the key counts: *stopped). */
typedef int (*stage_key_fn)(void *arg, uint32_t v, const char *val, size_t len);

static int stage_iter(st_db *db, st_tenant *t, uint64_t gen, char tag, uint32_t from,
                      stage_key_fn fn, void *arg, int *stopped, char *err, size_t errlen)
{
    *stopped = 0;
    if (gen == 0 || t->stage == NULL)
        return WH_OK; /* nothing staged */
    char lo[ST_KEY_MAX], hi[ST_KEY_MAX];
    size_t ll = key_stage(lo, t->name, gen, tag, from);
    size_t hl = key_stage_gen(hi, t->name, gen);
    hi[hl++] = (char)(tag + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hl);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->stage);
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
    return st_dbi_iter_done(it, ro, "reading staged events", err, errlen);
}

struct st_stage_txn {
    st_db *db;
    st_tenant *t;
    uint64_t gen;
    uint64_t pos; /* of the event being passed (st_db_stage_txn_pos) */
    /* a gen staged in a file: its reader (opened at the first scan), the
     * next record's offset, the index after the last event passed (a
     * record below it is one sent again), and the indexes deleted
     * (one_event aborts: `d` keys), ascending */
    st_sfile_rd rd;
    int rd_open, rd_missing;
    uint64_t foff, fnext;
    uint32_t *del;
    size_t ndel;
};

/* What a scan of h took (its file's reader, the deleted indexes) */
static void stage_txn_scan_free(st_stage_txn *h)
{
    st_sfile_rd_close(&h->rd);
    free(h->del);
    h->del = NULL;
    h->ndel = 0;
}

int st_db_stage_begin(st_db *db, const char *tenant, uint32_t xid, st_stage_txn **out,
                      uint64_t *gen, char *err, size_t errlen)
{
    *out = NULL;
    *gen = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_stage_txn *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return wh_seterr(err, errlen, "out of memory");
    h->db = db;
    st_sfile_rd_init(&h->rd);
    if (ten_open_stage(db, tenant, 0, &h->t, err, errlen) != WH_OK) {
        free(h);
        return WH_ERR;
    }
    if (h->t != NULL) {
        pthread_mutex_lock(&h->t->stage_mu);
        int committed;
        if (h->t->stage != NULL &&
            (stage_ready(db, h->t, err, errlen) != WH_OK ||
             stage_gen_of(db, h->t, xid, &h->gen, &committed, err, errlen) != WH_OK)) {
            st_db_stage_end(h);
            return WH_ERR;
        }
    }
    *gen = h->gen;
    *out = h;
    return WH_OK;
}

void st_db_stage_txn_forget(st_stage_txn *h)
{
    h->gen = 0;
}

int st_db_stage_txn_cval(st_stage_txn *h, wh_buf *out, int *found, char *err, size_t errlen)
{
    *found = 0;
    if (h->t == NULL || h->gen == 0 || h->t->stage == NULL)
        return WH_OK;
    char *v;
    size_t vl = 0;
    if (stage_cval_get(h->db, h->t, h->gen, &v, &vl, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    if (v != NULL) {
        *found = 1;
        if (wh_buf_append(out, v, vl) != WH_OK)
            rc = wh_seterr(err, errlen, "out of memory");
    }
    rocksdb_free(v);
    return rc;
}

void st_db_stage_end(st_stage_txn *h)
{
    if (h == NULL)
        return;
    if (h->t != NULL) {
        pthread_mutex_unlock(&h->t->stage_mu);
        st_dbi_ten_done(h->t);
    }
    stage_txn_scan_free(h);
    free(h);
}

uint64_t st_db_stage_txn_pos(const st_stage_txn *h)
{
    return h->pos;
}

int st_db_stage_txn_file(const st_stage_txn *h)
{
    return h->t != NULL && h->t->stage != NULL && stage_in_file(h->t, h->gen);
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

/* The numbers of h's gen's keys with tag (ascending; *v malloc'ed, NULL
 * when none): the aborted subxids ('a'), the deleted indexes ('d'). */
static int stage_txn_u32s(st_stage_txn *h, char tag, uint32_t **v, size_t *n, char *err,
                          size_t errlen)
{
    aborted_acc a = {0};
    int stopped;
    int rc = h->t == NULL
                 ? WH_OK
                 : stage_iter(h->db, h->t, h->gen, tag, 0, aborted_step, &a, &stopped, err, errlen);
    if (rc == WH_OK && a.oom)
        rc = wh_seterr(err, errlen, "out of memory");
    if (rc != WH_OK) {
        free(a.v);
        a.v = NULL;
        a.n = 0;
    }
    *v = a.v;
    *n = a.n;
    return rc;
}

int st_db_stage_txn_aborted(st_stage_txn *h, uint32_t **subs, size_t *n, char *err, size_t errlen)
{
    return stage_txn_u32s(h, ST_STAGE_ABORT, subs, n, err, errlen);
}

typedef struct stage_scan_arg {
    st_stage_txn *h;
    st_stage_fn fn;
    void *arg;
} stage_scan_arg;

static int stage_scan_step(void *arg, uint32_t idx, const char *val, size_t len)
{
    stage_scan_arg *a = arg;
    if (len < 4)
        return 0; /* not a staged event's value */
    a->h->pos = idx;
    return a->fn(a->arg, idx, wh_get_be32((const uint8_t *)val), val + 4, len - 4);
}

static int stage_file_scan(st_stage_txn *h, uint32_t from_idx, st_stage_fn fn, void *arg,
                           int *stopped, char *err, size_t errlen)
{
    if (!h->rd_open) {
        if (st_sfile_rd_open(&h->rd, h->db->stage_dir, stage_cfid(h->t), h->gen, &h->rd_missing,
                             err, errlen) != WH_OK)
            return WH_ERR;
        if (stage_txn_u32s(h, ST_STAGE_DEL, &h->del, &h->ndel, err, errlen) != WH_OK)
            return WH_ERR;
        h->rd_open = 1;
        h->foff = 0;
        h->fnext = 0;
    }
    if (from_idx != h->fnext) { /* not where the last scan stopped: from the start */
        h->foff = 0;
        h->fnext = from_idx;
    }
    for (;;) {
        st_sfile_rec rec;
        int end;
        if (st_sfile_rd_at(&h->rd, h->foff, &rec, &end, err, errlen) != WH_OK)
            return WH_ERR;
        if (end && h->foff < h->rd.size && !h->db->read_only)
            return wh_seterr(err, errlen,
                             "staging file of generation %" PRIu64
                             ": damaged record at offset %" PRIu64,
                             h->gen, h->foff);
        if (end)
            return WH_OK;
        if (rec.idx < h->fnext || wh_u32_in(h->del, h->ndel, rec.idx)) {
            h->foff = rec.next;
            continue;
        }
        h->pos = h->foff;
        if (fn(arg, rec.idx, rec.subxid, rec.json, rec.json_len) != 0) {
            *stopped = 1;
            return WH_OK;
        }
        h->foff = rec.next;
        h->fnext = (uint64_t)rec.idx + 1;
    }
}

int st_db_stage_txn_scan(st_stage_txn *h, uint32_t from_idx, st_stage_fn fn, void *arg,
                         int *stopped, char *err, size_t errlen)
{
    *stopped = 0;
    if (h->t == NULL || h->t->stage == NULL || h->gen == 0)
        return WH_OK;
    if (stage_in_file(h->t, h->gen))
        return stage_file_scan(h, from_idx, fn, arg, stopped, err, errlen);
    stage_scan_arg a = {h, fn, arg};
    return stage_iter(h->db, h->t, h->gen, ST_STAGE_EVENT, from_idx, stage_scan_step, &a, stopped,
                      err, errlen);
}

int st_db_stage_aborted(st_db *db, const char *tenant, uint32_t xid, uint32_t **subs, size_t *n,
                        char *err, size_t errlen)
{
    st_stage_txn *h;
    uint64_t gen;
    *subs = NULL;
    *n = 0;
    if (st_db_stage_begin(db, tenant, xid, &h, &gen, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = st_db_stage_txn_aborted(h, subs, n, err, errlen);
    st_db_stage_end(h);
    return rc;
}

int st_db_stage_scan(st_db *db, const char *tenant, uint32_t xid, uint32_t from_idx, st_stage_fn fn,
                     void *arg, int *stopped, char *err, size_t errlen)
{
    st_stage_txn *h;
    uint64_t gen;
    *stopped = 0;
    if (st_db_stage_begin(db, tenant, xid, &h, &gen, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = st_db_stage_txn_scan(h, from_idx, fn, arg, stopped, err, errlen);
    st_db_stage_end(h);
    return rc;
}

typedef struct stage_count_arg {
    uint64_t n, cap;
} stage_count_arg;

static int stage_count_step(void *arg, uint32_t idx, uint32_t subxid, const void *json, size_t len)
{
    WH_UNUSED(idx);
    WH_UNUSED(subxid);
    WH_UNUSED(json);
    WH_UNUSED(len);
    stage_count_arg *a = arg;
    if (a->n >= a->cap)
        return 1;
    a->n++;
    return 0;
}

/* Staged events of the xid's generation: an open one, or a commit not
 * finished yet (its G key is dropped with its last chunk). */
int st_db_stage_count(st_db *db, const char *tenant, uint32_t xid, uint64_t cap, uint64_t *n,
                      char *err, size_t errlen)
{
    stage_count_arg a = {0, cap};
    st_stage_txn *h;
    uint64_t gen;
    *n = 0;
    if (st_db_stage_begin(db, tenant, xid, &h, &gen, err, errlen) != WH_OK)
        return WH_ERR;
    int stopped;
    int rc = st_db_stage_txn_scan(h, 0, stage_count_step, &a, &stopped, err, errlen);
    st_db_stage_end(h);
    *n = a.n;
    return rc;
}

int st_db_stage_committed(st_db *db, const char *tenant, uint64_t cap, uint64_t *n, char *err,
                          size_t errlen)
{
    *n = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (ten_open_stage(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL || t->stage == NULL) {
        st_dbi_ten_done(t);
        return WH_OK;
    }
    char hi[ST_KEY_MAX];
    size_t pl;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = stage_prefix_iter(db, t, ST_STAGE_COMMIT, &ro, hi, &pl);
    for (; rocksdb_iter_valid(it) && *n < cap; rocksdb_iter_next(it))
        (*n)++;
    int rc = st_dbi_iter_done(it, ro, "reading commit records", err, errlen);
    st_dbi_ten_done(t);
    return rc;
}

/* ---- the commit record, references ---- */

int st_db_stage_cval(wh_buf *out, uint32_t xid, uint64_t commit_lsn, const void *const *part,
                     const size_t *part_len, size_t nparts)
{
    uint8_t h[1 + 4 + 8 + 4];
    h[0] = ST_CVAL_VERSION;
    wh_put_be32(h + 1, xid);
    wh_put_be64(h + 5, commit_lsn);
    wh_put_be32(h + 13, (uint32_t)nparts);
    if (wh_buf_append(out, h, sizeof(h)) != WH_OK)
        return WH_ERR;
    for (size_t i = 0; i < nparts; i++) {
        uint8_t l[4];
        wh_put_be32(l, (uint32_t)part_len[i]);
        if (wh_buf_append(out, l, 4) != WH_OK ||
            (part_len[i] > 0 && wh_buf_append(out, part[i], part_len[i]) != WH_OK))
            return WH_ERR;
    }
    return WH_OK;
}

/* The xid and commit LSN of a commit record; WH_ERR: malformed. */
static int cval_head(const char *cval, size_t cl, uint32_t *xid, uint64_t *lsn)
{
    if (cl < 17 || cval[0] != ST_CVAL_VERSION)
        return WH_ERR;
    *xid = wh_get_be32((const uint8_t *)cval + 1);
    *lsn = wh_get_be64((const uint8_t *)cval + 5);
    return WH_OK;
}

int st_db_stage_cval_lsn_is(const char *cval, size_t cval_len, uint64_t commit_lsn)
{
    uint32_t xid;
    uint64_t lsn;
    return cval_head(cval, cval_len, &xid, &lsn) == WH_OK && lsn == commit_lsn;
}

int st_db_stage_render(wh_buf *out, const char *cval, size_t cl, uint64_t seq, const void *json,
                       size_t json_len)
{
    uint32_t xid;
    uint64_t lsn;
    if (cval_head(cval, cl, &xid, &lsn) != WH_OK)
        return WH_ERR;
    uint32_t np = wh_get_be32((const uint8_t *)cval + 13);
    size_t at = 17;
    char num[24];
    int nl = snprintf(num, sizeof(num), "%" PRIu64, seq);
    for (uint32_t i = 0; i < np; i++) {
        if (cl - at < 4)
            return WH_ERR;
        size_t pl = wh_get_be32((const uint8_t *)cval + at);
        at += 4;
        if (cl - at < pl)
            return WH_ERR;
        if (i > 0 && wh_buf_append(out, num, (size_t)nl) != WH_OK)
            return WH_ERR;
        if (pl > 0 && wh_buf_append(out, cval + at, pl) != WH_OK)
            return WH_ERR;
        at += pl;
    }
    if (json_len > 0 && wh_buf_append(out, json, json_len) != WH_OK)
        return WH_ERR;
    return WH_OK;
}

static void resolver_init(st_resolver *rs, st_db *db, st_tenant *t)
{
    memset(rs, 0, sizeof(*rs));
    rs->db = db;
    rs->t = t;
    st_sfile_rd_init(&rs->rd);
    wh_buf_init(&rs->out, 0);
}

static void resolver_free(st_resolver *rs)
{
    st_sfile_rd_close(&rs->rd);
    if (rs->it != NULL)
        rocksdb_iter_destroy(rs->it);
    if (rs->ro != NULL)
        rocksdb_readoptions_destroy(rs->ro);
    rocksdb_free(rs->cval);
    wh_buf_free(&rs->out);
}

static int is_ref(const char *v, size_t vl)
{
    return (vl == ST_REF_LEN && v[8] == ST_REF_MARK) ||
           (vl == ST_REF_FILE_LEN && v[8] == ST_REF_FILE_MARK);
}

static uint32_t ref_len(const char *v)
{
    return wh_get_be32((const uint8_t *)v + (v[8] == ST_REF_FILE_MARK ? 25 : 21));
}

/* resolve's part for a reference into a staging file: the record at its
 * offset, through rs->rd (kept open for the gen's next references) */
static int resolve_file(st_resolver *rs, uint64_t gen, uint64_t off, uint32_t seq, int *gone,
                        char *err, size_t errlen)
{
    if (!rs->rd_open || rs->rd.gen != gen) {
        int missing;
        rs->rd_open = 0;
        if (st_sfile_rd_open(&rs->rd, rs->db->stage_dir, stage_cfid(rs->t), gen, &missing, err,
                             errlen) != WH_OK)
            return WH_ERR;
        if (missing) {
            *gone = 1;
            return wh_seterr(err, errlen, "staging file of generation %" PRIu64 " is gone", gen);
        }
        rs->rd_open = 1;
    }
    st_sfile_rec rec;
    int end;
    if (st_sfile_rd_at(&rs->rd, off, &rec, &end, err, errlen) != WH_OK)
        return WH_ERR;
    if (end) {
        *gone = 1;
        return wh_seterr(err, errlen,
                         "staged event at offset %" PRIu64 " of generation %" PRIu64
                         " is gone or damaged",
                         off, gen);
    }
    wh_buf_reset(&rs->out);
    if (st_db_stage_render(&rs->out, rs->cval, rs->cval_len, seq, rec.json, rec.json_len) != WH_OK)
        return wh_seterr(err, errlen, "out of memory");
    return WH_OK;
}

/* The bytes the reference v (of the event at seq) stands for, in rs->out.
 * WH_ERR with err: its staging is gone (*gone) or unreadable. */
static int resolve(st_resolver *rs, const char *v, uint32_t seq, int *gone, char *err,
                   size_t errlen)
{
    *gone = 0;
    uint64_t gen = wh_get_be64((const uint8_t *)v + 9);
    uint32_t idx = wh_get_be32((const uint8_t *)v + 17);
    st_tenant *t = rs->t;
    if (t->stage == NULL) {
        *gone = 1;
        return wh_seterr(err, errlen, "staging of generation %" PRIu64 " is gone", gen);
    }
    if (rs->cgen != gen) {
        size_t cl = 0;
        rocksdb_free(rs->cval);
        rs->cgen = 0;
        if (stage_cval_get(rs->db, t, gen, &rs->cval, &cl, err, errlen) != WH_OK)
            return WH_ERR;
        if (rs->cval == NULL) {
            *gone = 1;
            return wh_seterr(err, errlen, "commit record of generation %" PRIu64 " is gone", gen);
        }
        rs->cval_len = cl;
        rs->cgen = gen;
    }
    if (v[8] == ST_REF_FILE_MARK)
        return resolve_file(rs, gen, wh_get_be64((const uint8_t *)v + 17), seq, gone, err, errlen);
    if (rs->it == NULL) {
        rs->ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_fill_cache(rs->ro, 0);
        rs->it = rocksdb_create_iterator_cf(rs->db->rdb, rs->ro, t->stage);
    }
    char k[ST_KEY_MAX];
    size_t kl = key_stage(k, t->name, gen, ST_STAGE_EVENT, idx), il = 0, vl = 0;
    /* events are read in order, their staged ones mostly in index order:
     * the iterator is on the key already, or just before it */
    const char *ik = rocksdb_iter_valid(rs->it) ? rocksdb_iter_key(rs->it, &il) : NULL;
    if (ik != NULL && (il != kl || memcmp(ik, k, kl) != 0)) {
        rocksdb_iter_next(rs->it);
        ik = rocksdb_iter_valid(rs->it) ? rocksdb_iter_key(rs->it, &il) : NULL;
    }
    if (ik == NULL || il != kl || memcmp(ik, k, kl) != 0) {
        rocksdb_iter_seek(rs->it, k, kl);
        ik = rocksdb_iter_valid(rs->it) ? rocksdb_iter_key(rs->it, &il) : NULL;
    }
    if (ik == NULL || il != kl || memcmp(ik, k, kl) != 0) {
        char *e = NULL;
        rocksdb_iter_get_error(rs->it, &e);
        if (e) {
            rocksdb_iter_destroy(rs->it);
            rs->it = NULL;
            return st_dbi_rerr(err, errlen, "read staging", e);
        }
        *gone = 1;
        return wh_seterr(err, errlen, "staged event %" PRIu32 " of generation %" PRIu64 " is gone",
                         idx, gen);
    }
    const char *sv = rocksdb_iter_value(rs->it, &vl);
    wh_buf_reset(&rs->out);
    if (vl < 4 ||
        st_db_stage_render(&rs->out, rs->cval, rs->cval_len, seq, sv + 4, vl - 4) != WH_OK)
        return wh_seterr(err, errlen,
                         "staged event %" PRIu32 " of generation %" PRIu64
                         ": malformed, or out of memory",
                         idx, gen);
    return WH_OK;
}

static size_t events_upper(char *upper, const char *tenant);
static rocksdb_readoptions_t *events_readoptions(const char *upper, size_t ul, int tailing);

int st_dbi_stage_gc(st_db *db, st_tenant *t, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (t->stage == NULL || t->ev == NULL || db->read_only)
        return WH_OK;
    /* a stage commit holds the lock throughout (a staging request for one
     * synced write): after 50 ms, the next pass */
    struct timespec dl;
    wh_deadline_in(&dl, CLOCK_REALTIME, 50);
    if (pthread_mutex_timedlock(&t->stage_mu, &dl) != 0)
        return WH_OK;
    if (stage_ready(db, t, err, errlen) != WH_OK) {
        pthread_mutex_unlock(&t->stage_mu);
        return WH_ERR;
    }
    char hi[ST_KEY_MAX], eu[ST_KEY_MAX];
    size_t pl;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = stage_prefix_iter(db, t, ST_STAGE_COMMIT, &ro, hi, &pl);
    size_t eul = events_upper(eu, t->name);
    rocksdb_readoptions_t *ero = events_readoptions(eu, eul, 0);
    rocksdb_iterator_t *eit = rocksdb_create_iterator_cf(db->rdb, ero, t->ev);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = WH_OK;
    uint32_t rdel = 0;
    gen_set gone = {0};
    for (; rc == WH_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        uint32_t xid;
        uint64_t lsn;
        if (kl != pl + 8 || cval_head(v, vl, &xid, &lsn) != WH_OK)
            continue;
        uint64_t gen = wh_get_be64((const uint8_t *)k + pl), cur;
        int committed;
        if ((rc = stage_gen_of(db, t, xid, &cur, &committed, err, errlen)) != WH_OK)
            break;
        if (cur == gen)
            continue; /* its commit still runs, or was cut short */
        /* any event of the transaction left (its references) */
        char ek[ST_KEY_MAX];
        size_t ekl = st_dbi_key_event(ek, t->name, lsn, 0);
        rocksdb_iter_seek(eit, ek, ekl);
        if (rocksdb_iter_valid(eit)) {
            size_t fl;
            const char *fk = rocksdb_iter_key(eit, &fl);
            uint64_t flsn;
            uint32_t fseq;
            if (parse_event_key(fk, fl, NULL, &flsn, &fseq) == WH_OK && flsn == lsn)
                continue;
        }
        char *e = NULL;
        rocksdb_iter_get_error(eit, &e);
        if (e) {
            rc = st_dbi_rerr(err, errlen, "read events", e);
            break;
        }
        char gl[ST_KEY_MAX], gh[ST_KEY_MAX];
        size_t hl, ll = stage_gen_range(gl, gh, &hl, t->name, gen);
        rocksdb_writebatch_delete_range_cf(wb, t->stage, gl, ll, gh, hl);
        rocksdb_writebatch_delete_cf(wb, t->stage, k, kl);
        rdel++;
        (*n)++;
        if (gen_set_add(&gone, gen) != WH_OK)
            rc = wh_seterr(err, errlen, "out of memory");
    }
    int irc = st_dbi_iter_done(eit, ero, "staging GC", err, errlen);
    int src = st_dbi_iter_done(it, ro, "staging GC", err, errlen);
    if (rc == WH_OK)
        rc = irc != WH_OK ? irc : src;
    if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0)
        rc = sync_write(db, wb, "staging GC", err, errlen);
    if (rc == WH_OK) {
        stage_rdel_note(db, t, rdel);
        stage_files_remove(db, t, &gone);
    }
    free(gone.v);
    rocksdb_writebatch_destroy(wb);
    pthread_mutex_unlock(&t->stage_mu);
    return rc;
}

/* ---- read ---- */

/* The upper bound of the tenant's event keys: just past every
 * "E tenant \0 ..." key. */
static size_t events_upper(char *upper, const char *tenant)
{
    size_t ul = st_dbi_key_prefix(upper, 'E', tenant);
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
 * st_db_read), a reference resolved by rs; the number passed. *failed: a
 * reference could not be resolved (err says why; the read stops before it). */
static size_t iter_events(rocksdb_iterator_t *it, st_resolver *rs, const char *tenant,
                          uint64_t from_lsn, uint32_t from_seq, uint32_t max_events,
                          size_t max_bytes, st_read_fn fn, void *arg, int *failed, char *err,
                          size_t errlen)
{
    *failed = 0;
    char seek[ST_KEY_MAX];
    size_t sl = st_dbi_key_event(seek, tenant, from_lsn, from_seq);
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
        int ref = is_ref(v, vl);
        size_t jl = ref ? ref_len(v) : vl - 8;
        if (count > 0 && bytes + jl > max_bytes)
            break;
        int64_t ts = (int64_t)wh_get_be64((const uint8_t *)v);
        const char *j = v + 8;
        if (ref) {
            int gone;
            char rerr[WH_ERRLEN];
            if (resolve(rs, v, seq, &gone, rerr, sizeof(rerr)) != WH_OK) {
                char at[WH_LSN_STRLEN];
                wh_lsn_format(lsn, at, sizeof(at));
                wh_seterr(err, errlen, "event at %s seq %" PRIu32 ": %s", at, seq, rerr);
                *failed = 1;
                break;
            }
            j = rs->out.data;
            jl = rs->out.len;
        }
        count++;
        bytes += jl;
        if (fn(arg, lsn, seq, ts, j, jl) != 0)
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
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char upper[ST_KEY_MAX];
    size_t ul = events_upper(upper, tenant);
    rocksdb_readoptions_t *ro = events_readoptions(upper, ul, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, t->ev);
    st_resolver rs;
    resolver_init(&rs, db, t);
    int failed;
    size_t count = iter_events(it, &rs, tenant, from_lsn, from_seq, max_events, max_bytes, fn, arg,
                               &failed, err, errlen);
    resolver_free(&rs);
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    st_dbi_ten_done(t);
    if (nread)
        *nread = count;
    if (e)
        return st_dbi_rerr(err, errlen, "read", e);
    return failed ? WH_ERR : WH_OK;
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

int st_db_reader_open(st_db *db, const char *tenant, const char *consumer, st_reader **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK ||
        (consumer != NULL && st_db_check_name(consumer, "consumer", err, errlen) != WH_OK))
        return WH_ERR;
    st_tenant *t = st_dbi_tenant_find(db, tenant, 1);
    if (t == NULL)
        return st_dbi_tenant_full(err, errlen);
    st_off *o = NULL;
    if (consumer != NULL && (o = st_dbi_off_get(db, tenant, consumer, err, errlen)) == NULL)
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
    off_val cur = st_dbi_off_read(o); /* fast path: no lock but the entry's own */
    int rc = WH_OK;
    if (cur.state == ST_OFF_NEW && !r->db->read_only) {
        st_tenant *t;
        if (st_dbi_ten_open(r->db, r->tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
            return WH_ERR;
        pthread_mutex_lock(&o->wmu);
        cur = st_dbi_off_read(o);
        if (cur.state == ST_OFF_NEW) {
            off_val nv = {cur.lsn, cur.seq, cur.epoch, ST_OFF_LIVE};
            rc = st_dbi_off_persist(r->db, o, nv, err, errlen);
            if (rc == WH_OK) {
                st_dbi_off_write(o, nv);
                cur = nv;
            }
        }
        pthread_mutex_unlock(&o->wmu);
        st_dbi_ten_done(t);
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
    st_resolver rs;
    resolver_init(&rs, r->db, t);
    int failed;
    size_t count = iter_events(r->it, &rs, r->tenant, from_lsn, from_seq, max_events, max_bytes, fn,
                               arg, &failed, err, errlen);
    resolver_free(&rs);
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
        return st_dbi_rerr(err, errlen, "read", e);
    return failed ? WH_ERR : WH_OK;
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

int st_dbi_check_names(st_db *db, const char *tenant, const char *consumer, int write, char *err,
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
size_t st_dbi_off_encode(uint8_t *b, off_val v, int needs_snapshot)
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
    size_t kl = st_dbi_key_offset(k, o->tenant, o->consumer);
    uint8_t b[ST_OFF_VAL_LEN + 1];
    size_t bl = st_dbi_off_encode(b, v, o->needs_snapshot);
    char *e = NULL;
    int slot = st_dbi_io_begin(db, "offset write");
    rocksdb_put_cf(db->rdb, wo, o->ten->meta, k, kl, (const char *)b, bl, &e);
    st_dbi_io_end(db, slot);
    st_dbi_note_write(db, e);
    if (e)
        return st_dbi_rerr(err, errlen, "offset write", e);
    return WH_OK;
}

/* Stores the offset value with sync. Same locks as off_put. */
int st_dbi_off_persist(st_db *db, st_off *o, off_val v, char *err, size_t errlen)
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
    size_t kl = st_dbi_key_offset(k, o->tenant, o->consumer);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (v != NULL) {
        uint8_t b[ST_OFF_VAL_LEN + 1];
        size_t bl = st_dbi_off_encode(b, *v, o->needs_snapshot);
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
    st_dbi_write(db, db->wo, wb, "offset write", &e);
    rocksdb_writebatch_destroy(wb);
    if (v != NULL)
        st_dbi_note_write(db, e);
    if (e)
        return st_dbi_rerr(err, errlen, v != NULL ? "offset write" : "offset delete", e);
    return WH_OK;
}

/* Notes why and when o is marked NEEDS_SNAPSHOT (memory and its N key,
 * written without sync just before the synced O value that carries the
 * mark, so both are durable together). Same locks as off_put. */
void st_dbi_ns_note_put(st_db *db, st_off *o, int kind)
{
    int64_t since = wh_wallclock_us() / 1000;
    atomic_store(&o->ns_since_ms, since);
    atomic_store(&o->ns_kind, kind);
    o->rs_bf = 0;
    char k[ST_KEY_MAX];
    size_t kl = st_dbi_key_offset(k, o->tenant, o->consumer);
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

/* st_dbi_off_persist for an offset commit: written without sync, durable before
 * it returns (wal_synced_after), so it shares the sync of the appends that
 * come meanwhile instead of adding one of its own before them. Same locks. */
static int off_persist_lazy(st_db *db, st_off *o, off_val v, char *err, size_t errlen)
{
    if (db->offset_sync_wait_us <= 0)
        return st_dbi_off_persist(db, o, v, err, errlen);
    if (off_put(db, o, v, db->wo_lazy, err, errlen) != WH_OK)
        return WH_ERR;
    return wal_synced_after(db, err, errlen);
}

int st_db_commit_epoch(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                       uint32_t seq, uint64_t epoch, st_offset *out, char *err, size_t errlen)
{
    return st_db_commit_fenced(db, tenant, consumer, lsn, seq, epoch, 0, out, err, errlen);
}

int st_db_commit_fenced(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                        uint32_t seq, uint64_t epoch, uint64_t lease_epoch, st_offset *out,
                        char *err, size_t errlen)
{
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL)
        return WH_ERR;
    if (st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK) {
        /* a late commit of a removed tenant's consumer: refused as a
         * dropped one, without bringing the tenant back */
        off_val cur = st_dbi_off_read(o);
        if (cur.state != ST_OFF_DROPPED)
            return WH_ERR;
        wh_seterr(err, errlen, "consumer '%s' of tenant '%s' was dropped", consumer, tenant);
        if (out != NULL)
            *out = (st_offset){.epoch = cur.epoch, .dropped = 1};
        return ST_DB_STALE;
    }
    int rc = WH_OK;
    pthread_mutex_lock(&o->wmu);
    off_val cur = st_dbi_off_read(o);
    if (cur.state == ST_OFF_DROPPED) {
        wh_seterr(err, errlen, "consumer '%s' of tenant '%s' was dropped", consumer, tenant);
        rc = ST_DB_STALE;
    } else if (st_dbi_lease_check(o, lease_epoch, err, errlen) != WH_OK) {
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
            st_dbi_off_write(o, nv);
            cur = nv;
        }
    }
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
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
    if (st_dbi_check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    off_val cur = st_dbi_off_read(o); /* fast path: no wait for a commit's fsync */
    int rc = WH_OK;
    if (cur.state == ST_OFF_NEW && !db->read_only) {
        st_tenant *t;
        if (st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
            return WH_ERR;
        pthread_mutex_lock(&o->wmu);
        cur = st_dbi_off_read(o);
        if (cur.state == ST_OFF_NEW) {
            off_val nv = {cur.lsn, cur.seq, cur.epoch, ST_OFF_LIVE};
            rc = st_dbi_off_persist(db, o, nv, err, errlen);
            if (rc == WH_OK) {
                st_dbi_off_write(o, nv);
                cur = nv;
            }
        }
        pthread_mutex_unlock(&o->wmu);
        st_dbi_ten_done(t);
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
    if (rc == WH_OK) {
        st_dbi_off_write(o, *nv);
        o->rs_bf = 0;
    } else {
        o->needs_snapshot = had_ns;
    }
    return rc;
}

int st_db_set_offset(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                     uint32_t seq, st_offset *prev, st_offset *now, char *err, size_t errlen)
{
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    atomic_fetch_add(&db->moving, 1);
    off_val cur = st_dbi_off_read(o), nv;
    int rc = off_move_locked(db, o, cur, lsn, seq, &nv, err, errlen);
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1); /* before and after: see st_db_offset_moves */
    atomic_fetch_sub(&db->moving, 1);
    st_dbi_ten_done(t);
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
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    st_tenant *t;
    if (o == NULL || db->read_only)
        return 0;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return 0;
    atomic_fetch_add(&db->moves, 1);
    int rc = 0;
    pthread_mutex_lock(&o->wmu);
    atomic_fetch_add(&db->moving, 1);
    off_val cur = st_dbi_off_read(o);
    if (cur.state == ST_OFF_LIVE && o->needs_snapshot) {
        off_val nv;
        rc = off_move_locked(db, o, cur, lsn, seq, &nv, err, errlen) == WH_OK ? 1 : WH_ERR;
        if (rc == 1)
            *prev = (st_offset){cur.lsn, cur.seq, cur.epoch, 0};
    }
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1);
    atomic_fetch_sub(&db->moving, 1);
    st_dbi_ten_done(t);
    return rc;
}

int st_db_drop_offset(st_db *db, const char *tenant, const char *consumer, st_offset *prev,
                      char *err, size_t errlen)
{
    if (prev != NULL)
        memset(prev, 0, sizeof(*prev));
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o == NULL)
        return WH_OK; /* nothing to drop */
    int rc = WH_OK;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    atomic_fetch_add(&db->moving, 1);
    off_val cur = st_dbi_off_read(o);
    if (cur.state != ST_OFF_DROPPED) {
        if (cur.state == ST_OFF_LIVE && t != NULL)
            rc = off_put_clean(db, o, t->meta, NULL, 1, err, errlen);
        if (rc == WH_OK) {
            st_dbi_off_write(o, (off_val){0, 0, cur.epoch + 1, ST_OFF_DROPPED});
            o->needs_snapshot = 0;
            o->rs_bf = 0;
        }
    }
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1);
    atomic_fetch_sub(&db->moving, 1);
    st_dbi_ten_done(t);
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
    if (st_dbi_check_names(db, tenant, consumer, 0, NULL, 0) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o == NULL)
        return WH_OK;
    pthread_mutex_lock(&o->wmu);
    off_val cur = st_dbi_off_read(o);
    if (cur.state == ST_OFF_DROPPED)
        st_dbi_off_write(o, (off_val){0, 0, cur.epoch + 1, ST_OFF_NEW});
    pthread_mutex_unlock(&o->wmu);
    atomic_fetch_add(&db->moves, 1);
    return WH_OK;
}

int st_db_offset_info(st_db *db, const char *tenant, const char *consumer, st_offset *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (st_dbi_check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o != NULL) {
        off_val v = st_dbi_off_read(o);
        if (v.state == ST_OFF_LIVE) {
            out->lsn = v.lsn;
            out->seq = v.seq;
        }
        out->epoch = v.epoch;
        out->dropped = v.state == ST_OFF_DROPPED;
    }
    return WH_OK;
}

int st_db_offset_live(st_db *db, const char *tenant, const char *consumer)
{
    if (st_dbi_check_names(db, tenant, consumer, 0, NULL, 0) != WH_OK)
        return 0;
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    return o != NULL && st_dbi_off_read(o).state == ST_OFF_LIVE;
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
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char lower[ST_KEY_MAX], last[ST_KEY_MAX];
    size_t ll = st_dbi_key_prefix(lower, 'E', tenant);
    size_t kl = st_dbi_key_event(last, tenant, UINT64_MAX, UINT32_MAX);
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
    st_dbi_ten_done(t);
    if (e)
        return st_dbi_rerr(err, errlen, "tenant end", e);
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
        return st_dbi_rerr(err, errlen, "state read", e);
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
    st_dbi_write(db, db->wo, wb, "state write", &e);
    rocksdb_writebatch_destroy(wb);
    if (e)
        return st_dbi_rerr(err, errlen, "state write", e);
    return WH_OK;
}

/* ---- dump / compact ---- */

static int ten_cmp(const void *a, const void *b)
{
    return strcmp((*(st_tenant *const *)a)->name, (*(st_tenant *const *)b)->name);
}

/* The tenants known now, sorted by name (malloc'ed; NULL and 0 when none). */
st_tenant **st_dbi_tenants_sorted(st_db *db, size_t *n)
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
    st_tenant **tv = st_dbi_tenants_sorted(db, &nt);
    int rc = WH_OK;
    for (size_t i = 0; i < nt && rc == WH_OK; i++) {
        st_tenant *t;
        if (st_dbi_ten_open(db, tv[i]->name, 0, &t, err, errlen) != WH_OK) {
            rc = WH_ERR;
            break;
        }
        if (t == NULL)
            continue;
        rc = one(db, t, out, err, errlen);
        st_dbi_ten_done(t);
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
    st_resolver rs;
    resolver_init(&rs, db, t);
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
        const char *j = v + 8;
        size_t jl = vl > 8 ? vl - 8 : 0;
        const char *note = "";
        if (is_ref(v, vl)) { /* a stage commit's reference: what it stands for */
            int gone;
            char rerr[WH_ERRLEN];
            if (resolve(&rs, v, seq, &gone, rerr, sizeof(rerr)) == WH_OK) {
                j = rs.out.data;
                jl = rs.out.len;
            } else {
                note = " unresolved";
                jl = 0;
            }
        }
        const char *op = jl > 0 ? memmem(j, jl, ",\"op\":\"", 7) : NULL;
        size_t left = op ? jl - (size_t)(op + 7 - j) : 0;
        const char *mark = op && left >= 7 && memcmp(op + 7, "schema\"", 7) == 0 ? " schema"
                           : op && left >= 4 && memcmp(op + 7, "ddl\"", 4) == 0  ? " ddl"
                                                                                 : "";
        fprintf(out, "%s %s %" PRIu32 "%s%s\n", tenant, l, seq, mark, note);
    }
    resolver_free(&rs);
    return st_dbi_iter_done(it, ro, "dump", err, errlen);
}

int st_db_dump(st_db *db, FILE *out, char *err, size_t errlen)
{
    return dump_each(db, out, dump_events, err, errlen);
}

typedef struct dump_stage_arg {
    st_db *db;
    st_tenant *t;
    FILE *out;
} dump_stage_arg;

static int dump_stage_step(void *arg, uint32_t xid, uint64_t gen, const char *k, size_t kl,
                           char *err, size_t errlen)
{
    WH_UNUSED(k);
    WH_UNUSED(kl);
    dump_stage_arg *d = arg;
    stage_count_arg a = {0, UINT64_MAX};
    int stopped;
    st_stage_txn h = {.db = d->db, .t = d->t, .gen = gen};
    st_sfile_rd_init(&h.rd);
    int rc = st_db_stage_txn_scan(&h, 0, stage_count_step, &a, &stopped, err, errlen);
    stage_txn_scan_free(&h);
    if (rc != WH_OK)
        return WH_ERR;
    if (a.n > 0)
        fprintf(d->out, "%s %" PRIu32 " %" PRIu64 "\n", d->t->name, xid, a.n);
    return WH_OK;
}

static int dump_stage(st_db *db, st_tenant *t, FILE *out, char *err, size_t errlen)
{
    if (t->stage == NULL)
        return WH_OK;
    dump_stage_arg d = {db, t, out};
    pthread_mutex_lock(&t->stage_mu);
    int rc = stage_ready(db, t, err, errlen);
    if (rc == WH_OK)
        rc = stage_map_each(db, t, dump_stage_step, &d, err, errlen);
    pthread_mutex_unlock(&t->stage_mu);
    return rc;
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
    st_tenant **tv = st_dbi_tenants_sorted(db, &nt);
    int rc = WH_OK;
    for (size_t i = 0; i < nt && rc == WH_OK; i++) {
        if (only != NULL && strcmp(tv[i]->name, only) != 0)
            continue;
        st_tenant *t;
        if (st_dbi_ten_open(db, tv[i]->name, 0, &t, err, errlen) != WH_OK) {
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
            rc = st_dbi_rerr(err, errlen, "flush", e);
        } else if (compact) {
            rocksdb_compact_range_cf(db->rdb, t->ev, NULL, 0, NULL, 0);
            rocksdb_compact_range_cf(db->rdb, t->meta, NULL, 0, NULL, 0);
            if (t->stage != NULL)
                rocksdb_compact_range_cf(db->rdb, t->stage, NULL, 0, NULL, 0);
        }
        st_dbi_ten_done(t);
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

int st_db_offset_moved(st_db *db, uint64_t since)
{
    /* moving first: a move it no longer counts has bumped moves already */
    return atomic_load(&db->moving) > 0 || atomic_load(&db->moves) != since;
}

uint64_t st_db_gc_dropped(st_db *db)
{
    return atomic_load(&db->gc_dropped);
}

uint64_t st_db_gc_compactions(st_db *db)
{
    return atomic_load(&db->gc_compactions);
}

/* ---- tenants: create, drop ---- */

int st_db_tenant_create(st_db *db, const char *tenant, char *err, size_t errlen)
{
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, ST_DBI_CREATE_EXPLICIT, &t, err, errlen) != WH_OK)
        return WH_ERR;
    st_dbi_ten_done(t);
    return WH_OK;
}

int st_db_tenant_drop(st_db *db, const char *tenant, char *err, size_t errlen)
{
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    atomic_fetch_add(&db->moves, 1);
    st_tenant *t = st_dbi_tenant_find(db, tenant, 0);
    if (t == NULL)
        return WH_OK;
    int rc = WH_OK;
    pthread_rwlock_wrlock(&t->lock);
    rocksdb_column_family_handle_t *h[4] = {t->ev, t->meta, t->stage, t->toast};
    for (int i = 0; i < 4 && rc == WH_OK; i++) {
        if (h[i] == NULL)
            continue;
        char *e = NULL;
        int slot = st_dbi_io_begin(db, "column family drop");
        rocksdb_drop_column_family(db->rdb, h[i], &e);
        st_dbi_io_end(db, slot);
        st_dbi_note_write(db, e);
        if (e) {
            rc = st_dbi_rerr(err, errlen, "drop column family", e);
            break;
        }
        if (i == 2)
            stage_files_drop_cf(db, rocksdb_column_family_handle_get_id(h[i]));
        rocksdb_column_family_handle_destroy(h[i]);
        t->cf_gen++;
        if (i == 0) {
            t->ev = NULL;
            atomic_fetch_sub(&db->nlive, 1);
        } else if (i == 1)
            t->meta = NULL;
        else if (i == 2)
            t->stage = NULL;
        else
            t->toast = NULL;
    }
    if (rc == WH_OK) {
        /* its consumers become tombstones (a late commit or read of a
         * removed target does not bring the tenant back); st_db_undrop
         * when the tenant and target come back. Their leases stay with
         * their holders, in memory (the L keys went with the column
         * family), as a removed target's do (st_db_dlq_drop): a request
         * of the target may still be at the receiver, and the tenant
         * created again must not let another dispatcher post to the
         * target at once; the holder renews and releases it, a dead one
         * lets it lapse */
        pthread_rwlock_rdlock(&db->off_lock);
        for (st_off *o = t->offs; o != NULL; o = o->tnext) {
            pthread_mutex_lock(&o->wmu);
            off_val cur = st_dbi_off_read(o);
            st_dbi_off_write(o, (off_val){0, 0, cur.epoch + 1, ST_OFF_DROPPED});
            o->needs_snapshot = 0;
            o->rs_bf = 0;
            if (o->lease_epoch != 0)
                o->lease_unstored = 1;
            pthread_mutex_unlock(&o->wmu);
        }
        pthread_rwlock_unlock(&db->off_lock);
        pthread_mutex_lock(&t->wm_mu);
        t->wm_lsn = t->wm_stored_lsn = t->floor_lsn = t->drop_lsn = 0;
        t->wm_incl = 0;
        t->newest_lsn = 0;
        t->newest_seq = 0;
        t->open_end_lsn = 0; /* its next column family starts empty */
        t->open_end_seq = 0;
        t->wm_seq = t->wm_stored_seq = t->floor_seq = t->drop_seq = 0;
        t->has_drop = 0;
        memset(&t->stats, 0, sizeof(t->stats));
        t->stats.oldest_age_ms = -1;
        pthread_mutex_unlock(&t->wm_mu);
        atomic_store(&t->gc_dropped, 0);
        st_toast_reset(t->tc);
        t->removed = 1;
        wh_info("tenant %s: column families dropped", tenant);
    }
    pthread_rwlock_unlock(&t->lock);
    atomic_fetch_add(&db->moves, 1);
    return rc;
}

/* 'Z' tenant in the tenant's meta CF: a state that removes it is being
 * written (st_db_tenant_mark_removal). */
static size_t key_removal(char *k, const char *tenant)
{
    size_t tl = strlen(tenant);
    k[0] = 'Z';
    memcpy(k + 1, tenant, tl);
    return tl + 1;
}

int st_db_tenant_mark_removal(st_db *db, const char *tenant, int on, char *err, size_t errlen)
{
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK; /* no data: nothing to mark */
    char k[ST_KEY_MAX];
    size_t kl = key_removal(k, tenant);
    char *e = NULL;
    int slot = st_dbi_io_begin(db, "tenant removal mark");
    if (on)
        rocksdb_put_cf(db->rdb, db->wo, t->meta, k, kl, "1", 1, &e);
    else
        rocksdb_delete_cf(db->rdb, db->wo, t->meta, k, kl, &e);
    st_dbi_io_end(db, slot);
    st_dbi_note_write(db, e);
    st_dbi_ten_done(t);
    return e ? st_dbi_rerr(err, errlen, "mark tenant removal", e) : WH_OK;
}

int st_db_tenant_removal_marked(st_db *db, const char *tenant)
{
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, NULL, 0) != WH_OK || t == NULL)
        return 0;
    char k[ST_KEY_MAX];
    size_t kl = key_removal(k, tenant), vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    st_dbi_ten_done(t);
    int marked = e == NULL && v != NULL;
    rocksdb_free(v);
    rocksdb_free(e);
    return marked;
}

void st_db_tenant_each(st_db *db, void (*fn)(void *arg, const char *tenant), void *arg)
{
    size_t n;
    st_tenant **tv = st_dbi_tenants_sorted(db, &n); /* entries are never freed */
    for (size_t i = 0; i < n; i++) {
        pthread_rwlock_rdlock(&tv[i]->lock);
        int has = tv[i]->ev != NULL || tv[i]->meta != NULL || tv[i]->stage != NULL ||
                  tv[i]->toast != NULL;
        pthread_rwlock_unlock(&tv[i]->lock);
        if (has)
            fn(arg, tv[i]->name);
    }
    free(tv);
}

int st_db_tenant_exists(st_db *db, const char *tenant)
{
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, NULL, 0) != WH_OK || t == NULL)
        return 0;
    st_dbi_ten_done(t);
    return 1;
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

/* ---- the TOAST value cache (st_toast.h) ---- */

/* st_dbi_ten_open (create), with the TOAST CF made first. */
static int ten_open_toast(st_db *db, const char *tenant, st_tenant **out, char *err, size_t errlen)
{
    for (;;) {
        if (st_dbi_ten_open(db, tenant, ST_DBI_CREATE, out, err, errlen) != WH_OK)
            return WH_ERR;
        st_tenant *t = *out;
        if (t->toast != NULL)
            return WH_OK;
        st_dbi_ten_done(t);
        pthread_rwlock_wrlock(&t->lock);
        int rc = WH_OK;
        if (t->toast == NULL && t->ev != NULL) {
            rc = cf_create(db, t, db->opts, ST_CF_TOAST, &t->toast, err, errlen);
            if (rc == WH_OK) {
                st_toast_reset(t->tc);
                wh_info("tenant %s: TOAST cache column family created", t->name);
            }
        }
        pthread_rwlock_unlock(&t->lock);
        if (rc != WH_OK)
            return WH_ERR;
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
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return -1;
    if (t == NULL)
        return 0;
    int rc = st_toast_get(t->tc, db->rdb, t->toast, rel, key, keylen, col, before_lsn, val, vallen,
                          lsn, err, errlen);
    st_dbi_ten_done(t);
    return rc;
}

int st_db_toast_tables(st_db *db, const char *tenant, st_toast_table **out, size_t *n, char *err,
                       size_t errlen)
{
    *out = NULL;
    *n = 0;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = st_toast_tables(t->tc, db->rdb, t->toast, out, n, err, errlen);
    st_dbi_ten_done(t);
    return rc;
}

int st_db_toast_stats(st_db *db, const char *tenant, st_toast_stats *out)
{
    memset(out, 0, sizeof(*out));
    int busy;
    st_tenant *t = st_dbi_ten_try(db, tenant, &busy); /* for Stats: never waits */
    if (t == NULL)
        return 0;
    int has = t->toast != NULL;
    if (has)
        st_toast_get_stats(t->tc, db->rdb, t->toast, out);
    st_dbi_ten_done(t);
    return has;
}
