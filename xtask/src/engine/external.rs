//! The external engine: an existing server given by an admin URL (a shared team server, a managed
//! Postgres, a CI service container). It has no life cycle here; only databases are made and dropped.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{ClientProgram, ClientTool, Engine, ServerState, Status, UpOutcome};
use crate::config::{Config, EngineKind};
use crate::conn::{Endpoint, ReadyWatch, wait_ready};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct External {
    endpoint: Endpoint,
}

impl External {
    pub fn new(config: &Config) -> Result<External> {
        let url = config.database_url.as_deref().context(
            "the external engine needs the server's admin URL: set XTASK_DATABASE_URL or `database-url` in \
             [workspace.metadata.xtask] (postgres://USER:PASSWORD@HOST:PORT/postgres)",
        )?;
        Ok(External { endpoint: Endpoint::parse_admin_url(url, &config.root)? })
    }
}

impl External {
    fn server_major(&self) -> Result<u32> {
        crate::conn::server_major(&mut self.endpoint.connect(&self.endpoint.admin_db)?)
    }
}

impl Engine for External {
    fn kind(&self) -> EngineKind {
        EngineKind::External
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn up(&mut self) -> Result<UpOutcome> {
        let watch = ReadyWatch { died: &|| None, log_tail: &String::new };
        wait_ready(&self.endpoint, READY_TIMEOUT, &watch).map(|()| UpOutcome::AlreadyRunning).with_context(
            || {
                format!(
                    "the external server at {} does not answer: check that it runs and that \
                 XTASK_DATABASE_URL is right",
                    self.endpoint.redacted_url(&self.endpoint.admin_db)
                )
            },
        )
    }

    fn down(&self) -> Result<bool> {
        eprintln!(
            "the external server at {} is not managed by xtask: nothing to stop",
            self.endpoint.redacted_url(&self.endpoint.admin_db)
        );
        Ok(false)
    }

    fn status(&self) -> Result<Status> {
        Ok(match self.endpoint.connect(&self.endpoint.admin_db) {
            Ok(mut client) => {
                let tls = tls_state(&mut client, &self.endpoint);
                Status::new(ServerState::Running, format!("external server; {tls}"), None)
            }
            Err(e) => Status::new(
                ServerState::Unreachable,
                format!("{e:#}"),
                Some("check that the server runs and that XTASK_DATABASE_URL is right"),
            ),
        })
    }

    fn destroy(&self) -> Result<()> {
        bail!("an external server is never removed by xtask")
    }

    /// A client of the server's major or newer (pg_dump refuses a server newer than itself): an
    /// installed one, else the downloaded PostgreSQL 18 tools.
    fn client_tool(&self, program: ClientProgram) -> Result<ClientTool> {
        let major = self.server_major().ok();
        let tls = self.endpoint.tls.required().then(|| self.endpoint.tls.mode.name());
        super::server_binaries::client_for_major(program.name(), major, tls).map(ClientTool::Host)
    }
}

/// The session's TLS as the server sees it (protocol, cipher) and whether its certificate was checked.
fn tls_state(client: &mut postgres::Client, endpoint: &Endpoint) -> String {
    let row = client.query_opt(
        "SELECT version, cipher FROM pg_catalog.pg_stat_ssl WHERE ssl AND pid = pg_catalog.pg_backend_pid()",
        &[],
    );
    match row {
        Ok(Some(row)) => format!(
            "TLS {} {} (sslmode={}, {})",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            endpoint.tls.mode.name(),
            endpoint.tls.verification()
        ),
        Ok(None) => format!("no TLS (sslmode={})", endpoint.tls.mode.name()),
        Err(_) => format!("TLS state unknown (sslmode={})", endpoint.tls.mode.name()),
    }
}
