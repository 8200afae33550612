/* st_state: the runtime state document in the store (docs/CONTROL.md).
 *
 * Key 'S' "state" -> version(8, BE) + the canonical JSON (wh_state_render,
 * unredacted), written with sync. The store keeps the current version, its
 * bytes and its parsed form in memory behind one mutex (state writes are
 * rare; GetState copies the bytes out under it).
 *
 * st_state_open seeds version 1 from the file (wh_state_from_config) when the
 * store holds no document yet. st_state_put validates a document with
 * wh_state_parse and wh_state_validate_write against the current one
 * (ST_STATE_BAD, error naming the field: the filters of the targets it adds
 * or changes are compiled, a target it leaves as stored is not refused
 * for a filter an older walhook let in), refuses a stale
 * expected_version (ST_STATE_CONFLICT, "version conflict: current is N";
 * expected_version 0 with origin "file" is unconditional), does not make a
 * new version for an origin "file" document equal to the current one, and
 * after the write drops the offsets of consumers that were a target of
 * their tenant and no longer are (a consumer that became a target again is
 * un-dropped). Every write sets each target's created_version
 * (wh_state_stamp_created): kept for a target the current document has,
 * the new version for one it does not, whatever the writer sent (version 1
 * when seeding). An origin "file" document keeps each tenant's pending
 * backfill requests (source.backfills): a file has none, and a request the
 * ingestor has not taken yet must survive a reload by whichever daemon
 * forwards it.
 *
 * The st_db must outlive the st_state; st_state_close frees memory only.
 */
#ifndef ST_STATE_H
#define ST_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "st_db.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_state.h"

#define ST_STATE_BAD 400
#define ST_STATE_CONFLICT 412
#define ST_STATE_FAILED 500

typedef struct st_state st_state;

/* base: the store's configuration (defaults for settings a document omits);
 * path: its file (may be NULL), read for the tenants list when seeding. */
int st_state_open(st_state **out, st_db *db, const wh_config *base, const char *path, char *err,
                  size_t errlen);
void st_state_close(st_state *st);

/* *version receives the current version; doc receives its bytes unless
 * known_version equals it. Waits for the st_state_put calls under way (a
 * writer whose reply was lost reads back whether its write landed), not for
 * a conditional st_state_set_offset (it holds the state's lock across a
 * synced write). st_state_version waits for neither: it sees the version
 * before a write under way. */
int st_state_get(st_state *st, uint64_t known_version, uint64_t *version, wh_buf *doc, char *err,
                 size_t errlen);

/* 1 while a state write (st_state_put) is under way: st_state_get waits
 * for it, so a GetState then may wait for the disk (st_server.c). */
int st_state_writing(st_state *st);

/* The current version (for metrics). */
uint64_t st_state_version(st_state *st);

/* The current parsed document with a reference the caller drops
 * (wh_state_unref); NULL when the stored bytes no longer parse. */
wh_state *st_state_current(st_state *st);

/* Drops the data (column families) of every tenant that neither the
 * current state nor the configuration file names: left by a removal whose
 * drop did not happen (the store stopped right after the state write) or
 * failed. Done at open, after every write, and by this call (the store's
 * periodic pass). Nothing is dropped unless the state was read from the
 * store at open and parses (not on a first start, whose state comes from
 * the file), nor when the file's tenants cannot be built. */
void st_state_sweep(st_state *st);

/* Returns WH_OK with *version = the stored (or unchanged) version, or
 * WH_ERR with *status ST_STATE_BAD / ST_STATE_CONFLICT / ST_STATE_FAILED. */
int st_state_put(st_state *st, uint64_t expected_version, const char *doc, size_t len,
                 const char *origin, uint64_t *version, int *status, char *err, size_t errlen);

/* Conditions of st_state_set_offset (SetOffset.condition). */
#define ST_OFFSET_ANY 0    /* none: st_db_set_offset as is */
#define ST_OFFSET_TARGET 1 /* the state names the consumer as a target of the tenant */
#define ST_OFFSET_CREATE 2 /* the state has the tenant, no such target, no live offset */

/* st_db_set_offset once cond holds and, when expected_version is not 0, the
 * current version is expected_version (SetOffset.expected_version: the
 * admin's If-Match), both checked under the state's mutex, so no PutState
 * (and its dropping of removed targets' offsets) runs between the checks
 * and the move. Refused: WH_ERR with *status 404 (no such tenant, or for
 * TARGET no such target), 409 (CREATE: the target exists, or its offset is
 * live: another create is under way, within the grace period below) or,
 * cond holding, ST_STATE_CONFLICT
 * (412, "version conflict: current is N, the request names M"); a failed
 * write: *status 0. */
int st_state_set_offset(st_state *st, const char *tenant, const char *consumer, int cond,
                        uint64_t expected_version, uint64_t lsn, uint32_t seq, st_offset *prev,
                        st_offset *now, int *status, char *err, size_t errlen);

/* Orphan offsets: a live offset that no target of its tenant names (the
 * start offset of a create whose admin died between its SetOffset and its
 * PutState, or any consumer that is no target). The store remembers, in
 * memory, when it first saw each one: at a CREATE's SetOffset, else at the
 * first sweep or refused CREATE after it started (one found on disk).
 * - A CREATE of that name is refused (409) for ST_STATE_CREATE_GRACE_MS from
 *   then (another create may still write its state); after that it replaces
 *   the stale offset.
 * - st_state_sweep_orphans (the store's main loop, every second) drops one
 *   ST_STATE_ORPHAN_DROP_MS after it was first seen, logged with the
 *   tenant and consumer, so it no longer holds the tenant's GC back.
 * A PutState that names the consumer as a target forgets it: the target
 * keeps the offset the create set. */
#define ST_STATE_CREATE_GRACE_MS 30000
#define ST_STATE_ORPHAN_DROP_MS 600000

/* Other bounds (ms, 0 = the default above): tests only. */
void st_state_set_orphan_limits(st_state *st, int64_t create_grace_ms, int64_t drop_ms);

/* Drops the orphan offsets older than the drop bound; returns how many. */
int st_state_sweep_orphans(st_state *st);

#endif
