/* ing_types: render descriptors of the types that are not built in. */
#include "ing_types.h"

#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_util.h"

/* Deepest chain of types (a domain over an array of a composite ...) that
 * is followed; deeper parts render as text. */
#define TYPES_MAXDEPTH 32

typedef struct entry {
    uint32_t oid; /* the type's OID (vt.oid may be another: a domain's base) */
    ing_vtype vt;
    ing_vfield *fields; /* owned, with their member strings */
    int nfields;
    unsigned epoch; /* the ing_types epoch it was read in */
    char *name;     /* pg_type.typname (for messages) */
} entry;

/* Entries by OID: a source has few types that are not built in, and the
 * lookup runs at Relation messages only, so a plain array. */
struct ing_types {
    entry **cur;
    size_t ncur, capcur;
    entry **old; /* replaced entries, still pointed at by cached relations */
    size_t nold, capold;
    unsigned epoch;
};

int ing_types_new(ing_types **out, char *err, size_t errlen)
{
    ing_types *t = calloc(1, sizeof(*t));
    if (!t)
        return wh_seterr(err, errlen, "out of memory");
    *out = t;
    return WH_OK;
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->nfields; i++)
        free((char *)e->fields[i].member);
    free(e->fields);
    free(e->name);
    free(e);
}

void ing_types_free(ing_types *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncur; i++)
        entry_free(t->cur[i]);
    for (size_t i = 0; i < t->nold; i++)
        entry_free(t->old[i]);
    free(t->cur);
    free(t->old);
    free(t);
}

static entry *find(const ing_types *t, uint32_t oid)
{
    for (size_t i = 0; i < t->ncur; i++)
        if (t->cur[i]->oid == oid)
            return t->cur[i];
    return NULL;
}

int ing_types_needs(const ing_types *t, uint32_t oid)
{
    if (oid < ING_FIRST_NONBUILTIN_OID)
        return 0;
    const entry *e = find(t, oid);
    return e == NULL || e->epoch != t->epoch;
}

const ing_vtype *ing_types_get(const ing_types *t, uint32_t oid)
{
    if (oid < ING_FIRST_NONBUILTIN_OID)
        return NULL;
    const entry *e = find(t, oid);
    return e ? &e->vt : NULL;
}

void ing_types_expire(ing_types *t)
{
    t->epoch++;
}

static int refers(const entry *a, const entry *x);

int ing_types_stale(ing_types *t, uint32_t oid)
{
    /* only epochs change: the descriptors stay as they are until read */
    unsigned stale = t->epoch - 1;
    int n = 0;
    entry *e = find(t, oid);
    if (e == NULL)
        return 0;
    e->epoch = stale;
    n++;
    /* and the entries that reach it (an array of it, a composite with a
     * field of it, a domain over it): they point at its entry, which a read
     * of oid alone would replace without them */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < t->ncur; i++) {
            entry *a = t->cur[i];
            for (size_t j = 0; j < t->ncur && a->epoch != stale; j++) {
                if (t->cur[j]->epoch == stale && refers(a, t->cur[j])) {
                    a->epoch = stale;
                    changed = 1;
                    n++;
                }
            }
        }
    }
    return n;
}

const char *ing_types_name(const ing_types *t, uint32_t oid)
{
    const entry *e = oid >= ING_FIRST_NONBUILTIN_OID ? find(t, oid) : NULL;
    return e && e->name ? e->name : NULL;
}

size_t ing_types_count(const ing_types *t)
{
    return t->ncur;
}

static int push(entry ***arr, size_t *n, size_t *cap, entry *e)
{
    if (wh_grow(arr, *n + 1, cap, sizeof(**arr), 16) != WH_OK)
        return WH_ERR;
    (*arr)[(*n)++] = e;
    return WH_OK;
}

/* Makes e the current entry of its OID; the one it replaces is kept. */
static int install(ing_types *t, entry *e)
{
    for (size_t i = 0; i < t->ncur; i++) {
        if (t->cur[i]->oid != e->oid)
            continue;
        if (push(&t->old, &t->nold, &t->capold, t->cur[i]) != WH_OK)
            return WH_ERR;
        t->cur[i] = e;
        return WH_OK;
    }
    return push(&t->cur, &t->ncur, &t->capcur, e);
}

/* 1 when a's descriptor points into x's entry (an array's element, a
 * field's type, or a domain's copy of x's fields). */
static int refers(const entry *a, const entry *x)
{
    if (a->vt.elem == &x->vt || (x->fields != NULL && a->vt.fields == x->fields))
        return 1;
    for (int i = 0; i < a->nfields; i++)
        if (a->fields[i].type == &x->vt)
            return 1;
    return 0;
}

size_t ing_types_reclaim(ing_types *t)
{
    if (t->nold == 0)
        return 0;
    unsigned char *keep = calloc(t->nold, 1);
    if (keep == NULL)
        return 0; /* kept until the next time */
    /* the replaced entries a current one reaches, directly or through
     * other replaced ones */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < t->nold; i++) {
            if (keep[i])
                continue;
            for (size_t j = 0; j < t->ncur && !keep[i]; j++)
                keep[i] = (unsigned char)refers(t->cur[j], t->old[i]);
            for (size_t j = 0; j < t->nold && !keep[i]; j++)
                keep[i] = (unsigned char)(keep[j] && refers(t->old[j], t->old[i]));
            changed |= keep[i];
        }
    }
    size_t n = 0, freed = 0;
    for (size_t i = 0; i < t->nold; i++) {
        if (keep[i]) {
            t->old[n++] = t->old[i];
        } else {
            entry_free(t->old[i]);
            freed++;
        }
    }
    t->nold = n;
    free(keep);
    return freed;
}

size_t ing_types_replaced(const ing_types *t)
{
    return t->nold;
}

/* The rows of one type in this load: rows[first .. first + count). */
typedef struct group {
    uint32_t oid;
    size_t first, count;
    int state;  /* 0 not built, 1 being built, 2 built */
    entry *ent; /* when built: NULL means "render as text" */
} group;

typedef struct load {
    ing_types *t;
    const ing_typerow *rows;
    group *g;
    size_t ng;
    int oom;
} load;

static entry *build(load *l, group *g, int depth);

/* The descriptor an attribute, element or base type of oid takes: NULL
 * renders by OID (built in, or sent as its text). */
static const ing_vtype *ref(load *l, uint32_t oid, int depth)
{
    if (oid < ING_FIRST_NONBUILTIN_OID)
        return NULL;
    for (size_t i = 0; i < l->ng; i++) {
        if (l->g[i].oid == oid) {
            entry *e = build(l, &l->g[i], depth + 1);
            return e ? &e->vt : NULL;
        }
    }
    const entry *e = find(l->t, oid);
    return e ? &e->vt : NULL;
}

/* "name": escaped once. */
static int member(ing_vfield *f, const char *name)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    if (wh_json_str(&b, name, strlen(name)) != WH_OK || wh_buf_putc(&b, ':') != WH_OK ||
        wh_buf_cstr(&b) != WH_OK) {
        wh_buf_free(&b);
        return WH_ERR;
    }
    f->member = b.data;
    f->member_len = b.len;
    return WH_OK;
}

static entry *build(load *l, group *g, int depth)
{
    if (g->state == 2)
        return g->ent;
    if (g->state == 1 || depth > TYPES_MAXDEPTH)
        return NULL; /* a cycle (PostgreSQL forbids them) or too deep: text */
    g->state = 1;
    const ing_typerow *r = &l->rows[g->first];
    entry *e = calloc(1, sizeof(*e));
    if (!e) {
        l->oom = 1;
        goto done;
    }
    e->epoch = l->t->epoch;
    e->oid = r->oid;
    if (r->typname && !(e->name = strdup(r->typname))) {
        l->oom = 1;
        free(e);
        e = NULL;
        goto done;
    }
    e->vt.oid = r->oid;
    e->vt.kind = ING_VT_SCALAR;
    switch (r->typtype) {
    case 'd': {
        const ing_vtype *base = ref(l, r->basetype, depth);
        if (base) {
            e->vt = *base; /* its fields belong to the base's entry */
        } else {
            e->vt.oid = r->basetype; /* built in, or unknown: by OID */
        }
        break;
    }
    case 'e':
        e->vt.oid = ING_TEXTOID;
        break;
    case 'c': {
        int n = 0;
        for (size_t i = 0; i < g->count; i++)
            n += l->rows[g->first + i].attname != NULL;
        e->fields = calloc(n ? (size_t)n : 1, sizeof(*e->fields));
        if (!e->fields) {
            l->oom = 1;
            break;
        }
        for (size_t i = 0; i < g->count; i++) {
            const ing_typerow *a = &l->rows[g->first + i];
            if (!a->attname)
                continue;
            ing_vfield *f = &e->fields[e->nfields];
            if (member(f, a->attname) != WH_OK) {
                l->oom = 1;
                break;
            }
            e->nfields++;
            f->oid = a->atttype;
            f->type = ref(l, a->atttype, depth);
        }
        e->vt.kind = ING_VT_RECORD;
        e->vt.fields = e->fields;
        e->vt.nfields = e->nfields;
        break;
    }
    case 'b':
        if (r->elem != 0) {
            e->vt.kind = ING_VT_ARRAY;
            e->vt.delim = r->elemdelim ? r->elemdelim : ',';
            e->vt.elem_oid = r->elem;
            e->vt.elem = ref(l, r->elem, depth);
        } else if (r->typname && strcmp(r->typname, "hstore") == 0) {
            e->vt.kind = ING_VT_HSTORE;
        }
        break;
    default: /* ranges, multiranges, pseudo types: their text */
        break;
    }
    if (l->oom || install(l->t, e) != WH_OK) {
        l->oom = 1;
        entry_free(e);
        e = NULL;
    }
done:
    g->state = 2;
    g->ent = e;
    return e;
}

int ing_types_load(ing_types *t, const ing_typerow *rows, size_t n, char *err, size_t errlen)
{
    load l = {.t = t, .rows = rows};
    l.g = calloc(n ? n : 1, sizeof(*l.g));
    if (!l.g)
        return wh_seterr(err, errlen, "out of memory");
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && rows[j].oid == rows[i].oid)
            j++;
        int dup = rows[i].oid < ING_FIRST_NONBUILTIN_OID;
        for (size_t k = 0; k < l.ng && !dup; k++)
            dup = l.g[k].oid == rows[i].oid;
        if (!dup) /* a built-in OID, or a second run of one OID: ignored */
            l.g[l.ng++] = (group){.oid = rows[i].oid, .first = i, .count = j - i};
        i = j;
    }
    for (size_t i = 0; i < l.ng && !l.oom; i++)
        build(&l, &l.g[i], 0);
    free(l.g);
    if (l.oom)
        return wh_seterr(err, errlen, "out of memory");
    return WH_OK;
}
