#!/usr/bin/env bash
# `walhook up --source DSN`: the DSN's password does not stay in the
# supervisor's command line (/proc/PID/cmdline, what `ps` shows every user)
# while it runs: it is overwritten with '*' once copied, in the URI form
# ("--source URI") and the key=value form ("--source=host=... password=..."),
# and the pipeline still starts (the daemons get the DSN by environment).
# The test's PostgreSQL trusts local connections: the password is a marker.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY); CREATE PUBLICATION walhook FOR ALL TABLES;" \
    >/dev/null || wh_fail "cannot create the table"
MARK=ArgvPwMark0123

# up NAME SOURCE-ARGS...: walhook up with those arguments for its source,
# ready; checks its command line and its children's
up() {
    local name=$1 aport rport
    shift
    aport=$(wh_free_port)
    rport=$(wh_free_port)
    mkdir -m 700 "$WH_TMP/$name"
    wh_spawn "$name" "$BIN/walhook" up "$@" --target "http://127.0.0.1:$rport/hook" \
        --data "$WH_TMP/$name" --admin "127.0.0.1:$aport"
    wh_wait_http "http://127.0.0.1:$aport/readyz" 90 || wh_fail "$name: walhook up never became ready"
    local pid=${WH_PIDS[$name]} cmd c
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    grep -q "$MARK" <<<"$cmd" && wh_fail "$name: the password is in walhook up's command line: $cmd"
    grep -qF -- "$WANT" <<<"$cmd" || wh_fail "$name: the command line is not '$WANT': $cmd"
    for c in $(pgrep -P "$pid"); do
        tr '\0' ' ' <"/proc/$c/cmdline" | grep -q "$MARK" &&
            wh_fail "$name: the password is in a child's command line"
    done
    wh_kill "$name" TERM
}

WANT="--source postgresql://postgres:**************@127.0.0.1:$PG_PORT/postgres --target"
up uri --source "postgresql://postgres:$MARK@127.0.0.1:$PG_PORT/postgres"
wh_wait_until 30 wh_slot_free walhook || wh_fail "the slot stayed active"
WANT="--source=host=127.0.0.1 port=$PG_PORT user=postgres password=************** dbname=postgres --target"
up kv "--source=host=127.0.0.1 port=$PG_PORT user=postgres password=$MARK dbname=postgres"

wh_pass "the DSN password is masked in walhook up's command line (URI and key=value forms); the pipeline starts"
