//! `ci`'s cargo steps, run so that nothing they start outlives them: each in a process group of its
//! own (a signal to `ci` ends the group), the tests with a temporary directory of their own (TMPDIR)
//! and a marker in their environment, so that what they leave behind when interrupted or crashed
//! (servers that left the group, their data directories, containers) is found and removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::os::TempDir;
use crate::{engine, procs, signals};

/// Set in the tests' environment to the run's name; every process that inherits it is the run's.
pub const MARKER: &str = "XTASK_CI_RUN";

pub struct TestRun {
    root: TempDir,
    /// The run's name: MARKER's value.
    run: String,
}

impl TestRun {
    pub fn new(run: &str) -> Result<TestRun> {
        let root = TempDir::passable_in(&base_dir(), "tests")?;
        let run = TestRun { root, run: run.to_owned() };
        let (root, marker) = (run.root.path().to_owned(), run.marker());
        signals::on_signal(&run.key(), move || {
            let swept = sweep(&root, &marker);
            eprintln!("interrupted: {swept}");
        });
        Ok(run)
    }

    /// `MARKER=<run>`, as /proc shows it in an environment.
    fn marker(&self) -> String {
        format!("{MARKER}={}", self.run)
    }

    fn key(&self) -> String {
        format!("sweep {}", self.root.path().display())
    }

    /// `command` with the run's TMPDIR and marker.
    pub fn command(&self, command: duct::Expression) -> duct::Expression {
        command.env("TMPDIR", self.root.path()).env(MARKER, &self.run)
    }

    /// Ends and removes what the run left; says what that was.
    pub fn finish(self) -> String {
        signals::forget(&self.key());
        sweep(self.root.path(), &self.marker())
    }
}

/// Where the tests' temporary directory goes: TMPDIR when set; else /dev/shm when it is a tmpfs
/// with room, because the tests' servers create and delete tens of thousands of files, and on a disk
/// file system without a journal (ext4 then skips recently freed inodes one by one) that costs most
/// of the run; else /tmp.
fn base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && crate::os::is_tmpfs_with_room(shm, 4 << 30) {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Runs `command` to its end in a process group of its own (see [`signals::run_as_group`]), its
/// output on stderr.
pub fn cargo(command: duct::Expression, shown: &str) -> Result<String> {
    let out = signals::run_as_group(command.stdin_null().stdout_to_stderr(), shown)?;
    if !out.status.success() {
        anyhow::bail!("`{shown}` failed ({}); its output is above", out.status);
    }
    Ok(format!("`{shown}` passed"))
}

/// As [`cargo`], its output kept and given only when it fails: for a step that runs beside
/// another one's output.
pub fn cargo_quietly(command: duct::Expression, shown: &str) -> Result<String> {
    let out = signals::run_as_group(command.stdin_null().stderr_to_stdout().stdout_capture(), shown)?;
    if !out.status.success() {
        anyhow::bail!(
            "`{shown}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
    }
    Ok(format!("`{shown}` passed"))
}

fn sweep(root: &Path, marker: &str) -> String {
    let processes = procs::end(&procs::left_by(root, marker), Duration::from_secs(5));
    let containers = engine::remove_containers_under(root);
    let removed = remove_tree(root);
    let mut left = Vec::new();
    if processes > 0 {
        left.push(format!("{processes} process(es)"));
    }
    if containers > 0 {
        left.push(format!("{containers} container(s) and volume(s)"));
    }
    match (left.is_empty(), removed) {
        (true, Ok(())) => "the tests left nothing behind".into(),
        (false, Ok(())) => {
            format!("ended what the tests left: {}; removed their temporary files", left.join(", "))
        }
        (_, Err(path)) => format!(
            "ended what the tests left ({}), but could not remove {}: remove it by hand",
            if left.is_empty() { "nothing".into() } else { left.join(", ") },
            path.display()
        ),
    }
}

fn remove_tree(root: &Path) -> Result<(), PathBuf> {
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(root.to_owned()),
    }
}
