//! What the benchmarks share: settings from the environment, subprocesses, a private PostgreSQL
//! cluster, and the generated migrations (a realistic schema of N migrations).
//!
//! Each bench binary uses a part of it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub const PROJECT: &str = "bench";
pub const PASSWORD: &str = "postgres";
pub const WORKSPACE_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");

// ---------------------------------------------------------------------------------------------------
// Settings

pub struct Settings {
    pub n: usize,
    pub runs: usize,
    pub bindir: PathBuf,
    pub keep: bool,
    pub auth: String,
}

impl Settings {
    pub fn from_env() -> Result<Settings> {
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

pub fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text:?}: expected a whole number")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------------------
// Subprocesses

/// Runs a command to completion; an error carries `what`, the exit status and the command's stderr.
pub fn run(command: &mut Command, what: &str) -> Result<Output> {
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
pub fn timed(command: &mut Command, what: &str) -> Result<Duration> {
    let start = Instant::now();
    run(command, what)?;
    Ok(start.elapsed())
}

/// Removes what `cargo bench` adds to the environment of this process, so children see a user's shell.
pub fn user_env(command: &mut Command) -> &mut Command {
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
pub fn build_xtask() -> Result<PathBuf> {
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
pub struct Server {
    pub bindir: PathBuf,
    pub dir: tempfile::TempDir,
    /// The unprivileged user the server runs as when we are root (PostgreSQL refuses to run as root).
    pub owner: Option<(u32, u32)>,
    pub port: u16,
    pub running: bool,
    /// BENCH_KEEP: leave it running and its directory in place.
    pub keep: bool,
}

impl Server {
    pub fn start(settings: &Settings) -> Result<Server> {
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

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program, run as the cluster's owner.
    pub fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bindir.join(name));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    pub fn prepare_directory(&self) -> Result<()> {
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

    pub fn initdb(&self, auth: &str) -> Result<()> {
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
    pub fn configure(&self) -> Result<()> {
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

    pub fn pg_ctl_start(&mut self) -> Result<()> {
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

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    pub fn client(&self, database: &str) -> Result<postgres::Client> {
        let params =
            format!("host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname={database}", self.port);
        postgres::Client::connect(&params, postgres::NoTls)
            .with_context(|| format!("connect to database {database}"))
    }

    pub fn admin(&self, sql: &str) -> Result<()> {
        self.client("postgres")?.batch_execute(sql).with_context(|| format!("run {sql}"))
    }

    pub fn create_database(&self, name: &str) -> Result<()> {
        self.admin(&format!("CREATE DATABASE \"{name}\""))
    }

    /// An empty database for `branch`, labelled the way `xtask setup` labels the databases it creates.
    pub fn create_branch_database(&self, branch: &str) -> Result<()> {
        let name = branch_database(branch);
        self.create_database(&name)?;
        self.admin(&format!(
            "COMMENT ON DATABASE \"{name}\" IS '{{\"tool\":\"xtask\",\"project\":\"{PROJECT}\",\
             \"database\":\"{PROJECT}\",\"branch\":\"{branch}\",\"created\":\"2026-01-01T00:00:00Z\"}}'"
        ))
    }

    /// Flushes dirty buffers so each timed run starts from the same state.
    pub fn checkpoint(&self) -> Result<()> {
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
pub fn server_owner() -> Result<Option<(u32, u32)>> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    Ok(Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?)))
}

pub fn id(args: &[&str]) -> Result<u32> {
    let output = run(Command::new("id").args(args), &format!("id {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

pub fn branch_database(branch: &str) -> String {
    format!("{PROJECT}_{branch}")
}

// ---------------------------------------------------------------------------------------------------
// Generated migrations

/// A throwaway Cargo workspace holding the generated migrations, `all.sql` (every up file concatenated
/// in order) and `all_down.sql` (every down file in reverse order).
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub migrations: Vec<Migration>,
}

impl Workspace {
    pub fn generate(n: usize, keep: bool) -> Result<Workspace> {
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

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub struct Migration {
    pub version: String,
    pub slug: String,
    pub up: String,
    pub down: String,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Enum,
    Table,
    Index,
    AddColumn,
    Insert,
}

/// The mix, repeated: 30 % tables, 20 % indexes, 20 % added columns, 20 % inserts, 10 % enum types.
pub const KIND_CYCLE: [Kind; 10] = [
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

pub const NOUNS: [&str; 12] = [
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
pub const COLUMNS: [(&str, &str); 5] = [
    ("note", "text"),
    ("quantity", "integer NOT NULL DEFAULT 0"),
    ("archived", "boolean NOT NULL DEFAULT false"),
    ("due_at", "timestamptz"),
    ("amount", "numeric(12, 2)"),
];

pub fn generate_migrations(n: usize) -> Vec<Migration> {
    let mut generator = Generator { seed: 0x9E37_79B9_7F4A_7C15, tables: Vec::new(), status_type: None };
    (1..=n).map(|number| generator.migration(number)).collect()
}

pub struct Table {
    pub name: String,
    /// Columns worth an index: name, foreign keys, added columns.
    pub columns: Vec<String>,
}

/// Deterministic: the same `n` always gives the same files (a fixed-seed xorshift picks tables).
pub struct Generator {
    pub seed: u64,
    pub tables: Vec<Table>,
    /// The newest enum type, used by the tables created after it.
    pub status_type: Option<String>,
}

impl Generator {
    pub fn migration(&mut self, number: usize) -> Migration {
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

    pub fn create_enum(&mut self, number: usize) -> (String, String, String) {
        let name = format!("status_{number:04}");
        let up = format!("CREATE TYPE {name} AS ENUM ('draft', 'active', 'archived');\n");
        let down = format!("DROP TYPE {name};\n");
        self.status_type = Some(name.clone());
        (format!("create_type_{name}"), up, down)
    }

    pub fn create_table(&mut self, number: usize) -> (String, String, String) {
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
    pub fn pick_parents(&mut self) -> Vec<String> {
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

    pub fn create_index(&mut self, number: usize) -> (String, String, String) {
        let index = self.pick_table();
        let table = &self.tables[index];
        let column = &table.columns[number % table.columns.len()];
        let index = format!("ix_{number:04}_{column}");
        let up = format!("CREATE INDEX {index} ON {} ({column});\n", table.name);
        let slug = format!("index_{}_{column}", table.name);
        (slug, up, format!("DROP INDEX {index};\n"))
    }

    pub fn add_column(&mut self, number: usize) -> (String, String, String) {
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

    pub fn insert_rows(&mut self, number: usize) -> (String, String, String) {
        let index = self.pick_table();
        let table = &self.tables[index].name;
        let names: Vec<String> = (1..=3).map(|row| format!("'row {number}.{row}'")).collect();
        let up = format!("INSERT INTO {table} (name) VALUES ({});\n", names.join("), ("));
        let down = format!("DELETE FROM {table} WHERE name IN ({});\n", names.join(", "));
        (format!("seed_{table}"), up, down)
    }

    /// Any earlier table.
    pub fn pick_table(&mut self) -> usize {
        self.random(self.tables.len())
    }

    /// xorshift64: a number below `bound`.
    pub fn random(&mut self, bound: usize) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % bound as u64) as usize
    }
}

/// `YYYYMMDDHHMMSS`, one second apart from 2024-01-01 00:00:01 on (within January: up to 2.6 million).
pub fn version(number: usize) -> String {
    assert!(number < 31 * 86_400, "too many migrations for January");
    let (day, second) = (number / 86_400, number % 86_400);
    format!("202401{:02}{:02}{:02}{:02}", day + 1, second / 3600, second / 60 % 60, second % 60)
}

// ---------------------------------------------------------------------------------------------------
// Schema and report

/// Objects in the public schema (tables, indexes, sequences, columns, types, constraints) and rows in
/// its tables, leaving out xtask's own bookkeeping: a count, a row count and an md5 of the list.
pub fn fingerprint(client: &mut postgres::Client) -> Result<String> {
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

pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[middle - 1] + sorted[middle]) / 2 } else { sorted[middle] }
}

pub fn ms(time: Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1000.0)
}

/// The ratio column and the target column of a case.
pub fn print_machine(server: &Server) -> Result<()> {
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
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
