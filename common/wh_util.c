/* wh_util: error convention, logging, clocks, signals, small helpers. */
#include "wh_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t wh_stop_requested = 0;
volatile sig_atomic_t wh_reload_requested = 0;

static char log_daemon[32] = "walhook";
static _Atomic int log_level = WH_LOG_INFO;
static _Atomic int log_format = WH_LOG_TEXT;
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
/* OpenTelemetry SeverityNumber of DEBUG, INFO, WARN, ERROR */
static const int level_otel[] = {5, 9, 13, 17};

int wh_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return WH_ERR;
}

int wh_cut_words(char *dst, size_t dstlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, dstlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < dstlen)
        return WH_OK;
    size_t end = dstlen - 4; /* room for "..." and the NUL */
    for (size_t i = end; i > 0 && end - i < 64; i--)
        if (dst[i - 1] == ' ') {
            end = i - 1;
            break;
        }
    /* never half a UTF-8 sequence */
    while (end > 0 && ((unsigned char)dst[end] & 0xC0) == 0x80)
        end--;
    memcpy(dst + end, "...", 4);
    return WH_ERR;
}

void wh_log_init(const char *daemon, int level)
{
    wh_strlcpy(log_daemon, daemon, sizeof(log_daemon));
    if (level >= WH_LOG_DEBUG && level <= WH_LOG_ERROR)
        log_level = level;
}

void wh_log_set_level(int level)
{
    if (level >= WH_LOG_DEBUG && level <= WH_LOG_ERROR)
        log_level = level;
}

int wh_log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0)
        return WH_LOG_TEXT;
    if (strcmp(name, "json") == 0)
        return WH_LOG_JSON;
    return -1;
}

void wh_log_set_format(int format)
{
    if (format == WH_LOG_TEXT || format == WH_LOG_JSON)
        log_format = format;
}

/* Appends s to line[*n..cap) as a JSON string body (no quotes); stops at
 * the end of the buffer without splitting an escape. */
static void json_escape(char *line, size_t *n, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t k = 0;
        if (*p == '"' || *p == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)*p;
        } else if (*p == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (*p == '\t') {
            esc[k++] = '\\';
            esc[k++] = 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            k = 6;
        } else if (*p >= 0x80) {
            /* keep valid UTF-8 sequences, replace stray bytes with '?' */
            int len = (*p & 0xe0) == 0xc0   ? 2
                      : (*p & 0xf0) == 0xe0 ? 3
                      : (*p & 0xf8) == 0xf0 ? 4
                                            : 0;
            int ok = len > 0;
            for (int i = 1; ok && i < len; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (!ok) {
                esc[k++] = '?';
            } else {
                if (*n + (size_t)len >= cap)
                    return;
                memcpy(line + *n, p, (size_t)len);
                *n += (size_t)len;
                p += len - 1;
                continue;
            }
        } else {
            esc[k++] = (char)*p;
        }
        if (*n + k >= cap)
            return;
        memcpy(line + *n, esc, k);
        *n += k;
    }
}

static void log_json(int level, const struct timespec *ts, const struct tm *tm, const char *msg)
{
    char line[4096];
    size_t cap = sizeof(line) - 64; /* room for the closing members */
    int lv = level < 0 ? 0 : level > 3 ? 3 : level;
    int n0 =
        snprintf(line, sizeof(line),
                 "{\"timestamp\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"severity_text\":\"%s\","
                 "\"severity_number\":%d,\"service.name\":\"%s%s\",\"body\":\"",
                 tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min,
                 tm->tm_sec, ts->tv_nsec / 1000, level_names[lv], level_otel[lv],
                 strncmp(log_daemon, "walhook", 7) == 0 ? "" : "walhook-", log_daemon);
    if (n0 < 0 || (size_t)n0 >= cap)
        return;
    size_t n = (size_t)n0;
    json_escape(line, &n, cap, msg);
    int m = snprintf(line + n, sizeof(line) - n,
                     "\",\"attributes\":{\"walhook.daemon\":\"%s\",\"process.pid\":%d}}\n",
                     log_daemon, (int)getpid());
    if (m < 0 || (size_t)m >= sizeof(line) - n)
        return;
    n += (size_t)m;
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

int wh_log_level_parse(const char *name)
{
    static const char *const lower[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, lower[i]) == 0)
            return i;
    return -1;
}

void wh_log(int level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (log_format == WH_LOG_JSON) {
        char msg[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_json(level, &ts, &tm, msg);
        return;
    }
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_daemon,
                     level_names[level < 0   ? 0
                                 : level > 3 ? 3
                                             : level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len++] = '\n';
    /* One write(2) per line so lines of several processes do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void wh_deadline_in(struct timespec *ts, clockid_t clock, int64_t ms)
{
    clock_gettime(clock, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void wh_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

void wh_cond_sleep(pthread_cond_t *cv, pthread_mutex_t *mu, const atomic_int *stop, int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts;
    wh_deadline_in(&ts, CLOCK_MONOTONIC, ms);
    pthread_mutex_lock(mu);
    while (!atomic_load(stop))
        if (pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(mu);
}

uint64_t wh_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t wh_now_ms(void)
{
    return wh_now_us() / 1000u;
}

int64_t wh_wallclock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void wh_sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !wh_stop_requested)
        ;
}

/* The stop pipe (wh_stop_fd): its write end is only written, by
 * wh_stop_request, which may run in a signal handler. The signal pipe
 * (wh_signal_wait): written after every flag a handler sets, drained by
 * its one waiter. Two pipes: the watchdog's stays readable from the stop
 * on, whoever drains the other. */
static int stop_rfd = -1;
static volatile sig_atomic_t stop_wfd = -1;
static int sig_rfd = -1;
static volatile sig_atomic_t sig_wfd = -1;

/* one byte into the write end fd, if any (async-signal-safe) */
static void pipe_poke(int fd)
{
    if (fd >= 0) {
        char b = 1;
        ssize_t w = write(fd, &b, 1); /* full: a byte is there already */
        (void)w;
    }
}

void wh_stop_request(void)
{
    int saved = errno;
    wh_stop_requested = 1;
    pipe_poke(stop_wfd);
    pipe_poke(sig_wfd);
    errno = saved;
}

int wh_stop_fd(void)
{
    return stop_rfd;
}

static void on_stop(int sig)
{
    (void)sig;
    wh_stop_request();
}

static void on_hup(int sig)
{
    (void)sig;
    int saved = errno;
    wh_reload_requested = 1;
    pipe_poke(sig_wfd);
    errno = saved;
}

int wh_signal_fd(void)
{
    return sig_rfd;
}

void wh_signal_drain(void)
{
    char buf[64];
    int fd = sig_rfd;
    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
        ;
}

int wh_signal_wait(int timeout_ms)
{
    /* drained before the flags are read: a signal after the read leaves
     * its byte for the poll, none is lost */
    wh_signal_drain();
    if (wh_stop_requested || wh_reload_requested)
        return 1;
    struct pollfd p = {sig_rfd, POLLIN, 0};
    /* no pipe, or not the pipe any more (closed by mistake): a nap of at
     * most 100 ms (a stop signal to this thread cuts it short, a SIGHUP
     * does not), not a spin */
    if (p.fd < 0 || (poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms) == 1 &&
                     (p.revents & (POLLNVAL | POLLERR | POLLHUP))))
        wh_sleep_ms(timeout_ms < 0 || timeout_ms > 100 ? 100 : timeout_ms);
    return wh_stop_requested || wh_reload_requested;
}

void wh_stdfds_open(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int n = open("/dev/null", O_RDWR);
        if (n < 0)
            return;
        if (n != fd) { /* a lower one was closed too and got it: not ours to move */
            close(n);
            return;
        }
    }
}

void wh_signals_install(void)
{
    /* the stop pipe must not become stdin or stderr: its write end as fd 2
     * took every log line, and the watchdog's poll then returned at once,
     * forever */
    wh_stdfds_open();
    int fds[2];
    if (stop_rfd < 0 && pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
        stop_rfd = fds[0];
        stop_wfd = fds[1];
    }
    if (sig_rfd < 0 && pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
        sig_rfd = fds[0];
        sig_wfd = fds[1];
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* walhook up starts its daemons with SIGHUP blocked (cli_sup): from
     * here on it is a reload */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int wh_backoff_ms(int attempt, int base_ms, int max_ms)
{
    static __thread unsigned int seed;
    if (seed == 0)
        seed = (unsigned int)(wh_now_us() ^ (uint64_t)pthread_self() ^ (uint64_t)getpid());
    if (base_ms < 1)
        base_ms = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;
    int64_t cap = base_ms;
    for (int i = 0; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    return (int)(rand_r(&seed) % (cap + 1));
}

int wh_str_visible(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7E)
            return 0;
    return 1;
}

int wh_endpoint_scheme_ok(const char *url)
{
    return strncmp(url, "ipc://", 6) == 0 || strncmp(url, "tcp://", 6) == 0 ||
           strncmp(url, "tls+tcp://", 10) == 0;
}

/* 1 when host (without brackets or port) is a loopback address or the
 * name localhost. */
static int host_is_loopback(const char *host)
{
    unsigned char a[16];
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) != 1)
        return 0;
    static const unsigned char one[16] = {[15] = 1};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(a, one, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 127);
}

int wh_endpoint_plain_beyond_loopback(const char *url)
{
    if (strncmp(url, "tcp://", 6) != 0)
        return 0;
    /* HOST:PORT or [HOST]:PORT, PORT digits only: anything else (a user
     * part, a path, a ';' source address) counts as beyond */
    const char *h = url + 6, *end, *port;
    char host[256];
    if (*h == '[') {
        h++;
        end = strchr(h, ']');
        if (end == NULL || end[1] != ':')
            return 1;
        port = end + 2;
    } else {
        end = strrchr(h, ':');
        if (end == NULL)
            return 1;
        port = end + 1;
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= sizeof(host) || *port == '\0' || port[strspn(port, "0123456789")] != '\0')
        return 1;
    memcpy(host, h, n);
    host[n] = '\0';
    return !host_is_loopback(host);
}

int wh_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int wh_u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int wh_u32_in(const uint32_t *v, size_t n, uint32_t x)
{
    /* bsearch with no array (n 0, v NULL) is undefined behaviour */
    return n > 0 && bsearch(&x, v, n, sizeof(*v), wh_u32_cmp) != NULL;
}

int wh_grow(void *arrp, size_t need, size_t *cap, size_t elem, size_t first)
{
    if (need <= *cap)
        return WH_OK;
    size_t nc = *cap ? *cap : (first ? first : 1);
    while (nc < need)
        nc *= 2;
    void **arr = arrp;
    void *n = realloc(*arr, nc * elem);
    if (n == NULL)
        return WH_ERR;
    *arr = n;
    *cap = nc;
    return WH_OK;
}

int wh_strlcpy(char *dst, const char *src, size_t dstlen)
{
    if (dstlen == 0)
        return WH_ERR;
    size_t n = strlen(src);
    if (n >= dstlen) {
        memcpy(dst, src, dstlen - 1);
        dst[dstlen - 1] = '\0';
        return WH_ERR;
    }
    memcpy(dst, src, n + 1);
    return WH_OK;
}

int wh_mkdirs(const char *path, int mode, char *err, size_t errlen)
{
    char tmp[4096];
    if (wh_strlcpy(tmp, path, sizeof(tmp)) != WH_OK)
        return wh_seterr(err, errlen, "path too long: %s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
            return wh_seterr(err, errlen, "cannot create directory %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
        return wh_seterr(err, errlen, "cannot create directory %s: %s", tmp, strerror(errno));
    return WH_OK;
}

int wh_data_dir_prepare(const char *dir, int create, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT)
            return wh_seterr(err, errlen, "data directory %s: %s", dir, strerror(errno));
        if (!create)
            return WH_OK; /* created 0700 at start */
        if (wh_mkdirs(dir, 0700, err, errlen) != WH_OK)
            return WH_ERR;
        if (stat(dir, &st) != 0)
            return wh_seterr(err, errlen, "data directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return wh_seterr(err, errlen, "data directory %s is not a directory", dir);
    if ((st.st_mode & 077) != 0)
        return wh_seterr(err, errlen,
                         "data directory %s has mode %04o: group or others may read the stored "
                         "rows; make it private: chmod 700 %s",
                         dir, (unsigned)(st.st_mode & 07777), dir);
    return WH_OK;
}

long wh_peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

uint64_t wh_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}
