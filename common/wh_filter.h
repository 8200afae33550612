/* wh_filter: a target's event filter, compiled once when the target's
 * settings change and evaluated per event without allocation. It is in
 * common/ because the dispatcher runs it and the admin and the store check
 * a target's settings with it (wh_delivery_check) before they are stored.
 *
 * A filter has four optional parts, all of which must accept an event:
 *   tables      globs (fnmatch) on the table name, or on "schema.table" when
 *               the pattern contains a '.'; events without a table (logical
 *               messages) are not subject to it
 *   operations  insert | read | update | delete | truncate | message | schema
 *               | ddl; "read" is a snapshot or backfill row, and a list
 *               naming insert passes read rows too
 *   columns     include or exclude lists of column names: rewrite before
 *               and after (and "unchanged") when the body is rendered
 *               (wh_filter_rewrite, wh_filter_row); key, the row's
 *               identity, is kept whole; they never drop events
 *   expression  over the native envelope (docs: README "Filters"):
 *                 table == "orders" && op == "insert" && after.amount > 100
 *                 op in ["insert", "update"]   !(schema == "audit")
 *                 after.note == null           table startswith "tmp_"
 *               operators (loosest first): ||, &&, !, comparisons
 *               == != < <= > >=, `in [literal, ...]`, `startswith "literal"`;
 *               operands: paths (identifiers joined by '.', e.g. after.amount,
 *               key.id, commit_ts), "strings" or 'strings', numbers, true,
 *               false, null; parentheses. A bare path is true when the value
 *               is the boolean true.
 * Semantics: a missing path is null; `== null` is true for null and missing;
 * numbers compare numerically and exactly, as decimal text (never through a
 * double: a bigint beyond 2^53, a numeric of any length), also with a
 * string holding a JSON number (a PostgreSQL numeric is rendered as a
 * string) or "Infinity", "-Infinity", "NaN", ordered as PostgreSQL does
 * (-Infinity < numbers < Infinity < NaN, NaN == NaN); strings compare
 * bytewise; an ordering comparison between different kinds is false.
 * The expression sees the whole event (before the column lists apply).
 *
 * Ownership: wh_filter_compile allocates the filter in one block;
 * wh_filter_free releases it. A compiled filter is immutable and may be
 * used from several threads. */
#ifndef WH_FILTER_H
#define WH_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"
#include "wh_json.h"

#define WH_FILTER_EXPR_MAX 4096 /* bytes of expression text */
#define WH_FILTER_NODES_MAX 512 /* compiled nodes (operands + operators) */
#define WH_FILTER_DEPTH_MAX 32  /* nesting of parentheses / operators */
#define WH_FILTER_PATH_MAX 8    /* segments of one path */
#define WH_FILTER_LIST_MAX 256  /* names in one of tables/operations/columns */

/* The settings a filter is compiled from (all parts optional: NULL/0). */
typedef struct wh_filter_spec {
    const char *const *tables;
    size_t ntables;
    const char *const *operations;
    size_t noperations;
    const char *const *columns_include;
    size_t ncolumns_include;
    const char *const *columns_exclude;
    size_t ncolumns_exclude;
    const char *expr; /* NULL or "" = none */
} wh_filter_spec;

typedef struct wh_filter wh_filter;

/* Compiles spec. Errors name the part: "filter.operations: unknown
 * operation \"upsert\"", "filter.expression: position 12: expected a value
 * after '=='". *out is NULL for an empty spec (every event passes, no
 * rewriting): callers may treat a NULL filter as "accept all". */
int wh_filter_compile(const wh_filter_spec *spec, wh_filter **out, char *err, size_t errlen);
void wh_filter_free(wh_filter *f);
/* wh_filter_compile from a target's settings as stored: tables, operations
 * and columns as comma- or space-separated lists (NULL or "" = none), the
 * expression as is. The same result and errors as wh_filter_compile. */
int wh_filter_compile_lists(const char *tables, const char *operations, const char *include,
                            const char *exclude, const char *expr, wh_filter **out, char *err,
                            size_t errlen);

/* 1 when f's operations list names op ("schema", "ddl", ...; naming insert
 * also names read); 0 for a NULL filter or one without operations. */
int wh_filter_names_op(const wh_filter *f, const char *op);

/* An object span over a stored event without scanning it first: json (after
 * leading and trailing whitespace) must start with '{' and end with '}';
 * members are then walked with wh_json_span_next, which checks every value
 * it passes (a malformed member ends the walk with -1). WH_ERR otherwise. */
int wh_json_object(const char *json, size_t len, wh_json_span *out);

/* The top-level members of one event that the filter and the envelopes
 * read, found in one walk over the event (the first occurrence of a name
 * wins, like wh_json_span_get). Positions are offsets into the event's
 * bytes, so the index stays valid for a copy of them (the batch body). */
enum {
    WH_EV_ID,
    WH_EV_TENANT,
    WH_EV_LSN,
    WH_EV_XID,
    WH_EV_COMMIT_TS,
    WH_EV_OP,
    WH_EV_SCHEMA,
    WH_EV_TABLE,
    WH_EV_KEY,
    WH_EV_BEFORE,
    WH_EV_AFTER,
    WH_EV_PREFIX,
    WH_EV_CONTENT,
    WH_EV_ORIGIN,     /* present only in events of a transaction with a replication origin */
    WH_EV_CHANGE_LSN, /* present only in changes read from the stream (not snapshot rows) */
    WH_EV_NFIELDS
};
typedef enum {
    WH_EVX_NONE = 0, /* not indexed yet */
    WH_EVX_OK,       /* every member walked */
    WH_EVX_NOTOBJ,   /* not an object (wh_json_object failed) */
    WH_EVX_BROKEN    /* a malformed member ended the walk (found: those before) */
} wh_evx_state;
#define WH_EVX_SUB_MAX 8 /* members of key/before/after a filter's paths name */
typedef struct wh_evidx {
    uint32_t off[WH_EV_NFIELDS]; /* member value i: json + off[i], len[i] bytes */
    uint32_t len[WH_EV_NFIELDS];
    uint8_t type[WH_EV_NFIELDS]; /* wh_json_type */
    uint8_t state;               /* wh_evx_state */
    uint16_t found;              /* bit i: member i present */
    uint32_t ev_off, ev_len;     /* the object (wh_json_object) */
    /* filled by wh_filter_match_ix only: the members of key, before or
     * after that the filter's paths name (after.amount), found in the same
     * walk (the first occurrence wins, like wh_json_span_get) */
    uint8_t sub_found; /* bit k: the filter's sub-member k present */
    uint8_t sub_type[WH_EVX_SUB_MAX];
    uint32_t sub_off[WH_EVX_SUB_MAX], sub_len[WH_EVX_SUB_MAX];
} wh_evidx;

/* Indexes the event json[0..len) into *x (one walk, no allocation). */
void wh_evidx_build(const char *json, size_t len, wh_evidx *x);
/* The same index built the plain way (every string scanned, none of the
 * walk's shortcuts), with f's sub-members (f may be NULL): the reference
 * that tests and the fuzz target compare wh_filter_match_ix's index with. */
void wh_evidx_build_scan(const wh_filter *f, const char *json, size_t len, wh_evidx *x);
/* Tests: on = 1 builds the walk's quote and bracket maps with the x86-64
 * baseline code (SSE2) even on a CPU with AVX2, where they are built with
 * AVX2 otherwise; the index is the same either way. Not thread-safe. */
void wh_evidx_baseline(int on);
/* Member i of an indexed event as a span into json (the bytes indexed, or
 * a copy of them); WH_ERR when absent. */
int wh_evidx_get(const wh_evidx *x, const char *json, int i, wh_json_span *out);

/* 1 when the event (one native envelope object, json[0..len)) passes, 0
 * when it is filtered out (committed past, not a failure). A malformed
 * event passes (the body renderer reports it). f may be NULL. */
int wh_filter_match(const wh_filter *f, const char *json, size_t len);
/* wh_filter_match that also leaves the event's index in *x (when f is not
 * NULL; x->state stays WH_EVX_NONE otherwise): hand it to dsp_env_render_ix
 * so the event is walked once for filter and envelope. */
int wh_filter_match_ix(const wh_filter *f, const char *json, size_t len, wh_evidx *x);

/* 1 when f has column lists (rows are rewritten). */
int wh_filter_has_columns(const wh_filter *f);
/* 1 when the column named by the string span key is kept. */
int wh_filter_column_keep(const wh_filter *f, const wh_json_span *key);
/* Appends the row object (or null, copied as is) with only kept columns. */
int wh_filter_row(const wh_filter *f, const wh_json_span *row, wh_buf *out);
/* Appends the event with before, after and unchanged rewritten by the
 * column lists (copied unchanged without them; key is never rewritten). WH_ERR on a malformed event
 * or a full buffer; out->len is restored then. */
int wh_filter_rewrite(const wh_filter *f, const char *json, size_t len, wh_buf *out);

#endif
