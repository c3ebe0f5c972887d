//! Files the tool reads and writes, tried as a careless or hostile neighbour would: a `.env` other
//! local users could read, `.env` files a line-based rewrite corrupts, migration files that are
//! links to nowhere, and one migration that cannot be read while `db-status` is asked.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Project, contains};

/// One service, so that setup writes `DATABASE_URL` and appends keys of its own after it.
fn one_service() -> Project {
    let p = Project::new("native");
    p.service("notes", "name = \"notes\"");
    p.write("migrations/notes/20240101000001_notes.up.sql", "CREATE TABLE notes (id int PRIMARY KEY);");
    p
}

fn url(p: &Project) -> String {
    p.ok(&["db-endpoint", "--db", "notes"]).trim().to_owned()
}

/// What dotenvy reads from `text` (without a BOM, as its `load` skips one), in order.
fn dotenvy_reads(text: &str) -> Vec<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    dotenvy::from_read_iter(text.as_bytes()).collect::<Result<_, _>>().unwrap()
}

fn values_of<'a>(read: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    read.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

/// A local user made for one test and removed when it ends, passed or failed.
struct LocalUser {
    name: String,
}

impl LocalUser {
    fn new() -> LocalUser {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test creates a local user (useradd): run it as root");
        let name = format!("xtsec{}", std::process::id());
        let out = Command::new("useradd").args(["-m", "-s", "/usr/sbin/nologin", &name]).output().unwrap();
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        LocalUser { name }
    }

    fn can_read(&self, path: &std::path::Path) -> bool {
        let out = Command::new("runuser").args(["-u", &self.name, "--", "cat"]).arg(path).output().unwrap();
        out.status.success()
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// A `.env` made readable by everyone (umask 022) is its owner's only once setup puts passwords
/// in it, said once; another local user can read it before and not after.
#[test]
fn env_file_with_passwords_is_the_owners_only() {
    let p = one_service();
    let env = p.path().join(".env");
    p.write(".env", "RUST_LOG=debug\n");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let neighbour = LocalUser::new();
    assert!(neighbour.can_read(&env), "the neighbour must be able to read a 0644 file to begin with");

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, &format!("made {} readable by its owner only (mode 0600, was 0644)", env.display()));
    assert_eq!(std::fs::metadata(&env).unwrap().permissions().mode() & 0o7777, 0o600);
    assert!(std::fs::read_to_string(&env).unwrap().contains("XTASK_ADMIN_URL="));
    assert!(!neighbour.can_read(&env), "another local user can read the .env holding the admin URL");

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");
    assert!(!err.contains("readable by its owner only"), "said twice:\n{err}");
}

/// Only our keys' values change, where dotenvy finds them: not inside another value's quotes, also
/// after `export<TAB>`, after a BOM, before an inline comment; appended lines use the file's
/// line ending.
#[test]
fn env_file_rewrites_keep_every_other_byte() {
    let p = one_service();
    let env = p.path().join(".env");

    // A quoted value spanning lines holds a `DATABASE_URL=` line: it stays, and the real key is
    // appended at the top level.
    let quoted = "CERT=\"-----BEGIN\nDATABASE_URL=postgres://inside/quotes\n-----END\"\nOTHER=1\n";
    p.write(".env", quoted);
    p.ok(&["setup"]);
    let url = url(&p);
    let text = std::fs::read_to_string(&env).unwrap();
    let added = text.strip_prefix(quoted).unwrap_or_else(|| panic!("{quoted:?} was changed: {text:?}"));
    assert!(added.starts_with(&format!("DATABASE_URL={url}\n")), "{added:?}");
    let read = dotenvy_reads(&text);
    assert_eq!(values_of(&read, "CERT"), ["-----BEGIN\nDATABASE_URL=postgres://inside/quotes\n-----END"]);
    assert_eq!(values_of(&read, "DATABASE_URL"), [url.as_str()]);
    assert_eq!(values_of(&read, "NOTES_DATABASE_URL"), [url.as_str()]);

    // `export` then a tab: rewritten in place, not added a second time.
    let ours = text[quoted.len()..].to_owned();
    p.write(
        ".env",
        &format!("export\tDATABASE_URL=old\n{}", ours.replace(&format!("DATABASE_URL={url}\n"), "")),
    );
    p.ok(&["setup"]);
    let text = std::fs::read_to_string(&env).unwrap();
    assert!(text.starts_with(&format!("export\tDATABASE_URL={url}\n")), "{text:?}");
    assert_eq!(values_of(&dotenvy_reads(&text), "DATABASE_URL"), [url.as_str()]);

    // A BOM, an inline comment on our line, CRLF: all kept; the keys appended end in CRLF too.
    let crlf = "\u{feff}DATABASE_URL=old # the default database\r\nRUST_LOG=debug\r\n";
    p.write(".env", crlf);
    p.ok(&["setup"]);
    let text = std::fs::read_to_string(&env).unwrap();
    let expected = format!("\u{feff}DATABASE_URL={url} # the default database\r\nRUST_LOG=debug\r\n");
    let added =
        text.strip_prefix(&expected).unwrap_or_else(|| panic!("{text:?} should start with {expected:?}"));
    assert!(added.starts_with(&format!("NOTES_DATABASE_URL={url}\r\n")), "{added:?}");
    assert!(added.ends_with("\r\n") && !added.replace("\r\n", "").contains('\n'), "LF appended: {added:?}");
    let read = dotenvy_reads(&text);
    assert_eq!(values_of(&read, "DATABASE_URL"), [url.as_str()]);
    assert_eq!(values_of(&read, "RUST_LOG"), ["debug"]);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");
}

/// A migration that is a link to nowhere (dangling, or looping on itself) would be skipped in
/// silence, and the schema would lack it: setup and migrate fail naming the file and the target.
#[test]
fn symlinked_migrations_leading_nowhere_are_errors() {
    let p = one_service();
    let dir = p.path().join("migrations/notes");
    symlink("../shared/20240101000002_gone.up.sql", dir.join("20240101000002_gone.up.sql")).unwrap();
    let err = p.fails(&["setup"]);
    contains(
        &err,
        "migrations/notes/20240101000002_gone.up.sql is a symlink to ../shared/20240101000002_gone.up.sql, which does not exist",
    );
    std::fs::remove_file(dir.join("20240101000002_gone.up.sql")).unwrap();

    symlink("20240101000003_loop.up.sql", dir.join("20240101000003_loop.up.sql")).unwrap();
    for task in ["setup", "migrate"] {
        let err = p.fails(&[task]);
        contains(
            &err,
            "migrations/notes/20240101000003_loop.up.sql is a symlink to 20240101000003_loop.up.sql, which loops",
        );
    }
}

/// One migration that cannot be read (a link to nowhere; a file that is not UTF-8) leaves its
/// database's pending count unknown and says why; db-status still reports everything else.
#[test]
fn db_status_reports_an_unreadable_migration() {
    let p = one_service();
    p.ok(&["setup"]);
    let dir = p.path().join("migrations/notes");
    std::fs::write(dir.join("20240101000002_latin1.up.sql"), b"-- caf\xe9\nSELECT 1;").unwrap();
    symlink("nowhere.sql", dir.join("20240101000003_gone.up.sql")).unwrap();
    for (broken, reason) in [
        ("20240101000003_gone.up.sql", "is a symlink to nowhere.sql, which does not exist"),
        ("20240101000002_latin1.up.sql", "is not UTF-8 text"),
    ] {
        let status: Value = serde_json::from_str(&p.ok(&["db-status", "--json"])).unwrap();
        let entry = &status["databases"][0];
        assert_eq!(entry["exists"], true, "{status:#}");
        assert_eq!(entry["pending_migrations"], Value::Null, "{status:#}");
        assert_eq!(entry["seeds"], "never", "{status:#}");
        let error = entry["files_error"].as_str().unwrap_or_else(|| panic!("no files_error: {status:#}"));
        contains(error, &format!("pending migrations unknown: migrations/notes/{broken} {reason}"));
        contains(&p.ok(&["db-status"]), &format!("migrations/notes/{broken} {reason}"));
        std::fs::remove_file(dir.join(broken)).unwrap();
    }
    let status: Value = serde_json::from_str(&p.ok(&["db-status", "--json"])).unwrap();
    assert_eq!(status["databases"][0]["pending_migrations"], 0, "{status:#}");
    assert_eq!(status["databases"][0]["files_error"], Value::Null, "{status:#}");
}
