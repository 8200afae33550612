/* wh_util: the one error convention of the tree, logging, time, signals.
 *
 * Error convention: functions return WH_OK (0) on success and WH_ERR (-1) on
 * failure, writing a human-readable message naming what was wrong into a
 * caller-owned buffer `char *err, size_t errlen` (errlen may be 0).
 * Constructors return a status and fill an out-parameter.
 */
#ifndef WH_UTIL_H
#define WH_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <time.h>

#define WH_OK 0
#define WH_ERR (-1)
#define WH_ERRLEN 512

#define WH_UNUSED(x) ((void)(x))
#define WH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Formats into err (if errlen > 0) and returns WH_ERR. */
int wh_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Logging: one line to stderr: "2026-11-22T01:02:03.123Z store INFO msg".
 * Never log row values. */
enum { WH_LOG_DEBUG = 0, WH_LOG_INFO = 1, WH_LOG_WARN = 2, WH_LOG_ERROR = 3 };
void wh_log_init(const char *daemon, int level);
int wh_log_level_parse(const char *name); /* -1 if unknown */
/* Log line format: WH_LOG_TEXT (above) or WH_LOG_JSON, one JSON object a
 * line named after OpenTelemetry's log data model:
 *   {"timestamp":"2026-11-22T01:02:03.123456Z","severity_text":"INFO",
 *    "severity_number":9,"service.name":"walhook-store","body":"msg",
 *    "attributes":{"walhook.daemon":"store","process.pid":42}}
 * Setting log_format (runtime, applied like log_level). */
enum { WH_LOG_TEXT = 0, WH_LOG_JSON = 1 };
int wh_log_format_parse(const char *name); /* -1 if unknown */
void wh_log_set_format(int format);
/* Changes the level at runtime (any thread); out-of-range levels are ignored. */
void wh_log_set_level(int level);
void wh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define wh_debug(...) wh_log(WH_LOG_DEBUG, __VA_ARGS__)
#define wh_info(...) wh_log(WH_LOG_INFO, __VA_ARGS__)
#define wh_warn(...) wh_log(WH_LOG_WARN, __VA_ARGS__)
#define wh_error(...) wh_log(WH_LOG_ERROR, __VA_ARGS__)

/* Clocks. */
/* FNV-1a, 64 bits: h = WH_FNV1A64_OFFSET to start, then fed piece by piece
 * (wh_fnv1a64(wh_fnv1a64(WH_FNV1A64_OFFSET, a, n), b, m)). Not for
 * untrusted keys of a hash table an attacker can fill. */
#define WH_FNV1A64_OFFSET UINT64_C(14695981039346656037)
uint64_t wh_fnv1a64(uint64_t h, const void *p, size_t n);
uint64_t wh_now_us(void);      /* CLOCK_MONOTONIC, microseconds */
uint64_t wh_now_ms(void);      /* CLOCK_MONOTONIC, milliseconds */
int64_t wh_wallclock_us(void); /* CLOCK_REALTIME, microseconds since epoch */
void wh_sleep_ms(int ms);
/* *ts = now on clock + ms (ms >= 0): an absolute deadline for
 * pthread_cond_timedwait (CLOCK_REALTIME unless the condition variable's
 * clock was set). */
void wh_deadline_in(struct timespec *ts, clockid_t clock, int64_t ms);
/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines
 * (wh_deadline_in(ts, CLOCK_MONOTONIC, ms)): a wall clock step neither
 * shortens nor stretches them. */
void wh_cond_init_monotonic(pthread_cond_t *cv);
/* Waits on cv (of wh_cond_init_monotonic) under mu until *stop is set or
 * ms have passed: a thread's sleep between periodic jobs that its stop
 * ends at once (the stopper sets *stop, then broadcasts cv under mu). */
void wh_cond_sleep(pthread_cond_t *cv, pthread_mutex_t *mu, const atomic_int *stop, int64_t ms);

/* Signals: handlers only set flags, then write a byte to a pipe that wakes
 * wh_signal_wait. wh_signals_install() handles SIGTERM, SIGINT (stop),
 * SIGHUP (reload), ignores SIGPIPE and unblocks the three (walhook up
 * starts its daemons with SIGHUP blocked). */
extern volatile sig_atomic_t wh_stop_requested;
extern volatile sig_atomic_t wh_reload_requested;
void wh_signals_install(void);
/* Opens /dev/null on each of fds 0-2 that is closed (a process started with
 * <&- or 2>&-), so that no descriptor opened later (a data file, the stop
 * pipe) becomes stderr and takes the log lines. wh_daemon_init and
 * wh_signals_install call it. */
void wh_stdfds_open(void);
/* Sets wh_stop_requested and makes wh_stop_fd() readable (async-signal-safe:
 * the stop signals' handler calls it); code that stops the process itself
 * calls it rather than setting the flag. */
void wh_stop_request(void);
/* A descriptor that becomes readable at the stop request, for one waiter
 * that polls it instead of the flag (the shutdown watchdog); -1 before
 * wh_signals_install or when its pipe could not be made. */
int wh_stop_fd(void);
/* A daemon's main loop waits here between its periodic jobs, instead of
 * polling the flags in 100 ms naps: blocks until wh_stop_requested or
 * wh_reload_requested is set (at once if one is) or timeout_ms passed (< 0:
 * no timeout). 1 when a flag is set, 0 otherwise (the timeout); the caller
 * clears wh_reload_requested, or it returns at once again. For one waiter
 * per process, which drains the pipe (see wh_signal_fd); it may return
 * early. Without wh_signals_install it naps in steps of 100 ms at most. */
int wh_signal_wait(int timeout_ms);
/* The read end of wh_signal_wait's pipe, for a loop that waits on other
 * descriptors too (the dispatcher's epoll, the ingestor's select): readable
 * after a handler set a flag; such a loop calls wh_signal_drain when it is,
 * then reads the flags. -1 before wh_signals_install or without a pipe. */
int wh_signal_fd(void);
void wh_signal_drain(void);

/* Full-jitter exponential backoff: random in [0, min(max_ms, base_ms*2^attempt)]. */
int wh_backoff_ms(int attempt, int base_ms, int max_ms);

/* Value of a hex digit, or -1. */
int wh_hexval(int c);

/* 1 when every byte of s is printable ASCII other than space (0x21..0x7E):
 * a lease owner, an endpoint announced to the admin. */
int wh_str_visible(const char *s);
/* 1 when url is an NNG endpoint walhook uses: ipc://, tcp:// or tls+tcp://. */
int wh_endpoint_scheme_ok(const char *url);
/* 1 when url is a plain tcp:// endpoint (no authentication, no encryption:
 * whoever can connect is served) that is not HOST:PORT with a loopback
 * HOST: 127.0.0.0/8 in dotted-quad form, [::1], [::ffff:127.x.y.z] or the
 * name localhost, and PORT only digits. So a wildcard (0.0.0.0, *, [::],
 * no host), any other address or name, and any other form (a user part, a
 * path, no port) count. 0 for a loopback tcp:// endpoint and for every
 * other scheme (ipc://, tls+tcp://). */
int wh_endpoint_plain_beyond_loopback(const char *url);

/* Safe string copy: always NUL-terminates; returns WH_ERR if truncated. */
int wh_strlcpy(char *dst, const char *src, size_t dstlen);
/* Formats into dst (dstlen > 4); text that does not fit is cut after the
 * last whole word (within the last 64 bytes) and ends with "...", so that a
 * message shown cut says so. WH_ERR if it was cut. */
int wh_cut_words(char *dst, size_t dstlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A growable array: arrp points to the array's pointer, *cap is its
 * capacity in elements of elem bytes. Makes the capacity at least need
 * (first when the array is empty, then doubling). WH_ERR when out of
 * memory: the array and *cap are left as they were. */
int wh_grow(void *arrp, size_t need, size_t *cap, size_t elem, size_t first);

/* qsort/bsearch order of uint32_t */
int wh_u32_cmp(const void *a, const void *b);
/* Whether x is in v[0..n), ascending (v may be NULL when n is 0). */
int wh_u32_in(const uint32_t *v, size_t n, uint32_t x);

/* mkdir -p with the given mode for every created directory. */
int wh_mkdirs(const char *path, int mode, char *err, size_t errlen);

/* The data directory holds stored rows: it must be private to its owner.
 * When it is missing and `create` is set it is created 0700 (with its
 * parents); when it exists it must be a directory without any group or
 * other permission bit. On failure err names the path and the fix
 * ("chmod 700 DIR"). Every daemon, `walhook up` and `walhook check` use this
 * one function. */
int wh_data_dir_prepare(const char *dir, int create, char *err, size_t errlen);

/* Peak resident set size of this process in KiB (VmHWM), or -1. */
long wh_peak_rss_kib(void);

#endif
