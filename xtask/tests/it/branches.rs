//! `branches` and `prune` in throwaway git repositories with a local bare "remote", worktrees and
//! databases made by hand next to the tool's: real git, a real server, real psql.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{Project, contains};

/// A project with a git identity and a first commit holding the workspace, so worktrees have it.
fn project(engine: &str) -> Project {
    let p = Project::new(engine);
    p.git(&["config", "user.email", "dev@example.com"]);
    p.git(&["config", "user.name", "Dev"]);
    p.write(".gitignore", "data/\n.env\n");
    p.git(&["add", "-A"]);
    p.git(&["commit", "--quiet", "-m", "workspace"]);
    p
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeded(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout: {}\nstderr: {stderr}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The real psql, as the admin user, on the maintenance database.
fn psql(p: &Project, sql: &str) {
    let out = Command::new(crate::native::psql())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, &p.admin_url("postgres")])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The name of this branch's database, as the tool names it.
fn db_of(p: &Project, branch: &str) -> String {
    p.status(branch)["databases"][0]["name"].as_str().unwrap().to_owned()
}

fn branches_json(p: &Project) -> Value {
    serde_json::from_str(&p.ok(&["branches", "--json"])).unwrap()
}

fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    let all = report["databases"].as_array().unwrap();
    all.iter().find(|d| d["name"] == name).unwrap_or_else(|| panic!("{name} not listed: {report:#}"))
}

/// The databases in a `branches --json` report, but the real templates setup builds (those made by
/// hand here are named `<project>_tpl_*`).
fn names(report: &Value) -> BTreeSet<String> {
    report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .filter(|name| !name.contains("__tpl_"))
        .collect()
}

/// The databases a prune run lists: its lines indented by two spaces start with the name.
fn listed(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A label like the tool's, written by hand.
fn label(project: &str, database: &str, branch: &str, template: Option<&str>) -> String {
    let mut label = serde_json::json!({
        "tool": "xtask", "project": project, "database": database, "branch": branch,
        "created": "2026-01-02T03:04:05Z",
    });
    if let Some(hash) = template {
        label["template"] = hash.into();
    }
    label.to_string().replace('\'', "''")
}

/// Local, remote-tracking, worktree and detached branches come and go; prune drops exactly the
/// databases of the gone ones, lists them first (as --dry-run does), and never touches a default
/// branch's, the current branch's, an unlabelled database or another project's.
pub fn prune_gone_branches(engine: &str) {
    let p = project(engine);
    let remote = tempfile::tempdir().unwrap();
    git_in(remote.path(), &["init", "--quiet", "--bare", "--initial-branch=main"]);
    p.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    for branch in ["local-only", "pushed", "kept"] {
        p.git(&["branch", branch]);
    }
    p.git(&["push", "--quiet", "origin", "pushed"]);
    p.git(&["branch", "--quiet", "--delete", "--force", "pushed"]);

    // Databases made from the branch checked out, from worktrees and for a branch given by flag.
    p.ok(&["setup"]);
    for branch in ["local-only", "kept"] {
        p.git(&["checkout", "--quiet", branch]);
        p.ok(&["setup"]);
    }
    p.git(&["checkout", "--quiet", "main"]);
    p.ok(&["setup", "--branch", "pushed"]);
    p.ok(&["setup", "--branch", "flag-only"]);
    let trees = tempfile::tempdir().unwrap();
    let feature = trees.path().join("feature");
    let detached = trees.path().join("detached");
    p.git(&["worktree", "add", "--quiet", "-b", "wt/feature", feature.to_str().unwrap()]);
    p.git(&["worktree", "add", "--quiet", "--detach", detached.to_str().unwrap()]);
    succeeded(p.run_in(&feature, &["setup"]));
    succeeded(p.run_in(&detached, &["setup"]));
    let detached_status: Value =
        serde_json::from_str(&succeeded(p.run_in(&detached, &["db-status", "--json"]))).unwrap();
    assert_eq!(detached_status["branch"]["source"], "commit", "{detached_status:#}");
    let short_commit = detached_status["branch"]["name"].as_str().unwrap().to_owned();

    let [main, local_only, pushed, kept, flag_only, wt_feature, at_commit] =
        ["main", "local-only", "pushed", "kept", "flag-only", "wt/feature", short_commit.as_str()]
            .map(|branch| db_of(&p, branch));

    // By hand, next to them: an unlabelled database named exactly like a branch database, one
    // labelled for another project, one whose comment merely mentions the project, and templates.
    let ghost = db_of(&p, "ghost");
    let logical = entry(&branches_json(&p), &main)["database"].as_str().unwrap().to_owned();
    let other = format!("{}_other", p.name);
    let mentions = format!("{}_mentions", p.name);
    let (template_main, template_gone) = (format!("{}_tpl_main", p.name), format!("{}_tpl_gone", p.name));
    psql(&p, &format!("CREATE DATABASE \"{ghost}\""));
    psql(&p, &format!("CREATE DATABASE \"{other}\""));
    // Its branch is our project's name, so that the comment looks like ours at first sight.
    let other_label = label(&format!("{}x", p.name), &logical, &p.name, None);
    psql(&p, &format!("COMMENT ON DATABASE \"{other}\" IS '{other_label}'"));
    psql(&p, &format!("CREATE DATABASE \"{mentions}\""));
    psql(&p, &format!("COMMENT ON DATABASE \"{mentions}\" IS 'not json: \"{}\"'", p.name));
    for (name, branch) in [(&template_main, "main"), (&template_gone, "tpl-gone")] {
        psql(&p, &format!("CREATE DATABASE \"{name}\""));
        let text = label(&p.name, &logical, branch, Some("0123abcd"));
        psql(&p, &format!("COMMENT ON DATABASE \"{name}\" IS '{text}'"));
    }

    let report = branches_json(&p);
    assert_eq!(report["project"], p.name.as_str());
    assert_eq!(report["git"], true);
    assert_eq!(report["current_branch"], "main");
    let ours = [
        &main,
        &local_only,
        &pushed,
        &kept,
        &flag_only,
        &wt_feature,
        &at_commit,
        &template_main,
        &template_gone,
    ];
    assert_eq!(names(&report), ours.iter().map(|s| s.to_string()).collect(), "{report:#}");
    let found_in = |name: &str| entry(&report, name)["found_in"].clone();
    assert_eq!(found_in(&main), serde_json::json!(["local", "worktree"]));
    assert_eq!(found_in(&local_only), serde_json::json!(["local"]));
    assert_eq!(found_in(&pushed), serde_json::json!(["remote:origin"]));
    assert_eq!(found_in(&wt_feature), serde_json::json!(["local", "worktree"]));
    assert_eq!(found_in(&at_commit), serde_json::json!(["worktree"]));
    assert_eq!(found_in(&flag_only), serde_json::json!([]));
    for name in ours {
        let db = entry(&report, name);
        let gone = [&flag_only, &template_gone].contains(&name);
        assert_eq!(db["branch_exists"], !gone, "{db:#}");
        assert_eq!(db["prunable"], gone, "{db:#}");
        assert!(db["size_bytes"].as_i64().unwrap() > 0, "{db:#}");
        let created = db["created"].as_str().unwrap();
        assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
        assert!(db["last_write"].as_str().unwrap().ends_with('Z'), "{db:#}");
        assert_eq!(db["connections"], 0);
    }
    assert_eq!(entry(&report, &main)["current"], true);
    assert_eq!(entry(&report, &main)["default"], true);
    assert_eq!(entry(&report, &template_main)["template"], "0123abcd");
    assert_eq!(entry(&report, &template_main)["default"], true);
    assert_eq!(entry(&report, &kept)["template"], Value::Null);
    let table = p.ok(&["branches"]);
    contains(&table, "templates");
    contains(&table, "current, default branch");
    contains(&table, &flag_only);
    assert!(!table.contains(&ghost) && !table.contains(&other) && !table.contains(&mentions), "{table}");

    // A local branch deleted; one that exists only on the remote now; the current branch by flag.
    p.git(&["branch", "--quiet", "--delete", "--force", "local-only"]);
    let everything = p.databases_on_server_all();
    let (_, err) = p.ok_err(&["prune", "--dry-run", "--branch", "flag-only"]);
    assert_eq!(listed(&err), set(&[&local_only, &template_gone]), "{err}");
    contains(&err, "would drop 2 database(s)");
    contains(&err, "nothing dropped");
    let (_, err) = p.ok_err(&["prune", "--dry-run"]);
    let would = listed(&err);
    assert_eq!(would, set(&[&local_only, &flag_only, &template_gone]), "{err}");
    contains(&err, "local-only");
    assert_eq!(p.databases_on_server_all(), everything, "--dry-run drops nothing");
    let (_, err) = p.ok_err(&["prune"]);
    assert_eq!(listed(&err), would, "{err}");
    let gone: BTreeSet<String> =
        everything.iter().filter(|d| !p.databases_on_server_all().contains(d)).cloned().collect();
    assert_eq!(gone, would, "prune drops exactly what --dry-run listed");
    for survivor in [&ghost, &other, &mentions, &main, &pushed, &template_main] {
        assert!(p.databases_on_server_all().contains(survivor), "{survivor}");
    }
    contains(&p.ok_err(&["prune"]).1, "nothing to prune");

    // The remote-tracking branch goes once the remote's branch is deleted and fetched with --prune.
    git_in(remote.path(), &["branch", "--quiet", "--delete", "--force", "pushed"]);
    contains(&p.ok_err(&["prune"]).1, "nothing to prune");
    p.git(&["fetch", "--quiet", "--prune", "origin"]);
    let (_, err) = p.ok_err(&["prune"]);
    assert_eq!(listed(&err), set(&[&pushed]), "{err}");
    assert!(!p.databases_on_server_all().contains(&pushed));

    // A removed worktree's branch stays while the branch does; a detached one's commit goes with it.
    // A database a client is connected to is kept and named, and dropped once it is free.
    p.git(&["worktree", "remove", feature.to_str().unwrap()]);
    p.git(&["worktree", "remove", detached.to_str().unwrap()]);
    let mut client = postgres::Client::connect(&p.admin_url(&at_commit), postgres::NoTls).unwrap();
    client.batch_execute("SELECT 1").unwrap();
    let report = branches_json(&p);
    assert_eq!(entry(&report, &at_commit)["connections"], 1);
    assert_eq!(entry(&report, &wt_feature)["found_in"], serde_json::json!(["local"]));
    let (_, err) = p.ok_err(&["prune"]);
    contains(&err, "keeps 1 database(s)");
    assert_eq!(listed(&err), set(&[&at_commit]), "{err}");
    assert!(p.databases_on_server_all().contains(&at_commit));
    drop(client);
    wait_for_no_sessions(&p, &at_commit);
    p.git(&["branch", "--quiet", "--delete", "--force", "wt/feature"]);
    let (_, err) = p.ok_err(&["prune"]);
    assert_eq!(listed(&err), set(&[&at_commit, &wt_feature]), "{err}");

    // The default branch deleted from git: its database is still never pruned.
    p.git(&["checkout", "--quiet", "kept"]);
    p.git(&["branch", "--quiet", "--delete", "--force", "main"]);
    let report = branches_json(&p);
    assert_eq!(entry(&report, &main)["branch_exists"], false);
    assert_eq!(entry(&report, &main)["prunable"], false);
    assert_eq!(entry(&report, &kept)["current"], true);
    contains(&p.ok_err(&["prune"]).1, "nothing to prune");
    // The shared template setup built stays: it is labelled with the default branch.
    let mut left = p.databases_on_server();
    left.retain(|d| d.starts_with(&p.name));
    let mut expected = vec![main, kept, ghost, other, mentions, template_main];
    expected.sort();
    assert_eq!(left, expected);
}

/// The server ends a closed session's backend a moment after the client goes.
fn wait_for_no_sessions(p: &Project, database: &str) {
    let mut admin = p.admin();
    for _ in 0..200 {
        let row = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&database])
            .unwrap();
        if row.get::<_, i64>(0) == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("sessions on {database} did not end");
}

#[test]
fn outside_git_branches_shows_unknown_and_prune_refuses() {
    let p = Project::new("native");
    p.ok(&["setup", "--branch", "feature/x"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let probe = Command::new("git").args(["rev-parse", "--git-dir"]).current_dir(elsewhere.path()).output();
    assert!(!probe.unwrap().status.success(), "{} is inside a git repository", elsewhere.path().display());
    std::fs::copy(p.path().join("Cargo.toml"), elsewhere.path().join("Cargo.toml")).unwrap();

    let report: Value =
        serde_json::from_str(&succeeded(p.run_in(elsewhere.path(), &["branches", "--json"]))).unwrap();
    assert_eq!(report["git"], false);
    let databases: Vec<&Value> =
        report["databases"].as_array().unwrap().iter().filter(|d| d["template"].is_null()).collect();
    assert_eq!(databases.len(), 1, "{report:#}");
    assert_eq!(databases[0]["branch"], "feature/x");
    assert_eq!(databases[0]["branch_exists"], Value::Null);
    assert_eq!(databases[0]["prunable"], false);
    let table = succeeded(p.run_in(elsewhere.path(), &["branches"]));
    contains(&table, "not inside a git repository");

    let out = p.run_in(elsewhere.path(), &["prune", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    contains(&String::from_utf8_lossy(&out.stderr), "not inside a git repository");
    assert_eq!(p.databases_on_server().len(), 1);
}

#[test]
fn branches_and_prune_need_the_server_and_force_on_a_remote_host() {
    let p = project("native");
    for task in ["branches", "prune"] {
        let err = p.fails(&[task]);
        contains(&err, &format!("{task} needs the server"));
        contains(&err, "run `cargo xtask setup`"); // the server was never made
    }
    p.ok(&["db-up"]);
    contains(&p.ok(&["branches"]), "no databases of project");
    contains(&p.ok_err(&["prune"]).1, "nothing to prune");

    let mut remote = project("external");
    // Never contacted: the refusal comes before any connection.
    remote.set("XTASK_DATABASE_URL", "postgres://admin:hunter2@db.team.invalid:5432/postgres");
    let err = remote.fails(&["prune"]);
    contains(&err, "--force");
    assert!(!err.contains("hunter2"), "{err}");
}

/// After a branch switch, db-status says that .env still names the other branch's databases.
#[test]
fn a_stale_env_file_is_reported_until_setup_rewrites_it() {
    let p = Project::new("native");
    p.write("migrations/20240101000001_t.up.sql", "CREATE TABLE t (id int);");
    p.write("migrations/20240101000001_t.down.sql", "DROP TABLE t;");
    p.ok(&["setup"]);
    assert_eq!(p.status_current()["stale_env_file"], serde_json::Value::Null);
    p.git(&["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "start"]);
    p.git(&["checkout", "-qb", "feature/x"]);
    let stale = p.status_current()["stale_env_file"].as_str().unwrap().to_owned();
    contains(&stale, &format!("names database {}, not this branch's", p.name));
    contains(&stale, "`cargo xtask setup` rewrites it");
    contains(&p.ok(&["db-status"]), "note       ");
    // So do the commands that work on this branch's databases, once, on stderr (migrate, whose
    // database this branch has not got yet, before it fails).
    for args in [&["migrate"][..], &["db-endpoint"], &["schema", "--check"]] {
        let err = String::from_utf8_lossy(&p.run(args).stderr).into_owned();
        assert_eq!(err.matches("note: ").count(), 1, "{args:?}: {err}");
        contains(&err, "`cargo xtask setup` rewrites it");
    }
    p.ok(&["setup"]);
    assert_eq!(p.status_current()["stale_env_file"], serde_json::Value::Null);
    let (_, err) = p.ok_err(&["migrate"]);
    assert!(!err.contains("note: "), "{err}");
}
