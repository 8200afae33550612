/* ing_types: the render descriptors (ing_vtype, ing_values.h) of column
 * types that are not built in: enums, domains, composite types, arrays of
 * any of them, extension types. Built from pg_type rows that ing_catalog
 * reads (one query per Relation message that names an unresolved type,
 * every type reachable from it at once), cached per OID.
 *
 * Forms (docs/types.md): a domain renders as its base type; an enum as a
 * string; a composite as an object of its attributes (dropped ones are not
 * in the rows); an array of any element type as an array of the element's
 * form; the hstore extension's type as an object; any other type (ranges,
 * multiranges, other extension types) as its text.
 *
 * Entries are never changed (columns of cached relations point at them): a
 * type read again (ing_types_expire, then a load) gets a new entry, and the
 * old one is kept until ing_types_reclaim, called when no cached relation
 * can point at it any more (a new replication connection), frees it unless
 * a current entry still reaches it.
 * Owned by ing_catalog, one per source. Pure: no I/O. */
#ifndef ING_TYPES_H
#define ING_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "ing_values.h"

/* One row of the catalog query: a type, and for a composite type one row
 * per attribute in attnum order (the type's columns repeated). */
typedef struct ing_typerow {
    uint32_t oid;
    char typtype;        /* pg_type.typtype: b c d e p r m */
    const char *typname; /* the hstore extension's type is "hstore" */
    uint32_t elem;       /* an array type's element type, else 0 */
    char elemdelim;      /* the element type's typdelim */
    uint32_t basetype;   /* a domain's typbasetype */
    const char *attname; /* a composite's attribute, NULL when none */
    uint32_t atttype;
} ing_typerow;

typedef struct ing_types ing_types;

int ing_types_new(ing_types **out, char *err, size_t errlen);
void ing_types_free(ing_types *t);

/* 1 when oid needs rows from pg_type: not built in, and not read since the
 * last ing_types_expire. */
int ing_types_needs(const ing_types *t, uint32_t oid);

/* Builds the entries of every type in rows[0..n) (the answer to one query:
 * rows of a type are adjacent), replacing older entries of those OIDs. A
 * type referring to one that is neither built in nor in rows nor cached,
 * or a cycle, renders that part as text. WH_ERR only when out of memory. */
int ing_types_load(ing_types *t, const ing_typerow *rows, size_t n, char *err, size_t errlen);

/* The descriptor of oid: NULL for a built-in type (rendered by its OID) and
 * for a type never read (sent as its text). */
const ing_vtype *ing_types_get(const ing_types *t, uint32_t oid);

/* Every entry is to be read again at its next use (ing_types_needs says 1);
 * until then it stays in use. */
void ing_types_expire(ing_types *t);

/* Marks oid's entry, and every entry that reaches it (an array of it, a
 * composite with a field of it, a domain over it), to be read again at its
 * next use (ing_types_needs says 1), as ing_types_expire does for every
 * entry; they stay in use until then. Returns how many were marked (0 when
 * oid has no entry). */
int ing_types_stale(ing_types *t, uint32_t oid);

/* The type's name (pg_type.typname) when oid has an entry, else NULL. */
const char *ing_types_name(const ing_types *t, uint32_t oid);

/* Number of entries (current ones). */
size_t ing_types_count(const ing_types *t);
/* Frees the replaced entries that no current entry reaches (directly or
 * through replaced ones); the caller guarantees that no cached relation
 * points at a replaced entry (every relation is described again before its
 * next use). Returns how many were freed. */
size_t ing_types_reclaim(ing_types *t);
/* Replaced entries still held. */
size_t ing_types_replaced(const ing_types *t);

#endif
