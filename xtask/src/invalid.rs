//! Databases PostgreSQL marks invalid (`datconnlimit = -2`): a `DROP DATABASE` that was interrupted
//! after it began removing files (the session killed, the server crashed). Only their name is left;
//! the server refuses connections to them and allows nothing but DROP DATABASE. One of ours (a
//! killed `wipe`, or a restore's old copy) is dropped by `setup` and `restore`, saying so; the other
//! tasks say what happened and what to run.

use anyhow::{Result, bail};
use postgres::Client;

use crate::conn::PgError;
use crate::naming::quote_ident;

/// What PostgreSQL sets `datconnlimit` to while dropping a database.
const DROPPING: i32 = -2;

/// Whether `name` exists and is invalid.
pub fn is_invalid(client: &mut Client, name: &str) -> Result<bool> {
    let row = client
        .query_opt(
            "SELECT datconnlimit = $2 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&name, &DROPPING],
        )
        .map_err(PgError::from)?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// What happened to an invalid database, for every message about one.
pub fn what_happened(name: &str) -> String {
    format!(
        "database {name} is invalid: a DROP DATABASE of it was interrupted (a killed `wipe` or `restore`, or the \
         server stopping during the drop), so PostgreSQL keeps only its name, refuses connections to it, and \
         its data is gone"
    )
}

/// Drops `name` when it is invalid and labelled for `project`; `Ok(true)` when it did. An invalid
/// database without our label is left alone, with an error saying so.
pub fn drop_if_ours(client: &mut Client, name: &str, project: &str) -> Result<bool> {
    if !is_invalid(client, name)? {
        return Ok(false);
    }
    let comment: Option<String> = client
        .query_one(
            "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database \
             WHERE datname = $1",
            &[&name],
        )
        .map_err(PgError::from)?
        .get(0);
    if crate::admin::Label::parse(comment).is_none_or(|l| l.project != project) {
        bail!(
            "{}; it does not carry project `{project}`'s label, so it is not dropped here: drop it as the \
             server's admin (DROP DATABASE \"{name}\") if it is yours",
            what_happened(name)
        );
    }
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name))).map_err(PgError::from)?;
    Ok(true)
}

/// A connection to `name` that failed because it is invalid, told as such with the way back.
pub fn explain(error: anyhow::Error, name: &str) -> anyhow::Error {
    // The server's words (SQLSTATE 55000 is shared by many other refusals).
    if !format!("{error:#}").contains("invalid database") {
        return error;
    }
    error.context(format!(
        "{}: run `cargo xtask setup` to drop it and make it anew, or `cargo xtask restore FILE` to put a \
         backup from backups/ in its place",
        what_happened(name)
    ))
}
