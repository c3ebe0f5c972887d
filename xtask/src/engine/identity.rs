//! Which server a connection reached. The port in the configuration (or `XTASK_PORT`) may lead to
//! another cluster than the one this project's engine runs (a second project's, a system server
//! sharing the password): before anything is dropped, dumped or replaced, the server must prove it
//! is ours. It names its data directory and the system identifier PostgreSQL chose at `initdb`;
//! the engine compares them with its own cluster's `global/pg_control`, which only its files hold.

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::conn::PgError;

/// What a running server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub data_directory: String,
    pub system_identifier: u64,
}

/// Asks the server (as the admin: `data_directory` is visible to superusers only).
pub fn of_server(client: &mut Client) -> Result<Identity> {
    let row = client
        .query_one(
            "SELECT pg_catalog.current_setting('data_directory'), s.system_identifier::pg_catalog.text \
             FROM pg_catalog.pg_control_system() AS s",
            &[],
        )
        .map_err(PgError::from)
        .context("ask the server for its data directory and system identifier")?;
    let id: String = row.get(1);
    Ok(Identity {
        data_directory: row.get(0),
        system_identifier: id.parse().context("read the server's system identifier")?,
    })
}

/// The system identifier in a `pg_control` file: its first field, a native-endian 64-bit integer.
pub fn system_identifier_in(pg_control: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(pg_control.get(..8)?.try_into().ok()?))
}

/// The refusal when the server at `port` is not the engine's cluster `ours` (a description of it).
pub fn check(
    task: &str,
    port: u16,
    server: &Identity,
    ours: &str,
    our_identifier: Option<u64>,
) -> Result<()> {
    if our_identifier == Some(server.system_identifier) {
        return Ok(());
    }
    bail!(
        "refusing to {task}: the server on port {port} is not this project's cluster (it runs from {} with \
         system identifier {}; this project's is {ours}{}). The port (`port` in [workspace.metadata.xtask] \
         or XTASK_PORT) leads to another server: set it to this project's port (`cargo xtask db-status` \
         shows where its cluster runs), then run the command again; nothing was changed",
        server.data_directory,
        server.system_identifier,
        match our_identifier {
            Some(id) => format!(", system identifier {id}"),
            None => ", whose pg_control cannot be read".to_owned(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identifier_is_the_first_field_of_pg_control() {
        let mut control = 7_391_234_567_890_123_456u64.to_ne_bytes().to_vec();
        control.extend([0u8; 100]);
        assert_eq!(system_identifier_in(&control), Some(7_391_234_567_890_123_456));
        assert_eq!(system_identifier_in(&control[..7]), None);
    }

    #[test]
    fn another_server_is_refused_with_what_to_do() {
        let server = Identity { data_directory: "/elsewhere/pgdata".into(), system_identifier: 2 };
        assert!(check("wipe", 5433, &server, "the cluster in /ours", Some(2)).is_ok());
        let message =
            format!("{:#}", check("wipe", 5433, &server, "the cluster in /ours", Some(1)).unwrap_err());
        for part in
            ["refusing to wipe", "port 5433", "/elsewhere/pgdata", "XTASK_PORT", "nothing was changed"]
        {
            assert!(message.contains(part), "{part}: {message}");
        }
        assert!(check("wipe", 5433, &server, "x", None).is_err());
    }
}
