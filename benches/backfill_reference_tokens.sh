#!/usr/bin/env bash
# Time to backfill reference-token hashes: a throwaway cluster, the fixture at
# SCALE references (default 100000), 001_reference_tokens.sql applied with
# psql. Prints the wall time of the whole file and the backfill's own line.
#   benches/backfill_reference_tokens.sh [SCALE] [BATCH_SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-100000}
batch=${2:-5000}
dir=$(mktemp -d /tmp/hrm-bench.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir/c" >/dev/null 2>&1; rm -rf "$dir"' EXIT
port=$(scripts/pg-cluster.sh start "$dir/c")
url="host=127.0.0.1 port=$port user=postgres dbname=bench"
psql "host=127.0.0.1 port=$port user=postgres dbname=postgres" -X -q -c "CREATE DATABASE bench"
psql "$url" -X -q -v ON_ERROR_STOP=1 -f tests/fixtures/schema.sql
psql "$url" -X -q -v ON_ERROR_STOP=1 -v scale="$scale" -f tests/fixtures/generate.sql
psql "$url" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION hr_migrations SCHEMA extensions"
start=$(date +%s.%N)
psql "$url" -X -q -v ON_ERROR_STOP=1 -v batch_size="$batch" -f sql/migrations/001_reference_tokens.sql >"$dir/out" 2>&1
end=$(date +%s.%N)
grep -o 'backfill finished.*' "$dir/out"
grep -oE 'rows in [0-9.]+ ms' "$dir/out" | grep -oE '[0-9.]+' | sort -g \
    | awk '{a[NR]=$1} END {printf "batches: median %s ms, longest %s ms (each batch holds its row locks that long at most)\n", a[int((NR+1)/2)], a[NR]}'
printf 'reference_tokens: %s references, batch %s: 001_reference_tokens.sql took %.2f s in all\n' \
    "$scale" "$batch" "$(awk -v a="$start" -v b="$end" "BEGIN {print b - a}")"
