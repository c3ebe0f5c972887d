//! `.env` rewritten in place: our keys updated or appended, every other line kept byte for byte.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Sets `vars` in the file; returns whether its content changed. The file holds passwords, so a
/// new one is readable by its owner only; an existing one keeps its mode, and a symlink (to a file,
/// through any number of links) its target. Refused, with nothing written: a directory, anything
/// but a regular file at the end of the links (a FIFO would block the read, and renaming a file over
/// a device such as /dev/null would replace it), a dangling symlink (the file would be made
/// wherever it points), and a read-only file (someone made it so on purpose).
pub fn update(path: &Path, vars: &[(&str, String)]) -> Result<bool> {
    let target = resolve_symlink(path)?;
    match std::fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => bail!(
            "{} is a directory, not a .env file: move it away so setup can write the file",
            path.display()
        ),
        Ok(meta) if !meta.is_file() => bail!(
            "{} is not a regular file ({}): setup writes the connection URLs only into a regular file; \
             remove it, or point `env-file` (XTASK_ENV_FILE) elsewhere",
            path.display(),
            target.display()
        ),
        _ => {}
    }
    let old = match std::fs::read(&target) {
        Ok(bytes) => String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text; fix or remove it", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let new = rewrite(&old, vars);
    if new == old {
        return Ok(false);
    }
    if std::fs::metadata(&target).is_ok_and(|meta| meta.permissions().readonly()) {
        bail!(
            "{} is read-only, so setup leaves it as it is: make it writable (chmod u+w {}) or point \
             `env-file` (XTASK_ENV_FILE) elsewhere",
            path.display(),
            target.display()
        );
    }
    write_atomically(&target, new.as_bytes(), 0o600).with_context(|| format!("write {}", path.display()))?;
    Ok(true)
}

/// The file a symlink finally points to; the path itself when it is no symlink.
fn resolve_symlink(path: &Path) -> Result<std::path::PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(target) => Ok(target),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is a symlink to {}, which does not exist: create that file, or remove the link so \
                 setup writes a file of its own",
                path.display(),
                std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string())
            ),
            Err(e) => Err(e).with_context(|| format!("follow the symlink {}", path.display())),
        },
        _ => Ok(path.to_path_buf()),
    }
}

/// Pure: replaces `KEY=...` and `export KEY=...` lines of our keys, appends the missing ones.
pub fn rewrite(old: &str, vars: &[(&str, String)]) -> String {
    let mut seen = vec![false; vars.len()];
    let mut out = String::with_capacity(old.len() + 128);
    for line in old.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = &body[..body.len() - body.trim_start().len()];
        let rest = body.trim_start();
        let (export, assignment) = match rest.strip_prefix("export ") {
            Some(after) => ("export ", after.trim_start()),
            None => ("", rest),
        };
        let matched = vars.iter().position(|(key, _)| {
            assignment.strip_prefix(key).is_some_and(|after| after.trim_start().starts_with('='))
        });
        match matched {
            Some(i) => {
                seen[i] = true;
                out.push_str(&format!("{indent}{export}{}={}{ending}", vars[i].0, vars[i].1));
            }
            None => out.push_str(line),
        }
    }
    for (i, (key, value)) in vars.iter().enumerate() {
        if !seen[i] {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    out
}

/// Replaces `target` through a 0600 scratch file beside it, so a failure leaves the old content
/// whole. The target keeps its mode; a new one gets `new_mode`.
pub fn write_atomically(target: &Path, content: &[u8], new_mode: u32) -> Result<()> {
    let mode = std::fs::metadata(target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(new_mode);
    crate::fsafe::write_atomically(target, content, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn vars() -> Vec<(&'static str, String)> {
        vec![("DATABASE_URL", "postgres://new".into())]
    }

    #[test]
    fn keeps_other_lines_byte_for_byte() {
        let old =
            "# comment\r\nFOO=bar\n\nexport DATABASE_URL=postgres://old\n  SPACED = x\nDATABASE_URL_X=keep";
        let new = rewrite(old, &vars());
        assert_eq!(
            new,
            "# comment\r\nFOO=bar\n\nexport DATABASE_URL=postgres://new\n  SPACED = x\nDATABASE_URL_X=keep"
        );
    }

    #[test]
    fn appends_missing_keys_on_a_new_line() {
        assert_eq!(rewrite("A=1", &vars()), "A=1\nDATABASE_URL=postgres://new\n");
        assert_eq!(rewrite("", &vars()), "DATABASE_URL=postgres://new\n");
    }

    #[test]
    fn links_are_followed_and_odd_files_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let message = |path: &Path| format!("{:#}", update(path, &vars()).unwrap_err());
        // A chain of links: the file at its end is written, every link stays a link.
        std::fs::write(d.join("real.env"), "A=1\n").unwrap();
        symlink("real.env", d.join("middle")).unwrap();
        symlink(d.join("middle"), d.join(".env")).unwrap();
        assert!(update(&d.join(".env"), &vars()).unwrap());
        assert!(std::fs::symlink_metadata(d.join("middle")).unwrap().file_type().is_symlink());
        assert_eq!(
            std::fs::read_to_string(d.join("real.env")).unwrap(),
            "A=1\nDATABASE_URL=postgres://new\n"
        );

        symlink("nowhere/.env", d.join("dangling")).unwrap();
        assert!(message(&d.join("dangling")).contains("which does not exist"));
        assert!(!d.join("nowhere").exists());

        std::fs::create_dir(d.join("dir")).unwrap();
        assert!(message(&d.join("dir")).contains("is a directory"));
        symlink("dir", d.join("to-dir")).unwrap();
        assert!(message(&d.join("to-dir")).contains("is a directory"));

        let fifo = d.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        symlink(&fifo, d.join("to-fifo")).unwrap();
        assert!(message(&d.join("to-fifo")).contains("not a regular file"));
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        std::fs::write(d.join("locked"), "A=1\n").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(message(&d.join("locked")).contains("read-only"));
        assert_eq!(std::fs::read_to_string(d.join("locked")).unwrap(), "A=1\n");
        // Read-only and already right: nothing to write, nothing refused.
        std::fs::write(d.join("done"), "DATABASE_URL=postgres://new\n").unwrap();
        std::fs::set_permissions(d.join("done"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(!update(&d.join("done"), &vars()).unwrap());
    }

    #[test]
    fn unchanged_when_already_set() {
        let text = "DATABASE_URL=postgres://new\n";
        assert_eq!(rewrite(text, &vars()), text);
    }
}
