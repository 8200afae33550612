/* ing_values: decode one text-format column value (as pgoutput sends it,
 * with the session's DateStyle=ISO, TimeZone=UTC, bytea_output=hex and
 * IntervalStyle=iso_8601) into JSON, following docs/types.md (the table of
 * every type's JSON form) and docs/INTERNALS.md "Values".
 *
 * A built-in type is rendered by its OID alone (ing_value_json: a switch;
 * a built-in array's element type is known statically). Any other type
 * (enums, domains, composites, arrays of those, extension types) needs a
 * render descriptor, an ing_vtype, resolved once from pg_type by ing_types
 * and kept per column (ing_attr.vtype); ing_value_typed renders with it.
 *
 * Arrays, records (composite values), hstore and int2vector/oidvector are
 * parsed from their text literal in one pass while the JSON is written; a
 * literal that does not parse (or nests deeper than ING_VALUE_MAXDEPTH) is
 * rolled back and sent as its text, a JSON string, like an unknown type.
 * Elements that need unescaping are copied into a per-thread scratch buffer
 * per nesting level, which grows to the largest element seen and is reused:
 * no allocation per value once warm. Not reentrant across threads sharing
 * nothing else: each thread has its own scratch. */
#ifndef ING_VALUES_H
#define ING_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"

/* Built-in type OIDs (pg_type.dat). */
#define ING_BOOLOID 16
#define ING_BYTEAOID 17
#define ING_CHAROID 18
#define ING_NAMEOID 19
#define ING_INT8OID 20
#define ING_INT2OID 21
#define ING_INT2VECTOROID 22
#define ING_INT4OID 23
#define ING_TEXTOID 25
#define ING_OIDOID 26
#define ING_OIDVECTOROID 30
#define ING_JSONOID 114
#define ING_FLOAT4OID 700
#define ING_FLOAT8OID 701
#define ING_BPCHAROID 1042
#define ING_VARCHAROID 1043
#define ING_DATEOID 1082
#define ING_TIMESTAMPOID 1114
#define ING_TIMESTAMPTZOID 1184
#define ING_NUMERICOID 1700
#define ING_UUIDOID 2950
#define ING_JSONBOID 3802
#define ING_TEXTARRAYOID 1009
#define ING_INT4ARRAYOID 1007

/* OIDs below this are PostgreSQL's own (pg_type.dat, FirstGenbkiObjectId):
 * rendered by OID. Types at or above it need a descriptor. */
#define ING_FIRST_NONBUILTIN_OID 10000

/* Deepest nesting of arrays in records in arrays... rendered as JSON; a
 * deeper value is sent as its text. */
#define ING_VALUE_MAXDEPTH 16

/* ing_vtype.kind */
#define ING_VT_SCALAR                                                                              \
    0                   /* ing_value_json(oid): a built-in type, or a domain                       \
                           over one, or a type sent as its text */
#define ING_VT_ARRAY 1  /* an array of elem, elements separated by delim */
#define ING_VT_RECORD 2 /* a composite type: a JSON object of its fields */
#define ING_VT_HSTORE 3 /* the hstore extension's type: a JSON object */

typedef struct ing_vtype ing_vtype;

/* One attribute of a composite type. */
typedef struct ing_vfield {
    const char *member; /* "name": the attribute name as a JSON object
                           member, escaped, the colon included */
    size_t member_len;
    uint32_t oid;          /* the attribute's type, rendered by OID when
                              type is NULL (a built-in type) */
    const ing_vtype *type; /* else its descriptor */
} ing_vfield;

/* How to render a type that its OID alone does not say (owned by
 * ing_types; never changed once built, so columns may point at it). */
struct ing_vtype {
    uint32_t oid;          /* the type's own OID; for ING_VT_SCALAR the OID whose
                              form it takes (a domain's base type, text for an enum) */
    uint8_t kind;          /* ING_VT_* */
    char delim;            /* ING_VT_ARRAY: the element type's typdelim */
    uint32_t elem_oid;     /* ING_VT_ARRAY: the element's OID, rendered by
                              OID when elem is NULL */
    const ing_vtype *elem; /* ING_VT_ARRAY */
    int nfields;           /* ING_VT_RECORD */
    const ing_vfield *fields;
};

/* Appends the JSON value of text[0..len) of type `type_oid`. On WH_ERR
 * (buffer full) the buffer may hold a partial value: the caller rolls back. */
int ing_value_json(wh_buf *b, uint32_t type_oid, const char *text, size_t len);

/* Appends the JSON value of text[0..len) of the type t describes (not
 * NULL). Same contract as ing_value_json. */
int ing_value_typed(wh_buf *b, const ing_vtype *t, const char *text, size_t len);

/* Values rendered by ing_value_typed on this thread, since the last call,
 * in which a container fell back to its text (the literal did not match
 * the descriptor: a composite type whose shape changed since it was read,
 * or json text inside a container that is not JSON); *first (may be NULL)
 * gets the descriptor the first of them was rendered with (NULL when
 * none). Resets the count. */
unsigned long ing_values_mismatch_take(const ing_vtype **first);

/* 1 when s[0..n) is one JSON value (RFC 8259 syntax, surrounding white
 * space allowed; bytes of strings are not checked for UTF-8), else 0.
 * Nesting deeper than 4096 levels counts as invalid. */
int ing_json_valid(const char *s, size_t n);

/* Frees this thread's scratch buffers (a thread that rendered values, before
 * it ends; optional at process exit). */
void ing_values_thread_cleanup(void);

/* 1 when oid is a built-in array type, with its element type's OID and
 * delimiter (',' but for box's ';'); else 0. */
int ing_builtin_array(uint32_t oid, uint32_t *elem, char *delim);

/* Appends the value of a binary-format ('b') column: base64 string. */
int ing_value_binary(wh_buf *b, const char *data, size_t len);

/* 1 when s[0..n) is a valid JSON number. */
int ing_is_json_number(const char *s, size_t n);

/* Formats microseconds since the Unix epoch as "2026-11-22T01:02:03.123456Z".
 * Returns the length, or -1 if buf is too small. */
int ing_format_ts_utc(int64_t unix_us, char *buf, size_t len);

#endif
