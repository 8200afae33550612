#!/usr/bin/env bash
# Installs the Debian 12 packages walhook needs to build, test, bench and demo.
# A fast no-op when everything is already installed; otherwise needs root.
#   scripts/install-deps.sh [--test] [--bench]   --test: also what only the tests
#   use; --bench: also rocksdb-tools (db_bench, for make bench-tenants)
set -euo pipefail
PKGS=(build-essential pkg-config libpq-dev libnng-dev librocksdb-dev libcurl4-openssl-dev
      libssl-dev libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev libconfig-dev
      postgresql-15 postgresql-client-15 libcmocka-dev clang docker-compose curl procps
      libclang-rt-14-dev clang-format git binutils libjansson-dev) # libFuzzer runtime (only recommended by clang); style check (git ls-files, nm)
# --test: also what only tests use (node and npm for test_envelope_refs, which
# checks walhook's requests with the npm cloudevents and standardwebhooks
# packages); a node from another source counts.
# --test also: jq (test_json_logs), openssl (test_ipc_tls's throwaway CA),
# prometheus for promtool (test_monitoring; 19 MB download, 96 MB installed),
# chromium (test_status_page: the status page rendered by a real browser),
# rocksdb-tools (test_store_crc32c: Debian's ldb reads the store's WAL, so the
# store's own CRC32C is checked against the library's; test_filter_legacy:
# ldb writes a runtime state as an older walhook stored it).
for a in "$@"; do
    case "$a" in
    --test)
        PKGS+=(jq openssl prometheus chromium rocksdb-tools)
        if ! { command -v node && command -v npm; } >/dev/null 2>&1; then
            PKGS+=(nodejs npm)
        fi
        ;;
    --bench) PKGS+=(rocksdb-tools) ;; # db_bench, the reference of make bench-tenants
    esac
done
missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
    SUDO=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
# The server package starts a cluster on 5432 when it can; tests use their own.
echo "install-deps: done"
