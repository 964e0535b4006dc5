-- Who may use what (docs/security.md). Deny by default, by code: every
-- function, procedure, table and view this extension owns has its
-- privileges revoked from PUBLIC and from every role that received them
-- (Supabase's ALTER DEFAULT PRIVILEGES ... GRANT ALL ... TO anon,
-- authenticated, service_role gives them all of it the moment it is
-- created), then exactly the allowlist below is granted. The install
-- script and every upgrade script end with SELECT hr_apply_privileges().

-- The allowlist: role, object, privilege. Roles that do not exist in this
-- cluster are skipped. hr_migrations_definer additionally gets EXECUTE on
-- every function its SECURITY DEFINER code may call (all but the DBA's
-- DDL), and owns the SECURITY DEFINER functions.
CREATE FUNCTION hr_privilege_allowlist()
RETURNS TABLE (role_name text, object_type text, object_name text, privilege text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
        -- Read by the WHEN clauses of the migrations' triggers, which run
        -- as whoever writes the table; reads one boolean.
        ('PUBLIC',                'FUNCTION', 'hr_backfill_in_progress()',                 'EXECUTE'),
        -- RLS policies compare rows with it.
        ('authenticated',         'FUNCTION', 'hr_jwt_organization_id()',                  'EXECUTE'),
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
        ('hr_migrations_definer', 'TABLE',    'hr_key_checks',                             'SELECT, INSERT')
$$;

-- Functions only the DBA runs (DDL on the application's tables, phase
-- changes, this file): the definer role gets no EXECUTE on them.
CREATE FUNCTION hr_dba_only_functions() RETURNS SETOF text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('hr_set_phase(text,text)'), ('hr_apply_privileges()'), ('hr_wait_for_writers(regclass)'),
           ('hr_secure_table(regclass,text)'), ('hr_secure_own_table(regclass,text[],text)'),
           ('hr_bound_lock_wait()'), ('hr_forget_init_privs(regclass,oid)'), ('hr_preflight()'), ('hr_preflight_gate(text)'),
           ('hr_token_hash_enter(text,text,text)'), ('hr_tenant_column_enter(text,text,text)'),
           ('hr_credential_move_enter(text,text,text)')
$$;

CREATE FUNCTION hr_apply_privileges() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'hr_migrations');
    o record;
    g record;
    a record;
    kw text;
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
        IF o.prokind <> 'p' AND o.oid NOT IN (SELECT to_regprocedure('@extschema@.' || f)
                                                FROM @extschema@.hr_dba_only_functions() f) THEN
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
    -- The allowlist.
    FOR a IN SELECT * FROM @extschema@.hr_privilege_allowlist() LOOP
        CONTINUE WHEN a.role_name <> 'PUBLIC'
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = a.role_name);
        EXECUTE format('GRANT %s ON %s %s.%s TO %s', a.privilege, a.object_type, '@extschema@', a.object_name,
                       CASE a.role_name WHEN 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(a.role_name) END);
    END LOOP;
END
$$;

SELECT hr_apply_privileges();
