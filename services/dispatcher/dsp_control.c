/* dsp_control: Stats over NNG for the admin. */
#include "dsp_control.h"

#include <stdlib.h>

#include "wh_buf.h"
#include "wh_util.h"

typedef struct stats_cookie {
    Walhook__StatsReply stats;
    wh_buf text;
} stats_cookie;

static void handle(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    dsp_loop *loop = arg;
    *cookie = NULL;
    if (req->body_case != WALHOOK__REQUEST__BODY_STATS) {
        wh_reply_error(rep, 1, "dispatcher: unsupported request (only Stats)");
        return;
    }
    stats_cookie *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        wh_reply_error(rep, 1, "dispatcher: out of memory");
        return;
    }
    walhook__stats_reply__init(&c->stats);
    wh_buf_init(&c->text, 0);
    if (dsp_loop_metrics(loop, &c->text) != WH_OK || wh_buf_cstr(&c->text) != WH_OK) {
        wh_buf_free(&c->text);
        free(c);
        wh_reply_error(rep, 1, "dispatcher: rendering metrics failed");
        return;
    }
    c->stats.daemon = "dispatcher";
    c->stats.state = "running";
    c->stats.ready = 1;
    c->stats.metrics_text = c->text.data;
    rep->body_case = WALHOOK__REPLY__BODY_STATS;
    rep->stats = &c->stats;
    *cookie = c;
}

static void done(void *arg, Walhook__Reply *rep, void *cookie)
{
    WH_UNUSED(arg);
    WH_UNUSED(rep);
    stats_cookie *c = cookie;
    if (c == NULL)
        return;
    wh_buf_free(&c->text);
    free(c);
}

int dsp_control_start(wh_server **out, const char *url, size_t max_msg, dsp_loop *loop, char *err,
                      size_t errlen)
{
    return wh_server_start(out, url, 1, max_msg, handle, done, loop, err, errlen);
}
