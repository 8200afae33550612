/* libFuzzer target for services/ingestor/ing_values and ing_types:
 * text-format column values decoded to JSON by type OID or by a render
 * descriptor (arrays, records, hstore literals), and descriptors built from
 * catalog rows.
 *
 * Input: byte 0 picks the mode:
 *   0xE0..0xEF  a descriptor from the list below (records, arrays of
 *               records, hstore, arrays of a domain over int[], enums);
 *   0xDF        catalog rows: byte 1 gives a row count (up to 16), then 6
 *               bytes per row (OID, typtype, element, base type, attribute
 *               flag, attribute type, all from small sets so rows refer to
 *               each other, cycles included); ing_types_load, then the rest
 *               rendered with each resulting descriptor;
 *   else        a type OID (from the list below, or raw when out of range:
 *               the next 4 bytes then give the OID).
 * The rest is the value text.
 * Oracles: the rendered value is valid JSON (json/jsonb and arrays of them
 * are embedded verbatim by design and are only checked for no crash); only
 * arrays and int2vector/oidvector render as containers by OID;
 * ing_is_json_number agrees with the JSON parser; a failed append on a
 * small buffer leaves no out-of-bounds write; ing_format_ts_utc on the
 * first 8 bytes never overflows its buffer.
 *
 * fuzz-sources: services/ingestor/ing_values.c services/ingestor/ing_types.c
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ing_types.h"
#include "ing_values.h"
#include "wh_buf.h"
#include "wh_json.h"
#include "wh_lsn.h"
#include "wh_util.h"

static const uint32_t oids[] = {
    ING_BOOLOID,
    ING_BYTEAOID,
    ING_CHAROID,
    ING_NAMEOID,
    ING_INT8OID,
    ING_INT2OID,
    ING_INT4OID,
    ING_TEXTOID,
    ING_OIDOID,
    ING_JSONOID,
    ING_FLOAT4OID,
    ING_FLOAT8OID,
    ING_BPCHAROID,
    ING_VARCHAROID,
    ING_DATEOID,
    ING_TIMESTAMPOID,
    ING_TIMESTAMPTZOID,
    ING_NUMERICOID,
    ING_UUIDOID,
    ING_JSONBOID,
    /* 20: arrays and vectors */
    ING_TEXTARRAYOID,
    ING_INT4ARRAYOID,
    1185 /* timestamptz[] */,
    1001 /* bytea[] */,
    1020 /* box[] */,
    1231 /* numeric[] */,
    1022 /* float8[] */,
    1000 /* bool[] */,
    ING_INT2VECTOROID,
    ING_OIDVECTOROID,
    1006 /* int2vector[] */,
    3807 /* jsonb[] */,
};

/* descriptors as ing_types builds them */
static const ing_vtype mood = {.oid = ING_TEXTOID, .kind = ING_VT_SCALAR};
static const ing_vtype dintarr = {.oid = ING_INT4ARRAYOID, .kind = ING_VT_SCALAR};
static const ing_vfield comp_f[] = {
    {"\"a\":", 4, ING_INT4OID, NULL},
    {"\"b\":", 4, ING_TEXTOID, NULL},
    {"\"m\":", 4, 16389, &mood},
    {"\"arr\":", 6, ING_INT4ARRAYOID, NULL},
    {"\"ts\":", 5, ING_TIMESTAMPTZOID, NULL},
    {"\"by\":", 5, ING_BYTEAOID, NULL},
};
static const ing_vtype comp = {.oid = 1, .kind = ING_VT_RECORD, .nfields = 6, .fields = comp_f};
static const ing_vtype comp_arr = {
    .oid = 2, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 1, .elem = &comp};
static const ing_vfield comp2_f[] = {
    {"\"c\":", 4, 1, &comp},
    {"\"cs\":", 5, 2, &comp_arr},
};
static const ing_vtype comp2 = {.oid = 3, .kind = ING_VT_RECORD, .nfields = 2, .fields = comp2_f};
static const ing_vtype hstore = {.oid = 4, .kind = ING_VT_HSTORE};
static const ing_vtype hstore_arr = {
    .oid = 5, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 4, .elem = &hstore};
static const ing_vtype dintarr_arr = {
    .oid = 6, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 7, .elem = &dintarr};
static const ing_vtype mood_arr = {
    .oid = 8, .kind = ING_VT_ARRAY, .delim = ';', .elem_oid = 9, .elem = &mood};
static const ing_vtype empty_rec = {.oid = 10, .kind = ING_VT_RECORD, .nfields = 0};
static const ing_vtype *const vts[] = {&comp,       &comp_arr,    &comp2,    &hstore,
                                       &hstore_arr, &dintarr_arr, &mood_arr, &empty_rec};
#define NVTS (sizeof vts / sizeof vts[0])
#define NOIDS (sizeof oids / sizeof oids[0])

static void must_be_json(const wh_buf *b, int container_ok)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (wh_json_parse(b->data, b->len, &j, err, sizeof err) != WH_OK)
        __builtin_trap();
    if (!container_ok && (j->type == WH_JSON_OBJECT || j->type == WH_JSON_ARRAY))
        __builtin_trap(); /* a scalar column never renders as a container */
    wh_json_free(j);
}

/* Renders s with t (unlimited, then bounded) and checks the JSON. */
static void typed(const ing_vtype *t, const char *s, size_t n)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    if (ing_value_typed(&b, t, s, n) != WH_OK)
        __builtin_trap();
    must_be_json(&b, 1);
    wh_buf_free(&b);
    wh_buf small;
    wh_buf_init(&small, n / 2 + 1);
    (void)ing_value_typed(&small, t, s, n);
    if (small.len > small.max)
        __builtin_trap();
    wh_buf_free(&small);
}

/* small sets the catalog rows pick from, so that they refer to each other */
static uint32_t ref_oid(uint8_t v)
{
    static const uint32_t builtin[] = {0, ING_INT4OID, ING_TEXTOID, ING_INT4ARRAYOID};
    return v < 4 ? builtin[v] : 10000u + (v % 8u);
}

static void catalog_rows(const uint8_t *data, size_t size)
{
    size_t nrows = size > 1 ? data[1] % 17u : 0, off = 2;
    if (off + nrows * 6 > size)
        return;
    static const char kinds[] = "bcdeprm";
    static const char *const names[] = {"a", "hstore", "b c", ""};
    ing_typerow rows[16];
    for (size_t i = 0; i < nrows; i++, off += 6) {
        const uint8_t *r = data + off;
        rows[i] = (ing_typerow){
            .oid = 10000u + (r[0] % 8u),
            .typtype = kinds[r[1] % 7u],
            .typname = names[r[1] / 7u % 4u],
            .elem = (r[2] & 0x80) ? ref_oid(r[2] & 0x7f) : 0,
            .elemdelim = (r[2] & 0x40) ? ';' : ',',
            .basetype = ref_oid(r[3]),
            .attname = (r[4] & 1) ? names[r[4] / 2u % 4u] : NULL,
            .atttype = ref_oid(r[5]),
        };
    }
    char err[WH_ERRLEN];
    ing_types *t = NULL;
    if (ing_types_new(&t, err, sizeof err) != WH_OK)
        return;
    if (ing_types_load(t, rows, nrows, err, sizeof err) != WH_OK)
        __builtin_trap();
    /* a second load replaces entries and keeps the old ones alive */
    const ing_vtype *before = ing_types_get(t, 10000);
    ing_types_expire(t);
    if (ing_types_load(t, rows, nrows, err, sizeof err) != WH_OK)
        __builtin_trap();
    const char *s = (const char *)data + off;
    size_t n = size - off;
    for (uint32_t oid = 10000; oid < 10008; oid++) {
        const ing_vtype *vt = ing_types_get(t, oid);
        if (vt)
            typed(vt, s, n);
    }
    if (before)
        typed(before, s, n);
    ing_types_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] == 0xDF) {
        catalog_rows(data, size);
        return 0;
    }
    if (data[0] >= 0xE0 && data[0] <= 0xEF) {
        typed(vts[data[0] % NVTS], (const char *)data + 1, size - 1);
        return 0;
    }
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
    uint32_t elem = 0;
    char delim;
    int is_array = ing_builtin_array(oid, &elem, &delim);
    if (oid != ING_JSONOID && oid != ING_JSONBOID && elem != ING_JSONOID && elem != ING_JSONBOID)
        must_be_json(&b, is_array || oid == ING_INT2VECTOROID || oid == ING_OIDVECTOROID);

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
    must_be_json(&b, 0);

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
