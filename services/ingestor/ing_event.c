/* ing_event: envelope rendering. */
#include "ing_event.h"

#include <string.h>

#include "ing_toast.h"
#include "ing_values.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

int ing_txn_set_tenant(ing_txn *t, const char *tenant, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t)); /* no TOAST cache until one is set */
    wh_buf b;
    wh_buf_init(&b, sizeof(t->tenant_esc) - 1);
    if (wh_json_str(&b, tenant, strlen(tenant)) != WH_OK || b.len < 2) {
        wh_buf_free(&b);
        return wh_seterr(err, errlen, "tenant name too long");
    }
    memcpy(t->tenant_esc, b.data + 1, b.len - 2);
    t->tenant_len = b.len - 2;
    t->tenant_esc[t->tenant_len] = '\0';
    wh_buf_free(&b);
    return WH_OK;
}

void ing_txn_begin(ing_txn *t, uint64_t commit_lsn, uint32_t xid, int64_t commit_ts_us)
{
    t->commit_lsn = commit_lsn;
    t->xid = xid;
    t->commit_ts_us = commit_ts_us;
    int n = wh_lsn_format(commit_lsn, t->lsn_str, sizeof(t->lsn_str));
    t->lsn_len = n > 0 ? (size_t)n : 0;
    /* 0 = no commit time (a non-transactional message): "commit_ts":null */
    n = commit_ts_us != 0 ? ing_format_ts_utc(commit_ts_us, t->ts_str, sizeof(t->ts_str)) : 0;
    t->ts_len = n > 0 ? (size_t)n : 0;
    t->origin_len = 0;
    t->change_lsn = 0;
}

int ing_txn_set_origin(ing_txn *t, const char *name, char *err, size_t errlen)
{
    t->origin_len = 0;
    if (name == NULL)
        return WH_OK;
    size_t n = strlen(name);
    if (n > WH_ORIGIN_NAME_MAX)
        return wh_seterr(err, errlen, "replication origin name longer than %d bytes (%zu)",
                         WH_ORIGIN_NAME_MAX, n);
    wh_buf b;
    wh_buf_init(&b, sizeof(t->origin_json));
    if (wh_json_str(&b, name, n) != WH_OK) {
        wh_buf_free(&b);
        return wh_seterr(err, errlen, "out of memory");
    }
    memcpy(t->origin_json, b.data, b.len);
    t->origin_len = b.len;
    wh_buf_free(&b);
    return WH_OK;
}

static int put_u64(wh_buf *b, uint64_t v)
{
    char tmp[24];
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return wh_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

#define PUTLIT(b, s) wh_buf_append((b), (s), sizeof(s) - 1)

/* The head of an event is part0 + seq + part1 + seq + part2 + ,"op":"OP":
 * {"id":"T:LSN:  seq  ","tenant":"T","lsn":"LSN","seq":  seq
 * ,"xid":N,"commit_ts":"..",["origin":"..",] */
static int head_part0(wh_buf *b, const ing_txn *t)
{
    if (PUTLIT(b, "{\"id\":\"") || wh_buf_append(b, t->tenant_esc, t->tenant_len) ||
        wh_buf_putc(b, ':') || wh_buf_append(b, t->lsn_str, t->lsn_len) || wh_buf_putc(b, ':'))
        return WH_ERR;
    return WH_OK;
}

static int head_part1(wh_buf *b, const ing_txn *t)
{
    if (PUTLIT(b, "\",\"tenant\":\"") || wh_buf_append(b, t->tenant_esc, t->tenant_len) ||
        PUTLIT(b, "\",\"lsn\":\"") || wh_buf_append(b, t->lsn_str, t->lsn_len) ||
        PUTLIT(b, "\",\"seq\":"))
        return WH_ERR;
    return WH_OK;
}

static int head_part2(wh_buf *b, const ing_txn *t)
{
    if (PUTLIT(b, ",\"xid\":") || put_u64(b, t->xid))
        return WH_ERR;
    if (t->ts_len == 0 ? PUTLIT(b, ",\"commit_ts\":null") != WH_OK
                       : (PUTLIT(b, ",\"commit_ts\":\"") ||
                          wh_buf_append(b, t->ts_str, t->ts_len) || wh_buf_putc(b, '"')))
        return WH_ERR;
    if (t->origin_len > 0 &&
        (PUTLIT(b, ",\"origin\":") || wh_buf_append(b, t->origin_json, t->origin_len)))
        return WH_ERR;
    return WH_OK;
}

/* {"id":"..","tenant":"..","lsn":"..","seq":N,"xid":N,"commit_ts":"..",
 * ["origin":"..",]"op":"OP"; a staged event (t->staged) has only its
 * ,"op":"OP" (the store adds the rest at the commit: ing_event_head_parts) */
static int head(wh_buf *b, const ing_txn *t, uint32_t seq, const char *op)
{
    if (!t->staged && (head_part0(b, t) || put_u64(b, seq) || head_part1(b, t) || put_u64(b, seq) ||
                       head_part2(b, t)))
        return WH_ERR;
    if (PUTLIT(b, ",\"op\":\"") || wh_buf_puts(b, op) || wh_buf_putc(b, '"'))
        return WH_ERR;
    if (t->change_lsn != 0 && op[0] != 'r') { /* a snapshot's row has none */
        char l[24];
        int n = wh_lsn_format(t->change_lsn, l, sizeof(l));
        if (n <= 0 || PUTLIT(b, ",\"change_lsn\":\"") || wh_buf_append(b, l, (size_t)n) ||
            wh_buf_putc(b, '"'))
            return WH_ERR;
    }
    return WH_OK;
}

int ing_event_head_parts(const ing_txn *t, wh_buf *out, size_t cut[2])
{
    wh_buf_reset(out);
    if (head_part0(out, t))
        return WH_ERR;
    cut[0] = out->len;
    if (head_part1(out, t))
        return WH_ERR;
    cut[1] = out->len;
    return head_part2(out, t);
}

static int rel_names(wh_buf *b, const ing_relation *r)
{
    if (PUTLIT(b, ",\"schema\":") || wh_json_str(b, r->nspname, strlen(r->nspname)) ||
        PUTLIT(b, ",\"table\":") || wh_json_str(b, r->relname, strlen(r->relname)))
        return WH_ERR;
    return WH_OK;
}

/* ,"schema_version":"<16 hex>" (ing_schema, computed once at the Relation
 * message) and the closing brace. Last: the dispatcher's event walk
 * predicts the members before it (wh_filter ev_order). */
static int version_end(wh_buf *b, const ing_relation *r)
{
    if (r->version_hex[0] != '\0' && (PUTLIT(b, ",\"schema_version\":\"") ||
                                      wh_buf_append(b, r->version_hex, 16) || wh_buf_putc(b, '"')))
        return WH_ERR;
    return wh_buf_putc(b, '}');
}

static int col_value(wh_buf *b, const ing_attr *a, const ing_col *c)
{
    switch (c->kind) {
    case 't':
        if (a->vtype)
            return ing_value_typed(b, a->vtype, c->data, c->len);
        return ing_value_json(b, a->type_oid, c->data, c->len);
    case 'b':
        return ing_value_binary(b, c->data, c->len);
    default:
        return PUTLIT(b, "null");
    }
}

/* Where unchanged TOAST values of a new row come from (ing_toast.h): the
 * REPLICA IDENTITY FULL old row, else the cache under the event's key
 * (lkey); values worth keeping go into the cache under the new row's key
 * (pkey). NULL in row(): nothing is filled or kept. */
typedef struct toast_ctx {
    ing_toast *cache;     /* may be NULL */
    ing_toast *stats;     /* counts filled and listed values (may be NULL) */
    const ing_tuple *old; /* the old row when it is whole ('O'), else NULL */
    /* the keys' text lies in buffers that may move as they grow: kept as
     * offsets, the pointer taken at each use (lkey_of, pkey_of) */
    const wh_buf *lb, *pb; /* NULL: no key, nothing kept */
    size_t lstart, llen, pstart, plen;
    int moved;    /* the key changed: pkey is not lkey */
    int streamed; /* a streamed transaction (may abort): nothing is kept, only dropped */
    uint64_t lsn;
    uint8_t missed[(ING_TOAST_MAX_COLS + 7) / 8]; /* unchanged and not filled */
    int nmissed;
} toast_ctx;

/* Appends the value of unchanged column i when tx knows it: 1 appended, 0
 * not known, -1 the buffer is full. */
static const char *lkey_of(const toast_ctx *tx)
{
    return tx->lb->data + tx->lstart;
}

static const char *pkey_of(const toast_ctx *tx)
{
    return tx->pb->data + tx->pstart;
}

static int filled(wh_buf *b, const ing_relation *r, int i, toast_ctx *tx)
{
    const ing_attr *a = &r->atts[i];
    if (tx->old != NULL && tx->old->cols[i].kind != 'u' && tx->old->cols[i].kind != 'n') {
        if (col_value(b, a, &tx->old->cols[i]))
            return -1;
        ing_toast_note(tx->stats, ING_TOAST_FROM_OLD);
        return 1;
    }
    size_t n, at = b->len;
    int from_store = 0;
    const char *v = tx->cache && tx->lb ? ing_toast_get_at(tx->cache, r, lkey_of(tx), tx->llen, i,
                                                           tx->lsn, &n, &from_store)
                                        : NULL;
    if (v != NULL) {
        if (wh_buf_append(b, v, n))
            return -1;
        ing_toast_note(tx->stats, from_store ? ING_TOAST_STORE : ING_TOAST_HIT);
    }
    if (tx->moved) {
        /* the key changed: the row's value now lives under its new key
         * (copied from b: putting may evict the entry v points into), and
         * nothing of it under the old one, or under the new one when it is
         * not known (an entry there is another row's, gone) */
        if (v != NULL && !tx->streamed) {
            if (ing_toast_put(tx->cache, r, pkey_of(tx), tx->plen, i, b->data + at, n, tx->lsn))
                return -1;
        } else {
            ing_toast_forget(tx->cache, r, pkey_of(tx), tx->plen, i);
        }
        ing_toast_forget(tx->cache, r, lkey_of(tx), tx->llen, i);
    }
    return v != NULL;
}

/* Renders an object of the tuple's columns: those with a flag of mask
 * (ING_ATTR_*), or all of them when mask is 0. Unchanged TOAST columns are
 * filled through tx when it can (see toast_ctx), else skipped (and counted
 * in *nunch, marked in tx->missed). */
static int row(wh_buf *b, const ing_relation *r, const ing_tuple *t, uint8_t mask, int *nunch,
               toast_ctx *tx)
{
    int first = 1;
    if (wh_buf_putc(b, '{'))
        return WH_ERR;
    for (int i = 0; i < t->ncols; i++) {
        const ing_attr *a = &r->atts[i];
        const ing_col *c = &t->cols[i];
        if (mask && !(a->flags & mask))
            continue;
        if (c->kind == 'u' && (tx == NULL || i >= ING_TOAST_MAX_COLS)) {
            if (nunch)
                (*nunch)++;
            continue;
        }
        size_t mark = b->len;
        if ((!first && wh_buf_putc(b, ',')) ||
            (a->member != NULL ? wh_buf_append(b, a->member, a->member_len)
                               : wh_json_str(b, a->name, strlen(a->name)) || wh_buf_putc(b, ':')))
            return WH_ERR;
        if (c->kind == 'u') {
            int f = filled(b, r, i, tx);
            if (f < 0)
                return WH_ERR;
            if (f == 0) { /* listed in "unchanged" instead */
                b->len = mark;
                if (nunch)
                    (*nunch)++;
                if (tx->nmissed++ == 0)
                    memset(tx->missed, 0, sizeof(tx->missed));
                tx->missed[i / 8] |= (uint8_t)(1u << (i % 8));
                ing_toast_note(tx->stats, ING_TOAST_MISS);
                continue;
            }
            first = 0;
            continue;
        }
        size_t vstart = b->len;
        if (col_value(b, a, c))
            return WH_ERR;
        first = 0;
        if (tx && tx->cache && tx->pb && c->kind != 'n') {
            if (!tx->streamed && ing_toast_wanted(tx->cache, r, i, c->len)) {
                if (ing_toast_put(tx->cache, r, pkey_of(tx), tx->plen, i, b->data + vstart,
                                  b->len - vstart, tx->lsn))
                    return WH_ERR;
            } else {
                ing_toast_forget(tx->cache, r, pkey_of(tx), tx->plen, i);
            }
        } else if (tx && tx->cache && tx->pb) {
            ing_toast_forget(tx->cache, r, pkey_of(tx), tx->plen, i);
        }
    }
    return wh_buf_putc(b, '}');
}

/* The key's columns: the primary key of a REPLICA IDENTITY FULL table when
 * it was found (key_pk), else the replica identity columns (with FULL and no
 * primary key: every column). */
static uint8_t key_mask(const ing_relation *r)
{
    return r->key_pk ? ING_ATTR_PK : ING_ATTR_IDENT;
}

static int has_key(const ing_relation *r, uint8_t mask)
{
    for (int i = 0; i < r->natts; i++)
        if (r->atts[i].flags & mask)
            return 1;
    return 0;
}

/* 'r': a row read by a snapshot or backfill (ing_snapshot), an insert but
 * for its op */
static const char *op_name(const ing_msg *m)
{
    return m->type == 'I'   ? "insert"
           : m->type == 'U' ? "update"
           : m->type == 'r' ? "read"
                            : "delete";
}

int ing_event_check(const ing_msg *m, char *err, size_t errlen)
{
    const ing_relation *r = m->rel;
    const char *op = op_name(m);
    if (!r)
        return wh_seterr(err, errlen,
                         "pgoutput: %s of relation OID %u, which has had no Relation message on "
                         "this connection: not decoded (reconnecting)",
                         op, m->rel_oid);
    if ((m->old_kind && m->oldtup.ncols != r->natts) || (m->has_new && m->newtup.ncols != r->natts))
        return wh_seterr(err, errlen,
                         "%s on %s.%s: tuple column count does not match the "
                         "relation (%d columns)",
                         op, r->nspname, r->relname, r->natts);
    return WH_OK;
}

int ing_event_change(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                     size_t errlen)
{
    if (ing_event_check(m, err, errlen) != WH_OK)
        return WH_ERR;
    const ing_relation *r = m->rel;
    const char *op = op_name(m);
    size_t start = b->len;
    int nunch = 0;
    if (head(b, t, seq, op) || rel_names(b, r) || PUTLIT(b, ",\"key\":"))
        goto full;
    /* key: the key columns (key_mask) from the old tuple when present, else
     * the new one */
    const ing_tuple *kt = m->old_kind ? &m->oldtup : m->has_new ? &m->newtup : NULL;
    uint8_t km = key_mask(r);
    size_t kstart = b->len;
    int keyed = kt && has_key(r, km);
    if (keyed) {
        if (row(b, r, kt, km, NULL, NULL))
            goto full;
    } else if (PUTLIT(b, "null")) {
        goto full;
    }
    size_t kend = b->len;
    if (m->type == 'D' && keyed && !ing_toast_empty(t->toast))
        ing_toast_forget_row(t->toast, r, b->data + kstart, kend - kstart);
    if (PUTLIT(b, ",\"before\":"))
        goto full;
    if (m->old_kind) {
        if (row(b, r, &m->oldtup, m->old_kind == 'K' ? ING_ATTR_IDENT : 0, NULL, NULL))
            goto full;
    } else if (PUTLIT(b, "null")) {
        goto full;
    }
    if (PUTLIT(b, ",\"after\":"))
        goto full;
    toast_ctx tx, *txp = NULL;
    if (m->has_new && m->type != 'D') {
        if (t->toast != NULL || m->old_kind == 'O') {
            txp = &tx;
            /* a REPLICA IDENTITY FULL table's old row has every value */
            tx.cache = r->replident == 'f' ? NULL : t->toast;
            tx.stats = t->toast;
            tx.old = m->old_kind == 'O' ? &m->oldtup : NULL;
            tx.lb = tx.pb = NULL;
            tx.moved = 0;
            tx.streamed = t->streamed;
            tx.lsn = t->commit_lsn;
            tx.nmissed = 0;
            if (keyed && tx.cache != NULL) {
                tx.lb = tx.pb = b;
                tx.lstart = tx.pstart = kstart;
                tx.llen = tx.plen = kend - kstart;
                if (m->old_kind) { /* the key came from the old row: the new row's own */
                    wh_buf *nk = ing_toast_keybuf(tx.cache);
                    if (row(nk, r, &m->newtup, km, NULL, NULL) == WH_OK) {
                        tx.pb = nk;
                        tx.pstart = 0;
                        tx.plen = nk->len;
                        tx.moved = 1;
                    } else { /* a key over ING_TOAST_MAX_KEY: keep nothing of the table */
                        ing_toast_forget_rel(tx.cache, r->oid);
                        tx.cache = NULL;
                        tx.lb = tx.pb = NULL;
                    }
                }
            }
        }
        if (row(b, r, &m->newtup, 0, &nunch, txp))
            goto full;
    } else if (PUTLIT(b, "null")) {
        goto full;
    }
    if (nunch > 0) {
        int first = 1;
        if (PUTLIT(b, ",\"unchanged\":["))
            goto full;
        for (int i = 0; i < m->newtup.ncols; i++) {
            if (m->newtup.cols[i].kind != 'u')
                continue;
            if (txp != NULL && i < ING_TOAST_MAX_COLS &&
                (tx.nmissed == 0 || !(tx.missed[i / 8] & (1u << (i % 8)))))
                continue; /* filled */
            const char *n = r->atts[i].name;
            if ((!first && wh_buf_putc(b, ',')) || wh_json_str(b, n, strlen(n)))
                goto full;
            first = 0;
        }
        if (wh_buf_putc(b, ']'))
            goto full;
    }
    if (version_end(b, r))
        goto full;
    return WH_OK;
full:
    b->len = start;
    return wh_seterr(err, errlen, "event buffer full or out of memory");
}

int ing_event_truncate(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_relation *r,
                       uint8_t options, char *err, size_t errlen)
{
    size_t start = b->len;
    if (head(b, t, seq, "truncate") || rel_names(b, r) ||
        PUTLIT(b, ",\"key\":null,\"before\":null,\"after\":null,\"options\":{\"cascade\":") ||
        wh_buf_puts(b, (options & 1) ? "true" : "false") || PUTLIT(b, ",\"restart_identity\":") ||
        wh_buf_puts(b, (options & 2) ? "true" : "false") || wh_buf_putc(b, '}') ||
        version_end(b, r)) {
        b->len = start;
        return wh_seterr(err, errlen, "event buffer full or out of memory");
    }
    return WH_OK;
}

int ing_event_message(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                      size_t errlen)
{
    size_t start = b->len;
    const char *prefix = m->name ? m->name : "";
    if (head(b, t, seq, "message") ||
        PUTLIT(b, ",\"schema\":null,\"table\":null,\"key\":null,\"before\":null,\"after\":null,"
                  "\"prefix\":") ||
        wh_json_str(b, prefix, strlen(prefix)) || PUTLIT(b, ",\"content\":\"") ||
        wh_base64(b, m->content, m->content_len) || PUTLIT(b, "\"}")) {
        b->len = start;
        return wh_seterr(err, errlen, "event buffer full or out of memory");
    }
    return WH_OK;
}

int ing_event_schema(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_relation *r,
                     const char *desc, size_t dlen, char *err, size_t errlen)
{
    size_t start = b->len;
    /* desc is {"schema":..,"table":..,"replica_identity":..}: its members
     * from replica_identity on follow ours, in the order of a change */
    static const char ri[] = ",\"replica_identity\":";
    const char *rest = dlen > 0 ? memmem(desc, dlen, ri, sizeof(ri) - 1) : NULL;
    if (rest == NULL || head(b, t, seq, "schema") || rel_names(b, r) ||
        PUTLIT(b, ",\"key\":null,\"before\":null,\"after\":null,\"schema_version\":\"") ||
        wh_buf_append(b, r->version_hex, strlen(r->version_hex)) || wh_buf_putc(b, '"') ||
        wh_buf_append(b, rest, dlen - (size_t)(rest - desc))) {
        b->len = start;
        return wh_seterr(err, errlen, "event buffer full or out of memory");
    }
    return WH_OK;
}

/* A member of the DDL message's object as a JSON string, or null. */
static int ddl_value(wh_buf *b, const wh_json *o, const char *name)
{
    const wh_json *v = wh_json_get(o, name);
    if (v == NULL || v->type != WH_JSON_STRING)
        return PUTLIT(b, "null");
    return wh_json_str(b, v->str, v->len);
}

int ing_event_ddl(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                  size_t errlen)
{
    wh_json *o = NULL;
    char perr[128];
    if (m->content_len > ING_DDL_MAX_BYTES ||
        wh_json_parse((const char *)m->content, m->content_len, &o, perr, sizeof(perr)) != WH_OK)
        return wh_seterr(err, errlen, "DDL message (%u bytes) is not a JSON object%s",
                         m->content_len, m->content_len > ING_DDL_MAX_BYTES ? " (too long)" : "");
    if (o->type != WH_JSON_OBJECT) {
        wh_json_free(o);
        return wh_seterr(err, errlen, "DDL message (%u bytes) is not a JSON object",
                         m->content_len);
    }
    size_t start = b->len;
    int rc = head(b, t, seq, "ddl") || PUTLIT(b, ",\"schema\":") || ddl_value(b, o, "schema") ||
             PUTLIT(b, ",\"table\":null,\"key\":null,\"before\":null,\"after\":null,"
                       "\"ddl\":{\"event\":") ||
             ddl_value(b, o, "event") || PUTLIT(b, ",\"command_tag\":") ||
             ddl_value(b, o, "command_tag") || PUTLIT(b, ",\"object_type\":") ||
             ddl_value(b, o, "object_type") || PUTLIT(b, ",\"object_identity\":") ||
             ddl_value(b, o, "object_identity") || PUTLIT(b, ",\"statement\":") ||
             ddl_value(b, o, "statement") || PUTLIT(b, "}}");
    wh_json_free(o);
    if (rc) {
        b->len = start;
        return wh_seterr(err, errlen, "event buffer full or out of memory");
    }
    return WH_OK;
}
