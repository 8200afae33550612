/* st_db (st_db.h): the schema registry's keys in the tenant's meta CF and their
 * pruning (st_schema.c is the request side). */
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
int st_dbi_schema_batch_put(st_db *db, rocksdb_writebatch_t *wb, st_tenant *t, const st_schema *sv,
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
            return st_dbi_rerr(err, errlen, "get schema version", e);
        uint8_t head[12];
        wh_put_be64(head, sv[i].first_lsn);
        wh_put_be32(head + 8, sv[i].first_xid);
        if (old != NULL) {
            /* a tombstone started again: its description back, its first
             * use kept (the ingestor knows it by that) */
            int back = vl == 12 && (sv[i].started_lsn != 0 || sv[i].started_xid != 0);
            /* a streamed transaction's first use taken over (it goes when
             * that transaction is dropped whole: st_db_schema_drop_xid) */
            int moves = sv[i].first_use_moves && vl > 12 && sv[i].first_lsn != 0 &&
                        wh_get_be64((const uint8_t *)old) == 0;
            if (back)
                memcpy(head, old, 12);
            rocksdb_free(old);
            if (!back && !moves)
                continue;
            if (back && sv[i].started_lsn == 0) {
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
    st_dbi_write(db, db->wo, wb, "schema write", &e);
    st_dbi_note_write(db, e);
    return e ? st_dbi_rerr(err, errlen, what, e) : WH_OK;
}

int st_db_schema_put(st_db *db, const char *tenant, const st_schema *sv, size_t n, char *err,
                     size_t errlen)
{
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    if (n == 0)
        return WH_OK;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, ST_DBI_CREATE, &t, err, errlen) != WH_OK)
        return WH_ERR;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&db->schema_mu);
    int rc = st_dbi_schema_batch_put(db, wb, t, sv, n, err, errlen);
    if (rc == WH_OK)
        rc = schema_write(db, wb, "write schema versions", err, errlen);
    pthread_mutex_unlock(&db->schema_mu);
    rocksdb_writebatch_destroy(wb);
    st_dbi_ten_done(t);
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
    int rc = st_dbi_iter_end(it, WH_OK, "reading the schema registry", err, errlen);
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
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = schema_scan(db, t, fn, arg, err, errlen);
    st_dbi_ten_done(t);
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
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
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
    st_dbi_ten_done(t);
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
    if (st_dbi_writable(db, tenant, err, errlen) != WH_OK)
        return WH_ERR;
    st_tenant *t;
    if (st_dbi_ten_open(db, tenant, 0, &t, err, errlen) != WH_OK)
        return WH_ERR;
    if (t == NULL)
        return WH_OK;
    int rc = schema_prune_t(db, t, wm_lsn, n, err, errlen);
    st_dbi_ten_done(t);
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
void st_dbi_schema_maintain(st_db *db, st_tenant *t)
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
