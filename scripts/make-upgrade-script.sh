#!/usr/bin/env bash
# Writes sql/hr_migrations--0.2.0--0.3.0.sql: the prelude (0.2.0 functions
# dropped, those application objects use renamed aside), the 0.3.0 install
# script as pgrx generates it, and the epilogue (state copied into schema
# hr_migrations, the application's triggers and policies pointed at the new
# functions, the old ones dropped, fingerprints recorded). Run it after
# changing the extension's SQL. Earlier upgrade scripts
# (sql/hr_migrations--0.1.0--0.2.0.sql) are as their release shipped them.
#   scripts/make-upgrade-script.sh          write it
#   scripts/make-upgrade-script.sh --check  fail if the committed file is stale
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
out=sql/hr_migrations--0.2.0--0.3.0.sql
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo pgrx schema pg15 --pg-config "$PG_CONFIG" --out "$tmp/install.sql" >/dev/null 2>&1 \
    || cargo pgrx schema pg15 --out "$tmp/install.sql" >/dev/null
{
    cat sql/upgrade/0.2.0--0.3.0.prelude.sql
    cat "$tmp/install.sql"
    cat sql/upgrade/0.2.0--0.3.0.epilogue.sql
} >"$tmp/upgrade.sql"
# pgrx orders the install script's blocks by a dependency graph whose
# order of independent blocks varies from run to run: compare the blocks
# as a sorted set.
blocks() {
    python3 -c 'import sys,re
s=open(sys.argv[1]).read()
parts=re.split(r"(?=/\* <begin connected objects> \*/)", s)
print("\n".join(sorted(parts)))' "$1"
}
if [ "${1:-}" = --check ]; then
    if ! cmp -s <(blocks "$tmp/upgrade.sql") <(blocks "$out"); then
        echo "$out is stale: run scripts/make-upgrade-script.sh" >&2
        diff -u <(blocks "$out") <(blocks "$tmp/upgrade.sql") | head -40 >&2
        exit 1
    fi
    echo "$out is up to date"
else
    mv "$tmp/upgrade.sql" "$out"
    echo "wrote $out"
fi
