-- Privileges on functions that need privilege, after every function exists.
-- Anything that decrypts, encrypts, migrates or rewraps is for service_role
-- (and superusers); grant it to other roles explicitly if you must.
REVOKE EXECUTE ON FUNCTION hr_encrypt_credential(text, text), hr_decrypt_credential(text, text),
    hr_keyring_versions() FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT EXECUTE ON FUNCTION hr_encrypt_credential(text, text), hr_decrypt_credential(text, text),
            hr_key_check(integer, text), hr_migrate_integrations(integer, boolean),
            hr_integration_secret(uuid), hr_rollback_integrations(integer),
            hr_rewrap_credentials(integer), hr_keyring_versions()
            TO service_role;
    END IF;
END
$$;
