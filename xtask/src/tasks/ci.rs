//! `ci`: the whole pipeline on a database set of its own, named for the CI run (never a developer's
//! branch databases), torn down at the end whatever failed; then a table of steps and durations.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::checks;
use super::roundtrip;
use super::test_run::{self, TestRun};
use crate::config::EngineKind;
use crate::engine::{self, UpOutcome};
use crate::os::TempDir;
use crate::provision::{self, DockerDaemon};
use crate::scratch;
use crate::workspace::{Branch, Ctx};

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    Ok,
    Failed,
    /// A step it needs failed.
    NotRun,
}

#[derive(Serialize)]
struct Step {
    name: &'static str,
    status: Status,
    seconds: f64,
    detail: String,
}

#[derive(Serialize)]
struct Report {
    run: String,
    /// The engine that served the run's databases (the configured one when none started).
    engine: &'static str,
    ok: bool,
    seconds: f64,
    steps: Vec<Step>,
}

#[derive(Default)]
struct Pipeline {
    steps: Vec<Step>,
}

impl Pipeline {
    /// Runs `step` unless one of `needs` did not succeed; prints its outcome as it ends.
    fn run(&mut self, name: &'static str, needs: &[&str], step: impl FnOnce() -> Result<String>) {
        if !self.may_run(name, needs) {
            return;
        }
        eprintln!("ci: {name} ...");
        let (outcome, seconds) = timed(step);
        // Interrupted: the signal thread is cleaning up and ends the process; no further step.
        crate::signals::park_if_interrupted();
        self.record(name, outcome, seconds);
    }

    /// Whether all of `needs` succeeded; else `name` is recorded as not run.
    fn may_run(&mut self, name: &'static str, needs: &[&str]) -> bool {
        let blocked: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|need| !self.steps.iter().any(|s| s.name == *need && s.status == Status::Ok))
            .collect();
        if !blocked.is_empty() {
            let detail = format!("needs {}", blocked.join(", "));
            eprintln!("ci: {name}: not run ({detail})");
            self.steps.push(Step { name, status: Status::NotRun, seconds: 0.0, detail });
        }
        blocked.is_empty()
    }

    fn record(&mut self, name: &'static str, outcome: Result<String>, seconds: f64) {
        let (status, detail) = match outcome {
            Ok(detail) => (Status::Ok, detail),
            Err(error) => (Status::Failed, format!("{error:#}")),
        };
        let word = if status == Status::Ok { "ok" } else { "FAILED" };
        eprintln!("ci: {name}: {word} ({seconds:.1} s): {detail}");
        self.steps.push(Step { name, status, seconds, detail });
    }

    fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.status == Status::Ok)
    }
}

pub fn ci(ctx: &Ctx, json: bool, long: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let may_provision = provision::may_provision(ctx.provision);
    let run = run_name()?;
    let env_dir = TempDir::new("ci")?;
    let mut run_ctx = ctx.with_branch(Branch { name: run.clone(), is_default: false, source: "ci" });
    run_ctx.config.env_file = env_dir.path().join("ci.env");
    run_ctx.provision = may_provision;
    // `auto` picks what `setup` would have picked before this run started a Docker engine for the
    // tests: the run's databases then need no image that may not be pullable.
    if ctx.config.engine == EngineKind::Auto && !provision::docker_answers() {
        run_ctx.config.engine = EngineKind::Native;
    }
    eprintln!("ci: run {run}: databases named for it, dropped at the end");

    let mut pipeline = Pipeline::default();
    let mut daemon: Option<DockerDaemon> = None;
    let mut started_server = false;
    let mut started_redis = false;
    // The templates of the run's branch (its migrations beyond the default branch's): they go at
    // teardown. Shared templates stay, as after any setup: other runs may be copying them.
    let mut run_templates: Vec<String> = Vec::new();
    let mut engine_name = run_ctx.config.engine.name();
    let mut test_env: Vec<(String, String)> = Vec::new();
    pipeline.run("prerequisites", &[], || {
        let (done, started) = prerequisites(&run_ctx, may_provision)?;
        daemon = started;
        Ok(done)
    });
    pipeline.run("db-up", &[], || {
        let mut engine = engine::select(&run_ctx)?;
        let outcome = engine.up().context("start the PostgreSQL server")?;
        started_server = outcome != UpOutcome::AlreadyRunning;
        engine_name = engine.kind().name();
        if let Some(redis) = crate::redis::of(&run_ctx, engine.kind())? {
            started_redis = redis.up()? != UpOutcome::AlreadyRunning;
        }
        // From here Ctrl-C, SIGTERM and SIGHUP drop the run's databases (before they exist, too:
        // a signal during setup) and end the run; children are started with the signals unblocked.
        for database in run_ctx.databases() {
            scratch::drop_on_signal(engine.endpoint(), database.name.as_str());
        }
        scratch::drop_on_signals();
        Ok(format!("{} server {}", engine.kind().name(), outcome.describe()))
    });
    pipeline.run("setup", &["db-up"], || {
        let vars = super::setup(&run_ctx, None);
        // The URLs carry passwords: the file goes at once, the tests get them in their environment.
        let _ = std::fs::remove_file(&run_ctx.config.env_file);
        test_env = vars?;
        let engine = engine::select(&run_ctx)?;
        run_templates = branch_templates(&run_ctx)?;
        for template in &run_templates {
            scratch::drop_on_signal(engine.endpoint(), template);
        }
        let names: Vec<String> = run_ctx.databases().iter().map(|d| d.name.to_string()).collect();
        Ok(names.join(", "))
    });
    let sets = checks::read_sets(ctx);
    pipeline.run("migrations", &[], || migration_files(ctx, &sets));
    pipeline.run("downs", &["db-up"], || downs(&run_ctx, &sets));
    pipeline.run("schema", &["db-up"], || declared_schema(&run_ctx));
    pipeline.run("fmt", &[], || checks::formatting(&ctx.root, false));
    pipeline.run("build", &[], || build_tests(ctx));
    std::thread::scope(|scope| {
        // Clippy needs no database and little of what the tests use while they wait on their
        // servers: it runs beside them, its output held back unless it fails.
        let clippy = pipeline.may_run("clippy", &["build"]).then(|| {
            eprintln!("ci: clippy ... (beside the tests)");
            scope.spawn(|| timed(|| clippy(ctx)))
        });
        pipeline.run("tests", &["prerequisites", "setup", "build"], || tests(ctx, &run, &test_env, long));
        if let Some(clippy) = clippy {
            let (outcome, seconds) =
                clippy.join().unwrap_or_else(|_| (Err(anyhow::anyhow!("the clippy thread panicked")), 0.0));
            pipeline.record("clippy", outcome, seconds);
        }
    });
    let started = Started { server: started_server, redis: started_redis };
    pipeline.run("teardown", &[], || teardown(&run_ctx, &run_templates, started, daemon.take()));

    let report = Report {
        run,
        engine: engine_name,
        ok: pipeline.ok(),
        seconds: start.elapsed().as_secs_f64(),
        steps: pipeline.steps,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", table(&report));
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn timed(step: impl FnOnce() -> Result<String>) -> (Result<String>, f64) {
    let start = Instant::now();
    let outcome = step();
    (outcome, start.elapsed().as_secs_f64())
}

/// `ci-<the CI's run id, or local>-<random>`: unique even for two jobs of one run on one server.
fn run_name() -> Result<String> {
    let id = ["GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILDKITE_BUILD_NUMBER", "CIRCLE_WORKFLOW_ID"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "local".into());
    Ok(format!("ci-{id}-{}", crate::credentials::random_hex(3)?))
}

/// Server binaries, a Docker engine and the test image, as the engine and `[...xtask.ci]` need.
fn prerequisites(ctx: &Ctx, may: bool) -> Result<(String, Option<DockerDaemon>)> {
    let wants = &ctx.config.ci;
    let mut done = Vec::new();
    if wants.server_binaries || ctx.config.engine == EngineKind::Native {
        done.push(
            provision::ensure_postgres_binaries(may)?.unwrap_or_else(|| "server binaries found".into()),
        );
    }
    for program in &wants.programs {
        done.push(provision::ensure_program(program, may)?);
    }
    let mut daemon = None;
    let images = test_images(ctx);
    if wants.docker || !images.is_empty() || ctx.config.engine == EngineKind::Docker {
        daemon = provision::ensure_docker_engine(may)?;
        done.push(match &daemon {
            Some(started) => format!("started dockerd (pid {})", started.pid()),
            None => "Docker engine answers".into(),
        });
    }
    for image in &images {
        // The configured script builds the configured images, not one named by XTASK_TEST_IMAGE.
        let build = wants.test_image_build.as_deref().filter(|_| wants.test_image.contains(image));
        let built = provision::ensure_image(&ctx.root, image, build, may)?;
        done.push(built.unwrap_or_else(|| format!("{image} present")));
    }
    if done.is_empty() {
        done.push("nothing needed".into());
    }
    Ok((done.join("; "), daemon))
}

/// The images the tests run: `test-image` in `[workspace.metadata.xtask.ci]`, the first of them
/// replaced by XTASK_TEST_IMAGE when that is set.
fn test_images(ctx: &Ctx) -> Vec<String> {
    let mut images = ctx.config.ci.test_image.clone();
    if let Some(chosen) = std::env::var("XTASK_TEST_IMAGE").ok().filter(|image| !image.is_empty()) {
        match images.first_mut() {
            Some(first) => *first = chosen,
            None => images.push(chosen),
        }
    }
    images
}

fn migration_files(ctx: &Ctx, sets: &[checks::MigrationSet]) -> Result<String> {
    let mut accounts = Vec::new();
    let mut problems = Vec::new();
    for set in sets {
        let logical = &set.database.logical;
        let checked = checks::names(set).and_then(|names| {
            let files = set.files.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let dir = set.database.migrations_dir(ctx);
            let history = checks::history(&ctx.root, &ctx.config.default_branches, &dir, files)?;
            Ok(format!("{names}, {}", history.account))
        });
        match checked {
            Ok(account) => accounts.push(format!("{logical}: {account}")),
            Err(error) => problems.push(format!("{logical}: {error:#}")),
        }
    }
    if !problems.is_empty() {
        bail!(problems.join("\n"));
    }
    Ok(accounts.join("; "))
}

/// Every migration's down, by a round trip in a throwaway database.
fn downs(ctx: &Ctx, sets: &[checks::MigrationSet]) -> Result<String> {
    let engine = engine::select(ctx)?;
    let mut accounts = Vec::new();
    for set in sets {
        let Ok(files) = &set.files else { continue };
        let checked = roundtrip::round_trip(ctx, engine.endpoint(), &set.database, files, 0)
            .with_context(|| set.database.logical.clone())?;
        accounts.push(format!("{}: {}", set.database.logical, checked.describe()));
    }
    Ok(accounts.join("; "))
}

fn declared_schema(ctx: &Ctx) -> Result<String> {
    let engine = engine::select(ctx)?;
    checks::declared_schemas(ctx, engine.endpoint())
}

/// Compiles the workspace's tests, so that clippy can run beside them without waiting for the
/// build directory, nor slowing the build down.
fn build_tests(ctx: &Ctx) -> Result<String> {
    let command = duct::cmd!("cargo", "test", "--workspace", "--locked", "--no-run").dir(&ctx.root);
    test_run::cargo(command, "cargo test --workspace --locked --no-run")
}

/// The workspace's tests, pointed at the run's databases through the variables setup would write
/// to .env (the environment wins over .env in the services' test helper); then what they left
/// behind is swept.
fn tests(ctx: &Ctx, run: &str, env: &[(String, String)], long: bool) -> Result<String> {
    let mut args = vec!["test", "--workspace", "--locked"];
    if long {
        args.extend(["--", "--include-ignored"]);
    }
    let shown = format!("cargo {}", args.join(" "));
    let mut command = duct::cmd("cargo", &args).dir(&ctx.root);
    for (key, value) in env {
        command = command.env(key, value);
    }
    let images = test_images(ctx);
    if let Some(first) = images.first() {
        command = command.env("XTASK_TEST_IMAGE", first).env("XTASK_TEST_IMAGES", images.join(" "));
    }
    // Most tests wait on their servers (startup, containers, locks): twice as many as cores keep
    // the machine busy (measured in BENCHMARKS.md). RUST_TEST_THREADS set by the caller wins.
    if std::env::var_os("RUST_TEST_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        command = command.env("RUST_TEST_THREADS", (2 * cores).to_string());
    }
    let test_run = TestRun::new(run)?;
    let passed = test_run::cargo(test_run.command(command), &shown);
    let swept = test_run.finish();
    Ok(format!("{}; {swept}", passed?))
}

fn clippy(ctx: &Ctx) -> Result<String> {
    let command =
        duct::cmd!("cargo", "clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings")
            .dir(&ctx.root);
    test_run::cargo_quietly(command, "cargo clippy --workspace --all-targets --locked -- -D warnings")
}

/// What the run started, which its teardown stops.
#[derive(Clone, Copy)]
struct Started {
    server: bool,
    redis: bool,
}

/// Drops the run's databases and its branch's templates (and Redis users); stops the servers and
/// the Docker engine when this run started them.
fn teardown(
    ctx: &Ctx,
    templates: &[String],
    started: Started,
    daemon: Option<DockerDaemon>,
) -> Result<String> {
    let mut done = Vec::new();
    let engine = engine::select(ctx)?;
    let running = engine.status().is_ok_and(|s| s.state == engine::ServerState::Running);
    if running {
        // Forced (the run's own databases, on any host), not backed up.
        super::wipe(ctx, None, true, false)?;
        for database in ctx.databases() {
            scratch::forget_on_signal(database.name.as_str());
        }
        done.push(format!("dropped the databases of {}", ctx.branch.name));
        let mut admin = crate::admin::Admin::connect(engine.endpoint())?;
        for template in templates {
            admin.drop_labelled(template, &ctx.config.project, None)?;
            scratch::forget_on_signal(template);
        }
        if !templates.is_empty() {
            done.push(format!("dropped the run's {} template(s)", templates.len()));
        }
    }
    if started.server && running {
        engine.down().context("stop the server this run started")?;
        done.push("stopped the server it started".into());
    }
    if started.redis
        && let Some(redis) = crate::redis::of(ctx, engine.kind())?
        && redis.down()?
    {
        done.push("stopped the Redis server it started".into());
    }
    if let Some(daemon) = daemon {
        let pid = daemon.pid();
        drop(daemon);
        done.push(format!("stopped dockerd (pid {pid})"));
    }
    if done.is_empty() {
        done.push("nothing to tear down".into());
    }
    Ok(done.join("; "))
}

/// The templates labelled with this (run's) branch.
fn branch_templates(ctx: &Ctx) -> Result<Vec<String>> {
    let engine = engine::select(ctx)?;
    let mut admin = crate::admin::Admin::connect(engine.endpoint())?;
    let mut names = Vec::new();
    for db in ctx.databases() {
        let templates = admin.templates_of(&ctx.config.project, &db.logical)?;
        names.extend(templates.into_iter().filter(|(_, l)| l.branch == ctx.branch.name).map(|(n, _)| n));
    }
    Ok(names)
}

fn table(report: &Report) -> String {
    let mut out = format!("ci: run {} ({} engine)\n", report.run, report.engine);
    out.push_str(&format!("  {:<14} {:<8} {:>8}  {}\n", "step", "status", "time", "detail"));
    for step in &report.steps {
        let status = match step.status {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::NotRun => "not run",
        };
        let detail = step.detail.lines().next().unwrap_or_default();
        out.push_str(&format!(
            "  {:<14} {:<8} {:>6.1} s  {}\n",
            step.name,
            status,
            step.seconds,
            truncate(detail, 90)
        ));
    }
    let verdict = if report.ok { "passed" } else { "FAILED" };
    out.push_str(&format!("ci: {verdict} in {:.1} s", report.seconds));
    out
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
