-- 0002: encrypted template secrets (story 29.13). Values are AES-GCM ciphertexts from schemas/secrets.py;
-- the table never holds plaintext. template_id is the public template id (not a foreign key yet: the
-- templates table arrives with the gateway's migrations).
CREATE TABLE IF NOT EXISTS workflow_template_secrets (
    template_id     text        NOT NULL,
    secret_name     text        NOT NULL,
    encrypted_value text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, secret_name)
);
