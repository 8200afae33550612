/* ing_values: decode one text-format column value (as pgoutput sends it,
 * with the session's DateStyle=ISO and TimeZone=UTC) into JSON by type OID,
 * following docs/INTERNALS.md "Values". */
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
#define ING_INT4OID 23
#define ING_TEXTOID 25
#define ING_OIDOID 26
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

/* Appends the JSON value of text[0..len) of type `type_oid`. On WH_ERR
 * (buffer full) the buffer may hold a partial value: the caller rolls back. */
int ing_value_json(wh_buf *b, uint32_t type_oid, const char *text, size_t len);

/* Appends the value of a binary-format ('b') column: base64 string. */
int ing_value_binary(wh_buf *b, const char *data, size_t len);

/* 1 when s[0..n) is a valid JSON number. */
int ing_is_json_number(const char *s, size_t n);

/* Formats microseconds since the Unix epoch as "2026-11-22T01:02:03.123456Z".
 * Returns the length, or -1 if buf is too small. */
int ing_format_ts_utc(int64_t unix_us, char *buf, size_t len);

#endif
