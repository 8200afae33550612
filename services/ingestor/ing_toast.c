/* ing_toast: a bounded LRU of TOASTed column values (see ing_toast.h). */
#include "ing_toast.h"

#include <stdlib.h>
#include <string.h>

#include "ing_tstore.h"
#include "wh_util.h"

typedef struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU list: head = most recent */
    uint64_t hash;
    uint64_t lsn; /* commit LSN of the transaction that wrote it */
    uint32_t oid;
    uint32_t keylen, namelen, vallen;
    char data[]; /* key, column name, value */
} entry;

/* What the cache knows of one relation OID: its column fingerprint, its
 * entry count, and the columns seen unchanged (by name). */
typedef struct relinfo {
    uint32_t oid;
    uint64_t fingerprint;
    size_t nentries;
    char **marked;
    int nmarked;
} relinfo;

struct ing_toast {
    size_t max_bytes, bytes, count;
    entry **buckets;
    size_t nbuckets; /* a power of two */
    entry *head, *tail;
    relinfo *rels;
    size_t nrels, caprels;
    int nmarked; /* marked columns over every relation */
    wh_buf keybuf;
    ing_toast_stats *st;
    ing_tstore *ts; /* the store-backed level (NULL: none) */
};

static uint64_t entry_hash(uint32_t oid, const char *key, size_t keylen, const char *name,
                           size_t namelen)
{
    uint64_t h = wh_fnv1a64(WH_FNV1A64_OFFSET, &oid, sizeof(oid));
    h = wh_fnv1a64(h, key, keylen);
    h = wh_fnv1a64(h, "", 1); /* a separator: key "ab" + name "c" is not key "a" + name "bc" */
    return wh_fnv1a64(h, name, namelen);
}

static size_t entry_size(const entry *e)
{
    return sizeof(*e) + e->keylen + e->namelen + e->vallen;
}

static void publish(ing_toast *c)
{
    if (c->st) {
        wh_gauge_set(&c->st->bytes, (int64_t)c->bytes);
        wh_gauge_set(&c->st->entries, (int64_t)c->count);
    }
}

int ing_toast_new(ing_toast **out, size_t max_bytes, ing_toast_stats *st, char *err, size_t errlen)
{
    ing_toast *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return wh_seterr(err, errlen, "out of memory");
    c->max_bytes = max_bytes;
    c->st = st;
    wh_buf_init(&c->keybuf, ING_TOAST_MAX_KEY);
    *out = c;
    return WH_OK;
}

static relinfo *rel_find(const ing_toast *c, uint32_t oid)
{
    for (size_t i = 0; i < c->nrels; i++)
        if (c->rels[i].oid == oid)
            return &c->rels[i];
    return NULL;
}

static uint64_t fingerprint(const ing_relation *rel);

/* The relinfo of rel, made (with rel's fingerprint) when missing; NULL
 * when out of memory. */
static relinfo *rel_get(ing_toast *c, const ing_relation *rel)
{
    relinfo *ri = rel_find(c, rel->oid);
    if (ri != NULL)
        return ri;
    if (c->nrels == c->caprels) {
        size_t cap = c->caprels ? c->caprels * 2 : 8;
        relinfo *n = realloc(c->rels, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        c->rels = n;
        c->caprels = cap;
    }
    ri = &c->rels[c->nrels++];
    memset(ri, 0, sizeof(*ri));
    ri->oid = rel->oid;
    ri->fingerprint = fingerprint(rel);
    return ri;
}

static void marks_clear(ing_toast *c, relinfo *ri)
{
    c->nmarked -= ri->nmarked;
    for (int i = 0; i < ri->nmarked; i++)
        free(ri->marked[i]);
    free(ri->marked);
    ri->marked = NULL;
    ri->nmarked = 0;
}

static void unlink_entry(ing_toast *c, entry *e)
{
    entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    c->bytes -= entry_size(e);
    c->count--;
    relinfo *ri = rel_find(c, e->oid);
    if (ri != NULL && ri->nentries > 0)
        ri->nentries--;
    free(e);
}

static void mem_clear(ing_toast *c);

void ing_toast_clear(ing_toast *c)
{
    if (c == NULL)
        return;
    ing_tstore_clear(c->ts);
    mem_clear(c);
}

static void mem_clear(ing_toast *c)
{
    while (c->head)
        unlink_entry(c, c->head);
    for (size_t i = 0; i < c->nrels; i++)
        marks_clear(c, &c->rels[i]);
    c->nrels = 0;
    publish(c);
}

void ing_toast_free(ing_toast *c)
{
    if (c == NULL)
        return;
    mem_clear(c);
    ing_tstore_free(c->ts);
    free(c->rels);
    free(c->buckets);
    wh_buf_free(&c->keybuf);
    free(c);
}

wh_buf *ing_toast_keybuf(ing_toast *c)
{
    if (c == NULL)
        return NULL;
    wh_buf_reset(&c->keybuf);
    return &c->keybuf;
}

int ing_toast_empty(const ing_toast *c)
{
    return c == NULL || (c->count == 0 && !ing_tstore_may_hold(c->ts));
}

static int is_marked(const relinfo *ri, const char *name)
{
    for (int i = 0; i < ri->nmarked; i++)
        if (strcmp(ri->marked[i], name) == 0)
            return 1;
    return 0;
}

int ing_toast_wanted(const ing_toast *c, const ing_relation *rel, int col, size_t len)
{
    if (c == NULL || c->max_bytes == 0)
        return 0;
    if (len >= ING_TOAST_MIN_VALUE)
        return 1;
    if (c->nmarked == 0)
        return 0;
    const relinfo *ri = rel_find(c, rel->oid);
    return ri != NULL && ri->nmarked > 0 && is_marked(ri, rel->atts[col].name);
}

static entry *lookup(const ing_toast *c, uint64_t h, uint32_t oid, const char *key, size_t keylen,
                     const char *name, size_t namelen)
{
    if (c->nbuckets == 0)
        return NULL;
    for (entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->oid == oid && e->keylen == keylen && e->namelen == namelen &&
            memcmp(e->data, key, keylen) == 0 && memcmp(e->data + keylen, name, namelen) == 0)
            return e;
    return NULL;
}

static int grow(ing_toast *c)
{
    size_t n = c->nbuckets ? c->nbuckets * 2 : 256;
    entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return WH_ERR;
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry *e = c->buckets[i];
        while (e) {
            entry *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    return WH_OK;
}

static void forget_one(ing_toast *c, uint32_t oid, const char *key, size_t keylen, const char *name)
{
    size_t namelen = strlen(name);
    entry *e =
        lookup(c, entry_hash(oid, key, keylen, name, namelen), oid, key, keylen, name, namelen);
    if (e != NULL)
        unlink_entry(c, e);
}

static int mem_put(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen, int col,
                   const char *json, size_t jsonlen, uint64_t lsn);

int ing_toast_put(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen, int col,
                  const char *json, size_t jsonlen, uint64_t lsn)
{
    if (c == NULL || c->max_bytes == 0)
        return WH_OK;
    ing_tstore_put(c->ts, rel, key, keylen, col, json, jsonlen, lsn);
    return mem_put(c, rel, key, keylen, col, json, jsonlen, lsn);
}

static int mem_put(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen, int col,
                   const char *json, size_t jsonlen, uint64_t lsn)
{
    const char *name = rel->atts[col].name;
    size_t namelen = strlen(name);
    uint64_t h = entry_hash(rel->oid, key, keylen, name, namelen);
    entry *old = lookup(c, h, rel->oid, key, keylen, name, namelen);
    if (old != NULL)
        unlink_entry(c, old);
    size_t need = sizeof(entry) + keylen + namelen + jsonlen;
    if (need > c->max_bytes || keylen > UINT32_MAX || jsonlen > UINT32_MAX) {
        publish(c);
        return WH_OK; /* never kept: a later "unchanged" is listed as such */
    }
    relinfo *ri = rel_get(c, rel);
    if (ri == NULL || ((c->count + 1) * 4 > c->nbuckets * 3 && grow(c) != WH_OK))
        return WH_ERR;
    while (c->bytes + need > c->max_bytes && c->tail) {
        unlink_entry(c, c->tail);
        if (c->st)
            wh_counter_add(&c->st->evicted, 1);
    }
    entry *e = malloc(need);
    if (e == NULL)
        return WH_ERR;
    e->hash = h;
    e->lsn = lsn;
    e->oid = rel->oid;
    e->keylen = (uint32_t)keylen;
    e->namelen = (uint32_t)namelen;
    e->vallen = (uint32_t)jsonlen;
    memcpy(e->data, key, keylen);
    memcpy(e->data + keylen, name, namelen);
    memcpy(e->data + keylen + namelen, json, jsonlen);
    e->hnext = c->buckets[h & (c->nbuckets - 1)];
    c->buckets[h & (c->nbuckets - 1)] = e;
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
    c->bytes += need;
    c->count++;
    ri = rel_find(c, rel->oid); /* grow() does not move rels, but be plain about it */
    ri->nentries++;
    publish(c);
    return WH_OK;
}

const char *ing_toast_get(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen,
                          int col, size_t *len)
{
    if (c == NULL || c->max_bytes == 0)
        return NULL;
    const char *name = rel->atts[col].name;
    relinfo *ri = rel_get(c, rel);
    if (ri != NULL && !is_marked(ri, name)) {
        char *copy = strdup(name);
        char **m = copy ? realloc(ri->marked, (size_t)(ri->nmarked + 1) * sizeof(*m)) : NULL;
        if (m != NULL) {
            ri->marked = m;
            ri->marked[ri->nmarked++] = copy;
            c->nmarked++;
        } else {
            free(copy); /* not marked: only values >= ING_TOAST_MIN_VALUE are kept */
        }
    }
    size_t namelen = strlen(name);
    entry *e = lookup(c, entry_hash(rel->oid, key, keylen, name, namelen), rel->oid, key, keylen,
                      name, namelen);
    if (e == NULL)
        return NULL;
    if (e != c->head) { /* most recently used */
        e->prev->next = e->next;
        if (e->next)
            e->next->prev = e->prev;
        else
            c->tail = e->prev;
        e->prev = NULL;
        e->next = c->head;
        c->head->prev = e;
        c->head = e;
    }
    *len = e->vallen;
    return e->data + e->keylen + e->namelen;
}

void ing_toast_forget_row(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen)
{
    if (c == NULL)
        return;
    ing_tstore_forget_row(c->ts, rel, key, keylen);
    if (c->count == 0)
        return;
    const relinfo *ri = rel_find(c, rel->oid);
    if (ri == NULL || ri->nentries == 0)
        return;
    for (int i = 0; i < rel->natts; i++)
        forget_one(c, rel->oid, key, keylen, rel->atts[i].name);
    publish(c);
}

void ing_toast_forget(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen,
                      int col)
{
    if (c == NULL)
        return;
    ing_tstore_forget(c->ts, rel, key, keylen, col);
    if (c->count == 0)
        return;
    const relinfo *ri = rel_find(c, rel->oid);
    if (ri == NULL || ri->nentries == 0)
        return;
    forget_one(c, rel->oid, key, keylen, rel->atts[col].name);
    publish(c);
}

void ing_toast_note(ing_toast *c, int what)
{
    if (c == NULL || c->st == NULL)
        return;
    wh_counter_add(what == ING_TOAST_HIT        ? &c->st->hits
                   : what == ING_TOAST_FROM_OLD ? &c->st->from_old
                   : what == ING_TOAST_STORE    ? &c->st->from_store
                                                : &c->st->misses,
                   1);
}

/* Drops the entries for which drop(e, arg) is true. */
static void drop_where(ing_toast *c, int (*drop)(const entry *, uint64_t), uint64_t arg)
{
    entry *e = c->head;
    while (e) {
        entry *next = e->next;
        if (drop(e, arg))
            unlink_entry(c, e);
        e = next;
    }
    publish(c);
}

static int of_rel(const entry *e, uint64_t oid)
{
    return e->oid == (uint32_t)oid;
}

static int after_lsn(const entry *e, uint64_t lsn)
{
    return e->lsn >= lsn; /* a transaction committing at lsn is sent again */
}

static void mem_forget_rel(ing_toast *c, uint32_t oid);

void ing_toast_forget_rel(ing_toast *c, uint32_t oid)
{
    if (c == NULL)
        return;
    ing_tstore_forget_rel(c->ts, oid);
    mem_forget_rel(c, oid);
}

/* ing_toast_forget_rel in memory only (the store's level decides itself,
 * ing_tstore_relation). */
static void mem_forget_rel(ing_toast *c, uint32_t oid)
{
    const relinfo *ri = rel_find(c, oid);
    if (ri != NULL && ri->nentries > 0)
        drop_where(c, of_rel, oid);
}

void ing_toast_rewind(ing_toast *c, uint64_t lsn)
{
    if (c != NULL)
        ing_tstore_session(c->ts);
    if (c != NULL && c->count > 0)
        drop_where(c, after_lsn, lsn);
}

static uint64_t fingerprint(const ing_relation *rel)
{
    uint64_t h = wh_fnv1a64(WH_FNV1A64_OFFSET, &rel->natts, sizeof(rel->natts));
    for (int i = 0; i < rel->natts; i++) {
        const ing_attr *a = &rel->atts[i];
        h = wh_fnv1a64(h, a->name, strlen(a->name) + 1);
        h = wh_fnv1a64(h, &a->type_oid, sizeof(a->type_oid));
        h = wh_fnv1a64(h, &a->typmod, sizeof(a->typmod));
    }
    return h;
}

void ing_toast_relation(ing_toast *c, const ing_relation *rel)
{
    if (c == NULL || c->max_bytes == 0 || rel == NULL)
        return;
    ing_tstore_relation(c->ts, rel);
    relinfo *ri = rel_find(c, rel->oid);
    if (ri == NULL)
        return; /* nothing kept of it */
    /* PostgreSQL sends a Relation message again after anything that may
     * have changed what it sends of the table (a schema change, its replica
     * identity, the publication): changes it did not send may have replaced
     * kept values, so none is trusted (the store's level: see
     * ing_tstore.h) */
    mem_forget_rel(c, rel->oid);
    uint64_t fp = fingerprint(rel);
    if (ri->fingerprint != fp) { /* another shape: the marked columns too */
        marks_clear(c, ri);
        ri->fingerprint = fp;
    }
}

int ing_toast_attach_store(ing_toast *c, const wh_config *cfg, ing_batcher *bt, char *err,
                           size_t errlen)
{
    if (c == NULL || c->max_bytes == 0 || c->ts != NULL)
        return WH_OK;
    return ing_tstore_new(&c->ts, cfg, bt, err, errlen);
}

const char *ing_toast_get_at(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen,
                             int col, uint64_t lsn, size_t *len, int *from_store)
{
    *from_store = 0;
    const char *v = ing_toast_get(c, rel, key, keylen, col, len);
    if (v != NULL || c == NULL || c->ts == NULL)
        return v;
    int failed = 0;
    uint64_t at = 0;
    v = ing_tstore_get(c->ts, rel, key, keylen, col, lsn, len, &at, &failed);
    if (failed && c->st)
        wh_counter_add(&c->st->store_failed, 1);
    if (v == NULL)
        return NULL;
    *from_store = 1;
    /* kept in memory again (not sent back to the store: it has it) */
    if (mem_put(c, rel, key, keylen, col, v, *len, at) != WH_OK)
        return v;
    size_t n;
    const char *m = ing_toast_get(c, rel, key, keylen, col, &n);
    if (m != NULL)
        *len = n;
    return m != NULL ? m : v;
}
