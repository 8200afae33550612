/* st_db (st_db.h): a target's dispatcher lease, dead letters and replay queue. */
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

/* ---- dead-letter queue ---- */

/* 'Q'/'R' tenant \0 consumer \0: the prefix of a consumer's queue. */
static size_t key_queue_prefix(char *k, char kind, const char *tenant, const char *consumer)
{
    size_t n = st_dbi_key_prefix(k, kind, tenant);
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
    size_t n = st_dbi_key_prefix(k, 'L', tenant);
    size_t cl = strlen(consumer);
    memcpy(k + n, consumer, cl);
    return n + cl;
}

/* Lease expiries and replicas last seen: monotonic, so a step of the
 * store's clock neither frees every lease at once nor keeps a dead owner's
 * (only in memory: load_lease starts each stored lease's TTL again). */
static int64_t lease_now_ms(void)
{
    return (int64_t)wh_now_ms();
}

/* Caller holds o->wmu. */
int st_dbi_lease_check(st_off *o, uint64_t lease_epoch, char *err, size_t errlen)
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
    int live = o->lease_owner[0] != '\0' && o->lease_expiry_ms > lease_now_ms();
    if (lease_epoch == 0 && !live)
        return WH_OK;
    return wh_seterr(err, errlen,
                     "lease epoch %" PRIu64 " is not the target's lease epoch %" PRIu64
                     " (held by '%s'); the target moved to another dispatcher",
                     lease_epoch, o->lease_epoch, o->lease_owner[0] ? o->lease_owner : "nobody");
}

/* Fills *out from a lease's epoch, holder and expiry. */
static void lease_fill(uint64_t epoch, const char *holder, int64_t expiry_ms, const char *owner,
                       st_lease *out)
{
    memset(out, 0, sizeof(*out));
    int64_t left = expiry_ms - lease_now_ms();
    int live = holder[0] != '\0' && left > 0;
    out->epoch = epoch;
    wh_strlcpy(out->owner, live ? holder : "", sizeof(out->owner));
    out->expires_in_ms = live ? left : 0;
    out->granted = live && owner != NULL && strcmp(holder, owner) == 0;
}

/* Fills *out from the entry. Caller holds o->wmu. */
static void lease_out(st_off *o, const char *owner, st_lease *out)
{
    lease_fill(o->lease_epoch, o->lease_owner, o->lease_expiry_ms, owner, out);
}

/* The lease as it is in the entry now is committed (stored, or nothing of
 * it is to be stored): LeaseList reports it from now on. Caller holds
 * o->wmu, or loads the stored leases (st_db_open: nothing else runs). */
static void lease_commit(st_off *o)
{
    pthread_mutex_lock(&o->vmu);
    wh_strlcpy(o->lease_c_owner, o->lease_owner, sizeof(o->lease_c_owner));
    o->lease_c_epoch = o->lease_epoch;
    o->lease_c_expiry_ms = o->lease_expiry_ms;
    pthread_mutex_unlock(&o->vmu);
}

/* The stored lease's optional tail (st_db.h): NUL, flags, request timeout. */
#define LEASE_TAIL 6
#define LEASE_F_ABANDONED 1
#define LEASE_F_TAKEOVER 2 /* held: taken over, not renewed yet (lease_takeover_ms) */

static int lease_persist(st_db *db, st_off *o, char *err, size_t errlen)
{
    char k[ST_KEY_MAX];
    size_t kl = key_lease(k, o->tenant, o->consumer);
    uint8_t v[12 + ST_OWNER_MAX + LEASE_TAIL];
    size_t ol = strlen(o->lease_owner);
    wh_put_be64(v, o->lease_epoch);
    wh_put_be32(v + 8, o->lease_ttl_ms);
    memcpy(v + 12, o->lease_owner, ol);
    size_t vl = 12 + ol;
    uint8_t flags = o->lease_owner[0] == '\0' && o->lease_abandoned_ms != 0 ? LEASE_F_ABANDONED : 0;
    if (o->lease_owner[0] != '\0' && o->lease_takeover_ms != 0)
        flags |= LEASE_F_TAKEOVER;
    if (flags != 0 || o->lease_req_timeout_ms != 0) {
        /* written only when there is something to say: a value without
         * it is the format before it, which an older store reads too */
        v[vl] = 0;
        v[vl + 1] = flags;
        wh_put_be32(v + vl + 2, o->lease_req_timeout_ms);
        vl += LEASE_TAIL;
    }
    char *e = NULL;
    int slot = st_dbi_io_begin(db, "lease write");
    rocksdb_put_cf(db->rdb, db->wo, o->ten->meta, k, kl, (const char *)v, vl, &e);
    st_dbi_io_end(db, slot);
    st_dbi_note_write(db, e);
    if (e)
        return st_dbi_rerr(err, errlen, "lease write", e);
    o->lease_unstored = 0;
    return WH_OK;
}

int st_db_check_owner(const char *owner, char *err, size_t errlen)
{
    if (owner == NULL || owner[0] == '\0')
        return wh_seterr(err, errlen, "owner: missing or empty");
    size_t n = strlen(owner);
    if (n > ST_OWNER_MAX)
        return wh_seterr(err, errlen, "owner: longer than %d bytes", ST_OWNER_MAX);
    if (!wh_str_visible(owner))
        return wh_seterr(err, errlen, "owner: only printable ASCII without spaces");
    return WH_OK;
}

static int lease_args(st_db *db, const char *tenant, const char *consumer, const char *owner,
                      uint32_t ttl_ms, int need_ttl, char *err, size_t errlen)
{
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK ||
        st_db_check_owner(owner, err, errlen) != WH_OK)
        return WH_ERR;
    if (need_ttl && (ttl_ms < 100 || ttl_ms > 600000))
        return wh_seterr(err, errlen, "ttl_ms: %u out of range (100..600000)", ttl_ms);
    return WH_OK;
}

/* A holder's request timeout: kept as the longest told, and what the next
 * holder waits for, so a huge one would stop the target for weeks. */
static int lease_req_timeout_check(uint32_t req_timeout_ms, char *err, size_t errlen)
{
    if (req_timeout_ms > ST_LEASE_REQ_TIMEOUT_MAX)
        return wh_seterr(err, errlen, "request_timeout_ms: %" PRIu32 " out of range (0..%d)",
                         req_timeout_ms, ST_LEASE_REQ_TIMEOUT_MAX);
    return WH_OK;
}

int st_db_lease_acquire(st_db *db, const char *tenant, const char *consumer, const char *owner,
                        uint32_t ttl_ms, uint32_t req_timeout_ms, st_lease *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_args(db, tenant, consumer, owner, ttl_ms, 1, err, errlen) != WH_OK ||
        lease_req_timeout_check(req_timeout_ms, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    pthread_mutex_lock(&o->wmu);
    int64_t now = lease_now_ms();
    int mine = strcmp(o->lease_owner, owner) == 0;
    int free_ = o->lease_owner[0] == '\0' || o->lease_expiry_ms <= now;
    /* expired, not released: its holder (this owner too, after its lease
     * lapsed) may still have a request at the target */
    int lapsed = o->lease_owner[0] != '\0' && o->lease_expiry_ms <= now;
    int64_t expired_ago = now - o->lease_expiry_ms;
    if (o->lease_owner[0] == '\0' && o->lease_abandoned_ms != 0) {
        lapsed = 1;
        expired_ago = now - o->lease_abandoned_ms;
    }
    uint32_t prev_rt = o->lease_req_timeout_ms;
    /* a takeover granted to this owner that it has not renewed since: the
     * reply that told it may have been lost (the call timed out, or the
     * store restarted after the write), so this grant tells it again, or
     * the holder would post at once while requests of the holder before
     * may still be at the target */
    if (mine && !lapsed && o->lease_takeover_ms != 0) {
        lapsed = 1;
        expired_ago = now - o->lease_takeover_ms;
    }
    if (mine || free_) {
        /* the longest request timeout of the holders whose requests may
         * still be at the target: only a lease left with nothing there
         * (released clean, or never held) starts again from this one's */
        uint32_t rt = req_timeout_ms;
        if ((mine || lapsed) && prev_rt > rt)
            rt = prev_rt;
        /* when what this grant takes over lapsed, until the holder renews */
        int64_t takeover = 0;
        if (lapsed) {
            takeover = now - expired_ago;
            if (takeover <= 0)
                takeover = 1;
        }
        if (!mine || o->lease_epoch == 0 || o->lease_ttl_ms != ttl_ms || rt != prev_rt ||
            o->lease_unstored || (takeover != 0) != (o->lease_takeover_ms != 0)) {
            /* a new holder: a new epoch, stored before it is granted */
            char prev_owner[ST_OWNER_MAX + 1];
            uint64_t prev_epoch = o->lease_epoch;
            uint32_t prev_ttl = o->lease_ttl_ms;
            int64_t prev_abandoned = o->lease_abandoned_ms;
            int64_t prev_takeover = o->lease_takeover_ms;
            wh_strlcpy(prev_owner, o->lease_owner, sizeof(prev_owner));
            if (!mine || o->lease_epoch == 0)
                o->lease_epoch++;
            wh_strlcpy(o->lease_owner, owner, sizeof(o->lease_owner));
            o->lease_ttl_ms = ttl_ms;
            o->lease_req_timeout_ms = rt;
            o->lease_abandoned_ms = 0; /* held again: told to this grant below */
            o->lease_takeover_ms = takeover;
            rc = lease_persist(db, o, err, errlen);
            if (rc != WH_OK) {
                wh_strlcpy(o->lease_owner, prev_owner, sizeof(o->lease_owner));
                o->lease_epoch = prev_epoch;
                o->lease_ttl_ms = prev_ttl;
                o->lease_req_timeout_ms = prev_rt;
                o->lease_abandoned_ms = prev_abandoned;
                o->lease_takeover_ms = prev_takeover;
            }
        } else {
            o->lease_takeover_ms = takeover;
        }
        if (rc == WH_OK) {
            o->lease_expiry_ms = now + ttl_ms;
            lease_commit(o);
        }
    }
    lease_out(o, owner, out);
    if (rc == WH_OK && out->granted && lapsed) {
        out->taken_over = 1;
        out->expired_ms_ago = expired_ago;
        out->request_timeout_ms = prev_rt;
        o->lease_abandoned_ms = 0;
    }
    int granted = rc == WH_OK && out->granted;
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
    if (granted && !db->read_only) {
        /* A consumer seen for the first time is registered now, at its
         * position ((0,0)), as its holder's first Read would: that Read may
         * come only after a takeover wait (a request timeout), and until a
         * consumer is registered the GC watermark passes it, so the events
         * the other consumers passed meanwhile were dropped before this one
         * read them. A failed write keeps the lease (the first Read
         * registers it then). */
        st_offset off;
        char rerr[WH_ERRLEN];
        if (st_db_register(db, tenant, consumer, &off, rerr, sizeof(rerr)) != WH_OK)
            wh_warn("lease of %s/%s: cannot register the consumer: %s", tenant, consumer, rerr);
    }
    return rc;
}

int st_db_lease_renew(st_db *db, const char *tenant, const char *consumer, const char *owner,
                      uint64_t epoch, uint32_t ttl_ms, uint32_t req_timeout_ms, st_lease *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_args(db, tenant, consumer, owner, ttl_ms, 1, err, errlen) != WH_OK ||
        lease_req_timeout_check(req_timeout_ms, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    /* the tenant's column families, in case the lease is to be stored
     * (NULL when it has none: it is kept in memory only) */
    st_tenant *t = NULL;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    /* still ours even after expiry, as long as nobody else took it */
    if (epoch != 0 && epoch == o->lease_epoch && strcmp(o->lease_owner, owner) == 0) {
        o->lease_expiry_ms = lease_now_ms() + ttl_ms;
        /* the holder renews with the epoch of its grant: it got the reply
         * that told it of a takeover, which is not told again */
        int acked = o->lease_takeover_ms != 0;
        o->lease_takeover_ms = 0;
        if (acked)
            wh_info("lease of %s/%s: renewed by %s, which took it over: its Acquires are no "
                    "longer told the takeover",
                    tenant, consumer, owner);
        if (req_timeout_ms > o->lease_req_timeout_ms || o->lease_unstored || acked) {
            /* a longer timeout (rare: a configuration change) is stored, so
             * a takeover after a restart still waits for it, and so is a
             * lease kept across its tenant's removal once the tenant is
             * back (lease_unstored), and the first renewal after a takeover
             * (no longer told after a restart); a failed write keeps it in
             * memory and the renewal stands (the store shows the write
             * error; a restart then tells the takeover again: a wait too
             * many, never one too few) */
            if (req_timeout_ms > o->lease_req_timeout_ms)
                o->lease_req_timeout_ms = req_timeout_ms;
            char e2[WH_ERRLEN];
            if (t != NULL && lease_persist(db, o, e2, sizeof(e2)) != WH_OK)
                wh_warn("lease %s/%s: %s", tenant, consumer, e2);
        }
        /* the renewal stands with or without that write (its holder and
         * epoch are the ones stored; the expiry is never stored) */
        lease_commit(o);
    }
    lease_out(o, owner, out);
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
    return WH_OK;
}

int st_db_lease_release(st_db *db, const char *tenant, const char *consumer, const char *owner,
                        uint64_t epoch, int abandoned, st_lease *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (lease_args(db, tenant, consumer, owner, 0, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    if (o == NULL)
        return WH_OK;
    int rc = WH_OK;
    /* a removed tenant's column families are gone, its leases kept in
     * memory (st_db_tenant_drop): released there only, and not brought
     * back (a lease is only held with them present: acquire made them) */
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    pthread_mutex_lock(&o->wmu);
    if (epoch == o->lease_epoch && strcmp(o->lease_owner, owner) == 0) {
        o->lease_owner[0] = '\0';
        o->lease_expiry_ms = 0;
        o->lease_abandoned_ms = abandoned ? lease_now_ms() : 0;
        o->lease_takeover_ms = 0;
        if (t != NULL)
            rc = lease_persist(db, o, err, errlen); /* the epoch stays: fencing */
        /* a release whose write failed is not reported: the stored lease
         * is still its holder's (LeaseList shows it until its expiry) */
        if (rc == WH_OK)
            lease_commit(o);
    }
    lease_out(o, owner, out);
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
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
        /* the committed lease, under vmu: never waits for a write of the
         * entry in progress (wmu is held across its sync), nor reports
         * what such a write has not stored yet */
        pthread_mutex_lock(&v[i]->vmu);
        uint64_t e = v[i]->lease_c_epoch;
        lease_fill(e, v[i]->lease_c_owner, v[i]->lease_c_expiry_ms, NULL, &l);
        pthread_mutex_unlock(&v[i]->vmu);
        if (e != 0 && fn(arg, v[i]->tenant, v[i]->consumer, &l) != 0)
            rc = WH_ERR;
    }
    free(v);
    return WH_OK;
}

int st_db_owners_live(st_db *db, const char *owner, const char *control, uint32_t ttl_ms,
                      void (*fn)(void *arg, const char *owner, const char *control), void *arg)
{
    int64_t now = lease_now_ms();
    pthread_mutex_lock(&db->owners_mu);
    size_t j = 0;
    int found = 0;
    for (size_t i = 0; i < db->nowners; i++) {
        if (owner && strcmp(db->owners[i].name, owner) == 0) {
            db->owners[i].seen_ms = now;
            db->owners[i].ttl_ms = ttl_ms;
            if (control)
                wh_strlcpy(db->owners[i].control, control, sizeof(db->owners[i].control));
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
        wh_strlcpy(db->owners[db->nowners].control, control ? control : "",
                   sizeof(db->owners[0].control));
        db->owners[db->nowners].seen_ms = now;
        db->owners[db->nowners].ttl_ms = ttl_ms;
        db->nowners++;
    }
    for (size_t i = 0; fn && i < db->nowners; i++)
        fn(arg, db->owners[i].name, db->owners[i].control);
    pthread_mutex_unlock(&db->owners_mu);
    return WH_OK;
}

static int load_lease(st_db *db, st_tenant *t, const char *k, size_t kl, const char *v, size_t vl,
                      char *err, size_t errlen)
{
    WH_UNUSED(t);
    char tenant[ST_NAME_MAX + 1], consumer[ST_NAME_MAX + 1];
    if (st_dbi_split_consumer_key(k, kl, tenant, consumer) != WH_OK)
        return WH_OK;
    if (vl < 12) {
        wh_warn("lease of %s/%s: stored value of %zu bytes (at least 12: epoch, ttl_ms) is "
                "ignored; the lease starts again from epoch 0",
                tenant, consumer, vl);
        return WH_OK;
    }
    /* the owner ends at the value's end, or at the NUL of the tail */
    const char *nul = memchr(v + 12, '\0', vl - 12);
    size_t ol = nul ? (size_t)(nul - (v + 12)) : vl - 12;
    /* a value this store cannot have written (corrupt, or by another
     * program) loads without its unreadable parts: an owner nobody can
     * renew as is loaded as released with requests abandoned, so the next
     * holder waits (the epoch is kept for fencing); a cut tail is read as
     * no timeout told, a released lease's as abandoned, and a held one's
     * as a takeover its holder has not renewed yet (the flag that said so
     * may be what was cut) */
    int bad_owner = 0, bad_tail = 0;
    if (ol > ST_OWNER_MAX) {
        wh_warn("lease of %s/%s: stored owner of %zu bytes (at most %d); loaded as released "
                "with requests abandoned",
                tenant, consumer, ol, ST_OWNER_MAX);
        bad_owner = 1;
    } else if (nul && vl - 12 - ol < LEASE_TAIL) {
        wh_warn("lease of %s/%s: stored value cut in its tail (%zu bytes after the owner, %d "
                "expected); read as no request timeout told, and as a takeover not renewed "
                "yet when held (released with requests abandoned when free)",
                tenant, consumer, vl - 12 - ol, LEASE_TAIL);
        bad_tail = 1;
    }
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    if (o == NULL)
        return WH_ERR;
    o->lease_epoch = wh_get_be64((const uint8_t *)v);
    o->lease_ttl_ms = wh_get_be32((const uint8_t *)v + 8);
    o->lease_owner[0] = '\0';
    if (!bad_owner) {
        memcpy(o->lease_owner, v + 12, ol);
        o->lease_owner[ol] = '\0';
        if (ol > 0 && !wh_str_visible(o->lease_owner)) {
            wh_warn("lease of %s/%s: stored owner is not printable ASCII; loaded as released "
                    "with requests abandoned",
                    tenant, consumer);
            o->lease_owner[0] = '\0';
            bad_owner = 1;
        }
    }
    /* each flag counts only where it can: abandoned when free, the
     * takeover when held */
    uint8_t flags = bad_owner || bad_tail ? LEASE_F_ABANDONED | LEASE_F_TAKEOVER : 0;
    o->lease_req_timeout_ms = 0;
    if (!bad_owner && !bad_tail && nul) {
        flags = (uint8_t)nul[1];
        o->lease_req_timeout_ms = wh_get_be32((const uint8_t *)nul + 2);
        if (o->lease_req_timeout_ms > ST_LEASE_REQ_TIMEOUT_MAX) {
            wh_warn("lease of %s/%s: stored request timeout %" PRIu32 " ms is over %d; "
                    "read as %d",
                    tenant, consumer, o->lease_req_timeout_ms, ST_LEASE_REQ_TIMEOUT_MAX,
                    ST_LEASE_REQ_TIMEOUT_MAX);
            o->lease_req_timeout_ms = ST_LEASE_REQ_TIMEOUT_MAX;
        }
    }
    /* live for its TTL again: the owner renews before anyone takes it */
    o->lease_expiry_ms = o->lease_owner[0] ? lease_now_ms() + o->lease_ttl_ms : 0;
    /* released with requests abandoned: the monotonic time of the release
     * is gone with the old process, so it counts as released now (the next
     * holder waits the whole timeout) */
    o->lease_abandoned_ms = 0;
    o->lease_takeover_ms = 0;
    if (o->lease_owner[0] == '\0' && (flags & LEASE_F_ABANDONED)) {
        int64_t now = lease_now_ms();
        o->lease_abandoned_ms = now > 0 ? now : 1;
    }
    /* taken over and not renewed by its holder yet: its next Acquire is
     * told the takeover again, counted from the load as above */
    if (o->lease_owner[0] != '\0' && (flags & LEASE_F_TAKEOVER)) {
        int64_t now = lease_now_ms();
        o->lease_takeover_ms = now > 0 ? now : 1;
    }
    lease_commit(o);
    return WH_OK;
}

int st_dbi_load_leases(st_db *db, char *err, size_t errlen)
{
    return st_dbi_meta_scan(db, 'L', load_lease, err, errlen);
}

/* Caller holds o->wmu: no replay queued entries since gen was taken (gen 0:
 * an ack that names none, all up to its position). */
static int replay_gen_same(st_off *o, uint64_t gen)
{
    return gen == 0 || gen == atomic_load(&o->replay_gen);
}

uint64_t st_db_replay_gen(st_db *db, const char *tenant, const char *consumer)
{
    st_off *o = st_dbi_off_find(db, tenant, consumer);
    return o != NULL ? atomic_load(&o->replay_gen) : 0;
}

int st_db_dlq_write(st_db *db, const char *tenant, const char *consumer, const st_dlq_item *items,
                    size_t n, int has_pos, uint64_t lsn, uint32_t seq, uint64_t epoch,
                    uint64_t lease_epoch, int has_ack, uint64_t ack_lsn, uint32_t ack_seq,
                    uint64_t ack_gen, st_offset *out, char *err, size_t errlen)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    for (size_t i = 0; has_pos && i < n; i++)
        if (wh_pos_cmp(items[i].lsn, items[i].seq, lsn, seq) > 0)
            return wh_seterr(err, errlen, "records[%zu]: position after pos", i);
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&o->wmu);
    off_val cur = st_dbi_off_read(o);
    off_val nv = cur;
    if (cur.state == ST_OFF_DROPPED) {
        wh_seterr(err, errlen, "consumer '%s' of tenant '%s' was dropped", consumer, tenant);
        rc = ST_DB_STALE;
    } else if (st_dbi_lease_check(o, lease_epoch, err, errlen) != WH_OK) {
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
            /* [lo, hi] inclusive: delete the range then the last key; the
             * last key alone when a replay queued entries since the read
             * (st_db_replay_ack) */
            if (replay_gen_same(o, ack_gen))
                rocksdb_writebatch_delete_range_cf(wb, t->meta, lo, ll, hi, hl);
            rocksdb_writebatch_delete_cf(wb, t->meta, hi, hl);
        }
        if (has_pos && (cur.state == ST_OFF_NEW || wh_pos_cmp(lsn, seq, cur.lsn, cur.seq) > 0)) {
            nv = (off_val){lsn, seq, cur.epoch, ST_OFF_LIVE};
            size_t kl = st_dbi_key_offset(k, tenant, consumer);
            uint8_t b[ST_OFF_VAL_LEN + 1];
            size_t bl = st_dbi_off_encode(b, nv, o->needs_snapshot);
            rocksdb_writebatch_put_cf(wb, t->meta, k, kl, (const char *)b, bl);
        }
        if (rocksdb_writebatch_count(wb) > 0) {
            char *e = NULL;
            st_dbi_write(db, db->wo, wb, "dead-letter write", &e);
            st_dbi_note_write(db, e);
            if (e)
                rc = st_dbi_rerr(err, errlen, "dead-letter write", e);
        }
        if (rc == WH_OK)
            st_dbi_off_write(o, nv);
        else
            nv = cur;
    }
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
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
    if (st_dbi_check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    if (kind != 'Q' && kind != 'R')
        return wh_seterr(err, errlen, "queue: unknown kind");
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
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
    int rc = st_dbi_iter_done(it, ro, "dead-letter list", err, errlen);
    st_dbi_ten_done(t);
    return rc;
}

int st_db_dlq_get(st_db *db, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                  st_dlq_fn fn, void *arg, int *found, char *err, size_t errlen)
{
    *found = 0;
    if (st_dbi_check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char k[ST_KEY_MAX];
    size_t kl = key_queue(k, 'Q', tenant, consumer, lsn, seq);
    size_t vl = 0;
    char *e = NULL;
    char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
    if (e) {
        st_dbi_ten_done(t);
        return st_dbi_rerr(err, errlen, "dead-letter read", e);
    }
    if (v != NULL) {
        *found = 1;
        fn(arg, lsn, seq, v, vl);
        rocksdb_free(v);
    }
    st_dbi_ten_done(t);
    return WH_OK;
}

int st_db_dlq_count(st_db *db, const char *tenant, const char *consumer, char kind, uint64_t cap,
                    uint64_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (st_dbi_check_names(db, tenant, consumer, 0, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    char upper[ST_KEY_MAX];
    size_t ul;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = queue_iter(db, t, kind, tenant, consumer, 0, 0, 0, &ro, upper, &ul);
    for (; rocksdb_iter_valid(it) && *n < cap; rocksdb_iter_next(it))
        (*n)++;
    int rc = st_dbi_iter_done(it, ro, "dead-letter count", err, errlen);
    st_dbi_ten_done(t);
    return rc;
}

/* Moves (to_replay) or deletes the dead letters selected; caller-held lock
 * is taken here. */
static int queue_edit(st_db *db, const char *tenant, const char *consumer, int all,
                      const uint64_t *lsns, const uint32_t *seqs, size_t n, int to_replay,
                      uint32_t *count, char *err, size_t errlen)
{
    *count = 0;
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
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
        rc = st_dbi_iter_done(it, ro, "dead-letter scan", err, errlen);
    } else {
        for (size_t i = 0; i < n && rc == WH_OK; i++) {
            size_t kl = key_queue(k, 'Q', tenant, consumer, lsns[i], seqs[i]);
            size_t vl = 0;
            char *e = NULL;
            char *v = rocksdb_get_cf(db->rdb, db->ro, t->meta, k, kl, &vl, &e);
            if (e) {
                rc = st_dbi_rerr(err, errlen, "dead-letter read", e);
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
        st_dbi_write(db, db->wo, wb, "dead-letter write", &e);
        st_dbi_note_write(db, e);
        if (e)
            rc = st_dbi_rerr(err, errlen, "dead-letter write", e);
    }
    if (rc != WH_OK)
        *count = 0;
    else if (to_replay && *count > 0)
        atomic_fetch_add(&o->replay_gen, 1); /* after the write: st_db_replay_gen */
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
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
                     uint32_t seq, uint64_t lease_epoch, uint64_t gen, uint32_t *deleted, char *err,
                     size_t errlen)
{
    *deleted = 0;
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_off *o = st_dbi_off_get(db, tenant, consumer, err, errlen);
    st_tenant *t;
    if (o == NULL || st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&o->wmu);
    if (st_dbi_lease_check(o, lease_epoch, err, errlen) != WH_OK) {
        rc = ST_DB_STALE;
    } else if (!replay_gen_same(o, gen)) {
        /* a replay queued entries since the read: the ones below (lsn,
         * seq) may not have been in it */
        char k[ST_KEY_MAX];
        size_t kl = key_queue(k, 'R', tenant, consumer, lsn, seq);
        char *e = NULL;
        int slot = st_dbi_io_begin(db, "replay ack");
        rocksdb_delete_cf(db->rdb, db->wo, t->meta, k, kl, &e);
        st_dbi_io_end(db, slot);
        st_dbi_note_write(db, e);
        if (e)
            rc = st_dbi_rerr(err, errlen, "replay ack", e);
        else
            *deleted = 1;
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
        rc = st_dbi_iter_done(it, ro, "replay scan", err, errlen);
        if (rc == WH_OK && rocksdb_writebatch_count(wb) > 0) {
            char *e = NULL;
            st_dbi_write(db, db->wo, wb, "replay ack", &e);
            st_dbi_note_write(db, e);
            if (e)
                rc = st_dbi_rerr(err, errlen, "replay ack", e);
        }
    }
    pthread_mutex_unlock(&o->wmu);
    st_dbi_ten_done(t);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int st_db_dlq_drop(st_db *db, const char *tenant, const char *consumer, char *err, size_t errlen)
{
    if (st_dbi_check_names(db, tenant, consumer, 1, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
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
    /* the lease is left to its holder, which releases it once the target
     * is no longer in its list and a request it let end there is over
     * (dsp_lease.h): freed here, another dispatcher could take it at once
     * for the target created again, and post while that request is still
     * at the receiver */
    char *e = NULL;
    st_dbi_write(db, db->wo, wb, "dead-letter drop", &e);
    st_dbi_note_write(db, e);
    st_dbi_ten_done(t);
    rocksdb_writebatch_destroy(wb);
    if (e)
        return st_dbi_rerr(err, errlen, "dead-letter drop", e);
    return WH_OK;
}
