/* cli_api: `walhook tenants|targets|dlq|settings|slots ...`, the admin REST API
 * for people at a terminal (libcurl + libjansson). See cli_api.h. */
#include "cli_api.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/admin/adm_auth.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_util.h"

#define CLI_MAX_ARGS 64

typedef struct cli_opts {
    char url[512]; /* admin base URL, no trailing slash */
    char token[256];
    char tenant[WH_NAME_MAX];
    char cacert[WH_PATH_MAX];
    char proxy[512]; /* --proxy / WALHOOK_ADMIN_PROXY; "" = none, whatever the environment */
    int json;
    const char *args[CLI_MAX_ARGS]; /* positionals after the command */
    int nargs;
} cli_opts;

static int usage(const char *cmd)
{
    fprintf(
        stderr,
        "usage: walhook %s ... [--admin URL] [--json] [-c FILE] [--tenant T] [--cacert PEM]\n"
        "                      [--proxy URL]\n"
        "  walhook tenants  [list | get T | add T dsn=DSN [slot=S publication=P tables=..]\n"
        "                   | set T key=value... | rm T]  (keys of the tenant's source, e.g.\n"
        "                   ddl=true snapshot=initial slot_policy=track; =null: the default)\n"
        "  walhook targets  [list | get N | add N URL [secret=.. start=end|X/X:seq key=value..]\n"
        "                   | set N key=value... | pause N | resume N | rm N\n"
        "                   | offset N end|X/X:seq]       (of --tenant, default: the file's)\n"
        "  walhook dlq      [list N [after=ID] [limit=K] | show N ID | replay N all|ID...\n"
        "                   | purge N [ID...]]          (dead letters of target N)\n"
        "  walhook settings [list | set name=value...]\n"
        "  walhook slots\n"
        "The token comes from WALHOOK_ADMIN_TOKEN, else <data_dir>/admin.token.\n"
        "No proxy is used (http_proxy, ALL_PROXY ... are ignored: they would see the token)\n"
        "unless --proxy URL or WALHOOK_ADMIN_PROXY=URL names one.\n"
        "Exit status: 0 done, 1 server or connection error, 2 usage or refused (4xx).\n",
        cmd);
    return 2;
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    wh_buf *b = arg;
    return wh_buf_append(b, p, size * n) == WH_OK ? size * n : 0;
}

/* Performs one request; returns the HTTP status (0 on a transport error,
 * err then says why). out receives the body. */
static long request(const cli_opts *o, const char *method, const char *path, const char *body,
                    wh_buf *out, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    if (!c) {
        wh_seterr(err, errlen, "cannot initialise libcurl");
        return 0;
    }
    char url[1024], auth[300];
    snprintf(url, sizeof(url), "%s%s", o->url, path);
    struct curl_slist *h = NULL;
    if (o->token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->token);
        h = curl_slist_append(h, auth);
        explicit_bzero(auth, sizeof(auth));
    }
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* the token goes to the admin alone: a proxy from the environment is
     * not used unless named for this (o->proxy), like the dispatcher's */
    curl_easy_setopt(c, CURLOPT_PROXY, o->proxy);
    /* the path as built: each name is one escaped segment (path_name), and
     * a stored name "." or ".." must reach the admin as it is */
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (o->cacert[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        wh_seterr(err, errlen, "%s: %s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    wh_buf_cstr(out);
    return status;
}

/* ---- output ---- */

static void print_scalar(FILE *f, json_t *v)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), f);
    } else if (json_is_null(v) || !v) {
        fputs("-", f);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(s ? s : "?", f);
        free(s);
    }
}

/* "key: value" lines of an object (nested objects as prefix.key). */
static void print_object(json_t *o, const char *prefix)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (json_is_object(v)) {
            char p[128];
            snprintf(p, sizeof(p), "%s%s.", prefix, k);
            print_object(v, p);
            continue;
        }
        printf("%s%s: ", prefix, k);
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                if (i)
                    fputs(", ", stdout);
                if (json_is_object(e))
                    print_scalar(stdout, json_object_get(e, "name"));
                else
                    print_scalar(stdout, e);
            }
        } else {
            print_scalar(stdout, v);
        }
        putchar('\n');
    }
}

static int show_error(long status, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    json_t *e = j ? json_object_get(j, "error") : NULL;
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    fprintf(stderr, "walhook: %ld %s: %s\n", status, code ? code : "error",
            msg ? msg : (body && *body ? body : "(no message)"));
    json_decref(j);
    return status >= 400 && status < 500 ? 2 : 1;
}

static void col(const char *s, int w)
{
    printf("%-*s ", w, s ? s : "-");
}

static void table_tenants(json_t *j)
{
    printf("%-20s %-20s %-20s %-8s %s\n", "TENANT", "SLOT", "PUBLICATION", "TARGETS", "DSN");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "tenants"), i, t)
    {
        json_t *src = json_object_get(t, "source");
        col(json_string_value(json_object_get(t, "name")), 20);
        col(json_string_value(json_object_get(src, "slot")), 20);
        col(json_string_value(json_object_get(src, "publication")), 20);
        printf("%-8zu ", json_array_size(json_object_get(t, "targets")));
        print_scalar(stdout, json_object_get(src, "dsn"));
        putchar('\n');
    }
}

static void table_targets(json_t *j)
{
    printf("%-20s %-14s %-7s %s\n", "TARGET", "STATE", "SECRETS", "URL");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "targets"), i, t)
    {
        col(json_string_value(json_object_get(t, "name")), 20);
        /* the admin's state (needs_snapshot first); an older admin has none */
        const char *st = json_string_value(json_object_get(t, "state"));
        col(st ? st : json_is_true(json_object_get(t, "paused")) ? "paused" : "active", 14);
        printf("%-7zu ", json_array_size(json_object_get(t, "secrets")));
        print_scalar(stdout, json_object_get(t, "url"));
        /* the dispatcher's last failed attempt (an older admin has none) */
        json_t *le = json_object_get(t, "last_error");
        const char *ea = json_string_value(json_object_get(le, "at"));
        const char *ee = json_string_value(json_object_get(le, "error"));
        if (ee != NULL)
            printf("  (last error %s: %s)", ea ? ea : "-", ee);
        putchar('\n');
    }
}

static void table_settings(json_t *j)
{
    printf("%-32s %s\n", "SETTING", "VALUE");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(j, "settings"), k, v)
    {
        printf("%-32s ", k);
        print_scalar(stdout, v);
        putchar('\n');
    }
}

static void table_slots(json_t *j)
{
    printf("%-16s %-16s %-6s %-14s %-10s %-14s %-7s %-12s %s\n", "TENANT", "SLOT", "ACTIVE",
           "LAG_BYTES", "WAL_STATUS", "SAFE_WAL_SIZE", "ZONE", "POLICY", "CONFIRMED_FLUSH");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "slots"), i, s)
    {
        col(json_string_value(json_object_get(s, "tenant")), 16);
        col(json_string_value(json_object_get(s, "slot")), 16);
        const char *e = json_string_value(json_object_get(s, "error"));
        if (e) {
            printf("error: %s\n", e);
            continue;
        }
        if (!json_is_true(json_object_get(s, "exists"))) {
            printf("(no such slot)\n");
            continue;
        }
        col(json_is_true(json_object_get(s, "active")) ? "yes" : "no", 6);
        char n[32];
        json_t *lag = json_object_get(s, "lag_bytes");
        snprintf(n, sizeof(n), "%lld", (long long)json_integer_value(lag));
        col(json_is_integer(lag) ? n : "-", 14);
        col(json_string_value(json_object_get(s, "wal_status")), 10);
        json_t *safe = json_object_get(s, "safe_wal_size");
        snprintf(n, sizeof(n), "%lld", (long long)json_integer_value(safe));
        col(json_is_integer(safe) ? n : "-", 14);
        /* docs/SLOTS.md: the zone and the policy in effect (null: unknown) */
        const char *zone = json_string_value(json_object_get(s, "backpressure_zone"));
        col(zone ? zone : "-", 7);
        const char *pol =
            json_string_value(json_object_get(json_object_get(s, "slot_policy"), "effective"));
        col(pol ? pol : "-", 12);
        print_scalar(stdout, json_object_get(s, "confirmed_flush_lsn"));
        putchar('\n');
    }
}

static void table_dlq(json_t *j)
{
    printf("%-22s %-8s %-6s %-28s %-12s %s\n", "ID", "ATTEMPTS", "STATUS", "DEAD_AT", "REASON",
           "EVENT");
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(j, "items"), i, d)
    {
        col(json_string_value(json_object_get(d, "id")), 22);
        printf("%-8lld ", (long long)json_integer_value(json_object_get(d, "attempts")));
        json_t *le = json_object_get(d, "last_error");
        char st[16];
        snprintf(st, sizeof(st), "%lld",
                 (long long)json_integer_value(json_object_get(le, "status")));
        col(json_is_object(le) ? st : "-", 6);
        col(json_string_value(json_object_get(d, "dead_at")), 28);
        col(json_string_value(json_object_get(d, "reason")), 12);
        print_scalar(stdout, json_object_get(d, "event_id"));
        putchar('\n');
    }
    printf("total: %lld, waiting for replay: %lld",
           (long long)json_integer_value(json_object_get(j, "total")),
           (long long)json_integer_value(json_object_get(j, "replay_pending")));
    json_t *next = json_object_get(j, "next");
    if (json_is_string(next))
        printf(", more: after=%s", json_string_value(next));
    putchar('\n');
}

typedef void (*table_fn)(json_t *j);

/* Runs a request and prints its answer; returns the exit status. */
static int run(const cli_opts *o, const char *method, const char *path, json_t *body,
               table_fn table)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    wh_buf out;
    wh_buf_init(&out, 64u << 20);
    char err[WH_ERRLEN];
    long status = request(o, method, path, text, &out, err, sizeof(err));
    free(text);
    int rc;
    if (status == 0) {
        fprintf(stderr, "walhook: cannot reach the admin: %s\n", err);
        rc = 1;
    } else if (status < 200 || status > 299) {
        rc = show_error(status, out.data ? out.data : "");
    } else if (o->json) {
        fputs(out.data ? out.data : "", stdout);
        rc = 0;
    } else {
        json_t *j = json_loads(out.data ? out.data : "", 0, NULL);
        if (!j)
            fputs(out.data ? out.data : "", stdout);
        else if (table)
            table(j);
        else
            print_object(j, "");
        json_decref(j);
        rc = 0;
    }
    wh_buf_free(&out);
    return rc;
}

/* ---- key=value arguments ---- */

/* "1234" -> integer, "true"/"false" -> bool, "null" -> null, else string. */
static json_t *value_of(const char *s)
{
    if (strcmp(s, "true") == 0)
        return json_true();
    if (strcmp(s, "false") == 0)
        return json_false();
    if (strcmp(s, "null") == 0)
        return json_null();
    const char *p = s + (*s == '-');
    int num = *p != '\0';
    for (; *p; p++)
        num &= isdigit((unsigned char)*p) != 0;
    if (num)
        return json_integer(strtoll(s, NULL, 10));
    return json_string(s);
}

/* Adds args[from..] "key=value" to o (secret=.. as "secret"; secrets=a,b as
 * an array). Returns WH_ERR on a malformed argument. */
static int add_pairs(json_t *o, const cli_opts *op, int from, const char *cmd)
{
    for (int i = from; i < op->nargs; i++) {
        const char *eq = strchr(op->args[i], '=');
        if (!eq || eq == op->args[i]) {
            fprintf(stderr, "walhook %s: expected key=value, got '%s'\n", cmd, op->args[i]);
            return WH_ERR;
        }
        char key[128];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - op->args[i]), op->args[i]);
        if (strcmp(key, "secrets") == 0) {
            json_t *arr = json_array();
            char *copy = strdup(eq + 1), *save = NULL;
            for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
                 t = strtok_r(NULL, ",", &save))
                json_array_append_new(arr, json_string(t));
            free(copy);
            json_object_set_new(o, key, arr);
        } else if (strcmp(key, "secret") == 0 || strcmp(key, "url") == 0 ||
                   strcmp(key, "start") == 0 || strcmp(key, "dsn") == 0 ||
                   strcmp(key, "slot") == 0 || strcmp(key, "publication") == 0 ||
                   strcmp(key, "tables") == 0 || strcmp(key, "log_level") == 0) {
            json_object_set_new(o, key, json_string(eq + 1));
        } else {
            json_object_set_new(o, key, value_of(eq + 1));
        }
    }
    return WH_OK;
}

static int need(const cli_opts *o, int n, const char *cmd)
{
    if (o->nargs < n) {
        usage(cmd);
        return 0;
    }
    return 1;
}

/* A name (tenant, target) as one path segment of len bytes into out: the
 * admin's name alphabet (letters, digits, '_', '.', '-'), percent-escaped
 * all the same. Anything else ("../../t2", "t/dlq") is refused here: the
 * admin decodes %2F, so escaping alone would not keep it one segment.
 * Returns WH_ERR (exit 2) with a message. */
static int path_name(const char *cmd, const char *what, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    int ok = n > 0 && n < WH_NAME_MAX;
    for (const char *p = name; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-';
    if (!ok) {
        fprintf(stderr,
                "walhook %s: '%s' is not a %s name (1 to %d letters, digits, '_', '.' or '-')\n",
                cmd, name, what, WH_NAME_MAX - 1);
        return WH_ERR;
    }
    char *e = curl_easy_escape(NULL, name, (int)n);
    if (e == NULL || strlen(e) >= len) {
        curl_free(e);
        fprintf(stderr, "walhook %s: %s name '%s' is too long\n", cmd, what, name);
        return WH_ERR;
    }
    memcpy(out, e, strlen(e) + 1);
    curl_free(e);
    return WH_OK;
}

/* ---- commands ---- */

static int cmd_tenants(cli_opts *o)
{
    const char *sub = o->nargs ? o->args[0] : "list";
    char path[256];
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
        return run(o, "GET", "/v1/tenants", NULL, table_tenants);
    if (!need(o, 2, "tenants"))
        return 2;
    char seg[3 * WH_NAME_MAX];
    if (path_name("tenants", "tenant", o->args[1], seg, sizeof(seg)) != WH_OK)
        return 2;
    snprintf(path, sizeof(path), "/v1/tenants/%s", seg);
    if (strcmp(sub, "get") == 0)
        return run(o, "GET", path, NULL, NULL);
    if (strcmp(sub, "rm") == 0 || strcmp(sub, "delete") == 0)
        return run(o, "DELETE", path, NULL, NULL);
    if (strcmp(sub, "add") == 0 || strcmp(sub, "set") == 0) {
        json_t *src = json_object();
        if (add_pairs(src, o, 2, "tenants") != WH_OK) {
            json_decref(src);
            return 2;
        }
        json_t *b = json_object();
        if (strcmp(sub, "add") == 0)
            json_object_set_new(b, "name", json_string(o->args[1]));
        json_object_set_new(b, "source", src);
        if (strcmp(sub, "add") == 0)
            return run(o, "POST", "/v1/tenants", b, NULL);
        return run(o, "PATCH", path, b, NULL);
    }
    fprintf(stderr, "walhook tenants: unknown subcommand '%s'\n", sub);
    return usage("tenants");
}

static int cmd_targets(cli_opts *o)
{
    const char *sub = o->nargs ? o->args[0] : "list";
    char base[256 + 3 * WH_NAME_MAX], path[384 + 6 * WH_NAME_MAX], seg[3 * WH_NAME_MAX];
    if (path_name("targets", "tenant", o->tenant, seg, sizeof(seg)) != WH_OK)
        return 2;
    snprintf(base, sizeof(base), "/v1/tenants/%s/targets", seg);
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
        return run(o, "GET", base, NULL, table_targets);
    if (!need(o, 2, "targets"))
        return 2;
    if (strcmp(sub, "add") != 0 &&
        path_name("targets", "target", o->args[1], seg, sizeof(seg)) != WH_OK)
        return 2;
    snprintf(path, sizeof(path), "%s/%s", base, seg);
    if (strcmp(sub, "get") == 0)
        return run(o, "GET", path, NULL, NULL);
    if (strcmp(sub, "rm") == 0 || strcmp(sub, "delete") == 0)
        return run(o, "DELETE", path, NULL, NULL);
    if (strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0) {
        strncat(path, strcmp(sub, "pause") == 0 ? "/pause" : "/resume",
                sizeof(path) - strlen(path) - 1);
        return run(o, "POST", path, NULL, NULL);
    }
    if (strcmp(sub, "offset") == 0) {
        if (!need(o, 3, "targets"))
            return 2;
        strncat(path, "/offset", sizeof(path) - strlen(path) - 1);
        json_t *b = strcmp(o->args[2], "end") == 0 ? json_pack("{s:s}", "to", "end")
                                                   : json_pack("{s:s}", "position", o->args[2]);
        return run(o, "POST", path, b, NULL);
    }
    if (strcmp(sub, "add") == 0) {
        if (!need(o, 3, "targets"))
            return 2;
        json_t *b = json_pack("{s:s,s:s}", "name", o->args[1], "url", o->args[2]);
        if (add_pairs(b, o, 3, "targets") != WH_OK) {
            json_decref(b);
            return 2;
        }
        return run(o, "POST", base, b, NULL);
    }
    if (strcmp(sub, "set") == 0) {
        json_t *b = json_object();
        if (add_pairs(b, o, 2, "targets") != WH_OK) {
            json_decref(b);
            return 2;
        }
        return run(o, "PATCH", path, b, NULL);
    }
    fprintf(stderr, "walhook targets: unknown subcommand '%s'\n", sub);
    return usage("targets");
}

/* Appends "?k=v&..." of args[from..] (after=, limit=) to path. */
static int query_pairs(const cli_opts *o, int from, char *path, size_t len)
{
    char sep = '?';
    for (int i = from; i < o->nargs; i++) {
        const char *a = o->args[i];
        if (strncmp(a, "after=", 6) != 0 && strncmp(a, "limit=", 6) != 0) {
            fprintf(stderr, "walhook dlq list: expected after=ID or limit=N, got '%s'\n", a);
            return WH_ERR;
        }
        for (const char *p = a; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("=-:/", *p)) {
                fprintf(stderr, "walhook dlq list: bad character in '%s'\n", a);
                return WH_ERR;
            }
        size_t n = strlen(path);
        if ((size_t)snprintf(path + n, len - n, "%c%s", sep, a) >= len - n)
            return WH_ERR;
        sep = '&';
    }
    return WH_OK;
}

static int cmd_dlq(cli_opts *o)
{
    const char *sub = o->nargs ? o->args[0] : "";
    if (!need(o, 2, "dlq"))
        return 2;
    char path[1024], seg_t[3 * WH_NAME_MAX], seg_g[3 * WH_NAME_MAX];
    if (path_name("dlq", "tenant", o->tenant, seg_t, sizeof(seg_t)) != WH_OK ||
        path_name("dlq", "target", o->args[1], seg_g, sizeof(seg_g)) != WH_OK)
        return 2;
    snprintf(path, sizeof(path), "/v1/tenants/%s/targets/%s/dlq", seg_t, seg_g);
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0) {
        if (query_pairs(o, 2, path, sizeof(path)) != WH_OK)
            return 2;
        return run(o, "GET", path, NULL, table_dlq);
    }
    if (strcmp(sub, "show") == 0 || strcmp(sub, "get") == 0) {
        if (!need(o, 3, "dlq"))
            return 2;
        char id[64];
        wh_strlcpy(id, o->args[2], sizeof(id));
        char *slash = strchr(id, '/'); /* "0/1A:0" -> "0-1A:0": one path segment */
        if (slash)
            *slash = '-';
        for (const char *p = id; *p; p++)
            if (!isxdigit((unsigned char)*p) && !strchr("-:", *p)) {
                fprintf(stderr, "walhook dlq show: '%s' is not a dead-letter id\n", o->args[2]);
                return 2;
            }
        char *e = curl_easy_escape(NULL, id, 0);
        size_t n = strlen(path);
        snprintf(path + n, sizeof(path) - n, "/%s", e ? e : "");
        curl_free(e);
        return run(o, "GET", path, NULL, NULL);
    }
    if (strcmp(sub, "replay") == 0) {
        if (!need(o, 3, "dlq"))
            return 2;
        json_t *b;
        if (o->nargs == 3 && strcmp(o->args[2], "all") == 0) {
            b = json_pack("{s:b}", "all", 1);
        } else {
            json_t *ids = json_array();
            for (int i = 2; i < o->nargs; i++)
                json_array_append_new(ids, json_string(o->args[i]));
            b = json_pack("{s:o}", "ids", ids);
        }
        strncat(path, "/replay", sizeof(path) - strlen(path) - 1);
        return run(o, "POST", path, b, NULL);
    }
    if (strcmp(sub, "purge") == 0) {
        for (int i = 2; i < o->nargs; i++) {
            size_t n = strlen(path);
            for (const char *p = o->args[i]; *p; p++)
                if (!isxdigit((unsigned char)*p) && !strchr("-:/", *p)) {
                    fprintf(stderr, "walhook dlq purge: '%s' is not a dead-letter id\n",
                            o->args[i]);
                    return 2;
                }
            if ((size_t)snprintf(path + n, sizeof(path) - n, "%s%s", i == 2 ? "?ids=" : ",",
                                 o->args[i]) >= sizeof(path) - n)
                return usage("dlq");
        }
        return run(o, "DELETE", path, NULL, NULL);
    }
    fprintf(stderr, "walhook dlq: unknown subcommand '%s'\n", sub);
    return usage("dlq");
}

static int cmd_settings(cli_opts *o)
{
    const char *sub = o->nargs ? o->args[0] : "list";
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0 || strcmp(sub, "get") == 0)
        return run(o, "GET", "/v1/settings", NULL, table_settings);
    if (strcmp(sub, "set") == 0) {
        if (!need(o, 2, "settings"))
            return 2;
        json_t *b = json_object();
        for (int i = 1; i < o->nargs; i++) {
            const char *eq = strchr(o->args[i], '=');
            if (!eq || eq == o->args[i]) {
                fprintf(stderr, "walhook settings: expected name=value, got '%s'\n", o->args[i]);
                json_decref(b);
                return 2;
            }
            char key[128];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - o->args[i]), o->args[i]);
            json_object_set_new(b, key, value_of(eq + 1));
        }
        return run(o, "PATCH", "/v1/settings", b, table_settings);
    }
    fprintf(stderr, "walhook settings: unknown subcommand '%s'\n", sub);
    return usage("settings");
}

static int cmd_slots(cli_opts *o)
{
    if (o->nargs > 1 || (o->nargs == 1 && strcmp(o->args[0], "list") != 0))
        return usage("slots");
    return run(o, "GET", "/v1/slots", NULL, table_slots);
}

int cli_cmd_api(int argc, char **argv)
{
    static cli_opts o;
    static wh_config cfg;
    memset(&o, 0, sizeof(o));
    const char *cmd = argv[0], *conf = NULL, *admin = NULL, *tenant = NULL, *proxy = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--admin") == 0 || strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ||
             strcmp(a, "--tenant") == 0 || strcmp(a, "-t") == 0 || strcmp(a, "--cacert") == 0 ||
             strcmp(a, "--proxy") == 0) &&
            i + 1 >= argc)
            return usage(cmd);
        if (strcmp(a, "--admin") == 0)
            admin = argv[++i];
        else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            conf = argv[++i];
        else if (strcmp(a, "--tenant") == 0 || strcmp(a, "-t") == 0)
            tenant = argv[++i];
        else if (strcmp(a, "--cacert") == 0)
            wh_strlcpy(o.cacert, argv[++i], sizeof(o.cacert));
        else if (strcmp(a, "--proxy") == 0)
            proxy = argv[++i];
        else if (strcmp(a, "--json") == 0)
            o.json = 1;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return usage(cmd), 0;
        else if (a[0] == '-' && a[1] == '-')
            return fprintf(stderr, "walhook %s: unknown option '%s'\n", cmd, a), usage(cmd);
        else if (o.nargs < CLI_MAX_ARGS)
            o.args[o.nargs++] = a;
        else
            return usage(cmd);
    }
    char err[WH_ERRLEN];
    if (conf) {
        if (wh_config_load(&cfg, conf, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "walhook %s: %s\n", cmd, err);
            return 2;
        }
    } else {
        wh_config_defaults(&cfg);
        if (wh_config_apply_env(&cfg, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "walhook %s: %s\n", cmd, err);
            return 2;
        }
    }
    if (!admin)
        admin = getenv("WALHOOK_ADMIN_URL");
    if (admin && strstr(admin, "://"))
        snprintf(o.url, sizeof(o.url), "%s", admin);
    else
        snprintf(o.url, sizeof(o.url), "%s://%s", cfg.admin_tls_cert[0] ? "https" : "http",
                 admin ? admin : cfg.admin_listen);
    size_t n = strlen(o.url);
    while (n > 0 && o.url[n - 1] == '/')
        o.url[--n] = '\0';
    wh_strlcpy(o.tenant, tenant ? tenant : cfg.tenant, sizeof(o.tenant));
    if (!proxy)
        proxy = getenv("WALHOOK_ADMIN_PROXY");
    if (proxy && strlen(proxy) >= sizeof(o.proxy)) {
        fprintf(stderr, "walhook %s: the proxy URL is longer than %zu bytes\n", cmd,
                sizeof(o.proxy) - 1);
        return 2;
    }
    wh_strlcpy(o.proxy, proxy ? proxy : "", sizeof(o.proxy));
    const char *tok = getenv("WALHOOK_ADMIN_TOKEN");
    if (tok && *tok) {
        wh_strlcpy(o.token, tok, sizeof(o.token));
    } else {
        char path[WH_PATH_MAX + 16];
        if (cfg.admin_tokens_file[0])
            wh_strlcpy(path, cfg.admin_tokens_file, sizeof(path));
        else
            snprintf(path, sizeof(path), "%s/admin.token", cfg.data_dir);
        if (adm_auth_read_admin_token(path, o.token, sizeof(o.token), err, sizeof(err)) != WH_OK)
            o.token[0] = '\0'; /* the server answers 401 and says so */
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (strcmp(cmd, "tenants") == 0)
        rc = cmd_tenants(&o);
    else if (strcmp(cmd, "targets") == 0)
        rc = cmd_targets(&o);
    else if (strcmp(cmd, "settings") == 0)
        rc = cmd_settings(&o);
    else if (strcmp(cmd, "dlq") == 0)
        rc = cmd_dlq(&o);
    else
        rc = cmd_slots(&o);
    curl_global_cleanup();
    explicit_bzero(o.token, sizeof(o.token));
    return rc;
}
