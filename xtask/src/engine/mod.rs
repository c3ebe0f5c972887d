//! Where the PostgreSQL server comes from: one trait, three engines, and `auto` choosing between them.

mod docker;
mod external;
mod native;

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::config::EngineKind;
use crate::conn::Endpoint;
use crate::workspace::Ctx;

pub use native::{INSTALL_HINT, find_client as find_host_psql};

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
}

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

/// How `connect` starts psql.
pub enum PsqlLauncher {
    /// A psql binary on this machine, given the endpoint through libpq's environment.
    Host(PathBuf),
    /// `docker exec -it` into the container, for machines without a psql client.
    DockerExec { container: String },
}

pub trait Engine {
    fn kind(&self) -> EngineKind;
    fn endpoint(&self) -> &Endpoint;
    /// Creates the server when absent, starts it when stopped, and returns once it accepts
    /// connections; does nothing to a running server with the right settings.
    fn up(&self) -> Result<UpOutcome>;
    /// Stops the server, keeping its data.
    fn down(&self) -> Result<()>;
    fn status(&self) -> Result<Status>;
    /// Removes the server and all its data. Not called for the external engine.
    fn destroy(&self) -> Result<()>;
    fn psql(&self) -> Result<PsqlLauncher>;
}

/// The engine the configuration asks for; `auto` is docker when a Docker engine answers, else native
/// when server binaries are found. A native cluster of this project that is already running wins,
/// so starting Docker later does not hide a running server's databases.
pub fn select(ctx: &Ctx) -> Result<Box<dyn Engine>> {
    let config = &ctx.config;
    let native_wanted = matches!(config.engine, EngineKind::Native | EngineKind::Auto);
    if ctx.provision && native_wanted && !docker::engine_answers() {
        let native = native::Native::new(config);
        if !native.binaries_found() {
            crate::provision::install_postgresql()?;
        }
    }
    Ok(match config.engine {
        EngineKind::Docker => Box::new(docker::Docker::new(config)?),
        EngineKind::Native => Box::new(native::Native::new(config)),
        EngineKind::External => Box::new(external::External::new(config)?),
        EngineKind::Auto => {
            let native = native::Native::new(config);
            if native.is_running() {
                Box::new(native)
            } else if docker::engine_answers() {
                Box::new(docker::Docker::new(config)?)
            } else if native.binaries_found() {
                Box::new(native)
            } else {
                bail!(
                    "no PostgreSQL server available: no Docker engine answers and no PostgreSQL server \
                     binaries (initdb, pg_ctl) were found.\nInstall one of them (or run again with --provision):\n{}\n  \
                     Docker: install Docker Engine or Docker Desktop and start it\n\
                     or point the external engine at a server: XTASK_ENGINE=external XTASK_DATABASE_URL=postgres://...",
                    native::INSTALL_HINT
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
