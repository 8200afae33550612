/* wh_lattrace: an opt-in latency trace for bench/latency.sh's breakdown.
 *
 * With the environment variable WH_LAT_TRACE=1 at start, each hop of the
 * pipeline writes one line per event to stderr, a batch's lines in one
 * write(2) (threads' lines do not mix):
 *   LAT <hop> <wallclock_us> <commit_ts_us>
 * so the age (wallclock - commit_ts) of every event is known at every hop
 * (one host: PostgreSQL's clock is ours). Off: one load and a branch per
 * call. Never logs row values. Usage: if (wh_lat_trace_on()) { for each
 * event wh_lat_trace_add(hop, ts); wh_lat_trace_flush(); } */
#ifndef WH_LATTRACE_H
#define WH_LATTRACE_H

#include <stdint.h>

int wh_lat_trace_on(void);
/* Buffers one event's line (thread-local buffer, flushed when full). */
void wh_lat_trace_add(const char *hop, int64_t commit_ts_us);
/* Writes the thread's buffered lines. */
void wh_lat_trace_flush(void);

#endif
