/* st_db: RocksDB wrapper of walhook-store. See st_db.h. */
#include "st_db.h"

#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "wh_config.h"
#include "wh_lsn.h"
#include "wh_util.h"

#define ST_LOCK_STRIPES 16
#define ST_POS_LEN 12 /* lsn(8) seq(4) */
#define ST_KEY_MAX (1 + ST_NAME_MAX + 1 + ST_NAME_MAX + ST_POS_LEN)

typedef struct st_off {
    char tenant[ST_NAME_MAX + 1];
    char consumer[ST_NAME_MAX + 1];
    uint64_t lsn;
    uint32_t seq;
} st_off;

/* Per-compaction snapshot of the GC watermarks, sorted by tenant. */
typedef struct st_wm {
    char tenant[ST_NAME_MAX + 1];
    uint64_t lsn;
    uint32_t seq;
} st_wm;

typedef struct st_gc_snap {
    st_db *db;
    st_wm *wm;
    size_t n;
} st_gc_snap;

struct st_db {
    rocksdb_t *rdb;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *cache;
    rocksdb_ratelimiter_t *rl;
    rocksdb_writeoptions_t *wo; /* sync = true */
    rocksdb_readoptions_t *ro;
    int read_only;

    pthread_mutex_t append_mu[ST_LOCK_STRIPES];

    pthread_mutex_t off_mu; /* offsets table; held across commit writes */
    st_off *offs;
    size_t noffs, capoffs;

    _Atomic uint64_t gc_dropped;

    /* health of synced writes: the last one failed since fail_since_ms */
    pthread_mutex_t health_mu;
    int write_failing;
    uint64_t fail_since_ms;
    char write_err[200];
    _Atomic uint64_t write_errors;
};

int64_t st_db_memory_need(int64_t cache_bytes, int64_t write_buffer_bytes)
{
    return cache_bytes + write_buffer_bytes * ST_MAX_WRITE_BUFFERS;
}

int st_db_check_name(const char *name, const char *what, char *err, size_t errlen)
{
    if (name == NULL || name[0] == '\0')
        return wh_seterr(err, errlen, "%s: missing or empty", what);
    if (strlen(name) > ST_NAME_MAX)
        return wh_seterr(err, errlen, "%s: longer than %d bytes", what, ST_NAME_MAX);
    return WH_OK;
}

static int rerr(char *err, size_t errlen, const char *what, char *rerrmsg)
{
    wh_seterr(err, errlen, "rocksdb %s: %s", what, rerrmsg ? rerrmsg : "unknown error");
    if (rerrmsg)
        rocksdb_free(rerrmsg);
    return WH_ERR;
}

/* ---- keys ---- */

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

/* ---- GC compaction filter ---- */

static int wm_cmp(const void *a, const void *b)
{
    return strcmp(((const st_wm *)a)->tenant, ((const st_wm *)b)->tenant);
}

static void gc_snap_free(void *state)
{
    st_gc_snap *s = state;
    if (s) {
        free(s->wm);
        free(s);
    }
}

static const char *gc_name(void *state)
{
    WH_UNUSED(state);
    return "walhook-gc";
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
    st_gc_snap *s = state;
    *value_changed = 0;
    if (s == NULL || s->n == 0 || key_length == 0 || key[0] != 'E')
        return 0;
    st_wm probe;
    uint64_t lsn;
    uint32_t seq;
    if (parse_event_key(key, key_length, probe.tenant, &lsn, &seq) != WH_OK)
        return 0;
    const st_wm *w = bsearch(&probe, s->wm, s->n, sizeof(st_wm), wm_cmp);
    if (w == NULL)
        return 0; /* no consumer for this tenant: keep everything */
    if (wh_pos_cmp(lsn, seq, w->lsn, w->seq) < 0) {
        atomic_fetch_add(&s->db->gc_dropped, 1);
        return 1;
    }
    return 0;
}

static void gc_factory_destroy(void *state)
{
    WH_UNUSED(state); /* the db owns nothing of the factory */
}

static const char *gc_factory_name(void *state)
{
    WH_UNUSED(state);
    return "walhook-gc-factory";
}

/* Called by RocksDB at the start of each compaction. */
static rocksdb_compactionfilter_t *gc_factory_create(void *state,
                                                     rocksdb_compactionfiltercontext_t *ctx)
{
    WH_UNUSED(ctx);
    st_db *db = state;
    st_gc_snap *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->db = db;
    pthread_mutex_lock(&db->off_mu);
    if (db->noffs > 0)
        s->wm = malloc(db->noffs * sizeof(st_wm));
    if (s->wm) {
        for (size_t i = 0; i < db->noffs; i++) {
            const st_off *o = &db->offs[i];
            size_t j;
            for (j = 0; j < s->n; j++)
                if (strcmp(s->wm[j].tenant, o->tenant) == 0)
                    break;
            if (j == s->n) {
                memcpy(s->wm[j].tenant, o->tenant, sizeof(o->tenant));
                s->wm[j].lsn = o->lsn;
                s->wm[j].seq = o->seq;
                s->n++;
            } else if (wh_pos_cmp(o->lsn, o->seq, s->wm[j].lsn, s->wm[j].seq) < 0) {
                s->wm[j].lsn = o->lsn;
                s->wm[j].seq = o->seq;
            }
        }
    }
    pthread_mutex_unlock(&db->off_mu);
    if (s->n > 1)
        qsort(s->wm, s->n, sizeof(st_wm), wm_cmp);
    /* On allocation failure s->n == 0: the filter keeps everything. */
    return rocksdb_compactionfilter_create(s, gc_snap_free, gc_filter, gc_name);
}

/* ---- offsets table (caller holds off_mu) ---- */

static st_off *off_find(st_db *db, const char *tenant, const char *consumer)
{
    for (size_t i = 0; i < db->noffs; i++)
        if (strcmp(db->offs[i].tenant, tenant) == 0 && strcmp(db->offs[i].consumer, consumer) == 0)
            return &db->offs[i];
    return NULL;
}

static st_off *off_add(st_db *db, const char *tenant, const char *consumer)
{
    if (db->noffs == db->capoffs) {
        if (db->capoffs >= ST_MAX_CONSUMERS)
            return NULL;
        size_t nc = db->capoffs ? db->capoffs * 2 : 16;
        st_off *n = realloc(db->offs, nc * sizeof(*n));
        if (n == NULL)
            return NULL;
        db->offs = n;
        db->capoffs = nc;
    }
    st_off *o = &db->offs[db->noffs++];
    memset(o, 0, sizeof(*o));
    wh_strlcpy(o->tenant, tenant, sizeof(o->tenant));
    wh_strlcpy(o->consumer, consumer, sizeof(o->consumer));
    return o;
}

static int load_offsets(st_db *db, char *err, size_t errlen)
{
    static const char lo[] = "O", hi[] = "P";
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(db->rdb, ro);
    int rc = WH_OK;
    for (rocksdb_iter_seek(it, lo, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        const char *z = kl > 1 ? memchr(k + 1, '\0', kl - 1) : NULL;
        if (z == NULL || vl != ST_POS_LEN)
            continue;
        size_t tl = (size_t)(z - (k + 1)), cl = kl - tl - 2;
        if (tl == 0 || tl > ST_NAME_MAX || cl == 0 || cl > ST_NAME_MAX ||
            memchr(z + 1, '\0', cl) != NULL)
            continue;
        char tenant[ST_NAME_MAX + 1], consumer[ST_NAME_MAX + 1];
        memcpy(tenant, k + 1, tl);
        tenant[tl] = '\0';
        memcpy(consumer, z + 1, cl);
        consumer[cl] = '\0';
        st_off *o = off_add(db, tenant, consumer);
        if (o == NULL) {
            rc = wh_seterr(err, errlen, "too many consumer offsets (max %d)", ST_MAX_CONSUMERS);
            break;
        }
        o->lsn = wh_get_be64((const uint8_t *)v);
        o->seq = wh_get_be32((const uint8_t *)v + 8);
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e && rc == WH_OK)
        rc = rerr(err, errlen, "loading offsets", e);
    else if (e)
        rocksdb_free(e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
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
    for (int i = 0; i < ST_LOCK_STRIPES; i++)
        pthread_mutex_init(&db->append_mu[i], NULL);
    pthread_mutex_init(&db->off_mu, NULL);
    pthread_mutex_init(&db->health_mu, NULL);

    db->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(db->opts, 1);
    rocksdb_options_set_write_buffer_size(db->opts, (size_t)o->write_buffer_bytes);
    rocksdb_options_set_max_write_buffer_number(db->opts, ST_MAX_WRITE_BUFFERS);
    rocksdb_options_set_max_background_jobs(db->opts, 2);
    rocksdb_options_set_max_open_files(db->opts, 256);
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
    rocksdb_options_set_block_based_table_factory(db->opts, db->bbto);

    if (!o->read_only) {
        db->rl = rocksdb_ratelimiter_create(ST_RATE_BYTES_PER_SEC, 100 * 1000, 10);
        rocksdb_options_set_ratelimiter(db->opts, db->rl);
        /* The options own the factory (shared_ptr); its state is the db. */
        rocksdb_compactionfilterfactory_t *f = rocksdb_compactionfilterfactory_create(
            db, gc_factory_destroy, gc_factory_create, gc_factory_name);
        rocksdb_options_set_compaction_filter_factory(db->opts, f);
    }

    char *e = NULL;
    if (o->read_only) {
        db->rdb = rocksdb_open_for_read_only(db->opts, path, 0, &e);
    } else {
        /* LZ4 if this librocksdb was built with it, otherwise no compression. */
        rocksdb_options_set_compression(db->opts, rocksdb_lz4_compression);
        db->rdb = rocksdb_open(db->opts, path, &e);
        if (db->rdb == NULL && e && strstr(e, "ompression")) {
            wh_warn("lz4 not available in librocksdb, storing uncompressed");
            rocksdb_free(e);
            e = NULL;
            rocksdb_options_set_compression(db->opts, rocksdb_no_compression);
            db->rdb = rocksdb_open(db->opts, path, &e);
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
    db->ro = rocksdb_readoptions_create();

    if (load_offsets(db, err, errlen) != WH_OK) {
        st_db_close(db);
        return WH_ERR;
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
    if (db->rdb) {
        rocksdb_cancel_all_background_work(db->rdb, 1);
        rocksdb_close(db->rdb);
    }
    if (db->wo)
        rocksdb_writeoptions_destroy(db->wo);
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
    free(db->offs);
    for (int i = 0; i < ST_LOCK_STRIPES; i++)
        pthread_mutex_destroy(&db->append_mu[i]);
    pthread_mutex_destroy(&db->off_mu);
    pthread_mutex_destroy(&db->health_mu);
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

static unsigned stripe_of(const char *tenant)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % ST_LOCK_STRIPES;
}

static int get_durable_locked(st_db *db, const char *tenant, uint64_t *lsn, char *err,
                              size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_durable(k, tenant);
    size_t vl = 0;
    char *e = NULL;
    char *v = rocksdb_get(db->rdb, db->ro, k, kl, &vl, &e);
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
    return get_durable_locked(db, tenant, lsn, err, errlen);
}

int st_db_append(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                 uint64_t *durable_lsn, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    if (n > 0 && ev == NULL)
        return wh_seterr(err, errlen, "events: NULL");

    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char k[ST_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t kl = key_event(k, tenant, ev[i].lsn, ev[i].seq);
        uint8_t ts[8];
        wh_put_be64(ts, (uint64_t)ev[i].commit_ts_us);
        const char *parts[2] = {(const char *)ts, ev[i].json ? ev[i].json : ""};
        size_t sizes[2] = {8, ev[i].json ? ev[i].json_len : 0};
        const char *kp[1] = {k};
        size_t ks[1] = {kl};
        rocksdb_writebatch_putv(wb, 1, kp, ks, 2, parts, sizes);
    }

    pthread_mutex_t *mu = &db->append_mu[stripe_of(tenant)];
    pthread_mutex_lock(mu);
    uint64_t old = 0;
    int rc = get_durable_locked(db, tenant, &old, err, errlen);
    if (rc == WH_OK) {
        uint64_t d = ack_lsn > old ? ack_lsn : old;
        if (d != old) {
            uint8_t v[8];
            wh_put_be64(v, d);
            size_t kl = key_durable(k, tenant);
            rocksdb_writebatch_put(wb, k, kl, (const char *)v, 8);
        }
        if (rocksdb_writebatch_count(wb) > 0) {
            char *e = NULL;
            rocksdb_write(db->rdb, db->wo, wb, &e);
            note_write(db, e);
            if (e)
                rc = rerr(err, errlen, "write", e);
        }
        if (rc == WH_OK && durable_lsn)
            *durable_lsn = d;
    }
    pthread_mutex_unlock(mu);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

/* ---- read ---- */

int st_db_read(st_db *db, const char *tenant, uint64_t from_lsn, uint32_t from_seq,
               uint32_t max_events, size_t max_bytes, st_read_fn fn, void *arg, size_t *nread,
               char *err, size_t errlen)
{
    if (nread)
        *nread = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK)
        return WH_ERR;
    char seek[ST_KEY_MAX], upper[ST_KEY_MAX];
    size_t sl = key_event(seek, tenant, from_lsn, from_seq);
    size_t ul = key_prefix(upper, 'E', tenant);
    upper[ul - 1] = '\x01'; /* just past every "E tenant \0 ..." key */

    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper, ul);
    /* events are read once, in order: keep their data blocks out of the
     * block cache (the iterator pins the block it is on) */
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(db->rdb, ro);
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
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (nread)
        *nread = count;
    if (e)
        return rerr(err, errlen, "read", e);
    return WH_OK;
}

/* ---- offsets ---- */

int st_db_commit(st_db *db, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                 uint64_t *out_lsn, uint32_t *out_seq, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK ||
        st_db_check_name(consumer, "consumer", err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    pthread_mutex_lock(&db->off_mu);
    st_off *o = off_find(db, tenant, consumer);
    uint64_t cur_lsn = o ? o->lsn : 0;
    uint32_t cur_seq = o ? o->seq : 0;
    /* A new consumer is always persisted (even at (0,0): it then pins GC). */
    if (o == NULL || wh_pos_cmp(lsn, seq, cur_lsn, cur_seq) > 0) {
        if (o == NULL && db->noffs >= ST_MAX_CONSUMERS) {
            rc = wh_seterr(err, errlen, "consumer: too many consumers (max %d)", ST_MAX_CONSUMERS);
            goto out;
        }
        char k[ST_KEY_MAX];
        size_t kl = key_offset(k, tenant, consumer);
        uint8_t v[ST_POS_LEN];
        wh_put_be64(v, lsn);
        wh_put_be32(v + 8, seq);
        char *e = NULL;
        rocksdb_put(db->rdb, db->wo, k, kl, (const char *)v, sizeof(v), &e);
        note_write(db, e);
        if (e) {
            rc = rerr(err, errlen, "commit", e);
            goto out;
        }
        if (o == NULL && (o = off_add(db, tenant, consumer)) == NULL) {
            rc = wh_seterr(err, errlen, "out of memory");
            goto out;
        }
        o->lsn = cur_lsn = lsn;
        o->seq = cur_seq = seq;
    }
out:
    pthread_mutex_unlock(&db->off_mu);
    if (rc == WH_OK) {
        if (out_lsn)
            *out_lsn = cur_lsn;
        if (out_seq)
            *out_seq = cur_seq;
    }
    return rc;
}

int st_db_get_offset(st_db *db, const char *tenant, const char *consumer, uint64_t *lsn,
                     uint32_t *seq, char *err, size_t errlen)
{
    *lsn = 0;
    *seq = 0;
    if (st_db_check_name(tenant, "tenant", err, errlen) != WH_OK ||
        st_db_check_name(consumer, "consumer", err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&db->off_mu);
    const st_off *o = off_find(db, tenant, consumer);
    if (o) {
        *lsn = o->lsn;
        *seq = o->seq;
    }
    pthread_mutex_unlock(&db->off_mu);
    return WH_OK;
}

/* ---- dump / compact ---- */

int st_db_dump(st_db *db, FILE *out, char *err, size_t errlen)
{
    static const char lo[] = "E", hi[] = "F";
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 1);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(db->rdb, ro);
    for (rocksdb_iter_seek(it, lo, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        char tenant[ST_NAME_MAX + 1], l[WH_LSN_STRLEN];
        uint64_t lsn;
        uint32_t seq;
        if (parse_event_key(k, kl, tenant, &lsn, &seq) != WH_OK)
            continue;
        wh_lsn_format(lsn, l, sizeof(l));
        fprintf(out, "%s %s %" PRIu32 "\n", tenant, l, seq);
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (e)
        return rerr(err, errlen, "dump", e);
    if (fflush(out) != 0 || ferror(out))
        return wh_seterr(err, errlen, "dump: write error");
    return WH_OK;
}

int st_db_compact(st_db *db, char *err, size_t errlen)
{
    if (db->read_only)
        return wh_seterr(err, errlen, "store opened read-only");
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    char *e = NULL;
    rocksdb_flush(db->rdb, fo, &e);
    rocksdb_flushoptions_destroy(fo);
    if (e)
        return rerr(err, errlen, "flush", e);
    rocksdb_compact_range(db->rdb, NULL, 0, NULL, 0);
    return WH_OK;
}

uint64_t st_db_gc_dropped(st_db *db)
{
    return atomic_load(&db->gc_dropped);
}
