//! The git hook, pre-commit and ci in throwaway git repositories, with the real git, cargo and a
//! native server. The hook runs `cargo xtask`, which cargo finds as `cargo-xtask` on PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{Project, XTASK, alive, contains};

const FIRST: &str = "20250101000000";
const SECOND: &str = "20250102000000";

/// A project on the native engine, with a git identity and `cargo-xtask` on the PATH its commits
/// see (kept in the project's folder).
fn project() -> Project {
    let mut p = Project::new("native");
    p.git(&["config", "user.email", "dev@example.com"]);
    p.git(&["config", "user.name", "Dev"]);
    let bin = p.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(XTASK, bin.join("cargo-xtask")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    p.set("PATH", &path);
    p.write(".gitignore", "bin/\ndata/\ntarget/\n.env\n");
    p
}

fn migration(p: &Project, version: &str, slug: &str, up: &str, down: &str) {
    let dir = format!("migrations/{}", p.name);
    p.write(&format!("{dir}/{version}_{slug}.up.sql"), up);
    p.write(&format!("{dir}/{version}_{slug}.down.sql"), down);
}

/// `git commit` in `dir` with the project's environment (the hook inherits it).
fn commit_in(p: &Project, dir: &Path, message: &str) -> Output {
    let mut command = Command::new("git");
    command.args(["commit", "--quiet", "-m", message]).current_dir(dir);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("XTASK_")) {
        command.env_remove(key);
    }
    command.envs(p.env.iter().map(|(k, v)| (k, v))).output().unwrap()
}

fn commit(p: &Project, message: &str) -> Output {
    commit_in(p, p.path(), message)
}

fn commits(p: &Project) -> usize {
    p.git(&["rev-list", "--count", "HEAD"]).trim().parse().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn blocked(p: &Project, message: &str) -> String {
    let before = commits(p);
    let out = commit(p, message);
    let err = stderr(&out);
    assert!(!out.status.success(), "the commit went through:\n{err}");
    contains(&err, "FAIL");
    assert_eq!(commits(p), before, "nothing may be committed");
    err
}

fn hook_path(p: &Project) -> PathBuf {
    p.path().join(".git/hooks/pre-commit")
}

#[test]
fn hook_blocks_broken_migrations_and_lets_good_ones_through() {
    let p = project();
    p.ok(&["hooks", "install"]);
    let table = "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL);";
    migration(&p, FIRST, "items", table, "DROP TABLE items;");
    let index_up = "-- no-transaction\nCREATE INDEX CONCURRENTLY items_name_id ON items (name, id);";
    let index_down = "-- no-transaction\nDROP INDEX CONCURRENTLY items_name_id;";
    migration(&p, "20250101000001", "index", index_up, index_down);
    p.git(&["add", "-A"]);
    let out = commit(&p, "items");
    assert!(out.status.success(), "a good commit is blocked:\n{}", stderr(&out));
    contains(&stderr(&out), "all checks passed");
    p.ok(&["setup"]);

    // An applied, committed migration edited.
    let up = format!("migrations/{}/{FIRST}_items.up.sql", p.name);
    p.write(&up, "CREATE TABLE items (id bigint PRIMARY KEY, name text);");
    p.git(&["add", "-A"]);
    let err = blocked(&p, "edit items");
    contains(&err, "changed after it was committed on main");
    contains(&err, "applied as version");
    p.git(&["checkout", "HEAD", "--", "migrations"]);

    // A badly named file.
    p.write(&format!("migrations/{}/add_things.sql", p.name), "SELECT 1;");
    p.git(&["add", "-A"]);
    contains(&blocked(&p, "bad name"), "badly named migration");
    p.git(&["rm", "--cached", "--quiet", &format!("migrations/{}/add_things.sql", p.name)]);
    std::fs::remove_file(p.path().join(format!("migrations/{}/add_things.sql", p.name))).unwrap();

    // A down that does not undo its up: staged; the working tree's fix is not what gets committed.
    let second_up = "ALTER TABLE items ADD COLUMN price numeric; CREATE INDEX items_name ON items (name);";
    migration(&p, SECOND, "price", second_up, "DROP INDEX items_name;");
    p.git(&["add", "-A"]);
    migration(&p, SECOND, "price", second_up, "DROP INDEX items_name; ALTER TABLE items DROP COLUMN price;");
    let err = blocked(&p, "price");
    contains(&err, &format!("{SECOND}_price.down.sql does not undo"));
    contains(&err, "DROP COLUMN price");

    // A migration older than the newest one on main.
    p.git(&["add", "-A"]);
    migration(&p, "20240101000000", "late", "CREATE TABLE late (id int);", "DROP TABLE late;");
    p.git(&["add", "-A"]);
    contains(&blocked(&p, "late"), "not newer than main's newest migration");
    p.git(&["rm", "-r", "--cached", "--quiet", &format!("migrations/{}/20240101000000_late.up.sql", p.name)]);
    p.git(&["rm", "--cached", "--quiet", &format!("migrations/{}/20240101000000_late.down.sql", p.name)]);

    // Unformatted Rust code staged (this workspace has no rustfmt.toml).
    p.write("src/lib.rs", "pub fn  f( ) {}\n");
    p.git(&["add", "src/lib.rs"]);
    contains(&blocked(&p, "price"), "staged Rust code is not formatted");
    p.write("src/lib.rs", "pub fn f() {}\n");
    p.git(&["add", "src/lib.rs"]);

    let out = commit(&p, "price");
    assert!(out.status.success(), "the fixed migration is blocked:\n{}", stderr(&out));
    assert_eq!(commits(&p), 2);
    assert!(p.databases_on_server_all().iter().all(|d| !d.starts_with("_xtask_")));
}

#[test]
fn hooks_install_is_idempotent_and_serves_every_worktree() {
    let p = project();
    p.git(&["add", "-A"]);
    assert!(commit(&p, "start").status.success());
    let elsewhere = tempfile::tempdir().unwrap();
    let worktree = elsewhere.path().join("feature");
    p.git(&["worktree", "add", "--quiet", "-b", "feature", worktree.to_str().unwrap()]);

    let out = p.run_in(&worktree, &["hooks", "install"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hook = std::fs::read_to_string(hook_path(&p)).unwrap();
    contains(&hook, "cargo xtask pre-commit --staged");
    assert_eq!(std::fs::metadata(hook_path(&p)).unwrap().permissions().mode() & 0o111, 0o111);
    let again = p.run_in(&worktree, &["hooks", "install"]);
    contains(&stderr(&again), "already installed");
    assert_eq!(std::fs::read_to_string(hook_path(&p)).unwrap(), hook);

    // The worktree's commits run it.
    let bad = worktree.join(format!("migrations/{}/add_nonsense.sql", p.name));
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "SELECT 1;").unwrap();
    let add = Command::new("git").args(["add", "-A"]).current_dir(&worktree).output().unwrap();
    assert!(add.status.success());
    let out = commit_in(&p, &worktree, "bad");
    assert!(!out.status.success());
    contains(&stderr(&out), "badly named migration");

    // Only what it wrote is removed; someone else's hook is left alone.
    p.ok(&["hooks", "uninstall"]);
    assert!(!hook_path(&p).exists());
    std::fs::write(hook_path(&p), "#!/bin/sh\nexit 0\n").unwrap();
    contains(&p.fails(&["hooks", "install"]), "is not the hook this tool writes");
    contains(&p.ok_err(&["hooks", "uninstall"]).1, "left as it is");
    assert_eq!(std::fs::read_to_string(hook_path(&p)).unwrap(), "#!/bin/sh\nexit 0\n");
}

#[test]
fn ci_tears_down_after_a_failing_step() {
    let p = project();
    // A member crate, so that cargo fmt, test and clippy have something to do.
    member_crate(&p, "assert_eq!(1 + 1, 2);");
    let dir = "migrations/app";
    p.write(&format!("{dir}/{FIRST}_items.up.sql"), "CREATE TABLE items (id int);");
    p.write(&format!("{dir}/{FIRST}_items.down.sql"), "SELECT 1;");
    p.ok(&["setup"]);
    let developer_databases = p.databases_on_server_all();
    p.ok(&["db-down"]);

    let out = p.run(&["ci", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out)));
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let step =
        |name: &str| report["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap();
    assert_eq!(step("downs")["status"], "failed");
    contains(step("downs")["detail"].as_str().unwrap(), &format!("{FIRST}_items.down.sql does not undo"));
    for ok in ["db-up", "setup", "migrations", "fmt", "build", "tests", "clippy", "teardown"] {
        assert_eq!(step(ok)["status"], "ok", "{ok}: {report:#}");
    }
    let run = report["run"].as_str().unwrap();
    assert!(run.starts_with("ci-local-"), "{run}");

    // The server it started is stopped again; its databases are gone, the developer's are kept.
    assert_eq!(p.server_state(), "stopped");
    p.ok(&["db-up"]);
    assert_eq!(p.databases_on_server_all(), developer_databases);
}

#[test]
fn migrate_json_reports_what_it_did() {
    let p = project();
    p.ok(&["setup"]);
    migration(&p, FIRST, "items", "CREATE TABLE items (id int);", "DROP TABLE items;");
    let json = |out: &str| -> Value { serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}")) };
    let first: i64 = FIRST.parse().unwrap();
    let second: i64 = SECOND.parse().unwrap();
    let out = json(&p.ok(&["migrate", "--json"]))[&p.name].clone();
    assert_eq!(out, serde_json::json!({"outcome": "applied", "applied": [first]}));
    let out = json(&p.ok(&["migrate", "--json"]))[&p.name].clone();
    assert_eq!(out, serde_json::json!({"outcome": "up-to-date"}));
    migration(&p, SECOND, "more", "CREATE TABLE more (id int);", "DROP TABLE more;");
    let out = p.run(&["migrate", "--check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&String::from_utf8_lossy(&out.stdout))[&p.name].clone();
    assert_eq!(report, serde_json::json!({"outcome": "check-failed", "pending": [second], "problems": []}));
    let out = json(&p.ok(&["migrate", "--dry-run", "--json"]))[&p.name].clone();
    assert_eq!(out, serde_json::json!({"outcome": "dry-run", "pending": [second]}));
}

/// A workspace member crate whose one test runs `test_body`, with its lock file.
fn member_crate(p: &Project, test_body: &str) {
    p.service("app", "name = \"app\"");
    p.write("services/app/src/lib.rs", &format!("#[test]\nfn check() {{\n    {test_body}\n}}\n"));
    let lock = Command::new("cargo").args(["generate-lockfile", "--offline"]).current_dir(p.path()).output();
    assert!(lock.unwrap().status.success());
}

/// The member test of `interrupted_ci_ends_and_sweeps_what_it_started`: it starts what tests
/// start (a native server in a folder of its temporary directory, a child in its process group, a
/// child that left the group), writes their pids to PROBE_FILE, and waits to be interrupted.
const STARTS_SERVERS_AND_WAITS: &str = r#"
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("probe-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let up = Command::new(std::env::var("PROBE_XTASK").unwrap())
        .arg("db-up")
        .current_dir(&dir)
        .env("XTASK_ENGINE", "native")
        .env("XTASK_PROJECT", "probe")
        .env("XTASK_BRANCH", "main")
        .env("XTASK_PORT", port.to_string())
        .env("XTASK_DATA_DIR", dir.join("data"))
        .status()
        .unwrap();
    assert!(up.success());
    let pid_file = std::fs::read_to_string(dir.join("data/pgdata/postmaster.pid")).unwrap();
    let in_group = Command::new("sleep").arg("300").spawn().unwrap();
    let left_group = Command::new("setsid").args(["sleep", "301"]).spawn().unwrap();
    let probe = format!(
        "{} {} {} {}",
        dir.display(),
        pid_file.lines().next().unwrap(),
        in_group.id(),
        left_group.id()
    );
    std::fs::write(std::env::var("PROBE_FILE").unwrap(), probe).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(300));
"#;

#[test]
fn interrupted_ci_ends_and_sweeps_what_it_started() {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::CommandExt;
    let mut p = project();
    member_crate(&p, STARTS_SERVERS_AND_WAITS);
    p.write(&format!("migrations/app/{FIRST}_items.up.sql"), "CREATE TABLE items (id int);");
    p.write(&format!("migrations/app/{FIRST}_items.down.sql"), "DROP TABLE items;");
    let probe = p.path().join("probe");
    p.set("PROBE_FILE", probe.to_str().unwrap());
    p.set("PROBE_XTASK", XTASK);
    p.ok(&["db-up"]);
    let before = p.databases_on_server_all();

    // Ctrl-C reaches the terminal's foreground process group: here, xtask's own.
    let mut command = p.command(&["ci"]);
    command.process_group(0);
    let mut child =
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("ci: tests ...") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "ci ended before its tests:\n{seen}");
        seen.push_str(&line);
    }
    let start = std::time::Instant::now();
    while !probe.exists() {
        assert!(start.elapsed().as_secs() < 300, "the member test never started its servers:\n{seen}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let databases_during = p.databases_on_server_all();
    assert!(databases_during.len() > before.len(), "{databases_during:?}");
    let probed = std::fs::read_to_string(&probe).unwrap();
    let (dir, pids) = probed.split_once(' ').unwrap();
    let pids: Vec<i32> = pids.split(' ').map(|pid| pid.parse().unwrap()).collect();
    assert!(pids.iter().all(|pid| alive(*pid)), "{probed}");

    // SAFETY: signals the process group this test started.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    stderr.read_to_string(&mut seen).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    contains(&seen, "child process group(s)");
    contains(&seen, "interrupted: ended what the tests left: ");
    contains(&seen, "interrupted: dropped");
    for step in ["tests", "clippy", "teardown"] {
        assert!(!seen.contains(&format!("ci: {step}: ")), "no step ends after the signal:\n{seen}");
    }
    // The server, the child that left the group and the one that did not, and their folder: gone.
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} ({probed}) outlived ci:\n{seen}");
    }
    assert!(!Path::new(dir).exists(), "{dir}");
    assert!(!Path::new(dir).parent().unwrap().exists(), "the run's temporary directory is removed");

    // The shared template the run built stays (as after any setup: the next branch copies it).
    let after: Vec<String> =
        p.databases_on_server_all().into_iter().filter(|d| !d.contains("__tpl_")).collect();
    assert_eq!(after, before);
    let branches: Vec<String> = p
        .admin()
        .query(
            "SELECT shobj_description(oid, 'pg_database')::json->>'branch' FROM pg_database \
             WHERE datname LIKE '%\\_\\_tpl\\_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(branches.iter().all(|b| b == "main"), "only shared templates are left: {branches:?}");
}
