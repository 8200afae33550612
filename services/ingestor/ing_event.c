/* ing_event: envelope rendering. */
#include "ing_event.h"

#include <string.h>

#include "ing_values.h"
#include "wh_lsn.h"
#include "wh_util.h"

int ing_txn_set_tenant(ing_txn *t, const char *tenant, char *err, size_t errlen)
{
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

/* {"id":"..","tenant":"..","lsn":"..","seq":N,"xid":N,"commit_ts":"..","op":"OP" */
static int head(wh_buf *b, const ing_txn *t, uint32_t seq, const char *op)
{
    if (PUTLIT(b, "{\"id\":\"") || wh_buf_append(b, t->tenant_esc, t->tenant_len) ||
        wh_buf_putc(b, ':') || wh_buf_append(b, t->lsn_str, t->lsn_len) || wh_buf_putc(b, ':') ||
        put_u64(b, seq) || PUTLIT(b, "\",\"tenant\":\"") ||
        wh_buf_append(b, t->tenant_esc, t->tenant_len) || PUTLIT(b, "\",\"lsn\":\"") ||
        wh_buf_append(b, t->lsn_str, t->lsn_len) || PUTLIT(b, "\",\"seq\":") || put_u64(b, seq) ||
        PUTLIT(b, ",\"xid\":") || put_u64(b, t->xid))
        return WH_ERR;
    if (t->ts_len == 0 ? PUTLIT(b, ",\"commit_ts\":null") != WH_OK
                       : (PUTLIT(b, ",\"commit_ts\":\"") ||
                          wh_buf_append(b, t->ts_str, t->ts_len) || wh_buf_putc(b, '"')))
        return WH_ERR;
    if (PUTLIT(b, ",\"op\":\"") || wh_buf_puts(b, op) || wh_buf_putc(b, '"'))
        return WH_ERR;
    return WH_OK;
}

static int rel_names(wh_buf *b, const ing_relation *r)
{
    if (PUTLIT(b, ",\"schema\":") || wh_json_str(b, r->nspname, strlen(r->nspname)) ||
        PUTLIT(b, ",\"table\":") || wh_json_str(b, r->relname, strlen(r->relname)))
        return WH_ERR;
    return WH_OK;
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

/* Renders an object of the tuple's columns: those with a flag of mask
 * (ING_ATTR_*), or all of them when mask is 0. Unchanged TOAST columns are
 * skipped (and counted in *nunch). */
static int row(wh_buf *b, const ing_relation *r, const ing_tuple *t, uint8_t mask, int *nunch)
{
    int first = 1;
    if (wh_buf_putc(b, '{'))
        return WH_ERR;
    for (int i = 0; i < t->ncols; i++) {
        const ing_attr *a = &r->atts[i];
        const ing_col *c = &t->cols[i];
        if (mask && !(a->flags & mask))
            continue;
        if (c->kind == 'u') {
            if (nunch)
                (*nunch)++;
            continue;
        }
        if ((!first && wh_buf_putc(b, ',')) ||
            (a->member != NULL ? wh_buf_append(b, a->member, a->member_len)
                               : wh_json_str(b, a->name, strlen(a->name)) || wh_buf_putc(b, ':')) ||
            col_value(b, a, c))
            return WH_ERR;
        first = 0;
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

int ing_event_check(const ing_msg *m, char *err, size_t errlen)
{
    const ing_relation *r = m->rel;
    const char *op = m->type == 'I' ? "insert" : m->type == 'U' ? "update" : "delete";
    if (!r)
        return wh_seterr(err, errlen, "%s for relation OID %u before its Relation message", op,
                         m->rel_oid);
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
    const char *op = m->type == 'I' ? "insert" : m->type == 'U' ? "update" : "delete";
    size_t start = b->len;
    int nunch = 0;
    if (head(b, t, seq, op) || rel_names(b, r) || PUTLIT(b, ",\"key\":"))
        goto full;
    /* key: the key columns (key_mask) from the old tuple when present, else
     * the new one */
    const ing_tuple *kt = m->old_kind ? &m->oldtup : m->has_new ? &m->newtup : NULL;
    uint8_t km = key_mask(r);
    if (kt && has_key(r, km)) {
        if (row(b, r, kt, km, NULL))
            goto full;
    } else if (PUTLIT(b, "null")) {
        goto full;
    }
    if (PUTLIT(b, ",\"before\":"))
        goto full;
    if (m->old_kind) {
        if (row(b, r, &m->oldtup, m->old_kind == 'K' ? ING_ATTR_IDENT : 0, NULL))
            goto full;
    } else if (PUTLIT(b, "null")) {
        goto full;
    }
    if (PUTLIT(b, ",\"after\":"))
        goto full;
    if (m->has_new && m->type != 'D') {
        if (row(b, r, &m->newtup, 0, &nunch))
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
            const char *n = r->atts[i].name;
            if ((!first && wh_buf_putc(b, ',')) || wh_json_str(b, n, strlen(n)))
                goto full;
            first = 0;
        }
        if (wh_buf_putc(b, ']'))
            goto full;
    }
    if (wh_buf_putc(b, '}'))
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
        wh_buf_puts(b, (options & 2) ? "true" : "false") || PUTLIT(b, "}}")) {
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
