/* walhook-admin: REST status, /metrics, /livez, /readyz, /config. */
#include <stdio.h>
#include <stdlib.h>

#include "adm_http.h"
#include "adm_query.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "wh_util.h"

static wh_config cfg; /* large: keep off the stack */

int main(int argc, char **argv)
{
    char err[WH_ERRLEN];
    const char *path = wh_daemon_init(argc, argv, "admin", &cfg);
    wh_daemon_pidfile(&cfg, "admin");

    adm_query *q = NULL;
    adm_http *h = NULL;
    if (adm_query_open(&q, &cfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        return 1;
    }
    if (adm_http_start(&h, cfg.admin_listen, q, &cfg, err, sizeof(err)) != WH_OK) {
        wh_error("%s", err);
        adm_query_close(q);
        return 1;
    }
    wh_info("listening on http://%s (port %u)", cfg.admin_listen, (unsigned)adm_http_port(h));

    while (!wh_stop_requested) {
        if (wh_reload_requested) {
            wh_reload_requested = 0;
            static wh_config next;
            if (wh_config_load(&next, path, err, sizeof(err)) != WH_OK) {
                wh_warn("reload failed, keeping the old configuration: %s", err);
            } else {
                const char *diff = wh_config_static_diff(&cfg, &next);
                if (diff)
                    wh_warn("reload: %s changed; it takes effect after a restart", diff);
                adm_http_set_config(h, &next);
                wh_info("configuration reloaded");
            }
        }
        wh_sleep_ms(100);
    }
    wh_info("stopping");
    adm_http_stop(h);
    adm_query_close(q);
    return 0;
}
