/* st_sfile: staging files, the bytes of streamed transactions' staged
 * events (docs/INTERNALS.md, "Streamed transactions").
 *
 * One append-only file per staging generation, in the store's staging
 * directory (<data_dir>/staging), named by the tenant's staging column
 * family ID (never reused in a RocksDB database, so a tenant dropped and
 * made again does not meet its old files) and the gen:
 * "<cf id, decimal>-<gen, 16 hex digits>". A file is a sequence of
 * records, each
 *
 *   crc(4) json_len(4) idx(4) subxid(4) json(json_len)
 *
 * (big-endian; crc: CRC32C of the 12 header bytes after it and the json).
 * A record's position is its offset in the file. An append is written at
 * the file's end and fdatasync'ed before it returns (the staged events'
 * ack); one that fails is cut off again. A process killed during an append
 * can leave a torn record at the end: st_sfile_trim cuts the file back to
 * its last whole record (the store does it before the first append to an
 * open gen after it started).
 *
 * Errors: WH_ERR with a message naming the file into the caller's err. */
#ifndef ST_SFILE_H
#define ST_SFILE_H

#include <stddef.h>
#include <stdint.h>

#include "st_db.h"

#define ST_SFILE_HDR 16
#define ST_SFILE_NAME_MAX 40

/* "<cf>-<gen>" into name (ST_SFILE_NAME_MAX bytes). */
void st_sfile_name(char *name, uint32_t cf, uint64_t gen);
/* cf and gen of a file name made by st_sfile_name; WH_ERR: not one. */
int st_sfile_parse_name(const char *name, uint32_t *cf, uint64_t *gen);

/* Makes dir (and its parents) when missing. */
int st_sfile_dir_make(const char *dir, char *err, size_t errlen);

/* Appends n records at the end of dir's file of (cf, gen), made when
 * missing (then dir is fsync'ed too); truncate: the file is emptied first
 * (and stays empty if the append then fails). Durable (fdatasync) when it
 * returns WH_OK. On a failed write the file is cut back to its length
 * before (when that fails too, *torn is set: st_sfile_trim before the next
 * append). A failed sync ("While fdatasync" / "While fsync" in err) leaves
 * the records: the store exits on it (st_dbi_sync_check), as on a failed
 * WAL sync; at its next start they are whole records, and a copy the
 * ingestor sends again is skipped by index at the commit. */
int st_sfile_append(const char *dir, uint32_t cf, uint64_t gen, int truncate, const st_staged *ev,
                    size_t n, int *torn, char *err, size_t errlen);

/* Cuts dir's file of (cf, gen) back to its last whole record when what
 * follows it is what an append cut short leaves (a partial record, or
 * zeros); *cut: the bytes cut off; *next_idx (when not NULL): one past the
 * highest index of the whole records (0: none). A record of whole length
 * with a bad checksum followed by other bytes is damage: WH_ERR naming its
 * offset, nothing cut (the records after it may be acknowledged ones). A
 * missing file is not an error. */
int st_sfile_trim(const char *dir, uint32_t cf, uint64_t gen, uint64_t *cut, uint64_t *next_idx,
                  char *err, size_t errlen);

/* One past the highest index of the whole records of dir's file of
 * (cf, gen) (0: none, or no file). */
int st_sfile_next_idx(const char *dir, uint32_t cf, uint64_t gen, uint64_t *next_idx, char *err,
                      size_t errlen);

/* Removes dir's file of (cf, gen); a missing one is not an error. */
int st_sfile_remove(const char *dir, uint32_t cf, uint64_t gen, char *err, size_t errlen);

/* A reader of one file, with a read-ahead buffer: records read in file
 * order cost one pread per ST_SFILE_READ_BYTES, once the window has grown
 * from ST_SFILE_READ_FIRST (doubled at each read that goes on where the
 * last ended: a read of one small event does not copy 256 KiB). */
#define ST_SFILE_READ_BYTES (256 * 1024)
#define ST_SFILE_READ_FIRST (16 * 1024)
typedef struct st_sfile_rd {
    int fd;     /* -1: closed, or the file is missing */
    size_t win; /* the next read's size (0: ST_SFILE_READ_FIRST) */
    uint32_t cf;
    uint64_t gen;
    uint64_t size; /* the file's length when opened */
    char *buf;
    size_t cap, len; /* buf holds the file's bytes [at, at + len) */
    uint64_t at;
} st_sfile_rd;

typedef struct st_sfile_rec {
    uint32_t idx, subxid;
    const char *json; /* valid until the reader's next call */
    size_t json_len;
    uint64_t next; /* the next record's offset */
} st_sfile_rec;

void st_sfile_rd_init(st_sfile_rd *r);
/* Opens dir's file of (cf, gen) (closing the one r had); *missing: there
 * is none (not an error; r reads nothing). */
int st_sfile_rd_open(st_sfile_rd *r, const char *dir, uint32_t cf, uint64_t gen, int *missing,
                     char *err, size_t errlen);
/* The record at off. *end: off is the file's end, or what is there is not
 * a whole record with a matching checksum (a torn tail; not an error: the
 * caller knows whether a record must be there). */
int st_sfile_rd_at(st_sfile_rd *r, uint64_t off, st_sfile_rec *rec, int *end, char *err,
                   size_t errlen);
void st_sfile_rd_close(st_sfile_rd *r);

#endif
