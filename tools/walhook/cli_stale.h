/* cli_stale: daemons of a previous `walhook up` still running on the data
 * directory. When `walhook up` is killed its children get SIGTERM, but one
 * may still be shutting down (or be stuck) when the next `walhook up`
 * starts; it would keep RocksDB's LOCK, the replication slot or an ipc
 * endpoint. Before starting anything `walhook up` finds such daemons from
 * the pid files every daemon writes (<data_dir>/<daemon>.pid) and from the
 * holder of <data_dir>/rocksdb/LOCK (fcntl F_GETLK), and stops them:
 * SIGTERM, then SIGKILL after a deadline, saying so in its log. Only
 * daemons a `walhook up` started (CLI_SUP_ENV in their environment) are
 * stopped, and only when that `walhook up` is gone: a daemon of a running
 * instance, or one started by hand, is reported and nothing is killed. */
#ifndef CLI_STALE_H
#define CLI_STALE_H

#include <stddef.h>

/* WH_OK when no daemon of another instance runs on data_dir any more (none
 * was found, or every one found was stopped); WH_ERR with a message when
 * another `walhook up` runs on it or a daemon could not be stopped.
 * term_wait_ms: how long SIGTERM is given before SIGKILL. */
int cli_stale_stop(const char *data_dir, int term_wait_ms, char *err, size_t errlen);

#endif
