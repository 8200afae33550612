/* wh_snapprog: the pure parts of snapshots and backfills (ing_snapshot):
 * the progress document the store keeps for a tenant (carried in the
 * AppendBatch of each chunk, AppendBatch.snapshot_progress, and read back
 * at start through TenantInfo), and the set of keys changed by the stream
 * while a chunk is being read (the DBLog window).
 *
 * Progress document (text, one record a line, fields separated by tabs,
 * strings hex-encoded so any byte round-trips):
 *   walhook-snapshot 1
 *   plan <0|1|2>          0 none, 1 initial snapshot planned (tables not
 *                         listed yet), 2 its tables listed as jobs
 *   job <kind> <state> <rows_done> <rows_est> <started_us> <hex id>
 *       <hex schema.table> <nlast> [<hex key value>...]
 * kind: 0 initial, 1 backfill; state: WH_SNAP_*. The last key (nlast
 * values, 0 = from the start) is the key of the last row of the last chunk
 * stored: the next chunk reads the rows after it.
 *
 * Key encoding (wh_snapkey_encode): each key column's text as
 * "<length>:<bytes>", concatenated; two rows have the same key exactly when
 * their encodings are equal. Values never reach a log. */
#ifndef WH_SNAPPROG_H
#define WH_SNAPPROG_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"

#define WH_SNAP_MAXKEY 16 /* key columns at most */
#define WH_SNAP_IDMAX 64
#define WH_SNAP_TABLEMAX 260 /* schema.table: two names of 63 bytes, quoted... */

enum { WH_SNAP_PENDING = 0, WH_SNAP_RUNNING = 1, WH_SNAP_DONE = 2, WH_SNAP_REFUSED = 3 };
enum { WH_SNAP_INITIAL = 0, WH_SNAP_BACKFILL = 1 };

typedef struct wh_snapjob {
    int kind;  /* WH_SNAP_INITIAL | WH_SNAP_BACKFILL */
    int state; /* WH_SNAP_* */
    uint64_t rows_done, rows_est;
    int64_t started_us;           /* wall clock of its first chunk (0: not started) */
    char id[WH_SNAP_IDMAX];       /* "initial" or the backfill request's id */
    char table[WH_SNAP_TABLEMAX]; /* schema.table */
    int nlast;
    char *last[WH_SNAP_MAXKEY]; /* malloc'd text values of the last key done */
} wh_snapjob;

typedef struct wh_snapprog {
    int plan; /* 0 none, 1 initial planned, 2 initial jobs listed */
    wh_snapjob *jobs;
    size_t njobs, cap;
} wh_snapprog;

void wh_snapprog_clear(wh_snapprog *p);
/* Appends a job (state pending, no last key). NULL: out of memory, or id
 * or table too long. */
wh_snapjob *wh_snapprog_add(wh_snapprog *p, int kind, const char *id, const char *table);
/* The job with that id and table, or NULL. */
wh_snapjob *wh_snapprog_find(wh_snapprog *p, const char *id, const char *table);
/* Replaces the job's last key with vals[0..n) (lens[i] bytes each). */
int wh_snapjob_set_last(wh_snapjob *j, const char *const *vals, const size_t *lens, int n);

int wh_snapprog_encode(const wh_snapprog *p, wh_buf *out);
/* Replaces *p with the document s[0..n). WH_ERR (p cleared, err names the
 * line and what is wrong) when it does not parse. */
int wh_snapprog_decode(wh_snapprog *p, const char *s, size_t n, char *err, size_t errlen);

const char *wh_snap_state_name(int state);

/* Appends the encoding of a key (n column values) to out. */
int wh_snapkey_encode(wh_buf *out, const char *const *vals, const size_t *lens, int n);

/* A set of encoded keys (open addressing; copies of the keys in one arena). */
typedef struct wh_keyset {
    size_t *slots; /* offset + 1 into arena of an entry: len(8) + bytes; 0 empty */
    size_t nslots, count;
    wh_buf arena;
} wh_keyset;

void wh_keyset_init(wh_keyset *s);
void wh_keyset_free(wh_keyset *s);
void wh_keyset_clear(wh_keyset *s);
int wh_keyset_add(wh_keyset *s, const char *k, size_t n);
int wh_keyset_has(const wh_keyset *s, const char *k, size_t n);

#endif
