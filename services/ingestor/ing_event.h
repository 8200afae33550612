/* ing_event: renders the envelope JSON of one change (docs/INTERNALS.md
 * "Event identity and envelope") once, appending to a wh_buf. On error the
 * buffer is rolled back to its previous length. */
#ifndef ING_EVENT_H
#define ING_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "ing_pgoutput.h"
#include "ing_toast.h"
#include "wh_buf.h"
#include "wh_config.h"

/* The longest origin name rendered (WH_ORIGIN_NAME_MAX: PostgreSQL 16 and
 * later refuse longer ones), escaped: every byte may take 6 ("\u00XX"). */
#define ING_ORIGIN_JSON_MAX (WH_ORIGIN_NAME_MAX * 6 + 3)

/* Per-transaction context, filled once at Begin. */
typedef struct ing_txn {
    char tenant_esc[160]; /* tenant, JSON-escaped, without quotes */
    size_t tenant_len;
    uint64_t commit_lsn;
    uint32_t xid;
    int64_t commit_ts_us;
    char lsn_str[32];
    size_t lsn_len;
    char ts_str[48];
    size_t ts_len;
    ing_toast *toast; /* unchanged TOAST values (NULL: none kept) */
    /* a streamed transaction (pgoutput protocol 2): its changes are rendered
     * before its commit, so nothing of them goes into the TOAST cache (they
     * may still abort); staged: their events are rendered without the head
     * (the store adds it at the commit, ing_event_head_parts) */
    int streamed, staged;
    /* the replication origin (pgoutput's Origin message after Begin) as a
       JSON string, quotes included; origin_len 0: none (no "origin" member) */
    char origin_json[ING_ORIGIN_JSON_MAX];
    size_t origin_len;
    /* the change's own LSN (its XLogData message's start), rendered as
     * "change_lsn" after op; 0: none (ing_txn_begin clears it; read rows
     * never carry it) */
    uint64_t change_lsn;
} ing_txn;

/* Clears t and sets the tenant (escaped once). */
int ing_txn_set_tenant(ing_txn *t, const char *tenant, char *err, size_t errlen);
/* Starts a transaction: commit LSN, xid, commit time (us since the epoch);
 * no origin. */
void ing_txn_begin(ing_txn *t, uint64_t commit_lsn, uint32_t xid, int64_t commit_ts_us);
/* The transaction's replication origin (name NULL: none): its events carry
 * "origin":"name" after commit_ts. WH_ERR (no origin set) when the name is
 * longer than WH_ORIGIN_NAME_MAX bytes. */
int ing_txn_set_origin(ing_txn *t, const char *name, char *err, size_t errlen);

/* A streamed transaction's event heads, for the store (StageCommit): out =
 * part0 + part1 + part2, cut[0] and cut[1] where part1 and part2 start;
 * an event's head is part0 + seq + part1 + seq + part2 (then ,"op":...). */
int ing_event_head_parts(const ing_txn *t, wh_buf *out, size_t cut[2]);
/* WH_OK when an Insert/Update/Delete can be rendered: its relation is known
 * and its tuples have the relation's column count. */
int ing_event_check(const ing_msg *m, char *err, size_t errlen);
/* Insert/Update/Delete (runs ing_event_check first); m->type 'r' renders
 * an insert's new row with op "read" (a snapshot's row, ing_snapshot). */
int ing_event_change(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                     size_t errlen);
/* One truncated relation; options = Truncate flags (1 cascade, 2 restart). */
int ing_event_truncate(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_relation *rel,
                       uint8_t options, char *err, size_t errlen);
/* A logical decoding message ('M'). */
int ing_event_message(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                      size_t errlen);

/* A table's new schema version (ing_schema): {head,"op":"schema","schema":..,
 * "table":..,"key":null,"before":null,"after":null,"schema_version":"..",
 * then desc's members from replica_identity on (ing_schema_describe:
 * replica_identity, key_columns, columns)}. Changes and truncates carry
 * "schema_version" as their last member. */
int ing_event_schema(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_relation *r,
                     const char *desc, size_t dlen, char *err, size_t errlen);
/* A DDL command captured by the event trigger (a transactional message
 * with prefix walhook.ddl whose content is a JSON object): {head,"op":"ddl",
 * "schema":..,"table":null,"key":null,"before":null,"after":null,"ddl":
 * {"event","command_tag","object_type","object_identity","statement"}}
 * (strings or null). WH_ERR (nothing appended; err never quotes the
 * content) when the content is not a JSON object of at most
 * ING_DDL_MAX_BYTES. */
#define ING_DDL_MAX_BYTES (1u << 20)
int ing_event_ddl(wh_buf *b, const ing_txn *t, uint32_t seq, const ing_msg *m, char *err,
                  size_t errlen);

#endif
