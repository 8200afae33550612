/* adm_page: the server-rendered status page (see adm_page.h). */
#include "adm_page.h"

#include <inttypes.h>
#include <pthread.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "adm_slot.h"
#include "wh_util.h"

#define ADM_PAGE_REFRESH_S 5
#define ADM_PAGE_MAX_RATES 256

typedef struct rate_sample {
    char key[2 * WH_NAME_MAX + 2]; /* tenant/target */
    uint64_t at_ms;
    double delivered, failed;
    double rate, fail_rate; /* last computed, -1 = not yet */
} rate_sample;

struct adm_page {
    pthread_mutex_t mu;
    rate_sample rates[ADM_PAGE_MAX_RATES];
    int nrates;
};

int adm_page_new(adm_page **out)
{
    adm_page *p = calloc(1, sizeof(*p));
    if (!p)
        return WH_ERR;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return WH_OK;
}

void adm_page_free(adm_page *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p);
}

double adm_metric_sum(const char *text, const char *name, const char *label)
{
    double sum = 0;
    int found = 0;
    size_t nlen = strlen(name);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nlen && line[0] != '#' && strncmp(line, name, nlen) == 0 &&
            (line[nlen] == '{' || line[nlen] == ' ')) {
            const char *sp = memrchr(line, ' ', len);
            int ok = 1;
            if (label) {
                const char *close = line[nlen] == '{' ? memchr(line, '}', len) : NULL;
                size_t ll = strlen(label);
                ok = 0;
                for (const char *q = line + nlen; close && q + ll <= close; q++)
                    if (memcmp(q, label, ll) == 0) {
                        ok = 1;
                        break;
                    }
            }
            if (ok && sp) {
                char num[64];
                size_t k = len - (size_t)(sp + 1 - line);
                if (k < sizeof(num)) {
                    memcpy(num, sp + 1, k);
                    num[k] = '\0';
                    char *end;
                    double v = strtod(num, &end);
                    if (end != num) {
                        sum += v;
                        found = 1;
                    }
                }
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return found ? sum : -1;
}

static void esc(wh_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            wh_buf_puts(b, "&lt;");
            break;
        case '>':
            wh_buf_puts(b, "&gt;");
            break;
        case '&':
            wh_buf_puts(b, "&amp;");
            break;
        case '"':
            wh_buf_puts(b, "&quot;");
            break;
        case '\'':
            wh_buf_puts(b, "&#39;");
            break;
        default:
            wh_buf_putc(b, *s);
            break;
        }
    }
}

static void bytes_h(char *out, size_t len, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* delivered/s and failure share since the previous sample of this target
 * (at least 1 s old); the first render shows "-". */
static void rates(adm_page *p, const char *tenant, const char *target, double delivered,
                  double failed, double *rate, double *fail_rate)
{
    char key[2 * WH_NAME_MAX + 2];
    snprintf(key, sizeof(key), "%s/%s", tenant, target);
    uint64_t now = wh_now_ms();
    pthread_mutex_lock(&p->mu);
    rate_sample *r = NULL;
    for (int i = 0; i < p->nrates; i++)
        if (strcmp(p->rates[i].key, key) == 0)
            r = &p->rates[i];
    if (!r && p->nrates < ADM_PAGE_MAX_RATES) {
        r = &p->rates[p->nrates++];
        wh_strlcpy(r->key, key, sizeof(r->key));
        r->at_ms = now;
        r->delivered = delivered;
        r->failed = failed;
        r->rate = r->fail_rate = -1;
    }
    if (r && now - r->at_ms >= 1000 && delivered >= 0) {
        double dt = (double)(now - r->at_ms) / 1000.0;
        double dd = delivered - r->delivered, df = failed >= 0 ? failed - r->failed : 0;
        if (dd < 0 || df < 0) /* the dispatcher restarted */
            dd = df = 0;
        r->rate = dd / dt;
        r->fail_rate = dd + df > 0 ? df / (dd + df) : 0;
        r->at_ms = now;
        r->delivered = delivered;
        r->failed = failed >= 0 ? failed : 0;
    }
    *rate = r ? r->rate : -1;
    *fail_rate = r ? r->fail_rate : -1;
    pthread_mutex_unlock(&p->mu);
}

static const adm_stat *stat_of(const adm_stat st[ADM_NDAEMONS], const char *name)
{
    for (int i = 0; i < ADM_NDAEMONS; i++)
        if (strcmp(st[i].name, name) == 0)
            return &st[i];
    return NULL;
}

/* The ingestor's snapshot and backfill jobs (ing_snapshot's metrics), one
 * row each: table, kind, state, rows done / estimated, rate, ETA. Nothing
 * when there are none. */
static int snapshots(wh_buf *b, const char *im)
{
    static const char key[] = "walhook_ingestor_snapshot_state{";
    int rc = 0, n = 0;
    for (const char *l = strstr(im, key); l != NULL; l = strstr(l + 1, key)) {
        if (l != im && l[-1] != '\n')
            continue;
        const char *t = strstr(l, "table=\""), *k = strstr(l, "\",kind=\"");
        const char *st = strstr(l, "\",state=\""), *eol = strchr(l, '\n');
        if (!t || !k || !st || (eol && st > eol) || k < t)
            continue;
        char label[600], table[300], kind[16], state[16];
        snprintf(label, sizeof(label), "%.*s", (int)(st - t + 1), t); /* table="..",kind=".." */
        snprintf(table, sizeof(table), "%.*s", (int)(k - t - 7), t + 7);
        const char *ke = strchr(k + 8, '"'), *se = strchr(st + 9, '"');
        if (!ke || !se)
            continue;
        snprintf(kind, sizeof(kind), "%.*s", (int)(ke - (k + 8)), k + 8);
        snprintf(state, sizeof(state), "%.*s", (int)(se - (st + 9)), st + 9);
        if (n++ == 0)
            rc |= wh_buf_puts(b, "<h2>Snapshots and backfills</h2>\n<table id=\"snapshots\">"
                                 "<tr><th>table</th><th>kind</th><th>state</th><th>rows</th>"
                                 "<th>estimated</th><th>rows/s</th><th>ETA</th></tr>\n");
        double done = adm_metric_sum(im, "walhook_ingestor_snapshot_rows_total", label);
        double est = adm_metric_sum(im, "walhook_ingestor_snapshot_rows_estimated", label);
        double rate = adm_metric_sum(im, "walhook_ingestor_snapshot_rows_per_second", label);
        double eta = adm_metric_sum(im, "walhook_ingestor_snapshot_eta_seconds", label);
        rc |= wh_buf_puts(b, "<tr class=\"snapshot\"><td class=\"name\">");
        esc(b, table);
        rc |= wh_buf_puts(b, "</td><td>");
        esc(b, kind);
        rc |= wh_buf_printf(b, "</td><td class=\"%s\">",
                            strcmp(state, "refused") == 0 ? "bad" : "ok");
        esc(b, state);
        char eta_s[32];
        if (eta >= 0)
            snprintf(eta_s, sizeof(eta_s), "%.0f s", eta);
        else
            snprintf(eta_s, sizeof(eta_s), "-");
        rc |= wh_buf_printf(b,
                            "</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td>"
                            "<td class=\"num\">%.0f</td><td class=\"num\">%s</td></tr>\n",
                            done < 0 ? 0 : done, est < 0 ? 0 : est, rate < 0 ? 0 : rate, eta_s);
    }
    if (n > 0)
        rc |= wh_buf_puts(b, "</table>\n");
    return rc ? WH_ERR : WH_OK;
}

int adm_page_render(adm_page *p, const wh_state *s, const char *store_err,
                    const adm_stat st[ADM_NDAEMONS], const adm_slot_info *slots,
                    const adm_page_target *prog, wh_buf *b)
{
    int rc = WH_OK;
    rc |= wh_buf_printf(
        b,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"refresh\" content=\"%d\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>walhook status</title>\n<style>"
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}"
        "h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}"
        ".ok{color:#176f2c;font-weight:600}.bad{color:#b3261e;font-weight:600}"
        ".paused{color:#8a6d00;font-weight:600}.muted{color:#777}"
        "</style></head><body>\n<h1>walhook</h1>\n",
        ADM_PAGE_REFRESH_S);

    wh_buf tmp;
    wh_buf_init(&tmp, 0);
    int ready = adm_readiness(st, ADM_NDAEMONS, &tmp);
    wh_buf_free(&tmp);
    rc |= wh_buf_printf(b, "<p id=\"overall\">overall: <span class=\"%s\">%s</span></p>\n",
                        ready ? "ok" : "bad", ready ? "ready" : "not ready");

    rc |= wh_buf_puts(b, "<h2>Daemons</h2>\n<table id=\"daemons\"><tr><th>daemon</th><th>up</th>"
                         "<th>ready</th><th>state</th><th>error</th></tr>\n");
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        rc |= wh_buf_puts(b, "<tr><td>");
        esc(b, st[i].name);
        rc |= wh_buf_printf(b, "</td><td class=\"%s\">%s</td><td>%s</td><td>",
                            st[i].up ? "ok" : "bad", st[i].up ? "yes" : "no",
                            st[i].ready ? "yes" : "no");
        esc(b, st[i].state);
        rc |= wh_buf_puts(b, "</td><td>");
        esc(b, st[i].error[0] ? st[i].error : st[i].reason);
        rc |= wh_buf_puts(b, "</td></tr>\n");
    }
    rc |= wh_buf_puts(b, "</table>\n");

    if (!s) {
        rc |= wh_buf_puts(b, "<p class=\"bad\">runtime state unavailable: ");
        esc(b, store_err ? store_err : "unknown");
        rc |= wh_buf_puts(b, "</p>\n");
    } else {
        const adm_stat *ing = stat_of(st, "ingestor");
        const adm_stat *dsp = stat_of(st, "dispatcher");
        const char *dm = dsp && dsp->metrics ? dsp->metrics : "";
        rc |= wh_buf_printf(b, "<p class=\"muted\">state version %" PRIu64 "</p>\n", s->version);
        rc |= wh_buf_puts(b, "<h2>Tenants</h2>\n<table id=\"tenants\"><tr><th>tenant</th>"
                             "<th>slot</th><th>ingestor</th><th>slot lag</th>"
                             "<th>wal_status</th><th>confirmed flush</th>"
                             "<th>backpressure zone</th><th>slot policy</th></tr>\n");
        for (int i = 0; i < s->ntenants; i++) {
            const wh_state_tenant *t = &s->tenants[i];
            const adm_slot_info *si = slots ? &slots[i] : NULL;
            rc |= wh_buf_puts(b, "<tr class=\"tenant\"><td class=\"name\">");
            esc(b, t->name);
            rc |= wh_buf_puts(b, "</td><td>");
            esc(b, t->slot);
            rc |= wh_buf_puts(b, "</td><td>");
            /* the admin queries the ingestor of its own file's tenant */
            esc(b, ing && ing->up ? ing->state : "-");
            rc |= wh_buf_puts(b, "</td>");
            if (!si || si->error[0]) {
                rc |= wh_buf_puts(b, "<td class=\"lag bad\">unknown</td><td colspan=\"2\" "
                                     "class=\"bad\">");
                esc(b, si ? si->error : "not queried");
                rc |= wh_buf_puts(b, "</td>");
            } else if (!si->found) {
                rc |= wh_buf_puts(b, "<td class=\"lag bad\">no slot</td><td>-</td><td>-</td>");
            } else {
                char lag[32];
                if (si->lag_bytes >= 0)
                    bytes_h(lag, sizeof(lag), (double)si->lag_bytes);
                else
                    snprintf(lag, sizeof(lag), "unknown");
                rc |= wh_buf_printf(b, "<td class=\"lag num\">%s</td><td>", lag);
                esc(b, si->wal_status[0] ? si->wal_status : "-");
                rc |= wh_buf_puts(b, "</td><td>");
                esc(b, si->confirmed_flush_lsn[0] ? si->confirmed_flush_lsn : "-");
                rc |= wh_buf_puts(b, "</td>");
            }
            /* adm_slot: from the ingestor's metrics */
            adm_slot_view sv;
            adm_slot_view_get(st, t->name, &sv);
            rc |= wh_buf_printf(b, "<td class=\"zone %s\">%s</td><td class=\"policy\">",
                                sv.zone == 2   ? "bad"
                                : sv.zone == 1 ? "paused"
                                : sv.zone == 0 ? "ok"
                                               : "muted",
                                adm_zone_name(sv.zone));
            if (sv.configured[0] && strcmp(sv.configured, sv.effective) != 0)
                rc |= wh_buf_printf(b, "%s (configured %s)", sv.effective, sv.configured);
            else
                esc(b, sv.configured[0] ? sv.configured : "-");
            rc |= wh_buf_puts(b, "</td></tr>\n");
        }
        rc |= wh_buf_puts(b, "</table>\n");

        rc |= snapshots(b, ing && ing->up && ing->metrics ? ing->metrics : "");

        rc |= wh_buf_puts(b, "<h2>Targets</h2>\n<table id=\"targets\"><tr><th>tenant</th>"
                             "<th>target</th><th>state</th><th>backlog</th>"
                             "<th>delivered/s</th><th>failure rate</th><th>mean latency</th>"
                             "<th>delivered</th><th>last error</th></tr>\n");
        int k = 0;
        for (int i = 0; i < s->ntenants; i++) {
            const wh_state_tenant *t = &s->tenants[i];
            for (int j = 0; j < t->ntargets; j++, k++) {
                const wh_state_target *tg = &t->targets[j];
                char label[WH_NAME_MAX + 16];
                snprintf(label, sizeof(label), "target=\"%s\"", tg->name);
                double delivered = adm_metric_sum(dm, "walhook_events_delivered_total", label);
                double failed = adm_metric_sum(dm, "walhook_delivery_failures_total", label);
                double lsum = adm_metric_sum(dm, "walhook_delivery_latency_seconds_sum", label);
                double lcnt = adm_metric_sum(dm, "walhook_delivery_latency_seconds_count", label);
                double rate, frate;
                rates(p, t->name, tg->name, delivered, failed, &rate, &frate);
                rc |= wh_buf_puts(b, "<tr class=\"target\"><td>");
                esc(b, t->name);
                rc |= wh_buf_puts(b, "</td><td class=\"name\">");
                esc(b, tg->name);
                /* the store's mark (retention cap, force_resync) comes first */
                int ns = adm_slot_needs_snapshot(st, t->name, tg->name);
                /* the dispatcher's: 410 disabled, blocked, last error */
                adm_target_rt rt;
                adm_target_runtime(st, t->name, tg->name, &rt);
                /* a stored filter that does not compile: the dispatcher
                 * refuses the target (written before filters were checked) */
                char ferr[WH_ERRLEN];
                int refused = wh_delivery_check_filter(&tg->dl, ferr, sizeof(ferr)) != WH_OK;
                if (refused) {
                    rc |= wh_buf_puts(b, "</td><td class=\"bad\" title=\"");
                    esc(b, ferr);
                    rc |= wh_buf_puts(b, "\">refused: ");
                    esc(b, ferr);
                    rc |= wh_buf_puts(b, "</td>");
                } else {
                    const char *rts = adm_target_rt_state(&rt);
                    rc |= wh_buf_printf(b, "</td><td class=\"%s\">%s</td>",
                                        ns || (!tg->paused && rts) ? "bad"
                                        : tg->paused               ? "paused"
                                                                   : "ok",
                                        ns            ? "NEEDS_SNAPSHOT"
                                        : tg->paused  ? "paused"
                                        : rt.disabled ? "disabled (410 Gone: resume it)"
                                        : rt.blocked  ? "blocked (on_failure = block)"
                                                      : "active");
                }
                char cell[48];
                if (prog && prog[k].has_progress) {
                    double back = prog[k].end.lsn > prog[k].committed.lsn
                                      ? (double)(prog[k].end.lsn - prog[k].committed.lsn)
                                      : 0;
                    bytes_h(cell, sizeof(cell), back);
                } else {
                    snprintf(cell, sizeof(cell), "-");
                }
                rc |= wh_buf_printf(b, "<td class=\"num\">%s</td>", cell);
                if (rate >= 0)
                    snprintf(cell, sizeof(cell), "%.1f", rate);
                else
                    snprintf(cell, sizeof(cell), "-");
                rc |= wh_buf_printf(b, "<td class=\"num\">%s</td>", cell);
                if (frate >= 0)
                    snprintf(cell, sizeof(cell), "%.1f%%", 100.0 * frate);
                else
                    snprintf(cell, sizeof(cell), "-");
                rc |= wh_buf_printf(b, "<td class=\"num\">%s</td>", cell);
                if (lcnt > 0)
                    snprintf(cell, sizeof(cell), "%.1f ms", 1000.0 * lsum / lcnt);
                else
                    snprintf(cell, sizeof(cell), "-");
                rc |= wh_buf_printf(b, "<td class=\"num\">%s</td>", cell);
                if (delivered >= 0)
                    snprintf(cell, sizeof(cell), "%.0f", delivered);
                else
                    snprintf(cell, sizeof(cell), "-");
                rc |= wh_buf_printf(b, "<td class=\"num\">%s</td>", cell);
                if (rt.err_at > 0) {
                    time_t at = (time_t)rt.err_at;
                    struct tm tm;
                    char ts[32] = "";
                    if (gmtime_r(&at, &tm))
                        strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S UTC", &tm);
                    rc |= wh_buf_printf(b, "<td class=\"err\">%s: ", ts);
                    esc(b, rt.error);
                    rc |= wh_buf_puts(b, "</td></tr>\n");
                } else {
                    rc |= wh_buf_puts(b, "<td>-</td></tr>\n");
                }
            }
        }
        rc |= wh_buf_puts(b, "</table>\n");
    }
    rc |= wh_buf_printf(b,
                        "<p class=\"muted\">refreshes every %d s | <a href=\"/metrics\">"
                        "metrics</a> | <a href=\"/readyz\">readyz</a> | "
                        "<a href=\"/v1/openapi.json\">API</a></p>\n</body></html>\n",
                        ADM_PAGE_REFRESH_S);
    return rc == WH_OK ? WH_OK : WH_ERR;
}

/* ---- redaction of error details for the open pages ---- */

typedef struct redact_out {
    char *p;
    size_t n, cap;
} redact_out;

static void rput(redact_out *o, const char *s, size_t len)
{
    for (size_t i = 0; i < len && o->n + 1 < o->cap; i++)
        o->p[o->n++] = s[i];
}

static int is_word_char(char ch)
{
    return ch != '\0' && ch != ' ' && ch != '\t' && ch != '\n' && ch != ',' && ch != ';' &&
           ch != '"' && ch != '(' && ch != ')';
}

static int is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* An address in parentheses ("(10.0.0.5)", "(::1)", "(fe80::1%eth0)"): hex
 * digits, '.' and ':' only, with at least one '.' or ':', and an IPv6 zone
 * after '%'. */
static int is_paren_addr(const char *s, size_t len)
{
    int sep = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%' && sep) { /* a zone: an interface name */
            for (size_t z = i + 1; z < len; z++)
                if (!(isalnum((unsigned char)s[z]) || s[z] == '_' || s[z] == '-' || s[z] == '.'))
                    return 0;
            return i + 1 < len;
        }
        if (ch == '.' || ch == ':')
            sep = 1;
        else if (!is_hex(ch))
            return 0;
    }
    return sep;
}

/* An unquoted IPv6 address: "2001:db8::5", "fe80::1%eth0", "[::1]:7001"
 * (bracketed, or with "::"; "12:00:01" is not one). */
static int is_ipv6_word(const char *s, size_t len)
{
    if (len > 2 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        return close != NULL && is_paren_addr(s + 1, (size_t)(close - s) - 1);
    }
    size_t a = 0;
    while (a < len && s[a] != '%')
        a++;
    for (size_t i = 0; i + 1 < a; i++)
        if (s[i] == ':' && s[i + 1] == ':')
            return is_paren_addr(s, len);
    /* no "::": eight groups (2001:db8:1:2:3:4:5:6, no group of zeros to
     * compress), or six and an IPv4 address; a ':' after it may end the
     * word */
    int colons = 0, dots = 0, group = 0;
    for (size_t i = 0; i < a; i++) {
        if (s[i] == ':') {
            colons++;
            group = 0;
        } else if (s[i] == '.') {
            dots++;
            group = 0;
        } else if (++group > 4) {
            return 0;
        }
    }
    if (a > 0 && s[a - 1] == ':')
        colons--;
    return (colons == 7 || (colons == 6 && dots == 3)) && is_paren_addr(s, len);
}

/* Whether s[i] is preceded by word (case-insensitive) and one space, at a
 * word start. */
static int preceded_by(const char *s, size_t i, const char *word)
{
    size_t n = strlen(word);
    if (i < n + 1 || s[i - 1] != ' ' || strncasecmp(s + i - 1 - n, word, n) != 0)
        return 0;
    return i == n + 1 || !is_word_char(s[i - 2 - n]);
}

/* The connection keywords whose value names the environment, in an
 * unquoted key=value pair (a conninfo string). */
static int is_conn_key(const char *s, size_t len)
{
    static const char *const keys[] = {"host",    "hostaddr", "port",       "user",
                                       "dbname",  "database", "password",   "service",
                                       "sslcert", "sslkey",   "sslrootcert"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if (len == strlen(keys[k]) && strncasecmp(s, keys[k], len) == 0)
            return 1;
    return 0;
}

/* A dotted IPv4 address (digits with three dots). */
static int is_ipv4_word(const char *s, size_t len)
{
    int dots = 0, digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (!digits)
                return 0;
            dots++;
            digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9') {
            digits++;
        } else {
            return 0;
        }
    }
    return dots == 3 && digits > 0;
}

/* Whether the quoted string at s[q] names the environment: a path, or
 * what libpq 15's messages (and the server's connection errors) quote after
 * these words: server at "host", host name "h", for user "u", role "r",
 * database "d", on socket "/path", host "h" (pg_hba), certificate file
 * "/f", certificate for "h", network address "a", service "s",
 * requirepeer specifies "u", port number: "p", in URI: "postgresql://..",
 * URI query parameter: "k=v", LDAP URL "ldap://..", percent-encoded
 * token: "..", parser routine: "uri". */
static int names_environment(const char *s, size_t q)
{
    static const char *const words[] = {"at",        "host",      "name",    "user",     "role",
                                        "socket",    "file",      "for",     "database", "address",
                                        "service",   "specifies", "number",  "URI",      "URL",
                                        "parameter", "token",     "routine", "after"};
    if (s[q + 1] == '/')
        return 1;
    /* a URI whatever word is before it: libpq's unexpected character
     * error ends with (expected ...): and the URI, password included */
    const char *close = strchr(s + q + 1, '"');
    const char *sch = strstr(s + q + 1, "://");
    if (sch != NULL && (close == NULL || sch < close))
        return 1;
    size_t e = q;
    while (e > 0 && s[e - 1] == ' ')
        e--;
    if (e > 0 && s[e - 1] == ':') /* "number: \"p\"" */
        e--;
    size_t b = e;
    while (b > 0 && ((s[b - 1] >= 'a' && s[b - 1] <= 'z') || (s[b - 1] >= 'A' && s[b - 1] <= 'Z')))
        b--;
    for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
        if (e - b == strlen(words[k]) && strncasecmp(s + b, words[k], e - b) == 0)
            return 1;
    /* "percent-encoded value: \"...\"" (a part of a URI: a password); not
     * every value ("invalid sslmode value: \"x\"" stays) */
    if (e - b == 5 && strncmp(s + b, "value", 5) == 0 && preceded_by(s, b, "percent-encoded"))
        return 1;
    /* requirepeer's "actual peer user name is \"u\"" */
    return e - b == 2 && strncmp(s + b, "is", 2) == 0 && preceded_by(s, b, "user name");
}

/* The closing quote of a name that starts before q (s[q] is the first '"'
 * after its opening one): PostgreSQL and libpq quote names without
 * escaping a '"' inside them (database "my"db" does not exist), so the
 * name ends at the first '"' followed by the end, a space or a
 * punctuation mark, not by a letter; q when none is. A name with '" '
 * inside still ends early: what follows it is shown. */
static const char *quoted_name_end(const char *q)
{
    for (const char *e = q; e != NULL; e = strchr(e + 1, '"'))
        if (e[1] == '\0' || strchr(" \t\n,.;:)", e[1]) != NULL)
            return e;
    return q;
}

int adm_redact_detail(char *s, size_t size)
{
    if (s == NULL || size == 0 || s[0] == '\0')
        return 0;
    char *buf = malloc(size);
    if (buf == NULL) {
        wh_strlcpy(s, "(details hidden)", size);
        return 1;
    }
    redact_out o = {buf, 0, size};
    int n = 0;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        int word_start = i == 0 || !is_word_char(s[i - 1]);
        if (s[i] == '"') {
            const char *end = strchr(s + i + 1, '"');
            int env = names_environment(s, i);
            if (env && end != NULL)
                end = quoted_name_end(end);
            size_t qlen = end ? (size_t)(end - s) + 1 - i : len - i;
            if (env) {
                rput(&o, "\"...\"", end ? 5 : 4);
                n++;
            } else { /* a publication, slot, table name...: kept */
                rput(&o, s + i, qlen);
            }
            i += qlen;
            continue;
        }
        if (s[i] == '(') {
            const char *end = strchr(s + i + 1, ')');
            if (end && is_paren_addr(s + i + 1, (size_t)(end - s) - i - 1)) {
                rput(&o, "(...)", 5);
                i = (size_t)(end - s) + 1;
                n++;
                continue;
            }
        }
        if (word_start && strncmp(s + i, "port ", 5) == 0 && s[i + 5] >= '0' && s[i + 5] <= '9') {
            rput(&o, "port ...", 8);
            for (i += 5; s[i] >= '0' && s[i] <= '9'; i++)
                ;
            n++;
            continue;
        }
        if (word_start && is_word_char(s[i])) {
            size_t w = i;
            while (is_word_char(s[w]))
                w++;
            const char *sch = strstr(s + i, "://");
            if (sch && (size_t)(sch - s) < w) { /* an endpoint URL: keep its scheme */
                rput(&o, s + i, (size_t)(sch - s) - i + 3);
                rput(&o, "...", 3);
                i = w;
                n++;
                continue;
            }
            if (s[i] == '/' && w - i > 1) { /* a path: keep its last component */
                const char *base = s + w;
                while (base > s + i && base[-1] != '/')
                    base--;
                rput(&o, ".../", 4);
                rput(&o, base, (size_t)(s + w - base));
                i = w;
                n++;
                continue;
            }
            const char *eq = memchr(s + i, '=', w - i);
            if (eq != NULL && is_conn_key(s + i, (size_t)(eq - s) - i)) {
                rput(&o, s + i, (size_t)(eq - s) - i + 1); /* host=..., user=... */
                rput(&o, "...", 3);
                i = w;
                n++;
                continue;
            }
            /* an unquoted name where libpq quotes one: server at h, port;
             * database d / role r / user u does not exist */
            if (preceded_by(s, i, "server at") ||
                ((preceded_by(s, i, "database") || preceded_by(s, i, "role") ||
                  preceded_by(s, i, "user")) &&
                 strncmp(s + w, " does not exist", 15) == 0)) {
                rput(&o, "...", 3);
                i = w;
                n++;
                continue;
            }
            const char *colon = memchr(s + i, ':', w - i);
            if (is_ipv6_word(s + i, w - i) ||
                is_ipv4_word(s + i, colon ? (size_t)(colon - s) - i : w - i)) {
                rput(&o, "...", 3); /* a.b.c.d, a.b.c.d:port */
                if (s[w - 1] == ':')
                    rput(&o, ":", 1);
                i = w;
                n++;
                continue;
            }
            rput(&o, s + i, w - i);
            i = w;
            continue;
        }
        rput(&o, s + i, 1);
        i++;
    }
    o.p[o.n] = '\0';
    memcpy(s, buf, o.n + 1);
    free(buf);
    return n;
}
