#!/usr/bin/env bash
# Installs what building and testing hr_migrations needs, skipping what is
# already there: Debian packages (as root), cargo-pgrx 0.18.1, `cargo pgrx
# init` against the system PostgreSQL 15, the SQL linters (squawk-cli and
# pgrls from PyPI, pinned) in a virtual environment under .venv/, the
# npm packages of examples/edge-function (pinned by its package-lock.json)
# and the Supabase CLI (pinned) under .tools/supabase/.
# Safe to run again.
#   scripts/ensure-deps.sh          everything
#   scripts/ensure-deps.sh lint     only what scripts/lint.sh sql needs
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGRX_VERSION=0.18.1
SQUAWK_VERSION=2.70.0
PGRLS_VERSION=0.57.1
VENV=$ROOT/.venv
PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-cron libclang-dev clang sudo pgbouncer python3-cryptography python3-venv)
[ "${1:-}" = lint ] && PACKAGES=(postgresql-15 python3-venv)
# Node.js runs the edge-function example (examples/edge-function); a machine
# may already have its own (nvm, NodeSource): only install it when missing.
if [ "${1:-}" != lint ] && ! command -v node >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "ensure-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "ensure-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$VENV/bin/squawk" --version 2>/dev/null | grep -qx "squawk ${SQUAWK_VERSION}" \
   || ! "$VENV/bin/pgrls" --version 2>/dev/null | grep -qx "pgrls, version ${PGRLS_VERSION}"; then
    echo "ensure-deps: installing squawk-cli ${SQUAWK_VERSION} and pgrls ${PGRLS_VERSION} into ${VENV}"
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "squawk-cli==${SQUAWK_VERSION}" "pgrls==${PGRLS_VERSION}"
fi
[ "${1:-}" = lint ] && exit 0

if [ ! -d "$ROOT/examples/edge-function/node_modules/pg" ]; then
    echo "ensure-deps: npm ci in examples/edge-function"
    npm ci --prefix "$ROOT/examples/edge-function" --no-audit --no-fund --loglevel=error >/dev/null
fi

# The Supabase CLI, pinned: the tests apply the migration files with it as
# a Supabase project does (newer releases may not install here).
SUPABASE_CLI_VERSION=2.117.0
if ! "$ROOT/.tools/supabase/node_modules/.bin/supabase" --version 2>/dev/null | grep -qx "$SUPABASE_CLI_VERSION"; then
    echo "ensure-deps: npm install supabase@${SUPABASE_CLI_VERSION} into .tools/supabase"
    mkdir -p "$ROOT/.tools/supabase"
    npm install --prefix "$ROOT/.tools/supabase" -E "supabase@${SUPABASE_CLI_VERSION}" \
        --no-audit --no-fund --loglevel=error >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
    echo "ensure-deps: installing cargo-pgrx ${PGRX_VERSION} (takes about 7 minutes)"
    cargo install --locked cargo-pgrx --version "${PGRX_VERSION}"
fi

config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qs "pg15 = \"${PG_CONFIG}\"" "$config"; then
    echo "ensure-deps: cargo pgrx init --pg15 ${PG_CONFIG}"
    cargo pgrx init --pg15 "${PG_CONFIG}" >/dev/null
fi
