//! Which PostgreSQL programs the native engine runs: the machine's own (XTASK_PG_BINDIR, PATH, the
//! usual places), or the managed binaries this tool downloads (see `binaries`) when the major it
//! needs is not installed. And client programs able to serve the server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::binaries::{self, DEFAULT_MAJOR};
use crate::packages::INSTALL_HINT;

/// A directory holding `initdb` and `pg_ctl` of one major version.
pub struct Binaries {
    pub dir: PathBuf,
    pub major: u32,
    /// Downloaded by this tool (then the client programs come from its cache too).
    pub managed: bool,
}

/// Whether the native engine can get a server without asking: some are installed, a major is
/// pinned (its managed binaries can be fetched), or the cache already holds one.
pub fn available(pinned: Option<u32>) -> bool {
    pinned.is_some() || !installed().is_empty() || newest_cached().is_some()
}

/// The binaries for a cluster made by `cluster` (absent: none made yet), with `pinned` the major
/// the configuration asks for. A cluster of another major than the pinned one is refused with
/// what to do: it is never upgraded or dropped here.
pub fn for_cluster(cluster: Option<u32>, pinned: Option<u32>, pgdata: &Path) -> Result<Binaries> {
    if let (Some(made), Some(pinned)) = (cluster, pinned)
        && made != pinned
    {
        bail!("{}", major_mismatch(pgdata, made, pinned));
    }
    let installed = installed();
    let Some(major) = cluster.or(pinned) else {
        if let Some(first) = installed.into_iter().next() {
            return Ok(first);
        }
        return newest_cached().with_context(|| {
            format!(
                "the native engine needs PostgreSQL's server binaries (initdb, pg_ctl), and none were found \
                 (XTASK_PG_BINDIR, PATH, the usual places).\nPin a major in [workspace.metadata.xtask] \
                 (`postgres = \"{DEFAULT_MAJOR}\"`) to have this tool download it, no root needed; or \
                 install them:\n{INSTALL_HINT}\nor use the docker engine (XTASK_ENGINE=docker)"
            )
        });
    };
    let found: Vec<String> = installed.iter().map(|b| b.major.to_string()).collect();
    if let Some(bins) = installed.into_iter().find(|b| b.major == major) {
        return Ok(bins);
    }
    if let Some(dir) = std::env::var_os("XTASK_PG_BINDIR").filter(|d| !d.is_empty()) {
        bail!(
            "XTASK_PG_BINDIR={} holds PostgreSQL {} server binaries, but PostgreSQL {major} is needed{}: point it \
             at PostgreSQL {major}'s bin directory, or unset it to have this tool use (or download) its own",
            Path::new(&dir).display(),
            found.first().map_or("no", String::as_str),
            why_major(cluster, pgdata)
        );
    }
    if !crate::config::SUPPORTED_MAJORS.contains(&major) {
        bail!(
            "the cluster in {} was made by PostgreSQL {major}, but only PostgreSQL {} server binaries are \
             installed: install PostgreSQL {major}'s server package, or run `cargo xtask teardown` to delete \
             this cluster and its data",
            pgdata.display(),
            found.join(", ")
        );
    }
    managed(major)
}

/// `--provision` on a machine where the native engine has nothing to run: Debian's package with
/// apt as root (when it offers the pinned major), else the managed binaries, no root needed.
pub fn provision(pinned: Option<u32>) -> Result<()> {
    let installed = installed();
    let enough = match pinned {
        Some(major) => installed.iter().any(|b| b.major == major),
        None => !installed.is_empty() || newest_cached().is_some(),
    };
    if enough {
        return Ok(());
    }
    if let Some(packages) = crate::packages::apt_would_install(pinned) {
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        return crate::packages::apt_install(&names);
    }
    managed(pinned.unwrap_or(DEFAULT_MAJOR)).map(drop)
}

fn managed(major: u32) -> Result<Binaries> {
    let dir = binaries::server(major)?;
    reachable_by_server_user(&dir)?;
    Ok(Binaries { dir, major, managed: true })
}

/// The newest server in the managed cache; none when XTASK_PG_BINDIR says where to look instead.
fn newest_cached() -> Option<Binaries> {
    if std::env::var_os("XTASK_PG_BINDIR").is_some_and(|d| !d.is_empty()) {
        return None;
    }
    let (major, dir) = binaries::newest_cached_server()?;
    Some(Binaries { dir, major, managed: true })
}

fn why_major(cluster: Option<u32>, pgdata: &Path) -> String {
    match cluster {
        Some(_) => format!(" (the cluster in {} was made by it)", pgdata.display()),
        None => " (`postgres` in [workspace.metadata.xtask], or XTASK_POSTGRES, pins it)".into(),
    }
}

/// What to say when the configuration pins another major than the cluster's.
pub fn major_mismatch(pgdata: &Path, made: u32, pinned: u32) -> String {
    format!(
        "the cluster in {} runs PostgreSQL {made}, but `postgres` (in [workspace.metadata.xtask], or \
         XTASK_POSTGRES) pins {pinned}; a cluster is never upgraded or dropped on its own. To keep it, pin \
         {made} again (`postgres = \"{made}\"`). To move to {pinned}: `cargo xtask backup`, `cargo xtask \
         teardown`, `cargo xtask setup`, then `cargo xtask restore`; nothing was changed",
        pgdata.display()
    )
}

/// As root the server runs as the `postgres` user, which must be able to walk down to the
/// binaries (a cache under /root, say, it cannot enter).
fn reachable_by_server_user(bin: &Path) -> Result<()> {
    if !crate::os::is_root() {
        return Ok(());
    }
    if let Some((ancestor, mode)) = crate::fsafe::closed_to_others(bin)? {
        bail!(
            "the PostgreSQL binaries in {} are inside {}, which the postgres user (who runs the server) \
             cannot enter (mode {mode:o}): choose another cache with XTASK_POSTGRES_CACHE, or `chmod o+x {}`",
            bin.display(),
            ancestor.display(),
            ancestor.display()
        );
    }
    Ok(())
}

/// A client program (psql, pg_dump, pg_restore) able to serve a server of `server_major`: the
/// server's own, an installed one of that major or newer (the newest first; Debian's /usr/bin/psql
/// is a slower Perl wrapper), else the managed client tools, downloaded on first use.
pub fn client_for(program: &str, server: &Binaries) -> Result<PathBuf> {
    let own = server.dir.join(program);
    if own.exists() {
        return Ok(own);
    }
    if let Some(dir) = newest_client_dir(program).filter(|b| b.major >= server.major) {
        return Ok(dir.dir.join(program));
    }
    if !server.managed
        && let Ok(path) = which::which(program)
    {
        return Ok(path);
    }
    Ok(binaries::clients()?.join(program))
}

/// A client program for a server of `major` this tool does not run: an installed one of that
/// major or newer, else the downloaded ones when they serve it, else the newest found (whose own
/// error names the mismatch). The downloaded ones are built without TLS: with `tls` (a mode that
/// asks for it) psql comes from this machine whatever its version (psql serves newer servers),
/// and a pg_dump or pg_restore this machine lacks is an error saying what to install.
pub fn client_for_major(program: &str, major: Option<u32>, tls: Option<&str>) -> Result<PathBuf> {
    let Some(major) = major else { return find_client(program) };
    if let Some(dir) = newest_client_dir(program).filter(|b| b.major >= major) {
        return Ok(dir.dir.join(program));
    }
    if let Some(mode) = tls {
        if program == "psql" {
            return find_client(program);
        }
        bail!(
            "{program} of PostgreSQL {major} or newer is needed for this server, over TLS (sslmode={mode}), and this \
             machine has none; the PostgreSQL client tools this tool downloads are built without TLS. Install \
             the PostgreSQL {major} client (Debian/Ubuntu: postgresql-client-{major}, from apt.postgresql.org \
             when the distribution lacks it; macOS: brew install postgresql@{major})"
        );
    }
    if major <= binaries::CLIENTS_MAJOR && std::env::var_os("XTASK_PG_BINDIR").is_none_or(|d| d.is_empty()) {
        return Ok(binaries::clients()?.join(program));
    }
    find_client(program)
}

fn newest_client_dir(program: &str) -> Option<Binaries> {
    let mut versioned: Vec<Binaries> = known_bin_dirs()
        .into_iter()
        .filter(|dir| dir.join(program).exists())
        .filter_map(|dir| major_of_dir(&dir).map(|major| Binaries { dir, major, managed: false }))
        .collect();
    versioned.sort_by_key(|b| std::cmp::Reverse(b.major));
    versioned.into_iter().next()
}

/// Server binary directories: XTASK_PG_BINDIR alone when set; else the one on PATH first, then the
/// usual places by descending version.
pub fn installed() -> Vec<Binaries> {
    if let Some(dir) = std::env::var_os("XTASK_PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let complete = dir.join("initdb").exists() && dir.join("pg_ctl").exists();
        return match major_of_dir(&dir) {
            Some(major) if complete => vec![Binaries { dir, major, managed: false }],
            _ => Vec::new(),
        };
    }
    let mut found = Vec::new();
    if let Ok(pg_ctl) = which::which("pg_ctl") {
        let real = std::fs::canonicalize(&pg_ctl).unwrap_or(pg_ctl);
        if let Some(dir) = real.parent()
            && let Some(major) = major_of_dir(dir)
        {
            found.push(Binaries { dir: dir.to_path_buf(), major, managed: false });
        }
    }
    let mut known: Vec<Binaries> = known_bin_dirs()
        .into_iter()
        .filter(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .filter_map(|dir| major_of_dir(&dir).map(|major| Binaries { dir, major, managed: false }))
        .collect();
    known.sort_by_key(|b| std::cmp::Reverse(b.major));
    for bins in known {
        if !found.iter().any(|f| f.dir == bins.dir) {
            found.push(bins);
        }
    }
    found.retain(|b| b.dir.join("initdb").exists());
    found
}

fn known_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql", "bin"),
        ("/usr/local/opt", "postgresql", "bin"),
        ("/Applications/Postgres.app/Contents/Versions", "", "bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                dirs.push(entry.path().join(suffix));
            }
        }
    }
    dirs
}

/// The major version from the directory's path (`/usr/lib/postgresql/15/bin`, `postgresql@17`),
/// else from `pg_ctl --version`.
fn major_of_dir(dir: &Path) -> Option<u32> {
    let from_path = dir.components().rev().find_map(|c| {
        let text = c.as_os_str().to_string_lossy();
        let digits = text.rsplit(['@', '-']).next().unwrap_or(&text);
        digits.parse::<u32>().ok().filter(|m| *m >= 9)
    });
    if from_path.is_some() {
        return from_path;
    }
    let output = std::process::Command::new(dir.join("pg_ctl")).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().last()?;
    version.split('.').next()?.parse().ok()
}

/// A client program (psql, pg_dump, pg_restore): the newest versioned binary first (Debian's
/// /usr/bin/psql is a slower Perl wrapper), else the one on PATH.
pub fn find_client(program: &str) -> Result<PathBuf> {
    if let Some(bins) = newest_client_dir(program) {
        return Ok(bins.dir.join(program));
    }
    which::which(program).with_context(|| {
        format!(
            "{program} was not found: install the PostgreSQL client (Debian/Ubuntu: sudo apt-get install \
             postgresql-client; Fedora: sudo dnf install postgresql; macOS: brew install libpq)"
        )
    })
}
