/* st_push: may a written Append push its events with the store's
 * notification (wh_notify.h)? Only when the store can say which events the
 * tenant holds right before them: each tenant's last stored position (its
 * tail, read once with st_db_tenant_end, then moved by every Append) is
 * kept here, and an Append pushes only when no other Append of the tenant
 * overlapped it (none in flight at its end, none finished since its
 * start), its first event is after the tail it started from, and no offset
 * moved (st_db_offset_moves: a dropped tenant, a SetOffset) since the tail
 * was read. Then the tenant's events in (tail, its last event] are exactly
 * its events. A failed write forgets the tail (read again next time).
 *
 * Usage: st_push_begin before st_db_append, st_push_end after it (always,
 * paired). Thread-safe; a short lock per call, none across I/O. */
#ifndef ST_PUSH_H
#define ST_PUSH_H

#include <stdint.h>

#include "st_db.h"

#define ST_PUSH_MAX_TENANTS 1024 /* tenants tracked; past that, no push */

typedef struct st_push st_push;

typedef struct st_push_tok {
    void *ten;    /* the tenant's entry; NULL: no push */
    int known;    /* the tail was known at the start */
    uint64_t lsn; /* the tail at the start */
    uint32_t seq;
    uint64_t gen; /* Appends of the tenant finished before the start */
} st_push_tok;

int st_push_new(st_push **out);
void st_push_free(st_push *p);
void st_push_begin(st_push *p, st_db *db, const char *tenant, st_push_tok *tok);
/* ok: the Append is written (events_written, before its sync). Returns 1 (push: *prev is the
 * tenant's last position before first) or 0 (notify the position only). */
int st_push_end(st_push *p, st_db *db, st_push_tok *tok, int ok, uint64_t first_lsn,
                uint32_t first_seq, uint64_t last_lsn, uint32_t last_seq, uint64_t *prev_lsn,
                uint32_t *prev_seq, uint64_t *moves);

#endif
