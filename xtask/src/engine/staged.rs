//! A small file a client program reads by name (pg_restore's `--use-list`), put where the program
//! runs: a private temporary directory here, or inside the container for `docker exec`.

use anyhow::{Context, Result, bail};

use super::ClientTool;
use crate::os::TempDir;

/// The file, removed when dropped.
pub struct Staged {
    /// Its path as the client program sees it.
    pub path: String,
    place: Place,
}

enum Place {
    Host(#[allow(dead_code)] TempDir),
    Container(String),
}

impl ClientTool {
    /// Writes `contents` (mode 0600) where this tool can read it.
    pub fn stage(&self, contents: &str) -> Result<Staged> {
        match self {
            ClientTool::Host(_) => {
                let dir = TempDir::new("list")?;
                let path = dir.path().join("restore.list");
                std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
                Ok(Staged { path: path.display().to_string(), place: Place::Host(dir) })
            }
            ClientTool::DockerExec { container, .. } => {
                let token = crate::credentials::random_hex(6)?;
                let path = format!("/tmp/xtask-restore-{}-{token}.list", std::process::id());
                let script = "umask 077 && cat > \"$1\"";
                let output = duct::cmd!("docker", "exec", "-i", container, "sh", "-c", script, "sh", &path)
                    .stdin_bytes(contents.as_bytes())
                    .stderr_capture()
                    .stdout_null()
                    .unchecked()
                    .run()
                    .context("run docker exec")?;
                if !output.status.success() {
                    bail!(
                        "write {path} in container {container}: {}",
                        String::from_utf8_lossy(&output.stderr).trim_end()
                    );
                }
                Ok(Staged { path, place: Place::Container(container.clone()) })
            }
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Place::Container(container) = &self.place {
            let _ = duct::cmd!("docker", "exec", container, "rm", "-f", &self.path)
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
        }
    }
}
