//! sqlx-cli compatibility (issue 19): file names as sqlx reads them, files with their own
//! BEGIN/COMMIT, `-- no-transaction` files sqlx cannot apply, the session settings, failures located
//! without a second run, and a rollback that stops part-way.
//! Each behaviour is checked against real sqlx (its `Migrator`) on the same server.

use std::process::Output;

use postgres::Client;

use crate::harness::{Project, contains};

/// A `Migrator` over this project's migration folder, as `sqlx::migrate!()` or sqlx-cli read it.
fn sqlx_migrator(p: &Project) -> sqlx::migrate::Migrator {
    let dir = p.path().join("migrations").join(&p.name);
    runtime().block_on(sqlx::migrate::Migrator::new(dir)).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// sqlx applies the folder to the database at `url`; its error, if any.
fn sqlx_run(p: &Project, url: &str) -> Result<(), String> {
    let migrator = sqlx_migrator(p);
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let ran = migrator.run(&pool).await.map_err(|e| format!("{e:?}"));
        pool.close().await;
        ran
    })
}

/// A database of sqlx's own beside the project's, on the same server (the admin owns it).
fn sqlx_database(p: &Project, name: &str) -> String {
    p.admin().batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
    p.admin_url(name)
}

/// `_sqlx_migrations` as sqlx compares it: version, description, success, checksum.
fn records(client: &mut Client) -> Vec<(i64, String, bool, Vec<u8>)> {
    let rows = client
        .query("SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version", &[])
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

fn connect(url: &str) -> Client {
    Client::connect(url, postgres::NoTls).unwrap()
}

fn exists(client: &mut Client, table: &str) -> bool {
    client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).unwrap().get(0)
}

fn write(p: &Project, name: &str, sql: &str) {
    p.write(&format!("migrations/{}/{name}", p.name), sql);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every odd name sqlx-cli accepts: version 0 and +2, dots, an empty description, a plain up beside
/// its down, and a stray `notes.sql` sqlx ignores. sqlx applies them and the tool takes over; the
/// tool applies them and sqlx takes over, with identical records; each reverts the other's.
pub fn odd_names_are_taken_over_both_ways(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    for (name, sql) in [
        ("0_setup.sql", "CREATE TABLE zero (id int);"),
        ("+2_plus.sql", "CREATE TABLE plus (id int);"),
        ("3_with.dots.v2.sql", "CREATE TABLE dots (id int);"),
        ("4_release_status_view.sql.up.sql", "CREATE VIEW release_status AS SELECT 1 AS one;"),
        ("4_release_status_view.sql.down.sql", "DROP VIEW release_status;"),
        ("5_.sql", "CREATE TABLE empty_description (id int);"),
        ("6_a.sql", "CREATE TABLE a (id int);"),
        ("6_a.down.sql", "DROP TABLE a;"),
        ("notes.sql", "these are notes, not SQL"),
    ] {
        write(&p, name, sql);
    }
    sqlx_run(&p, &p.endpoint("main")).unwrap();
    let (out, err) = p.ok_err(&["migrate", "--check"]);
    assert!(out.is_empty() && err.is_empty(), "{out}{err}");
    let listed = p.ok(&["migrations"]);
    for shown in ["with.dots.v2", "release status view.sql", "plus"] {
        contains(&listed, shown);
    }
    let mut main = p.client("main");
    let descriptions: Vec<String> = records(&mut main).into_iter().map(|r| r.1).collect();
    assert_eq!(descriptions, ["setup", "plus", "with.dots.v2", "release status view.sql", "", "a"]);

    let other = p.command(&["setup"]).env("XTASK_BRANCH", "other").output().unwrap();
    assert!(other.status.success(), "{}", stderr(&other));
    let other_url = p.endpoint("other");
    sqlx_run(&p, &other_url).unwrap();
    let mut tool = connect(&other_url);
    assert_eq!(records(&mut tool), records(&mut main), "identical records");

    // The tool reverts what sqlx applied with the plain up's down file; sqlx what the tool applied.
    p.ok(&["rollback"]);
    assert!(!exists(&mut main, "a"));
    let migrator = sqlx_migrator(&p);
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&other_url).await.unwrap();
        migrator.undo(&pool, 5).await.unwrap();
        pool.close().await;
    });
    assert_eq!(records(&mut tool), records(&mut main), "reverted alike");
    let out = p.command(&["migrate", "--check"]).env("XTASK_BRANCH", "other").output().unwrap();
    contains(&stderr(&out), "6_a.sql");
}

const TUTORIAL: &str =
    "BEGIN;\nCREATE TABLE notes (id int PRIMARY KEY);\nINSERT INTO notes VALUES (1);\nCOMMIT;\n";

/// A file with its own BEGIN/COMMIT (a widely copied tutorial's pattern) is applied by sqlx; the tool
/// takes over a database sqlx migrated, applies the same file itself with one warning, records it
/// as sqlx does, and sqlx then takes over the tool's database. A failure after the file's COMMIT
/// leaves what sqlx leaves.
pub fn own_transaction_files_run_as_sqlx_runs_them(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    write(&p, "1_base.sql", "CREATE TABLE base (id int);");
    write(&p, "2_tutorial.sql", TUTORIAL);
    write(&p, "3_after.sql", "CREATE TABLE after (id int);");

    // sqlx first, on the branch database: the tool sees it all applied, refuses nothing.
    sqlx_run(&p, &p.endpoint("main")).unwrap();
    let (out, err) = p.ok_err(&["migrate", "--check"]);
    assert!(out.is_empty() && err.is_empty(), "{out}{err}");
    let listed = p.ok(&["migrations"]);
    contains(&listed, "tutorial");

    // The tool first, on a database of another branch: applied, one warning naming file and risk.
    let other = p.command(&["setup"]).env("XTASK_BRANCH", "other").output().unwrap();
    let err = stderr(&other);
    assert!(other.status.success(), "{err}");
    let warning = format!("warning: migrations/{}/2_tutorial.sql:1:1: `BEGIN`", p.name);
    assert_eq!(err.matches(&warning).count(), 1, "one warning:\n{err}");
    contains(&err, "what ran before that COMMIT stays applied without a record");
    let other_url = p.endpoint("other");
    let mut tool = connect(&other_url);
    assert!(exists(&mut tool, "notes") && exists(&mut tool, "after"));
    let count: i64 = tool.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(count, 1);
    // sqlx agrees: nothing to do (it would fail on a checksum it does not expect).
    sqlx_run(&p, &other_url).unwrap();
    assert_eq!(records(&mut tool), records(&mut p.client("main")), "identical records");

    // A statement after the file's own COMMIT fails: sqlx keeps what came before it and records
    // nothing; so does the tool, and it says so.
    write(&p, "4_half.sql", "BEGIN;\nCREATE TABLE half (id int);\nCOMMIT;\nSELECT 1/0;\n");
    let sqlx_url = sqlx_database(&p, &format!("{}_sqlx", p.name));
    let sqlx_error = sqlx_run(&p, &sqlx_url).unwrap_err();
    contains(&sqlx_error, "division by zero");
    let err = p.fails(&["migrate"]);
    contains(&err, &format!("migrations/{}/4_half.sql", p.name));
    contains(&err, "controls its own transaction (`BEGIN` on line 1)");
    contains(&err, "what ran before its COMMIT may have stayed applied, and nothing was recorded");
    contains(&err, "division by zero");
    let mut main = p.client("main");
    let mut sqlx_side = connect(&sqlx_url);
    for client in [&mut main, &mut sqlx_side] {
        assert!(exists(client, "half"), "kept as sqlx keeps it");
        assert_eq!(records(client).iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    }
}

/// `-- no-transaction` with two `CREATE INDEX CONCURRENTLY`: the tool applies it (one statement at a
/// time) and warns that sqlx cannot; sqlx indeed fails on it.
pub fn no_transaction_files_sqlx_cannot_apply_are_warned_about(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    write(&p, "1_items.sql", "CREATE TABLE items (a int, b int);");
    let two = "-- no-transaction\nCREATE INDEX CONCURRENTLY items_a ON items (a);\n\
               CREATE INDEX CONCURRENTLY items_b ON items (b);\n";
    write(&p, "2_indexes.sql", two);
    let (_, err) = p.ok_err(&["migrate"]);
    contains(&err, &format!("warning: migrations/{}/2_indexes.sql:2:1: `CREATE INDEX CONCURRENTLY`", p.name));
    contains(&err, "sqlx fails on this file");
    contains(&err, "migration of its own, one statement per file");
    let mut main = p.client("main");
    let indexes: i64 =
        main.query_one("SELECT count(*) FROM pg_indexes WHERE tablename = 'items'", &[]).unwrap().get(0);
    assert_eq!(indexes, 2);
    let sqlx_url = sqlx_database(&p, &format!("{}_sqlx", p.name));
    contains(&sqlx_run(&p, &sqlx_url).unwrap_err(), "cannot run inside a transaction block");
}

/// Migrations run under sqlx's session settings, not the database's or the developer's: under a
/// New York database with day-first dates, the same file stores the same data as sqlx stores.
pub fn session_settings_are_sqlx_s(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    let sqlx_url = sqlx_database(&p, &format!("{}_sqlx", p.name));
    let main_name: String = p.client("main").query_one("SELECT current_database()", &[]).unwrap().get(0);
    for db in [main_name.as_str(), &format!("{}_sqlx", p.name)] {
        p.admin()
            .batch_execute(&format!(
                "ALTER DATABASE \"{db}\" SET timezone = 'America/New_York'; \
                 ALTER DATABASE \"{db}\" SET datestyle = 'SQL, DMY'"
            ))
            .unwrap();
    }
    write(
        &p,
        "1_dates.sql",
        "CREATE TABLE dates (at timestamptz DEFAULT '2020-01-01 00:00', day date DEFAULT '01/02/2020', \
         local timestamp);\nINSERT INTO dates (local) VALUES ('2020-06-01 12:00'::timestamptz::timestamp);\n",
    );
    // And a developer in another time zone (the native engine's server inherits it on first start).
    let out = p.command(&["migrate"]).env("TZ", "Europe/Berlin").env("PGTZ", "Asia/Tokyo").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    sqlx_run(&p, &sqlx_url).unwrap();
    let read = "SELECT extract(epoch FROM at)::bigint, day::text, local::text FROM dates";
    let tool: (i64, String, String) = {
        let row = connect(&p.admin_url(&main_name)).query_one(read, &[]).unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let sqlx: (i64, String, String) = {
        let row = connect(&sqlx_url).query_one(read, &[]).unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(tool, sqlx, "the same file stores the same data");
    // sqlx's settings: UTC midnight, month first.
    assert_eq!(tool.0, 1_577_836_800);
    contains(&tool.1, "02/01/2020");
}

/// A migration that fails at run time is reported at its statement's line without being run twice
/// (a sequence, which no rollback resets, counts the runs); a `-- no-transaction` on line 2 is
/// reported at the statement that failed, with where the directive must go.
pub fn failures_are_located_without_a_second_run(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    write(&p, "1_runs.sql", "CREATE SEQUENCE runs;\nCREATE TABLE y (id int);");
    p.ok(&["migrate"]);
    write(
        &p,
        "2_fails.sql",
        "SELECT nextval('runs');\nCREATE TABLE x (id int);\n-- the failing one\nINSERT INTO x VALUES (1 / 0);\n",
    );
    let err = p.fails(&["migrate"]);
    contains(&err, &format!("migrations/{}/2_fails.sql:4:1: ERROR: division by zero", p.name));
    contains(&err, "4 | INSERT INTO x VALUES (1 / 0);");
    let mut main = p.client("main");
    let runs: i64 = main.query_one("SELECT last_value FROM runs", &[]).unwrap().get(0);
    assert_eq!(runs, 1, "the migration ran once");
    assert!(!exists(&mut main, "x"), "rolled back");
    std::fs::remove_file(p.path().join(format!("migrations/{}/2_fails.sql", p.name))).unwrap();

    write(
        &p,
        "2_index.sql",
        "-- an index without a lock\n-- no-transaction\n\nCREATE INDEX CONCURRENTLY r ON y (id);\n",
    );
    let err = p.fails(&["migrate"]);
    contains(
        &err,
        &format!(
            "migrations/{}/2_index.sql:4:1: ERROR: CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
            p.name
        ),
    );
    contains(&err, "`-- no-transaction` is on line 2, but it counts only as the very first line");
    // sqlx reads the directive the same way: it fails on this file too.
    let sqlx_url = sqlx_database(&p, &format!("{}_sqlx", p.name));
    contains(&sqlx_run(&p, &sqlx_url).unwrap_err(), "cannot run inside a transaction block");
}

/// `rollback --steps 3` whose second down fails: the first stays rolled back, and the message says
/// which steps were undone, which failed and which were not attempted.
pub fn rollback_that_stops_part_way_says_what_stayed(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    for (version, table) in [(1, "one"), (2, "two"), (3, "three")] {
        write(&p, &format!("{version}_{table}.up.sql"), &format!("CREATE TABLE {table} (id int);"));
        let down = if version == 2 {
            "DROP TABLE two;\nSELECT 1 / 0;".into()
        } else {
            format!("DROP TABLE {table};")
        };
        write(&p, &format!("{version}_{table}.down.sql"), &down);
    }
    p.ok(&["migrate"]);
    let err = p.fails(&["rollback", "--steps", "3"]);
    contains(&err, "stopped at step 2 of 3: 1 step(s) before it stay rolled back (version(s) 3");
    contains(&err, "version 2 and those before it are still applied (not attempted: 1)");
    contains(&err, &format!("migrations/{}/2_two.down.sql:2:1: ERROR: division by zero", p.name));
    let mut main = p.client("main");
    assert_eq!(records(&mut main).iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
    assert!(!exists(&mut main, "three") && exists(&mut main, "two"));
}

/// pre-commit and ci refuse both kinds in new migrations, with the fix, and accept them in history.
#[test]
fn new_migrations_sqlx_runs_differently_fail_pre_commit_and_ci() {
    let p = Project::new("native");
    p.git(&["config", "user.email", "dev@example.com"]);
    p.git(&["config", "user.name", "Dev"]);
    p.write(".gitignore", "data/\ntarget/\n.env\n");
    p.ok(&["setup"]);
    write(&p, "1_tutorial.sql", TUTORIAL);
    p.git(&["add", "-A"]);
    let out = p.run(&["pre-commit", "--staged"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    contains(&err, &format!("new migration migrations/{}/1_tutorial.sql", p.name));
    contains(&err, "remove BEGIN/COMMIT");

    // Committed on main (as sqlx-cli users have it), it is history: accepted.
    p.git(&["commit", "--quiet", "--no-verify", "-m", "tutorial"]);
    p.git(&["checkout", "--quiet", "-b", "feature"]);
    write(
        &p,
        "2_indexes.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY n1 ON notes (id);\nDROP INDEX CONCURRENTLY n1;\n",
    );
    p.git(&["add", "-A"]);
    let out = p.run(&["pre-commit", "--staged"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    contains(
        &err,
        &format!(
            "new migration migrations/{}/2_indexes.sql: migrations/{}/2_indexes.sql:2:1: `CREATE INDEX CONCURRENTLY`",
            p.name, p.name
        ),
    );
    assert!(!err.contains("1_tutorial.sql:"), "history is not refused:\n{err}");

    let out = p.run(&["ci", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step =
        report["steps"].as_array().unwrap().iter().find(|s| s["name"] == "migrations").cloned().unwrap();
    assert_eq!(step["status"], "failed", "{report:#}");
    contains(step["detail"].as_str().unwrap(), "2_indexes.sql:2:1: `CREATE INDEX CONCURRENTLY`");
    assert!(!step["detail"].as_str().unwrap().contains("1_tutorial"), "{report:#}");
}
