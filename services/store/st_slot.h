/* st_slot: the store's side of slot safety (docs/SLOTS.md, issue 9).
 *
 * Each tenant's ingestor sends a SlotReport every source.slot_check_ms:
 *  - the tenant's backpressure zone, kept for zone_ttl_ms and passed to the
 *    dispatchers in every Read answer (ReadReply.zone);
 *  - force_resync limits: a stored consumer (target) not marked
 *    NEEDS_SNAPSHOT that is behind the source's WAL by more than
 *    resync_lag_bytes, or that has events to deliver and delivered nothing
 *    for resync_after_ms (its offset did not move), is marked NEEDS_SNAPSHOT
 *    (st_db_mark_needs_snapshot: the retention cap's mark, cleared by a set
 *    offset);
 *  - the answer is the track position: the smallest delivered position
 *    (commit LSN) of the counted consumers (stored, not marked); a consumer
 *    at the tenant's end counts as the tenant's durable LSN. No consumer:
 *    the durable LSN. caught_up: every counted consumer is at the end.
 * The stall timers run on the monotonic clock; the stall observed so far
 * is kept in the store (st_db_stall_put, no fsync of their own): a
 * restarted store goes on from it at its open, its own downtime not
 * counted, so a target is marked after a full resync_after_ms of observed
 * stall across restarts. A zone that changed (zone_changed) is
 * published to the dispatchers at once (st_server: a zone note, wh_notify.h).
 */
#ifndef ST_SLOT_H
#define ST_SLOT_H

#include <stdint.h>

#include "st_db.h"
#include "walhook.pb-c.h"

typedef struct st_slot st_slot;

int st_slot_new(st_slot **out, st_db *db, char *err, size_t errlen);
void st_slot_free(st_slot *s);

/* The monotonic clock of the stall timers, in ms (tests); NULL: wh_now_ms.
 * Read at once as the store's open time (restored timers go on from it). */
typedef uint64_t (*st_slot_clock_fn)(void *arg);
void st_slot_set_clock(st_slot *s, st_slot_clock_fn fn, void *arg);

/* Handles one report. out (initialised by the caller) receives the answer;
 * slowest (len bytes) the name of the slowest counted consumer;
 * *zone_changed (may be NULL) 1 when the tenant's zone as Reads answer it
 * changed with this report. WH_ERR with err set when the store could not
 * read the tenant. */
int st_slot_report(st_slot *s, const Walhook__SlotReport *r, Walhook__SlotReply *out, char *slowest,
                   size_t len, int *zone_changed, char *err, size_t errlen);

/* The tenant's zone for Read answers: 0 (green) when no report is current. */
uint32_t st_slot_zone(st_slot *s, const char *tenant);

#endif
