//! Operating-system facts: who we run as, and who holds a TCP port.

use std::net::{Ipv4Addr, TcpListener};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Uid and gid of a system user, from the system's user database.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam takes a NUL-terminated string; the returned record is read at once,
    // before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwnam(c_name.as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// Opens (creating) `path` and holds an exclusive `flock` on it until the file is dropped; the
/// lock also ends when the process dies.
pub fn exclusive_lock(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use anyhow::Context;
    use std::os::fd::AsRawFd;
    // Never through a planted link, never someone else's file.
    let file = crate::fsafe::open_kept(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("lock {}", path.display()));
    }
    Ok(file)
}

/// As [`exclusive_lock`], saying `waiting` on stderr first when another process holds the lock.
pub fn exclusive_lock_noting(path: &std::path::Path, waiting: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = crate::fsafe::open_kept(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    eprintln!("{waiting}");
    drop(file);
    exclusive_lock(path)
}

/// `None` when the port is free on 127.0.0.1, else a description of its holder when one can be found.
pub fn port_holder(port: u16) -> Option<String> {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
        return None;
    }
    Some(listening_process(port).unwrap_or_else(|| "another process".into()))
}

/// Finds the process listening on `port` through /proc (Linux only; elsewhere nothing is found).
fn listening_process(port: u16) -> Option<String> {
    let inodes = listening_socket_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if inodes.iter().any(|inode| target == format!("socket:[{inode}]")) {
                let comm = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    None
}

fn listening_socket_inodes(port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == LISTEN && local_port == Some(port) && *inode != "0" {
                inodes.push(inode.to_string());
            }
        }
    }
    inodes
}

/// A child process that takes Ctrl-C and SIGTERM as usual although this process blocks them
/// (`signals::handle`): its signal mask is cleared before it starts.
pub fn signals_unblocked(expression: duct::Expression) -> duct::Expression {
    use std::os::unix::process::CommandExt;
    expression.before_spawn(|command| {
        // SAFETY: between fork and exec only sigemptyset and sigprocmask run; both are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        Ok(())
    })
}

/// A child process (pg_dump, pg_restore) that is killed when this process dies, however it dies:
/// a killed xtask leaves no dump or restore running on. Linux only (PR_SET_PDEATHSIG); elsewhere
/// the child outlives a killed parent.
pub fn dies_with_parent(expression: duct::Expression) -> duct::Expression {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        expression.before_spawn(move |command| {
            // SAFETY: between fork and exec only prctl, getppid and _exit run; all are async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                    // The parent died before the request took effect.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
            Ok(())
        })
    }
    #[cfg(not(target_os = "linux"))]
    expression
}

/// Runs a command with its output on our stderr (our stdout is kept for reports and JSON) and no
/// stdin; an error naming `shown` when it fails.
pub fn run_to_stderr(command: duct::Expression, shown: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let status = command
        .stdin_null()
        .stdout_to_stderr()
        .unchecked()
        .run()
        .with_context(|| format!("run {shown}"))?
        .status;
    if !status.success() {
        anyhow::bail!("`{shown}` failed ({status}); its output is above");
    }
    Ok(())
}

/// Whether `dir` is on a tmpfs (memory, no disk) with at least `room` bytes free. Linux only.
pub fn is_tmpfs_with_room(dir: &std::path::Path, room: u64) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs fills the zeroed struct we own from a NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    stat.f_type as i64 == TMPFS_MAGIC && (stat.f_bavail as u64).saturating_mul(stat.f_bsize as u64) >= room
}

/// A private directory under the system's temporary directory, removed with everything in it when
/// dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(purpose: &str) -> anyhow::Result<TempDir> {
        TempDir::with_mode_in(&std::env::temp_dir(), purpose, 0o700)
    }

    /// As [`TempDir::new`], in `base`, and others may pass through it (not list it): for a run
    /// whose servers work inside it as another user.
    pub fn passable_in(base: &std::path::Path, purpose: &str) -> anyhow::Result<TempDir> {
        TempDir::with_mode_in(base, purpose, 0o711)
    }

    fn with_mode_in(base: &std::path::Path, purpose: &str, mode: u32) -> anyhow::Result<TempDir> {
        use anyhow::Context;
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let token = crate::credentials::random_hex(6)?;
        let path = base.join(format!("xtask-{purpose}-{}-{token}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&path)
            .with_context(|| format!("create {}", path.display()))?;
        // The umask may have taken bits away.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("create {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_listener() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).expect("port is taken");
        assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
        drop(listener);
        assert_eq!(port_holder(port), None);
    }
}
