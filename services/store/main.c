/* walhook-store: owns the RocksDB event log and the runtime state document
 * (st_state, seeded from the file on first start) and serves the requests of
 * st_server.h on store.endpoint. SIGHUP makes the file the next state
 * version (origin "file").
 *
 *   walhook-store [-c walhook.conf]          run the daemon
 *   walhook-store --dump [-c walhook.conf]   print "tenant X/X seq" per stored
 *                                            event (read-only open), exit 0
 *
 * Teardown order (reverse of start): stop the server (wakes long polls,
 * closes the socket, joins workers, so no handler touches the db any more),
 * destroy it, close the state, then close the db (waits for RocksDB
 * background work).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "st_db.h"
#include "st_server.h"
#include "st_state.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_state.h"
#include "wh_util.h"

static int run_dump(const wh_config *cfg)
{
    char err[WH_ERRLEN];
    st_db *db = NULL;
    st_db_opts o = {cfg->data_dir, cfg->rocksdb_cache_bytes, cfg->rocksdb_write_buffer_bytes, 1};
    if (st_db_open(&db, &o, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "walhook-store --dump: %s\n", err);
        return 1;
    }
    int rc = st_db_dump(db, stdout, err, sizeof(err));
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
    char err[WH_ERRLEN];
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
    } else if (wh_state_render(s, &doc, 0) != WH_OK ||
               st_state_put(state, 0, doc.data, doc.len, "file", &version, &status, err,
                            sizeof(err)) != WH_OK) {
        wh_error("SIGHUP: reload refused, the running state stays: %s", err);
    } else {
        wh_info("SIGHUP: %s is state version %" PRIu64, path, version);
    }
    wh_state_unref(s);
    wh_buf_free(&doc);
}

int main(int argc, char **argv)
{
    char *args[argc + 1];
    int nargs = 0, dump = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--dump") == 0)
            dump = 1;
        else
            args[nargs++] = argv[i];
    }
    args[nargs] = NULL;
    char err[WH_ERRLEN];
    static wh_config cfg;
    const char *path = wh_daemon_init(nargs, args, "store", &cfg);
    if (dump)
        return run_dump(&cfg);
    wh_daemon_pidfile(&cfg, "store");

    int64_t need = st_db_memory_need(cfg.rocksdb_cache_bytes, cfg.rocksdb_write_buffer_bytes);
    if (cfg.memory_budget_bytes > 0 && need > cfg.memory_budget_bytes) {
        fprintf(stderr,
                "walhook-store: memory budget exceeded: store.cache_bytes (%lld) + %d x "
                "store.write_buffer_bytes (%lld) = %lld > memory_budget_bytes (%lld)\n",
                (long long)cfg.rocksdb_cache_bytes, ST_MAX_WRITE_BUFFERS,
                (long long)cfg.rocksdb_write_buffer_bytes, (long long)need,
                (long long)cfg.memory_budget_bytes);
        return 2;
    }

    st_db *db = NULL;
    st_state *state = NULL;
    st_server *srv = NULL;
    st_db_opts o = {cfg.data_dir, cfg.rocksdb_cache_bytes, cfg.rocksdb_write_buffer_bytes, 0};
    if (st_db_open(&db, &o, err, sizeof(err)) != WH_OK) {
        wh_error("cannot open the store: %s", err);
        return 1;
    }
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

    while (!wh_stop_requested) {
        if (wh_reload_requested) {
            wh_reload_requested = 0;
            reload_file(state, path);
        }
        wh_sleep_ms(100);
    }

    wh_info("stopping");
    st_server_destroy(srv);
    st_state_close(state);
    st_db_close(db);
    wh_info("stopped");
    return 0;
}
