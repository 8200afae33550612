/* ing_schema: schema versions (the DDL capture's triggers: ing_ddl). */
#include "ing_schema.h"
#include "ing_values.h"

#include <stdlib.h>
#include <string.h>

#include "walhook.pb-c.h"
#include "wh_ipc.h"
#include "wh_util.h"

#define PUTLIT(b, s) wh_buf_append((b), (s), sizeof(s) - 1)

const char *ing_schema_identity_name(char replident)
{
    switch (replident) {
    case 'd':
        return "default";
    case 'n':
        return "nothing";
    case 'f':
        return "full";
    case 'i':
        return "index";
    default:
        return "unknown";
    }
}

static int put_i64(wh_buf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    return wh_buf_append(b, tmp, (size_t)n);
}

/* ,"fields":[{"name":...,"type_oid":...},...] of the composite type that t
 * is or whose elements are (a domain over one has its descriptor), each
 * field's own shape nested; nothing when t reaches no composite type. */
static int put_fields(wh_buf *b, const ing_vtype *t, int depth)
{
    while (t != NULL && t->kind == ING_VT_ARRAY)
        t = t->elem;
    if (t == NULL || t->kind != ING_VT_RECORD || depth >= ING_VALUE_MAXDEPTH)
        return WH_OK;
    if (PUTLIT(b, ",\"fields\":["))
        return WH_ERR;
    for (int i = 0; i < t->nfields; i++) {
        const ing_vfield *f = &t->fields[i];
        /* member is the escaped name and its colon */
        if ((i > 0 && wh_buf_putc(b, ',')) || PUTLIT(b, "{\"name\":") ||
            wh_buf_append(b, f->member, f->member_len - 1) || PUTLIT(b, ",\"type_oid\":") ||
            put_i64(b, f->oid) || put_fields(b, f->type, depth + 1) || wh_buf_putc(b, '}'))
            return WH_ERR;
    }
    return wh_buf_putc(b, ']');
}

int ing_schema_describe(wh_buf *b, const ing_relation *r)
{
    uint8_t km = r->key_pk ? ING_ATTR_PK : ING_ATTR_IDENT;
    if (PUTLIT(b, "{\"schema\":") || wh_json_str(b, r->nspname, strlen(r->nspname)) ||
        PUTLIT(b, ",\"table\":") || wh_json_str(b, r->relname, strlen(r->relname)) ||
        PUTLIT(b, ",\"replica_identity\":\"") ||
        wh_buf_puts(b, ing_schema_identity_name(r->replident)) || PUTLIT(b, "\",\"key_columns\":["))
        return WH_ERR;
    int first = 1;
    for (int i = 0; i < r->natts; i++) {
        if (!(r->atts[i].flags & km))
            continue;
        if ((!first && wh_buf_putc(b, ',')) ||
            wh_json_str(b, r->atts[i].name, strlen(r->atts[i].name)))
            return WH_ERR;
        first = 0;
    }
    if (PUTLIT(b, "],\"columns\":["))
        return WH_ERR;
    for (int i = 0; i < r->natts; i++) {
        const ing_attr *a = &r->atts[i];
        if ((i > 0 && wh_buf_putc(b, ',')) || PUTLIT(b, "{\"name\":") ||
            wh_json_str(b, a->name, strlen(a->name)) || PUTLIT(b, ",\"type_oid\":") ||
            put_i64(b, a->type_oid) || PUTLIT(b, ",\"typmod\":") || put_i64(b, a->typmod) ||
            put_fields(b, a->vtype, 0) || wh_buf_putc(b, '}'))
            return WH_ERR;
    }
    return PUTLIT(b, "]}");
}

uint64_t ing_schema_hash(const void *p, size_t n)
{
    return wh_fnv1a64(WH_FNV1A64_OFFSET, p, n);
}

int ing_schema_version(ing_relation *r, wh_buf *scratch)
{
    r->version = 0;
    r->version_hex[0] = '\0';
    r->version_done = 0;
    wh_buf_reset(scratch);
    if (ing_schema_describe(scratch, r) != WH_OK)
        return WH_ERR;
    r->version = ing_schema_hash(scratch->data, scratch->len);
    snprintf(r->version_hex, sizeof(r->version_hex), "%016llx", (unsigned long long)r->version);
    return WH_OK;
}

/* ---- the registry ---------------------------------------------------------- */

typedef struct known {
    uint64_t fp;
    uint64_t first_lsn;
    uint32_t first_xid;
    int used;
    int gone; /* its first use was a streamed transaction that aborted */
    /* its last schema event on this connection: the transaction (commit
       LSN, 0 when staged; xid) and the connection number */
    uint64_t ann_lsn;
    uint32_t ann_xid, ann_conn;
} known;

/* A staged announcement (ing_schema.h): open streamed transaction xid
 * staged a schema event of version fp at staging index idx, in its
 * (sub)transaction subxid; pending (ing_schema.h, "pending
 * announcements"), or by the transaction that first used the version, sent
 * again (noted only for a subtransaction's abort). */
typedef struct pend {
    uint64_t fp;
    uint32_t xid, subxid, idx;
    int pending;
    char *table, *desc; /* for its registration at the commit */
    size_t dlen;
} pend;

struct ing_schema {
    known *slots;
    size_t nslots, n; /* nslots: a power of two */
    int loaded;
    uint32_t conn; /* ing_schema_new_connection */
    pend *pend;    /* few: only while streamed transactions announce */
    size_t npend, cappend;
};

int ing_schema_new(ing_schema **out, char *err, size_t errlen)
{
    ing_schema *s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->nslots = 64;
        s->slots = calloc(s->nslots, sizeof(*s->slots));
    }
    if (s == NULL || s->slots == NULL) {
        free(s);
        return wh_seterr(err, errlen, "out of memory");
    }
    *out = s;
    return WH_OK;
}

static void pend_remove(ing_schema *s, size_t i)
{
    free(s->pend[i].table);
    free(s->pend[i].desc);
    s->pend[i] = s->pend[--s->npend];
}

void ing_schema_free(ing_schema *s)
{
    if (s == NULL)
        return;
    while (s->npend > 0)
        pend_remove(s, 0);
    free(s->pend);
    free(s->slots);
    free(s);
}

/* The index of xid's staged announcement of fp (xid 0: anyone's; pending:
 * a pending one only), or -1. */
static long pend_find(const ing_schema *s, uint64_t fp, uint32_t xid, int pending)
{
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].fp == fp && (xid == 0 || s->pend[i].xid == xid) &&
            (!pending || s->pend[i].pending))
            return (long)i;
    return -1;
}

static known *slot_of(const ing_schema *s, uint64_t fp)
{
    size_t i = (size_t)(fp ^ (fp >> 29)) & (s->nslots - 1);
    while (s->slots[i].used && s->slots[i].fp != fp)
        i = (i + 1) & (s->nslots - 1);
    return &s->slots[i];
}

int ing_schema_known(ing_schema *s, uint64_t fp, uint64_t first_lsn, uint32_t first_xid)
{
    if ((s->n + 1) * 2 > s->nslots) {
        known *old = s->slots;
        size_t oldn = s->nslots;
        known *ns = calloc(oldn * 2, sizeof(*ns));
        if (ns == NULL)
            return WH_ERR;
        s->slots = ns;
        s->nslots = oldn * 2;
        for (size_t i = 0; i < oldn; i++)
            if (old[i].used)
                *slot_of(s, old[i].fp) = old[i];
        free(old);
    }
    known *k = slot_of(s, fp);
    if (k->used && !k->gone)
        return WH_OK; /* the first registration stays */
    if (k->used) {    /* registered again after its streamed first use aborted */
        *k = (known){.fp = fp, .first_lsn = first_lsn, .first_xid = first_xid, .used = 1};
        return WH_OK;
    }
    *k = (known){.fp = fp, .first_lsn = first_lsn, .first_xid = first_xid, .used = 1};
    s->n++;
    return WH_OK;
}

size_t ing_schema_count(const ing_schema *s)
{
    return s->n;
}

int ing_schema_load(ing_schema *s, const wh_config *cfg, char *err, size_t errlen)
{
    if (s->loaded)
        return WH_OK;
    wh_client *c = NULL;
    Walhook__Reply *rep = NULL;
    int rc = WH_ERR;
    if (wh_client_open(&c, cfg->store_endpoint, cfg->ipc_timeout_ms, (size_t)cfg->ipc_max_msg_bytes,
                       err, errlen) != WH_OK)
        return WH_ERR;
    Walhook__SchemaList sl;
    walhook__schema_list__init(&sl);
    sl.tenant = (char *)cfg->tenant;
    Walhook__Request req;
    walhook__request__init(&req);
    req.body_case = WALHOOK__REQUEST__BODY_SCHEMA_LIST;
    req.schema_list = &sl;
    char cerr[WH_ERRLEN];
    if (wh_client_call(c, &req, &rep, cerr, sizeof(cerr)) != WH_OK) {
        wh_seterr(err, errlen, "reading the schema registry of tenant %s from the store: %s",
                  cfg->tenant, cerr);
        goto out;
    }
    if (rep->status != 0 || rep->body_case != WALHOOK__REPLY__BODY_SCHEMAS || !rep->schemas) {
        wh_seterr(err, errlen, "reading the schema registry of tenant %s from the store: %s",
                  cfg->tenant, rep->status != 0 && rep->error ? rep->error : "no schemas in reply");
        goto out;
    }
    size_t pruned = 0;
    for (size_t i = 0; i < rep->schemas->n_versions; i++) {
        /* a pruned version's tombstone too: known as before the prune (a
         * resend below the GC watermark announces what it did the first
         * time) */
        const Walhook__SchemaVersion *v = rep->schemas->versions[i];
        if (ing_schema_known(s, v->fingerprint, v->first_lsn, v->first_xid) != WH_OK) {
            wh_seterr(err, errlen, "out of memory");
            goto out;
        }
        pruned += v->pruned != 0;
    }
    s->loaded = 1;
    wh_info("schema registry of tenant %s: %zu version%s (%zu pruned)", cfg->tenant, s->n,
            s->n == 1 ? "" : "s", pruned);
    rc = WH_OK;
out:
    if (rep)
        walhook__reply__free_unpacked(rep, NULL);
    wh_client_close(c);
    return rc;
}

void ing_schema_new_connection(ing_schema *s)
{
    s->conn++;
}

/* k's first use by open transaction xid is dropped: it passes to another
 * open transaction that announced it too, or k is unknown again (1). */
static int first_use_dropped(ing_schema *s, known *k)
{
    long o = pend_find(s, k->fp, 0, 1);
    if (o >= 0) { /* another open transaction announced it too */
        k->first_xid = s->pend[o].xid;
        return 0;
    }
    k->gone = 1; /* kept in its probe chain; unknown to announce */
    return 1;
}

size_t ing_schema_forget_xid(ing_schema *s, uint32_t xid)
{
    for (size_t i = s->npend; i-- > 0;)
        if (s->pend[i].xid == xid)
            pend_remove(s, i);
    size_t n = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        known *k = &s->slots[i];
        if (k->used && !k->gone && k->first_lsn == 0 && k->first_xid == xid)
            n += (size_t)first_use_dropped(s, k);
    }
    return n;
}

size_t ing_schema_forget_sub(ing_schema *s, uint32_t xid, uint32_t subxid)
{
    size_t n = 0;
    for (size_t i = s->npend; i-- > 0;) {
        if (s->pend[i].xid != xid || s->pend[i].subxid != subxid)
            continue;
        known *k = slot_of(s, s->pend[i].fp);
        pend_remove(s, i);
        n++;
        if (k->used && !k->gone && k->first_lsn == 0 && k->first_xid == xid)
            first_use_dropped(s, k);
    }
    return n;
}

int ing_schema_staged_add(ing_schema *s, uint64_t fp, uint32_t xid, uint32_t subxid, uint32_t idx,
                          int pending, const char *table, const char *desc, size_t dlen)
{
    if (wh_grow(&s->pend, s->npend + 1, &s->cappend, sizeof(*s->pend), 8) != WH_OK)
        return WH_ERR;
    pend *p = &s->pend[s->npend];
    *p = (pend){.fp = fp,
                .xid = xid,
                .subxid = subxid,
                .idx = idx,
                .pending = pending != 0,
                .table = strdup(table),
                .desc = malloc(dlen ? dlen : 1),
                .dlen = dlen};
    if (p->table == NULL || p->desc == NULL) {
        free(p->table);
        free(p->desc);
        return WH_ERR;
    }
    memcpy(p->desc, desc, dlen);
    s->npend++;
    return WH_OK;
}

int ing_schema_take(ing_schema *s, uint64_t fp, uint64_t lsn, uint32_t xid, ing_schema_drop_fn drop,
                    void *arg)
{
    known *k = slot_of(s, fp);
    if (k->used) {
        k->first_lsn = lsn;
        k->first_xid = xid;
        k->gone = 0;
    }
    int rc = WH_OK;
    for (long i; (i = pend_find(s, fp, 0, 1)) >= 0;) {
        if (rc == WH_OK && s->pend[i].xid != xid)
            rc = drop(arg, s->pend[i].xid, s->pend[i].idx);
        pend_remove(s, (size_t)i);
    }
    return rc;
}

int ing_schema_commit_xid(ing_schema *s, uint32_t xid, uint64_t lsn, ing_schema_drop_fn drop,
                          ing_schema_reg_fn reg, void *arg)
{
    for (size_t i = 0; i < s->npend; i++) {
        if (s->pend[i].xid != xid)
            continue;
        if (!s->pend[i].pending) {
            pend_remove(s, i);
            i = (size_t)-1;
            continue;
        }
        uint64_t fp = s->pend[i].fp;
        if (reg(arg, s->pend[i].table, fp, s->pend[i].desc, s->pend[i].dlen) != WH_OK ||
            ing_schema_take(s, fp, lsn, xid, drop, arg) != WH_OK)
            return WH_ERR;
        i = (size_t)-1; /* the list changed: from its start again */
    }
    return WH_OK;
}

int ing_schema_announce(ing_schema *s, ing_relation *r, uint64_t commit_lsn, uint32_t xid, int mode)
{
    r->version_done = 1;
    if (r->version_hex[0] == '\0')
        return 0;
    int staged = mode == ING_SCHEMA_STAGED, flags = ING_SCHEMA_EMIT;
    uint64_t lsn = staged ? 0 : commit_lsn;
    known *k = slot_of(s, r->version);
    if (!k->used || k->gone) {
        /* gone: the store may still list the dropped first use (a
         * subtransaction's abort drops nothing there): it moves */
        int moves = k->used && mode == ING_SCHEMA_WHOLE;
        if (ing_schema_known(s, r->version, lsn, xid) != WH_OK) {
            r->version_done = 0; /* out of memory: tried again at the next change */
            return 0;
        }
        k = slot_of(s, r->version); /* the table may have grown */
        flags |= staged ? ING_SCHEMA_PENDING : moves ? ING_SCHEMA_TAKES : 0;
    } else if (staged && pend_find(s, r->version, xid, 0) >= 0) {
        return 0; /* announced in this transaction already */
    } else if (k->first_xid == xid && (k->first_lsn == lsn || k->first_lsn == 0 || lsn == 0)) {
        /* the transaction that first used it (sent again after a
         * reconnect or a crash: the same events at the same positions). It
         * is matched by its xid when either use was staged (a streamed
         * transaction's commit LSN is not known yet): PostgreSQL may send
         * it whole the first time and streamed the next, or the reverse,
         * and both must carry the schema event */
        if (!staged && k->ann_conn == s->conn && k->ann_lsn == lsn && k->ann_xid == xid)
            return 0; /* a second Relation message of it in the transaction (e.g. at a TRUNCATE) */
    } else if (mode != ING_SCHEMA_SNAPSHOT && k->first_lsn == 0 &&
               pend_find(s, r->version, k->first_xid, 1) >= 0) {
        /* first used by a streamed transaction still open (ing_schema.h,
         * "pending announcements") */
        flags |= staged ? ING_SCHEMA_PENDING : ING_SCHEMA_TAKES;
    } else {
        return 0; /* announced by an earlier transaction */
    }
    /* new, or the transaction that first used it sent again (after a
     * reconnect or a crash): the same events at the same positions */
    k->ann_lsn = lsn;
    k->ann_xid = xid;
    k->ann_conn = s->conn;
    return flags;
}

int ing_schema_first_use(const ing_schema *s, uint64_t fp, uint64_t *first_lsn, uint32_t *first_xid)
{
    const known *k = slot_of(s, fp);
    if (!k->used || k->gone)
        return 0;
    *first_lsn = k->first_lsn;
    *first_xid = k->first_xid;
    return 1;
}

const char *ing_schema_table(const ing_relation *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", r->nspname, r->relname);
    return buf;
}

int ing_schema_field(wh_buf *out, const ing_relation *r, const char *desc, size_t dlen,
                     uint64_t first_lsn, uint32_t first_xid, uint64_t started_lsn,
                     uint32_t started_xid, int first_use_moves)
{
    char table[ING_SCHEMA_TABLE_MAX];
    ing_schema_table(r, table, sizeof(table));
    Walhook__SchemaVersion v;
    walhook__schema_version__init(&v);
    v.table = table;
    v.fingerprint = r->version;
    v.first_lsn = first_lsn;
    v.first_xid = first_xid;
    v.description.data = (uint8_t *)desc;
    v.description.len = dlen;
    v.started_lsn = started_lsn;
    v.started_xid = started_xid;
    v.first_use_moves = first_use_moves != 0;
    size_t n = walhook__schema_version__get_packed_size(&v);
    /* AppendBatch.schemas = 30, length-delimited: tag (30 << 3 | 2) */
    uint8_t head[2 + 10];
    size_t hl = 0;
    head[hl++] = 0xf2;
    head[hl++] = 0x01;
    uint64_t x = n;
    while (x >= 0x80) {
        head[hl++] = (uint8_t)(x | 0x80);
        x >>= 7;
    }
    head[hl++] = (uint8_t)x;
    if (wh_buf_append(out, head, hl) != WH_OK || wh_buf_reserve(out, n) != WH_OK)
        return WH_ERR;
    walhook__schema_version__pack(&v, (uint8_t *)out->data + out->len);
    out->len += n;
    return WH_OK;
}
