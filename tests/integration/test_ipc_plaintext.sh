#!/usr/bin/env bash
# Plain tcp:// IPC has no authentication: whoever connects to the store gets
# every secret of the runtime state and can rewrite it. So:
# - `walhook check` (and every daemon: walhook-store here) refuses plain
#   tcp:// on an address other than the loopback for each IPC endpoint
#   (store.endpoint, store.notify_endpoint, ingestor.control,
#   dispatcher.control, dispatcher.advertise) by name, pointing at
#   tls+tcp:// and ipc:// (exit 2); 0.0.0.0, [::], a name, another address;
# - the loopback (127.0.0.1, [::1], localhost) stays accepted;
# - ipc.allow_plaintext_tcp = true (file or WALHOOK_IPC_ALLOW_PLAINTEXT_TCP)
#   accepts them, and a daemon started with it warns, naming each endpoint;
#   a loopback one gets a warning too (every local user can connect);
# - the ipc:// socket the compose files use instead: as root (the store's
#   user) wh_statectl reads the state, secrets included; as nobody it gets
#   nothing (the socket is 0600 in a 0700 directory).
# No PostgreSQL: the store does not connect to the source.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store tests/wh_statectl
wh_tmpdir
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
CONF="$WH_TMP/walhook.conf"
SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
cat >"$CONF" <<EOC
tenant = "default";
data_dir = "$DATA";
source = { dsn = "postgresql://u@127.0.0.1:1/x"; };
targets = ( { name = "t"; url = "http://127.0.0.1:9/hook"; secret = "$SECRET"; } );
EOC
P=$(wh_free_port)

# KEY=URL...: walhook check with those settings in the environment
check() {
    local -a envs=()
    local kv key
    for kv in "$@"; do
        key=${kv%%=*}
        envs+=("WALHOOK_$(echo "$key" | tr 'a-z.' 'A-Z_')=${kv#*=}")
    done
    env "${envs[@]}" "$BIN/walhook" check -c "$CONF" >"$WH_TMP/check.out" 2>&1
}

n=0
for kv in "store.endpoint=tcp://0.0.0.0:$P" "store.endpoint=tcp://192.0.2.1:$P" \
    "store.endpoint=tcp://[::]:$P" "store.endpoint=tcp://walhook-store:$P" \
    "store.notify_endpoint=tcp://0.0.0.0:$P" "ingestor.control=tcp://10.1.2.3:$P" \
    "dispatcher.control=tcp://*:$P" "dispatcher.advertise=tcp://dispatcher-1:$P"; do
    check "$kv"
    rc=$?
    key=${kv%%=*} url=${kv#*=}
    [ "$rc" = 2 ] || { cat "$WH_TMP/check.out" >&2; wh_fail "$key = $url: walhook check exit $rc, not 2"; }
    for want in "setting '$key': '$url' is plain tcp:// beyond the loopback" \
        "use tls+tcp://" "ipc:// on a volume the daemons share" "ipc.allow_plaintext_tcp = true"; do
        grep -qF -- "$want" "$WH_TMP/check.out" ||
            { cat "$WH_TMP/check.out" >&2; wh_fail "$key = $url: the refusal does not say \"$want\""; }
    done
    n=$((n + 1))
done

# the loopback stays accepted
check "store.endpoint=tcp://127.0.0.1:$P" "store.notify_endpoint=tcp://[::1]:$P" \
    "ingestor.control=tcp://localhost:$P" "dispatcher.control=tcp://127.0.0.2:$P" ||
    { cat "$WH_TMP/check.out" >&2; wh_fail "loopback tcp:// endpoints refused"; }

# the daemons refuse it too (the same check, at start)
WALHOOK_STORE_ENDPOINT="tcp://0.0.0.0:$P" timeout 30 "$BIN/walhook-store" -c "$CONF" \
    >"$WH_TMP/refused.out" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -qF "setting 'store.endpoint': 'tcp://0.0.0.0:$P' is plain tcp://" \
    "$WH_TMP/refused.out" ||
    { cat "$WH_TMP/refused.out" >&2; wh_fail "walhook-store on tcp://0.0.0.0 exited $rc, not 2 with the reason"; }

# the opt-in: in the file, and in the environment
cp "$CONF" "$WH_TMP/optin.conf"
echo 'ipc = { allow_plaintext_tcp = true; };' >>"$WH_TMP/optin.conf"
WALHOOK_STORE_ENDPOINT="tcp://0.0.0.0:$P" "$BIN/walhook" check -c "$WH_TMP/optin.conf" \
    >"$WH_TMP/check.out" 2>&1 ||
    { cat "$WH_TMP/check.out" >&2; wh_fail "ipc.allow_plaintext_tcp = true in the file: still refused"; }
check "ipc.allow_plaintext_tcp=true" "store.endpoint=tcp://0.0.0.0:$P" ||
    { cat "$WH_TMP/check.out" >&2; wh_fail "WALHOOK_IPC_ALLOW_PLAINTEXT_TCP=true: still refused"; }

# a daemon started with it warns, naming the endpoints; a loopback one gets
# a warning of its own (ingestor.control, dispatcher.control: only dialed,
# by the admin; the store listens on its ipc:// socket)
WALHOOK_IPC_ALLOW_PLAINTEXT_TCP=true WALHOOK_INGESTOR_CONTROL="tcp://192.0.2.1:$P" \
    WALHOOK_DISPATCHER_CONTROL="tcp://127.0.0.1:$P" wh_spawn store "$BIN/walhook-store" -c "$CONF"
warned() {
    grep -F "ipc.allow_plaintext_tcp is true" "$WH_TMP/store.log" | grep WARN |
        grep -F "ingestor.control tcp://192.0.2.1:$P" | grep -qF "no authentication" &&
        grep -F "plain tcp:// on the loopback: dispatcher.control tcp://127.0.0.1:$P." \
            "$WH_TMP/store.log" | grep WARN | grep -qF "Every local user"
}
wh_wait_until 20 warned || { cat "$WH_TMP/store.log" >&2; wh_fail "no start-up warnings"; }

# ipc:// (what the compose files use): the store's user reads the state,
# another user gets nothing
SC=("$BIN/tests/wh_statectl" -c "$CONF")
wh_wait_until 20 "${SC[@]}" version >/dev/null 2>&1 || wh_fail "the store does not answer on ipc://"
"${SC[@]}" get >"$WH_TMP/state.json" 2>&1 || wh_fail "wh_statectl get failed"
grep -qF "$SECRET" "$WH_TMP/state.json" || wh_fail "the state has no secret (the check below means nothing)"
other="ipc:// as another user: not checked (needs root and runuser)"
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    NB="$WH_TMP/nobody"
    mkdir -m 755 "$NB"
    mkdir -m 700 "$NB/d"
    chown nobody "$NB/d"
    cp "$BIN/tests/wh_statectl" "$NB/"
    printf 'tenant = "default";\ndata_dir = "%s";\nsource = { dsn = "postgresql://x@127.0.0.1:1/x"; };\nstore = { endpoint = "ipc://%s/store.sock"; };\n' \
        "$NB/d" "$DATA" >"$NB/a.conf"
    chmod 644 "$NB/a.conf"
    runuser -u nobody -- "$NB/wh_statectl" -c "$NB/a.conf" get >"$NB/stolen.out" 2>&1
    rc=$?
    [ "$rc" != 0 ] || wh_fail "nobody read the state over the ipc:// socket"
    ! grep -qF "$SECRET" "$NB/stolen.out" || wh_fail "nobody got the signing secret over ipc://"
    other="ipc:// as nobody: refused (exit $rc)"
fi
wh_pass "$n plain tcp:// endpoints beyond the loopback refused by name (walhook check, walhook-store); loopback accepted; ipc.allow_plaintext_tcp accepted with a start-up warning (loopback: its own); $other"
