/* ing_pgoutput: bounds-checked parser of pgoutput messages (protocol 1,
 * and 2's streamed transactions). */
#include "ing_pgoutput.h"

#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_lsn.h"
#include "wh_util.h"

struct ing_parser {
    /* relation cache: open addressing, linear probing, keyed by OID */
    ing_relation **slots;
    size_t nslots; /* power of two */
    size_t nrels;
    /* reusable tuple storage */
    ing_col *oldcols, *newcols;
    int oldcap, newcap;
    uint32_t *oids;
    int oidcap;
    int in_stream; /* between Stream Start and Stream Stop */
    uint32_t conn; /* connection number (ing_parser_new_connection) */
};

/* A read cursor over one message. */
typedef struct cur {
    const uint8_t *p;
    size_t len, off;
    char type;
    char *err;
    size_t errlen;
} cur;

static int cur_fail(cur *c, const char *what)
{
    return wh_seterr(c->err, c->errlen, "pgoutput message '%c': %s at offset %zu (length %zu)",
                     (c->type >= 32 && c->type < 127) ? c->type : '?', what, c->off, c->len);
}

static int rd_u8(cur *c, uint8_t *v)
{
    if (c->len - c->off < 1)
        return cur_fail(c, "truncated (need 1 byte)");
    *v = c->p[c->off++];
    return WH_OK;
}

static int rd_u16(cur *c, uint16_t *v)
{
    if (c->len - c->off < 2)
        return cur_fail(c, "truncated (need int16)");
    *v = wh_get_be16(c->p + c->off);
    c->off += 2;
    return WH_OK;
}

static int rd_u32(cur *c, uint32_t *v)
{
    if (c->len - c->off < 4)
        return cur_fail(c, "truncated (need int32)");
    *v = wh_get_be32(c->p + c->off);
    c->off += 4;
    return WH_OK;
}

static int rd_u64(cur *c, uint64_t *v)
{
    if (c->len - c->off < 8)
        return cur_fail(c, "truncated (need int64)");
    *v = wh_get_be64(c->p + c->off);
    c->off += 8;
    return WH_OK;
}

/* A NUL-terminated string inside the buffer. */
static int rd_str(cur *c, const char **s)
{
    const void *nul = memchr(c->p + c->off, '\0', c->len - c->off);
    if (!nul)
        return cur_fail(c, "unterminated string");
    *s = (const char *)(c->p + c->off);
    c->off = (size_t)((const uint8_t *)nul - c->p) + 1;
    return WH_OK;
}

static int64_t pg_ts_to_unix(uint64_t v)
{
    int64_t t = (int64_t)v;
    /* Clamp absurd values rather than overflow. */
    if (t > INT64_MAX - ING_PG_EPOCH_OFFSET_US)
        return INT64_MAX;
    if (t < INT64_MIN + ING_PG_EPOCH_OFFSET_US)
        return INT64_MIN;
    return t + ING_PG_EPOCH_OFFSET_US;
}

int ing_parser_new(ing_parser **out, char *err, size_t errlen)
{
    ing_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return wh_seterr(err, errlen, "out of memory");
    p->nslots = 64;
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    if (!p->slots) {
        free(p);
        return wh_seterr(err, errlen, "out of memory");
    }
    *out = p;
    return WH_OK;
}

static void rel_free(ing_relation *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->natts; i++) {
        free(r->atts[i].name);
        free(r->atts[i].member);
    }
    free(r->atts);
    free(r->nspname);
    free(r->relname);
    free(r);
}

void ing_parser_free(ing_parser *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nslots; i++)
        rel_free(p->slots[i]);
    free(p->slots);
    free(p->oldcols);
    free(p->newcols);
    free(p->oids);
    free(p);
}

static size_t slot_of(const ing_parser *p, uint32_t oid)
{
    size_t i = (size_t)(oid * 2654435761u) & (p->nslots - 1);
    while (p->slots[i] && p->slots[i]->oid != oid)
        i = (i + 1) & (p->nslots - 1);
    return i;
}

const ing_relation *ing_relation_get(const ing_parser *p, uint32_t oid)
{
    const ing_relation *r = p->slots[slot_of(p, oid)];
    return r != NULL && r->conn == p->conn ? r : NULL;
}

ing_relation *ing_relation_mut(ing_parser *p, uint32_t oid)
{
    ing_relation *r = p->slots[slot_of(p, oid)];
    return r != NULL && r->conn == p->conn ? r : NULL;
}

const ing_relation *ing_relation_next(const ing_parser *p, size_t *pos)
{
    while (*pos < p->nslots) {
        const ing_relation *r = p->slots[(*pos)++];
        if (r != NULL && r->conn == p->conn)
            return r;
    }
    return NULL;
}

size_t ing_relation_count(const ing_parser *p)
{
    return p->nrels;
}

int ing_relation_set_pk(ing_parser *p, uint32_t oid, const char *const *names, int n, char *err,
                        size_t errlen)
{
    ing_relation *r = p->slots[slot_of(p, oid)];
    if (!r)
        return wh_seterr(err, errlen, "relation OID %u is not cached", oid);
    r->key_pk = 0;
    for (int i = 0; i < r->natts; i++)
        r->atts[i].flags &= (uint8_t)~ING_ATTR_PK;
    if (n < 1)
        return wh_seterr(err, errlen, "no primary key column");
    for (int k = 0; k < n; k++) {
        int found = 0;
        for (int i = 0; i < r->natts && !found; i++) {
            if (strcmp(r->atts[i].name, names[k]) == 0) {
                r->atts[i].flags |= ING_ATTR_PK;
                found = 1;
            }
        }
        if (!found) {
            for (int i = 0; i < r->natts; i++)
                r->atts[i].flags &= (uint8_t)~ING_ATTR_PK;
            return wh_seterr(err, errlen,
                             "primary key column \"%s\" of %s.%s is not in its Relation message",
                             names[k], r->nspname, r->relname);
        }
    }
    r->key_pk = 1;
    return WH_OK;
}

int ing_relation_set_vtype(ing_parser *p, uint32_t oid, int att, const struct ing_vtype *vt)
{
    ing_relation *r = p->slots[slot_of(p, oid)];
    if (!r || att < 0 || att >= r->natts)
        return WH_ERR;
    r->atts[att].vtype = vt;
    return WH_OK;
}

static int cache_put(ing_parser *p, ing_relation *r, char *err, size_t errlen)
{
    if ((p->nrels + 1) * 2 > p->nslots) {
        size_t n = p->nslots * 2;
        ing_relation **ns = calloc(n, sizeof(*ns));
        if (!ns)
            return wh_seterr(err, errlen, "out of memory");
        ing_relation **old = p->slots;
        size_t oldn = p->nslots;
        p->slots = ns;
        p->nslots = n;
        for (size_t i = 0; i < oldn; i++)
            if (old[i])
                p->slots[slot_of(p, old[i]->oid)] = old[i];
        free(old);
    }
    size_t i = slot_of(p, r->oid);
    if (p->slots[i])
        rel_free(p->slots[i]);
    else
        p->nrels++;
    p->slots[i] = r;
    return WH_OK;
}

/* a->member = the column name escaped as a JSON member, "name": (once per
 * Relation message, instead of per value rendered) */
static int member_of(ing_attr *a)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    if (wh_json_str(&b, a->name, strlen(a->name)) != WH_OK || wh_buf_putc(&b, ':') != WH_OK) {
        wh_buf_free(&b);
        return WH_ERR;
    }
    a->member = b.data;
    a->member_len = b.len;
    return WH_OK;
}

static int parse_relation(ing_parser *p, cur *c, ing_msg *m)
{
    uint32_t oid = 0;
    const char *nsp = NULL, *name = NULL;
    uint8_t ident = 0;
    uint16_t natts = 0;
    if (rd_u32(c, &oid) || rd_str(c, &nsp) || rd_str(c, &name) || rd_u8(c, &ident) ||
        rd_u16(c, &natts))
        return WH_ERR;
    /* each attribute needs at least 10 bytes: flags, "\0", typoid, typmod */
    if ((size_t)natts * 10 > c->len - c->off)
        return cur_fail(c, "attribute count exceeds message");
    ing_relation *r = calloc(1, sizeof(*r));
    if (!r)
        return cur_fail(c, "out of memory");
    r->oid = oid;
    r->conn = p->conn;
    r->replident = (char)ident;
    r->nspname = strdup(nsp);
    r->relname = strdup(name);
    r->atts = calloc(natts ? natts : 1, sizeof(*r->atts));
    if (!r->nspname || !r->relname || !r->atts) {
        rel_free(r);
        return cur_fail(c, "out of memory");
    }
    for (int i = 0; i < natts; i++) {
        uint8_t fl = 0;
        const char *an = NULL;
        uint32_t typ = 0, mod = 0;
        if (rd_u8(c, &fl) || rd_str(c, &an) || rd_u32(c, &typ) || rd_u32(c, &mod)) {
            rel_free(r);
            return WH_ERR;
        }
        r->atts[i].flags = fl & ING_ATTR_IDENT;
        r->atts[i].type_oid = typ;
        r->atts[i].typmod = (int32_t)mod;
        r->atts[i].name = strdup(an);
        r->natts = i + 1;
        if (!r->atts[i].name || member_of(&r->atts[i]) != WH_OK) {
            rel_free(r);
            return cur_fail(c, "out of memory");
        }
    }
    if (cache_put(p, r, c->err, c->errlen) != WH_OK) {
        rel_free(r);
        return WH_ERR;
    }
    m->rel = r;
    m->rel_oid = oid;
    return WH_OK;
}

static int parse_tuple(cur *c, ing_tuple *t, ing_col **cols, int *cap)
{
    uint16_t n = 0;
    if (rd_u16(c, &n))
        return WH_ERR;
    if ((size_t)n > c->len - c->off)
        return cur_fail(c, "column count exceeds message");
    if (n > *cap) {
        int nc = n < 64 ? 64 : n;
        ing_col *nb = realloc(*cols, (size_t)nc * sizeof(ing_col));
        if (!nb)
            return cur_fail(c, "out of memory");
        *cols = nb;
        *cap = nc;
    }
    t->cols = *cols;
    t->ncols = n;
    for (int i = 0; i < n; i++) {
        uint8_t k = 0;
        ing_col *col = &t->cols[i];
        if (rd_u8(c, &k))
            return WH_ERR;
        col->kind = (char)k;
        col->len = 0;
        col->data = NULL;
        switch (k) {
        case 'n':
        case 'u':
            break;
        case 't':
        case 'b': {
            uint32_t l = 0;
            if (rd_u32(c, &l))
                return WH_ERR;
            if (l > c->len - c->off)
                return cur_fail(c, "column value exceeds message");
            col->len = l;
            col->data = (const char *)(c->p + c->off);
            c->off += l;
            break;
        }
        default:
            c->off--;
            return cur_fail(c, "unknown tuple column kind");
        }
    }
    return WH_OK;
}

static int parse_change(ing_parser *p, cur *c, ing_msg *m)
{
    uint8_t k = 0;
    if (rd_u32(c, &m->rel_oid))
        return WH_ERR;
    m->rel = ing_relation_get(p, m->rel_oid);
    if (rd_u8(c, &k))
        return WH_ERR;
    if (c->type == 'I') {
        if (k != 'N') {
            c->off--;
            return cur_fail(c, "expected 'N' tuple");
        }
        m->has_new = 1;
        return parse_tuple(c, &m->newtup, &p->newcols, &p->newcap);
    }
    if (k == 'K' || k == 'O') {
        m->old_kind = (char)k;
        if (parse_tuple(c, &m->oldtup, &p->oldcols, &p->oldcap))
            return WH_ERR;
        if (c->type == 'D')
            return WH_OK;
        if (rd_u8(c, &k))
            return WH_ERR;
    } else if (c->type == 'D') {
        c->off--;
        return cur_fail(c, "expected 'K' or 'O' tuple");
    }
    if (k != 'N') {
        c->off--;
        return cur_fail(c, "expected 'N' tuple");
    }
    m->has_new = 1;
    return parse_tuple(c, &m->newtup, &p->newcols, &p->newcap);
}

static int parse_truncate(ing_parser *p, cur *c, ing_msg *m)
{
    uint32_t n = 0;
    if (rd_u32(c, &n) || rd_u8(c, &m->flags))
        return WH_ERR;
    if ((uint64_t)n * 4 > c->len - c->off)
        return cur_fail(c, "relation count exceeds message");
    if ((int64_t)n > p->oidcap) {
        uint32_t *nb = realloc(p->oids, (n ? n : 1) * sizeof(uint32_t));
        if (!nb)
            return cur_fail(c, "out of memory");
        p->oids = nb;
        p->oidcap = (int)n;
    }
    for (uint32_t i = 0; i < n; i++)
        rd_u32(c, &p->oids[i]);
    m->nrels = (int)n;
    m->rel_oids = p->oids;
    return WH_OK;
}

int ing_parse(ing_parser *p, const uint8_t *buf, size_t len, ing_msg *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    cur c = {.p = buf, .len = len, .off = 0, .type = '?', .err = err, .errlen = errlen};
    if (!buf || len < 1)
        return wh_seterr(err, errlen, "pgoutput message: empty at offset 0");
    c.type = (char)buf[0];
    c.off = 1;
    m->type = c.type;
    int rc;
    uint64_t u64 = 0;
    /* protocol 2: inside a stream block the messages of the transaction
     * carry the xid of the (sub)transaction that made them */
    if (p->in_stream && strchr("RYIUDTM", c.type) != NULL && rd_u32(&c, &m->xid))
        return WH_ERR;
    switch (c.type) {
    case 'S':
        if (p->in_stream)
            return cur_fail(&c, "stream start inside a stream");
        rc = rd_u32(&c, &m->xid) || rd_u8(&c, &m->flags);
        if (!rc)
            p->in_stream = 1;
        break;
    case 'E':
        if (!p->in_stream)
            return cur_fail(&c, "stream stop outside a stream");
        p->in_stream = 0;
        rc = WH_OK;
        break;
    case 'c':
        if (p->in_stream)
            return cur_fail(&c, "stream commit inside a stream");
        rc = rd_u32(&c, &m->xid) || rd_u8(&c, &m->flags) || rd_u64(&c, &m->commit_lsn) ||
             rd_u64(&c, &m->end_lsn) || rd_u64(&c, &u64);
        if (!rc)
            m->commit_ts_us = pg_ts_to_unix(u64);
        break;
    case 'A':
        if (p->in_stream)
            return cur_fail(&c, "stream abort inside a stream");
        rc = rd_u32(&c, &m->xid) || rd_u32(&c, &m->subxid);
        break;
    case 'B':
        rc = rd_u64(&c, &m->final_lsn) || rd_u64(&c, &u64) || rd_u32(&c, &m->xid);
        if (!rc)
            m->commit_ts_us = pg_ts_to_unix(u64);
        break;
    case 'C':
        rc = rd_u8(&c, &m->flags) || rd_u64(&c, &m->commit_lsn) || rd_u64(&c, &m->end_lsn) ||
             rd_u64(&c, &u64);
        if (!rc)
            m->commit_ts_us = pg_ts_to_unix(u64);
        break;
    case 'O':
        rc = rd_u64(&c, &m->lsn) || rd_str(&c, &m->name);
        break;
    case 'Y': {
        uint32_t oid = 0;
        rc = rd_u32(&c, &oid) || rd_str(&c, &m->nspname) || rd_str(&c, &m->name);
        m->rel_oid = oid;
        break;
    }
    case 'R':
        rc = parse_relation(p, &c, m);
        break;
    case 'I':
    case 'U':
    case 'D':
        rc = parse_change(p, &c, m);
        break;
    case 'T':
        rc = parse_truncate(p, &c, m);
        break;
    case 'M': {
        uint32_t l = 0;
        rc = rd_u8(&c, &m->flags) || rd_u64(&c, &m->lsn) || rd_str(&c, &m->name) || rd_u32(&c, &l);
        if (!rc) {
            if (l > c.len - c.off) {
                rc = cur_fail(&c, "message content exceeds message");
            } else {
                m->content = buf + c.off;
                m->content_len = l;
                c.off += l;
            }
        }
        break;
    }
    default:
        c.off = 0;
        return cur_fail(&c, "unknown message type");
    }
    if (rc)
        return WH_ERR;
    if (c.off != c.len)
        return cur_fail(&c, "trailing bytes");
    return WH_OK;
}

int ing_parser_in_stream(const ing_parser *p)
{
    return p->in_stream;
}

void ing_parser_stream_reset(ing_parser *p)
{
    p->in_stream = 0;
}

void ing_parser_versions_reset(ing_parser *p)
{
    for (size_t i = 0; i < p->nslots; i++)
        if (p->slots[i] != NULL)
            p->slots[i]->version_done = 0;
}

void ing_parser_new_connection(ing_parser *p)
{
    p->in_stream = 0;
    p->conn++;
}
