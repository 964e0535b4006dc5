-- Running the plans (src/kinds, hr_plan): the procedures the migration and
-- rollback files CALL, one section at a time, and the registry's built-in
-- entries and validation. Placed after the Rust functions they use.

-- -----------------------------------------------------------------------------
-- The registry: every row written is checked against its kind (the names
-- its plan needs, each a name of 1 to 63 bytes; 22023 naming the key), then
-- the three migrations of the plan are registered.
CREATE FUNCTION hr_migrations.hr_registry_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM hr_migrations.hr_check_registry_entry(NEW.migration, NEW.kind, NEW.table_schema, NEW.table_name, NEW.objects);
    RETURN NEW;
END
$$;
CREATE TRIGGER hr_migration_registry_check
    BEFORE INSERT OR UPDATE ON hr_migrations.hr_migration_registry
    FOR EACH ROW EXECUTE FUNCTION hr_migrations.hr_registry_check();

INSERT INTO hr_migrations.hr_migration_registry
       (migration, position, kind, table_schema, table_name, default_batch_size, objects, builtin)
SELECT b.migration, b.position, b.kind, b.table_schema, b.table_name, b.default_batch_size, b.objects, true
  FROM hr_migrations.hr_builtin_migrations() b;

-- -----------------------------------------------------------------------------
-- Which sections of a file finished in its current run: section 1 forgets
-- the previous run, each section records itself, and section k refuses
-- unless section k - 1 did and the top-level statements between them are
-- done. So a runner that goes on after a failed statement (psql without
-- ON_ERROR_STOP) cannot run a later section over an unfinished one.
CREATE TABLE hr_migrations.hr_apply_state (
    migration   text NOT NULL REFERENCES hr_migrations.hr_migration_registry (migration) ON DELETE CASCADE,
    script      text NOT NULL CHECK (script IN ('migrate', 'rollback')),
    section     integer NOT NULL CHECK (section > 0),
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, script, section)
);
COMMENT ON TABLE hr_migrations.hr_apply_state IS
    'hr_migrations: the sections of a migration or rollback file that finished in its current run';

-- One line on where a migration stands (the last NOTICE of a file).
CREATE FUNCTION hr_migrations.hr_status_line(migration text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%s: %s: %s rows, %s migrated, %s pending, %s blocked; %s',
                  s.migration, s.phase, s.total, s.migrated, s.pending, s.blocked, s.note)
      FROM hr_migrations.hr_migration_status() s
     WHERE s.migration = hr_status_line.migration
$$;

-- Runs section `section` of hr_plan(migration, phase): every step that is
-- not a top-level statement, in order, each skipped when its skip_when
-- holds (options is its $1), each committed: retried DDL under the lock
-- retry (hr_run_ddl), waiting DDL, the backfill and batch procedures,
-- preconditions (55000 with the plan's message and hint), NOTICEs. The
-- first section refuses inside a transaction block (25001) before anything
-- changes; a later one refuses (55000) unless the one before finished in
-- this run and the top-level statements between are done. No SET clause
-- and no DECLARE initializer (docs/security.md: procedures pin
-- search_path themselves, after every COMMIT and nested CALL).
CREATE PROCEDURE hr_migrations.hr_run_plan(migration text, phase text, section integer, options jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    which text;
    file text;
    s record;
    skip boolean;
    ok boolean;
    msg text;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    which := CASE phase WHEN 'not_applied' THEN 'rollback' ELSE 'migrate' END;
    file := format('%s/%s', CASE which WHEN 'rollback' THEN 'sql/rollback' ELSE 'sql/migrations' END,
                   coalesce(hr_migrations.hr_migration_script(migration), '(unknown migration)'));
    PERFORM hr_migrations.hr_require_autocommit(file);
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hr_migrations.hr_plan(migration, phase) p WHERE p.section = hr_run_plan.section) THEN
        RAISE EXCEPTION '% has no section %', file, section
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('SELECT * FROM hr_migrations.hr_plan(%L, %L) lists its steps by section', migration, phase);
    END IF;
    IF section = 1 THEN
        DELETE FROM hr_migrations.hr_apply_state a
         WHERE a.migration = hr_run_plan.migration AND a.script = which;
        COMMIT;
        PERFORM hr_migrations.hr_procedure_step();
    ELSE
        IF NOT EXISTS (SELECT 1 FROM hr_migrations.hr_apply_state a
                        WHERE a.migration = hr_run_plan.migration AND a.script = which
                          AND a.section = hr_run_plan.section - 1) THEN
            RAISE EXCEPTION '%: section % did not finish in this run, so section % does not start', file, section - 1, section
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'a statement before this one failed: fix its cause and run the whole file again (every step is idempotent)';
        END IF;
        FOR s IN SELECT p.name, p.skip_when FROM hr_migrations.hr_plan(migration, phase) p
                  WHERE p.section = hr_run_plan.section - 1 AND p.run = 'top_level' ORDER BY p.step LOOP
            EXECUTE 'SELECT ' || s.skip_when INTO ok;
            IF ok IS NOT TRUE THEN
                RAISE EXCEPTION '%: the statement before this one did not finish (%)', file, s.name
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'fix its cause (a lock or statement timeout, a cancel) and run the whole file again';
            END IF;
        END LOOP;
    END IF;

    FOR s IN SELECT p.* FROM hr_migrations.hr_plan(migration, phase) p
              WHERE p.section = hr_run_plan.section AND p.run <> 'top_level' ORDER BY p.step LOOP
        IF s.skip_when IS NOT NULL THEN
            EXECUTE 'SELECT ' || s.skip_when INTO skip USING options;
            CONTINUE WHEN skip;
        END IF;
        -- Dispatch by how the step runs; the procedures are CALLed
        -- statically (a CALL run through EXECUTE could not COMMIT).
        IF s.run IN ('retry', 'wait') THEN
            CALL hr_migrations.hr_run_ddl(migration, s.statement, s.run = 'wait', s.statement NOT LIKE 'SELECT %');
        ELSIF s.run = 'backfill' THEN
            CALL hr_migrations.hr_run_backfill(migration, NULL, NULL, true);
        ELSIF s.run = 'backfill_no_promote' THEN
            CALL hr_migrations.hr_run_backfill(migration, NULL, NULL, false);
        ELSIF s.run LIKE 'batches:%' THEN
            CALL hr_migrations.hr_run_batches(migration, substr(s.run, 9));
        ELSIF s.run = 'require' THEN
            EXECUTE 'SELECT ' || s.statement INTO ok USING options;
            IF ok IS NOT TRUE THEN
                RAISE EXCEPTION '%: %', migration, s.refusal ->> 'message'
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = replace(s.refusal ->> 'hint', '<migration>', quote_literal(migration));
            END IF;
        ELSIF s.run = 'notice' THEN
            EXECUTE 'SELECT ' || s.statement INTO msg USING options;
            RAISE NOTICE '%', msg;
        ELSE
            RAISE EXCEPTION 'step % of %: unknown way to run: %', s.step, file, s.run
                USING ERRCODE = 'internal_error';
        END IF;
        PERFORM hr_migrations.hr_procedure_step();
    END LOOP;

    INSERT INTO hr_migrations.hr_apply_state AS a (migration, script, section)
    VALUES (hr_run_plan.migration, which, hr_run_plan.section)
    ON CONFLICT ON CONSTRAINT hr_apply_state_pkey DO UPDATE SET finished_at = now();
    COMMIT;
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- What a migration file CALLs, once per section (sql/migrations/): the
-- plan to migrated. options: a JSON object, '{}' by default.
CREATE PROCEDURE hr_migrations.hr_apply(migration text, section integer DEFAULT 1, options jsonb DEFAULT '{}')
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    CALL hr_migrations.hr_run_plan(migration, 'dual', section, options);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- What a rollback file CALLs (sql/rollback/): the plan back to
-- not_applied. options: {"drop_hash_only_tokens": true} (token_hash),
-- {"disable_rls": true} (tenant_column).
CREATE PROCEDURE hr_migrations.hr_rollback(migration text, section integer DEFAULT 1, options jsonb DEFAULT '{}')
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    CALL hr_migrations.hr_run_plan(migration, 'not_applied', section, options);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;
