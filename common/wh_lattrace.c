/* wh_lattrace: opt-in per-hop latency trace. See wh_lattrace.h. */
#include "wh_lattrace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_util.h"

#define LAT_BUF_BYTES 32768

static atomic_int lat_state; /* 0 unknown, 1 off, 2 on */
/* the thread's buffer, from the heap on its first trace line (a static
 * __thread array was zeroed, so resident, in every thread of every daemon,
 * tracing on or off); freed when the thread exits */
static __thread char *lat_buf;
static __thread size_t lat_len;
static pthread_key_t lat_key;
static pthread_once_t lat_once = PTHREAD_ONCE_INIT;

static void lat_key_init(void)
{
    pthread_key_create(&lat_key, free);
}
static __thread int64_t lat_now; /* the batch's time: one clock read per batch */

int wh_lat_trace_on(void)
{
    int s = atomic_load_explicit(&lat_state, memory_order_relaxed);
    if (s == 0) {
        const char *v = getenv("WH_LAT_TRACE");
        s = v != NULL && strcmp(v, "1") == 0 ? 2 : 1;
        atomic_store_explicit(&lat_state, s, memory_order_relaxed);
    }
    return s == 2;
}

void wh_lat_trace_flush(void)
{
    size_t off = 0;
    while (off < lat_len) {
        ssize_t w = write(2, lat_buf + off, lat_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    lat_len = 0;
    lat_now = 0;
}

void wh_lat_trace_add(const char *hop, int64_t commit_ts_us)
{
    if (!wh_lat_trace_on() || commit_ts_us <= 0)
        return;
    if (lat_buf == NULL) {
        pthread_once(&lat_once, lat_key_init);
        lat_buf = malloc(LAT_BUF_BYTES);
        if (lat_buf == NULL)
            return;
        pthread_setspecific(lat_key, lat_buf);
        lat_len = 0;
    }
    if (lat_now == 0)
        lat_now = wh_wallclock_us();
    if (lat_len + 96 > LAT_BUF_BYTES) {
        int64_t now = lat_now;
        wh_lat_trace_flush();
        lat_now = now;
    }
    int n = snprintf(lat_buf + lat_len, LAT_BUF_BYTES - lat_len, "LAT %s %lld %lld\n", hop,
                     (long long)lat_now, (long long)commit_ts_us);
    if (n > 0 && (size_t)n < LAT_BUF_BYTES - lat_len)
        lat_len += (size_t)n;
}
