# hr_migrations — run `make help` for the list of targets.
# Every target that needs them installs its own dependencies (scripts/ensure-deps.sh)
# and starts its own throwaway PostgreSQL on 127.0.0.1 as the `postgres` OS user.

SHELL       := /bin/bash
PG_CONFIG   ?= /usr/lib/postgresql/15/bin/pg_config
SCALE       ?= 10000
BENCH_SCALE ?= 1
FUZZ_SECONDS ?= 60
DATABASE_URL ?=
DIR         ?=
KEYRING     ?=
ACTIVE_KEY_VERSION ?=

.DEFAULT_GOAL := help

.PHONY: help # list the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ # ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) # (.*)/  make \1\t\2/' | expand -t 22

.PHONY: deps # install apt packages, cargo-pgrx 0.18.1 and run `cargo pgrx init` when missing
deps:
	@scripts/ensure-deps.sh

.PHONY: build # compile the extension (release)
build: deps
	cargo build --release

.PHONY: install # build and install the extension (release) into the system PostgreSQL 15
install: deps
	@scripts/install-extension.sh

.PHONY: check # the quick tier: unit, #[pg_test], pg_regress and isolation specs (a few minutes); "N passed, N failed"
check: deps
	@scripts/test-all.sh unit regress isolation

.PHONY: test # every test layer (unit, pg_test, pg_regress, isolation, integration, lint, bench smoke); ends with "N passed, N failed"
test: deps
	@scripts/test-all.sh

.PHONY: fuzz # libFuzzer on the five parsers, FUZZ_SECONDS (default 60) each (cargo-fuzz, no sanitizer)
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: installcheck # pg_regress scenarios against a throwaway cluster with the installed extension
installcheck: install
	@scripts/test-all.sh regress

.PHONY: demo # throwaway cluster under .demo/, sample data, all migrations through their phases, status
demo: install
	@scripts/demo.sh $(SCALE)

.PHONY: bench # the benchmark table against pgcrypto, plain SQL and the plan's script (BENCH_SCALE=1, about 15 min)
bench: install
	@benches/bench.sh $(BENCH_SCALE)

.PHONY: package # a tarball of the extension for another Debian PostgreSQL 15 machine (target/*.tar.gz)
package: deps
	@scripts/package.sh

.PHONY: migrate # apply sql/migrations/ to DATABASE_URL as its admin; [ACTIVE_KEY_VERSION=n] for the database, [KEYRING=<server path>] as a superuser
migrate:
	@scripts/migrate.sh "$(DATABASE_URL)" "$(KEYRING)" "$(ACTIVE_KEY_VERSION)"

.PHONY: supabase-migrations # copy sql/migrations/ into DIR's supabase/migrations/ with timestamped names (Supabase CLI)
supabase-migrations:
	@scripts/supabase-migrations.sh "$(DIR)"

.PHONY: lint # rustfmt, clippy (warnings are errors), squawk on the plans and files, pgrls on a migrated demo database
lint: deps
	@scripts/lint.sh

.PHONY: clean # remove build output, the demo cluster and test leftovers
clean:
	-scripts/pg-cluster.sh stop .demo 2>/dev/null
	rm -rf target .demo tests/regress/results
