-- Migration 3 (integration_credentials): the table-facing functions.
-- They use public.hr_job_board_integrations.credential_id (added by
-- sql/migrations/003_integration_credentials.sql), public.pf_credentials and
-- public.pf_credential_migrations. Keys never appear here: the envelope
-- functions read them from the keyring file named by hr_migrations.keyring_file.

-- Key check values: one row per key version, written on the version's first
-- use. Not the key: 16 bytes of a domain-separated SHA-256 of it.
CREATE TABLE hr_key_checks (
    key_version   integer PRIMARY KEY CHECK (key_version > 0),
    check_value   text NOT NULL,
    first_used_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hr_key_checks IS
    'hr_migrations: key check value of each keyring version, recorded on first use (never the key)';
SELECT pg_catalog.pg_extension_config_dump('hr_key_checks', '');
REVOKE ALL ON hr_key_checks FROM PUBLIC;

-- Records a version's check value on first use; true when it matches the
-- recorded one. In a read-only transaction a first use cannot be recorded
-- and is accepted; the next writing transaction records it.
CREATE FUNCTION hr_key_check(key_version integer, check_value text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded text;
BEGIN
    SELECT k.check_value INTO recorded FROM @extschema@.hr_key_checks k
     WHERE k.key_version = hr_key_check.key_version;
    IF recorded IS NULL THEN
        IF current_setting('transaction_read_only') = 'on' THEN
            RETURN true;
        END IF;
        INSERT INTO @extschema@.hr_key_checks AS k (key_version, check_value)
        VALUES (hr_key_check.key_version, hr_key_check.check_value)
        ON CONFLICT ON CONSTRAINT hr_key_checks_pkey DO NOTHING;
        SELECT k.check_value INTO recorded FROM @extschema@.hr_key_checks k
         WHERE k.key_version = hr_key_check.key_version;
    END IF;
    RETURN recorded = check_value;
END
$$;

-- The job-board secret as stored in pf_credentials: the JSON text of an
-- object with exactly api_key, api_secret and refresh_token (null where absent).
CREATE FUNCTION hr_integration_secret_json(api_key text, api_secret text, refresh_token text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.jsonb_build_object('api_key', api_key, 'api_secret', api_secret,
                                     'refresh_token', refresh_token)::text;

-- Creates the pf_credentials row for an integration's plaintext secret and
-- logs the move; returns the new credential id. Verifies that what it wrote
-- decrypts to the secret before returning.
CREATE FUNCTION hr_store_integration_secret(integration_id uuid, organization_id uuid,
    job_board_type text, created_by uuid, secret text, note text) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid uuid := gen_random_uuid();
    aad text := @extschema@.hr_credential_aad(organization_id, cid);
    envelope text := @extschema@.hr_encrypt_credential(secret, aad);
BEGIN
    IF @extschema@.hr_decrypt_credential(envelope, aad) IS DISTINCT FROM secret THEN
        RAISE EXCEPTION 'integration %: the new credential does not decrypt to the secret it was made from', integration_id
            USING ERRCODE = 'data_corrupted';
    END IF;
    INSERT INTO public.pf_credentials (id, organization_id, credential_type, name, encrypted_value, created_by)
    VALUES (cid, organization_id, 'job_board_' || job_board_type, job_board_type || ' - Migrated', envelope, created_by);
    INSERT INTO public.pf_credential_migrations (table_name, record_id, credential_type, migrated_by, notes)
    VALUES ('hr_job_board_integrations', integration_id, 'job_board_' || job_board_type, NULL, note);
    RETURN cid;
END
$$;

-- Keeps old code paths correct during the transition. Installed twice by
-- 003: AFTER INSERT (so an upsert that turns into an UPDATE never creates a
-- credential for the row it did not insert) and BEFORE UPDATE OF the
-- plaintext columns. A write carrying plaintext:
--   - in phase 'enforced' is refused (23514);
--   - with no credential yet, moves the secret to a new pf_credentials row
--     and links it (phase 'dual': "new plaintext is moved at once");
--   - with a credential, re-encrypts it only if the secret changed, so an
--     upsert or a restore of the same values never encrypts twice.
-- Setting all three columns to NULL clears the plaintext copy; it is not a
-- credential change. The extension's own batches (rollback, enforce) set
-- hr_migrations.backfill_in_progress and are not synced back.
-- SECURITY DEFINER: the writer needs no access to pf_credentials or keys.
CREATE FUNCTION hr_job_board_integrations_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text;
    cred record;
    aad text;
    cid uuid;
BEGIN
    IF TG_LEVEL <> 'ROW' OR NOT ((TG_WHEN = 'AFTER' AND TG_OP = 'INSERT') OR (TG_WHEN = 'BEFORE' AND TG_OP = 'UPDATE')) THEN
        RAISE EXCEPTION 'hr_job_board_integrations_trigger() must be an AFTER INSERT or BEFORE UPDATE ... FOR EACH ROW trigger'
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    IF NEW.api_key IS NULL AND NEW.api_secret IS NULL AND NEW.refresh_token IS NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.api_key IS NOT DISTINCT FROM OLD.api_key
       AND NEW.api_secret IS NOT DISTINCT FROM OLD.api_secret
       AND NEW.refresh_token IS NOT DISTINCT FROM OLD.refresh_token THEN
        RETURN NEW;
    END IF;
    IF @extschema@.hr_migration_phase('integration_credentials') = 'enforced' THEN
        RAISE EXCEPTION 'hr_job_board_integrations no longer accepts plaintext credentials: integration_credentials is enforced'
            USING ERRCODE = 'check_violation', TABLE = 'hr_job_board_integrations',
                  DETAIL = format('integration %s', NEW.id),
                  HINT = 'store the secret in pf_credentials with hr_encrypt_credential() and set credential_id';
    END IF;
    IF coalesce(current_setting('hr_migrations.backfill_in_progress', true), 'off') IN ('on', 'true') THEN
        RETURN NEW;
    END IF;

    secret := @extschema@.hr_integration_secret_json(NEW.api_key, NEW.api_secret, NEW.refresh_token);
    IF NEW.credential_id IS NULL THEN
        cid := @extschema@.hr_store_integration_secret(NEW.id, NEW.organization_id, NEW.job_board_type,
            NEW.created_by, secret, 'hr_migrations: plaintext written by the application, moved at once');
        IF TG_OP = 'INSERT' THEN
            UPDATE public.hr_job_board_integrations SET credential_id = cid WHERE id = NEW.id;
        ELSE
            NEW.credential_id := cid;
        END IF;
    ELSE
        SELECT c.id, c.organization_id, c.encrypted_value INTO cred
          FROM public.pf_credentials c WHERE c.id = NEW.credential_id FOR UPDATE;
        aad := @extschema@.hr_credential_aad(cred.organization_id, cred.id);
        IF @extschema@.hr_decrypt_credential(cred.encrypted_value, aad) IS DISTINCT FROM secret THEN
            UPDATE public.pf_credentials
               SET encrypted_value = @extschema@.hr_encrypt_credential(secret, aad), updated_at = now()
             WHERE id = cred.id;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- One batch of the migration: integrations without credential_id and with
-- any plaintext column set, in id order after the saved cursor, FOR UPDATE
-- SKIP LOCKED. For each: a new credential id, the JSON secret encrypted with
-- hr_credential_aad(organization_id, id), a pf_credentials row, the link,
-- and a pf_credential_migrations row; what was written is decrypted and
-- compared first. Any failure rolls back the whole batch. Plaintext columns
-- stay as they are until the phase is enforced (rollback needs them).
-- migrated: rows moved by this call (with dry_run: rows the next batch
-- would move, nothing written); skipped: integrations with no plaintext and
-- no credential (nothing to move); remaining: integrations still to move.
CREATE FUNCTION hr_migrate_integrations(batch_size integer DEFAULT 1000, dry_run boolean DEFAULT false)
RETURNS TABLE (migrated bigint, skipped bigint, remaining bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after_id uuid;
    next_cursor uuid;
    r record;
    n bigint := 0;
BEGIN
    PERFORM @extschema@.hr_check_batch_size(batch_size);
    IF @extschema@.hr_require_applied('integration_credentials') = 'enforced' THEN
        RAISE EXCEPTION 'integration_credentials is enforced: there is no plaintext left to migrate'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF dry_run THEN
        SELECT count(*) INTO n FROM public.hr_job_board_integrations i
         WHERE i.credential_id IS NULL
           AND (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL);
        migrated := least(n, batch_size::bigint);
    ELSE
        after_id := @extschema@.hr_backfill_cursor('integration_credentials');
        PERFORM set_config('hr_migrations.backfill_in_progress', 'on', true);
        LOOP
            FOR r IN
                SELECT i.id, i.organization_id, i.job_board_type, i.created_by,
                       i.api_key, i.api_secret, i.refresh_token
                  FROM public.hr_job_board_integrations i
                 WHERE i.id >= coalesce(after_id, '00000000-0000-0000-0000-000000000000'::uuid)
                   AND i.id IS DISTINCT FROM after_id
                   AND i.credential_id IS NULL
                   AND (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)
                 ORDER BY i.id
                 LIMIT batch_size
                   FOR UPDATE SKIP LOCKED
            LOOP
                UPDATE public.hr_job_board_integrations i
                   SET credential_id = @extschema@.hr_store_integration_secret(r.id, r.organization_id,
                           r.job_board_type, r.created_by,
                           @extschema@.hr_integration_secret_json(r.api_key, r.api_secret, r.refresh_token),
                           'hr_migrations: plaintext credentials moved to pf_credentials')
                 WHERE i.id = r.id;
                n := n + 1;
                next_cursor := r.id;
            END LOOP;
            EXIT WHEN n > 0 OR after_id IS NULL;
            after_id := NULL;
        END LOOP;
        PERFORM set_config('hr_migrations.backfill_in_progress', 'off', true);
        PERFORM @extschema@.hr_backfill_advance('integration_credentials', next_cursor, n);
        migrated := n;
    END IF;
    SELECT count(*) FILTER (WHERE i.api_key IS NULL AND i.api_secret IS NULL AND i.refresh_token IS NULL),
           count(*) FILTER (WHERE i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)
      INTO skipped, remaining
      FROM public.hr_job_board_integrations i
     WHERE i.credential_id IS NULL;
    RETURN NEXT;
END
$$;

-- Dual read of an integration's secret: from its credential when linked,
-- else (unless the phase is enforced) from the plaintext columns. NULL when
-- the integration does not exist or holds no secret.
CREATE FUNCTION hr_integration_secret(integration_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i record;
    c record;
BEGIN
    SELECT x.credential_id, x.api_key, x.api_secret, x.refresh_token INTO i
      FROM public.hr_job_board_integrations x WHERE x.id = integration_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF i.credential_id IS NOT NULL THEN
        SELECT y.id, y.organization_id, y.encrypted_value INTO c
          FROM public.pf_credentials y WHERE y.id = i.credential_id;
        RETURN @extschema@.hr_decrypt_credential(c.encrypted_value,
                   @extschema@.hr_credential_aad(c.organization_id, c.id))::jsonb;
    END IF;
    IF @extschema@.hr_migration_phase('integration_credentials') = 'enforced'
       OR (i.api_key IS NULL AND i.api_secret IS NULL AND i.refresh_token IS NULL) THEN
        RETURN NULL;
    END IF;
    RETURN @extschema@.hr_integration_secret_json(i.api_key, i.api_secret, i.refresh_token)::jsonb;
END
$$;

-- One batch of the plan's rollback: for linked integrations, writes the
-- plaintext back from the credential byte for byte, unlinks it, deletes the
-- credential (it was made for this integration) and logs it. Refused while
-- the phase is enforced: step back to dual first. Returns rows rolled back.
CREATE FUNCTION hr_rollback_integrations(batch_size integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    s jsonb;
    n bigint := 0;
BEGIN
    PERFORM @extschema@.hr_check_batch_size(batch_size);
    IF @extschema@.hr_require_applied('integration_credentials') = 'enforced' THEN
        RAISE EXCEPTION 'cannot roll back integration_credentials while it is enforced'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'SELECT hr_set_phase(''integration_credentials'', ''dual'') first';
    END IF;
    PERFORM set_config('hr_migrations.backfill_in_progress', 'on', true);
    FOR r IN
        SELECT i.id, i.job_board_type, c.id AS cid, c.organization_id AS corg, c.encrypted_value
          FROM public.hr_job_board_integrations i
          JOIN public.pf_credentials c ON c.id = i.credential_id
         ORDER BY i.id
         LIMIT batch_size
           FOR UPDATE OF i SKIP LOCKED
    LOOP
        s := @extschema@.hr_decrypt_credential(r.encrypted_value,
                 @extschema@.hr_credential_aad(r.corg, r.cid))::jsonb;
        UPDATE public.hr_job_board_integrations
           SET api_key = s ->> 'api_key', api_secret = s ->> 'api_secret',
               refresh_token = s ->> 'refresh_token', credential_id = NULL
         WHERE id = r.id;
        DELETE FROM public.pf_credentials c
         WHERE c.id = r.cid
           AND NOT EXISTS (SELECT 1 FROM public.hr_job_board_integrations o WHERE o.credential_id = r.cid);
        INSERT INTO public.pf_credential_migrations (table_name, record_id, credential_type, migrated_by, notes)
        VALUES ('hr_job_board_integrations', r.id, 'job_board_' || r.job_board_type, NULL,
                'hr_migrations: rolled back, plaintext restored from pf_credentials');
        n := n + 1;
    END LOOP;
    PERFORM set_config('hr_migrations.backfill_in_progress', 'off', true);
    RETURN n;
END
$$;

-- One batch of re-encryption under hr_migrations.active_key_version:
-- credentials whose envelope names another version are decrypted and
-- encrypted again with the AAD rebuilt from the row. Returns rows rewrapped.
CREATE FUNCTION hr_rewrap_credentials(batch_size integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    active integer;
    r record;
    aad text;
    n bigint := 0;
BEGIN
    PERFORM @extschema@.hr_check_batch_size(batch_size);
    SELECT v.key_version INTO active FROM @extschema@.hr_keyring_versions() v WHERE v.active;
    FOR r IN
        SELECT c.id, c.organization_id, c.encrypted_value
          FROM public.pf_credentials c
         WHERE @extschema@.hr_envelope_key_version(c.encrypted_value) <> active
         ORDER BY c.id
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED
    LOOP
        aad := @extschema@.hr_credential_aad(r.organization_id, r.id);
        UPDATE public.pf_credentials
           SET encrypted_value = @extschema@.hr_encrypt_credential(
                   @extschema@.hr_decrypt_credential(r.encrypted_value, aad), aad)
         WHERE id = r.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Counts for hr_migration_status(). migrated: integrations with a
-- credential; pending: without one and with plaintext; blocked: none (any
-- plaintext can be encrypted once the keyring is configured).
CREATE FUNCTION hr_integration_credentials_status(phase text,
    OUT total bigint, OUT migrated bigint, OUT pending bigint, OUT blocked bigint, OUT note text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plaintext_left bigint;
    versions text;
BEGIN
    blocked := 0;
    IF phase = 'not_applied' THEN
        total := @extschema@.hr_row_count('public.hr_job_board_integrations');
        migrated := 0; pending := total;
        note := 'configure the keyring (docs/key-management.md), then apply sql/migrations/003_integration_credentials.sql';
        RETURN;
    END IF;
    SELECT count(*),
           count(*) FILTER (WHERE i.credential_id IS NOT NULL),
           count(*) FILTER (WHERE i.credential_id IS NULL AND (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)),
           count(*) FILTER (WHERE i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)
      INTO total, migrated, pending, plaintext_left
      FROM public.hr_job_board_integrations i;
    SELECT string_agg(format('%s under key version %s', cnt, coalesce(v::text, '(not an envelope)')), ', ' ORDER BY v)
      INTO versions
      FROM (SELECT @extschema@.hr_envelope_key_version(c.encrypted_value) AS v, count(*) AS cnt
              FROM public.pf_credentials c GROUP BY 1) s;
    note := concat_ws('; ',
        CASE WHEN pending > 0 THEN
            format('%s integrations still have plaintext only: CALL hr_run_backfill(''integration_credentials'')', pending) END,
        CASE WHEN phase <> 'enforced' AND plaintext_left > 0 THEN
            format('%s integrations still hold plaintext columns (cleared when enforced)', plaintext_left) END,
        CASE WHEN phase = 'enforced' THEN 'plaintext columns cleared and refused' END,
        'credentials: ' || coalesce(versions, 'none'));
END
$$;

-- Phase rules for integration_credentials, called by hr_set_phase() under its lock.
-- enforced: every integration with plaintext must have a credential that
-- decrypts to exactly that plaintext; then the plaintext columns are cleared.
CREATE FUNCTION hr_integration_credentials_set_phase(from_phase text, to_phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass := to_regclass('public.hr_job_board_integrations');
    applied boolean;
    st record;
    differing bigint;
BEGIN
    applied := EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = 'credential_id' AND NOT attisdropped)
      AND (SELECT count(*) FROM pg_trigger WHERE tgrelid = tbl AND NOT tgisinternal
              AND tgname IN ('hr_job_board_integrations_sync_insert', 'hr_job_board_integrations_sync_update')) = 2;
    IF @extschema@.hr_check_applied('integration_credentials', applied, to_phase,
           'public.hr_job_board_integrations has no credential_id column or sync triggers') THEN
        RETURN;
    END IF;
    IF to_phase IN ('migrated', 'enforced') THEN
        SELECT * INTO st FROM @extschema@.hr_integration_credentials_status(from_phase);
        IF st.pending > 0 THEN
            RAISE EXCEPTION 'cannot move integration_credentials to %: % integrations have plaintext and no credential', to_phase, st.pending
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'CALL hr_run_backfill(''integration_credentials'') first';
        END IF;
    END IF;
    IF to_phase = 'enforced' THEN
        SELECT count(*) INTO differing
          FROM public.hr_job_board_integrations i
          JOIN public.pf_credentials c ON c.id = i.credential_id
         WHERE (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)
           AND @extschema@.hr_decrypt_credential(c.encrypted_value, @extschema@.hr_credential_aad(c.organization_id, c.id))
               IS DISTINCT FROM @extschema@.hr_integration_secret_json(i.api_key, i.api_secret, i.refresh_token);
        IF differing > 0 THEN
            RAISE EXCEPTION 'cannot enforce integration_credentials: the plaintext of % integrations differs from their credential', differing
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'write the plaintext again (the sync trigger re-encrypts it) or roll those integrations back';
        END IF;
        PERFORM set_config('hr_migrations.backfill_in_progress', 'on', true);
        UPDATE public.hr_job_board_integrations
           SET api_key = NULL, api_secret = NULL, refresh_token = NULL
         WHERE api_key IS NOT NULL OR api_secret IS NOT NULL OR refresh_token IS NOT NULL;
        PERFORM set_config('hr_migrations.backfill_in_progress', 'off', true);
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION hr_key_check(integer, text),
    hr_store_integration_secret(uuid, uuid, text, uuid, text, text),
    hr_migrate_integrations(integer, boolean),
    hr_integration_secret(uuid),
    hr_rollback_integrations(integer),
    hr_rewrap_credentials(integer),
    hr_integration_credentials_status(text),
    hr_integration_credentials_set_phase(text, text) FROM PUBLIC;
