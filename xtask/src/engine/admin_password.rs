//! The superuser's password on the servers this tool makes (the native cluster, the container).
//!
//! Unless the user sets one, it is generated and kept in the credentials file beside the roles'
//! passwords: the cluster accepts password logins on 127.0.0.1, so a well-known password would let
//! any local user in as superuser. Servers made before this (with the old default `postgres`) get
//! a generated one on their next `up`, crash-safely: the new password is on file, with the old one
//! kept as a fallback, before the server changes, and the fallback goes once the new one works.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::conn::Endpoint;
use crate::credentials::{self, AdminSecret, Credentials};

/// What servers made by earlier versions of this tool were given when the user set no password.
const LEGACY_DEFAULT: &str = "postgres";

enum Source {
    /// Set by the user (`password`, XTASK_PASSWORD): used as given, never changed.
    Configured,
    /// Generated and on file; `previous` while a rotation may be half done.
    OnFile { previous: Option<String> },
    /// Nothing on file for a server that exists: made with the old default, rotated on `up`.
    Legacy,
    /// Nothing on file and no server yet: generated now, saved before the server is made.
    Fresh,
}

pub struct AdminPassword {
    data_dir: PathBuf,
    source: Source,
    /// The password this tool logs in with first.
    first: String,
}

impl AdminPassword {
    /// Decides from the configuration and the credentials file; `server_exists`: the server's data
    /// is already there (a cluster, a volume).
    pub fn choose(config: &Config, server_exists: bool) -> Result<AdminPassword> {
        let data_dir = config.data_dir.clone();
        let (source, first) = match (&config.password, Credentials::load(&data_dir)?.admin()) {
            (Some(given), _) => (Source::Configured, given.clone()),
            (None, Some(secret)) => {
                (Source::OnFile { previous: secret.previous.clone() }, secret.password.clone())
            }
            (None, None) if server_exists => (Source::Legacy, LEGACY_DEFAULT.to_owned()),
            (None, None) => (Source::Fresh, credentials::generate_password()?),
        };
        Ok(AdminPassword { data_dir, source, first })
    }

    pub fn first(&self) -> &str {
        &self.first
    }

    pub fn is_configured(&self) -> bool {
        matches!(self.source, Source::Configured)
    }

    /// Nothing on file and no server known yet: a password generated for a new server.
    pub fn is_fresh(&self) -> bool {
        matches!(self.source, Source::Fresh)
    }

    /// A fresh password is generated for a server that turned out to exist (a container's volume
    /// without the marker this tool now writes): it was made with the old default.
    pub fn server_found(&mut self) {
        if matches!(self.source, Source::Fresh) {
            self.source = Source::Legacy;
            self.first = LEGACY_DEFAULT.to_owned();
        }
    }

    /// Before the server is made: a generated password goes on file first, so a kill never leaves
    /// a server whose password nobody knows.
    pub fn save_before_create(&mut self) -> Result<()> {
        if matches!(self.source, Source::Fresh) {
            let secret = AdminSecret { password: self.first.clone(), previous: None };
            Credentials::load(&self.data_dir)?.set_admin(secret)?;
            self.source = Source::OnFile { previous: None };
        }
        Ok(())
    }

    /// The password to try when the first one is refused: the one a half-done rotation replaced.
    pub fn fallback(&self) -> Option<&str> {
        match &self.source {
            Source::OnFile { previous } => previous.as_deref(),
            _ => None,
        }
    }

    /// `login` with the password a half-done rotation replaced, to try when its own is refused.
    pub fn fallback_login(&self, login: &Endpoint) -> Option<Endpoint> {
        self.fallback().map(|password| Endpoint { password: password.to_owned(), ..login.clone() })
    }

    /// Waits with `login` until the server accepts it; a refused login is tried again with the
    /// password a half-done rotation replaced, which then becomes `login`'s.
    pub fn wait_ready(&self, login: &mut Endpoint, wait: impl Fn(&Endpoint) -> Result<()>) -> Result<()> {
        match (wait(login), self.fallback_login(login)) {
            (Err(error), Some(previous)) if crate::conn::LoginRefused::is_in(&error) => {
                wait(&previous)?;
                *login = previous;
                Ok(())
            }
            (result, _) => result,
        }
    }

    /// Once the server accepts `login`: rotates a legacy or half-rotated password to the generated
    /// one, so `login` ends up with the password on file. Says so on stderr.
    /// Rotations run one at a time under the engine's `lock` file: a second `up` finds the first
    /// one's password on file and uses it.
    pub fn settle(&mut self, login: &mut Endpoint, server: &str, lock: &Path) -> Result<()> {
        if matches!(self.source, Source::Configured | Source::Fresh | Source::OnFile { previous: None }) {
            return Ok(());
        }
        let _lock = crate::os::exclusive_lock(lock)?;
        let mut credentials = Credentials::load(&self.data_dir)?;
        if let Some(secret) = credentials.admin().cloned() {
            self.source = Source::OnFile { previous: secret.previous.clone() };
            self.first = secret.password.clone();
            let on_file = Endpoint { password: secret.password, ..login.clone() };
            if secret.previous.is_none() || on_file.connect(&login.admin_db).is_ok() {
                // Finished by another run, or its server half done: the password on file works.
                *login = on_file;
                credentials.set_admin(AdminSecret { password: self.first.clone(), previous: None })?;
                self.source = Source::OnFile { previous: None };
                return Ok(());
            }
        }
        let target = match &self.source {
            Source::OnFile { previous: Some(_) } => self.first.clone(),
            _ => credentials::generate_password()?,
        };
        if login.password != target {
            // The new one on file (the old one kept) before the server has it.
            let previous = Some(login.password.clone());
            credentials.set_admin(AdminSecret { password: target.clone(), previous })?;
            set_own_password(login, &target).with_context(|| {
                format!("give the admin user {} of {server} a generated password", login.user)
            })?;
            eprintln!(
                "the admin user {} of {server} had the old default password `postgres`, which any local \
                 user could log in with; it now has a generated one, kept in {} (`cargo xtask db-endpoint` \
                 and XTASK_ADMIN_URL in .env carry it)",
                login.user,
                self.data_dir.join(".xtask-credentials.toml").display()
            );
            login.password = target.clone();
        }
        login.connect(&login.admin_db).context("log in with the new admin password")?;
        credentials.set_admin(AdminSecret { password: target.clone(), previous: None })?;
        self.source = Source::OnFile { previous: None };
        self.first = target;
        Ok(())
    }
}

/// The server keeps a SCRAM verifier computed here: the password itself is never in SQL text.
fn set_own_password(login: &Endpoint, password: &str) -> Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let mut client = login.connect(&login.admin_db)?;
    // A verifier is base64, digits and `$:=`; no quote can be in it.
    client
        .batch_execute(&format!("ALTER ROLE CURRENT_USER PASSWORD '{verifier}'"))
        .map_err(crate::conn::PgError::from)?;
    Ok(())
}

/// A password the user chose for a cluster any local user can reach on 127.0.0.1, which another
/// user could guess: why, or `None`.
pub fn weakness(password: &str, user: &str) -> Option<&'static str> {
    const COMMON: [&str; 8] =
        ["postgres", "password", "admin", "secret", "root", "changeme", "123456", "letmein"];
    if COMMON.contains(&password.to_ascii_lowercase().as_str()) {
        Some("is a well-known default")
    } else if password.eq_ignore_ascii_case(user) {
        Some("equals the user name")
    } else if password.chars().count() < 12 {
        Some("is shorter than 12 characters")
    } else {
        None
    }
}

/// Warns on stderr about a weak chosen password; `data_dir` only names where a generated one goes.
pub fn warn_if_weak(password: &str, user: &str, data_dir: &Path) {
    if let Some(why) = weakness(password, user) {
        eprintln!(
            "warning: the configured admin password (`password` or XTASK_PASSWORD) {why}: any local user \
             can try it on 127.0.0.1 and would be superuser. Unset it to have a generated one kept in {} \
             (a new cluster gets it; change an existing one with `ALTER ROLE ... PASSWORD`)",
            data_dir.join(".xtask-credentials.toml").display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::weakness;

    #[test]
    fn weak_passwords_are_named() {
        assert_eq!(weakness("postgres", "dev"), Some("is a well-known default"));
        assert_eq!(weakness("Password", "dev"), Some("is a well-known default"));
        assert_eq!(weakness("alice-alice-alice", "alice-alice-alice"), Some("equals the user name"));
        assert_eq!(weakness("s3cret-Pa55", "postgres"), Some("is shorter than 12 characters"));
        assert_eq!(weakness("3f6c0e2b9a71d4c8", "postgres"), None);
    }
}
