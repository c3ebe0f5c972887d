//! The databases a workspace declares: one per service crate (`[package.metadata.xtask.database]`
//! in its Cargo.toml), plus any listed in the workspace's `[[workspace.metadata.xtask.databases]]`.
//! A workspace that declares none has one database named after the project, owned by the admin user.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::Spanned;

use crate::naming;

/// One declaration as written; every problem is reported with its file, line and column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    name: Spanned<String>,
    role: Option<Spanned<String>>,
    #[serde(default)]
    extensions: Vec<Spanned<String>>,
    #[serde(default)]
    reads: Vec<Spanned<String>>,
}

/// A logical database of the project, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// Names `migrations/<logical>/`, `seeds/<logical>/` and `<LOGICAL>_DATABASE_URL`.
    pub logical: String,
    /// Prefix of the branch databases' names: `<project>_<logical>`.
    pub base: String,
    pub project: String,
    /// The service's login role, which owns its databases; `None` for the implicit database,
    /// which the admin user owns.
    pub role: Option<String>,
    pub extensions: Vec<String>,
    /// Other logical databases whose tables this role may read.
    pub reads: Vec<String>,
    /// The Cargo.toml that declared it (repository-relative), for messages.
    pub declared_in: PathBuf,
}

impl DatabaseSpec {
    /// `DATABASE_URL`'s per-database sibling in `.env`: `ACCOUNTS_DATABASE_URL`.
    pub fn env_var(&self) -> String {
        format!("{}_DATABASE_URL", self.logical.to_ascii_uppercase())
    }

    /// The template tests copy their databases from: `ACCOUNTS_TEMPLATE_DATABASE`.
    pub fn template_var(&self) -> String {
        format!("{}_TEMPLATE_DATABASE", self.logical.to_ascii_uppercase())
    }
}

/// A declaration with the text of the file it came from, to turn spans into line and column.
pub struct Declared<'a> {
    pub file: PathBuf,
    pub text: &'a str,
    pub declaration: Declaration,
}

/// Longest logical database name: with the project (at most 40 bytes) it must leave room in a
/// 63-byte identifier for a readable branch part.
pub const MAX_LOGICAL_BYTES: usize = 20;
const MAX_BASE_BYTES: usize = naming::MAX_BASE_BYTES;

/// Resolves and cross-checks every declaration; the implicit database when there is none.
pub fn resolve(project: &str, declared: Vec<Declared<'_>>) -> Result<Vec<DatabaseSpec>> {
    if declared.is_empty() {
        return Ok(vec![DatabaseSpec {
            logical: project.to_owned(),
            base: project.to_owned(),
            project: project.to_owned(),
            role: None,
            extensions: Vec::new(),
            reads: Vec::new(),
            declared_in: PathBuf::from("Cargo.toml"),
        }]);
    }
    let mut specs: Vec<DatabaseSpec> = Vec::new();
    for item in &declared {
        let spec = resolve_one(project, item)?;
        if let Some(other) = specs.iter().find(|s| s.logical == spec.logical) {
            bail!(
                "database `{}` is declared twice, in {} and in {}: give each service its own `name`",
                spec.logical,
                other.declared_in.display(),
                spec.declared_in.display()
            );
        }
        if let Some(other) = specs.iter().find(|s| s.role == spec.role) {
            bail!(
                "role `{}` is declared for both `{}` ({}) and `{}` ({}): each service needs a role of its own",
                spec.role.as_deref().unwrap_or_default(),
                other.logical,
                other.declared_in.display(),
                spec.logical,
                spec.declared_in.display()
            );
        }
        if let Some(other) = specs.iter().find(|s| names_can_collide(&s.base, &spec.base)) {
            let (short, long) =
                if other.base.len() < spec.base.len() { (other, &spec) } else { (&spec, other) };
            bail!(
                "databases `{}` ({}) and `{}` ({}) would share names: `{}` on branch `{}` is named `{}`, \
                 like `{}` on the default branch. Rename one of them",
                short.logical,
                short.declared_in.display(),
                long.logical,
                long.declared_in.display(),
                short.logical,
                &long.base[short.base.len() + 1..],
                long.base,
                long.logical
            );
        }
        specs.push(spec);
    }
    for (spec, item) in specs.iter().zip(&declared) {
        for read in &item.declaration.reads {
            let target = read.get_ref();
            let known = specs.iter().any(|s| &s.logical == target);
            if target == &spec.logical || !known {
                let names: Vec<&str> = specs.iter().map(|s| s.logical.as_str()).collect();
                let problem = if known {
                    "a service always reads its own database; list only other ones".to_owned()
                } else {
                    format!("no database `{target}` is declared; declared: {}", names.join(", "))
                };
                bail!("{}: {problem}", at(item, read.span(), "reads"));
            }
        }
    }
    Ok(specs)
}

fn resolve_one(project: &str, item: &Declared<'_>) -> Result<DatabaseSpec> {
    let declaration = &item.declaration;
    let logical = declaration.name.get_ref();
    if !is_valid_logical(logical) {
        bail!(
            "{}: `{}` is not a valid database name: use lower-case letters, digits and `_`, \
             starting with a letter, at most {MAX_LOGICAL_BYTES} bytes",
            at(item, declaration.name.span(), "name"),
            naming::clip(logical)
        );
    }
    let base = if logical == project { project.to_owned() } else { format!("{project}_{logical}") };
    if base.len() > MAX_BASE_BYTES {
        bail!(
            "{}: `{base}` (project and database name) is longer than {MAX_BASE_BYTES} bytes, which leaves \
             no room for branch names: choose a shorter `name` or `project`",
            at(item, declaration.name.span(), "name")
        );
    }
    let role = match &declaration.role {
        Some(role) => {
            if let Err(problem) = check_role(role.get_ref()) {
                bail!("{}: {problem}", at(item, role.span(), "role"));
            }
            role.get_ref().clone()
        }
        None => base.clone(),
    };
    let mut extensions = Vec::new();
    for extension in &declaration.extensions {
        let name = extension.get_ref();
        if name.is_empty() || name.len() > naming::MAX_IDENTIFIER_BYTES || name.contains('\0') {
            bail!(
                "{}: {:?} is not an extension name",
                at(item, extension.span(), "extensions"),
                naming::clip(name)
            );
        }
        if !extensions.contains(name) {
            extensions.push(name.clone());
        }
    }
    Ok(DatabaseSpec {
        logical: logical.clone(),
        base,
        project: project.to_owned(),
        role: Some(role),
        extensions,
        reads: declaration.reads.iter().map(|r| r.get_ref().clone()).collect(),
        declared_in: item.file.clone(),
    })
}

/// Branch databases are `<base>_<branch>`: a base that is another one plus `_...` could be some
/// branch's database of the other.
fn names_can_collide(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    long.strip_prefix(short).is_some_and(|rest| rest.starts_with('_'))
}

fn is_valid_logical(name: &str) -> bool {
    name.len() <= MAX_LOGICAL_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && naming::sanitize(name) == name
}

/// Role names are spelled like database names, so they never need quoting in a URL or a shell.
fn check_role(role: &str) -> Result<(), String> {
    let valid = !role.is_empty()
        && role.len() <= naming::MAX_IDENTIFIER_BYTES
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!(
            "`{}` is not a valid role name: use lower-case letters, digits and `_`, starting with a \
             letter, at most {} bytes",
            naming::clip(role),
            naming::MAX_IDENTIFIER_BYTES
        ));
    }
    if role.starts_with("pg_") {
        return Err(format!("`{role}`: names starting with `pg_` are reserved by PostgreSQL"));
    }
    Ok(())
}

/// The line and column (from 1) of a byte offset in a manifest, for messages.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn at(item: &Declared<'_>, span: std::ops::Range<usize>, key: &str) -> String {
    let (line, column) = line_column(item.text, span.start);
    format!("{}, line {line}, column {column}: `{key}`", item.file.display())
}

#[derive(Deserialize)]
struct PackageManifest {
    package: Option<PackageTable>,
}

#[derive(Deserialize)]
struct PackageTable {
    name: Option<String>,
    metadata: Option<PackageMetadata>,
}

#[derive(Deserialize)]
struct PackageMetadata {
    xtask: Option<PackageXtask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageXtask {
    database: Option<Declaration>,
    /// The service keeps data in Redis: it gets a Redis user of its own on each branch.
    #[serde(default)]
    redis: Option<Spanned<bool>>,
}

/// The member crates' Cargo.toml files, from `[workspace] members` (plain paths and `dir/*`
/// globs) minus `exclude`, in a stable order.
pub fn member_manifests(root: &Path, members: &[String], exclude: &[String]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for pattern in members {
        match pattern.strip_suffix("/*") {
            Some(parent) if !parent.contains('*') => {
                let Ok(entries) = std::fs::read_dir(root.join(parent)) else { continue };
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .filter(|e| e.path().join("Cargo.toml").is_file())
                    .map(|e| Path::new(parent).join(e.file_name()))
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            _ if pattern.contains(['*', '?', '[']) => bail!(
                "workspace member pattern `{pattern}` is not supported by xtask: use plain paths or `dir/*`"
            ),
            _ => dirs.push(PathBuf::from(pattern)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| {
        let dir = dir.strip_prefix(".").unwrap_or(dir).to_path_buf();
        !exclude.iter().any(|e| Path::new(e) == dir) && seen.insert(dir)
    });
    Ok(dirs.into_iter().map(|dir| dir.join("Cargo.toml")).collect())
}

/// What one member crate declares: its database, and whether it uses Redis.
pub struct Member {
    pub text: String,
    pub database: Option<Declaration>,
    /// `redis = true`: the service's name in Redis (its database's name, else its package's).
    pub redis_service: Option<RedisService>,
}

/// A service that keeps data in Redis: on each branch it gets a user of its own, confined to the
/// keys under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisService {
    /// Names `<SERVICE>_REDIS_URL`.
    pub name: String,
    /// `<project>_<name>`: the user's name and key prefix on a default branch.
    pub base: String,
    pub declared_in: PathBuf,
}

impl RedisService {
    /// The implicit service of a workspace that asks for Redis but has no service saying so.
    pub fn implicit(project: &str) -> RedisService {
        RedisService { name: project.to_owned(), base: project.to_owned(), declared_in: "Cargo.toml".into() }
    }

    pub fn url_var(&self) -> String {
        format!("{}_REDIS_URL", self.name.to_ascii_uppercase())
    }

    pub fn prefix_var(&self) -> String {
        format!("{}_REDIS_PREFIX", self.name.to_ascii_uppercase())
    }
}

/// The declarations in one member's Cargo.toml, if it has any.
pub fn read_member(root: &Path, manifest: &Path, project: &str) -> Result<Option<Member>> {
    let text = std::fs::read_to_string(root.join(manifest))
        .with_context(|| format!("read {}", manifest.display()))?;
    if !text.contains("xtask") {
        return Ok(None); // the common case for crates that are not services: no TOML parse
    }
    let parsed: PackageManifest = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("invalid [package.metadata.xtask] in {}", manifest.display()))?;
    let Some(package) = parsed.package else { return Ok(None) };
    let Some(xtask) = package.metadata.and_then(|m| m.xtask) else { return Ok(None) };
    let redis_service = match &xtask.redis {
        Some(flag) if *flag.get_ref() => {
            let declared = xtask.database.as_ref().map(|d| d.name.get_ref().clone());
            let name = declared.or_else(|| package.name.as_ref().map(|n| n.replace('-', "_")));
            Some(redis_service(project, name.unwrap_or_default(), manifest, &text, flag.span())?)
        }
        _ => None,
    };
    Ok(Some(Member { database: xtask.database, redis_service, text }))
}

fn redis_service(
    project: &str,
    name: String,
    manifest: &Path,
    text: &str,
    span: std::ops::Range<usize>,
) -> Result<RedisService> {
    let (line, column) = line_column(text, span.start);
    let at = format!("{}, line {line}, column {column}: `redis`", manifest.display());
    if !is_valid_logical(&name) {
        bail!(
            "{at}: the service's Redis name `{}` (its database's name, else its package's) is not valid: \
             use lower-case letters, digits and `_`, starting with a letter, at most {MAX_LOGICAL_BYTES} bytes",
            naming::clip(&name)
        );
    }
    let base = if name == project { name.clone() } else { format!("{project}_{name}") };
    if base.len() > MAX_BASE_BYTES {
        bail!("{at}: `{base}` (project and service name) is longer than {MAX_BASE_BYTES} bytes");
    }
    Ok(RedisService { name, base, declared_in: manifest.to_path_buf() })
}

/// Two services whose names could give the same Redis user on some branches are refused.
pub fn check_redis_services(services: &[RedisService]) -> Result<()> {
    for (i, a) in services.iter().enumerate() {
        for b in &services[i + 1..] {
            if a.base == b.base || names_can_collide(&a.base, &b.base) {
                bail!(
                    "the Redis services `{}` ({}) and `{}` ({}) could share keys on some branch: rename one",
                    a.name,
                    a.declared_in.display(),
                    b.name,
                    b.declared_in.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(text: &str) -> Declared<'_> {
        #[derive(Deserialize)]
        struct Wrapper {
            database: Declaration,
        }
        let wrapper: Wrapper = toml::from_str(text).unwrap();
        Declared { file: "services/a/Cargo.toml".into(), text, declaration: wrapper.database }
    }

    #[test]
    fn implicit_database_is_named_after_the_project() {
        let specs = resolve("shop", vec![]).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!((specs[0].logical.as_str(), specs[0].base.as_str()), ("shop", "shop"));
        assert_eq!(specs[0].role, None);
    }

    #[test]
    fn service_defaults_and_overrides() {
        let a = "[database]\nname = \"accounts\"\nextensions = [\"pgcrypto\", \"pgcrypto\"]\n";
        let b = "[database]\nname = \"notes\"\nrole = \"notes_app\"\nreads = [\"accounts\"]\n";
        let specs = resolve("shop", vec![declared(a), declared(b)]).unwrap();
        assert_eq!(specs[0].base, "shop_accounts");
        assert_eq!(specs[0].role.as_deref(), Some("shop_accounts"));
        assert_eq!(specs[0].extensions, ["pgcrypto"]);
        assert_eq!(specs[0].env_var(), "ACCOUNTS_DATABASE_URL");
        assert_eq!(specs[1].role.as_deref(), Some("notes_app"));
        assert_eq!(specs[1].reads, ["accounts"]);
    }

    #[test]
    fn bad_declarations_name_file_line_and_key() {
        for (texts, needle) in [
            (vec!["[database]\nname = \"Bad-Name\"\n"], "line 2, column 8: `name`"),
            (vec!["[database]\nname = \"a\"\nrole = \"pg_x\"\n"], "line 3, column 8: `role`: `pg_x`"),
            (vec!["[database]\nname = \"a\"\nrole = \"x y\"\n"], "not a valid role name"),
            (
                vec!["[database]\nname = \"a\"\nreads = [\"zzz\"]\n"],
                "line 3, column 10: `reads`: no database",
            ),
            (vec!["[database]\nname = \"a\"\nreads = [\"a\"]\n"], "reads its own"),
            (vec!["[database]\nname = \"a\"\nextensions = [\"\"]\n"], "`extensions`"),
            (vec!["[database]\nname = \"a\"\n", "[database]\nname = \"a\"\n"], "declared twice"),
            (
                vec!["[database]\nname = \"a\"\nrole = \"r\"\n", "[database]\nname = \"b\"\nrole = \"r\"\n"],
                "role `r` is declared for both",
            ),
            (vec!["[database]\nname = \"abcdefghijklmnopqrstu\"\n"], "at most 20 bytes"),
            (
                vec!["[database]\nname = \"notes\"\n", "[database]\nname = \"notes_search\"\n"],
                "`notes` on branch `search` is named `shop_notes_search`",
            ),
            (
                vec!["[database]\nname = \"shop\"\n", "[database]\nname = \"orders\"\n"],
                "`shop` on branch `orders` is named `shop_orders`",
            ),
        ] {
            let msg =
                format!("{:#}", resolve("shop", texts.iter().map(|t| declared(t)).collect()).unwrap_err());
            assert!(msg.contains(needle), "{texts:?}: {msg}");
            assert!(msg.contains("services/a/Cargo.toml"), "{msg}");
        }
        let long_project = "p".repeat(40);
        let msg = format!(
            "{:#}",
            resolve(&long_project, vec![declared("[database]\nname = \"ordersandmore\"\n")]).unwrap_err()
        );
        assert!(msg.contains("shorter"), "{msg}");
    }

    #[test]
    fn member_globs() {
        let dir = tempfile::tempdir().unwrap();
        for crate_dir in ["services/b", "services/a", "services/skipped", "tools/x"] {
            std::fs::create_dir_all(dir.path().join(crate_dir)).unwrap();
            std::fs::write(dir.path().join(crate_dir).join("Cargo.toml"), "").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("services/not_a_crate")).unwrap();
        let members =
            ["xtask".to_owned(), "services/*".to_owned(), "tools/x".to_owned(), "./services/a".to_owned()];
        let found = member_manifests(dir.path(), &members, &["services/skipped".to_owned()]).unwrap();
        let found: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            found,
            ["xtask/Cargo.toml", "services/a/Cargo.toml", "services/b/Cargo.toml", "tools/x/Cargo.toml"]
        );
        assert!(member_manifests(dir.path(), &["crates/**".to_owned()], &[]).is_err());
    }
}
