//! The databases every cluster has (`postgres`, where the admin works and takes its locks, and
//! `template1`, which every empty database is copied from) are closed to the services' roles on a
//! cluster this tool owns: PostgreSQL lets PUBLIC connect to them, which would let any role hold
//! the tool's locks there, and on older servers plant objects in them.

use anyhow::{Context, Result};
use postgres::Client;

use crate::conn::PgError;
use crate::naming::quote_ident;

/// Revokes CONNECT from PUBLIC on the cluster's own databases where PUBLIC still has it; the
/// admin (a superuser) connects regardless. Idempotent. Run it under the catalog lock (after
/// [`open_to_public`] found work to do): concurrent GRANT/REVOKE on one database fail ("tuple
/// concurrently updated").
pub fn close_to_public(client: &mut Client, admin_db: &str) -> Result<Vec<String>> {
    let open = open_to_public(client, admin_db)?;
    for name in &open {
        client
            .batch_execute(&format!("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", quote_ident(name)))
            .map_err(PgError::from)
            .with_context(|| format!("close database {name} to the services' roles"))?;
    }
    Ok(open)
}

/// The cluster's own databases PUBLIC may still connect to.
pub fn open_to_public(client: &mut Client, admin_db: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database \
             WHERE datname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
               AND pg_catalog.has_database_privilege('public', oid, 'CONNECT') ORDER BY 1",
            &[&vec![admin_db, "template1"]],
        )
        .map_err(PgError::from)
        .context("ask who may connect to the maintenance databases")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
