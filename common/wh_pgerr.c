/* wh_pgerr: PostgreSQL error texts that are safe to log (see wh_pgerr.h). */
#include "wh_pgerr.h"
#include "wh_dsn.h"
#include "wh_util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* libpq's parse error without what it quotes: every "..." longer than one
 * character (a part of the DSN; one-character ones are syntax such as
 * "=") becomes "...". Not on one line yet (wh_pg_oneline after the scrub). */
static void unquote(const char *msg, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = msg; *p && o + 6 < len;) {
        if (*p == '"') {
            const char *e = strchr(p + 1, '"');
            if (e == NULL)
                e = p + strlen(p);
            if (e - p - 1 <= 1 && *e == '"') {
                size_t n = (size_t)(e - p) + 1;
                memcpy(out + o, p, n);
                o += n;
            } else {
                memcpy(out + o, "\"...\"", 5);
                o += 5;
            }
            p = *e ? e + 1 : e;
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
}

int wh_pgerr_dsn_check(const char *dsn, char *err, size_t errlen)
{
    if (wh_dsn_check(dsn, err, errlen) != WH_OK)
        return WH_ERR;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (opts != NULL) {
        PQconninfoFree(opts);
        return WH_OK;
    }
    char why[256], safe[256];
    unquote(perr ? perr : "", why, sizeof(why));
    PQfreemem(perr);
    wh_dsn_scrub(dsn, why, safe, sizeof(safe)); /* and in case it quoted without quotes */
    wh_pg_oneline(safe, safe, sizeof(safe));
    return wh_seterr(err, errlen, "libpq cannot parse it: %s", safe[0] ? safe : "no reason given");
}

int wh_pgerr_value_free(const char *c)
{
    if (c == NULL || strlen(c) != 5)
        return 0;
    static const char *const classes[] = {"08", "28", "3D", "53", "58"};
    for (size_t i = 0; i < WH_ARRAY_LEN(classes); i++)
        if (strncmp(c, classes[i], 2) == 0)
            return 1;
    static const char *const codes[] = {"57014", "42501", "42704", "42883",
                                        "42P01", "42703", "55000", "55006"};
    for (size_t i = 0; i < WH_ARRAY_LEN(codes); i++)
        if (strcmp(c, codes[i]) == 0)
            return 1;
    return strncmp(c, "57P", 3) == 0;
}

static int valid_sqlstate(const char *c)
{
    if (c == NULL || strlen(c) != 5)
        return 0;
    for (int i = 0; i < 5; i++)
        if (!((c[i] >= '0' && c[i] <= '9') || (c[i] >= 'A' && c[i] <= 'Z')))
            return 0;
    return 1;
}

void wh_pgerr_server(const char *severity, const char *sqlstate, const char *primary, char *out,
                     size_t len)
{
    char sev[16];
    wh_strlcpy(sev, severity && severity[0] ? severity : "ERROR", sizeof(sev));
    for (char *p = sev; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
            *p = '?';
    if (!valid_sqlstate(sqlstate)) {
        snprintf(out, len,
                 "%s:  message withheld (no SQLSTATE; it may quote a value: see the PostgreSQL "
                 "server log)",
                 sev);
        return;
    }
    if (!wh_pgerr_value_free(sqlstate) || primary == NULL || primary[0] == '\0') {
        snprintf(out, len,
                 "%s:  SQLSTATE %s (message withheld: it may quote a value; see the PostgreSQL "
                 "server log)",
                 sev, sqlstate);
        return;
    }
    char m[384];
    wh_pg_oneline(primary, m, sizeof(m));
    snprintf(out, len, "%s:  %s (SQLSTATE %s)", sev, m, sqlstate);
}

void wh_pgerr_result(const struct pg_result *res, char *out, size_t len)
{
    const PGresult *r = (const PGresult *)res;
    if (r == NULL) {
        snprintf(out, len, "no result (out of memory or the connection was lost)");
        return;
    }
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (code == NULL) { /* libpq's own (a server's error always has one) */
        wh_pg_oneline(PQresultErrorMessage(r), out, len);
        return;
    }
    wh_pgerr_server(PQresultErrorField(r, PG_DIAG_SEVERITY), code,
                    PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), out, len);
}

/* A control byte: one that breaks a line or would garble a log line. */
static int ctl_byte(unsigned char c)
{
    return c != '\0' && (c < 0x20 || c == 0x7f);
}

int wh_pg_oneline(const char *msg, char *out, size_t len)
{
    if (out == NULL || len == 0)
        return WH_ERR;
    /* o never passes the bytes read, so out may be msg */
    const unsigned char *p = (const unsigned char *)(msg ? msg : "");
    size_t o = 0, room = len - 1;
    int cut = 0;
    while (*p != '\0') {
        const unsigned char *run = p;
        int ctl = 0;
        while (*p == ' ' || ctl_byte(*p))
            ctl |= *p++ != ' ';
        if (p != run) {
            if (*p == '\0' || o == 0) /* trailing or leading */
                continue;
            size_t n = ctl ? 1 : (size_t)(p - run);
            if (n > room - o) {
                cut = 1;
                break;
            }
            memset(out + o, ' ', n);
            o += n;
            continue;
        }
        if (o == room) {
            cut = 1;
            if ((*p & 0xC0) == 0x80) { /* inside a UTF-8 sequence: drop its start */
                while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80)
                    o--;
                if (o > 0 && (unsigned char)out[o - 1] >= 0xC0)
                    o--;
            }
            while (o > 0 && out[o - 1] == ' ')
                o--;
            break;
        }
        out[o++] = (char)*p++;
    }
    out[o] = '\0';
    return cut ? WH_ERR : WH_OK;
}
