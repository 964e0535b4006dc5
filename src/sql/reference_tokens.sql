-- Migration 1 (reference_tokens): the table-facing functions.
-- They use public.hr_references and public.hr_reference_token_validations,
-- which sql/migrations/001_reference_tokens.sql creates or alters; PL/pgSQL
-- resolves those names at call time, so CREATE EXTENSION works before 001.

-- BEFORE INSERT OR UPDATE OF access_token ON public.hr_references.
-- A written plaintext token is hashed into access_token_hash; in phase
-- 'enforced' the plaintext is then dropped, so only the hash is stored.
-- Clearing access_token revokes the token (the hash is cleared too) unless the
-- same statement writes a new access_token_hash itself (new-style code).
CREATE FUNCTION hr_references_token_trigger() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'hr_references_token_trigger() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger'
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.access_token IS NOT DISTINCT FROM OLD.access_token THEN
        RETURN NEW;
    END IF;
    IF NEW.access_token IS NULL THEN
        IF TG_OP = 'UPDATE' AND NEW.access_token_hash IS NOT DISTINCT FROM OLD.access_token_hash THEN
            NEW.access_token_hash := NULL;
        END IF;
        RETURN NEW;
    END IF;
    NEW.access_token_hash := @extschema@.hr_hash_token(NEW.access_token);
    IF @extschema@.hr_migration_phase('reference_tokens') = 'enforced' THEN
        NEW.access_token := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- Dual-path verification by reference id: the hash first, then (unless the
-- phase is 'enforced') the legacy plaintext column, compared in constant
-- time. Appends one row to public.hr_reference_token_validations: reference
-- id, method, success, time; never the token. NULL arguments verify nothing
-- and return false (not NULL, so `IF NOT hr_verify_reference_token(...)`
-- rejects them). method is the path that accepted the token, or when none
-- did, the path that was tried ('hash' over 'plaintext'), or 'none' when the
-- reference does not exist or has no token.
CREATE FUNCTION hr_verify_reference_token(reference_id uuid, token text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phase text := @extschema@.hr_require_applied('reference_tokens');
    stored_token text;
    stored_hash text;
    method text := 'none';
    ok boolean := false;
BEGIN
    IF reference_id IS NOT NULL AND token IS NOT NULL THEN
        SELECT r.access_token, r.access_token_hash INTO stored_token, stored_hash
          FROM public.hr_references r
         WHERE r.id = reference_id;
        IF phase = 'enforced' THEN
            stored_token := NULL;
        END IF;
        IF stored_hash IS NOT NULL THEN
            method := 'hash';
            ok := @extschema@.hr_verify_token(token, stored_hash);
        END IF;
        IF NOT ok AND stored_token IS NOT NULL THEN
            IF @extschema@.hr_token_plaintext_matches(token, stored_token) THEN
                method := 'plaintext';
                ok := true;
            ELSIF stored_hash IS NULL THEN
                method := 'plaintext';
            END IF;
        END IF;
    END IF;
    INSERT INTO public.hr_reference_token_validations (reference_id, method, success)
    VALUES (reference_id, method, ok);
    RETURN ok;
END
$$;

-- One keyset batch of the backfill: hashes up to batch_size plaintext tokens
-- that have no hash yet, in id order after the saved cursor, skipping rows
-- other transactions hold locked. Returns the rows hashed; 0 means nothing is
-- left to hash. The cursor lives in hr_backfill_progress and is committed
-- with the batch; its row lock also keeps two backfills from running at once.
-- updated_at is left alone (hr_migrations.backfill_in_progress).
CREATE FUNCTION hr_backfill_reference_token_hashes(batch_size integer DEFAULT 5000) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after_id uuid;
    next_cursor uuid;
    n bigint;
BEGIN
    PERFORM @extschema@.hr_check_batch_size(batch_size);
    PERFORM @extschema@.hr_require_applied('reference_tokens');

    after_id := @extschema@.hr_backfill_cursor('reference_tokens');

    PERFORM set_config('hr_migrations.backfill_in_progress', 'on', true);
    LOOP
        -- The rows are picked and locked by the ARRAY() sub-select (an index
        -- range scan on the primary key: id >= coalesce(...) stays indexable
        -- in both cases, IS DISTINCT FROM makes it "> after_id" when set) and
        -- updated through id = ANY(...), which is always an index scan: a
        -- join here can turn into a hash join over the whole table.
        WITH hashed AS (
            UPDATE public.hr_references r
               SET access_token_hash = @extschema@.hr_hash_token(r.access_token)
             WHERE r.id = ANY (ARRAY(
                    SELECT b.id
                      FROM public.hr_references b
                     WHERE b.id >= coalesce(after_id, '00000000-0000-0000-0000-000000000000'::uuid)
                       AND b.id IS DISTINCT FROM after_id
                       AND b.access_token IS NOT NULL
                       AND b.access_token_hash IS NULL
                     ORDER BY b.id
                     LIMIT batch_size
                       FOR UPDATE SKIP LOCKED))
            RETURNING r.id
        )
        SELECT count(*), (SELECT h.id FROM hashed h ORDER BY h.id DESC LIMIT 1)
          INTO n, next_cursor
          FROM hashed;
        -- At the end of the table, wrap around once: rows skipped while
        -- locked, or written with triggers disabled, sit behind the cursor.
        EXIT WHEN n > 0 OR after_id IS NULL;
        after_id := NULL;
    END LOOP;
    PERFORM set_config('hr_migrations.backfill_in_progress', 'off', true);

    PERFORM @extschema@.hr_backfill_advance('reference_tokens', next_cursor, n);
    RETURN n;
END
$$;

-- Counts for hr_migration_status(). pending: plaintext without a hash;
-- migrated: rows with a hash; blocked: never (any text can be hashed).
CREATE FUNCTION hr_reference_tokens_status(phase text,
    OUT total bigint, OUT migrated bigint, OUT pending bigint, OUT blocked bigint, OUT note text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hash_only bigint;
    plaintext_left bigint;
BEGIN
    blocked := 0;
    IF phase = 'not_applied' THEN
        total := @extschema@.hr_row_count('public.hr_references');
        migrated := 0; pending := total;
        note := 'apply sql/migrations/001_reference_tokens.sql';
        RETURN;
    END IF;
    SELECT count(*),
           count(*) FILTER (WHERE r.access_token_hash IS NOT NULL),
           count(*) FILTER (WHERE r.access_token IS NOT NULL AND r.access_token_hash IS NULL),
           count(*) FILTER (WHERE r.access_token IS NULL AND r.access_token_hash IS NOT NULL),
           count(*) FILTER (WHERE r.access_token IS NOT NULL)
      INTO total, migrated, pending, hash_only, plaintext_left
      FROM public.hr_references r;
    note := concat_ws('; ',
        CASE WHEN pending > 0 THEN
            format('%s plaintext tokens have no hash yet: CALL hr_run_backfill(''reference_tokens'')', pending) END,
        CASE WHEN phase = 'enforced' THEN
            format('only hashes are stored and accepted; %s legacy plaintext tokens remain in access_token, no longer accepted', plaintext_left) END,
        CASE WHEN phase <> 'enforced' AND hash_only > 0 THEN
            format('%s references have no plaintext token left and verify by hash only', hash_only) END);
    IF note = '' THEN
        note := 'every token has a hash; plaintext is still accepted until enforced';
    END IF;
END
$$;

-- Phase rules for reference_tokens, called by hr_set_phase() under its lock.
CREATE FUNCTION hr_reference_tokens_set_phase(from_phase text, to_phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    applied boolean;
    st record;
BEGIN
    applied := EXISTS (
        SELECT 1 FROM pg_attribute
         WHERE attrelid = to_regclass('public.hr_references')
           AND attname = 'access_token_hash' AND NOT attisdropped)
      AND EXISTS (
        SELECT 1 FROM pg_trigger
         WHERE tgrelid = to_regclass('public.hr_references')
           AND tgname = 'hr_references_token' AND NOT tgisinternal);
    IF @extschema@.hr_check_applied('reference_tokens', applied, to_phase,
           'public.hr_references has no access_token_hash column or hr_references_token trigger') THEN
        RETURN;
    END IF;
    IF to_phase IN ('migrated', 'enforced') THEN
        SELECT * INTO st FROM @extschema@.hr_reference_tokens_status(from_phase);
        IF st.pending > 0 THEN
            RAISE EXCEPTION 'cannot move reference_tokens to %: % plaintext tokens have no hash yet', to_phase, st.pending
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'CALL hr_run_backfill(''reference_tokens'') first';
        END IF;
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION hr_verify_reference_token(uuid, text),
    hr_backfill_reference_token_hashes(integer),
    hr_reference_tokens_status(text),
    hr_reference_tokens_set_phase(text, text) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT EXECUTE ON FUNCTION hr_verify_reference_token(uuid, text) TO service_role;
    END IF;
END
$$;
