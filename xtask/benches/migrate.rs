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

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

const PROJECT: &str = "bench";
const PASSWORD: &str = "postgres";
/// Runs of each no-op case per run of a and b.
const NOOP_REPEATS: usize = 5;
const APPLY_TARGET_RATIO: f64 = 1.2;
const NOOP_TARGET_MS: f64 = 12.0;
/// The branch whose database has everything applied, for the no-op cases.
const NOOP_BRANCH: &str = "run_0";
const WORKSPACE_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");

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
// Settings

struct Settings {
    n: usize,
    runs: usize,
    bindir: PathBuf,
    keep: bool,
    auth: String,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let settings = Settings {
            n: env_number("BENCH_N", 1000)?,
            runs: env_number("BENCH_RUNS", 7)?,
            bindir: std::env::var_os("BENCH_PG_BINDIR")
                .map_or_else(|| "/usr/lib/postgresql/15/bin".into(), PathBuf::from),
            keep: std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1"),
            auth: std::env::var("BENCH_AUTH").unwrap_or_else(|_| "trust".into()),
        };
        ensure!(settings.n >= 2, "BENCH_N must be at least 2");
        ensure!(settings.runs >= 1, "BENCH_RUNS must be at least 1");
        if settings.runs < 5 {
            println!("note: BENCH_RUNS={} is below the 5 runs the figures need", settings.runs);
        }
        Ok(settings)
    }
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text:?}: expected a whole number")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------------------
// Subprocesses

/// Runs a command to completion; an error carries `what`, the exit status and the command's stderr.
fn run(command: &mut Command, what: &str) -> Result<Output> {
    let output = command.output().with_context(|| format!("{what}: could not start {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Wall time from spawn to exit of a successful run.
fn timed(command: &mut Command, what: &str) -> Result<Duration> {
    let start = Instant::now();
    run(command, what)?;
    Ok(start.elapsed())
}

/// Removes what `cargo bench` adds to the environment of this process, so children see a user's shell.
fn user_env(command: &mut Command) -> &mut Command {
    const ADDED_BY_CARGO: [&str; 9] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "XTASK_",
        "PG",
    ];
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "CARGO" || ADDED_BY_CARGO.iter().any(|prefix| key.starts_with(prefix)) {
            command.env_remove(&*key);
        }
    }
    command
}

/// Builds xtask the way `cargo xtask` does (dev profile) and returns the binary's path.
fn build_xtask() -> Result<PathBuf> {
    let output = run(
        user_env(&mut Command::new("cargo")).args([
            "build",
            "--quiet",
            "--manifest-path",
            WORKSPACE_MANIFEST,
            "--package",
            "xtask",
            "--message-format=json-render-diagnostics",
        ]),
        "cargo build --package xtask",
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let message: serde_json::Value = serde_json::from_str(line).context("cargo's JSON")?;
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "xtask"
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(path));
        }
    }
    bail!("cargo build --package xtask reported no xtask binary")
}

// ---------------------------------------------------------------------------------------------------
// The benchmark's PostgreSQL cluster

/// A private cluster in a temporary directory: initdb'd and started by `start`, stopped and deleted when
/// dropped (also when the benchmark fails).
struct Server {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    /// The unprivileged user the server runs as when we are root (PostgreSQL refuses to run as root).
    owner: Option<(u32, u32)>,
    port: u16,
    running: bool,
    /// BENCH_KEEP: leave it running and its directory in place.
    keep: bool,
}

impl Server {
    fn start(settings: &Settings) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("bench-pg-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("create the cluster's directory")?;
        let mut server = Server {
            bindir: settings.bindir.clone(),
            dir,
            owner: server_owner()?,
            port: free_port()?,
            running: false,
            keep: settings.keep,
        };
        server.prepare_directory()?;
        server.initdb(&settings.auth)?;
        server.configure()?;
        server.pg_ctl_start()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program, run as the cluster's owner.
    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bindir.join(name));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn prepare_directory(&self) -> Result<()> {
        let dir = self.dir.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        for parent in dir.ancestors().skip(1) {
            let mode = std::fs::metadata(parent)?.permissions().mode();
            ensure!(
                self.owner.is_none() || mode & 0o001 != 0,
                "{} is not traversable by the server's user: chmod o+x it",
                parent.display()
            );
        }
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn initdb(&self, auth: &str) -> Result<()> {
        run(
            self.tool("initdb")
                .arg("--pgdata")
                .arg(self.data())
                .args(["-U", "postgres", "--pwfile=pwfile"])
                .arg(format!("--auth={auth}"))
                .args(["--encoding=UTF8", "--locale=C"]),
            "initdb",
        )?;
        std::fs::remove_file(self.dir.path().join("pwfile"))?;
        Ok(())
    }

    /// Loopback TCP only; everything else (fsync, synchronous_commit, buffers) stays at its default.
    fn configure(&self) -> Result<()> {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new().append(true).open(self.data().join("postgresql.conf"))?;
        writeln!(
            conf,
            "\n# cargo bench -p xtask --bench migrate\nlisten_addresses = '127.0.0.1'\n\
             port = {}\nunix_socket_directories = ''",
            self.port
        )?;
        Ok(())
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let started = run(
            self.tool("pg_ctl")
                .args(["start", "--wait", "--timeout=60", "--pgdata"])
                .arg(self.data())
                .arg("--log")
                .arg(&log),
            "pg_ctl start",
        );
        self.running = started.is_ok();
        started
            .map(drop)
            .with_context(|| format!("server log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()))
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    fn client(&self, database: &str) -> Result<postgres::Client> {
        let params =
            format!("host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname={database}", self.port);
        postgres::Client::connect(&params, postgres::NoTls)
            .with_context(|| format!("connect to database {database}"))
    }

    fn admin(&self, sql: &str) -> Result<()> {
        self.client("postgres")?.batch_execute(sql).with_context(|| format!("run {sql}"))
    }

    fn create_database(&self, name: &str) -> Result<()> {
        self.admin(&format!("CREATE DATABASE \"{name}\""))
    }

    /// An empty database for `branch`, labelled the way `xtask setup` labels the databases it creates.
    fn create_branch_database(&self, branch: &str) -> Result<()> {
        let name = branch_database(branch);
        self.create_database(&name)?;
        self.admin(&format!(
            "COMMENT ON DATABASE \"{name}\" IS '{{\"tool\":\"xtask\",\"project\":\"{PROJECT}\",\
             \"database\":\"{PROJECT}\",\"branch\":\"{branch}\",\"created\":\"2026-01-01T00:00:00Z\"}}'"
        ))
    }

    /// Flushes dirty buffers so each timed run starts from the same state.
    fn checkpoint(&self) -> Result<()> {
        self.admin("CHECKPOINT")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        if self.keep {
            self.dir.disable_cleanup(true);
            println!(
                "BENCH_KEEP: the cluster still runs; stop and delete it with\n  \
                 {}{} stop --pgdata {} && rm -r {}",
                if self.owner.is_some() { "runuser -u postgres -- " } else { "" },
                self.bindir.join("pg_ctl").display(),
                self.data().display(),
                self.dir.path().display()
            );
            return;
        }
        let stopped = run(
            self.tool("pg_ctl").args(["stop", "--wait", "--mode=fast", "--pgdata"]).arg(self.data()),
            "pg_ctl stop",
        );
        if let Err(error) = stopped {
            eprintln!("{error:#}\nthe benchmark cluster in {} may still run", self.dir.path().display());
        }
    }
}

/// Uid and gid of the `postgres` system user when we run as root, else `None` (run as ourselves).
fn server_owner() -> Result<Option<(u32, u32)>> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    Ok(Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?)))
}

fn id(args: &[&str]) -> Result<u32> {
    let output = run(Command::new("id").args(args), &format!("id {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn branch_database(branch: &str) -> String {
    format!("{PROJECT}_{branch}")
}

// ---------------------------------------------------------------------------------------------------
// Generated migrations

/// A throwaway Cargo workspace holding the generated migrations, `all.sql` (every up file concatenated
/// in order) and `all_down.sql` (every down file in reverse order).
struct Workspace {
    dir: tempfile::TempDir,
    migrations: Vec<Migration>,
}

impl Workspace {
    fn generate(n: usize, keep: bool) -> Result<Workspace> {
        let mut dir = tempfile::Builder::new().prefix("bench-ws-").tempdir()?;
        dir.disable_cleanup(keep);
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n")?;
        let migrations = generate_migrations(n);
        let folder = dir.path().join("migrations");
        std::fs::create_dir(&folder)?;
        for migration in &migrations {
            let stem = format!("{}_{}", migration.version, migration.slug);
            std::fs::write(folder.join(format!("{stem}.up.sql")), &migration.up)?;
            std::fs::write(folder.join(format!("{stem}.down.sql")), &migration.down)?;
        }
        let all: String = migrations.iter().map(|m| m.up.as_str()).collect();
        std::fs::write(dir.path().join("all.sql"), all)?;
        let all_down: String = migrations.iter().rev().map(|m| m.down.as_str()).collect();
        std::fs::write(dir.path().join("all_down.sql"), all_down)?;
        Ok(Workspace { dir, migrations })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

struct Migration {
    version: String,
    slug: String,
    up: String,
    down: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Enum,
    Table,
    Index,
    AddColumn,
    Insert,
}

/// The mix, repeated: 30 % tables, 20 % indexes, 20 % added columns, 20 % inserts, 10 % enum types.
const KIND_CYCLE: [Kind; 10] = [
    Kind::Enum,
    Kind::Table,
    Kind::Table,
    Kind::Index,
    Kind::AddColumn,
    Kind::Insert,
    Kind::Table,
    Kind::Index,
    Kind::AddColumn,
    Kind::Insert,
];

const NOUNS: [&str; 12] = [
    "accounts",
    "orders",
    "invoices",
    "products",
    "users",
    "teams",
    "projects",
    "comments",
    "payments",
    "shipments",
    "events",
    "tags",
];

/// Added columns: name and type, in turn.
const COLUMNS: [(&str, &str); 5] = [
    ("note", "text"),
    ("quantity", "integer NOT NULL DEFAULT 0"),
    ("archived", "boolean NOT NULL DEFAULT false"),
    ("due_at", "timestamptz"),
    ("amount", "numeric(12, 2)"),
];

fn generate_migrations(n: usize) -> Vec<Migration> {
    let mut generator = Generator { seed: 0x9E37_79B9_7F4A_7C15, tables: Vec::new(), status_type: None };
    (1..=n).map(|number| generator.migration(number)).collect()
}

struct Table {
    name: String,
    /// Columns worth an index: name, foreign keys, added columns.
    columns: Vec<String>,
}

/// Deterministic: the same `n` always gives the same files (a fixed-seed xorshift picks tables).
struct Generator {
    seed: u64,
    tables: Vec<Table>,
    /// The newest enum type, used by the tables created after it.
    status_type: Option<String>,
}

impl Generator {
    fn migration(&mut self, number: usize) -> Migration {
        let mut kind = KIND_CYCLE[(number - 1) % KIND_CYCLE.len()];
        if self.tables.is_empty() && !matches!(kind, Kind::Enum) {
            kind = Kind::Table;
        }
        let (slug, up, down) = match kind {
            Kind::Enum => self.create_enum(number),
            Kind::Table => self.create_table(number),
            Kind::Index => self.create_index(number),
            Kind::AddColumn => self.add_column(number),
            Kind::Insert => self.insert_rows(number),
        };
        Migration { version: version(number), slug, up, down }
    }

    fn create_enum(&mut self, number: usize) -> (String, String, String) {
        let name = format!("status_{number:04}");
        let up = format!("CREATE TYPE {name} AS ENUM ('draft', 'active', 'archived');\n");
        let down = format!("DROP TYPE {name};\n");
        self.status_type = Some(name.clone());
        (format!("create_type_{name}"), up, down)
    }

    fn create_table(&mut self, number: usize) -> (String, String, String) {
        let name = format!("{}_{number:04}", NOUNS[number % NOUNS.len()]);
        let mut columns = vec![
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY".to_owned(),
            "name text NOT NULL".to_owned(),
        ];
        if let Some(status) = &self.status_type {
            columns.push(format!("status {status} NOT NULL DEFAULT 'draft'"));
        }
        let parents = self.pick_parents();
        let mut statements = Vec::new();
        for parent in &parents {
            columns.push(format!("{parent}_id bigint REFERENCES {parent} (id)"));
            statements.push(format!("CREATE INDEX ON {name} ({parent}_id);\n"));
        }
        columns.push("created_at timestamptz NOT NULL DEFAULT now()".to_owned());
        let up =
            format!("CREATE TABLE {name} (\n    {}\n);\n{}", columns.join(",\n    "), statements.concat());
        let mut indexable = vec!["name".to_owned()];
        indexable.extend(parents.iter().map(|parent| format!("{parent}_id")));
        self.tables.push(Table { name: name.clone(), columns: indexable });
        (format!("create_{name}"), up, format!("DROP TABLE {name};\n"))
    }

    /// Up to two distinct earlier tables for foreign keys.
    fn pick_parents(&mut self) -> Vec<String> {
        let mut parents = Vec::new();
        for _ in 0..self.random(3) {
            if self.tables.is_empty() {
                break;
            }
            let index = self.pick_table();
            let parent = self.tables[index].name.clone();
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
        parents
    }

    fn create_index(&mut self, number: usize) -> (String, String, String) {
        let index = self.pick_table();
        let table = &self.tables[index];
        let column = &table.columns[number % table.columns.len()];
        let index = format!("ix_{number:04}_{column}");
        let up = format!("CREATE INDEX {index} ON {} ({column});\n", table.name);
        let slug = format!("index_{}_{column}", table.name);
        (slug, up, format!("DROP INDEX {index};\n"))
    }

    fn add_column(&mut self, number: usize) -> (String, String, String) {
        let index = self.pick_table();
        let (word, sql_type) = COLUMNS[number % COLUMNS.len()];
        let column = format!("{word}_{number:04}");
        let table = &mut self.tables[index];
        let up = format!("ALTER TABLE {} ADD COLUMN {column} {sql_type};\n", table.name);
        let down = format!("ALTER TABLE {} DROP COLUMN {column};\n", table.name);
        let slug = format!("add_{column}_to_{}", table.name);
        table.columns.push(column);
        (slug, up, down)
    }

    fn insert_rows(&mut self, number: usize) -> (String, String, String) {
        let index = self.pick_table();
        let table = &self.tables[index].name;
        let names: Vec<String> = (1..=3).map(|row| format!("'row {number}.{row}'")).collect();
        let up = format!("INSERT INTO {table} (name) VALUES ({});\n", names.join("), ("));
        let down = format!("DELETE FROM {table} WHERE name IN ({});\n", names.join(", "));
        (format!("seed_{table}"), up, down)
    }

    /// Any earlier table.
    fn pick_table(&mut self) -> usize {
        self.random(self.tables.len())
    }

    /// xorshift64: a number below `bound`.
    fn random(&mut self, bound: usize) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % bound as u64) as usize
    }
}

/// `YYYYMMDDHHMMSS`, one second apart from 2024-01-01 00:00:01 on (within January: up to 2.6 million).
fn version(number: usize) -> String {
    assert!(number < 31 * 86_400, "too many migrations for January");
    let (day, second) = (number / 86_400, number % 86_400);
    format!("202401{:02}{:02}{:02}{:02}", day + 1, second / 3600, second / 60 % 60, second % 60)
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

/// Objects in the public schema (tables, indexes, sequences, columns, types, constraints) and rows in
/// its tables, leaving out xtask's own bookkeeping: a count, a row count and an md5 of the list.
fn fingerprint(client: &mut postgres::Client) -> Result<String> {
    const SQL: &str = r"
        WITH objects(d) AS (
            SELECT format('%s %s', relkind, relname) FROM pg_class
            WHERE relnamespace = 'public'::regnamespace AND relname NOT LIKE '%sqlx_migrations%'
          UNION ALL
            SELECT format('column %s.%s %s %s', c.relname, a.attname,
                          format_type(a.atttypid, a.atttypmod), a.attnotnull)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE '%sqlx_migrations%'
              AND a.attnum > 0 AND NOT a.attisdropped
          UNION ALL
            SELECT format('type %s', typname) FROM pg_type
            WHERE typnamespace = 'public'::regnamespace AND typname NOT LIKE '%sqlx_migrations%'
          UNION ALL
            SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid)) FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace AND conname NOT LIKE '%sqlx_migrations%'
        ), tables AS (
            SELECT relname FROM pg_class
            WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
              AND relname NOT LIKE '%sqlx_migrations%'
        )
        SELECT format('%s objects, %s rows, md5 %s',
            (SELECT count(*) FROM objects),
            (SELECT coalesce(sum((xpath('/row/n/text()', query_to_xml(
                format('SELECT count(*) AS n FROM public.%I', relname), false, true, ''
             )))[1]::text::bigint), 0) FROM tables),
            (SELECT md5(coalesce(string_agg(d, E'\n' ORDER BY d), '')) FROM objects))";
    Ok(client.query_one(SQL, &[])?.get(0))
}

// ---------------------------------------------------------------------------------------------------
// Report

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[middle - 1] + sorted[middle]) / 2 } else { sorted[middle] }
}

fn ms(time: Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1000.0)
}

/// The ratio column and the target column of a case.
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

fn print_machine(server: &Server) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut client = server.client("postgres")?;
    let row = client.query_one(
        "SELECT current_setting('server_version'), current_setting('fsync'), \
         current_setting('synchronous_commit'), current_setting('shared_buffers'), \
         (SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules)",
        &[],
    )?;
    let (version, fsync, sync_commit, buffers, auth): (String, String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    println!(
        "machine: {cpus} cpus ({model}), Linux {}; PostgreSQL {version} (fsync={fsync}, \
         synchronous_commit={sync_commit}, shared_buffers={buffers}, auth {auth}) on 127.0.0.1:{}, \
         data in {}; load average {}",
        kernel.trim(),
        server.port,
        server.data().display(),
        load_average()
    );
    Ok(())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
