/* dsp_envelope: batch bodies in native, Debezium and CloudEvents formats
 * (see dsp_envelope.h). Every field is read from the stored native object
 * with wh_json spans and copied as bytes where the format allows (ids,
 * rows, times), so nothing is re-encoded that need not be. */
#include "dsp_envelope.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

#define PUTLIT(b, s) wh_buf_append((b), (s), sizeof(s) - 1)

static const char *const env_names[] = {"native", "debezium", "cloudevents", "cloudevents-binary"};

int dsp_env_parse(const char *s, dsp_env_kind *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
        if (s && strcmp(s, env_names[i]) == 0) {
            *out = (dsp_env_kind)i;
            return WH_OK;
        }
    }
    return wh_seterr(err, errlen,
                     "envelope: unknown format \"%.32s\" (native, debezium, cloudevents, "
                     "cloudevents-binary)",
                     s ? s : "");
}

const char *dsp_env_name(dsp_env_kind k)
{
    return (unsigned)k < sizeof(env_names) / sizeof(env_names[0]) ? env_names[k] : "?";
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return WH_ERR;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return WH_OK;
}

/* Decimal digits of v at the end of tmp[24]; returns where they start. */
static size_t u64_digits(char tmp[24], uint64_t v)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    size_t i = 24;
    while (v >= 100) { /* two digits per division */
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        tmp[--i] = pairs[2 * r + 1];
        tmp[--i] = pairs[2 * r];
    }
    if (v >= 10) {
        tmp[--i] = pairs[2 * v + 1];
        tmp[--i] = pairs[2 * v];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    return i;
}

/* The seconds part "YYYY-MM-DDTHH:MM:SS" of a commit time (s[0..19)) in
 * milliseconds since the epoch. */
static int time_secs_ms(const char *s, int64_t *out)
{
    int Y, M, D, h, m, sec;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        digits(s, 4, &Y) || digits(s + 5, 2, &M) || digits(s + 8, 2, &D) || digits(s + 11, 2, &h) ||
        digits(s + 14, 2, &m) || digits(s + 17, 2, &sec))
        return WH_ERR;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return WH_ERR;
    /* days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's
     * days_from_civil): what timegm computes, without its time-zone work */
    int64_t y = M <= 2 ? Y - 1 : Y;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = ((days * 24 + h) * 60 + m) * 60000 + (int64_t)sec * 1000;
    return WH_OK;
}

typedef dsp_env_tcache time_cache;

static int time_ms(time_cache *c, const char *s, size_t n, int64_t *out)
{
    /* YYYY-MM-DDTHH:MM:SS[.ffffff]Z */
    int ms = 0;
    if (n < 20 || s[n - 1] != 'Z')
        return WH_ERR;
    if (n > 20) {
        if (s[19] != '.' || n - 21 < 1 || n - 21 > 9)
            return WH_ERR;
        int frac;
        size_t fn = n - 21 < 3 ? n - 21 : 3;
        if (digits(s + 20, n - 21, &frac) || digits(s + 20, fn, &ms))
            return WH_ERR;
        for (size_t i = fn; i < 3; i++)
            ms *= 10;
    } else if (s[19] != 'Z') {
        return WH_ERR;
    }
    int64_t base;
    if (c != NULL && c->valid && memcmp(c->key, s, sizeof(c->key)) == 0) {
        base = c->ms;
    } else {
        if (time_secs_ms(s, &base) != WH_OK)
            return WH_ERR;
        if (c != NULL) {
            memcpy(c->key, s, sizeof(c->key));
            c->ms = base;
            c->valid = 1;
            c->sec0 = base >= 1000 ? u64_digits(c->secd, (uint64_t)base / 1000) : 24;
        }
    }
    *out = base + ms;
    return WH_OK;
}

int dsp_env_time_ms(const char *s, size_t n, int64_t *out)
{
    return time_ms(NULL, s, n, out);
}

/* The fields every format needs, as spans into the event. */
typedef struct {
    wh_json_span ev, id, tenant, lsn, xid, ts, op, schema, table, key, before, after;
    wh_json_span prefix, content, origin, change_lsn;
    int has_prefix, has_content, has_origin; /* origin: a string */
    int has_change_lsn;                      /* a string */
    /* "unchanged" (unchanged TOAST columns the ingestor could not fill): an
     * array right after "after", where the ingestor writes it (ing_event) */
    wh_json_span unchanged;
    int has_unchanged; /* a non-empty array */
    char opname[16];
    size_t oplen;
    const char *opraw; /* the name's oplen bytes: in the event when not escaped, else opname */
} fields;

/* The members an envelope needs, from the event's index (wh_evidx: one
 * pass over the event object, the first occurrence of each name wins, like
 * wh_json_span_get); xi NULL or not built yet: indexed here. */
static int get_fields(const char *json, size_t len, const wh_evidx *xi, size_t idx, fields *f,
                      char *err, size_t errlen)
{
    static const char *const names[] = {"id",    "tenant", "lsn",     "xid",    "commit_ts",
                                        "op",    "schema", "table",   "key",    "before",
                                        "after", "prefix", "content", "origin", "change_lsn"};
    _Static_assert(sizeof(names) / sizeof(names[0]) == WH_EV_NFIELDS, "a name per field");
    wh_evidx local;
    if (xi == NULL || xi->state == WH_EVX_NONE) {
        wh_evidx_build(json, len, &local);
        xi = &local;
    }
    if (xi->state == WH_EVX_NOTOBJ || xi->state == WH_EVX_BROKEN)
        return wh_seterr(err, errlen, "event %zu: not a JSON object", idx);
    const unsigned need = (1u << (WH_EV_AFTER + 1)) - 1;
    for (int i = 0; (xi->found & need) != need && i <= WH_EV_AFTER; i++)
        if (!(xi->found & (1u << i)))
            return wh_seterr(err, errlen, "event %zu: field \"%s\" missing", idx, names[i]);
    f->ev.p = json + xi->ev_off;
    f->ev.len = xi->ev_len;
    f->ev.type = WH_JSON_OBJECT;
#define SLOT(i, fld)                                                                               \
    do {                                                                                           \
        f->fld.p = json + xi->off[i];                                                              \
        f->fld.len = xi->len[i];                                                                   \
        f->fld.type = (wh_json_type)xi->type[i];                                                   \
    } while (0)
    /* fields 0..WH_EV_AFTER are present (checked above) */
    SLOT(WH_EV_ID, id);
    SLOT(WH_EV_TENANT, tenant);
    SLOT(WH_EV_LSN, lsn);
    SLOT(WH_EV_XID, xid);
    SLOT(WH_EV_COMMIT_TS, ts);
    SLOT(WH_EV_OP, op);
    SLOT(WH_EV_SCHEMA, schema);
    SLOT(WH_EV_TABLE, table);
    SLOT(WH_EV_KEY, key);
    SLOT(WH_EV_BEFORE, before);
    SLOT(WH_EV_AFTER, after);
    if (xi->found & (1u << WH_EV_PREFIX))
        SLOT(WH_EV_PREFIX, prefix);
    else
        memset(&f->prefix, 0, sizeof(f->prefix));
    if (xi->found & (1u << WH_EV_CONTENT))
        SLOT(WH_EV_CONTENT, content);
    else
        memset(&f->content, 0, sizeof(f->content));
    if (xi->found & (1u << WH_EV_ORIGIN))
        SLOT(WH_EV_ORIGIN, origin);
    else
        memset(&f->origin, 0, sizeof(f->origin));
    if (xi->found & (1u << WH_EV_CHANGE_LSN))
        SLOT(WH_EV_CHANGE_LSN, change_lsn);
    else
        memset(&f->change_lsn, 0, sizeof(f->change_lsn));
#undef SLOT
    if (f->id.type != WH_JSON_STRING || f->tenant.type != WH_JSON_STRING ||
        f->lsn.type != WH_JSON_STRING || f->xid.type != WH_JSON_NUMBER)
        return wh_seterr(err, errlen, "event %zu: id, tenant, lsn or xid of the wrong type", idx);
    size_t n = f->op.type == WH_JSON_STRING && f->op.len >= 2 ? f->op.len - 2 : 0, i = 0;
    if (n > 0 && n < sizeof(f->opname)) /* a-z only (the common case): the bytes are the name */
        while (i < n && f->op.p[1 + i] >= 'a' && f->op.p[1 + i] <= 'z')
            i++;
    if (n > 0 && i == n) {
        memcpy(f->opname, f->op.p + 1, n);
        f->opname[n] = '\0';
        f->opraw = f->op.p + 1;
    } else {
        f->opraw = f->opname;
        if (wh_json_span_str(&f->op, f->opname, sizeof(f->opname), &n) != WH_OK || n == 0)
            return wh_seterr(err, errlen, "event %zu: field \"op\" is not a short string", idx);
        for (i = 0; i < n; i++)
            if (f->opname[i] < 'a' || f->opname[i] > 'z')
                return wh_seterr(err, errlen, "event %zu: field \"op\" is not an operation", idx);
    }
    f->oplen = n;
    f->has_prefix = (xi->found >> WH_EV_PREFIX) & 1u;
    f->has_content = (xi->found >> WH_EV_CONTENT) & 1u;
    f->has_origin = ((xi->found >> WH_EV_ORIGIN) & 1u) && f->origin.type == WH_JSON_STRING;
    f->has_change_lsn =
        ((xi->found >> WH_EV_CHANGE_LSN) & 1u) && f->change_lsn.type == WH_JSON_STRING;
    f->has_unchanged = 0;
    {
        static const char lit[] = ",\"unchanged\":";
        const char *q = f->after.p + f->after.len, *end = f->ev.p + f->ev.len;
        if (q >= f->ev.p && (size_t)(end - q) > sizeof(lit) - 1 &&
            memcmp(q, lit, sizeof(lit) - 1) == 0 &&
            wh_json_span_at(q, (size_t)(end - q), sizeof(lit) - 1, &f->unchanged,
                            WH_JSON_SPAN_DEPTH) != 0 &&
            f->unchanged.type == WH_JSON_ARRAY && f->unchanged.len > 2)
            f->has_unchanged = 1;
    }
    return WH_OK;
}

static int row(const dsp_env_opts *o, wh_buf *b, const wh_json_span *r)
{
    return o->columns ? wh_filter_row(o->columns, r, b) : wh_buf_append(b, r->p, r->len);
}

/* Debezium's unavailable.value.placeholder (its default): what Debezium
 * writes for an unchanged TOAST value it does not know */
#define DBZ_UNAVAILABLE "__debezium_unavailable_value"

/* Appends the row r (row()) with each column of f's "unchanged" that the
 * column lists keep added as DBZ_UNAVAILABLE, so a Debezium consumer keeps
 * its old value instead of taking a missing column for null. */
static int row_unavailable(const dsp_env_opts *o, wh_buf *b, const wh_json_span *r, const fields *f)
{
    size_t start = b->len;
    if (row(o, b, r) != WH_OK)
        return WH_ERR;
    if (r->type != WH_JSON_OBJECT || b->len - start < 2 || b->data[b->len - 1] != '}')
        return WH_OK;
    b->len--; /* reopen the object */
    int empty = b->data[b->len - 1] == '{';
    size_t pos = 0;
    wh_json_span name;
    int k;
    while ((k = wh_json_span_next(&f->unchanged, &pos, NULL, &name)) == 1) {
        if (name.type != WH_JSON_STRING)
            continue;
        if (o->columns && !wh_filter_column_keep(o->columns, &name))
            continue;
        if ((!empty && wh_buf_putc(b, ',')) || wh_buf_append(b, name.p, name.len) ||
            PUTLIT(b, ":\"" DBZ_UNAVAILABLE "\""))
            return WH_ERR;
        empty = 0;
    }
    return wh_buf_putc(b, '}');
}

static int event_data(const dsp_env_opts *o, wh_buf *b, const fields *f)
{
    if (wh_filter_has_columns(o->columns))
        return wh_filter_rewrite(o->columns, f->ev.p, f->ev.len, b);
    return wh_buf_append(b, f->ev.p, f->ev.len);
}

typedef dsp_env_dbz dbz_batch;

/* Hex digit values plus one; 0: not a hex digit. */
static const unsigned char hexval1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* The hex digits at p (at most 9 read, before end) into *v; how many. */
static inline int hex_run(const char *p, const char *end, uint64_t *v)
{
    int n = 0;
    uint64_t x = 0;
    for (; p < end && n <= 8; p++, n++) {
        unsigned d = hexval1[(unsigned char)*p];
        if (d == 0)
            break;
        x = (x << 4) | (d - 1);
    }
    *v = x;
    return n;
}

/* The LSN "X/X" of a string span without escapes; WH_ERR otherwise (the
 * caller then decodes it the long way). */
static int lsn_raw(const wh_json_span *sp, uint64_t *out)
{
    const char *p = sp->p + 1, *end = sp->p + sp->len - 1;
    uint64_t hi, lo;
    int n = hex_run(p, end, &hi); /* the high half, up to '/' */
    p += n;
    if (n == 0 || n > 8 || p >= end || *p != '/')
        return WH_ERR;
    p++;
    n = hex_run(p, end, &lo); /* the low half, to the end */
    p += n;
    if (n == 0 || n > 8 || p != end)
        return WH_ERR;
    *out = (hi << 32) | lo;
    return WH_OK;
}

/* Copies n bytes to w, returns w + n: up to 16 bytes with two overlapping
 * loads and stores instead of a call. */
static inline char *ws_copy(char *w, const char *p, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
        memcpy(w, &a, 8);
        memcpy(w + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        memcpy(w, &a, 4);
        memcpy(w + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            w[i] = p[i];
    } else {
        memcpy(w, p, n);
    }
    return w + n;
}

#define W(w, lit) (memcpy((w), (lit), sizeof(lit) - 1), (w) + sizeof(lit) - 1)
#define WS(w, p, n) ws_copy((w), (p), (n))

static int debezium(const dsp_env_opts *o, wh_buf *b, const fields *f, size_t idx, dbz_batch *d,
                    char *err, size_t errlen)
{
    /* insert c, update u, delete d, truncate t, message m, read r */
    const char *code = NULL, *op = f->opraw;
    switch (f->oplen) {
    case 4:
        code = memcmp(op, "read", 4) == 0 ? "r" : NULL;
        break;
    case 3: /* Debezium has no such op: the native event goes whole, op as walhook names it */
        code = memcmp(op, "ddl", 3) == 0 ? "ddl" : NULL;
        break;
    case 6:
        code = memcmp(op, "insert", 6) == 0   ? "c"
               : memcmp(op, "update", 6) == 0 ? "u"
               : memcmp(op, "delete", 6) == 0 ? "d"
               : memcmp(op, "schema", 6) == 0 ? "schema"
                                              : NULL;
        break;
    case 7:
        code = memcmp(op, "message", 7) == 0 ? "m" : NULL;
        break;
    case 8:
        code = memcmp(op, "truncate", 8) == 0 ? "t" : NULL;
        break;
    default:
        break;
    }
    if (!code)
        return wh_seterr(err, errlen, "event %zu: unknown op \"%s\"", idx, f->opname);
    char lsnstr[WH_LSN_STRLEN];
    uint64_t lsn = 0;
    if (lsn_raw(&f->lsn, &lsn) != WH_OK &&
        (wh_json_span_str(&f->lsn, lsnstr, sizeof(lsnstr), NULL) != WH_OK ||
         wh_lsn_parse(lsnstr, &lsn) != WH_OK))
        return wh_seterr(err, errlen, "event %zu: field \"lsn\" is not an LSN", idx);
    /* source.lsn is the change's own LSN (Debezium's), the commit's for
     * events that have none (snapshot rows, events stored before it);
     * sequence is ["<commit LSN>","<lsn>"], rising in delivery order (the
     * commit order, then the change's place in its transaction) */
    char cmd[24];
    size_t cm0 = u64_digits(cmd, lsn), cmn = 24 - cm0;
    if (f->has_change_lsn && lsn_raw(&f->change_lsn, &lsn) != WH_OK &&
        (wh_json_span_str(&f->change_lsn, lsnstr, sizeof(lsnstr), NULL) != WH_OK ||
         wh_lsn_parse(lsnstr, &lsn) != WH_OK))
        return wh_seterr(err, errlen, "event %zu: field \"change_lsn\" is not an LSN", idx);
    int64_t ts_ms = 0;
    if (f->ts.type == WH_JSON_STRING &&
        time_ms(&d->tc, f->ts.p + 1, f->ts.len - 2, &ts_ms) != WH_OK)
        return wh_seterr(err, errlen, "event %zu: field \"commit_ts\" is not a UTC time", idx);
    char lsnd[24];
    size_t lsn0 = u64_digits(lsnd, lsn), lsnn = 24 - lsn0;
    char tsd[24];
    size_t ts0;
    if (f->ts.type == WH_JSON_STRING && d->tc.valid && d->tc.sec0 < 24 && ts_ms >= d->tc.ms &&
        ts_ms - d->tc.ms < 1000) {
        /* the cached seconds' digits, then the milliseconds in 3 digits */
        unsigned ms = (unsigned)(ts_ms - d->tc.ms);
        ts0 = d->tc.sec0 - 3;
        memcpy(tsd + ts0, d->tc.secd + d->tc.sec0, 24 - d->tc.sec0);
        tsd[21] = (char)('0' + ms / 100);
        tsd[22] = (char)('0' + ms / 10 % 10);
        tsd[23] = (char)('0' + ms % 10);
    } else {
        ts0 = u64_digits(tsd, ts_ms < 0 ? (uint64_t)0 - (uint64_t)ts_ms : (uint64_t)ts_ms);
        if (ts_ms < 0)
            tsd[--ts0] = '-';
    }
    size_t tsn = 24 - ts0;
    const char *name = d->name ? d->name : f->tenant.p;
    size_t namelen = d->name ? d->namelen : f->tenant.len;
    int meta = code[1] != '\0'; /* schema, ddl */
    if (code[0] != 'm' && !meta && !wh_filter_has_columns(o->columns) && !f->has_unchanged) {
        /* the exact size reserved once, then the parts copied in (what the
         * appends below write, without a check per part) */
        static const char p1[] = "{\"before\":", p2[] = ",\"after\":",
                          p3[] = ",\"source\":{\"version\":\"walhook\",\"connector\":"
                                 "\"postgresql\",\"name\":",
                          p4[] = ",\"ts_ms\":", p5[] = ",\"snapshot\":\"false\",\"db\":",
                          p5r[] = ",\"snapshot\":\"true\",\"db\":", p6[] = ",\"sequence\":\"[\\\"",
                          p6b[] = "\\\",\\\"", p7[] = "\\\"]\",\"schema\":", p8[] = ",\"table\":",
                          p9[] = ",\"txId\":", p10[] = ",\"lsn\":", p11a[] = ",\"xmin\":null",
                          p11o[] = ",\"origin\":", p11[] = "},\"op\":\"",
                          p12[] = "\",\"ts_ms\":", p13[] = ",\"transaction\":null}";
        size_t need = sizeof(p1) + sizeof(p2) + sizeof(p3) + sizeof(p4) + sizeof(p5) + sizeof(p6) +
                      sizeof(p6b) + sizeof(p7) + sizeof(p8) + sizeof(p9) + sizeof(p10) +
                      sizeof(p11) + sizeof(p12) + sizeof(p13) + sizeof(p11a) - 15 + f->before.len +
                      f->after.len + namelen + tsn + d->dblen + cmn + 2 * lsnn + f->schema.len +
                      f->table.len + f->xid.len + 1 + d->nowlen +
                      (f->has_origin ? sizeof(p11o) - 1 + f->origin.len : 0);
        if (wh_buf_reserve(b, need) != WH_OK)
            return WH_ERR;
        char *w = b->data + b->len;
        w = W(w, p1);
        w = WS(w, f->before.p, f->before.len);
        w = W(w, p2);
        w = WS(w, f->after.p, f->after.len);
        w = W(w, p3);
        w = WS(w, name, namelen);
        w = W(w, p4);
        w = WS(w, tsd + ts0, tsn);
        /* a snapshot or backfill row: "true" (walhook does not mark a
         * snapshot's last row, so never "last") */
        if (code[0] == 'r')
            w = W(w, p5r);
        else
            w = W(w, p5);
        w = WS(w, d->db, d->dblen);
        w = W(w, p6);
        w = WS(w, cmd + cm0, cmn);
        w = W(w, p6b);
        w = WS(w, lsnd + lsn0, lsnn);
        w = W(w, p7);
        w = WS(w, f->schema.p, f->schema.len);
        w = W(w, p8);
        w = WS(w, f->table.p, f->table.len);
        w = W(w, p9);
        w = WS(w, f->xid.p, f->xid.len);
        w = W(w, p10);
        w = WS(w, lsnd + lsn0, lsnn);
        w = W(w, p11a);
        if (f->has_origin) {
            w = W(w, p11o);
            w = WS(w, f->origin.p, f->origin.len);
        }
        w = W(w, p11);
        *w++ = code[0];
        w = W(w, p12);
        w = WS(w, d->now, d->nowlen);
        w = W(w, p13);
        b->len = (size_t)(w - b->data);
        return WH_OK;
    }
    if (meta) {
        if (PUTLIT(b, "{\"before\":null,\"after\":null,\"walhook\":") ||
            wh_buf_append(b, f->ev.p, f->ev.len))
            return WH_ERR;
    } else if (code[0] == 'm') {
        if (PUTLIT(b, "{\"message\":{\"prefix\":") ||
            (f->has_prefix ? wh_buf_append(b, f->prefix.p, f->prefix.len) : PUTLIT(b, "null")) ||
            PUTLIT(b, ",\"content\":") ||
            (f->has_content ? wh_buf_append(b, f->content.p, f->content.len) : PUTLIT(b, "null")) ||
            wh_buf_putc(b, '}'))
            return WH_ERR;
    } else {
        /* unchanged TOAST columns: Debezium's placeholder in "after"
         * ("before" never lists them: with REPLICA IDENTITY FULL the old
         * row is whole, otherwise it holds key columns only) */
        if (PUTLIT(b, "{\"before\":") || row(o, b, &f->before) || PUTLIT(b, ",\"after\":") ||
            (f->has_unchanged ? row_unavailable(o, b, &f->after, f) : row(o, b, &f->after)))
            return WH_ERR;
    }
    if (PUTLIT(b, ",\"source\":{\"version\":\"walhook\",\"connector\":\"postgresql\",\"name\":") ||
        wh_buf_append(b, name, namelen) || PUTLIT(b, ",\"ts_ms\":") ||
        wh_buf_append(b, tsd + ts0, tsn) ||
        (code[0] == 'r' ? PUTLIT(b, ",\"snapshot\":\"true\",\"db\":")
                        : PUTLIT(b, ",\"snapshot\":\"false\",\"db\":")) ||
        wh_buf_append(b, d->db, d->dblen) || PUTLIT(b, ",\"sequence\":\"[\\\"") ||
        wh_buf_append(b, cmd + cm0, cmn) || PUTLIT(b, "\\\",\\\"") ||
        wh_buf_append(b, lsnd + lsn0, lsnn) || PUTLIT(b, "\\\"]\"") || PUTLIT(b, ",\"schema\":") ||
        wh_buf_append(b, f->schema.p, f->schema.len) || PUTLIT(b, ",\"table\":") ||
        wh_buf_append(b, f->table.p, f->table.len) || PUTLIT(b, ",\"txId\":") ||
        wh_buf_append(b, f->xid.p, f->xid.len) || PUTLIT(b, ",\"lsn\":") ||
        wh_buf_append(b, lsnd + lsn0, lsnn) || PUTLIT(b, ",\"xmin\":null") ||
        (f->has_origin &&
         (PUTLIT(b, ",\"origin\":") || wh_buf_append(b, f->origin.p, f->origin.len))) ||
        PUTLIT(b, "},\"op\":\"") || wh_buf_puts(b, code) || PUTLIT(b, "\",\"ts_ms\":") ||
        wh_buf_append(b, d->now, d->nowlen) || PUTLIT(b, ",\"transaction\":null}"))
        return WH_ERR;
    return WH_OK;
}

/* Percent-encodes s[0..n) keeping RFC 3986 unreserved characters. */
static int pct(wh_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            if (wh_buf_putc(b, (char)c))
                return WH_ERR;
        } else if (wh_buf_putc(b, '%') || wh_buf_putc(b, hex[c >> 4]) ||
                   wh_buf_putc(b, hex[c & 15])) {
            return WH_ERR;
        }
    }
    return WH_OK;
}

/* CloudEvents HTTP binding: header values percent-encode space, '"', '%'
 * and everything outside printable ASCII. */
static int ce_hdr_value(char *dst, size_t cap, size_t *at, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7F && c != '"' && c != '%') {
            if (*at + 1 >= cap)
                return WH_ERR;
            dst[(*at)++] = (char)c;
        } else {
            if (*at + 3 >= cap)
                return WH_ERR;
            dst[(*at)++] = '%';
            dst[(*at)++] = hex[c >> 4];
            dst[(*at)++] = hex[c & 15];
        }
    }
    dst[*at] = '\0';
    return WH_OK;
}

/* Decoded names of an event for CloudEvents' source and subject. */
typedef struct {
    char tenant[256], schema[256], table[256];
    size_t tn, sn, an;
    int has_table;
} ce_names;

static int names(const fields *f, size_t idx, ce_names *c, char *err, size_t errlen)
{
    if (wh_json_span_str(&f->tenant, c->tenant, sizeof(c->tenant), &c->tn) != WH_OK)
        return wh_seterr(err, errlen, "event %zu: field \"tenant\" too long", idx);
    c->has_table = f->table.type == WH_JSON_STRING && f->schema.type == WH_JSON_STRING;
    c->sn = c->an = 0;
    if (c->has_table &&
        (wh_json_span_str(&f->schema, c->schema, sizeof(c->schema), &c->sn) != WH_OK ||
         wh_json_span_str(&f->table, c->table, sizeof(c->table), &c->an) != WH_OK))
        return wh_seterr(err, errlen, "event %zu: field \"schema\" or \"table\" too long", idx);
    return WH_OK;
}

/* The source URI-reference into b (without quotes). */
static int ce_source(wh_buf *b, const ce_names *c)
{
    if (PUTLIT(b, "/walhook/") || pct(b, c->tenant, c->tn))
        return WH_ERR;
    if (c->has_table && (wh_buf_putc(b, '/') || pct(b, c->schema, c->sn) || wh_buf_putc(b, '/') ||
                         pct(b, c->table, c->an)))
        return WH_ERR;
    return WH_OK;
}

static int ce_structured(const dsp_env_opts *o, wh_buf *b, const fields *f, size_t idx, char *err,
                         size_t errlen)
{
    ce_names c;
    if (names(f, idx, &c, err, errlen) != WH_OK)
        return WH_ERR;
    if (PUTLIT(b, "{\"specversion\":\"1.0\",\"id\":") || wh_buf_append(b, f->id.p, f->id.len) ||
        PUTLIT(b, ",\"source\":\"") || ce_source(b, &c) ||
        PUTLIT(b, "\",\"type\":\"com.walhook.") || wh_buf_puts(b, f->opname) || wh_buf_putc(b, '"'))
        return WH_ERR;
    if (c.has_table) {
        if (PUTLIT(b, ",\"subject\":"))
            return WH_ERR;
        /* "schema.table" as one JSON string */
        char st[520];
        memcpy(st, c.schema, c.sn);
        st[c.sn] = '.';
        memcpy(st + c.sn + 1, c.table, c.an);
        if (wh_json_str(b, st, c.sn + 1 + c.an))
            return WH_ERR;
    }
    if (f->ts.type == WH_JSON_STRING &&
        (PUTLIT(b, ",\"time\":") || wh_buf_append(b, f->ts.p, f->ts.len)))
        return WH_ERR;
    if (PUTLIT(b, ",\"datacontenttype\":\"application/json\",\"data\":") || event_data(o, b, f) ||
        wh_buf_putc(b, '}'))
        return WH_ERR;
    return WH_OK;
}

/* raw: val is already header-safe (percent-encoded source) */
static int add_header_raw(dsp_env_out *out, const char *name, const char *val, size_t n, int raw)
{
    if (out->nheaders >= DSP_ENV_HEADERS_MAX)
        return WH_ERR;
    char *h = out->headers[out->nheaders];
    size_t at = (size_t)snprintf(h, DSP_ENV_HDR_MAX, "%s: ", name);
    if (at >= DSP_ENV_HDR_MAX)
        return WH_ERR;
    if (raw) {
        if (at + n >= DSP_ENV_HDR_MAX)
            return WH_ERR;
        memcpy(h + at, val, n);
        h[at + n] = '\0';
    } else if (ce_hdr_value(h, DSP_ENV_HDR_MAX, &at, val, n) != WH_OK) {
        return WH_ERR;
    }
    out->nheaders++;
    return WH_OK;
}

static int add_header(dsp_env_out *out, const char *name, const char *val, size_t n)
{
    return add_header_raw(out, name, val, n, 0);
}

static int ce_binary(const dsp_env_opts *o, wh_buf *b, const fields *f, dsp_env_out *out,
                     size_t idx, char *err, size_t errlen)
{
    ce_names c;
    char tmp[DSP_ENV_HDR_MAX];
    size_t n;
    if (names(f, idx, &c, err, errlen) != WH_OK)
        return WH_ERR;
    if (add_header(out, "ce-specversion", "1.0", 3) ||
        wh_json_span_str(&f->id, tmp, sizeof(tmp), &n) || add_header(out, "ce-id", tmp, n))
        goto too_long;
    /* the source is rendered into the body buffer, then moved out */
    size_t start = b->len;
    if (ce_source(b, &c) || add_header_raw(out, "ce-source", b->data + start, b->len - start, 1))
        goto too_long;
    b->len = start;
    n = (size_t)snprintf(tmp, sizeof(tmp), "com.walhook.%s", f->opname);
    if (add_header(out, "ce-type", tmp, n))
        goto too_long;
    if (c.has_table) {
        n = (size_t)snprintf(tmp, sizeof(tmp), "%s.%s", c.schema, c.table);
        if (add_header(out, "ce-subject", tmp, n))
            goto too_long;
    }
    if (f->ts.type == WH_JSON_STRING) {
        if (wh_json_span_str(&f->ts, tmp, sizeof(tmp), &n) || add_header(out, "ce-time", tmp, n))
            goto too_long;
    }
    return event_data(o, b, f);
too_long:
    return wh_seterr(err, errlen, "event %zu: a ce-* header is longer than %d bytes", idx,
                     DSP_ENV_HDR_MAX);
}

int dsp_env_render(const dsp_env_opts *o, const void *const *jsons, const size_t *lens, size_t n,
                   wh_buf *body, dsp_env_out *out, char *err, size_t errlen)
{
    return dsp_env_render_ix(o, jsons, lens, NULL, n, body, out, err, errlen);
}

void dsp_env_ctx_init(dsp_env_ctx *c)
{
    memset(c, 0, sizeof(*c));
    wh_buf_init(&c->names, 0);
}

void dsp_env_ctx_free(dsp_env_ctx *c)
{
    wh_buf_free(&c->names);
}

/* A failed begin/add/end: the body and the headers are cleared. */
static int ctx_fail(dsp_env_ctx *c)
{
    wh_buf_reset(c->body);
    c->out->nheaders = 0;
    c->failed = 1;
    return WH_ERR;
}

int dsp_env_begin(dsp_env_ctx *c, const dsp_env_opts *o, wh_buf *body, dsp_env_out *out, char *err,
                  size_t errlen)
{
    c->o = *o;
    c->body = body;
    c->out = out;
    c->n = 0;
    c->failed = 0;
    wh_buf_reset(body);
    wh_buf_reset(&c->names);
    memset(&c->dz, 0, sizeof(c->dz));
    out->nheaders = 0;
    out->consumed = 0;
    out->content_type[0] = '\0';
    if (c->o.now_ms == 0) /* Debezium ts_ms: one clock read per batch */
        c->o.now_ms = wh_wallclock_us() / 1000;
    if (c->o.kind == DSP_ENV_CLOUDEVENTS_BINARY) {
        wh_seterr(err, errlen, "envelope: cloudevents-binary posts one event per request");
        return ctx_fail(c);
    }
    snprintf(out->content_type, sizeof(out->content_type), "application/json");
    if (c->o.kind == DSP_ENV_DEBEZIUM) {
        size_t now0 = u64_digits(c->nowd, c->o.now_ms < 0 ? (uint64_t)0 - (uint64_t)c->o.now_ms
                                                          : (uint64_t)c->o.now_ms);
        if (c->o.now_ms < 0)
            c->nowd[--now0] = '-';
        c->dz.now = c->nowd + now0;
        c->dz.nowlen = sizeof(c->nowd) - now0;
        const char *db = c->o.db ? c->o.db : "";
        if (wh_json_str(&c->names, db, strlen(db)) != WH_OK)
            goto full;
        c->dz.dblen = c->names.len;
        if (c->o.name) {
            if (wh_json_str(&c->names, c->o.name, strlen(c->o.name)) != WH_OK)
                goto full;
            c->dz.namelen = c->names.len - c->dz.dblen;
        }
        c->dz.db = c->names.data; /* stable now: no more appends */
        if (c->o.name)
            c->dz.name = c->names.data + c->dz.dblen;
    }
    /* the array's '[' (a single structured CloudEvent drops it at the end) */
    if (wh_buf_putc(body, '['))
        goto full;
    return WH_OK;
full:
    wh_seterr(err, errlen, "envelope: body larger than its buffer allows or out of memory");
    return ctx_fail(c);
}

int dsp_env_add(dsp_env_ctx *c, const void *json, size_t len, const wh_evidx *ix, char *err,
                size_t errlen)
{
    if (c->failed)
        return wh_seterr(err, errlen, "envelope: the batch failed already");
    const dsp_env_opts *o = &c->o;
    wh_buf *body = c->body;
    size_t i = c->n;
    if (i > 0 && wh_buf_putc(body, ','))
        goto full;
    if (o->kind == DSP_ENV_NATIVE) {
        wh_json_span ev;
        if (wh_json_span_value(json, len, &ev) != WH_OK || ev.type != WH_JSON_OBJECT) {
            wh_seterr(err, errlen, "event %zu: not a JSON object", i);
            return ctx_fail(c);
        }
        int rc = wh_filter_has_columns(o->columns)
                     ? wh_filter_rewrite(o->columns, ev.p, ev.len, body)
                     : wh_buf_append(body, ev.p, ev.len);
        if (rc != WH_OK)
            goto full;
        c->n++;
        return WH_OK;
    }
    size_t before = body->len;
    fields f;
    if (get_fields(json, len, ix, i, &f, err, errlen) != WH_OK)
        return ctx_fail(c);
    if (err && errlen)
        err[0] = '\0';
    int rc = o->kind == DSP_ENV_DEBEZIUM ? debezium(o, body, &f, i, &c->dz, err, errlen)
                                         : ce_structured(o, body, &f, i, err, errlen);
    if (rc != WH_OK) {
        body->len = before;
        if (!err || errlen == 0 || err[0] == '\0')
            goto full;
        return ctx_fail(c);
    }
    c->n++;
    return WH_OK;
full:
    wh_seterr(err, errlen, "envelope: body larger than its buffer allows or out of memory");
    return ctx_fail(c);
}

int dsp_env_end(dsp_env_ctx *c, char *err, size_t errlen)
{
    if (c->failed)
        return wh_seterr(err, errlen, "envelope: the batch failed already");
    if (c->n == 0) {
        wh_seterr(err, errlen, "envelope: empty batch");
        return ctx_fail(c);
    }
    wh_buf *body = c->body;
    if (c->o.kind == DSP_ENV_CLOUDEVENTS) {
        snprintf(c->out->content_type, sizeof(c->out->content_type), "%s",
                 c->n == 1 ? "application/cloudevents+json" : "application/cloudevents-batch+json");
        if (c->n == 1) { /* one structured event: the object alone, no array */
            memmove(body->data, body->data + 1, body->len - 1);
            body->len--;
            c->out->consumed = 1;
            if (wh_buf_cstr(body) != WH_OK)
                goto full;
            return WH_OK;
        }
    }
    if (wh_buf_putc(body, ']'))
        goto full;
    c->out->consumed = c->n;
    return WH_OK;
full:
    wh_seterr(err, errlen, "envelope: body larger than its buffer allows or out of memory");
    return ctx_fail(c);
}

int dsp_env_render_ix(const dsp_env_opts *o, const void *const *jsons, const size_t *lens,
                      const wh_evidx *ix, size_t n, wh_buf *body, dsp_env_out *out, char *err,
                      size_t errlen)
{
    if (o->kind != DSP_ENV_CLOUDEVENTS_BINARY) {
        if (n == 0) {
            wh_buf_reset(body);
            out->nheaders = 0;
            out->consumed = 0;
            out->content_type[0] = '\0';
            return wh_seterr(err, errlen, "envelope: empty batch");
        }
        dsp_env_ctx c;
        dsp_env_ctx_init(&c);
        int rc = dsp_env_begin(&c, o, body, out, err, errlen);
        for (size_t i = 0; i < n && rc == WH_OK; i++)
            rc = dsp_env_add(&c, jsons[i], lens[i], ix ? &ix[i] : NULL, err, errlen);
        if (rc == WH_OK)
            rc = dsp_env_end(&c, err, errlen);
        dsp_env_ctx_free(&c);
        return rc;
    }
    wh_buf_reset(body);
    out->nheaders = 0;
    out->consumed = 0;
    out->content_type[0] = '\0';
    if (n == 0)
        return wh_seterr(err, errlen, "envelope: empty batch");
    fields f;
    dsp_env_opts oo = *o;
    if (oo.now_ms == 0)
        oo.now_ms = wh_wallclock_us() / 1000;
    snprintf(out->content_type, sizeof(out->content_type), "application/json");
    if (get_fields(jsons[0], lens[0], ix, 0, &f, err, errlen) ||
        ce_binary(&oo, body, &f, out, 0, err, errlen)) {
        wh_buf_reset(body);
        out->nheaders = 0;
        return WH_ERR;
    }
    out->consumed = 1;
    return WH_OK;
}
