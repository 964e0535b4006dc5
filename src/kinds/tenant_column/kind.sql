-- Kind tenant_column (migration portal_sessions): organization isolation.
-- A table of this kind has `id uuid` and `candidate_id uuid`; its script
-- adds `organization_id uuid`, derived from public.hr_candidates, and RLS
-- policies that compare it with the request's organization.

-- BEFORE INSERT OR UPDATE OF candidate_id, organization_id, FOR EACH ROW,
-- WHEN (NOT hr_backfill_in_progress()). organization_id is always derived
-- from the row's candidate, so a client cannot attach a row to another
-- organization's candidate: a supplied value that disagrees (or that
-- cannot be confirmed because the candidate is missing or has no
-- organization) is refused with 23514, with one message for every case so
-- it does not tell whether a candidate exists elsewhere.
-- SECURITY DEFINER (owner hr_migrations_definer, BYPASSRLS) so the lookup
-- is not hidden by RLS on hr_candidates; EXECUTE is granted to nobody and
-- hr_trigger_migration() refuses any table but its own, so it cannot be
-- attached to a temp table to read candidates' organizations.
CREATE OR REPLACE FUNCTION hr_migrations.hr_portal_sessions_org_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    derived uuid;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'hr_portal_sessions_org_trigger() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger'
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    PERFORM hr_migrations.hr_trigger_migration(TG_RELID, 'tenant_column');
    IF hr_migrations.hr_backfill_in_progress() THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND NEW.candidate_id IS NOT DISTINCT FROM OLD.candidate_id
       AND NEW.organization_id IS NOT DISTINCT FROM OLD.organization_id THEN
        RETURN NEW;
    END IF;
    PERFORM hr_migrations.hr_plain_table('public.hr_candidates'::regclass);
    SELECT c.organization_id INTO derived
      FROM public.hr_candidates c
     WHERE c.id = NEW.candidate_id;
    -- On UPDATE, an organization_id carried over unchanged from the old row
    -- was not supplied by the caller: it is simply re-derived.
    IF NEW.organization_id IS NOT NULL AND NEW.organization_id IS DISTINCT FROM derived
       AND (TG_OP = 'INSERT' OR NEW.organization_id IS DISTINCT FROM OLD.organization_id) THEN
        RAISE EXCEPTION 'organization_id does not match the organization of the row''s candidate'
            USING ERRCODE = 'check_violation',
                  TABLE = TG_TABLE_NAME, COLUMN = 'organization_id',
                  HINT = 'leave organization_id out: it is derived from hr_candidates';
    END IF;
    NEW.organization_id := derived;
    RETURN NEW;
END
$$;

-- One keyset batch of the backfill (docs/sql-reference.md), through the engine.
CREATE FUNCTION hr_migrations.hr_backfill_portal_session_organizations(batch_size integer DEFAULT 5000) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hr_migrations.hr_require_integrity(); SELECT hr_migrations.hr_engine_batch('portal_sessions', 'backfill', batch_size) $$;

-- The engine's view of a tenant_column migration: rows without
-- organization_id are pending when their candidate has one, blocked when
-- the candidate is missing or has none (never guessed, never looped over).
CREATE FUNCTION hr_migrations.hr_tenant_column_spec(migration text, operation text,
    OUT tbl regclass, OUT pending text, OUT blocked text, OUT migrated text,
    OUT action text, OUT writes regclass[], OUT range_action text, OUT range_pending text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    resolvable constant text :=
        'EXISTS (SELECT 1 FROM public.hr_candidates c WHERE c.id = t.candidate_id AND c.organization_id IS NOT NULL)';
BEGIN
    IF t IS NULL OR operation <> 'backfill' THEN
        RETURN;
    END IF;
    PERFORM hr_migrations.hr_plain_table('public.hr_candidates'::regclass);
    tbl := t;
    pending := 't.organization_id IS NULL AND ' || resolvable;
    blocked := 't.organization_id IS NULL AND NOT ' || resolvable;
    migrated := 't.organization_id IS NOT NULL';
    action := 'hr_migrations.hr_tenant_column_backfill';
    range_action := 'hr_migrations.hr_tenant_column_backfill_range';
    range_pending := 't.organization_id IS NULL';
    writes := ARRAY[t];
END
$$;

CREATE FUNCTION hr_migrations.hr_tenant_column_phase_operation(migration text, phase text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN phase IN ('dual', 'migrated') THEN 'backfill' END $$;

-- Row action of the backfill: the organization is looked up per row by
-- primary key, so the UPDATE cannot become a hash join over either table.
CREATE FUNCTION hr_migrations.hr_tenant_column_backfill(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('UPDATE ONLY %s t
                       SET organization_id = (SELECT c.organization_id FROM public.hr_candidates c
                                               WHERE c.id = t.candidate_id)
                     WHERE t.id = ANY ($1)', hr_migrations.hr_migration_table(migration))
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Range action of the backfill (hr_engine_batch walks the table in
-- physical order): the pending rows of the heap blocks [lo, hi) in one
-- UPDATE, each row's organization looked up once by the candidate's primary
-- key as the range is read in order (a nested loop: hashing hr_candidates
-- whole for every range would cost more than the range). Rows recorded as
-- failed are left out when there are any. The engine bounds its wait for
-- rows other transactions hold, and does the range row by row if this fails.
CREATE FUNCTION hr_migrations.hr_tenant_column_backfill_range(migration text, lo tid, hi tid, skip_failed boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    n bigint;
BEGIN
    -- One candidate per id, or the join would pick any one's organization
    -- (the row action's scalar lookup raises instead, and the engine
    -- records the row): without a unique index on hr_candidates (id) the
    -- engine does the range row by row.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = 'public.hr_candidates'::regclass AND i.indisunique AND i.indisvalid
                      AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = 'id') THEN
        RAISE EXCEPTION 'public.hr_candidates has no unique index on id: the range is done row by row'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('UPDATE ONLY %s t
                       SET organization_id = c.organization_id
                      FROM public.hr_candidates c
                     WHERE t.ctid >= $1 AND t.ctid < $2
                       AND t.organization_id IS NULL
                       AND c.id = t.candidate_id AND c.organization_id IS NOT NULL%s',
                   hr_migrations.hr_migration_table(migration),
                   CASE WHEN skip_failed THEN ' AND ' || hr_migrations.hr_not_failed('$3', '''backfill''') ELSE '' END)
      USING lo, hi, migration;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- applied: organization_id and the org trigger exist. ready: row level
-- security is on and the four policies the registry names exist.
CREATE FUNCTION hr_migrations.hr_tenant_column_state(migration text, OUT applied boolean, OUT ready boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    o jsonb := (hr_migrations.hr_migration_entry(migration)).objects;
BEGIN
    applied := hr_migrations.hr_column_exists(t, 'organization_id')
               AND hr_migrations.hr_trigger_exists(t, o ->> 'org_trigger');
    ready := applied
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t AND c.relrowsecurity)
        AND (SELECT count(*) FROM pg_catalog.pg_policy p
              WHERE p.polrelid = t
                AND p.polname IN (o ->> 'policy_select', o ->> 'policy_insert',
                                  o ->> 'policy_update', o ->> 'policy_delete')) = 4;
END
$$;

-- Brief DDL of a phase move. Into enforced: CHECK (organization_id IS NOT
-- NULL) NOT VALID, which refuses writes without an organization from now on
-- (ACCESS EXCLUSIVE for milliseconds, no scan); the validating scan and SET
-- NOT NULL are the phase's closing work (hr_tenant_column_finish), outside
-- ACCESS EXCLUSIVE. Out of enforced: NOT NULL and the check are dropped.
CREATE FUNCTION hr_migrations.hr_tenant_column_enter(migration text, from_phase text, to_phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    chk text := hr_migrations.hr_migration_object(migration, 'not_null_check');
    valid boolean;
BEGIN
    PERFORM hr_migrations.hr_bound_lock_wait();
    IF to_phase = 'enforced' THEN
        SELECT c.convalidated INTO valid FROM pg_catalog.pg_constraint c WHERE c.conrelid = t AND c.conname = chk;
        IF hr_migrations.hr_column_not_null(t, 'organization_id') THEN
            NULL;
        ELSIF valid THEN
            -- Validated beforehand (docs/runbook.md, large tables): SET NOT
            -- NULL uses it instead of scanning; nothing is left to finish.
            EXECUTE format('ALTER TABLE %s ALTER COLUMN organization_id SET NOT NULL', t);
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', t, chk);
        ELSIF valid IS NULL THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (organization_id IS NOT NULL) NOT VALID', t, chk);
        END IF;
    ELSIF from_phase = 'enforced' AND to_phase IN ('dual', 'migrated') THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN organization_id DROP NOT NULL', t);
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = t AND conname = chk) THEN
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', t, chk);
        END IF;
    END IF;
END
$$;

-- Closing DDL of enforced: VALIDATE the check (SHARE UPDATE EXCLUSIVE:
-- reads and writes go on during the scan), COMMIT, then SET NOT NULL, which
-- uses the validated check instead of scanning (ACCESS EXCLUSIVE, brief),
-- and drop the check. Idempotent.
CREATE PROCEDURE hr_migrations.hr_tenant_column_finish(migration text, phase text)
LANGUAGE plpgsql
AS $$
DECLARE
    t regclass;
    chk text;
    valid boolean;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    t := hr_migrations.hr_migration_table(migration);
    chk := hr_migrations.hr_migration_object(migration, 'not_null_check');
    IF phase <> 'enforced' THEN
        RETURN;
    END IF;
    SELECT c.convalidated INTO valid FROM pg_catalog.pg_constraint c WHERE c.conrelid = t AND c.conname = chk;
    IF valid IS NOT NULL AND NOT valid THEN
        PERFORM pg_catalog.set_config('lock_timeout', '0', true);  -- SHARE UPDATE EXCLUSIVE blocks no app traffic
        EXECUTE pg_catalog.format('ALTER TABLE %s VALIDATE CONSTRAINT %I', t, chk);
        COMMIT;
        PERFORM hr_migrations.hr_procedure_step();
        valid := true;
    END IF;
    IF valid THEN
        CALL hr_migrations.hr_ddl(migration, $ddl$
            ALTER TABLE {table} ALTER COLUMN organization_id SET NOT NULL;
            ALTER TABLE {table} DROP CONSTRAINT {not_null_check}
        $ddl$);
        PERFORM hr_migrations.hr_procedure_step();
        RAISE NOTICE '%: organization_id is NOT NULL', migration;
    END IF;
END
$$;

CREATE FUNCTION hr_migrations.hr_tenant_column_note(migration text, phase text, pending bigint, blocked bigint, other_failures bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    note text;
BEGIN
    note := concat_ws('; ',
        CASE WHEN pending > 0 THEN
            format('%s rows have no organization_id yet: CALL hr_migrations.hr_run_backfill(%L)', pending, migration) END,
        CASE WHEN blocked > 0 THEN
            format('%s rows cannot be resolved (candidate missing or without organization): fix hr_candidates.organization_id or delete those rows, then CALL hr_migrations.hr_run_backfill(%L)', blocked, migration) END,
        CASE WHEN phase IN ('enforced', 'contracted') AND hr_migrations.hr_column_not_null(t, 'organization_id')
             THEN 'organization_id is NOT NULL; RLS isolates rows by organization'
             WHEN phase = 'enforced'
             THEN format('writes without organization_id are refused; CALL hr_migrations.hr_run_backfill(%L) validates and sets NOT NULL', migration) END);
    IF note = '' THEN
        note := 'every row has an organization; RLS isolates them by organization';
    END IF;
    RETURN note;
END
$$;
