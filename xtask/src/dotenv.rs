//! `.env` rewritten in place: our keys updated or appended, every other line kept byte for byte.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Sets `vars` in the file; returns whether its content changed. The file holds passwords, so a
/// new one is readable by its owner only; an existing one keeps its mode, and a symlink its target.
pub fn update(path: &Path, vars: &[(&str, String)]) -> Result<bool> {
    let target = resolve_symlink(path)?;
    if target.is_dir() {
        bail!("{} is a directory, not a .env file: move it away so setup can write the file", path.display());
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
    write_atomically(&target, new.as_bytes(), 0o600).with_context(|| format!("write {}", path.display()))?;
    Ok(true)
}

fn resolve_symlink(path: &Path) -> Result<std::path::PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let link = std::fs::read_link(path)?;
            Ok(path.parent().unwrap_or(Path::new(".")).join(link))
        }
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
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().with_context(|| format!("{} has no file name", target.display()))?;
    let scratch = dir.join(format!(".{}.{}.xtask-tmp", name.to_string_lossy(), std::process::id()));
    let mode = std::fs::metadata(target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(new_mode);
    let _ = std::fs::remove_file(&scratch);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&scratch)
        .with_context(|| format!("create {}", scratch.display()))?;
    file.write_all(content)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    drop(file);
    std::fs::rename(&scratch, target).inspect_err(|_| {
        let _ = std::fs::remove_file(&scratch);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unchanged_when_already_set() {
        let text = "DATABASE_URL=postgres://new\n";
        assert_eq!(rewrite(text, &vars()), text);
    }
}
