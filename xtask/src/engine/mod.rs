//! Where the PostgreSQL server comes from: one trait, three engines, and `auto` choosing between them.

mod admin_password;
mod docker;
mod external;
pub mod identity;
mod native;
mod server_binaries;
mod staged;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::config::EngineKind;
use crate::conn::Endpoint;
use crate::workspace::Ctx;

pub use docker::{output as docker_output, remove_under as remove_containers_under, run as docker};
pub use server_binaries::find_client;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Never created, or removed.
    Absent,
    /// Created, with its data, but not running.
    Stopped,
    Running,
    /// The engine itself cannot be asked (Docker engine down, external server unreachable).
    Unreachable,
}

/// What `db-status` reports about the server.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: ServerState,
    /// One line of engine-specific detail (container state, data directory, last error).
    pub detail: String,
    /// What brings the server back (`run `cargo xtask db-up``); `None` when it runs.
    pub next: Option<String>,
}

impl Status {
    pub fn new(state: ServerState, detail: impl Into<String>, next: Option<&str>) -> Status {
        Status { state, detail: detail.into(), next: next.map(str::to_owned) }
    }
}

/// The recovery when the server's data is kept: start it again.
pub const NEXT_UP: &str = "run `cargo xtask db-up`";
/// The recovery when there is no server, or its data is gone: make it and this branch's databases.
pub const NEXT_SETUP: &str = "run `cargo xtask setup`";

/// What `up` had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpOutcome {
    AlreadyRunning,
    Started,
    Created,
}

impl UpOutcome {
    pub fn describe(self) -> &'static str {
        match self {
            UpOutcome::AlreadyRunning => "already running",
            UpOutcome::Started => "started",
            UpOutcome::Created => "created and started",
        }
    }
}

/// A PostgreSQL client program, run against the project's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProgram {
    Psql,
    PgDump,
    PgRestore,
}

impl ClientProgram {
    pub fn name(self) -> &'static str {
        match self {
            ClientProgram::Psql => "psql",
            ClientProgram::PgDump => "pg_dump",
            ClientProgram::PgRestore => "pg_restore",
        }
    }
}

/// Where a client program runs.
pub enum ClientTool {
    /// A binary on this machine, given the endpoint through libpq's environment.
    Host(PathBuf),
    /// `docker exec -i` into the container: the server's own client, whatever this machine has.
    DockerExec { container: String, program: ClientProgram },
}

impl ClientTool {
    /// The program logged in as `login` on database `db` (libpq's environment), with `args`; stdio
    /// is inherited until the caller redirects it. The password is only ever in the environment:
    /// `docker exec --env PGPASSWORD` without a value hands docker's own variable over.
    /// `terminal`: docker allocates a terminal (an interactive psql).
    pub fn command(&self, login: &Endpoint, db: &str, args: &[OsString], terminal: bool) -> duct::Expression {
        match self {
            ClientTool::Host(path) => {
                let mut command = duct::cmd(path, args);
                for (key, value) in login.libpq_env(db) {
                    command = command.env(key, value);
                }
                command
            }
            ClientTool::DockerExec { container, program } => {
                let mut exec: Vec<OsString> = vec!["exec".into(), if terminal { "-it" } else { "-i" }.into()];
                for setting in [
                    "PGHOST=127.0.0.1".to_owned(),
                    format!("PGUSER={}", login.user),
                    format!("PGDATABASE={db}"),
                    "PGPASSWORD".to_owned(),
                ] {
                    exec.extend(["--env".into(), setting.into()]);
                }
                exec.extend([container.into(), program.name().into()]);
                exec.extend(args.iter().cloned());
                duct::cmd("docker", exec).env("PGPASSWORD", &login.password)
            }
        }
    }

    /// What runs, for messages: the binary's path, or the program in the container.
    pub fn describe(&self) -> String {
        match self {
            ClientTool::Host(path) => path.display().to_string(),
            ClientTool::DockerExec { container, program } => {
                format!("{} in container {container}", program.name())
            }
        }
    }
}

pub trait Engine {
    fn kind(&self) -> EngineKind;
    fn endpoint(&self) -> &Endpoint;
    /// Creates the server when absent, starts it when stopped, and returns once it accepts
    /// connections; does nothing to a running server with the right settings.
    fn up(&mut self) -> Result<UpOutcome>;
    /// Stops the server, keeping its data.
    /// Stops the server, keeping its data; `false` when there was none running to stop (said why).
    fn down(&self) -> Result<bool>;
    fn status(&self) -> Result<Status>;
    /// Removes the server and all its data. Not called for the external engine.
    fn destroy(&self) -> Result<()>;
    /// How to run a client program against this server.
    fn client_tool(&self, program: ClientProgram) -> Result<ClientTool>;
    /// Refuses, before `task` logs in, a configured port that cannot lead to this engine's server
    /// (its cluster or container listens on another). An external server is whatever its URL names.
    fn check_port(&self, _task: &str) -> Result<()> {
        Ok(())
    }
    /// Refuses, before `task` changes or reads anything, a server (asked through `admin`) that is
    /// not the cluster this engine runs (see [`identity`]).
    fn check_identity(&self, _task: &str, _admin: &mut postgres::Client) -> Result<()> {
        Ok(())
    }
    /// Known not to be running without asking anything over the network (a native cluster without
    /// postmaster.pid): a task then fails at once instead of waiting for its connection to time out
    /// (a silent program on the port).
    fn surely_down(&self) -> bool {
        false
    }
    /// The admin login to try when the endpoint's password is refused: the one a half-done
    /// rotation replaced (see `admin_password`).
    fn fallback_endpoint(&self) -> Option<Endpoint> {
        None
    }
}

/// The engine the configuration asks for; `auto` is docker when a Docker engine answers (or this
/// project has a container, its engine stopped or not), else native when server binaries are found.
/// A native cluster of this project wins, running or stopped (unless the project has a container
/// too), so starting Docker later, or a db-down, does not hide its databases: once a project has a
/// server, `auto` keeps its engine until teardown.
pub fn select(ctx: &Ctx) -> Result<Box<dyn Engine>> {
    let config = &ctx.config;
    let native_wanted = matches!(config.engine, EngineKind::Native | EngineKind::Auto);
    if ctx.provision && native_wanted && !docker::engine_answers() {
        server_binaries::provision(config.postgres)?;
    }
    Ok(match config.engine {
        EngineKind::Docker => Box::new(docker::Docker::new(config)?),
        EngineKind::Native => Box::new(native::Native::new(config)?),
        EngineKind::External => Box::new(external::External::new(config)?),
        EngineKind::Auto => {
            let native = native::Native::new(config)?;
            if native.is_running() || (native.has_cluster() && !docker::used_here(config)) {
                Box::new(native)
            } else if docker::used_here(config) {
                // A stopped Docker engine must not hand the project to an empty native server: the
                // container's databases would look gone. Its errors say to start the engine.
                Box::new(docker::Docker::new(config)?)
            } else if docker::engine_answers() {
                // A new project: the Docker engine, unless it cannot get the image and the native
                // engine can run (binaries here, downloadable, or --provision to get them).
                let native_can = ctx.provision || server_binaries::available(config.postgres);
                if native_can && !docker::image_obtainable(&config.image) {
                    eprintln!(
                        "the Docker engine answers, but the image {} is not here and could not be pulled: \
                         using the native engine instead (XTASK_ENGINE=docker insists on docker)",
                        config.image
                    );
                    if ctx.provision {
                        server_binaries::provision(config.postgres)?;
                    }
                    Box::new(native)
                } else {
                    Box::new(docker::Docker::new(config)?)
                }
            } else if server_binaries::available(config.postgres) {
                Box::new(native)
            } else {
                bail!(
                    "no PostgreSQL server available: no Docker engine answers and no PostgreSQL server \
                     binaries (initdb, pg_ctl) were found.\nRun again with --provision (no root needed: it \
                     downloads PostgreSQL's server), pin a major with `postgres = \"17\"` in \
                     [workspace.metadata.xtask] to have it downloaded, or install one of them:\n{}\n  \
                     Docker: install Docker Engine or Docker Desktop and start it\n\
                     or point the external engine at a server: XTASK_ENGINE=external XTASK_DATABASE_URL=postgres://...",
                    crate::packages::INSTALL_HINT
                )
            }
        }
    })
}

/// The last lines of a text, for error messages that show a server log.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
