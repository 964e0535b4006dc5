#!/usr/bin/env bash
# make package: the extension built for PostgreSQL 15 (cargo pgrx package,
# plus the 0.1.0 and 0.2.0 install scripts for upgrades) as one tarball whose paths are
# the install paths, for another Debian 12 machine with postgresql-15:
#   sudo tar -C / -xzf hr_migrations-<version>-pg15-<arch>.tar.gz
# then, in each database: CREATE EXTENSION hr_migrations (or ALTER EXTENSION
# hr_migrations UPDATE). Prints the tarball's path.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(scripts/install-extension.sh --package)
version=$(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml)
tarball=$PWD/target/hr_migrations-$version-pg15-$(dpkg --print-architecture).tar.gz
tar -C "$root" --owner=0 --group=0 -czf "$tarball" usr
echo "$tarball"
tar -tzf "$tarball" | sed 's/^/  /'
