/* ing_snapshot: watermark chunks for snapshots and backfills. */
#include "ing_snapshot.h"
#include "ing_values.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_snapprog.h"
#include "wh_dsn.h"
#include "wh_ipc.h"
#include "wh_lsn.h"
#include "wh_pgerr.h"
#include "wh_util.h"

#define SNAP_RETRY_MS 1000
#define SNAP_STORE_TIMEOUT_MS 5000
#define SNAP_APP "walhook-snapshot"
#define SNAP_LOG_EVERY_US (10 * 1000000LL)
#define SNAP_VERSION_RETRIES 5
#define SNAP_CHUNK_WHAT "reading a chunk"
#define SNAP_EXPAND_MAX 8
/* The snapshot connection's statements run on the replication thread: while
 * one waits, no WAL is read and no status is sent. A chunk that waits for a
 * table lock (an ALTER TABLE, VACUUM FULL or LOCK TABLE of the table read)
 * gives up after SNAP_LOCK_TIMEOUT_MS (lock_timeout) and any statement after
 * SNAP_STATEMENT_TIMEOUT_MS (statement_timeout; less when the source's
 * wal_sender_timeout asks for it, see conn_open); such a chunk is read again
 * SNAP_LOCK_RETRY_MS later, the stream flowing meanwhile. */
#define SNAP_LOCK_TIMEOUT_MS 2000
#define SNAP_STATEMENT_TIMEOUT_MS 20000
#define SNAP_STATEMENT_TIMEOUT_MIN_MS 500
#define SNAP_LOCK_RETRY_MS 5000
#define SNAP_LOCK_WARN_EVERY 12
/* the stream's committed xids kept at most (see recent_add) */
#define SNAP_RECENT_MAX (1u << 18)
#define SNAP_VIS_LOG_EVERY 60

static _Atomic int g_chunk_rows = 2048;

/* the tenant's backfill requests (runtime state, ing_snapshot_requests) */
static pthread_mutex_t g_req_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_req[WH_URL_MAX];
static _Atomic unsigned g_req_gen;

void ing_snapshot_requests(const char *list)
{
    pthread_mutex_lock(&g_req_mu);
    if (strcmp(g_req, list) != 0) {
        wh_strlcpy(g_req, list, sizeof(g_req));
        atomic_fetch_add(&g_req_gen, 1);
    }
    pthread_mutex_unlock(&g_req_mu);
}

void ing_snapshot_set_chunk_rows(int rows)
{
    atomic_store(&g_chunk_rows, rows > 0 ? rows : 1);
}

struct ing_snapshot {
    const wh_config *cfg;
    ing_batcher *bt;
    ing_stats *st;
    wh_client *store;
    PGconn *conn;
    ing_parser *parser; /* the relations of the tables read (built from the catalog) */
    int loaded;         /* the progress was read from the store */
    uint64_t retry_at_ms;
    int warned;             /* the last failure was logged */
    char sqlstate[6];       /* of the last failed query ("" when it had none) */
    int stmt_timeout_ms;    /* the connection's statement_timeout */
    unsigned lock_timeouts; /* chunks in a row given up on a lock or statement timeout */
    wh_snapprog prog;

    /* the job being read and its description (read again at each chunk) */
    wh_snapjob *job;
    uint32_t oid;
    const ing_relation *rel;
    int nkey;
    int kidx[WH_SNAP_MAXKEY];
    char *kname[WH_SNAP_MAXKEY];
    char *select_sql; /* the next chunk's query, NUL, the first chunk's */
    size_t first_sql_at;
    int limit;     /* rows of the chunk read */
    int chunk_cap; /* 0, or a smaller limit after a chunk too large for a request */
    int truncated; /* the table was truncated: the job starts over */

    /* the chunk in progress: between its low watermark and the high one */
    int pending, window, discard;
    PGresult *rows;
    char nonce[24];
    uint64_t chunk_no;
    char low[128], high[128];
    wh_keyset keys;

    /* rates: rows read since this job started in this process */
    uint64_t run_rows;
    int64_t run_start_us;
    uint64_t discarded, chunks;
    unsigned req_gen; /* the requests taken (g_req_gen) */

    /* visibility (see ing_snapshot.h, "the visibility case"): xids of the
     * transactions the stream decoded (kept whether or not a job runs, those
     * every later snapshot sees dropped at each chunk), the chunk's snapshot
     * (xmax and its in-progress list, sorted), and the suspects: xids in
     * progress for the first chunk's snapshot after the kept history started,
     * which may have committed before it (see history_update) */
    int active; /* jobs to run */
    int idle;   /* no job to run and none planned: ticks only look for requests */
    uint32_t *recent;
    size_t nrecent, caprecent;
    int hist_ok; /* recent holds every decoded xid that may still matter */
    uint32_t xmax;
    uint32_t *xip;
    size_t nxip, capxip;
    uint32_t *suspect;
    size_t nsuspect, capsuspect;
    unsigned vis_discards; /* chunks in a row read again for the visibility case */

    wh_buf json, key, progbuf;
    ing_col *cols;
    int ncols;

    /* schema versions (ing_snapshot_set_schema): the version of the table
     * read, when its schema event still has to go with a chunk */
    ing_schema *schema;
    int sv_pending;
    uint64_t sv_fp;
    wh_buf sdesc;
    char sv_table[ING_SCHEMA_TABLE_MAX];
    Walhook__SchemaVersion sv;

    int exporting;           /* ing_snapshot_export runs: no stream, no window */
    int64_t export_until_us; /* source.snapshot_export_max_s from its start, 0: none */
    int64_t logged_us;       /* the last progress line (log_progress) */
    int vmismatch;           /* chunks read again in a row for a schema version mismatch */
    /* backfills of every table ("*"): their ids, until listed as jobs */
    char expand[SNAP_EXPAND_MAX][WH_SNAP_IDMAX];
    int nexpand;
};

/* ---- progress in the store ------------------------------------------- */

static int load_progress(ing_snapshot *s, char *err, size_t errlen)
{
    Walhook__Request req;
    Walhook__TenantInfo ti;
    walhook__request__init(&req);
    walhook__tenant_info__init(&ti);
    ti.tenant = (char *)s->cfg->tenant;
    req.body_case = WALHOOK__REQUEST__BODY_TENANT_INFO;
    req.tenant_info = &ti;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(s->store, &req, &rep, err, errlen) != WH_OK)
        return WH_ERR;
    int rc = WH_OK;
    if (rep->body_case != WALHOOK__REPLY__BODY_TENANT_INFO || rep->tenant_info == NULL) {
        rc = wh_seterr(err, errlen, "the store answered TenantInfo without its body");
    } else if (rep->tenant_info->snapshot_progress.len > 0) {
        const ProtobufCBinaryData *p = &rep->tenant_info->snapshot_progress;
        rc = wh_snapprog_decode(&s->prog, (const char *)p->data, p->len, err, errlen);
    } else {
        wh_snapprog_clear(&s->prog);
    }
    walhook__reply__free_unpacked(rep, NULL);
    if (rc == WH_OK) {
        s->loaded = 1;
        size_t open = 0;
        for (size_t i = 0; i < s->prog.njobs; i++)
            open += s->prog.jobs[i].state < WH_SNAP_DONE;
        if (s->prog.plan != 0 || s->prog.njobs > 0)
            wh_info("snapshot progress read from the store: plan %d, %zu table%s, %zu to do",
                    s->prog.plan, s->prog.njobs, s->prog.njobs == 1 ? "" : "s", open);
    }
    return rc;
}

/* Packs AppendBatch{events ev[0..n), snapshot_progress, schemas sv} and
 * queues it. */
static int queue_request_sv(ing_snapshot *s, Walhook__Event **ev, size_t n,
                            Walhook__SchemaVersion *sv, char *err, size_t errlen)
{
    if (wh_snapprog_encode(&s->prog, &s->progbuf) != WH_OK)
        return wh_seterr(err, errlen, "out of memory");
    Walhook__Request req;
    Walhook__AppendBatch ab;
    walhook__request__init(&req);
    walhook__append_batch__init(&ab);
    ab.tenant = (char *)s->cfg->tenant;
    ab.events = ev;
    ab.n_events = n;
    ab.snapshot_progress.data = (uint8_t *)s->progbuf.data;
    ab.snapshot_progress.len = s->progbuf.len;
    if (sv != NULL) {
        ab.schemas = &sv;
        ab.n_schemas = 1;
    }
    req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    req.append = &ab;
    size_t len = walhook__request__get_packed_size(&req);
    if (len + 4096 > (size_t)s->cfg->ipc_max_msg_bytes)
        return wh_seterr(err, errlen, "chunk too large for one request (%zu bytes)", len);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return wh_seterr(err, errlen, "out of memory");
    walhook__request__pack(&req, buf);
    int rc = ing_batcher_packed(s->bt, buf, len, 0, err, errlen);
    free(buf);
    return rc;
}

static int queue_request(ing_snapshot *s, Walhook__Event **ev, size_t n, char *err, size_t errlen)
{
    return queue_request_sv(s, ev, n, NULL, err, errlen);
}

/* ---- metrics ------------------------------------------------------------ */

static int label_str(wh_buf *b, const char *v)
{
    for (; *v; v++) {
        if ((*v == '"' || *v == '\\') && wh_buf_putc(b, '\\'))
            return WH_ERR;
        if (wh_buf_putc(b, *v == '\n' ? ' ' : *v))
            return WH_ERR;
    }
    return WH_OK;
}

static void publish_metrics(ing_snapshot *s)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    const char *t = s->cfg->tenant;
    int rc = 0;
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"walhook_ingestor_snapshot_rows_total", "counter",
         "rows of the table read as read events (snapshot or backfill)"},
        {"walhook_ingestor_snapshot_rows_estimated", "gauge",
         "rows of the table estimated from pg_class.reltuples when the job started"},
        {"walhook_ingestor_snapshot_rows_per_second", "gauge",
         "rows read per second since the job (re)started in this process"},
        {"walhook_ingestor_snapshot_eta_seconds", "gauge",
         "estimated seconds left (-1: unknown; 0 when done)"},
        {"walhook_ingestor_snapshot_state", "gauge",
         "1 for the job's state (pending, running, done, refused)"},
    };
    int64_t now = wh_wallclock_us();
    for (size_t k = 0; k < WH_ARRAY_LEN(m) && !rc; k++) {
        rc |= wh_metric_header(&b, m[k].name, m[k].type, m[k].help);
        for (size_t i = 0; i < s->prog.njobs && !rc; i++) {
            const wh_snapjob *j = &s->prog.jobs[i];
            wh_buf l;
            wh_buf_init(&l, 0);
            rc |= wh_buf_printf(&l, "tenant=\"%s\",table=\"", t) || label_str(&l, j->table) ||
                  wh_buf_printf(&l, "\",kind=\"%s\"",
                                j->kind == WH_SNAP_INITIAL ? "initial" : "backfill");
            if (k == 4)
                rc |= wh_buf_printf(&l, ",state=\"%s\"", wh_snap_state_name(j->state));
            rc |= wh_buf_cstr(&l);
            double rate = 0;
            if (j == s->job && s->run_rows > 0 && now > s->run_start_us)
                rate = (double)s->run_rows * 1e6 / (double)(now - s->run_start_us);
            int64_t eta = j->state >= WH_SNAP_DONE ? 0 : -1;
            if (eta < 0 && rate > 0)
                eta = j->rows_est > j->rows_done
                          ? (int64_t)((double)(j->rows_est - j->rows_done) / rate)
                          : 0;
            if (rc)
                ;
            else if (k == 0)
                rc |= wh_metric_u64(&b, m[k].name, l.data, j->rows_done);
            else if (k == 1)
                rc |= wh_metric_u64(&b, m[k].name, l.data, j->rows_est);
            else if (k == 2)
                rc |= wh_metric_i64(&b, m[k].name, l.data, (int64_t)rate);
            else if (k == 3)
                rc |= wh_metric_i64(&b, m[k].name, l.data, eta);
            else
                rc |= wh_metric_i64(&b, m[k].name, l.data, 1);
            wh_buf_free(&l);
        }
    }
    char lt[WH_NAME_MAX + 16];
    snprintf(lt, sizeof(lt), "tenant=\"%s\"", t);
    rc |= wh_metric_header(&b, "walhook_ingestor_snapshot_chunks_total", "counter",
                           "snapshot chunks stored since start") ||
          wh_metric_u64(&b, "walhook_ingestor_snapshot_chunks_total", lt, s->chunks) ||
          wh_metric_header(&b, "walhook_ingestor_snapshot_chunks_discarded_total", "counter",
                           "chunks read again (a streamed transaction's commit, a truncate or a "
                           "change without a readable key between their watermarks)") ||
          wh_metric_u64(&b, "walhook_ingestor_snapshot_chunks_discarded_total", lt, s->discarded);
    if (rc || wh_buf_cstr(&b)) {
        wh_buf_free(&b);
        return;
    }
    pthread_mutex_lock(&s->st->snap_mu);
    char *old = s->st->snap_text;
    s->st->snap_text = b.data; /* the buffer's storage, handed over */
    pthread_mutex_unlock(&s->st->snap_mu);
    free(old);
}

/* ---- lifecycle ---------------------------------------------------------- */

int ing_snapshot_new(ing_snapshot **out, const wh_config *cfg, ing_batcher *bt, ing_stats *st,
                     char *err, size_t errlen)
{
    ing_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    s->cfg = cfg;
    s->bt = bt;
    s->st = st;
    wh_keyset_init(&s->keys);
    wh_buf_init(&s->json, 0);
    wh_buf_init(&s->key, 0);
    wh_buf_init(&s->progbuf, 0);
    wh_buf_init(&s->sdesc, 0);
    uint64_t r = 0;
    if (getentropy(&r, sizeof(r)) != 0)
        r = (uint64_t)wh_wallclock_us() ^ ((uint64_t)getpid() << 32);
    snprintf(s->nonce, sizeof(s->nonce), "%016" PRIx64, r);
    if (ing_parser_new(&s->parser, err, errlen) != WH_OK ||
        wh_client_open(&s->store, cfg->store_endpoint, SNAP_STORE_TIMEOUT_MS,
                       (size_t)cfg->ipc_max_msg_bytes, err, errlen) != WH_OK) {
        ing_snapshot_free(s);
        return WH_ERR;
    }
    *out = s;
    return WH_OK;
}

void ing_snapshot_set_schema(ing_snapshot *s, ing_schema *schema)
{
    s->schema = schema;
}

/* xid a precedes b (modulo 2^32, as PostgreSQL compares them) */
static int xid_before(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static int xids_push(uint32_t **v, size_t *n, size_t *cap, uint32_t x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint32_t *nv = realloc(*v, nc * sizeof(*nv));
        if (nv == NULL)
            return WH_ERR;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return WH_OK;
}

/* A committed xid the stream decoded. The list is bounded: past
 * SNAP_RECENT_MAX (long without a chunk, or a chunk's window open that
 * long) its older half goes, and the history counts as incomplete until the
 * next chunk's snapshot (the chunk in progress, if any, is read again). */
static void recent_add(ing_snapshot *s, uint32_t xid)
{
    if (s->nrecent > 0 && s->recent[s->nrecent - 1] == xid)
        return;
    if (s->nrecent >= SNAP_RECENT_MAX) {
        size_t half = s->nrecent / 2;
        memmove(s->recent, s->recent + half, (s->nrecent - half) * sizeof(*s->recent));
        s->nrecent -= half;
        s->hist_ok = 0;
        if (s->pending)
            s->discard = 1;
    }
    if (xids_push(&s->recent, &s->nrecent, &s->caprecent, xid) != WH_OK) {
        s->hist_ok = 0; /* out of memory: forgotten, as above */
        if (s->pending)
            s->discard = 1;
    }
    /* decoded: it committed after the history started, recent has it */
    for (size_t i = 0; i < s->nsuspect; i++)
        if (s->suspect[i] == xid)
            s->suspect[i] = s->suspect[--s->nsuspect];
}

/* xid is in progress for the chunk's snapshot: in its list, or not
 * started before it (at or after its xmax) */
static int invisible(const ing_snapshot *s, uint32_t xid)
{
    return !xid_before(xid, s->xmax) || wh_u32_in(s->xip, s->nxip, xid);
}

/* After the chunk's snapshot was taken (nothing decoded since): the kept
 * xids that snapshot sees are dropped (a transaction visible to it has left
 * the proc array: every later snapshot sees it too), and so are suspects
 * it no longer lists.
 *
 * recent holds what the stream decoded since the history started (the
 * ingestor's start, or the list's overflow). A transaction that committed
 * before that (decoded by a previous process, below the slot's confirmed
 * flush, never sent again) and is still in the proc array is in the
 * in-progress list of the first chunk's snapshot after the history started:
 * its xid precedes the low watermark's, which completed before the
 * snapshot, so it is below xmax. Nothing tells whether such an xid
 * committed (pg_xact_status answers "in progress" while the backend is in
 * the proc array), so every xid of that list is a suspect until the stream
 * decodes it (then recent has it) or a chunk's snapshot no longer lists it:
 * a long transaction open then delays the first chunk until it ends. */
static int history_update(ing_snapshot *s)
{
    if (!s->hist_ok) {
        for (size_t i = 0; i < s->nxip; i++)
            if (xids_push(&s->suspect, &s->nsuspect, &s->capsuspect, s->xip[i]) != WH_OK)
                return WH_ERR;
        s->hist_ok = 1;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->nrecent; i++)
        if (invisible(s, s->recent[i]))
            s->recent[k++] = s->recent[i];
    s->nrecent = k;
    k = 0;
    for (size_t i = 0; i < s->nsuspect; i++) {
        uint32_t x = s->suspect[i];
        int dup = 0;
        for (size_t d = 0; d < k && !dup; d++)
            dup = s->suspect[d] == x;
        if (!dup && wh_u32_in(s->xip, s->nxip, x))
            s->suspect[k++] = x;
    }
    s->nsuspect = k;
    return WH_OK;
}

/* "n,n,..." (64-bit xids) into v as 32-bit xids */
static int parse_xids(const char *p, uint32_t **v, size_t *n, size_t *cap)
{
    *n = 0;
    while (*p != '\0') {
        char *end;
        unsigned long long x = strtoull(p, &end, 10);
        if (end == p || xids_push(v, n, cap, (uint32_t)x) != WH_OK)
            return WH_ERR;
        p = *end == ',' ? end + 1 : end;
    }
    return WH_OK;
}

/* The snapshot "xmin:xmax:xip,..." (pg_current_snapshot, 64-bit xids):
 * xmax and the in-progress list (sorted), as 32-bit xids. */
static int parse_snapshot(ing_snapshot *s, const char *t)
{
    char *end;
    strtoull(t, &end, 10);
    if (*end != ':')
        return WH_ERR;
    const char *p = end + 1;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || *end != ':')
        return WH_ERR;
    s->xmax = (uint32_t)v;
    if (parse_xids(end + 1, &s->xip, &s->nxip, &s->capxip) != WH_OK)
        return WH_ERR;
    if (s->nxip > 1)
        qsort(s->xip, s->nxip, sizeof(*s->xip), wh_u32_cmp);
    return WH_OK;
}

static void drop_chunk(ing_snapshot *s)
{
    PQclear(s->rows);
    s->rows = NULL;
    s->pending = s->window = s->discard = 0;
    wh_keyset_clear(&s->keys);
}

static void close_conn(ing_snapshot *s)
{
    if (s->conn)
        PQfinish(s->conn);
    s->conn = NULL;
}

static void forget_description(ing_snapshot *s)
{
    for (int i = 0; i < s->nkey; i++)
        free(s->kname[i]);
    s->nkey = 0;
    free(s->select_sql);
    s->select_sql = NULL;
    s->rel = NULL;
    s->oid = 0;
}

void ing_snapshot_free(ing_snapshot *s)
{
    if (s == NULL)
        return;
    drop_chunk(s);
    close_conn(s);
    forget_description(s);
    wh_keyset_free(&s->keys);
    free(s->recent);
    free(s->xip);
    free(s->suspect);
    wh_snapprog_clear(&s->prog);
    ing_parser_free(s->parser);
    if (s->store)
        wh_client_close(s->store);
    wh_buf_free(&s->json);
    wh_buf_free(&s->key);
    wh_buf_free(&s->progbuf);
    wh_buf_free(&s->sdesc);
    free(s->cols);
    free(s);
}

void ing_snapshot_reset(ing_snapshot *s)
{
    if (s->pending)
        wh_info("snapshot of %s: the chunk in progress is read again after the reconnect",
                s->job ? s->job->table : "?");
    drop_chunk(s);
}

int ing_snapshot_plan(ing_snapshot *s, char *err, size_t errlen)
{
    if (strcmp(s->cfg->snapshot, "initial") != 0)
        return WH_OK;
    if (!s->loaded && load_progress(s, err, errlen) != WH_OK)
        return wh_seterr(err, errlen,
                         "source.snapshot = initial: cannot read the snapshot "
                         "progress from the store before creating the slot");
    if (s->prog.plan != 0)
        return WH_OK;
    s->prog.plan = 1;
    if (queue_request(s, NULL, 0, err, errlen) != WH_OK ||
        ing_batcher_drain(s->bt, SNAP_STORE_TIMEOUT_MS * 2) != WH_OK) {
        s->prog.plan = 0;
        s->loaded = 0; /* read it again: it may have been stored */
        return wh_seterr(err, errlen,
                         "source.snapshot = initial: the store did not confirm the snapshot plan "
                         "(the slot is created once it does)");
    }
    wh_info("initial snapshot planned: every table of publication \"%s\" is read once the slot "
            "exists",
            s->cfg->publication);
    return WH_OK;
}

/* New backfill requests ("id:schema.table;..."): a job each, unless one
 * with that id is known (done ones stay in the progress). */
static void take_requests(ing_snapshot *s)
{
    unsigned gen = atomic_load(&g_req_gen);
    if (gen == s->req_gen)
        return;
    char list[WH_URL_MAX];
    pthread_mutex_lock(&g_req_mu);
    wh_strlcpy(list, g_req, sizeof(list));
    gen = atomic_load(&g_req_gen);
    pthread_mutex_unlock(&g_req_mu);
    s->req_gen = gen;
    s->idle = 0;
    char *save = NULL;
    for (char *it = strtok_r(list, ";", &save); it; it = strtok_r(NULL, ";", &save)) {
        char *colon = strchr(it, ':');
        if (colon == NULL || colon == it || colon[1] == '\0')
            continue;
        *colon = '\0';
        char id[WH_SNAP_IDMAX];
        snprintf(id, sizeof(id), "bf-%.40s", it);
        if (ing_snapshot_backfill(s, id, colon + 1) != WH_OK)
            wh_warn("backfill %s: cannot queue it (name too long or out of memory)", id);
    }
}

int ing_snapshot_backfill(ing_snapshot *s, const char *id, const char *table)
{
    if (strcmp(table, "*") == 0) { /* every table of the publication (a resync) */
        for (size_t i = 0; i < s->prog.njobs; i++)
            if (strcmp(s->prog.jobs[i].id, id) == 0)
                return WH_OK; /* listed already */
        for (int i = 0; i < s->nexpand; i++)
            if (strcmp(s->expand[i], id) == 0)
                return WH_OK;
        if (s->nexpand == SNAP_EXPAND_MAX || strlen(id) >= WH_SNAP_IDMAX)
            return WH_ERR;
        wh_strlcpy(s->expand[s->nexpand++], id, WH_SNAP_IDMAX);
        s->idle = 0;
        wh_info("backfill %s of every table of publication \"%s\" queued", id, s->cfg->publication);
        return WH_OK;
    }
    if (wh_snapprog_find(&s->prog, id, table) != NULL)
        return WH_OK;
    wh_snapjob *j = wh_snapprog_add(&s->prog, WH_SNAP_BACKFILL, id, table);
    if (j == NULL)
        return WH_ERR;
    wh_info("backfill %s of %s queued", id, table);
    publish_metrics(s);
    return WH_OK;
}

/* ---- catalog -------------------------------------------------------------- */

/* True when row-level security applies to the session's role on table c
 * (PostgreSQL's check_enable_rls): the connection's row_security=off then
 * makes every read of it fail (42501) rather than return the rows the
 * policies show; the table is refused with this reason before that. */
#define SNAP_RLS_HIDES                                                                             \
    "c.relrowsecurity AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r "    \
    "WHERE r.rolname = current_user) AND (c.relforcerowsecurity OR NOT "                           \
    "pg_catalog.pg_has_role(c.relowner, 'USAGE'))"

static PGresult *query(ing_snapshot *s, const char *sql, int nparams, const uint32_t *types,
                       const char *const *vals, const char *what, char *err, size_t errlen);

static int conn_open(ing_snapshot *s, char *err, size_t errlen)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return WH_OK;
    close_conn(s);
    char opts[256];
    /* row_security=off: a table whose row-level security policies would
     * hide rows from this role fails (42501) instead of being read in part */
    snprintf(opts, sizeof(opts), "-c row_security=off -c lock_timeout=%d -c statement_timeout=%d",
             SNAP_LOCK_TIMEOUT_MS, SNAP_STATEMENT_TIMEOUT_MS);
    if (ing_pg_connect(&s->conn, s->cfg->source_dsn, NULL, opts, SNAP_APP, "10", err, errlen) !=
        WH_OK)
        return WH_ERR;
    /* a statement must end before the walsender gives the stream up: the
     * replication thread sends no status while it waits (at most one status
     * interval since the last one, then the statement) */
    s->stmt_timeout_ms = SNAP_STATEMENT_TIMEOUT_MS;
    PGresult *res = query(s,
                          "SELECT setting FROM pg_catalog.pg_settings WHERE name = "
                          "'wal_sender_timeout'",
                          0, NULL, NULL, "reading wal_sender_timeout", err, errlen);
    if (res == NULL) {
        close_conn(s); /* never used without its timeouts */
        return WH_ERR;
    }
    long wst = PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    long budget = (wst - (long)s->cfg->status_interval_ms) / 2;
    if (wst > 0 && budget < s->stmt_timeout_ms) {
        s->stmt_timeout_ms =
            budget > SNAP_STATEMENT_TIMEOUT_MIN_MS ? (int)budget : SNAP_STATEMENT_TIMEOUT_MIN_MS;
        char st[16], lt[16];
        snprintf(st, sizeof(st), "%d", s->stmt_timeout_ms);
        snprintf(lt, sizeof(lt), "%d",
                 s->stmt_timeout_ms < SNAP_LOCK_TIMEOUT_MS ? s->stmt_timeout_ms
                                                           : SNAP_LOCK_TIMEOUT_MS);
        const char *vals[2] = {st, lt};
        res = query(s,
                    "SELECT pg_catalog.set_config('statement_timeout', $1, false), "
                    "pg_catalog.set_config('lock_timeout', $2, false)",
                    2, NULL, vals, "setting the statement timeout", err, errlen);
        if (res == NULL) {
            close_conn(s);
            return WH_ERR;
        }
        PQclear(res);
    }
    return WH_OK;
}

/* The last query failed on lock_timeout (55P03) or statement_timeout
 * (57014, also a cancel): nothing is wrong with the chunk, it is read again. */
static int timed_out(const ing_snapshot *s)
{
    return strcmp(s->sqlstate, "55P03") == 0 || strcmp(s->sqlstate, "57014") == 0;
}

static PGresult *query(ing_snapshot *s, const char *sql, int nparams, const uint32_t *types,
                       const char *const *vals, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(s->conn, sql, nparams, (const Oid *)types, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    s->sqlstate[0] = '\0';
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char msg[512];
        wh_dsn_scrub(s->cfg->source_dsn, PQerrorMessage(s->conn), msg, sizeof(msg));
        wh_pg_oneline(msg, msg, sizeof(msg));
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (code != NULL)
            wh_strlcpy(s->sqlstate, code, sizeof(s->sqlstate));
        /* a chunk query's error may quote a key value (its parameters):
         * only its SQLSTATE goes into the log */
        if (strcmp(what, SNAP_CHUNK_WHAT) == 0 && code != NULL &&
            PQstatus(s->conn) == CONNECTION_OK)
            wh_seterr(err, errlen, "%s: SQLSTATE %s (message withheld: it may quote a value)", what,
                      code);
        else
            wh_seterr(err, errlen, "%s: %s", what, msg);
        PQclear(res);
        if (PQstatus(s->conn) != CONNECTION_OK)
            close_conn(s);
        return NULL;
    }
    return res;
}

/* The published tables of the publication, as jobs of kind and id (not
 * known already). */
static int list_tables(ing_snapshot *s, int kind, const char *id, char *err, size_t errlen)
{
    const char *vals[1] = {s->cfg->publication};
    PGresult *res =
        query(s,
              "SELECT schemaname || '.' || tablename FROM pg_catalog.pg_publication_tables "
              "WHERE pubname = $1 ORDER BY 1",
              1, NULL, vals, "listing the published tables", err, errlen);
    if (res == NULL)
        return WH_ERR;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *t = PQgetvalue(res, i, 0);
        if (wh_snapprog_find(&s->prog, id, t) == NULL &&
            wh_snapprog_add(&s->prog, kind, id, t) == NULL)
            wh_warn("snapshot %s: table name too long, skipped (%zu bytes)", id, strlen(t));
    }
    wh_info("%s %s: %d table%s of publication \"%s\" to read",
            kind == WH_SNAP_INITIAL ? "initial snapshot" : "backfill", id, PQntuples(res),
            PQntuples(res) == 1 ? "" : "s", s->cfg->publication);
    PQclear(res);
    return WH_OK;
}

/* The published tables of the publication, as jobs of the initial snapshot. */
static int list_initial(ing_snapshot *s, char *err, size_t errlen)
{
    if (list_tables(s, WH_SNAP_INITIAL, "initial", err, errlen) != WH_OK)
        return WH_ERR;
    s->prog.plan = 2;
    return queue_request(s, NULL, 0, err, errlen);
}

/* Backfills of every table (ing_snapshot_backfill with "*"): their jobs. */
static int list_expand(ing_snapshot *s, char *err, size_t errlen)
{
    while (s->nexpand > 0) {
        if (list_tables(s, WH_SNAP_BACKFILL, s->expand[0], err, errlen) != WH_OK)
            return WH_ERR;
        memmove(s->expand[0], s->expand[1], (size_t)(s->nexpand - 1) * sizeof(s->expand[0]));
        s->nexpand--;
    }
    return queue_request(s, NULL, 0, err, errlen);
}

static void put_u8(wh_buf *b, uint8_t v)
{
    wh_buf_putc(b, (char)v);
}
static void put_u16(wh_buf *b, uint16_t v)
{
    put_u8(b, (uint8_t)(v >> 8));
    put_u8(b, (uint8_t)v);
}
static void put_u32(wh_buf *b, uint32_t v)
{
    put_u16(b, (uint16_t)(v >> 16));
    put_u16(b, (uint16_t)v);
}
static void put_str(wh_buf *b, const char *v)
{
    wh_buf_append(b, v, strlen(v) + 1);
}

static char *quote_ident(ing_snapshot *s, const char *v)
{
    char *q = PQescapeIdentifier(s->conn, v, strlen(v));
    char *o = q ? strdup(q) : NULL;
    PQfreemem(q);
    return o;
}

/* Reads the job's table from the catalog as pgoutput would describe it (its
 * published columns: not dropped, not generated, in the publication's
 * column list if any; identity flags from the replica identity) into the
 * private parser, its key columns and the chunk query. 1: refused (reason in
 * err), WH_ERR: failed (retried), WH_OK. */
static int describe(ing_snapshot *s, ing_catalog *cat, char *err, size_t errlen)
{
    wh_snapjob *j = s->job;
    int pg15 = PQserverVersion(s->conn) >= 150000;
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "SELECT c.oid, n.nspname, c.relname, c.relreplident, c.reltuples::bigint, a.attname, "
             "a.atttypid, a.atttypmod, c.relreplident = 'f' OR a.attnum = ANY(coalesce((SELECT "
             "i.indkey::int2[] FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND CASE "
             "c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE "
             "false END LIMIT 1), '{}')), %s, " SNAP_RLS_HIDES
             " FROM pg_catalog.pg_publication_tables pt JOIN pg_catalog.pg_namespace n ON "
             "n.nspname = pt.schemaname JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND "
             "c.relname = pt.tablename JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
             "WHERE pt.pubname = $1 AND pt.schemaname || '.' || pt.tablename = $2 AND a.attnum > "
             "0 AND NOT a.attisdropped AND a.attgenerated = '' %s ORDER BY a.attnum",
             pg15 ? "pt.rowfilter" : "NULL::text",
             pg15 ? "AND (pt.attnames IS NULL OR a.attname = ANY(pt.attnames))" : "");
    const char *vals[2] = {s->cfg->publication, j->table};
    PGresult *res = query(s, sql, 2, NULL, vals, "describing the table", err, errlen);
    if (res == NULL)
        return WH_ERR;
    int n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        wh_seterr(err, errlen, "not a table of publication \"%s\" (or it has no published column)",
                  s->cfg->publication);
        return 1;
    }
    forget_description(s);
    uint32_t oid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    char replident = PQgetvalue(res, 0, 3)[0];
    long long est = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    if (PQgetvalue(res, 0, 10)[0] == 't') {
        PQclear(res);
        wh_seterr(err, errlen,
                  "row-level security is enabled on the table and would hide rows from the "
                  "snapshot connection's role: it must own the table (without FORCE ROW LEVEL "
                  "SECURITY) or have the BYPASSRLS attribute; request a backfill once it does");
        return 1;
    }
    char *rowfilter = PQgetisnull(res, 0, 9) ? NULL : strdup(PQgetvalue(res, 0, 9));
    wh_buf m;
    wh_buf_init(&m, 0);
    put_u8(&m, 'R');
    put_u32(&m, oid);
    put_str(&m, PQgetvalue(res, 0, 1));
    put_str(&m, PQgetvalue(res, 0, 2));
    put_u8(&m, (uint8_t)replident);
    put_u16(&m, (uint16_t)n);
    for (int i = 0; i < n; i++) {
        put_u8(&m, PQgetvalue(res, i, 8)[0] == 't' ? 1 : 0);
        put_str(&m, PQgetvalue(res, i, 5));
        put_u32(&m, (uint32_t)strtoul(PQgetvalue(res, i, 6), NULL, 10));
        put_u32(&m, (uint32_t)strtol(PQgetvalue(res, i, 7), NULL, 10));
    }
    PQclear(res);
    ing_msg msg;
    int rc = m.data ? ing_parse(s->parser, (const uint8_t *)m.data, m.len, &msg, err, errlen)
                    : wh_seterr(err, errlen, "out of memory");
    wh_buf_free(&m);
    if (rc != WH_OK) {
        free(rowfilter);
        return WH_ERR;
    }
    /* the chunk key: the replica identity index of a REPLICA IDENTITY INDEX
     * table (what its changes carry), else the primary key, else a replica
     * identity index */
    char oids[16];
    snprintf(oids, sizeof(oids), "%u", oid);
    const char *kv[1] = {oids};
    res = query(s,
                "SELECT a.attname, i.indisprimary FROM pg_catalog.pg_index i CROSS JOIN LATERAL "
                "unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) JOIN "
                "pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid WHERE i.indrelid = $1::oid AND "
                "(i.indisprimary OR i.indisreplident) ORDER BY (c.relreplident = 'i') = "
                "i.indisreplident DESC, i.indisprimary DESC, k.ord",
                1, NULL, kv, "reading the table's key", err, errlen);
    if (res == NULL) {
        free(rowfilter);
        return WH_ERR;
    }
    const ing_relation *rel = ing_relation_get(s->parser, oid);
    /* rows of the first index only */
    int nk = 0;
    const char *first_kind = PQntuples(res) > 0 ? PQgetvalue(res, 0, 1) : NULL;
    for (int i = 0; i < PQntuples(res) && nk < WH_SNAP_MAXKEY; i++) {
        if (strcmp(PQgetvalue(res, i, 1), first_kind) != 0 ||
            (i > 0 && strcmp(PQgetvalue(res, i, 0), PQgetvalue(res, 0, 0)) == 0))
            break;
        const char *an = PQgetvalue(res, i, 0);
        int idx = -1;
        for (int a = 0; a < rel->natts; a++)
            if (strcmp(rel->atts[a].name, an) == 0)
                idx = a;
        if (idx < 0) {
            PQclear(res);
            free(rowfilter);
            forget_description(s);
            wh_seterr(err, errlen, "its key column %s is not published (publication column list)",
                      an);
            return 1;
        }
        s->kidx[nk] = idx;
        s->kname[nk] = strdup(an);
        nk++;
        s->nkey = nk;
    }
    PQclear(res);
    if (nk == 0) {
        free(rowfilter);
        wh_seterr(err, errlen,
                  "it has no primary key nor replica identity index: its rows cannot be read in "
                  "chunks by key (add a primary key)");
        return 1;
    }
    if (replident == 'f') { /* its events' key: the primary key (as relation_key does) */
        const char *pk[WH_SNAP_MAXKEY];
        int npk = 0;
        if (strcmp(first_kind, "t") == 0)
            for (int i = 0; i < nk; i++)
                pk[npk++] = s->kname[i];
        if (npk > 0)
            ing_relation_set_pk(s->parser, oid, pk, npk, err, errlen);
    }
    if (cat != NULL)
        ing_catalog_relation_types(cat, s->cfg->source_dsn, s->parser, oid, err, errlen);
    /* its schema version, as the stream's Relation message of the same
     * shape gets it (the key above is part of it) */
    if (ing_schema_version(ing_relation_mut(s->parser, oid), &s->sdesc) != WH_OK) {
        free(rowfilter);
        forget_description(s);
        return wh_seterr(err, errlen, "out of memory");
    }
    rel = ing_relation_get(s->parser, oid);
    /* SELECT cols FROM t WHERE (k) > ($1..) [AND (filter)] ORDER BY k LIMIT $n+1, and
     * for the first chunk SELECT cols FROM t [WHERE (filter)] ORDER BY k LIMIT $1 */
    wh_buf cols, keys, q;
    wh_buf_init(&cols, 0);
    wh_buf_init(&keys, 0);
    wh_buf_init(&q, 0);
    rc = 0;
    for (int i = 0; i < rel->natts && !rc; i++) {
        char *id = quote_ident(s, rel->atts[i].name);
        rc = id == NULL || (i && wh_buf_puts(&cols, ", ")) || wh_buf_puts(&cols, id);
        free(id);
    }
    for (int i = 0; i < nk && !rc; i++) {
        char *id = quote_ident(s, s->kname[i]);
        rc = id == NULL || (i && wh_buf_puts(&keys, ", ")) || wh_buf_puts(&keys, id);
        free(id);
    }
    char *ns = quote_ident(s, rel->nspname), *rn = quote_ident(s, rel->relname);
    rc = rc || !ns || !rn || wh_buf_cstr(&cols) || wh_buf_cstr(&keys) ||
         wh_buf_printf(&q, "SELECT %s FROM %s.%s WHERE (%s) > (", cols.data, ns, rn, keys.data);
    for (int i = 0; i < nk && !rc; i++)
        rc = wh_buf_printf(&q, "%s$%d", i ? ", " : "", i + 1);
    rc = rc || wh_buf_puts(&q, ")") ||
         (rowfilter != NULL && wh_buf_printf(&q, " AND (%s)", rowfilter)) ||
         wh_buf_printf(&q, " ORDER BY %s LIMIT $%d", keys.data, nk + 1) || wh_buf_putc(&q, '\0');
    /* the first chunk's, after the NUL */
    size_t first_at = q.len;
    rc = rc || wh_buf_printf(&q, "SELECT %s FROM %s.%s", cols.data, ns, rn) ||
         (rowfilter != NULL && wh_buf_printf(&q, " WHERE (%s)", rowfilter)) ||
         wh_buf_printf(&q, " ORDER BY %s LIMIT $1", keys.data) || wh_buf_cstr(&q);
    free(ns);
    free(rn);
    wh_buf_free(&cols);
    wh_buf_free(&keys);
    free(rowfilter);
    if (rc) {
        wh_buf_free(&q);
        forget_description(s);
        return wh_seterr(err, errlen, "out of memory");
    }
    s->first_sql_at = first_at;
    s->select_sql = q.data;
    s->oid = oid;
    s->rel = rel;
    if (j->rows_est == 0 && est > 0)
        j->rows_est = (uint64_t)est;
    if (s->ncols < rel->natts) {
        ing_col *c = realloc(s->cols, (size_t)rel->natts * sizeof(*c));
        if (c == NULL)
            return wh_seterr(err, errlen, "out of memory");
        s->cols = c;
        s->ncols = rel->natts;
    }
    return WH_OK;
}

/* ---- chunks --------------------------------------------------------------- */

static int watermark(ing_snapshot *s, const char *content, char *err, size_t errlen)
{
    const char *vals[1] = {content};
    PGresult *res =
        query(s, "SELECT pg_catalog.pg_logical_emit_message(true, '" ING_SNAPSHOT_PREFIX "', $1)",
              1, NULL, vals, "writing a watermark", err, errlen);
    PQclear(res);
    return res ? WH_OK : WH_ERR;
}

static PGresult *select_query(ing_snapshot *s, int limit, char *err, size_t errlen)
{
    const wh_snapjob *j = s->job;
    const char *vals[WH_SNAP_MAXKEY + 1];
    uint32_t types[WH_SNAP_MAXKEY + 1];
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    if (j->nlast == s->nkey) {
        for (int i = 0; i < s->nkey; i++) {
            vals[i] = j->last[i];
            types[i] = s->rel->atts[s->kidx[i]].type_oid;
        }
        vals[s->nkey] = lim;
        types[s->nkey] = 23; /* int4 */
        return query(s, s->select_sql, s->nkey + 1, types, vals, SNAP_CHUNK_WHAT, err, errlen);
    }
    vals[0] = lim;
    types[0] = 23;
    return query(s, s->select_sql + s->first_sql_at, 1, types, vals, SNAP_CHUNK_WHAT, err, errlen);
}

/* The job's next rows after its last key (the first ones when it has
 * none), at most limit, in key order, in the connection's transaction;
 * NULL (err) when the query fails or its columns are not the table's. */
static PGresult *select_rows(ing_snapshot *s, int limit, char *err, size_t errlen)
{
    PGresult *res = select_query(s, limit, err, errlen);
    if (res != NULL && PQnfields(res) != s->rel->natts) {
        wh_seterr(err, errlen, "the chunk has %d columns, the table %d", PQnfields(res),
                  s->rel->natts);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int chunk_limit(const ing_snapshot *s)
{
    int limit = atomic_load(&g_chunk_rows);
    if (s->chunk_cap > 0 && s->chunk_cap < limit)
        limit = s->chunk_cap;
    return limit;
}

/* Low watermark, the next rows, high watermark. 1 when the job is done (no
 * rows after its last key). */
static int read_chunk(ing_snapshot *s, char *err, size_t errlen)
{
    int limit = chunk_limit(s);
    s->chunk_no++;
    snprintf(s->low, sizeof(s->low), "{\"chunk\":\"%s:%" PRIu64 "\",\"kind\":\"low\"}", s->nonce,
             s->chunk_no);
    snprintf(s->high, sizeof(s->high), "{\"chunk\":\"%s:%" PRIu64 "\",\"kind\":\"high\"}", s->nonce,
             s->chunk_no);
    if (watermark(s, s->low, err, errlen) != WH_OK)
        return WH_ERR;
    /* the rows and the snapshot they were read in (see ing_snapshot.h) */
    PGresult *tx = query(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
                         "starting the chunk's transaction", err, errlen);
    if (tx == NULL)
        return WH_ERR;
    PQclear(tx);
    tx = query(s, "SELECT pg_catalog.pg_current_snapshot()::text", 0, NULL, NULL,
               "reading the chunk's snapshot", err, errlen);
    if (tx == NULL || PQntuples(tx) != 1 || parse_snapshot(s, PQgetvalue(tx, 0, 0)) != WH_OK ||
        history_update(s) != WH_OK) {
        if (tx != NULL)
            wh_seterr(err, errlen, "cannot parse the chunk's snapshot (or out of memory)");
        PQclear(tx);
        PQclear(PQexec(s->conn, "ROLLBACK"));
        return WH_ERR;
    }
    PQclear(tx);
    PGresult *res = select_rows(s, limit, err, errlen);
    if (res == NULL) {
        if (s->conn != NULL)
            PQclear(PQexec(s->conn, "ROLLBACK"));
        return WH_ERR;
    }
    PGresult *end =
        query(s, "COMMIT", 0, NULL, NULL, "ending the chunk's transaction", err, errlen);
    if (end == NULL) {
        PQclear(res);
        return WH_ERR;
    }
    PQclear(end);
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 1;
    }
    s->limit = limit;
    if (watermark(s, s->high, err, errlen) != WH_OK) {
        PQclear(res);
        return WH_ERR;
    }
    s->rows = res;
    s->pending = 1;
    s->window = 0;
    s->discard = 0;
    wh_keyset_clear(&s->keys);
    return WH_OK;
}

static wh_snapjob *next_job(ing_snapshot *s)
{
    for (size_t i = 0; i < s->prog.njobs; i++)
        if (s->prog.jobs[i].state == WH_SNAP_RUNNING || s->prog.jobs[i].state == WH_SNAP_PENDING)
            return &s->prog.jobs[i];
    return NULL;
}

static void failed(ing_snapshot *s, const char *what, const char *err)
{
    if (!s->warned)
        wh_warn("snapshot: %s: %s; retried every %d ms", what, err, SNAP_RETRY_MS);
    s->warned = 1;
    s->retry_at_ms = wh_now_ms() + SNAP_RETRY_MS;
}

static int emit_chunk(ing_snapshot *s, const ing_txn *t, uint32_t *seq, char *err, size_t errlen);

/* Makes j the job read (its description read again). 1: the table is
 * refused (logged, progress queued), WH_ERR: failed (err), WH_OK. */
static int job_prepare(ing_snapshot *s, wh_snapjob *j, ing_catalog *cat, char *err, size_t errlen)
{
    if (j != s->job) {
        s->job = j;
        s->vmismatch = 0;
        s->chunk_cap = 0;
        s->run_rows = 0;
        s->run_start_us = wh_wallclock_us();
    }
    int d = describe(s, cat, err, errlen);
    if (d == 1) {
        j->state = WH_SNAP_REFUSED;
        wh_warn("snapshot of %s refused: %s", j->table, err);
        s->job = NULL;
        if (queue_request(s, NULL, 0, err, errlen) != WH_OK)
            wh_warn("snapshot: storing the progress: %s", err);
        publish_metrics(s);
        return 1;
    }
    if (d != WH_OK)
        return WH_ERR;
    if (j->state == WH_SNAP_PENDING) {
        j->state = WH_SNAP_RUNNING;
        j->started_us = wh_wallclock_us();
        wh_info("snapshot of %s (%s%s) started: about %" PRIu64 " rows, chunks of %d", j->table,
                j->kind == WH_SNAP_INITIAL ? "initial" : "backfill",
                s->exporting ? ", in the slot's exported snapshot" : "", j->rows_est,
                atomic_load(&g_chunk_rows));
    }
    return WH_OK;
}

/* The job's last (empty) chunk was read: done. */
static void job_done(ing_snapshot *s, wh_snapjob *j)
{
    char err[WH_ERRLEN];
    j->state = WH_SNAP_DONE;
    double secs = (double)(wh_wallclock_us() - j->started_us) / 1e6;
    wh_info("snapshot of %s done: %" PRIu64 " rows in %.1f s", j->table, j->rows_done, secs);
    s->job = NULL;
    if (queue_request(s, NULL, 0, err, sizeof(err)) != WH_OK)
        wh_warn("snapshot: storing the progress: %s", err);
    publish_metrics(s);
}

void ing_snapshot_tick(ing_snapshot *s, ing_catalog *cat)
{
    char err[WH_ERRLEN];
    if (s->pending || wh_now_ms() < s->retry_at_ms)
        return;
    if (!s->loaded) {
        if (load_progress(s, err, sizeof(err)) != WH_OK) {
            failed(s, "reading the progress from the store", err);
            return;
        }
        publish_metrics(s);
        if (strcmp(s->cfg->snapshot, "initial") == 0 && s->prog.plan == 0)
            wh_info("source.snapshot = initial: the slot existed before walhook created it, so "
                    "there is no initial snapshot (POST /v1/tenants/%s/backfill reads a table)",
                    s->cfg->tenant);
    }
    take_requests(s);
    if (s->idle)
        return;
    s->active = s->prog.plan == 1 || s->nexpand > 0 || next_job(s) != NULL;
    if (!s->active) {
        s->idle = 1; /* until a request comes */
        return;
    }
    if (ing_batcher_window_full(s->bt))
        return;
    if (conn_open(s, err, sizeof(err)) != WH_OK) {
        failed(s, "connecting to the source", err);
        return;
    }
    if (s->prog.plan == 1 && list_initial(s, err, sizeof(err)) != WH_OK) {
        s->prog.plan = 1;
        failed(s, "listing the tables of the initial snapshot", err);
        return;
    }
    if (s->nexpand > 0 && list_expand(s, err, sizeof(err)) != WH_OK) {
        failed(s, "listing the tables of a backfill of every table", err);
        return;
    }
    wh_snapjob *j = next_job(s);
    if (j == NULL)
        return;
    int d = job_prepare(s, j, cat, err, sizeof(err));
    if (d == 1)
        return;
    if (d != WH_OK) {
        failed(s, "reading the table's description", err);
        return;
    }
    int rc = read_chunk(s, err, sizeof(err));
    if (rc == WH_ERR && timed_out(s) && s->conn != NULL) {
        /* a lock on the table (or a slow query): the chunk is read again
         * later, the stream goes on meanwhile; nothing of it was stored */
        if (s->lock_timeouts++ % SNAP_LOCK_WARN_EVERY == 0)
            wh_warn("snapshot of %s: the chunk's query gave up after waiting for a lock on the "
                    "table (lock_timeout %d ms) or running too long (statement_timeout %d ms), "
                    "SQLSTATE %s, %u time%s in a row; read again in %d s, the stream goes on",
                    j->table,
                    s->stmt_timeout_ms < SNAP_LOCK_TIMEOUT_MS ? s->stmt_timeout_ms
                                                              : SNAP_LOCK_TIMEOUT_MS,
                    s->stmt_timeout_ms, s->sqlstate, s->lock_timeouts,
                    s->lock_timeouts == 1 ? "" : "s", SNAP_LOCK_RETRY_MS / 1000);
        s->retry_at_ms = wh_now_ms() + SNAP_LOCK_RETRY_MS;
        return;
    }
    if (rc == WH_ERR) {
        failed(s, SNAP_CHUNK_WHAT, err);
        return;
    }
    if (s->lock_timeouts > 0)
        wh_info("snapshot of %s: the chunk was read after %u lock or statement timeout%s", j->table,
                s->lock_timeouts, s->lock_timeouts == 1 ? "" : "s");
    s->lock_timeouts = 0;
    if (s->warned)
        wh_info("snapshot: works again");
    s->warned = 0;
    if (rc == 1) /* no rows after the last key: done */
        job_done(s, j);
}

int ing_snapshot_wants_export(const ing_snapshot *s)
{
    return strcmp(s->cfg->snapshot, "initial") == 0 && s->loaded && s->prog.plan == 1;
}

/* Waits until the batcher has room (the store acks): WH_ERR when a stop
 * is requested or the store does not answer for SNAP_STORE_TIMEOUT_MS * 2. */
static int wait_room(ing_snapshot *s, char *err, size_t errlen)
{
    uint64_t until = wh_now_ms() + SNAP_STORE_TIMEOUT_MS * 2;
    int64_t unacked = ing_batcher_unacked_bytes(s->bt);
    while (ing_batcher_window_full(s->bt)) {
        if (wh_stop_requested)
            return wh_seterr(err, errlen, "stop requested");
        if (wh_now_ms() > until)
            return wh_seterr(err, errlen, "the store acknowledged nothing for %d s",
                             SNAP_STORE_TIMEOUT_MS * 2 / 1000);
        ing_batcher_drain(s->bt, 100);
        int64_t now_unacked = ing_batcher_unacked_bytes(s->bt);
        if (now_unacked < unacked) /* acks come (a write budget may pace them) */
            until = wh_now_ms() + SNAP_STORE_TIMEOUT_MS * 2;
        unacked = now_unacked;
    }
    return WH_OK;
}

/* Locks the job's table (ACCESS SHARE, as pg_dump does: no rewrite until
 * the export's transaction ends) and checks that no rewrite (ALTER TABLE
 * ... TYPE, VACUUM FULL, CLUSTER: not MVCC-safe, the exported snapshot
 * would see the table empty) committed since the consistent point: the
 * file the snapshot's pg_class names is still the table's. */
static int export_lock(ing_snapshot *s, char *err, size_t errlen)
{
    char *ns = quote_ident(s, s->rel->nspname), *rn = quote_ident(s, s->rel->relname);
    char sql[600];
    int rc = WH_ERR;
    if (ns == NULL || rn == NULL) {
        wh_seterr(err, errlen, "out of memory");
        goto out;
    }
    snprintf(sql, sizeof(sql), "LOCK TABLE %s.%s IN ACCESS SHARE MODE", ns, rn);
    PGresult *res = query(s, sql, 0, NULL, NULL, "locking the table", err, errlen);
    if (res == NULL)
        goto out;
    PQclear(res);
    char oid[16];
    snprintf(oid, sizeof(oid), "%u", s->oid);
    const char *vals[1] = {oid};
    res = query(s,
                "SELECT c.relfilenode = COALESCE(pg_catalog.pg_relation_filenode(c.oid), 0) "
                "FROM pg_catalog.pg_class c WHERE c.oid = $1::oid",
                1, NULL, vals, "checking the table's file", err, errlen);
    if (res == NULL)
        goto out;
    int same = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!same) {
        wh_seterr(err, errlen,
                  "%s was rewritten (ALTER TABLE, VACUUM FULL, CLUSTER) after the slot's "
                  "consistent point: the exported snapshot cannot read it",
                  s->job->table);
        goto out;
    }
    rc = WH_OK;
out:
    free(ns);
    free(rn);
    return rc;
}

/* One job read whole in the exported snapshot's transaction. */
static int export_job(ing_snapshot *s, wh_snapjob *j, ing_catalog *cat, const ing_txn *t,
                      uint32_t *seq, char *err, size_t errlen)
{
    int d = job_prepare(s, j, cat, err, errlen);
    if (d != WH_OK)
        return d == 1 ? WH_OK : WH_ERR;
    if (export_lock(s, err, errlen) != WH_OK)
        return WH_ERR;
    while (s->job == j && j->state == WH_SNAP_RUNNING) {
        if (wh_stop_requested)
            return wh_seterr(err, errlen, "stop requested");
        if (s->export_until_us != 0 && wh_wallclock_us() > s->export_until_us)
            return wh_seterr(err, errlen, "source.snapshot_export_max_s (%d s) reached",
                             s->cfg->snapshot_export_max_s);
        if (wait_room(s, err, errlen) != WH_OK)
            return WH_ERR;
        int limit = chunk_limit(s);
        if (*seq > UINT32_MAX - (uint32_t)limit - 1)
            return wh_seterr(err, errlen, "more than %u rows: the rest goes by watermark chunks",
                             UINT32_MAX - (uint32_t)limit - 1);
        PGresult *res = select_rows(s, limit, err, errlen);
        if (res == NULL)
            return WH_ERR;
        if (PQntuples(res) == 0) {
            PQclear(res);
            job_done(s, j);
            break;
        }
        s->rows = res;
        s->limit = limit;
        int rc = emit_chunk(s, t, seq, err, errlen);
        drop_chunk(s);
        if (rc != WH_OK)
            return WH_ERR;
    }
    return WH_OK;
}

void ing_snapshot_export(ing_snapshot *s, ing_catalog *cat, const char *name,
                         uint64_t consistent_lsn, void (*after_import)(void *arg), void *arg)
{
    char err[WH_ERRLEN];
    if (!ing_snapshot_wants_export(s))
        return;
    int64_t t0 = wh_wallclock_us();
    s->export_until_us = s->cfg->snapshot_export_max_s > 0
                             ? t0 + (int64_t)s->cfg->snapshot_export_max_s * 1000000
                             : 0;
    ing_txn t;
    uint32_t seq = 0;
    uint64_t rows0 = 0;
    size_t tables = 0;
    char *lit = NULL;
    int rc = WH_ERR;
    s->exporting = 1;
    ing_stats_set_state(s->st, ING_STATE_SNAPSHOTTING,
                        "reading the initial snapshot in the new slot's exported snapshot");
    if (consistent_lsn < 2) {
        wh_seterr(err, sizeof(err), "no consistent point");
        goto out;
    }
    if (ing_txn_set_tenant(&t, s->cfg->tenant, err, sizeof(err)) != WH_OK)
        goto out;
    ing_txn_begin(&t, consistent_lsn - 2, 0, t0);
    if (conn_open(s, err, sizeof(err)) != WH_OK)
        goto out;
    PGresult *res = query(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
                          "starting the snapshot's transaction", err, sizeof(err));
    if (res == NULL)
        goto out;
    PQclear(res);
    lit = PQescapeLiteral(s->conn, name, strlen(name));
    if (lit == NULL) {
        wh_seterr(err, sizeof(err), "out of memory");
        goto out;
    }
    char sql[256];
    snprintf(sql, sizeof(sql), "SET TRANSACTION SNAPSHOT %s", lit);
    res = query(s, sql, 0, NULL, NULL, "importing the slot's exported snapshot", err, sizeof(err));
    if (res == NULL)
        goto out;
    PQclear(res);
    /* the replication connection waits idle (no wal_sender_timeout runs
     * before START_REPLICATION): the export waits for locks as pg_dump does,
     * bounded by source.snapshot_export_max_s */
    res = query(s,
                "SELECT pg_catalog.set_config('statement_timeout', '0', true), "
                "pg_catalog.set_config('lock_timeout', '0', true)",
                0, NULL, NULL, "lifting the timeouts for the export", err, sizeof(err));
    if (res == NULL)
        goto out;
    PQclear(res);
    if (after_import != NULL)
        after_import(arg);
    if (list_initial(s, err, sizeof(err)) != WH_OK)
        goto out;
    for (size_t i = 0; i < s->prog.njobs; i++)
        rows0 += s->prog.jobs[i].rows_done;
    /* the initial jobs in order; a backfill goes by watermarks, once
     * streaming */
    for (size_t i = 0; i < s->prog.njobs; i++) {
        wh_snapjob *j = &s->prog.jobs[i];
        if (j->kind != WH_SNAP_INITIAL || j->state >= WH_SNAP_DONE)
            continue;
        if (export_job(s, j, cat, &t, &seq, err, sizeof(err)) != WH_OK)
            goto out;
        tables++;
    }
    if (ing_batcher_drain(s->bt, SNAP_STORE_TIMEOUT_MS * 2) != WH_OK) {
        wh_seterr(err, sizeof(err), "the store did not acknowledge the last chunks");
        goto out;
    }
    rc = WH_OK;
out:
    if (s->conn != NULL)
        PQclear(PQexec(s->conn, rc == WH_OK ? "COMMIT" : "ROLLBACK"));
    PQfreemem(lit);
    drop_chunk(s);
    s->job = NULL;
    s->exporting = 0;
    uint64_t rows = 0;
    for (size_t i = 0; i < s->prog.njobs; i++)
        rows += s->prog.jobs[i].rows_done;
    char lsn[WH_LSN_STRLEN];
    wh_lsn_format(consistent_lsn, lsn, sizeof(lsn));
    if (rc == WH_OK)
        wh_info("initial snapshot in the slot's exported snapshot (consistent point %s): %zu "
                "table%s, %" PRIu64 " rows stored in %.1f s, before the stream's first change",
                lsn, tables, tables == 1 ? "" : "s", rows - rows0,
                (double)(wh_wallclock_us() - t0) / 1e6);
    else
        wh_warn("initial snapshot in the slot's exported snapshot stopped after %" PRIu64
                " rows: %s; what is left is read by watermark chunks once streaming",
                rows - rows0, err);
    publish_metrics(s);
}

/* ---- stream side ------------------------------------------------------------ */

int ing_snapshot_is_watermark(const ing_msg *m)
{
    return m->name != NULL && strcmp(m->name, ING_SNAPSHOT_PREFIX) == 0;
}

static int find_att(const ing_relation *r, const char *name)
{
    for (int a = 0; a < r->natts; a++)
        if (strcmp(r->atts[a].name, name) == 0)
            return a;
    return -1;
}

/* Records the chunk key of tuple t (of relation r): 0 done, -1 not readable. */
static int note_key(ing_snapshot *s, const ing_relation *r, const ing_tuple *t)
{
    const char *vals[WH_SNAP_MAXKEY];
    size_t lens[WH_SNAP_MAXKEY];
    for (int i = 0; i < s->nkey; i++) {
        int a = find_att(r, s->kname[i]);
        if (a < 0 || a >= t->ncols || t->cols[a].kind != 't')
            return -1;
        vals[i] = t->cols[a].data;
        lens[i] = t->cols[a].len;
    }
    wh_buf_reset(&s->key);
    if (wh_snapkey_encode(&s->key, vals, lens, s->nkey) != WH_OK ||
        wh_keyset_add(&s->keys, s->key.data, s->key.len) != WH_OK)
        return -1;
    return 0;
}

void ing_snapshot_change(ing_snapshot *s, const ing_msg *m, uint32_t xid)
{
    recent_add(s, xid); /* whether or not a job runs: see history_update */
    if (!s->pending || !s->window || s->discard || m->rel == NULL || m->rel->oid != s->oid)
        return;
    /* the table changed shape around the chunk: its rows may have been read
     * with another description than the stream's (read again, described
     * again); a mismatch that repeats is a description the two paths build
     * differently: warned once, then accepted */
    if (s->rel != NULL && m->rel->version != 0 && s->rel->version != 0 &&
        m->rel->version != s->rel->version && s->vmismatch < SNAP_VERSION_RETRIES) {
        if (++s->vmismatch == SNAP_VERSION_RETRIES)
            wh_warn("snapshot of %s: the stream's schema version %s differs from the "
                    "snapshot's %s %d chunks in a row; reading on",
                    s->job ? s->job->table : "?", m->rel->version_hex, s->rel->version_hex,
                    SNAP_VERSION_RETRIES);
        s->discard = 1;
        return;
    }
    int got = 0;
    if (m->has_new && note_key(s, m->rel, &m->newtup) == 0)
        got = 1;
    if (m->old_kind && note_key(s, m->rel, &m->oldtup) == 0)
        got |= 2;
    /* an update without its old key leaves the key as it was: the new
     * row's is enough; a delete needs its old key */
    if (!(m->type == 'D' ? (got & 2) : (got & 1)) || (m->old_kind && !(got & 2)))
        s->discard = 1;
}

void ing_snapshot_truncate(ing_snapshot *s, const ing_msg *m)
{
    if (!s->pending || !s->window)
        return;
    for (int i = 0; i < m->nrels; i++)
        if (m->rel_oids[i] == s->oid)
            s->discard = 1;
}

void ing_snapshot_stream_commit(ing_snapshot *s, uint32_t xid)
{
    recent_add(s, xid);
    if (s->pending && s->window)
        s->discard = 1; /* its changes were not all seen in the window */
}

/* The chunk's rows but those changed in the window, as read events at
 * (t's commit LSN, *seq...), with the job's progress, in one request. */
/* Every SNAP_LOG_EVERY_US while a job runs: rows done of estimated, the
 * rate since the job (re)started in this process, the time left. */
static void log_progress(ing_snapshot *s, const wh_snapjob *j)
{
    int64_t now = wh_wallclock_us();
    if (s->logged_us == 0)
        s->logged_us = now; /* the first line SNAP_LOG_EVERY_US from now */
    if (now - s->logged_us < SNAP_LOG_EVERY_US)
        return;
    s->logged_us = now;
    double rate =
        now > s->run_start_us ? (double)s->run_rows * 1e6 / (double)(now - s->run_start_us) : 0;
    char eta[48] = "unknown";
    if (rate > 0 && j->rows_est > j->rows_done)
        snprintf(eta, sizeof(eta), "%.0f s", (double)(j->rows_est - j->rows_done) / rate);
    wh_info("snapshot of %s: %" PRIu64 " of about %" PRIu64 " rows, %.0f rows/s, %s left", j->table,
            j->rows_done, j->rows_est, rate, eta);
}

/* The chunk's next event (its json is set once the buffer stops moving)
 * at t's commit LSN and *seq, which moves on. */
static void chunk_event(Walhook__Event *ev, Walhook__Event **evp, size_t *nev, const ing_txn *t,
                        uint32_t *seq)
{
    Walhook__Event *e = &ev[*nev];
    walhook__event__init(e);
    e->commit_lsn = t->commit_lsn;
    e->seq = *seq;
    e->commit_ts_us = t->commit_ts_us;
    evp[*nev] = e;
    (*nev)++;
    (*seq)++;
}

static int emit_chunk(ing_snapshot *s, const ing_txn *t, uint32_t *seq, char *err, size_t errlen)
{
    wh_snapjob *j = s->job;
    int n = PQntuples(s->rows), nat = s->rel->natts;
    size_t nev = 0;
    /* the rows, and the table's schema event before them */
    Walhook__Event *ev = calloc((size_t)n + 1, sizeof(*ev));
    Walhook__Event **evp = calloc((size_t)n + 1, sizeof(*evp));
    size_t *off = calloc((size_t)n + 1, sizeof(*off));
    Walhook__SchemaVersion *sv = NULL;
    int rc = WH_ERR;
    if (ev == NULL || evp == NULL || off == NULL) {
        wh_seterr(err, errlen, "out of memory");
        goto out;
    }
    wh_buf_reset(&s->json);
    ing_msg m;
    memset(&m, 0, sizeof(m));
    m.type = 'r';
    m.rel = s->rel;
    m.rel_oid = s->oid;
    m.has_new = 1;
    m.newtup.ncols = nat;
    m.newtup.cols = s->cols;
    const char *kv[WH_SNAP_MAXKEY];
    size_t kl[WH_SNAP_MAXKEY];
    uint32_t first = *seq;
    /* a version new to the tenant: its schema event goes with this chunk
     * (again with the next one when this one is not queued) */
    ing_relation *mrel = ing_relation_mut(s->parser, s->oid);
    if (s->schema != NULL && mrel != NULL && !mrel->version_done &&
        (ing_schema_announce(s->schema, mrel, t->commit_lsn, t->xid, ING_SCHEMA_SNAPSHOT) &
         ING_SCHEMA_EMIT)) {
        s->sv_pending = 1;
        s->sv_fp = mrel->version;
    }
    /* every chunk registers its version with a start at its position (as
     * the stream's first change after a Relation message does): the store
     * prunes no version that stored reads carry (st_db_schema.c, "schema
     * registry") */
    if (s->schema != NULL && mrel != NULL && mrel->version_hex[0] != '\0') {
        wh_buf_reset(&s->sdesc);
        ing_schema_table(mrel, s->sv_table, sizeof(s->sv_table));
        walhook__schema_version__init(&s->sv);
        s->sv.table = s->sv_table;
        s->sv.fingerprint = mrel->version;
        s->sv.first_lsn = t->commit_lsn;
        s->sv.first_xid = t->xid;
        s->sv.started_lsn = t->commit_lsn;
        s->sv.start_unproven = 1; /* protects only: its shape may not be the stream's */
        if (ing_schema_describe(&s->sdesc, mrel) != WH_OK) {
            wh_seterr(err, errlen, "out of memory");
            goto out;
        }
        s->sv.description.data = (uint8_t *)s->sdesc.data;
        s->sv.description.len = s->sdesc.len;
        sv = &s->sv;
    }
    if (sv != NULL && s->sv_pending && s->sv_fp == mrel->version) {
        off[nev] = s->json.len;
        if (ing_event_schema(&s->json, t, *seq, mrel, s->sdesc.data, s->sdesc.len, err, errlen) !=
            WH_OK)
            goto out;
        chunk_event(ev, evp, &nev, t, seq);
    }
    ing_values_mismatch_take(NULL); /* counted below: this chunk's own */
    for (int r = 0; r < n; r++) {
        if (s->exporting) /* no stream runs: nothing to filter */
            goto row;
        for (int k = 0; k < s->nkey; k++) {
            kv[k] = PQgetvalue(s->rows, r, s->kidx[k]);
            kl[k] = (size_t)PQgetlength(s->rows, r, s->kidx[k]);
        }
        wh_buf_reset(&s->key);
        if (wh_snapkey_encode(&s->key, kv, kl, s->nkey) != WH_OK) {
            wh_seterr(err, errlen, "out of memory");
            goto out;
        }
        if (wh_keyset_has(&s->keys, s->key.data, s->key.len))
            continue; /* changed in the window: the stream has it */
    row:
        for (int c = 0; c < nat; c++) {
            int null = PQgetisnull(s->rows, r, c);
            s->cols[c].kind = null ? 'n' : 't';
            s->cols[c].data = null ? NULL : PQgetvalue(s->rows, r, c);
            s->cols[c].len = null ? 0 : (uint32_t)PQgetlength(s->rows, r, c);
        }
        off[nev] = s->json.len;
        if (ing_event_change(&s->json, t, *seq, &m, err, errlen) != WH_OK)
            goto out;
        chunk_event(ev, evp, &nev, t, seq);
    }
    /* values that did not match their type (a composite type changed
     * since it was read for this backfill): counted, as the stream does */
    wh_counter_add(&s->st->values_as_text, ing_values_mismatch_take(NULL));
    for (size_t i = 0; i < nev; i++) {
        size_t end = i + 1 < nev ? off[i + 1] : s->json.len;
        ev[i].json.data = (uint8_t *)s->json.data + off[i];
        ev[i].json.len = end - off[i];
    }
    /* progress: the last row's key (filtered or not: the stream has it) */
    for (int k = 0; k < s->nkey; k++) {
        kv[k] = PQgetvalue(s->rows, n - 1, s->kidx[k]);
        kl[k] = (size_t)PQgetlength(s->rows, n - 1, s->kidx[k]);
    }
    /* the job as it was, for a request that cannot be queued */
    uint64_t saved_done = j->rows_done;
    int saved_state = j->state, saved_n = j->nlast;
    char *saved_last[WH_SNAP_MAXKEY];
    size_t saved_len[WH_SNAP_MAXKEY];
    for (int k = 0; k < saved_n; k++) {
        saved_last[k] = j->last[k];
        saved_len[k] = strlen(j->last[k]);
        j->last[k] = NULL;
    }
    j->nlast = 0;
    if (wh_snapjob_set_last(j, kv, kl, s->nkey) != WH_OK) {
        wh_seterr(err, errlen, "out of memory");
    } else {
        j->rows_done += (uint64_t)n;
        if (n < s->limit) /* the last chunk: rows with later keys come from the stream */
            j->state = WH_SNAP_DONE;
        rc = queue_request_sv(s, evp, nev, sv, err, errlen);
        if (rc == WH_OK && sv != NULL && s->sv_pending && s->sv_fp == mrel->version) {
            s->sv_pending = 0;
            wh_info("schema version %s of %s (%d columns), with its snapshot's rows",
                    mrel->version_hex, s->sv_table, mrel->natts);
        }
    }
    if (rc != WH_OK) { /* not queued: the chunk is read again */
        if (wh_snapjob_set_last(j, (const char *const *)saved_last, saved_len, saved_n) != WH_OK)
            j->nlast = 0; /* out of memory: read from the start (nothing is lost) */
        j->rows_done = saved_done;
        j->state = saved_state;
        *seq = first;
        if (strstr(err, "too large") != NULL && s->limit <= 1) {
            /* one row alone is larger than a request: never readable */
            wh_warn("snapshot of %s refused: one row is larger than a request "
                    "(ipc.max_msg_bytes): %s",
                    j->table, err);
            j->state = WH_SNAP_REFUSED;
            s->job = NULL;
            rc = queue_request(s, NULL, 0, err, errlen);
        } else if (strstr(err, "too large") != NULL) {
            s->chunk_cap = s->limit / 2 > 0 ? s->limit / 2 : 1;
            wh_warn("snapshot of %s: %s; chunks of %d rows from now on", j->table, err,
                    s->chunk_cap);
            rc = WH_OK; /* read again, smaller */
        }
    } else {
        s->chunks++;
        s->run_rows += (uint64_t)n;
        if (s->vmismatch < SNAP_VERSION_RETRIES)
            s->vmismatch = 0;
        if (j->state == WH_SNAP_DONE) {
            wh_info("snapshot of %s done: %" PRIu64 " rows in %.1f s", j->table, j->rows_done,
                    (double)(wh_wallclock_us() - j->started_us) / 1e6);
            s->job = NULL;
        } else {
            log_progress(s, j);
        }
    }
    for (int k = 0; k < saved_n; k++)
        free(saved_last[k]);
    publish_metrics(s);
out:
    free(ev);
    free(evp);
    free(off);
    return rc;
}

void ing_snapshot_streamed_watermark(ing_snapshot *s, const ing_msg *m)
{
    if (!s->pending || m->content == NULL)
        return;
    size_t ll = strlen(s->low), hl = strlen(s->high);
    if ((m->content_len == ll && memcmp(m->content, s->low, ll) == 0) ||
        (m->content_len == hl && memcmp(m->content, s->high, hl) == 0)) {
        s->discarded++;
        wh_info("snapshot of %s: a watermark came in a streamed transaction; the chunk is read "
                "again",
                s->job ? s->job->table : "?");
        drop_chunk(s);
        publish_metrics(s);
    }
}

int ing_snapshot_message(ing_snapshot *s, const ing_msg *m, const ing_txn *t, uint32_t *seq,
                         char *err, size_t errlen)
{
    if (!s->pending || m->content == NULL)
        return WH_OK; /* another run's, another tenant's, or a chunk dropped */
    size_t ll = strlen(s->low), hl = strlen(s->high);
    if (m->content_len == ll && memcmp(m->content, s->low, ll) == 0) {
        s->window = 1;
        wh_keyset_clear(&s->keys);
        /* a transaction in progress for the chunk's snapshot that committed
         * before this point: its changes are not in the rows, and came
         * before the window (see ing_snapshot.h): one the stream decoded
         * (recent, every decoded xid since the history started), or one that
         * may have committed before that (a suspect) */
        uint32_t late = 0;
        int found = 0;
        for (size_t k = 0; k < s->nrecent && !found; k++)
            if (invisible(s, s->recent[k])) {
                late = s->recent[k];
                found = 1;
            }
        if (!found && s->nsuspect > 0) {
            late = s->suspect[0];
            found = 2;
        }
        if (found) {
            s->discard = 1;
            /* it may wait long (a synchronous standby away): the next chunk
             * after a pause growing to SNAP_RETRY_MS * 5, not at once
             * (every chunk writes two watermarks to the WAL) */
            unsigned sh = s->vis_discards < 7 ? s->vis_discards : 7;
            uint64_t pause = (uint64_t)40 << sh;
            if (pause > SNAP_RETRY_MS * 5)
                pause = SNAP_RETRY_MS * 5;
            s->retry_at_ms = wh_now_ms() + pause;
            if (s->vis_discards++ % SNAP_VIS_LOG_EVERY == 0)
                wh_info("snapshot of %s: chunk read again: transaction %u %s but was still in "
                        "progress for its snapshot (waiting for a synchronous standby?), %u "
                        "time%s in a row",
                        s->job ? s->job->table : "?", late,
                        found == 1 ? "committed before its low watermark"
                                   : "may have committed before the ingestor's kept history began",
                        s->vis_discards, s->vis_discards == 1 ? "" : "s");
        } else {
            s->vis_discards = 0;
        }
        return WH_OK;
    }
    if (m->content_len != hl || memcmp(m->content, s->high, hl) != 0)
        return WH_OK;
    int rc = WH_OK;
    if (!s->window || s->discard) {
        s->discarded++;
        wh_debug("snapshot of %s: chunk read again (changes between its watermarks could not "
                 "be filtered)",
                 s->job ? s->job->table : "?");
        publish_metrics(s);
    } else {
        rc = emit_chunk(s, t, seq, err, errlen);
    }
    drop_chunk(s);
    return rc;
}
