//! Benchmark of what Redis adds to a no-op `setup` (issue 17: under 5 ms): whole-process wall time,
//! median of several runs, the two cases interleaved in one run on one native PostgreSQL cluster and
//! one redis-server, both made by xtask itself.
//!
//! - a. `xtask setup` with nothing to do, Redis off (XTASK_REDIS=0): today's path;
//! - b. `xtask setup` with nothing to do, Redis on: the same, plus the Redis login and one read of
//!   the branch's two users;
//! - c. `redis-cli PING` as the admin, for reference (a process start and one round trip).
//!
//! ```text
//! cargo bench -p xtask --bench redis       # BENCH_RUNS=21 by default
//! ```
//!
//! The workspace is generated in a temporary folder: two services (`alpha` with a database and
//! Redis, `beta` with Redis only), its own ports and data directory, torn down at the end. Each case
//! writes its own env file, so neither undoes the other's. The xtask binary is the dev profile's, run
//! directly (not through cargo).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

const TARGET_MS: f64 = 5.0;

fn main() -> Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(21);
    let xtask = build_xtask()?;
    let dir = tempfile::Builder::new().prefix("xtask-bench-redis-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let project = Project::generate(dir.path(), xtask)?;
    let result = measure(&project, runs);
    let teardown = project.xtask(&[], &["teardown"]);
    let (medians, check) = result?;
    teardown?;
    let [off, on, ping] = medians;
    println!("\n| case | median ({runs} runs) |\n|---|---:|");
    println!("| a. no-op `setup`, Redis off | {off:.1} ms |");
    println!("| b. no-op `setup`, Redis on (2 users) | {on:.1} ms |");
    println!("| c. `redis-cli PING` | {ping:.1} ms |");
    println!("\nRedis adds {:.1} ms to a no-op setup (target: under {TARGET_MS} ms)", on - off);
    println!("{check}");
    ensure!(on - off < TARGET_MS, "Redis adds {:.1} ms, over the {TARGET_MS} ms target", on - off);
    Ok(())
}

fn measure(project: &Project, runs: usize) -> Result<([f64; 3], String)> {
    let off = [("XTASK_REDIS", "0"), ("XTASK_ENV_FILE", "off.env")];
    let on = [("XTASK_ENV_FILE", "on.env")];
    // The first runs make the server, the users and the env files; then nothing is left to do.
    project.xtask(&on, &["setup"])?;
    project.xtask(&off, &["setup"])?;
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..runs {
        for case in (0..3).map(|i| (i + round) % 3) {
            let start = Instant::now();
            let said = match case {
                0 => project.xtask(&off, &["setup"])?,
                1 => project.xtask(&on, &["setup"])?,
                _ => project.ping()?,
            };
            samples[case].push(start.elapsed());
            ensure!(case == 2 || said.contains("nothing to do"), "setup was not a no-op: {said}");
        }
    }
    let medians = samples.map(|mut s| {
        s.sort();
        s[s.len() / 2].as_secs_f64() * 1000.0
    });
    let env = std::fs::read_to_string(project.dir.join("on.env"))?;
    let check = format!(
        "on.env holds {} Redis variables; off.env none: {}",
        env.lines().filter(|l| l.contains("REDIS")).count(),
        !std::fs::read_to_string(project.dir.join("off.env"))?.contains("REDIS")
    );
    Ok((medians, check))
}

struct Project {
    dir: PathBuf,
    xtask: PathBuf,
    env: Vec<(String, String)>,
}

impl Project {
    fn generate(dir: &Path, xtask: PathBuf) -> Result<Project> {
        let write = |path: &str, text: &str| -> Result<()> {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap())?;
            Ok(std::fs::write(path, text)?)
        };
        write(
            "Cargo.toml",
            "[workspace]\nmembers = [\"services/*\"]\n\n[workspace.metadata.xtask]\nproject = \"benchredis\"\n",
        )?;
        write(
            "services/alpha/Cargo.toml",
            "[package]\nname = \"alpha\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n\n\
             [package.metadata.xtask.database]\nname = \"alpha\"\n",
        )?;
        write(
            "services/beta/Cargo.toml",
            "[package]\nname = \"beta\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n",
        )?;
        let port = |_: ()| std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().unwrap().port());
        let env = vec![
            ("XTASK_ENGINE".into(), "native".into()),
            ("XTASK_PORT".into(), port(())?.to_string()),
            ("XTASK_REDIS_PORT".into(), port(())?.to_string()),
            ("XTASK_DATA_DIR".into(), dir.join("data").display().to_string()),
            ("XTASK_BRANCH".into(), "main".into()),
        ];
        Ok(Project { dir: dir.to_path_buf(), xtask, env })
    }

    /// Runs xtask; returns its stderr (what it said).
    fn xtask(&self, extra: &[(&str, &str)], args: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.xtask);
        command.args(args).current_dir(&self.dir);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("XTASK_")) {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).envs(extra.iter().copied());
        let out = command.output().with_context(|| format!("run {}", self.xtask.display()))?;
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(out.status.success(), "xtask {args:?} failed:\n{said}");
        Ok(said)
    }

    fn ping(&self) -> Result<String> {
        let credentials = std::fs::read_to_string(self.dir.join("data/.xtask-credentials.toml"))?;
        let file: toml::Value = toml::from_str(&credentials)?;
        let password = file["redis_admin"].as_str().context("no Redis admin password on file")?;
        let port = &self.env.iter().find(|(k, _)| k == "XTASK_REDIS_PORT").unwrap().1;
        let out = Command::new("redis-cli")
            .args(["-p", port, "--user", "xtask", "PING"])
            .env("REDISCLI_AUTH", password)
            .output()
            .context("run redis-cli")?;
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(said.contains("PONG"), "redis-cli PING: {said}");
        Ok(said)
    }
}

/// The dev profile's xtask, built now (as `cargo xtask` would run it).
fn build_xtask() -> Result<PathBuf> {
    let status =
        Command::new(env!("CARGO")).args(["build", "-q", "-p", "xtask", "--bin", "xtask"]).status()?;
    ensure!(status.success(), "cargo build -p xtask failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("debug/xtask"))
}
