//! The tasks: thin orchestration of engine, admin and .env work, one function per command.

mod archive;
pub mod backup;
mod backup_files;
pub mod binaries;
pub mod branches;
pub mod checks;
pub mod ci;
pub mod hooks;
pub mod migrate;
pub mod precommit;
pub mod roundtrip;
pub mod schema;
pub mod templates;
mod test_run;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use postgres::error::SqlState;

use crate::admin::{self, Admin, Created, NewDatabase, RoleChange, RoleSpec};
use crate::conn::{Endpoint, PgError};
use crate::credentials::Credentials;
use crate::engine::{self, ClientProgram, Engine, ServerState};
use crate::workspace::{Ctx, Database};
use crate::{config::EngineKind, dotenv};

pub fn db_up(ctx: &Ctx) -> Result<()> {
    let mut engine = engine::select(ctx)?;
    let outcome = engine.up().context("start the PostgreSQL server")?;
    eprintln!(
        "PostgreSQL ({}) {} at {}",
        engine.kind().name(),
        outcome.describe(),
        engine.endpoint().redacted_url(&engine.endpoint().admin_db)
    );
    if let Some(redis) = crate::redis::of(ctx, engine.kind())? {
        let outcome = redis.up()?;
        eprintln!("Redis ({}) {}", redis.kind().name(), outcome.describe());
    }
    Ok(())
}

pub fn db_down(ctx: &Ctx) -> Result<()> {
    let engine = engine::select(ctx)?;
    if engine.down().context("stop the PostgreSQL server")? {
        eprintln!("PostgreSQL ({}) stopped; its data is kept", engine.kind().name());
    }
    if let Some(redis) = crate::redis::of(ctx, engine.kind())?
        && redis.down()?
    {
        eprintln!("Redis ({}) stopped; its data is kept", redis.kind().name());
    }
    Ok(())
}

pub fn db_endpoint(ctx: &Ctx, db: Option<&str>) -> Result<()> {
    let engine = engine::select(ctx)?;
    let database = ctx.database(db)?;
    println!("{}", database_login(ctx, engine.endpoint(), &database)?.url(database.name.as_str()));
    Ok(())
}

/// How a database is used: as its service's login role, or as the admin user for a project
/// without services. A role's password is derived from the admin login on an external server, and
/// otherwise comes from the credentials file that `setup` keeps.
pub fn database_login(ctx: &Ctx, endpoint: &Endpoint, database: &Database) -> Result<Endpoint> {
    let Some(role) = &database.spec.role else { return Ok(endpoint.with_own_search_path()) };
    let password = match role_spec(ctx, endpoint, database, role).derived_password {
        Some(derived) => derived,
        None => match Credentials::load(&ctx.config.data_dir)?.password(role) {
            Some(password) => password.to_owned(),
            None => bail!(
                "role {role} of database `{}` has no password on file yet: run `cargo xtask setup`",
                database.logical
            ),
        },
    };
    Ok(endpoint.login_as(role, &password))
}

fn role_spec<'a>(ctx: &'a Ctx, endpoint: &Endpoint, database: &'a Database, role: &'a str) -> RoleSpec<'a> {
    let shared_server = ctx.config.engine == EngineKind::External;
    RoleSpec {
        name: role,
        project: &ctx.config.project,
        logical: &database.logical,
        data_dir: &ctx.config.data_dir,
        derived_password: shared_server.then(|| admin::derive_password(endpoint, role)),
    }
}

/// Returns the variables it wrote to the env file (name, URL with password). `from`: copy that
/// branch's databases instead of the templates.
pub fn setup(ctx: &Ctx, from: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut engine = engine::select(ctx)?;
    let redis = crate::redis::of(ctx, engine.kind())?;
    if let Some(redis) = &redis {
        redis.check_names()?;
    }
    let outcome = engine.up().context("start the PostgreSQL server")?;
    let mut changes = Vec::new();
    if outcome != engine::UpOutcome::AlreadyRunning {
        changes.push(format!("server {}", outcome.describe()));
    }
    let endpoint = engine.endpoint();
    let mut admin = Admin::connect(endpoint)?;
    backup::sweep_partials(&ctx.root.join("backups"))?;
    if engine.kind() != EngineKind::External {
        let closed = admin.close_maintenance_databases(&endpoint.admin_db)?;
        if !closed.is_empty() {
            changes.push(format!(
                "closed {} to the services' roles (only the admin connects)",
                closed.join(", ")
            ));
        }
    }
    let swept = admin.sweep_leftovers(&ctx.config.project)?;
    if !swept.is_empty() {
        changes.push(format!("dropped what ended runs left unfinished: {}", swept.join(", ")));
    }
    let databases = ctx.databases();
    let mut logins = Vec::new();
    let mut changed_databases = Vec::new();
    let sources = match from {
        Some(branch) => Some(branch_sources(ctx, &mut admin, &databases, branch)?),
        None => None,
    };
    let mut templates = Vec::new();
    for (index, db) in databases.iter().enumerate() {
        let before = changes.len();
        let source = sources.as_ref().map(|s| s[index].as_str());
        let (login, template) = setup_database(ctx, &mut admin, endpoint, db, source, &mut changes)?;
        logins.push(login);
        templates.extend(template.map(|t| (db.spec.template_var(), t)));
        if changes.len() > before {
            changed_databases.push(db.logical.as_str());
        }
    }
    let granted = grant_declared_reads(&mut admin, endpoint, &databases, &changed_databases, &mut changes)?;
    // What setup made (a new database, migrations, reads granted on them) is the schema's record.
    let made =
        |db: &&Database| changed_databases.contains(&db.logical.as_str()) || granted.contains(&db.logical);
    for (db, login) in databases.iter().zip(&logins).filter(|(db, _)| made(db)) {
        match login.connect(db.name.as_str()) {
            Ok(mut client) => crate::drift::keep(&mut client),
            Err(error) => eprintln!("note: the schema fingerprint of {} was not kept: {error:#}", db.name),
        }
    }
    let mut vars = vec![("DATABASE_URL".to_owned(), logins[0].url(databases[0].name.as_str()))];
    for (db, login) in databases.iter().zip(&logins).filter(|(db, _)| db.spec.role.is_some()) {
        vars.push((db.spec.env_var(), login.url(db.name.as_str())));
    }
    if !templates.is_empty() {
        vars.push(("XTASK_ADMIN_URL".to_owned(), endpoint.url(&endpoint.admin_db)));
        vars.extend(templates);
    }
    if let Some(redis) = &redis {
        let made = redis.setup()?;
        changes.extend(made.changes);
        vars.extend(made.vars);
    }
    let env_path = &ctx.config.env_file;
    let pairs: Vec<(&str, String)> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let written = dotenv::update(env_path, &pairs)?;
    if let Some(mode) = written.tightened_from {
        changes.push(format!(
            "made {} readable by its owner only (mode {:04o}, was {mode:04o}): it holds passwords",
            env_path.display(),
            mode & 0o700
        ));
    }
    if written.written {
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        changes.push(format!("wrote {} to {}", keys.join(", "), env_path.display()));
    }
    let names: Vec<String> = databases.iter().map(|d| d.name.to_string()).collect();
    if changes.is_empty() {
        eprintln!(
            "setup: nothing to do; branch `{}` has {} and {} is up to date",
            ctx.branch.name,
            names.join(", "),
            env_path
                .file_name()
                .map_or_else(|| env_path.display().to_string(), |n| n.to_string_lossy().into())
        );
    } else {
        for change in &changes {
            eprintln!("setup: {change}");
        }
        eprintln!("setup: branch `{}` is ready: {}", ctx.branch.name, names.join(", "));
    }
    Ok(vars)
}

/// The databases of `branch` that `--from` copies, one per logical database, checked before
/// anything changes: each must exist, be this project's, and this branch must have none yet.
fn branch_sources(ctx: &Ctx, admin: &mut Admin, databases: &[Database], branch: &str) -> Result<Vec<String>> {
    let source_ctx = ctx.with_branch(crate::workspace::Branch {
        name: branch.to_owned(),
        is_default: ctx.config.default_branches.iter().any(|b| b == branch),
        source: "flag",
    });
    if source_ctx.branch.name == ctx.branch.name {
        bail!("--from {branch} names this branch itself; give another branch to copy");
    }
    let on_server = admin.databases(&[])?;
    let mut sources = Vec::new();
    for (db, source) in databases.iter().zip(source_ctx.databases()) {
        let source = source.name.to_string();
        match on_server.iter().find(|d| d.name == source) {
            Some(found) if found.belongs_to(&ctx.config.project) => {}
            Some(_) => bail!(
                "database {source} is not labelled for project `{}`; it is not copied",
                ctx.config.project
            ),
            None => bail!(
                "branch `{branch}` has no database {source} to copy: run `cargo xtask setup --branch {branch}` \
                 first, or check the branch name (`cargo xtask branches` lists them)"
            ),
        }
        if on_server.iter().any(|d| d.name == db.name.as_str()) {
            bail!(
                "branch `{}` has its database {} already, so --from would replace its data: run \
                 `cargo xtask wipe` first (`wipe --backup` keeps a copy), then setup --from {branch}",
                ctx.branch.name,
                db.name
            );
        }
        let sessions = admin.sessions(&source)?;
        if !sessions.is_empty() {
            bail!("{}", crate::admin::in_use_message(&source, &sessions));
        }
        sources.push(source);
    }
    Ok(sources)
}

/// One database: its role, the database itself (copied from `source` or from its template when
/// missing), its extensions, migrations and (when never seeded) seeds. Returns the login the
/// service uses and the template tests copy from.
fn setup_database(
    ctx: &Ctx,
    admin: &mut Admin,
    endpoint: &Endpoint,
    db: &Database,
    source: Option<&str>,
    changes: &mut Vec<String>,
) -> Result<(Endpoint, Option<String>)> {
    let role = db.spec.role.as_deref();
    let mut login = endpoint.with_own_search_path();
    if let Some(role) = role {
        let (password, change) = admin.ensure_role(&role_spec(ctx, endpoint, db, role), None)?;
        report_role(role, change, changes);
        login = endpoint.login_as(role, &password);
    }
    // Read once: for the template's name, and for migrate below.
    let files = match ctx.config.templates {
        true => Some(crate::migrations::discover(&ctx.root, &db.migrations_dir(ctx))?),
        false => None,
    };
    let template = match &files {
        Some(files) => Some(
            templates::ensure(
                ctx,
                admin,
                &templates::Logins { admin: endpoint, owner: &login },
                db,
                (files, changes),
            )
            .with_context(|| format!("build the template of database `{}`", db.logical))?,
        ),
        None => None,
    };
    let new = NewDatabase {
        project: &ctx.config.project,
        logical: &db.logical,
        branch: &ctx.branch.name,
        owner: role,
        template: None,
        base: None,
        developer: ctx.developer_of_branch().map(|d| d.id.as_str()),
    };
    let expected = (db.logical.as_str(), ctx.branch.name.as_str());
    if let Some(aside) = crate::swap::put_back(admin, db.name.as_str(), &ctx.config.project, expected)? {
        changes.push(format!(
            "put database {} back in place: an interrupted restore had left it as {aside}",
            db.name
        ));
    }
    if crate::invalid::drop_if_ours(admin.client(), db.name.as_str(), &ctx.config.project)? {
        changes
            .push(format!("{}; dropped it to make it anew", crate::invalid::what_happened(db.name.as_str())));
    }
    let copied_from = source.or(template.as_deref());
    let created = admin.create_from(db.name.as_str(), &new, copied_from, |_, _| Ok(()))?;
    if let Created::New = created {
        changes.push(match copied_from {
            Some(from) => format!("created database {} as a copy of {from}", db.name),
            None => format!("created database {}", db.name),
        });
        // The template holds exactly these migrations, seeds and extensions (its name says so):
        // nothing is left to check, and checking would cost a login and a read of every file.
        if source.is_none() && template.is_some() {
            return Ok((login, template));
        }
    }
    if let Some(role) = role {
        let installed = match installed_extensions(&login, db) {
            Ok(installed) => installed,
            // The server refuses the password on file (a server rebuilt or reset, the role's
            // password changed by hand): give the role a new one.
            Err(error) if PgError::code_in(&error) == Some(&SqlState::INVALID_PASSWORD) => {
                let spec = role_spec(ctx, endpoint, db, role);
                let (password, change) = admin.ensure_role(&spec, Some(&login.password))?;
                report_role(role, change, changes);
                login.password = password;
                installed_extensions(&login, db)?
            }
            Err(error) => return Err(error),
        };
        let missing: Vec<String> =
            db.spec.extensions.iter().filter(|e| !installed.contains(e)).cloned().collect();
        if !missing.is_empty() {
            let enabled =
                admin::enable_extensions(endpoint, db.name.as_str(), &missing).with_context(|| {
                    format!("database `{}` (declared in {})", db.logical, db.spec.declared_in.display())
                })?;
            changes.push(format!("enabled extension(s) {} in {}", enabled.join(", "), db.name));
        }
    }
    let quiet = migrate::MigrateOptions { quiet: true, ..Default::default() };
    if let migrate::Migrated::Applied { applied } = migrate::migrate_database(ctx, &login, db, quiet, files)?
    {
        let n = applied.len();
        changes.push(format!("applied {n} migration(s) to {}", db.name));
    }
    // Not only for a database made just now: one whose first setup stopped half-way (a missing
    // extension, a failing migration) gets its seeds once it is finished.
    if migrate::seed_if_never_seeded(ctx, &login, db)? {
        changes.push(format!("loaded the seeds into {}", db.name));
    }
    Ok((login, template))
}

fn report_role(role: &str, change: RoleChange, changes: &mut Vec<String>) {
    match change {
        RoleChange::None => {}
        RoleChange::Created => changes.push(format!("created login role {role}")),
        RoleChange::NewPassword => changes.push(format!("gave login role {role} a new password")),
    }
}

fn installed_extensions(login: &Endpoint, db: &Database) -> Result<Vec<String>> {
    let mut client = login.connect(db.name.as_str())?;
    let rows = client.query("SELECT extname::text FROM pg_extension", &[]).map_err(PgError::from)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// `reads = [...]`: the reader may connect to the read database and SELECT its tables, granted on
/// every setup (idempotent, so a grant interrupted half-way is completed by the next run).
/// Returns the databases a reader was newly let into (their grants changed).
fn grant_declared_reads(
    admin: &mut Admin,
    endpoint: &Endpoint,
    databases: &[Database],
    changed: &[&str],
    changes: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut granted = Vec::new();
    for read in databases {
        let (readers, newly) = grant_reads_of(admin, endpoint, databases, read, read.name.as_str())?;
        if !readers.is_empty() && (newly || changed.contains(&read.logical.as_str())) {
            changes.push(format!("{} may read {}", readers.join(", "), read.name));
        }
        if newly {
            granted.push(read.logical.clone());
        }
    }
    Ok(granted)
}

/// Lets the roles declared to read `read` connect to `name` (its database, or a copy being made
/// to replace it) and SELECT its tables. Returns the readers and whether one could not connect
/// before.
fn grant_reads_of<'a>(
    admin: &mut Admin,
    endpoint: &Endpoint,
    databases: &'a [Database],
    read: &Database,
    name: &str,
) -> Result<(Vec<&'a str>, bool)> {
    let Some(owner) = &read.spec.role else { return Ok((Vec::new(), false)) };
    let readers: Vec<&str> = databases
        .iter()
        .filter(|d| d.spec.reads.contains(&read.logical))
        .filter_map(|d| d.spec.role.as_deref())
        .collect();
    let mut newly = false;
    for reader in &readers {
        newly |= admin.grant_connect(name, reader)?;
    }
    if !readers.is_empty() {
        admin::grant_reads(endpoint, name, owner, &readers)?;
    }
    Ok((readers, newly))
}

/// `backup`: every database is dumped before the first is dropped, so a failed dump drops nothing.
pub fn wipe(ctx: &Ctx, db: Option<&str>, force: bool, backup: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    refuse_remote_without_force(engine.as_ref(), force, "wipe")?;
    let mut admin = connect_running(engine.as_ref(), "wipe")?;
    let databases = ctx.select_databases(db)?;
    // Redis is per service, not per database: `--db` leaves it. A Redis that cannot be reached
    // fails the wipe before anything is dropped.
    let redis = match db {
        None => crate::redis::of(ctx, engine.kind())?,
        Some(_) => None,
    };
    if let Some(redis) = &redis {
        redis.check_reachable("wipe")?;
    }
    if backup {
        backup::back_up_existing(ctx, engine.as_ref(), &mut admin, &databases, "wipe")?;
    }
    for database in databases {
        let expected = Some((database.logical.as_str(), ctx.branch.name.as_str()));
        if admin.drop_labelled(database.name.as_str(), &ctx.config.project, expected)? {
            eprintln!("wipe: dropped database {}", database.name);
        } else {
            eprintln!("wipe: database {} does not exist", database.name);
        }
    }
    if let Some(redis) = &redis {
        eprintln!("wipe: {}", redis.wipe_branch()?);
    }
    Ok(())
}

pub fn teardown(ctx: &Ctx, force: bool, all_developers: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    if engine.kind() != EngineKind::External {
        // The passwords go only once the server is gone (a failed removal must leave the admin
        // password of what is left), and with them the data directory when nothing else is in it.
        if let Some(redis) = crate::redis::of_or_left_over(ctx, engine.kind())? {
            eprintln!("teardown: {}", redis.teardown()?);
        }
        engine.destroy().context("remove the server")?;
        crate::credentials::remove(&ctx.config.data_dir)?;
        let _ = std::fs::remove_dir(&ctx.config.data_dir);
        eprintln!(
            "teardown: removed the {} server of project `{}` and all its databases",
            engine.kind().name(),
            ctx.config.project
        );
        return Ok(());
    }
    refuse_remote_without_force(engine.as_ref(), force, "teardown")?;
    // Before anything is dropped: a Redis that cannot be configured or reached stops it here.
    let redis = crate::redis::of(ctx, engine.kind())?;
    if let Some(redis) = &redis {
        redis.check_reachable("teardown")?;
    }
    let mut admin = connect_running(engine.as_ref(), "teardown")?;
    let me = ctx.developer.as_ref().map(|d| d.id.as_str());
    let (ours, others): (Vec<_>, Vec<_>) = admin
        .databases(&[])?
        .into_iter()
        .filter(|d| d.belongs_to(&ctx.config.project))
        .partition(|d| all_developers || d.label.as_ref().is_some_and(|l| l.developer.as_deref() == me));
    let ours: Vec<String> = ours.into_iter().map(|d| d.name).collect();
    for name in &ours {
        admin.drop_labelled(name, &ctx.config.project, None)?;
        eprintln!("teardown: dropped database {name}");
    }
    // The roles serve every developer's databases: they go with the last of them. The caller's
    // Redis users are the caller's alone.
    if let Some(redis) = redis.as_ref().filter(|_| !others.is_empty()) {
        eprintln!("teardown: {}", redis.teardown_mine()?);
    }
    if !others.is_empty() {
        eprintln!(
            "teardown: {} database(s) of project `{}` dropped; its roles and {} database(s) of other developers \
             (or shared branches) are kept: `cargo xtask teardown --all-developers` drops them too",
            ours.len(),
            ctx.config.project,
            others.len()
        );
        return Ok(());
    }
    let mut credentials = Credentials::load(&ctx.config.data_dir)?;
    let roles = admin.project_roles(&ctx.config.project)?;
    for role in &roles {
        admin.drop_role(role)?;
        credentials.forget(role)?;
        eprintln!("teardown: dropped role {role}");
    }
    if let Some(redis) = redis {
        eprintln!("teardown: {}", redis.teardown()?);
    }
    eprintln!(
        "teardown: {} database(s) and {} role(s) of project `{}` dropped",
        ours.len(),
        roles.len(),
        ctx.config.project
    );
    Ok(())
}

pub fn connect(ctx: &Ctx, db: Option<&str>, psql_args: &[std::ffi::OsString]) -> Result<ExitCode> {
    let engine = engine::select(ctx)?;
    let database = ctx.database(db)?;
    let name = database.name.as_str();
    let mut admin = connect_running(engine.as_ref(), "connect")?;
    if !admin.databases(&[])?.iter().any(|d| d.name == name) {
        bail!(
            "database {name} (`{}` of branch `{}`) does not exist (wiped, or never set up): run `cargo xtask \
             setup` to create it",
            database.logical,
            ctx.branch.name
        );
    }
    drop(admin);
    let login = database_login(ctx, engine.endpoint(), &database)?;
    let terminal = std::io::stdin().is_terminal();
    let psql = engine.client_tool(ClientProgram::Psql)?;
    let status = psql
        .command(&login, name, psql_args, terminal)
        .unchecked()
        .run()
        .with_context(|| format!("run {}", psql.describe()))?
        .status;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

#[derive(Serialize)]
struct StatusReport {
    project: String,
    engine: &'static str,
    server: ServerReport,
    branch: BranchReport,
    databases: Vec<DatabaseReport>,
    /// The env file names another database than this branch's (a branch switch since the last
    /// setup): what it names, and what to do. `None` when it is current or has no DATABASE_URL.
    stale_env_file: Option<String>,
    /// The Redis server and this branch's users; `None` when the project uses no Redis.
    redis: Option<crate::redis::Report>,
}

#[derive(Serialize)]
struct ServerReport {
    state: ServerState,
    detail: String,
    /// What brings the server back; `None` when it runs.
    next: Option<String>,
    endpoint: String,
}

#[derive(Serialize)]
struct BranchReport {
    name: String,
    default: bool,
    source: &'static str,
    /// On the external engine, the developer this branch's databases are named for; `None` for a
    /// shared branch and on the other engines.
    developer: Option<String>,
}

#[derive(Serialize)]
struct DatabaseReport {
    database: String,
    name: String,
    /// The service's login role that owns the database; `None` when the admin user does.
    role: Option<String>,
    /// `None` when the server cannot be asked.
    exists: Option<bool>,
    size_bytes: Option<i64>,
    url: String,
    /// Migrations not yet applied; `None` when the database cannot be asked.
    pending_migrations: Option<usize>,
    /// `current`, `changed` (the seed files changed since they were loaded) or `never`.
    seeds: Option<&'static str>,
    /// Why `pending_migrations` (or `seeds`) is `null` for a database that exists: a migration
    /// or seed file that cannot be read, named with the reason.
    files_error: Option<String>,
    /// What is wrong with a database that exists but cannot be read (left invalid by an interrupted
    /// DROP DATABASE); `None` when all is well.
    problem: Option<String>,
    /// Whether its schema changed outside its migrations since this tool last migrated it (see
    /// `schema --check --live`); `None` when unknown (no fingerprint kept, or not readable).
    schema_drift: Option<bool>,
}

pub fn db_status(ctx: &Ctx, json: bool) -> Result<()> {
    let engine = engine::select(ctx)?;
    let status = engine.status()?;
    let endpoint = engine.endpoint();
    let branch_databases = ctx.databases();
    let ours: Vec<&str> = branch_databases.iter().map(|d| d.name.as_str()).collect();
    let mut status = status;
    // A server that runs but refuses us is reported, not fatal: status must always tell the truth.
    let on_server = match status.state {
        ServerState::Running => match Admin::connect(endpoint).and_then(|mut admin| admin.databases(&ours)) {
            Ok(databases) => Some(databases),
            Err(error) => {
                status.detail = format!("{}; but: {error:#}", status.detail);
                None
            }
        },
        _ => None,
    };
    let report = StatusReport {
        project: ctx.config.project.clone(),
        engine: engine.kind().name(),
        server: ServerReport {
            state: status.state,
            detail: status.detail,
            next: status.next,
            endpoint: endpoint.redacted_url(&endpoint.admin_db),
        },
        branch: BranchReport {
            name: ctx.branch.name.clone(),
            default: ctx.branch.is_default,
            source: ctx.branch.source,
            developer: ctx.developer_of_branch().map(|d| d.id.clone()),
        },
        databases: branch_databases
            .iter()
            .map(|db| database_report(ctx, db, on_server.as_deref(), endpoint))
            .collect::<Result<_>>()?,
        stale_env_file: stale_env_file(ctx),
        redis: crate::redis::report(ctx, engine.kind()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report);
    }
    Ok(())
}

/// The database, as its own login: what a service's role made in its database is read with the
/// role's rights, never the admin's. A refused login or a database left invalid is the status's
/// `problem`, not a failure of db-status.
fn open_for_report(
    ctx: &Ctx,
    endpoint: &crate::conn::Endpoint,
    db: &Database,
) -> Result<(Option<postgres::Client>, Option<String>)> {
    let error = match database_login(ctx, endpoint, db)?.connect(db.name.as_str()) {
        Ok(client) => return Ok((Some(client), None)),
        Err(error) => error,
    };
    if crate::conn::LoginRefused::is_in(&error) {
        let problem = format!(
            "its owner's login was refused ({error:#}): `cargo xtask setup` gives the role a new password"
        );
        return Ok((None, Some(problem)));
    }
    let explained = crate::invalid::explain(error, db.name.as_str());
    if format!("{explained:#}").contains("is invalid") {
        return Ok((None, Some(explained.to_string())));
    }
    Err(explained).with_context(|| format!("read the migration record of {}", db.name))
}

fn database_report(
    ctx: &Ctx,
    db: &Database,
    on_server: Option<&[crate::admin::ServerDatabase]>,
    endpoint: &crate::conn::Endpoint,
) -> Result<DatabaseReport> {
    let found = on_server.and_then(|all| all.iter().find(|d| d.name == db.name.as_str()));
    let (mut pending_migrations, mut seeds, mut errors, mut schema_drift) = (None, None, Vec::new(), None);
    let (client, problem) = match found {
        Some(_) => open_for_report(ctx, endpoint, db)?,
        None => (None, None),
    };
    if let Some(mut client) = client {
        // One file that cannot be read leaves its count unknown; the status still tells the rest.
        match crate::migrations::discover(&ctx.root, &db.migrations_dir(ctx)) {
            Ok(files) => {
                let applied = crate::runner::applied(&mut client)?;
                pending_migrations = Some(crate::migrations::plan(&files, &applied, true).pending.len());
            }
            Err(error) => errors.push(format!("pending migrations unknown: {error:#}")),
        }
        match crate::seeds::discover(&ctx.root, &db.seeds_dir(ctx)) {
            Ok(seed_files) => {
                seeds = Some(match crate::seeds::changed_since_seeded(&mut client, &seed_files)? {
                    None => "never",
                    Some(true) => "changed",
                    Some(false) => "current",
                });
            }
            Err(error) => errors.push(format!("seeds unknown: {error:#}")),
        }
        match crate::drift::drifted(&mut client) {
            Ok(drifted) => schema_drift = drifted,
            Err(error) => errors.push(format!("schema drift unknown: {error:#}")),
        }
    }
    Ok(DatabaseReport {
        database: db.logical.clone(),
        name: db.name.to_string(),
        role: db.spec.role.clone(),
        exists: on_server.map(|_| found.is_some()),
        size_bytes: found.and_then(|d| d.size_bytes),
        url: match &db.spec.role {
            Some(role) => Endpoint { user: role.clone(), ..endpoint.clone() }.redacted_url(db.name.as_str()),
            None => endpoint.redacted_url(db.name.as_str()),
        },
        pending_migrations,
        seeds,
        files_error: (!errors.is_empty()).then(|| errors.join("; ")),
        problem,
        schema_drift,
    })
}

/// Whether the env file's DATABASE_URL names a database of this project other than this branch's.
pub fn stale_env_file(ctx: &Ctx) -> Option<String> {
    let text = std::fs::read_to_string(&ctx.config.env_file).ok()?;
    let url = crate::dotenv::value(&text, "DATABASE_URL")?;
    let named = url.rsplit('/').next()?.split('?').next()?.to_owned();
    let current = ctx.databases().into_iter().next()?.name;
    let ours = named == ctx.config.project || named.starts_with(&format!("{}_", ctx.config.project));
    (ours && named != current.as_str()).then(|| {
        format!(
            "{} names database {named}, not this branch's {current} (the branch changed since the last setup): \
             `cargo xtask setup` rewrites it",
            ctx.config.env_file.display()
        )
    })
}

fn print_status(report: &StatusReport) {
    println!("project    {}", report.project);
    println!("engine     {}", report.engine);
    println!("server     {} ({})", state_name(report.server.state), report.server.detail);
    if let Some(next) = &report.server.next {
        println!("next       {next}");
    }
    println!("endpoint   {}", report.server.endpoint);
    let default = if report.branch.default { ", default branch" } else { "" };
    let developer =
        report.branch.developer.as_ref().map(|d| format!("; databases of developer {d}")).unwrap_or_default();
    println!("branch     {} (from {}{default}{developer})", report.branch.name, report.branch.source);
    if let Some(stale) = &report.stale_env_file {
        println!("note       {stale}");
    }
    println!("databases");
    for db in &report.databases {
        let mut state = match (db.exists, db.size_bytes) {
            (Some(true), Some(size)) => format!("exists, {}", human_size(size)),
            (Some(true), None) => "exists".into(),
            (Some(false), _) => "missing (run `cargo xtask setup`)".into(),
            (None, _) => format!("unknown (server {})", state_name(report.server.state)),
        };
        if let Some(pending) = db.pending_migrations.filter(|n| *n > 0) {
            state.push_str(&format!(", {pending} migration(s) pending (run `cargo xtask migrate`)"));
        }
        if db.schema_drift == Some(true) {
            state.push_str(
                ", schema changed outside its migrations (`cargo xtask schema --check --live` shows how)",
            );
        }
        if let Some(problem) = &db.problem {
            state = problem.clone();
        }
        if db.seeds == Some("changed") {
            state.push_str(", seeds changed since loaded (run `cargo xtask seed`)");
        }
        if let Some(error) = &db.files_error {
            state.push_str(&format!(", {error}"));
        }
        println!("  {:<12} {:<40} {state}", db.database, db.name);
    }
    if let Some(redis) = &report.redis {
        print_redis_status(redis);
    }
}

fn print_redis_status(redis: &crate::redis::Report) {
    println!("redis      {} ({}, {})", state_name(redis.state), redis.engine, redis.detail);
    if let Some(next) = &redis.next {
        println!("next       {next}");
    }
    if !redis.endpoint.is_empty() {
        println!("endpoint   {}", redis.endpoint);
    }
    for user in &redis.users {
        let state = match (user.exists, user.keys, user.memory_bytes) {
            (Some(true), Some(keys), Some(bytes)) => format!("{keys} key(s), {}", human_size(bytes as i64)),
            (Some(false), ..) => "missing (run `cargo xtask setup`)".into(),
            _ => format!("unknown (server {})", state_name(redis.state)),
        };
        println!("  {:<12} {:<40} {state}", user.service, user.prefix);
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Absent => "absent",
        ServerState::Stopped => "stopped",
        ServerState::Running => "running",
        ServerState::Unreachable => "unreachable",
    }
}

fn human_size(bytes: i64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    match bytes {
        _ if mb >= 1.0 => format!("{mb:.1} MiB"),
        // A few Redis keys: "0 KiB" would read as nothing.
        ..1024 => format!("{bytes} B"),
        _ => format!("{:.0} KiB", bytes as f64 / 1024.0),
    }
}

fn refuse_remote_without_force(engine: &dyn Engine, force: bool, task: &str) -> Result<()> {
    let endpoint = engine.endpoint();
    if engine.kind() == EngineKind::External && !endpoint.is_loopback() && !force {
        bail!(
            "refusing to {task} on {}: the host is not this machine, so databases there may be shared; \
             run again with --force if you mean it",
            endpoint.redacted_url(&endpoint.admin_db)
        );
    }
    Ok(())
}

fn connect_running(engine: &dyn Engine, task: &str) -> Result<Admin> {
    let status = engine.status()?;
    if status.state != ServerState::Running {
        bail!("{}", not_running_message(engine, task, &status));
    }
    // The port may lead to another cluster than the engine's: nothing of its is touched.
    engine.check_port(task)?;
    let mut admin = match Admin::connect(engine.endpoint()) {
        Err(error) if crate::conn::LoginRefused::is_in(&error) => match engine.fallback_endpoint() {
            Some(previous) => Admin::connect(&previous).map_err(|_| error)?,
            None => return Err(error),
        },
        connected => connected?,
    };
    engine.check_identity(task, admin.client())?;
    Ok(admin)
}

fn not_running_message(engine: &dyn Engine, task: &str, status: &engine::Status) -> String {
    let port = engine.endpoint().port;
    // Our server is stopped and something else holds its port: db-up would fail on it too. (An
    // absent one's port may be held by its own orphaned server, which setup stops.)
    let ours_stopped = engine.kind() != EngineKind::External && status.state == ServerState::Stopped;
    let holder = ours_stopped.then(|| crate::os::port_holder(port)).flatten();
    let next = match holder {
        Some(holder) => format!(
            "port {port} on 127.0.0.1 is taken by {holder}, so `cargo xtask db-up` cannot start it there: stop \
             that program, or choose a free port with `port` in [workspace.metadata.xtask] or XTASK_PORT"
        ),
        None => status.next.clone().unwrap_or_else(|| "run `cargo xtask db-up`".into()),
    };
    format!("{task} needs the server, which is {} ({}): {next}", state_name(status.state), status.detail)
}

/// Fails at once, as [`explain_if_not_running`] would after a timeout, when the engine knows its
/// server is down without asking it.
pub fn fail_if_surely_down(engine: &dyn Engine, task: &str) -> Result<()> {
    if engine.surely_down() {
        let status = engine.status()?;
        if status.state != ServerState::Running {
            bail!("{}", not_running_message(engine, task, &status));
        }
    }
    Ok(())
}

/// A task that failed because the server is not running fails with what the engine knows (stopped,
/// removed, its data deleted, the Docker engine down) and the command that brings it back, in
/// place of a bare "connection refused". Only asked once the task has failed, so it costs nothing
/// when all is well.
pub fn explain_if_not_running(engine: &dyn Engine, task: &str, error: anyhow::Error) -> anyhow::Error {
    match engine.status() {
        Ok(status) if status.state != ServerState::Running => {
            error.context(not_running_message(engine, task, &status))
        }
        _ => error,
    }
}
