//! Who is running this: on a server several developers share (the external engine), each one's
//! databases are named and labelled apart, so two people on the same branch never meet.

use std::path::Path;

use anyhow::{Result, bail};

use crate::naming::{sanitize, short_hash};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Developer {
    /// As given: git's user.email, or XTASK_DEVELOPER. Recorded in the labels.
    pub id: String,
    /// What names carry: the id's first part, cleaned and cut, and a hash of the whole id.
    pub part: String,
}

impl Developer {
    pub fn new(id: &str) -> Developer {
        let local = id.split('@').next().unwrap_or(id);
        let mut readable = sanitize(local);
        readable.truncate(12);
        let readable = readable.trim_end_matches('_');
        let readable = if readable.is_empty() { "dev" } else { readable };
        Developer { id: id.to_owned(), part: format!("{readable}_{}", &short_hash(id)[..6]) }
    }

    /// XTASK_DEVELOPER, else git's user.email in `root`. Without either: none in CI (whose runs
    /// name their databases per run), else an error saying how to set one.
    pub fn resolve(root: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Developer>> {
        if let Some(id) = env("XTASK_DEVELOPER").filter(|id| !id.trim().is_empty()) {
            return Ok(Some(Developer::new(id.trim())));
        }
        let email = duct::cmd!("git", "-C", root, "config", "user.email")
            .stdout_capture()
            .stderr_null()
            .unchecked()
            .run()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|email| !email.is_empty());
        match email {
            Some(email) => Ok(Some(Developer::new(&email))),
            None if env("CI").is_some_and(|ci| ci == "true" || ci == "1") => Ok(None),
            None => bail!(
                "on the external engine every developer's databases are named apart, after git's user.email, \
                 and none is set: `git config --global user.email you@example.com`, or set XTASK_DEVELOPER"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_developer_part_is_readable_short_and_tells_ids_apart() {
        let alice = Developer::new("Alice.Smith@example.com");
        assert!(alice.part.starts_with("alice_smith_"), "{}", alice.part);
        assert_eq!(alice.part.len(), "alice_smith_".len() + 6);
        assert_ne!(Developer::new("alice@a.example").part, Developer::new("alice@b.example").part);
        assert_eq!(
            Developer::new("a.very.long.local.part.indeed@x").part,
            format!("a_very_long_{}", &short_hash("a.very.long.local.part.indeed@x")[..6])
        );
        assert!(Developer::new("@@@").part.starts_with("dev_"));
        let env = |key: &str| (key == "XTASK_DEVELOPER").then(|| " bob ".to_owned());
        assert_eq!(Developer::resolve(Path::new("/"), &env).unwrap().unwrap().id, "bob");
        let ci = |key: &str| (key == "CI").then(|| "true".to_owned());
        let outside_git = tempfile::tempdir().unwrap();
        let found = Developer::resolve(outside_git.path(), &ci).unwrap();
        // git's global user.email when this machine has one, else none in CI.
        assert!(found.is_none() || found.is_some_and(|d| d.id.contains('@')));
    }
}
