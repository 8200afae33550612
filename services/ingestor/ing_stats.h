/* ing_stats: the ingestor's counters and its control server (Stats over
 * ingestor.control), rendering metrics_text in the Prometheus format. */
#ifndef ING_STATS_H
#define ING_STATS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ing_batch.h"
#include "ing_toast.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_metrics.h"

/* snapshotting: the initial snapshot is read in the new slot's exported
 * snapshot, before streaming (ing_snapshot_export); ready, as streaming */
enum {
    ING_STATE_CONNECTING = 0,
    ING_STATE_STREAMING = 1,
    ING_STATE_ERROR = 2,
    ING_STATE_SNAPSHOTTING = 3
};

typedef struct ing_stats {
    wh_counter changes_received;
    wh_counter changes_skipped; /* of transactions from a skipped origin */
    wh_counter window_full_us;  /* WAL not read: ingestor.window_bytes unacked by the store */
    wh_gauge confirmed_flush_lsn;
    wh_gauge server_wal_end;
    wh_gauge unread_since_us; /* wall clock since which the replication stream is not
                                 read (ing_stats_stream); 0: it is */
    wh_gauge state;
    ing_batcher *bt;               /* may be NULL */
    char tenant[WH_NAME_MAX];      /* label of every sample ("" = none) */
    char daemon_name[WH_NAME_MAX]; /* "ingestor", or "ingestor-<tenant>" */
    pthread_mutex_t reason_mu;     /* guards reason (PTHREAD_MUTEX_INITIALIZER) */
    char reason[WH_REASON_LEN];    /* why not streaming ("" = none): /readyz, status */
    wh_counter errors;             /* permanent errors entered (state "error") */
    ing_toast_stats toast;         /* the TOAST value cache (ing_toast) */
    wh_counter values_as_text;     /* values of types not built in sent as their text: their
                                      literal did not match the type as read (ing_values) */
    wh_counter heartbeats_sent;    /* heartbeat statements run (source.heartbeat_*) */
    wh_counter heartbeat_errors;   /* heartbeat statements that failed */
    wh_counter heartbeats_seen;    /* walhook.heartbeat messages back through the stream */
    wh_gauge heartbeat_seen_us;    /* wall clock of the last one (0: none) */
    pthread_mutex_t snap_mu;       /* guards snap_text (PTHREAD_MUTEX_INITIALIZER) */
    char *snap_text;               /* snapshot progress metrics (ing_snapshot), or NULL */
    struct ing_slot *slot;         /* slot policy and zones (ing_slot; under reason_mu) */
} ing_stats;

/* Sets the state and the reason shown by /readyz and `walhook status`
 * (reason may be NULL: cleared). Any thread. */
void ing_stats_set_state(ing_stats *st, int state, const char *reason);

/* The replication stream is read (up 1) or not (0: disconnected,
 * reconnecting, before the first connection: call it at start; or
 * throttled: ingestor.window_bytes sent and not yet acknowledged by the
 * store, the stream loop calls it once a pass). The lag figures (confirmed
 * flush, server WAL end) are current only while it is read: they freeze at
 * the first 0 after a 1, and walhook_replication_lag_age_seconds counts
 * from there (a throttled stream that is then lost: from the throttle).
 * A load, and a store only on a change. Any thread. */
void ing_stats_stream(ing_stats *st, int up);

const char *ing_state_name(int state);
/* Renders the ingestor's metrics (Prometheus text) into out. */
int ing_stats_render(const ing_stats *st, wh_buf *out);
/* Serves Stats on cfg->ingestor_control. */
int ing_control_start(wh_control **out, const wh_config *cfg, ing_stats *st, char *err,
                      size_t errlen);

#endif
