#!/usr/bin/env bash
# Migration 3 numbers: µs per hr_encrypt_credential / hr_decrypt_credential
# of a 200-byte secret inside SQL (100k calls each, minus the cost of the
# same query without the call), and the time to migrate SCALE integrations
# (default 100000) with 003_integration_credentials.sql.
#   benches/credentials.sh [SCALE] [BATCH_SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-100000}
batch=${2:-1000}
dir=$(mktemp -d /tmp/hrm-bench.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir/c" >/dev/null 2>&1; rm -rf "$dir"' EXIT
mkdir -p "$dir/keys"
echo "1 $(head -c 32 /dev/urandom | base64)" >"$dir/keys/keyring"
[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
chmod 0400 "$dir/keys/keyring"
port=$(scripts/pg-cluster.sh start "$dir/c" shared_preload_libraries=hr_migrations \
    hr_migrations.keyring_file="$dir/keys/keyring" hr_migrations.active_key_version=1 shared_buffers=512MB)
url="host=127.0.0.1 port=$port user=postgres dbname=bench"
run() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql "host=127.0.0.1 port=$port user=postgres dbname=postgres" -X -q -c "CREATE DATABASE bench"
run -f tests/fixtures/schema.sql
run -v scale="$scale" -f tests/fixtures/generate.sql
run -c "CREATE EXTENSION hr_migrations SCHEMA extensions" -c "ALTER DATABASE bench SET search_path = public, extensions" \

run -c "CREATE TABLE envs AS SELECT hr_encrypt_credential(repeat('s', 200), 'pf_credentials:o:' || g) AS e, g FROM generate_series(1, 100000) g"

ms() { run -At -c "\\timing on" -c "$1" | grep -oE 'Time: [0-9.]+' | grep -oE '[0-9.]+'; }
n=100000
base=$(ms "SELECT count(length(repeat('s', 200) || 'pf_credentials:o:' || g)) FROM generate_series(1, $n) g")
enc=$(ms "SELECT count(hr_encrypt_credential(repeat('s', 200), 'pf_credentials:o:' || g)) FROM generate_series(1, $n) g")
base_d=$(ms "SELECT count(length(e || 'pf_credentials:o:' || g)) FROM envs")
dec=$(ms "SELECT count(hr_decrypt_credential(e, 'pf_credentials:o:' || g)) FROM envs")

start=$(date +%s.%N)
run -v batch_size="$batch" -f sql/migrations/003_integration_credentials.sql >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
end=$(date +%s.%N)
fin=$(grep -oE 'backfill finished: [0-9]+ rows in [0-9]+ batches, [0-9.]+ s' "$dir/out")
maxms=$(grep -oE 'rows in [0-9.]+ ms' "$dir/out" | grep -oE '[0-9.]+' | sort -g | tail -n 1)
awk -v n="$n" -v b="$base" -v e="$enc" -v bd="$base_d" -v d="$dec" 'BEGIN {
    printf "hr_encrypt_credential, 200-byte secret: %.2f us per call (%d calls)\n", (e - b) * 1000 / n, n;
    printf "hr_decrypt_credential, 200-byte secret: %.2f us per call (%d calls)\n", (d - bd) * 1000 / n, n;
}'
echo "integration_credentials ($scale integrations, batch $batch): $fin; 003 took $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}') s in all; longest batch $maxms ms"
