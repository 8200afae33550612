/* adm_backend: the admin API's real backend (adm_api.h's adm_backend):
 * the runtime state and offsets through the store (one req/rep client,
 * serialised by a mutex; the last state read is cached and re-fetched with
 * GetState(known_version), so an unchanged state costs one small round
 * trip), the daemons' Stats through adm_query, and each tenant's slot from
 * its source database (libpq, no replication; one connection per tenant
 * kept between scrapes, the answer reused for 1 s; each query, connect
 * included, bounded by the caller's deadline: a source that has not
 * answered by then is an error and its connection is closed). The
 * backfill's table check, its connect and its query, answers within 3 s
 * the same way. known_state: the state for /metrics' slot queries, on a
 * client of its own (ADM_STATS_TIMEOUT_MS), the last one read when the
 * store does not answer.
 *
 * Teardown: stop the HTTP server first (no request in flight), wait for
 * the requests' tasks (adm_bg_drain), then adm_backend_close. */
#ifndef ADM_BACKEND_H
#define ADM_BACKEND_H

#include "adm_api.h"
#include "adm_query.h"
#include "wh_config.h"

typedef struct adm_store adm_store;

/* q may be NULL (daemons read as down); it is borrowed. */
int adm_backend_open(adm_backend *out, const wh_config *cfg, adm_query *q, char *err,
                     size_t errlen);
void adm_backend_close(adm_backend *be);

/* The slot of t queried on dsn (exposed for tests). */
void adm_slot_query(const char *dsn, const char *slot, adm_slot_info *out);

#endif
