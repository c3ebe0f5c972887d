//! Hostile input against a real server: the branch-name corpus (`corpus.rs`), malformed Cargo.toml
//! metadata, migration files no one should write, odd `.env` files, and a shared server full of
//! databases that look like ours. Each gets a clear error or the right result, never a panic, and
//! nothing outside the project's own databases changes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Command, Output};

use crate::harness::{Project, XTASK, contains};

/// Runs xtask like the harness does, with extra variables (an `XTASK_BRANCH` that is no string).
fn run_with(p: &Project, args: &[&str], extra: &[(&str, &OsStr)]) -> Output {
    let mut command = Command::new(XTASK);
    command.args(args).current_dir(p.path());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("XTASK_")
            || ["GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"].contains(&key.as_str())
        {
            command.env_remove(key);
        }
    }
    command.envs(p.env.iter().map(|(k, v)| (k, v)));
    command.envs(extra.iter().map(|(k, v)| (k, v)));
    command.output().unwrap()
}

/// Output of a run that must succeed, and never mention a panic.
fn succeeded(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stdout
}

/// Stderr of a run that must fail with `code` (1: an error; 2: a usage error), without a panic.
fn failed(out: &Output, code: i32, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr
}

fn all_databases(p: &Project) -> BTreeSet<String> {
    p.databases_on_server_all().into_iter().collect()
}

/// Every branch of the corpus through setup, db-status and wipe on one server, half of them given
/// by `--branch=`, half by `XTASK_BRANCH`, on three threads. Each gets a database of its own, that
/// db-status finds, that wipe drops; the server's other databases never change. `master` is left
/// to the end: it is a default branch like `main`, so both name the bare database, and the second
/// to ask for it is refused.
#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn corpus_branches_setup_status_wipe() {
    branches_setup_status_wipe(1);
}

/// Every eighth branch of the corpus, so that the default test run has a taste of it.
#[test]
fn corpus_sample_setup_status_wipe() {
    branches_setup_status_wipe(8);
}

fn branches_setup_status_wipe(stride: usize) {
    let p = Project::new("native");
    p.write("migrations/20240101000000_t.up.sql", "CREATE TABLE t (id int);");
    p.ok(&["setup"]);
    p.ok(&["wipe"]);
    let before = all_databases(&p);
    let all = crate::corpus::branches();
    assert!(all.len() >= 100, "{}", all.len());
    let mut branches: Vec<String> = all.iter().step_by(stride).filter(|b| *b != "master").cloned().collect();
    if !branches.iter().any(|b| b == "main") {
        branches.push("main".into());
    }
    let run = &|index: usize, branch: &str, args: &[&str]| -> Output {
        if index.is_multiple_of(2) {
            let flag = format!("--branch={branch}");
            let mut all: Vec<&str> = args.to_vec();
            all.push(&flag);
            run_with(&p, &all, &[])
        } else {
            run_with(&p, args, &[("XTASK_BRANCH", OsStr::new(branch))])
        }
    };
    let names: Vec<(usize, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|worker| {
                let branches = &branches;
                scope.spawn(move || {
                    let mut names = Vec::new();
                    for (index, branch) in branches.iter().enumerate().filter(|(i, _)| i % 3 == worker) {
                        succeeded(&run(index, branch, &["setup"]), &format!("setup {branch:?}"));
                        let status = succeeded(
                            &run(index, branch, &["db-status", "--json"]),
                            &format!("db-status {branch:?}"),
                        );
                        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
                        assert_eq!(status["branch"]["name"], branch.as_str(), "{branch:?}");
                        assert_eq!(status["databases"][0]["exists"], true, "{branch:?}");
                        assert_eq!(status["databases"][0]["pending_migrations"], 0, "{branch:?}");
                        names.push((index, status["databases"][0]["name"].as_str().unwrap().to_owned()));
                    }
                    names
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let err = failed(&run_with(&p, &["setup", "--branch=master"], &[]), 1, "setup master");
    contains(&err, "already exists for branch `main` (not `master`)");
    let distinct: BTreeSet<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(distinct.len(), branches.len(), "every branch has a database of its own");
    let after_setup = all_databases(&p);
    let added: BTreeSet<&str> =
        after_setup.iter().filter(|d| !before.contains(*d)).map(String::as_str).collect();
    assert_eq!(added, distinct, "setup made exactly the corpus's databases");
    // A quote-laden name was an identifier, never SQL: each one is a working database.
    for (_, name) in names.iter().step_by(9) {
        postgres::Client::connect(&p.admin_url(name), postgres::NoTls)
            .unwrap()
            .batch_execute("SELECT * FROM t")
            .unwrap();
    }
    std::thread::scope(|scope| {
        for worker in 0..3 {
            let (branches, run) = (&branches, &run);
            scope.spawn(move || {
                for (index, branch) in branches.iter().enumerate().filter(|(i, _)| i % 3 == worker) {
                    succeeded(&run(index, branch, &["wipe"]), &format!("wipe {branch:?}"));
                }
            });
        }
    });
    assert_eq!(all_databases(&p), before, "wipe dropped exactly what setup made");
}

/// Branch names that cannot name a database are refused before anything is done.
#[test]
fn empty_blank_and_non_utf8_branch_names_are_refused() {
    let p = Project::new("native");
    for blank in ["", " ", "\t", "\n", " \r\n "] {
        let err = failed(&run_with(&p, &["db-status", &format!("--branch={blank}")], &[]), 1, "blank flag");
        contains(&err, "the branch name is empty");
        if !blank.is_empty() {
            let err =
                failed(&run_with(&p, &["wipe"], &[("XTASK_BRANCH", OsStr::new(blank))]), 1, "blank env");
            contains(&err, "the branch name is empty");
        }
    }
    let not_utf8 = OsStr::from_bytes(b"feature/\xff\xfe");
    let err = failed(&run_with(&p, &["wipe"], &[("XTASK_BRANCH", not_utf8)]), 1, "XTASK_BRANCH not UTF-8");
    contains(&err, "XTASK_BRANCH");
    contains(&err, "not UTF-8");
    let err = failed(&run_with(&p, &["wipe"], &[("XTASK_PROJECT", not_utf8)]), 1, "XTASK_PROJECT not UTF-8");
    contains(&err, "XTASK_PROJECT");
    let mut command = Command::new(XTASK);
    command
        .arg("wipe")
        .arg("--branch")
        .arg(not_utf8)
        .current_dir(p.path())
        .envs(p.env.iter().map(|(k, v)| (k, v)));
    failed(&command.output().unwrap(), 2, "--branch not UTF-8");
    // Nothing was started, so nothing could be dropped.
    assert_eq!(p.server_state(), "absent");
}

/// A TOML basic string holding any text.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Logical database names a service may declare: every hostile one is refused with the file, line
/// and key named, before any server is contacted.
#[test]
fn hostile_service_database_names_are_refused() {
    let p = Project::new("native");
    let mut names: Vec<String> = crate::corpus::LITERAL_BRANCHES
        .iter()
        .filter(|n| {
            !(n.starts_with(|c: char| c.is_ascii_lowercase())
                && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        })
        .map(|s| s.to_string())
        .collect();
    names.extend(
        ["", "a".repeat(21).as_str(), "x".repeat(10_240).as_str(), "Accounts", "accounts-db", "1db", "_db"]
            .map(String::from),
    );
    assert!(names.len() >= 90, "{}", names.len());
    for name in &names {
        p.service("svc", &format!("name = {}", toml_string(name)));
        let err = failed(&p.run(&["db-status"]), 1, &format!("database name {name:?}"));
        contains(&err, "services/svc/Cargo.toml, line 6, column 8: `name`");
        contains(&err, "is not a valid database name");
    }
    // Valid names that read like another project's database or this tool's own: they only ever
    // name `<project>_<name>` databases, checked against the label before any drop.
    for name in ["postgres", "template1", "xtask_new", "tpl_0123abcd", "other_project"] {
        p.service("svc", &format!("name = {}", toml_string(name)));
        let status: serde_json::Value = serde_json::from_str(&p.ok(&["db-status", "--json"])).unwrap();
        assert_eq!(status["databases"][0]["name"], format!("{}_{name}", p.name));
    }
    assert_eq!(p.server_state(), "absent");
}

/// Malformed metadata of every kind: an error naming the file (and line, column and key where
/// TOML has them), exit code 1, no panic, and no server touched.
#[test]
fn malformed_cargo_toml_metadata_is_a_clear_error() {
    let p = Project::new("native");
    let head = "[workspace]\nmembers = []\n\n[workspace.metadata.xtask]\n";
    let huge = "a".repeat(1 << 20);
    let root_cases: Vec<(String, &str)> = vec![
        ("[workspace.metadata.xtask\n".into(), "line 1"),
        ("[workspace]\nmembers = [\n".into(), "Cargo.toml"),
        ("[workspace]\nmembers = \"services/*\"\n".into(), "members"),
        ("[workspace]\nmembers = []\n[workspace.metadata]\nxtask = \"native\"\n".into(), "line 4"),
        ("[workspace]\nmembers = []\n[workspace]\nmembers = []\n".into(), "duplicate"),
        (format!("{head}port = \"x\"\n"), "line 5"),
        (format!("{head}port = 70000\n"), "line 5"),
        (format!("{head}port = 99999999999999999999999\n"), "line 5"),
        (format!("{head}port = -1\n"), "line 5"),
        (format!("{head}port = 5432.5\n"), "line 5"),
        (format!("{head}port = 0\n"), "`port`"),
        (format!("{head}project = 5\n"), "line 5"),
        (format!("{head}project = \"Bad Name\"\n"), "`project`"),
        (format!("{head}project = \"\"\n"), "`project`"),
        (format!("{head}project = \"1abc\"\n"), "`project`"),
        (format!("{head}project = \"x; DROP DATABASE postgres\"\n"), "`project`"),
        (format!("{head}project = \"{}\"\n", "a".repeat(41)), "`project`"),
        (format!("{head}project = \"{huge}\"\n"), "`project`"),
        (format!("{head}project = [\"a\"]\n"), "line 5"),
        (format!("{head}engine = 1\n"), "line 5"),
        (format!("{head}engine = \"podman\"\n"), "podman"),
        (format!("{head}templates = \"yes\"\n"), "line 5"),
        (format!("{head}user = \"\"\n"), "`user`"),
        (format!("{head}password = \"a\\nb\"\n"), "`password`"),
        (format!("{head}password = \"a\\u0000b\"\n"), "`password`"),
        (format!("{head}default-branches = []\n"), "`default-branches`"),
        (format!("{head}default-branches = \"main\"\n"), "line 5"),
        (format!("{head}default-branches = [\" \"]\n"), "`default-branches`"),
        (format!("{head}data-dir = 3\n"), "line 5"),
        (format!("{head}prot = 5433\n"), "prot"),
        (format!("{head}ci = 1\n"), "line 5"),
        (format!("{head}[workspace.metadata.xtask.ci]\ndockr = true\n"), "dockr"),
        (format!("{head}databases = \"x\"\n"), "line 5"),
        (format!("{head}databases = [1]\n"), "line 5"),
        (format!("{head}[workspace.metadata.xtask.database]\nname = \"a\"\n"), "database"),
        (format!("{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nowner = \"x\"\n"), "owner"),
        (format!("{head}[[workspace.metadata.xtask.databases]]\nname = 1\n"), "line 6"),
        (format!("{head}[[workspace.metadata.xtask.databases]]\nrole = \"r\"\n"), "name"),
        (
            format!(
                "{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\n[[workspace.metadata.xtask.databases]]\nname = \"a\"\n"
            ),
            "declared twice",
        ),
        (
            format!(
                "{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nrole = \"r\"\n[[workspace.metadata.xtask.databases]]\nname = \"b\"\nrole = \"r\"\n"
            ),
            "role `r` is declared for both",
        ),
        (
            format!(
                "{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nrole = \"pg_signal_backend\"\n"
            ),
            "reserved",
        ),
        (
            format!("{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nrole = \"Admin\"\n"),
            "not a valid role name",
        ),
        (
            format!(
                "{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nrole = \"{}\"\n",
                "r".repeat(64)
            ),
            "not a valid role name",
        ),
        (
            format!(
                "{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nextensions = [\"{}\"]\n",
                "e".repeat(64)
            ),
            "`extensions`",
        ),
        (
            format!(
                "{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nextensions = \"pgcrypto\"\n"
            ),
            "line 7",
        ),
        (
            format!("{head}[[workspace.metadata.xtask.databases]]\nname = \"a\"\nreads = [\"a\"]\n"),
            "reads its own",
        ),
        (format!("{head}default-database = \"nope\"\n"), "`default-database`"),
        (format!("{head}project = \"p\"\n\u{0}\n"), "Cargo.toml"),
    ];
    for (manifest, needle) in &root_cases {
        std::fs::write(p.path().join("Cargo.toml"), manifest).unwrap();
        let err = failed(&p.run(&["db-status"]), 1, &format!("{:.200}", manifest));
        contains(&err, "Cargo.toml");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{:.300}: {needle:?} not in:\n{err:.2000}",
            manifest
        );
        assert!(err.len() < 20_000, "the error repeats a huge value: {} bytes", err.len());
    }
    // A member crate's manifest: not TOML, not UTF-8, the wrong shape.
    std::fs::write(p.path().join("Cargo.toml"), "[workspace]\nmembers = [\"services/*\"]\n").unwrap();
    let member_cases: Vec<(Vec<u8>, &str)> = vec![
        (b"[package.metadata.xtask.database\n".to_vec(), "services/svc/Cargo.toml"),
        (b"[package]\nname = \"svc\"\n# \xff\xfe xtask\n".to_vec(), "services/svc/Cargo.toml"),
        (b"[package.metadata.xtask]\ndatabase = \"svc\"\n".to_vec(), "services/svc/Cargo.toml"),
        (b"[package.metadata.xtask]\ndatabases = []\n".to_vec(), "databases"),
        (
            b"[package.metadata.xtask.database]\nname = \"svc\"\nreads = \"x\"\n".to_vec(),
            "services/svc/Cargo.toml",
        ),
    ];
    std::fs::create_dir_all(p.path().join("services/svc")).unwrap();
    for (manifest, needle) in &member_cases {
        std::fs::write(p.path().join("services/svc/Cargo.toml"), manifest).unwrap();
        let err = failed(&p.run(&["db-status"]), 1, &String::from_utf8_lossy(manifest));
        contains(&err, needle);
    }
    assert!(root_cases.len() + member_cases.len() >= 50);
    assert_eq!(all_projects_servers(&p), 0);
}

/// No server was made by any of the refused runs: no data directory.
fn all_projects_servers(p: &Project) -> usize {
    usize::from(p.data_dir().join("pgdata").exists() || p.data_dir().join("PG_VERSION").exists())
}

/// A declared role that another project's xtask made is never taken over: setup refuses, and the
/// role keeps its password and label.
#[test]
fn role_of_another_project_is_never_taken_over() {
    let p = Project::new("native");
    p.ok(&["db-up"]);
    let role = format!("{}_other_role", p.name);
    let label = format!("{{\"tool\": \"xtask\", \"project\": \"{}_other\", \"database\": \"x\"}}", p.name);
    p.admin()
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD 'theirs'; COMMENT ON ROLE \"{role}\" IS '{label}'"
        ))
        .unwrap();
    let verifier = |p: &Project| -> String {
        p.admin()
            .query_one(
                "SELECT rolpassword || shobj_description(oid, 'pg_authid') FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .unwrap()
            .get(0)
    };
    let before = verifier(&p);
    p.service("svc", &format!("name = \"svc\"\nrole = \"{role}\""));
    let err = p.fails(&["setup"]);
    contains(&err, &format!("role {role} already exists for project `{}_other`", p.name));
    assert_eq!(verifier(&p), before);
    assert!(p.databases_on_server().is_empty(), "{:?}", p.databases_on_server());
}

/// Migration files no one should write. Each case is applied alone on a migrated database; a
/// refused or failing one leaves no trace (no table of its own, no record).
#[test]
fn hostile_migration_files() {
    let p = Project::new("native");
    p.write("migrations/20240101000000_base.up.sql", "CREATE TABLE base (id int);");
    p.ok(&["setup"]);
    let db = p.name.clone();
    let recorded = |version: i64| -> bool {
        let mut client = postgres::Client::connect(&p.admin_url(&db), postgres::NoTls).unwrap();
        client.query_opt("SELECT 1 FROM _sqlx_migrations WHERE version = $1", &[&version]).unwrap().is_some()
    };
    let table_exists = |table: &str| -> bool {
        let mut client = postgres::Client::connect(&p.admin_url(&db), postgres::NoTls).unwrap();
        client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).unwrap().get(0)
    };
    let file = |version: i64| p.path().join(format!("migrations/{version}_case.up.sql"));
    let refused: &[(&[u8], &str)] = &[
        (
            b"CREATE TABLE c1 (id int);\n\\connect postgres\nCREATE TABLE c1b (id int);\n",
            ":2:1: `\\connect` is a psql meta-command",
        ),
        (b"CREATE TABLE c2 (id int);\n\\i other.sql\n", ":2:1: `\\i` is a psql meta-command"),
        (
            b"CREATE TABLE c7 (id int);\n-- binary below\n\x00\x01\x02\x03",
            ":3:1: the migration contains a NUL byte",
        ),
        (b"CREATE TABLE c8 (id int);\n-- \xff\xfe\xfd not UTF-8\n", "is not UTF-8 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not UTF-8 text"),
        (b"CREATE TABLE c9 (id int);\n\x7fELF\x02\x01\x01 binary", ":2:1: ERROR: syntax error"),
    ];
    let mut version = 20240102000000;
    for (bytes, needle) in refused {
        version += 1;
        std::fs::write(file(version), bytes).unwrap();
        let err = p.fails(&["migrate"]);
        contains(&err, needle);
        contains(&err, &format!("{version}_case.up.sql"));
        assert!(!recorded(version), "{needle}: recorded");
        for table in ["c1", "c1b", "c2", "c7", "c8", "c9"] {
            assert!(!table_exists(table), "{needle}: table {table} was left behind");
        }
        std::fs::remove_file(file(version)).unwrap();
    }
    // The same checks hold for a down file and a seed.
    version += 1;
    p.write(&format!("migrations/{version}_undo.up.sql"), "CREATE TABLE undo (id int);");
    p.write(&format!("migrations/{version}_undo.down.sql"), "DROP TABLE undo;\n\\i more.sql\n");
    p.ok(&["migrate"]);
    let err = p.fails(&["rollback"]);
    contains(&err, &format!("{version}_undo.down.sql:2:1: `\\i` is a psql meta-command"));
    assert!(table_exists("undo") && recorded(version));
    p.write("seeds/seed.sql", "CREATE TABLE seeded (id int);\nROLLBACK;\n");
    let err = p.fails(&["seed"]);
    contains(&err, "seeds/seed.sql:2:1: `ROLLBACK` controls the transaction");
    assert!(!table_exists("seeded"));
    std::fs::remove_file(p.path().join("seeds/seed.sql")).unwrap();

    // Empty and comment-only files are migrations that change nothing: applied and recorded.
    for text in ["", "\n\n", "-- nothing yet\n/* still nothing; */\n"] {
        version += 1;
        std::fs::write(file(version), text).unwrap();
        p.ok(&["migrate"]);
        assert!(recorded(version), "{text:?}");
    }
    // A COMMIT inside a function body or a string is not the file's own transaction control.
    version += 1;
    std::fs::write(
        file(version),
        "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;\nCREATE TABLE said (x text DEFAULT 'COMMIT; \\connect');",
    )
    .unwrap();
    p.ok(&["migrate"]);
    assert!(recorded(version) && table_exists("said"));
    // `-- no-transaction` files may group their own statements.
    version += 1;
    std::fs::write(file(version), "-- no-transaction\nBEGIN;\nCREATE TABLE grouped (id int);\nCOMMIT;\n")
        .unwrap();
    p.ok(&["migrate"]);
    assert!(recorded(version) && table_exists("grouped"));
    p.ok(&["migrate", "--check"]);
}

/// A 50 MB migration (one 50 MB string) is applied and recorded like any other.
#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn fifty_megabyte_migration() {
    let p = Project::new("native");
    p.ok(&["setup"]);
    let mut sql = String::from("CREATE TABLE big (x text);\nINSERT INTO big VALUES ('");
    sql.push_str(&"x".repeat(50 << 20));
    sql.push_str("');\n");
    p.write("migrations/20240101000000_big.up.sql", &sql);
    p.ok(&["migrate"]);
    let mut client = postgres::Client::connect(&p.admin_url(&p.name), postgres::NoTls).unwrap();
    let length: i32 = client.query_one("SELECT length(x) FROM big", &[]).unwrap().get(0);
    assert_eq!(length, 50 << 20);
    p.ok(&["migrate", "--check"]);
}

/// `.env` as a directory, read-only, a FIFO, or a symlink (into the workspace, out of it, through
/// a chain, dangling): written through links to regular files, refused otherwise, never replaced
/// by something else.
#[test]
fn odd_env_files() {
    let p = Project::new("native");
    let env = p.path().join(".env");
    let outside = tempfile::tempdir().unwrap();

    std::fs::create_dir(&env).unwrap();
    std::fs::write(env.join("keep"), "x").unwrap();
    contains(&p.fails(&["setup"]), "is a directory");
    assert_eq!(std::fs::read_to_string(env.join("keep")).unwrap(), "x");
    std::fs::remove_dir_all(&env).unwrap();

    std::fs::write(&env, "MINE=1\n").unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o444)).unwrap();
    contains(&p.fails(&["setup"]), "is read-only");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "MINE=1\n");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.ok(&["setup"]);
    let url = p.endpoint("main");
    assert!(std::fs::read_to_string(&env).unwrap().starts_with(&format!("MINE=1\nDATABASE_URL={url}\n")));
    std::fs::remove_file(&env).unwrap();

    // Symlinks to files, inside and outside the workspace, and through a chain: the file at the end
    // is written, the links stay.
    for (link_to, file) in [
        (p.path().join("config/dev.env"), p.path().join("config/dev.env")),
        (outside.path().join("shared.env"), outside.path().join("shared.env")),
        (p.path().join("chain"), outside.path().join("end.env")),
    ] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "MINE=2\n").unwrap();
        if link_to != file {
            symlink(&file, &link_to).unwrap();
        }
        symlink(&link_to, &env).unwrap();
        p.ok(&["setup"]);
        assert!(std::fs::symlink_metadata(&env).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().next(), Some("MINE=2"));
        contains(&std::fs::read_to_string(&file).unwrap(), &format!("DATABASE_URL={url}\n"));
        std::fs::remove_file(&env).unwrap();
    }

    symlink(outside.path().join("missing/dir/.env"), &env).unwrap();
    contains(&p.fails(&["setup"]), "which does not exist");
    assert!(!outside.path().join("missing").exists());
    std::fs::remove_file(&env).unwrap();

    let fifo = outside.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    symlink(&fifo, &env).unwrap();
    contains(&p.fails(&["setup"]), "not a regular file");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
    std::fs::remove_file(&env).unwrap();
    p.ok(&["setup"]);
}

/// The shared server holds other projects' databases, unlabelled databases named exactly like this
/// project's, and ones whose comment names this project but was not written by xtask (another
/// `tool`, no JSON). wipe, prune and teardown (external engine) never drop one of them, nor a role
/// that is not this project's.
#[test]
fn wipe_prune_teardown_spare_everything_not_ours() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    let mut p = Project::new("external");
    p.use_server(&server);
    p.set("XTASK_DATABASE_URL", &server.admin_url("postgres"));
    p.git(&["config", "user.email", "dev@example.com"]);
    p.git(&["config", "user.name", "Dev"]);
    p.write(".gitignore", "data/\n.env\n");
    p.git(&["add", "-A"]);
    p.git(&["commit", "--quiet", "-m", "workspace"]);
    p.git(&["branch", "kept"]);

    let name = p.name.clone();
    let label = |tool: &str, project: &str, branch: &str| {
        format!(
            "{{\"tool\": \"{tool}\", \"project\": \"{project}\", \"database\": \"{project}\", \"branch\": \"{branch}\", \
             \"created\": \"2020-01-01T00:00:00Z\"}}"
        )
    };
    // The names this project's own branches `gone1`..`gone6` would have.
    let foreign: Vec<(String, Option<String>)> = vec![
        (format!("{name}_gone1"), Some(label("xtask", &format!("{name}_other"), "gone1"))),
        (format!("{name}_gone2"), None),
        (format!("{name}_gone3"), Some(label("not-xtask", &name, "gone3"))),
        (format!("{name}_gone4"), Some(format!("made by hand for {name} by xtask, branch gone4"))),
        (format!("{name}_gone5"), Some(label("xtask", &format!("{name}x"), "gone5"))),
        (format!("{name}_gone6"), Some(label("XTASK", &name, "gone6"))),
        (format!("{name}x_gone"), Some(label("xtask", &format!("{name}x"), "gone"))),
        (format!("{name}__tpl_0123abcd"), Some(label("xtask-old", &name, "main"))),
        (format!("_xtask_new_1_{name}"), None),
        ("other_project_gone".to_owned(), Some(label("xtask", "other_project", "gone"))),
    ];
    let mut admin = server.admin();
    for (db, comment) in &foreign {
        admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).unwrap();
        if let Some(comment) = comment {
            admin.execute("SELECT 1", &[]).unwrap();
            let sql: String = admin
                .query_one(
                    "SELECT format('COMMENT ON DATABASE %I IS %L', $1::text, $2::text)",
                    &[db, comment],
                )
                .unwrap()
                .get(0);
            admin.batch_execute(&sql).unwrap();
        }
    }
    let foreign_roles = [format!("{name}_svc_other"), format!("{name}_svc_tool")];
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{0}\"; COMMENT ON ROLE \"{0}\" IS '{{\"tool\": \"xtask\", \"project\": \"{name}_other\", \"database\": \"svc\"}}'; \
             CREATE ROLE \"{1}\"; COMMENT ON ROLE \"{1}\" IS '{{\"tool\": \"other\", \"project\": \"{name}\", \"database\": \"svc\"}}'",
            foreign_roles[0], foreign_roles[1]
        ))
        .unwrap();
    let everything_foreign = || -> (BTreeSet<String>, usize) {
        let dbs = all_databases(&server);
        let kept: BTreeSet<String> =
            foreign.iter().map(|(db, _)| db.clone()).filter(|db| dbs.contains(db)).collect();
        let roles = server
            .admin()
            .query("SELECT 1 FROM pg_roles WHERE rolname = ANY($1)", &[&foreign_roles.to_vec()])
            .unwrap()
            .len();
        (kept, roles)
    };
    let all_foreign: BTreeSet<String> = foreign.iter().map(|(db, _)| db.clone()).collect();
    let server_own = all_databases(&server);

    p.ok(&["setup", "--branch", "kept"]);
    p.ok(&["setup", "--branch", "gone-for-real"]);
    for n in 1..=6 {
        let branch = format!("gone{n}");
        let err = p.fails(&["wipe", "--branch", &branch]);
        contains(&err, "refusing to drop");
        let err = p.fails(&["setup", "--branch", &branch]);
        assert!(err.contains("already exists"), "{err}");
    }
    assert_eq!(everything_foreign(), (all_foreign.clone(), 2));

    let (_, err) = p.ok_err(&["prune"]);
    contains(&err, "dropping 1 database(s)");
    contains(&err, &format!("{name}_gone_for_real__"));
    assert_eq!(everything_foreign(), (all_foreign.clone(), 2));

    let (_, err) = p.ok_err(&["teardown"]);
    contains(&err, "dropped database");
    assert_eq!(everything_foreign(), (all_foreign.clone(), 2));
    let left: BTreeSet<String> = all_databases(&server);
    assert_eq!(left, server_own, "teardown dropped only the project's own databases");
    for (db, _) in &foreign {
        admin.batch_execute(&format!("DROP DATABASE \"{db}\"")).unwrap();
    }
    admin
        .batch_execute(&format!("DROP ROLE \"{}\"; DROP ROLE \"{}\"", foreign_roles[0], foreign_roles[1]))
        .unwrap();
}

/// A refused file among several pending ones: nothing of the set is applied, and `--check` says so too.
#[test]
fn a_refused_migration_stops_the_whole_pending_set() {
    let p = Project::new("native");
    p.ok(&["setup"]);
    let dir = format!("migrations/{}", p.name);
    p.write(&format!("{dir}/20240101000001_a.up.sql"), "CREATE TABLE a (id int);");
    p.write(&format!("{dir}/20240101000002_b.up.sql"), "CREATE TABLE b (id int);\n\\connect other");
    let err = p.fails(&["migrate"]);
    contains(&err, "20240101000002_b.up.sql:2:1: `\\connect` is a psql meta-command");
    contains(&err, "nothing of the pending migrations was applied");
    let mut client = postgres::Client::connect(&p.admin_url(&p.name), postgres::NoTls).unwrap();
    let tables: i64 =
        client.query_one("SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b')", &[]).unwrap().get(0);
    assert_eq!(tables, 0, "nothing was applied");
    contains(&p.fails(&["migrate", "--check"]), "`\\connect` is a psql meta-command");
}
