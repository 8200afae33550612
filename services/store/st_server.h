/* st_server: walhook-store's request handler on store.endpoint.
 *
 * Dispatches Walhook__Request (Append, Read, Commit, GetOffset, Stats,
 * SetOffset, DropOffset, TenantInfo) to st_db and GetState/PutState to
 * st_state (docs/CONTROL.md). A Commit whose epoch is not the consumer's is
 * refused with ST_STATUS_CONFLICT; PutState answers 400 (bad document, the
 * field named) or 412 (version conflict), as does a SetOffset whose
 * expected_version is not the current one. Input is validated; a bad request gets status
 * ST_STATUS_BAD_REQUEST and an error naming the field (e.g. "events[3].commit_lsn: must be > 0").
 *
 * A Read naming a consumer registers it (offset (0,0), persisted) when it is
 * new, so GC keeps its events until it commits past them.
 *
 * Stats: state "running", ready; while synced writes fail (disk full, I/O
 * error) state "write-failing", not ready, and the reason names RocksDB's
 * error, until a write succeeds again (st_db_write_health).
 *
 * Durability notifications: after every synced Append the tenant's last
 * position is published on wh_notify_url(endpoint) (wh_pub); dispatchers
 * read when notified instead of long-polling. A Read naming a consumer
 * uses its cursor (st_db_reader: reused iterator, no offsets-table lock).
 *
 * Long poll: a Read with wait_ms > 0 that finds nothing waits (at most
 * ST_MAX_WAIT_MS) on a per-tenant condition variable that Append of that
 * tenant signals. At most workers-1 requests long-poll at once so that one
 * worker always stays free for Appends/Commits; past that, a Read returns
 * at once (empty).
 *
 * Usage: st_server_create (no network) -> st_server_listen (NNG) ->
 * st_server_stop (wakes long polls, stops NNG, joins workers) ->
 * st_server_destroy. The db must outlive the server.
 */
#ifndef ST_SERVER_H
#define ST_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "st_db.h"
#include "st_state.h"
#include "walhook.pb-c.h"

#define ST_STATUS_BAD_REQUEST 400 /* the error names the field */
#define ST_STATUS_NOT_FOUND 404   /* SetOffset with a condition: no such tenant or target */
#define ST_STATUS_CONFLICT 409    /* commit with a stale epoch, dropped consumer */
#define ST_STATUS_SLOW_DOWN 429   /* write budget or isolation guard: Reply.retry_after_ms */
#define ST_STATUS_INTERNAL 500    /* storage failure */
#define ST_STATUS_UNAVAILABLE 503 /* no state attached */

#define ST_MAX_WAIT_MS 5000
#define ST_DEFAULT_MAX_EVENTS 1000
#define ST_MAX_EVENTS 10000
#define ST_DEFAULT_MAX_BYTES (1024 * 1024)

/* Streamed transactions (AppendBatch.stage_*, proto/walhook.proto): an
 * Append carries one of events, staged events (stage_xid: st_db_stage_put),
 * stage_aborts (st_db_stage_abort) or a stage_commit; a mix, or a stage
 * field malformed, is answered 400 naming it, nothing stored. A
 * stage_commit turns the staged events into events (commit_lsn, 0..n-1),
 * json = head(seq) + staged json, in chunks of ST_STAGE_CHUNK_BYTES of
 * json, each stored as an Append is (group commit, push, notification,
 * counters, the tenant's write budget: admitted once, then charged); the
 * last chunk carries ack_lsn and drops the staging in its WriteBatch.
 * AppendReply.stored: staged events in the request, or events the commit
 * made. */
/* 1 MiB, as an ingestor's request: with 4 MiB the store's CPU per event of
 * a streamed wide backlog was 19.5 us against 11.3-12.9, its PSS 9 MiB
 * more (bench/RESULTS.md, session 11) */
#define ST_STAGE_CHUNK_BYTES (1u << 20)
#define ST_STAGE_HEAD_PARTS 64    /* stage_commit.head_parts, at most */
#define ST_STAGE_HEAD_BYTES 65536 /* their bytes together, at most */

typedef struct st_server st_server;

int st_server_create(st_server **out, st_db *db, int workers, size_t max_msg, char *err,
                     size_t errlen);
/* Attaches the state document (before listening); without it GetState and
 * PutState answer ST_STATUS_UNAVAILABLE. */
void st_server_set_state(st_server *s, st_state *st);
/* Starts serving on url with `workers` threads (wh_server_start). */
/* Housekeeping without requests (the main loop, about once a second):
 * closes idle reader cursors, those of removed tenants at once. */
void st_server_tick(st_server *s);

/* Bytes of json per internal append of a stage commit (tests; 0 = default). */
void st_server_set_stage_chunk(st_server *s, size_t bytes);
/* Reads in a long poll now: counted once the Read has its consumer's offset
 * and before it first looks for events (tests). */
int st_server_long_polls(st_server *s);

/* store.notify_endpoint, before st_server_listen ("" = derived). */
void st_server_set_notify(st_server *s, const char *setting);
int st_server_listen(st_server *s, const char *url, char *err, size_t errlen);
/* Wakes long polls and stops the NNG server (if listening). Idempotent. */
void st_server_stop(st_server *s);
void st_server_destroy(st_server *s);

/* The handler itself (wh_server_fn / wh_server_done_fn), exposed for tests:
 * rep must be walhook__reply__init'ed; call st_server_done(s, rep, cookie)
 * once the reply is no longer needed. */
void st_server_handle(void *s, const Walhook__Request *req, Walhook__Reply *rep, void **cookie);
void st_server_done(void *s, Walhook__Reply *rep, void *cookie);

#endif
