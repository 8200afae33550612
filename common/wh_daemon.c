/* wh_daemon: shared start-up, Stats endpoint and process metrics. */
#include "wh_daemon.h"
#include "wh_metrics.h"
#include "wh_util.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

const char *wh_daemon_init(int argc, char **argv, const char *daemon, wh_config *cfg)
{
    char prog[64], err[WH_ERRLEN];
    snprintf(prog, sizeof(prog), "walhook-%s", daemon);
    const char *path = wh_config_parse_args(argc, argv, prog);
    if (wh_config_load(cfg, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(2);
    }
    /* Memory: few malloc arenas, and large blocks (batches) from mmap so that
     * freeing them returns the memory at once instead of growing the heap. */
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    int level = wh_log_level_parse(cfg->log_level);
    wh_log_init(daemon, level < 0 ? WH_LOG_INFO : level);
    wh_signals_install();
    return path;
}

int wh_metric_process(wh_buf *b, const char *daemon)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "daemon=\"%s\"", daemon);
    long rss = wh_peak_rss_kib();
    int rc = wh_metric_header(b, "walhook_up", "gauge", "1 while the daemon runs");
    rc |= wh_metric_u64(b, "walhook_up", labels, 1);
    rc |= wh_metric_header(b, "walhook_peak_rss_bytes", "gauge", "peak resident set size (VmHWM)");
    rc |= wh_metric_i64(b, "walhook_peak_rss_bytes", labels, rss > 0 ? (int64_t)rss * 1024 : 0);
    return rc == WH_OK ? WH_OK : WH_ERR;
}

typedef struct stats_mem {
    Walhook__StatsReply sr;
    wh_buf text;
    char reason[256];
} stats_mem;

void wh_stats_reply(Walhook__Reply *rep, void **cookie, const char *daemon, wh_stats_fn fn,
                    void *arg)
{
    stats_mem *m = calloc(1, sizeof(*m));
    *cookie = NULL;
    if (m == NULL) {
        wh_reply_error(rep, 500, "%s: out of memory", daemon);
        return;
    }
    walhook__stats_reply__init(&m->sr);
    wh_buf_init(&m->text, 0);
    const char *state = "running";
    int ready = 1;
    if (wh_metric_process(&m->text, daemon) != WH_OK ||
        fn(arg, &m->text, &state, &ready, m->reason, sizeof(m->reason)) != WH_OK ||
        wh_buf_cstr(&m->text) != WH_OK) {
        wh_buf_free(&m->text);
        free(m);
        wh_reply_error(rep, 500, "%s: cannot render metrics", daemon);
        return;
    }
    m->sr.daemon = (char *)daemon;
    m->sr.state = (char *)state;
    m->sr.ready = ready != 0;
    m->sr.metrics_text = m->text.data;
    m->sr.reason = m->reason;
    rep->body_case = WALHOOK__REPLY__BODY_STATS;
    rep->stats = &m->sr;
    *cookie = m;
}

void wh_stats_reply_free(void *cookie)
{
    stats_mem *m = cookie;
    if (m == NULL)
        return;
    wh_buf_free(&m->text);
    free(m);
}

struct wh_control {
    wh_server *srv;
    const char *daemon;
    wh_stats_fn fn;
    void *arg;
};

static void control_handle(void *arg, const Walhook__Request *req, Walhook__Reply *rep,
                           void **cookie)
{
    wh_control *c = arg;
    if (req->body_case != WALHOOK__REQUEST__BODY_STATS) {
        wh_reply_error(rep, 400,
                       "%s: unsupported request (the control endpoint answers Stats only)",
                       c->daemon);
        return;
    }
    wh_stats_reply(rep, cookie, c->daemon, c->fn, c->arg);
}

static void control_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    wh_stats_reply_free(cookie);
}

int wh_control_start(wh_control **out, const char *url, const char *daemon, wh_stats_fn fn,
                     void *arg, char *err, size_t errlen)
{
    wh_control *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return wh_seterr(err, errlen, "out of memory");
    c->daemon = daemon;
    c->fn = fn;
    c->arg = arg;
    if (wh_server_start(&c->srv, url, 1, 64 * 1024, control_handle, control_done, c, err, errlen) !=
        WH_OK) {
        free(c);
        return WH_ERR;
    }
    *out = c;
    return WH_OK;
}

void wh_control_stop(wh_control *c)
{
    if (c == NULL)
        return;
    wh_server_stop(c->srv);
    free(c);
}
