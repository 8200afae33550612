/* ing_early: the source's connection and preflight, begun at start. */
#include "ing_early.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ing_catalog.h"
#include "wh_pgcheck.h"
#include "wh_util.h"

struct ing_early {
    pthread_t thread;
    int joined;
    /* the source it checked (a copy: the caller's config may change) */
    char dsn[WH_URL_MAX], slot[WH_NAME_MAX], publication[WH_NAME_MAX], tables[WH_URL_MAX];
    int create;
    /* its results, read after the join */
    int rc;
    PGconn *conn;
    wh_buf report;
    char err[WH_ERRLEN];
};

static void *early_main(void *arg)
{
    ing_early *e = arg;
    wh_pg_source src = {.dsn = e->dsn,
                        .slot = e->slot,
                        .publication = e->publication,
                        .tables = e->tables,
                        .create = e->create};
    char msg[WH_ERRLEN];
    /* the replication connection as ing_repl opens it (at most 10 s, as the
     * preflight's own); when it fails, the preflight connects on its own
     * and names the cause */
    if (ing_pg_connect(&e->conn, e->dsn, "database", ING_SESSION_OPTS, "walhook-ingestor", "10",
                       msg, sizeof(msg)) != WH_OK)
        e->conn = NULL;
    e->rc = wh_pg_preflight_conn(&src, e->conn, &e->report, e->err, sizeof(e->err));
    if (e->rc != WH_OK && e->conn != NULL) {
        PQfinish(e->conn);
        e->conn = NULL;
    }
    return NULL;
}

int ing_early_start(ing_early **out, const wh_config *c, char *err, size_t errlen)
{
    *out = NULL;
    ing_early *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return wh_seterr(err, errlen, "out of memory");
    wh_strlcpy(e->dsn, c->source_dsn, sizeof(e->dsn));
    wh_strlcpy(e->slot, c->slot, sizeof(e->slot));
    wh_strlcpy(e->publication, c->publication, sizeof(e->publication));
    wh_strlcpy(e->tables, c->tables, sizeof(e->tables));
    e->create = c->create_slot;
    wh_buf_init(&e->report, 1 << 20);
    if (pthread_create(&e->thread, NULL, early_main, e) != 0) {
        wh_buf_free(&e->report);
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

int ing_early_take(ing_early *e, const wh_config *c, int *preflight_rc, PGconn **conn,
                   wh_buf *report, char *err, size_t errlen)
{
    join(e);
    if (strcmp(e->dsn, c->source_dsn) != 0 || strcmp(e->slot, c->slot) != 0 ||
        strcmp(e->publication, c->publication) != 0 || strcmp(e->tables, c->tables) != 0 ||
        e->create != c->create_slot)
        return 0;
    *preflight_rc = e->rc;
    *conn = e->conn;
    e->conn = NULL;
    if (e->rc != WH_OK) {
        wh_seterr(err, errlen, "%s", e->err);
        wh_buf_append(report, e->report.data, e->report.len);
    }
    return 1;
}

void ing_early_free(ing_early *e)
{
    if (e == NULL)
        return;
    join(e);
    PQfinish(e->conn);
    wh_buf_free(&e->report);
    free(e);
}
