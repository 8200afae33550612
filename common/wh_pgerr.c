/* wh_pgerr: PostgreSQL error texts that are safe to log (see wh_pgerr.h). */
#include "wh_pgerr.h"
#include "wh_dsn.h"
#include "wh_util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* libpq's parse error without what it quotes: every "..." longer than one
 * character (a part of the DSN; one-character ones are syntax such as
 * "=") becomes "...". On one line. */
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
        out[o++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        p++;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
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
    return wh_seterr(err, errlen, "libpq cannot parse it: %s", safe[0] ? safe : "no reason given");
}
