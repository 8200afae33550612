/* wh_slotcfg: a tenant's own source settings. See wh_slotcfg.h. */
#include "wh_slotcfg.h"

#include <jansson.h>
#include <libconfig.h>
#include <stdio.h>
#include <string.h>

#include "wh_util.h"

static const char *const keys[WH_SLOTCFG_N] = {
    "slot_policy", "safety_lag_bytes", "lag_warn_bytes", "lag_max_bytes", "lag_warn_action",
    "lag_max_action", "force_resync_lag_bytes", "disconnected_resync_after_s", "slot_check_ms",
    /* capture (WH_SLOTCFG_NSLOT on) */
    "snapshot", "snapshot_chunk_rows", "ddl"};

/* the allowed values of the string keys ("" ends a list) */
static const char *const enums[][4] = {
    {"independent", "track", "", ""},
    {"independent", "none", "", ""},
    {"independent", "force_resync", "none", ""},
    {"never", "initial", "", ""},
};

static const char *const *enum_of(const char *key)
{
    if (strcmp(key, "slot_policy") == 0)
        return enums[0];
    if (strcmp(key, "lag_warn_action") == 0)
        return enums[1];
    if (strcmp(key, "lag_max_action") == 0)
        return enums[2];
    if (strcmp(key, "snapshot") == 0)
        return enums[3];
    return NULL;
}

static const wh_config_entry *entry_of(int k)
{
    char path[64];
    snprintf(path, sizeof(path), "source.%s", keys[k]);
    return wh_config_find(path);
}

static int is_bool(int k)
{
    const wh_config_entry *e = entry_of(k);
    return e != NULL && e->type == WH_CT_BOOL;
}

int wh_slotcfg_key(const char *name)
{
    for (int k = 0; k < WH_SLOTCFG_N; k++)
        if (strcmp(name, keys[k]) == 0)
            return k;
    return -1;
}

static int set_str(wh_slotcfg *sc, int k, const char *s, const char *path, char *err, size_t errlen)
{
    const char *const *e = enum_of(keys[k]);
    int ok = 0;
    for (int i = 0; e != NULL && i < 4 && e[i][0]; i++)
        ok |= strcmp(s, e[i]) == 0;
    if (!ok)
        return wh_seterr(err, errlen, "%s: '%.40s' is not %s%s%s%s%s", path, s, e ? e[0] : "",
                         e && e[1][0] ? (e[2][0] ? ", " : " or ") : "", e ? e[1] : "",
                         e && e[2][0] ? " or " : "", e ? e[2] : "");
    wh_strlcpy(sc->str[k], s, sizeof(sc->str[k]));
    sc->set |= 1u << k;
    return WH_OK;
}

static int set_num(wh_slotcfg *sc, int k, int64_t v, const char *path, char *err, size_t errlen)
{
    const wh_config_entry *e = entry_of(k);
    if (e == NULL || v < e->min || v > e->max)
        return wh_seterr(err, errlen, "%s: %lld is out of range [%lld, %lld]", path, (long long)v,
                         e ? (long long)e->min : 0LL, e ? (long long)e->max : 0LL);
    sc->num[k] = v;
    sc->set |= 1u << k;
    return WH_OK;
}

int wh_slotcfg_set_json(wh_slotcfg *sc, const char *key, json_t *v, const char *path, char *err,
                        size_t errlen)
{
    int k = wh_slotcfg_key(key);
    if (k < 0)
        return 1;
    if (json_is_null(v)) { /* back to the daemon's setting */
        sc->set &= ~(1u << k);
        return WH_OK;
    }
    if (enum_of(key) != NULL) {
        if (!json_is_string(v))
            return wh_seterr(err, errlen, "%s: expected a string", path);
        return set_str(sc, k, json_string_value(v), path, err, errlen);
    }
    if (is_bool(k)) {
        if (!json_is_boolean(v))
            return wh_seterr(err, errlen, "%s: expected true or false", path);
        sc->num[k] = json_is_true(v);
        sc->set |= 1u << k;
        return WH_OK;
    }
    if (!json_is_integer(v))
        return wh_seterr(err, errlen, "%s: expected an integer", path);
    return set_num(sc, k, (int64_t)json_integer_value(v), path, err, errlen);
}

int wh_slotcfg_set_cf(wh_slotcfg *sc, const char *key, config_setting_t *f, const char *path,
                      char *err, size_t errlen)
{
    int k = wh_slotcfg_key(key);
    if (k < 0)
        return 1;
    int t = config_setting_type(f);
    if (enum_of(key) != NULL) {
        if (t != CONFIG_TYPE_STRING)
            return wh_seterr(err, errlen, "%s (line %d): expected a string", path,
                             config_setting_source_line(f));
        return set_str(sc, k, config_setting_get_string(f), path, err, errlen);
    }
    if (is_bool(k)) {
        if (t != CONFIG_TYPE_BOOL)
            return wh_seterr(err, errlen, "%s (line %d): expected true or false", path,
                             config_setting_source_line(f));
        sc->num[k] = config_setting_get_bool(f) != 0;
        sc->set |= 1u << k;
        return WH_OK;
    }
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return wh_seterr(err, errlen, "%s (line %d): expected an integer", path,
                         config_setting_source_line(f));
    return set_num(sc, k, (int64_t)config_setting_get_int64(f), path, err, errlen);
}

int wh_slotcfg_render(const wh_slotcfg *sc, json_t *src)
{
    int rc = 0;
    for (int k = 0; k < WH_SLOTCFG_N; k++) {
        if (!(sc->set & (1u << k)))
            continue;
        json_t *v = enum_of(keys[k]) != NULL ? json_string(sc->str[k])
                    : is_bool(k)             ? json_boolean(sc->num[k] != 0)
                                             : json_integer((json_int_t)sc->num[k]);
        rc |= v == NULL || json_object_set_new(src, keys[k], v) != 0;
    }
    return rc ? WH_ERR : WH_OK;
}

void wh_slotcfg_apply(const wh_slotcfg *sc, wh_config *cfg)
{
    for (int k = 0; k < WH_SLOTCFG_N; k++) {
        const wh_config_entry *e = entry_of(k);
        if (!(sc->set & (1u << k)) || e == NULL)
            continue;
        char *p = (char *)cfg + e->offset;
        if (e->type == WH_CT_STRING)
            wh_strlcpy(p, sc->str[k], e->size);
        else if (e->type == WH_CT_INT64)
            memcpy(p, &sc->num[k], sizeof(int64_t));
        else {
            int v = (int)sc->num[k];
            memcpy(p, &v, sizeof(int));
        }
    }
}

void wh_slotcfg_copy(wh_config *dst, const wh_config *src)
{
    for (int k = 0; k < WH_SLOTCFG_N; k++) {
        const wh_config_entry *e = entry_of(k);
        if (e != NULL)
            memcpy((char *)dst + e->offset, (const char *)src + e->offset, e->size);
    }
}

int wh_slotcfg_differs(const wh_config *a, const wh_config *b)
{
    for (int k = 0; k < WH_SLOTCFG_NSLOT; k++) {
        const wh_config_entry *e = entry_of(k);
        if (e == NULL)
            continue;
        const char *pa = (const char *)a + e->offset, *pb = (const char *)b + e->offset;
        if (e->type == WH_CT_STRING ? strcmp(pa, pb) != 0 : memcmp(pa, pb, e->size) != 0)
            return 1;
    }
    return 0;
}
