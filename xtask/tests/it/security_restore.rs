//! Security of backups, restores and destructive steps (issue 20, findings 4, 8, 10, 11, 12, 14):
//! a restore runs as the database's role, so the dump's functions never run as a superuser; killed
//! backups leave nothing behind; an interrupted restore loses no data; an invalid database is
//! explained and recovered; destructive tasks act only on the engine's own cluster; a dump is
//! restored only into the database it was dumped from, by its owner.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Project, alive, contains};

/// The admin password of these servers (the same on both clusters of the port test, as two
/// clones of one project would have).
const PASSWORD: &str = "s3c-Restore-Pw";

/// A project with one service, `notes`, whose role is `<project>_notes`.
fn project(engine: &str) -> Project {
    let mut p = Project::new(engine);
    p.set("XTASK_PASSWORD", PASSWORD);
    p.service("notes", "name = \"notes\"");
    p.write(
        "migrations/notes/20240101000001_notes.up.sql",
        "CREATE TABLE notes (id int PRIMARY KEY, body text);",
    );
    p
}

fn admin(p: &Project, db: &str) -> postgres::Client {
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}", p.port);
    postgres::Client::connect(&url, postgres::NoTls).unwrap()
}

fn role(p: &Project) -> String {
    format!("{}_notes", p.name)
}

fn notes_db(p: &Project) -> String {
    format!("{}_notes", p.name)
}

fn bodies(p: &Project) -> Vec<String> {
    let rows = p.service_client("notes").query("SELECT body FROM notes ORDER BY id", &[]).unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn dumps(p: &Project) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(p.path().join("backups"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|x| x == "dump"));
    files.sort();
    files
}

fn partials(p: &Project) -> Vec<String> {
    let names = std::fs::read_dir(p.path().join("backups")).unwrap().flatten();
    names.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".partial-")).collect()
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    p.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits (polling every few milliseconds) until a session matching `filter` shows in
/// `pg_stat_activity`; fails when `child` ends first or after 30 s.
fn wait_for_session(p: &Project, child: &mut Child, filter: &str) {
    let mut admin = admin(p, "postgres");
    let sql = format!("SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND ({filter})");
    let start = Instant::now();
    while admin.query_opt(&sql, &[]).unwrap().is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("xtask ended ({status}) before a session matching {filter} showed:\n{stderr}");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no session matching {filter} within 30 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill on the pid of a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// The pids of `parent`'s children running `program`, from /proc.
fn children_named(parent: u32, program: &str) -> Vec<u32> {
    let stat = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    let pids = entries.filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()));
    pids.filter(|pid| {
        let text = stat(&pid.to_string());
        // `pid (comm) state ppid ...`
        let Some((comm, rest)) = text.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else {
            return false;
        };
        comm == program && rest.split_whitespace().nth(1) == Some(parent.to_string().as_str())
    })
    .collect()
}

fn output_of(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Finding 4: a CHECK constraint and a default of the role's table call the role's function, which
/// tries to make the role a superuser (after `RESET ROLE`, which escapes a `SET ROLE` session).
/// Restored, the function runs as the role: the role stays a plain one, the data is intact, and
/// the restored objects belong to the role.
pub fn restore_runs_as_the_role(engine: &str) {
    let p = project(engine);
    let role = role(&p);
    p.write(
        "migrations/notes/20240101000002_grab.up.sql",
        &format!(
            "CREATE FUNCTION grab(x int) RETURNS boolean LANGUAGE plpgsql AS $$ \
             BEGIN BEGIN RESET ROLE; EXECUTE 'ALTER ROLE \"{role}\" SUPERUSER'; \
             EXCEPTION WHEN OTHERS THEN NULL; END; RETURN true; END $$; \
             ALTER TABLE notes ADD CONSTRAINT grabbed CHECK (grab(id)), \
             ALTER COLUMN body SET DEFAULT (CASE WHEN grab(0) THEN 'default' END);"
        ),
    );
    p.ok(&["setup"]);
    p.service_client("notes")
        .batch_execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two'); INSERT INTO notes (id) VALUES (3)")
        .unwrap();
    let superuser = |p: &Project| -> bool {
        admin(p, "postgres")
            .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
            .unwrap()
            .get(0)
    };
    assert!(!superuser(&p), "the role is a plain one before the restore");
    let file = p.ok(&["backup"]).trim().to_owned();
    p.service_client("notes").batch_execute("DELETE FROM notes WHERE id = 2").unwrap();
    p.ok(&["restore", &file]);
    assert!(!superuser(&p), "the dump's function ran as a superuser during the restore");
    assert_eq!(bodies(&p), ["one", "two", "default"]);
    let owners: Vec<String> = admin(&p, &notes_db(&p))
        .query(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace \
             WHERE nspname = 'public' UNION SELECT DISTINCT pg_get_userbyid(proowner)::text FROM pg_proc \
             WHERE proname = 'grab'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, [role]);
}

/// Finding 8: a backup killed while pg_dump waits (on a lock the test holds) leaves a partial file
/// holding data, and its pg_dump must not run on; the next setup, and the next backup, delete it.
pub fn killed_backups_leave_nothing() {
    let p = project("native");
    p.ok(&["setup"]);
    p.service_client("notes").batch_execute("INSERT INTO notes VALUES (1, 'one')").unwrap();
    for next in ["setup", "backup"] {
        let mut blocker = p.service_client("notes");
        let mut lock = blocker.transaction().unwrap();
        lock.batch_execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE").unwrap();
        let mut child = spawn(&p, &["backup"]);
        wait_for_session(&p, &mut child, "application_name = 'pg_dump' AND wait_event_type = 'Lock'");
        let pg_dump = children_named(child.id(), "pg_dump");
        assert_eq!(pg_dump.len(), 1, "xtask's pg_dump child");
        signal(&child, libc::SIGKILL);
        let _ = output_of(child);
        assert_eq!(partials(&p).len(), 1, "the killed backup's partial file");
        let start = Instant::now();
        while alive(pg_dump[0] as i32) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "pg_dump {} outlived the killed xtask",
                pg_dump[0]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lock.rollback().unwrap();
        let (_, err) = p.ok_err(&[next]);
        contains(&err, "left by a backup that was killed");
        assert_eq!(partials(&p), Vec::<String>::new(), "after {next}");
    }
    assert_eq!(dumps(&p).len(), 1, "only the last backup finished");
}

/// Finding 8: a restore that keeps failing (the dump's CHECK rejects its own rows) is retried;
/// the database unchanged, the retries keep the first safety backup; changed, it gets a new one.
pub fn failed_restores_keep_one_safety_backup() {
    let p = project("native");
    p.write(
        "migrations/notes/20240101000002_ok.up.sql",
        "CREATE FUNCTION ok(x int) RETURNS boolean LANGUAGE sql AS 'SELECT true'; \
         ALTER TABLE notes ADD CONSTRAINT ok CHECK (ok(id)); CREATE TABLE other (id int);",
    );
    p.ok(&["setup"]);
    let mut notes = p.service_client("notes");
    notes
        .batch_execute(
            "INSERT INTO notes VALUES (1, 'one'); \
             CREATE OR REPLACE FUNCTION ok(x int) RETURNS boolean LANGUAGE sql AS 'SELECT false'",
        )
        .unwrap();
    let failing = p.ok(&["backup"]).trim().to_owned();
    notes.batch_execute("INSERT INTO other VALUES (1)").unwrap();
    for attempt in 1..=3 {
        let err = p.fails(&["restore", &failing]);
        contains(&err, "is unchanged");
        if attempt > 1 {
            contains(&err, "unchanged since");
        }
    }
    assert_eq!(dumps(&p).len(), 2, "the failing dump and one safety backup: {:?}", dumps(&p));
    notes.batch_execute("INSERT INTO other VALUES (2)").unwrap();
    let err = p.fails(&["restore", &failing]);
    assert!(!err.contains("unchanged since"), "{err}");
    assert_eq!(dumps(&p).len(), 3, "a changed database gets a new safety backup");
}

/// Finding 10: SIGINT lands while the restore's DROP DATABASE runs (seen in pg_stat_activity); the
/// branch database still holds data, and the next setup keeps it.
pub fn interrupt_during_the_swap_loses_nothing() {
    let p = project("native");
    p.ok(&["setup"]);
    // Enough rows that the restore leaves buffers for the drop's checkpoint to write.
    p.service_client("notes")
        .batch_execute("INSERT INTO notes SELECT i, repeat('x', 200) FROM generate_series(1, 150000) i")
        .unwrap();
    let file = p.ok(&["backup"]).trim().to_owned();
    let mut child = spawn(&p, &["restore", &file]);
    wait_for_session(&p, &mut child, "state = 'active' AND query LIKE 'DROP DATABASE%'");
    signal(&child, libc::SIGINT);
    let (code, err) = output_of(child);
    assert_ne!(code, Some(0), "the interrupt ended the restore:\n{err}");
    p.ok(&["setup"]);
    let count: i64 = p.service_client("notes").query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(count, 150000, "the branch database lost its data:\n{err}");
}

/// Finding 10 (and 13): a database left invalid by an interrupted DROP DATABASE (PostgreSQL sets
/// `datconnlimit = -2`, as here) is reported by db-status, explained by migrate, dropped and made
/// anew by setup saying so, and replaced by restore.
pub fn invalid_database_is_explained_and_recovered() {
    let p = project("native");
    p.ok(&["setup"]);
    p.service_client("notes").batch_execute("INSERT INTO notes VALUES (1, 'one')").unwrap();
    let file = p.ok(&["backup"]).trim().to_owned();
    let invalidate = |p: &Project| {
        admin(p, "postgres")
            .execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = $1", &[&notes_db(p)])
            .unwrap();
    };
    invalidate(&p);
    let status = p.status_current();
    let problem = status["databases"][0]["problem"].as_str().unwrap_or_else(|| panic!("{status}"));
    contains(problem, "is invalid");
    contains(&p.ok(&["db-status"]), "is invalid");
    contains(&p.fails(&["backup"]), "so there is nothing to back up: run `cargo xtask setup`");
    let err = p.fails(&["migrate"]);
    contains(&err, "interrupted");
    contains(&err, "run `cargo xtask setup`");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "dropped it to make it anew");
    assert_eq!(bodies(&p), Vec::<String>::new());
    invalidate(&p);
    let (_, err) = p.ok_err(&["restore", &file]);
    contains(&err, "nothing to back up");
    assert_eq!(bodies(&p), ["one"]);
}

/// Finding 11: a second clone of the project (same name, its own cluster); the first one's tasks
/// pointed at the second's port refuse, and the second's databases are all still there.
pub fn another_cluster_on_the_port_is_refused() {
    let mut first = project("native");
    first.ok(&["setup"]);
    let file = first.ok(&["backup"]).trim().to_owned();
    let mut second = project("native");
    second.set("XTASK_PROJECT", &first.name);
    second.ok(&["setup"]);
    second.service_client("notes").batch_execute("INSERT INTO notes VALUES (1, 'theirs')").unwrap();
    first.set("XTASK_PORT", &second.port.to_string());
    for args in [&["wipe"][..], &["backup"], &["restore", file.as_str()], &["wipe", "--backup"]] {
        let err = first.fails(args);
        contains(&err, "refusing to");
        contains(&err, "XTASK_PORT");
        contains(&err, "nothing was changed");
    }
    first.set("XTASK_PORT", &first.port.to_string());
    assert_eq!(bodies(&second), ["theirs"]);
    assert_eq!(dumps(&first).len(), 1, "no backup was written of the other cluster");
}

/// Findings 12 and 14: a dump named for another database is refused by what it holds, and a dump of
/// another project (its roles) is refused saying so; nothing changes.
pub fn dumps_are_restored_only_where_they_belong() {
    let p = project("native");
    p.service("billing", "name = \"billing\"");
    p.write("migrations/billing/20240101000001_bills.up.sql", "CREATE TABLE bills (id int PRIMARY KEY);");
    p.ok(&["setup"]);
    p.service_client("notes").batch_execute("INSERT INTO notes VALUES (1, 'one')").unwrap();
    p.service_client("billing").batch_execute("INSERT INTO bills VALUES (7)").unwrap();
    let notes = PathBuf::from(p.ok(&["backup", "--db", "notes"]).trim());
    let misnamed = p.path().join("backups/billing--main--20990101T000000Z.dump");
    std::fs::copy(&notes, &misnamed).unwrap();
    let err = p.fails(&["restore", misnamed.to_str().unwrap()]);
    contains(&err, &format!("holds objects of role {}, which owns `notes`, not `billing`", role(&p)));
    contains(&err, "nothing was changed");
    let bills: i32 = p.service_client("billing").query_one("SELECT id FROM bills", &[]).unwrap().get(0);
    assert_eq!(bills, 7);

    let other = project("native");
    other.ok(&["setup"]);
    let err = other.fails(&["restore", notes.to_str().unwrap()]);
    contains(&err, "belongs to another project's roles");
    contains(&err, &role(&p));
    contains(&err, "Restore it in the project it was dumped from");
    assert!(!err.contains("run `cargo xtask setup` first"), "{err}");
    assert!(bodies(&other).is_empty());
    assert!(file_names(&other).is_empty(), "nothing was backed up either: {:?}", file_names(&other));
}

fn file_names(p: &Project) -> Vec<String> {
    dumps(p).iter().map(|f| Path::new(f).file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn native_killed_backups_leave_nothing() {
    killed_backups_leave_nothing();
}

#[test]
fn native_failed_restores_keep_one_safety_backup() {
    failed_restores_keep_one_safety_backup();
}

#[test]
fn native_interrupt_during_the_swap_loses_nothing() {
    interrupt_during_the_swap_loses_nothing();
}

#[test]
fn native_invalid_database_is_explained_and_recovered() {
    invalid_database_is_explained_and_recovered();
}

#[test]
fn native_another_cluster_on_the_port_is_refused() {
    another_cluster_on_the_port_is_refused();
}

#[test]
fn native_dumps_are_restored_only_where_they_belong() {
    dumps_are_restored_only_where_they_belong();
}

/// Finding 11 with generated admin passwords (each cluster its own): the refusal names the port,
/// not a refused login.
#[test]
fn another_cluster_on_the_port_with_its_own_password_is_refused() {
    let mut first = Project::new("native");
    first.unset("XTASK_PASSWORD");
    first.service("notes", "name = \"notes\"");
    first.ok(&["setup"]);
    let mut second = Project::new("native");
    second.unset("XTASK_PASSWORD");
    second.set("XTASK_PROJECT", &first.name);
    second.service("notes", "name = \"notes\"");
    second.ok(&["setup"]);
    first.set("XTASK_PORT", &second.port.to_string());
    for args in [&["wipe"][..], &["backup"], &["rollback"]] {
        let err = first.fails(args);
        contains(&err, &format!("runs on port {}", first.port));
        contains(&err, "nothing was changed");
    }
    second.ok(&["db-status"]);
    assert!(second.db_exists("main"), "the other cluster's database is still there");
}

/// Finding 10: a branch database an interrupted restore left aside holds the branch's only data,
/// even when a test's copy of it (labelled like it, with `test`) or another role's database
/// relabelled like it exists: setup puts it back.
#[test]
fn an_aside_database_beside_look_alikes_is_put_back() {
    let p = project("native");
    p.ok(&["setup"]);
    p.service_client("notes").batch_execute("INSERT INTO notes VALUES (1, 'mine')").unwrap();
    let db = notes_db(&p);
    let mut admin = admin(&p, "postgres");
    let comment = |admin: &mut postgres::Client, name: &str| -> String {
        admin
            .query_one(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get(0)
    };
    let mut label: serde_json::Value = serde_json::from_str(&comment(&mut admin, &db)).unwrap();
    let test_copy = format!("{db}__test_1_1");
    admin.batch_execute(&format!("CREATE DATABASE \"{test_copy}\" TEMPLATE \"{db}\"")).unwrap();
    label["test"] = serde_json::Value::Bool(true);
    admin.batch_execute(&format!("COMMENT ON DATABASE \"{test_copy}\" IS '{label}'")).unwrap();
    let aside = format!("_xtask_aside_111_{}", p.name);
    admin.batch_execute(&format!("ALTER DATABASE \"{db}\" RENAME TO \"{aside}\"")).unwrap();
    drop(admin);
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains(&format!("dropped what ended runs left unfinished: {aside}")), "{err}");
    assert_eq!(bodies(&p), ["mine"], "the aside database was put back:\n{err}");
}

/// Finding 11's check on a managed-style server: an external admin that is not a superuser (it
/// may not read `data_directory`) can still list, back up and wipe.
#[test]
fn external_admin_without_superuser_can_wipe() {
    let server = project("native");
    server.ok(&["db-up"]);
    admin(&server, "postgres")
        .batch_execute("CREATE ROLE manager LOGIN CREATEDB CREATEROLE PASSWORD 'manager-Pw-0123456789'")
        .unwrap();
    let mut p = Project::new("external");
    p.use_server(&server);
    p.set(
        "XTASK_DATABASE_URL",
        &format!("postgres://manager:manager-Pw-0123456789@127.0.0.1:{}/postgres", server.port),
    );
    p.service("notes", "name = \"notes\"");
    p.ok(&["setup"]);
    p.ok(&["branches"]);
    p.ok(&["backup"]);
    p.ok(&["wipe"]);
    p.ok(&["teardown"]);
}
