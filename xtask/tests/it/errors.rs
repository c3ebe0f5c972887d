//! Bad input and broken surroundings: each gives a precise error, exit code 1, and no panic.

use std::net::{Ipv4Addr, TcpListener};

use crate::harness::{Project, contains};

#[test]
fn busy_port_names_its_holder() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut p = Project::new("native");
    p.set("XTASK_PORT", &port.to_string());
    let err = p.fails(&["db-up"]);
    contains(&err, &format!("port {port} on 127.0.0.1 is taken by"));
    contains(&err, &format!("pid {}", std::process::id()));
    contains(&err, "XTASK_PORT");
}

/// The project's server is stopped and another program took its port: migrate names that program
/// instead of advising db-up, which would fail on the port.
#[test]
fn migrate_with_the_port_taken_names_its_holder() {
    let p = Project::new("native");
    p.write("migrations/20240101000001_t.up.sql", "CREATE TABLE t (id int);");
    p.write("migrations/20240101000001_t.down.sql", "DROP TABLE t;");
    p.ok(&["setup"]);
    p.ok(&["db-down"]);
    // A program that accepts connections and never answers: no login is tried, so no timeout.
    let _taken = TcpListener::bind((Ipv4Addr::LOCALHOST, p.port)).unwrap();
    for task in ["migrate", "rollback", "migrations", "seed"] {
        let start = std::time::Instant::now();
        let err = p.fails(&[task]);
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{task} waited {:?}", start.elapsed());
        contains(&err, &format!("{task} needs the server, which is stopped"));
        contains(&err, &format!("port {} on 127.0.0.1 is taken by", p.port));
        contains(&err, &format!("pid {}", std::process::id()));
        contains(&err, "cannot start it there");
    }
}

#[test]
fn broken_config_names_file_line_column_and_key() {
    let p = Project::new("native");
    let manifest = p.path().join("Cargo.toml");
    std::fs::write(&manifest, "[workspace]\nmembers = []\n\n[workspace.metadata.xtask]\nprot = 5\n").unwrap();
    let err = p.fails(&["db-status"]);
    contains(&err, "Cargo.toml");
    contains(&err, "line 5, column 1");
    contains(&err, "prot");
    std::fs::write(&manifest, "[workspace]\n[workspace.metadata.xtask]\nport = \"many\"\n").unwrap();
    let err = p.fails(&["db-status"]);
    contains(&err, "line 3");
    contains(&err, "port");
}

#[test]
fn bad_env_values_name_the_variable() {
    let mut p = Project::new("native");
    p.set("XTASK_ENGINE", "podman");
    contains(&p.fails(&["db-status"]), "XTASK_ENGINE");
    p.set("XTASK_ENGINE", "native");
    p.set("XTASK_PORT", "99999");
    contains(&p.fails(&["db-status"]), "XTASK_PORT");
}

#[test]
fn usage_errors_exit_2_and_help_explains() {
    let p = Project::new("native");
    let out = p.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    contains(&String::from_utf8_lossy(&out.stderr), "unknown command");
    let out = p.run(&["setup", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    // A misspelling gets the nearest word, and one hint only.
    for (args, nearest) in [
        (&["migrat"][..], "did you mean `migrate`?"),
        (&["migrate", "--dryrun"], "did you mean `--dry-run`?"),
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        contains(&err, nearest);
    }
    let help = p.ok(&["--help"]);
    for command in ["setup", "wipe", "teardown", "db-up", "db-down", "db-status", "db-endpoint", "connect"] {
        contains(&help, command);
    }
    contains(&p.ok(&["wipe", "--help"]), "Only databases");
}

#[test]
fn missing_docker_cli_and_dead_engine_say_what_to_do() {
    let mut p = Project::new("native");
    p.set("XTASK_ENGINE", "docker");
    p.set("PATH", "/nonexistent");
    contains(&p.fails(&["db-up"]), "Docker CLI");
    p.set("PATH", &std::env::var("PATH").unwrap());
    p.set("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let err = p.fails(&["db-up"]);
    contains(&err, "Docker engine does not answer");
    contains(&err, "XTASK_ENGINE=native");
}

#[test]
fn missing_server_binaries_say_what_to_install() {
    let mut p = Project::new("native");
    p.set("XTASK_PG_BINDIR", "/nonexistent/bin");
    let err = p.fails(&["db-up"]);
    contains(&err, "initdb, pg_ctl");
    for platform in ["apt-get install postgresql", "dnf install postgresql-server", "brew install postgresql"]
    {
        contains(&err, platform);
    }
    p.set("XTASK_ENGINE", "auto");
    p.set("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let err = p.fails(&["db-up"]);
    contains(&err, "no Docker engine answers");
    contains(&err, "apt-get install postgresql");
}

#[test]
fn server_that_dies_on_start_shows_its_log() {
    let p = Project::new("native");
    p.ok(&["db-up"]);
    p.ok(&["db-down"]);
    let conf = p.data_dir().join("pgdata/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nshared_buffers = 'lots'\n");
    std::fs::write(&conf, text).unwrap();
    let err = p.fails(&["db-up"]);
    contains(&err, "stopped before accepting connections");
    contains(&err, "shared_buffers");
    assert_eq!(p.server_state(), "stopped");
}

#[test]
fn wrong_password_for_existing_cluster_is_explained() {
    let mut p = Project::new("native");
    p.ok(&["db-up"]);
    p.set("XTASK_PASSWORD", "not-the-one");
    let err = p.fails(&["db-up"]);
    contains(&err, "refused the login");
    contains(&err, "teardown");
    assert!(!err.contains("not-the-one"), "{err}");
}

#[test]
fn status_reports_a_refused_login_instead_of_failing() {
    let mut p = Project::new("native");
    p.ok(&["db-up"]);
    p.set("XTASK_PASSWORD", "wrong");
    let status = p.status("main");
    assert_eq!(status["server"]["state"], "running");
    contains(status["server"]["detail"].as_str().unwrap(), "password authentication failed");
    assert_eq!(status["databases"][0]["exists"], serde_json::Value::Null);
}

#[test]
fn data_dir_holding_other_files_is_refused_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Project::new("native");
    let foreign = p.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(foreign.join("keep.txt"), "mine").unwrap();
    p.set("XTASK_DATA_DIR", foreign.to_str().unwrap());
    contains(&p.fails(&["db-up"]), "already holds other files");
    p.ok(&["teardown"]);
    assert_eq!(std::fs::read_to_string(foreign.join("keep.txt")).unwrap(), "mine");
    assert_eq!(std::fs::metadata(&foreign).unwrap().permissions().mode() & 0o7777, 0o1777);
}

#[test]
fn silent_server_does_not_hang() {
    // Accepts TCP connections and never says a word.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut p = Project::new("external");
    p.set("XTASK_DATABASE_URL", &format!("postgres://u:p@127.0.0.1:{port}/postgres"));
    let started = std::time::Instant::now();
    contains(&p.fails(&["db-up"]), "did not answer the login");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    drop(listener);
}

#[test]
fn unlabelled_database_with_our_name_is_never_touched() {
    let p = Project::new("native");
    p.ok(&["db-up"]);
    p.admin().batch_execute(&format!("CREATE DATABASE \"{}_feature\"", p.name)).unwrap();
    let err = p.fails(&["setup", "--branch", "feature"]);
    contains(&err, "not created by xtask");
    let err = p.fails(&["wipe", "--branch", "feature"]);
    contains(&err, "refusing to drop");
    assert_eq!(p.databases_on_server(), vec![format!("{}_feature", p.name)]);
}

#[test]
fn env_file_that_is_a_directory_is_an_error() {
    let p = Project::new("native");
    std::fs::create_dir(p.path().join(".env")).unwrap();
    let err = p.fails(&["setup"]);
    contains(&err, ".env is a directory");
}

#[test]
fn works_from_a_subdirectory() {
    let p = Project::new("native");
    let sub = p.path().join("services/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let out = std::process::Command::new(crate::harness::XTASK)
        .args(["db-endpoint"])
        .current_dir(&sub)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    contains(&String::from_utf8_lossy(&out.stdout), &format!("/{}", p.name));
}
