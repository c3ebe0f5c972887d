//! `pre-commit`: the checks worth running on every commit. From the git hook (`--staged`) they read
//! what is staged, not the working tree, and the database checks run only when the commit touches
//! `migrations/`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use super::checks::{self, MigrationSet};
use super::roundtrip;
use crate::conn::Endpoint;
use crate::engine;
use crate::git;
use crate::os::TempDir;
use crate::workspace::Ctx;

const MIGRATIONS_DIR: &str = "migrations";

/// The outcome of one check, as printed.
struct Line {
    check: String,
    outcome: Result<String>,
}

pub fn pre_commit(ctx: &Ctx, staged: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let staged_copy = if staged { Some(staged_files(ctx)?) } else { None };
    let view = match &staged_copy {
        Some(copy) => ctx.with_root(copy.path().join(git::prefix(&ctx.root)?)),
        None => ctx.with_root(ctx.root.clone()),
    };
    let touched = !staged || !git::staged_changes(&ctx.root, MIGRATIONS_DIR)?.is_empty();
    let lines = std::thread::scope(|scope| {
        let formatting = scope.spawn(|| checks::formatting(&ctx.root, staged));
        let mut lines = migration_checks(ctx, &view, touched);
        let formatting = formatting.join().expect("the formatting check panicked");
        lines.push(Line { check: "fmt".into(), outcome: formatting });
        lines
    });
    let failed = print(&lines);
    let seconds = start.elapsed().as_secs_f64();
    if failed == 0 {
        eprintln!("pre-commit: all checks passed ({seconds:.2} s)");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "pre-commit: {failed} check(s) failed ({seconds:.2} s); fix them and commit again \
         (`git commit --no-verify` skips this hook, and CI runs the same checks)"
    );
    Ok(ExitCode::FAILURE)
}

/// The staged `migrations/` tree, copied out of the index.
fn staged_files(ctx: &Ctx) -> Result<TempDir> {
    let copy = TempDir::new("staged")?;
    git::checkout_staged(&ctx.root, &[MIGRATIONS_DIR], copy.path()).context("copy the staged migrations")?;
    Ok(copy)
}

fn migration_checks(ctx: &Ctx, view: &Ctx, touched: bool) -> Vec<Line> {
    let sets = checks::read_sets(view);
    let mut lines = Vec::new();
    let mut new_migrations = Vec::new();
    for set in &sets {
        let logical = &set.database.logical;
        lines.push(Line { check: format!("{logical}: names"), outcome: checks::names(set) });
        let Ok(files) = &set.files else { continue };
        let dir = set.database.migrations_dir(view);
        let history = checks::history(&ctx.root, &ctx.config.default_branches, &dir, files);
        // Without a history, which migrations are new is unknown: their downs are not checked.
        let first_new = history.as_ref().ok().map(|h| h.first_new);
        lines.push(Line { check: format!("{logical}: history"), outcome: history.map(|h| h.account) });
        new_migrations.push((set, first_new));
    }
    if !touched {
        lines.push(Line {
            check: "database".into(),
            outcome: Ok("no staged change under migrations/: database checks not needed".into()),
        });
        return lines;
    }
    let endpoint = match server(ctx) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            lines.push(Line { check: "server".into(), outcome: Err(error) });
            return lines;
        }
    };
    for (set, first_new) in new_migrations {
        // Applied from the working tree but not staged yet (committing one at a time) is not missing.
        let elsewhere = working_tree_versions(ctx, &set.database);
        lines.extend(database_checks(view, &endpoint, set, first_new, &elsewhere));
    }
    lines.push(Line { check: "schema".into(), outcome: checks::declared_schemas(view, &endpoint) });
    lines
}

/// Against this branch's database, then the round trip of the migrations this branch adds.
fn database_checks(
    view: &Ctx,
    endpoint: &Endpoint,
    set: &MigrationSet,
    first_new: Option<usize>,
    elsewhere: &[i64],
) -> Vec<Line> {
    let logical = &set.database.logical;
    let Ok(files) = &set.files else { return Vec::new() };
    let applied = format!("{logical}: applied");
    // As the database's own login: its record table is the service's role's to shape.
    let mut lines = match super::database_login(view, endpoint, &set.database) {
        Ok(login) => vec![
            Line { check: applied, outcome: checks::applied(&login, &set.database, files, elsewhere) },
            Line { check: format!("{logical}: drift"), outcome: checks::drift(&login, &set.database) },
        ],
        Err(error) => vec![Line { check: applied, outcome: Err(error) }],
    };
    let Some(first_new) = first_new else { return lines };
    let downs = if first_new == files.len() {
        Ok("no new migration".into())
    } else {
        roundtrip::round_trip(view, endpoint, &set.database, files, first_new)
            .map(|checked| format!("{} new migration(s): {}", files.len() - first_new, checked.describe()))
    };
    lines.push(Line { check: format!("{logical}: downs"), outcome: downs });
    lines
}

fn working_tree_versions(ctx: &Ctx, database: &crate::workspace::Database) -> Vec<i64> {
    let dir = ctx.root.join(database.migrations_dir(ctx));
    let names = std::fs::read_dir(dir).into_iter().flatten().flatten();
    names.filter_map(|entry| crate::migrations::up_version(entry.file_name().to_str()?)).collect()
}

/// The project's server, started when it is not running (the checks need it).
fn server(ctx: &Ctx) -> Result<Endpoint> {
    let mut engine = engine::select(ctx)?;
    engine.up().context("start the PostgreSQL server for the migration checks (`cargo xtask db-up`)")?;
    Ok(engine.endpoint().clone())
}

/// Prints one line per check, the failures with their reasons; returns how many failed.
fn print(lines: &[Line]) -> usize {
    let mut failed = 0;
    for line in lines {
        match &line.outcome {
            Ok(account) => eprintln!("  ok    {:<20} {account}", line.check),
            Err(error) => {
                failed += 1;
                eprintln!("  FAIL  {:<20} {}", line.check, indent(&format!("{error:#}")));
            }
        }
    }
    failed
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n        ")
}
