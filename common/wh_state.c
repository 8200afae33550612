/* wh_state: the runtime state document (docs/CONTROL.md). See wh_state.h. */
#include "wh_state.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libconfig.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wh_cidr.h"
#include "wh_dsn.h"
#include "wh_filter.h"
#include "wh_ipc.h"
#include "wh_util.h"

/* A stored document is written by walhook only: a field this one does not
 * know comes from a newer walhook (a daemon of another version, or a
 * downgrade after the newer one wrote it), and the error says so. */
#define WH_STATE_UNKNOWN_FIELD                                                                     \
    "unknown field (written by a newer walhook? every daemon must run the same version)"

#define WH_PATHLEN 160 /* "tenants[63].targets[31].secrets[3]" and a field */

/* A target's optional delivery settings: field, and the dispatcher.* setting
 * whose bounds apply and which it inherits when 0. */
typedef struct dlv_field {
    const char *name;
    const char *setting;
    size_t offset;
    int is64;
} dlv_field;

static const dlv_field dlv_fields[] = {
    {"batch_max_events", "dispatcher.batch_max_events", offsetof(wh_state_target, batch_max_events),
     0},
    {"batch_max_bytes", "dispatcher.batch_max_bytes", offsetof(wh_state_target, batch_max_bytes),
     1},
    {"retry_base_ms", "dispatcher.retry_base_ms", offsetof(wh_state_target, retry_base_ms), 0},
    {"retry_max_ms", "dispatcher.retry_max_ms", offsetof(wh_state_target, retry_max_ms), 0},
    {"http_timeout_ms", "dispatcher.http_timeout_ms", offsetof(wh_state_target, http_timeout_ms),
     0},
};

/* ---- delivery fields (wh_delivery) ---- */

typedef enum { DF_INT, DF_INT64, DF_STR } df_type;

typedef struct dl_field {
    const char *name;
    df_type type;
    size_t offset, size;
    int64_t min, max;    /* numbers: 0 is always accepted (= default) */
    const char *choices; /* strings: "a|b|c" or NULL (free text) */
} dl_field;

#define DLI(f, lo, hi)                                                                             \
    {                                                                                              \
#f, DF_INT, offsetof(wh_delivery, f), sizeof(int), lo, hi, NULL                            \
    }
#define DLL(f, lo, hi)                                                                             \
    {                                                                                              \
#f, DF_INT64, offsetof(wh_delivery, f), sizeof(int64_t), lo, hi, NULL                      \
    }
#define DLS(f, ch)                                                                                 \
    {                                                                                              \
#f, DF_STR, offsetof(wh_delivery, f), sizeof(((wh_delivery *)0)->f), 0, 0, ch              \
    }

static const dl_field dl_fields[] = {
    DLI(max_attempts, 1, 1000000),
    DLL(max_age_ms, 1, 30LL * 24 * 3600 * 1000),
    DLI(breaker_failures, 1, 1000000),
    DLI(breaker_ratio_pct, 1, 100),
    DLI(breaker_window, 2, 128),
    DLI(breaker_cooldown_ms, 10, 3600000),
    DLI(nack_window, 2, 128),
    DLI(nack_threshold, 1, 128),
    DLI(rate_events_per_s, 1, 100000000),
    DLI(rate_requests_per_s, 1, 1000000),
    DLI(rate_burst, 1, 100000000),
    DLS(on_failure, "dlq|block"),
    DLS(mode, "reliable|fast"),
    DLL(backlog_max_ms, 1, 30LL * 24 * 3600 * 1000),
    DLS(ordering, "strict|by_key"),
    DLI(lanes, 1, 64),
    DLI(batch_max_age_ms, 1, 60000),
    DLI(max_connections, 1, 64),
    DLS(envelope, "native|debezium|cloudevents|cloudevents-binary|cloudevents_binary"),
    DLS(filter_tables, NULL),
    DLS(filter_ops, NULL),
    DLS(filter_columns_include, NULL),
    DLS(filter_columns_exclude, NULL),
    DLS(filter_expr, NULL),
    DLS(allow_private, NULL),
    DLS(http_version, "auto|1.1|2"),
    DLS(on_needs_snapshot, "wait|resync"),
};

static const dl_field *dl_find(const char *name)
{
    for (size_t i = 0; i < WH_ARRAY_LEN(dl_fields); i++)
        if (strcmp(dl_fields[i].name, name) == 0)
            return &dl_fields[i];
    return NULL;
}

int wh_delivery_is_field(const char *name)
{
    return dl_find(name) != NULL;
}

static int64_t dl_get(const wh_delivery *d, const dl_field *f)
{
    const char *p = (const char *)d + f->offset;
    return f->type == DF_INT64 ? *(const int64_t *)p : *(const int *)p;
}

/* 1 when v is one of "a|b|c". */
static int dl_choice(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, v, n) == 0)
            return 1;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

static int dl_check_value(const dl_field *f, const wh_delivery *d, char *err, size_t errlen)
{
    const char *p = (const char *)d + f->offset;
    if (f->type != DF_STR) {
        int64_t v = dl_get(d, f);
        if (v != 0 && (v < f->min || v > f->max))
            return wh_seterr(err, errlen,
                             "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64
                             "] (0 = the default)",
                             f->name, v, f->min, f->max);
        return WH_OK;
    }
    if (memchr(p, '\0', f->size) == NULL)
        return wh_seterr(err, errlen, "%s: too long", f->name);
    for (const unsigned char *q = (const unsigned char *)p; *q; q++)
        if (*q < 0x20 || *q == 0x7f)
            return wh_seterr(err, errlen, "%s: contains a control character", f->name);
    if (f->choices != NULL && p[0] != '\0' && !dl_choice(f->choices, p))
        return wh_seterr(err, errlen, "%s: '%.40s' is not one of %s", f->name, p, f->choices);
    return WH_OK;
}

int wh_delivery_check_filter(const wh_delivery *d, char *err, size_t errlen)
{
    wh_filter *f = NULL;
    char ferr[WH_ERRLEN];
    if (wh_filter_compile_lists(d->filter_tables, d->filter_ops, d->filter_columns_include,
                                d->filter_columns_exclude, d->filter_expr, &f, ferr,
                                sizeof(ferr)) != WH_OK) {
        /* "filter.expression: ..." -> "filter_expr: ...": the setting's name */
        static const struct {
            const char *part, *setting;
        } parts[] = {{"filter.expression", "filter_expr"},
                     {"filter.operations", "filter_ops"},
                     {"filter.tables", "filter_tables"},
                     {"filter.columns.include", "filter_columns_include"},
                     {"filter.columns.exclude", "filter_columns_exclude"},
                     {"filter.columns", "filter_columns_include, filter_columns_exclude"}};
        for (size_t i = 0; i < WH_ARRAY_LEN(parts); i++) {
            size_t n = strlen(parts[i].part);
            if (strncmp(ferr, parts[i].part, n) == 0)
                return wh_seterr(err, errlen, "%s%s", parts[i].setting, ferr + n);
        }
        return wh_seterr(err, errlen, "%s", ferr);
    }
    wh_filter_free(f);
    return WH_OK;
}

/* filters: compile the filter settings too (wh_delivery_check) */
static int delivery_check(const wh_delivery *d, int filters, char *err, size_t errlen)
{
    for (size_t i = 0; i < WH_ARRAY_LEN(dl_fields); i++)
        if (dl_check_value(&dl_fields[i], d, err, errlen) != WH_OK)
            return WH_ERR;
    wh_cidr_list cl;
    char sub[WH_ERRLEN];
    if (wh_cidr_list_parse(d->allow_private, &cl, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "allow_private: %s", sub);
    if (d->nack_threshold != 0 && d->nack_window != 0 && d->nack_threshold > d->nack_window)
        return wh_seterr(err, errlen, "nack_threshold: %d is above nack_window %d",
                         d->nack_threshold, d->nack_window);
    /* the filter the dispatcher will compile: refused here, before it is
     * stored, rather than by the dispatcher once it is */
    return filters ? wh_delivery_check_filter(d, err, errlen) : WH_OK;
}

int wh_delivery_check(const wh_delivery *d, char *err, size_t errlen)
{
    return delivery_check(d, 1, err, errlen);
}

int wh_delivery_set(wh_delivery *d, const char *key, json_t *v, char *err, size_t errlen)
{
    const dl_field *f = dl_find(key);
    if (f == NULL)
        return 1;
    char *p = (char *)d + f->offset;
    if (f->type == DF_STR) {
        if (json_is_null(v)) {
            memset(p, 0, f->size);
            return WH_OK;
        }
        if (!json_is_string(v))
            return wh_seterr(err, errlen, "%s: expected a string", key);
        size_t n = json_string_length(v);
        if (n >= f->size)
            return wh_seterr(err, errlen, "%s: too long (max %zu bytes)", key, f->size - 1);
        if (strlen(json_string_value(v)) != n)
            return wh_seterr(err, errlen, "%s: contains a NUL character", key);
        memset(p, 0, f->size); /* whole field: equal settings compare equal bytewise */
        memcpy(p, json_string_value(v), n);
    } else {
        int64_t x = 0;
        if (!json_is_null(v)) {
            if (!json_is_integer(v))
                return wh_seterr(err, errlen, "%s: expected an integer", key);
            x = (int64_t)json_integer_value(v);
        }
        if (x != 0 && (x < f->min || x > f->max))
            return wh_seterr(err, errlen,
                             "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64
                             "] (0 = the default)",
                             key, x, f->min, f->max);
        if (f->type == DF_INT64)
            *(int64_t *)p = x;
        else
            *(int *)p = (int)x;
    }
    return dl_check_value(f, d, err, errlen);
}

static int dl_render(json_t *o, const wh_delivery *d)
{
    int rc = 0;
    for (size_t i = 0; i < WH_ARRAY_LEN(dl_fields); i++) {
        const dl_field *f = &dl_fields[i];
        const char *p = (const char *)d + f->offset;
        if (f->type == DF_STR) {
            if (p[0] != '\0')
                rc |= json_object_set_new(o, f->name, json_string(p));
        } else {
            int64_t v = dl_get(d, f);
            if (v != 0)
                rc |= json_object_set_new(o, f->name, json_integer(v));
        }
    }
    return rc;
}

/* snprintf for field paths: a path cut short is still a useful message. */
static void pathf(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *dst, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

static int64_t dlv_get(const wh_state_target *t, const dlv_field *f)
{
    const char *p = (const char *)t + f->offset;
    return f->is64 ? *(const int64_t *)p : *(const int *)p;
}

static void dlv_set(wh_state_target *t, const dlv_field *f, int64_t v)
{
    char *p = (char *)t + f->offset;
    if (f->is64)
        *(int64_t *)p = v;
    else
        *(int *)p = (int)v;
}

static const dlv_field *dlv_find(const char *name)
{
    for (size_t i = 0; i < WH_ARRAY_LEN(dlv_fields); i++)
        if (strcmp(dlv_fields[i].name, name) == 0)
            return &dlv_fields[i];
    return NULL;
}

static int valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= WH_NAME_MAX - 1;
}

static const char *def_str(const char *path)
{
    const wh_config_entry *e = wh_config_find(path);
    return e && e->def_str ? e->def_str : "";
}

/* ---- allocation, references ---- */

static wh_state *state_new(void)
{
    wh_state *s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->refs = 1;
    return s;
}

static void state_free(wh_state *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->ntenants; i++)
        free(s->tenants[i].targets);
    free(s->tenants);
    free(s);
}

void wh_state_ref(wh_state *s)
{
    if (s != NULL)
        __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
}

void wh_state_unref(wh_state *s)
{
    if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        state_free(s);
}

int wh_state_clone(wh_state **out, const wh_state *s)
{
    *out = NULL;
    wh_state *c = state_new();
    if (c == NULL)
        return WH_ERR;
    c->version = s->version;
    c->settings = s->settings;
    if (s->ntenants > 0) {
        c->tenants = calloc((size_t)s->ntenants, sizeof(*c->tenants));
        if (c->tenants == NULL)
            goto error;
    }
    for (int i = 0; i < s->ntenants; i++) {
        c->tenants[i] = s->tenants[i];
        c->tenants[i].targets = NULL;
        c->ntenants = i + 1;
        int nt = s->tenants[i].ntargets;
        if (nt > 0) {
            c->tenants[i].targets = malloc((size_t)nt * sizeof(wh_state_target));
            if (c->tenants[i].targets == NULL)
                goto error;
            memcpy(c->tenants[i].targets, s->tenants[i].targets,
                   (size_t)nt * sizeof(wh_state_target));
        }
    }
    c->ntenants = s->ntenants;
    *out = c;
    return WH_OK;
error:
    state_free(c);
    return WH_ERR;
}

/* The array v of n elements of `size` bytes grown by one zeroed element:
 * the new array, NULL when out of memory (v unchanged). */
static void *grow_one(void *v, int n, size_t size)
{
    char *p = realloc(v, ((size_t)n + 1) * size);
    if (p != NULL)
        memset(p + (size_t)n * size, 0, size);
    return p;
}

/* Removes element i of the array v of *n elements of `size` bytes. */
static void remove_at(void *v, int *n, size_t size, int i)
{
    char *p = v;
    memmove(p + (size_t)i * size, p + ((size_t)i + 1) * size, (size_t)(*n - i - 1) * size);
    (*n)--;
}

wh_state_tenant *wh_state_tenant_add(wh_state *s)
{
    wh_state_tenant *n = grow_one(s->tenants, s->ntenants, sizeof(*n));
    if (n == NULL)
        return NULL;
    s->tenants = n;
    wh_state_tenant *t = &n[s->ntenants++];
    wh_strlcpy(t->slot, def_str("source.slot"), sizeof(t->slot));
    wh_strlcpy(t->publication, def_str("source.publication"), sizeof(t->publication));
    const wh_config_entry *cs = wh_config_find("source.create_slot");
    t->create_slot = cs ? (int)cs->def_int : 1;
    return t;
}

wh_state_target *wh_state_target_add(wh_state_tenant *t)
{
    wh_state_target *n = grow_one(t->targets, t->ntargets, sizeof(*n));
    if (n == NULL)
        return NULL;
    t->targets = n;
    return &n[t->ntargets++];
}

void wh_state_stamp_created(wh_state *s, const wh_state *cur, uint64_t version)
{
    for (int i = 0; i < s->ntenants; i++) {
        wh_state_tenant *t = &s->tenants[i];
        const wh_state_tenant *ct = cur != NULL ? wh_state_tenant_find(cur, t->name) : NULL;
        for (int k = 0; k < t->ntargets; k++) {
            const wh_state_target *cg =
                ct != NULL ? wh_state_target_find(ct, t->targets[k].name) : NULL;
            t->targets[k].created_version =
                cg != NULL ? cg->created_version
                           : (int64_t)(version > INT64_MAX ? INT64_MAX : version);
        }
    }
}

int wh_state_tenant_remove(wh_state *s, const char *name)
{
    const wh_state_tenant *t = wh_state_tenant_find(s, name);
    if (t == NULL)
        return WH_ERR;
    int i = (int)(t - s->tenants);
    free(s->tenants[i].targets);
    remove_at(s->tenants, &s->ntenants, sizeof(s->tenants[0]), i);
    return WH_OK;
}

int wh_state_target_remove(wh_state_tenant *t, const char *name)
{
    const wh_state_target *g = wh_state_target_find(t, name);
    if (g == NULL)
        return WH_ERR;
    remove_at(t->targets, &t->ntargets, sizeof(t->targets[0]), (int)(g - t->targets));
    return WH_OK;
}

void wh_state_backfill_add(wh_state_tenant *t, const char *table, unsigned long floor,
                           unsigned long *id)
{
    unsigned long last = floor > 0 ? floor - 1 : 0;
    for (const char *p = t->backfills; *p;) {
        unsigned long n = strtoul(p, NULL, 10);
        if (n > last)
            last = n;
        const char *semi = strchr(p, ';');
        p = semi ? semi + 1 : p + strlen(p);
    }
    char item[WH_BACKFILL_TABLE_MAX + 32];
    snprintf(item, sizeof(item), "%lu:%s", last + 1, table);
    while (strlen(t->backfills) + strlen(item) + 2 > sizeof(t->backfills)) {
        char *semi = strchr(t->backfills, ';');
        if (!semi) {
            t->backfills[0] = '\0';
            break;
        }
        memmove(t->backfills, semi + 1, strlen(semi + 1) + 1);
    }
    size_t used = strlen(t->backfills);
    snprintf(t->backfills + used, sizeof(t->backfills) - used, "%s%s", used ? ";" : "", item);
    *id = last + 1;
}

const wh_state_tenant *wh_state_tenant_find(const wh_state *s, const char *tenant)
{
    if (s == NULL || tenant == NULL)
        return NULL;
    for (int i = 0; i < s->ntenants; i++)
        if (strcmp(s->tenants[i].name, tenant) == 0)
            return &s->tenants[i];
    return NULL;
}

const wh_state_target *wh_state_target_find(const wh_state_tenant *t, const char *name)
{
    if (t == NULL || name == NULL)
        return NULL;
    for (int i = 0; i < t->ntargets; i++)
        if (strcmp(t->targets[i].name, name) == 0)
            return &t->targets[i];
    return NULL;
}

/* ---- validation ---- */

static int validate_settings(const wh_config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        if (!(e->flags & WH_CF_RUNTIME))
            continue;
        const char *p = (const char *)c + e->offset;
        int64_t v = 0;
        switch (e->type) {
        case WH_CT_STRING:
            if (memchr(p, '\0', e->size) == NULL)
                return wh_seterr(err, errlen, "settings.%s: not terminated", e->path);
            if (strcmp(e->path, "log_level") == 0 && wh_log_level_parse(p) < 0)
                return wh_seterr(err, errlen,
                                 "settings.log_level: '%.15s' is not debug, info, warn or error",
                                 p);
            if (strcmp(e->path, "log_format") == 0 && wh_log_format_parse(p) < 0)
                return wh_seterr(err, errlen, "settings.log_format: '%.7s' is not text or json", p);
            continue;
        case WH_CT_BOOL:
        case WH_CT_INT:
            v = *(const int *)p;
            break;
        case WH_CT_INT64:
            v = *(const int64_t *)p;
            break;
        }
        if (v < e->min || v > e->max)
            return wh_seterr(err, errlen,
                             "settings.%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                             e->path, v, e->min, e->max);
    }
    if (c->retry_max_ms < c->retry_base_ms)
        return wh_seterr(
            err, errlen,
            "settings.dispatcher.retry_max_ms: %d is below dispatcher.retry_base_ms %d",
            c->retry_max_ms, c->retry_base_ms);
    wh_cidr_list cl;
    char csub[WH_ERRLEN];
    if (wh_cidr_list_parse(c->allow_private_networks, &cl, csub, sizeof(csub)) != WH_OK)
        return wh_seterr(err, errlen, "settings.dispatcher.allow_private_networks: %s", csub);
    if (wh_origins_check(c->skip_origins, csub, sizeof(csub)) != WH_OK)
        return wh_seterr(err, errlen, "settings.source.skip_origins: %s", csub);
    if (c->flush_bytes > c->ipc_max_msg_bytes / 2)
        return wh_seterr(err, errlen,
                         "settings.ingestor.flush_bytes: %" PRId64
                         " must be at most half of ipc.max_msg_bytes (%" PRId64 ")",
                         c->flush_bytes, c->ipc_max_msg_bytes);
    return WH_OK;
}

static int terminated(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

static json_t *render_target(const wh_state_target *g, int redact);

/* 1 when pt (the tenant of the same name in the document a write replaces)
 * has a target named as g with every setting g has: its unredacted
 * renderings are equal, but for created_version (the store's, which a
 * file's document does not carry: wh_state_stamp_created). */
static int target_unchanged(const wh_state_target *g, const wh_state_tenant *pt)
{
    const wh_state_target *p = wh_state_target_find(pt, g->name);
    if (p == NULL)
        return 0;
    json_t *a = render_target(g, 0), *b = render_target(p, 0);
    if (a != NULL)
        json_object_del(a, "created_version");
    if (b != NULL)
        json_object_del(b, "created_version");
    int same = a != NULL && b != NULL && json_equal(a, b);
    json_decref(a);
    json_decref(b);
    return same;
}

/* filters: compile the target's filter settings too, unless pt (may be
 * NULL) has the target as it is */
static int validate_target(const wh_state_target *g, const char *path, int filters,
                           const wh_state_tenant *pt, char *err, size_t errlen)
{
    char sub[WH_ERRLEN];
    if (!terminated(g->name, sizeof(g->name)) || !valid_name(g->name))
        return wh_seterr(err, errlen, "%s.name: must be 1..%d of letters, digits, '_', '-', '.'",
                         path, WH_NAME_MAX - 1);
    if (!terminated(g->url, sizeof(g->url)))
        return wh_seterr(err, errlen, "%s.url: too long", path);
    if (g->nsecrets < 0 || g->nsecrets > WH_MAX_SECRETS)
        return wh_seterr(err, errlen, "%s.secrets: at most %d", path, WH_MAX_SECRETS);
    wh_target t;
    memset(&t, 0, sizeof(t));
    wh_strlcpy(t.name, g->name, sizeof(t.name));
    wh_strlcpy(t.url, g->url, sizeof(t.url));
    if (wh_target_check(&t, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "%s.%s", path, sub);
    for (int k = 0; k < g->nsecrets; k++) {
        if (!terminated(g->secrets[k], sizeof(g->secrets[k])) ||
            wh_strlcpy(t.secret, g->secrets[k], sizeof(t.secret)) != WH_OK)
            return wh_seterr(err, errlen, "%s.secrets[%d]: too long", path, k);
        if (t.secret[0] == '\0')
            return wh_seterr(err, errlen, "%s.secrets[%d]: empty", path, k);
        if (wh_target_check(&t, sub, sizeof(sub)) != WH_OK) {
            /* "secret: ..." from the shared check -> "secrets[k]: ..." */
            const char *msg = strncmp(sub, "secret: ", 8) == 0 ? sub + 8 : sub;
            return wh_seterr(err, errlen, "%s.secrets[%d]: %s", path, k, msg);
        }
        for (int j = 0; j < k; j++)
            if (strcmp(g->secrets[j], g->secrets[k]) == 0)
                return wh_seterr(err, errlen, "%s.secrets[%d]: same as secrets[%d]", path, k, j);
    }
    for (size_t i = 0; i < WH_ARRAY_LEN(dlv_fields); i++) {
        const dlv_field *f = &dlv_fields[i];
        int64_t v = dlv_get(g, f);
        const wh_config_entry *e = wh_config_find(f->setting);
        if (v != 0 && e != NULL && (v < e->min || v > e->max))
            return wh_seterr(err, errlen,
                             "%s.%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64
                             "] (0 = inherit %s)",
                             path, f->name, v, e->min, e->max, f->setting);
    }
    if (g->retry_base_ms != 0 && g->retry_max_ms != 0 && g->retry_max_ms < g->retry_base_ms)
        return wh_seterr(err, errlen, "%s.retry_max_ms: %d is below retry_base_ms %d", path,
                         g->retry_max_ms, g->retry_base_ms);
    if (delivery_check(&g->dl, 0, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "%s.%s", path, sub);
    /* the filter the dispatcher will compile, unless the write leaves the
     * target as stored: one stored by an older walhook with a filter that
     * does not compile does not block the writes that do not touch it (the
     * dispatcher refuses it, nothing is delivered to it); a write that
     * changes it, or adds it, answers for its filter */
    if (filters && !target_unchanged(g, pt) &&
        wh_delivery_check_filter(&g->dl, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "%s.%s", path, sub);
    return WH_OK;
}

static int validate_tenant(const wh_state_tenant *t, const char *path, int filters,
                           const wh_state *prev, char *err, size_t errlen)
{
    char sub[WH_ERRLEN], tp[WH_PATHLEN];
    if (!terminated(t->name, sizeof(t->name)) || !valid_name(t->name))
        return wh_seterr(err, errlen, "%s.name: must be 1..%d of letters, digits, '_', '-', '.'",
                         path, WH_NAME_MAX - 1);
    if (!terminated(t->dsn, sizeof(t->dsn)) || !terminated(t->slot, sizeof(t->slot)) ||
        !terminated(t->publication, sizeof(t->publication)) ||
        !terminated(t->tables, sizeof(t->tables)) ||
        !terminated(t->backfills, sizeof(t->backfills)))
        return wh_seterr(err, errlen, "%s.source: a field is too long", path);
    for (const unsigned char *p = (const unsigned char *)t->backfills; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return wh_seterr(err, errlen, "%s.source.backfills: contains a control character",
                             path);
    if (t->dsn[0] != '\0' && wh_dsn_check(t->dsn, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "%s.source.dsn: invalid connection string: %s", path, sub);
    if (t->slot[0] == '\0')
        return wh_seterr(err, errlen, "%s.source.slot: must not be empty", path);
    for (const char *p = t->slot; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return wh_seterr(err, errlen,
                             "%s.source.slot: may contain only lower case letters, digits and '_'",
                             path);
    if (!valid_name(t->publication))
        return wh_seterr(err, errlen, "%s.source.publication: '%s' is not a valid name", path,
                         t->publication);
    for (const unsigned char *p = (const unsigned char *)t->tables; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return wh_seterr(err, errlen, "%s.source.tables: contains a control character", path);
    if (t->ntargets < 0 || t->ntargets > WH_MAX_TARGETS)
        return wh_seterr(err, errlen, "%s.targets: more than %d targets", path, WH_MAX_TARGETS);
    const wh_state_tenant *pt = wh_state_tenant_find(prev, t->name);
    for (int j = 0; j < t->ntargets; j++) {
        pathf(tp, sizeof(tp), "%s.targets[%d]", path, j);
        if (validate_target(&t->targets[j], tp, filters, pt, err, errlen) != WH_OK)
            return WH_ERR;
        for (int k = 0; k < j; k++)
            if (strcmp(t->targets[k].name, t->targets[j].name) == 0)
                return wh_seterr(err, errlen, "%s.name: duplicate target name '%s'", tp,
                                 t->targets[j].name);
    }
    return WH_OK;
}

/* 1 when tenants a and b (of one document) take the same replication slot
 * on the same PostgreSQL server: a slot is per server (cluster), whatever
 * the database, and one slot streams to one tenant */
static int slot_shared(const wh_state_tenant *a, const wh_state_tenant *b)
{
    return strcmp(a->slot, b->slot) == 0 && wh_dsn_same_server(a->dsn, b->dsn);
}

/* 1 when t is in prev with the same slot and connection string */
static int source_unchanged(const wh_state_tenant *t, const wh_state *prev)
{
    const wh_state_tenant *p = wh_state_tenant_find(prev, t->name);
    return p != NULL && strcmp(p->slot, t->slot) == 0 && strcmp(p->dsn, t->dsn) == 0;
}

int wh_state_check_slots(const wh_state *s, const wh_state *prev, char *err, size_t errlen)
{
    for (int j = 0; j < s->ntenants; j++) {
        const wh_state_tenant *b = &s->tenants[j];
        for (int i = 0; i < j; i++) {
            const wh_state_tenant *a = &s->tenants[i];
            if (!slot_shared(a, b))
                continue;
            /* a pair prev already has (stored by an older walhook) does
             * not block the writes that leave it be */
            const wh_state_tenant *pa = wh_state_tenant_find(prev, a->name);
            const wh_state_tenant *pb = wh_state_tenant_find(prev, b->name);
            if (pa != NULL && pb != NULL && slot_shared(pa, pb))
                continue;
            int at = source_unchanged(b, prev) ? i : j;
            char srv[300];
            wh_dsn_server(b->dsn, srv, sizeof(srv));
            return wh_seterr(err, errlen,
                             "tenants[%d].source.slot: tenants '%s' and '%s' would share "
                             "replication slot '%s' on server %s (a slot belongs to the whole "
                             "PostgreSQL server, whatever the database): give each its own slot",
                             at, a->name, b->name, b->slot, srv);
        }
    }
    return WH_OK;
}

/* Rules for what a write adds (a tenant, a name, a slot), not applied to
 * what prev (the document it replaces; NULL: none) already has, so a
 * document stored by an older walhook still takes the writes that leave
 * that part be: a new tenant's name, and the name of a target new to its
 * tenant, does not start with '.' or '-' (a path segment "." or "..", or
 * an option to the CLI), and no new pair of tenants shares a replication
 * slot. */
static int validate_new(const wh_state *s, const wh_state *prev, char *err, size_t errlen)
{
    for (int i = 0; i < s->ntenants; i++) {
        const wh_state_tenant *t = &s->tenants[i];
        const char *n = t->name;
        const wh_state_tenant *pt = wh_state_tenant_find(prev, n);
        if ((n[0] == '.' || n[0] == '-') && pt == NULL)
            return wh_seterr(err, errlen,
                             "tenants[%d].name: '%s': a new tenant's name must not start with "
                             "'.' or '-' (a path segment, a command-line option)",
                             i, n);
        /* the same for a target new to its tenant ("..": the tenant's path) */
        for (int j = 0; j < t->ntargets; j++) {
            const char *g = t->targets[j].name;
            if ((g[0] == '.' || g[0] == '-') && (pt == NULL || wh_state_target_find(pt, g) == NULL))
                return wh_seterr(err, errlen,
                                 "tenants[%d].targets[%d].name: '%s': a new target's name must "
                                 "not start with '.' or '-' (a path segment, a command-line "
                                 "option)",
                                 i, j, g);
        }
    }
    return wh_state_check_slots(s, prev, err, errlen);
}

/* filters: compile the targets' filters (but those prev has as they are);
 * news: apply validate_new against prev too */
static int state_validate(const wh_state *s, int filters, int news, const wh_state *prev, char *err,
                          size_t errlen)
{
    if (validate_settings(&s->settings, err, errlen) != WH_OK)
        return WH_ERR;
    if (s->ntenants < 0 || s->ntenants > WH_MAX_TENANTS)
        return wh_seterr(err, errlen, "tenants: more than %d tenants", WH_MAX_TENANTS);
    char tp[WH_PATHLEN];
    for (int i = 0; i < s->ntenants; i++) {
        pathf(tp, sizeof(tp), "tenants[%d]", i);
        if (validate_tenant(&s->tenants[i], tp, filters, prev, err, errlen) != WH_OK)
            return WH_ERR;
        for (int k = 0; k < i; k++)
            if (strcmp(s->tenants[k].name, s->tenants[i].name) == 0)
                return wh_seterr(err, errlen, "%s.name: duplicate tenant name '%s'", tp,
                                 s->tenants[i].name);
    }
    return news ? validate_new(s, prev, err, errlen) : WH_OK;
}

int wh_state_validate(const wh_state *s, char *err, size_t errlen)
{
    return state_validate(s, 1, 1, NULL, err, errlen);
}

int wh_state_validate_write(const wh_state *s, const wh_state *cur, char *err, size_t errlen)
{
    return state_validate(s, 1, 1, cur, err, errlen);
}

/* ---- parse (JSON) ---- */

static int j_string(json_t *v, const char *path, char *dst, size_t size, char *err, size_t errlen)
{
    if (!json_is_string(v))
        return wh_seterr(err, errlen, "%s: expected a string", path);
    size_t n = json_string_length(v);
    if (n >= size)
        return wh_seterr(err, errlen, "%s: too long (max %zu bytes)", path, size - 1);
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return WH_OK;
}

static int j_bool(json_t *v, const char *path, int *dst, char *err, size_t errlen)
{
    if (!json_is_boolean(v))
        return wh_seterr(err, errlen, "%s: expected true or false", path);
    *dst = json_is_true(v);
    return WH_OK;
}

static int j_int(json_t *v, const char *path, int64_t *dst, char *err, size_t errlen)
{
    if (!json_is_integer(v))
        return wh_seterr(err, errlen, "%s: expected an integer", path);
    *dst = (int64_t)json_integer_value(v);
    return WH_OK;
}

static int parse_settings(json_t *o, wh_config *c, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return wh_seterr(err, errlen, "settings: expected an object");
    const char *key;
    json_t *v;
    char path[WH_PATHLEN];
    json_object_foreach(o, key, v)
    {
        pathf(path, sizeof(path), "settings.%.100s", key);
        const wh_config_entry *e = wh_config_find(key);
        if (e == NULL)
            return wh_seterr(err, errlen, "%s: unknown setting", path);
        if (!(e->flags & WH_CF_RUNTIME))
            return wh_seterr(err, errlen,
                             "%s: not changeable at runtime (set it in the file and restart)",
                             path);
        char *p = (char *)c + e->offset;
        int64_t iv = 0;
        int bv = 0;
        switch (e->type) {
        case WH_CT_STRING:
            if (j_string(v, path, p, e->size, err, errlen) != WH_OK)
                return WH_ERR;
            break;
        case WH_CT_BOOL:
            if (j_bool(v, path, &bv, err, errlen) != WH_OK)
                return WH_ERR;
            *(int *)p = bv;
            break;
        case WH_CT_INT:
        case WH_CT_INT64:
            if (j_int(v, path, &iv, err, errlen) != WH_OK)
                return WH_ERR;
            if (iv < e->min || iv > e->max)
                return wh_seterr(err, errlen,
                                 "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", path,
                                 iv, e->min, e->max);
            if (e->type == WH_CT_INT64)
                *(int64_t *)p = iv;
            else
                *(int *)p = (int)iv;
            break;
        }
    }
    return WH_OK;
}

static int parse_target(json_t *o, wh_state_target *g, const char *path, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return wh_seterr(err, errlen, "%s: expected an object", path);
    const char *key;
    json_t *v;
    char fp[WH_PATHLEN];
    int has_name = 0, has_url = 0;
    json_object_foreach(o, key, v)
    {
        pathf(fp, sizeof(fp), "%s.%.40s", path, key);
        const dlv_field *f;
        int64_t iv = 0;
        if (strcmp(key, "name") == 0) {
            if (j_string(v, fp, g->name, sizeof(g->name), err, errlen) != WH_OK)
                return WH_ERR;
            has_name = 1;
        } else if (strcmp(key, "url") == 0) {
            if (j_string(v, fp, g->url, sizeof(g->url), err, errlen) != WH_OK)
                return WH_ERR;
            has_url = 1;
        } else if (strcmp(key, "secrets") == 0) {
            if (!json_is_array(v))
                return wh_seterr(err, errlen, "%s: expected a list of strings", fp);
            if (json_array_size(v) > WH_MAX_SECRETS)
                return wh_seterr(err, errlen, "%s: at most %d secrets", fp, WH_MAX_SECRETS);
            g->nsecrets = 0;
            for (size_t k = 0; k < json_array_size(v); k++) {
                char sp[WH_PATHLEN];
                pathf(sp, sizeof(sp), "%s[%zu]", fp, k);
                if (j_string(json_array_get(v, k), sp, g->secrets[k], sizeof(g->secrets[k]), err,
                             errlen) != WH_OK)
                    return WH_ERR;
                g->nsecrets++;
            }
        } else if (strcmp(key, "paused") == 0) {
            if (j_bool(v, fp, &g->paused, err, errlen) != WH_OK)
                return WH_ERR;
        } else if (strcmp(key, "resumes") == 0) {
            if (j_int(v, fp, &g->resumes, err, errlen) != WH_OK)
                return WH_ERR;
            if (g->resumes < 0)
                return wh_seterr(err, errlen, "%s: %" PRId64 " is negative", fp, g->resumes);
        } else if (strcmp(key, "created_version") == 0) {
            if (j_int(v, fp, &g->created_version, err, errlen) != WH_OK)
                return WH_ERR;
            if (g->created_version < 0)
                return wh_seterr(err, errlen, "%s: %" PRId64 " is negative", fp,
                                 g->created_version);
        } else if ((f = dlv_find(key)) != NULL) {
            if (j_int(v, fp, &iv, err, errlen) != WH_OK)
                return WH_ERR;
            const wh_config_entry *e = wh_config_find(f->setting);
            if (iv != 0 && e != NULL && (iv < e->min || iv > e->max))
                return wh_seterr(err, errlen,
                                 "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64
                                 "] (0 = inherit %s)",
                                 fp, iv, e->min, e->max, f->setting);
            dlv_set(g, f, iv);
        } else {
            char sub[WH_ERRLEN];
            int rc = wh_delivery_set(&g->dl, key, v, sub, sizeof(sub));
            if (rc == 1)
                return wh_seterr(err, errlen, "%s: " WH_STATE_UNKNOWN_FIELD, fp);
            if (rc != WH_OK)
                return wh_seterr(err, errlen, "%s.%s", path, sub);
        }
    }
    if (!has_name)
        return wh_seterr(err, errlen, "%s.name: missing", path);
    if (!has_url)
        return wh_seterr(err, errlen, "%s.url: missing", path);
    return WH_OK;
}

static int parse_source(json_t *o, wh_state_tenant *t, const char *path, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return wh_seterr(err, errlen, "%s: expected an object", path);
    const char *key;
    json_t *v;
    char fp[WH_PATHLEN];
    json_object_foreach(o, key, v)
    {
        pathf(fp, sizeof(fp), "%s.%.40s", path, key);
        int rc;
        if (strcmp(key, "dsn") == 0)
            rc = j_string(v, fp, t->dsn, sizeof(t->dsn), err, errlen);
        else if (strcmp(key, "slot") == 0)
            rc = j_string(v, fp, t->slot, sizeof(t->slot), err, errlen);
        else if (strcmp(key, "publication") == 0)
            rc = j_string(v, fp, t->publication, sizeof(t->publication), err, errlen);
        else if (strcmp(key, "tables") == 0)
            rc = j_string(v, fp, t->tables, sizeof(t->tables), err, errlen);
        else if (strcmp(key, "create_slot") == 0)
            rc = j_bool(v, fp, &t->create_slot, err, errlen);
        else if (strcmp(key, "backfills") == 0)
            rc = j_string(v, fp, t->backfills, sizeof(t->backfills), err, errlen);
        else if ((rc = wh_slotcfg_set_json(&t->slotcfg, key, v, fp, err, errlen)) == 1)
            rc = wh_seterr(err, errlen, "%s: " WH_STATE_UNKNOWN_FIELD, fp);
        if (rc != WH_OK)
            return WH_ERR;
    }
    return WH_OK;
}

static int parse_tenant(json_t *o, wh_state_tenant *t, const char *path, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return wh_seterr(err, errlen, "%s: expected an object", path);
    const char *key;
    json_t *v;
    char fp[WH_PATHLEN];
    int has_name = 0;
    json_object_foreach(o, key, v)
    {
        pathf(fp, sizeof(fp), "%s.%.40s", path, key);
        if (strcmp(key, "name") == 0) {
            if (j_string(v, fp, t->name, sizeof(t->name), err, errlen) != WH_OK)
                return WH_ERR;
            has_name = 1;
        } else if (strcmp(key, "source") == 0) {
            if (parse_source(v, t, fp, err, errlen) != WH_OK)
                return WH_ERR;
        } else if (strcmp(key, "targets") == 0) {
            if (!json_is_array(v))
                return wh_seterr(err, errlen, "%s: expected a list", fp);
            if (json_array_size(v) > WH_MAX_TARGETS)
                return wh_seterr(err, errlen, "%s: more than %d targets", fp, WH_MAX_TARGETS);
            for (size_t j = 0; j < json_array_size(v); j++) {
                char tp[WH_PATHLEN];
                pathf(tp, sizeof(tp), "%s[%zu]", fp, j);
                wh_state_target *g = wh_state_target_add(t);
                if (g == NULL)
                    return wh_seterr(err, errlen, "out of memory");
                if (parse_target(json_array_get(v, j), g, tp, err, errlen) != WH_OK)
                    return WH_ERR;
            }
        } else {
            return wh_seterr(err, errlen, "%s: " WH_STATE_UNKNOWN_FIELD, fp);
        }
    }
    if (!has_name)
        return wh_seterr(err, errlen, "%s.name: missing", path);
    return WH_OK;
}

int wh_state_parse(wh_state **out, const char *json, size_t len, const wh_config *base, char *err,
                   size_t errlen)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return wh_seterr(err, errlen, "document: invalid JSON at line %d column %d: %s", je.line,
                         je.column, je.text);
    wh_state *s = state_new();
    if (s == NULL) {
        json_decref(root);
        return wh_seterr(err, errlen, "out of memory");
    }
    if (base != NULL)
        s->settings = *base;
    else
        wh_config_defaults(&s->settings);
    if (!json_is_object(root)) {
        wh_seterr(err, errlen, "document: expected an object");
        goto error;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "version") == 0) {
            int64_t ver = 0;
            if (j_int(v, "version", &ver, err, errlen) != WH_OK)
                goto error;
            if (ver < 0) {
                wh_seterr(err, errlen, "version: must be >= 0");
                goto error;
            }
            s->version = (uint64_t)ver;
        } else if (strcmp(key, "settings") == 0) {
            if (parse_settings(v, &s->settings, err, errlen) != WH_OK)
                goto error;
        } else if (strcmp(key, "tenants") == 0) {
            if (!json_is_array(v)) {
                wh_seterr(err, errlen, "tenants: expected a list");
                goto error;
            }
            if (json_array_size(v) > WH_MAX_TENANTS) {
                wh_seterr(err, errlen, "tenants: more than %d tenants", WH_MAX_TENANTS);
                goto error;
            }
            for (size_t i = 0; i < json_array_size(v); i++) {
                char tp[WH_PATHLEN];
                pathf(tp, sizeof(tp), "tenants[%zu]", i);
                wh_state_tenant *t = wh_state_tenant_add(s);
                if (t == NULL) {
                    wh_seterr(err, errlen, "out of memory");
                    goto error;
                }
                if (parse_tenant(json_array_get(v, i), t, tp, err, errlen) != WH_OK)
                    goto error;
            }
        } else {
            wh_seterr(err, errlen, "%.100s: " WH_STATE_UNKNOWN_FIELD, key);
            goto error;
        }
    }
    json_decref(root);
    /* filters are compiled by wh_state_validate_write (every write), not
     * here: a stored document with a filter that does not compile (written
     * by an older walhook) is still read, and the dispatcher reports that
     * target */
    if (state_validate(s, 0, 0, NULL, err, errlen) != WH_OK) {
        state_free(s);
        return WH_ERR;
    }
    *out = s;
    return WH_OK;
error:
    json_decref(root);
    state_free(s);
    return WH_ERR;
}

/* ---- render ---- */

static int jset(json_t *o, const char *k, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(o, k, v);
}

static json_t *render_target(const wh_state_target *g, int redact)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int rc = jset(o, "name", json_string(g->name));
    if (redact) {
        char url[WH_URL_MAX + 16];
        wh_config_redact_url(g->url, url, sizeof(url));
        rc |= jset(o, "url", json_string(url));
    } else {
        rc |= jset(o, "url", json_string(g->url));
    }
    json_t *sec = json_array();
    for (int k = 0; sec != NULL && k < g->nsecrets; k++)
        rc |= json_array_append_new(sec, json_string(redact ? "***" : g->secrets[k]));
    rc |= jset(o, "secrets", sec);
    rc |= jset(o, "paused", json_boolean(g->paused));
    if (g->resumes != 0)
        rc |= jset(o, "resumes", json_integer((json_int_t)g->resumes));
    if (g->created_version != 0)
        rc |= jset(o, "created_version", json_integer((json_int_t)g->created_version));
    for (size_t i = 0; i < WH_ARRAY_LEN(dlv_fields); i++) {
        int64_t v = dlv_get(g, &dlv_fields[i]);
        if (v != 0)
            rc |= jset(o, dlv_fields[i].name, json_integer(v));
    }
    rc |= dl_render(o, &g->dl);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *render_tenant(const wh_state_tenant *t, int redact)
{
    json_t *o = json_object(), *src = json_object(), *tg = json_array();
    if (o == NULL || src == NULL || tg == NULL) {
        json_decref(o);
        json_decref(src);
        json_decref(tg);
        return NULL;
    }
    int rc = jset(o, "name", json_string(t->name));
    if (redact) {
        char dsn[WH_URL_MAX + 16];
        wh_dsn_redact(t->dsn, dsn, sizeof(dsn));
        rc |= jset(src, "dsn", json_string(dsn));
    } else {
        rc |= jset(src, "dsn", json_string(t->dsn));
    }
    rc |= jset(src, "slot", json_string(t->slot));
    rc |= jset(src, "publication", json_string(t->publication));
    rc |= jset(src, "tables", json_string(t->tables));
    rc |= jset(src, "create_slot", json_boolean(t->create_slot));
    if (t->backfills[0])
        rc |= jset(src, "backfills", json_string(t->backfills));
    rc |= wh_slotcfg_render(&t->slotcfg, src) != WH_OK;
    rc |= jset(o, "source", src);
    for (int j = 0; j < t->ntargets; j++)
        rc |= json_array_append_new(tg, render_target(&t->targets[j], redact));
    rc |= jset(o, "targets", tg);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int wh_state_render(const wh_state *s, wh_buf *out, int flags)
{
    int redact = (flags & WH_STATE_REDACT) != 0;
    json_t *root = json_object(), *set = json_object(), *ten = json_array();
    if (root == NULL || set == NULL || ten == NULL) {
        json_decref(root);
        json_decref(set);
        json_decref(ten);
        return WH_ERR;
    }
    int rc = jset(root, "version", json_integer((json_int_t)s->version));
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        if (!(e->flags & WH_CF_RUNTIME))
            continue;
        const char *p = (const char *)&s->settings + e->offset;
        switch (e->type) {
        case WH_CT_STRING:
            rc |= jset(set, e->path, json_string(p));
            break;
        case WH_CT_BOOL:
            rc |= jset(set, e->path, json_boolean(*(const int *)p));
            break;
        case WH_CT_INT:
            rc |= jset(set, e->path, json_integer(*(const int *)p));
            break;
        case WH_CT_INT64:
            rc |= jset(set, e->path, json_integer(*(const int64_t *)p));
            break;
        }
    }
    rc |= jset(root, "settings", set);
    for (int i = 0; i < s->ntenants; i++)
        rc |= json_array_append_new(ten, render_tenant(&s->tenants[i], redact));
    rc |= jset(root, "tenants", ten);
    char *txt = rc == 0 ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (txt == NULL)
        return WH_ERR;
    rc = wh_buf_append(out, txt, strlen(txt));
    free(txt);
    return rc;
}

/* ---- from the configuration file ---- */

static int cf_string(config_setting_t *f, const char *path, char *dst, size_t size, char *err,
                     size_t errlen)
{
    if (config_setting_type(f) != CONFIG_TYPE_STRING)
        return wh_seterr(err, errlen, "%s (line %d): expected a string", path,
                         config_setting_source_line(f));
    if (wh_strlcpy(dst, config_setting_get_string(f), size) != WH_OK)
        return wh_seterr(err, errlen, "%s (line %d): too long (max %zu bytes)", path,
                         config_setting_source_line(f), size - 1);
    return WH_OK;
}

static int cf_bool(config_setting_t *f, const char *path, int *dst, char *err, size_t errlen)
{
    if (config_setting_type(f) != CONFIG_TYPE_BOOL)
        return wh_seterr(err, errlen, "%s (line %d): expected true or false", path,
                         config_setting_source_line(f));
    *dst = config_setting_get_bool(f);
    return WH_OK;
}

static int cf_target(config_setting_t *g, wh_state_target *t, const char *path, char *err,
                     size_t errlen)
{
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return wh_seterr(err, errlen, "%s (line %d): expected a group { name = ...; url = ...; }",
                         path, config_setting_source_line(g));
    int n = config_setting_length(g);
    for (int m = 0; m < n; m++) {
        config_setting_t *f = config_setting_get_elem(g, (unsigned)m);
        const char *fn = config_setting_name(f);
        char fp[WH_PATHLEN];
        pathf(fp, sizeof(fp), "%s.%.40s", path, fn ? fn : "?");
        const dlv_field *d;
        int rc;
        if (fn == NULL) {
            rc = wh_seterr(err, errlen, "%s: unnamed setting", path);
        } else if (strcmp(fn, "name") == 0) {
            rc = cf_string(f, fp, t->name, sizeof(t->name), err, errlen);
        } else if (strcmp(fn, "url") == 0) {
            rc = cf_string(f, fp, t->url, sizeof(t->url), err, errlen);
        } else if (strcmp(fn, "secret") == 0) {
            rc = cf_string(f, fp, t->secrets[0], sizeof(t->secrets[0]), err, errlen);
            t->nsecrets = t->secrets[0][0] ? 1 : 0;
        } else if (strcmp(fn, "secrets") == 0) {
            int ty = config_setting_type(f);
            int ns = config_setting_length(f);
            rc = WH_OK;
            if ((ty != CONFIG_TYPE_LIST && ty != CONFIG_TYPE_ARRAY) || ns > WH_MAX_SECRETS)
                rc = wh_seterr(err, errlen, "%s (line %d): expected a list of at most %d strings",
                               fp, config_setting_source_line(f), WH_MAX_SECRETS);
            for (int k = 0; rc == WH_OK && k < ns; k++) {
                char sp[WH_PATHLEN];
                pathf(sp, sizeof(sp), "%s[%d]", fp, k);
                rc = cf_string(config_setting_get_elem(f, (unsigned)k), sp, t->secrets[k],
                               sizeof(t->secrets[k]), err, errlen);
                t->nsecrets = k + 1;
            }
        } else if (strcmp(fn, "paused") == 0) {
            rc = cf_bool(f, fp, &t->paused, err, errlen);
        } else if ((d = dlv_find(fn)) != NULL) {
            int ty = config_setting_type(f);
            if (ty != CONFIG_TYPE_INT && ty != CONFIG_TYPE_INT64)
                rc = wh_seterr(err, errlen, "%s (line %d): expected an integer", fp,
                               config_setting_source_line(f));
            else {
                int64_t v = config_setting_get_int64(f);
                const wh_config_entry *e = wh_config_find(d->setting);
                rc = WH_OK;
                if (v != 0 && e != NULL && (v < e->min || v > e->max))
                    rc = wh_seterr(err, errlen,
                                   "%s (line %d): %" PRId64 " is out of range [%" PRId64
                                   ", %" PRId64 "]",
                                   fp, config_setting_source_line(f), v, e->min, e->max);
                else
                    dlv_set(t, d, v);
            }
        } else if (dl_find(fn) != NULL) {
            int ty = config_setting_type(f);
            json_t *jv = ty == CONFIG_TYPE_INT || ty == CONFIG_TYPE_INT64
                             ? json_integer(config_setting_get_int64(f))
                         : ty == CONFIG_TYPE_STRING ? json_string(config_setting_get_string(f))
                                                    : json_null();
            char sub[WH_ERRLEN];
            rc = wh_delivery_set(&t->dl, fn, jv, sub, sizeof(sub));
            json_decref(jv);
            if (rc != WH_OK)
                rc = wh_seterr(err, errlen, "%s (line %d): %s", path, config_setting_source_line(f),
                               sub);
        } else {
            rc = wh_seterr(err, errlen, "unknown setting '%s' (line %d)", fp,
                           config_setting_source_line(f));
        }
        if (rc != WH_OK)
            return WH_ERR;
    }
    if (t->name[0] == '\0')
        return wh_seterr(err, errlen, "%s.name: missing", path);
    if (t->url[0] == '\0')
        return wh_seterr(err, errlen, "%s.url: missing", path);
    return WH_OK;
}

/* The targets of the list f (at path fp) appended to t; with default_names
 * a target without a name is t<k>, as wh_config names the top-level ones. */
static int cf_targets(config_setting_t *f, wh_state_tenant *t, const char *fp, int default_names,
                      char *err, size_t errlen)
{
    if (config_setting_type(f) != CONFIG_TYPE_LIST)
        return wh_seterr(err, errlen, "%s (line %d): expected a list ( {...}, ... )", fp,
                         config_setting_source_line(f));
    int nt = config_setting_length(f);
    if (nt > WH_MAX_TARGETS)
        return wh_seterr(err, errlen, "%s: more than %d targets", fp, WH_MAX_TARGETS);
    for (int k = 0; k < nt; k++) {
        char tp[WH_PATHLEN];
        pathf(tp, sizeof(tp), "%s[%d]", fp, k);
        wh_state_target *tg = wh_state_target_add(t);
        if (tg == NULL)
            return wh_seterr(err, errlen, "out of memory");
        if (default_names)
            snprintf(tg->name, sizeof(tg->name), "t%d", k);
        if (cf_target(config_setting_get_elem(f, (unsigned)k), tg, tp, err, errlen) != WH_OK)
            return WH_ERR;
    }
    return WH_OK;
}

static int cf_tenant(config_setting_t *g, wh_state_tenant *t, const char *path, char *err,
                     size_t errlen)
{
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return wh_seterr(err, errlen,
                         "%s (line %d): expected a group { name = ...; source = ...; }", path,
                         config_setting_source_line(g));
    int n = config_setting_length(g);
    for (int m = 0; m < n; m++) {
        config_setting_t *f = config_setting_get_elem(g, (unsigned)m);
        const char *fn = config_setting_name(f);
        char fp[WH_PATHLEN];
        pathf(fp, sizeof(fp), "%s.%.40s", path, fn ? fn : "?");
        int rc = WH_OK;
        if (fn == NULL) {
            rc = wh_seterr(err, errlen, "%s: unnamed setting", path);
        } else if (strcmp(fn, "name") == 0) {
            rc = cf_string(f, fp, t->name, sizeof(t->name), err, errlen);
        } else if (strcmp(fn, "source") == 0) {
            if (config_setting_type(f) != CONFIG_TYPE_GROUP)
                return wh_seterr(err, errlen, "%s (line %d): expected a group", fp,
                                 config_setting_source_line(f));
            int ns = config_setting_length(f);
            for (int k = 0; rc == WH_OK && k < ns; k++) {
                config_setting_t *sf = config_setting_get_elem(f, (unsigned)k);
                const char *sn = config_setting_name(sf);
                char sp[WH_PATHLEN];
                pathf(sp, sizeof(sp), "%s.%.40s", fp, sn ? sn : "?");
                if (sn == NULL)
                    rc = wh_seterr(err, errlen, "%s: unnamed setting", fp);
                else if (strcmp(sn, "dsn") == 0)
                    rc = cf_string(sf, sp, t->dsn, sizeof(t->dsn), err, errlen);
                else if (strcmp(sn, "slot") == 0)
                    rc = cf_string(sf, sp, t->slot, sizeof(t->slot), err, errlen);
                else if (strcmp(sn, "publication") == 0)
                    rc = cf_string(sf, sp, t->publication, sizeof(t->publication), err, errlen);
                else if (strcmp(sn, "tables") == 0)
                    rc = cf_string(sf, sp, t->tables, sizeof(t->tables), err, errlen);
                else if (strcmp(sn, "create_slot") == 0)
                    rc = cf_bool(sf, sp, &t->create_slot, err, errlen);
                else if ((rc = wh_slotcfg_set_cf(&t->slotcfg, sn, sf, sp, err, errlen)) == 1)
                    rc = wh_seterr(err, errlen, "unknown setting '%s' (line %d)", sp,
                                   config_setting_source_line(sf));
            }
        } else if (strcmp(fn, "targets") == 0) {
            rc = cf_targets(f, t, fp, 0, err, errlen);
        } else {
            rc = wh_seterr(err, errlen, "unknown setting '%s' (line %d)", fp,
                           config_setting_source_line(f));
        }
        if (rc != WH_OK)
            return WH_ERR;
    }
    if (t->name[0] == '\0')
        return wh_seterr(err, errlen, "%s.name: missing", path);
    return WH_OK;
}

/* Reads the file's `tenants` list into s (nothing when there is none). */
static int load_tenants_list(wh_state *s, config_t *cf, const char *path, int *nlist, char *err,
                             size_t errlen)
{
    *nlist = 0;
    config_setting_t *list = config_setting_get_member(config_root_setting(cf), "tenants");
    if (list == NULL)
        return WH_OK;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return wh_seterr(err, errlen,
                         "config file %s: setting 'tenants' (line %d): expected a list", path,
                         config_setting_source_line(list));
    int n = config_setting_length(list);
    if (n > WH_MAX_TENANTS)
        return wh_seterr(err, errlen, "config file %s: tenants: more than %d tenants", path,
                         WH_MAX_TENANTS);
    for (int i = 0; i < n; i++) {
        char tp[WH_PATHLEN], sub[WH_ERRLEN];
        pathf(tp, sizeof(tp), "tenants[%d]", i);
        wh_state_tenant *t = wh_state_tenant_add(s);
        if (t == NULL)
            return wh_seterr(err, errlen, "out of memory");
        if (cf_tenant(config_setting_get_elem(list, (unsigned)i), t, tp, sub, sizeof(sub)) != WH_OK)
            return wh_seterr(err, errlen, "config file %s: %s", path, sub);
    }
    *nlist = n;
    return WH_OK;
}

int wh_state_from_config(wh_state **out, const wh_config *cfg, const char *path, char *err,
                         size_t errlen)
{
    *out = NULL;
    wh_state *s = state_new();
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    s->settings = *cfg;
    int nlist = 0;
    /* the file once more, for what wh_config leaves to the state: the
     * tenants list and the top-level targets' delivery settings */
    config_t cf;
    config_init(&cf);
    int cf_live = 1;
    wh_state_tenant top;
    memset(&top, 0, sizeof(top));
    /* list tenants are read into a scratch state, then appended after the
     * top-level one so that it stays tenants[0] */
    wh_state *list = NULL;
    if (path != NULL) {
        if (config_read_file(&cf, path) != CONFIG_TRUE) {
            wh_seterr(err, errlen, "config file %s line %d: %s", path, config_error_line(&cf),
                      config_error_text(&cf));
            goto error;
        }
        list = state_new();
        if (list == NULL) {
            wh_seterr(err, errlen, "out of memory");
            goto error;
        }
        if (load_tenants_list(list, &cf, path, &nlist, err, errlen) != WH_OK)
            goto error;
    }
    /* The top-level tenant/source/targets form a tenant unless the file
     * declares its tenants only in the list (no source.dsn, no targets). */
    if (nlist == 0 || cfg->source_dsn[0] != '\0' || cfg->ntargets > 0) {
        wh_state_tenant *t = wh_state_tenant_add(s);
        if (t == NULL) {
            wh_seterr(err, errlen, "out of memory");
            goto error;
        }
        wh_strlcpy(t->name, cfg->tenant, sizeof(t->name));
        wh_strlcpy(t->dsn, cfg->source_dsn, sizeof(t->dsn));
        wh_strlcpy(t->slot, cfg->slot, sizeof(t->slot));
        wh_strlcpy(t->publication, cfg->publication, sizeof(t->publication));
        wh_strlcpy(t->tables, cfg->tables, sizeof(t->tables));
        t->create_slot = cfg->create_slot;
        /* the file's targets with all their settings; a target that the
         * environment (WALHOOK_TARGETS) replaced keeps only name and url */
        config_setting_t *tl =
            path != NULL ? config_setting_get_member(config_root_setting(&cf), "targets") : NULL;
        char terr[WH_ERRLEN];
        if (tl != NULL && cfg->ntargets > 0 &&
            cf_targets(tl, &top, "targets", 1, terr, sizeof(terr)) != WH_OK) {
            wh_seterr(err, errlen, "config file %s: %s", path, terr);
            goto error;
        }
        for (int i = 0; i < cfg->ntargets; i++) {
            wh_state_target *g = wh_state_target_add(t);
            if (g == NULL) {
                wh_seterr(err, errlen, "out of memory");
                goto error;
            }
            for (int j = 0; j < top.ntargets; j++)
                if (strcmp(top.targets[j].name, cfg->targets[i].name) == 0 &&
                    strcmp(top.targets[j].url, cfg->targets[i].url) == 0) {
                    *g = top.targets[j];
                    break;
                }
            wh_strlcpy(g->name, cfg->targets[i].name, sizeof(g->name));
            wh_strlcpy(g->url, cfg->targets[i].url, sizeof(g->url));
            if (cfg->targets[i].secret[0] != '\0') {
                wh_strlcpy(g->secrets[0], cfg->targets[i].secret, sizeof(g->secrets[0]));
                g->nsecrets = 1;
            }
        }
    }
    for (int i = 0; list != NULL && i < list->ntenants; i++) {
        wh_state_tenant *t = wh_state_tenant_add(s);
        if (t == NULL) {
            wh_seterr(err, errlen, "out of memory");
            goto error;
        }
        *t = list->tenants[i];
        list->tenants[i].targets = NULL; /* moved */
        list->tenants[i].ntargets = 0;
    }
    state_free(list);
    list = NULL;
    free(top.targets);
    top.targets = NULL;
    config_destroy(&cf);
    cf_live = 0;
    char sub[WH_ERRLEN];
    /* not the rules for what a write adds (validate_new): a file that
     * already runs may have what they refuse; the store applies them to
     * the state it seeds from the file and to each write against the
     * state it replaces */
    if (state_validate(s, 1, 0, NULL, sub, sizeof(sub)) != WH_OK) {
        if (path != NULL)
            wh_seterr(err, errlen, "config file %s: %s", path, sub);
        else
            wh_seterr(err, errlen, "%s", sub);
        goto error;
    }
    *out = s;
    return WH_OK;
error:
    state_free(list);
    free(top.targets);
    if (cf_live)
        config_destroy(&cf);
    state_free(s);
    return WH_ERR;
}

/* ---- effective configuration ---- */

void wh_state_ingestor_control(char *out, size_t len, const wh_config *cfg, const char *tenant)
{
    if (tenant == NULL || strcmp(tenant, cfg->tenant) == 0)
        wh_strlcpy(out, cfg->ingestor_control, len);
    else
        pathf(out, len, "ipc://%s/ingestor-%s.sock", cfg->data_dir, tenant);
}

void wh_state_effective(wh_config *out, const wh_config *base, const wh_state *s,
                        const char *tenant)
{
    if (out != base)
        memcpy(out, base, sizeof(*out));
    if (s == NULL)
        return;
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        if (e->flags & WH_CF_RUNTIME)
            memcpy((char *)out + e->offset, (const char *)&s->settings + e->offset, e->size);
    }
    const wh_state_tenant *t = wh_state_tenant_find(s, tenant);
    if (t == NULL)
        return;
    char ctl[WH_URL_MAX];
    wh_state_ingestor_control(ctl, sizeof(ctl), base, t->name);
    wh_strlcpy(out->ingestor_control, ctl, sizeof(out->ingestor_control));
    wh_strlcpy(out->tenant, t->name, sizeof(out->tenant));
    wh_strlcpy(out->source_dsn, t->dsn, sizeof(out->source_dsn));
    wh_strlcpy(out->slot, t->slot, sizeof(out->slot));
    wh_strlcpy(out->publication, t->publication, sizeof(out->publication));
    wh_strlcpy(out->tables, t->tables, sizeof(out->tables));
    out->create_slot = t->create_slot;
    wh_slotcfg_apply(&t->slotcfg, out);
    out->ntargets = 0;
    for (int j = 0; j < t->ntargets && j < WH_MAX_TARGETS; j++) {
        wh_target *d = &out->targets[out->ntargets++];
        memset(d, 0, sizeof(*d));
        wh_strlcpy(d->name, t->targets[j].name, sizeof(d->name));
        wh_strlcpy(d->url, t->targets[j].url, sizeof(d->url));
        if (t->targets[j].nsecrets > 0)
            wh_strlcpy(d->secret, t->targets[j].secrets[0], sizeof(d->secret));
    }
}

/* ---- store access ---- */

int wh_state_fetch(struct wh_client *c, uint64_t known_version, const wh_config *base,
                   wh_state **out, char *err, size_t errlen)
{
    *out = NULL;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__GetState g = WALHOOK__GET_STATE__INIT;
    g.known_version = known_version;
    req.body_case = WALHOOK__REQUEST__BODY_GET_STATE;
    req.get_state = &g;
    Walhook__Reply *rep = NULL;
    char sub[WH_ERRLEN];
    if (wh_client_call(c, &req, &rep, sub, sizeof(sub)) != WH_OK)
        return wh_seterr(err, errlen, "GetState: %s", sub);
    int rc = WH_OK;
    if (rep->body_case != WALHOOK__REPLY__BODY_STATE || rep->state == NULL) {
        rc = wh_seterr(err, errlen, "GetState: reply without a state");
    } else if (rep->state->version == 0) {
        rc = wh_seterr(err, errlen, "GetState: the store holds no state");
    } else if (rep->state->version != known_version || rep->state->doc.len > 0) {
        wh_state *s = NULL;
        if (wh_state_parse(&s, (const char *)rep->state->doc.data, rep->state->doc.len, base, sub,
                           sizeof(sub)) != WH_OK) {
            rc = wh_seterr(err, errlen, "GetState: version %" PRIu64 ": %s", rep->state->version,
                           sub);
        } else {
            s->version = rep->state->version;
            *out = s;
        }
    }
    walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

int wh_state_store(struct wh_client *c, const wh_state *s, uint64_t expected_version,
                   const char *origin, uint64_t *new_version, int *status, char *err, size_t errlen)
{
    *status = 0;
    wh_buf doc;
    wh_buf_init(&doc, 0);
    if (wh_state_render(s, &doc, 0) != WH_OK) {
        wh_buf_free(&doc);
        return wh_seterr(err, errlen, "PutState: cannot render the state");
    }
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__PutState p = WALHOOK__PUT_STATE__INIT;
    p.expected_version = expected_version;
    p.doc.data = (uint8_t *)doc.data;
    p.doc.len = doc.len;
    p.origin = (char *)(origin ? origin : "api");
    req.body_case = WALHOOK__REQUEST__BODY_PUT_STATE;
    req.put_state = &p;
    Walhook__Reply *rep = NULL;
    char sub[WH_ERRLEN];
    int rc = wh_client_call_status(c, &req, &rep, status, sub, sizeof(sub));
    wh_buf_free(&doc);
    if (rc != WH_OK)
        return wh_seterr(err, errlen, "PutState: %s", sub);
    if (rep->body_case != WALHOOK__REPLY__BODY_STATE || rep->state == NULL)
        rc = wh_seterr(err, errlen, "PutState: reply without a version");
    else if (new_version != NULL)
        *new_version = rep->state->version;
    walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

/* ---- the watcher ---- */

struct wh_state_watch {
    wh_config base;
    wh_config eff; /* effective config of the state applied last */
    char tenant[WH_NAME_MAX];
    int has_tenant;
    int interval_ms;
    wh_state_apply_fn fn;
    void *arg;
    wh_client *client;

    pthread_t thread;
    int started;
    pthread_mutex_t mu; /* stopping, poke, cur */
    pthread_cond_t cv;
    int stopping;
    int poke;
    wh_state *cur;
};

static const char *watch_tenant(const wh_state_watch *w)
{
    return w->has_tenant ? w->tenant : NULL;
}

/* Watcher thread (or start): s is a new state (this takes its reference). */
static void watch_apply(wh_state_watch *w, wh_state *s)
{
    wh_config *eff = malloc(sizeof(*eff));
    if (eff == NULL) {
        wh_error("state version %" PRIu64 ": out of memory, not applied", s->version);
        wh_state_unref(s);
        return;
    }
    wh_state_effective(eff, &w->base, s, watch_tenant(w));
    pthread_mutex_lock(&w->mu);
    wh_state *old = w->cur;
    w->cur = s;
    pthread_mutex_unlock(&w->mu);
    if (w->fn)
        w->fn(w->arg, s, eff);
    wh_config_apply_hooks(&w->eff, eff);
    w->eff = *eff;
    free(eff);
    wh_info("state version %" PRIu64 " applied (%d tenants)", s->version, s->ntenants);
    wh_state_unref(old);
}

static void *watch_main(void *p)
{
    wh_state_watch *w = p;
    int failing = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (!w->stopping && !w->poke) {
            struct timespec ts;
            wh_deadline_in(&ts, CLOCK_MONOTONIC, w->interval_ms);
            while (!w->stopping && !w->poke)
                if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
                    break;
        }
        int stop = w->stopping;
        w->poke = 0;
        uint64_t known = w->cur ? w->cur->version : 0;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;
        wh_state *s = NULL;
        char err[WH_ERRLEN];
        if (wh_state_fetch(w->client, known, &w->base, &s, err, sizeof(err)) != WH_OK) {
            if (!failing)
                wh_warn("state: %s (keeping version %" PRIu64 ")", err, known);
            failing = 1;
            continue;
        }
        if (failing)
            wh_info("state: the store answers again");
        failing = 0;
        if (s != NULL)
            watch_apply(w, s);
    }
    return NULL;
}

int wh_state_watch_start(wh_state_watch **out, const wh_config *base, const char *tenant,
                         int interval_ms, int wait_ms, wh_state_apply_fn fn, void *arg, char *err,
                         size_t errlen)
{
    *out = NULL;
    wh_state_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return wh_seterr(err, errlen, "out of memory");
    w->base = *base;
    w->eff = *base;
    if (tenant != NULL) {
        wh_strlcpy(w->tenant, tenant, sizeof(w->tenant));
        w->has_tenant = 1;
    }
    w->interval_ms = interval_ms > 0 ? interval_ms : 200;
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_init(&w->mu, NULL);
    wh_cond_init_monotonic(&w->cv);
    int timeout = base->ipc_timeout_ms < 2000 ? base->ipc_timeout_ms : 2000;
    char sub[WH_ERRLEN];
    if (wh_client_open(&w->client, base->store_endpoint, timeout, (size_t)base->ipc_max_msg_bytes,
                       sub, sizeof(sub)) != WH_OK) {
        wh_seterr(err, errlen, "state: %s", sub);
        goto error;
    }
    uint64_t deadline = wh_now_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
    wh_state *s = NULL;
    for (;;) {
        if (wh_state_fetch(w->client, 0, base, &s, sub, sizeof(sub)) == WH_OK && s != NULL)
            break;
        if (wh_now_ms() >= deadline || wh_stop_requested) {
            wh_seterr(err, errlen, "state: no state from the store (%s) within %d ms: %s",
                      base->store_endpoint, wait_ms, sub);
            goto error;
        }
        wh_sleep_ms(100);
    }
    watch_apply(w, s);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        wh_seterr(err, errlen, "state: cannot start the watcher thread");
        goto error;
    }
    w->started = 1;
    *out = w;
    return WH_OK;
error:
    wh_state_watch_stop(w);
    return WH_ERR;
}

wh_state *wh_state_watch_current(wh_state_watch *w)
{
    pthread_mutex_lock(&w->mu);
    wh_state *s = w->cur;
    wh_state_ref(s);
    pthread_mutex_unlock(&w->mu);
    return s;
}

int wh_state_watch_reload_file(wh_state_watch *w, const char *path, char *err, size_t errlen)
{
    wh_config *cfg = malloc(sizeof(*cfg));
    wh_state *s = NULL;
    wh_client *c = NULL;
    int rc = WH_ERR, status = 0;
    char sub[WH_ERRLEN];
    if (cfg == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if (wh_config_load(cfg, path, sub, sizeof(sub)) != WH_OK) {
        wh_seterr(err, errlen, "reload refused, running version stays: %s", sub);
        goto out;
    }
    if (wh_state_from_config(&s, cfg, path, sub, sizeof(sub)) != WH_OK) {
        wh_seterr(err, errlen, "reload refused, running version stays: %s", sub);
        goto out;
    }
    const char *diff = wh_config_static_diff(&w->base, cfg);
    if (diff != NULL)
        wh_warn("reload: setting '%s' (and maybe others) changed in the file; it is not "
                "changeable at runtime and takes effect after a restart",
                diff);
    if (wh_client_open(&c, w->base.store_endpoint, w->base.ipc_timeout_ms,
                       (size_t)w->base.ipc_max_msg_bytes, sub, sizeof(sub)) != WH_OK) {
        wh_seterr(err, errlen, "reload: %s", sub);
        goto out;
    }
    uint64_t ver = 0;
    if (wh_state_store(c, s, 0, "file", &ver, &status, sub, sizeof(sub)) != WH_OK) {
        wh_seterr(err, errlen, "reload refused, running version stays: %s", sub);
        goto out;
    }
    wh_info("reload: file %s is state version %" PRIu64, path, ver);
    pthread_mutex_lock(&w->mu);
    w->poke = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    rc = WH_OK;
out:
    wh_client_close(c);
    wh_state_unref(s);
    free(cfg);
    return rc;
}

void wh_state_watch_stop(wh_state_watch *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->client)
        wh_client_interrupt(w->client);
    if (w->started)
        pthread_join(w->thread, NULL);
    if (w->client)
        wh_client_close(w->client);
    wh_state_unref(w->cur);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
