/* adm_query: the admin's view of the other daemons. Queries each daemon's
 * Stats over NNG (one wh_client per daemon, 1 s timeout, all three at once on
 * separate threads, every tenant's ingestor and every dispatcher replica at
 * once too), and turns the answers into a readiness verdict and one
 * Prometheus text page. A request waits for the answers adm_stats_wait_ms
 * at most (adm_bg): a daemon that has not answered by then (stopped, hung,
 * or found through a store that does not answer) is down for that request,
 * so /metrics, /readyz and the status page answer within that bound
 * whatever the daemons do. The verdict and the page are pure functions of
 * the answers (unit-tested without daemons). */
#ifndef ADM_QUERY_H
#define ADM_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_daemon.h"
#include "walhook.pb-c.h"

#define ADM_NDAEMONS 3
#define ADM_STATS_TIMEOUT_MS 1000
/* How long a request waits for the daemons' Stats (and /metrics for the
 * slot queries): a daemon's Stats is one call (ADM_STATS_TIMEOUT_MS), or
 * two in a row for the ingestors and the dispatcher replicas, which are
 * found through the store (GetState, LeaseList). Well under Prometheus'
 * default scrape_timeout (10 s): a scrape that times out loses every
 * daemon's metrics, walhook_daemon_up among them. Documented in README.md
 * (Operating it). */
/* admin.stats_wait_ms (2000 by default), set by adm_query_open before any
 * request */
extern int adm_stats_wait_ms;
#define ADM_REPLICAS_MAX 64 /* dispatcher replicas queried (the store's leases) */

/* What one daemon answered (or why it did not). */
typedef struct adm_stat {
    char name[16];              /* "store", "ingestor", "dispatcher" */
    int up;                     /* answered the Stats request */
    int ready;                  /* reply's ready flag */
    char state[32];             /* reply's state, "" if none */
    char reason[WH_REASON_LEN]; /* reply's reason: why it is not ready ("" if none) */
    char error[256];            /* why it is not up ("" when up) */
    char *metrics;              /* malloc'd metrics_text, or NULL */
} adm_stat;

typedef struct adm_query adm_query;

/* Opens one client per daemon endpoint of c (non-blocking dials). */
int adm_query_open(adm_query **out, const wh_config *c, char *err, size_t errlen);
void adm_query_close(adm_query *q);
/* Queries every daemon concurrently, waiting adm_stats_wait_ms at most;
 * st[] receives store, ingestor, dispatcher in that order. Free with
 * adm_stats_free. Thread-safe. */
void adm_query_all(adm_query *q, adm_stat st[ADM_NDAEMONS]);
/* The store's Stats only (st[0]; the others down, "not queried"): for
 * answers that need the store's metrics alone, so an unreachable daemon
 * adds no timeout. Free with adm_stats_free. Thread-safe. */
void adm_query_store(adm_query *q, adm_stat st[ADM_NDAEMONS]);
/* The store's and the dispatcher's Stats at once (st[0], st[2]; the
 * ingestor "not queried"): the target states (NEEDS_SNAPSHOT marks, 410
 * disabled, last error) without the ingestor's timeout. Thread-safe. */
void adm_query_targets(adm_query *q, adm_stat st[ADM_NDAEMONS]);
void adm_stats_free(adm_stat *st, int n);

/* Pure helpers. */
/* Fills st (name already set) from a Stats reply; a reply without stats body
 * marks the daemon down with a reason. */
void adm_stat_from_reply(adm_stat *st, const Walhook__Reply *rep);
/* Returns 1 when every daemon is up and the ingestor and the store are ready
 * (streaming, able to write), else 0, and appends a JSON object describing
 * each daemon (and the reasons: the daemon's own when it gave one) to out. */
int adm_readiness(const adm_stat *st, int n, wh_buf *out);
/* Appends the Prometheus page: every daemon's metrics_text and the admin's
 * own gauges, with samples grouped per metric family and each # HELP/# TYPE
 * line written once. */
int adm_metrics_render(const adm_stat *st, int n, wh_buf *out);
/* Regroups Prometheus text (several concatenated expositions) so every
 * family appears once; used by adm_metrics_render. */
int adm_metrics_merge(const char *const *texts, int ntexts, wh_buf *out);

/* Appends text (one Prometheus exposition) to out with label="value"
 * (escaped) first in every sample's label set; comments as they are; the
 * family named drop (NULL: none) left out. */
int adm_metrics_label(const char *text, const char *label, const char *value, const char *drop,
                      wh_buf *out);

/* Parses "host:port" / "[v6]:port" (port 0..65535). */
int adm_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
                     size_t errlen);

#endif
