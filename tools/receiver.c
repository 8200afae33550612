/* walhook-receiver: a sample webhook target for demos and tests.
 *
 *   walhook-receiver --listen 127.0.0.1:9000 [--out FILE] [--print]
 *                    [--fail-every N] [--delay-ms N] [--delay-match S] [--status CODE] [--headers
 * FILE]
 *                    [--first N] [--retry-after V] [--location URL] [--reject-match S]
 *                    [--slow-body-ms N] [--hang] [--reset] [--requests FILE]
 *                    [--latency FILE]
 *
 * Accepts POST on any path. With --out, each acknowledged body is appended to
 * FILE as one line and flushed before the 200 goes out, so whatever a test
 * reads from FILE was acknowledged. --print prints one line per event.
 * --fail-every N answers 500 to every Nth POST; --status CODE answers CODE to
 * every POST (bodies are recorded only when CODE is 2xx); --delay-ms waits
 * before answering (with --delay-match S: only for bodies containing S; with
 * --delay-times N: only the first N POSTs it would delay). --headers FILE appends,
 * for each body written to --out, one line "webhook-id<TAB>webhook-timestamp<TAB>webhook-signature"
 * ("-" for a missing header), so line N of both files belong together. GET answers a one-line
 * summary (for health checks), including "N overlapping": POSTs that arrived while another POST was
 * in progress (two dispatchers posting to one target at once; also logged on
 * stderr). GET /reset-max restarts the "max concurrent" count from the POSTs in
 * flight now (a test that kills a dispatcher clears the dead one's requests).
 * Bodies over 64 MiB get 413.
 *
 * Failure modes for the dispatcher's tests (issue 8):
 *   --first N         --status/--hang/--reset apply to the first N POSTs only,
 *                     then 200 (a target that is down, then back)
 *   --retry-after V   sends "Retry-After: V" with every non-2xx answer
 *   --location URL    sends "Location: URL" (with --status 301: a redirect)
 *   --reject-match S  answers 400 to a body containing S (a "bad event")
 *   --reject-times N  ...only the first N such bodies (then it is accepted)
 *   --reject-status C ...answered C instead of 400 (503: a retryable bad event)
 *   --slow-body-ms N  the answer's body trickles, one byte every N ms
 *   --hang            accepts the request and never answers
 *   --reset           closes the connection without an answer
 *   --requests FILE   one line per POST: "<unix ms> <status> <X-Batch-Size>
 *                     <webhook-id>" (times, for Retry-After checks)
 *
 * --latency FILE appends, for each event of an acknowledged body, the
 * microseconds from its commit_ts to the body's arrival (one number a line;
 * for benchmarks: the first "commit_ts":" of each envelope is taken, so no
 * row column may be named commit_ts). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "wh_buf.h"
#include "wh_json.h"
#include "wh_util.h"

#define RCV_MAX_BODY ((size_t)64 << 20)

typedef struct rcv_opts {
    const char *listen;
    const char *out;
    int print;
    long fail_every;
    long delay_ms;
    const char *delay_match;
    long delay_times;
    int status;
    const char *headers;
    long first;
    const char *retry_after;
    const char *location;
    const char *reject_match;
    long reject_times;
    long reject_status; /* 0: 400 */
    long slow_body_ms;
    int hang;
    int reset;
    const char *requests;
    const char *latency;
} rcv_opts;

typedef struct rcv_state {
    rcv_opts o;
    FILE *out;
    FILE *headers;
    FILE *requests_f;
    FILE *latency;
    pthread_mutex_t mu;
    unsigned long requests;     /* POSTs seen */
    unsigned long stored;       /* bodies acknowledged with 2xx */
    unsigned long rejected;     /* bodies answered 400 for --reject-match */
    unsigned long delayed;      /* POSTs delayed (--delay-times) */
    unsigned long inflight;     /* POSTs between their headers and their completion */
    unsigned long overlaps;     /* POSTs that began while another was in flight */
    unsigned long max_inflight; /* most POSTs in flight at once */
} rcv_state;

typedef struct rcv_req {
    wh_buf body;
    int too_big;
    int counted; /* a POST counted in inflight */
    rcv_state *s;
} rcv_req;

static void usage(FILE *f)
{
    fprintf(f, "usage: walhook-receiver --listen HOST:PORT [--out FILE] [--print]\n"
               "                        [--fail-every N] [--delay-ms N] [--delay-match S] "
               "[--delay-times N] [--status CODE]\n"
               "                        [--headers FILE] [--first N] [--retry-after V]\n"
               "                        [--location URL] [--reject-match S] [--reject-times N]\n"
               "                        [--reject-status CODE] [--slow-body-ms N]\n"
               "                        [--hang] [--reset] [--requests FILE] [--latency FILE]\n");
}

/* ---- --print ---- */

static const char *json_s(const wh_json *obj, const char *key)
{
    const wh_json *v = wh_json_get(obj, key);
    return v && v->type == WH_JSON_STRING && v->str ? v->str : "-";
}

static void print_event(const wh_json *e)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    wh_buf_printf(&b, "%s %s.%s %s key=", json_s(e, "op"), json_s(e, "schema"), json_s(e, "table"),
                  json_s(e, "id"));
    wh_json_render(&b, wh_json_get(e, "key"));
    wh_buf_puts(&b, " after=");
    wh_json_render(&b, wh_json_get(e, "after"));
    wh_buf_putc(&b, '\n');
    fwrite(b.data, 1, b.len, stdout);
    wh_buf_free(&b);
}

static void print_body(const char *body, size_t len)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (wh_json_parse(body, len, &j, err, sizeof(err)) != WH_OK) {
        printf("(body of %zu bytes is not JSON: %s)\n", len, err);
        return;
    }
    if (j->type == WH_JSON_ARRAY) {
        for (const wh_json *e = j->child; e; e = e->next)
            if (e->type == WH_JSON_OBJECT)
                print_event(e);
    } else if (j->type == WH_JSON_OBJECT) {
        print_event(j);
    }
    fflush(stdout);
    wh_json_free(j);
}

/* ---- HTTP ---- */

static rcv_state *g_state; /* for the answer's extra headers */

/* --slow-body-ms: one byte of "slow....\n" per interval. */
static ssize_t slow_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    static const char text[] = "slow answer\n";
    if (pos >= sizeof(text) - 1)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max < 1)
        return 0;
    wh_sleep_ms((int)g_state->o.slow_body_ms);
    buf[0] = text[pos];
    return 1;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body)
{
    struct MHD_Response *r;
    if (g_state != NULL && g_state->o.slow_body_ms > 0 && status != MHD_HTTP_OK)
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1, slow_reader, NULL, NULL);
    else
        r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (g_state != NULL && (status < 200 || status >= 300)) {
        if (g_state->o.retry_after)
            MHD_add_response_header(r, "Retry-After", g_state->o.retry_after);
        if (g_state->o.location)
            MHD_add_response_header(r, "Location", g_state->o.location);
    }
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* --latency: "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" -> microseconds since the epoch. */
static int parse_ts_us(const char *p, const char *end, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char tmp[32];
    size_t n = 0;
    while (p + n < end && p[n] != '"' && n < sizeof(tmp) - 1)
        n++;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    const char *rest = strptime(tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return WH_ERR;
    int64_t us = 0, scale = 100000;
    if (*rest == '.')
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
            us += (*rest - '0') * scale;
    *out = (int64_t)timegm(&tm) * 1000000 + us;
    return WH_OK;
}

/* One line per event: microseconds from its commit_ts to now. */
static void record_latency(rcv_state *s, const wh_buf *body)
{
    static const char key[] = "\"commit_ts\":\"";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    const char *p = body->data, *end = body->data + body->len;
    while (p && p < end) {
        const char *k = memmem(p, (size_t)(end - p), key, sizeof(key) - 1);
        if (!k)
            break;
        k += sizeof(key) - 1;
        int64_t c;
        if (parse_ts_us(k, end, &c) == WH_OK)
            fprintf(s->latency, "%lld\n", (long long)(now - c));
        /* the next envelope: skip past this one's id-bearing head */
        p = memmem(k, (size_t)(end - k), "{\"id\":", 6);
    }
    fflush(s->latency);
}

/* Appends the body as one line and flushes. Called with s->mu held. */
static int store_body(rcv_state *s, wh_buf *body)
{
    for (size_t i = 0; i < body->len; i++)
        if (body->data[i] == '\n' || body->data[i] == '\r')
            body->data[i] = ' '; /* keep one body = one line */
    if (body->len && fwrite(body->data, 1, body->len, s->out) != body->len)
        return WH_ERR;
    if (fputc('\n', s->out) == EOF || fflush(s->out) != 0)
        return WH_ERR;
    return WH_OK;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    rcv_state *s = cls;
    rcv_req *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        wh_buf_init(&rq->body, RCV_MAX_BODY);
        *con_cls = rq;
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
            rq->counted = 1;
            rq->s = s;
            pthread_mutex_lock(&s->mu);
            if (++s->inflight > s->max_inflight)
                s->max_inflight = s->inflight;
            if (s->inflight > 1) {
                s->overlaps++;
                fprintf(stderr, "walhook-receiver: overlapping POST (%lu in flight)\n",
                        s->inflight);
            }
            pthread_mutex_unlock(&s->mu);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!rq->too_big && wh_buf_append(&rq->body, upload_data, *upload_data_size) != WH_OK) {
            rq->too_big = 1;
            wh_buf_free(&rq->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0) {
        char line[160];
        pthread_mutex_lock(&s->mu);
        if (strcmp(url, "/reset-max") == 0)
            s->max_inflight = s->inflight;
        snprintf(
            line, sizeof(line),
            "walhook-receiver: %lu requests, %lu stored, %lu overlapping, %lu max concurrent\n",
            s->requests, s->stored, s->overlaps, s->max_inflight);
        pthread_mutex_unlock(&s->mu);
        return reply(conn, MHD_HTTP_OK, line);
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (rq->too_big)
        return reply(conn, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");

    if (s->o.delay_ms > 0 &&
        (!s->o.delay_match ||
         (rq->body.data && memmem(rq->body.data, rq->body.len, s->o.delay_match,
                                  strlen(s->o.delay_match)) != NULL))) {
        pthread_mutex_lock(&s->mu);
        int delay = s->o.delay_times <= 0 || s->delayed < (unsigned long)s->o.delay_times;
        s->delayed++;
        pthread_mutex_unlock(&s->mu);
        if (delay)
            wh_sleep_ms((int)s->o.delay_ms);
    }

    unsigned status = MHD_HTTP_OK;
    pthread_mutex_lock(&s->mu);
    unsigned long n = ++s->requests;
    int failing = s->o.first <= 0 || n <= (unsigned long)s->o.first;
    if (failing && (s->o.hang || s->o.reset)) {
        if (s->requests_f) {
            fprintf(s->requests_f, "%lld %s - -\n", (long long)(wh_wallclock_us() / 1000),
                    s->o.hang ? "hang" : "reset");
            fflush(s->requests_f);
        }
        pthread_mutex_unlock(&s->mu);
        if (s->o.reset)
            return MHD_NO; /* the connection is closed without an answer */
        while (!wh_stop_requested)
            wh_sleep_ms(100); /* hang after accept */
        return MHD_NO;
    }
    if (s->o.fail_every > 0 && n % (unsigned long)s->o.fail_every == 0)
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    else if (s->o.reject_match && rq->body.data &&
             (s->o.reject_times <= 0 || s->rejected < (unsigned long)s->o.reject_times) &&
             memmem(rq->body.data, rq->body.len, s->o.reject_match, strlen(s->o.reject_match))) {
        status = s->o.reject_status ? (unsigned)s->o.reject_status : MHD_HTTP_BAD_REQUEST;
        s->rejected++;
    } else if (s->o.status && failing)
        status = (unsigned)s->o.status;
    if (s->requests_f) {
        const char *bs = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Batch-Size");
        const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-id");
        fprintf(s->requests_f, "%lld %u %s %s\n", (long long)(wh_wallclock_us() / 1000), status,
                bs ? bs : "-", id ? id : "-");
        fflush(s->requests_f);
    }
    if (status >= 200 && status < 300) {
        if (s->out && store_body(s, &rq->body) != WH_OK) {
            fprintf(stderr, "walhook-receiver: cannot write %s: %s\n", s->o.out, strerror(errno));
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        } else {
            s->stored++;
            if (s->headers) {
                const char *names[3] = {"webhook-id", "webhook-timestamp", "webhook-signature"};
                for (int i = 0; i < 3; i++) {
                    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, names[i]);
                    fprintf(s->headers, "%s%s", i ? "\t" : "", v ? v : "-");
                }
                fputc('\n', s->headers);
                fflush(s->headers);
            }
            if (s->latency && rq->body.data)
                record_latency(s, &rq->body);
            if (s->o.print)
                print_body(rq->body.data ? rq->body.data : "", rq->body.len);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return reply(conn, status, status >= 200 && status < 300 ? "ok\n" : "error\n");
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    rcv_req *rq = *con_cls;
    if (rq) {
        if (rq->counted) {
            pthread_mutex_lock(&rq->s->mu);
            rq->s->inflight--;
            pthread_mutex_unlock(&rq->s->mu);
        }
        wh_buf_free(&rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return WH_ERR;
    *out = v;
    return WH_OK;
}

static int parse_args(int argc, char **argv, rcv_opts *o)
{
    o->listen = "127.0.0.1:9000";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--print") == 0) {
            o->print = 1;
            continue;
        }
        if (strcmp(a, "--hang") == 0) {
            o->hang = 1;
            continue;
        }
        if (strcmp(a, "--reset") == 0) {
            o->reset = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "walhook-receiver: unknown option or missing value: %s\n", a);
            return WH_ERR;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            o->listen = v;
        } else if (strcmp(a, "--out") == 0) {
            o->out = v;
        } else if (strcmp(a, "--headers") == 0) {
            o->headers = v;
        } else if (strcmp(a, "--delay-match") == 0) {
            o->delay_match = v;
        } else if (strcmp(a, "--delay-times") == 0 && parse_long(v, 0, 1000000000, &n) == WH_OK) {
            o->delay_times = n;
        } else if (strcmp(a, "--latency") == 0) {
            o->latency = v;
        } else if (strcmp(a, "--fail-every") == 0 && parse_long(v, 0, 1000000000, &n) == WH_OK) {
            o->fail_every = n;
        } else if (strcmp(a, "--delay-ms") == 0 && parse_long(v, 0, 3600000, &n) == WH_OK) {
            o->delay_ms = n;
        } else if (strcmp(a, "--status") == 0 && parse_long(v, 100, 599, &n) == WH_OK) {
            o->status = (int)n;
        } else if (strcmp(a, "--first") == 0 && parse_long(v, 0, 1000000000, &n) == WH_OK) {
            o->first = n;
        } else if (strcmp(a, "--retry-after") == 0) {
            o->retry_after = v;
        } else if (strcmp(a, "--location") == 0) {
            o->location = v;
        } else if (strcmp(a, "--reject-match") == 0 && v[0] != '\0') {
            o->reject_match = v;
        } else if (strcmp(a, "--reject-times") == 0 && parse_long(v, 0, 1000000000, &n) == WH_OK) {
            o->reject_times = n;
        } else if (strcmp(a, "--reject-status") == 0 && parse_long(v, 300, 599, &n) == WH_OK) {
            o->reject_status = n;
        } else if (strcmp(a, "--slow-body-ms") == 0 && parse_long(v, 0, 60000, &n) == WH_OK) {
            o->slow_body_ms = n;
        } else if (strcmp(a, "--requests") == 0) {
            o->requests = v;
        } else {
            fprintf(stderr, "walhook-receiver: bad option %s %s\n", a, v);
            return WH_ERR;
        }
    }
    return WH_OK;
}

/* "host:port" -> sockaddr (numeric or resolvable host). */
static int resolve(const char *listen, struct sockaddr_storage *ss, int *v6)
{
    char host[256];
    const char *colon;
    size_t hl;
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':')
            return WH_ERR;
        hl = (size_t)(rb - listen - 1);
        if (hl >= sizeof(host))
            return WH_ERR;
        memcpy(host, listen + 1, hl);
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return WH_ERR;
        hl = (size_t)(colon - listen);
        if (hl >= sizeof(host))
            return WH_ERR;
        memcpy(host, listen, hl);
    }
    host[hl] = '\0';
    long port;
    if (hl == 0 || parse_long(colon + 1, 0, 65535, &port) != WH_OK)
        return WH_ERR;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
        return WH_ERR;
    memset(ss, 0, sizeof(*ss));
    *v6 = ai->ai_family == AF_INET6;
    if (*v6) {
        memcpy(ss, ai->ai_addr, sizeof(struct sockaddr_in6));
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    } else {
        memcpy(ss, ai->ai_addr, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    }
    freeaddrinfo(ai);
    return WH_OK;
}

int main(int argc, char **argv)
{
    static rcv_state s;
    if (parse_args(argc, argv, &s.o) != WH_OK) {
        usage(stderr);
        return 2;
    }
    struct sockaddr_storage ss;
    int v6 = 0;
    if (resolve(s.o.listen, &ss, &v6) != WH_OK) {
        fprintf(stderr, "walhook-receiver: bad --listen '%s' (want host:port)\n", s.o.listen);
        return 2;
    }
    if (s.o.out) {
        s.out = fopen(s.o.out, "a");
        if (!s.out) {
            fprintf(stderr, "walhook-receiver: cannot open %s: %s\n", s.o.out, strerror(errno));
            return 1;
        }
    }
    if (s.o.headers) {
        s.headers = fopen(s.o.headers, "a");
        if (!s.headers) {
            fprintf(stderr, "walhook-receiver: cannot open %s: %s\n", s.o.headers, strerror(errno));
            return 1;
        }
    }
    if (s.o.latency) {
        s.latency = fopen(s.o.latency, "a");
        if (!s.latency) {
            fprintf(stderr, "walhook-receiver: cannot open %s: %s\n", s.o.latency, strerror(errno));
            return 1;
        }
    }
    if (s.o.requests) {
        s.requests_f = fopen(s.o.requests, "a");
        if (!s.requests_f) {
            fprintf(stderr, "walhook-receiver: cannot open %s: %s\n", s.o.requests,
                    strerror(errno));
            return 1;
        }
    }
    g_state = &s;
    pthread_mutex_init(&s.mu, NULL);
    wh_signals_install();
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (v6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, handler, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "walhook-receiver: cannot listen on %s\n", s.o.listen);
        if (s.out)
            fclose(s.out);
        return 1;
    }
    const union MHD_DaemonInfo *inf = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char shown[300];
    snprintf(shown, sizeof(shown), "%s", s.o.listen);
    char *c = strrchr(shown, ':');
    if (c && inf)
        snprintf(c + 1, sizeof(shown) - (size_t)(c + 1 - shown), "%u", (unsigned)inf->port);
    printf("walhook-receiver: listening on %s\n", shown);
    fflush(stdout);
    while (!wh_stop_requested)
        wh_sleep_ms(100);
    MHD_stop_daemon(d);
    pthread_mutex_lock(&s.mu);
    fprintf(stderr, "walhook-receiver: stopped after %lu requests (%lu stored)\n", s.requests,
            s.stored);
    pthread_mutex_unlock(&s.mu);
    if (s.out)
        fclose(s.out);
    if (s.headers)
        fclose(s.headers);
    if (s.requests_f)
        fclose(s.requests_f);
    return 0;
}
