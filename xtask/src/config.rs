//! Configuration: `[workspace.metadata.xtask]` in the root Cargo.toml, overridden by `XTASK_*` variables.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::Spanned;

use crate::naming;
use crate::services::{self, DatabaseSpec, Declaration, Declared, line_column};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Auto,
    Docker,
    Native,
    External,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Auto => "auto",
            EngineKind::Docker => "docker",
            EngineKind::Native => "native",
            EngineKind::External => "external",
        }
    }

    fn parse(text: &str) -> Option<EngineKind> {
        [Self::Auto, Self::Docker, Self::Native, Self::External].into_iter().find(|kind| kind.name() == text)
    }
}

/// What the Cargo.toml section may say; every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    project: Option<Spanned<String>>,
    engine: Option<EngineKind>,
    port: Option<Spanned<u16>>,
    image: Option<String>,
    /// The PostgreSQL major version both engines run (`postgres = "17"`).
    postgres: Option<PinnedMajor>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    default_branches: Option<Spanned<Vec<String>>>,
    /// On the external engine, the branches whose databases every developer shares.
    shared_branches: Option<Vec<String>>,
    /// On the external engine, databases named per developer (the default).
    per_developer: Option<bool>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    env_file: Option<PathBuf>,
    /// Whether new branch databases are cloned from pristine templates (the default).
    templates: Option<bool>,
    /// Databases of a project without service crates (or besides them).
    databases: Option<Vec<Declaration>>,
    /// The logical database `DATABASE_URL` points at; the first one when absent.
    default_database: Option<Spanned<String>>,
    ci: Option<CiConfig>,
    /// `redis = true`, or a table of its settings: one Redis server beside PostgreSQL.
    redis: Option<Spanned<toml::Value>>,
}

/// `[workspace.metadata.xtask.redis]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RedisFile {
    port: Option<u16>,
    image: Option<String>,
    url: Option<String>,
    /// The CA certificates (PEM) that verify a `rediss://` server, instead of the system's roots.
    ca: Option<PathBuf>,
}

/// The project's Redis server, when the workspace or a service asks for one.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Where the native and docker engines' server listens on 127.0.0.1.
    pub port: u16,
    pub image: String,
    /// The external engine's server (`redis://` or `rediss://`), with a user allowed to manage ACLs.
    pub url: Option<String>,
    /// The redis-server binary (XTASK_REDIS_SERVER); `None`: found in PATH.
    pub server: Option<PathBuf>,
    /// The CA file for `rediss://` (XTASK_REDIS_CA, `ca`); `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// The services with a Redis user on each branch; the implicit one when none says so.
    pub services: Vec<crate::services::RedisService>,
}

impl Default for RedisConfig {
    /// What a workspace that says only `redis = true` gets (without its services).
    fn default() -> RedisConfig {
        RedisConfig {
            port: DEFAULT_REDIS_PORT,
            image: DEFAULT_REDIS_IMAGE.into(),
            url: None,
            server: None,
            ca: None,
            services: Vec::new(),
        }
    }
}

pub const DEFAULT_REDIS_PORT: u16 = 6380;
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7";

/// `[workspace.metadata.xtask.ci]`: what the workspace's own tests need besides the project's
/// databases, which `cargo xtask ci` provides (CI=true or --provision) or names the command for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CiConfig {
    /// PostgreSQL server binaries on this machine (initdb, pg_ctl).
    #[serde(default)]
    pub server_binaries: bool,
    /// A Docker engine that answers.
    #[serde(default)]
    pub docker: bool,
    /// Programs the tests run (`openssl`), installed from the Debian package of the same name.
    #[serde(default)]
    pub programs: Vec<String>,
    /// Local Docker images the tests run (`test-image = "name"` or a list): the first is given
    /// to them as XTASK_TEST_IMAGE, all of them as XTASK_TEST_IMAGES.
    #[serde(default, deserialize_with = "one_or_many")]
    pub test_image: Vec<String>,
    /// The script that builds a `test-image` when it is absent (repository-relative), called
    /// with the image's name.
    pub test_image_build: Option<PathBuf>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let names = match toml::Value::deserialize(deserializer)? {
        toml::Value::String(one) => Some(vec![one]),
        toml::Value::Array(many) => many.into_iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    };
    names.ok_or_else(|| serde::de::Error::custom("expected an image name, or a list of image names"))
}

#[derive(Deserialize)]
struct Manifest {
    workspace: Option<WorkspaceTable>,
}

#[derive(Deserialize)]
struct WorkspaceTable {
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    metadata: Option<MetadataTable>,
}

#[derive(Deserialize)]
struct MetadataTable {
    xtask: Option<FileConfig>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub project: String,
    pub engine: EngineKind,
    pub port: u16,
    pub image: String,
    /// The major version pinned by `postgres` (XTASK_POSTGRES); `None`: whatever the engine has.
    pub postgres: Option<u32>,
    pub user: String,
    /// The admin password the user chose; `None`: the native and docker engines generate one.
    pub password: Option<String>,
    pub default_branches: Vec<String>,
    /// On the external engine, branches whose databases are not named per developer.
    pub shared_branches: Vec<String>,
    /// On the external engine, databases are named per developer (`per-developer = false`: not).
    pub per_developer: bool,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// The workspace root, against which relative paths in `database-url` (sslrootcert) are taken.
    pub root: PathBuf,
    /// Where `setup` writes the connection URLs: `.env` in the workspace root by default.
    pub env_file: PathBuf,
    /// New branch databases are cloned from pristine template databases (`templates`).
    pub templates: bool,
    /// The project's logical databases, the default one (for `DATABASE_URL`) first.
    pub databases: Vec<DatabaseSpec>,
    pub ci: CiConfig,
    pub redis: Option<RedisConfig>,
}

pub const DEFAULT_PORT: u16 = 5433;
pub const DEFAULT_IMAGE: &str = "postgres:17";
/// The majors `postgres` may pin: those this tool is tested on.
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 14..=18;

/// `postgres = "17"` or `postgres = 17`: a major version from [`SUPPORTED_MAJORS`].
#[derive(Debug, Clone, Copy)]
struct PinnedMajor(u32);

impl<'de> Deserialize<'de> for PinnedMajor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PinnedMajor, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        parse_major(&text).map(PinnedMajor).map_err(serde::de::Error::custom)
    }
}

pub fn parse_major(text: &str) -> Result<u32, String> {
    let major = text.trim().parse::<u32>().ok().filter(|m| SUPPORTED_MAJORS.contains(m));
    major.ok_or_else(|| {
        format!(
            "{text:?} is not a PostgreSQL major version this tool supports: expected one of {}..{} \
             (a major only, such as \"17\"; the newest minor of it is used)",
            SUPPORTED_MAJORS.start(),
            SUPPORTED_MAJORS.end()
        )
    })
}
const DEFAULT_USER: &str = "postgres";

impl Config {
    /// Reads `<root>/Cargo.toml` and the environment.
    pub fn load(root: &Path) -> Result<Config> {
        let manifest_path = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("read {}", manifest_path.display()))?;
        let (mut file, members) = parse_manifest(&text)
            .with_context(|| format!("invalid [workspace.metadata.xtask] in {}", manifest_path.display()))?;
        let workspace_declarations = file.databases.take().unwrap_or_default();
        let default_database = file.default_database.take();
        let redis_file = redis_settings(file.redis.take(), &text)?;
        refuse_non_utf8_settings(std::env::vars_os())?;
        let mut config = resolve(file, root, &|key| std::env::var(key).ok())?;
        let mut declared: Vec<Declared> = workspace_declarations
            .into_iter()
            .map(|declaration| Declared { file: "Cargo.toml".into(), text: &text, declaration })
            .collect();
        let members = member_declarations(root, &members, &config.project)?;
        declared.extend(members.iter().filter_map(|(file, member)| {
            Some(Declared { file: file.clone(), text: &member.text, declaration: member.database.clone()? })
        }));
        config.databases = services::resolve(&config.project, declared)?;
        let redis_services: Vec<_> = members.iter().filter_map(|(_, m)| m.redis_service.clone()).collect();
        config.redis =
            redis_config(redis_file, redis_services, &config.project, &|key| std::env::var(key).ok())?;
        if let Some(redis) = &mut config.redis {
            redis.ca = redis.ca.take().map(|ca| root.join(ca));
        }
        if let Some(default) = default_database {
            put_default_first(&mut config.databases, &default, &text)?;
        }
        Ok(config)
    }
}

/// An `XTASK_*` variable that is not UTF-8 would read as unset, and the tool would quietly act on
/// the default (another project, another server): it is an error instead.
fn refuse_non_utf8_settings(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<()> {
    for (key, value) in vars {
        let ours = key.to_str().is_some_and(|k| k.starts_with("XTASK_"));
        if ours && value.to_str().is_none() {
            bail!(
                "{}={value:?} is not UTF-8 text: set it to a UTF-8 value or unset it",
                key.to_string_lossy()
            );
        }
    }
    Ok(())
}

type Members = (Vec<String>, Vec<String>);

fn parse_manifest(text: &str) -> Result<(FileConfig, Members)> {
    let manifest: Manifest = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (file, members) = match manifest.workspace {
        Some(w) => (w.metadata.and_then(|m| m.xtask).unwrap_or_default(), (w.members, w.exclude)),
        None => (FileConfig::default(), (Vec::new(), Vec::new())),
    };
    validate_file(&file, text)?;
    Ok((file, members))
}

/// Each member crate's declarations with its file.
fn member_declarations(
    root: &Path,
    (members, exclude): &Members,
    project: &str,
) -> Result<Vec<(PathBuf, services::Member)>> {
    let mut found = Vec::new();
    for manifest in services::member_manifests(root, members, exclude)? {
        if let Some(member) = services::read_member(root, &manifest, project)? {
            found.push((manifest, member));
        }
    }
    Ok(found)
}

/// `redis = true | false | { port, image, url }`: `None` when absent or false.
fn redis_settings(value: Option<Spanned<toml::Value>>, text: &str) -> Result<Option<RedisFile>> {
    let Some(value) = value else { return Ok(None) };
    let (line, column) = line_column(text, value.span().start);
    match value.into_inner() {
        toml::Value::Boolean(on) => Ok(on.then(RedisFile::default)),
        toml::Value::Table(table) => table
            .try_into()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("line {line}, column {column}: `redis`: {}", e.message())),
        _ => bail!(
            "line {line}, column {column}: `redis`: expected true, false or a table such as \
             [workspace.metadata.xtask.redis] with port, image or url"
        ),
    }
}

/// Redis is on when the workspace asks for it or a service does (XTASK_REDIS=0 turns it off).
fn redis_config(
    file: Option<RedisFile>,
    mut services: Vec<services::RedisService>,
    project: &str,
    raw_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RedisConfig>> {
    let env = |key: &str| raw_env(key).filter(|v| !v.is_empty());
    let wanted = match env("XTASK_REDIS").as_deref() {
        None => file.is_some() || !services.is_empty(),
        Some("1" | "true" | "on") => true,
        Some("0" | "false" | "off") => false,
        Some(other) => bail!("XTASK_REDIS={other:?}: expected 1 or 0 (true/false, on/off)"),
    };
    if !wanted {
        return Ok(None);
    }
    let file = file.unwrap_or_default();
    let port =
        match raw_env("XTASK_REDIS_PORT") {
            Some(text) => text.parse::<u16>().ok().filter(|p| *p != 0).with_context(|| {
                format!("XTASK_REDIS_PORT={text:?}: expected a port number from 1 to 65535")
            })?,
            None => file.port.filter(|p| *p != 0).unwrap_or(DEFAULT_REDIS_PORT),
        };
    if services.is_empty() {
        services.push(services::RedisService::implicit(project));
    }
    services::check_redis_services(&services)?;
    Ok(Some(RedisConfig {
        port,
        image: env("XTASK_REDIS_IMAGE").or(file.image).unwrap_or_else(|| DEFAULT_REDIS_IMAGE.into()),
        url: env("XTASK_REDIS_URL").or(file.url),
        server: env("XTASK_REDIS_SERVER").map(PathBuf::from),
        ca: env("XTASK_REDIS_CA").map(PathBuf::from).or(file.ca),
        services,
    }))
}

fn put_default_first(databases: &mut [DatabaseSpec], default: &Spanned<String>, text: &str) -> Result<()> {
    let Some(index) = databases.iter().position(|d| &d.logical == default.get_ref()) else {
        let (line, column) = line_column(text, default.span().start);
        let known: Vec<&str> = databases.iter().map(|d| d.logical.as_str()).collect();
        bail!(
            "Cargo.toml, line {line}, column {column}: `default-database`: no database `{}` is declared; \
             declared: {}",
            default.get_ref(),
            known.join(", ")
        );
    };
    databases[..=index].rotate_right(1);
    Ok(())
}

/// Checks the values TOML accepted but this tool cannot use, naming line, column and key.
fn validate_file(file: &FileConfig, text: &str) -> Result<()> {
    let problems = [
        file.project.as_ref().map(|v| ("project", v.span(), check_project(v.get_ref()))),
        file.port.as_ref().map(|v| ("port", v.span(), check_port(*v.get_ref()))),
        file.user.as_ref().map(|v| ("user", v.span(), check_user(v.get_ref()))),
        file.password.as_ref().map(|v| ("password", v.span(), check_password(v.get_ref()))),
        file.default_branches.as_ref().map(|v| ("default-branches", v.span(), check_branches(v.get_ref()))),
    ];
    for (key, span, check) in problems.into_iter().flatten() {
        if let Err(problem) = check {
            let (line, column) = line_column(text, span.start);
            bail!("line {line}, column {column}: `{key}`: {problem}");
        }
    }
    Ok(())
}

fn check_project(name: &str) -> Result<(), String> {
    if naming::is_valid_base(name) {
        return Ok(());
    }
    Err(format!(
        "`{}` is not a valid project name: use lower-case letters, digits and `_`, starting with a \
         letter, at most {} bytes (for example `{}`)",
        naming::clip(name),
        naming::MAX_PROJECT_BYTES,
        naming::project_from_folder(name)
    ))
}

fn check_port(port: u16) -> Result<(), String> {
    if port == 0 { Err("expected a port number from 1 to 65535".into()) } else { Ok(()) }
}

/// The admin user goes to initdb, the container's POSTGRES_USER and URLs: a plain identifier only.
fn check_user(user: &str) -> Result<(), String> {
    let mut chars = user.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && user.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid admin user name: use ASCII letters, digits and `_`, starting with a letter \
             or `_`, at most 63 bytes (for example `postgres`)",
            naming::clip(user)
        ))
    }
}

fn check_password(password: &str) -> Result<(), String> {
    if password.contains('\0') || password.contains('\n') {
        Err("the password contains a NUL or newline character, which Postgres cannot store".into())
    } else {
        Ok(())
    }
}

fn check_branches(branches: &[String]) -> Result<(), String> {
    if branches.is_empty() || branches.iter().any(|b| b.trim().is_empty()) {
        Err("name at least one non-empty branch, for example [\"main\"]".into())
    } else {
        Ok(())
    }
}

/// An environment value checked like its file key, with the variable named in the error.
fn from_env(
    var: &str,
    value: Option<String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>> {
    if let Some(value) = &value {
        check(value).map_err(|problem| anyhow::anyhow!("{var}={:?}: {problem}", naming::clip(value)))?;
    }
    Ok(value)
}

/// `raw_env`: the environment as it is; an empty variable counts as unset, but for XTASK_PORT, where
/// an empty value (`XTASK_PORT=$UNSET_VAR`) would silently pick the default port (another server).
fn resolve(file: FileConfig, root: &Path, raw_env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    let env = |key: &str| raw_env(key).filter(|v| !v.is_empty());
    let project = match from_env("XTASK_PROJECT", env("XTASK_PROJECT"), check_project)? {
        Some(name) => name,
        None => match file.project {
            Some(name) => name.into_inner(),
            None => {
                let main_checkout = main_checkout_of_worktree(root);
                let folder = main_checkout.as_deref().unwrap_or(root).file_name();
                naming::project_from_folder(&folder.map_or("project".into(), |f| f.to_string_lossy()))
            }
        },
    };
    let engine = match env("XTASK_ENGINE") {
        Some(text) => EngineKind::parse(&text).with_context(|| {
            format!("XTASK_ENGINE={text:?}: expected one of auto, docker, native, external")
        })?,
        None => file.engine.unwrap_or(EngineKind::Auto),
    };
    let port = match raw_env("XTASK_PORT") {
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("XTASK_PORT={text:?}: expected a port number from 1 to 65535"))?,
        None => file.port.map_or(DEFAULT_PORT, Spanned::into_inner),
    };
    let user = from_env("XTASK_USER", env("XTASK_USER"), check_user)?
        .or(file.user.map(Spanned::into_inner))
        .unwrap_or(DEFAULT_USER.into());
    let password = from_env("XTASK_PASSWORD", env("XTASK_PASSWORD"), check_password)
        .map_err(|_| {
            anyhow::anyhow!("XTASK_PASSWORD contains a NUL or newline character, which Postgres cannot store")
        })?
        .or(file.password.map(Spanned::into_inner));
    let default_branches =
        file.default_branches.map_or_else(|| vec!["main".into(), "master".into()], Spanned::into_inner);
    let data_dir = match env("XTASK_DATA_DIR").map(PathBuf::from).or(file.data_dir) {
        Some(dir) if dir.is_relative() => root.join(dir),
        Some(dir) => dir,
        None => default_data_dir(&project)?,
    };
    let postgres = match env("XTASK_POSTGRES") {
        Some(text) => {
            Some(parse_major(&text).map_err(|problem| anyhow::anyhow!("XTASK_POSTGRES: {problem}"))?)
        }
        None => file.postgres.map(|major| major.0),
    };
    let image = env("XTASK_IMAGE").or(file.image).unwrap_or_else(|| match postgres {
        Some(major) => format!("postgres:{major}"),
        None => DEFAULT_IMAGE.into(),
    });
    Ok(Config {
        project,
        engine,
        port,
        image,
        postgres,
        user,
        password,
        default_branches,
        shared_branches: match env("XTASK_SHARED_BRANCHES") {
            Some(list) => {
                list.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_owned).collect()
            }
            None => file.shared_branches.unwrap_or_default(),
        },
        per_developer: match env("XTASK_PER_DEVELOPER").as_deref() {
            None => file.per_developer.unwrap_or(true),
            Some("1" | "true" | "on") => true,
            Some("0" | "false" | "off") => false,
            Some(other) => bail!("XTASK_PER_DEVELOPER={other:?}: expected 1 or 0 (true/false, on/off)"),
        },
        data_dir,
        database_url: env("XTASK_DATABASE_URL").or(file.database_url),
        root: root.to_path_buf(),
        env_file: match env("XTASK_ENV_FILE").map(PathBuf::from).or(file.env_file) {
            Some(path) if path.is_relative() => root.join(path),
            Some(path) => path,
            None => root.join(".env"),
        },
        templates: match env("XTASK_TEMPLATES").as_deref() {
            None => file.templates.unwrap_or(true),
            Some("1" | "true" | "on") => true,
            Some("0" | "false" | "off") => false,
            Some(other) => bail!("XTASK_TEMPLATES={other:?}: expected 1 or 0 (true/false, on/off)"),
        },
        databases: Vec::new(),
        ci: file.ci.unwrap_or_default(),
        redis: None,
    })
}

/// For a linked git worktree, the main checkout's folder: every worktree of a repository is one
/// project (one server), whatever its own folder is called.
fn main_checkout_of_worktree(root: &Path) -> Option<PathBuf> {
    let pointer = std::fs::read_to_string(root.join(".git")).ok()?;
    let git_dir = root.join(pointer.strip_prefix("gitdir:")?.trim());
    let common = std::fs::read_to_string(git_dir.join("commondir")).ok()?;
    let common_dir = std::fs::canonicalize(git_dir.join(common.trim())).ok()?;
    common_dir.parent().map(Path::to_path_buf)
}

/// A per-user folder keyed by project, shared by every worktree of the repository. As root the
/// server runs as the `postgres` user, which cannot enter /root, so root's clusters live in /var/lib.
fn default_data_dir(project: &str) -> Result<PathBuf> {
    if crate::os::is_root() {
        return Ok(PathBuf::from("/var/lib/xtask").join(project));
    }
    let base = if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(dir)
    } else {
        let home = std::env::var_os("HOME")
            .context("HOME is not set: set XTASK_DATA_DIR to choose where the local server keeps its data")?;
        if cfg!(target_os = "macos") {
            PathBuf::from(home).join("Library/Application Support")
        } else {
            PathBuf::from(home).join(".local/share")
        }
    };
    Ok(base.join("xtask").join(project))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config> {
        let (file, _) = parse_manifest(toml)?;
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(file, Path::new("/src/My-App"), &|key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let c = load("[workspace]\nmembers = []\n", &[("XTASK_DATA_DIR", "/d")]).unwrap();
        assert_eq!(c.project, "my_app");
        assert_eq!(c.engine, EngineKind::Auto);
        assert_eq!(c.port, 5433);
        assert_eq!(c.image, "postgres:17");
        assert_eq!(c.default_branches, ["main", "master"]);
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert!(c.database_url.is_none());
    }

    #[test]
    fn file_values_and_env_overrides() {
        let toml = r#"
[workspace.metadata.xtask]
project = "shop"
engine = "native"
port = 6000
default-branches = ["trunk"]
data-dir = "target/pg"
"#;
        let c = load(toml, &[]).unwrap();
        assert_eq!((c.project.as_str(), c.engine, c.port), ("shop", EngineKind::Native, 6000));
        assert_eq!(c.data_dir, PathBuf::from("/src/My-App/target/pg"));
        let c = load(toml, &[("XTASK_PORT", "7000"), ("XTASK_ENGINE", "docker")]).unwrap();
        assert_eq!((c.port, c.engine), (7000, EngineKind::Docker));
    }

    #[test]
    fn a_pinned_major_chooses_the_image_unless_one_is_given() {
        let pinned = "[workspace.metadata.xtask]\npostgres = \"16\"\n";
        let c = load(pinned, &[("XTASK_DATA_DIR", "/d")]).unwrap();
        assert_eq!((c.postgres, c.image.as_str()), (Some(16), "postgres:16"));
        let c = load(pinned, &[("XTASK_DATA_DIR", "/d"), ("XTASK_POSTGRES", "18")]).unwrap();
        assert_eq!((c.postgres, c.image.as_str()), (Some(18), "postgres:18"));
        let c = load(pinned, &[("XTASK_DATA_DIR", "/d"), ("XTASK_IMAGE", "mine:1")]).unwrap();
        assert_eq!((c.postgres, c.image.as_str()), (Some(16), "mine:1"));
        let c = load("[workspace.metadata.xtask]\npostgres = 14\n", &[("XTASK_DATA_DIR", "/d")]).unwrap();
        assert_eq!(c.postgres, Some(14));
        for bad in ["13", "19", "17.2", "latest"] {
            let error = load(pinned, &[("XTASK_DATA_DIR", "/d"), ("XTASK_POSTGRES", bad)]).unwrap_err();
            assert!(format!("{error:#}").contains("expected one of 14..18"), "{bad}: {error:#}");
        }
        let error = load("[workspace.metadata.xtask]\npostgres = \"12\"\n", &[]).unwrap_err();
        assert!(format!("{error:#}").contains("\"12\" is not a PostgreSQL major"), "{error:#}");
    }

    #[test]
    fn test_image_is_one_name_or_a_list() {
        let ci = |value: &str| {
            let text = format!("[workspace.metadata.xtask.ci]\ntest-image = {value}\n");
            load(&text, &[("XTASK_DATA_DIR", "/d")]).map(|c| c.ci.test_image)
        };
        assert_eq!(ci("\"a:15\"").unwrap(), ["a:15"]);
        assert_eq!(ci("[\"a:15\", \"a:18\"]").unwrap(), ["a:15", "a:18"]);
        for bad in ["15", "[\"a:15\", 18]"] {
            let error = ci(bad).unwrap_err();
            assert!(format!("{error:#}").contains("expected an image name, or a list"), "{bad}: {error:#}");
        }
    }

    #[test]
    fn databases_from_the_workspace_and_member_crates() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let manifest = r#"[workspace]
members = ["services/*"]

[workspace.metadata.xtask]
project = "shop"
data-dir = "data"
default-database = "orders"

[[workspace.metadata.xtask.databases]]
name = "legacy"
role = "legacy_app"
"#;
        std::fs::write(root.join("Cargo.toml"), manifest).unwrap();
        for (name, table) in [("orders", "name = \"orders\"\nreads = [\"legacy\"]"), ("tools", "")] {
            std::fs::create_dir_all(root.join("services").join(name)).unwrap();
            let metadata = if table.is_empty() {
                String::new()
            } else {
                format!("[package.metadata.xtask.database]\n{table}\n")
            };
            let text = format!("[package]\nname = \"{name}\"\n\n{metadata}");
            std::fs::write(root.join("services").join(name).join("Cargo.toml"), text).unwrap();
        }
        let config = Config::load(root).unwrap();
        let names: Vec<&str> = config.databases.iter().map(|d| d.logical.as_str()).collect();
        assert_eq!(names, ["orders", "legacy"], "the default first, then in declaration order");
        assert_eq!(config.databases[0].declared_in, PathBuf::from("services/orders/Cargo.toml"));
        assert_eq!(config.databases[1].role.as_deref(), Some("legacy_app"));
        assert_eq!(config.env_file, root.join(".env"));

        std::fs::write(root.join("Cargo.toml"), manifest.replace("\"orders\"\n", "\"nope\"\n")).unwrap();
        let msg = format!("{:#}", Config::load(root).unwrap_err());
        assert!(msg.contains("line 7, column 20: `default-database`: no database `nope`"), "{msg}");
        std::fs::write(
            root.join("services/orders/Cargo.toml"),
            "[package.metadata.xtask.database]\nnam = 1\n",
        )
        .unwrap();
        let msg = format!("{:#}", Config::load(root).unwrap_err());
        assert!(msg.contains("services/orders/Cargo.toml") && msg.contains("nam"), "{msg}");
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let err = load("[workspace.metadata.xtask]\nport = 1\nprot = 2\n", &[]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 3, column 1"), "{msg}");
        assert!(msg.contains("prot"), "{msg}");
    }

    #[test]
    fn settings_that_are_not_utf8_are_errors() {
        use std::os::unix::ffi::OsStringExt;
        let bad = std::ffi::OsString::from_vec(vec![b'a', 0xff]);
        let vars = vec![("HOME".into(), bad.clone()), ("XTASK_PROJECT".into(), bad)];
        let msg = format!("{:#}", refuse_non_utf8_settings(vars.clone().into_iter()).unwrap_err());
        assert!(msg.contains("XTASK_PROJECT") && msg.contains("not UTF-8"), "{msg}");
        assert!(refuse_non_utf8_settings(vars.into_iter().take(1)).is_ok(), "only XTASK_* variables");
    }

    #[test]
    fn redis_is_on_when_the_workspace_or_a_service_asks() {
        let settings = |text: &str| redis_settings(toml::from_str::<RedisHolder>(text).unwrap().redis, text);
        #[derive(Deserialize)]
        struct RedisHolder {
            redis: Option<Spanned<toml::Value>>,
        }
        assert!(settings("redis = false").unwrap().is_none());
        assert!(settings("redis = true").unwrap().is_some());
        let table = settings("[redis]\nport = 7000\nurl = \"redis://h\"").unwrap().unwrap();
        assert_eq!((table.port, table.url.as_deref()), (Some(7000), Some("redis://h")));
        let err = format!("{:#}", settings("[redis]\nprot = 1").err().unwrap());
        assert!(err.contains("line 1") && err.contains("prot"), "{err}");
        assert!(settings("redis = 3").is_err());

        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
        };
        let service = |name: &str| services::RedisService {
            name: name.into(),
            base: format!("p_{name}"),
            declared_in: format!("services/{name}/Cargo.toml").into(),
        };
        assert!(redis_config(None, vec![], "p", &env(&[])).unwrap().is_none());
        let on = redis_config(None, vec![service("web")], "p", &env(&[])).unwrap().unwrap();
        assert_eq!(
            (on.port, on.image.as_str(), on.services.len()),
            (DEFAULT_REDIS_PORT, DEFAULT_REDIS_IMAGE, 1)
        );
        let implicit = redis_config(Some(RedisFile::default()), vec![], "p", &env(&[])).unwrap().unwrap();
        assert_eq!(implicit.services, [services::RedisService::implicit("p")]);
        let off = redis_config(None, vec![service("web")], "p", &env(&[("XTASK_REDIS", "0")])).unwrap();
        assert!(off.is_none());
        let port = redis_config(None, vec![service("web")], "p", &env(&[("XTASK_REDIS_PORT", "7001")]));
        assert_eq!(port.unwrap().unwrap().port, 7001);
        assert!(redis_config(None, vec![service("web")], "p", &env(&[("XTASK_REDIS_PORT", "")])).is_err());
        let colliding = redis_config(None, vec![service("a"), service("a_b")], "p", &env(&[]));
        assert!(format!("{:#}", colliding.err().unwrap()).contains("could share keys"));
    }

    #[test]
    fn broken_values_are_errors() {
        for (toml, needle) in [
            ("[workspace.metadata.xtask]\nport = \"x\"\n", "line 2"),
            ("[workspace.metadata.xtask]\nport = 70000\n", "line 2"),
            ("[workspace.metadata.xtask]\nengine = \"podman\"\n", "podman"),
            ("[workspace.metadata.xtask]\nproject = \"Bad Name\"\n", "line 2, column 11: `project`"),
            ("[workspace.metadata.xtask]\nproject = \"\"\n", "line 2, column 11: `project`"),
            ("[workspace.metadata.xtask]\nport = 0\n", "line 2, column 8: `port`"),
            ("[workspace.metadata.xtask]\nuser = \"\"\n", "line 2, column 8: `user`"),
            ("[workspace.metadata.xtask]\nuser = \"a'b\"\n", "line 2, column 8: `user`"),
            ("[workspace.metadata.xtask]\ndefault-branches = []\n", "line 2, column 20: `default-branches`"),
            ("[workspace.metadata.xtask\n", "line 1"),
        ] {
            let msg = format!("{:#}", load(toml, &[("XTASK_DATA_DIR", "/d")]).unwrap_err());
            assert!(msg.contains(needle), "{toml:?}: {msg}");
        }
        for (key, value) in [
            ("XTASK_PORT", "abc"),
            ("XTASK_PORT", "0"),
            ("XTASK_PORT", ""),
            ("XTASK_ENGINE", "x"),
            ("XTASK_PROJECT", "A B"),
            ("XTASK_USER", "x\"; DROP ROLE y; --"),
        ] {
            let msg = format!("{:#}", load("", &[(key, value), ("XTASK_DATA_DIR", "/d")]).unwrap_err());
            assert!(msg.contains(key), "{msg}");
        }
    }
}
