//! Backups: `backup`, `restore` and `wipe --backup` against real servers, the data compared row by
//! row before and after.

use std::path::{Path, PathBuf};

use crate::harness::{Project, contains};

/// The admin password the servers of these tests get: it must never be printed or in a file name.
const PASSWORD: &str = "s3cret-Bk-Pw";

/// Values of many types, including the awkward ones: quotes, backslashes, unicode, NULLs, empty
/// strings and bytea, infinity, a fractional time zone, nested JSON.
const ROWS: &str = r#"INSERT INTO items VALUES
    (1, 'it''s "quoted" \ back', 12.3456, '2024-02-29 12:34:56.789+05:30', '\x00ff10',
        '{"a": [1, 2, {"b": null}], "ü": "名前"}', NULL),
    (2, 'Ünïcode 名前 🎉', -0.0001, 'infinity', '\x', '[]', E'line1\nline2\ttab'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, '', 9999999999.9999, '1970-01-01 00:00:00+00', '\xdeadbeef', '"just a string"', '')"#;

const CHANGES: &str = "UPDATE items SET name = 'changed', doc = '{}' WHERE id = 1; \
     DELETE FROM items WHERE id = 2; \
     INSERT INTO items VALUES (5, 'added', 1, now(), '\\x01', 'null', 'n')";

/// Two services: shop (the table) and audit, which reads shop.
fn project(engine: &str) -> Project {
    let mut p = Project::new(engine);
    p.set("XTASK_PASSWORD", PASSWORD);
    p.service("shop", "name = \"shop\"");
    p.service("audit", "name = \"audit\"\nreads = [\"shop\"]");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(14, 4), seen timestamptz, \
         blob bytea, doc jsonb, note varchar(40));",
    );
    p.write("migrations/audit/20240101000001_log.up.sql", "CREATE TABLE log (id int PRIMARY KEY);");
    p
}

/// Every row of shop's table, every column as text, in key order.
fn rows(p: &Project) -> Vec<Vec<Option<String>>> {
    let mut client = p.service_client("shop");
    let rows = client
        .query(
            "SELECT id::text, name, price::text, seen::text, blob::text, doc::text, note::text \
             FROM items ORDER BY id",
            &[],
        )
        .unwrap();
    rows.iter().map(|row| (0..row.len()).map(|i| row.get(i)).collect()).collect()
}

/// The path at the end of the stderr line starting with `prefix` (`restore: backed up ...`).
fn backed_up(stderr: &str, prefix: &str) -> PathBuf {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains("backed up database"))
        .unwrap_or_else(|| panic!("no `{prefix}` backup line in:\n{stderr}"));
    PathBuf::from(line.rsplit_once(" to ").unwrap().1)
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// `<logical>--<branch>--YYYYMMDDTHHMMSSZ[-N].dump`.
fn assert_named(path: &Path, logical: &str, branch: &str) {
    let name = file_name(path);
    let rest = name.strip_prefix(&format!("{logical}--{branch}--")).unwrap_or_else(|| panic!("{name}"));
    let stamp = rest.strip_suffix(".dump").unwrap();
    let (time, suffix) = stamp.split_at(16);
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    assert!(
        digits(&time[..8]) && &time[8..9] == "T" && digits(&time[9..15]) && time.ends_with('Z'),
        "{name}"
    );
    assert!(suffix.is_empty() || suffix.strip_prefix('-').is_some_and(digits), "{name}");
}

fn scratch_databases(admin_url: &str) -> Vec<String> {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    let rows =
        admin.query("SELECT datname::text FROM pg_database WHERE datname LIKE '\\_xtask\\_%'", &[]).unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// The role passwords, from the URLs db-endpoint prints.
fn role_passwords(p: &Project) -> Vec<String> {
    ["shop", "audit"]
        .iter()
        .map(|db| {
            let url = p.ok(&["db-endpoint", "--db", db]);
            let login = url.trim().strip_prefix("postgres://").unwrap().split_once('@').unwrap().0;
            login.split_once(':').unwrap().1.to_owned()
        })
        .collect()
}

pub fn round_trip(engine: &str) {
    let p = project(engine);
    p.ok(&["setup"]);
    let admin_url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres", p.port);
    scenario(&p, &admin_url);
}

/// Backup, change, restore, compare; the safety backup undoes the restore; bad files change
/// nothing; wipe --backup; names, git and secrets.
fn scenario(p: &Project, admin_url: &str) {
    let mut printed = Vec::new();
    let shop_db = format!("{}_shop", p.name);
    p.service_client("shop").batch_execute(ROWS).unwrap();
    let before = rows(p);
    assert_eq!(before.len(), 4);
    assert_eq!(before[2], vec![Some("3".to_owned()), None, None, None, None, None, None]);

    let (out, err) = p.ok_err(&["backup"]);
    let files: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    assert_eq!(files.len(), 2, "{out}");
    for file in &files {
        assert_eq!(file.parent().unwrap(), p.path().join("backups"));
        assert!(file.is_file(), "{}", file.display());
    }
    let dump = files.iter().find(|f| file_name(f).starts_with("shop--")).unwrap().clone();
    assert_named(&dump, "shop", "main");
    contains(&err, &format!("backed up database {shop_db} ("));
    contains(&err, &format!("KiB) to {}", dump.display()));
    printed.extend([out, err]);

    p.service_client("shop").batch_execute(CHANGES).unwrap();
    let changed = rows(p);
    assert_ne!(changed, before);

    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{shop_db}\" SET statement_timeout = '9s'; \
             ALTER DATABASE \"{shop_db}\" SET search_path = \"$user\", public, extra"
        ))
        .unwrap();
    let settings = |admin: &mut postgres::Client| -> Vec<String> {
        let sql = "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
                   WHERE d.datname = $1 ORDER BY 1";
        admin.query(sql, &[&shop_db]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    let settings_before = settings(&mut admin);
    assert_eq!(settings_before.len(), 2);

    let (out, err) = p.ok_err(&["restore", dump.to_str().unwrap()]);
    assert_eq!(rows(p), before, "restored row by row");
    assert_eq!(settings(&mut admin), settings_before, "the database's settings stay");
    let safety = backed_up(&err, "restore:");
    assert!(safety.is_file() && safety != dump, "{}", safety.display());
    assert_named(&safety, "shop", "main");
    printed.extend([out, err]);

    // Made like a branch database: labelled, owned by the role, closed to PUBLIC; the reader may
    // still connect (a dump does not carry database-level grants) and read.
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    let row = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text, shobj_description(oid, 'pg_database'), \
                    array_to_string(datacl, ',') FROM pg_database WHERE datname = $1",
            &[&shop_db],
        )
        .unwrap();
    let (owner, label, acl): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(owner, shop_db);
    let label: serde_json::Value = serde_json::from_str(&label).unwrap();
    assert_eq!(
        (label["project"].as_str(), label["database"].as_str()),
        (Some(p.name.as_str()), Some("shop"))
    );
    assert_eq!(label["branch"], "main");
    assert!(!acl.split(',').any(|item| item.starts_with('=')), "PUBLIC may not connect: {acl}");
    let audit_url = p.ok(&["db-endpoint", "--db", "audit"]);
    let audit_on_shop = format!("{}/{shop_db}", audit_url.trim().rsplit_once('/').unwrap().0);
    let mut audit = postgres::Client::connect(&audit_on_shop, postgres::NoTls).unwrap();
    let count: i64 = audit.query_one("SELECT count(*) FROM items", &[]).unwrap().get(0);
    assert_eq!(count, 4);
    drop(audit);
    assert!(scratch_databases(admin_url).is_empty());

    // The safety backup undoes the restore.
    let (out, err) = p.ok_err(&["restore", safety.to_str().unwrap()]);
    assert_eq!(rows(p), changed);
    printed.extend([out, err]);

    // Files that are not (whole) dumps change nothing.
    let garbage = p.path().join("shop--garbage.dump");
    std::fs::write(&garbage, "this is not a dump\n").unwrap();
    let err = p.fails(&["restore", garbage.to_str().unwrap()]);
    contains(&err, "is not a pg_dump archive in custom format");
    assert!(!err.contains("backed up"), "refused before anything: {err}");
    let err = p.fails(&["restore", "backups/no-such-file.dump"]);
    contains(&err, "cannot read backups/no-such-file.dump");
    let bytes = std::fs::read(&dump).unwrap();
    let truncated = p.path().join("truncated.dump");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = p.fails(&["restore", "--db", "shop", truncated.to_str().unwrap()]);
    contains(&err, &format!("into database {shop_db} failed; {shop_db} is unchanged"));
    contains(&err, "pg_restore");
    assert_eq!(rows(p), changed);
    assert!(scratch_databases(admin_url).is_empty());
    printed.push(err);

    // git ignores backups/ in any workspace (this one's root .gitignore does not mention it).
    let status = p.git(&["status", "--porcelain", "--untracked-files=all"]);
    contains(&status, "Cargo.toml");
    assert!(!status.contains("backups/"), "{status}");

    // The branch is in the file name, made safe for one.
    p.ok(&["setup", "--branch", "feature/Bk 1"]);
    let out = p.ok(&["backup", "--db", "shop", "--branch", "feature/Bk 1"]);
    assert_named(Path::new(out.trim()), "shop", "feature_Bk_1");
    let err = p.fails(&["backup", "--branch", "never-set-up"]);
    contains(&err, "does not exist");
    contains(&err, "cargo xtask setup");

    // wipe --backup: a backup that cannot be written stops the wipe before anything is dropped...
    let backups = p.path().join("backups");
    let aside = p.path().join("backups.aside");
    std::fs::rename(&backups, &aside).unwrap();
    std::fs::write(&backups, "a file where the directory should be").unwrap();
    let err = p.fails(&["wipe", "--backup"]);
    contains(&err, "wipe stopped before changing anything");
    std::fs::remove_file(&backups).unwrap();
    std::fs::rename(&aside, &backups).unwrap();
    assert_eq!(rows(p), changed);
    // ...one that can be written comes before the drop, and restores.
    let (out, err) = p.ok_err(&["wipe", "--backup", "--db", "shop"]);
    let wiped = backed_up(&err, "wipe:");
    assert_named(&wiped, "shop", "main");
    contains(&err, &format!("wipe: dropped database {shop_db}"));
    let status = p.status("main");
    let shop = status["databases"].as_array().unwrap().iter().find(|d| d["database"] == "shop").unwrap();
    assert_eq!(shop["exists"], false);
    printed.extend([out, err]);
    let err = p.fails(&["backup", "--db", "shop"]);
    contains(&err, &format!("database {shop_db} (`shop` of branch `main`) does not exist"));
    let (out, err) = p.ok_err(&["restore", wiped.to_str().unwrap()]);
    assert!(!err.contains("backed up"), "nothing to back up first: {err}");
    assert_eq!(rows(p), changed);
    printed.extend([out, err]);

    // On a server without the project's roles (a new one), restore says to run setup first.
    let mut secrets = role_passwords(p);
    p.ok(&["wipe"]);
    p.ok(&["wipe", "--branch", "feature/Bk 1"]);
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    // The roles own the templates too: those go first.
    let pattern = format!("{}%\\_\\_tpl\\_%", p.name);
    for row in
        admin.query("SELECT datname::text FROM pg_database WHERE datname LIKE $1", &[&pattern]).unwrap()
    {
        admin.batch_execute(&format!("DROP DATABASE \"{}\"", row.get::<_, String>(0))).unwrap();
    }
    admin.batch_execute(&format!("DROP ROLE \"{0}_shop\"; DROP ROLE \"{0}_audit\"", p.name)).unwrap();
    let err = p.fails(&["restore", wiped.to_str().unwrap()]);
    contains(&err, &format!("role {}_shop", p.name));
    contains(&err, "run `cargo xtask setup` first");
    p.ok(&["setup"]);
    let (out, err) = p.ok_err(&["restore", wiped.to_str().unwrap()]);
    assert_eq!(rows(p), changed);
    printed.extend([out, err]);

    secrets.push(PASSWORD.to_owned());
    let names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    for secret in &secrets {
        for text in printed.iter().chain(&names) {
            assert!(!text.contains(secret.as_str()), "a password in {text}");
        }
    }
}

/// The external engine: the newest pg_dump and pg_restore on this machine, against a server
/// addressed only by its URL.
#[test]
fn external_engine_backup_and_restore() {
    let mut server = Project::new("native");
    server.set("XTASK_PASSWORD", PASSWORD);
    server.ok(&["db-up"]);
    let admin_url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres", server.port);
    let mut p = project("external");
    p.use_server(&server);
    p.set("XTASK_DATABASE_URL", &admin_url);
    p.ok(&["setup"]);
    scenario(&p, &admin_url);
    p.ok(&["teardown"]);
}
