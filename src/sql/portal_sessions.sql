-- Migration 2 (portal_sessions): the table-facing functions.
-- They use public.hr_candidate_portal_sessions.organization_id, which
-- sql/migrations/002_portal_sessions.sql adds, and public.hr_candidates.

-- BEFORE INSERT OR UPDATE OF candidate_id, organization_id ON
-- public.hr_candidate_portal_sessions. organization_id is always derived from
-- the session's candidate, so a client cannot attach a session to another
-- organization's candidate: a supplied value that disagrees (or that cannot
-- be confirmed because the candidate is missing or has no organization) is
-- refused with 23514, and the message is the same in every case so it does
-- not tell whether a candidate exists elsewhere. SECURITY DEFINER so the
-- lookup is not hidden by RLS on hr_candidates.
CREATE FUNCTION hr_portal_sessions_org_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    derived uuid;
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'hr_portal_sessions_org_trigger() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger'
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    -- The backfill sets organization_id from the same lookup in the same
    -- statement; the flag is superuser-only, so only the extension sets it.
    IF coalesce(current_setting('hr_migrations.backfill_in_progress', true), 'off') IN ('on', 'true') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND NEW.candidate_id IS NOT DISTINCT FROM OLD.candidate_id
       AND NEW.organization_id IS NOT DISTINCT FROM OLD.organization_id THEN
        RETURN NEW;
    END IF;
    SELECT c.organization_id INTO derived
      FROM public.hr_candidates c
     WHERE c.id = NEW.candidate_id;
    -- On UPDATE, an organization_id carried over unchanged from the old row
    -- was not supplied by the caller: it is simply re-derived.
    IF NEW.organization_id IS NOT NULL AND NEW.organization_id IS DISTINCT FROM derived
       AND (TG_OP = 'INSERT' OR NEW.organization_id IS DISTINCT FROM OLD.organization_id) THEN
        RAISE EXCEPTION 'organization_id does not match the organization of the session''s candidate'
            USING ERRCODE = 'check_violation',
                  TABLE = 'hr_candidate_portal_sessions', COLUMN = 'organization_id',
                  HINT = 'leave organization_id out: it is derived from hr_candidates';
    END IF;
    NEW.organization_id := derived;
    RETURN NEW;
END
$$;

-- One keyset batch: sets organization_id from the candidate on up to
-- batch_size sessions that lack it and whose candidate has an organization,
-- in id order after the saved cursor, skipping rows locked by others.
-- Sessions that cannot be resolved are never selected (they are "blocked"
-- in hr_migration_status), so they cannot make the backfill loop forever.
-- Returns the rows updated; 0 = nothing resolvable is left. updated_at is
-- left alone.
CREATE FUNCTION hr_backfill_portal_session_organizations(batch_size integer DEFAULT 5000) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after_id uuid;
    next_cursor uuid;
    n bigint;
BEGIN
    PERFORM @extschema@.hr_check_batch_size(batch_size);
    PERFORM @extschema@.hr_require_applied('portal_sessions');
    after_id := @extschema@.hr_backfill_cursor('portal_sessions');

    PERFORM set_config('hr_migrations.backfill_in_progress', 'on', true);
    LOOP
        -- Picked and locked by the ARRAY() sub-select (an index range scan on
        -- the primary key, given the column statistics 002 gathers), then
        -- updated through id = ANY(...), always an index scan, with the
        -- organization looked up per row by primary key: the UPDATE cannot
        -- become a hash join over either table.
        WITH updated AS (
            UPDATE public.hr_candidate_portal_sessions s
               SET organization_id = (SELECT c.organization_id FROM public.hr_candidates c
                                       WHERE c.id = s.candidate_id)
             WHERE s.id = ANY (ARRAY(
                    SELECT b.id
                      FROM public.hr_candidate_portal_sessions b
                      JOIN public.hr_candidates c ON c.id = b.candidate_id
                     WHERE b.id >= coalesce(after_id, '00000000-0000-0000-0000-000000000000'::uuid)
                       AND b.id IS DISTINCT FROM after_id
                       AND b.organization_id IS NULL
                       AND c.organization_id IS NOT NULL
                     ORDER BY b.id
                     LIMIT batch_size
                       FOR UPDATE OF b SKIP LOCKED))
            RETURNING s.id
        )
        SELECT count(*), (SELECT u.id FROM updated u ORDER BY u.id DESC LIMIT 1)
          INTO n, next_cursor
          FROM updated;
        EXIT WHEN n > 0 OR after_id IS NULL;
        after_id := NULL;
    END LOOP;
    PERFORM set_config('hr_migrations.backfill_in_progress', 'off', true);

    PERFORM @extschema@.hr_backfill_advance('portal_sessions', next_cursor, n);
    RETURN n;
END
$$;

-- Counts for hr_migration_status(). migrated: sessions with organization_id;
-- pending: without it but resolvable; blocked: without it and the candidate
-- is missing or has no organization.
CREATE FUNCTION hr_portal_sessions_status(phase text,
    OUT total bigint, OUT migrated bigint, OUT pending bigint, OUT blocked bigint, OUT note text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF phase = 'not_applied' THEN
        total := @extschema@.hr_row_count('public.hr_candidate_portal_sessions');
        migrated := 0; pending := total; blocked := 0;
        note := 'apply sql/migrations/002_portal_sessions.sql';
        RETURN;
    END IF;
    SELECT count(*),
           count(*) FILTER (WHERE s.organization_id IS NOT NULL),
           count(*) FILTER (WHERE s.organization_id IS NULL AND c.organization_id IS NOT NULL),
           count(*) FILTER (WHERE s.organization_id IS NULL AND c.organization_id IS NULL)
      INTO total, migrated, pending, blocked
      FROM public.hr_candidate_portal_sessions s
      LEFT JOIN public.hr_candidates c ON c.id = s.candidate_id;
    note := concat_ws('; ',
        CASE WHEN pending > 0 THEN
            format('%s sessions have no organization_id yet: CALL hr_run_backfill(''portal_sessions'')', pending) END,
        CASE WHEN blocked > 0 THEN
            format('%s sessions cannot be resolved (candidate missing or without organization): fix hr_candidates.organization_id or delete those sessions, then CALL hr_run_backfill(''portal_sessions'')', blocked) END,
        CASE WHEN phase = 'enforced' THEN 'organization_id is NOT NULL; RLS isolates sessions by organization' END);
    IF note = '' THEN
        note := 'every session has an organization; RLS isolates them by organization';
    END IF;
END
$$;

-- Phase rules for portal_sessions, called by hr_set_phase() under its lock.
-- enforced: CHECK (organization_id IS NOT NULL) NOT VALID, VALIDATE, SET NOT
-- NULL (which uses the validated check instead of scanning again), DROP the
-- check. A check validated earlier (see the runbook, large tables) is reused.
-- Stepping back from enforced drops NOT NULL.
CREATE FUNCTION hr_portal_sessions_set_phase(from_phase text, to_phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass := to_regclass('public.hr_candidate_portal_sessions');
    applied boolean;
    st record;
    check_valid boolean;
BEGIN
    applied := EXISTS (
        SELECT 1 FROM pg_attribute
         WHERE attrelid = tbl AND attname = 'organization_id' AND NOT attisdropped)
      AND EXISTS (
        SELECT 1 FROM pg_trigger
         WHERE tgrelid = tbl AND tgname = 'hr_portal_sessions_org' AND NOT tgisinternal);
    IF @extschema@.hr_check_applied('portal_sessions', applied, to_phase,
           'public.hr_candidate_portal_sessions has no organization_id column or hr_portal_sessions_org trigger') THEN
        RETURN;
    END IF;
    IF to_phase IN ('migrated', 'enforced') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = tbl AND relrowsecurity)
           OR (SELECT count(*) FROM pg_policy WHERE polrelid = tbl AND polname IN
                 ('hr_portal_sessions_select', 'hr_portal_sessions_insert',
                  'hr_portal_sessions_update', 'hr_portal_sessions_delete')) < 4 THEN
            RAISE EXCEPTION 'cannot move portal_sessions to %: row level security or its policies are not in place', to_phase
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'run sql/migrations/002_portal_sessions.sql to the end';
        END IF;
        SELECT * INTO st FROM @extschema@.hr_portal_sessions_status(from_phase);
        IF st.pending > 0 OR st.blocked > 0 THEN
            RAISE EXCEPTION 'cannot move portal_sessions to %: % sessions pending and % blocked', to_phase, st.pending, st.blocked
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'SELECT note FROM hr_migration_status() says what to do';
        END IF;
    END IF;
    IF to_phase = 'enforced' THEN
        SET LOCAL lock_timeout = '3s';
        SELECT convalidated INTO check_valid FROM pg_constraint
         WHERE conrelid = tbl AND conname = 'hr_candidate_portal_sessions_organization_id_not_null';
        IF check_valid IS NULL THEN
            ALTER TABLE public.hr_candidate_portal_sessions
                ADD CONSTRAINT hr_candidate_portal_sessions_organization_id_not_null
                CHECK (organization_id IS NOT NULL) NOT VALID;
        END IF;
        IF NOT coalesce(check_valid, false) THEN
            ALTER TABLE public.hr_candidate_portal_sessions
                VALIDATE CONSTRAINT hr_candidate_portal_sessions_organization_id_not_null;
        END IF;
        ALTER TABLE public.hr_candidate_portal_sessions ALTER COLUMN organization_id SET NOT NULL;
        ALTER TABLE public.hr_candidate_portal_sessions
            DROP CONSTRAINT hr_candidate_portal_sessions_organization_id_not_null;
    ELSIF from_phase = 'enforced' THEN
        SET LOCAL lock_timeout = '3s';
        ALTER TABLE public.hr_candidate_portal_sessions ALTER COLUMN organization_id DROP NOT NULL;
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION hr_backfill_portal_session_organizations(integer),
    hr_portal_sessions_status(text),
    hr_portal_sessions_set_phase(text, text) FROM PUBLIC;
