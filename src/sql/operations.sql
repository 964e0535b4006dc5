-- The operations layer shared by every migration (docs/design.md): the
-- extension's own schema, the definer role, the migration registry, the
-- batch engine, phases, status and the procedures a DBA CALLs.
--
-- Everything lives in schema hr_migrations, which this script creates: the
-- installing superuser owns it, and no other role may create, rename or
-- replace anything in it. The schema the extension is created in
-- (@extschema@; `extensions` on Supabase, which postgres owns) holds only
-- the API's wrappers (src/sql/privileges.sql). Every function pins
-- search_path to pg_catalog, pg_temp; every body names extension objects
-- as hr_migrations.x and application tables by the names the registry
-- holds, quoted with format('%I'), and never names @extschema@.
--
-- Who runs what (docs/security.md has the full table):
--   * SECURITY DEFINER functions are owned by hr_migrations_definer, a
--     NOLOGIN role that is not a superuser (src/sql/privileges.sql makes it
--     their owner). It has BYPASSRLS and exactly the table privileges the
--     migration scripts grant it.
--   * DDL (phase changes, contract) and the procedures run as the DBA who
--     calls them; nobody else may execute them.
--   * Tables the definer writes are closed to planted code: app roles lose
--     TRIGGER, TRUNCATE and REFERENCES on them (the migration scripts), and
--     every write refuses to run while code a non-superuser owns is
--     attached to a table it writes (hr_planted_code).

-- Statements of this script outside function bodies run with search_path
-- = @extschema@: they qualify every function and operator, or pass
-- arguments of exactly the parameter types.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'hr_migrations') THEN
        RAISE EXCEPTION 'schema hr_migrations exists already'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'hr_migrations keeps its tables and functions in a schema of that name that the installing superuser creates and owns; one made before could hold look-alikes',
                  HINT = 'inspect and drop that schema, or install the extension into another schema (CREATE EXTENSION hr_migrations SCHEMA extensions)';
    END IF;
END
$$;
CREATE SCHEMA hr_migrations;
COMMENT ON SCHEMA hr_migrations IS
    'hr_migrations: the extension''s tables and functions; owned by the installing superuser (the API''s wrappers are in the extension''s schema)';

-- -----------------------------------------------------------------------------
-- The definer role. Roles are cluster-wide: a second database reuses it. A
-- role of that name that can log in, is a superuser, or has members was not
-- made by us (someone could SET ROLE to it): refuse to install.
DO $$
DECLARE
    r record;
BEGIN
    SELECT rolsuper, rolcanlogin, rolbypassrls,
           EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.roleid OPERATOR(pg_catalog.=) a.oid) AS has_members
      INTO r
      FROM pg_catalog.pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) 'hr_migrations_definer'::pg_catalog.name;
    IF NOT FOUND THEN
        CREATE ROLE hr_migrations_definer NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS;
    ELSIF r.rolsuper OR r.rolcanlogin OR r.has_members OR NOT r.rolbypassrls THEN
        RAISE EXCEPTION 'role hr_migrations_definer exists but is not the role hr_migrations creates'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'it must be NOLOGIN, NOSUPERUSER, BYPASSRLS and have no members',
                  HINT = 'drop or fix that role (docs/security.md), then CREATE EXTENSION again';
    END IF;
END
$$;
COMMENT ON ROLE hr_migrations_definer IS
    'hr_migrations: owner of the extension''s SECURITY DEFINER functions; NOLOGIN, never a superuser';

-- The admin role (docs/security.md): the platform superuser grants it to
-- the database's admin once (GRANT hr_migrations_admin TO postgres); its
-- members run every DBA operation with no superuser (src/sql/privileges.sql
-- grants it: docs/security.md, "The allowlist"). A CREATEROLE role can
-- grant it to itself or to others on PG15: it gives nothing such a role
-- does not already reach (the tables it owns, the settings it may SET).
-- Roles are cluster-wide: a second database reuses it. One that can log in
-- or is a superuser was not made by us: refuse.
DO $$
DECLARE
    r record;
BEGIN
    SELECT a.rolsuper, a.rolcanlogin INTO r
      FROM pg_catalog.pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) 'hr_migrations_admin'::pg_catalog.name;
    IF NOT FOUND THEN
        CREATE ROLE hr_migrations_admin NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    ELSIF r.rolsuper OR r.rolcanlogin THEN
        RAISE EXCEPTION 'role hr_migrations_admin exists but is not the role hr_migrations creates'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'it must be NOLOGIN and NOSUPERUSER; its members get the DBA''s operations of the extension',
                  HINT = 'drop or fix that role (docs/security.md), then CREATE EXTENSION again';
    END IF;
END
$$;
COMMENT ON ROLE hr_migrations_admin IS
    'hr_migrations: the DBA''s operations (GRANT hr_migrations_admin TO <the database''s admin>); NOLOGIN';

-- A GRANT run by CREATE or ALTER EXTENSION is recorded as the object's
-- "initial privileges" (pg_init_privs), even for an object the extension
-- does not own; pg_dump then leaves every grant that object had out of the
-- dump (the schema restores without the application roles' USAGE). For
-- objects that belong to no extension, forget that record: their ACL stays
-- what it is, and pg_dump dumps it in full. Outside CREATE and ALTER
-- EXTENSION (a migration file run by the admin role) no GRANT is recorded
-- there, and pg_init_privs is the superuser's: nothing to do.
CREATE FUNCTION hr_migrations.hr_forget_init_privs(class_id regclass, object_id oid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT hr_migrations.hr_creating_extension() THEN
        RETURN;
    END IF;
    DELETE FROM pg_catalog.pg_init_privs ip
     WHERE ip.classoid = class_id AND ip.objoid = object_id AND ip.privtype = 'e'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = class_id AND d.objid = object_id AND d.deptype = 'e');
END
$$;

-- The definer role calls the extension's functions by schema.
GRANT USAGE ON SCHEMA hr_migrations TO hr_migrations_definer;

-- -----------------------------------------------------------------------------
-- The registry: the one place that says, for each migration, its key, order,
-- kind, table, default batch size and the names of the objects its plan
-- creates. Plans, checks, status, rollbacks and tests read it. A kind is a
-- shape of migration with its plan (src/kinds/<kind>/) and its own
-- functions (hr_<kind>_spec, _state, _enter, _finish, _note); the column
-- names a kind works on are fixed by the kind (docs/sql-reference.md,
-- "Registry"). Its file is sql/migrations/<position as 3 digits>_<migration>.sql
-- (hr_migration_file() renders it), its rollback the same name under
-- sql/rollback/.
CREATE TABLE hr_migrations.hr_migration_registry (
    migration          text PRIMARY KEY CHECK (migration ~ '^[a-z][a-z0-9_]{0,40}$'),
    position           integer NOT NULL UNIQUE CHECK (position BETWEEN 1 AND 999),
    kind               text NOT NULL CHECK (kind IN ('token_hash', 'tenant_column', 'credential_move')),
    table_schema       text NOT NULL DEFAULT 'public',
    table_name         text NOT NULL,
    default_batch_size integer NOT NULL CHECK (default_batch_size BETWEEN 1 AND 1000000),
    objects            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(objects) = 'object'),
    builtin            boolean NOT NULL DEFAULT false,
    UNIQUE (table_schema, table_name)
);
COMMENT ON TABLE hr_migrations.hr_migration_registry IS
    'hr_migrations: every migration, its kind, table, batch size and the names of the objects its script creates';

-- The built-in migrations (src/kinds/builtin.rs) are registered by
-- src/sql/apply.sql, once the Rust functions exist; every row written is
-- checked against its kind there (hr_check_registry_entry).

-- Where each migration stands. A missing row means 'not_applied'.
CREATE TABLE hr_migrations.hr_migration_phases (
    migration  text PRIMARY KEY REFERENCES hr_migrations.hr_migration_registry (migration) ON DELETE CASCADE,
    phase      text NOT NULL
               CHECK (phase IN ('not_applied', 'dual', 'migrated', 'enforced', 'contracted')),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT session_user
);
COMMENT ON TABLE hr_migrations.hr_migration_phases IS
    'hr_migrations: current phase of each migration; change it only with hr_set_phase()';

-- The batch engine's state, one row per (migration, operation): the
-- cursor, a key or a tuple id (committed with every batch, so a killed
-- run resumes where it stopped), counters, the current batch size and the
-- last error.
CREATE TABLE hr_migrations.hr_batch_progress (
    migration      text NOT NULL REFERENCES hr_migrations.hr_migration_registry (migration) ON DELETE CASCADE,
    operation      text NOT NULL CHECK (operation IN ('backfill', 'clear', 'erase', 'rollback', 'rewrap', 'purge')),
    last_id        uuid,
    batches        bigint NOT NULL DEFAULT 0,
    rows_done      bigint NOT NULL DEFAULT 0,
    rows_failed    bigint NOT NULL DEFAULT 0,
    batch_size     integer,
    last_batch_ms  double precision,
    rows_expected  bigint,
    running_pid    integer,
    started_at     timestamptz,
    updated_at     timestamptz,
    finished_at    timestamptz,
    last_error     text,
    last_tid       tid,
    PRIMARY KEY (migration, operation)
);
COMMENT ON TABLE hr_migrations.hr_batch_progress IS
    'hr_migrations: cursor and counters of each batch operation (last_id, or last_tid for operations that walk the heap in physical order; NULL = start of table)';

-- Rows a batch operation could not process: recorded by id with the
-- SQLSTATE and a reason that never quotes row data, skipped by later
-- batches, counted as blocked by hr_migration_status(). Fix the row, then
-- SELECT hr_retry_failures(migration) and run the operation again.
CREATE TABLE hr_migrations.hr_batch_failures (
    migration  text NOT NULL REFERENCES hr_migrations.hr_migration_registry (migration) ON DELETE CASCADE,
    operation  text NOT NULL,
    row_id     uuid NOT NULL,
    sqlstate   text NOT NULL,
    reason     text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, operation, row_id)
);
COMMENT ON TABLE hr_migrations.hr_batch_failures IS
    'hr_migrations: rows a batch operation skipped, by id, with SQLSTATE and reason (never a value)';

-- pg_dump keeps these rows (the extension's own rows are re-created by
-- CREATE EXTENSION; registered migrations are not).
SELECT pg_catalog.pg_extension_config_dump('hr_migrations.hr_migration_registry', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('hr_migrations.hr_migration_phases', '');
SELECT pg_catalog.pg_extension_config_dump('hr_migrations.hr_batch_progress', '');
SELECT pg_catalog.pg_extension_config_dump('hr_migrations.hr_batch_failures', '');

-- -----------------------------------------------------------------------------
-- Registry lookups.

-- The migration keys, in order.
CREATE FUNCTION hr_migrations.hr_migration_keys() RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT r.migration FROM hr_migrations.hr_migration_registry r ORDER BY r.position $$;

-- The registry row of a migration; 22023 for a key that is not registered,
-- so a typo never reads as 'not_applied'.
CREATE FUNCTION hr_migrations.hr_migration_entry(migration text) RETURNS hr_migrations.hr_migration_registry
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r hr_migrations.hr_migration_registry;
BEGIN
    SELECT * INTO r FROM hr_migrations.hr_migration_registry m WHERE m.migration = hr_migration_entry.migration;
    IF NOT FOUND THEN
        -- The name given is not repeated: an error never quotes its input.
        RAISE EXCEPTION 'unknown migration: not in hr_migration_registry'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT migration FROM hr_migrations.hr_migration_status() lists them';
    END IF;
    RETURN r;
END
$$;

-- The migration's table, or NULL while it does not exist.
-- The relation itself when it is a plain (or partitioned) table, NULL for
-- NULL; 42809 for a view or any other kind of relation. A view put in a
-- table's place (on Supabase, postgres owns every application table and may
-- rename one and create a view of that name) would run its functions as
-- whoever reads it: the definer role, or the superuser running a script.
CREATE FUNCTION hr_migrations.hr_plain_table(rel regclass) RETURNS regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF rel IS NOT NULL AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table (a view or another kind of relation): refusing to read or write it', rel
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'the migrations work on plain tables only; a view in a table''s place would run its code as the reader (docs/security.md)';
    END IF;
    RETURN rel;
END
$$;

CREATE FUNCTION hr_migrations.hr_migration_table(migration text) RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- NULL when the table does not exist; 22023 (hr_migration_entry) when
    -- the migration is not registered, so no caller builds SQL from NULL.
    SELECT hr_migrations.hr_plain_table(to_regclass(format('%I.%I', e.table_schema, e.table_name)))
      FROM hr_migrations.hr_migration_entry(migration) e
$$;

-- One object name from the registry entry (NULL when the kind has none).
CREATE FUNCTION hr_migrations.hr_migration_object(migration text, object text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.objects ->> object FROM hr_migrations.hr_migration_registry r
     WHERE r.migration = hr_migration_object.migration
$$;

-- The script that applies a migration, relative to sql/migrations/ (or sql/rollback/).
CREATE FUNCTION hr_migrations.hr_migration_script(migration text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%s_%s.sql', lpad(r.position::text, 3, '0'), r.migration)
      FROM hr_migrations.hr_migration_registry r WHERE r.migration = hr_migration_script.migration
$$;

-- The current phase ('not_applied' when it has no row); 22023 for an unknown key.
CREATE FUNCTION hr_migrations.hr_migration_phase(migration text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text;
BEGIN
    PERFORM hr_migrations.hr_migration_entry(migration);
    SELECT m.phase INTO p FROM hr_migrations.hr_migration_phases m WHERE m.migration = hr_migration_phase.migration;
    RETURN coalesce(p, 'not_applied');
END
$$;

-- Raises 55000 unless the migration's DDL has been applied; returns the phase.
CREATE FUNCTION hr_migrations.hr_require_applied(migration text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text := hr_migrations.hr_migration_phase(migration);
BEGIN
    IF p = 'not_applied' THEN
        RAISE EXCEPTION 'migration % is not applied', migration
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('apply sql/migrations/%s first (docs/runbook.md)', hr_migrations.hr_migration_script(migration));
    END IF;
    RETURN p;
END
$$;

-- Catalog facts the kinds ask about their tables (false for a NULL table).
CREATE FUNCTION hr_migrations.hr_column_exists(tbl regclass, col text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped)
$$;

CREATE FUNCTION hr_migrations.hr_column_not_null(tbl regclass, col text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = tbl AND a.attname = col AND a.attnotnull AND NOT a.attisdropped)
$$;

CREATE FUNCTION hr_migrations.hr_trigger_exists(tbl regclass, trigger_name text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = tbl AND t.tgname = trigger_name AND NOT t.tgisinternal)
$$;

-- When an enforced migration may be contracted (for its status note).
CREATE FUNCTION hr_migrations.hr_contract_eta(migration text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    since timestamptz;
    period interval;
BEGIN
    SELECT m.changed_at INTO since FROM hr_migrations.hr_migration_phases m
     WHERE m.migration = hr_contract_eta.migration AND m.phase = 'enforced';
    IF since IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM hr_migrations.hr_backfill_in_progress();  -- loads the library, which defines the setting
    period := coalesce(current_setting('hr_migrations.deprecation_period', true), '30 days')::interval;
    IF since + period <= now() THEN
        RETURN format('contracted is possible now: SELECT hr_migrations.hr_set_phase(%L, ''contracted'')', migration);
    END IF;
    RETURN format('contracted is possible from %s (hr_migrations.deprecation_period = %s)',
                  to_char(since + period, 'YYYY-MM-DD HH24:MI:SS TZ'), period);
END
$$;

-- A millisecond setting of the extension as a number (current_setting
-- would give '100ms'); the default when the library is not loaded yet.
CREATE FUNCTION hr_migrations.hr_setting_ms(name text, fallback double precision) RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v double precision;
BEGIN
    PERFORM hr_migrations.hr_backfill_in_progress();  -- loads the library, which defines the settings
    SELECT s.setting::double precision INTO v FROM pg_catalog.pg_settings s WHERE s.name = hr_setting_ms.name;
    RETURN coalesce(v, fallback);
END
$$;

-- Calls a kind's function hr_<kind>_<what>(migration, ...): dispatch by the
-- registry's kind, so adding a migration of an existing kind adds no code.
CREATE FUNCTION hr_migrations.hr_kind_function(migration text, what text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- hr_migration_entry raises 22023 for a migration that is not registered.
    SELECT format('%s.%I', 'hr_migrations', 'hr_' || (hr_migrations.hr_migration_entry(migration)).kind || '_' || what)
$$;

-- What the batch engine needs to know about one operation of a migration,
-- from its kind (hr_<kind>_spec): the table it walks, the predicate of the
-- rows it still has to do ("pending", read by both the batch selection and
-- the status count), the predicate of rows it cannot do ("blocked"), the
-- predicate of rows that are done ("migrated", for status), the function
-- that acts on one batch of ids, every table that function writes, and
-- optionally a function that does the pending rows of a range of tuple
-- ids in one statement (range_action: the engine then walks the table in
-- physical order, see hr_engine_batch) with a predicate that reads only
-- the row and holds for every pending and every blocked row (range_pending:
-- a walk's batch is batch_size rows that match it; no row matching it
-- means nothing pending or blocked, hr_operation_counts).
-- Predicates are SQL over the alias t; NULL table = not an operation of this kind.
CREATE FUNCTION hr_migrations.hr_operation_spec(migration text, operation text,
    OUT tbl regclass, OUT pending text, OUT blocked text, OUT migrated text,
    OUT action text, OUT writes regclass[], OUT range_action text, OUT range_pending text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('SELECT * FROM %s($1, $2)', hr_migrations.hr_kind_function(migration, 'spec'))
       INTO tbl, pending, blocked, migrated, action, writes, range_action, range_pending
      USING migration, operation;
    IF tbl IS NULL THEN
        RAISE EXCEPTION '% has no such operation (or its table does not exist)', migration
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the batch operations are backfill, clear, erase, rollback, rewrap and purge, as its kind defines them';
    END IF;
END
$$;

-- The operation whose batches are the pending work of a phase, or NULL.
CREATE FUNCTION hr_migrations.hr_phase_operation(migration text, phase text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op text;
BEGIN
    EXECUTE format('SELECT %s($1, $2)', hr_migrations.hr_kind_function(migration, 'phase_operation'))
       INTO op USING migration, phase;
    RETURN op;
END
$$;

-- -----------------------------------------------------------------------------
-- Lock-safe DDL for the migration scripts.

-- A DDL template of a migration with its names filled in from the registry:
--   {table}            the migration's table, schema-qualified and quoted
--   {table_schema}     its schema, quoted
--   {ext}              the extension's schema, quoted
--   {credentials_table}, {log_table}   schema-qualified names of those objects
--   {<key>}            any other object name of the registry entry, quoted
-- so the scripts read as the DDL they run, and a renamed object is a
-- registry change only. 22023 for a placeholder the entry does not define.
CREATE FUNCTION hr_migrations.hr_render(migration text, template text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e hr_migrations.hr_migration_registry;
    out text;
    rest text;
    pos integer;
    k text;
    v text;
BEGIN
    IF template IS NULL THEN
        RETURN NULL;
    END IF;
    e := hr_migrations.hr_migration_entry(migration);
    -- One pass over the template: a value put in is never searched again
    -- (a name holding "{key}" must not be filled in inside its own quotes;
    -- the registry refuses such names too).
    out := '';
    rest := template;
    LOOP
        pos := strpos(rest, '{');
        EXIT WHEN pos = 0;
        out := out || left(rest, pos - 1);
        rest := substr(rest, pos);
        k := substring(rest FROM '^[{]([a-z_]+)[}]');
        IF k IS NULL THEN
            out := out || '{';
            rest := substr(rest, 2);
            CONTINUE;
        END IF;
        v := CASE k
            WHEN 'table' THEN format('%I.%I', e.table_schema, e.table_name)
            WHEN 'table_schema' THEN quote_ident(e.table_schema)
            WHEN 'ext' THEN 'hr_migrations'
            WHEN 'credentials_table' THEN format('%I.%I', e.table_schema, e.objects ->> k)
            WHEN 'log_table' THEN format('%I.%I', e.table_schema, e.objects ->> k)
            ELSE quote_ident(CASE WHEN jsonb_typeof(e.objects -> k) = 'string' THEN e.objects ->> k END)
            END;
        IF v IS NULL THEN
            RAISE EXCEPTION 'DDL template of % names {%}, which its registry entry does not define', migration, k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        out := out || v;
        rest := substr(rest, length(k) + 3);
    END LOOP;
    RETURN out || rest;
END
$$;

-- Runs one step of a migration's DDL (one or more statements, one
-- transaction) without ever queueing application traffic for long: each
-- attempt waits at most hr_migrations.ddl_lock_timeout for its locks; when
-- a lock is not available it says so, sleeps with exponential backoff and
-- equal jitter (half the pause fixed, half random), and tries again, for at
-- most hr_migrations.ddl_retry_budget. A writer therefore waits behind the
-- DDL for one attempt at most. With wait, one attempt that waits as long
-- as it takes: only for SHARE UPDATE EXCLUSIVE (VALIDATE, ANALYZE), which
-- blocks no reads or writes. quiet hides the NOTICEs of IF [NOT] EXISTS;
-- a step that calls a function of ours passes false, so its NOTICEs (a
-- phase move) reach the client. COMMITs: CALL it outside an explicit
-- transaction block. The statement comes from the extension's plan
-- (hr_plan) or a kind's template (hr_ddl), never from a caller's text.
CREATE PROCEDURE hr_migrations.hr_run_ddl(migration text, statement text, wait boolean DEFAULT false,
                                           quiet boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
DECLARE
    attempt_ms double precision;
    budget_ms double precision;
    attempt integer;
    waited double precision;
    pause double precision;
    started timestamptz;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    attempt_ms := hr_migrations.hr_setting_ms('hr_migrations.ddl_lock_timeout', 1000);
    budget_ms := hr_migrations.hr_setting_ms('hr_migrations.ddl_retry_budget', 600000);
    attempt := 0;
    waited := 0;
    LOOP
        attempt := attempt + 1;
        started := clock_timestamp();
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout',
                CASE WHEN wait THEN '0' ELSE attempt_ms::bigint || 'ms' END, true);
            -- No "does not exist, skipping" chatter from IF [NOT] EXISTS;
            -- a call of ours (quiet false) keeps its NOTICEs.
            IF quiet THEN
                PERFORM pg_catalog.set_config('client_min_messages', 'warning', true);
            END IF;
            EXECUTE statement;
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            waited := waited + extract(epoch FROM clock_timestamp() - started) * 1000;
            IF waited >= budget_ms THEN
                RAISE EXCEPTION '%: gave up after % attempts (% s) waiting for a lock: %', migration, attempt,
                        round((waited / 1000)::numeric, 1), pg_catalog.left(regexp_replace(statement, '[[:space:]]+', ' ', 'g'), 120)
                    USING ERRCODE = 'lock_not_available',
                          HINT = 'SELECT * FROM hr_migrations.hr_preflight() names the sessions holding the table; run the file again';
            END IF;
            -- Exponential backoff from 100 ms to 10 s, with equal jitter.
            pause := least(10000, 100 * 2 ^ least(attempt - 1, 10)) * (0.5 + random() / 2);
            RAISE NOTICE '%: lock not available after % ms (attempt %): %; retrying in % ms', migration,
                attempt_ms, attempt, pg_catalog.left(regexp_replace(statement, '[[:space:]]+', ' ', 'g'), 80), round(pause::numeric);
            PERFORM pg_catalog.pg_sleep(pause / 1000);
            waited := waited + pause;
        END;
    END LOOP;
    COMMIT;
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- A kind's DDL template (hr_render) run by hr_run_ddl; skip_when, a
-- boolean SQL expression rendered like ddl, makes it a no-op when its
-- result already exists (ADD CONSTRAINT has no IF NOT EXISTS).
CREATE PROCEDURE hr_migrations.hr_ddl(migration text, ddl text, skip_when text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    stmt text;
    cond text;
    skip boolean;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    stmt := hr_migrations.hr_render(migration, ddl);
    cond := hr_migrations.hr_render(migration, skip_when);
    IF cond IS NOT NULL THEN
        EXECUTE 'SELECT ' || cond INTO skip;
        IF skip THEN
            RETURN;
        END IF;
    END IF;
    CALL hr_migrations.hr_run_ddl(migration, stmt);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- Row isolation of a migration's table from migrated on (every row has its
-- organization then): RLS with one policy per command for authenticated,
-- each the rows of the request's organization (hr_jwt_organization_id()),
-- from the kind's predicate. Nothing before migrated, nothing for other
-- roles (anon has no privilege on the table from dual on; service_role
-- bypasses RLS). tenant_column's script creates the sessions' own policies.
-- Idempotent: the four policies are made again each time, so one changed
-- by hand is repaired (one brief ACCESS EXCLUSIVE lock). Called by
-- the kinds' move to migrated (with that phase) and by the migration
-- scripts (with the current one). Runs as the DBA (it owns the table).
CREATE FUNCTION hr_migrations.hr_isolate_rows(migration text, phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e hr_migrations.hr_migration_registry := hr_migrations.hr_migration_entry(migration);
    tbl regclass := hr_migrations.hr_migration_table(migration);
    pred text;
    n text;
BEGIN
    pred := CASE e.kind
        WHEN 'token_hash' THEN
            'candidate_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT hr_migrations.hr_organization_candidates()))'
        WHEN 'credential_move' THEN
            'organization_id OPERATOR(pg_catalog.=) (SELECT hr_migrations.hr_jwt_organization_id())'
        END;
    IF pred IS NULL OR tbl IS NULL OR phase NOT IN ('migrated', 'enforced', 'contracted') THEN
        RETURN;
    END IF;
    PERFORM hr_migrations.hr_bound_lock_wait();
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    FOREACH n IN ARRAY ARRAY['policy_select', 'policy_insert', 'policy_update', 'policy_delete'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy y WHERE y.polrelid = tbl AND y.polname = e.objects ->> n) THEN
            EXECUTE format('DROP POLICY %I ON %s', e.objects ->> n, tbl);
        END IF;
    END LOOP;
    EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO authenticated USING (%s)', e.objects ->> 'policy_select', tbl, pred);
    EXECUTE format('CREATE POLICY %I ON %s FOR INSERT TO authenticated WITH CHECK (%s)', e.objects ->> 'policy_insert', tbl, pred);
    EXECUTE format('CREATE POLICY %I ON %s FOR UPDATE TO authenticated USING (%s) WITH CHECK (%s)',
                   e.objects ->> 'policy_update', tbl, pred, pred);
    EXECUTE format('CREATE POLICY %I ON %s FOR DELETE TO authenticated USING (%s)', e.objects ->> 'policy_delete', tbl, pred);
END
$$;

-- -----------------------------------------------------------------------------
-- Guards of the batch engine.

-- Refuses (22023) a batch size outside 1..1000000.
CREATE FUNCTION hr_migrations.hr_check_batch_size(batch_size integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 1000000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 1000000 (got %)', coalesce(batch_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Code on the given tables that would run as whoever writes them (the
-- definer role during a batch or a SECURITY DEFINER write, a superuser
-- running a migration) and that a role below the superuser could have
-- planted: a function owned by a role that is not a superuser (the
-- extension's own functions excepted), reached from a trigger (its function
-- or WHEN clause), a column DEFAULT or generated expression, a CHECK or
-- other constraint, an index expression or predicate (or its operator
-- class), or a domain constraint of a column's type; and any rule, whose
-- actions run as the writer. The table's owner is NOT trusted: on Supabase
-- it is postgres, which is not a superuser. One row per object.
-- PL/pgSQL for its cached plan: every batch and every definer write asks
-- (planning the query was 1 ms of each 3 ms check), and a generic one:
-- left to choose, the plan cache kept planning it for each array of
-- tables (1.8 ms a check, 0.7 ms with the generic plan). Nested loops only:
-- every join here reaches a few catalog rows by an index, where a hash or
-- merge join read pg_type and pg_depend whole (3.6 ms a check, 2.1 ms
-- without).
CREATE FUNCTION hr_migrations.hr_planted_code(tables regclass[])
RETURNS TABLE (table_name regclass, object text, function_name text, function_owner name)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE ext AS (
        SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'hr_migrations'
    ),
    -- Every type a column's values pass through: its type, the base type of
    -- a domain, the element type of an array, recursively.
    column_types AS (
        SELECT a.attrelid AS rel, a.attname, a.atttypid AS typ
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
        UNION
        SELECT ct.rel, ct.attname, next.typ
          FROM column_types ct
          JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) ct.typ
          CROSS JOIN LATERAL (VALUES (CASE WHEN ty.typtype OPERATOR(pg_catalog.=) 'd' THEN ty.typbasetype
                                           WHEN ty.typelem OPERATOR(pg_catalog.<>) 0 AND ty.typlen OPERATOR(pg_catalog.=) -1 THEN ty.typelem END)) next(typ)
         WHERE next.typ IS NOT NULL
    ),
    -- Objects of each table whose expressions may call functions, as
    -- (table, class, object id, description).
    objs AS (
        SELECT t.tgrelid AS rel, 'pg_catalog.pg_trigger'::pg_catalog.regclass AS classid, t.oid AS objid,
               'trigger ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.tgname) AS what
          FROM pg_catalog.pg_trigger t
         WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[]) AND NOT t.tgisinternal
        UNION ALL
        SELECT d.adrelid, 'pg_catalog.pg_attrdef'::pg_catalog.regclass, d.oid,
               'default of column ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(a.attname)
          FROM pg_catalog.pg_attrdef d
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid
                                        AND a.attnum OPERATOR(pg_catalog.=) d.adnum
         WHERE d.adrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
        UNION ALL
        SELECT c.conrelid, 'pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid,
               'constraint ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.conname)
          FROM pg_catalog.pg_constraint c
         WHERE c.conrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
        UNION ALL
        SELECT i.indrelid, 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid,
               'index ' OPERATOR(pg_catalog.||) i.indexrelid::pg_catalog.regclass::pg_catalog.text
          FROM pg_catalog.pg_index i
         WHERE i.indrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
        UNION ALL
        -- Extended statistics: the planner simplifies their expressions
        -- (constant subexpressions run) when it plans a query on the table.
        SELECT s.stxrelid, 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, s.oid,
               'statistics ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(s.stxname)
          FROM pg_catalog.pg_statistic_ext s
         WHERE s.stxrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
        UNION ALL
        -- Domain constraints of the columns' types, at every level of a
        -- domain over a domain and through array element types.
        SELECT d.rel, 'pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid,
               'constraint ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.conname)
                   OPERATOR(pg_catalog.||) ' of domain ' OPERATOR(pg_catalog.||) c.contypid::pg_catalog.regtype::pg_catalog.text
                   OPERATOR(pg_catalog.||) ' (column ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(d.attname) OPERATOR(pg_catalog.||) ')'
          FROM column_types d
          JOIN pg_catalog.pg_constraint c ON c.contypid OPERATOR(pg_catalog.=) d.typ
    ),
    -- What those objects depend on.
    deps AS (
        SELECT o.rel, o.what, d.refclassid, d.refobjid
          FROM objs o
          JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) o.classid
                                     AND d.objid OPERATOR(pg_catalog.=) o.objid
    ),
    -- The functions they call: directly, through an operator, or through
    -- an operator class (indexes).
    calls AS (
        SELECT d.rel, d.what, d.refobjid AS fn
          FROM deps d
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        UNION
        SELECT d.rel, d.what, op.oprcode::pg_catalog.oid
          FROM deps d
          JOIN pg_catalog.pg_operator op ON op.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass
        UNION
        SELECT d.rel, d.what, ap.amproc::pg_catalog.oid
          FROM deps d
          JOIN pg_catalog.pg_opclass oc ON oc.oid OPERATOR(pg_catalog.=) d.refobjid
          JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily OPERATOR(pg_catalog.=) oc.opcfamily
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_opclass'::pg_catalog.regclass
        UNION
        SELECT t.tgrelid, 'trigger ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.tgname), t.tgfoid
          FROM pg_catalog.pg_trigger t
         WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[]) AND NOT t.tgisinternal
    )
    SELECT c.rel::pg_catalog.regclass, c.what, p.oid::pg_catalog.regprocedure::pg_catalog.text, o.rolname
      FROM calls c
      JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) c.fn
      JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) p.proowner
     WHERE NOT o.rolsuper
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d, ext
                        WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                          AND d.objid OPERATOR(pg_catalog.=) p.oid
                          AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
                          AND d.deptype OPERATOR(pg_catalog.=) 'e'
                          AND d.refobjid OPERATOR(pg_catalog.=) ext.oid)
    UNION
    -- A rule rewrites the writer's statement into others, run as the writer
    -- (a view's _RETURN rule too: a view is refused below).
    SELECT r.ev_class::pg_catalog.regclass, 'rule ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(r.rulename),
           NULL, NULL
      FROM pg_catalog.pg_rewrite r
     WHERE r.ev_class OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
    UNION
    -- An inheritance child: a write without ONLY reaches it and fires its
    -- triggers (CREATE TABLE ... INHERITS takes no lock that a writer's
    -- ROW EXCLUSIVE conflicts with).
    SELECT i.inhparent::pg_catalog.regclass, 'inheritance child ' OPERATOR(pg_catalog.||) i.inhrelid::pg_catalog.regclass::pg_catalog.text,
           NULL, NULL
      FROM pg_catalog.pg_inherits i
     WHERE i.inhparent OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
    UNION
    -- Not a plain table: a view in a table's place, or a partitioned table
    -- (one that passes holds no row, having no partition, and a partition
    -- attached after the check, which a writer's ROW EXCLUSIVE does not
    -- block, would receive the definer role's INSERT and run its code).
    SELECT c.oid::pg_catalog.regclass, 'relation kind ' OPERATOR(pg_catalog.||) c.relkind::pg_catalog.text OPERATOR(pg_catalog.||) ' (not a table)',
           NULL, NULL
      FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) ANY (tables::pg_catalog.oid[])
       AND c.relkind OPERATOR(pg_catalog.<>) 'r'
     ORDER BY 1, 2;
END
$$;

-- Only SQLSTATEs whose messages we write (and which never quote row data)
-- are recorded with their message; anything else is recorded by SQLSTATE
-- alone, since a server message can quote the value that failed to parse.
CREATE FUNCTION hr_migrations.hr_failure_reason(state text, message text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN state IN ('22023', '22P02', 'F0000', 'XX001', '55000', '23514', '42501')
            THEN left(message, 500)
        ELSE format('error with SQLSTATE %s (message withheld: it may quote row data)', state)
    END
$$;

-- Closes an application table the extension writes to planted code, and
-- gives the definer role what its SECURITY DEFINER code needs there. Every
-- role but the owner loses TRIGGER, TRUNCATE and REFERENCES (a trigger it
-- planted would run as whoever writes the table: the definer role, or a
-- superuser running a migration); SELECT, INSERT, UPDATE and DELETE stay as
-- the application had them. The migration scripts call it for each table
-- they make the extension write. Runs as the DBA (it must own the table).
CREATE FUNCTION hr_migrations.hr_secure_table(tbl regclass, definer_privileges text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
    nsp oid;
BEGIN
    IF definer_privileges !~ '^(SELECT|INSERT|UPDATE|DELETE)(, (SELECT|INSERT|UPDATE|DELETE))*$' THEN
        RAISE EXCEPTION 'definer_privileges must list SELECT, INSERT, UPDATE or DELETE' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('REVOKE TRIGGER, TRUNCATE, REFERENCES ON %s FROM PUBLIC', tbl);
    FOR g IN SELECT DISTINCT r.rolname
               FROM pg_catalog.pg_class c, aclexplode(c.relacl) x
               JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
              WHERE c.oid = tbl AND x.grantee <> c.relowner
                AND x.privilege_type IN ('TRIGGER', 'TRUNCATE', 'REFERENCES') LOOP
        EXECUTE format('REVOKE TRIGGER, TRUNCATE, REFERENCES ON %s FROM %I', tbl, g.rolname);
    END LOOP;
    -- Triggers planted while the application roles still held TRIGGER (Supabase
    -- grants it from day one) survive a REVOKE: refuse to give the definer
    -- role anything while one is there. SHARE UPDATE EXCLUSIVE waits for a
    -- CREATE TRIGGER in flight and blocks no reads or writes.
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', tbl);
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY[tbl]::oid[]);
    SELECT c.relnamespace INTO nsp FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    IF NOT has_schema_privilege('hr_migrations_definer', nsp, 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %s TO hr_migrations_definer', nsp::regnamespace);
        PERFORM hr_migrations.hr_forget_init_privs('pg_catalog.pg_namespace', nsp);
    END IF;
    EXECUTE format('GRANT %s ON %s TO hr_migrations_definer', definer_privileges, tbl);
    -- Run by ALTER EXTENSION UPDATE (the upgrade refreshes applied
    -- migrations), these grants would otherwise count as the table's initial
    -- privileges and drop out of pg_dump.
    PERFORM hr_migrations.hr_forget_init_privs('pg_catalog.pg_class', tbl);
END
$$;

-- Tables a migration creates for the extension alone (audit logs) and their
-- sequences: nobody but the owner, then exactly the given readers (roles
-- that do not exist are skipped) and the definer role's privileges.
CREATE FUNCTION hr_migrations.hr_secure_own_table(tbl regclass, readers text[], definer_privileges text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
    r text;
BEGIN
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', tbl);
    FOR g IN SELECT DISTINCT o.rolname
               FROM pg_catalog.pg_class c, aclexplode(c.relacl) x
               JOIN pg_catalog.pg_roles o ON o.oid = x.grantee
              WHERE c.oid = tbl AND x.grantee <> c.relowner LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %I', tbl, g.rolname);
    END LOOP;
    -- Its sequences too (an identity column's): the default privileges give
    -- the API roles setval() on them, enough to stop every insert.
    FOR g IN SELECT DISTINCT d.objid::regclass AS seq, o.rolname
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class q ON q.oid = d.objid AND q.relkind = 'S'
               LEFT JOIN LATERAL aclexplode(q.relacl) x ON true
               LEFT JOIN pg_catalog.pg_roles o ON o.oid = x.grantee AND x.grantee <> q.relowner
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = tbl
                AND d.deptype IN ('a', 'i') LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM PUBLIC', g.seq);
        IF g.rolname IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', g.seq, g.rolname);
        END IF;
        PERFORM hr_migrations.hr_forget_init_privs('pg_catalog.pg_class', g.seq);
    END LOOP;
    FOREACH r IN ARRAY readers LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.rolname = r) THEN
            EXECUTE format('GRANT SELECT ON %s TO %I', tbl, r);
        END IF;
    END LOOP;
    PERFORM hr_migrations.hr_secure_table(tbl, definer_privileges);
END
$$;

-- A definer function's locks on the tables of an operation it found by
-- name: ROW EXCLUSIVE on each (it conflicts with CREATE TRIGGER, CREATE
-- INDEX and the DDL that adds code to a table), planted code refused
-- (hr_refuse_foreign_triggers, Rust, which also locks by id), then, since
-- both could change while the locks were awaited, the operation's tables
-- are still the ones the names lead to and the extension's integrity still
-- holds. 55000 otherwise, nothing done.
CREATE FUNCTION hr_migrations.hr_lock_operation_tables(migration text, operation text, tbl regclass, writes regclass[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    now_spec record;
BEGIN
    PERFORM hr_migrations.hr_lock_tables(writes);
    PERFORM hr_migrations.hr_refuse_foreign_triggers(writes::oid[]);
    SELECT * INTO now_spec FROM hr_migrations.hr_operation_spec(migration, operation);
    IF now_spec.tbl IS DISTINCT FROM tbl OR now_spec.writes IS DISTINCT FROM writes THEN
        RAISE EXCEPTION '%: the tables of % changed while it waited for their locks: nothing done', migration, operation
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a table was renamed, dropped or replaced during the batch; run it again';
    END IF;
    PERFORM hr_migrations.hr_require_integrity();
END
$$;

-- The predicate a batch's pick adds so rows recorded as failed are left
-- out, over the alias t, with the migration and operation as the given
-- parameters ('$3', '$4').
CREATE FUNCTION hr_migrations.hr_not_failed(migration_param text, operation_param text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('NOT EXISTS (SELECT 1 FROM hr_migrations.hr_batch_failures f
                                WHERE f.migration = %s AND f.operation = %s AND f.row_id = t.id)',
                  migration_param, operation_param)
$$;

-- -----------------------------------------------------------------------------
-- The batch engine: one batch of one operation of one migration.
--
--   1. lock every table the operation writes (ROW EXCLUSIVE) and refuse
--      foreign triggers on them;
--   2. lock the operation's cursor row (two runs of one operation never
--      overlap: the second waits for the first batch to commit);
--   3. pick up to batch_size ids after the cursor that match the pending
--      predicate and have not failed before, FOR UPDATE SKIP LOCKED, in id
--      order (an index range scan on the primary key); at the end of the
--      table wrap around once, for rows that were locked on the way;
--   4. with the backfill flag on, run the operation's action on all of them
--      in a subtransaction; if it fails, run it row by row, each in its own
--      subtransaction, and record the rows that fail (id, SQLSTATE, reason);
--   5. advance the cursor and the counters.
-- A batch whose rows all failed is followed by the next one in the same
-- call, so 0 always means "nothing left to do" (with wrap false: "nothing
-- left from the cursor to the end of the table", for a caller that counts
-- what is left itself). Returns the rows done.
--
-- Operations whose kind gives a range action (hr_operation_spec) walk the
-- heap in physical order instead (step 3 and 4): a batch is the range of
-- tuple ids from the cursor that holds batch_size rows that may be pending
-- (found by a TID range scan that stops there, so dense and empty, done
-- and not done stretches of the table make batches of the same size), the
-- cursor is the tuple id after it, and
-- the range action does the range's pending rows in one statement (a TID
-- range scan: each page read once, in order, where an id order visits a
-- random page per row). That statement waits
-- at most 50 ms for a row another transaction holds (lock_timeout); if it
-- would wait longer, or fails, the range is done again as above: its
-- pending ids picked FOR UPDATE SKIP LOCKED, acted on, failures recorded
-- row by row. So a batch never waits more than 50 ms for an application
-- transaction, and a row held longer is left for later, as before. Rows
-- move while the walk goes on (an application's UPDATE puts the new
-- version in any block with room, possibly one already walked): at the end
-- of the table the walk wraps around once, and the run's final count of
-- pending rows starts another walk while any remain (hr_batch_loop).
--
-- A batch must cost the same at the end of a table as at its start, or a
-- run is quadratic. That rests on the planner's estimates: hr_batch_loop
-- gathers statistics of the table when a run starts with stale ones (the column a run
-- reads was often just filled, and a stale "no row pending" makes the pick
-- fetch and sort every pending row to keep 1000), and the functions the
-- row actions join with declare the one row they return (ROWS 1; the
-- default 1000 made each rollback batch hash both tables whole). JIT is
-- off: a batch's statements are short, and a high estimate made each one
-- compile for 50 ms. Sequential scans are off: a batch reaches at most
-- batch_size rows by key, and where the planner finds a scan of the whole
-- table cheaper than that many index probes (a batch that is a tenth of
-- the table), it is cheaper once but is paid by every batch: a run reads
-- the table once per batch (engine.rs counts what a rewrap reads). No
-- parallel plans: a walk's range end relies on the TID range scan's block
-- order.
--
-- The tables are found by name (the registry) when the batch starts and
-- again by every statement; they are locked by id only once the checks
-- ran. hr_lock_operation_tables, after the locks, refuses a batch whose names
-- now lead to other tables (renamed and replaced while the batch waited
-- for its locks: the checks would have seen the old ones) and checks the
-- integrity again (code planted while the batch waited: an index whose
-- expression the planner would run as the definer role).
CREATE FUNCTION hr_migrations.hr_engine_batch(migration text, operation text, batch_size integer,
                                              wrap boolean DEFAULT true) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    spec record;
    after_id uuid;
    ids uuid[];
    done bigint := 0;
    failed bigint := 0;
    n bigint;
    n_failed bigint;
    started timestamptz := clock_timestamp();
    wrapped boolean := false;
    physical boolean;
    lo tid;
    lo_block bigint;
    hi tid;
    cap tid;
    from_start boolean;
    skip_failed boolean;
    lock_wait text;
    old_lock_timeout text := current_setting('lock_timeout');
    walked boolean := false;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    PERFORM hr_migrations.hr_check_batch_size(batch_size);
    PERFORM hr_migrations.hr_require_applied(migration);
    SELECT * INTO spec FROM hr_migrations.hr_operation_spec(migration, operation);
    physical := spec.range_action IS NOT NULL;
    -- ROW EXCLUSIVE conflicts with CREATE TRIGGER: no trigger can appear
    -- between this check and the batch.
    PERFORM hr_migrations.hr_lock_operation_tables(migration, operation, spec.tbl, spec.writes);

    INSERT INTO hr_migrations.hr_batch_progress AS p (migration, operation)
    VALUES (hr_engine_batch.migration, hr_engine_batch.operation)
    ON CONFLICT ON CONSTRAINT hr_batch_progress_pkey DO NOTHING;
    SELECT p.last_id, p.last_tid INTO after_id, lo FROM hr_migrations.hr_batch_progress p
     WHERE p.migration = hr_engine_batch.migration AND p.operation = hr_engine_batch.operation
       FOR UPDATE;

    PERFORM hr_migrations.hr_set_backfill_flag(true);
    IF physical THEN
        from_start := lo IS NULL;
        lo := coalesce(lo, '(0,0)');
        skip_failed := EXISTS (SELECT 1 FROM hr_migrations.hr_batch_failures f
                                WHERE f.migration = hr_engine_batch.migration AND f.operation = hr_engine_batch.operation);
        -- The session's lock_timeout when it is shorter (SHOW's form has units).
        lock_wait := CASE WHEN old_lock_timeout::interval > '0' AND old_lock_timeout::interval < '50ms'
                          THEN old_lock_timeout ELSE '50ms' END;
    END IF;
    LOOP
        IF physical THEN
            -- The range: up to the (batch_size + 1)th row that may be
            -- pending (range_pending reads only the row) from the cursor,
            -- and at most 4096 blocks (32 MB: a stretch of empty pages, as
            -- a bulk update and VACUUM leave, is read in bounded steps),
            -- or to the end of the table. IS TRUE keeps any index off the
            -- predicate, so the only plan is a TID range scan, in block
            -- order, that stops there.
            lo_block := (lo::text::point)[0]::bigint;
            cap := format('(%s,0)', least(lo_block + 4096, 4294967295))::tid;
            EXECUTE format('SELECT t.ctid FROM ONLY %s t WHERE t.ctid >= $1 AND t.ctid < $3 AND (%s) IS TRUE OFFSET $2 LIMIT 1',
                           spec.tbl, spec.range_pending)
               INTO hi USING lo, batch_size, cap;
            IF hi IS NULL AND lo_block + 4096 < pg_catalog.pg_relation_size(spec.tbl) / current_setting('block_size')::bigint THEN
                hi := cap;
            END IF;
            IF hi <= lo THEN  -- cannot happen (batch_size >= 1): never loop on one range
                RAISE EXCEPTION 'hr_engine_batch: the walk of % did not advance at %', spec.tbl, lo
                    USING ERRCODE = 'internal_error';
            END IF;
            BEGIN
                PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
                EXECUTE format('SELECT %s($1, $2, $3, $4)', spec.range_action) INTO n
                  USING migration, lo, coalesce(hi, '(4294967295,0)'), skip_failed;
                PERFORM pg_catalog.set_config('lock_timeout', old_lock_timeout, true);
                done := done + n;
                ids := NULL;
            EXCEPTION WHEN OTHERS THEN
                -- A row held by another transaction for more than lock_wait,
                -- or a row that fails: the range row by row (below). The
                -- subtransaction's lock_timeout is gone with it.
                EXECUTE format(
                    'SELECT array_agg(s.id ORDER BY s.id) FROM (
                         SELECT t.id FROM ONLY %s t
                          WHERE t.ctid >= $1 AND t.ctid < $2
                            AND (%s)
                            AND %s
                            FOR UPDATE OF t SKIP LOCKED) s',
                    spec.tbl, spec.pending, hr_migrations.hr_not_failed('$3', '$4'))
                  INTO ids USING lo, coalesce(hi, '(4294967295,0)'), migration, operation;
            END;
            IF hi IS NULL AND ids IS NULL AND done = 0 THEN
                -- End of the table: wrap around once for rows skipped or moved on the way.
                walked := from_start OR wrapped OR NOT wrap;
                EXIT WHEN walked;
                lo := '(0,0)';
                wrapped := true;
                CONTINUE;
            END IF;
            lo := coalesce(hi, '(4294967295,0)');
        ELSE
            EXECUTE format(
                'SELECT array_agg(s.id ORDER BY s.id) FROM (
                     SELECT t.id FROM ONLY %s t
                      WHERE ($1 IS NULL OR t.id > $1)
                        AND (%s)
                        AND %s
                      ORDER BY t.id
                      LIMIT $2
                        FOR UPDATE OF t SKIP LOCKED) s',
                spec.tbl, spec.pending, hr_migrations.hr_not_failed('$3', '$4'))
              INTO ids USING after_id, batch_size, migration, operation;

            IF ids IS NULL THEN
                -- End of the table: wrap around once for rows skipped on the way.
                walked := after_id IS NULL OR wrapped OR NOT wrap;
                EXIT WHEN walked;
                after_id := NULL;
                wrapped := true;
                CONTINUE;
            END IF;
            after_id := ids[array_upper(ids, 1)];
        END IF;

        IF ids IS NOT NULL THEN
            SELECT a.done, a.failed INTO n, n_failed
              FROM hr_migrations.hr_engine_act(migration, operation, ids) a;
            done := done + n;
            failed := failed + n_failed;
        END IF;
        EXIT WHEN done > 0;
        -- A walk through stretches with nothing to do (empty pages) returns
        -- to its loop every 50 ms, its cursor saved, so no transaction
        -- grows with the table; the loop goes on (hr_batch_loop).
        EXIT WHEN physical AND NOT wrap AND clock_timestamp() - started > interval '50 ms';
    END LOOP;
    PERFORM hr_migrations.hr_set_backfill_flag(false);

    UPDATE hr_migrations.hr_batch_progress p
       SET last_id = CASE WHEN walked OR physical THEN NULL ELSE after_id END,
           last_tid = CASE WHEN walked OR NOT physical THEN NULL ELSE lo END,
           batches = p.batches + (done + failed > 0)::int,
           rows_done = p.rows_done + done,
           rows_failed = p.rows_failed + failed,
           batch_size = hr_engine_batch.batch_size,
           last_batch_ms = extract(epoch FROM clock_timestamp() - started) * 1000,
           started_at = coalesce(p.started_at, started),
           updated_at = clock_timestamp(),
           finished_at = CASE WHEN walked THEN clock_timestamp() END,
           last_error = CASE WHEN failed > 0
                             THEN format('%s rows failed in the last batch; SELECT * FROM hr_migrations.hr_batch_failures', failed)
                             ELSE p.last_error END
     WHERE p.migration = hr_engine_batch.migration AND p.operation = hr_engine_batch.operation;
    RETURN done;
END
$$;

-- Step 4 of a batch: the operation's row action (from its kind) on all the
-- picked ids in a subtransaction; if it fails, on each id in its own
-- subtransaction, and the ids that fail are recorded (id, SQLSTATE,
-- reason). Runs as the engine's caller (the definer role).
CREATE FUNCTION hr_migrations.hr_engine_act(migration text, operation text, ids uuid[],
    OUT done bigint, OUT failed bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    action text := (hr_migrations.hr_operation_spec(migration, operation)).action;
    n bigint;
    one uuid;
    st text;
    msg text;
BEGIN
    done := 0;
    failed := 0;
    BEGIN
        EXECUTE format('SELECT %s($1, $2)', action) INTO n USING migration, ids;
        done := n;
    EXCEPTION WHEN OTHERS THEN
        -- One bad row must not stop the others: find it row by row.
        FOREACH one IN ARRAY ids LOOP
            BEGIN
                EXECUTE format('SELECT %s($1, $2)', action) INTO n USING migration, ARRAY[one];
                done := done + n;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                INSERT INTO hr_migrations.hr_batch_failures AS f (migration, operation, row_id, sqlstate, reason)
                VALUES (hr_engine_act.migration, hr_engine_act.operation, one, st,
                        hr_migrations.hr_failure_reason(st, msg))
                ON CONFLICT ON CONSTRAINT hr_batch_failures_pkey
                DO UPDATE SET sqlstate = excluded.sqlstate, reason = excluded.reason, failed_at = now();
                failed := failed + 1;
            END;
        END LOOP;
    END;
END
$$;

-- ROW EXCLUSIVE on each table, in a stable order (what the batch's own
-- UPDATEs take anyway; taken first so the trigger check cannot race).
CREATE FUNCTION hr_migrations.hr_lock_tables(tables regclass[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT x FROM unnest(tables) x ORDER BY x::oid LOOP
        EXECUTE format('LOCK TABLE %s IN ROW EXCLUSIVE MODE', t);
    END LOOP;
END
$$;

-- Counts of one operation, from the same predicates the batches select
-- with: pending (to do, not failed before), blocked (cannot be done, or
-- failed before), migrated (done), total rows of its table. Each count is
-- a pass over the table, so a caller asks for what it needs: 'all',
-- 'remaining' (pending and blocked, the others NULL: what a run checks when
-- it ends) or 'pending' (what a run expects to do when it starts).
CREATE FUNCTION hr_migrations.hr_operation_counts(migration text, operation text, what text DEFAULT 'all',
    OUT total bigint, OUT migrated bigint, OUT pending bigint, OUT blocked bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec record;
    old_seqscan text;
    any_left boolean;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF what IS NULL OR what NOT IN ('all', 'remaining', 'pending') THEN
        RAISE EXCEPTION 'hr_operation_counts: what must be all, remaining or pending (got %)', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO spec FROM hr_migrations.hr_operation_spec(migration, operation);
    IF what = 'remaining' AND spec.range_pending IS NOT NULL THEN
        -- The end of a walk (hr_batch_loop), where few rows if any are
        -- left: range_pending holds for every pending and blocked row and
        -- reads only the row, so an index on its column says "none" without
        -- reading the table (the counts below read it whole and join:
        -- 0.23 s at 300k sessions). An index scan even where the statistics,
        -- gathered as the run started, still say every row is pending.
        old_seqscan := current_setting('enable_seqscan');
        PERFORM pg_catalog.set_config('enable_seqscan', 'off', true);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t WHERE %s)', spec.tbl, spec.range_pending) INTO any_left;
        PERFORM pg_catalog.set_config('enable_seqscan', old_seqscan, true);
        IF NOT any_left THEN
            pending := 0;
            blocked := 0;
            RETURN;
        END IF;
    END IF;
    -- One query per count, each predicate in a WHERE clause: there the
    -- planner turns a predicate's EXISTS into a semi- or anti-join (a hash
    -- join over the whole table), where a FILTER clause would run it as a
    -- subquery per row (0.19 s instead of 0.9 s for 200k sessions).
    IF what = 'all' THEN
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE %s) FROM %s t', spec.migrated, spec.tbl)
          INTO total, migrated;
    END IF;
    EXECUTE format(
        'SELECT count(*) FROM %s t
          WHERE (%s)
            AND NOT EXISTS (SELECT 1 FROM %s.hr_batch_failures f
                             WHERE f.migration = $1 AND f.operation = $2 AND f.row_id = t.id)',
        spec.tbl, spec.pending, 'hr_migrations')
      INTO pending USING migration, operation;
    IF what = 'pending' THEN
        RETURN;
    END IF;
    EXECUTE format(
        'SELECT (SELECT count(*) FROM %s t WHERE %s)
              + (SELECT count(*) FROM %s t JOIN %s.hr_batch_failures f
                   ON f.migration = $1 AND f.operation = $2 AND f.row_id = t.id
                 WHERE (%s) AND (%s) IS NOT TRUE)',
        spec.tbl, spec.blocked, spec.tbl, 'hr_migrations', spec.pending, spec.blocked)
      INTO blocked USING migration, operation;
END
$$;

-- The planner's estimate of one operation's pending rows (0 when it has
-- none): what a run expects, for an ETA. Reads no row.
CREATE FUNCTION hr_migrations.hr_operation_estimate(migration text, operation text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER  -- EXPLAIN is refused in a STABLE function
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec record;
    plan jsonb;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    SELECT * INTO spec FROM hr_migrations.hr_operation_spec(migration, operation);
    -- Locked and checked again before the planner reads the table.
    PERFORM hr_migrations.hr_lock_operation_tables(migration, operation, spec.tbl, spec.writes);
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM %s t WHERE %s', spec.tbl, spec.pending) INTO plan;
    RETURN greatest(round((plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric), 0)::bigint;
END
$$;

-- Forgets the recorded failures of a migration (one operation or all), so
-- the next run tries those rows again. Returns how many were forgotten.
CREATE FUNCTION hr_migrations.hr_retry_failures(migration text, operation text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    PERFORM hr_migrations.hr_migration_entry(migration);
    DELETE FROM hr_migrations.hr_batch_failures f
     WHERE f.migration = hr_retry_failures.migration
       AND (hr_retry_failures.operation IS NULL OR f.operation = hr_retry_failures.operation);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- -----------------------------------------------------------------------------
-- Status.

-- One row per migration. Counts are exact (they scan the tables): call it
-- for reporting, not in a hot path. pending and blocked are those of the
-- phase's operation (the backfill until migrated, the clearing or erasing
-- after), plus rows other operations (rewrap, rollback) recorded as failed.
CREATE FUNCTION hr_migrations.hr_migration_status()
RETURNS TABLE (migration text, phase text, total bigint, migrated bigint,
               pending bigint, blocked bigint, note text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    op text;
    c record;
    other_failures bigint;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    FOR r IN SELECT * FROM hr_migrations.hr_migration_registry ORDER BY position LOOP
        migration := r.migration;
        phase := hr_migrations.hr_migration_phase(r.migration);
        IF phase = 'not_applied' THEN
            total := hr_migrations.hr_row_count(hr_migrations.hr_migration_table(r.migration));
            migrated := 0; pending := total; blocked := 0;
            note := format('apply sql/migrations/%s', hr_migrations.hr_migration_script(r.migration));
            RETURN NEXT;
            CONTINUE;
        END IF;
        op := coalesce(hr_migrations.hr_phase_operation(r.migration, phase), 'backfill');
        SELECT * INTO c FROM hr_migrations.hr_operation_counts(r.migration, op);
        SELECT count(*) INTO other_failures FROM hr_migrations.hr_batch_failures f
         WHERE f.migration = r.migration AND f.operation <> op;
        total := c.total;
        migrated := c.migrated;
        IF hr_migrations.hr_phase_operation(r.migration, phase) IS NULL AND phase NOT IN ('dual', 'migrated') THEN
            pending := 0;
            blocked := other_failures;
        ELSE
            pending := c.pending;
            blocked := c.blocked + other_failures;
        END IF;
        EXECUTE format('SELECT %s($1, $2, $3, $4, $5)', hr_migrations.hr_kind_function(r.migration, 'note'))
           INTO note USING r.migration, phase, pending, blocked, other_failures;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Rows of a table that may not exist yet (0 then). Before its migration
-- script granted the definer role SELECT, the planner's estimate.
CREATE FUNCTION hr_migrations.hr_row_count(tbl regclass) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
BEGIN
    IF tbl IS NULL THEN
        RETURN 0;
    ELSIF has_table_privilege(tbl, 'SELECT') THEN
        EXECUTE format('SELECT count(*) FROM %s', tbl) INTO n;
    ELSE
        SELECT greatest(c.reltuples, 0)::bigint INTO n FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    END IF;
    RETURN n;
END
$$;

-- What hr_migration_progress shows: each batch operation that ran, with
-- its rate, current batch size and an ETA from the rows it expected.
CREATE VIEW hr_migrations.hr_migration_progress AS
SELECT p.migration,
       p.operation,
       CASE WHEN p.running_pid IS NOT NULL
                 AND EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = p.running_pid)
            THEN 'running'
            WHEN p.finished_at IS NOT NULL THEN 'finished'
            ELSE 'stopped' END AS state,
       p.rows_done,
       p.rows_failed,
       round((p.rows_done / greatest(extract(epoch FROM p.updated_at - p.started_at), 0.001))::numeric, 1)
           AS rows_per_second,
       p.batch_size,
       round(p.last_batch_ms::numeric, 1) AS last_batch_ms,
       p.batches,
       CASE WHEN p.rows_expected IS NOT NULL AND p.rows_done > 0 AND p.finished_at IS NULL
            THEN make_interval(secs => greatest(p.rows_expected - p.rows_done, 0)
                                       * extract(epoch FROM p.updated_at - p.started_at) / p.rows_done)
       END AS eta,
       p.started_at,
       p.updated_at,
       p.last_error
  FROM hr_migrations.hr_batch_progress p;
COMMENT ON VIEW hr_migrations.hr_migration_progress IS
    'hr_migrations: rows done, rate, batch size and duration, ETA and last error of each batch operation';

-- -----------------------------------------------------------------------------
-- Preflight (docs/sql-reference.md): what to know before running a migration
-- script on a busy database. status is 'ok', 'warning' or 'blocker'; detail
-- names objects (tables, indexes, pids, settings, roles), never values; fix
-- says what to do. The migration scripts call hr_preflight_gate() first and
-- stop on a blocker of their migration. Runs as the DBA.
CREATE FUNCTION hr_migrations.hr_preflight()
RETURNS TABLE (migration text, check_name text, status text, detail text, fix text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    x record;
    tbl regclass;
    writes regclass[];
    phase text;
    n bigint;
    found_any boolean;
    planted boolean;
    keyring_error text;
    -- The roles that pass tokens and secrets as bind parameters: the one
    -- server code calls the functions as, and PostgREST's login role.
    param_roles constant text[] := ARRAY['service_role', 'authenticator'];
    lag_ms double precision;
    max_lag_ms double precision := hr_migrations.hr_setting_ms('hr_migrations.max_replication_lag_ms', 10000);
    long_ms double precision := hr_migrations.hr_setting_ms('hr_migrations.preflight_long_transaction', 10000);
BEGIN
    -- Cluster-wide checks.
    migration := '*';
    -- First: while the definer role is within reach or the extension was
    -- changed, nothing below runs (it would call functions the definer
    -- role owns, as the caller).
    check_name := 'integrity';
    detail := hr_migrations.hr_integrity_problem();
    IF detail IS NOT NULL THEN
        status := 'blocker';
        fix := 'every SECURITY DEFINER function, procedure and batch refuses until it is undone (docs/security.md, "Integrity")';
        RETURN NEXT;
        RETURN;
    END IF;
    status := 'ok';
    detail := 'hr_migrations_definer has no member and cannot log in; the extension''s objects are as installed';
    fix := NULL;
    RETURN NEXT;

    check_name := 'library preloaded';
    -- Asked of the library (what it saw when it loaded), not of
    -- shared_preload_libraries, which only superusers and
    -- pg_read_all_settings may read.
    IF hr_migrations.hr_library_preloaded() THEN
        status := 'ok'; detail := 'shared_preload_libraries includes hr_migrations'; fix := NULL;
    ELSE
        status := 'warning';
        detail := 'shared_preload_libraries does not include hr_migrations: each backend loads it on first use (the first query of every new connection that calls a function of ours, a tenant policy included, pays about 1 ms for it), and until it does, every role can read hr_migrations.keyring_file (the path, never a key)';
        fix := 'add hr_migrations to shared_preload_libraries in postgresql.conf and restart at your next window';
    END IF;
    RETURN NEXT;

    check_name := 'standby replay lag';
    SELECT max(extract(epoch FROM s.replay_lag) * 1000) INTO lag_ms FROM pg_catalog.pg_stat_replication s;
    IF lag_ms IS NOT NULL AND max_lag_ms > 0 AND lag_ms > max_lag_ms THEN
        status := 'warning';
        detail := format('a standby replays %s ms behind (hr_migrations.max_replication_lag_ms = %s)', round(lag_ms::numeric), max_lag_ms);
        fix := 'batches wait while the lag is above the limit; find out why the standby is behind';
    ELSE
        status := 'ok';
        detail := CASE WHEN lag_ms IS NULL THEN 'no standby replaying'
                       ELSE format('standby replay lag %s ms', round(lag_ms::numeric)) END;
        fix := NULL;
    END IF;
    RETURN NEXT;

    check_name := 'parameters kept out of the log';
    found_any := false;
    FOR x IN
        SELECT ar.rolname,
               coalesce(hr_migrations.hr_role_setting(ar.oid, 'log_statement'), current_setting('log_statement')) AS log_statement,
               coalesce(hr_migrations.hr_role_setting(ar.oid, 'log_min_duration_statement'), current_setting('log_min_duration_statement')) AS min_duration,
               coalesce(hr_migrations.hr_role_setting(ar.oid, 'log_parameter_max_length'), current_setting('log_parameter_max_length')) AS max_len,
               coalesce(hr_migrations.hr_role_setting(ar.oid, 'log_parameter_max_length_on_error'), current_setting('log_parameter_max_length_on_error')) AS max_len_err
          FROM pg_catalog.pg_roles ar WHERE ar.rolname = ANY (param_roles)
    LOOP
        IF ((x.log_statement = 'all' OR x.min_duration NOT IN ('-1', '-1ms')) AND x.max_len NOT IN ('0', '0B'))
           OR x.max_len_err NOT IN ('0', '0B') THEN
            found_any := true;
            status := 'warning';
            detail := format('role %s: log_statement = %s, log_min_duration_statement = %s, log_parameter_max_length = %s, log_parameter_max_length_on_error = %s: tokens and secrets passed as bind parameters would be logged',
                             quote_ident(x.rolname), x.log_statement, x.min_duration, x.max_len, x.max_len_err);
            fix := format('ALTER ROLE %s SET log_parameter_max_length = 0; ALTER ROLE %s SET log_parameter_max_length_on_error = 0 (docs/security.md)',
                          quote_ident(x.rolname), quote_ident(x.rolname));
            RETURN NEXT;
        END IF;
    END LOOP;
    IF NOT found_any THEN
        status := 'ok'; detail := 'no application role logs bind parameters'; fix := NULL;
        RETURN NEXT;
    END IF;

    FOR r IN SELECT * FROM hr_migrations.hr_migration_registry ORDER BY position LOOP
        migration := r.migration;
        tbl := hr_migrations.hr_migration_table(r.migration);
        phase := hr_migrations.hr_migration_phase(r.migration);

        check_name := 'table exists';
        IF tbl IS NULL THEN
            status := 'blocker'; detail := format('table %I.%I does not exist', r.table_schema, r.table_name);
            fix := 'create the application schema first, or fix the registry entry';
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- Code planted on a table the migration reads or writes (reported
        -- by "foreign triggers" below): the checks that scan tables are
        -- skipped, since planning a query on such a table can run it (an
        -- index or statistics expression is simplified by the planner), as
        -- whoever runs the preflight.
        planted := EXISTS (SELECT 1 FROM hr_migrations.hr_planted_code(ARRAY(
                               SELECT DISTINCT to_regclass(k.table_name) FROM hr_migrations.hr_kind_columns(r.migration) k
                                WHERE to_regclass(k.table_name) IS NOT NULL) || tbl));
        status := 'ok'; detail := format('table %s', tbl); fix := NULL;
        RETURN NEXT;

        writes := ARRAY[tbl];
        IF r.kind = 'credential_move' THEN
            writes := writes || hr_migrations.hr_credentials_table(r.migration);
            IF hr_migrations.hr_credential_log_table(r.migration) IS NOT NULL THEN
                writes := writes || hr_migrations.hr_credential_log_table(r.migration);
            END IF;
            check_name := 'keyring';
            BEGIN
                PERFORM * FROM hr_migrations.hr_keyring_versions();
                keyring_error := NULL;
            EXCEPTION WHEN config_file_error THEN
                keyring_error := SQLERRM;
            END;
            IF keyring_error IS NULL THEN
                status := 'ok'; detail := 'hr_migrations.keyring_file opens and holds hr_migrations.active_key_version'; fix := NULL;
            ELSE
                status := 'blocker'; detail := keyring_error;
                fix := 'set hr_migrations.keyring_file and hr_migrations.active_key_version and reload (docs/key-management.md)';
            END IF;
            RETURN NEXT;

            -- After enforced the credentials table is the only copy of the
            -- secrets: anon has nothing on it, authenticated reads its own
            -- organization's rows under RLS and writes nothing.
            check_name := 'credentials table closed';
            SELECT c.relrowsecurity AS rls,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) 'anon'
                              AND pg_catalog.has_table_privilege(o.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')) AS anon_has,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) 'authenticated'
                              AND pg_catalog.has_table_privilege(o.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')) AS auth_writes,
                   c.oid::pg_catalog.regclass AS rel
              INTO x
              FROM pg_catalog.pg_class c
             WHERE c.oid OPERATOR(pg_catalog.=) hr_migrations.hr_credentials_table(r.migration);
            IF x.rel IS NULL THEN
                status := 'ok'; detail := 'the credentials table does not exist yet'; fix := NULL;
            ELSIF x.rls AND NOT x.anon_has AND NOT x.auth_writes THEN
                status := 'ok';
                detail := format('%s: row level security on; anon has no privilege; authenticated writes nothing', x.rel);
                fix := NULL;
            ELSE
                -- A warning, not a blocker: the script this gate guards is what closes it.
                status := 'warning';
                detail := format('%s:%s%s%s', x.rel,
                                 CASE WHEN x.rls THEN '' ELSE ' row level security is off;' END,
                                 CASE WHEN x.anon_has THEN ' anon holds privileges on it;' ELSE '' END,
                                 CASE WHEN x.auth_writes THEN ' authenticated may write or truncate it;' ELSE '' END);
                fix := CASE WHEN phase OPERATOR(pg_catalog.=) 'not_applied'
                            THEN format('sql/migrations/%s closes it before moving anything in', hr_migrations.hr_migration_script(r.migration))
                            ELSE format('run sql/migrations/%s again (it closes it), or: ALTER TABLE %s ENABLE ROW LEVEL SECURITY; REVOKE ALL ON %s FROM anon; REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %s FROM authenticated',
                                        hr_migrations.hr_migration_script(r.migration), x.rel, x.rel, x.rel) END;
            END IF;
            RETURN NEXT;

            -- Credentials of organizations whose data keys were shredded:
            -- unreadable by design; counted so nobody mistakes them for a fault.
            check_name := 'shredded organizations';
            IF x.rel IS NULL OR planted THEN
                n := 0;
            ELSE
                EXECUTE format('SELECT count(*) FROM %s c
                                 WHERE starts_with(c.encrypted_value, ''hrc2.'')
                                   AND NOT hr_migrations.hr_data_key_live(c.organization_id, c.encrypted_value)', x.rel) INTO n;
            END IF;
            IF planted THEN
                status := 'warning'; detail := 'not checked: code is planted on a table of this migration (see foreign triggers)';
                fix := 'remove what "foreign triggers" reports; this check runs then';
            ELSIF n OPERATOR(pg_catalog.>) 0 THEN
                status := 'warning';
                detail := format('%s credentials of %s cannot be read: their data key no longer exists (their organization''s keys were shredded, or a generation was retired or lost)',
                                 n, x.rel);
                fix := 'none needed after hr_shred_organization: delete those rows when the organization''s offboarding is complete; otherwise restore hr_organization_keys from a backup';
            ELSE
                status := 'ok'; detail := 'no credential of a shredded organization'; fix := NULL;
            END IF;
            RETURN NEXT;

            check_name := 'credentials linked once';
            IF hr_migrations.hr_column_exists(tbl, 'credential_id') AND NOT planted THEN
                EXECUTE format('SELECT count(*) FROM (SELECT t.credential_id FROM %s t WHERE t.credential_id IS NOT NULL
                                  GROUP BY t.credential_id HAVING count(*) OPERATOR(pg_catalog.>) 1) d', tbl) INTO n;
            ELSE
                n := 0;
            END IF;
            IF planted THEN
                status := 'warning'; detail := 'not checked: code is planted on a table of this migration (see foreign triggers)';
                fix := 'remove what "foreign triggers" reports; this check runs then';
            ELSIF n OPERATOR(pg_catalog.>) 0 THEN
                status := 'blocker';
                detail := format('%s credentials are linked by more than one integration of %s: setting the secret of one overwrites the others', n, tbl);
                fix := format('SELECT credential_id, array_agg(id) FROM %s WHERE credential_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1; unlink all but one (SET credential_id = NULL) and set the others'' secrets again with hr_set_integration_secret()', tbl);
            ELSE
                status := 'ok'; detail := 'every credential is linked by at most one integration'; fix := NULL;
            END IF;
            RETURN NEXT;
        ELSIF r.kind = 'token_hash' AND to_regclass(format('%I.%I', r.table_schema, r.objects ->> 'log_table')) IS NOT NULL THEN
            writes := writes || to_regclass(format('%I.%I', r.table_schema, r.objects ->> 'log_table'));
        END IF;

        check_name := 'foreign triggers';
        found_any := false;
        FOR x IN SELECT * FROM hr_migrations.hr_planted_code(writes) LOOP
            found_any := true;
            status := 'blocker';
            detail := CASE WHEN x.function_name IS NULL
                           THEN format('%s on %s would run as whoever writes the table', x.object, x.table_name)
                           ELSE format('%s on %s runs %s, owned by role %s, which is not a superuser',
                                       x.object, x.table_name, x.function_name, quote_ident(x.function_owner)) END;
            fix := 'code on a table the extension writes would run as its definer role: drop it, or use the extension''s own hr_touch_updated_at() for updated_at (docs/runbook.md, "Foreign triggers")';
            RETURN NEXT;
        END LOOP;
        IF NOT found_any THEN
            status := 'ok'; detail := 'no code owned by a non-superuser on the tables the extension writes'; fix := NULL;
            RETURN NEXT;
        END IF;

        check_name := 'TRIGGER and TRUNCATE grants';
        found_any := false;
        FOR x IN SELECT t.rel, string_agg(DISTINCT quote_ident(o.rolname), ', ') AS roles,
                        string_agg(DISTINCT a.privilege_type, ', ') AS privileges
                   FROM unnest(writes) t(rel)
                   JOIN pg_catalog.pg_class c ON c.oid = t.rel, aclexplode(c.relacl) a
                   JOIN pg_catalog.pg_roles o ON o.oid = a.grantee
                  WHERE a.grantee <> c.relowner AND a.privilege_type IN ('TRIGGER', 'TRUNCATE') AND NOT o.rolsuper
                  GROUP BY t.rel ORDER BY 1 LOOP
            found_any := true;
            status := CASE WHEN phase = 'not_applied' THEN 'warning' ELSE 'blocker' END;
            detail := format('roles %s hold %s on %s', x.roles, x.privileges, x.rel);
            fix := CASE WHEN phase = 'not_applied'
                        THEN format('sql/migrations/%s revokes them (hr_secure_table)', hr_migrations.hr_migration_script(r.migration))
                        ELSE format('REVOKE TRIGGER, TRUNCATE ON %s FROM %s, or run sql/migrations/%s again', x.rel, x.roles, hr_migrations.hr_migration_script(r.migration)) END;
            RETURN NEXT;
        END LOOP;
        IF NOT found_any THEN
            status := 'ok'; detail := 'no role but the owner may add triggers or truncate'; fix := NULL;
            RETURN NEXT;
        END IF;

        check_name := 'invalid indexes';
        found_any := false;
        FOR x IN SELECT i.indexrelid::regclass AS idx FROM pg_catalog.pg_index i WHERE i.indrelid = tbl AND NOT i.indisvalid LOOP
            found_any := true;
            status := 'warning';
            detail := format('index %s is INVALID (an interrupted CREATE INDEX CONCURRENTLY?)', x.idx);
            fix := CASE WHEN x.idx = to_regclass(format('%I.%I', r.table_schema, coalesce(r.objects ->> 'index', '')))
                        THEN format('sql/migrations/%s drops and rebuilds it', hr_migrations.hr_migration_script(r.migration))
                        ELSE format('DROP INDEX CONCURRENTLY %s; then create it again', x.idx) END;
            RETURN NEXT;
        END LOOP;
        IF NOT found_any THEN
            status := 'ok'; detail := format('no INVALID index on %s', tbl); fix := NULL;
            RETURN NEXT;
        END IF;

        check_name := 'long transactions on the table';
        found_any := false;
        FOR x IN SELECT DISTINCT a.pid, a.state, round(extract(epoch FROM now() - a.xact_start)::numeric) AS secs, l.mode
                   FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'relation' AND l.relation = ANY (writes) AND l.granted
                    AND a.pid <> pg_backend_pid()
                    AND a.xact_start < now() - make_interval(secs => long_ms / 1000)
                  ORDER BY 1 LOOP
            found_any := true;
            status := 'warning';
            detail := format('pid %s (%s) has held %s on a table of this migration for %s s', x.pid, x.state, x.mode, x.secs);
            fix := 'the scripts wait and retry (hr_ddl); to go faster, end that transaction: SELECT pg_terminate_backend(' || x.pid || ')';
            RETURN NEXT;
        END LOOP;
        IF NOT found_any THEN
            status := 'ok'; detail := format('no transaction has held these tables for more than %s ms (hr_migrations.preflight_long_transaction)', long_ms); fix := NULL;
            RETURN NEXT;
        END IF;

        -- What Supabase's Security Advisor (splinter) would report on the
        -- tables of this migration: rls_disabled_in_public,
        -- sensitive_columns_exposed, policy_exists_rls_disabled,
        -- rls_enabled_no_policy. None from migrated on.
        check_name := 'security advisor';
        found_any := false;
        FOR x IN
            WITH t AS (
                SELECT c.oid AS rel, c.relnamespace, c.relrowsecurity AS rls,
                       (SELECT count(*) FROM pg_catalog.pg_policy y WHERE y.polrelid OPERATOR(pg_catalog.=) c.oid) AS policies,
                       EXISTS (SELECT 1 FROM pg_catalog.pg_roles o
                                WHERE o.rolname OPERATOR(pg_catalog.=) ANY (ARRAY['anon', 'authenticated']::name[])
                                  AND pg_catalog.has_table_privilege(o.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE')) AS exposed,
                       EXISTS (SELECT 1 FROM pg_catalog.pg_roles o
                                WHERE o.rolname OPERATOR(pg_catalog.=) ANY (ARRAY['anon', 'authenticated']::name[])
                                  AND pg_catalog.has_table_privilege(o.oid, c.oid, 'SELECT')) AS readable,
                       (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
                          FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                           AND a.attname::pg_catalog.text OPERATOR(pg_catalog.~*) '(token|secret|password|passwd|api_?key|private_?key|credential|encrypted)') AS sensitive
                  FROM pg_catalog.pg_class c
                 WHERE c.oid OPERATOR(pg_catalog.=) ANY (ARRAY[tbl,
                                   -- NULL for a kind without a credentials or log table
                                   pg_catalog.to_regclass(pg_catalog.quote_ident(r.table_schema) OPERATOR(pg_catalog.||) '.'
                                                          OPERATOR(pg_catalog.||) pg_catalog.quote_ident(r.objects ->> 'credentials_table')),
                                   pg_catalog.to_regclass(pg_catalog.quote_ident(r.table_schema) OPERATOR(pg_catalog.||) '.'
                                                          OPERATOR(pg_catalog.||) pg_catalog.quote_ident(r.objects ->> 'log_table'))]::pg_catalog.oid[])
            )
            SELECT t.rel::pg_catalog.regclass AS rel, l.lint, l.why FROM t,
                   LATERAL (VALUES
                       ('rls_disabled_in_public', t.relnamespace OPERATOR(pg_catalog.=) 'public'::pg_catalog.regnamespace::pg_catalog.oid AND NOT t.rls AND t.exposed,
                        'row level security is off and anon or authenticated may use the table'),
                       ('sensitive_columns_exposed', NOT t.rls AND t.readable AND t.sensitive IS NOT NULL,
                        pg_catalog.format('anon or authenticated may read %s with no row level security', t.sensitive)),
                       ('policy_exists_rls_disabled', NOT t.rls AND t.policies OPERATOR(pg_catalog.>) 0,
                        'it has policies but row level security is off'),
                       ('rls_enabled_no_policy', t.rls AND t.policies OPERATOR(pg_catalog.=) 0,
                        'row level security is on and it has no policy')
                   ) l(lint, hit, why)
             WHERE l.hit
             ORDER BY 1, 2
        LOOP
            found_any := true;
            status := 'warning';
            detail := format('%s: %s: %s', x.lint, x.rel, x.why);
            fix := CASE WHEN phase OPERATOR(pg_catalog.=) ANY (ARRAY['not_applied', 'dual'])
                        THEN format('sql/migrations/%s isolates the table by organization once every row is migrated', hr_migrations.hr_migration_script(r.migration))
                        ELSE format('run sql/migrations/%s again (docs/security.md, "Row isolation")', hr_migrations.hr_migration_script(r.migration)) END;
            RETURN NEXT;
        END LOOP;
        IF NOT found_any THEN
            status := 'ok'; detail := 'no Security Advisor finding on the tables of this migration'; fix := NULL;
            RETURN NEXT;
        END IF;

        IF planted THEN
            NULL;  -- the table scans below are not run (see "foreign triggers")
        ELSIF phase <> 'not_applied' THEN
            check_name := 'rows that cannot be migrated';
            SELECT c.blocked INTO n FROM hr_migrations.hr_operation_counts(r.migration, 'backfill') c;
            IF n > 0 THEN
                status := 'warning';
                detail := format('%s rows of %s cannot be migrated (hr_migration_status() says why)', n, tbl);
                fix := 'fix or delete them; the phase stays dual until then';
            ELSE
                status := 'ok'; detail := 'every row can be migrated'; fix := NULL;
            END IF;
            RETURN NEXT;
        ELSIF r.kind = 'tenant_column' THEN
            check_name := 'rows that cannot be migrated';
            PERFORM hr_migrations.hr_plain_table('public.hr_candidates'::regclass);
            EXECUTE format('SELECT count(*) FROM %s t WHERE NOT EXISTS (SELECT 1 FROM public.hr_candidates c
                              WHERE c.id = t.candidate_id AND c.organization_id IS NOT NULL)', tbl) INTO n;
            IF n > 0 THEN
                status := 'warning';
                detail := format('%s rows of %s have a candidate that is missing or has no organization', n, tbl);
                fix := 'they will be counted as blocked and keep the phase at dual: fix hr_candidates.organization_id or delete them';
            ELSE
                status := 'ok'; detail := 'every row has a candidate with an organization'; fix := NULL;
            END IF;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- A role's own setting of a parameter (ALTER ROLE ... SET), if any.
CREATE FUNCTION hr_migrations.hr_role_setting(role_id oid, name text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT split_part(s.cfg, '=', 2)
      FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s(cfg)
     WHERE d.setrole = role_id AND d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
       AND split_part(s.cfg, '=', 1) = name
     ORDER BY d.setdatabase DESC
     LIMIT 1
$$;

-- The scripts' first step: prints the preflight's warnings for a migration
-- and stops (55000) on a blocker.
CREATE FUNCTION hr_migrations.hr_preflight_gate(migration text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    blockers integer := 0;
BEGIN
    FOR p IN SELECT * FROM hr_migrations.hr_preflight() f WHERE f.migration IN (hr_preflight_gate.migration, '*')
                                                       AND f.status <> 'ok' LOOP
        IF p.status = 'blocker' THEN
            blockers := blockers + 1;
            RAISE WARNING '%: preflight: % (blocker): %', migration, p.check_name, p.detail USING HINT = coalesce(p.fix, '');
        ELSE
            RAISE WARNING '%: preflight: %: %', migration, p.check_name, p.detail USING HINT = coalesce(p.fix, '');
        END IF;
    END LOOP;
    IF blockers > 0 THEN
        RAISE EXCEPTION '%: % preflight blockers: nothing was changed', migration, blockers
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'SELECT * FROM hr_migrations.hr_preflight() WHERE status = ''blocker'' lists them with their fixes';
    END IF;
END
$$;

-- -----------------------------------------------------------------------------
-- Phases.

-- Moves a migration to another phase, or refuses (55000) saying why. The
-- rules are src/phase.rs (hr_phase_refusal); the kind does the brief DDL of
-- the move (hr_<kind>_enter); the work a phase leaves (clearing plaintext,
-- validating NOT NULL, erasing and dropping legacy columns) is done in
-- committed batches by CALL hr_run_backfill(migration), or all at once by
-- CALL hr_run_phase(migration, phase). Setting the current phase again is a
-- no-op. Phase changes are serialised by a row lock on the phase row.
-- Runs as the caller (it does DDL on the application's tables): the DBA.
CREATE FUNCTION hr_migrations.hr_set_phase(migration text, phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_phase text;
    state record;
    pending bigint := 0;
    blocked bigint := 0;
    cleanup_pending bigint := 0;
    cleanup_blocked bigint := 0;
    cleanup_op text;
    refusal record;
    enforced_for double precision;
    period interval;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();
    PERFORM hr_migrations.hr_migration_entry(migration);
    PERFORM hr_migrations.hr_phase_accepts_plaintext(phase);  -- 22023 for an unknown phase
    INSERT INTO hr_migrations.hr_migration_phases AS m (migration, phase)
    VALUES (hr_set_phase.migration, 'not_applied')
    ON CONFLICT ON CONSTRAINT hr_migration_phases_pkey DO NOTHING;
    SELECT m.phase, extract(epoch FROM now() - m.changed_at) INTO current_phase, enforced_for
      FROM hr_migrations.hr_migration_phases m
     WHERE m.migration = hr_set_phase.migration
       FOR UPDATE;
    IF current_phase = phase THEN
        RETURN;
    END IF;

    EXECUTE format('SELECT * FROM %s($1)', hr_migrations.hr_kind_function(migration, 'state'))
       INTO state USING migration;
    IF state.applied AND phase IN ('migrated', 'enforced') THEN
        SELECT c.pending, c.blocked INTO pending, blocked
          FROM hr_migrations.hr_operation_counts(migration, 'backfill') c;
    END IF;
    IF state.applied AND phase = 'contracted' THEN
        cleanup_op := hr_migrations.hr_phase_operation(migration, 'enforced');
        IF cleanup_op IS NOT NULL THEN
            SELECT c.pending, c.blocked INTO cleanup_pending, cleanup_blocked
              FROM hr_migrations.hr_operation_counts(migration, cleanup_op) c;
        END IF;
    END IF;
    PERFORM hr_migrations.hr_backfill_in_progress();  -- loads the library, which defines the setting below
    period := coalesce(current_setting('hr_migrations.deprecation_period', true), '30 days')::interval;
    SELECT * INTO refusal
      FROM hr_migrations.hr_phase_refusal(migration, current_phase, phase, state.applied, state.ready,
               pending, blocked, cleanup_pending, cleanup_blocked,
               CASE WHEN current_phase = 'enforced' THEN enforced_for END,
               extract(epoch FROM period));
    IF FOUND THEN
        RAISE EXCEPTION '%', refusal.reason
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = refusal.hint;
    END IF;

    EXECUTE format('SELECT %s($1, $2, $3)', hr_migrations.hr_kind_function(migration, 'enter'))
      USING migration, current_phase, phase;

    UPDATE hr_migrations.hr_migration_phases m
       SET phase = hr_set_phase.phase, changed_at = now(), changed_by = session_user
     WHERE m.migration = hr_set_phase.migration;
    RAISE NOTICE '%: phase % -> %', migration, current_phase, phase;
END
$$;

-- Waits (under a short lock_timeout) until every transaction that has
-- written the table has ended: SHARE conflicts with the ROW EXCLUSIVE lock
-- every writer holds until it commits. Used when a phase stops accepting
-- plaintext, so nothing written before the move escapes it. The lock is
-- held until the caller's transaction ends (the phase change commits).
CREATE FUNCTION hr_migrations.hr_wait_for_writers(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM hr_migrations.hr_bound_lock_wait();
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', tbl);
END
$$;

-- DDL inside hr_set_phase waits for its locks at most the session's
-- lock_timeout, or hr_migrations.ddl_lock_timeout when the session has none
-- (CALL hr_run_phase retries a move that timed out, with backoff).
CREATE FUNCTION hr_migrations.hr_bound_lock_wait() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('lock_timeout') IN ('0', '0ms') THEN
        PERFORM set_config('lock_timeout',
            hr_migrations.hr_setting_ms('hr_migrations.ddl_lock_timeout', 1000)::bigint || 'ms', true);
    END IF;
END
$$;

-- -----------------------------------------------------------------------------
-- Procedures: batches in their own transactions. They COMMIT, so CALL them
-- outside an explicit transaction block. They cannot be SECURITY DEFINER
-- nor pin search_path with a SET clause (a procedure with one cannot
-- COMMIT), and a caller's search_path may hold a closer-matching overload
-- of an operator or function planted by a lesser role (on Supabase,
-- postgres owns public and extensions) that a superuser's CALL would run.
-- So each procedure pins search_path = pg_catalog, pg_temp with a
-- transaction-local set_config as its first statement and again after
-- every COMMIT and every nested CALL (either ends the transaction the
-- setting belonged to); it has no DECLARE initializer (those run before
-- the first statement); every extension object is named by schema; and the
-- caller's setting is back when the CALL ends. The same step checks the
-- extension's integrity (src/integrity.rs) before the procedure calls a
-- function the definer role owns.

-- What a procedure does first and after every COMMIT or nested CALL: pin
-- search_path for the rest of the transaction, then refuse (55000) unless
-- the definer role is out of reach and the extension intact. No SET clause:
-- one would undo the pin when the function returns.
CREATE FUNCTION hr_migrations.hr_procedure_step() RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- Literals in the statements the procedures EXECUTE are written for
    -- standard strings: a database the admin set otherwise must not make a
    -- backslash end one.
    PERFORM pg_catalog.set_config('standard_conforming_strings', 'on', true);
    PERFORM hr_migrations.hr_require_integrity();
END
$$;

-- " (a, b)": the columns of tbl that a predicate's text names (a word of
-- it, folded to lower case as PostgreSQL folds identifiers, or a quoted
-- identifier), for ANALYZE. '' (every column) when it names none, when the
-- table was never analyzed (VACUUM and CREATE INDEX set reltuples without
-- gathering any statistics), or when it has extended statistics (their
-- columns, which a column list would leave out, could then not be
-- computed: a WARNING, and the object left stale). Words that happen to
-- be column names, or a quote inside a string literal, only change which
-- columns are analyzed.
CREATE FUNCTION hr_migrations.hr_predicate_columns(tbl regclass, predicate text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(' (' || string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) || ')', '')
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_stat_all_tables st
                    WHERE st.relid = tbl AND (st.last_analyze IS NOT NULL OR st.last_autoanalyze IS NOT NULL))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext x WHERE x.stxrelid = tbl)
       AND a.attname IN (SELECT coalesce(replace(m[1], '""', '"'),
                                         translate(m[2], 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'))
                           FROM regexp_matches(predicate, '"((?:[^"]|"")+)"|([[:alpha:]_][[:alnum:]_$]*)', 'g') m)
$$;

-- ANALYZE tbl (columns: '' for all, or " (a, b)"), waiting at most 100 ms
-- for its lock: ANALYZE behind another session's CREATE INDEX
-- CONCURRENTLY, which waits for the caller's transaction, is a deadlock.
-- NULL when done; else why not (the table is locked by DDL, or a column
-- of the list was dropped or renamed meanwhile), for the caller to say.
CREATE FUNCTION hr_migrations.hr_analyze_briefly(tbl regclass, columns text DEFAULT '') RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
BEGIN
    EXECUTE format('ANALYZE %s%s', tbl, columns);
    RETURN NULL;
EXCEPTION
    WHEN lock_not_available THEN
        RETURN 'the table is locked by DDL';
    WHEN undefined_column THEN
        RETURN 'a column changed meanwhile';
END
$$;

-- Runs one operation of a migration to the end: one batch per
-- transaction, a NOTICE per batch, resumable after a crash or cancel (the
-- cursor is committed with each batch). With batch_size NULL the size
-- starts at the registry's default and adapts so each batch takes about
-- hr_migrations.batch_target_ms; hr_migrations.batch_pause_ms pauses between
-- batches; while a standby replays more than
-- hr_migrations.max_replication_lag_ms behind, it waits. Rows that other
-- transactions held locked are retried a few times at the end. Statistics
-- of the written tables are refreshed after the first batch when they were
-- never gathered (a cached plan made while a table was empty would scan it
-- for every row afterwards). max_batches stops early; CALL again to resume.
-- hr_batch_loop does the work and hands back the rows still pending and
-- blocked when it finished (NULL when max_batches stopped it early), so
-- hr_run_backfill need not count them again (a count reads the whole table).
CREATE PROCEDURE hr_migrations.hr_batch_loop(migration text, operation text, batch_size integer,
                               max_batches integer, INOUT rows_pending bigint, INOUT rows_blocked bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    entry hr_migrations.hr_migration_registry;
    spec record;
    size integer;
    adaptive boolean;
    min_size integer;
    max_size integer;
    target_ms double precision;
    pause_ms double precision;
    max_lag_ms double precision;
    n bigint;
    batches integer;
    done bigint;
    started timestamptz;
    batch_started timestamptz;
    ms double precision;
    c record;
    retries integer;
    lag_ms double precision;
    analyzed boolean;
    expected bigint;
    t regclass;
    why_not text;
    sized double precision[];
    efficiency double precision;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    entry := hr_migrations.hr_migration_entry(migration);
    -- A size named by the call, else hr_migrations.batch_size (0: none).
    batch_size := coalesce(batch_size, nullif(hr_migrations.hr_setting_ms('hr_migrations.batch_size', 0)::integer, 0));
    adaptive := batch_size IS NULL;
    min_size := 10;
    batches := 0;
    done := 0;
    started := clock_timestamp();
    retries := 0;
    analyzed := false;
    rows_pending := NULL;
    rows_blocked := NULL;
    PERFORM hr_migrations.hr_require_applied(migration);
    IF max_batches IS NOT NULL AND max_batches < 1 THEN
        RAISE EXCEPTION 'max_batches must be at least 1 (got %)', max_batches
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO spec FROM hr_migrations.hr_operation_spec(migration, operation);
    -- A run that names no size starts at a fifth of the registry's default
    -- and grows at most x1.2 a batch: its first batches read cold pages (a
    -- first batch of 5,000 sessions took 359-589 ms at 3M sessions, the
    -- next ones 90 ms).
    size := coalesce(batch_size, greatest(min_size, entry.default_batch_size / 5));
    PERFORM hr_migrations.hr_check_batch_size(size);
    max_size := greatest(size, least(entry.default_batch_size * 10, 1000000));
    target_ms := hr_migrations.hr_setting_ms('hr_migrations.batch_target_ms', 100);
    pause_ms := hr_migrations.hr_setting_ms('hr_migrations.batch_pause_ms', 0);
    max_lag_ms := hr_migrations.hr_setting_ms('hr_migrations.max_replication_lag_ms', 10000);

    -- Statistics as the run starts: the column it reads was often just
    -- filled or emptied, and a stale estimate makes every batch sort all
    -- pending rows (see hr_engine_batch). Skipped, with a NOTICE, when the
    -- table is busy: ANALYZE waiting behind another session's CREATE INDEX
    -- CONCURRENTLY, which waits for this transaction, is a deadlock.
    -- Only when stale, as autovacuum would judge it (a tenth of the rows
    -- changed since the last ANALYZE, or never analyzed). Only the key and
    -- the columns the predicates name (hr_predicate_columns says when it is
    -- every column): the others tell the batches' plans nothing (30k
    -- integrations: 113-123 ms for all ten columns, 75 ms for the four the
    -- move's predicate names). An ANALYZE of some columns leaves the
    -- table's count of changes as it was: autovacuum still analyzes the
    -- others when it would have, and a later run that finds the table
    -- still stale analyzes those columns again.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class k
                 LEFT JOIN pg_catalog.pg_stat_all_tables st ON st.relid = k.oid
                WHERE k.oid = spec.tbl
                  AND (k.reltuples < 0 OR coalesce(st.n_mod_since_analyze, 0) > 0.1 * k.reltuples)) THEN
        -- The key the batches pick by, and what the predicates name.
        why_not := hr_migrations.hr_analyze_briefly(spec.tbl,
                       hr_migrations.hr_predicate_columns(spec.tbl, concat_ws(' ', 'id', spec.pending, spec.blocked)));
        IF why_not IS NOT NULL THEN
            RAISE NOTICE '%: %: statistics of % not refreshed: %', migration, operation, spec.tbl, why_not;
        END IF;
    END IF;
    -- What the run expects to do, for the ETA of hr_migration_progress: the
    -- planner's estimate of the pending rows (statistics just refreshed
    -- if stale), not a count: counting reads the whole table and joins
    -- whatever the predicate joins (0.17 s of a 4 s run of 300k sessions).
    expected := hr_migrations.hr_operation_estimate(migration, operation);
    INSERT INTO hr_migrations.hr_batch_progress AS p (migration, operation)
    VALUES (hr_batch_loop.migration, hr_batch_loop.operation)
    ON CONFLICT ON CONSTRAINT hr_batch_progress_pkey DO NOTHING;
    -- A run after a finished one starts its counters afresh; a run after
    -- an interrupted one (crash, cancel, max_batches) carries them on.
    UPDATE hr_migrations.hr_batch_progress p
       SET running_pid = pg_backend_pid(),
           batches = CASE WHEN p.finished_at IS NULL THEN p.batches ELSE 0 END,
           rows_done = CASE WHEN p.finished_at IS NULL THEN p.rows_done ELSE 0 END,
           rows_failed = CASE WHEN p.finished_at IS NULL THEN p.rows_failed ELSE 0 END,
           started_at = CASE WHEN p.finished_at IS NULL AND p.started_at IS NOT NULL THEN p.started_at
                             ELSE clock_timestamp() END,
           rows_expected = CASE WHEN p.finished_at IS NULL THEN p.rows_done ELSE 0 END + expected,
           finished_at = NULL, last_error = NULL
     WHERE p.migration = hr_batch_loop.migration AND p.operation = hr_batch_loop.operation;
    COMMIT;
    PERFORM hr_migrations.hr_procedure_step();

    LOOP
        LOOP
            IF max_lag_ms > 0 THEN
                LOOP
                    SELECT max(extract(epoch FROM r.replay_lag) * 1000) INTO lag_ms FROM pg_catalog.pg_stat_replication r;
                    EXIT WHEN lag_ms IS NULL OR lag_ms <= max_lag_ms;
                    RAISE NOTICE '%: %: a standby replays % ms behind (limit hr_migrations.max_replication_lag_ms = %); waiting',
                        migration, operation, round(lag_ms::numeric), max_lag_ms;
                    PERFORM pg_sleep(1);
                END LOOP;
            END IF;
            batch_started := clock_timestamp();
            -- No wrap at the end of the table: the count after the loop
            -- finds the rows skipped on the way, and a next pass starts.
            n := hr_migrations.hr_engine_batch(migration, operation, size, false);
            COMMIT;
            PERFORM hr_migrations.hr_procedure_step();
            ms := extract(epoch FROM clock_timestamp() - batch_started) * 1000;
            IF n = 0 THEN
                -- The end of the walk, or (a walk in physical order) a
                -- stretch with nothing to do: go on from the cursor.
                EXIT WHEN EXISTS (SELECT 1 FROM hr_migrations.hr_batch_progress p
                                   WHERE p.migration = hr_batch_loop.migration AND p.operation = hr_batch_loop.operation
                                     AND (p.finished_at IS NOT NULL OR p.last_tid IS NULL));
                CONTINUE;
            END IF;
            batches := batches + 1;
            done := done + n;
            RAISE NOTICE '%: %: batch % done, % rows in % ms (batch size %), % rows so far (% rows/s)',
                migration, operation, batches, n, round(ms::numeric, 1), size, done,
                round(done / greatest(extract(epoch FROM clock_timestamp() - started), 0.001));
            IF NOT analyzed THEN
                -- Statistics for tables that never had any: the first batch
                -- made them non-empty, and cached plans (foreign-key checks
                -- among them) are made again once they change.
                FOR t IN SELECT x FROM unnest(spec.writes) x
                          JOIN pg_catalog.pg_class k ON k.oid = x
                         WHERE k.reltuples < 0 OR k.relpages = 0 LOOP
                    EXECUTE format('ANALYZE %s', t);
                END LOOP;
                COMMIT;
                PERFORM hr_migrations.hr_procedure_step();
                analyzed := true;
            END IF;
            IF adaptive AND ms > 0 THEN
                -- A moving average of the batches' durations against the
                -- target, at most x1.2 up per batch (src/batch_size.rs).
                sized := hr_migrations.hr_next_batch_size(size, ms, target_ms, efficiency, min_size, max_size);
                size := sized[1]::integer;
                efficiency := sized[2];
            END IF;
            IF max_batches IS NOT NULL AND batches >= max_batches THEN
                RAISE NOTICE '%: %: stopped after % batches as asked; CALL again to resume', migration, operation, batches;
                UPDATE hr_migrations.hr_batch_progress p SET running_pid = NULL
                 WHERE p.migration = hr_batch_loop.migration AND p.operation = hr_batch_loop.operation;
                COMMIT;
                PERFORM hr_migrations.hr_procedure_step();
                RETURN;
            END IF;
            IF pause_ms > 0 THEN
                PERFORM pg_sleep(pause_ms / 1000.0);
            END IF;
        END LOOP;
        SELECT * INTO c FROM hr_migrations.hr_operation_counts(migration, operation, 'remaining');
        -- Rows other transactions held locked were skipped (SKIP LOCKED):
        -- give them a few chances before reporting them as pending.
        EXIT WHEN c.pending = 0 OR retries >= 5;
        retries := retries + 1;
        PERFORM pg_sleep(0.2 * retries);
    END LOOP;

    UPDATE hr_migrations.hr_batch_progress p SET running_pid = NULL
     WHERE p.migration = hr_batch_loop.migration AND p.operation = hr_batch_loop.operation;
    COMMIT;
    PERFORM hr_migrations.hr_procedure_step();
    RAISE NOTICE '%: %: finished: % rows in % batches, % s', migration, operation, done, batches,
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    IF c.pending > 0 OR c.blocked > 0 THEN
        RAISE WARNING '%: %: % rows pending and % rows blocked remain', migration, operation, c.pending, c.blocked
            USING HINT = 'SELECT * FROM hr_migrations.hr_migration_status() and hr_migrations.hr_batch_failures say why; CALL again after fixing them';
    END IF;
    rows_pending := c.pending;
    rows_blocked := c.blocked;
END
$$;

CREATE PROCEDURE hr_migrations.hr_run_batches(migration text, operation text, batch_size integer DEFAULT NULL,
                                max_batches integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    pending bigint;
    blocked bigint;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    CALL hr_migrations.hr_batch_loop(migration, operation, batch_size, max_batches, pending, blocked);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- Runs the pending work of a migration's current phase: the backfill in
-- dual and migrated, the clearing or erasing the kind defines after, then
-- the kind's closing DDL (hr_<kind>_finish). In dual, when nothing is left
-- pending or blocked and promote is true, moves the phase to migrated (a
-- refused promotion is a WARNING: the batches are committed either way).
CREATE PROCEDURE hr_migrations.hr_run_backfill(migration text, batch_size integer DEFAULT NULL,
                                 max_batches integer DEFAULT NULL, promote boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
DECLARE
    phase text;
    op text;
    pending bigint;
    blocked bigint;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    phase := hr_migrations.hr_require_applied(migration);
    op := hr_migrations.hr_phase_operation(migration, phase);
    pending := 0;
    blocked := 0;
    IF op IS NOT NULL THEN
        CALL hr_migrations.hr_batch_loop(migration, op, batch_size, max_batches, pending, blocked);
        PERFORM hr_migrations.hr_procedure_step();
        IF pending IS NULL THEN
            -- Stopped by max_batches: count what is left.
            SELECT c.pending, c.blocked INTO pending, blocked FROM hr_migrations.hr_operation_counts(migration, op) c;
        END IF;
        IF max_batches IS NOT NULL AND pending > 0 THEN
            RETURN;
        END IF;
    END IF;
    IF pending = 0 AND blocked = 0 THEN
        -- Dispatch by kind, statically: a CALL run through EXECUTE could not COMMIT.
        CASE (hr_migrations.hr_migration_entry(migration)).kind
            WHEN 'token_hash' THEN CALL hr_migrations.hr_token_hash_finish(migration, phase);
            WHEN 'tenant_column' THEN CALL hr_migrations.hr_tenant_column_finish(migration, phase);
            WHEN 'credential_move' THEN CALL hr_migrations.hr_credential_move_finish(migration, phase);
        END CASE;
        PERFORM hr_migrations.hr_procedure_step();
        IF phase = 'dual' AND promote THEN
            BEGIN
                PERFORM hr_migrations.hr_set_phase(migration, 'migrated');
            EXCEPTION WHEN object_not_in_prerequisite_state THEN
                RAISE WARNING '%: backfill complete but phase stays dual: %', migration, SQLERRM;
            END;
        END IF;
    ELSE
        RAISE NOTICE '%: phase stays %', migration, phase;
    END IF;
END
$$;

-- hr_set_phase, then the work that phase leaves, each step committed. A
-- move whose brief DDL cannot get its lock is retried with backoff and
-- jitter (like hr_ddl), for at most hr_migrations.ddl_retry_budget.
CREATE PROCEDURE hr_migrations.hr_run_phase(migration text, phase text, batch_size integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    budget_ms double precision;
    attempt integer;
    waited double precision;
    pause double precision;
    started timestamptz;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    budget_ms := hr_migrations.hr_setting_ms('hr_migrations.ddl_retry_budget', 600000);
    attempt := 0;
    waited := 0;
    LOOP
        attempt := attempt + 1;
        started := clock_timestamp();
        BEGIN
            PERFORM hr_migrations.hr_set_phase(migration, phase);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            waited := waited + extract(epoch FROM clock_timestamp() - started) * 1000;
            IF waited >= budget_ms THEN
                RAISE;
            END IF;
            pause := least(10000, 100 * 2 ^ least(attempt - 1, 10)) * (0.5 + random() / 2);
            RAISE NOTICE '%: -> %: lock not available (attempt %); retrying in % ms', migration, phase, attempt,
                round(pause::numeric);
            PERFORM pg_catalog.pg_sleep(pause / 1000);
            waited := waited + pause;
        END;
    END LOOP;
    COMMIT;
    PERFORM hr_migrations.hr_procedure_step();
    CALL hr_migrations.hr_run_backfill(migration, batch_size, NULL, false);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- Step 2 of a rollback: an operation of the migration's kind that undoes
-- the data move, to the end (sql/rollback/ calls it).
CREATE PROCEDURE hr_migrations.hr_run_rollback(migration text, batch_size integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    CALL hr_migrations.hr_run_batches(migration, 'rollback', batch_size);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;
