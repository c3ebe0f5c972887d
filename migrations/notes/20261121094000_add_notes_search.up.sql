-- Full-text search over title and body, kept up to date by Postgres itself.
ALTER TABLE notes
    ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED;

CREATE INDEX notes_search_idx ON notes USING gin (search);
