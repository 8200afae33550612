/* wh_snapprog: snapshot progress document and key set (pure). */
#include "wh_snapprog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_util.h"

#define MAGIC "walhook-snapshot 1\n"

static void job_free_last(wh_snapjob *j)
{
    for (int i = 0; i < j->nlast; i++)
        free(j->last[i]);
    j->nlast = 0;
}

void wh_snapprog_clear(wh_snapprog *p)
{
    for (size_t i = 0; i < p->njobs; i++)
        job_free_last(&p->jobs[i]);
    free(p->jobs);
    memset(p, 0, sizeof(*p));
}

wh_snapjob *wh_snapprog_add(wh_snapprog *p, int kind, const char *id, const char *table)
{
    if (strlen(id) >= WH_SNAP_IDMAX || strlen(table) >= WH_SNAP_TABLEMAX)
        return NULL;
    if (wh_grow(&p->jobs, p->njobs + 1, &p->cap, sizeof(*p->jobs), 8) != WH_OK)
        return NULL;
    wh_snapjob *j = &p->jobs[p->njobs++];
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    j->state = WH_SNAP_PENDING;
    wh_strlcpy(j->id, id, sizeof(j->id));
    wh_strlcpy(j->table, table, sizeof(j->table));
    return j;
}

wh_snapjob *wh_snapprog_find(wh_snapprog *p, const char *id, const char *table)
{
    for (size_t i = 0; i < p->njobs; i++)
        if (strcmp(p->jobs[i].id, id) == 0 && strcmp(p->jobs[i].table, table) == 0)
            return &p->jobs[i];
    return NULL;
}

int wh_snapjob_set_last(wh_snapjob *j, const char *const *vals, const size_t *lens, int n)
{
    if (n < 0 || n > WH_SNAP_MAXKEY)
        return WH_ERR;
    char *nv[WH_SNAP_MAXKEY];
    for (int i = 0; i < n; i++) {
        nv[i] = malloc(lens[i] + 1);
        if (nv[i] == NULL) {
            while (i-- > 0)
                free(nv[i]);
            return WH_ERR;
        }
        memcpy(nv[i], vals[i], lens[i]);
        nv[i][lens[i]] = '\0';
    }
    job_free_last(j);
    for (int i = 0; i < n; i++)
        j->last[i] = nv[i];
    j->nlast = n;
    return WH_OK;
}

const char *wh_snap_state_name(int state)
{
    switch (state) {
    case WH_SNAP_PENDING:
        return "pending";
    case WH_SNAP_RUNNING:
        return "running";
    case WH_SNAP_DONE:
        return "done";
    case WH_SNAP_REFUSED:
        return "refused";
    default:
        return "unknown";
    }
}

static int put_hex(wh_buf *b, const char *s, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    if (wh_buf_putc(b, '\t'))
        return WH_ERR;
    if (n == 0)
        return wh_buf_putc(b, '-');
    for (size_t i = 0; i < n; i++) {
        char two[2] = {hx[(unsigned char)s[i] >> 4], hx[(unsigned char)s[i] & 15]};
        if (wh_buf_append(b, two, 2))
            return WH_ERR;
    }
    return WH_OK;
}

int wh_snapprog_encode(const wh_snapprog *p, wh_buf *out)
{
    char tmp[160];
    wh_buf_reset(out);
    int n = snprintf(tmp, sizeof(tmp), MAGIC "plan %d\n", p->plan);
    if (wh_buf_append(out, tmp, (size_t)n))
        return WH_ERR;
    for (size_t i = 0; i < p->njobs; i++) {
        const wh_snapjob *j = &p->jobs[i];
        n = snprintf(tmp, sizeof(tmp), "job\t%d\t%d\t%" PRIu64 "\t%" PRIu64 "\t%" PRId64, j->kind,
                     j->state, j->rows_done, j->rows_est, j->started_us);
        if (wh_buf_append(out, tmp, (size_t)n) || put_hex(out, j->id, strlen(j->id)) ||
            put_hex(out, j->table, strlen(j->table)))
            return WH_ERR;
        n = snprintf(tmp, sizeof(tmp), "\t%d", j->nlast);
        if (wh_buf_append(out, tmp, (size_t)n))
            return WH_ERR;
        for (int k = 0; k < j->nlast; k++)
            if (put_hex(out, j->last[k], strlen(j->last[k])))
                return WH_ERR;
        if (wh_buf_putc(out, '\n'))
            return WH_ERR;
    }
    return WH_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes field f (hex, or "-" for empty) into a malloc'd string. */
static char *unhex(const char *f, size_t n)
{
    if (n == 1 && f[0] == '-')
        n = 0;
    else if (n == 0 || n % 2 != 0)
        return NULL;
    char *o = malloc(n / 2 + 1);
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i += 2) {
        int a = hexval(f[i]), b = hexval(f[i + 1]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
            free(o);
            return NULL;
        }
        o[i / 2] = (char)(a * 16 + b);
    }
    o[n / 2] = '\0';
    return o;
}

static int parse_u64(const char *f, size_t n, uint64_t *v)
{
    if (n == 0 || n > 20)
        return WH_ERR;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i] < '0' || f[i] > '9')
            return WH_ERR;
        uint64_t nx = x * 10 + (uint64_t)(f[i] - '0');
        if (nx / 10 != x)
            return WH_ERR;
        x = nx;
    }
    *v = x;
    return WH_OK;
}

/* One job line (without "job\t" and the newline). */
static int parse_job(wh_snapprog *p, const char *s, size_t n)
{
    const char *f[8 + WH_SNAP_MAXKEY];
    size_t fl[8 + WH_SNAP_MAXKEY];
    int nf = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '\t') {
            if (nf == (int)WH_ARRAY_LEN(f))
                return WH_ERR;
            f[nf] = s + start;
            fl[nf++] = i - start;
            start = i + 1;
        }
    }
    uint64_t kind, state, done, est, started, nlast;
    if (nf < 8 || parse_u64(f[0], fl[0], &kind) || kind > 1 || parse_u64(f[1], fl[1], &state) ||
        state > WH_SNAP_REFUSED || parse_u64(f[2], fl[2], &done) || parse_u64(f[3], fl[3], &est) ||
        parse_u64(f[4], fl[4], &started) || parse_u64(f[7], fl[7], &nlast) ||
        nlast > WH_SNAP_MAXKEY || (uint64_t)nf != 8 + nlast)
        return WH_ERR;
    char *id = unhex(f[5], fl[5]), *table = unhex(f[6], fl[6]);
    wh_snapjob *j = id && table && table[0] ? wh_snapprog_add(p, (int)kind, id, table) : NULL;
    free(id);
    free(table);
    if (j == NULL)
        return WH_ERR;
    j->state = (int)state;
    j->rows_done = done;
    j->rows_est = est;
    j->started_us = (int64_t)started;
    for (uint64_t k = 0; k < nlast; k++) {
        char *v = unhex(f[8 + k], fl[8 + k]);
        if (v == NULL)
            return WH_ERR;
        j->last[j->nlast++] = v;
    }
    return WH_OK;
}

int wh_snapprog_decode(wh_snapprog *p, const char *s, size_t n, char *err, size_t errlen)
{
    wh_snapprog_clear(p);
    size_t ml = strlen(MAGIC);
    if (n < ml || memcmp(s, MAGIC, ml) != 0)
        return wh_seterr(err, errlen, "snapshot progress: not a walhook-snapshot 1 document");
    size_t pos = ml;
    int line = 2, have_plan = 0;
    while (pos < n) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        if (nl == NULL) {
            wh_snapprog_clear(p);
            return wh_seterr(err, errlen, "snapshot progress: line %d has no end", line);
        }
        size_t len = (size_t)(nl - (s + pos));
        const char *l = s + pos;
        int ok;
        if (len == 6 && memcmp(l, "plan ", 5) == 0 && l[5] >= '0' && l[5] <= '2') {
            p->plan = l[5] - '0';
            ok = !have_plan;
            have_plan = 1;
        } else if (len > 4 && memcmp(l, "job\t", 4) == 0) {
            ok = parse_job(p, l + 4, len - 4) == WH_OK;
        } else {
            ok = 0;
        }
        if (!ok) {
            wh_snapprog_clear(p);
            return wh_seterr(err, errlen, "snapshot progress: line %d is not valid", line);
        }
        pos += len + 1;
        line++;
    }
    if (!have_plan) {
        wh_snapprog_clear(p);
        return wh_seterr(err, errlen, "snapshot progress: no plan line");
    }
    return WH_OK;
}

int wh_snapkey_encode(wh_buf *out, const char *const *vals, const size_t *lens, int n)
{
    char num[24];
    for (int i = 0; i < n; i++) {
        int k = snprintf(num, sizeof(num), "%zu:", lens[i]);
        if (wh_buf_append(out, num, (size_t)k) || wh_buf_append(out, vals[i], lens[i]))
            return WH_ERR;
    }
    return WH_OK;
}

/* ---- key set ---- */

static uint64_t hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void wh_keyset_init(wh_keyset *s)
{
    memset(s, 0, sizeof(*s));
    wh_buf_init(&s->arena, 0);
}

void wh_keyset_free(wh_keyset *s)
{
    free(s->slots);
    wh_buf_free(&s->arena);
    memset(s, 0, sizeof(*s));
}

void wh_keyset_clear(wh_keyset *s)
{
    if (s->slots)
        memset(s->slots, 0, s->nslots * sizeof(*s->slots));
    s->count = 0;
    wh_buf_reset(&s->arena);
}

static int entry_eq(const wh_keyset *s, size_t slot, const char *k, size_t n)
{
    const char *e = s->arena.data + s->slots[slot] - 1;
    uint64_t len;
    memcpy(&len, e, 8);
    return len == n && memcmp(e + 8, k, n) == 0;
}

int wh_keyset_has(const wh_keyset *s, const char *k, size_t n)
{
    if (s->count == 0)
        return 0;
    size_t mask = s->nslots - 1;
    for (size_t i = hash(k, n) & mask;; i = (i + 1) & mask) {
        if (s->slots[i] == 0)
            return 0;
        if (entry_eq(s, i, k, n))
            return 1;
    }
}

static int grow(wh_keyset *s)
{
    size_t nn = s->nslots ? s->nslots * 2 : 1024;
    size_t *ns = calloc(nn, sizeof(*ns));
    if (ns == NULL)
        return WH_ERR;
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->slots[i] == 0)
            continue;
        const char *e = s->arena.data + s->slots[i] - 1;
        uint64_t len;
        memcpy(&len, e, 8);
        size_t j = hash(e + 8, len) & (nn - 1);
        while (ns[j] != 0)
            j = (j + 1) & (nn - 1);
        ns[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->nslots = nn;
    return WH_OK;
}

int wh_keyset_add(wh_keyset *s, const char *k, size_t n)
{
    if (wh_keyset_has(s, k, n))
        return WH_OK;
    if ((s->count + 1) * 2 > s->nslots && grow(s) != WH_OK)
        return WH_ERR;
    size_t off = s->arena.len;
    uint64_t len = n;
    if (wh_buf_append(&s->arena, (const char *)&len, 8) || wh_buf_append(&s->arena, k, n))
        return WH_ERR;
    size_t mask = s->nslots - 1;
    size_t i = hash(k, n) & mask;
    while (s->slots[i] != 0)
        i = (i + 1) & mask;
    s->slots[i] = off + 1;
    s->count++;
    return WH_OK;
}
