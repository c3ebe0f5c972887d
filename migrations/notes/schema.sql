-- The declared schema of the `notes` database: what its migrations produce.
-- Edit it, then `cargo xtask prepare "..."` writes the migration; `cargo xtask schema --check`
-- fails while the migrations and this file differ.

CREATE TABLE public.notes (
    id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    account_id bigint NOT NULL,
    title text NOT NULL,
    body text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, ((title || ' '::text) || body))) STORED
);

ALTER TABLE public.notes ADD CONSTRAINT notes_pkey PRIMARY KEY (id);

ALTER TABLE public.notes ADD CONSTRAINT notes_title_check CHECK ((title <> ''::text));

CREATE INDEX notes_account_id_idx ON public.notes USING btree (account_id, id);

CREATE INDEX notes_search_idx ON public.notes USING gin (search);
