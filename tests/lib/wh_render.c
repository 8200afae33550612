/* wh_render: renders one webhook request the way the dispatcher does
 * (dsp_envelope for the body, content type and ce-* headers; dsp_webhook
 * for the Standard Webhooks headers, one signature per secret), for tests
 * that check walhook's output with reference implementations.
 *
 *   wh_render --envelope native|debezium|cloudevents|cloudevents-binary
 *             [--events N] [--secret whsec_...]... --out DIR
 *
 * Writes DIR/body (the request body) and DIR/headers ("Name: value" lines).
 * The N events (1..3) are fixed samples of the ingestor's envelope. Exit 0
 * ok, 2 usage, 1 rendering failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/dispatcher/dsp_envelope.h"
#include "../../services/dispatcher/dsp_webhook.h"
#include "wh_util.h"

static const char *const EVENTS[] = {
    "{\"id\":\"default:0/1A2B3C8:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":0,"
    "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\",\"schema\":"
    "\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":null,\"after\":{\"id\":1,"
    "\"amount\":\"12.50\",\"note\":\"caf\\u00e9\"}}",
    "{\"id\":\"default:0/1A2B3C8:1\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":1,"
    "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"update\",\"schema\":"
    "\"public\",\"table\":\"order lines\",\"key\":{\"id\":7},\"before\":{\"id\":7,\"q\":1},"
    "\"after\":{\"id\":7,\"q\":2}}",
    "{\"id\":\"default:0/1A2B3D0:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3D0\",\"seq\":0,"
    "\"xid\":736,\"commit_ts\":\"2026-11-22T01:02:04Z\",\"op\":\"delete\",\"schema\":"
    "\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":{\"id\":1},\"after\":null}",
};

static int usage(void)
{
    fprintf(stderr, "usage: wh_render --envelope KIND [--events N] [--secret S]... --out DIR\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *kind = "native", *out = NULL;
    const char *secrets[DSP_KEYS_MAX];
    int nsecrets = 0, nev = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--envelope") == 0)
            kind = argv[++i];
        else if (strcmp(argv[i], "--events") == 0)
            nev = atoi(argv[++i]);
        else if (strcmp(argv[i], "--secret") == 0 && nsecrets < DSP_KEYS_MAX)
            secrets[nsecrets++] = argv[++i];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[++i];
        else
            return usage();
    }
    if (!out || nev < 1 || nev > 3)
        return usage();
    char err[WH_ERRLEN];
    dsp_env_opts o = {.db = "shop"};
    if (dsp_env_parse(kind, &o.kind, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_render: %s\n", err);
        return 2;
    }
    dsp_key keys[DSP_KEYS_MAX];
    for (int i = 0; i < nsecrets; i++) {
        if (dsp_key_parse(&keys[i], secrets[i], err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_render: secret %d: %s\n", i + 1, err);
            return 2;
        }
    }
    const void *p[3];
    size_t l[3];
    for (int i = 0; i < nev; i++) {
        p[i] = EVENTS[i];
        l[i] = strlen(EVENTS[i]);
    }
    wh_buf body;
    wh_buf_init(&body, 0);
    static dsp_env_out eo;
    if (dsp_env_render(&o, p, l, (size_t)nev, &body, &eo, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_render: %s\n", err);
        return 1;
    }
    /* webhook-id: the id of the request's last event (as the dispatcher) */
    const char *last = EVENTS[eo.consumed - 1];
    const char *idp = strstr(last, "\"id\":\"") + 6;
    char id[64];
    snprintf(id, sizeof(id), "%.*s", (int)(strchr(idp, '"') - idp), idp);
    dsp_headers h;
    if (dsp_headers_build(&h, keys, nsecrets, id, eo.consumed,
                          (int64_t)(wh_wallclock_us() / 1000000), body.data, body.len, err,
                          sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_render: %s\n", err);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/body", out);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(body.data, 1, body.len, f) != body.len || fclose(f) != 0) {
        fprintf(stderr, "wh_render: cannot write %s\n", path);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/headers", out);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "wh_render: cannot write %s\n", path);
        return 1;
    }
    fprintf(f, "Content-Type: %s\n%s\n%s\n%s\n", eo.content_type, h.batch_size, h.id, h.timestamp);
    if (h.signature[0])
        fprintf(f, "%s\n", h.signature);
    for (size_t i = 0; i < eo.nheaders; i++)
        fprintf(f, "%s\n", eo.headers[i]);
    fclose(f);
    wh_buf_free(&body);
    return 0;
}
