#!/usr/bin/env bash
# Installs what building and testing hr_migrations needs, skipping what is
# already there: Debian packages (as root), cargo-pgrx 0.18.1, `cargo pgrx
# init` against the system PostgreSQL 15. Safe to run again.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGRX_VERSION=0.18.1
PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo pgbouncer python3-cryptography)

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

if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
    echo "ensure-deps: installing cargo-pgrx ${PGRX_VERSION} (takes about 7 minutes)"
    cargo install --locked cargo-pgrx --version "${PGRX_VERSION}"
fi

config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qs "pg15 = \"${PG_CONFIG}\"" "$config"; then
    echo "ensure-deps: cargo pgrx init --pg15 ${PG_CONFIG}"
    cargo pgrx init --pg15 "${PG_CONFIG}" >/dev/null
fi
