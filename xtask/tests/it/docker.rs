//! The docker engine, against a real Docker engine and the test image built from Debian packages.

use std::process::Command;

use crate::harness::{Project, contains, free_port};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn docker_stopped_container_is_started_again() {
    let p = Project::new("docker");
    p.ok(&["setup"]);
    let container = format!("{}-postgres", p.name);
    docker(&["stop", &container]);
    assert_eq!(p.server_state(), "stopped");
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "started");
    assert!(p.db_exists("main"));
    // Published on loopback only.
    let ports = docker(&["port", &container, "5432/tcp"]);
    assert_eq!(ports, format!("127.0.0.1:{}", p.port));
}

#[test]
fn docker_down_keeps_volume_teardown_removes_it() {
    let p = Project::new("docker");
    p.ok(&["setup"]);
    p.ok(&["db-down"]);
    let volume = format!("{}-pgdata", p.name);
    docker(&["volume", "inspect", &volume]);
    let status = p.status("main");
    assert_eq!(status["server"]["state"], "absent");
    contains(status["server"]["detail"].as_str().unwrap(), "kept in volume");
    p.ok(&["db-up"]);
    assert!(p.db_exists("main"), "data survived the container's removal");
    p.ok(&["teardown"]);
    let out = Command::new("docker").args(["volume", "inspect", &volume]).output().unwrap();
    assert!(!out.status.success(), "volume {volume} should be gone");
}

#[test]
fn docker_container_with_other_settings_is_reported() {
    let mut p = Project::new("docker");
    p.ok(&["db-up"]);
    let old_port = p.port.to_string();
    p.set("XTASK_PORT", &free_port().to_string());
    let err = p.fails(&["db-up"]);
    contains(&err, &format!("on port {old_port}"));
    contains(&err, "db-down");
    p.set("XTASK_PORT", &old_port);
    p.set("XTASK_IMAGE", "some/other-image:1");
    let err = p.fails(&["db-up"]);
    contains(&err, "runs image");
    p.set("XTASK_IMAGE", &crate::harness::test_image());
    p.ok(&["db-up"]);
}

#[test]
fn docker_container_not_ours_is_left_alone() {
    let p = Project::new("docker");
    let container = format!("{}-postgres", p.name);
    docker(&["create", "--name", &container, &crate::harness::test_image()]);
    let err = p.fails(&["db-up"]);
    contains(&err, "not created by xtask");
    contains(&p.fails(&["db-down"]), "not created by xtask");
    contains(&p.fails(&["teardown"]), "not created by xtask");
    docker(&["container", "inspect", &container]);
    docker(&["rm", "--volumes", &container]);
    // Nor is a foreign volume of our name taken over or removed.
    let volume = format!("{}-pgdata", p.name);
    docker(&["volume", "create", &volume]);
    contains(&p.fails(&["db-up"]), "volume");
    contains(&p.fails(&["teardown"]), "volume");
    docker(&["volume", "inspect", &volume]);
    docker(&["volume", "rm", &volume]);
}

#[test]
fn docker_missing_image_says_what_to_do() {
    let mut p = Project::new("docker");
    p.set("XTASK_IMAGE", "xtask-no-such-image:1");
    let err = p.fails(&["db-up"]);
    contains(&err, "could not be pulled");
    contains(&err, "XTASK_IMAGE");
}

#[test]
fn docker_busy_port_names_the_container() {
    let first = Project::new("docker");
    first.ok(&["db-up"]);
    let mut second = Project::new("docker");
    second.set("XTASK_PORT", &first.port.to_string());
    let err = second.fails(&["db-up"]);
    contains(
        &err,
        &format!("port {} on 127.0.0.1 is taken by docker container {}-postgres", first.port, first.name),
    );
}

/// With a Docker engine answering, `auto` keeps a stopped native cluster's project on the native
/// engine: db-down does not hand the project to docker (whose image may not even be there).
#[test]
fn auto_keeps_a_stopped_native_cluster() {
    crate::harness::require_docker();
    let mut p = Project::new("native");
    p.set("XTASK_IMAGE", "xtask-no-such-image:1");
    p.ok(&["setup"]);
    p.client("main").batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('here')").unwrap();
    p.ok(&["db-down"]);
    p.set("XTASK_ENGINE", "auto");
    let status = p.status("main");
    assert_eq!(status["engine"], "native", "{status}");
    assert_eq!(status["server"]["state"], "stopped", "{status}");
    let err = p.fails(&["migrate"]);
    contains(&err, "run `cargo xtask db-up`");
    p.ok(&["db-up"]);
    let kept: String = p.client("main").query_one("SELECT v FROM kept", &[]).unwrap().get(0);
    assert_eq!(kept, "here");
    p.ok(&["teardown"]);
}

/// `auto` with a Docker engine that answers but cannot get the image: the native engine, said so,
/// when server binaries are there; the project then stays on it.
#[test]
fn auto_falls_back_to_native_when_the_image_cannot_be_had() {
    crate::harness::require_docker();
    let mut p = Project::new("native");
    p.set("XTASK_ENGINE", "auto");
    p.set("XTASK_IMAGE", "xtask-no-such-image:1");
    let (_, err) = p.ok_err(&["setup"]);
    contains(
        &err,
        "the image xtask-no-such-image:1 is not here and could not be pulled: using the native engine",
    );
    assert_eq!(p.status("main")["engine"], "native");
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("pulling"), "the native cluster keeps the project: {err}");
    p.ok(&["teardown"]);
}
