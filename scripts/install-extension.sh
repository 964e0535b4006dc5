#!/usr/bin/env bash
# Builds the release package of the extension (cargo pgrx package) and
# installs it into the system PostgreSQL 15, with the install scripts of
# earlier releases that pgrx does not ship (sql/hr_migrations--0.1.0.sql and
# --0.2.0.sql, as those releases generated them: the upgrade tests install
# them, then update) and the upgrade script from 0.2.0, built from this
# release's install script (scripts/make-upgrade-script.sh).
# Files are replaced, never rewritten in place: a running server that has
# the old library mapped keeps working until its backends restart.
#   scripts/install-extension.sh            build and install (needs root or sudo)
#   scripts/install-extension.sh --package  build only; print the package directory
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null 2>&1 || cargo pgrx package --pg-config "$PG_CONFIG"
root=target/release/hr_migrations-pg15
extdir=$("$PG_CONFIG" --sharedir)/extension
mkdir -p "$root$extdir"
cp sql/hr_migrations--0.1.0.sql sql/hr_migrations--0.2.0.sql "$root$extdir/"
# The upgrade from 0.2.0, built around this release's generated install script.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
scripts/make-upgrade-script.sh "$root$extdir/hr_migrations--$version.sql" "$root$extdir/hr_migrations--0.2.0--$version.sql"
if [ "${1:-}" = --package ]; then
    echo "$root"
    exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
(cd "$root" && find . -type f) | while read -r f; do
    dest=/${f#./}
    "${sudo[@]}" mkdir -p "$(dirname "$dest")"
    "${sudo[@]}" cp --remove-destination "$root/$f" "$dest"
done
