-- Notes owned by an account. account_id refers to accounts.id in the accounts database: another
-- database, so no foreign key.
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL,
    title text NOT NULL CHECK (title <> ''),
    body text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notes_account_id_idx ON notes (account_id, id);
