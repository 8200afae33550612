#!/usr/bin/env bash
# The admin's slot metrics (walhook_slot_*, /v1/slots) keep one connection
# to the source per tenant between scrapes and answer from the last query
# for up to a second: 40 scrapes of /metrics open one backend on
# PostgreSQL (application_name walhook-admin), not one per scrape (each a
# fork of a backend, ~10 ms of the source's CPU). After PostgreSQL restarts
# (immediate mode, so the kept connection breaks), the next scrape
# reconnects by itself: walhook_slot_query_ok is 1 again, on a new backend.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_ingest_admin_setup

admin_backends() {
    pg_psql -At -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
                    WHERE application_name = 'walhook-admin'"
}
query_ok() { [ "$(wh_metric "$M" walhook_slot_query_ok)" = 1 ]; }

wh_wait_until 10 query_ok || wh_fail "walhook_slot_query_ok is not 1: $(curl -s "$M" | grep walhook_slot_query_ok)"
first=$(admin_backends)
[ -n "$first" ] || wh_fail "no walhook-admin backend after a scrape"
for i in $(seq 1 40); do
    query_ok || wh_fail "scrape $i: walhook_slot_query_ok is not 1"
    sleep 0.05
done
after=$(admin_backends)
[ "$after" = "$first" ] || wh_fail "the admin's source backends changed over 40 scrapes: $first -> $after"
case $first in *,*) wh_fail "more than one walhook-admin backend: $first" ;; esac
wh_log "40 scrapes in 2+ s on backend $first"

pg_restart immediate || wh_fail "PostgreSQL did not restart"
# a scrape within a second of the last query answers from it (the cache
# above), so "ok" alone may still be the old connection's answer: wait for
# an ok scrape on a new backend
reconnected() {
    query_ok || return 1
    again=$(admin_backends)
    [ -n "$again" ] && [ "$again" != "$first" ]
}
again=""
wh_wait_until 30 reconnected ||
    wh_fail "after the restart: walhook_slot_query_ok $(wh_metric "$M" walhook_slot_query_ok), the admin's backend '$again' (before: $first)"
case $again in *,*) wh_fail "more than one walhook-admin backend after the restart: $again" ;; esac
wh_pass "slot metrics: 40 scrapes on one kept source connection (backend $first), reconnected by itself after an immediate restart (backend $again)"
