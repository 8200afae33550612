# shellcheck shell=bash
# tests/lib/pg.sh: a throwaway PostgreSQL 15 for tests (source this file).
#
#   pg_start            initdb + start on 127.0.0.1:<free port>; sets PG_DIR,
#                       PG_PORT, PG_DSN (libpq URL, user postgres, db postgres)
#   pg_psql SQL...      runs psql -X -q -v ON_ERROR_STOP=1 against PG_DSN
#   pg_stop             stops the server (fast) and removes PG_DIR; idempotent
#   pg_restart [MODE]   restarts it in place (default -m immediate = crash restart)
#
# Works as root (the server runs as the `postgres` system user, initdb refuses
# root) and as an ordinary user. Callers should `trap pg_stop EXIT`.

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DIR=""
PG_PORT=""
PG_DSN=""
PG_RUNAS=""

# Prints a free TCP port on 127.0.0.1, below the kernel's ephemeral range
# (ip_local_port_range): a port from that range can be taken between this
# check and the listen by any outgoing connection's local end (the
# dispatcher's to another receiver, libpq's to PostgreSQL), which a
# listener cannot share even with SO_REUSEADDR.
# A port is handed out once per test (the record: $WH_TMP/.ports, or
# /tmp/wh-ports.PID before WH_TMP exists): two ports drawn before anything
# listens on them must differ, or two receivers race for one (seen in CI:
# one of seven receivers could not listen).
wh_free_port() {
    local p lo=32768 hi=60999 span rec="/tmp/wh-ports.$$"
    [ -n "${WH_TMP:-}" ] && [ -d "$WH_TMP" ] && rec="$WH_TMP/.ports"
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    span=$(( lo - 10000 ))
    [ "$span" -ge 1000 ] || span=1000
    for _ in $(seq 1 200); do
        p=$(( (RANDOM * 32768 + RANDOM) % span + 10000 ))
        grep -qx "$p" "$rec" 2>/dev/null && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p" >>"$rec"
            echo "$p"
            return 0
        fi
    done
    echo "no free port" >&2
    return 1
}

_pg_run() {
    if [ -n "$PG_RUNAS" ]; then
        runuser -u "$PG_RUNAS" -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    if [ ! -x "$PG_BIN/initdb" ]; then
        echo "pg.sh: $PG_BIN/initdb not found (run scripts/install-deps.sh)" >&2
        return 1
    fi
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/walhook-pg.XXXXXX") || return 1
    if [ "$(id -u)" = 0 ]; then
        PG_RUNAS=postgres
        id postgres >/dev/null 2>&1 || { echo "pg.sh: no postgres user" >&2; return 1; }
        chmod 755 "$PG_DIR"
        chown postgres: "$PG_DIR"
    fi
    _pg_run "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
    _pg_run "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 \
        --no-locale >"$PG_DIR/initdb.log" 2>&1 || {
        echo "pg.sh: initdb failed:" >&2; cat "$PG_DIR/initdb.log" >&2; return 1; }
    for _ in 1 2 3 4 5; do
        PG_PORT=$(wh_free_port) || return 1
        cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
wal_level = logical
max_wal_senders = ${PG_MAX_SLOTS:-10}
max_replication_slots = ${PG_MAX_SLOTS:-10}
fsync = on
synchronous_commit = on
shared_buffers = 128MB
max_wal_size = 2GB
wal_sender_timeout = 60s
log_min_messages = warning
CONF
        if _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
                start >/dev/null 2>&1; then
            PG_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
            export PG_DIR PG_PORT PG_DSN
            return 0
        fi
        tail -n 5 "$PG_DIR/server.log" >&2 2>/dev/null
    done
    echo "pg.sh: could not start PostgreSQL" >&2
    return 1
}

pg_psql() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$PG_DSN" "$@"
}

pg_stop() {
    if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
        if [ -f "$PG_DIR/data/postmaster.pid" ]; then
            _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop \
                >/dev/null 2>&1 || true
        fi
        rm -rf "$PG_DIR"
    fi
    PG_DIR=""
}

# pg_halt [MODE]      stops the server (default mode immediate), keeping its
#                     data and port: pg_resume starts it again.
pg_halt() {
    [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 1
    _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m "${1:-immediate}" -w -t 30 stop >/dev/null 2>&1
}

pg_resume() {
    [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 1
    _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
        >/dev/null 2>&1
}

# pg_restart [MODE]   restarts the server (default mode immediate: a crash
#                     restart with WAL recovery); same port, same data.
pg_restart() {
    local mode=${1:-immediate}
    [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 1
    _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -m "$mode" -w -t 60 \
        restart >/dev/null 2>&1
}
