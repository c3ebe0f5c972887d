//! Faults of the server's surroundings, made for real: the Docker engine stopped under a running
//! container, the container or its volume removed by hand, the native data directory deleted, and a
//! stale postmaster.pid after a kill -9. Each must be told precisely (db-status and the failing
//! commands), with the one command that recovers, and that command must recover.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Project, alive, contains, test_image};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A migration and a row, so a recovery can show what was kept and what was lost.
fn with_data(p: &Project) {
    p.write(
        &format!("migrations/{}/20240101000000_notes.up.sql", p.name),
        "CREATE TABLE notes (body text NOT NULL);",
    );
    p.ok(&["setup"]);
    p.client("main").execute("INSERT INTO notes VALUES ('kept')", &[]).unwrap();
}

fn notes(p: &Project) -> Vec<String> {
    let rows = p.client("main").query("SELECT body FROM notes", &[]).unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// db-status as JSON and as the table, which must say the same.
fn read_status(p: &Project) -> (Value, String) {
    let json = p.status("main");
    let table = p.ok(&["db-status"]);
    let state = json["server"]["state"].as_str().unwrap();
    contains(&table, &format!("server     {state} ({})", json["server"]["detail"].as_str().unwrap()));
    if let Some(next) = json["server"]["next"].as_str() {
        contains(&table, &format!("next       {next}"));
    }
    (json, table)
}

fn server<'a>(status: &'a Value, key: &str) -> &'a str {
    status["server"][key].as_str().unwrap_or_else(|| panic!("no server.{key} in {status:#}"))
}

#[test]
fn docker_container_removed_by_hand() {
    let p = Project::new("docker");
    with_data(&p);
    docker(&["rm", "--force", &format!("{}-postgres", p.name)]);

    let (status, table) = read_status(&p);
    assert_eq!(server(&status, "state"), "absent");
    contains(server(&status, "detail"), &format!("no container {}-postgres", p.name));
    contains(server(&status, "detail"), &format!("its data is kept in volume {}-pgdata", p.name));
    assert_eq!(server(&status, "next"), "run `cargo xtask db-up`");
    assert_eq!(status["databases"][0]["exists"], Value::Null);
    contains(&table, "unknown (server absent)");

    let err = p.fails(&["migrate"]);
    contains(&err, "migrate needs the server, which is absent");
    contains(&err, "run `cargo xtask db-up`");
    contains(&p.fails(&["wipe"]), "run `cargo xtask db-up`");

    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "created and started");
    assert_eq!(p.server_state(), "running");
    assert_eq!(notes(&p), ["kept"], "the volume's data is back");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");
}

#[test]
fn docker_volume_removed_by_hand() {
    let p = Project::new("docker");
    with_data(&p);
    // Docker keeps a volume while a container uses it: removing it by hand means both go.
    docker(&["rm", "--force", &format!("{}-postgres", p.name)]);
    docker(&["volume", "rm", &format!("{}-pgdata", p.name)]);

    let (status, _) = read_status(&p);
    assert_eq!(server(&status, "state"), "absent");
    let detail = server(&status, "detail");
    contains(detail, &format!("volume {}-pgdata", p.name));
    contains(detail, "removed outside xtask: their data is lost");
    assert_eq!(server(&status, "next"), "run `cargo xtask setup`");

    let err = p.fails(&["migrate"]);
    contains(&err, "their data is lost");
    contains(&err, "run `cargo xtask setup`");

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "their data is lost. Starting an empty server");
    contains(&err, "server created and started");
    contains(&err, &format!("created database {}", p.name));
    assert_eq!(p.server_state(), "running");
    assert!(notes(&p).is_empty(), "a new, empty database with its migrations");
    let (status, _) = read_status(&p);
    assert_eq!(status["databases"][0]["pending_migrations"], 0);
    assert_eq!(status["server"]["next"], Value::Null);

    // After a teardown nothing is said to be lost: there is simply nothing.
    p.ok(&["teardown"]);
    let (status, _) = read_status(&p);
    assert_eq!(
        server(&status, "detail"),
        format!("no container {0}-postgres and no volume {0}-pgdata", p.name)
    );
    assert_eq!(server(&status, "next"), "run `cargo xtask setup`");
}

#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn docker_engine_stopped_while_the_container_runs() {
    let mut engine = PrivateDockerEngine::start();
    let mut p = Project::new("docker");
    p.set("DOCKER_HOST", &engine.host);
    with_data(&p);
    engine.stop();

    for engine_setting in ["docker", "auto"] {
        // `auto` must not fall back to an empty native server: the project's data is in Docker.
        p.set("XTASK_ENGINE", engine_setting);
        let (status, table) = read_status(&p);
        assert_eq!(status["engine"], "docker");
        assert_eq!(server(&status, "state"), "unreachable");
        let detail = server(&status, "detail");
        contains(detail, &format!("the Docker engine does not answer, so container {}-postgres", p.name));
        contains(detail, &engine.host);
        assert!(!detail.contains('\n'), "{detail:?}");
        contains(server(&status, "next"), "start the Docker engine");
        contains(server(&status, "next"), "then run `cargo xtask db-up`");
        contains(&table, "unknown (server unreachable)");
    }
    p.set("XTASK_ENGINE", "docker");

    let err = p.fails(&["migrate"]);
    contains(&err, "migrate needs the server, which is unreachable");
    contains(&err, "then run `cargo xtask db-up`");
    for task in ["setup", "db-up"] {
        let err = p.fails(&[task]);
        contains(&err, "the Docker engine does not answer");
        contains(&err, "Start the engine");
        contains(&err, "`cargo xtask db-up` starts the container");
    }

    // The engine stops its containers when it stops: back up, the container is stopped, and
    // db-up is the one command that brings the server back.
    engine.start_daemon();
    let (status, _) = read_status(&p);
    assert_eq!(server(&status, "state"), "stopped");
    assert_eq!(server(&status, "next"), "run `cargo xtask db-up`");
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "started");
    assert_eq!(notes(&p), ["kept"]);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");
    drop(p); // its teardown needs the private engine
}

#[test]
fn native_data_directory_deleted_while_the_server_runs() {
    let p = Project::new("native");
    with_data(&p);
    let pid = postmaster_pid(&p);
    std::fs::remove_dir_all(p.data_dir()).unwrap();

    let (status, _) = read_status(&p);
    assert_eq!(server(&status, "state"), "absent");
    // The orphaned server stops itself within about a minute of losing its lock file; while it
    // runs, status names it.
    if alive(pid) {
        let detail = server(&status, "detail");
        contains(detail, "was deleted while its server ran");
        contains(detail, &format!("pid {pid}"));
        contains(detail, "the databases it held are lost");
    }
    assert_eq!(server(&status, "next"), "run `cargo xtask setup`");
    let err = p.fails(&["migrate"]);
    contains(&err, "migrate needs the server, which is absent");
    contains(&err, "run `cargo xtask setup`");

    let (_, err) = p.ok_err(&["setup"]);
    if err.contains("stopped that server") {
        contains(&err, &format!("stopped that server (pid {pid}). The databases it held are lost"));
    }
    contains(&err, "server created and started");
    contains(&err, &format!("created database {}", p.name));
    assert!(!alive(pid));
    assert_eq!(p.server_state(), "running");
    assert!(notes(&p).is_empty());
}

#[test]
fn native_data_directory_deleted_while_stopped() {
    let p = Project::new("native");
    with_data(&p);
    p.ok(&["db-down"]);
    std::fs::remove_dir_all(p.data_dir()).unwrap();

    let (status, _) = read_status(&p);
    assert_eq!(server(&status, "state"), "absent");
    assert_eq!(server(&status, "detail"), format!("no cluster in {}", p.data_dir().join("pgdata").display()));
    assert_eq!(server(&status, "next"), "run `cargo xtask setup`");
    contains(&p.fails(&["migrate"]), "run `cargo xtask setup`");

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "server created and started");
    contains(&err, &format!("created database {}", p.name));
    assert!(notes(&p).is_empty());
}

#[test]
fn native_stale_postmaster_pid_after_kill_9() {
    let p = Project::new("native");
    with_data(&p);
    let pid = postmaster_pid(&p);
    // SAFETY: the test cluster's own postmaster, started by this test.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_until("the postmaster is gone", || !alive(pid));
    assert!(p.data_dir().join("pgdata/postmaster.pid").exists(), "the pid file is left behind");

    let (status, _) = read_status(&p);
    assert_eq!(server(&status, "state"), "stopped");
    let detail = server(&status, "detail");
    contains(detail, "killed or crashed");
    contains(detail, &format!("postmaster.pid names pid {pid}, which is gone"));
    contains(detail, "its data is kept");
    assert_eq!(server(&status, "next"), "run `cargo xtask db-up`");
    let err = p.fails(&["migrate"]);
    contains(&err, "migrate needs the server, which is stopped");
    contains(&err, "run `cargo xtask db-up`");

    // At once, while the dead postmaster may still be an unreaped zombie that PostgreSQL itself
    // takes for a live one.
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, &format!("names pid {pid}, which is gone); removed that stale postmaster.pid"));
    contains(&err, "started");
    assert_eq!(p.server_state(), "running");
    assert_ne!(postmaster_pid(&p), pid);
    assert_eq!(notes(&p), ["kept"]);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");

    // setup alone recovers too.
    let pid = postmaster_pid(&p);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "removed that stale postmaster.pid");
    contains(&err, "server started");
    assert_eq!(notes(&p), ["kept"]);
}

/// After a crash and a reboot the pid in postmaster.pid may be another cluster's postmaster: that
/// server is not taken for ours, nor touched.
#[test]
fn native_stale_postmaster_pid_naming_another_server() {
    let p = Project::new("native");
    with_data(&p);
    let other = Project::new("native");
    other.ok(&["db-up"]);
    let other_pid = postmaster_pid(&other);
    let pid = postmaster_pid(&p);
    // SAFETY: the test cluster's own postmaster, started by this test.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_until("the postmaster is gone", || !alive(pid));
    let pid_file = p.data_dir().join("pgdata/postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let (_, rest) = text.split_once('\n').unwrap();
    std::fs::write(&pid_file, format!("{other_pid}\n{rest}")).unwrap();

    let (status, _) = read_status(&p);
    assert_eq!(server(&status, "state"), "stopped");
    contains(
        server(&status, "detail"),
        &format!("names pid {other_pid}, which is another server's process now"),
    );
    assert_eq!(server(&status, "next"), "run `cargo xtask db-up`");
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "removed that stale postmaster.pid");
    assert_eq!(notes(&p), ["kept"]);
    assert!(alive(other_pid), "the other server is left alone");
    assert_eq!(other.server_state(), "running");
}

fn postmaster_pid(p: &Project) -> i32 {
    let text = std::fs::read_to_string(p.data_dir().join("pgdata/postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A second Docker engine of this test's own (the machine's engine is shared with other tests and
/// must keep running): its own data and exec roots, socket, pid file and bridge, the test image
/// loaded into it. Stopped, and its bridge removed, when dropped, even after a failure.
struct PrivateDockerEngine {
    dir: tempfile::TempDir,
    /// `unix://...`, for DOCKER_HOST.
    host: String,
    bridge: String,
    daemon: Option<Child>,
}

impl PrivateDockerEngine {
    fn start() -> PrivateDockerEngine {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "a private Docker engine needs root, as dockerd does");
        let dir = tempfile::Builder::new().prefix("xtask-dk-").tempdir_in("/tmp").unwrap();
        let host = format!("unix://{}", dir.path().join("docker.sock").display());
        // Its own bridge: the machine's engine owns docker0. Never `--bridge none`: a dockerd started
        // so deletes the host's docker0, breaking the machine's engine. Ports are published by
        // docker-proxy, so no iptables rules are needed (nor touched).
        let bridge = format!("xtdk{}", std::process::id() % 100_000);
        let subnet = (20..250)
            .map(|n| format!("10.213.{n}"))
            .find(|net| !run("ip", &["-4", "route"]).contains(&format!("{net}.")))
            .expect("a free 10.213.x.0/24 subnet");
        run("ip", &["link", "add", "name", &bridge, "type", "bridge"]);
        let mut engine = PrivateDockerEngine { dir, host, bridge, daemon: None };
        run("ip", &["addr", "add", &format!("{subnet}.1/24"), "dev", &engine.bridge]);
        run("ip", &["link", "set", &engine.bridge, "up"]);
        engine.start_daemon();
        engine.load_test_image();
        engine
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_daemon(&mut self) {
        assert!(self.daemon.is_none());
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.path("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(["--data-root", self.path("data").to_str().unwrap()])
            .args(["--exec-root", self.path("exec").to_str().unwrap()])
            .args(["--pidfile", self.path("docker.pid").to_str().unwrap()])
            .args(["--host", &self.host, "--bridge", &self.bridge])
            .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.daemon = Some(child);
        let start = Instant::now();
        while !self.answers() {
            if start.elapsed() > Duration::from_secs(60) {
                panic!("the private dockerd did not answer within 60 s:\n{}", self.log_tail());
            }
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                self.daemon = None;
                panic!("the private dockerd exited ({status}):\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .args(["--host", &self.host, "version", "--format", "{{.Server.Version}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `docker save` from the machine's engine into `docker load` on this one.
    fn load_test_image(&self) {
        let mut save =
            Command::new("docker").args(["save", &test_image()]).stdout(Stdio::piped()).spawn().unwrap();
        let load = Command::new("docker")
            .args(["--host", &self.host, "load", "--quiet"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {}", test_image());
        assert!(load.status.success(), "docker load: {}", String::from_utf8_lossy(&load.stderr));
    }

    /// Stops the engine as `systemctl stop docker` does (SIGTERM); it stops its containers.
    fn stop(&mut self) {
        let Some(mut child) = self.daemon.take() else { return };
        // SAFETY: our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PrivateDockerEngine {
    fn drop(&mut self) {
        if self.daemon.is_some() && !self.answers() {
            eprintln!("private dockerd log:\n{}", self.log_tail());
        }
        self.stop();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        // Overlay mounts are gone once the engine stopped; what it left is plain files.
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
