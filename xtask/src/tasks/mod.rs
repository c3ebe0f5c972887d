//! The tasks: thin orchestration of engine, admin and .env work, one function per command.

pub mod migrate;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::admin::{Admin, Created};
use crate::engine::{self, Engine, PsqlLauncher, ServerState};
use crate::workspace::{Ctx, Database};
use crate::{config::EngineKind, dotenv};

pub fn db_up(ctx: &Ctx) -> Result<()> {
    let engine = engine::select(ctx)?;
    let outcome = engine.up().context("start the PostgreSQL server")?;
    eprintln!(
        "PostgreSQL ({}) {} at {}",
        engine.kind().name(),
        outcome.describe(),
        engine.endpoint().redacted_url(&engine.endpoint().admin_db)
    );
    Ok(())
}

pub fn db_down(ctx: &Ctx) -> Result<()> {
    let engine = engine::select(ctx)?;
    engine.down().context("stop the PostgreSQL server")?;
    if engine.kind() != EngineKind::External {
        eprintln!("PostgreSQL ({}) stopped; its data is kept", engine.kind().name());
    }
    Ok(())
}

pub fn db_endpoint(ctx: &Ctx, db: Option<&str>) -> Result<()> {
    let engine = engine::select(ctx)?;
    let database = ctx.database(db)?;
    println!("{}", engine.endpoint().url(database.name.as_str()));
    Ok(())
}

pub fn setup(ctx: &Ctx) -> Result<()> {
    let engine = engine::select(ctx)?;
    let outcome = engine.up().context("start the PostgreSQL server")?;
    let mut changes = Vec::new();
    if outcome != engine::UpOutcome::AlreadyRunning {
        changes.push(format!("server {}", outcome.describe()));
    }
    let mut admin = Admin::connect(engine.endpoint())?;
    let databases = ctx.databases();
    for db in &databases {
        let created = admin.create(&db.name, &ctx.config.project, &db.logical, &ctx.branch.name)?;
        let quiet = migrate::MigrateOptions { quiet: true, ..Default::default() };
        let migrated = migrate::migrate_database(ctx, engine.endpoint(), db, quiet)?;
        if let migrate::Migrated::Applied(n) = migrated {
            changes.push(format!("applied {n} migration(s) to {}", db.name));
        }
        if let Created::New = created {
            changes.push(format!("created database {}", db.name));
            migrate::seed_database(ctx, engine.endpoint(), db)?;
        }
    }
    let env_path = ctx.root.join(".env");
    let url = engine.endpoint().url(databases[0].name.as_str());
    if dotenv::update(&env_path, &[("DATABASE_URL", url)])? {
        changes.push("wrote DATABASE_URL to .env".into());
    }
    let names: Vec<String> = databases.iter().map(|d| d.name.to_string()).collect();
    if changes.is_empty() {
        eprintln!(
            "setup: nothing to do; branch `{}` has {} and .env is up to date",
            ctx.branch.name,
            names.join(", ")
        );
    } else {
        for change in &changes {
            eprintln!("setup: {change}");
        }
        eprintln!("setup: branch `{}` is ready: {}", ctx.branch.name, names.join(", "));
    }
    Ok(())
}

pub fn wipe(ctx: &Ctx, db: Option<&str>, force: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    refuse_remote_without_force(engine.as_ref(), force, "wipe")?;
    let mut admin = connect_running(engine.as_ref(), "wipe")?;
    for database in ctx.select_databases(db)? {
        if admin.drop_labelled(database.name.as_str(), &ctx.config.project)? {
            eprintln!("wipe: dropped database {}", database.name);
        } else {
            eprintln!("wipe: database {} does not exist", database.name);
        }
    }
    Ok(())
}

pub fn teardown(ctx: &Ctx, force: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    if engine.kind() != EngineKind::External {
        engine.destroy().context("remove the server")?;
        eprintln!(
            "teardown: removed the {} server of project `{}` and all its databases",
            engine.kind().name(),
            ctx.config.project
        );
        return Ok(());
    }
    refuse_remote_without_force(engine.as_ref(), force, "teardown")?;
    let mut admin = connect_running(engine.as_ref(), "teardown")?;
    let ours: Vec<String> = admin
        .databases(&[])?
        .into_iter()
        .filter(|d| d.belongs_to(&ctx.config.project))
        .map(|d| d.name)
        .collect();
    for name in &ours {
        admin.drop_labelled(name, &ctx.config.project)?;
        eprintln!("teardown: dropped database {name}");
    }
    eprintln!("teardown: {} database(s) of project `{}` dropped", ours.len(), ctx.config.project);
    Ok(())
}

pub fn connect(ctx: &Ctx, db: Option<&str>, psql_args: &[std::ffi::OsString]) -> Result<ExitCode> {
    let engine = engine::select(ctx)?;
    let database = ctx.database(db)?;
    let name = database.name.as_str();
    connect_running(engine.as_ref(), "connect")?;
    let endpoint = engine.endpoint();
    let status = match engine.psql()? {
        PsqlLauncher::Host(psql) => std::process::Command::new(&psql)
            .args(psql_args)
            .envs(endpoint.libpq_env(name))
            .status()
            .with_context(|| format!("run {}", psql.display()))?,
        PsqlLauncher::DockerExec { container } => {
            let tty = if std::io::stdin().is_terminal() { "-it" } else { "-i" };
            std::process::Command::new("docker")
                .args(["exec", tty, &container, "psql", "--username", &endpoint.user, "--dbname", name])
                .args(psql_args)
                .status()
                .context("run docker exec psql")?
        }
    };
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

#[derive(Serialize)]
struct StatusReport {
    project: String,
    engine: &'static str,
    server: ServerReport,
    branch: BranchReport,
    databases: Vec<DatabaseReport>,
}

#[derive(Serialize)]
struct ServerReport {
    state: ServerState,
    detail: String,
    endpoint: String,
}

#[derive(Serialize)]
struct BranchReport {
    name: String,
    default: bool,
    source: &'static str,
}

#[derive(Serialize)]
struct DatabaseReport {
    database: String,
    name: String,
    /// `None` when the server cannot be asked.
    exists: Option<bool>,
    size_bytes: Option<i64>,
    url: String,
    /// Migrations not yet applied; `None` when the database cannot be asked.
    pending_migrations: Option<usize>,
    /// `current`, `changed` (the seed files changed since they were loaded) or `never`.
    seeds: Option<&'static str>,
}

pub fn db_status(ctx: &Ctx, json: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    let status = engine.status()?;
    let endpoint = engine.endpoint();
    let branch_databases = ctx.databases();
    let ours: Vec<&str> = branch_databases.iter().map(|d| d.name.as_str()).collect();
    let mut status = status;
    // A server that runs but refuses us is reported, not fatal: status must always tell the truth.
    let on_server = match status.state {
        ServerState::Running => match Admin::connect(endpoint).and_then(|mut admin| admin.databases(&ours)) {
            Ok(databases) => Some(databases),
            Err(error) => {
                status.detail = format!("{}; but: {error:#}", status.detail);
                None
            }
        },
        _ => None,
    };
    let report = StatusReport {
        project: ctx.config.project.clone(),
        engine: engine.kind().name(),
        server: ServerReport {
            state: status.state,
            detail: status.detail,
            endpoint: endpoint.redacted_url(&endpoint.admin_db),
        },
        branch: BranchReport {
            name: ctx.branch.name.clone(),
            default: ctx.branch.is_default,
            source: ctx.branch.source,
        },
        databases: branch_databases
            .iter()
            .map(|db| database_report(ctx, db, on_server.as_deref(), endpoint))
            .collect::<Result<_>>()?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report);
    }
    Ok(())
}

fn database_report(
    ctx: &Ctx,
    db: &Database,
    on_server: Option<&[crate::admin::ServerDatabase]>,
    endpoint: &crate::conn::Endpoint,
) -> Result<DatabaseReport> {
    let found = on_server.and_then(|all| all.iter().find(|d| d.name == db.name.as_str()));
    let (pending_migrations, seeds) = match found {
        Some(_) => {
            let mut client = endpoint.connect(db.name.as_str())?;
            let files = crate::migrations::discover(&ctx.root, &db.migrations_dir(ctx))?;
            let applied = crate::runner::applied(&mut client)?;
            let pending = crate::migrations::plan(&files, &applied, true).pending.len();
            let seed_files = crate::seeds::discover(&ctx.root, &db.seeds_dir(ctx))?;
            let seeds = match crate::seeds::changed_since_seeded(&mut client, &seed_files)? {
                None => "never",
                Some(true) => "changed",
                Some(false) => "current",
            };
            (Some(pending), Some(seeds))
        }
        None => (None, None),
    };
    Ok(DatabaseReport {
        database: db.logical.clone(),
        name: db.name.to_string(),
        exists: on_server.map(|_| found.is_some()),
        size_bytes: found.and_then(|d| d.size_bytes),
        url: endpoint.redacted_url(db.name.as_str()),
        pending_migrations,
        seeds,
    })
}

fn print_status(report: &StatusReport) {
    println!("project    {}", report.project);
    println!("engine     {}", report.engine);
    println!("server     {} ({})", state_name(report.server.state), report.server.detail);
    println!("endpoint   {}", report.server.endpoint);
    let default = if report.branch.default { ", default branch" } else { "" };
    println!("branch     {} (from {}{default})", report.branch.name, report.branch.source);
    println!("databases");
    for db in &report.databases {
        let mut state = match (db.exists, db.size_bytes) {
            (Some(true), Some(size)) => format!("exists, {}", human_size(size)),
            (Some(true), None) => "exists".into(),
            (Some(false), _) => "missing (run `cargo xtask setup`)".into(),
            (None, _) => "unknown (server not running)".into(),
        };
        if let Some(pending) = db.pending_migrations.filter(|n| *n > 0) {
            state.push_str(&format!(", {pending} migration(s) pending (run `cargo xtask migrate`)"));
        }
        if db.seeds == Some("changed") {
            state.push_str(", seeds changed since loaded (run `cargo xtask seed`)");
        }
        println!("  {:<12} {:<40} {state}", db.database, db.name);
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Absent => "absent",
        ServerState::Stopped => "stopped",
        ServerState::Running => "running",
        ServerState::Unreachable => "unreachable",
    }
}

fn human_size(bytes: i64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb >= 1.0 { format!("{mb:.1} MiB") } else { format!("{:.0} KiB", bytes as f64 / 1024.0) }
}

fn refuse_remote_without_force(engine: &dyn Engine, force: bool, task: &str) -> Result<()> {
    let endpoint = engine.endpoint();
    if engine.kind() == EngineKind::External && !endpoint.is_loopback() && !force {
        bail!(
            "refusing to {task} on {}: the host is not this machine, so databases there may be shared; \
             run again with --force if you mean it",
            endpoint.redacted_url(&endpoint.admin_db)
        );
    }
    Ok(())
}

fn connect_running(engine: &dyn Engine, task: &str) -> Result<Admin> {
    let status = engine.status()?;
    if status.state != ServerState::Running {
        let advice = match engine.kind() {
            EngineKind::External => "check that it runs and that XTASK_DATABASE_URL is right",
            _ => "start it with `cargo xtask db-up`",
        };
        bail!("{task} needs the server, which is {} ({}): {advice}", state_name(status.state), status.detail);
    }
    Admin::connect(engine.endpoint())
}
