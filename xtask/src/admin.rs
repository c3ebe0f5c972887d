//! Server-level work over one admin connection: list, create, label and drop databases.
//!
//! Every database this tool creates carries a label (`COMMENT ON DATABASE`, JSON) naming project,
//! logical database, branch and creation time. Nothing without this project's label is ever dropped.

use anyhow::{Context, Result, bail};
use postgres::Client;
use serde::{Deserialize, Serialize};

use crate::conn::{Endpoint, PgError};
use crate::naming::{DbName, quote_ident};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub tool: String,
    pub project: String,
    pub database: String,
    pub branch: String,
    pub created: String,
}

#[derive(Debug, Clone)]
pub struct ServerDatabase {
    pub name: String,
    pub label: Option<Label>,
    pub size_bytes: Option<i64>,
}

impl ServerDatabase {
    pub fn belongs_to(&self, project: &str) -> bool {
        self.label.as_ref().is_some_and(|l| l.project == project)
    }
}

pub enum Created {
    New,
    Existing,
}

/// One connection to the admin database of a server.
pub struct Admin {
    client: Client,
}

/// Serialises create, drop and clone across every xtask process on the server. Advisory locks are
/// per database, so the lock is always taken in the maintenance database the admin connects to.
const CATALOG_LOCK_KEY: i64 = 0x7874_6173_6b5f_6462; // "xtask_db"

impl Admin {
    pub fn connect(endpoint: &Endpoint) -> Result<Admin> {
        let client = endpoint.connect(&endpoint.admin_db)?;
        Ok(Admin { client })
    }

    /// Every database on the server with its label. Sizes are computed only for `sized`: summing
    /// the files of every database on a shared server is slow and not ours to pay.
    pub fn databases(&mut self, sized: &[&str]) -> Result<Vec<ServerDatabase>> {
        let rows = self
            .client
            .query(
                "SELECT d.datname, shobj_description(d.oid, 'pg_database'), \
                        CASE WHEN d.datname = ANY($1) AND has_database_privilege(d.oid, 'CONNECT') \
                             THEN pg_database_size(d.oid) END \
                 FROM pg_database d WHERE NOT d.datistemplate ORDER BY d.datname",
                &[&sized],
            )
            .map_err(PgError::from)
            .context("list databases")?;
        Ok(rows
            .iter()
            .map(|row| ServerDatabase {
                name: row.get(0),
                label: row
                    .get::<_, Option<String>>(1)
                    .and_then(|text| serde_json::from_str::<Label>(&text).ok())
                    .filter(|label| label.tool == "xtask"),
                size_bytes: row.get(2),
            })
            .collect())
    }

    fn find(&mut self, name: &str) -> Result<Option<ServerDatabase>> {
        let row = self
            .client
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .map_err(PgError::from)?;
        Ok(row.map(|row| ServerDatabase {
            name: name.to_owned(),
            label: row
                .get::<_, Option<String>>(0)
                .and_then(|text| serde_json::from_str::<Label>(&text).ok())
                .filter(|label| label.tool == "xtask"),
            size_bytes: None,
        }))
    }

    /// Creates and labels the database unless it exists with the same label already.
    pub fn create(&mut self, name: &DbName, project: &str, logical: &str, branch: &str) -> Result<Created> {
        self.with_catalog_lock(|admin| {
            if let Some(existing) = admin.find(name.as_str())? {
                check_ownership(&existing, project, logical, branch)?;
                return Ok(Created::Existing);
            }
            // Made and labelled under a scratch name, then renamed: a crash in between can leave a
            // stray scratch database, never an unlabelled one under a real branch name.
            let scratch =
                format!("_xtask_new_{}_{}", std::process::id(), crate::naming::short_hash(name.as_str()));
            admin.execute(&format!("CREATE DATABASE {}", quote_ident(&scratch)))?;
            admin.label(&scratch, project, logical, branch)?;
            admin.execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&scratch),
                quote_ident(name.as_str())
            ))?;
            Ok(Created::New)
        })
        .with_context(|| format!("create database {name}"))
    }

    fn label(&mut self, name: &str, project: &str, logical: &str, branch: &str) -> Result<()> {
        // The server quotes both the identifier and the literal (format %I, %L).
        let row = self
            .client
            .query_one(
                "SELECT format('COMMENT ON DATABASE %I IS %L', $1::text, json_build_object( \
                   'tool', 'xtask', 'project', $2::text, 'database', $3::text, 'branch', $4::text, \
                   'created', to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text)",
                &[&name, &project, &logical, &branch],
            )
            .map_err(PgError::from)?;
        self.execute(row.get::<_, &str>(0)).context("label database")
    }

    /// Drops the database when it carries this project's label; `Ok(false)` when it does not exist.
    /// Its open connections are ended first.
    pub fn drop_labelled(&mut self, name: &str, project: &str) -> Result<bool> {
        self.with_catalog_lock(|admin| {
            let Some(existing) = admin.find(name)? else {
                return Ok(false);
            };
            if !existing.belongs_to(project) {
                bail!(
                    "refusing to drop database {name}: it does not carry project `{project}`'s label, \
                     so this tool did not create it"
                );
            }
            if admin.server_version()? >= 130_000 {
                admin.execute(&format!("DROP DATABASE {} WITH (FORCE)", quote_ident(name)))?;
            } else {
                admin
                    .client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .map_err(PgError::from)?;
                admin.execute(&format!("DROP DATABASE {}", quote_ident(name)))?;
            }
            Ok(true)
        })
        .with_context(|| format!("drop database {name}"))
    }

    fn server_version(&mut self) -> Result<i32> {
        let row = self
            .client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .map_err(PgError::from)?;
        Ok(row.get(0))
    }

    fn with_catalog_lock<T>(&mut self, work: impl FnOnce(&mut Admin) -> Result<T>) -> Result<T> {
        self.client
            .execute("SELECT pg_advisory_lock($1)", &[&CATALOG_LOCK_KEY])
            .map_err(PgError::from)
            .context("take the database-catalog lock")?;
        let result = work(self);
        let unlocked = self.client.execute("SELECT pg_advisory_unlock($1)", &[&CATALOG_LOCK_KEY]);
        let value = result?;
        unlocked.map_err(PgError::from).context("release the database-catalog lock")?;
        Ok(value)
    }

    fn execute(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql).map_err(PgError::from)?)
    }
}

fn check_ownership(existing: &ServerDatabase, project: &str, logical: &str, branch: &str) -> Result<()> {
    match &existing.label {
        Some(l) if l.project == project && l.database == logical && l.branch == branch => Ok(()),
        Some(l) => bail!(
            "database {} already exists for project `{}`, database `{}`, branch `{}` \
             (not `{project}`, `{logical}`, `{branch}`): set a distinct `project` in \
             [workspace.metadata.xtask] or XTASK_PROJECT",
            existing.name,
            l.project,
            l.database,
            l.branch
        ),
        None => bail!(
            "database {} already exists on the server but was not created by xtask; \
             it is left alone. Rename or drop it yourself, or set a distinct `project` in \
             [workspace.metadata.xtask] or XTASK_PROJECT",
            existing.name
        ),
    }
}
