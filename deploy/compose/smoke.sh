#!/usr/bin/env bash
# deploy/compose/smoke.sh: a real run of the compose stack, outside CI (it
# needs a Docker daemon; run it as root or as a member of the docker group).
#
#   deploy/compose/smoke.sh            # builds walhook:0.1.0, runs, cleans up
#   SKIP_BUILD=1 deploy/compose/smoke.sh
#
# It uses the host-network variant (docker-compose.yml +
# docker-compose.host.yml: every container on 127.0.0.1, free ports picked
# here) under a project of its own (walhook-smoke-PID, its own volumes) and:
#   1. `up -d`: every service reaches "healthy" (its healthcheck), in the
#      order of the depends_on conditions; then `--scale dispatcher=3`;
#   2. TARGETS targets, each a receiver of its own (answering after 20 ms, so
#      that two dispatchers posting to one target at once would overlap);
#      the targets are shared by the 3 dispatchers through store leases;
#   3. CHANGES inserts: every receiver gets every id, in order, exactly once,
#      and no POST overlaps another to the same target;
#   4. `docker kill` of the dispatcher holding most targets while CHANGES2
#      more inserts stream: its targets move to the other two within the lease
#      TTL (10 s in the compose file), every receiver gets every id in order
#      (ids redelivered after the kill are counted: at-least-once), still no
#      overlapping POST.
# Then `down -v` (containers, volumes) and the receivers are removed, whatever
# happened. Exit 0 when every check passed. Needs docker, docker-compose,
# python3 and curl on the host.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHANGES=${CHANGES:-3000}
CHANGES2=${CHANGES2:-2000}
TARGETS=${TARGETS:-6}
REPLICAS=${REPLICAS:-3}
IMAGE=${WALHOOK_IMAGE:-walhook:0.1.0}
export WALHOOK_IMAGE=$IMAGE
PROJECT=walhook-smoke-$$
TMP=$(mktemp -d "${TMPDIR:-/tmp}/walhook-smoke.XXXXXX")
DC=(docker-compose -p "$PROJECT" -f "$HERE/docker-compose.yml" -f "$HERE/docker-compose.host.yml")
FAILED=0

log() { echo "[$(date +%T)] smoke: $*"; }
fail() {
    log "FAIL: $*"
    FAILED=1
    exit 1
}
cleanup() {
    local rc=$?
    if [ "$FAILED" = 1 ] || [ "$rc" != 0 ]; then
        "${DC[@]}" ps >&2 || true
        "${DC[@]}" logs --no-color --tail 30 >"$TMP/compose.log" 2>&1 || true
        log "the last log lines of every service: $TMP/compose.log (kept)"
    fi
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    for i in $(seq 1 "$TARGETS"); do docker rm -f -v "$PROJECT-rcv-t$i" >/dev/null 2>&1 || true; done
    if [ "$rc" = 0 ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now_ms() { date +%s%3N; }
wait_until() { # SECS CMD...
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.5
    done
}

# --- images --------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building $IMAGE (deploy/compose/Dockerfile)"
    DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build --network host -q -f "$HERE/Dockerfile" -t "$IMAGE" \
        --build-arg WALHOOK_REVISION="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
        "$ROOT" >/dev/null || fail "docker build of $IMAGE failed"
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE (run without SKIP_BUILD=1)"
if [ -z "${WALHOOK_POSTGRES_IMAGE:-}" ]; then
    # postgres:15 when it is there (`docker pull postgres:15` first to use
    # it), else an image with the same conventions from Debian's packages
    if docker image inspect postgres:15 >/dev/null 2>&1; then
        export WALHOOK_POSTGRES_IMAGE=postgres:15
    else
        log "no postgres:15 image here: building walhook-postgres:15 from Debian's packages"
        DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build --network host -q -t walhook-postgres:15 "$HERE/postgres" >/dev/null ||
            fail "docker build of walhook-postgres:15 failed"
        export WALHOOK_POSTGRES_IMAGE=walhook-postgres:15
    fi
fi

# --- ports, receivers, targets -----------------------------------------------
WALHOOK_PG_PORT=$(free_port) WALHOOK_ADMIN_PORT=$(free_port) WALHOOK_RECEIVER_PORT=$(free_port)
export WALHOOK_PG_PORT WALHOOK_ADMIN_PORT WALHOOK_RECEIVER_PORT
mkdir -p "$TMP/out"
chown 10001:10001 "$TMP/out" 2>/dev/null || chmod 777 "$TMP/out"
declare -A RPORT=()
targets=""
for i in $(seq 1 "$TARGETS"); do
    RPORT[$i]=$(free_port)
    docker run -d --name "$PROJECT-rcv-t$i" --network host --read-only --cap-drop ALL \
        -v "$TMP/out:/out" "$IMAGE" walhook-receiver --listen "127.0.0.1:${RPORT[$i]}" \
        --out "/out/t$i.jsonl" --delay-ms 20 >/dev/null || fail "receiver t$i did not start"
    targets+="${targets:+,}t$i=http://127.0.0.1:${RPORT[$i]}/hook"
done
export WALHOOK_TARGETS=$targets
for i in $(seq 1 "$TARGETS"); do
    wait_until 20 curl -fsS -o /dev/null "http://127.0.0.1:${RPORT[$i]}/" || fail "receiver t$i does not answer"
done
log "project $PROJECT: postgres :$WALHOOK_PG_PORT, store and ingestor on ipc:// sockets, admin :$WALHOOK_ADMIN_PORT, $TARGETS receivers"

# --- up, healthchecks ---------------------------------------------------------
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null || echo gone; }
all_healthy() { # N: N containers in the project, every one healthy
    local ids c n=0
    ids=$("${DC[@]}" ps -q 2>/dev/null) || return 1
    for c in $ids; do
        [ "$(health "$c")" = healthy ] || return 1
        n=$((n + 1))
    done
    [ "$n" -ge "$1" ]
}
t0=$(now_ms)
"${DC[@]}" up -d --no-build >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "docker-compose up failed"; }
wait_until 180 all_healthy 6 || fail "not every service became healthy within 180 s"
healthy_ms=$(($(now_ms) - t0))
log "up -d: 6 services healthy in $((healthy_ms / 1000)).$((healthy_ms % 1000 / 100)) s (postgres, store, ingestor, receiver, dispatcher, admin)"
t0=$(now_ms)
"${DC[@]}" up -d --no-build --no-recreate --scale dispatcher="$REPLICAS" >"$TMP/scale.log" 2>&1 ||
    { cat "$TMP/scale.log"; fail "--scale dispatcher=$REPLICAS failed"; }
wait_until 120 all_healthy $((5 + REPLICAS)) || fail "the scaled dispatchers did not become healthy"
scale_ms=$(($(now_ms) - t0))
log "--scale dispatcher=$REPLICAS: $REPLICAS dispatchers healthy in $((scale_ms / 1000)).$((scale_ms % 1000 / 100)) s"
"${DC[@]}" ps
readyz=$(curl -sS --max-time 5 "http://127.0.0.1:$WALHOOK_ADMIN_PORT/readyz" || true)
log "admin /readyz: $(echo "$readyz" | tr '\n' ' ' | cut -c1-300)"

# --- leases: who holds which target ------------------------------------------------
mapfile -t DSP < <("${DC[@]}" ps -q dispatcher)
[ "${#DSP[@]}" = "$REPLICAS" ] || fail "${#DSP[@]} dispatcher containers, expected $REPLICAS"
held() { # CONTAINER: targets it holds now, from its log (acquired - given up - lost)
    local l a g
    l=$(docker logs "$1" 2>&1)
    a=$(grep -c "lease of default/.* acquired" <<<"$l" || true)
    g=$(grep -c "lease of default/.* \(given up\|lost\)" <<<"$l" || true)
    echo $((a - g))
}
balanced() {
    local c h sum=0
    for c in "${DSP[@]}"; do
        h=$(held "$c")
        [ "$h" -ge 1 ] || return 1
        sum=$((sum + h))
    done
    [ "$sum" = "$TARGETS" ]
}
wait_until 60 balanced || fail "the $TARGETS targets were not shared by the $REPLICAS dispatchers"
shares=""
for c in "${DSP[@]}"; do shares+=" ${c:0:12}=$(held "$c")"; done
log "targets shared through leases:$shares"

# --- load and checks ------------------------------------------------------------
insert() { # ROWS TXNS PAUSE: TXNS transactions of ROWS/TXNS inserts each
    local per=$(($1 / $2)) i
    for i in $(seq 1 "$2"); do
        echo "INSERT INTO orders (note) SELECT 'smoke ' || g FROM generate_series(1, $per) g;"
        echo "SELECT pg_sleep($3);"
    done | "${DC[@]}" exec -T postgres psql -q -U postgres -h /var/run/postgresql -p "$WALHOOK_PG_PORT" \
        -v ON_ERROR_STOP=1 -o /dev/null
}
# verdict per receiver: "events unique dups missing inorder" (python3 parses
# the bodies: JSON arrays of native envelopes; only the inserts into orders
# count, a schema event before the first row of a table has "after": null)
check() { # N
    python3 - "$1" "$TMP/out" "$TARGETS" <<'PY'
import json, sys
n, out, t = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(1, t + 1):
    ids = []
    try:
        for line in open(f"{out}/t{i}.jsonl"):
            ids += [e["after"]["id"] for e in json.loads(line)
                    if e["op"] == "insert" and e["table"] == "orders"]
    except FileNotFoundError:
        pass
    first, seen = [], set()
    for x in ids:
        if x not in seen:
            seen.add(x)
            first.append(x)
    missing = len(set(range(1, n + 1)) - seen)
    print(len(ids), len(seen), len(ids) - len(seen), missing, int(first == sorted(first)))
PY
}
# checked N: check N, or nothing (and status 1) when the parse failed or did
# not cover every receiver (a failed check never passes for an empty one)
checked() {
    local out
    out=$(check "$1") || return 1
    [ "$(grep -c . <<<"$out")" = "$TARGETS" ] || return 1
    echo "$out"
}
delivered() { # N: every receiver has every id up to N
    local out mi
    out=$(checked "$1") || return 1
    while read -r _ _ _ mi _; do [ "$mi" = 0 ] || return 1; done <<<"$out"
}
overlaps() {
    local i n sum=0
    for i in $(seq 1 "$TARGETS"); do
        n=$(curl -fsS --max-time 3 "http://127.0.0.1:${RPORT[$i]}/" | sed -n 's/.*stored, \([0-9]*\) overlapping.*/\1/p')
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}
verdict() { # N PHASE ALLOW_DUPS
    local ev du mi io i=0 tot=0 dups=0 out
    out=$(checked "$1") || fail "$2: the receivers' bodies could not be checked"
    while read -r ev _ du mi io; do
        i=$((i + 1))
        [ "$mi" = 0 ] || fail "$2: receiver t$i misses $mi of $1 ids"
        [ "$io" = 1 ] || fail "$2: receiver t$i got ids out of order"
        [ "$3" = 1 ] || [ "$du" = 0 ] || fail "$2: receiver t$i got $du duplicate ids"
        tot=$((tot + ev))
        dups=$((dups + du))
    done <<<"$out"
    local ov
    ov=$(overlaps)
    [ "$ov" = 0 ] || fail "$2: $ov POST(s) overlapped another POST to the same target"
    log "$2: $TARGETS receivers x $1 ids: all present, in order, $dups duplicate(s), $ov overlapping POSTs ($tot events received in all)"
}

t0=$(now_ms)
insert "$CHANGES" 30 0.05 || fail "the inserts failed"
wait_until 180 delivered "$CHANGES" || { check "$CHANGES" >&2; fail "phase 1: not every change was delivered within 180 s"; }
d1_ms=$(($(now_ms) - t0))
log "phase 1: $CHANGES inserts (30 transactions) delivered to $TARGETS targets in $((d1_ms / 1000)).$((d1_ms % 1000 / 100)) s"
verdict "$CHANGES" "phase 1 (3 dispatchers)" 0

# --- kill the dispatcher holding most targets mid-stream ---------------------------
victim="" vh=0
for c in "${DSP[@]}"; do
    h=$(held "$c")
    if [ "$h" -gt "$vh" ]; then victim=$c vh=$h; fi
done
others=()
for c in "${DSP[@]}"; do [ "$c" = "$victim" ] || others+=("$c"); done
acquired_by_others() {
    local c s=0
    for c in "${others[@]}"; do s=$((s + $(docker logs "$c" 2>&1 | grep -c "lease of default/.* acquired" || true))); done
    echo "$s"
}
before=$(acquired_by_others)
insert "$CHANGES2" 20 0.25 &
load_pid=$!
sleep 1
docker kill "$victim" >/dev/null || fail "docker kill $victim failed"
killed=$(now_ms)
log "docker kill ${victim:0:12} (held $vh targets) while $CHANGES2 more inserts stream"
took_over() { [ "$(acquired_by_others)" -ge $((before + vh)) ]; }
wait_until 60 took_over || fail "the other dispatchers did not take the $vh target(s) over within 60 s"
move_ms=$(($(now_ms) - killed))
shares=""
for c in "${others[@]}"; do shares+=" ${c:0:12}=$(held "$c")"; done
log "its $vh target(s) moved in $((move_ms / 1000)).$((move_ms % 1000 / 100)) s (lease TTL 10 s); now:$shares"
wait "$load_pid" || fail "the inserts of phase 2 failed"
total=$((CHANGES + CHANGES2))
wait_until 180 delivered "$total" || { check "$total" >&2; fail "phase 2: not every change was delivered within 180 s"; }
d2_ms=$(($(now_ms) - killed))
log "phase 2: all $total changes delivered to $TARGETS targets $((d2_ms / 1000)).$((d2_ms % 1000 / 100)) s after the kill"
verdict "$total" "phase 2 (one dispatcher killed)" 1
[ "$(docker inspect -f '{{.State.Running}}' "$victim")" = false ] || fail "the killed dispatcher was restarted"
for c in $("${DC[@]}" ps -q); do
    [ "$c" = "$victim" ] && continue
    [ "$(health "$c")" = healthy ] || fail "container ${c:0:12} is $(health "$c") at the end"
done
log "PASS: compose stack healthy in $((healthy_ms / 1000)).$((healthy_ms % 1000 / 100)) s, $REPLICAS dispatchers shared $TARGETS targets, $total changes delivered in order with no overlapping POSTs, a killed dispatcher's targets moved in $((move_ms / 1000)).$((move_ms % 1000 / 100)) s"
