#!/usr/bin/env bash
# A source that does not answer the admin's slot query costs /metrics that
# tenant's slot only: walhook_slot_query_ok{tenant} 0 (what the
# WalhookSlotQueryFailing alert watches), the other tenants' slot metrics
# there. Two ways a source does not answer:
#  1. a tenant whose source takes TCP connections and never speaks (a
#     PostgreSQL whose host hangs): libpq's connect waited its
#     connect_timeout, 3 s, longer than the 2 s a scrape waits for the slot
#     task, so every scrape had no slot metrics at all, the healthy
#     tenant's neither, and never walhook_slot_query_ok 0;
#  2. the kept connection's backend stopped (SIGSTOP): the query waited
#     for ever, holding the tenant's connection, so no scrape had slot
#     metrics again. Now the query gives up at the scrape's deadline, the
#     connection is closed (query_ok 0 in that scrape) and the next scrape
#     asks on a new one (query_ok 1 while the old backend is still stopped).
# curl's --max-time is a hang guard only: no assertion on time.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
STOPPED_PID=""
trap '[ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null; wh_cleanup' EXIT
command -v python3 >/dev/null || wh_fail "python3 is missing"
wh_tmpdir
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
wh_ingest_admin_setup
A="http://127.0.0.1:$APORT"

# a "source" that takes connections and never answers
DPORT=$(wh_free_port)
cat >"$WH_TMP/deaf.py" <<'EOF'
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(64)
print("listening", flush=True)
held = []
while len(held) < 1000:
    c, _ = l.accept()
    held.append(c)
EOF
wh_spawn deaf python3 "$WH_TMP/deaf.py" "$DPORT"
wh_wait_until 30 grep -q listening "$WH_TMP/deaf.log" || wh_fail "the deaf source did not start"

wh_admin_api POST /v1/tenants \
    "{\"name\":\"deaf\",\"source\":{\"dsn\":\"postgresql://nobody@127.0.0.1:$DPORT/none\",\"slot\":\"deaf\"}}"
[ "$CODE" = 201 ] || wh_fail "POST tenant deaf: $CODE $BODY"

# scrape: /metrics into $WH_TMP/m.txt; fails the test when it does not answer
scrape() {
    local code
    code=$(curl -sS -o "$WH_TMP/m.txt" -w '%{http_code}' --max-time 30 "$A/metrics") || code=000
    [ "$code" = 200 ] || wh_fail "/metrics did not answer ($code)"
}
ok_of() { # TENANT SLOT: walhook_slot_query_ok of it in the last scrape, empty when absent
    awk -v k="walhook_slot_query_ok{tenant=\"$1\",slot=\"$2\"}" '$1 == k { print $2 }' "$WH_TMP/m.txt"
}
both() { # WANT_DEFAULT WANT_DEAF: a scrape with those walhook_slot_query_ok
    scrape
    [ "$(ok_of default walhook)" = "$1" ] && [ "$(ok_of deaf deaf)" = "$2" ]
}

# (1) the deaf tenant's slot query fails, the default tenant's slot is read
wh_wait_until 30 both 1 0 ||
    wh_fail "with a source that does not answer: walhook_slot_query_ok default '$(ok_of default walhook)' (want 1), deaf '$(ok_of deaf deaf)' (want 0)"
grep -q '^walhook_slot_lag_bytes{tenant="default",slot="walhook"}' "$WH_TMP/m.txt" ||
    wh_fail "no walhook_slot_lag_bytes of the default tenant beside the deaf one"
# and in every scrape: each one 3 s after the last, past the admin's 1 s
# answer cache, asks the sources again (before, only a scrape within a
# second of the last query's end had slot metrics: from that cache)
for i in 1 2 3; do
    sleep 3
    both 1 0 ||
        wh_fail "scrape $i with a source that does not answer: walhook_slot_query_ok default '$(ok_of default walhook)' (want 1), deaf '$(ok_of deaf deaf)' (want 0)"
done
wh_log "a deaf source: its walhook_slot_query_ok 0, the default tenant's slot metrics there"

# (2) the default tenant's kept connection stops answering
admin_backends() {
    pg_psql -At -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
                    WHERE application_name = 'walhook-admin'"
}
first=$(admin_backends)
[ -n "$first" ] || wh_fail "no walhook-admin backend on the source"
case $first in *,*) wh_fail "more than one walhook-admin backend: $first" ;; esac
STOPPED_PID=$first
kill -STOP "$STOPPED_PID" || wh_fail "cannot stop backend $STOPPED_PID"
wh_wait_until 30 both 0 0 ||
    wh_fail "with the admin's backend $first stopped: walhook_slot_query_ok default '$(ok_of default walhook)' (want 0)"
wh_log "backend $first stopped: a scrape with walhook_slot_query_ok 0 for the default tenant"
wh_wait_until 30 both 1 0 ||
    wh_fail "backend $first still stopped: walhook_slot_query_ok default '$(ok_of default walhook)' (want 1 on a new connection)"
again=$(admin_backends)
case ",$again," in *",$first,"*) ;; *) wh_fail "the stopped backend $first is gone: $again" ;; esac
kill -CONT "$STOPPED_PID"
STOPPED_PID=""
wh_pass "a deaf source and a stopped backend each cost their tenant's slot only (walhook_slot_query_ok 0), the next scrape reconnects (backends $again)"
