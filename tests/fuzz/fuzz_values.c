/* libFuzzer target for services/ingestor/ing_values: text-format column
 * values decoded to JSON by type OID.
 *
 * Input: byte 0 picks a type OID (from the list below, or raw when it is out
 * of range: the next 4 bytes then give the OID), the rest is the value text.
 * Oracles: the rendered value is valid JSON (json/jsonb are embedded
 * verbatim by design and are only checked for no crash);
 * ing_is_json_number agrees with the JSON parser; a failed append on a
 * small buffer leaves no out-of-bounds write; ing_format_ts_utc on the
 * first 8 bytes never overflows its buffer.
 *
 * fuzz-sources: services/ingestor/ing_values.c
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ing_values.h"
#include "wh_buf.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

static const uint32_t oids[] = {
    ING_BOOLOID,      ING_BYTEAOID,       ING_CHAROID,    ING_NAMEOID,    ING_INT8OID,
    ING_INT2OID,      ING_INT4OID,        ING_TEXTOID,    ING_OIDOID,     ING_JSONOID,
    ING_FLOAT4OID,    ING_FLOAT8OID,      ING_BPCHAROID,  ING_VARCHAROID, ING_DATEOID,
    ING_TIMESTAMPOID, ING_TIMESTAMPTZOID, ING_NUMERICOID, ING_UUIDOID,    ING_JSONBOID,
};
#define NOIDS (sizeof oids / sizeof oids[0])

static void must_be_json(const wh_buf *b)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (wh_json_parse(b->data, b->len, &j, err, sizeof err) != WH_OK)
        __builtin_trap();
    if (j->type == WH_JSON_OBJECT || j->type == WH_JSON_ARRAY)
        __builtin_trap(); /* a scalar column never renders as a container */
    wh_json_free(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t oid;
    size_t off = 1;
    if (data[0] < NOIDS) {
        oid = oids[data[0]];
    } else if (data[0] < 2 * NOIDS || size < 5) {
        oid = oids[data[0] % NOIDS];
    } else {
        oid = wh_get_be32(data + 1);
        off = 5;
    }
    const char *s = (const char *)data + off;
    size_t n = size - off;

    wh_buf b;
    wh_buf_init(&b, 0);
    if (ing_value_json(&b, oid, s, n) != WH_OK)
        __builtin_trap(); /* unlimited buffer: only allocation can fail */
    if (oid != ING_JSONOID && oid != ING_JSONBOID)
        must_be_json(&b);

    /* the same value into a bounded buffer: may fail, must not overflow */
    wh_buf small;
    wh_buf_init(&small, n / 2 + 1);
    (void)ing_value_json(&small, oid, s, n);
    if (small.len > small.max)
        __builtin_trap();
    wh_buf_free(&small);

    wh_buf_reset(&b);
    if (ing_value_binary(&b, s, n) != WH_OK)
        __builtin_trap();
    must_be_json(&b);

    if (ing_is_json_number(s, n)) {
        wh_json *j = NULL;
        char err[WH_ERRLEN];
        if (wh_json_parse(s, n, &j, err, sizeof err) != WH_OK || j->type != WH_JSON_NUMBER)
            __builtin_trap();
        wh_json_free(j);
    }

    if (size >= 8) {
        char ts[40];
        int64_t us = (int64_t)wh_get_be64(data);
        int r = ing_format_ts_utc(us, ts, sizeof ts);
        if (r >= (int)sizeof ts || (r >= 0 && (size_t)r != strlen(ts)))
            __builtin_trap();
        char tiny[8];
        if (ing_format_ts_utc(us, tiny, sizeof tiny) >= 0)
            __builtin_trap();
    }
    wh_buf_free(&b);
    return 0;
}
