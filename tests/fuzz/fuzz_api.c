/* libFuzzer target for the admin API's route layer (adm_api_handle) on an
 * in-memory store: request paths, methods, headers and JSON bodies. Every
 * input must get a well-formed answer (a status in 200..503 and, for JSON
 * answers, a body libjansson parses), never a crash or a leak.
 * Input: "METHOD PATH\n" then one flags byte (bit 0: admin token, bit 1:
 * read token, bit 2: If-Match "1", bit 3: no Content-Type), then the body.
 * fuzz-sources: services/admin/adm_api.c services/admin/adm_auth.c
 * fuzz-sources: services/admin/adm_page.c services/admin/adm_query.c
 * fuzz-sources: services/admin/adm_slot.c services/admin/adm_bg.c
 * fuzz-libs: -ljansson
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/admin_memstore.h"

const char adm_openapi_json[] = "{\"openapi\":\"3.1.0\"}";
const size_t adm_openapi_json_len = sizeof(adm_openapi_json) - 1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    wh_log_init("fuzz", WH_LOG_ERROR + 1); /* quiet */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    if (!nl || (size_t)((const uint8_t *)nl - data) > 512)
        return 0;
    char line[513];
    size_t ll = (size_t)((const uint8_t *)nl - data);
    memcpy(line, data, ll);
    line[ll] = '\0';
    char *sp = strchr(line, ' ');
    if (!sp)
        return 0;
    *sp = '\0';
    size_t rest = size - ll - 1;
    const uint8_t *p = (const uint8_t *)nl + 1;
    uint8_t flags = rest ? p[0] : 0;
    if (rest) {
        p++;
        rest--;
    }

    static memstore m;
    static adm_auth *auth;
    char err[WH_ERRLEN];
    if (memstore_init(&m) != WH_OK)
        __builtin_trap();
    if (!auth && adm_auth_from_tokens(&auth, "read-token-0123456789", "admin-token-0123456789", 1,
                                      err, sizeof(err)) != WH_OK)
        __builtin_trap();
    adm_backend be = memstore_backend(&m);
    adm_api *api = NULL;
    if (adm_api_new(&api, &m.base, &be, auth, err, sizeof(err)) != WH_OK)
        __builtin_trap();

    adm_request q;
    memset(&q, 0, sizeof(q));
    q.method = line;
    q.path = sp + 1;
    q.authorization = (flags & 1)   ? "Bearer admin-token-0123456789"
                      : (flags & 2) ? "Bearer read-token-0123456789"
                                    : NULL;
    q.if_match = (flags & 4) ? "\"1\"" : NULL;
    q.content_type = (flags & 8) ? NULL : "application/json";
    q.body = (const char *)p;
    q.body_len = rest;
    adm_response r;
    adm_response_init(&r);
    adm_api_handle(api, &q, &r);
    if (r.status < 200 || r.status > 503)
        __builtin_trap();
    if (strcmp(r.content_type, "application/json") == 0 && r.body.len) {
        json_t *j = json_loadb(r.body.data, r.body.len, 0, NULL);
        if (!j)
            __builtin_trap();
        json_decref(j);
    }
    /* a second request on the state the first one left */
    if (r.status < 300 && strcmp(line, "GET") != 0) {
        adm_request g;
        memset(&g, 0, sizeof(g));
        g.method = "GET";
        g.path = "/v1/tenants";
        g.authorization = "Bearer read-token-0123456789";
        adm_api_handle(api, &g, &r);
        if (r.status != 200)
            __builtin_trap();
    }
    adm_response_free(&r);
    adm_api_free(api);
    memstore_free(&m);
    return 0;
}
