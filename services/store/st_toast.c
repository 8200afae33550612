/* st_toast: the store-backed TOAST value cache (see st_toast.h). */
#include "st_toast.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_lsn.h"
#include "wh_util.h"

#define KEY_ENTRY 'E'
#define KEY_QUEUE 'Q'
#define KEY_TABLE 'G'
#define KEY_META 'M'
#define ENTRY_HEAD 32 /* epoch gen lsn wseq */

typedef struct table {
    uint32_t rel;
    uint64_t gen, fp;
    char **cols;
    size_t ncols;
    int dirty; /* its G record is to be written */
} table;

/* What this WriteBatch did to an E key (entries put or deleted in it). */
typedef struct ov {
    char *ekey;
    size_t eklen;
    int present;
    uint64_t wseq, size;
} ov;

struct st_toast {
    pthread_mutex_t mu; /* everything below */
    int loaded;
    uint64_t bytes, entries, wseq, evictions, epoch;
    uint64_t sender, serial; /* the last applied request's (late copies are not) */
    table *tabs;
    size_t ntabs, captabs;
    ov *ov;
    size_t nov, capov;
    int in_batch;
    uint64_t evict_from; /* Q keys below it are gone (or of this batch) */
    _Atomic uint64_t puts, lookups, found;
};

st_toast *st_toast_new(void)
{
    st_toast *t = calloc(1, sizeof(*t));
    if (t != NULL)
        pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void tabs_clear(st_toast *t)
{
    for (size_t i = 0; i < t->ntabs; i++) {
        for (size_t c = 0; c < t->tabs[i].ncols; c++)
            free(t->tabs[i].cols[c]);
        free(t->tabs[i].cols);
    }
    t->ntabs = 0;
}

static void ov_clear(st_toast *t)
{
    for (size_t i = 0; i < t->nov; i++)
        free(t->ov[i].ekey);
    t->nov = 0;
}

static void unload(st_toast *t)
{
    tabs_clear(t);
    ov_clear(t);
    t->loaded = 0;
    t->bytes = t->entries = t->wseq = t->evictions = t->epoch = 0;
    t->sender = t->serial = 0;
    t->evict_from = 0;
}

void st_toast_free(st_toast *t)
{
    if (t == NULL)
        return;
    unload(t);
    free(t->tabs);
    free(t->ov);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void st_toast_reset(st_toast *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    unload(t);
    pthread_mutex_unlock(&t->mu);
}

static table *tab_find(st_toast *t, uint32_t rel)
{
    for (size_t i = 0; i < t->ntabs; i++)
        if (t->tabs[i].rel == rel)
            return &t->tabs[i];
    return NULL;
}

static table *tab_get(st_toast *t, uint32_t rel, uint64_t fp)
{
    table *tb = tab_find(t, rel);
    if (tb != NULL)
        return tb;
    if (wh_grow(&t->tabs, t->ntabs + 1, &t->captabs, sizeof(*t->tabs), 16) != WH_OK)
        return NULL;
    tb = &t->tabs[t->ntabs++];
    memset(tb, 0, sizeof(*tb));
    tb->rel = rel;
    tb->gen = 1;
    tb->fp = fp;
    tb->dirty = 1;
    return tb;
}

static int tab_has_col(const table *tb, const char *col, size_t collen)
{
    for (size_t i = 0; i < tb->ncols; i++)
        if (strlen(tb->cols[i]) == collen && memcmp(tb->cols[i], col, collen) == 0)
            return 1;
    return 0;
}

static int tab_add_col(table *tb, const char *col, size_t collen)
{
    if (tab_has_col(tb, col, collen))
        return WH_OK;
    char **nc = realloc(tb->cols, (tb->ncols + 1) * sizeof(*nc));
    if (nc == NULL)
        return WH_ERR;
    tb->cols = nc;
    char *c = malloc(collen + 1);
    if (c == NULL)
        return WH_ERR;
    memcpy(c, col, collen);
    c[collen] = '\0';
    tb->cols[tb->ncols++] = c;
    tb->dirty = 1;
    return WH_OK;
}

static int load(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf, char *err,
                size_t errlen)
{
    if (t->loaded)
        return WH_OK;
    unload(t);
    if (cf == NULL) {
        t->loaded = 1;
        return WH_OK;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *e = NULL;
    size_t vl = 0;
    char mk = KEY_META;
    char *v = rocksdb_get_cf(rdb, ro, cf, &mk, 1, &vl, &e);
    if (e == NULL && v != NULL && vl >= 40) {
        t->bytes = wh_get_be64((uint8_t *)v);
        t->entries = wh_get_be64((uint8_t *)v + 8);
        t->wseq = wh_get_be64((uint8_t *)v + 16);
        t->evictions = wh_get_be64((uint8_t *)v + 24);
        t->epoch = wh_get_be64((uint8_t *)v + 32);
        if (vl >= 56) {
            t->sender = wh_get_be64((uint8_t *)v + 40);
            t->serial = wh_get_be64((uint8_t *)v + 48);
        }
    }
    rocksdb_free(v);
    if (e == NULL) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rdb, ro, cf);
        char gk = KEY_TABLE;
        for (rocksdb_iter_seek(it, &gk, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl, l;
            const char *k = rocksdb_iter_key(it, &kl);
            const uint8_t *p = (const uint8_t *)rocksdb_iter_value(it, &l);
            if (kl != 5 || k[0] != KEY_TABLE)
                break;
            if (l < 16)
                continue;
            table *tb = tab_get(t, wh_get_be32((const uint8_t *)k + 1), wh_get_be64(p + 8));
            if (tb == NULL)
                break;
            tb->gen = wh_get_be64(p);
            tb->dirty = 0;
            for (size_t o = 16; o + 2 <= l;) {
                size_t cl = (size_t)p[o] << 8 | p[o + 1];
                if (o + 2 + cl > l || tab_add_col(tb, (const char *)p + o + 2, cl) != WH_OK)
                    break;
                o += 2 + cl;
            }
            tb->dirty = 0;
        }
        rocksdb_iter_get_error(it, &e);
        rocksdb_iter_destroy(it);
    }
    rocksdb_readoptions_destroy(ro);
    if (e != NULL) {
        wh_seterr(err, errlen, "toast cache: %s", e);
        rocksdb_free(e);
        unload(t);
        return WH_ERR;
    }
    t->loaded = 1;
    return WH_OK;
}

static size_t ekey_make(wh_buf *b, uint32_t rel, const char *key, size_t keylen, const char *col,
                        size_t collen)
{
    wh_buf_reset(b);
    uint8_t h[9];
    h[0] = KEY_ENTRY;
    wh_put_be32(h + 1, rel);
    wh_put_be32(h + 5, (uint32_t)keylen);
    if (wh_buf_append(b, h, 9) || wh_buf_append(b, key, keylen) || wh_buf_append(b, col, collen))
        return 0;
    return b->len;
}

static ov *ov_find(st_toast *t, const char *ek, size_t eklen)
{
    for (size_t i = t->nov; i-- > 0;)
        if (t->ov[i].eklen == eklen && memcmp(t->ov[i].ekey, ek, eklen) == 0)
            return &t->ov[i];
    return NULL;
}

static int ov_set(st_toast *t, const char *ek, size_t eklen, int present, uint64_t wseq,
                  uint64_t size)
{
    ov *o = ov_find(t, ek, eklen);
    if (o == NULL) {
        if (wh_grow(&t->ov, t->nov + 1, &t->capov, sizeof(*t->ov), 64) != WH_OK)
            return WH_ERR;
        char *k = malloc(eklen);
        if (k == NULL)
            return WH_ERR;
        memcpy(k, ek, eklen);
        o = &t->ov[t->nov++];
        o->ekey = k;
        o->eklen = eklen;
    }
    o->present = present;
    o->wseq = wseq;
    o->size = size;
    return WH_OK;
}

/* The current entry at ek (this batch's writes first): 1 present (*wseq,
 * *size), 0 absent, -1 error. */
static int entry_cur(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                     const char *ek, size_t eklen, uint64_t *wseq, uint64_t *size, char *err,
                     size_t errlen)
{
    ov *o = ov_find(t, ek, eklen);
    if (o != NULL) {
        *wseq = o->wseq;
        *size = o->size;
        return o->present;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *e = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(rdb, ro, cf, ek, eklen, &vl, &e);
    rocksdb_readoptions_destroy(ro);
    if (e != NULL) {
        wh_seterr(err, errlen, "toast cache: %s", e);
        rocksdb_free(e);
        return -1;
    }
    if (v == NULL || vl < ENTRY_HEAD) {
        rocksdb_free(v);
        return 0;
    }
    *wseq = wh_get_be64((uint8_t *)v + 24);
    *size = 2 * eklen + (vl - ENTRY_HEAD) + ENTRY_HEAD + 17;
    rocksdb_free(v);
    return 1;
}

static void qkey(char k[9], uint64_t wseq)
{
    k[0] = KEY_QUEUE;
    wh_put_be64((uint8_t *)k + 1, wseq);
}

static int entry_del(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                     rocksdb_writebatch_t *wb, const char *ek, size_t eklen, char *err,
                     size_t errlen)
{
    uint64_t wseq, size;
    int r = entry_cur(t, rdb, cf, ek, eklen, &wseq, &size, err, errlen);
    if (r < 0)
        return WH_ERR;
    if (r == 0)
        return WH_OK;
    char q[9];
    qkey(q, wseq);
    rocksdb_writebatch_delete_cf(wb, cf, ek, eklen);
    rocksdb_writebatch_delete_cf(wb, cf, q, 9);
    t->bytes = t->bytes > size ? t->bytes - size : 0;
    if (t->entries > 0)
        t->entries--;
    return ov_set(t, ek, eklen, 0, 0, 0) == WH_OK ? WH_OK : wh_seterr(err, errlen, "out of memory");
}

static int entry_put(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                     rocksdb_writebatch_t *wb, const table *tb, const char *ek, size_t eklen,
                     const st_toast_op *op, char *err, size_t errlen)
{
    if (entry_del(t, rdb, cf, wb, ek, eklen, err, errlen) != WH_OK)
        return WH_ERR;
    uint64_t size = 2 * eklen + op->vallen + ENTRY_HEAD + 17;
    uint64_t wseq = ++t->wseq;
    uint8_t head[ENTRY_HEAD], qv[8];
    wh_put_be64(head, t->epoch);
    wh_put_be64(head + 8, tb->gen);
    wh_put_be64(head + 16, op->lsn);
    wh_put_be64(head + 24, wseq);
    const char *vp[2] = {(const char *)head, op->val ? op->val : ""};
    size_t vs[2] = {ENTRY_HEAD, op->vallen};
    const char *kp[1] = {ek};
    size_t ks[1] = {eklen};
    rocksdb_writebatch_putv_cf(wb, cf, 1, kp, ks, 2, vp, vs);
    char q[9];
    qkey(q, wseq);
    wh_put_be64(qv, size);
    const char *qp[2] = {(const char *)qv, ek};
    size_t qs[2] = {8, eklen};
    const char *qkp[1] = {q};
    size_t qks[1] = {9};
    rocksdb_writebatch_putv_cf(wb, cf, 1, qkp, qks, 2, qp, qs);
    t->bytes += size;
    t->entries++;
    atomic_fetch_add(&t->puts, 1);
    return ov_set(t, ek, eklen, 1, wseq, size) == WH_OK ? WH_OK
                                                        : wh_seterr(err, errlen, "out of memory");
}

static void tab_write(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf, table *tb)
{
    wh_buf v;
    wh_buf_init(&v, 0);
    uint8_t h[16];
    wh_put_be64(h, tb->gen);
    wh_put_be64(h + 8, tb->fp);
    int bad = wh_buf_append(&v, h, 16);
    for (size_t i = 0; i < tb->ncols && !bad; i++) {
        size_t cl = strlen(tb->cols[i]);
        uint8_t l[2] = {(uint8_t)(cl >> 8), (uint8_t)cl};
        bad = cl > 0xffff || wh_buf_append(&v, l, 2) || wh_buf_append(&v, tb->cols[i], cl);
    }
    char k[5];
    k[0] = KEY_TABLE;
    wh_put_be32((uint8_t *)k + 1, tb->rel);
    if (!bad)
        rocksdb_writebatch_put_cf(wb, cf, k, 5, v.data, v.len);
    tb->dirty = 0;
    wh_buf_free(&v);
}

/* Oldest first until bytes <= max: the Q keys in the CF (those of entries
 * this batch replaced or deleted are skipped), then this batch's own. */
static int evict(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                 rocksdb_writebatch_t *wb, uint64_t max, char *err, size_t errlen)
{
    if (t->bytes <= max)
        return WH_OK;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rdb, ro, cf);
    char q[9];
    qkey(q, t->evict_from);
    for (rocksdb_iter_seek(it, q, 9); rocksdb_iter_valid(it) && t->bytes > max;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != 9 || k[0] != KEY_QUEUE)
            break;
        uint64_t wseq = wh_get_be64((const uint8_t *)k + 1);
        t->evict_from = wseq + 1;
        if (vl < 8)
            continue;
        const char *ek = v + 8;
        size_t eklen = vl - 8;
        ov *o = ov_find(t, ek, eklen);
        if (o != NULL && (!o->present || o->wseq != wseq))
            continue; /* replaced or deleted in this batch */
        if (o != NULL && o->present && o->wseq == wseq)
            continue; /* not possible: this batch's are not in the CF */
        uint64_t size = wh_get_be64((const uint8_t *)v);
        rocksdb_writebatch_delete_cf(wb, cf, ek, eklen);
        rocksdb_writebatch_delete_cf(wb, cf, k, kl);
        t->bytes = t->bytes > size ? t->bytes - size : 0;
        if (t->entries > 0)
            t->entries--;
        t->evictions++;
        if (ov_set(t, ek, eklen, 0, 0, 0) != WH_OK) {
            wh_seterr(err, errlen, "out of memory");
            break;
        }
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (e != NULL) {
        wh_seterr(err, errlen, "toast cache: %s", e);
        rocksdb_free(e);
        return WH_ERR;
    }
    /* this batch's own, oldest first (one batch over max is allowed, but a
     * bound of 0 keeps nothing) */
    while (t->bytes > max) {
        ov *best = NULL;
        for (size_t i = 0; i < t->nov; i++)
            if (t->ov[i].present && (best == NULL || t->ov[i].wseq < best->wseq))
                best = &t->ov[i];
        if (best == NULL)
            break;
        qkey(q, best->wseq);
        rocksdb_writebatch_delete_cf(wb, cf, best->ekey, best->eklen);
        rocksdb_writebatch_delete_cf(wb, cf, q, 9);
        t->bytes = t->bytes > best->size ? t->bytes - best->size : 0;
        if (t->entries > 0)
            t->entries--;
        t->evictions++;
        best->present = 0;
    }
    return WH_OK;
}

int st_toast_apply(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                   rocksdb_writebatch_t *wb, const st_toast_op *ops, size_t n, uint64_t sender,
                   uint64_t serial, uint64_t max_bytes, char *err, size_t errlen)
{
    if (n == 0)
        return WH_OK;
    if (cf == NULL)
        return wh_seterr(err, errlen, "toast cache: no column family");
    pthread_mutex_lock(&t->mu);
    int rc = load(t, rdb, cf, err, errlen);
    if (rc == WH_OK && serial != 0 && sender == t->sender && serial <= t->serial) {
        pthread_mutex_unlock(&t->mu); /* a late copy of a request applied before */
        return WH_OK;
    }
    if (serial != 0) {
        t->sender = sender;
        t->serial = serial;
    }
    t->in_batch = 1;
    wh_buf ek;
    wh_buf_init(&ek, 0);
    for (size_t i = 0; i < n && rc == WH_OK; i++) {
        const st_toast_op *op = &ops[i];
        table *tb;
        switch (op->kind) {
        case ST_TOAST_PUT:
            if ((tb = tab_get(t, op->rel, op->fingerprint)) == NULL ||
                tab_add_col(tb, op->col, op->collen) != WH_OK ||
                ekey_make(&ek, op->rel, op->key, op->keylen, op->col, op->collen) == 0) {
                rc = wh_seterr(err, errlen, "out of memory");
                break;
            }
            if (2 * ek.len + op->vallen + ENTRY_HEAD + 17 > max_bytes)
                rc = entry_del(t, rdb, cf, wb, ek.data, ek.len, err, errlen);
            else
                rc = entry_put(t, rdb, cf, wb, tb, ek.data, ek.len, op, err, errlen);
            break;
        case ST_TOAST_DEL:
            if (tab_find(t, op->rel) == NULL)
                break; /* nothing kept of the table */
            if (ekey_make(&ek, op->rel, op->key, op->keylen, op->col, op->collen) == 0)
                rc = wh_seterr(err, errlen, "out of memory");
            else
                rc = entry_del(t, rdb, cf, wb, ek.data, ek.len, err, errlen);
            break;
        case ST_TOAST_DEL_ROW:
            if ((tb = tab_find(t, op->rel)) == NULL)
                break;
            for (size_t c = 0; c < tb->ncols && rc == WH_OK; c++) {
                if (ekey_make(&ek, op->rel, op->key, op->keylen, tb->cols[c],
                              strlen(tb->cols[c])) == 0)
                    rc = wh_seterr(err, errlen, "out of memory");
                else
                    rc = entry_del(t, rdb, cf, wb, ek.data, ek.len, err, errlen);
            }
            break;
        case ST_TOAST_TABLE:
            if ((tb = tab_get(t, op->rel, op->fingerprint)) == NULL) {
                rc = wh_seterr(err, errlen, "out of memory");
                break;
            }
            tb->gen++;
            tb->fp = op->fingerprint;
            for (size_t c = 0; c < tb->ncols; c++)
                free(tb->cols[c]);
            tb->ncols = 0;
            tb->dirty = 1;
            break;
        case ST_TOAST_CLEAR: {
            for (size_t j = 0; j < t->ntabs; j++) {
                char k[5];
                k[0] = KEY_TABLE;
                wh_put_be32((uint8_t *)k + 1, t->tabs[j].rel);
                rocksdb_writebatch_delete_cf(wb, cf, k, 5);
            }
            tabs_clear(t);
            t->epoch++;
            break;
        }
        default:
            rc = wh_seterr(err, errlen, "toast_ops[%zu].kind: unknown (%d)", i, op->kind);
        }
    }
    if (rc == WH_OK)
        rc = evict(t, rdb, cf, wb, max_bytes, err, errlen);
    if (rc == WH_OK) {
        for (size_t i = 0; i < t->ntabs; i++)
            if (t->tabs[i].dirty)
                tab_write(wb, cf, &t->tabs[i]);
        uint8_t m[56];
        wh_put_be64(m, t->bytes);
        wh_put_be64(m + 8, t->entries);
        wh_put_be64(m + 16, t->wseq);
        wh_put_be64(m + 24, t->evictions);
        wh_put_be64(m + 32, t->epoch);
        wh_put_be64(m + 40, t->sender);
        wh_put_be64(m + 48, t->serial);
        char mk = KEY_META;
        rocksdb_writebatch_put_cf(wb, cf, &mk, 1, (const char *)m, 56);
    }
    wh_buf_free(&ek);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void st_toast_end(st_toast *t, int ok)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    if (t->in_batch) {
        ov_clear(t);
        if (!ok)
            unload(t); /* not written: read again from the CF */
        t->in_batch = 0;
    }
    pthread_mutex_unlock(&t->mu);
}

int st_toast_get(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf, uint32_t rel,
                 const char *key, size_t keylen, const char *col, uint64_t before_lsn, char **val,
                 size_t *vallen, uint64_t *lsn, char *err, size_t errlen)
{
    *val = NULL;
    atomic_fetch_add(&t->lookups, 1);
    if (cf == NULL)
        return 0;
    pthread_mutex_lock(&t->mu);
    if (load(t, rdb, cf, err, errlen) != WH_OK) {
        pthread_mutex_unlock(&t->mu);
        return -1;
    }
    table *tb = tab_find(t, rel);
    uint64_t gen = tb ? tb->gen : 0, epoch = t->epoch;
    int has_col = tb && tab_has_col(tb, col, strlen(col));
    pthread_mutex_unlock(&t->mu);
    if (!has_col)
        return 0;
    wh_buf ek;
    wh_buf_init(&ek, 0);
    if (ekey_make(&ek, rel, key, keylen, col, strlen(col)) == 0) {
        wh_buf_free(&ek);
        return wh_seterr(err, errlen, "out of memory"), -1;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *e = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(rdb, ro, cf, ek.data, ek.len, &vl, &e);
    rocksdb_readoptions_destroy(ro);
    wh_buf_free(&ek);
    if (e != NULL) {
        wh_seterr(err, errlen, "toast cache: %s", e);
        rocksdb_free(e);
        return -1;
    }
    int rc = 0;
    if (v != NULL && vl >= ENTRY_HEAD) {
        const uint8_t *p = (const uint8_t *)v;
        uint64_t l = wh_get_be64(p + 16);
        if (wh_get_be64(p) == epoch && wh_get_be64(p + 8) == gen && l < before_lsn) {
            *val = malloc(vl - ENTRY_HEAD + 1);
            if (*val == NULL) {
                rc = -1;
                wh_seterr(err, errlen, "out of memory");
            } else {
                memcpy(*val, v + ENTRY_HEAD, vl - ENTRY_HEAD);
                (*val)[vl - ENTRY_HEAD] = '\0';
                *vallen = vl - ENTRY_HEAD;
                *lsn = l;
                rc = 1;
                atomic_fetch_add(&t->found, 1);
            }
        }
    }
    rocksdb_free(v);
    return rc;
}

int st_toast_tables(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                    st_toast_table **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (cf == NULL)
        return WH_OK;
    pthread_mutex_lock(&t->mu);
    int rc = load(t, rdb, cf, err, errlen);
    st_toast_table *tabs = NULL;
    size_t k = 0;
    if (rc == WH_OK && t->ntabs > 0) {
        tabs = calloc(t->ntabs, sizeof(*tabs));
        if (tabs == NULL)
            rc = wh_seterr(err, errlen, "out of memory");
        for (size_t i = 0; i < t->ntabs && rc == WH_OK; i++) {
            const table *tb = &t->tabs[i];
            st_toast_table *o = &tabs[k++];
            o->rel = tb->rel;
            o->fingerprint = tb->fp;
            o->cols = tb->ncols ? calloc(tb->ncols, sizeof(char *)) : NULL;
            if (tb->ncols && o->cols == NULL) {
                rc = wh_seterr(err, errlen, "out of memory");
                break;
            }
            for (size_t c = 0; c < tb->ncols; c++) {
                o->cols[c] = strdup(tb->cols[c]);
                if (o->cols[c] == NULL) {
                    rc = wh_seterr(err, errlen, "out of memory");
                    break;
                }
                o->ncols++;
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (rc != WH_OK) {
        st_toast_tables_free(tabs, k);
        return WH_ERR;
    }
    *out = tabs;
    *n = k;
    return WH_OK;
}

void st_toast_tables_free(st_toast_table *tabs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < tabs[i].ncols; c++)
            free(tabs[i].cols[c]);
        free(tabs[i].cols);
    }
    free(tabs);
}

void st_toast_get_stats(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                        st_toast_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    char err[8];
    if (cf != NULL && !t->in_batch)
        (void)load(t, rdb, cf, err, sizeof(err));
    out->entries = t->entries;
    out->bytes = t->bytes;
    out->evictions = t->evictions;
    pthread_mutex_unlock(&t->mu);
    out->puts = atomic_load(&t->puts);
    out->lookups = atomic_load(&t->lookups);
    out->found = atomic_load(&t->found);
}
