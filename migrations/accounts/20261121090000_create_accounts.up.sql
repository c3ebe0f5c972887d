-- Accounts with case-insensitive, unique e-mail addresses and bcrypt password hashes.
-- Needs the citext and pgcrypto extensions, which the xtask enables before migrating (they are declared
-- in services/accounts/Cargo.toml): a migration runs as the service's role, which may not create them.
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE CHECK (position('@' in email) > 1),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
