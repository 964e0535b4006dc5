-- Operations layer shared by every migration (DESIGN.md §4, "Operations").
--
-- @extschema@ is the schema the extension was created in (the extension is
-- not relocatable, so Postgres substitutes it). Functions that touch app
-- tables name them as public.<table>; every SECURITY DEFINER function pins
-- search_path to pg_catalog, pg_temp and qualifies everything else.

-- Where each migration stands. A missing row means 'not_applied': no rows are
-- seeded, so pg_dump (pg_extension_config_dump below) restores cleanly on top
-- of a fresh CREATE EXTENSION.
CREATE TABLE hr_migration_phases (
    migration  text PRIMARY KEY
               CHECK (migration IN ('reference_tokens', 'portal_sessions', 'integration_credentials')),
    phase      text NOT NULL
               CHECK (phase IN ('not_applied', 'dual', 'migrated', 'enforced')),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT session_user
);
COMMENT ON TABLE hr_migration_phases IS
    'hr_migrations: current phase of each migration; change it only with hr_set_phase()';

-- Keyset cursor of each backfill, committed with every batch, so a backfill
-- that was killed resumes where it stopped instead of rescanning the table.
CREATE TABLE hr_backfill_progress (
    migration  text PRIMARY KEY
               CHECK (migration IN ('reference_tokens', 'portal_sessions', 'integration_credentials')),
    last_id    uuid,
    batches    bigint NOT NULL DEFAULT 0,
    rows_done  bigint NOT NULL DEFAULT 0,
    started_at timestamptz,
    updated_at timestamptz
);
COMMENT ON TABLE hr_backfill_progress IS
    'hr_migrations: resume point of each batched backfill (last_id NULL = start of table)';

SELECT pg_catalog.pg_extension_config_dump('hr_migration_phases', '');
SELECT pg_catalog.pg_extension_config_dump('hr_backfill_progress', '');

REVOKE ALL ON hr_migration_phases, hr_backfill_progress FROM PUBLIC;
-- Triggers run as the writing role and read the phase; the phase is no secret.
GRANT SELECT ON hr_migration_phases TO PUBLIC;

CREATE FUNCTION hr_migration_keys() RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN unnest(ARRAY['reference_tokens', 'portal_sessions', 'integration_credentials']);
COMMENT ON FUNCTION hr_migration_keys() IS 'hr_migrations: the three migration keys, in order';

-- The current phase of one migration ('not_applied' when it has no row).
-- Raises 22023 for an unknown key so a typo never reads as 'not_applied'.
CREATE FUNCTION hr_migration_phase(migration text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text;
BEGIN
    IF migration IS NULL OR migration NOT IN (SELECT @extschema@.hr_migration_keys()) THEN
        RAISE EXCEPTION 'unknown migration %', coalesce(quote_literal(migration), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use reference_tokens, portal_sessions or integration_credentials';
    END IF;
    SELECT m.phase INTO p FROM @extschema@.hr_migration_phases m WHERE m.migration = hr_migration_phase.migration;
    RETURN coalesce(p, 'not_applied');
END
$$;

-- Raises 55000 unless the migration's DDL has been applied.
CREATE FUNCTION hr_require_applied(migration text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text := @extschema@.hr_migration_phase(migration);
BEGIN
    IF p = 'not_applied' THEN
        RAISE EXCEPTION 'migration % is not applied', migration
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('apply sql/migrations/ for %s first (see docs/runbook.md)', migration);
    END IF;
    RETURN p;
END
$$;

-- Generic updated_at maintenance for every table (replaces the plan's one
-- function per table). While a backfill runs (hr_migrations.backfill_in_progress
-- set for its transaction) updated_at is left alone: the plan's backfill
-- bumped it on every row.
CREATE FUNCTION hr_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_OP <> 'UPDATE' OR TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION 'hr_touch_updated_at() must be a BEFORE UPDATE ... FOR EACH ROW trigger (on %)', TG_TABLE_NAME
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    IF coalesce(current_setting('hr_migrations.backfill_in_progress', true), 'off') NOT IN ('on', 'true') THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

-- One row per migration. Counts are exact (they scan the tables), so call it
-- for reporting, not in a hot path. SECURITY DEFINER so RLS does not hide rows
-- from the count; EXECUTE is revoked from PUBLIC below.
CREATE FUNCTION hr_migration_status()
RETURNS TABLE (migration text, phase text, total bigint, migrated bigint,
               pending bigint, blocked bigint, note text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
BEGIN
    FOR key IN SELECT * FROM @extschema@.hr_migration_keys() LOOP
        migration := key;
        phase := @extschema@.hr_migration_phase(key);
        CASE key
            WHEN 'reference_tokens' THEN
                SELECT s.total, s.migrated, s.pending, s.blocked, s.note
                  INTO total, migrated, pending, blocked, note
                  FROM @extschema@.hr_reference_tokens_status(phase) s;
            WHEN 'portal_sessions' THEN
                SELECT s.total, s.migrated, s.pending, s.blocked, s.note
                  INTO total, migrated, pending, blocked, note
                  FROM @extschema@.hr_portal_sessions_status(phase) s;
            WHEN 'integration_credentials' THEN
                SELECT s.total, s.migrated, s.pending, s.blocked, s.note
                  INTO total, migrated, pending, blocked, note
                  FROM @extschema@.hr_integration_credentials_status(phase) s;
        END CASE;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Moves a migration to another phase, performing that phase's contract, or
-- refuses (55000) saying why. Setting the current phase again is a no-op.
-- Phase changes are serialised by a row lock on the migration's phase row.
CREATE FUNCTION hr_set_phase(migration text, phase text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_phase text;
BEGIN
    PERFORM @extschema@.hr_migration_phase(migration);  -- validates the key
    IF phase IS NULL OR phase NOT IN ('not_applied', 'dual', 'migrated', 'enforced') THEN
        RAISE EXCEPTION 'unknown phase %', coalesce(quote_literal(phase), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use not_applied, dual, migrated or enforced';
    END IF;

    INSERT INTO @extschema@.hr_migration_phases AS m (migration, phase)
    VALUES (hr_set_phase.migration, 'not_applied')
    ON CONFLICT ON CONSTRAINT hr_migration_phases_pkey DO NOTHING;
    SELECT m.phase INTO current_phase
      FROM @extschema@.hr_migration_phases m
     WHERE m.migration = hr_set_phase.migration
       FOR UPDATE;

    IF current_phase = phase THEN
        RETURN;
    END IF;

    CASE migration
        WHEN 'reference_tokens' THEN
            PERFORM @extschema@.hr_reference_tokens_set_phase(current_phase, phase);
        WHEN 'portal_sessions' THEN
            PERFORM @extschema@.hr_portal_sessions_set_phase(current_phase, phase);
        WHEN 'integration_credentials' THEN
            PERFORM @extschema@.hr_integration_credentials_set_phase(current_phase, phase);
    END CASE;

    UPDATE @extschema@.hr_migration_phases m
       SET phase = hr_set_phase.phase, changed_at = now(), changed_by = session_user
     WHERE m.migration = hr_set_phase.migration;
    RAISE NOTICE '%: phase % -> %', migration, current_phase, phase;
END
$$;

-- Rows of a table that may not exist yet (0 then): status before a
-- migration's DDL is applied.
CREATE FUNCTION hr_row_count(table_name text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
BEGIN
    IF to_regclass(table_name) IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FROM %s', to_regclass(table_name)) INTO n;
    END IF;
    RETURN n;
END
$$;

-- Refuses a batch size outside 1..1000000 (22023).
CREATE FUNCTION hr_check_batch_size(batch_size integer) RETURNS void
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

-- The refusals every migration's phase rules share (55000): 'not_applied'
-- only after the rollback script removed the migration's DDL, any other
-- phase only while it exists. `applied` says whether it does, `missing` what
-- is missing when it does not. Returns true when the move is to
-- 'not_applied' (nothing more to check).
CREATE FUNCTION hr_check_applied(migration text, applied boolean, to_phase text, missing text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    script text := CASE migration
        WHEN 'reference_tokens' THEN '001_reference_tokens.sql'
        WHEN 'portal_sessions' THEN '002_portal_sessions.sql'
        ELSE '003_integration_credentials.sql' END;
BEGIN
    IF to_phase = 'not_applied' THEN
        IF applied THEN
            RAISE EXCEPTION '% is still applied', migration
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('run sql/rollback/%s, which sets this phase', script);
        END IF;
        RETURN true;
    END IF;
    IF NOT applied THEN
        RAISE EXCEPTION 'cannot move % to %: %', migration, to_phase, missing
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('apply sql/migrations/%s first', script);
    END IF;
    RETURN false;
END
$$;

-- The keyset cursor of a migration's backfill, locked for this transaction:
-- the row lock keeps two backfills of one migration from running at once
-- (the second waits for the first batch to commit). NULL = start of table.
CREATE FUNCTION hr_backfill_cursor(migration text) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c uuid;
BEGIN
    INSERT INTO @extschema@.hr_backfill_progress AS p (migration)
    VALUES (hr_backfill_cursor.migration)
    ON CONFLICT ON CONSTRAINT hr_backfill_progress_pkey DO NOTHING;
    SELECT p.last_id INTO c
      FROM @extschema@.hr_backfill_progress p
     WHERE p.migration = hr_backfill_cursor.migration
       FOR UPDATE;
    RETURN c;
END
$$;

-- Records a finished batch: the new cursor (NULL after a pass that found
-- nothing, so the next one starts over) and the rows it changed.
CREATE FUNCTION hr_backfill_advance(migration text, next_cursor uuid, batch_rows bigint) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.hr_backfill_progress p
       SET last_id = next_cursor,
           batches = p.batches + (batch_rows > 0)::int,
           rows_done = p.rows_done + batch_rows,
           started_at = coalesce(p.started_at, clock_timestamp()),
           updated_at = clock_timestamp()
     WHERE p.migration = hr_backfill_advance.migration;
END;

-- One batch of a migration's backfill (dispatch by key).
CREATE FUNCTION hr_backfill_batch(migration text, batch_size integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.hr_migration_phase(migration);
    CASE migration
        WHEN 'reference_tokens' THEN
            RETURN @extschema@.hr_backfill_reference_token_hashes(coalesce(batch_size, 5000));
        WHEN 'portal_sessions' THEN
            RETURN @extschema@.hr_backfill_portal_session_organizations(coalesce(batch_size, 5000));
        WHEN 'integration_credentials' THEN
            RETURN (SELECT m.migrated FROM @extschema@.hr_migrate_integrations(coalesce(batch_size, 1000)) m);
    END CASE;
END
$$;

-- Runs a migration's backfill to the end: one batch per transaction, COMMIT
-- between batches (row locks are held for one batch only), a NOTICE per
-- batch. Resumes from hr_backfill_progress after a crash or cancel; re-running
-- when nothing is pending does nothing. When no row is pending or blocked and
-- the phase is 'dual', moves it to 'migrated'; otherwise leaves 'dual' and
-- raises a WARNING with counts (never values).
--
-- Must be CALLed outside an explicit transaction block (it COMMITs), so it
-- cannot be SECURITY DEFINER; its callee batch functions are.
-- max_batches stops early (for tests and for spreading work over windows).
-- promote => false leaves the phase alone (a script that still has steps to
-- run after the backfill promotes it itself); a promotion that is refused
-- becomes a WARNING, since the batches are committed either way.
CREATE PROCEDURE hr_run_backfill(migration text, batch_size integer DEFAULT NULL,
                                 max_batches integer DEFAULT NULL, promote boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
    batches integer := 0;
    done bigint := 0;
    started timestamptz := clock_timestamp();
    batch_started timestamptz;
    elapsed double precision;
    st record;
    retries integer := 0;
BEGIN
    PERFORM @extschema@.hr_require_applied(migration);
    IF max_batches IS NOT NULL AND max_batches < 1 THEN
        RAISE EXCEPTION 'max_batches must be at least 1 (got %)', max_batches
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        LOOP
            batch_started := clock_timestamp();
            n := @extschema@.hr_backfill_batch(migration, batch_size);
            COMMIT;
            EXIT WHEN n = 0;
            batches := batches + 1;
            done := done + n;
            elapsed := greatest(extract(epoch FROM clock_timestamp() - started), 0.001);
            -- The batch's duration bounds how long its row locks were held.
            RAISE NOTICE '%: batch % done, % rows in % ms, % rows so far (% rows/s)',
                migration, batches, n,
                round(extract(epoch FROM clock_timestamp() - batch_started)::numeric * 1000, 1),
                done, round(done / elapsed);
            IF max_batches IS NOT NULL AND batches >= max_batches THEN
                RAISE NOTICE '%: stopped after % batches as asked; CALL again to resume', migration, batches;
                RETURN;
            END IF;
        END LOOP;
        SELECT * INTO st FROM @extschema@.hr_migration_status() s WHERE s.migration = hr_run_backfill.migration;
        -- Rows another transaction held locked were skipped (SKIP LOCKED);
        -- give them a few chances before reporting them as pending.
        EXIT WHEN st.pending = 0 OR retries >= 5;
        retries := retries + 1;
        PERFORM pg_sleep(0.2 * retries);
    END LOOP;

    RAISE NOTICE '%: backfill finished: % rows in % batches, % s', migration, done, batches,
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    IF st.pending = 0 AND st.blocked = 0 THEN
        IF st.phase = 'dual' AND promote THEN
            BEGIN
                PERFORM @extschema@.hr_set_phase(migration, 'migrated');
            EXCEPTION WHEN object_not_in_prerequisite_state THEN
                RAISE WARNING '%: backfill complete but phase stays dual: %', migration, SQLERRM;
            END;
            COMMIT;
        END IF;
    ELSE
        RAISE WARNING '%: % rows pending and % rows blocked remain; phase stays %', migration,
            st.pending, st.blocked, st.phase
            USING HINT = 'SELECT * FROM hr_migration_status() says why; CALL hr_run_backfill again after fixing them';
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION hr_migration_status(), hr_set_phase(text, text),
    hr_backfill_batch(text, integer), hr_backfill_cursor(text), hr_check_applied(text, boolean, text, text),
    hr_row_count(text),
    hr_backfill_advance(text, uuid, bigint) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE hr_run_backfill(text, integer, integer, boolean) FROM PUBLIC;
