//! Another local user, and the `postgres` OS user the server runs as, play the attacker against a
//! native cluster set up as root with the defaults (issue 20, findings 1, 2 and part of 13): no
//! superuser login with a known password, no credentials to read, no link that makes root write
//! outside the data directory, no data directory someone else prepared.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::{Project, contains};

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

fn require_root() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "these tests play another local user against root's cluster: run them as root (CI does)");
}

/// A local user made for one test (`useradd`), removed with its home when dropped, even when the
/// test fails.
pub struct LocalUser {
    name: String,
    uid: u32,
    gid: u32,
}

static USERS: AtomicU32 = AtomicU32::new(0);

impl LocalUser {
    pub fn new() -> LocalUser {
        require_root();
        let name = format!("xtatk{}x{}", std::process::id(), USERS.fetch_add(1, Ordering::SeqCst));
        let out =
            Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]).output().unwrap();
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        LocalUser { uid: id(&name, "-u"), gid: id(&name, "-g"), name }
    }

    /// A command run as this user, from `/`.
    pub fn command(&self, program: &str) -> Command {
        as_user(program, self.uid, self.gid)
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["--remove", &self.name]).output();
    }
}

fn id(name: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn as_user(program: &str, uid: u32, gid: u32) -> Command {
    let mut command = Command::new(program);
    command.uid(uid).gid(gid).current_dir("/").env_clear().env("PATH", "/usr/bin:/bin");
    command
}

/// The `postgres` OS user the server runs as: what a superuser's `COPY ... TO PROGRAM` runs as.
fn as_postgres(program: &str) -> Command {
    as_user(program, id("postgres", "-u"), id("postgres", "-g"))
}

/// psql as `who`, logging in over TCP on 127.0.0.1 as the admin with `password`.
fn admin_login(mut who: Command, port: u16, password: &str) -> Output {
    who.args(["-X", "-w", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-tAc", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"])
        .env("PGPASSWORD", password)
        .output()
        .unwrap()
}

/// Every name the tool writes in the data directory (the credentials' temporary file is named
/// after a pid it cannot predict: every pid from ours on, in both spellings it ever had).
fn written_names() -> Vec<String> {
    let mut names: Vec<String> = [
        ".xtask.lock",
        ".xtask-data-dir",
        ".xtask-credentials.toml",
        ".xtask-credentials.lock",
        ".xtask-docker.lock",
        ".xtask-docker-volume",
        "initdb.pw",
        "server.log",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let first = std::process::id();
    for pid in first..first + 2000 {
        names.push(format!(".xtask-credentials.tmp{pid}"));
        names.push(format!("..xtask-credentials.toml.{pid}.xtask-tmp"));
    }
    names
}

/// Links, made as the `postgres` user, from every written name in `dir` (replacing what is there,
/// as the owner of a directory may) to a path of its own under `victims` (none exists yet): how
/// many could be planted.
fn plant_links(dir: &Path, victims: &Path) -> usize {
    let mut script = String::new();
    for (n, name) in written_names().iter().enumerate() {
        script.push_str(&format!(
            "ln -sfn '{}' '{}' 2>/dev/null && echo planted\n",
            victims.join(format!("victim{n}")).display(),
            dir.join(name).display()
        ));
    }
    let mut shell = as_postgres("/bin/sh")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut shell.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = shell.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A root-only directory in which a link's target would appear if root wrote through it.
fn victims_dir(p: &Project) -> PathBuf {
    let victims = p.path().join("victims");
    std::fs::create_dir(&victims).unwrap();
    std::fs::set_permissions(&victims, std::fs::Permissions::from_mode(0o700)).unwrap();
    victims
}

fn assert_no_victim(victims: &Path) {
    let made: Vec<_> = std::fs::read_dir(victims).unwrap().flatten().map(|e| e.path()).collect();
    assert!(made.is_empty(), "root wrote through planted links: {made:?}");
}

#[test]
fn another_local_user_cannot_log_in_as_admin_nor_read_the_credentials() {
    let attacker = LocalUser::new();
    let mut p = Project::new("native");
    p.unset("XTASK_PASSWORD");
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("warning"), "{err}");

    let refused = admin_login(attacker.command(PSQL), p.port, "postgres");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "the old default let another user in: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    contains(&stderr, "password authentication failed");

    let credentials = p.data_dir().join(".xtask-credentials.toml");
    let meta = std::fs::metadata(&credentials).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    let read = attacker.command("/bin/cat").arg(&credentials).output().unwrap();
    assert!(!read.status.success(), "another user read {}", credentials.display());
    let read = as_postgres("/bin/cat").arg(&credentials).output().unwrap();
    assert!(!read.status.success(), "the postgres user read {}", credentials.display());

    // The generated password is what the tool and .env use.
    let generated = p.generated_admin_password().expect("an admin password on file");
    assert_eq!(generated.len(), 32);
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    contains(&env, &format!("XTASK_ADMIN_URL=postgres://postgres:{generated}@127.0.0.1:{}/postgres", p.port));
    let accepted = admin_login(attacker.command(PSQL), p.port, &generated);
    assert_eq!(String::from_utf8_lossy(&accepted.stdout).trim(), "t", "{accepted:?}");
    p.admin().batch_execute("SELECT 1").unwrap();
}

/// As root the data directory stays root's: neither the `postgres` user (which owns pgdata) nor
/// another user can plant a link where root writes; a link the `postgres` user plants in pgdata
/// for the server log is never read through.
#[test]
fn planted_links_never_make_root_write_or_read_through_them() {
    let attacker = LocalUser::new();
    let p = Project::new("native");
    let victims = victims_dir(&p);
    p.ok(&["setup"]);
    let dir = p.data_dir();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.uid(), 0, "the data directory is root's");
    assert_eq!(meta.mode() & 0o022, 0, "nobody else may write in it: mode {:o}", meta.mode() & 0o777);
    assert_eq!(std::fs::metadata(dir.join("pgdata")).unwrap().uid(), id("postgres", "-u"));

    assert_eq!(plant_links(&dir, &victims), 0, "the postgres user planted links in root's data directory");
    let out = attacker
        .command("/bin/ln")
        .args(["-s", "/etc/passwd"])
        .arg(dir.join(".xtask.lock"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "another user planted a link in the data directory");
    p.ok(&["setup"]);
    p.ok(&["db-down"]);

    // In pgdata, the postgres user's, a link for the server log to a file only root may read:
    // the failing start's message never shows that file.
    let secret = p.path().join("root-only");
    std::fs::write(&secret, "ROOT-ONLY-CONTENT\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.join("pgdata/server.log");
    let _ = std::fs::remove_file(&log);
    let out = as_postgres("/bin/ln").arg("-s").arg(&secret).arg(&log).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = p.fails(&["db-up"]);
    assert!(!err.contains("ROOT-ONLY-CONTENT"), "root read through the planted log link:\n{err}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "ROOT-ONLY-CONTENT\n");
    assert_no_victim(&victims);
}

/// A data directory someone else made (another owner, world-writable, our marker planted in it)
/// is refused before anything is written in it.
#[test]
fn data_directory_prepared_by_another_user_is_refused() {
    let attacker = LocalUser::new();
    let p = Project::new("native");
    let dir = p.data_dir();
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(attacker.uid), Some(attacker.gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = attacker
        .command("/bin/sh")
        .args(["-c", &format!("echo planted > '{}/.xtask-data-dir'", dir.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let err = p.fails(&["setup"]);
    contains(&err, &format!("owned by {} (uid {})", attacker.name, attacker.uid));
    contains(&err, "mode 777");
    contains(&err, "XTASK_DATA_DIR");
    let left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
    assert_eq!(left, [".xtask-data-dir"], "nothing was written in it");
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), attacker.uid, "never re-owned");
}

/// A cluster made by earlier versions: the data directory the postgres user's (server log beside
/// pgdata) and the admin password the old default `postgres`. The postgres user plants links for
/// every name root writes. The next setup takes the directory back, rotates the password, follows
/// no link, and keeps the data.
#[test]
fn cluster_in_the_old_layout_with_the_old_password_is_migrated_and_keeps_its_data() {
    let mut p = Project::new("native");
    p.set("XTASK_PASSWORD", "postgres");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "warning: the configured admin password");
    contains(&err, "is a well-known default");
    p.admin().batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')").unwrap();
    p.ok(&["db-down"]);

    let dir = p.data_dir();
    let (pg_uid, pg_gid) = (id("postgres", "-u"), id("postgres", "-g"));
    std::fs::rename(dir.join("pgdata/server.log"), dir.join("server.log")).unwrap();
    for path in [dir.clone(), dir.join("server.log")] {
        std::os::unix::fs::chown(&path, Some(pg_uid), Some(pg_gid)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let victims = victims_dir(&p);
    let planted = plant_links(&dir, &victims);
    assert!(planted > 1000, "links planted in the old layout: {planted}");
    p.unset("XTASK_PASSWORD");

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "it is root's now");
    contains(&err, "had the old default password `postgres`");
    assert_no_victim(&victims);
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 0);
    let generated = p.generated_admin_password().expect("the new password on file");
    assert_ne!(generated, "postgres");
    let rows = p.admin().query("SELECT v FROM kept", &[]).unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "still here");
    let refused = admin_login(as_postgres(PSQL), p.port, "postgres");
    assert!(!refused.status.success(), "the old default still works");
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("root's now") && !err.contains("old default"), "said once: {err}");
    assert_no_victim(&victims);
}

#[test]
fn admin_user_with_a_quote_and_an_empty_port_are_errors() {
    let mut p = Project::new("native");
    p.set("XTASK_USER", "adm'in");
    let err = p.fails(&["setup"]);
    contains(&err, "XTASK_USER=\"adm'in\"");
    contains(&err, "not a valid admin user name");
    assert!(!p.data_dir().exists(), "nothing was made");
    p.unset("XTASK_USER");
    p.write("Cargo.toml", "[workspace]\nmembers = []\n\n[workspace.metadata.xtask]\nuser = \"a\\\"b\"\n");
    contains(&p.fails(&["setup"]), "line 5, column 8: `user`");
    p.write("Cargo.toml", "[workspace]\nmembers = []\n\n[workspace.metadata.xtask]\n");
    p.set("XTASK_PORT", "");
    let err = p.fails(&["setup"]);
    contains(&err, "XTASK_PORT=\"\"");
    assert!(!p.data_dir().exists(), "nothing was made");
    let port = p.port.to_string();
    p.set("XTASK_PORT", &port);
}

/// The docker engine: the container gets the generated password, not `postgres`; one made with
/// the old default gets it on the next setup, and is still the same container.
#[test]
fn docker_admin_password_is_generated_and_the_old_default_rotated() {
    let attacker = LocalUser::new();
    let mut p = Project::new("docker");
    p.set("XTASK_PASSWORD", "postgres");
    let (_, err) = p.ok_err(&["setup"]);
    assert!(
        !err.contains("warning"),
        "docker publishes on loopback too, but its password is the user's: {err}"
    );
    p.admin().batch_execute("CREATE TABLE kept (v int)").unwrap();
    p.unset("XTASK_PASSWORD");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "had the old default password `postgres`");
    assert!(!err.contains("creating container"), "the same container: {err}");
    let refused = admin_login(attacker.command(PSQL), p.port, "postgres");
    assert!(!refused.status.success(), "the old default still works");
    p.admin().batch_execute("SELECT * FROM kept").unwrap();

    let mut fresh = Project::new("docker");
    fresh.unset("XTASK_PASSWORD");
    fresh.ok(&["setup"]);
    assert!(!admin_login(attacker.command(PSQL), fresh.port, "postgres").status.success());
    fresh.admin().batch_execute("SELECT 1").unwrap();
}

/// A rotation killed half-way leaves the new password on file with the old one beside it, the
/// server having either: the next setup logs in with whichever works and finishes the rotation.
#[test]
fn interrupted_rotation_never_locks_the_admin_out() {
    let mut p = Project::new("native");
    p.set("XTASK_PASSWORD", "postgres");
    p.ok(&["setup"]);
    p.unset("XTASK_PASSWORD");
    let file = p.data_dir().join(".xtask-credentials.toml");
    let new = crate::harness::random_password();
    let half_done = format!("[admin]\npassword = \"{new}\"\nprevious = \"postgres\"\n");

    // Killed before the server got the new password: it still has `postgres`.
    std::fs::write(&file, &half_done).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "it now has a generated one");
    assert_eq!(p.generated_admin_password().as_deref(), Some(new.as_str()));
    assert!(!std::fs::read_to_string(&file).unwrap().contains("previous"), "the fallback is dropped");
    p.admin().batch_execute("SELECT 1").unwrap();

    // Killed after the server got it, before the file dropped the fallback.
    std::fs::write(&file, &half_done).unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("generated one"), "nothing left to rotate: {err}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("previous"), "the fallback is dropped");
    p.admin().batch_execute("SELECT 1").unwrap();
    assert!(!admin_login(as_postgres(PSQL), p.port, "postgres").status.success());
}

/// Three `db-up` at once on a cluster with the old default password: one rotates it, the others
/// find the new password on file; all succeed and the admin logs in with what is on file.
#[test]
fn concurrent_rotations_agree_on_one_password() {
    let mut p = Project::new("native");
    p.set("XTASK_PASSWORD", "postgres");
    p.ok(&["db-up"]);
    p.unset("XTASK_PASSWORD");
    let runs: Vec<_> = (0..3)
        .map(|_| {
            p.command(&["db-up"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let generated = p.generated_admin_password().expect("a password on file");
    assert_ne!(generated, "postgres");
    p.admin().batch_execute("SELECT 1").unwrap();
    p.ok(&["branches"]);
}

/// As root, the cluster's own small files (postmaster.pid, PG_VERSION) live in a directory the
/// `postgres` user owns: a link planted there to a FIFO, or to a file of root's, is never read
/// (the read would hang, or show root's file in messages); db-status still answers.
#[test]
fn links_in_pgdata_are_never_read() {
    require_root();
    let p = Project::new("native");
    p.ok(&["setup"]);
    p.ok(&["db-down"]);
    let pgdata = p.data_dir().join("pgdata");
    let fifo = pgdata.join("planted.fifo");
    let made = as_postgres("sh")
        .arg("-c")
        .arg(format!(
            "mkfifo '{0}' && ln -sfn '{0}' '{1}'",
            fifo.display(),
            pgdata.join("postmaster.pid").display()
        ))
        .status()
        .unwrap();
    assert!(made.success(), "plant the FIFO as the postgres user");
    let mut child = p
        .command(&["db-status", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            // Unplanted first, or the teardown at the end of the test would hang as well.
            let _ = std::fs::remove_file(pgdata.join("postmaster.pid"));
            panic!("db-status hung reading a FIFO planted as postmaster.pid");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(pgdata.join("postmaster.pid")).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    p.ok(&["db-up"]);
}
