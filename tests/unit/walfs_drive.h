/* walfs_drive: a file or directory opened for writing through the file
 * system of the Env that st_walfs_install set on a rocksdb_options_t, so a
 * unit test can call st_walfs's wrappers (a WAL's Sync, a directory's
 * Fsync) directly, from several threads at once, which RocksDB itself
 * never does for one WAL (test_store_walsync). C++ inside; the layout of
 * rocksdb_options_t is checked as st_walfs checks it. Each call that can
 * fail returns 0, or -1 with RocksDB's status text in err. */
#ifndef WH_TEST_WALFS_DRIVE_H
#define WH_TEST_WALFS_DRIVE_H

#include <rocksdb/c.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wfd_file wfd_file;
typedef struct wfd_dir wfd_dir;

/* path created (truncated) for writing: a name ending in .log is a WAL */
wfd_file *wfd_file_open(rocksdb_options_t *o, const char *path, char *err, size_t errlen);
int wfd_file_append(wfd_file *f, const void *p, size_t n, char *err, size_t errlen);
/* FSWritableFile::Sync */
int wfd_file_sync(wfd_file *f, char *err, size_t errlen);
/* closes (its status not checked: a file whose sync failed) and frees */
void wfd_file_free(wfd_file *f);

wfd_dir *wfd_dir_open(rocksdb_options_t *o, const char *path, char *err, size_t errlen);
/* FSDirectory::FsyncWithDirOptions, as RocksDB syncs a directory */
int wfd_dir_sync(wfd_dir *d, char *err, size_t errlen);
void wfd_dir_free(wfd_dir *d);

#ifdef __cplusplus
}
#endif

#endif
