# Shared by test_toast_resend.sh and test_toast_resend_store.sh; source it
# after helpers.sh and stream_track.sh.

_tr_differ() {
    curl -fsS --max-time 10 "http://127.0.0.1:$APORT/metrics" |
        awk '/^walhook_store_resends_differ_total/ { s += $NF } END { print s + 0 }'
}
_tr_n() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge "$1" ]; }
_tr_store_up() {
    curl -fsS --max-time 10 "http://127.0.0.1:$APORT/metrics" |
        grep '^walhook_store_resends_differ_total' >/dev/null
}

# wh_toast_resend [store]: an UPDATE whose TOASTed column is unchanged
# ('u'), sent again after an ingestor SIGKILL (slot_policy track, the
# receiver down: not confirmed), after a later transaction, already
# stored, replaced that column's value; the resend lists the column as
# "unchanged" where the first send carried its value. The store must keep
# the event it stored, count the difference and log it without values; the
# target gets the value. With "store", the store is SIGKILLed too (after
# the events are durable, before the ingestor): the resend reaches a store
# process that did not write them.
wh_toast_resend() {
    local restart_store=${1:-}
    wh_stream_track_up
    pg_psql -c "CREATE TABLE d (id int PRIMARY KEY, n int, doc text)" \
        -c "ALTER TABLE d ALTER doc SET STORAGE EXTERNAL" >/dev/null || wh_fail "setup"
    pg_psql -c "INSERT INTO d VALUES (1, 0, repeat(md5('a1'), 100))" >/dev/null
    wh_wait_until 60 _tr_n 1 || wh_fail "the insert was not delivered"
    wh_wait_slot_flush "$(wh_last_lsn "$WH_TMP/got.jsonl")" 60 || wh_fail "the insert never confirmed"
    wh_kill recv
    local d0
    d0=$(_tr_differ)
    wh_log "UPDATE n (doc unchanged), then a new doc; the ingestor SIGKILLed before they confirm"
    pg_psql -c "UPDATE d SET n = 1 WHERE id = 1" \
        -c "UPDATE d SET doc = repeat(md5('b1'), 100) WHERE id = 1" >/dev/null
    sleep 3 # their events and TOAST ops durable in the store
    if [ "$restart_store" = store ]; then
        wh_kill_child store "(the resend goes to a store process that did not write them)"
        wh_wait_restarted store
        wh_wait_until 60 _tr_store_up || wh_fail "the store did not come back"
        d0=0 # the new process counts from 0
    fi
    wh_kill_child ingestor
    wh_wait_restarted ingestor
    wh_wait_slot_active walhook 60 || wh_fail "not streaming again"
    _tr_more() { [ "$(_tr_differ)" -gt "$d0" ]; }
    wh_wait_until 30 _tr_more ||
        wh_fail "no resend with other bytes counted (the scenario did not happen, or the store replaced the stored event)"
    # (the store counts the difference, then logs it)
    wh_wait_until 15 grep -q "sent again with other bytes than stored" "$WH_TMP"/*.log ||
        wh_fail "no error logged for the resend"
    grep -h "sent again with other bytes" "$WH_TMP"/*.log | grep -q "$(md5sum <<<'a1' | cut -c1-8)" &&
        wh_fail "a row value in the log"
    # the dispatcher holds the first bytes in its retries: a new one reads the store's
    wh_kill_child dispatcher
    wh_wait_restarted dispatcher
    wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
    wh_wait_until 60 _tr_n 3 || wh_fail "the updates were not delivered"
    local out
    out=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import hashlib, json, sys
a1, b1 = (hashlib.md5(k).hexdigest() * 100 for k in (b"a1", b"b1"))
ups = sorted((tuple(int(x, 16) for x in e["lsn"].split("/")), e["seq"], e) for line in open(sys.argv[1]) for e in json.loads(line)
             if e.get("table") == "d" and e.get("op") == "update")
docs = [(e["after"] or {}).get("doc") for _, _, e in ups]
print([e["id"] for _, _, e in ups], ["a1" if d == a1 else "b1" if d == b1 else repr(d)[:20] for d in docs])
sys.exit(0 if docs == [a1, b1] else 1)
PY
) || wh_fail "the UPDATE of n was delivered without its doc: $out"
    wh_pass "a resend rendered otherwise ($(_tr_differ) counted, logged without values) kept the stored event${restart_store:+ (the store restarted)}: the target got the doc"
}
