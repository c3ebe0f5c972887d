//! `hooks install` / `hooks uninstall`: the git pre-commit hook that runs `cargo xtask pre-commit`.
//! It goes in the common git directory, so every worktree of the repository runs it.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};

use crate::git;
use crate::workspace::Ctx;

/// The line that marks a hook as ours: uninstall removes a hook only when it carries it.
const MARKER: &str = "# Installed by `cargo xtask hooks install`";

const HOOK: &str = "#!/bin/sh
# Installed by `cargo xtask hooks install`; `cargo xtask hooks uninstall` removes it.
# Checks what is staged: migrations (names, history, downs), the declared schema, formatting.
# `git commit --no-verify` skips it.
exec cargo xtask pre-commit --staged
";

pub fn install(ctx: &Ctx) -> Result<()> {
    let dir = git::hooks_dir(&ctx.root).context("find the repository's hooks directory")?;
    let path = dir.join("pre-commit");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == HOOK => {
            eprintln!("hooks: {} is already installed; nothing to do", path.display());
            return Ok(());
        }
        Ok(existing) if !existing.contains(MARKER) => bail!(
            "{} exists and was not written by this tool; it was left as it is. Add the line \
             `cargo xtask pre-commit --staged` to it, or move it away and run `cargo xtask hooks install` again",
            path.display()
        ),
        Ok(_) => eprintln!("hooks: updating {}", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    crate::dotenv::write_atomically(&path, HOOK.as_bytes(), 0o755)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("make {} executable", path.display()))?;
    eprintln!(
        "hooks: installed {}: every commit in this repository and its worktrees runs `cargo xtask pre-commit --staged`",
        path.display()
    );
    Ok(())
}

pub fn uninstall(ctx: &Ctx) -> Result<()> {
    let dir = git::hooks_dir(&ctx.root).context("find the repository's hooks directory")?;
    let path = dir.join("pre-commit");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.contains(MARKER) => {
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
            eprintln!("hooks: removed {}", path.display());
        }
        Ok(_) => eprintln!("hooks: {} was not written by this tool; left as it is", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("hooks: no pre-commit hook in {}; nothing to do", dir.display());
        }
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    }
    Ok(())
}
