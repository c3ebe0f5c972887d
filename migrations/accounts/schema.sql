-- The declared schema of the `accounts` database: what its migrations produce.
-- Edit it, then `cargo xtask prepare "..."` writes the migration; `cargo xtask schema --check`
-- fails while the migrations and this file differ.

CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;

CREATE TABLE public.accounts (
    id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    email public.citext NOT NULL,
    password_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    display_name text
);

ALTER TABLE public.accounts ADD CONSTRAINT accounts_display_name_check CHECK ((display_name <> ''::text));

ALTER TABLE public.accounts ADD CONSTRAINT accounts_email_check CHECK ((POSITION(('@'::text) IN (email)) > 1));

ALTER TABLE public.accounts ADD CONSTRAINT accounts_email_key UNIQUE (email);

ALTER TABLE public.accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);
