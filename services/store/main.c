/* walhook-store: owns the RocksDB event log and the runtime state document
 * (st_state, seeded from the file on first start) and serves the requests of
 * st_server.h on store.endpoint. SIGHUP makes the file the next state
 * version (origin "file").
 *
 *   walhook-store [-c walhook.conf]          run the daemon
 *   walhook-store --dump [-c walhook.conf]   print "tenant X/X seq" (+ " schema" or " ddl" for
 *                                            schema registry events) per stored
 *                                            event (read-only open), exit 0
 *   walhook-store --dump-staged [-c ...]     print "tenant xid n" per streamed
 *                                            transaction with n staged events
 *   walhook-store --help                     the above (usage())
 *
 * Teardown order (reverse of start): stop the server (wakes long polls,
 * closes the socket, joins workers, so no handler touches the db any more),
 * destroy it, close the state, then close the db (waits for RocksDB
 * background work).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_db.h"
#include "st_resync.h"
#include "st_server.h"
#include "st_state.h"
#include "wh_budget.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_state.h"
#include "wh_util.h"

/* The main thread's periodic jobs (monotonic clock): the tick (idle
 * readers closed, orphan tenants dropped, automatic resyncs, the memory
 * plan of a new state version) and the sweep (drops that failed, tried
 * again). Between them it sleeps until a signal (wh_signal_wait). */
#define ST_TICK_MS 1000
#define ST_SWEEP_MS 60000

/* Tenants and targets of the stored state (state NULL: of the file). */
static int state_counts(const wh_config *cfg, const char *path, st_state *state,
                        wh_budget_counts *n)
{
    char err[WH_ERRLEN];
    wh_state *s = NULL;
    int rc = WH_ERR;
    if (state == NULL) {
        rc = wh_state_from_config(&s, cfg, path, err, sizeof(err));
    } else {
        wh_buf doc;
        wh_buf_init(&doc, 0);
        uint64_t v = 0;
        if (st_state_get(state, 0, &v, &doc, err, sizeof(err)) == WH_OK && doc.len > 0)
            rc = wh_state_parse(&s, doc.data, doc.len, cfg, err, sizeof(err));
        wh_buf_free(&doc);
    }
    if (rc == WH_OK)
        wh_budget_counts_of(s, n);
    wh_state_unref(s);
    return rc;
}

/* The store's memory plan for its tenants and targets against its budget:
 * published for the metrics; over the budget it prints the parts and
 * returns WH_ERR (exit 2). log: the plan is logged part by part (once, at
 * the last check before serving). */
static int plan_check(const wh_config *cfg, const char *path, st_state *state, wh_budget_counts *n,
                      int log)
{
    wh_budget_counts c = *n;
    if (state_counts(cfg, path, state, &c) == WH_OK) {
        if (c.tenants < n->tenants)
            c.tenants = n->tenants;
        *n = c;
    }
    char src[64];
    int64_t limit = wh_budget_limit(cfg, src, sizeof(src));
    wh_budget b;
    wh_budget_plan_store(&b, cfg, n);
    if (wh_budget_enforce(&b, limit, src) != WH_OK)
        return WH_ERR;
    if (!log)
        return WH_OK;
    for (int i = 0; i < b.nparts; i++)
        wh_info("memory part %s: %lld bytes (%s)", b.parts[i].name, (long long)b.parts[i].bytes,
                b.parts[i].how);
    wh_info("memory plan: sum %lld bytes + %d%% headroom = %lld within memory_budget_bytes %lld "
            "(%s; %d tenants, %d targets)",
            (long long)wh_budget_sum(&b), WH_BUDGET_HEADROOM_PCT, (long long)wh_budget_need(&b),
            (long long)limit, src, n->tenants, n->targets);
    return WH_OK;
}

/* After a state change: the plan for the new counts (a change over the
 * budget was refused by the admin; one made otherwise is logged). */
static void replan(const wh_config *cfg, st_state *state)
{
    wh_budget_counts n = {0, 0};
    if (state_counts(cfg, NULL, state, &n) != WH_OK)
        return;
    char src[64], err[2048];
    int64_t limit = wh_budget_limit(cfg, src, sizeof(src));
    wh_budget b;
    wh_budget_plan_store(&b, cfg, &n);
    wh_budget_publish(&b, limit);
    if (wh_budget_check(&b, limit, err, sizeof(err)) != WH_OK)
        wh_warn("the runtime state's tenants and targets exceed the memory budget: %s", err);
}

static int run_dump(const wh_config *cfg, int staged)
{
    char err[WH_ERRLEN];
    st_db *db = NULL;
    st_db_opts o = {cfg->data_dir,
                    cfg->rocksdb_cache_bytes,
                    cfg->rocksdb_write_buffer_bytes,
                    1,
                    cfg->store_background_jobs,
                    cfg->store_io_rate_bytes,
                    cfg->store_offset_sync_wait_us,
                    cfg->store_wal_zero_ahead_bytes};
    if (st_db_open(&db, &o, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook-store --dump: %s\n", err);
        return 1;
    }
    int rc = staged ? st_db_dump_staged(db, stdout, err, sizeof(err))
                    : st_db_dump(db, stdout, err, sizeof(err));
    st_db_close(db);
    if (rc != WH_OK) {
        fprintf(stderr, "walhook-store --dump: %s\n", err);
        return 1;
    }
    return 0;
}

/* SIGHUP: the file becomes the next state version (origin "file"); a bad
 * file is refused by name and the running version stays. */
static void reload_file(st_state *state, const char *path)
{
    char err[WH_ERRLEN] = "cannot render the state document";
    static wh_config cfg;
    wh_state *s = NULL;
    wh_buf doc;
    wh_buf_init(&doc, 0);
    uint64_t version = 0;
    int status = 0;
    if (path == NULL) {
        wh_info("SIGHUP: no configuration file to re-read");
    } else if (wh_config_load(&cfg, path, err, sizeof(err)) != WH_OK ||
               wh_state_from_config(&s, &cfg, path, err, sizeof(err)) != WH_OK) {
        wh_error("SIGHUP: reload refused, the running state stays: %s", err);
    } else {
        /* st_state_put keeps the pending backfill requests (origin "file") */
        if (wh_state_render(s, &doc, 0) != WH_OK ||
            st_state_put(state, 0, doc.data, doc.len, "file", &version, &status, err,
                         sizeof(err)) != WH_OK)
            wh_error("SIGHUP: reload refused, the running state stays: %s", err);
        else
            wh_info("SIGHUP: %s is state version %" PRIu64, path, version);
    }
    wh_state_unref(s);
    wh_buf_free(&doc);
}

static void usage(void)
{
    printf("usage: walhook-store [-c walhook.conf]\n"
           "         run the store\n"
           "       walhook-store --dump [-c walhook.conf]\n"
           "         print one line per stored event, \"tenant X/X seq\" (+ \" schema\" or\n"
           "         \" ddl\" for schema registry events), and exit\n"
           "       walhook-store --dump-staged [-c walhook.conf]\n"
           "         print \"tenant xid n\" per streamed transaction with n staged events\n"
           "Both dumps open the data directory read-only: safe while the store runs.\n"
           "Settings: defaults < config file < WALHOOK_* environment variables.\n");
}

/* A bound of the orphan offsets (st_state.h) from the environment, 0 (the
 * default) when unset: WALHOOK_TEST_* variables exist for tests only. */
static int64_t test_ms(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return 0;
    long long ms = strtoll(v, NULL, 10);
    if (ms <= 0)
        return 0;
    wh_warn("%s=%lld: a bound for tests, not for production", name, ms);
    return (int64_t)ms;
}

int main(int argc, char **argv)
{
    char *args[argc + 1];
    int nargs = 0, dump = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--dump") == 0) {
            dump = 1;
        } else if (i > 0 && strcmp(argv[i], "--dump-staged") == 0) {
            dump = 2;
        } else if (i > 0 && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
            usage();
            return 0;
        } else {
            args[nargs++] = argv[i];
        }
    }
    args[nargs] = NULL;
    char err[WH_ERRLEN];
    static wh_config cfg;
    const char *path = wh_daemon_init(nargs, args, "store", &cfg);
    if (dump)
        return run_dump(&cfg, dump == 2);

    /* the memory budget of the file's tenants and targets first: a refusal
     * opens nothing */
    wh_budget_counts counts = {0, 0};
    if (plan_check(&cfg, path, NULL, &counts, 0) != WH_OK)
        return 2;
    wh_budget_store_malloc(&cfg);
    st_db *db = NULL;
    st_state *state = NULL;
    st_server *srv = NULL;
    st_db_opts o = {cfg.data_dir,
                    cfg.rocksdb_cache_bytes,
                    cfg.rocksdb_write_buffer_bytes,
                    0,
                    cfg.store_background_jobs,
                    cfg.store_io_rate_bytes,
                    cfg.store_offset_sync_wait_us,
                    cfg.store_wal_zero_ahead_bytes};
    if (st_db_open(&db, &o, err, sizeof(err)) != WH_OK) {
        wh_error("cannot open the store: %s", err);
        return 1;
    }
    /* only now: this process holds rocksdb/LOCK, so the data directory is
     * its (a store that lost the LOCK leaves the running one's file alone) */
    wh_daemon_pidfile(&cfg, "store");
    if (st_state_open(&state, db, &cfg, path, err, sizeof(err)) != WH_OK) {
        wh_error("cannot load the runtime state: %s", err);
        st_db_close(db);
        return 1;
    }
    if (st_server_create(&srv, db, cfg.store_workers, (size_t)cfg.ipc_max_msg_bytes, err,
                         sizeof(err)) != WH_OK) {
        wh_error("cannot start the store server: %s", err);
        st_state_close(state);
        st_db_close(db);
        return 1;
    }
    /* again with the stored state's tenants and targets (added at runtime) */
    if (plan_check(&cfg, path, state, &counts, 1) != WH_OK) {
        st_server_destroy(srv);
        st_state_close(state);
        st_db_close(db);
        return 2;
    }
    st_state_set_orphan_limits(state, test_ms("WH_TEST_STORE_CREATE_GRACE_MS"),
                               test_ms("WH_TEST_STORE_ORPHAN_DROP_MS"));
    st_server_set_state(srv, state);
    st_server_set_notify(srv, cfg.store_notify_endpoint);
    if (st_server_listen(srv, cfg.store_endpoint, err, sizeof(err)) != WH_OK) {
        wh_error("cannot start the store server: %s", err);
        st_server_destroy(srv);
        st_state_close(state);
        st_db_close(db);
        return 1;
    }
    wh_info("store running on %s (data_dir %s, %d workers)", cfg.store_endpoint, cfg.data_dir,
            cfg.store_workers);

    st_resync *resync = NULL;
    if (st_resync_new(&resync, db, state, ST_RESYNC_MIN_INTERVAL_MS, err, sizeof(err)) != WH_OK)
        wh_error("automatic resyncs are off: %s", err);
    uint64_t planned = st_state_version(state);
    /* asleep between the periodic jobs, woken at once by a signal */
    uint64_t now = wh_now_ms(), next_tick = now, next_sweep = now + ST_SWEEP_MS;
    while (!wh_stop_requested) {
        if (wh_reload_requested) {
            wh_reload_requested = 0;
            reload_file(state, path);
        }
        now = wh_now_ms();
        if (now >= next_sweep) {
            st_state_sweep(state); /* a drop that failed: tried again */
            next_sweep = now + ST_SWEEP_MS;
        }
        if (now >= next_tick) {
            st_server_tick(srv);
            st_state_sweep_orphans(state);
            if (resync != NULL)
                st_resync_run(resync);
            /* the gauges follow the tenants and targets of the current state */
            if (st_state_version(state) != planned) {
                planned = st_state_version(state);
                replan(&cfg, state);
            }
            next_tick = wh_now_ms() + ST_TICK_MS; /* at least 1 s apart, as before */
        }
        uint64_t next = next_tick < next_sweep ? next_tick : next_sweep;
        now = wh_now_ms();
        wh_signal_wait(next > now ? (int)(next - now) : 0);
    }

    wh_info("stopping");
    st_resync_free(resync);
    st_server_destroy(srv);
    st_state_close(state);
    st_db_close(db);
    wh_info("stopped");
    return 0;
}
