/* wh_slotcfg: a tenant's own source settings, in the runtime state
 * document's tenant source and the file's `tenants` list:
 *   source = { slot_policy = "track"; lag_warn_bytes = 1048576; ddl = true; ... };
 * slot safety (docs/SLOTS.md) and capture (the initial snapshot, its chunk
 * size, DDL capture: docs/CONTROL.md). The keys are those of the source.*
 * settings below; a key not given (or null in JSON) inherits the daemon's
 * setting (file + environment, and the state's runtime settings). Values
 * are checked against the settings table's types, bounds and the enums of
 * wh_config.
 */
#ifndef WH_SLOTCFG_H
#define WH_SLOTCFG_H

#include <stddef.h>
#include <stdint.h>

#include "wh_config.h"

/* slot safety, keys 0..WH_SLOTCFG_NSLOT-1: slot_policy, safety_lag_bytes,
 * lag_warn_bytes, lag_max_bytes, lag_warn_action, lag_max_action,
 * force_resync_lag_bytes, disconnected_resync_after_s, slot_check_ms;
 * capture: snapshot ("never" | "initial"), snapshot_chunk_rows, ddl (bool) */
#define WH_SLOTCFG_NSLOT 9
#define WH_SLOTCFG_N 12

typedef struct wh_slotcfg {
    unsigned set; /* bit k: key k given */
    char str[WH_SLOTCFG_N][16];
    int64_t num[WH_SLOTCFG_N];
} wh_slotcfg;

/* The key's index, -1 when name is not one of them. */
int wh_slotcfg_key(const char *name);
/* Sets key from a JSON value (libjansson's json_t); null unsets it (the
 * daemon's setting again); err names path. WH_OK, WH_ERR, or 1 when key is
 * not one of these keys. */
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
/* Copies the settings of every key (slot safety and capture) of src into
 * dst. */
void wh_slotcfg_copy(wh_config *dst, const wh_config *src);
/* 1 when a and b differ in a slot-safety setting (the ingestor restarts its
 * slot thread); the capture keys are not compared. */
int wh_slotcfg_differs(const wh_config *a, const wh_config *b);

#endif
