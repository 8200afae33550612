/* ing_slot: slot safety of one tenant (docs/SLOTS.md, issue 9).
 *
 * A thread measures the slot on its own (non-replication) connection every
 * source.slot_check_ms, never on the replication loop:
 *   slot lag = pg_current_wal_lsn() - confirmed_flush_lsn, wal_status,
 *   safe_wal_size.
 * From the slot lag it keeps the backpressure zone (green / yellow / red,
 * with hysteresis: ing_zone_next) and, with source.slot_policy = track,
 * the effective policy (track, or independent after a lag threshold:
 * ing_policy_next). It sends a SlotReport to the store (zone, force-resync
 * limits) whose reply is the track position: the flush LSN the slowest
 * counted target allows (targets marked NEEDS_SNAPSHOT do not count).
 *
 * The replication loop asks ing_slot_cap for the flush LSN the policy
 * allows: independent = what the store fsynced minus
 * source.safety_lag_bytes; track = at most the track position (nothing
 * before the first answer of the store), or what the store fsynced when
 * every counted target has delivered everything stored.
 */
#ifndef ING_SLOT_H
#define ING_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"
#include "wh_config.h"

enum { ING_ZONE_GREEN = 0, ING_ZONE_YELLOW = 1, ING_ZONE_RED = 2 };
enum { ING_POLICY_INDEPENDENT = 0, ING_POLICY_TRACK = 1 };

const char *ing_zone_name(int zone);
const char *ing_policy_name(int policy);

/* The next zone from the current one and the slot lag. Up: yellow at
 * lag >= warn, red at lag >= max. Down (hysteresis): red leaves below warn
 * (to yellow; to green when also below warn / 2), yellow leaves below
 * warn / 2. A threshold of 0 is off (without warn, red leaves below
 * max / 2). */
int ing_zone_next(int cur, uint64_t lag, uint64_t warn, uint64_t max);

/* The lag the zones and the thresholds' actions use: the slot lag, or more
 * when PostgreSQL would invalidate the slot (max_slot_wal_keep_size) sooner
 * than the hard cap is reached: max - safe_wal_size when safe_wal_size is
 * known (>= 0) and the hard cap is on, so the cap's action comes first. */
uint64_t ing_slot_effective_lag(uint64_t lag, int64_t safe_wal_size, uint64_t max);

/* The limits of ing_policy_next (from the source.* settings). */
typedef struct ing_slot_limits {
    int track;            /* source.slot_policy = track */
    uint64_t warn, max;   /* source.lag_warn_bytes, source.lag_max_bytes (0 = off) */
    int warn_independent; /* source.lag_warn_action = independent */
    int max_independent;  /* source.lag_max_action = independent */
} ing_slot_limits;

/* The next effective policy. independent configured: always independent.
 * track: falls back to independent when slot_lag reaches a threshold whose
 * action is independent (warn, else max); returns to track once track_lag
 * (what the slot lag would be under track: source WAL - the slowest target)
 * is below half that threshold. *why receives a static reason on a change. */
int ing_policy_next(int cur, uint64_t slot_lag, uint64_t track_lag, const ing_slot_limits *l,
                    const char **why);

typedef struct ing_slot ing_slot;

int ing_slot_new(ing_slot **out, const char *tenant, char *err, size_t errlen);
void ing_slot_free(ing_slot *s);
/* Starts the thread for a source (cfg is copied); stop before the next. */
int ing_slot_start(ing_slot *s, const wh_config *cfg, char *err, size_t errlen);
void ing_slot_stop(ing_slot *s);

/* The flush LSN the policy allows: f is what the store fsynced (or an idle
 * position past it), acked the batcher's acknowledged commit LSN,
 * last_event the commit LSN of the last event the ingestor rendered. In
 * track, f itself (an idle position) only while the store's last answer
 * said every counted target delivered all that is stored, and that
 * covered both acked and last_event (an event stored after the answer, even
 * one whose commit is not acknowledged yet, keeps the cap at the targets'
 * position). The caller never reports less than it did before. Any
 * thread. */
uint64_t ing_slot_cap(ing_slot *s, uint64_t f, uint64_t acked, uint64_t last_event);

/* Unit tests: sets what the thread would (policy, the store's answer, the
 * safety lag) without a thread or a source. */
void ing_slot_set(ing_slot *s, int policy, int have_track, uint64_t track_lsn, int caught_up,
                  uint64_t end_lsn, int64_t safety_lag_bytes);

/* Prometheus samples of the slot (labels: `tenant="..."` or ""). */
int ing_slot_render(ing_slot *s, wh_buf *b, const char *labels);

#endif
