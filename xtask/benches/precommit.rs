//! Benchmark of `xtask pre-commit` (issue 6: under 2 s on the example workspace, xtask built, server
//! up): whole-process wall time, median of several runs, the cases interleaved in one run.
//!
//! Two clones of this repository (the same project, so the same server) are made in a temporary
//! directory:
//! - "code": one service's lib.rs edited and staged; nothing under migrations/;
//! - "migration": a new migration pair for `accounts` (a column and an index, and their down),
//!   schema.sql rewritten by `xtask schema --write`, all staged.
//!
//! Cases:
//! - a. `xtask pre-commit --staged` in "code" (rustfmt on the staged file; no database check needed);
//! - b. `xtask pre-commit --staged` in "migration" (names, history, applied, the new migration's
//!   round trip, the schema check of both databases, rustfmt): what the hook runs;
//! - c. `xtask pre-commit` in "migration" (the working tree: `cargo fmt --check` of the workspace);
//! - d. b through `cargo run` of the already built xtask, which is what `cargo xtask` costs.
//!
//! Run it with `cargo bench -p xtask --bench precommit` (BENCH_RUNS, default 7). It starts the
//! project's server with `xtask db-up` when it is down and leaves it running; the clones are removed.
//! Each case must exit 0; a slower median than 2 s is reported as MISSED.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

const TARGET: Duration = Duration::from_secs(2);
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn main() -> Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let root = Path::new(ROOT).canonicalize()?;
    run(Command::new("cargo").args(["build", "-q", "-p", "xtask"]).current_dir(&root))?;
    let xtask = root.join("target/debug/xtask");
    let temp = tempfile::tempdir()?;
    let code = clone(&root, &temp.path().join("code"))?;
    let migration = clone(&root, &temp.path().join("migration"))?;
    stage_code_change(&code)?;
    stage_code_change(&migration)?;
    stage_migration(&xtask, &migration)?;
    run(Command::new(&xtask).arg("db-up").current_dir(&code))?;

    let manifest = root.join("xtask/Cargo.toml");
    let manifest = manifest.to_str().context("path")?;
    let cases: Vec<(&str, &Path, Vec<&str>, bool)> = vec![
        ("a. pre-commit --staged, a Rust file staged", &code, vec!["pre-commit", "--staged"], false),
        ("b. pre-commit --staged, a migration staged", &migration, vec!["pre-commit", "--staged"], false),
        ("c. pre-commit, working tree (cargo fmt --check)", &migration, vec!["pre-commit"], false),
        ("d. b through `cargo run` (= `cargo xtask`)", &migration, vec!["pre-commit", "--staged"], true),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..=runs {
        for (index, (name, dir, args, through_cargo)) in cases.iter().enumerate() {
            let mut command = if *through_cargo {
                let mut c = Command::new("cargo");
                c.args(["run", "-q", "--manifest-path", manifest, "--"]);
                c
            } else {
                Command::new(&xtask)
            };
            command.args(args).current_dir(dir);
            let took = run(&mut command).with_context(|| name.to_string())?;
            // Round 0 warms the caches (and checks every case passes).
            if round > 0 {
                times[index].push(took);
            }
        }
    }
    println!("| case | median | min | max | target |\n|---|---:|---:|---:|---|");
    for ((name, ..), mut samples) in cases.iter().zip(times) {
        samples.sort();
        let median = samples[samples.len() / 2];
        let verdict = if median <= TARGET { "met" } else { "MISSED" };
        println!(
            "| {name} | {} | {} | {} | < 2 s: {verdict} |",
            ms(median),
            ms(samples[0]),
            ms(*samples.last().expect("runs > 0"))
        );
    }
    println!("\n{runs} runs each, interleaved; whole-process wall time.");
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Runs a command to success; its wall time.
fn run(command: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let output = command.output().with_context(|| format!("start {command:?}"))?;
    let took = start.elapsed();
    if !output.status.success() {
        bail!("{command:?} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(took)
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    run(Command::new("git").args(args).current_dir(dir)).map(|_| ())
}

fn clone(root: &Path, into: &Path) -> Result<PathBuf> {
    git(root, &["clone", "--quiet", root.to_str().context("path")?, into.to_str().context("path")?])?;
    git(into, &["config", "user.email", "bench@example.com"])?;
    git(into, &["config", "user.name", "bench"])?;
    Ok(into.to_path_buf())
}

fn stage_code_change(dir: &Path) -> Result<()> {
    let lib = dir.join("services/accounts/src/lib.rs");
    let text = std::fs::read_to_string(&lib)?;
    std::fs::write(
        &lib,
        format!("{text}\n/// Added by the pre-commit benchmark.\npub const BENCH: u8 = 1;\n"),
    )?;
    git(dir, &["add", "services/accounts/src/lib.rs"])
}

fn stage_migration(xtask: &Path, dir: &Path) -> Result<()> {
    let migrations = dir.join("migrations/accounts");
    let newest = std::fs::read_dir(&migrations)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.split('_').next()?.parse::<i64>().ok())
        .max()
        .unwrap_or(0);
    let version = newest + 1;
    let up = "ALTER TABLE accounts ADD COLUMN nickname text;\nCREATE INDEX accounts_nickname ON accounts (nickname);\n";
    let down = "DROP INDEX accounts_nickname;\nALTER TABLE accounts DROP COLUMN nickname;\n";
    std::fs::write(migrations.join(format!("{version}_nickname.up.sql")), up)?;
    std::fs::write(migrations.join(format!("{version}_nickname.down.sql")), down)?;
    run(Command::new(xtask).args(["schema", "--write", "--db", "accounts"]).current_dir(dir))?;
    let schema = std::fs::read_to_string(migrations.join("schema.sql"))?;
    ensure!(schema.contains("nickname"), "schema --write did not record the new column");
    git(dir, &["add", "-A"])
}
