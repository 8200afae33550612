#!/bin/sh
# First start (empty $PGDATA): initdb with POSTGRES_PASSWORD for the
# postgres superuser, then every /docker-entrypoint-initdb.d/*.sql through a
# server listening on its Unix socket only. Then `postgres ARGS...`.
# (ARGS are -c settings: the init server takes them too, as one string.)
set -eu
if [ "${1:-}" = postgres ]; then
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        # UTF8, as the official image's cluster (en_US.utf8) is: without a
        # locale initdb would pick SQL_ASCII, and walhook warns that such a
        # database's text is not converted to UTF-8
        initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
            --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
        echo "host replication all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
        # the command's settings (wal_level=logical: the scripts may create
        # publications), on the Unix socket only, port 5432 (as the official
        # image does)
        pg_ctl -D "$PGDATA" -w -o "$* -c listen_addresses='' -p 5432 -k /var/run/postgresql" \
            start >/dev/null
        for f in /docker-entrypoint-initdb.d/*.sql; do
            [ -e "$f" ] || continue
            echo "entrypoint: running $f"
            psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -U postgres -d postgres -q -f "$f"
        done
        pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
        echo "entrypoint: database initialised"
    fi
    exec postgres -D "$PGDATA" -k /var/run/postgresql "$@"
fi
exec "$@"
