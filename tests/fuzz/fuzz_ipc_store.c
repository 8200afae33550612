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
 * Oracles: no sanitizer report; protobuf round trips are size-consistent; a
 * reply never carries a status without an error text.
 *
 * The store's state document is attached (seeded from the defaults), so
 * GetState/PutState/SetOffset/DropOffset/TenantInfo are exercised too.
 *
 * fuzz-sources: services/store/st_db.c services/store/st_server.c
 * fuzz-sources: services/store/st_state.c services/store/st_push.c
 * fuzz-sources: services/store/st_gcfilter.cc services/store/st_bgio.cc
 * fuzz-sources: services/store/st_walfs.cc
 * fuzz-sources: services/admin/adm_query.c
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
    return 0;
}
