/* libFuzzer target for the pgoutput parser (services/ingestor/ing_pgoutput)
 * and the envelope renderer (ing_event, hence ing_values).
 *
 * Each input is used twice with a fresh parser:
 *   1. the whole input as one pgoutput message;
 *   2. the input split at FUZZ_SEP into a sequence of messages, fed to one
 *      parser in order (so Relation messages fill the cache before changes),
 *      and every parsed change rendered as the ingestor's decoder does.
 * A Relation message with REPLICA IDENTITY FULL gets a stand-in primary
 * key (its last column, as ing_repl.c relation_key would from the catalog),
 * so the primary-key key rendering is fuzzed too. The split sequence renders
 * with a small TOAST value cache (ing_toast), so unchanged values are filled
 * from it and entries are evicted. Origin messages go through
 * ing_origin_step as in the decoder (origins whose name starts with 's' are
 * skipped), so events carry fuzzed origin names. Each Relation message gets
 * its schema version (ing_schema) and a schema event; every logical
 * message's content is also rendered as a DDL message (ing_event_ddl:
 * malformed content is refused, never a crash or broken JSON).
 * Oracles: no sanitizer report; parsed pointers stay inside the input; a
 * rendered envelope (without json/jsonb columns, which are embedded
 * verbatim by design) is valid JSON.
 *
 * fuzz-sources: services/ingestor/ing_pgoutput.c services/ingestor/ing_event.c
 * fuzz-sources: services/ingestor/ing_values.c services/ingestor/ing_toast.c
 * fuzz-sources: services/ingestor/ing_origin.c services/ingestor/ing_schema.c
 * fuzz-sources: services/ingestor/ing_tstore.c services/ingestor/ing_batch.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ing_event.h"
#include "ing_origin.h"
#include "ing_pgoutput.h"
#include "ing_schema.h"
#include "ing_values.h"
#include "wh_buf.h"
#include "wh_json.h"
#include "wh_util.h"

#define FUZZ_SEP "|WH|"
#define FUZZ_SEP_LEN 4
#define FUZZ_MAX_EVENT (1u << 20)

static const uint8_t *g_lo, *g_hi; /* the current message's bytes */

static void check_span(const void *p, size_t n)
{
    if (n == 0)
        return;
    const uint8_t *q = p;
    if (!q || q < g_lo || q + n > g_hi)
        __builtin_trap();
}

static void check_tuple(const ing_tuple *t)
{
    if (t->ncols < 0 || (t->ncols > 0 && !t->cols))
        __builtin_trap();
    for (int i = 0; i < t->ncols; i++) {
        const ing_col *c = &t->cols[i];
        if (c->kind == 't' || c->kind == 'b')
            check_span(c->data, c->len);
    }
}

static void check_relation(const ing_relation *r)
{
    if (!r)
        return;
    if (!r->nspname || !r->relname || r->natts < 0 || (r->natts > 0 && !r->atts))
        __builtin_trap();
    volatile size_t n = strlen(r->nspname) + strlen(r->relname);
    for (int i = 0; i < r->natts; i++)
        n += strlen(r->atts[i].name);
    (void)n;
}

static int rel_has_json(const ing_relation *r)
{
    if (!r)
        return 0;
    for (int i = 0; i < r->natts; i++)
        if (r->atts[i].type_oid == ING_JSONOID || r->atts[i].type_oid == ING_JSONBOID)
            return 1;
    return 0;
}

/* The bytes b[start..len) must be one valid JSON object. */
static void check_json(const wh_buf *b, size_t start)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (b->len <= start)
        __builtin_trap();
    if (wh_json_parse(b->data + start, b->len - start, &j, err, sizeof err) != WH_OK)
        __builtin_trap();
    if (j->type != WH_JSON_OBJECT || !wh_json_get(j, "op"))
        __builtin_trap();
    wh_json_free(j);
}

/* One rendered event: on error the buffer must be rolled back. */
static void after_render(wh_buf *b, size_t start, int rc, int may_embed_json)
{
    if (rc != WH_OK) {
        if (b->len != start)
            __builtin_trap();
        return;
    }
    if (!may_embed_json)
        check_json(b, start);
    wh_buf_reset(b);
}

static void check_msg(const ing_parser *p, const ing_msg *m)
{
    switch (m->type) {
    case 'R':
        check_relation(m->rel);
        if (!m->rel || ing_relation_get(p, m->rel->oid) != m->rel)
            __builtin_trap();
        break;
    case 'I':
    case 'U':
    case 'D':
        check_relation(m->rel);
        if (m->old_kind)
            check_tuple(&m->oldtup);
        if (m->has_new)
            check_tuple(&m->newtup);
        break;
    case 'T':
        if (m->nrels < 0 || (m->nrels > 0 && !m->rel_oids))
            __builtin_trap();
        for (int i = 0; i < m->nrels; i++)
            check_relation(ing_relation_get(p, m->rel_oids[i]));
        break;
    case 'M':
        check_span(m->content, m->content_len);
        if (m->name)
            (void)strlen(m->name);
        break;
    case 'Y':
    case 'O':
        if (m->name)
            (void)strlen(m->name);
        if (m->nspname)
            (void)strlen(m->nspname);
        break;
    default:
        break;
    }
}

typedef struct state {
    ing_parser *p;
    ing_txn txn;
    ing_origin origin;
    int in_txn;
    uint32_t seq;
    wh_buf out;
} state;

/* ing_origin_skip_fn: origins whose name starts with 's' are skipped. */
static int skip_s(void *arg, const char *name)
{
    (void)arg;
    return name[0] == 's';
}

/* Mirrors ing_repl.c handle_xlogdata, rendering into a plain buffer. */
static void feed(state *s, const uint8_t *buf, size_t len)
{
    ing_msg m;
    char err[WH_ERRLEN];
    g_lo = buf;
    g_hi = buf + len;
    memset(&m, 0, sizeof m);
    if (ing_parse(s->p, buf, len, &m, err, sizeof err) != WH_OK) {
        if (err[0] == '\0')
            __builtin_trap(); /* an error must say what was wrong */
        return;
    }
    check_msg(s->p, &m);
    size_t start = s->out.len;
    int keep = ing_origin_step(&s->origin, &s->txn, &m, s->in_txn, skip_s, NULL, err, sizeof err);
    if (keep < 0 && err[0] == '\0')
        __builtin_trap(); /* an error must say what was wrong */
    if (keep != ING_ORIGIN_KEEP)
        return;
    switch (m.type) {
    case 'B':
        s->in_txn = 1;
        s->seq = 0;
        ing_txn_begin(&s->txn, m.final_lsn, m.xid, m.commit_ts_us);
        break;
    case 'C':
        s->in_txn = 0;
        break;
    case 'R':
        ing_toast_relation(s->txn.toast, m.rel);
        if (m.rel && m.rel->replident == 'f' && m.rel->natts > 0) {
            const char *pk[1] = {m.rel->atts[m.rel->natts - 1].name};
            if (ing_relation_set_pk(s->p, m.rel->oid, pk, 1, err, sizeof err) != WH_OK ||
                !m.rel->key_pk)
                __builtin_trap();
        }
        if (m.rel) {
            ing_relation *r = ing_relation_mut(s->p, m.rel->oid);
            wh_buf desc;
            wh_buf_init(&desc, FUZZ_MAX_EVENT);
            if (r == NULL || ing_schema_version(r, &desc) != WH_OK || strlen(r->version_hex) != 16)
                __builtin_trap();
            int rc =
                ing_event_schema(&s->out, &s->txn, s->seq, r, desc.data, desc.len, err, sizeof err);
            after_render(&s->out, start, rc, 0);
            wh_buf_free(&desc);
        }
        break;
    case 'I':
    case 'U':
    case 'D': {
        /* the decoder renders even when the relation is unknown (it then
         * expects WH_ERR) */
        int rc = ing_event_change(&s->out, &s->txn, s->seq, &m, err, sizeof err);
        if (rc == WH_OK && !m.rel)
            __builtin_trap();
        after_render(&s->out, start, rc, rel_has_json(m.rel));
        s->seq++;
        break;
    }
    case 'T':
        for (int i = 0; i < m.nrels; i++) {
            const ing_relation *rel = ing_relation_get(s->p, m.rel_oids[i]);
            if (!rel)
                continue;
            ing_toast_forget_rel(s->txn.toast, rel->oid);
            int rc = ing_event_truncate(&s->out, &s->txn, s->seq, rel, m.flags, err, sizeof err);
            after_render(&s->out, start, rc, 0);
            s->seq++;
        }
        break;
    case 'M': {
        ing_txn t = s->txn;
        if (!((m.flags & 1) && s->in_txn))
            ing_txn_begin(&t, m.lsn, 0, 1700000000000000);
        int rc = ing_event_message(&s->out, &t, s->seq, &m, err, sizeof err);
        after_render(&s->out, start, rc, 0);
        rc = ing_event_ddl(&s->out, &t, s->seq, &m, err, sizeof err);
        after_render(&s->out, start, rc, 0);
        s->seq++;
        break;
    }
    default:
        break;
    }
}

static void run(const uint8_t *data, size_t size, int split)
{
    state s;
    char err[WH_ERRLEN];
    memset(&s, 0, sizeof s);
    if (ing_parser_new(&s.p, err, sizeof err) != WH_OK)
        __builtin_trap();
    if (ing_txn_set_tenant(&s.txn, "fu\"zz", err, sizeof err) != WH_OK)
        __builtin_trap();
    ing_txn_begin(&s.txn, 1, 1, 0);
    if (split && ing_toast_new(&s.txn.toast, 4096, NULL, err, sizeof err) != WH_OK)
        __builtin_trap();
    wh_buf_init(&s.out, FUZZ_MAX_EVENT);
    if (!split) {
        /* a private copy: pointers past the message end hit the redzone */
        uint8_t *copy = malloc(size ? size : 1);
        if (!copy)
            abort();
        memcpy(copy, data, size);
        feed(&s, copy, size);
        free(copy);
    } else {
        size_t pos = 0;
        while (pos <= size) {
            const uint8_t *sep = NULL;
            if (size - pos >= FUZZ_SEP_LEN)
                sep = memmem(data + pos, size - pos, FUZZ_SEP, FUZZ_SEP_LEN);
            size_t n = sep ? (size_t)(sep - (data + pos)) : size - pos;
            uint8_t *copy = malloc(n ? n : 1);
            if (!copy)
                abort();
            memcpy(copy, data + pos, n);
            feed(&s, copy, n);
            free(copy);
            if (!sep)
                break;
            pos += n + FUZZ_SEP_LEN;
        }
    }
    if (ing_relation_count(s.p) > 0 && size == 0)
        __builtin_trap();
    wh_buf_free(&s.out);
    ing_toast_free(s.txn.toast);
    ing_parser_free(s.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, 0);
    if (size >= FUZZ_SEP_LEN && memmem(data, size, FUZZ_SEP, FUZZ_SEP_LEN))
        run(data, size, 1);
    return 0;
}
