//! Drift: a branch database changed by hand, outside its migrations. `schema --check --live`
//! compares it in full with what its applied migrations make; db-status and pre-commit mention it
//! from the fingerprint kept when the tool migrated.

use crate::harness::{Project, contains};

/// shop (its table, with row-level security on) and audit, which reads shop: setup's grants to
/// audit's role are setup's, not drift.
fn project() -> Project {
    let p = Project::new("native");
    p.service("shop", "name = \"shop\"");
    p.service("audit", "name = \"audit\"\nreads = [\"shop\"]");
    p.write(
        "migrations/shop/20260101000000_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, owner text); ALTER TABLE items ENABLE ROW LEVEL SECURITY;",
    );
    p.write("migrations/audit/20260101000000_log.up.sql", "CREATE TABLE log (id int PRIMARY KEY);");
    // Seeds make this tool's record table, which is not the schema's.
    p.write("seeds/shop/01.sql", "INSERT INTO items VALUES (1, 'ann') ON CONFLICT DO NOTHING;");
    p.ok(&["setup"]);
    p
}

fn drift_in_status(p: &Project) -> Option<bool> {
    let status = p.status_current();
    let shop = status["databases"].as_array().unwrap().iter().find(|d| d["database"] == "shop").unwrap();
    shop["schema_drift"].as_bool()
}

#[test]
fn hand_made_changes_of_each_kind_are_found_and_none_is_reported_when_none() {
    let p = project();
    let (_, err) = p.ok_err(&["schema", "--check", "--live"]);
    contains(&err, "is what its 1 applied migration(s) make");
    assert_eq!(drift_in_status(&p), Some(false), "setup kept the fingerprint");
    let mut shop = p.service_client("shop");
    let cases = [
        ("ALTER TABLE items ADD COLUMN note text", "table column public.items.note", "DROP COLUMN note"),
        (
            "CREATE INDEX items_owner ON items (owner)",
            "index public.items_owner",
            "DROP INDEX public.items_owner;",
        ),
        (
            "CREATE POLICY mine ON items USING (owner = current_user)",
            "policy mine on public.items",
            "DROP POLICY mine ON public.items;",
        ),
        (
            "GRANT UPDATE ON items TO pg_monitor",
            "grant on table public.items to pg_monitor",
            "REVOKE UPDATE ON TABLE public.items FROM pg_monitor;",
        ),
    ];
    for (change, found, removal) in cases {
        shop.batch_execute(change).unwrap();
        assert_eq!(drift_in_status(&p), Some(true), "db-status sees {change}");
        let out = p.run(&["schema", "--check", "--live", "--db", "shop"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{change}: {stdout}");
        contains(&stdout, &format!("{found} (only in"));
        contains(&stdout, removal);
        // The SQL it prints removes the drift.
        let sql = stdout.split("SQL that makes it what they make:\n").nth(1).unwrap();
        let sql = sql.split("\nKeep the change").next().unwrap();
        shop.batch_execute(sql).unwrap();
        p.ok(&["schema", "--check", "--live"]);
        assert_eq!(drift_in_status(&p), Some(false), "after removing {change}");
    }
}

#[test]
fn pre_commit_fails_on_drift_and_migrate_keeps_the_new_fingerprint() {
    let p = project();
    p.git(&["config", "user.email", "dev@example.com"]);
    p.git(&["config", "user.name", "Dev"]);
    p.write(".gitignore", "data/\ntarget/\n.env\n");
    p.service_client("shop").batch_execute("ALTER TABLE items ADD COLUMN by_hand int").unwrap();
    let out = p.run(&["pre-commit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    contains(&err, "FAIL  shop: drift");
    contains(&err, "changed outside its migrations");
    contains(&err, "ok    audit: drift");
    // Written as a migration after all: the migration fails on the column made by hand, so the
    // developer drops it first; once migrated, the kept fingerprint is the new schema's.
    p.service_client("shop").batch_execute("ALTER TABLE items DROP COLUMN by_hand").unwrap();
    p.write("migrations/shop/20260102000000_by_hand.up.sql", "ALTER TABLE items ADD COLUMN by_hand int;");
    p.ok(&["migrate", "--db", "shop"]);
    assert_eq!(drift_in_status(&p), Some(false));
}

#[test]
fn a_reader_declared_later_is_setup_s_not_drift_and_another_tool_s_migration_is_unknown() {
    let p = project();
    p.service("report", "name = \"report\"\nreads = [\"shop\"]");
    p.ok(&["setup"]);
    assert_eq!(drift_in_status(&p), Some(false), "the new reader's grants are setup's");
    p.ok(&["schema", "--check", "--live"]);
    // A migration applied by another runner (sqlx migrate run): the kept fingerprint says nothing.
    let mut shop = p.service_client("shop");
    shop.batch_execute(
        "ALTER TABLE items ADD COLUMN added_by_sqlx int;
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (20260105000000, 'by sqlx', true, '\\x00', 1)",
    )
    .unwrap();
    assert_eq!(drift_in_status(&p), None);
}
