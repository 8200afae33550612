/* dsp_filter: a target's event filter, compiled once when the target's
 * settings change and evaluated per event without allocation.
 *
 * A filter has four optional parts, all of which must accept an event:
 *   tables      globs (fnmatch) on the table name, or on "schema.table" when
 *               the pattern contains a '.'; events without a table (logical
 *               messages) are not subject to it
 *   operations  insert | update | delete | truncate | message
 *   columns     include or exclude lists of column names: rewrite key,
 *               before and after (and "unchanged") when the body is rendered
 *               (dsp_filter_rewrite, dsp_filter_row); they never drop events
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
 * numbers compare numerically, also with a string holding a JSON number (a
 * PostgreSQL numeric is rendered as a string); strings compare bytewise;
 * an ordering comparison between different kinds is false.
 * The expression sees the whole event (before the column lists apply).
 *
 * Ownership: dsp_filter_compile allocates the filter in one block;
 * dsp_filter_free releases it. A compiled filter is immutable and may be
 * used from several threads. */
#ifndef DSP_FILTER_H
#define DSP_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"
#include "wh_json.h"

#define DSP_FILTER_EXPR_MAX 4096 /* bytes of expression text */
#define DSP_FILTER_NODES_MAX 512 /* compiled nodes (operands + operators) */
#define DSP_FILTER_DEPTH_MAX 32  /* nesting of parentheses / operators */
#define DSP_FILTER_PATH_MAX 8    /* segments of one path */
#define DSP_FILTER_LIST_MAX 256  /* names in one of tables/operations/columns */

/* The settings a filter is compiled from (all parts optional: NULL/0). */
typedef struct dsp_filter_spec {
    const char *const *tables;
    size_t ntables;
    const char *const *operations;
    size_t noperations;
    const char *const *columns_include;
    size_t ncolumns_include;
    const char *const *columns_exclude;
    size_t ncolumns_exclude;
    const char *expr; /* NULL or "" = none */
} dsp_filter_spec;

typedef struct dsp_filter dsp_filter;

/* Compiles spec. Errors name the part: "filter.operations: unknown
 * operation \"upsert\"", "filter.expression: position 12: expected a value
 * after '=='". *out is NULL for an empty spec (every event passes, no
 * rewriting): callers may treat a NULL filter as "accept all". */
int dsp_filter_compile(const dsp_filter_spec *spec, dsp_filter **out, char *err, size_t errlen);
void dsp_filter_free(dsp_filter *f);

/* An object span over a stored event without scanning it first: json (after
 * leading and trailing whitespace) must start with '{' and end with '}';
 * members are then walked with wh_json_span_next, which checks every value
 * it passes (a malformed member ends the walk with -1). WH_ERR otherwise. */
int dsp_json_object(const char *json, size_t len, wh_json_span *out);

/* The top-level members of one event that the filter and the envelopes
 * read, found in one walk over the event (the first occurrence of a name
 * wins, like wh_json_span_get). Positions are offsets into the event's
 * bytes, so the index stays valid for a copy of them (the batch body). */
enum {
    DSP_EV_ID,
    DSP_EV_TENANT,
    DSP_EV_LSN,
    DSP_EV_XID,
    DSP_EV_COMMIT_TS,
    DSP_EV_OP,
    DSP_EV_SCHEMA,
    DSP_EV_TABLE,
    DSP_EV_KEY,
    DSP_EV_BEFORE,
    DSP_EV_AFTER,
    DSP_EV_PREFIX,
    DSP_EV_CONTENT,
    DSP_EV_ORIGIN, /* present only in events of a transaction with a replication origin */
    DSP_EV_NFIELDS
};
typedef enum {
    DSP_EVX_NONE = 0, /* not indexed yet */
    DSP_EVX_OK,       /* every member walked */
    DSP_EVX_NOTOBJ,   /* not an object (dsp_json_object failed) */
    DSP_EVX_BROKEN    /* a malformed member ended the walk (found: those before) */
} dsp_evx_state;
#define DSP_EVX_SUB_MAX 8 /* members of key/before/after a filter's paths name */
typedef struct dsp_evidx {
    uint32_t off[DSP_EV_NFIELDS]; /* member value i: json + off[i], len[i] bytes */
    uint32_t len[DSP_EV_NFIELDS];
    uint8_t type[DSP_EV_NFIELDS]; /* wh_json_type */
    uint8_t state;                /* dsp_evx_state */
    uint16_t found;               /* bit i: member i present */
    uint32_t ev_off, ev_len;      /* the object (dsp_json_object) */
    /* filled by dsp_filter_match_ix only: the members of key, before or
     * after that the filter's paths name (after.amount), found in the same
     * walk (the first occurrence wins, like wh_json_span_get) */
    uint8_t sub_found; /* bit k: the filter's sub-member k present */
    uint8_t sub_type[DSP_EVX_SUB_MAX];
    uint32_t sub_off[DSP_EVX_SUB_MAX], sub_len[DSP_EVX_SUB_MAX];
} dsp_evidx;

/* Indexes the event json[0..len) into *x (one walk, no allocation). */
void dsp_evidx_build(const char *json, size_t len, dsp_evidx *x);
/* The same index built the plain way (every string scanned, none of the
 * walk's shortcuts), with f's sub-members (f may be NULL): the reference
 * that tests and the fuzz target compare dsp_filter_match_ix's index with. */
void dsp_evidx_build_scan(const dsp_filter *f, const char *json, size_t len, dsp_evidx *x);
/* Member i of an indexed event as a span into json (the bytes indexed, or
 * a copy of them); WH_ERR when absent. */
int dsp_evidx_get(const dsp_evidx *x, const char *json, int i, wh_json_span *out);

/* 1 when the event (one native envelope object, json[0..len)) passes, 0
 * when it is filtered out (committed past, not a failure). A malformed
 * event passes (the body renderer reports it). f may be NULL. */
int dsp_filter_match(const dsp_filter *f, const char *json, size_t len);
/* dsp_filter_match that also leaves the event's index in *x (when f is not
 * NULL; x->state stays DSP_EVX_NONE otherwise): hand it to dsp_env_render_ix
 * so the event is walked once for filter and envelope. */
int dsp_filter_match_ix(const dsp_filter *f, const char *json, size_t len, dsp_evidx *x);

/* 1 when f has column lists (rows are rewritten). */
int dsp_filter_has_columns(const dsp_filter *f);
/* 1 when the column named by the string span key is kept. */
int dsp_filter_column_keep(const dsp_filter *f, const wh_json_span *key);
/* Appends the row object (or null, copied as is) with only kept columns. */
int dsp_filter_row(const dsp_filter *f, const wh_json_span *row, wh_buf *out);
/* Appends the event with key, before, after and unchanged rewritten by the
 * column lists (copied unchanged without them). WH_ERR on a malformed event
 * or a full buffer; out->len is restored then. */
int dsp_filter_rewrite(const dsp_filter *f, const char *json, size_t len, wh_buf *out);

#endif
