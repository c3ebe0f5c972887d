//! Other processes, as Linux's /proc shows them: which exist, where they work, which group they
//! are in, and ending them. Elsewhere none are found.

use std::path::Path;
use std::time::{Duration, Instant};

/// Every process id /proc lists.
pub fn all() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// Whether `pid` exists and is not a zombie (a zombie has exited; only its parent's wait is left).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) == 0 }
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && state(pid) != Some('Z')
}

/// The one-letter state of `/proc/<pid>/stat` (R, S, Z, ...).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The process group of `pid`.
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(2)?.parse().ok()
}

/// The program's name (`/proc/<pid>/comm`).
pub fn name(pid: i32) -> Option<String> {
    Some(std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_owned())
}

/// The working directory of `pid`; a deleted one keeps its old path, with " (deleted)" after it.
pub fn cwd(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The arguments `pid` was started with.
pub fn args(pid: i32) -> Vec<Vec<u8>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect()
}

/// Whether `entry` (`NAME=value`) is in the environment `pid` was started with (readable for
/// one's own processes, and for root).
pub fn has_env(pid: i32, entry: &str) -> bool {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0).any(|e| e == entry.as_bytes())
}

/// Live processes of process group `group`.
pub fn in_group(group: i32) -> Vec<i32> {
    all().into_iter().filter(|pid| group_of(*pid) == Some(group) && alive(*pid)).collect()
}

/// Live processes, other than this one, that work in `root` or below it (or did, before it was
/// deleted), that name a path in it among their arguments, or that carry `marker` (`NAME=value`) in
/// their environment: what a run given `root` and `marker` started, even the servers that left its
/// process group.
pub fn left_by(root: &Path, marker: &str) -> Vec<i32> {
    let root = root.as_os_str().as_encoded_bytes();
    let inside = |path: &[u8]| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/") || rest == b" (deleted)")
    };
    let me = std::process::id() as i32;
    all()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let cwd = cwd(*pid).map(|p| p.into_os_string().into_encoded_bytes()).unwrap_or_default();
            inside(&cwd) || args(*pid).iter().any(|arg| inside(arg)) || has_env(*pid, marker)
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Sends SIGTERM to `pids`, SIGKILL to those still alive after `grace`, and waits (up to 5 s more)
/// until none is left. Returns how many there were.
pub fn end(pids: &[i32], grace: Duration) -> usize {
    let signal_all = |signal| {
        for pid in pids {
            // SAFETY: plain kill(2) on processes found above; a pid gone since gets ESRCH.
            unsafe { libc::kill(*pid, signal) };
        }
    };
    signal_all(libc::SIGTERM);
    if !wait_gone(pids, grace) {
        signal_all(libc::SIGKILL);
        wait_gone(pids, Duration::from_secs(5));
    }
    pids.len()
}

/// Ends every process of group `group` as [`end`] does, the group signalled as one.
pub fn end_group(group: i32, grace: Duration) {
    // SAFETY: killpg(2) on a group this process made; no such group gives ESRCH.
    unsafe { libc::killpg(group, libc::SIGTERM) };
    if !wait_until(grace, || in_group(group).is_empty()) {
        // SAFETY: as above.
        unsafe { libc::killpg(group, libc::SIGKILL) };
        wait_until(Duration::from_secs(5), || in_group(group).is_empty());
    }
}

fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    wait_until(limit, || pids.iter().all(|pid| !alive(*pid)))
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
