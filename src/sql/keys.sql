-- Per-organization data keys (issue #18; formats: src/datakey.rs and
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

-- hr_shred_organization(organization_id uuid) RETURNS bigint (DESIGN.md
-- §4): destroys the organization's data keys (every generation's wrapped
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
                               count(*) FILTER (WHERE starts_with(c.encrypted_value, ''hrc2.''))
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
AS $$
DECLARE
    t regclass;
    used text := '';
    n bigint;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
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
-- time (a crash loses nothing: a rewrapped row names the active version).
CREATE PROCEDURE hr_migrations.hr_run_data_key_rewrap(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
    total bigint;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    total := 0;
    LOOP
        n := hr_migrations.hr_rewrap_data_keys(batch_size);
        COMMIT;
        PERFORM hr_migrations.hr_procedure_step();
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
    IF total > 0 THEN
        PERFORM hr_migrations.hr_forget_data_keys();
        COMMIT;
        PERFORM hr_migrations.hr_procedure_step();
    END IF;
    RAISE NOTICE 'data keys: finished: % rewrapped under the active key version', total;
END
$$;
