/* adm_page: the operator status page at / (one self-contained HTML page,
 * inline CSS, no external assets, server-rendered, refreshing itself every
 * few seconds with <meta http-equiv="refresh">).
 *
 * Shows the daemons, each tenant with its slot (lag, wal_status), its
 * ingestor state, its backpressure zone and slot policy (adm_slot), and each
 * target with its state (NEEDS_SNAPSHOT / paused / active), backlog
 * (WAL bytes between its committed offset and the tenant's end), delivered/s
 * and failure rate (since the previous render, at least 1 s before) and its
 * mean delivery latency, from the dispatcher's metrics.
 *
 * An adm_page keeps the previous counters per target for the rates; it is
 * thread-safe (one mutex around the rates).
 */
#ifndef ADM_PAGE_H
#define ADM_PAGE_H

#include "adm_api.h"

typedef struct adm_page adm_page;

int adm_page_new(adm_page **out);
void adm_page_free(adm_page *p);

/* What the page shows of one target (filled by adm_api). */
typedef struct adm_page_target {
    int has_progress;
    adm_pos end;       /* the tenant's last stored position */
    adm_pos committed; /* the target's committed offset */
} adm_page_target;

/* s may be NULL (store unreachable: store_err says why). slots has
 * s->ntenants entries; prog has one entry per target, tenants in order. */
int adm_page_render(adm_page *p, const wh_state *s, const char *store_err,
                    const adm_stat st[ADM_NDAEMONS], const adm_slot_info *slots,
                    const adm_page_target *prog, wh_buf *out);

/* Masks what an error message names of the environment, in place (s
 * holds size bytes): the names libpq 15 and the server's connection
 * errors quote (a server's host, a host name or network address, a user,
 * role or database, a service, a socket or file path, a port number, a
 * conninfo URI or LDAP URL: "..."; a publication or slot name stays),
 * addresses in parentheses (an IPv6 zone too), "port N", IPv4 and IPv6
 * addresses, the values of conninfo pairs (host=..., user=..., dbname=...),
 * an unquoted name after "server at" or in "database|role|user X does
 * not exist", the rest of URLs after their scheme and the directories of
 * absolute paths (".../ingestor.sock"). The words of the
 * message stay ("connection to server at "...", port ... failed: FATAL:
 * database "..." does not exist"). For the pages answered without a token.
 * Returns the number of parts masked. */
int adm_redact_detail(char *s, size_t size);

/* Sum of the samples of metric `name` in Prometheus text whose labels
 * contain label (e.g. target="a"; NULL: every sample). -1 when none. */
double adm_metric_sum(const char *text, const char *name, const char *label);

#endif
