/* st_walfs: the store's RocksDB file system, which writes zeros ahead of
 * the WAL's end so that a synced Append overwrites blocks that are already
 * written and inside the file's size.
 *
 * RocksDB appends its WAL to a new file whose space it preallocates with
 * fallocate(KEEP_SIZE): every synced write there grows the file and turns
 * unwritten extents into written ones, so on ext4 (and XFS) each
 * fdatasync also commits the file system's journal. Measured on ext4 on a
 * virtual disk: about 0.5 ms per fdatasync of a small write appended to a
 * preallocated file, 0.3 ms for the same write over blocks already
 * written. This wrapper keeps the WAL's zeroed (written) region up to
 * `chunk` bytes ahead of its end: one journal commit per chunk instead of
 * one per Append. RocksDB's WAL reader skips zero-filled space as the
 * preallocated tail of a log (a zero record header: type 0, length 0,
 * skipped without reporting corruption, in every recovery mode), and a WAL
 * closed normally is truncated back to its data, so a store killed at any
 * point recovers exactly what it synced.
 *
 * The recycled WAL of RocksDB (recycle_log_file_num) would do the same,
 * but RocksDB turns it off unless wal_recovery_mode is
 * kSkipAnyCorruptedRecords, which may skip a damaged record in the middle
 * of a WAL and replay what follows (a hole in acked events): not for the
 * store.
 *
 * It also watches every sync of a WAL file (Sync, Fsync, RangeSync) and of a
 * directory RocksDB opens (the database's, which holds the WALs), for the
 * whole process: Linux reports a file's writeback error once per open file
 * description, so after one fdatasync of a WAL got EIO, another one of it
 * (beside it, or later) can return 0 for pages that were never written. Once
 * a watched sync failed, every later one fails at once (ST_WALFS_REFUSED,
 * with the first failure's message) without syncing, and one that returned 0
 * while another sync of the same file or directory ran fails too if that
 * one failed. The store exits on a failed WAL sync anyway (st_db.c,
 * sync_failed_exit); this closes the moment before it does, whatever the
 * RocksDB version does after a failed sync (7.8 serializes a WAL's syncs
 * and refuses them on the writer whose sync failed, but not a directory's,
 * and its FlushWAL(sync) does not look at the background error).
 *
 * C++ for RocksDB's FileSystem classes; it reaches the C++ Options behind a
 * rocksdb_options_t like st_bgio (layout checked first). */
#ifndef ST_WALFS_H
#define ST_WALFS_H

#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_walfs st_walfs;

/* What a sync refused by the watch (see above) says, before why. */
#define ST_WALFS_REFUSED "WAL sync refused: "

/* Sets on o an Env whose WAL files are zero-filled `chunk` bytes ahead of
 * their end (rounded to 64 KiB, at least 64 KiB; 0: none, and no spares)
 * and whose WAL and directory syncs are watched. NULL (err names why)
 * when o's layout is not the one this file was built for, or out of
 * memory; o is then unchanged. The Env must outlive every DB opened with
 * o: free the handle after closing them. */
st_walfs *st_walfs_install(rocksdb_options_t *o, uint64_t chunk, char *err, size_t errlen);
void st_walfs_free(st_walfs *w);

/* Bytes of zeros written ahead of WAL ends since install (0 for NULL). */
uint64_t st_walfs_zeroed(const st_walfs *w);

/* Files created on a spare inode (a deleted WAL or table file emptied and
 * kept, see WalFs in st_walfs.cc) since install (0 for NULL). */
uint64_t st_walfs_reused(const st_walfs *w);

/* Removes the spares (walhook-spare-N) in dir, for a DB opened for writing
 * without st_walfs, where nothing would take them. 0, or -1 (err names the
 * file and why; the others are removed all the same). */
int st_walfs_remove_spares(const char *dir, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
