-- Running the plans (src/kinds, hr_plan): the procedures the migration and
-- rollback files CALL, one section at a time, and the registry's built-in
-- entries and validation. Placed after the Rust functions they use.

-- -----------------------------------------------------------------------------
-- The registry: every row written is checked against its kind (the names
-- its plan needs, each a safe name of 1 to 63 bytes; 22023 naming the key),
-- and the built-in migrations' rows are the extension's: only CREATE and
-- ALTER EXTENSION write them (the admin role may register and change its
-- own migrations, not point the built-in ones elsewhere). Then the three
-- migrations of the plan are registered.
CREATE FUNCTION hr_migrations.hr_registry_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT hr_migrations.hr_creating_extension()
       AND ((TG_OP IN ('UPDATE', 'DELETE') AND OLD.builtin) OR (TG_OP IN ('INSERT', 'UPDATE') AND NEW.builtin)) THEN
        RAISE EXCEPTION 'the registry rows of the built-in migrations belong to the extension'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'register a migration of your own (builtin false); ALTER EXTENSION hr_migrations UPDATE refreshes the built-in ones';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    PERFORM hr_migrations.hr_check_registry_entry(NEW.migration, NEW.kind, NEW.table_schema, NEW.table_name, NEW.objects);
    RETURN NEW;
END
$$;
CREATE TRIGGER hr_migration_registry_check
    BEFORE INSERT OR UPDATE OR DELETE ON hr_migrations.hr_migration_registry
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
        ELSIF s.run LIKE 'backfill%' AND hr_migrations.hr_backfill_in_background()
              AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
            -- Off the deploy: a pg_cron job runs the batches and moves the
            -- phase (hr_run_background); the file goes on without them.
            PERFORM hr_migrations.hr_schedule_backfill(migration);
            RAISE NOTICE '%: backfill scheduled in the background (pg_cron job %): SELECT * FROM hr_migrations.hr_migration_progress',
                migration, hr_migrations.hr_background_job(migration);
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

-- -----------------------------------------------------------------------------
-- Long work off the deploy: pg_cron (Supabase Cron; Debian's
-- postgresql-15-cron). The platform installs pg_cron and grants USAGE on
-- its schema to the admin; then one call schedules a migration's remaining
-- batches as a job that runs as the caller every minute (a run is skipped
-- while the previous one goes on), moves the phase when nothing is
-- pending, and unschedules itself. A later migration file can stop a
-- deploy until then: SELECT hr_migrations.hr_require_phase(...).

-- The job's name for a migration.
CREATE FUNCTION hr_migrations.hr_background_job(migration text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'hr_migrations: ' || migration $$;

-- The schema of pg_cron's functions, quoted; 55000 when pg_cron is not
-- installed. Found through what belongs to the extension (pg_depend): a
-- schema named "cron" or a function named "schedule" made by someone else
-- is never used.
CREATE FUNCTION hr_migrations.hr_pg_cron_schema() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp text;
BEGIN
    SELECT quote_ident(n.nspname) INTO nsp
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = e.oid
                                 AND d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
      JOIN pg_catalog.pg_proc p ON p.oid = d.objid AND p.proname = 'schedule'
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE e.extname = 'pg_cron'
     LIMIT 1;
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'the platform installs it (shared_preload_libraries, cron.database_name, CREATE EXTENSION pg_cron, GRANT USAGE ON SCHEMA cron TO the admin: docs/runbook.md), or run the backfill in the foreground: CALL hr_migrations.hr_run_backfill(migration)';
    END IF;
    RETURN nsp;
END
$$;

-- Schedules the remaining batches of a migration as a pg_cron job named
-- hr_background_job(migration), run as the caller on `schedule` (every
-- minute by default; pg_cron 1.4 has minute schedules only); scheduling
-- again replaces it. Returns the job id. Runs as the caller: the job runs
-- as the role that scheduled it (schedule it as the admin).
CREATE FUNCTION hr_migrations.hr_schedule_backfill(migration text, schedule text DEFAULT '* * * * *') RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    -- The job runs as the role that schedules it, every minute: never a
    -- superuser (what it runs would then be anyone's code who can reach
    -- the tables and the registry).
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'a background backfill is not scheduled as a superuser: its job would run as one every minute'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'schedule it as the database''s admin (a member of hr_migrations_admin)';
    END IF;
    PERFORM hr_migrations.hr_require_applied(migration);
    EXECUTE format('SELECT %s.schedule($1, $2, $3)', hr_migrations.hr_pg_cron_schema())
       INTO job
      USING hr_migrations.hr_background_job(migration), schedule,
            format('CALL hr_migrations.hr_run_background(%L)', migration);
    RETURN job;
END
$$;

-- Removes the job of a migration (true when there was one).
CREATE FUNCTION hr_migrations.hr_unschedule_backfill(migration text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp text := hr_migrations.hr_pg_cron_schema();
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s.job j WHERE j.jobname = $1 AND j.username = current_user)', nsp)
       INTO found USING hr_migrations.hr_background_job(migration);
    IF found THEN
        EXECUTE format('SELECT %s.unschedule($1)', nsp) USING hr_migrations.hr_background_job(migration);
    END IF;
    RETURN found;
END
$$;

-- What the job runs: when nothing is pending any more (the previous run
-- finished the work), it unschedules itself and stops; otherwise the
-- phase's batches to the end (each committed) and, in dual, the move to
-- migrated. The removal is the first thing of the run after the last one
-- that worked: pg_cron cancels a run whose job is removed while it runs,
-- so a run that removed its job after working would be reported as
-- failed; this one did nothing else (cron.job_run_details may report it as
-- "job canceled"). Blocked rows need the admin (the status says why): the
-- job stops once only they are left.
CREATE PROCEDURE hr_migrations.hr_run_background(migration text)
LANGUAGE plpgsql
AS $$
DECLARE
    c record;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'hr_run_background() does not run as a superuser'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'unschedule this job (SELECT cron.unschedule(jobid)) and schedule it as the database''s admin: SELECT hr_migrations.hr_schedule_backfill(migration)';
    END IF;
    SELECT s.phase, s.pending, s.blocked INTO c
      FROM hr_migrations.hr_migration_status() s WHERE s.migration = hr_run_background.migration;
    IF c.pending = 0 AND c.phase <> 'dual' OR c.pending = 0 AND c.blocked > 0 THEN
        RAISE NOTICE '%: background backfill done (phase %, % blocked); the job unschedules itself', migration, c.phase, c.blocked;
        PERFORM hr_migrations.hr_unschedule_backfill(migration);
        RETURN;
    END IF;
    CALL hr_migrations.hr_run_backfill(migration, NULL, NULL, true);
    PERFORM hr_migrations.hr_procedure_step();
END
$$;

-- For a later migration file: stops the deploy (55000, saying how far the
-- migration is and what runs it) until `migration` has reached `phase`
-- (GitLab's ensure_batched_background_migration_is_finished).
CREATE FUNCTION hr_migrations.hr_require_phase(migration text, phase text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phases constant text[] := ARRAY['not_applied', 'dual', 'migrated', 'enforced', 'contracted'];
    c record;
BEGIN
    IF NOT phase = ANY (phases) THEN
        RAISE EXCEPTION 'unknown phase' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'use dual, migrated, enforced or contracted';
    END IF;
    SELECT s.phase, s.pending, s.blocked INTO c
      FROM hr_migrations.hr_migration_status() s WHERE s.migration = hr_require_phase.migration;
    IF NOT FOUND THEN
        PERFORM hr_migrations.hr_migration_entry(migration);  -- 22023: not registered
    END IF;
    IF array_position(phases, c.phase) < array_position(phases, phase) THEN
        RAISE EXCEPTION '% is %, not yet %: % rows pending, % blocked; this deploy stops here until it is', migration, c.phase, phase, c.pending, c.blocked
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('SELECT * FROM hr_migrations.hr_migration_progress shows the batches (a background job %L runs them when scheduled); SELECT * FROM hr_migrations.hr_migration_status() says what blocks; run the deploy again later',
                                hr_migrations.hr_background_job(migration));
    END IF;
END
$$;
