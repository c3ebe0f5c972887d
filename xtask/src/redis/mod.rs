//! Redis beside PostgreSQL: one server per project on the engine PostgreSQL runs on, and on each
//! branch one user per service, confined to its own key prefix (see [`acl`]).

mod acl;
mod resp;
mod server;

use std::borrow::Cow;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::config::{EngineKind, RedisConfig};
use crate::credentials::Credentials;
use crate::engine::{ServerState, UpOutcome};
use crate::naming::DbName;
use crate::services::RedisService;
use crate::workspace::Ctx;

use acl::User;
use resp::{Connection, Reply};
use server::{Login, Server};

pub struct Redis<'a> {
    ctx: &'a Ctx,
    config: Cow<'a, RedisConfig>,
    server: Server,
}

/// The project's Redis, when it uses one; `engine`: the one PostgreSQL runs on.
pub fn of(ctx: &Ctx, engine: EngineKind) -> Result<Option<Redis<'_>>> {
    let Some(config) = &ctx.config.redis else { return Ok(None) };
    Ok(Some(Redis { ctx, config: Cow::Borrowed(config), server: Server::new(&ctx.config, config, engine)? }))
}

/// For teardown: the project's Redis, or one this tool made for it before Cargo.toml stopped
/// asking for it (its server would outlive the data directory otherwise).
pub fn of_or_left_over(ctx: &Ctx, engine: EngineKind) -> Result<Option<Redis<'_>>> {
    if ctx.config.redis.is_some() || engine == EngineKind::External {
        return of(ctx, engine);
    }
    let config = RedisConfig::default();
    let server = Server::new(&ctx.config, &config, engine)?;
    Ok(server.exists()?.then_some(Redis { ctx, config: Cow::Owned(config), server }))
}

/// What db-status shows of Redis; a Redis that cannot be asked (or configured) is reported, not
/// fatal: status must always tell the truth.
pub fn report(ctx: &Ctx, engine: EngineKind) -> Option<Report> {
    let result = of(ctx, engine).and_then(|redis| redis.map(|r| r.status()).transpose());
    match result {
        Ok(report) => report,
        Err(error) => Some(Report {
            engine: engine.name(),
            state: ServerState::Unreachable,
            detail: format!("{error:#}"),
            next: None,
            endpoint: String::new(),
            users: Vec::new(),
        }),
    }
}

/// Names a server this tool makes, or an external one's admin, already has: never a service's.
const RESERVED_USERS: [&str; 2] = [acl::ADMIN_USER, "default"];

/// A service's user on this branch, named like its database would be: `<project>_<service>` on a
/// default branch, with the branch (and a hash where needed) elsewhere.
fn user_of(ctx: &Ctx, service: &RedisService) -> User {
    let (key, is_default) = ctx.naming_key();
    let name = DbName::for_branch(&service.base, &key, is_default).to_string();
    User {
        prefix: format!("{name}:"),
        name,
        branch: ctx.branch.name.clone(),
        service: service.name.clone(),
        developer: ctx.developer_of_branch().map(|d| d.id.clone()),
    }
}

/// What `setup` wrote to `.env` about Redis, and the changes it made.
pub struct Setup {
    pub vars: Vec<(String, String)>,
    pub changes: Vec<String>,
}

impl Redis<'_> {
    fn users(&self) -> Vec<(&RedisService, User)> {
        self.config.services.iter().map(|s| (s, user_of(self.ctx, s))).collect()
    }

    fn credentials(&self) -> Result<Credentials> {
        Credentials::load(&self.ctx.config.data_dir)
    }

    /// `--provision` on the native engine: redis-server installed (apt-get, as root) when missing.
    fn provide(&self) -> Result<()> {
        let missing = self.config.server.is_none() && which::which("redis-server").is_err();
        if self.ctx.provision && self.server.kind == EngineKind::Native && missing {
            crate::packages::apt_install(&["redis-server"]).context("provide redis-server (--provision)")?;
        }
        Ok(())
    }

    /// The user's password: derived from the admin's login on an external server (every developer
    /// gets the same without sharing a file), else generated and kept with the PostgreSQL ones.
    fn password(&self, credentials: &mut Credentials, admin: &Login, user: &str) -> Result<String> {
        if self.server.kind == EngineKind::External {
            let port = admin.port.to_string();
            let project = &self.ctx.config.project;
            let parts =
                ["xtask redis password", &admin.user, &admin.password, &admin.host, &port, project, user];
            return Ok(crate::credentials::derived_password(&parts));
        }
        credentials.redis_password_or_new(user)
    }

    /// Refuses, before anything is made, a service user that would be named like the admin.
    pub fn check_names(&self) -> Result<()> {
        let admin_user = self.server.admin_user()?;
        let users = self.users();
        let clash =
            users.iter().find(|(_, u)| RESERVED_USERS.contains(&u.name.as_str()) || u.name == admin_user);
        if let Some((_, user)) = clash {
            bail!(
                "the Redis user of service `{}` would be named {}, which is the server's admin: choose another \
                 `project` name (or declare the service in a crate of its own)",
                user.service,
                user.name
            );
        }
        Ok(())
    }

    /// Makes what this branch needs (the caller has checked the names: [`Redis::check_names`]).
    pub fn setup(&self) -> Result<Setup> {
        self.provide()?;
        let mut credentials = self.credentials()?;
        let users = self.users();
        let mut changes = Vec::new();
        let (outcome, mut connection) = self.server.up(&mut credentials).context("start the Redis server")?;
        if outcome != UpOutcome::AlreadyRunning {
            changes.push(format!("Redis server ({}) {}", self.server.kind.name(), outcome.describe()));
        }
        let admin = self.server.admin(&credentials)?;
        let mut passwords = Vec::new();
        for (_, user) in &users {
            passwords.push(self.password(&mut credentials, &admin, &user.name)?);
        }
        let replies = connection
            .pipeline(&acl::survey_commands(&self.ctx.config.project, users.iter().map(|(_, u)| u)))?;
        let mut made = false;
        for (((_, user), password), pair) in users.iter().zip(&passwords).zip(replies.chunks_exact(2)) {
            if let Some(Reply::Error(message)) = pair.iter().find(|r| matches!(r, Reply::Error(_))) {
                bail!("read the Redis user {} as {}: {message}", user.name, admin.user);
            }
            if acl::is_current(user, password, &pair[0], &pair[1]) {
                continue;
            }
            // A user this project has no record of was made by someone else (another project on
            // a shared server, an operator): it is not taken over. (Ours are made with their record.)
            if !pair[0].is_nil() && pair[1].is_nil() {
                bail!(
                    "the Redis server has a user {} that this project did not make (another project's, or made \
                     by hand); it is left alone: rename this project or the service, or remove that user",
                    user.name
                );
            }
            if !made {
                acl::require_version(&mut connection)?;
            }
            acl::make(&mut connection, &self.ctx.config.project, user, password, !pair[0].is_nil())?;
            made = true;
            changes.push(match pair[0].is_nil() {
                true => format!("created Redis user {} (keys under {})", user.name, user.prefix),
                false => format!("remade Redis user {} (its rules or password were not as made)", user.name),
            });
        }
        if made {
            acl::save(&mut connection)?;
        }
        let mut vars = Vec::new();
        for (index, ((service, user), password)) in users.iter().zip(&passwords).enumerate() {
            let url = admin.as_user(&user.name, password).url();
            if index == 0 {
                vars.push(("REDIS_URL".to_owned(), url.clone()));
                vars.push(("REDIS_PREFIX".to_owned(), user.prefix.clone()));
            }
            if service.declared_in.as_os_str() != "Cargo.toml" || self.config.services.len() > 1 {
                vars.push((service.url_var(), url));
                vars.push((service.prefix_var(), user.prefix.clone()));
            }
        }
        Ok(Setup { vars, changes })
    }

    /// `db-up`: the server started (made when absent).
    pub fn up(&self) -> Result<UpOutcome> {
        self.provide()?;
        let mut credentials = self.credentials()?;
        Ok(self.server.up(&mut credentials).context("start the Redis server")?.0)
    }

    pub fn down(&self) -> Result<bool> {
        self.server.down(&self.credentials()?).context("stop the Redis server")
    }

    pub fn kind(&self) -> EngineKind {
        self.server.kind
    }

    /// The admin, logged in to a running server; `task` names what needs it.
    fn connect(&self, task: &str) -> Result<Connection> {
        let credentials = self.credentials()?;
        let admin = self.server.admin(&credentials)?;
        admin.open(Duration::from_secs(5)).with_context(|| {
            let status = self.server.status(&credentials);
            let next = status.next.unwrap_or_else(|| "check the server".into());
            format!("{task} needs the Redis server, which is {:?} ({}): {next}", status.state, status.detail)
        })
    }

    /// Fails, before a task changes anything, when the Redis server cannot be logged in to.
    pub fn check_reachable(&self, task: &str) -> Result<()> {
        self.connect(task).map(drop)
    }

    /// `wipe`: this branch's users and their keys (only those this project made). Returns what it
    /// did.
    pub fn wipe_branch(&self) -> Result<String> {
        let mut connection = self.connect("wipe")?;
        let recorded = acl::recorded(&mut connection, &self.ctx.config.project)?;
        let names: Vec<String> = self
            .users()
            .into_iter()
            .map(|(_, u)| u.name)
            .filter(|name| recorded.iter().any(|(user, _)| user == name))
            .collect();
        if names.is_empty() {
            return Ok(format!("branch `{}` has no Redis users", self.ctx.branch.name));
        }
        self.remove_users(&mut connection, &names, &names.join(", "))
    }

    /// Removes users this project made, their keys and their passwords on file; says what went.
    fn remove_users(&self, connection: &mut Connection, names: &[String], listed: &str) -> Result<String> {
        let (users, keys) = acl::remove(connection, &self.ctx.config.project, names)?;
        self.credentials()?.forget_redis(names)?;
        Ok(format!("removed {users} Redis user(s) ({listed}) and their {keys} key(s)"))
    }

    /// The users of branches `gone` says are gone: removed unless `dry_run`.
    /// Another developer's are judged by their own git, not the caller's (unless `all_developers`).
    pub fn prune(
        &self,
        gone: &dyn Fn(&str) -> bool,
        dry_run: bool,
        all_developers: bool,
    ) -> Result<Option<String>> {
        let mut connection = self.connect("prune")?;
        let me = self.ctx.developer.as_ref().map(|d| d.id.as_str());
        let doomed: Vec<(String, acl::Record)> = acl::recorded(&mut connection, &self.ctx.config.project)?
            .into_iter()
            .filter(|(_, r)| all_developers || r.developer.as_deref() == me)
            .filter(|(_, r)| gone(&r.branch))
            .collect();
        if doomed.is_empty() {
            return Ok(None);
        }
        let listed: Vec<String> = doomed.iter().map(|(u, r)| format!("{u} (branch {})", r.branch)).collect();
        if dry_run {
            return Ok(Some(format!("would remove Redis user(s) {}", listed.join(", "))));
        }
        let names: Vec<String> = doomed.into_iter().map(|(u, _)| u).collect();
        self.remove_users(&mut connection, &names, &listed.join(", ")).map(Some)
    }

    /// `teardown`: the server this tool made, with its data; on an external server, every user
    /// and key of the project.
    pub fn teardown(&self) -> Result<String> {
        if self.server.kind != EngineKind::External {
            self.server.destroy().context("remove the Redis server")?;
            self.credentials()?.forget_redis_server()?;
            return Ok(format!("removed the {} Redis server and its data", self.server.kind.name()));
        }
        let mut connection = self.connect("teardown")?;
        let names: Vec<String> =
            acl::recorded(&mut connection, &self.ctx.config.project)?.into_iter().map(|(u, _)| u).collect();
        let said = self.remove_users(&mut connection, &names, "every one of the project")?;
        connection.call(&["DEL", &acl::registry(&self.ctx.config.project)])?;
        Ok(said)
    }

    /// External teardown while other developers' databases remain: the caller's own Redis users
    /// and keys (named for the caller as developer), no one else's.
    pub fn teardown_mine(&self) -> Result<String> {
        let mut connection = self.connect("teardown")?;
        let me = self.ctx.developer.as_ref().map(|d| d.id.as_str());
        let names: Vec<String> = acl::recorded(&mut connection, &self.ctx.config.project)?
            .into_iter()
            .filter(|(_, r)| r.developer.is_some() && r.developer.as_deref() == me)
            .map(|(u, _)| u)
            .collect();
        self.remove_users(&mut connection, &names, "the caller's")
    }

    pub fn status(&self) -> Result<Report> {
        let credentials = self.credentials()?;
        let status = self.server.status(&credentials);
        let admin = self.server.admin(&credentials)?;
        let mut connection = match status.state {
            ServerState::Running => admin.open(Duration::from_secs(5)).ok(),
            _ => None,
        };
        // The server's users and the project's keys, each read once for every user.
        let (on_server, usage) = match connection.as_mut() {
            Some(connection) => {
                let names =
                    connection.call(&["ACL", "USERS"])?.items().iter().filter_map(Reply::text).collect();
                (Some::<Vec<String>>(names), Some(acl::usage_by_user(connection, &self.ctx.config.project)?))
            }
            None => (None, None),
        };
        let mut users = Vec::new();
        for (service, user) in self.users() {
            let (keys, bytes) = match &usage {
                Some(usage) => {
                    usage.get(&user.name).copied().map_or((Some(0), Some(0)), |(k, b)| (Some(k), Some(b)))
                }
                None => (None, None),
            };
            users.push(UserReport {
                service: service.name.clone(),
                url: admin.as_user(&user.name, "").redacted_url(),
                exists: on_server.as_ref().map(|names| names.contains(&user.name)),
                user: user.name,
                prefix: user.prefix,
                keys,
                memory_bytes: bytes,
            });
        }
        Ok(Report {
            engine: self.server.kind.name(),
            state: status.state,
            detail: status.detail,
            next: status.next,
            endpoint: admin.redacted_url(),
            users,
        })
    }

    /// Every branch's users, keys and memory (for `branches`).
    pub fn branches(&self) -> Result<Vec<BranchUsage>> {
        let mut connection = self.connect("branches")?;
        let mut by_branch: std::collections::BTreeMap<String, BranchUsage> = Default::default();
        // One pass over the project's keys (every prefix starts with its name), not one per user.
        let usage = acl::usage_by_user(&mut connection, &self.ctx.config.project)?;
        for (user, record) in acl::recorded(&mut connection, &self.ctx.config.project)? {
            let (keys, bytes) = usage.get(&user).copied().unwrap_or_default();
            let entry = by_branch.entry(record.branch.clone()).or_insert_with(|| BranchUsage {
                branch: record.branch.clone(),
                users: Vec::new(),
                keys: 0,
                memory_bytes: 0,
            });
            entry.users.push(user);
            entry.keys += keys;
            entry.memory_bytes += bytes;
        }
        Ok(by_branch.into_values().collect())
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub engine: &'static str,
    pub state: ServerState,
    pub detail: String,
    pub next: Option<String>,
    pub endpoint: String,
    pub users: Vec<UserReport>,
}

#[derive(Debug, Serialize)]
pub struct UserReport {
    pub service: String,
    pub user: String,
    pub prefix: String,
    pub url: String,
    /// `None` when the server cannot be asked.
    pub exists: Option<bool>,
    pub keys: Option<u64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct BranchUsage {
    pub branch: String,
    pub users: Vec<String>,
    pub keys: u64,
    pub memory_bytes: u64,
}
