/* walhook-ingestor: PostgreSQL logical replication -> walhook-store. */
#include <stdio.h>
#include <stdlib.h>

#include "ing_batch.h"
#include "ing_repl.h"
#include "ing_stats.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_util.h"

int main(int argc, char **argv)
{
    static wh_config cfg;
    char err[WH_ERRLEN];
    const char *path = wh_daemon_init(argc, argv, "ingestor", &cfg);
    wh_daemon_pidfile(&cfg, "ingestor");
    if (!cfg.source_dsn[0]) {
        fprintf(stderr, "walhook-ingestor: source.dsn is not set (or WALHOOK_SOURCE_DSN)\n");
        return 2;
    }
    /* memory: the window of unacked batches, the open batch, the one in flight */
    int64_t need = cfg.window_bytes + 2 * cfg.flush_bytes + 16 * 1024 * 1024;
    if (cfg.memory_budget_bytes > 0 && need > cfg.memory_budget_bytes) {
        fprintf(stderr,
                "walhook-ingestor: memory_budget_bytes (%lld) is below what the "
                "ingestor needs: ingestor.window_bytes + 2 * ingestor.flush_bytes + 16 MiB = "
                "%lld\n",
                (long long)cfg.memory_budget_bytes, (long long)need);
        return 2;
    }

    static ing_stats st;
    ing_batcher *bt = NULL;
    wh_control *ctl = NULL;
    int rc = 1;
    if (ing_batcher_new(&bt, &cfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        goto out;
    }
    st.bt = bt;
    if (ing_control_start(&ctl, &cfg, &st, err, sizeof(err)) != WH_OK) {
        wh_error("control endpoint %s: %s", cfg.ingestor_control, err);
        goto out;
    }
    if (ing_repl_run(&cfg, path, bt, &st, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        goto out;
    }
    rc = 0;
out:
    wh_control_stop(ctl);
    ing_batcher_free(bt);
    if (rc == 0)
        wh_info("stopped");
    return rc;
}
