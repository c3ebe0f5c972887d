//! The docker engine, against a real Docker engine and the test image built from Debian packages.

use std::process::Command;

use crate::harness::{Project, contains, free_port};
use crate::lifecycle;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn docker_life_cycle() {
    lifecycle::server_life_cycle("docker");
}

#[test]
fn docker_adversarial_branches() {
    lifecycle::adversarial_branches("docker");
}

#[test]
fn docker_endpoint_and_connect() {
    lifecycle::endpoint_and_connect("docker");
}

#[test]
fn docker_password_is_redacted() {
    lifecycle::password_is_redacted("docker");
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

#[test]
fn docker_concurrent_setups() {
    lifecycle::concurrent_setups("docker");
}

#[test]
fn docker_migrate_apply_reapply_rollback() {
    crate::migrate::apply_reapply_rollback("docker");
}

#[test]
fn docker_migrate_edited_missing_out_of_order() {
    crate::migrate::edited_missing_and_out_of_order("docker");
}

#[test]
fn docker_migrate_failure_leaves_nothing() {
    crate::migrate::failing_migration_leaves_nothing("docker");
}

#[test]
fn docker_migrate_no_transaction() {
    crate::migrate::no_transaction_index_concurrently("docker");
}

#[test]
fn docker_migrate_concurrently() {
    crate::migrate::concurrent_migrate("docker");
}

#[test]
fn docker_seeds() {
    crate::migrate::seeds("docker");
}

#[test]
fn docker_sqlx_interop() {
    crate::migrate::sqlx_interop("docker");
}
