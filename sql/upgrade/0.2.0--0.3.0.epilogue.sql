
-- hr_migrations 0.2.0 -> 0.3.0, part 3 of 3.

-- The state, into the tables in schema hr_migrations (the builtin
-- migrations' registry rows are the install's; registered ones are kept).
INSERT INTO hr_migrations.hr_migration_registry
SELECT * FROM @extschema@.hr_migration_registry r WHERE NOT r.builtin;
INSERT INTO hr_migrations.hr_migration_phases SELECT * FROM @extschema@.hr_migration_phases;
INSERT INTO hr_migrations.hr_batch_progress SELECT * FROM @extschema@.hr_batch_progress;
INSERT INTO hr_migrations.hr_batch_failures SELECT * FROM @extschema@.hr_batch_failures;
INSERT INTO hr_migrations.hr_key_checks SELECT * FROM @extschema@.hr_key_checks;
DROP TABLE @extschema@.hr_batch_failures, @extschema@.hr_batch_progress, @extschema@.hr_migration_phases,
           @extschema@.hr_key_checks, @extschema@.hr_migration_registry;

-- The application's triggers and RLS policies, pointed at the functions
-- in schema hr_migrations: the same definitions with the *_v020 names
-- replaced. Then the old functions go (a DROP that still finds a dependent
-- object stops the upgrade here, with nothing changed).
DO $$
DECLARE
    o record;
    pattern constant text := '([A-Za-z_][A-Za-z0-9_]*\.)?(hr_[a-z_]+)_v020\(';
    old oid[] := ARRAY(SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_depend d
                           ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                          AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
                        WHERE p.proname::pg_catalog.text OPERATOR(pg_catalog.~) '_v020$'
                          AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e
                                                                  WHERE e.extname OPERATOR(pg_catalog.=) 'hr_migrations'));
BEGIN
    FOR o IN SELECT DISTINCT t.oid, pg_catalog.pg_get_triggerdef(t.oid) AS def
               FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_depend d
                 ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
                AND d.objid OPERATOR(pg_catalog.=) t.oid
              WHERE d.refobjid OPERATOR(pg_catalog.=) ANY (old) LOOP
        EXECUTE pg_catalog.regexp_replace(
                    pg_catalog.regexp_replace(o.def, '^CREATE (CONSTRAINT )?TRIGGER', 'CREATE OR REPLACE \1TRIGGER'),
                    pattern, 'hr_migrations.\2(', 'g');
    END LOOP;
    FOR o IN SELECT DISTINCT y.polname, y.polrelid::pg_catalog.regclass AS rel,
                    pg_catalog.pg_get_expr(y.polqual, y.polrelid) AS qual,
                    pg_catalog.pg_get_expr(y.polwithcheck, y.polrelid) AS chk
               FROM pg_catalog.pg_policy y JOIN pg_catalog.pg_depend d
                 ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_policy'::pg_catalog.regclass
                AND d.objid OPERATOR(pg_catalog.=) y.oid
              WHERE d.refobjid OPERATOR(pg_catalog.=) ANY (old) LOOP
        EXECUTE pg_catalog.format('ALTER POLICY %I ON %s%s%s', o.polname, o.rel,
            CASE WHEN o.qual IS NULL THEN ''
                 ELSE ' USING (' OPERATOR(pg_catalog.||) pg_catalog.regexp_replace(o.qual, pattern, 'hr_migrations.\2(', 'g') OPERATOR(pg_catalog.||) ')' END,
            CASE WHEN o.chk IS NULL THEN ''
                 ELSE ' WITH CHECK (' OPERATOR(pg_catalog.||) pg_catalog.regexp_replace(o.chk, pattern, 'hr_migrations.\2(', 'g') OPERATOR(pg_catalog.||) ')' END);
    END LOOP;
    FOR o IN SELECT p.oid::pg_catalog.regprocedure AS sig FROM pg_catalog.pg_proc p
              WHERE p.oid OPERATOR(pg_catalog.=) ANY (old) LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', o.sig);
    END LOOP;
END
$$;

-- Credentials are sealed with each organization's data key from 0.3.0 on
-- (envelopes v2): 0.2.0's CHECK on a credentials table accepted envelopes
-- v1 only, and would refuse every secret the application writes until the
-- migration file runs again. For every migration of kind credential_move
-- (the builtin one and any registered with 0.2.0), its v1-only CHECK is
-- replaced now by the CHECK of both under the name its registry entry
-- gives, NOT VALID (no scan; the file validates it), under the session's
-- lock_timeout.
DO $$
DECLARE
    r record;
    c record;
    check_name text;
BEGIN
    FOR r IN SELECT g.migration, g.objects, hr_migrations.hr_credentials_table(g.migration) AS t
               FROM hr_migrations.hr_migration_registry g
              WHERE g.kind OPERATOR(pg_catalog.=) 'credential_move' LOOP
        CONTINUE WHEN r.t IS NULL;
        check_name := r.objects OPERATOR(pg_catalog.->>) 'envelope_check';
        FOR c IN SELECT k.conname FROM pg_catalog.pg_constraint k
                  WHERE k.conrelid OPERATOR(pg_catalog.=) r.t AND k.contype OPERATOR(pg_catalog.=) 'c'
                    AND (k.conname OPERATOR(pg_catalog.=) check_name
                         OR k.conname OPERATOR(pg_catalog.=) 'pf_credentials_encrypted_value_envelope_v1'
                         OR k.conname OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text(
                                COALESCE(r.objects OPERATOR(pg_catalog.->) 'legacy_checks', '[]'::pg_catalog.jsonb)))))
                    AND pg_catalog.strpos(pg_catalog.pg_get_constraintdef(k.oid), 'hrc[12]') OPERATOR(pg_catalog.=) 0 LOOP
            EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, c.conname);
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                        WHERE k.conrelid OPERATOR(pg_catalog.=) r.t AND k.conname OPERATOR(pg_catalog.=) check_name) THEN
            EXECUTE pg_catalog.format(
                'ALTER TABLE %s ADD CONSTRAINT %I CHECK (encrypted_value OPERATOR(pg_catalog.~) ''^hrc[12][.][1-9][0-9]*[.][A-Za-z0-9_-]+$''::pg_catalog.text '
                'AND pg_catalog.octet_length(pg_catalog.split_part(encrypted_value, ''.''::pg_catalog.text, 3)) OPERATOR(pg_catalog.>=) 38) NOT VALID',
                r.t, check_name);
        END IF;
    END LOOP;
END
$$;

-- What is installed now is what the integrity check (src/integrity.rs)
-- compares with.
SELECT hr_migrations.hr_record_fingerprints();
