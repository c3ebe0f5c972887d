//! Throwaway databases (for `prepare`, `schema` and `restore`): made on the project's server, and dropped when
//! dropped, on error, and on Ctrl-C, SIGTERM or SIGHUP.
//!
//! Every database this tool makes for a while is named `_xtask_<purpose>_...` (throwaway ones, and
//! branch databases and templates until they are finished and renamed). Its maker holds an advisory
//! lock keyed by the name, in the maintenance database, for as long as it exists; the server releases
//! it when the maker's connection ends, however the process ended. So a `_xtask_` database whose lock
//! can be taken was left by a process that is gone (killed, crashed, its machine lost): [`sweep`]
//! drops those.

use std::sync::Mutex;

use anyhow::{Context, Result};
use postgres::Client;

use crate::conn::{Endpoint, PgError};
use crate::naming::quote_ident;

/// Databases made and not yet dropped, for the signal handler.
static LIVE: Mutex<Vec<(Endpoint, String)>> = Mutex::new(Vec::new());

/// The names of databases being made or used for a while.
pub const PREFIX: &str = "_xtask_";

/// `_xtask_<purpose>_<pid>_<project hash>_<random>`: the hash names the project even before the
/// database is labelled (a run killed during its CREATE DATABASE leaves it unlabelled), the random
/// part keeps runs apart whose pids coincide (containers sharing one server).
pub fn name(purpose: &str, project: &str) -> Result<String> {
    let random = crate::credentials::random_hex(4)?;
    Ok(format!("{PREFIX}{purpose}_{}_{}_{random}", std::process::id(), crate::naming::short_hash(project)))
}

/// Whether `name` is one of `project`'s scratch names, as [`name`] makes them.
fn names_project(name: &str, project: &str) -> bool {
    let mut parts = name.rsplit('_');
    let (random, hash) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let hex8 = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
    name.starts_with(PREFIX) && hex8(random) && hash == crate::naming::short_hash(project)
}

/// The advisory locks' first key: "xtsc".
const LOCK_CLASS: i32 = 0x7874_7363;

fn lock_id(name: &str) -> i32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    i32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Marks `name` as in use by this process until [`release`] or the end of `admin`'s session.
pub fn hold(admin: &mut Client, name: &str) -> Result<()> {
    let key = crate::locks::Key::Two(LOCK_CLASS, lock_id(name));
    let what = format!("the in-use lock of {name}");
    crate::locks::acquire(admin, key, crate::locks::Scope::Session, &what, crate::locks::timeout())
        .with_context(|| format!("mark {name} as in use"))
}

/// Takes `name`'s in-use lock when no one holds it; `Ok(false)` when its maker still runs.
pub fn try_hold(admin: &mut Client, name: &str) -> Result<bool> {
    let row = admin
        .query_one("SELECT pg_catalog.pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &lock_id(name)])
        .map_err(PgError::from)?;
    Ok(row.get(0))
}

pub fn release(admin: &mut Client, name: &str) -> Result<()> {
    admin
        .execute("SELECT pg_catalog.pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &lock_id(name)])
        .map_err(PgError::from)?;
    Ok(())
}

/// Drops this project's `_xtask_` databases whose makers are gone: labelled for `project` (or, not
/// labelled yet, named for it), their lock free and nobody connected (a database in use is left
/// alone, whoever uses it). Returns their names.
pub fn sweep(admin: &mut Client, project: &str) -> Result<Vec<String>> {
    let rows = admin
        .query(
            "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
             WHERE starts_with(datname, $1) ORDER BY 1",
            &[&PREFIX],
        )
        .map_err(PgError::from)?;
    let ours = rows.iter().filter(|row| match crate::admin::Label::parse(row.get(1)) {
        Some(label) => label.project == project,
        None => row.get::<_, Option<String>>(1).is_none() && names_project(row.get(0), project),
    });
    let mut dropped = Vec::new();
    let ours: Vec<(String, Option<crate::admin::Label>)> =
        ours.map(|row| (row.get(0), crate::admin::Label::parse(row.get(1)))).collect();
    let aside = format!("{PREFIX}{}_", crate::swap::ASIDE);
    for (name, label) in ours {
        if !try_hold(admin, &name)? {
            continue;
        }
        // A branch database an interrupted restore moved aside: kept until setup puts it back.
        if let Some(label) = label.filter(|_| name.starts_with(&aside))
            && crate::swap::holds_the_only_data(admin, &name, &label)?
        {
            release(admin, &name)?;
            continue;
        }
        // Its maker may have finished and renamed it between the listing and the lock.
        let still_there = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(PgError::from)?;
        if still_there.is_none() {
            release(admin, &name)?;
            continue;
        }
        // Without FORCE: a session inside means someone still uses it after all.
        if admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&name))).is_ok() {
            dropped.push(name.clone());
        }
        release(admin, &name)?;
    }
    Ok(dropped)
}

/// A throwaway database, dropped with this value.
pub struct Scratch {
    endpoint: Endpoint,
    pub name: String,
    /// The admin session holding the database's in-use lock.
    admin: Client,
}

/// Has Ctrl-C, SIGTERM and SIGHUP drop the live throwaway databases before the process exits (see
/// [`crate::signals::handle`] for when to call it).
pub fn drop_on_signals() {
    crate::signals::on_signal("throwaway databases", || {
        let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
        for (endpoint, name) in &live {
            let _ = drop_database(endpoint, name);
        }
        eprintln!("interrupted: dropped {} database(s) this run made", live.len());
    });
    crate::signals::handle();
}

/// Has the signal thread drop `name` too, a database made elsewhere (ci's run databases), until
/// `forget_on_signal`.
pub fn drop_on_signal(endpoint: &Endpoint, name: &str) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((endpoint.clone(), name.to_owned()));
}

pub fn forget_on_signal(name: &str) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, live)| live != name);
}

impl Scratch {
    /// Creates `_xtask_<purpose>_...` (see [`name`]), empty, from template1.
    /// Labelled for the project and logical database of `database`, with no branch, so the next
    /// setup sweeps it if this process is killed.
    pub fn create(
        endpoint: &Endpoint,
        purpose: &str,
        database: &crate::workspace::Database,
    ) -> Result<Scratch> {
        crate::signals::park_if_interrupted();
        let name = name(purpose, &database.spec.project)?;
        let mut admin = endpoint.connect_watched(&endpoint.admin_db, "")?;
        hold(&mut admin, &name)?;
        // Registered first: a signal during CREATE DATABASE still finds it.
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((endpoint.clone(), name.clone()));
        if let Err(error) = admin.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name))) {
            LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, live)| *live != name);
            crate::signals::park_if_interrupted();
            return Err(PgError::from(error))
                .with_context(|| format!("create the throwaway database {name}"));
        }
        let mut scratch = Scratch { endpoint: endpoint.clone(), name, admin };
        let new = crate::admin::NewDatabase {
            project: &database.spec.project,
            logical: &database.logical,
            branch: "",
            owner: None,
            template: None,
            base: None,
            developer: None,
        };
        crate::admin::label(&mut scratch.admin, &scratch.name, &new)?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if crate::signals::interrupted() {
            return;
        }
        let dropped = self
            .admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&self.name)))
            .map_err(|e| anyhow::Error::from(PgError::from(e)))
            .or_else(|_| drop_database(&self.endpoint, &self.name));
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, name)| *name != self.name);
        if let Err(error) = dropped {
            eprintln!(
                "warning: could not drop the throwaway database {}: {error:#}\n  \
                 drop it as the server's admin: DROP DATABASE \"{}\"",
                self.name, self.name
            );
        }
    }
}

fn drop_database(endpoint: &Endpoint, name: &str) -> Result<()> {
    let mut admin = endpoint.connect(&endpoint.admin_db)?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
        .map_err(PgError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_name_their_project() {
        let made = name("new", "geney").unwrap();
        assert!(made.starts_with(&format!("_xtask_new_{}_", std::process::id())), "{made}");
        assert!(names_project(&made, "geney"));
        assert!(!names_project(&made, "other"));
        for look_alike in ["_xtask_new_1_geney", "_xtask_new", "geney", "_xtask_new_1_2_3"] {
            assert!(!names_project(look_alike, "geney"), "{look_alike}");
        }
    }
}
