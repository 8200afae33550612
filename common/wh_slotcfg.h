/* wh_slotcfg: a tenant's own slot-safety settings (docs/SLOTS.md), in the
 * runtime state document's tenant source and the file's `tenants` list:
 *   source = { slot_policy = "track"; lag_warn_bytes = 1048576; ... };
 * The keys are those of the source.* settings below; a key not given
 * inherits the daemon's setting (file + environment). Values are checked
 * against the settings table's bounds and the enums of wh_config.
 */
#ifndef WH_SLOTCFG_H
#define WH_SLOTCFG_H

#include <stddef.h>
#include <stdint.h>

#include "wh_config.h"

/* slot_policy, safety_lag_bytes, lag_warn_bytes, lag_max_bytes,
 * lag_warn_action, lag_max_action, force_resync_lag_bytes,
 * disconnected_resync_after_s, slot_check_ms */
#define WH_SLOTCFG_N 9

typedef struct wh_slotcfg {
    unsigned set; /* bit k: key k given */
    char str[WH_SLOTCFG_N][16];
    int64_t num[WH_SLOTCFG_N];
} wh_slotcfg;

/* The key's index, -1 when name is not one of them. */
int wh_slotcfg_key(const char *name);
/* Sets key from a JSON value (libjansson's json_t); err names path.
 * WH_OK, WH_ERR, or 1 when key is not a slot key. */
struct json_t;
int wh_slotcfg_set_json(wh_slotcfg *sc, const char *key, struct json_t *v, const char *path,
                        char *err, size_t errlen);
/* The same from a libconfig setting. */
struct config_setting_t;
int wh_slotcfg_set_cf(wh_slotcfg *sc, const char *key, struct config_setting_t *f, const char *path,
                      char *err, size_t errlen);
/* Adds the given keys to a source object. WH_OK or WH_ERR (out of memory). */
int wh_slotcfg_render(const wh_slotcfg *sc, struct json_t *src);
/* Writes the given keys over cfg's settings. */
void wh_slotcfg_apply(const wh_slotcfg *sc, wh_config *cfg);
/* Copies the slot settings of src into dst. */
void wh_slotcfg_copy(wh_config *dst, const wh_config *src);
/* 1 when a and b differ in a slot setting (the ingestor restarts its slot
 * thread). */
int wh_slotcfg_differs(const wh_config *a, const wh_config *b);

#endif
