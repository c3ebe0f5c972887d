-- Development accounts; every password is the account's name followed by "-password".
-- Low bcrypt cost (6) keeps seeding quick; the service hashes with cost 8. Re-runnable: `cargo xtask seed`
-- leaves existing accounts as they are.
INSERT INTO accounts (email, password_hash, display_name) VALUES
    ('alice@example.com', crypt('alice-password', gen_salt('bf', 6)), 'Alice'),
    ('bob@example.com', crypt('bob-password', gen_salt('bf', 6)), 'Bob'),
    ('carol@example.com', crypt('carol-password', gen_salt('bf', 6)), NULL)
ON CONFLICT (email) DO NOTHING;
