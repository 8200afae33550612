/* libFuzzer target for wh_pbfast_append and wh_pbfast_read_reply,
 * differential against protobuf-c: any input the fast path accepts must
 * unpack with protobuf-c to the same Append request (tenant, every event's
 * fields and json bytes, ack_lsn, batch_id, toast_sender, toast_serial,
 * snapshot_progress, and nothing else set), or the same Read reply (status
 * 0, no error, retry_after_ms, every event, committed, epoch,
 * needs_snapshot, moves, zone), its bytes pointing inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "walhook.pb-c.h"
#include "wh_pbfast.h"
#include "wh_util.h"

static int bytes_same(ProtobufCBinaryData a, ProtobufCBinaryData b, const uint8_t *in, size_t n)
{
    if (a.len != b.len)
        return 0;
    if (a.len == 0)
        return 1;
    return memcmp(a.data, b.data, a.len) == 0 && a.data >= in && a.data + a.len <= in + n;
}

/* the fast path's events equal protobuf-c's, their json inside the input */
static void events_check(Walhook__Event *const *f, Walhook__Event *const *s, size_t n,
                         const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        const Walhook__Event *x = f[i], *y = s[i];
        if (x->commit_lsn != y->commit_lsn || x->seq != y->seq ||
            x->commit_ts_us != y->commit_ts_us || x->subxid != y->subxid ||
            !bytes_same(x->json, y->json, data, size))
            __builtin_trap();
    }
}

static void reply_check(const uint8_t *data, size_t size)
{
    Walhook__Reply *f = NULL;
    if (wh_pbfast_read_reply(data, size, &f) != WH_OK)
        return;
    Walhook__Reply *s = walhook__reply__unpack(NULL, size, data);
    if (s == NULL || s->body_case != WALHOOK__REPLY__BODY_READ || s->status != 0 ||
        (s->error != NULL && s->error[0] != '\0') || s->retry_after_ms != f->retry_after_ms)
        __builtin_trap();
    const Walhook__ReadReply *a = f->read, *b = s->read;
    if (a->n_events != b->n_events || a->epoch != b->epoch ||
        a->needs_snapshot != b->needs_snapshot || a->moves != b->moves || a->zone != b->zone ||
        (a->committed == NULL) != (b->committed == NULL) ||
        (a->committed != NULL &&
         (a->committed->lsn != b->committed->lsn || a->committed->seq != b->committed->seq)))
        __builtin_trap();
    events_check(a->events, b->events, a->n_events, data, size);
    walhook__reply__free_unpacked(s, NULL);
    free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reply_check(data, size);
    Walhook__Request *f = NULL;
    if (wh_pbfast_append(data, size, &f) != WH_OK)
        return 0;
    Walhook__Request *s = walhook__request__unpack(NULL, size, data);
    if (s == NULL || s->body_case != f->body_case || s->body_case != WALHOOK__REQUEST__BODY_APPEND)
        __builtin_trap();
    const Walhook__AppendBatch *a = f->append, *b = s->append;
    if (strcmp(a->tenant, b->tenant) != 0 || a->n_events != b->n_events ||
        a->ack_lsn != b->ack_lsn || a->batch_id != b->batch_id ||
        a->toast_sender != b->toast_sender || a->toast_serial != b->toast_serial ||
        !bytes_same(a->snapshot_progress, b->snapshot_progress, data, size) || b->stage_xid != 0 ||
        b->stage_reset != 0 || b->stage_commit != NULL || b->n_stage_aborts != 0 ||
        b->n_schemas != 0 || b->n_toast_ops != 0)
        __builtin_trap();
    events_check(a->events, b->events, a->n_events, data, size);
    walhook__request__free_unpacked(s, NULL);
    free(f);
    return 0;
}
