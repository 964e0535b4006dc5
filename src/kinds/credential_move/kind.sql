-- Kind credential_move (migration integration_credentials): job-board
-- credentials moved into AES-256-GCM envelopes in a credentials table. A
-- table of this kind has `id`, `organization_id`, `job_board_type`,
-- `created_by` and the plaintext columns `api_key`, `api_secret`,
-- `refresh_token` (the secret's format, docs/sql-reference.md, fixes those names); its
-- script adds `credential_id uuid`. The credentials table and the audit log
-- are named by the registry (pf_credentials, pf_credential_migrations).
-- Keys never appear here: the envelope functions read the keyring file.

-- Key check values: one row per key version, written on the version's first
-- use. Not the key: 16 bytes of a domain-separated SHA-256 of it.
CREATE TABLE hr_migrations.hr_key_checks (
    key_version   integer PRIMARY KEY CHECK (key_version > 0),
    check_value   text NOT NULL,
    first_used_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hr_migrations.hr_key_checks IS
    'hr_migrations: key check value of each keyring version, recorded on first use (never the key)';
SELECT pg_catalog.pg_extension_config_dump('hr_migrations.hr_key_checks', '');

-- Records a version's check value on first use; true when it matches the
-- recorded one. In a read-only transaction a first use cannot be recorded
-- and is accepted; the next writing transaction records it. Called by the
-- Rust keystore as hr_migrations_definer (src/keystore.rs), never by app
-- roles: one that could call it could record a bogus value for an unused
-- version and make that key unusable.
CREATE FUNCTION hr_migrations.hr_key_check(key_version integer, check_value text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded text;
BEGIN
    SELECT k.check_value INTO recorded FROM hr_migrations.hr_key_checks k
     WHERE k.key_version = hr_key_check.key_version;
    IF recorded IS NULL THEN
        IF current_setting('transaction_read_only') = 'on' THEN
            RETURN true;
        END IF;
        INSERT INTO hr_migrations.hr_key_checks AS k (key_version, check_value)
        VALUES (hr_key_check.key_version, hr_key_check.check_value)
        ON CONFLICT ON CONSTRAINT hr_key_checks_pkey DO NOTHING;
        SELECT k.check_value INTO recorded FROM hr_migrations.hr_key_checks k
         WHERE k.key_version = hr_key_check.key_version;
    END IF;
    RETURN recorded = check_value;
END
$$;

-- The credentials table and audit log of a credential_move migration.
CREATE FUNCTION hr_migrations.hr_credentials_table(migration text) RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT hr_migrations.hr_plain_table(to_regclass(format('%I.%I', e.table_schema, e.objects ->> 'credentials_table')))
      FROM hr_migrations.hr_migration_entry(migration) e  -- 22023 when not registered
$$;

CREATE FUNCTION hr_migrations.hr_credential_log_table(migration text) RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT hr_migrations.hr_plain_table(to_regclass(format('%I.%I', e.table_schema, e.objects ->> 'log_table')))
      FROM hr_migrations.hr_migration_entry(migration) e  -- 22023 when not registered
$$;

-- Raises 42501 unless a credential belongs to the integration's
-- organization. Every read, rollback, rewrap, clearing and link checks it:
-- a credential_id pointing at another tenant's credential reads nothing.
CREATE FUNCTION hr_migrations.hr_require_same_organization(integration_org uuid, credential_org uuid) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF integration_org IS DISTINCT FROM credential_org THEN
        RAISE EXCEPTION 'the credential linked to this integration belongs to another organization'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'credential_id must name a credential of the integration''s own organization';
    END IF;
    RETURN true;
END
$$;

-- Stores a job-board secret for an integration: a new credential (sealed
-- with AAD hr_credential_aad(organization_id, new id), verified to open,
-- logged) or, when the integration already has one, that credential
-- re-encrypted if the secret changed. Returns the credential id.
CREATE FUNCTION hr_migrations.hr_put_secret(migration text, integration_id uuid, organization_id uuid,
    job_board_type text, created_by uuid, credential_id uuid, secret text, note text) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    creds regclass := hr_migrations.hr_credentials_table(migration);
    cid uuid := credential_id;
    corg uuid;
    envelope text;
    same boolean;
BEGIN
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY[hr_migrations.hr_migration_table(migration), creds,
                                                         hr_migrations.hr_credential_log_table(migration)]::oid[]);
    IF cid IS NULL THEN
        cid := gen_random_uuid();
        EXECUTE format('INSERT INTO %s (id, organization_id, credential_type, name, encrypted_value, created_by)
                        VALUES ($1, $2, $3, $4, $5, $6)', creds)
          USING cid, organization_id, 'job_board_' || job_board_type, job_board_type || ' - Migrated',
                hr_migrations.hr_seal_verified(secret, hr_migrations.hr_credential_aad(organization_id, cid), organization_id), created_by;
        EXECUTE format('INSERT INTO %s (table_name, record_id, credential_type, migrated_by, notes)
                        VALUES ($1, $2, $3, NULL, $4)', hr_migrations.hr_credential_log_table(migration))
          USING (hr_migrations.hr_migration_entry(migration)).table_name, integration_id,
                'job_board_' || job_board_type, note;
        RETURN cid;
    END IF;
    EXECUTE format('SELECT c.organization_id, c.encrypted_value FROM ONLY %s c WHERE c.id = $1 FOR UPDATE', creds)
       INTO corg, envelope USING cid;
    PERFORM hr_migrations.hr_require_same_organization(organization_id, corg);
    BEGIN
        same := hr_migrations.hr_open_credential(corg, envelope, hr_migrations.hr_credential_aad(corg, cid)) = secret
                -- Sealed before with the keyring (v1) or an older key: sealed again.
                AND hr_migrations.hr_envelope_generation(envelope) IS NOT NULL;
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation OR data_corrupted THEN
        same := false;  -- an envelope that no longer opens is replaced
    END;
    IF NOT same THEN
        EXECUTE format('UPDATE ONLY %s c SET encrypted_value = $2, updated_at = now() WHERE c.id = $1', creds)
          USING cid, hr_migrations.hr_seal_verified(secret, hr_migrations.hr_credential_aad(corg, cid), corg);
    END IF;
    RETURN cid;
END
$$;

-- Keeps old code paths correct during the transition. Installed twice by
-- 003: AFTER INSERT (so an upsert that turns into an UPDATE never creates a
-- credential for the row it did not insert) and BEFORE UPDATE OF the
-- plaintext columns and credential_id, both WHEN (NOT
-- hr_backfill_in_progress()). In every phase, linking a credential of
-- another organization is refused (42501). A write carrying plaintext:
--   - from phase enforced on is refused (23514);
--   - with no credential yet, moves the secret to a new credential and
--     links it (phase dual: "new plaintext is moved at once");
--   - with a credential, re-encrypts it only if the secret changed.
-- Setting all three columns to NULL clears the plaintext copy; it is not a
-- credential change.
-- SECURITY DEFINER (owner hr_migrations_definer): writers need no access
-- to the credentials table or keys. EXECUTE is granted to nobody, and
-- hr_trigger_migration() refuses any table but its own.
CREATE OR REPLACE FUNCTION hr_migrations.hr_job_board_integrations_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text;
    corg uuid;
    cid uuid;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF TG_LEVEL <> 'ROW' OR NOT ((TG_WHEN = 'AFTER' AND TG_OP = 'INSERT') OR (TG_WHEN = 'BEFORE' AND TG_OP = 'UPDATE')) THEN
        RAISE EXCEPTION 'hr_job_board_integrations_trigger() must be an AFTER INSERT or BEFORE UPDATE ... FOR EACH ROW trigger'
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    m := hr_migrations.hr_trigger_migration(TG_RELID, 'credential_move');
    IF hr_migrations.hr_backfill_in_progress() THEN
        RETURN NEW;
    END IF;
    IF NEW.credential_id IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.credential_id IS DISTINCT FROM OLD.credential_id) THEN
        EXECUTE format('SELECT c.organization_id FROM %s c WHERE c.id = $1', hr_migrations.hr_credentials_table(m))
           INTO corg USING NEW.credential_id;
        PERFORM hr_migrations.hr_require_same_organization(NEW.organization_id, corg);
    END IF;
    IF NEW.api_key IS NULL AND NEW.api_secret IS NULL AND NEW.refresh_token IS NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.api_key IS NOT DISTINCT FROM OLD.api_key
       AND NEW.api_secret IS NOT DISTINCT FROM OLD.api_secret
       AND NEW.refresh_token IS NOT DISTINCT FROM OLD.refresh_token THEN
        RETURN NEW;
    END IF;
    IF NOT hr_migrations.hr_phase_accepts_plaintext(hr_migrations.hr_migration_phase(m)) THEN
        RAISE EXCEPTION '% no longer accepts plaintext credentials: % is enforced', TG_TABLE_NAME, m
            USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
                  HINT = 'store the secret with hr_set_integration_secret(id, secret) instead';
    END IF;
    cid := hr_migrations.hr_put_secret(m, NEW.id, NEW.organization_id, NEW.job_board_type, NEW.created_by,
        NEW.credential_id,
        hr_migrations.hr_integration_secret_json(NEW.api_key, NEW.api_secret, NEW.refresh_token),
        'hr_migrations: plaintext written by the application, moved at once');
    IF TG_OP = 'INSERT' THEN
        IF NEW.credential_id IS NULL THEN
            PERFORM hr_migrations.hr_set_backfill_flag(true);  -- our own write: the triggers skip it
            EXECUTE format('UPDATE ONLY %s i SET credential_id = $1 WHERE i.id = $2', TG_RELID::regclass)
              USING cid, NEW.id;
            PERFORM hr_migrations.hr_set_backfill_flag(false);
        END IF;
    ELSE
        NEW.credential_id := cid;
    END IF;
    RETURN NEW;
END
$$;

-- Dual read of an integration's secret (docs/sql-reference.md): from its credential
-- when linked (which must belong to the integration's organization), else,
-- before enforced, from the plaintext columns. NULL when the integration
-- does not exist or holds no secret. The secret is parsed in Rust
-- (hr_open_secret), so no error can quote it.
-- SECURITY DEFINER (owner hr_migrations_definer): EXECUTE for service_role.
CREATE FUNCTION hr_migrations.hr_integration_secret(integration_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phase text := hr_migrations.hr_require_applied('integration_credentials');
    i record;
    c record;
    s record;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF hr_migrations.hr_phase_accepts_plaintext(phase) THEN
        SELECT x.organization_id, x.credential_id, x.api_key, x.api_secret, x.refresh_token INTO i
          FROM public.hr_job_board_integrations x WHERE x.id = integration_id;
    ELSE
        SELECT x.organization_id, x.credential_id, NULL::text AS api_key, NULL::text AS api_secret,
               NULL::text AS refresh_token INTO i
          FROM public.hr_job_board_integrations x WHERE x.id = integration_id;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF i.credential_id IS NOT NULL THEN
        SELECT y.id, y.organization_id, y.encrypted_value INTO c
          FROM public.pf_credentials y WHERE y.id = i.credential_id;
        PERFORM hr_migrations.hr_require_same_organization(i.organization_id, c.organization_id);
        SELECT * INTO s FROM hr_migrations.hr_open_secret(c.encrypted_value,
                                 hr_migrations.hr_credential_aad(c.organization_id, c.id), c.organization_id);
        RETURN jsonb_build_object('api_key', s.api_key, 'api_secret', s.api_secret, 'refresh_token', s.refresh_token);
    END IF;
    IF i.api_key IS NULL AND i.api_secret IS NULL AND i.refresh_token IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('api_key', i.api_key, 'api_secret', i.api_secret, 'refresh_token', i.refresh_token);
END
$$;

-- Stores an integration's secret the new way (the enforced phase refuses
-- plaintext columns): secret is the JSON text of an object with exactly
-- api_key, api_secret and refresh_token, each a string or null, parsed in
-- Rust (hr_parse_secret) so a malformed one is refused (22023) without any
-- part of it in the error. Encrypts it into the integration's credential
-- (created and linked if it has none) and returns the credential id. Before
-- enforced the plaintext columns are kept equal to it (old code still reads
-- them); from enforced on they are set NULL. P0002 for an unknown integration.
-- SECURITY DEFINER (owner hr_migrations_definer): EXECUTE for service_role.
CREATE FUNCTION hr_migrations.hr_set_integration_secret(integration_id uuid, secret text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phase text := hr_migrations.hr_require_applied('integration_credentials');
    s record;
    i record;
    cid uuid;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF secret IS NULL THEN
        RAISE EXCEPTION 'secret must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO s FROM hr_migrations.hr_parse_secret(secret);
    SELECT x.id, x.organization_id, x.job_board_type, x.created_by, x.credential_id INTO i
      FROM ONLY public.hr_job_board_integrations x WHERE x.id = integration_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no integration with that id' USING ERRCODE = 'no_data_found';
    END IF;
    cid := hr_migrations.hr_put_secret('integration_credentials', i.id, i.organization_id, i.job_board_type,
        i.created_by, i.credential_id,
        hr_migrations.hr_integration_secret_json(s.api_key, s.api_secret, s.refresh_token),
        'hr_migrations: secret set with hr_set_integration_secret()');
    PERFORM hr_migrations.hr_set_backfill_flag(true);  -- our own write: the triggers skip it
    IF hr_migrations.hr_phase_accepts_plaintext(phase) THEN
        UPDATE ONLY public.hr_job_board_integrations x
           SET credential_id = cid, api_key = s.api_key, api_secret = s.api_secret,
               refresh_token = s.refresh_token, updated_at = now()
         WHERE x.id = integration_id;
    ELSIF phase = 'contracted' THEN  -- the plaintext columns are gone
        UPDATE ONLY public.hr_job_board_integrations x SET credential_id = cid, updated_at = now()
         WHERE x.id = integration_id;
    ELSE
        -- Plaintext the clearing has not reached yet would otherwise keep
        -- the old secret and block the row (it no longer matches).
        UPDATE ONLY public.hr_job_board_integrations x
           SET credential_id = cid, api_key = NULL, api_secret = NULL, refresh_token = NULL, updated_at = now()
         WHERE x.id = integration_id;
    END IF;
    PERFORM hr_migrations.hr_set_backfill_flag(false);
    RETURN cid;
END
$$;

-- One batch of the move (docs/sql-reference.md), through the engine. migrated: rows
-- moved by this call (with dry_run, rows the next batch would move; nothing
-- written); skipped: integrations with neither plaintext nor credential;
-- remaining: integrations still to move (a count: CALL hr_run_backfill
-- does not count per batch).
CREATE FUNCTION hr_migrations.hr_migrate_integrations(batch_size integer DEFAULT 1000, dry_run boolean DEFAULT false)
RETURNS TABLE (migrated bigint, skipped bigint, remaining bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();
    PERFORM hr_migrations.hr_check_batch_size(batch_size);
    IF NOT dry_run THEN
        migrated := hr_migrations.hr_engine_batch('integration_credentials', 'backfill', batch_size);
    END IF;
    SELECT * INTO c FROM hr_migrations.hr_operation_counts('integration_credentials', 'backfill');
    IF dry_run THEN
        migrated := least(c.pending, batch_size::bigint);
    END IF;
    remaining := c.pending;
    skipped := c.total - c.migrated - c.pending - c.blocked;
    RETURN NEXT;
END
$$;

-- One batch of the plan's rollback, through the engine; rows whose
-- credential cannot be restored exactly are skipped and recorded.
CREATE FUNCTION hr_migrations.hr_rollback_integrations(batch_size integer DEFAULT 1000) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hr_migrations.hr_require_integrity(); SELECT hr_migrations.hr_engine_batch('integration_credentials', 'rollback', batch_size) $$;

-- One batch of re-encryption under hr_migrations.active_key_version, through
-- the engine: a cursor over the credentials table, failures recorded.
CREATE FUNCTION hr_migrations.hr_rewrap_credentials(batch_size integer DEFAULT 1000) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hr_migrations.hr_require_integrity(); SELECT hr_migrations.hr_engine_batch('integration_credentials', 'rewrap', batch_size) $$;

-- Rewrap to the end, one committed batch at a time (docs/key-management.md).
-- After a new active keyring key: the organizations' data keys are
-- rewrapped (one row per organization and generation: O(organizations),
-- the credentials are not rewritten); then credentials still sealed with
-- the keyring directly (v1) or with an older generation of their
-- organization's key are sealed with the newest; then superseded
-- generations no credential uses are destroyed.
CREATE PROCEDURE hr_migrations.hr_run_rewrap(batch_size integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    retired bigint;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    CALL hr_migrations.hr_run_data_key_rewrap(coalesce(batch_size, 1000));
    PERFORM hr_migrations.hr_procedure_step();
    -- A keyring key rotation leaves every credential as it is: unless an
    -- organization has a superseded generation or an envelope v1 remains,
    -- the credentials are not visited (the pending predicate costs a few
    -- microseconds a credential; this check, one pass of starts_with).
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY(SELECT x FROM hr_migrations.hr_all_credentials_tables() x)::oid[]);
    IF NOT hr_migrations.hr_reseal_needed() THEN
        RAISE NOTICE 'integration_credentials: rewrap: finished: 0 rows (every credential is sealed with its organization''s newest data key)';
        RETURN;
    END IF;
    CALL hr_migrations.hr_run_batches('integration_credentials', 'rewrap', batch_size);
    PERFORM hr_migrations.hr_procedure_step();
    retired := hr_migrations.hr_retire_data_keys();
    COMMIT;
    PERFORM hr_migrations.hr_procedure_step();
    IF retired > 0 THEN
        RAISE NOTICE 'data keys: % superseded generations destroyed (no credential used them any more)', retired;
    END IF;
END
$$;

-- Whether any credential may need resealing: an organization has a data key
-- generation older than its newest that is still wrapped (superseded), or
-- a credentials table still holds an envelope v1. False means the rewrap's
-- pending predicate holds for no credential: a generation older than the
-- newest is either superseded (then this is true) or gone (its credentials
-- are blocked, not pending). SECURITY DEFINER after the integrity check,
-- like hr_operation_counts: the credentials tables belong to the admin, and
-- a superuser calling hr_run_rewrap must not query them as itself.
CREATE FUNCTION hr_migrations.hr_reseal_needed() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    found boolean;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF EXISTS (SELECT 1 FROM hr_migrations.hr_organization_keys k
                WHERE k.wrapped_key IS NOT NULL
                  AND k.generation < (SELECT max(x.generation) FROM hr_migrations.hr_organization_keys x
                                       WHERE x.organization_id = k.organization_id)) THEN
        RETURN true;
    END IF;
    FOR t IN SELECT x FROM hr_migrations.hr_all_credentials_tables() x LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s c WHERE starts_with(c.encrypted_value, %L))', t, 'hrc1.') INTO found;
        IF found THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- The engine's view of a credential_move migration:
--   backfill  rows with plaintext and no credential;
--   clear     (enforced) rows with a credential that still hold plaintext;
--   rollback  rows with a credential (refused from enforced on);
--   rewrap    credentials (of the credentials table) under another key version.
CREATE FUNCTION hr_migrations.hr_credential_move_spec(migration text, operation text,
    OUT tbl regclass, OUT pending text, OUT blocked text, OUT migrated text,
    OUT action text, OUT writes regclass[], OUT range_action text, OUT range_pending text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    creds regclass := hr_migrations.hr_credentials_table(migration);
    logt regclass := hr_migrations.hr_credential_log_table(migration);
    plaintext text := CASE WHEN hr_migrations.hr_column_exists(t, 'api_key')
        THEN '(t.api_key IS NOT NULL OR t.api_secret IS NOT NULL OR t.refresh_token IS NOT NULL)'
        ELSE 'false' END;
BEGIN
    IF t IS NULL OR creds IS NULL THEN
        RETURN;
    END IF;
    blocked := 'false';
    migrated := 't.credential_id IS NOT NULL';
    CASE operation
        WHEN 'backfill' THEN
            pending := 't.credential_id IS NULL AND ' || plaintext;
            action := 'hr_migrations.hr_credential_move_backfill';
            writes := ARRAY[t, creds, logt];
        WHEN 'clear' THEN
            -- Every row with plaintext: also one whose credential was unlinked
            -- or deleted after the move (the action moves it again first).
            pending := plaintext;
            action := 'hr_migrations.hr_credential_move_clear';
            writes := ARRAY[t, creds, logt];
        WHEN 'rollback' THEN
            IF NOT hr_migrations.hr_phase_accepts_plaintext(hr_migrations.hr_migration_phase(migration)) THEN
                RAISE EXCEPTION 'cannot roll back % while it is %', migration, hr_migrations.hr_migration_phase(migration)
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = format('SELECT hr_migrations.hr_set_phase(%L, ''dual'') first (not possible once contracted)', migration);
            END IF;
            pending := 't.credential_id IS NOT NULL';
            migrated := 'false';
            action := 'hr_migrations.hr_credential_move_rollback';
            writes := ARRAY[t, creds, logt];
        WHEN 'purge' THEN
            -- Credentials the move created (credential_type job_board_*)
            -- that no integration links any more (the integration was
            -- deleted): counted by status, deleted only when the DBA runs
            -- this operation. Other credential types are never touched.
            -- starts_with, not LIKE 'job_board\_%': no backslash in a literal,
            -- whatever the session's standard_conforming_strings.
            pending := format('starts_with(t.credential_type, ''job_board_'') AND NOT EXISTS (SELECT 1 FROM %s i WHERE i.credential_id = t.id)', t);
            migrated := 'false';
            blocked := 'false';
            action := 'hr_migrations.hr_credential_move_purge';
            writes := ARRAY[creds];
            tbl := creds;
            RETURN;
        WHEN 'rewrap' THEN
            PERFORM hr_migrations.hr_keyring_versions();  -- F0000 now, naming the setting, if the keyring is not usable
            -- Sealed with the keyring directly (envelope v1): moved to the
            -- organization's data key (v2). Sealed with an older generation
            -- of its data key: sealed again with the newest. A credential
            -- whose data key generation is gone (shredded) cannot be opened:
            -- blocked, never pending (the two are disjoint).
            pending := 'starts_with(t.encrypted_value, ''hrc1.'')
                        OR (hr_migrations.hr_envelope_generation(t.encrypted_value)
                              < (SELECT max(k.generation) FROM hr_migrations.hr_organization_keys k
                                  WHERE k.organization_id = t.organization_id AND k.wrapped_key IS NOT NULL)
                            AND hr_migrations.hr_data_key_live(t.organization_id, t.encrypted_value))';
            blocked := 'starts_with(t.encrypted_value, ''hrc2.'')
                        AND NOT hr_migrations.hr_data_key_live(t.organization_id, t.encrypted_value)';
            migrated := format('starts_with(t.encrypted_value, ''hrc2.'') AND NOT (%s) AND NOT (%s)', pending, blocked);
            action := 'hr_migrations.hr_credential_move_rewrap';
            writes := ARRAY[creds];
            tbl := creds;
            RETURN;
        ELSE
            RETURN;
    END CASE;
    tbl := t;
END
$$;

CREATE FUNCTION hr_migrations.hr_credential_move_phase_operation(migration text, phase text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE phase WHEN 'dual' THEN 'backfill' WHEN 'migrated' THEN 'backfill' WHEN 'enforced' THEN 'clear' END
$$;

-- Row action of the move, set-based: per integration a new credential id,
-- the JSON secret sealed with hr_credential_aad(organization_id, id) and
-- opened again before the batch commits (hr_seal_verified), the credential
-- row, the link and the audit row, in one statement. Plaintext columns stay
-- as they are until enforced (rollback needs them).
CREATE FUNCTION hr_migrations.hr_credential_move_backfill(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        WITH src AS MATERIALIZED (
            SELECT i.id, i.organization_id, i.job_board_type, i.created_by, gen_random_uuid() AS cid,
                   %1$s.hr_integration_secret_json(i.api_key, i.api_secret, i.refresh_token) AS secret
              FROM ONLY %2$s i WHERE i.id = ANY ($1)
        ), sealed AS MATERIALIZED (
            SELECT s.id, s.organization_id, s.job_board_type, s.created_by, s.cid,
                   %1$s.hr_seal_verified(s.secret, %1$s.hr_credential_aad(s.organization_id, s.cid), s.organization_id) AS envelope
              FROM src s
        ), created AS (
            INSERT INTO %3$s (id, organization_id, credential_type, name, encrypted_value, created_by)
            SELECT s.cid, s.organization_id, 'job_board_' || s.job_board_type,
                   s.job_board_type || ' - Migrated', s.envelope, s.created_by
              FROM sealed s
        ), logged AS (
            INSERT INTO %4$s (table_name, record_id, credential_type, migrated_by, notes)
            SELECT %5$L, s.id, 'job_board_' || s.job_board_type, NULL,
                   'hr_migrations: plaintext credentials moved to pf_credentials'
              FROM sealed s
        )
        UPDATE ONLY %2$s i SET credential_id = s.cid FROM sealed s WHERE i.id = s.id$q$,
        'hr_migrations', hr_migrations.hr_migration_table(migration), hr_migrations.hr_credentials_table(migration),
        hr_migrations.hr_credential_log_table(migration), (hr_migrations.hr_migration_entry(migration)).table_name)
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Raises unless the credential holds exactly the integration's plaintext
-- (55000), belongs to its organization (42501) and opens (22023/22P02).
CREATE FUNCTION hr_migrations.hr_require_secret_matches(envelope text, credential_id uuid, credential_org uuid,
    integration_org uuid, api_key text, api_secret text, refresh_token text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM hr_migrations.hr_require_same_organization(integration_org, credential_org);
    IF NOT hr_migrations.hr_secret_matches(envelope, hr_migrations.hr_credential_aad(credential_org, credential_id),
                                         credential_org, api_key, api_secret, refresh_token) THEN
        RAISE EXCEPTION 'the plaintext columns differ from the integration''s credential: not cleared'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'write the secret again with hr_set_integration_secret(), then SELECT hr_migrations.hr_retry_failures(''integration_credentials'')';
    END IF;
    RETURN true;
END
$$;

-- Row action of enforced: clears the plaintext columns of integrations
-- whose credential decrypts to exactly that plaintext. A row that holds
-- plaintext but no credential (unlinked, or its credential deleted, after
-- the move) is moved first, so its secret is kept, not dropped.
CREATE FUNCTION hr_migrations.hr_credential_move_clear(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass := hr_migrations.hr_migration_table(migration);
    unlinked uuid[];
    n bigint;
BEGIN
    EXECUTE format('SELECT array_agg(t.id) FROM %s t WHERE t.id = ANY ($1) AND t.credential_id IS NULL', tbl)
       INTO unlinked USING ids;
    IF unlinked IS NOT NULL THEN
        PERFORM hr_migrations.hr_credential_move_backfill(migration, unlinked);
    END IF;
    EXECUTE format($q$
        UPDATE ONLY %2$s i SET api_key = NULL, api_secret = NULL, refresh_token = NULL
          FROM %3$s c
         WHERE i.id = ANY ($1) AND c.id = i.credential_id
           AND %1$s.hr_require_secret_matches(c.encrypted_value, c.id, c.organization_id, i.organization_id,
                                              i.api_key, i.api_secret, i.refresh_token)$q$,
        'hr_migrations', tbl, hr_migrations.hr_credentials_table(migration))
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Row action of the rollback: the plaintext written back from the
-- credential exactly (hr_open_secret refuses anything it could not restore
-- byte for byte), the link cleared, the credential deleted when no other
-- integration uses it, the rollback logged. A row that fails leaves its
-- credential untouched and is recorded by the engine.
CREATE FUNCTION hr_migrations.hr_credential_move_rollback(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        WITH src AS MATERIALIZED (
            SELECT i.id, i.job_board_type, c.id AS cid, s.api_key, s.api_secret, s.refresh_token
              FROM %2$s i
              JOIN %3$s c ON c.id = i.credential_id
             CROSS JOIN LATERAL %1$s.hr_open_secret(c.encrypted_value,
                                                    %1$s.hr_credential_aad(c.organization_id, c.id), c.organization_id) s
             WHERE i.id = ANY ($1)
               AND %1$s.hr_require_same_organization(i.organization_id, c.organization_id)
        ), restored AS (
            UPDATE ONLY %2$s i
               SET api_key = s.api_key, api_secret = s.api_secret, refresh_token = s.refresh_token,
                   credential_id = NULL
              FROM src s WHERE i.id = s.id
            RETURNING i.id
        ), deleted AS (
            DELETE FROM ONLY %3$s c USING src s
             WHERE c.id = s.cid
               AND NOT EXISTS (SELECT 1 FROM %2$s o WHERE o.credential_id = s.cid AND o.id <> ALL ($1))
        ), logged AS (
            INSERT INTO %4$s (table_name, record_id, credential_type, migrated_by, notes)
            SELECT %5$L, s.id, 'job_board_' || s.job_board_type, NULL,
                   'hr_migrations: rolled back, plaintext restored from pf_credentials'
              FROM src s
        )
        SELECT count(*) FROM restored$q$,
        'hr_migrations', hr_migrations.hr_migration_table(migration), hr_migrations.hr_credentials_table(migration),
        hr_migrations.hr_credential_log_table(migration), (hr_migrations.hr_migration_entry(migration)).table_name)
      INTO n USING ids;
    RETURN n;
END
$$;

-- One batch of the purge: deletes the given orphaned credentials, each only
-- if still orphaned (an integration linked meanwhile keeps it: the batch
-- holds the rows locked, so a concurrent link either committed first and is
-- seen here, or waits and then fails its foreign key).
CREATE FUNCTION hr_migrations.hr_credential_move_purge(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        DELETE FROM ONLY %2$s c
         WHERE c.id = ANY ($1)
           AND starts_with(c.credential_type, 'job_board_')
           AND NOT EXISTS (SELECT 1 FROM %1$s i WHERE i.credential_id = c.id AND i.credential_id = ANY ($1))$q$,
        hr_migrations.hr_migration_table(migration), hr_migrations.hr_credentials_table(migration))
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Row action of the rewrap: each credential opened with the AAD rebuilt
-- from its row and sealed again under the active version; refused (42501)
-- when an integration of another organization links to it.
-- The integrations are looked up by the batch's ids (here and in the purge:
-- i.credential_id = ANY ($1), implied by the join): with the join's
-- condition alone the planner merged the batch with an index scan of
-- every integration from the smallest credential id up, so each call cost
-- more than the one before (96,001 index entries for a batch of 2,000 at
-- the end of 100k credentials; 2,001 at the start).
CREATE FUNCTION hr_migrations.hr_credential_move_rewrap(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        UPDATE ONLY %3$s c
           SET encrypted_value = %1$s.hr_seal_verified(
                   %1$s.hr_open_credential(c.organization_id, c.encrypted_value, %1$s.hr_credential_aad(c.organization_id, c.id)),
                   %1$s.hr_credential_aad(c.organization_id, c.id), c.organization_id),
               updated_at = now()
         WHERE c.id = ANY ($1)
           AND NOT EXISTS (SELECT 1 FROM %2$s i
                            WHERE i.credential_id = c.id AND i.credential_id = ANY ($1)
                              AND NOT %1$s.hr_require_same_organization(i.organization_id, c.organization_id))$q$,
        'hr_migrations', hr_migrations.hr_migration_table(migration), hr_migrations.hr_credentials_table(migration))
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- applied: credential_id and both sync triggers exist (after the contract
-- phase dropped the triggers, credential_id alone). ready: the updated_at
-- trigger too.
CREATE FUNCTION hr_migrations.hr_credential_move_state(migration text, OUT applied boolean, OUT ready boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    o jsonb := (hr_migrations.hr_migration_entry(migration)).objects;
    contracted boolean := hr_migrations.hr_migration_phase(migration) = 'contracted';
BEGIN
    applied := hr_migrations.hr_column_exists(t, 'credential_id')
        AND (contracted OR (hr_migrations.hr_trigger_exists(t, o ->> 'sync_insert_trigger')
                            AND hr_migrations.hr_trigger_exists(t, o ->> 'sync_update_trigger')));
    ready := applied AND hr_migrations.hr_trigger_exists(t, o ->> 'touch_trigger');
END
$$;

-- Brief work of a phase move. Into migrated: the integrations isolated by
-- organization (hr_isolate_rows). Into enforced: wait for every transaction
-- that has written the table to end (hr_wait_for_writers), so plaintext
-- written before the move is visible to the clearing batches and none
-- escapes them.
CREATE FUNCTION hr_migrations.hr_credential_move_enter(migration text, from_phase text, to_phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_phase = 'migrated' THEN
        PERFORM hr_migrations.hr_isolate_rows(migration, to_phase);
    END IF;
    IF to_phase = 'enforced' THEN
        PERFORM hr_migrations.hr_wait_for_writers(hr_migrations.hr_migration_table(migration));
    END IF;
END
$$;

-- Closing work, once nothing is left pending or blocked. enforced: the
-- plaintext columns are empty, but their statistics still hold what
-- ANALYZE sampled of them (up to 100 secrets per column in pg_statistic,
-- which the table's owner and every BYPASSRLS role can read in pg_stats,
-- and backups keep): they are gathered again, now all NULL. contracted:
-- drop the sync triggers (they served the transition) and the three
-- plaintext columns (dropping a column drops its statistics).
CREATE PROCEDURE hr_migrations.hr_credential_move_finish(migration text, phase text)
LANGUAGE plpgsql
AS $$
DECLARE
    t regclass;
    left_over bigint;
    why_not text;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    t := hr_migrations.hr_migration_table(migration);
    IF NOT hr_migrations.hr_column_exists(t, 'api_key') THEN
        RETURN;
    END IF;
    IF phase = 'enforced' THEN
        why_not := hr_migrations.hr_analyze_briefly(t, ' (api_key, api_secret, refresh_token)');
        IF why_not IS NOT NULL THEN
            RAISE WARNING '%: the statistics of the cleared plaintext columns were not refreshed (%): they may still hold sampled secrets', migration, why_not
                USING HINT = format('ANALYZE %s (api_key, api_secret, refresh_token)', t);
        END IF;
        RETURN;
    END IF;
    IF phase <> 'contracted' THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s t WHERE t.api_key IS NOT NULL OR t.api_secret IS NOT NULL OR t.refresh_token IS NOT NULL', t)
       INTO left_over;
    IF left_over > 0 THEN
        RAISE EXCEPTION '%: % integrations still hold plaintext: the columns are not dropped', migration, left_over
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'SELECT hr_migrations.hr_set_phase(migration, ''enforced''); CALL hr_migrations.hr_run_backfill(migration) clears them; then contract again';
    END IF;
    CALL hr_migrations.hr_ddl(migration, $ddl$
        DROP TRIGGER IF EXISTS {sync_insert_trigger} ON {table};
        DROP TRIGGER IF EXISTS {sync_update_trigger} ON {table};
        ALTER TABLE {table} DROP COLUMN IF EXISTS api_key, DROP COLUMN IF EXISTS api_secret,
                            DROP COLUMN IF EXISTS refresh_token
    $ddl$);
    PERFORM hr_migrations.hr_procedure_step();
    RAISE NOTICE '%: plaintext columns dropped (VACUUM the table; old row versions, WAL and backups still hold what they held: rotate the job-board keys upstream)', migration;
END
$$;

CREATE FUNCTION hr_migrations.hr_credential_move_note(migration text, phase text, pending bigint, blocked bigint, other_failures bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    plaintext_left bigint := 0;
    orphans bigint := 0;
    versions text;
    stale bigint;
    active integer;
    v1 bigint;
    v2 bigint;
    shredded bigint;
    other bigint;
    note text;
BEGIN
    IF hr_migrations.hr_column_exists(t, 'api_key') THEN
        EXECUTE format('SELECT count(*) FROM %s t WHERE t.api_key IS NOT NULL OR t.api_secret IS NOT NULL OR t.refresh_token IS NOT NULL', t)
           INTO plaintext_left;
    END IF;
    -- Credentials by how they are sealed: with their organization's data
    -- key (v2), with the keyring directly (v1: before 0.3.0's data keys, or
    -- hr_encrypt_credential), of an organization whose keys were shredded
    -- (unreadable), or not an envelope at all.
    EXECUTE format('SELECT count(*) FILTER (WHERE starts_with(c.encrypted_value, ''hrc2.'') AND k.live),
                           count(*) FILTER (WHERE starts_with(c.encrypted_value, ''hrc2.'') AND NOT k.live),
                           count(*) FILTER (WHERE starts_with(c.encrypted_value, ''hrc1.'')),
                           count(*) FILTER (WHERE NOT starts_with(c.encrypted_value, ''hrc1.'')
                                              AND NOT starts_with(c.encrypted_value, ''hrc2.''))
                      FROM %s c
                     CROSS JOIN LATERAL (SELECT hr_migrations.hr_data_key_live(c.organization_id, c.encrypted_value) AS live) k',
                   hr_migrations.hr_credentials_table(migration))
       INTO v2, shredded, v1, other;
    versions := concat_ws(', ',
        format('%s under their organization''s data key', v2),
        CASE WHEN v1 > 0 THEN format('%s sealed with the keyring directly (envelopes v1): CALL hr_migrations.hr_run_rewrap() seals them with their organization''s data key', v1) END,
        CASE WHEN shredded > 0 THEN format('%s unreadable: their data key was shredded or no longer exists', shredded) END,
        CASE WHEN other > 0 THEN format('%s not envelopes', other) END);
    -- Data keys not wrapped under the active key version (after ALTER
    -- DATABASE ... SET hr_migrations.active_key_version; pooled backends
    -- keep the old setting until they reconnect, so some may still be
    -- wrapped so).
    active := hr_migrations.hr_active_key_version();
    IF active IS NOT NULL THEN
        SELECT count(*) INTO stale FROM hr_migrations.hr_organization_keys k
         WHERE k.wrapped_key IS NOT NULL AND k.kek_version <> active;
    END IF;
    IF hr_migrations.hr_column_exists(t, 'credential_id') THEN
        SELECT c.pending INTO orphans FROM hr_migrations.hr_operation_counts(migration, 'purge') c;
    END IF;
    note := concat_ws('; ',
        CASE WHEN pending > 0 AND phase IN ('dual', 'migrated') THEN
            format('%s integrations still have plaintext only: CALL hr_migrations.hr_run_backfill(%L)', pending, migration) END,
        CASE WHEN phase IN ('dual', 'migrated') AND plaintext_left > 0 THEN
            format('%s integrations still hold plaintext columns (cleared once enforced)', plaintext_left) END,
        CASE WHEN phase = 'enforced' AND plaintext_left > 0 THEN
            format('plaintext refused and no longer read; %s integrations still hold plaintext (%s pending, %s blocked): CALL hr_migrations.hr_run_backfill(%L) clears it',
                   plaintext_left, pending, blocked, migration)
             WHEN phase = 'enforced' THEN 'plaintext columns cleared and refused' END,
        CASE WHEN phase = 'contracted' AND hr_migrations.hr_column_exists(t, 'api_key') THEN
            format('CALL hr_migrations.hr_run_backfill(%L) drops the plaintext columns', migration)
             WHEN phase = 'contracted' THEN 'plaintext columns dropped' END,
        CASE WHEN other_failures > 0 THEN
            format('%s rows failed a rewrap or rollback: SELECT * FROM hr_migrations.hr_batch_failures WHERE migration = %L', other_failures, migration) END,
        CASE WHEN phase = 'enforced' THEN hr_migrations.hr_contract_eta(migration) END,
        CASE WHEN orphans > 0 THEN
            format('%s credentials are orphaned (no integration links them any more): CALL hr_migrations.hr_run_batches(%L, ''purge'') deletes them', orphans, migration) END,
        'credentials: ' || versions,
        CASE WHEN stale > 0 THEN
            format('%s data keys not under the active key version %s: CALL hr_migrations.hr_run_rewrap() rewraps them (backends that have not reconnected since the version changed may still wrap new ones under the old one)', stale, active) END);
    RETURN note;
END
$$;
