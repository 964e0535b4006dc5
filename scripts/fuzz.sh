#!/usr/bin/env bash
# Fuzzes the pure parsers with libFuzzer (cargo-fuzz), each target for a
# bounded time, and prints what each run covered.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   default: 60 s for each of
#                                           token_hash envelope keyring claims secret
#
# The toolchain here is stable rustc, so the targets are built without a
# sanitizer (-s none: a panic or failed assertion is what we look for; the
# parsers are safe Rust) and with RUSTC_BOOTSTRAP=1, which lets stable rustc
# take the one unstable flag cargo-fuzz passes. Crashes land in
# fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/
# (both ignored by git). `make test` runs the property tests of the same
# parsers; this is the longer search.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token_hash envelope keyring claims secret)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz --version 0.12.0
fi
export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
    echo "== $t: ${secs} s"
    mkdir -p "fuzz/corpus/$t"
    if ! (cd fuzz && cargo fuzz run "$t" -s none --release -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
            | grep -E 'stat::number_of_executed_units|stat::new_units_added|cov: |Done|ERROR|panicked|SUMMARY' | tail -n 6); then
        status=1
    fi
    if ls "fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "!! $t: crashes in fuzz/artifacts/$t" >&2
        status=1
    fi
done
exit $status
