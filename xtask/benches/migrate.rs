//! Benchmark of `xtask migrate` (issue 3, "Speed"): whole-process wall time of each command, median of
//! several runs, interleaved in one run against one throwaway PostgreSQL cluster started here.
//!
//! - a. floor: `psql -X -q -1 -v ON_ERROR_STOP=1 -f all.sql` (the N generated migrations concatenated,
//!   one transaction, no bookkeeping) into a fresh empty database;
//! - b. `xtask migrate` applying the same N migrations to a fresh, labelled, empty database
//!   (target: at most 1.2 x the floor);
//! - c. `xtask migrate` with nothing pending on a database with N applied (target: at most 12 ms);
//! - d. `xtask migrate --check` on the same (target: at most 12 ms);
//! - e. c through `cargo run`, which is what `cargo xtask migrate` costs;
//! - f. `psql -X -c 'select 1'`, the cost of any process that logs in, for reference;
//! - g. c with the release binary, for reference.
//!
//! Run it with
//!
//! ```text
//! cargo bench -p xtask --bench migrate
//! BENCH_N=1000 BENCH_RUNS=7 cargo bench -p xtask --bench migrate
//! ```
//!
//! BENCH_N is the number of migrations (default 1000), BENCH_RUNS the runs of a and b (default 7; the
//! no-op cases run 5 times per run), BENCH_PG_BINDIR where initdb, pg_ctl and psql are (default
//! /usr/lib/postgresql/15/bin; the versioned psql, not Debian's slower wrapper). BENCH_KEEP=1 leaves the
//! cluster running and the generated workspace in place, to re-run the commands the table shows.
//! BENCH_AUTH is the cluster's authentication method: default `trust`, the setting under which the
//! peers' figures in the issue were taken (`psql -c 'select 1'` 6.6 ms); `scram-sha-256` adds the SCRAM
//! exchange, about 5 ms on a 2-core machine, to every tool's connection alike.
//!
//! xtask runs as `cargo xtask` builds it (the dev profile, built here with `cargo build`), from a
//! generated workspace, with the external engine pointed at the benchmark cluster. Every apply goes to a
//! new database: dropping a migrated database deletes thousands of files, after which the disk of the
//! machines this was written on is slow for about a minute, so nothing is dropped before the cluster is
//! stopped and deleted at the end. After the timings the generated migrations are checked: xtask and psql
//! produce the same schema, and the down files, run in reverse order, leave an empty database.
//! A failing subprocess ends the run with its stderr; a missed target is reported as MISSED.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

mod common;
use common::*;

/// Runs of each no-op case per run of a and b.
const NOOP_REPEATS: usize = 5;
const APPLY_TARGET_RATIO: f64 = 1.2;
const NOOP_TARGET_MS: f64 = 12.0;
/// The branch whose database has everything applied, for the no-op cases.
const NOOP_BRANCH: &str = "run_0";

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let xtask = build_xtask()?;
    let workspace = Workspace::generate(settings.n, settings.keep)?;
    let server = Server::start(&settings)?;
    let bench = Bench {
        server: &server,
        workspace: &workspace,
        xtask,
        xtask_release: PathBuf::from(env!("CARGO_BIN_EXE_xtask")),
        psql: settings.bindir.join("psql"),
    };
    print_machine(&server)?;
    println!("{} migrations in {}", settings.n, workspace.path().display());
    bench.check_cargo_xtask_uses_this_workspace()?;
    let started = Instant::now();
    let cases = bench.run(settings.runs)?;
    println!("timed part: {:.1} s\n", started.elapsed().as_secs_f64());
    bench.print_table(&cases);
    bench.check_same_schema()?;
    bench.check_downs_empty_the_database()?;
    println!("load average at the end: {}", load_average());
    if settings.keep {
        println!("BENCH_KEEP: the workspace stays in {}", workspace.path().display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The cases

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Floor,
    Apply,
    Noop,
    Check,
    NoopCargo,
    Select1,
    NoopRelease,
}

const NOOP_CASES: [Case; 5] = [Case::Noop, Case::Check, Case::NoopCargo, Case::Select1, Case::NoopRelease];

impl Case {
    fn key(self) -> char {
        b"abcdefg"[self as usize] as char
    }

    fn label(self, n: usize) -> String {
        match self {
            Case::Floor => format!("floor: psql -1 -f all.sql, {n} migrations"),
            Case::Apply => format!("xtask migrate, {n} pending"),
            Case::Noop => "xtask migrate, nothing pending".into(),
            Case::Check => "xtask migrate --check, nothing pending".into(),
            Case::NoopCargo => "cargo xtask migrate, nothing pending".into(),
            Case::Select1 => "psql -c 'select 1'".into(),
            Case::NoopRelease => "c with the release binary".into(),
        }
    }
}

struct Samples {
    case: Case,
    times: Vec<Duration>,
}

struct Bench<'a> {
    server: &'a Server,
    workspace: &'a Workspace,
    /// The dev-profile binary, as `cargo xtask` runs it.
    xtask: PathBuf,
    xtask_release: PathBuf,
    psql: PathBuf,
}

impl Bench<'_> {
    /// `runs` rounds; each applies to a fresh pair of databases (a and b, alternating which goes
    /// first), then runs every no-op case NOOP_REPEATS times, interleaved.
    fn run(&self, runs: usize) -> Result<Vec<Samples>> {
        let mut all: Vec<Samples> = [Case::Floor, Case::Apply]
            .into_iter()
            .chain(NOOP_CASES)
            .map(|case| Samples { case, times: Vec::new() })
            .collect();
        let built = modified(&self.xtask)?;
        for round in 0..runs {
            self.server.create_database(&floor_database(round))?;
            self.server.create_branch_database(&run_branch(round))?;
            let mut applies = [Case::Floor, Case::Apply];
            if round % 2 == 1 {
                applies.reverse();
            }
            for case in applies {
                self.server.checkpoint()?;
                let time = self.time(case, round)?;
                all[case as usize].times.push(time);
            }
            self.check_applied(&branch_database(&run_branch(round)))?;
            if round == 0 {
                self.warm_up_noop_cases()?;
            }
            self.server.checkpoint()?;
            for _ in 0..NOOP_REPEATS {
                for case in NOOP_CASES {
                    let time = self.time(case, round)?;
                    all[case as usize].times.push(time);
                }
            }
            eprintln!("run {}/{runs} done", round + 1);
        }
        if modified(&self.xtask)? != built {
            println!(
                "WARNING: xtask's sources changed during the run and `cargo run` rebuilt it: \
                 the figures mix two builds, and e includes compile time"
            );
        }
        Ok(all)
    }

    fn time(&self, case: Case, round: usize) -> Result<Duration> {
        let what = format!("{}. {}", case.key(), case.label(self.workspace.migrations.len()));
        timed(&mut self.command(case, round), &what)
    }

    /// The command of a case; `round` picks the fresh databases of a and b.
    fn command(&self, case: Case, round: usize) -> Command {
        match case {
            Case::Floor => {
                let mut command = self.psql(&floor_database(round));
                command.args(["-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", "all.sql"]);
                command
            }
            Case::Apply => self.xtask(&self.xtask, &run_branch(round), &["migrate"]),
            Case::Noop => self.xtask(&self.xtask, NOOP_BRANCH, &["migrate"]),
            Case::Check => self.xtask(&self.xtask, NOOP_BRANCH, &["migrate", "--check"]),
            Case::NoopCargo => self.cargo_xtask(NOOP_BRANCH, &["migrate"]),
            Case::Select1 => {
                let mut command = self.psql("postgres");
                command.args(["-c", "select 1"]);
                command
            }
            Case::NoopRelease => self.xtask(&self.xtask_release, NOOP_BRANCH, &["migrate"]),
        }
    }

    /// The shell command that reproduces a case, given the environment `print_table` shows.
    fn shell(&self, case: Case) -> String {
        let psql = self.psql.display();
        let port = self.server.port;
        let psql = format!("{psql} -X -h 127.0.0.1 -p {port} -U postgres");
        let xtask = self.xtask.display();
        match case {
            Case::Floor => {
                format!("{psql} -d <new empty database> -q -1 -v ON_ERROR_STOP=1 -f all.sql")
            }
            Case::Apply => format!("XTASK_BRANCH=<new labelled empty database> {xtask} migrate"),
            Case::Noop => format!("XTASK_BRANCH={NOOP_BRANCH} {xtask} migrate"),
            Case::Check => format!("XTASK_BRANCH={NOOP_BRANCH} {xtask} migrate --check"),
            Case::NoopCargo => format!(
                "XTASK_BRANCH={NOOP_BRANCH} cargo run --quiet --manifest-path {} \
                 --package xtask -- migrate",
                manifest().display()
            ),
            Case::Select1 => format!("{psql} -d postgres -c 'select 1'"),
            Case::NoopRelease => {
                format!("XTASK_BRANCH={NOOP_BRANCH} {} migrate", self.xtask_release.display())
            }
        }
    }

    fn psql(&self, database: &str) -> Command {
        let mut command = Command::new(&self.psql);
        user_env(&mut command)
            .current_dir(self.workspace.path())
            .env("PGPASSWORD", PASSWORD)
            .args(["-X", "-h", "127.0.0.1", "-p"])
            .arg(self.server.port.to_string())
            .args(["-U", "postgres", "-d", database]);
        command
    }

    fn xtask(&self, binary: &Path, branch: &str, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        self.xtask_env(&mut command, branch).args(args);
        command
    }

    /// xtask through `cargo run`, from the generated workspace: xtask must find its workspace root
    /// from the current directory, not from where it was built.
    fn cargo_xtask(&self, branch: &str, args: &[&str]) -> Command {
        let mut command = Command::new("cargo");
        self.xtask_env(&mut command, branch)
            .args(["run", "--quiet", "--manifest-path"])
            .arg(manifest())
            .args(["--package", "xtask", "--"])
            .args(args);
        command
    }

    fn xtask_env<'c>(&self, command: &'c mut Command, branch: &str) -> &'c mut Command {
        user_env(command)
            .current_dir(self.workspace.path())
            .env("XTASK_PROJECT", PROJECT)
            .env("XTASK_ENGINE", "external")
            .env("XTASK_DATABASE_URL", self.server.admin_url())
            .env("XTASK_BRANCH", branch)
    }

    /// Untimed, before anything is measured: `cargo xtask migrate` run from the generated workspace
    /// applies the generated migrations (not the repository's own), which also warms cargo up.
    fn check_cargo_xtask_uses_this_workspace(&self) -> Result<()> {
        let branch = "cargo_check";
        self.server.create_branch_database(branch)?;
        let output = run(
            &mut self.cargo_xtask(branch, &["migrate"]),
            "cargo xtask migrate from the generated workspace",
        )?;
        let lines = String::from_utf8_lossy(&output.stderr).lines().count();
        println!(
            "check: cargo xtask migrate from the generated workspace applied them ({lines} lines on stderr)"
        );
        self.check_applied(&branch_database(branch))
    }

    /// The database has every generated migration recorded as applied.
    fn check_applied(&self, database: &str) -> Result<()> {
        let row = self
            .server
            .client(database)?
            .query_one("SELECT count(*), max(version) FROM _sqlx_migrations WHERE success", &[])?;
        let (count, newest): (i64, Option<i64>) = (row.get(0), row.get(1));
        let expected = &self.workspace.migrations.last().expect("n >= 2").version;
        ensure!(
            count as usize == self.workspace.migrations.len()
                && newest.map(|v| v.to_string()).as_ref() == Some(expected),
            "{database}: {count} migrations recorded, newest {newest:?}; expected {}, newest {expected}",
            self.workspace.migrations.len()
        );
        Ok(())
    }

    /// Runs each no-op case once untimed, and says what the xtask ones print (--check: nothing).
    fn warm_up_noop_cases(&self) -> Result<()> {
        for case in NOOP_CASES {
            let output = run(&mut self.command(case, 0), &case.label(0))?;
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            if case == Case::Check && !printed.is_empty() {
                println!("PROBLEM: `migrate --check` with nothing pending is not silent:\n{printed}");
            }
            if case == Case::Noop {
                println!("`migrate` with nothing pending prints: {:?}", printed.trim_end());
            }
        }
        Ok(())
    }

    fn print_table(&self, all: &[Samples]) {
        let n = self.workspace.migrations.len();
        println!(
            "Run from {} with:\n  export PGPASSWORD={PASSWORD} XTASK_PROJECT={PROJECT} \
             XTASK_ENGINE=external XTASK_DATABASE_URL={}\n",
            self.workspace.path().display(),
            self.server.admin_url()
        );
        println!(
            "{:<47} {:>4} {:>10} {:>10} {:>10} {:>12}  {:<17} command",
            "case", "runs", "median", "min", "max", "ratio", "target"
        );
        let floor = median(&all[Case::Floor as usize].times);
        let select1 = median(&all[Case::Select1 as usize].times);
        for samples in all {
            let times = &samples.times;
            let (ratio, target) = judge(samples.case, median(times), floor, select1);
            println!(
                "{:<47} {:>4} {:>10} {:>10} {:>10} {:>12}  {:<17} {}",
                format!("{}. {}", samples.case.key(), samples.case.label(n)),
                times.len(),
                ms(median(times)),
                ms(*times.iter().min().expect("runs >= 1")),
                ms(*times.iter().max().expect("runs >= 1")),
                ratio,
                target,
                self.shell(samples.case)
            );
        }
        println!();
    }

    /// xtask (b) and psql (a) leave the same schema and rows behind.
    fn check_same_schema(&self) -> Result<()> {
        let floor = fingerprint(&mut self.server.client(&floor_database(0))?)?;
        let xtask = fingerprint(&mut self.server.client(&branch_database(NOOP_BRANCH))?)?;
        ensure!(floor == xtask, "psql and xtask left different schemas:\n  psql:  {floor}\n  xtask: {xtask}");
        println!("check: psql and xtask leave the same schema: {floor}");
        Ok(())
    }

    /// Every up file, then every down file in reverse order, leaves the database as it was.
    fn check_downs_empty_the_database(&self) -> Result<()> {
        let database = format!("{PROJECT}_downs");
        self.server.create_database(&database)?;
        let empty = fingerprint(&mut self.server.client(&database)?)?;
        for script in ["all.sql", "all_down.sql"] {
            run(
                self.psql(&database).args(["-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", script]),
                &format!("psql -f {script}"),
            )?;
        }
        let after = fingerprint(&mut self.server.client(&database)?)?;
        ensure!(after == empty, "the down files leave objects behind: {after}, expected {empty}");
        println!("check: the down files, in reverse order, return the database to empty: {after}");
        Ok(())
    }
}

fn floor_database(round: usize) -> String {
    format!("{PROJECT}_floor_{round}")
}

fn run_branch(round: usize) -> String {
    format!("run_{round}")
}

fn modified(path: &Path) -> Result<std::time::SystemTime> {
    let metadata = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok(metadata.modified()?)
}

fn manifest() -> PathBuf {
    Path::new(WORKSPACE_MANIFEST).canonicalize().unwrap_or_else(|_| WORKSPACE_MANIFEST.into())
}

// ---------------------------------------------------------------------------------------------------
// Report

fn judge(case: Case, median: Duration, floor: Duration, select1: Duration) -> (String, String) {
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let ratio = |base: Duration, of: &str| format!("{:.2} x {of}", median.as_secs_f64() / base.as_secs_f64());
    let millis = median.as_secs_f64() * 1000.0;
    match case {
        Case::Apply => {
            let ok = median.as_secs_f64() <= APPLY_TARGET_RATIO * floor.as_secs_f64();
            let target = format!("<= {APPLY_TARGET_RATIO} x a {}", verdict(ok));
            (ratio(floor, "a"), target)
        }
        Case::Noop | Case::Check => {
            let target = format!("<= {NOOP_TARGET_MS} ms {}", verdict(millis <= NOOP_TARGET_MS));
            (ratio(select1, "f"), target)
        }
        Case::NoopCargo | Case::NoopRelease => (ratio(select1, "f"), String::new()),
        Case::Floor | Case::Select1 => (String::new(), String::new()),
    }
}
