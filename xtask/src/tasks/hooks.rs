//! `hooks install` / `hooks uninstall`: the git pre-commit hook that runs `cargo xtask pre-commit`.
//! It goes in the common git directory, so every worktree of the repository runs it.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};

use crate::git;
use crate::workspace::Ctx;

/// The hook, for a workspace at `prefix` inside the worktree (git runs hooks at its top).
fn hook_text(prefix: &str) -> String {
    let cd = if prefix.is_empty() {
        String::new()
    } else {
        format!("cd '{}' || exit 1\n", prefix.replace('\'', r"'\''"))
    };
    format!(
        "#!/bin/sh
# Installed by `cargo xtask hooks install`; `cargo xtask hooks uninstall` removes it.
# Checks what is staged: migrations (names, history, downs), the declared schema, formatting.
# `git commit --no-verify` skips it.
{cd}exec cargo xtask pre-commit --staged
"
    )
}

pub fn install(ctx: &Ctx) -> Result<()> {
    let (dir, configured) = git::hooks_dir(&ctx.root).context("find the repository's hooks directory")?;
    let path = dir.join("pre-commit");
    let hook = hook_text(&git::prefix(&ctx.root)?);
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == hook => {
            eprintln!("hooks: {} is already installed; nothing to do", path.display());
            return Ok(());
        }
        Ok(_) => bail!(
            "{} exists and is not the hook this tool writes (another tool's, or edited by hand); it was \
             left as it is. Add the line `cargo xtask pre-commit --staged` to it, or move it away and run \
             `cargo xtask hooks install` again",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    crate::dotenv::write_atomically(&path, hook.as_bytes(), 0o755)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("make {} executable", path.display()))?;
    match configured {
        None => eprintln!(
            "hooks: installed {}: every commit in this repository and its worktrees runs \
             `cargo xtask pre-commit --staged`",
            path.display()
        ),
        Some(setting) => eprintln!(
            "hooks: installed {}, because core.hooksPath is `{setting}`: commits run it wherever git \
             uses that setting",
            path.display()
        ),
    }
    Ok(())
}

pub fn uninstall(ctx: &Ctx) -> Result<()> {
    let (dir, _) = git::hooks_dir(&ctx.root).context("find the repository's hooks directory")?;
    let path = dir.join("pre-commit");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == hook_text(&git::prefix(&ctx.root)?) => {
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
            eprintln!("hooks: removed {}", path.display());
        }
        Ok(_) => eprintln!(
            "hooks: {} is not the hook this tool writes (another tool's, or edited by hand); left as it is",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("hooks: no pre-commit hook in {}; nothing to do", dir.display());
        }
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    }
    Ok(())
}
