-- Who may use what (docs/security.md). Deny by default, by code: every
-- function, procedure, table and view this extension owns has its
-- privileges revoked from PUBLIC and from every role that received them
-- (Supabase's ALTER DEFAULT PRIVILEGES ... GRANT ALL ... TO anon,
-- authenticated, service_role gives them all of it the moment it is
-- created), then exactly the allowlist below is granted. The install
-- script and every upgrade script end with SELECT hr_apply_privileges().

-- -----------------------------------------------------------------------------
-- Integrity (src/integrity.rs): what the install created, to compare with.
-- One row per member object of the extension: a digest of what a member
-- of the definer role could change (owner, SECURITY DEFINER flag, settings,
-- body, privileges). Recorded at the end of hr_apply_privileges(), i.e. by
-- CREATE and ALTER EXTENSION only. Readable by the definer role (the check
-- runs as it); nobody writes it but the installing superuser.
CREATE TABLE hr_migrations.hr_member_fingerprints (
    classid     oid NOT NULL,
    objid       oid NOT NULL,
    object      text NOT NULL,
    fingerprint text NOT NULL,
    PRIMARY KEY (classid, objid)
);
COMMENT ON TABLE hr_migrations.hr_member_fingerprints IS
    'hr_migrations: digests of the extension''s objects as installed (owner, SECURITY DEFINER, settings, body, privileges)';

-- An ACL as text that names roles by OID (a role renamed does not change it).
CREATE FUNCTION hr_migrations.hr_acl_text(acl aclitem[]) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%s>%s:%s%s', x.grantor, x.grantee, x.privilege_type, CASE WHEN x.is_grantable THEN '*' ELSE '' END),
                      ',' ORDER BY x.grantor, x.grantee, x.privilege_type)
      FROM aclexplode(acl) x
$$;

-- The extension's member objects now, with their digests.
CREATE FUNCTION hr_migrations.hr_member_state(OUT classid oid, OUT objid oid, OUT object text, OUT fingerprint text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ext AS (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'hr_migrations')
    SELECT 'pg_catalog.pg_proc'::regclass::oid, p.oid, 'function ' || p.oid::regprocedure::text,
           md5(concat_ws('|', p.proowner, p.prosecdef, p.proconfig::text, p.prosrc, p.probin,
                         hr_migrations.hr_acl_text(p.proacl),
                         p.provolatile, p.proisstrict, p.prolang, p.pronamespace, p.proname, p.prokind,
                         p.proargtypes::text, p.prorettype, pg_catalog.pg_get_function_sqlbody(p.oid)))
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid, ext
     WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e' AND d.refobjid = ext.oid
    UNION ALL
    SELECT 'pg_catalog.pg_class'::regclass::oid, c.oid, 'relation ' || c.oid::regclass::text,
           md5(concat_ws('|', c.relowner, hr_migrations.hr_acl_text(c.relacl), c.relkind, c.relnamespace, c.relname, c.relrowsecurity))
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid, ext
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e' AND d.refobjid = ext.oid
    UNION ALL
    SELECT 'pg_catalog.pg_namespace'::regclass::oid, n.oid, 'schema ' || quote_ident(n.nspname),
           md5(concat_ws('|', n.nspowner, hr_migrations.hr_acl_text(n.nspacl), n.nspname))
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_namespace n ON n.oid = d.objid, ext
     WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.deptype = 'e' AND d.refobjid = ext.oid
$$;

-- The first column of a migration's tables whose type is not the exact
-- one its kind reads and writes (hr_kind_columns: uuid, text, boolean,
-- timestamptz), or a required one missing; NULL when all are right. A type
-- of the admin's (a domain, an enum, a composite with its own casts or
-- operators) would run its code as whoever reads or writes the column: the
-- definer role, or a superuser validating a constraint.
CREATE FUNCTION hr_migrations.hr_column_type_problem(migration text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('column %s.%I %s; fix: make it %s (the migration %s reads and writes it)',
                  k.table_name, k.column_name,
                  CASE WHEN a.attname IS NULL THEN 'is missing'
                       ELSE 'is of type ' || format_type(a.atttypid, NULL) END,
                  k.type_name, migration)
      FROM hr_migrations.hr_kind_columns(migration) k
      LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = to_regclass(k.table_name) AND a.attname = k.column_name
                                         AND a.attnum > 0 AND NOT a.attisdropped
     WHERE to_regclass(k.table_name) IS NOT NULL
       AND ((a.attname IS NULL AND k.required)
            OR (a.attname IS NOT NULL AND format_type(a.atttypid, NULL) <> k.type_name))
     ORDER BY k.table_name, k.column_name
     LIMIT 1
$$;

-- The first reason the extension must not run, with its fix; NULL when
-- the definer role is out of reach, every object is as installed and the
-- columns the migrations read and write have their exact types. The
-- definer role is the owner of the extension's SECURITY DEFINER functions,
-- found by OID (a role renamed to take its name is not it), and must be
-- named hr_migrations_definer.
CREATE FUNCTION hr_migrations.hr_integrity_problem() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH owners AS (
        SELECT DISTINCT p.proowner AS oid
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e' AND p.prosecdef
           AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'hr_migrations')
    ),
    definer AS (SELECT r.oid, r.rolname, r.rolcanlogin, r.rolsuper FROM pg_catalog.pg_roles r
                 WHERE r.oid IN (SELECT o.oid FROM owners o) OR r.rolname = 'hr_migrations_definer')
    SELECT x.problem FROM (
        SELECT 0 AS o, format('the extension''s SECURITY DEFINER functions belong to %s, which is not the role named hr_migrations_definer (renamed, or replaced by another of that name); fix: give the role back its name and drop the other, or reinstall the extension',
                              string_agg(quote_ident(d.rolname), ', ')) AS problem
          FROM definer d
        HAVING count(*) > 1 OR bool_or(d.rolname <> 'hr_migrations_definer')
        UNION ALL
        SELECT 1, format('role hr_migrations_definer has members (%s), who can change what runs as it; fix: REVOKE hr_migrations_definer FROM %s',
                              string_agg(quote_ident(m.member::regrole::text), ', '),
                              string_agg(quote_ident(m.member::regrole::text), ', ')) AS problem
          FROM pg_catalog.pg_auth_members m, definer WHERE m.roleid = definer.oid
        HAVING count(*) > 0
        UNION ALL
        SELECT 2, 'role hr_migrations_definer can log in; fix: ALTER ROLE hr_migrations_definer NOLOGIN'
          FROM definer WHERE definer.rolcanlogin
        UNION ALL
        SELECT 3, 'role hr_migrations_definer is a superuser; fix: ALTER ROLE hr_migrations_definer NOSUPERUSER'
          FROM definer WHERE definer.rolsuper
        UNION ALL
        SELECT 3, 'role hr_migrations_definer may create roles, databases or replicate; fix: ALTER ROLE hr_migrations_definer NOCREATEROLE NOCREATEDB NOREPLICATION'
          FROM definer d2 JOIN pg_catalog.pg_roles r ON r.oid = d2.oid
         WHERE r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
        UNION ALL
        SELECT 3, format('role hr_migrations_definer is a member of %s; fix: REVOKE %s FROM hr_migrations_definer',
                         string_agg(quote_ident(m.roleid::regrole::text), ', '), string_agg(quote_ident(m.roleid::regrole::text), ', '))
          FROM pg_catalog.pg_auth_members m, definer WHERE m.member = definer.oid
        HAVING count(*) > 0
        UNION ALL
        -- What the role owns outside the extension: code that runs as it
        -- whenever someone calls it (a SECURITY DEFINER function made while
        -- a member was it).
        SELECT 3, format('role hr_migrations_definer owns %s, which is not part of the extension; fix: inspect it, then drop it',
                         pg_catalog.pg_describe_object(sd.classid, sd.objid, sd.objsubid))
          FROM pg_catalog.pg_shdepend sd, definer
         WHERE sd.refclassid = 'pg_catalog.pg_authid'::regclass AND sd.refobjid = definer.oid AND sd.deptype = 'o'
           AND sd.dbid IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database()))
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                            WHERE e.classid = sd.classid AND e.objid = sd.objid AND e.deptype = 'e'
                              AND e.refobjid = (SELECT x.oid FROM pg_catalog.pg_extension x WHERE x.extname = 'hr_migrations'))
        UNION ALL
        SELECT 4, 'role hr_migrations_definer does not exist; fix: reinstall the extension'
         WHERE NOT EXISTS (SELECT 1 FROM definer)
        UNION ALL
        SELECT 5, format('%s is not as the extension installed it (its owner, SECURITY DEFINER flag, settings, body or privileges changed, or it was added or dropped); fix: undo the change, or reinstall the extension',
                         coalesce(n.object, f.object))
          FROM hr_migrations.hr_member_state() n
          FULL JOIN hr_migrations.hr_member_fingerprints f ON f.classid = n.classid AND f.objid = n.objid
         WHERE n.fingerprint IS DISTINCT FROM f.fingerprint
        UNION ALL
        SELECT 6, q.p
          FROM hr_migrations.hr_migration_keys() m,
               LATERAL (SELECT hr_migrations.hr_column_type_problem(m) AS p) q
         WHERE q.p IS NOT NULL
        UNION ALL
        -- Code the planner runs: it simplifies the expressions of a table's
        -- indexes (and partial index predicates), extended statistics and,
        -- with constraint_exclusion on, CHECK constraints whenever it plans
        -- a query on the table (a constant subexpression is evaluated, an SQL
        -- function inlined), as whoever plans it — the definer role reading
        -- a table the migrations touch. Triggers, defaults and rules run on
        -- writes only: the writers refuse those (hr_refuse_foreign_triggers).
        SELECT 7, format('%s on %s %s: planning a query on the table would run it as the extension''s definer role; fix: drop it, or recreate it with functions a superuser owns',
                         p.object, p.table_name,
                         CASE WHEN p.function_name IS NULL THEN 'is not allowed there'
                              ELSE format('calls %s, owned by role %s, which is not a superuser', p.function_name, quote_ident(p.function_owner)) END)
          FROM hr_migrations.hr_planted_code(ARRAY(
                   SELECT DISTINCT to_regclass(k.table_name)
                     FROM hr_migrations.hr_migration_keys() m, hr_migrations.hr_kind_columns(m) k
                    WHERE to_regclass(k.table_name) IS NOT NULL)) p
         WHERE p.object LIKE 'index %' OR p.object LIKE 'statistics %' OR p.object LIKE 'inheritance child %'
            OR p.object LIKE 'relation kind %'
            OR (p.object LIKE 'constraint %' AND p.object NOT LIKE '% of domain %')
    ) x
    ORDER BY x.o, x.problem
    LIMIT 1
$$;

-- Records what is installed now (CREATE and ALTER EXTENSION, last step).
CREATE FUNCTION hr_migrations.hr_record_fingerprints() RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM hr_migrations.hr_member_fingerprints;
    INSERT INTO hr_migrations.hr_member_fingerprints (classid, objid, object, fingerprint)
    SELECT s.classid, s.objid, s.object, s.fingerprint FROM hr_migrations.hr_member_state() s;
$$;

-- The allowlist: role, object, privilege. Roles that do not exist in this
-- cluster are skipped. hr_migrations_definer additionally gets EXECUTE on
-- every function its SECURITY DEFINER code may call (all but the DBA's
-- DDL), and owns the SECURITY DEFINER functions.
CREATE FUNCTION hr_migrations.hr_privilege_allowlist()
RETURNS TABLE (role_name text, object_type text, object_name text, privilege text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
        -- Read by the WHEN clauses of the migrations' triggers, which run
        -- as whoever writes the table; reads one boolean.
        ('PUBLIC',                'FUNCTION', 'hr_backfill_in_progress()',                 'EXECUTE'),
        -- The API's wrappers of SECURITY DEFINER functions call it as the
        -- caller first (src/integrity.rs); it says only whether the
        -- extension is intact, and why not.
        ('PUBLIC',                'FUNCTION', 'hr_require_integrity()',                    'EXECUTE'),
        -- RLS policies compare rows with it.
        ('authenticated',         'FUNCTION', 'hr_jwt_organization_id()',                  'EXECUTE'),
        -- The references' RLS policies (from migrated on) call it.
        ('authenticated',         'FUNCTION', 'hr_organization_candidates()',              'EXECUTE'),
        ('service_role',          'FUNCTION', 'hr_jwt_organization_id()',                  'EXECUTE'),
        -- Server-side code verifies, issues and revokes tokens, and reads
        -- and writes job-board secrets.
        ('service_role',          'FUNCTION', 'hr_verify_reference_token(uuid,text)',      'EXECUTE'),
        ('service_role',          'FUNCTION', 'hr_issue_reference_token(uuid)',            'EXECUTE'),
        ('service_role',          'FUNCTION', 'hr_revoke_reference_token(uuid)',           'EXECUTE'),
        ('service_role',          'FUNCTION', 'hr_integration_secret(uuid)',               'EXECUTE'),
        ('service_role',          'FUNCTION', 'hr_set_integration_secret(uuid,text)',     'EXECUTE'),
        -- Monitoring: counts and progress, never values.
        ('pg_monitor',            'FUNCTION', 'hr_migration_status()',                     'EXECUTE'),
        ('pg_monitor',            'TABLE',    'hr_migration_progress',                     'SELECT'),
        -- The definer role's own tables.
        ('hr_migrations_definer', 'TABLE',    'hr_migration_registry',                     'SELECT'),
        ('hr_migrations_definer', 'TABLE',    'hr_migration_phases',                       'SELECT'),
        ('hr_migrations_definer', 'TABLE',    'hr_batch_progress',                         'SELECT, INSERT, UPDATE'),
        ('hr_migrations_definer', 'TABLE',    'hr_batch_failures',                         'SELECT, INSERT, UPDATE, DELETE'),
        ('hr_migrations_definer', 'TABLE',    'hr_key_checks',                             'SELECT, INSERT'),
        ('hr_migrations_definer', 'TABLE',    'hr_member_fingerprints',                    'SELECT'),
        ('hr_migrations_definer', 'TABLE',    'hr_organization_keys',                      'SELECT, INSERT, UPDATE')
$$;

-- Functions only the DBA runs (DDL on the application's tables, phase
-- changes, this file): the definer role gets no EXECUTE on them.
CREATE FUNCTION hr_migrations.hr_dba_only_functions() RETURNS SETOF text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('hr_set_phase(text,text)'), ('hr_apply_privileges()'), ('hr_record_fingerprints()'), ('hr_wait_for_writers(regclass)'),
           ('hr_secure_table(regclass,text)'), ('hr_secure_own_table(regclass,text[],text)'),
           ('hr_bound_lock_wait()'), ('hr_isolate_rows(text,text)'), ('hr_forget_init_privs(regclass,oid)'), ('hr_preflight()'), ('hr_preflight_gate(text)'),
           ('hr_token_hash_enter(text,text,text)'), ('hr_tenant_column_enter(text,text,text)'),
           ('hr_credential_move_enter(text,text,text)')
$$;

-- The admin role (hr_migrations_admin, granted to the database's admin by
-- the platform superuser) may execute every function and procedure of the
-- extension but these: the two that record what is installed as trusted
-- (they would bless a change the integrity check refuses), the backfill
-- flag the migration triggers trust (only the definer role's batches set
-- it), and the key check recorder (only the keystore calls it, as the
-- definer role).
CREATE FUNCTION hr_migrations.hr_admin_denied_functions() RETURNS SETOF text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('hr_apply_privileges()'), ('hr_record_fingerprints()'), ('hr_set_backfill_flag(boolean)'),
           ('hr_key_check(integer,text)')
$$;

-- What the admin role may do to the extension's tables, besides reading
-- all of them (pg_dump reads the configuration tables; status and progress
-- read the state): move phases and run batches (hr_set_phase and the
-- procedures run as the caller and write the phase and batch state),
-- forget failures and batch state (the rollback files), register its own
-- migrations, and restore all of it and the key check values from a dump
-- (pg_restore COPYs the configuration tables). Registry rows only name the
-- admin's tables and objects: every name is quoted where SQL is built, and
-- the definer role writes only what a table's owner granted it.
CREATE FUNCTION hr_migrations.hr_admin_table_privileges()
RETURNS TABLE (table_name text, privilege text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('hr_migration_registry', 'INSERT, UPDATE, DELETE'),
           ('hr_migration_phases', 'INSERT, UPDATE, DELETE'),
           ('hr_batch_progress',   'INSERT, UPDATE, DELETE'),
           ('hr_batch_failures',   'INSERT, UPDATE, DELETE'),
           ('hr_key_checks',       'INSERT'),
           ('hr_apply_state',      'INSERT, UPDATE, DELETE'),
           ('hr_organization_keys', 'INSERT, DELETE')
$$;

CREATE FUNCTION hr_migrations.hr_apply_privileges() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'hr_migrations');
    o record;
    g record;
    a record;
    kw text;
    grantee text;
    wrapper oid;
    -- The extension's schema, quoted: where the API's wrappers are.
    ext_schema text := (SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e
                          JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                         WHERE e.extname = 'hr_migrations');
BEGIN
    -- Functions and procedures: nobody but the owner.
    FOR o IN SELECT p.oid, p.oid::regprocedure AS sig, p.prokind, p.proacl, p.proowner, p.prosecdef
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext LOOP
        kw := CASE o.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END;
        EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC', kw, o.sig);
        FOR g IN SELECT DISTINCT r.rolname FROM aclexplode(o.proacl) x
                   JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
                  WHERE x.grantee <> o.proowner LOOP
            EXECUTE format('REVOKE ALL ON %s %s FROM %I', kw, o.sig, g.rolname);
        END LOOP;
        -- SECURITY DEFINER code runs as the definer role, never a superuser.
        IF o.prosecdef THEN
            EXECUTE format('ALTER FUNCTION %s OWNER TO hr_migrations_definer', o.sig);
        END IF;
        IF o.prokind <> 'p' AND o.oid NOT IN (SELECT to_regprocedure('hr_migrations.' || f)
                                                FROM hr_migrations.hr_dba_only_functions() f) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO hr_migrations_definer', o.sig);
        END IF;
    END LOOP;
    -- Tables, views and sequences: nobody but the owner.
    FOR o IN SELECT c.oid, c.oid::regclass AS rel, c.relacl, c.relowner
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', o.rel);
        FOR g IN SELECT DISTINCT r.rolname FROM aclexplode(o.relacl) x
                   JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
                  WHERE x.grantee <> o.relowner LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %I', o.rel, g.rolname);
        END LOOP;
    END LOOP;
    -- The allowlist, on the object in hr_migrations and on its wrapper in
    -- the extension's schema (the API), which calls it.
    FOR a IN SELECT * FROM hr_migrations.hr_privilege_allowlist() LOOP
        CONTINUE WHEN a.role_name <> 'PUBLIC'
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = a.role_name);
        grantee := CASE a.role_name WHEN 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(a.role_name) END;
        EXECUTE format('GRANT %s ON %s hr_migrations.%s TO %s', a.privilege, a.object_type, a.object_name, grantee);
        IF a.object_type = 'FUNCTION' THEN
            wrapper := to_regprocedure(ext_schema || '.' || a.object_name);
        ELSE
            wrapper := to_regclass(ext_schema || '.' || a.object_name);
        END IF;
        IF wrapper IS NOT NULL AND ext_schema <> 'hr_migrations' AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.classid = CASE a.object_type WHEN 'FUNCTION' THEN 'pg_catalog.pg_proc'::regclass
                                                     ELSE 'pg_catalog.pg_class'::regclass END
                  AND d.objid = wrapper AND d.deptype = 'e' AND d.refobjid = ext) THEN
            EXECUTE format('GRANT %s ON %s %s.%s TO %s', a.privilege, a.object_type, ext_schema, a.object_name, grantee);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA hr_migrations TO %s', grantee);
    END LOOP;
    -- The admin role: USAGE on the schema, EXECUTE on every function and
    -- procedure (here and their wrappers in the extension's schema) but
    -- hr_admin_denied_functions(), SELECT on every table and view, the
    -- writes of hr_admin_table_privileges(), SET on the runbook's settings.
    EXECUTE 'GRANT USAGE ON SCHEMA hr_migrations TO hr_migrations_admin';
    FOR o IN SELECT p.oid, p.oid::regprocedure AS sig, p.prokind
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext LOOP
        CONTINUE WHEN o.oid IN (SELECT to_regprocedure('hr_migrations.' || f)
                                  FROM hr_migrations.hr_admin_denied_functions() f);
        EXECUTE format('GRANT EXECUTE ON %s %s TO hr_migrations_admin',
                       CASE o.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, o.sig);
    END LOOP;
    FOR o IN SELECT c.oid::regclass AS rel
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext
                AND c.relkind IN ('r', 'p', 'v') LOOP
        EXECUTE format('GRANT SELECT ON %s TO hr_migrations_admin', o.rel);
    END LOOP;
    FOR a IN SELECT * FROM hr_migrations.hr_admin_table_privileges() LOOP
        EXECUTE format('GRANT %s ON hr_migrations.%I TO hr_migrations_admin', a.privilege, a.table_name);
    END LOOP;
    FOR kw IN SELECT hr_migrations.hr_admin_settings() LOOP
        EXECUTE format('GRANT SET ON PARAMETER %s TO hr_migrations_admin', kw);
    END LOOP;
    -- What is installed now is what the integrity check compares with.
    PERFORM hr_migrations.hr_record_fingerprints();
END
$$;

-- -----------------------------------------------------------------------------
-- The API of docs/sql-reference.md in the schema the extension was created in
-- (@extschema@, `extensions` on Supabase). Everything the extension runs
-- lives in schema hr_migrations, which the installing superuser creates and
-- owns; on Supabase postgres owns @extschema@ and may rename it and plant
-- look-alikes there, so no body of ours ever names @extschema@. What
-- @extschema@ holds are thin wrappers: an SQL function with a standard body
-- (BEGIN ATOMIC: bound to the wrapped function when it is created, never
-- looked up by name again, and inlined by the planner) or a PL/pgSQL
-- procedure that CALLs the one in hr_migrations, each with the wrapped
-- one's signature, defaults, volatility, strictness and parallel safety.
-- A role needs EXECUTE on both (hr_apply_privileges grants both).
CREATE FUNCTION hr_migrations.hr_api() RETURNS SETOF text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('hr_generate_token'), ('hr_hash_token'), ('hr_verify_token'), ('hr_verify_reference_token'),
           ('hr_backfill_reference_token_hashes'), ('hr_revoke_reference_token'), ('hr_issue_reference_token'),
           ('hr_jwt_organization_id'), ('hr_backfill_portal_session_organizations'),
           ('hr_encrypt_credential'), ('hr_decrypt_credential'), ('hr_credential_aad'),
           ('hr_migrate_integrations'), ('hr_integration_secret'), ('hr_set_integration_secret'),
           ('hr_rollback_integrations'), ('hr_rewrap_credentials'), ('hr_keyring_versions'),
           ('hr_migration_status'), ('hr_set_phase'), ('hr_preflight'), ('hr_retry_failures'),
           ('hr_run_backfill'), ('hr_run_phase'), ('hr_run_rollback'), ('hr_run_rewrap'), ('hr_run_batches'),
           ('hr_plan'), ('hr_migration_file'), ('hr_apply'), ('hr_rollback'),
           ('hr_schedule_backfill'), ('hr_unschedule_backfill'), ('hr_require_phase'),
           ('hr_shred_organization'), ('hr_rotate_organization_key')
$$;

DO $$
DECLARE
    f record;
    args text;
BEGIN
    FOR f IN SELECT p.oid, p.proname, p.prokind, p.provolatile, p.proisstrict, p.proparallel, p.proretset, p.pronargs, p.prosecdef,
                    pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
                    pg_catalog.pg_get_function_result(p.oid) AS result
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'hr_migrations'::pg_catalog.regnamespace::pg_catalog.oid
                AND p.proname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT hr_migrations.hr_api()))
              ORDER BY p.oid LOOP
        SELECT pg_catalog.string_agg('$' OPERATOR(pg_catalog.||) i::pg_catalog.text, ', ' ORDER BY i) INTO args
          FROM pg_catalog.generate_series(1, f.pronargs::pg_catalog.int4) i;
        args := COALESCE(args, '');
        IF f.prokind OPERATOR(pg_catalog.=) 'p' THEN
            EXECUTE pg_catalog.format('CREATE PROCEDURE %s.%I(%s) LANGUAGE plpgsql AS %L',
                '@extschema@', f.proname, f.arguments,
                pg_catalog.format('BEGIN CALL hr_migrations.%I(%s); END', f.proname, args));
        ELSE
            EXECUTE pg_catalog.format('CREATE FUNCTION %s.%I(%s) RETURNS %s LANGUAGE sql %s %s PARALLEL %s BEGIN ATOMIC %s; END',
                '@extschema@', f.proname, f.arguments, f.result,
                CASE f.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
                CASE WHEN f.proisstrict THEN 'STRICT' ELSE 'CALLED ON NULL INPUT' END,
                CASE f.proparallel WHEN 's' THEN 'SAFE' WHEN 'r' THEN 'RESTRICTED' ELSE 'UNSAFE' END,
                -- A SECURITY DEFINER function is called only once the
                -- extension is known intact (src/integrity.rs).
                CASE WHEN f.prosecdef THEN 'SELECT hr_migrations.hr_require_integrity(); ' ELSE '' END
                || pg_catalog.format(CASE WHEN f.proretset THEN 'SELECT * FROM hr_migrations.%I(%s)'
                                          ELSE 'SELECT hr_migrations.%I(%s)' END, f.proname, args));
        END IF;
        EXECUTE pg_catalog.format('COMMENT ON %s %s.%I(%s) IS %L',
            CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, '@extschema@', f.proname,
            pg_catalog.pg_get_function_identity_arguments(f.oid),
            pg_catalog.format('hr_migrations: calls hr_migrations.%I (docs/sql-reference.md)', f.proname));
    END LOOP;
END
$$;
CREATE VIEW @extschema@.hr_migration_progress AS SELECT * FROM hr_migrations.hr_migration_progress;
COMMENT ON VIEW @extschema@.hr_migration_progress IS 'hr_migrations: hr_migrations.hr_migration_progress';

SELECT hr_migrations.hr_apply_privileges();
