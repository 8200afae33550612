/* st_push: which Appends push their events. See st_push.h. */
#include "st_push.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "wh_lsn.h"
#include "wh_util.h"

typedef struct st_pten {
    struct st_pten *next;
    char tenant[ST_NAME_MAX + 1];
    int known; /* lsn/seq is the tenant's last stored position */
    uint64_t lsn;
    uint32_t seq;
    uint64_t moves_at; /* st_db_offset_moves when the tail was read */
    uint64_t gen;      /* Appends finished */
    int inflight;      /* Appends between begin and end */
} st_pten;

struct st_push {
    pthread_mutex_t mu;
    st_pten *list;
    size_t n;
};

int st_push_new(st_push **out)
{
    st_push *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WH_ERR;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return WH_OK;
}

void st_push_free(st_push *p)
{
    if (p == NULL)
        return;
    while (p->list != NULL) {
        st_pten *e = p->list;
        p->list = e->next;
        free(e);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Caller holds mu. */
static st_pten *pten_get(st_push *p, const char *tenant)
{
    for (st_pten *e = p->list; e != NULL; e = e->next)
        if (strcmp(e->tenant, tenant) == 0)
            return e;
    if (p->n >= ST_PUSH_MAX_TENANTS || strlen(tenant) > ST_NAME_MAX)
        return NULL;
    st_pten *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    wh_strlcpy(e->tenant, tenant, sizeof(e->tenant));
    e->next = p->list;
    p->list = e;
    p->n++;
    return e;
}

void st_push_begin(st_push *p, st_db *db, const char *tenant, st_push_tok *tok)
{
    memset(tok, 0, sizeof(*tok));
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    st_pten *e = pten_get(p, tenant);
    if (e == NULL) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    uint64_t mv = st_db_offset_moves(db);
    if (e->known && e->moves_at != mv)
        e->known = 0; /* the tenant may have been dropped: read the tail again */
    if (!e->known && e->inflight == 0) {
        uint64_t g = e->gen;
        pthread_mutex_unlock(&p->mu);
        uint64_t lsn = 0;
        uint32_t seq = 0;
        char err[WH_ERRLEN];
        int rc = st_db_tenant_end(db, tenant, &lsn, &seq, err, sizeof(err));
        pthread_mutex_lock(&p->mu);
        /* only if nothing of the tenant was written meanwhile */
        if (rc == WH_OK && !e->known && e->gen == g && e->inflight == 0 &&
            st_db_offset_moves(db) == mv) {
            e->known = 1;
            e->lsn = lsn;
            e->seq = seq;
            e->moves_at = mv;
        }
    }
    tok->ten = e;
    tok->known = e->known;
    tok->lsn = e->lsn;
    tok->seq = e->seq;
    tok->gen = e->gen;
    e->inflight++;
    pthread_mutex_unlock(&p->mu);
}

int st_push_end(st_push *p, st_db *db, st_push_tok *tok, int ok, uint64_t first_lsn,
                uint32_t first_seq, uint64_t last_lsn, uint32_t last_seq, uint64_t *prev_lsn,
                uint32_t *prev_seq, uint64_t *moves)
{
    st_pten *e = tok->ten;
    if (p == NULL || e == NULL)
        return 0;
    pthread_mutex_lock(&p->mu);
    e->inflight--;
    int still = e->known && st_db_offset_moves(db) == e->moves_at;
    int push = ok && still && tok->known && e->gen == tok->gen && e->inflight == 0 &&
               wh_pos_cmp(first_lsn, first_seq, tok->lsn, tok->seq) > 0 &&
               wh_pos_cmp(last_lsn, last_seq, first_lsn, first_seq) >= 0;
    if (ok && still) {
        if (wh_pos_cmp(last_lsn, last_seq, e->lsn, e->seq) > 0) {
            e->lsn = last_lsn;
            e->seq = last_seq;
        }
    } else {
        e->known = 0; /* a failed write may be partly stored: read the tail again */
    }
    e->gen++;
    *prev_lsn = tok->lsn;
    *prev_seq = tok->seq;
    *moves = e->moves_at;
    pthread_mutex_unlock(&p->mu);
    return push;
}
