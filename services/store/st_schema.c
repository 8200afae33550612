/* st_schema: schema registry requests. */
#include "st_schema.h"

#include <stdlib.h>
#include <string.h>

#include "st_server.h"
#include "wh_ipc.h"
#include "wh_util.h"

int st_schema_from_batch(const Walhook__AppendBatch *a, st_schema **out, char *err, size_t errlen)
{
    *out = NULL;
    if (a->n_schemas == 0)
        return WH_OK;
    if (a->schemas == NULL)
        return wh_seterr(err, errlen, "schemas: missing");
    st_schema *sv = calloc(a->n_schemas, sizeof(*sv));
    if (sv == NULL)
        return wh_seterr(err, errlen, "out of memory");
    for (size_t i = 0; i < a->n_schemas; i++) {
        const Walhook__SchemaVersion *v = a->schemas[i];
        size_t tl = v && v->table ? strlen(v->table) : 0;
        if (v == NULL || tl == 0 || tl > ST_SCHEMA_TABLE_MAX || v->fingerprint == 0 ||
            v->description.len == 0 || v->description.data == NULL) {
            free(sv);
            return wh_seterr(err, errlen,
                             "schemas[%zu]: needs a table (1..%d bytes), a fingerprint and a "
                             "description",
                             i, ST_SCHEMA_TABLE_MAX);
        }
        sv[i] = (st_schema){.table = v->table,
                            .fp = v->fingerprint,
                            .first_lsn = v->first_lsn,
                            .first_xid = v->first_xid,
                            .desc = (const char *)v->description.data,
                            .desc_len = v->description.len,
                            .started_lsn = v->started_lsn,
                            .started_xid = v->started_xid,
                            .start_unproven = v->start_unproven,
                            .first_use_moves = v->first_use_moves};
    }
    *out = sv;
    return WH_OK;
}

/* What a SchemaList reply points at. */
typedef struct list_mem {
    Walhook__SchemaReply reply;
    Walhook__SchemaVersion **vp;
    size_t n, cap;
    int oom;
} list_mem;

static int collect(void *arg, const st_schema *sv)
{
    list_mem *m = arg;
    if (wh_grow(&m->vp, m->n + 1, &m->cap, sizeof(*m->vp), 16) != WH_OK) {
        m->oom = 1;
        return 1;
    }
    Walhook__SchemaVersion *v = calloc(1, sizeof(*v));
    char *table = strdup(sv->table);
    uint8_t *desc = malloc(sv->desc_len ? sv->desc_len : 1);
    if (v == NULL || table == NULL || desc == NULL) {
        free(v);
        free(table);
        free(desc);
        m->oom = 1;
        return 1;
    }
    walhook__schema_version__init(v);
    v->table = table;
    v->fingerprint = sv->fp;
    v->first_lsn = sv->first_lsn;
    v->first_xid = sv->first_xid;
    v->started_lsn = sv->started_lsn;
    v->pruned = sv->pruned; /* a tombstone: no description */
    memcpy(desc, sv->desc, sv->desc_len);
    v->description.data = desc;
    v->description.len = sv->desc_len;
    m->vp[m->n++] = v;
    return 0;
}

void st_schema_reply_free(void *mem)
{
    list_mem *m = mem;
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->vp[i]->table);
        free(m->vp[i]->description.data);
        free(m->vp[i]);
    }
    free(m->vp);
    free(m);
}

void st_schema_list(st_db *db, const Walhook__SchemaList *sl, Walhook__Reply *rep, void **mem)
{
    char err[WH_ERRLEN];
    if (sl == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "schema_list: missing");
        return;
    }
    if (st_db_check_name(sl->tenant, "tenant", err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    list_mem *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return;
    }
    *mem = m;
    if (st_db_schema_list(db, sl->tenant, collect, m, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (m->oom) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return;
    }
    walhook__schema_reply__init(&m->reply);
    m->reply.n_versions = m->n;
    m->reply.versions = m->vp;
    rep->body_case = WALHOOK__REPLY__BODY_SCHEMAS;
    rep->schemas = &m->reply;
}
