#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for tests, the demo and benchmarks.
#
#   scripts/pg-cluster.sh start DIR [name=value ...]   initdb + start; prints the port
#   scripts/pg-cluster.sh stop DIR                     stop (immediate) and keep DIR
#
# The server listens on 127.0.0.1 only, on a free port, with its socket in
# DIR/sock and trust auth for local test users. As root, initdb and pg_ctl
# run as the `postgres` OS user (Postgres refuses to run as root).
# Extra name=value pairs go into postgresql.conf (e.g. shared_preload_libraries=hr_migrations).
# PG_SUPERUSER names the bootstrap superuser (default postgres; the Supabase
# layout's is supabase_admin, tests/fixtures/supabase/README.md).
set -euo pipefail

BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "pg-cluster: no free port found" >&2
    return 1
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0" >&2; exit 2; }
shift 2

case "$cmd" in
start)
    mkdir -p "$dir/sock"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$BIN/initdb" -D "$dir/data" -U "${PG_SUPERUSER:-postgres}" --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir/sock'"
            echo "fsync = off"            # throwaway clusters: speed over durability
            echo "max_connections = 100"
            echo "log_line_prefix = '%m [%p] %q%u@%d '"
            for kv in "$@"; do echo "${kv%%=*} = '${kv#*=}'"; done
        } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    fi
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
                -o "-p $port" start >/dev/null 2>&1; then
            echo "$port" | as_pg tee "$dir/port" >/dev/null
            echo "$port"
            exit 0
        fi
        grep -q 'could not bind\|Address already in use' "$dir/server.log" 2>/dev/null || break
    done
    echo "pg-cluster: could not start the server in $dir; its log:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    exit 1
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
