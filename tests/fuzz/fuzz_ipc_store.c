/* libFuzzer target for the IPC messages: the store's request handler and the
 * client side of replies.
 *
 * Each input is
 *   1. unpacked as a Walhook__Request; when it unpacks it is run through
 *      st_server_handle() against a real RocksDB (opened once, in a temp dir
 *      under /dev/shm when available), the reply is packed as wh_ipc would,
 *      unpacked again and checked, then st_server_done() frees it;
 *   2. unpacked as a Walhook__Reply (what every client receives); when it
 *      unpacks it is re-packed, and handed to the admin's pure reply helpers
 *      (adm_stat_from_reply, adm_readiness, adm_metrics_render, which parses
 *      the Prometheus metrics_text).
  3. read as a program of staging requests (streamed transactions: the
 *      AppendBatch.stage_* fields) for tenant "fz-stage", built here so the
 *      fuzzer reaches the commit path without finding a valid protobuf
 *      first: up to 24 bytes, each an operation on one of 4 xids (stage
 *      1..8 events with their subxid the xid or a subtransaction, with
 *      stage_reset; abort a subtransaction or the whole xid; commit with a
 *      2- or 3-part head; a malformed request that must be refused) checked
 *      against a model of what is staged.
 * Oracles: no sanitizer report; protobuf round trips are size-consistent; a
 * reply never carries a status without an error text; (3) a commit makes
 * exactly the model's events, and Read returns them at (commit_lsn,
 * 0..n-1) with json = head(seq) + the staged body; a malformed request is
 * answered 400.
 *
 * The store's state document is attached (seeded from the defaults), so
 * GetState/PutState/SetOffset/DropOffset/TenantInfo are exercised too.
 *
 * fuzz-sources: services/store/st_db.c services/store/st_db_target.c
 * fuzz-sources: services/store/st_db_maint.c services/store/st_db_schema.c
 * fuzz-sources: services/store/st_server.c
 * fuzz-sources: services/store/st_state.c services/store/st_push.c
 * fuzz-sources: services/store/st_slot.c services/store/st_sfile.c
 * fuzz-sources: services/store/st_crc32c.cc
 * fuzz-sources: services/store/st_gcfilter.cc services/store/st_bgio.cc
 * fuzz-sources: services/store/st_walfs.cc services/store/st_schema.c
 * fuzz-sources: services/store/st_toast.c services/store/st_guard.c
 * fuzz-sources: services/admin/adm_query.c services/admin/adm_bg.c
 * fuzz-libs: -lrocksdb
 */
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adm_query.h"
#include "st_db.h"
#include "st_server.h"
#include "st_state.h"
#include "walhook.pb-c.h"
#include "wh_buf.h"
#include "wh_util.h"

static st_db *g_db;
static st_server *g_srv;
static st_state *g_state;
static char g_dir[256];
static int g_verbose; /* FUZZ_VERBOSE=1: print each request's outcome */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    st_server_destroy(g_srv);
    g_srv = NULL;
    st_state_close(g_state);
    g_state = NULL;
    st_db_close(g_db);
    g_db = NULL;
    if (g_dir[0])
        nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[WH_ERRLEN];
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/walhook-fuzz-store.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("fuzz_ipc_store: mkdtemp");
        abort();
    }
    st_db_opts o = {
        .data_dir = g_dir, .cache_bytes = 8 << 20, .write_buffer_bytes = 4 << 20, .read_only = 0};
    if (st_db_open(&g_db, &o, err, sizeof err) != WH_OK) {
        fprintf(stderr, "fuzz_ipc_store: st_db_open: %s\n", err);
        abort();
    }
    /* workers = 1: no long polls (a Read with wait_ms returns at once) */
    if (st_server_create(&g_srv, g_db, 1, 16u << 20, err, sizeof err) != WH_OK) {
        fprintf(stderr, "fuzz_ipc_store: st_server_create: %s\n", err);
        abort();
    }
    static wh_config cfg;
    wh_config_defaults(&cfg);
    if (wh_config_validate(&cfg, err, sizeof err) != WH_OK ||
        st_state_open(&g_state, g_db, &cfg, NULL, err, sizeof err) != WH_OK) {
        fprintf(stderr, "fuzz_ipc_store: st_state_open: %s\n", err);
        abort();
    }
    st_server_set_state(g_srv, g_state);
    wh_log_init("fuzz", WH_LOG_ERROR); /* state versions are logged at INFO */
    atexit(teardown);
    g_verbose = getenv("FUZZ_VERBOSE") != NULL;
    return 0;
}

static void check_reply_shape(const Walhook__Reply *r)
{
    if (r->status != 0 && (!r->error || !r->error[0]))
        __builtin_trap();
    switch (r->body_case) {
    case WALHOOK__REPLY__BODY_READ:
        if (!r->read || (r->read->n_events && !r->read->events))
            __builtin_trap();
        for (size_t i = 0; i < r->read->n_events; i++)
            if (!r->read->events[i])
                __builtin_trap();
        break;
    case WALHOOK__REPLY__BODY_APPEND:
        if (!r->append)
            __builtin_trap();
        break;
    case WALHOOK__REPLY__BODY_OFFSET:
        if (!r->offset)
            __builtin_trap();
        break;
    case WALHOOK__REPLY__BODY_STATS:
        if (!r->stats)
            __builtin_trap();
        break;
    default:
        break;
    }
}

static void server_side(const uint8_t *data, size_t size)
{
    Walhook__Request *req = walhook__request__unpack(NULL, size, data);
    if (!req)
        return;
    /* round trip of the request itself */
    size_t rn = walhook__request__get_packed_size(req);
    uint8_t *rbuf = malloc(rn ? rn : 1);
    if (!rbuf || walhook__request__pack(req, rbuf) != rn)
        __builtin_trap();
    free(rbuf);

    Walhook__Reply rep;
    walhook__reply__init(&rep);
    void *cookie = NULL;
    st_server_handle(g_srv, req, &rep, &cookie);
    check_reply_shape(&rep);
    if (g_verbose)
        fprintf(stderr, "request body %d -> status %d body %d events %zu%s%s\n",
                (int)req->body_case, (int)rep.status, (int)rep.body_case,
                rep.body_case == WALHOOK__REPLY__BODY_READ ? rep.read->n_events : 0,
                rep.error ? ": " : "", rep.error ? rep.error : "");

    /* pack as wh_ipc does, and the client's unpack must agree */
    size_t n = walhook__reply__get_packed_size(&rep);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || walhook__reply__pack(&rep, buf) != n)
        __builtin_trap();
    Walhook__Reply *back = walhook__reply__unpack(NULL, n, buf);
    if (!back || back->status != rep.status || back->body_case != rep.body_case)
        __builtin_trap();
    walhook__reply__free_unpacked(back, NULL);
    free(buf);

    st_server_done(g_srv, &rep, cookie);
    walhook__request__free_unpacked(req, NULL);
}

/* ---- 3. staging program ---- */

#define FZ_XIDS 4
#define FZ_STAGED_MAX 512 /* per xid in the model */

typedef struct fz_model {
    int dirty;                       /* may hold something: whole abort first */
    uint32_t n;                      /* staged events (next index) */
    uint32_t sub[FZ_STAGED_MAX];     /* each one's subxid */
    uint32_t aborted[FZ_STAGED_MAX]; /* aborted subxids */
    uint32_t naborted;
} fz_model;

static fz_model g_model[FZ_XIDS] = {{1}, {1}, {1}, {1}};
static uint64_t g_stage_lsn = (uint64_t)1 << 40; /* commit LSNs, increasing */

static int fz_send(Walhook__AppendBatch *a, uint32_t *stored)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    req.append = a;
    Walhook__Reply rep;
    walhook__reply__init(&rep);
    void *cookie = NULL;
    st_server_handle(g_srv, &req, &rep, &cookie);
    check_reply_shape(&rep);
    int status = rep.status;
    if (status == 0 && (rep.body_case != WALHOOK__REPLY__BODY_APPEND || !rep.append))
        __builtin_trap();
    if (status == 0 && stored)
        *stored = rep.append->stored;
    if (g_verbose && status != 0)
        fprintf(stderr, "stage request -> status %d: %s\n", status, rep.error ? rep.error : "");
    st_server_done(g_srv, &rep, cookie);
    return status;
}

typedef struct fz_check {
    uint64_t lsn;
    uint32_t next;
    uint32_t xid;
    const char *const *parts;
    size_t nparts;
    const uint32_t *idx; /* the staging index of each expected event */
    int bad;
} fz_check;

static int fz_check_step(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json,
                         size_t len)
{
    fz_check *c = arg;
    (void)ts;
    char want[256];
    size_t wl = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        if (i > 0)
            wl += (size_t)snprintf(want + wl, sizeof want - wl, "%u", c->next);
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s", c->parts[i]);
    }
    wl += (size_t)snprintf(want + wl, sizeof want - wl, "\"x\":%u,\"i\":%u}", c->xid,
                           c->idx[c->next]);
    if (lsn != c->lsn || seq != c->next || len != wl || memcmp(json, want, wl) != 0)
        c->bad = 1;
    c->next++;
    return 0;
}

static void staging_program(const uint8_t *data, size_t size)
{
    static const char tenant[] = "fz-stage";
    static const char *const parts3[] = {"{\"id\":\"", "\",\"seq\":", ","};
    static const char *const parts2[] = {"{\"n\":", ","};
    static char bodies[8][48];
    static Walhook__Event ev[8];
    static Walhook__Event *evp[8];
    char err[WH_ERRLEN];
    /* a fresh start: whatever a previous input left staged goes */
    for (uint32_t x = 0; x < FZ_XIDS; x++) {
        if (!g_model[x].dirty)
            continue;
        Walhook__StageAbort ab = WALHOOK__STAGE_ABORT__INIT, *abp = &ab;
        ab.xid = ab.subxid = 1 + x;
        Walhook__AppendBatch a = WALHOOK__APPEND_BATCH__INIT;
        a.tenant = (char *)tenant;
        a.n_stage_aborts = 1;
        a.stage_aborts = &abp;
        if (fz_send(&a, NULL) != 0)
            return; /* e.g. the fuzzer's PutState removed... nothing to check */
        memset(&g_model[x], 0, sizeof g_model[x]);
    }
    for (size_t p = 0; p < size && p < 24; p++) {
        uint8_t b = data[p];
        uint32_t x = (b >> 2) & 3, xid = 1 + x;
        fz_model *m = &g_model[x];
        Walhook__AppendBatch a = WALHOOK__APPEND_BATCH__INIT;
        a.tenant = (char *)tenant;
        switch (b & 3) {
        case 0: { /* stage 1..8 events, maybe from the start again */
            int reset = (b >> 4) & 1;
            uint32_t n = 1 + ((b >> 5) & 7), first = reset ? 0 : m->n;
            if (first + n > FZ_STAGED_MAX)
                break;
            for (uint32_t i = 0; i < n; i++) {
                walhook__event__init(&ev[i]);
                ev[i].seq = first + i;
                ev[i].subxid = (i & 1) && (b & 0x80) ? 100 + xid : xid;
                int l = snprintf(bodies[i], sizeof bodies[i], "\"x\":%u,\"i\":%u}", xid, first + i);
                ev[i].json.data = (uint8_t *)bodies[i];
                ev[i].json.len = (size_t)l;
                evp[i] = &ev[i];
            }
            a.stage_xid = xid;
            a.stage_reset = reset;
            a.n_events = n;
            a.events = evp;
            uint32_t stored = 0;
            if (fz_send(&a, &stored) != 0)
                return; /* "slow down" or storage trouble: no oracle */
            if (reset)
                memset(m, 0, sizeof *m);
            m->dirty = 1;
            for (uint32_t i = 0; i < n; i++)
                m->sub[first + i] = ev[i].subxid;
            m->n = first + n;
            break;
        }
        case 1: { /* abort a subtransaction, or the whole xid */
            Walhook__StageAbort ab = WALHOOK__STAGE_ABORT__INIT, *abp = &ab;
            ab.xid = xid;
            ab.subxid = (b & 0x10) ? xid : 100 + xid;
            a.n_stage_aborts = 1;
            a.stage_aborts = &abp;
            if (fz_send(&a, NULL) != 0)
                return;
            if (ab.subxid == xid) {
                memset(m, 0, sizeof *m);
            } else {
                m->dirty = 1;
                if (m->naborted < FZ_STAGED_MAX)
                    m->aborted[m->naborted++] = ab.subxid;
            }
            break;
        }
        case 2: { /* commit: the model's events, in order */
            Walhook__StageCommit c = WALHOOK__STAGE_COMMIT__INIT;
            int three = (b >> 4) & 1;
            const char *const *parts = three ? parts3 : parts2;
            size_t np = three ? 3 : 2;
            ProtobufCBinaryData hp[3];
            for (size_t i = 0; i < np; i++) {
                hp[i].data = (uint8_t *)parts[i];
                hp[i].len = strlen(parts[i]);
            }
            c.xid = xid;
            c.commit_lsn = ++g_stage_lsn;
            c.commit_ts_us = 7;
            c.n_head_parts = np;
            c.head_parts = hp;
            a.stage_commit = &c;
            uint32_t idx[FZ_STAGED_MAX], want = 0;
            for (uint32_t i = 0; i < m->n; i++) {
                int ab = 0;
                for (uint32_t j = 0; j < m->naborted; j++)
                    ab |= m->aborted[j] == m->sub[i];
                if (!ab)
                    idx[want++] = i;
            }
            /* the fuzzer's own requests (part 1) may have staged under
             * this tenant too: the model holds only when the store agrees */
            uint64_t have = 0;
            uint32_t *subs = NULL;
            size_t nsubs = 0;
            int agree =
                st_db_stage_count(g_db, tenant, xid, FZ_STAGED_MAX + 1, &have, err, sizeof err) ==
                    WH_OK &&
                have == m->n &&
                st_db_stage_aborted(g_db, tenant, xid, &subs, &nsubs, err, sizeof err) == WH_OK;
            for (size_t i = 0; agree && i < nsubs; i++) {
                int known = 0;
                for (uint32_t j = 0; j < m->naborted; j++)
                    known |= m->aborted[j] == subs[i];
                agree = known;
            }
            free(subs);
            uint32_t stored = 0;
            if (fz_send(&a, &stored) != 0)
                return;
            if (!agree) {
                memset(m, 0, sizeof *m);
                break;
            }
            if (stored != want)
                __builtin_trap();
            memset(m, 0, sizeof *m);
            fz_check ck = {c.commit_lsn, 0, xid, parts, np, idx, 0};
            size_t nread = 0;
            if (want > 0 &&
                st_db_read(g_db, tenant, c.commit_lsn - 1, UINT32_MAX, want, SIZE_MAX,
                           fz_check_step, &ck, &nread, err, sizeof err) == WH_OK &&
                (ck.bad || nread != want))
                __builtin_trap();
            break;
        }
        default: { /* malformed: refused with 400, the model unchanged */
            Walhook__StageCommit c = WALHOOK__STAGE_COMMIT__INIT;
            c.xid = xid;
            c.commit_lsn = 1;
            if (b & 0x10) {
                a.stage_reset = 1; /* without stage_xid */
            } else {
                a.stage_xid = xid; /* staged events and a commit */
                a.stage_commit = &c;
            }
            if (fz_send(&a, NULL) != ST_STATUS_BAD_REQUEST)
                __builtin_trap();
            break;
        }
        }
    }
}

static void client_side(const uint8_t *data, size_t size)
{
    Walhook__Reply *rep = walhook__reply__unpack(NULL, size, data);
    if (!rep)
        return;
    size_t n = walhook__reply__get_packed_size(rep);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || walhook__reply__pack(rep, buf) != n)
        __builtin_trap();
    free(buf);
    if (rep->error)
        (void)strlen(rep->error);

    /* the admin consumes Stats replies from every daemon */
    adm_stat st[ADM_NDAEMONS];
    memset(st, 0, sizeof st);
    wh_strlcpy(st[0].name, "store", sizeof st[0].name);
    wh_strlcpy(st[1].name, "ingestor", sizeof st[1].name);
    wh_strlcpy(st[2].name, "dispatcher", sizeof st[2].name);
    adm_stat_from_reply(&st[0], rep);
    adm_stat_from_reply(&st[1], rep);
    adm_stat_from_reply(&st[2], rep);
    wh_buf out;
    wh_buf_init(&out, 0);
    (void)adm_readiness(st, ADM_NDAEMONS, &out);
    wh_buf_reset(&out);
    (void)adm_metrics_render(st, ADM_NDAEMONS, &out);
    wh_buf_free(&out);
    adm_stats_free(st, ADM_NDAEMONS);
    walhook__reply__free_unpacked(rep, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    server_side(data, size);
    client_side(data, size);
    staging_program(data, size);
    return 0;
}
