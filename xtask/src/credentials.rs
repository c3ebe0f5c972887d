//! The services' login passwords: generated here, kept in `<data dir>/.xtask-credentials.toml`
//! (mode 0600, shared by every worktree of the project) and printed only by `db-endpoint`.
//!
//! The server keeps a SCRAM verifier computed here, so a password never travels in SQL text, where
//! server logs or `pg_stat_activity` could show it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = ".xtask-credentials.toml";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

pub struct Credentials {
    path: PathBuf,
    roles: BTreeMap<String, String>,
}

impl Credentials {
    pub fn load(data_dir: &Path) -> Result<Credentials> {
        let path = data_dir.join(FILE_NAME);
        let roles = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file: File =
                    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}")).with_context(|| {
                        format!(
                            "{} is damaged; delete it and run `cargo xtask setup`, which gives the roles new \
                         passwords",
                            path.display()
                        )
                    })?;
                file.roles
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        Ok(Credentials { path, roles })
    }

    pub fn password(&self, role: &str) -> Option<&str> {
        self.roles.get(role).map(String::as_str)
    }

    /// Generates, records and saves a new password for `role`.
    pub fn renew(&mut self, role: &str) -> Result<String> {
        let password = generate_password()?;
        self.roles.insert(role.to_owned(), password.clone());
        self.save()?;
        Ok(password)
    }

    pub fn forget(&mut self, role: &str) -> Result<()> {
        if self.roles.remove(role).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// Written to a 0600 temporary file, then renamed over the old one: never readable by others,
    /// never half-written.
    fn save(&self) -> Result<()> {
        let dir = self.path.parent().expect("the credentials file is inside the data directory");
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let text = toml::to_string(&File { roles: self.roles.clone() })?;
        let temporary = self.path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.with_context(|| format!("write {}", self.path.display()))
    }
}

/// Deletes the file (teardown); a missing one is fine.
pub fn remove(data_dir: &Path) -> Result<()> {
    match std::fs::remove_file(data_dir.join(FILE_NAME)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("delete {}", data_dir.join(FILE_NAME).display()))
        }
        _ => Ok(()),
    }
}

/// 128 random bits as 32 hex digits: safe in URLs, shells and `.env` files without quoting.
fn generate_password() -> Result<String> {
    random_hex(16)
}

/// `bytes` random bytes from the kernel, as hex digits.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    let mut random = std::fs::File::open("/dev/urandom").context("open /dev/urandom")?;
    random.read_exact(&mut buffer).context("read /dev/urandom")?;
    if bytes >= 8 && buffer.iter().all(|b| *b == 0) {
        bail!("/dev/urandom returned only zeros; refusing to use it");
    }
    Ok(crate::naming::hex(&buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut credentials = Credentials::load(dir.path()).unwrap();
        assert_eq!(credentials.password("a"), None);
        let password = credentials.renew("a").unwrap();
        assert_eq!(password.len(), 32);
        assert_ne!(credentials.renew("b").unwrap(), password);
        let mode = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let reloaded = Credentials::load(dir.path()).unwrap();
        assert_eq!(reloaded.password("a"), Some(password.as_str()));
        let mut reloaded = reloaded;
        reloaded.forget("a").unwrap();
        assert_eq!(Credentials::load(dir.path()).unwrap().password("a"), None);
    }

    #[test]
    fn damaged_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "roles = 3").unwrap();
        let msg = format!("{:#}", Credentials::load(dir.path()).err().unwrap());
        assert!(msg.contains("delete it"), "{msg}");
    }
}
