//! The native engine: a private cluster made with initdb and run with pg_ctl.

use crate::harness::{Project, contains};

/// The real psql client: a versioned binary when Debian has one, else the one on PATH.
pub fn psql() -> std::path::PathBuf {
    let mut versioned: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.exists())
        .collect();
    versioned.sort();
    versioned.pop().unwrap_or_else(|| "psql".into())
}

#[test]
fn native_uses_git_branch_and_env_override() {
    let mut p = Project::new("native");
    p.git(&["checkout", "--quiet", "-b", "feature/from-git"]);
    p.ok(&["setup"]);
    let status = p.status_current();
    assert_eq!(status["branch"]["name"], "feature/from-git");
    assert_eq!(status["branch"]["source"], "git");
    assert_eq!(status["databases"][0]["exists"], true);
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    contains(&env, &format!("/{}_feature_from_git__", p.name));

    p.set("XTASK_BRANCH", "from-env");
    let status = p.status_current();
    assert_eq!(status["branch"]["name"], "from-env");
    assert_eq!(status["databases"][0]["exists"], false);
}

#[test]
fn native_detached_head_uses_ci_variables_then_commit() {
    let mut p = Project::new("native");
    p.git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "x"]);
    p.git(&["checkout", "--quiet", "--detach"]);
    let commit = p.git(&["rev-parse", "--short", "HEAD"]).trim().to_owned();
    assert_eq!(p.status_current()["branch"]["name"], commit.as_str());
    p.set("GITHUB_HEAD_REF", "pr/42-head");
    assert_eq!(p.status_current()["branch"]["name"], "pr/42-head");
}

#[test]
fn native_env_file_keeps_other_lines() {
    let p = Project::new("native");
    let before = "# my settings\nAPI_KEY=abc\n\nDATABASE_URL=postgres://stale\nexport OTHER=1";
    std::fs::write(p.path().join(".env"), before).unwrap();
    p.ok(&["setup"]);
    let after = std::fs::read_to_string(p.path().join(".env")).unwrap();
    let expected = before.replace("postgres://stale", &p.endpoint("main"));
    let added =
        after.strip_prefix(&expected).unwrap_or_else(|| panic!("{after:?} should start with {expected:?}"));
    let keys: Vec<&str> = added.lines().skip(1).map(|l| l.split_once('=').unwrap().0).collect();
    assert_eq!(keys, ["XTASK_ADMIN_URL", format!("{}_TEMPLATE_DATABASE", p.name.to_uppercase()).as_str()]);
}

#[test]
fn native_stale_cluster_after_down_starts_again() {
    let p = Project::new("native");
    p.ok(&["db-up"]);
    p.ok(&["db-down"]);
    assert_eq!(p.server_state(), "stopped");
    let (_, err) = p.ok_err(&["db-down"]);
    contains(&err, "not running");
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "started");
    assert_eq!(p.server_state(), "running");
    p.ok(&["teardown"]);
    assert!(!p.data_dir().join("pgdata").exists());
}
