-- Per-organization data keys (formats: src/datakey.rs and
-- docs/key-management.md). Each organization's credentials are sealed with
-- its own random data key (envelope v2, hrc2); the data key is stored here
-- only wrapped by a keyring key (hrk1), one row per organization and
-- generation. Rotating the keyring key rewraps these rows, not the
-- credentials; shredding an organization destroys its rows' wrapped keys,
-- and with them every copy of its credentials once the keyring key that
-- wrapped any older copy of these rows is gone.
-- Written only as the definer role (src/orgkeys.rs, the functions below);
-- the admin role reads it (pg_dump) and may insert (pg_restore).
CREATE TABLE hr_migrations.hr_organization_keys (
    organization_id uuid NOT NULL,
    generation      integer NOT NULL CHECK (generation > 0),
    kek_version     integer CHECK (kek_version > 0),
    wrapped_key     text CHECK (starts_with(wrapped_key, 'hrk1.')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    rewrapped_at    timestamptz,
    retired_at      timestamptz,
    shredded_at     timestamptz,
    PRIMARY KEY (organization_id, generation),
    -- A live key has its wrapping; a destroyed one (retired once no
    -- credential used it, or shredded) has none.
    CHECK ((wrapped_key IS NOT NULL AND kek_version IS NOT NULL AND retired_at IS NULL AND shredded_at IS NULL)
        OR (wrapped_key IS NULL AND kek_version IS NULL AND (retired_at IS NOT NULL OR shredded_at IS NOT NULL)))
);
COMMENT ON TABLE hr_migrations.hr_organization_keys IS
    'hr_migrations: each organization''s data keys, wrapped by a keyring key (never in clear); NULL once retired or shredded';
SELECT pg_catalog.pg_extension_config_dump('hr_migrations.hr_organization_keys', '');

-- The same without the wrapped keys, in the extension's schema.
CREATE VIEW @extschema@.hr_organization_keys AS
SELECT k.organization_id, k.generation, k.kek_version,
       CASE WHEN k.shredded_at IS NOT NULL THEN 'shredded'
            WHEN k.retired_at IS NOT NULL THEN 'retired'
            WHEN k.generation = max(k.generation) OVER (PARTITION BY k.organization_id) THEN 'active'
            ELSE 'superseded' END AS state,
       k.created_at, k.rewrapped_at, k.retired_at, k.shredded_at
  FROM hr_migrations.hr_organization_keys k;
COMMENT ON VIEW @extschema@.hr_organization_keys IS
    'hr_migrations: the data keys of each organization (never the keys): generation, keyring version wrapping it, state';

-- The credentials tables of the migrations of kind credential_move.
CREATE FUNCTION hr_migrations.hr_all_credentials_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT hr_migrations.hr_credentials_table(r.migration)
      FROM hr_migrations.hr_migration_registry r
     WHERE r.kind = 'credential_move' AND hr_migrations.hr_credentials_table(r.migration) IS NOT NULL
$$;

-- The tables hr_shred_organization reads: every credential_move
-- migration's integrations table and credentials table.
CREATE FUNCTION hr_migrations.hr_shred_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT x.t
      FROM hr_migrations.hr_migration_registry r,
           LATERAL (VALUES (hr_migrations.hr_migration_table(r.migration)),
                           (hr_migrations.hr_credentials_table(r.migration))) x(t)
     WHERE r.kind = 'credential_move' AND x.t IS NOT NULL
$$;

-- hr_shred_organization(organization_id uuid) RETURNS bigint
-- (docs/key-management.md, "Crypto-shredding"): destroys the organization's data keys (every generation's wrapped
-- key; a tombstone when it had none, so none is made afterwards) and
-- returns how many of its credentials that made unreadable. Refused (55000,
-- nothing changed) while the organization's secrets are readable some
-- other way that shredding cannot reach: plaintext still in an
-- integrations table (enforce the move first, or delete its integrations),
-- or a credential still an envelope v1 (sealed with the keyring directly:
-- CALL hr_run_rewrap() first). Every backend drops its cached keys at
-- commit.
-- SECURITY DEFINER (owner hr_migrations_definer): it writes
-- hr_organization_keys, which only the definer role writes; EXECUTE for the
-- admin role only. It reads the credentials tables (SELECT granted to the
-- definer by their migration) and writes nothing else; no code of another
-- role is attached to hr_organization_keys (the extension owns it).
CREATE FUNCTION hr_migrations.hr_shred_organization(organization_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    t regclass;
    r record;
    v1 bigint := 0;
    v2 bigint := 0;
    a bigint;
    b bigint;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF organization_id IS NULL THEN
        RAISE EXCEPTION 'organization_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- One change of an organization's keys at a time (hr_rotate_organization_key).
    PERFORM pg_advisory_xact_lock(hashtextextended('hr_organization_keys:' || organization_id::text, 0));
    -- The tables read below: no code planted on them (planning a query on
    -- one could run it as this role), and no writer in flight while they
    -- are checked (SHARE: writers wait until this transaction ends; the
    -- function's lock_timeout bounds the wait for those already there).
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY(SELECT x FROM hr_migrations.hr_shred_tables() x)::oid[]);
    BEGIN
        FOR t IN SELECT x FROM hr_migrations.hr_shred_tables() x LOOP
            EXECUTE format('LOCK TABLE %s IN SHARE MODE', t);
        END LOOP;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'organization %: writers held % for more than 1 s; nothing was shredded', organization_id, t
            USING ERRCODE = 'lock_not_available', HINT = 'run hr_shred_organization() again';
    END;
    -- Plaintext of the organization still in an integrations table (the
    -- move before enforced): shredding would leave it readable.
    FOR r IN SELECT g.migration, hr_migrations.hr_migration_table(g.migration) AS t
               FROM hr_migrations.hr_migration_registry g
              WHERE g.kind = 'credential_move' AND hr_migrations.hr_migration_table(g.migration) IS NOT NULL LOOP
        CONTINUE WHEN NOT hr_migrations.hr_column_exists(r.t, 'api_key');
        EXECUTE format('SELECT count(*) FROM %s i WHERE i.organization_id = $1
                           AND (i.api_key IS NOT NULL OR i.api_secret IS NOT NULL OR i.refresh_token IS NOT NULL)', r.t)
           INTO a USING organization_id;
        IF a > 0 THEN
            RAISE EXCEPTION 'organization % still has % integrations with plaintext credentials in %: shredding its data keys would leave them readable; nothing was shredded', organization_id, a, r.t
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('CALL hr_migrations.hr_run_phase(%L, ''enforced'') clears the plaintext of every organization; or delete this organization''s integrations; then shred', r.migration);
        END IF;
    END LOOP;
    FOR t IN SELECT x FROM hr_migrations.hr_all_credentials_tables() x LOOP
        EXECUTE format('SELECT count(*) FILTER (WHERE starts_with(c.encrypted_value, ''hrc1.'')),
                               count(*) FILTER (WHERE hr_migrations.hr_data_key_live(c.organization_id, c.encrypted_value))
                          FROM %s c WHERE c.organization_id = $1', t)
           INTO a, b USING organization_id;
        v1 := v1 + a;
        v2 := v2 + b;
    END LOOP;
    IF v1 > 0 THEN
        RAISE EXCEPTION 'organization % still has % credentials sealed with the keyring directly (envelopes v1): shredding its data keys would not make them unreadable; nothing was shredded', organization_id, v1
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CALL hr_migrations.hr_run_rewrap() seals them with the organization''s data key (envelopes v2); then shred';
    END IF;
    UPDATE hr_migrations.hr_organization_keys k
       SET wrapped_key = NULL, kek_version = NULL, shredded_at = now()
     WHERE k.organization_id = hr_shred_organization.organization_id AND k.shredded_at IS NULL;
    -- None yet: a tombstone, so none is made afterwards. A first key made
    -- at this moment by another session's first credential is shredded too.
    IF NOT EXISTS (SELECT 1 FROM hr_migrations.hr_organization_keys k
                    WHERE k.organization_id = hr_shred_organization.organization_id) THEN
        INSERT INTO hr_migrations.hr_organization_keys AS k (organization_id, generation, shredded_at)
        VALUES (hr_shred_organization.organization_id, 1, now())
        ON CONFLICT ON CONSTRAINT hr_organization_keys_pkey
        DO UPDATE SET wrapped_key = NULL, kek_version = NULL, shredded_at = now();
    END IF;
    PERFORM hr_migrations.hr_forget_data_keys();
    RAISE NOTICE 'organization %: data keys shredded; % credentials can no longer be read. Next: rotate the keyring key and remove the old version (docs/key-management.md, "Crypto-shredding")',
        organization_id, v2;
    RETURN v2;
END
$$;

-- After a rewrap, destroys the superseded generations of each
-- organization's data key that no credential uses any more (a rotation of
-- one organization's key: the old key must not outlive its credentials).
-- Returns how many. SECURITY DEFINER, as hr_shred_organization.
CREATE FUNCTION hr_migrations.hr_retire_data_keys() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    t regclass;
    used text := '';
    n bigint;
    missing bigint;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    -- Fails closed: a generation is destroyed only when every credentials
    -- table is known and was searched.
    SELECT count(*) INTO missing FROM hr_migrations.hr_migration_registry r
     WHERE r.kind = 'credential_move' AND hr_migrations.hr_credentials_table(r.migration) IS NULL
       AND hr_migrations.hr_migration_phase(r.migration) <> 'not_applied';
    IF missing > 0 OR NOT EXISTS (SELECT 1 FROM hr_migrations.hr_all_credentials_tables()) THEN
        RAISE NOTICE 'data keys: superseded generations kept: a credentials table of the registry cannot be found';
        RETURN 0;
    END IF;
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY(SELECT x FROM hr_migrations.hr_all_credentials_tables() x)::oid[]);
    -- Writers in flight may be sealing with a superseded generation (they
    -- started before the rotation): SHARE waits for them to commit, so the
    -- search below sees what they wrote. Bounded by lock_timeout: the
    -- generations are then kept until the next run.
    BEGIN
        FOR t IN SELECT x FROM hr_migrations.hr_all_credentials_tables() x LOOP
            EXECUTE format('LOCK TABLE %s IN SHARE MODE', t);
        END LOOP;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'data keys: superseded generations kept this time: writers held the credentials tables for more than 1 s; CALL hr_migrations.hr_run_rewrap() again to destroy them';
        RETURN 0;
    END;
    FOR t IN SELECT x FROM hr_migrations.hr_all_credentials_tables() x LOOP
        used := used || format(' AND NOT EXISTS (SELECT 1 FROM %s c WHERE c.organization_id = k.organization_id
                                                   AND hr_migrations.hr_envelope_generation(c.encrypted_value) = k.generation)', t);
    END LOOP;
    EXECUTE format('UPDATE hr_migrations.hr_organization_keys k
                       SET wrapped_key = NULL, kek_version = NULL, retired_at = now()
                     WHERE k.wrapped_key IS NOT NULL
                       AND k.generation < (SELECT max(x.generation) FROM hr_migrations.hr_organization_keys x
                                            WHERE x.organization_id = k.organization_id)%s', used);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM hr_migrations.hr_forget_data_keys();
    END IF;
    RETURN n;
END
$$;

-- Drives the rewrap of the data keys to the end, one committed batch at a
-- time, in key order (a crash loses nothing: a rewrapped row names the
-- active version, and the next run starts over from the first row left).
-- Keys that did not unwrap (a WARNING names each) and rows another session
-- held locked are left; a WARNING at the end counts what is not under the
-- active version, so the operator knows not to remove the old one yet.
CREATE PROCEDURE hr_migrations.hr_run_data_key_rewrap(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
    after_org uuid;
    after_gen integer;
    total bigint := 0;
    failed bigint := 0;
    stale bigint;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    LOOP
        SELECT * INTO r FROM hr_migrations.hr_rewrap_data_keys(batch_size, after_org, after_gen);
        COMMIT;
        PERFORM hr_migrations.hr_procedure_step();
        total := total + r.rewrapped;
        failed := failed + r.failed;
        EXIT WHEN r.last_organization IS NULL;
        after_org := r.last_organization;
        after_gen := r.last_generation;
    END LOOP;
    IF total > 0 THEN
        PERFORM hr_migrations.hr_forget_data_keys();
        COMMIT;
        PERFORM hr_migrations.hr_procedure_step();
    END IF;
    RAISE NOTICE 'data keys: finished: % rewrapped under the active key version', total;
    SELECT count(*) INTO stale FROM hr_migrations.hr_organization_keys k
     WHERE k.wrapped_key IS NOT NULL AND k.kek_version <> hr_migrations.hr_active_key_version();
    IF stale > 0 THEN
        RAISE WARNING 'data keys: % still wrapped under another key version than the active one (% did not unwrap, named above; the others were locked by another session): keep the old key version in the keyring',
            stale, failed
            USING HINT = 'CALL hr_migrations.hr_run_rewrap() again; a key that does not unwrap needs its keyring version back, or hr_migrations.hr_organization_keys restored from a backup (docs/key-management.md)';
    END IF;
END
$$;
