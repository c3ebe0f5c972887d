//! Benchmark of a new branch's `setup` (issue 7, "Instant branch databases"): whole-process wall
//! time, median of several runs, interleaved in one run against one throwaway PostgreSQL cluster.
//!
//! - a. the clone primitive: `psql -X -c 'CREATE DATABASE ... TEMPLATE <template>'` of the N-migration
//!   schema (the template xtask built, so the same schema and data);
//! - b. `xtask setup` of a new branch (the dev binary run directly; its template exists): target at
//!   most 1.3 x a;
//! - c. `xtask setup` of a new branch with templates off (XTASK_TEMPLATES=0): the same schema migrated
//!   from empty; target: b at least 4 x faster;
//! - d. `xtask setup` again on b's branch (nothing to do), for reference.
//!
//! Run it with
//!
//! ```text
//! cargo bench -p xtask --bench branch            # BENCH_N=1000 BENCH_RUNS=7 by default
//! ```
//!
//! Settings as for the migrate bench (BENCH_N, BENCH_RUNS, BENCH_PG_BINDIR, BENCH_KEEP, BENCH_AUTH).
//! xtask runs from a generated workspace (one logical database, not a git repository, so the template
//! holds every migration) with the external engine pointed at the bench cluster. Every run creates new
//! databases and nothing is dropped in the timed part (see the migrate bench on why). Afterwards the
//! databases of b and c are compared: same schema and rows, same migration record.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

mod common;
use common::*;

const CLONE_TARGET_RATIO: f64 = 1.3;
const MIGRATE_TARGET_SPEEDUP: f64 = 4.0;

#[derive(Clone, Copy)]
enum Case {
    Clone,
    Setup,
    SetupNoTemplates,
    SetupNoop,
}

const CASES: [Case; 4] = [Case::Clone, Case::Setup, Case::SetupNoTemplates, Case::SetupNoop];

impl Case {
    fn label(self, n: usize) -> String {
        match self {
            Case::Clone => format!("a. psql CREATE DATABASE ... TEMPLATE, {n}-migration schema"),
            Case::Setup => "b. xtask setup, new branch (copied from the template)".into(),
            Case::SetupNoTemplates => format!("c. xtask setup, new branch, templates off ({n} migrations)"),
            Case::SetupNoop => "d. xtask setup again on b's branch (nothing to do)".into(),
        }
    }
}

struct Bench<'a> {
    server: &'a Server,
    workspace: &'a Workspace,
    xtask: PathBuf,
    psql: PathBuf,
}

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let xtask = build_xtask()?;
    let workspace = Workspace::generate(settings.n, settings.keep)?;
    let server = Server::start(&settings)?;
    let bench = Bench { server: &server, workspace: &workspace, xtask, psql: settings.bindir.join("psql") };
    print_machine(&server)?;
    println!("{} migrations in {}", settings.n, workspace.path().display());
    let template = bench.build_template()?;
    println!("template: {template}");
    let started = Instant::now();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CASES.len()];
    for round in 0..settings.runs {
        let mut order = CASES;
        order.rotate_left(round % 3);
        for case in order {
            if matches!(case, Case::SetupNoop) {
                continue;
            }
            server.checkpoint()?;
            samples[case as usize].push(bench.time(case, round, &template)?);
        }
        server.checkpoint()?;
        samples[Case::SetupNoop as usize].push(bench.time(Case::SetupNoop, round, &template)?);
        eprintln!("run {}/{} done", round + 1, settings.runs);
    }
    println!("timed part: {:.1} s\n", started.elapsed().as_secs_f64());
    bench.print_table(&samples, settings.n);
    bench.check_copies_equal_migrated(settings.runs)?;
    println!("load average at the end: {}", load_average());
    Ok(())
}

impl Bench<'_> {
    /// Untimed: the first setup builds the template; returns its name (from the .env it writes).
    fn build_template(&self) -> Result<String> {
        let started = Instant::now();
        run(&mut self.xtask("warm_up", true), "xtask setup (builds the template)")?;
        println!("first setup, building the template: {:.2} s", started.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(self.workspace.path().join(".env")).context("read .env")?;
        let template = env.lines().find_map(|line| line.split_once("_TEMPLATE_DATABASE=").map(|(_, v)| v));
        Ok(template.context("setup wrote no template into .env")?.to_owned())
    }

    fn time(&self, case: Case, round: usize, template: &str) -> Result<Duration> {
        let mut command = match case {
            Case::Clone => {
                let sql = format!("CREATE DATABASE \"clone_{round}\" TEMPLATE \"{template}\"");
                let mut command = self.psql("postgres");
                command.args(["-q", "-c", &sql]);
                command
            }
            Case::Setup | Case::SetupNoop => self.xtask(&format!("copy_{round}"), true),
            Case::SetupNoTemplates => self.xtask(&format!("migrated_{round}"), false),
        };
        timed(&mut command, &case.label(self.workspace.migrations.len()))
    }

    fn psql(&self, database: &str) -> Command {
        let mut command = Command::new(&self.psql);
        user_env(&mut command)
            .env("PGPASSWORD", PASSWORD)
            .args(["-X", "-h", "127.0.0.1", "-p"])
            .arg(self.server.port.to_string())
            .args(["-U", "postgres", "-d", database]);
        command
    }

    fn xtask(&self, branch: &str, templates: bool) -> Command {
        let mut command = Command::new(&self.xtask);
        user_env(&mut command)
            .arg("setup")
            .current_dir(self.workspace.path())
            .env("XTASK_PROJECT", PROJECT)
            .env("XTASK_ENGINE", "external")
            .env("XTASK_DATABASE_URL", self.server.admin_url())
            .env("XTASK_BRANCH", branch)
            .env("XTASK_TEMPLATES", if templates { "1" } else { "0" });
        command
    }

    fn print_table(&self, samples: &[Vec<Duration>], n: usize) {
        let clone = median(&samples[Case::Clone as usize]);
        let migrated = median(&samples[Case::SetupNoTemplates as usize]);
        println!("| case | median | min | max | ratio | target |\n|---|---:|---:|---:|---:|---|");
        for case in CASES {
            let times = &samples[case as usize];
            let m = median(times);
            let (ratio, target) = match case {
                Case::Setup => {
                    let ratio = m.as_secs_f64() / clone.as_secs_f64();
                    let speedup = migrated.as_secs_f64() / m.as_secs_f64();
                    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
                    (
                        format!("{ratio:.2} x a; c / b = {speedup:.1}"),
                        format!(
                            "<= {CLONE_TARGET_RATIO} x a: {}; c / b >= {MIGRATE_TARGET_SPEEDUP}: {}",
                            verdict(ratio <= CLONE_TARGET_RATIO),
                            verdict(speedup >= MIGRATE_TARGET_SPEEDUP)
                        ),
                    )
                }
                Case::SetupNoTemplates => {
                    (format!("{:.2} x a", m.as_secs_f64() / clone.as_secs_f64()), String::new())
                }
                _ => (String::new(), String::new()),
            };
            let min = times.iter().min().copied().unwrap_or_default();
            let max = times.iter().max().copied().unwrap_or_default();
            println!("| {} | {} | {} | {} | {ratio} | {target} |", case.label(n), ms(m), ms(min), ms(max));
        }
        println!();
    }

    /// b's copies and c's migrated databases hold the same schema, rows and migration record.
    fn check_copies_equal_migrated(&self, runs: usize) -> Result<()> {
        let record = "SELECT string_agg(version::text || encode(checksum, 'hex'), ',' ORDER BY version) \
                      FROM _sqlx_migrations";
        for round in 0..runs {
            let mut copy = self.server.client(&branch_database(&format!("copy_{round}")))?;
            let mut migrated = self.server.client(&branch_database(&format!("migrated_{round}")))?;
            ensure!(fingerprint(&mut copy)? == fingerprint(&mut migrated)?, "round {round}: schemas differ");
            let (a, b): (String, String) =
                (copy.query_one(record, &[])?.get(0), migrated.query_one(record, &[])?.get(0));
            ensure!(a == b, "round {round}: the migration records differ");
        }
        println!(
            "checked: each copy has the schema, rows and migration record of a database migrated from empty"
        );
        Ok(())
    }
}
