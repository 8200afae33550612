/* wh_dsn: connection string syntax check (see wh_dsn.h). */
#include "wh_dsn.h"
#include "wh_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpq 15 connection parameters. */
static const char *const keywords[] = {"host",
                                       "hostaddr",
                                       "port",
                                       "dbname",
                                       "user",
                                       "password",
                                       "passfile",
                                       "channel_binding",
                                       "connect_timeout",
                                       "client_encoding",
                                       "options",
                                       "application_name",
                                       "fallback_application_name",
                                       "keepalives",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "tcp_user_timeout",
                                       "replication",
                                       "gssencmode",
                                       "sslmode",
                                       "requiressl",
                                       "sslcompression",
                                       "sslcert",
                                       "sslkey",
                                       "sslpassword",
                                       "sslrootcert",
                                       "sslcrl",
                                       "sslcrldir",
                                       "sslsni",
                                       "requirepeer",
                                       "ssl_min_protocol_version",
                                       "ssl_max_protocol_version",
                                       "krbsrvname",
                                       "gsslib",
                                       "service",
                                       "target_session_attrs",
                                       "load_balance_hosts",
                                       NULL};

static int known_keyword(const char *k, size_t n)
{
    for (int i = 0; keywords[i] != NULL; i++)
        if (strlen(keywords[i]) == n && strncmp(keywords[i], k, n) == 0)
            return 1;
    return 0;
}

/* Checks a comma-separated list of ports (empty entries allowed). */
static int check_ports(const char *p, size_t n, char *err, size_t errlen)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && p[j] != ',')
            j++;
        if (j > i) {
            long v = 0;
            for (size_t k = i; k < j; k++) {
                if (!isdigit((unsigned char)p[k]) || v > 65535)
                    return wh_seterr(err, errlen, "invalid port (expected 1..65535)");
                v = v * 10 + (p[k] - '0');
            }
            if (v < 1 || v > 65535)
                return wh_seterr(err, errlen, "invalid port (expected 1..65535)");
        }
        i = j + 1;
    }
    return WH_OK;
}

/* libpq percent-decodes every part of a URI: each '%' must start two hex
 * digits, and %00 is refused. */
static int check_escapes(const char *s, char *err, size_t errlen)
{
    for (const char *q = strchr(s, '%'); q != NULL; q = strchr(q + 1, '%')) {
        if (wh_hexval((unsigned char)q[1]) < 0 || wh_hexval((unsigned char)q[2]) < 0)
            return wh_seterr(err, errlen,
                             "invalid percent-encoding at offset %d in URI ('%%' must be followed "
                             "by two hex digits; write a '%%' as %%25)",
                             (int)(q - s));
        if (q[1] == '0' && q[2] == '0')
            return wh_seterr(err, errlen, "%%00 at offset %d in URI is not allowed", (int)(q - s));
    }
    return WH_OK;
}

/* p: just after a URI's "scheme://". Sets *end to the end of its
 * authority ([user[:password]@]hosts, up to the first '/' or '?') and
 * returns the last '@' in it, where the userinfo ends (NULL: none). */
static const char *uri_authority(const char *p, const char **end)
{
    *end = p + strcspn(p, "/?");
    const char *at = NULL;
    for (const char *q = p; q < *end; q++)
        if (*q == '@')
            at = q;
    return at;
}

/* The next parameter of a URI's query ("k=v&k=v..."; *pp just after the
 * '?', or at its '\0' when there is none): the item into *item and *n, its
 * first '=' into *eq (NULL: none); *pp moves past it and its '&'. Returns 0
 * at the end. */
static int uri_query_next(const char **pp, const char **item, size_t *n, const char **eq)
{
    const char *k = *pp;
    if (*k == '\0')
        return 0;
    *item = k;
    *n = strcspn(k, "&");
    *eq = memchr(k, '=', *n);
    k += *n;
    *pp = *k == '&' ? k + 1 : k;
    return 1;
}

/* Where the query of a URI whose authority ends at end starts ("" when it
 * has none), for uri_query_next. */
static const char *uri_query(const char *end)
{
    const char *qm = strchr(end, '?');
    return qm ? qm + 1 : "";
}

static int check_uri(const char *s, char *err, size_t errlen)
{
    if (check_escapes(s, err, errlen) != WH_OK)
        return WH_ERR;
    const char *p = strstr(s, "://") + 3;
    const char *end;
    const char *at = uri_authority(p, &end);
    const char *h = at ? at + 1 : p;
    /* hosts: host[:port][,host[:port]...]; IPv6 in brackets */
    while (h < end) {
        const char *item_end = h;
        if (*h == '[') {
            const char *rb = memchr(h, ']', (size_t)(end - h));
            if (rb == NULL)
                return wh_seterr(err, errlen, "unterminated IPv6 address in URI");
            if (rb == h + 1)
                return wh_seterr(err, errlen, "empty IPv6 host address in URI ('[]')");
            item_end = rb + 1;
            if (item_end < end && *item_end != ',' && *item_end != ':')
                return wh_seterr(err, errlen,
                                 "unexpected character at offset %d in URI (expected ':' or ',' "
                                 "after an IPv6 address)",
                                 (int)(item_end - s));
        }
        while (item_end < end && *item_end != ',' && *item_end != ':')
            item_end++;
        if (item_end < end && *item_end == ':') {
            const char *port = item_end + 1;
            const char *pe = port;
            while (pe < end && *pe != ',')
                pe++;
            if (pe == port || check_ports(port, (size_t)(pe - port), err, errlen) != WH_OK)
                return wh_seterr(err, errlen,
                                 "invalid port in the URI's host list (expected 1..65535; "
                                 "percent-encode a '/' or '@' in a password)");
            item_end = pe;
        }
        h = item_end < end ? item_end + 1 : end;
    }
    const char *q = uri_query(end), *k, *eq;
    size_t n;
    while (uri_query_next(&q, &k, &n, &eq)) {
        if (n > 0) {
            if (eq == NULL)
                return wh_seterr(err, errlen, "URI parameter at offset %d has no '='",
                                 (int)(k - s));
            if (!known_keyword(k, (size_t)(eq - k)))
                return wh_seterr(err, errlen, "unknown URI parameter at offset %d", (int)(k - s));
            if (memchr(eq + 1, '=', n - (size_t)(eq - k) - 1) != NULL)
                return wh_seterr(err, errlen, "URI parameter at offset %d has a second '='",
                                 (int)(k - s));
            if ((size_t)(eq - k) == 4 && strncmp(k, "port", 4) == 0 &&
                check_ports(eq + 1, n - (size_t)(eq - k) - 1, err, errlen) != WH_OK)
                return WH_ERR;
        }
    }
    return WH_OK;
}

/* One "key = value" pair of the key/value form (value possibly quoted, with
 * backslash escapes); the one tokenizer of both the check and redaction. */
typedef struct kv_pair {
    const char *key, *raw; /* raw: the value as written, quotes included */
    size_t klen, rawlen;
    char val[256]; /* unescaped value, truncated */
    size_t vlen;
} kv_pair;

enum { KV_END = 0, KV_PAIR = 1, KV_NO_EQ = -1, KV_OPEN_QUOTE = -2 };

static int kv_next(const char **pp, kv_pair *kv)
{
    const char *p = *pp;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0')
        return KV_END;
    kv->key = p;
    while (*p && *p != '=' && !isspace((unsigned char)*p))
        p++;
    kv->klen = (size_t)(p - kv->key);
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '=') {
        *pp = p;
        return KV_NO_EQ;
    }
    p++;
    while (isspace((unsigned char)*p))
        p++;
    kv->raw = p;
    kv->vlen = 0;
    char quote = *p == '\'' ? '\'' : '\0';
    if (quote)
        p++;
    while (*p && (quote ? *p != quote : !isspace((unsigned char)*p))) {
        if (*p == '\\' && p[1])
            p++;
        if (kv->vlen + 1 < sizeof(kv->val))
            kv->val[kv->vlen++] = *p;
        p++;
    }
    kv->val[kv->vlen] = '\0';
    if (quote) {
        if (*p != quote) {
            *pp = p;
            return KV_OPEN_QUOTE;
        }
        p++;
    }
    kv->rawlen = (size_t)(p - kv->raw);
    *pp = p;
    return KV_PAIR;
}

static int check_keyvalue(const char *s, char *err, size_t errlen)
{
    const char *p = s;
    kv_pair kv;
    for (;;) {
        const char *at = p;
        while (isspace((unsigned char)*at))
            at++;
        int rc = kv_next(&p, &kv);
        if (rc == KV_END)
            return WH_OK;
        if (rc == KV_NO_EQ)
            return wh_seterr(err, errlen,
                             "missing '=' after the word at offset %d (quote values with spaces)",
                             (int)(at - s));
        if (!known_keyword(kv.key, kv.klen))
            return wh_seterr(err, errlen, "unknown keyword at offset %d", (int)(at - s));
        if (rc == KV_OPEN_QUOTE)
            return wh_seterr(err, errlen, "unterminated quoted value of '%.*s'", (int)kv.klen,
                             kv.key); /* a known keyword */
        if (kv.klen == 4 && strncmp(kv.key, "port", 4) == 0 &&
            check_ports(kv.val, kv.vlen, err, errlen) != WH_OK)
            return WH_ERR;
    }
}

int wh_dsn_check(const char *dsn, char *err, size_t errlen)
{
    if (strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0)
        return check_uri(dsn, err, errlen);
    if (strstr(dsn, "://") != NULL)
        return wh_seterr(err, errlen, "URI must start with postgresql:// or postgres://");
    return check_keyvalue(dsn, err, errlen);
}

/* ---- redaction ------------------------------------------------------- */

static int secret_keyword(const char *k, size_t n)
{
    return (n == 8 && strncmp(k, "password", 8) == 0) ||
           (n == 11 && strncmp(k, "sslpassword", 11) == 0);
}

static void out_append(char *out, size_t len, size_t *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n && *o + 1 < len; i++)
        out[(*o)++] = p[i];
    out[*o] = '\0';
}

static void redact_uri(const char *dsn, const char *sch, char *out, size_t len, size_t *o)
{
    /* scheme://[user[:password]@]hosts[/db][?k=v&...] */
    const char *p = sch + 3;
    const char *end;
    const char *at = uri_authority(p, &end);
    out_append(out, len, o, dsn, (size_t)(p - dsn));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        out_append(out, len, o, p, (size_t)((colon ? colon : at) - p));
        if (colon != NULL)
            out_append(out, len, o, ":****", 5);
        p = at;
    }
    const char *qm = strchr(end, '?');
    out_append(out, len, o, p, (size_t)((qm ? qm : end + strlen(end)) - p));
    if (qm == NULL)
        return;
    out_append(out, len, o, "?", 1);
    const char *q = qm + 1, *k, *eq;
    size_t n;
    while (uri_query_next(&q, &k, &n, &eq)) {
        if (eq != NULL && secret_keyword(k, (size_t)(eq - k))) {
            out_append(out, len, o, k, (size_t)(eq - k) + 1);
            out_append(out, len, o, "****", 4);
        } else {
            out_append(out, len, o, k, n);
        }
        if (k[n] == '&')
            out_append(out, len, o, "&", 1);
    }
}

/* key = value pairs (values possibly quoted), re-emitted as key=value. */
static void redact_keyvalue(const char *p, char *out, size_t len, size_t *o)
{
    kv_pair kv;
    int rc;
    while ((rc = kv_next(&p, &kv)) != KV_END) {
        if (rc != KV_PAIR) {
            /* malformed: show nothing further, it may be a password */
            out_append(out, len, o, *o ? " ..." : "...", *o ? 4 : 3);
            return;
        }
        if (*o > 0)
            out_append(out, len, o, " ", 1);
        out_append(out, len, o, kv.key, kv.klen);
        out_append(out, len, o, "=", 1);
        if (secret_keyword(kv.key, kv.klen))
            out_append(out, len, o, "****", 4);
        else
            out_append(out, len, o, kv.raw, kv.rawlen);
    }
}

void wh_dsn_redact(const char *dsn, char *out, size_t len)
{
    size_t o = 0;
    if (len == 0)
        return;
    out[0] = '\0';
    const char *sch = strstr(dsn, "://");
    if (sch != NULL)
        redact_uri(dsn, sch, out, len, &o);
    else
        redact_keyvalue(dsn, out, len, &o);
}

/* ---- scrubbing messages ------------------------------------------------ */

#define SCRUB_MAX 12

typedef struct secrets {
    char s[SCRUB_MAX][256];
    int n;
} secrets;

static void secret_add(secrets *z, const char *p, size_t n)
{
    if (n == 0 || z->n >= SCRUB_MAX)
        return;
    if (n >= sizeof(z->s[0]))
        n = sizeof(z->s[0]) - 1; /* its start is still masked */
    memcpy(z->s[z->n], p, n);
    z->s[z->n][n] = '\0';
    z->n++;
}

/* Copies s[0..n) percent-decoded into out (truncated, NUL-terminated; an
 * invalid escape stays as written). Returns the bytes written. */
static size_t pct_decode(const char *s, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < len; i++) {
        int hi = i + 2 < n ? wh_hexval((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? wh_hexval((unsigned char)s[i + 2]) : -1;
        if (s[i] == '%' && hi >= 0 && lo >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    if (len > 0)
        out[o] = '\0';
    return o;
}

/* p[0..n) as written and percent-decoded (an invalid escape stays as it
 * is, as far as the decoding got). */
static void secret_add_uri(secrets *z, const char *p, size_t n)
{
    char d[256];
    secret_add(z, p, n);
    size_t o = pct_decode(p, n, d, sizeof(d));
    if (o != n || memcmp(d, p, n) != 0)
        secret_add(z, d, o);
}

static void secrets_of_uri(const char *sch, secrets *z)
{
    const char *p = sch + 3;
    const char *qm = strchr(p, '?');
    const char *lim = qm ? qm : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(lim - p));
    /* the password as libpq reads it (up to the first '@' or '/') and up
     * to the last '@' (an unencoded '@' or '/' in it) */
    if (colon != NULL) {
        const char *first = colon + 1 + strcspn(colon + 1, "@/");
        const char *last = NULL;
        for (const char *q = colon + 1; q < lim; q++)
            if (*q == '@')
                last = q;
        if (first < lim && *first == '@' && memchr(p, '/', (size_t)(colon - p)) == NULL)
            secret_add_uri(z, colon + 1, (size_t)(first - colon - 1));
        if (last != NULL && memchr(p, '@', (size_t)(colon - p)) == NULL)
            secret_add_uri(z, colon + 1, (size_t)(last - colon - 1));
    }
    if (qm == NULL)
        return;
    const char *q = qm + 1, *k, *eq;
    size_t n;
    while (uri_query_next(&q, &k, &n, &eq))
        if (eq != NULL && secret_keyword(k, (size_t)(eq - k)))
            secret_add_uri(z, eq + 1, n - (size_t)(eq - k) - 1);
}

static void secrets_of_keyvalue(const char *p, secrets *z)
{
    kv_pair kv;
    int rc;
    while ((rc = kv_next(&p, &kv)) != KV_END) {
        if (rc == KV_NO_EQ) {
            /* a word without '=': skip it; an unquoted password with a
             * space leaves its tail here, which a message may quote */
            secret_add(z, kv.key, kv.klen);
            continue;
        }
        if (!secret_keyword(kv.key, kv.klen))
            continue;
        secret_add(z, kv.val, kv.vlen);
        if (rc == KV_OPEN_QUOTE) {
            secret_add(z, kv.raw, strlen(kv.raw));
            secret_add(z, kv.raw + 1, strlen(kv.raw + 1));
            return;
        }
        secret_add(z, kv.raw, kv.rawlen);
        if (kv.rawlen >= 2 && kv.raw[0] == '\'')
            secret_add(z, kv.raw + 1, kv.rawlen - 2);
    }
}

/* Masks the password of every "scheme://user:password@" in s, in place. */
static void scrub_userinfo(char *s)
{
    for (char *q = strstr(s, "://"); q != NULL; q = strstr(q + 1, "://")) {
        char *u = q + 3;
        char *colon = NULL;
        char *e = u;
        while (*e && !strchr("@/?\"' \t\r\n", *e)) {
            if (*e == ':' && colon == NULL)
                colon = e;
            e++;
        }
        if (*e != '@' || colon == NULL)
            continue;
        /* the password is replaced by "****" (at most as long) */
        size_t plen = (size_t)(e - colon - 1);
        size_t put = plen < 4 ? plen : 4;
        memset(colon + 1, '*', put);
        memmove(colon + 1 + put, e, strlen(e) + 1);
        q = colon;
    }
}

void wh_dsn_scrub(const char *dsn, const char *msg, char *out, size_t len)
{
    if (len == 0)
        return;
    secrets z;
    z.n = 0;
    if (dsn != NULL) {
        const char *sch = strstr(dsn, "://");
        if (sch != NULL)
            secrets_of_uri(sch, &z);
        else
            secrets_of_keyvalue(dsn, &z);
    }
    /* longest first: a shorter one may be a part of a longer one */
    for (int i = 1; i < z.n; i++)
        for (int j = i; j > 0 && strlen(z.s[j]) > strlen(z.s[j - 1]); j--) {
            char t[256];
            memcpy(t, z.s[j], sizeof(t));
            memcpy(z.s[j], z.s[j - 1], sizeof(t));
            memcpy(z.s[j - 1], t, sizeof(t));
        }
    size_t o = 0;
    out[0] = '\0';
    for (const char *m = msg ? msg : ""; *m;) {
        int hit = 0;
        for (int i = 0; i < z.n && !hit; i++) {
            size_t n = strlen(z.s[i]);
            if (strncmp(m, z.s[i], n) == 0) {
                out_append(out, len, &o, "****", 4);
                m += n;
                hit = 1;
            }
        }
        if (!hit)
            out_append(out, len, &o, m++, 1);
    }
    scrub_userinfo(out);
}

/* ---- the database name ------------------------------------------------ */

void wh_dsn_dbname(const char *dsn, char *out, size_t len)
{
    if (len == 0)
        return;
    out[0] = '\0';
    char user[256] = "";
    const char *sch = strstr(dsn, "://");
    if (sch != NULL) {
        /* scheme://[user[:password]@]hosts[/db][?k=v&...] */
        const char *p = sch + 3;
        const char *end;
        const char *at = uri_authority(p, &end);
        if (at != NULL) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            pct_decode(p, (size_t)((colon ? colon : at) - p), user, sizeof(user));
        }
        if (*end == '/')
            pct_decode(end + 1, strcspn(end + 1, "?"), out, len);
        const char *q = uri_query(end), *k, *eq;
        size_t n;
        while (uri_query_next(&q, &k, &n, &eq)) {
            if (eq != NULL && eq - k == 6 && strncmp(k, "dbname", 6) == 0)
                pct_decode(eq + 1, n - 7, out, len);
            else if (eq != NULL && eq - k == 4 && strncmp(k, "user", 4) == 0)
                pct_decode(eq + 1, n - 5, user, sizeof(user));
        }
    } else {
        const char *p = dsn;
        kv_pair kv;
        while (kv_next(&p, &kv) == KV_PAIR) {
            if (kv.klen == 6 && strncmp(kv.key, "dbname", 6) == 0)
                wh_strlcpy(out, kv.val, len);
            else if (kv.klen == 4 && strncmp(kv.key, "user", 4) == 0)
                wh_strlcpy(user, kv.val, sizeof(user));
        }
    }
    if (out[0] == '\0')
        wh_strlcpy(out, user, len);
}

/* ---- the server a connection string names ---- */

#define DSN_MAX_EPS 16

typedef struct dsn_ep {
    char host[256];
    char port[16];
} dsn_ep;

/* The server parts of a connection string as written (last one wins, as
 * in libpq): host, hostaddr and port lists and service. */
typedef struct dsn_srv {
    char host[512], hostaddr[512], port[128], service[128];
} dsn_srv;

static void srv_set(dsn_srv *s, const char *k, size_t kl, const char *v, size_t vl, int uri)
{
    char *dst = NULL;
    size_t len = 0;
    if (kl == 4 && strncmp(k, "host", 4) == 0)
        dst = s->host, len = sizeof(s->host);
    else if (kl == 8 && strncmp(k, "hostaddr", 8) == 0)
        dst = s->hostaddr, len = sizeof(s->hostaddr);
    else if (kl == 4 && strncmp(k, "port", 4) == 0)
        dst = s->port, len = sizeof(s->port);
    else if (kl == 7 && strncmp(k, "service", 7) == 0)
        dst = s->service, len = sizeof(s->service);
    if (dst == NULL)
        return;
    if (uri) {
        pct_decode(v, vl, dst, len);
    } else {
        size_t n = vl < len - 1 ? vl : len - 1;
        memcpy(dst, v, n);
        dst[n] = '\0';
    }
}

static void srv_parse(const char *dsn, dsn_srv *s)
{
    memset(s, 0, sizeof(*s));
    const char *sch = strstr(dsn, "://");
    if (sch != NULL) {
        const char *p = sch + 3;
        const char *end;
        const char *at = uri_authority(p, &end);
        const char *h = at ? at + 1 : p;
        /* host[:port][,host[:port]...] into the two lists */
        size_t ho = 0, po = 0;
        int first = 1;
        while (h < end) {
            const char *he, *item = h;
            if (*h == '[') {
                const char *rb = memchr(h, ']', (size_t)(end - h));
                he = rb ? rb + 1 : end;
            } else {
                he = h;
                while (he < end && *he != ',' && *he != ':')
                    he++;
            }
            const char *pe = he;
            const char *port = NULL;
            if (pe < end && *pe == ':') {
                port = pe + 1;
                while (pe < end && *pe != ',')
                    pe++;
            }
            while (pe < end && *pe != ',')
                pe++;
            if (!first) {
                if (ho + 1 < sizeof(s->host))
                    s->host[ho++] = ',';
                if (po + 1 < sizeof(s->port))
                    s->port[po++] = ',';
            }
            first = 0;
            ho += pct_decode(item, (size_t)(he - item), s->host + ho, sizeof(s->host) - ho);
            if (port != NULL)
                po += pct_decode(port, (size_t)(pe - port), s->port + po, sizeof(s->port) - po);
            s->host[ho] = '\0';
            s->port[po] = '\0';
            h = pe < end ? pe + 1 : end;
        }
        const char *q = uri_query(end), *k, *eq;
        size_t n;
        while (uri_query_next(&q, &k, &n, &eq))
            if (eq != NULL)
                srv_set(s, k, (size_t)(eq - k), eq + 1, n - (size_t)(eq - k) - 1, 1);
    } else {
        const char *p = dsn;
        kv_pair kv;
        while (kv_next(&p, &kv) == KV_PAIR)
            srv_set(s, kv.key, kv.klen, kv.val, kv.vlen, 0);
    }
}

/* Item i of the comma-separated list l (trimmed, truncated) into out; the
 * count of items. */
static int list_item(const char *l, int i, char *out, size_t len)
{
    int n = 0;
    out[0] = '\0';
    for (const char *p = l;; n++) {
        size_t k = strcspn(p, ",");
        if (n == i) {
            while (k > 0 && isspace((unsigned char)*p))
                p++, k--;
            while (k > 0 && isspace((unsigned char)p[k - 1]))
                k--;
            size_t c = k < len - 1 ? k : len - 1;
            memcpy(out, p, c);
            out[c] = '\0';
        }
        if (p[k] == '\0')
            return n + 1;
        p += k + 1;
    }
}

/* The servers a connection string can reach, normalised: the host lower
 * case without brackets, this machine (no host, a socket directory,
 * localhost, 127.0.0.1, ::1) as "local", no port as 5432; hostaddr when
 * given (what libpq connects to). Returns their count. */
static int dsn_endpoints(const char *dsn, dsn_ep *ep, int max)
{
    dsn_srv s;
    srv_parse(dsn != NULL ? dsn : "", &s);
    const char *hosts = s.hostaddr[0] != '\0' ? s.hostaddr : s.host;
    if (hosts[0] == '\0' && s.service[0] != '\0') {
        /* host from pg_service.conf, which this process does not read: one
         * service is one server, whatever it names */
        memcpy(ep[0].host, "service:", 8);
        wh_strlcpy(ep[0].host + 8, s.service, sizeof(ep[0].host) - 8);
        wh_strlcpy(ep[0].port, s.port[0] ? s.port : "5432", sizeof(ep[0].port));
        return 1;
    }
    int nh = list_item(hosts, 0, ep[0].host, sizeof(ep[0].host));
    char one[16];
    int np = list_item(s.port, 0, one, sizeof(one));
    int n = 0;
    for (int i = 0; i < nh && n < max; i++, n++) {
        char h[256];
        list_item(hosts, i, h, sizeof(h));
        char *p = h;
        size_t l = strlen(p);
        if (l >= 2 && p[0] == '[' && p[l - 1] == ']') {
            p[l - 1] = '\0';
            p++;
        }
        for (char *c = p; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (p[0] == '\0' || p[0] == '/' || p[0] == '@' || strcmp(p, "localhost") == 0 ||
            strcmp(p, "127.0.0.1") == 0 || strcmp(p, "::1") == 0)
            p = "local";
        wh_strlcpy(ep[n].host, p, sizeof(ep[n].host));
        char port[16];
        list_item(s.port, np == 1 ? 0 : i, port, sizeof(port));
        wh_strlcpy(ep[n].port, port[0] ? port : "5432", sizeof(ep[n].port));
    }
    return n;
}

int wh_dsn_same_server(const char *a, const char *b)
{
    dsn_ep ea[DSN_MAX_EPS], eb[DSN_MAX_EPS];
    int na = dsn_endpoints(a, ea, DSN_MAX_EPS), nb = dsn_endpoints(b, eb, DSN_MAX_EPS);
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (strcmp(ea[i].host, eb[j].host) == 0 && strcmp(ea[i].port, eb[j].port) == 0)
                return 1;
    return 0;
}

void wh_dsn_server(const char *dsn, char *out, size_t len)
{
    dsn_ep ep[1];
    if (len == 0)
        return;
    if (dsn_endpoints(dsn, ep, 1) < 1)
        wh_strlcpy(out, "local:5432", len);
    else if (strchr(ep[0].host, ':') != NULL && strncmp(ep[0].host, "service:", 8) != 0)
        snprintf(out, len, "[%s]:%s", ep[0].host, ep[0].port);
    else
        snprintf(out, len, "%s:%s", ep[0].host, ep[0].port);
}
