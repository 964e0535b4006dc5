-- Kind token_hash (migration reference_tokens): salted-hash storage of a
-- table's reference tokens. A table of this kind has `id uuid` and
-- `access_token text` (legacy plaintext); its script adds
-- `access_token_hash text` (token hash v1).
--
-- PL/pgSQL resolves table and column names when a statement first runs, so
-- CREATE EXTENSION works before sql/migrations/001 has created anything.

-- The migration of a kind whose table fired a trigger; 39P01 when the table
-- is not registered with that kind. Trigger functions call it first, so
-- none of them can be aimed at another table (a temp table, another
-- tenant's copy) by whoever manages to attach it.
CREATE FUNCTION hr_migrations.hr_trigger_migration(relid oid, kind text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text;
BEGIN
    SELECT r.migration INTO m FROM hr_migrations.hr_migration_registry r
     WHERE r.kind = hr_trigger_migration.kind
       AND to_regclass(format('%I.%I', r.table_schema, r.table_name)) = relid;
    IF m IS NULL THEN
        RAISE EXCEPTION 'this hr_migrations trigger function serves only the tables of its migrations, not %', relid::regclass
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    RETURN m;
END
$$;

-- Generic updated_at maintenance for every table (replaces the plan's one
-- function per table). Installed BEFORE UPDATE with
-- WHEN (NOT hr_backfill_in_progress()), so the extension's own batches
-- leave updated_at alone: a backfill is not an edit of the row.
CREATE OR REPLACE FUNCTION hr_migrations.hr_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_OP <> 'UPDATE' OR TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION 'hr_touch_updated_at() must be a BEFORE UPDATE ... FOR EACH ROW trigger (on %)', TG_TABLE_NAME
            USING ERRCODE = 'trigger_protocol_violated';
    END IF;
    IF NOT hr_migrations.hr_backfill_in_progress() THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

-- The trigger function of this kind, hr_references_token_trigger(), is Rust
-- (src/tokens.rs): it runs once per written row.

-- Dual-path verification by reference id (docs/sql-reference.md): the hash first,
-- then (before enforced) the legacy plaintext, compared in constant time;
-- the decision is src/dual_path.rs (hr_token_verdict). An empty presented
-- token never verifies. Appends one row to hr_reference_token_validations:
-- reference id, method, success, time; never the token. NULL arguments
-- return false (not NULL) and are logged as 'none'.
-- SECURITY DEFINER (owner hr_migrations_definer): EXECUTE for service_role.
-- It reads hr_references and inserts into the log table; app roles hold no
-- TRIGGER on either (001 revokes it), and batches refuse foreign triggers.
CREATE FUNCTION hr_migrations.hr_verify_reference_token(reference_id uuid, token text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phase text := hr_migrations.hr_require_applied('reference_tokens');
    stored_token text;
    stored_hash text;
    v record;
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF reference_id IS NOT NULL THEN
        IF phase = 'contracted' THEN  -- access_token is gone
            SELECT r.access_token_hash INTO stored_hash
              FROM public.hr_references r WHERE r.id = reference_id;
        ELSE
            SELECT r.access_token, r.access_token_hash INTO stored_token, stored_hash
              FROM public.hr_references r WHERE r.id = reference_id;
        END IF;
    END IF;
    SELECT * INTO v FROM hr_migrations.hr_token_verdict(
        hr_migrations.hr_phase_accepts_plaintext(phase), token, stored_hash, stored_token);
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY['public.hr_reference_token_validations'::regclass]::oid[]);
    INSERT INTO public.hr_reference_token_validations (reference_id, method, success)
    VALUES (reference_id, v.method, v.ok);
    RETURN v.ok;
END
$$;

-- A new token for a reference: generated here, stored only as its hash (in
-- every phase), returned once. It replaces any earlier token of the
-- reference, hashed or legacy plaintext (the plaintext is cleared). The
-- token never travels to the database, so no statement or parameter log
-- can hold it. P0002 for an unknown reference, 22004 for NULL.
-- SECURITY DEFINER (owner hr_migrations_definer): EXECUTE for service_role.
CREATE FUNCTION hr_migrations.hr_issue_reference_token(reference_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phase text := hr_migrations.hr_require_applied('reference_tokens');
    tok text := hr_migrations.hr_generate_token();
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    IF reference_id IS NULL THEN
        RAISE EXCEPTION 'reference_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY['public.hr_references'::regclass]::oid[]);
    IF phase = 'contracted' THEN
        UPDATE ONLY public.hr_references r SET access_token_hash = hr_migrations.hr_hash_token(tok)
         WHERE r.id = reference_id;
    ELSE
        UPDATE ONLY public.hr_references r
           SET access_token = NULL, access_token_hash = hr_migrations.hr_hash_token(tok)
         WHERE r.id = reference_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no reference with that id' USING ERRCODE = 'no_data_found',
            HINT = 'hr_issue_reference_token() replaces the token of an existing hr_references row';
    END IF;
    RETURN tok;
END
$$;

-- Revokes a reference's token, hashed or plaintext, in every phase: true
-- when there was one. SECURITY DEFINER: EXECUTE for service_role.
CREATE FUNCTION hr_migrations.hr_revoke_reference_token(reference_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phase text := hr_migrations.hr_require_applied('reference_tokens');
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    PERFORM hr_migrations.hr_refuse_foreign_triggers(ARRAY['public.hr_references'::regclass]::oid[]);
    IF phase = 'contracted' THEN
        UPDATE ONLY public.hr_references r SET access_token_hash = NULL
         WHERE r.id = reference_id AND r.access_token_hash IS NOT NULL;
    ELSE
        UPDATE ONLY public.hr_references r SET access_token = NULL, access_token_hash = NULL
         WHERE r.id = reference_id AND (r.access_token IS NOT NULL OR r.access_token_hash IS NOT NULL);
    END IF;
    RETURN FOUND;
END
$$;

-- One keyset batch of the backfill (docs/sql-reference.md): hashes up to batch_size
-- plaintext tokens that have no hash yet, through the batch engine
-- (hr_engine_batch). Returns rows hashed; 0 = nothing left.
CREATE FUNCTION hr_migrations.hr_backfill_reference_token_hashes(batch_size integer DEFAULT 5000) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hr_migrations.hr_require_integrity(); SELECT hr_migrations.hr_engine_batch('reference_tokens', 'backfill', batch_size) $$;

-- The engine's view of a token_hash migration (see hr_operation_spec):
--   backfill  rows with a non-empty plaintext token and no hash;
--   erase     (contracted) rows still holding legacy plaintext.
-- Empty tokens are neither pending nor blocked: they verify nothing and
-- are counted in the note.
CREATE FUNCTION hr_migrations.hr_token_hash_spec(migration text, operation text,
    OUT tbl regclass, OUT pending text, OUT blocked text, OUT migrated text,
    OUT action text, OUT writes regclass[], OUT range_action text, OUT range_pending text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    has_plaintext boolean := hr_migrations.hr_column_exists(t, 'access_token');
BEGIN
    IF t IS NULL THEN
        RETURN;
    END IF;
    blocked := 'false';
    migrated := 't.access_token_hash IS NOT NULL';
    writes := ARRAY[t];
    CASE operation
        WHEN 'backfill' THEN
            pending := CASE WHEN has_plaintext
                THEN 't.access_token IS NOT NULL AND t.access_token <> '''' AND t.access_token_hash IS NULL'
                ELSE 'false' END;
            action := 'hr_migrations.hr_token_hash_backfill';
            -- Without the plaintext column nothing is pending: the keyset
            -- pick finds that at once, a walk would read the whole table.
            range_action := CASE WHEN has_plaintext THEN 'hr_migrations.hr_token_hash_backfill_range' END;
            range_pending := pending;
        WHEN 'erase' THEN
            pending := CASE WHEN has_plaintext THEN 't.access_token IS NOT NULL' ELSE 'false' END;
            action := 'hr_migrations.hr_token_hash_erase';
        ELSE
            RETURN;
    END CASE;
    tbl := t;
END
$$;

CREATE FUNCTION hr_migrations.hr_token_hash_phase_operation(migration text, phase text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- In enforced too: a token written with triggers disabled is hashed,
    -- or it could never verify again.
    SELECT CASE phase WHEN 'dual' THEN 'backfill' WHEN 'migrated' THEN 'backfill'
                      WHEN 'enforced' THEN 'backfill' WHEN 'contracted' THEN 'erase' END
$$;

-- Row action of the backfill: one statement for the whole batch.
CREATE FUNCTION hr_migrations.hr_token_hash_backfill(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('UPDATE ONLY %s t SET access_token_hash = %s.hr_hash_token(t.access_token) WHERE t.id = ANY ($1)',
                   hr_migrations.hr_migration_table(migration), 'hr_migrations')
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Range action of the backfill (hr_engine_batch walks the table in
-- physical order): the pending rows of the tuple ids [lo, hi) in one
-- UPDATE; rows recorded as failed are left out when there are any. The
-- engine bounds its wait for rows other transactions hold, and does the
-- range row by row if this fails.
CREATE FUNCTION hr_migrations.hr_token_hash_backfill_range(migration text, lo tid, hi tid, skip_failed boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('UPDATE ONLY %s t SET access_token_hash = %s.hr_hash_token(t.access_token)
                     WHERE t.ctid >= $1 AND t.ctid < $2
                       AND t.access_token IS NOT NULL AND t.access_token <> '''' AND t.access_token_hash IS NULL%s',
                   hr_migrations.hr_migration_table(migration), 'hr_migrations',
                   CASE WHEN skip_failed THEN ' AND ' || hr_migrations.hr_not_failed('$3', '''backfill''') ELSE '' END)
      USING lo, hi, migration;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Row action of the contract phase: erases legacy plaintext (the flag is
-- on, so the token trigger does not take it for a revocation).
CREATE FUNCTION hr_migrations.hr_token_hash_erase(migration text, ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('UPDATE ONLY %s t SET access_token = NULL WHERE t.id = ANY ($1)', hr_migrations.hr_migration_table(migration))
      USING ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- applied: the hash column and the token trigger exist (after the contract
-- phase dropped the trigger, the hash column alone). ready: the triggers
-- the script installs are there.
CREATE FUNCTION hr_migrations.hr_token_hash_state(migration text, OUT applied boolean, OUT ready boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    contracted boolean := hr_migrations.hr_migration_phase(migration) = 'contracted';
BEGIN
    applied := hr_migrations.hr_column_exists(t, 'access_token_hash')
               AND (contracted OR hr_migrations.hr_trigger_exists(t, hr_migrations.hr_migration_object(migration, 'token_trigger')));
    ready := applied AND hr_migrations.hr_trigger_exists(t, hr_migrations.hr_migration_object(migration, 'touch_trigger'));
END
$$;

-- Brief DDL of a phase move: none for tokens. (Entering enforced needs no
-- wait: a token written by a transaction still in flight is hashed by the
-- trigger and its plaintext is legacy data the contract phase erases.)
CREATE FUNCTION hr_migrations.hr_token_hash_enter(migration text, from_phase text, to_phase text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_phase = 'migrated' THEN
        PERFORM hr_migrations.hr_isolate_rows(migration, to_phase);
    END IF;
END
$$;

-- The candidates of the request's organization (hr_jwt_organization_id();
-- none without one), for the RLS policies of the references table: a
-- reference belongs to its candidate's organization. SECURITY DEFINER
-- (owner hr_migrations_definer, BYPASSRLS) because authenticated may not
-- read hr_candidates itself; it returns ids of the caller's own
-- organization only. EXECUTE for authenticated (the policies run as it).
CREATE FUNCTION hr_migrations.hr_organization_candidates() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM hr_migrations.hr_require_integrity();  -- before anything runs as the definer role (src/integrity.rs)
    PERFORM hr_migrations.hr_plain_table('public.hr_candidates'::regclass);
    RETURN QUERY SELECT c.id FROM public.hr_candidates c
                  WHERE c.organization_id = hr_migrations.hr_jwt_organization_id();
END
$$;

-- Closing DDL of a phase, once its batches are done. contracted: drop the
-- token trigger (it served the transition) and the plaintext column.
CREATE PROCEDURE hr_migrations.hr_token_hash_finish(migration text, phase text)
LANGUAGE plpgsql
AS $$
DECLARE
    t regclass;
BEGIN
    PERFORM hr_migrations.hr_procedure_step();
    t := hr_migrations.hr_migration_table(migration);
    IF phase <> 'contracted' OR NOT hr_migrations.hr_column_exists(t, 'access_token') THEN
        RETURN;
    END IF;
    CALL hr_migrations.hr_ddl(migration, $ddl$
        DROP TRIGGER IF EXISTS {token_trigger} ON {table};
        ALTER TABLE {table} DROP COLUMN IF EXISTS access_token
    $ddl$);
    PERFORM hr_migrations.hr_procedure_step();
    RAISE NOTICE '%: access_token dropped (VACUUM the table; old row versions, WAL and backups still hold what it held)', migration;
END
$$;

CREATE FUNCTION hr_migrations.hr_token_hash_note(migration text, phase text, pending bigint, blocked bigint, other_failures bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass := hr_migrations.hr_migration_table(migration);
    empty_tokens bigint := 0;
    hash_only bigint;
    plaintext_left bigint := 0;
    note text;
BEGIN
    IF hr_migrations.hr_column_exists(t, 'access_token') THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE t.access_token = ''''),
                               count(*) FILTER (WHERE t.access_token IS NULL AND t.access_token_hash IS NOT NULL),
                               count(*) FILTER (WHERE t.access_token IS NOT NULL)
                          FROM %s t', t)
           INTO empty_tokens, hash_only, plaintext_left;
    END IF;
    note := concat_ws('; ',
        CASE WHEN pending > 0 AND phase IN ('dual', 'migrated', 'enforced') THEN
            format('%s plaintext tokens have no hash yet: CALL hr_migrations.hr_run_backfill(%L)', pending, migration) END,
        CASE WHEN phase = 'enforced' THEN
            format('only hashes are stored and accepted; %s legacy plaintext tokens remain in access_token, no longer accepted (erased by the contract phase)', plaintext_left) END,
        CASE WHEN phase = 'contracted' AND pending > 0 THEN
            format('%s legacy plaintext tokens to erase: CALL hr_migrations.hr_run_backfill(%L)', pending, migration) END,
        CASE WHEN phase = 'contracted' AND pending = 0 AND plaintext_left = 0 AND hr_migrations.hr_column_exists(t, 'access_token') THEN
            format('plaintext erased; CALL hr_migrations.hr_run_backfill(%L) drops access_token', migration) END,
        CASE WHEN phase = 'contracted' AND NOT hr_migrations.hr_column_exists(t, 'access_token') THEN
            'access_token dropped: only hashes exist' END,
        CASE WHEN phase IN ('dual', 'migrated') AND hash_only > 0 THEN
            format('%s references have no plaintext token left and verify by hash only', hash_only) END,
        CASE WHEN empty_tokens > 0 THEN
            format('%s references have an empty token, which is not hashed and never verifies', empty_tokens) END,
        CASE WHEN phase = 'enforced' THEN hr_migrations.hr_contract_eta(migration) END);
    IF note = '' THEN
        note := 'every token has a hash; plaintext is still accepted until enforced';
    END IF;
    RETURN note;
END
$$;
