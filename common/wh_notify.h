/* wh_notify: the store's notifications on the wire (published with
 * wh_pub, received with wh_sub). One message per Append, sent once it is
 * written (readable), while its WAL sync runs (the Append is acknowledged
 * to the ingestor only after the sync):
 *
 *   tenant NUL lsn(8, BE) seq(4, BE) [a packed DurableNote]
 *
 * The 12 bytes after the name are the tenant's last stored position (a
 * hint: its readers Read); (0,0) says dead letters were queued for replay.
 * When the Append's events fit (WH_NOTE_PUSH_MAX) and no other Append of the
 * tenant overlapped it, a DurableNote follows (proto/walhook.proto): the
 * events themselves and `prev`, the tenant's last stored position before
 * them, so a reader exactly at prev (or at one of the events) delivers them
 * without a Read. Everything else (a gap, a dropped message, a restart, an
 * offset moved) falls back to the Read. Older subscribers that expect
 * exactly 13 bytes after the name ignore the longer messages (and Read
 * every DSP_NOTIFY_FALLBACK_MS). */
#ifndef WH_NOTIFY_H
#define WH_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "walhook.pb-c.h"

#define WH_NOTE_PUSH_MAX (256u << 10) /* a packed DurableNote, at most */
#define WH_NOTE_MSG_MAX (WH_NOTE_PUSH_MAX + WH_NAME_MAX + 16)

typedef struct wh_note {
    char tenant[WH_NAME_MAX + 1];
    uint64_t lsn; /* the tenant's last stored position */
    uint32_t seq;
    /* the pushed events (checked: strictly after prev, in position order,
     * the last one at (lsn, seq), none empty); NULL: position only */
    Walhook__DurableNote *push;
    /* a zone note (wh_note_encode_zone): the tenant's backpressure zone */
    int has_zone;
    uint32_t zone;
} wh_note;

/* Builds a notification into out (reset first). The events go with it when
 * has_prev, n > 0, events[n-1] is at (lsn, seq) and the packed note fits
 * WH_NOTE_PUSH_MAX; *pushed (may be NULL) says whether they did. WH_ERR
 * only for a tenant name too long or out of memory. */
int wh_note_encode(wh_buf *out, const char *tenant, uint64_t lsn, uint32_t seq, int has_prev,
                   uint64_t prev_lsn, uint32_t prev_seq, uint64_t moves,
                   Walhook__Event *const *events, size_t n, int *pushed);
/* Builds a zone note into out (reset first): the tenant's backpressure
 * zone changed (st_slot). Position UINT64_MAX:UINT32_MAX and a DurableNote
 * with zone_note set and no events: an older subscriber takes it for a
 * position-only notification (its readers Read, and get the zone there). */
int wh_note_encode_zone(wh_buf *out, const char *tenant, uint32_t zone);
/* Parses a received message. WH_ERR: not a notification (no NUL, wrong
 * length). A pushed note that does not check out is dropped (push NULL)
 * and the position stays. Free with wh_note_free. */
int wh_note_decode(const uint8_t *msg, size_t len, wh_note *out);
void wh_note_free(wh_note *n);

#endif
