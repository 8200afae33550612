/* dsp_envelope: the request body (and its content type and extra headers)
 * of one batch for a target, rendered from the stored native envelope
 * objects (docs/INTERNALS.md "Event identity and envelope"). Pure: no I/O,
 * no allocation per event (the body goes into the caller's reusable wh_buf;
 * fields are read with wh_json spans).
 *
 * Formats (target setting `envelope`):
 *   native              [e1,e2,...] as stored (application/json)
 *   debezium            [d1,d2,...], each a Debezium change event value:
 *                         {"before":..,"after":..,"source":{"version",
 *                          "connector":"postgresql","name","ts_ms","snapshot",
 *                          "db","sequence","schema","table","txId",
 *                          "lsn","xmin":null},"op":"c|u|d|t|m|r","ts_ms":..,
 *                          "transaction":null}
 *                       source.ts_ms is the commit time, ts_ms the render
 *                       time; snapshot "true" for a snapshot or backfill
 *                       row (op r; walhook does not mark a snapshot's last
 *                       row, so never "last"), else "false"; db the
 *                       tenant's source database (opts.db); an unchanged
 *                       TOAST column (native "unchanged") is in "after"
 *                       with Debezium's placeholder
 *                       "__debezium_unavailable_value";
 *                       lsn the numeric LSN of the commit; a logical
 *                       message carries "message":{"prefix","content"}
 *                       instead of before/after rows; a schema or ddl event
 *                       (no Debezium op) has before/after null, the native
 *                       event as "walhook", and op "schema" / "ddl".
 *   cloudevents         CloudEvents 1.0 structured mode: one event ->
 *                       application/cloudevents+json, several ->
 *                       application/cloudevents-batch+json (a JSON array)
 *   cloudevents-binary  CloudEvents 1.0 binary mode: one event per request,
 *                       the native object as the body (application/json),
 *                       attributes in ce-* headers
 * CloudEvents attributes: specversion "1.0"; id = event id; source =
 * "/walhook/<tenant>/<schema>/<table>" (percent-encoded segments;
 * "/walhook/<tenant>" for a logical message); type = "com.walhook.<op>";
 * time = commit time (absent for a non-transactional message); subject =
 * "<schema>.<table>"; datacontenttype "application/json"; data = the native
 * event (with the target's column lists applied).
 *
 * Column lists of the target's filter (wh_filter) are applied to before
 * and after in every format; key (the row's identity) is kept whole. */
#ifndef DSP_ENVELOPE_H
#define DSP_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "wh_filter.h"
#include "wh_buf.h"

typedef enum {
    DSP_ENV_NATIVE = 0,
    DSP_ENV_DEBEZIUM,
    DSP_ENV_CLOUDEVENTS,
    DSP_ENV_CLOUDEVENTS_BINARY,
} dsp_env_kind;

/* "native", "debezium", "cloudevents", "cloudevents-binary". */
int dsp_env_parse(const char *s, dsp_env_kind *out, char *err, size_t errlen);
const char *dsp_env_name(dsp_env_kind k);

typedef struct dsp_env_opts {
    dsp_env_kind kind;
    const char *db;           /* Debezium source.db (source database); NULL = "" */
    const char *name;         /* Debezium source.name; NULL = the event's tenant */
    const wh_filter *columns; /* NULL, or the target's filter (column lists) */
    int64_t now_ms;           /* Debezium ts_ms; 0 = the wall clock */
} dsp_env_opts;

#define DSP_ENV_HDR_MAX 1024 /* one header line "Name: value" */
#define DSP_ENV_HEADERS_MAX 8

/* What the caller sends besides the body. */
typedef struct dsp_env_out {
    char content_type[64]; /* the Content-Type value */
    size_t nheaders;       /* extra header lines (binary mode: ce-*) */
    char headers[DSP_ENV_HEADERS_MAX][DSP_ENV_HDR_MAX];
    size_t consumed; /* events rendered: n, or 1 in binary mode */
} dsp_env_out;

/* Resets body and renders events jsons[0..n) (n >= 1; lens[i] bytes each)
 * for o->kind. Binary mode renders jsons[0] only (out->consumed = 1): the
 * caller sends the others in later requests. WH_ERR names the event index
 * and the field when an event is malformed, or says the body is full. */
int dsp_env_render(const dsp_env_opts *o, const void *const *jsons, const size_t *lens, size_t n,
                   wh_buf *body, dsp_env_out *out, char *err, size_t errlen);

/* dsp_env_render with the events' indexes (wh_filter_match_ix), so an
 * event the filter walked is not walked again: ix[i] indexes jsons[i] (the
 * same bytes, or a copy); ix NULL or an entry with state WH_EVX_NONE: the
 * event is indexed here. The output is the same either way. */
int dsp_env_render_ix(const dsp_env_opts *o, const void *const *jsons, const size_t *lens,
                      const wh_evidx *ix, size_t n, wh_buf *body, dsp_env_out *out, char *err,
                      size_t errlen);

/* Incremental rendering of one batch, for a caller that renders each
 * event right after it looked at it (dsp_target: after the filter, while
 * its bytes are still in the cache): begin, add each event, end. The body
 * and headers are the same as dsp_env_render's over the same events (every
 * format but cloudevents-binary, which posts one event per request:
 * dsp_env_begin refuses it). A failed call clears the body; the batch then
 * stays failed until the next begin. The context is reused across batches
 * (dsp_env_ctx_init once, dsp_env_ctx_free at the end) and must not move
 * between begin and end. */
typedef struct dsp_env_tcache { /* the last commit second converted */
    int valid;
    char key[19];
    int64_t ms;
    char secd[24];
    size_t sec0;
} dsp_env_tcache;
typedef struct dsp_env_dbz { /* what a Debezium batch shares */
    const char *now;         /* ts_ms digits */
    size_t nowlen;
    const char *name, *db; /* source.name (NULL: each event's tenant), source.db: JSON strings */
    size_t namelen, dblen;
    dsp_env_tcache tc;
} dsp_env_dbz;
typedef struct dsp_env_ctx {
    dsp_env_opts o;
    wh_buf *body;
    dsp_env_out *out;
    size_t n; /* events added */
    int failed;
    wh_buf names; /* source.db and source.name as JSON strings */
    char nowd[24];
    dsp_env_dbz dz;
} dsp_env_ctx;

void dsp_env_ctx_init(dsp_env_ctx *c);
void dsp_env_ctx_free(dsp_env_ctx *c);
/* Resets body and starts a batch for o->kind (o->now_ms 0: read now). */
int dsp_env_begin(dsp_env_ctx *c, const dsp_env_opts *o, wh_buf *body, dsp_env_out *out, char *err,
                  size_t errlen);
/* Appends one event (ix: its index from wh_filter_match_ix, or NULL). */
int dsp_env_add(dsp_env_ctx *c, const void *json, size_t len, const wh_evidx *ix, char *err,
                size_t errlen);
/* Closes the batch (WH_ERR when no event was added). */
int dsp_env_end(dsp_env_ctx *c, char *err, size_t errlen);

/* Milliseconds since the epoch of an ISO 8601 UTC time as the ingestor
 * renders it ("2026-11-22T01:02:03.123456Z"); WH_ERR otherwise. */
int dsp_env_time_ms(const char *s, size_t n, int64_t *out);

#endif
