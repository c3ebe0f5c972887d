//! The services' login passwords, and the admin's on the servers this tool makes: generated here,
//! kept in `<data dir>/.xtask-credentials.toml` (mode 0600, shared by every worktree of the
//! project) and printed only by `db-endpoint` and into `.env`.
//!
//! The server keeps a SCRAM verifier computed here, so a password never travels in SQL text, where
//! server logs or `pg_stat_activity` could show it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = ".xtask-credentials.toml";
/// Held while the file is read, changed and written, so concurrent runs never lose each other's
/// passwords.
const LOCK_NAME: &str = ".xtask-credentials.lock";

/// Files written before the admin entry existed have only `roles`, and still load.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin: Option<AdminSecret>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
    /// The Redis server's admin password (native and docker engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redis_admin: Option<String>,
    /// The services' Redis users' passwords, by user name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    redis_users: BTreeMap<String, String>,
}

/// The admin's generated password; `previous` is kept until the server is known to have
/// `password` (a rotation killed half-way must not lock the admin out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSecret {
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

pub struct Credentials {
    path: PathBuf,
    file: File,
}

impl Credentials {
    pub fn load(data_dir: &Path) -> Result<Credentials> {
        let path = data_dir.join(FILE_NAME);
        Ok(Credentials { file: read(&path)?, path })
    }

    pub fn password(&self, role: &str) -> Option<&str> {
        self.file.roles.get(role).map(String::as_str)
    }

    pub fn admin(&self) -> Option<&AdminSecret> {
        self.file.admin.as_ref()
    }

    /// Records the admin's password (and the one it replaces, until the server has the new one).
    pub fn set_admin(&mut self, secret: AdminSecret) -> Result<()> {
        self.change(|file| file.admin = Some(secret))
    }

    /// Generates, records and saves a new password for `role`.
    pub fn renew(&mut self, role: &str) -> Result<String> {
        let password = generate_password()?;
        let recorded = password.clone();
        self.change(|file| {
            file.roles.insert(role.to_owned(), recorded);
        })?;
        Ok(password)
    }

    pub fn redis_admin(&self) -> Option<&str> {
        self.file.redis_admin.as_deref()
    }

    /// The Redis admin's password: the one on file, else a new one, recorded before any server has it.
    pub fn redis_admin_or_new(&mut self) -> Result<String> {
        if let Some(password) = &self.file.redis_admin {
            return Ok(password.clone());
        }
        let password = generate_password()?;
        let recorded = password.clone();
        self.change(|file| {
            file.redis_admin.get_or_insert(recorded);
        })?;
        // Another run may have recorded one first: that one wins.
        Ok(self.file.redis_admin.clone().unwrap_or(password))
    }

    pub fn redis_password(&self, user: &str) -> Option<&str> {
        self.file.redis_users.get(user).map(String::as_str)
    }

    /// The Redis user's password on file, else a new one, recorded before the server has it.
    pub fn redis_password_or_new(&mut self, user: &str) -> Result<String> {
        if let Some(password) = self.redis_password(user) {
            return Ok(password.to_owned());
        }
        let password = generate_password()?;
        self.change(|file| {
            file.redis_users.entry(user.to_owned()).or_insert(password);
        })?;
        Ok(self.file.redis_users[user].clone())
    }

    pub fn forget_redis(&mut self, users: &[String]) -> Result<()> {
        if users.iter().any(|u| self.file.redis_users.contains_key(u)) {
            self.change(|file| file.redis_users.retain(|u, _| !users.contains(u)))?;
        }
        Ok(())
    }

    /// Teardown of the Redis server: its admin's and users' passwords go with it.
    pub fn forget_redis_server(&mut self) -> Result<()> {
        if self.file.redis_admin.is_some() || !self.file.redis_users.is_empty() {
            self.change(|file| {
                file.redis_admin = None;
                file.redis_users.clear();
            })?;
        }
        Ok(())
    }

    pub fn forget(&mut self, role: &str) -> Result<()> {
        if self.file.roles.contains_key(role) {
            self.change(|file| {
                file.roles.remove(role);
            })?;
        }
        Ok(())
    }

    /// Under the lock: the file as it is now, changed, written to a 0600 temporary file and renamed
    /// over the old one (never readable by others, never half-written, never through a link).
    fn change(&mut self, edit: impl FnOnce(&mut File)) -> Result<()> {
        let dir = self.path.parent().expect("the credentials file is inside the data directory");
        crate::fsafe::private_dir(dir, "the data directory")?;
        let _lock = crate::os::exclusive_lock(&dir.join(LOCK_NAME))?;
        let mut file = read(&self.path)?;
        edit(&mut file);
        let text = toml::to_string(&file)?;
        crate::fsafe::write_atomically(&self.path, text.as_bytes(), 0o600)?;
        self.file = file;
        Ok(())
    }
}

fn read(path: &Path) -> Result<File> {
    let text = match crate::fsafe::open_read(path, crate::fsafe::euid()) {
        Ok(mut opened) => {
            let mut text = String::new();
            opened.read_to_string(&mut text).with_context(|| format!("read {}", path.display()))?;
            text
        }
        Err(_) if std::fs::symlink_metadata(path).is_err() => return Ok(File::default()),
        Err(e) => return Err(e),
    };
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}")).with_context(|| {
        format!(
            "{} is damaged; delete it and run `cargo xtask setup`, which gives the roles new passwords",
            path.display()
        )
    })
}

/// Deletes the file (teardown); a missing one is fine.
pub fn remove(data_dir: &Path) -> Result<()> {
    let _ = std::fs::remove_file(data_dir.join(LOCK_NAME));
    match std::fs::remove_file(data_dir.join(FILE_NAME)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("delete {}", data_dir.join(FILE_NAME).display()))
        }
        _ => Ok(()),
    }
}

/// A password every developer on a shared server computes alike, without sharing a file: 128 bits of
/// the SHA-256 of `parts` (what it is for, then the admin's login and whose it is), NUL-separated.
pub fn derived_password(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    crate::naming::hex(&Sha256::digest(parts.join("\0").as_bytes())[..16])
}

/// 128 random bits as 32 hex digits: safe in URLs, shells and `.env` files without quoting.
pub fn generate_password() -> Result<String> {
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
    use std::os::unix::fs::PermissionsExt;

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
    fn admin_entry_kept_beside_roles_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "[roles]\napp = \"abc\"\n").unwrap();
        let mut credentials = Credentials::load(dir.path()).unwrap();
        assert_eq!((credentials.password("app"), credentials.admin()), (Some("abc"), None));
        let secret = AdminSecret { password: "new".into(), previous: Some("postgres".into()) };
        credentials.set_admin(secret.clone()).unwrap();
        // Another run that loaded the file before the admin entry was written keeps it.
        let mut stale = Credentials { path: dir.path().join(FILE_NAME), file: File::default() };
        stale.renew("other").unwrap();
        let reloaded = Credentials::load(dir.path()).unwrap();
        assert_eq!(reloaded.admin(), Some(&secret));
        assert_eq!(reloaded.password("app"), Some("abc"));
        assert!(reloaded.password("other").is_some());
    }

    #[test]
    fn damaged_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "roles = 3").unwrap();
        let msg = format!("{:#}", Credentials::load(dir.path()).err().unwrap());
        assert!(msg.contains("delete it"), "{msg}");
    }
}
