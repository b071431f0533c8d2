-- What a run costs the merchant's app (issue 14).
--
-- The client token, kept between runs: Douyin keeps only the two newest tokens of an app valid
-- (2 hours each) and the merchant's other services use the same app, so a run reuses the stored
-- token while it has enough life left instead of fetching one (and pushing theirs out). One row
-- per app and API base URL (a fake server's tokens never mix with real ones); `credential` is a
-- one-way fingerprint of the AppSecret the token was fetched with, so a changed secret is checked
-- by a fresh token call. The token is a credential: only the job's role may read it.
CREATE TABLE IF NOT EXISTS douyin_client_tokens (
    app_id     text        NOT NULL,
    api_base   text        NOT NULL,
    credential text        NOT NULL,
    token      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, api_base)
);

REVOKE ALL ON douyin_client_tokens FROM PUBLIC;

-- Default privileges (ALTER DEFAULT PRIVILEGES … GRANT SELECT ON TABLES TO reporting) may have
-- granted it to other roles on creation: take those back too; only the owner keeps access.
DO $$
DECLARE
    grantee_role oid;
BEGIN
    FOR grantee_role IN
        SELECT DISTINCT a.grantee
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'douyin_client_tokens'::regclass
           AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('REVOKE ALL ON douyin_client_tokens FROM %s', grantee_role::regrole);
    END LOOP;
END
$$;

-- Platform ciphertexts (`Enc.`) the decrypt endpoint answered without a plaintext. The daily
-- decrypt quota counts every ciphertext sent, so the pass that fills phones a used-up quota left
-- NULL skips these for a day instead of spending the quota on them again on every run.
CREATE TABLE IF NOT EXISTS douyin_phone_refusals (
    cipher_text text        PRIMARY KEY,
    order_id    text        NOT NULL,
    refused_at  timestamptz NOT NULL DEFAULT now()
);

-- The orders whose platform phone is still NULL (the decrypt quota was used up when they were
-- stored): the fill pass finds them through this index, which holds only those rows.
CREATE INDEX IF NOT EXISTS ix_orders_phone_pending ON orders (account_id, update_time DESC)
    WHERE phone IS NULL AND btrim(raw_data #>> '{contacts,0,phone_encrypt}') LIKE 'Enc.%';
