/* ing_tstore: the store-backed TOAST value cache, ingestor side (see
 * ing_tstore.h). */
#include "ing_tstore.h"

#include <stdlib.h>
#include <string.h>

#include "wh_ipc.h"
#include "wh_util.h"

#define SLOTS 4096 /* pending-op serials by hash of (rel, key, col) and (rel, key) */
#define REL_SLOTS 256

/* A table the store may hold entries of. */
typedef struct ttab {
    uint32_t oid;
    int has;      /* the store may hold entries of it (in its current generation) */
    uint64_t sfp; /* the fingerprint the store holds for it */
    uint64_t fp;  /* of its last Relation message (0: none seen yet) */
    int seen;     /* a Relation message of it in this session */
    char **cols;  /* columns with entries in the store */
    size_t ncols;
} ttab;

struct ing_tstore {
    ing_batcher *bt;
    wh_client *client;
    char tenant[WH_NAME_MAX];
    int loaded;  /* the store's tables were read (else: every table is "may hold") */
    int unknown; /* not read: a table's first Relation message bumps it */
    int broken;  /* an op was lost (out of memory): no lookups, CLEAR at the next op */
    ttab *tabs;
    size_t ntabs, captabs;
    uint64_t col_slot[SLOTS], row_slot[SLOTS], rel_slot[REL_SLOTS];
    uint64_t clear_serial;
    uint64_t pause_until_ms;
    wh_buf op; /* one framed op */
    char *val; /* the last value found */
    size_t vallen;
    size_t max_value; /* the largest value put (ING_TSTORE_MAX_VALUE_DIV) */
    size_t max_carry; /* the most op bytes waiting for one batch (ING_TSTORE_MAX_CARRY_DIV) */
};

static uint64_t row_hash(uint32_t oid, const char *key, size_t keylen)
{
    return wh_fnv1a64(wh_fnv1a64(WH_FNV1A64_OFFSET, &oid, sizeof(oid)), key, keylen);
}

static uint64_t col_hash(uint32_t oid, const char *key, size_t keylen, const char *col)
{
    return wh_fnv1a64(wh_fnv1a64(row_hash(oid, key, keylen), "", 1), col, strlen(col));
}

/* A stable description of what the store's entries of a table depend on:
 * column names, types and modifiers, replica identity and its columns. */
static uint64_t fingerprint(const ing_relation *rel)
{
    uint64_t h = wh_fnv1a64(WH_FNV1A64_OFFSET, &rel->replident, 1);
    h = wh_fnv1a64(h, &rel->natts, sizeof(rel->natts));
    for (int i = 0; i < rel->natts; i++) {
        const ing_attr *a = &rel->atts[i];
        uint8_t ident = a->flags & ING_ATTR_IDENT;
        h = wh_fnv1a64(h, a->name, strlen(a->name) + 1);
        h = wh_fnv1a64(h, &a->type_oid, sizeof(a->type_oid));
        h = wh_fnv1a64(h, &a->typmod, sizeof(a->typmod));
        h = wh_fnv1a64(h, &ident, 1);
    }
    return h ? h : 1;
}

int ing_tstore_new(ing_tstore **out, const wh_config *cfg, ing_batcher *bt, char *err,
                   size_t errlen)
{
    ing_tstore *ts = calloc(1, sizeof(*ts));
    if (ts == NULL)
        return wh_seterr(err, errlen, "out of memory");
    ts->bt = bt;
    ts->max_value = (size_t)cfg->ipc_max_msg_bytes / ING_TSTORE_MAX_VALUE_DIV;
    ts->max_carry = (size_t)cfg->ipc_max_msg_bytes / ING_TSTORE_MAX_CARRY_DIV;
    wh_strlcpy(ts->tenant, cfg->tenant, sizeof(ts->tenant));
    wh_buf_init(&ts->op, 0);
    if (wh_client_open(&ts->client, cfg->store_endpoint, ING_TSTORE_TIMEOUT_MS,
                       (size_t)cfg->ipc_max_msg_bytes, err, errlen) != WH_OK) {
        ing_tstore_free(ts);
        return WH_ERR;
    }
    *out = ts;
    return WH_OK;
}

static void tab_cols_clear(ttab *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        free(t->cols[i]);
    free(t->cols);
    t->cols = NULL;
    t->ncols = 0;
}

void ing_tstore_free(ing_tstore *ts)
{
    if (ts == NULL)
        return;
    for (size_t i = 0; i < ts->ntabs; i++)
        tab_cols_clear(&ts->tabs[i]);
    free(ts->tabs);
    if (ts->client)
        wh_client_close(ts->client);
    wh_buf_free(&ts->op);
    free(ts->val);
    free(ts);
}

static ttab *tab_find(ing_tstore *ts, uint32_t oid)
{
    for (size_t i = 0; i < ts->ntabs; i++)
        if (ts->tabs[i].oid == oid)
            return &ts->tabs[i];
    return NULL;
}

static ttab *tab_get(ing_tstore *ts, uint32_t oid)
{
    ttab *t = tab_find(ts, oid);
    if (t != NULL)
        return t;
    if (wh_grow(&ts->tabs, ts->ntabs + 1, &ts->captabs, sizeof(*ts->tabs), 16) != WH_OK)
        return NULL;
    t = &ts->tabs[ts->ntabs++];
    memset(t, 0, sizeof(*t));
    t->oid = oid;
    return t;
}

static int tab_has_col(const ttab *t, const char *col)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i], col) == 0)
            return 1;
    return 0;
}

static int tab_add_col(ttab *t, const char *col)
{
    if (tab_has_col(t, col))
        return WH_OK;
    char **n = realloc(t->cols, (t->ncols + 1) * sizeof(*n));
    if (n == NULL)
        return WH_ERR;
    t->cols = n;
    if ((t->cols[t->ncols] = strdup(col)) == NULL)
        return WH_ERR;
    t->ncols++;
    return WH_OK;
}

/* Reads the tables the store holds entries of (once). */
static void load(ing_tstore *ts)
{
    if (ts->loaded)
        return;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__ToastGet g = WALHOOK__TOAST_GET__INIT;
    g.tenant = ts->tenant;
    g.tables = 1;
    req.body_case = WALHOOK__REQUEST__BODY_TOAST_GET;
    req.toast_get = &g;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN];
    ts->loaded = 1;
    if (wh_client_call(ts->client, &req, &rep, err, sizeof(err)) != WH_OK ||
        rep->body_case != WALHOOK__REPLY__BODY_TOAST || rep->toast == NULL) {
        wh_warn("toast cache: the store's tables could not be read (%s): each table's entries "
                "in the store are dropped at its first Relation message",
                rep ? "no toast reply" : err);
        ts->unknown = 1;
        if (rep)
            walhook__reply__free_unpacked(rep, NULL);
        return;
    }
    ts->unknown = 0;
    for (size_t i = 0; i < rep->toast->n_tables; i++) {
        const Walhook__ToastTable *x = rep->toast->tables[i];
        if (tab_find(ts, x->rel) != NULL)
            continue; /* known here since (its ops may not be durable yet) */
        ttab *t = tab_get(ts, x->rel);
        if (t == NULL) {
            ts->unknown = 1;
            break;
        }
        t->has = 1;
        t->sfp = x->fingerprint;
        for (size_t c = 0; c < x->n_cols; c++)
            if (tab_add_col(t, x->cols[c]) != WH_OK)
                ts->unknown = 1;
    }
    walhook__reply__free_unpacked(rep, NULL);
    wh_info("toast cache: the store holds entries of %zu tables", ts->ntabs);
}

void ing_tstore_session(ing_tstore *ts)
{
    if (ts == NULL)
        return;
    if (ts->unknown)
        ts->loaded = 0; /* the store did not answer last time: again */
    load(ts);
    for (size_t i = 0; i < ts->ntabs; i++)
        ts->tabs[i].seen = 0;
}

/* Queues op for the store; its serial marks what it touches as pending. */
static uint64_t send_op(ing_tstore *ts, const Walhook__ToastOp *op);

static uint64_t emit(ing_tstore *ts, const Walhook__ToastOp *op)
{
    if (ts->broken) {
        Walhook__ToastOp c = WALHOOK__TOAST_OP__INIT;
        c.kind = WALHOOK__TOAST_OP__KIND__CLEAR;
        if (send_op(ts, &c) == 0)
            return 0;
        ts->broken = 0;
        for (size_t i = 0; i < ts->ntabs; i++) {
            tab_cols_clear(&ts->tabs[i]);
            ts->tabs[i].has = 0;
        }
    }
    uint64_t s = send_op(ts, op);
    if (s == 0) {
        wh_warn("toast cache: out of memory for an op to the store: its entries are dropped");
        ts->broken = 1;
    }
    return s;
}

static uint64_t send_op(ing_tstore *ts, const Walhook__ToastOp *op)
{
    size_t n = walhook__toast_op__get_packed_size(op);
    wh_buf_reset(&ts->op);
    uint8_t hdr[16];
    size_t h = 0;
    hdr[h++] = 0x8a; /* AppendBatch.toast_ops = 33, length-delimited: (33 << 3 | 2) */
    hdr[h++] = 0x02;
    size_t v = n;
    for (; v >= 0x80; v >>= 7)
        hdr[h++] = (uint8_t)(v | 0x80);
    hdr[h++] = (uint8_t)v;
    if (wh_buf_append(&ts->op, hdr, h) != WH_OK || wh_buf_reserve(&ts->op, h + n) != WH_OK)
        return 0;
    walhook__toast_op__pack(op, (uint8_t *)ts->op.data + h);
    ts->op.len = h + n;
    return ing_batcher_toast_add(ts->bt, ts->op.data, ts->op.len);
}

void ing_tstore_put(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen,
                    int col, const char *json, size_t jsonlen, uint64_t lsn)
{
    if (ts == NULL || lsn == 0)
        return;
    if (jsonlen > ts->max_value || ing_batcher_toast_pending(ts->bt) + jsonlen > ts->max_carry) {
        /* its op would make the request that carries it (with the event,
         * itself as large) too large for the store: not kept there, and
         * an older entry of it is no longer valid */
        ing_tstore_forget(ts, rel, key, keylen, col);
        return;
    }
    const char *name = rel->atts[col].name;
    ttab *t = tab_get(ts, rel->oid);
    if (t == NULL || tab_add_col(t, name) != WH_OK) {
        ts->broken = 1;
        return;
    }
    t->has = 1;
    t->seen = 1; /* a change comes after its table's Relation message */
    if (t->fp == 0)
        t->fp = fingerprint(rel);
    if (t->sfp == 0) /* a new table in the store takes the put's fingerprint */
        t->sfp = t->fp;
    Walhook__ToastOp op = WALHOOK__TOAST_OP__INIT;
    op.kind = WALHOOK__TOAST_OP__KIND__PUT;
    op.rel = rel->oid;
    op.key.data = (uint8_t *)key;
    op.key.len = keylen;
    op.col = (char *)name;
    op.value.data = (uint8_t *)json;
    op.value.len = jsonlen;
    op.lsn = lsn;
    op.fingerprint = t->fp;
    uint64_t s = emit(ts, &op);
    ts->col_slot[col_hash(rel->oid, key, keylen, name) % SLOTS] = s ? s : UINT64_MAX;
}

void ing_tstore_forget(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen,
                       int col)
{
    if (ts == NULL || ts->ntabs == 0)
        return;
    ttab *t = tab_find(ts, rel->oid);
    const char *name = rel->atts[col].name;
    if (t == NULL || !t->has || !tab_has_col(t, name))
        return;
    Walhook__ToastOp op = WALHOOK__TOAST_OP__INIT;
    op.kind = WALHOOK__TOAST_OP__KIND__DEL;
    op.rel = rel->oid;
    op.key.data = (uint8_t *)key;
    op.key.len = keylen;
    op.col = (char *)name;
    uint64_t s = emit(ts, &op);
    ts->col_slot[col_hash(rel->oid, key, keylen, name) % SLOTS] = s ? s : UINT64_MAX;
}

void ing_tstore_forget_row(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen)
{
    if (ts == NULL || ts->ntabs == 0)
        return;
    ttab *t = tab_find(ts, rel->oid);
    if (t == NULL || !t->has || t->ncols == 0)
        return;
    Walhook__ToastOp op = WALHOOK__TOAST_OP__INIT;
    op.kind = WALHOOK__TOAST_OP__KIND__DEL_ROW;
    op.rel = rel->oid;
    op.key.data = (uint8_t *)key;
    op.key.len = keylen;
    uint64_t s = emit(ts, &op);
    ts->row_slot[row_hash(rel->oid, key, keylen) % SLOTS] = s ? s : UINT64_MAX;
}

/* TABLE: the table's entries in the store are no longer valid. */
static void bump(ing_tstore *ts, ttab *t, uint64_t fp)
{
    Walhook__ToastOp op = WALHOOK__TOAST_OP__INIT;
    op.kind = WALHOOK__TOAST_OP__KIND__TABLE;
    op.rel = t->oid;
    op.fingerprint = fp;
    uint64_t s = emit(ts, &op);
    ts->rel_slot[t->oid % REL_SLOTS] = s ? s : UINT64_MAX;
    tab_cols_clear(t);
    t->has = 1; /* its record (fingerprint) is there */
    t->sfp = fp;
}

void ing_tstore_forget_rel(ing_tstore *ts, uint32_t oid)
{
    if (ts == NULL)
        return;
    ttab *t = tab_find(ts, oid);
    if (t != NULL && t->has && t->ncols > 0)
        bump(ts, t, t->fp ? t->fp : t->sfp);
}

void ing_tstore_relation(ing_tstore *ts, const ing_relation *rel)
{
    if (ts == NULL || rel == NULL)
        return;
    uint64_t fp = fingerprint(rel);
    ttab *t = tab_find(ts, rel->oid);
    if (t == NULL) {
        if (!ts->unknown)
            return; /* the store holds nothing of it */
        if ((t = tab_get(ts, rel->oid)) == NULL) {
            ts->broken = 1;
            return;
        }
        t->has = 1; /* may hold: bumped below */
        t->sfp = 0;
    }
    int first = !t->seen;
    t->seen = 1;
    t->fp = fp;
    /* a Relation message after the first of a session, or a first one of
     * another shape: kept values may be stale (see ing_tstore.h) */
    if (t->has && (!first || t->sfp != fp))
        bump(ts, t, fp);
}

void ing_tstore_clear(ing_tstore *ts)
{
    if (ts == NULL)
        return;
    Walhook__ToastOp op = WALHOOK__TOAST_OP__INIT;
    op.kind = WALHOOK__TOAST_OP__KIND__CLEAR;
    uint64_t s = emit(ts, &op);
    ts->clear_serial = s ? s : UINT64_MAX;
    for (size_t i = 0; i < ts->ntabs; i++)
        tab_cols_clear(&ts->tabs[i]);
    ts->ntabs = 0;
    ts->unknown = 0;
    ts->loaded = 1;
}

const char *ing_tstore_get(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen,
                           int col, uint64_t lsn, size_t *len, uint64_t *at, int *failed)
{
    *failed = 0;
    if (ts == NULL || ts->broken || ts->ntabs == 0 || lsn == 0)
        return NULL;
    const char *name = rel->atts[col].name;
    ttab *t = tab_find(ts, rel->oid);
    if (t == NULL || !t->has || !tab_has_col(t, name))
        return NULL;
    /* an op on the entry, its row or its table still on its way: the store
     * may answer from before it */
    uint64_t durable = ing_batcher_toast_durable(ts->bt);
    if (ts->clear_serial > durable || ts->rel_slot[rel->oid % REL_SLOTS] > durable ||
        ts->row_slot[row_hash(rel->oid, key, keylen) % SLOTS] > durable ||
        ts->col_slot[col_hash(rel->oid, key, keylen, name) % SLOTS] > durable)
        return NULL;
    if (ts->pause_until_ms != 0 && wh_now_ms() < ts->pause_until_ms) {
        *failed = 1;
        return NULL;
    }
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__ToastGet g = WALHOOK__TOAST_GET__INIT;
    g.tenant = ts->tenant;
    g.rel = rel->oid;
    g.key.data = (uint8_t *)key;
    g.key.len = keylen;
    g.col = (char *)name;
    g.before_lsn = lsn;
    req.body_case = WALHOOK__REQUEST__BODY_TOAST_GET;
    req.toast_get = &g;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN];
    if (wh_client_call(ts->client, &req, &rep, err, sizeof(err)) != WH_OK ||
        rep->body_case != WALHOOK__REPLY__BODY_TOAST || rep->toast == NULL) {
        if (rep)
            walhook__reply__free_unpacked(rep, NULL);
        wh_warn("toast cache: the store did not answer a lookup (%s): unchanged values are "
                "listed as such for %d ms",
                rep ? "no toast reply" : err, ING_TSTORE_PAUSE_MS);
        ts->pause_until_ms = wh_now_ms() + ING_TSTORE_PAUSE_MS;
        *failed = 1;
        return NULL;
    }
    ts->pause_until_ms = 0;
    const char *v = NULL;
    if (rep->toast->found && rep->toast->value.len > 0) {
        char *c = realloc(ts->val, rep->toast->value.len);
        if (c != NULL) {
            ts->val = c;
            memcpy(c, rep->toast->value.data, rep->toast->value.len);
            ts->vallen = rep->toast->value.len;
            *len = ts->vallen;
            *at = rep->toast->lsn;
            v = c;
        }
    }
    walhook__reply__free_unpacked(rep, NULL);
    return v;
}

int ing_tstore_may_hold(const ing_tstore *ts)
{
    return ts != NULL && ts->ntabs > 0;
}
