/* st_resync: automatic resync of NEEDS_SNAPSHOT targets. See st_resync.h. */
#include "st_resync.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "wh_lsn.h"
#include "wh_state.h"
#include "wh_util.h"

typedef struct rs_target {
    char tenant[WH_NAME_MAX];
    char target[WH_NAME_MAX];
    int64_t last_ms; /* the last automatic resync (monotonic ms) */
} rs_target;

struct st_resync {
    st_db *db;
    st_state *state;
    int64_t min_interval_ms;
    rs_target *done; /* targets resynced so far */
    size_t ndone, capdone;
    rs_target *marked; /* this run's marked targets */
    size_t nmarked, capmarked;
};

int st_resync_new(st_resync **out, st_db *db, st_state *state, int64_t min_interval_ms, char *err,
                  size_t errlen)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return wh_seterr(err, errlen, "out of memory");
    (*out)->db = db;
    (*out)->state = state;
    (*out)->min_interval_ms = min_interval_ms;
    return WH_OK;
}

void st_resync_free(st_resync *r)
{
    if (r == NULL)
        return;
    free(r->done);
    free(r->marked);
    free(r);
}

/* Under the offsets' read lock: only copies the names. */
static void collect(void *arg, const char *tenant, const char *consumer, int64_t since_ms,
                    const char *reason)
{
    WH_UNUSED(since_ms);
    WH_UNUSED(reason);
    st_resync *r = arg;
    if (wh_grow(&r->marked, r->nmarked + 1, &r->capmarked, sizeof(*r->marked), 8) != WH_OK)
        return; /* out of memory: the next run sees it again */
    rs_target *m = &r->marked[r->nmarked++];
    memset(m, 0, sizeof(*m));
    wh_strlcpy(m->tenant, tenant, sizeof(m->tenant));
    wh_strlcpy(m->target, consumer, sizeof(m->target));
}

static rs_target *done_find(st_resync *r, const rs_target *m, int add)
{
    for (size_t i = 0; i < r->ndone; i++)
        if (strcmp(r->done[i].tenant, m->tenant) == 0 && strcmp(r->done[i].target, m->target) == 0)
            return &r->done[i];
    if (!add || wh_grow(&r->done, r->ndone + 1, &r->capdone, sizeof(*r->done), 8) != WH_OK)
        return NULL;
    r->done[r->ndone] = *m;
    return &r->done[r->ndone++];
}

/* Steps 1-3 of st_resync.h for one target. */
static int resync_one(st_resync *r, const rs_target *m, char *err, size_t errlen)
{
    uint64_t lsn = 0;
    uint32_t seq = 0;
    wh_state *s = NULL;
    wh_buf doc;
    wh_buf_init(&doc, 0);
    int rc = WH_ERR;
    if (st_db_tenant_end(r->db, m->tenant, &lsn, &seq, err, errlen) != WH_OK)
        goto out;
    wh_state *cur = st_state_current(r->state);
    if (cur == NULL) {
        wh_seterr(err, errlen, "the state document does not parse");
        goto out;
    }
    int ok = wh_state_clone(&s, cur);
    wh_state_unref(cur);
    if (ok != WH_OK) {
        wh_seterr(err, errlen, "out of memory");
        goto out;
    }
    wh_state_tenant *t = (wh_state_tenant *)wh_state_tenant_find(s, m->tenant);
    const wh_state_target *g = wh_state_target_find(t, m->target);
    if (g == NULL || strcmp(g->dl.on_needs_snapshot, "resync") != 0) {
        rc = WH_OK; /* removed, or set back to wait, since the run began */
        goto out;
    }
    unsigned long id = 0;
    wh_state_backfill_add(t, "*", &id);
    uint64_t version = 0;
    int status = 0;
    if (wh_state_render(s, &doc, 0) != WH_OK) {
        wh_seterr(err, errlen, "cannot render the state document");
        goto out;
    }
    if (st_state_put(r->state, s->version, doc.data, doc.len, "resync", &version, &status, err,
                     errlen) != WH_OK)
        goto out;
    st_offset prev, now;
    if (st_db_set_offset(r->db, m->tenant, m->target, lsn, seq, &prev, &now, err, errlen) != WH_OK)
        goto out;
    char pa[WH_LSN_STRLEN], pb[WH_LSN_STRLEN];
    wh_lsn_format(prev.lsn, pa, sizeof(pa));
    wh_lsn_format(lsn, pb, sizeof(pb));
    wh_info("target %s/%s: automatic resync (on_needs_snapshot = resync): offset %s:%u -> %s:%u "
            "(the end), backfill bf-%lu of every table (state version %" PRIu64 ")",
            m->tenant, m->target, pa, prev.seq, pb, seq, id, version);
    rc = 1;
out:
    wh_state_unref(s);
    wh_buf_free(&doc);
    return rc;
}

int st_resync_run(st_resync *r)
{
    r->nmarked = 0;
    st_db_needs_snapshot_each(r->db, collect, r);
    if (r->nmarked == 0)
        return 0;
    wh_state *cur = st_state_current(r->state);
    int n = 0;
    int64_t now = (int64_t)wh_now_ms();
    for (size_t i = 0; cur != NULL && i < r->nmarked; i++) {
        const rs_target *m = &r->marked[i];
        const wh_state_target *g =
            wh_state_target_find(wh_state_tenant_find(cur, m->tenant), m->target);
        if (g == NULL || strcmp(g->dl.on_needs_snapshot, "resync") != 0)
            continue;
        rs_target *d = done_find(r, m, 0);
        if (d != NULL && now - d->last_ms < r->min_interval_ms)
            continue;
        char err[WH_ERRLEN];
        int rc = resync_one(r, m, err, sizeof(err));
        if (rc == WH_ERR) {
            wh_warn("target %s/%s: automatic resync failed (tried again in a second): %s",
                    m->tenant, m->target, err);
            continue;
        }
        if (rc == 1) {
            n++;
            if (d == NULL)
                d = done_find(r, m, 1);
            if (d != NULL)
                d->last_ms = now;
        }
    }
    wh_state_unref(cur);
    return n;
}
