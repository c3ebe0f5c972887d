//! The command line, parsed once into typed options (lexopt: a fraction of clap's compile time).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, bail};
use lexopt::prelude::*;

pub struct Args {
    pub branch: Option<String>,
    pub provision: bool,
    pub command: Command,
}

pub enum Command {
    Help {
        topic: Option<String>,
    },
    DbUp,
    DbDown,
    DbStatus {
        json: bool,
    },
    DbEndpoint {
        db: Option<String>,
    },
    /// `setup [--from BRANCH]`.
    Setup {
        from: Option<String>,
    },
    Wipe {
        db: Option<String>,
        force: bool,
        /// `--backup`: dump each database before dropping it.
        backup: bool,
    },
    Teardown {
        force: bool,
        /// On the external engine, every developer's databases, not only the caller's.
        all_developers: bool,
    },
    Backup {
        db: Option<String>,
    },
    Restore {
        file: PathBuf,
        db: Option<String>,
        force: bool,
    },
    Connect {
        db: Option<String>,
        psql_args: Vec<OsString>,
    },
    Migrate {
        db: Option<String>,
        options: MigrateOptions,
        json: bool,
    },
    Rollback {
        db: Option<String>,
        steps: usize,
    },
    Migrations {
        db: Option<String>,
        json: bool,
    },
    Prepare {
        db: Option<String>,
        message: String,
        manual: bool,
    },
    /// `schema --check` (write: false) or `schema --write`; `live`: `--check --live`.
    Schema {
        db: Option<String>,
        write: bool,
        live: bool,
    },
    Seed {
        db: Option<String>,
    },
    /// `pre-commit [--staged]`.
    PreCommit {
        staged: bool,
    },
    /// `hooks install` (install: true) or `hooks uninstall`.
    Hooks {
        install: bool,
    },
    Ci {
        json: bool,
        /// Also the long cases of the test suite (the `#[ignore]`d fault and load tests).
        long: bool,
    },
    Branches {
        json: bool,
        all_developers: bool,
    },
    Prune {
        dry_run: bool,
        force: bool,
        all_developers: bool,
    },
    /// `binaries [MAJOR]`: the managed binaries' folders, fetched when absent.
    Binaries {
        major: Option<u32>,
    },
}

pub use crate::tasks::migrate::MigrateOptions;

pub const HELP: &str = "\
cargo xtask: this workspace's local PostgreSQL (and Redis), one set of databases per git branch

USAGE:
    cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
    setup         servers up; each service's role, database, extensions, migrations, seeds, Redis user; .env
    wipe          drop this branch's databases and Redis users with their keys (the servers keep running)
    teardown      remove the servers and every database, role and Redis user of the project, all branches
    backup        pg_dump this branch's databases into backups/ (--db NAME)
    restore       restore a backup FILE into this branch's database, backing up what is there first
    db-up         start the project's server and Redis (create them if absent); idempotent
    db-down       stop the servers; their data is kept
    db-status     engine, server state, endpoint, branch, this branch's databases and Redis users
    db-endpoint   print the URL of this branch's database (one line, for scripts; --db NAME)
    connect       psql on this branch's database as its service's role (--db NAME)
    migrate       apply pending migrations (--check: fail if any are pending; --dry-run)
    rollback      run the down files of the newest applied migrations (--steps N)
    migrations    every migration with its state: applied, pending, modified, missing
    prepare       write the next migration pair, generated from migrations/<db>/schema.sql
    schema        --check: the migrations produce schema.sql exactly; --write: schema.sql from them
    seed          load seeds/<db>/*.sql again, in one transaction
    pre-commit    the checks worth running on every commit (--staged: what is staged; the git hook)
    hooks         install / uninstall: the git pre-commit hook, for every worktree
    ci            the whole pipeline on databases of its own: setup, downs, schema, fmt, tests, clippy
    branches      every database of the project: branch, size, age, last write, branch still in git?
    prune         drop the databases and Redis users of branches gone from git (--dry-run: only list)
    binaries      download a PostgreSQL major's server and client tools (no root) and print their folders
    help          this text, or `cargo xtask help <COMMAND>`

OPTIONS (every command):
    --branch NAME   act for another branch (also XTASK_BRANCH)
    -h, --help      help for the command

Configuration: [workspace.metadata.xtask] in Cargo.toml, or XTASK_* variables (see README.md).
";

fn command_help(name: &str) -> Option<&'static str> {
    Some(match name {
        "setup" => {
            "\
cargo xtask setup [--from BRANCH] [--provision] [--branch NAME]

Starts the server (creating it when absent), then for each service's database: makes its login role
(once per project; password kept 0600 in the data directory), creates this branch's database owned by
that role with CONNECT revoked from PUBLIC (labelled with project, database, branch and time), enables
the declared extensions, applies pending migrations and, for a new database, loads the seeds, both as
the role. Writes DATABASE_URL and <SERVICE>_DATABASE_URL for this branch into .env, keeping every other
line. A second run changes nothing and says so.

A missing database is copied (CREATE DATABASE ... TEMPLATE) from a pristine template: the migrations
this branch shares with the default branch, applied once, and the seeds; then only the branch's own
migrations are applied. A template is named <database>__tpl_<hash> after a hash of its migrations,
seeds, extensions and role, built on first need and replaced when they change; nobody connects to it.
Tests copy theirs from the branch's template (services/testdb), named in .env as
<SERVICE>_TEMPLATE_DATABASE with XTASK_ADMIN_URL. `templates = false` (or XTASK_TEMPLATES=0) turns
templates off: databases are then migrated from empty.

With Redis (`redis = true` in a service's [package.metadata.xtask], or in the workspace's), also
starts the project's Redis server on the same engine and gives each service on this branch an ACL
user confined to its key prefix; writes REDIS_URL, REDIS_PREFIX, <SERVICE>_REDIS_URL and
<SERVICE>_REDIS_PREFIX (see the README's Redis section).

--from BRANCH: copy BRANCH's databases, data included, instead of starting from the template. Refused
while anyone is connected to them (the sessions are named), and when this branch has its databases
already (wipe them first; `wipe --backup` keeps a copy).

--provision: when no Docker engine answers and no PostgreSQL server binaries are found, install them
(apt-get install postgresql, as root on Debian/Ubuntu) instead of stopping with what to install; the
same for redis-server when a service uses Redis on the native engine."
        }
        "wipe" => {
            "\
cargo xtask wipe [--db NAME] [--backup] [--force] [--branch NAME]

Drops this branch's databases (or only --db NAME), ending their open connections first. Only databases
carrying this project's label are dropped; the server keeps running. Without --db, this branch's Redis
users go too, their connections closed, then their keys. On an external server that is not on this
machine, --force is required.

--backup   first back up each database that exists, as `cargo xtask backup` does; when a backup
           fails, nothing is dropped"
        }
        "teardown" => {
            "\
cargo xtask teardown [--force] [--all-developers] [--branch NAME]

Removes the server and every database of the project, on all branches: docker removes the container and
its volume; native stops the cluster and deletes its data directory; external drops the caller's
databases labelled with this project, and its roles once no other developer's remain (--force is
required when the host is not this machine; --all-developers drops every developer's and the shared
branches' too). The roles' saved passwords are deleted with the roles. The Redis server goes with its
data (external: the project's Redis users and their keys, nothing else)."
        }
        "backup" => {
            "\
cargo xtask backup [--db NAME] [--branch NAME]

Writes each of this branch's databases (or only --db NAME) with pg_dump --format=custom, as the admin
user, to backups/<db>--<branch>--<UTC YYYYMMDDTHHMMSSZ>.dump under the workspace root (a later backup
in the same second gets -2, -3, ...), and prints each path on stdout, with the size on stderr.
backups/ gets a .gitignore of its own, so git ignores it. The file appears only once the dump
succeeded. pg_dump runs inside the container for docker and from the cluster's own binaries for
native, so its version matches the server; for an external server it is the newest pg_dump on this
machine, which must not be older than the server. The password reaches pg_dump in its environment."
        }
        "restore" => {
            "\
cargo xtask restore FILE [--db NAME] [--force] [--branch NAME]

Restores FILE (written by `cargo xtask backup`, or any pg_dump --format=custom archive) into this
branch's database: --db NAME, else the database FILE's name starts with (<db>--...), else the default
one. First the current database, when it exists, is backed up (its path is printed). The archive is
restored with pg_restore --single-transaction --exit-on-error into a new database made and labelled
like a branch database, keeping the owners of its objects (the project's roles: run setup first); only
when that succeeded is the current database dropped (its connections are ended) and the new one
renamed into its place. When the restore fails, the current database is untouched and pg_restore's
message is shown. A FILE that is missing or is not a custom-format archive changes nothing. On an
external server that is not on this machine, --force is required."
        }
        "db-up" => {
            "\
cargo xtask db-up [--provision] [--branch NAME]

Starts the project's server, creating it when absent, and returns once it accepts connections over TCP.
Running it again does nothing. --provision: as for setup."
        }
        "db-down" => {
            "\
cargo xtask db-down

Stops the server and keeps its data: docker removes the container and keeps its named volume; native
stops the cluster. The external engine has nothing to stop."
        }
        "db-status" => {
            "\
cargo xtask db-status [--json] [--branch NAME]

Prints the engine, the server's state, its endpoint (password redacted), the current branch and this
branch's databases (whether they exist, their size). --json prints one JSON object instead."
        }
        "db-endpoint" => {
            "\
cargo xtask db-endpoint [--db NAME] [--branch NAME]

Prints exactly one line on stdout: the URL of this branch's database (the default one, or service
NAME's), with its role's password; no other command prints a password. For example
    export DATABASE_URL=$(cargo xtask db-endpoint)
    export NOTES_DATABASE_URL=$(cargo xtask db-endpoint --db notes)"
        }
        "connect" => {
            "\
cargo xtask connect [--db NAME] [--branch NAME] [-- PSQL ARGS...]

Runs psql on this branch's database (--db NAME: a service's) as that service's login role, which sees
what the service sees, with the terminal handed over; arguments after -- go to psql. The password
travels in psql's environment, never on its command line."
        }
        "migrate" => {
            "\
cargo xtask migrate [--db NAME] [--check] [--dry-run] [--allow-out-of-order] [--json] [--branch NAME]

Applies every pending migration of this branch's database(s) in version order, each in its own
transaction together with its record in _sqlx_migrations (sqlx's table, so sqlx sees the same state).
Refused, naming file and version: an applied file that changed, an applied migration whose file is
gone, a pending file older than the newest applied one (unless --allow-out-of-order). A file whose
first line is `-- no-transaction` runs outside a transaction (CREATE INDEX CONCURRENTLY).

--check      change nothing; exit 1 listing what is pending, modified or missing; silent exit 0 otherwise
--dry-run    print what would be applied; change nothing
--json       print {\"<db>\": {outcome, applied, pending, problems}} on stdout (see README.md)"
        }
        "rollback" => {
            "\
cargo xtask rollback [--db NAME] [--steps N] [--branch NAME]

Runs the down files of the newest N applied migrations (default 1), newest first, each in a
transaction with the removal of its record. Refuses before changing anything when a down file is
missing or an up file changed since it was applied."
        }
        "migrations" => {
            "\
cargo xtask migrations [--db NAME] [--json] [--branch NAME]

Lists every migration with its state (applied, pending, modified, missing, out-of-order, dirty) and
when it was applied. --json prints {\"<db>\": [{version, description, state, file, installed_on}]}."
        }
        "prepare" => {
            "\
cargo xtask prepare \"MESSAGE\" [--db NAME] [--manual]

Writes migrations/<db>/<UTC YYYYMMDDHHMMSS>_<message>.up.sql and .down.sql and prints their paths.

When migrations/<db>/schema.sql declares the schema (plain PostgreSQL DDL, the whole schema as it
should be), the files are generated: the migrations and schema.sql are each built in a throwaway
database on the project's server, both are read from the system catalogs, and the up holds the
statements from the migrations' schema to the declared one, the down the way back, in dependency
order. Statements that lose data (DROP TABLE, DROP COLUMN, a narrowing type change, an enum value
removed) carry a `-- DESTRUCTIVE:` comment; a dropped and an added column of the same type carry a
`-- REVIEW:` comment showing the RENAME that may have been meant. Both files are tried on a copy
before they are written. With no difference, nothing is written. Without --db, every database with
a schema.sql is looked at. The throwaway databases are dropped afterwards, also on error or Ctrl-C.

Covered: schemas, extensions (versions), collations, enum types, sequences, tables, columns (type,
collation, nullability, default, identity and its options, generated), primary key, unique, check,
foreign key and exclusion constraints, indexes, partitioned tables and partitions (attached,
detached, keys and indexes attached by name), inheritance, row-level security and policies, replica
identity, grants and default privileges, views, materialized views, functions, procedures,
triggers, comments. Other kinds are compared by definition (domains, aggregates, operators, casts,
statistics, text search, event triggers, publications, foreign tables...) and stop prepare with
their names when they differ; a kind whose definition is not read is refused.

--manual   write empty files to fill in by hand (also what happens without a schema.sql)"
        }
        "schema" => {
            "\
cargo xtask schema --check [--db NAME]
cargo xtask schema --write [--db NAME]

--check  builds the migrations and migrations/<db>/schema.sql in throwaway databases and compares
         their catalogs; exits 1 printing the SQL a migration would need when they differ. Without
         --db, every database with a schema.sql.
--check --live
         compares this branch's database itself with what its applied migrations make (built in a
         throwaway database), to find changes made by hand (a column added in psql); exits 1
         listing them with the SQL that would remove them. Needs no schema.sql; without --db,
         every database. The grants setup makes for `reads` are its own and not compared.
         db-status and pre-commit mention drift cheaply, by a fingerprint of the catalogs kept
         when this tool migrates.
--write  rewrites schema.sql from what the migrations produce, for projects that prefer to write
         migrations and keep the schema file as a record (checked to rebuild the same schema)."
        }
        "seed" => {
            "\
cargo xtask seed [--db NAME] [--branch NAME]

Runs seeds/<db>/*.sql in name order in one transaction (seeds should be idempotent, e.g.
INSERT ... ON CONFLICT DO NOTHING). setup runs them once for databases it creates."
        }
        "pre-commit" => {
            "\
cargo xtask pre-commit [--staged]

The checks worth running on every commit, each reported on one line:
  names     migration files well named, versions unique, every down with its up
  history   no migration the branch started from (on main, or master) changed or deleted, and each
            migration added newer than the default branch's newest
  applied   no migration applied to this branch's database changed or removed
  downs     each new migration's down undoes its up: applied, rolled back and applied again in a
            throwaway database, comparing the catalog after every step
  schema    the migrations produce migrations/<db>/schema.sql, where there is one
  fmt       cargo fmt --check
The database checks (applied, downs, schema) start the server when it is down. Exits 1 when any check
fails.

--staged   check what is staged, not the working tree (the git hook passes it): the staged
           migrations, rustfmt on the staged text of the staged .rs files; the database checks run
           only when the commit changes something under migrations/"
        }
        "hooks" => {
            "\
cargo xtask hooks install
cargo xtask hooks uninstall

install writes the git pre-commit hook, which runs `cargo xtask pre-commit --staged`, into the
repository's common git directory (core.hooksPath when set), so every worktree runs it. Running it
again changes nothing; a pre-commit hook this tool did not write is left alone, with a message.
uninstall removes the hook only when this tool wrote it. Teams using the pre-commit framework can use
.pre-commit-config.yaml instead."
        }
        "ci" => {
            "\
cargo xtask ci [--provision] [--long] [--json]

The whole pipeline, on databases of its own named for the CI run (ci-<run id>-<random>), never a
developer's branch databases. Steps, in order:
  prerequisites  server binaries, a Docker engine and the test image, as the engine and
                 [workspace.metadata.xtask.ci] need them
  db-up, setup   the server, and the run's databases with roles, extensions, migrations, seeds
  migrations     names and history, as pre-commit checks them
  downs          every migration's down, by a round trip in a throwaway database
  schema         the migrations produce each schema.sql
  fmt, tests     cargo fmt --check; cargo test --workspace --locked with <DB>_DATABASE_URL set to
                 the run's databases (--long: `-- --include-ignored`, the long fault and load cases)
  clippy         cargo clippy --workspace --all-targets --locked -- -D warnings
  teardown       drops the run's databases, stops what the run started; runs whatever failed
A step whose prerequisite step failed is reported as not run. Prints a table of steps, their status
and duration (--json: one JSON object, see README.md); exits 1 when any step failed.

--provision   install what is missing (apt packages, starting dockerd, building the test image), as
              root on Debian; CI=true implies it. Without it a missing prerequisite fails its step
              with the command that would provide it."
        }
        "branches" => {
            "\
cargo xtask branches [--json] [--all-developers]

Lists every database on the server labelled for this project, templates apart: its branch, whether
that branch still exists in git, the logical database, name, size, when it was created (from its
label), its last write and the clients connected now. The current branch and the default branches
are marked, and so is what `prune` would drop.

A branch exists when it is a local branch, a remote-tracking branch of any remote (as of the last
`git fetch`), checked out in a worktree (a detached one by its short commit), or the branch this run
acts for (--branch, XTASK_BRANCH). Outside a git repository that is unknown.

\"last write\" is the newest modification time of the database's files on the server: PostgreSQL
keeps no time of last use. Writes reach the files at the next checkpoint (minutes later at most),
reading leaves no trace; it needs an admin user that may read the server's files (a superuser),
else it shows `-`. \"connected\" counts the client sessions on the database now.

On the external engine it lists the caller's databases and the shared branches' (see README.md,
\"Developers on one server\"); --all-developers lists every developer's.

--json   print one JSON object instead (see README.md)"
        }
        "prune" => {
            "\
cargo xtask prune [--dry-run] [--force] [--all-developers]

Drops the databases of this project whose branch no longer exists in git: no local branch, no
remote-tracking branch (run `git fetch --prune` first to forget branches deleted on the remote),
not checked out in any worktree, and not the branch this run acts for. The default branches' are
never dropped, and only databases carrying this project's label (templates labelled with a gone
branch included); nothing else on the server is touched. The list (name, branch, size) is printed
first. A database that clients are connected to is kept and named. Needs a git repository.

On the external engine only the caller's own databases are judged (another developer's branches are
in their clone); --all-developers judges every developer's by this clone's branches.

--dry-run  print the list; drop nothing
--force    required on an external server that is not on this machine (not with --dry-run)"
        }
        "binaries" => {
            "\
cargo xtask binaries [MAJOR]

Makes sure the cache of downloaded PostgreSQL binaries holds MAJOR's server (default: the pinned
`postgres`, else 17) and the client tools (psql, pg_dump, pg_restore of PostgreSQL 18, which serve
every older server), downloading and verifying what is missing, and prints two lines for scripts:
    server <major> <bin folder>
    clients <major> <bin folder>
The native engine uses these when the machine has no server of the pinned major; run this to fetch
them ahead of time (before going offline, in an image build). The cache is ~/.cache/xtask/postgres
(/var/cache/xtask/postgres as root; XTASK_POSTGRES_CACHE overrides it); see README.md."
        }
        _ => return None,
    })
}

const COMMANDS: &[&str] = &[
    "setup",
    "wipe",
    "teardown",
    "backup",
    "restore",
    "db-up",
    "db-down",
    "db-status",
    "db-endpoint",
    "connect",
    "migrate",
    "rollback",
    "migrations",
    "prepare",
    "schema",
    "seed",
    "pre-commit",
    "hooks",
    "ci",
    "branches",
    "prune",
    "binaries",
    "help",
];
const OPTIONS: &[&str] = &[
    "help",
    "branch",
    "db",
    "from",
    "long",
    "all-developers",
    "json",
    "force",
    "provision",
    "check",
    "manual",
    "write",
    "live",
    "staged",
    "backup",
    "dry-run",
    "allow-out-of-order",
    "steps",
];

/// `; did you mean `x`?` for the known word nearest to `given` (at most a third of it
/// misspelt), else the way to the list.
fn nearest(given: &str, known: &[&str], prefix: &str) -> String {
    let best = known
        .iter()
        .map(|word| (strsim::damerau_levenshtein(given, word), *word))
        .filter(|(distance, word)| *distance <= (word.len() / 3).max(1))
        .min();
    match best {
        Some((_, word)) => format!("; did you mean `{prefix}{word}`?"),
        None => "; run `cargo xtask help` for the list".to_owned(),
    }
}

pub fn help_text(topic: Option<&str>) -> Result<&'static str> {
    match topic {
        None => Ok(HELP),
        Some(name) => match command_help(name) {
            Some(text) => Ok(text),
            None => bail!("unknown command `{name}`; run `cargo xtask help` for the list"),
        },
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut name: Option<String> = None;
    let mut branch = None;
    let mut db = None;
    let (mut json, mut force, mut help, mut provision) = (false, false, false, false);
    let (mut manual, mut write, mut staged) = (false, false, false);
    let (mut backup, mut live) = (false, false);
    let mut file: Option<PathBuf> = None;
    let mut options = MigrateOptions::default();
    let mut steps: Option<usize> = None;
    let mut from: Option<String> = None;
    let mut long = false;
    let mut all_developers = false;
    let mut positional: Vec<String> = Vec::new();
    let mut psql_args: Vec<OsString> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => help = true,
            Long("branch") => branch = Some(parser.value()?.string()?),
            Long("db") => db = Some(parser.value()?.string()?),
            Long("from") => from = Some(parser.value()?.string()?),
            Long("long") => long = true,
            Long("all-developers") => all_developers = true,
            Long("json") => json = true,
            Long("force") => force = true,
            Long("provision") => provision = true,
            Long("check") => options.check = true,
            Long("manual") => manual = true,
            Long("write") => write = true,
            Long("live") => live = true,
            Long("staged") => staged = true,
            Long("backup") => backup = true,
            Long("dry-run") => options.dry_run = true,
            Long("allow-out-of-order") => options.allow_out_of_order = true,
            Long("steps") => {
                let text = parser.value()?.string()?;
                steps = Some(text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("--steps {text:?}: expected a positive number of migrations")
                })?);
            }
            Value(value) if name.is_none() => name = Some(value.string()?),
            Value(value) if name.as_deref() == Some("connect") => psql_args.push(value),
            Value(value) if name.as_deref() == Some("restore") && file.is_none() => {
                file = Some(PathBuf::from(value))
            }
            Value(value) => positional.push(value.string()?),
            Long(option) => {
                let option = option.to_owned();
                bail!("unknown option `--{option}`{}", nearest(&option, OPTIONS, "--"))
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let Some(name) = name else {
        return Ok(Args { branch, provision, command: Command::Help { topic: None } });
    };
    if help || name == "help" {
        let topic = if name == "help" { positional.pop() } else { Some(name) };
        return Ok(Args { branch, provision, command: Command::Help { topic } });
    }
    let message = if name == "prepare" { positional.drain(..).reduce(|a, b| a + " " + &b) } else { None };
    let hooks_action =
        if name == "hooks" && !positional.is_empty() { Some(positional.remove(0)) } else { None };
    let major = match (name.as_str(), positional.is_empty()) {
        ("binaries", false) => {
            Some(crate::config::parse_major(&positional.remove(0)).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    if let Some(extra) = positional.first() {
        bail!("unexpected argument `{extra}` for `{name}`; see `cargo xtask {name} --help`");
    }
    let command = match name.as_str() {
        "db-up" => Command::DbUp,
        "db-down" => Command::DbDown,
        "db-status" => Command::DbStatus { json },
        "db-endpoint" => Command::DbEndpoint { db: db.take() },
        "setup" => Command::Setup { from: from.take() },
        "wipe" => Command::Wipe { db: db.take(), force, backup },
        "teardown" => Command::Teardown { force, all_developers: std::mem::take(&mut all_developers) },
        "backup" => Command::Backup { db: db.take() },
        "restore" => Command::Restore {
            file: file.take().ok_or_else(|| {
                anyhow::anyhow!("restore needs the backup file: cargo xtask restore backups/<file>.dump")
            })?,
            db: db.take(),
            force,
        },
        "migrate" => Command::Migrate { db: db.take(), options, json },
        "rollback" => Command::Rollback { db: db.take(), steps: steps.take().unwrap_or(1) },
        "migrations" => Command::Migrations { db: db.take(), json },
        "prepare" => Command::Prepare {
            db: db.take(),
            message: message.ok_or_else(|| {
                anyhow::anyhow!("prepare needs a description: cargo xtask prepare \"add users\"")
            })?,
            manual,
        },
        "schema" => {
            if options.check == write {
                bail!("schema takes one of --check or --write; see `cargo xtask schema --help`");
            }
            if live && write {
                bail!("--live goes with --check: `cargo xtask schema --check --live`");
            }
            options.check = false;
            Command::Schema { db: db.take(), write, live: std::mem::take(&mut live) }
        }
        "seed" => Command::Seed { db: db.take() },
        "pre-commit" => Command::PreCommit { staged },
        "hooks" => match hooks_action.as_deref() {
            Some("install") => Command::Hooks { install: true },
            Some("uninstall") => Command::Hooks { install: false },
            _ => bail!("hooks takes `install` or `uninstall`; see `cargo xtask hooks --help`"),
        },
        "ci" => Command::Ci { json, long: std::mem::take(&mut long) },
        "branches" => Command::Branches { json, all_developers: std::mem::take(&mut all_developers) },
        "prune" => Command::Prune {
            dry_run: std::mem::take(&mut options.dry_run),
            force,
            all_developers: std::mem::take(&mut all_developers),
        },
        "connect" => Command::Connect { db: db.take(), psql_args },
        "binaries" => Command::Binaries { major },
        other => bail!("unknown command `{other}`{}", nearest(other, COMMANDS, "")),
    };
    reject_unused(&name, &command, db.is_some(), json, force)?;
    if manual && !matches!(command, Command::Prepare { .. }) {
        bail!("`{name}` does not take --manual; see `cargo xtask {name} --help`");
    }
    if write && !matches!(command, Command::Schema { .. }) {
        bail!("`{name}` does not take --write; see `cargo xtask {name} --help`");
    }
    if live {
        bail!("`{name}` does not take --live; see `cargo xtask {name} --help`");
    }
    if backup && !matches!(command, Command::Wipe { .. }) {
        bail!("`{name}` does not take --backup; see `cargo xtask {name} --help`");
    }
    if staged && !matches!(command, Command::PreCommit { .. }) {
        bail!("`{name}` does not take --staged; see `cargo xtask {name} --help`");
    }
    let migrate_flags = options.check || options.dry_run || options.allow_out_of_order;
    if migrate_flags && !matches!(command, Command::Migrate { .. }) {
        bail!("`{name}` does not take --check, --dry-run or --allow-out-of-order");
    }
    if options.check && options.dry_run {
        bail!("--check and --dry-run do not go together: --check already changes nothing");
    }
    if steps.is_some() {
        bail!("`{name}` does not take --steps");
    }
    if from.is_some() {
        bail!("`{name}` does not take --from; see `cargo xtask {name} --help`");
    }
    if long {
        bail!("`{name}` does not take --long; see `cargo xtask {name} --help`");
    }
    if all_developers {
        bail!("`{name}` does not take --all-developers; see `cargo xtask {name} --help`");
    }
    if provision && !matches!(command, Command::Setup { .. } | Command::DbUp | Command::Ci { .. }) {
        bail!("`{name}` does not take --provision; see `cargo xtask {name} --help`");
    }
    Ok(Args { branch, provision, command })
}

fn reject_unused(name: &str, command: &Command, db: bool, json: bool, force: bool) -> Result<()> {
    let takes_json = matches!(
        command,
        Command::DbStatus { .. }
            | Command::Migrations { .. }
            | Command::Migrate { .. }
            | Command::Ci { .. }
            | Command::Branches { .. }
    );
    let takes_force = matches!(
        command,
        Command::Wipe { .. } | Command::Teardown { .. } | Command::Prune { .. } | Command::Restore { .. }
    );
    for (given, allowed, flag) in
        [(db, false, "--db"), (json, takes_json, "--json"), (force, takes_force, "--force")]
    {
        if given && !allowed {
            bail!("`{name}` does not take {flag}; see `cargo xtask {name} --help`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Args> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn a_misspelt_command_or_option_gets_the_nearest() {
        let error = |args: &[&str]| parse_str(args).err().unwrap().to_string();
        assert!(error(&["migrat"]).ends_with("did you mean `migrate`?"), "{}", error(&["migrat"]));
        assert!(error(&["migrate", "--dryrun"]).ends_with("did you mean `--dry-run`?"));
        assert!(error(&["db-stauts"]).ends_with("did you mean `db-status`?"));
        assert!(error(&["frobnicate"]).ends_with("run `cargo xtask help` for the list"));
        assert!(error(&["setup", "--xyzzy"]).ends_with("run `cargo xtask help` for the list"));
    }

    #[test]
    fn binaries_takes_a_supported_major() {
        assert!(matches!(
            parse_str(&["binaries", "18"]).unwrap().command,
            Command::Binaries { major: Some(18) }
        ));
        assert!(matches!(parse_str(&["binaries"]).unwrap().command, Command::Binaries { major: None }));
        let error = parse_str(&["binaries", "19"]).err().unwrap();
        assert!(error.to_string().contains("expected one of 14..18"), "{error}");
        assert!(parse_str(&["binaries", "18", "--db", "x"]).is_err());
    }

    #[test]
    fn commands_and_options() {
        let a = parse_str(&["wipe", "--db", "app", "--branch", "feat/x", "--force"]).unwrap();
        assert!(
            matches!(a.command, Command::Wipe { db: Some(ref d), force: true, backup: false } if d == "app")
        );
        assert_eq!(a.branch.as_deref(), Some("feat/x"));
        assert!(matches!(
            parse_str(&["db-status", "--json"]).unwrap().command,
            Command::DbStatus { json: true }
        ));
        assert!(matches!(parse_str(&[]).unwrap().command, Command::Help { topic: None }));
        assert!(matches!(parse_str(&["setup", "--help"]).unwrap().command, Command::Help { topic: Some(_) }));
    }

    #[test]
    fn backup_restore_and_wipe_backup() {
        assert!(matches!(
            parse_str(&["backup", "--db", "shop"]).unwrap().command,
            Command::Backup { db: Some(ref d) } if d == "shop"
        ));
        assert!(matches!(
            parse_str(&["wipe", "--backup"]).unwrap().command,
            Command::Wipe { backup: true, .. }
        ));
        let a = parse_str(&["restore", "backups/shop--main--20260101T000000Z.dump", "--force"]).unwrap();
        let Command::Restore { file, db: None, force: true } = a.command else { panic!() };
        assert_eq!(file, PathBuf::from("backups/shop--main--20260101T000000Z.dump"));
        for args in [
            &["restore"][..],
            &["restore", "a.dump", "b.dump"],
            &["backup", "--force"],
            &["backup", "extra"],
            &["setup", "--backup"],
            &["restore", "a.dump", "--backup"],
        ] {
            assert!(parse_str(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn connect_passes_arguments_after_separator() {
        let a = parse_str(&["connect", "--", "-c", "select 1", "--branch"]).unwrap();
        let Command::Connect { psql_args, .. } = a.command else { panic!() };
        assert_eq!(psql_args, ["-c", "select 1", "--branch"]);
    }

    #[test]
    fn bad_input_is_an_error() {
        for args in [
            &["frobnicate"][..],
            &["setup", "--json"],
            &["db-up", "--db", "x"],
            &["setup", "extra"],
            &["setup", "--bogus"],
            &["setup", "--branch"],
        ] {
            assert!(parse_str(args).is_err(), "{args:?}");
        }
        assert!(help_text(Some("nope")).is_err());
        assert!(parse_str(&["schema"]).is_err());
        assert!(matches!(
            parse_str(&["hooks", "install"]).unwrap().command,
            Command::Hooks { install: true }
        ));
        assert!(matches!(
            parse_str(&["hooks", "uninstall"]).unwrap().command,
            Command::Hooks { install: false }
        ));
        assert!(parse_str(&["hooks"]).is_err());
        assert!(matches!(
            parse_str(&["prune", "--dry-run", "--force"]).unwrap().command,
            Command::Prune { dry_run: true, force: true, all_developers: false }
        ));
        assert!(matches!(
            parse_str(&["branches", "--json"]).unwrap().command,
            Command::Branches { json: true, all_developers: false }
        ));
        assert!(parse_str(&["branches", "--dry-run"]).is_err());
        assert!(parse_str(&["prune", "--json"]).is_err());
        assert!(parse_str(&["hooks", "reinstall"]).is_err());
        assert!(matches!(
            parse_str(&["pre-commit", "--staged"]).unwrap().command,
            Command::PreCommit { staged: true }
        ));
        assert!(parse_str(&["setup", "--staged"]).is_err());
        assert!(matches!(
            parse_str(&["ci", "--json", "--provision"]).unwrap(),
            Args { provision: true, command: Command::Ci { json: true, long: false }, .. }
        ));
        assert!(matches!(
            parse_str(&["ci", "--long"]).unwrap().command,
            Command::Ci { json: false, long: true }
        ));
        assert!(parse_str(&["setup", "--long"]).is_err());
        assert!(parse_str(&["schema", "--check", "--write"]).is_err());
        assert!(parse_str(&["migrate", "--manual"]).is_err());
        assert!(matches!(
            parse_str(&["schema", "--check"]).unwrap().command,
            Command::Schema { write: false, db: None, live: false }
        ));
        assert!(matches!(
            parse_str(&["prepare", "--manual", "add", "users"]).unwrap().command,
            Command::Prepare { manual: true, ref message, .. } if message == "add users"
        ));
        for name in COMMANDS.iter().filter(|c| **c != "help") {
            assert!(help_text(Some(name)).is_ok(), "{name}");
            assert!(HELP.contains(name), "{name}");
        }
    }
}
