//! Branch-named database identifiers: valid Postgres names, readable, and never shared by two branches.
//!
//! A name is `<base>` on a default branch and `<base>_<branch>` elsewhere, where `<branch>` is the
//! branch lower-cased with every run of other characters turned into one `_`. When that rewriting
//! loses information (upper case, `/`, `-`, unicode, ...) or the name must be cut to fit 63 bytes, a
//! `__` and eight hex digits of the branch's SHA-256 are appended. A branch that needs no rewriting
//! can never contain `__`, so hashed and plain names never meet.

use std::fmt;

use sha2::{Digest, Sha256};

/// Postgres truncates identifiers to NAMEDATALEN - 1 bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Longest project name we accept, leaving room for a readable branch part.
pub const MAX_PROJECT_BYTES: usize = 40;
/// Longest base of a branch database's name (a project, or a project and a service's database),
/// leaving room for `_<branch part>__<hash>`.
pub const MAX_BASE_BYTES: usize = 48;
const HASH_HEX_DIGITS: usize = 8;
const HASH_SEPARATOR: &str = "__";

/// A database name derived from a base name and a branch; the only constructor sanitises.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbName(String);

impl DbName {
    pub fn for_branch(base: &str, branch: &str, is_default_branch: bool) -> DbName {
        debug_assert!(
            base.len() <= MAX_BASE_BYTES && sanitize(base) == base,
            "base {base:?} must be sanitised and short"
        );
        if is_default_branch {
            return DbName(base.to_owned());
        }
        let clean = sanitize(branch);
        let plain = format!("{base}_{clean}");
        if !clean.is_empty() && clean == branch && plain.len() <= MAX_IDENTIFIER_BYTES {
            return DbName(plain);
        }
        let hash = short_hash(branch);
        let budget = MAX_IDENTIFIER_BYTES - base.len() - 1 - HASH_SEPARATOR.len() - HASH_HEX_DIGITS;
        let part = clean[..clean.len().min(budget)].trim_end_matches('_');
        if part.is_empty() {
            DbName(format!("{base}{HASH_SEPARATOR}{hash}"))
        } else {
            DbName(format!("{base}_{part}{HASH_SEPARATOR}{hash}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case ASCII letters and digits kept; every run of anything else becomes one `_`;
/// no `_` at either end.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// A project name: sanitised, starting with a letter, at most [`MAX_PROJECT_BYTES`] bytes.
pub fn project_from_folder(folder: &str) -> String {
    let mut name = sanitize(folder);
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "p_");
    }
    name.truncate(MAX_PROJECT_BYTES);
    name.trim_end_matches('_').to_owned()
}

pub fn is_valid_base(name: &str) -> bool {
    name.len() <= MAX_PROJECT_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && sanitize(name) == name
}

/// Eight hex digits of SHA-256: a named algorithm, the same on every machine and Rust version.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex(&digest[..HASH_HEX_DIGITS / 2])
}

/// Quotes a string literal for SQL (with `standard_conforming_strings` on, the default since 9.1).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// User text for an error message: control characters escaped, and cut to 60 characters (with its
/// length said) so a huge value does not flood the terminal.
pub fn clip(text: &str) -> String {
    const SHOWN: usize = 60;
    let escape = |c: char| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() };
    let shown: String = text.chars().take(SHOWN).map(escape).collect();
    if text.chars().nth(SHOWN).is_some() { format!("{shown}... ({} bytes)", text.len()) } else { shown }
}

/// Lower-case hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quotes an identifier for SQL, doubling embedded quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The hostile branch names the integration tests also run (`tests/it/corpus.rs`).
#[cfg(test)]
#[path = "../tests/it/corpus.rs"]
mod corpus;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn name(branch: &str) -> String {
        DbName::for_branch("geney", branch, false).0
    }

    #[test]
    fn default_branch_is_the_bare_base() {
        assert_eq!(DbName::for_branch("geney", "main", true).as_str(), "geney");
    }

    #[test]
    fn clean_branches_stay_readable() {
        assert_eq!(name("my_feature"), "geney_my_feature");
        assert_eq!(name("fix123"), "geney_fix123");
    }

    #[test]
    fn rewritten_branches_keep_their_words_and_gain_a_hash() {
        let n = name("feature/Login-Page");
        assert!(n.starts_with("geney_feature_login_page__"), "{n}");
        assert_eq!(n.len(), "geney_feature_login_page__".len() + 8);
    }

    #[test]
    fn hash_is_sha256_prefix() {
        // printf %s 'feature/x' | sha256sum
        assert_eq!(short_hash("feature/x"), "217d2bf5");
    }

    const ADVERSARIAL: &[&str] = &[
        "main",
        "Main",
        "MAIN",
        "master",
        "feature/login",
        "feature-login",
        "feature_login",
        "feature.login",
        "Feature/Login",
        "feature//login",
        "feature/login/",
        "/feature/login",
        "feature--login",
        "feature__login",
        "_feature_login",
        "feature_login_",
        "fix/ä",
        "fix/ö",
        "fix/日本語",
        "日本語",
        "émoji-🚀",
        "🚀",
        "it's",
        "its",
        "a\"b",
        "a b",
        "a\tb",
        "a\nb",
        "a;drop database postgres;--",
        "'; DROP TABLE users; --",
        "$$",
        "select",
        "table",
        "user",
        "GRANT",
        "x\\y",
        "x%y",
        "x*y",
        "x?y",
        "x[y]",
        "x{y}",
        "x@{-1}",
        "release/1.2.3",
        "release/1-2-3",
        "release/1_2_3",
        "1234",
        "0",
        "-",
        "_",
        "__",
        "a",
        "A",
        "geney",
        "x__0123abcd",
        "x",
    ];

    fn long_names() -> Vec<String> {
        vec![
            "a".repeat(300),
            format!("{}b", "a".repeat(299)),
            format!("{}/c", "a".repeat(298)),
            "é".repeat(150),
            "feature/".repeat(40),
            "x".repeat(10_000),
        ]
    }

    #[test]
    fn adversarial_branches_give_valid_distinct_names() {
        let mut branches: Vec<String> = ADVERSARIAL.iter().map(|s| s.to_string()).collect();
        branches.extend(long_names());
        assert!(branches.len() >= 40);
        let mut seen: HashMap<String, String> = HashMap::new();
        seen.insert(DbName::for_branch("geney", "main", true).0, "<default>".into());
        for branch in &branches {
            let n = name(branch);
            assert!(n.len() <= MAX_IDENTIFIER_BYTES, "{branch:?} -> {n} too long");
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{branch:?} -> {n}"
            );
            assert!(n.starts_with("geney_"), "{branch:?} -> {n}");
            if let Some(other) = seen.insert(n.clone(), branch.clone()) {
                panic!("{branch:?} and {other:?} share {n}");
            }
        }
    }

    /// Every name of the shared hostile corpus, as a branch of a short and of a longest base: a
    /// valid identifier of lower-case letters, digits and `_`, never a default branch's bare name nor
    /// a template's (`<base>__tpl_...`) nor a scratch database's (`_xtask_new_...`), and distinct.
    #[test]
    fn hostile_corpus_gives_valid_distinct_names() {
        let branches = super::corpus::branches();
        assert!(branches.len() >= 100, "{}", branches.len());
        for base in ["geney", &"p".repeat(MAX_BASE_BYTES)] {
            let mut seen: HashMap<String, &str> = HashMap::new();
            for branch in &branches {
                let n = DbName::for_branch(base, branch, false).0;
                assert!(n.len() <= MAX_IDENTIFIER_BYTES, "{branch:?} -> {n} too long");
                assert!(
                    n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{branch:?} -> {n}"
                );
                assert!(n.starts_with(&format!("{base}_")) && n != base, "{branch:?} -> {n}");
                assert!(!n.contains("__tpl_") && !n.starts_with("_xtask_"), "{branch:?} -> {n}");
                assert_eq!(n, DbName::for_branch(base, branch, false).0, "{branch:?} is not stable");
                if let Some(other) = seen.insert(n.clone(), branch) {
                    panic!("{branch:?} and {other:?} share {n}");
                }
            }
        }
    }

    #[test]
    fn same_branch_gives_same_name() {
        for branch in ADVERSARIAL {
            assert_eq!(name(branch), name(branch));
        }
    }

    #[test]
    fn long_base_still_fits() {
        let base = "p".repeat(MAX_PROJECT_BYTES);
        let n = DbName::for_branch(&base, &"z".repeat(100), false);
        assert!(n.as_str().len() <= MAX_IDENTIFIER_BYTES, "{n}");
    }

    #[test]
    fn branch_that_sanitises_to_the_default_name_stays_apart() {
        // "main" on a non-default position must not be the bare base.
        assert_ne!(name("main"), "geney");
        assert_ne!(name(""), "geney");
    }

    #[test]
    fn project_names_from_folders() {
        assert_eq!(project_from_folder("My Project"), "my_project");
        assert_eq!(project_from_folder("123"), "p_123");
        assert_eq!(project_from_folder("---"), "p");
        assert!(project_from_folder(&"x".repeat(99)).len() <= MAX_PROJECT_BYTES);
        assert!(is_valid_base(&project_from_folder("Ünïcode-Folder")));
    }

    #[test]
    fn clipped_for_messages() {
        assert_eq!(clip("a\nb\x1b"), "a\\nb\\u{1b}");
        let long = clip(&"é".repeat(1000));
        assert!(long.starts_with(&"é".repeat(60)) && long.ends_with("... (2000 bytes)"), "{long}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
