//! Tasks over migrations and seeds: migrate, rollback, migrations (status), seed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::Client;
use serde::Serialize;

use crate::conn::{Endpoint, PgError};
use crate::engine;
use crate::migrations::{self, Migration, State};
use crate::runner;
use crate::seeds;
use crate::workspace::{Ctx, Database};
use postgres::error::SqlState;

#[derive(Debug, Default, Clone, Copy)]
pub struct MigrateOptions {
    pub check: bool,
    pub dry_run: bool,
    pub allow_out_of_order: bool,
    /// Say nothing when there is nothing to apply (setup's own summary says it).
    pub quiet: bool,
}

/// What `migrate_database` did, with the versions concerned.
#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Migrated {
    /// Nothing was pending (or, with `check`, nothing pending and nothing wrong).
    UpToDate,
    Applied {
        applied: Vec<i64>,
    },
    /// `check` found pending or mismatched migrations and listed them.
    CheckFailed {
        pending: Vec<i64>,
        problems: Vec<String>,
    },
    DryRun {
        pending: Vec<i64>,
    },
}

pub fn migrate(ctx: &Ctx, db: Option<&str>, options: MigrateOptions, json: bool) -> Result<ExitCode> {
    let engine = engine::select(ctx)?;
    super::fail_if_surely_down(engine.as_ref(), "migrate")?;
    let mut clean = true;
    let mut report = serde_json::Map::new();
    for database in ctx.select_databases(db)? {
        let login = super::database_login(ctx, engine.endpoint(), &database)?;
        let outcome = migrate_database(ctx, &login, &database, options, None)
            .map_err(|e| crate::invalid::explain(e, database.name.as_str()))
            .map_err(|e| super::explain_if_not_running(engine.as_ref(), "migrate", e))?;
        clean &= !matches!(outcome, Migrated::CheckFailed { .. });
        report.insert(database.logical.clone(), serde_json::to_value(&outcome)?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Applies what is pending; with `check`, only reports and returns whether all is applied. `known`:
/// the migration files, when the caller has read them already.
pub fn migrate_database(
    ctx: &Ctx,
    endpoint: &Endpoint,
    database: &Database,
    options: MigrateOptions,
    known: Option<Vec<Migration>>,
) -> Result<Migrated> {
    migrate_one(ctx, endpoint, database, options, known).map_err(|error| {
        server_went_away(error, &format!("migrating {}", database.name), "cargo xtask migrate")
    })
}

/// An error that lost its connection midway, told as the server going away with the way back.
fn server_went_away(error: anyhow::Error, doing: &str, again: &str) -> anyhow::Error {
    if !PgError::lost_in(&error) {
        return error;
    }
    error.context(format!(
        "the server went away while {doing} (stopped, crashed or restarted): start it with \
         `cargo xtask db-up`, then run `{again}` again"
    ))
}

fn migrate_one(
    ctx: &Ctx,
    endpoint: &Endpoint,
    database: &Database,
    options: MigrateOptions,
    known: Option<Vec<Migration>>,
) -> Result<Migrated> {
    let dir = database.migrations_dir(ctx);
    let name = database.name.as_str();
    // Reading the files overlaps the login and the query: together they are a no-op run's cost.
    let (files, mut client, applied) = std::thread::scope(|scope| -> Result<_> {
        let reader = known.is_none().then(|| scope.spawn(|| migrations::discover(&ctx.root, &dir)));
        let connected = connect_branch_db(endpoint, name)
            .and_then(|mut client| runner::applied(&mut client).map(|applied| (client, applied)));
        let files = match (known, reader) {
            (Some(files), _) => files,
            (None, Some(reader)) => reader.join().expect("the migration reader panicked")?,
            (None, None) => unreachable!("a reader runs when nothing is known"),
        };
        let (client, applied) = connected?;
        Ok((files, client, applied))
    })?;
    let plan = migrations::plan(&files, &applied, options.allow_out_of_order);
    // Every pending file is checked before the first is applied (and by --check, --dry-run).
    for index in &plan.pending {
        let migration = &files[*index];
        migrations::refuse_unrunnable(&migration.up, &migration.sql, "migration")
            .context("migration refused; nothing of the pending migrations was applied")?;
        runner::warn_of_sqlx_hazard(migration);
    }
    if options.check {
        if plan.pending.is_empty() && plan.problems.is_empty() {
            return Ok(Migrated::UpToDate);
        }
        for index in &plan.pending {
            eprintln!("pending: {}", files[*index].up.display());
        }
        let mut problems = Vec::new();
        if !plan.problems.is_empty() {
            let explained = migrations::explain(
                &plan.problems,
                name,
                Some(&migrations::Checkout { root: &ctx.root, dir: &dir }),
            );
            eprintln!("{explained}");
            problems = explained.lines().skip(1).map(|l| l.trim().to_owned()).collect();
        }
        return Ok(Migrated::CheckFailed { pending: versions(&files, &plan.pending), problems });
    }
    if !plan.problems.is_empty() {
        bail!(migrations::explain(
            &plan.problems,
            name,
            Some(&migrations::Checkout { root: &ctx.root, dir: &dir })
        ));
    }
    if plan.pending.is_empty() {
        if !options.quiet {
            eprintln!("migrate: {name} is up to date ({} applied)", files.len());
        }
        return Ok(Migrated::UpToDate);
    }
    if options.dry_run {
        for index in &plan.pending {
            eprintln!("would apply {}", files[*index].up.display());
        }
        eprintln!("migrate --dry-run: {} pending for {name}; nothing was changed", plan.pending.len());
        return Ok(Migrated::DryRun { pending: versions(&files, &plan.pending) });
    }
    runner::lock(&mut client, name, lock_timeout())?;
    runner::ensure_table(&mut client)?;
    // Another runner may have applied some while we waited for the lock.
    let plan = migrations::plan(&files, &runner::applied(&mut client)?, options.allow_out_of_order);
    if !plan.problems.is_empty() {
        bail!(migrations::explain(
            &plan.problems,
            name,
            Some(&migrations::Checkout { root: &ctx.root, dir: &dir })
        ));
    }
    apply_pending(&mut client, &files, &plan.pending, name)?;
    crate::drift::keep(&mut client);
    Ok(Migrated::Applied { applied: versions(&files, &plan.pending) })
}

fn versions(files: &[Migration], indexes: &[usize]) -> Vec<i64> {
    indexes.iter().map(|index| files[*index].version).collect()
}

fn apply_pending(client: &mut Client, files: &[Migration], pending: &[usize], name: &str) -> Result<()> {
    let start = Instant::now();
    for (n, index) in pending.iter().enumerate() {
        let migration = &files[*index];
        let durable = n + 1 == pending.len();
        let took = runner::apply(client, migration, durable)?;
        eprintln!("applied {} ({})", migration.up.display(), millis(took));
    }
    eprintln!("migrate: applied {} migration(s) to {name} in {}", pending.len(), millis(start.elapsed()));
    Ok(())
}

pub fn rollback(ctx: &Ctx, db: Option<&str>, steps: usize) -> Result<()> {
    let engine = engine::select(ctx)?;
    let database = ctx.database(db)?;
    let name = database.name.as_str();
    let files = migrations::discover(&ctx.root, &database.migrations_dir(ctx))?;
    super::fail_if_surely_down(engine.as_ref(), "rollback")?;
    // Undoing migrations is destructive: the configured port must lead to this engine's server.
    engine.check_port("rollback")?;
    let login = super::database_login(ctx, engine.endpoint(), &database)?;
    let mut client = connect_branch_db(&login, name)
        .map_err(|e| super::explain_if_not_running(engine.as_ref(), "rollback", e))?;
    runner::lock(&mut client, name, lock_timeout())?;
    let mut applied = runner::applied(&mut client)?;
    applied.sort_by_key(|a| std::cmp::Reverse(a.version));
    if applied.is_empty() {
        eprintln!("rollback: nothing is applied to {name}");
        return Ok(());
    }
    let chosen = &applied[..steps.min(applied.len())];
    // Check every step before touching anything.
    let mut downs = Vec::new();
    for row in chosen {
        let Some(file) = files.iter().find(|f| f.version == row.version) else {
            bail!(
                "cannot roll back version {} ({}): no file in this checkout has that version; check out \
                 the branch that added it and roll back there",
                row.version,
                row.description
            );
        };
        if file.checksum != row.checksum {
            bail!(
                "cannot roll back {}: it changed since it was applied, so its down file may not match; \
                 restore it first (git checkout -- {})",
                file.up.display(),
                file.up.display()
            );
        }
        let Some(down) = &file.down else {
            bail!(
                "cannot roll back {}: it has no down file; write one beside it named \
                 <version>_<description>.down.sql",
                file.up.display()
            );
        };
        let sql = std::fs::read_to_string(ctx.root.join(down))
            .with_context(|| format!("read {}", down.display()))?;
        downs.push((down.clone(), sql, row.version));
    }
    for (done, (path, sql, version)) in downs.iter().enumerate() {
        let took = runner::revert(&mut client, path, sql, *version)
            .map_err(|error| error.context(partial_rollback(&downs, done, name)))?;
        eprintln!("rolled back {} ({})", path.display(), millis(took));
    }
    crate::drift::keep(&mut client);
    eprintln!("rollback: {} migration(s) of {name} rolled back", downs.len());
    Ok(())
}

/// What a rollback that failed at step `failed` (counted from 0) left: each step commits on its
/// own, so the earlier ones stay rolled back.
fn partial_rollback(downs: &[(PathBuf, String, i64)], failed: usize, name: &str) -> String {
    let versions = |steps: &[(PathBuf, String, i64)]| {
        steps.iter().map(|(_, _, version)| version.to_string()).collect::<Vec<_>>().join(", ")
    };
    let (_, _, version) = &downs[failed];
    let mut text = format!("rollback of {name} stopped at step {} of {}: ", failed + 1, downs.len());
    if failed == 0 {
        text.push_str("nothing was rolled back");
    } else {
        write!(
            text,
            "{} step(s) before it stay rolled back (version(s) {}: undone, no longer recorded)",
            failed,
            versions(&downs[..failed])
        )
        .unwrap();
    }
    write!(text, "; version {version} and those before it are still applied").unwrap();
    if failed + 1 < downs.len() {
        write!(text, " (not attempted: {})", versions(&downs[failed + 1..])).unwrap();
    }
    text
}

#[derive(Serialize)]
struct StatusLine {
    version: i64,
    description: String,
    state: State,
    file: Option<String>,
    installed_on: Option<String>,
}

pub fn migrations_status(ctx: &Ctx, db: Option<&str>, json: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    super::fail_if_surely_down(engine.as_ref(), "migrations")?;
    let mut report = serde_json::Map::new();
    for database in ctx.select_databases(db)? {
        let files = migrations::discover(&ctx.root, &database.migrations_dir(ctx))?;
        // The record table is the role's: read as the role (see `database_login`).
        let login = super::database_login(ctx, engine.endpoint(), &database)?;
        let mut client = connect_branch_db(&login, database.name.as_str())
            .map_err(|e| super::explain_if_not_running(engine.as_ref(), "migrations", e))?;
        let plan = migrations::plan(&files, &runner::applied(&mut client)?, false);
        let lines: Vec<StatusLine> = plan
            .entries
            .into_iter()
            .map(|e| StatusLine {
                version: e.version,
                description: e.description,
                state: e.state,
                file: e.file.map(|f| f.display().to_string()),
                installed_on: e.installed_on,
            })
            .collect();
        if !json {
            println!("{} ({})", database.logical, database.name);
            for line in &lines {
                let state = serde_json::to_value(line.state)?;
                println!(
                    "  {:<16} {:<12} {:<40} {}",
                    line.version,
                    state.as_str().unwrap_or_default(),
                    line.description,
                    line.installed_on.as_deref().unwrap_or("")
                );
            }
            if lines.is_empty() {
                println!("  no migrations");
            }
        }
        report.insert(database.logical.clone(), serde_json::to_value(&lines)?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

pub fn seed(ctx: &Ctx, db: Option<&str>) -> Result<()> {
    let engine = engine::select(ctx)?;
    super::fail_if_surely_down(engine.as_ref(), "seed")?;
    for database in ctx.select_databases(db)? {
        let login = super::database_login(ctx, engine.endpoint(), &database)?;
        seed_database(ctx, &login, &database)
            .map_err(|e| super::explain_if_not_running(engine.as_ref(), "seed", e))?;
    }
    Ok(())
}

pub fn seed_database(ctx: &Ctx, endpoint: &Endpoint, database: &Database) -> Result<()> {
    let seeds = seeds::discover(&ctx.root, &database.seeds_dir(ctx))?;
    if seeds.is_empty() {
        return Ok(());
    }
    let mut client = connect_branch_db(endpoint, database.name.as_str())?;
    seeds::run(&mut client, &seeds).map_err(|error| {
        server_went_away(error, &format!("loading the seeds of {}", database.name), "cargo xtask seed")
    })?;
    eprintln!("seed: loaded {} seed file(s) into {}", seeds.len(), database.name);
    Ok(())
}

/// Seeds a database that has no record of seeds yet; whether it did.
pub fn seed_if_never_seeded(ctx: &Ctx, endpoint: &Endpoint, database: &Database) -> Result<bool> {
    let files = seeds::discover(&ctx.root, &database.seeds_dir(ctx))?;
    if files.is_empty() {
        return Ok(false);
    }
    let mut client = connect_branch_db(endpoint, database.name.as_str())?;
    if seeds::changed_since_seeded(&mut client, &files)?.is_some() {
        return Ok(false);
    }
    seeds::run(&mut client, &files)?;
    Ok(true)
}

fn connect_branch_db(endpoint: &Endpoint, name: &str) -> Result<Client> {
    runner::connect(endpoint, name).map_err(|error| {
        if PgError::code_in(&error) == Some(&SqlState::INVALID_CATALOG_NAME) {
            error.context(format!("database {name} does not exist: run `cargo xtask setup`"))
        } else if PgError::code_in(&error) == Some(&SqlState::INVALID_PASSWORD) {
            error.context(format!(
                "the server refused {}'s password: run `cargo xtask setup`, which gives the role a new one",
                endpoint.user
            ))
        } else if PgError::code_in(&error).is_some() {
            error
        } else {
            error.context("is the server running? start it with `cargo xtask db-up`")
        }
    })
}

fn lock_timeout() -> Duration {
    crate::locks::timeout()
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}
