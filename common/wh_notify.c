/* wh_notify: durability notifications on the wire. See wh_notify.h. */
#include "wh_notify.h"

#include <string.h>

#include "wh_lsn.h"
#include "wh_util.h"

int wh_note_encode(wh_buf *out, const char *tenant, uint64_t lsn, uint32_t seq, int has_prev,
                   uint64_t prev_lsn, uint32_t prev_seq, uint64_t moves,
                   Walhook__Event *const *events, size_t n, int *pushed)
{
    if (pushed != NULL)
        *pushed = 0;
    wh_buf_reset(out);
    size_t tl = strlen(tenant);
    if (tl > WH_NAME_MAX)
        return WH_ERR;
    uint8_t pos[12];
    wh_put_be64(pos, lsn);
    wh_put_be32(pos + 8, seq);
    if (wh_buf_append(out, tenant, tl + 1) != WH_OK || wh_buf_append(out, pos, 12) != WH_OK)
        return WH_ERR;
    if (!has_prev || n == 0 || events[n - 1]->commit_lsn != lsn || events[n - 1]->seq != seq)
        return WH_OK;
    Walhook__Position pv = WALHOOK__POSITION__INIT;
    pv.lsn = prev_lsn;
    pv.seq = prev_seq;
    Walhook__DurableNote dn = WALHOOK__DURABLE_NOTE__INIT;
    dn.prev = &pv;
    dn.moves = moves;
    dn.n_events = n;
    dn.events = (Walhook__Event **)events;
    size_t sz = walhook__durable_note__get_packed_size(&dn);
    if (sz > WH_NOTE_PUSH_MAX)
        return WH_OK; /* too big to push: the position only */
    if (wh_buf_reserve(out, sz) != WH_OK)
        return WH_ERR;
    walhook__durable_note__pack(&dn, (uint8_t *)out->data + out->len);
    out->len += sz;
    if (pushed != NULL)
        *pushed = 1;
    return WH_OK;
}

int wh_note_encode_zone(wh_buf *out, const char *tenant, uint32_t zone)
{
    if (wh_note_encode(out, tenant, UINT64_MAX, UINT32_MAX, 0, 0, 0, 0, NULL, 0, NULL) != WH_OK)
        return WH_ERR;
    Walhook__DurableNote dn = WALHOOK__DURABLE_NOTE__INIT;
    dn.zone_note = 1;
    dn.zone = zone;
    size_t sz = walhook__durable_note__get_packed_size(&dn);
    if (wh_buf_reserve(out, sz) != WH_OK)
        return WH_ERR;
    walhook__durable_note__pack(&dn, (uint8_t *)out->data + out->len);
    out->len += sz;
    return WH_OK;
}

/* A pushed note is usable when its events are strictly after prev, in
 * position order, none empty, and the last one is the notified position. */
static int push_ok(const Walhook__DurableNote *dn, uint64_t lsn, uint32_t seq)
{
    if (dn->prev == NULL || dn->n_events == 0)
        return 0;
    uint64_t pl = dn->prev->lsn;
    uint32_t ps = dn->prev->seq;
    for (size_t i = 0; i < dn->n_events; i++) {
        const Walhook__Event *e = dn->events[i];
        if (e == NULL || e->json.len == 0 || e->json.data == NULL ||
            wh_pos_cmp(e->commit_lsn, e->seq, pl, ps) <= 0)
            return 0;
        pl = e->commit_lsn;
        ps = e->seq;
    }
    return pl == lsn && ps == seq;
}

int wh_note_decode(const uint8_t *msg, size_t len, wh_note *out)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *z = memchr(msg, '\0', len < WH_NAME_MAX + 1 ? len : WH_NAME_MAX + 1);
    if (z == NULL)
        return WH_ERR;
    size_t tl = (size_t)(z - msg);
    size_t rest = len - tl - 1;
    if (rest < 12)
        return WH_ERR;
    memcpy(out->tenant, msg, tl + 1);
    out->lsn = wh_get_be64(z + 1);
    out->seq = wh_get_be32(z + 9);
    if (rest == 12)
        return WH_OK;
    Walhook__DurableNote *dn = walhook__durable_note__unpack(NULL, rest - 12, z + 13);
    if (dn == NULL)
        return WH_OK; /* not a note we understand: the position only */
    if (dn->zone_note) {
        out->has_zone = 1;
        out->zone = dn->zone;
    }
    if (!push_ok(dn, out->lsn, out->seq)) {
        walhook__durable_note__free_unpacked(dn, NULL);
        return WH_OK;
    }
    out->push = dn;
    return WH_OK;
}

void wh_note_free(wh_note *n)
{
    if (n == NULL || n->push == NULL)
        return;
    walhook__durable_note__free_unpacked(n->push, NULL);
    n->push = NULL;
}
