/* libFuzzer target for wh_filter (expression compiler, evaluation, column
 * rewriting) and dsp_envelope (every format) over one event.
 * Input: the expression, a NUL byte, then the event's JSON text (without a
 * NUL the whole input is the expression, evaluated on a fixed event).
 * fuzz-sources: services/dispatcher/dsp_envelope.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsp_envelope.h"
#include "wh_filter.h"
#include "wh_util.h"

static const char FIXED[] =
    "{\"id\":\"t:0/1:0\",\"tenant\":\"t\",\"lsn\":\"0/1\",\"seq\":0,\"xid\":7,"
    "\"commit_ts\":\"2026-11-22T01:02:03.1Z\",\"op\":\"update\",\"schema\":\"public\","
    "\"table\":\"orders\",\"key\":{\"id\":1},\"before\":{\"id\":1,\"a\":\"x\"},"
    "\"after\":{\"id\":1,\"a\":\"y\",\"n\":\"12.5\",\"b\":true},\"unchanged\":[\"c\"]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    size_t elen = nul ? (size_t)(nul - (const char *)data) : size;
    char *expr = malloc(elen + 1);
    if (!expr)
        return 0;
    memcpy(expr, data, elen);
    expr[elen] = '\0';
    const char *ev = nul ? nul + 1 : FIXED;
    size_t evlen = nul ? size - elen - 1 : sizeof(FIXED) - 1;

    const char *cols[] = {"a", "id"};
    const char *tables[] = {"ord*", "public.*"};
    wh_filter_spec spec = {.expr = expr,
                           .columns_exclude = cols,
                           .ncolumns_exclude = 2,
                           .tables = tables,
                           .ntables = 2};
    wh_filter *f = NULL;
    char err[256];
    if (wh_filter_compile(&spec, &f, err, sizeof(err)) == WH_OK) {
        wh_evidx ix[2];
        int m1 = wh_filter_match(f, ev, evlen);
        if (wh_filter_match_ix(f, ev, evlen, &ix[0]) != m1)
            __builtin_trap(); /* one answer with or without the index */
        /* the walk's index (quote map, predicted member order) is the
         * plain walk's */
        wh_evidx ref;
        wh_evidx_build_scan(f, ev, evlen, &ref);
        if (ix[0].state != ref.state || ix[0].found != ref.found ||
            ix[0].sub_found != ref.sub_found || ix[0].ev_off != ref.ev_off ||
            ix[0].ev_len != ref.ev_len)
            __builtin_trap();
        for (int i = 0; i < WH_EV_NFIELDS; i++)
            if ((ref.found & (1u << i)) &&
                (ix[0].off[i] != ref.off[i] || ix[0].len[i] != ref.len[i] ||
                 ix[0].type[i] != ref.type[i]))
                __builtin_trap();
        for (int j = 0; j < WH_EVX_SUB_MAX; j++)
            if ((ref.sub_found & (1u << j)) &&
                (ix[0].sub_off[j] != ref.sub_off[j] || ix[0].sub_len[j] != ref.sub_len[j] ||
                 ix[0].sub_type[j] != ref.sub_type[j]))
                __builtin_trap();
        /* and so is the one of the baseline maps (wh_evidx_baseline) */
        wh_evidx_baseline(1);
        wh_evidx bx;
        int m2 = wh_filter_match_ix(f, ev, evlen, &bx);
        wh_evidx_baseline(0);
        if (m2 != m1 || bx.state != ref.state || bx.found != ref.found ||
            bx.sub_found != ref.sub_found || bx.ev_off != ref.ev_off || bx.ev_len != ref.ev_len)
            __builtin_trap();
        for (int i = 0; i < WH_EV_NFIELDS; i++)
            if ((ref.found & (1u << i)) &&
                (bx.off[i] != ref.off[i] || bx.len[i] != ref.len[i] || bx.type[i] != ref.type[i]))
                __builtin_trap();
        for (int j = 0; j < WH_EVX_SUB_MAX; j++)
            if ((ref.sub_found & (1u << j)) &&
                (bx.sub_off[j] != ref.sub_off[j] || bx.sub_len[j] != ref.sub_len[j] ||
                 bx.sub_type[j] != ref.sub_type[j]))
                __builtin_trap();
        /* without a filter (the envelope's own walk: key, before and
         * after passed by their brackets) */
        wh_evidx nf, nref;
        wh_evidx_build(ev, evlen, &nf);
        wh_evidx_build_scan(NULL, ev, evlen, &nref);
        if (nf.state != nref.state || nf.found != nref.found || nf.ev_off != nref.ev_off ||
            nf.ev_len != nref.ev_len)
            __builtin_trap();
        for (int i = 0; i < WH_EV_NFIELDS; i++)
            if ((nref.found & (1u << i)) && (nf.off[i] != nref.off[i] || nf.len[i] != nref.len[i] ||
                                             nf.type[i] != nref.type[i]))
                __builtin_trap();
        ix[1] = ix[0];
        wh_buf b, b2;
        wh_buf_init(&b, 1 << 20);
        wh_buf_init(&b2, 1 << 20);
        (void)wh_filter_rewrite(f, ev, evlen, &b);
        const void *p[2] = {ev, ev};
        size_t l[2] = {evlen, evlen};
        dsp_env_out *out = malloc(sizeof(*out));
        for (int k = DSP_ENV_NATIVE; out && k <= DSP_ENV_CLOUDEVENTS_BINARY; k++) {
            dsp_env_opts o = {.kind = (dsp_env_kind)k, .columns = (k & 1) ? f : NULL, .now_ms = 1};
            int r1 = dsp_env_render(&o, p, l, 2, &b, out, err, sizeof(err));
            if (r1 == WH_OK && out->nheaders > DSP_ENV_HEADERS_MAX)
                __builtin_trap();
            /* the filter's index gives the same body as a fresh walk */
            size_t nh = out->nheaders;
            int r2 = dsp_env_render_ix(&o, p, l, ix, 2, &b2, out, err, sizeof(err));
            if (r1 != r2 || b.len != b2.len || memcmp(b.data, b2.data, b.len) != 0 ||
                out->nheaders != nh)
                __builtin_trap();
        }
        free(out);
        wh_buf_free(&b);
        wh_buf_free(&b2);
        wh_filter_free(f);
    } else if (strstr(err, "filter.expression") == NULL) {
        __builtin_trap(); /* every expression error names the part */
    }
    free(expr);
    return 0;
}
