//! Load: many worktrees setting up at once, many migrate runs on one database, and what ended runs
//! leave behind. Every run must exit 0 and every database must end identical to a serial run's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{Project, contains};
use crate::services::two_services;

/// Schema (columns, constraints, indexes) and every row of every table but the migration record's
/// timings, as one text: two databases with the same fingerprint hold the same thing.
const FINGERPRINT: &str = r"
    SELECT concat_ws(E'\n',
      (SELECT string_agg(format('%s.%s %s %s', table_name, column_name, data_type, is_nullable), ','
                         ORDER BY table_name, column_name)
       FROM information_schema.columns WHERE table_schema = 'public'),
      (SELECT string_agg(format('%s %s', conname, pg_get_constraintdef(oid)), ',' ORDER BY conname)
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace),
      (SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes WHERE schemaname = 'public'),
      (SELECT string_agg(t, ',' ORDER BY t) FROM (
         SELECT format('%s: %s', c.relname, (xpath('/row/r/text()', query_to_xml(format(
           'SELECT string_agg(x::text, %L ORDER BY x::text) AS r FROM (SELECT * FROM public.%I) x',
           ';', c.relname), false, true, '')))[1]::text) AS t
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
           AND c.relname <> '_sqlx_migrations') tables),
      (SELECT string_agg(version || ' ' || encode(checksum, 'hex') || ' ' || success, ',' ORDER BY version)
       FROM _sqlx_migrations))";

fn fingerprint(p: &Project, database: &str) -> String {
    let mut client = postgres::Client::connect(&p.admin_url(database), postgres::NoTls).unwrap();
    client.query_one(FINGERPRINT, &[]).unwrap().get(0)
}

fn spawn_in(p: &Project, dir: &Path, args: &[&str]) -> std::process::Child {
    let mut command = Command::new(crate::harness::XTASK);
    command.args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("XTASK_") {
            command.env_remove(key);
        }
    }
    command.envs(p.env.iter().map(|(k, v)| (k, v)));
    command.spawn().unwrap()
}

fn all_succeed(children: Vec<std::process::Child>, what: &str) {
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

/// 8 worktrees (8 branches) run `setup` at once against one server, 3 times over (their databases
/// wiped in between, so each round creates them again); then 16 `migrate` runs at once on one
/// database. Each database ends identical to one made by a serial run.
#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn eight_worktrees_three_rounds_and_sixteen_migrates() {
    let p = two_services("native");
    p.git(&["add", "-A"]);
    p.git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "services"]);
    let trees = tempfile::tempdir().unwrap();
    let worktrees: Vec<(String, PathBuf)> = (0..8)
        .map(|n| {
            let branch = format!("load/w{n}");
            let dir = trees.path().join(format!("w{n}"));
            p.git(&["worktree", "add", "--quiet", "-b", &branch, dir.to_str().unwrap()]);
            (branch, dir)
        })
        .collect();
    // The serial reference: one branch set up alone.
    p.ok(&["setup", "--branch", "serial"]);
    let reference: Vec<String> =
        ["accounts", "notes"].iter().map(|db| fingerprint(&p, &format!("{}_{db}_serial", p.name))).collect();

    for round in 0..3 {
        if round > 0 {
            for (_, dir) in &worktrees {
                all_succeed(vec![spawn_in(&p, dir, &["wipe"])], "wipe");
            }
        }
        let children = worktrees.iter().map(|(_, dir)| spawn_in(&p, dir, &["setup"])).collect();
        all_succeed(children, &format!("round {round}: setup"));
        for (branch, _) in &worktrees {
            for (db, expected) in ["accounts", "notes"].iter().zip(&reference) {
                let name = p.ok(&["db-endpoint", "--db", db, "--branch", branch]);
                let name = name.trim().rsplit_once('/').unwrap().1.to_owned();
                assert_eq!(
                    &fingerprint(&p, &name),
                    expected,
                    "round {round}: {name} differs from the serial run"
                );
            }
        }
    }
    assert_eq!(p.databases_on_server().len(), 2 * 9, "{:?}", p.databases_on_server());

    // 16 migrate runs at once on one database, against one serial run on another.
    for n in 2..=21 {
        p.write(
            &format!("migrations/accounts/2024010100{n:04}_t{n}.up.sql"),
            &format!("CREATE TABLE t{n} (id int PRIMARY KEY); INSERT INTO t{n} VALUES ({n}); SELECT pg_sleep(0.01);"),
        );
    }
    let (first, dir) = &worktrees[0];
    // The worktree's files are its own: give it the same migrations.
    for n in 2..=21 {
        let name = format!("migrations/accounts/2024010100{n:04}_t{n}.up.sql");
        std::fs::copy(p.path().join(&name), dir.join(&name)).unwrap();
    }
    let children = (0..16).map(|_| spawn_in(&p, dir, &["migrate", "--db", "accounts"])).collect();
    all_succeed(children, "parallel migrate");
    p.ok(&["migrate", "--db", "accounts", "--branch", "serial"]);
    let parallel_db = p.ok(&["db-endpoint", "--db", "accounts", "--branch", first]);
    let parallel_db = parallel_db.trim().rsplit_once('/').unwrap().1.to_owned();
    assert_eq!(fingerprint(&p, &parallel_db), fingerprint(&p, &format!("{}_accounts_serial", p.name)));
    let mut client = postgres::Client::connect(&p.admin_url(&parallel_db), postgres::NoTls).unwrap();
    let recorded: i64 = client.query_one("SELECT count(*) FROM _sqlx_migrations", &[]).unwrap().get(0);
    assert_eq!(recorded, 21, "each migration recorded once");
}

/// What a killed run leaves (a database still under its `_xtask_` scratch name) is dropped by the
/// next setup; one that somebody is connected to, or whose maker still runs, stays.
pub fn leftovers_of_ended_runs_are_swept(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    let mut admin = p.admin();
    // Labelled as a killed run of this project leaves them; the unlabelled one is nobody's to drop.
    let label = format!(
        r#"{{"tool":"xtask","project":"{}","database":"{}","branch":"","created":"2026-01-01T00:00:00Z"}}"#,
        p.name, p.name
    );
    for name in [
        "_xtask_new_999999_dead_0001",
        "_xtask_roundtrip_999999_0_dead",
        "_xtask_busy_1",
        "_xtask_unlabelled",
    ] {
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
        if name != "_xtask_unlabelled" {
            admin.batch_execute(&format!("COMMENT ON DATABASE \"{name}\" IS '{label}'")).unwrap();
        }
    }
    // Killed during its CREATE DATABASE, a run leaves its database unlabelled: its name says whose.
    let hash: String = admin
        .query_one("SELECT left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 8)", &[&p.name])
        .unwrap()
        .get(0);
    let unlabelled_ours = format!("_xtask_new_999998_{hash}_0badf00d");
    admin.batch_execute(&format!("CREATE DATABASE \"{unlabelled_ours}\"")).unwrap();
    // prune leaves them to setup: it never lists a database in the making or a throwaway one.
    let (_, err) = p.ok_err(&["prune", "--dry-run"]);
    assert!(!err.contains("_xtask_"), "{err}");
    let busy = postgres::Client::connect(&p.admin_url("_xtask_busy_1"), postgres::NoTls).unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    contains(
        &err,
        &format!(
            "dropped what ended runs left unfinished: {unlabelled_ours}, _xtask_new_999999_dead_0001, \
             _xtask_roundtrip_999999_0_dead"
        ),
    );
    let left: Vec<String> =
        p.databases_on_server_all().into_iter().filter(|d| d.starts_with("_xtask_")).collect();
    assert_eq!(left, ["_xtask_busy_1", "_xtask_unlabelled"], "the one in use stays, and what is not ours");
    drop(busy);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "dropped what ended runs left unfinished: _xtask_busy_1");
    assert!(p.databases_on_server_all().contains(&"_xtask_unlabelled".to_owned()));

    // A live maker's scratch database is never taken for a leftover: a slow migration keeps a
    // template build going while another setup runs.
    p.write(
        &format!("migrations/{}/20240101000001_slow.up.sql", p.name),
        "SELECT pg_sleep(3); CREATE TABLE slow (id int);",
    );
    let mut building = spawn_in(&p, p.path(), &["setup", "--branch", "slow-one"]);
    let started = std::time::Instant::now();
    while !p.databases_on_server_all().iter().any(|d| d.starts_with("_xtask_new_")) {
        assert!(started.elapsed().as_secs() < 20, "no scratch database appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = p.run(&["setup", "--branch", "other-one"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("left unfinished"));
    let built = building.wait().unwrap();
    assert!(built.success());
    let _ = building.stderr.take();
}
