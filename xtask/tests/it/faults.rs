//! Faults: xtask killed with SIGKILL in the middle of a migration, a seed, a template build and a
//! copy, and the server killed in the middle of `migrate`. After each, the next run finds a
//! consistent state (no half-applied migration, no half-made database under a real name, no stale
//! lock) and finishes the work.
//!
//! The slow step is a `SELECT pg_sleep(...)` inside a migration or seed whose length comes from a
//! role setting (`fault.sleep`) of the admin user: set while the run to be killed starts, reset
//! before the next run, so that run does not sleep. Each project has a server of its own, so the
//! setting reaches no other test.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Project, XTASK, contains};

/// Sleeps as long as the admin user's `fault.sleep` says, else not at all.
const SLEEP: &str =
    "SELECT pg_sleep(coalesce(nullif(current_setting('fault.sleep', true), ''), '0')::float8);";

/// `Database::name` of the default branch, and of the branch `feature`.
fn branch_db(p: &Project, branch: &str) -> String {
    if branch == "main" { p.name.clone() } else { format!("{}_{branch}", p.name) }
}

fn migration(p: &Project, version: u32, slug: &str, up: &str) {
    p.write(&format!("migrations/{}/20240101{version:06}_{slug}.up.sql", p.name), up);
}

/// Makes the admin user's next sessions sleep `seconds` at each `SLEEP` (0: not at all).
fn slow(p: &Project, seconds: u32) {
    let sql = match seconds {
        0 => "ALTER ROLE postgres RESET fault.sleep".to_owned(),
        s => format!("ALTER ROLE postgres SET fault.sleep = '{s}'"),
    };
    p.admin().batch_execute(&sql).unwrap();
}

/// Starts xtask with the project's settings, as `Project::run` does, without waiting for it.
fn spawn(p: &Project, args: &[&str]) -> Child {
    let mut command = Command::new(XTASK);
    command.args(args).current_dir(p.path()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        let ci_branch = ["GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"].contains(&key.as_str());
        if key.starts_with("XTASK_") || ci_branch {
            command.env_remove(key);
        }
    }
    command.envs(p.env.iter().map(|(k, v)| (k, v)));
    command.spawn().unwrap()
}

fn output_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until a session other than the test's shows up in `pg_stat_activity` matching `filter`
/// (a condition over its columns), and returns the database it is in. Fails when `child` ends
/// first or after a minute.
fn wait_for_session(p: &Project, child: &mut Child, filter: &str) -> String {
    let start = Instant::now();
    let mut admin = p.admin();
    let sql = format!(
        "SELECT datname::text FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND ({filter}) LIMIT 1"
    );
    loop {
        if let Some(row) = admin.query_opt(&sql, &[]).unwrap() {
            return row.get(0);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("xtask ended ({status}) before a session matched {filter}:\n{stderr}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no session matched {filter} within 60 s");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn sleeping_in(p: &Project, child: &mut Child) -> String {
    wait_for_session(p, child, "query LIKE '%pg_sleep%' AND state = 'active'")
}

/// SIGKILL, as an OOM killer or a closed CI job would; returns the pid it had.
fn kill_9(mut child: Child) -> u32 {
    let pid = child.id();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
    pid
}

/// Kills the server under its clients: `pg_ctl stop -m immediate` as the data directory's owner
/// (the native engine runs the server as `postgres` when run as root), or `docker kill`.
fn kill_server(p: &Project) {
    let out = match p.engine.as_str() {
        "native" => {
            let pgdata = p.data_dir().join("pgdata");
            let owner = std::fs::metadata(&pgdata).unwrap();
            let bin = std::fs::read_dir("/usr/lib/postgresql")
                .unwrap()
                .flatten()
                .map(|e| e.path().join("bin/pg_ctl"))
                .find(|pg_ctl| pg_ctl.exists())
                .expect("pg_ctl under /usr/lib/postgresql");
            Command::new(bin)
                .args(["stop", "-m", "immediate", "-D"])
                .arg(&pgdata)
                .current_dir("/")
                .uid(owner.uid())
                .gid(owner.gid())
                .output()
                .unwrap()
        }
        "docker" => Command::new("docker").args(["kill", &format!("{}-postgres", p.name)]).output().unwrap(),
        other => panic!("no server to kill for engine {other}"),
    };
    assert!(out.status.success(), "kill the server: {}", String::from_utf8_lossy(&out.stderr));
}

fn connect(p: &Project, db: &str) -> postgres::Client {
    postgres::Client::connect(&p.admin_url(db), postgres::NoTls).unwrap()
}

fn table_exists(client: &mut postgres::Client, table: &str) -> bool {
    let sql = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1";
    client.query_one(sql, &[&table]).unwrap().get::<_, i64>(0) == 1
}

fn column_exists(client: &mut postgres::Client, table: &str, column: &str) -> bool {
    let sql = "SELECT count(*) FROM information_schema.columns \
               WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2";
    client.query_one(sql, &[&table, &column]).unwrap().get::<_, i64>(0) == 1
}

fn recorded(client: &mut postgres::Client) -> Vec<i64> {
    let rows = client.query("SELECT version FROM _sqlx_migrations ORDER BY version", &[]).unwrap();
    rows.iter().map(|r| r.get::<_, i64>(0) - 20240101000000).collect()
}

/// What each of the three migrations of these tests leaves: a table, and for the slow one a
/// column added after the sleep.
const EFFECTS: [(i64, &str, Option<&str>); 3] =
    [(1, "one", None), (2, "two", Some("done")), (3, "three", None)];

/// The three migrations: `one` applied by setup, `two` slow, `three` quick.
fn slow_migration_pending(p: &Project) {
    migration(p, 1, "one", "CREATE TABLE one (id int PRIMARY KEY);");
    p.ok(&["setup"]);
    migration(
        p,
        2,
        "two",
        &format!("CREATE TABLE two (id int);\n{SLEEP}\nALTER TABLE two ADD COLUMN done int;"),
    );
    migration(p, 3, "three", "CREATE TABLE three (id int);");
}

/// Every recorded migration has all of its effect, every unrecorded one none of it; returns the
/// recorded ones.
fn assert_consistent(p: &Project, db: &str) -> Vec<i64> {
    let mut client = connect(p, db);
    let recorded = recorded(&mut client);
    for (version, table, column) in EFFECTS {
        let table_there = table_exists(&mut client, table);
        let column_there = column.is_none_or(|c| table_there && column_exists(&mut client, table, c));
        if recorded.contains(&version) {
            assert!(table_there && column_there, "migration {version} is recorded without its effect");
        } else {
            assert!(!table_there, "migration {version} is not recorded but table {table} exists");
        }
    }
    recorded
}

/// No session holds an advisory lock (the migration lock, the catalog lock) once no xtask runs:
/// the server ends a dead client's session, so nothing is left to wait for.
fn assert_no_locks(p: &Project) {
    let start = Instant::now();
    let mut admin = p.admin();
    loop {
        let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";
        let held: i64 = admin.query_one(sql, &[]).unwrap().get(0);
        if held == 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{held} advisory lock(s) still held 10 s on");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Databases still named as being made (`_xtask_new_<pid>_...`, see admin.rs `create_from`).
fn scratch_databases(p: &Project) -> Vec<String> {
    p.databases_on_server_all().into_iter().filter(|d| d.starts_with("_xtask_new_")).collect()
}

/// What a killed run may leave behind: only databases under its own scratch name, never one under
/// a real name.
fn assert_only_scratch_of(p: &Project, killed: u32) {
    for name in scratch_databases(p) {
        assert!(name.starts_with(&format!("_xtask_new_{killed}_")), "{name} is not the killed run's");
    }
}

/// After the next setup: what the killed run left is gone (setup sweeps dead runs' leftovers).
fn assert_swept(p: &Project) {
    assert_eq!(scratch_databases(p), Vec::<String>::new(), "the killed run's leftovers are swept");
}

/// xtask killed while a migration runs: the server rolls the migration back, the lock goes with
/// the session, and the next `migrate` applies it and the rest.
pub fn kill_during_migrate(engine: &str) {
    let p = Project::new(engine);
    slow_migration_pending(&p);
    let db = branch_db(&p, "main");
    slow(&p, 30);
    let mut child = spawn(&p, &["migrate"]);
    assert_eq!(sleeping_in(&p, &mut child), db);
    kill_9(child);
    slow(&p, 0);
    assert_eq!(assert_consistent(&p, &db)[0], 1);

    let (_, err) = p.ok_err(&["migrate"]);
    contains(&err, "migrate: applied 2 migration(s)");
    assert_eq!(assert_consistent(&p, &db), [1, 2, 3]);
    assert_no_locks(&p);
    let (_, err) = p.ok_err(&["migrate"]);
    contains(&err, "is up to date");
}

/// xtask killed while a seed runs: the seeds load in one transaction, so none stays, and the next
/// `seed` loads them once.
pub fn kill_during_seed(engine: &str) {
    let p = Project::new(engine);
    migration(&p, 1, "items", "CREATE TABLE items (id int PRIMARY KEY);");
    p.ok(&["setup"]);
    let db = branch_db(&p, "main");
    p.write(
        &format!("seeds/{}/01_items.sql", p.name),
        &format!("INSERT INTO items VALUES (1);\n{SLEEP}\nINSERT INTO items VALUES (2);"),
    );
    slow(&p, 30);
    let mut child = spawn(&p, &["seed"]);
    assert_eq!(sleeping_in(&p, &mut child), db);
    kill_9(child);
    slow(&p, 0);

    let (_, err) = p.ok_err(&["seed"]);
    contains(&err, "loaded 1 seed file(s)");
    let mut client = connect(&p, &db);
    let ids: Vec<i32> =
        client.query("SELECT id FROM items ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2], "the seed is loaded exactly once");
    let seeded: i64 = client.query_one("SELECT count(*) FROM _xtask_seeds", &[]).unwrap().get(0);
    assert_eq!(seeded, 1);
    assert_no_locks(&p);
}

/// xtask killed while `setup` builds a template (the slow migration runs in the database being
/// made): neither the template nor the branch database exists under its name, and the next setup
/// builds both.
pub fn kill_during_template_build(engine: &str) {
    let p = Project::new(engine);
    migration(&p, 1, "one", "CREATE TABLE one (id int PRIMARY KEY);");
    migration(
        &p,
        2,
        "two",
        &format!("CREATE TABLE two (id int);\n{SLEEP}\nALTER TABLE two ADD COLUMN done int;"),
    );
    migration(&p, 3, "three", "CREATE TABLE three (id int);");
    p.ok(&["db-up"]);
    slow(&p, 30);
    let mut child = spawn(&p, &["setup"]);
    let building = sleeping_in(&p, &mut child);
    assert!(building.starts_with("_xtask_new_"), "the template is built under a scratch name: {building}");
    let killed = kill_9(child);
    slow(&p, 0);
    assert_eq!(p.templates_on_server(), Vec::<String>::new(), "no template under its real name");
    assert_eq!(p.databases_on_server(), Vec::<String>::new(), "no branch database under its real name");
    assert_only_scratch_of(&p, killed);

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "built template");
    assert_eq!(p.templates_on_server().len(), 1);
    assert_eq!(assert_consistent(&p, &branch_db(&p, "main")), [1, 2, 3]);
    assert_swept(&p);
    assert_no_locks(&p);
}

/// The catalog-lock key of admin.rs: publishing a finished database (its rename) waits for it.
const CATALOG_LOCK_KEY: i64 = 0x7874_6173_6b5f_6462;

/// xtask killed after copying a branch database from its template and before giving it its name
/// (the test holds the lock publishing waits for): no database of the branch exists, and the next
/// setup makes it.
pub fn kill_during_copy(engine: &str) {
    let p = Project::new(engine);
    migration(&p, 1, "one", "CREATE TABLE one (id int PRIMARY KEY);");
    p.ok(&["setup"]);
    let feature = branch_db(&p, "feature");
    let mut holder = p.admin();
    holder.execute("SELECT pg_advisory_lock($1)", &[&CATALOG_LOCK_KEY]).unwrap();
    let mut child = spawn(&p, &["setup", "--branch", "feature"]);
    // Lock waits poll: the one-key try in the maintenance database is the catalog lock's.
    let polling = "datname = 'postgres' AND query = 'SELECT pg_catalog.pg_try_advisory_lock($1)'";
    wait_for_session(&p, &mut child, polling);
    let copies = scratch_databases(&p);
    assert_eq!(copies.len(), 1, "the copy is made under a scratch name: {copies:?}");
    let killed = kill_9(child);
    holder.execute("SELECT pg_advisory_unlock($1)", &[&CATALOG_LOCK_KEY]).unwrap();
    drop(holder);
    assert!(!p.databases_on_server().contains(&feature), "no copy under the branch's name");
    assert_only_scratch_of(&p, killed);

    let (_, err) = p.ok_err(&["setup", "--branch", "feature"]);
    contains(&err, &format!("created database {feature} as a copy of"));
    let mut client = connect(&p, &feature);
    assert!(table_exists(&mut client, "one"));
    let label: String = p
        .admin()
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&feature],
        )
        .unwrap()
        .get(0);
    contains(&label, "\"branch\":\"feature\"");
    assert_swept(&p);
    assert_no_locks(&p);
}

/// The server killed while `migrate` runs a migration: the error says the server went away and
/// how to come back; nothing is recorded without its effect; after `db-up`, `migrate` finishes.
pub fn server_killed_during_migrate(engine: &str) {
    let p = Project::new(engine);
    slow_migration_pending(&p);
    let db = branch_db(&p, "main");
    slow(&p, 30);
    let mut child = spawn(&p, &["migrate"]);
    assert_eq!(sleeping_in(&p, &mut child), db);
    kill_server(&p);
    let out = wait_bounded(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    contains(&stderr, "the server went away while migrating");
    contains(&stderr, "`cargo xtask db-up`, then run `cargo xtask migrate` again");
    contains(&stderr, "20240101000002_two.up.sql");

    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "started");
    slow(&p, 0);
    assert_eq!(assert_consistent(&p, &db), [1], "the interrupted migration left nothing");
    p.ok(&["migrate"]);
    assert_eq!(assert_consistent(&p, &db), [1, 2, 3]);
    assert_no_locks(&p);
}

/// The child's output once it ends; a child still running after `limit` is killed and fails the
/// test (a client must not hang on a server that went away).
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("xtask still ran {} s after the server went away:\n{}", limit.as_secs(), output_of(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// xtask killed while the server copies a template into a new branch database (`CREATE DATABASE
/// ... TEMPLATE`, made slow by a template of some 100 MB): the copy finishes or not under its
/// scratch name, never under the branch's, and the next setup makes the branch's database.
pub fn kill_during_template_copy(engine: &str) {
    let p = Project::new(engine);
    migration(&p, 1, "big", "CREATE TABLE big (id int PRIMARY KEY, filler text NOT NULL);");
    p.write(
        &format!("seeds/{}/01_big.sql", p.name),
        "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g;",
    );
    p.ok(&["setup"]);
    let feature = branch_db(&p, "feature");
    let mut child = spawn(&p, &["setup", "--branch", "feature"]);
    let copying = "query LIKE 'CREATE DATABASE%TEMPLATE%' AND state = 'active'";
    wait_for_session(&p, &mut child, copying);
    let killed = kill_9(child);
    assert!(!p.databases_on_server().contains(&feature), "no copy under the branch's name");
    assert_only_scratch_of(&p, killed);

    let (_, err) = p.ok_err(&["setup", "--branch", "feature"]);
    contains(&err, &format!("created database {feature} as a copy of"));
    let rows: i64 = connect(&p, &feature).query_one("SELECT count(*) FROM big", &[]).unwrap().get(0);
    assert_eq!(rows, 400000);
    // The killed run's CREATE DATABASE may still be finishing on the server (a long copy notices its
    // client is gone only at its next check): what it leaves goes with the first setup after it ends.
    let started = std::time::Instant::now();
    while !scratch_databases(&p).is_empty() && started.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        p.ok(&["setup", "--branch", "feature"]);
    }
    assert_swept(&p);
    assert_no_locks(&p);
}

mod long {
    #[test]
    #[ignore = "long: cargo xtask ci --long runs it"]
    fn native_kill_during_template_copy() {
        super::kill_during_template_copy("native")
    }

    #[test]
    #[ignore = "long: cargo xtask ci --long runs it"]
    fn docker_kill_during_template_copy() {
        super::kill_during_template_copy("docker")
    }
}
