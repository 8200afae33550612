#!/usr/bin/env bash
# Files with secrets that group or others may read: `walhook check` warns
# (exit status still 0) about a config file holding a DSN password and a
# whsec_ secret, and about admin.tls_key and ipc.tls_key, naming the
# settings, never a value; a daemon (the store) logs the same warning at
# start. Once chmod 600, no warning. No PostgreSQL needed.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store
wh_tmpdir

PW=S3cretDSNpass42
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
wh_write_conf "$CONF" "postgresql://whuser:$PW@127.0.0.1:1/x" "$DATA" "$(wh_free_port)" \
    "http://127.0.0.1:9/hook"
sed -i "s|url = \"http://127.0.0.1:9/hook\";|& secret = \"$SECRET\";|" "$CONF"
grep -q "$SECRET" "$CONF" || wh_fail "the secret is not in the config"
KEY="$WH_TMP/ipc.key"
: >"$KEY"
: >"$WH_TMP/admin.crt"
chmod 644 "$CONF" "$KEY"
export WALHOOK_ADMIN_TLS_CERT="$WH_TMP/admin.crt" WALHOOK_ADMIN_TLS_KEY="$KEY" \
    WALHOOK_IPC_TLS_KEY="$KEY"

"$BIN/walhook" check -c "$CONF" >"$WH_TMP/check.out" 2>"$WH_TMP/check.err" ||
    wh_fail "walhook check refused the file: $(cat "$WH_TMP/check.err")"
grep -q "ok .*, 3 warnings" "$WH_TMP/check.out" || wh_fail "check: $(cat "$WH_TMP/check.out")"
grep -q "warning: config file $CONF is readable by others (mode 0644) and holds secrets (source.dsn (a password), targets\[0\].secret)" \
    "$WH_TMP/check.err" || wh_fail "no warning about the config file: $(cat "$WH_TMP/check.err")"
grep -q "warning: admin.tls_key $KEY is readable by others (mode 0644)" "$WH_TMP/check.err" ||
    wh_fail "no warning about admin.tls_key: $(cat "$WH_TMP/check.err")"
grep -q "warning: ipc.tls_key $KEY is readable by others (mode 0644)" "$WH_TMP/check.err" ||
    wh_fail "no warning about ipc.tls_key: $(cat "$WH_TMP/check.err")"
grep -q -e "$PW" -e "${SECRET#whsec_}" "$WH_TMP/check.err" "$WH_TMP/check.out" &&
    wh_fail "walhook check printed a secret"

# the daemons at start (the store: no TLS on its ipc:// endpoint, the key
# is only checked)
unset WALHOOK_ADMIN_TLS_KEY WALHOOK_ADMIN_TLS_CERT
chmod 640 "$KEY"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 30 grep -q "store running on" "$WH_TMP/store.log" ||
    wh_fail "the store did not start"
grep -q "WARN config file $CONF is readable by others (mode 0644) and holds secrets" \
    "$WH_TMP/store.log" || wh_fail "the store did not warn about the config file"
grep -q "WARN ipc.tls_key $KEY is readable by its group (mode 0640)" "$WH_TMP/store.log" ||
    wh_fail "the store did not warn about ipc.tls_key"
grep -q -e "$PW" -e "${SECRET#whsec_}" "$WH_TMP/store.log" && wh_fail "the store logged a secret"
wh_kill store

chmod 600 "$CONF" "$KEY"
"$BIN/walhook" check -c "$CONF" >"$WH_TMP/check.out" 2>"$WH_TMP/check.err" ||
    wh_fail "walhook check refused the file: $(cat "$WH_TMP/check.err")"
[ -s "$WH_TMP/check.err" ] && wh_fail "warnings with mode 600: $(cat "$WH_TMP/check.err")"
grep -q "warning" "$WH_TMP/check.out" && wh_fail "warnings with mode 600: $(cat "$WH_TMP/check.out")"

wh_pass "walhook check and the store warn about a readable config with secrets and readable TLS keys, naming settings only"
