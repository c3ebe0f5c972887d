-- An optional name to show instead of the e-mail address.
ALTER TABLE accounts ADD COLUMN display_name text CHECK (display_name <> '');
