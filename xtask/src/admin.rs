//! Server-level work over one admin connection: databases (list, create, label, drop), the
//! services' login roles, and the extensions and read grants inside a database.
//!
//! Every database this tool creates carries a label (`COMMENT ON DATABASE`, JSON) naming project,
//! logical database, branch and creation time; every role, one naming project and database.
//! Nothing without this project's label is ever dropped.

use anyhow::{Context, Result, bail};
use postgres::Client;
use postgres::error::SqlState;
use serde::{Deserialize, Serialize};

use crate::conn::{Endpoint, PgError};
use crate::credentials::Credentials;
use crate::naming::{quote_ident, quote_literal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub tool: String,
    pub project: String,
    pub database: String,
    pub branch: String,
    pub created: String,
    /// On a pristine template (see `templates`), the hash of what it was built from. A template's
    /// `branch` is the default branch for the shared one, else the branch it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// On a shared template, the commit its migrations come from (the merge base with the default
    /// branch); `None` on a branch's own template and without git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// On a test's own copy (`services/testdb`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    /// On a server developers share (the external engine), whose it is; `None`: everyone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerDatabase {
    pub name: String,
    pub label: Option<Label>,
    pub size_bytes: Option<i64>,
    pub owner: Option<String>,
}

impl ServerDatabase {
    pub fn belongs_to(&self, project: &str) -> bool {
        self.label.as_ref().is_some_and(|l| l.project == project)
    }

    pub fn is_template(&self) -> bool {
        self.label.as_ref().is_some_and(|l| l.template.is_some())
    }
}

pub enum Created {
    New,
    Existing,
}

/// What [`Admin::template_state`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum TemplateState {
    /// No template of that name built from that hash.
    Missing,
    Ready,
    /// Built from that hash, but owned by `owner` (a service's role, as templates were before they
    /// were sealed) or open to connections: what is inside may have been changed since.
    Untrusted {
        owner: String,
    },
}

/// What a database made by this tool carries: its label and its owner.
#[derive(Clone, Copy)]
pub struct NewDatabase<'a> {
    pub project: &'a str,
    pub logical: &'a str,
    pub branch: &'a str,
    /// The service's login role; `None` leaves the database to the admin user.
    pub owner: Option<&'a str>,
    /// For a pristine template, the hash of what it is built from.
    pub template: Option<&'a str>,
    /// For a shared template, the commit its migrations come from.
    pub base: Option<&'a str>,
    /// On a server developers share, whose it is (see [`Label::developer`]).
    pub developer: Option<&'a str>,
}

/// Writes the label of a database this tool made (`COMMENT ON DATABASE`, JSON).
pub fn label(client: &mut Client, name: &str, new: &NewDatabase<'_>) -> Result<()> {
    // The server quotes both the identifier and the literal (format %I, %L).
    let row = client
        .query_one(
            "SELECT format('COMMENT ON DATABASE %I IS %L', $1::text, json_strip_nulls(json_build_object( \
               'tool', 'xtask', 'project', $2::text, 'database', $3::text, 'branch', $4::text, \
               'created', to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
               'template', $5::text, 'base', $6::text, 'developer', $7::text))::text)",
            &[&name, &new.project, &new.logical, &new.branch, &new.template, &new.base, &new.developer],
        )
        .map_err(PgError::from)?;
    client.batch_execute(row.get::<_, &str>(0)).map_err(PgError::from).context("label database")?;
    Ok(())
}

/// A session connected to a database, as `pg_stat_activity` shows it.
#[derive(Debug, Clone)]
pub struct Session {
    pub pid: i32,
    pub user: String,
    pub application: String,
    pub client: String,
    pub since: String,
}

/// Why a database cannot be copied now: the sessions in it, by name.
pub fn in_use_message(database: &str, sessions: &[Session]) -> String {
    let listed: Vec<String> = sessions
        .iter()
        .map(|s| {
            let app = if s.application.is_empty() { String::new() } else { format!(" ({})", s.application) };
            format!("  pid {} user {}{app} from {} since {}", s.pid, s.user, s.client, s.since)
        })
        .collect();
    format!(
        "database {database} cannot be copied while others are connected to it (PostgreSQL copies a \
         database only when nobody uses it); close these sessions, or stop the application using it, \
         and run again:\n{}",
        if listed.is_empty() { "  (they ended meanwhile; run again)".to_owned() } else { listed.join("\n") }
    )
}

/// One connection to the admin database of a server.
pub struct Admin {
    client: Client,
}

/// Databases being made are named so until they are finished and renamed (see `scratch`).
const SCRATCH_PREFIX: &str = "_xtask_new_";

/// Serialises publishing, dropping and renaming across every xtask process on the server. Advisory
/// locks are per database, so the lock is always taken in the maintenance database the admin
/// connects to.
const CATALOG_LOCK_KEY: i64 = 0x7874_6173_6b5f_6462; // "xtask_db"

impl Admin {
    pub fn connect(endpoint: &Endpoint) -> Result<Admin> {
        // Watched: a killed run's CREATE DATABASE stops, and its in-use locks go, within a second.
        let client = endpoint.connect_watched(&endpoint.admin_db, "")?;
        Ok(Admin { client })
    }

    /// The session, for the concerns that live in their own modules (`swap`, `identity`).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
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
                label: Label::parse(row.get(1)),
                size_bytes: row.get(2),
                owner: None,
            })
            .collect())
    }

    fn find(&mut self, name: &str) -> Result<Option<ServerDatabase>> {
        let row = self
            .client
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba)::text \
                 FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .map_err(PgError::from)?;
        Ok(row.map(|row| ServerDatabase {
            name: name.to_owned(),
            label: Label::parse(row.get(0)),
            size_bytes: None,
            owner: row.get(1),
        }))
    }

    /// Creates and labels the database unless it exists with the same label already: a copy of
    /// `source` (`CREATE DATABASE ... TEMPLATE`), or empty; `finish` runs on it before it gets its
    /// name. With an `owner` role, the database is that role's and no one else may connect to it
    /// (the admin user, a superuser, still can). A copy carries the source's schema and data but
    /// not its database-level grants and settings, nor its label: those are applied here.
    pub fn create_from(
        &mut self,
        name: &str,
        new: &NewDatabase<'_>,
        source: Option<&str>,
        finish: impl FnOnce(&mut Admin, &str) -> Result<()>,
    ) -> Result<Created> {
        if let Some(existing) = self.find(name)? {
            check_ownership(&existing, new)?;
            return Ok(Created::Existing);
        }
        // Made and finished under a scratch name, then renamed under the catalog lock: a crash can
        // leave a stray scratch database, never an unlabelled or half-made one under a real name,
        // and a long `finish` (a template's migrations) holds up nobody else's work.
        let scratch = crate::scratch::name("new", new.project)?;
        crate::scratch::hold(&mut self.client, &scratch)?;
        let built = self.create_scratch(&scratch, new.owner, source).and_then(|()| {
            label(&mut self.client, &scratch, new)?;
            if let Some(owner) = new.owner {
                self.restrict_to_owner(&scratch, owner)?;
            }
            if let Some(source) = source {
                self.copy_grants_and_settings(source, &scratch)?;
            }
            finish(self, &scratch)
        });
        let published = built.and_then(|()| {
            self.with_catalog_lock(|admin| match admin.find(name)? {
                // Another process made it meanwhile: theirs stays, ours goes.
                Some(existing) => check_ownership(&existing, new).map(|()| Created::Existing),
                None => {
                    admin.execute(&format!(
                        "ALTER DATABASE {} RENAME TO {}",
                        quote_ident(&scratch),
                        quote_ident(name)
                    ))?;
                    Ok(Created::New)
                }
            })
        });
        if !matches!(published, Ok(Created::New)) {
            let _ = self.execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&scratch)));
        }
        // The work's own error first: after a lost server the release fails too.
        let released = crate::scratch::release(&mut self.client, &scratch);
        let created = published.with_context(|| format!("create database {name}"))?;
        released?;
        Ok(created)
    }

    fn create_scratch(&mut self, scratch: &str, owner: Option<&str>, source: Option<&str>) -> Result<()> {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(scratch));
        if let Some(source) = source {
            sql.push_str(&format!(" TEMPLATE {}", quote_ident(source)));
        }
        if let Some(owner) = owner {
            sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        match self.client.batch_execute(&sql) {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some(&SqlState::OBJECT_IN_USE) => {
                let source = source.unwrap_or("template1");
                bail!("{}", in_use_message(source, &self.sessions(source)?))
            }
            Err(error) if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) && source.is_none() => {
                let error = anyhow::Error::from(PgError::from(error));
                bail!("{}", missing_attribute("CREATEDB", "the branch databases", &error))
            }
            Err(error) => Err(PgError::from(error).into()),
        }
    }

    /// The sessions connected to `database` other than this one.
    pub fn sessions(&mut self, database: &str) -> Result<Vec<Session>> {
        let rows = self
            .client
            .query(
                "SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''), \
                        coalesce(client_addr::text, 'local socket'), \
                        to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS') \
                 FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY pid",
                &[&database],
            )
            .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|row| Session {
                pid: row.get(0),
                user: row.get(1),
                application: row.get(2),
                client: row.get(3),
                since: row.get::<_, Option<String>>(4).unwrap_or_default(),
            })
            .collect())
    }

    /// Database-level grants and `ALTER DATABASE ... SET` settings, which a template copy does not
    /// carry. A setting's stored text is put back through `set_config` and `SET ... FROM CURRENT`, so
    /// list values (search_path) keep their exact form.
    pub fn copy_grants_and_settings(&mut self, source: &str, target: &str) -> Result<()> {
        let target_q = quote_ident(target);
        let grants = self
            .client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, \
                        a.privilege_type, a.is_grantable \
                 FROM pg_database d, aclexplode(d.datacl) a \
                 WHERE d.datname = $1 AND a.grantee <> d.datdba",
                &[&source],
            )
            .map_err(PgError::from)?;
        for row in grants {
            let (grantee, privilege, grantable): (String, String, bool) =
                (row.get(0), row.get(1), row.get(2));
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            // The grantee is quoted by the server (or is PUBLIC); the privilege is a keyword it named.
            self.execute(&format!("GRANT {privilege} ON DATABASE {target_q} TO {grantee}{option}"))?;
        }
        let settings = self
            .client
            .query(
                "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE quote_ident(pg_get_userbyid(s.setrole)) END, \
                        split_part(c, '=', 1), substr(c, strpos(c, '=') + 1) \
                 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, \
                      unnest(s.setconfig) c WHERE d.datname = $1",
                &[&source],
            )
            .map_err(PgError::from)?;
        for row in settings {
            let (role, key, value): (Option<String>, String, String) = (row.get(0), row.get(1), row.get(2));
            let target_clause = match &role {
                Some(role) => format!("ROLE {role} IN DATABASE {target_q}"),
                None => format!("DATABASE {target_q}"),
            };
            let mut tx = self.client.transaction().map_err(PgError::from)?;
            tx.execute("SELECT set_config($1, $2, true)", &[&key, &value]).map_err(PgError::from)?;
            tx.batch_execute(&format!("ALTER {target_clause} SET {} FROM CURRENT", quote_ident(&key)))
                .map_err(PgError::from)?;
            tx.commit().map_err(PgError::from)?;
        }
        Ok(())
    }

    /// Whether the template `name` exists, built from exactly `hash`, and whether it can be trusted:
    /// owned by the admin user and closed to connections, so no service's role can have changed it.
    pub fn template_state(&mut self, name: &str, hash: &str) -> Result<TemplateState> {
        let row = self
            .client
            .query_opt(
                "SELECT pg_catalog.shobj_description(oid, 'pg_database'), \
                        pg_catalog.pg_get_userbyid(datdba)::text, \
                        datdba OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles \
                                                       WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER) \
                          AND NOT datallowconn \
                 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) $1",
                &[&name],
            )
            .map_err(PgError::from)?;
        let Some(row) = row else { return Ok(TemplateState::Missing) };
        let (comment, owner, trusted): (Option<String>, String, bool) = (row.get(0), row.get(1), row.get(2));
        if Label::parse(comment).is_none_or(|label| label.template.as_deref() != Some(hash)) {
            return Ok(TemplateState::Missing);
        }
        Ok(if trusted { TemplateState::Ready } else { TemplateState::Untrusted { owner } })
    }

    /// Publishes a finished template: closed to connections, then given to the admin user, so the
    /// service's role (which built it) can neither reopen it nor change what later copies get.
    pub fn seal_template(&mut self, database: &str) -> Result<()> {
        self.close_to_connections(database)?;
        self.execute(&format!("ALTER DATABASE {} OWNER TO CURRENT_USER", quote_ident(database)))
            .with_context(|| format!("give template {database} to the admin user"))
    }

    /// Closes the cluster's own databases to the services' roles (see `maintenance`); their names.
    pub fn close_maintenance_databases(&mut self, admin_db: &str) -> Result<Vec<String>> {
        // One query when all is closed already: setups of a closed cluster never wait on the lock.
        if crate::maintenance::open_to_public(&mut self.client, admin_db)?.is_empty() {
            return Ok(Vec::new());
        }
        self.with_catalog_lock(|admin| crate::maintenance::close_to_public(&mut admin.client, admin_db))
    }

    /// Drops the scratch databases of processes that are gone (see `scratch::sweep`).
    pub fn sweep_leftovers(&mut self, project: &str) -> Result<Vec<String>> {
        crate::scratch::sweep(&mut self.client, project).context("drop the scratch databases of ended runs")
    }

    /// Marks a scratch database as in use by this process (see `scratch`).
    pub fn hold_scratch(&mut self, name: &str) -> Result<()> {
        crate::scratch::hold(&mut self.client, name)
    }

    pub fn release_scratch(&mut self, name: &str) -> Result<()> {
        crate::scratch::release(&mut self.client, name)
    }

    /// This project's finished templates of `logical`, with their labels (not those still being
    /// built under a scratch name by some process).
    pub fn templates_of(&mut self, project: &str, logical: &str) -> Result<Vec<(String, Label)>> {
        Ok(self
            .databases(&[])?
            .into_iter()
            .filter(|d| d.is_template() && d.belongs_to(project) && !d.name.starts_with(SCRATCH_PREFIX))
            .filter_map(|d| Some((d.name, d.label?)))
            .filter(|(_, label)| label.database == logical)
            .collect())
    }

    /// Marks a finished template: nobody may connect to it, so a copy never waits for or fails on a
    /// session inside it.
    pub fn close_to_connections(&mut self, database: &str) -> Result<()> {
        self.execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", quote_ident(database)))
    }

    fn restrict_to_owner(&mut self, database: &str, owner: &str) -> Result<()> {
        let (database, owner) = (quote_ident(database), quote_ident(owner));
        self.execute(&format!(
            "ALTER DATABASE {database} OWNER TO {owner}; \
             REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC"
        ))
        .with_context(|| format!("give database {database} to role {owner}"))
    }

    /// Lets `reader` connect to `database` (its tables are granted inside it, see [`grant_reads`]).
    pub fn grant_connect(&mut self, database: &str, reader: &str) -> Result<bool> {
        let row = self
            .client
            .query_one("SELECT has_database_privilege($1, $2, 'CONNECT')", &[&reader, &database])
            .map_err(PgError::from)?;
        if row.get::<_, bool>(0) {
            return Ok(false);
        }
        self.execute(&format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            quote_ident(database),
            quote_ident(reader)
        ))?;
        Ok(true)
    }

    /// Makes sure the service's login role exists, carries this project's label and accepts the
    /// returned password. `rejected` is a password the server just refused: it is replaced, unless
    /// another process already did so. Runs under the catalog lock, re-reading the password file
    /// there, so concurrent setups agree on one password.
    pub fn ensure_role(
        &mut self,
        role: &RoleSpec<'_>,
        rejected: Option<&str>,
    ) -> Result<(String, RoleChange)> {
        self.with_catalog_lock(|admin| {
            let mut secrets = RoleSecrets::load(role)?;
            let row = admin
                .client
                .query_opt(
                    "SELECT shobj_description(oid, 'pg_authid'), rolsuper FROM pg_roles WHERE rolname = $1",
                    &[&role.name],
                )
                .map_err(PgError::from)?;
            let Some(row) = row else {
                let password = secrets.current_or_new()?;
                admin.create_role(role, &password)?;
                return Ok((password, RoleChange::Created));
            };
            check_role_label(row.get(0), row.get(1), role)?;
            match (secrets.current(), rejected) {
                (Some(known), None) => return Ok((known, RoleChange::None)),
                (Some(known), Some(refused)) if known != refused && secrets.file.is_some() => {
                    return Ok((known, RoleChange::None));
                }
                _ => {}
            }
            let password = secrets.replacement()?;
            admin.execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(role.name),
                quote_literal(&scram_verifier(&password))
            ))?;
            Ok((password, RoleChange::NewPassword))
        })
        .with_context(|| format!("set up login role {}", role.name))
    }

    /// Creates and labels the role in one transaction. An admin that is not a superuser (a managed
    /// server) becomes a member, which it needs to give the role databases and to drop them.
    fn create_role(&mut self, role: &RoleSpec<'_>, password: &str) -> Result<()> {
        let row = self
            .client
            .query_one(
                "SELECT format('COMMENT ON ROLE %I IS %L', $1::text, json_build_object( \
                   'tool', 'xtask', 'project', $2::text, 'database', $3::text)::text), \
                   (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
                &[&role.name, &role.project, &role.logical],
            )
            .map_err(PgError::from)?;
        let (comment, admin_is_superuser): (String, bool) = (row.get(0), row.get(1));
        let name = quote_ident(role.name);
        let membership =
            if admin_is_superuser { String::new() } else { format!("GRANT {name} TO CURRENT_USER;") };
        let created = self.execute(&format!(
            "BEGIN; \
             CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}; \
             {comment}; {membership} COMMIT",
            quote_literal(&scram_verifier(password))
        ));
        if created.is_err() {
            let _ = self.client.batch_execute("ROLLBACK");
        }
        match created {
            Err(error) if PgError::code_in(&error) == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                bail!("{}", missing_attribute("CREATEROLE", "the services' login roles", &error))
            }
            other => other,
        }
    }

    /// This project's roles on the server.
    pub fn project_roles(&mut self, project: &str) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles ORDER BY rolname",
                &[],
            )
            .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .filter(|row| RoleLabel::parse(row.get(1)).is_some_and(|l| l.project == project))
            .map(|row| row.get(0))
            .collect())
    }

    /// Drops a role of this project; its databases must be gone first.
    pub fn drop_role(&mut self, role: &str) -> Result<()> {
        self.with_catalog_lock(|admin| admin.execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role))))
            .with_context(|| format!("drop role {role}: drop the databases it owns or reads first"))
    }

    /// Drops the database when it carries this project's label (and, given `expected`, is that
    /// logical database of that branch); `Ok(false)` when it does not exist. Its open connections
    /// are ended first.
    pub fn drop_labelled(
        &mut self,
        name: &str,
        project: &str,
        expected: Option<(&str, &str)>,
    ) -> Result<bool> {
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
            if let (Some((logical, branch)), Some(label)) = (expected, &existing.label)
                && (label.database != logical || label.branch != branch)
            {
                bail!(
                    "refusing to drop database {name}: it is database `{}` of branch `{}`, not `{logical}` of \
                     branch `{branch}`",
                    label.database,
                    label.branch
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

    pub fn with_catalog_lock<T>(&mut self, work: impl FnOnce(&mut Admin) -> Result<T>) -> Result<T> {
        let key = crate::locks::Key::One(CATALOG_LOCK_KEY);
        crate::locks::acquire(
            &mut self.client,
            key,
            crate::locks::Scope::Session,
            "the database-catalog lock",
            crate::locks::timeout(),
        )?;
        let result = work(self);
        let unlocked = self.client.execute("SELECT pg_catalog.pg_advisory_unlock($1)", &[&CATALOG_LOCK_KEY]);
        let value = result?;
        unlocked.map_err(PgError::from).context("release the database-catalog lock")?;
        Ok(value)
    }

    fn execute(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql).map_err(PgError::from)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    None,
    Created,
    NewPassword,
}

/// A service's login role, as `ensure_role` needs it.
pub struct RoleSpec<'a> {
    pub name: &'a str,
    pub project: &'a str,
    pub logical: &'a str,
    /// Where local engines keep generated passwords.
    pub data_dir: &'a std::path::Path,
    /// On a server shared by several machines (the external engine) every machine must arrive at
    /// the same password, so it is derived from the admin login instead of generated.
    pub derived_password: Option<String>,
}

/// The password of one role: derived, or generated and kept in the credentials file.
struct RoleSecrets<'a> {
    role: &'a str,
    derived: Option<String>,
    file: Option<Credentials>,
}

impl RoleSecrets<'_> {
    fn load<'a>(role: &RoleSpec<'a>) -> Result<RoleSecrets<'a>> {
        let file = match role.derived_password {
            Some(_) => None,
            None => Some(Credentials::load(role.data_dir)?),
        };
        Ok(RoleSecrets { role: role.name, derived: role.derived_password.clone(), file })
    }

    fn current(&self) -> Option<String> {
        self.derived.clone().or_else(|| self.file.as_ref()?.password(self.role).map(str::to_owned))
    }

    fn current_or_new(&mut self) -> Result<String> {
        match self.current() {
            Some(password) => Ok(password),
            None => self.replacement(),
        }
    }

    fn replacement(&mut self) -> Result<String> {
        match (&self.derived, &mut self.file) {
            (Some(derived), _) => Ok(derived.clone()),
            (None, Some(file)) => file.renew(self.role),
            (None, None) => unreachable!("RoleSecrets::load sets one of them"),
        }
    }
}

fn check_role_label(comment: Option<String>, superuser: bool, role: &RoleSpec<'_>) -> Result<()> {
    let (name, logical) = (role.name, role.logical);
    match RoleLabel::parse(comment) {
        Some(l) if l.project == role.project => {}
        Some(l) => bail!(
            "role {name} already exists for project `{}`: declare another `role` for database `{logical}` \
             or set a distinct `project`",
            l.project
        ),
        _ => bail!(
            "role {name} already exists on the server but was not created by xtask; it is left alone. \
             Declare another `role` for database `{logical}` in its Cargo.toml"
        ),
    }
    if superuser {
        bail!("role {name} is a superuser; a service role must not be. Drop it or declare another `role`");
    }
    Ok(())
}

/// 128 bits of SHA-256 over the admin login, the server and the role: the same on every machine
/// that holds the admin URL (which can set any password anyway), unknowable without it.
pub fn derive_password(admin: &Endpoint, role: &str) -> String {
    let port = admin.port.to_string();
    crate::credentials::derived_password(&[
        "xtask role password",
        &admin.user,
        &admin.password,
        &admin.host,
        &port,
        role,
    ])
}

#[derive(Deserialize)]
struct RoleLabel {
    tool: String,
    project: String,
}

impl RoleLabel {
    /// The label in a role's comment, when xtask wrote it.
    fn parse(comment: Option<String>) -> Option<RoleLabel> {
        comment.and_then(|t| serde_json::from_str::<RoleLabel>(&t).ok()).filter(|l| l.tool == "xtask")
    }
}

impl Label {
    /// The label in a database's comment, when xtask wrote it.
    pub fn parse(comment: Option<String>) -> Option<Label> {
        comment.and_then(|t| serde_json::from_str::<Label>(&t).ok()).filter(|l| l.tool == "xtask")
    }
}

/// What the server stores for a password, computed here so the password itself is never sent.
fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Enables the declared extensions missing from `database`, as the admin user (most need a
/// superuser). One missing from the server is an error naming what provides it.
///
/// The service's role owns the database's `public` schema: this session runs with the pinned
/// search_path and names every function, relation and operator with its schema, so nothing the
/// role made there runs with the admin's rights. An extension without a schema of its own goes
/// into `public`, named, since the pinned search_path offers no schema to create in.
pub fn enable_extensions(endpoint: &Endpoint, database: &str, wanted: &[String]) -> Result<Vec<String>> {
    let mut client = endpoint.connect(database)?;
    let rows = client
        .query(
            "SELECT w.name, e.extname IS NOT NULL, a.name IS NOT NULL, v.schema::text \
             FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS w(name, position) \
             LEFT JOIN pg_catalog.pg_extension e ON e.extname OPERATOR(pg_catalog.=) w.name::pg_catalog.name \
             LEFT JOIN pg_catalog.pg_available_extensions a ON a.name OPERATOR(pg_catalog.=) w.name::pg_catalog.name \
             LEFT JOIN pg_catalog.pg_available_extension_versions v \
                    ON v.name OPERATOR(pg_catalog.=) a.name AND v.version OPERATOR(pg_catalog.=) a.default_version \
             ORDER BY w.position",
            &[&wanted],
        )
        .map_err(PgError::from)?;
    let mut enabled = Vec::new();
    for row in rows {
        let (name, installed, available, fixed_schema): (String, bool, bool, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if installed {
            continue;
        }
        if !available {
            let major = crate::conn::server_major(&mut client)?;
            bail!("{}", missing_extension_help(&name, major));
        }
        let schema = match fixed_schema {
            Some(_) => String::new(),
            None => " SCHEMA public".to_owned(),
        };
        // The transaction-scoped lock keeps concurrent setups from racing on the same extension.
        let created = (|| -> Result<()> {
            client.batch_execute("BEGIN").map_err(PgError::from)?;
            let key = crate::locks::Key::One(CATALOG_LOCK_KEY);
            let what = format!("the extension lock in {database}");
            crate::locks::acquire(
                &mut client,
                key,
                crate::locks::Scope::Transaction,
                &what,
                crate::locks::timeout(),
            )?;
            client
                .batch_execute(&format!(
                    "CREATE EXTENSION IF NOT EXISTS {}{schema} CASCADE; COMMIT",
                    quote_ident(&name)
                ))
                .map_err(PgError::from)?;
            Ok(())
        })();
        if created.is_err() {
            let _ = client.batch_execute("ROLLBACK");
        }
        if let Err(error) = &created
            && PgError::code_in(error) == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
        {
            bail!("{}", needs_superuser(&name, &endpoint.user, &schema));
        }
        created.with_context(|| format!("enable extension {name} in {database}"))?;
        enabled.push(name);
    }
    Ok(enabled)
}

/// The admin user lacks a role attribute the tool needs: which, for what, and how to grant it.
fn missing_attribute(attribute: &str, needed_for: &str, error: &anyhow::Error) -> String {
    format!(
        "the admin user lacks {attribute}, which this tool needs to make {needed_for} ({error:#}): a superuser \
         (or the platform's console) can grant it with `ALTER ROLE <admin user> {attribute}`"
    )
}

/// An untrusted extension and an admin that is not a superuser (a managed server's): what the
/// server's owner can do once for every database this tool makes (they are copies of template1).
fn needs_superuser(name: &str, admin: &str, schema: &str) -> String {
    format!(
        "extension {name} can only be created by a superuser, and the admin user {admin} is not one (as on \
         managed servers). A superuser can create it once in template1, which every database this tool makes \
         is copied from: `psql -d template1 -c 'CREATE EXTENSION IF NOT EXISTS {}{schema}'`; or grant the \
         admin what your platform needs for it, or remove {name} from `extensions`",
        quote_ident(name)
    )
}

/// Where an extension comes from, for the common ones; a general hint otherwise.
fn missing_extension_help(name: &str, major: u32) -> String {
    const CONTRIB: &[&str] = &[
        "adminpack",
        "amcheck",
        "autoinc",
        "bloom",
        "btree_gin",
        "btree_gist",
        "citext",
        "cube",
        "dblink",
        "dict_int",
        "earthdistance",
        "file_fdw",
        "fuzzystrmatch",
        "hstore",
        "intarray",
        "isn",
        "lo",
        "ltree",
        "pageinspect",
        "pg_buffercache",
        "pg_freespacemap",
        "pg_prewarm",
        "pg_stat_statements",
        "pg_trgm",
        "pg_visibility",
        "pgcrypto",
        "pgrowlocks",
        "pgstattuple",
        "postgres_fdw",
        "seg",
        "sslinfo",
        "tablefunc",
        "tcn",
        "tsm_system_rows",
        "tsm_system_time",
        "unaccent",
        "uuid-ossp",
        "xml2",
    ];
    let provider = match name {
        _ if CONTRIB.contains(&name) => format!(
            "it ships with PostgreSQL's contrib modules: Debian/Ubuntu `apt-get install postgresql-contrib` \
             (postgresql-{major} includes them from PostgreSQL 10), Fedora `dnf install postgresql-contrib`; \
             the official postgres images include it"
        ),
        "postgis" | "postgis_topology" | "postgis_raster" => format!(
            "Debian/Ubuntu `apt-get install postgresql-{major}-postgis-3`; or the image `postgis/postgis:{major}-3.5` \
             (set `image` in [workspace.metadata.xtask])"
        ),
        "vector" => format!(
            "Debian/Ubuntu `apt-get install postgresql-{major}-pgvector`; or the image `pgvector/pgvector:pg{major}` \
             (set `image` in [workspace.metadata.xtask])"
        ),
        "timescaledb" => format!(
            "the TimescaleDB packages for PostgreSQL {major}, or the image `timescale/timescaledb:latest-pg{major}`"
        ),
        _ => format!(
            "install the package that provides it for PostgreSQL {major} (Debian/Ubuntu: look for \
             `postgresql-{major}-{name}`), or use an image that contains it"
        ),
    };
    format!("extension `{name}` is not available on this server (PostgreSQL {major}): {provider}")
}

/// Lets `readers` SELECT the tables of `database`, now and those its owner creates later.
pub fn grant_reads(endpoint: &Endpoint, database: &str, owner: &str, readers: &[&str]) -> Result<()> {
    let mut client = endpoint.connect(database)?;
    let owner = quote_ident(owner);
    let mut sql = String::new();
    for reader in readers {
        let reader = quote_ident(reader);
        sql.push_str(&format!(
            "GRANT USAGE ON SCHEMA public TO {reader}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {reader};"
        ));
    }
    client.batch_execute(&sql).map_err(PgError::from).with_context(|| format!("grant reads on {database}"))
}

fn check_ownership(existing: &ServerDatabase, new: &NewDatabase<'_>) -> Result<()> {
    let NewDatabase { project, logical, branch, .. } = *new;
    match &existing.label {
        Some(l) if l.project == project && l.database == logical && l.template.as_deref() == new.template => {
            if l.branch != branch && new.template.is_none() {
                bail!(
                    "database {} already exists for branch `{}` (not `{branch}`): two branch names map to \
                     one database name; set XTASK_BRANCH to tell them apart",
                    existing.name,
                    l.branch
                );
            }
            // A published template is the admin's (see `seal_template`), whoever built it.
            let expected_owner = new.owner.filter(|_| new.template.is_none());
            if let Some(owner) = expected_owner.filter(|o| existing.owner.as_deref() != Some(*o)) {
                let found = existing.owner.as_deref().unwrap_or("?");
                bail!(
                    "database {} belongs to role {found}, not to `{logical}`'s role {owner}, so that role \
                     cannot use its tables: run `cargo xtask wipe --db {logical}` (its data is lost) and \
                     setup again, or declare `role = \"{found}\"`",
                    existing.name
                );
            }
            Ok(())
        }
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

/// A database carrying a project's label, with what `branches` and `prune` show of it.
#[derive(Debug, Clone)]
pub struct LabelledDatabase {
    pub name: String,
    pub label: Label,
    /// `None` when the admin user may not connect to it.
    pub size_bytes: Option<i64>,
    /// The newest modification time of the files in its directory (`base/<oid>`), in seconds since
    /// the epoch: `None` when the admin user may not read the server's files (not a superuser).
    pub files_changed: Option<i64>,
    /// Client sessions connected to it now (not this one, not background workers).
    pub connections: i64,
}

impl Admin {
    /// Every database labelled for `project` (templates too), and the server's clock (seconds since
    /// the epoch) to measure ages against. Two statements, whatever the number of databases: the
    /// label is matched in SQL only loosely (a comment need not be JSON), then exactly here.
    pub fn labelled_databases(&mut self, project: &str) -> Result<(Vec<LabelledDatabase>, i64)> {
        let row = self
            .client
            .query_one(
                "SELECT has_function_privilege('pg_catalog.pg_ls_dir(text, boolean, boolean)', 'EXECUTE') \
                    AND has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE'), \
                        extract(epoch FROM now())::bigint",
                &[],
            )
            .map_err(PgError::from)
            .context("ask whether the server's files may be read")?;
        let (can_read_files, now): (bool, i64) = (row.get(0), row.get(1));
        // Execute permission is checked when a statement starts, even on a branch never taken:
        // the file functions are only written into the statement when they may be called.
        let files_changed = if can_read_files {
            "(SELECT extract(epoch FROM max((pg_stat_file('base/' || d.oid || '/' || f, true)).modification)) \
             FROM pg_ls_dir('base/' || d.oid, true, false) AS f)::bigint"
        } else {
            "NULL::bigint"
        };
        let quoted_project = serde_json::to_string(project)?;
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT d.datname::text, shobj_description(d.oid, 'pg_database'), \
                            CASE WHEN has_database_privilege(d.oid, 'CONNECT') \
                                 THEN pg_database_size(d.oid) END, \
                            coalesce(a.sessions, 0), {files_changed} \
                     FROM pg_database d \
                     LEFT JOIN (SELECT datid, count(*) AS sessions FROM pg_stat_activity \
                                WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                                GROUP BY datid) a ON a.datid = d.oid \
                     WHERE strpos(shobj_description(d.oid, 'pg_database'), $1) > 0 \
                       AND NOT starts_with(d.datname, '{scratch}') \
                     ORDER BY d.datname",
                    scratch = crate::scratch::PREFIX
                ),
                &[&quoted_project],
            )
            .map_err(PgError::from)
            .context("list the project's databases")?;
        let databases = rows
            .iter()
            .filter_map(|row| {
                let label = Label::parse(row.get(1)).filter(|l| l.project == project)?;
                Some(LabelledDatabase {
                    name: row.get(0),
                    label,
                    size_bytes: row.get(2),
                    files_changed: row.get(4),
                    connections: row.get(3),
                })
            })
            .collect();
        Ok((databases, now))
    }
}
