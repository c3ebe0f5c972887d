//! Test helper shared by the service crates: where is the database a test should run against?
//!
//! `cargo xtask setup` creates this branch's databases and writes one URL per logical database into
//! the workspace's `.env` (`ACCOUNTS_DATABASE_URL=...`). Tests read it from there, or from the
//! environment when CI or a developer points them elsewhere.

use std::path::{Path, PathBuf};

/// The connection URL of the logical database `database` (as named by a service's
/// `[package.metadata.xtask.database] name`).
///
/// Looks up `<DATABASE>_DATABASE_URL` (e.g. `ACCOUNTS_DATABASE_URL`): first in the environment, where an
/// empty value counts as unset, then in the workspace root's `.env`. The process environment is never
/// modified.
///
/// # Panics
///
/// When neither has the variable, saying to run `cargo xtask setup`; or when `.env` cannot be read.
pub fn database_url(database: &str) -> String {
    let key = env_key(database);
    if let Some(url) = std::env::var(&key).ok().filter(|url| !url.is_empty()) {
        return url;
    }
    let root = workspace_root();
    match from_dotenv(&root.join(".env"), &key) {
        Ok(Some(url)) => url,
        Ok(None) => panic!(
            "{key} is not set and {}/.env has no such line: run `cargo xtask setup` first (it creates \
             the databases and writes .env)",
            root.display()
        ),
        Err(err) => panic!("{key} is not set and {}/.env cannot be read: {err}", root.display()),
    }
}

/// `accounts` → `ACCOUNTS_DATABASE_URL`.
fn env_key(database: &str) -> String {
    format!("{}_DATABASE_URL", database.to_ascii_uppercase())
}

/// The workspace root: this crate lives in `<root>/services/testdb`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("find the workspace root")
}

/// The non-empty value of `key` in the dotenv file at `path`; `Ok(None)` when the file or the line is
/// missing.
fn from_dotenv(path: &Path, key: &str) -> Result<Option<String>, dotenvy::Error> {
    let lines = match dotenvy::from_path_iter(path) {
        Ok(lines) => lines,
        Err(err) if err.not_found() => return Ok(None),
        Err(err) => return Err(err),
    };
    for line in lines {
        let (name, value) = line?;
        if name == key && !value.is_empty() {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_upper_cased() {
        assert_eq!(env_key("accounts"), "ACCOUNTS_DATABASE_URL");
        assert_eq!(env_key("order_lines"), "ORDER_LINES_DATABASE_URL");
    }

    #[test]
    fn reads_the_key_from_a_dotenv_file() {
        let path = std::env::temp_dir().join(format!("testdb-{}.env", std::process::id()));
        std::fs::write(&path, "DATABASE_URL=postgres://a/b\nNOTES_DATABASE_URL=postgres://u:p@h:5433/n\n")
            .unwrap();
        let notes = from_dotenv(&path, "NOTES_DATABASE_URL");
        let missing = from_dotenv(&path, "ACCOUNTS_DATABASE_URL");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(notes.unwrap().as_deref(), Some("postgres://u:p@h:5433/n"));
        assert_eq!(missing.unwrap(), None);
    }

    #[test]
    fn a_missing_file_has_no_key() {
        let path = std::env::temp_dir().join("testdb-no-such-file.env");
        assert_eq!(from_dotenv(&path, "NOTES_DATABASE_URL").unwrap(), None);
    }
}
