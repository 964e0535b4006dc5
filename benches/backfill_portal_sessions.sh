#!/usr/bin/env bash
# Backfill of hr_candidate_portal_sessions.organization_id: our committed,
# resumable batches (002_portal_sessions.sql) against the plan's single
# `UPDATE ... FROM hr_candidates`, on the same data in one cluster.
# Prints rows/s of each and the longest time one of our batches held its
# row locks (a batch's duration up to its COMMIT bounds it; the single
# UPDATE holds every row lock for its whole run).
#   benches/backfill_portal_sessions.sh [SCALE=1000000] [BATCH_SIZE=5000]
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-1000000}
batch=${2:-5000}
dir=$(mktemp -d /tmp/hrm-bench.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir/c" >/dev/null 2>&1; rm -rf "$dir"' EXIT
port=$(scripts/pg-cluster.sh start "$dir/c" shared_buffers=1GB max_wal_size=4GB)
url="host=127.0.0.1 port=$port user=postgres dbname=bench"
run() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql "host=127.0.0.1 port=$port user=postgres dbname=postgres" -X -q -c "CREATE DATABASE bench"
echo "generating fixture at scale $scale ..."
run -f tests/fixtures/schema.sql
run -v scale="$scale" -f tests/fixtures/generate.sql
run -c "CREATE EXTENSION hr_migrations SCHEMA extensions"

# Baseline: the plan's statement on an identical copy (no triggers on it).
run -c "CREATE TABLE public.sessions_baseline AS SELECT * FROM public.hr_candidate_portal_sessions" \
    -c "ALTER TABLE public.sessions_baseline ADD PRIMARY KEY (id), ADD COLUMN organization_id uuid" \
    -c "VACUUM ANALYZE public.sessions_baseline"
base=$(run -At -c "\\timing on" -c "UPDATE public.sessions_baseline s SET organization_id = c.organization_id
                                       FROM public.hr_candidates c
                                      WHERE s.candidate_id = c.id AND s.organization_id IS NULL" | grep -oE 'Time: [0-9.]+' | grep -oE '[0-9.]+')
base_rows=$(run -At -c "SELECT count(*) FROM public.sessions_baseline WHERE organization_id IS NOT NULL")

# Let the baseline's leftovers (1M dead rows, dirty buffers) not land in our run.
run -c "VACUUM ANALYZE public.sessions_baseline" -c "CHECKPOINT"
run -v batch_size="$batch" -f sql/migrations/002_portal_sessions.sql >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
fin=$(grep -oE 'backfill finished: [0-9]+ rows in [0-9]+ batches, [0-9.]+ s' "$dir/out")
rows=$(echo "$fin" | grep -oE 'finished: [0-9]+' | grep -oE '[0-9]+')
secs=$(echo "$fin" | grep -oE '[0-9.]+ s$' | grep -oE '[0-9.]+')
maxms=$(grep -oE 'rows in [0-9.]+ ms' "$dir/out" | grep -oE '[0-9.]+' | sort -g | tail -n 1)
medms=$(grep -oE 'rows in [0-9.]+ ms' "$dir/out" | grep -oE '[0-9.]+' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
grep -E "rows in ${maxms} ms" "$dir/out" | sed 's/^.*NOTICE:  /longest: /' || true
awk -v br="$base_rows" -v bms="$base" -v r="$rows" -v s="$secs" -v m="$maxms" -v b="$batch" -v n="$scale" -v med="$medms" 'BEGIN {
    printf "%-44s %10s %10s %12s %18s\n", "portal_sessions backfill (" n " sessions)", "rows", "seconds", "rows/s", "longest row lock";
    printf "%-44s %10d %10.2f %12.0f %15.0f ms\n", "plan: one UPDATE ... FROM hr_candidates", br, bms / 1000, br / (bms / 1000), bms;
    printf "%-44s %10d %10.2f %12.0f %15.1f ms\n", "hr_run_backfill, batch " b, r, s, r / s, m;
    printf "ratio (ours / plan, rows/s): %.2f; median batch %s ms\n", (r / s) / (br / (bms / 1000)), med;
}'
