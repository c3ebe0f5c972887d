//! Benchmark of pinned majors (issue 15): `setup` on PostgreSQL 18 from the managed binaries beside
//! the distribution's 15, whole-process wall time, the cases interleaved in one run.
//!
//! Two clones of this repository (its two example services, their migrations and seeds) run the
//! native engine, each with its own project, port and data directory; one pins 18, the other 15.
//! Cases:
//! - a. cold `setup` on 18: an empty binaries cache (the server and the client tools downloaded,
//!   verified and unpacked), a new cluster, the services' roles, databases, migrations and seeds;
//! - b. first `setup` on 18 with the binaries cached: a. without the download;
//! - c. first `setup` on 15 (installed binaries): the baseline of b;
//! - d./e. `setup` again, nothing to do, on 18 / 15;
//! - f./g. `migrate`, nothing pending, on 18 / 15.
//!
//! a.-c. tear the cluster down after each run (untimed). Run it with
//! `cargo bench -p xtask --bench versions` (BENCH_RUNS for d.-g., default 7; BENCH_COLD_RUNS for
//! a.-c., default 3). It needs the network for a. and PostgreSQL 15 installed for c.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use common::{env_number, free_port, median, ms, run, timed, user_env};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A clone of this repository set up for one major.
struct Workspace {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Workspace {
    fn new(root: &Path, temp: &Path, major: u32) -> Result<Workspace> {
        let dir = temp.join(format!("pg{major}"));
        let path = |p: &Path| p.to_str().map(str::to_owned).context("a path that is not UTF-8");
        run(Command::new("git").args(["clone", "--quiet", &path(root)?, &path(&dir)?]), "git clone")?;
        let env = vec![
            ("XTASK_ENGINE".into(), "native".into()),
            ("XTASK_POSTGRES".into(), major.to_string()),
            ("XTASK_PROJECT".into(), format!("benchpg{major}")),
            ("XTASK_PORT".into(), free_port()?.to_string()),
            ("XTASK_DATA_DIR".into(), path(&dir.join(".xtask"))?),
        ];
        Ok(Workspace { dir, env })
    }

    fn xtask(&self, xtask: &Path, args: &[&str], cache: Option<&Path>) -> Command {
        let mut command = Command::new(xtask);
        user_env(&mut command).args(args).current_dir(&self.dir).envs(self.env.iter().cloned());
        if let Some(cache) = cache {
            command.env("XTASK_POSTGRES_CACHE", cache);
        }
        command
    }
}

struct Case {
    name: &'static str,
    times: Vec<Duration>,
}

fn main() -> Result<()> {
    let runs = env_number("BENCH_RUNS", 7)?;
    let cold_runs = env_number("BENCH_COLD_RUNS", 3)?;
    let root = Path::new(ROOT).canonicalize()?;
    let xtask = common::build_xtask()?;
    let temp = tempfile::Builder::new().prefix("bench-versions-").tempdir()?;
    // As root the server runs as `postgres`, which must reach the data and the binaries.
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))?;
    let pg18 = Workspace::new(&root, temp.path(), 18)?;
    let pg15 = Workspace::new(&root, temp.path(), 15)?;
    // The cached binaries of b., d. and f. are the machine's: fetch them now if absent.
    run(&mut pg18.xtask(&xtask, &["binaries"], None), "xtask binaries")?;

    let mut cases: Vec<Case> = [
        "a. cold setup on 18: download, new cluster, services",
        "b. first setup on 18, binaries cached",
        "c. first setup on 15 (installed binaries)",
        "d. setup again on 18, nothing to do",
        "e. setup again on 15, nothing to do",
        "f. migrate on 18, nothing pending",
        "g. migrate on 15, nothing pending",
    ]
    .into_iter()
    .map(|name| Case { name, times: Vec::new() })
    .collect();

    for round in 0..cold_runs {
        let cache = temp.path().join(format!("cache-{round}"));
        std::fs::create_dir(&cache)?;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755))?;
        let cold = [(0, &pg18, Some(cache.as_path())), (1, &pg18, None), (2, &pg15, None)];
        for (index, workspace, cache) in cold {
            let time = timed(&mut workspace.xtask(&xtask, &["setup"], cache), cases[index].name)?;
            cases[index].times.push(time);
            run(&mut workspace.xtask(&xtask, &["teardown", "--force"], cache), "teardown")?;
        }
        std::fs::remove_dir_all(&cache)?;
    }

    for workspace in [&pg18, &pg15] {
        run(&mut workspace.xtask(&xtask, &["setup"], None), "setup")?;
    }
    let warm = [(3, &pg18, "setup"), (4, &pg15, "setup"), (5, &pg18, "migrate"), (6, &pg15, "migrate")];
    for round in 0..=runs {
        for (index, workspace, command) in warm {
            let time = timed(&mut workspace.xtask(&xtask, &[command], None), cases[index].name)?;
            if round > 0 {
                cases[index].times.push(time); // round 0 warms the page cache
            }
        }
    }
    for workspace in [&pg18, &pg15] {
        run(&mut workspace.xtask(&xtask, &["teardown", "--force"], None), "teardown")?;
    }

    println!(
        "cpus: {}; load average {}; medians of {cold_runs} (a.-c.) and {runs} (d.-g.) runs",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        common::load_average()
    );
    println!("| case | median | min | max |\n|---|---:|---:|---:|");
    for case in &cases {
        let (min, max) = (case.times.iter().min().unwrap(), case.times.iter().max().unwrap());
        println!("| {} | {} | {} | {} |", case.name, ms(median(&case.times)), ms(*min), ms(*max));
    }
    Ok(())
}
