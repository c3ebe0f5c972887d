DROP INDEX notes_search_idx;
ALTER TABLE notes DROP COLUMN search;
