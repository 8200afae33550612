/* ing_early: the source's connection and preflight, begun at start. */
#include "ing_early.h"

#include <pthread.h>
#include <stdlib.h>

#include "ing_catalog.h"
#include "ing_state.h"
#include "wh_pgcheck.h"
#include "wh_util.h"

struct ing_early {
    pthread_t thread;
    int joined;
    pthread_mutex_t mu; /* done, abandoned */
    int done;           /* the thread finished */
    int abandoned;      /* ing_early_free did not wait: the thread frees it */
    wh_config cfg;      /* the source it checked (a copy: the caller's may change) */
    /* its results, read after the join */
    int rc;
    PGconn *conn;
    wh_buf report;
    char err[WH_ERRLEN];
};

static void early_destroy(ing_early *e)
{
    PQfinish(e->conn);
    wh_buf_free(&e->report);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static void *early_main(void *arg)
{
    ing_early *e = arg;
    wh_pg_source src = wh_pg_source_of(&e->cfg);
    char msg[WH_ERRLEN];
    /* the replication connection as ing_repl opens it (at most 10 s, as the
     * preflight's own); when it fails, the preflight names the cause from
     * its message (and tries a plain connection only when the REPLICATION
     * attribute is what is missing) */
    int failed = ing_pg_connect(&e->conn, e->cfg.source_dsn, "database", NULL, "walhook-ingestor",
                                "10", msg, sizeof(msg)) != WH_OK;
    e->rc = wh_pg_preflight_conn(&src, e->conn, failed ? msg : NULL, &e->report, e->err,
                                 sizeof(e->err));
    if (e->rc != WH_OK && e->conn != NULL) {
        PQfinish(e->conn);
        e->conn = NULL;
    }
    pthread_mutex_lock(&e->mu);
    e->done = 1;
    int abandoned = e->abandoned;
    pthread_mutex_unlock(&e->mu);
    if (abandoned)
        early_destroy(e);
    return NULL;
}

int ing_early_start(ing_early **out, const wh_config *c, char *err, size_t errlen)
{
    *out = NULL;
    ing_early *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return wh_seterr(err, errlen, "out of memory");
    e->cfg = *c;
    wh_buf_init(&e->report, 1 << 20);
    pthread_mutex_init(&e->mu, NULL);
    if (pthread_create(&e->thread, NULL, early_main, e) != 0) {
        wh_buf_free(&e->report);
        pthread_mutex_destroy(&e->mu);
        free(e);
        return wh_seterr(err, errlen, "cannot start a thread");
    }
    *out = e;
    return WH_OK;
}

static void join(ing_early *e)
{
    if (!e->joined) {
        pthread_join(e->thread, NULL);
        e->joined = 1;
    }
}

int ing_early_preflight(ing_early *e, const wh_config *c, PGconn **conn, wh_buf *report, char *err,
                        size_t errlen)
{
    *conn = NULL;
    if (e != NULL) {
        join(e);
        if (!ing_state_source_differs(&e->cfg, c)) {
            *conn = e->conn;
            e->conn = NULL;
            if (e->rc != WH_OK) {
                wh_seterr(err, errlen, "%s", e->err);
                wh_buf_append(report, e->report.data, e->report.len);
            }
            return e->rc;
        }
        /* not this source: its walsender goes now, before the state's
         * source is checked (a server one sender short of full) */
        PQfinish(e->conn);
        e->conn = NULL;
    }
    wh_pg_source src = wh_pg_source_of(c);
    return wh_pg_preflight(&src, report, err, errlen);
}

void ing_early_free(ing_early *e)
{
    if (e == NULL)
        return;
    if (!e->joined) {
        /* not taken (a stop, or the store never answered): the ingestor
         * exits without waiting for a connection attempt (up to 10 s) */
        pthread_mutex_lock(&e->mu);
        int done = e->done;
        if (!done)
            e->abandoned = 1;
        pthread_mutex_unlock(&e->mu);
        if (!done) {
            pthread_detach(e->thread);
            return;
        }
        join(e);
    }
    early_destroy(e);
}
