#!/usr/bin/env bash
# make supabase-migrations DIR=<project>: puts sql/migrations/*.sql into a
# Supabase project's supabase/migrations/ with the timestamped names the
# Supabase CLI orders by (<UTC timestamp>_hr_migrations_<file>), after
# every migration already there. A file whose identical copy is there
# already is skipped, so running it again adds only what changed (a new
# release's files run again: they are idempotent). The rollback files are
# not copied: a rollback is an explicit act (docs/runbook.md).
#   scripts/supabase-migrations.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-${DIR:-}}
if [ -z "$dir" ]; then
    echo "usage: make supabase-migrations DIR=<your Supabase project (the folder holding supabase/)>" >&2
    exit 2
fi
target=$dir/supabase/migrations
mkdir -p "$target"
# After the newest migration there, and never in the past.
last=$(find "$target" -maxdepth 1 -name '[0-9]*_*.sql' -printf '%f\n' | sed -E 's/^([0-9]+)_.*/\1/' | sort -n | tail -n 1)
now=$(date -u +%Y%m%d%H%M%S)
stamp=$now
if [ -n "$last" ] && [ "$last" -ge "$now" ]; then
    stamp=$((last + 1))
fi
added=0
for f in sql/migrations/*.sql; do
    name=hr_migrations_$(basename "$f")
    same=no
    for existing in "$target"/[0-9]*_"$name"; do
        [ -f "$existing" ] && cmp -s "$f" "$existing" && same=yes
    done
    if [ "$same" = yes ]; then
        echo "   $name: an identical copy is there already"
        continue
    fi
    cp "$f" "$target/${stamp}_$name"
    echo "   $target/${stamp}_$name"
    stamp=$((stamp + 1))
    added=$((added + 1))
done
echo "$added files added to $target; apply them with: supabase migration up (or supabase db push)"
