//! The checks that `pre-commit` and `ci` share. Each returns a one-line account when it passes and
//! an error saying what is wrong, and what to do, when it does not.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use postgres::error::SqlState;
use sha2::{Digest, Sha384};

use crate::conn::{Endpoint, PgError};
use crate::git;
use crate::migrations::{self, Migration, Problem};
use crate::runner;
use crate::workspace::{Ctx, Database};

/// A database and its migration files, when they are well formed.
pub struct MigrationSet {
    pub database: Database,
    pub files: Result<Vec<Migration>>,
}

/// Reads every database's migrations from `view` (the working tree, or the staged files).
pub fn read_sets(view: &Ctx) -> Vec<MigrationSet> {
    view.databases()
        .into_iter()
        .map(|database| {
            let files = migrations::discover(&view.root, &database.migrations_dir(view));
            MigrationSet { database, files }
        })
        .collect()
}

/// Well-formed names, unique versions, every down with its up: `discover` refuses anything else.
pub fn names(set: &MigrationSet) -> Result<String> {
    match &set.files {
        Ok(files) => Ok(format!("{} migration(s), well formed", files.len())),
        Err(error) => Err(anyhow::anyhow!("{error:#}")),
    }
}

/// What the default branch knows of a database's migrations.
pub struct History {
    pub account: String,
    /// Index of the first migration this branch adds (the ones before it are committed history).
    pub first_new: usize,
}

/// Compares the migrations with the default branch's: none that the branch started from is
/// changed or deleted, and each one added is newer than the default branch's newest and free of
/// what sqlx runs differently ([`migrations::SqlxHazard`]).
pub fn history(repo: &Path, default_branches: &[String], dir: &Path, files: &[Migration]) -> Result<History> {
    let Some(default) = git::default_branch(repo, default_branches)? else {
        refuse_sqlx_hazards(files.iter(), Vec::new())?;
        return Ok(History {
            account: format!("no {} branch yet: every migration is new", default_branches.join(" or ")),
            first_new: 0,
        });
    };
    let short = default.trim_start_matches("refs/heads/").trim_start_matches("refs/remotes/");
    let dir_text = dir.to_string_lossy().replace('\\', "/");
    let base = git::merge_base_with_head(repo, &default);
    if base.is_none() && git::merge_base_with_head(repo, "HEAD").is_some() {
        bail!(
            "HEAD and {short} have no common history, so the committed migrations cannot be told from new \
             ones: in a shallow clone run `git fetch --unshallow` (or check out with full history)"
        );
    }
    let committed = match &base {
        Some(base) => ups_at(repo, base, &dir_text)?,
        None => BTreeMap::new(),
    };
    let newest_on_default = ups_at(repo, &default, &dir_text)?.keys().max().copied();
    let specs: Vec<String> =
        committed.values().map(|path| format!("{}:./{path}", base.as_deref().unwrap_or_default())).collect();
    let texts = git::read_blobs(repo, &specs)?;
    let mut problems = Vec::new();
    for ((version, path), text) in committed.iter().zip(texts) {
        let checksum = text.map(|bytes| Sha384::digest(&bytes).to_vec());
        match files.iter().find(|file| file.version == *version) {
            None => problems.push(format!(
                "{path} is on {short} but deleted here: a committed migration must stay; restore it with \
                 `git checkout {short} -- {path}` and undo it in a new migration"
            )),
            Some(file) if Some(&file.checksum) != checksum.as_ref() => problems.push(format!(
                "{} changed after it was committed on {short}: databases that applied it will not run it \
                 again. Restore it (`git checkout {short} -- {path}`) and put the change in a new migration \
                 (`cargo xtask prepare \"...\"`)",
                file.up.display()
            )),
            Some(_) => {}
        }
    }
    let added: Vec<&Migration> = files.iter().filter(|f| !committed.contains_key(&f.version)).collect();
    if let Some(newest) = newest_on_default {
        for file in added.iter().filter(|f| f.version <= newest) {
            problems.push(format!(
                "{} is new but not newer than {short}'s newest migration ({newest}): after a merge it would \
                 run out of order. Give it a later version (rename the file, or write it again with \
                 `cargo xtask prepare`)",
                file.up.display()
            ));
        }
    }
    refuse_sqlx_hazards(added.iter().copied(), problems)?;
    let first_new = files.iter().position(|f| !committed.contains_key(&f.version)).unwrap_or(files.len());
    Ok(History {
        account: format!("{} committed on {short} unchanged, {} new", committed.len(), added.len()),
        first_new,
    })
}

/// Fails with `problems` and the new migrations that sqlx would fail on, or that give up the
/// atomicity of a migration: fine in history (their checksums may be recorded), not in a new file.
fn refuse_sqlx_hazards<'a>(
    added: impl Iterator<Item = &'a Migration>,
    mut problems: Vec<String>,
) -> Result<()> {
    for file in added {
        if let Some(hazard) = migrations::SqlxHazard::find(&file.up, &file.sql, file.no_transaction) {
            problems.push(format!("new migration {}: {}", file.up.display(), hazard.warning()));
        }
    }
    if !problems.is_empty() {
        bail!(problems.join("\n"));
    }
    Ok(())
}

/// The up migrations directly in `dir` at `rev`, by version.
fn ups_at(repo: &Path, rev: &str, dir: &str) -> Result<BTreeMap<i64, String>> {
    let mut ups = BTreeMap::new();
    for path in git::files_at(repo, rev, dir)? {
        let Some((parent, name)) = path.rsplit_once('/') else { continue };
        if parent != dir {
            continue;
        }
        if let Some(version) = migrations::up_version(name) {
            ups.insert(version, path);
        }
    }
    Ok(ups)
}

/// Whether this branch's database still has the schema its migrations made when this tool last
/// migrated it (by the fingerprint kept then: one query, not a comparison).
pub fn drift(endpoint: &Endpoint, database: &Database) -> Result<String> {
    let name = database.name.as_str();
    let Some(mut client) = connect_if_made(endpoint, name)? else {
        return Ok(format!("{name} does not exist yet"));
    };
    match crate::drift::drifted(&mut client)? {
        Some(false) => Ok(format!("{name} has the schema its migrations made")),
        Some(true) => bail!(
            "the schema of {name} changed outside its migrations since they were applied (by hand?): \
             `cargo xtask schema --check --live` shows the difference and the SQL that removes it; \
             or `cargo xtask wipe` then `cargo xtask setup` makes it again from the migrations"
        ),
        None => Ok(format!(
            "{name} keeps no fingerprint (migrated by another tool): `cargo xtask schema --check --live` compares in full"
        )),
    }
}

/// A connection to the database `name`; `None` when it does not exist.
fn connect_if_made(endpoint: &Endpoint, name: &str) -> Result<Option<postgres::Client>> {
    match runner::connect(endpoint, name) {
        Ok(client) => Ok(Some(client)),
        Err(error) if PgError::code_in(&error) == Some(&SqlState::INVALID_CATALOG_NAME) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Against this branch's own database: no applied migration changed or removed (`elsewhere`:
/// versions whose files exist though they are not among `files`, e.g. not staged yet).
pub fn applied(
    endpoint: &Endpoint,
    database: &Database,
    files: &[Migration],
    elsewhere: &[i64],
) -> Result<String> {
    let name = database.name.as_str();
    let Some(mut client) = connect_if_made(endpoint, name)? else {
        return Ok(format!("{name} does not exist yet (`cargo xtask setup` makes it)"));
    };
    let applied = runner::applied(&mut client)?;
    let plan = migrations::plan(files, &applied, true);
    let problems: Vec<&Problem> = plan
        .problems
        .iter()
        .filter(|p| match p {
            Problem::OutOfOrder { .. } => false,
            Problem::Missing { version, .. } => !elsewhere.contains(version),
            _ => true,
        })
        .collect();
    if !problems.is_empty() {
        let owned: Vec<Problem> = problems.into_iter().cloned().collect();
        bail!(migrations::explain(&owned, name, None));
    }
    Ok(format!("{} applied to {name}, none changed", applied.len()))
}

/// The migrations produce each database's schema.sql, where there is one.
pub fn declared_schemas(view: &Ctx, endpoint: &Endpoint) -> Result<String> {
    let declared = super::schema::with_declared_schema(view, view.databases());
    if declared.is_empty() {
        return Ok("no schema.sql".into());
    }
    let differences = super::schema::check_databases(view, endpoint, &declared)?;
    if !differences.is_empty() {
        bail!(differences.join("\n"));
    }
    Ok(format!("{} declared schema(s) match their migrations", declared.len()))
}

/// `cargo fmt --check` over the workspace, or rustfmt over the staged text of the staged `.rs`
/// files (so what is checked is what gets committed).
pub fn formatting(root: &Path, staged: bool) -> Result<String> {
    if !staged {
        let command = duct::cmd!("cargo", "fmt", "--all", "--check", "--", "--color=never");
        let output = crate::os::signals_unblocked(command)
            .dir(root)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("run cargo fmt")?;
        if output.status.success() {
            return Ok("cargo fmt --check: formatted".into());
        }
        bail!(
            "cargo fmt --check failed (unformatted code, or see its message); run `cargo fmt`:\n{}",
            head(&output.stdout, &output.stderr)
        );
    }
    let files = git::staged_rust_files(root)?;
    let config =
        [".rustfmt.toml", "rustfmt.toml"].into_iter().map(|name| root.join(name)).find(|p| p.is_file());
    let mut unformatted = Vec::new();
    for (path, text) in &files {
        let edition = edition_of(root, Path::new(path));
        // rustfmt --check exits 0 on stdin whatever it finds: compare its output with the input.
        let mut args = vec!["--emit", "stdout", "--quiet", "--edition", edition.as_str()];
        if let Some(config) = &config {
            args.extend(["--config-path", config.to_str().unwrap_or_default()]);
        }
        let output = duct::cmd("rustfmt", &args)
            .dir(root)
            .stdin_bytes(text.as_slice())
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("run rustfmt (rustup component add rustfmt)")?;
        if !output.status.success() {
            unformatted.push(format!("{path}: rustfmt cannot parse it:\n{}", head(&[], &output.stderr)));
        } else if output.stdout != *text {
            unformatted.push(path.clone());
        }
    }
    if !unformatted.is_empty() {
        bail!(
            "staged Rust code is not formatted; run `cargo fmt` and stage again:\n{}",
            unformatted.join("\n")
        );
    }
    Ok(format!("{} staged Rust file(s) formatted", files.len()))
}

/// The first lines of a tool's output, for a report.
fn head(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(stdout), String::from_utf8_lossy(stderr));
    let lines: Vec<&str> = text.lines().collect();
    let mut shown = lines[..lines.len().min(40)].join("\n");
    if lines.len() > 40 {
        shown.push_str(&format!("\n... ({} more lines)", lines.len() - 40));
    }
    shown
}

/// The edition of the package holding `path`, as cargo fmt would pass it to rustfmt.
fn edition_of(root: &Path, path: &Path) -> String {
    let workspace_edition = || {
        manifest(&root.join("Cargo.toml"))
            .and_then(|m| m.get("workspace")?.get("package")?.get("edition")?.as_str().map(str::to_owned))
    };
    for dir in path.ancestors().skip(1) {
        let Some(manifest) = manifest(&root.join(dir).join("Cargo.toml")) else { continue };
        let Some(package) = manifest.get("package") else { continue };
        return match package.get("edition") {
            Some(toml::Value::String(edition)) => edition.clone(),
            Some(_) => workspace_edition().unwrap_or_else(|| "2015".into()),
            None => "2015".into(),
        };
    }
    workspace_edition().unwrap_or_else(|| "2021".into())
}

fn manifest(path: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(path).ok()?.parse().ok()
}
