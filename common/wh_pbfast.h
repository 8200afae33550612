/* wh_pbfast: the store's Append request, and a Read's reply, decoded
 * without copying their events.
 *
 * protobuf-c's unpack copies every bytes field into memory of its own: for
 * the one request that carries event bytes in bulk (Request.append) that is
 * a malloc and a copy of every event's json, then a free, in the store's
 * hot path. wh_pbfast_append decodes the plain form of that request (the
 * one the ingestor's ing_batch_encode writes) into one allocation whose
 * events' json (and snapshot_progress) point into the input buffer.
 *
 * It accepts only a Request whose one field is `append`, whose AppendBatch
 * has no field but tenant, events, ack_lsn, batch_id, snapshot_progress,
 * toast_sender and toast_serial, each at most once (events repeated), with
 * Events of commit_lsn, seq, commit_ts_us, json and subxid, each at most
 * once, every 32-bit value within 32 bits. Anything else, malformed input
 * included, returns WH_ERR and the caller unpacks with protobuf-c (which
 * refuses what is malformed). For every input it accepts the result equals
 * walhook__request__unpack's (test_common_pbfast, fuzz_pbfast).
 *
 * *out is freed with free() (never walhook__request__free_unpacked) and is
 * valid while buf is.
 */
#ifndef WH_PBFAST_H
#define WH_PBFAST_H

#include <stddef.h>
#include <stdint.h>

#include "walhook.pb-c.h"
#include "wh_buf.h"

int wh_pbfast_append(const uint8_t *buf, size_t len, Walhook__Request **out);

/* The dispatcher's side: a Reply whose fields are at most status (0),
 * retry_after_ms and `read`, each once, its ReadReply of events (the
 * Events above), committed (a Position of lsn and seq, each at most once),
 * epoch, needs_snapshot, moves and zone (each at most once), decoded into
 * one allocation whose events' json point into buf. Anything else, an
 * error reply or malformed input included, returns WH_ERR and the caller
 * unpacks with protobuf-c. For every input it accepts the result equals
 * walhook__reply__unpack's. *out is freed with free() and valid while buf
 * is. */
int wh_pbfast_read_reply(const uint8_t *buf, size_t len, Walhook__Reply **out);

/* ---- encoding: the wire form protobuf-c's pack writes, byte for byte ---- */

/* Bytes of v as a varint (1-10). */
size_t wh_pb_varint_len(uint64_t v);
/* Writes v as a varint at p; returns the byte after it. */
uint8_t *wh_pb_varint_put(uint8_t *p, uint64_t v);

/* The length of an Event's fields but its json's bytes (fields 1-3, json's
 * tag and length, subxid; zero fields left out, as protobuf-c packs proto3). */
size_t wh_pb_event_head_len(const Walhook__Event *e);

/* Writes e's fields before its json's bytes (commit_lsn, seq, commit_ts_us,
 * json's tag and length) at p; returns the byte after them. subxid, when
 * not 0, follows the json (wh_pb_event_tail_put). */
uint8_t *wh_pb_event_head_put(uint8_t *p, const Walhook__Event *e);
uint8_t *wh_pb_event_tail_put(uint8_t *p, const Walhook__Event *e);

/* A Read reply written in place (the store's side of wh_pbfast_read_reply):
 * the caller appends each event with wh_pb_read_event (a repeated
 * ReadReply.events: its tag, length, head, json and tail) after
 * WH_PB_READ_PREFIX bytes left free at the start of b, then calls
 * wh_pb_read_finish with the ReadReply of those events (its other fields
 * are written after them, the Reply's tag and length before them, in the
 * room left free). *start: where the Reply begins in b. The bytes from
 * *start equal walhook__reply__pack of a Reply whose only field is that
 * ReadReply (status 0). wh_pb_read_finish fails (a reply over 2 GiB, out
 * of memory) before it moves or changes b. */
#define WH_PB_READ_PREFIX 8
int wh_pb_read_event(wh_buf *b, const Walhook__Event *e, size_t *json_off);
int wh_pb_read_finish(wh_buf *b, const Walhook__ReadReply *rr, size_t *start);

#endif
