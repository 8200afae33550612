/* st_slot: track position, force_resync and zones per tenant. See
 * st_slot.h. */
#include "st_slot.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_lsn.h"
#include "wh_util.h"

typedef struct st_prog {
    struct st_prog *next;
    char consumer[ST_NAME_MAX + 1];
    uint64_t lsn;
    uint32_t seq;
    /* the stall timer: while stalled, the stall observed is base_ms plus
     * the time since start_ms (the monotonic clock of this run); base_ms is
     * what an earlier run of the store observed (its downtime not counted) */
    int stalled; /* 0: delivering or nothing to deliver */
    uint64_t base_ms, start_ms;
    uint64_t stored_ms; /* the elapsed time stored (st_db_stall_put); 0: none */
    int seen;
} st_prog;

typedef struct st_slot_tenant {
    struct st_slot_tenant *next;
    char name[ST_NAME_MAX + 1];
    uint32_t zone;
    uint64_t zone_until_ms;
    st_prog *progs;
} st_slot_tenant;

struct st_slot {
    st_db *db;
    pthread_mutex_t mu;  /* the tenant list and the zones */
    pthread_mutex_t rmu; /* one report at a time: the stall timers (progs) and their I/O */
    st_slot_tenant *tenants;
    st_slot_clock_fn clock; /* monotonic clock ms of the stall timers (NULL: wh_now_ms) */
    void *clock_arg;
    uint64_t open_ms; /* that clock when the store opened: restored timers go on from it */
    /* tenants whose last report was not green: while 0 a Read answers green
     * without the lock (the common case costs the Read nothing) */
    _Atomic int nongreen;
};

int st_slot_new(st_slot **out, st_db *db, char *err, size_t errlen)
{
    st_slot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    s->db = db;
    s->open_ms = wh_now_ms();
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    *out = s;
    return WH_OK;
}

void st_slot_set_clock(st_slot *s, st_slot_clock_fn fn, void *arg)
{
    s->clock = fn;
    s->clock_arg = arg;
    s->open_ms = fn != NULL ? fn(arg) : wh_now_ms();
}

static uint64_t stall_now_ms(const st_slot *s)
{
    return s->clock != NULL ? s->clock(s->clock_arg) : wh_now_ms();
}

void st_slot_free(st_slot *s)
{
    if (s == NULL)
        return;
    for (st_slot_tenant *t = s->tenants; t != NULL;) {
        st_slot_tenant *tn = t->next;
        for (st_prog *p = t->progs; p != NULL;) {
            st_prog *pn = p->next;
            free(p);
            p = pn;
        }
        free(t);
        t = tn;
    }
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->rmu);
    free(s);
}

/* under mu */
static st_slot_tenant *tenant_get(st_slot *s, const char *name, int create)
{
    for (st_slot_tenant *t = s->tenants; t != NULL; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    if (!create)
        return NULL;
    st_slot_tenant *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    wh_strlcpy(t->name, name, sizeof(t->name));
    t->next = s->tenants;
    s->tenants = t;
    return t;
}

uint32_t st_slot_zone(st_slot *s, const char *tenant)
{
    if (s == NULL || tenant == NULL)
        return 0;
    if (atomic_load_explicit(&s->nongreen, memory_order_relaxed) == 0)
        return 0;
    uint32_t z = 0;
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&s->mu);
    st_slot_tenant *t = tenant_get(s, tenant, 0);
    if (t != NULL && now < t->zone_until_ms)
        z = t->zone;
    pthread_mutex_unlock(&s->mu);
    return z;
}

typedef struct off_item {
    char consumer[ST_NAME_MAX + 1];
    uint64_t lsn;
    uint32_t seq;
    int ns;
} off_item;

typedef struct off_list {
    off_item *v;
    size_t n, cap;
    int oom;
} off_list;

static void collect(void *arg, const char *consumer, uint64_t lsn, uint32_t seq, int needs_snapshot)
{
    off_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        off_item *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    off_item *it = &l->v[l->n++];
    wh_strlcpy(it->consumer, consumer, sizeof(it->consumer));
    it->lsn = lsn;
    it->seq = seq;
    it->ns = needs_snapshot;
}

static int first_event(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json,
                       size_t len)
{
    *(uint64_t *)arg = lsn;
    return 0; /* max_events 1: the first only */
}

/* Under rmu: notes p's stall observed until now (elapsed_ms) in the store
 * when it changed: stored from the second report that sees the consumer
 * stalled at the same offset, then at every report while it stays (a
 * consumer that moves at every report writes nothing), deleted (0) when it
 * moves again or is forgotten. */
static void stall_keep(st_slot *s, const char *tenant, st_prog *p, uint64_t elapsed_ms)
{
    if (elapsed_ms == p->stored_ms)
        return;
    char err[WH_ERRLEN];
    if (st_db_stall_put(s->db, tenant, p->consumer, elapsed_ms, p->lsn, p->seq, err, sizeof(err)) ==
        WH_OK)
        p->stored_ms = elapsed_ms;
    else
        wh_warn("target %s/%s: keeping its stall timer (source.disconnected_resync_after_s): %s",
                tenant, p->consumer, err);
}

/* Under rmu: a consumer being marked starts its timer again should the
 * mark be cleared (a set offset to the same position included). */
static void stall_forget(st_slot *s, const char *tenant, st_prog *p)
{
    if (p == NULL)
        return;
    p->stalled = 0;
    stall_keep(s, tenant, p, 0);
}

int st_slot_report(st_slot *s, const Walhook__SlotReport *r, Walhook__SlotReply *out, char *slowest,
                   size_t len, int *zone_changed, char *err, size_t errlen)
{
    slowest[0] = '\0';
    if (zone_changed != NULL)
        *zone_changed = 0;
    uint64_t durable, elsn;
    uint32_t eseq;
    /* the durable LSN first: the end read after it holds all its events */
    if (st_db_get_durable(s->db, r->tenant, &durable, err, errlen) != WH_OK ||
        st_db_tenant_end(s->db, r->tenant, &elsn, &eseq, err, errlen) != WH_OK)
        return WH_ERR;
    /* a consumer before the first stored event (a new one at (0,0)) is
     * behind by what is stored, not by the whole WAL */
    uint64_t first = 0;
    size_t nr = 0;
    if (r->resync_lag_bytes > 0 && st_db_read(s->db, r->tenant, 0, 0, 1, SIZE_MAX, first_event,
                                              &first, &nr, err, errlen) != WH_OK)
        return WH_ERR;
    off_list l = {0};
    st_db_offsets_each(s->db, r->tenant, collect, &l);
    if (l.oom) {
        free(l.v);
        return wh_seterr(err, errlen, "out of memory");
    }
    uint64_t now = wh_now_ms();
    off_item **marks = l.n ? calloc(l.n, sizeof(*marks)) : NULL;
    char(*why)[160] = l.n ? calloc(l.n, sizeof(*why)) : NULL;
    int *kinds = l.n ? calloc(l.n, sizeof(*kinds)) : NULL;
    size_t nmarks = 0;
    if (l.n && (marks == NULL || why == NULL || kinds == NULL)) {
        free(marks);
        free(why);
        free(kinds);
        free(l.v);
        return wh_seterr(err, errlen, "out of memory");
    }
    uint64_t track = durable;
    int caught_all = 1;
    uint32_t counted = 0;
    pthread_mutex_lock(&s->rmu);
    pthread_mutex_lock(&s->mu);
    st_slot_tenant *t = tenant_get(s, r->tenant, 1);
    if (t != NULL) {
        uint32_t nz = r->zone <= 2 ? r->zone : 2;
        /* the zone Reads answered until now (a zone nobody renewed is green) */
        uint32_t was = now < t->zone_until_ms ? t->zone : 0;
        if ((t->zone != 0) != (nz != 0))
            atomic_fetch_add(&s->nongreen, nz != 0 ? 1 : -1);
        t->zone = nz;
        t->zone_until_ms = now + (r->zone_ttl_ms ? r->zone_ttl_ms : 10000);
        if (zone_changed != NULL)
            *zone_changed = was != nz;
    }
    pthread_mutex_unlock(&s->mu);
    if (t != NULL)
        for (st_prog *p = t->progs; p != NULL; p = p->next)
            p->seen = 0;
    for (size_t i = 0; i < l.n; i++) {
        off_item *it = &l.v[i];
        if (it->ns)
            continue; /* marked: holds neither the slot nor GC */
        int caught = wh_pos_cmp(it->lsn, it->seq, elsn, eseq) >= 0;
        st_prog *p = NULL;
        for (p = t ? t->progs : NULL; p != NULL; p = p->next)
            if (strcmp(p->consumer, it->consumer) == 0)
                break;
        if (p == NULL && t != NULL && (p = calloc(1, sizeof(*p))) != NULL) {
            wh_strlcpy(p->consumer, it->consumer, sizeof(p->consumer));
            p->lsn = it->lsn;
            p->seq = it->seq;
            /* a timer kept by an earlier run of the store goes on from what
             * it had observed, counted again from the store's open (its
             * downtime is not a stall it saw; still at that offset: below) */
            char gerr[WH_ERRLEN];
            uint64_t elapsed, slsn;
            uint32_t sseq;
            if (st_db_stall_get(s->db, r->tenant, p->consumer, &elapsed, &slsn, &sseq, gerr,
                                sizeof(gerr)) > 0) {
                p->stored_ms = elapsed;
                p->stalled = 1;
                p->base_ms = elapsed;
                p->start_ms = s->open_ms;
                p->lsn = slsn;
                p->seq = sseq;
            }
            p->next = t->progs;
            t->progs = p;
        }
        uint64_t stalled_ms = 0;
        if (p != NULL) {
            uint64_t snow = stall_now_ms(s);
            p->seen = 1;
            if (caught || it->lsn != p->lsn || it->seq != p->seq)
                p->stalled = 0; /* delivered since the last report */
            if (!caught && !p->stalled) {
                p->stalled = 1;
                p->base_ms = 0;
                p->start_ms = snow;
            }
            p->lsn = it->lsn;
            p->seq = it->seq;
            if (p->stalled)
                stalled_ms = p->base_ms + (snow > p->start_ms ? snow - p->start_ms : 0);
            stall_keep(s, r->tenant, p, stalled_ms);
        }
        uint64_t from = it->lsn > first ? it->lsn : first;
        uint64_t lag = !caught && r->wal_lsn > from ? r->wal_lsn - from : 0;
        if (r->resync_lag_bytes > 0 && lag > r->resync_lag_bytes) {
            snprintf(why[nmarks], sizeof(why[nmarks]),
                     "behind the source by %" PRIu64 " bytes, over %" PRIu64, lag,
                     r->resync_lag_bytes);
            kinds[nmarks] = ST_NS_LAG;
            marks[nmarks++] = it;
            stall_forget(s, r->tenant, p);
            continue;
        }
        if (r->resync_after_ms > 0 && stalled_ms >= r->resync_after_ms) {
            snprintf(why[nmarks], sizeof(why[nmarks]),
                     "delivered nothing for %" PRIu64 " s with events to deliver "
                     "(source.disconnected_resync_after_s)",
                     stalled_ms / 1000);
            kinds[nmarks] = ST_NS_DISCONNECTED;
            marks[nmarks++] = it;
            stall_forget(s, r->tenant, p);
            continue;
        }
        counted++;
        uint64_t pos = caught ? durable : it->lsn;
        if (!caught)
            caught_all = 0;
        if (pos < track) {
            track = pos;
            wh_strlcpy(slowest, it->consumer, len);
        }
    }
    if (t != NULL) { /* forget consumers that are gone or marked */
        for (st_prog **pp = &t->progs; *pp != NULL;) {
            if (!(*pp)->seen) {
                st_prog *d = *pp;
                *pp = d->next;
                stall_keep(s, r->tenant, d, 0);
                free(d);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    pthread_mutex_unlock(&s->rmu);
    /* each at the offset it was decided on: one that moved meanwhile is not
     * marked */
    uint32_t marked = 0;
    for (size_t i = 0; i < nmarks; i++)
        marked += (uint32_t)st_db_mark_needs_snapshot(
            s->db, r->tenant, marks[i]->consumer, marks[i]->lsn, marks[i]->seq, kinds[i], why[i]);
    out->track_lsn = track;
    out->caught_up = caught_all;
    out->end_lsn = elsn;
    out->targets = counted;
    out->marked = marked;
    free(marks);
    free(why);
    free(kinds);
    free(l.v);
    return WH_OK;
}
