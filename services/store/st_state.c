/* st_state: the runtime state document in the store. See st_state.h. */
#include "st_state.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_state.h"
#include "wh_util.h"

/* A live offset that no target of its tenant names: the start offset of a
 * create whose state write has not landed (or never will: the admin died
 * between its SetOffset and its PutState), or any other consumer no target
 * names. Kept in memory only: since_ms is when this store process first
 * saw it (at the CREATE's SetOffset, or at the first orphan sweep or
 * refused CREATE after the store started, for one found on disk). */
typedef struct st_orphan st_orphan;
struct st_orphan {
    st_orphan *next;
    char *tenant, *consumer;
    uint64_t since_ms; /* wh_now_ms */
    uint64_t sweep;    /* the sweep that last saw it live and unnamed */
};

struct st_state {
    st_db *db;
    wh_config base;
    pthread_mutex_t mu; /* everything below */
    /* version and doc also: a writer changes them holding mu and pub_mu,
     * GetState and Stats read them under pub_mu alone, so they do not wait
     * for a conditional SetOffset (it holds mu across its synced write).
     * GetState waits for the state writes under way (`writers`): a
     * writer whose reply was lost (the admin's PutState timed out while
     * the write waited for the disk) reads the state back to learn whether
     * it landed, and the version before the write, answered while it is
     * under way, was taken as "not written" (the admin's create then
     * dropped the start offset of the target the write went on to name).
     * Stats waits for nothing. */
    pthread_mutex_t pub_mu;
    pthread_cond_t pub_cv; /* signalled when `writers` goes to 0 */
    int writers;           /* st_state_put calls under way (under pub_mu) */
    uint64_t version;
    wh_buf doc;    /* canonical bytes of `version` */
    wh_state *cur; /* parsed; NULL if the stored bytes no longer parse */
    /* the tenants of the configuration file (and env) at open, kept by
     * st_state_sweep though the state does not name them; sweep 0: the
     * state was not read from the store, or the file's tenants are not
     * known: nothing is swept */
    wh_state *file;
    int sweep;
    /* test hook (WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL=1): _exit(137)
     * right after the synced write of a state that removes a tenant, before
     * its column families are dropped (a crash at that point) */
    int test_exit_after_removal;
    st_orphan *orphans;
    uint64_t sweeps;
    int64_t create_grace_ms, orphan_drop_ms; /* 0: the defaults (st_state.h) */
};

static void sweep_locked(st_state *st);

static void reconcile_tenants(st_state *st, const wh_state *old, const wh_state *cur);

/* The store's runtime settings of state s (retention caps, write rates,
 * store.write_stall_ms) into the db. */
static void apply_limits(st_state *st, const wh_state *s)
{
    static wh_config eff; /* large; callers hold st->mu or run at open */
    wh_state_effective(&eff, &st->base, s, NULL);
    st_db_limits l = {eff.store_retention_bytes,   eff.store_retention_age_s * 1000,
                      eff.store_tenant_rate_bytes, eff.store_tenant_rate_events,
                      eff.store_tenant_burst_ms,   eff.store_commit_share_bytes,
                      eff.store_io_rate_bytes,     eff.store_isolation_target_pct};
    st_db_set_limits(st->db, &l);
    st_db_set_toast_bytes(st->db, eff.store_toast_cache_bytes);
    st_db_set_schema_prune(st->db, eff.store_schema_prune);
    st_db_set_write_stall_ms(st->db, eff.store_write_stall_ms);
}

/* Renders s as version `version` into out (reset first). */
static int render_version(wh_state *s, uint64_t version, wh_buf *out)
{
    uint64_t keep = s->version;
    s->version = version;
    wh_buf_reset(out);
    int rc = wh_state_render(s, out, 0);
    s->version = keep;
    return rc;
}

int st_state_open(st_state **out, st_db *db, const wh_config *base, const char *path, char *err,
                  size_t errlen)
{
    *out = NULL;
    st_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return wh_seterr(err, errlen, "out of memory");
    st->db = db;
    st->base = *base;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->pub_mu, NULL);
    pthread_cond_init(&st->pub_cv, NULL);
    wh_buf_init(&st->doc, 0);
    char *doc = NULL;
    size_t len = 0;
    char sub[WH_ERRLEN];
    if (st_db_state_get(db, &st->version, &doc, &len, err, errlen) != WH_OK)
        goto error;
    if (doc != NULL) {
        if (wh_buf_append(&st->doc, doc, len) != WH_OK) {
            wh_seterr(err, errlen, "out of memory");
            goto error;
        }
        if (wh_state_parse(&st->cur, doc, len, base, sub, sizeof(sub)) != WH_OK) {
            wh_warn("stored state version %" PRIu64 " does not validate any more (%s); it is "
                    "served as it is until the next write",
                    st->version, sub);
        } else {
            st->cur->version = st->version;
            /* the file's tenants are kept whatever the state says */
            if (wh_state_from_config(&st->file, base, path, sub, sizeof(sub)) != WH_OK)
                wh_warn("the tenants of the configuration are not known (%s): the data of "
                        "tenants the state does not name is kept",
                        sub);
            else
                st->sweep = 1;
        }
        free(doc);
        doc = NULL;
    } else {
        /* first start: version 1 from the file and env */
        if (wh_state_from_config(&st->cur, base, path, err, errlen) != WH_OK)
            goto error;
        wh_state_stamp_created(st->cur, NULL, 1);
        /* with the rules of a new write (no two tenants on one slot ...) */
        if (wh_state_validate(st->cur, sub, sizeof(sub)) != WH_OK) {
            wh_seterr(err, errlen, "configuration: %s", sub);
            goto error;
        }
        if (render_version(st->cur, 1, &st->doc) != WH_OK) {
            wh_seterr(err, errlen, "state: cannot render");
            goto error;
        }
        if (st_db_state_put(db, 1, st->doc.data, st->doc.len, err, errlen) != WH_OK)
            goto error;
        st->version = st->cur->version = 1;
        wh_info("state version 1 written from the configuration (%d tenants)", st->cur->ntenants);
    }
    const char *hook = getenv("WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL");
    st->test_exit_after_removal = hook != NULL && strcmp(hook, "1") == 0;
    if (st->test_exit_after_removal)
        wh_warn("test hook WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL is set: the store exits "
                "after the next state write that removes a tenant");
    if (st->cur != NULL) {
        reconcile_tenants(st, NULL, st->cur);
        sweep_locked(st); /* a crash or failed drop after a removal */
        apply_limits(st, st->cur);
    } else {
        apply_limits(st, NULL);
    }
    *out = st;
    return WH_OK;
error:
    free(doc);
    st_state_close(st);
    return WH_ERR;
}

void st_state_close(st_state *st)
{
    if (st == NULL)
        return;
    wh_state_unref(st->cur);
    wh_state_unref(st->file);
    wh_buf_free(&st->doc);
    while (st->orphans != NULL) {
        st_orphan *o = st->orphans;
        st->orphans = o->next;
        free(o->tenant);
        free(o->consumer);
        free(o);
    }
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->pub_mu);
    pthread_cond_destroy(&st->pub_cv);
    free(st);
}

int st_state_get(st_state *st, uint64_t known_version, uint64_t *version, wh_buf *doc, char *err,
                 size_t errlen)
{
    int rc = WH_OK;
    pthread_mutex_lock(&st->pub_mu);
    while (st->writers > 0)
        pthread_cond_wait(&st->pub_cv, &st->pub_mu);
    *version = st->version;
    if (st->version != known_version && wh_buf_append(doc, st->doc.data, st->doc.len) != WH_OK)
        rc = wh_seterr(err, errlen, "out of memory");
    pthread_mutex_unlock(&st->pub_mu);
    return rc;
}

int st_state_writing(st_state *st)
{
    pthread_mutex_lock(&st->pub_mu);
    int w = st->writers > 0;
    pthread_mutex_unlock(&st->pub_mu);
    return w;
}

uint64_t st_state_version(st_state *st)
{
    pthread_mutex_lock(&st->pub_mu);
    uint64_t v = st->version;
    pthread_mutex_unlock(&st->pub_mu);
    return v;
}

wh_state *st_state_current(st_state *st)
{
    pthread_mutex_lock(&st->mu);
    wh_state *s = st->cur;
    if (s != NULL)
        wh_state_ref(s);
    pthread_mutex_unlock(&st->mu);
    return s;
}

/* A tenant of `cur` gets its column families; a tenant of `old` that `cur`
 * no longer has loses them (its events, offsets, dead letters). */
static void reconcile_tenants(st_state *st, const wh_state *old, const wh_state *cur)
{
    char err[WH_ERRLEN];
    for (int i = 0; old != NULL && i < old->ntenants; i++) {
        const char *name = old->tenants[i].name;
        if (wh_state_tenant_find(cur, name) != NULL)
            continue;
        if (st_db_tenant_drop(st->db, name, err, sizeof(err)) != WH_OK)
            wh_error("state: dropping removed tenant %s: %s", name, err);
        else
            wh_info("state: tenant %s removed, its data is dropped", name);
    }
    for (int i = 0; i < cur->ntenants; i++)
        if (st_db_tenant_create(st->db, cur->tenants[i].name, err, sizeof(err)) != WH_OK)
            wh_error("state: tenant %s: %s", cur->tenants[i].name, err);
}

static void sweep_one(void *arg, const char *tenant)
{
    st_state *st = arg;
    if (wh_state_tenant_find(st->cur, tenant) != NULL)
        return;
    /* marked: a state removing it was written (st_state_put), whatever the
     * file names; unmarked: only with the file's tenants known */
    int marked = st_db_tenant_removal_marked(st->db, tenant);
    if (!marked && (!st->sweep || wh_state_tenant_find(st->file, tenant) != NULL ||
                    strcmp(tenant, st->base.tenant) == 0))
        return;
    char err[WH_ERRLEN];
    if (st_db_tenant_drop(st->db, tenant, err, sizeof(err)) != WH_OK) {
        wh_error("state: tenant %s is named by neither state version %" PRIu64
                 " nor the configuration; dropping its leftover data failed (tried again at "
                 "the next state write and every minute): %s",
                 tenant, st->version, err);
        return;
    }
    if (marked)
        wh_info("state: tenant %s was being removed (state version %" PRIu64
                " does not name it) when the store stopped: its leftover data is dropped",
                tenant, st->version);
    else
        wh_info("state: tenant %s is named by neither state version %" PRIu64
                " nor the configuration: its leftover data (of a removal whose drop did not "
                "finish) is dropped",
                tenant, st->version);
}

/* Drops the column families of every tenant that neither the current state
 * nor the configuration file names: those of a removal whose drop did not
 * happen (the store stopped between the state write and the drop) or
 * failed. A tenant marked for removal (st_db_tenant_mark_removal) goes
 * whatever the file names; an unmarked one only with a state read from the
 * store (st->sweep) and the file's tenants known. Never without a parsed
 * state. Caller holds mu (or runs at open). */
static void sweep_locked(st_state *st)
{
    if (st->cur == NULL)
        return;
    st_db_tenant_each(st->db, sweep_one, st);
}

void st_state_sweep(st_state *st)
{
    pthread_mutex_lock(&st->mu);
    sweep_locked(st);
    pthread_mutex_unlock(&st->mu);
}

/* 1 when s removes a tenant of old */
static int removes_tenant(const wh_state *old, const wh_state *s)
{
    for (int i = 0; old != NULL && i < old->ntenants; i++)
        if (wh_state_tenant_find(s, old->tenants[i].name) == NULL)
            return 1;
    return 0;
}

/* Drops offsets of targets of `old` that `cur` no longer has, un-drops
 * targets `cur` has that `old` did not. Caller holds mu. */
static void reconcile_offsets(st_state *st, const wh_state *old, const wh_state *cur)
{
    char err[WH_ERRLEN];
    for (int i = 0; old != NULL && i < old->ntenants; i++) {
        const wh_state_tenant *ot = &old->tenants[i];
        const wh_state_tenant *nt = wh_state_tenant_find(cur, ot->name);
        for (int j = 0; j < ot->ntargets; j++) {
            const char *name = ot->targets[j].name;
            if (wh_state_target_find(nt, name) != NULL)
                continue;
            st_offset prev;
            if (st_db_drop_offset(st->db, ot->name, name, &prev, err, sizeof(err)) != WH_OK)
                wh_error("state: dropping the offset of removed target %s/%s: %s", ot->name, name,
                         err);
            else
                wh_info("state: target %s/%s removed, its offset is dropped", ot->name, name);
            if (st_db_dlq_drop(st->db, ot->name, name, err, sizeof(err)) != WH_OK)
                wh_error("state: dropping the dead letters of removed target %s/%s: %s", ot->name,
                         name, err);
        }
    }
    reconcile_tenants(st, old, cur);
    for (int i = 0; i < cur->ntenants; i++) {
        const wh_state_tenant *nt = &cur->tenants[i];
        const wh_state_tenant *ot = wh_state_tenant_find(old, nt->name);
        for (int j = 0; j < nt->ntargets; j++)
            if (wh_state_target_find(ot, nt->targets[j].name) == NULL)
                st_db_undrop(st->db, nt->name, nt->targets[j].name);
    }
}

/* ---- orphan offsets (docs/INTERNALS.md, "Orphan start offsets") ---- */

static int64_t create_grace_ms(const st_state *st)
{
    return st->create_grace_ms > 0 ? st->create_grace_ms : ST_STATE_CREATE_GRACE_MS;
}

static int64_t orphan_drop_ms(const st_state *st)
{
    return st->orphan_drop_ms > 0 ? st->orphan_drop_ms : ST_STATE_ORPHAN_DROP_MS;
}

/* The entry of tenant/consumer; when there is none and add is set, a new
 * one first seen at now. NULL: none (or out of memory). Caller holds mu. */
static st_orphan *orphan_find(st_state *st, const char *tenant, const char *consumer, int add,
                              uint64_t now)
{
    for (st_orphan *o = st->orphans; o != NULL; o = o->next)
        if (strcmp(o->tenant, tenant) == 0 && strcmp(o->consumer, consumer) == 0)
            return o;
    if (!add)
        return NULL;
    st_orphan *o = calloc(1, sizeof(*o));
    if (o == NULL || (o->tenant = strdup(tenant)) == NULL ||
        (o->consumer = strdup(consumer)) == NULL) {
        if (o != NULL)
            free(o->tenant);
        free(o);
        return NULL;
    }
    o->since_ms = now;
    o->next = st->orphans;
    st->orphans = o;
    return o;
}

/* Removes the entries keep() refuses. Caller holds mu. */
static void orphans_filter(st_state *st, int (*keep)(const st_state *st, const st_orphan *o))
{
    st_orphan **pp = &st->orphans;
    while (*pp != NULL) {
        st_orphan *o = *pp;
        if (keep(st, o)) {
            pp = &o->next;
            continue;
        }
        *pp = o->next;
        free(o->tenant);
        free(o->consumer);
        free(o);
    }
}

static int orphan_unnamed(const st_state *st, const st_orphan *o)
{
    const wh_state_tenant *t = wh_state_tenant_find(st->cur, o->tenant);
    return t == NULL || wh_state_target_find(t, o->consumer) == NULL;
}

static int orphan_seen(const st_state *st, const st_orphan *o)
{
    return o->sweep == st->sweeps;
}

/* A CREATE finds the consumer's offset live though no target names it:
 * another create's start offset. Within create_grace_ms of when this store
 * first saw it, that create may still write its state: refused (0). Past
 * it, the create that set it is taken as dead (its admin killed between
 * its SetOffset and its PutState) and the offset may be replaced (1).
 * Caller holds mu. */
static int create_intent_stale(st_state *st, const char *tenant, const char *consumer, uint64_t now,
                               int64_t *left_ms)
{
    st_orphan *o = orphan_find(st, tenant, consumer, 1, now);
    *left_ms = o == NULL ? create_grace_ms(st) : create_grace_ms(st) - (int64_t)(now - o->since_ms);
    if (*left_ms > 0)
        return 0;
    wh_warn("state: the offset of %s/%s has been live for %" PRIu64 " ms though no target names "
            "it (a create that never wrote its state): a new create of it replaces it",
            tenant, consumer, now - o->since_ms);
    return 1;
}

void st_state_set_orphan_limits(st_state *st, int64_t create_grace_ms, int64_t drop_ms)
{
    pthread_mutex_lock(&st->mu);
    st->create_grace_ms = create_grace_ms;
    st->orphan_drop_ms = drop_ms;
    pthread_mutex_unlock(&st->mu);
}

typedef struct {
    char **v;
    size_t n, cap;
} name_list;

static void collect_consumer(void *arg, const char *consumer, uint64_t lsn, uint32_t seq,
                             int needs_snapshot)
{
    (void)lsn, (void)seq, (void)needs_snapshot;
    name_list *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, nc * sizeof(*v));
        if (v == NULL)
            return; /* this sweep skips it; the next one sees it */
        l->v = v;
        l->cap = nc;
    }
    if ((l->v[l->n] = strdup(consumer)) != NULL)
        l->n++;
}

int st_state_sweep_orphans(st_state *st)
{
    int dropped = 0;
    char err[WH_ERRLEN];
    pthread_mutex_lock(&st->mu);
    if (st->cur == NULL)
        goto out;
    uint64_t now = wh_now_ms(), sweep = ++st->sweeps;
    for (int i = 0; i < st->cur->ntenants; i++) {
        const wh_state_tenant *t = &st->cur->tenants[i];
        name_list l = {NULL, 0, 0};
        st_db_offsets_each(st->db, t->name, collect_consumer, &l); /* live ones */
        for (size_t k = 0; k < l.n; k++) {
            const char *c = l.v[k];
            st_orphan *o =
                wh_state_target_find(t, c) != NULL ? NULL : orphan_find(st, t->name, c, 1, now);
            if (o == NULL)
                continue;
            o->sweep = sweep;
            uint64_t age = now - o->since_ms;
            if ((int64_t)age < orphan_drop_ms(st))
                continue;
            st_offset prev;
            if (st_db_drop_offset(st->db, t->name, c, &prev, err, sizeof(err)) != WH_OK) {
                wh_error("state: dropping the offset of %s/%s, which no target names: %s", t->name,
                         c, err);
                continue;
            }
            o->sweep = 0; /* forgotten below */
            dropped++;
            wh_warn("state: the offset of %s/%s (%X/%X:%u) was live for %.1f s though no "
                    "target names it (a create that never wrote its state, or a "
                    "consumer that is no target): dropped, it no longer holds the tenant's GC back",
                    t->name, c, (unsigned)(prev.lsn >> 32), (unsigned)prev.lsn, prev.seq,
                    (double)age / 1000);
        }
        for (size_t k = 0; k < l.n; k++)
            free(l.v[k]);
        free(l.v);
    }
    /* what this sweep did not see live and unnamed is no orphan (any more) */
    orphans_filter(st, orphan_seen);
out:
    pthread_mutex_unlock(&st->mu);
    return dropped;
}

/* A file has no backfill requests: an origin "file" document keeps each
 * tenant's pending ones (source.backfills) from cur, so a request stored by
 * the admin or st_resync that the ingestor has not taken yet is not lost,
 * whichever daemon turned a SIGHUP into this write. Each target's resume
 * count too (the file has none): dropped to 0, the write would be a new
 * version even for an unchanged file, with the count changed under the
 * dispatcher. Caller holds mu. */
static void keep_backfills(wh_state *s, const wh_state *cur)
{
    for (int i = 0; cur != NULL && i < s->ntenants; i++) {
        wh_state_tenant *t = &s->tenants[i];
        const wh_state_tenant *ct = wh_state_tenant_find(cur, t->name);
        if (ct == NULL)
            continue;
        wh_strlcpy(t->backfills, ct->backfills, sizeof(t->backfills));
        for (int k = 0; k < t->ntargets; k++) {
            const wh_state_target *cg = wh_state_target_find(ct, t->targets[k].name);
            if (cg != NULL && cg->resumes > t->targets[k].resumes)
                t->targets[k].resumes = cg->resumes;
        }
    }
}

/* A state write arrived (1; it may wait for mu behind another write or a
 * conditional SetOffset) or done, written or not (-1): GetState waits
 * while any is under way. */
static void writers_add(st_state *st, int d)
{
    pthread_mutex_lock(&st->pub_mu);
    st->writers += d;
    if (st->writers == 0)
        pthread_cond_broadcast(&st->pub_cv);
    pthread_mutex_unlock(&st->pub_mu);
}

int st_state_put(st_state *st, uint64_t expected_version, const char *doc, size_t len,
                 const char *origin, uint64_t *version, int *status, char *err, size_t errlen)
{
    *status = 0;
    if (origin == NULL || origin[0] == '\0')
        origin = "api";
    if (strlen(origin) > 16) {
        *status = ST_STATE_BAD;
        return wh_seterr(err, errlen, "origin: longer than 16 bytes");
    }
    wh_state *s = NULL;
    /* GetState waits for its outcome from here: from its arrival, before
     * st_state_current, which waits for mu behind a state write or a
     * conditional SetOffset (or the store's own sweeps) under way */
    writers_add(st, 1);
    /* wh_state_validate_write also compiles the targets' filters (the
     * parser does not), but for the targets the current document has as
     * they are: a target stored by an older walhook with a filter that does
     * not compile does not block the writes that leave it alone, and a
     * write that adds or changes one is refused */
    wh_state *prev = st_state_current(st);
    if (wh_state_parse(&s, doc, len, &st->base, err, errlen) != WH_OK ||
        wh_state_validate_write(s, prev, err, errlen) != WH_OK) {
        wh_state_unref(s);
        wh_state_unref(prev);
        writers_add(st, -1);
        *status = ST_STATE_BAD;
        return WH_ERR;
    }
    int file = strcmp(origin, "file") == 0;
    wh_buf next, same;
    wh_buf_init(&next, 0);
    wh_buf_init(&same, 0);
    int rc = WH_OK;
    pthread_mutex_lock(&st->mu);
    *version = st->version;
    if (file)
        keep_backfills(s, st->cur);
    if (!(file && expected_version == 0) && expected_version != st->version) {
        *status = ST_STATE_CONFLICT;
        rc = wh_seterr(err, errlen, "version conflict: current is %" PRIu64, st->version);
        goto out;
    }
    /* another write since the check above (only an unconditional "file"
     * one gets here then): checked again against the document it replaces */
    if (st->cur != prev && wh_state_validate_write(s, st->cur, err, errlen) != WH_OK) {
        *status = ST_STATE_BAD;
        rc = WH_ERR;
        goto out;
    }
    /* which targets are new: the store's to say (a target deleted and
     * created again is new, even for a reader that sees both writes as one
     * version), so whatever the writer sent is replaced */
    wh_state_stamp_created(s, st->cur, st->version + 1);
    if (file && render_version(s, st->version, &same) == WH_OK && same.len == st->doc.len &&
        memcmp(same.data, st->doc.data, same.len) == 0)
        goto out; /* the file says what runs: no new version */
    uint64_t nv = st->version + 1;
    if (render_version(s, nv, &next) != WH_OK) {
        *status = ST_STATE_FAILED;
        rc = wh_seterr(err, errlen, "state: cannot render");
        goto out;
    }
    /* the column families of the tenants it adds first: a state naming a
     * tenant the store cannot keep (ST_MAX_TENANTS, ST_MAX_TENANT_NAMES, a
     * RocksDB error) is refused, not stored for an ingestor whose appends
     * all fail. Those made for a write that then fails are swept. */
    for (int i = 0; i < s->ntenants; i++) {
        const char *name = s->tenants[i].name;
        char sub[WH_ERRLEN];
        if (wh_state_tenant_find(st->cur, name) == NULL &&
            st_db_tenant_create(st->db, name, sub, sizeof(sub)) != WH_OK) {
            *status = ST_STATE_FAILED;
            rc = wh_seterr(err, errlen, "tenants[%d]: the store cannot keep tenant %s: %s", i, name,
                           sub);
            goto out;
        }
    }
    /* each tenant it removes is marked first (synced, in the tenant's own
     * data): a store that stops between this write and the drop below
     * drops the data at its next open, even for a tenant the
     * configuration file names (st_state_sweep) */
    for (int i = 0; st->cur != NULL && i < st->cur->ntenants; i++) {
        const char *name = st->cur->tenants[i].name;
        if (wh_state_tenant_find(s, name) == NULL &&
            st_db_tenant_mark_removal(st->db, name, 1, err, errlen) != WH_OK) {
            *status = ST_STATE_FAILED;
            rc = WH_ERR;
            goto out;
        }
    }
    if (st_db_state_put(st->db, nv, next.data, next.len, err, errlen) != WH_OK) {
        *status = ST_STATE_FAILED;
        rc = WH_ERR;
        for (int i = 0; st->cur != NULL && i < st->cur->ntenants; i++) {
            char sub[WH_ERRLEN];
            if (wh_state_tenant_find(s, st->cur->tenants[i].name) == NULL)
                (void)st_db_tenant_mark_removal(st->db, st->cur->tenants[i].name, 0, sub,
                                                sizeof(sub));
        }
        goto out;
    }
    if (st->test_exit_after_removal && removes_tenant(st->cur, s)) {
        wh_error("test hook WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL: exiting after the write "
                 "of state version %" PRIu64 ", before the removed tenant's data is dropped",
                 nv);
        _exit(137);
    }
    s->version = nv;
    reconcile_offsets(st, st->cur, s);
    apply_limits(st, s);
    pthread_mutex_lock(&st->pub_mu);
    wh_buf tmp = st->doc;
    st->doc = next;
    next = tmp;
    st->version = nv;
    pthread_mutex_unlock(&st->pub_mu);
    wh_state_unref(st->cur);
    st->cur = s;
    s = NULL;
    sweep_locked(st); /* a drop that failed before, or made by a failed write */
    *version = nv;
    orphans_filter(st, orphan_unnamed); /* a created target's start offset is no orphan */
    wh_info("state version %" PRIu64 " stored (origin %s)", nv, origin);
out:
    pthread_mutex_unlock(&st->mu);
    writers_add(st, -1);
    wh_state_unref(s);
    wh_state_unref(prev);
    wh_buf_free(&next);
    wh_buf_free(&same);
    return rc;
}

int st_state_set_offset(st_state *st, const char *tenant, const char *consumer, int cond,
                        uint64_t expected_version, uint64_t lsn, uint32_t seq, st_offset *prev,
                        st_offset *now, int *status, char *err, size_t errlen)
{
    *status = 0;
    int64_t left_ms = 0;
    pthread_mutex_lock(&st->mu);
    uint64_t now_ms = wh_now_ms(); /* under mu: never before a sweep's now */
    const wh_state_tenant *t = wh_state_tenant_find(st->cur, tenant);
    int named = t != NULL && wh_state_target_find(t, consumer) != NULL;
    int rc;
    if (cond != ST_OFFSET_ANY && t == NULL) {
        /* also keeps st_db_set_offset from making a removed tenant again */
        *status = 404;
        rc = wh_seterr(err, errlen, "no tenant '%s'", tenant);
    } else if (cond == ST_OFFSET_TARGET && !named) {
        *status = 404;
        rc = wh_seterr(err, errlen, "tenant '%s' has no target '%s'", tenant, consumer);
    } else if (cond == ST_OFFSET_CREATE && named) {
        *status = 409;
        rc = wh_seterr(err, errlen, "tenant '%s' has a target '%s'", tenant, consumer);
    } else if (cond == ST_OFFSET_CREATE && st_db_offset_live(st->db, tenant, consumer) &&
               !create_intent_stale(st, tenant, consumer, now_ms, &left_ms)) {
        /* the SetOffset of another create of it that has not written its
         * state yet (or one whose state write failed and whose offset could
         * not be dropped, or whose admin died: replaced once the grace
         * period since this store first saw it has passed) */
        *status = 409;
        rc = wh_seterr(err, errlen,
                       "the offset of '%s/%s' is live though no target names it: another "
                       "create of it is under way (if that create failed, a create of it "
                       "replaces that offset in %" PRId64 " s)",
                       tenant, consumer, (left_ms + 999) / 1000);
    } else if (expected_version != 0 && expected_version != st->version) {
        /* a state write since the version the request is based on (its
         * If-Match): compared here, not by the sender, so none can come
         * between the comparison and the move */
        *status = ST_STATE_CONFLICT;
        rc = wh_seterr(err, errlen,
                       "version conflict: current is %" PRIu64 ", the request names %" PRIu64,
                       st->version, expected_version);
    } else {
        rc = st_db_set_offset(st->db, tenant, consumer, lsn, seq, prev, now, err, errlen);
        st_orphan *o;
        if (rc == WH_OK && cond == ST_OFFSET_CREATE &&
            (o = orphan_find(st, tenant, consumer, 1, now_ms)) != NULL)
            o->since_ms = now_ms; /* this create's intent: the grace starts again */
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}
