# shellcheck shell=bash
# tests/lib/helpers.sh: shared bash helpers for integration tests, the demo
# and the benchmark (source this file; it sources pg.sh).
#
#   ROOT, BIN           project root and binary dir (BIN env overrides, default ROOT/bin)
#   wh_tmpdir           creates WH_TMP (removed by wh_cleanup unless KEEP_TMP=1)
#   wh_spawn NAME CMD.. starts CMD in the background, logs to WH_TMP/NAME.log,
#                       records its pid in WH_PIDS[NAME] and prints nothing
#   wh_kill NAME [SIG]  signals one spawned process and waits for it
#   wh_cleanup          TERM (then KILL) every spawned process, stop PG, rm tmp
#   wh_wait_http URL S  waits until URL answers 200 (S seconds)
#   wh_metric URL NAME  sum of the samples of metric NAME (labels ignored)
#   wh_wait_metric URL NAME VALUE S   waits until metric >= VALUE
#   wh_write_conf FILE DSN DATA ADMINPORT URL...  writes a walhook.conf
#   wh_pipeline_setup   a test of the whole pipeline: cleanup trap, the
#                       binaries checked, WH_TMP, a PostgreSQL (pg_start)
#   wh_up CONF ADMINPORT  `walhook up -c CONF` as WH_PIDS[walhook], ready
#                       and its slot streaming
#   wh_fail MSG         prints the verdict line and exits 1

WH_HELPERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$WH_HELPERS_DIR/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
# shellcheck source=pg.sh
source "$WH_HELPERS_DIR/pg.sh"

# The dispatcher's SSRF guard refuses loopback targets; tests, the demo and
# the benchmark post to receivers on 127.0.0.1, so they allow loopback
# explicitly (a test of the guard unsets it).
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="${WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS-127.0.0.0/8,::1}"

declare -A WH_PIDS=()
WH_TMP=""
WH_TEST_NAME="${WH_TEST_NAME:-$(basename "$0" .sh)}"

wh_tmpdir() {
    WH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/walhook-test.XXXXXX")
    chmod 755 "$WH_TMP"
}

wh_log() { echo "[$(date +%T)] $WH_TEST_NAME: $*" >&2; }

wh_spawn() {
    local name=$1
    shift
    "$@" >>"$WH_TMP/$name.log" 2>&1 &
    WH_PIDS[$name]=$!
}

wh_alive() {
    local pid=${WH_PIDS[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

wh_kill() {
    local name=$1 sig=${2:-TERM} pid=${WH_PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    kill -s "$sig" "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -s KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "WH_PIDS[$name]"
}

wh_stop_all() {
    local name
    for name in "${!WH_PIDS[@]}"; do
        kill -s TERM "${WH_PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!WH_PIDS[@]}"; do
        wh_kill "$name" TERM
    done
}

wh_cleanup() {
    wh_stop_all
    pg_stop
    rm -f "/tmp/wh-ports.$$"
    if [ -n "$WH_TMP" ] && [ -d "$WH_TMP" ] && [ "${KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$WH_TMP"
    fi
}

wh_fail() {
    echo "FAIL $WH_TEST_NAME: $*"
    if [ -n "$WH_TMP" ] && [ -d "$WH_TMP" ]; then
        local f
        for f in "$WH_TMP"/*.log; do
            [ -f "$f" ] || continue
            echo "---- tail of $(basename "$f")"
            tail -n 15 "$f"
        done
    fi
    exit 1
}

wh_pass() {
    # Processes stop first so that sanitizer builds (make asan) report leaks
    # and errors at exit; any such report in a log fails the test.
    wh_stop_all
    if [ -n "$WH_TMP" ] && [ -d "$WH_TMP" ]; then
        local bad
        bad=$(grep -l -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" \
            "$WH_TMP"/*.log 2>/dev/null | head -n 3)
        [ -z "$bad" ] || wh_fail "sanitizer report in: $bad"
    fi
    echo "PASS $WH_TEST_NAME: $*"
    exit 0
}

wh_wait_http() {
    local url=$1 secs=${2:-30}
    local deadline=$(( $(date +%s) + secs ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Waits until the logical slot exists and a walsender streams from it.
wh_wait_slot_active() {
    local slot=${1:-walhook} secs=${2:-60}
    local deadline=$(( $(date +%s) + secs ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ "$(pg_psql -At -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'" 2>/dev/null)" = t ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# PORT NAME [FORMAT] [REGEX]: the sum of NAME's series (those whose name
# and labels match REGEX, when given) from the admin's /metrics at
# 127.0.0.1:PORT, fetched by bash's /dev/tcp rather than curl (a curl
# process costs ~16 ms of CPU here, taken from what the benches measure);
# printed with FORMAT (%.0f), -1 when there is none
wh_metric_tcp() {
    local fd
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
    awk -v m="$2" -v f="${3:-%.0f}\n" -v r="${4:-}" '
        ($1 == m || index($1, m "{") == 1) && (r == "" || $1 ~ r) { s += $NF; found = 1 }
        END { if (found) printf f, s; else print -1 }' <&"$fd"
    exec {fd}>&-
}

# PORT [REGEX]: events delivered plus events a filter dropped (both count
# as done for a target), summed over the series matching REGEX
wh_metric_done() {
    local dv fv
    dv=$(wh_metric_tcp "$1" walhook_events_delivered_total %.0f "${2:-}") || dv=-1
    fv=$(wh_metric_tcp "$1" walhook_target_filtered_total %.0f "${2:-}") || fv=-1
    echo $(((dv < 0 ? 0 : dv) + (fv < 0 ? 0 : fv)))
}

# FILE SKIP: the events acknowledged (2xx, X-Batch-Size) in a
# walhook-receiver --requests log after its first SKIP lines
wh_reqlog_events() {
    awk -v skip="$2" 'NR > skip && $2 ~ /^2/ && $3 ~ /^[0-9]+$/ { s += $3 }
        END { printf "%.0f\n", s }' "$1"
}

wh_metric() {
    curl -fsS --max-time 3 "$1" 2>/dev/null |
        awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF; found = 1 }
                       END { if (found) printf "%.0f\n", s; else print -1 }'
}

wh_wait_metric() {
    local url=$1 name=$2 want=$3 secs=${4:-60} v=-1
    local deadline=$(( $(date +%s) + secs ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        v=$(wh_metric "$url" "$name")
        if [ -n "$v" ] && [ "$v" -ge "$want" ] 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    wh_log "metric $name = $v, wanted $want"
    return 1
}

wh_write_conf() {
    local file=$1 dsn=$2 data=$3 admin=$4
    shift 4
    {
        echo "tenant = \"default\";"
        echo "data_dir = \"$data\";"
        echo "log_level = \"info\";"
        echo "source = { dsn = \"$dsn\"; slot = \"walhook\"; publication = \"walhook\"; create_slot = true; };"
        echo "admin = { listen = \"127.0.0.1:$admin\"; };"
        # loopback receivers: allowed by WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS above
        echo "targets = ("
        local i=0 url sep=""
        for url in "$@"; do
            echo "  $sep{ name = \"t$i\"; url = \"$url\"; }"
            sep=","
            i=$((i + 1))
        done
        echo ");"
    } >"$file"
}

# wh_items_prepare: PostgreSQL with table items (id int PRIMARY KEY) in
# publication walhook, a walhook-receiver writing $WH_TMP/received.jsonl
# (loopback allowed), and the configuration of the four daemons with one
# target t0 of it; sets RPORT APORT CONF DATA. Starts no daemon.
wh_items_prepare() {
    pg_start || wh_fail "cannot start PostgreSQL"
    pg_psql -c "CREATE TABLE items (id int PRIMARY KEY); CREATE PUBLICATION walhook FOR ALL TABLES;" \
        >/dev/null || wh_fail "cannot create the table"
    export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32,::1"
    RPORT=$(wh_free_port)
    APORT=$(wh_free_port)
    wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
    CONF="$WH_TMP/walhook.conf"
    DATA="$WH_TMP/data"
    wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:$RPORT/hook"
    mkdir -p -m 700 "$DATA"
}

# wh_items_stored_once N [delivered_once]: on wh_items_pipeline's items
# table with rows 1-N delivered, each row is one event: one id at the
# receiver (the row under no second id; with delivered_once, delivered
# once too) and, once the four daemons are stopped (SIGTERM), that id's key
# in the store, which holds as many events as the receiver has distinct
# ids. Sets STORED (events in the store) and IDS (distinct ids received).
wh_items_stored_once() {
    local n=$1 once=${2:-} c row id pos
    perl -ne 'while (/"id":"(default:[^"]+)"(?:(?!"id":"default:).)*?"table":"items"(?:(?!"id":"default:).)*?"after":\{"id":(\d+)\}/g) {
        print "$2 $1\n" }' \
        "$WH_TMP/received.jsonl" >"$WH_TMP/row_ids_all.txt"
    sort -u "$WH_TMP/row_ids_all.txt" >"$WH_TMP/row_ids.txt"
    c=$(cut -d' ' -f1 "$WH_TMP/row_ids.txt" | sort -u | wc -l)
    [ "$c" -eq "$n" ] || wh_fail "the receiver has $c distinct rows, want $n"
    c=$(wc -l <"$WH_TMP/row_ids.txt")
    [ "$c" -eq "$n" ] || wh_fail "the receiver has $c (row, id) pairs for $n rows: a row under two ids"
    if [ -n "$once" ]; then
        c=$(wc -l <"$WH_TMP/row_ids_all.txt")
        [ "$c" -eq "$n" ] || wh_fail "the receiver got $c deliveries of $n rows: a row delivered twice"
    fi
    for d in admin dispatcher ingestor store; do wh_kill "$d" TERM; done
    "$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump.txt" 2>"$WH_TMP/dump.log" ||
        wh_fail "walhook-store --dump failed: $(tail -n 3 "$WH_TMP/dump.log")"
    STORED=$(wc -l <"$WH_TMP/dump.txt")
    IDS=$(grep -o '"id":"default:[^"]*"' "$WH_TMP/received.jsonl" | sort -u | wc -l)
    [ "$STORED" -eq "$IDS" ] || wh_fail "the store holds $STORED events, the receiver got $IDS distinct ids"
    if [ -n "$once" ]; then
        c=$(grep -o '"id":"default:[^"]*"' "$WH_TMP/received.jsonl" | wc -l)
        [ "$c" -eq "$IDS" ] || wh_fail "the receiver got $c events for $IDS distinct ids"
    fi
    while read -r row id; do
        pos=${id#default:}
        grep -qx "default ${pos%:*} ${pos##*:}" "$WH_TMP/dump.txt" ||
            wh_fail "row $row's event $id is not in the store (dump: $(head -n 2 "$WH_TMP/dump.txt"))"
    done <"$WH_TMP/row_ids.txt"
}

# wh_items_pipeline: wh_items_prepare and the four daemons on it; sets
# RPORT APORT CONF DATA M (the admin's /metrics URL). Returns once the slot
# streams.
wh_items_pipeline() {
    wh_items_prepare
    local d
    for d in store ingestor dispatcher admin; do
        wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
    done
    M="http://127.0.0.1:$APORT/metrics"
    wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
}

# wh_items_conf: wh_pipeline_setup, table items, and a config of the four
# daemons (one target on RPORT, nothing listening there) in CONF; sets
# APORT RPORT CONF DATA. The walhook up tests start it themselves.
wh_items_conf() {
    wh_pipeline_setup
    pg_psql -c "CREATE TABLE items (id int PRIMARY KEY)" >/dev/null ||
        wh_fail "cannot create the table"
    APORT=$(wh_free_port)
    RPORT=$(wh_free_port)
    CONF="$WH_TMP/walhook.conf"
    DATA="$WH_TMP/data"
    wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:$RPORT/hook"
}

# wh_items_up: wh_items_conf, then walhook up on it (process walhook, its
# pid in UP, its log in LOG).
wh_items_up() {
    wh_items_conf
    wh_spawn walhook "$BIN/walhook" up -c "$CONF"
    UP=${WH_PIDS[walhook]}
    LOG="$WH_TMP/walhook.log"
}

# wh_rowfilter_error_up: `walhook up` (wh_up) on a publication whose row
# filter fails on a row: table rf (id int PRIMARY KEY, n int) published
# WHERE make_date(n, 1, 1) IS NOT NULL, then a row with n = 987654322, on
# which the walsender ends every stream with "date out of range:
# 987654322-01-01" (a row's value in an error). Sets APORT RPORT CONF A
# (the admin's URL) and T0 (seconds since the epoch at the insert).
wh_rowfilter_error_up() {
    wh_pipeline_setup
    pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text);
        CREATE TABLE rf (id int PRIMARY KEY, n int);
        CREATE PUBLICATION walhook FOR TABLE items, rf WHERE (make_date(n, 1, 1) IS NOT NULL)" \
        >/dev/null || wh_fail "cannot create the tables and the publication"
    APORT=$(wh_free_port)
    RPORT=$(wh_free_port)
    CONF="$WH_TMP/walhook.conf"
    wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/hook"
    wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" \
        --out "$WH_TMP/received.jsonl"
    wh_up "$CONF" "$APORT"
    A="http://127.0.0.1:$APORT"
    pg_psql -c "INSERT INTO rf VALUES (2, 987654322)" >/dev/null || wh_fail "cannot insert"
    T0=$(date +%s)
}

# wh_syncgate_setup: the daemons' binaries and tests/wh_syncgate.so, WH_TMP,
# and GATE, the file that holds the store's WAL syncs while it exists
# (removed at exit before the cleanup, so a held sync goes on).
wh_syncgate_setup() {
    GATE=""
    trap '[ -n "$GATE" ] && rm -f "$GATE"; wh_cleanup' EXIT
    wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
    [ -f "$BIN/tests/wh_syncgate.so" ] || wh_fail "no $BIN/tests/wh_syncgate.so (run make)"
    wh_tmpdir
    GATE="$WH_TMP/gate"
}

# wh_store_metric NAME: its value in the store's own Stats on CONF (-1: none)
wh_store_metric() {
    "$BIN/tests/wh_statectl" -c "$CONF" stats 2>/dev/null |
        awk -v m="$1" '$1 == m { v = $2; f = 1 } END { print f ? v : -1 }'
}

# wh_store_settled [TENANT]: no write of the store in progress and the
# tenant's watermark (so its last synced watermark write) at its end: every
# target committed everything and no sync of an earlier write is still to
# come (a WAL sync held next is the one the caller starts)
wh_store_settled() {
    [ "$(wh_store_metric "walhook_store_watermark_lag_bytes{tenant=\"${1:-default}\"}")" = 0 ] &&
        awk -v s="$(wh_store_metric walhook_store_write_stalled_seconds)" 'BEGIN { exit !(s == 0) }'
}

# wh_spawn_gated_store [VAR=VALUE...]: the store on CONF as WH_PIDS[store],
# its WAL syncs passing through wh_syncgate.so and held while $GATE exists
# (wh_syncgate_setup); the arguments go into its environment first.
wh_spawn_gated_store() {
    wh_spawn store env "$@" WH_SYNCGATE="$GATE" LD_PRELOAD="$BIN/tests/wh_syncgate.so" \
        "$BIN/walhook-store" -c "$CONF"
}

wh_pipeline_setup() {
    trap wh_cleanup EXIT
    wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
        walhook-receiver
    wh_tmpdir
    pg_start || wh_fail "cannot start PostgreSQL"
}

# wh_targets_api_setup TOKEN: the pipeline of the target-state tests
# (test_target_gone, test_target_recreate): PostgreSQL, table items
# published, `walhook up` with admin token TOKEN (WALHOOK_ADMIN_ADMIN_TOKEN
# and TOKEN) and a receiver (wh_up_receiver); sets A (the admin's URL), TG
# (the default tenant's targets path), LOG, PROBLEMS=() with problem MSG to
# add one, and jfield JSON EXPR (a python expression over d).
wh_targets_api_setup() {
    wh_pipeline_setup
    export WALHOOK_ADMIN_ADMIN_TOKEN=$1
    TOKEN=$1
    pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text); CREATE PUBLICATION walhook FOR ALL TABLES;" \
        >/dev/null || wh_fail "cannot create the table"
    wh_up_receiver
    A="http://127.0.0.1:$APORT"
    TG=/v1/tenants/default/targets
    LOG="$WH_TMP/walhook.log"
    PROBLEMS=()
}
problem() { PROBLEMS+=("$1"); wh_log "PROBLEM: $1"; }
jfield() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1" 2>/dev/null; }

# wh_ingest_admin_setup [CONF-TEXT]: PostgreSQL, then the store, the
# ingestor and the admin on one config (a target nobody listens on: nothing
# is delivered; CONF-TEXT, e.g. "ingestor = { window_bytes = 65536; };",
# appended to it), streaming; sets CONF, DATA, APORT and M (the admin's
# /metrics URL). After wh_syncgate_setup (its WH_TMP and exit trap) the
# store runs with wh_syncgate.so on GATE.
wh_ingest_admin_setup() {
    if [ -z "$WH_TMP" ]; then
        trap wh_cleanup EXIT
        wh_tmpdir
    fi
    wh_require_bins walhook-store walhook-ingestor walhook-admin
    pg_start || wh_fail "cannot start PostgreSQL"
    APORT=$(wh_free_port)
    CONF="$WH_TMP/walhook.conf"
    DATA="$WH_TMP/data"
    mkdir -m 700 "$DATA"
    wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:9/hook"
    [ -z "${1:-}" ] || echo "$1" >>"$CONF"
    M="http://127.0.0.1:$APORT/metrics"
    if [ -n "${GATE:-}" ]; then
        wh_spawn_gated_store
    else
        wh_spawn store "$BIN/walhook-store" -c "$CONF"
    fi
    wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
    wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
    wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
    wh_wait_http "http://127.0.0.1:$APORT/livez" 30 || wh_fail "the admin does not answer /livez"
    wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
}

wh_up() {
    wh_spawn walhook "$BIN/walhook" up -c "$1"
    wh_wait_http "http://127.0.0.1:$2/readyz" 90 || wh_fail "walhook never became ready"
    wh_wait_slot_active walhook 60 || wh_fail "the slot is not streaming"
}

# A psql session of its own that runs what is written to file descriptor
# FD (echo "SQL;" >&FD), its output in $WH_TMP/NAME.out, its pid in
# ${NAME}pid: a transaction kept open across the test's steps.
wh_psql_session() {
    local name=$1 fd=$2
    mkfifo "$WH_TMP/$name.fifo"
    psql -X -q -v ON_ERROR_STOP=1 -At -d "$PG_DSN" <"$WH_TMP/$name.fifo" \
        >"$WH_TMP/$name.out" 2>&1 &
    printf -v "${name}pid" '%s' "$!"
    eval "exec $fd>\"\$WH_TMP/$name.fifo\""
}

# wh_start_receiver NAME OUT [ARGS...]: walhook-receiver NAME on a free
# port writing OUT (ARGS: more of its options); a port taken meanwhile by
# someone else is retried. Sets WH_RPORT to the port.
wh_start_receiver() {
    local name=$1 out=$2 p try
    shift 2
    for try in 1 2 3 4 5; do
        p=$(wh_free_port)
        wh_spawn "$name" "$BIN/walhook-receiver" --listen "127.0.0.1:$p" --out "$out" "$@"
        if wh_wait_http "http://127.0.0.1:$p/" 5 && wh_alive "$name"; then
            WH_RPORT=$p
            return 0
        fi
        wh_kill "$name" KILL
    done
    wh_fail "receiver $name cannot listen"
}

# wh_start_receivers N: receivers recv0..recv(N-1) writing $WH_TMP/rK.jsonl,
# their ports in R0..R(N-1)
wh_start_receivers() {
    local n
    for ((n = 0; n < $1; n++)); do
        wh_start_receiver "recv$n" "$WH_TMP/r$n.jsonl"
        printf -v "R$n" '%s' "$WH_RPORT"
    done
}

# A receiver on PORT (writing $WH_TMP/got.jsonl) and walhook up (wh_up)
# with tenant default, slot and publication walhook, one target t posting
# to the receiver, the admin on APORT, the config in CONF. $1: more
# settings of the source; $2: more top-level settings. The source's DSN is
# WH_UP_DSN when set, else PG_DSN.
wh_up_receiver() {
    PORT=$(wh_free_port)
    APORT=$(wh_free_port)
    wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
    CONF="$WH_TMP/walhook.conf"
    cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "${WH_UP_DSN:-$PG_DSN}"; slot = "walhook"; publication = "walhook"; create_slot = true;
           ${1:-} };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
${2:-}
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
    wh_up "$CONF" "$APORT"
}

# wh_admin_api METHOD PATH [BODY]: one request to the admin at $A with the
# bearer token $TOKEN (the names the tests use); sets CODE (000: no answer)
# and BODY.
wh_admin_api() {
    local args=(-sS -X "$1" -o "$WH_TMP/b" -w '%{http_code}' --max-time 20
        -H "Authorization: Bearer $TOKEN")
    [ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    CODE=$(curl "${args[@]}" "$A$2") || CODE=000
    BODY=$(cat "$WH_TMP/b" 2>/dev/null)
}

wh_require_bins() {
    local b
    for b in "$@"; do
        [ -x "$BIN/$b" ] || wh_fail "missing $BIN/$b (run make)"
    done
}

# ---- helpers of the reconnect, dispatcher-crash and supervise tests ----
#   wh_wait_until S CMD..          runs CMD every 0.2 s until it succeeds (S seconds)
#   wh_terminate_walsender [SLOT]  pg_terminate_backend on the slot's active
#                                  walsender; prints its pid, 1 when none was active
#   wh_slot_pid [SLOT]             active_pid of the slot (empty when inactive)
#   wh_wait_slot_flush LSN S [SLOT] waits until confirmed_flush_lsn >= LSN
#   wh_metric_label URL NAME LABEL sum of the samples of NAME whose labels
#                                  contain LABEL (e.g. 'target="a"'), -1 if none
#   wh_lsn_num X/Y                 the LSN as a decimal number
#   wh_last_lsn FILE               the highest envelope LSN in a received file
#   wh_count_events FILE           change envelopes in a received file (duplicates counted;
#                                  schema and ddl events not)
#   wh_child_pid PPID NAME         pid of PPID's child running walhook-NAME
#   wh_wait_received S EXPECT FILE.. waits until wh_check accepts every FILE

wh_wait_until() {
    local secs=$1
    shift
    local deadline=$(( $(date +%s) + secs ))
    while :; do
        "$@" && return 0
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

wh_slot_pid() {
    pg_psql -At -c "SELECT active_pid FROM pg_replication_slots
                    WHERE slot_name = '${1:-walhook}' AND active_pid IS NOT NULL" 2>/dev/null
}

wh_terminate_walsender() {
    local slot=${1:-walhook} pid
    pid=$(wh_slot_pid "$slot")
    [ -n "$pid" ] || return 1
    [ "$(pg_psql -At -c "SELECT pg_terminate_backend($pid)" 2>/dev/null)" = t ] || return 1
    echo "$pid"
}

_wh_slot_flushed() { # LSN SLOT
    [ "$(pg_psql -At -c "SELECT coalesce(confirmed_flush_lsn >= '$1'::pg_lsn, false)
          FROM pg_replication_slots WHERE slot_name = '$2'" 2>/dev/null)" = t ]
}

wh_wait_slot_flush() {
    local lsn=$1 secs=${2:-60} slot=${3:-walhook}
    wh_wait_until "$secs" _wh_slot_flushed "$lsn" "$slot"
}

wh_metric_label() {
    curl -fsS --max-time 3 "$1" 2>/dev/null |
        awk -v m="$2" -v l="$3" 'index($1, m "{") == 1 && index($1, l) > 0 { s += $NF; found = 1 }
                                 END { if (found) printf "%.0f\n", s; else print -1 }'
}

# wh_metric_label_is URL NAME LABEL OP VALUE: the labelled metric's sum
# compares (test OP) to VALUE now; for wh_wait_until, which runs its command
# again each time (a "$(...)" argument would be expanded once, at the call)
wh_metric_label_is() {
    test "$(wh_metric_label "$1" "$2" "$3")" "$4" "$5"
}

# wh_slot_free SLOT: no process holds the replication slot (for wh_wait_until)
wh_slot_free() {
    [ -z "$(wh_slot_pid "$1")" ]
}

# wh_events_at_least FILE N: FILE holds at least N events (for wh_wait_until)
wh_events_at_least() {
    [ "$(wh_count_events "$1")" -ge "$2" ]
}

wh_lsn_num() {
    local hi=${1%%/*} lo=${1##*/}
    echo $(( (16#$hi << 32) | 16#$lo ))
}

wh_last_lsn() {
    local l v max=-1 best=""
    while read -r l; do
        v=$(wh_lsn_num "$l")
        [ "$v" -gt "$max" ] && { max=$v; best=$l; }
    done < <(grep -o '"lsn":"[0-9A-Fa-f]*/[0-9A-Fa-f]*"' "$1" 2>/dev/null | cut -d'"' -f4 | sort -u)
    [ -n "$best" ] && echo "$best"
}

wh_count_events() { # change events: schema and ddl events (test_schema.sh) not counted
    if [ -f "$1" ]; then
        echo $(($(grep -o '"id":"' "$1" | wc -l) - $(grep -o '"op":"\(schema\|ddl\)"' "$1" | wc -l)))
    else
        echo 0
    fi
}

wh_child_pid() {
    pgrep -P "$1" -f "/walhook-$2( |\$)" 2>/dev/null | head -n 1
}

# wh_kill_child NAME [WHAT]: SIGKILLs walhook up's NAME daemon (ingestor,
# store, ...), logging "SIGKILL the NAME (pid) WHAT"; WH_KILLED gets its pid
# (for wh_wait_restarted).
wh_kill_child() {
    WH_KILLED=$(wh_child_pid "${WH_PIDS[walhook]}" "$1")
    [ -n "$WH_KILLED" ] || wh_fail "no $1 process under walhook up"
    wh_log "SIGKILL the $1 ($WH_KILLED)${2:+ $2}"
    kill -KILL "$WH_KILLED"
}

_wh_restarted() { # NAME OLD-PID
    local p
    p=$(wh_child_pid "${WH_PIDS[walhook]}" "$1")
    [ -n "$p" ] && [ "$p" != "$2" ]
}

# wh_wait_restarted NAME: walhook up started NAME again after wh_kill_child
# (a new pid; 60 s at most).
wh_wait_restarted() {
    wh_wait_until 60 _wh_restarted "$1" "$WH_KILLED" || wh_fail "the $1 was not restarted"
}

_wh_all_received() { # COUNT EXPECT FILE...: every FILE has COUNT envelopes and passes wh_check
    local n=$1 expect=$2 g args=()
    shift 2
    for g in "$@"; do
        [ "$(wh_count_events "$g")" -ge "$n" ] || return 1
        args+=(--received "$g")
    done
    "$BIN/tests/wh_check" --expect "$expect" "${args[@]}" >/dev/null 2>&1
}

wh_wait_received() {
    local secs=$1 expect=$2
    shift 2
    wh_wait_until "$secs" _wh_all_received "$(wc -l <"$expect")" "$expect" "$@"
}
