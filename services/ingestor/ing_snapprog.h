/* ing_snapprog: the pure parts of snapshots and backfills (ing_snapshot):
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
 * kind: 0 initial, 1 backfill; state: ING_SNAP_*. The last key (nlast
 * values, 0 = from the start) is the key of the last row of the last chunk
 * stored: the next chunk reads the rows after it.
 *
 * Key encoding (ing_snapkey_encode): each key column's text as
 * "<length>:<bytes>", concatenated; two rows have the same key exactly when
 * their encodings are equal. Values never reach a log. */
#ifndef ING_SNAPPROG_H
#define ING_SNAPPROG_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"

#define ING_SNAP_MAXKEY 16 /* key columns at most */
#define ING_SNAP_IDMAX 64
#define ING_SNAP_TABLEMAX 260 /* schema.table: two names of 63 bytes, quoted... */

enum { ING_SNAP_PENDING = 0, ING_SNAP_RUNNING = 1, ING_SNAP_DONE = 2, ING_SNAP_REFUSED = 3 };
enum { ING_SNAP_INITIAL = 0, ING_SNAP_BACKFILL = 1 };

typedef struct ing_snapjob {
    int kind;  /* ING_SNAP_INITIAL | ING_SNAP_BACKFILL */
    int state; /* ING_SNAP_* */
    uint64_t rows_done, rows_est;
    int64_t started_us;            /* wall clock of its first chunk (0: not started) */
    char id[ING_SNAP_IDMAX];       /* "initial" or the backfill request's id */
    char table[ING_SNAP_TABLEMAX]; /* schema.table */
    int nlast;
    char *last[ING_SNAP_MAXKEY]; /* malloc'd text values of the last key done */
} ing_snapjob;

typedef struct ing_snapprog {
    int plan; /* 0 none, 1 initial planned, 2 initial jobs listed */
    ing_snapjob *jobs;
    size_t njobs, cap;
} ing_snapprog;

void ing_snapprog_clear(ing_snapprog *p);
/* Appends a job (state pending, no last key). NULL: out of memory, or id
 * or table too long. */
ing_snapjob *ing_snapprog_add(ing_snapprog *p, int kind, const char *id, const char *table);
/* The job with that id and table, or NULL. */
ing_snapjob *ing_snapprog_find(ing_snapprog *p, const char *id, const char *table);
/* Replaces the job's last key with vals[0..n) (lens[i] bytes each). */
int ing_snapjob_set_last(ing_snapjob *j, const char *const *vals, const size_t *lens, int n);

int ing_snapprog_encode(const ing_snapprog *p, wh_buf *out);
/* Replaces *p with the document s[0..n). WH_ERR (p cleared, err names the
 * line and what is wrong) when it does not parse. */
int ing_snapprog_decode(ing_snapprog *p, const char *s, size_t n, char *err, size_t errlen);

const char *ing_snap_state_name(int state);

/* Appends the encoding of a key (n column values) to out. */
int ing_snapkey_encode(wh_buf *out, const char *const *vals, const size_t *lens, int n);

/* A set of encoded keys (open addressing; copies of the keys in one arena). */
typedef struct ing_keyset {
    size_t *slots; /* offset + 1 into arena of an entry: len(8) + bytes; 0 empty */
    size_t nslots, count;
    wh_buf arena;
} ing_keyset;

void ing_keyset_init(ing_keyset *s);
void ing_keyset_free(ing_keyset *s);
void ing_keyset_clear(ing_keyset *s);
int ing_keyset_add(ing_keyset *s, const char *k, size_t n);
int ing_keyset_has(const ing_keyset *s, const char *k, size_t n);

#endif
