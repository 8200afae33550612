/* ing_state: the ingestor's side of the runtime state (docs/CONTROL.md).
 *
 * The ingestor of tenant T (walhook-ingestor --tenant T) takes its source
 * (dsn, slot, publication, tables, create_slot, and its own slot-safety,
 * snapshot and ddl settings: wh_slotcfg) from T's entry in the state
 * and its runtime settings (ingestor.flush_bytes, flush_age_us,
 * busy_linger_us, window_bytes) through wh_config_hook. A wh_state_watch
 * polls the store; on a new version:
 *  - a changed source is handed to ing_repl (ing_state_source_watch), which
 *    drains and reconnects to the new one;
 *  - a removed tenant makes the ingestor stop (exit 0, logged);
 *  - runtime settings reach the batcher through the hooks;
 *  - source.skip_origins is read by the decoder at each Origin message
 *    (ing_source_watch.skip_origin, under the state's lock).
 * SIGHUP re-reads the file through the same path (ing_state_reload).
 *
 * Teardown: ing_state_stop before the batcher is freed. */
#ifndef ING_STATE_H
#define ING_STATE_H

#include <stddef.h>

#include "ing_batch.h"
#include "ing_repl.h"
#include "wh_config.h"

typedef struct ing_state ing_state;

/* Starts the watcher for `tenant` (waits up to wait_ms for the store). On
 * WH_OK *eff is the effective configuration: base, the state's runtime
 * settings and the tenant's source, tenant and control endpoint. A tenant
 * that is not in the state is an error naming it. */
int ing_state_start(ing_state **out, const wh_config *base, const char *tenant,
                    const char *cfg_path, int wait_ms, wh_config *eff, char *err, size_t errlen);
/* Registers the runtime-setting hooks for bt and applies the latest values. */
int ing_state_attach(ing_state *is, ing_batcher *bt, char *err, size_t errlen);
/* The watch ing_repl polls for source changes. */
const ing_source_watch *ing_state_source_watch(ing_state *is);
/* 1 once the tenant was removed from the state (the ingestor stops). */
int ing_state_removed(ing_state *is);
/* SIGHUP: stores the file as the next version (a bad file is refused by
 * name and logged; the running version stays). Called from the main loop
 * via the flag wh_reload_requested. */
void ing_state_reload(ing_state *is);
void ing_state_stop(ing_state *is);

/* 1 when a and b name different sources (dsn, slot, publication, tables,
 * create_slot) or differ in a setting applied at the connection (slot
 * safety, source.ddl): ing_repl drains and connects again. */
int ing_state_source_differs(const wh_config *a, const wh_config *b);

#endif
