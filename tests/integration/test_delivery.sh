#!/usr/bin/env bash
# Delivery operators can trust (issue 8): one walhook, one table, eight targets
# on real HTTP receivers, each answering in its own way:
#   healthy   200                          -> every row, in order
#   flaky     500 on every 5th request     -> every row, in order (retried)
#   downback  503 to its first 8 requests  -> every row, in order (breaker opens
#             and half-opens; cool-down 300 ms)
#   bad       400 to a body holding the poison row (twice: its batch, then
#             itself) -> the poison row goes to the dead-letter queue, its
#             neighbours and the rest are delivered; replayed over the REST
#             API, it is delivered with its original id
#   gone      410                          -> disabled after one request
#   slow429   429 + Retry-After: 2 first   -> the next try waits >= ~2 s
#   redirect  301 to the sink              -> never followed (on_failure block)
#   private   127.0.0.2, not allowed       -> refused by the SSRF guard
#   dbz       Debezium envelope, filter after.id > 150 -> only those rows,
#             as Debezium change events (the others are committed past)
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${ROWS:-200}
POISON=${POISON:-77}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, note text)" >/dev/null ||
    wh_fail "cannot create the table"
# only 127.0.0.1 is allowed: 127.0.0.2 is a loopback address nobody allowed
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32,::1"

declare -A PORT
for r in healthy flaky downback bad gone slow429 redirect sink private dbz; do PORT[$r]=$(wh_free_port); done
APORT=$(wh_free_port)
rcv() { # NAME ARGS...: a receiver on 127.0.0.1 (private: 127.0.0.2)
    local name=$1 host=127.0.0.1
    shift
    [ "$name" = private ] && host=127.0.0.2
    wh_spawn "r_$name" "$BIN/walhook-receiver" --listen "$host:${PORT[$name]}" \
        --out "$WH_TMP/$name.jsonl" --requests "$WH_TMP/$name.req" "$@"
}
rcv healthy
rcv flaky --fail-every 5
rcv downback --first 8 --status 503
rcv bad --reject-match "\"note\":\"poison\"" --reject-times 2
rcv gone --status 410
rcv slow429 --first 1 --status 429 --retry-after 2
rcv redirect --status 301 --location "http://127.0.0.1:${PORT[sink]}/moved"
rcv sink
rcv private
rcv dbz
CONF="$WH_TMP/walhook.conf"
u() { echo "http://127.0.0.1:${PORT[$1]}/hook"; }
# walhook up wants a top-level source (tenant "main", no targets); the
# targets with delivery settings live in a tenant of the list
cat >"$CONF" <<CONFEOF
tenant = "main";
source = { dsn = "$PG_DSN"; slot = "wh_main"; publication = "wh_main"; create_slot = true; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 50; retry_base_ms = 20; retry_max_ms = 200; };
tenants = (
  { name = "d";
    source = { dsn = "$PG_DSN"; slot = "wh_d"; publication = "wh_d"; create_slot = true; };
    targets = (
      { name = "healthy"; url = "$(u healthy)"; },
      { name = "flaky"; url = "$(u flaky)"; },
      { name = "downback"; url = "$(u downback)"; breaker_failures = 3; breaker_cooldown_ms = 300; },
      { name = "bad"; url = "$(u bad)"; on_failure = "dlq"; },
      { name = "gone"; url = "$(u gone)"; },
      { name = "slow429"; url = "$(u slow429)"; },
      { name = "redirect"; url = "$(u redirect)"; on_failure = "block"; },
      { name = "private"; url = "http://127.0.0.2:${PORT[private]}/hook"; breaker_cooldown_ms = 200; },
      { name = "dbz"; url = "$(u dbz)"; envelope = "debezium"; filter_expr = "after.id > 150"; }
    ); }
);
CONFEOF
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 ||
    wh_fail "walhook never became ready ($(curl -s "http://127.0.0.1:$APORT/readyz"))"
wh_wait_slot_active wh_d 60 || wh_fail "the slot wh_d is not streaming"

# ROWS rows in transactions of 10, in id order; one of them is the poison
for ((i = 1; i <= ROWS; i += 10)); do
    pg_psql -c "INSERT INTO items SELECT g, CASE WHEN g = $POISON THEN 'poison' ELSE 'n' || g END
                FROM generate_series($i, $((i + 9))) g" >/dev/null || wh_fail "insert failed"
done
wh_log "$ROWS rows inserted"

ids() { grep -o '"after":{"id":[0-9]*' "$1" 2>/dev/null | cut -d: -f3; }
# every id 1..ROWS but the skipped ones, each first seen in increasing order
complete_in_order() { # FILE SKIP
    local f=$1 skip=${2:-0} want
    want=$((ROWS - (skip > 0 ? 1 : 0)))
    [ "$(ids "$f" | sort -un | wc -l)" -eq "$want" ] || return 1
    ids "$f" | awk -v s="$skip" '$1 == s { bad = 1 } !($1 in seen) { if ($1 < last) bad = 1; seen[$1] = 1; last = $1 }
                                 END { exit bad }'
}
METRICS="http://127.0.0.1:$APORT/metrics"
for t in healthy flaky downback; do
    wh_wait_until 120 complete_in_order "$WH_TMP/$t.jsonl" ||
        wh_fail "target $t: not every row arrived in order ($(ids "$WH_TMP/$t.jsonl" | sort -un | wc -l) of $ROWS)"
done
wh_log "healthy, flaky and down-then-back targets got every row in order"
[ "$(wh_metric_label "$METRICS" walhook_target_retries_total 'target="flaky"')" -ge 1 ] ||
    wh_fail "the flaky target shows no retries"
[ "$(wh_metric_label "$METRICS" walhook_target_breaker_opens_total 'target="downback"')" -ge 1 ] ||
    wh_fail "the down-then-back target's breaker never opened"

# the poison row is dead-lettered, its neighbours and the rest flow
wh_wait_until 60 complete_in_order "$WH_TMP/bad.jsonl" "$POISON" ||
    wh_fail "target bad: the rows around the poison row did not all arrive in order"
wh_wait_until 20 wh_metric_label_is "$METRICS" walhook_target_dead_letters_total 'target="bad"' -eq 1 ||
    wh_fail "target bad: the poison row is not in the dead-letter queue ($(wh_metric_label "$METRICS" walhook_target_dead_letters_total 'target="bad"'))"
grep -q "go to the dead-letter queue" "$WH_TMP/walhook.log" "$WH_TMP"/*.log 2>/dev/null ||
    wh_log "note: no dead-letter log line found"

# replay over the REST API: the dispatcher delivers the replay queue
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "the admin wrote no token file"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
curl -fsS --max-time 10 -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"all":true}' "http://127.0.0.1:$APORT/v1/tenants/d/targets/bad/dlq/replay" >/dev/null ||
    wh_fail "DLQ replay over the REST API failed"
wh_wait_until 30 grep -q '"note":"poison"' "$WH_TMP/bad.jsonl" ||
    wh_fail "the replayed dead letter was not delivered"
# the dispatcher counts a replayed dead letter once the receiver's 2xx is
# back, which comes after the receiver wrote the body
wh_wait_until 20 wh_metric_label_is "$METRICS" walhook_target_replayed_total 'target="bad"' -eq 1 ||
    wh_fail "walhook_target_replayed_total is not 1 ($(wh_metric_label "$METRICS" walhook_target_replayed_total 'target="bad"'))"
[ "$(grep -c '"note":"poison"' "$WH_TMP/bad.jsonl")" -eq 1 ] || wh_fail "the poison row arrived more than once"
wh_log "the dead letter was replayed and delivered"

# 410: disabled after its first request
wh_wait_until 20 wh_metric_label_is "$METRICS" walhook_target_disabled 'target="gone"' -eq 1 ||
    wh_fail "target gone is not disabled after a 410"
n_gone=$(wc -l <"$WH_TMP/gone.req")
sleep 1
[ "$(wc -l <"$WH_TMP/gone.req")" -eq "$n_gone" ] && [ "$n_gone" -eq 1 ] ||
    wh_fail "target gone got $(wc -l <"$WH_TMP/gone.req") requests after a 410 (want 1)"

# 429 + Retry-After: 2 -> the second request comes about 2 s after the first
wh_wait_until 60 complete_in_order "$WH_TMP/slow429.jsonl" ||
    wh_fail "target slow429 did not get every row"
t1=$(sed -n 1p "$WH_TMP/slow429.req" | cut -d' ' -f1)
t2=$(sed -n 2p "$WH_TMP/slow429.req" | cut -d' ' -f1)
[ "$(sed -n 1p "$WH_TMP/slow429.req" | cut -d' ' -f2)" = 429 ] || wh_fail "slow429: first answer was not 429"
[ $((t2 - t1)) -ge 1500 ] || wh_fail "slow429: retried after $((t2 - t1)) ms despite Retry-After: 2"
wh_log "Retry-After honoured: next attempt after $((t2 - t1)) ms"

# 301: not followed; on_failure block holds the target at the first event
wh_wait_until 20 wh_metric_label_is "$METRICS" walhook_target_blocked 'target="redirect"' -eq 1 ||
    wh_fail "target redirect is not blocked after a 301"
[ -s "$WH_TMP/sink.req" ] && wh_fail "the redirect was followed to the sink"
[ "$(wh_metric_label "$METRICS" walhook_target_dead_letters_total 'target="redirect"')" -le 0 ] ||
    wh_fail "on_failure block wrote dead letters"

# SSRF: 127.0.0.2 is not allowed: refused at connect time, nothing posted
wh_wait_until 20 wh_metric_label_is "$METRICS" walhook_target_ssrf_refused_total 'target="private"' -ge 1 ||
    wh_fail "the SSRF guard did not refuse 127.0.0.2"
[ -s "$WH_TMP/private.req" ] && wh_fail "a request reached the private address"
# (the refusal is counted before the retry warning that names it is written)
wh_wait_until 15 grep -q "127.0.0.2 is loopback" "$WH_TMP/walhook.log" ||
    wh_fail "the refusal is not logged by address class"

# envelope and filter: rows 151..ROWS only, as Debezium events, in order
dbz_done() {
    [ "$(ids "$WH_TMP/dbz.jsonl" | sort -un | wc -l)" -eq $((ROWS - 150)) ] &&
        [ "$(wh_metric_label "$METRICS" walhook_target_filtered_total 'target="dbz"')" -ge 150 ]
}
wh_wait_until 60 dbz_done || wh_fail "target dbz: want rows 151..$ROWS ($(ids "$WH_TMP/dbz.jsonl" | sort -un | wc -l) rows, filtered $(wh_metric_label "$METRICS" walhook_target_filtered_total 'target="dbz"'))"
[ "$(ids "$WH_TMP/dbz.jsonl" | sort -n | head -n 1)" -gt 150 ] || wh_fail "target dbz got a filtered row"
ids "$WH_TMP/dbz.jsonl" | sort -c -n || wh_fail "target dbz: rows out of order"
grep -q '"connector":"postgresql"' "$WH_TMP/dbz.jsonl" && grep -q '"op":"c"' "$WH_TMP/dbz.jsonl" ||
    wh_fail "target dbz did not get Debezium change events"

# /metrics carries the breaker state of every target
[ "$(wh_metric "$METRICS" walhook_target_breaker_state)" -ge 0 ] ||
    wh_fail "no walhook_target_breaker_state in /metrics"
wh_pass "flaky/down-back/healthy complete in order; poison row dead-lettered alone and replayed; 410 disables; Retry-After honoured; redirect not followed; SSRF refused; Debezium + filter"
