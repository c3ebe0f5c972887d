-- Development notes for the seeded accounts alice (id 1) and bob (id 2). Notes have no natural key, so a
-- note is inserted only when its owner has no note of that title yet: `cargo xtask seed` can re-run this.
INSERT INTO notes (account_id, title, body)
SELECT seed.account_id, seed.title, seed.body
FROM (VALUES
    (1, 'Welcome', 'This is your first note. Notes are searchable: try searching for "groceries".'),
    (1, 'Groceries', 'Milk, eggs, bread, coffee beans and a bag of oranges.'),
    (1, 'Reading list', 'Designing Data-Intensive Applications; The Art of PostgreSQL.'),
    (2, 'Welcome', 'This is your first note, Bob.'),
    (2, 'Release checklist', 'Run the migrations on staging, check the dashboards, then deploy.')
) AS seed (account_id, title, body)
WHERE NOT EXISTS (
    SELECT 1 FROM notes WHERE notes.account_id = seed.account_id AND notes.title = seed.title
);
