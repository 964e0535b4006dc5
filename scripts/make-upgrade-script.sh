#!/usr/bin/env bash
# Writes sql/hr_migrations--0.1.0--0.2.0.sql: the prelude (0.1.0 state
# steps aside, 0.1.0 functions dropped), the 0.2.0 install script as pgrx
# generates it (with the one function policies depend on replaced in
# place), and the epilogue (state copied back, application objects of
# applied migrations refreshed). Run it after changing the extension's SQL.
#   scripts/make-upgrade-script.sh          write it
#   scripts/make-upgrade-script.sh --check  fail if the committed file is stale
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
out=sql/hr_migrations--0.1.0--0.2.0.sql
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo pgrx schema pg15 --pg-config "$PG_CONFIG" --out "$tmp/install.sql" >/dev/null 2>&1 \
    || cargo pgrx schema pg15 --out "$tmp/install.sql" >/dev/null
for f in hr_jwt_organization_id hr_references_token_trigger; do
    grep -qE "^CREATE +FUNCTION \"$f\"" "$tmp/install.sql" \
        || { echo "make-upgrade-script: the install script no longer creates $f as expected" >&2; exit 1; }
done
{
    cat sql/upgrade/0.1.0--0.2.0.prelude.sql
    # RLS policies reference hr_jwt_organization_id() and the application's
    # trigger references hr_references_token_trigger(): replace them in place.
    sed -E 's/^CREATE +FUNCTION "(hr_jwt_organization_id|hr_references_token_trigger)"/CREATE OR REPLACE FUNCTION "\1"/' "$tmp/install.sql"
    cat sql/upgrade/0.1.0--0.2.0.epilogue.sql
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
