/* st_resync: the automatic resync of targets that the store marks
 * NEEDS_SNAPSHOT (docs/SLOTS.md "force_resync and NEEDS_SNAPSHOT"), for
 * targets whose delivery setting on_needs_snapshot is "resync".
 *
 * st_resync_run, called from the store's main loop about once a second,
 * takes every marked target of the current state document with that
 * setting whose wait is over and, per tenant:
 *   1. notes the tenant's end P (st_db_tenant_end) and checks that each is
 *      still marked; keeps P and the backfill's id with each mark
 *      (st_db_resync_note, made durable by step 2's synced write);
 *   2. appends one backfill of every table ("*") to the tenant's
 *      source.backfills and stores the document (st_state_put: a synced
 *      write; a failure, e.g. a version conflict with a concurrent writer,
 *      is retried on the next run);
 *   3. sets each target's offset to P if it is still marked
 *      (st_db_resync_offset, synced; clears the mark). A failure here is
 *      retried each run without another backfill.
 * The backfill's read events are stored above P, so the target reads all of
 * them. A crash between 2 and 3 leaves the mark and the note: the first run
 * after the restart finds the noted request in the state and does only
 * step 3, to the noted P (no second backfill: every row's read would be
 * stored twice). A note whose request is not in the state (a crash before
 * step 2's write) starts over at step 1.
 *
 * After a resync a target waits min_interval_ms before the next one; the
 * wait doubles (up to an hour) while it is marked again within four waits
 * (its receiver still down), so a dead target does not make the source's
 * tables be read in a tight loop. The waits are kept in memory only.
 */
#ifndef ST_RESYNC_H
#define ST_RESYNC_H

#include <stdint.h>

#include "st_db.h"
#include "st_state.h"

#define ST_RESYNC_MIN_INTERVAL_MS (5 * 60 * 1000)

typedef struct st_resync st_resync;

int st_resync_new(st_resync **out, st_db *db, st_state *state, int64_t min_interval_ms, char *err,
                  size_t errlen);
void st_resync_free(st_resync *r);

/* Returns how many targets it resynced. */
int st_resync_run(st_resync *r);

#endif
