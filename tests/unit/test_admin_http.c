/* The admin's HTTP server in-process on 127.0.0.1 (free port), queried with
 * a plain socket HTTP/1.0 client; daemons are real NNG rep servers
 * (wh_server) answering Stats. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../services/admin/adm_http.h"
#include "../../services/admin/adm_query.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_util.h"

static wh_config cfg;
static char tmpdir[256];

/* A TCP connection to 127.0.0.1:port from the address src ("127.0.0.2":
 * any 127/8 address is this host's). */
static int connect_from(uint16_t port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Sends "METHOD path" from src and returns the status code, or -1 when the
 * server closed the connection without an answer; the body (after the
 * headers) goes into body (NUL-terminated). */
static int http_from(uint16_t port, const char *src, const char *method, const char *path,
                     char *body, size_t bodylen)
{
    int fd = connect_from(port, src);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer read-token-0123456789\r\n\r\n",
                     method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char resp[1 << 16];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(resp) - 1 && (r = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
        len += (size_t)r;
    resp[len] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *b = strstr(resp, "\r\n\r\n");
    if (body && bodylen) {
        snprintf(body, bodylen, "%s", b ? b + 4 : "");
    }
    return status;
}

static int http(uint16_t port, const char *method, const char *path, char *body, size_t bodylen)
{
    return http_from(port, "127.0.0.1", method, path, body, bodylen);
}

/* 1 when the server closed fd (EOF or reset), 0 while it keeps it open. */
static int closed_by_server(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    char c;
    return read(fd, &c, 1) <= 0;
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_admin_http.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    wh_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", tmpdir);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "t1");
    snprintf(cfg.source_dsn, sizeof(cfg.source_dsn), "host=127.0.0.1 password=hunter2");
    snprintf(cfg.admin_read_token, sizeof(cfg.admin_read_token), "read-token-0123456789");
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_validate(&cfg, err, sizeof(err)), WH_OK);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

static void test_basic_endpoints(void **state)
{
    char err[WH_ERRLEN], body[1 << 16];
    adm_http *h = NULL;
    assert_int_equal(adm_http_start(&h, "127.0.0.1:0", NULL, &cfg, err, sizeof(err)), WH_OK);
    uint16_t port = adm_http_port(h);
    assert_true(port != 0);

    assert_int_equal(http(port, "GET", "/livez", body, sizeof(body)), 200);
    assert_string_equal(body, "ok\n");
    assert_int_equal(http(port, "GET", "/nope", body, sizeof(body)), 404);
    assert_non_null(strstr(body, "\"error\""));
    assert_int_equal(http(port, "POST", "/livez", body, sizeof(body)), 405);
    assert_int_equal(http(port, "DELETE", "/metrics", body, sizeof(body)), 405);
    /* no daemons: not ready, and the body says who */
    assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 503);
    assert_non_null(strstr(body, "\"not_ready\":\"store\""));
    assert_int_equal(http(port, "GET", "/config", body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"t1\""));
    assert_null(strstr(body, "hunter2"));
    assert_int_equal(http(port, "GET", "/metrics", body, sizeof(body)), 200);
    assert_non_null(strstr(body, "walhook_up{daemon=\"admin\"} 1"));
    assert_non_null(strstr(body, "walhook_daemon_up{daemon=\"store\"} 0"));
    assert_int_equal(http(port, "GET", "/", body, sizeof(body)), 200);
    assert_non_null(strstr(body, "<html"));

    /* the same port cannot be bound twice */
    char listen[64];
    adm_http *h2 = NULL;
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)port);
    assert_int_equal(adm_http_start(&h2, listen, NULL, &cfg, err, sizeof(err)), WH_ERR);
    assert_int_equal(adm_http_start(&h2, "127.0.0.1", NULL, &cfg, err, sizeof(err)), WH_ERR);
    adm_http_stop(h);
}

/* A fake daemon: answers Stats with its name, a state and metrics. */
typedef struct fake {
    const char *name;
    const char *state;
    int ready;
    char metrics[128];
} fake;

static void fake_fn(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    fake *f = arg;
    static __thread Walhook__StatsReply s;
    if (req->body_case != WALHOOK__REQUEST__BODY_STATS) {
        wh_reply_error(rep, 1, "only stats");
        return;
    }
    walhook__stats_reply__init(&s);
    s.daemon = (char *)f->name;
    s.state = (char *)f->state;
    s.ready = f->ready;
    s.metrics_text = f->metrics;
    rep->body_case = WALHOOK__REPLY__BODY_STATS;
    rep->stats = &s;
}

static void test_with_daemons(void **state)
{
    char err[WH_ERRLEN], body[1 << 16];
    fake f[3] = {{"store", "running", 1, ""},
                 {"ingestor", "connecting", 0, ""},
                 {"dispatcher", "running", 1, ""}};
    const char *urls[3] = {cfg.store_endpoint, cfg.ingestor_control, cfg.dispatcher_control};
    wh_server *srv[3];
    for (int i = 0; i < 3; i++) {
        snprintf(f[i].metrics, sizeof(f[i].metrics),
                 "# TYPE walhook_up gauge\nwalhook_up{daemon=\"%s\"} 1\n", f[i].name);
        assert_int_equal(
            wh_server_start(&srv[i], urls[i], 1, 1 << 20, fake_fn, NULL, &f[i], err, sizeof(err)),
            WH_OK);
    }
    adm_query *q = NULL;
    assert_int_equal(adm_query_open(&q, &cfg, err, sizeof(err)), WH_OK);
    adm_http *h = NULL;
    assert_int_equal(adm_http_start(&h, "127.0.0.1:0", q, &cfg, err, sizeof(err)), WH_OK);
    uint16_t port = adm_http_port(h);

    assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 503);
    assert_non_null(strstr(body, "\"not_ready\":\"ingestor\""));
    assert_non_null(strstr(body, "connecting"));

    f[1].state = "streaming";
    f[1].ready = 1;
    uint64_t t0 = wh_now_ms();
    assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 200);
    assert_true(wh_now_ms() - t0 < 1000);
    assert_non_null(strstr(body, "\"ready\":true"));

    assert_int_equal(http(port, "GET", "/metrics", body, sizeof(body)), 200);
    assert_non_null(strstr(body, "walhook_up{daemon=\"store\"} 1"));
    assert_non_null(strstr(body, "walhook_up{daemon=\"ingestor\"} 1"));
    assert_non_null(strstr(body, "walhook_up{daemon=\"dispatcher\"} 1"));
    assert_non_null(strstr(body, "walhook_daemon_up{daemon=\"ingestor\"} 1"));

    /* a daemon going away: not ready within about a second */
    wh_server_stop(srv[2]);
    t0 = wh_now_ms();
    assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 503);
    assert_true(wh_now_ms() - t0 < 2500);
    assert_non_null(strstr(body, "\"not_ready\":\"dispatcher\""));

    adm_http_stop(h);
    adm_query_close(q);
    wh_server_stop(srv[0]);
    wh_server_stop(srv[1]);
}

/* Issue 5, defect 6: idle connections (a client that connects and sends
 * nothing) took all 64 of the admin's connections, and /livez failed until
 * they timed out. */
static void test_idle_connection_flood(void **state)
{
    char err[WH_ERRLEN], body[256];
    adm_http *h = NULL;
    assert_int_equal(adm_http_start(&h, "127.0.0.1:0", NULL, &cfg, err, sizeof(err)), WH_OK);
    uint16_t port = adm_http_port(h);

    enum { IDLE = 200 };
    int idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        idle[i] = connect_from(port, "127.0.0.1");
    wh_sleep_ms(300); /* the server has accepted them all by now */
    uint64_t t0 = wh_now_ms();
    assert_int_equal(http(port, "GET", "/livez", body, sizeof(body)), 200);
    assert_string_equal(body, "ok\n");
    print_message("/livez answered in %llu ms beside %d idle connections\n",
                  (unsigned long long)(wh_now_ms() - t0), IDLE);
    int dropped = 0;
    for (int i = 0; i < IDLE; i++)
        dropped += closed_by_server(idle[i]);
    assert_int_equal(dropped, 0);

    /* one other client address gets ADM_HTTP_PER_CLIENT connections, then
     * is refused; 127.0.0.1 (probes on this host) still gets answers */
    enum { MORE = ADM_HTTP_PER_CLIENT + 8 };
    int other[MORE];
    for (int i = 0; i < MORE; i++)
        other[i] = connect_from(port, "127.0.0.2");
    /* under load the server may take a while to accept and refuse them:
     * wait (bounded) until the refused ones are closed, not a fixed time */
    int kept = MORE;
    for (int round = 0; round < 200 && kept > ADM_HTTP_PER_CLIENT; round++) {
        wh_sleep_ms(50);
        kept = 0;
        for (int i = 0; i < MORE; i++)
            kept += !closed_by_server(other[i]);
    }
    assert_int_equal(kept, ADM_HTTP_PER_CLIENT);
    assert_int_equal(http_from(port, "127.0.0.2", "GET", "/livez", body, sizeof(body)), -1);
    assert_int_equal(http(port, "GET", "/livez", body, sizeof(body)), 200);
    /* its connections closed, that client is served again */
    for (int i = 0; i < MORE; i++)
        close(other[i]);
    int status = -1;
    for (int i = 0; i < 50 && status != 200; i++) {
        wh_sleep_ms(50);
        status = http_from(port, "127.0.0.2", "GET", "/livez", body, sizeof(body));
    }
    assert_int_equal(status, 200);

    for (int i = 0; i < IDLE; i++)
        close(idle[i]);
    adm_http_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_endpoints),
        cmocka_unit_test(test_with_daemons),
        cmocka_unit_test(test_idle_connection_flood),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
