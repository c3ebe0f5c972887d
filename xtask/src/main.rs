//! `cargo xtask`: the local database life cycle of this workspace. Parses flags, dispatches; no logic.

mod admin;
mod binaries;
mod config;
mod conn;
mod credentials;
mod developer;
mod dotenv;
mod drift;
mod engine;
mod features;
mod flags;
mod fsafe;
mod git;
mod invalid;
mod locks;
mod maintenance;
mod migrations;
mod naming;
mod os;
mod packages;
mod procs;
mod provision;
mod redis;
mod runner;
mod schema;
mod scratch;
mod seeds;
mod services;
mod signals;
mod swap;
mod tasks;
mod tls;
mod workspace;

use std::process::ExitCode;

use flags::Command;
use workspace::Ctx;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            // A signal is being handled: its thread reports and exits.
            signals::park_if_interrupted();
            let mut chain = error.chain();
            eprintln!("error: {}", chain.next().expect("an error has a message"));
            for cause in chain {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The commands that act on this branch's databases beside a `.env` that services read: a `.env`
/// left from another branch is worth a note there (`setup` rewrites it, `db-status` reports it).
fn works_on_this_branch(command: &Command) -> bool {
    matches!(
        command,
        Command::DbEndpoint { .. }
            | Command::Connect { .. }
            | Command::Migrate { .. }
            | Command::Rollback { .. }
            | Command::Migrations { .. }
            | Command::Prepare { .. }
            | Command::Schema { .. }
            | Command::Seed { .. }
            | Command::PreCommit { .. }
    )
}

fn run() -> anyhow::Result<ExitCode> {
    // Run as `cargo-xtask` (cargo's external subcommand), the first argument is `xtask` itself.
    let args = std::env::args_os().skip(1).skip_while(|arg| arg == "xtask");
    let args = match flags::parse(args) {
        Ok(args) => args,
        Err(error) => {
            // One hint: the error's own when it has one.
            let text = error.to_string();
            let hint = if text.contains("cargo xtask") || text.contains("did you mean") {
                ""
            } else {
                "\nrun `cargo xtask help` for usage"
            };
            eprintln!("error: {error}{hint}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Command::Help { topic } = &args.command {
        return Ok(match flags::help_text(topic.as_deref()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        });
    }
    let ctx = Ctx::new(args.branch, args.provision)?;
    if works_on_this_branch(&args.command)
        && let Some(stale) = tasks::stale_env_file(&ctx)
    {
        eprintln!("note: {stale}");
    }
    match args.command {
        Command::Help { .. } => unreachable!("handled above"),
        Command::DbUp => tasks::db_up(&ctx)?,
        Command::DbDown => tasks::db_down(&ctx)?,
        Command::DbStatus { json } => tasks::db_status(&ctx, json)?,
        Command::DbEndpoint { db } => tasks::db_endpoint(&ctx, db.as_deref())?,
        Command::Setup { from } => {
            tasks::setup(&ctx, from.as_deref())?;
        }
        Command::Wipe { db, force, backup } => tasks::wipe(&ctx, db.as_deref(), force, backup)?,
        Command::Teardown { force, all_developers } => tasks::teardown(&ctx, force, all_developers)?,
        Command::Backup { db } => tasks::backup::backup(&ctx, db.as_deref())?,
        Command::Restore { file, db, force } => tasks::backup::restore(&ctx, &file, db.as_deref(), force)?,
        Command::Connect { db, psql_args } => {
            return tasks::connect(&ctx, db.as_deref(), &psql_args);
        }
        Command::Migrate { db, options, json } => {
            return tasks::migrate::migrate(&ctx, db.as_deref(), options, json);
        }
        Command::Rollback { db, steps } => tasks::migrate::rollback(&ctx, db.as_deref(), steps)?,
        Command::Migrations { db, json } => tasks::migrate::migrations_status(&ctx, db.as_deref(), json)?,
        Command::Prepare { db, message, manual } => {
            tasks::schema::prepare(&ctx, &message, db.as_deref(), manual)?
        }
        Command::Schema { db, write: false, live: false } => {
            return tasks::schema::check(&ctx, db.as_deref());
        }
        Command::Schema { db, write: false, live: true } => {
            return tasks::schema::check_live(&ctx, db.as_deref());
        }
        Command::Schema { db, write: true, .. } => tasks::schema::write(&ctx, db.as_deref())?,
        Command::Seed { db } => tasks::migrate::seed(&ctx, db.as_deref())?,
        Command::PreCommit { staged } => return tasks::precommit::pre_commit(&ctx, staged),
        Command::Hooks { install: true } => tasks::hooks::install(&ctx)?,
        Command::Hooks { install: false } => tasks::hooks::uninstall(&ctx)?,
        Command::Ci { json, long } => return tasks::ci::ci(&ctx, json, long),
        Command::Branches { json, all_developers } => tasks::branches::branches(&ctx, json, all_developers)?,
        Command::Prune { dry_run, force, all_developers } => {
            tasks::branches::prune(&ctx, dry_run, force, all_developers)?
        }
        Command::Binaries { major } => tasks::binaries::binaries(&ctx, major)?,
    }
    Ok(ExitCode::SUCCESS)
}
