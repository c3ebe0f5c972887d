//! The scenarios every engine that owns its server must pass, run by `native` and `docker`.

use crate::harness::{Project, contains};

/// Up, idempotent up, two branches, data kept over down and up, wipe of one branch, teardown;
/// status must tell the truth after every step.
pub fn server_life_cycle(engine: &str) {
    let p = Project::new(engine);
    assert_eq!(p.server_state(), "absent");

    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "created and started");
    assert_eq!(p.server_state(), "running");
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "already running");

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, &format!("created database {}", p.name));
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");
    assert!(p.db_exists("main"));
    assert!(!p.db_exists("feature/two"));

    p.ok(&["setup", "--branch", "feature/two"]);
    assert!(p.db_exists("feature/two"));
    let main_db = p.endpoint("main");
    let feature_db = p.endpoint("feature/two");
    assert_ne!(main_db, feature_db);

    let mut main = p.client("main");
    main.batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives down and up')")
        .unwrap();
    drop(main);
    let label: String = p
        .admin()
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&p.name],
        )
        .unwrap()
        .get(0);
    let label: serde_json::Value = serde_json::from_str(&label).unwrap();
    assert_eq!(label["project"], p.name.as_str());
    assert_eq!(label["branch"], "main");
    assert!(label["created"].as_str().unwrap().ends_with('Z'));

    let (_, err) = p.ok_err(&["db-down"]);
    contains(&err, "stopped; its data is kept");
    let stopped = p.server_state();
    assert!(stopped == "stopped" || stopped == "absent", "{stopped}");
    // A second db-down has nothing to stop and does not claim it stopped something.
    let (_, err) = p.ok_err(&["db-down"]);
    contains(&err, "nothing to stop");
    assert!(!err.contains("stopped; its data is kept"), "{err}");
    assert_eq!(p.status("main")["databases"][0]["exists"], serde_json::Value::Null);
    p.fails(&["wipe"]);
    p.ok(&["db-up"]);
    assert_eq!(p.server_state(), "running");
    let row = p.client("main").query_one("SELECT v FROM kept", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "survives down and up");

    p.ok(&["wipe", "--branch", "feature/two"]);
    assert!(!p.db_exists("feature/two"));
    assert!(p.db_exists("main"));
    let (_, err) = p.ok_err(&["wipe", "--branch", "feature/two"]);
    contains(&err, "does not exist");
    assert_eq!(p.databases_on_server(), vec![p.name.clone()]);

    p.ok(&["teardown"]);
    assert_eq!(p.server_state(), "absent");
}

/// Branch names that are hostile to SQL, shells and file systems, created and wiped for real.
pub fn adversarial_branches(engine: &str) {
    let p = Project::new(engine);
    let long = "very-long/".repeat(30);
    let branches = [
        "feature/Ünïcode-名前",
        "x'; DROP DATABASE postgres; --",
        "quote\"in\"name",
        "Feature/Login",
        "feature/login",
        long.as_str(),
        "select",
    ];
    for branch in branches {
        p.ok(&["setup", "--branch", branch]);
    }
    let names = p.databases_on_server();
    assert_eq!(names.len(), branches.len(), "{names:?}");
    for branch in branches {
        assert!(p.db_exists(branch), "{branch}");
        p.client(branch).batch_execute("SELECT 1").unwrap();
    }
    for branch in branches {
        p.ok(&["wipe", "--branch", branch]);
        assert!(!p.db_exists(branch), "{branch}");
    }
    assert!(p.databases_on_server().is_empty());
    // `postgres` is still there: the quote-laden name was an identifier, never SQL.
    p.admin().batch_execute("SELECT 1").unwrap();
}

/// db-endpoint's URL works with the real psql, and `connect` runs psql on the branch database.
pub fn endpoint_and_connect(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup", "--branch", "feat/psql"]);
    let url = p.endpoint("feat/psql");
    let psql = crate::native::psql();
    let out = std::process::Command::new(psql)
        .args(["-X", "-A", "-t", "-c", "select current_database()", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(db.starts_with(&format!("{}_feat_psql__", p.name)), "{db}");

    let stdout = p.ok(&[
        "connect",
        "--branch",
        "feat/psql",
        "--",
        "-X",
        "-A",
        "-t",
        "-c",
        "select current_database()",
    ]);
    assert_eq!(stdout.trim(), db);
    let out = p.run(&["connect", "--branch", "feat/psql", "--", "-X", "-c", "select nonsense"]);
    assert_ne!(out.status.code(), Some(0), "psql's failure is passed on");

    // After wipe: what to do, not psql's raw "database does not exist".
    p.ok(&["wipe", "--branch", "feat/psql"]);
    let err = p.fails(&["connect", "--branch", "feat/psql", "--", "-c", "select 1"]);
    contains(&err, "does not exist (wiped, or never set up): run `cargo xtask setup` to create it");
}

/// The password never shows in what is printed, except db-endpoint's line.
pub fn password_is_redacted(engine: &str) {
    let mut p = Project::new(engine);
    p.set("XTASK_PASSWORD", "s3cret-Pa55");
    let (out, err) = p.ok_err(&["setup"]);
    let (status, _) = p.ok_err(&["db-status"]);
    let (json, _) = p.ok_err(&["db-status", "--json"]);
    for text in [out, err, status.clone(), json] {
        assert!(!text.contains("s3cret-Pa55"), "{text}");
    }
    contains(&status, ":***@127.0.0.1");
    contains(&p.endpoint("main"), "s3cret-Pa55");
}

/// Several worktrees running `setup` at the same moment, from no server at all: every run succeeds,
/// one server is made, every database is made once.
pub fn concurrent_setups(engine: &str) {
    let p = Project::new(engine);
    let branches = ["wt/a", "wt/b", "wt/c", "wt/d", "wt/a", "wt/b"];
    let children: Vec<_> = branches
        .iter()
        .map(|branch| {
            let mut command = std::process::Command::new(crate::harness::XTASK);
            command.args(["setup", "--branch", branch]).current_dir(p.path());
            command.envs(p.env.iter().map(|(k, v)| (k, v)));
            command.stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(p.databases_on_server().len(), 4);
    assert_eq!(p.server_state(), "running");
}
