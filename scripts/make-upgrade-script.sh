#!/usr/bin/env bash
# Builds the upgrade script hr_migrations--0.2.0--0.3.0.sql from the install
# script pgrx generated for this release, between a hand-written prelude
# (0.2.0 functions dropped, those application objects use renamed aside)
# and epilogue (state copied into schema hr_migrations, the application's
# triggers and policies pointed at the new functions, the old ones dropped,
# fingerprints recorded): sql/upgrade/0.2.0--0.3.0.{prelude,epilogue}.sql.
# Built by scripts/install-extension.sh (make install, make package) into
# the package, never committed: the install script is generated, and a
# committed copy of it could only fall behind. Earlier upgrade scripts
# (sql/hr_migrations--0.1.0--0.2.0.sql) are as their release shipped them.
#   scripts/make-upgrade-script.sh INSTALL_SQL OUT
set -euo pipefail
cd "$(dirname "$0")/.."
install_sql=${1:?usage: scripts/make-upgrade-script.sh INSTALL_SQL OUT}
out=${2:?usage: scripts/make-upgrade-script.sh INSTALL_SQL OUT}
{
    cat sql/upgrade/0.2.0--0.3.0.prelude.sql
    cat "$install_sql"
    cat sql/upgrade/0.2.0--0.3.0.epilogue.sql
} >"$out.tmp"
mv "$out.tmp" "$out"
