/* st_resync: automatic resync of NEEDS_SNAPSHOT targets. See st_resync.h. */
#include "st_resync.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_lsn.h"
#include "wh_state.h"
#include "wh_util.h"

#define RS_MAX_INTERVAL_MS (60LL * 60 * 1000)

/* What the store remembers of one target (memory only). */
typedef struct rs_target {
    char tenant[WH_NAME_MAX];
    char target[WH_NAME_MAX];
    int64_t last_ms;     /* the last automatic resync (monotonic ms), 0 = none */
    int64_t interval_ms; /* the wait after it; doubles while it is marked again soon */
    int pending;         /* its backfill is requested, its offset not moved yet */
    uint64_t p_lsn;      /* ... to here */
    uint32_t p_seq;
    int warned; /* a failure was logged; cleared by a success */
    int due;    /* this run: marked, set to resync, its wait over */
} rs_target;

struct st_resync {
    st_db *db;
    st_state *state;
    int64_t min_interval_ms;
    rs_target *t;
    size_t n, cap;
    /* test hook (WH_TEST_STORE_EXIT_AFTER_RESYNC_REQUEST=1): _exit(137)
     * once a backfill request is stored, before any offset moves */
    int test_exit_after_request;
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
    const char *hook = getenv("WH_TEST_STORE_EXIT_AFTER_RESYNC_REQUEST");
    (*out)->test_exit_after_request = hook != NULL && strcmp(hook, "1") == 0;
    if ((*out)->test_exit_after_request)
        wh_warn("test hook WH_TEST_STORE_EXIT_AFTER_RESYNC_REQUEST is set: the store exits "
                "after storing an automatic resync's backfill request");
    return WH_OK;
}

void st_resync_free(st_resync *r)
{
    if (r == NULL)
        return;
    free(r->t);
    free(r);
}

static rs_target *find(st_resync *r, const char *tenant, const char *target)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->t[i].tenant, tenant) == 0 && strcmp(r->t[i].target, target) == 0)
            return &r->t[i];
    return NULL;
}

/* Under the offsets' read lock: only notes the names. */
static void collect(void *arg, const char *tenant, const char *consumer, int64_t since_ms,
                    const char *reason)
{
    WH_UNUSED(since_ms);
    WH_UNUSED(reason);
    st_resync *r = arg;
    rs_target *e = find(r, tenant, consumer);
    if (e == NULL) {
        if (wh_grow(&r->t, r->n + 1, &r->cap, sizeof(*r->t), 8) != WH_OK)
            return; /* out of memory: the next run sees it again */
        e = &r->t[r->n++];
        memset(e, 0, sizeof(*e));
        wh_strlcpy(e->tenant, tenant, sizeof(e->tenant));
        wh_strlcpy(e->target, consumer, sizeof(e->target));
    }
    e->due = 1;
}

static int wants_resync(const wh_state *s, const rs_target *e)
{
    const wh_state_target *g = wh_state_target_find(wh_state_tenant_find(s, e->tenant), e->target);
    return g != NULL && strcmp(g->dl.on_needs_snapshot, "resync") == 0;
}

static void fail_once(rs_target *e, const char *what, const char *err)
{
    if (!e->warned)
        wh_warn("target %s/%s: automatic resync: %s (tried again each second, logged once): %s",
                e->tenant, e->target, what, err);
    e->warned = 1;
}

/* Step 3 of st_resync.h for one target whose backfill is requested. */
static int move_offset(st_resync *r, rs_target *e)
{
    char err[WH_ERRLEN];
    st_offset prev;
    int rc = st_db_resync_offset(r->db, e->tenant, e->target, e->p_lsn, e->p_seq, &prev, err,
                                 sizeof(err));
    if (rc == WH_ERR) {
        fail_once(e, "setting the offset", err);
        return 0;
    }
    e->pending = 0;
    e->warned = 0;
    if (rc == 0) {
        wh_info("target %s/%s: automatic resync: no longer marked, its offset stays", e->tenant,
                e->target);
        return 0;
    }
    char a[WH_LSN_STRLEN], b[WH_LSN_STRLEN];
    wh_lsn_format(prev.lsn, a, sizeof(a));
    wh_lsn_format(e->p_lsn, b, sizeof(b));
    wh_info("target %s/%s: automatic resync (on_needs_snapshot = resync): offset %s:%u -> %s:%u "
            "(the end before the backfill); next automatic resync of it not before %" PRId64 " s",
            e->tenant, e->target, a, prev.seq, b, e->p_seq, e->interval_ms / 1000);
    return 1;
}

/* Steps 1 and 2 of st_resync.h for the due targets of tenant: one backfill
 * of every table for all of them. */
static void request_backfill(st_resync *r, const char *tenant, int64_t now)
{
    char err[WH_ERRLEN] = "";
    const char *what = "noting the tenant's end";
    uint64_t lsn = 0;
    uint32_t seq = 0;
    wh_state *s = NULL, *cur = NULL;
    wh_buf doc;
    wh_buf_init(&doc, 0);
    int ok = 0;
    if (st_db_tenant_end(r->db, tenant, &lsn, &seq, err, sizeof(err)) != WH_OK)
        goto out;
    /* the mark again, after noting the end: one cleared since the scan
     * (an operator, a set offset) is left alone */
    int n = 0;
    for (size_t i = 0; i < r->n; i++) {
        rs_target *e = &r->t[i];
        if (e->due && strcmp(e->tenant, tenant) == 0 &&
            !st_db_needs_snapshot(r->db, e->tenant, e->target))
            e->due = 0;
        n += e->due && strcmp(e->tenant, tenant) == 0;
    }
    if (n == 0) {
        ok = 1;
        goto out;
    }
    what = "storing the backfill request";
    cur = st_state_current(r->state);
    if (cur == NULL || wh_state_clone(&s, cur) != WH_OK) {
        wh_strlcpy(err, cur == NULL ? "the state document does not parse" : "out of memory",
                   sizeof(err));
        goto out;
    }
    wh_state_tenant *t = (wh_state_tenant *)wh_state_tenant_find(s, tenant);
    if (t == NULL) {
        ok = 1; /* removed since the scan */
        goto out;
    }
    unsigned long id = 0;
    wh_state_backfill_add(t, "*", (unsigned long)s->version + 1, &id);
    uint64_t version = 0;
    int status = 0;
    if (wh_state_render(s, &doc, 0) != WH_OK) {
        wh_strlcpy(err, "cannot render the state document", sizeof(err));
        goto out;
    }
    /* the end and the request's id first, with each target's mark: a store
     * that stops after the request and before the offsets move finds them
     * at its start and moves the offsets (st_resync_run), instead of
     * requesting a second backfill of every table */
    what = "noting the resync with the mark";
    for (size_t i = 0; i < r->n; i++) {
        rs_target *e = &r->t[i];
        if (e->due && strcmp(e->tenant, tenant) == 0 &&
            st_db_resync_note(r->db, e->tenant, e->target, lsn, seq, id, err, sizeof(err)) ==
                WH_ERR)
            goto out;
    }
    what = "storing the backfill request";
    if (st_state_put(r->state, s->version, doc.data, doc.len, "resync", &version, &status, err,
                     sizeof(err)) != WH_OK)
        goto out;
    ok = 1;
    wh_info("tenant %s: automatic resync of %d target(s) marked NEEDS_SNAPSHOT: backfill bf-%lu "
            "of every table requested (state version %" PRIu64 ")",
            tenant, n, id, version);
    if (r->test_exit_after_request) {
        wh_error("test hook WH_TEST_STORE_EXIT_AFTER_RESYNC_REQUEST: exiting after the backfill "
                 "request, before the offsets move");
        _exit(137);
    }
    for (size_t i = 0; i < r->n; i++) {
        rs_target *e = &r->t[i];
        if (!e->due || strcmp(e->tenant, tenant) != 0)
            continue;
        /* the wait doubles while a target is marked again soon after its
         * last resync (its receiver still down), up to an hour */
        if (e->interval_ms == 0 || now - e->last_ms > 4 * e->interval_ms)
            e->interval_ms = r->min_interval_ms;
        else if (e->interval_ms < RS_MAX_INTERVAL_MS)
            e->interval_ms *= 2;
        e->last_ms = now;
        e->pending = 1;
        e->p_lsn = lsn;
        e->p_seq = seq;
    }
out:
    /* this run is done with the tenant (a removed one included) */
    for (size_t i = 0; i < r->n; i++)
        if (r->t[i].due && strcmp(r->t[i].tenant, tenant) == 0) {
            if (!ok)
                fail_once(&r->t[i], what, err);
            r->t[i].due = 0;
        }
    wh_state_unref(cur);
    wh_state_unref(s);
    wh_buf_free(&doc);
}

/* 1 when tenant t's backfill requests hold "<bf>:*" (the whole
 * publication), as an automatic resync writes it. */
static int has_request(const wh_state_tenant *t, uint64_t bf)
{
    for (const char *p = t != NULL ? t->backfills : ""; *p != '\0';) {
        char *end = NULL;
        unsigned long long n = strtoull(p, &end, 10);
        if (end != NULL && n == bf && strncmp(end, ":*", 2) == 0 &&
            (end[2] == ';' || end[2] == '\0'))
            return 1;
        const char *semi = strchr(p, ';');
        p = semi ? semi + 1 : p + strlen(p);
    }
    return 0;
}

/* A due target whose resync was noted before a restart (or a failed move)
 * with a request the state holds: that backfill runs, so only its offset
 * is still to move (pending), to the end noted then. */
static void resume_noted(st_resync *r, const wh_state *cur, rs_target *e, int64_t now)
{
    uint64_t lsn = 0, bf = 0;
    uint32_t seq = 0;
    if (e->pending || !st_db_resync_noted(r->db, e->tenant, e->target, &lsn, &seq, &bf) ||
        !has_request(wh_state_tenant_find(cur, e->tenant), bf))
        return;
    char a[WH_LSN_STRLEN];
    wh_lsn_format(lsn, a, sizeof(a));
    wh_info("target %s/%s: automatic resync: its backfill bf-%" PRIu64 " is already requested; "
            "the offset moves to the end noted before it (%s:%u)",
            e->tenant, e->target, bf, a, seq);
    if (e->interval_ms == 0)
        e->interval_ms = r->min_interval_ms;
    e->last_ms = now;
    e->pending = 1;
    e->p_lsn = lsn;
    e->p_seq = seq;
    e->due = 0;
}

int st_resync_run(st_resync *r)
{
    for (size_t i = 0; i < r->n; i++)
        r->t[i].due = 0;
    st_db_needs_snapshot_each(r->db, collect, r);
    wh_state *cur = st_state_current(r->state);
    if (cur == NULL)
        return 0;
    int64_t now = (int64_t)wh_now_ms();
    /* forget targets no longer set to resync (removed ones included) */
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
        if (wants_resync(cur, &r->t[i]))
            r->t[k++] = r->t[i];
    r->n = k;
    for (size_t i = 0; i < r->n; i++) {
        rs_target *e = &r->t[i];
        if (e->due && (e->pending || (e->last_ms != 0 && now - e->last_ms < e->interval_ms)))
            e->due = 0;
        if (e->due)
            resume_noted(r, cur, e, now);
    }
    wh_state_unref(cur);
    for (size_t i = 0; i < r->n; i++)
        if (r->t[i].due)
            request_backfill(r, r->t[i].tenant, now);
    int moved = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->t[i].pending)
            moved += move_offset(r, &r->t[i]);
    return moved;
}
