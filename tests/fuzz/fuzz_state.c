/* libFuzzer target for common/wh_state: wh_state_parse of the runtime state
 * document (docs/CONTROL.md), the JSON that PutState and the admin REST API
 * accept from outside.
 *
 * Input: the document bytes. Every document that parses must render, parse
 * back and render to the same bytes (canonical form), render redacted without
 * any of its secrets, clone deeply and give an effective config.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_state.h"
#include "wh_util.h"

static wh_config base;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    wh_config_defaults(&base);
    char err[WH_ERRLEN];
    if (wh_config_validate(&base, err, sizeof(err)) != WH_OK)
        abort();
    wh_log_init("fuzz", WH_LOG_ERROR);
    return 0;
}

/* Whether the redacted rendering still carries secret as a JSON string of
 * its own ("secret", not preceded by a backslash). The same characters inside
 * another value (a URL may hold them: the operator's choice, rendered as
 * given) do not count. */
static int secret_rendered(const char *doc, const char *secret)
{
    size_t n = strlen(secret);
    for (const char *p = doc; (p = strstr(p, secret)) != NULL; p++)
        if (p - doc >= 2 && p[-1] == '"' && p[-2] != '\\' && p[n] == '"')
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wh_state *s = NULL, *s2 = NULL, *c = NULL;
    char err[WH_ERRLEN];
    if (wh_state_parse(&s, (const char *)data, size, &base, err, sizeof(err)) != WH_OK) {
        if (s != NULL || err[0] == '\0')
            abort(); /* a failure always says why and returns nothing */
        return 0;
    }
    wh_buf a, b, r;
    wh_buf_init(&a, 0);
    wh_buf_init(&b, 0);
    wh_buf_init(&r, 0);
    if (wh_state_render(s, &a, 0) != WH_OK)
        abort();
    if (wh_state_parse(&s2, a.data, a.len, &base, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "rendered document does not parse: %s\n", err);
        abort();
    }
    if (wh_state_render(s2, &b, 0) != WH_OK || a.len != b.len || memcmp(a.data, b.data, a.len))
        abort(); /* not canonical */
    if (wh_state_render(s, &r, WH_STATE_REDACT) != WH_OK || wh_buf_cstr(&r) != WH_OK)
        abort();
    for (int i = 0; i < s->ntenants; i++)
        for (int j = 0; j < s->tenants[i].ntargets; j++)
            for (int k = 0; k < s->tenants[i].targets[j].nsecrets; k++)
                if (secret_rendered(r.data, s->tenants[i].targets[j].secrets[k]))
                    abort(); /* a secret in the redacted rendering */
    if (wh_state_clone(&c, s) != WH_OK)
        abort();
    wh_config eff;
    wh_state_effective(&eff, &base, c, s->ntenants > 0 ? s->tenants[0].name : NULL);
    /* what parses validates as a document already stored; as a new one
     * only the rules for what a write adds may refuse it (two tenants on
     * one replication slot of one server, a new tenant or target name
     * starting with '.' or '-') */
    if (wh_state_validate_write(c, c, err, sizeof(err)) != WH_OK)
        abort();
    if (wh_state_validate(c, err, sizeof(err)) != WH_OK &&
        strstr(err, "would share replication slot") == NULL &&
        strstr(err, "a new tenant's name must not start") == NULL &&
        strstr(err, "a new target's name must not start") == NULL)
        abort();
    wh_state_unref(c);
    wh_state_unref(s2);
    wh_state_unref(s);
    wh_buf_free(&a);
    wh_buf_free(&b);
    wh_buf_free(&r);
    return 0;
}
