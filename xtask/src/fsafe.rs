//! Opening files without being tricked: never through a symbolic link planted at the last path
//! component, never into a file someone else made, and never into a directory another user controls.
//!
//! Root runs this tool in CI, and a link planted where it writes (`ln -s /etc/passwd .xtask.lock`)
//! would otherwise make root write anywhere. Every file the tool writes is opened here.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn flags() -> i32 {
    libc::O_NOFOLLOW | libc::O_CLOEXEC
}

/// A new file (`O_EXCL`: never an existing one, nor a link), with `mode`.
pub fn create_new(path: &Path, mode: u32) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(flags())
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    check_own_regular(&file, path)?;
    Ok(file)
}

/// A new file, replacing a leftover of the same name (a file a killed run left, or a link someone
/// planted: removing a link never touches what it points at).
pub fn create_replacing(path: &Path, mode: u32) -> Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            std::fs::remove_file(path).with_context(|| format!("remove the leftover {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspect {}", path.display())),
    }
    create_new(path, mode)
}

/// Opens (creating it when missing) a file kept between runs, such as a lock file, without
/// truncating it: it must be a regular file of ours with no other name.
pub fn open_kept(path: &Path) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(flags())
        .open(path)
        .map_err(|e| refused_link(path, e))?;
    check_own_regular(&file, path)?;
    Ok(file)
}

/// Opens a file for reading without following a link at its last component, checking it is a
/// regular file owned by `owner` (a server log written by the `postgres` user, say).
pub fn open_read(path: &Path, owner: u32) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags() | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refused_link(path, e))?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.uid() != owner {
        bail!("{} is not a regular file owned by uid {owner}; it is not read", path.display());
    }
    Ok(file)
}

/// Appends `text` to an existing regular file owned by `owner` with one name, never through a link
/// (root adding to a configuration file in a directory the server's user owns).
pub fn append(path: &Path, owner: u32, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(flags() | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refused_link(path, e))?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.uid() != owner || meta.nlink() != 1 {
        bail!("{} is not a regular file of uid {owner} with one name; it is not written", path.display());
    }
    file.write_all(text.as_bytes()).with_context(|| format!("write {}", path.display()))
}

/// Writes `content` to a new temporary file beside `target`, then renames it over `target`: never
/// half-written, never through a link.
pub fn write_atomically(target: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().with_context(|| format!("{} has no file name", target.display()))?;
    let scratch = dir.join(format!(".{}.{}.xtask-tmp", name.to_string_lossy(), std::process::id()));
    // Root rewriting a developer's file (setup run with sudo) leaves it the developer's.
    let keep_owner = std::fs::symlink_metadata(target)
        .ok()
        .filter(|meta| euid() == 0 && meta.is_file() && meta.uid() != 0)
        .map(|meta| (meta.uid(), meta.gid()));
    let written = create_replacing(&scratch, 0o600).and_then(|mut file| {
        file.write_all(content)?;
        if let Some((uid, gid)) = keep_owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .with_context(|| format!("give {} back to uid {uid}", target.display()))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        Ok(())
    });
    let renamed = written.and_then(|()| {
        std::fs::rename(&scratch, target).with_context(|| format!("rename into {}", target.display()))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&scratch);
    }
    renamed.with_context(|| format!("write {}", target.display()))
}

/// `dir` (when it exists) is a directory of ours that nobody else may write in: owned by `owner`
/// and neither group- nor world-writable.
pub fn check_dir(dir: &Path, owner: u32, what: &str) -> Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("inspect {}", dir.display())),
    };
    if !meta.is_dir() {
        bail!(
            "{what} {} is not a directory: choose another with XTASK_DATA_DIR or `data-dir`",
            dir.display()
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    let problem = if meta.uid() != owner {
        format!("is owned by {} (mode {mode:o}), not by {}", user_name(meta.uid()), user_name(owner))
    } else if mode & 0o022 != 0 {
        format!("is writable by others (owner {}, mode {mode:o})", user_name(meta.uid()))
    } else {
        return Ok(());
    };
    bail!(
        "{what} {} {problem}: someone else may have made it to plant files where this tool writes, so it \
         is not used. Remove it (after checking what it holds) and run the command again, or choose \
         another with XTASK_DATA_DIR or `data-dir`",
        dir.display()
    )
}

/// Creates `dir` (its parents as usual) readable by its owner only, whatever the umask; an
/// existing one of ours that group or others may write (made by an earlier version under umask
/// 002) loses those bits, said so. Then [`check_dir`]: one someone else owns is refused.
pub fn private_dir(dir: &Path, what: &str) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("create {what} {}", dir.display()));
        }
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("inspect {}", dir.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() && meta.uid() == euid() && mode & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o022))
            .with_context(|| format!("make {} writable by its owner only", dir.display()))?;
        eprintln!(
            "made {what} {} writable by its owner only (mode {:o}, was {mode:o}): it holds passwords",
            dir.display(),
            mode & !0o022
        );
    }
    check_dir(dir, euid(), what)
}

/// A user's name and uid, for messages.
pub fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns a pointer to static storage or null; read at once.
    let name = unsafe {
        let entry = libc::getpwuid(uid);
        (!entry.is_null()).then(|| std::ffi::CStr::from_ptr((*entry).pw_name).to_string_lossy().into_owned())
    };
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check_own_regular(file: &File, path: &Path) -> Result<()> {
    let meta = file.metadata().with_context(|| format!("inspect {}", path.display()))?;
    if !meta.file_type().is_file() || meta.uid() != euid() || meta.nlink() != 1 {
        bail!(
            "{} is not a regular file of ours with one name (owner {}, {} links): someone may have \
             planted it; remove it and run the command again",
            path.display(),
            user_name(meta.uid()),
            meta.nlink()
        );
    }
    Ok(())
}

fn refused_link(path: &Path, error: std::io::Error) -> anyhow::Error {
    if error.raw_os_error() == Some(libc::ELOOP) {
        anyhow::anyhow!(
            "{} is a symbolic link, which this tool never writes or reads through: remove it (after \
             checking who made it) and run the command again",
            path.display()
        )
    } else {
        anyhow::Error::from(error).context(format!("open {}", path.display()))
    }
}

/// The first folder above `path` that other users cannot enter (no o+x), with its mode: what
/// keeps the `postgres` user, which runs the server as root's stand-in, from reaching `path`.
pub fn closed_to_others(path: &Path) -> Result<Option<(PathBuf, u32)>> {
    for ancestor in path.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor).with_context(|| format!("inspect {}", ancestor.display()))?;
        let mode = mode.permissions().mode() & 0o777;
        if mode & 0o001 == 0 {
            return Ok(Some((ancestor.to_path_buf(), mode)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_new(&link, 0o600).is_err());
        let msg = format!("{:#}", open_kept(&link).unwrap_err());
        assert!(msg.contains("symbolic link"), "{msg}");
        assert!(open_read(&link, euid()).is_err());
        create_replacing(&link, 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    }

    #[test]
    fn hard_links_are_refused_and_atomic_writes_replace_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::hard_link(&victim, dir.path().join("second")).unwrap();
        assert!(open_kept(&dir.path().join("second")).is_err());
        let target = dir.path().join("target");
        std::os::unix::fs::symlink(
            &victim,
            dir.path().join(format!(".target.{}.xtask-tmp", std::process::id())),
        )
        .unwrap();
        write_atomically(&target, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_rewritten_file_keeps_its_owner() {
        assert_eq!(euid(), 0, "this test gives a file to another uid, which needs root (CI runs as root)");
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".env");
        std::fs::write(&target, "A=1\n").unwrap();
        std::os::unix::fs::chown(&target, Some(12345), Some(12346)).unwrap();
        write_atomically(&target, b"A=2\n", 0o600).unwrap();
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (12345, 12346));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "A=2\n");
    }

    #[test]
    fn directories_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_dir(dir.path(), euid(), "the data directory").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let msg = format!("{:#}", check_dir(dir.path(), euid(), "the data directory").unwrap_err());
        assert!(msg.contains("writable by others") && msg.contains("mode 777"), "{msg}");
        let msg = format!("{:#}", check_dir(dir.path(), euid() + 1, "the data directory").unwrap_err());
        assert!(msg.contains("is owned by") && msg.contains("not by"), "{msg}");
    }
}
